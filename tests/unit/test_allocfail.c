/* SPDX-License-Identifier: MIT */
/*
 * Allocation fault sweep: core/ built with tests/unit/allocfail.h, so that
 * the Nth malloc, calloc, realloc or strdup fails. One sequence of
 * operations (a namespace, a file written and fsync'ed, a link into
 * another namespace, a block-sharing copy, an unlink, a drain through the
 * control file) runs on a fresh store once per N, N = 1, 2, ... until it
 * no longer reaches the fault. Each step returns 0 or exactly -ENOMEM,
 * and a step that failed succeeds when done again; the daemon never
 * aborts. At the end every file reads back exactly and the store checks
 * clean, also after a reopen.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/ctl.h"
#include "core/fs/tally.h"
#include "tests/unit/allocfail_ctl.h"
#include "tests/unit/util.h"

#define BS 4096
#define MAX_N 3000

static char *dir;
static char store[4096];
static struct tally *t;
static const struct tally_ctx me = { 0, 0 };

static void teardown(void)
{
	af_arm(0);
	tu_teardown(&t, &dir);
}

TestSuite(allocfail, .fini = teardown, .timeout = 300);

static void open_store(void)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.workers = 2,
	};

	cr_assert_eq(tally_open(store, &o, &t), 0);
}

/*
 * Step @expr must give @ok, or -ENOMEM once (the armed fault), after
 * which the fault is off and the step is done again.
 */
#define STEP(expr, ok)                                                         \
	do {                                                                   \
		long long r_ = (long long)(expr);                              \
		if (r_ == -ENOMEM) {                                           \
			cr_assert(af_fired(),                                  \
				  "N=%ld: ENOMEM without a fault: " #expr, n); \
			af_arm(0);                                             \
			r_ = (long long)(expr);                                \
		}                                                              \
		cr_assert_eq(r_, (long long)(ok), "N=%ld: %lld: " #expr, n,    \
			     r_);                                              \
	} while (0)

static void expect_file(uint64_t parent, const char *name, const char *buf,
			size_t len)
{
	char back[3 * BS];
	struct stat st;

	cr_assert_eq(tally_lookup(t, parent, name, &st), 0, "%s", name);
	cr_assert_eq(st.st_size, (off_t)len, "%s", name);
	cr_assert_eq(tally_read(t, st.st_ino, back, sizeof(back), 0),
		     (ssize_t)len, "%s", name);
	cr_assert_eq(memcmp(back, buf, len), 0, "%s", name);
	tally_forget(t, st.st_ino, 1);
}

/* A write may be short (as write(2) may): the rest is written again;
 * a write that fails gives -ENOMEM, once. */
static void write_all(uint64_t ino, const char *buf, size_t len, long n)
{
	size_t done = 0;

	while (done < len) {
		ssize_t w = tally_write(t, ino, buf + done, len - done,
					(off_t)done);

		if (w == -ENOMEM) {
			cr_assert(af_fired(), "N=%ld: write ENOMEM", n);
			af_arm(0);
			continue;
		}
		cr_assert_gt(w, 0, "N=%ld: write gave %zd", n, w);
		done += (size_t)w;
	}
}

/* One run with the Nth allocation failing; returns whether it did. */
static bool run(long n)
{
	static char a[2 * BS + 10];
	struct stat st, sa, sc;
	uint64_t main_ns, other, fa, fc;
	char *report = NULL;
	bool fired;

	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	open_store();
	tu_fill(a, sizeof(a), 42);
	af_arm(n);

	STEP(tally_mkdir(t, &me, TALLY_ROOT_INO, "main", 0755, &st), 0);
	STEP(tally_lookup(t, TALLY_ROOT_INO, "main", &st), 0);
	main_ns = st.st_ino;
	STEP(tally_mkdir(t, &me, TALLY_ROOT_INO, "other", 0755, &st), 0);
	STEP(tally_lookup(t, TALLY_ROOT_INO, "other", &st), 0);
	other = st.st_ino;
	STEP(tally_mknod(t, &me, main_ns, "a", S_IFREG | 0644, 0, &sa), 0);
	STEP(tally_lookup(t, main_ns, "a", &sa), 0);
	fa = sa.st_ino;
	STEP(tally_open_file(t, fa, O_RDWR), 0);
	write_all(fa, a, sizeof(a), n);
	STEP(tally_fsync(t, fa, false), 0);
	STEP(tally_link(t, fa, other, "a", &st), 0);
	tally_forget(t, st.st_ino, 1);
	STEP(tally_mknod(t, &me, other, "c", S_IFREG | 0644, 0, &sc), 0);
	STEP(tally_lookup(t, other, "c", &sc), 0);
	fc = sc.st_ino;
	STEP(tally_open_file(t, fc, O_RDWR), 0);
	STEP(tally_copy_range(t, fa, 0, fc, 0, sizeof(a)), sizeof(a));
	STEP(tally_release(t, fc), 0);
	STEP(tally_release(t, fa), 0);
	{
		uint64_t objs;

		STEP(tally_pin(t, "other/c", true, &objs), 0);
		STEP(tally_pin(t, "other/c", false, &objs), 0);
	}
	STEP(tally_unlink(t, main_ns, "a"), 0);
	STEP(ctl_exec(t, "drain\n", 6, &report), 0);
	free(report);
	fired = af_fired();
	af_arm(0);

	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	expect_file(other, "a", a, sizeof(a));
	expect_file(other, "c", a, sizeof(a));
	cr_assert_eq(tally_close(t), 0, "N=%ld", n);
	t = NULL;
	tu_fsck_clean(store, NULL);
	open_store();
	expect_file(other, "a", a, sizeof(a));
	expect_file(other, "c", a, sizeof(a));
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
	tu_fsck_clean(store, NULL);
	teardown();
	return fired;
}

/*
 * An open that runs out of memory gives -ENOMEM and leaves nothing held:
 * the next open of the same store (its lock free again) succeeds.
 */
Test(allocfail, failed_open_releases_the_store)
{
	char mnt[4200];
	long n;

	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	open_store();
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
	for (n = 1; n <= MAX_N; n++) {
		struct tally_opts o = {
			.block_size = BS,
			.workers = 2,
			.mountpoint = mnt,
		};
		bool fired;
		int rc;

		af_arm(n);
		rc = tally_open(store, &o, &t);
		fired = af_fired();
		af_arm(0);
		if (rc == 0) {
			cr_assert_eq(tally_close(t), 0);
			t = NULL;
			if (!fired)
				break;
			continue;
		}
		cr_assert_eq(rc, -ENOMEM, "N=%ld: %d", n, rc);
		cr_assert(fired, "N=%ld", n);
		cr_assert_eq(tally_open(store, &o, &t), 0, "N=%ld: reopen", n);
		cr_assert_eq(tally_close(t), 0);
		t = NULL;
	}
	cr_assert_leq(n, MAX_N);
	tu_fsck_clean(store, NULL);
}

Test(allocfail, every_allocation_of_a_sequence)
{
	long n;

	for (n = 1; n <= MAX_N; n++)
		if (!run(n))
			break;
	cr_assert_leq(n, MAX_N, "the sequence never stopped failing");
	cr_assert_geq(n - 1, 25, "only %ld fault points reached", n - 1);
}
