/* SPDX-License-Identifier: MIT */
/*
 * The registry of running jobs (core/util/progress.c) on its own, then the
 * long jobs of a real store that report to it: drain, branch, gc and
 * verify are listed (and in the status document) while they run and
 * gone when they end. A job is held mid-way deterministically: drain and
 * branch by a stream hook that blocks the flushes, gc and verify by the
 * test holding the metadata lock they need.
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
#include <time.h>
#include <unistd.h>

#include "core/jobs/ctl.h"
#include "core/jobs/gc.h"
#include "core/util/progress.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096

/* ------------------------------------------------- the registry alone */

static struct progress *reg;

static void reg_setup(void)
{
	cr_assert_eq(progress_new(&reg), 0);
}

static void reg_teardown(void)
{
	progress_free(reg);
	reg = NULL;
}

TestSuite(progress, .init = reg_setup, .fini = reg_teardown, .timeout = 30);

static char *json(void)
{
	char *s = NULL;

	cr_assert_eq(progress_json(reg, &s), 0);
	return s;
}

Test(progress, empty_registry)
{
	struct progress_info *v = (void *)1;
	size_t n = 7;
	char *s = json();

	cr_assert_str_eq(s, "[]");
	free(s);
	cr_assert_eq(progress_list(reg, &v, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(v);
	cr_assert(progress_check(reg));
}

Test(progress, begin_update_end)
{
	struct progress_job *a, *b;
	struct progress_info *v;
	time_t before = time(NULL);
	char want[512], *s;
	size_t n;

	a = progress_begin(reg, "gc", "objects", 50);
	b = progress_begin(reg, "verify", "objects", 0);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	progress_add(a, 3);
	progress_add(a, 7);
	progress_set(b, 4);
	cr_assert_eq(progress_list(reg, &v, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(v[0].id, 1);
	cr_assert_str_eq(v[0].name, "gc");
	cr_assert_str_eq(v[0].unit, "objects");
	cr_assert_eq(v[0].done, 10);
	cr_assert_eq(v[0].total, 50);
	cr_assert_geq(v[0].started, (int64_t)before);
	cr_assert_leq(v[0].started, (int64_t)time(NULL));
	cr_assert_eq(v[1].id, 2);
	cr_assert_str_eq(v[1].name, "verify");
	cr_assert_eq(v[1].done, 4);
	cr_assert_eq(v[1].total, 0, "0: not known yet");
	s = json();
	snprintf(want, sizeof(want),
		 "[{\"id\": 1, \"name\": \"gc\", \"started\": %lld, "
		 "\"done\": 10, \"total\": 50, \"unit\": \"objects\"}, "
		 "{\"id\": 2, \"name\": \"verify\", \"started\": %lld, "
		 "\"done\": 4, \"total\": 0, \"unit\": \"objects\"}]",
		 (long long)v[0].started, (long long)v[1].started);
	cr_assert_str_eq(s, want);
	free(s);
	free(v);

	/* ending the older job keeps the other; ids are never reused */
	progress_end(a);
	cr_assert(progress_check(reg));
	a = progress_begin(reg, "drain", "flushes", 2);
	cr_assert_eq(progress_list(reg, &v, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(v[0].id, 2);
	cr_assert_eq(v[1].id, 3);
	cr_assert_str_eq(v[1].name, "drain");
	cr_assert_str_eq(v[1].unit, "flushes");
	free(v);
	progress_end(b);
	progress_end(a);
	cr_assert(progress_check(reg));
	s = json();
	cr_assert_str_eq(s, "[]");
	free(s);
}

Test(progress, total_is_raised_to_done)
{
	struct progress_job *j = progress_begin(reg, "gc", "objects", 5);
	struct progress_info *v;
	size_t n;

	progress_add(j, 8);
	cr_assert_eq(progress_list(reg, &v, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(v[0].done, 8);
	cr_assert_eq(v[0].total, 8, "an estimate too low shows as done");
	free(v);
	progress_set_total(j, 20);
	progress_set(j, 6);
	cr_assert_eq(progress_list(reg, &v, &n), 0);
	cr_assert_eq(v[0].done, 6);
	cr_assert_eq(v[0].total, 20);
	free(v);
	progress_end(j);
}

Test(progress, null_job_is_a_no_op)
{
	struct progress_job *j = progress_begin(NULL, "gc", "objects", 1);
	char *s;

	cr_assert_null(j);
	progress_set_total(j, 3);
	progress_add(j, 1);
	progress_set(j, 2);
	progress_end(j);
	s = json();
	cr_assert_str_eq(s, "[]");
	free(s);
}

#define THREADS 4
#define STEPS 20000

static void *adder(void *arg)
{
	struct progress_job *j = arg;
	int i;

	for (i = 0; i < STEPS; i++) {
		progress_add(j, 1);
		/* a reader of its own, racing the writers and the others */
		if (i % 1000 == 0) {
			struct progress_job *k =
				progress_begin(reg, "sweep", "ghosts", 1);
			char *s = NULL;

			if (progress_json(reg, &s) == 0)
				free(s);
			progress_end(k);
		}
	}
	return NULL;
}

Test(progress, concurrent_adds_and_readers)
{
	struct progress_job *j =
		progress_begin(reg, "gc", "objects", (uint64_t)THREADS * STEPS);
	pthread_t th[THREADS];
	struct progress_info *v;
	size_t n;
	int i;

	for (i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, adder, j), 0);
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	cr_assert(progress_check(reg));
	cr_assert_eq(progress_list(reg, &v, &n), 0);
	cr_assert_eq(n, 1, "only the gc job is left");
	cr_assert_eq(v[0].id, 1);
	cr_assert_eq(v[0].done, (uint64_t)THREADS * STEPS);
	cr_assert_eq(v[0].total, (uint64_t)THREADS * STEPS);
	free(v);
	progress_end(j);
	/* each begin took an id: 1 + THREADS * STEPS / 1000 of them */
	j = progress_begin(reg, "gc", "objects", 1);
	cr_assert_eq(progress_list(reg, &v, &n), 0);
	cr_assert_eq(v[0].id, 2 + (uint64_t)THREADS * (STEPS / 1000));
	free(v);
	progress_end(j);
}

/* -------------------------------------------- the jobs of a real store */

static char *dir;
static char store[4096];
static struct tally *t;
static const struct tally_ctx me = { 0, 0 };

/* The stream hook holds every flush while hold is set. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static bool hold;

static void hook(void *arg, uint64_t seq, uint64_t ino)
{
	(void)arg;
	(void)seq;
	(void)ino;
	pthread_mutex_lock(&hold_lock);
	while (hold)
		pthread_cond_wait(&hold_cond, &hold_lock);
	pthread_mutex_unlock(&hold_lock);
}

static void set_hold(bool on)
{
	pthread_mutex_lock(&hold_lock);
	hold = on;
	pthread_cond_broadcast(&hold_cond);
	pthread_mutex_unlock(&hold_lock);
}

static void store_setup(void)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.workers = 2,
		.stream_hook = hook,
	};

	set_hold(false);
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	cr_assert_eq(tally_open(store, &o, &t), 0);
}

static void store_teardown(void)
{
	set_hold(false);
	if (t)
		tally_close(t);
	t = NULL;
	tu_rmrf(dir);
	free(dir);
}

TestSuite(jobs, .init = store_setup, .fini = store_teardown, .timeout = 60);

/* A file of @len bytes of seed @seed; left open (and dirty) if @keep. */
static uint64_t mkfile(uint64_t parent, const char *name, size_t len,
		       unsigned seed, bool keep)
{
	char buf[2 * BS];
	struct stat st;

	cr_assert_leq(len, sizeof(buf));
	tu_fill(buf, len, seed);
	cr_assert_eq(tally_mknod(t, &me, parent, name, S_IFREG | 0644, 0, &st),
		     0);
	cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), 0);
	cr_assert_eq(tally_write(t, st.st_ino, buf, len, 0), (ssize_t)len);
	if (!keep)
		cr_assert_eq(tally_release(t, st.st_ino), 0);
	return st.st_ino;
}

/*
 * Poll the registry (10 s at most) until a job @name whose total is
 * @total (any, if negative) is listed; *out receives it.
 */
static bool wait_job(const char *name, long long total,
		     struct progress_info *out)
{
	int i;

	for (i = 0; i < 10000; i++) {
		struct progress_info *v;
		size_t n, k;

		cr_assert_eq(progress_list(tally_progress(t), &v, &n), 0);
		for (k = 0; k < n; k++) {
			if (strcmp(v[k].name, name) ||
			    (total >= 0 && v[k].total != (uint64_t)total))
				continue;
			*out = v[k];
			free(v);
			return true;
		}
		free(v);
		usleep(1000);
	}
	return false;
}

static size_t njobs(void)
{
	struct progress_info *v;
	size_t n;

	cr_assert_eq(progress_list(tally_progress(t), &v, &n), 0);
	free(v);
	return n;
}

struct call {
	pthread_t th;
	int rc;
	uint64_t n;
	struct gc_report gc;
	struct gc_verify verify;
};

static void *drain_fn(void *arg)
{
	struct call *c = arg;

	c->rc = tally_drain(t, &c->n, 0);
	return NULL;
}

static void *branch_fn(void *arg)
{
	struct call *c = arg;

	c->rc = tally_branch(t, "main", "dev", &c->n);
	return NULL;
}

static void *gc_fn(void *arg)
{
	struct call *c = arg;
	struct gc_opts o = { .dry_run = false, .grace = 0 };

	c->rc = gc_run(t, &o, &c->gc);
	return NULL;
}

static void *verify_fn(void *arg)
{
	struct call *c = arg;

	c->rc = gc_verify(t, 100, &c->verify);
	return NULL;
}

Test(jobs, drain_shows_the_flushes_it_waits_for)
{
	struct progress_info j;
	struct call c = { 0 };
	char *status = NULL, want[160];
	uint64_t ns = tu_mkns(t, "main"), ino[3];
	int i;

	set_hold(true);
	ino[0] = mkfile(ns, "a", BS, 1, true);
	ino[1] = mkfile(ns, "b", BS, 2, true);
	ino[2] = mkfile(ns, "c", 2 * BS, 3, true);
	cr_assert_eq(njobs(), 0);
	cr_assert_eq(pthread_create(&c.th, NULL, drain_fn, &c), 0);
	cr_assert(wait_job("drain", 3, &j), "no drain of 3 flushes listed");
	cr_assert_str_eq(j.unit, "flushes");
	cr_assert_eq(j.done, 0, "every flush is held");
	/* and in the status document */
	cr_assert_eq(ctl_status_json(t, &status), 0);
	snprintf(want, sizeof(want),
		 "\"jobs\": [{\"id\": %llu, \"name\": \"drain\", "
		 "\"started\": %lld, \"done\": 0, \"total\": 3, "
		 "\"unit\": \"flushes\"}]}\n",
		 (unsigned long long)j.id, (long long)j.started);
	cr_assert_not_null(strstr(status, want), "status: %s", status);
	free(status);
	set_hold(false);
	pthread_join(c.th, NULL);
	cr_assert_eq(c.rc, 0);
	cr_assert_eq(c.n, 3);
	cr_assert_eq(njobs(), 0, "the drain is gone once done");
	cr_assert_eq(ctl_status_json(t, &status), 0);
	cr_assert_not_null(strstr(status, "\"jobs\": []}\n"), "status: %s",
			   status);
	free(status);
	for (i = 0; i < 3; i++)
		cr_assert_eq(tally_release(t, ino[i]), 0);
}

Test(jobs, branch_is_listed_while_it_runs)
{
	struct progress_info br, dr;
	struct call c = { 0 };
	uint64_t ns = tu_mkns(t, "main"), ino;

	mkfile(ns, "a", BS, 1, false);
	mkfile(ns, "b", BS, 2, false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	/* a file still being written: branch drains it first, held */
	set_hold(true);
	ino = mkfile(ns, "c", BS, 3, true);
	cr_assert_eq(pthread_create(&c.th, NULL, branch_fn, &c), 0);
	cr_assert(wait_job("drain", 1, &dr), "no drain listed");
	cr_assert(wait_job("branch", -1, &br), "no branch listed");
	cr_assert_str_eq(br.unit, "inodes");
	cr_assert_eq(br.total, 0, "not known before the copy");
	cr_assert_lt(br.id, dr.id, "branch started first, then its drain");
	set_hold(false);
	pthread_join(c.th, NULL);
	cr_assert_eq(c.rc, 0);
	cr_assert_eq(c.n, 0, "a branch in O(1) copies no inode");
	cr_assert_eq(njobs(), 0);
	cr_assert_eq(tally_release(t, ino), 0);
}

Test(jobs, gc_and_verify_are_listed_while_they_run)
{
	struct progress_info j;
	struct call c = { 0 };
	struct meta *m;
	uint64_t ns = tu_mkns(t, "main");

	mkfile(ns, "a", 2 * BS, 1, false);
	mkfile(ns, "b", BS, 2, false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);

	/* gc registers before it needs the lock the test holds */
	m = tally_meta_lock(t);
	cr_assert_not_null(m);
	cr_assert_eq(pthread_create(&c.th, NULL, gc_fn, &c), 0);
	cr_assert(wait_job("gc", -1, &j), "no gc listed");
	cr_assert_str_eq(j.unit, "objects");
	cr_assert_eq(j.done, 0);
	tally_meta_unlock(t);
	pthread_join(c.th, NULL);
	cr_assert_eq(c.rc, 0);
	cr_assert_eq(c.gc.checked, 3);
	cr_assert_eq(njobs(), 0);

	m = tally_meta_lock(t);
	cr_assert_eq(pthread_create(&c.th, NULL, verify_fn, &c), 0);
	cr_assert(wait_job("verify", -1, &j), "no verify listed");
	cr_assert_str_eq(j.unit, "objects");
	cr_assert_eq(j.done, 0);
	cr_assert_eq(j.total, 0, "not counted before the lock");
	tally_meta_unlock(t);
	pthread_join(c.th, NULL);
	cr_assert_eq(c.rc, 0);
	cr_assert_eq(c.verify.checked, 3);
	cr_assert_eq(c.verify.ok, 3);
	cr_assert_eq(njobs(), 0);
}
