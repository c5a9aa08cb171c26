/* SPDX-License-Identifier: MIT */
/*
 * Node reports: this mount's active set (the objects its flushes in
 * flight or parked may still commit), written to the store by
 * tally_report(), and the timers of reports and automatic GC cycles that
 * the flusher thread asks.
 */
#include "core/cluster/cluster.h"
#include "core/fs/tally_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/array.h"
#include "core/util/log.h"
#include "core/meta/meta.h"

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

	tally_lock(t);
	for (i = 0; i < itable_size(t) && !rc; i++) {
		struct inode *ip;

		for (ip = t->itable[i]; ip && !rc; ip = ip->next) {
			if (!ip->io)
				continue; /* no flush holds it */
			pthread_mutex_lock(&ip->io->mlock);
			rc = active_of(t, ip->io->inflight, &a);
			if (!rc)
				rc = active_of(t, ip->io->failed, &a);
			pthread_mutex_unlock(&ip->io->mlock);
		}
	}
	if (!rc) {
		int64_t now = 0;

		int64_t before = meta_change_count(t->meta);

		/* stamped by the store's clock, which GC's prune reads */
		rc = meta_begin(t->meta);
		if (!rc)
			rc = meta_now(t->meta, &now);
		if (!rc)
			rc = meta_node_report(t->meta, t->node_id, now, a.v,
					      a.n);
		rc = tally_txn_end(t, rc);
		tally_upkeep_changes(t, meta_change_count(t->meta) - before);
	}
	if (!rc)
		t->last_report = (int64_t)time(NULL);
	tally_unlock(t);
	free(a.v);
	if (rc)
		log_msg(LOG_WARNING, "node report failed: %s", strerror(-rc));
	return rc;
}

bool report_due(struct tally *t)
{
	bool due;

	tally_lock(t);
	due = time(NULL) - t->last_report >= t->report_interval;
	tally_unlock(t);
	return due;
}

bool report_gc_due(struct tally *t)
{
	int64_t now = (int64_t)time(NULL);
	bool due = false;

	tally_lock(t);
	if (t->gc_interval && now - t->last_gc >= t->gc_interval) {
		t->last_gc = now;
		due = true;
	}
	tally_unlock(t);
	return due;
}
