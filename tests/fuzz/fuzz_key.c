/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for object names and GC keys (core/util/hash.c
 * hash_name_valid, core/objects/objstore.c objstore_key/objstore_key_split): the
 * name check agrees with the grammar written out here (32 lowercase hex
 * digits, optionally "-N" with N a decimal of at most 10 digits not
 * starting with 0); splitting any key never overflows the name buffer;
 * every key of a valid name and shard splits back to them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/hash.h"
#include "core/objects/objstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* The grammar of an object name, independently of hash_name_valid. */
static int ref_valid(const char *s)
{
	size_t len = strlen(s), i;

	if (len < HASH_HEX_LEN)
		return 0;
	for (i = 0; i < HASH_HEX_LEN; i++)
		if (!is_hex(s[i]))
			return 0;
	if (len == HASH_HEX_LEN)
		return 1;
	if (s[i] != '-' || len - HASH_HEX_LEN - 1 < 1 ||
	    len - HASH_HEX_LEN - 1 > 10 || s[i + 1] == '0')
		return 0;
	for (i++; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* The first @n bytes of @s are a valid name. */
static int ref_valid_prefix(const char *s, size_t n)
{
	char buf[OBJNAME_MAX];

	if (n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return ref_valid(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *key, *at, name[OBJNAME_MAX], again[OBJSTORE_KEY_MAX];
	unsigned shard, want;

	if (size > 4096)
		return 0;
	key = malloc(size + 1); /* exact size: ASan sees overreads */
	if (!key)
		abort();
	memcpy(key, data, size);
	key[size] = '\0';

	if (!!hash_name_valid(key) != ref_valid(key))
		abort();

	memset(name, 'x', sizeof(name));
	shard = objstore_key_split(key, name);
	if (!memchr(name, '\0', sizeof(name)))
		abort();
	if (!strchr(key, '@') &&
	    (shard != 0 || strncmp(name, key, sizeof(name) - 1)))
		abort();
	/* a well-formed key, "NAME@N", splits into NAME and N */
	at = strchr(key, '@');
	if (at && ref_valid_prefix(key, (size_t)(at - key)) && at[1] >= '1' &&
	    at[1] <= '9' && strlen(at + 1) <= 2 &&
	    strspn(at + 1, "0123456789") == strlen(at + 1)) {
		want = (unsigned)atoi(at + 1);
		objstore_key(again, name, shard);
		if (shard != want || strcmp(again, key))
			abort();
	}
	/* any valid name with any shard goes and comes back */
	if (size >= HASH_HEX_LEN + 4) {
		static const char hex[] = "0123456789abcdef";
		char hx[HASH_HEX_LEN + 1], nm[OBJNAME_MAX], got[OBJNAME_MAX];
		size_t i;

		for (i = 0; i < HASH_HEX_LEN; i++)
			hx[i] = hex[data[i] & 15];
		hx[i] = '\0';
		memcpy(&want, data + HASH_HEX_LEN, 4);
		hash_variant_name(hx, want & 1 ? want % 1000000 : 0, nm);
		want %= OBJSTORE_MAX_SHARDS;
		if (!hash_name_valid(nm))
			abort();
		objstore_key(again, nm, want);
		if (objstore_key_split(again, got) != want || strcmp(got, nm))
			abort();
	}
	free(key);
	return 0;
}
