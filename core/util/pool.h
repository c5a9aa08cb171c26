/* SPDX-License-Identifier: MIT */
/*
 * The worker pool: threads taking jobs from one FIFO queue per job class,
 * each class with threads of its own (as Redis's bio.c gives each kind of
 * background job its own queue and thread). Flush streams have the
 * workers the `workers` option asks for; control jobs (GC, verify,
 * rebalance, sweep, the commands of the control file) have threads of
 * their own, so that a long control job never holds a flush back.
 * Shutdown runs every queued job first: nothing queued is ever dropped.
 */
#ifndef TALLY_POOL_H
#define TALLY_POOL_H

#include <stdbool.h>
#include <stdint.h>

struct pool;

enum pool_class {
	POOL_FLUSH,   /* flush streams: short, never wait for a job */
	POOL_CONTROL, /* control jobs: long, may wait for flush streams */
	POOL_NCLASSES,
};

/*
 * Start @nflush (>= 1) workers for flush streams and @ncontrol (>= 1) for
 * control jobs. -EINVAL, -ENOMEM, -EAGAIN (no thread could start).
 */
int pool_new(unsigned nflush, unsigned ncontrol, struct pool **out);
/* Run every queued job, stop the workers, free. NULL is a no-op. */
void pool_free(struct pool *p);

/*
 * Queue @fn(@arg) on the queue of class @cls; only that class's workers
 * (and helpers, below) take it. -ENOMEM, or -ESHUTDOWN once pool_free()
 * has begun.
 */
int pool_submit(struct pool *p, enum pool_class cls, void (*fn)(void *arg),
		void *arg);

/*
 * Run one queued job in the calling thread, if there is one: a control
 * job first (a waiter for a control command may run its own), else a
 * flush stream. A thread that waits for a job calls this while it waits,
 * so that it never waits behind busy workers. Returns whether a job ran.
 */
bool pool_help(struct pool *p);

/* Like pool_help(), but only a queued job that runs @fn, of any class (a
 * waiter holding locks helps only with jobs known to take none of them). */
bool pool_help_fn(struct pool *p, void (*fn)(void *arg));

struct pool_class_stats {
	unsigned workers;
	uint64_t queued, running, done;
};

struct pool_stats {
	unsigned workers;		/* flush workers (the option) */
	uint64_t queued, running, done; /* all classes */
	struct pool_class_stats cls[POOL_NCLASSES];
};
void pool_stats(struct pool *p, struct pool_stats *out);

#endif
