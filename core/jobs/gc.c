/* SPDX-License-Identifier: MIT */
/*
 * GC cycles and online repair.
 *
 * DESIGN NOTES
 *
 * The live set is the object table: a row exists exactly while block
 * references name the object (core/meta/meta_db.c, invariant 1). Objects of
 * unlinked-but-open files keep their rows until the last close. Objects
 * written by flushes not yet finalized have no row yet: they are marked
 * like leaks, but
 *  1. a mark must be older than the grace period before its object may
 *     be deleted (default GC_DEFAULT_GRACE; marks persist in gc_marks, so
 *     a remount does not restart the clock), and
 *  2. every deletion re-checks, under the metadata lock (which the flush
 *     finalizer holds while it commits), that no row names the object
 *     and that no pin, node report or move names it (those added since
 *     the cycle read the protected names count too);
 *     the file is unlinked after that hold (a batch at a time, several
 *     unlinks at once), and a commit that checks the file under the lock
 *     in between cancels the unlink or waits for it to end (see doomed
 *     files in core/objects/objstore.c), so the check that the commit trusts
 *     stays true, and
 *  3. a flush whose object disappeared before its commit writes it again
 *     from its buffer (core/fs/tally.c, invariant 2): even a GC with a grace
 *     of 0 racing a write loses nothing.
 * GC never trusts a stale listing: the listing only proposes candidates.
 *
 * Shards: a file is live where its row says the object is. A copy in any
 * other shard (left by an interrupted rebalance move, core/jobs/shard.c) is
 * unreferenced, unless the object is protected (node reports, pins, a
 * move in progress), which keeps it in every shard. Marks are kept per
 * (object, shard) under a key: the name for shard 0, "NAME@N" for shard
 * N. A shard that is unreachable is not listed: nothing in it is marked
 * or deleted because it cannot be seen.
 *
 * Drift (stored count != references) is reported, loudly when a count is
 * too low; it never causes a deletion. gc_repair() rebuilds the counts.
 * The check reads chunks of objects by id, each in one statement under
 * its own hold: one consistent snapshot of the chunk (a count and its
 * references change in one transaction), so a change made between two
 * chunks is never reported as drift. The references of the objects of a
 * chunk are counted through the index extents_obj (core/meta/meta_db_schema.c): extents is
 * keyed by inode, and without it every chunk would read all of it. The
 * figures that chose it (2 vCPUs, 1M objects, 1.2M references): the check
 * in one hold held the lock 1.4-2.2 s, and a writer stalled as long; in
 * chunks, holds of 8-15 ms, a writer's longest stall 13-35 ms. The index
 * costs about 15 bytes a reference, 0.5 s to build on the first open, and
 * in SQLite 10-50 us more per commit that adds or drops references;
 * through a mount that was lost in the noise (4 KiB files written, rm -rf:
 * within 10 %). Without the index, a chunk by a range of object ids would
 * read every reference, and a chunk by inodes would not see an object's
 * count and all its references in one snapshot.
 *
 * Holds: a mutex is not fair, so the cycle pauses after each hold
 * (PAUSE_NS): taken back at once, batch after batch, it starved the file
 * operations waiting for it (a writer stalled 0.2-1.6 s with 10 ms holds).
 *
 * Scale: the listing collects the unreferenced keys without the lock;
 * they are sorted and merged with the marks read in key order; marks are
 * written, re-checks made, marks deleted and drift checked in batches
 * that hold the lock for about HOLD_MS each (the longest hold is
 * reported).
 *
 * Locks: the metadata lock (tally_meta_read/txn) is taken for short batches
 * only; the listing of the object files and the unlinks run without it.
 */
#include "core/jobs/gc.h"
#include "core/cluster/cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/hash.h"
#include "core/util/array.h"
#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/util/progress.h"
#include "core/objects/reap.h"
#include "core/remote/remote.h"
#include "core/fs/tally.h"
#include "core/util/metrics.h"

#define HOLD_MS 10.0	  /* longest hold of the metadata lock, about */
#define MARK_BATCH 8192	  /* marks written per transaction, at most */
#define SCAN_BATCH 8192	  /* marks read per hold of the lock */
#define SWEEP_BATCH 4096  /* deletions re-checked per hold of the lock */
#define CHECK_BATCH 2048  /* objects per chunk of the drift check, first */
#define CHECK_MIN 64	  /* and at least, however long a chunk takes */
#define CHECK_MAX 65536	  /* and at most */
#define UNLINK_THREADS 16 /* unlinks at once */
#define PAUSE_NS 1000000  /* after each hold of the lock: its waiters' turn */

#define KEY_MAX OBJSTORE_KEY_MAX

struct names {
	char (*v)[KEY_MAX];
	size_t n, cap;
};

static int names_add(struct names *l, const char *name)
{
	if (array_reserve(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return -ENOMEM;
	snprintf(l->v[l->n++], KEY_MAX, "%s", name);
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static bool names_has(const struct names *l, const char *name)
{
	return l->n && bsearch(name, l->v, l->n, sizeof(*l->v), cmp_name);
}

/* What a cycle does with an unreferenced object file. */
enum {
	U_NEW,	      /* no mark: mark it now */
	U_NEW_DOOMED, /* no mark, and a grace of 0: delete it */
	U_MARKED,     /* marked, not long enough */
	U_DOOMED,     /* marked long enough: delete it and its mark */
};

struct cycle {
	struct tally *t;
	const struct gc_opts *o;
	struct gc_report *r;
	int64_t now, grace;
	struct names live;    /* keys of the object rows, sorted */
	struct names protect; /* names kept in every shard, sorted */
	uint32_t shard;	      /* being listed */
	struct names unref;   /* keys of the unreferenced files, sorted */
	unsigned char *state; /* of each unreferenced file: U_* */
	size_t at;	      /* merge of the marks: next in unref */
	char last[KEY_MAX];   /* merge of the marks: the last one read */
	struct timespec held; /* since when the cycle holds the lock */
	double hold_ms;	      /* how long the last hold lasted */
	size_t i;	      /* a batch loop's next index */
	bool blocked;	      /* put_marks(): nothing is deleted */
	int64_t from;	      /* the drift check's next object id */
	unsigned chunk;	      /* the drift check's objects per hold */
	int64_t last_id;      /* the scan of the rows: the last id read */
	size_t *todo;	      /* sweep(): indexes in unref to delete */
	size_t ntodo;
	int64_t stale_after; /* reports older than this are pruned */
	const struct meta_gc_event *event; /* log_batch()'s row */
	struct names unmark;		   /* marks to clear */
	/* progress: object files listed, then deletions */
	struct progress_job *pj;
};

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A mutex is not fair: a cycle that took the lock back at once, batch
 * after batch, could starve the file operations waiting for it. */
static void pause_after_hold(void)
{
	nanosleep(&(struct timespec){ .tv_nsec = PAUSE_NS }, NULL);
}

/* One short batch of the cycle under the metadata lock. */
typedef int batch_fn(struct cycle *c, struct meta *m);

struct batch {
	struct cycle *c;
	batch_fn *fn, *then;
};

static int batch_run(struct meta *m, void *ctx)
{
	struct batch *b = ctx;

	clock_gettime(CLOCK_MONOTONIC, &b->c->held);
	return b->fn(b->c, m);
}

static int batch_then(struct meta *m, void *ctx)
{
	struct batch *b = ctx;

	return b->then(b->c, m);
}

/*
 * Run @fn under one hold of the metadata lock: in a transaction with
 * @txn (then @then after its commit, in the same hold), else as it is.
 * The hold is timed (longest_hold_ms, c->hold_ms) and followed by a
 * pause.
 */
static int held(struct cycle *c, bool txn, batch_fn *fn, batch_fn *then)
{
	struct batch b = { .c = c, .fn = fn, .then = then };
	int rc;

	rc = txn ? tally_meta_txn_then(c->t, batch_run,
				       then ? batch_then : NULL, &b)
		 : tally_meta_read(c->t, batch_run, &b);
	c->hold_ms = ms_since(&c->held);
	if (c->hold_ms > c->r->longest_hold_ms)
		c->r->longest_hold_ms = c->hold_ms;
	pause_after_hold();
	return rc;
}

/* Whether the hold of the lock has lasted long enough for a batch (looked
 * at every 64 @steps). */
static bool held_enough(const struct cycle *c, size_t steps)
{
	return steps % 64 == 63 && ms_since(&c->held) >= HOLD_MS;
}

static int add_row(void *ctx, int64_t id, const char *name, uint32_t shard,
		   int64_t refcount)
{
	struct cycle *c = ctx;

	char key[KEY_MAX];

	(void)id;
	(void)refcount;
	objstore_key(key, name, shard);
	return names_add(&c->live, key);
}

static int add_name(void *ctx, const char *name)
{
	struct cycle *c = ctx;

	return names_add(&c->protect, name);
}

/* Whether GC key @key is live: its row, or a protected name. */
static bool key_live(const struct cycle *c, const char *key)
{
	char name[OBJNAME_MAX];

	if (names_has(&c->live, key))
		return true;
	objstore_key_split(key, name);
	return names_has(&c->protect, name);
}

/* The listing runs without the lock: it only collects candidates. */
static int list_file(void *ctx, const char *name, off_t size)
{
	struct cycle *c = ctx;
	char key[KEY_MAX];

	c->r->checked++;
	progress_add(c->pj, 1);
	objstore_key(key, name, c->shard);
	if (key_live(c, key)) {
		c->r->live++;
		return 0;
	}
	c->r->unreferenced++;
	c->r->unreferenced_bytes += size > 0 ? (uint64_t)size : 0;
	return names_add(&c->unref, key);
}

/* One mark, in name order: the state of its file, or clear it if live. */
static int merge_mark(void *ctx, const char *name, int64_t since)
{
	struct cycle *c = ctx;
	int cmp = 1;

	snprintf(c->last, sizeof(c->last), "%s", name);
	while (c->at < c->unref.n &&
	       (cmp = strcmp(c->unref.v[c->at], name)) < 0)
		c->at++;
	if (c->at < c->unref.n && cmp == 0) {
		c->state[c->at++] = c->now - since >= c->grace ? U_DOOMED
							       : U_MARKED;
		return 0;
	}
	return key_live(c, name) ? names_add(&c->unmark, name) : 0;
}

static int marks_batch(struct cycle *c, struct meta *m)
{
	return meta_marks_after(m, c->last, SCAN_BATCH, merge_mark, c);
}

/*
 * The marks of the unreferenced files, in one ordered pass over the marks
 * (both lists sorted by key), a short hold of the lock per SCAN_BATCH.
 */
static int merge_marks(struct cycle *c)
{
	size_t i;
	int rc;

	c->state = malloc(c->unref.n ? c->unref.n : 1);
	if (!c->state)
		return -ENOMEM;
	/* a mark made now is old enough for a grace of 0 only */
	for (i = 0; i < c->unref.n; i++)
		c->state[i] = c->grace <= 0 ? U_NEW_DOOMED : U_NEW;
	c->at = 0;
	c->last[0] = 0; /* before every name */
	do
		rc = held(c, false, marks_batch, NULL);
	while (rc == SCAN_BATCH);
	return rc < 0 ? rc : 0;
}

static int count_drift(void *ctx, const struct meta_check *mc)
{
	struct gc_report *r = ctx;

	if (mc->id == 0) {
		/* read in the snapshot of its chunk: damage, not a race */
		log_msg(LOG_ERR,
			"gc: %" PRId64 " reference(s) name an object with "
			"no row (run tallyfsck)",
			mc->truth);
		return 0;
	}
	if (mc->stored == mc->truth)
		return 0;
	if (mc->stored < mc->truth) {
		r->drift_under++;
		log_msg(LOG_ERR,
			"gc: object '%s' is under-counted: count %" PRId64
			", %" PRId64 " references (run repair)",
			mc->name, mc->stored, mc->truth);
	} else {
		r->drift_over++;
	}
	return 0;
}

/*
 * Drift, in chunks of objects by id: a chunk (its objects' counts and the
 * references to their ids) is read in one statement under one hold, a
 * consistent snapshot of it, since a count and its references change in
 * one transaction. A change between two chunks is seen whole by the
 * chunk of each object it touches: no drift is reported that was not
 * there. The chunk is sized to hold the lock about HOLD_MS: halved after
 * a longer hold, doubled after a hold of less than a quarter of it.
 */
static int drift_batch(struct cycle *c, struct meta *m)
{
	return meta_check_chunk(m, c->from, c->chunk, &c->from, count_drift,
				c->r);
}

static int check_drift(struct cycle *c)
{
	int rc;

	c->chunk = c->o->check_batch ? c->o->check_batch : CHECK_BATCH;
	c->from = INT64_MIN;
	for (;;) {
		rc = held(c, false, drift_batch, NULL);
		if (rc != 1)
			break;
		if (c->o->chunk_hook)
			c->o->chunk_hook(c->o->hook_arg);
		if (c->o->check_batch)
			continue;
		if (c->hold_ms > HOLD_MS && c->chunk > CHECK_MIN)
			c->chunk /= 2;
		else if (c->hold_ms < HOLD_MS / 4 && c->chunk < CHECK_MAX)
			c->chunk *= 2;
	}
	return rc;
}

/* Whether unreferenced file @i gets a mark now (blocked: none deleted). */
static bool to_mark(const struct cycle *c, size_t i, bool blocked)
{
	return c->state[i] == U_NEW || (blocked && c->state[i] == U_NEW_DOOMED);
}

static int marks_put_batch(struct cycle *c, struct meta *m)
{
	size_t n = 0, steps = 0;
	int rc = 0;

	for (; c->i < c->unref.n && !rc && n < MARK_BATCH &&
	       !held_enough(c, steps++);
	     c->i++) {
		if (!to_mark(c, c->i, c->blocked))
			continue;
		/* (the key says the shard; the column is kept 0) */
		rc = meta_mark_put(m, c->unref.v[c->i], 0, c->now);
		n++;
	}
	return rc;
}

/* Write the new marks in short transactions, in key order. */
static int put_marks(struct cycle *c, bool blocked)
{
	int rc = 0;

	c->i = 0;
	c->blocked = blocked;
	while (c->i < c->unref.n && !rc)
		rc = held(c, true, marks_put_batch, NULL);
	return rc;
}

static int marks_clear_batch(struct cycle *c, struct meta *m)
{
	size_t steps = 0;
	int rc = 0;

	for (; c->i < c->unmark.n && !rc && !held_enough(c, steps++); c->i++)
		rc = meta_mark_del(m, c->unmark.v[c->i]);
	return rc;
}

/* Clear the marks of objects referenced again. */
static int clear_marks(struct cycle *c)
{
	int rc = 0;

	c->i = 0;
	while (c->i < c->unmark.n && !rc)
		rc = held(c, true, marks_clear_batch, NULL);
	return rc;
}

static bool doomed(const struct cycle *c, size_t i)
{
	return c->state[i] == U_DOOMED || c->state[i] == U_NEW_DOOMED;
}

struct unlinker {
	struct cycle *c;
	const size_t *todo; /* indexes in c->unref */
	size_t n;
	_Atomic size_t next;
	_Atomic uint64_t collected, kept, bytes;
};

static void *unlink_some(void *arg)
{
	struct unlinker *u = arg;
	struct objstore *os = tally_objstore(u->c->t);
	size_t j;

	while ((j = atomic_fetch_add(&u->next, 1)) < u->n) {
		char name[OBJNAME_MAX];
		uint32_t shard =
			objstore_key_split(u->c->unref.v[u->todo[j]], name);
		off_t size = 0;
		int rc = reap_unlink_doomed(os, shard, name, &size);

		if (rc == 0) {
			atomic_fetch_add(&u->collected, 1);
			atomic_fetch_add(&u->bytes, (uint64_t)size);
		} else if (rc == 1) {
			atomic_fetch_add(&u->kept, 1); /* a commit checked it */
		}
		progress_add(u->c->pj, 1);
	}
	return NULL;
}

/*
 * Unlink the doomed files @todo (indexes in c->unref), UNLINK_THREADS at a
 * time: an unlink mostly waits for the disk (a synchronous discard on a
 * filesystem mounted with -o discard), and they do not depend on each
 * other.
 */
static void unlink_batch(struct cycle *c, const size_t *todo, size_t n)
{
	struct unlinker u = { .c = c, .todo = todo, .n = n };
	pthread_t th[UNLINK_THREADS];
	size_t k, started = 0;

	for (k = 1; k < UNLINK_THREADS && k * 8 < n; k++)
		if (pthread_create(&th[started], NULL, unlink_some, &u) == 0)
			started++;
	unlink_some(&u);
	for (k = 0; k < started; k++)
		pthread_join(th[k], NULL);
	c->r->collected += atomic_load(&u.collected);
	c->r->bytes_freed += atomic_load(&u.bytes);
	c->r->preserved += atomic_load(&u.kept);
}

/* A batch of doomed files re-checked, and their marks deleted. */
static int sweep_batch(struct cycle *c, struct meta *m)
{
	size_t steps = 0;
	int rc = 0;

	for (; c->i < c->unref.n && !rc && c->ntodo < SWEEP_BATCH &&
	       !held_enough(c, steps++);
	     c->i++) {
		const char *key = c->unref.v[c->i];
		char name[OBJNAME_MAX];
		uint32_t shard;

		if (!doomed(c, c->i))
			continue;
		shard = objstore_key_split(key, name);
		/* named again, or protected since the cycle read */
		rc = reap_copy_free(m, name, 0, shard, 0);
		if (rc == 0) {
			c->r->preserved++;
			progress_add(c->pj, 1);
			continue;
		}
		if (rc < 0)
			break;
		rc = 0;
		if (c->state[c->i] == U_DOOMED)
			rc = meta_mark_del(m, key);
		c->todo[c->ntodo++] = c->i;
	}
	return rc;
}

/* After its commit, in the hold that saw no row: from now on a check of
 * each file cancels its deletion. */
static int sweep_doom(struct cycle *c, struct meta *m)
{
	struct objstore *os = tally_objstore(c->t);
	size_t j, k;
	int rc = 0;

	for (j = 0, k = 0; j < c->ntodo; j++) {
		char name[OBJNAME_MAX];
		uint32_t shard =
			objstore_key_split(c->unref.v[c->todo[j]], name);

		rc = reap_doom(m, os, name, shard);
		if (rc < 0)
			break;
		if (rc == 1)
			c->todo[k++] = c->todo[j];
		else
			c->r->preserved++;
		rc = 0;
	}
	c->ntodo = k;
	return rc;
}

/*
 * Delete the doomed objects: a batch is re-checked under the lock (no row
 * names the object in that shard, and no pin, node report or move names
 * it: those made since the cycle read them count), its marks deleted and
 * its files handed to reap_doom() in the same hold; the files are
 * unlinked after the lock is released. A flush or a move that checks one
 * of them under the lock meanwhile cancels its deletion (core/objects/objstore.c,
 * doomed files).
 */
static int sweep(struct cycle *c)
{
	int rc = 0;

	c->todo = malloc(SWEEP_BATCH * sizeof(*c->todo));
	if (!c->todo)
		return -ENOMEM;
	c->i = 0;
	while (c->i < c->unref.n && !rc) {
		c->ntodo = 0;
		rc = held(c, true, sweep_batch, sweep_doom);
		/* the commits that left these files unnamed are durable
		 * before any of them goes (a doomed file stays doomed) */
		if (!rc && c->ntodo)
			rc = tally_meta_sync(c->t);
		if (rc)
			c->ntodo = 0;
		if (c->ntodo && c->o->unlink_hook)
			c->o->unlink_hook(c->o->hook_arg);
		unlink_batch(c, c->todo, c->ntodo);
	}
	free(c->todo);
	c->todo = NULL;
	return rc;
}

/* The start of a cycle: stale reports pruned, the nodes counted, and
 * the protected names (every node's active set, every pin, every move)
 * read, in one transaction. */
static int start_batch(struct cycle *c, struct meta *m)
{
	int rc = 0;

	if (!c->o->dry_run)
		rc = meta_nodes_prune(m, c->now - c->stale_after,
				      &c->r->stale_nodes);
	if (!rc)
		rc = meta_nodes_count(m, &c->r->nodes_reporting);
	/* a node of a shared store that has not reported yet may have
	 * objects in flight that nothing else protects */
	if (!rc)
		rc = meta_sessions_unreported(m, &c->r->unreported);
	if (!rc)
		rc = meta_protected_names(m, add_name, c);
	return rc;
}

static int rows_batch(struct cycle *c, struct meta *m)
{
	return meta_objects_after(m, c->last_id, SCAN_BATCH, &c->last_id,
				  add_row, c);
}

static int log_batch(struct cycle *c, struct meta *m)
{
	return meta_gc_log_put(m, c->event);
}

static int read_now(struct meta *m, void *ctx)
{
	return meta_now(m, ctx);
}

/* The metrics of a cycle that ran to the end: what it collected, and
 * what it left unreferenced (in its grace period, kept by a commit that
 * checked it, or all of it in a dry run). */
static void count_cycle(struct tally *t, const struct gc_report *r)
{
	struct metrics *m = tally_metrics(t);

	if (!r->dry_run) {
		metrics_add(m, METRICS_GC_RUNS, 1);
		metrics_add(m, METRICS_GC_COLLECTED, r->collected);
		metrics_add(m, METRICS_GC_FREED_BYTES, r->bytes_freed);
	}
	metrics_set(m, METRICS_GC_RECLAIMABLE_OBJECTS,
		    r->preserved + (r->dry_run ? r->collected : 0));
	metrics_set(m, METRICS_GC_RECLAIMABLE_BYTES,
		    r->unreferenced_bytes > r->bytes_freed
			    ? r->unreferenced_bytes - r->bytes_freed
			    : 0);
}

int gc_run(struct tally *t, const struct gc_opts *o, struct gc_report *r)
{
	struct cycle c = { .t = t, .o = o, .r = r };
	struct meta_gc_event e;
	struct timespec t0;
	int64_t stale_after, node;
	unsigned min_nodes;
	size_t i, ndoomed = 0;
	bool sweeping;
	int rc;

	memset(r, 0, sizeof(*r));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r->dry_run = o->dry_run;
	/* the store's clock: the reports' times and the marks of other
	 * nodes' cycles are read off it */
	c.grace = o->grace < 0 ? GC_DEFAULT_GRACE : o->grace;
	tally_gc_settings(t, &stale_after, &min_nodes, &node);
	c.pj = progress_begin(tally_progress(t), "gc", "objects", 0);
	rc = tally_meta_read(t, read_now, &c.now);
	if (rc)
		goto out;

	/* our own report first, then the others' that are fresh enough */
	rc = tally_report(t);
	if (rc)
		goto out;
	c.stale_after = stale_after;
	rc = held(&c, true, start_batch, NULL);
	if (rc)
		goto out;
	if (o->protected_hook)
		o->protected_hook(o->hook_arg);
	/* the rows by id in short holds: a row added meanwhile makes its
	 * object a candidate, which the re-check before a deletion keeps */
	do
		rc = held(&c, false, rows_batch, NULL);
	while (rc == SCAN_BATCH);
	if (rc < 0)
		goto out;
	rc = 0;
	if (r->nodes_reporting < min_nodes) {
		r->blocked = true;
		log_msg(LOG_WARNING,
			"gc: %" PRIu64 " node(s) reported, %u "
			"needed: nothing is collected",
			r->nodes_reporting, min_nodes);
	}
	if (r->unreported) {
		r->blocked = true;
		log_msg(LOG_WARNING,
			"gc: %" PRIu64 " node(s) have not reported yet: "
			"nothing is collected",
			r->unreported);
	}
	if (c.live.n)
		qsort(c.live.v, c.live.n, sizeof(*c.live.v), cmp_name);
	if (c.protect.n)
		qsort(c.protect.v, c.protect.n, sizeof(*c.protect.v), cmp_name);
	/* an estimate: the files are about the live objects */
	progress_set_total(c.pj, c.live.n);
	for (c.shard = 0; c.shard < objstore_nshards(tally_objstore(t));
	     c.shard++) {
		struct objstore *os = tally_objstore(t);

		if (!objstore_shard_attached(os, c.shard) ||
		    objstore_shard_check(os, c.shard) != 0)
			continue; /* unreachable: nothing decided there */
		rc = objstore_list_names(os, c.shard, list_file, &c);
		if (rc)
			goto out;
	}
	if (c.unref.n)
		qsort(c.unref.v, c.unref.n, sizeof(*c.unref.v), cmp_name);
	rc = merge_marks(&c);
	if (rc)
		goto out;
	for (i = 0; i < c.unref.n; i++)
		if (doomed(&c, i))
			ndoomed++;
		else
			r->preserved++;
	sweeping = !o->dry_run && !r->blocked;
	progress_set_total(c.pj, r->checked + (sweeping ? ndoomed : 0));
	rc = check_drift(&c);
	if (rc)
		goto out;
	if (o->dry_run) {
		r->collected = r->blocked ? 0 : ndoomed;
	} else if (r->blocked) {
		r->preserved += ndoomed;
		rc = put_marks(&c, true);
		if (rc)
			goto out;
	} else {
		rc = put_marks(&c, false);
		if (!rc)
			rc = clear_marks(&c);
		if (!rc)
			rc = sweep(&c);
		if (rc)
			goto out;
	}
	/* the bucket's keys too, with the same grace */
	if (tally_remote(t) && !r->blocked) {
		r->has_remote = true;
		remote_gc(tally_remote(t), c.grace, o->dry_run, &r->remote);
	}
	r->duration_ms = ms_since(&t0);
	memset(&e, 0, sizeof(e));
	e.at = c.now;
	e.dry_run = o->dry_run;
	e.checked = r->checked;
	e.live = r->live;
	e.unreferenced = r->unreferenced;
	e.collected = r->collected;
	e.preserved = r->preserved;
	e.bytes_freed = r->bytes_freed;
	e.drift = r->drift_under + r->drift_over;
	e.nodes = r->nodes_reporting;
	e.duration_ms = (int64_t)r->duration_ms;
	c.event = &e;
	rc = held(&c, true, log_batch, NULL);
	count_cycle(t, r);
	log_msg(LOG_INFO,
		"gc%s: %" PRIu64 " checked, %" PRIu64 " collected, %" PRIu64
		" preserved",
		o->dry_run ? " (dry run)" : "", r->checked, r->collected,
		r->preserved);
out:
	progress_end(c.pj);
	free(c.live.v);
	free(c.protect.v);
	free(c.unref.v);
	free(c.state);
	free(c.unmark.v);
	return rc;
}

struct fixes {
	struct {
		int64_t id, truth;
	} * v;
	size_t n, cap;
	int64_t from; /* the next chunk's first object id */
	unsigned batch;
	bool more; /* chunks after this one */
};

static int want_fix(void *ctx, const struct meta_check *mc)
{
	struct fixes *f = ctx;

	if (mc->id == 0 || mc->stored == mc->truth)
		return 0;
	if (array_reserve(&f->v, &f->cap, f->n + 1, sizeof(*f->v)))
		return -ENOMEM;
	f->v[f->n].id = mc->id;
	f->v[f->n].truth = mc->truth;
	f->n++;
	return 0;
}

/*
 * Rebuild the stored counts online, a chunk of objects at a time (like the
 * drift check): each chunk is read and fixed in one transaction under one
 * hold of the lock, so no reference changes between its check and its
 * fix, and file operations wait for one chunk at most.
 */
int gc_repair(struct tally *t, uint64_t *fixed)
{
	return gc_repair_batch(t, CHECK_BATCH, fixed);
}

/* One chunk of the repair: its counts read and fixed in one
 * transaction. */
static int repair_chunk(struct meta *m, void *ctx)
{
	struct fixes *f = ctx;
	size_t i;
	int rc = meta_check_chunk(m, f->from, f->batch, &f->from, want_fix, f);

	if (rc == 1) { /* chunks after this one */
		f->more = true;
		rc = 0;
	}
	for (i = 0; i < f->n && !rc; i++)
		rc = meta_obj_set_count(m, f->v[i].id, f->v[i].truth);
	return rc;
}

int gc_repair_batch(struct tally *t, unsigned batch, uint64_t *fixed)
{
	struct fixes f = { 0 };
	uint64_t n = 0;
	int rc;

	f.from = INT64_MIN;
	f.batch = batch;
	for (;;) {
		f.n = 0;
		f.more = false;
		rc = tally_meta_txn(t, repair_chunk, &f);
		if (rc)
			break;
		n += f.n;
		if (!f.more)
			break;
		pause_after_hold();
	}
	/* an object whose count went to 0 is left to GC, never unlinked
	 * here: when in doubt, leak */
	if (!rc)
		*fixed = n;
	free(f.v);
	return rc;
}

struct vrow {
	struct names names;
	double percent;
};

static int verify_row(void *ctx, int64_t id, const char *name, uint32_t shard,
		      int64_t refcount)
{
	struct vrow *v = ctx;
	char key[KEY_MAX];

	(void)id;
	(void)refcount;
	if (!gc_verify_picks(name, v->percent))
		return 0;
	objstore_key(key, name, shard);
	return names_add(&v->names, key);
}

static int verify_rows(struct meta *m, void *ctx)
{
	return meta_objects(m, verify_row, ctx);
}

/* Where the row of object w->name says it is. */
struct where {
	const char *name;
	uint32_t shard;
};

static int object_where(struct meta *m, void *ctx)
{
	struct where *w = ctx;
	uint64_t size;
	int64_t id, refs;

	return meta_object_info(m, w->name, &id, &w->shard, &size, &refs);
}

/* Evicted to the bucket of the remote tier, or (a shared store) never
 * fetched to this node's cache: not missing here. */
static int object_evicted(struct meta *m, void *ctx)
{
	struct meta_remote_state st;
	int rc = meta_remote_state(m, ctx, &st);

	return rc ? rc : st.remote && (!st.cached || meta_shared(m));
}

int gc_verify(struct tally *t, double percent, struct gc_verify *v)
{
	struct objstore *os = tally_objstore(t);
	struct vrow rows = { .percent = percent };
	struct progress_job *pj;
	struct timespec t0;
	char *buf = NULL;
	size_t cap = 0, i;
	int rc;

	memset(v, 0, sizeof(*v));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pj = progress_begin(tally_progress(t), "verify", "objects", 0);
	rc = tally_meta_read(t, verify_rows, &rows);
	if (rc)
		goto out;
	v->objects = rows.names.n;
	progress_set_total(pj, rows.names.n);
	for (i = 0; i < rows.names.n && !rc; i++) {
		char name[OBJNAME_MAX], hex[HASH_HEX_LEN + 1];
		uint32_t shard = objstore_key_split(rows.names.v[i], name);
		off_t size;
		ssize_t n;

		progress_set(pj, i);

		if (objstore_stat(os, shard, name, &size) < 0) {
			struct where w = { .name = name, .shard = shard };
			uint32_t where;
			int exists;

			exists = tally_meta_read(t, object_where, &w) == 0;
			where = w.shard;
			/* moved by a rebalance meanwhile: look there */
			if (exists && where != shard &&
			    objstore_stat(os, where, name, &size) == 0) {
				shard = where;
			} else {
				if (exists && tally_meta_read(t, object_evicted,
							      name) == 1) {
					v->remote_only++;
				} else if (exists) {
					v->missing++;
					gc_verify_bad(v, name);
					log_msg(LOG_ERR,
						"verify: object '%s' is "
						"missing",
						name);
				}
				continue;
			}
		}
		if ((size_t)size > cap) {
			char *nb =
				realloc(buf, (size_t)size ? (size_t)size : 1);

			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			cap = (size_t)size;
		}
		n = objstore_read(os, shard, name, buf, (size_t)size, 0);
		if (n == -ENOENT)
			continue; /* collected meanwhile */
		if (n < 0) {
			rc = (int)n;
			break;
		}
		v->checked++;
		v->bytes += (uint64_t)n;
		hash_block(buf, (size_t)n, hex);
		if (strncmp(hex, name, HASH_HEX_LEN) == 0) {
			v->ok++;
		} else {
			v->corrupt++;
			gc_verify_bad(v, name);
			log_msg(LOG_ERR,
				"verify: object '%s' is corrupt (its "
				"bytes hash to %s)",
				name, hex);
		}
	}
	progress_set(pj, i);
	v->duration_ms = ms_since(&t0);
out:
	progress_end(pj);
	free(buf);
	free(rows.names.v);
	return rc;
}

/* An automatic GC cycle (-o gc_interval), as a pool job. */
void gc_auto(void *arg)
{
	struct gc_opts o = { .grace = -1 };
	struct gc_report r;
	int rc = gc_run(arg, &o, &r);

	if (rc)
		log_msg(LOG_ERR, "automatic gc failed: %s", strerror(-rc));
}
