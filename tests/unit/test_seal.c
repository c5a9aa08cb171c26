/* SPDX-License-Identifier: MIT */
/*
 * The envelope of bodies in the bucket (core/s3/seal.c): round trips of
 * every shape (empty, one byte, segments, compressible, random), and
 * every way a body can be wrong — a flipped bit anywhere, a cut, a
 * segment dropped or moved, another body's context, another key, no key,
 * another store, a plain body in a keyed store — refused, never opened
 * to other bytes. Key files: their mode and length.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/s3/bucket.h"
#include "core/s3/seal.h"
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
}

TestSuite(seal, .init = setup, .fini = teardown, .timeout = 60);

/* A key file of @n bytes of @fill, mode @mode; its path in @path. */
static void key_file(const char *name, size_t n, int fill, mode_t mode,
		     char *path, size_t len)
{
	char buf[256];
	int fd;

	snprintf(path, len, "%s/%s", dir, name);
	memset(buf, fill, sizeof(buf));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	for (size_t put = 0; put < n; put += sizeof(buf)) {
		size_t k = n - put < sizeof(buf) ? n - put : sizeof(buf);

		cr_assert_eq(write(fd, buf, k), (ssize_t)k);
	}
	close(fd);
	cr_assert_eq(chmod(path, mode), 0);
}

static void keyed(struct seal *s, int fill)
{
	char path[4200], err[256];

	key_file("k", 32, fill, 0600, path, sizeof(path));
	memset(s, 0, sizeof(*s));
	cr_assert_eq(seal_key_load(path, &s->key, err, sizeof(err)), 0, "%s",
		     err);
	s->keyed = true;
	s->store_id = 7;
	s->stores[0] = 7;
	s->nstores = 1;
}

static unsigned char *text(size_t n)
{
	unsigned char *b = malloc(n ? n : 1);
	static const char w[] = "the quick brown fox jumps over tallyfs ";

	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)w[i % (sizeof(w) - 1)];
	return b;
}

static unsigned char *noise(size_t n)
{
	unsigned char *b = malloc(n ? n : 1);
	uint64_t x = 88172645463325252ull;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (unsigned char)x;
	}
	return b;
}

/* Seal @in (@n bytes) with @s and @ctx; the body in *@out. */
static size_t seal(const struct seal *s, const char *ctx,
		   const unsigned char *in, size_t n, unsigned char **out)
{
	size_t len = 0;

	*out = malloc(seal_bound(n));
	cr_assert_eq(seal_buf(s, ctx, in, n, *out, &len), 0);
	cr_assert_leq(len, seal_bound(n));
	return len;
}

static int open_body(const struct seal *s, const char *ctx,
		     const unsigned char *body, size_t len, size_t cap,
		     unsigned char *out, size_t *got)
{
	return seal_open(s, ctx, body, len, out, cap, got, NULL);
}

static void round_trip(const struct seal *s, const unsigned char *in, size_t n)
{
	unsigned char *body, *out = malloc(n ? n : 1);
	size_t len = seal(s, "obj", in, n, &body), got = 99;

	cr_assert_eq(open_body(s, "obj", body, len, n, out, &got), 0,
		     "size %zu", n);
	cr_assert_eq(got, n);
	cr_assert(!n || !memcmp(in, out, n));
	free(body);
	free(out);
}

Test(seal, every_shape_opens_to_its_bytes)
{
	size_t sizes[] = { 0,
			   1,
			   63,
			   64,
			   4096,
			   SEAL_SEGMENT - 1,
			   SEAL_SEGMENT,
			   SEAL_SEGMENT + 1,
			   3 * SEAL_SEGMENT + 17 };
	struct seal plain = { .store_id = 7 },
		    z = { .level = 3, .store_id = 7 };
	struct seal k, kz;

	keyed(&k, 'a');
	keyed(&kz, 'a');
	kz.level = 3;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *t = text(sizes[i]), *r = noise(sizes[i]);

		round_trip(&plain, t, sizes[i]);
		round_trip(&z, t, sizes[i]);
		round_trip(&k, r, sizes[i]);
		round_trip(&kz, t, sizes[i]);
		round_trip(&kz, r, sizes[i]);
		free(t);
		free(r);
	}
}

Test(seal, text_shrinks_and_noise_stays_raw)
{
	size_t n = 3 * SEAL_SEGMENT, len;
	unsigned char *t = text(n), *r = noise(n), *body;
	struct seal kz;

	keyed(&kz, 'a');
	kz.level = 3;
	len = seal(&kz, "obj", t, n, &body);
	cr_assert_lt(len, n / 20, "text sealed to %zu bytes", len);
	free(body);
	len = seal(&kz, "obj", r, n, &body);
	/* raw: the header and each segment's head and tag, nothing more */
	cr_assert_eq(len, SEAL_HEAD + 3 * SEAL_SEG_OVER + n);
	free(body);
	free(t);
	free(r);
}

Test(seal, encrypted_bodies_hold_no_plaintext)
{
	size_t n = 200000, len;
	unsigned char *t = text(n), *body;
	struct seal k;

	keyed(&k, 'a');
	len = seal(&k, "obj", t, n, &body);
	cr_assert_null(memmem(body, len, "quick brown", 11));
	/* the same bytes twice: two bodies (a fresh nonce each) */
	{
		unsigned char *again;
		size_t len2 = seal(&k, "obj", t, n, &again);

		cr_assert_eq(len, len2);
		cr_assert_neq(memcmp(body, again, len), 0);
		free(again);
	}
	free(body);
	free(t);
}

/* Every single-bit flip of a sealed body of two segments is refused. */
static void every_flip_refused(const struct seal *s)
{
	size_t n = SEAL_SEGMENT + 300, len, got;
	unsigned char *t = text(n), *body, *out = malloc(n);

	len = seal(s, "obj", t, n, &body);
	for (size_t i = 0; i < len; i += (i < 200 || len - i < 200) ? 1 : 997) {
		for (int bit = 0; bit < 8; bit += 3) {
			int rc;

			body[i] ^= (unsigned char)(1 << bit);
			rc = open_body(s, "obj", body, len, n, out, &got);
			body[i] ^= (unsigned char)(1 << bit);
			cr_assert_lt(rc, 0, "byte %zu bit %d opened", i, bit);
			cr_assert_neq(rc, -ENOMEM);
		}
	}
	free(body);
	free(out);
	free(t);
}

Test(seal, a_flipped_bit_anywhere_is_refused)
{
	struct seal k, z = { .level = 3, .store_id = 7 };

	keyed(&k, 'a');
	every_flip_refused(&k);
	k.level = 3;
	every_flip_refused(&k);
	every_flip_refused(&z);
}

/*
 * Issue 45, item 7: GCM decrypts before it checks the tag. A body whose
 * tag is altered (its bytes intact: the decryption alone would give the
 * plaintext back) is refused, and no byte of its plaintext is left in
 * the caller's buffer; a keyring that does not open leaves none either.
 */
Test(seal, nothing_gcm_wrote_before_its_tag_check_failed_is_kept)
{
	size_t n = 3000, len, got;
	unsigned char *t = text(n), *body, *out = malloc(n);
	struct seal k;

	keyed(&k, 'a');
	len = seal(&k, "obj", t, n, &body);
	body[len - 1] ^= 1; /* the last byte of the only segment's tag */
	memset(out, 0, n);
	cr_assert_eq(open_body(&k, "obj", body, len, n, out, &got), -EBADMSG);
	cr_assert_null(memmem(out, n, t, 64),
		       "the plaintext of a body whose tag failed is in the "
		       "caller's buffer");
	free(body);
	free(out);
	free(t);
}

Test(seal, cut_dropped_moved_or_another_bodys_segments_are_refused)
{
	size_t n = 3 * SEAL_SEGMENT, len, got, seg;
	unsigned char *r = noise(n), *body, *out = malloc(n), *moved;
	struct seal k;

	keyed(&k, 'a');
	len = seal(&k, "obj", r, n, &body);
	seg = SEAL_SEG_OVER + SEAL_SEGMENT; /* raw: each segment this long */
	/* cut anywhere, at a segment's end too */
	for (size_t cut = 0; cut < len; cut += cut < 100 ? 1 : 65521)
		cr_assert_eq(open_body(&k, "obj", body, cut, n, out, &got),
			     -EBADMSG, "cut at %zu", cut);
	cr_assert_eq(open_body(&k, "obj", body, SEAL_HEAD + 2 * seg, n, out,
			       &got),
		     -EBADMSG);
	/* the second segment dropped; the first two swapped */
	moved = malloc(len);
	memcpy(moved, body, SEAL_HEAD + seg);
	memcpy(moved + SEAL_HEAD + seg, body + SEAL_HEAD + 2 * seg, seg);
	cr_assert_eq(open_body(&k, "obj", moved, SEAL_HEAD + 2 * seg, n, out,
			       &got),
		     -EBADMSG);
	memcpy(moved, body, SEAL_HEAD);
	memcpy(moved + SEAL_HEAD, body + SEAL_HEAD + seg, seg);
	memcpy(moved + SEAL_HEAD + seg, body + SEAL_HEAD, seg);
	memcpy(moved + SEAL_HEAD + 2 * seg, body + SEAL_HEAD + 2 * seg, seg);
	cr_assert_eq(open_body(&k, "obj", moved, len, n, out, &got), -EBADMSG);
	/* bytes after the last segment */
	cr_assert_eq(open_body(&k, "obj", body, len, n, out, &got), 0);
	{
		unsigned char *longer = malloc(len + 1);

		memcpy(longer, body, len);
		longer[len] = 0;
		cr_assert_eq(open_body(&k, "obj", longer, len + 1, n, out,
				       &got),
			     -EBADMSG);
		free(longer);
	}
	/* another object's body under this one's key */
	cr_assert_eq(open_body(&k, "other", body, len, n, out, &got), -EBADMSG);
	/* too small a room */
	cr_assert_eq(open_body(&k, "obj", body, len, n - 1, out, &got), -EFBIG);
	free(moved);
	free(body);
	free(out);
	free(r);
}

Test(seal, another_key_no_key_another_store_or_a_plain_body_are_refused)
{
	size_t n = 5000, len, plen, got;
	unsigned char *t = text(n), *body, *pbody, *out = malloc(n);
	struct seal k, k2, none = { .store_id = 7 };
	uint64_t kid = 0;

	keyed(&k, 'a');
	keyed(&k2, 'b');
	cr_assert_neq(k.key.id, k2.key.id);
	len = seal(&k, "obj", t, n, &body);
	cr_assert_eq(seal_open(&k2, "obj", body, len, out, n, &got, &kid),
		     -EKEYREJECTED);
	cr_assert_eq(kid, k.key.id, "the refusal names the key that sealed");
	cr_assert_eq(open_body(&none, "obj", body, len, n, out, &got), -ENOKEY);
	k2 = k;
	k2.stores[0] = 8;
	cr_assert_eq(open_body(&k2, "obj", body, len, n, out, &got), -EUCLEAN);
	k2.stores[1] = 7;
	k2.nstores = 2; /* an ancestor's body opens */
	cr_assert_eq(open_body(&k2, "obj", body, len, n, out, &got), 0);
	/* a keyed store takes no plain body, not even a valid one */
	plen = seal(&none, "obj", t, n, &pbody);
	cr_assert_eq(open_body(&k, "obj", pbody, plen, n, out, &got), -EBADMSG);
	/* raw bytes, not an envelope */
	cr_assert_eq(open_body(&none, "obj", t, n, n, out, &got), -EBADMSG);
	free(pbody);
	free(body);
	free(out);
	free(t);
}

Test(seal, files_round_trip_and_refuse_a_cut)
{
	char a[4200], b[4200], c[4200];
	size_t n = 2 * SEAL_SEGMENT + 123;
	unsigned char *t = text(n), *back = malloc(n);
	struct seal kz;
	uint64_t plain = 0;
	struct stat st;
	int in, out;

	keyed(&kz, 'a');
	kz.level = 5;
	snprintf(a, sizeof(a), "%s/plain", dir);
	snprintf(b, sizeof(b), "%s/sealed", dir);
	snprintf(c, sizeof(c), "%s/back", dir);
	in = open(a, O_RDWR | O_CREAT, 0600);
	cr_assert_eq(write(in, t, n), (ssize_t)n);
	lseek(in, 0, SEEK_SET);
	out = open(b, O_RDWR | O_CREAT, 0600);
	cr_assert_eq(seal_fd(&kz, "snap-1.db", in, out, &plain), 0);
	cr_assert_eq(plain, n);
	close(in);
	lseek(out, 0, SEEK_SET);
	in = open(c, O_RDWR | O_CREAT, 0600);
	cr_assert_eq(seal_open_fd(&kz, "snap-1.db", out, in, &plain, NULL), 0);
	cr_assert_eq(plain, n);
	cr_assert_eq(pread(in, back, n, 0), (ssize_t)n);
	cr_assert_eq(memcmp(back, t, n), 0);
	/* another snapshot's name: refused */
	lseek(out, 0, SEEK_SET);
	cr_assert_eq(ftruncate(in, 0), 0);
	cr_assert_eq(seal_open_fd(&kz, "snap-2.db", out, in, NULL, NULL),
		     -EBADMSG);
	/* cut short by one byte */
	cr_assert_eq(fstat(out, &st), 0);
	cr_assert_eq(ftruncate(out, st.st_size - 1), 0);
	lseek(out, 0, SEEK_SET);
	cr_assert_eq(seal_open_fd(&kz, "snap-1.db", out, in, NULL, NULL),
		     -EBADMSG);
	close(in);
	close(out);
	free(back);
	free(t);
}

Test(seal, key_files_open_to_others_short_or_long_are_refused)
{
	char path[4200], err[256];
	struct seal_key k;

	key_file("open", 32, 'a', 0640, path, sizeof(path));
	cr_assert_eq(seal_key_load(path, &k, err, sizeof(err)), -EACCES);
	cr_assert(strstr(err, "group or others"), "%s", err);
	key_file("short", 31, 'a', 0600, path, sizeof(path));
	cr_assert_eq(seal_key_load(path, &k, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "at least 32"), "%s", err);
	snprintf(path, sizeof(path), "%s/absent", dir);
	cr_assert_eq(seal_key_load(path, &k, err, sizeof(err)), -ENOENT);
	key_file("long", 4097, 'a', 0600, path, sizeof(path));
	cr_assert_eq(seal_key_load(path, &k, err, sizeof(err)), -EFBIG);
	cr_assert(strstr(err, "more than 4096"), "%s", err);
	key_file("ok", 4096, 'a', 0400, path, sizeof(path));
	cr_assert_eq(seal_key_load(path, &k, err, sizeof(err)), 0, "%s", err);
	key_file("ok", 64, 'a', 0400, path, sizeof(path));
	cr_assert_eq(seal_key_load(path, &k, err, sizeof(err)), 0, "%s", err);
	cr_assert_neq(k.id, 0);
}

Test(seal, keyed_names_are_stable_opaque_and_decode_only_with_their_key)
{
	const char *kn = "0123456789abcdef0123456789abcdef-3.g42";
	char a[SEAL_NAME_MAX], b[SEAL_NAME_MAX], back[96];
	struct seal k, k2;

	keyed(&k, 'a');
	keyed(&k2, 'b');
	cr_assert_eq(seal_name_encode(k.key.names, kn, a, sizeof(a)), 0);
	cr_assert_eq(seal_name_encode(k.key.names, kn, b, sizeof(b)), 0);
	cr_assert_str_eq(a, b, "the same name, the same key: dedup holds");
	cr_assert_null(strstr(a, "0123456789abcdef"));
	cr_assert_eq(seal_name_decode(k.key.names, a, back, sizeof(back)), 0);
	cr_assert_str_eq(back, kn);
	/* another name, another key's encoding, damage: no name */
	cr_assert_eq(seal_name_encode(k.key.names,
				      "0123456789abcdef0123456789abcdef.g43", b,
				      sizeof(b)),
		     0);
	cr_assert_str_neq(a, b);
	cr_assert_eq(seal_name_decode(k2.key.names, a, back, sizeof(back)),
		     -EBADMSG);
	a[7] = a[7] == '0' ? '1' : '0';
	cr_assert_eq(seal_name_decode(k.key.names, a, back, sizeof(back)),
		     -EBADMSG);
	cr_assert_eq(seal_name_decode(k.key.names, kn, back, sizeof(back)),
		     -EBADMSG, "a plain name is no keyed one");
	cr_assert_eq(seal_name_decode(k.key.names, "abc", back, sizeof(back)),
		     -EBADMSG);
	cr_assert_eq(seal_name_decode(k.key.names, "", back, sizeof(back)),
		     -EBADMSG);
}

Test(seal, a_key_is_matched_against_the_id_a_bucket_names)
{
	struct seal k, k2;
	char err[256], want[17];

	keyed(&k, 'a');
	keyed(&k2, 'b');
	seal_key_id_text(k.key.id, want);
	cr_assert_eq(seal_key_match(k.key.id, &k.key, err, sizeof(err)), 0);
	cr_assert_eq(seal_key_match(0, NULL, err, sizeof(err)), 0);
	cr_assert_eq(seal_key_match(k.key.id, NULL, err, sizeof(err)), -ENOKEY);
	cr_assert(strstr(err, want), "%s", err);
	cr_assert_eq(seal_key_match(k.key.id, &k2.key, err, sizeof(err)),
		     -EKEYREJECTED);
	cr_assert(strstr(err, want) && strstr(err, "key_file holds key"), "%s",
		  err);
	cr_assert_eq(seal_key_match(0, &k.key, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not encrypted"), "%s", err);
}

/* Envelope 3: a store's own random keys, wrapped by the key file's; the
 * record parses as a bucket's seal lines, opens with that key file only,
 * and a damaged ring is refused. */
Test(seal, wrapped_keys_open_with_their_key_file_only)
{
	struct seal k, k2, st = { 0 }, st2 = { 0 }, got;
	char rec[SEAL_TEXT_MAX], back[SEAL_TEXT_MAX], err[256];
	char *ring, hex[17];
	unsigned char *in = text(5000);
	uint64_t id = 0;
	size_t n;

	keyed(&k, 'a');
	keyed(&k2, 'b');
	cr_assert_eq(seal_keyring_make(&k.key, &st.key, rec, sizeof(rec)), 0);
	seal_key_id_text(k.key.id, hex);
	cr_assert(!strncmp(rec, "envelope 3\nsalt ", 16), "%s", rec);
	cr_assert(strstr(rec, hex), "%s", rec);
	/* random keys, not the key file's, under an id of their own */
	cr_assert_neq(st.key.id, k.key.id);
	cr_assert_neq(memcmp(st.key.enc, k.key.enc, 32), 0);
	cr_assert_neq(memcmp(st.key.names, k.key.names, 64), 0);
	/* two bindings: two sets of keys */
	cr_assert_eq(seal_keyring_make(&k.key, &st2.key, back, sizeof(back)),
		     0);
	cr_assert_neq(memcmp(st.key.enc, st2.key.enc, 32), 0);
	cr_assert_eq(bucket_seal_parse(rec, back, sizeof(back), &id), 0);
	cr_assert_str_eq(back, rec);
	cr_assert_eq(seal_key_salt(&k.key, rec), 0);
	cr_assert_eq(id, k.key.id);

	memset(&got, 0, sizeof(got));
	cr_assert_eq(seal_keyring_open(rec, &k.key, &got.key, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(memcmp(got.key.enc, st.key.enc, 32), 0);
	cr_assert_eq(memcmp(got.key.names, st.key.names, 64), 0);
	cr_assert_eq(got.key.id, st.key.id);
	/* a body sealed with the store's keys opens with the opened ones */
	st.keyed = got.keyed = true;
	st.store_id = got.store_id = 7;
	{
		size_t cap = seal_bound(5000), m;
		unsigned char *out = malloc(cap), *plain = malloc(5000);

		cr_assert_eq(seal_buf(&st, "ctx", in, 5000, out, &m), 0);
		cr_assert_eq(seal_open(&got, "ctx", out, m, plain, 5000, &n,
				       NULL),
			     0);
		cr_assert_eq(n, 5000);
		cr_assert_eq(memcmp(plain, in, n), 0);
		/* not with the key file's own keys */
		cr_assert_neq(
			seal_open(&k, "ctx", out, m, plain, 5000, &n, NULL), 0);
		free(out);
		free(plain);
	}
	/* another key file: no ring for it */
	cr_assert_eq(seal_keyring_open(rec, &k2.key, &got.key, err,
				       sizeof(err)),
		     -EKEYREJECTED);
	cr_assert(strstr(err, "not wrapped"), "%s", err);
	/* a flipped digit in the ring: refused, never other keys */
	ring = (char *)strstr(rec, "keyring ") + 8 + 17 + 40;
	*ring = *ring == '0' ? '1' : '0';
	cr_assert_eq(seal_keyring_open(rec, &k.key, &got.key, err, sizeof(err)),
		     -EKEYREJECTED);
	cr_assert(strstr(err, "does not open"), "%s", err);
	/* a cut ring: damaged, and not a seal record */
	ring[3] = '\n';
	ring[4] = '\0';
	cr_assert_eq(seal_keyring_open(rec, &k.key, &got.key, err, sizeof(err)),
		     -EBADMSG);
	cr_assert_eq(bucket_seal_parse(rec, back, sizeof(back), &id), -EUCLEAN);
	cr_assert_eq(bucket_seal_parse("envelope 2\nkey_id 00000000000000ab\n",
				       back, sizeof(back), &id),
		     -EUCLEAN);
	cr_assert_eq(bucket_seal_parse("envelope 3\nkey_id 00000000000000ab\n",
				       back, sizeof(back), &id),
		     -EUCLEAN);
	/* records that are not one: cut in the key_id line, 17 digits, a
	 * key in force without a ring, two rings of one key */
	cr_assert_eq(bucket_seal_parse("envelope 2\nkey_id 00000000000000ab",
				       back, sizeof(back), &id),
		     -EUCLEAN);
	cr_assert_eq(bucket_seal_parse("envelope 2\nkey_id0000000000000000ab",
				       back, sizeof(back), &id),
		     -EUCLEAN);
	cr_assert_eq(seal_keyring_make(&k.key, &st.key, rec, sizeof(rec)), 0);
	{
		char other[SEAL_TEXT_MAX], twice[2 * SEAL_TEXT_MAX];
		const char *line = strstr(rec, "keyring ");

		/* the key in force named k2, whose ring is not there */
		snprintf(other, sizeof(other), "%.*skey_id %016llx\n%s",
			 (int)(strstr(rec, "key_id ") - rec), rec,
			 (unsigned long long)k2.key.id, line);
		cr_assert_eq(bucket_seal_parse(other, back, sizeof(back), &id),
			     -EUCLEAN);
		snprintf(twice, sizeof(twice), "%s%s", rec, line);
		cr_assert_eq(bucket_seal_parse(twice, back, sizeof(back), &id),
			     -EUCLEAN);
		/* k2 added: both rings, k2 in force; trimmed: k2's alone */
		cr_assert_eq(seal_keyring_add(rec, &st.key, &k2.key, NULL,
					      other, sizeof(other)),
			     0);
		cr_assert_eq(bucket_seal_parse(other, back, sizeof(back), &id),
			     0);
		cr_assert_eq(id, k2.key.id);
		cr_assert_eq(seal_keyring_open(other, &k.key, &got.key, err,
					       sizeof(err)),
			     0, "%s", err);
		cr_assert_eq(memcmp(got.key.enc, st.key.enc, 32), 0);
		cr_assert_eq(seal_keyring_open(other, &k2.key, &got.key, err,
					       sizeof(err)),
			     0, "%s", err);
		cr_assert_eq(memcmp(got.key.enc, st.key.enc, 32), 0);
		cr_assert_eq(seal_keyring_trim(other, &st.key, twice,
					       sizeof(twice)),
			     1);
		cr_assert_eq(seal_keyring_trim(twice, &st.key, back,
					       sizeof(back)),
			     0);
		cr_assert_eq(seal_keyring_open(twice, &k.key, &got.key, err,
					       sizeof(err)),
			     -EKEYREJECTED);
		cr_assert_eq(seal_keyring_open(twice, &k2.key, &got.key, err,
					       sizeof(err)),
			     0, "%s", err);
		cr_assert_eq(got.key.id, st.key.id); /* the store's, for good */
	}
	/* envelope 1: the key file's own keys */
	cr_assert_eq(seal_keyring_open("envelope 1\nkey_id 0000000000000001\n",
				       &k.key, &got.key, err, sizeof(err)),
		     0);
	cr_assert_eq(memcmp(got.key.enc, k.key.enc, 32), 0);
	free(in);
}

/* The rings in record @rec. */
static int rings(const char *rec)
{
	int n = 0;

	for (const char *l = rec; (l = strstr(l, "keyring ")) != NULL; l++)
		n++;
	return n;
}

/* Issue 45: a key file's id is salted per store: the same key file has
 * another id in each store, neither its unsalted one, and nothing in a
 * record names the key file outside its store. */
Test(seal, a_key_ids_salt_is_its_stores)
{
	struct seal k;
	struct seal_key a, b, ka, kb;
	char ra[SEAL_TEXT_MAX], rb[SEAL_TEXT_MAX], hex[17];
	uint64_t unsalted;

	keyed(&k, 'a');
	unsalted = k.key.id;
	a = b = k.key;
	cr_assert_eq(seal_keyring_make(&a, &ka, ra, sizeof(ra)), 0);
	cr_assert_eq(seal_keyring_make(&b, &kb, rb, sizeof(rb)), 0);
	cr_assert_neq(a.id, b.id);
	cr_assert_neq(a.id, unsalted);
	cr_assert_neq(b.id, unsalted);
	cr_assert_neq(ka.id, kb.id); /* the stores' keys' ids: random */
	seal_key_id_text(unsalted, hex);
	cr_assert_null(strstr(ra, hex), "%s", ra);
	/* salted again for a record: the same id, and back for none */
	cr_assert_eq(seal_key_salt(&k.key, rb), 0);
	cr_assert_eq(k.key.id, b.id);
	cr_assert_eq(seal_key_salt(&k.key, "envelope 1\n"), 0);
	cr_assert_eq(k.key.id, unsalted);
}

/* Issue 45: a ring is its store's, and the lines around it are the
 * store's own: a ring taken from another store of the same key file, a
 * salt swapped with its ring, a key_id line naming another ring, a ring
 * dropped or added, are each refused; nothing opens to other keys. */
Test(seal, a_record_is_bound_to_its_store_and_authenticated)
{
	struct seal k, k2;
	struct seal_key a, b, b2, ka, kb, got;
	char ra[SEAL_TEXT_MAX], rb[SEAL_TEXT_MAX], two[SEAL_TEXT_MAX];
	char forged[2 * SEAL_TEXT_MAX], parsed[SEAL_TEXT_MAX], err[256];
	char idb[17];
	const char *ring_a, *ring_b, *salt_a, *salt_b;
	uint64_t id;

	keyed(&k, 'a');
	keyed(&k2, 'b');
	a = b = k.key;
	b2 = k2.key;
	cr_assert_eq(seal_keyring_make(&a, &ka, ra, sizeof(ra)), 0);
	cr_assert_eq(seal_keyring_make(&b, &kb, rb, sizeof(rb)), 0);
	ring_a = strstr(ra, "keyring ");
	ring_b = strstr(rb, "keyring ");
	salt_a = strstr(ra, "salt ");
	salt_b = strstr(rb, "salt ");
	seal_key_id_text(b.id, idb);

	/* A's ring, renamed to B's id, in B's record: its salt and id are
	 * authenticated, so it does not open */
	snprintf(forged, sizeof(forged), "%.*skeyring %s %s",
		 (int)(ring_b - rb), rb, idb, ring_a + 8 + 17);
	cr_assert_eq(bucket_seal_parse(forged, two, sizeof(two), &id), 0);
	cr_assert_eq(seal_keyring_open(forged, &k.key, &got, err, sizeof(err)),
		     -EKEYREJECTED, "%s", err);
	/* A's salt and A's ring with B's mac: the ring opens (A's keys),
	 * the mac does not match them */
	snprintf(forged, sizeof(forged), "%.*s%.*s%.*s%s", (int)(salt_b - rb),
		 rb, (int)(strstr(ra, "keyring ") - salt_a), salt_a,
		 (int)(strstr(ring_a, "\nmac ") + 1 - ring_a), ring_a,
		 strstr(rb, "mac "));
	cr_assert_eq(bucket_seal_parse(forged, two, sizeof(two), &id), 0);
	cr_assert_eq(seal_keyring_open(forged, &k.key, &got, err, sizeof(err)),
		     -EBADMSG, "%s", err);
	cr_assert(strstr(err, "mac"), "%s", err);
	cr_assert_eq(seal_keyring_open(ra, &k.key, &got, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(memcmp(got.enc, ka.enc, 32), 0);

	/* two rings, k2 in force: naming k in force instead is refused */
	cr_assert_eq(seal_keyring_add(rb, &kb, &b2, NULL, two, sizeof(two)), 0);
	cr_assert_eq(rings(two), 2);
	cr_assert_eq(seal_keyring_open(two, &k.key, &got, err, sizeof(err)), 0,
		     "%s", err);
	snprintf(forged, sizeof(forged), "%s", two);
	{
		char *kid = strstr(forged, "key_id ") + 7;

		memcpy(kid, idb, 16);
	}
	cr_assert_eq(bucket_seal_parse(forged, parsed, sizeof(parsed), &id), 0);
	cr_assert_eq(seal_keyring_open(forged, &k.key, &got, err, sizeof(err)),
		     -EBADMSG, "%s", err);
	cr_assert_eq(seal_keyring_open(forged, &k2.key, &got, err, sizeof(err)),
		     -EBADMSG, "%s", err);
	/* nor does a rekey's end or a new ring sign it over */
	cr_assert_eq(seal_keyring_trim(forged, &kb, parsed, sizeof(parsed)),
		     -EBADMSG);
	cr_assert_eq(seal_keyring_add(forged, &kb, &b2, NULL, parsed,
				      sizeof(parsed)),
		     -EBADMSG);
	/* an unknown envelope opens nothing */
	snprintf(forged, sizeof(forged), "envelope 4%s", strchr(two, '\n'));
	cr_assert_eq(seal_keyring_open(forged, &k.key, &got, err, sizeof(err)),
		     -EBADMSG);
	/* the old ring dropped by hand (not by a trim under the keys) */
	{
		const char *second =
			strstr(strstr(two, "keyring ") + 1, "keyring ");

		snprintf(forged, sizeof(forged), "%.*s%s", (int)(second - two),
			 two, strstr(second, "mac "));
	}
	cr_assert_eq(bucket_seal_parse(forged, parsed, sizeof(parsed), &id), 0);
	cr_assert_eq(seal_keyring_open(forged, &k2.key, &got, err, sizeof(err)),
		     -EBADMSG, "%s", err);
	/* trimmed under the store's keys: k2's ring alone, and it opens */
	cr_assert_eq(seal_keyring_trim(two, &kb, forged, sizeof(forged)), 1);
	cr_assert_eq(rings(forged), 1);
	cr_assert_eq(seal_keyring_open(forged, &k2.key, &got, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(memcmp(got.enc, kb.enc, 32), 0);
	cr_assert_eq(seal_keyring_open(forged, &k.key, &got, err, sizeof(err)),
		     -EKEYREJECTED);
	/* a mac line cut or altered: not a record, or refused */
	*strstr(forged, "mac ") = '\0';
	cr_assert_eq(bucket_seal_parse(forged, parsed, sizeof(parsed), &id),
		     -EUCLEAN);
}

/* A store bound with envelope 2 (the previous format), made by it: its
 * key file holds the bytes 0..31; its record, and a body its keys sealed
 * ("tallyfs envelope 2 fixture", context "fixture.g0", store 42). */
static const char env2_record[] =
	"envelope 2\n"
	"key_id f7e9a31e39b86620\n"
	"keyring f7e9a31e39b86620 8f2e728ba75f28ce4e0781c7379564f079b"
	"cbd6c56a186520b6a0e8ed19666bc51808f3afe6cbd1d45fbb8087f049d4"
	"571dcefb0ec555d3106bdef5f72c9a563d417d08d020fcf9d1eacf951bce"
	"84ed3c3f31c85306bdda6b5bc286d709261ffdf934069309e2fd1e1656be"
	"249a9ddf129c986c26996ed3f98dfe393e12f2e92ea438de9\n";
static const char env2_body[] =
	"544c5945010100002a000000000000002066b8391ea3e9f78b58b6d84360644a"
	"b3a76ecf000010001a0000801a0000000dddc2ed65be034b6ecf6e5e9b902f03"
	"f3e96fd26fe97d041d220b8cdb8f840d9f61387bf6aaf6db171b";

static void env2_key(struct seal_key *k)
{
	char path[4200], err[256];
	unsigned char b[32];
	int fd;

	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)i;
	snprintf(path, sizeof(path), "%s/k2", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, b, 32), 32);
	close(fd);
	cr_assert_eq(seal_key_load(path, k, err, sizeof(err)), 0, "%s", err);
}

/* Whether the fixture's body opens with store keys @keys to its text. */
static void env2_body_opens(const struct seal_key *keys)
{
	unsigned char in[sizeof(env2_body) / 2], out[64];
	struct seal s = { .keyed = true, .key = *keys, .store_id = 42 };
	size_t n;

	for (size_t i = 0; i < sizeof(in); i++)
		cr_assert_eq(sscanf(env2_body + 2 * i, "%2hhx", &in[i]), 1);
	cr_assert_eq(seal_open(&s, "fixture.g0", in, sizeof(in), out,
			       sizeof(out), &n, NULL),
		     0);
	cr_assert_eq(n, 26);
	cr_assert_eq(memcmp(out, "tallyfs envelope 2 fixture", 26), 0);
}

/* Issue 45: a store of envelope 2 opens still, and is made envelope 3
 * with the same keys: its bodies open, its key file's id is salted. */
Test(seal, an_envelope_2_store_opens_and_is_made_envelope_3)
{
	struct seal_key file, keys, got, again;
	char rec[SEAL_TEXT_MAX], back[SEAL_TEXT_MAX], err[256], hex[17];
	uint64_t id = 0, id2;

	env2_key(&file);
	cr_assert_eq(seal_record_version(env2_record), 2);
	cr_assert_eq(bucket_seal_parse(env2_record, back, sizeof(back), &id),
		     0);
	cr_assert_eq(seal_key_salt(&file, env2_record), 0);
	cr_assert_eq(id, file.id); /* unsalted in envelope 2 */
	id2 = file.id;
	cr_assert_eq(seal_key_open(env2_record, id, &file, &keys, err,
				   sizeof(err)),
		     0, "%s", err);
	env2_body_opens(&keys);
	/* made envelope 3: no conversion without the key that opened it */
	cr_assert_eq(seal_keyring_add(env2_record, &keys, &file, NULL, rec,
				      sizeof(rec)),
		     -EINVAL);
	again = file;
	cr_assert_eq(seal_keyring_add(env2_record, &keys, &file, &again, rec,
				      sizeof(rec)),
		     0);
	cr_assert_eq(seal_record_version(rec), 3);
	cr_assert_eq(bucket_seal_parse(rec, back, sizeof(back), &id), 0);
	cr_assert_eq(id, file.id);
	cr_assert_neq(id, id2, "the id is salted");
	seal_key_id_text(id2, hex);
	cr_assert_null(strstr(rec, hex), "%s", rec);
	cr_assert_eq(rings(rec), 1, "%s", rec);
	/* the unsalted key file opens it (salted on the way) */
	cr_assert_eq(seal_key_open(rec, id, &again, &got, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(memcmp(got.enc, keys.enc, 32), 0);
	cr_assert_eq(got.id, keys.id); /* the bodies' headers' id, for good */
	env2_body_opens(&got);

	/* a rekey of it to another key file: envelope 3, both rings (the
	 * old key's salted too), both open it; trimmed, the new one only */
	{
		struct seal k2;
		struct seal_key old;
		char trimmed[SEAL_TEXT_MAX];

		keyed(&k2, 'b');
		env2_key(&old);
		cr_assert_eq(seal_keyring_add(env2_record, &keys, &k2.key, &old,
					      rec, sizeof(rec)),
			     0);
		cr_assert_eq(seal_record_version(rec), 3);
		cr_assert_eq(rings(rec), 2, "%s", rec);
		cr_assert_eq(bucket_seal_parse(rec, back, sizeof(back), &id),
			     0);
		cr_assert_eq(id, k2.key.id);
		cr_assert_eq(seal_keyring_open(rec, &old, &got, err,
					       sizeof(err)),
			     0, "%s", err);
		env2_body_opens(&got);
		cr_assert_eq(seal_keyring_open(rec, &k2.key, &got, err,
					       sizeof(err)),
			     0, "%s", err);
		env2_body_opens(&got);
		cr_assert_eq(seal_keyring_trim(rec, &got, trimmed,
					       sizeof(trimmed)),
			     1);
		cr_assert_eq(seal_keyring_open(trimmed, &old, &got, err,
					       sizeof(err)),
			     -EKEYREJECTED);
		cr_assert_eq(seal_keyring_open(trimmed, &k2.key, &got, err,
					       sizeof(err)),
			     0, "%s", err);
	}
}
