/* SPDX-License-Identifier: MIT */
/*
 * The layout of the bucket, shared by the storage loop (core/remote/),
 * a restore (core/remote/restore.c), deletion (core/objects/reap.c) and
 * tallyfsck: the keys of objects, the marker, and whole listings.
 */
#ifndef TALLY_BUCKET_H
#define TALLY_BUCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/s3/s3.h"

/* Keys under the prefix: the marker naming the store, the metadata
 * snapshots (meta/snap-SEQ-TIME.db: in sequence order by name) and the
 * objects (objects/XX/KEYNAME: NAME, or NAME.gN for generation N,
 * meta_key_name()). */
#define MARKER_KEY "tallyfs-store"
#define SNAP_PREFIX "meta/snap-"
#define OBJECTS_PREFIX "objects/"

/* The most a marker's text takes: a store id and 16 ancestors (a
 * restore keeps the newest 16), 20 digits and a space each, and the
 * words around them. */
#define MARKER_MAX 2048

/* The marker's text for store @store_id, made by a restore from the
 * stores @ancestors names (ids, space separated; NULL or "": none), whose
 * snapshots are its history, its bodies in envelopes of @seal (its
 * remote_conf 'seal': "envelope 1\n" and "key_id HEX\n" with a key, or
 * the lines of envelope 2 or 3 (core/s3/seal.h); NULL or "": plain
 * bodies). */
void bucket_marker_text(uint64_t store_id, const char *ancestors,
			const char *seal, char *out, size_t len);
/* The envelope lines of marker or seal text @text ("" if none) into
 * @seal (@len bytes), its key id into *@key_id (0: no key): 0, or
 * -EUCLEAN (lines that are not an envelope's). */
int bucket_seal_parse(const char *text, char *seal, size_t len,
		      uint64_t *key_id);
/* The URL a store is bound to (remote_conf url): s3://BUCKET[/PREFIX]. */
void bucket_url(const struct s3_cfg *cfg, char *out, size_t len);
/* The full key of key name @name (meta_key_name()): objects/XX/NAME, or
 * with @cfg->names_key objects/XX/KEYED (seal_name_encode()). */
int bucket_object_key(const struct s3_cfg *cfg, const char *name, char *key,
		      size_t len);
/* The key name (meta_key_name()) of listed object key @key (its last
 * component taken) into @kn (OBJKEY_MAX bytes): 0, or -EINVAL (not the
 * key of an object: another name, or keyed with another key). */
int bucket_key_name(const struct s3_cfg *cfg, const char *key, char *kn);

/* A listing: malloc'ed keys, sorted. */
struct bucket_keys {
	char **v;
	size_t n, cap;
};
void bucket_keys_release(struct bucket_keys *k);
/* qsort/bsearch order of two char * keys. */
int bucket_key_cmp(const void *a, const void *b);
/* Whether sorted listing @k holds @key (an empty listing holds nothing). */
bool bucket_keys_has(const struct bucket_keys *k, const char *key);
/* Every key under full key prefix @prefix, all pages, sorted into @out:
 * 0, or the error of a page (then @out is empty: a partial listing is
 * never used). */
int bucket_list_all(struct s3 *s, const char *prefix, struct bucket_keys *out);
/* The snapshots of the bucket, oldest first. */
int bucket_list_snapshots(const struct s3_cfg *cfg, struct s3 *s,
			  struct bucket_keys *out);

#endif
