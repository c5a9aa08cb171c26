/* SPDX-License-Identifier: MIT */
/*
 * Whole reads of a descriptor: the object files (core/objects/), the
 * local copy an upload seals (core/remote/) and the streams an envelope
 * is made of (core/s3/seal.c).
 */
#ifndef TALLY_IO_H
#define TALLY_IO_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Read @n bytes into @buf: at offset @off with pread(2), or, with @off
 * negative, from the descriptor's position with read(2) (a pipe). Retried
 * on EINTR. Returns the bytes read (fewer only at the end of the file) or
 * -errno.
 */
ssize_t io_read_full(int fd, void *buf, size_t n, off_t off);

#endif /* TALLY_IO_H */
