/* SPDX-License-Identifier: MIT */
/* The compression of one segment of an envelope (squeeze.h). */
#include "core/util/squeeze.h"

#include <zstd.h>

#define PROBE_MAX (32u << 10)

size_t squeeze(void *zc, int level, const void *in, size_t n, size_t seg,
	       void *out)
{
	size_t probe = seg / 16 < PROBE_MAX ? seg / 16 : PROBE_MAX, c;

	if (!level || n < 64)
		return 0;
	/* a room 1/32 short makes zstd give up on what does not shrink */
	if (n > 4 * probe) {
		c = ZSTD_compressCCtx(zc, out, probe - probe / 32 - 1, in,
				      probe, 1);
		if (ZSTD_isError(c))
			return 0;
	}
	c = ZSTD_compressCCtx(zc, out, n - n / 32 - 1, in, n, level);
	return ZSTD_isError(c) ? 0 : c;
}
