/* SPDX-License-Identifier: MIT */
/*
 * The envelope of a body in the bucket (an object, a metadata snapshot)
 * of a store bound with compression or a key: zstd before AES-256-GCM,
 * in segments, each authenticated with the header, its index, whether it
 * is the last, and the body's context (its key name). The format and the
 * threat model are in docs/design.md, "The envelope".
 *
 *   header (SEAL_HEAD bytes, little-endian):
 *     "TLYE" | version 1 | flags (1: encrypted) | 0 0
 *     | store id u64 | key id u64 (0: none) | nonce 12 | segment u32
 *   segments, the last flagged:
 *     stored u32 (bit 31: last, bit 30: zstd) | plain u32 | payload
 *     | tag 16 (AES-GCM's; without a key XXH3-128 of what a tag covers)
 */
#ifndef TALLY_SEAL_H
#define TALLY_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEAL_HEAD 40
#define SEAL_SEG_OVER 24	/* a segment's head and tag */
#define SEAL_SEGMENT (1u << 20) /* plain bytes per segment, at most */
#define SEAL_SEGMENT_MAX \
	SEAL_SEGMENT	/* what an opener accepts: what a
					  writer makes, so that a forged
					  header asks for no more memory */
#define SEAL_KEY_MIN 32 /* bytes of a key file, at least */
#define SEAL_ZSTD_DEFAULT 3

/*
 * The keys derived from a key file (HKDF-SHA256), or a store's own keys
 * (envelopes 2 and 3: enc, names, id): never written. A key file's id
 * and wrapping key are those of the store whose record it was salted for
 * last (seal_key_salt()): envelope 3 salts them per store.
 */
struct seal_key {
	unsigned char enc[32];	 /* AES-256-GCM */
	unsigned char names[64]; /* AES-256-SIV of object key names */
	uint64_t id;		 /* says which key sealed a body; not secret */
	unsigned char kek[32];	 /* wraps a store's keys (envelopes 2, 3) */
	/* a key file's: */
	uint64_t id1;		/* its id unsalted (envelopes 1, 2) */
	unsigned char kek1[32]; /* its wrapping key unsalted (envelope 2) */
	unsigned char base[32]; /* what envelope 3 salts */
	unsigned char salt[16]; /* the salt id and kek are of, if salted */
	bool salted;
};

/* The longest keyed name (seal_name_encode()): hex of a 16-byte tag and
 * of a key name of at most 80 bytes, and its NUL. */
#define SEAL_NAME_MAX (2 * (16 + 80) + 1)

struct seal {
	bool keyed; /* bodies are encrypted with key */
	struct seal_key key;
	int level;	     /* zstd level; 0: not compressed */
	uint64_t store_id;   /* written into each header */
	uint64_t stores[17]; /* the store ids a header may name (this store
				and its ancestors); nstores 0: any */
	size_t nstores;
};

/*
 * Read key file @path into @k. Refused, with a message in @err: a file
 * that is not a regular file, is readable or writable by group or others
 * (-EACCES), or holds fewer than SEAL_KEY_MIN bytes (-EINVAL).
 */
int seal_key_load(const char *path, struct seal_key *k, char *err,
		  size_t errlen);

/* The most bytes seal_buf() makes of @len bytes. */
size_t seal_bound(size_t len);

/* Seal @len bytes of @in with context @ctx into @out (seal_bound(@len)
 * bytes): 0 (*@outlen set) or -errno (-ENOMEM, -EIO: the library). */
int seal_buf(const struct seal *s, const char *ctx, const void *in, size_t len,
	     void *out, size_t *outlen);

/*
 * Open body @in of @len bytes, sealed with context @ctx, into @out of
 * @cap bytes: 0 (*@outlen set), -ENOKEY (encrypted, no key given),
 * -EKEYREJECTED (another key: *@key_id says which, if not NULL),
 * -EUCLEAN (sealed by a store that is not this one nor an ancestor),
 * -EFBIG (more than @cap bytes) or -EBADMSG (anything else: altered,
 * cut, another body's, not an envelope, or not encrypted in a store
 * that is).
 */
int seal_open(const struct seal *s, const char *ctx, const void *in, size_t len,
	      void *out, size_t cap, size_t *outlen, uint64_t *key_id);

/* The same, file to file (a snapshot): @in read to its end, @out
 * written from its offset; -errno of the files too. *@plain (may be
 * NULL): the bytes of the plain side. */
int seal_fd(const struct seal *s, const char *ctx, int in, int out,
	    uint64_t *plain);
int seal_open_fd(const struct seal *s, const char *ctx, int in, int out,
		 uint64_t *plain, uint64_t *key_id);

/* The context a snapshot's body is sealed with: its key's last part
 * (prefix-free: a drill restores from a copy of the prefix). */
const char *seal_snapshot_ctx(const char *key);

/*
 * Keyed names: the bucket key name of key name @kn (an object's name
 * and generation, NAME.gN) under names key @k, as the hex of its
 * AES-256-SIV encryption (deterministic: the same name gives the same
 * key, so equal content still deduplicates; without the key nothing of
 * the name can be learnt or guessed), into @out (SEAL_NAME_MAX bytes):
 * 0 or -errno. seal_name_decode() gives the name back: 0, or -EBADMSG
 * (@hex is not a name encoded with @k).
 */
int seal_name_encode(const unsigned char k[64], const char *kn, char *out,
		     size_t len);
int seal_name_decode(const unsigned char k[64], const char *hex, char *kn,
		     size_t len);

/*
 * Whether key @k (NULL: no key_file given) is the one a bucket's seal
 * record names, @want_id (0: it has none): 0, or -ENOKEY (a key is
 * wanted), -EKEYREJECTED (another key), -EINVAL (a key for a bucket
 * without one), the reason in @err (@len bytes), naming the key ids.
 */
int seal_key_match(uint64_t want_id, const struct seal_key *k, char *err,
		   size_t len);

/*
 * Envelopes 2 and 3 (stores bound with a key since envelope 2): the keys
 * that seal the store's bodies are random, made when the store is bound,
 * and kept wrapped (AES-256-GCM under a key derived from the key file)
 * in a line "keyring ID HEX" of its seal record, which the marker
 * repeats. A key file opens the store if a line of its id opens with it;
 * changing the key file is then a new line, not a new seal of every body.
 *
 * Envelope 3 (stores bound since it), the record's lines:
 *   envelope 3 | salt HEX (16 random bytes, the store's) | key_id ID
 *   (the key file in force) | keyring ID HEX (one per key file, the one
 *   in force first) | mac HEX
 * A key file's id and wrapping key are scrypt of it and the salt: no id
 * links two stores or names a key file outside its store, and a weak key
 * file is slow to guess. A ring authenticates the salt and its id (a
 * ring is its store's); the last line, an HMAC-SHA256 of the others
 * under a key derived from the store's keys, authenticates the key in
 * force and the set of rings. The store's keys have an id of their own,
 * random, which the bodies' headers name.
 *
 * seal_record_version(): 1, 2 or 3, 0 for text without an envelope line,
 * -1 for another. seal_ringed(): whether it is 2 or 3 (keyrings).
 * seal_key_salt(): @k's id and wrapping key made those record @text's
 * store knows key file @k by (unsalted for envelopes 1 and 2): 0, or
 * -EBADMSG (a damaged salt), -EIO.
 *
 * seal_keyring_make(): fresh keys for a store bound with key file @file
 * (salted for it) into @out, and the seal record's text (envelope 3)
 * into @text (@len bytes): 0 or -errno.
 * seal_keyring_open(): the keys of seal record @text for key file @file
 * into @out (a record of envelope 1: @file's own): 0, or -EKEYREJECTED
 * (no line for this key, or its line does not open with it: another
 * store's), -EBADMSG (a damaged line, an unknown envelope, or an
 * envelope 3 record whose mac is not its keys'), the reason in @err
 * (@len bytes).
 */
#define SEAL_TEXT_MAX 1024 /* a seal record's text, at most */
#define SEAL_RING_LINE (8 + 17 + 2 * (12 + 104 + 16) + 2)
int seal_record_version(const char *text);
bool seal_ringed(const char *text);
int seal_key_salt(struct seal_key *k, const char *text);
int seal_keyring_make(struct seal_key *file, struct seal_key *out, char *text,
		      size_t len);
int seal_keyring_open(const char *text, const struct seal_key *file,
		      struct seal_key *out, char *err, size_t len);

/*
 * The keys key file @file (NULL: none given) opens in a store whose seal
 * record is @text, which names key @want_id (0: none) as the one in
 * force, into @out: for envelopes 2 and 3, any key with a ring in it
 * (while a rekey runs, the old one and the new); for envelope 1,
 * @want_id's own. 0, or seal_key_match()'s and seal_keyring_open()'s
 * refusals.
 */
int seal_key_open(const char *text, uint64_t want_id,
		  const struct seal_key *file, struct seal_key *out, char *err,
		  size_t len);

/*
 * A rekey: seal_keyring_add() makes into @out (@len bytes) the record
 * @text with key file @file (salted for it) in force: @keys (the
 * store's) wrapped for it first, the other rings kept (both keys open
 * the store). A record of envelope 2 is made envelope 3, with a new salt
 * and the rings of @file and of @also (the key file that opened @text:
 * the record must hold no other ring; NULL: -EINVAL).
 * seal_keyring_trim() makes into @out the record with the ring of the
 * key in force only (the rekey's end; envelope 3's mac under @keys): 1
 * if that changed it, 0 if not. Both: -EINVAL for a record without
 * rings (or none of its key in force), -EBADMSG for one of envelope 3
 * whose mac is not @keys' (its rings and key in force are then no
 * word of the store's), -ENAMETOOLONG, -EIO.
 */
int seal_keyring_add(const char *text, const struct seal_key *keys,
		     struct seal_key *file, const struct seal_key *also,
		     char *out, size_t len);
int seal_keyring_trim(const char *text, const struct seal_key *keys, char *out,
		      size_t len);

/* The key id as text (16 hex digits, @out of 17 bytes). */
void seal_key_id_text(uint64_t id, char out[17]);

#endif
