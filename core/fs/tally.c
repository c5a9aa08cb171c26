/* SPDX-License-Identifier: MIT */
/*
 * The filesystem: opening and closing a store, the statistics, and the
 * helpers every part of it shares (the metadata lock, transactions). The
 * rest is split by concept: core/fs/inode.c (the inode table, the entry
 * cache, attributes), core/fs/dirty.c (block maps and dirty buffers),
 * core/fs/flush.c (the flush pipeline), core/fs/names.c (directory entries),
 * core/fs/file.c (file data), core/fs/xattr.c, core/fs/nspace.c (namespaces and
 * pins) and core/cluster/report.c (node reports); core/fs/tally_int.h holds the
 * structs they share.
 *
 * DESIGN NOTES
 *
 * Invariants (the inode's own are in core/fs/inode.c, the pipeline's in
 * core/fs/flush.c):
 *  1. Object data and its directory entry are durable before the
 *     transaction that names the object commits (objstore_put into a
 *     batch, objstore_batch_finish, then meta_commit).
 *  2. An object file is deleted only by core/objects/reap.c, after the
 *     transaction that left nothing naming it is durable (the WAL synced:
 *     tally_txn_sync(), on fsync, drain, unmount, and on the flusher's
 *     tick when deletions wait). The verdict is asked under t->lock and
 *     dooms the file in that hold; the unlink follows the hold
 *     (tally_unlock()), as GC's of leaked files does. A commit that
 *     reuses an object with no row re-checks the file under t->lock,
 *     which cancels a doom or waits for an unlink begun, so a reuse can
 *     never race with that unlink into a dangling reference
 *     (core/objects/objstore.c, doomed files).
 *
 * Lock order: inode->rw, then t->lock. t->lock protects the metadata
 * store, the inode table, the entry cache and the fields marked so;
 * inode->rw protects the block map and the dirty buffers (and size
 * changes take both). No I/O on object files happens under t->lock except
 * the rare re-check of invariant 2.
 */
#include "core/fs/tally.h"
#include "core/fs/tally_int.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/util/pool.h"
#include "core/util/progress.h"
#include "core/objects/reap.h"
#include "core/objects/store.h"
#include "core/util/metrics.h"

/* ------------------------------------------------------------------ */
/* small helpers */

struct timespec tally_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

int64_t tally_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tally_check_name(const char *name)
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

bool tally_is_ctl_name(uint64_t parent, const char *name)
{
	return parent == TALLY_ROOT_INO && (!strcmp(name, TALLY_CTLDIR_NAME) ||
					    !strcmp(name, TALLY_SNAPDIR_NAME));
}

int tally_nspace_name_taken(const char *name)
{
	/* the snapshots' directory, and "NS@NAME", which names a
	 * snapshot (docs/design.md, section 13): reserved for versions */
	if (!strcmp(name, TALLY_SNAPDIR_NAME) || strchr(name, '@'))
		return -EINVAL;
	return 0;
}

bool tally_is_virtual(uint64_t ino)
{
	return ino >= TALLY_CTLDIR_INO && ino <= TALLY_METRICS_INO;
}

void tally_lock(struct tally *t)
{
	pthread_mutex_lock(&t->lock);
}

bool tally_trylock(struct tally *t)
{
	return pthread_mutex_trylock(&t->lock) == 0;
}

/*
 * The files tally_txn_sync() doomed in this hold are unlinked after it
 * (invariant 2): the requests that wait for t->lock do not wait for
 * the disk's unlinks too.
 */
void tally_unlock(struct tally *t)
{
	struct meta_objlist doomed;

	while (t->doomed.n) {
		doomed = t->doomed;
		meta_objlist_init(&t->doomed);
		t->unlinking++;
		pthread_mutex_unlock(&t->lock);
		reap_dead_unlink(t->objs, &doomed);
		meta_objlist_release(&doomed);
		pthread_mutex_lock(&t->lock);
		if (--t->unlinking == 0)
			pthread_cond_broadcast(&t->unlinked);
	}
	pthread_mutex_unlock(&t->lock);
}

uint64_t tally_blocks_for(struct tally *t, uint64_t size)
{
	return (size + t->bs - 1) / t->bs;
}

/*
 * Finish a transaction: commit or roll back; after a commit, delete the
 * files of the objects it left unnamed (core/objects/reap.c decides). Returns
 * the commit's result.
 */
int tally_txn_end(struct tally *t, int rc)
{
	return tally_txn_end_as(t, rc, -ENOENT);
}

int tally_txn_end_as(struct tally *t, int rc, int gone)
{
	if (!rc)
		rc = meta_commit(t->meta);
	return tally_txn_done(t, rc, gone);
}

int tally_txn_done(struct tally *t, int rc, int gone)
{
	unsigned i, n = t->nmd_written;

	t->nmd_written = 0;
	if (rc) {
		meta_rollback(t->meta);
		return rc == -ENOLINK ? gone : rc;
	}
	for (i = 0; i < n; i++)
		t->md_written[i].ip->mdirty &= (uint8_t)~t->md_written[i].mask;
	t->wal_unsynced = true;
	return 0;
}

/*
 * Make every commit so far durable against power loss (t->lock held),
 * then delete the object files those commits left unnamed (invariant 2:
 * only now, so that power loss can never bring back a reference to a
 * deleted file).
 */
int tally_txn_sync(struct tally *t)
{
	int rc = 0;

	if (t->wal_unsynced || meta_group_open(t->meta)) {
		int64_t before = meta_change_count(t->meta);

		/* its tiny transaction is upkeep: no change to snapshot */
		rc = meta_sync(t->meta);
		tally_upkeep_changes(t, meta_change_count(t->meta) - before);
		if (rc)
			return rc;
		t->wal_unsynced = false;
	}
	reap_dead_doom(t->meta, t->objs, &t->doomed);
	/* the files other holds doomed, still being unlinked after them:
	 * gone too when this returns (drain, fsync and unmount promise the
	 * deletions their commits allowed; this hold's own go in
	 * tally_unlock()) */
	while (t->unlinking)
		pthread_cond_wait(&t->unlinked, &t->lock);
	return 0;
}

int tally_group_commit(struct tally *t)
{
	int rc;

	tally_lock(t);
	rc = meta_group_commit(t->meta);
	tally_unlock(t);
	return rc;
}

bool tally_retry(struct tally *t, int *rc, unsigned *attempt)
{
	struct timespec ts;
	long ms;

	(void)t;
	if (*rc != -EDEADLK)
		return false;
	if (++*attempt > TALLY_RETRIES) {
		log_msg(LOG_ERR, "a transaction failed %u times: giving up",
			TALLY_RETRIES);
		*rc = -EIO;
		return false;
	}
	/* 10 ms, doubling to 1 s, with jitter: nodes that collided part */
	ms = 10L << (*attempt < 7 ? *attempt - 1 : 6);
	ms += random() % (ms / 2 + 1);
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	nanosleep(&ts, NULL);
	return true;
}

int tally_meta_sync(struct tally *t)
{
	int rc;

	tally_lock(t);
	rc = tally_txn_sync(t);
	tally_unlock(t);
	return rc;
}

int tally_reap_due(struct tally *t)
{
	int rc = 0;

	tally_lock(t);
	if (meta_dead_count(t->meta))
		rc = tally_txn_sync(t);
	tally_unlock(t);
	return rc;
}

/* ------------------------------------------------------------------ */
/* open and close */

/* This mount's node id: kept in the store with the embedded engine (one
 * mount at a time); a new one for every mount of a shared store. */
static int node_identity(struct tally *t)
{
	int64_t id = 0;
	int rc = meta_shared(t->meta)
			 ? -ENOENT
			 : meta_config_get(t->meta, "node_id", &id);

	if (rc == -ENOENT && meta_shared(t->meta)) {
		id = store_random_id();
		rc = 0;
	} else if (rc == -ENOENT) {
		id = store_random_id();
		rc = meta_begin(t->meta);
		if (!rc)
			rc = meta_config_set(t->meta, "node_id", id);
		rc = tally_txn_end(t, rc);
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
	struct meta_orphan *inos = NULL;
	size_t n = 0, i;
	int rc;

	/* a shared store: those no node holds open (a node's holds go
	 * with its session) */
	if (meta_shared(t->meta))
		rc = meta_orphans_unheld(t->meta, &inos, &n);
	else
		rc = meta_inode_orphans(t->meta, &inos, &n);
	for (i = 0; i < n && !rc; i++) {
		unsigned attempt = 0;

		/* on a shared store another node may free the same inode
		 * now (its cleanup of this node's expired session): a
		 * deadlock between the two runs again, and finds it gone */
		do {
			rc = meta_begin(t->meta);
			if (!rc)
				rc = meta_orphan_free(t->meta, &inos[i]);
			rc = tally_txn_end(t, rc);
		} while (tally_retry(t, &rc, &attempt));
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

static int bound_url(struct meta *m, void *ctx)
{
	return meta_remote_conf_get(m, "url", ctx);
}

/* A store bound to a bucket needs it: its local copies may be evicted,
 * and its uploads wait in the queue. */
static int remote_unbound(struct tally *t)
{
	char *url = NULL;
	int rc = tally_meta_read(t, bound_url, &url);

	if (rc == -ENOENT)
		return 0;
	if (!rc) {
		log_msg(LOG_ERR,
			"store '%s' is bound to bucket '%s': mount it with "
			"-o remote=%s,remote_endpoint=URL",
			t->store->path, url, url);
		rc = -EUCLEAN;
	}
	free(url);
	return rc;
}

int tally_open_with(const char *path, const struct tally_opts *opts,
		    const struct tally_upper *up, struct tally **out)
{
	struct tally *t;
	uint64_t max;
	int64_t v;
	int rc;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->up = up;
	t->ibits = ITABLE_BITS;
	t->itable = calloc(itable_size(t), sizeof(*t->itable));
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
	if (!rc)
		rc = metrics_new(&t->metrics);
	if (rc)
		goto out_free;
	rc = store_open_flags(
		path, opts->meta, opts->create,
		opts->block_size ? opts->block_size : STORE_DEFAULT_BLOCK_SIZE,
		(opts->no_intent_log ? STORE_NO_INTENT_LOG : 0) |
			(opts->compress_local ? STORE_COMPRESS_LOCAL : 0) |
			STORE_SYNC(opts->sync_objects),
		&t->store);
	if (rc)
		goto out_free;
	t->meta = t->store->meta;
	t->objs = t->store->objs;
	if (opts->local_level && objstore_encoded(t->objs))
		objstore_encode_local(
			t->objs, opts->local_level < 0 ? 0 : opts->local_level);
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
	t->rename_hook = opts->rename_hook;
	t->entry_hint_ms = opts->entry_hint_ms > 0 ? opts->entry_hint_ms : 0;
	atomic_init(&t->names_epoch, 1);
	t->hook_arg = opts->hook_arg;
	t->report_interval = opts->report_interval ? opts->report_interval : 60;
	t->heartbeat = opts->heartbeat ? opts->heartbeat : 12;
	t->group_ns = (int64_t)(opts->group_ms ? opts->group_ms : 5) * 1000000;
	meta_ilog_tune(t->meta, t->group_ns);
	t->no_xattrs = opts->no_xattrs;
	t->no_negcache = opts->no_negcache;
	t->stale_after = opts->stale_after ? opts->stale_after : 600;
	t->min_nodes = opts->min_nodes_reporting ? opts->min_nodes_reporting
						 : 1;
	t->gc_interval = opts->gc_interval > 0 ? opts->gc_interval : 0;
	t->last_gc = (int64_t)time(NULL);
	t->owner = opts->owner;
	t->owner_gid = opts->owner_gid;
	t->started = tally_now();
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->space, NULL);
	pthread_cond_init(&t->unlinked, NULL);
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
	rc = node_identity(t);
	if (!rc)
		rc = tally_nspace_leaves_load(t);
	if (!rc)
		rc = views_load(t);
	if (!rc)
		rc = up->session_start(t);
	if (!rc)
		rc = clean_orphans(t);
	if (!rc)
		rc = up->setup(t);
	if (rc)
		goto out_store;
	/* flush streams get the workers; control jobs a thread of their own */
	rc = pool_new(opts->workers ? opts->workers : cpus(), 1, &t->pool);
	if (rc)
		goto out_store;
	if (pthread_create(&t->fin_thread, NULL, flush_finalizer, t) != 0) {
		rc = -EAGAIN;
		goto out_pool;
	}
	if (pthread_create(&t->flusher_thread, NULL, flush_flusher, t) != 0) {
		rc = -EAGAIN;
		goto out_finalizer;
	}
	rc = opts->remote ? up->remote_new(t, opts->remote, &t->remote)
			  : remote_unbound(t);
	if (rc) {
		tally_close(t);
		return rc;
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
	free(t->nsleaves);
	views_free(t);
	pthread_mutex_destroy(&t->pool_lock);
	pthread_mutex_destroy(&t->lock);
	meta_objlist_release(&t->doomed);
	store_close(t->store);
out_free:
	metrics_free(t->metrics);
	progress_free(t->progress);
	free(t->kept);
	dirnames_release(t);
	free(t->itable);
	free(t->dcache);
	free(t->mountpoint);
	free(t);
	return rc;
}

/*
 * Name in the log what of @ip's data could not be committed at close
 * (t->lock held): its path, the blocks lost, and the bytes the committed
 * file keeps. Returns the number of blocks.
 */
static uint64_t lost_at_close(struct tally *t, struct inode *ip)
{
	char path[1024];
	uint64_t blocks = 0;
	struct flush *f;
	int err = 0;

	if (ip->io) {
		pthread_mutex_lock(&ip->io->mlock);
		for (f = ip->io->failed; f; f = f->next) {
			blocks += f->nblk;
			if (!err)
				err = f->err;
		}
		pthread_mutex_unlock(&ip->io->mlock);
	}
	if (meta_inode_path(t->meta, ip->md.ino, path, sizeof(path)))
		snprintf(path, sizeof(path), "(no name)");
	log_msg(LOG_ERR,
		"lost at unmount: '%s' (inode %" PRIu64 "): %" PRIu64
		" block(s) of %" PRIu64 " bytes could not be committed (%s); "
		"it keeps %" PRIu64 " of its %" PRIu64 " bytes",
		path, ip->ino, blocks, (uint64_t)t->bs,
		strerror(err ? -err : EIO), ip->dsize, ip->md.size);
	return blocks;
}

int tally_close(struct tally *t)
{
	uint64_t lost_files = 0, lost_blocks = 0;
	size_t i;
	int rc;

	if (!t)
		return 0;
	atomic_store(&t->closing, true); /* long jobs stop early */
	rc = tally_drain(t, NULL, 0);
	/* uploads drain within their deadline; the rest stays queued */
	t->up->remote_free(t->remote);
	t->remote = NULL;
	/* stop the timer, then the flush_finalizer (nothing is pending), then
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
	t->up->unwatch(t);
	/* the holds kept after last closes go, and the files no name and no
	 * other node holds with them, before the session ends */
	if (tally_meta_shared(t))
		file_drop_kept_holds(t, true);
	tally_lock(t);
	{
		/* a clean unmount ends the session and withdraws the
		 * node's report */
		int rc2 = t->up->session_end(t);

		if (rc2)
			log_msg(LOG_WARNING,
				"cannot end the session: "
				"%s",
				strerror(-rc2));
	}
	{
		int rc2 = tally_txn_sync(t);

		if (!rc)
			rc = rc2;
	}

	for (i = 0; i < itable_size(t); i++) {
		while (t->itable[i]) {
			struct inode *ip = t->itable[i];

			t->itable[i] = ip->next;
			if (ip->nfailed) {
				lost_blocks += lost_at_close(t, ip);
				lost_files++;
				if (!rc)
					rc = -EIO;
			}
			inode_destroy(t, ip);
		}
	}
	if (lost_files)
		log_msg(LOG_ERR,
			"data lost at unmount: %" PRIu64 " block(s) of %" PRIu64
			" file(s) could not be committed (what fitted was)",
			lost_blocks, lost_files);
	for (i = 0; i < DCACHE_SIZE; i++)
		free(t->dcache[i].name);
	tally_unlock(t);
	while (t->npool)
		free(t->pool_bufs[--t->npool]);
	free(t->heap);
	free(t->nsleaves);
	views_free(t);
	pthread_cond_destroy(&t->flusher_cond);
	pthread_mutex_destroy(&t->flusher_lock);
	pthread_cond_destroy(&t->fin_done);
	pthread_cond_destroy(&t->fin_work);
	pthread_mutex_destroy(&t->fin_lock);
	pthread_mutex_destroy(&t->pool_lock);
	pthread_cond_destroy(&t->space);
	pthread_cond_destroy(&t->unlinked);
	pthread_mutex_destroy(&t->lock);
	meta_objlist_release(&t->doomed);
	store_close(t->store);
	metrics_free(t->metrics);
	progress_free(t->progress);
	free(t->kept);
	dirnames_release(t);
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

int64_t tally_meta_changes_locked(struct tally *t)
{
	return meta_change_count(t->meta) - t->upkeep_changes;
}

int64_t tally_meta_changes(struct tally *t)
{
	int64_t n;

	tally_lock(t);
	n = tally_meta_changes_locked(t);
	tally_unlock(t);
	return n;
}

void tally_upkeep_changes(struct tally *t, int64_t n)
{
	t->upkeep_changes += n;
}

uint64_t tally_done_seq(struct tally *t)
{
	uint64_t seq;

	pthread_mutex_lock(&t->fin_lock);
	seq = t->done_seq;
	pthread_mutex_unlock(&t->fin_lock);
	return seq;
}

struct remote *tally_remote(struct tally *t)
{
	return t->remote;
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

int tally_leg_add(struct tally *t, unsigned id, const char *root)
{
	return store_leg_add(t->store, id, root);
}

bool tally_meta_shared(struct tally *t)
{
	return meta_shared(t->meta);
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
	tally_lock(t);
	rc = meta_statfs(t->meta, &inodes, &stored);
	tally_unlock(t);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	out->f_bsize = t->bs;
	out->f_frsize = frsize;
	/* what the shards that take new objects have, less the reserve
	 * object writes leave (core/objects/objstore.h) */
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

int tally_stats(struct tally *t, struct tally_stats *out)
{
	struct pool_stats ps;
	struct meta_stats ms;
	int rc;

	memset(out, 0, sizeof(*out));
	tally_lock(t);
	rc = meta_stats(t->meta, &ms);
	out->dirty_bytes = t->dirty_blocks * t->bs;
	out->inodes_cached = t->ninodes;
	out->commit_errors = t->commit_errors;
	out->refcount_drift = meta_drift(t->meta);
	tally_unlock(t);
	if (rc)
		return rc;
	pthread_mutex_lock(&t->fin_lock);
	out->pending_flushes = t->pending;
	out->durable_seq = t->done_seq;
	out->rotated_seq = t->rotated_seq;
	out->group_commits = t->groups;
	pthread_mutex_unlock(&t->fin_lock);
	out->spliced_reads = atomic_load(&t->spliced_reads);
	out->buffer_pool_bytes = dirty_pool_bytes(t);
	out->writeback_cache = t->wb_cache;
	out->xattrs = !t->no_xattrs;
	out->corrupt_objects =
		atomic_load(&t->corrupt) + objstore_corrupt(t->objs);
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

void tally_inject_evict(struct tally *t, unsigned nth)
{
	atomic_store(&t->evict_fault, nth);
}

void tally_gc_settings(struct tally *t, int64_t *stale_after,
		       unsigned *min_nodes, int64_t *node_id)
{
	*stale_after = t->stale_after;
	*min_nodes = t->min_nodes;
	*node_id = t->node_id;
}

void tally_note_corrupt(struct tally *t, const char *name, const char *what)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a, never 0 below */
	const char *p;
	unsigned i;

	for (p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h |= 1;
	for (i = 0; i < CORRUPT_SEEN; i++) {
		uint64_t seen = 0;
		_Atomic uint64_t *slot =
			&t->corrupt_seen[(h + i) % CORRUPT_SEEN];

		if (atomic_compare_exchange_strong(slot, &seen, h))
			break; /* first time */
		if (seen == h)
			return; /* logged before */
	}
	atomic_fetch_add(&t->corrupt, 1);
	log_msg(LOG_ERR,
		"object '%s' %s: it is corrupt, reads of it fail with EIO "
		"(run verify, then tallyfsck)",
		name, what);
}

int tally_meta_read(struct tally *t, int (*fn)(struct meta *m, void *ctx),
		    void *ctx)
{
	int rc;

	tally_lock(t);
	rc = fn(t->meta, ctx);
	tally_unlock(t);
	return rc;
}

int tally_meta_txn_then(struct tally *t, int (*fn)(struct meta *m, void *ctx),
			int (*then)(struct meta *m, void *ctx), void *ctx)
{
	int rc;

	tally_lock(t);
	rc = meta_begin(t->meta);
	if (!rc)
		rc = fn(t->meta, ctx);
	rc = tally_txn_end(t, rc);
	if (!rc && then)
		rc = then(t->meta, ctx);
	tally_unlock(t);
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

	tally_lock(t);
	rc = reap_copy(t->meta, t->objs, name, id, shard, flags);
	tally_unlock(t);
	return rc;
}

struct meta *tally_meta_lock(struct tally *t)
{
	tally_lock(t);
	return t->meta;
}

void tally_meta_unlock(struct tally *t)
{
	tally_unlock(t);
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

struct metrics *tally_metrics(struct tally *t)
{
	return t->metrics;
}
