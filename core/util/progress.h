/* SPDX-License-Identifier: MIT */
/*
 * Progress of long jobs (gc, verify, drain, branch, and later sweep and
 * rebalance): a registry of the jobs running in one mount, each with a
 * name, a unit, a start time and a done / total count. /.tally/status
 * shows it as "jobs": [{"id", "name", "started", "done", "total",
 * "unit"}, ...] (core/jobs/ctl.c); tallyctl polls it to draw a progress bar.
 *
 * A job reports itself with one call per step:
 *
 *	struct progress_job *pj;
 *
 *	pj = progress_begin(tally_progress(t), "sweep", "ghosts", n);
 *	for (i = 0; i < n; i++) {
 *		...
 *		progress_add(pj, 1);
 *	}
 *	progress_end(pj);
 *
 * Every function but progress_begin() takes a job that may be NULL and
 * does nothing then: a job whose registration failed (ENOMEM) runs
 * unseen, and the code that reports needs no error path. Progress is
 * advisory: it never changes what a job does.
 *
 * Counts. total 0 means "not known yet". A total is allowed to be an
 * estimate: when done grows past a non-zero total, the registry reports
 * total = done, so a reader never sees done > total.
 *
 * Threads. All functions are thread-safe. The registry's list is
 * protected by its mutex (an innermost lock: callers may hold any other
 * lock); done and total are atomics (relaxed order: they are only ever
 * shown), so progress_add() in a hot loop takes no lock. One job is
 * updated by the thread that runs it, or by several with progress_add().
 */
#ifndef TALLY_PROGRESS_H
#define TALLY_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct progress;
struct progress_job;

#define PROGRESS_NAME_MAX 32 /* bytes of a name or a unit, NUL included */

/* A new, empty registry. -ENOMEM. */
int progress_new(struct progress **out);
/* Free the registry; every job must have ended. NULL is a no-op. */
void progress_free(struct progress *p);

/*
 * Register a job @name (e.g. "gc") counting @unit (e.g. "objects") with
 * @total steps (0: not known yet); done starts at 0, started is now (unix
 * seconds). @name and @unit are copied: lowercase letters, digits, '_',
 * '-' and blanks, shorter than PROGRESS_NAME_MAX. Returns the handle
 * (owned by the caller until progress_end()), or NULL when @p is NULL or
 * memory is short.
 */
struct progress_job *progress_begin(struct progress *p, const char *name,
				    const char *unit, uint64_t total);
/* Set the total (0: not known). */
void progress_set_total(struct progress_job *j, uint64_t total);
/* Add @n to done. */
void progress_add(struct progress_job *j, uint64_t n);
/* Set done to @done. */
void progress_set(struct progress_job *j, uint64_t done);
/* Unregister and free the job: it disappears from the status. */
void progress_end(struct progress_job *j);

/* One job as a reader sees it (done <= total unless total is 0). */
struct progress_info {
	uint64_t id; /* 1, 2, ... in the order of progress_begin() */
	char name[PROGRESS_NAME_MAX];
	char unit[PROGRESS_NAME_MAX];
	int64_t started; /* unix seconds */
	uint64_t done, total;
};

/*
 * A snapshot of the running jobs, oldest first, in *out (malloc'ed, the
 * caller frees; NULL when there are none) and their number in *n.
 * -ENOMEM.
 */
int progress_list(struct progress *p, struct progress_info **out, size_t *n);

/*
 * The running jobs as a JSON array, oldest first: "[]" or
 * "[{\"id\": 1, \"name\": \"gc\", \"started\": 1700000000, \"done\": 10,
 * \"total\": 50, \"unit\": \"objects\"}, ...]" in *out (malloc'ed).
 * -ENOMEM.
 */
int progress_json(struct progress *p, char **out);

/* Consistency of the registry (list links, ids in order, count). */
bool progress_check(struct progress *p);

#endif
