/* SPDX-License-Identifier: MIT */
/*
 * The flush coordinator: rotate, stream and finalize, the ready heap,
 * the finalizer and flusher threads, the dirty-memory throttle, aged
 * flushes, commits that wait, and drain.
 *
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
 *  6. A shared store (meta=, with a bucket): the stream puts each object
 *     into the bucket (remote_ship()) before the flush can be finalized,
 *     and the commit records it there; an object whose row went between
 *     the two is committed as a new row, queued for upload from the copy
 *     made here (the bucket's copy may be on its way out). A copy GC
 *     collected before the ship (the node's report names a flush's
 *     objects once its stream ended) is put from the flush's buffer,
 *     and the commit writes it again.
 *  7. A flush that meets a full disk part way (ENOSPC from an object
 *     write) commits what it wrote: the blocks before the one that found
 *     no room are made durable first (invariant 2 holds), the size its
 *     commit writes stops at that block (or stays what was committed,
 *     less a truncation), and the blocks from that one on park as a
 *     flush of their own (invariant 3) whose ENOSPC the waiters get.
 *     Not when a share of the flush lies at or past that block: the
 *     size would leave it out; the whole flush parks then.
 *
 * Lock order: inode->rw, then t->lock, then inode->mlock, then t->fin_lock
 * (never taken with mlock held by the finalizer's callers... see below),
 * and pool_lock innermost. The finalizer takes t->lock then inode->mlock;
 * it takes fin_lock only when it holds no other lock.
 *
 * Files: this one holds a flush's life (rotate, stream, finalize, park);
 * core/fs/flush_start.c when flushes start and who waits for them (the
 * flusher thread, commits, the throttle, space reservations, drain).
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
#include "core/util/metrics.h"

void flush_free(struct tally *t, struct flush *f)
{
	size_t i;

	for (i = 0; i < f->nblk; i++)
		dirty_buf_put(t, f->blk[i].buf);
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

/* A shared store: put the objects of @f into the bucket (remote_ship();
 * no lock held). 0 or the first error. */
static int ship(struct tally *t, struct flush *f)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < f->np && !rc && t->remote; i++) {
		struct pending *q = &f->p[i];

		if (q->hole || q->shared)
			continue;
		rc = t->up->remote_ship(t->remote, q->shard, q->name, q->len,
					q->buf, &q->gen, &q->fresh);
		q->shipped = rc >= 0;
		q->put = rc == 1;
		rc = rc > 0 ? 0 : rc;
	}
	return rc;
}

/*
 * Whether a stream that met a full disk at block blk[@stop] can commit
 * what it wrote (invariant 7): something was written, and no share of
 * the flush (p[0..@nshares)) lies at or past that block, which the
 * commit's size must leave out.
 */
static bool partial_ok(const struct flush *f, size_t nshares, size_t stop)
{
	size_t i;

	if (f->np == nshares)
		return false;
	for (i = 0; i < nshares; i++)
		if (f->p[i].idx >= f->blk[stop].idx)
			return false;
	return true;
}

/* objstore_put_vetted(): a name with no local copy may name an object
 * whose copy is in the bucket only (remote_vet()). */
static int vet_name(void *arg, const char *name, const void *buf, size_t len)
{
	struct tally *t = arg;

	return t->up->remote_vet(t->remote, name, buf, len);
}

/* The metrics of the blocks a stream made durable: new objects, and
 * dedup hits (the object was there already). */
static void count_blocks(struct tally *t, const struct flush *f, size_t nshares)
{
	size_t i;

	for (i = nshares; i < f->np; i++) {
		const struct pending *q = &f->p[i];

		if (q->hole)
			continue;
		metrics_add(t->metrics,
			    q->created ? METRICS_OBJECTS_WRITTEN
				       : METRICS_DEDUP_HITS,
			    1);
		metrics_add(t->metrics,
			    q->created ? METRICS_OBJECT_BYTES_WRITTEN
				       : METRICS_DEDUP_BYTES,
			    q->len);
	}
}

/* The bytes of block @idx below @size, what a flush of that size stores
 * of it (the block starts below @size). */
static size_t bytes_to_eof(const struct tally *t, uint64_t size, uint64_t idx)
{
	uint64_t start = idx * t->bs;

	return size - start < t->bs ? (size_t)(size - start) : t->bs;
}

/* Stream phase (pool): hash, stage and make durable the new objects. */
static void flush_stream(void *arg)
{
	struct flush *f = arg;
	struct tally *t = f->t;
	struct objstore_vet vet = { vet_name, t };
	struct objstore_batch batch;
	uint64_t nblocks = tally_blocks_for(t, f->size);
	size_t i, nshares = f->np; /* the shares come first */
	int rc = 0;

	if (t->stream_hook)
		t->stream_hook(t->hook_arg, f->seq, f->ip->ino);
	memset(&batch, 0, sizeof(batch));
	for (i = 0; i < f->nblk && !rc; i++) {
		struct dirty *d = &f->blk[i];
		struct pending *q;

		if (d->idx >= nblocks)
			continue; /* truncated away */
		q = &f->p[f->np++];
		q->idx = d->idx;
		q->len = (uint32_t)bytes_to_eof(t, f->size, d->idx);
		q->buf = d->buf;
		q->hole = dirty_all_zero(d->buf, q->len);
		q->shard = OBJSTORE_ANY;
		if (!q->hole)
			rc = objstore_put_vetted(t->objs, &q->shard, d->buf,
						 q->len, q->name, &q->created,
						 &batch,
						 t->remote ? &vet : NULL);
		if (rc)
			f->np--; /* nothing of it was made */
	}
	/* a full disk part way: the blocks before the one that found no
	 * room are made durable and committed, the rest is parked */
	if (rc == -ENOSPC && partial_ok(f, nshares, i - 1)) {
		f->partial = true;
		f->stop = i - 1;
		rc = 0;
	}
	if (!rc)
		rc = objstore_batch_finish(t->objs, &batch);
	objstore_batch_release(t->objs, &batch);
	if (!rc)
		count_blocks(t, f, nshares);
	/* a shared store: in the bucket before the commit names them, so
	 * that every node can read what this one commits (invariant 6) */
	if (!rc && tally_meta_shared(t))
		rc = ship(t, f);
	if (rc) {
		f->partial = false;
		log_msg(LOG_ERR,
			"flush %" PRIu64 " of inode %" PRIu64 " failed: %s",
			f->seq, f->ip->ino, strerror(-rc));
	} else if (f->partial) {
		rc = -ENOSPC;
		log_msg(LOG_ERR,
			"flush %" PRIu64 " of inode %" PRIu64
			": no room for block %" PRIu64
			" and on: %zu of %zu block(s) commit, the rest is kept",
			f->seq, f->ip->ino, f->blk[f->stop].idx, f->stop,
			f->nblk);
	}
	f->err = rc;
	flush_ready(t, f);
}

/* Whether a flush in flight holds block @idx of @ip. */
static bool inflight_has(struct inode *ip, uint64_t idx)
{
	struct flush *g;
	bool found = false;

	pthread_mutex_lock(&ip->io->mlock);
	for (g = ip->io->inflight; g && !found; g = g->next)
		found = dirty_search(g->blk, g->nblk, idx) != NULL;
	pthread_mutex_unlock(&ip->io->mlock);
	return found;
}

/*
 * Rotate: move @ip's dirty data (and what failed before) into a new
 * flush, plus @shares, and send it down the pipeline. @force: make a
 * flush (writing the inode row) even with nothing to commit. *seq
 * receives the flush's sequence number, or the inode's last one when
 * there was nothing to do. Exclusive rw held.
 */
int flush_rotate(struct tally *t, struct inode *ip,
		 const struct pending *shares, size_t nshares, bool force,
		 uint64_t *seq)
{
	struct flush *f, *old, *failed;
	uint64_t nblocks;
	size_t i, n;
	int rc;

	pthread_mutex_lock(&ip->io->mlock);
	failed = ip->io->failed;
	pthread_mutex_unlock(&ip->io->mlock);
	if (!ip->ndirty && !ip->truncated && !failed && !nshares && !force) {
		tally_lock(t);
		*seq = ip->last_seq;
		tally_unlock(t);
		return 0;
	}
	rc = dirty_map_load(t, ip);
	if (rc)
		return rc;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	/* failed blocks go again, unless newer data replaced them */
	pthread_mutex_lock(&ip->io->mlock);
	failed = ip->io->failed;
	ip->io->failed = NULL;
	pthread_mutex_unlock(&ip->io->mlock);
	for (old = failed; old && !rc; old = old->next) { /* newest first */
		for (i = 0; i < old->nblk && !rc; i++) {
			struct dirty *d = &old->blk[i], *nd;

			if (dirty_find(ip, d->idx) || inflight_has(ip, d->idx))
				continue;
			rc = dirty_get(t, ip, d->idx, true, &nd);
			if (!rc)
				dirty_put_bytes(nd, 0, d->buf, d->end);
		}
		if (old->truncated)
			dirty_trunc_note(t, ip, old->trunc_size);
	}
	if (rc) {
		/* keep them parked: nothing is lost, the error is returned */
		pthread_mutex_lock(&ip->io->mlock);
		for (old = failed; old->next; old = old->next)
			;
		old->next = ip->io->failed;
		ip->io->failed = failed;
		pthread_mutex_unlock(&ip->io->mlock);
		free(f);
		return rc;
	}
	while (failed) {
		old = failed;
		failed = failed->next;
		tally_lock(t);
		ip->nfailed--;
		t->parked--;
		ip->flight_blocks -= old->nblk;
		t->dirty_blocks -= old->nblk;
		inode_put(t, ip); /* the parked flush's reference */
		tally_unlock(t);
		flush_free(t, old);
	}
	f->t = t;
	f->ip = ip;
	f->size = ip->md.size;
	f->truncated = ip->truncated;
	f->trunc_size = ip->trunc_size;
	f->blk = ip->io->dirty;
	f->nblk = ip->ndirty;
	/* what the stream stores of each block (to EOF) is written out
	 * here, under rw: the flush's readers only read */
	nblocks = tally_blocks_for(t, f->size);
	for (i = 0; i < f->nblk; i++)
		if (f->blk[i].idx < nblocks)
			dirty_zero_to(&f->blk[i],
				      bytes_to_eof(t, f->size, f->blk[i].idx));
	n = f->nblk + nshares;
	f->p = calloc(n ? n : 1, sizeof(*f->p));
	if (!f->p) {
		free(f);
		return -ENOMEM;
	}
	ip->io->dirty = NULL;
	ip->io->dcap = 0;
	tally_lock(t);
	ip->truncated = false;
	ip->ndirty = 0;
	ip->refs++; /* held by the flush until finalized */
	ip->flight_blocks += f->nblk;
	tally_unlock(t);

	/* a permit and a sequence number: back-pressure happens here */
	pthread_mutex_lock(&t->fin_lock);
	while (t->pending >= t->max_pending)
		pthread_cond_wait(&t->fin_done, &t->fin_lock);
	t->pending++;
	f->seq = ++t->rotated_seq;
	pthread_mutex_unlock(&t->fin_lock);
	f->born_ns = metrics_clock();
	tally_lock(t);
	ip->last_seq = f->seq;
	tally_unlock(t);
	pthread_mutex_lock(&ip->io->mlock);
	f->next = ip->io->inflight;
	ip->io->inflight = f;
	pthread_mutex_unlock(&ip->io->mlock);
	*seq = f->seq;

	for (i = 0; i < nshares; i++)
		if (shares[i].idx < tally_blocks_for(t, f->size))
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
int flush_wait_progress(struct tally *t, uint64_t seq, double timeout,
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
		 * stream jobs, which take no inode tally_lock (a waiter may hold
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

int flush_wait(struct tally *t, uint64_t seq, double timeout)
{
	return flush_wait_progress(t, seq, timeout, NULL, 0);
}

/* Take (and clear) the error kept for the next fsync/close, if the flush
 * that failed had a sequence number up to @upto. */
int flush_take_err(struct tally *t, struct inode *ip, uint64_t upto)
{
	int rc = 0;

	tally_lock(t);
	if (ip->err && ip->err_seq <= upto) {
		rc = ip->err;
		ip->err = 0;
	}
	if (!rc && ip->lost)
		rc = -EIO; /* gone under this node: every sync fails */
	tally_unlock(t);
	return rc;
}

/*
 * The inode's allocation after flush @f (*alloc), from the map before it;
 * and room in the map, so that publishing it cannot fail.
 */
static int flush_alloc(struct tally *t, struct flush *f, uint64_t *alloc)
{
	struct inode *ip = f->ip;
	uint64_t tb = tally_blocks_for(t, f->trunc_size);
	int64_t delta = 0;
	size_t i;

	pthread_mutex_lock(&ip->io->mlock);
	if (dirty_map_reserve(ip, f->np)) {
		pthread_mutex_unlock(&ip->io->mlock);
		return -ENOMEM;
	}
	if (f->truncated)
		for (i = 0; i < ip->io->nmap; i++)
			if (ip->io->map[i].idx >= tb)
				delta -= ip->io->map[i].size;
	for (i = 0; i < f->np; i++) {
		struct meta_bref *r = dirty_map_find(ip, f->p[i].idx);

		if (r && !(f->truncated && f->p[i].idx >= tb))
			delta -= r->size;
		if (!f->p[i].hole)
			delta += f->p[i].len;
	}
	pthread_mutex_unlock(&ip->io->mlock);
	*alloc = (uint64_t)((int64_t)ip->dalloc + delta);
	return 0;
}

/*
 * Apply flush @f to the store (t->lock held, in the group's transaction).
 * *alloc receives the inode's allocation after @f. 1: the inode's row is
 * gone (a shared store: another node removed it), nothing was written.
 */
static int flush_apply(struct tally *t, struct flush *f, uint64_t *alloc)
{
	struct inode *ip = f->ip;
	uint64_t tb = tally_blocks_for(t, f->trunc_size);
	struct meta_inode md;
	struct meta_ver v;
	size_t i;
	int rc;

	rc = flush_alloc(t, f, alloc);
	if (rc)
		return rc;
	md = ip->md;
	v = inode_ver(t, ip);
	md.size = f->csize;
	md.alloc = *alloc;
	inode_md_written(t, ip);
	if (tally_meta_shared(t)) {
		uint32_t nlink;

		/* first, and answered: the row is held to the commit. A
		 * removal on another node that came first (this node's
		 * hold went at the release, before this flush's commit)
		 * left no row, and the block rows would name an inode
		 * that is gone: nothing is written. One that comes after
		 * waits for this commit and drops what it wrote. Neither
		 * the link count nor a field this node did not change is
		 * its to write. */
		rc = meta_inode_update(t->meta, &v, &md, 0,
				       META_F_SIZE | META_F_ROW | ip->mdirty,
				       &nlink);
		if (rc)
			return rc == -ENOENT ? 1 : rc;
	}
	/* a shrink first: blocks written after it come back below */
	if (f->truncated)
		rc = meta_blocks_drop(t->meta, &v, ip->md.ino, tb);
	for (i = 0; i < f->np && !rc; i++) {
		struct pending *q = &f->p[i];
		bool known = false; /* its row is there (before this) */

		if (q->shared && !q->hole) {
			/* the source holds a reference: the row must exist */
			rc = meta_obj_exists(t->meta, q->name);
			rc = rc == 1 ? 0 : (rc ? rc : -EIO);
		} else if (!q->hole) {
			rc = meta_obj_exists(t->meta, q->name);
			known = rc == 1;
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
			rc = meta_block_set_gen(t->meta, &v, ip->md.ino, q->idx,
						q->hole ? NULL : q->name,
						q->shard, q->len,
						q->fresh ? q->gen : 0, &ref);
			if (!rc && !q->hole)
				q->shard = ref.shard;
			/* a copy written for a row that says it was evicted
			 * (the bucket's bytes compared, remote_vet()) is
			 * counted and evictable again; its stat cancels an
			 * eviction's doom (a shared store counts the disk) */
			if (!rc && known && q->created && t->remote &&
			    !tally_meta_shared(t)) {
				off_t sz;

				if (objstore_stat(t->objs, q->shard, q->name,
						  &sz) == 0)
					rc = meta_remote_set_cached(
						t->meta, q->name, true);
			}
			/* put there now, or the row it found in the stream
			 * is still there: recorded if the row is of the
			 * generation shipped (else it stays queued, shipped
			 * by the loop under the row's own key) */
			if (!rc && (q->put || (q->shipped && known))) {
				rc = meta_remote_shipped(t->meta, q->name,
							 q->gen);
				rc = rc < 0 ? rc : 0;
			}
		}
	}
	if (rc || tally_meta_shared(t))
		return rc;
	return meta_inode_put(t->meta, &v, &md);
}

bool flush_in_flight(struct tally *t, struct inode *ip)
{
	bool any;

	(void)t;
	/* finalize_group() applies a flush and takes it off the list in
	 * one hold of t->lock: one listed now has not written the row */
	pthread_mutex_lock(&ip->io->mlock);
	any = ip->io->inflight != NULL;
	pthread_mutex_unlock(&ip->io->mlock);
	return any;
}

/* Unlink @f from its inode's in-flight list (mlock held). */
static void inflight_remove(struct flush *f)
{
	struct flush **pp;

	for (pp = &f->ip->io->inflight; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			break;
		}
}

static void flush_unlist(struct flush *f)
{
	pthread_mutex_lock(&f->ip->io->mlock);
	inflight_remove(f);
	pthread_mutex_unlock(&f->ip->io->mlock);
}

/* After the commit: the map mirrors the store (t->lock held). */
static void flush_publish(struct tally *t, struct flush *f, uint64_t alloc)
{
	struct inode *ip = f->ip;
	size_t i;

	pthread_mutex_lock(&ip->io->mlock);
	if (f->truncated)
		while (ip->io->nmap &&
		       ip->io->map[ip->io->nmap - 1].idx >=
			       tally_blocks_for(t, f->trunc_size))
			ip->io->nmap--;
	for (i = 0; i < f->np; i++) {
		struct meta_bref ref;

		if (f->p[i].hole) {
			dirty_map_set(ip, f->p[i].idx, NULL);
			continue;
		}
		memset(&ref, 0, sizeof(ref));
		ref.idx = f->p[i].idx;
		ref.shard = f->p[i].shard;
		ref.size = f->p[i].len;
		snprintf(ref.name, sizeof(ref.name), "%s", f->p[i].name);
		if (dirty_map_set(ip, f->p[i].idx, &ref)) {
			/* out of memory: reload the map when next needed */
			free(ip->io->map);
			ip->io->map = NULL;
			ip->io->nmap = ip->io->mapcap = 0;
			ip->io->map_loaded = false;
			break;
		}
	}
	inflight_remove(f);
	pthread_mutex_unlock(&ip->io->mlock);
	ip->dsize = f->csize;
	ip->dalloc = alloc;
	ip->md.alloc = alloc;
}

/* A flush that could not be committed keeps its data (invariant 3). */
static void flush_park(struct tally *t, struct flush *f, int err)
{
	struct inode *ip = f->ip;

	pthread_mutex_lock(&ip->io->mlock);
	inflight_remove(f);
	f->next = ip->io->failed;
	ip->io->failed = f;
	pthread_mutex_unlock(&ip->io->mlock);
	ip->nfailed++;
	t->parked++;
	if (err == -ENOSPC)
		t->enospc_parks++;
	/* the slot keeps the oldest failure not reported yet */
	if (!ip->err)
		ip->err_seq = f->seq;
	ip->err = err;
	t->commit_errors++;
}

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
/* Ship the flushes of @g again (a shared store whose session was lost;
 * no lock held): a flush that cannot fails. */
static void reship(struct tally *t, struct flush **g, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int rc;

		if (g[i]->err && !g[i]->partial)
			continue;
		rc = ship(t, g[i]);
		if (rc) {
			g[i]->err = rc;
			g[i]->partial = false;
		}
	}
}

/*
 * The size the commit of partial flush @f writes (t->lock held): what
 * was committed before (less a truncation) or up to the block that
 * found no room, whichever is more, within the file's size. The blocks
 * below it that @f does not commit are committed already, or were
 * never written (holes).
 */
static uint64_t partial_size(struct tally *t, const struct flush *f)
{
	uint64_t base = f->ip->dsize, upto = f->blk[f->stop].idx * t->bs;

	if (f->truncated && f->trunc_size < base)
		base = f->trunc_size;
	if (upto < base)
		upto = base;
	return upto < f->size ? upto : f->size;
}

/*
 * The unwritten blocks of partial flush @f as a flush of their own, to
 * be parked when @f commits (t->lock held): its buffers are @f's, not
 * copied (flush_split() hands them over). NULL without memory.
 */
static struct flush *partial_rest(struct flush *f)
{
	struct flush *rest = malloc(sizeof(*rest));

	if (!rest)
		return NULL;
	*rest = (struct flush){ .seq = f->seq,
				.t = f->t,
				.ip = f->ip,
				.size = f->size,
				.csize = f->size,
				.nblk = f->nblk - f->stop,
				.err = f->err,
				.streamed = true };
	rest->blk = malloc(rest->nblk * sizeof(*rest->blk));
	if (!rest->blk) {
		free(rest);
		return NULL;
	}
	memcpy(rest->blk, f->blk + f->stop, rest->nblk * sizeof(*rest->blk));
	return rest;
}

/*
 * Partial flush @f committed: its unwritten blocks park as @rest, with
 * their own reference to the inode, then @f is published (t->lock
 * held). Readers find those blocks in @f (in flight) until they are in
 * @rest (parked), so no read falls back to older data meanwhile.
 */
static void flush_split(struct tally *t, struct flush *f, struct flush *rest,
			uint64_t alloc)
{
	f->ip->refs++; /* the parked rest's */
	flush_park(t, rest, rest->err);
	flush_publish(t, f, alloc);
	f->nblk = f->stop; /* no reader sees @f any more */
}

static void finalize_group(struct tally *t, struct flush **g, size_t n)
{
	uint64_t alloc[GROUP_MAX];
	bool parked[GROUP_MAX], gone[GROUP_MAX];
	struct flush *rest[GROUP_MAX];
	unsigned attempt = 0;
	bool reshipped = false;
	size_t i;
	int rc;

	tally_lock(t);
	for (i = 0; i < n; i++) {
		struct flush *f = g[i];

		rest[i] = NULL;
		f->csize = f->size;
		if (f->partial && !f->ip->freed && !f->ip->nfailed)
			rest[i] = partial_rest(f);
		f->partial = rest[i] != NULL;
		if (f->partial)
			f->csize = partial_size(t, f);
	}
	for (;;) {
		memset(gone, 0, sizeof(gone));
		rc = meta_begin(t->meta);
		/* a shared store: this node's session holds until the
		 * commit (what a prune took for dead ships again first) */
		if (!rc && tally_meta_shared(t))
			rc = meta_session_hold(t->meta, t->node_id);
		for (i = 0; i < n && !rc; i++) {
			alloc[i] = 0;
			if ((g[i]->err && !g[i]->partial) || g[i]->ip->freed ||
			    g[i]->ip->nfailed)
				continue;
			rc = flush_apply(t, g[i], &alloc[i]);
			gone[i] = rc == 1;
			rc = rc == 1 ? 0 : rc;
		}
		/* a shared store: every commit is durable, and one row
		 * that every node's commits wrote would serialise them */
		if (!rc && !tally_meta_shared(t))
			rc = meta_config_set(t->meta, "durable_seq",
					     (int64_t)g[n - 1]->seq);
		rc = tally_txn_end(t, rc);
		if (rc == -ESTALE && !reshipped) {
			/* GC took this node for dead (its report too old) and
			 * may have collected what it shipped: a new session,
			 * the objects shipped again, then the commit */
			reshipped = true;
			rc = t->up->session_renew(t);
			tally_unlock(t);
			if (!rc)
				reship(t, g, n);
			tally_lock(t);
			if (!rc)
				continue;
		}
		if (rc != -EDEADLK)
			break;
		/* a shared store's transaction that may pass: again (the
		 * apply changes nothing in memory) */
		tally_unlock(t);
		if (!tally_retry(t, &rc, &attempt)) {
			tally_lock(t);
			break;
		}
		tally_lock(t);
	}
	for (i = 0; i < n; i++) {
		struct flush *f = g[i];

		parked[i] = false;
		if (f->ip->freed || (gone[i] && !rc)) {
			/* freed here, or (a shared store) by another node:
			 * its objects made for nothing */
			if (gone[i] && !rc)
				log_msg(LOG_WARNING,
					"inode %" PRIu64 " was removed by "
					"another node before its flush "
					"committed: %zu block(s) dropped",
					f->ip->ino, f->np);
			/* still open here: the hold that kept it went (the
			 * session expired), and what was written is lost:
			 * the fsync or close that waits says so */
			if (gone[i] && !rc && f->ip->opens && !f->ip->freed) {
				f->ip->lost = true;
				if (!f->ip->err)
					f->ip->err_seq = f->seq;
				f->ip->err = -EIO;
			}
			flush_unlist(f);
			flush_discard_objects(t, f);
		} else if ((f->err && !f->partial) || rc || f->ip->nfailed) {
			/* an inode with a parked flush commits nothing newer
			 * until the parked data went again: the retry would
			 * otherwise bring back older blocks */
			flush_park(t, f,
				   f->err	? f->err
				   : rc		? rc
				   : f->ip->err ? f->ip->err
						: -EIO);
			parked[i] = true; /* keeps its buffers and reference */
		} else if (f->partial) {
			flush_split(t, f, rest[i], alloc[i]);
			rest[i] = NULL;
			metrics_flush_done(t->metrics, f->born_ns);
		} else {
			flush_publish(t, f, alloc[i]);
			metrics_flush_done(t->metrics, f->born_ns);
		}
		if (rest[i]) { /* not used: @f keeps the buffers */
			free(rest[i]->blk);
			free(rest[i]);
		}
		if (parked[i])
			continue;
		f->ip->flight_blocks -= f->nblk;
		t->dirty_blocks -= f->nblk;
	}
	for (i = 0; i < n; i++)
		if (!parked[i])
			inode_put(t, g[i]->ip);
	pthread_cond_broadcast(&t->space);
	tally_unlock(t);
	if (t->remote && !rc)
		t->up->remote_kick(t->remote); /* new objects may be queued */
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
void *flush_finalizer(void *arg)
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
