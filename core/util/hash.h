/* SPDX-License-Identifier: MIT */
/*
 * Object names: the XXH3-128 hash of a block, as 32 lowercase hex
 * characters. A hash hit is not proof of equal content (xxHash is not
 * collision-resistant), so the object store compares bytes and gives a
 * colliding block a distinct name: the hash followed by "-N".
 *
 * A test build (meson -Dhash_bits=N) keeps only the top N bits of the hash
 * so that collisions are common; it must never be used for real data.
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#include <stddef.h>

#define HASH_HEX_LEN 32
/* Longest object name: hash, '-', a decimal variant number, NUL. */
#define OBJNAME_MAX (HASH_HEX_LEN + 1 + 10 + 1)

/* Hash @len bytes of @buf and write the 32-char hex name (+NUL) to @hex. */
void hash_block(const void *buf, size_t len, char hex[HASH_HEX_LEN + 1]);

/*
 * Hash the first @size bytes of descriptor @fd (pread, by chunks: never
 * the whole file in memory) into @hex. 0, -EUCLEAN if the file is
 * shorter, -ENOMEM or the -errno of the read.
 */
#define HASH_FD_CHUNK (1u << 20)
int hash_fd(int fd, unsigned long long size, char hex[HASH_HEX_LEN + 1]);

/* The same by pieces: hash_begin() (NULL: no memory), hash_update() with
 * each piece in order, hash_end() (the name into @hex, unless NULL; the
 * state freed). */
struct hash_state;
struct hash_state *hash_begin(void);
void hash_update(struct hash_state *h, const void *buf, size_t len);
void hash_end(struct hash_state *h, char hex[HASH_HEX_LEN + 1]);

/* 0 if object name @name (a variant too) is that of bytes hashing to
 * @hex, else -EBADMSG. */
int hash_name_check(const char *name, const char *hex);

/*
 * Name of collision variant @variant of @hex into @out (OBJNAME_MAX bytes):
 * variant 0 is the hash itself.
 */
void hash_variant_name(const char *hex, unsigned variant,
		       char out[OBJNAME_MAX]);

/* Whether @name is a well-formed object name (hex, or hex-N with N >= 1). */
int hash_name_valid(const char *name);

/* The @n bytes that the 2 * @n hex digits of @hex stand for, into @out
 * (either case). 0, or -EINVAL if a digit is not one (its byte is 0). */
int hex_decode(const char *hex, size_t n, unsigned char *out);

#endif
