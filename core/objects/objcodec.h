/* SPDX-License-Identifier: MIT */
/*
 * The envelope of an object file in a store made with compress_local
 * (docs/design.md, "Compressing the local store"): the plain bytes in
 * segments of OBJCODEC_SEGMENT, each zstd-compressed or kept raw (one
 * that does not shrink by 1/32), each with its own check, behind a head
 * that gives the plain size and every segment's stored size, so that a
 * read of 4 KiB opens one segment and a stat reads the head alone.
 *
 *   head (OBJCODEC_HEAD bytes, little-endian):
 *     "TLYL" | version 1 | 0 | segment shift u16 | plain u64
 *     | segments u32 | 0 u32
 *   table: a u32 per segment, its stored bytes (bit 31: zstd)
 *   check: XXH3-64 of head and table, u64
 *   segments, in order: stored bytes | XXH3-64 of them seeded with the
 *     segment's index, u64
 *
 * No key: the local store is the owner's disk (the bucket's envelope,
 * core/s3/seal.c, is what an untrusted place gets). The checks find a
 * damaged or cut file; the object's hash, checked where a whole object
 * is read (objstore_load()), finds the rest.
 */
#ifndef TALLY_OBJCODEC_H
#define TALLY_OBJCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OBJCODEC_HEAD 24
#define OBJCODEC_SHIFT 16
#define OBJCODEC_SEGMENT (1u << OBJCODEC_SHIFT)
#define OBJCODEC_CHECK 8
#define OBJCODEC_ZSTD_DEFAULT 3

/* What the head and table of an envelope say. */
struct objcodec_index {
	uint64_t plain;		    /* bytes of the object */
	uint32_t nseg;		    /* segments */
	const unsigned char *table; /* nseg u32, in the buffer parsed */
	size_t head_len;	    /* head, table and check: where the
				       first segment begins */
};

/* The most bytes objcodec_encode() makes of @len bytes. */
size_t objcodec_bound(size_t len);

/*
 * Encode @len bytes of @in (at most @max) at zstd level @level (0: every
 * segment raw) into @out (objcodec_bound(@len) bytes): 0 with *@outlen,
 * -EFBIG or -ENOMEM. @zc: a compression context (ZSTD_CCtx), or NULL
 * with @level 0.
 */
int objcodec_encode(void *zc, int level, const void *in, size_t len, void *out,
		    size_t *outlen);

/*
 * Parse the head of an envelope from the first @n bytes of a file: 0
 * with @ix filled (its table points into @buf), -EAGAIN when the head
 * and table need ix->head_len bytes and @n is fewer, -EBADMSG when it is
 * not an envelope, or a damaged one, or one of more than @max bytes.
 */
int objcodec_parse(const void *buf, size_t n, uint64_t max,
		   struct objcodec_index *ix);

/* Segment @i of @ix: its offset in the file, stored bytes (its check
 * after them) and plain bytes; whether it is compressed. */
void objcodec_seg(const struct objcodec_index *ix, uint32_t i, uint64_t *off,
		  uint32_t *stored, uint32_t *plain, bool *zstd);

/* The plain bytes of the segments wholly inside a file of @size bytes
 * (all of them for a whole file; fewer for one cut short; none for one
 * with bytes after its last segment, which objcodec_decode() refuses). */
uint64_t objcodec_readable(const struct objcodec_index *ix, uint64_t size);

/*
 * Open segment @i from @in (its stored bytes and check) into @out (its
 * plain bytes): 0, or -EBADMSG (damaged). @zd: a ZSTD_DCtx.
 */
int objcodec_seg_open(void *zd, const struct objcodec_index *ix, uint32_t i,
		      const void *in, void *out);

/* Open a whole envelope of @n bytes at @in into @out (@cap bytes): 0
 * with *@plain, -EBADMSG, or -EFBIG (more than @cap). */
int objcodec_decode(void *zd, const void *in, size_t n, void *out, size_t cap,
		    size_t *plain);

#endif
