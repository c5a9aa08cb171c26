/* SPDX-License-Identifier: MIT */
/*
 * The body of the filesystem, shared by the files of core/ that make it
 * (core/fs/tally.c and the files it names): struct tally, struct inode,
 * struct flush and their companions, and the functions one of those
 * files offers the others. Not for use outside them: the API is
 * core/fs/tally.h.
 */
#ifndef TALLY_TALLY_INT_H
#define TALLY_TALLY_INT_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/fs/tally.h"

struct progress;
struct store;
struct pool;

#define ITABLE_BITS 10 /* the inode table starts with 1 << 10 chains */
#define POOL_MAX 64    /* free block buffers kept for reuse */
#define DCACHE_SIZE (1u << 16)

struct dirty {
	uint64_t idx;
	/* block_size bytes; past EOF always zero. Bytes from @end on are
	 * zero without having been written (a fresh buffer is not cleared
	 * whole): readers take them as zeros (dirty_copy_out()), a writer
	 * clears what it skips (dirty_zero_to()) */
	char *buf;
	size_t end;
};

struct pending;

/* One flush of the pipeline (core/fs/flush.c, FLUSH PIPELINE). */
struct flush {
	uint64_t seq;
	struct tally *t;
	struct inode *ip;    /* an in-memory reference is held */
	uint64_t size;	     /* file size at rotation */
	bool truncated;	     /* drop committed blocks past trunc_size */
	uint64_t trunc_size; /* lowest size since the flush before */
	struct dirty *blk;   /* owned, sorted by idx */
	size_t nblk;
	struct pending *p; /* outcome of the stream, plus shares */
	size_t np;
	int err;
	/* a full disk part way through the stream: p[] (the blocks before
	 * blk[stop]) is durable and commits, blk[stop..] is parked */
	bool partial;
	size_t stop;
	uint64_t csize;	    /* the size its commit writes (the finalizer's) */
	int64_t born_ns;    /* metrics_clock() at rotation */
	bool streamed;	    /* protected by t->fin_lock: p[] is final */
	struct flush *next; /* inode->inflight / failed list (mlock) */
};

/*
 * The part of an inode that only its users need: its locks, dirty
 * buffers, committed map and flushes. Present while the inode has
 * references (refs > 0: an operation, a flush in flight or parked) or
 * open handles; inode_get() makes it, the inode_put() that leaves the
 * inode without either frees it (its map is read again when needed).
 */
struct inode_io {
	pthread_rwlock_t rw;
	struct dirty *dirty; /* protected by rw, sorted by idx */
	size_t dcap;

	pthread_mutex_t mlock;
	struct meta_bref *map; /* protected by mlock, sorted by idx */
	size_t nmap, mapcap;
	struct flush *inflight; /* protected by mlock, newest first */
	struct flush *failed;	/* protected by mlock, newest first */
	bool map_loaded;	/* protected by mlock (loaded under t->lock) */
	uint64_t map_gen;	/* protected by mlock: maps loaded so far */
	uint64_t write_end; /* protected by rw: where the last write ended */
	uint64_t seq_run;   /* protected by rw: bytes written in one sequence
			       up to write_end */
};

/* One in memory for every inode the kernel knows (a million files known
 * are a million of these): the rest is in inode->io, only while used;
 * fields ordered so that there is no padding. */
struct inode {
	uint64_t ino;
	struct inode *next;	/* protected by t->lock: table chain */
	unsigned refs;		/* protected by t->lock */
	unsigned opens;		/* protected by t->lock */
	uint64_t nlookup;	/* protected by t->lock */
	struct inode_io *io;	/* protected by t->lock: see above */
	struct meta_inode md;	/* protected by t->lock; size also by rw */
	uint64_t dsize, dalloc; /* protected by t->lock: committed values */
	size_t ndirty;		/* protected by rw and t->lock */
	time_t dirty_since;	/* protected by t->lock: seconds */
	uint64_t last_seq;	/* protected by t->lock: its latest flush */
	unsigned nfailed;	/* protected by t->lock: parked flushes */
	int err;		/* protected by t->lock: for fsync/close */
	uint64_t flight_blocks; /* protected by t->lock: in flight, parked */
	uint64_t err_seq;     /* protected by t->lock: the flush that failed */
	uint64_t trunc_size;  /* protected by rw and t->lock: drop past this,
			      * the lowest size since a flush, if truncated */
	bool freed;	      /* protected by t->lock */
	bool lost;	      /* protected by t->lock: a shared store's file
			       * open here whose row another node freed
			       * while this node's hold was gone (its
			       * session expired): reads, writes and
			       * flushes fail with EIO */
	int64_t hold_due;     /* protected by t->lock: a shared store's hold
			      * of this node, kept after the last close
			      * until then (monotonic ms; 0: none kept;
			      * core/fs/file.c, kept holds) */
	bool truncated;	      /* protected by rw and t->lock: see trunc_size */
	uint8_t mdirty;	      /* protected by t->lock: META_F_* fields of md
			      * changed in place and not written yet (a
			      * shared store writes only what changed) */
	uint32_t names_epoch; /* protected by t->lock: a directory known
			       * whole under this epoch (core/fs/dirnames.c;
			       * 0: not known); fits the tail padding */
};

/* The names of directories known whole (core/fs/dirnames.c): protected by
 * t->lock. */
struct dirnames {
	uint64_t *slot;
	size_t cap, n;
};

struct dentry_cache {
	uint64_t parent, ino;
	char *name;
	/* a shared store's hint: when it was made (mono ms), and the
	 * count of other nodes' changes of names seen then (entry_gen) */
	int64_t at;
	uint64_t gen;
};

#define CORRUPT_SEEN 256 /* corrupt objects logged once each */

#define GROUP_MAX 64 /* flushes committed in one transaction */

struct tally {
	const struct tally_upper *up; /* the layers above (core/jobs/mount.c) */
	int64_t group_ns; /* the intent log's groups: their longest age */
	struct store *store;
	struct meta *meta; /* protected by lock */
	struct objstore *objs;
	struct pool *pool;
	struct progress *progress; /* running jobs, for the status */
	struct metrics *metrics; /* counters, histograms (core/util/metrics.h) */
	struct remote *remote;	 /* the remote tier, or NULL */
	uint32_t bs;
	size_t rotate_bytes; /* a file's dirty data that starts a flush */
	uint64_t dirty_limit;
	uid_t owner;
	gid_t owner_gid;
	struct timespec started;

	pthread_mutex_t lock;
	pthread_cond_t space;  /* with lock: dirty buffers were freed */
	struct inode **itable; /* protected by lock */
	/* protected by lock: the namespaces whose leaf is not their first
	 * version (a snapshot or a branch was taken of them), or that have
	 * a view or a root of their own (a branch made them), by namespace;
	 * each one's inodes write into its leaf and read through its chain */
	struct meta_nsleaf *nsleaves; /* inodes from born on were made in
				       * the leaf: their rows are there
				       * alone; view 0: the inodes' own
				       * numbers, else TALLY_VIEW_NSPACES
				       * and up */
	size_t nnsleaves, nsleaves_cap;
	/* protected by lock: the snapshots' views, by view (core/fs/views.c) */
	struct view {
		uint32_t view;
		uint64_t nspace;
		struct meta_ver v;
		int64_t created;
		char *name;
	} * views;
	size_t nviews;
	bool views_stale;	     /* protected by lock: to be read again */
	struct dentry_cache *dcache; /* protected by lock */
	uint64_t ninodes;	     /* protected by lock: in itable */
	unsigned ibits;	   /* protected by lock: itable has 1 << ibits chains */
	uint64_t parked;   /* protected by lock: sum of nfailed */
	uint64_t next_ino; /* protected by lock */
	uint64_t ino_limit; /* protected by lock: reserved below */
	bool wal_unsynced;  /* protected by lock */
	/* protected by lock: dead objects' files doomed in the hold, to be
	 * unlinked after it (tally_unlock()) */
	struct meta_objlist doomed;
	unsigned unlinking;	 /* protected by lock: threads unlinking them */
	pthread_cond_t unlinked; /* with lock: unlinking went to 0 */
	uint64_t dirty_blocks;	 /* protected by lock */
	uint64_t commit_errors;	 /* protected by lock */
	uint64_t enospc_parks;	 /* protected by lock: flushes parked on a
				 * full disk */
	uint64_t space_avail;	 /* protected by lock: the object store's free
				 * bytes (objstore_avail()), read then */
	int64_t space_at;	 /* protected by lock: monotonic ms; 0: never */

	/* the flush pipeline (core/fs/flush.c, FLUSH PIPELINE) */
	pthread_mutex_t fin_lock;
	pthread_cond_t fin_work; /* a flush became ready, or stop */
	pthread_cond_t fin_done; /* done_seq advanced */
	struct flush **heap;	 /* protected by fin_lock: ready flushes */
	size_t nheap;		 /* protected by fin_lock */
	unsigned max_pending;
	unsigned pending; /* protected by fin_lock: rotated, not final */
	void (*stream_hook)(void *arg, uint64_t seq, uint64_t ino);
	void (*release_hook)(void *arg, uint64_t ino);
	void (*rename_hook)(void *arg, uint64_t ino);
	int64_t entry_hint_ms; /* how long a hint stands (dcache_hint()) */
	/* protected by lock: holds kept after the last close, oldest
	 * first, each dropped once due (core/fs/file.c) */
	struct kept_hold {
		uint64_t ino;
		int64_t due; /* monotonic ms */
	} * kept;
	size_t kepthead, nkept, keptcap; /* kept[kepthead..nkept) */
	void *hook_arg;
	/* the kernel's written pages (tally_set_push): set before the
	 * front end serves requests, cleared after */
	void (*push)(void *arg, uint64_t ino);
	void *push_arg;
	bool wb_cache;	  /* the kernel's writeback cache is on */
	bool no_xattrs;	  /* tally_opts.no_xattrs: fixed at open */
	bool no_negcache; /* tally_opts.no_negcache: fixed at open */
	_Atomic unsigned evict_fault; /* tally_inject_evict() */
	_Atomic int64_t
		node_id;     /* written under lock (core/cluster/session.c) */
	struct watch *watch; /* core/cluster/watch.c, or NULL */
	/* protected by lock: the front end's hooks that drop names and
	 * inodes from the kernel's caches (tally_watch(); NULL hooks: none),
	 * for other nodes' changes and this node's rollbacks */
	struct tally_inval inval;
	/* protected by lock: automatic snapshots (core/fs/autosnap.c): when
	 * the next is due (seconds since the epoch; 0: the settings read
	 * again at the next tick), whether a run is queued or running, and
	 * the settings' changes (a run that began before one does not set
	 * the time) */
	int64_t autosnap_next;
	bool autosnap_running;
	uint64_t autosnap_gen;
	/* other nodes' changes of names seen by core/cluster/watch.c, and its
	 * losses of the listening connection: a change makes every hint
	 * made before it void (dcache_hint()) */
	_Atomic uint64_t entry_gen;
	/* directories known whole (core/fs/dirnames.c): the table protected
	 * by lock; the epoch (never 0) and whether the watch listens,
	 * written by the watch thread without it */
	struct dirnames dirnames;
	_Atomic uint32_t names_epoch;
	atomic_bool listening;
	atomic_bool names_used; /* some directory was known whole */
	int64_t heartbeat;	/* seconds between heartbeats */
	int64_t last_beat;	/* protected by lock */
	unsigned ticks;		/* flusher thread only */
	char *mountpoint;	/* NULL when not mounted (tests) */
	_Atomic bool closing;	/* tally_close() has begun */
	int64_t report_interval, stale_after; /* seconds */
	unsigned min_nodes;
	int64_t last_report; /* protected by lock */
	/* rows changed for the mount's upkeep (node reports, snapshot
	 * records), protected by lock: tally_meta_changes() leaves them out */
	int64_t upkeep_changes;
	int64_t gc_interval;
	int64_t last_gc;      /* protected by lock: last automatic cycle */
	uint64_t rotated_seq; /* protected by fin_lock */
	uint64_t done_seq;    /* protected by fin_lock */
	uint64_t groups;      /* protected by fin_lock: group commits */
	_Atomic uint64_t spliced_reads; /* tally_read_fd() answers */
	_Atomic uint64_t corrupt;	/* corrupt objects met by reads */
	_Atomic uint64_t corrupt_seen[CORRUPT_SEEN]; /* their name hashes */
	bool fin_stop;				     /* protected by fin_lock */
	pthread_t fin_thread;

	pthread_mutex_t flusher_lock;
	pthread_cond_t flusher_cond;
	bool flusher_stop; /* protected by flusher_lock */
	pthread_t flusher_thread;

	pthread_mutex_t pool_lock; /* innermost lock */
	char *pool_bufs[POOL_MAX]; /* protected by pool_lock: free buffers */
	size_t npool;		   /* protected by pool_lock */
	bool pool_taken; /* protected by pool_lock: since the last trim */
	/* protected by lock: inodes whose fields changed in place
	 * (inode->mdirty) went into the open transaction's writes
	 * (inode_md_written()); their bits are cleared when it commits
	 * (tally_txn_end()). A flush group's inodes at most; past that the
	 * bits stay, and the fields are written again. */
	struct {
		struct inode *ip;
		uint8_t mask;
	} md_written[GROUP_MAX];
	unsigned nmd_written;
};

/* A block to commit: from a dirty buffer, or shared from another file. */
struct pending {
	uint64_t idx;
	uint32_t len;
	uint32_t shard;
	bool hole, created, shared;
	/* a shared store: in the bucket before the commit (put there by
	 * this flush, or found there by its row) */
	bool shipped, put;
	/* the generation of the key shipped to: a fresh one (@fresh, no
	 * row then) is the new row's (meta_block_set_gen()) */
	bool fresh;
	int64_t gen;
	char name[OBJNAME_MAX];
	const char *buf; /* the flush's buffer, NULL for a share */
};

/* flush_commit() flag: write the inode row even with nothing dirty */
#define COMMIT_FORCE 1

/* Names of objects this node may still commit (core/cluster/report.c). */
struct active {
	const char **v;
	size_t n, cap;
};

/*
 * core/fs/tally.c: small helpers; tally_lock() and tally_unlock() take and
 * drop the metadata lock t->lock, the transaction helpers expect it held.
 */
/* A read met object @name corrupt (@what: how): logged and counted once
 * per object (up to CORRUPT_SEEN of them; later ones are counted). */
void tally_note_corrupt(struct tally *t, const char *name, const char *what);
struct timespec tally_now(void);
/* CLOCK_MONOTONIC in milliseconds. */
int64_t tally_mono_ms(void);
int tally_check_name(const char *name);
/* Namespaces (core/fs/nspace.c, t->lock held but for the name check):
 * whether @name may name a namespace (0 or -EINVAL, -ENAMETOOLONG);
 * namespace @ns's root row; the leaf namespace @nspace writes into, with
 * its chain's depth (0: its first version, no chain). */
int tally_nspace_name_ok(const char *name);
int tally_nspace_row(struct tally *t, const char *ns, struct meta_inode *md);
struct meta_ver tally_nspace_leaf(struct tally *t, uint64_t nspace);
/* A namespace's root row @md, read with its entry in the root (the row of
 * its first version), made the row its chain shows (t->lock held). */
int tally_nspace_root_row(struct tally *t, struct meta_inode *md);
/* tally_snapshot(), with the automatic snapshots' names allowed unless
 * @user. */
int tally_snapshot_as(struct tally *t, const char *ns, const char *name,
		      bool user, int64_t *ver);
bool tally_is_ctl_name(uint64_t parent, const char *name);
/* Whether @name may name a new namespace: -EINVAL for one reserved for
 * versions (".snapshots", or one holding '@'), else 0. Namespaces named
 * so before keep working. */
int tally_nspace_name_taken(const char *name);
/*
 * The version an inode of @md reads and writes (t->lock held): its
 * namespace's leaf, with the depth of its chain (core/fs/nspace.c); the
 * root directory's, 0.
 */
struct meta_ver tally_ver_of(struct tally *t, const struct meta_inode *md);
/* The same in namespace @nspace (an inode seen through a namespace's
 * view: the view's namespace, whichever its row was made in). */
struct meta_ver tally_ver_in(struct tally *t, uint64_t nspace,
			     const struct meta_inode *md);
/* The namespace seen through view @view (TALLY_VIEW_NSPACES and up; 0:
 * none), t->lock held. */
uint64_t tally_view_nspace(struct tally *t, uint32_t view);
/* The node of namespace @nspace's root, through its view (t->lock held):
 * a namespace a branch made shares its root with others. */
uint64_t tally_nspace_node(struct tally *t, uint64_t nspace);
/* Inode numbers at t->next_ino, taken from the store's counter when
 * the mount's are spent (core/fs/names.c; t->lock held). */
int tally_ino_refill(struct tally *t);
/* Whether the namespace whose root is @ip, named @name, may be removed
 * (or, @replace, replaced by a rename): -EBUSY while it has snapshots,
 * or when its leaf's rows would go (*@drop) and a file of it is open;
 * a namespace that shares versions with a branch is not replaced
 * (t->lock held). tally_nspace_dropped(): it went, its leaf forgotten. */
int tally_nspace_removable(struct tally *t, const char *name,
			   const struct inode *ip, bool replace, bool *drop);
void tally_nspace_dropped(struct tally *t, uint64_t nspace);

/*
 * Views (core/fs/views.c, t->lock held): the snapshots as the kernel sees
 * them, by view (docs/design.md 13.3). An inode seen through a view is
 * in memory under its node id (inode->ino), its row's number in md.ino;
 * it is read-only. views_load(): the table read again, after every
 * change of a namespace's snapshots (and at open). view_ver(): the
 * version node @node reads through (the namespace's, for view 0), or
 * -ESTALE when its snapshot is gone. views_reload(): views_load(), its
 * failure logged (the table is read at its next use). views_open():
 * whether a file is open that is seen through the view of a snapshot of
 * namespace @nspace whose version is in [@lo, @hi].
 */
static inline uint64_t node_ino(uint64_t node)
{
	return node & ((1ull << TALLY_VIEW_SHIFT) - 1);
}
static inline uint64_t node_of(uint32_t view, uint64_t ino)
{
	return (uint64_t)view << TALLY_VIEW_SHIFT | ino;
}
/* The node of the inode @ino an entry of directory node @parent names:
 * through the parent's view; in the root, whose entries name namespaces,
 * the namespace @ino's root (t->lock held). */
static inline uint64_t tally_child_node(struct tally *t, uint64_t parent,
					uint64_t ino)
{
	return parent == TALLY_ROOT_INO ? tally_nspace_node(t, ino)
					: node_of(tally_view(parent), ino);
}
int views_load(struct tally *t);
void views_reload(struct tally *t);
void views_free(struct tally *t);
int view_ver(struct tally *t, uint64_t node, struct meta_ver *v);
bool views_open(struct tally *t, uint64_t nspace, int64_t lo, int64_t hi);
/* The names of namespace @nspace's snapshots above version @above, in a
 * new array of new strings. */
int views_names(struct tally *t, uint64_t nspace, int64_t above, char ***names,
		size_t *n);
/* The view of namespace @nspace's snapshot @name: 0, or -ENOENT. */
int view_named(struct tally *t, uint64_t nspace, const char *name,
	       uint32_t *view);
/* The virtual directories of /.snapshots (tally_view() ==
 * TALLY_VIEW_SNAPDIRS): a lookup in one, its attributes, its listing. */
int snapdir_lookup(struct tally *t, uint64_t parent, const char *name,
		   struct stat *st);
int snapdir_getattr(struct tally *t, uint64_t ino, struct stat *st);
int snapdir_readdir(struct tally *t, uint64_t ino, off_t off, bool plus,
		    tally_dir_fn fn, void *ctx);
/* The version node @node, whose row is @md, reads through: its view's,
 * or its namespace's (t->lock held). -ESTALE: its snapshot is gone. */
static inline bool node_nspace_view(uint64_t node)
{
	return !tally_view_ro(node) && tally_view(node);
}
/* The namespace node @node, whose row is @md, is seen in (t->lock held):
 * its view's, or its row's; 0 when its view is gone. */
static inline uint64_t node_nspace(struct tally *t, uint64_t node,
				   const struct meta_inode *md)
{
	return node_nspace_view(node) ? tally_view_nspace(t, tally_view(node))
				      : md->nspace;
}
static inline int node_ver(struct tally *t, uint64_t node,
			   const struct meta_inode *md, struct meta_ver *v)
{
	uint64_t ns;

	if (tally_view_ro(node))
		return view_ver(t, node, v);
	ns = node_nspace(t, node, md);
	if (!ns && node_nspace_view(node))
		return -ESTALE; /* its namespace is gone */
	*v = tally_ver_in(t, ns, md);
	return 0;
}
static inline struct meta_ver inode_ver(struct tally *t, const struct inode *ip)
{
	struct meta_ver v;

	/* a snapshot gone: a version of no row, whose reads find none */
	return node_ver(t, ip->ino, &ip->md, &v) ? (struct meta_ver){ .id = -1 }
						 : v;
}
/* The row of inode @ino as its namespace sees it (t->lock held). */
int tally_inode_row(struct tally *t, uint64_t ino, struct meta_inode *md);
/* The leaves of the namespaces with chains read again from the store
 * (t->lock held): at open, and after a change of the tree. */
int tally_nspace_leaves_load(struct tally *t);
void tally_lock(struct tally *t);
void tally_unlock(struct tally *t);
/* tally_lock() if it is free now: true if taken. */
bool tally_trylock(struct tally *t);
uint64_t tally_blocks_for(struct tally *t, uint64_t size);
int tally_txn_end(struct tally *t, int rc);
/* The end of a transaction whose COMMIT was sent already (@rc: 0, or its
 * failure, then rolled back), as tally_txn_end_as() ends one. */
int tally_txn_done(struct tally *t, int rc, int gone);
/* tally_txn_end(), a directory's row found gone or still named (a shared
 * store's foreign key, -ENOLINK from core/meta/) said as @gone; plain
 * tally_txn_end() says ENOENT, an rmdir ENOTEMPTY. */
int tally_txn_end_as(struct tally *t, int rc, int gone);
int tally_txn_sync(struct tally *t);

/*
 * core/fs/inode.c: the inode table and the entry cache, under t->lock;
 * inode_get() and inode_put() count in-memory references (inode->refs).
 */
bool dcache_get(struct tally *t, uint64_t parent, const char *name,
		uint64_t *ino);
void dcache_put(struct tally *t, uint64_t parent, const char *name,
		uint64_t ino);
void dcache_drop(struct tally *t, uint64_t parent, const char *name);
/* dcache_get(), and on a shared store the inode the node's last look at
 * the name found, if that was at most t->entry_hint_ms ago: a hint for a
 * change that names the inode it expects (core/fs/names.c, child()). */
bool dcache_hint(struct tally *t, uint64_t parent, const char *name,
		 uint64_t *ino);
/*
 * Directories known whole (core/fs/dirnames.c, DESIGN NOTES), on a shared
 * store; t->lock held unless said. dirnames_listening(): whether a
 * directory made now may be known whole (the watch listens), *@epoch the
 * epoch to make it under (read before its transaction). dirnames_known():
 * @dir, just made by this node with its dir_watch row, is known whole.
 * dirnames_absent(): @name is surely not in @dir. dirnames_add(): this
 * node committed @name into @dir. dirnames_changed() (t->lock not held:
 * it takes it): another node changed a name in @dir. dirnames_forget_all()
 * (no lock): no directory is known whole any more. dirnames_release():
 * the table freed (tally_close()).
 */
bool dirnames_listening(struct tally *t, uint32_t *epoch);
void dirnames_known(struct inode *dir, uint32_t epoch);
bool dirnames_absent(struct tally *t, struct inode *dir, const char *name);
void dirnames_add(struct tally *t, uint64_t dir, const char *name);
void dirnames_changed(struct tally *t, uint64_t dir);
void dirnames_forget_all(struct tally *t);
void dirnames_release(struct tally *t);
void inode_drop_failed(struct tally *t, struct inode *ip);
/* A shared store's last close reported that @ip's data could not be
 * committed: see inode.c. Returns the blocks dropped (rw exclusive and
 * t->lock held). */
uint64_t inode_drop_unsaved(struct tally *t, struct inode *ip);
void inode_free_data(struct tally *t, struct inode *ip);
void inode_destroy(struct tally *t, struct inode *ip);
struct inode *inode_alloc(const struct meta_inode *md);
void inode_insert(struct tally *t, struct inode *ip);
/* The inode @ino if it is in memory, else NULL (t->lock held). */
struct inode *inode_find(struct tally *t, uint64_t ino);
int inode_get(struct tally *t, uint64_t ino, struct inode **out);
/* One more reference to @ip, found in the table (t->lock held); makes
 * its io part if it has none. */
int inode_hold(struct inode *ip);
/* The number of chains of the inode table (t->lock held). */
static inline size_t itable_size(const struct tally *t)
{
	return (size_t)1 << t->ibits;
}
/*
 * The same, and with a shared store the row read again when this node
 * has nothing pending on the inode (no open file, no dirty, in-flight or
 * parked data): what other nodes committed, for lookups, getattr and
 * first opens (close-to-open). t->lock held.
 */
int inode_get_fresh(struct tally *t, uint64_t ino, struct inode **out);
/* A committed row read with its entry (readdirplus): taken into @ip when
 * nothing of this node's is newer (inode_get_fresh()'s rule). */
void inode_refresh(struct tally *t, struct inode *ip,
		   const struct meta_inode *md);
/* @ip made from its committed row @md, whatever it held; its map read
 * again at the next read (t->lock held). */
void inode_take_row(struct inode *ip, const struct meta_inode *md);
void inode_put(struct tally *t, struct inode *ip);
void inode_fill_stat(struct tally *t, const struct inode *ip, struct stat *st);
void inode_md_stat(struct tally *t, const struct meta_inode *md, uint64_t alloc,
		   struct stat *st);
void inode_virtual_stat(struct tally *t, uint64_t ino, struct stat *st);
int inode_write_md(struct tally *t, struct inode *ip, struct meta_inode *md);
/* inode_write_md(), then the COMMIT of its transaction, in one round trip
 * on PostgreSQL (meta_inode_update_commit(); @extra: META_F_ROW or 0);
 * the caller ends the transaction with tally_txn_done(). */
int inode_write_md_commit(struct tally *t, struct inode *ip,
			  struct meta_inode *md, unsigned extra);
/* inode_write_md() of a change with no answer (a directory's times), sent
 * after the next statement that has one (META_F_AFTER). */
int inode_write_md_after(struct tally *t, struct inode *ip,
			 struct meta_inode *md);
/* @ip's fields changed in place (mdirty) go into the open transaction's
 * writes: forgotten once it commits (t->lock held). */
void inode_md_written(struct tally *t, struct inode *ip);
/* A shared store: drop @ip's references and row in a transaction of its
 * own if the store says it has no link left and no other node holds it
 * (meta_inode_last()); *@dropped says whether it went. t->lock held. */
int inode_drop_if_last(struct tally *t, struct inode *ip, bool *dropped);
int inode_drop(struct tally *t, struct inode *ip);

/*
 * core/fs/dirty.c: block buffers, block maps and dirty buffers; the dirty
 * buffers under inode->rw, the map under inode->mlock.
 */
void dirty_buf_put(struct tally *t, char *buf);
/* The flusher's tick: the pooled buffers go if none was taken since the
 * last tick. */
void dirty_pool_trim(struct tally *t);
size_t dirty_pool_bytes(struct tally *t); /* bytes of pooled buffers */
struct meta_bref *dirty_map_find(struct inode *ip, uint64_t idx);
struct dirty *dirty_search(struct dirty *v, size_t n, uint64_t idx);
size_t dirty_pos(struct inode *ip, uint64_t idx);
struct dirty *dirty_find(struct inode *ip, uint64_t idx);
int dirty_map_load(struct tally *t, struct inode *ip);
/* Maps of @ip loaded so far (a read that saw it change starts over). */
uint64_t dirty_map_gen(struct inode *ip);
/* @reload: a reader's (tally_read()), which may read the map again when
 * another node replaced a block's object, and starts over then. */
int dirty_read_below(struct tally *t, struct inode *ip, uint64_t idx, char *dst,
		     size_t off, size_t len, bool reload);
int dirty_get(struct tally *t, struct inode *ip, uint64_t idx, bool whole,
	      struct dirty **out);
void dirty_trunc_note(struct tally *t, struct inode *ip, uint64_t size);
bool dirty_all_zero(const char *buf, size_t len);
/* Bytes [@off, @off+@len) of @d into @dst (those past d->end: zeros). */
void dirty_copy_out(const struct dirty *d, char *dst, size_t off, size_t len);
/* Clear @d's bytes from d->end to @end, and move d->end there (rw held
 * exclusively). */
void dirty_zero_to(struct dirty *d, size_t end);
/* Copy @len bytes of @src into @d at @off, clearing the bytes skipped
 * between d->end and @off (rw held exclusively). */
void dirty_put_bytes(struct dirty *d, size_t off, const void *src, size_t len);
int dirty_map_reserve(struct inode *ip, size_t more);
int dirty_map_set(struct inode *ip, uint64_t idx, const struct meta_bref *ref);

/*
 * core/fs/flush.c and flush_start.c: the flush pipeline; rotations and the
 * commits and the throttle that rotate run with inode->rw held exclusive.
 */
void flush_free(struct tally *t, struct flush *f);
int flush_rotate(struct tally *t, struct inode *ip,
		 const struct pending *shares, size_t nshares, bool force,
		 uint64_t *seq);
/* Whether a flush of @ip is in flight and not finalized (t->lock held):
 * its commit, on one host, writes the inode's row as it is then. */
bool flush_in_flight(struct tally *t, struct inode *ip);
int flush_wait(struct tally *t, uint64_t seq, double timeout);
/* flush_wait(), showing done_seq - @base as @pj's progress meanwhile */
struct progress_job;
int flush_wait_progress(struct tally *t, uint64_t seq, double timeout,
			struct progress_job *pj, uint64_t base);
int flush_take_err(struct tally *t, struct inode *ip, uint64_t upto);
void *flush_finalizer(void *arg);
void *flush_flusher(void *arg);
int flush_commit_with(struct tally *t, struct inode *ip, int flags,
		      const struct pending *shares, size_t nshares);
int flush_commit(struct tally *t, struct inode *ip, int flags);
/* Wait while dirty data is above dirty_limit (exclusive rw held): 0, or
 * -ENOSPC when the flushes that would free it fail on a full disk. */
int flush_throttle(struct tally *t, struct inode *ip);
/*
 * Space for a write (exclusive rw held) that dirties @blocks blocks of
 * @ip not dirty yet: 0 when the object store's free space covers every
 * uncommitted block (dirty, in flight, parked) and these, each counted
 * a whole block; -ENOSPC when it does not, even once the flushes under
 * way are done (a write accepted is never one that cannot be stored).
 */
int flush_reserve(struct tally *t, struct inode *ip, uint64_t blocks);

/*
 * core/fs/file.c: file data; file_get() and file_put() take t->lock for an
 * in-memory reference.
 */
int file_set_size(struct tally *t, struct inode *ip, uint64_t size);
int file_get(struct tally *t, uint64_t ino, struct inode **out);
/* Drop the kept holds that are due, or with @all every one (no lock
 * held). */
void file_drop_kept_holds(struct tally *t, bool all);
/* Forget the kept holds: the session that had them is gone (t->lock
 * held). */
void file_forget_kept_holds(struct tally *t);
void file_put(struct tally *t, struct inode *ip);

/* Add @name to active set @a (the name is kept, not copied). */
int active_add(struct active *a, const char *name);

#endif /* TALLY_TALLY_INT_H */
