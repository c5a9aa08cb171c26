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
 * transaction that causes them (core/meta_remote.c): remote_up (an
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
 *  3. The deletion rule holds for the bucket (core/reap.c, 4): a key is
 *     deleted only when its delay passed, the WAL is synced, and the
 *     verdict (asked under the metadata lock) says nothing names it; the
 *     name is marked deleting in that hold, and an upload of the same
 *     name (the content written again) waits until the DELETE returned,
 *     so the two never race in the bucket. A shared store's claim ends
 *     however the DELETE ends (done or failed: recorded even in a round
 *     where nothing succeeded; never started: dropped), and one whose
 *     node is gone is taken over (take_stale_claims()): a claim never
 *     holds an upload, and durable_remote_seq, for good.
 *  4. A local copy is evicted only when its row says the bucket holds
 *     it (reap_evict_free()), after the commit that marks it evicted;
 *     a fetched copy is checked against its name and size before it is
 *     stored, and marked cached after it is in place, under the lock
 *     that finds its row (no row: the copy is reaped again, never left
 *     as a file nothing names or counts); so is a copy a
 *     flush writes for a row that says evicted (core/flush.c), after
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
 */
#include "core/remote.h"
#include "core/remote_int.h"

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

#include "core/array.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/gc.h"
#include "core/meta.h"
#include "core/progress.h"
#include "core/objstore.h"
#include "core/reap.h"
#include "core/tally.h"

#define LRU_SLOTS (1u << 16)
#define CONNS_MAX 16
#define DELETE_BATCH 64
#define EVICT_SAMPLE 1024
#define COUNT_SLICE 0.2 /* s of a loop round spent counting the cache */
/* s a made deletion of a key is remembered (a shared store): a flush that
 * shipped the object before it does not record it in the bucket */
#define GONE_KEEP 86400
#define UPLOAD_HIST 64	  /* samples of done_seq, for upload_delay */
#define RESERVED_SLOTS 64 /* generations reserved by ships, by name */
#define CHECK_TIMEOUT 5L  /* s a request of a bucket check may last */

enum job_kind {
	JOB_UP,
	JOB_DEL
};

struct job {
	enum job_kind kind;
	char name[OBJKEY_MAX]; /* an upload: the object; a deletion: the key */
	int64_t gen;	       /* an upload: the generation of its key */
	uint32_t shard;
	uint64_t size;
	int64_t seq;
	int rc;
	bool server; /* the failure came from the server, not the copy */
	char err[256];
	struct job *next;
};

/* An upload that failed: when it may go again. */
struct backoff {
	char name[OBJKEY_MAX];
	unsigned attempts;
	double not_before; /* monotonic seconds */
};

/* A fetch in progress: readers of the same object wait for it. */
struct fetch {
	char name[OBJNAME_MAX];
	bool done;
	int rc;
	unsigned waiters;
	struct fetch *next;
};

struct remote {
	struct tally *t;
	struct s3_cfg cfg;
	unsigned max_jobs;
	uint64_t cache_size;
	int64_t delete_delay;
	double drain_timeout, retry_max;
	uint64_t store_id;
	char *ancestors; /* remote_conf 'ancestors' (a restored store), or NULL */
	double started;

	pthread_mutex_t lock;
	pthread_cond_t work;	 /* protected by lock: ready jobs, or stop */
	pthread_cond_t report;	 /* a job finished, a kick, or stop */
	pthread_cond_t done;	 /* durable_remote_seq advanced, or stop */
	pthread_cond_t fetched;	 /* a fetch ended */
	struct job *ready;	 /* protected by lock: to run, FIFO */
	struct job *finished;	 /* protected by lock: to record */
	struct job **running;	 /* protected by lock: max_jobs slots */
	struct backoff *backoff; /* protected by lock */
	size_t nbackoff, backcap;
	struct fetch *fetching;	     /* protected by lock */
	struct s3 *conns[CONNS_MAX]; /* protected by lock: idle, for fetches */
	unsigned nconns;
	bool kicked, stop_workers, stop_loop; /* protected by lock */
	unsigned hurry;		 /* protected by lock: waiters for uploads, who
			   bypass upload_delay */
	double pause_until;	 /* protected by lock: the server failed: no job
			       before then (backoff over all jobs) */
	unsigned pause_attempts; /* protected by lock */
	double upload_delay;
	struct {
		double at;
		uint64_t seq;
	} hist[UPLOAD_HIST]; /* loop thread only: done_seq over time */
	unsigned nhist;
	bool verified, marker_known;	/* loop thread only */
	bool fenced;			/* protected by lock: the marker names
					   another store (a restore took the
					   bucket over) */
	double next_marker;		/* loop thread only */
	uint64_t durable;		/* protected by lock */
	struct remote_stats st;		/* protected by lock */
	double next_delete, next_evict; /* loop thread only */
	double next_stale;		/* loop thread only: claims of nodes
					   gone, taken over */
	int64_t evict_cursor;		/* loop thread only */
	unsigned count_dir, evict_dir;	/* loop thread only: shared store */

	_Atomic uint64_t lru_key[LRU_SLOTS];  /* remote_touch(): racy, an */
	_Atomic uint32_t lru_tick[LRU_SLOTS]; /* 1/100 s: approximate order */
	_Atomic uint8_t lru_ahead[LRU_SLOTS]; /* fetched by read-ahead */

	/* read-ahead: a bounded queue and its threads (protected by lock) */
	pthread_cond_t ahead_work;
	struct job *ahead;
	unsigned nahead;
	pthread_t ahead_threads[REMOTE_AHEAD_THREADS];
	unsigned nahead_threads;

	/* metadata snapshots (snap_lock: one at a time; the others are
	 * protected by lock) */
	pthread_mutex_t snap_lock;
	pthread_cond_t snap_wake; /* with lock: stop */
	double snapshot_interval;
	unsigned snapshot_keep;
	uint64_t snap_seq;    /* protected by snap_lock: done_seq of the last */
	uint64_t snap_base;   /* added to done_seq in snapshot names: a restored
			       store's sort after those it came from */
	int64_t snap_changes; /* protected by snap_lock: meta_change_count()
				 after the last one's copy */
	bool snap_thread_on;
	pthread_t snap_thread;

	/* the generation a ship reserved for a name with no row (protected
	 * by lock): a ship of the same content again (the flush failed and
	 * goes again) reuses it, so a PUT that reached the server after its
	 * request failed leaves no key of another generation behind */
	struct {
		char name[OBJNAME_MAX];
		int64_t gen;
	} reserved[RESERVED_SLOTS];
	unsigned reserved_next;

	pthread_t loop;
	pthread_t *workers;
	unsigned nworkers;
};

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void deadline_ts(double secs, struct timespec *ts)
{
	double whole;

	clock_gettime(CLOCK_REALTIME, ts);
	secs += (double)ts->tv_nsec / 1e9;
	whole = (double)(int64_t)secs;
	ts->tv_sec += (time_t)whole;
	ts->tv_nsec = (long)((secs - whole) * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int remote_object_key(const struct s3_cfg *cfg, const char *name, char *key,
		      size_t len)
{
	char rel[16 + OBJKEY_MAX];

	snprintf(rel, sizeof(rel), "objects/%.2s/%s", name, name);
	return s3_key(cfg, rel, key, len);
}

/* ------------------------------------------------------------------ */
/* the bucket's marker: which store it holds */

void remote_bucket_url(const struct s3_cfg *cfg, char *out, size_t len)
{
	snprintf(out, len, "s3://%s%s%s", cfg->bucket,
		 cfg->prefix[0] ? "/" : "", cfg->prefix);
}

void remote_marker_text(uint64_t store_id, const char *ancestors, char *out,
			size_t len)
{
	if (ancestors && *ancestors)
		snprintf(out, len,
			 "tallyfs store\nstore_id %" PRIu64 "\nancestors %s\n",
			 store_id, ancestors);
	else
		snprintf(out, len, "tallyfs store\nstore_id %" PRIu64 "\n",
			 store_id);
}

struct membuf {
	char *buf;
	size_t n, cap;
};

/* s3_get() sink into a buffer of fixed size: -EFBIG past it. */
static int mem_sink(void *arg, const void *buf, size_t n)
{
	struct membuf *b = arg;

	if (n > b->cap - b->n)
		return -EFBIG;
	memcpy(b->buf + b->n, buf, n);
	b->n += n;
	return 0;
}

/* 0 when the bucket holds this store (its marker written if missing
 * and @may_write), -EUCLEAN when it holds another or lost its marker,
 * or the request's error. */
static int check_marker(struct remote *r, struct s3 *s, bool may_write)
{
	char key[1024], want[MARKER_MAX], got[MARKER_MAX + 1];
	struct membuf body = { got, 0, sizeof(got) - 1 };
	int rc = s3_key(&r->cfg, MARKER_KEY, key, sizeof(key));

	if (rc)
		return rc;
	remote_marker_text(r->store_id, r->ancestors, want, sizeof(want));
	rc = s3_get(s, key, 0, 0, mem_sink, &body, NULL);
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
	if (strcmp(got, want) != 0) {
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
 * that took the bucket over (core/restore.c) makes the store it came
 * from stop writing and deleting there.
 */
static int still_owner(struct remote *r);

static struct s3 *conn_get(struct remote *r)
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

static void conn_put(struct remote *r, struct s3 *s)
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

static void note_error(struct remote *r, const char *what, const char *err)
{
	pthread_mutex_lock(&r->lock);
	snprintf(r->st.last_error, sizeof(r->st.last_error), "%s: %s", what,
		 err);
	pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------------ */
/* the workers */

struct state_ctx {
	const char *name;
	struct meta_remote_state st;
};

static int state_read(struct meta *m, void *arg)
{
	struct state_ctx *c = arg;

	return meta_remote_state(m, c->name, &c->st);
}

/* The check of a local copy in the hashing pass of its PUT. */
struct upcheck {
	struct hash_state *h;
	const char *name;
};

static int upcheck(void *arg, const void *buf, size_t n)
{
	struct upcheck *c = arg;
	char hex[HASH_HEX_LEN + 1];

	if (buf) {
		hash_update(c->h, buf, n);
		return 0;
	}
	hash_end(c->h, hex);
	c->h = NULL;
	return hash_name_check(c->name, hex);
}

/* The bucket key of upload @j: its object's name and generation. */
static int job_key(struct remote *r, const struct job *j, char *key, size_t len)
{
	char kn[OBJKEY_MAX];

	meta_key_name(j->name, j->gen, kn);
	return remote_object_key(&r->cfg, kn, key, len);
}

/* Upload object @j->name: its local copy, checked against its name in
 * the same read that hashes the body for the server. */
static int run_upload(struct remote *r, struct s3 *s, struct job *j)
{
	struct objstore *os = tally_objstore(r->t);
	char key[1024];
	struct stat st;
	int fd, rc, tries;

	for (tries = 0;; tries++) {
		struct state_ctx c = { j->name, { 0 } };

		fd = objstore_open_read(os, j->shard, j->name);
		if (fd != -ENOENT || tries)
			break;
		/* moved by a rebalance meanwhile, or gone */
		rc = tally_meta_read(r->t, state_read, &c);
		if (rc == -ENOENT)
			return -ESTALE; /* its row went: nothing to ship */
		if (rc)
			return rc;
		j->shard = c.st.shard;
	}
	if (fd < 0) {
		snprintf(j->err, sizeof(j->err),
			 "local copy of '%s' unreadable: %s", j->name,
			 strerror(-fd));
		return fd;
	}
	rc = fstat(fd, &st) ? -errno : 0;
	if (!rc && (uint64_t)st.st_size != j->size)
		rc = -EUCLEAN;
	if (!rc)
		rc = job_key(r, j, key, sizeof(key));
	if (!rc) {
		struct upcheck c = { hash_begin(), j->name };

		rc = c.h ? s3_put_fd_each(s, key, fd, j->size, upcheck, &c)
			 : -ENOMEM;
		if (c.h)
			hash_end(c.h, NULL);
	}
	if (rc == -EBADMSG || rc == -EUCLEAN) {
		snprintf(j->err, sizeof(j->err),
			 "local copy of '%s' does not hold its bytes: %s",
			 j->name, strerror(-rc));
	} else if (rc) {
		j->server = rc != -ENOMEM;
		snprintf(j->err, sizeof(j->err), "upload of '%s': %s", j->name,
			 s3_last_error(s));
	}
	close(fd);
	return rc;
}

static void *worker_main(void *arg)
{
	struct remote *r = arg;
	struct s3 *s = NULL;

	/* below the threads of the mount: uploads take the CPU that
	 * writes and reads leave (Linux: a nice value per thread) */
	setpriority(PRIO_PROCESS, (id_t)gettid(), 10);

	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct job *j;
		unsigned slot;

		while (!r->ready && !r->stop_workers)
			pthread_cond_wait(&r->work, &r->lock);
		if (r->stop_workers)
			break;
		j = r->ready;
		r->ready = j->next;
		for (slot = 0; r->running[slot]; slot++)
			;
		r->running[slot] = j;
		r->st.in_flight++;
		pthread_mutex_unlock(&r->lock);

		j->err[0] = '\0';
		if (!s && s3_new(&r->cfg, &s)) {
			s = NULL;
			j->rc = -ENOMEM;
		} else if (j->kind == JOB_UP) {
			j->rc = run_upload(r, s, j);
		} else {
			j->rc = reap_remote_delete(s, &r->cfg, j->name);
			j->server = j->rc != 0;
			if (j->rc)
				snprintf(j->err, sizeof(j->err),
					 "deletion of '%s': %s", j->name,
					 s3_last_error(s));
		}

		pthread_mutex_lock(&r->lock);
		r->running[slot] = NULL;
		r->st.in_flight--;
		j->next = r->finished;
		r->finished = j;
		pthread_cond_signal(&r->report);
	}
	pthread_mutex_unlock(&r->lock);
	s3_free(s);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the loop: recording, scheduling, the low-water mark */

static struct backoff *backoff_find(struct remote *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nbackoff; i++)
		if (strcmp(r->backoff[i].name, name) == 0)
			return &r->backoff[i];
	return NULL;
}

static void backoff_drop(struct remote *r, const char *name)
{
	struct backoff *b = backoff_find(r, name);

	if (b)
		*b = r->backoff[--r->nbackoff];
}

static double backoff_delay(struct remote *r, unsigned attempts)
{
	double d = 0.2;

	while (--attempts > 0 && d < r->retry_max)
		d *= 2;
	if (d > r->retry_max)
		d = r->retry_max;
	/* jitter: +/- 20 % */
	return d * (0.8 + 0.4 * ((double)(random() % 1000) / 1000.0));
}

/* Whether a job for @name is ready or running (r->lock held). */
static bool busy(struct remote *r, const char *name)
{
	struct job *j;
	unsigned i;

	for (j = r->ready; j; j = j->next)
		if (strcmp(j->name, name) == 0)
			return true;
	for (i = 0; i < r->max_jobs; i++)
		if (r->running[i] && strcmp(r->running[i]->name, name) == 0)
			return true;
	return false;
}

static unsigned nready(struct remote *r)
{
	struct job *j;
	unsigned n = 0;

	for (j = r->ready; j; j = j->next)
		n++;
	return n;
}

static void push_ready(struct remote *r, struct job *j)
{
	struct job **p = &r->ready;

	while (*p)
		p = &(*p)->next;
	j->next = NULL;
	*p = j;
	pthread_cond_signal(&r->work);
}

struct record_ctx {
	struct tally *t;
	struct job *jobs;
};

static int record_run(struct meta *m, void *arg)
{
	struct record_ctx *c = arg;
	struct job *j;
	bool pruned = false;
	int rc = 0;

	for (j = c->jobs; j && !rc; j = j->next) {
		/* a deletion under way is over, done or not (a shared
		 * store's claim, kept as made for GONE_KEEP; the queue keeps
		 * a failed one) */
		if (j->kind == JOB_DEL && tally_meta_shared(c->t)) {
			rc = meta_remote_gone(m, j->name);
			if (!rc && !pruned)
				rc = meta_remote_gone_prune(
					m, (int64_t)time(NULL) - GONE_KEEP);
			pruned = true;
		}
		if (j->rc || rc)
			continue;
		rc = j->kind == JOB_UP
			     ? meta_remote_uploaded(m, j->name, j->gen)
			     : meta_remote_del_done(m, j->name);
	}
	return rc;
}

/*
 * Record finished jobs: successes in one transaction, failures into
 * their backoff. A transaction that fails leaves the jobs to record
 * again (an upload recorded late is only shipped twice at worst).
 */
static void record(struct remote *r, struct job *jobs)
{
	struct record_ctx c = { r->t, jobs };
	struct job *j, *next;
	bool any = false;
	double now = mono();
	int rc = 0;

	/* a shared store's deletion ended, made or failed, ends its claim:
	 * a claim left under way would hold the upload of the content
	 * written again, and durable_remote_seq, for good */
	for (j = jobs; j; j = j->next)
		any |= j->rc == 0 ||
		       (j->kind == JOB_DEL && tally_meta_shared(r->t));
	if (any)
		rc = tally_meta_txn(r->t, record_run, &c);
	if (rc) {
		log_msg(LOG_WARNING, "remote: cannot record finished jobs: %s",
			strerror(-rc));
		pthread_mutex_lock(&r->lock);
		for (j = jobs; j; j = next) {
			next = j->next;
			j->next = r->finished;
			r->finished = j;
		}
		pthread_mutex_unlock(&r->lock);
		return;
	}
	pthread_mutex_lock(&r->lock);
	for (j = jobs; j; j = next) {
		next = j->next;
		if (j->rc == 0 || j->rc == -ESTALE) {
			backoff_drop(r, j->name);
			if (j->rc == 0) {
				r->pause_attempts = 0;
				r->pause_until = 0;
			}
			if (j->rc == 0 && j->kind == JOB_UP) {
				r->st.uploaded++;
				r->st.bytes_uploaded += j->size;
			} else if (j->rc == 0) {
				r->st.deleted++;
			}
			r->st.reachable = true;
		} else {
			struct backoff *b = backoff_find(r, j->name);

			r->st.failed++;
			snprintf(r->st.last_error, sizeof(r->st.last_error),
				 "%s", j->err[0] ? j->err : strerror(-j->rc));
			if (!b && !array_reserve(&r->backoff, &r->backcap,
						 r->nbackoff + 1, sizeof(*b))) {
				b = &r->backoff[r->nbackoff++];
				memset(b, 0, sizeof(*b));
				snprintf(b->name, sizeof(b->name), "%s",
					 j->name);
			}
			if (b) {
				b->attempts++;
				b->not_before =
					now + backoff_delay(r, b->attempts);
				if (b->attempts > 1)
					r->st.retries++;
			}
			if (j->rc == -EAGAIN)
				r->st.reachable = false;
			/* the server failed: every job waits, not only this
			 * one (an unreachable server is tried once per
			 * backoff, not once per queued object) */
			if (j->server && r->pause_until <= now) {
				r->pause_attempts++;
				r->pause_until =
					now +
					backoff_delay(r, r->pause_attempts);
			}
			if (b && b->attempts == 1)
				log_msg(LOG_WARNING, "remote: %s (retried)",
					r->st.last_error);
		}
		free(j);
	}
	pthread_mutex_unlock(&r->lock);
}

struct sched_ctx {
	struct remote *r;
	unsigned want;
	double now;
	uint64_t upto; /* rows of higher sequences wait (upload_delay) */
};

static int sched_one(void *arg, const char *name, int64_t gen, int64_t seq,
		     uint32_t shard, uint64_t size)
{
	struct sched_ctx *c = arg;
	struct remote *r = c->r;
	struct backoff *b;
	struct job *j;

	if (!c->want || (uint64_t)seq > c->upto)
		return 1;
	pthread_mutex_lock(&r->lock);
	b = backoff_find(r, name);
	if (busy(r, name) || (b && b->not_before > c->now)) {
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		pthread_mutex_unlock(&r->lock);
		return -ENOMEM;
	}
	j->kind = JOB_UP;
	snprintf(j->name, sizeof(j->name), "%s", name);
	j->gen = gen;
	j->shard = shard;
	j->size = size;
	j->seq = seq;
	push_ready(r, j);
	pthread_mutex_unlock(&r->lock);
	c->want--;
	return 0;
}

static int sched_run(struct meta *m, void *arg)
{
	struct sched_ctx *c = arg;
	struct remote *r = c->r;
	unsigned look;
	int rc;

	pthread_mutex_lock(&r->lock);
	look = c->want + r->max_jobs * 2 + (unsigned)r->nbackoff;
	pthread_mutex_unlock(&r->lock);
	rc = meta_remote_next(m, look, sched_one, c);
	return rc == 1 ? 0 : rc;
}

/* Hand the head of the upload queue to the workers: at most two jobs
 * per worker ready or running. */
/*
 * The highest sequence whose objects may go now: what was committed
 * upload_delay seconds ago (objects that die sooner, such as the short
 * last block of a file being written, are never shipped), or all when
 * someone waits for the uploads (drain remote, unmount, a snapshot).
 */
static uint64_t upload_upto(struct remote *r, double now, bool hurry)
{
	uint64_t done = tally_done_seq(r->t), upto = 0;
	unsigned i;

	if (hurry || r->upload_delay <= 0)
		return UINT64_MAX;
	if (!r->nhist || r->hist[r->nhist - 1].seq != done) {
		if (r->nhist == UPLOAD_HIST) {
			memmove(r->hist, r->hist + 1,
				(UPLOAD_HIST - 1) * sizeof(r->hist[0]));
			r->nhist--;
		}
		r->hist[r->nhist].at = now;
		r->hist[r->nhist++].seq = done;
	}
	for (i = 0; i < r->nhist && r->hist[i].at <= now - r->upload_delay; i++)
		upto = r->hist[i].seq;
	/* a history that does not go back far enough (a burst of commits
	 * filled it): its oldest entry is older than the delay anyway */
	if (!upto && r->nhist == UPLOAD_HIST)
		upto = r->hist[0].seq;
	return upto;
}

static void schedule_uploads(struct remote *r)
{
	struct sched_ctx c = { r, 0, mono(), 0 };
	unsigned have;
	bool hurry;
	int rc;

	pthread_mutex_lock(&r->lock);
	have = nready(r) + (unsigned)r->st.in_flight;
	c.want = have < 2 * r->max_jobs ? 2 * r->max_jobs - have : 0;
	if (r->pause_until > c.now)
		c.want = 0;
	/* after a failure of the server, one job probes it at a time */
	if (r->pause_attempts && c.want)
		c.want = have ? 0 : 1;
	hurry = r->hurry > 0 || r->stop_workers;
	pthread_mutex_unlock(&r->lock);
	c.upto = upload_upto(r, c.now, hurry);
	if (!c.want)
		return;
	rc = tally_meta_read(r->t, sched_run, &c);
	if (rc)
		log_msg(LOG_WARNING, "remote: cannot read the upload queue: %s",
			strerror(-rc));
}

struct low_ctx {
	int64_t min_seq;
	uint64_t queued, dels, cache_bytes;
	bool cache;
};

static int low_read(struct meta *m, void *arg)
{
	struct low_ctx *c = arg;
	int rc = meta_remote_low(m, &c->min_seq, &c->queued);

	if (!rc)
		rc = meta_remote_dels(m, &c->dels);
	if (!rc && c->cache)
		rc = meta_remote_cache_bytes(m, &c->cache_bytes);
	return rc;
}

/* durable_remote_seq: done_seq first, then the queue (invariant 2). */
static void update_low(struct remote *r)
{
	struct low_ctx c = { .cache = !tally_meta_shared(r->t) };
	uint64_t done = tally_done_seq(r->t), low;

	if (tally_meta_read(r->t, low_read, &c))
		return;
	if (!c.cache) {
		objstore_local_bytes(tally_objstore(r->t), &c.cache_bytes);
		c.cache = true;
	}
	low = done;
	if (c.min_seq >= 0 && (uint64_t)c.min_seq <= done)
		low = c.min_seq > 0 ? (uint64_t)c.min_seq - 1 : 0;
	pthread_mutex_lock(&r->lock);
	r->st.queued = c.queued;
	r->st.delete_queued = c.dels;
	if (c.cache)
		r->st.cache_bytes = c.cache_bytes;
	if (low > r->durable) {
		r->durable = low;
		pthread_cond_broadcast(&r->done);
	}
	pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------------ */
/* deletions in the bucket */

/* A list of object names (meta_each_name() callbacks fill it). */
struct names {
	char (*v)[OBJKEY_MAX]; /* object names, or key names */
	size_t n, cap;
};

static int names_add(void *arg, const char *name)
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
				    DELETE_BATCH, names_add, &c->names);
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
static int unclaim_ready(struct meta *m, void *arg)
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
		b = backoff_find(r, name);
		wait = busy(r, name) || (b && b->not_before > mono());
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
			push_ready(r, j);
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
static void take_stale_claims(struct remote *r)
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

static void schedule_deletes(struct remote *r)
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
	if (!rc && c.names.n && still_owner(r) != 1)
		c.names.n = 0;
	if (!rc && c.names.n)
		rc = tally_meta_read(r->t, del_judge, &c);
	if (rc)
		log_msg(LOG_WARNING, "remote: deletions wait: %s",
			strerror(-rc));
	free(c.names.v);
}

/* ------------------------------------------------------------------ */
/* the cache: eviction, least recently used first (approximately) */

static uint64_t name_key(const char *name)
{
	uint64_t k = 0;
	int i;

	for (i = 0; i < 16 && name[i]; i++) {
		char ch = name[i];

		k = k << 4 |
		    (uint64_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
	}
	return k | 1; /* never 0, the empty slot */
}

bool remote_touch(struct remote *r, const char *name)
{
	uint64_t k = name_key(name);
	unsigned slot = (unsigned)(k >> 20) & (LRU_SLOTS - 1);
	uint32_t tick = (uint32_t)((mono() - r->started) * 100) + 1;
	bool same = atomic_load_explicit(&r->lru_key[slot],
					 memory_order_relaxed) == k;

	atomic_store_explicit(&r->lru_key[slot], k, memory_order_relaxed);
	atomic_store_explicit(&r->lru_tick[slot], tick, memory_order_relaxed);
	return atomic_exchange_explicit(&r->lru_ahead[slot], 0,
					memory_order_relaxed) &&
	       same;
}

/* Object @name was fetched by read-ahead (its first read says so). */
static void mark_ahead(struct remote *r, const char *name)
{
	uint64_t k = name_key(name);
	unsigned slot = (unsigned)(k >> 20) & (LRU_SLOTS - 1);

	atomic_store_explicit(&r->lru_key[slot], k, memory_order_relaxed);
	atomic_store_explicit(&r->lru_ahead[slot], 1, memory_order_relaxed);
}

static uint32_t last_use(struct remote *r, const char *name)
{
	uint64_t k = name_key(name);
	unsigned slot = (unsigned)(k >> 20) & (LRU_SLOTS - 1);

	if (atomic_load_explicit(&r->lru_key[slot], memory_order_relaxed) != k)
		return 0;
	return atomic_load_explicit(&r->lru_tick[slot], memory_order_relaxed);
}

struct victim {
	int64_t id;
	char name[OBJNAME_MAX];
	uint32_t shard, tick;
	uint64_t size;
	bool ok;
};

struct evict_ctx {
	struct remote *r;
	struct victim *v;
	size_t n, cap, take;
	int64_t last;
};

static int evict_candidate(void *arg, int64_t id, const char *name,
			   uint32_t shard, uint64_t size)
{
	struct evict_ctx *c = arg;
	struct victim *v;

	if (array_reserve(&c->v, &c->cap, c->n + 1, sizeof(*c->v)))
		return -ENOMEM;
	v = &c->v[c->n++];
	v->id = id;
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->shard = shard;
	v->size = size;
	v->tick = last_use(c->r, name);
	v->ok = false;
	c->last = id;
	return 0;
}

static int evict_sample(struct meta *m, void *arg)
{
	struct evict_ctx *c = arg;

	return meta_remote_evictable(m, c->r->evict_cursor, EVICT_SAMPLE,
				     evict_candidate, c);
}

static int victim_cmp(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	if (x->tick != y->tick)
		return x->tick < y->tick ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* A shared store: a local file as a candidate (no id: those neither read
 * nor written since the mount come first, in no order). */
static int evict_local(void *arg, const char *name, off_t size)
{
	struct evict_ctx *c = arg;

	return evict_candidate(c, 0, name, 0, (uint64_t)size);
}

/* A shared store: up to EVICT_SAMPLE local files, from the fan-out
 * directories in turn. */
static int evict_sample_local(struct remote *r, struct evict_ctx *c)
{
	struct objstore *os = tally_objstore(r->t);
	unsigned i;
	int rc = 0;

	for (i = 0; i < OBJSTORE_FANOUT && c->n < EVICT_SAMPLE && !rc; i++) {
		rc = objstore_list_dir(os, 0, r->evict_dir, evict_local, c);
		r->evict_dir = (r->evict_dir + 1) % OBJSTORE_FANOUT;
	}
	return rc;
}

static int evict_mark(struct meta *m, void *arg)
{
	struct evict_ctx *c = arg;
	bool shared = meta_shared(m);
	size_t i;
	int rc = 0;

	for (i = 0; i < c->take && !rc; i++) {
		uint32_t shard;
		int v = reap_evict_doom(m, tally_objstore(c->r->t),
					c->v[i].name, &shard);

		if (v < 0)
			return v;
		if (v == 0)
			continue;
		c->v[i].shard = shard;
		c->v[i].ok = true;
		/* a shared store's rows are every node's: no mark */
		if (!shared)
			rc = meta_remote_set_cached(m, c->v[i].name, false);
	}
	return rc;
}

/* Bring the local object bytes to 90 % of cache_size when above it. */
static void evict(struct remote *r)
{
	struct evict_ctx c = { .r = r };
	bool shared = tally_meta_shared(r->t);
	uint64_t bytes, freed = 0, goal;
	size_t i;
	int rc;

	if (shared) {
		if (!objstore_local_bytes(tally_objstore(r->t), &bytes))
			return; /* not counted yet */
	} else {
		pthread_mutex_lock(&r->lock);
		bytes = r->st.cache_bytes;
		pthread_mutex_unlock(&r->lock);
	}
	if (bytes <= r->cache_size)
		return;
	goal = bytes - r->cache_size / 10 * 9;
	if (shared) {
		rc = evict_sample_local(r, &c);
	} else {
		rc = tally_meta_read(r->t, evict_sample, &c);
		r->evict_cursor = c.n < EVICT_SAMPLE ? 0 : c.last;
	}
	if (rc)
		goto out;
	if (c.n) /* none may be evictable yet (not in the bucket) */
		qsort(c.v, c.n, sizeof(*c.v), victim_cmp);
	for (c.take = 0; c.take < c.n && freed < goal; c.take++)
		freed += c.v[c.take].size;
	/* a shared store marks nothing: the verdicts are reads */
	rc = shared ? tally_meta_read(r->t, evict_mark, &c)
		    : tally_meta_txn(r->t, evict_mark, &c);
	if (rc)
		goto out;
	for (i = 0; i < c.take; i++) {
		if (!c.v[i].ok)
			continue;
		rc = reap_evict(tally_objstore(r->t), c.v[i].shard,
				c.v[i].name);
		if (rc == 1)
			continue; /* a commit checked it meanwhile: kept */
		if (rc)
			log_msg(LOG_WARNING,
				"remote: cannot evict '%s' (its copy stays, "
				"counted evicted): %s",
				c.v[i].name, strerror(-rc));
		pthread_mutex_lock(&r->lock);
		r->st.evicted++;
		pthread_mutex_unlock(&r->lock);
	}
	rc = 0;
out:
	if (rc)
		log_msg(LOG_WARNING, "remote: eviction failed: %s",
			strerror(-rc));
	free(c.v);
}

/* ------------------------------------------------------------------ */
/* the loop thread */

struct bind_ctx {
	const char *url;
	char *bound, *marker, *ancestors;
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
	rc = meta_remote_conf_get(m, "marker", &c->marker);
	return rc == -ENOENT ? 0 : rc;
}

static int bind_write(struct meta *m, void *arg)
{
	struct bind_ctx *c = arg;
	int rc = 0;

	if (!c->bound)
		rc = meta_remote_conf_set(m, "url", c->url);
	if (!rc)
		rc = meta_remote_enable(m, !c->bound);
	return rc;
}

static int marker_write(struct meta *m, void *arg)
{
	(void)arg;
	return meta_remote_conf_set(m, "marker", "1");
}

static int still_owner(struct remote *r)
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
	s = conn_get(r);
	rc = s ? check_marker(r, s, false) : -ENOMEM;
	conn_put(r, s);
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

static bool fenced(struct remote *r)
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
static int verify(struct remote *r, struct s3 *s, bool marker_known)
{
	long limit = CHECK_TIMEOUT;
	int rc;

	if (r->cfg.stall_timeout > 0 && r->cfg.stall_timeout < limit)
		limit = r->cfg.stall_timeout;
	s3_set_timeout(s, limit);
	rc = s3_check(s);
	if (!rc)
		rc = check_marker(r, s, !marker_known);
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
			record(r, jobs);
		if (stop)
			break;
		now = mono();
		if (!r->verified && now >= next_verify) {
			struct s3 *s = conn_get(r);
			int rc = s ? verify(r, s, r->marker_known) : -ENOMEM;

			if (!rc) {
				r->verified = true;
				pthread_mutex_lock(&r->lock);
				r->st.reachable = true;
				pthread_mutex_unlock(&r->lock);
			} else {
				note_error(r, "bucket check",
					   s ? s3_last_error(s)
					     : strerror(-rc));
				next_verify = now + 2;
			}
			conn_put(r, s);
		}
		/* the marker, every 10 s: a restore may take the bucket
		 * over (deletions and reaps check it first, too) */
		if (r->verified && now >= r->next_marker) {
			still_owner(r);
			r->next_marker = now + 10;
		}
		if (r->verified && !fenced(r))
			schedule_uploads(r);
		if (tally_meta_shared(r->t))
			count_cache(r);
		update_low(r);
		if (now >= r->next_stale && tally_meta_shared(r->t)) {
			take_stale_claims(r);
			r->next_stale = now + 5;
		}
		if (r->verified && now >= r->next_delete) {
			schedule_deletes(r);
			r->next_delete = now + 5;
		}
		if (r->cache_size && now >= r->next_evict && !fenced(r)) {
			evict(r);
			r->next_evict = now + 1;
		}
	}
	return NULL;
}

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

int remote_key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool remote_key_valid(const char *key)
{
	char name[OBJNAME_MAX];
	int64_t gen;

	return meta_key_parse(key, name, &gen) == 0;
}

bool remote_keys_has(const struct remote_keys *k, const char *key)
{
	return k->n && bsearch(&key, k->v, k->n, sizeof(*k->v), remote_key_cmp);
}

static int keys_add(void *arg, const char *key, uint64_t size)
{
	struct remote_keys *k = arg;
	char *d = strdup(key);

	(void)size;
	if (!d || array_reserve(&k->v, &k->cap, k->n + 1, sizeof(*k->v))) {
		free(d);
		return -ENOMEM;
	}
	k->v[k->n++] = d;
	return 0;
}

void remote_keys_release(struct remote_keys *k)
{
	while (k->n)
		free(k->v[--k->n]);
	free(k->v);
	k->v = NULL;
	k->cap = 0;
}

/* Every key under @prefix (a full key prefix), all pages, sorted: 0, or
 * the error of a page (then the listing is incomplete: use none of it). */
int remote_list_all(struct s3 *s, const char *prefix, struct remote_keys *out)
{
	char *token = NULL, *next = NULL;
	int rc;

	do {
		rc = s3_list(s, prefix, token, 0, keys_add, out, &next);
		free(token);
		token = next;
		next = NULL;
	} while (!rc && token);
	free(token);
	if (rc)
		remote_keys_release(out);
	else if (out->n)
		qsort(out->v, out->n, sizeof(*out->v), remote_key_cmp);
	return rc;
}

/* The snapshots in the bucket, oldest first. */
int remote_list_snapshots(const struct s3_cfg *cfg, struct s3 *s,
			  struct remote_keys *out)
{
	char prefix[1024];
	int rc = s3_key(cfg, SNAP_PREFIX, prefix, sizeof(prefix));

	return rc ? rc : remote_list_all(s, prefix, out);
}

struct kept_ctx {
	struct tally *t;
	const char *key;
	int64_t epoch;
	struct remote_keys *k;
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
	struct remote_keys k = { 0 };
	struct kept_ctx c = { r->t, key, epoch, &k };
	int rc = tally_meta_txn(r->t, kept_record, &c);

	/* no reap in a bucket another store took over */
	if (!rc && still_owner(r) == 1 &&
	    remote_list_snapshots(&r->cfg, s, &k) == 0 &&
	    remote_keys_has(&k, key) &&
	    reap_snapshots(s, (const char *const *)k.v, k.n,
			   r->snapshot_keep)) {
		remote_keys_release(&k);
		rc = remote_list_snapshots(&r->cfg, s, &k);
	}
	if (!rc && k.n)
		rc = tally_meta_txn(r->t, kept_write, &c);
	if (rc)
		log_msg(LOG_WARNING,
			"remote: the snapshots kept are not recorded: %s "
			"(deletions keep what older ones name)",
			strerror(-rc));
	remote_keys_release(&k);
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
	if (fenced(r))
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
		rc = meta_snapshot_queued(path, names_add, &q);
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
	s = conn_get(r);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (!s || fd < 0 || fstat(fd, &st)) {
		rc = !s ? -ENOMEM : -errno;
		goto out;
	}
	snprintf(rel, sizeof(rel), SNAP_PREFIX "%020" PRIu64 "-%010lld.db",
		 r->snap_base + seq, (long long)time(NULL));
	rc = s3_key(&r->cfg, rel, key, len);
	/* retried like any upload, within the deadline */
	for (tries = 1; !rc; tries++) {
		bool stop;

		rc = s3_put_fd(s, key, fd, (uint64_t)st.st_size);
		if (rc != -EAGAIN && rc != -EIO && rc != -ENOSPC)
			break;
		note_error(r, "snapshot upload", s3_last_error(s));
		pthread_mutex_lock(&r->lock);
		stop = r->stop_workers;
		pthread_mutex_unlock(&r->lock);
		if (stop || mono() + backoff_delay(r, tries) > end)
			break;
		usleep((useconds_t)(backoff_delay(r, tries) * 1e6));
		rc = 0;
	}
	if (rc) {
		note_error(r, "snapshot upload", s3_last_error(s));
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
	conn_put(r, s);
	unlink(path);
	free(q.v);
	pthread_mutex_unlock(&r->snap_lock);
	if (rc)
		log_msg(LOG_WARNING, "remote: metadata snapshot failed: %s",
			strerror(-rc));
	return rc;
}

/* Every snapshot_interval, a snapshot if anything was committed since. */

static void *snap_main(void *arg)
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

static void *ahead_main(void *arg);

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
	remote_bucket_url(&r->cfg, url, sizeof(url));
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
	rc = s3_new(&r->cfg, &s);
	if (rc)
		goto out_free;
	rc = verify(r, s, r->marker_known);
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
		note_error(r, "bucket check", s3_last_error(s));
	} else {
		r->verified = true;
		r->marker_known = true;
		r->st.reachable = true;
	}
	rc = tally_meta_txn(t, bind_write, &b);
	if (rc)
		goto out_free;
	r->conns[r->nconns++] = s;
	s = NULL;
	for (i = 0; i < r->max_jobs; i++) {
		if (pthread_create(&r->workers[i], NULL, worker_main, r)) {
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
	    pthread_create(&r->snap_thread, NULL, snap_main, r) == 0)
		r->snap_thread_on = true;
	while (r->nahead_threads < REMOTE_AHEAD_THREADS &&
	       pthread_create(&r->ahead_threads[r->nahead_threads], NULL,
			      ahead_main, r) == 0)
		r->nahead_threads++;
	free(b.bound);
	free(b.marker);
	free(b.ancestors);
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
	free(r->ancestors);
	free(r->running);
	free(r->workers);
	s3_cfg_release(&r->cfg);
	free(r);
	return rc;
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
		record(r, r->finished);
	r->finished = NULL;
	update_low(r);
	queued = r->st.queued;
	if (rc || queued)
		log_msg(LOG_WARNING,
			"remote: %" PRIu64 " object(s) still queued for "
			"upload at unmount: left for the next mount%s",
			queued, rc == -ETIMEDOUT ? " (drain timed out)" : "");
	/* deletions claimed and never started: their claims go */
	if (r->ready && tally_meta_shared(r->t))
		tally_meta_read(r->t, unclaim_ready, r);
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
	pthread_cond_destroy(&r->fetched);
	pthread_cond_destroy(&r->done);
	pthread_cond_destroy(&r->report);
	pthread_cond_destroy(&r->work);
	pthread_mutex_destroy(&r->lock);
	s3_cfg_release(&r->cfg);
	free(r->ancestors);
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

int remote_gc(struct remote *r, int64_t grace, bool dry_run,
	      struct gc_remote *out)
{
	struct remote_keys k = { 0 };
	struct names names = { 0 };
	struct s3 *s = conn_get(r);
	char prefix[1024];
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = s ? s3_key(&r->cfg, OBJECTS_PREFIX, prefix, sizeof(prefix))
	       : -ENOMEM;
	/* a whole listing or nothing: a partial one collects nothing */
	if (!rc)
		rc = remote_list_all(s, prefix, &k);
	if (rc) {
		out->failed = true;
		note_error(r, "gc listing", s ? s3_last_error(s) : "");
		log_msg(LOG_WARNING,
			"gc: cannot list the bucket (%s): nothing in it is "
			"collected",
			s ? s3_last_error(s) : strerror(-rc));
		goto out;
	}
	out->listed = k.n;
	for (i = 0; i < k.n && !rc; i++) {
		const char *base = strrchr(k.v[i], '/');

		base = base ? base + 1 : k.v[i];
		if (remote_key_valid(base))
			rc = names_add(&names, base);
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
	remote_keys_release(&k);
	free(names.v);
	conn_put(r, s);
	return rc;
}

/* ------------------------------------------------------------------ */
/* verify remote */

struct vsample {
	struct names names;
	uint64_t *sizes;
	size_t scap;
	double percent;
};

static int vsample_add(void *arg, const char *name, uint64_t size)
{
	struct vsample *v = arg;

	if (!gc_verify_picks(name, v->percent))
		return 0;
	if (array_reserve(&v->sizes, &v->scap, v->names.n + 1,
			  sizeof(*v->sizes)))
		return -ENOMEM;
	v->sizes[v->names.n] = size;
	return names_add(&v->names, name);
}

static int vsample_read(struct meta *m, void *arg)
{
	return meta_remote_in_bucket(m, vsample_add, arg);
}

/* Whether the row of key name @arg's object, of its generation, is
 * still recorded in the bucket. */
static int still_in_bucket(struct meta *m, void *arg)
{
	struct meta_remote_state st;
	char name[OBJNAME_MAX];
	int64_t gen;
	int rc = meta_key_parse(arg, name, &gen);

	if (!rc)
		rc = meta_remote_state(m, name, &st);
	return rc ? rc : st.remote && st.gen == gen;
}

int remote_verify(struct remote *r, double percent, struct gc_verify *v)
{
	struct vsample vs = { .percent = percent };
	struct progress_job *pj;
	struct s3 *s = NULL;
	char *buf = NULL;
	size_t cap = 0, i;
	double t0 = mono();
	int rc;

	memset(v, 0, sizeof(*v));
	pj = progress_begin(tally_progress(r->t), "verify remote", "objects",
			    0);
	rc = tally_meta_read(r->t, vsample_read, &vs);
	if (rc)
		goto out;
	v->objects = vs.names.n;
	progress_set_total(pj, vs.names.n);
	s = conn_get(r);
	if (!s) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < vs.names.n && !rc; i++) {
		const char *kn = vs.names.v[i];
		char key[1024], hex[HASH_HEX_LEN + 1], name[OBJNAME_MAX];
		struct membuf body;
		int64_t gen;
		int tries = 0;

		progress_set(pj, i);
		if (vs.sizes[i] > cap) {
			char *nb = realloc(buf, vs.sizes[i]);

			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			cap = vs.sizes[i];
		}
		rc = meta_key_parse(kn, name, &gen);
		if (!rc)
			rc = remote_object_key(&r->cfg, kn, key, sizeof(key));
		do {
			body = (struct membuf){ buf, 0, vs.sizes[i] };
			if (!rc || rc == -EAGAIN)
				rc = s3_get(s, key, 0, 0, mem_sink, &body,
					    NULL);
		} while (rc == -EAGAIN && ++tries < 3 && !usleep(200 * 1000));
		if (rc == -ENOENT &&
		    tally_meta_read(r->t, still_in_bucket, (void *)kn) != 1) {
			rc = 0; /* its row went meanwhile */
			continue;
		}
		if (rc == -ENOENT) {
			rc = 0;
			v->missing++;
			gc_verify_bad(v, name);
			log_msg(LOG_ERR,
				"verify remote: object '%s' is missing from "
				"the bucket",
				name);
			continue;
		}
		if (rc && rc != -EFBIG)
			break;
		v->checked++;
		v->bytes += body.n;
		if (!rc) {
			hash_block(buf, body.n, hex);
			rc = body.n == vs.sizes[i] ? hash_name_check(name, hex)
						   : -EBADMSG;
		}
		if (!rc) {
			v->ok++;
		} else {
			rc = 0;
			v->corrupt++;
			gc_verify_bad(v, name);
			log_msg(LOG_ERR,
				"verify remote: bucket key '%s' does not hold "
				"the bytes of object '%s'",
				key, name);
		}
	}
	progress_set(pj, i);
	if (rc)
		note_error(r, "verify remote", s ? s3_last_error(s) : "");
out:
	v->duration_ms = (mono() - t0) * 1000;
	progress_end(pj);
	conn_put(r, s);
	free(buf);
	free(vs.names.v);
	free(vs.sizes);
	return rc;
}

/* ------------------------------------------------------------------ */
/* fetches */

/*
 * Whether the bucket's copy of object @name holds @len bytes equal to
 * @buf's: 0 the same, 1 other bytes (a collision), or -errno (the copy
 * could not be read).
 */
static int bucket_same(struct remote *r, const char *name, int64_t gen,
		       const void *buf, size_t len)
{
	struct s3 *s = conn_get(r);
	char *got = malloc(len ? len : 1);
	struct membuf body = { got, 0, len };
	char key[1024], kn[OBJKEY_MAX];
	int rc;

	meta_key_name(name, gen, kn); /* the key of its row's generation */
	rc = s && got ? remote_object_key(&r->cfg, kn, key, sizeof(key))
		      : -ENOMEM;

	if (!rc)
		rc = s3_get(s, key, 0, 0, mem_sink, &body, NULL);
	if (rc == -EFBIG)
		rc = 1;
	else if (!rc)
		rc = body.n != len || memcmp(got, buf, len) != 0;
	if (rc < 0)
		note_error(r, "compare", s ? s3_last_error(s) : "");
	free(got);
	conn_put(r, s);
	return rc;
}

int remote_vet(struct remote *r, const char *name, const void *buf, size_t len)
{
	struct state_ctx c = { name, { 0 } };
	bool paused;
	int rc = tally_meta_read(r->t, state_read, &c);

	if (rc == -ENOENT)
		return 0; /* no row: a new object */
	if (rc)
		return rc;
	/* not in the bucket yet, or not of this size: nothing to compare
	 * with, or other bytes */
	if (!c.st.remote || c.st.size != len)
		goto other;
	pthread_mutex_lock(&r->lock);
	paused = r->pause_until > mono();
	pthread_mutex_unlock(&r->lock);
	if (paused) {
		rc = -EAGAIN; /* the server fails: not asked again */
		goto unsure;
	}
	rc = bucket_same(r, name, c.st.gen, buf, len);
	if (rc == 0) {
		pthread_mutex_lock(&r->lock);
		r->st.compared++;
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	if (rc < 0)
		goto unsure;
other:
	log_msg(LOG_NOTICE,
		"hash collision on object '%s' (its copy in the bucket): "
		"storing the block under the next name",
		name);
	return 1;
unsure:
	log_msg(LOG_NOTICE,
		"remote: cannot compare the bucket's copy of '%s' (%s): "
		"storing the block under the next name",
		name, strerror(-rc));
	return 1;
}

/* A fetched copy, in place: its row marked cached (a shared store's
 * rows say nothing of this node's cache), or, the row gone since the
 * fetch began (the block replaced or freed meanwhile, its file reaped
 * before this copy was put there), the copy removed again under the
 * object verdict: else nothing would ever delete it. */
struct fetched_ctx {
	struct tally *t;
	const char *name;
	uint32_t shard;
	bool gone;
};

static int fetched_settle(struct meta *m, void *arg)
{
	struct fetched_ctx *c = arg;
	struct meta_remote_state st;
	int rc = meta_remote_state(m, c->name, &st);

	c->gone = rc == -ENOENT;
	if (c->gone) {
		rc = reap_copy(m, tally_objstore(c->t), c->name, 0, c->shard,
			       REAP_NOT_MINE);
		return rc < 0 ? rc : 0;
	}
	if (rc || meta_shared(m))
		return rc;
	return meta_remote_set_cached(m, c->name, true);
}

/* One attempt: the object's bytes, checked, into its local copy. */
static int fetch_once(struct remote *r, struct s3 *s, uint32_t shard,
		      const char *name, int64_t gen, uint64_t size, char *buf)
{
	struct membuf body = { buf, 0, size };
	char key[1024], kn[OBJKEY_MAX];
	uint64_t total = 0;
	int rc;

	meta_key_name(name, gen, kn);
	rc = remote_object_key(&r->cfg, kn, key, sizeof(key));

	if (!rc)
		rc = s3_get(s, key, 0, 0, mem_sink, &body, &total);
	if (rc == -EFBIG || (!rc && body.n != size))
		rc = -EBADMSG; /* not the size its row says */
	/* checked against its name before it is stored (or served) */
	if (!rc)
		rc = objstore_cache_put(tally_objstore(r->t), shard, name, buf,
					body.n);
	if (rc == -EBADMSG) {
		log_msg(LOG_ERR,
			"remote: bucket key '%s' does not hold the bytes of "
			"object '%s'",
			key, name);
		return rc;
	}
	if (!rc) {
		struct fetched_ctx c = { r->t, name, shard, false };

		rc = tally_meta_shared(r->t)
			     ? tally_meta_read(r->t, fetched_settle, &c)
			     : tally_meta_txn(r->t, fetched_settle, &c);
		if (!rc && c.gone)
			return -ESTALE;
	}
	if (!rc) {
		pthread_mutex_lock(&r->lock);
		r->st.fetched++;
		r->st.bytes_fetched += body.n;
		pthread_mutex_unlock(&r->lock);
	}
	return rc;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

/*
 * A shared store: object @name is committed by another node and not in
 * the bucket yet (objects reach it before their commit there, but a row
 * from before may still be queued): wait for it, at most the remote
 * timeout. 0 once the bucket has it, -ENOENT if its row went, -EIO.
 */
static int wait_in_bucket(struct remote *r, const char *name)
{
	double end =
		mono() + (r->cfg.stall_timeout > 0 ? r->cfg.stall_timeout : 30);
	int rc;

	for (;;) {
		struct state_ctx c = { name, { 0 } };

		rc = tally_meta_read(r->t, state_read, &c);
		if (rc || c.st.remote)
			return rc;
		if (mono() > end)
			return -EIO;
		sleep_s(0.1);
	}
}

static int fetch_retried(struct remote *r, uint32_t shard, const char *name,
			 uint64_t size)
{
	struct s3 *s = conn_get(r);
	char *buf = malloc(size ? size : 1);
	double delay = 0.25;
	int rc = -ENOMEM, attempt;

	for (attempt = 0; s && buf && attempt < 5; attempt++) {
		struct state_ctx c = { name, { 0 } };

		/* the key of its row's generation */
		rc = tally_meta_read(r->t, state_read, &c);
		if (rc)
			break;
		rc = fetch_once(r, s, shard, name, c.st.gen, size, buf);
		/* another node's object, still on its way to the bucket */
		if (rc == -ENOENT && tally_meta_shared(r->t) &&
		    wait_in_bucket(r, name) == 0 && attempt < 4)
			continue;
		if (rc != -EAGAIN && rc != -EIO)
			break;
		note_error(r, "fetch", s3_last_error(s));
		if (attempt < 4) {
			struct timespec ts = { 0, (long)(delay * 1e9) %
							  1000000000L };

			ts.tv_sec = (time_t)delay;
			nanosleep(&ts, NULL);
			delay *= 2;
		}
	}
	free(buf);
	conn_put(r, s);
	if (rc == -EAGAIN)
		rc = -EIO; /* retried: the server stays unreachable */
	if (rc && rc != -ESTALE)
		log_msg(LOG_ERR, "remote: cannot fetch object '%s': %s", name,
			strerror(-rc));
	return rc;
}

int remote_fetch(struct remote *r, uint32_t shard, const char *name,
		 uint64_t size)
{
	struct fetch *f, **p;
	int rc;

	pthread_mutex_lock(&r->lock);
	for (f = r->fetching; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			break;
	if (f) {
		/* another reader fetches it: wait for its outcome */
		f->waiters++;
		while (!f->done)
			pthread_cond_wait(&r->fetched, &r->lock);
		rc = f->rc;
		if (--f->waiters == 0)
			free(f);
		pthread_mutex_unlock(&r->lock);
		return rc;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		pthread_mutex_unlock(&r->lock);
		return -ENOMEM;
	}
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->waiters = 1;
	f->next = r->fetching;
	r->fetching = f;
	pthread_mutex_unlock(&r->lock);

	rc = fetch_retried(r, shard, name, size);

	pthread_mutex_lock(&r->lock);
	for (p = &r->fetching; *p != f; p = &(*p)->next)
		;
	*p = f->next;
	f->done = true;
	f->rc = rc;
	pthread_cond_broadcast(&r->fetched);
	if (--f->waiters == 0)
		free(f);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* The PUT of object @j->name from @buf (@j->size bytes, checked against
 * the name first): a flush's buffer, its copy collected meanwhile. */
static int upload_buf(struct remote *r, struct s3 *s, struct job *j,
		      const void *buf)
{
	char key[1024], hex[HASH_HEX_LEN + 1];
	int rc;

	hash_block(buf, j->size, hex);
	rc = hash_name_check(j->name, hex);
	if (rc) {
		snprintf(j->err, sizeof(j->err),
			 "the buffer of '%s' does not hold its bytes", j->name);
		return rc;
	}
	rc = job_key(r, j, key, sizeof(key));
	if (!rc)
		rc = s3_put_buf(s, key, buf, j->size);
	if (rc) {
		j->server = rc != -ENOMEM;
		snprintf(j->err, sizeof(j->err), "upload of '%s': %s", j->name,
			 s3_last_error(s));
	}
	return rc;
}

struct ship_ctx {
	struct remote *r;
	struct state_ctx c;
};

/* The generation this node reserved for @name before, or 0 (r->lock). */
static int64_t reserved_find(struct remote *r, const char *name)
{
	unsigned i;

	for (i = 0; i < RESERVED_SLOTS; i++)
		if (r->reserved[i].gen &&
		    strcmp(r->reserved[i].name, name) == 0)
			return r->reserved[i].gen;
	return 0;
}

/* The row of @arg's object; none: the generation reserved for it before,
 * or a fresh one. */
static int ship_state(struct meta *m, void *arg)
{
	struct ship_ctx *x = arg;
	struct remote *r = x->r;
	int rc = meta_remote_state(m, x->c.name, &x->c.st);
	int64_t gen;

	if (rc != -ENOENT)
		return rc;
	pthread_mutex_lock(&r->lock);
	gen = reserved_find(r, x->c.name);
	pthread_mutex_unlock(&r->lock);
	if (!gen) {
		rc = meta_gen_take(m, &gen);
		if (rc)
			return rc;
		pthread_mutex_lock(&r->lock);
		snprintf(r->reserved[r->reserved_next].name, OBJNAME_MAX, "%s",
			 x->c.name);
		r->reserved[r->reserved_next].gen = gen;
		r->reserved_next = (r->reserved_next + 1) % RESERVED_SLOTS;
		pthread_mutex_unlock(&r->lock);
	}
	x->c.st.gen = gen;
	return -ENOENT;
}

int remote_ship(struct remote *r, uint32_t shard, const char *name,
		uint64_t size, const void *buf, int64_t *gen, bool *fresh)
{
	struct ship_ctx x = { r, { name, { 0 } } };
	struct job j = { .kind = JOB_UP, .shard = shard, .size = size };
	/* a close waits for this: retried for one remote timeout at most,
	 * then EIO (the flush parks, its data kept and sent again later) */
	double delay = 0.25,
	       end = mono() +
		     (r->cfg.stall_timeout > 0 ? r->cfg.stall_timeout : 30);
	struct s3 *s;
	int rc = tally_meta_read(r->t, ship_state, &x), attempt;

	remote_touch(r, name); /* written: used now (eviction's order) */
	if (rc && rc != -ENOENT)
		return rc;
	/* the key of its row's generation, or (no row) of a fresh one,
	 * which the commit gives the row it makes */
	*gen = x.c.st.gen;
	*fresh = rc == -ENOENT;
	if (rc == 0 && x.c.st.remote)
		return 0; /* a node shipped it before: its row says so */
	snprintf(j.name, sizeof(j.name), "%s", name);
	j.gen = x.c.st.gen;
	s = conn_get(r);
	if (!s)
		return -ENOMEM;
	for (attempt = 0; attempt < 5; attempt++) {
		rc = run_upload(r, s, &j);
		/* neither copy nor row: GC collected the copy the flush
		 * wrote before its report named it (a cycle with grace 0);
		 * the flush's buffer holds the bytes, and its commit writes
		 * the copy again (core/flush.c) */
		if (rc == -ESTALE && buf) {
			j.err[0] = '\0';
			rc = upload_buf(r, s, &j, buf);
		}
		if (!rc || !j.server)
			break;
		note_error(r, "upload", s3_last_error(s));
		if (attempt == 4 || mono() + delay > end)
			break;
		sleep_s(delay);
		delay *= 2;
	}
	conn_put(r, s);
	if (rc) {
		log_msg(LOG_ERR, "remote: %s",
			j.err[0] ? j.err : strerror(-rc));
		/* the server unreachable or busy (EAGAIN: a timeout, a
		 * 5xx), retried: what close(2) and fsync(2) say is EIO */
		return rc == -ESTALE || rc == -EAGAIN ? -EIO : rc;
	}
	pthread_mutex_lock(&r->lock);
	r->st.uploaded++;
	r->st.bytes_uploaded += size;
	pthread_mutex_unlock(&r->lock);
	return 1;
}

/* ------------------------------------------------------------------ */
/* read-ahead */

void remote_prefetch(struct remote *r, uint32_t shard, const char *name,
		     uint64_t size)
{
	struct job *j, **p;
	struct fetch *f;

	pthread_mutex_lock(&r->lock);
	if (r->stop_workers || r->nahead >= REMOTE_AHEAD_QUEUE)
		goto out;
	for (p = &r->ahead; *p; p = &(*p)->next)
		if (!strcmp((*p)->name, name))
			goto out;
	for (f = r->fetching; f; f = f->next)
		if (!strcmp(f->name, name))
			goto out;
	j = calloc(1, sizeof(*j));
	if (!j)
		goto out;
	snprintf(j->name, sizeof(j->name), "%s", name);
	j->shard = shard;
	j->size = size;
	*p = j;
	r->nahead++;
	pthread_cond_signal(&r->ahead_work);
out:
	pthread_mutex_unlock(&r->lock);
}

static void *ahead_main(void *arg)
{
	struct remote *r = arg;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct state_ctx c;
		struct job *j;
		off_t size;

		while (!r->ahead && !r->stop_workers)
			pthread_cond_wait(&r->ahead_work, &r->lock);
		if (r->stop_workers)
			break;
		j = r->ahead;
		r->ahead = j->next;
		r->nahead--;
		pthread_mutex_unlock(&r->lock);
		/* where its row says, if the bucket has it and it is not
		 * local (a reference may name a shard it moved from) */
		c = (struct state_ctx){ j->name, { 0 } };
		if (tally_meta_read(r->t, state_read, &c) == 0 && c.st.remote &&
		    objstore_stat(tally_objstore(r->t), c.st.shard, j->name,
				  &size) == -ENOENT &&
		    remote_fetch(r, c.st.shard, j->name, c.st.size) == 0) {
			mark_ahead(r, j->name);
			pthread_mutex_lock(&r->lock);
			r->st.read_ahead++;
			pthread_mutex_unlock(&r->lock);
		}
		free(j);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}
