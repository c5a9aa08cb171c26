/* SPDX-License-Identifier: MIT */
/*
 * The envelope of bodies in the bucket (core/s3/seal.h): zstd, then
 * AES-256-GCM through OpenSSL's EVP, in segments. A segment's tag covers
 * the header, the segment's head, its index and the body's context, so a
 * segment moved, dropped, cut, or taken from another body (another key
 * name: an object's body put under another's key) fails to open; the
 * last segment is flagged, so a body cut at a segment's end fails too.
 * Without a key the tag is XXH3-128 of the same bytes: it catches damage,
 * not an attacker (objects are checked against their names anyway).
 */
#include "core/s3/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <xxhash.h>
#include <zstd.h>

#include "core/util/io.h"
#include "core/util/le.h"
#include "core/util/squeeze.h"

#define MAGIC "TLYE"
#define VERSION 1
#define F_KEYED 1u
#define S_LAST (1u << 31)
#define S_ZSTD (1u << 30)
#define S_LEN (S_ZSTD - 1)
#define TAG 16
#define V1 "tallyfs seal v1" /* HKDF's salt of envelopes 1 and 2 */

/* ------------------------------------------------------------------ */
/* keyed names */

#define NAMES_AAD "tallyfs names v1"

static EVP_CIPHER *siv;
static pthread_once_t siv_once = PTHREAD_ONCE_INIT;

static void siv_fetch(void)
{
	siv = EVP_CIPHER_fetch(NULL, "AES-256-SIV", NULL);
}

/* @n bytes as lowercase hex into @out (2 * @n + 1 bytes). */
static void hex_of(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* @n bytes from lowercase hex (what hex_of() writes, nothing else):
 * 0 or -EBADMSG. */
static int bytes_of(const char *hex, size_t n, unsigned char *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (!hex[2 * i] || !strchr("0123456789abcdef", hex[2 * i]) ||
		    !hex[2 * i + 1] ||
		    !strchr("0123456789abcdef", hex[2 * i + 1]) ||
		    sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -EBADMSG;
		out[i] = (unsigned char)v;
	}
	return 0;
}

/* AES-256-SIV of @n bytes (@n > 0) of @in into @out, the tag first
 * (@enc), or back (the tag checked): 0, -EBADMSG or -EIO. */
static int siv_run(const unsigned char k[64], bool enc, const unsigned char *in,
		   size_t n, unsigned char *out)
{
	EVP_CIPHER_CTX *c;
	int len, ok;

	pthread_once(&siv_once, siv_fetch);
	if (!siv || !n)
		return -EIO;
	c = EVP_CIPHER_CTX_new();
	if (!c)
		return -ENOMEM;
	ok = EVP_CipherInit_ex2(c, siv, k, NULL, enc, NULL) == 1;
	if (ok && !enc)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG,
					 (void *)in) == 1;
	ok = ok &&
	     EVP_CipherUpdate(c, NULL, &len, (const unsigned char *)NAMES_AAD,
			      (int)strlen(NAMES_AAD)) == 1;
	if (enc) {
		ok = ok &&
		     EVP_CipherUpdate(c, out + TAG, &len, in, (int)n) == 1;
		ok = ok && EVP_CipherFinal_ex(c, out + TAG + len, &len) == 1;
		ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG,
					       out) == 1;
	} else {
		ok = ok && EVP_CipherUpdate(c, out, &len, in + TAG,
					    (int)(n - TAG)) == 1;
		ok = ok && EVP_CipherFinal_ex(c, out + len, &len) == 1;
		if (!ok && n > TAG) /* as aes_gcm(): nothing unchecked */
			OPENSSL_cleanse(out, n - TAG);
	}
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : enc ? -EIO : -EBADMSG;
}

int seal_name_encode(const unsigned char k[64], const char *kn, char *out,
		     size_t len)
{
	unsigned char b[TAG + 80];
	size_t n = strlen(kn);
	int rc;

	if (!n || n > 80 || len < 2 * (TAG + n) + 1)
		return -ENAMETOOLONG;
	rc = siv_run(k, true, (const unsigned char *)kn, n, b);
	if (rc)
		return rc;
	hex_of(b, TAG + n, out);
	return 0;
}

int seal_name_decode(const unsigned char k[64], const char *hex, char *kn,
		     size_t len)
{
	unsigned char b[TAG + 80], p[80];
	size_t h = strlen(hex), n;

	if (h % 2 || h / 2 <= TAG || h / 2 > sizeof(b))
		return -EBADMSG;
	n = h / 2;
	if (bytes_of(hex, n, b))
		return -EBADMSG;
	if (n - TAG >= len || siv_run(k, false, b, n, p))
		return -EBADMSG;
	memcpy(kn, p, n - TAG);
	kn[n - TAG] = '\0';
	return memchr(kn, '\0', n - TAG) ? -EBADMSG : 0;
}

const char *seal_snapshot_ctx(const char *key)
{
	const char *b = strrchr(key, '/');

	return b ? b + 1 : key;
}

void seal_key_id_text(uint64_t id, char out[17])
{
	snprintf(out, 17, "%016" PRIx64, id);
}

int seal_key_match(uint64_t want_id, const struct seal_key *k, char *err,
		   size_t len)
{
	char want[17], have[17];

	seal_key_id_text(want_id, want);
	if (want_id && !k) {
		snprintf(err, len,
			 "the bucket's bodies are encrypted with key %s", want);
		return -ENOKEY;
	}
	if (want_id && k->id != want_id) {
		seal_key_id_text(k->id, have);
		snprintf(err, len,
			 "key_file holds key %s, but the bucket's bodies are "
			 "encrypted with key %s",
			 have, want);
		return -EKEYREJECTED;
	}
	if (!want_id && k) {
		snprintf(err, len, "the bucket's bodies are not encrypted");
		return -EINVAL;
	}
	return 0;
}

/* HKDF-SHA256 of key bytes @ikm with @salt, for @info: @n bytes into
 * @out. */
static int derive(const unsigned char *ikm, size_t len, const char *salt,
		  const char *info, unsigned char *out, size_t n)
{
	EVP_PKEY_CTX *p = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	int ok = p && EVP_PKEY_derive_init(p) > 0 &&
		 EVP_PKEY_CTX_set_hkdf_md(p, EVP_sha256()) > 0 &&
		 EVP_PKEY_CTX_set1_hkdf_salt(p, (const unsigned char *)salt,
					     (int)strlen(salt)) > 0 &&
		 EVP_PKEY_CTX_set1_hkdf_key(p, ikm, (int)len) > 0 &&
		 EVP_PKEY_CTX_add1_hkdf_info(p, (const unsigned char *)info,
					     (int)strlen(info)) > 0 &&
		 EVP_PKEY_derive(p, out, &n) > 0;

	EVP_PKEY_CTX_free(p);
	return ok ? 0 : -EIO;
}

int seal_key_load(const char *path, struct seal_key *k, char *err,
		  size_t errlen)
{
	unsigned char buf[4096], id[8];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	memset(k, 0, sizeof(*k));
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "key file '%s': %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "key file '%s' is not a regular file",
			 path);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		close(fd);
		snprintf(err, errlen,
			 "key file '%s' is open to group or others (mode "
			 "%04o): refused; chmod 600 it",
			 path, (unsigned)(st.st_mode & 07777));
		return -EACCES;
	}
	/* another user's file: whoever owns it may have changed it, or
	 * read it, under this mount's feet */
	if (st.st_uid != geteuid()) {
		close(fd);
		snprintf(err, errlen,
			 "key file '%s' is owned by uid %u, not by this user "
			 "(uid %u): refused",
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EACCES;
	}
	n = io_read_full(fd, buf, sizeof(buf), -1);
	/* one byte more tells a longer file: never cut silently */
	if (n == (ssize_t)sizeof(buf)) {
		unsigned char more;

		if (io_read_full(fd, &more, 1, -1) > 0)
			n = -EFBIG;
	}
	close(fd);
	rc = n < 0 ? (int)n : 0;
	if (rc == -EFBIG) {
		OPENSSL_cleanse(buf, sizeof(buf));
		snprintf(err, errlen,
			 "key file '%s' holds more than %zu bytes: refused",
			 path, sizeof(buf));
		return rc;
	}
	if (rc) {
		snprintf(err, errlen, "key file '%s': %s", path, strerror(-rc));
		return rc;
	}
	if (n < SEAL_KEY_MIN) {
		OPENSSL_cleanse(buf, sizeof(buf));
		snprintf(err, errlen,
			 "key file '%s' holds %zd bytes: a key is at least %d "
			 "(head -c 32 /dev/urandom > FILE)",
			 path, n, SEAL_KEY_MIN);
		return -EINVAL;
	}
	rc = derive(buf, (size_t)n, V1, "encryption", k->enc, sizeof(k->enc));
	if (!rc)
		rc = derive(buf, (size_t)n, V1, "names", k->names,
			    sizeof(k->names));
	if (!rc)
		rc = derive(buf, (size_t)n, V1, "key id", id, sizeof(id));
	if (!rc)
		rc = derive(buf, (size_t)n, V1, "key wrapping", k->kek1,
			    sizeof(k->kek1));
	/* envelope 3 salts this per store (seal_key_salt()) */
	if (!rc)
		rc = derive(buf, (size_t)n, "tallyfs seal v3", "base", k->base,
			    sizeof(k->base));
	OPENSSL_cleanse(buf, sizeof(buf));
	if (rc) {
		OPENSSL_cleanse(k, sizeof(*k));
		snprintf(err, errlen, "key file '%s': key derivation failed",
			 path);
		return rc;
	}
	k->id1 = le_get64(id);
	if (!k->id1)
		k->id1 = 1; /* 0 says "no key" in a header */
	k->id = k->id1;
	memcpy(k->kek, k->kek1, sizeof(k->kek));
	return 0;
}

/* The segments of a body of @len bytes: an empty body is one empty
 * segment, which carries the last-segment flag (the local envelope,
 * core/objects/objcodec.c, has no such flag and no segment then). */
static size_t seg_count(size_t len)
{
	return len ? (len + SEAL_SEGMENT - 1) / SEAL_SEGMENT : 1;
}

size_t seal_bound(size_t len)
{
	return SEAL_HEAD + seg_count(len) * SEAL_SEG_OVER + len;
}

static int make_head(const struct seal *s, unsigned char *h)
{
	memcpy(h, MAGIC, 4);
	h[4] = VERSION;
	h[5] = s->keyed ? F_KEYED : 0;
	h[6] = h[7] = 0;
	le_put64(h + 8, s->store_id);
	le_put64(h + 16, s->keyed ? s->key.id : 0);
	memset(h + 24, 0, 12);
	if (s->keyed && RAND_bytes(h + 24, 12) != 1)
		return -EIO;
	le_put32(h + 36, SEAL_SEGMENT);
	return 0;
}

/* What a segment's tag covers besides its payload. */
struct aad {
	unsigned char b[SEAL_HEAD + 16];
	const char *ctx;
};

static void make_aad(struct aad *a, const unsigned char *head,
		     const unsigned char *seghead, uint64_t idx,
		     const char *ctx)
{
	memcpy(a->b, head, SEAL_HEAD);
	memcpy(a->b + SEAL_HEAD, seghead, 8);
	le_put64(a->b + SEAL_HEAD + 8, idx);
	a->ctx = ctx;
}

static void check_tag(const struct aad *a, const unsigned char *pay, size_t n,
		      unsigned char tag[TAG])
{
	XXH3_state_t *st = XXH3_createState();
	XXH128_canonical_t c;

	if (!st) {
		memset(tag, 0xff, TAG); /* never matches a computed one */
		return;
	}
	XXH3_128bits_reset(st);
	XXH3_128bits_update(st, a->b, sizeof(a->b));
	XXH3_128bits_update(st, a->ctx, strlen(a->ctx));
	XXH3_128bits_update(st, pay, n);
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
	XXH3_freeState(st);
	memcpy(tag, c.digest, TAG);
}

/* AES-256-GCM under @key and nonce @iv of @n bytes @in into @out (may be
 * the same), authenticating @a1 and @a2 too; @enc: encrypt and write
 * @tag, else check it. */
static int aes_gcm(const unsigned char key[32], const unsigned char iv[12],
		   const void *a1, size_t n1, const void *a2, size_t n2,
		   bool enc, const unsigned char *in, size_t n,
		   unsigned char *out, unsigned char tag[TAG])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int len, ok;

	ok = c && (enc ? EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv)
		       : EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key,
					    iv)) == 1;
	ok = ok && EVP_CipherUpdate(c, NULL, &len, a1, (int)n1) == 1;
	ok = ok && EVP_CipherUpdate(c, NULL, &len, a2, (int)n2) == 1;
	if (ok && n)
		ok = EVP_CipherUpdate(c, out, &len, in, (int)n) == 1;
	if (ok && !enc)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG, tag) ==
		     1;
	if (ok)
		ok = EVP_CipherFinal_ex(c, out + n, &len) == 1;
	if (ok && enc)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG, tag) ==
		     1;
	EVP_CIPHER_CTX_free(c);
	/* the decryption wrote the bytes out before the tag said no: none
	 * of them reaches a caller */
	if (!ok && !enc && n)
		OPENSSL_cleanse(out, n);
	if (!c)
		return -ENOMEM;
	return ok ? 0 : enc ? -EIO : -EBADMSG;
}

/* A segment's AES-256-GCM: the nonce the header's with @idx in its last
 * 8 bytes. */
static int gcm(const struct seal *s, const struct aad *a, uint64_t idx,
	       bool enc, const unsigned char *in, size_t n, unsigned char *out,
	       unsigned char tag[TAG])
{
	unsigned char iv[12];

	memcpy(iv, a->b + 24, 12);
	for (int i = 0; i < 8; i++)
		iv[4 + i] ^= (unsigned char)(idx >> (56 - 8 * i));
	return aes_gcm(s->key.enc, iv, a->b, sizeof(a->b), a->ctx,
		       strlen(a->ctx), enc, in, n, out, tag);
}

/* Seal segment @idx (@n bytes of @in) after header @head into @out:
 * the bytes written, or -errno. */
static ssize_t seg_seal(const struct seal *s, ZSTD_CCtx *z,
			const unsigned char *head, const char *ctx,
			uint64_t idx, bool last, const unsigned char *in,
			uint32_t n, unsigned char *out)
{
	unsigned char *pay = out + 8, tag[TAG];
	uint32_t stored = n, flags = last ? S_LAST : 0;
	struct aad a;
	int rc;

	size_t c = squeeze(z, s->level, in, n, SEAL_SEGMENT, pay);

	if (c) {
		stored = (uint32_t)c;
		flags |= S_ZSTD;
	}
	if (!(flags & S_ZSTD) && !s->keyed && n)
		memcpy(pay, in, n);
	le_put32(out, stored | flags);
	le_put32(out + 4, n);
	make_aad(&a, head, out, idx, ctx);
	if (s->keyed) {
		rc = gcm(s, &a, idx, true, flags & S_ZSTD ? pay : in, stored,
			 pay, tag);
		if (rc)
			return rc;
	} else {
		check_tag(&a, pay, stored, tag);
	}
	memcpy(pay + stored, tag, TAG);
	return 8 + (ssize_t)stored + TAG;
}

int seal_buf(const struct seal *s, const char *ctx, const void *in, size_t len,
	     void *out, size_t *outlen)
{
	const unsigned char *p = in;
	unsigned char *o = out;
	ZSTD_CCtx *z = s->level ? ZSTD_createCCtx() : NULL;
	size_t at = SEAL_HEAD, off = 0, i, n = seg_count(len);
	int rc;

	if (s->level && !z)
		return -ENOMEM;
	rc = make_head(s, o);
	for (i = 0; i < n && !rc; i++) {
		uint32_t k = (uint32_t)(len - off < SEAL_SEGMENT
						? len - off
						: SEAL_SEGMENT);
		ssize_t w = seg_seal(s, z, o, ctx, i, i + 1 == n, p + off, k,
				     o + at);

		if (w < 0)
			rc = (int)w;
		else
			at += (size_t)w;
		off += k;
	}
	ZSTD_freeCCtx(z);
	if (!rc)
		*outlen = at;
	return rc;
}

/* Check header @h against @s: 0, or seal_open()'s errors. *@seg: the
 * header's segment size. */
static int check_head(const struct seal *s, const unsigned char *h,
		      uint32_t *seg, uint64_t *key_id)
{
	uint64_t store = le_get64(h + 8), kid = le_get64(h + 16);
	bool keyed;
	size_t i;

	if (memcmp(h, MAGIC, 4) || h[4] != VERSION || (h[5] & ~F_KEYED) ||
	    h[6] || h[7])
		return -EBADMSG;
	*seg = le_get32(h + 36);
	if (!*seg || *seg > SEAL_SEGMENT_MAX)
		return -EBADMSG;
	keyed = h[5] & F_KEYED;
	if (key_id)
		*key_id = kid;
	if (keyed && !s->keyed)
		return -ENOKEY;
	if (!keyed && s->keyed)
		return -EBADMSG; /* a store with a key reads only sealed bodies */
	if (keyed && kid != s->key.id)
		return -EKEYREJECTED;
	if (!keyed && kid)
		return -EBADMSG;
	for (i = 0; i < s->nstores; i++)
		if (s->stores[i] == store)
			break;
	if (s->nstores && i == s->nstores)
		return -EUCLEAN;
	return 0;
}

/* Open segment @idx at @p (@avail bytes from it) into @out (@cap
 * bytes): 0 with *@used, *@made and *@last set, or -errno. @scratch
 * holds a compressed, encrypted payload: @segmax bytes. */
static int seg_open(const struct seal *s, ZSTD_DCtx *z,
		    const unsigned char *head, uint32_t segmax, const char *ctx,
		    uint64_t idx, const unsigned char *p, size_t avail,
		    unsigned char *out, size_t cap, unsigned char *scratch,
		    size_t *used, size_t *made, bool *last)
{
	uint32_t v, stored, plain;
	bool zst;
	const unsigned char *pay = p + 8;
	unsigned char tag[TAG];
	struct aad a;
	int rc;

	if (avail < 8 + TAG)
		return -EBADMSG;
	v = le_get32(p);
	stored = v & S_LEN;
	zst = v & S_ZSTD;
	*last = v & S_LAST;
	plain = le_get32(p + 4);
	if (plain > segmax || stored > avail - 8 - TAG ||
	    (zst ? stored >= plain || !stored : stored != plain))
		return -EBADMSG;
	if (plain > cap)
		return -EFBIG;
	make_aad(&a, head, p, idx, ctx);
	memcpy(tag, pay + stored, TAG);
	if (s->keyed) {
		rc = gcm(s, &a, idx, false, pay, stored, zst ? scratch : out,
			 tag);
		if (rc)
			return rc;
		pay = zst ? scratch : out;
	} else {
		unsigned char want[TAG];

		check_tag(&a, pay, stored, want);
		if (memcmp(want, tag, TAG))
			return -EBADMSG;
		if (!zst && plain)
			memcpy(out, pay, plain);
	}
	if (zst) {
		size_t r = ZSTD_decompressDCtx(z, out, plain, pay, stored);

		if (ZSTD_isError(r) || r != plain)
			return -EBADMSG;
	}
	*used = 8 + (size_t)stored + TAG;
	*made = plain;
	return 0;
}

int seal_open(const struct seal *s, const char *ctx, const void *in, size_t len,
	      void *out, size_t cap, size_t *outlen, uint64_t *key_id)
{
	const unsigned char *p = in;
	unsigned char *scratch = NULL;
	ZSTD_DCtx *z = NULL;
	size_t at = SEAL_HEAD, made = 0;
	uint32_t segmax;
	uint64_t idx;
	bool last = false;
	int rc;

	if (len < SEAL_HEAD)
		return -EBADMSG;
	rc = check_head(s, p, &segmax, key_id);
	if (rc)
		return rc;
	z = ZSTD_createDCtx();
	/* a compressed payload is smaller than its segment and the body */
	scratch = malloc(len < segmax ? len : segmax);
	if (!z || !scratch)
		rc = -ENOMEM;
	for (idx = 0; !rc && !last; idx++) {
		size_t used, n;

		rc = seg_open(s, z, p, segmax, ctx, idx, p + at, len - at,
			      (unsigned char *)out + made, cap - made, scratch,
			      &used, &n, &last);
		if (!rc) {
			at += used;
			made += n;
		}
	}
	if (!rc && at != len)
		rc = -EBADMSG; /* bytes after the last segment */
	ZSTD_freeDCtx(z);
	free(scratch);
	if (!rc)
		*outlen = made;
	return rc;
}

static int write_full(int fd, const void *buf, size_t n)
{
	size_t put = 0;

	while (put < n) {
		ssize_t w = write(fd, (const char *)buf + put, n - put);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		put += (size_t)w;
	}
	return 0;
}

int seal_fd(const struct seal *s, const char *ctx, int in, int out,
	    uint64_t *plain)
{
	unsigned char head[SEAL_HEAD];
	unsigned char *cur = malloc(SEAL_SEGMENT), *nxt = malloc(SEAL_SEGMENT);
	unsigned char *o = malloc(SEAL_SEGMENT + SEAL_SEG_OVER);
	ZSTD_CCtx *z = s->level ? ZSTD_createCCtx() : NULL;
	ssize_t n, m = 0;
	uint64_t idx = 0, total = 0;
	int rc = 0;

	if (!cur || !nxt || !o || (s->level && !z))
		rc = -ENOMEM;
	if (!rc)
		rc = make_head(s, head);
	if (!rc)
		rc = write_full(out, head, SEAL_HEAD);
	n = rc ? 0 : io_read_full(in, cur, SEAL_SEGMENT, -1);
	if (n < 0)
		rc = (int)n;
	while (!rc) {
		unsigned char *t;
		ssize_t w;

		m = n == SEAL_SEGMENT ? io_read_full(in, nxt, SEAL_SEGMENT, -1)
				      : 0;
		if (m < 0) {
			rc = (int)m;
			break;
		}
		w = seg_seal(s, z, head, ctx, idx++, m == 0, cur, (uint32_t)n,
			     o);
		if (w < 0) {
			rc = (int)w;
			break;
		}
		rc = write_full(out, o, (size_t)w);
		total += (uint64_t)n;
		if (m == 0)
			break;
		t = cur;
		cur = nxt;
		nxt = t;
		n = m;
	}
	ZSTD_freeCCtx(z);
	free(cur);
	free(nxt);
	free(o);
	if (!rc && plain)
		*plain = total;
	return rc;
}

int seal_open_fd(const struct seal *s, const char *ctx, int in, int out,
		 uint64_t *plain, uint64_t *key_id)
{
	unsigned char head[SEAL_HEAD], sh[8];
	unsigned char *seg = NULL, *o = NULL, *scratch = NULL;
	ZSTD_DCtx *z = NULL;
	uint32_t segmax;
	uint64_t idx, total = 0;
	bool last = false;
	ssize_t n = io_read_full(in, head, SEAL_HEAD, -1);
	int rc = n < 0 ? (int)n : n < SEAL_HEAD ? -EBADMSG : 0;

	if (!rc)
		rc = check_head(s, head, &segmax, key_id);
	if (!rc) {
		seg = malloc((size_t)segmax + SEAL_SEG_OVER);
		o = malloc(segmax);
		scratch = malloc(segmax);
		z = ZSTD_createDCtx();
		if (!seg || !o || !scratch || !z)
			rc = -ENOMEM;
	}
	for (idx = 0; !rc && !last; idx++) {
		uint32_t stored;
		size_t used, made;

		n = io_read_full(in, sh, 8, -1);
		if (n != 8) {
			rc = n < 0 ? (int)n : -EBADMSG;
			break;
		}
		stored = le_get32(sh) & S_LEN;
		if (stored > segmax) {
			rc = -EBADMSG;
			break;
		}
		memcpy(seg, sh, 8);
		n = io_read_full(in, seg + 8, (size_t)stored + TAG, -1);
		if (n != (ssize_t)stored + TAG) {
			rc = n < 0 ? (int)n : -EBADMSG;
			break;
		}
		rc = seg_open(s, z, head, segmax, ctx, idx, seg,
			      8 + (size_t)stored + TAG, o, segmax, scratch,
			      &used, &made, &last);
		if (!rc)
			rc = write_full(out, o, made);
		total += made;
	}
	if (!rc) {
		n = io_read_full(in, sh, 1, -1);
		rc = n < 0 ? (int)n : n ? -EBADMSG : 0;
	}
	ZSTD_freeDCtx(z);
	free(seg);
	free(o);
	free(scratch);
	if (!rc && plain)
		*plain = total;
	return rc;
}

/* ------------------------------------------------------------------ */
/* envelopes 2 and 3: the store's keys, wrapped by each key file's */

#define RING_AAD "tallyfs keyring 2"
#define RING3_AAD "tallyfs keyring 3"
#define RING_PLAIN (32 + 64 + 8) /* enc, names, id */
#define RING_BYTES (12 + RING_PLAIN + TAG)
#define SALT 16
#define MAC 32
/* scrypt's cost for a key file's salted id and wrapping key: 16 MiB
 * and about 80 ms here, once per mount, restore or check (the fuzz
 * harness builds it cheap: it derives one per input) */
#ifndef SCRYPT_LOG_N
#define SCRYPT_LOG_N 14
#endif
#define SCRYPT_MEM (64u << 20)

int seal_record_version(const char *text)
{
	static const char *const v[] = { "envelope 1\n", "envelope 2\n",
					 "envelope 3\n" };
	const char *e = strstr(text, "envelope ");

	if (!e || (e != text && e[-1] != '\n'))
		return 0;
	for (int i = 0; i < 3; i++)
		if (!strncmp(e, v[i], strlen(v[i])))
			return i + 1;
	return -1;
}

bool seal_ringed(const char *text)
{
	return seal_record_version(text) >= 2;
}

/* The salt of envelope 3 record @text: 0 or -EBADMSG. */
static int record_salt(const char *text, unsigned char salt[SALT])
{
	const char *l = strstr(text, "\nsalt ");

	if (!l || strspn(l + 6, "0123456789abcdef") != 2 * SALT ||
	    l[6 + 2 * SALT] != '\n')
		return -EBADMSG;
	return bytes_of(l + 6, SALT, salt);
}

/* Key file @k's id and wrapping key in a store of salt @salt: scrypt of
 * its base key (a slow derivation: a weak key file is costly to guess
 * from a record, and no id links two stores). */
static int salt_with(struct seal_key *k, const unsigned char salt[SALT])
{
	unsigned char out[8 + 32];

	if (k->salted && !memcmp(k->salt, salt, SALT))
		return 0;
	if (EVP_PBE_scrypt((const char *)k->base, sizeof(k->base), salt, SALT,
			   1ull << SCRYPT_LOG_N, 8, 1, SCRYPT_MEM, out,
			   sizeof(out)) != 1)
		return -EIO;
	k->id = le_get64(out);
	if (!k->id)
		k->id = 1; /* 0 says "no key" */
	memcpy(k->kek, out + 8, 32);
	OPENSSL_cleanse(out, sizeof(out));
	memcpy(k->salt, salt, SALT);
	k->salted = true;
	return 0;
}

int seal_key_salt(struct seal_key *k, const char *text)
{
	unsigned char salt[SALT];

	if (seal_record_version(text) != 3) {
		k->id = k->id1;
		memcpy(k->kek, k->kek1, sizeof(k->kek));
		k->salted = false;
		return 0;
	}
	if (record_salt(text, salt))
		return -EBADMSG;
	return salt_with(k, salt);
}

/* The mac of the first @n bytes of record @text under the store's keys
 * @keys (HMAC-SHA256 under a key derived from them): 0 or -EIO. */
static int record_mac(const struct seal_key *keys, const char *text, size_t n,
		      unsigned char mac[MAC])
{
	unsigned char ikm[96], mk[32];
	size_t ml = 0;
	int rc;

	memcpy(ikm, keys->enc, 32);
	memcpy(ikm + 32, keys->names, 64);
	rc = derive(ikm, sizeof(ikm), "tallyfs seal v3", "record mac", mk,
		    sizeof(mk));
	OPENSSL_cleanse(ikm, sizeof(ikm));
	if (!rc &&
	    (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, mk, sizeof(mk),
			(const unsigned char *)text, n, mac, MAC, &ml) ||
	     ml != MAC))
		rc = -EIO;
	OPENSSL_cleanse(mk, sizeof(mk));
	return rc;
}

/* Whether envelope 3 record @text ends in a mac of its other lines under
 * the store's keys @keys: 0, or -EBADMSG (altered, or another store's). */
static int record_check(const char *text, const struct seal_key *keys)
{
	unsigned char mac[MAC], got[MAC];
	const char *l = strstr(text, "\nmac ");

	if (!l || strspn(l + 5, "0123456789abcdef") != 2 * MAC ||
	    strcmp(l + 5 + 2 * MAC, "\n") || bytes_of(l + 5, MAC, got) ||
	    record_mac(keys, text, (size_t)(l + 1 - text), mac))
		return -EBADMSG;
	return CRYPTO_memcmp(mac, got, MAC) ? -EBADMSG : 0;
}

/* What a ring authenticates besides its bytes: its key's id, and in
 * envelope 3 the store's salt before it (a ring is its store's). */
static size_t ring_ad(const struct seal_key *file, const unsigned char *salt,
		      unsigned char ad[SALT + 8], const char **aad)
{
	*aad = salt ? RING3_AAD : RING_AAD;
	if (!salt) {
		le_put64(ad, file->id);
		return 8;
	}
	memcpy(ad, salt, SALT);
	le_put64(ad + SALT, file->id);
	return SALT + 8;
}

/* The keyring line of @keys wrapped under key file @file's key (salted
 * for @salt in envelope 3, NULL in 2) into @line (SEAL_RING_LINE bytes):
 * 0 or -EIO. */
static int ring_line(const struct seal_key *file, const struct seal_key *keys,
		     const unsigned char *salt, char *line)
{
	unsigned char plain[RING_PLAIN], ring[RING_BYTES], ad[SALT + 8];
	char id[17], hex[2 * RING_BYTES + 1];
	const char *aad;
	size_t adn = ring_ad(file, salt, ad, &aad);
	int rc;

	memcpy(plain, keys->enc, 32);
	memcpy(plain + 32, keys->names, 64);
	le_put64(plain + 96, keys->id);
	rc = RAND_bytes(ring, 12) == 1 ? 0 : -EIO;
	if (!rc)
		rc = aes_gcm(file->kek, ring, aad, strlen(aad), ad, adn, true,
			     plain, RING_PLAIN, ring + 12,
			     ring + 12 + RING_PLAIN);
	OPENSSL_cleanse(plain, sizeof(plain));
	if (rc)
		return rc;
	seal_key_id_text(file->id, id);
	hex_of(ring, sizeof(ring), hex);
	snprintf(line, SEAL_RING_LINE, "keyring %s %s\n", id, hex);
	return 0;
}

/* The ring of key @id in seal record @text (its hex, after "keyring ID "),
 * or NULL. */
static const char *ring_find(const char *text, uint64_t id)
{
	char want[8 + 17 + 1], hex[17];
	const char *l = text;

	seal_key_id_text(id, hex);
	snprintf(want, sizeof(want), "keyring %s ", hex);
	while ((l = strstr(l, want)) != NULL) {
		if (l == text || l[-1] == '\n')
			return l + strlen(want);
		l++;
	}
	return NULL;
}

/* Append the lines of @text that are rings of keys other than @skip to
 * @out (@len bytes, holding *@n): 0 or -ENAMETOOLONG. */
static int other_rings(const char *text, uint64_t skip, char *out, size_t len,
		       size_t *n)
{
	char mine[8 + 17 + 1], hex[17];
	const char *l = text;

	seal_key_id_text(skip, hex);
	snprintf(mine, sizeof(mine), "keyring %s ", hex);
	while (*l) {
		size_t ll = strcspn(l, "\n");

		ll += l[ll] ? 1 : 0;
		if (!strncmp(l, "keyring ", 8) &&
		    strncmp(l, mine, strlen(mine))) {
			if (*n + ll >= len)
				return -ENAMETOOLONG;
			memcpy(out + *n, l, ll);
			*n += ll;
			out[*n] = '\0';
		}
		l += ll;
	}
	return 0;
}

/* The mac line of the @n bytes of record @out (@len bytes) appended:
 * 0 or -errno. */
static int add_mac(const struct seal_key *keys, char *out, size_t len, size_t n)
{
	unsigned char mac[MAC];
	char hex[2 * MAC + 1];
	int rc = record_mac(keys, out, n, mac);

	if (rc)
		return rc;
	hex_of(mac, MAC, hex);
	if (n + 4 + 2 * MAC + 1 >= len)
		return -ENAMETOOLONG;
	snprintf(out + n, len - n, "mac %s\n", hex);
	return 0;
}

/* An envelope 3 record into @out (@len bytes): salt @salt, key file
 * @file (salted for it) in force with its ring of @keys first, the rings
 * of @others (lines of other keys, may be NULL) after, then the mac. */
static int record3(const unsigned char salt[SALT], const struct seal_key *keys,
		   const struct seal_key *file, const char *others, char *out,
		   size_t len)
{
	char sh[2 * SALT + 1], id[17], line[SEAL_RING_LINE];
	size_t n;
	int rc = ring_line(file, keys, salt, line);

	if (rc)
		return rc;
	hex_of(salt, SALT, sh);
	seal_key_id_text(file->id, id);
	n = (size_t)snprintf(out, len, "envelope 3\nsalt %s\nkey_id %s\n%s", sh,
			     id, line);
	if (n >= len)
		return -ENAMETOOLONG;
	if (others) {
		rc = other_rings(others, file->id, out, len, &n);
		if (rc)
			return rc;
	}
	return add_mac(keys, out, len, n);
}

int seal_keyring_make(struct seal_key *file, struct seal_key *out, char *text,
		      size_t len)
{
	unsigned char salt[SALT], id[8] = { 0 };
	int rc = -EIO;

	memset(out, 0, sizeof(*out));
	/* the store's keys and their id (which every body's header names,
	 * for good) are random: nothing in the bucket is derived from the
	 * key file but its ring, under a salt of this store's */
	if (RAND_bytes(out->enc, sizeof(out->enc)) == 1 &&
	    RAND_bytes(out->names, sizeof(out->names)) == 1 &&
	    RAND_bytes(id, sizeof(id)) == 1 && RAND_bytes(salt, SALT) == 1)
		rc = salt_with(file, salt);
	out->id = le_get64(id);
	if (!out->id)
		out->id = 1;
	if (!rc)
		rc = record3(salt, out, file, NULL, text, len);
	if (rc)
		OPENSSL_cleanse(out, sizeof(*out));
	return rc;
}

int seal_keyring_open(const char *text, const struct seal_key *file,
		      struct seal_key *out, char *err, size_t len)
{
	unsigned char plain[RING_PLAIN], ring[RING_BYTES], ad[SALT + 8];
	int v = seal_record_version(text);
	struct seal_key f;
	char id[17];
	const char *l, *aad;
	size_t adn;
	int rc;

	if (v < 0) {
		snprintf(err, len, "the seal record is of an unknown envelope");
		return -EBADMSG;
	}
	if (v < 2) {
		*out = *file; /* envelope 1: the key file's own keys */
		return 0;
	}
	f = *file; /* salted for this record, cleansed on every way out */
	rc = seal_key_salt(&f, text);
	if (rc) {
		OPENSSL_cleanse(&f, sizeof(f));
		snprintf(err, len, "the seal record's salt is damaged");
		return rc;
	}
	seal_key_id_text(f.id, id);
	l = ring_find(text, f.id);
	if (!l) {
		const char *k = strstr(text, "\nkey_id ");

		OPENSSL_cleanse(&f, sizeof(f));
		snprintf(err, len,
			 "key_file holds key %s, but the bucket's bodies are "
			 "encrypted with key %.16s (its keys are not wrapped "
			 "for key %s)",
			 id, k ? k + 8 : "?", id);
		return -EKEYREJECTED;
	}
	if (strspn(l, "0123456789abcdef") != 2 * RING_BYTES ||
	    l[2 * RING_BYTES] != '\n' || bytes_of(l, RING_BYTES, ring)) {
		OPENSSL_cleanse(&f, sizeof(f));
		snprintf(err, len, "the keyring of key %s is damaged", id);
		return -EBADMSG;
	}
	adn = ring_ad(&f, v == 3 ? f.salt : NULL, ad, &aad);
	rc = aes_gcm(f.kek, ring, aad, strlen(aad), ad, adn, false, ring + 12,
		     RING_PLAIN, plain, ring + 12 + RING_PLAIN);
	OPENSSL_cleanse(&f, sizeof(f));
	if (rc) {
		snprintf(err, len,
			 "the keyring of key %s does not open with this key "
			 "file (altered, another store's, or another key with "
			 "the same id)",
			 id);
		return rc == -EBADMSG ? -EKEYREJECTED : rc;
	}
	memset(out, 0, sizeof(*out));
	memcpy(out->enc, plain, 32);
	memcpy(out->names, plain + 32, 64);
	out->id = le_get64(plain + 96);
	OPENSSL_cleanse(plain, sizeof(plain));
	/* envelope 3: the lines around the ring (the key in force, the other
	 * rings) are the store's own, as the last one's mac says */
	if (v == 3 && record_check(text, out)) {
		OPENSSL_cleanse(out, sizeof(*out));
		snprintf(err, len,
			 "the seal record was altered: its mac does not match "
			 "the keys its ring of key %s holds",
			 id);
		return -EBADMSG;
	}
	return 0;
}

int seal_key_open(const char *text, uint64_t want_id,
		  const struct seal_key *file, struct seal_key *out, char *err,
		  size_t len)
{
	int rc;

	/* envelopes 2 and 3: any key with a ring (both, while a rekey runs) */
	if (want_id && file && seal_ringed(text))
		return seal_keyring_open(text, file, out, err, len);
	rc = seal_key_match(want_id, file, err, len);
	if (!rc && file)
		*out = *file;
	return rc;
}

int seal_keyring_add(const char *text, const struct seal_key *keys,
		     struct seal_key *file, const struct seal_key *also,
		     char *out, size_t len)
{
	unsigned char salt[SALT];
	char line[SEAL_RING_LINE];
	struct seal_key a;
	int rc;

	switch (seal_record_version(text)) {
	case 3:
		/* the rings kept are the store's own, as its mac says */
		rc = record_check(text, keys);
		if (!rc)
			rc = record_salt(text, salt);
		if (!rc)
			rc = salt_with(file, salt);
		return rc ? rc : record3(salt, keys, file, text, out, len);
	case 2:
		/* made envelope 3: a new salt, @file's ring and @also's (the
		 * rings of envelope 2 cannot be salted without their key
		 * files: the caller's record holds @also's alone) */
		if (!also)
			return -EINVAL;
		if (RAND_bytes(salt, SALT) != 1)
			return -EIO;
		a = *also;
		rc = salt_with(file, salt);
		if (!rc)
			rc = salt_with(&a, salt);
		line[0] = '\0';
		if (!rc && a.id != file->id)
			rc = ring_line(&a, keys, salt, line);
		OPENSSL_cleanse(&a, sizeof(a));
		return rc ? rc : record3(salt, keys, file, line, out, len);
	default:
		return -EINVAL;
	}
}

int seal_keyring_trim(const char *text, const struct seal_key *keys, char *out,
		      size_t len)
{
	const char *k = strstr(text, "\nkey_id "), *ring, *first;
	int v = seal_record_version(text);
	unsigned long long id;
	size_t n;
	int rc;

	if (v < 2 || !k || sscanf(k + 8, "%16llx", &id) != 1)
		return -EINVAL;
	/* the key in force is the store's word, as its mac says */
	if (v == 3 && record_check(text, keys))
		return -EBADMSG;
	ring = ring_find(text, id);
	first = strstr(text, "\nkeyring ");
	if (!ring || !first)
		return -EINVAL;
	ring -= 8 + 17; /* the line's start */
	/* the lines before the first ring (envelope, salt, key in force),
	 * then the ring of the key in force */
	n = (size_t)snprintf(out, len, "%.*s%.*s", (int)(first + 1 - text),
			     text, (int)(strcspn(ring, "\n") + 1), ring);
	if (n >= len)
		return -ENAMETOOLONG;
	if (v == 3) {
		rc = add_mac(keys, out, len, n);
		if (rc)
			return rc;
	}
	return strcmp(out, text) ? 1 : 0;
}
