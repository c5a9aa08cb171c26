/* SPDX-License-Identifier: MIT */
/*
 * Sessions: every mount is a node with a session row in the store
 * (core/meta/meta_session.c): its id (the node id its report is filed under),
 * host, pid, start, last heartbeat and the time after which the others
 * may take it for dead (a heartbeat every t->heartbeat seconds, expired
 * after SESSION_MISSED of them are missed).
 *
 * DESIGN NOTES
 *
 * With the embedded engine the node id is kept in the store (one mount
 * at a time, the same node again after a remount); with a shared engine
 * every mount is a new node with a random id.
 *
 * The flusher thread beats (session_tick()). A node whose session is
 * gone (expired and cleaned up by another node while it was stopped or
 * cut off) does not carry on under it: it registers again under a new
 * id and reports its active set at once (a flush whose objects were
 * collected meanwhile writes them again, as the single-host pipeline
 * does).
 *
 * A store directory (a node's cache) is held by one process at a time
 * (its lock file): the session its last mount left (STORE/session holds
 * its id) is dead once a new mount holds the directory, and goes at
 * once rather than when it expires (a remount after a crash).
 *
 * Whichever node holds the lease "cleanup" (a row, taken by a
 * conditional upsert, for one expiry) removes the sessions that expired
 * and what they held: their node reports.
 *
 * Locking: t->lock around every call on the metadata, as everywhere.
 */
#include "core/cluster/cluster.h"
#include "core/fs/tally_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util/array.h"
#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/store.h"

#define SESSION_MISSED 5 /* heartbeats missed before a session expires */
#define LEASE_CLEANUP "cleanup"

static int64_t expiry(struct tally *t)
{
	return t->heartbeat * SESSION_MISSED;
}

/* The session the last mount of this store directory left: its id, or
 * 0. */
static int64_t last_session(struct tally *t)
{
	char path[4096], buf[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/session", tally_store_path(t));
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return strtoll(buf, NULL, 10);
}

/* Remember this mount's session in the store directory (best effort:
 * without it, a crashed mount's session just expires). */
static void note_session(struct tally *t)
{
	char path[4096], tmp[4100];
	FILE *f;

	snprintf(path, sizeof(path), "%s/session", tally_store_path(t));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "%" PRId64 "\n", (int64_t)t->node_id);
	if (fclose(f) == 0)
		rename(tmp, path);
	else
		unlink(tmp);
}

/*
 * A renewal: this node's hold of every file it has open, again, in the
 * transaction that registers the new session (t->lock held), so that no
 * commit of the new node comes before them. The holds went with the old
 * session; a file another node freed meanwhile has no row: its number
 * goes into *@lost (a new array of *@nlost).
 */
static int holds_again(struct tally *t, uint64_t **lost, size_t *nlost)
{
	size_t i, cap = 0;
	int rc = 0;

	for (i = 0; i < itable_size(t) && !rc; i++) {
		struct inode *ip;

		for (ip = t->itable[i]; ip && !rc; ip = ip->next) {
			if (!ip->opens || !S_ISREG(ip->md.mode) || ip->freed ||
			    ip->lost)
				continue;
			rc = meta_hold_add(t->meta, t->node_id, ip->ino);
			if (rc != -ENOENT)
				continue;
			rc = array_reserve(lost, &cap, *nlost + 1,
					   sizeof(**lost));
			if (!rc)
				(*lost)[(*nlost)++] = ip->ino;
		}
	}
	return rc;
}

/* Files open here whose rows another node freed while this node's
 * session had expired (t->lock held): their descriptors fail with EIO
 * from now on, reads and writes alike (never holes, never a write taken
 * and dropped). */
static void mark_lost(struct tally *t, const uint64_t *inos, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		struct inode *ip = inode_find(t, inos[i]);

		if (!ip)
			continue;
		ip->lost = true;
		log_msg(LOG_ERR,
			"inode %" PRIu64 ": removed by another node while "
			"this node's session had expired; its open "
			"descriptors fail with EIO",
			inos[i]);
	}
}

/* Add this mount's session row (t->lock held); @rehold: a renewal (the
 * files open here are held again). */
static int session_add(struct tally *t, bool rehold)
{
	int64_t last = last_session(t), now = 0;
	uint64_t *lost = NULL;
	size_t nlost = 0;
	char host[256];
	int rc;

	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_now(t->meta, &now);
	/* this directory's last mount, dead: we hold its lock now */
	if (!rc && last && last != t->node_id)
		rc = meta_session_remove(t->meta, last);
	/* the embedded engine's node after a crash: its old row goes */
	if (!rc)
		rc = meta_session_remove(t->meta, t->node_id);
	if (!rc)
		rc = meta_session_add(t->meta, t->node_id, host,
				      (int64_t)getpid(), now, now + expiry(t));
	if (!rc && rehold)
		rc = holds_again(t, &lost, &nlost);
	rc = tally_txn_end(t, rc);
	if (!rc) {
		mark_lost(t, lost, nlost);
		t->last_beat = (int64_t)time(NULL);
		note_session(t);
	}
	free(lost);
	return rc;
}

int session_start(struct tally *t)
{
	int rc;

	tally_lock(t);
	/* a node stopped inside a transaction (SIGSTOP, a paused VM) would
	 * hold its locks, and every node waiting for them, for as long:
	 * the server ends it once its session could have expired, and the
	 * node, back, finds its connection lost and runs the operation
	 * again (or, its session gone, registers again first) */
	meta_set_idle_limit(t->meta, expiry(t));
	rc = session_add(t, false);
	tally_unlock(t);
	if (rc)
		log_msg(LOG_ERR, "cannot register the session: %s",
			strerror(-rc));
	return rc;
}

/* The inodes no link names and no node holds open (in a transaction). */
static int free_orphans(struct tally *t)
{
	size_t n = 0;
	int rc = meta_orphans_free(t->meta, &n);

	if (!rc && n)
		log_msg(LOG_INFO,
			"freed %zu unlinked inode(s) that expired "
			"sessions held open",
			n);
	return rc;
}

/* Remove the sessions that expired, if this node holds the cleanup
 * lease (t->lock held). */
static int cleanup(struct tally *t, int64_t now)
{
	int64_t *ids = NULL, before = meta_change_count(t->meta);
	size_t n = 0, i;
	int rc;

	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_lease_take(t->meta, LEASE_CLEANUP, t->node_id, now,
				     now + expiry(t));
	if (rc <= 0) {
		tally_txn_end(t, rc);
		tally_upkeep_changes(t, meta_change_count(t->meta) - before);
		return rc;
	}
	rc = meta_sessions_expired(t->meta, now, &ids, &n);
	for (i = 0; i < n && !rc; i++)
		rc = meta_session_remove(t->meta, ids[i]);
	/* the lease and the sessions are upkeep (an idle store keeps its
	 * snapshots); the files freed below are not */
	tally_upkeep_changes(t, meta_change_count(t->meta) - before);
	/* their holds went: the unlinked files only they held go too */
	if (!rc && n && meta_shared(t->meta))
		rc = free_orphans(t);
	rc = tally_txn_end(t, rc);
	for (i = 0; i < n && !rc; i++)
		log_msg(LOG_NOTICE,
			"node %" PRId64 ": its session expired; its report "
			"is withdrawn",
			ids[i]);
	free(ids);
	return rc;
}

int session_renew(struct tally *t)
{
	int64_t old = t->node_id;
	int rc;

	/* not under the old session: a new node, reporting at once; the
	 * holds the old one kept went with it */
	file_forget_kept_holds(t);
	/* the old node's dir_watch rows may be gone with it: directories
	 * it knew whole are asked about again (core/fs/dirnames.c) */
	dirnames_forget_all(t);
	t->node_id = store_random_id();
	meta_set_self(t->meta, t->node_id);
	rc = session_add(t, true);
	t->last_report = 0;
	log_msg(LOG_WARNING,
		"node %" PRId64 ": the session had expired; registered "
		"again as node %" PRId64,
		old, (int64_t)t->node_id);
	return rc;
}

int session_tick(struct tally *t)
{
	int64_t local = (int64_t)time(NULL), now = 0, before;
	int rc;

	tally_lock(t);
	/* the pace is this node's; the times written, the store's */
	if (local - t->last_beat < t->heartbeat) {
		tally_unlock(t);
		return 0;
	}
	/* a heartbeat is upkeep, no change to snapshot: an idle mount made
	 * a bucket snapshot at each one, and its kept history turned over
	 * in a day */
	before = meta_change_count(t->meta);
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_now(t->meta, &now);
	if (!rc)
		rc = meta_session_beat(t->meta, t->node_id, now,
				       now + expiry(t));
	rc = tally_txn_end(t, rc);
	tally_upkeep_changes(t, meta_change_count(t->meta) - before);
	if (rc == -ENOENT) {
		rc = session_renew(t);
	} else if (!rc) {
		t->last_beat = local;
	}
	if (!rc)
		rc = cleanup(t, now);
	tally_unlock(t);
	if (rc)
		log_msg(LOG_WARNING, "heartbeat failed: %s", strerror(-rc));
	return rc;
}

int session_end(struct tally *t)
{
	int rc = meta_begin(t->meta);

	if (!rc)
		rc = meta_session_remove(t->meta, t->node_id);
	if (!rc)
		rc = meta_lease_drop(t->meta, LEASE_CLEANUP, t->node_id);
	return tally_txn_end(t, rc);
}
