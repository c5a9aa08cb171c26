/* SPDX-License-Identifier: MIT */
/*
 * Fetches: an evicted object read from the bucket, checked and kept;
 * the comparison of a new block with the bucket's copy (remote_vet());
 * read-ahead for sequential readers; verify remote.
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
#include "core/objects/verify.h"
#include "core/meta/meta.h"
#include "core/util/progress.h"
#include "core/objects/objstore.h"
#include "core/objects/reap.h"
#include "core/fs/tally.h"

/* ------------------------------------------------------------------ */
/* the body of an object */

/*
 * Object key name @kn's body, at bucket key @key, into @buf (@size
 * bytes), out of its envelope when the store's bodies have one: 0
 * (*@got: the bytes), -EFBIG (more than @size), -EBADMSG (an envelope
 * that does not open: altered, cut, another object's, another key's;
 * logged), or the request's error.
 */
static int get_object(struct remote *r, struct s3 *s, const char *key,
		      const char *kn, char *buf, uint64_t size, uint64_t *got)
{
	struct membuf body = { buf, 0, size };
	size_t cap = seal_bound(size), n = 0;
	uint64_t kid = 0;
	char hex[17];
	int rc;

	if (!r->sealed) {
		rc = s3_get(s, key, 0, 0, rl_mem_sink, &body, NULL);
		*got = body.n;
		return rc;
	}
	body = (struct membuf){ malloc(cap), 0, cap };
	if (!body.buf)
		return -ENOMEM;
	rc = s3_get(s, key, 0, 0, rl_mem_sink, &body, NULL);
	if (!rc)
		rc = seal_open(&r->seal, kn, body.buf, body.n, buf, size, &n,
			       &kid);
	free(body.buf);
	*got = n;
	if (rc != -EBADMSG && rc != -EUCLEAN && rc != -ENOKEY &&
	    rc != -EKEYREJECTED)
		return rc;
	seal_key_id_text(kid, hex);
	log_msg(LOG_ERR, "remote: bucket key '%s' does not open: %s", key,
		rc == -EKEYREJECTED ? "sealed with another key"
		: rc == -EUCLEAN    ? "sealed by another store"
		: rc == -ENOKEY	    ? "encrypted, and no key"
				    : "altered, cut, or another key's body");
	return -EBADMSG;
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
	return rl_names_add(&v->names, name);
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
	s = rl_conn_get(r);
	if (!s) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < vs.names.n && !rc; i++) {
		const char *kn = vs.names.v[i];
		char key[1024], hex[HASH_HEX_LEN + 1], name[OBJNAME_MAX];
		uint64_t got = 0;
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
			rc = bucket_object_key(&r->cfg, kn, key, sizeof(key));
		do {
			if (!rc || rc == -EAGAIN)
				rc = get_object(r, s, key, kn, buf, vs.sizes[i],
						&got);
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
		if (rc && rc != -EFBIG && rc != -EBADMSG)
			break;
		v->checked++;
		v->bytes += got;
		if (!rc) {
			hash_block(buf, got, hex);
			rc = got == vs.sizes[i] ? hash_name_check(name, hex)
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
		rl_note_error(r, "verify remote", s ? s3_last_error(s) : "");
out:
	v->duration_ms = (mono() - t0) * 1000;
	progress_end(pj);
	rl_conn_put(r, s);
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
	struct s3 *s = rl_conn_get(r);
	char *got = malloc(len ? len : 1);
	char key[1024], kn[OBJKEY_MAX];
	uint64_t n = 0;
	int rc;

	meta_key_name(name, gen, kn); /* the key of its row's generation */
	rc = s && got ? bucket_object_key(&r->cfg, kn, key, sizeof(key))
		      : -ENOMEM;

	if (!rc)
		rc = get_object(r, s, key, kn, got, len, &n);
	if (rc == -EFBIG)
		rc = 1;
	else if (!rc)
		rc = n != len || memcmp(got, buf, len) != 0;
	if (rc < 0)
		rl_note_error(r, "compare", s ? s3_last_error(s) : "");
	free(got);
	rl_conn_put(r, s);
	return rc;
}

int remote_vet(struct remote *r, const char *name, const void *buf, size_t len)
{
	struct state_ctx c = { name, { 0 } };
	bool paused;
	int rc = tally_meta_read(r->t, rl_state_read, &c);

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

/* One attempt: the object's bytes, checked, into its local copy (with
 * @keep; else into @buf alone, for a read the cache cannot keep a copy
 * of: -ENOSPC with @keep). */
static int fetch_once(struct remote *r, struct s3 *s, uint32_t shard,
		      const char *name, int64_t gen, uint64_t size, char *buf,
		      bool keep)
{
	char key[1024], kn[OBJKEY_MAX];
	uint64_t got = 0;
	int rc;

	meta_key_name(name, gen, kn);
	rc = bucket_object_key(&r->cfg, kn, key, sizeof(key));

	if (!rc)
		rc = get_object(r, s, key, kn, buf, size, &got);
	if (rc == -EFBIG || (!rc && got != size))
		rc = -EBADMSG; /* not the size its row says */
	/* checked against its name before it is stored (or served); a
	 * cache disk too full for it: copies the bucket holds make room,
	 * its size and the free space the object store keeps (without
	 * cache_size nothing else evicts them, and the reads of a node
	 * whose disk filled failed: issue 45, item 7) */
	if (!rc && keep)
		rc = objstore_cache_put(tally_objstore(r->t), shard, name, buf,
					got);
	if (rc == -ENOSPC && rl_make_room(r, got + OBJSTORE_RESERVE) == 0)
		rc = objstore_cache_put(tally_objstore(r->t), shard, name, buf,
					got);
	if (!rc && !keep) {
		char hex[HASH_HEX_LEN + 1];

		hash_block(buf, got, hex);
		rc = hash_name_check(name, hex) ? -EBADMSG : 0;
	}
	if (rc == -EBADMSG) {
		log_msg(LOG_ERR,
			"remote: bucket key '%s' does not hold the bytes of "
			"object '%s'",
			key, name);
		return rc;
	}
	if (!rc && keep) {
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
		r->st.bytes_fetched += got;
		pthread_mutex_unlock(&r->lock);
	}
	return rc;
}

void rl_sleep_s(double s)
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

		rc = tally_meta_read(r->t, rl_state_read, &c);
		if (rc || c.st.remote)
			return rc;
		if (mono() > end)
			return -EIO;
		rl_sleep_s(0.1);
	}
}

/* The fetch of object @name, retried: its local copy made; or, with
 * @into, its bytes there alone (size bytes). */
static int fetch_retried(struct remote *r, uint32_t shard, const char *name,
			 uint64_t size, char *into)
{
	struct s3 *s = rl_conn_get(r);
	char *buf = into ? into : malloc(size ? size : 1);
	double delay = 0.25;
	int rc = -ENOMEM, attempt;

	for (attempt = 0; s && buf && attempt < 5; attempt++) {
		struct state_ctx c = { name, { 0 } };

		/* the key of its row's generation */
		rc = tally_meta_read(r->t, rl_state_read, &c);
		if (rc)
			break;
		rc = fetch_once(r, s, shard, name, c.st.gen, size, buf, !into);
		/* another node's object, still on its way to the bucket */
		if (rc == -ENOENT && tally_meta_shared(r->t) &&
		    wait_in_bucket(r, name) == 0 && attempt < 4)
			continue;
		if (rc != -EAGAIN && rc != -EIO)
			break;
		rl_note_error(r, "fetch", s3_last_error(s));
		if (attempt < 4) {
			struct timespec ts = { 0, (long)(delay * 1e9) %
							  1000000000L };

			ts.tv_sec = (time_t)delay;
			nanosleep(&ts, NULL);
			delay *= 2;
		}
	}
	if (!into)
		free(buf);
	rl_conn_put(r, s);
	if (rc == -EAGAIN)
		rc = -EIO; /* retried: the server stays unreachable */
	/* a copy that the full disk cannot keep: the read goes on
	 * through remote_read() */
	if (rc && rc != -ESTALE && rc != -ENOSPC)
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

	rc = fetch_retried(r, shard, name, size, NULL);

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

ssize_t remote_read(struct remote *r, uint32_t shard, const char *name,
		    uint64_t size, void *out, size_t off, size_t len)
{
	char *buf = malloc(size ? size : 1);
	size_t n = 0;
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = fetch_retried(r, shard, name, size, buf);
	if (!rc && off < size) {
		n = size - off < len ? size - off : len;
		memcpy(out, buf + off, n);
	}
	free(buf);
	return rc ? rc : (ssize_t)n;
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
	/* within the cache's bound: half of it ahead at most, one block
	 * at least (16 blocks of 1 MiB ahead in a cache of 8 MiB evicted
	 * copies before their reads got to them) */
	if (r->cache_size && r->nahead &&
	    (r->nahead + 1) * size > r->cache_size / 2)
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

void *rl_ahead_main(void *arg)
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
		if (tally_meta_read(r->t, rl_state_read, &c) == 0 &&
		    c.st.remote &&
		    objstore_stat(tally_objstore(r->t), c.st.shard, j->name,
				  &size) == -ENOENT &&
		    remote_fetch(r, c.st.shard, j->name, c.st.size) == 0) {
			rl_mark_ahead(r, j->name);
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
