/* SPDX-License-Identifier: MIT */
/*
 * Automatic snapshots (docs/design.md 13.4). `autosnapshot NS every=S
 * keep=N` keeps a namespace's setting in the store; the flusher's tick
 * asks tally_autosnap_due() once a second, and when one is due the
 * control thread of the pool runs tally_autosnap_run(): each namespace
 * whose newest automatic snapshot is S seconds old or older gets one
 * named auto-YYYYMMDD-HHMMSS (UTC, so that they sort by time and never
 * meet a user's names), and its automatic snapshots beyond the newest N
 * are removed, oldest first (each a merge). A user's snapshots are never
 * counted nor removed.
 */
#include "core/fs/tally_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/meta/meta.h"
#include "core/util/array.h"
#include "core/util/log.h"

#define AUTO_PREFIX "auto-"
#define AUTO_RETRY 60 /* seconds before settings that failed to read */

struct setting {
	uint64_t nspace;
	int64_t every, keep;
};

struct settings {
	struct setting *v;
	size_t n, cap;
};

static int setting_add(void *ctx, uint64_t nspace, int64_t every, int64_t keep)
{
	struct settings *l = ctx;

	if (array_reserve(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return -ENOMEM;
	l->v[l->n++] = (struct setting){ nspace, every, keep };
	return 0;
}

int tally_autosnapshot_set(struct tally *t, const char *ns, int64_t every,
			   int64_t keep)
{
	struct meta_inode md;
	int rc = tally_nspace_name_ok(ns);

	if (rc)
		return rc;
	if (tally_meta_shared(t))
		return -EOPNOTSUPP; /* as snapshots (13.5) */
	tally_lock(t);
	rc = tally_nspace_row(t, ns, &md);
	if (!rc)
		rc = meta_room(t->meta);
	if (!rc) {
		rc = meta_begin(t->meta);
		if (!rc)
			rc = meta_autosnap_set(t->meta, md.nspace, every, keep);
		rc = tally_txn_end(t, rc);
	}
	if (!rc) {
		/* read again at the next tick */
		t->autosnap_gen++;
		t->autosnap_next = 0;
		rc = tally_txn_sync(t);
	}
	tally_unlock(t);
	return rc;
}

int tally_autosnapshot_get(struct tally *t, const char *ns, int64_t *every,
			   int64_t *keep)
{
	struct settings l = { 0 };
	struct meta_inode md;
	int rc = tally_nspace_name_ok(ns);

	*every = *keep = 0;
	if (rc)
		return rc;
	tally_lock(t);
	rc = tally_nspace_row(t, ns, &md);
	if (!rc)
		rc = meta_autosnaps(t->meta, setting_add, &l);
	tally_unlock(t);
	for (size_t i = 0; !rc && i < l.n; i++)
		if (l.v[i].nspace == md.nspace) {
			*every = l.v[i].every;
			*keep = l.v[i].keep;
		}
	free(l.v);
	return rc;
}

bool tally_autosnap_due(struct tally *t)
{
	int64_t now = (int64_t)time(NULL);
	bool due;

	tally_lock(t);
	due = !t->autosnap_running && now >= t->autosnap_next;
	if (due)
		t->autosnap_running = true;
	tally_unlock(t);
	return due;
}

void tally_autosnap_skip(struct tally *t)
{
	tally_lock(t);
	t->autosnap_running = false;
	t->autosnap_next = (int64_t)time(NULL) + AUTO_RETRY;
	tally_unlock(t);
}

/* The automatic snapshots of a namespace, oldest first. */
struct autos {
	struct auto_snap {
		char name[TALLY_NAME_MAX + 1];
		int64_t created;
	} * v;
	size_t n, cap;
};

static int auto_add(void *ctx, const struct meta_snapshot *sn)
{
	struct autos *a = ctx;

	if (strncmp(sn->name, AUTO_PREFIX, strlen(AUTO_PREFIX)))
		return 0; /* a user's */
	if (array_reserve(&a->v, &a->cap, a->n + 1, sizeof(*a->v)))
		return -ENOMEM;
	snprintf(a->v[a->n].name, sizeof(a->v[a->n].name), "%s", sn->name);
	a->v[a->n++].created = sn->created;
	return 0;
}

/* Setting @s at time @now: a snapshot if one is due, then the oldest
 * beyond its count removed; *@next: when its next one is due. */
static int autosnap_one(struct tally *t, const struct setting *s, int64_t now,
			int64_t *next)
{
	struct autos a = { 0 };
	char ns[TALLY_NAME_MAX + 1];
	int64_t last, ver;
	int rc;

	tally_lock(t);
	rc = meta_nspace_name(t->meta, s->nspace, ns, sizeof(ns));
	if (rc == -ENOENT) {
		/* the namespace is gone: its setting with it */
		rc = meta_autosnap_set(t->meta, s->nspace, 0, 0);
		tally_unlock(t);
		return rc;
	}
	if (!rc)
		rc = meta_snapshots(t->meta, s->nspace, false, auto_add, &a);
	tally_unlock(t);
	last = a.n ? a.v[a.n - 1].created : 0;
	if (!rc && now - last >= s->every) {
		time_t at = (time_t)now;
		struct tm tm;

		if (array_reserve(&a.v, &a.cap, a.n + 1, sizeof(*a.v)))
			rc = -ENOMEM;
		else if (!gmtime_r(&at, &tm) ||
			 !strftime(a.v[a.n].name, sizeof(a.v[a.n].name),
				   AUTO_PREFIX "%Y%m%d-%H%M%S", &tm))
			rc = -EINVAL;
		if (!rc)
			rc = tally_snapshot_as(t, ns, a.v[a.n].name, false,
					       &ver);
		if (!rc) {
			a.v[a.n++].created = now;
			last = now;
		} else if (rc == -EEXIST) {
			rc = 0; /* one of this second already */
		}
	}
	/* the oldest beyond the count go */
	for (size_t i = 0; !rc && a.n - i > (size_t)s->keep; i++)
		rc = tally_rmsnapshot(t, ns, a.v[i].name);
	free(a.v);
	if (last + s->every < *next)
		*next = last + s->every;
	return rc;
}

void tally_autosnap_run(void *arg)
{
	struct tally *t = arg;
	struct settings l = { 0 };
	int64_t now = (int64_t)time(NULL), next = INT64_MAX;
	uint64_t gen;
	int rc;

	tally_lock(t);
	gen = t->autosnap_gen;
	rc = meta_autosnaps(t->meta, setting_add, &l);
	tally_unlock(t);
	if (rc) {
		log_msg(LOG_ERR, "automatic snapshots: settings: %s",
			strerror(-rc));
		next = now + AUTO_RETRY;
	}
	for (size_t i = 0; !rc && i < l.n && !tally_closing(t); i++) {
		int err = autosnap_one(t, &l.v[i], now, &next);

		if (err) {
			log_msg(LOG_ERR,
				"automatic snapshot of namespace %" PRIu64
				": %s",
				l.v[i].nspace, strerror(-err));
			if (now + AUTO_RETRY < next)
				next = now + AUTO_RETRY;
		}
	}
	free(l.v);
	tally_lock(t);
	t->autosnap_running = false;
	/* a setting changed meanwhile: read again at the next tick */
	t->autosnap_next = t->autosnap_gen == gen ? next : 0;
	tally_unlock(t);
}
