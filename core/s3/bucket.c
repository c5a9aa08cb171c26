/* SPDX-License-Identifier: MIT */
/*
 * The layout of the bucket (core/s3/bucket.h): the full keys of objects,
 * the marker naming the store, and whole sorted listings.
 */
#include "core/s3/bucket.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/meta/meta.h"
#include "core/util/array.h"

int bucket_object_key(const struct s3_cfg *cfg, const char *name, char *key,
		      size_t len)
{
	char rel[16 + OBJKEY_MAX];

	snprintf(rel, sizeof(rel), "objects/%.2s/%s", name, name);
	return s3_key(cfg, rel, key, len);
}

void bucket_url(const struct s3_cfg *cfg, char *out, size_t len)
{
	snprintf(out, len, "s3://%s%s%s", cfg->bucket,
		 cfg->prefix[0] ? "/" : "", cfg->prefix);
}

void bucket_marker_text(uint64_t store_id, const char *ancestors, char *out,
			size_t len)
{
	if (ancestors && *ancestors)
		snprintf(out, len,
			 "tallyfs store\nstore_id %" PRIu64 "\nancestors %s\n",
			 store_id, ancestors);
	else
		snprintf(out, len, "tallyfs store\nstore_id %" PRIu64 "\n",
			 store_id);
}

int bucket_key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool bucket_key_valid(const char *key)
{
	char name[OBJNAME_MAX];
	int64_t gen;

	return meta_key_parse(key, name, &gen) == 0;
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
