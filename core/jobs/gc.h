/* SPDX-License-Identifier: MIT */
/*
 * GC cycles: mark and sweep of object files that nothing references, the
 * safety net under the reference counts, and online repair of the counts.
 */
#ifndef TALLY_GC_H
#define TALLY_GC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/objects/verify.h"
#include "core/remote/remote.h"

struct tally;

#define GC_DEFAULT_GRACE 300 /* seconds an object stays marked first */

struct gc_opts {
	bool dry_run;  /* report, change nothing */
	int64_t grace; /* seconds; negative: GC_DEFAULT_GRACE */
	/* TEST ONLY: called by the sweep between the re-check of a batch
	 * (under the metadata lock) and its unlinks (without it) */
	void (*unlink_hook)(void *arg);
	/* TEST ONLY: called once the protected names (node reports, pins,
	 * moves) are read, before the object rows are, without the lock */
	void (*protected_hook)(void *arg);
	/* TEST ONLY: called between two chunks of the drift check, without
	 * the lock */
	void (*chunk_hook)(void *arg);
	void *hook_arg;
	/* TEST ONLY: objects per chunk of the drift check, fixed; 0: sized
	 * to hold the lock about 10 ms */
	unsigned check_batch;
};

struct gc_report {
	bool dry_run;
	uint64_t checked;	     /* object files listed */
	uint64_t live;		     /* of those, referenced */
	uint64_t unreferenced;	     /* of those, not referenced (marked) */
	uint64_t unreferenced_bytes; /* their bytes */
	uint64_t collected;	     /* deleted (dry run: would be deleted) */
	uint64_t preserved; /* unreferenced, still in their grace period */
	uint64_t bytes_freed;
	uint64_t drift_under, drift_over; /* stored count < / > truth */
	uint64_t nodes_reporting, stale_nodes;
	uint64_t unreported; /* live sessions without a report: blocks */
	bool blocked;	     /* fewer nodes reported than min_nodes_reporting */
	double duration_ms;
	double longest_hold_ms;	 /* of the metadata lock, by the cycle */
	struct gc_remote remote; /* the bucket's keys (a remote tier) */
	bool has_remote;
};

/*
 * One cycle: list the object files, mark those no row of the object table
 * names ("unreferenced since now", an earlier mark is kept), delete those
 * marked longer than the grace period (re-checked under the metadata lock
 * before the deletion; a commit that checks the file meanwhile cancels
 * it), clear the marks of objects referenced
 * again, report drift between stored counts and the references, and log
 * the event (status: last_gc, gc_log).
 */
int gc_run(struct tally *t, const struct gc_opts *o, struct gc_report *r);
/* An automatic GC cycle (-o gc_interval) of tally @arg, as a pool job. */
void gc_auto(void *arg);

/* Rebuild every stored count from the block references (online repair).
 * *fixed receives the number of counts changed. */
int gc_repair(struct tally *t, uint64_t *fixed);
/* The same, @batch objects per transaction (tests: gc_repair's is sized
 * for short holds of the lock). */
int gc_repair_batch(struct tally *t, unsigned batch, uint64_t *fixed);

/*
 * Rehash the objects of the object table (@percent of them, chosen by
 * name, 100 for all) and compare with their names. A file that vanished
 * with its row meanwhile is skipped; one whose row remains is missing.
 */
int gc_verify(struct tally *t, double percent, struct gc_verify *v);

#endif
