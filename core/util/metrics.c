/* SPDX-License-Identifier: MIT */
/*
 * The counters and latency histograms of a mount (lock-free, relaxed
 * atomics) and the writer of the Prometheus text format; the design
 * notes are in core/util/metrics.h.
 */
#include "core/util/metrics.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The bounds in nanoseconds: 10 us to 10 s, 1, 2.5, 5 per decade. */
static const int64_t bound_ns[METRICS_BUCKETS] = {
	10000,	    25000,	50000,	    100000,	 250000,
	500000,	    1000000,	2500000,    5000000,	 10000000,
	25000000,   50000000,	100000000,  250000000,	 500000000,
	1000000000, 2500000000, 5000000000, 10000000000,
};

/* Their text in the le="..." label. */
static const char *const bound_text[METRICS_BUCKETS] = {
	"1e-05",  "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001",
	"0.0025", "0.005",   "0.01",  "0.025",	"0.05",	   "0.1",    "0.25",
	"0.5",	  "1",	     "2.5",   "5",	"10",
};

static const char *const op_names[METRICS_NOPS] = {
	[METRICS_OP_LOOKUP] = "lookup",
	[METRICS_OP_FORGET] = "forget",
	[METRICS_OP_BATCH_FORGET] = "batch_forget",
	[METRICS_OP_GETATTR] = "getattr",
	[METRICS_OP_ACCESS] = "access",
	[METRICS_OP_SETATTR] = "setattr",
	[METRICS_OP_READLINK] = "readlink",
	[METRICS_OP_MKNOD] = "mknod",
	[METRICS_OP_MKDIR] = "mkdir",
	[METRICS_OP_SYMLINK] = "symlink",
	[METRICS_OP_UNLINK] = "unlink",
	[METRICS_OP_RMDIR] = "rmdir",
	[METRICS_OP_RENAME] = "rename",
	[METRICS_OP_LINK] = "link",
	[METRICS_OP_OPEN] = "open",
	[METRICS_OP_CREATE] = "create",
	[METRICS_OP_READ] = "read",
	[METRICS_OP_WRITE] = "write",
	[METRICS_OP_FLUSH] = "flush",
	[METRICS_OP_RELEASE] = "release",
	[METRICS_OP_FSYNC] = "fsync",
	[METRICS_OP_OPENDIR] = "opendir",
	[METRICS_OP_READDIR] = "readdir",
	[METRICS_OP_READDIRPLUS] = "readdirplus",
	[METRICS_OP_RELEASEDIR] = "releasedir",
	[METRICS_OP_FSYNCDIR] = "fsyncdir",
	[METRICS_OP_STATFS] = "statfs",
	[METRICS_OP_SETXATTR] = "setxattr",
	[METRICS_OP_GETXATTR] = "getxattr",
	[METRICS_OP_LISTXATTR] = "listxattr",
	[METRICS_OP_REMOVEXATTR] = "removexattr",
	[METRICS_OP_COPY_FILE_RANGE] = "copy_file_range",
};

struct hist {
	_Atomic uint64_t bucket[METRICS_BUCKETS + 1]; /* not cumulative */
	_Atomic uint64_t sum_ns;
};

struct metrics {
	struct hist op[METRICS_NOPS];
	_Atomic uint64_t op_errors[METRICS_NOPS];
	struct hist flush;
	_Atomic uint64_t counter[METRICS_NCOUNTERS];
	_Atomic uint64_t gauge[METRICS_NGAUGES];
	atomic_bool gauge_set[METRICS_NGAUGES];
};

double metrics_bound(unsigned i)
{
	assert(i < METRICS_BUCKETS);
	return (double)bound_ns[i] / 1e9;
}

int metrics_new(struct metrics **out)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	*out = m;
	return 0;
}

void metrics_free(struct metrics *m)
{
	free(m);
}

int64_t metrics_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *metrics_op_name(enum metrics_op op)
{
	assert((unsigned)op < METRICS_NOPS);
	return op_names[op];
}

/* The bucket of @ns: the first whose bound is not below it. */
static unsigned bucket_of(int64_t ns)
{
	unsigned i = 0;

	while (i < METRICS_BUCKETS && ns > bound_ns[i])
		i++;
	return i;
}

static void hist_observe(struct hist *h, int64_t start_ns)
{
	int64_t ns = metrics_clock() - start_ns;

	if (ns < 0)
		ns = 0;
	atomic_fetch_add_explicit(&h->bucket[bucket_of(ns)], 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns,
				  memory_order_relaxed);
}

static void hist_snap(struct hist *h, struct metrics_hist_snap *s)
{
	uint64_t acc = 0;
	unsigned i;

	for (i = 0; i <= METRICS_BUCKETS; i++) {
		acc += atomic_load_explicit(&h->bucket[i],
					    memory_order_relaxed);
		s->cum[i] = acc;
	}
	s->sum =
		(double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) /
		1e9;
}

void metrics_op_done(struct metrics *m, enum metrics_op op, int64_t start_ns,
		     int err)
{
	if (!m)
		return;
	assert((unsigned)op < METRICS_NOPS);
	hist_observe(&m->op[op], start_ns);
	if (err)
		atomic_fetch_add_explicit(&m->op_errors[op], 1,
					  memory_order_relaxed);
}

void metrics_flush_done(struct metrics *m, int64_t start_ns)
{
	if (m)
		hist_observe(&m->flush, start_ns);
}

void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t n)
{
	if (!m)
		return;
	assert((unsigned)c < METRICS_NCOUNTERS);
	atomic_fetch_add_explicit(&m->counter[c], n, memory_order_relaxed);
}

void metrics_set(struct metrics *m, enum metrics_gauge g, uint64_t v)
{
	if (!m)
		return;
	assert((unsigned)g < METRICS_NGAUGES);
	atomic_store_explicit(&m->gauge[g], v, memory_order_relaxed);
	atomic_store_explicit(&m->gauge_set[g], true, memory_order_relaxed);
}

void metrics_op_snap(struct metrics *m, enum metrics_op op,
		     struct metrics_hist_snap *h, uint64_t *errors)
{
	assert((unsigned)op < METRICS_NOPS);
	hist_snap(&m->op[op], h);
	*errors = atomic_load_explicit(&m->op_errors[op], memory_order_relaxed);
}

void metrics_flush_snap(struct metrics *m, struct metrics_hist_snap *h)
{
	hist_snap(&m->flush, h);
}

uint64_t metrics_counter(struct metrics *m, enum metrics_counter c)
{
	assert((unsigned)c < METRICS_NCOUNTERS);
	return atomic_load_explicit(&m->counter[c], memory_order_relaxed);
}

bool metrics_gauge(struct metrics *m, enum metrics_gauge g, uint64_t *v)
{
	assert((unsigned)g < METRICS_NGAUGES);
	if (!atomic_load_explicit(&m->gauge_set[g], memory_order_relaxed))
		return false;
	*v = atomic_load_explicit(&m->gauge[g], memory_order_relaxed);
	return true;
}

void metrics_hist_add(struct metrics_hist_snap *h, double seconds)
{
	unsigned i = bucket_of((int64_t)(seconds * 1e9 + 0.5));

	for (; i <= METRICS_BUCKETS; i++)
		h->cum[i]++;
	h->sum += seconds;
}

/* -- the text format -- */

static bool name_ok(const char *s, bool colon)
{
	const char *p;

	if (!*s || (*s >= '0' && *s <= '9'))
		return false;
	for (p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' ||
		      (colon && *p == ':')))
			return false;
	return true;
}

static void put(struct metrics_text *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(struct metrics_text *x, const char *fmt, ...)
{
	va_list ap;
	size_t room;
	char *s;
	int n;

	if (x->err)
		return;
	for (;;) {
		room = x->cap - x->len;

		va_start(ap, fmt);
		n = vsnprintf(x->s ? x->s + x->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			x->err = -EINVAL;
			return;
		}
		if ((size_t)n < room) {
			x->len += (size_t)n;
			return;
		}
		room = x->cap ? x->cap * 2 : 4096;
		while (room < x->len + (size_t)n + 1)
			room *= 2;
		s = realloc(x->s, room);
		if (!s) {
			x->err = -ENOMEM;
			return;
		}
		x->s = s;
		x->cap = room;
	}
}

/* HELP text: backslash and newline escaped. */
static void put_help(struct metrics_text *x, const char *help)
{
	const char *p;

	for (p = help; *p && !x->err; p++) {
		if (*p == '\\')
			put(x, "\\\\");
		else if (*p == '\n')
			put(x, "\\n");
		else
			put(x, "%c", *p);
	}
}

void metrics_text_family(struct metrics_text *x, const char *name,
			 const char *type, const char *help)
{
	assert(name_ok(name, true));
	assert(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
	       !strcmp(type, "histogram"));
	put(x, "# HELP %s ", name);
	put_help(x, help);
	put(x, "\n# TYPE %s %s\n", name, type);
}

static void put_name(struct metrics_text *x, const char *name,
		     const char *labels)
{
	assert(name_ok(name, true));
	if (labels && *labels)
		put(x, "%s{%s} ", name, labels);
	else
		put(x, "%s ", name);
}

void metrics_text_u64(struct metrics_text *x, const char *name,
		      const char *labels, uint64_t v)
{
	put_name(x, name, labels);
	put(x, "%" PRIu64 "\n", v);
}

void metrics_text_double(struct metrics_text *x, const char *name,
			 const char *labels, double v)
{
	put_name(x, name, labels);
	if (isnan(v))
		put(x, "NaN\n");
	else if (isinf(v))
		put(x, "%s\n", v > 0 ? "+Inf" : "-Inf");
	else
		put(x, "%.12g\n", v);
}

void metrics_text_hist(struct metrics_text *x, const char *name,
		       const char *labels, const struct metrics_hist_snap *h)
{
	const char *sep = labels && *labels ? "," : "";
	unsigned i;

	assert(name_ok(name, true));
	if (!labels)
		labels = "";
	for (i = 0; i <= METRICS_BUCKETS; i++)
		put(x, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, labels,
		    sep, i < METRICS_BUCKETS ? bound_text[i] : "+Inf",
		    h->cum[i]);
	put(x, "%s_sum%s%s%s %.12g\n", name, *labels ? "{" : "", labels,
	    *labels ? "}" : "", h->sum);
	put(x, "%s_count%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels,
	    *labels ? "}" : "", h->cum[METRICS_BUCKETS]);
}

int metrics_text_end(struct metrics_text *x, char **out)
{
	int rc = x->err;

	if (!rc && !x->s)
		put(x, "%s", ""); /* an empty document is a string too */
	rc = x->err;
	if (rc) {
		metrics_text_abort(x);
		return rc;
	}
	*out = x->s;
	memset(x, 0, sizeof(*x));
	return 0;
}

void metrics_text_abort(struct metrics_text *x)
{
	free(x->s);
	memset(x, 0, sizeof(*x));
}

char *metrics_label(const char *key, const char *value)
{
	size_t n = strlen(value), o = 0, i;
	char *s;

	assert(name_ok(key, false));
	s = malloc(strlen(key) + 2 * n + 4);
	if (!s)
		return NULL;
	o = (size_t)snprintf(s, strlen(key) + 3, "%s=\"", key);
	for (i = 0; i < n; i++) {
		if (value[i] == '\\' || value[i] == '"') {
			s[o++] = '\\';
			s[o++] = value[i];
		} else if (value[i] == '\n') {
			s[o++] = '\\';
			s[o++] = 'n';
		} else {
			s[o++] = value[i];
		}
	}
	s[o++] = '"';
	s[o] = '\0';
	return s;
}
