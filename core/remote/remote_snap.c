/* SPDX-License-Identifier: MIT */
/*
 * Metadata snapshots: the SQLite online backup uploaded to the bucket,
 * the snapshots kept (snapshot_keep) and their epochs, the snapshot
 * timer; and the listings of the bucket's keys.
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
/* metadata snapshots */

struct backup_ctx {
	struct tally *t;
	const char *path;
	struct meta_backup *b;
	int more;
	int64_t epoch;	 /* of the copy (meta_snap_epoch_bump()) */
	int64_t changes; /* meta_change_count() after it */
};

static int backup_begin(struct meta *m, void *arg)
{
	struct backup_ctx *c = arg;

	return meta_backup_begin(m, c->path, &c->b);
}

static int backup_step(struct meta *m, void *arg)
{
	struct backup_ctx *c = arg;

	c->more = meta_backup_step(c->b, 512);
	if (c->more < 0)
		return c->more;
	/* the copy is whole: in the same hold, later deletions go to the
	 * next epoch (a key deleted after the copy is named by it) */
	if (c->more == 0) {
		int rc = meta_snap_epoch_bump(m, &c->epoch);

		c->changes = tally_meta_changes_locked(c->t);
		return rc;
	}
	return 0;
}

/* Drop from @arg the names the bucket has now; -ESTALE if one is gone
 * without having been uploaded (the snapshot cannot be used). */
static int names_in_bucket(struct meta *m, void *arg)
{
	struct names *l = arg;
	size_t i = 0;

	while (i < l->n) {
		struct meta_remote_state st;
		int rc = meta_remote_state(m, l->v[i], &st);

		if (rc == -ENOENT) {
			rc = meta_remote_del_queued(m, l->v[i]);
			if (rc == 0)
				return -ESTALE;
			st.remote = rc == 1;
		} else if (rc) {
			return rc;
		}
		if (st.remote)
			memcpy(l->v[i], l->v[--l->n], sizeof(*l->v));
		else
			i++;
	}
	return 0;
}

struct kept_ctx {
	struct tally *t;
	const char *key;
	int64_t epoch;
	struct bucket_keys *k;
};

/* The records of snapshots are upkeep: no change to snapshot. */
static int kept_record(struct meta *m, void *arg)
{
	struct kept_ctx *c = arg;
	int64_t before = meta_change_count(m);
	int rc = meta_snap_record(m, c->key, c->epoch);

	tally_upkeep_changes(c->t, meta_change_count(m) - before);
	return rc;
}

static int kept_write(struct meta *m, void *arg)
{
	struct kept_ctx *c = arg;
	int64_t before = meta_change_count(m);
	int rc = meta_snap_kept(m, (const char *const *)c->k->v, c->k->n);

	tally_upkeep_changes(c->t, meta_change_count(m) - before);
	return rc;
}

/*
 * Snapshot @key (of @epoch) is in the bucket: recorded, the snapshots
 * beyond the newest snapshot_keep deleted (only from a whole listing that
 * shows the one just made), and the epoch of the oldest one the bucket
 * keeps recorded from a listing made after (the deletion verdicts keep
 * what it names, reap_remote_free()). A failure keeps the record of
 * before: an older epoch, which keeps more.
 */
static void snap_kept(struct remote *r, struct s3 *s, const char *key,
		      int64_t epoch)
{
	struct bucket_keys k = { 0 };
	struct kept_ctx c = { r->t, key, epoch, &k };
	int rc = tally_meta_txn(r->t, kept_record, &c);

	/* no reap in a bucket another store took over */
	if (!rc && rl_still_owner(r) == 1 &&
	    bucket_list_snapshots(&r->cfg, s, &k) == 0 &&
	    bucket_keys_has(&k, key) &&
	    reap_snapshots(s, (const char *const *)k.v, k.n,
			   r->snapshot_keep)) {
		bucket_keys_release(&k);
		rc = bucket_list_snapshots(&r->cfg, s, &k);
	}
	if (!rc && k.n)
		rc = tally_meta_txn(r->t, kept_write, &c);
	if (rc)
		log_msg(LOG_WARNING,
			"remote: the snapshots kept are not recorded: %s "
			"(deletions keep what older ones name)",
			strerror(-rc));
	bucket_keys_release(&k);
}

/*
 * The name of a new snapshot (@rel, its key @key): SNAP_PREFIX, the data
 * sequence, the time in seconds, ".db". A name the bucket has already (a
 * second snapshot in the same second with the same data sequence: a
 * `drain remote`, an `rm`, a `drain remote` again) gets "~NNN" after the
 * time, which sorts after it: every snapshot keeps a name of its own,
 * and the bucket's history every state it was given. 0 or -errno.
 */
static int snap_name(struct remote *r, struct s3 *s, uint64_t seq, char *rel,
		     size_t rlen, char *key, size_t len)
{
	long long now = (long long)time(NULL);
	unsigned n;
	int rc = 0;

	for (n = 0; n < 1000; n++) {
		uint64_t size;

		if (n == 0)
			snprintf(rel, rlen,
				 SNAP_PREFIX "%020" PRIu64 "-%010lld.db", seq,
				 now);
		else
			snprintf(rel, rlen,
				 SNAP_PREFIX "%020" PRIu64 "-%010lld~%03u.db",
				 seq, now, n);
		rc = s3_key(&r->cfg, rel, key, len);
		if (!rc)
			rc = s3_head(s, key, &size);
		if (rc)
			return rc == -ENOENT ? 0 : rc;
	}
	return -EEXIST;
}

/* The copy at @path (open as *@fd) sealed into a file of its own,
 * which replaces *@fd and *@st (unlinked at once: the descriptor keeps
 * it until the upload ends). */
static int seal_snapshot(struct remote *r, const char *path, const char *rel,
			 int *fd, struct stat *st)
{
	char sealed[4200];
	int out, rc;

	snprintf(sealed, sizeof(sealed), "%s.sealed", path);
	out = open(sealed, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	unlink(sealed);
	rc = seal_fd(&r->seal, seal_snapshot_ctx(rel), *fd, out, NULL);
	if (!rc && (fstat(out, st) || lseek(out, 0, SEEK_SET) < 0))
		rc = -errno;
	if (rc) {
		close(out);
		return rc;
	}
	close(*fd);
	*fd = out;
	return 0;
}

/* Whether a request of the snapshot's that failed with @rc at attempt
 * @tries is tried again before @end: a failure of the server, after
 * its backoff, unless the loop stops. */
static bool snap_retry(struct remote *r, struct s3 *s, int rc, unsigned tries,
		       double end)
{
	bool stop;

	if (rc != -EAGAIN && rc != -EIO && rc != -ENOSPC)
		return false;
	rl_note_error(r, "snapshot upload", s3_last_error(s));
	pthread_mutex_lock(&r->lock);
	stop = r->stop_workers;
	pthread_mutex_unlock(&r->lock);
	if (stop || mono() + rl_backoff_delay(r, tries) > end)
		return false;
	usleep((useconds_t)(rl_backoff_delay(r, tries) * 1e6));
	return true;
}

int remote_snapshot(struct remote *r, double timeout, char *key, size_t len)
{
	char path[4096], rel[128];
	struct backup_ctx b = { r->t, path, NULL, 1, 0, 0 };
	struct names q = { 0 };
	double end = mono() + (timeout > 0 ? timeout : 3600);
	struct s3 *s = NULL;
	struct stat st;
	uint64_t seq;
	unsigned tries;
	int rc, fd = -1;

	key[0] = '\0';
	/* a shared database is backed up by its own server's means */
	if (tally_meta_shared(r->t))
		return 0;
	if (rl_fenced(r))
		return -EROFS; /* the bucket is another store's now */
	pthread_mutex_lock(&r->snap_lock);
	snprintf(path, sizeof(path), "%s/snapshot.tmp", tally_store_path(r->t));
	unlink(path);
	seq = tally_done_seq(r->t);
	/* a consistent copy, by steps, each under the lock */
	rc = tally_meta_read(r->t, backup_begin, &b);
	while (!rc && b.more > 0)
		rc = tally_meta_read(r->t, backup_step, &b);
	if (b.b) {
		int rc2 = meta_backup_end(b.b);

		if (!rc)
			rc = rc2;
	}
	/* objects before the metadata that names them: what the copy has
	 * queued must be in the bucket first */
	if (!rc)
		rc = meta_snapshot_queued(path, rl_names_add, &q);
	pthread_mutex_lock(&r->lock);
	r->hurry++;
	pthread_mutex_unlock(&r->lock);
	while (!rc) {
		rc = tally_meta_read(r->t, names_in_bucket, &q);
		if (rc || !q.n)
			break;
		if (mono() > end) {
			rc = -ETIMEDOUT;
			break;
		}
		pthread_mutex_lock(&r->lock);
		if (r->stop_workers)
			rc = -ESHUTDOWN;
		pthread_mutex_unlock(&r->lock);
		if (rc)
			break;
		remote_kick(r);
		usleep(100 * 1000);
	}
	pthread_mutex_lock(&r->lock);
	r->hurry--;
	pthread_mutex_unlock(&r->lock);
	if (rc == -ESTALE)
		log_msg(LOG_NOTICE, "remote: metadata snapshot dropped: an "
				    "object it names went before its upload");
	if (rc)
		goto out;
	s = rl_conn_get(r);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (!s || fd < 0 || fstat(fd, &st)) {
		rc = !s ? -ENOMEM : -errno;
		goto out;
	}
	/* its name's check and its upload retried like any upload, within
	 * the deadline (the server restarted meanwhile, say) */
	tries = 1;
	do
		rc = snap_name(r, s, r->snap_base + seq, rel, sizeof(rel), key,
			       len);
	while (rc && snap_retry(r, s, rc, tries++, end));
	if (!rc && r->sealed)
		rc = seal_snapshot(r, path, rel, &fd, &st);
	tries = 1;
	while (!rc) {
		rc = s3_put_fd(s, key, fd, (uint64_t)st.st_size);
		if (!rc || !snap_retry(r, s, rc, tries++, end))
			break;
		rc = 0;
	}
	if (rc) {
		rl_note_error(r, "snapshot upload", s3_last_error(s));
		goto out;
	}
	r->snap_seq = seq;
	pthread_mutex_lock(&r->lock);
	r->st.snapshots++;
	snprintf(r->st.last_snapshot, sizeof(r->st.last_snapshot), "%s", key);
	pthread_mutex_unlock(&r->lock);
	r->snap_changes = b.changes;
	snap_kept(r, s, key, b.epoch);
out:
	if (fd >= 0)
		close(fd);
	rl_conn_put(r, s);
	unlink(path);
	free(q.v);
	pthread_mutex_unlock(&r->snap_lock);
	if (rc)
		log_msg(LOG_WARNING, "remote: metadata snapshot failed: %s",
			strerror(-rc));
	return rc;
}

/* Every snapshot_interval, a snapshot if anything was committed since. */

void *rl_snap_main(void *arg)
{
	struct remote *r = arg;

	pthread_mutex_lock(&r->lock);
	while (!r->stop_workers) {
		struct timespec ts;
		uint64_t last;
		int64_t changes;
		char key[1024];

		deadline_ts(r->snapshot_interval, &ts);
		pthread_cond_timedwait(&r->snap_wake, &r->lock, &ts);
		if (r->stop_workers)
			break;
		pthread_mutex_unlock(&r->lock);
		pthread_mutex_lock(&r->snap_lock);
		last = r->snap_seq;
		changes = r->snap_changes;
		pthread_mutex_unlock(&r->snap_lock);
		/* a flush since the last one, or any change of the
		 * metadata (a chmod, a rename, an rm -rf) */
		if (tally_done_seq(r->t) != last ||
		    tally_meta_changes(r->t) != changes)
			remote_snapshot(r, r->snapshot_interval, key,
					sizeof(key));
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}
