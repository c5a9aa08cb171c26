/* SPDX-License-Identifier: MIT */
/*
 * libtally: the filesystem itself, without FUSE. fs/ translates kernel
 * requests into these calls; tests call them directly.
 *
 * Inode numbers are the persistent ones of the metadata store. Inode 1 is
 * the root, whose entries are the namespaces; inodes 2..5 are the virtual
 * control directory /.tally and its files ctl, status and metrics.
 *
 * Every function returns 0 (or a byte count) on success and a negative
 * errno on failure; struct stat outputs are written only on success. All
 * functions are thread-safe.
 */
#ifndef TALLY_TALLY_H
#define TALLY_TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#define TALLY_ROOT_INO 1
#define TALLY_CTLDIR_INO 2
#define TALLY_CTL_INO 3
#define TALLY_STATUS_INO 4
#define TALLY_METRICS_INO 5
#define TALLY_CTLDIR_NAME ".tally"
/* the snapshots, browsable (docs/design.md 13.4) */
#define TALLY_SNAPDIR_NAME ".snapshots"
#define TALLY_NAME_MAX 255

/*
 * The kernel's node ids and st_ino (docs/design.md 13.3): a snapshot's
 * files are seen through its view, view << TALLY_VIEW_SHIFT | ino (inode
 * numbers stay below 1 << TALLY_VIEW_SHIFT); view 0 is every namespace's
 * so far. Views of snapshots are below TALLY_VIEW_NSPACES, read-only;
 * from it on, the views kept for namespaces that share inodes (O(1)
 * branches, 13.10 step 4). The highest view names the directories of
 * /.snapshots: itself with the root's number, /.snapshots/NS with NS's
 * root number.
 */
#define TALLY_VIEW_SHIFT 40
#define TALLY_VIEW_NSPACES (1u << 23)
#define TALLY_VIEW_SNAPDIRS ((1u << 24) - 1)
#define TALLY_SNAPDIR_INO \
	((uint64_t)TALLY_VIEW_SNAPDIRS << TALLY_VIEW_SHIFT | TALLY_ROOT_INO)
static inline uint32_t tally_view(uint64_t ino)
{
	return (uint32_t)(ino >> TALLY_VIEW_SHIFT);
}
/* Whether node @ino is read-only: a snapshot's file, or a directory of
 * /.snapshots (decided from the number alone, with no lock). */
static inline bool tally_view_ro(uint64_t ino)
{
	uint32_t v = tally_view(ino);

	return v && (v < TALLY_VIEW_NSPACES || v == TALLY_VIEW_SNAPDIRS);
}

struct tally;
struct pool;
struct remote;
struct remote_opts;

/* Whether @ino is one of /.tally and its files (TALLY_CTLDIR_INO up to
 * TALLY_METRICS_INO). */
bool tally_is_virtual(uint64_t ino);

struct tally_opts {
	uint32_t block_size;	/* for a new store; 0 = 1 MiB */
	bool create;		/* create the store on first use */
	size_t inode_dirty_max; /* a file's buffered bytes that start a
				   flush; 0 = 8 MiB */
	uint64_t dirty_limit;	/* all buffered bytes; 0 = a tenth of memory,
				   256 MiB to 4 GiB */
	unsigned max_pending;	/* flushes in flight; 0 = 32 */
	unsigned workers;	/* flush stream workers; 0 = one per CPU
				   (control jobs have a thread apart) */
	/* tests only: called at the start of each flush's stream phase */
	int64_t report_interval; /* seconds between node reports; 0 = 60 */
	int64_t stale_after;	 /* node reports older are pruned; 0 = 600 */
	unsigned min_nodes_reporting; /* GC collects only with as many; 0 = 1 */
	int64_t gc_interval;	      /* seconds between automatic GC cycles;
				    0 = none */
	void (*stream_hook)(void *arg, uint64_t seq, uint64_t ino);
	/* tests only: called by tally_release() between its two holds */
	void (*release_hook)(void *arg, uint64_t ino);
	/* tests only: called by tally_rename() between its lookups and its
	 * transaction, with the source's inode (t->lock held) */
	void (*rename_hook)(void *arg, uint64_t ino);
	void *hook_arg;
	const char *mountpoint; /* absolute; shards may not be inside it */
	/* the metadata in PostgreSQL (a postgres:// URI), or NULL for
	 * STORE/meta.db (core/objects/store.h) */
	const char *meta;
	/* seconds between the session's heartbeats (0: 12); it expires
	 * after five are missed (core/cluster/session.c) */
	unsigned heartbeat;
	/* the intent log of a SQLite store (core/meta/meta_ilog.c): a group
	 * of operations commits at this age, in ms (0: 5) */
	unsigned group_ms;
	bool no_intent_log; /* commit each operation (-o nointent_log) */
	/* make a new store's object files zstd-compressed envelopes
	 * (-o compress_local; refused on a store made without) */
	bool compress_local;
	/* the zstd level of new object files of such a store: 0 = 3,
	 * -1 = stored raw (compress=none) */
	int local_level;
	int sync_objects; /* OBJSTORE_SYNC_*: 0 = auto */
	/* every xattr call is -ENOSYS (noxattr): a FUSE front end passes
	 * that on, and the kernel then asks no more, not even for
	 * security.capability before each write */
	bool no_xattrs;
	/* a shared store: every lookup of a missing name asks the server,
	 * none is answered from a directory known whole (core/fs/dirnames.c):
	 * a name another node just made is found at once */
	bool no_negcache;
	/* a shared store: how long (ms) the entry a lookup found stands
	 * in, as a hint, for the look of an unlink, rmdir or rename at it
	 * (the kernel's entry timeout: the kernel acts on it as long);
	 * 0: none, the store is always asked (core/fs/names.c, child()) */
	int64_t entry_hint_ms;
	uid_t owner; /* owner of /.tally/ctl */
	gid_t owner_gid;
	/* the remote tier (core/remote/remote.h): its bucket settings are taken
	 * over by tally_open(); NULL: none (a store bound to a bucket is
	 * then refused, -EUCLEAN) */
	struct remote_opts *remote;
};

/*
 * What the layers above the filesystem model do for it (core/README.md):
 * the model calls upward only through this table, which core/jobs/mount.c
 * fills in. Every entry is set.
 */
struct tally_upper {
	/* this mount's session (core/cluster/session.c): opened before the
	 * orphans of dead sessions are freed, ended at close (t->lock held),
	 * and registered again by a flush that found it gone (t->lock held) */
	int (*session_start)(struct tally *t);
	int (*session_end)(struct tally *t);
	int (*session_renew)(struct tally *t);
	/* once the orphans are freed, before the threads start: the shards
	 * (core/jobs/shard.c) */
	int (*setup)(struct tally *t);
	/* the flusher thread's tick, once a second (@n counts them): node
	 * reports, the heartbeat, shards that came and went, automatic GC */
	void (*tick)(struct tally *t, unsigned n);
	/* at close, before the session ends: stop watching other nodes */
	void (*unwatch)(struct tally *t);
	/* the remote tier (core/remote/remote.h): each takes NULL (none) */
	int (*remote_new)(struct tally *t, struct remote_opts *o,
			  struct remote **out);
	void (*remote_free)(struct remote *r);
	void (*remote_kick)(struct remote *r);
	int (*remote_ship)(struct remote *r, uint32_t shard, const char *name,
			   uint64_t size, const void *buf, int64_t *gen,
			   bool *fresh);
	int (*remote_fetch)(struct remote *r, uint32_t shard, const char *name,
			    uint64_t size);
	ssize_t (*remote_read)(struct remote *r, uint32_t shard,
			       const char *name, uint64_t size, void *out,
			       size_t off, size_t len);
	int (*remote_vet)(struct remote *r, const char *name, const void *buf,
			  size_t len);
	bool (*remote_touch)(struct remote *r, const char *name);
	void (*remote_prefetch)(struct remote *r, uint32_t shard,
				const char *name, uint64_t size);
};

/* Open the store at @path (see store_open() for refusals), with every
 * layer (core/jobs/mount.c). */
int tally_open(const char *path, const struct tally_opts *opts,
	       struct tally **out);
/* The same, with the layers above given by @up (core/jobs/mount.c). */
int tally_open_with(const char *path, const struct tally_opts *opts,
		    const struct tally_upper *up, struct tally **out);
/* Commit everything buffered, then close. Returns the first error. */
int tally_close(struct tally *t);
/* Record the current pid in the store's lock file (after fork). */
void tally_set_pid(struct tally *t);
uint32_t tally_block_size(struct tally *t);

/* Who asks: owner of new inodes. */
struct tally_ctx {
	uid_t uid;
	gid_t gid;
};

/* Look up @name in @parent; adds one kernel lookup reference. */
int tally_lookup(struct tally *t, uint64_t parent, const char *name,
		 struct stat *st);
/* Drop @n kernel lookup references. */
void tally_forget(struct tally *t, uint64_t ino, uint64_t n);
int tally_getattr(struct tally *t, uint64_t ino, struct stat *st);

/* Which fields tally_setattr() changes. *_NOW use the current time. */
#define TALLY_SET_MODE (1 << 0)
#define TALLY_SET_UID (1 << 1)
#define TALLY_SET_GID (1 << 2)
#define TALLY_SET_SIZE (1 << 3)
#define TALLY_SET_ATIME (1 << 4)
#define TALLY_SET_MTIME (1 << 5)
#define TALLY_SET_ATIME_NOW (1 << 6)
#define TALLY_SET_MTIME_NOW (1 << 7)
#define TALLY_SET_CTIME (1 << 8)
int tally_setattr(struct tally *t, uint64_t ino, const struct stat *in,
		  int to_set, struct stat *st);

/* Create a node (regular, FIFO, device, socket, directory) or symlink.
 * Each adds one kernel lookup reference to the new inode. */
int tally_mknod(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		const char *name, mode_t mode, dev_t rdev, struct stat *st);
int tally_mkdir(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		const char *name, mode_t mode, struct stat *st);
/* A regular file, created and opened (one open handle, as after
 * tally_open_file()) in one transaction. */
int tally_create(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		 const char *name, mode_t mode, struct stat *st);
int tally_symlink(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		  const char *name, const char *target, struct stat *st);
/* *target is malloc'ed. */
int tally_readlink(struct tally *t, uint64_t ino, char **target);
int tally_unlink(struct tally *t, uint64_t parent, const char *name);
int tally_rmdir(struct tally *t, uint64_t parent, const char *name);
/* @flags: RENAME_NOREPLACE, RENAME_EXCHANGE. */
int tally_rename(struct tally *t, uint64_t parent, const char *name,
		 uint64_t newparent, const char *newname, unsigned flags);
/*
 * Link inode @ino as @newname. Within one namespace a hard link; across
 * namespaces a new inode sharing the same objects (counts +1), returned
 * in @st. Adds one kernel lookup reference to the inode returned.
 */
int tally_link(struct tally *t, uint64_t ino, uint64_t newparent,
	       const char *newname, struct stat *st);

/* Open handles of a regular file: tally_open_file() counts the handle,
 * tally_release() commits and uncounts it. */
int tally_open_file(struct tally *t, uint64_t ino, int flags);
int tally_release(struct tally *t, uint64_t ino);
/* Commit buffered data (close of one descriptor); returns write errors. */
int tally_flush(struct tally *t, uint64_t ino);
/* Commit buffered data durably. */
int tally_fsync(struct tally *t, uint64_t ino, bool datasync);
ssize_t tally_read(struct tally *t, uint64_t ino, void *buf, size_t size,
		   off_t off);
/*
 * The object files that hold the bytes tally_read() would return, when
 * they lie in at most TALLY_SEGS_MAX committed blocks that no newer data
 * (dirty, in flight, failed) covers and that hold no hole: one segment
 * per block, each a read-only descriptor (the caller closes it), an
 * offset in it and a length. For a reply spliced from the files instead
 * of copied. Returns 0 (*nsegs set), or 1 when the bytes must be copied
 * (tally_read(), which also answers errors and EOF).
 */
#define TALLY_SEGS_MAX 4
struct tally_seg {
	int fd;
	off_t off;
	size_t len;
};
int tally_read_fd(struct tally *t, uint64_t ino, size_t size, off_t off,
		  struct tally_seg *segs, size_t *nsegs);
ssize_t tally_write(struct tally *t, uint64_t ino, const void *buf, size_t size,
		    off_t off);
/*
 * tally_write() of pages the kernel's writeback cache held (FUSE's
 * writepage): the kernel stamped the file's mtime and ctime when they
 * were written, keeps them, and sends them itself (setattr) when it
 * changed them; they may reach the daemon before these pages do. The
 * write leaves the times as they are, so that a stamp of its own never
 * replaces the time the user saw.
 */
ssize_t tally_write_pages(struct tally *t, uint64_t ino, const void *buf,
			  size_t size, off_t off);
/*
 * Copy @len bytes from @ino_in at @off_in to @ino_out at @off_out. Whole
 * blocks share objects (counts +1) instead of copying bytes. Returns the
 * bytes copied.
 */
ssize_t tally_copy_range(struct tally *t, uint64_t ino_in, off_t off_in,
			 uint64_t ino_out, off_t off_out, size_t len);

/*
 * Entries of directory @ino after cookie @off. @fn gets each entry with
 * the cookie of the next one and returns non-zero when it cannot take the
 * entry (buffer full): iteration stops there. With @plus, each entry that
 * @fn took (other than "." and "..") gains a kernel lookup reference.
 */
typedef int (*tally_dir_fn)(void *ctx, const char *name, const struct stat *st,
			    off_t next);
int tally_readdir(struct tally *t, uint64_t ino, off_t off, bool plus,
		  tally_dir_fn fn, void *ctx);

/* xattrs; get/list return the size, or -ERANGE if @size is too small (a
 * @size of 0 asks for the size). */
ssize_t tally_getxattr(struct tally *t, uint64_t ino, const char *name,
		       void *buf, size_t size);
int tally_setxattr(struct tally *t, uint64_t ino, const char *name,
		   const void *val, size_t len, int flags);
ssize_t tally_listxattr(struct tally *t, uint64_t ino, char *buf, size_t size);
int tally_removexattr(struct tally *t, uint64_t ino, const char *name);

int tally_statfs(struct tally *t, struct statvfs *out);

/*
 * Flush every inode's buffered data (failed flushes go again) and wait
 * until nothing is pending (-ETIMEDOUT after @timeout seconds; 0 waits as
 * long as it takes). 0 only if everything buffered when the drain began
 * is committed; else the error of a flush that failed (-ENOSPC, -EIO...),
 * its data kept for the next try. *waited (may be NULL) receives the
 * number of flushes waited for.
 */
int tally_drain(struct tally *t, uint64_t *waited, double timeout);

struct tally_drain_report {
	uint64_t flushed; /* flushes waited for */
	/* the files whose data, buffered when the drain began, is still
	 * not committed (their flushes failed), and its blocks */
	uint64_t files, blocks;
};

/* Commit the intent log's open group now, if any (tests interleave
 * this with operations): 0 or -errno. */
int tally_group_commit(struct tally *t);
/* tally_drain() that fills *@r, on success and on failure alike. */
int tally_drain_report(struct tally *t, double timeout,
		       struct tally_drain_report *r);

/*
 * Fault injection, for tests: the @nth next object write (@sync false) or
 * object sync (@sync true) fails with @err (negative errno), once.
 */
void tally_inject(struct tally *t, bool sync, unsigned nth, int err);
/* Fault injection, for tests: the local copy the @nth next fetch of a
 * read brought is unlinked before the read gets to it, as the cache's
 * bound may evict it (once; its row still says cached). */
void tally_inject_evict(struct tally *t, unsigned nth);
/* Tests: the answer to the commit of the @nth open hold (a shared store's
 * first open of a file on this node) is lost, the commit made: the open
 * adds the hold again (core/fs/file.c). 0: none. */
void tally_inject_hold_lost(unsigned nth);

/*
 * For core modules that work on the whole store (core/jobs/gc.c, shard.c,
 * ctl.c): the metadata lock stays private to core/fs/tally.c. @fn(@m, @ctx)
 * runs under it, and must do no object I/O and take no other lock
 * (docs/design.md, 9). tally_meta_read() runs it as it is (reads, or
 * statements that are each their own transaction); tally_meta_txn() runs
 * it inside one transaction, committed if @fn returns 0 and rolled back
 * otherwise, and then deletes what the commit left unnamed (core/objects/reap.c).
 * Both return @fn's error, or the commit's.
 */
struct meta;
struct objstore;
int tally_meta_read(struct tally *t, int (*fn)(struct meta *m, void *ctx),
		    void *ctx);
int tally_meta_txn(struct tally *t, int (*fn)(struct meta *m, void *ctx),
		   void *ctx);
/* tally_meta_txn(), then, after a commit and in the same hold of the
 * lock, @then(@m, @ctx) (no object I/O either). */
int tally_meta_txn_then(struct tally *t, int (*fn)(struct meta *m, void *ctx),
			int (*then)(struct meta *m, void *ctx), void *ctx);
/*
 * Make every commit so far durable against power loss (one sync of the
 * WAL, if anything is unsynced), then delete the object files the
 * commits left unnamed. Core modules call it before deleting files whose
 * deletion a commit of theirs allowed (GC, rebalance, sweep). 0 or -errno.
 */
int tally_meta_sync(struct tally *t);
/* The same, only when deletions wait for it (the flusher's tick, drain). */
int tally_reap_due(struct tally *t);
/*
 * Delete the copy of object @name in @shard if core/objects/reap.c's copy verdict
 * allows it (reap_copy(): the verdict and the unlink in one hold of the
 * metadata lock). 1 deleted, 0 kept, or a negative errno (kept).
 */
int tally_reap_copy(struct tally *t, const char *name, int64_t id,
		    uint32_t shard, unsigned flags);
/*
 * Tests only: the metadata store under the metadata lock until
 * tally_meta_unlock(). Core modules use tally_meta_read/txn().
 */
struct meta *tally_meta_lock(struct tally *t);
void tally_meta_unlock(struct tally *t);
struct objstore *tally_objstore(struct tally *t);

/*
 * Whether the object store's free space, less the data not committed, is
 * below 256 MiB (what the kernel's writeback cache may hold of a mount's
 * writes, fs/main.c): a front end that caches writes (the
 * kernel's writeback cache, which answers write() before the daemon sees
 * the data) should then send the writes of files opened for writing one
 * by one, so that a write with no room fails with ENOSPC itself
 * (tally_write() reserves space for every write it accepts).
 */
bool tally_space_low(struct tally *t);

/* GC settings of this mount (seconds, and a count). */
void tally_gc_settings(struct tally *t, int64_t *stale_after,
		       unsigned *min_nodes, int64_t *node_id);

/*
 * Pin (@pin true) or unpin the objects of mount-relative @path: a regular
 * file, or a whole namespace. -EINVAL for "." / ".." components or other
 * kinds of inode, -ENOENT for a missing path, -EEXIST when already pinned
 * (pin) or -ENOENT when not (unpin). *objects receives the count pinned.
 */
int tally_pin(struct tally *t, const char *path, bool pin, uint64_t *objects);

/* The inode of mount-relative @path ("." and ".." refused), and in *@at
 * the version of the snapshot it is in (/.snapshots/NS/NAME/...), the
 * leaf of a namespace made by a branch, or id 0 for its namespace's. */
struct meta_ver;
int tally_resolve(struct tally *t, const char *path, uint64_t *ino,
		  struct meta_ver *at);

/* The worker pool (control commands run on it). */
struct pool *tally_pool(struct tally *t);

/* The registry of running jobs shown in the status (core/util/progress.h):
 * long jobs register there with progress_begin(). */
struct progress;
struct progress *tally_progress(struct tally *t);

/* The counters and histograms of the mount (core/util/metrics.h): the front
 * end records its requests there; never NULL once open. */
struct metrics;
struct metrics *tally_metrics(struct tally *t);

/*
 * Versions of a namespace (docs/design.md, section 13). tally_snapshot():
 * a read-only version of namespace @ns named @name, in O(1): its leaf is
 * frozen, the namespace writes into a new one; *@ver receives its id.
 * tally_rmsnapshot(): the snapshot goes, merged with the version after
 * it (cost: what the namespace wrote since). -EINVAL: a bad name (a
 * snapshot's may not hold '/' or '@', be "." or "..", or start with
 * "auto-"); -ENOENT: no such namespace or snapshot; -EEXIST: a snapshot
 * of that name exists; -EOPNOTSUPP: a shared store (several hosts need
 * the leaf lock, not built yet).
 */
int tally_snapshot(struct tally *t, const char *ns, const char *name,
		   int64_t *ver);
int tally_rmsnapshot(struct tally *t, const char *ns, const char *name);
/*
 * tally_rollback(): namespace @ns becomes its snapshot @name again; what
 * was written since is dropped and its counts fall (cost: those rows).
 * With @later, the snapshots taken since go too; without, they make it
 * -EEXIST. -EBUSY: a file of @ns is open, or has data a failed flush
 * kept. Durable when it returns; the kernel's caches of what went are
 * dropped.
 */
int tally_rollback(struct tally *t, const char *ns, const char *name,
		   bool later);
/*
 * tally_diff(): the paths that differ between @a and @b, each namespace
 * NS (what it committed: buffers are committed first) or its snapshot
 * NS@NAME, in time that grows with what changed between them: *@out
 * (tally_changes_free()), sorted by path, each path relative to the
 * namespace's root ("." for the root itself) with its status: 'A' in @b
 * only, 'D' in @a only, 'M' in both but not the same (contents, size,
 * mode, owner, mtime, xattrs, or another file under the name). A
 * directory added or removed lists what it holds. @a and @b are of one
 * namespace, or of two branches (a namespace and one made by a branch
 * of it, or two such): the changes since their deepest common version.
 * -EXDEV: versions of two namespaces made apart; -ENOENT: no such
 * namespace or snapshot; -EINVAL: a malformed side; -EOPNOTSUPP: a
 * shared store.
 */
struct tally_change {
	char status;
	char *path;
};
int tally_diff(struct tally *t, const char *a, const char *b,
	       struct tally_change **out, size_t *n);
void tally_changes_free(struct tally_change *v, size_t n);
/*
 * Automatic snapshots (docs/design.md 13.4). tally_autosnapshot_set():
 * namespace @ns gets a snapshot auto-YYYYMMDD-HHMMSS (UTC) every @every
 * seconds, the newest @keep of them kept (@every 0: none any more; the
 * ones taken stay). tally_autosnapshot_get(): its setting (0, 0: none).
 * The tick (core/jobs/mount.c) asks tally_autosnap_due() once a second
 * and, when it says so, runs tally_autosnap_run(@t) on the pool, or
 * tally_autosnap_skip() if it cannot.
 */
int tally_autosnapshot_set(struct tally *t, const char *ns, int64_t every,
			   int64_t keep);
int tally_autosnapshot_get(struct tally *t, const char *ns, int64_t *every,
			   int64_t *keep);
bool tally_autosnap_due(struct tally *t);
void tally_autosnap_run(void *t);
void tally_autosnap_skip(struct tally *t);
/* Each snapshot of namespace @ns (NULL: of every namespace), oldest first,
 * with its namespace's name. -ENOENT: no namespace @ns. */
struct meta_snapshot;
int tally_snapshots(struct tally *t, const char *ns,
		    int (*fn)(void *ctx, const char *ns,
			      const struct meta_snapshot *sn),
		    void *ctx);

/*
 * Copy-on-write clone of namespace @src as new namespace @dst. Returns
 * -ENOENT (no @src), -EEXIST (@dst exists), -EINVAL (bad name).
 * *inodes receives the number of inodes copied.
 */
int tally_branch(struct tally *t, const char *src, const char *dst,
		 uint64_t *inodes);

/* Figures for /.tally/status. */
struct tally_stats {
	uint64_t namespaces, inodes, objects;
	uint64_t bytes_logical, bytes_stored, bytes_referenced;
	uint64_t pending_flushes, dirty_bytes, durable_seq, commit_errors;
	uint64_t rotated_seq, group_commits, jobs_queued, jobs_running;
	uint64_t spliced_reads;	  /* reads answered from an object file */
	uint64_t refcount_drift;  /* counts found wrong at commit, fixed */
	uint64_t corrupt_objects; /* short or wrong object files met */
	uint64_t dirty_limit;
	uint64_t inodes_cached;	    /* in memory: those the kernel knows */
	uint64_t buffer_pool_bytes; /* free block buffers kept for reuse */
	unsigned workers, max_pending;
	uint32_t block_size;
	bool writeback_cache; /* the kernel's (tally_set_push) */
	bool xattrs;	      /* not turned off (tally_opts.no_xattrs) */
};
int tally_stats(struct tally *t, struct tally_stats *out);

/* The highest flush sequence number up to which everything is committed
 * (done_seq). */
uint64_t tally_done_seq(struct tally *t);
/* Rows of the metadata changed since the mount, less those changed for
 * its upkeep (a metadata snapshot is due when this moved); the _locked
 * form with t's metadata lock held (a tally_meta_read() callback). */
int64_t tally_meta_changes(struct tally *t);
int64_t tally_meta_changes_locked(struct tally *t);
/* @n rows were changed for the mount's upkeep (lock held). */
void tally_upkeep_changes(struct tally *t, int64_t n);
/* The remote tier, or NULL. */
struct remote *tally_remote(struct tally *t);

/* Path of an object file for tests and tools (relative to the store). */
const char *tally_store_path(struct tally *t);
/* A shared store: record leg @id of this node's cache at @root (core/
 * store.h, store_leg_add()). */
int tally_leg_add(struct tally *t, unsigned id, const char *root);
/* Whether the metadata is in a shared engine (PostgreSQL): fixed at open,
 * no lock needed. */
/*
 * A transaction of a shared store failed for a reason that passes (a
 * serialization failure, a deadlock, the connection lost): -EDEADLK from
 * the metadata. If *@rc is that, wait a little (backoff with jitter) and
 * return true: the caller runs the whole operation again (operations
 * change nothing in memory before their commit). After TALLY_RETRIES
 * attempts *@rc becomes -EIO. No lock held.
 */
#define TALLY_RETRIES 10
bool tally_retry(struct tally *t, int *rc, unsigned *attempt);
bool tally_meta_shared(struct tally *t);

/*
 * A shared store: what other nodes change of names and inodes, as they
 * commit it (core/cluster/watch.c), for the front end to drop from the kernel's
 * caches. The hooks run on a thread of the watch, no lock held, and must
 * not wait for the filesystem.
 */
struct tally_inval {
	void (*entry)(void *arg, uint64_t parent, const char *name);
	void (*inode)(void *arg, uint64_t ino);
	void *arg;
};
/*
 * The kernel holds bytes that write() accepted (its writeback cache) or
 * that were written through a shared mapping, which this process has not
 * seen yet. Before what is committed is taken by a drain (and so by a
 * branch, du or explain) or by a link into another namespace, @push makes
 * the kernel send the dirty pages of an open file @ino (fs/: an
 * invalidation of the inode, which writes its dirty pages back first) and
 * returns once they were served. It is called with no lock held, from a
 * thread whose wait other threads must serve (so not with a
 * single-threaded loop). NULL: none. @cache: the kernel's writeback cache
 * is on (the status says so).
 */
void tally_set_push(struct tally *t, void (*push)(void *arg, uint64_t ino),
		    void *arg, bool cache);

/* Whether tally_close() has begun: long jobs (rebalance, sweep) stop
 * between two of their steps, to be resumed by running them again. */
bool tally_closing(struct tally *t);
/* The mount point given at open, or NULL. */
const char *tally_mountpoint(struct tally *t);

#endif
