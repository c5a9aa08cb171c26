/* SPDX-License-Identifier: MIT */
/*
 * The object store: immutable, content-addressed block files under
 * SHARD/<first two hex chars>/<name>, where SHARD is the root directory
 * of one shard: STORE/shards/0 for shard 0, any directory (typically one
 * per disk) for the shards added later (core/jobs/shard.c). A shard added
 * later holds a marker file, "tallyfs-shard", naming the store and the
 * shard id, so that a foreign or stale directory is never taken for it.
 *
 * Every operation resolves the shard's path afresh (no directory is held
 * open), so a shard whose directory disappears or whose disk is
 * unmounted fails at once and is seen as unreachable; it is used again
 * when a check finds it back.
 *
 * Objects are created as temp file + fsync + rename (no replace), so a
 * visible object file is always complete, and an existing object is never
 * rewritten. The object store knows nothing of reference counts: deciding
 * when an object may be unlinked is core/objects/reap.c's business, and only it
 * calls objstore_unlink() and objstore_doom().
 */
#ifndef TALLY_OBJSTORE_H
#define TALLY_OBJSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/util/hash.h"

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
	uint64_t shards; /* bit per shard the batch touched */
	bool open;	 /* counted in the store's open batches */
};

#define OBJSTORE_MAX_SHARDS 64
#define OBJSTORE_ANY UINT32_MAX /* objstore_put(): any shard */

/*
 * Open the shard directory tree under @shards_dir (created if missing,
 * with shard 0 in @shards_dir/0). Removes stale temp files. Returns 0 or
 * -errno.
 */
int objstore_open(const char *shards_dir, struct objstore **out);
/* The same, objects made durable as @sync_mode says (OBJSTORE_SYNC_*,
 * below) from shard 0's attach on. */
int objstore_open_sync(const char *shards_dir, int sync_mode,
		       struct objstore **out);
void objstore_free(struct objstore *os);

/* The store's identity, which the marker of every added shard names. */
void objstore_set_store_id(struct objstore *os, uint64_t id);

/*
 * How objects are made durable: OBJSTORE_SYNC_AUTO (the default) syncs a
 * batch with syncfs(2) except on a shard whose filesystem does not pass
 * syncfs through (FUSE, NFS, SMB, 9p...: each object file fsync'ed, then
 * its directory); OBJSTORE_SYNC_FILE does that on every shard;
 * OBJSTORE_SYNC_FS uses syncfs everywhere. Applies to the shards
 * attached and to those attached later.
 */
#define OBJSTORE_SYNC_AUTO 0
#define OBJSTORE_SYNC_FILE 1
#define OBJSTORE_SYNC_FS 2
void objstore_set_sync_mode(struct objstore *os, int mode);
/*
 * compress_local (a store made with it, core/objects/store.c): every
 * object file is an envelope (core/objects/objcodec.h) that the calls
 * here write and open, new ones at zstd level @level (0: raw). Set once,
 * before any object is read; objstore_open_read()'s descriptor then
 * holds the envelope, not the object's bytes.
 */
void objstore_encode_local(struct objstore *os, int level);
bool objstore_encoded(struct objstore *os);
int objstore_local_level(struct objstore *os); /* -1: plain files */

/*
 * Replace the (corrupt) file of object @name in @shard with @len bytes of
 * @buf, durably: tallyfsck --repair only, offline. -EBADMSG if the bytes
 * do not hash to the name.
 */
int objstore_restore(struct objstore *os, unsigned shard, const char *name,
		     const void *buf, size_t len);

/*
 * A copy of object @name, fetched from the bucket of the remote tier,
 * into @shard: its @len bytes of @buf, checked against the name
 * (-EBADMSG), put in place by a rename that replaces a copy there (a
 * short one left by a power loss). Not synced: the bucket holds the
 * object, and a copy found short is fetched again.
 */
int objstore_cache_put(struct objstore *os, unsigned shard, const char *name,
		       const void *buf, size_t len);

/* Corrupt object files (bytes that do not hash to their name) met by
 * the byte compares of dedup hits since the open. */
uint64_t objstore_corrupt(struct objstore *os);

/* fsync(2) of directory @path: 0 or -errno. */
int objstore_dir_sync(const char *path);
/* mkdir(2) of @path (0700), made durable (its parent synced); an
 * existing directory is fine. 0 or -errno. */
int objstore_mkdir(const char *path);
/* Whether shard @id's objects are synced file by file. */
bool objstore_shard_per_file(struct objstore *os, unsigned id);

/*
 * Use directory @root as shard @id (< OBJSTORE_MAX_SHARDS). The shard
 * stays attached for the life of @os; an unreachable root is attached
 * too, marked unreachable. -EEXIST if @id is attached.
 */
int objstore_shard_attach(struct objstore *os, unsigned id, const char *root,
			  bool draining);
/* Make empty directory @root shard @id of this store: write its marker.
 * -ENOTEMPTY if @root holds anything. */
int objstore_shard_init(struct objstore *os, unsigned id, const char *root);
/*
 * Check that shard @id is there: its root is a directory with the right
 * marker. Updates the reachable flag (and the cached free space); 0 or
 * the reason it is unreachable (-ENOENT, -EUCLEAN for a wrong marker...).
 */
int objstore_shard_check(struct objstore *os, unsigned id);
/* Highest attached shard id + 1 (1 for a span). */
unsigned objstore_nshards(struct objstore *os);
/*
 * A span (a shared store's cache on a node): shard 0, the one every row
 * names, is spread over this object store's shards, its legs: shard 0
 * itself and those attached after it (the node's own directories, which
 * no row names). Every call on shard 0 goes to the leg that holds the
 * object, or for a new one to the leg its name chooses; outside, only
 * shard 0 shows (objstore_nshards() is 1, objstore_shard_attached() of
 * another is false, shard 0 is reachable when every leg is, and a check
 * of it checks them all). Set once, before any leg but 0 is attached.
 */
void objstore_set_span(struct objstore *os);
/* The physical shards, a span's legs (highest attached id + 1). */
unsigned objstore_legs(struct objstore *os);
bool objstore_shard_attached(struct objstore *os, unsigned id);
bool objstore_shard_reachable(struct objstore *os, unsigned id);
/* A draining shard gets no new objects. */
void objstore_shard_set_draining(struct objstore *os, unsigned id,
				 bool draining);
/* Add @bytes (may be negative) to the object bytes placement counts for
 * shard @id (set from the metadata at mount). */
void objstore_shard_account(struct objstore *os, unsigned id, int64_t bytes);

/* Free bytes for new objects: over the filesystems of the reachable,
 * active shards (each counted once), less OBJSTORE_RESERVE on each. */
uint64_t objstore_avail(struct objstore *os);

struct objstore_shard_info {
	const char *root; /* owned by the object store */
	bool reachable, draining;
	uint64_t avail; /* free bytes of its filesystem, as last read */
	uint64_t dev;	/* its filesystem (st_dev), as last checked */
};
int objstore_shard_info(struct objstore *os, unsigned id,
			struct objstore_shard_info *out);

/*
 * Store @len bytes of @buf in *shard: hash them, reuse an existing object
 * with the same bytes, or create a new one (a colliding hash with other
 * bytes gets the next free variant name). @name receives the object's
 * name; *created tells whether this call created the file. With *shard
 * OBJSTORE_ANY, every reachable shard is probed for the object and a new
 * one goes where the placement policy says (the reachable, active shard
 * with the lowest fill; -ENOSPC when every shard is full); *shard
 * receives where the object is.
 *
 * With @batch NULL the object is durable and in place on return. With a
 * batch, a new object is only staged: @buf, @name and @created are
 * borrowed until objstore_batch_finish(), which may still change @name
 * and *created (another writer may have stored the same name meanwhile).
 * Returns 0, -ENOSPC, -EIO, ...
 */
int objstore_put(struct objstore *os, unsigned *shard, const void *buf,
		 size_t len, char name[OBJNAME_MAX], bool *created,
		 struct objstore_batch *batch);

/*
 * A check of a name that no local file holds, before objstore_put_vetted()
 * stores new bytes under it: the name may be known elsewhere (an object
 * whose local copy was evicted to a bucket). @fn returns 0 (the name is
 * free for @buf's @len bytes: no other copy, or one with the same bytes),
 * 1 (it may name other bytes: the next variant name is tried, as after a
 * failed compare) or a negative errno (the put fails with it). Called
 * with no lock of the object store held.
 */
struct objstore_vet {
	int (*fn)(void *ctx, const char *name, const void *buf, size_t len);
	void *ctx; /* borrowed */
};

/* objstore_put(), asking @vet (borrowed; NULL: nobody) about every name
 * it would create a file under. */
int objstore_put_vetted(struct objstore *os, unsigned *shard, const void *buf,
			size_t len, char name[OBJNAME_MAX], bool *created,
			struct objstore_batch *batch,
			const struct objstore_vet *vet);

/*
 * Stage @len bytes of @buf as object @name (a name already computed, e.g.
 * by a copy from another shard) in @shard, to be made durable and put in
 * place by objstore_batch_finish(); @name and @buf are borrowed until
 * then. An object of that name already there is kept if its bytes are
 * the same, else objstore_batch_finish() fails with -EEXIST.
 */
int objstore_stage(struct objstore *os, unsigned shard, const char *name,
		   const void *buf, size_t len, struct objstore_batch *batch);

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

/* A read-only descriptor of an object file (the caller closes it), or
 * -errno (-ENOENT: not in that shard). The content never changes, and an
 * unlink of the file does not disturb a descriptor already open. */
int objstore_open_read(struct objstore *os, unsigned shard, const char *name);

/* Size of an object file, or -ENOENT. */
int objstore_stat(struct objstore *os, unsigned shard, const char *name,
		  off_t *size);

/* Unlink an object file. -ENOENT if it was not there. */
int objstore_unlink(struct objstore *os, unsigned shard, const char *name);

/*
 * GC and the reap of dead objects (core/objects/reap.c): object file
 * @name in @shard is to be unlinked without the metadata lock (checked
 * under it that no row names it there). objstore_stat() and
 * objstore_ensure() of the file cancel that (see core/objects/objstore.c).
 */
int objstore_doom(struct objstore *os, unsigned shard, const char *name);
/*
 * Unlink a doomed file, unless a check cancelled its doom: 0 (its size in
 * *@size), 1 if it was kept, or -errno (-ENOENT if it was not there).
 */
int objstore_unlink_doomed(struct objstore *os, unsigned shard,
			   const char *name, off_t *size);

/* The largest object file objstore_load() reads. */
#define OBJSTORE_OBJECT_MAX (64 << 20)

/*
 * Read object @name of @shard whole into *out (malloc'ed, caller frees;
 * *len its size) and check that its bytes hash to its name: -EBADMSG if
 * not, -EFBIG past OBJSTORE_OBJECT_MAX.
 */
int objstore_load(struct objstore *os, unsigned shard, const char *name,
		  void **out, size_t *len);

/*
 * Copy object @name from shard @src to shard @dst, durably (temp file,
 * fsync, rename, fsync of the directory), and verify it: the source is
 * rehashed before and the copy rehashed as it reads back from @dst.
 * An existing copy in @dst with the same bytes is kept. *size receives
 * the object's size. -EBADMSG if a hash does not match the name.
 */
int objstore_copy(struct objstore *os, const char *name, unsigned src,
		  unsigned dst, off_t *size);

/*
 * Call @fn for every object file of @shard (names that are not object
 * names are skipped). Stops and returns @fn's value when it is non-zero.
 */
int objstore_list(struct objstore *os, unsigned shard,
		  int (*fn)(void *ctx, const char *name, off_t size),
		  void *ctx);
/* The same without the sizes (-1): no stat of each regular file. */
int objstore_list_names(struct objstore *os, unsigned shard,
			int (*fn)(void *ctx, const char *name, off_t size),
			void *ctx);
/* The fan-out directories of a shard: <shard>/00/ to <shard>/ff/. */
#define OBJSTORE_FANOUT 256
/* objstore_list() of fan-out directory @dir (below OBJSTORE_FANOUT) of
 * @shard alone. */
int objstore_list_dir(struct objstore *os, unsigned shard, unsigned dir,
		      int (*fn)(void *ctx, const char *name, off_t size),
		      void *ctx);

/*
 * The bytes of the object files on disk, in every shard reachable when
 * their fan-out directory was counted: objstore_count_dir() counts
 * directory @dir (below OBJSTORE_FANOUT) once (later calls do nothing); from then on each
 * file placed, replaced or unlinked there moves the count, exactly (see
 * core/objects/objstore.c, Local bytes). 0 or the listing's error (counted again
 * by the next call).
 */
int objstore_count_dir(struct objstore *os, unsigned dir);
/* The bytes counted so far; true once every directory is counted. */
bool objstore_local_bytes(struct objstore *os, uint64_t *bytes);

/*
 * Fault injection, for tests: the @nth next object write (OBJSTORE_WRITE),
 * sync (OBJSTORE_SYNC), unlink (OBJSTORE_UNLINK: the file stays) or the
 * rename of a temp file into place (OBJSTORE_RENAME) fails
 * with @err (a negative errno); @nth 0 disables. Each fault fires once.
 */
enum objstore_op {
	OBJSTORE_WRITE,
	OBJSTORE_SYNC,
	OBJSTORE_UNLINK,
	OBJSTORE_RENAME,
	OBJSTORE_NOPS
};
void objstore_inject(struct objstore *os, enum objstore_op op, unsigned nth,
		     int err);
/* Tests only: @fn(@arg) at the start of every objstore_stat() (NULL:
 * none); set while nothing else runs. */
void objstore_set_stat_hook(struct objstore *os, void (*fn)(void *arg),
			    void *arg);
/*
 * A syncfs(2) of shard @id's file system that begins after this call
 * did: what was written before the call is durable once it returns 0.
 * Concurrent callers share one (core/objects/objsync.c). 0 or -errno.
 */
int objstore_shard_syncfs(struct objstore *os, unsigned id);
/* Tests only: @fn(@arg, @shard) in each syncfs objstore_shard_syncfs()
 * runs, before it: nonzero fails that sync with that error instead (NULL:
 * none); set while nothing else runs. */
void objstore_set_sync_hook(struct objstore *os,
			    int (*fn)(void *arg, unsigned shard), void *arg);
/* Tests only: the callers of objstore_shard_syncfs() on shard @id that
 * wait for a running sync to end. */
unsigned objstore_sync_waiting(struct objstore *os, unsigned id);

/* Tests only: the batches with objects staged and not finished or
 * released (with none but its own, a batch syncs its small objects one
 * by one: stage()). */
unsigned objstore_batches_open(struct objstore *os);
/* Tests only: @fn(@arg) in objstore_unlink_doomed(), before the unlink
 * of a doomed file (NULL: none); set while nothing else runs. */
void objstore_set_unlink_hook(struct objstore *os, void (*fn)(void *arg),
			      void *arg);
/* Tests only: @fn(@arg, @dir) in objstore_count_dir(), between the listing
 * of @dir and its count's end (NULL: none); set while nothing else runs. */
void objstore_set_count_hook(struct objstore *os,
			     void (*fn)(void *arg, unsigned dir), void *arg);

/*
 * The text of shard @id's marker file (its "tallyfs-shard"), naming the
 * store @store_id: "tallyfs shard\nstore %016x\nid %u\n". Returns its
 * length, as snprintf.
 */
#define OBJSTORE_MARKER_MAX 128
int objstore_marker_text(char *buf, size_t size, uint64_t store_id,
			 unsigned id);
/*
 * Parse the @len bytes of a shard marker file: exactly the text above and
 * nothing more, else -EUCLEAN. Pure: no I/O.
 */
int objstore_marker_parse(const char *buf, size_t len, uint64_t *store_id,
			  unsigned *id);

/* Path of an object relative to STORE/shards, for messages and tests. */
void objstore_relpath(unsigned shard, const char *name, char *buf, size_t size);

/*
 * The key of object @name in @shard, for lists of object files across
 * shards (GC marks, tallyfsck): the name for shard 0, "NAME@N" for N.
 */
#define OBJSTORE_KEY_MAX (OBJNAME_MAX + 4)
void objstore_key(char out[OBJSTORE_KEY_MAX], const char *name, unsigned shard);
/* The name (into @name) and the shard (returned) of key @key. */
unsigned objstore_key_split(const char *key, char name[OBJNAME_MAX]);

#endif
