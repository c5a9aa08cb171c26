/* SPDX-License-Identifier: MIT */
/*
 * When flushes start and who waits for them: the flusher thread (data
 * dirty longer than DIRTY_AGE_S, memory pressure), the commits close
 * and fsync ask for, the dirty_limit throttle, the reservation of
 * space for accepted writes, and drain. The DESIGN NOTES of
 * core/fs/flush.c hold here.
 */
#include "core/fs/tally_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/util/pool.h"
#include "core/util/progress.h"
#include "core/objects/reap.h"

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
	for (i = 0; i < itable_size(t) && !rc; i++) {
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
			rc = inode_hold(ip);
			if (rc)
				break;
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
	return a->pressure || a->now.tv_sec - ip->dirty_since >= DIRTY_AGE_S;
}

/* Rotate the inodes whose data is old, or all under memory pressure. */
static void flush_aged(struct tally *t)
{
	struct aged a = { .now = tally_now() };
	struct inode **list = NULL;
	struct timespec ts = a.now;
	size_t n = 0, i;

	tally_lock(t);
	a.pressure = t->dirty_blocks * t->bs > t->dirty_limit / 2;
	/* nothing dirty, nothing parked: no walk over every inode in
	 * memory (a million after a million creates) under the lock */
	if (t->dirty_blocks || t->parked)
		collect_inodes(t, want_aged, &a, &list, &n);
	tally_unlock(t);
	for (i = 0; i < n; i++) {
		uint64_t seq;

		/* a writer holding the inode flushes it itself */
		if (pthread_rwlock_trywrlock(&list[i]->io->rw) == 0) {
			flush_rotate(t, list[i], NULL, 0, false, &seq);
			tally_lock(t);
			/* failures are retried a tick later */
			list[i]->dirty_since = ts.tv_sec;
			tally_unlock(t);
			pthread_rwlock_unlock(&list[i]->io->rw);
		}
		tally_lock(t);
		inode_put(t, list[i]);
		tally_unlock(t);
	}
	free(list);
}

/* The flusher thread: the timer and memory-pressure trigger. */
void *flush_flusher(void *arg)
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
		dirty_pool_trim(t);
		/* a group of the intent log left open by an idle mount */
		tally_lock(t);
		if (meta_group_commit_due(t->meta, t->group_ns))
			log_msg(LOG_WARNING, "cannot commit the metadata's "
					     "group: it stays in the log");
		tally_unlock(t);
		/* the deletions that wait for a durable commit: one WAL
		 * sync a tick at most, and none when nothing waits */
		if (tally_reap_due(t))
			log_msg(LOG_WARNING, "cannot sync the metadata: "
					     "deletions wait");
		/* reports, the heartbeat, shards, automatic GC */
		t->up->tick(t, ++t->ticks);
		if (tally_meta_shared(t))
			file_drop_kept_holds(t, false);
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
int flush_commit_with(struct tally *t, struct inode *ip, int flags,
		      const struct pending *shares, size_t nshares)
{
	uint64_t seq;
	int rc = flush_rotate(t, ip, shares, nshares,
			      (flags & COMMIT_FORCE) || nshares, &seq);

	if (!rc)
		rc = flush_wait(t, seq, 0);
	if (!rc)
		rc = flush_take_err(t, ip, UINT64_MAX);
	return rc;
}

int flush_commit(struct tally *t, struct inode *ip, int flags)
{
	return flush_commit_with(t, ip, flags, NULL, 0);
}

/* Wait while dirty memory is over the limit (exclusive rw held). */
int flush_throttle(struct tally *t, struct inode *ip)
{
	uint64_t parks = 0, low = 0;
	unsigned idle = 0;
	int rc = 0;

	tally_lock(t);
	parks = t->enospc_parks;
	low = t->dirty_blocks;
	while (t->dirty_blocks * t->bs >= t->dirty_limit && idle < 100) {
		struct timespec until;
		uint64_t seq;

		/* a full disk: the flushes that would make room fail, and
		 * the writer would wait for as long as it stays full */
		if (t->enospc_parks != parks) {
			rc = -ENOSPC;
			break;
		}
		if (ip->ndirty) {
			int err;

			/* our own data first: it is what we can free */
			tally_unlock(t);
			err = flush_rotate(t, ip, NULL, 0, false, &seq);
			tally_lock(t);
			if (err)
				break;
			continue;
		}
		tally_unlock(t);
		flusher_kick(t);
		tally_lock(t);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100 * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&t->space, &t->lock, &until);
		/* progress is less dirty data, not a flush finalized (a
		 * parked one retried and failed again is finalized too) */
		if (t->dirty_blocks < low) {
			low = t->dirty_blocks;
			idle = 0;
		} else {
			idle++;
		}
	}
	if (idle >= 100)
		log_msg(LOG_WARNING,
			"dirty data stays above dirty_limit "
			"(flushes failing?): letting a writer through");
	tally_unlock(t);
	return rc;
}

/* Free space below this past the data not committed is low: writes are
 * then sent one by one (tally_space_low()). What the kernel's writeback
 * cache may hold of a mount's writes: fs/main.c caps it at 256 MiB
 * (WB_MAX_BYTES), or dirty_limit if less. */
#define SPACE_LOW (256ull << 20)
/* Free space this close to what a write needs is read again for it. */
#define SPACE_FRESH (64ull << 20)

/* The object store's free bytes, read again when older than 200 ms or
 * when @fresh (t->lock held). */
static uint64_t space_avail(struct tally *t, bool fresh)
{
	int64_t now = tally_mono_ms();

	if (fresh || !t->space_at || now - t->space_at >= 200) {
		t->space_avail = objstore_avail(t->objs);
		t->space_at = now;
	}
	return t->space_avail;
}

bool tally_space_low(struct tally *t)
{
	bool low;

	tally_lock(t);
	low = space_avail(t, false) < t->dirty_blocks * t->bs + SPACE_LOW;
	tally_unlock(t);
	return low;
}

/* Whether the object store has room for the uncommitted blocks and
 * @blocks more. Figures up to 200 ms old do while room is ample; near
 * the edge every write reads the filesystems again (the disk may have
 * been filled from outside meanwhile). */
static bool space_for(struct tally *t, uint64_t blocks)
{
	uint64_t want;
	bool room;

	tally_lock(t);
	want = (t->dirty_blocks + blocks) * t->bs;
	room = space_avail(t, false) >= want + SPACE_FRESH ||
	       space_avail(t, true) >= want;
	tally_unlock(t);
	return room;
}

int flush_reserve(struct tally *t, struct inode *ip, uint64_t blocks)
{
	uint64_t seq;

	if (!blocks || space_for(t, blocks))
		return 0;
	/* data written but not finalized yet counts twice (on disk, and
	 * as uncommitted): this file's goes down the pipeline, everything
	 * under way is waited for, and the deletions that wait for a sync
	 * free their space; then once more */
	if (ip->ndirty && flush_rotate(t, ip, NULL, 0, false, &seq))
		return -ENOSPC;
	pthread_mutex_lock(&t->fin_lock);
	seq = t->rotated_seq;
	pthread_mutex_unlock(&t->fin_lock);
	flush_wait(t, seq, 0);
	tally_reap_due(t);
	return space_for(t, blocks) ? 0 : -ENOSPC;
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
	for (i = 0; i < itable_size(t); i++) {
		struct inode *ip;

		for (ip = t->itable[i]; ip; ip = ip->next) {
			uint64_t nblk = 0;
			struct flush *f;

			if (!ip->nfailed)
				continue;
			pthread_mutex_lock(&ip->io->mlock);
			for (f = ip->io->failed; f; f = f->next) {
				if (f->seq > upto)
					continue;
				nblk += f->nblk;
				if (!err) /* a failed commit leaves f->err 0 */
					err = f->err	? f->err
					      : ip->err ? ip->err
							: -EIO;
			}
			pthread_mutex_unlock(&ip->io->mlock);
			*files += nblk ? 1 : 0;
			*blocks += nblk;
		}
	}
	return err;
}

void tally_set_push(struct tally *t, void (*push)(void *arg, uint64_t ino),
		    void *arg, bool cache)
{
	t->push = push;
	t->push_arg = arg;
	t->wb_cache = cache;
}

static bool want_open(struct tally *t, struct inode *ip, void *ctx)
{
	(void)t;
	(void)ctx;
	return ip->opens && S_ISREG(ip->md.mode) && !ip->freed;
}

/* Push the kernel's pages of every open regular file (no lock held). */
static int push_open(struct tally *t)
{
	struct inode **list;
	size_t n, i;
	int rc;

	if (!t->push)
		return 0;
	tally_lock(t);
	rc = collect_inodes(t, want_open, NULL, &list, &n);
	tally_unlock(t);
	for (i = 0; i < n; i++) {
		t->push(t->push_arg, list[i]->ino);
		file_put(t, list[i]);
	}
	free(list);
	return rc;
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

	/* what the kernel holds of open files first (writeback cache) */
	rc = push_open(t);
	if (rc)
		return rc;
	/* the deletions that wait first: the space they free may be what
	 * the flushes below need */
	tally_reap_due(t);
	pthread_mutex_lock(&t->fin_lock);
	start = t->done_seq;
	/* flushes waited for: those in flight, and about one per file */
	target = t->rotated_seq;
	pthread_mutex_unlock(&t->fin_lock);
	pj = progress_begin(t->progress, "drain", "flushes", 0);
	tally_lock(t);
	rc = collect_inodes(t, want_pending, NULL, &list, &n);
	tally_unlock(t);
	progress_set_total(pj, target - start + n);
	for (i = 0; i < n; i++) {
		uint64_t seq;
		int rc2;

		pthread_rwlock_wrlock(&list[i]->io->rw);
		rc2 = flush_rotate(t, list[i], NULL, 0, false, &seq);
		pthread_rwlock_unlock(&list[i]->io->rw);
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
	tally_lock(t);
	err = uncommitted(t, target, &r->files, &r->blocks);
	tally_unlock(t);
	if (!rc)
		rc = err;
	/* what drain committed is durable when it returns (one WAL sync),
	 * and the deletions the commits allowed are done */
	if (!rc)
		rc = tally_meta_sync(t);
	progress_end(pj);
	return rc;
}
