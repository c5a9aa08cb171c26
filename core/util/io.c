/* SPDX-License-Identifier: MIT */
/* Whole reads of a descriptor (core/util/io.h). */
#include "core/util/io.h"

#include <errno.h>
#include <unistd.h>

ssize_t io_read_full(int fd, void *buf, size_t n, off_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = off < 0 ? read(fd, (char *)buf + done, n - done)
				    : pread(fd, (char *)buf + done, n - done,
					    off + (off_t)done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}
