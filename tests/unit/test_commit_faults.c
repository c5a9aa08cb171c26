/* SPDX-License-Identifier: MIT */
/*
 * Metadata commit fault sweep: one sequence of filesystem operations runs
 * on a fresh store once per N, with the Nth metadata commit failing
 * (meta_inject: the transaction is rolled back and the commit returns the
 * error), for N = 1, 2, ... until the sequence no longer reaches the
 * fault. Each time: the exact injected errno reaches the caller of the
 * step that hit it, that step left nothing visible behind (the names,
 * sizes, link counts, contents and xattrs are those from before it), and
 * redoing it succeeds. At the end every file reads back exactly, the
 * counts of inodes and objects are those of a run without a fault, no
 * object file is left beyond the table, and the store checks clean, also
 * after a reopen.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/fsck.h"
#include "core/meta/meta.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096
#define MAX_N 300

static char *dir;
static char store[4096];
static struct tally *t;
static const struct tally_ctx me = { 0, 0 };

static int fault_err;
static unsigned fired;	/* steps that hit the fault in this run */
static unsigned silent; /* runs whose fault no step saw */

static void teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(commit_faults, .fini = teardown, .timeout = 240);

static void open_store(void)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.workers = 2,
		.report_interval = 1000000, /* no node report commits */
	};

	cr_assert_eq(tally_open(store, &o, &t), 0);
}

/* Arm fault @nth (0: disarm); returns the commits the old one had left. */
static unsigned inject(unsigned nth)
{
	unsigned left = meta_inject(tally_meta_lock(t), nth, fault_err);

	tally_meta_unlock(t);
	return left;
}

/*
 * The result @rc of a step: 0, or the injected error, once per run.
 * Returns whether it failed (the fault is then off).
 */
static bool failed(int rc, const char *what, unsigned n)
{
	if (rc == 0)
		return false;
	cr_assert_eq(rc, fault_err, "N=%u: %s returned %d, injected %d", n,
		     what, rc, fault_err);
	cr_assert_eq(fired, 0, "N=%u: %s failed after the fault fired", n,
		     what);
	fired++;
	inject(0);
	return true;
}

static uint64_t ino_of(uint64_t parent, const char *name)
{
	struct stat st;

	cr_assert_eq(tally_lookup(t, parent, name, &st), 0, "%s", name);
	tally_forget(t, st.st_ino, 1);
	return st.st_ino;
}

static void expect_absent(uint64_t parent, const char *name, unsigned n)
{
	struct stat st;

	cr_assert_eq(tally_lookup(t, parent, name, &st), -ENOENT,
		     "N=%u: %s should not exist", n, name);
}

static void expect_file(uint64_t parent, const char *name, const char *want,
			size_t len, nlink_t nlink, unsigned n)
{
	static char buf[8 * BS];
	struct stat st;

	cr_assert_eq(tally_lookup(t, parent, name, &st), 0, "N=%u: %s", n,
		     name);
	cr_assert_eq(st.st_size, (off_t)len, "N=%u: size of %s", n, name);
	cr_assert_eq(st.st_nlink, nlink, "N=%u: links of %s", n, name);
	cr_assert_eq(tally_read(t, st.st_ino, buf, sizeof(buf), 0),
		     (ssize_t)len, "N=%u: %s", n, name);
	cr_assert_eq(memcmp(buf, want, len), 0, "N=%u: content of %s", n, name);
	tally_forget(t, st.st_ino, 1);
}

static uint64_t mkdir_at(uint64_t parent, const char *name, unsigned n)
{
	struct stat st;
	int rc = tally_mkdir(t, &me, parent, name, 0755, &st);

	if (failed(rc, "mkdir", n)) {
		expect_absent(parent, name, n);
		rc = tally_mkdir(t, &me, parent, name, 0755, &st);
	}
	cr_assert_eq(rc, 0, "N=%u: mkdir %s", n, name);
	tally_forget(t, st.st_ino, 1);
	return st.st_ino;
}

static uint64_t create(uint64_t parent, const char *name, unsigned n)
{
	struct stat st;
	int rc = tally_mknod(t, &me, parent, name, S_IFREG | 0644, 0, &st);

	if (failed(rc, "mknod", n)) {
		expect_absent(parent, name, n);
		rc = tally_mknod(t, &me, parent, name, S_IFREG | 0644, 0, &st);
	}
	cr_assert_eq(rc, 0, "N=%u: mknod %s", n, name);
	cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), 0);
	return st.st_ino;
}

/* write and fsync; after a failed fsync the data is written again */
static void write_synced(uint64_t ino, const char *buf, size_t len, off_t off,
			 unsigned n)
{
	cr_assert_eq(tally_write(t, ino, buf, len, off), (ssize_t)len);
	if (failed(tally_fsync(t, ino, false), "fsync", n)) {
		cr_assert_eq(tally_write(t, ino, buf, len, off), (ssize_t)len);
		cr_assert_eq(tally_fsync(t, ino, false), 0, "N=%u: refsync", n);
	}
}

static void close_file(uint64_t ino, unsigned n)
{
	/* the release commits what is left: nothing, after an fsync */
	cr_assert_eq(tally_release(t, ino), 0, "N=%u: release", n);
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

struct counts {
	uint64_t inodes, objects, namespaces, bytes_logical;
};

/* One run with commit fault N armed (0: none); returns whether the
 * sequence reached it. */
static bool run(unsigned n, struct counts *out)
{
	static char a[3 * BS + 10], b[2 * BS], c[BS + 7], x[BS];
	uint64_t main_ns, other, d, fa, fb, ino;
	struct tally_stats ts;
	struct stat st, in;
	char val[8], *target;
	bool reached;
	int rc;

	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	open_store();
	fired = 0;
	tu_fill(a, sizeof(a), 11);
	tu_fill(b, sizeof(b), 12);
	memcpy(c, a, BS); /* shares a's first block */
	tu_fill(c + BS, 7, 13);
	tu_fill(x, sizeof(x), 14);
	inject(n);

	/* namespaces, a directory */
	main_ns = mkdir_at(TALLY_ROOT_INO, "main", n);
	other = mkdir_at(TALLY_ROOT_INO, "other", n);
	d = mkdir_at(main_ns, "d", n);

	/* files with data, committed by fsync */
	fa = create(main_ns, "a", n);
	write_synced(fa, a, sizeof(a), 0, n);
	fb = create(d, "b", n);
	write_synced(fb, b, sizeof(b), 0, n);

	/* a symlink */
	rc = tally_symlink(t, &me, main_ns, "l", "a", &st);
	if (failed(rc, "symlink", n)) {
		expect_absent(main_ns, "l", n);
		rc = tally_symlink(t, &me, main_ns, "l", "a", &st);
	}
	cr_assert_eq(rc, 0, "N=%u: symlink", n);
	tally_forget(t, st.st_ino, 1);

	/* a hard link, then a link across namespaces (a new inode that
	 * shares the objects) */
	rc = tally_link(t, fa, d, "a2", &st);
	if (failed(rc, "link", n)) {
		expect_absent(d, "a2", n);
		expect_file(main_ns, "a", a, sizeof(a), 1, n);
		rc = tally_link(t, fa, d, "a2", &st);
	}
	cr_assert_eq(rc, 0, "N=%u: link", n);
	tally_forget(t, st.st_ino, 1);
	rc = tally_link(t, fa, other, "a", &st);
	if (failed(rc, "link across", n)) {
		expect_absent(other, "a", n);
		rc = tally_link(t, fa, other, "a", &st);
	}
	cr_assert_eq(rc, 0, "N=%u: link across", n);
	tally_forget(t, st.st_ino, 1);

	/* an xattr */
	rc = tally_setxattr(t, fb, "user.k", "v1", 2, 0);
	if (failed(rc, "setxattr", n)) {
		cr_assert_eq(tally_getxattr(t, fb, "user.k", val, sizeof(val)),
			     -ENODATA, "N=%u", n);
		rc = tally_setxattr(t, fb, "user.k", "v1", 2, 0);
	}
	cr_assert_eq(rc, 0, "N=%u: setxattr", n);

	/* a copy that shares a's first block, plus a tail */
	ino = create(other, "c", n);
	rc = (int)tally_copy_range(t, fa, 0, ino, 0, BS);
	if (rc < 0 && failed(rc, "copy_range", n)) {
		cr_assert_eq(tally_getattr(t, ino, &st), 0);
		cr_assert_eq(st.st_size, 0, "N=%u: size after a failed copy",
			     n);
		rc = (int)tally_copy_range(t, fa, 0, ino, 0, BS);
	}
	cr_assert_eq(rc, BS, "N=%u: copy_range", n);
	write_synced(ino, c + BS, 7, BS, n);
	close_file(ino, n);

	/* truncate b to one block: its second object dies */
	memset(&in, 0, sizeof(in));
	in.st_size = BS;
	rc = tally_setattr(t, fb, &in, TALLY_SET_SIZE, &st);
	if (failed(rc, "truncate", n)) {
		/* a size change rides the flush pipeline: the flush that
		 * failed is parked with its truncation, which goes again
		 * with the next flush of b (invariant 3), so b shows it */
		expect_file(d, "b", b, BS, 1, n);
		rc = tally_setattr(t, fb, &in, TALLY_SET_SIZE, &st);
	}
	cr_assert_eq(rc, 0, "N=%u: truncate", n);
	cr_assert_eq(st.st_size, BS);

	/* rename within the namespace, then over an existing file */
	rc = tally_rename(t, d, "a2", main_ns, "a3", 0);
	if (failed(rc, "rename", n)) {
		expect_absent(main_ns, "a3", n);
		expect_file(d, "a2", a, sizeof(a), 2, n);
		rc = tally_rename(t, d, "a2", main_ns, "a3", 0);
	}
	cr_assert_eq(rc, 0, "N=%u: rename", n);
	ino = create(main_ns, "x", n);
	write_synced(ino, x, sizeof(x), 0, n);
	close_file(ino, n);
	rc = tally_rename(t, main_ns, "x", d, "b", 0);
	if (failed(rc, "rename over", n)) {
		expect_file(main_ns, "x", x, sizeof(x), 1, n);
		expect_file(d, "b", b, BS, 1, n);
		rc = tally_rename(t, main_ns, "x", d, "b", 0);
	}
	cr_assert_eq(rc, 0, "N=%u: rename over", n);
	close_file(fb, n); /* the replaced b: freed at its last close */

	/* unlinks: the symlink, one name of a, then the directory */
	rc = tally_unlink(t, main_ns, "l");
	if (failed(rc, "unlink symlink", n)) {
		cr_assert_eq(tally_readlink(t, ino_of(main_ns, "l"), &target),
			     0);
		cr_assert_str_eq(target, "a");
		free(target);
		rc = tally_unlink(t, main_ns, "l");
	}
	cr_assert_eq(rc, 0, "N=%u: unlink symlink", n);
	close_file(fa, n);
	rc = tally_unlink(t, main_ns, "a");
	if (failed(rc, "unlink", n)) {
		expect_file(main_ns, "a", a, sizeof(a), 2, n);
		rc = tally_unlink(t, main_ns, "a");
	}
	cr_assert_eq(rc, 0, "N=%u: unlink", n);
	rc = tally_unlink(t, d, "b");
	if (failed(rc, "unlink last name", n)) {
		expect_file(d, "b", x, sizeof(x), 1, n);
		rc = tally_unlink(t, d, "b");
	}
	cr_assert_eq(rc, 0, "N=%u: unlink last name", n);
	rc = tally_rmdir(t, main_ns, "d");
	if (failed(rc, "rmdir", n)) {
		cr_assert_eq(ino_of(main_ns, "d"), d);
		rc = tally_rmdir(t, main_ns, "d");
	}
	cr_assert_eq(rc, 0, "N=%u: rmdir", n);

	/*
	 * The fault was reached (by a step, or by the one commit whose
	 * failure no caller sees: the free of the replaced b at its last
	 * close, which the next mount finishes) or N is past the last
	 * commit of the sequence.
	 */
	reached = inject(0) == 0 && n > 0;
	cr_assert_eq(leaked(), 0, "N=%u: object files beyond the table", n);
	expect_file(main_ns, "a3", a, sizeof(a), 1, n);
	expect_file(other, "a", a, sizeof(a), 1, n);
	expect_file(other, "c", c, sizeof(c), 1, n);
	expect_absent(main_ns, "a", n);
	expect_absent(main_ns, "l", n);
	expect_absent(main_ns, "d", n);
	expect_absent(main_ns, "x", n);
	cr_assert_eq(tally_close(t), 0, "N=%u", n);
	t = NULL;
	tu_fsck_clean(store, NULL);

	open_store();
	cr_assert_eq(leaked(), 0, "N=%u: object files after reopen", n);
	expect_file(main_ns, "a3", a, sizeof(a), 1, n);
	expect_file(other, "a", a, sizeof(a), 1, n);
	expect_file(other, "c", c, sizeof(c), 1, n);
	cr_assert_eq(tally_stats(t, &ts), 0);
	out->inodes = ts.inodes;
	out->objects = ts.objects;
	out->namespaces = ts.namespaces;
	out->bytes_logical = ts.bytes_logical;
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
	tu_fsck_clean(store, NULL);
	teardown();
	if (reached && !fired)
		silent++;
	return reached;
}

/* Sweep N until the sequence no longer reaches the fault. */
static void sweep(int err, unsigned min_points)
{
	struct counts want, got;
	unsigned n;

	fault_err = err;
	silent = 0;
	run(0, &want);
	for (n = 1; n <= MAX_N; n++) {
		if (!run(n, &got))
			break;
		cr_assert_eq(got.inodes, want.inodes, "N=%u: inodes", n);
		cr_assert_eq(got.objects, want.objects, "N=%u: objects", n);
		cr_assert_eq(got.namespaces, want.namespaces, "N=%u", n);
		cr_assert_eq(got.bytes_logical, want.bytes_logical, "N=%u", n);
	}
	cr_assert_leq(n, MAX_N, "the sequence never stopped failing");
	cr_assert_geq(n - 1, min_points, "only %u commit faults reached",
		      n - 1);
	/* only the free at the last close of the replaced file */
	cr_assert_leq(silent, 1, "%u faults not reported", silent);
	cr_log_info("%u commit faults injected (errno %d)", n - 1, -err);
}

/* 3 mkdir, 4 mknod, 4 flushes, symlink, 2 links, setxattr, copy,
 * truncate, 2 renames, 3 unlinks, rmdir, the replaced file's free */
Test(commit_faults, eio)
{
	sweep(-EIO, 20);
}

Test(commit_faults, enospc)
{
	sweep(-ENOSPC, 20);
}
