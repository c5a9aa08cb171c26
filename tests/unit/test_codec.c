/* SPDX-License-Identifier: MIT */
/*
 * compress_local: the envelope of an object file (core/objects/objcodec.c)
 * and the object store that writes and opens it
 * (core/objects/objstore_codec.c), on real files: round trips of every
 * size around a segment's, text that shrinks and random bytes that stay
 * raw, every damaged byte found, a cut file read as far as it is whole,
 * reads of any range, dedup against an envelope, a damaged copy counted
 * and stored again under the next name, and a store made with the option
 * (and one made without it refused).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "core/objects/objcodec.h"
#include "core/objects/objstore.h"
#include "core/objects/store.h"
#include "tests/unit/util.h"

static char *dir;

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
}

static void teardown(void)
{
	tu_rmrf(dir);
	free(dir);
	dir = NULL;
}

TestSuite(codec, .init = setup, .fini = teardown, .timeout = 120);

/* Text-like bytes: lines of words, compressible as files are. */
static void fill_text(unsigned char *p, size_t len, unsigned seed)
{
	static const char *words[] = {
		"block ",  "store ", "object ", "the ",
		"branch ", "count ", "of ",	"name\n"
	};
	size_t at = 0;
	unsigned x = seed * 2654435761u + 1;

	while (at < len) {
		const char *w;
		size_t n;

		x = x * 1103515245u + 12345u;
		w = words[(x >> 16) % 8];
		n = strlen(w);
		if (n > len - at)
			n = len - at;
		memcpy(p + at, w, n);
		at += n;
	}
}

/* Encode @in at @level into a buffer of its own: its length in *@n. */
static unsigned char *encode(const void *in, size_t len, int level, size_t *n)
{
	unsigned char *out = malloc(objcodec_bound(len));
	ZSTD_CCtx *z = ZSTD_createCCtx();

	cr_assert(out && z);
	cr_assert_eq(objcodec_encode(z, level, in, len, out, n), 0);
	cr_assert_leq(*n, objcodec_bound(len));
	ZSTD_freeCCtx(z);
	return out;
}

static int decode(const void *in, size_t n, void *out, size_t cap,
		  size_t *plain)
{
	ZSTD_DCtx *z = ZSTD_createDCtx();
	int rc;

	cr_assert_not_null(z);
	rc = objcodec_decode(z, in, n, out, cap, plain);
	ZSTD_freeDCtx(z);
	return rc;
}

Test(codec, every_size_round_trips)
{
	static const size_t sizes[] = { 0,	1,	 63,	       64,
					4095,	65535,	 65536,	       65537,
					200000, 1 << 20, (1 << 20) + 3 };
	unsigned char *in = malloc((1 << 20) + 3),
		      *back = malloc((1 << 20) + 3);

	cr_assert(in && back);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(*sizes); i++)
		for (int kind = 0; kind < 2; kind++)
			for (int level = 0; level <= 3; level += 3) {
				struct objcodec_index ix;
				size_t n, plain = 0;
				unsigned char *env;

				if (kind)
					tu_fill(in, sizes[i], (unsigned)i);
				else
					fill_text(in, sizes[i], (unsigned)i);
				env = encode(in, sizes[i], level, &n);
				cr_assert_eq(objcodec_parse(env, n, 1 << 26,
							    &ix),
					     0);
				cr_assert_eq(ix.plain, sizes[i]);
				cr_assert_eq(objcodec_readable(&ix, n),
					     sizes[i]);
				cr_assert_eq(decode(env, n, back, sizes[i],
						    &plain),
					     0, "size %zu kind %d level %d",
					     sizes[i], kind, level);
				cr_assert_eq(plain, sizes[i]);
				cr_assert(!memcmp(in, back, sizes[i]));
				if (sizes[i])
					cr_assert_eq(decode(env, n, back,
							    sizes[i] - 1,
							    &plain),
						     -EFBIG);
				free(env);
			}
	free(in);
	free(back);
}

Test(codec, text_shrinks_random_stays_raw)
{
	size_t len = 1 << 20, n, nseg = len / OBJCODEC_SEGMENT;
	unsigned char *in = malloc(len), *env;

	cr_assert_not_null(in);
	fill_text(in, len, 7);
	env = encode(in, len, 3, &n);
	cr_assert_lt(n, len / 4, "text: %zu bytes of %zu", n, len);
	free(env);
	tu_fill(in, len, 7);
	env = encode(in, len, 3, &n);
	/* no growth beyond the head, the table and the checks */
	cr_assert_eq(n, len + OBJCODEC_HEAD + 4 * nseg + OBJCODEC_CHECK +
				nseg * OBJCODEC_CHECK);
	free(env);
	free(in);
}

Test(codec, every_damaged_byte_is_found)
{
	size_t len = 3 * OBJCODEC_SEGMENT + 1000, n, plain;
	unsigned char *in = malloc(len), *back = malloc(len), *env;

	cr_assert(in && back);
	fill_text(in, len, 3);
	/* segment 1 random: stored raw, its bytes checked as they are */
	tu_fill(in + OBJCODEC_SEGMENT, OBJCODEC_SEGMENT, 9);
	env = encode(in, len, 3, &n);
	for (size_t at = 0; at < n; at += at < 4096 ? 1 : 97) {
		env[at] ^= 0x20;
		cr_assert_eq(decode(env, n, back, len, &plain), -EBADMSG,
			     "byte %zu of %zu", at, n);
		env[at] ^= 0x20;
	}
	cr_assert_eq(decode(env, n, back, len, &plain), 0);
	/* one byte more or less */
	cr_assert_eq(decode(env, n - 1, back, len, &plain), -EBADMSG);
	free(env);
	free(in);
	free(back);
}

Test(codec, a_cut_file_reads_as_far_as_it_is_whole)
{
	size_t len = 5 * OBJCODEC_SEGMENT, n;
	unsigned char *in = malloc(len), *env;
	struct objcodec_index ix;

	cr_assert_not_null(in);
	fill_text(in, len, 5);
	env = encode(in, len, 3, &n);
	cr_assert_eq(objcodec_parse(env, n, len, &ix), 0);
	for (uint32_t i = 0; i < ix.nseg; i++) {
		uint64_t off;
		uint32_t stored, plain;
		bool z;

		objcodec_seg(&ix, i, &off, &stored, &plain, &z);
		cr_assert(z, "text segment %u compressed", i);
		/* cut inside segment i: the ones before it are readable */
		cr_assert_eq(objcodec_readable(&ix, off + stored),
			     (uint64_t)i * OBJCODEC_SEGMENT);
		cr_assert_eq(objcodec_readable(&ix,
					       off + stored + OBJCODEC_CHECK),
			     (uint64_t)(i + 1) * OBJCODEC_SEGMENT);
	}
	/* a byte after the last segment: damaged, nothing whole */
	cr_assert_eq(objcodec_readable(&ix, n), len);
	cr_assert_eq(objcodec_readable(&ix, n + 1), 0);
	/* cut inside the table: more is needed; a plain file is no
	 * envelope */
	cr_assert_eq(objcodec_parse(env, OBJCODEC_HEAD + 2, len, &ix), -EAGAIN);
	cr_assert_eq(objcodec_parse(in, len, len, &ix), -EBADMSG);
	cr_assert_eq(objcodec_parse(env, n, len - 1, &ix), -EBADMSG);
	free(env);
	free(in);
}

/* The object file of @name in shard 0 of the object store in dir. */
static void file_of(const char *name, char *path, size_t size)
{
	snprintf(path, size, "%s/shards/0/%.2s/%s", dir, name, name);
}

static off_t disk_size(const char *name)
{
	char path[4096];
	struct stat st;

	file_of(name, path, sizeof(path));
	cr_assert_eq(stat(path, &st), 0);
	return st.st_size;
}

Test(codec, the_object_store_reads_and_dedups_envelopes)
{
	char shards[4096], text_name[OBJNAME_MAX], rnd_name[OBJNAME_MAX];
	char again[OBJNAME_MAX];
	size_t len = 1 << 20, got;
	unsigned char *text = malloc(len), *rnd = malloc(len),
		      *buf = malloc(len);
	struct objstore *os;
	unsigned shard = 0;
	bool created;
	void *whole;
	off_t size;

	cr_assert(text && rnd && buf);
	fill_text(text, len, 1);
	tu_fill(rnd, len, 1);
	snprintf(shards, sizeof(shards), "%s/shards", dir);
	cr_assert_eq(objstore_open(shards, &os), 0);
	objstore_encode_local(os, 3);
	cr_assert(objstore_encoded(os));
	cr_assert_eq(objstore_put(os, &shard, text, len, text_name, &created,
				  NULL),
		     0);
	cr_assert(created);
	cr_assert_eq(objstore_put(os, &shard, rnd, len, rnd_name, &created,
				  NULL),
		     0);
	cr_assert_lt(disk_size(text_name), (off_t)len / 4);
	cr_assert_lt(disk_size(rnd_name), (off_t)len + 1024);
	cr_assert_eq(objstore_stat(os, 0, text_name, &size), 0);
	cr_assert_eq(size, (off_t)len);
	/* ranges: inside a segment, across segments, past the end */
	for (unsigned k = 0; k < 200; k++) {
		size_t off = (size_t)k * 5227 % len, n = 1 + k * 977 % 200000;
		size_t want = off + n > len ? len - off : n;

		cr_assert_eq(objstore_read(os, 0, text_name, buf, n,
					   (off_t)off),
			     (ssize_t)want);
		cr_assert(!memcmp(buf, text + off, want));
		cr_assert_eq(objstore_read(os, 0, rnd_name, buf, n, (off_t)off),
			     (ssize_t)want);
		cr_assert(!memcmp(buf, rnd + off, want));
	}
	cr_assert_eq(objstore_read(os, 0, text_name, buf, 10, (off_t)len), 0);
	cr_assert_eq(objstore_load(os, 0, text_name, &whole, &got), 0);
	cr_assert(got == len && !memcmp(whole, text, len));
	free(whole);
	/* the same bytes again: found, compared in plain bytes */
	cr_assert_eq(objstore_put(os, &shard, text, len, again, &created, NULL),
		     0);
	cr_assert(!created);
	cr_assert_str_eq(again, text_name);

	/* a byte of segment 2 damaged: reads stop before it, the load
	 * fails its check, a put of the bytes counts it corrupt and
	 * stores them under the next name */
	{
		char path[4096];
		struct objcodec_index ix;
		unsigned char *env = malloc(2 * len);
		uint64_t off;
		uint32_t stored, plain;
		bool z;
		int fd;
		ssize_t n;

		cr_assert_not_null(env);
		file_of(text_name, path, sizeof(path));
		fd = open(path, O_RDWR);
		cr_assert_geq(fd, 0);
		n = pread(fd, env, 2 * len, 0);
		cr_assert_gt(n, 0);
		cr_assert_eq(objcodec_parse(env, (size_t)n, len, &ix), 0);
		objcodec_seg(&ix, 2, &off, &stored, &plain, &z);
		env[off + stored / 2] ^= 1;
		cr_assert_eq(pwrite(fd, env + off + stored / 2, 1,
				    (off_t)(off + stored / 2)),
			     1);
		close(fd);
		free(env);
	}
	cr_assert_eq(objstore_read(os, 0, text_name, buf, len, 0),
		     2 * OBJCODEC_SEGMENT);
	cr_assert(!memcmp(buf, text, 2 * OBJCODEC_SEGMENT));
	cr_assert_eq(objstore_load(os, 0, text_name, &whole, &got), -EBADMSG);
	cr_assert_eq(objstore_corrupt(os), 0);
	cr_assert_eq(objstore_put(os, &shard, text, len, again, &created, NULL),
		     0);
	cr_assert(created);
	cr_assert_str_neq(again, text_name);
	cr_assert_eq(objstore_corrupt(os), 1);
	cr_assert_eq(objstore_read(os, 0, again, buf, len, 0), (ssize_t)len);
	cr_assert(!memcmp(buf, text, len));
	objstore_free(os);
	free(text);
	free(rnd);
	free(buf);
}

/* The format its marker names ("format N" on its second line). */
static int marker_format(const char *store)
{
	char path[4096], buf[64] = { 0 };
	int fd, format = -1;

	snprintf(path, sizeof(path), "%s/tallyfs-store", store);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_gt(read(fd, buf, sizeof(buf) - 1), 0);
	close(fd);
	cr_assert_eq(sscanf(buf, "tallyfs store\nformat %d", &format), 1);
	return format;
}

static void set_marker(const char *store, int format)
{
	char path[4096], text[64];
	int fd, n;

	snprintf(path, sizeof(path), "%s/tallyfs-store", store);
	n = snprintf(text, sizeof(text), "tallyfs store\nformat %d\n", format);
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, (size_t)n), n);
	close(fd);
}

Test(codec, decided_when_the_store_is_made)
{
	char plain[4096], packed[4096];
	struct store *s;

	snprintf(plain, sizeof(plain), "%s/plain", dir);
	snprintf(packed, sizeof(packed), "%s/packed", dir);
	cr_assert_eq(store_open_flags(plain, NULL, true, 1 << 20, 0, &s), 0);
	cr_assert(!objstore_encoded(s->objs));
	store_close(s);
	/* asked of a store made without: refused */
	cr_assert_eq(store_open_flags(plain, NULL, true, 1 << 20,
				      STORE_COMPRESS_LOCAL, &s),
		     -EINVAL);
	cr_assert_eq(store_open_flags(packed, NULL, true, 1 << 20,
				      STORE_COMPRESS_LOCAL, &s),
		     0);
	cr_assert(objstore_encoded(s->objs));
	store_close(s);
	/* its marker names format 2, which a tallyfs of format 1 alone
	 * refuses; the plain store's names format 1 */
	cr_assert_eq(marker_format(packed), STORE_FORMAT_ENVELOPES);
	cr_assert_eq(marker_format(plain), STORE_FORMAT);
	/* a marker of format 1 on a store of envelopes (a restore, a
	 * node's new cache): written again as format 2 at open */
	set_marker(packed, STORE_FORMAT);
	cr_assert_eq(store_open_flags(packed, NULL, false, 1 << 20, 0, &s), 0);
	cr_assert(objstore_encoded(s->objs));
	store_close(s);
	cr_assert_eq(marker_format(packed), STORE_FORMAT_ENVELOPES);
	/* format 2 on a store whose metadata says plain: damaged */
	set_marker(plain, STORE_FORMAT_ENVELOPES);
	cr_assert_eq(store_open_flags(plain, NULL, false, 1 << 20, 0, &s),
		     -EUCLEAN);
	set_marker(plain, STORE_FORMAT);
	/* kept: opened without the flag, its files are envelopes still */
	cr_assert_eq(store_open_flags(packed, NULL, false, 1 << 20, 0, &s), 0);
	cr_assert(objstore_encoded(s->objs));
	store_close(s);
}
