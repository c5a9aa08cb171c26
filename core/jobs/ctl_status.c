/* SPDX-License-Identifier: MIT */
/*
 * The status document (/.tally/status): one JSON object of the store's
 * counts and bytes, the flush pipeline, GC, pins, nodes, shards, jobs
 * and the remote tier (ctl_status_json()).
 */
#include "core/jobs/ctl.h"
#include "core/jobs/ctl_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/jobs/gc.h"
#include "core/util/hash.h"
#include "core/objects/objstore.h"
#include "core/meta/meta.h"
#include "core/util/pool.h"
#include "core/jobs/shard.h"
#include "core/util/progress.h"
#include "core/remote/remote.h"
#include "core/fs/tally.h"

/* A JSON string: quotes, backslashes and control bytes escaped. */
static int json_str(const char *in, char **out)
{
	size_t len = strlen(in), i, o = 0;
	char *s = malloc(len * 6 + 3);

	if (!s)
		return -ENOMEM;
	s[o++] = '"';
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];

		if (ch == '"' || ch == '\\') {
			s[o++] = '\\';
			s[o++] = (char)ch;
		} else if (ch < 0x20) {
			o += (size_t)snprintf(s + o, 7, "\\u%04x", ch);
		} else {
			s[o++] = (char)ch;
		}
	}
	s[o++] = '"';
	s[o] = '\0';
	*out = s;
	return 0;
}

struct pins_acc {
	char *s;
	size_t n;
	int rc;
};

static int pin_json(void *ctx, const char *path)
{
	struct pins_acc *a = ctx;
	char *q;

	a->rc = json_str(path, &q);
	if (a->rc)
		return a->rc;
	a->rc = ctl_append(&a->s, "%s%s", a->n ? ", " : "", q);
	free(q);
	if (a->rc)
		return a->rc;
	a->n++;
	return 0;
}

/* Append ", \"node_id\": N, \"pins\": [...]" to *acc. */
static int pins_all(struct meta *m, void *ctx)
{
	return meta_pins(m, pin_json, ctx);
}

static int pins_json(struct tally *t, char **acc)
{
	struct pins_acc a = { 0 };
	int64_t stale, node;
	unsigned min_nodes;
	int rc;

	rc = tally_meta_read(t, pins_all, &a);
	if (rc) {
		free(a.s);
		return rc;
	}
	tally_gc_settings(t, &stale, &min_nodes, &node);
	rc = ctl_append(acc, ", \"node_id\": %" PRId64 ", \"pins\": [%s]", node,
			a.s ? a.s : "");
	free(a.s);
	return rc;
}

struct nodes_acc {
	char *s;
	unsigned n;
	int rc;
};

static int node_json(void *ctx, const struct meta_session *e)
{
	struct nodes_acc *a = ctx;
	char *host;

	a->rc = json_str(e->host, &host);
	if (a->rc)
		return a->rc;
	a->rc = ctl_append(
		&a->s,
		"%s{\"id\": %" PRId64 ", \"host\": %s, \"pid\": %" PRId64
		", \"started\": %" PRId64 ", \"last_heartbeat\": %" PRId64
		", \"expires\": %" PRId64 ", \"active\": %" PRIu64 "}",
		a->n ? ", " : "", e->id, host, e->pid, e->started, e->heartbeat,
		e->expires, e->active);
	free(host);
	if (a->rc)
		return a->rc;
	a->n++;
	return 0;
}

struct sessions_walk {
	int (*fn)(void *ctx, const struct meta_session *e);
	void *ctx;
};

static int sessions_all(struct meta *m, void *ctx)
{
	struct sessions_walk *w = ctx;

	return meta_sessions(m, w->fn, w->ctx);
}

int ctl_sessions(struct tally *t,
		 int (*fn)(void *ctx, const struct meta_session *e), void *ctx)
{
	struct sessions_walk w = { fn, ctx };

	return tally_meta_read(t, sessions_all, &w);
}

/* Append ", \"nodes\": [...]": the live sessions (core/cluster/session.c). */
static int nodes_json(struct tally *t, char **acc)
{
	struct nodes_acc a = { 0 };
	int rc = ctl_sessions(t, node_json, &a);

	if (!rc)
		rc = ctl_append(acc, ", \"nodes\": [%s]", a.s ? a.s : "");
	free(a.s);
	return rc;
}

/* ", \"last_gc\": {...}, \"gc_log\": [...]" for the status document. */
static int gc_json(const struct meta_gc_event *ev, size_t n, char **out)
{
	char *acc = NULL;
	size_t i;
	int rc = 0;

	for (i = 0; i < n && !rc; i++) {
		const struct meta_gc_event *e = &ev[i];

		rc = ctl_append(
			&acc,
			"%s{\"at\": %" PRId64 ", \"dry_run\": %s"
			", \"checked\": %" PRIu64 ", \"live\": %" PRIu64
			", \"unreferenced\": %" PRIu64
			", \"collected\": %" PRIu64 ", \"preserved\": %" PRIu64
			", \"bytes_freed\": %" PRIu64 ", \"drift\": %" PRIu64
			", \"nodes_reporting\": %" PRIu64
			", \"duration_ms\": %" PRId64 "}",
			i ? ", " : "", e->at, e->dry_run ? "true" : "false",
			e->checked, e->live, e->unreferenced, e->collected,
			e->preserved, e->bytes_freed, e->drift, e->nodes,
			e->duration_ms);
	}
	if (!rc && n) {
		/* the newest event is the first one; keep it as last_gc */
		const char *end = strstr(acc, "}");

		rc = ctl_aprintf(out, ", \"last_gc\": %.*s}, \"gc_log\": [%s]",
				 (int)(end - acc), acc, acc);
	} else if (!rc) {
		rc = ctl_aprintf(out, ", \"last_gc\": null, \"gc_log\": []");
	}
	free(acc);
	return rc;
}

/* Append ", \"compress_local\": {...}" (null for a store of plain
 * object files) to *acc: the level of new files and the bytes of the
 * object files on disk (each fan-out directory listed once a mount,
 * then kept by every change: core/objects/objstore.c, Local bytes). */
static int local_json(struct tally *t, const struct tally_stats *st, char **acc)
{
	struct objstore *os = tally_objstore(t);
	uint64_t disk = 0;
	unsigned d;
	int rc = 0;

	if (!objstore_encoded(os))
		return ctl_append(acc, ", \"compress_local\": null");
	for (d = 0; d < OBJSTORE_FANOUT && !rc; d++)
		rc = objstore_count_dir(os, d);
	if (!rc && !objstore_local_bytes(os, &disk))
		rc = -EAGAIN;
	if (rc)
		return ctl_append(acc,
				  ", \"compress_local\": {\"level\": %d, "
				  "\"bytes_on_disk\": null}",
				  objstore_local_level(os));
	/* with a bucket, the disk holds only the copies not evicted */
	return ctl_append(acc,
			  ", \"compress_local\": {\"level\": %d, "
			  "\"bytes_on_disk\": %" PRIu64 ", \"ratio\": %.3f}",
			  objstore_local_level(os), disk,
			  disk && !tally_remote(t)
				  ? (double)st->bytes_stored / (double)disk
				  : 0.0);
}

/* Append ", \"shards\": [...], \"ghosts\": N, ..." to *acc. */
static int shards_json(struct tally *t, char **acc)
{
	struct shard_infos *l = malloc(sizeof(*l));
	unsigned i;
	int rc;

	if (!l)
		return -ENOMEM;
	rc = shard_infos(t, l);
	if (!rc)
		rc = ctl_append(acc, ", \"shards\": [");
	for (i = 0; i < l->n && !rc; i++) {
		const struct shard_info *sh = &l->v[i];
		char *path;

		rc = json_str(sh->path, &path);
		if (rc)
			break;
		rc = ctl_append(
			acc,
			"%s{\"id\": %u, \"path\": %s, \"state\": \"%s\", "
			"\"objects\": %" PRIu64 ", \"bytes\": %" PRIu64
			", \"free\": %" PRIu64 "}",
			i ? ", " : "", sh->id, path, ctl_shard_state(sh),
			sh->objects, sh->bytes, sh->free);
		free(path);
	}
	if (!rc)
		rc = ctl_append(acc,
				"], \"ghosts\": %" PRIu64
				", \"total_purged\": %" PRIu64
				", \"last_sweep\": ",
				l->ghosts, l->total_purged);
	if (!rc && !l->have_sweep)
		rc = ctl_append(acc, "null");
	else if (!rc)
		rc = ctl_append(acc,
				"{\"at\": %" PRId64 ", \"checked\": %" PRIu64
				", \"purged\": %" PRIu64 ", \"kept\": %" PRIu64
				", \"inconclusive\": %" PRIu64
				", \"references_repointed\": %" PRIu64
				", \"duration_ms\": %.0f}",
				l->last_sweep.at, l->last_sweep.checked,
				l->last_sweep.purged, l->last_sweep.kept,
				l->last_sweep.inconclusive,
				l->last_sweep.repointed,
				l->last_sweep.duration_ms);
	free(l);
	return rc;
}

/* Append the figures of the control queue (commands and GC, apart from
 * the flush streams) and ", \"jobs\": [...]" (core/util/progress.h) to *acc. */
static int jobs_json(struct tally *t, char **acc)
{
	struct pool_stats ps;
	char *jobs;
	int rc = progress_json(tally_progress(t), &jobs);

	if (rc)
		return rc;
	pool_stats(tally_pool(t), &ps);
	rc = ctl_append(
		acc,
		", \"control_workers\": %u, \"control_jobs_queued\": %" PRIu64
		", \"control_jobs_running\": %" PRIu64 ", \"jobs\": %s",
		ps.cls[POOL_CONTROL].workers, ps.cls[POOL_CONTROL].queued,
		ps.cls[POOL_CONTROL].running, jobs);
	free(jobs);
	return rc;
}

struct gc_events {
	struct meta_gc_event *v;
	size_t max, n;
};

static int gc_events(struct meta *m, void *ctx)
{
	struct gc_events *e = ctx;

	return meta_gc_log(m, e->v, e->max, &e->n);
}

int ctl_gc_log(struct tally *t, struct meta_gc_event *v, size_t max, size_t *n)
{
	struct gc_events e = { v, max, 0 };
	int rc = tally_meta_read(t, gc_events, &e);

	*n = rc ? 0 : e.n;
	return rc;
}

double ctl_dedup_ratio(const struct tally_stats *st)
{
	return st->bytes_stored
		       ? (double)st->bytes_referenced / (double)st->bytes_stored
		       : 1.0;
}

/* ", \"remote\": {...}" when the mount has a remote tier. */
static int remote_json(struct tally *t, char **acc)
{
	struct remote *r = tally_remote(t);
	char *ep = NULL, *bucket = NULL, *prefix = NULL, *err = NULL;
	char *snap = NULL;
	struct remote_stats st;
	int rc;

	if (!r)
		return 0;
	remote_stats(r, &st);
	rc = json_str(st.cfg->endpoint, &ep);
	if (!rc)
		rc = json_str(st.cfg->bucket, &bucket);
	if (!rc)
		rc = json_str(st.cfg->prefix, &prefix);
	if (!rc)
		rc = json_str(st.last_error, &err);
	if (!rc)
		rc = json_str(st.last_snapshot, &snap);
	if (!rc)
		rc = ctl_append(
			acc,
			", \"remote\": {\"endpoint\": %s, \"bucket\": %s, "
			"\"prefix\": %s, \"reachable\": %s, "
			"\"queued\": %" PRIu64 ", \"in_flight\": %" PRIu64
			", \"uploaded\": %" PRIu64 ", \"failed\": %" PRIu64
			", \"retries\": %" PRIu64
			", \"bytes_uploaded\": %" PRIu64
			", \"durable_remote_seq\": %" PRIu64
			", \"delete_queued\": %" PRIu64
			", \"deleted\": %" PRIu64 ", \"fetched\": %" PRIu64
			", \"bytes_fetched\": %" PRIu64
			", \"read_ahead\": %" PRIu64 ", \"compared\": %" PRIu64
			", \"evicted\": %" PRIu64 ", \"cache_bytes\": %" PRIu64
			", \"cache_size\": %" PRIu64 ", \"snapshots\": %" PRIu64
			", \"sealed\": %s, \"encrypted\": %s"
			", \"key_id\": \"%s\", \"compress\": %d"
			", \"bytes_logical\": %" PRIu64
			", \"bytes_stored\": %" PRIu64
			", \"compress_ratio\": %.3f"
			", \"last_snapshot\": %s"
			", \"last_error\": %s}",
			ep, bucket, prefix, st.reachable ? "true" : "false",
			st.queued, st.in_flight, st.uploaded, st.failed,
			st.retries, st.bytes_uploaded, st.durable_remote_seq,
			st.delete_queued, st.deleted, st.fetched,
			st.bytes_fetched, st.read_ahead, st.compared,
			st.evicted, st.cache_bytes, st.cache_size, st.snapshots,
			st.sealed ? "true" : "false",
			st.encrypted ? "true" : "false", st.key_id, st.compress,
			st.bytes_logical, st.bytes_stored,
			st.bytes_stored ? (double)st.bytes_logical /
						  (double)st.bytes_stored
					: 0.0,
			snap, err);
	free(ep);
	free(bucket);
	free(prefix);
	free(err);
	free(snap);
	return rc;
}

int ctl_status_json(struct tally *t, char **out)
{
	struct meta_gc_event ev[5];
	struct tally_stats st;
	char *head = NULL, *gc = NULL;
	size_t nev, i, len;
	int rc = tally_stats(t, &st);

	if (rc)
		return rc;
	rc = ctl_gc_log(t, ev, 5, &nev);
	if (rc)
		return rc;
	rc = gc_json(ev, nev, &gc);
	if (!rc)
		rc = pins_json(t, &gc);
	if (!rc)
		rc = nodes_json(t, &gc);
	if (!rc)
		rc = shards_json(t, &gc);
	if (!rc)
		rc = local_json(t, &st, &gc);
	if (!rc)
		rc = jobs_json(t, &gc);
	if (!rc)
		rc = remote_json(t, &gc);
	if (rc) {
		free(gc);
		return rc;
	}
	rc = ctl_aprintf(
		&head,
		"{\"version\": \"%s\", \"block_size\": %u, "
		"\"namespaces\": %" PRIu64 ", \"inodes\": %" PRIu64
		", \"objects\": %" PRIu64 ", \"bytes_logical\": %" PRIu64
		", \"bytes_referenced\": %" PRIu64
		", \"bytes_stored\": %" PRIu64
		", \"dedup_ratio\": %.3f, \"pending_flushes\": %" PRIu64
		", \"durable_seq\": %" PRIu64 ", \"rotated_seq\": %" PRIu64
		", \"dirty_bytes\": %" PRIu64 ", \"dirty_limit\": %" PRIu64
		", \"flush_errors\": %" PRIu64 ", \"group_commits\": %" PRIu64
		", \"spliced_reads\": %" PRIu64 ", \"refcount_drift\": %" PRIu64
		", \"corrupt_objects\": %" PRIu64
		", \"inodes_cached\": %" PRIu64
		", \"buffer_pool_bytes\": %" PRIu64
		", \"max_pending_flushes\": %u, \"workers\": %u"
		", \"jobs_queued\": %" PRIu64 ", \"jobs_running\": %" PRIu64
		", \"writeback_cache\": %s, \"xattrs\": %s}\n",
		TALLY_VERSION, st.block_size, st.namespaces, st.inodes,
		st.objects, st.bytes_logical, st.bytes_referenced,
		st.bytes_stored, ctl_dedup_ratio(&st), st.pending_flushes,
		st.durable_seq, st.rotated_seq, st.dirty_bytes, st.dirty_limit,
		st.commit_errors, st.group_commits, st.spliced_reads,
		st.refcount_drift, st.corrupt_objects, st.inodes_cached,
		st.buffer_pool_bytes, st.max_pending, st.workers,
		st.jobs_queued, st.jobs_running,
		st.writeback_cache ? "true" : "false",
		st.xattrs ? "true" : "false");
	if (rc) {
		free(gc);
		return rc;
	}
	/* splice the GC part in before the closing brace */
	len = strlen(head);
	i = len >= 2 ? len - 2 : 0;
	head[i] = '\0';
	rc = ctl_aprintf(out, "%s%s}\n", head, gc);
	free(head);
	free(gc);
	return rc;
}
