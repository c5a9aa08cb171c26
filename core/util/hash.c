/* SPDX-License-Identifier: MIT */
/*
 * XXH3-128 block naming (libxxhash), with the test-only bit truncation.
 */
#include "core/util/hash.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

static void hash_hex(XXH128_hash_t h, char hex[HASH_HEX_LEN + 1])
{
	uint64_t hi = h.high64, lo = h.low64;

#if TALLY_HASH_BITS > 0 && TALLY_HASH_BITS < 128
#if TALLY_HASH_BITS <= 64
	hi &= ~UINT64_C(0) << (64 - TALLY_HASH_BITS);
	lo = 0;
#else
	lo &= ~UINT64_C(0) << (128 - TALLY_HASH_BITS);
#endif
#endif
	snprintf(hex, HASH_HEX_LEN + 1, "%016llx%016llx",
		 (unsigned long long)hi, (unsigned long long)lo);
}

void hash_block(const void *buf, size_t len, char hex[HASH_HEX_LEN + 1])
{
	hash_hex(XXH3_128bits(buf, len), hex);
}

struct hash_state *hash_begin(void)
{
	XXH3_state_t *st = XXH3_createState();

	if (st)
		XXH3_128bits_reset(st);
	return (struct hash_state *)st;
}

void hash_update(struct hash_state *h, const void *buf, size_t len)
{
	XXH3_128bits_update((XXH3_state_t *)h, buf, len);
}

void hash_end(struct hash_state *h, char hex[HASH_HEX_LEN + 1])
{
	if (hex)
		hash_hex(XXH3_128bits_digest((XXH3_state_t *)h), hex);
	XXH3_freeState((XXH3_state_t *)h);
}

int hash_fd(int fd, unsigned long long size, char hex[HASH_HEX_LEN + 1])
{
	struct hash_state *h = hash_begin();
	char *buf = malloc(HASH_FD_CHUNK);
	unsigned long long off = 0;
	int rc = 0;

	if (!h || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (off < size) {
		size_t want = size - off < HASH_FD_CHUNK ? (size_t)(size - off)
							 : HASH_FD_CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)off);

		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0) {
			rc = -EUCLEAN; /* shorter than @size */
			goto out;
		}
		hash_update(h, buf, (size_t)n);
		off += (unsigned long long)n;
	}
out:
	free(buf);
	if (h)
		hash_end(h, rc ? NULL : hex);
	return rc;
}

int hash_name_check(const char *name, const char *hex)
{
	return strncmp(name, hex, HASH_HEX_LEN) == 0 ? 0 : -EBADMSG;
}

void hash_variant_name(const char *hex, unsigned variant, char out[OBJNAME_MAX])
{
	if (variant == 0)
		snprintf(out, OBJNAME_MAX, "%.32s", hex);
	else
		snprintf(out, OBJNAME_MAX, "%.32s-%u", hex, variant);
}

int hash_name_valid(const char *name)
{
	size_t i;

	for (i = 0; i < HASH_HEX_LEN; i++)
		if (!((name[i] >= '0' && name[i] <= '9') ||
		      (name[i] >= 'a' && name[i] <= 'f')))
			return 0;
	if (name[i] == '\0')
		return 1;
	if (name[i] != '-' || name[i + 1] < '1' || name[i + 1] > '9')
		return 0;
	for (i++; name[i]; i++)
		if (name[i] < '0' || name[i] > '9' || i > HASH_HEX_LEN + 10)
			return 0;
	return 1;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *hex, size_t n, unsigned char *out)
{
	int rc = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		int hi = hexval((unsigned char)hex[2 * i]);
		int lo = hexval((unsigned char)hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			rc = -EINVAL;
		out[i] = (unsigned char)(hi < 0 || lo < 0 ? 0 : hi << 4 | lo);
	}
	return rc;
}
