/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the envelope of bodies in the bucket
 * (core/s3/seal.c). The first byte picks what the rest is:
 *   0  a body from the bucket, opened with and without a key: opens or
 *      is refused, never a crash or a read out of bounds;
 *   1  plain bytes: sealed (with a key or not, compressed or not) and
 *      opened again, equal; with one byte flipped, refused;
 *   2  segments of a store without a key, given their right tags (as
 *      anyone who writes to the bucket can): the framing and zstd's
 *      decoder meet arbitrary payloads; nothing but the bytes they
 *      decode to, at most the room given, or a refusal.
 * A first byte of 0xf0 or more: the rest is a seal record, as a marker
 * in the bucket holds it (the keyrings of envelopes 2 and 3): parsed, opened with a
 * key file's key (never with success: no ring is forged without it),
 * trimmed and given another ring.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core/s3/bucket.h"
#include "core/s3/seal.h"
#include "core/util/le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROOM (2u << 20)

static unsigned char out[ROOM];

static void seals(struct seal *k, struct seal *p)
{
	memset(k, 0, sizeof(*k));
	memset(p, 0, sizeof(*p));
	k->keyed = true;
	memset(k->key.enc, 0x5a, sizeof(k->key.enc));
	k->key.id = 0x1234;
	k->store_id = p->store_id = 7;
}

/* A body of a store without a key, its segments' heads and payloads
 * from @d, each given the tag core/s3/seal.c computes. */
static size_t forge(const uint8_t *d, size_t n, unsigned char *body, size_t cap)
{
	size_t at = SEAL_HEAD;
	uint64_t idx = 0;

	memset(body, 0, SEAL_HEAD);
	memcpy(body, "TLYE", 4);
	body[4] = 1;
	body[8] = 7; /* store 7 */
	le_put32(body + 36, SEAL_SEGMENT);
	while (n >= 8 && at + 8 + 16 < cap) {
		uint32_t stored = (uint32_t)d[0] | (uint32_t)d[1] << 8;
		unsigned char *seg = body + at, ib[8];
		XXH3_state_t *st;
		XXH128_canonical_t c;

		/* the length as the payload taken, the flags from the input */
		if (stored > n - 8)
			stored = (uint32_t)(n - 8);
		if (at + 8 + stored + 16 > cap)
			break;
		le_put32(seg, stored | ((uint32_t)d[3] & 0xc0u) << 24);
		memcpy(seg + 4, d + 4, 4);
		memcpy(seg + 8, d + 8, stored);
		for (int i = 0; i < 8; i++)
			ib[i] = (unsigned char)(idx >> (8 * i));
		st = XXH3_createState();
		if (!st)
			abort();
		XXH3_128bits_reset(st);
		XXH3_128bits_update(st, body, SEAL_HEAD);
		XXH3_128bits_update(st, seg, 8);
		XXH3_128bits_update(st, ib, 8);
		XXH3_128bits_update(st, "obj", 3);
		XXH3_128bits_update(st, seg + 8, stored);
		XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
		XXH3_freeState(st);
		memcpy(seg + 8 + stored, c.digest, 16);
		at += 8 + stored + 16;
		d += 8 + stored;
		n -= 8 + stored;
		idx++;
	}
	return at;
}

/* A seal record from the bucket: refused or opened, never a crash. */
static void record(const uint8_t *d, size_t n)
{
	char *text = malloc(n + 1), seal[SEAL_TEXT_MAX], err[256];
	char more[SEAL_TEXT_MAX];
	struct seal_key file, keys, got;
	uint64_t id;
	int rc;

	if (!text)
		return;
	memcpy(text, d, n);
	text[n] = '\0';
	memset(&file, 0, sizeof(file));
	memset(file.kek, 0x33, sizeof(file.kek));
	memset(file.kek1, 0x33, sizeof(file.kek1));
	memset(file.base, 0x44, sizeof(file.base));
	file.id = file.id1 = 0x1234;
	keys = file;
	(void)seal_key_salt(&file, text); /* once: the calls below reuse it */
	rc = bucket_seal_parse(text, seal, sizeof(seal), &id);
	if (rc && rc != -EUCLEAN)
		abort();
	rc = seal_keyring_open(text, &file, &got, err, sizeof(err));
	if (!rc && seal_ringed(text))
		abort(); /* a ring opened that no key file wrapped */
	rc = seal_key_open(text, id, &file, &got, err, sizeof(err));
	(void)rc;
	rc = seal_keyring_trim(text, &keys, more, sizeof(more));
	if (rc < 0 && rc != -EINVAL && rc != -ENAMETOOLONG && rc != -EBADMSG)
		abort();
	rc = seal_keyring_add(text, &keys, &file, &file, more, sizeof(more));
	if (rc && rc != -EINVAL && rc != -ENAMETOOLONG && rc != -EBADMSG)
		abort();
	/* a record made by add parses, and trims to one ring */
	if (!rc && !bucket_seal_parse(text, seal, sizeof(seal), &id) &&
	    (bucket_seal_parse(more, seal, sizeof(seal), &id) ||
	     seal_keyring_open(more, &file, &got, err, sizeof(err)) ||
	     memcmp(got.enc, keys.enc, sizeof(keys.enc))))
		abort();
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seal k, p;
	size_t got;
	int rc;

	if (!size || size > ROOM)
		return 0;
	if (data[0] >= 0xf0) {
		record(data + 1, size - 1);
		return 0;
	}
	seals(&k, &p);
	switch (data[0] % 3) {
	case 0:
		rc = seal_open(&k, "obj", data + 1, size - 1, out, ROOM, &got,
			       NULL);
		if (rc == 0)
			abort(); /* no key, no body: a forgery opened */
		rc = seal_open(&p, "obj", data + 1, size - 1, out, ROOM, &got,
			       NULL);
		if (rc && rc != -EBADMSG && rc != -ENOKEY && rc != -EFBIG &&
		    rc != -ENOMEM)
			abort();
		break;
	case 1: {
		struct seal *s = data[0] & 8 ? &k : &p;
		size_t n = size - 1, len = 0;
		unsigned char *body = malloc(seal_bound(n));

		s->level = (data[0] >> 4) % 4 * 3; /* 0, 3, 6, 9 */
		if (!body)
			return 0;
		if (seal_buf(s, "obj", data + 1, n, body, &len))
			abort();
		if (seal_open(s, "obj", body, len, out, ROOM, &got, NULL) ||
		    got != n || memcmp(out, data + 1, n))
			abort();
		body[(data[0] * 131u + n) % len] ^= 0x01;
		if (seal_open(s, "obj", body, len, out, ROOM, &got, NULL) == 0)
			abort();
		free(body);
		break;
	}
	default: {
		size_t cap = SEAL_HEAD + 2 * size + 64, len;
		unsigned char *body = malloc(cap);

		if (!body)
			return 0;
		len = forge(data + 1, size - 1, body, cap);
		rc = seal_open(&p, "obj", body, len, out, ROOM, &got, NULL);
		if (rc && rc != -EBADMSG && rc != -EFBIG && rc != -ENOMEM)
			abort();
		if (!rc && got > ROOM)
			abort();
		free(body);
		break;
	}
	}
	return 0;
}
