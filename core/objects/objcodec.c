/* SPDX-License-Identifier: MIT */
/*
 * The envelope of an object file of a store made with compress_local: the
 * format is in core/objects/objcodec.h. Pure: no I/O; the object store
 * (core/objects/objstore.c, objstore_read.c) reads and writes the files.
 */
#include "core/objects/objcodec.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "core/util/le.h"
#include "core/util/squeeze.h"

#define MAGIC "TLYL"
#define VERSION 1
/* a segment's u32 in the table: its stored bytes, and a flag (not the
 * bucket envelope's layout, core/s3/seal.c: that has a last-segment
 * flag in bit 31 and zstd's in bit 30) */
#define T_ZSTD 0x80000000u
#define T_LEN 0x7fffffffu

static uint32_t nsegs(uint64_t len)
{
	return (uint32_t)((len + OBJCODEC_SEGMENT - 1) >> OBJCODEC_SHIFT);
}

static size_t head_len(uint32_t nseg)
{
	return OBJCODEC_HEAD + 4 * (size_t)nseg + OBJCODEC_CHECK;
}

size_t objcodec_bound(size_t len)
{
	uint32_t n = nsegs(len);

	return head_len(n) + len + (size_t)n * OBJCODEC_CHECK;
}

int objcodec_encode(void *zc, int level, const void *in, size_t len, void *out,
		    size_t *outlen)
{
	const unsigned char *p = in;
	unsigned char *o = out, *table;
	uint32_t n = nsegs(len), i;
	size_t at;

	if ((uint64_t)len >= (uint64_t)T_LEN << OBJCODEC_SHIFT)
		return -EFBIG;
	if (level && !zc)
		return -ENOMEM;
	memcpy(o, MAGIC, 4);
	o[4] = VERSION;
	o[5] = 0;
	o[6] = OBJCODEC_SHIFT;
	o[7] = 0;
	le_put64(o + 8, len);
	le_put32(o + 16, n);
	le_put32(o + 20, 0);
	table = o + OBJCODEC_HEAD;
	at = head_len(n);
	for (i = 0; i < n; i++) {
		size_t off = (size_t)i << OBJCODEC_SHIFT;
		size_t k = len - off < OBJCODEC_SEGMENT ? len - off
							: OBJCODEC_SEGMENT;
		size_t c = squeeze(zc, level, p + off, k, OBJCODEC_SEGMENT,
				   o + at);
		uint32_t stored = c ? (uint32_t)c | T_ZSTD : (uint32_t)k;

		if (!c)
			memcpy(o + at, p + off, k);
		le_put32(table + 4 * (size_t)i, stored);
		le_put64(o + at + (stored & T_LEN),
			 XXH3_64bits_withSeed(o + at, stored & T_LEN, i));
		at += (stored & T_LEN) + OBJCODEC_CHECK;
	}
	le_put64(table + 4 * (size_t)n,
		 XXH3_64bits(o, OBJCODEC_HEAD + 4 * (size_t)n));
	*outlen = at;
	return 0;
}

static uint32_t seg_plain(const struct objcodec_index *ix, uint32_t i)
{
	uint64_t off = (uint64_t)i << OBJCODEC_SHIFT;

	return ix->plain - off < OBJCODEC_SEGMENT ? (uint32_t)(ix->plain - off)
						  : OBJCODEC_SEGMENT;
}

int objcodec_parse(const void *buf, size_t n, uint64_t max,
		   struct objcodec_index *ix)
{
	const unsigned char *p = buf;
	uint32_t i;

	if (n < OBJCODEC_HEAD)
		return -EBADMSG;
	if (memcmp(p, MAGIC, 4) || p[4] != VERSION || p[5] ||
	    p[6] != OBJCODEC_SHIFT || p[7] || le_get32(p + 20))
		return -EBADMSG;
	ix->plain = le_get64(p + 8);
	ix->nseg = le_get32(p + 16);
	if (ix->plain > max || ix->plain >= (uint64_t)T_LEN << OBJCODEC_SHIFT ||
	    ix->nseg != nsegs(ix->plain))
		return -EBADMSG;
	ix->head_len = head_len(ix->nseg);
	ix->table = p + OBJCODEC_HEAD;
	if (n < ix->head_len)
		return -EAGAIN;
	if (le_get64(ix->table + 4 * (size_t)ix->nseg) !=
	    XXH3_64bits(p, OBJCODEC_HEAD + 4 * (size_t)ix->nseg))
		return -EBADMSG;
	for (i = 0; i < ix->nseg; i++) {
		uint32_t v = le_get32(ix->table + 4 * (size_t)i);
		uint32_t stored = v & T_LEN, plain = seg_plain(ix, i);

		if ((v & T_ZSTD) ? !stored || stored >= plain : stored != plain)
			return -EBADMSG;
	}
	return 0;
}

void objcodec_seg(const struct objcodec_index *ix, uint32_t i, uint64_t *off,
		  uint32_t *stored, uint32_t *plain, bool *zstd)
{
	uint64_t at = ix->head_len;
	uint32_t k;

	for (k = 0; k < i; k++)
		at += (le_get32(ix->table + 4 * (size_t)k) & T_LEN) +
		      OBJCODEC_CHECK;
	*off = at;
	*stored = le_get32(ix->table + 4 * (size_t)i) & T_LEN;
	*zstd = le_get32(ix->table + 4 * (size_t)i) & T_ZSTD;
	*plain = seg_plain(ix, i);
}

uint64_t objcodec_readable(const struct objcodec_index *ix, uint64_t size)
{
	uint64_t at = ix->head_len, got = 0;
	uint32_t i;

	for (i = 0; i < ix->nseg; i++) {
		at += (le_get32(ix->table + 4 * (size_t)i) & T_LEN) +
		      OBJCODEC_CHECK;
		if (at > size)
			break;
		got += seg_plain(ix, i);
	}
	/* bytes after the last segment: damaged too (objcodec_decode()
	 * refuses the file), so nothing of it is whole */
	return i == ix->nseg && at < size ? 0 : got;
}

int objcodec_seg_open(void *zd, const struct objcodec_index *ix, uint32_t i,
		      const void *in, void *out)
{
	uint32_t v = le_get32(ix->table + 4 * (size_t)i), stored = v & T_LEN;
	uint32_t plain = seg_plain(ix, i);
	const unsigned char *p = in;

	if (le_get64(p + stored) != XXH3_64bits_withSeed(p, stored, i))
		return -EBADMSG;
	if (v & T_ZSTD) {
		size_t r = ZSTD_decompressDCtx(zd, out, plain, p, stored);

		return ZSTD_isError(r) || r != plain ? -EBADMSG : 0;
	}
	memcpy(out, p, plain);
	return 0;
}

int objcodec_decode(void *zd, const void *in, size_t n, void *out, size_t cap,
		    size_t *plain)
{
	struct objcodec_index ix;
	const unsigned char *p = in;
	unsigned char *o = out;
	uint64_t at;
	uint32_t i;
	int rc = objcodec_parse(in, n, UINT64_MAX, &ix);

	if (rc)
		return -EBADMSG; /* -EAGAIN too: cut inside its table */
	if (ix.plain > cap)
		return -EFBIG;
	at = ix.head_len;
	for (i = 0; i < ix.nseg; i++) {
		uint32_t stored = le_get32(ix.table + 4 * (size_t)i) & T_LEN;

		if (at + stored + OBJCODEC_CHECK > n)
			return -EBADMSG;
		rc = objcodec_seg_open(zd, &ix, i, p + at,
				       o + ((size_t)i << OBJCODEC_SHIFT));
		if (rc)
			return rc;
		at += stored + OBJCODEC_CHECK;
	}
	if (at != n)
		return -EBADMSG; /* bytes after the last segment */
	*plain = (size_t)ix.plain;
	return 0;
}
