/* SPDX-License-Identifier: MIT */
/*
 * The worker pool: a fixed set of threads taking jobs from one FIFO queue.
 * It runs the stream phase of the flush pipeline and the control-file
 * commands. Shutdown runs every queued job first: nothing queued is ever
 * dropped.
 */
#ifndef TALLY_POOL_H
#define TALLY_POOL_H

#include <stdbool.h>
#include <stdint.h>

struct pool;

/* Start @nthreads (>= 1) workers. */
int pool_new(unsigned nthreads, struct pool **out);
/* Run every queued job, stop the workers, free. NULL is a no-op. */
void pool_free(struct pool *p);

/* Queue @fn(@arg). -ENOMEM, or -ESHUTDOWN once pool_free() has begun. */
int pool_submit(struct pool *p, void (*fn)(void *arg), void *arg);

/*
 * Run one queued job in the calling thread, if there is one: a job that
 * waits for other jobs calls this while it waits, so that a pool of one
 * worker cannot deadlock. Returns whether a job ran.
 */
bool pool_help(struct pool *p);

/* Like pool_help(), but only a queued job that runs @fn (a waiter holding
 * locks helps only with jobs known to take none of them). */
bool pool_help_fn(struct pool *p, void (*fn)(void *arg));

struct pool_stats {
	unsigned workers;
	uint64_t queued, running, done;
};
void pool_stats(struct pool *p, struct pool_stats *out);

#endif
