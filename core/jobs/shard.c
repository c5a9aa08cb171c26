/* SPDX-License-Identifier: MIT */
/*
 * Shards, online rebalance, ghost stubs and the anti-entropy sweep.
 *
 * DESIGN NOTES
 *
 * State: the shards table (path, active/draining), the object row's shard
 * (where the object lives), each block reference's shard (where it was
 * when the reference was made), ghosts (object, src -> dst, count of the
 * references naming src) and moves (intents). Whether a shard is
 * reachable is not stored: core/objects/objstore.c checks it (marker, directory)
 * on errors, on the timer and before every decision here.
 *
 * Invariants:
 *  1. An object always has a readable copy where its row says: a move
 *     copies, fsyncs and verifies (rehash) the target copy, and only then
 *     commits the row's new shard and the ghost, in one transaction; the
 *     source copy is removed after that commit.
 *  2. Every reference names the object's shard or the source of one of its
 *     ghosts, whose count is exactly the number of such references (the
 *     triggers of core/meta/meta_db.c keep it; new references name the object's
 *     shard). A read that does not find the object where its reference
 *     says follows the ghost (core/fs/dirty.c, read_ref()).
 *  3. A move is journaled (moves) before its copy starts and forgotten
 *     after its source copy is gone: an interrupted move is finished
 *     (the row names the target: remove the source copy) or undone (the
 *     row names the source: remove the target copy) by shard_setup() or
 *     the next rebalance; GC and tallyfsck keep journaled objects in
 *     every shard meanwhile.
 *  4. The sweep purges a ghost only in a transaction that sees its count
 *     at 0, and, unless the count was 0 before the sweep began, only
 *     right after seeing the object in the target shard on disk. A ghost
 *     whose target shard is unreachable is left alone (inconclusive);
 *     nothing is ever deleted because a shard could not be seen.
 *
 * Placement of new objects is core/objects/objstore.c's (the lowest fill). The
 * rebalance aims at the same: each reachable active shard gets a share of
 * the bytes in proportion to its capacity (its object bytes plus the free
 * space of its filesystem), draining shards get none; it moves one object
 * at a time from the shard most over its share to the one most under,
 * while that brings both closer to their shares.
 *
 * Locks: the metadata lock (tally_meta_read/txn) for short transactions
 * only; copies and checks on disk run without it, and each unlink is
 * core/objects/reap.c's, with its verdict in one hold (tally_reap_copy()). One
 * rebalance or sweep runs at a time (job_lock, the outermost lock).
 */
#include "core/jobs/shard.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util/hash.h"
#include "core/util/array.h"
#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/util/progress.h"
#include "core/objects/reap.h"
#include "core/fs/tally.h"

#define MOVE_BATCH 64	    /* moves journaled per transaction */
#define REPOINT_BLOCKS 4096 /* block rows per repoint transaction */
#define VERDICT_BATCH 256   /* ghosts decided per transaction */

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* -- usage per shard -- */

struct usage {
	uint64_t objects[OBJSTORE_MAX_SHARDS];
	uint64_t bytes[OBJSTORE_MAX_SHARDS];
};

static int usage_row(void *ctx, uint32_t shard, uint64_t objects,
		     uint64_t bytes)
{
	struct usage *u = ctx;

	if (shard < OBJSTORE_MAX_SHARDS) {
		u->objects[shard] = objects;
		u->bytes[shard] = bytes;
	}
	return 0;
}

static int usage_rows(struct meta *m, void *ctx)
{
	return meta_shard_usage(m, usage_row, ctx);
}

static int usage_read(struct tally *t, struct usage *u)
{
	memset(u, 0, sizeof(*u));
	return tally_meta_read(t, usage_rows, u);
}

/* -- interrupted moves -- */

struct move {
	int64_t obj;
	char name[OBJNAME_MAX];
	uint32_t src, dst;
	uint64_t size;
	int rc; /* of the copy */
};

struct moves {
	struct move *v;
	size_t n, cap;
};

static int moves_add(struct moves *l, int64_t obj, const char *name,
		     uint32_t src, uint32_t dst, uint64_t size)
{
	if (array_reserve(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return -ENOMEM;
	l->v[l->n].obj = obj;
	snprintf(l->v[l->n].name, OBJNAME_MAX, "%s", name);
	l->v[l->n].src = src;
	l->v[l->n].dst = dst;
	l->v[l->n].size = size;
	l->v[l->n].rc = 0;
	l->n++;
	return 0;
}

static int journal_row(void *ctx, int64_t obj, const char *name, uint32_t src,
		       uint32_t dst)
{
	return moves_add(ctx, obj, name, src, dst, 0);
}

/*
 * Remove the copies that the moves in @l left behind, each where its row
 * does not say the object is (core/objects/reap.c decides: a lookup that fails
 * keeps both), then forget the moves. Missing files and unreachable
 * shards are fine: what stays is a leak GC collects.
 */
/* The moves l->v[from, from + MOVE_BATCH) whose copies are settled are
 * forgotten. */
struct moves_range {
	const struct moves *l;
	size_t from;
};

static int moves_forget(struct meta *m, void *ctx)
{
	const struct moves_range *r = ctx;
	size_t k;
	int rc = 0;

	for (k = r->from; k < r->l->n && k < r->from + MOVE_BATCH && !rc; k++)
		if (r->l->v[k].rc == 0)
			rc = meta_move_end(m, r->l->v[k].obj);
	return rc;
}

static int moves_settle(struct tally *t, struct moves *l)
{
	size_t i;
	int rc = 0;

	/* the commits of the moves are durable before a copy goes */
	rc = tally_meta_sync(t);
	for (i = 0; i < l->n && !rc; i++) {
		struct move *mv = &l->v[i];
		int kept;

		/* each verdict and its unlink in one hold of the lock, so
		 * that a flush cannot start using a copy between them */
		kept = tally_reap_copy(t, mv->name, mv->obj, mv->src,
				       REAP_OWN_MOVE);
		if (mv->dst != mv->src) {
			int r = tally_reap_copy(t, mv->name, mv->obj, mv->dst,
						REAP_OWN_MOVE);

			if (kept >= 0)
				kept = r;
		}
		/* a verdict that failed keeps the move journaled: the next
		 * rebalance or mount settles it */
		mv->rc = kept < 0 ? kept : 0;
	}
	for (i = 0; i < l->n && !rc; i += MOVE_BATCH) {
		struct moves_range r = { .l = l, .from = i };

		rc = tally_meta_txn(t, moves_forget, &r);
	}
	return rc;
}

/* Finish or undo the moves an interrupted rebalance left. */
static int journal_rows(struct meta *m, void *ctx)
{
	return meta_moves(m, journal_row, ctx);
}

static int recover_moves(struct tally *t, uint64_t *n)
{
	struct moves l = { 0 };
	int rc = tally_meta_read(t, journal_rows, &l);

	if (!rc && l.n) {
		log_msg(LOG_NOTICE,
			"settling %zu object move(s) an interrupted "
			"rebalance left",
			l.n);
		rc = moves_settle(t, &l);
	}
	if (n)
		*n = rc ? 0 : l.n;
	free(l.v);
	return rc;
}

int shard_setup(struct tally *t)
{
	struct objstore *os = tally_objstore(t);
	struct usage u;
	unsigned i;
	int rc = usage_read(t, &u);

	if (rc)
		return rc;
	for (i = 0; i < OBJSTORE_MAX_SHARDS; i++)
		if (u.bytes[i])
			objstore_shard_account(os, i, (int64_t)u.bytes[i]);
	return recover_moves(t, NULL);
}

void shard_check_all(struct tally *t)
{
	struct objstore *os = tally_objstore(t);
	unsigned i, n = objstore_nshards(os);

	for (i = 0; i < n; i++)
		if (objstore_shard_attached(os, i))
			objstore_shard_check(os, i);
}

/* -- shard add / drain -- */

/* Whether absolute @path is @mp or below it, lexically. */
static bool path_under(const char *path, const char *mp)
{
	size_t n = strlen(mp);

	while (n > 1 && mp[n - 1] == '/')
		n--;
	if (n == 1 && mp[0] == '/')
		return true;
	return !strncmp(path, mp, n) && (path[n] == '/' || path[n] == '\0');
}

/* @in with ".", ".." and repeated slashes resolved lexically. */
static int path_normalize(const char *in, char *out, size_t size)
{
	size_t o = 0;
	const char *p = in;

	if (in[0] != '/')
		return -EINVAL;
	while (*p) {
		const char *e;
		size_t len;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		e = strchr(p, '/');
		len = e ? (size_t)(e - p) : strlen(p);
		if (len == 1 && p[0] == '.') {
			/* nothing */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else {
			if (o + 1 + len + 1 > size)
				return -ENAMETOOLONG;
			out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p += len;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return 0;
}

struct new_shard {
	struct objstore *os;
	const char *root;
	uint32_t id;
};

/*
 * The row of a new shard and its marker, in one transaction: a failure
 * leaves neither a row nor (objstore_shard_init cleans up) a marker. The
 * one write to disk under the metadata lock besides core/objects/reap.c's: a
 * rare command's marker file, not an object.
 */
static int new_shard(struct meta *m, void *ctx)
{
	struct new_shard *a = ctx;
	int rc = meta_shard_add(m, a->root, OBJSTORE_MAX_SHARDS - 1,
				(int64_t)time(NULL), &a->id);

	if (!rc)
		rc = objstore_shard_init(a->os, a->id, a->root);
	return rc;
}

/* After the commit, in the same hold: the shard takes objects. */
static int new_shard_attach(struct meta *m, void *ctx)
{
	struct new_shard *a = ctx;

	(void)m;
	return objstore_shard_attach(a->os, a->id, a->root, false);
}

/*
 * A shared store: @real becomes a leg of this node's cache (core/
 * objstore.c, Spans), which no row names: its marker, its line in the
 * node's STORE/legs, then it takes copies (job_lock held).
 */
static int leg_add(struct tally *t, struct objstore *os, const char *real,
		   unsigned *id)
{
	unsigned nid = objstore_legs(os);
	char marker[PATH_MAX];
	int rc;

	if (nid >= OBJSTORE_MAX_SHARDS)
		return -ENOSPC;
	rc = objstore_shard_init(os, nid, real);
	if (rc)
		return rc;
	rc = tally_leg_add(t, nid, real);
	if (rc) {
		snprintf(marker, sizeof(marker), "%s/tallyfs-shard", real);
		unlink(marker);
		return rc;
	}
	*id = nid;
	return objstore_shard_attach(os, nid, real, false);
}

int shard_add(struct tally *t, const char *dir, const char *mountpoint,
	      uint32_t *id)
{
	struct objstore *os = tally_objstore(t);
	char norm[PATH_MAX], *real = NULL;
	struct new_shard na = { 0 };
	struct stat st;
	uint32_t nid = 0;
	int rc;

	rc = path_normalize(dir, norm, sizeof(norm));
	if (rc)
		return rc;
	/* never look inside our own mount: refused by its name first */
	if (mountpoint && path_under(norm, mountpoint))
		return -EINVAL;
	real = realpath(norm, NULL);
	if (!real)
		return -errno;
	if (mountpoint && path_under(real, mountpoint)) {
		rc = -EINVAL;
		goto out;
	}
	if (path_under(real, tally_store_path(t))) {
		rc = -EINVAL; /* the store's own tree */
		goto out;
	}
	for (nid = 0; nid < objstore_legs(os); nid++) {
		struct objstore_shard_info in;

		if (objstore_shard_info(os, nid, &in) == 0 &&
		    !strcmp(in.root, real)) {
			rc = -EEXIST; /* a shard already */
			goto out;
		}
	}
	if (stat(real, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = -ENOTDIR;
		goto out;
	}
	pthread_mutex_lock(&job_lock);
	if (tally_meta_shared(t)) {
		rc = leg_add(t, os, real, &nid);
	} else {
		na.os = os;
		na.root = real;
		rc = tally_meta_txn_then(t, new_shard, new_shard_attach, &na);
		nid = na.id;
	}
	pthread_mutex_unlock(&job_lock);
	if (!rc) {
		log_msg(LOG_NOTICE, "shard %u added: '%s'%s", nid, real,
			tally_meta_shared(t) ? " (a leg of this node's cache)"
					     : "");
		*id = nid;
	}
out:
	free(real);
	return rc;
}

/* Whether a shard other than @id is attached and active (reachable or
 * not: an unreachable shard comes back). */
static bool other_active(struct objstore *os, uint32_t id)
{
	unsigned i;

	for (i = 0; i < objstore_nshards(os); i++) {
		struct objstore_shard_info in;

		if (i != id && objstore_shard_info(os, i, &in) == 0 &&
		    !in.draining)
			return true;
	}
	return false;
}

/* Make shard @id draining or active, in the shards table and for
 * placement. The check of the other shards and the change happen under
 * the metadata lock: two drains cannot each leave the other last. */
struct shard_state {
	struct objstore *os;
	uint32_t id;
	bool draining;
};

static int shard_state_set(struct meta *m, void *ctx)
{
	struct shard_state *a = ctx;
	struct objstore_shard_info in;
	int rc = objstore_shard_info(a->os, a->id, &in);

	if (!rc && a->draining && !in.draining && !other_active(a->os, a->id))
		rc = -EBUSY;
	if (!rc)
		rc = meta_shard_set_state(m, a->id,
					  a->draining ? META_SHARD_DRAINING
						      : META_SHARD_ACTIVE);
	return rc;
}

static int shard_state_place(struct meta *m, void *ctx)
{
	struct shard_state *a = ctx;

	(void)m;
	objstore_shard_set_draining(a->os, a->id, a->draining);
	return 0;
}

static int set_draining(struct tally *t, uint32_t id, bool draining)
{
	struct objstore *os = tally_objstore(t);
	struct shard_state a = { .os = os, .id = id, .draining = draining };
	int rc;

	if (id >= OBJSTORE_MAX_SHARDS || !objstore_shard_attached(os, id))
		return -ENOENT;
	rc = tally_meta_txn_then(t, shard_state_set, shard_state_place, &a);
	if (rc == -EBUSY)
		log_msg(LOG_WARNING,
			"cannot drain shard %u: it is the last active shard, "
			"new objects would have nowhere to go",
			id);
	else if (!rc)
		log_msg(LOG_NOTICE, "shard %u is %s", id,
			draining ? "draining" : "active");
	return rc;
}

int shard_drain(struct tally *t, uint32_t id)
{
	return set_draining(t, id, true);
}

int shard_activate(struct tally *t, uint32_t id)
{
	return set_draining(t, id, false);
}

/* -- rebalance -- */

struct plan {
	unsigned n;
	bool src_ok[OBJSTORE_MAX_SHARDS]; /* reachable: may give */
	bool dst_ok[OBJSTORE_MAX_SHARDS]; /* reachable and active: may take */
	double bytes[OBJSTORE_MAX_SHARDS];
	double share[OBJSTORE_MAX_SHARDS];
	int64_t after[OBJSTORE_MAX_SHARDS]; /* object ids listed so far */
	bool exhausted[OBJSTORE_MAX_SHARDS];
	/* a shard that gave never takes, one that took never gives: no
	 * object moves twice in one rebalance */
	bool gave[OBJSTORE_MAX_SHARDS], took[OBJSTORE_MAX_SHARDS];
};

static void plan_init(struct tally *t, const struct usage *u, struct plan *p)
{
	struct objstore *os = tally_objstore(t);
	double total = 0, cap = 0, capv[OBJSTORE_MAX_SHARDS] = { 0 };
	unsigned i;

	struct objstore_shard_info in[OBJSTORE_MAX_SHARDS];
	unsigned j;

	memset(p, 0, sizeof(*p));
	p->n = objstore_nshards(os);
	for (i = 0; i < p->n; i++) {
		if (objstore_shard_info(os, i, &in[i]) || !in[i].reachable)
			continue;
		p->src_ok[i] = true;
		p->bytes[i] = (double)u->bytes[i];
		total += p->bytes[i];
		if (in[i].draining)
			continue;
		/* shards on one filesystem: one reading of its free space,
		 * so that other writers cannot skew their shares */
		for (j = 0; j < i && !(p->src_ok[j] && in[j].dev == in[i].dev);
		     j++)
			;
		p->dst_ok[i] = true;
		capv[i] = (double)u->bytes[i] + (double)in[j].avail;
		cap += capv[i];
	}
	for (i = 0; i < p->n; i++)
		p->share[i] = p->dst_ok[i] && cap > 0 ? total * capv[i] / cap
						      : 0;
}

/* The shard most over its share that still has objects to give. */
static int plan_source(const struct plan *p)
{
	double best = 0;
	int s = -1;
	unsigned i;

	for (i = 0; i < p->n; i++) {
		double over = p->bytes[i] - p->share[i];

		if (p->src_ok[i] && !p->exhausted[i] && !p->took[i] &&
		    over > best) {
			best = over;
			s = (int)i;
		}
	}
	return s;
}

/* The shard most under its share, other than @src. */
static int plan_target(const struct plan *p, int src)
{
	double best = -1;
	int d = -1;
	unsigned i;

	for (i = 0; i < p->n; i++) {
		double under = p->share[i] - p->bytes[i];

		if (p->dst_ok[i] && (int)i != src && !p->gave[i] &&
		    under > best) {
			best = under;
			d = (int)i;
		}
	}
	return d;
}

struct pick {
	struct plan *p;
	struct moves *l;
	uint32_t src;
};

static int pick_object(void *ctx, int64_t id, const char *name, uint64_t size)
{
	struct pick *k = ctx;
	struct plan *p = k->p;
	double z = (double)size, over, under;
	int d;

	p->after[k->src] = id;
	over = p->bytes[k->src] - p->share[k->src];
	d = plan_target(p, (int)k->src);
	if (d < 0)
		return 1;
	under = p->share[d] - p->bytes[d];
	/* a draining shard gives everything; others while the move brings
	 * the two shards closer to their shares in all */
	if (p->dst_ok[k->src] &&
	    !(fabs(over - z) + fabs(under - z) < fabs(over) + fabs(under)))
		return 1;
	p->bytes[k->src] -= z;
	p->bytes[d] += z;
	p->gave[k->src] = true;
	p->took[d] = true;
	return moves_add(k->l, id, name, k->src, (uint32_t)d, size);
}

/* Choose the next batch of moves into @l; 0 with l->n == 0 when done. */
static int pick_objects(struct meta *m, void *ctx)
{
	struct pick *k = ctx;

	return meta_objects_in(m, k->src, k->p->after[k->src], MOVE_BATCH,
			       pick_object, k);
}

static int plan_batch(struct tally *t, struct plan *p, struct moves *l)
{
	l->n = 0;
	while (l->n == 0) {
		struct pick k = { .p = p, .l = l };
		size_t before;
		int s = plan_source(p), rc;

		if (s < 0)
			return 0;
		k.src = (uint32_t)s;
		before = l->n;
		rc = tally_meta_read(t, pick_objects, &k);
		if (rc < 0)
			return rc;
		/* no object taken: nothing more from this shard */
		if (l->n == before)
			p->exhausted[s] = true;
	}
	return 0;
}

/*
 * Copy the objects of @l to their targets: each source is read and
 * rehashed, the copies are staged and made durable together (a syncfs
 * per shard instead of two fsyncs per object), then each copy is read
 * back and rehashed. Sets each move's rc.
 */
static void copy_batch(struct objstore *os, struct moves *l)
{
	struct objstore_batch b;
	void **bufs = calloc(l->n ? l->n : 1, sizeof(*bufs));
	size_t i;
	int rc = 0;

	memset(&b, 0, sizeof(b));
	for (i = 0; i < l->n; i++) {
		struct move *mv = &l->v[i];
		size_t len;

		mv->rc = bufs ? objstore_load(os, mv->src, mv->name, &bufs[i],
					      &len)
			      : -ENOMEM;
		if (!mv->rc)
			mv->rc = objstore_stage(os, mv->dst, mv->name, bufs[i],
						len, &b);
	}
	if (b.n)
		rc = objstore_batch_finish(os, &b);
	objstore_batch_release(os, &b);
	for (i = 0; i < l->n; i++) {
		struct move *mv = &l->v[i];
		void *back;
		size_t len;

		if (!mv->rc && rc)
			mv->rc = rc;
		if (!mv->rc) {
			mv->rc = objstore_load(os, mv->dst, mv->name, &back,
					       &len);
			if (!mv->rc)
				free(back);
		}
		if (mv->rc && mv->rc != -ENOENT)
			log_msg(LOG_WARNING,
				"rebalance: cannot copy object '%s' from "
				"shard %u to %u: %s",
				mv->name, mv->src, mv->dst, strerror(-mv->rc));
		if (bufs)
			free(bufs[i]);
	}
	free(bufs);
}

struct move_step {
	struct moves *l;
	struct shard_rebalance_report *r;
	struct progress_job *pj;
	int64_t now;
};

/* The moves of a batch journaled, before their copies start. */
static int moves_journal(struct meta *m, void *ctx)
{
	struct move_step *a = ctx;
	size_t i;
	int rc = 0;

	for (i = 0; i < a->l->n && !rc; i++)
		rc = meta_move_begin(m, a->l->v[i].obj, a->l->v[i].name,
				     a->l->v[i].src, a->l->v[i].dst);
	return rc;
}

/* The rows of the objects whose copies are in place name their new
 * shards (and their ghosts are made). */
static int moves_commit(struct meta *m, void *ctx)
{
	struct move_step *a = ctx;
	size_t i;
	int rc = 0;

	for (i = 0; i < a->l->n && !rc; i++) {
		struct move *mv = &a->l->v[i];

		if (mv->rc)
			continue;
		rc = meta_move_commit(m, mv->obj, mv->src, mv->dst, a->now);
		progress_add(a->pj, mv->size);
		if (rc == 1) {
			rc = 0;
			a->r->moved++;
			a->r->bytes += mv->size;
		} else if (rc == 0) {
			mv->rc = -ESTALE; /* gone or moved meanwhile */
		}
	}
	return rc;
}

/* Journal, copy, commit and settle one batch of moves. */
static int move_batch(struct tally *t, struct moves *l,
		      struct shard_rebalance_report *r, struct progress_job *pj)
{
	struct objstore *os = tally_objstore(t);
	struct move_step a = {
		.l = l, .r = r, .pj = pj, .now = (int64_t)time(NULL)
	};
	size_t i;
	int rc;

	rc = tally_meta_txn(t, moves_journal, &a);
	if (rc)
		return rc;
	copy_batch(os, l);
	/* the target copy must be there; it stays: GC keeps what a move
	 * journaled, in every shard */
	for (i = 0; i < l->n; i++) {
		off_t size;

		if (!l->v[i].rc &&
		    objstore_stat(os, l->v[i].dst, l->v[i].name, &size) < 0)
			l->v[i].rc = -ENOENT;
	}
	rc = tally_meta_txn(t, moves_commit, &a);
	for (i = 0; i < l->n; i++)
		if (l->v[i].rc && l->v[i].rc != -ESTALE &&
		    l->v[i].rc != -ENOENT)
			r->failed++;
	if (rc)
		return rc;
	/* the source copies go (or the target copies, where a move did
	 * not happen), then the journal forgets the batch */
	return moves_settle(t, l);
}

static int ghost_count(struct meta *m, void *ctx)
{
	return meta_ghost_count(m, ctx);
}

int shard_rebalance(struct tally *t, struct shard_rebalance_report *r)
{
	struct progress_job *pj = NULL;
	struct moves l = { 0 };
	struct timespec t0;
	struct usage u;
	struct plan *p;
	int rc;

	memset(r, 0, sizeof(*r));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_lock(&job_lock);
	rc = recover_moves(t, &r->recovered);
	if (!rc) {
		shard_check_all(t);
		rc = usage_read(t, &u);
	}
	if (!rc) {
		double excess = 0;
		unsigned i;

		plan_init(t, &u, p);
		/* bytes to move: what the shards hold over their shares */
		for (i = 0; i < p->n; i++)
			if (p->src_ok[i] && p->bytes[i] > p->share[i])
				excess += p->bytes[i] - p->share[i];
		pj = progress_begin(tally_progress(t), "rebalance", "bytes",
				    (uint64_t)excess);
	}
	while (!rc && !tally_closing(t)) {
		rc = plan_batch(t, p, &l);
		if (rc || l.n == 0)
			break;
		rc = move_batch(t, &l, r, pj);
	}
	progress_end(pj);
	pthread_mutex_unlock(&job_lock);
	free(l.v);
	free(p);
	if (!rc)
		rc = tally_meta_read(t, ghost_count, &r->ghosts);
	r->duration_ms = ms_since(&t0);
	log_msg(LOG_INFO,
		"rebalance: %" PRIu64 " object(s) moved, %" PRIu64
		" byte(s), %" PRIu64 " failed",
		r->moved, r->bytes, r->failed);
	return rc;
}

/* -- sweep -- */

struct ghost_list {
	struct meta_ghost *v;
	size_t n, cap;
};

static int ghost_row(void *ctx, const struct meta_ghost *g)
{
	struct ghost_list *l = ctx;

	if (array_reserve(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return -ENOMEM;
	l->v[l->n++] = *g;
	return 0;
}

/* Whether the target copy of ghost @g is on disk (no lock: disk I/O).
 * A target copy is immutable and only a move (which the sweep excludes,
 * job_lock) or the death of the object (which takes the ghost with it)
 * removes it, so the answer holds for the verdict that follows. */
static bool target_present(struct objstore *os, const struct meta_ghost *g,
			   uint64_t unreachable)
{
	off_t size;

	if (unreachable & (1ull << g->dst))
		return false;
	return objstore_shard_check(os, g->dst) == 0 &&
	       objstore_stat(os, g->dst, g->name, &size) == 0;
}

/* Decide ghost @g (metadata lock held, in a transaction); @present: its
 * target copy was seen on disk before the lock was taken. */
static int verdict(struct meta *m, const struct meta_ghost *g, bool present,
		   uint64_t unreachable, struct shard_sweep_report *r,
		   bool *purged)
{
	int64_t count;
	int rc;

	*purged = false;
	rc = meta_ghost_refcount(m, g->obj, g->src, &count);
	if (rc == -ENOENT) {
		r->purged++; /* went with its object meanwhile */
		return 0;
	}
	if (rc)
		return rc;
	/* nothing named the source when the sweep began: nothing to ask
	 * the target, wherever it is */
	if (g->refcount <= 0 && count <= 0)
		goto purge;
	if (unreachable & (1ull << g->dst)) {
		r->inconclusive++;
		return 0;
	}
	if (count > 0) {
		r->kept++;
		return 0;
	}
	/* repointed by this sweep: the target must hold the object now */
	if (!present) {
		log_msg(LOG_ERR,
			"sweep: object '%s' is not in shard %u, where its "
			"ghost leads: the ghost is kept",
			g->name, g->dst);
		r->inconclusive++;
		return 0;
	}
purge:
	rc = meta_ghost_purge(m, g->obj, g->src, purged);
	if (!rc && *purged)
		r->purged++;
	else if (!rc)
		r->kept++;
	return rc;
}

static int ghost_rows(struct meta *m, void *ctx)
{
	return meta_ghosts(m, ghost_row, ctx);
}

struct repoint {
	uint64_t from, n;
	uint64_t unreachable;
};

static int repoint_batch(struct meta *m, void *ctx)
{
	struct repoint *a = ctx;

	return meta_ghosts_repoint(m, a->from, REPOINT_BLOCKS, a->unreachable,
				   &a->from, &a->n);
}

/* A batch of ghosts decided in one transaction. */
struct verdicts {
	const struct meta_ghost *g;
	size_t n;
	const bool *present;
	bool *gone;
	uint64_t unreachable;
	struct shard_sweep_report *r;
};

static int verdict_batch(struct meta *m, void *ctx)
{
	struct verdicts *a = ctx;
	size_t j;
	int rc = 0;

	for (j = 0; j < a->n; j++)
		a->gone[j] = false;
	for (j = 0; j < a->n && !rc; j++) {
		a->r->checked++;
		rc = verdict(m, &a->g[j], a->present[j], a->unreachable, a->r,
			     &a->gone[j]);
	}
	return rc;
}

static int sweep_log(struct meta *m, void *ctx)
{
	return meta_sweep_log_put(m, ctx);
}

int shard_sweep(struct tally *t, const struct shard_sweep_opts *o,
		struct shard_sweep_report *r)
{
	struct objstore *os = tally_objstore(t);
	struct progress_job *pj = NULL;
	struct ghost_list gl = { 0 };
	struct meta_sweep_event e;
	uint64_t unreachable = 0, from = 0;
	struct timespec t0;
	unsigned i, nsh;
	long batches = 0;
	size_t k;
	int rc;

	memset(r, 0, sizeof(*r));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r->at = (int64_t)time(NULL);
	pthread_mutex_lock(&job_lock);
	nsh = objstore_nshards(os);
	for (i = 0; i < nsh; i++)
		if (!objstore_shard_attached(os, i) ||
		    objstore_shard_check(os, i) != 0)
			unreachable |= 1ull << i;
	/* the ghosts as they are before anything is repointed */
	rc = tally_meta_read(t, ghost_rows, &gl);
	pj = progress_begin(tally_progress(t), "sweep", "ghosts", gl.n);
	/* 1: repoint, in batches of inodes */
	while (!rc && from != UINT64_MAX && !tally_closing(t) &&
	       (o->batches < 0 || batches < o->batches)) {
		struct repoint rp = { .from = from,
				      .unreachable = unreachable };

		rc = tally_meta_txn(t, repoint_batch, &rp);
		from = rp.from;
		if (!rc)
			r->repointed += rp.n;
		batches++;
	}
	/* 2: a verdict per ghost */
	for (k = 0; k < gl.n && !rc; k += VERDICT_BATCH) {
		bool gone[VERDICT_BATCH], present[VERDICT_BATCH];
		size_t j, end = k + VERDICT_BATCH < gl.n ? k + VERDICT_BATCH
							 : gl.n;

		struct verdicts vb = {
			.g = gl.v + k,
			.n = end - k,
			.present = present,
			.gone = gone,
			.unreachable = unreachable,
			.r = r,
		};

		for (j = k; j < end; j++)
			present[j - k] =
				target_present(os, &gl.v[j], unreachable);
		rc = tally_meta_txn(t, verdict_batch, &vb);
		progress_set(pj, end);
		/* a purged ghost's source copy, if a crash left one, once
		 * the purge is durable */
		if (!rc)
			rc = tally_meta_sync(t);
		for (j = k; j < end && !rc; j++)
			if (gone[j - k] &&
			    !(unreachable & (1ull << gl.v[j].src)))
				tally_reap_copy(t, gl.v[j].name, gl.v[j].obj,
						gl.v[j].src, 0);
	}
	r->duration_ms = ms_since(&t0);
	if (!rc) {
		memset(&e, 0, sizeof(e));
		e.at = r->at;
		e.checked = r->checked;
		e.purged = r->purged;
		e.kept = r->kept;
		e.inconclusive = r->inconclusive;
		e.repointed = r->repointed;
		e.duration_ms = (int64_t)r->duration_ms;
		rc = tally_meta_txn(t, sweep_log, &e);
	}
	progress_end(pj);
	pthread_mutex_unlock(&job_lock);
	free(gl.v);
	log_msg(LOG_INFO,
		"sweep: %" PRIu64 " ghost(s) checked, %" PRIu64
		" purged, %" PRIu64 " kept, %" PRIu64 " inconclusive",
		r->checked, r->purged, r->kept, r->inconclusive);
	return rc;
}

/* -- reports -- */

static int info_row(void *ctx, uint32_t id, const char *path, int state)
{
	struct shard_infos *l = ctx;
	struct shard_info *s;

	(void)path;
	if (l->n == OBJSTORE_MAX_SHARDS)
		return 0;
	s = &l->v[l->n++];
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->draining = state == META_SHARD_DRAINING;
	return 0;
}

/* The shards' rows, the ghosts and the last sweep. */
static int infos_read(struct meta *m, void *ctx)
{
	struct shard_infos *l = ctx;
	struct meta_sweep_event e;
	int rc = meta_shards(m, info_row, l);

	if (!rc)
		rc = meta_ghost_count(m, &l->ghosts);
	if (!rc)
		rc = meta_sweep_last(m, &e, &l->total_purged);
	if (!rc) {
		l->have_sweep = true;
		l->last_sweep.at = e.at;
		l->last_sweep.checked = e.checked;
		l->last_sweep.purged = e.purged;
		l->last_sweep.kept = e.kept;
		l->last_sweep.inconclusive = e.inconclusive;
		l->last_sweep.repointed = e.repointed;
		l->last_sweep.duration_ms = (double)e.duration_ms;
	} else if (rc == -ENOENT) {
		rc = 0;
	}
	return rc;
}

int shard_infos(struct tally *t, struct shard_infos *l)
{
	struct objstore *os = tally_objstore(t);
	struct usage u;
	unsigned i;
	int rc;

	memset(l, 0, sizeof(*l));
	shard_check_all(t);
	rc = usage_read(t, &u);
	if (rc)
		return rc;
	rc = tally_meta_read(t, infos_read, l);
	for (i = 0; i < l->n && !rc; i++) {
		struct shard_info *s = &l->v[i];
		struct objstore_shard_info in;

		if (s->id < OBJSTORE_MAX_SHARDS) {
			s->objects = u.objects[s->id];
			s->bytes = u.bytes[s->id];
		}
		if (objstore_shard_info(os, s->id, &in) == 0) {
			snprintf(s->path, sizeof(s->path), "%s", in.root);
			s->reachable = in.reachable;
			s->free = in.avail;
		}
	}
	/* a shared store: the other legs of this node's cache, which no row
	 * names (their objects are shard 0's) */
	for (i = 1; !rc && tally_meta_shared(t) && i < objstore_legs(os) &&
		    l->n < sizeof(l->v) / sizeof(l->v[0]);
	     i++) {
		struct shard_info *s = &l->v[l->n];
		struct objstore_shard_info in;

		if (objstore_shard_info(os, i, &in))
			continue;
		memset(s, 0, sizeof(*s));
		s->id = i;
		snprintf(s->path, sizeof(s->path), "%s", in.root);
		s->reachable = in.reachable;
		s->free = in.avail;
		l->n++;
	}
	return rc;
}
