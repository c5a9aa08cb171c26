/* SPDX-License-Identifier: MIT */
/*
 * The compression of one segment of an envelope, shared by the two
 * envelopes (the local store's, core/objects/objcodec.c, and the
 * bucket's, core/s3/seal.c): each keeps a segment compressed only when
 * zstd saves at least 1/32 of it, and asks a probe first. Their formats
 * stay their own (where each puts its flags, how it counts segments).
 */
#ifndef TALLY_SQUEEZE_H
#define TALLY_SQUEEZE_H

#include <stddef.h>

/*
 * Compress @n bytes of @in, a segment of an envelope whose segments hold
 * @seg bytes at most, at zstd level @level into @out (room for @n bytes):
 * the compressed size, or 0 when the segment is to be kept as it is
 * (level 0, fewer than 64 bytes, or not shrinking by 1/32). A segment of
 * more than four probes (a probe: 1/16 of @seg, 32 KiB at most) whose
 * probe does not shrink by 1/32 at zstd's fastest level is taken for
 * incompressible (random, already compressed or encrypted data) without
 * compressing it whole: a probe of 32 KiB costs about a twentieth of a
 * level-3 pass over 1 MiB of random bytes. @zc: a ZSTD_CCtx.
 */
size_t squeeze(void *zc, int level, const void *in, size_t n, size_t seg,
	       void *out);

#endif /* TALLY_SQUEEZE_H */
