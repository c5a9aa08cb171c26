/* SPDX-License-Identifier: MIT */
/*
 * Counters and latency histograms of one mount, and the writer of the
 * Prometheus text exposition format (version 0.0.4) that shows them
 * (core/jobs/ctl_metrics.c assembles the document; docs/metrics.md names
 * every metric).
 *
 * DESIGN NOTES
 *
 *  1. Nothing here takes a lock: every counter is a C11 atomic updated
 *     with relaxed order (they are only ever shown, never acted on), so
 *     the hooks on the request path (fs/ops.c) and in the flush pipeline
 *     cost an atomic add or two and a clock read.
 *  2. A histogram keeps one count per bucket, not cumulative ones: an
 *     observation adds to one bucket and to the sum. Its snapshot sums
 *     the buckets into cumulative counts, and its count is the last of
 *     them, so +Inf == _count and the buckets never decrease, in every
 *     snapshot, whatever runs meanwhile. The sum is read apart: it may
 *     lag or lead the buckets by the observations in progress.
 *  3. Buckets are fixed: 10 us to 10 s in steps of 1, 2.5, 5 per decade
 *     (19 bounds, then +Inf), from a request served by the kernel's
 *     caches to a flush behind a full disk.
 *  4. Times come from CLOCK_MONOTONIC (metrics_clock()).
 *  5. The writer (struct metrics_text) keeps its first error and then
 *     does nothing: a document is built without an error path per line
 *     and checked once, at metrics_text_end().
 */
#ifndef TALLY_METRICS_H
#define TALLY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;

/* The requests of a FUSE front end, named as libfuse's low-level API
 * names them (the op="..." label). */
enum metrics_op {
	METRICS_OP_LOOKUP,
	METRICS_OP_FORGET,
	METRICS_OP_BATCH_FORGET,
	METRICS_OP_GETATTR,
	METRICS_OP_ACCESS,
	METRICS_OP_SETATTR,
	METRICS_OP_READLINK,
	METRICS_OP_MKNOD,
	METRICS_OP_MKDIR,
	METRICS_OP_SYMLINK,
	METRICS_OP_UNLINK,
	METRICS_OP_RMDIR,
	METRICS_OP_RENAME,
	METRICS_OP_LINK,
	METRICS_OP_OPEN,
	METRICS_OP_CREATE,
	METRICS_OP_READ,
	METRICS_OP_WRITE,
	METRICS_OP_FLUSH,
	METRICS_OP_RELEASE,
	METRICS_OP_FSYNC,
	METRICS_OP_OPENDIR,
	METRICS_OP_READDIR,
	METRICS_OP_READDIRPLUS,
	METRICS_OP_RELEASEDIR,
	METRICS_OP_FSYNCDIR,
	METRICS_OP_STATFS,
	METRICS_OP_SETXATTR,
	METRICS_OP_GETXATTR,
	METRICS_OP_LISTXATTR,
	METRICS_OP_REMOVEXATTR,
	METRICS_OP_COPY_FILE_RANGE,
	METRICS_NOPS
};

/* Counters that only grow (since the mount). */
enum metrics_counter {
	METRICS_READ_BYTES,	      /* bytes replied to reads */
	METRICS_WRITE_BYTES,	      /* bytes accepted by writes */
	METRICS_DEDUP_HITS,	      /* flushed blocks whose object existed */
	METRICS_DEDUP_BYTES,	      /* their bytes: not written again */
	METRICS_OBJECTS_WRITTEN,      /* flushed blocks that made an object */
	METRICS_OBJECT_BYTES_WRITTEN, /* their bytes */
	METRICS_GC_RUNS,	/* GC cycles run to the end (no dry run) */
	METRICS_GC_COLLECTED,	/* object files they deleted */
	METRICS_GC_FREED_BYTES, /* their bytes */
	METRICS_NCOUNTERS
};

/* Values set, not added to: what the last GC cycle of this mount found
 * unreferenced and left in place (in its grace period, or a dry run's). */
enum metrics_gauge {
	METRICS_GC_RECLAIMABLE_OBJECTS,
	METRICS_GC_RECLAIMABLE_BYTES,
	METRICS_NGAUGES
};

#define METRICS_BUCKETS 19 /* finite bounds; then +Inf */

/* The upper bound of bucket @i (< METRICS_BUCKETS), in seconds. */
double metrics_bound(unsigned i);

/* A histogram as a reader sees it (DESIGN NOTES 2): cum[i] counts the
 * observations <= metrics_bound(i); cum[METRICS_BUCKETS] (+Inf) is the
 * count. */
struct metrics_hist_snap {
	uint64_t cum[METRICS_BUCKETS + 1];
	double sum; /* seconds */
};

/* New, all zero. -ENOMEM. */
int metrics_new(struct metrics **out);
/* NULL is a no-op. */
void metrics_free(struct metrics *m);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t metrics_clock(void);

/* The label value of @op ("lookup", "create", ...). */
const char *metrics_op_name(enum metrics_op op);

/*
 * A request @op that began at @start_ns (metrics_clock()) was answered
 * now; @err: the errno of its answer (0: success). Every function that
 * records takes a @m that may be NULL and does nothing then.
 */
void metrics_op_done(struct metrics *m, enum metrics_op op, int64_t start_ns,
		     int err);
/* A flush rotated at @start_ns (metrics_clock()) committed now. */
void metrics_flush_done(struct metrics *m, int64_t start_ns);
/* Add @n to counter @c. */
void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t n);
/* Set gauge @g; metrics_gauge() then says it is set. */
void metrics_set(struct metrics *m, enum metrics_gauge g, uint64_t v);

/* Snapshots for the document (DESIGN NOTES 2); *errors: requests of @op
 * answered with an error. */
void metrics_op_snap(struct metrics *m, enum metrics_op op,
		     struct metrics_hist_snap *h, uint64_t *errors);
void metrics_flush_snap(struct metrics *m, struct metrics_hist_snap *h);
uint64_t metrics_counter(struct metrics *m, enum metrics_counter c);
/* false when @g was never set (nothing to show yet). */
bool metrics_gauge(struct metrics *m, enum metrics_gauge g, uint64_t *v);

/* Tests: one observation of @seconds in @h's buckets and sum, as a
 * histogram of @m would record it (DESIGN NOTES 2). */
void metrics_hist_add(struct metrics_hist_snap *h, double seconds);

/*
 * The writer of the text format. Zero-initialize it, write families,
 * then metrics_text_end(). A family starts with metrics_text_family()
 * (its # HELP and # TYPE lines), then its samples; @labels is NULL or
 * the text between the braces, its values escaped (metrics_label()).
 * Names are asserted valid ([a-zA-Z_:][a-zA-Z0-9_:]*).
 */
struct metrics_text {
	char *s; /* owned until metrics_text_end() */
	size_t len, cap;
	int err; /* the first error (-ENOMEM); then nothing is written */
};

/* @type: "counter", "gauge" or "histogram". */
void metrics_text_family(struct metrics_text *x, const char *name,
			 const char *type, const char *help);
void metrics_text_u64(struct metrics_text *x, const char *name,
		      const char *labels, uint64_t v);
void metrics_text_double(struct metrics_text *x, const char *name,
			 const char *labels, double v);
/* The _bucket (le="..." after @labels), _sum and _count lines of @h. */
void metrics_text_hist(struct metrics_text *x, const char *name,
		       const char *labels, const struct metrics_hist_snap *h);
/* The document (malloc'ed, the caller frees) in *out, or the first error
 * (nothing in *out). Either way @x is empty again. */
int metrics_text_end(struct metrics_text *x, char **out);
/* Drop what was written (after an error of the caller's own). */
void metrics_text_abort(struct metrics_text *x);

/* @key="@value" with backslash, double quote and newline of @value
 * escaped, malloc'ed (NULL: -ENOMEM). @key is asserted a valid label
 * name. */
char *metrics_label(const char *key, const char *value);

#endif
