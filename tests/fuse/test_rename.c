/* SPDX-License-Identifier: MIT */
/*
 * rename(2) and renameat2(2) inside namespaces: plain moves, replacing a
 * file (whose objects go when unreferenced), RENAME_NOREPLACE,
 * RENAME_EXCHANGE, and the errors of crossing namespaces and mixing file
 * types.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

static void rename_init(void)
{
	tm_init();
	tm_mkns("ns");
	expect_ok(mkdir(mp("other"), 0755));
}

TestSuite(rename, .init = rename_init, .fini = tm_fini, .timeout = 60);

static ino_t ino_of(const char *path)
{
	struct stat st;
	int rc = lstat(path, &st);

	cr_assert(eq(int, rc, 0), "lstat %s: %s", path, strerror(errno));
	return st.st_ino;
}

Test(rename, plain_rename_keeps_the_inode)
{
	ino_t ino;

	cr_assert(eq(int, write_file(mp("ns/a"), "alpha", 5), 0));
	expect_ok(mkdir(mp("ns/dir"), 0755));
	ino = ino_of(mp("ns/a"));

	expect_ok(rename(mp("ns/a"), mp("ns/b")));
	expect_err(lstat(mp("ns/a"), &(struct stat){ 0 }), ENOENT);
	cr_assert(eq(u64, ino_of(mp("ns/b")), ino));
	cr_assert(eq(i64, file_cmp(mp("ns/b"), "alpha", 5), -1));

	/* into a subdirectory, then the directory itself */
	expect_ok(rename(mp("ns/b"), mp("ns/dir/c")));
	cr_assert(eq(u64, ino_of(mp("ns/dir/c")), ino));
	expect_ok(rename(mp("ns/dir"), mp("ns/dir2")));
	cr_assert(eq(i64, file_cmp(mp("ns/dir2/c"), "alpha", 5), -1));
	expect_err(lstat(mp("ns/dir"), &(struct stat){ 0 }), ENOENT);
	/* onto itself: a no-op */
	expect_ok(rename(mp("ns/dir2/c"), mp("ns/dir2/c")));
	cr_assert(eq(i64, file_cmp(mp("ns/dir2/c"), "alpha", 5), -1));
	/* a missing source */
	expect_err(rename(mp("ns/missing"), mp("ns/x")), ENOENT);
}

Test(rename, over_existing_file_frees_its_objects)
{
	char a[4000], b[4000], objs[64], refs[16];

	fill_random(a, sizeof(a), 31);
	fill_random(b, sizeof(b), 32);
	cr_assert(eq(int, write_file(mp("ns/a"), a, sizeof(a)), 0));
	cr_assert(eq(int, write_file(mp("ns/b"), b, sizeof(b)), 0));
	cr_assert(eq(i64, tm_count_objects(), 2));
	xattr_get(mp("ns/b"), "user.tally.objects", objs, sizeof(objs));
	objs[32] = '\0';
	cr_assert(eq(int, tm_object_exists(objs), 1));

	expect_ok(rename(mp("ns/a"), mp("ns/b")));
	expect_err(lstat(mp("ns/a"), &(struct stat){ 0 }), ENOENT);
	cr_assert(eq(i64, file_cmp(mp("ns/b"), a, sizeof(a)), -1));
	cr_assert(eq(i64, tm_wait_objects(1, 2000), 1));
	cr_assert(eq(int, tm_object_exists(objs), 0),
		  "object %s of the replaced file is still stored", objs);
	xattr_get(mp("ns/b"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1"));

	/* a replaced file whose object is still referenced keeps it */
	cr_assert(eq(int, write_file(mp("ns/c"), b, sizeof(b)), 0));
	cr_assert(eq(int, write_file(mp("ns/d"), b, sizeof(b)), 0));
	cr_assert(eq(i64, tm_count_objects(), 2));
	expect_ok(rename(mp("ns/b"), mp("ns/c")));
	cr_assert(eq(i64, tm_wait_objects(2, 500), 2));
	cr_assert(eq(i64, file_cmp(mp("ns/d"), b, sizeof(b)), -1));
	xattr_get(mp("ns/d"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1"));
}

Test(rename, over_a_hard_linked_file)
{
	struct stat st;

	cr_assert(eq(int, write_file(mp("ns/a"), "new", 3), 0));
	cr_assert(eq(int, write_file(mp("ns/x"), "linked", 6), 0));
	expect_ok(link(mp("ns/x"), mp("ns/y")));
	expect_ok(rename(mp("ns/a"), mp("ns/x")));
	cr_assert(eq(i64, file_cmp(mp("ns/x"), "new", 3), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/y"), "linked", 6), -1));
	expect_ok(lstat(mp("ns/y"), &st));
	cr_assert(eq(u64, st.st_nlink, 1));
	cr_assert(eq(i64, tm_count_objects(), 2));
	/* renaming one hard link onto another: nothing happens */
	expect_ok(link(mp("ns/y"), mp("ns/z")));
	expect_ok(rename(mp("ns/y"), mp("ns/z")));
	cr_assert(eq(i64, file_cmp(mp("ns/y"), "linked", 6), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/z"), "linked", 6), -1));
	expect_ok(lstat(mp("ns/z"), &st));
	cr_assert(eq(u64, st.st_nlink, 2));
}

Test(rename, noreplace_onto_existing_is_eexist)
{
	ino_t ia, ib;

	cr_assert(eq(int, write_file(mp("ns/a"), "aaa", 3), 0));
	cr_assert(eq(int, write_file(mp("ns/b"), "bbbb", 4), 0));
	ia = ino_of(mp("ns/a"));
	ib = ino_of(mp("ns/b"));

	expect_err(renameat2(AT_FDCWD, mp("ns/a"), AT_FDCWD, mp("ns/b"),
			     RENAME_NOREPLACE),
		   EEXIST);
	cr_assert(eq(u64, ino_of(mp("ns/a")), ia));
	cr_assert(eq(u64, ino_of(mp("ns/b")), ib));
	cr_assert(eq(i64, file_cmp(mp("ns/a"), "aaa", 3), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/b"), "bbbb", 4), -1));

	/* to a free name it is a plain rename */
	expect_ok(renameat2(AT_FDCWD, mp("ns/a"), AT_FDCWD, mp("ns/c"),
			    RENAME_NOREPLACE));
	cr_assert(eq(u64, ino_of(mp("ns/c")), ia));
	expect_err(lstat(mp("ns/a"), &(struct stat){ 0 }), ENOENT);
}

Test(rename, exchange_swaps)
{
	ino_t ifile, idir;
	struct stat st;
	int isdir;

	cr_assert(eq(int, write_file(mp("ns/a"), "aaa", 3), 0));
	cr_assert(eq(int, write_file(mp("ns/b"), "bbbb", 4), 0));
	ifile = ino_of(mp("ns/a"));
	expect_ok(renameat2(AT_FDCWD, mp("ns/a"), AT_FDCWD, mp("ns/b"),
			    RENAME_EXCHANGE));
	cr_assert(eq(i64, file_cmp(mp("ns/a"), "bbbb", 4), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/b"), "aaa", 3), -1));
	cr_assert(eq(u64, ino_of(mp("ns/b")), ifile));

	/* a directory and a file in different parents */
	expect_ok(mkdir(mp("ns/d"), 0755));
	expect_ok(mkdir(mp("ns/p"), 0755));
	cr_assert(eq(int, write_file(mp("ns/d/inner"), "in", 2), 0));
	cr_assert(eq(int, write_file(mp("ns/p/f"), "file", 4), 0));
	idir = ino_of(mp("ns/d"));
	ifile = ino_of(mp("ns/p/f"));
	expect_ok(renameat2(AT_FDCWD, mp("ns/d"), AT_FDCWD, mp("ns/p/f"),
			    RENAME_EXCHANGE));
	cr_assert(eq(u64, ino_of(mp("ns/p/f")), idir));
	cr_assert(eq(u64, ino_of(mp("ns/d")), ifile));
	cr_assert(eq(i64, file_cmp(mp("ns/p/f/inner"), "in", 2), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/d"), "file", 4), -1));
	expect_ok(lstat(mp("ns/d"), &st));
	isdir = S_ISDIR(st.st_mode);
	cr_assert(eq(int, isdir, 0));
	expect_ok(lstat(mp("ns/p/f"), &st));
	isdir = S_ISDIR(st.st_mode);
	cr_assert(eq(int, isdir, 1));
	/* nlink of the parents follows the directory */
	expect_ok(lstat(mp("ns/p"), &st));
	cr_assert(eq(u64, st.st_nlink, 3));
}

Test(rename, exchange_with_missing_target_is_enoent)
{
	cr_assert(eq(int, write_file(mp("ns/a"), "aaa", 3), 0));
	expect_err(renameat2(AT_FDCWD, mp("ns/a"), AT_FDCWD, mp("ns/none"),
			     RENAME_EXCHANGE),
		   ENOENT);
	cr_assert(eq(i64, file_cmp(mp("ns/a"), "aaa", 3), -1));
}

Test(rename, across_namespaces_is_exdev)
{
	cr_assert(eq(int, write_file(mp("ns/a"), "aaa", 3), 0));
	expect_ok(mkdir(mp("ns/d"), 0755));
	expect_err(rename(mp("ns/a"), mp("other/a")), EXDEV);
	expect_err(rename(mp("ns/d"), mp("other/d")), EXDEV);
	cr_assert(eq(int, write_file(mp("other/b"), "bbb", 3), 0));
	expect_err(renameat2(AT_FDCWD, mp("ns/a"), AT_FDCWD, mp("other/b"),
			     RENAME_EXCHANGE),
		   EXDEV);
	expect_err(rename(mp("ns/a"), mp("other/b")), EXDEV);
	cr_assert(eq(i64, file_cmp(mp("other/b"), "bbb", 3), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/a"), "aaa", 3), -1));
	expect_err(lstat(mp("other/a"), &(struct stat){ 0 }), ENOENT);
	expect_err(lstat(mp("other/d"), &(struct stat){ 0 }), ENOENT);
}

Test(rename, type_mismatch_errors)
{
	expect_ok(mkdir(mp("ns/d1"), 0755));
	expect_ok(mkdir(mp("ns/d2"), 0755));
	expect_ok(mkdir(mp("ns/empty"), 0755));
	cr_assert(eq(int, write_file(mp("ns/d2/x"), "x", 1), 0));
	cr_assert(eq(int, write_file(mp("ns/f"), "f", 1), 0));

	expect_err(rename(mp("ns/d1"), mp("ns/d2")), ENOTEMPTY);
	expect_err(rename(mp("ns/d1"), mp("ns/f")), ENOTDIR);
	expect_err(rename(mp("ns/f"), mp("ns/d1")), EISDIR);
	expect_err(unlink(mp("ns/d1")), EISDIR);
	expect_err(rmdir(mp("ns/f")), ENOTDIR);
	/* a directory into its own subtree */
	expect_err(rename(mp("ns/d2"), mp("ns/d2/sub")), EINVAL);
	cr_assert(eq(i64, file_cmp(mp("ns/d2/x"), "x", 1), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/f"), "f", 1), -1));

	/* over an empty directory is allowed */
	expect_ok(rename(mp("ns/d1"), mp("ns/empty")));
	expect_err(lstat(mp("ns/d1"), &(struct stat){ 0 }), ENOENT);
	{
		struct stat st;
		int isdir;

		expect_ok(lstat(mp("ns/empty"), &st));
		isdir = S_ISDIR(st.st_mode);
		cr_assert(eq(int, isdir, 1));
	}
}

Test(rename, replaced_open_file_lives_until_close)
{
	char a[3000], b[3000], got[3000];
	ssize_t n;
	int fd;

	fill_random(a, sizeof(a), 33);
	fill_random(b, sizeof(b), 34);
	cr_assert(eq(int, write_file(mp("ns/a"), a, sizeof(a)), 0));
	cr_assert(eq(int, write_file(mp("ns/b"), b, sizeof(b)), 0));
	fd = open(mp("ns/b"), O_RDONLY);
	cr_assert(ge(int, fd, 0));

	expect_ok(rename(mp("ns/a"), mp("ns/b")));
	cr_assert(eq(i64, file_cmp(mp("ns/b"), a, sizeof(a)), -1));
	/* the old ns/b is still readable through the handle */
	cr_assert(eq(i64, tm_count_objects(), 2));
	n = pread(fd, got, sizeof(got), 0);
	cr_assert(eq(i64, n, (long)sizeof(got)));
	cr_assert(eq(i64, first_diff(got, b, sizeof(b)), -1));
	expect_ok(close(fd));
	cr_assert(eq(i64, tm_wait_objects(1, 3000), 1));
}
