/* SPDX-License-Identifier: MIT */
/*
 * The registry of running jobs and their progress (see core/util/progress.h).
 *
 * DESIGN NOTES
 *
 * States: a job is registered by progress_begin() (linked at the tail of
 * the list, with the next id) and unregistered by progress_end()
 * (unlinked, then freed). There is no other state: a job that is linked
 * is running.
 *
 * Invariants (progress_check):
 *  1. The list is doubly linked, head to tail in increasing id order, and
 *     holds njobs jobs.
 *  2. Ids are never reused: next_id only grows.
 *  3. A job is freed only after it was unlinked under p->lock, so a
 *     reader holding p->lock may read any linked job.
 *
 * Lock order: p->lock is innermost; no other lock is taken under it.
 */
#include "core/util/progress.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct progress_job {
	struct progress *p;
	uint64_t id;
	char name[PROGRESS_NAME_MAX];
	char unit[PROGRESS_NAME_MAX];
	int64_t started;
	_Atomic uint64_t done, total;	  /* relaxed: shown, never relied on */
	struct progress_job *prev, *next; /* protected by p->lock */
};

struct progress {
	pthread_mutex_t lock;
	struct progress_job *head, *tail; /* protected by lock */
	size_t njobs;			  /* protected by lock */
	uint64_t next_id;		  /* protected by lock */
};

/* Invariants 1 and 2 (p->lock held). */
static bool progress_check_locked(struct progress *p)
{
	const struct progress_job *j, *prev = NULL;
	size_t n = 0;

	for (j = p->head; j; prev = j, j = j->next) {
		if (j->prev != prev || j->p != p || j->id >= p->next_id ||
		    (prev && prev->id >= j->id))
			return false;
		n++;
	}
	return p->tail == prev && n == p->njobs;
}

int progress_new(struct progress **out)
{
	struct progress *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->next_id = 1;
	*out = p;
	return 0;
}

void progress_free(struct progress *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	assert(p->njobs == 0 && !p->head); /* every job has ended */
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static bool label_ok(const char *s)
{
	size_t len = strlen(s);

	return len > 0 && len < PROGRESS_NAME_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_- ") == len;
}

struct progress_job *progress_begin(struct progress *p, const char *name,
				    const char *unit, uint64_t total)
{
	struct progress_job *j;

	assert(label_ok(name) && label_ok(unit));
	if (!p)
		return NULL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->p = p;
	snprintf(j->name, sizeof(j->name), "%s", name);
	snprintf(j->unit, sizeof(j->unit), "%s", unit);
	j->started = (int64_t)time(NULL);
	atomic_init(&j->done, 0);
	atomic_init(&j->total, total);
	pthread_mutex_lock(&p->lock);
	j->id = p->next_id++;
	j->prev = p->tail;
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->njobs++;
	assert(progress_check_locked(p));
	pthread_mutex_unlock(&p->lock);
	return j;
}

void progress_set_total(struct progress_job *j, uint64_t total)
{
	if (j)
		atomic_store_explicit(&j->total, total, memory_order_relaxed);
}

void progress_add(struct progress_job *j, uint64_t n)
{
	if (j)
		atomic_fetch_add_explicit(&j->done, n, memory_order_relaxed);
}

void progress_set(struct progress_job *j, uint64_t done)
{
	if (j)
		atomic_store_explicit(&j->done, done, memory_order_relaxed);
}

void progress_end(struct progress_job *j)
{
	struct progress *p;

	if (!j)
		return;
	p = j->p;
	pthread_mutex_lock(&p->lock);
	if (j->prev)
		j->prev->next = j->next;
	else
		p->head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		p->tail = j->prev;
	assert(p->njobs > 0);
	p->njobs--;
	assert(progress_check_locked(p));
	pthread_mutex_unlock(&p->lock);
	free(j);
}

/* A reader's view of @j (p->lock held). */
static void job_info(const struct progress_job *j, struct progress_info *i)
{
	memset(i, 0, sizeof(*i));
	i->id = j->id;
	memcpy(i->name, j->name, sizeof(i->name));
	memcpy(i->unit, j->unit, sizeof(i->unit));
	i->started = j->started;
	i->done = atomic_load_explicit(&j->done, memory_order_relaxed);
	i->total = atomic_load_explicit(&j->total, memory_order_relaxed);
	if (i->total && i->done > i->total)
		i->total = i->done; /* an estimate that was too low */
}

int progress_list(struct progress *p, struct progress_info **out, size_t *n)
{
	struct progress_info *v = NULL;
	struct progress_job *j;
	size_t k = 0;

	pthread_mutex_lock(&p->lock);
	if (p->njobs) {
		v = malloc(p->njobs * sizeof(*v));
		if (!v) {
			pthread_mutex_unlock(&p->lock);
			return -ENOMEM;
		}
	}
	for (j = p->head; j; j = j->next)
		job_info(j, &v[k++]);
	assert(k == p->njobs);
	pthread_mutex_unlock(&p->lock);
	*out = v;
	*n = k;
	return 0;
}

int progress_json(struct progress *p, char **out)
{
	struct progress_info *v;
	size_t n, k, cap, used = 0;
	char *s;
	int rc = progress_list(p, &v, &n);

	if (rc)
		return rc;
	/* names and units need no escaping (progress_begin) */
	cap = 3 + n * (128 + 2 * PROGRESS_NAME_MAX);
	s = malloc(cap);
	if (!s) {
		free(v);
		return -ENOMEM;
	}
	s[used++] = '[';
	for (k = 0; k < n; k++) {
		int w = snprintf(s + used, cap - used,
				 "%s{\"id\": %" PRIu64 ", \"name\": \"%s\", "
				 "\"started\": %" PRId64 ", \"done\": %" PRIu64
				 ", \"total\": %" PRIu64 ", \"unit\": \"%s\"}",
				 k ? ", " : "", v[k].id, v[k].name,
				 v[k].started, v[k].done, v[k].total,
				 v[k].unit);

		assert(w > 0 && (size_t)w < cap - used);
		used += (size_t)w;
	}
	s[used++] = ']';
	s[used] = '\0';
	free(v);
	*out = s;
	return 0;
}

bool progress_check(struct progress *p)
{
	bool ok;

	pthread_mutex_lock(&p->lock);
	ok = progress_check_locked(p);
	pthread_mutex_unlock(&p->lock);
	return ok;
}
