/* SPDX-License-Identifier: MIT */
/*
 * GC cycles and online repair.
 *
 * DESIGN NOTES
 *
 * The live set is the object table: a row exists exactly while block
 * references name the object (core/meta.c, invariant 1). Objects of
 * unlinked-but-open files keep their rows until the last close. Objects
 * written by flushes not yet finalized have no row yet: they are marked
 * like leaks, but
 *  1. a mark must be older than the grace period before its object may
 *     be deleted (default GC_DEFAULT_GRACE; marks persist in gc_marks, so
 *     a remount does not restart the clock), and
 *  2. every deletion re-checks, under the metadata lock (which the flush
 *     finalizer holds while it commits), that no row names the object,
 *     and
 *  3. a flush whose object disappeared before its commit writes it again
 *     from its buffer (core/tally.c, invariant 2): even a GC with a grace
 *     of 0 racing a write loses nothing.
 * GC never trusts a stale listing: the listing only proposes candidates.
 *
 * Shards: a file is live where its row says the object is. A copy in any
 * other shard (left by an interrupted rebalance move, core/shard.c) is
 * unreferenced, unless the object is protected (node reports, pins, a
 * move in progress), which keeps it in every shard. Marks are kept per
 * (object, shard) under a key: the name for shard 0, "NAME@N" for shard
 * N. A shard that is unreachable is not listed: nothing in it is marked
 * or deleted because it cannot be seen.
 *
 * Drift (stored count != references) is reported, loudly when a count is
 * too low; it never causes a deletion. gc_repair() rebuilds the counts.
 *
 * Locks: the metadata lock (tally_meta_lock) is taken for short batches
 * only; the listing of the object files runs without it.
 */
#include "core/gc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"
#include "core/log.h"
#include "core/meta.h"
#include "core/objstore.h"
#include "core/progress.h"
#include "core/tally.h"

#define BATCH 256 /* marks written per transaction */
#define SWEEP_BATCH \
	32 /* deletions per hold of the metadata lock: short,
			   so that file operations are not stalled */

#define KEY_MAX OBJSTORE_KEY_MAX

struct names {
	char (*v)[KEY_MAX];
	size_t n, cap;
};

static int names_add(struct names *l, const char *name)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		void *v = realloc(l->v, cap * sizeof(*l->v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
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

struct cycle {
	struct tally *t;
	const struct gc_opts *o;
	struct gc_report *r;
	int64_t now, grace;
	struct names live;    /* keys of the object rows, sorted */
	struct names protect; /* names kept in every shard, sorted */
	uint32_t shard;	      /* being listed */
	struct names marks;   /* to mark now */
	struct names doomed;  /* marked long enough: to delete */
	struct names unmark;  /* marks to clear */
	/* progress: object files listed, then deletions */
	struct progress_job *pj;
};

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

static int list_file(void *ctx, const char *name, off_t size)
{
	struct cycle *c = ctx;
	char key[KEY_MAX];
	struct meta *m;
	int64_t since;
	int rc;

	(void)size;
	c->r->checked++;
	progress_add(c->pj, 1);
	objstore_key(key, name, c->shard);
	if (key_live(c, key)) {
		c->r->live++;
		return 0;
	}
	c->r->unreferenced++;
	m = tally_meta_lock(c->t);
	rc = meta_mark_get(m, key, &since);
	tally_meta_unlock(c->t);
	if (rc == -ENOENT) {
		since = c->now;
		rc = names_add(&c->marks, key);
	}
	if (rc)
		return rc;
	if (c->now - since >= c->grace)
		return names_add(&c->doomed, key);
	c->r->preserved++;
	return 0;
}

static int check_mark(void *ctx, const char *name)
{
	struct cycle *c = ctx;

	return key_live(c, name) ? names_add(&c->unmark, name) : 0;
}

static int count_drift(void *ctx, const struct meta_check *mc)
{
	struct gc_report *r = ctx;

	if (mc->id == 0 || mc->stored == mc->truth)
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

/* Write marks (or clear them) in transactions of BATCH. */
static int apply_marks(struct cycle *c, const struct names *l, bool put)
{
	size_t i = 0;
	int rc = 0;

	while (i < l->n && !rc) {
		struct meta *m = tally_meta_lock(c->t);
		size_t end = i + BATCH < l->n ? i + BATCH : l->n;

		rc = meta_begin(m);
		for (; i < end && !rc; i++)
			rc = put ? meta_mark_put(m, l->v[i], 0, c->now)
				 : meta_mark_del(m, l->v[i]);
		/* (the key says the shard; the column is kept 0) */
		if (!rc)
			rc = meta_commit(m);
		if (rc)
			meta_rollback(m);
		tally_meta_unlock(c->t);
	}
	return rc;
}

/* Delete the doomed objects, each re-checked under the lock. */
static int sweep(struct cycle *c)
{
	struct objstore *os = tally_objstore(c->t);
	size_t i = 0;
	int rc = 0;

	while (i < c->doomed.n && !rc) {
		struct meta *m = tally_meta_lock(c->t);
		size_t end = i + SWEEP_BATCH < c->doomed.n ? i + SWEEP_BATCH
							   : c->doomed.n;

		rc = meta_begin(m);
		for (; i < end && !rc; i++) {
			const char *key = c->doomed.v[i];
			char name[OBJNAME_MAX];
			uint32_t shard = objstore_key_split(key, name), where;
			uint64_t osize;
			int64_t id, refs;
			off_t size = 0;

			rc = meta_object_info(m, name, &id, &where, &osize,
					      &refs);
			if (rc == 0 && where == shard) {
				c->r->preserved++; /* referenced again */
				progress_add(c->pj, 1);
				continue;
			}
			if (rc && rc != -ENOENT)
				break;
			rc = 0;
			if (objstore_stat(os, shard, name, &size) == 0 &&
			    objstore_unlink(os, shard, name) == 0) {
				c->r->collected++;
				c->r->bytes_freed += (uint64_t)size;
			}
			rc = meta_mark_del(m, key);
			progress_add(c->pj, 1);
		}
		if (!rc)
			rc = meta_commit(m);
		if (rc)
			meta_rollback(m);
		tally_meta_unlock(c->t);
	}
	return rc;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

int gc_run(struct tally *t, const struct gc_opts *o, struct gc_report *r)
{
	struct cycle c = { .t = t, .o = o, .r = r };
	struct meta_gc_event e;
	struct timespec t0;
	int64_t stale_after, node;
	unsigned min_nodes;
	bool sweeping;
	struct meta *m;
	int rc;

	memset(r, 0, sizeof(*r));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r->dry_run = o->dry_run;
	c.now = (int64_t)time(NULL);
	c.grace = o->grace < 0 ? GC_DEFAULT_GRACE : o->grace;
	tally_gc_settings(t, &stale_after, &min_nodes, &node);
	c.pj = progress_begin(tally_progress(t), "gc", "objects", 0);

	/* our own report first, then the others' that are fresh enough */
	rc = tally_report(t);
	if (rc)
		goto out;
	m = tally_meta_lock(t);
	rc = meta_begin(m);
	if (!rc && !o->dry_run)
		rc = meta_nodes_prune(m, c.now - stale_after, &r->stale_nodes);
	if (!rc)
		rc = meta_commit(m);
	if (rc)
		meta_rollback(m);
	if (!rc)
		rc = meta_nodes_count(m, &r->nodes_reporting);
	/* live: every row, every node's active set, every pin */
	if (!rc)
		rc = meta_objects(m, add_row, &c);
	if (!rc)
		rc = meta_protected_names(m, add_name, &c);
	tally_meta_unlock(t);
	if (rc)
		goto out;
	if (r->nodes_reporting < min_nodes) {
		r->blocked = true;
		log_msg(LOG_WARNING,
			"gc: %" PRIu64 " node(s) reported, %u "
			"needed: nothing is collected",
			r->nodes_reporting, min_nodes);
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
		rc = objstore_list(os, c.shard, list_file, &c);
		if (rc)
			goto out;
	}
	sweeping = !o->dry_run && !r->blocked;
	progress_set_total(c.pj, r->checked + (sweeping ? c.doomed.n : 0));
	m = tally_meta_lock(t);
	rc = meta_marks(m, check_mark, &c);
	if (!rc)
		rc = meta_check_counts(m, count_drift, r);
	tally_meta_unlock(t);
	if (rc)
		goto out;
	if (o->dry_run) {
		r->collected = r->blocked ? 0 : c.doomed.n;
	} else if (r->blocked) {
		r->preserved += c.doomed.n;
		rc = apply_marks(&c, &c.marks, true);
		if (rc)
			goto out;
	} else {
		rc = apply_marks(&c, &c.marks, true);
		if (!rc)
			rc = apply_marks(&c, &c.unmark, false);
		if (!rc)
			rc = sweep(&c);
		if (rc)
			goto out;
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
	m = tally_meta_lock(t);
	rc = meta_begin(m);
	if (!rc)
		rc = meta_gc_log_put(m, &e);
	if (!rc)
		rc = meta_commit(m);
	if (rc)
		meta_rollback(m);
	tally_meta_unlock(t);
	log_msg(LOG_INFO,
		"gc%s: %" PRIu64 " checked, %" PRIu64 " collected, %" PRIu64
		" preserved",
		o->dry_run ? " (dry run)" : "", r->checked, r->collected,
		r->preserved);
out:
	progress_end(c.pj);
	free(c.live.v);
	free(c.protect.v);
	free(c.marks.v);
	free(c.doomed.v);
	free(c.unmark.v);
	return rc;
}

struct fixes {
	struct {
		int64_t id, truth;
	} * v;
	size_t n, cap;
};

static int want_fix(void *ctx, const struct meta_check *mc)
{
	struct fixes *f = ctx;

	if (mc->id == 0 || mc->stored == mc->truth)
		return 0;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		void *v = realloc(f->v, cap * sizeof(*f->v));

		if (!v)
			return -ENOMEM;
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n].id = mc->id;
	f->v[f->n].truth = mc->truth;
	f->n++;
	return 0;
}

int gc_repair(struct tally *t, uint64_t *fixed)
{
	struct fixes f = { 0 };
	struct meta *m = tally_meta_lock(t);
	size_t i;
	int rc;

	/* one transaction under the lock: no reference changes meanwhile */
	rc = meta_begin(m);
	if (!rc)
		rc = meta_check_counts(m, want_fix, &f);
	for (i = 0; i < f.n && !rc; i++)
		rc = meta_obj_set_count(m, f.v[i].id, f.v[i].truth);
	if (!rc)
		rc = meta_commit(m);
	if (rc)
		meta_rollback(m);
	tally_meta_unlock(t);
	/* an object whose count went to 0 is left to GC, never unlinked
	 * here: when in doubt, leak */
	if (!rc)
		*fixed = f.n;
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
	unsigned long pick;

	(void)id;
	(void)refcount;
	/* a sample by name: the same objects every time for one percentage */
	pick = strtoul((char[9]){ name[0], name[1], name[2], name[3], name[4],
				  name[5], name[6], name[7], 0 },
		       NULL, 16) %
	       10000;
	if ((double)pick >= v->percent * 100)
		return 0;
	objstore_key(key, name, shard);
	return names_add(&v->names, key);
}

static void verify_bad(struct gc_verify *v, const char *name)
{
	if (v->nbad < sizeof(v->bad) / sizeof(v->bad[0]))
		snprintf(v->bad[v->nbad++], sizeof(v->bad[0]), "%s", name);
}

int gc_verify(struct tally *t, double percent, struct gc_verify *v)
{
	struct objstore *os = tally_objstore(t);
	struct vrow rows = { .percent = percent };
	struct progress_job *pj;
	struct timespec t0;
	struct meta *m;
	char *buf = NULL;
	size_t cap = 0, i;
	int rc;

	memset(v, 0, sizeof(*v));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pj = progress_begin(tally_progress(t), "verify", "objects", 0);
	m = tally_meta_lock(t);
	rc = meta_objects(m, verify_row, &rows);
	tally_meta_unlock(t);
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
			uint32_t where = shard;
			uint64_t osize;
			int64_t id, refs;
			int exists;

			m = tally_meta_lock(t);
			exists = meta_object_info(m, name, &id, &where, &osize,
						  &refs) == 0;
			tally_meta_unlock(t);
			/* moved by a rebalance meanwhile: look there */
			if (exists && where != shard &&
			    objstore_stat(os, where, name, &size) == 0) {
				shard = where;
			} else {
				if (exists) {
					v->missing++;
					verify_bad(v, name);
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
			verify_bad(v, name);
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
