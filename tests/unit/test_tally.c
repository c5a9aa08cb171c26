/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of core/fs/tally.c through its public API: no FUSE, a real
 * store directory with a real SQLite database and real object files.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "core/jobs/fsck.h"
#include "core/meta/meta.h"
#include "core/objects/store.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096

static char *dir;
static char store[4096];
static struct tally *t;

/* Object files once every flush has been finalized (closes do not wait). */
static int objects_now(struct tally *tt)
{
	if (tt)
		cr_assert_eq(tally_drain(tt, NULL, 0), 0);
	return tu_count_objects(store);
}
static const struct tally_ctx me = { .uid = 0, .gid = 0 };

static void open_store(void)
{
	struct tally_opts o = { .block_size = BS, .create = true };

	cr_assert_eq(tally_open(store, &o, &t), 0);
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	open_store();
}

static void teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(tally, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t mkfile(uint64_t parent, const char *name, const void *data,
		       size_t len)
{
	struct stat st;
	ssize_t n;

	cr_assert_eq(tally_mknod(t, &me, parent, name, S_IFREG | 0644, 0, &st),
		     0);
	cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), 0);
	if (len) {
		n = tally_write(t, st.st_ino, data, len, 0);
		cr_assert_eq(n, (ssize_t)len);
	}
	cr_assert_eq(tally_release(t, st.st_ino), 0);
	return st.st_ino;
}

static void expect_content(uint64_t ino, const void *data, size_t len)
{
	char *buf = malloc(len + 16);
	ssize_t n;

	cr_assert_not_null(buf);
	n = tally_read(t, ino, buf, len + 16, 0);
	cr_assert_eq(n, (ssize_t)len, "read %zd bytes, expected %zu", n, len);
	cr_assert_eq(memcmp(buf, data, len), 0, "content differs");
	free(buf);
}

static void expect_xattr(uint64_t ino, const char *name, const char *want)
{
	char buf[4096];
	ssize_t n;

	/* counts are those committed: let pending closes finish first */
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	n = tally_getxattr(t, ino, name, buf, sizeof(buf) - 1);

	cr_assert_geq(n, 0, "getxattr %s: %zd", name, n);
	buf[n] = '\0';
	cr_assert_str_eq(buf, want);
}

Test(tally, namespaces_only_at_root)
{
	struct stat st;

	tu_mkns(t, "main");
	cr_assert_eq(tally_mknod(t, &me, TALLY_ROOT_INO, "f", S_IFREG | 0644, 0,
				 &st),
		     -EPERM);
	cr_assert_eq(tally_symlink(t, &me, TALLY_ROOT_INO, "l", "x", &st),
		     -EPERM);
	cr_assert_eq(tally_mknod(t, &me, TALLY_ROOT_INO, "p", S_IFIFO | 0644, 0,
				 &st),
		     -EPERM);
	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, ".tally", 0755, &st),
		     -EEXIST);
	cr_assert_eq(tally_rmdir(t, TALLY_ROOT_INO, ".tally"), -EPERM);
	cr_assert_eq(tally_rename(t, TALLY_ROOT_INO, ".tally", TALLY_ROOT_INO,
				  "x", 0),
		     -EPERM);
	cr_assert_eq(tally_rename(t, TALLY_ROOT_INO, "main", TALLY_ROOT_INO,
				  ".tally", 0),
		     -EPERM);
}

Test(tally, rmdir_namespace_only_when_empty)
{
	uint64_t ns = tu_mkns(t, "main");

	mkfile(ns, "a", "x", 1);
	cr_assert_eq(tally_rmdir(t, TALLY_ROOT_INO, "main"), -ENOTEMPTY);
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	cr_assert_eq(tally_rmdir(t, TALLY_ROOT_INO, "main"), 0);
	{
		struct stat st;

		cr_assert_eq(tally_lookup(t, TALLY_ROOT_INO, "main", &st),
			     -ENOENT);
	}
}

Test(tally, long_names)
{
	char name[300];
	struct stat st;
	uint64_t ns = tu_mkns(t, "main");

	memset(name, 'a', 255);
	name[255] = '\0';
	cr_assert_eq(tally_mknod(t, &me, ns, name, S_IFREG | 0644, 0, &st), 0);
	name[255] = 'a';
	name[256] = '\0';
	cr_assert_eq(tally_mknod(t, &me, ns, name, S_IFREG | 0644, 0, &st),
		     -ENAMETOOLONG);
}

Test(tally, write_read_across_blocks)
{
	size_t len = 5 * BS + 123;
	char *data = malloc(len);
	uint64_t ns = tu_mkns(t, "main"), ino;

	tu_fill(data, len, 1);
	ino = mkfile(ns, "f", data, len);
	expect_content(ino, data, len);
	cr_assert_eq(objects_now(t), 6);
	/* overwrite the middle of a committed file */
	cr_assert_eq(tally_open_file(t, ino, O_RDWR), 0);
	cr_assert_eq(tally_write(t, ino, "HELLO", 5, BS - 2), 5);
	memcpy(data + BS - 2, "HELLO", 5);
	expect_content(ino, data, len);
	cr_assert_eq(tally_release(t, ino), 0);
	expect_content(ino, data, len);
	/* blocks 0 and 1 changed: their old objects went away */
	cr_assert_eq(objects_now(t), 6);
	free(data);
}

Test(tally, identical_blocks_stored_once)
{
	char *data = malloc(3 * BS);
	uint64_t ns = tu_mkns(t, "main"), a, b;

	tu_fill(data, 3 * BS, 7);
	a = mkfile(ns, "a", data, 3 * BS);
	b = mkfile(ns, "b", data, 3 * BS);
	cr_assert_eq(objects_now(t), 3);
	expect_xattr(a, "user.tally.refs", "2 2 2");
	expect_xattr(b, "user.tally.refs", "2 2 2");
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	expect_xattr(b, "user.tally.refs", "1 1 1");
	cr_assert_eq(objects_now(t), 3);
	cr_assert_eq(tally_unlink(t, ns, "b"), 0);
	cr_assert_eq(objects_now(t), 0);
	free(data);
}

Test(tally, holes_need_no_object)
{
	char data[BS], zero[BS], buf[BS];
	uint64_t ns = tu_mkns(t, "main");
	struct stat st;

	tu_fill(data, BS, 3);
	memset(zero, 0, BS);
	cr_assert_eq(tally_mknod(t, &me, ns, "s", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), 0);
	cr_assert_eq(tally_write(t, st.st_ino, data, BS, 10 * BS), BS);
	cr_assert_eq(tally_write(t, st.st_ino, zero, BS, 2 * BS), BS);
	cr_assert_eq(tally_release(t, st.st_ino), 0);
	cr_assert_eq(objects_now(t), 1);
	cr_assert_eq(tally_getattr(t, st.st_ino, &st), 0);
	cr_assert_eq(st.st_size, 11 * BS);
	cr_assert_eq(st.st_blocks, BS / 512);
	cr_assert_eq(tally_read(t, st.st_ino, buf, BS, 3 * BS), BS);
	cr_assert_eq(memcmp(buf, zero, BS), 0);
	expect_xattr(st.st_ino, "user.tally.refs", "1");
}

Test(tally, truncate_shrink_then_grow_reads_zeros)
{
	char data[2 * BS], buf[2 * BS], zero[2 * BS];
	uint64_t ns = tu_mkns(t, "main"), ino;
	struct stat in, st;

	tu_fill(data, sizeof(data), 5);
	memset(zero, 0, sizeof(zero));
	ino = mkfile(ns, "f", data, sizeof(data));
	memset(&in, 0, sizeof(in));
	in.st_size = 100;
	cr_assert_eq(tally_setattr(t, ino, &in, TALLY_SET_SIZE, &st), 0);
	cr_assert_eq(st.st_size, 100);
	cr_assert_eq(objects_now(t), 1);
	in.st_size = 2 * BS;
	cr_assert_eq(tally_setattr(t, ino, &in, TALLY_SET_SIZE, &st), 0);
	cr_assert_eq(tally_read(t, ino, buf, sizeof(buf), 0), 2 * BS);
	cr_assert_eq(memcmp(buf, data, 100), 0);
	cr_assert_eq(memcmp(buf + 100, zero, sizeof(buf) - 100), 0,
		     "bytes past a shrink must read as zero");
	/* and after a reopen of the store too */
	tally_close(t);
	open_store();
	cr_assert_eq(tally_read(t, ino, buf, sizeof(buf), 0), 2 * BS);
	cr_assert_eq(memcmp(buf, data, 100), 0);
	cr_assert_eq(memcmp(buf + 100, zero, sizeof(buf) - 100), 0);
}

Test(tally, hard_link_within_namespace)
{
	uint64_t ns = tu_mkns(t, "main"), ino;
	struct stat st;

	ino = mkfile(ns, "a", "hello", 5);
	cr_assert_eq(tally_link(t, ino, ns, "b", &st), 0);
	cr_assert_eq(st.st_ino, ino);
	cr_assert_eq(st.st_nlink, 2);
	expect_xattr(ino, "user.tally.refs", "1");
	cr_assert_eq(tally_link(t, ino, ns, "b", &st), -EEXIST);
}

Test(tally, link_across_namespaces_is_copy_on_write)
{
	uint64_t a = tu_mkns(t, "a"), b = tu_mkns(t, "b"), ino, ino2;
	struct stat st;

	ino = mkfile(a, "f", "hello world", 11);
	cr_assert_eq(tally_link(t, ino, b, "g", &st), 0);
	ino2 = st.st_ino;
	cr_assert_neq(ino2, ino);
	cr_assert_eq(st.st_nlink, 1);
	expect_xattr(ino, "user.tally.refs", "2");
	expect_content(ino2, "hello world", 11);
	cr_assert_eq(objects_now(t), 1);
	cr_assert_eq(tally_open_file(t, ino2, O_RDWR), 0);
	cr_assert_eq(tally_write(t, ino2, "J", 1, 0), 1);
	cr_assert_eq(tally_release(t, ino2), 0);
	expect_content(ino, "hello world", 11);
	expect_content(ino2, "Jello world", 11);
	expect_xattr(ino, "user.tally.refs", "1");
	cr_assert_eq(objects_now(t), 2);
	cr_assert_eq(tally_link(t, ino, TALLY_ROOT_INO, "x", &st), -EPERM);
}

Test(tally, unlinked_open_file_lives_until_release)
{
	uint64_t ns = tu_mkns(t, "main"), ino;
	char buf[16];

	ino = mkfile(ns, "f", "data", 4);
	cr_assert_eq(tally_open_file(t, ino, O_RDWR), 0);
	cr_assert_eq(tally_unlink(t, ns, "f"), 0);
	cr_assert_eq(objects_now(t), 1);
	cr_assert_eq(tally_write(t, ino, "more", 4, 4), 4);
	cr_assert_eq(tally_read(t, ino, buf, sizeof(buf), 0), 8);
	cr_assert_eq(memcmp(buf, "datamore", 8), 0);
	cr_assert_eq(tally_release(t, ino), 0);
	cr_assert_eq(objects_now(t), 0);
}

Test(tally, unlinked_open_file_freed_at_next_open)
{
	uint64_t ns = tu_mkns(t, "main"), ino;

	ino = mkfile(ns, "f", "data", 4);
	cr_assert_eq(tally_open_file(t, ino, O_RDWR), 0);
	cr_assert_eq(tally_unlink(t, ns, "f"), 0);
	/* a crash would leave the inode; a close without release does */
	tally_close(t);
	t = NULL;
	open_store();
	cr_assert_eq(objects_now(t), 0);
	tally_close(t);
	t = NULL;
	tu_fsck_clean(store, NULL);
}

Test(tally, rename_over_and_exchange)
{
	uint64_t ns = tu_mkns(t, "main"), other = tu_mkns(t, "other"), a, b;
	struct stat st;

	a = mkfile(ns, "a", "AAAA", 4);
	b = mkfile(ns, "b", "BBBB", 4);
	cr_assert_eq(tally_rename(t, ns, "a", ns, "b", RENAME_NOREPLACE),
		     -EEXIST);
	cr_assert_eq(tally_rename(t, ns, "a", ns, "b", RENAME_EXCHANGE), 0);
	cr_assert_eq(tally_lookup(t, ns, "a", &st), 0);
	cr_assert_eq(st.st_ino, b);
	cr_assert_eq(tally_lookup(t, ns, "b", &st), 0);
	cr_assert_eq(st.st_ino, a);
	cr_assert_eq(tally_rename(t, ns, "b", ns, "a", 0), 0);
	cr_assert_eq(tally_lookup(t, ns, "b", &st), -ENOENT);
	cr_assert_eq(tally_lookup(t, ns, "a", &st), 0);
	cr_assert_eq(st.st_ino, a);
	expect_content(a, "AAAA", 4);
	cr_assert_eq(objects_now(t), 1);
	cr_assert_eq(tally_rename(t, ns, "a", other, "a", 0), -EXDEV);
	cr_assert_eq(tally_rename(t, ns, "zz", ns, "a", RENAME_EXCHANGE),
		     -ENOENT);
}

Test(tally, rename_directories)
{
	uint64_t ns = tu_mkns(t, "main");
	struct stat d1, d2, f, st;

	cr_assert_eq(tally_mkdir(t, &me, ns, "d1", 0755, &d1), 0);
	cr_assert_eq(tally_mkdir(t, &me, ns, "d2", 0755, &d2), 0);
	cr_assert_eq(tally_mknod(t, &me, d2.st_ino, "f", S_IFREG | 0644, 0, &f),
		     0);
	cr_assert_eq(tally_rename(t, ns, "d1", ns, "d2", 0), -ENOTEMPTY);
	cr_assert_eq(tally_rename(t, d2.st_ino, "f", ns, "d1", 0), -EISDIR);
	cr_assert_eq(tally_rename(t, ns, "d1", d2.st_ino, "f", 0), -ENOTDIR);
	cr_assert_eq(tally_getattr(t, ns, &st), 0);
	cr_assert_eq(st.st_nlink, 4);
	cr_assert_eq(tally_rename(t, ns, "d1", d2.st_ino, "d1", 0), 0);
	cr_assert_eq(tally_getattr(t, ns, &st), 0);
	cr_assert_eq(st.st_nlink, 3);
	cr_assert_eq(tally_getattr(t, d2.st_ino, &st), 0);
	cr_assert_eq(st.st_nlink, 3);
}

Test(tally, xattrs)
{
	uint64_t ns = tu_mkns(t, "main"), ino;
	char buf[64];

	ino = mkfile(ns, "f", "x", 1);
	cr_assert_eq(tally_setxattr(t, ino, "user.k", "v1", 2, 0), 0);
	cr_assert_eq(tally_setxattr(t, ino, "user.k", "v2", 2, XATTR_CREATE),
		     -EEXIST);
	cr_assert_eq(tally_setxattr(t, ino, "user.n", "v", 1, XATTR_REPLACE),
		     -ENODATA);
	cr_assert_eq(tally_getxattr(t, ino, "user.k", buf, sizeof(buf)), 2);
	cr_assert_eq(memcmp(buf, "v1", 2), 0);
	cr_assert_eq(tally_getxattr(t, ino, "user.k", NULL, 0), 2);
	cr_assert_eq(tally_getxattr(t, ino, "user.k", buf, 1), -ERANGE);
	cr_assert_eq(tally_setxattr(t, ino, "trusted.k", "v", 1, 0),
		     -EOPNOTSUPP);
	cr_assert_eq(tally_setxattr(t, ino, "user.tally.refs", "9", 1, 0),
		     -EPERM);
	cr_assert_eq(tally_setxattr(t, ino, "user.tally.refs", "1", 1, 0), 0,
		     "rewriting the current value is a no-op");
	cr_assert_eq(tally_removexattr(t, ino, "user.tally.objects"), -EPERM);
	{
		static const char want[] = "user.tally.refs\0"
					   "user.tally.objects\0user.k";
		char list[256];
		ssize_t n = tally_listxattr(t, ino, list, sizeof(list));

		cr_assert_eq(n, (ssize_t)sizeof(want));
		cr_assert_eq(memcmp(list, want, sizeof(want)), 0);
	}
	cr_assert_eq(tally_removexattr(t, ino, "user.k"), 0);
	cr_assert_eq(tally_removexattr(t, ino, "user.k"), -ENODATA);
}

/* tally_opts.no_xattrs: every call refused, nothing changed; what was set
 * before is there again once the store is opened without it */
Test(tally, xattrs_turned_off)
{
	struct tally_opts o = { .block_size = BS, .no_xattrs = true };
	struct tally_stats st;
	uint64_t ns = tu_mkns(t, "main"), ino;
	char buf[64];

	ino = mkfile(ns, "f", "x", 1);
	cr_assert_eq(tally_setxattr(t, ino, "user.k", "v1", 2, 0), 0);
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
	cr_assert_eq(tally_open(store, &o, &t), 0);
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert(!st.xattrs);
	cr_assert_eq(tally_getxattr(t, ino, "user.k", buf, sizeof(buf)),
		     -ENOSYS);
	cr_assert_eq(tally_getxattr(t, ino, "user.tally.refs", buf,
				    sizeof(buf)),
		     -ENOSYS);
	cr_assert_eq(tally_listxattr(t, ino, buf, sizeof(buf)), -ENOSYS);
	cr_assert_eq(tally_setxattr(t, ino, "user.k", "v2", 2, 0), -ENOSYS);
	cr_assert_eq(tally_removexattr(t, ino, "user.k"), -ENOSYS);
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
	open_store();
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert(st.xattrs);
	cr_assert_eq(tally_getxattr(t, ino, "user.k", buf, sizeof(buf)), 2);
	cr_assert_eq(memcmp(buf, "v1", 2), 0);
}

Test(tally, branch_is_copy_on_write)
{
	char data[2 * BS];
	uint64_t ns = tu_mkns(t, "main"), ino, inodes = 0;
	struct stat d, st, st2;

	tu_fill(data, sizeof(data), 11);
	ino = mkfile(ns, "f", data, sizeof(data));
	cr_assert_eq(tally_mkdir(t, &me, ns, "sub", 0755, &d), 0);
	mkfile(d.st_ino, "g", "small", 5);
	cr_assert_eq(tally_branch(t, "main", "dev", &inodes), 0);
	cr_assert_eq(inodes, 0, "a branch in O(1) copies no inode");
	cr_assert_eq(tally_branch(t, "main", "dev", &inodes), -EEXIST);
	cr_assert_eq(tally_branch(t, "nope", "x", &inodes), -ENOENT);
	cr_assert_eq(tally_branch(t, "main", ".tally", &inodes), -EINVAL);
	/* no row copied: the counts are the rows' */
	expect_xattr(ino, "user.tally.refs", "1 1");
	cr_assert_eq(tally_lookup(t, TALLY_ROOT_INO, "dev", &st), 0);
	cr_assert_eq(tally_lookup(t, st.st_ino, "f", &st2), 0);
	cr_assert_neq(st2.st_ino, ino);
	expect_content(st2.st_ino, data, sizeof(data));
	cr_assert_eq(tally_open_file(t, st2.st_ino, O_RDWR), 0);
	cr_assert_eq(tally_write(t, st2.st_ino, "Z", 1, 0), 1);
	cr_assert_eq(tally_release(t, st2.st_ino), 0);
	expect_content(ino, data, sizeof(data));
	expect_xattr(ino, "user.tally.refs", "1 1");
	cr_assert_eq(tally_getattr(t, TALLY_ROOT_INO, &st), 0);
	cr_assert_eq(st.st_nlink, 4);
}

Test(tally, state_survives_reopen)
{
	uint64_t ns = tu_mkns(t, "main"), ino;
	struct stat st;
	char *target = NULL;

	ino = mkfile(ns, "f", "persist", 7);
	cr_assert_eq(tally_symlink(t, &me, ns, "l", "f", &st), 0);
	cr_assert_eq(tally_setxattr(t, ino, "user.a", "b", 1, 0), 0);
	tally_close(t);
	open_store();
	cr_assert_eq(tally_lookup(t, ns, "f", &st), 0);
	cr_assert_eq(st.st_ino, ino);
	expect_content(ino, "persist", 7);
	cr_assert_eq(tally_lookup(t, ns, "l", &st), 0);
	cr_assert_eq(tally_readlink(t, st.st_ino, &target), 0);
	cr_assert_str_eq(target, "f");
	free(target);
	/* new inode numbers never reuse old ones */
	cr_assert_eq(tally_mknod(t, &me, ns, "g", S_IFREG | 0644, 0, &st), 0);
	cr_assert_gt(st.st_ino, ino);
}

Test(tally, buffered_data_committed_at_close)
{
	uint64_t ns = tu_mkns(t, "main");
	struct stat st;

	cr_assert_eq(tally_mknod(t, &me, ns, "f", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), 0);
	cr_assert_eq(tally_write(t, st.st_ino, "buffered", 8, 0), 8);
	cr_assert_eq(tu_count_objects(store), 0);
	/* close of the store (unmount) commits what is buffered */
	tally_close(t);
	open_store();
	expect_content(st.st_ino, "buffered", 8);
}

/* A chmod or chown of a file whose data is still buffered commits the
 * inode's row alone, not the data (tar x sets both on every file); the
 * data's flush after it keeps what the chmod set. */
Test(tally, chmod_of_buffered_file_leaves_the_data_buffered)
{
	uint64_t ns = tu_mkns(t, "main");
	struct stat st, in;

	cr_assert_eq(tally_mknod(t, &me, ns, "f", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), 0);
	cr_assert_eq(tally_write(t, st.st_ino, "buffered", 8, 0), 8);
	memset(&in, 0, sizeof(in));
	in.st_mode = 0600;
	in.st_uid = 1000;
	in.st_gid = 1000;
	cr_assert_eq(tally_setattr(t, st.st_ino, &in,
				   TALLY_SET_MODE | TALLY_SET_UID |
					   TALLY_SET_GID,
				   &st),
		     0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(tu_count_objects(store), 0, "the chmod flushed the data");
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tu_count_objects(store), 1);
	tally_close(t);
	open_store();
	cr_assert_eq(tally_getattr(t, st.st_ino, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(st.st_uid, 1000);
	cr_assert_eq(st.st_gid, 1000);
	expect_content(st.st_ino, "buffered", 8);
}

Test(tally, statfs_reports_store_usage)
{
	char data[4 * BS];
	uint64_t ns = tu_mkns(t, "main");
	struct statvfs a, b;

	cr_assert_eq(tally_statfs(t, &a), 0);
	tu_fill(data, sizeof(data), 9);
	mkfile(ns, "f", data, sizeof(data));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_statfs(t, &b), 0);
	cr_assert_eq(b.f_namemax, 255);
	cr_assert_gt(b.f_bavail, 0);
	cr_assert_eq((b.f_blocks - b.f_bfree) - (a.f_blocks - a.f_bfree),
		     sizeof(data) / b.f_frsize);
	cr_assert_geq(b.f_files - b.f_ffree, 3);
}

Test(tally, copy_range_shares_whole_blocks)
{
	char data[3 * BS + 100], buf[3 * BS + 100];
	uint64_t ns = tu_mkns(t, "main"), a, b;
	struct stat st;

	tu_fill(data, sizeof(data), 21);
	a = mkfile(ns, "a", data, sizeof(data));
	cr_assert_eq(tally_mknod(t, &me, ns, "b", S_IFREG | 0644, 0, &st), 0);
	b = st.st_ino;
	cr_assert_eq(tally_open_file(t, b, O_RDWR), 0);
	cr_assert_eq(tally_copy_range(t, a, 0, b, 0, 1 << 30),
		     (ssize_t)sizeof(data));
	cr_assert_eq(tally_release(t, b), 0);
	cr_assert_eq(objects_now(t), 4, "nothing new stored");
	expect_xattr(a, "user.tally.refs", "2 2 2 2");
	expect_content(b, data, sizeof(data));
	/* unaligned: bytes are copied */
	cr_assert_eq(tally_open_file(t, b, O_RDWR), 0);
	cr_assert_eq(tally_copy_range(t, a, 10, b, 5, 20), 20);
	cr_assert_eq(tally_release(t, b), 0);
	memcpy(buf, data, sizeof(data));
	memmove(buf + 5, data + 10, 20);
	expect_content(b, buf, sizeof(buf));
	expect_content(a, data, sizeof(data));
	/* copy past the source's end copies nothing */
	cr_assert_eq(tally_copy_range(t, a, sizeof(data), b, 0, 10), 0);
}

/* A copy whose end would pass the largest offset is refused before any
 * path (the block-sharing one included) writes anything. */
Test(tally, copy_range_past_the_largest_offset_changes_nothing)
{
	char data[2 * BS];
	uint64_t ns = tu_mkns(t, "main"), a, b;
	off_t top = (off_t)(INT64_MAX / BS) * BS;
	struct stat st;

	tu_fill(data, sizeof(data), 22);
	a = mkfile(ns, "a", data, sizeof(data));
	b = mkfile(ns, "b", "x", 1);
	cr_assert_eq(tally_open_file(t, b, O_RDWR), 0);
	cr_assert_eq(tally_copy_range(t, a, 0, b, top, sizeof(data)), -EFBIG);
	cr_assert_eq(tally_release(t, b), 0);
	cr_assert_eq(tally_getattr(t, b, &st), 0);
	cr_assert_eq(st.st_size, 1);
	expect_xattr(a, "user.tally.refs", "1 1");
	expect_content(b, "x", 1);
}

/* statfs counts the inodes without a scan, exactly, through creates,
 * unlinks, a branch and a reopen. */
/* A name taken is found by the insert of its entry: the create fails
 * with EEXIST, whatever its kind, and leaves nothing behind */
/* @name in @parent is file @ino, of @len bytes of @data. */
static void expect_named(uint64_t parent, const char *name, uint64_t ino,
			 const void *data, size_t len)
{
	struct stat st;

	cr_assert_eq(tally_lookup(t, parent, name, &st), 0);
	cr_assert_eq(st.st_ino, ino);
	cr_assert_eq(st.st_size, (off_t)len);
	cr_assert_eq(tally_open_file(t, ino, O_RDONLY), 0);
	expect_content(ino, data, len);
	cr_assert_eq(tally_release(t, ino), 0);
}

Test(tally, creating_a_taken_name_changes_nothing)
{
	uint64_t ns = tu_mkns(t, "main"), a = mkfile(ns, "a", "AAAA", 4);
	struct statvfs before, after;
	struct stat st;

	cr_assert_eq(tally_statfs(t, &before), 0);
	cr_assert_eq(tally_create(t, &me, ns, "a", 0644, &st), -EEXIST);
	cr_assert_eq(tally_mknod(t, &me, ns, "a", S_IFIFO | 0644, 0, &st),
		     -EEXIST);
	cr_assert_eq(tally_mkdir(t, &me, ns, "a", 0755, &st), -EEXIST);
	cr_assert_eq(tally_symlink(t, &me, ns, "a", "x", &st), -EEXIST);
	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, "main", 0755, &st),
		     -EEXIST);
	cr_assert_eq(tally_statfs(t, &after), 0);
	cr_assert_eq(after.f_files - after.f_ffree,
		     before.f_files - before.f_ffree);
	expect_named(ns, "a", a, "AAAA", 4);
	/* and the name is free again once it goes */
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	cr_assert_eq(tally_mkdir(t, &me, ns, "a", 0755, &st), 0);
}

/* A link to a taken name is found by the entry's insert: EEXIST, and the
 * whole transaction rolled back, in one namespace or across two (where
 * the link made an inode and copied the block references first). */
Test(tally, linking_to_a_taken_name_changes_nothing)
{
	uint64_t ns = tu_mkns(t, "main"), other = tu_mkns(t, "other");
	uint64_t a = mkfile(ns, "a", "AAAA", 4), b = mkfile(ns, "b", "BB", 2);
	uint64_t c = mkfile(other, "c", "CCC", 3);
	struct statvfs before, after;
	struct stat st;

	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_statfs(t, &before), 0);
	cr_assert_eq(tally_link(t, a, ns, "b", &st), -EEXIST);
	cr_assert_eq(tally_link(t, a, other, "c", &st), -EEXIST);
	cr_assert_eq(tally_statfs(t, &after), 0);
	cr_assert_eq(after.f_files - after.f_ffree,
		     before.f_files - before.f_ffree);
	expect_xattr(a, "user.tally.refs", "1"); /* no reference copied */
	cr_assert_eq(tally_getattr(t, a, &st), 0);
	cr_assert_eq(st.st_nlink, 1);
	expect_named(ns, "b", b, "BB", 2);
	expect_named(other, "c", c, "CCC", 3);
	/* and the names free: both links made */
	cr_assert_eq(tally_link(t, a, ns, "a2", &st), 0);
	cr_assert_eq(tally_link(t, a, other, "a3", &st), 0);
	cr_assert_eq(tally_getattr(t, a, &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	tally_close(t);
	t = NULL;
	tu_fsck_clean(store, NULL);
}

Test(tally, statfs_counts_inodes_exactly)
{
	uint64_t ns = tu_mkns(t, "main");
	struct statvfs a, b;
	char name[16];
	uint64_t n;
	int i;

	cr_assert_eq(tally_statfs(t, &a), 0);
	for (i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		mkfile(ns, name, "x", 1);
	}
	cr_assert_eq(tally_unlink(t, ns, "f0"), 0);
	cr_assert_eq(tally_statfs(t, &b), 0);
	cr_assert_eq((b.f_files - b.f_ffree) - (a.f_files - a.f_ffree), 9);
	cr_assert_eq(tally_branch(t, "main", "dev", &n), 0);
	cr_assert_eq(n, 0, "a branch in O(1) copies no inode");
	/* the inodes stored: the branch's are the same */
	cr_assert_eq(tally_statfs(t, &b), 0);
	cr_assert_eq((b.f_files - b.f_ffree) - (a.f_files - a.f_ffree), 9);
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
	open_store();
	cr_assert_eq(tally_statfs(t, &b), 0);
	cr_assert_eq((b.f_files - b.f_ffree) - (a.f_files - a.f_ffree), 9);
}

/* An error of the metadata reaches statfs (it was read as zeros). */
Test(tally, statfs_returns_metadata_errors)
{
	struct statvfs sv;
	struct meta *m = tally_meta_lock(t);

	meta_inject_lookup(m, 1, -EIO);
	tally_meta_unlock(t);
	cr_assert_eq(tally_statfs(t, &sv), -EIO);
	cr_assert_eq(tally_statfs(t, &sv), 0, "once");
}

/* Thousands of inodes known at once (the kernel's lookups): the inode
 * table grows past its first 1024 chains several times, and every inode
 * is still found, with its own data, until the kernel forgets it. */
Test(tally, many_known_inodes_grow_the_table)
{
	enum {
		N = 6000
	};
	static uint64_t ino[N];
	struct tally_stats st;
	struct stat s;
	char name[32];
	uint64_t ns;
	int i;

	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, "ns", 0755, &s), 0);
	ns = s.st_ino;
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		ino[i] = mkfile(ns, name, name, strlen(name));
	}
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_geq(st.inodes_cached, N);
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_eq(tally_lookup(t, ns, name, &s), 0, "%s", name);
		cr_assert_eq(s.st_ino, ino[i]);
		cr_assert_eq(s.st_size, (off_t)strlen(name));
		expect_content(ino[i], name, strlen(name));
	}
	/* the kernel forgets them: create and lookup made two each */
	for (i = 0; i < N; i++)
		tally_forget(t, ino[i], 2);
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_lt(st.inodes_cached, 100, "%llu inodes still in memory",
		     (unsigned long long)st.inodes_cached);
	for (i = 0; i < N; i += 97) {
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_eq(tally_lookup(t, ns, name, &s), 0, "%s", name);
		expect_content(ino[i], name, strlen(name));
	}
}
