/* SPDX-License-Identifier: MIT */
/*
 * Fault injection sweep: one sequence of operations (write+fsync of
 * several files sharing blocks, an overwrite committed by a link into
 * another namespace, a link of committed data, a block-sharing copy with a
 * byte tail, unlinks that kill objects) runs on a fresh store once per N,
 * with the Nth object write, sync or unlink failing, for N = 1, 2, ...
 * until the sequence no longer reaches the fault. Each time: the exact
 * injected errno reaches the caller of the step that hit it (fsync, link),
 * that step changed nothing visible, redoing it once the fault is cleared
 * succeeds; a failed unlink of a dead object leaks it (never an error of
 * the metadata operation) and GC collects it; at the end every file reads
 * back exactly, the object files are exactly the objects referenced and
 * the store checks clean, also after a reopen.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/ctl.h"
#include "core/jobs/fsck.h"
#include "core/objects/objstore.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096
#define MAX_N 200

static char *dir;
static char store[4096];
static struct tally *t;

/* the injected fault of the current run */
static enum objstore_op fault_op;
static int fault_err;
static bool fired;

static void teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(faults, .fini = teardown, .timeout = 120);

static void open_store(void)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.workers = 2,
	};

	cr_assert_eq(tally_open(store, &o, &t), 0);
}

static void inject(unsigned nth)
{
	objstore_inject(tally_objstore(t), fault_op, nth, fault_err);
}

/*
 * The result @rc of a step that may reach the fault: 0, or the injected
 * error, once. Returns whether the step failed (the fault is then
 * cleared).
 */
static bool step_failed(int rc, const char *what, unsigned n)
{
	if (rc == 0)
		return false;
	cr_assert_eq(rc, fault_err, "N=%u: %s returned %d, injected %d", n,
		     what, rc, fault_err);
	cr_assert_not(fired, "N=%u: %s failed after the fault had fired", n,
		      what);
	fired = true;
	inject(0);
	return true;
}

static void put(uint64_t ino, const char *buf, size_t len, off_t off)
{
	cr_assert_eq(tally_write(t, ino, buf, len, off), (ssize_t)len);
}

/* write @len bytes at @off and fsync; redo both if the fsync failed */
static void write_synced(uint64_t ino, const char *buf, size_t len, off_t off,
			 unsigned n)
{
	put(ino, buf, len, off);
	if (step_failed(tally_fsync(t, ino, false), "fsync", n)) {
		put(ino, buf, len, off);
		cr_assert_eq(tally_fsync(t, ino, false), 0, "N=%u: refsync", n);
	}
}

static void expect_file(uint64_t parent, const char *name, const char *want,
			size_t len)
{
	static char buf[4 * BS];
	struct stat st;

	cr_assert_eq(tally_lookup(t, parent, name, &st), 0, "%s", name);
	cr_assert_eq(st.st_size, (off_t)len, "size of %s", name);
	cr_assert_eq(tally_read(t, st.st_ino, buf, sizeof(buf), 0),
		     (ssize_t)len, "%s", name);
	cr_assert_eq(memcmp(buf, want, len), 0, "content of %s", name);
	tally_forget(t, st.st_ino, 1);
}

static void expect_absent(uint64_t parent, const char *name)
{
	struct stat st;

	cr_assert_eq(tally_lookup(t, parent, name, &st), -ENOENT, "%s", name);
}

static void close_file(uint64_t ino)
{
	cr_assert_eq(tally_release(t, ino), 0);
	tally_forget(t, ino, 1);
}

/* Object files on disk minus objects in the table (a drain first). */
static int leaked(void)
{
	struct tally_stats st;

	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_stats(t, &st), 0);
	return tu_count_objects(store) - (int)st.objects;
}

/* One run of the sequence with fault N armed; returns whether it fired. */
static bool run(unsigned n)
{
	static char a[3 * BS], b[BS + 100], c[2 * BS], d[2 * BS];
	static char b2[BS + 100], tail[50], g2[2 * BS + 50];
	uint64_t main_ns, other, fa, fb, fc, fd, gb, gc;
	struct stat st;
	char *report = NULL;
	int rc;

	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	open_store();
	fired = false;
	main_ns = tu_mkns(t, "main");
	other = tu_mkns(t, "other");
	tu_fill(a, sizeof(a), 1);
	tu_fill(b, sizeof(b), 2);
	memcpy(c, a, BS); /* shares its first block with a */
	tu_fill(c + BS, BS, 3);
	tu_fill(d, sizeof(d), 4);
	tu_fill(tail, sizeof(tail), 5);
	memcpy(b2, b, sizeof(b));
	tu_fill(b2 + BS, 100, 6);
	inject(n);

	/* 1: write + fsync of four files */
	fa = tu_newfile(t, main_ns, "a");
	write_synced(fa, a, sizeof(a), 0, n);
	fb = tu_newfile(t, main_ns, "b");
	write_synced(fb, b, sizeof(b), 0, n);
	fc = tu_newfile(t, main_ns, "c");
	write_synced(fc, c, sizeof(c), 0, n);
	fd = tu_newfile(t, main_ns, "d");
	write_synced(fd, d, sizeof(d), 0, n);

	/* 2: overwrite b's tail (its old object dies), and link b into
	 * other: the link commits b first, and fails with its flush */
	put(fb, b2 + BS, 100, BS);
	rc = tally_link(t, fb, other, "b", &st);
	if (step_failed(rc, "link across", n)) {
		expect_absent(other, "b");
		rc = tally_link(t, fb, other, "b", &st);
	}
	cr_assert_eq(rc, 0, "N=%u: link b", n);
	tally_forget(t, st.st_ino, 1);

	/* 3: a link of committed data (no flush) */
	cr_assert_eq(tally_link(t, fa, other, "a", &st), 0);
	tally_forget(t, st.st_ino, 1);

	/* 4: a copy that shares c's blocks, plus a tail of new bytes */
	gc = tu_newfile(t, other, "c");
	cr_assert_eq(tally_copy_range(t, fc, 0, gc, 0, sizeof(c)),
		     (ssize_t)sizeof(c));
	write_synced(gc, tail, sizeof(tail), sizeof(c), n);
	memcpy(g2, c, sizeof(c));
	memcpy(g2 + sizeof(c), tail, sizeof(tail));

	/* 5: unlinks: d's objects die, a's live on in other/a */
	close_file(fa);
	close_file(fb);
	close_file(fc);
	close_file(fd);
	close_file(gc);
	cr_assert_eq(tally_unlink(t, main_ns, "d"), 0, "N=%u", n);
	cr_assert_eq(tally_unlink(t, main_ns, "a"), 0, "N=%u", n);

	/* a failed object unlink leaks (when in doubt, leak) */
	rc = leaked();
	if (fault_op == OBJSTORE_UNLINK && rc > 0) {
		fired = true;
		inject(0);
		cr_assert_eq(ctl_exec(t, "gc grace=0\n", 11, &report), 0);
		free(report);
		rc = leaked();
	}
	cr_assert_eq(rc, 0, "N=%u: object files beyond the table", n);
	if (!fired)
		inject(0); /* N is past the last fault point */

	expect_file(main_ns, "b", b2, sizeof(b2));
	expect_file(other, "b", b2, sizeof(b2));
	expect_file(other, "a", a, sizeof(a));
	expect_file(main_ns, "c", c, sizeof(c));
	expect_file(other, "c", g2, sizeof(g2));
	expect_absent(main_ns, "a");
	expect_absent(main_ns, "d");
	cr_assert_eq(tally_lookup(t, other, "b", &st), 0);
	gb = st.st_ino;
	tally_forget(t, gb, 1);

	cr_assert_eq(tally_close(t), 0, "N=%u", n);
	t = NULL;
	tu_fsck_clean(store, NULL);
	open_store();
	expect_file(other, "b", b2, sizeof(b2));
	expect_file(other, "c", g2, sizeof(g2));
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
	tu_fsck_clean(store, NULL);
	teardown();
	return fired;
}

/* Sweep N until the sequence no longer reaches the fault. */
static void sweep(enum objstore_op op, int err, unsigned min_points)
{
	unsigned n;

	fault_op = op;
	fault_err = err;
	for (n = 1; n <= MAX_N; n++)
		if (!run(n))
			break;
	cr_assert_leq(n, MAX_N, "the sequence never stopped failing");
	cr_assert_geq(n - 1, min_points, "only %u fault points reached", n - 1);
}

/* the object writes: a(3) b(2) c(1: block 0 is a's) d(2) b's tail(1) the
 * copy's tail(1) */
Test(faults, object_write_enospc)
{
	sweep(OBJSTORE_WRITE, -ENOSPC, 10);
}

Test(faults, object_write_eio)
{
	sweep(OBJSTORE_WRITE, -EIO, 10);
}

/* one sync per flush that creates objects: a b c d b's-tail copy-tail */
Test(faults, object_sync_eio)
{
	sweep(OBJSTORE_SYNC, -EIO, 6);
}

Test(faults, object_sync_edquot)
{
	sweep(OBJSTORE_SYNC, -EDQUOT, 6);
}

/* b's old tail object, then d's two objects */
/* the renames into place: one per object created, as the writes */
Test(faults, object_rename_eio)
{
	sweep(OBJSTORE_RENAME, -EIO, 10);
}

Test(faults, object_unlink_eio)
{
	sweep(OBJSTORE_UNLINK, -EIO, 3);
}
