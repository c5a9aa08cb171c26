/* SPDX-License-Identifier: MIT */
/*
 * The remote tier's uploads: the workers and their connections, the
 * loop's recording of what they report, the scheduling of uploads
 * (upload_delay, backoffs), the low-water mark durable_remote_seq, and
 * the ship of an object from a flush's buffer (remote_ship()).
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
#include "core/util/io.h"
#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/util/progress.h"
#include "core/objects/objstore.h"
#include "core/objects/reap.h"
#include "core/fs/tally.h"

/* ------------------------------------------------------------------ */
/* the workers */

int rl_state_read(struct meta *m, void *arg)
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
	return remote_object_key(r, j->name, j->gen, key, len);
}

/* A worker's buffers for sealed uploads, grown (array_reserve()) to the
 * largest object it has sent and kept: a fresh pair each job (a block
 * each, 1 MiB by default) cost about 0.1 ms a MiB in page faults. */
struct upbufs {
	char *in;  /* the local copy, read whole */
	char *out; /* its envelope */
	size_t incap, outcap;
};

static void upbufs_release(struct upbufs *u)
{
	free(u->in);
	free(u->out);
	memset(u, 0, sizeof(*u));
}

/* The PUT of @j's object from @buf (@j->size bytes) under @key, in
 * its envelope if the store's bodies have one (core/s3/seal.h). */
static int put_body(struct remote *r, struct s3 *s, struct job *j,
		    const char *key, const void *buf, struct upbufs *u)
{
	char kn[OBJKEY_MAX];
	size_t n;
	void *out;
	int rc;

	if (!r->sealed) {
		j->stored = j->size;
		return s3_put_buf(s, key, buf, j->size);
	}
	if (array_reserve(&u->out, &u->outcap, seal_bound(j->size), 1))
		return -ENOMEM;
	out = u->out;
	meta_key_name(j->name, j->gen, kn);
	rc = seal_buf(&r->seal, kn, buf, j->size, out, &n);
	if (!rc) {
		j->stored = n;
		rc = s3_put_buf(s, key, out, n);
	}
	return rc;
}

/* The PUT of object @j->name from @buf (@j->size bytes, checked against
 * the name first): a flush's buffer, its copy collected meanwhile. */
static int upload_buf(struct remote *r, struct s3 *s, struct job *j,
		      const void *buf, struct upbufs *u)
{
	char key[1024], hex[HASH_HEX_LEN + 1];
	int rc;

	hash_block(buf, j->size, hex);
	rc = hash_name_check(j->name, hex);
	if (rc) {
		j->server = false; /* the bytes' fault, not the server's */
		snprintf(j->err, sizeof(j->err),
			 "the bytes read for '%s' do not hash to its name",
			 j->name);
		return rc;
	}
	rc = job_key(r, j, key, sizeof(key));
	if (!rc)
		rc = put_body(r, s, j, key, buf, u);
	if (rc) {
		j->server = rc != -ENOMEM;
		snprintf(j->err, sizeof(j->err), "upload of '%s': %s", j->name,
			 s3_last_error(s));
	}
	return rc;
}

/* A sealed store's upload: the local copy read whole (an object is a
 * block at most), then checked, sealed and put from memory. */
static int upload_whole(struct remote *r, struct s3 *s, struct job *j, int fd,
			struct upbufs *u)
{
	char *buf = array_reserve(&u->in, &u->incap, j->size ? j->size : 1, 1)
			    ? NULL
			    : u->in;
	ssize_t n = buf ? io_read_full(fd, buf, j->size, 0) : -ENOMEM;
	int rc = n < 0 ? (int)n : (uint64_t)n < j->size ? -EUCLEAN : 0;

	if (rc) {
		j->server = false;
		snprintf(j->err, sizeof(j->err),
			 "local copy of '%s' unreadable: %s", j->name,
			 strerror(-rc));
	} else {
		rc = upload_buf(r, s, j, buf, u);
	}
	return rc;
}

/*
 * An upload whose row stands and whose local copy is gone (a power loss
 * that kept the unlink of an eviction and not the rows that allowed it,
 * before the eviction followed the deletion rule): the bucket is asked.
 * It holds the key: the upload is done, the copy recorded as evicted
 * (j->evicted), 0. It does not: the object is lost; said, and the job
 * fails as the copy's (no retry of the server helps), -ENOENT.
 */
static int settle_gone(struct remote *r, struct s3 *s, struct job *j)
{
	char key[1024];
	uint64_t size = 0;
	int rc = job_key(r, j, key, sizeof(key));

	if (!rc)
		rc = s3_head(s, key, &size);
	if (!rc) {
		j->stored = size;
		j->evicted = true;
		log_msg(LOG_NOTICE,
			"remote: '%s' has no local copy and the bucket has it: "
			"recorded as uploaded and evicted",
			j->name);
		return 0;
	}
	j->server = rc != -ENOENT;
	if (rc == -ENOENT)
		snprintf(j->err, sizeof(j->err),
			 "lost: '%s' has neither a local copy nor a key in the "
			 "bucket",
			 j->name);
	else
		snprintf(j->err, sizeof(j->err),
			 "'%s' has no local copy, and the bucket cannot be "
			 "asked for it: %s",
			 j->name, s3_last_error(s));
	return rc;
}

/* Upload object @j->name: its local copy, checked against its name in
 * the same read that hashes the body for the server. */
static int run_upload(struct remote *r, struct s3 *s, struct job *j,
		      struct upbufs *u)
{
	struct objstore *os = tally_objstore(r->t);
	bool encoded = objstore_encoded(os);
	void *buf = NULL;
	char key[1024];
	struct stat st;
	size_t len = 0;
	int fd, rc, tries;

	for (tries = 0;; tries++) {
		struct state_ctx c = { j->name, { 0 } };

		/* compress_local: the copy opened (checked against its
		 * name by objstore_load()), then put from memory */
		fd = encoded ? objstore_load(os, j->shard, j->name, &buf, &len)
			     : objstore_open_read(os, j->shard, j->name);
		if (fd != -ENOENT || tries)
			break;
		/* moved by a rebalance meanwhile, or gone */
		rc = tally_meta_read(r->t, rl_state_read, &c);
		if (rc == -ENOENT)
			return -ESTALE; /* its row went: nothing to ship */
		if (rc)
			return rc;
		j->shard = c.st.shard;
	}
	if (fd == -ENOENT)
		return settle_gone(r, s, j);
	if (fd < 0) {
		j->server = false;
		snprintf(j->err, sizeof(j->err),
			 "local copy of '%s' unreadable: %s", j->name,
			 strerror(-fd));
		return fd;
	}
	if (encoded) {
		rc = len == j->size ? upload_buf(r, s, j, buf, u) : -EUCLEAN;
		if (rc == -EUCLEAN) {
			j->server = false;
			snprintf(j->err, sizeof(j->err),
				 "local copy of '%s' does not hold its bytes",
				 j->name);
		}
		free(buf);
		return rc; /* its error said in j->err */
	}
	rc = fstat(fd, &st) ? -errno : 0;
	if (!rc && (uint64_t)st.st_size != j->size)
		rc = -EUCLEAN;
	if (!rc)
		rc = job_key(r, j, key, sizeof(key));
	if (!rc && r->sealed) {
		rc = upload_whole(r, s, j, fd, u);
		close(fd);
		return rc; /* its error said in j->err */
	}
	j->stored = j->size;
	if (!rc) {
		struct upcheck c = { hash_begin(), j->name };

		rc = c.h ? s3_put_fd_each(s, key, fd, j->size, upcheck, &c)
			 : -ENOMEM;
		if (c.h)
			hash_end(c.h, NULL);
	}
	if (rc == -EBADMSG || rc == -EUCLEAN) {
		j->server = false; /* a retry of the server would not help */
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

void *rl_worker_main(void *arg)
{
	struct remote *r = arg;
	struct upbufs u = { 0 };
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
		j->evicted = false;
		if (!s && s3_new(&r->cfg, &s)) {
			s = NULL;
			j->rc = -ENOMEM;
		} else if (j->kind == JOB_UP) {
			j->rc = run_upload(r, s, j, &u);
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
	upbufs_release(&u);
	s3_free(s);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the loop: recording, scheduling, the low-water mark */

struct backoff *rl_backoff_find(struct remote *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nbackoff; i++)
		if (strcmp(r->backoff[i].name, name) == 0)
			return &r->backoff[i];
	return NULL;
}

static void backoff_drop(struct remote *r, const char *name)
{
	struct backoff *b = rl_backoff_find(r, name);

	if (b)
		*b = r->backoff[--r->nbackoff];
}

double rl_backoff_delay(struct remote *r, unsigned attempts)
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
bool rl_busy(struct remote *r, const char *name)
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

void rl_push_ready(struct remote *r, struct job *j)
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
		/* a shared store's rows are every node's: no mark */
		if (!rc && j->evicted && !tally_meta_shared(c->t))
			rc = meta_remote_set_cached(m, j->name, false);
	}
	return rc;
}

/*
 * Record finished jobs: successes in one transaction, failures into
 * their backoff. A transaction that fails leaves the jobs to record
 * again (an upload recorded late is only shipped twice at worst).
 */
void rl_record(struct remote *r, struct job *jobs)
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
				r->st.bytes_uploaded += j->stored;
				r->st.bytes_logical += j->size;
				r->st.bytes_stored += j->stored;
			} else if (j->rc == 0) {
				r->st.deleted++;
			}
			r->st.reachable = true;
		} else {
			struct backoff *b = rl_backoff_find(r, j->name);

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
					now + rl_backoff_delay(r, b->attempts);
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
					rl_backoff_delay(r, r->pause_attempts);
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
	b = rl_backoff_find(r, name);
	if (rl_busy(r, name) || (b && b->not_before > c->now)) {
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
	rl_push_ready(r, j);
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

void rl_schedule_uploads(struct remote *r)
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
void rl_update_low(struct remote *r)
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
	struct upbufs u = { 0 }; /* a close's own: freed when it is done */
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
	s = rl_conn_get(r);
	if (!s)
		return -ENOMEM;
	for (attempt = 0; attempt < 5; attempt++) {
		rc = run_upload(r, s, &j, &u);
		/* neither copy nor row: GC collected the copy the flush
		 * wrote before its report named it (a cycle with grace 0);
		 * the flush's buffer holds the bytes, and its commit writes
		 * the copy again (core/fs/flush.c) */
		if (rc == -ESTALE && buf) {
			j.err[0] = '\0';
			rc = upload_buf(r, s, &j, buf, &u);
		}
		if (!rc || !j.server)
			break;
		rl_note_error(r, "upload", s3_last_error(s));
		if (attempt == 4 || mono() + delay > end)
			break;
		rl_sleep_s(delay);
		delay *= 2;
	}
	rl_conn_put(r, s);
	upbufs_release(&u);
	if (rc) {
		log_msg(LOG_ERR, "remote: %s",
			j.err[0] ? j.err : strerror(-rc));
		/* the server unreachable or rl_busy (EAGAIN: a timeout, a
		 * 5xx), retried: what close(2) and fsync(2) say is EIO */
		return rc == -ESTALE || rc == -EAGAIN ? -EIO : rc;
	}
	pthread_mutex_lock(&r->lock);
	r->st.uploaded++;
	r->st.bytes_uploaded += j.stored;
	r->st.bytes_logical += size;
	r->st.bytes_stored += j.stored;
	pthread_mutex_unlock(&r->lock);
	return 1;
}
