/* SPDX-License-Identifier: MIT */
/*
 * Several processes at once on one mount: the multi-threaded daemon must
 * keep contents, names and object counts exact.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

#define NPROC 4

static void conc_init(void)
{
	tm_init();
	expect_ok(mkdir(mp("a"), 0755));
	expect_ok(mkdir(mp("b"), 0755));
}

TestSuite(concurrency, .init = conc_init, .fini = tm_fini, .timeout = 90);

/* Fork NPROC children running fn(i); asserts they all exit 0. */
static void run_children(int (*fn)(int))
{
	pid_t pids[NPROC];
	int i, status;

	for (i = 0; i < NPROC; i++) {
		pids[i] = fork();
		cr_assert(ge(int, pids[i], 0));
		if (pids[i] == 0)
			_exit(fn(i));
	}
	for (i = 0; i < NPROC; i++) {
		pid_t r = waitpid(pids[i], &status, 0);
		int ok = r == pids[i] && WIFEXITED(status);
		int code = ok ? WEXITSTATUS(status) : -1;

		cr_assert(eq(int, code, 0), "child %d failed at step %d", i,
			  code);
	}
}

/* Child i writes block i (and i + NPROC) of a/shared, 1 MiB each. */
static int write_blocks(int i)
{
	char *buf = malloc(MIB);
	int fd = open(mp("a/shared"), O_WRONLY);
	int k;

	if (!buf || fd < 0)
		return 1;
	for (k = 0; k < 2; k++) {
		int blk = i + k * NPROC;

		fill_random(buf, MIB, 500 + (uint64_t)blk);
		if (pwrite(fd, buf, MIB, (off_t)blk * MIB) != MIB)
			return 2;
	}
	if (close(fd) < 0)
		return 3;
	free(buf);
	return 0;
}

Test(concurrency, writers_of_distinct_blocks)
{
	char *want = malloc(2 * NPROC * MIB), refs[128];
	int fd, k;

	cr_assert(ne(ptr, want, NULL));
	fd = open(mp("a/shared"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(ge(int, fd, 0));
	expect_ok(close(fd));
	run_children(write_blocks);
	for (k = 0; k < 2 * NPROC; k++)
		fill_random(want + (size_t)k * MIB, MIB, 500 + (uint64_t)k);
	cr_assert(eq(i64, file_cmp(mp("a/shared"), want, 2 * NPROC * MIB), -1));
	cr_assert(eq(i64, tm_count_objects(), 2 * NPROC));
	xattr_get(mp("a/shared"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1 1 1 1 1 1 1 1"));
	free(want);
}

/* Child i churns through files in a/ and b/ sharing content. */
static int churn(int i)
{
	char data[4096], path[64];
	int k;

	for (k = 0; k < 100; k++) {
		/* content shared by all children: dedup under contention */
		fill_random(data, sizeof(data), (uint64_t)k % 10);
		snprintf(path, sizeof(path), "a/c%d-%d", i, k);
		if (write_file(mp("%s", path), data, sizeof(data)))
			return 1;
		snprintf(path, sizeof(path), "b/c%d-%d", i, k);
		if (link(mp("a/c%d-%d", i, k), mp("%s", path)))
			return 2;
		if (k % 2 && unlink(mp("a/c%d-%d", i, k)))
			return 3;
		if (k % 3 == 0 &&
		    rename(mp("b/c%d-%d", i, k), mp("b/r%d-%d", i, k)))
			return 4;
		if (mkdir(mp("a/d%d-%d", i, k), 0755))
			return 5;
		if (k % 4 == 0 && rmdir(mp("a/d%d-%d", i, k)))
			return 6;
	}
	return 0;
}

Test(concurrency, churn_keeps_counts_exact)
{
	char data[4096], refs[32];
	int i, k;
	long want;

	run_children(churn);
	cr_assert(eq(i64, tm_count_objects(), 10));
	/* every surviving name has the right content */
	for (i = 0; i < NPROC; i++) {
		for (k = 0; k < 100; k++) {
			fill_random(data, sizeof(data), (uint64_t)k % 10);
			if (k % 2 == 0)
				cr_assert(eq(i64,
					     file_cmp(mp("a/c%d-%d", i, k),
						      data, sizeof(data)),
					     -1),
					  "a/c%d-%d", i, k);
			cr_assert(eq(i64,
				     file_cmp(k % 3 ? mp("b/c%d-%d", i, k)
						    : mp("b/r%d-%d", i, k),
					      data, sizeof(data)),
				     -1),
				  "b/*%d-%d", i, k);
		}
	}
	/* content k % 10 == 0 is named by k = 0,10,...,90 in every child:
	 * in b/ always, in a/ for even k (all of them) */
	xattr_get(mp("b/r0-0"), "user.tally.refs", refs, sizeof(refs));
	want = NPROC * 10 * 2;
	{
		char w[32];

		snprintf(w, sizeof(w), "%ld", want);
		cr_assert(eq(str, refs, w));
	}
	cr_assert(eq(int, tm_unmount(), 0));
	cr_assert(eq(int, tm_mount(), 0));
	xattr_get(mp("b/r0-0"), "user.tally.refs", refs, sizeof(refs));
	{
		char w[32];

		snprintf(w, sizeof(w), "%ld", want);
		cr_assert(eq(str, refs, w));
	}
	/* removing everything deletes every object */
	for (i = 0; i < NPROC; i++)
		for (k = 0; k < 100; k++) {
			if (k % 2 == 0)
				expect_ok(unlink(mp("a/c%d-%d", i, k)));
			expect_ok(unlink(k % 3 ? mp("b/c%d-%d", i, k)
					       : mp("b/r%d-%d", i, k)));
		}
	cr_assert(eq(i64, tm_wait_objects(0, 5000), 0));
}
