/* SPDX-License-Identifier: MIT */
/*
 * The flush pipeline (core/fs/tally.c, FLUSH PIPELINE): ordering under
 * out-of-order stream completion, back-pressure, error propagation with
 * fault injection, drain with a timeout. A real store, real objects; the
 * stream phase is slowed down through the test hook of struct tally_opts.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/jobs/ctl.h"
#include "core/jobs/fsck.h"
#include "core/util/pool.h"
#include "core/objects/store.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096

static char *dir;
static char store[4096];
static struct tally *t;

/* what the stream hook does */
static _Atomic int slow_first_ms;  /* the first stream sleeps this long */
static _Atomic int jitter_ms;	   /* every stream sleeps up to this */
static _Atomic int streams;	   /* streams started */
static _Atomic uint64_t max_dirty; /* highest dirty_bytes seen */
static _Atomic uint64_t max_pending;
static _Atomic bool disk_full; /* every stream's first object write fails */
static _Atomic unsigned full_after; /* ... the first stream's after this many */

static void hook(void *arg, uint64_t seq, uint64_t ino)
{
	struct tally_stats st;
	int n = atomic_fetch_add(&streams, 1);

	(void)arg;
	(void)ino;
	if (t && tally_stats(t, &st) == 0) {
		if (st.dirty_bytes > atomic_load(&max_dirty))
			atomic_store(&max_dirty, st.dirty_bytes);
		if (st.pending_flushes > atomic_load(&max_pending))
			atomic_store(&max_pending, st.pending_flushes);
	}
	if (atomic_load(&disk_full) && t)
		tally_inject(t, false, atomic_exchange(&full_after, 0) + 1,
			     -ENOSPC);
	if (n == 0 && atomic_load(&slow_first_ms))
		usleep((useconds_t)atomic_load(&slow_first_ms) * 1000);
	if (atomic_load(&jitter_ms))
		usleep((useconds_t)((seq * 7919) %
				    (uint64_t)atomic_load(&jitter_ms)) *
		       1000);
}

static void open_with(unsigned workers, uint64_t dirty_limit, unsigned pending,
		      size_t rotate)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.workers = workers,
		.dirty_limit = dirty_limit,
		.max_pending = pending,
		.inode_dirty_max = rotate,
		.stream_hook = hook,
	};

	cr_assert_eq(tally_open(store, &o, &t), 0);
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	atomic_store(&slow_first_ms, 0);
	atomic_store(&jitter_ms, 0);
	atomic_store(&streams, 0);
	atomic_store(&max_dirty, 0);
	atomic_store(&max_pending, 0);
	atomic_store(&disk_full, false);
	atomic_store(&full_after, 0);
}

static void teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(flush, .init = setup, .fini = teardown, .timeout = 60);

static void expect_block(uint64_t ino, uint64_t idx, const char *want)
{
	char buf[BS];

	cr_assert_eq(tally_read(t, ino, buf, BS, (off_t)(idx * BS)), BS);
	cr_assert_eq(memcmp(buf, want, BS), 0, "block %llu differs",
		     (unsigned long long)idx);
}

static void expect_clean_store(void)
{
	tally_close(t);
	t = NULL;
	tu_fsck_clean(store, NULL);
}

/* File @ino from 0 to @size: @want, as a read sees it now. */
static void expect_bytes(uint64_t ino, const char *want, size_t size)
{
	char buf[BS + 1];

	cr_assert_eq(tally_read(t, ino, buf, sizeof(buf), 0), (ssize_t)size);
	cr_assert_eq(memcmp(buf, want, size), 0);
}

static void set_size(uint64_t ino, off_t size)
{
	struct stat in = { .st_size = size }, out;

	cr_assert_eq(tally_setattr(t, ino, &in, TALLY_SET_SIZE, &out), 0);
}

/*
 * A fresh dirty buffer is not cleared whole (core/fs/dirty.c, d->end):
 * a buffer used before (full of 0xAA here) reads as zeros wherever
 * nothing was written, through the buffer, through a flush in flight,
 * after a shrink and an extension, and once committed.
 */
Test(flush, unwritten_bytes_of_a_reused_buffer_read_as_zero)
{
	char junk[BS], want[BS];
	uint64_t ns, a, b;

	open_with(2, 0, 0, 0);
	memset(junk, 0xAA, sizeof(junk));
	ns = tu_mkns(t, "main");
	a = tu_newfile(t, ns, "a");
	cr_assert_eq(tally_write(t, a, junk, BS, 0), BS);
	cr_assert_eq(tally_fsync(t, a, false), 0); /* its buffer is free */
	b = tu_newfile(t, ns, "b");
	memset(want, 0, sizeof(want));
	cr_assert_eq(tally_write(t, b, "hello", 5, 0), 5);
	cr_assert_eq(tally_write(t, b, "world", 5, 3000), 5);
	memcpy(want, "hello", 5);
	memcpy(want + 3000, "world", 5);
	expect_bytes(b, want, 3005);
	/* a shrink into the written bytes, then an extension */
	set_size(b, 2);
	set_size(b, 4000);
	memset(want + 2, 0, sizeof(want) - 2);
	expect_bytes(b, want, 4000);
	cr_assert_eq(tally_write(t, b, "!", 1, 3500), 1);
	want[3500] = '!';
	expect_bytes(b, want, 4000);
	/* in flight: the stream sleeps; read, and extend past the flushed
	 * size while it does */
	atomic_store(&slow_first_ms, 300);
	atomic_store(&streams, 0);
	cr_assert_eq(tally_release(t, b), 0);
	cr_assert_eq(tally_open_file(t, b, O_RDWR), 0);
	expect_bytes(b, want, 4000);
	set_size(b, BS);
	expect_bytes(b, want, BS);
	cr_assert_eq(tally_fsync(t, b, false), 0);
	expect_bytes(b, want, BS);
	cr_assert_eq(tally_release(t, b), 0);
	cr_assert_eq(tally_release(t, a), 0);
	tally_close(t);
	t = NULL;
	open_with(2, 0, 0, 0);
	cr_assert_eq(tally_open_file(t, b, O_RDONLY), 0);
	expect_bytes(b, want, BS);
	cr_assert_eq(tally_release(t, b), 0);
	expect_clean_store();
}

Test(flush, out_of_order_completion_commits_in_sequence)
{
	char a[BS], b[BS];
	struct tally_stats st;
	uint64_t ns, ino;

	open_with(2, 0, 0, BS);
	atomic_store(&slow_first_ms, 1500); /* a window no load closes */
	ns = tu_mkns(t, "main");
	ino = tu_newfile(t, ns, "f");
	memset(a, 'A', BS);
	memset(b, 'B', BS);
	/* flush 1 (slow) holds A, flush 2 (fast) holds B: 2 ends first */
	cr_assert_eq(tally_write(t, ino, a, BS, 0), BS);
	cr_assert_eq(tally_flush(t, ino), 0);
	cr_assert_eq(tally_write(t, ino, b, BS, 0), BS);
	cr_assert_eq(tally_flush(t, ino), 0);
	/* the newest data is read while both are in flight */
	expect_block(ino, 0, b);
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_eq(st.pending_flushes, 2);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_eq(st.pending_flushes, 0);
	cr_assert_eq(st.durable_seq, st.rotated_seq);
	cr_assert_eq(st.objects, 1, "A was replaced by B, and deleted");
	expect_block(ino, 0, b);
	cr_assert_eq(tally_release(t, ino), 0);
	expect_clean_store();
	open_with(2, 0, 0, BS);
	expect_block(ino, 0, b);
}

/* The times the kernel sends after a close (tar: write, close,
 * utimensat) ride on the close's flush while it is in flight: no flush
 * of their own, and committed with the data (core/fs/inode.c). */
Test(flush, times_after_close_ride_the_flush_in_flight)
{
	char a[BS];
	struct tally_stats before, after;
	struct stat in, st;
	uint64_t ns, ino;

	open_with(2, 0, 0, BS);
	atomic_store(&slow_first_ms, 1500); /* the close's flush in flight */
	ns = tu_mkns(t, "main");
	ino = tu_newfile(t, ns, "f");
	memset(a, 'A', BS);
	cr_assert_eq(tally_write(t, ino, a, BS, 0), BS);
	cr_assert_eq(tally_flush(t, ino), 0);
	cr_assert_eq(tally_stats(t, &before), 0);
	cr_assert_eq(before.pending_flushes, 1);
	memset(&in, 0, sizeof(in));
	in.st_atim.tv_sec = 1500000000;
	in.st_atim.tv_nsec = 11;
	in.st_mtim.tv_sec = 1600000000;
	in.st_mtim.tv_nsec = 22;
	cr_assert_eq(tally_setattr(t, ino, &in,
				   TALLY_SET_ATIME | TALLY_SET_MTIME, &st),
		     0);
	cr_assert_eq(tally_stats(t, &after), 0);
	cr_assert_eq(after.rotated_seq, before.rotated_seq,
		     "the times started a flush of their own");
	cr_assert_eq(tally_release(t, ino), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	expect_clean_store();
	open_with(2, 0, 0, BS);
	cr_assert_eq(tally_getattr(t, ino, &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 1600000000);
	cr_assert_eq(st.st_mtim.tv_nsec, 22);
	cr_assert_eq(st.st_atim.tv_sec, 1500000000);
	cr_assert_eq(st.st_size, BS);
	expect_block(ino, 0, a);
}

Test(flush, many_files_jittered_streams)
{
	static char data[16][3 * BS];
	uint64_t ns, ino[16];
	struct tally_stats st;
	char name[16];
	int i;

	open_with(4, 0, 4, BS);
	atomic_store(&jitter_ms, 25);
	ns = tu_mkns(t, "main");
	for (i = 0; i < 16; i++) {
		tu_fill(data[i], sizeof(data[i]), (unsigned)i + 100);
		snprintf(name, sizeof(name), "f%d", i);
		ino[i] = tu_newfile(t, ns, name);
		cr_assert_eq(tally_write(t, ino[i], data[i], sizeof(data[i]),
					 0),
			     (ssize_t)sizeof(data[i]));
		cr_assert_eq(tally_release(t, ino[i]), 0);
	}
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_eq(st.objects, 16 * 3);
	cr_assert_leq(atomic_load(&max_pending), 4, "max_pending_flushes");
	for (i = 0; i < 16; i++) {
		char buf[3 * BS];

		cr_assert_eq(tally_read(t, ino[i], buf, sizeof(buf), 0),
			     (ssize_t)sizeof(buf));
		cr_assert_eq(memcmp(buf, data[i], sizeof(buf)), 0, "file %d",
			     i);
	}
	expect_clean_store();
}

Test(flush, back_pressure_bounds_dirty_memory)
{
	char buf[BS];
	uint64_t ns, ino;
	int i;

	/* 4 blocks of dirty memory at most; each block its own flush */
	open_with(2, 4 * BS, 2, BS);
	atomic_store(&jitter_ms, 10);
	ns = tu_mkns(t, "main");
	ino = tu_newfile(t, ns, "f");
	for (i = 0; i < 64; i++) {
		tu_fill(buf, BS, (unsigned)i);
		cr_assert_eq(tally_write(t, ino, buf, BS, (off_t)i * BS), BS);
	}
	cr_assert_eq(tally_release(t, ino), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_leq(atomic_load(&max_dirty), 4 * BS + BS,
		      "dirty memory %llu over the limit",
		      (unsigned long long)atomic_load(&max_dirty));
	cr_assert_leq(atomic_load(&max_pending), 2);
	{
		struct stat st;

		/* 64 flushes of one file: the allocation adds up */
		cr_assert_eq(tally_getattr(t, ino, &st), 0);
		cr_assert_eq(st.st_blocks, 64 * BS / 512);
	}
	for (i = 0; i < 64; i++) {
		char want[BS];

		tu_fill(want, BS, (unsigned)i);
		expect_block(ino, (uint64_t)i, want);
	}
	expect_clean_store();
}

/* One worker; files "a" and "b" in namespace "main", open, with @a and
 * @b (one block each) filled from @seed and @seed + 1 but not written. */
static void open_two_files(uint64_t *fa, uint64_t *fb, char *a, char *b,
			   unsigned seed)
{
	uint64_t ns;

	open_with(1, 0, 0, BS);
	ns = tu_mkns(t, "main");
	*fa = tu_newfile(t, ns, "a");
	*fb = tu_newfile(t, ns, "b");
	tu_fill(a, BS, seed);
	tu_fill(b, BS, seed + 1);
}

/* Release a and b, check the store, open it again: a and b read back. */
static void reopen_two_files(uint64_t fa, uint64_t fb, const char *a,
			     const char *b)
{
	cr_assert_eq(tally_release(t, fa), 0);
	cr_assert_eq(tally_release(t, fb), 0);
	expect_clean_store();
	open_with(1, 0, 0, BS);
	expect_block(fa, 0, a);
	expect_block(fb, 0, b);
}

Test(flush, failed_stream_keeps_data_and_reports_once)
{
	char a[BS], b[BS];
	struct tally_stats st;
	uint64_t fa, fb;
	int frc, first;

	open_two_files(&fa, &fb, a, b, 1);
	tally_inject(t, false, 1, -ENOSPC);
	cr_assert_eq(tally_write(t, fa, a, BS, 0), BS);
	/* the write filled a block, which started the flush: a close that
	 * comes after its failure reports it (a flush started before the
	 * close), one that comes first does not */
	first = tally_flush(t, fa);
	cr_assert(first == 0 || first == -ENOSPC, "close: %d", first);
	/* a drain that began after the failure sends the kept data again,
	 * and it goes (the fault fires once); one that began before it
	 * reports it, the data kept */
	frc = tally_drain(t, NULL, 0);
	cr_assert(frc == -ENOSPC || frc == 0, "drain: %d", frc);
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_eq(st.commit_errors, 1);
	if (frc) {
		cr_assert_eq(st.objects, 0, "a is not committed");
		cr_assert_eq(st.dirty_bytes, BS, "a's block is kept");
	}
	expect_block(fa, 0, a);
	/* the pipeline goes on; a drain tries the failed data again */
	cr_assert_eq(tally_write(t, fb, b, BS, 0), BS);
	cr_assert_eq(tally_flush(t, fb), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_eq(st.objects, 2);
	cr_assert_eq(st.dirty_bytes, 0);
	expect_block(fa, 0, a);
	expect_block(fb, 0, b);
	/* the next fsync of a reports the failure, once (if that close
	 * did not) */
	frc = tally_fsync(t, fa, false);
	cr_assert_eq(frc, first ? 0 : -ENOSPC, "fsync: %d", frc);
	cr_assert_eq(tally_fsync(t, fa, false), 0);
	cr_assert_eq(tally_fsync(t, fb, false), 0);
	reopen_two_files(fa, fb, a, b);
}

Test(flush, failed_sync_reaches_close)
{
	char a[BS];
	uint64_t ns, fa;
	int first, frc;

	open_with(1, 0, 0, BS);
	ns = tu_mkns(t, "main");
	fa = tu_newfile(t, ns, "a");
	tu_fill(a, BS, 3);
	tally_inject(t, true, 1, -EIO);
	cr_assert_eq(tally_write(t, fa, a, BS, 0), BS);
	/* the write filled a block and started the flush: a close does
	 * not wait for it, and reports its failure only if it came first */
	first = tally_flush(t, fa);
	cr_assert(first == 0 || first == -EIO, "close: %d", first);
	/* a drain that began before the failure reports it; one that
	 * began after it sends the kept data again, and it goes (the
	 * fault fires once) */
	frc = tally_drain(t, NULL, 0);
	cr_assert(frc == -EIO || frc == 0, "drain: %d", frc);
	cr_assert_eq(tally_flush(t, fa), first ? 0 : -EIO,
		     "the next close reports it, once");
	cr_assert_eq(tally_flush(t, fa), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	expect_block(fa, 0, a);
	cr_assert_eq(tally_release(t, fa), 0);
	expect_clean_store();
}

Test(flush, drain_fails_while_data_is_uncommitted)
{
	struct tally_drain_report dr;
	char a[BS], b[BS], *report = NULL;
	uint64_t fa, fb;
	int rc, rc2;

	open_two_files(&fa, &fb, a, b, 21);
	/* a in flight, b only buffered; the first object write fails: a's,
	 * whose stream waits 200 ms, so that the drain finds it still in
	 * flight (one that failed already would be sent again by the drain,
	 * and pass) */
	atomic_store(&slow_first_ms, 200);
	tally_inject(t, false, 1, -ENOSPC);
	cr_assert_eq(tally_write(t, fa, a, BS, 0), BS);
	cr_assert_eq(tally_flush(t, fa), 0);
	cr_assert_eq(tally_write(t, fb, b, BS, 0), BS);
	rc = tally_drain_report(t, 0, &dr);
	cr_assert_eq(rc, -ENOSPC, "drain: %d", rc);
	cr_assert_eq(dr.files, 1);
	cr_assert_eq(dr.blocks, 1);
	cr_assert_geq(dr.flushed, 2);
	/* through the control file: the error, and what is pending; the
	 * retry fails again (its sync this time) */
	tally_inject(t, true, 1, -EIO);
	cr_assert_eq(ctl_exec(t, "drain\n", 6, &report), -EIO);
	cr_assert_not_null(report);
	cr_assert_not_null(strstr(report, "error: Input/output error\n"), "%s",
			   report);
	cr_assert_not_null(strstr(report, "uncommitted_files: 1\n"
					  "uncommitted_blocks: 1\n"),
			   "%s", report);
	free(report);
	/* nothing fails any more: drained, nothing pending */
	cr_assert_eq(ctl_exec(t, "drain\n", 6, &report), 0);
	cr_assert_not_null(strstr(report, "uncommitted_files: 0\n"
					  "uncommitted_blocks: 0\n"),
			   "%s", report);
	cr_assert_null(strstr(report, "error:"), "%s", report);
	free(report);
	/* the failed file's next fsync reports it */
	rc = tally_fsync(t, fa, false);
	rc2 = tally_fsync(t, fb, false);
	cr_assert((rc == -EIO && rc2 == 0) || (rc == 0 && rc2 == -EIO),
		  "fsync: %d, %d", rc, rc2);
	reopen_two_files(fa, fb, a, b);
}

Test(flush, drain_times_out)
{
	char a[BS], *report = NULL;
	uint64_t ns, fa;

	open_with(2, 0, 0, BS);
	atomic_store(&slow_first_ms, 1500);
	ns = tu_mkns(t, "main");
	fa = tu_newfile(t, ns, "a");
	memset(a, 'x', BS);
	cr_assert_eq(tally_write(t, fa, a, BS, 0), BS);
	cr_assert_eq(tally_flush(t, fa), 0);
	cr_assert_eq(tally_drain(t, NULL, 0.1), -ETIMEDOUT);
	cr_assert_eq(ctl_exec(t, "drain 0.1\n", 10, &report), -ETIMEDOUT);
	cr_assert_not_null(report);
	cr_assert_not_null(strstr(report, "error: Connection timed out\n"),
			   "%s", report);
	cr_assert_not_null(strstr(report, "pending_flushes: 1\n"), "%s",
			   report);
	free(report);
	cr_assert_eq(ctl_exec(t, "drain\n", 6, &report), 0);
	cr_assert_not_null(report);
	cr_assert_not_null(strstr(report, "pending_flushes: 0\n"), "%s",
			   report);
	free(report);
	cr_assert_eq(tally_release(t, fa), 0);
}

Test(flush, one_worker_runs_control_commands_and_streams)
{
	char a[BS], *report = NULL;
	uint64_t ns, fa;

	/* a drain job waits for stream jobs queued behind it */
	open_with(1, 0, 0, BS);
	atomic_store(&jitter_ms, 20);
	ns = tu_mkns(t, "main");
	fa = tu_newfile(t, ns, "a");
	memset(a, 'y', BS);
	cr_assert_eq(tally_write(t, fa, a, BS, 0), BS);
	cr_assert_eq(tally_flush(t, fa), 0);
	cr_assert_eq(ctl_exec(t, "drain\n", 6, &report), 0);
	cr_assert_not_null(strstr(report, "flushed: "), "%s", report);
	free(report);
	cr_assert_eq(tally_release(t, fa), 0);
}

/* A control job that holds its thread until released (or 10 s pass). */
static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ctl_cond = PTHREAD_COND_INITIALIZER;
static bool ctl_started, ctl_released, ctl_timed_out;

static void long_control_job(void *arg)
{
	struct timespec until;

	(void)arg;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&ctl_lock);
	ctl_started = true;
	pthread_cond_broadcast(&ctl_cond);
	while (!ctl_released && !ctl_timed_out)
		ctl_timed_out = pthread_cond_timedwait(&ctl_cond, &ctl_lock,
						       &until) != 0;
	pthread_mutex_unlock(&ctl_lock);
}

Test(flush, one_worker_flushes_while_a_control_job_runs)
{
	char a[BS], b[BS], *status;
	struct pool_stats ps;
	uint64_t ns, fa, fb;
	bool timed_out;

	/* one worker, one permit: a close's flush queued behind a GC-like
	 * job would hold the permit that the fsync below needs */
	open_with(1, 0, 1, BS);
	ns = tu_mkns(t, "main");
	fa = tu_newfile(t, ns, "a");
	fb = tu_newfile(t, ns, "b");
	cr_assert_eq(pool_submit(tally_pool(t), POOL_CONTROL, long_control_job,
				 NULL),
		     0);
	pthread_mutex_lock(&ctl_lock);
	while (!ctl_started)
		pthread_cond_wait(&ctl_cond, &ctl_lock);
	pthread_mutex_unlock(&ctl_lock);
	tu_fill(a, BS, 11);
	tu_fill(b, BS, 12);
	cr_assert_eq(tally_write(t, fa, a, BS, 0), BS);
	cr_assert_eq(tally_flush(t, fa), 0, "a close does not wait");
	cr_assert_eq(tally_write(t, fb, b, BS, 0), BS);
	cr_assert_eq(tally_fsync(t, fb, false), 0);
	/* the close's flush committed too, with no waiter helping */
	cr_assert_eq(tally_drain(t, NULL, 5), 0);
	pool_stats(tally_pool(t), &ps);
	cr_assert_eq(ps.workers, 1);
	cr_assert_eq(ps.cls[POOL_CONTROL].workers, 1);
	cr_assert_eq(ps.cls[POOL_CONTROL].running, 1, "the job still runs");
	cr_assert_eq(ctl_status_json(t, &status), 0);
	cr_assert_not_null(strstr(status, "\"control_jobs_running\": 1,"), "%s",
			   status);
	free(status);
	pthread_mutex_lock(&ctl_lock);
	timed_out = ctl_timed_out;
	ctl_released = true;
	pthread_cond_broadcast(&ctl_cond);
	pthread_mutex_unlock(&ctl_lock);
	cr_assert(!timed_out, "the flushes waited for the control job");
	reopen_two_files(fa, fb, a, b);
}

Test(flush, parked_older_data_never_overwrites_newer)
{
	char a[BS], b[BS];
	uint64_t ns, f;

	/* one worker, the first stream slow: flushes 1 (A) and 2 (B) of the
	 * same block are in flight together, and 1 fails */
	open_with(1, 0, 0, BS);
	atomic_store(&slow_first_ms, 300);
	ns = tu_mkns(t, "main");
	f = tu_newfile(t, ns, "f");
	memset(a, 'A', BS);
	memset(b, 'B', BS);
	tally_inject(t, false, 1, -EIO);
	cr_assert_eq(tally_write(t, f, a, BS, 0), BS);
	cr_assert_eq(tally_write(t, f, b, BS, 0), BS);
	/* a deadline: this waiter runs no stream itself, order is kept;
	 * neither flush committed */
	cr_assert_eq(tally_drain(t, NULL, 10), -EIO);
	/* 2 must not commit while 1 is parked: its retry would bring the
	 * old bytes back over the new ones */
	expect_block(f, 0, b);
	cr_assert_eq(tally_fsync(t, f, false), -EIO, "the failure of 1");
	cr_assert_eq(tally_fsync(t, f, false), 0);
	expect_block(f, 0, b);
	cr_assert_eq(tally_release(t, f), 0);
	expect_clean_store();
	open_with(1, 0, 0, BS);
	expect_block(f, 0, b);
}

Test(flush, failed_shrink_is_not_forgotten_by_an_extend)
{
	char x[3 * BS], y[BS], zero[BS];
	struct stat in, st;
	uint64_t ns, f;
	int frc;

	open_with(1, 0, 0, BS);
	ns = tu_mkns(t, "main");
	f = tu_newfile(t, ns, "f");
	memset(x, 'X', sizeof(x));
	memset(y, 'Y', BS);
	memset(zero, 0, BS);
	cr_assert_eq(tally_write(t, f, x, sizeof(x), 0), (ssize_t)sizeof(x));
	cr_assert_eq(tally_fsync(t, f, false), 0);
	/* the shrink's flush (block 0 cut at 100) fails */
	tally_inject(t, false, 1, -ENOSPC);
	memset(&in, 0, sizeof(in));
	in.st_size = 100;
	cr_assert_eq(tally_setattr(t, f, &in, TALLY_SET_SIZE, &st), -ENOSPC);
	/* then the file grows again past the old blocks */
	cr_assert_eq(tally_write(t, f, y, BS, 2 * BS), BS);
	frc = tally_fsync(t, f, false);
	cr_assert(frc == 0 || frc == -ENOSPC, "fsync: %d", frc);
	cr_assert_eq(tally_fsync(t, f, false), 0);
	expect_block(f, 1, zero);
	expect_block(f, 2, y);
	cr_assert_eq(tally_release(t, f), 0);
	expect_clean_store();
	open_with(1, 0, 0, BS);
	expect_block(f, 1, zero);
	expect_block(f, 2, y);
}

Test(flush, short_copy_does_not_share_a_longer_block)
{
	char s[BS], zero[BS], buf[BS];
	struct stat in, st;
	uint64_t ns, a, b;

	open_with(1, 0, 0, BS);
	ns = tu_mkns(t, "main");
	a = tu_newfile(t, ns, "a");
	b = tu_newfile(t, ns, "b");
	memset(s, 'S', BS);
	memset(zero, 0, BS);
	cr_assert_eq(tally_write(t, a, s, BS, 0), BS);
	cr_assert_eq(tally_copy_range(t, a, 0, b, 0, 100), 100);
	memset(&in, 0, sizeof(in));
	in.st_size = BS;
	cr_assert_eq(tally_setattr(t, b, &in, TALLY_SET_SIZE, &st), 0);
	cr_assert_eq(tally_read(t, b, buf, BS, 0), BS);
	cr_assert_eq(memcmp(buf, s, 100), 0);
	cr_assert_eq(memcmp(buf + 100, zero, BS - 100), 0,
		     "bytes past the copy must read as zero");
	cr_assert_eq(tally_release(t, a), 0);
	cr_assert_eq(tally_release(t, b), 0);
}

/* A mount that stopped writing gives its pooled block buffers back (the
 * flusher's tick, once a second, after an idle one), and the stats
 * count the inodes held in memory. */
Test(flush, an_idle_mount_gives_its_buffers_back)
{
	static char data[3 * BS];
	struct tally_stats st;
	uint64_t ns, ino;
	int i;

	open_with(2, 0, 4, BS);
	ns = tu_mkns(t, "main");
	ino = tu_newfile(t, ns, "f");
	tu_fill(data, sizeof(data), 7);
	cr_assert_eq(tally_write(t, ino, data, sizeof(data), 0),
		     (ssize_t)sizeof(data));
	/* the open file is one of the inodes in memory */
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_geq(st.inodes_cached, 1);
	cr_assert_eq(tally_release(t, ino), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	for (i = 0; i < 100; i++) {
		cr_assert_eq(tally_stats(t, &st), 0);
		if (st.buffer_pool_bytes == 0)
			break;
		usleep(100 * 1000);
	}
	cr_assert_eq(st.buffer_pool_bytes, 0,
		     "%llu bytes of buffers still pooled after 10 s idle",
		     (unsigned long long)st.buffer_pool_bytes);
	/* and writing again takes fresh buffers */
	cr_assert_eq(tally_write(t, ino, data, sizeof(data), 0),
		     (ssize_t)sizeof(data));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	expect_block(ino, 2, data + 2 * BS);
	expect_clean_store();
}

/* A random writer meets the end of its previous write now and then (fio
 * fills the gaps of its map in order): that starts no flush, which would
 * take every block it dirtied and make each next write read its block
 * back. A sequential run of a flush's worth does. */
Test(flush, only_a_sequential_run_starts_a_flush)
{
	char buf[BS];
	uint64_t ns, ino;
	int i, k;

	open_with(1, 0, 0, 4 * BS);
	ns = tu_mkns(t, "main");
	ino = tu_newfile(t, ns, "f");
	/* pairs of adjacent blocks, 16 blocks dirty in all */
	for (i = 0; i < 8; i++)
		for (k = 0; k < 2; k++) {
			tu_fill(buf, BS, (unsigned)(5 * i + k));
			cr_assert_eq(tally_write(t, ino, buf, BS,
						 (off_t)(5 * i + k) * BS),
				     BS);
		}
	cr_assert_eq(atomic_load(&streams), 0,
		     "short runs started %d flush(es)", atomic_load(&streams));
	/* four blocks in a row: a flush goes */
	for (i = 40; i < 44; i++) {
		tu_fill(buf, BS, (unsigned)i);
		cr_assert_eq(tally_write(t, ino, buf, BS, (off_t)i * BS), BS);
	}
	for (k = 0; k < 500 && atomic_load(&streams) == 0; k++)
		usleep(10000);
	cr_assert_gt(atomic_load(&streams), 0, "the run started no flush");
	cr_assert_eq(tally_release(t, ino), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	for (i = 0; i < 44; i++) {
		char want[BS];

		if (i < 40 && (i % 5 > 1))
			memset(want, 0, BS);
		else
			tu_fill(want, BS, (unsigned)i);
		expect_block(ino, (uint64_t)i, want);
	}
	expect_clean_store();
}

/*
 * The disk stays full (every object write fails with ENOSPC) while the
 * parked data is at dirty_limit: a writer that would wait for it to go
 * gets ENOSPC within a few retries of the parked flushes. Before, each
 * retry that failed again woke it as if data had gone, and it waited for
 * as long as the disk stayed full (through FUSE: unkillable). Once room
 * is made, the parked data commits whole.
 */
Test(flush, a_writer_above_the_limit_on_a_full_disk_gets_enospc)
{
	char a[BS], b[BS], c[BS];
	uint64_t ns, fa, fb, fc;

	open_with(1, 2 * BS, 0, BS);
	ns = tu_mkns(t, "main");
	fa = tu_newfile(t, ns, "a");
	fb = tu_newfile(t, ns, "b");
	fc = tu_newfile(t, ns, "c");
	tu_fill(a, BS, 1);
	tu_fill(b, BS, 2);
	tu_fill(c, BS, 3);
	atomic_store(&disk_full, true);
	/* each a sequential run of a flush's worth: sent, and parked */
	cr_assert_eq(tally_write(t, fa, a, BS, 0), BS);
	cr_assert_eq(tally_write(t, fb, b, BS, 0), BS);
	cr_assert_eq(tally_write(t, fc, c, BS, 0), -ENOSPC);
	cr_assert_eq(tally_fsync(t, fa, false), -ENOSPC);
	atomic_store(&disk_full, false);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	expect_block(fa, 0, a);
	expect_block(fb, 0, b);
	cr_assert_eq(tally_write(t, fc, c, BS, 0), BS);
	cr_assert_eq(tally_release(t, fa), 0);
	cr_assert_eq(tally_release(t, fb), 0);
	cr_assert_eq(tally_release(t, fc), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	expect_block(fc, 0, c);
	expect_clean_store();
}

Test(flush, a_flush_on_a_full_disk_commits_what_it_wrote)
{
	char d[4 * BS], buf[BS];
	struct tally_stats st;
	struct stat sb;
	uint64_t ns, ino;
	unsigned k;

	open_with(1, 0, 0, 64 * BS);
	ns = tu_mkns(t, "main");
	ino = tu_newfile(t, ns, "f");
	for (k = 0; k < 4; k++)
		tu_fill(d + k * BS, BS, k + 1);
	/* room for two objects: the flush of four stops at the third */
	atomic_store(&full_after, 2);
	atomic_store(&disk_full, true);
	cr_assert_eq(tally_write(t, ino, d, sizeof(d), 0), (ssize_t)sizeof(d));
	cr_assert_eq(tally_fsync(t, ino, false), -ENOSPC);
	/* the two written are committed, the other two kept */
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_eq(st.objects, 2);
	cr_assert_eq(st.dirty_bytes, 2 * BS);
	for (k = 0; k < 4; k++)
		expect_block(ino, k, d + k * BS);
	cr_assert_eq(tally_getattr(t, ino, &sb), 0);
	cr_assert_eq(sb.st_size, (off_t)sizeof(d));
	/* the unmount commits nothing more (no room) and says so */
	tally_release(t, ino);
	cr_assert_eq(tally_close(t), -ENOSPC);
	t = NULL;
	tu_fsck_clean(store, NULL);
	/* what fitted is the file: its first two blocks, nothing past */
	atomic_store(&disk_full, false);
	open_with(1, 0, 0, 64 * BS);
	cr_assert_eq(tally_getattr(t, ino, &sb), 0);
	cr_assert_eq(sb.st_size, 2 * BS);
	expect_block(ino, 0, d);
	expect_block(ino, 1, d + BS);
	cr_assert_eq(tally_read(t, ino, buf, BS, 2 * BS), 0);
	expect_clean_store();
}
