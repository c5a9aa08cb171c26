/* SPDX-License-Identifier: MIT */
/*
 * The counters and histograms of core/util/metrics.c and their text format:
 * bucket placement at and around the bounds, cumulative snapshots whose
 * +Inf is the count, also while other threads record; the exact lines
 * of counters, gauges and histograms, the escaping of labels and help
 * text; then the document of a real store (core/jobs/ctl_metrics.c): its
 * families and the counters a write, a flush and a GC cycle move.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/ctl.h"
#include "core/jobs/gc.h"
#include "core/util/metrics.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096

static struct metrics *m;

static void setup(void)
{
	cr_assert_eq(metrics_new(&m), 0);
}

static void teardown(void)
{
	metrics_free(m);
	m = NULL;
}

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 60);

/* One request of @op that took @ns (its start put that far back). */
static void took(enum metrics_op op, int64_t ns, int err)
{
	metrics_op_done(m, op, metrics_clock() - ns, err);
}

Test(metrics, bounds_grow_from_10us_to_10s)
{
	unsigned i;

	cr_assert_float_eq(metrics_bound(0), 1e-5, 1e-12);
	cr_assert_float_eq(metrics_bound(METRICS_BUCKETS - 1), 10.0, 1e-9);
	for (i = 1; i < METRICS_BUCKETS; i++)
		cr_assert_gt(metrics_bound(i), metrics_bound(i - 1));
}

Test(metrics, observations_land_in_their_bucket)
{
	struct metrics_hist_snap h;
	uint64_t errs;
	unsigned i;

	took(METRICS_OP_CREATE, 0, 0);		     /* <= 10 us */
	took(METRICS_OP_CREATE, 30000, 0);	     /* 30 us: <= 50 us */
	took(METRICS_OP_CREATE, 2000000, ENOENT);    /* 2 ms: <= 2.5 ms */
	took(METRICS_OP_CREATE, 20000000000LL, EIO); /* 20 s: +Inf only */
	metrics_op_snap(m, METRICS_OP_CREATE, &h, &errs);
	cr_assert_eq(errs, 2);
	cr_assert_eq(h.cum[METRICS_BUCKETS], 4);
	/* never below its own time (a slow machine may add to it; exact
	 * placement: hist_add_matches_the_bounds) */
	cr_assert_leq(h.cum[0], 1); /* only the 0 us one within 10 us */
	cr_assert_leq(h.cum[1], 1); /* 30 us is past 25 us */
	cr_assert_leq(h.cum[6], 2); /* 2 ms is past 1 ms */
	cr_assert_eq(h.cum[METRICS_BUCKETS - 1], 3); /* 20 s past 10 s */
	for (i = 1; i <= METRICS_BUCKETS; i++)
		cr_assert_geq(h.cum[i], h.cum[i - 1]);
	cr_assert_geq(h.sum, 20.002);
	cr_assert_lt(h.sum, 20.1);
	/* other ops untouched */
	metrics_op_snap(m, METRICS_OP_LOOKUP, &h, &errs);
	cr_assert_eq(h.cum[METRICS_BUCKETS], 0);
	cr_assert_eq(errs, 0);
}

Test(metrics, hist_add_matches_the_bounds)
{
	struct metrics_hist_snap h;
	unsigned i;

	memset(&h, 0, sizeof(h));
	for (i = 0; i < METRICS_BUCKETS; i++)
		metrics_hist_add(&h, metrics_bound(i)); /* a bound is in */
	metrics_hist_add(&h, 11.0);
	for (i = 0; i < METRICS_BUCKETS; i++)
		cr_assert_eq(h.cum[i], i + 1, "bucket %u: %llu", i,
			     (unsigned long long)h.cum[i]);
	cr_assert_eq(h.cum[METRICS_BUCKETS], METRICS_BUCKETS + 1);
}

Test(metrics, counters_gauges_and_null)
{
	uint64_t v = 7;

	metrics_add(m, METRICS_WRITE_BYTES, 4096);
	metrics_add(m, METRICS_WRITE_BYTES, 1);
	cr_assert_eq(metrics_counter(m, METRICS_WRITE_BYTES), 4097);
	cr_assert_eq(metrics_counter(m, METRICS_READ_BYTES), 0);
	cr_assert(!metrics_gauge(m, METRICS_GC_RECLAIMABLE_BYTES, &v));
	cr_assert_eq(v, 7); /* untouched */
	metrics_set(m, METRICS_GC_RECLAIMABLE_BYTES, 0);
	cr_assert(metrics_gauge(m, METRICS_GC_RECLAIMABLE_BYTES, &v));
	cr_assert_eq(v, 0);
	/* a NULL set of metrics records nothing, and does not crash */
	metrics_add(NULL, METRICS_WRITE_BYTES, 1);
	metrics_op_done(NULL, METRICS_OP_READ, 0, 0);
	metrics_flush_done(NULL, 0);
	metrics_set(NULL, METRICS_GC_RECLAIMABLE_BYTES, 1);
}

static char *end(struct metrics_text *x)
{
	char *s = NULL;

	cr_assert_eq(metrics_text_end(x, &s), 0);
	cr_assert_not_null(s);
	return s;
}

Test(metrics, text_of_counters_and_gauges)
{
	struct metrics_text x = { 0 };
	char *s;

	metrics_text_family(&x, "tallyfs_x_total", "counter",
			    "a back\\slash and a\nnewline");
	metrics_text_u64(&x, "tallyfs_x_total", NULL, 18446744073709551615ull);
	metrics_text_u64(&x, "tallyfs_x_total", "op=\"read\"", 0);
	metrics_text_family(&x, "tallyfs_y", "gauge", "y");
	metrics_text_double(&x, "tallyfs_y", NULL, 1.5);
	metrics_text_double(&x, "tallyfs_y", "a=\"b\"", 1.0 / 0.0);
	s = end(&x);
	cr_assert_str_eq(s, "# HELP tallyfs_x_total a back\\\\slash and "
			    "a\\nnewline\n"
			    "# TYPE tallyfs_x_total counter\n"
			    "tallyfs_x_total 18446744073709551615\n"
			    "tallyfs_x_total{op=\"read\"} 0\n"
			    "# HELP tallyfs_y y\n"
			    "# TYPE tallyfs_y gauge\n"
			    "tallyfs_y 1.5\n"
			    "tallyfs_y{a=\"b\"} +Inf\n");
	free(s);
	cr_assert_null(x.s);
	s = end(&x); /* empty again: an empty document */
	cr_assert_str_eq(s, "");
	free(s);
}

Test(metrics, text_of_a_histogram)
{
	struct metrics_text x = { 0 };
	struct metrics_hist_snap h;
	char *s, *line;
	unsigned n = 0;
	uint64_t last = 0;

	memset(&h, 0, sizeof(h));
	metrics_hist_add(&h, 0.000001);
	metrics_hist_add(&h, 0.3);
	metrics_hist_add(&h, 0.3);
	metrics_text_hist(&x, "tallyfs_h_seconds", "op=\"lookup\"", &h);
	s = end(&x);
	cr_assert(strstr(s, "tallyfs_h_seconds_bucket{op=\"lookup\","
			    "le=\"1e-05\"} 1\n"));
	cr_assert(strstr(s, "tallyfs_h_seconds_bucket{op=\"lookup\","
			    "le=\"0.25\"} 1\n"));
	cr_assert(strstr(s, "tallyfs_h_seconds_bucket{op=\"lookup\","
			    "le=\"0.5\"} 3\n"));
	cr_assert(strstr(s, "tallyfs_h_seconds_bucket{op=\"lookup\","
			    "le=\"+Inf\"} 3\n"));
	cr_assert(strstr(s, "tallyfs_h_seconds_sum{op=\"lookup\"} 0.600001\n"));
	cr_assert(strstr(s, "tallyfs_h_seconds_count{op=\"lookup\"} 3\n"));
	free(s);

	/* one bucket line per bound and +Inf, growing, then sum, count */
	metrics_text_hist(&x, "tallyfs_h_seconds", NULL, &h);
	s = end(&x);
	for (line = s; *line; line = strchr(line, '\n') + 1) {
		unsigned long long v;

		if (strncmp(line, "tallyfs_h_seconds_bucket{le=\"", 29))
			break;
		v = strtoull(strrchr(strchr(line, '}'), ' ') + 1, NULL, 10);
		cr_assert_geq(v, last);
		last = v;
		n++;
	}
	cr_assert_eq(n, METRICS_BUCKETS + 1);
	cr_assert_eq(last, 3);
	cr_assert(!strncmp(line,
			   "tallyfs_h_seconds_sum 0.600001\n"
			   "tallyfs_h_seconds_count 3\n",
			   strlen(line)));
	free(s);
}

Test(metrics, label_values_are_escaped)
{
	char *l = metrics_label("path", "/a\"b\\c\nd");

	cr_assert_str_eq(l, "path=\"/a\\\"b\\\\c\\nd\"");
	free(l);
	l = metrics_label("path", "");
	cr_assert_str_eq(l, "path=\"\"");
	free(l);
}

Test(metrics, op_names)
{
	cr_assert_str_eq(metrics_op_name(METRICS_OP_LOOKUP), "lookup");
	cr_assert_str_eq(metrics_op_name(METRICS_OP_BATCH_FORGET),
			 "batch_forget");
	cr_assert_str_eq(metrics_op_name(METRICS_OP_COPY_FILE_RANGE),
			 "copy_file_range");
}

/* -- recorders and a reader at once (DESIGN NOTES 2) -- */

#define THREADS 4
#define PER_THREAD 50000

static atomic_bool stop_reading;

static void *record(void *arg)
{
	unsigned i, k = (unsigned)(uintptr_t)arg;

	for (i = 0; i < PER_THREAD; i++)
		metrics_op_done(m, METRICS_OP_WRITE,
				metrics_clock() -
					(int64_t)((i * 7919u + k) % 3000000u),
				(int)(i % 5 == 0));
	return NULL;
}

Test(metrics, snapshots_stay_consistent_under_writers)
{
	pthread_t th[THREADS];
	struct metrics_hist_snap h;
	uint64_t errs, seen = 0, snaps = 0;
	unsigned i;

	for (i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, record,
					    (void *)(uintptr_t)i),
			     0);
	atomic_store(&stop_reading, false);
	while (seen < (uint64_t)THREADS * PER_THREAD) {
		metrics_op_snap(m, METRICS_OP_WRITE, &h, &errs);
		for (i = 1; i <= METRICS_BUCKETS; i++)
			cr_assert_geq(h.cum[i], h.cum[i - 1]);
		/* counts never go back from one snapshot to the next */
		cr_assert_geq(h.cum[METRICS_BUCKETS], seen);
		seen = h.cum[METRICS_BUCKETS];
		snaps++;
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	metrics_op_snap(m, METRICS_OP_WRITE, &h, &errs);
	cr_assert_eq(h.cum[METRICS_BUCKETS], (uint64_t)THREADS * PER_THREAD);
	cr_assert_eq(errs, (uint64_t)THREADS * (PER_THREAD / 5));
	cr_assert_gt(snaps, 0);
}

/* -- the document of a real store -- */

static char *dir;
static struct tally *t;

static void store_setup(void)
{
	char store[4096];
	struct tally_opts o = { .block_size = BS, .create = true };

	dir = tu_tmpdir(); /* malloc'ed: tu_teardown() frees it */
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	cr_assert_eq(tally_open(store, &o, &t), 0);
}

static void store_teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(metrics_doc, .init = store_setup, .fini = store_teardown,
	  .timeout = 60);

/* The value of the sample line that starts with @prefix ("name{...} "). */
static double value_of(const char *doc, const char *prefix)
{
	const char *p = doc;
	size_t n = strlen(prefix);

	while (p && *p) {
		if (!strncmp(p, prefix, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	cr_assert_fail("no sample '%s' in:\n%s", prefix, doc);
	return -1;
}

static char *doc(void)
{
	char *s = NULL;

	cr_assert_eq(ctl_metrics_text(t, &s), 0);
	return s;
}

Test(metrics_doc, families_and_what_a_workload_moves)
{
	static const char *const types[] = {
		"# TYPE tallyfs_fuse_request_duration_seconds histogram\n",
		"# TYPE tallyfs_fuse_request_errors_total counter\n",
		"# TYPE tallyfs_write_bytes_total counter\n",
		"# TYPE tallyfs_flush_duration_seconds histogram\n",
		"# TYPE tallyfs_dedup_hits_total counter\n",
		"# TYPE tallyfs_objects gauge\n",
		"# TYPE tallyfs_stored_bytes gauge\n",
		"# TYPE tallyfs_shard_bytes gauge\n",
		"# TYPE tallyfs_gc_runs_total counter\n",
		"# TYPE tallyfs_sessions gauge\n",
	};
	char buf[2 * BS], *s;
	uint64_t ns, a, b;
	struct gc_report r;
	struct gc_opts go = { .grace = 0 };
	unsigned i;

	s = doc();
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		cr_assert(strstr(s, types[i]), "missing %s", types[i]);
	cr_assert_eq(value_of(s, "tallyfs_objects"), 0);
	cr_assert_eq(value_of(s, "tallyfs_flush_duration_seconds_count"), 0);
	cr_assert_null(strstr(s, "tallyfs_gc_reclaimable_bytes"));
	cr_assert_null(strstr(s, "tallyfs_remote_")); /* no remote tier */
	free(s);

	/* two files of the same two blocks: 2 objects, 2 dedup hits */
	ns = tu_mkns(t, "main");
	a = tu_newfile(t, ns, "a");
	b = tu_newfile(t, ns, "b");
	tu_fill(buf, sizeof(buf), 1);
	cr_assert_eq(tally_write(t, a, buf, sizeof(buf), 0), sizeof(buf));
	cr_assert_eq(tally_release(t, a), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_write(t, b, buf, sizeof(buf), 0), sizeof(buf));
	cr_assert_eq(tally_release(t, b), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(gc_run(t, &go, &r), 0);
	s = doc();
	cr_assert_eq(value_of(s, "tallyfs_objects"), 2);
	cr_assert_eq(value_of(s, "tallyfs_stored_bytes"), 2 * BS);
	cr_assert_eq(value_of(s, "tallyfs_object_writes_total"), 2);
	cr_assert_eq(value_of(s, "tallyfs_dedup_hits_total"), 2);
	cr_assert_eq(value_of(s, "tallyfs_dedup_bytes_total"), 2 * BS);
	cr_assert_eq(value_of(s, "tallyfs_dedup_ratio"), 2);
	cr_assert_geq(value_of(s, "tallyfs_flush_duration_seconds_count"), 2);
	cr_assert_eq(value_of(s, "tallyfs_flush_duration_seconds_bucket"
				 "{le=\"+Inf\"}"),
		     value_of(s, "tallyfs_flush_duration_seconds_count"));
	cr_assert_eq(value_of(s, "tallyfs_gc_runs_total"), 1);
	cr_assert_eq(value_of(s, "tallyfs_gc_reclaimable_bytes"), 0);
	cr_assert_eq(value_of(s, "tallyfs_shard_objects{shard=\"0\"}"), 2);
	cr_assert_eq(value_of(s, "tallyfs_sessions"), 1);
	free(s);
}
