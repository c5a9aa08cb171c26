/* SPDX-License-Identifier: MIT */
/*
 * Several hosts (core/cluster/): this mount's session and its lease,
 * the node report of its active set, and the watch of other nodes'
 * changes. Built on the filesystem model (core/fs/tally_int.h); the model
 * reaches these through struct tally_upper (core/jobs/mount.c).
 */
#ifndef TALLY_CLUSTER_H
#define TALLY_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/fs/tally.h"

/* core/cluster/session.c: this mount's session (t->lock taken inside) */
int session_start(struct tally *t);
/* The heartbeat, when due, and the cleanup of expired sessions. */
int session_tick(struct tally *t);
/* The session is gone (expired, or pruned with its report): register
 * again under a new node id (t->lock held). */
int session_renew(struct tally *t);
/* Remove the session and its report (t->lock held). */
int session_end(struct tally *t);

/* core/cluster/report.c: node reports and the timers the flusher thread asks */
bool report_due(struct tally *t);
bool report_gc_due(struct tally *t);

/*
 * Write this mount's node report: its id, the time, and its active set
 * (objects its flushes in flight may still commit). Done at least every
 * report_interval and before every GC cycle; a clean unmount withdraws it.
 */
int tally_report(struct tally *t);

/* Keep @hooks (a rollback calls them, on every store) and start the
 * watch (nothing more with the embedded engine): 0 or -errno. */
int tally_watch(struct tally *t, const struct tally_inval *hooks);
/* Stop it and forget the hooks (before the front end goes); idempotent. */
void tally_unwatch(struct tally *t);
/* Changes of other nodes handed to the hooks so far (tests, status). */
uint64_t tally_watch_seen(struct tally *t);

#endif
