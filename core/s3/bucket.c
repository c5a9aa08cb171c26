/* SPDX-License-Identifier: MIT */
/*
 * The layout of the bucket (core/s3/bucket.h): the full keys of objects,
 * the marker naming the store, and whole sorted listings.
 */
#include "core/s3/bucket.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/meta/meta.h"
#include "core/s3/seal.h"
#include "core/util/array.h"

int bucket_object_key(const struct s3_cfg *cfg, const char *name, char *key,
		      size_t len)
{
	char rel[16 + SEAL_NAME_MAX], keyed[SEAL_NAME_MAX];

	if (cfg->names_key) {
		int rc = seal_name_encode(cfg->names_key, name, keyed,
					  sizeof(keyed));

		if (rc)
			return rc;
		name = keyed;
	}
	snprintf(rel, sizeof(rel), "objects/%.2s/%s", name, name);
	return s3_key(cfg, rel, key, len);
}

int bucket_key_name(const struct s3_cfg *cfg, const char *key, char *kn)
{
	const char *base = strrchr(key, '/');
	char name[OBJNAME_MAX];
	int64_t gen;

	base = base ? base + 1 : key;
	if (cfg->names_key) {
		if (seal_name_decode(cfg->names_key, base, kn, OBJKEY_MAX))
			return -EINVAL;
	} else if (strlen(base) < OBJKEY_MAX) {
		memcpy(kn, base, strlen(base) + 1);
	} else {
		return -EINVAL;
	}
	return meta_key_parse(kn, name, &gen) ? -EINVAL : 0;
}

void bucket_url(const struct s3_cfg *cfg, char *out, size_t len)
{
	snprintf(out, len, "s3://%s%s%s", cfg->bucket,
		 cfg->prefix[0] ? "/" : "", cfg->prefix);
}

void bucket_marker_text(uint64_t store_id, const char *ancestors,
			const char *seal, char *out, size_t len)
{
	if (ancestors && *ancestors)
		snprintf(out, len,
			 "tallyfs store\nstore_id %" PRIu64
			 "\nancestors %s\n%s",
			 store_id, ancestors, seal ? seal : "");
	else
		snprintf(out, len, "tallyfs store\nstore_id %" PRIu64 "\n%s",
			 store_id, seal ? seal : "");
}

/* Envelopes 2 and 3 (core/s3/seal.h): "envelope N", in 3 "salt HEX",
 * then "key_id HEX" (the key in force), one "keyring HEX RING" line or
 * more, each of its own key, one of them the key in force's, and in 3
 * "mac HEX" last; nothing else. Every length is checked before the byte
 * after it is read: @e is untrusted (a marker). */
static int ringed_parse(const char *e, bool v3, char *seal, size_t len,
			uint64_t *key_id)
{
	static const char hexd[] = "0123456789abcdef";
	const size_t ring = SEAL_RING_LINE - 8 - 17 - 2; /* hex of a ring */
	const char *p = e + 11, *kid, *ids[SEAL_TEXT_MAX / (25 + 1)];
	size_t lines = 0, i;
	bool in_force = false;

	if (v3) {
		if (strncmp(p, "salt ", 5) || strspn(p + 5, hexd) != 32 ||
		    p[37] != '\n')
			return -EUCLEAN;
		p += 38;
	}
	if (strncmp(p, "key_id ", 7) || strspn(p + 7, hexd) != 16 ||
	    p[23] != '\n')
		return -EUCLEAN;
	kid = p + 7;
	p += 24;
	while (*p && !(v3 && !strncmp(p, "mac ", 4))) {
		if (strncmp(p, "keyring ", 8) || strspn(p + 8, hexd) != 16 ||
		    p[24] != ' ' || strspn(p + 25, hexd) != ring ||
		    p[25 + ring] != '\n' || lines == sizeof(ids) / sizeof(*ids))
			return -EUCLEAN;
		for (i = 0; i < lines; i++)
			if (!strncmp(ids[i], p + 8, 16))
				return -EUCLEAN; /* two rings of one key */
		in_force = in_force || !strncmp(p + 8, kid, 16);
		ids[lines++] = p + 8;
		p += 25 + ring + 1;
	}
	if (v3) {
		if (strncmp(p, "mac ", 4) || strspn(p + 4, hexd) != 64 ||
		    strcmp(p + 68, "\n"))
			return -EUCLEAN;
		p += 69;
	}
	if (!in_force || (size_t)(p - e) >= len)
		return -EUCLEAN;
	memcpy(seal, e, (size_t)(p - e) + 1);
	*key_id = strtoull(kid, NULL, 16);
	return 0;
}

int bucket_seal_parse(const char *text, char *seal, size_t len,
		      uint64_t *key_id)
{
	const char *e = strstr(text, "envelope ");
	unsigned long long id;
	char hex[17];

	*key_id = 0;
	seal[0] = '\0';
	if (!e)
		return strstr(text, "key_id ") ? -EUCLEAN : 0;
	if (e != text && e[-1] != '\n')
		return -EUCLEAN;
	if (!strcmp(e, "envelope 1\n")) {
		snprintf(seal, len, "%s", e);
		return 0;
	}
	if (!strncmp(e, "envelope 2\n", 11) || !strncmp(e, "envelope 3\n", 11))
		return ringed_parse(e, e[9] == '3', seal, len, key_id);
	if (sscanf(e, "envelope 1\nkey_id %16[0-9a-f]\n", hex) != 1 ||
	    strlen(hex) != 16)
		return -EUCLEAN;
	id = strtoull(hex, NULL, 16);
	snprintf(seal, len, "envelope 1\nkey_id %s\n", hex);
	if (strcmp(seal, e)) {
		seal[0] = '\0';
		return -EUCLEAN;
	}
	*key_id = id;
	return 0;
}

int bucket_key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool bucket_keys_has(const struct bucket_keys *k, const char *key)
{
	return k->n && bsearch(&key, k->v, k->n, sizeof(*k->v), bucket_key_cmp);
}

static int keys_add(void *arg, const char *key, uint64_t size)
{
	struct bucket_keys *k = arg;
	char *d = strdup(key);

	(void)size;
	if (!d || array_reserve(&k->v, &k->cap, k->n + 1, sizeof(*k->v))) {
		free(d);
		return -ENOMEM;
	}
	k->v[k->n++] = d;
	return 0;
}

void bucket_keys_release(struct bucket_keys *k)
{
	while (k->n)
		free(k->v[--k->n]);
	free(k->v);
	k->v = NULL;
	k->cap = 0;
}

/* Every key under @prefix (a full key prefix), all pages, sorted: 0, or
 * the error of a page (then the listing is incomplete: use none of it). */
int bucket_list_all(struct s3 *s, const char *prefix, struct bucket_keys *out)
{
	char *token = NULL, *next = NULL;
	int rc;

	do {
		rc = s3_list(s, prefix, token, 0, keys_add, out, &next);
		free(token);
		token = next;
		next = NULL;
	} while (!rc && token);
	free(token);
	if (rc)
		bucket_keys_release(out);
	else if (out->n)
		qsort(out->v, out->n, sizeof(*out->v), bucket_key_cmp);
	return rc;
}

/* The snapshots in the bucket, oldest first. */
int bucket_list_snapshots(const struct s3_cfg *cfg, struct s3 *s,
			  struct bucket_keys *out)
{
	char prefix[1024];
	int rc = s3_key(cfg, SNAP_PREFIX, prefix, sizeof(prefix));

	return rc ? rc : bucket_list_all(s, prefix, out);
}
