/* SPDX-License-Identifier: MIT */
/*
 * The cache: local copies the bucket holds evicted when the cache is
 * over cache_size, least recently used first (approximately).
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
void rl_mark_ahead(struct remote *r, const char *name)
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

/*
 * Evict at least @goal bytes of the least recently used local copies the
 * bucket holds (evict_lock held): the bytes evicted in *@freed_out.
 * 0, or -errno (logged).
 */
static int evict(struct remote *r, uint64_t goal, uint64_t *freed_out)
{
	struct evict_ctx c = { .r = r };
	bool shared = tally_meta_shared(r->t);
	uint64_t freed = 0;
	size_t i;
	int rc;

	*freed_out = 0;
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
	/* the deletion rule: the rows that allow the unlinks (cached=0
	 * here, remote=1 recorded by an upload before) durable first, or a
	 * power loss brings back rows that name a copy that is gone (a
	 * shared store's commits are durable when they answer) */
	if (!rc && !shared)
		rc = tally_meta_sync(r->t);
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
		else
			*freed_out += c.v[i].size;
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
	return rc;
}

/* Bring the local object bytes to 90 % of cache_size when above it. */
void rl_evict(struct remote *r)
{
	bool shared = tally_meta_shared(r->t);
	uint64_t bytes, freed;

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
	pthread_mutex_lock(&r->evict_lock);
	(void)evict(r, bytes - r->cache_size / 10 * 9, &freed);
	pthread_mutex_unlock(&r->evict_lock);
}

int rl_make_room(struct remote *r, uint64_t bytes)
{
	uint64_t freed = 0;
	int rc;

	if (rl_fenced(r))
		return -ENOSPC; /* the bucket's keys are another store's to
				 * keep: no copy goes for them */
	pthread_mutex_lock(&r->evict_lock);
	rc = evict(r, bytes, &freed);
	pthread_mutex_unlock(&r->evict_lock);
	if (!rc && freed)
		log_msg(LOG_NOTICE,
			"remote: the cache disk is full: %" PRIu64
			" bytes of copies the bucket holds evicted to keep "
			"a fetched one",
			freed);
	return rc ? rc : freed ? 0 : -ENOSPC;
}
