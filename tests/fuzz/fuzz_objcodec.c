/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the envelope of an object file of a store made
 * with compress_local (core/objects/objcodec.c). The first byte picks
 * what the rest is:
 *   0  a file as read from disk: parsed, its readable bytes counted for
 *      every size it could have, opened whole and segment by segment:
 *      opens or is refused, never a crash or a read out of bounds;
 *   1  plain bytes: encoded (the level from the next byte) and opened
 *      again, equal; with one byte flipped, refused;
 *   2  a file whose head, table and checks are right (a damaged disk
 *      cannot forge them, but the decoder must not trust them): every
 *      segment flagged compressed, so zstd's decoder meets arbitrary
 *      payloads; nothing but the segment's bytes, or a refusal.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "core/objects/objcodec.h"
#include "core/util/le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROOM (1u << 20)

static unsigned char out[ROOM];
static unsigned char seg[OBJCODEC_SEGMENT];
static unsigned char forged[ROOM + 4096];

/* Open @n bytes at @d every way there is. */
static void open_all(ZSTD_DCtx *zd, const unsigned char *d, size_t n)
{
	struct objcodec_index ix;
	size_t plain;

	if (objcodec_decode(zd, d, n, out, ROOM, &plain) == 0 && plain > ROOM)
		abort();
	if (objcodec_parse(d, n, ROOM, &ix))
		return;
	if (objcodec_readable(&ix, n) > ix.plain)
		abort();
	for (uint32_t i = 0; i < ix.nseg; i++) {
		uint64_t off;
		uint32_t stored, segplain;
		bool z;

		objcodec_seg(&ix, i, &off, &stored, &segplain, &z);
		if (segplain > OBJCODEC_SEGMENT)
			abort();
		if (off + stored + OBJCODEC_CHECK > n)
			break;
		(void)objcodec_seg_open(zd, &ix, i, d + off, seg);
	}
}

/* A file of @plain bytes, its segments' payloads taken from @d in turn,
 * each flagged compressed, with the head, table and checks right. */
static size_t forge(const uint8_t *d, size_t n, uint64_t plain)
{
	uint32_t nseg =
		(uint32_t)((plain + OBJCODEC_SEGMENT - 1) / OBJCODEC_SEGMENT);
	size_t at = OBJCODEC_HEAD + 4 * (size_t)nseg + OBJCODEC_CHECK, used = 0;

	memcpy(forged, "TLYL", 4);
	forged[4] = 1;
	forged[5] = 0;
	forged[6] = OBJCODEC_SHIFT;
	forged[7] = 0;
	le_put64(forged + 8, plain);
	le_put32(forged + 16, nseg);
	le_put32(forged + 20, 0);
	for (uint32_t i = 0; i < nseg; i++) {
		size_t k = (n - used) / (nseg - i);

		if (k > 4096)
			k = 4096;
		if (k == 0)
			k = 1; /* no payload left: a byte of zeros */
		if (at + k + OBJCODEC_CHECK > sizeof(forged))
			return 0;
		memset(forged + at, 0, k);
		memcpy(forged + at, d + used, used + k <= n ? k : n - used);
		used += used + k <= n ? k : n - used;
		le_put32(forged + OBJCODEC_HEAD + 4 * (size_t)i,
			 (uint32_t)k | 0x80000000u);
		le_put64(forged + at + k,
			 XXH3_64bits_withSeed(forged + at, k, i));
		at += k + OBJCODEC_CHECK;
	}
	le_put64(forged + OBJCODEC_HEAD + 4 * (size_t)nseg,
		 XXH3_64bits(forged, OBJCODEC_HEAD + 4 * (size_t)nseg));
	return at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ZSTD_DCtx *zd;
	static ZSTD_CCtx *zc;

	if (!zd)
		zd = ZSTD_createDCtx();
	if (!zc)
		zc = ZSTD_createCCtx();
	if (!zd || !zc || size < 2)
		return 0;
	switch (data[0] % 3) {
	case 0:
		open_all(zd, data + 1, size - 1);
		break;
	case 1: {
		size_t len = size - 2 < ROOM / 2 ? size - 2 : ROOM / 2, n,
		       plain;
		unsigned char *env = malloc(objcodec_bound(len));
		int level = data[1] % 4;

		if (!env)
			return 0;
		if (objcodec_encode(zc, level, data + 2, len, env, &n) ||
		    objcodec_decode(zd, env, n, out, ROOM, &plain) ||
		    plain != len || memcmp(out, data + 2, len))
			abort();
		if (n) {
			size_t at = (data[1] * 7919u + len) % n;

			env[at] ^= 0x40;
			if (objcodec_decode(zd, env, n, out, ROOM, &plain) !=
			    -EBADMSG)
				abort();
		}
		free(env);
		break;
	}
	default: {
		/* the plain size from the next two bytes: 1 to 4 segments */
		uint64_t plain = 1 + ((uint64_t)data[1] << 10) % (4u << 16);
		size_t n = forge(data + 2, size - 2, plain);

		if (n)
			open_all(zd, forged, n);
		break;
	}
	}
	return 0;
}
