/* SPDX-License-Identifier: MIT */
/*
 * The metrics document (/.tally/metrics, and the daemon's HTTP listener
 * of -o metrics=): the counters and histograms of core/util/metrics.h, and the
 * figures of the status document taken from the same sources
 * (tally_stats(), shard_infos(), the GC log, the sessions, the remote
 * tier's stats), in the Prometheus text format. docs/metrics.md names
 * and explains every family.
 */
#include "core/jobs/ctl.h"
#include "core/jobs/ctl_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/meta/meta.h"
#include "core/util/metrics.h"
#include "core/remote/remote.h"
#include "core/jobs/shard.h"
#include "core/fs/tally.h"

/* One sample family of a single, unlabelled value. */
static void one_u64(struct metrics_text *x, const char *name, const char *type,
		    const char *help, uint64_t v)
{
	metrics_text_family(x, name, type, help);
	metrics_text_u64(x, name, NULL, v);
}

static void one_double(struct metrics_text *x, const char *name,
		       const char *type, const char *help, double v)
{
	metrics_text_family(x, name, type, help);
	metrics_text_double(x, name, NULL, v);
}

/* The requests of the front end, by op; every op, seen or not, so that
 * each series exists from the mount on. */
static void requests(struct metrics_text *x, struct metrics *m)
{
	static const char dur[] = "tallyfs_fuse_request_duration_seconds";
	static const char errs[] = "tallyfs_fuse_request_errors_total";
	uint64_t nerr[METRICS_NOPS];
	char label[48];
	unsigned op;

	metrics_text_family(x, dur, "histogram",
			    "FUSE requests by op: time from the request to "
			    "its reply");
	for (op = 0; op < METRICS_NOPS; op++) {
		struct metrics_hist_snap h;

		metrics_op_snap(m, op, &h, &nerr[op]);
		snprintf(label, sizeof(label), "op=\"%s\"",
			 metrics_op_name(op));
		metrics_text_hist(x, dur, label, &h);
	}
	metrics_text_family(x, errs, "counter",
			    "FUSE requests by op answered with an error "
			    "(ENOENT of a lookup included)");
	for (op = 0; op < METRICS_NOPS; op++) {
		snprintf(label, sizeof(label), "op=\"%s\"",
			 metrics_op_name(op));
		metrics_text_u64(x, errs, label, nerr[op]);
	}
	one_u64(x, "tallyfs_read_bytes_total", "counter",
		"bytes replied to reads",
		metrics_counter(m, METRICS_READ_BYTES));
	one_u64(x, "tallyfs_write_bytes_total", "counter",
		"bytes accepted by writes",
		metrics_counter(m, METRICS_WRITE_BYTES));
}

/* The flush pipeline and the objects it writes. */
static void flushes(struct metrics_text *x, struct metrics *m,
		    const struct tally_stats *st)
{
	struct metrics_hist_snap h;

	metrics_flush_snap(m, &h);
	metrics_text_family(x, "tallyfs_flush_duration_seconds", "histogram",
			    "committed flushes: time from the flush's "
			    "start (its sequence number) to its commit");
	metrics_text_hist(x, "tallyfs_flush_duration_seconds", NULL, &h);
	one_u64(x, "tallyfs_flush_errors_total", "counter",
		"flushes that failed (their data kept, to go again)",
		st->commit_errors);
	one_u64(x, "tallyfs_group_commits_total", "counter",
		"transactions that committed flushes", st->group_commits);
	one_u64(x, "tallyfs_flushes_pending", "gauge",
		"flushes started and not final", st->pending_flushes);
	one_u64(x, "tallyfs_dirty_bytes", "gauge",
		"buffered data: dirty, in flight and failed blocks",
		st->dirty_bytes);
	one_u64(x, "tallyfs_dirty_limit_bytes", "gauge",
		"buffered data above which writers wait", st->dirty_limit);
	one_u64(x, "tallyfs_dedup_hits_total", "counter",
		"flushed blocks whose object was stored already",
		metrics_counter(m, METRICS_DEDUP_HITS));
	one_u64(x, "tallyfs_dedup_bytes_total", "counter",
		"bytes of the dedup hits: not written again",
		metrics_counter(m, METRICS_DEDUP_BYTES));
	one_u64(x, "tallyfs_object_writes_total", "counter",
		"flushed blocks that made a new object",
		metrics_counter(m, METRICS_OBJECTS_WRITTEN));
	one_u64(x, "tallyfs_object_write_bytes_total", "counter",
		"bytes of the new objects",
		metrics_counter(m, METRICS_OBJECT_BYTES_WRITTEN));
}

/* The store's committed counts (the status document's). */
static void store(struct metrics_text *x, const struct tally_stats *st)
{
	one_u64(x, "tallyfs_objects", "gauge", "objects stored", st->objects);
	one_u64(x, "tallyfs_stored_bytes", "gauge", "bytes of the objects",
		st->bytes_stored);
	one_u64(x, "tallyfs_referenced_bytes", "gauge",
		"object bytes times their references", st->bytes_referenced);
	one_u64(x, "tallyfs_logical_bytes", "gauge", "sum of the file sizes",
		st->bytes_logical);
	one_double(x, "tallyfs_dedup_ratio", "gauge",
		   "referenced bytes / stored bytes", ctl_dedup_ratio(st));
	one_u64(x, "tallyfs_namespaces", "gauge", "namespaces", st->namespaces);
	one_u64(x, "tallyfs_inodes", "gauge", "inodes", st->inodes);
	one_u64(x, "tallyfs_inodes_cached", "gauge",
		"inodes held in memory (those the kernel knows)",
		st->inodes_cached);
	one_u64(x, "tallyfs_buffer_pool_bytes", "gauge",
		"free block buffers kept for reuse", st->buffer_pool_bytes);
	one_u64(x, "tallyfs_spliced_reads_total", "counter",
		"read replies spliced from object files", st->spliced_reads);
	one_u64(x, "tallyfs_refcount_drift_total", "counter",
		"reference counts found wrong at a commit (corrected)",
		st->refcount_drift);
	one_u64(x, "tallyfs_corrupt_objects_total", "counter",
		"object files met short or not holding what their name says",
		st->corrupt_objects);
	one_u64(x, "tallyfs_jobs_queued", "gauge",
		"jobs waiting for a worker (both queues)", st->jobs_queued);
	one_u64(x, "tallyfs_jobs_running", "gauge",
		"jobs running (both queues)", st->jobs_running);
}

/* Each shard: its path (an info series), state, objects, bytes, free. */
static int shards(struct metrics_text *x, struct tally *t)
{
	static const char *const states[] = { "active", "draining",
					      "unreachable" };
	struct shard_infos *l = malloc(sizeof(*l));
	char id[32], lab[96];
	unsigned i, k;
	int rc;

	if (!l)
		return -ENOMEM;
	rc = shard_infos(t, l);
	if (rc) {
		free(l);
		return rc;
	}
	metrics_text_family(x, "tallyfs_shard_info", "gauge",
			    "1 for each shard, with its path");
	for (i = 0; i < l->n && !rc; i++) {
		char *path = metrics_label("path", l->v[i].path);
		char *both = NULL;

		snprintf(id, sizeof(id), "shard=\"%u\"", l->v[i].id);
		if (path)
			rc = ctl_aprintf(&both, "%s,%s", id, path);
		else
			rc = -ENOMEM;
		if (!rc)
			metrics_text_u64(x, "tallyfs_shard_info", both, 1);
		free(both);
		free(path);
	}
	metrics_text_family(x, "tallyfs_shard_state", "gauge",
			    "1 for the state each shard is in");
	for (i = 0; i < l->n && !rc; i++)
		for (k = 0; k < 3; k++) {
			snprintf(lab, sizeof(lab), "shard=\"%u\",state=\"%s\"",
				 l->v[i].id, states[k]);
			metrics_text_u64(x, "tallyfs_shard_state", lab,
					 !strcmp(ctl_shard_state(&l->v[i]),
						 states[k]));
		}
	metrics_text_family(x, "tallyfs_shard_objects", "gauge",
			    "objects in each shard");
	for (i = 0; i < l->n; i++) {
		snprintf(id, sizeof(id), "shard=\"%u\"", l->v[i].id);
		metrics_text_u64(x, "tallyfs_shard_objects", id,
				 l->v[i].objects);
	}
	metrics_text_family(x, "tallyfs_shard_bytes", "gauge",
			    "object bytes in each shard");
	for (i = 0; i < l->n; i++) {
		snprintf(id, sizeof(id), "shard=\"%u\"", l->v[i].id);
		metrics_text_u64(x, "tallyfs_shard_bytes", id, l->v[i].bytes);
	}
	metrics_text_family(x, "tallyfs_shard_free_bytes", "gauge",
			    "free bytes of each shard's filesystem");
	for (i = 0; i < l->n; i++) {
		snprintf(id, sizeof(id), "shard=\"%u\"", l->v[i].id);
		metrics_text_u64(x, "tallyfs_shard_free_bytes", id,
				 l->v[i].free);
	}
	one_u64(x, "tallyfs_ghosts", "gauge",
		"objects moved whose old place references still name",
		l->ghosts);
	free(l);
	return rc;
}

/* GC: this mount's cycles (counters), and the store's newest cycle (the
 * status's last_gc). */
static int gc(struct metrics_text *x, struct tally *t, struct metrics *m)
{
	struct meta_gc_event ev;
	uint64_t v;
	size_t n;
	int rc;

	one_u64(x, "tallyfs_gc_runs_total", "counter",
		"GC cycles of this mount run to the end (dry runs aside)",
		metrics_counter(m, METRICS_GC_RUNS));
	one_u64(x, "tallyfs_gc_collected_objects_total", "counter",
		"object files GC deleted",
		metrics_counter(m, METRICS_GC_COLLECTED));
	one_u64(x, "tallyfs_gc_freed_bytes_total", "counter",
		"bytes of the object files GC deleted",
		metrics_counter(m, METRICS_GC_FREED_BYTES));
	if (metrics_gauge(m, METRICS_GC_RECLAIMABLE_OBJECTS, &v))
		one_u64(x, "tallyfs_gc_reclaimable_objects", "gauge",
			"object files nothing references that the last GC "
			"cycle of this mount left (in their grace period)",
			v);
	if (metrics_gauge(m, METRICS_GC_RECLAIMABLE_BYTES, &v))
		one_u64(x, "tallyfs_gc_reclaimable_bytes", "gauge",
			"their bytes: what later cycles will free", v);
	rc = ctl_gc_log(t, &ev, 1, &n);
	if (!rc && n) {
		one_u64(x, "tallyfs_gc_last_run_timestamp_seconds", "gauge",
			"when the store's newest GC cycle ran (unix time)",
			(uint64_t)ev.at);
		one_double(x, "tallyfs_gc_last_duration_seconds", "gauge",
			   "how long the store's newest GC cycle took",
			   (double)ev.duration_ms / 1000.0);
	}
	return rc;
}

#define HOSTS_MAX 256 /* hosts told apart; more count as distinct */

struct sessions_acc {
	uint64_t sessions, hosts;
	char (*host)[256];
	size_t nhost;
};

static int session_count(void *ctx, const struct meta_session *e)
{
	struct sessions_acc *a = ctx;
	size_t i;

	a->sessions++;
	for (i = 0; i < a->nhost; i++)
		if (!strcmp(a->host[i], e->host))
			return 0;
	a->hosts++;
	if (a->nhost < HOSTS_MAX)
		snprintf(a->host[a->nhost++], sizeof(a->host[0]), "%s",
			 e->host);
	return 0;
}

/* The live sessions (the status's nodes) and the hosts they run on. */
static int sessions(struct metrics_text *x, struct tally *t)
{
	struct sessions_acc a = { 0 };
	int rc;

	a.host = calloc(HOSTS_MAX, sizeof(*a.host));
	if (!a.host)
		return -ENOMEM;
	rc = ctl_sessions(t, session_count, &a);
	free(a.host);
	if (rc)
		return rc;
	one_u64(x, "tallyfs_sessions", "gauge",
		"live sessions (mounts) of the store", a.sessions);
	one_u64(x, "tallyfs_hosts", "gauge", "hosts the live sessions run on",
		a.hosts);
	return 0;
}

/* The remote tier, when the mount has one. */
static void remote(struct metrics_text *x, struct tally *t)
{
	struct remote *r = tally_remote(t);
	struct remote_stats s;

	if (!r)
		return;
	remote_stats(r, &s);
	one_u64(x, "tallyfs_remote_reachable", "gauge",
		"1 while the bucket answers", s.reachable);
	one_u64(x, "tallyfs_remote_uploads_total", "counter",
		"objects uploaded to the bucket", s.uploaded);
	one_u64(x, "tallyfs_remote_upload_bytes_total", "counter",
		"bytes uploaded to the bucket", s.bytes_uploaded);
	one_u64(x, "tallyfs_remote_upload_logical_bytes_total", "counter",
		"bytes of the objects uploaded, before their envelope",
		s.bytes_logical);
	one_u64(x, "tallyfs_remote_upload_failures_total", "counter",
		"uploads and deletions that failed (tried again)", s.failed);
	one_u64(x, "tallyfs_remote_retries_total", "counter",
		"jobs tried again", s.retries);
	one_u64(x, "tallyfs_remote_queue_depth", "gauge",
		"objects waiting for their upload", s.queued);
	one_u64(x, "tallyfs_remote_uploads_in_flight", "gauge",
		"uploads and deletions under way", s.in_flight);
	one_u64(x, "tallyfs_remote_fetches_total", "counter",
		"objects fetched from the bucket", s.fetched);
	one_u64(x, "tallyfs_remote_fetch_bytes_total", "counter",
		"bytes fetched from the bucket", s.bytes_fetched);
	one_u64(x, "tallyfs_remote_read_ahead_total", "counter",
		"fetches made by read-ahead", s.read_ahead);
	one_u64(x, "tallyfs_remote_deletes_queued", "gauge",
		"deletions waiting in the bucket's queue", s.delete_queued);
	one_u64(x, "tallyfs_remote_deletes_total", "counter",
		"keys deleted from the bucket", s.deleted);
	one_u64(x, "tallyfs_remote_evictions_total", "counter",
		"local copies evicted (the bucket keeps them)", s.evicted);
	one_u64(x, "tallyfs_remote_cache_bytes", "gauge",
		"local object bytes the bucket holds too", s.cache_bytes);
	one_u64(x, "tallyfs_remote_cache_size_bytes", "gauge",
		"local object bytes kept at most (0: all)", s.cache_size);
	one_u64(x, "tallyfs_remote_snapshots_total", "counter",
		"metadata snapshots uploaded", s.snapshots);
}

int ctl_metrics_text(struct tally *t, char **out)
{
	struct metrics *m = tally_metrics(t);
	struct metrics_text x = { 0 };
	struct tally_stats st;
	int rc = tally_stats(t, &st);

	if (rc)
		return rc;
	metrics_text_family(&x, "tallyfs_build_info", "gauge",
			    "1, with the version of the daemon");
	metrics_text_u64(&x, "tallyfs_build_info",
			 "version=\"" TALLY_VERSION "\"", 1);
	requests(&x, m);
	flushes(&x, m, &st);
	store(&x, &st);
	rc = shards(&x, t);
	if (!rc)
		rc = gc(&x, t, m);
	if (!rc)
		rc = sessions(&x, t);
	if (rc) {
		metrics_text_abort(&x);
		return rc;
	}
	remote(&x, t);
	return metrics_text_end(&x, out);
}
