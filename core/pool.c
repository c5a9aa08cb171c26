/* SPDX-License-Identifier: MIT */
/*
 * Worker pool.
 *
 * DESIGN NOTES
 *
 * Invariants:
 *  1. A submitted job runs exactly once, in a worker or in a thread that
 *     called pool_help(); pool_free() returns only when the queue is
 *     empty and no job is running.
 *  2. Jobs start in submission order (FIFO); they may finish in any
 *     order (the flush finalizer reorders by sequence number).
 *
 * States of a job: queued (in the list) -> running (taken by a thread) ->
 * done (freed). Only pool_submit(), worker() and pool_help() move them.
 *
 * Lock: p->lock protects everything below it; no other lock is taken
 * while it is held, and jobs run without it.
 */
#include "core/pool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct job {
	void (*fn)(void *arg);
	void *arg;
	struct job *next;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t work;		/* a job was queued, or shutdown */
	struct job *head, *tail;	/* protected by lock */
	uint64_t queued, running, done; /* protected by lock */
	bool stopping;			/* protected by lock */
	unsigned nthreads;
	pthread_t *threads;
};

/* Take the next job (lock held), or NULL. */
static struct job *take(struct pool *p)
{
	struct job *j = p->head;

	if (!j)
		return NULL;
	p->head = j->next;
	if (!p->head)
		p->tail = NULL;
	p->queued--;
	p->running++;
	return j;
}

static void run(struct pool *p, struct job *j)
{
	j->fn(j->arg);
	free(j);
	pthread_mutex_lock(&p->lock);
	assert(p->running > 0);
	p->running--;
	p->done++;
	pthread_mutex_unlock(&p->lock);
}

static void *worker(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct job *j = take(p);

		if (j) {
			pthread_mutex_unlock(&p->lock);
			run(p, j);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		if (p->stopping)
			break;
		pthread_cond_wait(&p->work, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int pool_new(unsigned nthreads, struct pool **out)
{
	struct pool *p;
	unsigned i;

	if (nthreads == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->threads = calloc(nthreads, sizeof(*p->threads));
	if (!p->threads) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	for (i = 0; i < nthreads; i++) {
		if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
			break;
	}
	p->nthreads = i;
	if (i == 0) {
		pthread_cond_destroy(&p->work);
		pthread_mutex_destroy(&p->lock);
		free(p->threads);
		free(p);
		return -EAGAIN;
	}
	*out = p;
	return 0;
}

void pool_free(struct pool *p)
{
	unsigned i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	/* workers leave only once the queue is empty (invariant 1) */
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	assert(!p->head && p->running == 0);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
}

int pool_submit(struct pool *p, void (*fn)(void *arg), void *arg)
{
	struct job *j = malloc(sizeof(*j));
	int rc = 0;

	if (!j)
		return -ENOMEM;
	j->fn = fn;
	j->arg = arg;
	j->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		rc = -ESHUTDOWN;
	} else {
		if (p->tail)
			p->tail->next = j;
		else
			p->head = j;
		p->tail = j;
		p->queued++;
		pthread_cond_signal(&p->work);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc)
		free(j);
	return rc;
}

bool pool_help(struct pool *p)
{
	struct job *j;

	pthread_mutex_lock(&p->lock);
	j = take(p);
	pthread_mutex_unlock(&p->lock);
	if (!j)
		return false;
	run(p, j);
	return true;
}

bool pool_help_fn(struct pool *p, void (*fn)(void *arg))
{
	struct job *j, *prev = NULL;

	pthread_mutex_lock(&p->lock);
	for (j = p->head; j && j->fn != fn; j = j->next)
		prev = j;
	if (j) {
		if (prev)
			prev->next = j->next;
		else
			p->head = j->next;
		if (p->tail == j)
			p->tail = prev;
		p->queued--;
		p->running++;
	}
	pthread_mutex_unlock(&p->lock);
	if (!j)
		return false;
	run(p, j);
	return true;
}

void pool_stats(struct pool *p, struct pool_stats *out)
{
	pthread_mutex_lock(&p->lock);
	out->workers = p->nthreads;
	out->queued = p->queued;
	out->running = p->running;
	out->done = p->done;
	pthread_mutex_unlock(&p->lock);
}
