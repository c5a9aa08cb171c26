/* SPDX-License-Identifier: MIT */
/*
 * Deletions in the bucket: the deletion queue judged under the metadata
 * lock and sent in batches, shared stores' claims (taken over when
 * their node is gone), and the GC of the bucket (keys nothing names).
 * The DESIGN NOTES of core/remote/remote.c hold here; the state is in
 * core/remote/remote_loop.h.
 */
#include "core/remote/remote_loop.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util/array.h"
#include "core/util/hash.h"
#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/util/progress.h"
#include "core/objects/objstore.h"
#include "core/objects/reap.h"
#include "core/fs/tally.h"

/* ------------------------------------------------------------------ */
/* deletions in the bucket */

int rl_names_add(void *arg, const char *name)
{
	struct names *l = arg;

	if (array_reserve(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return -ENOMEM;
	snprintf(l->v[l->n++], sizeof(*l->v), "%s", name);
	return 0;
}

struct del_ctx {
	struct remote *r;
	struct names names;
};

static int del_list(struct meta *m, void *arg)
{
	struct del_ctx *c = arg;

	return meta_remote_dels_due(m, (int64_t)time(NULL) - c->r->delete_delay,
				    DELETE_BATCH, rl_names_add, &c->names);
}

/* A shared store: the deletion claimed for @name will not be made now
 * (in a transaction of its own; the metadata lock held). */
static void unclaim(struct meta *m, const char *name)
{
	int rc = meta_begin(m);

	if (!rc)
		rc = meta_remote_unclaim(m, name);
	if (meta_end(m, rc))
		log_msg(LOG_WARNING,
			"remote: the claim on '%s' stays until its deletion "
			"is made",
			name);
}

/* The claims of the deletions still ready at a stop, which no worker
 * will make (the loop and the workers stopped). */
int rl_unclaim_ready(struct meta *m, void *arg)
{
	struct remote *r = arg;
	struct job *j;

	for (j = r->ready; j; j = j->next)
		if (j->kind == JOB_DEL)
			unclaim(m, j->name);
	return 0;
}

/* The verdict of each due key, and its job, in one hold (invariant 3). */
static int del_judge(struct meta *m, void *arg)
{
	struct del_ctx *c = arg;
	struct remote *r = c->r;
	size_t i;

	for (i = 0; i < c->names.n; i++) {
		const char *name = c->names.v[i];
		struct backoff *b;
		struct job *j;
		bool wait;
		int v;

		/* a job of the name ready or running keeps its claim: no
		 * claim is made, and none undone, while its DELETE may be
		 * in flight (only this thread adds jobs) */
		pthread_mutex_lock(&r->lock);
		b = rl_backoff_find(r, name);
		wait = rl_busy(r, name) || (b && b->not_before > mono());
		pthread_mutex_unlock(&r->lock);
		if (wait)
			continue;
		/* a shared store: the verdict claims the name's deletion */
		v = tally_meta_shared(r->t) ? reap_remote_claim(m, name)
					    : reap_remote_free(m, name);
		if (v < 0)
			log_msg(LOG_WARNING,
				"remote: key of '%s' kept: its verdict "
				"failed: %s",
				name, strerror(-v));
		if (v != 1)
			continue;
		j = calloc(1, sizeof(*j));
		if (j) {
			j->kind = JOB_DEL;
			snprintf(j->name, sizeof(j->name), "%s", name);
			pthread_mutex_lock(&r->lock);
			rl_push_ready(r, j);
			pthread_mutex_unlock(&r->lock);
		} else if (tally_meta_shared(r->t)) {
			/* no job: no deletion under way after all */
			unclaim(m, name);
		}
	}
	return 0;
}

static int stale_take(struct meta *m, void *arg)
{
	return meta_remote_claims_stale(m, arg);
}

/* A shared store: take over the deletion claims that nodes gone (killed,
 * or past their session's expiry) left under way, which would hold the
 * uploads of their names for good. */
void rl_take_stale_claims(struct remote *r)
{
	uint64_t n = 0;
	int rc = tally_meta_txn(r->t, stale_take, &n);

	if (rc)
		log_msg(LOG_WARNING,
			"remote: cannot take over the deletion claims of "
			"nodes gone: %s",
			strerror(-rc));
	else if (n)
		log_msg(LOG_NOTICE,
			"remote: took over %" PRIu64 " deletion claim(s) "
			"left under way by nodes gone",
			n);
}

void rl_schedule_deletes(struct remote *r)
{
	struct del_ctx c = { .r = r };
	uint64_t queued;
	int rc;

	pthread_mutex_lock(&r->lock);
	queued = r->pause_until > mono() ? 0 : r->st.delete_queued;
	pthread_mutex_unlock(&r->lock);
	if (!queued)
		return;
	rc = tally_meta_read(r->t, del_list, &c);
	/* the commits that made the keys deletable, durable first; the
	 * bucket still this store's */
	if (!rc && c.names.n)
		rc = tally_meta_sync(r->t);
	if (!rc && c.names.n && rl_still_owner(r) != 1)
		c.names.n = 0;
	if (!rc && c.names.n)
		rc = tally_meta_read(r->t, del_judge, &c);
	if (rc)
		log_msg(LOG_WARNING, "remote: deletions wait: %s",
			strerror(-rc));
	free(c.names.v);
}

/* ------------------------------------------------------------------ */
/* GC of the bucket: keys nothing names */

#define GC_BATCH 256

struct rgc {
	char (*names)[OBJKEY_MAX];
	size_t from, to;
	int64_t now, grace;
	bool dry_run;
	struct gc_remote *out;
};

static int rgc_batch(struct meta *m, void *arg)
{
	struct rgc *c = arg;
	size_t i;
	int rc = 0;

	for (i = c->from; i < c->to && !rc; i++) {
		const char *name = c->names[i];
		int64_t since = c->now;
		int v = meta_remote_named(m, name);

		if (v < 0)
			return v; /* in doubt: nothing decided */
		if (v) {
			if (!c->dry_run)
				rc = meta_remote_unmark(m, name);
			continue;
		}
		c->out->unreferenced++;
		if (c->dry_run) {
			rc = meta_remote_mark_get(m, name, &since);
			if (rc == -ENOENT)
				rc = 0;
		} else {
			rc = meta_remote_mark(m, name, c->now, &since);
		}
		if (rc || c->now - since < c->grace)
			continue;
		c->out->queued++;
		if (!c->dry_run) {
			/* the deletion's delay counts from the mark */
			rc = meta_remote_del_add(m, name, since);
			if (!rc)
				rc = meta_remote_unmark(m, name);
		}
	}
	return rc;
}

struct kept_conf {
	char *snaps, *until;
};

static int kept_read(struct meta *m, void *arg)
{
	struct kept_conf *c = arg;
	int rc = meta_remote_conf_get(m, "kept_snaps", &c->snaps);

	if (!rc)
		rc = meta_remote_conf_get(m, "kept_until", &c->until);
	return rc == -ENOENT ? 0 : rc;
}

static int kept_drop(struct meta *m, void *arg)
{
	(void)arg;
	return meta_remote_kept_release(m);
}

/*
 * The keys a restore kept for the store it came from (core/remote/
 * restore.c, keep_for_original()) go back to GC once every snapshot of
 * that store newer than the restored one is gone from the bucket (the
 * retention that kept them ended) and their time (kept_until) passed.
 * A listing that fails keeps them.
 */
static void kept_release(struct remote *r, struct s3 *s)
{
	struct kept_conf c = { NULL, NULL };
	struct bucket_keys snaps = { 0 };
	size_t i;
	bool gone = true;

	if (tally_meta_read(r->t, kept_read, &c) || !c.snaps || !c.snaps[0] ||
	    !c.until || (int64_t)time(NULL) < strtoll(c.until, NULL, 10))
		goto out;
	if (bucket_list_snapshots(&r->cfg, s, &snaps))
		goto out;
	for (i = 0; i < snaps.n && gone; i++) {
		const char *p = strstr(c.snaps, snaps.v[i]);
		size_t n = strlen(snaps.v[i]);

		gone = !(p && (p == c.snaps || p[-1] == ' ') &&
			 (p[n] == ' ' || p[n] == '\0'));
	}
	if (gone && tally_meta_txn(r->t, kept_drop, NULL) == 0)
		log_msg(LOG_NOTICE,
			"gc: the keys a restore kept for the store it came "
			"from are collected from now on (its snapshots of then "
			"are gone)");
out:
	bucket_keys_release(&snaps);
	free(c.snaps);
	free(c.until);
}

int remote_gc(struct remote *r, int64_t grace, bool dry_run,
	      struct gc_remote *out)
{
	struct bucket_keys k = { 0 };
	struct names names = { 0 };
	struct s3 *s = rl_conn_get(r);
	char prefix[1024];
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if (s && !dry_run)
		kept_release(r, s);
	rc = s ? s3_key(&r->cfg, OBJECTS_PREFIX, prefix, sizeof(prefix))
	       : -ENOMEM;
	/* a whole listing or nothing: a partial one collects nothing */
	if (!rc)
		rc = bucket_list_all(s, prefix, &k);
	if (rc) {
		out->failed = true;
		rl_note_error(r, "gc listing", s ? s3_last_error(s) : "");
		log_msg(LOG_WARNING,
			"gc: cannot list the bucket (%s): nothing in it is "
			"collected",
			s ? s3_last_error(s) : strerror(-rc));
		goto out;
	}
	out->listed = k.n;
	for (i = 0; i < k.n && !rc; i++) {
		char kn[OBJKEY_MAX];

		if (!bucket_key_name(&r->cfg, k.v[i], kn))
			rc = rl_names_add(&names, kn);
	}
	for (i = 0; i < names.n && !rc; i += GC_BATCH) {
		struct rgc c = { names.v,      i,
				 i + GC_BATCH, (int64_t)time(NULL),
				 grace,	       dry_run,
				 out };

		if (c.to > names.n)
			c.to = names.n;
		rc = dry_run ? tally_meta_read(r->t, rgc_batch, &c)
			     : tally_meta_txn(r->t, rgc_batch, &c);
	}
	if (!rc && out->queued && !dry_run)
		remote_kick(r);
out:
	bucket_keys_release(&k);
	free(names.v);
	rl_conn_put(r, s);
	return rc;
}
