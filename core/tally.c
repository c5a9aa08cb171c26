/* SPDX-License-Identifier: MIT */
/*
 * The filesystem: namespaces, inodes, directory entries, buffered file
 * data and the commit that turns dirty blocks into object references.
 *
 * DESIGN NOTES
 *
 * Counts. Three counts are kept apart (docs/design.md, section 6):
 *  - inode->nlookup: the kernel's lookup references (lookup, create,
 *    readdirplus add; forget drops);
 *  - inode->refs and inode->opens: in-memory users and open handles;
 *  - objects.refcount in the metadata store: block references.
 * An inode is freed (its block references dropped in the same transaction
 * that deletes it) when nlink is 0 and no handle is open. Its in-memory
 * struct lives on until refs, nlookup and opens are all 0.
 *
 * Invariants:
 *  1. Object data and its directory entry are durable before the
 *     transaction that names the object commits (objstore_put into a
 *     batch, objstore_batch_finish, then meta_commit).
 *  2. An object file is deleted only by core/reap.c, after the
 *     transaction that left nothing naming it has committed, under
 *     t->lock (txn_end(), tally_meta_unlock()); a commit that reuses an
 *     object with no row re-checks the file under t->lock, so a reuse
 *     can never race with that unlink into a dangling reference. (GC
 *     unlinks leaked files after t->lock; the re-check cancels such an
 *     unlink or waits for it: core/objstore.c, doomed files.)
 *  3. inode->map is the committed block map (as in the metadata store);
 *     inode->dirty holds whole-block buffers newer than the map.
 *  4. The size and allocation written by metadata-only operations are the
 *     committed ones (dsize, dalloc): a crash never exposes a size whose
 *     data was not committed with it.
 *  5. A failed commit keeps its dirty blocks; the error is returned by the
 *     next flush/fsync/close of the file (inode->err). A close reports
 *     only the failures of flushes started before it (inode->err_seq):
 *     its own flush may fail later, and that reaches the next one.
 *
 * Lock order: inode->rw, then t->lock. t->lock protects the metadata
 * store, the inode table, the entry cache and the fields marked so;
 * inode->rw protects the block map and the dirty buffers (and size
 * changes take both). No I/O on object files happens under t->lock except
 * the rare re-check of invariant 2 and the unlink of dead objects.
 */
#include "core/tally.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "core/gc.h"
#include "core/log.h"
#include "core/meta.h"
#include "core/objstore.h"
#include "core/pool.h"
#include "core/shard.h"
#include "core/progress.h"
#include "core/reap.h"
#include "core/store.h"

#define ITABLE_SIZE (1u << 16)
#define POOL_MAX 64 /* free block buffers kept for reuse */
#define DCACHE_SIZE (1u << 16)
#define XATTR_REFS "user.tally.refs"
#define XATTR_OBJECTS "user.tally.objects"
#define XATTR_RESERVED "user.tally."

struct dirty {
	uint64_t idx;
	char *buf; /* block_size bytes; past EOF always zero */
};

struct pending;

/* One flush of the pipeline (see FLUSH PIPELINE below). */
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
	bool streamed;	    /* protected by t->fin_lock: p[] is final */
	struct flush *next; /* inode->inflight / failed list (mlock) */
};

struct inode {
	uint64_t ino;
	struct inode *next;	/* protected by t->lock: table chain */
	unsigned refs;		/* protected by t->lock */
	uint64_t nlookup;	/* protected by t->lock */
	unsigned opens;		/* protected by t->lock */
	bool freed;		/* protected by t->lock */
	struct meta_inode md;	/* protected by t->lock; size also by rw */
	uint64_t dsize, dalloc; /* protected by t->lock: committed values */
	size_t ndirty;		/* protected by rw and t->lock */
	struct timespec dirty_since; /* protected by t->lock */
	uint64_t last_seq;	/* protected by t->lock: its latest flush */
	unsigned nfailed;	/* protected by t->lock: parked flushes */
	uint64_t flight_blocks; /* protected by t->lock: in flight, parked */
	int err;		/* protected by t->lock: for fsync/close */
	uint64_t err_seq;    /* protected by t->lock: the flush that failed */
	bool truncated;	     /* protected by rw and t->lock: drop past... */
	uint64_t trunc_size; /* ...this, the lowest size since a flush */
	uint64_t write_end;  /* protected by rw: where the last write ended */

	pthread_rwlock_t rw;
	struct dirty *dirty; /* protected by rw, sorted by idx */
	size_t dcap;

	pthread_mutex_t mlock;
	bool map_loaded;       /* protected by mlock (loaded under t->lock) */
	struct meta_bref *map; /* protected by mlock, sorted by idx */
	size_t nmap, mapcap;
	struct flush *inflight; /* protected by mlock, newest first */
	struct flush *failed;	/* protected by mlock, newest first */
};

struct dentry_cache {
	uint64_t parent, ino;
	char *name;
};

struct tally {
	struct store *store;
	struct meta *meta; /* protected by lock */
	struct objstore *objs;
	struct pool *pool;
	struct progress *progress; /* running jobs, for the status */
	uint32_t bs;
	size_t rotate_bytes; /* a file's dirty data that starts a flush */
	uint64_t dirty_limit;
	uid_t owner;
	gid_t owner_gid;
	struct timespec started;

	pthread_mutex_t lock;
	pthread_cond_t space;	     /* with lock: dirty buffers were freed */
	struct inode **itable;	     /* protected by lock */
	struct dentry_cache *dcache; /* protected by lock */
	uint64_t next_ino;	     /* protected by lock */
	uint64_t ino_limit;	     /* protected by lock: reserved below */
	bool wal_unsynced;	     /* protected by lock */
	uint64_t dirty_blocks;	     /* protected by lock */
	uint64_t commit_errors;	     /* protected by lock */

	/* the flush pipeline (see FLUSH PIPELINE below) */
	pthread_mutex_t fin_lock;
	pthread_cond_t fin_work; /* a flush became ready, or stop */
	pthread_cond_t fin_done; /* done_seq advanced */
	struct flush **heap;	 /* protected by fin_lock: ready flushes */
	size_t nheap;		 /* protected by fin_lock */
	unsigned max_pending;
	unsigned pending; /* protected by fin_lock: rotated, not final */
	void (*stream_hook)(void *arg, uint64_t seq, uint64_t ino);
	void (*release_hook)(void *arg, uint64_t ino);
	void *hook_arg;
	int64_t node_id;
	unsigned shard_ticks; /* flusher thread only */
	char *mountpoint;     /* NULL when not mounted (tests) */
	_Atomic bool closing; /* tally_close() has begun */
	int64_t report_interval, stale_after; /* seconds */
	unsigned min_nodes;
	int64_t last_report; /* protected by lock */
	int64_t gc_interval;
	int64_t last_gc;      /* protected by lock: last automatic cycle */
	uint64_t rotated_seq; /* protected by fin_lock */
	uint64_t done_seq;    /* protected by fin_lock */
	uint64_t groups;      /* protected by fin_lock: group commits */
	_Atomic uint64_t spliced_reads; /* tally_read_fd() answers */
	bool fin_stop;			/* protected by fin_lock */
	pthread_t fin_thread;

	pthread_mutex_t flusher_lock;
	pthread_cond_t flusher_cond;
	bool flusher_stop; /* protected by flusher_lock */
	pthread_t flusher_thread;

	pthread_mutex_t pool_lock; /* innermost lock */
	char *pool_bufs[POOL_MAX]; /* protected by pool_lock: free buffers */
	size_t npool;		   /* protected by pool_lock */
};

/* ------------------------------------------------------------------ */
/* small helpers */

static struct timespec now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

static int check_name(const char *name)
{
	size_t len = strlen(name);

	if (len == 0)
		return -ENOENT;
	if (len > TALLY_NAME_MAX)
		return -ENAMETOOLONG;
	if (strchr(name, '/'))
		return -EINVAL;
	return 0;
}

static bool is_ctl_name(uint64_t parent, const char *name)
{
	return parent == TALLY_ROOT_INO && !strcmp(name, TALLY_CTLDIR_NAME);
}

static bool is_virtual(uint64_t ino)
{
	return ino >= TALLY_CTLDIR_INO && ino <= TALLY_STATUS_INO;
}

static void lock(struct tally *t)
{
	pthread_mutex_lock(&t->lock);
}

static void unlock(struct tally *t)
{
	pthread_mutex_unlock(&t->lock);
}

static uint64_t blocks_for(struct tally *t, uint64_t size)
{
	return (size + t->bs - 1) / t->bs;
}

/* ------------------------------------------------------------------ */
/* entry cache: direct-mapped, positive entries only; t->lock */

static size_t dcache_slot(uint64_t parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ parent;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return (size_t)(h & (DCACHE_SIZE - 1));
}

static bool dcache_get(struct tally *t, uint64_t parent, const char *name,
		       uint64_t *ino)
{
	struct dentry_cache *d = &t->dcache[dcache_slot(parent, name)];

	if (d->name && d->parent == parent && !strcmp(d->name, name)) {
		*ino = d->ino;
		return true;
	}
	return false;
}

static void dcache_put(struct tally *t, uint64_t parent, const char *name,
		       uint64_t ino)
{
	struct dentry_cache *d = &t->dcache[dcache_slot(parent, name)];
	char *copy = strdup(name);

	if (!copy)
		return;
	free(d->name);
	d->name = copy;
	d->parent = parent;
	d->ino = ino;
}

static void dcache_drop(struct tally *t, uint64_t parent, const char *name)
{
	struct dentry_cache *d = &t->dcache[dcache_slot(parent, name)];

	if (d->name && d->parent == parent && !strcmp(d->name, name)) {
		free(d->name);
		d->name = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* block buffers: reused, so that buffering a write does not fault in
 * fresh pages every time */

static char *buf_get(struct tally *t)
{
	char *buf = NULL;

	pthread_mutex_lock(&t->pool_lock);
	if (t->npool)
		buf = t->pool_bufs[--t->npool];
	pthread_mutex_unlock(&t->pool_lock);
	return buf ? buf : malloc(t->bs);
}

static void buf_put(struct tally *t, char *buf)
{
	if (!buf)
		return;
	pthread_mutex_lock(&t->pool_lock);
	if (t->npool < POOL_MAX) {
		t->pool_bufs[t->npool++] = buf;
		buf = NULL;
	}
	pthread_mutex_unlock(&t->pool_lock);
	free(buf);
}

/* ------------------------------------------------------------------ */
/* inode table; t->lock */

static struct inode **ibucket(struct tally *t, uint64_t ino)
{
	return &t->itable[(ino * 0x9e3779b97f4a7c15ull) >> 48];
}

static void flush_free(struct tally *t, struct flush *f);

/* Drop the data of an inode (t->lock held): it was freed, or the whole
 * filesystem goes. */
/* Drop the parked flushes of a freed inode: nothing will want their
 * data (t->lock held). */
static void drop_failed(struct tally *t, struct inode *ip)
{
	struct flush *failed;

	pthread_mutex_lock(&ip->mlock);
	failed = ip->failed;
	ip->failed = NULL;
	pthread_mutex_unlock(&ip->mlock);
	while (failed) {
		struct flush *f = failed;

		failed = f->next;
		assert(ip->refs > 0 && ip->nfailed > 0);
		ip->refs--; /* the parked flush's reference */
		ip->nfailed--;
		ip->flight_blocks -= f->nblk;
		t->dirty_blocks -= f->nblk;
		flush_free(t, f);
	}
}

static void inode_free_data(struct tally *t, struct inode *ip)
{
	size_t i;

	drop_failed(t, ip);
	for (i = 0; i < ip->ndirty; i++)
		buf_put(t, ip->dirty[i].buf);
	t->dirty_blocks -= ip->ndirty;
	ip->ndirty = 0;
	free(ip->dirty);
	ip->dirty = NULL;
	ip->dcap = 0;
	free(ip->map);
	ip->map = NULL;
	ip->nmap = ip->mapcap = 0;
	ip->map_loaded = false;
}

static void inode_destroy(struct tally *t, struct inode *ip)
{
	inode_free_data(t, ip);
	pthread_rwlock_destroy(&ip->rw);
	pthread_mutex_destroy(&ip->mlock);
	free(ip);
}

static struct inode *inode_alloc(const struct meta_inode *md)
{
	struct inode *ip = calloc(1, sizeof(*ip));

	if (!ip)
		return NULL;
	ip->ino = md->ino;
	ip->md = *md;
	ip->dsize = md->size;
	ip->dalloc = md->alloc;
	pthread_rwlock_init(&ip->rw, NULL);
	pthread_mutex_init(&ip->mlock, NULL);
	return ip;
}

static void inode_insert(struct tally *t, struct inode *ip)
{
	struct inode **b = ibucket(t, ip->ino);

	ip->next = *b;
	*b = ip;
}

static struct inode *inode_find(struct tally *t, uint64_t ino)
{
	struct inode *ip;

	for (ip = *ibucket(t, ino); ip; ip = ip->next)
		if (ip->ino == ino)
			return ip;
	return NULL;
}

/* Get an in-memory reference to @ino, loading it if needed. */
static int iget(struct tally *t, uint64_t ino, struct inode **out)
{
	struct inode *ip = inode_find(t, ino);

	if (!ip) {
		struct meta_inode md;
		int rc = meta_inode_get(t->meta, ino, &md);

		if (rc)
			return rc;
		ip = inode_alloc(&md);
		if (!ip)
			return -ENOMEM;
		inode_insert(t, ip);
	}
	ip->refs++;
	*out = ip;
	return 0;
}

/* Drop a reference; evict the inode when nothing needs it. */
static void iput(struct tally *t, struct inode *ip)
{
	struct inode **pp;

	if (!ip)
		return;
	assert(ip->refs > 0);
	if (--ip->refs || ip->nlookup || ip->opens || ip->ndirty)
		return;
	for (pp = ibucket(t, ip->ino); *pp; pp = &(*pp)->next)
		if (*pp == ip) {
			*pp = ip->next;
			break;
		}
	inode_destroy(t, ip);
}

static void fill_stat(struct tally *t, const struct inode *ip, struct stat *st)
{
	/* blocks in flight count as allocated: st_blocks never dips below
	 * what the file will hold (cp takes a file that looks sparse for
	 * one, and copies it byte by byte) */
	uint64_t alloc =
		ip->dalloc + (ip->ndirty + ip->flight_blocks) * (uint64_t)t->bs;

	memset(st, 0, sizeof(*st));
	st->st_ino = ip->ino;
	st->st_mode = ip->md.mode;
	st->st_nlink = ip->md.nlink;
	st->st_uid = ip->md.uid;
	st->st_gid = ip->md.gid;
	st->st_rdev = ip->md.rdev;
	st->st_size = (off_t)ip->md.size;
	st->st_blksize = (blksize_t)t->bs;
	if (S_ISREG(ip->md.mode)) {
		if (alloc > ip->md.size + t->bs)
			alloc = ip->md.size;
		st->st_blocks = (blkcnt_t)((alloc + 511) / 512);
	} else if (S_ISDIR(ip->md.mode)) {
		st->st_size = 4096;
		st->st_blocks = 8;
	}
	st->st_atim = ip->md.atime;
	st->st_mtim = ip->md.mtime;
	st->st_ctim = ip->md.ctime;
}

static void virtual_stat(struct tally *t, uint64_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = t->owner;
	st->st_gid = t->owner_gid;
	st->st_atim = st->st_mtim = st->st_ctim = t->started;
	st->st_blksize = 4096;
	switch (ino) {
	case TALLY_CTLDIR_INO:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		break;
	case TALLY_CTL_INO:
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		break;
	default:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		break;
	}
}

/* Write @md with the committed size and allocation (invariant 4). */
static int put_md(struct tally *t, const struct inode *ip,
		  const struct meta_inode *md)
{
	struct meta_inode copy = *md;

	copy.size = ip->dsize;
	copy.alloc = ip->dalloc;
	return meta_inode_put(t->meta, &copy);
}

/*
 * Finish a transaction: commit or roll back; after a commit, delete the
 * files of the objects it left unnamed (core/reap.c decides). Returns
 * the commit's result.
 */
static int txn_end(struct tally *t, int rc)
{
	if (!rc)
		rc = meta_commit(t->meta);
	if (rc) {
		meta_rollback(t->meta);
		return rc;
	}
	t->wal_unsynced = true;
	reap_dead(t->meta, t->objs);
	return 0;
}

/* Make every commit so far durable against power loss (t->lock held). */
static int txn_sync(struct tally *t)
{
	int rc;

	if (!t->wal_unsynced)
		return 0;
	rc = meta_sync(t->meta);
	if (!rc)
		t->wal_unsynced = false;
	return rc;
}

/* Drop an unlinked, closed inode's references and row; t->lock held,
 * inside a transaction. Marks it freed once the caller commits. */
static int inode_drop(struct tally *t, struct inode *ip)
{
	int rc = meta_blocks_drop(t->meta, ip->ino, 0);

	if (!rc)
		rc = meta_inode_delete(t->meta, ip->ino);
	return rc;
}

/* ------------------------------------------------------------------ */
/* open and close */

static void *finalizer(void *arg);
static void *flusher(void *arg);

/* This mount's node id: stable, kept in the store. */
static int node_identity(struct tally *t)
{
	int64_t id;
	int rc = meta_config_get(t->meta, "node_id", &id);

	if (rc == -ENOENT) {
		id = store_random_id();
		rc = meta_begin(t->meta);
		if (!rc)
			rc = meta_config_set(t->meta, "node_id", id);
		rc = txn_end(t, rc);
	}
	if (!rc) {
		t->node_id = id;
		meta_set_self(t->meta, id);
	}
	return rc;
}

static unsigned cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

static int clean_orphans(struct tally *t)
{
	uint64_t *inos = NULL;
	size_t n = 0, i;
	int rc;

	rc = meta_inode_orphans(t->meta, &inos, &n);
	for (i = 0; i < n && !rc; i++) {
		rc = meta_begin(t->meta);
		if (rc)
			break;
		rc = meta_blocks_drop(t->meta, inos[i], 0);
		if (!rc)
			rc = meta_inode_delete(t->meta, inos[i]);
		rc = txn_end(t, rc);
	}
	if (n)
		log_msg(LOG_INFO,
			"freed %zu unlinked inode(s) left open by "
			"the last mount",
			n);
	free(inos);
	return rc;
}

/* A number read from the file @path, or 0 (missing, "max", garbage). */
static uint64_t read_limit(const char *path)
{
	FILE *f = fopen(path, "re");
	unsigned long long v = 0;

	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return (uint64_t)v;
}

/*
 * The memory limit of this process's cgroup, or 0: with cgroup v2 the
 * lowest memory.max from its cgroup up to the root of the hierarchy (a
 * parent's limit bounds its children), with v1 the memory controller's
 * memory.limit_in_bytes.
 */
static uint64_t cgroup_mem_limit(void)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[PATH_MAX + 64], path[PATH_MAX + 64];
	uint64_t lim = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *cg = strchr(line, ':'), *p, *nl = strchr(line, '\n');
		bool v2;

		if (nl)
			*nl = '\0';
		if (!cg || !(p = strchr(cg + 1, ':')))
			continue;
		*cg = '\0';
		*p++ = '\0';
		v2 = strcmp(line, "0") == 0 && cg[1] == '\0';
		if (!v2 && !strstr(cg + 1, "memory"))
			continue;
		for (;;) {
			uint64_t v;
			char *slash;

			snprintf(path, sizeof(path), "/sys/fs/cgroup%s%s/%s",
				 v2 ? "" : "/memory",
				 strcmp(p, "/") == 0 ? "" : p,
				 v2 ? "memory.max" : "memory.limit_in_bytes");
			v = read_limit(path);
			if (v && (!lim || v < lim))
				lim = v;
			slash = strrchr(p, '/');
			if (!v2 || !slash || slash == p)
				break;
			*slash = '\0';
		}
		if (v2 && strcmp(p, "/") != 0) {
			/* the root of the hierarchy (in a cgroup namespace:
			 * the container's own limit) */
			uint64_t v = read_limit("/sys/fs/cgroup/memory.max");

			if (v && (!lim || v < lim))
				lim = v;
		}
	}
	fclose(f);
	return lim;
}

/*
 * The default bound of buffered data: a tenth of the memory this process
 * may use (the machine's, or its cgroup's limit when lower), between
 * 256 MiB and 4 GiB, like the kernel's dirty_background_ratio. Random
 * writes into a large file dirty whole blocks (a block is read in before
 * a part of it is written), so a bound far below the page cache's turns
 * every few writes into a flush of the whole file.
 */
static uint64_t default_dirty_limit(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	uint64_t mem =
		pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
	uint64_t cg = cgroup_mem_limit(), lim;

	if (cg && (mem == 0 || cg < mem))
		mem = cg;
	lim = mem / 10;
	if (lim < 256u << 20)
		lim = 256u << 20;
	if (lim > (uint64_t)4 << 30)
		lim = (uint64_t)4 << 30;
	return lim;
}

int tally_open(const char *path, const struct tally_opts *opts,
	       struct tally **out)
{
	struct tally *t;
	uint64_t max;
	int64_t v;
	int rc;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->itable = calloc(ITABLE_SIZE, sizeof(*t->itable));
	t->dcache = calloc(DCACHE_SIZE, sizeof(*t->dcache));
	if (!t->itable || !t->dcache) {
		rc = -ENOMEM;
		goto out_free;
	}
	if (opts->mountpoint) {
		t->mountpoint = strdup(opts->mountpoint);
		if (!t->mountpoint) {
			rc = -ENOMEM;
			goto out_free;
		}
	}
	rc = progress_new(&t->progress);
	if (rc)
		goto out_free;
	rc = store_open(path, opts->create,
			opts->block_size ? opts->block_size
					 : STORE_DEFAULT_BLOCK_SIZE,
			&t->store);
	if (rc)
		goto out_free;
	t->meta = t->store->meta;
	t->objs = t->store->objs;
	if (opts->sync_objects)
		objstore_set_sync_mode(t->objs, opts->sync_objects);
	t->bs = t->store->block_size;
	t->rotate_bytes = opts->inode_dirty_max ? opts->inode_dirty_max
						: 8u << 20;
	if (t->rotate_bytes < t->bs)
		t->rotate_bytes = t->bs;
	t->dirty_limit = opts->dirty_limit ? opts->dirty_limit
					   : default_dirty_limit();
	if (t->dirty_limit < 2 * t->rotate_bytes)
		t->dirty_limit = 2 * t->rotate_bytes;
	t->max_pending = opts->max_pending ? opts->max_pending : 32;
	t->stream_hook = opts->stream_hook;
	t->release_hook = opts->release_hook;
	t->hook_arg = opts->hook_arg;
	t->report_interval = opts->report_interval ? opts->report_interval : 60;
	t->stale_after = opts->stale_after ? opts->stale_after : 600;
	t->min_nodes = opts->min_nodes_reporting ? opts->min_nodes_reporting
						 : 1;
	t->gc_interval = opts->gc_interval > 0 ? opts->gc_interval : 0;
	t->last_gc = (int64_t)time(NULL);
	t->owner = opts->owner;
	t->owner_gid = opts->owner_gid;
	t->started = now();
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->space, NULL);
	pthread_mutex_init(&t->pool_lock, NULL);
	pthread_mutex_init(&t->fin_lock, NULL);
	pthread_cond_init(&t->fin_work, NULL);
	pthread_cond_init(&t->fin_done, NULL);
	pthread_mutex_init(&t->flusher_lock, NULL);
	pthread_cond_init(&t->flusher_cond, NULL);
	t->heap = calloc(t->max_pending, sizeof(*t->heap));
	if (!t->heap) {
		rc = -ENOMEM;
		goto out_store;
	}
	rc = meta_config_get(t->meta, "next_ino", &v);
	if (rc || v < 16) {
		log_msg(LOG_ERR, "store '%s' is damaged: bad next_ino", path);
		rc = -EUCLEAN;
		goto out_store;
	}
	/* numbers below the reservation may be taken: start above both */
	t->ino_limit = (uint64_t)v;
	t->next_ino = (uint64_t)v;
	if (meta_max_ino(t->meta, &max) == 0 && max + 1 > t->next_ino)
		t->next_ino = max + 1;
	if (meta_config_get(t->meta, "durable_seq", &v) == 0)
		t->done_seq = t->rotated_seq = (uint64_t)v;
	rc = clean_orphans(t);
	if (!rc)
		rc = node_identity(t);
	if (!rc)
		rc = shard_setup(t);
	if (rc)
		goto out_store;
	/* flush streams get the workers; control jobs a thread of their own */
	rc = pool_new(opts->workers ? opts->workers : cpus(), 1, &t->pool);
	if (rc)
		goto out_store;
	if (pthread_create(&t->fin_thread, NULL, finalizer, t) != 0) {
		rc = -EAGAIN;
		goto out_pool;
	}
	if (pthread_create(&t->flusher_thread, NULL, flusher, t) != 0) {
		rc = -EAGAIN;
		goto out_finalizer;
	}
	*out = t;
	return 0;

out_finalizer:
	pthread_mutex_lock(&t->fin_lock);
	t->fin_stop = true;
	pthread_cond_broadcast(&t->fin_work);
	pthread_mutex_unlock(&t->fin_lock);
	pthread_join(t->fin_thread, NULL);
out_pool:
	pool_free(t->pool);
out_store:
	free(t->heap);
	pthread_mutex_destroy(&t->pool_lock);
	pthread_mutex_destroy(&t->lock);
	store_close(t->store);
out_free:
	progress_free(t->progress);
	free(t->itable);
	free(t->dcache);
	free(t->mountpoint);
	free(t);
	return rc;
}

int tally_close(struct tally *t)
{
	size_t i;
	int rc;

	if (!t)
		return 0;
	atomic_store(&t->closing, true); /* long jobs stop early */
	rc = tally_drain(t, NULL, 0);
	/* stop the timer, then the finalizer (nothing is pending), then
	 * the pool (it runs what is queued) */
	pthread_mutex_lock(&t->flusher_lock);
	t->flusher_stop = true;
	pthread_cond_signal(&t->flusher_cond);
	pthread_mutex_unlock(&t->flusher_lock);
	pthread_join(t->flusher_thread, NULL);
	pthread_mutex_lock(&t->fin_lock);
	t->fin_stop = true;
	pthread_cond_broadcast(&t->fin_work);
	pthread_mutex_unlock(&t->fin_lock);
	pthread_join(t->fin_thread, NULL);
	pool_free(t->pool);
	lock(t);
	{
		int rc2 = meta_begin(t->meta);

		/* a clean unmount withdraws this node's report */
		if (!rc2)
			rc2 = meta_node_remove(t->meta, t->node_id);
		rc2 = txn_end(t, rc2);
		if (rc2)
			log_msg(LOG_WARNING,
				"cannot withdraw the node report: "
				"%s",
				strerror(-rc2));
	}
	{
		int rc2 = txn_sync(t);

		if (!rc)
			rc = rc2;
	}

	for (i = 0; i < ITABLE_SIZE; i++) {
		while (t->itable[i]) {
			struct inode *ip = t->itable[i];

			t->itable[i] = ip->next;
			if (ip->nfailed) {
				log_msg(LOG_ERR,
					"inode %" PRIu64 ": data that "
					"could not be committed is lost at "
					"unmount",
					ip->ino);
				if (!rc)
					rc = -EIO;
			}
			inode_destroy(t, ip);
		}
	}
	for (i = 0; i < DCACHE_SIZE; i++)
		free(t->dcache[i].name);
	unlock(t);
	while (t->npool)
		free(t->pool_bufs[--t->npool]);
	free(t->heap);
	pthread_cond_destroy(&t->flusher_cond);
	pthread_mutex_destroy(&t->flusher_lock);
	pthread_cond_destroy(&t->fin_done);
	pthread_cond_destroy(&t->fin_work);
	pthread_mutex_destroy(&t->fin_lock);
	pthread_mutex_destroy(&t->pool_lock);
	pthread_cond_destroy(&t->space);
	pthread_mutex_destroy(&t->lock);
	store_close(t->store);
	progress_free(t->progress);
	free(t->itable);
	free(t->dcache);
	free(t->mountpoint);
	free(t);
	return rc;
}

void tally_set_pid(struct tally *t)
{
	store_set_pid(t->store);
}

uint32_t tally_block_size(struct tally *t)
{
	return t->bs;
}

bool tally_closing(struct tally *t)
{
	return atomic_load(&t->closing);
}

const char *tally_mountpoint(struct tally *t)
{
	return t->mountpoint;
}

const char *tally_store_path(struct tally *t)
{
	return t->store->path;
}

/* ------------------------------------------------------------------ */
/* block maps and dirty buffers */

/*
 * FLUSH PIPELINE — DESIGN NOTES
 *
 * Data of a file lives in three layers, newest first: its dirty buffers
 * (inode->dirty, written under inode->rw), the buffers of its flushes in
 * flight (inode->inflight, newest first) and of its failed flushes
 * (inode->failed), and the committed block map (inode->map, as in the
 * metadata store). Readers look in that order, so a read always sees the
 * newest data.
 *
 * A flush moves through three phases:
 *  - rotate (flush_rotate, inode->rw held): the dirty buffers move into a
 *    new struct flush; it takes a permit (t->pending < max_pending, else
 *    the caller waits: back-pressure) and the next global sequence number.
 *  - stream (flush_stream, on the worker pool, no metadata lock): hash
 *    each block and stage new objects; objstore_batch_finish() makes them
 *    durable. The finished flush enters a min-heap by sequence number.
 *  - finalize (the finalizer thread): flushes leave the heap strictly in
 *    sequence order; consecutive ready ones are committed in one
 *    transaction (group commit) that swaps block references and counts
 *    and writes the inode rows; then the maps are updated, dead objects
 *    unlinked, permits returned, t->done_seq advanced and waiters woken.
 *
 * Invariants:
 *  1. done_seq <= rotated_seq; every flush with seq <= done_seq is
 *     finalized (committed, or failed and parked in inode->failed).
 *  2. Object data is durable before the transaction naming it commits
 *     (stream finishes the batch before the flush can be finalized).
 *  3. A failed flush loses nothing: its buffers stay readable in
 *     inode->failed, its error is kept for the next fsync/close, and the
 *     next rotation of the inode takes them again (unless newer data for
 *     the same block exists).
 *  4. The finalizer never takes inode->rw, so a writer may wait for
 *     flushes (permits, dirty_limit, fsync) while holding it.
 *  5. Dirty memory is bounded: t->dirty_blocks counts dirty, in-flight
 *     and failed buffers; a writer above dirty_limit rotates its own data
 *     and waits for the finalizer to free some.
 *
 * Lock order: inode->rw, then t->lock, then inode->mlock, then t->fin_lock
 * (never taken with mlock held by the finalizer's callers... see below),
 * and pool_lock innermost. The finalizer takes t->lock then inode->mlock;
 * it takes fin_lock only when it holds no other lock.
 */

static struct meta_bref *map_find(struct inode *ip, uint64_t idx)
{
	size_t lo = 0, hi = ip->nmap;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ip->map[mid].idx == idx)
			return &ip->map[mid];
		if (ip->map[mid].idx < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Index of the first entry of @v[0..n) with idx >= @idx. */
static size_t dpos(const struct dirty *v, size_t n, uint64_t idx)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (v[mid].idx < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct dirty *dfind(struct dirty *v, size_t n, uint64_t idx)
{
	size_t pos = dpos(v, n, idx);

	return pos < n && v[pos].idx == idx ? &v[pos] : NULL;
}

static size_t dirty_pos(struct inode *ip, uint64_t idx)
{
	return dpos(ip->dirty, ip->ndirty, idx);
}

static struct dirty *dirty_find(struct inode *ip, uint64_t idx)
{
	return dfind(ip->dirty, ip->ndirty, idx);
}

/* Load the committed block map once (t->lock, then mlock: the finalizer
 * cannot change the store between the read and the install). */
static int map_load(struct tally *t, struct inode *ip)
{
	int rc = 0;

	lock(t);
	pthread_mutex_lock(&ip->mlock);
	if (!ip->map_loaded) {
		free(ip->map); /* whatever an unloaded map gathered */
		ip->map = NULL;
		ip->nmap = ip->mapcap = 0;
		rc = meta_blocks_load(t->meta, ip->ino, &ip->map, &ip->nmap);
		if (!rc) {
			ip->mapcap = ip->nmap;
			ip->map_loaded = true;
		}
	}
	pthread_mutex_unlock(&ip->mlock);
	unlock(t);
	return rc;
}

/* Read committed block @ref's bytes [off, off+len) into @buf (zero-fill
 * past the object's end). */
static int read_ref(struct tally *t, const struct meta_bref *ref, char *buf,
		    size_t off, size_t len)
{
	ssize_t n;

	if (!ref->name[0])
		return -EIO;
	n = objstore_read(t->objs, ref->shard, ref->name, buf, len, (off_t)off);
	if (n == -ENOENT) {
		uint32_t where, dst;
		int64_t id, count;
		uint64_t size;
		int rc;

		/* moved by a rebalance: follow the ghost (or, once the
		 * sweep repointed the reference, the object row) */
		lock(t);
		rc = meta_object_info(t->meta, ref->name, &id, &where, &size,
				      &count);
		if (!rc &&
		    meta_ghost_target(t->meta, id, ref->shard, &dst) == 0)
			where = dst;
		unlock(t);
		if (rc)
			return rc; /* -ENOENT: replaced meanwhile, retried */
		if (where == ref->shard)
			return -EIO; /* its shard lost it, or is gone */
		n = objstore_read(t->objs, where, ref->name, buf, len,
				  (off_t)off);
	}
	if (n < 0)
		return n == -ENODEV ? -EIO : (int)n;
	if ((size_t)n < len)
		memset(buf + n, 0, len - (size_t)n);
	return 0;
}

/*
 * Bytes [off, off+len) of block @idx as the layers below the dirty
 * buffers hold them: in-flight flushes, failed flushes, committed map
 * (rw held, shared or exclusive; map loaded).
 */
static int read_below_dirty(struct tally *t, struct inode *ip, uint64_t idx,
			    char *dst, size_t off, size_t len)
{
	struct flush *lists[2];
	struct meta_bref ref;
	int tries, rc = 0, l;

	for (tries = 0; tries < 4; tries++) {
		bool found = false, have_ref = false;

		pthread_mutex_lock(&ip->mlock);
		lists[0] = ip->inflight;
		lists[1] = ip->failed;
		for (l = 0; l < 2 && !found; l++) {
			struct flush *f;

			for (f = lists[l]; f && !found; f = f->next) {
				struct dirty *d = dfind(f->blk, f->nblk, idx);

				if (d) {
					memcpy(dst, d->buf + off, len);
					found = true;
				} else if (f->truncated &&
					   idx >= blocks_for(t,
							     f->trunc_size)) {
					memset(dst, 0, len);
					found = true;
				}
			}
		}
		if (!found && ip->truncated &&
		    idx >= blocks_for(t, ip->trunc_size)) {
			/* a shrink not flushed yet (its flush failed) */
			memset(dst, 0, len);
			found = true;
		}
		if (!found) {
			struct meta_bref *r = map_find(ip, idx);

			if (r) {
				ref = *r;
				have_ref = true;
			}
		}
		pthread_mutex_unlock(&ip->mlock);
		if (found)
			return 0;
		if (!have_ref) {
			memset(dst, 0, len);
			return 0;
		}
		rc = read_ref(t, &ref, dst, off, len);
		/* the finalizer may have replaced and unlinked the object
		 * since: its map already says what replaced it */
		if (rc != -ENOENT)
			break;
	}
	if (rc) {
		log_msg(LOG_ERR,
			"cannot read block %" PRIu64 " of inode %" PRIu64
			": %s",
			idx, ip->ino, strerror(-rc));
		if (rc == -ENOENT)
			rc = -EIO;
	}
	return rc;
}

/*
 * The dirty buffer of block @idx, created from the layers below if
 * needed. @whole: the caller overwrites the block from its start to at
 * least EOF, so nothing needs reading.
 */
static int dirty_get(struct tally *t, struct inode *ip, uint64_t idx,
		     bool whole, struct dirty **out)
{
	size_t pos = dirty_pos(ip, idx);
	struct dirty *d;
	char *buf;
	int rc;

	if (pos < ip->ndirty && ip->dirty[pos].idx == idx) {
		*out = &ip->dirty[pos];
		return 0;
	}
	if (ip->ndirty == ip->dcap) {
		size_t cap = ip->dcap ? ip->dcap * 2 : 8;
		struct dirty *v = realloc(ip->dirty, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ip->dirty = v;
		ip->dcap = cap;
	}
	buf = buf_get(t);
	if (!buf)
		return -ENOMEM;
	if (!whole && idx * t->bs < ip->md.size) {
		uint64_t keep = ip->md.size - idx * t->bs;

		if (keep > t->bs)
			keep = t->bs;
		rc = read_below_dirty(t, ip, idx, buf, 0, (size_t)keep);
		if (rc) {
			buf_put(t, buf);
			return rc;
		}
		/* bytes past EOF must read as zero after a later extend */
		memset(buf + keep, 0, t->bs - keep);
	} else {
		memset(buf, 0, t->bs);
	}
	memmove(&ip->dirty[pos + 1], &ip->dirty[pos],
		(ip->ndirty - pos) * sizeof(*ip->dirty));
	d = &ip->dirty[pos];
	d->idx = idx;
	d->buf = buf;
	lock(t);
	if (ip->ndirty++ == 0)
		ip->dirty_since = now();
	t->dirty_blocks++;
	unlock(t);
	*out = d;
	return 0;
}

/* A shrink to @size: committed blocks past it go with the next flush
 * (rw held; tally_drain reads truncated under t->lock alone). */
static void trunc_note(struct tally *t, struct inode *ip, uint64_t size)
{
	if (!ip->truncated || size < ip->trunc_size)
		ip->trunc_size = size;
	lock(t);
	ip->truncated = true;
	unlock(t);
}

static bool all_zero(const char *buf, size_t len)
{
	static const char zeros[4096];

	while (len >= sizeof(zeros)) {
		if (memcmp(buf, zeros, sizeof(zeros)))
			return false;
		buf += sizeof(zeros);
		len -= sizeof(zeros);
	}
	return memcmp(buf, zeros, len) == 0;
}

/* Room for @more entries in the map (mlock held). */
static int map_reserve(struct inode *ip, size_t more)
{
	size_t cap = ip->mapcap;
	struct meta_bref *v;

	if (ip->nmap + more <= cap)
		return 0;
	while (cap < ip->nmap + more)
		cap = cap ? cap * 2 : 16;
	v = realloc(ip->map, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	ip->map = v;
	ip->mapcap = cap;
	return 0;
}

/* Replace or insert @ref in the sorted map; @ref NULL removes @idx
 * (mlock held). */
static int map_set(struct inode *ip, uint64_t idx, const struct meta_bref *ref)
{
	size_t lo = 0, hi = ip->nmap;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ip->map[mid].idx < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < ip->nmap && ip->map[lo].idx == idx) {
		if (ref)
			ip->map[lo] = *ref;
		else
			memmove(&ip->map[lo], &ip->map[lo + 1],
				(ip->nmap-- - lo - 1) * sizeof(*ip->map));
		return 0;
	}
	if (!ref)
		return 0;
	if (map_reserve(ip, 1))
		return -ENOMEM;
	memmove(&ip->map[lo + 1], &ip->map[lo],
		(ip->nmap - lo) * sizeof(*ip->map));
	ip->map[lo] = *ref;
	ip->nmap++;
	return 0;
}

/* A block to commit: from a dirty buffer, or shared from another file. */
struct pending {
	uint64_t idx;
	uint32_t len;
	uint32_t shard;
	bool hole, created, shared;
	char name[OBJNAME_MAX];
	const char *buf; /* the flush's buffer, NULL for a share */
};

#define COMMIT_FORCE 1 /* write the inode row even with nothing dirty */

static void flush_free(struct tally *t, struct flush *f)
{
	size_t i;

	for (i = 0; i < f->nblk; i++)
		buf_put(t, f->blk[i].buf);
	free(f->blk);
	free(f->p);
	free(f);
}

/* -- the finalizer's heap (t->fin_lock) -- */

static void heap_push(struct tally *t, struct flush *f)
{
	size_t i = t->nheap++;

	while (i > 0 && t->heap[(i - 1) / 2]->seq > f->seq) {
		t->heap[i] = t->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	t->heap[i] = f;
}

static struct flush *heap_pop(struct tally *t)
{
	struct flush *top = t->heap[0], *last = t->heap[--t->nheap];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= t->nheap)
			break;
		if (c + 1 < t->nheap && t->heap[c + 1]->seq < t->heap[c]->seq)
			c++;
		if (t->heap[c]->seq >= last->seq)
			break;
		t->heap[i] = t->heap[c];
		i = c;
	}
	if (t->nheap)
		t->heap[i] = last;
	return top;
}

/* A streamed (or stream-less) flush is ready for the finalizer. */
static void flush_ready(struct tally *t, struct flush *f)
{
	pthread_mutex_lock(&t->fin_lock);
	f->streamed = true;
	heap_push(t, f);
	pthread_cond_broadcast(&t->fin_work);
	pthread_mutex_unlock(&t->fin_lock);
}

/* Stream phase (pool): hash, stage and make durable the new objects. */
static void flush_stream(void *arg)
{
	struct flush *f = arg;
	struct tally *t = f->t;
	struct objstore_batch batch;
	uint64_t nblocks = blocks_for(t, f->size);
	size_t i;
	int rc = 0;

	if (t->stream_hook)
		t->stream_hook(t->hook_arg, f->seq, f->ip->ino);
	memset(&batch, 0, sizeof(batch));
	for (i = 0; i < f->nblk && !rc; i++) {
		struct dirty *d = &f->blk[i];
		struct pending *q;
		uint64_t start = d->idx * t->bs;

		if (d->idx >= nblocks)
			continue; /* truncated away */
		q = &f->p[f->np++];
		q->idx = d->idx;
		q->len = (uint32_t)(f->size - start < t->bs ? f->size - start
							    : t->bs);
		q->buf = d->buf;
		q->hole = all_zero(d->buf, q->len);
		q->shard = OBJSTORE_ANY;
		if (!q->hole)
			rc = objstore_put(t->objs, &q->shard, d->buf, q->len,
					  q->name, &q->created, &batch);
	}
	if (!rc)
		rc = objstore_batch_finish(t->objs, &batch);
	objstore_batch_release(t->objs, &batch);
	if (rc)
		log_msg(LOG_ERR,
			"flush %" PRIu64 " of inode %" PRIu64 " failed: %s",
			f->seq, f->ip->ino, strerror(-rc));
	f->err = rc;
	flush_ready(t, f);
}

/* Whether a flush in flight holds block @idx of @ip. */
static bool inflight_has(struct inode *ip, uint64_t idx)
{
	struct flush *g;
	bool found = false;

	pthread_mutex_lock(&ip->mlock);
	for (g = ip->inflight; g && !found; g = g->next)
		found = dfind(g->blk, g->nblk, idx) != NULL;
	pthread_mutex_unlock(&ip->mlock);
	return found;
}

/*
 * Rotate: move @ip's dirty data (and what failed before) into a new
 * flush, plus @shares, and send it down the pipeline. @force: make a
 * flush (writing the inode row) even with nothing to commit. *seq
 * receives the flush's sequence number, or the inode's last one when
 * there was nothing to do. Exclusive rw held.
 */
static int flush_rotate(struct tally *t, struct inode *ip,
			const struct pending *shares, size_t nshares,
			bool force, uint64_t *seq)
{
	struct flush *f, *old, *failed;
	size_t i, n;
	int rc;

	pthread_mutex_lock(&ip->mlock);
	failed = ip->failed;
	pthread_mutex_unlock(&ip->mlock);
	if (!ip->ndirty && !ip->truncated && !failed && !nshares && !force) {
		lock(t);
		*seq = ip->last_seq;
		unlock(t);
		return 0;
	}
	rc = map_load(t, ip);
	if (rc)
		return rc;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	/* failed blocks go again, unless newer data replaced them */
	pthread_mutex_lock(&ip->mlock);
	failed = ip->failed;
	ip->failed = NULL;
	pthread_mutex_unlock(&ip->mlock);
	for (old = failed; old && !rc; old = old->next) { /* newest first */
		for (i = 0; i < old->nblk && !rc; i++) {
			struct dirty *d = &old->blk[i], *nd;

			if (dirty_find(ip, d->idx) || inflight_has(ip, d->idx))
				continue;
			rc = dirty_get(t, ip, d->idx, true, &nd);
			if (!rc)
				memcpy(nd->buf, d->buf, t->bs);
		}
		if (old->truncated)
			trunc_note(t, ip, old->trunc_size);
	}
	if (rc) {
		/* keep them parked: nothing is lost, the error is returned */
		pthread_mutex_lock(&ip->mlock);
		for (old = failed; old->next; old = old->next)
			;
		old->next = ip->failed;
		ip->failed = failed;
		pthread_mutex_unlock(&ip->mlock);
		free(f);
		return rc;
	}
	while (failed) {
		old = failed;
		failed = failed->next;
		lock(t);
		ip->nfailed--;
		ip->flight_blocks -= old->nblk;
		t->dirty_blocks -= old->nblk;
		iput(t, ip); /* the parked flush's reference */
		unlock(t);
		flush_free(t, old);
	}
	f->t = t;
	f->ip = ip;
	f->size = ip->md.size;
	f->truncated = ip->truncated;
	f->trunc_size = ip->trunc_size;
	f->blk = ip->dirty;
	f->nblk = ip->ndirty;
	n = f->nblk + nshares;
	f->p = calloc(n ? n : 1, sizeof(*f->p));
	if (!f->p) {
		free(f);
		return -ENOMEM;
	}
	ip->dirty = NULL;
	ip->dcap = 0;
	lock(t);
	ip->truncated = false;
	ip->ndirty = 0;
	ip->refs++; /* held by the flush until finalized */
	ip->flight_blocks += f->nblk;
	unlock(t);

	/* a permit and a sequence number: back-pressure happens here */
	pthread_mutex_lock(&t->fin_lock);
	while (t->pending >= t->max_pending)
		pthread_cond_wait(&t->fin_done, &t->fin_lock);
	t->pending++;
	f->seq = ++t->rotated_seq;
	pthread_mutex_unlock(&t->fin_lock);
	lock(t);
	ip->last_seq = f->seq;
	unlock(t);
	pthread_mutex_lock(&ip->mlock);
	f->next = ip->inflight;
	ip->inflight = f;
	pthread_mutex_unlock(&ip->mlock);
	*seq = f->seq;

	for (i = 0; i < nshares; i++)
		if (shares[i].idx < blocks_for(t, f->size))
			f->p[f->np++] = shares[i];
	if (f->nblk == 0)
		flush_ready(t, f);
	else if (pool_submit(t->pool, POOL_FLUSH, flush_stream, f) != 0)
		flush_stream(f); /* shutting down: stream inline */
	return 0;
}

/*
 * Wait until flush @seq (and all before it) is finalized; @timeout in
 * seconds, 0 for none (-ETIMEDOUT). Without a timeout, a waiter runs
 * queued pool jobs meanwhile, so that a job that waits (drain on the pool)
 * cannot starve a pool of one worker.
 */
/* Wait until flush @seq is final; with @pj, show done_seq - @base as its
 * progress meanwhile. */
static int flush_wait_progress(struct tally *t, uint64_t seq, double timeout,
			       struct progress_job *pj, uint64_t base)
{
	struct timespec deadline, until;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)timeout;
	deadline.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	for (;;) {
		struct timespec mono;
		bool done;

		pthread_mutex_lock(&t->fin_lock);
		done = t->done_seq >= seq;
		progress_set(pj, t->done_seq - base);
		pthread_mutex_unlock(&t->fin_lock);
		if (done)
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &mono);
		if (timeout > 0 && (mono.tv_sec > deadline.tv_sec ||
				    (mono.tv_sec == deadline.tv_sec &&
				     mono.tv_nsec >= deadline.tv_nsec)))
			return -ETIMEDOUT;
		/* helping could run a long job past the deadline; and only
		 * stream jobs, which take no inode lock (a waiter may hold
		 * one) */
		if (timeout <= 0 && pool_help_fn(t->pool, flush_stream))
			continue;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 50 * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&t->fin_lock);
		if (t->done_seq < seq)
			pthread_cond_timedwait(&t->fin_done, &t->fin_lock,
					       &until);
		pthread_mutex_unlock(&t->fin_lock);
	}
}

static int flush_wait(struct tally *t, uint64_t seq, double timeout)
{
	return flush_wait_progress(t, seq, timeout, NULL, 0);
}

/* Take (and clear) the error kept for the next fsync/close, if the flush
 * that failed had a sequence number up to @upto. */
static int take_err(struct tally *t, struct inode *ip, uint64_t upto)
{
	int rc = 0;

	lock(t);
	if (ip->err && ip->err_seq <= upto) {
		rc = ip->err;
		ip->err = 0;
	}
	unlock(t);
	return rc;
}

/*
 * Apply flush @f to the store (t->lock held, in the group's transaction).
 * *alloc receives the inode's allocation after @f.
 */
static int flush_apply(struct tally *t, struct flush *f, uint64_t *alloc)
{
	struct inode *ip = f->ip;
	uint64_t tb = blocks_for(t, f->trunc_size);
	struct meta_inode md;
	int64_t delta = 0;
	size_t i;
	int rc = 0;

	/* a shrink first: blocks written after it come back below */
	if (f->truncated)
		rc = meta_blocks_drop(t->meta, ip->ino, tb);
	for (i = 0; i < f->np && !rc; i++) {
		struct pending *q = &f->p[i];

		if (q->shared && !q->hole) {
			/* the source holds a reference: the row must exist */
			rc = meta_obj_exists(t->meta, q->name);
			rc = rc == 1 ? 0 : (rc ? rc : -EIO);
		} else if (!q->hole) {
			rc = meta_obj_exists(t->meta, q->name);
			if (rc == 0) {
				off_t sz;

				/* the file may have been unlinked since the
				 * stream found or made it */
				if (!q->created ||
				    objstore_stat(t->objs, q->shard, q->name,
						  &sz) < 0)
					rc = objstore_ensure(t->objs, q->shard,
							     q->name, q->buf,
							     q->len);
			} else if (rc == 1) {
				rc = 0;
			}
		}
		if (!rc) {
			struct meta_bref ref;

			/* a known object: the reference names its shard */
			rc = meta_block_set(t->meta, ip->ino, q->idx,
					    q->hole ? NULL : q->name, q->shard,
					    q->len, &ref);
			if (!rc && !q->hole)
				q->shard = ref.shard;
		}
	}
	if (rc)
		return rc;
	/* the allocation after this flush, from the map before it; and
	 * room in the map, so that publishing it cannot fail */
	pthread_mutex_lock(&ip->mlock);
	if (map_reserve(ip, f->np)) {
		pthread_mutex_unlock(&ip->mlock);
		return -ENOMEM;
	}
	if (f->truncated)
		for (i = 0; i < ip->nmap; i++)
			if (ip->map[i].idx >= tb)
				delta -= ip->map[i].size;
	for (i = 0; i < f->np; i++) {
		struct meta_bref *r = map_find(ip, f->p[i].idx);

		if (r && !(f->truncated && f->p[i].idx >= tb))
			delta -= r->size;
		if (!f->p[i].hole)
			delta += f->p[i].len;
	}
	pthread_mutex_unlock(&ip->mlock);
	*alloc = (uint64_t)((int64_t)ip->dalloc + delta);
	md = ip->md;
	md.size = f->size;
	md.alloc = *alloc;
	return meta_inode_put(t->meta, &md);
}

/* Unlink @f from its inode's in-flight list (mlock held). */
static void inflight_remove(struct flush *f)
{
	struct flush **pp;

	for (pp = &f->ip->inflight; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			break;
		}
}

static void flush_unlist(struct flush *f)
{
	pthread_mutex_lock(&f->ip->mlock);
	inflight_remove(f);
	pthread_mutex_unlock(&f->ip->mlock);
}

/* After the commit: the map mirrors the store (t->lock held). */
static void flush_publish(struct tally *t, struct flush *f, uint64_t alloc)
{
	struct inode *ip = f->ip;
	size_t i;

	pthread_mutex_lock(&ip->mlock);
	if (f->truncated)
		while (ip->nmap && ip->map[ip->nmap - 1].idx >=
					   blocks_for(t, f->trunc_size))
			ip->nmap--;
	for (i = 0; i < f->np; i++) {
		struct meta_bref ref;

		if (f->p[i].hole) {
			map_set(ip, f->p[i].idx, NULL);
			continue;
		}
		memset(&ref, 0, sizeof(ref));
		ref.idx = f->p[i].idx;
		ref.shard = f->p[i].shard;
		ref.size = f->p[i].len;
		snprintf(ref.name, sizeof(ref.name), "%s", f->p[i].name);
		if (map_set(ip, f->p[i].idx, &ref)) {
			/* out of memory: reload the map when next needed */
			free(ip->map);
			ip->map = NULL;
			ip->nmap = ip->mapcap = 0;
			ip->map_loaded = false;
			break;
		}
	}
	inflight_remove(f);
	pthread_mutex_unlock(&ip->mlock);
	ip->dsize = f->size;
	ip->dalloc = alloc;
	ip->md.alloc = alloc;
}

/* A flush that could not be committed keeps its data (invariant 3). */
static void flush_park(struct tally *t, struct flush *f, int err)
{
	struct inode *ip = f->ip;

	pthread_mutex_lock(&ip->mlock);
	inflight_remove(f);
	f->next = ip->failed;
	ip->failed = f;
	pthread_mutex_unlock(&ip->mlock);
	ip->nfailed++;
	/* the slot keeps the oldest failure not reported yet */
	if (!ip->err)
		ip->err_seq = f->seq;
	ip->err = err;
	t->commit_errors++;
}

#define GROUP_MAX 64

/*
 * The inode of @f was freed while @f was in flight: remove the objects
 * its stream created that nothing references (t->lock held; a flush that
 * reused one re-creates it when it commits, invariant 2 of tally.c).
 */
static void flush_discard_objects(struct tally *t, struct flush *f)
{
	size_t i;

	for (i = 0; i < f->np; i++) {
		struct pending *q = &f->p[i];

		if (q->hole || q->shared || !q->created)
			continue;
		reap_copy(t->meta, t->objs, q->name, 0, q->shard,
			  REAP_NOT_MINE);
	}
}

/* Commit a group of consecutive ready flushes in one transaction. */
static void finalize_group(struct tally *t, struct flush **g, size_t n)
{
	uint64_t alloc[GROUP_MAX];
	bool parked[GROUP_MAX];
	size_t i;
	int rc;

	lock(t);
	rc = meta_begin(t->meta);
	for (i = 0; i < n && !rc; i++) {
		alloc[i] = 0;
		if (g[i]->err || g[i]->ip->freed || g[i]->ip->nfailed)
			continue;
		rc = flush_apply(t, g[i], &alloc[i]);
	}
	if (!rc)
		rc = meta_config_set(t->meta, "durable_seq",
				     (int64_t)g[n - 1]->seq);
	rc = txn_end(t, rc);
	for (i = 0; i < n; i++) {
		struct flush *f = g[i];

		parked[i] = false;
		if (f->ip->freed) {
			flush_unlist(f);
			flush_discard_objects(t, f);
		} else if (f->err || rc || f->ip->nfailed) {
			/* an inode with a parked flush commits nothing newer
			 * until the parked data went again: the retry would
			 * otherwise bring back older blocks */
			flush_park(t, f,
				   f->err	? f->err
				   : rc		? rc
				   : f->ip->err ? f->ip->err
						: -EIO);
			parked[i] = true; /* keeps its buffers and reference */
			continue;
		} else {
			flush_publish(t, f, alloc[i]);
		}
		f->ip->flight_blocks -= f->nblk;
		t->dirty_blocks -= f->nblk;
	}
	for (i = 0; i < n; i++)
		if (!parked[i])
			iput(t, g[i]->ip);
	pthread_cond_broadcast(&t->space);
	unlock(t);
	for (i = 0; i < n; i++)
		if (!parked[i])
			flush_free(t, g[i]);
}

/*
 * Whether @ip has a flush in @g already: one flush per inode in a group,
 * since each one's allocation and old block sizes come from the inode's
 * committed state.
 */
static bool in_group(struct flush *const *g, size_t n, const struct inode *ip)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (g[i]->ip == ip)
			return true;
	return false;
}

/* The finalizer thread: commits flushes in sequence order. */
static void *finalizer(void *arg)
{
	struct tally *t = arg;
	struct flush *g[GROUP_MAX];

	pthread_mutex_lock(&t->fin_lock);
	for (;;) {
		uint64_t next = t->done_seq + 1, last;
		size_t n = 0;

		while (n < GROUP_MAX && t->nheap && t->heap[0]->seq == next &&
		       !in_group(g, n, t->heap[0]->ip)) {
			g[n++] = heap_pop(t);
			next++;
		}
		if (n == 0) {
			if (t->fin_stop && t->pending == 0)
				break;
			pthread_cond_wait(&t->fin_work, &t->fin_lock);
			continue;
		}
		last = g[n - 1]->seq;
		pthread_mutex_unlock(&t->fin_lock);
		finalize_group(t, g, n);
		pthread_mutex_lock(&t->fin_lock);
		t->done_seq = last;
		t->pending -= n;
		t->groups++;
		pthread_cond_broadcast(&t->fin_done);
	}
	pthread_mutex_unlock(&t->fin_lock);
	return NULL;
}

#define DIRTY_AGE_S 5 /* data dirty longer than this is flushed */

/*
 * The inodes for which @want says yes, each with an in-memory reference
 * (t->lock held). *list is malloc'ed; -ENOMEM stops the scan early.
 */
static int collect_inodes(struct tally *t,
			  bool (*want)(struct tally *t, struct inode *ip,
				       void *ctx),
			  void *ctx, struct inode ***list, size_t *n)
{
	size_t cap = 0, i;
	int rc = 0;

	*list = NULL;
	*n = 0;
	for (i = 0; i < ITABLE_SIZE && !rc; i++) {
		struct inode *ip;

		for (ip = t->itable[i]; ip && !rc; ip = ip->next) {
			if (!want(t, ip, ctx))
				continue;
			if (*n == cap) {
				size_t ncap = cap ? cap * 2 : 32;
				struct inode **v =
					realloc(*list, ncap * sizeof(*v));

				if (!v) {
					rc = -ENOMEM;
					break;
				}
				*list = v;
				cap = ncap;
			}
			ip->refs++;
			(*list)[(*n)++] = ip;
		}
	}
	return rc;
}

struct aged {
	struct timespec now;
	bool pressure;
};

static bool want_aged(struct tally *t, struct inode *ip, void *ctx)
{
	struct aged *a = ctx;

	(void)t;
	/* freed inodes too: their flush is discarded, their buffers freed */
	if (!(ip->ndirty || ip->nfailed))
		return false;
	return a->pressure ||
	       a->now.tv_sec - ip->dirty_since.tv_sec >= DIRTY_AGE_S;
}

/* Rotate the inodes whose data is old, or all under memory pressure. */
static void flush_aged(struct tally *t)
{
	struct aged a = { .now = now() };
	struct inode **list = NULL;
	struct timespec ts = a.now;
	size_t n = 0, i;

	lock(t);
	a.pressure = t->dirty_blocks * t->bs > t->dirty_limit / 2;
	collect_inodes(t, want_aged, &a, &list, &n);
	unlock(t);
	for (i = 0; i < n; i++) {
		uint64_t seq;

		/* a writer holding the inode flushes it itself */
		if (pthread_rwlock_trywrlock(&list[i]->rw) == 0) {
			flush_rotate(t, list[i], NULL, 0, false, &seq);
			lock(t);
			list[i]->dirty_since = ts; /* retry failures later */
			unlock(t);
			pthread_rwlock_unlock(&list[i]->rw);
		}
		lock(t);
		iput(t, list[i]);
		unlock(t);
	}
	free(list);
}

struct active {
	const char **v;
	size_t n, cap;
};

static int active_add(struct active *a, const char *name)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		const char **v = realloc(a->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = name;
	return 0;
}

/* Names the flushes of @list may still commit (t->lock and mlock held). */
static int active_of(struct tally *t, struct flush *list, struct active *a)
{
	int rc = 0;

	for (; list && !rc; list = list->next) {
		bool streamed;
		size_t i;

		pthread_mutex_lock(&t->fin_lock);
		streamed = list->streamed;
		pthread_mutex_unlock(&t->fin_lock);
		for (i = 0; streamed && i < list->np && !rc; i++)
			if (!list->p[i].hole && !list->p[i].shared)
				rc = active_add(a, list->p[i].name);
	}
	return rc;
}

int tally_report(struct tally *t)
{
	struct active a = { 0 };
	size_t i;
	int rc = 0;

	lock(t);
	for (i = 0; i < ITABLE_SIZE && !rc; i++) {
		struct inode *ip;

		for (ip = t->itable[i]; ip && !rc; ip = ip->next) {
			pthread_mutex_lock(&ip->mlock);
			rc = active_of(t, ip->inflight, &a);
			if (!rc)
				rc = active_of(t, ip->failed, &a);
			pthread_mutex_unlock(&ip->mlock);
		}
	}
	if (!rc) {
		rc = meta_begin(t->meta);
		if (!rc)
			rc = meta_node_report(t->meta, t->node_id,
					      (int64_t)time(NULL), a.v, a.n);
		rc = txn_end(t, rc);
	}
	if (!rc)
		t->last_report = (int64_t)time(NULL);
	unlock(t);
	free(a.v);
	if (rc)
		log_msg(LOG_WARNING, "node report failed: %s", strerror(-rc));
	return rc;
}

static bool report_due(struct tally *t)
{
	bool due;

	lock(t);
	due = time(NULL) - t->last_report >= t->report_interval;
	unlock(t);
	return due;
}

/* An automatic GC cycle (-o gc_interval), as a pool job. */
static void auto_gc(void *arg)
{
	struct gc_opts o = { .grace = -1 };
	struct gc_report r;
	int rc = gc_run(arg, &o, &r);

	if (rc)
		log_msg(LOG_ERR, "automatic gc failed: %s", strerror(-rc));
}

static bool gc_due(struct tally *t)
{
	int64_t now = (int64_t)time(NULL);
	bool due = false;

	lock(t);
	if (t->gc_interval && now - t->last_gc >= t->gc_interval) {
		t->last_gc = now;
		due = true;
	}
	unlock(t);
	return due;
}

/* The flusher thread: the timer and memory-pressure trigger. */
static void *flusher(void *arg)
{
	struct tally *t = arg;

	pthread_mutex_lock(&t->flusher_lock);
	while (!t->flusher_stop) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&t->flusher_cond, &t->flusher_lock,
				       &until);
		if (t->flusher_stop)
			break;
		pthread_mutex_unlock(&t->flusher_lock);
		flush_aged(t);
		if (report_due(t))
			tally_report(t);
		/* shards that went away, or came back */
		if (++t->shard_ticks % 5 == 0)
			shard_check_all(t);
		if (gc_due(t) &&
		    pool_submit(t->pool, POOL_CONTROL, auto_gc, t) != 0)
			log_msg(LOG_WARNING, "cannot start an automatic gc");
		pthread_mutex_lock(&t->flusher_lock);
	}
	pthread_mutex_unlock(&t->flusher_lock);
	return NULL;
}

static void flusher_kick(struct tally *t)
{
	pthread_mutex_lock(&t->flusher_lock);
	pthread_cond_signal(&t->flusher_cond);
	pthread_mutex_unlock(&t->flusher_lock);
}

/*
 * Commit @ip's data and attributes and wait for it (exclusive rw held):
 * rotate a flush (with @shares, if any) and wait until it is finalized.
 */
static int inode_commit_with(struct tally *t, struct inode *ip, int flags,
			     const struct pending *shares, size_t nshares)
{
	uint64_t seq;
	int rc = flush_rotate(t, ip, shares, nshares,
			      (flags & COMMIT_FORCE) || nshares, &seq);

	if (!rc)
		rc = flush_wait(t, seq, 0);
	if (!rc)
		rc = take_err(t, ip, UINT64_MAX);
	return rc;
}

static int inode_commit(struct tally *t, struct inode *ip, int flags)
{
	return inode_commit_with(t, ip, flags, NULL, 0);
}

/* Wait while dirty memory is over the limit (exclusive rw held). */
static void dirty_throttle(struct tally *t, struct inode *ip)
{
	unsigned idle = 0;

	lock(t);
	while (t->dirty_blocks * t->bs >= t->dirty_limit && idle < 100) {
		struct timespec until;
		uint64_t seq;

		if (ip->ndirty) {
			int rc;

			/* our own data first: it is what we can free */
			unlock(t);
			rc = flush_rotate(t, ip, NULL, 0, false, &seq);
			lock(t);
			if (rc)
				break;
			continue;
		}
		unlock(t);
		flusher_kick(t);
		lock(t);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100 * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		if (pthread_cond_timedwait(&t->space, &t->lock, &until) ==
		    ETIMEDOUT)
			idle++; /* nothing finalized in 100 ms */
		else
			idle = 0;
	}
	if (idle >= 100)
		log_msg(LOG_WARNING,
			"dirty data stays above dirty_limit "
			"(flushes failing?): letting a writer through");
	unlock(t);
}

/* ------------------------------------------------------------------ */
/* lookups and attributes */

int tally_lookup(struct tally *t, uint64_t parent, const char *name,
		 struct stat *st)
{
	struct inode *pip = NULL, *ip = NULL;
	uint64_t ino;
	int rc = check_name(name);

	if (rc)
		return rc;
	if (parent == TALLY_CTLDIR_INO) {
		if (!strcmp(name, "ctl"))
			virtual_stat(t, TALLY_CTL_INO, st);
		else if (!strcmp(name, "status"))
			virtual_stat(t, TALLY_STATUS_INO, st);
		else
			return -ENOENT;
		return 0;
	}
	if (is_virtual(parent))
		return -ENOTDIR;
	if (is_ctl_name(parent, name)) {
		virtual_stat(t, TALLY_CTLDIR_INO, st);
		return 0;
	}
	lock(t);
	rc = iget(t, parent, &pip);
	if (rc)
		goto out;
	if (!S_ISDIR(pip->md.mode)) {
		rc = -ENOTDIR;
		goto out;
	}
	if (!dcache_get(t, parent, name, &ino)) {
		rc = meta_dentry_lookup(t->meta, parent, name, &ino);
		if (rc)
			goto out;
		dcache_put(t, parent, name, ino);
	}
	rc = iget(t, ino, &ip);
	if (rc)
		goto out;
	ip->nlookup++;
	fill_stat(t, ip, st);
out:
	iput(t, ip);
	iput(t, pip);
	unlock(t);
	return rc;
}

void tally_forget(struct tally *t, uint64_t ino, uint64_t n)
{
	struct inode *ip;

	if (ino == TALLY_ROOT_INO || is_virtual(ino))
		return;
	lock(t);
	ip = inode_find(t, ino);
	if (ip) {
		assert(ip->nlookup >= n);
		ip->nlookup = ip->nlookup >= n ? ip->nlookup - n : 0;
		ip->refs++;
		iput(t, ip);
	}
	unlock(t);
}

int tally_getattr(struct tally *t, uint64_t ino, struct stat *st)
{
	struct inode *ip;
	int rc;

	if (is_virtual(ino)) {
		virtual_stat(t, ino, st);
		return 0;
	}
	lock(t);
	rc = iget(t, ino, &ip);
	if (!rc) {
		fill_stat(t, ip, st);
		iput(t, ip);
	}
	unlock(t);
	return rc;
}

/* Shrink or grow @ip to @size (exclusive rw held). */
static int set_size(struct tally *t, struct inode *ip, uint64_t size)
{
	uint64_t keep = blocks_for(t, size);
	size_t pos;
	int rc;

	rc = map_load(t, ip);
	if (rc)
		return rc;
	if (size < ip->md.size) {
		/* the partial last block gets a zeroed tail, committed below */
		if (size % t->bs) {
			struct dirty *d;
			size_t off = size % t->bs;

			rc = dirty_get(t, ip, size / t->bs, false, &d);
			if (rc)
				return rc;
			memset(d->buf + off, 0, t->bs - off);
		}
		pos = dirty_pos(ip, keep);
		lock(t);
		while (ip->ndirty > pos) {
			buf_put(t, ip->dirty[--ip->ndirty].buf);
			t->dirty_blocks--;
		}
		unlock(t);
		trunc_note(t, ip, size);
	}
	lock(t);
	ip->md.size = size;
	unlock(t);
	return 0;
}

int tally_setattr(struct tally *t, uint64_t ino, const struct stat *in,
		  int to_set, struct stat *st)
{
	struct inode *ip;
	struct timespec ts = now();
	int rc;

	if (is_virtual(ino))
		return to_set & TALLY_SET_SIZE ? 0 : -EPERM;
	lock(t);
	rc = iget(t, ino, &ip);
	unlock(t);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&ip->rw);
	if (to_set & TALLY_SET_SIZE) {
		if (!S_ISREG(ip->md.mode)) {
			rc = S_ISDIR(ip->md.mode) ? -EISDIR : -EINVAL;
			goto out;
		}
		if (in->st_size < 0) {
			rc = -EINVAL;
			goto out;
		}
		rc = set_size(t, ip, (uint64_t)in->st_size);
		if (rc)
			goto out;
	}
	lock(t);
	if (to_set & TALLY_SET_MODE)
		ip->md.mode = (ip->md.mode & S_IFMT) | (in->st_mode & 07777);
	if (to_set & TALLY_SET_UID)
		ip->md.uid = in->st_uid;
	if (to_set & TALLY_SET_GID)
		ip->md.gid = in->st_gid;
	if (to_set & TALLY_SET_ATIME_NOW)
		ip->md.atime = ts;
	else if (to_set & TALLY_SET_ATIME)
		ip->md.atime = in->st_atim;
	if (to_set & TALLY_SET_MTIME_NOW)
		ip->md.mtime = ts;
	else if (to_set & TALLY_SET_MTIME)
		ip->md.mtime = in->st_mtim;
	if (to_set & TALLY_SET_SIZE)
		ip->md.mtime = ts;
	if (to_set & TALLY_SET_CTIME)
		ip->md.ctime = in->st_ctim;
	else
		ip->md.ctime = ts;
	unlock(t);
	if (S_ISREG(ip->md.mode)) {
		rc = inode_commit(t, ip, COMMIT_FORCE);
	} else {
		lock(t);
		rc = meta_begin(t->meta);
		if (!rc)
			rc = put_md(t, ip, &ip->md);
		rc = txn_end(t, rc);
		unlock(t);
	}
out:
	pthread_rwlock_unlock(&ip->rw);
	lock(t);
	if (!rc)
		fill_stat(t, ip, st);
	iput(t, ip);
	unlock(t);
	return rc;
}

/* ------------------------------------------------------------------ */
/* creating and removing names */

/*
 * Inode numbers are never reused: the store records a reservation
 * ("next_ino") that is raised 1024 at a time, in the transaction of the
 * creation that needs it, so most creations write no extra row. Inside a
 * transaction: *limit receives the reservation to adopt after commit.
 */
#define INO_RESERVE 1024

static int ino_reserve(struct tally *t, uint64_t *limit)
{
	*limit = t->ino_limit;
	if (t->next_ino < t->ino_limit)
		return 0;
	*limit = t->next_ino + INO_RESERVE;
	return meta_config_set(t->meta, "next_ino", (int64_t)*limit);
}

/* After the commit: the number t->next_ino is taken. */
static void ino_taken(struct tally *t, uint64_t limit)
{
	t->next_ino++;
	t->ino_limit = limit;
}

static int parent_dir(struct tally *t, uint64_t parent, struct inode **out)
{
	struct inode *pip;
	int rc;

	if (is_virtual(parent))
		return -EPERM;
	rc = iget(t, parent, &pip);
	if (rc)
		return rc;
	if (!S_ISDIR(pip->md.mode)) {
		iput(t, pip);
		return -ENOTDIR;
	}
	if (pip->freed || pip->md.nlink == 0) {
		iput(t, pip);
		return -ENOENT;
	}
	*out = pip;
	return 0;
}

static int create_node(struct tally *t, const struct tally_ctx *c,
		       uint64_t parent, const char *name, mode_t mode,
		       dev_t rdev, const char *target, struct stat *st)
{
	struct inode *pip = NULL, *ip;
	struct meta_inode md, pmd;
	struct timespec ts = now();
	uint64_t ino, limit;
	int rc = check_name(name);

	if (rc)
		return rc;
	if (is_ctl_name(parent, name))
		return -EEXIST;
	lock(t);
	rc = parent_dir(t, parent, &pip);
	if (rc)
		goto out;
	if (parent == TALLY_ROOT_INO && !S_ISDIR(mode)) {
		rc = -EPERM;
		goto out;
	}
	rc = meta_dentry_lookup(t->meta, parent, name, &ino);
	if (rc != -ENOENT) {
		rc = rc ? rc : -EEXIST;
		goto out;
	}
	memset(&md, 0, sizeof(md));
	md.ino = t->next_ino;
	md.nspace = parent == TALLY_ROOT_INO ? md.ino : pip->md.nspace;
	md.mode = mode;
	md.uid = c->uid;
	md.gid = c->gid;
	if (pip->md.mode & S_ISGID) {
		md.gid = pip->md.gid;
		if (S_ISDIR(mode))
			md.mode |= S_ISGID;
	}
	md.nlink = S_ISDIR(mode) ? 2 : 1;
	md.rdev = rdev;
	md.size = target ? strlen(target) : 0;
	md.atime = md.mtime = md.ctime = ts;
	pmd = pip->md;
	pmd.mtime = pmd.ctime = ts;
	if (S_ISDIR(mode))
		pmd.nlink++;
	/* before the commit: an ENOMEM must leave nothing done */
	ip = inode_alloc(&md);
	if (!ip) {
		rc = -ENOMEM;
		goto out;
	}

	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_inode_put(t->meta, &md);
	if (!rc && target)
		rc = meta_target_set(t->meta, md.ino, target);
	if (!rc)
		rc = meta_dentry_insert(t->meta, parent, name, md.ino);
	if (!rc)
		rc = put_md(t, pip, &pmd);
	if (!rc)
		rc = ino_reserve(t, &limit);
	rc = txn_end(t, rc);
	if (rc) {
		inode_destroy(t, ip);
		goto out;
	}
	ino_taken(t, limit);
	pip->md = pmd;
	inode_insert(t, ip);
	ip->nlookup = 1;
	dcache_put(t, parent, name, md.ino);
	fill_stat(t, ip, st);
out:
	iput(t, pip);
	unlock(t);
	return rc;
}

int tally_mknod(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		const char *name, mode_t mode, dev_t rdev, struct stat *st)
{
	if (S_ISDIR(mode) || S_ISLNK(mode))
		return -EINVAL;
	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISCHR(mode) &&
	    !S_ISBLK(mode) && !S_ISSOCK(mode))
		mode |= S_IFREG;
	return create_node(t, c, parent, name, mode,
			   S_ISCHR(mode) || S_ISBLK(mode) ? rdev : 0, NULL, st);
}

int tally_mkdir(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		const char *name, mode_t mode, struct stat *st)
{
	return create_node(t, c, parent, name, S_IFDIR | (mode & 07777), 0,
			   NULL, st);
}

int tally_symlink(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		  const char *name, const char *target, struct stat *st)
{
	size_t len = strlen(target);

	if (len == 0)
		return -ENOENT;
	if (len >= 4096)
		return -ENAMETOOLONG;
	return create_node(t, c, parent, name, S_IFLNK | 0777, 0, target, st);
}

int tally_readlink(struct tally *t, uint64_t ino, char **target)
{
	struct inode *ip;
	int rc;

	if (is_virtual(ino))
		return -EINVAL;
	lock(t);
	rc = iget(t, ino, &ip);
	if (!rc) {
		rc = S_ISLNK(ip->md.mode)
			     ? meta_target_get(t->meta, ino, target)
			     : -EINVAL;
		iput(t, ip);
	}
	unlock(t);
	return rc;
}

/* Look up @name in @parent (t->lock held) and get its inode. */
static int child(struct tally *t, uint64_t parent, const char *name,
		 struct inode **out)
{
	uint64_t ino;
	int rc;

	if (!dcache_get(t, parent, name, &ino)) {
		rc = meta_dentry_lookup(t->meta, parent, name, &ino);
		if (rc)
			return rc;
	}
	return iget(t, ino, out);
}

/*
 * Drop one link of @ip (t->lock held, in a transaction). At nlink 0 with
 * no open handle, the inode and its references go (after commit the
 * caller sets ip->freed when *freed says so).
 */
static int drop_link(struct tally *t, struct inode *ip, struct meta_inode *md,
		     bool *freed)
{
	md->ctime = now();
	if (S_ISDIR(md->mode))
		md->nlink = 0;
	else if (md->nlink > 0)
		md->nlink--;
	*freed = md->nlink == 0 && ip->opens == 0;
	if (*freed)
		return inode_drop(t, ip);
	return put_md(t, ip, md);
}

int tally_unlink(struct tally *t, uint64_t parent, const char *name)
{
	struct inode *pip = NULL, *ip = NULL;
	struct meta_inode md, pmd;
	bool freed = false;
	int rc = check_name(name);

	if (rc)
		return rc;
	if (is_ctl_name(parent, name))
		return -EPERM;
	lock(t);
	rc = parent_dir(t, parent, &pip);
	if (!rc)
		rc = child(t, parent, name, &ip);
	if (rc)
		goto out;
	if (S_ISDIR(ip->md.mode)) {
		rc = -EISDIR;
		goto out;
	}
	md = ip->md;
	pmd = pip->md;
	pmd.mtime = pmd.ctime = now();
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_dentry_delete(t->meta, parent, name);
	if (!rc)
		rc = drop_link(t, ip, &md, &freed);
	if (!rc)
		rc = put_md(t, pip, &pmd);
	rc = txn_end(t, rc);
	dcache_drop(t, parent, name);
	if (rc)
		goto out;
	ip->md = md;
	ip->freed = freed;
	if (freed)
		drop_failed(t, ip);
	pip->md = pmd;
out:
	iput(t, ip);
	iput(t, pip);
	unlock(t);
	return rc;
}

int tally_rmdir(struct tally *t, uint64_t parent, const char *name)
{
	struct inode *pip = NULL, *ip = NULL;
	struct meta_inode pmd;
	int rc = check_name(name);

	if (rc)
		return rc;
	if (!strcmp(name, "."))
		return -EINVAL;
	if (!strcmp(name, ".."))
		return -ENOTEMPTY;
	if (is_ctl_name(parent, name))
		return -EPERM;
	lock(t);
	rc = parent_dir(t, parent, &pip);
	if (!rc)
		rc = child(t, parent, name, &ip);
	if (rc)
		goto out;
	if (!S_ISDIR(ip->md.mode)) {
		rc = -ENOTDIR;
		goto out;
	}
	rc = meta_dir_empty(t->meta, ip->ino);
	if (rc <= 0) {
		rc = rc ? rc : -ENOTEMPTY;
		goto out;
	}
	pmd = pip->md;
	pmd.mtime = pmd.ctime = now();
	pmd.nlink--;
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_dentry_delete(t->meta, parent, name);
	if (!rc)
		rc = meta_inode_delete(t->meta, ip->ino);
	if (!rc)
		rc = put_md(t, pip, &pmd);
	rc = txn_end(t, rc);
	dcache_drop(t, parent, name);
	if (rc)
		goto out;
	pip->md = pmd;
	ip->md.nlink = 0;
	ip->freed = true;
out:
	iput(t, ip);
	iput(t, pip);
	unlock(t);
	return rc;
}

static bool same_nspace(const struct inode *a, const struct inode *b)
{
	if (a->ino == TALLY_ROOT_INO || b->ino == TALLY_ROOT_INO)
		return a->ino == b->ino;
	return a->md.nspace == b->md.nspace;
}

int tally_rename(struct tally *t, uint64_t parent, const char *name,
		 uint64_t newparent, const char *newname, unsigned flags)
{
	struct inode *pip = NULL, *npip = NULL, *sip = NULL, *dip = NULL;
	struct meta_inode pmd, npmd, smd, dmd;
	struct timespec ts = now();
	bool freed = false;
	int rc;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	rc = check_name(name);
	if (!rc)
		rc = check_name(newname);
	if (rc)
		return rc;
	if (is_ctl_name(parent, name) || is_ctl_name(newparent, newname))
		return -EPERM;
	lock(t);
	rc = parent_dir(t, parent, &pip);
	if (!rc)
		rc = parent_dir(t, newparent, &npip);
	if (!rc)
		rc = child(t, parent, name, &sip);
	if (rc)
		goto out;
	if (!same_nspace(pip, npip)) {
		rc = -EXDEV;
		goto out;
	}
	rc = child(t, newparent, newname, &dip);
	if (rc == -ENOENT) {
		rc = 0;
		dip = NULL;
	} else if (rc) {
		goto out;
	}
	if (dip && (flags & RENAME_NOREPLACE)) {
		rc = -EEXIST;
		goto out;
	}
	if (!dip && (flags & RENAME_EXCHANGE)) {
		rc = -ENOENT;
		goto out;
	}
	if (dip == sip) {
		rc = 0; /* two names of one inode: POSIX says do nothing */
		goto out;
	}
	if (dip && !(flags & RENAME_EXCHANGE)) {
		if (S_ISDIR(sip->md.mode) && !S_ISDIR(dip->md.mode)) {
			rc = -ENOTDIR;
			goto out;
		}
		if (!S_ISDIR(sip->md.mode) && S_ISDIR(dip->md.mode)) {
			rc = -EISDIR;
			goto out;
		}
		if (S_ISDIR(dip->md.mode)) {
			rc = meta_dir_empty(t->meta, dip->ino);
			if (rc <= 0) {
				rc = rc ? rc : -ENOTEMPTY;
				goto out;
			}
		}
	}
	pmd = pip->md;
	pmd.mtime = pmd.ctime = ts;
	smd = sip->md;
	smd.ctime = ts;
	if (dip) {
		dmd = dip->md;
		dmd.ctime = ts;
	}
	rc = meta_begin(t->meta);
	if (rc)
		goto out;
	if (flags & RENAME_EXCHANGE) {
		rc = meta_dentry_set_ino(t->meta, parent, name, dip->ino);
		if (!rc)
			rc = meta_dentry_set_ino(t->meta, newparent, newname,
						 sip->ino);
		if (!rc)
			rc = put_md(t, dip, &dmd);
	} else {
		if (dip) {
			rc = meta_dentry_delete(t->meta, newparent, newname);
			if (!rc && S_ISDIR(dip->md.mode)) {
				dmd.nlink = 0;
				rc = meta_inode_delete(t->meta, dip->ino);
				freed = true;
			} else if (!rc) {
				rc = drop_link(t, dip, &dmd, &freed);
			}
		}
		if (!rc)
			rc = meta_dentry_move(t->meta, parent, name, newparent,
					      newname);
	}
	if (!rc)
		rc = put_md(t, sip, &smd);
	if (!rc && pip != npip) {
		npmd = npip->md;
		npmd.mtime = npmd.ctime = ts;
		if (flags & RENAME_EXCHANGE) {
			/* a directory that changes parent moves its ".." */
			if (S_ISDIR(sip->md.mode) && !S_ISDIR(dip->md.mode)) {
				pmd.nlink--;
				npmd.nlink++;
			} else if (!S_ISDIR(sip->md.mode) &&
				   S_ISDIR(dip->md.mode)) {
				npmd.nlink--;
				pmd.nlink++;
			}
		} else if (S_ISDIR(sip->md.mode)) {
			pmd.nlink--;
			if (!dip)
				npmd.nlink++;
		}
		rc = put_md(t, npip, &npmd);
	} else if (!rc && dip && S_ISDIR(dip->md.mode) &&
		   !(flags & RENAME_EXCHANGE)) {
		pmd.nlink--;
	}
	if (!rc)
		rc = put_md(t, pip, &pmd);
	rc = txn_end(t, rc);
	dcache_drop(t, parent, name);
	dcache_drop(t, newparent, newname);
	if (rc)
		goto out;
	pip->md = pmd;
	if (pip != npip)
		npip->md = npmd;
	sip->md = smd;
	if (dip) {
		dip->md = dmd;
		dip->freed = freed;
		if (freed)
			drop_failed(t, dip);
	}
out:
	iput(t, dip);
	iput(t, sip);
	iput(t, npip);
	iput(t, pip);
	unlock(t);
	return rc;
}

int tally_link(struct tally *t, uint64_t ino, uint64_t newparent,
	       const char *newname, struct stat *st)
{
	struct inode *ip = NULL, *npip = NULL, *nip;
	struct meta_inode md, npmd;
	uint64_t existing, limit;
	int rc = check_name(newname);

	if (rc)
		return rc;
	if (is_virtual(ino) || is_ctl_name(newparent, newname))
		return -EPERM;
	lock(t);
	rc = iget(t, ino, &ip);
	unlock(t);
	if (rc)
		return rc;
	if (S_ISDIR(ip->md.mode)) {
		rc = -EPERM;
		goto out_put;
	}
	/* a link into another namespace copies committed references */
	pthread_rwlock_wrlock(&ip->rw);
	lock(t);
	rc = parent_dir(t, newparent, &npip);
	if (!rc && newparent == TALLY_ROOT_INO)
		rc = -EPERM;
	if (!rc && (ip->freed || ip->md.nlink == 0))
		rc = -ENOENT;
	if (!rc) {
		rc = meta_dentry_lookup(t->meta, newparent, newname, &existing);
		rc = rc == -ENOENT ? 0 : (rc ? rc : -EEXIST);
	}
	if (rc)
		goto out_unlock;
	npmd = npip->md;
	npmd.mtime = npmd.ctime = now();
	if (same_nspace(ip, npip)) {
		md = ip->md;
		md.nlink++;
		md.ctime = npmd.ctime;
		rc = meta_begin(t->meta);
		if (!rc)
			rc = meta_dentry_insert(t->meta, newparent, newname,
						ip->ino);
		if (!rc)
			rc = put_md(t, ip, &md);
		if (!rc)
			rc = put_md(t, npip, &npmd);
		rc = txn_end(t, rc);
		if (rc)
			goto out_unlock;
		ip->md = md;
		npip->md = npmd;
		ip->nlookup++;
		dcache_put(t, newparent, newname, ip->ino);
		fill_stat(t, ip, st);
		goto out_unlock;
	}
	/* wait for flushes already started too (a close does not wait) */
	unlock(t);
	rc = inode_commit(t, ip, 0);
	lock(t);
	if (rc)
		goto out_unlock;
	md = ip->md;
	md.ino = t->next_ino;
	md.nspace = npip->md.nspace;
	md.nlink = 1;
	md.size = ip->dsize;
	md.alloc = ip->dalloc;
	md.ctime = npmd.ctime;
	/* before the commit: an ENOMEM must leave nothing done */
	nip = inode_alloc(&md);
	if (!nip) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_inode_put(t->meta, &md);
	if (!rc && S_ISLNK(md.mode)) {
		char *target = NULL;

		rc = meta_target_get(t->meta, ip->ino, &target);
		if (!rc)
			rc = meta_target_set(t->meta, md.ino, target);
		free(target);
	}
	if (!rc)
		rc = meta_blocks_copy(t->meta, ip->ino, md.ino);
	if (!rc)
		rc = meta_dentry_insert(t->meta, newparent, newname, md.ino);
	if (!rc)
		rc = put_md(t, npip, &npmd);
	if (!rc)
		rc = ino_reserve(t, &limit);
	rc = txn_end(t, rc);
	if (rc) {
		inode_destroy(t, nip);
		goto out_unlock;
	}
	ino_taken(t, limit);
	npip->md = npmd;
	inode_insert(t, nip);
	nip->nlookup = 1;
	dcache_put(t, newparent, newname, md.ino);
	fill_stat(t, nip, st);
out_unlock:
	iput(t, npip);
	unlock(t);
	pthread_rwlock_unlock(&ip->rw);
out_put:
	lock(t);
	iput(t, ip);
	unlock(t);
	return rc;
}

/* ------------------------------------------------------------------ */
/* file data */

static int file_get(struct tally *t, uint64_t ino, struct inode **out)
{
	int rc;

	lock(t);
	rc = iget(t, ino, out);
	unlock(t);
	return rc;
}

static void file_put(struct tally *t, struct inode *ip)
{
	lock(t);
	iput(t, ip);
	unlock(t);
}

int tally_open_file(struct tally *t, uint64_t ino, int flags)
{
	struct inode *ip;
	int rc;

	(void)flags;
	if (is_virtual(ino))
		return 0;
	lock(t);
	rc = iget(t, ino, &ip);
	if (!rc) {
		if (S_ISDIR(ip->md.mode) && (flags & O_ACCMODE) != O_RDONLY)
			rc = -EISDIR;
		else
			ip->opens++;
		iput(t, ip);
	}
	unlock(t);
	return rc;
}

int tally_release(struct tally *t, uint64_t ino)
{
	struct inode *ip;
	uint64_t seq;
	bool last;
	int rc = 0;

	if (is_virtual(ino))
		return 0;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&ip->rw);
	lock(t);
	last = ip->opens == 1 && ip->md.nlink == 0 && !ip->freed &&
	       !S_ISDIR(ip->md.mode);
	unlock(t);
	/* data of a file that goes away now needs no flush */
	if (!last)
		rc = flush_rotate(t, ip, NULL, 0, false, &seq);
	if (t->release_hook)
		t->release_hook(t->hook_arg, ino);
	lock(t);
	assert(ip->opens > 0);
	/* decided again in the hold that frees: an open may have come in
	 * between (through /proc/PID/fd/N), or the last name gone */
	last = ip->opens == 1 && ip->md.nlink == 0 && !ip->freed &&
	       !S_ISDIR(ip->md.mode);
	ip->opens--;
	if (last) {
		int rc2;

		rc2 = meta_begin(t->meta);
		if (!rc2)
			rc2 = inode_drop(t, ip);
		rc2 = txn_end(t, rc2);
		if (!rc2) {
			ip->freed = true;
			inode_free_data(t, ip);
		} else {
			log_msg(LOG_ERR,
				"cannot free unlinked inode %" PRIu64
				": %s (it is freed at the next mount)",
				ip->ino, strerror(-rc2));
		}
	}
	unlock(t);
	pthread_rwlock_unlock(&ip->rw);
	file_put(t, ip);
	return rc;
}

/* Close of one descriptor: start a flush, do not wait for it; report
 * what failed before (invariant 3). */
int tally_flush(struct tally *t, uint64_t ino)
{
	struct inode *ip;
	uint64_t seq, before;
	int rc;

	if (is_virtual(ino))
		return 0;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	pthread_mutex_lock(&t->fin_lock);
	before = t->rotated_seq;
	pthread_mutex_unlock(&t->fin_lock);
	pthread_rwlock_wrlock(&ip->rw);
	rc = flush_rotate(t, ip, NULL, 0, false, &seq);
	pthread_rwlock_unlock(&ip->rw);
	if (!rc)
		rc = take_err(t, ip, before);
	file_put(t, ip);
	return rc;
}

int tally_fsync(struct tally *t, uint64_t ino, bool datasync)
{
	struct inode *ip;
	uint64_t seq;
	int rc;

	(void)datasync;
	if (is_virtual(ino))
		return 0;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&ip->rw);
	rc = flush_rotate(t, ip, NULL, 0, false, &seq);
	pthread_rwlock_unlock(&ip->rw);
	/* readers and writers go on while the flush is finalized */
	if (!rc)
		rc = flush_wait(t, seq, 0);
	if (!rc)
		rc = take_err(t, ip, UINT64_MAX);
	if (!rc) {
		lock(t);
		rc = txn_sync(t);
		unlock(t);
	}
	file_put(t, ip);
	return rc;
}

/* Copy file bytes [off, off+len) into @buf (rw held, map loaded). */
static int read_range(struct tally *t, struct inode *ip, char *buf,
		      uint64_t off, size_t len)
{
	while (len > 0) {
		uint64_t idx = off / t->bs;
		size_t boff = (size_t)(off % t->bs);
		size_t n = t->bs - boff < len ? t->bs - boff : len;
		struct dirty *d = dirty_find(ip, idx);

		if (d) {
			memcpy(buf, d->buf + boff, n);
		} else {
			int rc = read_below_dirty(t, ip, idx, buf, boff, n);

			if (rc)
				return rc;
		}
		buf += n;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * The start of a read: the regular file @ino with its rw lock shared and
 * its map loaded, and *@size clipped at EOF. Returns 0 (the caller ends
 * with read_end()), 1 at or past EOF (nothing held), or -errno.
 */
static int read_begin(struct tally *t, uint64_t ino, off_t off, size_t *size,
		      struct inode **out)
{
	struct inode *ip;
	int rc;

	if (off < 0)
		return -EINVAL;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	if (!S_ISREG(ip->md.mode)) {
		rc = S_ISDIR(ip->md.mode) ? -EISDIR : -EINVAL;
		file_put(t, ip);
		return rc;
	}
	pthread_rwlock_rdlock(&ip->rw);
	rc = map_load(t, ip);
	if (!rc && (uint64_t)off >= ip->md.size)
		rc = 1;
	if (rc) {
		pthread_rwlock_unlock(&ip->rw);
		file_put(t, ip);
		return rc;
	}
	if (*size > ip->md.size - (uint64_t)off)
		*size = (size_t)(ip->md.size - (uint64_t)off);
	*out = ip;
	return 0;
}

static void read_end(struct tally *t, struct inode *ip)
{
	pthread_rwlock_unlock(&ip->rw);
	file_put(t, ip);
}

ssize_t tally_read(struct tally *t, uint64_t ino, void *buf, size_t size,
		   off_t off)
{
	struct inode *ip;
	int rc = read_begin(t, ino, off, &size, &ip);

	if (rc)
		return rc == 1 ? 0 : rc;
	rc = read_range(t, ip, buf, (uint64_t)off, size);
	read_end(t, ip);
	return rc ? rc : (ssize_t)size;
}

/* Open the object file of each of @n block references for the bytes
 * [boff, boff+size) of the file from the first block on; all or none. */
static int open_segs(struct tally *t, const struct meta_bref *refs, size_t n,
		     size_t boff, size_t size, struct tally_seg *segs)
{
	size_t i;

	for (i = 0; i < n; i++) {
		size_t len = t->bs - boff < size ? t->bs - boff : size;
		int f = objstore_open_read(t->objs, refs[i].shard,
					   refs[i].name);
		struct stat st;

		/* moved (a ghost), or shorter than the range (the rest
		 * reads as zeros): copied instead */
		if (f >= 0 &&
		    (fstat(f, &st) != 0 || (uint64_t)st.st_size < boff + len)) {
			close(f);
			f = -1;
		}
		if (f < 0) {
			while (i-- > 0)
				close(segs[i].fd);
			return 1;
		}
		segs[i].fd = f;
		segs[i].off = (off_t)boff;
		segs[i].len = len;
		size -= len;
		boff = 0;
	}
	return 0;
}

int tally_read_fd(struct tally *t, uint64_t ino, size_t size, off_t off,
		  struct tally_seg *segs, size_t *nsegs)
{
	struct meta_bref refs[TALLY_SEGS_MAX];
	struct inode *ip;
	uint64_t idx, last, i;
	size_t boff, n = 0;
	int rc;

	if (!size)
		return 1;
	/* errors, EOF: tally_read() answers them */
	if (read_begin(t, ino, off, &size, &ip) != 0)
		return 1;
	rc = 1;
	idx = (uint64_t)off / t->bs;
	last = ((uint64_t)off + size - 1) / t->bs;
	boff = (size_t)((uint64_t)off % t->bs);
	/* a shrink not flushed yet: read_below_dirty() knows the zeros */
	if (last - idx >= TALLY_SEGS_MAX || ip->truncated)
		goto out_unlock;
	for (i = idx; i <= last; i++)
		if (dirty_find(ip, i))
			goto out_unlock;
	/* writers wait for rw; the finalizer changes the map under mlock,
	 * but only for blocks in flight, and there are none */
	pthread_mutex_lock(&ip->mlock);
	if (!ip->inflight && !ip->failed) {
		for (i = idx; i <= last; i++) {
			struct meta_bref *r = map_find(ip, i);

			if (!r || !r->name[0])
				break; /* a hole reads as zeros: copied */
			refs[n++] = *r;
		}
	}
	pthread_mutex_unlock(&ip->mlock);
	if (n == last - idx + 1 &&
	    open_segs(t, refs, n, boff, size, segs) == 0) {
		*nsegs = n;
		atomic_fetch_add(&t->spliced_reads, 1);
		rc = 0;
	}
out_unlock:
	read_end(t, ip);
	return rc;
}

/* New data up to @end: extend the size, touch mtime and ctime (rw held). */
static void data_changed(struct tally *t, struct inode *ip, uint64_t end)
{
	lock(t);
	if (end > ip->md.size)
		ip->md.size = end;
	ip->md.mtime = ip->md.ctime = now();
	unlock(t);
}

/* Write into the dirty buffers (exclusive rw held, map loaded). */
static ssize_t write_range(struct tally *t, struct inode *ip, const char *buf,
			   uint64_t off, size_t len)
{
	size_t done = 0;

	/* bytes copied before a failure count: the caller extends the size
	 * over them, so no buffer holds bytes past EOF */
	while (len > 0) {
		uint64_t idx = off / t->bs;
		size_t boff = (size_t)(off % t->bs);
		size_t n = t->bs - boff < len ? t->bs - boff : len;
		/* bytes past EOF are zero in a dirty buffer, so a write
		 * that reaches EOF from the block start needs no read */
		bool whole = n == t->bs ||
			     (boff == 0 && off + n >= ip->md.size);
		struct dirty *d;
		int rc = dirty_get(t, ip, idx, whole, &d);

		if (rc)
			return done ? (ssize_t)done : rc;
		memcpy(d->buf + boff, buf, n);
		buf += n;
		off += n;
		len -= n;
		done += n;
	}
	return (ssize_t)done;
}

ssize_t tally_write(struct tally *t, uint64_t ino, const void *buf, size_t size,
		    off_t off)
{
	struct inode *ip;
	ssize_t ret;
	int rc;

	if (off < 0 || (uint64_t)off + size > (uint64_t)INT64_MAX)
		return -EFBIG;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	if (!S_ISREG(ip->md.mode)) {
		file_put(t, ip);
		return S_ISDIR(ip->md.mode) ? -EISDIR : -EINVAL;
	}
	pthread_rwlock_wrlock(&ip->rw);
	dirty_throttle(t, ip);
	rc = map_load(t, ip);
	if (rc) {
		ret = rc;
		goto out;
	}
	ret = write_range(t, ip, buf, (uint64_t)off, size);
	if (ret <= 0)
		goto out;
	data_changed(t, ip, (uint64_t)off + (uint64_t)ret);
	/*
	 * A sequential writer with enough for a flush of its own sends it
	 * down the pipeline. Random writes keep landing in the blocks they
	 * dirtied, and a rotated block must be read back and rewritten
	 * whole at the next write: theirs wait for the age, the close or
	 * the dirty limit.
	 */
	if (ip->ndirty * (size_t)t->bs >= t->rotate_bytes &&
	    (uint64_t)off == ip->write_end) {
		uint64_t seq;

		flush_rotate(t, ip, NULL, 0, false, &seq);
	}
	ip->write_end = (uint64_t)off + (uint64_t)ret;
out:
	pthread_rwlock_unlock(&ip->rw);
	file_put(t, ip);
	return ret;
}

#define COPY_BYTES_MAX (16u << 20) /* bytes copied per call, slow path */

/* Drop the dirty buffers of blocks [from, to) (rw held). */
static void dirty_drop_range(struct tally *t, struct inode *ip, uint64_t from,
			     uint64_t to)
{
	size_t a = dirty_pos(ip, from), b = dirty_pos(ip, to), k;

	if (a == b)
		return;
	for (k = a; k < b; k++)
		buf_put(t, ip->dirty[k].buf);
	memmove(&ip->dirty[a], &ip->dirty[b],
		(ip->ndirty - b) * sizeof(*ip->dirty));
	lock(t);
	ip->ndirty -= b - a;
	t->dirty_blocks -= b - a;
	unlock(t);
}

/*
 * Share whole blocks of @in into @out: both block-aligned, both rw held,
 * @in committed. Returns bytes copied.
 */
static ssize_t copy_shared(struct tally *t, struct inode *in, uint64_t off_in,
			   struct inode *out, uint64_t off_out, uint64_t len)
{
	uint64_t nb = len / t->bs, k, end = off_out + len;
	struct meta_inode was;
	struct pending *sh;
	ssize_t ret;
	int rc;

	/* a short last block can be shared only where it ends both files */
	if (len % t->bs && end >= out->md.size && off_in + len >= in->md.size)
		nb++;
	else
		len = nb * t->bs;
	if (nb == 0)
		return 0;
	sh = calloc(nb, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	pthread_mutex_lock(&in->mlock);
	for (k = 0; k < nb; k++) {
		struct meta_bref *ref = map_find(in, off_in / t->bs + k);

		sh[k].idx = off_out / t->bs + k;
		sh[k].shared = true;
		if (!ref) {
			sh[k].hole = true;
			sh[k].len = t->bs;
			continue;
		}
		sh[k].len = ref->size;
		sh[k].shard = ref->shard;
		snprintf(sh[k].name, sizeof(sh[k].name), "%s", ref->name);
	}
	pthread_mutex_unlock(&in->mlock);
	lock(t);
	was = out->md;
	unlock(t);
	dirty_drop_range(t, out, off_out / t->bs, off_out / t->bs + nb);
	data_changed(t, out, off_out + len);
	rc = inode_commit_with(t, out, COMMIT_FORCE, sh, nb);
	if (rc) {
		/* nothing was copied: the size and times are as they were
		 * (the exclusive rw lock kept every writer out) */
		lock(t);
		out->md.size = was.size;
		out->md.mtime = was.mtime;
		out->md.ctime = was.ctime;
		unlock(t);
	}
	ret = rc ? rc : (ssize_t)len;
	free(sh);
	return ret;
}

ssize_t tally_copy_range(struct tally *t, uint64_t ino_in, off_t off_in,
			 uint64_t ino_out, off_t off_out, size_t len)
{
	struct inode *in, *out, *first, *second;
	uint64_t avail;
	ssize_t ret;
	char *buf = NULL;
	int rc;

	if (off_in < 0 || off_out < 0)
		return -EINVAL;
	if (is_virtual(ino_in) || is_virtual(ino_out))
		return -EOPNOTSUPP;
	rc = file_get(t, ino_in, &in);
	if (rc)
		return rc;
	rc = file_get(t, ino_out, &out);
	if (rc) {
		file_put(t, in);
		return rc;
	}
	if (!S_ISREG(in->md.mode) || !S_ISREG(out->md.mode)) {
		ret = -EINVAL;
		goto out_put;
	}
	/* two inode locks: lower inode number first */
	first = in->ino <= out->ino ? in : out;
	second = first == in ? out : in;
	pthread_rwlock_wrlock(&first->rw);
	if (second != first)
		pthread_rwlock_wrlock(&second->rw);
	rc = inode_commit(t, in, 0);
	if (!rc)
		rc = map_load(t, in);
	if (!rc)
		rc = map_load(t, out);
	if (rc) {
		ret = rc;
		goto out_unlock;
	}
	avail = (uint64_t)off_in < in->md.size ? in->md.size - (uint64_t)off_in
					       : 0;
	if (len > avail)
		len = (size_t)avail;
	if (len == 0) {
		ret = 0;
		goto out_unlock;
	}
	/* before either path writes anything */
	if ((uint64_t)off_out + len > (uint64_t)INT64_MAX) {
		ret = -EFBIG;
		goto out_unlock;
	}
	if ((uint64_t)off_in % t->bs == 0 && (uint64_t)off_out % t->bs == 0) {
		ret = copy_shared(t, in, (uint64_t)off_in, out,
				  (uint64_t)off_out, len);
		if (ret != 0)
			goto out_unlock;
	}
	/* unaligned, or less than a block: copy bytes */
	if (len > COPY_BYTES_MAX)
		len = COPY_BYTES_MAX;
	buf = malloc(len);
	if (!buf) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	rc = read_range(t, in, buf, (uint64_t)off_in, len);
	if (rc) {
		ret = rc;
		goto out_unlock;
	}
	ret = write_range(t, out, buf, (uint64_t)off_out, len);
	if (ret > 0)
		data_changed(t, out, (uint64_t)off_out + (uint64_t)ret);
out_unlock:
	free(buf);
	if (second != first)
		pthread_rwlock_unlock(&second->rw);
	pthread_rwlock_unlock(&first->rw);
out_put:
	file_put(t, out);
	file_put(t, in);
	return ret;
}

/* ------------------------------------------------------------------ */
/* directories */

struct readdir_ctx {
	struct tally *t;
	bool plus;
	tally_dir_fn fn;
	void *ctx;
	int64_t base; /* cookie of an entry = dentry id + base */
	int err;
};

static int readdir_entry(void *arg, int64_t cookie, const char *name,
			 uint64_t ino)
{
	struct readdir_ctx *rc = arg;
	struct inode *ip;
	struct stat st;
	int err = iget(rc->t, ino, &ip);

	if (err) {
		if (err == -ENOENT)
			return 0; /* an entry without inode: skip it */
		rc->err = err;
		return 1;
	}
	fill_stat(rc->t, ip, &st);
	if (rc->fn(rc->ctx, name, &st, (off_t)(cookie + rc->base))) {
		iput(rc->t, ip);
		return 1;
	}
	if (rc->plus)
		ip->nlookup++;
	iput(rc->t, ip);
	return 0;
}

int tally_readdir(struct tally *t, uint64_t ino, off_t off, bool plus,
		  tally_dir_fn fn, void *ctx)
{
	struct readdir_ctx rc = {
		.t = t,
		.plus = plus,
		.fn = fn,
		.ctx = ctx,
	};
	struct inode *ip = NULL;
	struct stat st;
	int err;

	if (ino == TALLY_CTLDIR_INO) {
		static const struct {
			const char *name;
			uint64_t ino;
		} ents[] = {
			{ ".", TALLY_CTLDIR_INO },
			{ "..", TALLY_ROOT_INO },
			{ "ctl", TALLY_CTL_INO },
			{ "status", TALLY_STATUS_INO },
		};
		for (; off < 4; off++) {
			if (ents[off].ino == TALLY_ROOT_INO) {
				err = tally_getattr(t, TALLY_ROOT_INO, &st);
				if (err)
					return err;
			} else {
				virtual_stat(t, ents[off].ino, &st);
			}
			if (fn(ctx, ents[off].name, &st, off + 1))
				break;
		}
		return 0;
	}
	if (is_virtual(ino))
		return -ENOTDIR;
	lock(t);
	err = iget(t, ino, &ip);
	if (err)
		goto out;
	if (!S_ISDIR(ip->md.mode)) {
		err = -ENOTDIR;
		goto out;
	}
	rc.base = ino == TALLY_ROOT_INO ? 3 : 2;
	fill_stat(t, ip, &st);
	if (off < 1) {
		if (fn(ctx, ".", &st, 1))
			goto out;
		off = 1;
	}
	if (off < 2) {
		if (fn(ctx, "..", &st, 2))
			goto out;
		off = 2;
	}
	if (ino == TALLY_ROOT_INO && off < 3) {
		virtual_stat(t, TALLY_CTLDIR_INO, &st);
		if (fn(ctx, TALLY_CTLDIR_NAME, &st, 3))
			goto out;
		off = 3;
	}
	if (!ip->freed) {
		err = meta_readdir(t->meta, ino, off - rc.base, readdir_entry,
				   &rc);
		err = err > 0 ? rc.err : err;
	}
out:
	iput(t, ip);
	unlock(t);
	return err;
}

/* ------------------------------------------------------------------ */
/* xattrs */

static ssize_t xattr_reply(const void *val, size_t len, void *buf, size_t size)
{
	if (size == 0)
		return (ssize_t)len;
	if (len > size)
		return -ERANGE;
	memcpy(buf, val, len);
	return (ssize_t)len;
}

/* The value of a virtual xattr into *out (malloc'ed); -ENODATA if none. */
static int virtual_xattr(struct tally *t, struct inode *ip, const char *name,
			 char **out, size_t *len)
{
	bool refs = !strcmp(name, XATTR_REFS);
	size_t i, n = 0, cap = 64;
	char *s;
	int rc;

	if (!refs && strcmp(name, XATTR_OBJECTS))
		return -ENODATA;
	if (!S_ISREG(ip->md.mode))
		return -ENODATA;
	pthread_rwlock_wrlock(&ip->rw);
	rc = inode_commit(t, ip, 0);
	if (!rc && refs) {
		uint64_t seq;

		/* counts move with other files' flushes too: those already
		 * started (closed files) are waited for */
		pthread_mutex_lock(&t->fin_lock);
		seq = t->rotated_seq;
		pthread_mutex_unlock(&t->fin_lock);
		rc = flush_wait(t, seq, 0);
	}
	if (!rc)
		rc = map_load(t, ip);
	if (rc)
		goto out_unlock;
	s = malloc(cap);
	if (!s) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	s[0] = '\0';
	if (refs) {
		uint64_t *counts = NULL;
		size_t cnt = 0;

		lock(t);
		rc = meta_refcounts(t->meta, ip->ino, &counts, &cnt);
		unlock(t);
		for (i = 0; i < cnt && !rc; i++) {
			char num[32];
			int l = snprintf(num, sizeof(num), "%s%" PRIu64,
					 i ? " " : "", counts[i]);

			if (n + (size_t)l + 1 > cap) {
				char *ns;

				cap = (n + (size_t)l + 1) * 2;
				ns = realloc(s, cap);
				if (!ns) {
					rc = -ENOMEM;
					break;
				}
				s = ns;
			}
			memcpy(s + n, num, (size_t)l + 1);
			n += (size_t)l;
		}
		free(counts);
	} else {
		struct meta_bref *map = NULL;
		size_t nmap = 0;

		/* from the store, not the map: a sweep repoints references
		 * without touching the maps in memory */
		lock(t);
		rc = meta_blocks_load(t->meta, ip->ino, &map, &nmap);
		unlock(t);
		for (i = 0; i < nmap && !rc; i++) {
			size_t need = n + OBJNAME_MAX + 16;

			if (need > cap) {
				char *ns;

				cap = need * 2;
				ns = realloc(s, cap);
				if (!ns) {
					rc = -ENOMEM;
					break;
				}
				s = ns;
			}
			n += (size_t)snprintf(s + n, cap - n, "%s%s@%u",
					      i ? " " : "", map[i].name,
					      map[i].shard);
		}
		free(map);
	}
	if (rc) {
		free(s);
		goto out_unlock;
	}
	*out = s;
	*len = n;
out_unlock:
	pthread_rwlock_unlock(&ip->rw);
	return rc;
}

static int xattr_ns_ok(const char *name)
{
	if (strlen(name) > XATTR_NAME_MAX)
		return -ERANGE;
	if (strncmp(name, "user.", 5))
		return -EOPNOTSUPP;
	return 0;
}

ssize_t tally_getxattr(struct tally *t, uint64_t ino, const char *name,
		       void *buf, size_t size)
{
	struct inode *ip;
	void *val = NULL;
	size_t len = 0;
	ssize_t ret;
	int rc;

	if (is_virtual(ino))
		return -ENODATA;
	rc = xattr_ns_ok(name);
	if (rc)
		return rc == -EOPNOTSUPP ? -ENODATA : rc;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	if (!strncmp(name, XATTR_RESERVED, strlen(XATTR_RESERVED))) {
		rc = virtual_xattr(t, ip, name, (char **)&val, &len);
	} else {
		lock(t);
		rc = meta_xattr_get(t->meta, ino, name, &val, &len);
		unlock(t);
	}
	ret = rc ? rc : xattr_reply(val, len, buf, size);
	free(val);
	file_put(t, ip);
	return ret;
}

int tally_setxattr(struct tally *t, uint64_t ino, const char *name,
		   const void *val, size_t len, int flags)
{
	struct inode *ip;
	int rc;

	if (is_virtual(ino))
		return -EPERM;
	rc = xattr_ns_ok(name);
	if (rc)
		return rc;
	if (len > XATTR_SIZE_MAX)
		return -E2BIG;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	if (!strncmp(name, XATTR_RESERVED, strlen(XATTR_RESERVED))) {
		char *cur = NULL;
		size_t curlen = 0;

		/* read-only; rewriting the value it has is a no-op, so that
		 * cp -a / rsync -X between tallyfs files succeed */
		rc = virtual_xattr(t, ip, name, &cur, &curlen);
		if (rc == 0 && !(flags & XATTR_CREATE) && curlen == len &&
		    !memcmp(cur, val, len))
			rc = 0;
		else
			rc = -EPERM;
		free(cur);
		goto out;
	}
	lock(t);
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_xattr_set(t->meta, ino, name, val, len, flags);
	if (!rc) {
		struct meta_inode md = ip->md;

		md.ctime = now();
		rc = put_md(t, ip, &md);
		if (!rc)
			ip->md.ctime = md.ctime;
	}
	rc = txn_end(t, rc);
	unlock(t);
out:
	file_put(t, ip);
	return rc;
}

ssize_t tally_listxattr(struct tally *t, uint64_t ino, char *buf, size_t size)
{
	static const char virt[] = XATTR_REFS "\0" XATTR_OBJECTS;
	struct inode *ip;
	char *names = NULL, *all;
	size_t len = 0, vlen = 0;
	ssize_t ret;
	int rc;

	if (is_virtual(ino))
		return 0;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	lock(t);
	rc = meta_xattr_list(t->meta, ino, &names, &len);
	if (S_ISREG(ip->md.mode))
		vlen = sizeof(virt);
	unlock(t);
	if (rc) {
		file_put(t, ip);
		return rc;
	}
	all = malloc(len + vlen + 1);
	if (!all) {
		free(names);
		file_put(t, ip);
		return -ENOMEM;
	}
	memcpy(all, virt, vlen);
	if (len)
		memcpy(all + vlen, names, len);
	ret = xattr_reply(all, len + vlen, buf, size);
	free(all);
	free(names);
	file_put(t, ip);
	return ret;
}

int tally_removexattr(struct tally *t, uint64_t ino, const char *name)
{
	struct inode *ip;
	int rc;

	if (is_virtual(ino))
		return -EPERM;
	rc = xattr_ns_ok(name);
	if (rc)
		return rc;
	if (!strncmp(name, XATTR_RESERVED, strlen(XATTR_RESERVED)))
		return -EPERM;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	lock(t);
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_xattr_remove(t->meta, ino, name);
	if (!rc) {
		struct meta_inode md = ip->md;

		md.ctime = now();
		rc = put_md(t, ip, &md);
		if (!rc)
			ip->md.ctime = md.ctime;
	}
	rc = txn_end(t, rc);
	unlock(t);
	file_put(t, ip);
	return rc;
}

/* ------------------------------------------------------------------ */
/* whole-filesystem operations */

int tally_statfs(struct tally *t, struct statvfs *out)
{
	uint64_t frsize = 4096, avail, inodes, stored;
	struct statvfs disk;
	int rc;

	if (statvfs(t->store->path, &disk) < 0)
		return -errno;
	lock(t);
	rc = meta_statfs(t->meta, &inodes, &stored);
	unlock(t);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	out->f_bsize = t->bs;
	out->f_frsize = frsize;
	/* what the shards that take new objects have, less the reserve
	 * object writes leave (core/objstore.h) */
	avail = objstore_avail(t->objs);
	out->f_bavail = (fsblkcnt_t)(avail / frsize);
	out->f_bfree = out->f_bavail;
	out->f_blocks =
		(fsblkcnt_t)((stored + frsize - 1) / frsize) + out->f_bfree;
	out->f_ffree = disk.f_ffree;
	out->f_favail = disk.f_favail;
	out->f_files = (fsfilcnt_t)inodes + disk.f_ffree;
	out->f_namemax = TALLY_NAME_MAX;
	return 0;
}

static bool want_pending(struct tally *t, struct inode *ip, void *ctx)
{
	(void)t;
	(void)ctx;
	return ip->ndirty || ip->truncated || ip->nfailed;
}

/*
 * What of the data flushed up to @upto failed (t->lock held): the files
 * and blocks of the parked flushes with such a sequence number. Returns
 * the error of one of them, or 0 if there is none.
 */
static int uncommitted(struct tally *t, uint64_t upto, uint64_t *files,
		       uint64_t *blocks)
{
	int err = 0;
	size_t i;

	*files = *blocks = 0;
	for (i = 0; i < ITABLE_SIZE; i++) {
		struct inode *ip;

		for (ip = t->itable[i]; ip; ip = ip->next) {
			uint64_t nblk = 0;
			struct flush *f;

			if (!ip->nfailed)
				continue;
			pthread_mutex_lock(&ip->mlock);
			for (f = ip->failed; f; f = f->next) {
				if (f->seq > upto)
					continue;
				nblk += f->nblk;
				if (!err) /* a failed commit leaves f->err 0 */
					err = f->err	? f->err
					      : ip->err ? ip->err
							: -EIO;
			}
			pthread_mutex_unlock(&ip->mlock);
			*files += nblk ? 1 : 0;
			*blocks += nblk;
		}
	}
	return err;
}

int tally_drain(struct tally *t, uint64_t *waited, double timeout)
{
	struct tally_drain_report r;
	int rc = tally_drain_report(t, timeout, &r);

	if (waited)
		*waited = r.flushed;
	return rc;
}

int tally_drain_report(struct tally *t, double timeout,
		       struct tally_drain_report *r)
{
	struct progress_job *pj;
	struct inode **list = NULL;
	uint64_t start, target;
	size_t n = 0, i;
	int rc, err;

	pthread_mutex_lock(&t->fin_lock);
	start = t->done_seq;
	/* flushes waited for: those in flight, and about one per file */
	target = t->rotated_seq;
	pthread_mutex_unlock(&t->fin_lock);
	pj = progress_begin(t->progress, "drain", "flushes", 0);
	lock(t);
	rc = collect_inodes(t, want_pending, NULL, &list, &n);
	unlock(t);
	progress_set_total(pj, target - start + n);
	for (i = 0; i < n; i++) {
		uint64_t seq;
		int rc2;

		pthread_rwlock_wrlock(&list[i]->rw);
		rc2 = flush_rotate(t, list[i], NULL, 0, false, &seq);
		pthread_rwlock_unlock(&list[i]->rw);
		if (rc2 && !rc)
			rc = rc2;
		file_put(t, list[i]);
		pthread_mutex_lock(&t->fin_lock);
		progress_set(pj, t->done_seq - start);
		pthread_mutex_unlock(&t->fin_lock);
	}
	free(list);
	pthread_mutex_lock(&t->fin_lock);
	target = t->rotated_seq;
	pthread_mutex_unlock(&t->fin_lock);
	progress_set_total(pj, target - start);
	if (!rc)
		rc = flush_wait_progress(t, target, timeout, pj, start);
	r->flushed = target - start;
	/* a failed flush is finalized too (parked): finalized is not
	 * committed */
	lock(t);
	err = uncommitted(t, target, &r->files, &r->blocks);
	unlock(t);
	if (!rc)
		rc = err;
	progress_end(pj);
	return rc;
}

static int nspace_name_ok(const char *name)
{
	int rc = check_name(name);

	if (rc)
		return rc == -ENAMETOOLONG ? rc : -EINVAL;
	if (!strcmp(name, ".") || !strcmp(name, "..") ||
	    !strcmp(name, TALLY_CTLDIR_NAME))
		return -EINVAL;
	return 0;
}

int tally_branch(struct tally *t, const char *src, const char *dst,
		 uint64_t *inodes)
{
	struct inode *root = NULL;
	struct progress_job *pj;
	struct meta_inode md;
	uint64_t src_ino, dst_ino, next, newroot = 0, count = 0;
	int rc = nspace_name_ok(src);

	if (!rc)
		rc = nspace_name_ok(dst);
	if (rc)
		return rc;
	lock(t);
	rc = meta_dentry_lookup(t->meta, TALLY_ROOT_INO, src, &src_ino);
	if (!rc) {
		rc = meta_dentry_lookup(t->meta, TALLY_ROOT_INO, dst, &dst_ino);
		rc = rc == -ENOENT ? 0 : (rc ? rc : -EEXIST);
	}
	unlock(t);
	if (rc)
		return rc;
	/* the copy is one statement: its count is known when it is done */
	pj = progress_begin(t->progress, "branch", "inodes", 0);
	/* committed data only: drain first (a later write goes on, as in
	 * any snapshot taken while a file is open) */
	rc = tally_drain(t, NULL, 0);
	if (rc) {
		progress_end(pj);
		return rc;
	}
	lock(t);
	rc = meta_dentry_lookup(t->meta, TALLY_ROOT_INO, src, &src_ino);
	if (!rc) {
		rc = meta_dentry_lookup(t->meta, TALLY_ROOT_INO, dst, &dst_ino);
		rc = rc == -ENOENT ? 0 : (rc ? rc : -EEXIST);
	}
	if (!rc)
		rc = iget(t, TALLY_ROOT_INO, &root);
	if (rc)
		goto out;
	next = t->next_ino;
	md = root->md;
	md.nlink++;
	md.mtime = md.ctime = now();
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_branch(t->meta, src_ino, dst, &next, &newroot,
				 &count);
	if (!rc)
		rc = put_md(t, root, &md);
	rc = txn_end(t, rc);
	if (rc)
		goto out;
	t->next_ino = next;
	t->ino_limit = next;
	root->md = md;
	*inodes = count;
	progress_set_total(pj, count);
	progress_set(pj, count);
out:
	iput(t, root);
	unlock(t);
	progress_end(pj);
	return rc;
}

int tally_stats(struct tally *t, struct tally_stats *out)
{
	struct pool_stats ps;
	struct meta_stats ms;
	int rc;

	memset(out, 0, sizeof(*out));
	lock(t);
	rc = meta_stats(t->meta, &ms);
	out->dirty_bytes = t->dirty_blocks * t->bs;
	out->commit_errors = t->commit_errors;
	out->refcount_drift = meta_drift(t->meta);
	unlock(t);
	if (rc)
		return rc;
	pthread_mutex_lock(&t->fin_lock);
	out->pending_flushes = t->pending;
	out->durable_seq = t->done_seq;
	out->rotated_seq = t->rotated_seq;
	out->group_commits = t->groups;
	pthread_mutex_unlock(&t->fin_lock);
	out->spliced_reads = atomic_load(&t->spliced_reads);
	pool_stats(t->pool, &ps);
	out->workers = ps.workers;
	out->jobs_queued = ps.queued;
	out->jobs_running = ps.running;
	out->namespaces = ms.namespaces;
	out->inodes = ms.inodes;
	out->objects = ms.objects;
	out->bytes_logical = ms.bytes_logical;
	out->bytes_stored = ms.bytes_stored;
	out->bytes_referenced = ms.bytes_referenced;
	out->block_size = t->bs;
	out->dirty_limit = t->dirty_limit;
	out->max_pending = t->max_pending;
	return 0;
}

void tally_inject(struct tally *t, bool sync, unsigned nth, int err)
{
	objstore_inject(t->objs, sync ? OBJSTORE_SYNC : OBJSTORE_WRITE, nth,
			err);
}

void tally_gc_settings(struct tally *t, int64_t *stale_after,
		       unsigned *min_nodes, int64_t *node_id)
{
	*stale_after = t->stale_after;
	*min_nodes = t->min_nodes;
	*node_id = t->node_id;
}

static int pin_collect(void *ctx, const char *name)
{
	char *copy = strdup(name);

	if (!copy)
		return -ENOMEM;
	if (active_add(ctx, copy)) {
		free(copy);
		return -ENOMEM;
	}
	return 0;
}

/* Mount-relative @path in canonical form ("a/b"); "." and ".." refused. */
static int canonical(const char *path, char *canon, size_t size)
{
	char buf[4096], *p, *save = NULL;
	size_t used = 0;

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	snprintf(buf, sizeof(buf), "%s", path);
	canon[0] = '\0';
	for (p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		if (!strcmp(p, ".") || !strcmp(p, ".."))
			return -EINVAL;
		used += (size_t)snprintf(canon + used, size - used, "%s%s",
					 used ? "/" : "", p);
		if (used >= size)
			return -ENAMETOOLONG;
	}
	return used ? 0 : -EINVAL;
}

/* Resolve mount-relative @path to an inode (t->lock held); @canon gets
 * the path in canonical form ("a/b", no empty components). Symlinks are
 * not followed: one before the last component is EINVAL (another
 * non-directory there is ENOTDIR), so a command never leaves the mount. */
static int resolve(struct tally *t, const char *path, uint64_t *ino,
		   uint64_t *parent, char *canon, size_t size)
{
	char buf[4096], *p, *save = NULL;
	uint64_t cur = TALLY_ROOT_INO, up = 0;
	size_t used = 0;

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	snprintf(buf, sizeof(buf), "%s", path);
	for (p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		int rc;

		if (!strcmp(p, ".") || !strcmp(p, ".."))
			return -EINVAL;
		rc = check_name(p);
		if (rc)
			return rc;
		if (cur != TALLY_ROOT_INO) {
			struct meta_inode md;

			rc = meta_inode_get(t->meta, cur, &md);
			if (rc)
				return rc;
			if (!S_ISDIR(md.mode))
				return S_ISLNK(md.mode) ? -EINVAL : -ENOTDIR;
		}
		up = cur;
		rc = meta_dentry_lookup(t->meta, cur, p, &cur);
		if (rc)
			return rc;
		used += (size_t)snprintf(canon + used, size - used, "%s%s",
					 used ? "/" : "", p);
		if (used >= size)
			return -ENAMETOOLONG;
	}
	if (cur == TALLY_ROOT_INO)
		return -EINVAL; /* the root itself */
	*ino = cur;
	*parent = up;
	return 0;
}

int tally_pin(struct tally *t, const char *path, bool pin, uint64_t *objects)
{
	struct active a = { 0 };
	struct meta_inode md;
	uint64_t ino, parent;
	char canon[4096];
	size_t i;
	int rc;

	if (!path[0])
		return -EINVAL;
	if (pin) {
		/* the objects as committed: let pending closes finish */
		rc = tally_drain(t, NULL, 0);
		if (rc)
			return rc;
	}
	lock(t);
	if (!pin) {
		/* by name: the file may be gone since it was pinned */
		rc = canonical(path, canon, sizeof(canon));
		if (!rc)
			rc = meta_begin(t->meta);
		if (!rc)
			rc = meta_pin_remove(t->meta, canon);
		rc = txn_end(t, rc);
		goto out;
	}
	rc = resolve(t, path, &ino, &parent, canon, sizeof(canon));
	if (rc)
		goto out;
	path = canon;
	rc = meta_inode_get(t->meta, ino, &md);
	if (rc)
		goto out;
	if (parent == TALLY_ROOT_INO) {
		rc = meta_nspace_objects(t->meta, md.nspace, pin_collect, &a);
	} else if (S_ISREG(md.mode)) {
		struct meta_bref *map = NULL;
		size_t n = 0;

		rc = meta_blocks_load(t->meta, ino, &map, &n);
		for (i = 0; i < n && !rc; i++)
			if (map[i].name[0])
				rc = pin_collect(&a, map[i].name);
		free(map);
	} else {
		rc = -EINVAL; /* a file or a whole namespace */
	}
	if (rc)
		goto out;
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_pin_add(t->meta, path, (int64_t)time(NULL), a.v, a.n);
	rc = txn_end(t, rc);
	if (!rc)
		*objects = a.n;
out:
	unlock(t);
	for (i = 0; i < a.n; i++)
		free((char *)a.v[i]);
	free(a.v);
	return rc;
}

int tally_resolve(struct tally *t, const char *path, uint64_t *ino)
{
	char canon[4096];
	uint64_t parent;
	int rc;

	lock(t);
	rc = resolve(t, path, ino, &parent, canon, sizeof(canon));
	unlock(t);
	return rc;
}

int tally_meta_read(struct tally *t, int (*fn)(struct meta *m, void *ctx),
		    void *ctx)
{
	int rc;

	lock(t);
	rc = fn(t->meta, ctx);
	reap_dead(t->meta, t->objs);
	unlock(t);
	return rc;
}

int tally_meta_txn_then(struct tally *t, int (*fn)(struct meta *m, void *ctx),
			int (*then)(struct meta *m, void *ctx), void *ctx)
{
	int rc;

	lock(t);
	rc = meta_begin(t->meta);
	if (!rc)
		rc = fn(t->meta, ctx);
	rc = txn_end(t, rc);
	if (!rc && then)
		rc = then(t->meta, ctx);
	unlock(t);
	return rc;
}

int tally_meta_txn(struct tally *t, int (*fn)(struct meta *m, void *ctx),
		   void *ctx)
{
	return tally_meta_txn_then(t, fn, NULL, ctx);
}

int tally_reap_copy(struct tally *t, const char *name, int64_t id,
		    uint32_t shard, unsigned flags)
{
	int rc;

	lock(t);
	rc = reap_copy(t->meta, t->objs, name, id, shard, flags);
	unlock(t);
	return rc;
}

struct meta *tally_meta_lock(struct tally *t)
{
	lock(t);
	return t->meta;
}

void tally_meta_unlock(struct tally *t)
{
	/* the objects the caller's commits left unnamed */
	reap_dead(t->meta, t->objs);
	unlock(t);
}

struct objstore *tally_objstore(struct tally *t)
{
	return t->objs;
}

struct pool *tally_pool(struct tally *t)
{
	return t->pool;
}

struct progress *tally_progress(struct tally *t)
{
	return t->progress;
}
