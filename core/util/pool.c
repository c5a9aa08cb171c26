/* SPDX-License-Identifier: MIT */
/*
 * Worker pool.
 *
 * DESIGN NOTES
 *
 * Two job classes, each with its own FIFO queue and its own threads:
 * flush streams (POOL_FLUSH) and control jobs (POOL_CONTROL: GC, verify,
 * rebalance, sweep, control commands). A control job may run for minutes
 * and may wait for flush streams (drain); a flush stream never waits for
 * a job. With one shared queue, a control job on the only worker held
 * back every flush queued behind it, and with them the permits of the
 * flush pipeline: writers and fsync stalled until the job ended.
 *
 * Invariants:
 *  1. A submitted job runs exactly once, in a worker of its class or in a
 *     thread that called pool_help() or pool_help_fn(); pool_free()
 *     returns only when every queue is empty and no job is running.
 *  2. Within a class, jobs start in submission order (FIFO), helpers
 *     aside; jobs may finish in any order (the flush finalizer reorders
 *     by sequence number).
 *  3. A worker takes jobs of its own class only: a control job never
 *     occupies a flush worker, so flush streams make progress whatever
 *     the control jobs do (a control job waiting for flushes cannot
 *     deadlock, even with one worker per class).
 *
 * States of a job: queued (in its class's list) -> running (taken by a
 * thread) -> done (freed). Only pool_submit(), take() (from worker(),
 * pool_help(), pool_help_fn()) and run() move them.
 *
 * Lock: p->lock protects everything below it; no other lock is taken
 * while it is held, and jobs run without it.
 */
#include "core/util/pool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct job {
	void (*fn)(void *arg);
	void *arg;
	enum pool_class cls;
	struct job *next;
};

struct queue {
	pthread_cond_t work;		/* a job was queued, or shutdown */
	struct job *head, *tail;	/* protected by pool->lock */
	uint64_t queued, running, done; /* protected by pool->lock */
	unsigned nthreads;
};

struct worker {
	struct pool *p;
	enum pool_class cls;
	pthread_t thread;
};

struct pool {
	pthread_mutex_t lock;
	struct queue q[POOL_NCLASSES];
	bool stopping; /* protected by lock */
	unsigned nworkers;
	struct worker *workers;
};

/* Take job @j, which follows @prev (NULL: the head) in @q (lock held). */
static struct job *take(struct queue *q, struct job *prev, struct job *j)
{
	if (prev)
		prev->next = j->next;
	else
		q->head = j->next;
	if (q->tail == j)
		q->tail = prev;
	assert(q->queued > 0);
	q->queued--;
	q->running++;
	return j;
}

static void run(struct pool *p, struct job *j)
{
	struct queue *q = &p->q[j->cls];

	j->fn(j->arg);
	free(j);
	pthread_mutex_lock(&p->lock);
	assert(q->running > 0);
	q->running--;
	q->done++;
	pthread_mutex_unlock(&p->lock);
}

static void *worker(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->p;
	struct queue *q = &p->q[w->cls];

	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (q->head) {
			struct job *j = take(q, NULL, q->head);

			pthread_mutex_unlock(&p->lock);
			run(p, j);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		if (p->stopping)
			break;
		pthread_cond_wait(&q->work, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Stop and join the workers; each leaves once its queue is empty. */
static void stop(struct pool *p)
{
	unsigned i;

	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	for (i = 0; i < POOL_NCLASSES; i++)
		pthread_cond_broadcast(&p->q[i].work);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i].thread, NULL);
	for (i = 0; i < POOL_NCLASSES; i++) {
		assert(!p->q[i].head && p->q[i].running == 0);
		pthread_cond_destroy(&p->q[i].work);
	}
	pthread_mutex_destroy(&p->lock);
	free(p->workers);
	free(p);
}

int pool_new(unsigned nflush, unsigned ncontrol, struct pool **out)
{
	const unsigned want[POOL_NCLASSES] = { nflush, ncontrol };
	struct pool *p;
	unsigned c, i;

	if (nflush == 0 || ncontrol == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->workers = calloc((size_t)nflush + ncontrol, sizeof(*p->workers));
	if (!p->workers) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	for (c = 0; c < POOL_NCLASSES; c++)
		pthread_cond_init(&p->q[c].work, NULL);
	for (c = 0; c < POOL_NCLASSES; c++) {
		for (i = 0; i < want[c]; i++) {
			struct worker *w = &p->workers[p->nworkers];

			w->p = p;
			w->cls = (enum pool_class)c;
			if (pthread_create(&w->thread, NULL, worker, w) != 0)
				break;
			p->nworkers++;
			p->q[c].nthreads++;
		}
	}
	/* fewer threads than asked will do; none for a class will not */
	for (c = 0; c < POOL_NCLASSES; c++) {
		if (p->q[c].nthreads == 0) {
			stop(p);
			return -EAGAIN;
		}
	}
	*out = p;
	return 0;
}

void pool_free(struct pool *p)
{
	if (p)
		stop(p); /* workers leave only once queues are empty (1) */
}

int pool_submit(struct pool *p, enum pool_class cls, void (*fn)(void *arg),
		void *arg)
{
	struct job *j;
	struct queue *q;
	int rc = 0;

	assert(cls < POOL_NCLASSES);
	j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->fn = fn;
	j->arg = arg;
	j->cls = cls;
	j->next = NULL;
	q = &p->q[cls];
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		rc = -ESHUTDOWN;
	} else {
		if (q->tail)
			q->tail->next = j;
		else
			q->head = j;
		q->tail = j;
		q->queued++;
		pthread_cond_signal(&q->work);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc)
		free(j);
	return rc;
}

/* Take the first queued job that runs @fn (NULL: any), control jobs
 * first; NULL if there is none. */
static struct job *take_for_help(struct pool *p, void (*fn)(void *arg))
{
	static const enum pool_class order[] = { POOL_CONTROL, POOL_FLUSH };
	struct job *j = NULL;
	unsigned i;

	pthread_mutex_lock(&p->lock);
	for (i = 0; i < POOL_NCLASSES && !j; i++) {
		struct queue *q = &p->q[order[i]];
		struct job *prev = NULL;

		for (j = q->head; j && fn && j->fn != fn; j = j->next)
			prev = j;
		if (j)
			take(q, prev, j);
	}
	pthread_mutex_unlock(&p->lock);
	return j;
}

bool pool_help(struct pool *p)
{
	struct job *j = take_for_help(p, NULL);

	if (!j)
		return false;
	run(p, j);
	return true;
}

bool pool_help_fn(struct pool *p, void (*fn)(void *arg))
{
	struct job *j = take_for_help(p, fn);

	if (!j)
		return false;
	run(p, j);
	return true;
}

void pool_stats(struct pool *p, struct pool_stats *out)
{
	unsigned c;

	pthread_mutex_lock(&p->lock);
	out->queued = out->running = out->done = 0;
	for (c = 0; c < POOL_NCLASSES; c++) {
		const struct queue *q = &p->q[c];

		out->cls[c].workers = q->nthreads;
		out->cls[c].queued = q->queued;
		out->cls[c].running = q->running;
		out->cls[c].done = q->done;
		out->queued += q->queued;
		out->running += q->running;
		out->done += q->done;
	}
	out->workers = p->q[POOL_FLUSH].nthreads;
	pthread_mutex_unlock(&p->lock);
}
