/* SPDX-License-Identifier: MIT */
/*
 * A store directory: the marker file that says what it is, the lock that
 * keeps a second process out, the metadata database and the object files.
 *
 *   STORE/tallyfs-store   "tallyfs store" and "format 1"
 *   STORE/lock            flock(2)ed by the process that has the store open
 *   STORE/meta.db         SQLite metadata (core/meta/), unless the
 *                         metadata is in PostgreSQL (-o meta=URI)
 *   STORE/shards/0/       object files (core/objects/objstore.c)
 */
#ifndef TALLY_STORE_H
#define TALLY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_FORMAT 1
/* The marker of a store made with compress_local (STORE_COMPRESS_LOCAL):
 * a tallyfs that knows only format 1 refuses it rather than reading its
 * object files' envelopes as data. */
#define STORE_FORMAT_ENVELOPES 2
#define STORE_DEFAULT_BLOCK_SIZE (1u << 20)

struct meta;
struct objstore;

struct store {
	char *path;
	int lockfd;
	int format; /* of its marker: STORE_FORMAT or STORE_FORMAT_ENVELOPES */
	uint32_t block_size;
	struct meta *meta;
	struct objstore *objs;
};

/*
 * Open (with @create: create on first use, with @block_size) the store at
 * @path and lock it. Refuses, with a message naming the problem, a
 * non-empty directory that is not a store (-ENOTEMPTY), an unknown format
 * (-EPROTO), a damaged store (-EUCLEAN) and a store held by another
 * process (-EBUSY).
 */
int store_open(const char *path, bool create, uint32_t block_size,
	       struct store **out);
/*
 * The same with the metadata at @meta: a postgres:// URI (core/meta/meta_pg.c;
 * the store directory then holds the object files only: a cache), or
 * NULL for STORE/meta.db. A store directory with a meta.db of its own is
 * refused with a URI (-EEXIST), one without with none (-ENOENT).
 */
int store_open_meta(const char *path, const char *meta, bool create,
		    uint32_t block_size, struct store **out);
/* The same with @flags: STORE_NO_INTENT_LOG opens a SQLite store without
 * its intent log (core/meta/meta_ilog.c; a log left by a crash is
 * replayed all the same). */
#define STORE_NO_INTENT_LOG 1u
/* ... and STORE_COMPRESS_LOCAL makes a new store's object files
 * envelopes (core/objects/objcodec.h), zstd-compressed, for its life; a
 * store made without it is refused (-EINVAL). */
#define STORE_COMPRESS_LOCAL 2u
/* ... and STORE_SYNC(MODE), an OBJSTORE_SYNC_* mode (two bits), sets how
 * objects are made durable before the shards are attached, so that what
 * each shard's attach says is what is done. */
#define STORE_SYNC_SHIFT 2
#define STORE_SYNC(mode) ((unsigned)(mode) << STORE_SYNC_SHIFT)
/* ... and STORE_QUIET_BUSY refuses a store another process holds
 * (-EBUSY) without logging it: the caller waits for it, and says so. */
#define STORE_QUIET_BUSY 16u
int store_open_flags(const char *path, const char *meta, bool create,
		     uint32_t block_size, unsigned flags, struct store **out);
void store_close(struct store *s);
/* A shared store: record leg @id at @root (absolute) in the node's cache
 * directory, durably (core/objects/objstore.c, Spans). */
int store_leg_add(struct store *s, unsigned id, const char *root);

/* A random positive identifier (of a store, of a node). */
int64_t store_random_id(void);

/*
 * Parse the @len bytes of a store marker file: "tallyfs store" on the
 * first line, "format N" on the second (anything after is ignored). 0 and
 * *format, or -EUCLEAN if it is not a store marker. Pure: no I/O.
 */
#define STORE_MARKER_MAX 256 /* bytes of the file that are read */
int store_marker_parse(const char *buf, size_t len, int *format);

/* Record the current pid in the lock file (after daemonizing). */
void store_set_pid(struct store *s);

#endif
