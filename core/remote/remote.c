/* SPDX-License-Identifier: MIT */
/*
 * The remote tier: a storage loop that ships committed objects to an S3
 * bucket, deletes the keys nothing names any more (after a delay), and
 * evicts local copies the bucket holds when the cache is over its size;
 * and the fetch of an evicted object when a read needs it.
 *
 * DESIGN NOTES
 *
 * Jobs come from persistent queues written by triggers in the
 * transaction that causes them (core/meta/meta_remote.c): remote_up (an
 * object row was made) and remote_del (a row of an object in the bucket
 * was deleted). The loop thread owns them: it reads the head of each
 * queue, hands jobs to at most max_uploads worker threads (each with its
 * own connection, kept alive), and records what they report, one
 * transaction per round. A failed job stays queued: it is retried after
 * a backoff (0.2 s doubling up to retry_max), and being the lowest
 * sequence it comes first again. Nothing is dropped at a stop: what is
 * queued when the loop stops is taken up by the next mount.
 *
 * Invariants:
 *  1. Objects before metadata: objects.remote is set only after the
 *     bucket answered the object's PUT with success, so no row claims a
 *     key the bucket lacks. The PUT sends the SHA-256 of the body (the
 *     server checks it), and the local file is rehashed first: a local
 *     copy that does not hash to its name is never shipped.
 *  2. durable_remote_seq is a low-water mark: done_seq is read first,
 *     then the queue; with the queue empty it is that done_seq, else one
 *     below the lowest queued sequence (a queue row's sequence is never
 *     above that of the flush that committed the object). It never goes
 *     down.
 *  3. The deletion rule holds for the bucket (core/objects/reap.c, 4): a key is
 *     deleted only when its delay passed, the WAL is synced, and the
 *     verdict (asked under the metadata lock) says nothing names it; the
 *     name is marked deleting in that hold, and an upload of the same
 *     name (the content written again) waits until the DELETE returned,
 *     so the two never race in the bucket. A shared store's claim ends
 *     however the DELETE ends (done or failed: recorded even in a round
 *     where nothing succeeded; never started: dropped), and one whose
 *     node is gone is taken over (rl_take_stale_claims()): a claim never
 *     holds an upload, and durable_remote_seq, for good.
 *  4. A local copy is evicted only when its row says the bucket holds
 *     it (reap_evict_free()), after the commit that marks it evicted;
 *     a fetched copy is checked against its name and size before it is
 *     stored, and marked cached after it is in place, under the lock
 *     that finds its row (no row: the copy is reaped again, never left
 *     as a file nothing names or counts); so is a copy a
 *     flush writes for a row that says evicted (core/fs/flush.c), after
 *     remote_vet() compared the bucket's bytes with the block's.
 *  5. A shared store (several nodes): the rows are every node's, so
 *     they say nothing of this node's cache. Its bytes are those of the
 *     object files on disk (objstore_count_dir(), exact once counted;
 *     the loop counts the directories at start, at most COUNT_SLICE
 *     seconds a round, and evicts nothing before the count is whole),
 *     its candidates are sampled from the fan-out directories in turn,
 *     and the verdict is the same, without a mark: a copy evicted is
 *     one whose row says the bucket holds the object.
 *
 * Locks: t->lock (through tally_meta_read/txn) before r->lock, never the
 * other way; r->lock guards the job lists, the counters and the names
 * deleting and fetching. No request is made under either.
 *
 * Files: this one holds the loop thread, its connections, the bucket's
 * marker and the interface; remote_up.c the uploads, remote_del.c the
 * deletions in the bucket, remote_cache.c eviction, remote_snap.c the
 * metadata snapshots, remote_fetch.c fetches and read-ahead; the state
 * they share is in core/remote/remote_loop.h, its cross-file functions named
 * rl_*.
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

/* s3_get() sink into a buffer of fixed size: -EFBIG past it. */
int rl_mem_sink(void *arg, const void *buf, size_t n)
{
	struct membuf *b = arg;

	if (n > b->cap - b->n)
		return -EFBIG;
	memcpy(b->buf + b->n, buf, n);
	b->n += n;
	return 0;
}

/* Whether marker @got names this store with other envelope lines than
 * @want (logged: the bucket is sealed otherwise than this mount). */
static bool marker_seal_differs(struct remote *r, const char *got,
				const char *want)
{
	char gs[SEAL_TEXT_MAX], ws[SEAL_TEXT_MAX], gid[17], wid[17];
	uint64_t gk, wk;
	size_t gl, wl;

	if (bucket_seal_parse(got, gs, sizeof(gs), &gk) ||
	    bucket_seal_parse(want, ws, sizeof(ws), &wk))
		return false;
	gl = strlen(got) - strlen(gs);
	wl = strlen(want) - strlen(ws);
	if (gl != wl || strncmp(got, want, gl) || !strcmp(gs, ws))
		return false;
	seal_key_id_text(gk, gid);
	seal_key_id_text(wk, wid);
	log_msg(LOG_ERR,
		"bucket '%s' prefix '%s': its marker says its bodies are %s%s%s, "
		"this store's say %s%s%s: refused",
		r->cfg.bucket, r->cfg.prefix, gs[0] ? "sealed" : "plain",
		gk ? " with key " : "", gk ? gid : "",
		ws[0] ? "sealed" : "plain", wk ? " with key " : "",
		wk ? wid : "");
	return true;
}

/* Whether markers @got and @want name the same store with keyrings
 * (envelope 2 or 3) and differ in their key lines only: the rings a
 * rekey rewrites (this mount's, or another node's of a shared store), or
 * the upgrade of a record of envelope 2 to 3. */
static bool rings_differ(const char *got, const char *want)
{
	const char *g = strstr(got, "envelope "),
		   *w = strstr(want, "envelope ");
	char seal[SEAL_TEXT_MAX];
	uint64_t id;

	return g && w && seal_ringed(got) && seal_ringed(want) &&
	       g - got == w - want && !strncmp(got, want, g - got) &&
	       !bucket_seal_parse(got, seal, sizeof(seal), &id) &&
	       !bucket_seal_parse(want, seal, sizeof(seal), &id);
}

/*
 * Write the marker's rings as the store's record has them: read again
 * first (a rekey on another node may have ended since this mount read
 * it: a mount's bucket check takes up to 5 s), and after, written again
 * while the record changed meanwhile, so that a marker never keeps
 * naming a key whose rekey has ended. @seal and @want: the record and
 * marker text this mount had, updated.
 */
static int put_rings(struct remote *r, struct s3 *s, const char *key,
		     char seal[SEAL_TEXT_MAX], char want[MARKER_MAX])
{
	char now[SEAL_TEXT_MAX];
	int i, rc = 0;

	for (i = 0; i < 3; i++) {
		bool changed = rl_seal_refresh(r, now, sizeof(now)) == 0 &&
			       strcmp(now, seal) != 0;

		if (i && !changed)
			break; /* written as the record is */
		if (changed) {
			memcpy(seal, now, SEAL_TEXT_MAX);
			bucket_marker_text(r->store_id, r->ancestors, seal,
					   want, MARKER_MAX);
		}
		rc = s3_put_buf(s, key, want, strlen(want));
		if (rc)
			break;
	}
	return rc;
}

/* 0 when the bucket holds this store (its marker written if missing
 * and @may_write; its rings made this store's if they differ and @fix),
 * -EUCLEAN when it holds another or lost its marker, or the request's
 * error. */
static int check_marker(struct remote *r, struct s3 *s, bool may_write,
			bool fix)
{
	char key[1024], want[MARKER_MAX], got[MARKER_MAX + 1];
	char seal[SEAL_TEXT_MAX];
	struct membuf body = { got, 0, sizeof(got) - 1 };
	int rc = s3_key(&r->cfg, MARKER_KEY, key, sizeof(key));

	if (rc)
		return rc;
	pthread_mutex_lock(&r->lock); /* a rekey changes it */
	memcpy(seal, r->seal_text, sizeof(seal));
	pthread_mutex_unlock(&r->lock);
	bucket_marker_text(r->store_id, r->ancestors, seal, want, sizeof(want));
	rc = s3_get(s, key, 0, 0, rl_mem_sink, &body, NULL);
	if (rc == -ENOENT) {
		if (!may_write) {
			log_msg(LOG_ERR,
				"bucket '%s' prefix '%s' has lost the marker "
				"of this store ('%s'): refused",
				r->cfg.bucket, r->cfg.prefix, key);
			return -EUCLEAN;
		}
		rc = s3_put_buf(s, key, want, strlen(want));
		if (rc)
			log_msg(LOG_ERR, "cannot write '%s' to bucket '%s': %s",
				key, r->cfg.bucket, s3_last_error(s));
		return rc;
	}
	if (rc)
		return rc;
	got[body.n] = '\0';
	if (strcmp(got, want) != 0 && rings_differ(got, want)) {
		if (!fix)
			return 0;
		rc = put_rings(r, s, key, seal, want);
		if (rc)
			log_msg(LOG_ERR,
				"cannot write the keyrings of '%s' to bucket "
				"'%s': %s",
				key, r->cfg.bucket, s3_last_error(s));
		else
			log_msg(LOG_NOTICE,
				"bucket '%s' prefix '%s': the marker's keyrings "
				"are the store's again",
				r->cfg.bucket, r->cfg.prefix);
		return rc;
	}
	if (strcmp(got, want) != 0) {
		if (marker_seal_differs(r, got, want))
			return -EUCLEAN; /* logged */
		log_msg(LOG_ERR,
			"bucket '%s' prefix '%s' holds another store "
			"(its '%s' does not name store %" PRIu64 "): refused",
			r->cfg.bucket, r->cfg.prefix, key, r->store_id);
		return -EUCLEAN;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* connections for the loop and for fetches */

/*
 * Whether the bucket's marker still names this store (1), names another
 * (0: fenced from now on, said once), or could not be read (0). A
 * deletion, an upload or a snapshot's reap goes only on a 1: a restore
 * that took the bucket over (core/remote/restore.c) makes the store it came
 * from stop writing and deleting there.
 */
struct s3 *rl_conn_get(struct remote *r)
{
	struct s3 *s = NULL;

	pthread_mutex_lock(&r->lock);
	if (r->nconns)
		s = r->conns[--r->nconns];
	pthread_mutex_unlock(&r->lock);
	if (!s && s3_new(&r->cfg, &s))
		return NULL;
	return s;
}

void rl_conn_put(struct remote *r, struct s3 *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&r->lock);
	if (r->nconns < CONNS_MAX) {
		r->conns[r->nconns++] = s;
		s = NULL;
	}
	pthread_mutex_unlock(&r->lock);
	s3_free(s);
}

void rl_note_error(struct remote *r, const char *what, const char *err)
{
	pthread_mutex_lock(&r->lock);
	snprintf(r->st.last_error, sizeof(r->st.last_error), "%s: %s", what,
		 err);
	pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------------ */
/* the loop thread */

struct bind_ctx {
	const char *url;
	char *bound, *marker, *ancestors, *seal;
	uint64_t store_id;
	int64_t snap_base; /* config snap_seq_base: a restored store's */
};

static int bind_read(struct meta *m, void *arg)
{
	struct bind_ctx *c = arg;
	int64_t id;
	int rc = meta_config_get(m, "store_id", &id);

	if (rc)
		return rc;
	c->store_id = (uint64_t)id;
	rc = meta_config_get(m, "snap_seq_base", &c->snap_base);
	if (rc && rc != -ENOENT)
		return rc;
	rc = meta_remote_conf_get(m, "ancestors", &c->ancestors);
	if (rc && rc != -ENOENT)
		return rc;
	rc = meta_remote_conf_get(m, "url", &c->bound);
	if (rc && rc != -ENOENT)
		return rc;
	rc = meta_remote_conf_get(m, "seal", &c->seal);
	if (rc && rc != -ENOENT)
		return rc;
	rc = meta_remote_conf_get(m, "marker", &c->marker);
	return rc == -ENOENT ? 0 : rc;
}

static int bind_write(struct meta *m, void *arg)
{
	struct bind_ctx *c = arg;
	int rc = 0;

	if (!c->bound)
		rc = meta_remote_conf_set(m, "url", c->url);
	if (!rc && !c->bound && c->seal)
		rc = meta_remote_conf_set(m, "seal", c->seal);
	if (!rc)
		rc = meta_remote_enable(m, !c->bound);
	return rc;
}

static int marker_write(struct meta *m, void *arg)
{
	(void)arg;
	return meta_remote_conf_set(m, "marker", "1");
}

int rl_still_owner(struct remote *r)
{
	char key[1024];
	struct s3 *s;
	bool was;
	int rc;

	pthread_mutex_lock(&r->lock);
	was = r->fenced;
	pthread_mutex_unlock(&r->lock);
	if (was)
		return 0;
	s = rl_conn_get(r);
	rc = s ? check_marker(r, s, false, false) : -ENOMEM;
	rl_conn_put(r, s);
	if (!rc)
		return 1;
	if (rc != -EUCLEAN)
		return 0; /* in doubt: nothing deleted now */
	pthread_mutex_lock(&r->lock);
	r->fenced = true;
	snprintf(r->st.last_error, sizeof(r->st.last_error),
		 "fenced: the bucket's marker names another store (a restore "
		 "took it over): nothing is uploaded, deleted or snapshotted "
		 "there by this store any more");
	pthread_mutex_unlock(&r->lock);
	if (s3_key(&r->cfg, MARKER_KEY, key, sizeof(key)))
		key[0] = '\0';
	log_msg(LOG_ERR,
		"remote: bucket '%s' prefix '%s': '%s' no longer names store "
		"%" PRIu64 " (a restore took the bucket over): this store "
		"uploads, deletes and snapshots nothing there any more",
		r->cfg.bucket, r->cfg.prefix, key, r->store_id);
	return 0;
}

static int seal_read(struct meta *m, void *arg)
{
	char **out = arg;
	int rc = meta_remote_conf_get(m, "seal", out);

	return rc == -ENOENT ? 0 : rc;
}

int rl_seal_refresh(struct remote *r, char *text, size_t len)
{
	char *now = NULL;
	int rc = tally_meta_read(r->t, seal_read, &now);

	pthread_mutex_lock(&r->lock);
	if (!rc && now)
		snprintf(r->seal_text, sizeof(r->seal_text), "%s", now);
	snprintf(text, len, "%s", r->seal_text);
	pthread_mutex_unlock(&r->lock);
	free(now);
	return rc;
}

bool rl_rings_behind(struct remote *r)
{
	bool b;

	pthread_mutex_lock(&r->lock);
	b = r->rings_behind;
	pthread_mutex_unlock(&r->lock);
	return b;
}

int rl_marker_sync(struct remote *r)
{
	char text[SEAL_TEXT_MAX];
	struct s3 *s;
	int rc;

	/* the record as the store has it now (another node of a shared
	 * store may have changed it), not as this mount read it */
	rc = rl_seal_refresh(r, text, sizeof(text));
	s = rc ? NULL : rl_conn_get(r);
	if (!rc)
		rc = s ? check_marker(r, s, false, true) : -ENOMEM;
	rl_conn_put(r, s);
	pthread_mutex_lock(&r->lock);
	r->rings_behind = rc != 0;
	pthread_mutex_unlock(&r->lock);
	return rc;
}

bool rl_fenced(struct remote *r)
{
	bool f;

	pthread_mutex_lock(&r->lock);
	f = r->fenced;
	pthread_mutex_unlock(&r->lock);
	return f;
}

/*
 * Check the bucket and its marker: 0 (verified), or the error. Its
 * requests are small, and the mount waits for the first check: each
 * ends within CHECK_TIMEOUT (or remote_timeout, if shorter), so that a
 * server that accepts and never answers holds the mount that long, not
 * a whole remote_timeout per request; the loop checks again every 2 s.
 */
static int verify(struct remote *r, struct s3 *s, bool marker_known, bool fix)
{
	long limit = CHECK_TIMEOUT;
	int rc;

	if (r->cfg.stall_timeout > 0 && r->cfg.stall_timeout < limit)
		limit = r->cfg.stall_timeout;
	s3_set_timeout(s, limit);
	rc = s3_check(s);
	if (!rc)
		rc = check_marker(r, s, !marker_known, fix);
	s3_set_timeout(s, 0); /* the connection serves fetches next */
	if (!rc && !marker_known)
		rc = tally_meta_txn(r->t, marker_write, NULL);
	return rc;
}

/* A shared store: count the cache's directories not counted yet, for at
 * most COUNT_SLICE seconds (invariant 5). */
static void count_cache(struct remote *r)
{
	double end = mono() + COUNT_SLICE;

	while (r->count_dir < OBJSTORE_FANOUT && mono() < end) {
		int rc = objstore_count_dir(tally_objstore(r->t), r->count_dir);

		if (rc) {
			log_msg(LOG_WARNING,
				"remote: cannot count the local copies: %s",
				strerror(-rc));
			return; /* again next round */
		}
		r->count_dir++;
	}
}

static void *loop_main(void *arg)
{
	struct remote *r = arg;
	double next_verify = 0;

	for (;;) {
		struct job *jobs;
		struct timespec ts;
		bool stop;
		double now;

		pthread_mutex_lock(&r->lock);
		if (!r->finished && !r->kicked && !r->stop_loop) {
			deadline_ts(0.5, &ts);
			pthread_cond_timedwait(&r->report, &r->lock, &ts);
		}
		jobs = r->finished;
		r->finished = NULL;
		r->kicked = false;
		stop = r->stop_loop;
		pthread_mutex_unlock(&r->lock);
		if (jobs)
			rl_record(r, jobs);
		if (stop)
			break;
		now = mono();
		if (!r->verified && now >= next_verify) {
			struct s3 *s = rl_conn_get(r);
			int rc = s ? verify(r, s, r->marker_known, false)
				   : -ENOMEM;

			if (!rc) {
				r->verified = true;
				pthread_mutex_lock(&r->lock);
				r->st.reachable = true;
				pthread_mutex_unlock(&r->lock);
			} else {
				rl_note_error(r, "bucket check",
					      s ? s3_last_error(s)
						: strerror(-rc));
				next_verify = now + 2;
			}
			rl_conn_put(r, s);
		}
		/* the marker, every 10 s: a restore may take the bucket
		 * over (deletions and reaps check it first, too); its
		 * rings, every 2 s while they lag the store's record (a
		 * rekey's marker write that failed) */
		if (r->verified && now >= r->next_marker) {
			rl_still_owner(r);
			r->next_marker = now + 10;
		}
		if (r->verified && now >= r->next_rings && rl_rings_behind(r)) {
			rl_marker_sync(r);
			r->next_rings = now + 2;
		}
		if (r->verified && !rl_fenced(r))
			rl_schedule_uploads(r);
		if (tally_meta_shared(r->t))
			count_cache(r);
		rl_update_low(r);
		if (now >= r->next_stale && tally_meta_shared(r->t)) {
			rl_take_stale_claims(r);
			r->next_stale = now + 5;
		}
		if (r->verified && now >= r->next_delete) {
			rl_schedule_deletes(r);
			r->next_delete = now + 5;
		}
		if (r->cache_size && now >= r->next_evict && !rl_fenced(r)) {
			rl_evict(r);
			r->next_evict = now + 1;
		}
	}
	return NULL;
}

/*
 * The envelope of the store's bodies: decided by the mount that binds
 * the store (key_file, compress) and kept in its remote_conf 'seal',
 * which the marker repeats; a later mount must bring the same key (its
 * compress may change: each segment says whether it is compressed).
 * 0, or refused (logged).
 */
static int seal_setup(struct remote *r, const struct remote_opts *o,
		      struct bind_ctx *b)
{
	char have[17], err[256];
	uint64_t want_id = 0;
	int rc = 0;

	r->file = o->key;
	r->seal.key = o->key;
	if (!b->bound && (o->keyed || o->compress)) {
		/* a key: envelope 3, the store's own keys wrapped by the
		 * key file's; compression alone: envelope 1 */
		if (o->keyed)
			rc = seal_keyring_make(&r->file, &r->seal.key,
					       r->seal_text,
					       sizeof(r->seal_text));
		else
			snprintf(r->seal_text, sizeof(r->seal_text),
				 "envelope 1\n");
		if (rc) {
			log_msg(LOG_ERR, "cannot make the store's keys: %s",
				strerror(-rc));
			return rc;
		}
		b->seal = strdup(r->seal_text);
		if (!b->seal)
			return -ENOMEM;
		want_id = o->keyed ? r->file.id : 0;
	} else if (b->bound && b->seal) {
		if (bucket_seal_parse(b->seal, r->seal_text,
				      sizeof(r->seal_text), &want_id) ||
		    !r->seal_text[0]) {
			log_msg(LOG_ERR,
				"store's envelope record ('%s') is not one: "
				"refused",
				b->seal);
			return -EUCLEAN;
		}
	} else if (b->bound && (o->keyed || o->compress)) {
		log_msg(LOG_ERR,
			"store was bound to '%s' with plain bodies: key_file "
			"and compress apply to a store bound with them "
			"(sealing the plain bodies of a bucket is not built): "
			"refused",
			b->bound);
		return -EINVAL;
	}
	if (b->bound && o->keyed && seal_key_salt(&r->file, r->seal_text)) {
		snprintf(err, sizeof(err), "the seal record's salt is damaged");
		rc = -EBADMSG;
	} else if (b->bound) {
		rc = seal_key_open(r->seal_text, want_id,
				   o->keyed ? &r->file : NULL, &r->seal.key,
				   err, sizeof(err));
	}
	if (rc) {
		log_msg(LOG_ERR, "bucket '%s': %s%s: refused", b->url, err,
			rc == -ENOKEY	? ": mount with -o key_file=FILE "
					  "holding it"
			: rc == -EINVAL ? " (encrypting the plain bodies of a "
					  "bucket is not built)"
					: "");
		return rc;
	}
	/* a rekey cut short (kill -9): ended now, the old key's ring gone
	 * (the key in force, want_id, stays) */
	if (b->bound && o->keyed) {
		rc = rl_rekey_finish(r);
		if (rc)
			return rc;
	}
	/* envelope 2 stays until a rekey makes it 3 (not at a mount: the
	 * nodes of a shared store that run an older build could not read
	 * the marker, and would take it for another store's) */
	if (seal_record_version(r->seal_text) == 2)
		log_msg(LOG_NOTICE,
			"this store's seal record is envelope 2: 'tallyctl "
			"MOUNTPOINT rekey KEYFILE' (its key file will do) "
			"makes it envelope 3, its rings bound to the store and "
			"the key in force authenticated, once every node that "
			"mounts it runs this build or a later one");
	else
		explicit_bzero(&r->file, sizeof(r->file));
	seal_key_id_text(want_id, have);
	r->sealed = r->seal_text[0] != '\0';
	r->seal.keyed = o->keyed;
	r->seal.level = o->compress;
	r->seal.store_id = r->store_id;
	/* the mount opens objects only (snapshots are opened by a restore,
	 * which checks their store): an object keeps the id of the store
	 * that uploaded it, which every store restored from it after shares,
	 * however many restores back (a marker names 16 ancestors); its key
	 * name in the tag and its content hash bind it, so any id passes */
	r->seal.nstores = 0;
	r->st.sealed = r->sealed;
	r->st.encrypted = r->seal.keyed;
	r->st.compress = r->sealed ? r->seal.level : 0;
	if (r->seal.keyed)
		snprintf(r->st.key_id, sizeof(r->st.key_id), "%s", have);
	return 0;
}

/* ------------------------------------------------------------------ */
/* the interface */

int remote_new(struct tally *t, struct remote_opts *o, struct remote **out)
{
	struct bind_ctx b = { 0 };
	struct remote *r;
	struct s3 *s = NULL;
	char url[1024];
	unsigned i;
	int rc;

	r = calloc(1, sizeof(*r));
	if (!r) {
		s3_cfg_release(&o->cfg);
		return -ENOMEM;
	}
	r->t = t;
	r->cfg = o->cfg;
	memset(&o->cfg, 0, sizeof(o->cfg));
	r->max_jobs = o->max_uploads ? o->max_uploads : REMOTE_MAX_UPLOADS;
	r->cache_size = o->cache_size;
	r->delete_delay = o->delete_delay >= 0 ? o->delete_delay
					       : REMOTE_DELETE_DELAY;
	r->drain_timeout = o->drain_timeout >= 0 ? o->drain_timeout
						 : REMOTE_DRAIN_TIMEOUT;
	r->retry_max = o->retry_max > 0 ? o->retry_max : 30;
	r->upload_delay = o->upload_delay >= 0 ? o->upload_delay
					       : REMOTE_UPLOAD_DELAY;
	if (tally_meta_shared(t))
		r->upload_delay = 0; /* its queue holds stragglers only */
	r->started = mono();
	r->st.cache_size = r->cache_size;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->work, NULL);
	pthread_cond_init(&r->report, NULL);
	pthread_cond_init(&r->done, NULL);
	pthread_cond_init(&r->fetched, NULL);
	pthread_cond_init(&r->ahead_work, NULL);
	pthread_mutex_init(&r->snap_lock, NULL);
	pthread_mutex_init(&r->rekey_lock, NULL);
	pthread_mutex_init(&r->evict_lock, NULL);
	pthread_cond_init(&r->snap_wake, NULL);
	r->snapshot_interval = o->snapshot_interval >= 0
				       ? o->snapshot_interval
				       : REMOTE_SNAPSHOT_INTERVAL;
	if (tally_meta_shared(t))
		r->snapshot_interval = 0; /* remote_snapshot() */
	r->snapshot_keep = o->snapshot_keep ? o->snapshot_keep
					    : REMOTE_SNAPSHOT_KEEP;
	r->running = calloc(r->max_jobs, sizeof(*r->running));
	r->workers = calloc(r->max_jobs, sizeof(*r->workers));
	if (!r->running || !r->workers) {
		rc = -ENOMEM;
		goto out_free;
	}
	bucket_url(&r->cfg, url, sizeof(url));
	b.url = url;
	rc = tally_meta_read(t, bind_read, &b);
	if (rc)
		goto out_free;
	r->store_id = b.store_id;
	r->ancestors = b.ancestors;
	b.ancestors = NULL;
	r->snap_base = b.snap_base > 0 ? (uint64_t)b.snap_base : 0;
	r->marker_known = b.marker != NULL;
	if (b.bound && strcmp(b.bound, url) != 0) {
		log_msg(LOG_ERR,
			"store is bound to bucket '%s', not '%s': refused "
			"(mount it with -o remote=%s)",
			b.bound, url, b.bound);
		rc = -EUCLEAN;
		goto out_free;
	}
	rc = seal_setup(r, o, &b);
	if (rc)
		goto out_free;
	/* a key hides the objects' names too */
	r->cfg.names_key = r->seal.keyed ? r->seal.key.names : NULL;
	rc = s3_new(&r->cfg, &s);
	if (rc)
		goto out_free;
	rc = verify(r, s, r->marker_known, true);
	if (rc == -EACCES) {
		log_msg(LOG_ERR,
			"remote '%s' at '%s' refuses the credentials: %s", url,
			r->cfg.endpoint, s3_last_error(s));
		goto out_free;
	}
	if (rc == -ENOENT) {
		log_msg(LOG_ERR, "remote '%s' at '%s': no such bucket (%s)",
			url, r->cfg.endpoint, s3_last_error(s));
		goto out_free;
	}
	if (rc == -EUCLEAN)
		goto out_free; /* logged: another store's bucket */
	if (rc) {
		log_msg(LOG_WARNING,
			"remote '%s' at '%s' cannot be reached (%s): "
			"mounted, uploads wait for it",
			url, r->cfg.endpoint, s3_last_error(s));
		rl_note_error(r, "bucket check", s3_last_error(s));
	} else {
		r->verified = true;
		r->marker_known = true;
		r->st.reachable = true;
		r->rings_behind = false; /* check_marker() wrote them */
	}
	rc = tally_meta_txn(t, bind_write, &b);
	if (rc)
		goto out_free;
	r->conns[r->nconns++] = s;
	s = NULL;
	for (i = 0; i < r->max_jobs; i++) {
		if (pthread_create(&r->workers[i], NULL, rl_worker_main, r)) {
			rc = -EAGAIN;
			goto out_stop;
		}
		r->nworkers++;
	}
	if (pthread_create(&r->loop, NULL, loop_main, r)) {
		rc = -EAGAIN;
		goto out_stop;
	}
	if (r->snapshot_interval > 0 &&
	    pthread_create(&r->snap_thread, NULL, rl_snap_main, r) == 0)
		r->snap_thread_on = true;
	while (r->nahead_threads < REMOTE_AHEAD_THREADS &&
	       pthread_create(&r->ahead_threads[r->nahead_threads], NULL,
			      rl_ahead_main, r) == 0)
		r->nahead_threads++;
	free(b.bound);
	free(b.marker);
	free(b.ancestors);
	free(b.seal);
	log_msg(LOG_INFO, "remote '%s' at '%s': %u uploads at once", url,
		r->cfg.endpoint, r->max_jobs);
	*out = r;
	return 0;

out_stop:
	pthread_mutex_lock(&r->lock);
	r->stop_workers = true;
	pthread_cond_broadcast(&r->work);
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < r->nworkers; i++)
		pthread_join(r->workers[i], NULL);
out_free:
	s3_free(s);
	while (r->nconns)
		s3_free(r->conns[--r->nconns]);
	free(b.bound);
	free(b.marker);
	free(b.ancestors);
	free(b.seal);
	free(r->ancestors);
	free(r->running);
	free(r->workers);
	s3_cfg_release(&r->cfg);
	explicit_bzero(&r->seal, sizeof(r->seal));
	explicit_bzero(&r->file, sizeof(r->file));
	free(r);
	return rc;
}

int remote_object_key(struct remote *r, const char *name, int64_t gen,
		      char *key, size_t len)
{
	char kn[OBJKEY_MAX];

	meta_key_name(name, gen, kn);
	return bucket_object_key(&r->cfg, kn, key, len);
}

void remote_kick(struct remote *r)
{
	pthread_mutex_lock(&r->lock);
	r->kicked = true;
	pthread_cond_signal(&r->report);
	pthread_mutex_unlock(&r->lock);
}

int remote_wait(struct remote *r, uint64_t seq, double timeout)
{
	struct timespec ts;
	int rc = 0;

	if (timeout > 0)
		deadline_ts(timeout, &ts);
	pthread_mutex_lock(&r->lock);
	r->hurry++;
	r->kicked = true;
	pthread_cond_signal(&r->report);
	while (r->durable < seq && !rc) {
		if (r->stop_loop)
			rc = -ESHUTDOWN;
		else if (timeout > 0)
			rc = pthread_cond_timedwait(&r->done, &r->lock, &ts) ==
					     ETIMEDOUT
				     ? -ETIMEDOUT
				     : 0;
		else
			pthread_cond_wait(&r->done, &r->lock);
	}
	if (rc == -ETIMEDOUT && r->durable >= seq)
		rc = 0;
	r->hurry--;
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void remote_free(struct remote *r)
{
	struct job *j;
	uint64_t queued;
	unsigned i;
	int rc;

	if (!r)
		return;
	rc = remote_wait(r, tally_done_seq(r->t), r->drain_timeout);
	pthread_mutex_lock(&r->lock);
	r->stop_workers = true;
	pthread_cond_broadcast(&r->work);
	pthread_cond_broadcast(&r->snap_wake);
	pthread_cond_broadcast(&r->ahead_work);
	pthread_mutex_unlock(&r->lock);
	if (r->snap_thread_on)
		pthread_join(r->snap_thread, NULL);
	for (i = 0; i < r->nahead_threads; i++)
		pthread_join(r->ahead_threads[i], NULL);
	while ((j = r->ahead)) {
		r->ahead = j->next;
		free(j);
	}
	for (i = 0; i < r->nworkers; i++)
		pthread_join(r->workers[i], NULL);
	pthread_mutex_lock(&r->lock);
	r->stop_loop = true;
	pthread_cond_broadcast(&r->report);
	pthread_cond_broadcast(&r->done);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->loop, NULL);
	/* what the loop recorded last */
	if (r->finished)
		rl_record(r, r->finished);
	r->finished = NULL;
	rl_update_low(r);
	queued = r->st.queued;
	if (rc || queued)
		log_msg(LOG_WARNING,
			"remote: %" PRIu64 " object(s) still queued for "
			"upload at unmount: left for the next mount%s",
			queued, rc == -ETIMEDOUT ? " (drain timed out)" : "");
	/* deletions claimed and never started: their claims go */
	if (r->ready && tally_meta_shared(r->t))
		tally_meta_read(r->t, rl_unclaim_ready, r);
	while ((j = r->ready)) {
		r->ready = j->next;
		free(j);
	}
	while (r->nconns)
		s3_free(r->conns[--r->nconns]);
	free(r->backoff);
	free(r->running);
	free(r->workers);
	pthread_cond_destroy(&r->ahead_work);
	pthread_cond_destroy(&r->snap_wake);
	pthread_mutex_destroy(&r->snap_lock);
	pthread_mutex_destroy(&r->rekey_lock);
	pthread_mutex_destroy(&r->evict_lock);
	pthread_cond_destroy(&r->fetched);
	pthread_cond_destroy(&r->done);
	pthread_cond_destroy(&r->report);
	pthread_cond_destroy(&r->work);
	pthread_mutex_destroy(&r->lock);
	s3_cfg_release(&r->cfg);
	free(r->ancestors);
	explicit_bzero(&r->seal, sizeof(r->seal));
	explicit_bzero(&r->file, sizeof(r->file));
	free(r);
}

void remote_stats(struct remote *r, struct remote_stats *out)
{
	pthread_mutex_lock(&r->lock);
	*out = r->st;
	out->durable_remote_seq = r->durable;
	pthread_mutex_unlock(&r->lock);
	out->cfg = &r->cfg;
}
