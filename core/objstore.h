/* SPDX-License-Identifier: MIT */
/*
 * The object store: immutable, content-addressed block files under
 * STORE/shards/<shard>/<first two hex chars>/<name>.
 *
 * Objects are created as temp file + fsync + rename (no replace), so a
 * visible object file is always complete, and an existing object is never
 * rewritten. The object store knows nothing of reference counts: deciding
 * when an object may be unlinked is the caller's business (core/tally.c).
 */
#ifndef TALLY_OBJSTORE_H
#define TALLY_OBJSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/hash.h"

struct objstore;

/*
 * Bytes of the store's file system that object writes leave free (they
 * fail with ENOSPC first): SQLite needs room to commit the deletions that
 * free space, its WAL growing up to a checkpoint (1000 pages) and beyond.
 */
#define OBJSTORE_RESERVE (8u << 20)

/*
 * Objects staged by objstore_put() for one commit: written to temp files,
 * made durable and renamed into place together by objstore_batch_finish()
 * (two syncfs(2) calls for the whole batch instead of two fsyncs per
 * object). Owned by the caller; objstore_batch_release() frees it.
 */
struct objstore_staged;
struct objstore_batch {
	struct objstore_staged *v;
	size_t n, cap;
	size_t hits; /* objects found already in place (maybe not durable) */
};

/*
 * Open the shard directory tree under @shards_dir (created if missing,
 * with shard 0). Removes stale temp files. Returns 0 or -errno.
 */
int objstore_open(const char *shards_dir, struct objstore **out);
void objstore_free(struct objstore *os);

/*
 * Store @len bytes of @buf in @shard: hash them, reuse an existing object
 * with the same bytes, or create a new one (a colliding hash with other
 * bytes gets the next free variant name). @name receives the object's
 * name; *created tells whether this call created the file.
 *
 * With @batch NULL the object is durable and in place on return. With a
 * batch, a new object is only staged: @buf, @name and @created are
 * borrowed until objstore_batch_finish(), which may still change @name
 * and *created (another writer may have stored the same name meanwhile).
 * Returns 0, -ENOSPC, -EIO, ...
 */
int objstore_put(struct objstore *os, unsigned shard, const void *buf,
		 size_t len, char name[OBJNAME_MAX], bool *created,
		 struct objstore_batch *batch);

/* Make every staged object durable and visible. On failure, the staged
 * objects that are not in place are removed. */
int objstore_batch_finish(struct objstore *os, struct objstore_batch *batch);
/* Remove what is still staged and free the batch's memory. */
void objstore_batch_release(struct objstore *os, struct objstore_batch *batch);

/*
 * Make sure object @name in @shard exists and holds exactly @buf/@len:
 * creates it (durably) if missing. -EEXIST if it exists with other bytes.
 */
int objstore_ensure(struct objstore *os, unsigned shard, const char *name,
		    const void *buf, size_t len);

/* Read up to @len bytes at @off of an object; returns bytes read or -errno. */
ssize_t objstore_read(struct objstore *os, unsigned shard, const char *name,
		      void *buf, size_t len, off_t off);

/* Size of an object file, or -ENOENT. */
int objstore_stat(struct objstore *os, unsigned shard, const char *name,
		  off_t *size);

/* Unlink an object file. -ENOENT if it was not there. */
int objstore_unlink(struct objstore *os, unsigned shard, const char *name);

/*
 * Call @fn for every object file of @shard (names that are not object
 * names are skipped). Stops and returns @fn's value when it is non-zero.
 */
int objstore_list(struct objstore *os, unsigned shard,
		  int (*fn)(void *ctx, const char *name, off_t size),
		  void *ctx);

/*
 * Fault injection, for tests: the @nth next object write (OBJSTORE_WRITE)
 * or sync (OBJSTORE_SYNC) fails with @err (a negative errno); @nth 0
 * disables. Each fault fires once.
 */
enum objstore_op {
	OBJSTORE_WRITE,
	OBJSTORE_SYNC
};
void objstore_inject(struct objstore *os, enum objstore_op op, unsigned nth,
		     int err);

/* Path of an object relative to STORE/shards, for messages and tests. */
void objstore_relpath(unsigned shard, const char *name, char *buf, size_t size);

#endif
