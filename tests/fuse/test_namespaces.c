/* SPDX-License-Identifier: MIT */
/*
 * The mount root: only namespaces (top-level directories) and the hidden
 * /.tally control directory live there.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

TestSuite(namespaces, .init = tm_init, .fini = tm_fini, .timeout = 60);

Test(namespaces, mkdir_at_root_makes_a_namespace)
{
	struct stat st;
	int isdir;

	expect_ok(mkdir(mp("main"), 0755));
	expect_ok(stat(mp("main"), &st));
	isdir = S_ISDIR(st.st_mode);
	cr_assert(eq(int, isdir, 1));
	cr_assert(eq(u32, st.st_mode & 07777, 0755));
	/* a namespace is a normal directory inside */
	expect_ok(mkdir(mp("main/sub"), 0700));
	cr_assert(eq(int, write_file(mp("main/sub/f"), "abc", 3), 0));
	cr_assert(eq(i64, file_cmp(mp("main/sub/f"), "abc", 3), -1));
	/* a second mkdir of the same name */
	expect_err(mkdir(mp("main"), 0755), EEXIST);
}

Test(namespaces, non_directories_at_root_are_eperm)
{
	expect_ok(mkdir(mp("main"), 0755));
	cr_assert(eq(int, write_file(mp("main/f"), "x", 1), 0));

	expect_err(open(mp("file"), O_WRONLY | O_CREAT, 0644), EPERM);
	expect_err(creat(mp("file2"), 0644), EPERM);
	expect_err(symlink("main", mp("lnk")), EPERM);
	expect_err(mknod(mp("fifo"), S_IFIFO | 0644, 0), EPERM);
	expect_err(mkfifo(mp("fifo2"), 0644), EPERM);
	expect_err(link(mp("main/f"), mp("hard")), EPERM);
	/* nothing was left behind */
	expect_err(lstat(mp("file"), &(struct stat){ 0 }), ENOENT);
	expect_err(lstat(mp("lnk"), &(struct stat){ 0 }), ENOENT);
	expect_err(lstat(mp("fifo"), &(struct stat){ 0 }), ENOENT);
	expect_err(lstat(mp("hard"), &(struct stat){ 0 }), ENOENT);
	/*
	 * Moving a file up to the root is refused as well. The spec names no
	 * errno for it: EPERM (no files at the root) and EXDEV (it would
	 * leave its namespace) are both reasonable.
	 */
	{
		long rc = rename(mp("main/f"), mp("f"));
		int e = errno;

		cr_assert(eq(i64, rc, -1));
		cr_assert(e == EPERM || e == EXDEV, "rename to the root: %s",
			  strerror(e));
	}
	expect_err(lstat(mp("f"), &(struct stat){ 0 }), ENOENT);
	cr_assert(eq(i64, file_cmp(mp("main/f"), "x", 1), -1));
}

Test(namespaces, rmdir_namespace)
{
	expect_ok(mkdir(mp("full"), 0755));
	expect_ok(mkdir(mp("empty"), 0755));
	cr_assert(eq(int, write_file(mp("full/f"), "data", 4), 0));

	expect_err(rmdir(mp("full")), ENOTEMPTY);
	cr_assert(eq(i64, file_cmp(mp("full/f"), "data", 4), -1));
	expect_ok(rmdir(mp("empty")));
	expect_err(stat(mp("empty"), &(struct stat){ 0 }), ENOENT);

	/* a namespace holding only a subdirectory is not empty either */
	expect_ok(unlink(mp("full/f")));
	expect_ok(mkdir(mp("full/d"), 0755));
	expect_err(rmdir(mp("full")), ENOTEMPTY);
	expect_ok(rmdir(mp("full/d")));
	expect_ok(rmdir(mp("full")));
	expect_err(stat(mp("full"), &(struct stat){ 0 }), ENOENT);
}

Test(namespaces, dot_tally_is_fixed)
{
	struct stat st;
	int isdir;

	expect_ok(stat(mp(".tally"), &st));
	isdir = S_ISDIR(st.st_mode);
	cr_assert(eq(int, isdir, 1));
	expect_ok(mkdir(mp("main"), 0755));

	expect_err(mkdir(mp(".tally"), 0755), EEXIST);
	expect_err(rmdir(mp(".tally")), EPERM);
	expect_err(rename(mp(".tally"), mp("other")), EPERM);
	expect_err(rename(mp(".tally"), mp("main/x")), EPERM);
	/* still there, still the control directory */
	expect_ok(stat(mp(".tally/ctl"), &st));
	expect_ok(stat(mp(".tally/status"), &st));
	expect_err(stat(mp("other"), &st), ENOENT);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(namespaces, readdir_root_lists_namespaces_and_dot_tally)
{
	char *want[] = { ".tally", "alpha", "beta", "gamma" };
	char *got[16];
	size_t n = 0, i;
	struct dirent *de;
	DIR *d;

	expect_ok(mkdir(mp("alpha"), 0755));
	expect_ok(mkdir(mp("beta"), 0755));
	expect_ok(mkdir(mp("gamma"), 0755));
	expect_ok(mkdir(mp("gone"), 0755));
	expect_ok(rmdir(mp("gone")));
	cr_assert(eq(int, write_file(mp("alpha/file"), "1", 1), 0));

	d = opendir(tm.mnt);
	cr_assert(ne(ptr, d, NULL), "opendir: %s", strerror(errno));
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		cr_assert(lt(sz, n, 16), "too many root entries");
		got[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(got, n, sizeof(got[0]), cmp_str);
	cr_assert(eq(sz, n, 4), "root holds %zu entries", n);
	for (i = 0; i < n; i++) {
		cr_assert(eq(str, got[i], want[i]));
		free(got[i]);
	}
}

Test(namespaces, mkfifo_inside_namespace_works)
{
	struct stat st;
	int isfifo;

	expect_ok(mkdir(mp("main"), 0755));
	expect_ok(mkfifo(mp("main/pipe"), 0640));
	expect_ok(lstat(mp("main/pipe"), &st));
	isfifo = S_ISFIFO(st.st_mode);
	cr_assert(eq(int, isfifo, 1));
	cr_assert(eq(u32, st.st_mode & 07777, 0640));
	expect_ok(symlink("pipe", mp("main/lnk")));
	expect_ok(unlink(mp("main/pipe")));
	expect_ok(unlink(mp("main/lnk")));
	expect_ok(rmdir(mp("main")));
}
