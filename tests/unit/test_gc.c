/* SPDX-License-Identifier: MIT */
/*
 * GC cycles (core/jobs/gc.c) on a real store: leaks collected only after the
 * grace period, marks that survive a reopen, dry runs that change nothing,
 * live and in-flight objects that are never lost, drift and repair.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/jobs/ctl.h"
#include "core/jobs/fsck.h"
#include "core/jobs/gc.h"
#include "core/util/hash.h"
#include "core/meta/meta.h"
#include "core/objects/store.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096
#define LEAK "abababababababababababababababab"

static char *dir;
static char store[4096];
static struct tally *t;
static const struct tally_ctx me = { 0, 0 };
static _Atomic int slow_first_ms;
static _Atomic int streams;

static void hook(void *arg, uint64_t seq, uint64_t ino)
{
	(void)arg;
	(void)seq;
	(void)ino;
	if (atomic_fetch_add(&streams, 1) == 0 && atomic_load(&slow_first_ms))
		usleep((useconds_t)atomic_load(&slow_first_ms) * 1000);
}

static void open_store(void)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.workers = 2,
		.inode_dirty_max = BS,
		.stream_hook = hook,
	};

	atomic_store(&streams, 0);
	cr_assert_eq(tally_open(store, &o, &t), 0);
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	atomic_store(&slow_first_ms, 0);
	open_store();
}

static void teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(gc, .init = setup, .fini = teardown, .timeout = 60);

static void leak_path(char *buf, size_t size)
{
	snprintf(buf, size, "%s/shards/0/ab/" LEAK, store);
}

static void plant_leak(void)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/shards/0/ab", store);
	mkdir(path, 0700);
	leak_path(path, sizeof(path));
	fd = open(path, O_CREAT | O_WRONLY, 0400);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "leak", 4), 4);
	close(fd);
}

static bool leak_exists(void)
{
	char path[4200];

	leak_path(path, sizeof(path));
	return access(path, F_OK) == 0;
}

static void run_gc(bool dry, int64_t grace, struct gc_report *r)
{
	struct gc_opts o = { .dry_run = dry, .grace = grace };

	cr_assert_eq(gc_run(t, &o, r), 0);
}

static uint64_t mkfile(uint64_t parent, const char *name, const void *data,
		       size_t len, bool keep_open)
{
	struct stat st;

	cr_assert_eq(tally_mknod(t, &me, parent, name, S_IFREG | 0644, 0, &st),
		     0);
	cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), 0);
	cr_assert_eq(tally_write(t, st.st_ino, data, len, 0), (ssize_t)len);
	if (!keep_open)
		cr_assert_eq(tally_release(t, st.st_ino), 0);
	return st.st_ino;
}

static void expect_clean(void)
{
	tally_close(t);
	t = NULL;
	tu_fsck_clean(store, NULL);
}

Test(gc, leak_collected_only_after_grace)
{
	struct gc_report r;

	plant_leak();
	run_gc(false, -1, &r);
	cr_assert_eq(r.checked, 1);
	cr_assert_eq(r.unreferenced, 1);
	cr_assert_eq(r.preserved, 1);
	cr_assert_eq(r.collected, 0);
	cr_assert(leak_exists());
	/* the mark survives a remount: its clock does not restart */
	tally_close(t);
	open_store();
	sleep(2);
	run_gc(false, 1, &r);
	cr_assert_eq(r.collected, 1);
	cr_assert_eq(r.bytes_freed, 4);
	cr_assert_not(leak_exists());
}

Test(gc, fresh_mark_is_not_old_enough)
{
	struct gc_report r;

	plant_leak();
	run_gc(false, 60, &r);
	cr_assert_eq(r.preserved, 1);
	run_gc(false, 60, &r);
	cr_assert_eq(r.collected, 0, "marked seconds ago, grace 60 s");
	cr_assert(leak_exists());
}

Test(gc, dry_run_changes_nothing)
{
	struct gc_report r;

	plant_leak();
	run_gc(true, 0, &r);
	cr_assert(r.dry_run);
	cr_assert_eq(r.collected, 1, "would collect");
	cr_assert(leak_exists());
	/* and wrote no mark: a real cycle with a grace starts the clock now */
	run_gc(false, 60, &r);
	cr_assert_eq(r.collected, 0);
	cr_assert_eq(r.preserved, 1);
	cr_assert(leak_exists());
}

Test(gc, live_and_open_unlinked_objects_survive)
{
	char a[2 * BS], b[BS], buf[2 * BS];
	struct gc_report r;
	uint64_t ns, fa, fb;

	ns = tu_mkns(t, "main");
	tu_fill(a, sizeof(a), 1);
	tu_fill(b, sizeof(b), 2);
	fa = mkfile(ns, "a", a, sizeof(a), false);
	fb = mkfile(ns, "b", b, sizeof(b), true);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_unlink(t, ns, "b"), 0); /* still open */
	plant_leak();
	run_gc(false, 0, &r);
	cr_assert_eq(r.checked, 4);
	cr_assert_eq(r.live, 3);
	cr_assert_eq(r.collected, 1);
	cr_assert_not(leak_exists());
	cr_assert_eq(tally_read(t, fa, buf, sizeof(a), 0), (ssize_t)sizeof(a));
	cr_assert_eq(memcmp(buf, a, sizeof(a)), 0);
	cr_assert_eq(tally_read(t, fb, buf, sizeof(b), 0), (ssize_t)sizeof(b));
	cr_assert_eq(memcmp(buf, b, sizeof(b)), 0);
	cr_assert_eq(tally_release(t, fb), 0);
	expect_clean();
}

struct gc_thread {
	struct gc_report r;
	int rc;
};

static void *gc_in_thread(void *arg)
{
	struct gc_thread *g = arg;
	struct gc_opts o = { .grace = 0 };

	g->rc = gc_run(t, &o, &g->r);
	return NULL;
}

Test(gc, object_written_during_a_cycle_is_never_lost)
{
	char x[BS], y[BS], buf[BS];
	struct gc_thread g;
	pthread_t th;
	uint64_t ns, fx, fy;

	/*
	 * X's flush streams slowly; Y's flush streams at once but cannot be
	 * committed before X's: Y's object file exists with no row while a
	 * GC with a grace of 0 runs. GC may delete it; Y's commit must then
	 * write it again from its buffer.
	 */
	ns = tu_mkns(t, "main");
	atomic_store(&streams, 0);
	atomic_store(&slow_first_ms, 600);
	tu_fill(x, BS, 11);
	tu_fill(y, BS, 12);
	fx = mkfile(ns, "x", x, BS, false);
	fy = mkfile(ns, "y", y, BS, false);
	usleep(150 * 1000); /* Y's object is on disk by now */
	cr_assert_eq(pthread_create(&th, NULL, gc_in_thread, &g), 0);
	pthread_join(th, NULL);
	cr_assert_eq(g.rc, 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_read(t, fx, buf, BS, 0), BS);
	cr_assert_eq(memcmp(buf, x, BS), 0);
	cr_assert_eq(tally_read(t, fy, buf, BS, 0), BS);
	cr_assert_eq(memcmp(buf, y, BS), 0);
	tally_close(t);
	t = NULL;
	open_store();
	cr_assert_eq(tally_read(t, fy, buf, BS, 0), BS, "after a reopen");
	cr_assert_eq(memcmp(buf, y, BS), 0);
	expect_clean();
}

struct reuse {
	uint64_t ns, ino;
	const char *data;
	int calls;
};

/* Between GC's re-check and its unlink: a file now names the object. */
static void reuse_doomed(void *arg)
{
	struct reuse *u = arg;

	u->calls++;
	u->ino = mkfile(u->ns, "y", u->data, BS, false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
}

Test(gc, object_named_between_recheck_and_unlink_is_kept)
{
	char y[BS], buf[BS], hex[HASH_HEX_LEN + 1], path[4200];
	struct reuse u = { .data = y };
	struct gc_opts o = { .grace = 0,
			     .unlink_hook = reuse_doomed,
			     .hook_arg = &u };
	struct gc_report r;
	int fd;

	/*
	 * GC unlinks without the metadata lock, after a re-check under it
	 * found no row. A leaked file whose bytes a new file then writes is
	 * named by that file's commit in between: the commit's check of
	 * the file (under the lock) must cancel the unlink.
	 */
	u.ns = tu_mkns(t, "main");
	tu_fill(y, BS, 21);
	hash_block(y, BS, hex);
	snprintf(path, sizeof(path), "%s/shards/0/%.2s", store, hex);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/shards/0/%.2s/%s", store, hex, hex);
	fd = open(path, O_CREAT | O_WRONLY, 0400);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, y, BS), BS);
	close(fd);
	cr_assert_eq(gc_run(t, &o, &r), 0);
	cr_assert_eq(u.calls, 1);
	cr_assert_eq(r.unreferenced, 1);
	cr_assert_eq(r.collected, 0);
	cr_assert_eq(r.preserved, 1);
	cr_assert_eq(access(path, F_OK), 0, "the object was unlinked");
	cr_assert_eq(tally_read(t, u.ino, buf, BS, 0), BS);
	cr_assert_eq(memcmp(buf, y, BS), 0);
	tally_close(t);
	t = NULL;
	open_store();
	cr_assert_eq(tally_read(t, u.ino, buf, BS, 0), BS, "after a reopen");
	cr_assert_eq(memcmp(buf, y, BS), 0);
	expect_clean();
}

Test(gc, drift_reported_and_repaired_online)
{
	char a[BS], *report = NULL;
	struct gc_report r;
	struct meta *m;
	uint64_t ns, fixed = 0;

	ns = tu_mkns(t, "main");
	tu_fill(a, BS, 5);
	mkfile(ns, "a", a, BS, false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	/* damage through the metadata API: an over-count (object id 1) */
	m = tally_meta_lock(t);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_obj_set_count(m, 1, 7), 0);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
	run_gc(false, 0, &r);
	cr_assert_eq(r.drift_over, 1);
	cr_assert_eq(r.collected, 0, "drift never deletes");
	cr_assert_eq(gc_repair(t, &fixed), 0);
	cr_assert_eq(fixed, 1);
	run_gc(false, 0, &r);
	cr_assert_eq(r.drift_over + r.drift_under, 0);
	cr_assert_eq(ctl_exec(t, "repair\n", 7, &report), 0);
	cr_assert_not_null(strstr(report, "repaired: 0\n"), "%s", report);
	free(report);
	cr_assert_eq(ctl_exec(t, "gc grace=0 dry-run\n", 19, &report), 0);
	cr_assert_not_null(strstr(report, "dry_run: yes\n"), "%s", report);
	free(report);
	cr_assert_eq(ctl_exec(t, "gc grace=-1\n", 12, &report), -EINVAL);
	cr_assert_eq(ctl_exec(t, "gc dry-run dry-run\n", 19, &report), -EINVAL);
	cr_assert_eq(ctl_exec(t, "gc now\n", 7, &report), -EINVAL);
	expect_clean();
}

/* Plant object file @name (32 hex) with a few bytes. */
static void plant(const char *name)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/shards/0/%.2s", store, name);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/shards/0/%.2s/%s", store, name, name);
	fd = open(path, O_CREAT | O_WRONLY, 0400);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "x", 1), 1);
	close(fd);
}

static bool planted(const char *name)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/shards/0/%.2s/%s", store, name, name);
	return access(path, F_OK) == 0;
}

#define FRESH "11111111111111111111111111111111"
#define STALE "22222222222222222222222222222222"

/* Another node's report, written as that node would. */
static void other_node(int64_t node, int64_t at, const char *name)
{
	struct meta *m = tally_meta_lock(t);
	const char *names[1] = { name };

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_node_report(m, node, at, names, 1), 0);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
}

Test(gc, fresh_node_report_protects_stale_one_is_pruned)
{
	struct gc_report r;

	plant(FRESH);
	plant(STALE);
	other_node(1001, (int64_t)time(NULL), FRESH);
	other_node(1002, (int64_t)time(NULL) - 3600, STALE);
	run_gc(false, 0, &r);
	cr_assert_eq(r.stale_nodes, 1);
	cr_assert_eq(r.nodes_reporting, 2, "this mount and node 1001");
	cr_assert(planted(FRESH), "in a fresh node's active set");
	cr_assert_not(planted(STALE), "the stale report protects nothing");
	cr_assert_eq(r.collected, 1);
}

Test(gc, too_few_nodes_block_collection)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.min_nodes_reporting = 3,
	};
	struct gc_report r;

	tally_close(t);
	cr_assert_eq(tally_open(store, &o, &t), 0);
	plant_leak();
	run_gc(false, 0, &r);
	cr_assert(r.blocked);
	cr_assert_eq(r.nodes_reporting, 1);
	cr_assert_eq(r.collected, 0);
	cr_assert(leak_exists());
}

Test(gc, pins_keep_objects_of_deleted_files)
{
	char a[2 * BS], *report = NULL;
	struct gc_report r;
	uint64_t ns, objects = 0;

	ns = tu_mkns(t, "main");
	tu_fill(a, sizeof(a), 9);
	mkfile(ns, "a", a, sizeof(a), false);
	cr_assert_eq(tally_pin(t, "/main//a", true, &objects), 0);
	cr_assert_eq(objects, 2);
	cr_assert_eq(tally_pin(t, "main/a", true, &objects), -EEXIST);
	cr_assert_eq(tally_pin(t, "main/../etc", true, &objects), -EINVAL);
	cr_assert_eq(tally_pin(t, "main/missing", true, &objects), -ENOENT);
	cr_assert_eq(tally_pin(t, "/", true, &objects), -EINVAL);
	/* the file goes; its objects stay, pinned, through GC cycles */
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tu_count_objects(store), 2, "kept by the pin");
	run_gc(false, 0, &r);
	cr_assert_eq(r.collected, 0);
	cr_assert_eq(tu_count_objects(store), 2);
	/* unpin by name (the file is gone); the next cycle collects */
	cr_assert_eq(ctl_exec(t, "unpin main/a\n", 13, &report), 0);
	free(report);
	cr_assert_eq(ctl_exec(t, "unpin main/a\n", 13, &report), -ENOENT);
	run_gc(false, 0, &r);
	cr_assert_eq(r.collected, 2);
	cr_assert_eq(tu_count_objects(store), 0);
	expect_clean();
}

Test(gc, automatic_cycles)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.gc_interval = 1,
	};
	struct meta_gc_event ev[1];
	size_t n = 0;
	int i;

	tally_close(t);
	cr_assert_eq(tally_open(store, &o, &t), 0);
	plant_leak();
	for (i = 0; i < 50 && n == 0; i++) {
		struct meta *m;

		usleep(100 * 1000);
		m = tally_meta_lock(t);
		cr_assert_eq(meta_gc_log(m, ev, 1, &n), 0);
		tally_meta_unlock(t);
	}
	cr_assert_eq(n, 1, "no automatic cycle within 5 s");
	cr_assert_eq(ev[0].unreferenced, 1);
	cr_assert_eq(ev[0].collected, 0, "the default grace applies");
	cr_assert(leak_exists());
}

/* The value of "key: " in the block of @report that follows @after. */
static long long report_value(const char *report, const char *after,
			      const char *key)
{
	const char *p = strstr(report, after);
	char pat[64];

	cr_assert_not_null(p, "no '%s' in: %s", after, report);
	snprintf(pat, sizeof(pat), "\n%s: ", key);
	p = strstr(p, pat);
	cr_assert_not_null(p, "no '%s' after '%s' in: %s", key, after, report);
	return atoll(p + strlen(pat));
}

Test(gc, du_is_exact_from_the_counts)
{
	char a[2 * BS], g[BS], *rep = NULL;
	uint64_t ns, dev, inodes, objects;
	struct stat st;

	ns = tu_mkns(t, "main");
	tu_fill(a, sizeof(a), 31);
	tu_fill(g, sizeof(g), 32);
	mkfile(ns, "f", a, sizeof(a), false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_branch(t, "main", "dev", &inodes), 0);
	cr_assert_eq(tally_lookup(t, TALLY_ROOT_INO, "dev", &st), 0);
	dev = st.st_ino;
	mkfile(dev, "g", g, sizeof(g), false);

	cr_assert_eq(ctl_exec(t, "du\n", 3, &rep), 0);
	cr_assert_eq(report_value(rep, "command: du", "namespaces"), 2);
	cr_assert_eq(report_value(rep, "namespace: main", "files"), 1);
	cr_assert_eq(report_value(rep, "namespace: main", "bytes_logical"),
		     2 * BS);
	cr_assert_eq(report_value(rep, "namespace: main", "bytes_shared"),
		     2 * BS);
	cr_assert_eq(report_value(rep, "namespace: main", "bytes_exclusive"),
		     0);
	cr_assert_eq(report_value(rep, "namespace: dev", "files"), 2);
	cr_assert_eq(report_value(rep, "namespace: dev", "objects"), 3);
	cr_assert_eq(report_value(rep, "namespace: dev", "bytes_referenced"),
		     3 * BS);
	cr_assert_eq(report_value(rep, "namespace: dev", "bytes_exclusive"),
		     BS);
	cr_assert_eq(report_value(rep, "namespace: dev", "bytes_reclaimable"),
		     BS);
	free(rep);
	/* a pin keeps what deleting the namespace would otherwise free */
	cr_assert_eq(tally_pin(t, "dev/g", true, &objects), 0);
	cr_assert_eq(ctl_exec(t, "du dev\n", 7, &rep), 0);
	cr_assert_eq(report_value(rep, "command: du", "namespaces"), 1);
	cr_assert_eq(report_value(rep, "namespace: dev", "bytes_exclusive"),
		     BS);
	cr_assert_eq(report_value(rep, "namespace: dev", "bytes_reclaimable"),
		     0);
	free(rep);
	cr_assert_eq(ctl_exec(t, "du nope\n", 8, &rep), -ENOENT);
	cr_assert_eq(ctl_exec(t, "du a b\n", 7, &rep), -EINVAL);
}

/* du NS@NAME: a snapshot as /.snapshots shows it, and what only it
 * holds (what rmsnapshot frees) */
Test(gc, du_of_a_snapshot)
{
	char a[2 * BS], b[2 * BS], h[BS], g[BS], *rep = NULL;
	uint64_t ns, objects;
	int64_t ver;

	ns = tu_mkns(t, "main");
	tu_fill(a, sizeof(a), 61);
	tu_fill(h, sizeof(h), 62);
	tu_fill(g, sizeof(g), 63);
	memcpy(b, g, BS); /* f again: g's block, then a's second */
	memcpy(b + BS, a + BS, BS);
	tu_fill(g, sizeof(g), 64);
	mkfile(ns, "f", a, sizeof(a), false);
	mkfile(ns, "h", h, sizeof(h), false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_pin(t, "main/f", true, &objects), 0);
	cr_assert_eq(tally_snapshot(t, "main", "s1", &ver), 0);
	/* after s1: f made again (its second block the same), h gone, g */
	cr_assert_eq(tally_unlink(t, ns, "f"), 0);
	cr_assert_eq(tally_unlink(t, ns, "h"), 0);
	mkfile(ns, "f", b, sizeof(b), false);
	mkfile(ns, "g", g, sizeof(g), false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_snapshot(t, "main", "s2", &ver), 0);
	cr_assert_eq(tally_unlink(t, ns, "g"), 0);

	cr_assert_eq(ctl_exec(t, "du main@s1\n", 11, &rep), 0);
	cr_assert_eq(report_value(rep, "command: du", "namespaces"), 1);
	cr_assert_eq(report_value(rep, "namespace: main@s1", "files"), 2);
	cr_assert_eq(report_value(rep, "namespace: main@s1", "bytes_logical"),
		     3 * BS);
	cr_assert_eq(report_value(rep, "namespace: main@s1", "objects"), 3);
	cr_assert_eq(report_value(rep, "namespace: main@s1",
				  "bytes_referenced"),
		     3 * BS);
	/* only s1 holds a's first block and h; the pin keeps a's */
	cr_assert_eq(report_value(rep, "namespace: main@s1", "bytes_exclusive"),
		     2 * BS);
	cr_assert_eq(report_value(rep, "namespace: main@s1", "bytes_shared"),
		     BS);
	cr_assert_eq(report_value(rep, "namespace: main@s1",
				  "bytes_reclaimable"),
		     BS);
	free(rep);
	cr_assert_eq(ctl_exec(t, "du main@s2\n", 11, &rep), 0);
	cr_assert_eq(report_value(rep, "namespace: main@s2", "files"), 2);
	cr_assert_eq(report_value(rep, "namespace: main@s2", "objects"), 3);
	cr_assert_eq(report_value(rep, "namespace: main@s2",
				  "bytes_referenced"),
		     3 * BS);
	/* g, which main removed after s2 */
	cr_assert_eq(report_value(rep, "namespace: main@s2", "bytes_exclusive"),
		     BS);
	free(rep);
	/* the namespace: f alone now */
	cr_assert_eq(ctl_exec(t, "du main\n", 8, &rep), 0);
	cr_assert_eq(report_value(rep, "namespace: main", "files"), 1);
	free(rep);
	cr_assert_eq(ctl_exec(t, "du main@s9\n", 11, &rep), -ENOENT);
	cr_assert_eq(ctl_exec(t, "du nope@s1\n", 11, &rep), -ENOENT);
	cr_assert_eq(ctl_exec(t, "du main@\n", 9, &rep), -ENOENT);
}

Test(gc, explain_says_why_an_object_lives)
{
	char a[BS], *rep = NULL, objs[512], cmd[64];
	uint64_t ns, objects, f;
	struct stat st;
	ssize_t n;

	ns = tu_mkns(t, "main");
	tu_fill(a, sizeof(a), 41);
	f = mkfile(ns, "f", a, sizeof(a), false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	/* a copy of f in dev (ln across namespaces): a row of its own */
	cr_assert_eq(tally_link(t, f, tu_mkns(t, "dev"), "f", &st), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_pin(t, "main/f", true, &objects), 0);
	cr_assert_eq(ctl_exec(t, "explain main/f\n", 15, &rep), 0);
	cr_assert_not_null(strstr(rep, "blocks: 1\n"), "%s", rep);
	cr_assert_not_null(strstr(rep, "refcount: 2\n"), "%s", rep);
	cr_assert_not_null(strstr(rep, "holder: dev (1 reference in 1 inode)"),
			   "%s", rep);
	cr_assert_not_null(strstr(rep, "holder: main (1 reference in 1 inode)"),
			   "%s", rep);
	cr_assert_not_null(strstr(rep, "kept_by: main/f\n"), "%s", rep);
	free(rep);
	plant_leak();
	{
		struct gc_report r;

		run_gc(false, -1, &r);
	}
	cr_assert_eq(ctl_exec(t, "explain " LEAK "\n", 9 + 32, &rep), 0);
	cr_assert_not_null(strstr(rep, "refcount: 0\nfile: present\n"), "%s",
			   rep);
	cr_assert_not_null(strstr(rep, "gc: unreferenced since "), "%s", rep);
	free(rep);
	cr_assert_eq(ctl_exec(t, "explain ffffffffffffffffffffffffffffffff\n",
			      41, &rep),
		     -ENOENT);
	cr_assert_eq(ctl_exec(t, "explain main/nope\n", 18, &rep), -ENOENT);
	cr_assert_eq(ctl_exec(t, "explain main/../f\n", 18, &rep), -EINVAL);
	/* a snapshot's rows are its own: main@s1 holds the block, then
	 * main's rewrite holds the new one */
	{
		int64_t ver;

		cr_assert_eq(tally_snapshot(t, "main", "s1", &ver), 0);
		cr_assert_eq(ctl_exec(t, "explain main/f\n", 15, &rep), 0);
		cr_assert_not_null(
			strstr(rep, "holder: main@s1 (1 reference in 1 inode)"),
			"%s", rep);
		cr_assert_null(strstr(rep, "holder: main ("), "%s", rep);
		free(rep);
		tu_fill(a, sizeof(a), 42);
		mkfile(ns, "g", a, sizeof(a), false);
		cr_assert_eq(tally_drain(t, NULL, 0), 0);
		cr_assert_eq(ctl_exec(t, "explain main/g\n", 15, &rep), 0);
		cr_assert_not_null(
			strstr(rep, "holder: main (1 reference in 1 inode)"),
			"%s", rep);
		free(rep);
		/* a path in a snapshot, as the mount shows it; not g */
		cr_assert_eq(ctl_exec(t, "explain .snapshots/main/s1/f\n", 29,
				      &rep),
			     0);
		cr_assert_not_null(strstr(rep, "blocks: 1\n"), "%s", rep);
		cr_assert_not_null(
			strstr(rep, "holder: main@s1 (1 reference in 1 inode)"),
			"%s", rep);
		free(rep);
		cr_assert_eq(ctl_exec(t, "explain .snapshots/main/s1/g\n", 29,
				      &rep),
			     -ENOENT);
		cr_assert_eq(ctl_exec(t, "explain .snapshots/main\n", 23, &rep),
			     -EINVAL);
		cr_assert_eq(tally_pin(t, ".snapshots/main/s1/f", true,
				       &objects),
			     -EROFS);
	}
	/* an object's paths, each in the version of its rows: main's f
	 * renamed after s1 is still f in s1 */
	cr_assert_eq(tally_rename(t, ns, "f", ns, "f2", 0), 0);
	n = tally_getxattr(t, f, "user.tally.objects", objs, sizeof(objs) - 1);
	cr_assert_gt(n, 32);
	snprintf(cmd, sizeof(cmd), "explain %.32s\n", objs);
	cr_assert_eq(ctl_exec(t, cmd, strlen(cmd), &rep), 0);
	cr_assert_not_null(strstr(rep,
				  "path: .snapshots/main/s1/f (1 reference)\n"),
			   "%s", rep);
	cr_assert_not_null(strstr(rep, "path: dev/f (1 reference)\n"), "%s",
			   rep);
	cr_assert_null(strstr(rep, "path: main/"), "%s", rep);
	free(rep);
}

Test(gc, verify_finds_corrupt_and_missing_objects)
{
	char a[3 * BS], *rep = NULL, path[4200], name[64];
	struct gc_verify v;
	uint64_t ns, f;
	int fd;

	ns = tu_mkns(t, "main");
	tu_fill(a, sizeof(a), 51);
	f = mkfile(ns, "f", a, sizeof(a), false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(gc_verify(t, 100, &v), 0);
	cr_assert_eq(v.checked, 3);
	cr_assert_eq(v.ok, 3);
	cr_assert_eq(v.bytes, 3 * BS);
	/* damage one object, lose another */
	{
		char objs[512];
		ssize_t n = tally_getxattr(t, f, "user.tally.objects", objs,
					   sizeof(objs) - 1);

		cr_assert_gt(n, 0);
		objs[n] = '\0';
		snprintf(name, sizeof(name), "%.32s", objs);
		snprintf(path, sizeof(path), "%s/shards/0/%.2s/%s", store, name,
			 name);
		fd = open(path, O_WRONLY);
		cr_assert_geq(fd, 0);
		cr_assert_eq(pwrite(fd, "!", 1, 100), 1);
		close(fd);
		snprintf(path, sizeof(path), "%s/shards/0/%.2s/%.32s", store,
			 objs + 35, objs + 35);
		cr_assert_eq(unlink(path), 0);
	}
	cr_assert_eq(ctl_exec(t, "verify\n", 7, &rep), 0);
	cr_assert_not_null(strstr(rep, "checked: 2\n"), "%s", rep);
	cr_assert_not_null(strstr(rep, "corrupt: 1\n"), "%s", rep);
	cr_assert_not_null(strstr(rep, "missing: 1\n"), "%s", rep);
	cr_assert_not_null(strstr(rep, name), "%s", rep);
	free(rep);
	cr_assert_eq(ctl_exec(t, "verify sample=50%\n", 18, &rep), 0);
	cr_assert_not_null(strstr(rep, "sample_percent: 50\n"), "%s", rep);
	free(rep);
	cr_assert_eq(ctl_exec(t, "verify sample=0%\n", 17, &rep), -EINVAL);
	cr_assert_eq(ctl_exec(t, "verify sample=5\n", 16, &rep), -EINVAL);
	cr_assert_eq(ctl_exec(t, "verify all\n", 11, &rep), -EINVAL);
}

struct late {
	uint64_t ns;
	int calls;
};

/*
 * After the cycle read the protected names, before it reads the rows: a
 * file is pinned and deleted (its object stays, with no row), another
 * node reports FRESH as in flight, and a move of STALE is journaled.
 */
static void protect_late(void *arg)
{
	struct late *l = arg;
	uint64_t objects = 0;
	struct meta *m;

	l->calls++;
	cr_assert_eq(tally_pin(t, "main/a", true, &objects), 0);
	cr_assert_eq(objects, 1);
	cr_assert_eq(tally_unlink(t, l->ns, "a"), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	other_node(1001, (int64_t)time(NULL), FRESH);
	m = tally_meta_lock(t);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_move_begin(m, 999, STALE, 0, 1), 0);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
}

Test(gc, protection_added_during_a_cycle_is_honoured)
{
	char a[BS], path[4200];
	struct late l = { 0 };
	struct gc_opts o = { .grace = 0,
			     .protected_hook = protect_late,
			     .hook_arg = &l };
	struct gc_report r;
	struct meta *m;

	l.ns = tu_mkns(t, "main");
	tu_fill(a, BS, 61);
	mkfile(l.ns, "a", a, BS, false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	plant(FRESH);
	plant(STALE);
	plant_leak();
	cr_assert_eq(gc_run(t, &o, &r), 0);
	cr_assert_eq(l.calls, 1);
	cr_assert_eq(r.checked, 4);
	cr_assert_eq(r.unreferenced, 4, "a's object has no row by then");
	cr_assert_eq(r.collected, 1, "the leak nothing protects");
	cr_assert_eq(r.preserved, 3);
	cr_assert_not(leak_exists());
	cr_assert(planted(FRESH), "reported by a node during the cycle");
	cr_assert(planted(STALE), "a move journaled during the cycle");
	cr_assert_eq(tu_count_objects(store), 3, "a's object, pinned");
	m = tally_meta_lock(t);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_move_end(m, 999), 0);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
	/* as the end of that move would (a copy left where no row says) */
	snprintf(path, sizeof(path), "%s/shards/0/%.2s/%s", store, STALE,
		 STALE);
	cr_assert_eq(unlink(path), 0);
	expect_clean();
}

static int find_shared(void *ctx, const struct meta_check *mc)
{
	int64_t *id = ctx;

	if (mc->truth == 2)
		*id = mc->id;
	return 0;
}

struct between {
	uint64_t ns;
	int calls;
};

/* Between two chunks of the drift check: references come and go. */
static void change_between_chunks(void *arg)
{
	struct between *b = arg;
	char buf[BS];
	uint64_t inodes;

	switch (++b->calls) {
	case 1: /* a reference to an object of a later chunk, a new object */
		tu_fill(buf, BS, 74);
		mkfile(b->ns, "n", buf, BS, false);
		tu_fill(buf, BS, 80);
		mkfile(b->ns, "m", buf, BS, false);
		break;
	case 2: /* an object loses its last reference */
		cr_assert_eq(tally_unlink(t, b->ns, "f5"), 0);
		break;
	case 3: /* every reference doubles */
		cr_assert_eq(tally_drain(t, NULL, 0), 0);
		cr_assert_eq(tally_branch(t, "main", "dev", &inodes), 0);
		break;
	}
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
}

Test(gc, drift_checked_in_chunks_reports_exactly)
{
	char buf[2 * BS], name[8];
	struct between b = { 0 };
	struct gc_opts o = { .grace = 0,
			     .chunk_hook = change_between_chunks,
			     .hook_arg = &b,
			     .check_batch = 2 };
	struct gc_report r;
	struct meta *m;
	int64_t shared = 0;
	uint64_t fixed = 0;
	int i;

	/* objects 1-6 (one a file), 7 (twice in file d) */
	b.ns = tu_mkns(t, "main");
	for (i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		tu_fill(buf, BS, 70 + (unsigned)i);
		mkfile(b.ns, name, buf, BS, false);
	}
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	tu_fill(buf, BS, 79);
	memcpy(buf + BS, buf, BS);
	mkfile(b.ns, "d", buf, 2 * BS, false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	/* an over-count in the first chunk, an under-count in a later one */
	m = tally_meta_lock(t);
	cr_assert_eq(meta_check_counts(m, find_shared, &shared), 0);
	cr_assert_eq(shared, 7);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_obj_set_count(m, 1, 7), 0);
	cr_assert_eq(meta_obj_set_count(m, 7, 1), 0);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
	cr_assert_eq(gc_run(t, &o, &r), 0);
	cr_assert_eq(b.calls, 3, "chunks [min,2] [3,4] [5,6|7] [7|8,max]");
	cr_assert_eq(r.drift_over, 1);
	cr_assert_eq(r.drift_under, 1);
	cr_assert_eq(r.unreferenced, 0);
	cr_assert_eq(r.collected, 0, "drift never deletes");
	/* repaired a chunk per transaction: both, in their two chunks */
	cr_assert_eq(gc_repair_batch(t, 2, &fixed), 0);
	cr_assert_eq(fixed, 2);
	/* the size of a chunk changes nothing but the holds */
	o.chunk_hook = NULL;
	o.check_batch = 0;
	cr_assert_eq(gc_run(t, &o, &r), 0);
	cr_assert_eq(r.drift_over + r.drift_under, 0);
	cr_assert_eq(r.collected, 0);
	expect_clean();
}
