/* SPDX-License-Identifier: MIT */
/*
 * POSIX corners the other suites leave out: error codes of name
 * operations through non-directories and loops, link counts (tallyfs has
 * no EMLINK limit), the exact set of timestamps each call changes, O_EXCL
 * and O_TRUNC, ftruncate seen through other handles, and readdir while
 * other entries come and go.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

static void posix_init(void)
{
	tm_init();
	tm_mkns("ns");
	expect_ok(mkdir(mp("other"), 0755));
}

TestSuite(posix, .init = posix_init, .fini = tm_fini, .timeout = 90);

static void make_file(const char *path, const char *data)
{
	cr_assert(eq(int, write_file(path, data, strlen(data)), 0), "%s", path);
}

Test(posix, errors_through_non_directories)
{
	make_file(mp("ns/f"), "x");
	expect_ok(mkdir(mp("ns/d"), 0755));
	make_file(mp("ns/d/inner"), "y");

	/* a regular file as a path component */
	expect_err(open(mp("ns/f/x"), O_RDONLY), ENOTDIR);
	expect_err(open(mp("ns/f/x"), O_WRONLY | O_CREAT, 0644), ENOTDIR);
	expect_err(mkdir(mp("ns/f/x"), 0755), ENOTDIR);
	expect_err(unlink(mp("ns/f/x")), ENOTDIR);
	expect_err(rmdir(mp("ns/f/x")), ENOTDIR);
	expect_err(link(mp("ns/f"), mp("ns/f/x")), ENOTDIR);
	expect_err(rename(mp("ns/f"), mp("ns/f/x")), ENOTDIR);
	expect_err(symlink("t", mp("ns/f/x")), ENOTDIR);
	expect_err(open(mp("ns/f"), O_RDONLY | O_DIRECTORY), ENOTDIR);
	expect_err(opendir(mp("ns/f")) ? 0 : -1, ENOTDIR);
	/* a trailing slash names a directory */
	expect_err(open(mp("ns/f/"), O_RDONLY), ENOTDIR);
	expect_err(rename(mp("ns/f"), mp("ns/g/")), ENOTDIR);

	/* missing names */
	expect_err(unlink(mp("ns/missing")), ENOENT);
	expect_err(unlink(mp("ns/nodir/f")), ENOENT);
	expect_err(rmdir(mp("ns/missing")), ENOENT);
	expect_err(link(mp("ns/missing"), mp("ns/l")), ENOENT);
	expect_err(link(mp("ns/f"), mp("ns/nodir/l")), ENOENT);
	expect_err(link(mp("ns/missing"), mp("other/l")), ENOENT);
	expect_err(rename(mp("ns/f"), mp("ns/nodir/f")), ENOENT);
	expect_err(truncate(mp("ns/missing"), 0), ENOENT);
	expect_err(chmod(mp("ns/missing"), 0644), ENOENT);

	/* existing names */
	expect_err(link(mp("ns/f"), mp("ns/d")), EEXIST);
	expect_err(link(mp("ns/f"), mp("ns/d/inner")), EEXIST);
	make_file(mp("other/taken"), "z");
	expect_err(link(mp("ns/f"), mp("other/taken")), EEXIST);
	expect_err(mkdir(mp("ns/f"), 0755), EEXIST);
	expect_err(mkdir(mp("ns/d"), 0755), EEXIST);
	expect_err(symlink("t", mp("ns/f")), EEXIST);
	expect_err(mkfifo(mp("ns/d"), 0644), EEXIST);

	/* directories where a file is wanted, and the reverse */
	expect_err(open(mp("ns/d"), O_WRONLY), EISDIR);
	expect_err(open(mp("ns/d"), O_RDWR), EISDIR);
	expect_err(open(mp("ns/d"), O_WRONLY | O_CREAT, 0644), EISDIR);
	expect_err(truncate(mp("ns/d"), 0), EISDIR);
	expect_err(rmdir(mp("ns/d")), ENOTEMPTY);
	expect_err(rmdir(mp("ns/d/.")), EINVAL);
	expect_err(rmdir(mp("ns/d/..")), ENOTEMPTY);
	expect_err(unlink(mp("ns/d")), EISDIR);

	/* EXDEV applies to rename only: a link across namespaces copies */
	expect_err(rename(mp("ns/f"), mp("other/f")), EXDEV);
	expect_ok(link(mp("ns/f"), mp("other/f")));

	/* nothing above changed the tree */
	cr_assert(eq(i64, file_cmp(mp("ns/f"), "x", 1), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/d/inner"), "y", 1), -1));
	cr_assert(eq(i64, file_cmp(mp("other/taken"), "z", 1), -1));
	expect_err(lstat(mp("ns/l"), &(struct stat){ 0 }), ENOENT);
	expect_err(lstat(mp("ns/g"), &(struct stat){ 0 }), ENOENT);
}

Test(posix, names_of_256_bytes)
{
	char name[300];

	memset(name, 'q', 256);
	name[256] = '\0';
	/* the calls test_attr's name_length_limit leaves out */
	expect_err(unlink(mp("ns/%s", name)), ENAMETOOLONG);
	expect_err(rmdir(mp("ns/%s", name)), ENAMETOOLONG);
	expect_err(truncate(mp("ns/%s", name), 0), ENAMETOOLONG);
	expect_err(chmod(mp("ns/%s", name), 0644), ENAMETOOLONG);
	expect_err(mknod(mp("ns/%s", name), S_IFREG | 0644, 0), ENAMETOOLONG);
	expect_err(open(mp("ns/%s/x", name), O_RDONLY), ENAMETOOLONG);
}

Test(posix, symlink_loops)
{
	char target[16], path[PATH_MAX];
	struct stat st;
	int fd, i;

	expect_ok(symlink("b", mp("ns/a")));
	expect_ok(symlink("a", mp("ns/b")));
	expect_ok(symlink("self", mp("ns/self")));
	expect_err(open(mp("ns/a"), O_RDONLY), ELOOP);
	expect_err(open(mp("ns/self"), O_WRONLY | O_CREAT, 0644), ELOOP);
	expect_err(stat(mp("ns/a"), &st), ELOOP);
	expect_err(stat(mp("ns/a/x"), &st), ELOOP);
	expect_err(mkdir(mp("ns/self/x"), 0755), ELOOP);
	expect_err(chmod(mp("ns/b"), 0600), ELOOP);
	expect_err(truncate(mp("ns/self"), 0), ELOOP);
	/* the links themselves are fine */
	st = stat_of(mp("ns/a"));
	cr_assert(eq(int, S_ISLNK(st.st_mode), 1));
	expect_ok(unlink(mp("ns/self")));

	/* O_NOFOLLOW on a symlink is ELOOP even when it leads somewhere */
	make_file(mp("ns/file"), "data");
	expect_ok(symlink("file", mp("ns/tofile")));
	expect_err(open(mp("ns/tofile"), O_RDONLY | O_NOFOLLOW), ELOOP);
	expect_err(open(mp("ns/tofile"), O_WRONLY | O_CREAT | O_NOFOLLOW, 0644),
		   ELOOP);
	fd = open(mp("ns/tofile"), O_PATH | O_NOFOLLOW);
	cr_assert(ge(int, fd, 0), "O_PATH|O_NOFOLLOW: %s", strerror(errno));
	expect_ok(close(fd));
	cr_assert(eq(i64, file_cmp(mp("ns/tofile"), "data", 4), -1));

	/* Linux follows 40 links in a row, not 41 */
	for (i = 0; i < 41; i++) {
		snprintf(target, sizeof(target), i ? "c%d" : "file", i - 1);
		snprintf(path, sizeof(path), "%s", mp("ns/c%d", i));
		expect_ok(symlink(target, path));
	}
	cr_assert(eq(i64, file_cmp(mp("ns/c39"), "data", 4), -1));
	expect_err(open(mp("ns/c40"), O_RDONLY), ELOOP);

	/* O_CREAT|O_EXCL never follows: a dangling link is EEXIST, and
	 * without O_EXCL the link's target is created */
	expect_ok(symlink("made", mp("ns/dangling")));
	expect_err(open(mp("ns/dangling"), O_WRONLY | O_CREAT | O_EXCL, 0644),
		   EEXIST);
	expect_err(lstat(mp("ns/made"), &st), ENOENT);
	fd = open(mp("ns/dangling"), O_WRONLY | O_CREAT, 0644);
	cr_assert(ge(int, fd, 0));
	cr_assert(eq(i64, write(fd, "via", 3), 3));
	expect_ok(close(fd));
	cr_assert(eq(i64, file_cmp(mp("ns/made"), "via", 3), -1));
	st = stat_of(mp("ns/dangling"));
	cr_assert(eq(int, S_ISLNK(st.st_mode), 1));
}

/*
 * tallyfs has no link limit: nlink is 32 bits (as in the FUSE protocol),
 * so EMLINK would take 2^32 - 1 links. Many links and subdirectories
 * count exactly and unwind exactly.
 */
#define NLINKS 1000
#define NSUBDIRS 300

Test(posix, many_links_and_subdirectories)
{
	struct stat st;
	int i;

	make_file(mp("ns/f"), "linked");
	for (i = 0; i < NLINKS; i++) {
		int rc = link(mp("ns/f"), mp("ns/l%d", i));

		cr_assert(eq(int, rc, 0), "link %d: %s", i, strerror(errno));
	}
	st = stat_of(mp("ns/l%d", NLINKS - 1));
	cr_assert(eq(u64, st.st_nlink, NLINKS + 1));
	cr_assert(eq(u64, stat_of(mp("ns/f")).st_ino, st.st_ino));
	expect_ok(mkdir(mp("ns/d"), 0755));
	for (i = 0; i < NSUBDIRS; i++)
		expect_ok(mkdir(mp("ns/d/s%d", i), 0755));
	cr_assert(eq(u64, stat_of(mp("ns/d")).st_nlink, NSUBDIRS + 2));

	cr_assert(eq(int, tm_remount(), 0));
	cr_assert(eq(u64, stat_of(mp("ns/f")).st_nlink, NLINKS + 1));
	cr_assert(eq(u64, stat_of(mp("ns/d")).st_nlink, NSUBDIRS + 2));
	for (i = 0; i < NLINKS; i++)
		expect_ok(unlink(mp("ns/l%d", i)));
	for (i = 0; i < NSUBDIRS; i++)
		expect_ok(rmdir(mp("ns/d/s%d", i)));
	cr_assert(eq(u64, stat_of(mp("ns/f")).st_nlink, 1));
	cr_assert(eq(u64, stat_of(mp("ns/d")).st_nlink, 2));
	cr_assert(eq(i64, file_cmp(mp("ns/f"), "linked", 6), -1));
}

/* ------------------------------------------------------------------ */
/* timestamps: which of atime, mtime, ctime each call changes */

#define OLD_SEC 1000000000

/* Set atime and mtime of @path (not following) to a known old value. */
static void age(const char *path)
{
	struct timespec ts[2] = { { OLD_SEC, 1 }, { OLD_SEC, 2 } };

	expect_ok(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW));
}

/* What a call must do to one timestamp. */
enum {
	KEEP,	/* unchanged, to the nanosecond */
	UPDATE, /* set to the current time (at or after the call began, by
		 * the kernel's coarse clock: it stamps writes and links
		 * itself with the writeback cache, as on ext4) */
};

struct stamps {
	struct stat st;
};

static struct stamps before_call(const char *path)
{
	struct stamps s = { stat_of(path) };

	return s;
}

static void expect_ts(struct timespec got, struct timespec old, int want,
		      struct timespec t0, const char *path, const char *what,
		      const char *call)
{
	if (want == KEEP) {
		cr_assert(eq(i64, ts_diff_ns(got, old), 0),
			  "%s: %s of %s changed (%lld.%09ld -> %lld.%09ld)",
			  call, what, path, (long long)old.tv_sec, old.tv_nsec,
			  (long long)got.tv_sec, got.tv_nsec);
	} else {
		cr_assert(ge(i64, ts_diff_ns(got, t0), 0),
			  "%s: %s of %s not updated (%lld.%09ld, call at "
			  "%lld.%09ld)",
			  call, what, path, (long long)got.tv_sec, got.tv_nsec,
			  (long long)t0.tv_sec, t0.tv_nsec);
		cr_assert(le(i64, ts_diff_ns(got, realtime()), 0),
			  "%s: %s of %s is in the future", call, what, path);
	}
}

/* Check @path after a call that began at @t0. */
static void expect_stamps(const char *path, struct stamps old,
			  struct timespec t0, int a, int m, int c,
			  const char *call)
{
	struct stat st = stat_of(path);

	expect_ts(st.st_atim, old.st.st_atim, a, t0, path, "atime", call);
	expect_ts(st.st_mtim, old.st.st_mtim, m, t0, path, "mtime", call);
	expect_ts(st.st_ctim, old.st.st_ctim, c, t0, path, "ctime", call);
}

Test(posix, timestamps_of_file_calls)
{
	struct timespec t0, ts[2];
	struct stamps f, d;
	char buf[8];
	int fd;

	expect_ok(mkdir(mp("ns/d"), 0755));
	make_file(mp("ns/d/f"), "abc");

	/* write: mtime and ctime of the file; not atime, not the dir */
	age(mp("ns/d/f"));
	age(mp("ns/d"));
	f = before_call(mp("ns/d/f"));
	d = before_call(mp("ns/d"));
	fd = open(mp("ns/d/f"), O_WRONLY);
	cr_assert(ge(int, fd, 0));
	t0 = kernel_now();
	cr_assert(eq(i64, pwrite(fd, "Z", 1, 1), 1));
	expect_ok(fsync(fd));
	expect_ok(close(fd));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, UPDATE, UPDATE, "write");
	expect_stamps(mp("ns/d"), d, t0, KEEP, KEEP, KEEP, "write");

	/* read: nothing (noatime) */
	f = before_call(mp("ns/d/f"));
	t0 = kernel_now();
	fd = open(mp("ns/d/f"), O_RDONLY);
	cr_assert(ge(int, fd, 0));
	cr_assert(eq(i64, read(fd, buf, sizeof(buf)), 3));
	expect_ok(close(fd));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, KEEP, KEEP, "read");

	/* chmod, chown: ctime only, and not the directory's */
	f = before_call(mp("ns/d/f"));
	d = before_call(mp("ns/d"));
	t0 = kernel_now();
	expect_ok(chmod(mp("ns/d/f"), 0640));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, KEEP, UPDATE, "chmod");
	expect_stamps(mp("ns/d"), d, t0, KEEP, KEEP, KEEP, "chmod");
	f = before_call(mp("ns/d/f"));
	t0 = kernel_now();
	expect_ok(chown(mp("ns/d/f"), 12, 34));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, KEEP, UPDATE, "chown");
	expect_stamps(mp("ns/d"), d, t0, KEEP, KEEP, KEEP, "chown");

	/* truncate, ftruncate, O_TRUNC: mtime and ctime (truncate(2) to the
	 * same size may leave them, as POSIX allows: the kernel does with
	 * its writeback cache) */
	f = before_call(mp("ns/d/f"));
	t0 = kernel_now();
	expect_ok(truncate(mp("ns/d/f"), 2));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, UPDATE, UPDATE, "truncate");
	age(mp("ns/d/f"));
	f = before_call(mp("ns/d/f"));
	fd = open(mp("ns/d/f"), O_WRONLY);
	cr_assert(ge(int, fd, 0));
	t0 = kernel_now();
	expect_ok(ftruncate(fd, 2));
	expect_ok(close(fd));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, UPDATE, UPDATE,
		      "ftruncate to the same size");
	age(mp("ns/d/f"));
	f = before_call(mp("ns/d/f"));
	t0 = kernel_now();
	fd = open(mp("ns/d/f"), O_WRONLY | O_TRUNC);
	cr_assert(ge(int, fd, 0));
	expect_ok(close(fd));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, UPDATE, UPDATE, "O_TRUNC");
	cr_assert(eq(i64, stat_of(mp("ns/d/f")).st_size, 0));
	expect_stamps(mp("ns/d"), d, t0, KEEP, KEEP, KEEP, "O_TRUNC");

	/* open(O_CREAT) of an existing file changes nothing */
	age(mp("ns/d/f"));
	f = before_call(mp("ns/d/f"));
	t0 = kernel_now();
	fd = open(mp("ns/d/f"), O_WRONLY | O_CREAT, 0644);
	cr_assert(ge(int, fd, 0));
	expect_ok(close(fd));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, KEEP, KEEP,
		      "O_CREAT of an existing file");
	expect_stamps(mp("ns/d"), d, t0, KEEP, KEEP, KEEP,
		      "O_CREAT of an existing file");

	/* utimensat: UTIME_NOW / UTIME_OMIT per field, ctime always */
	f = before_call(mp("ns/d/f"));
	ts[0].tv_sec = 0;
	ts[0].tv_nsec = UTIME_NOW;
	ts[1].tv_sec = 0;
	ts[1].tv_nsec = UTIME_OMIT;
	t0 = kernel_now();
	expect_ok(utimensat(AT_FDCWD, mp("ns/d/f"), ts, 0));
	expect_stamps(mp("ns/d/f"), f, t0, UPDATE, KEEP, UPDATE,
		      "utimensat(NOW, OMIT)");
	f = before_call(mp("ns/d/f"));
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_nsec = UTIME_NOW;
	t0 = kernel_now();
	expect_ok(utimensat(AT_FDCWD, mp("ns/d/f"), ts, 0));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, UPDATE, UPDATE,
		      "utimensat(OMIT, NOW)");
	f = before_call(mp("ns/d/f"));
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_nsec = UTIME_OMIT;
	t0 = kernel_now();
	expect_ok(utimensat(AT_FDCWD, mp("ns/d/f"), ts, 0));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, KEEP, KEEP,
		      "utimensat(OMIT, OMIT)");
	/* through a descriptor, UTIME_NOW for both */
	age(mp("ns/d/f"));
	f = before_call(mp("ns/d/f"));
	fd = open(mp("ns/d/f"), O_RDONLY);
	cr_assert(ge(int, fd, 0));
	t0 = kernel_now();
	expect_ok(futimens(fd, NULL));
	expect_ok(close(fd));
	expect_stamps(mp("ns/d/f"), f, t0, UPDATE, UPDATE, UPDATE,
		      "futimens(NULL)");
}

Test(posix, timestamps_of_name_calls)
{
	struct stamps f, g, d, e, sub;
	struct timespec t0;

	expect_ok(mkdir(mp("ns/d"), 0755));
	expect_ok(mkdir(mp("ns/e"), 0755));
	make_file(mp("ns/d/f"), "f");
	make_file(mp("ns/d/g"), "g");
	age(mp("ns/d"));
	age(mp("ns/e"));
	age(mp("ns/d/f"));
	age(mp("ns/d/g"));

	/* link: ctime of the inode; mtime and ctime of the new parent only */
	f = before_call(mp("ns/d/f"));
	d = before_call(mp("ns/d"));
	e = before_call(mp("ns/e"));
	t0 = kernel_now();
	expect_ok(link(mp("ns/d/f"), mp("ns/e/f2")));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, KEEP, UPDATE, "link");
	expect_stamps(mp("ns/e"), e, t0, KEEP, UPDATE, UPDATE, "link");
	expect_stamps(mp("ns/d"), d, t0, KEEP, KEEP, KEEP, "link");

	/* unlink of one of two names: ctime of the inode, the parent's
	 * mtime and ctime */
	age(mp("ns/e"));
	f = before_call(mp("ns/d/f"));
	e = before_call(mp("ns/e"));
	t0 = kernel_now();
	expect_ok(unlink(mp("ns/e/f2")));
	expect_stamps(mp("ns/d/f"), f, t0, KEEP, KEEP, UPDATE, "unlink");
	expect_stamps(mp("ns/e"), e, t0, KEEP, UPDATE, UPDATE, "unlink");
	expect_stamps(mp("ns/d"), d, t0, KEEP, KEEP, KEEP, "unlink");

	/* rename between directories: both parents' mtime and ctime, the
	 * moved inode's ctime (as Linux does), never its mtime */
	age(mp("ns/e"));
	f = before_call(mp("ns/d/f"));
	d = before_call(mp("ns/d"));
	e = before_call(mp("ns/e"));
	t0 = kernel_now();
	expect_ok(rename(mp("ns/d/f"), mp("ns/e/f")));
	expect_stamps(mp("ns/e/f"), f, t0, KEEP, KEEP, UPDATE, "rename");
	expect_stamps(mp("ns/d"), d, t0, KEEP, UPDATE, UPDATE, "rename");
	expect_stamps(mp("ns/e"), e, t0, KEEP, UPDATE, UPDATE, "rename");

	/* rename over a name whose inode has another link: that inode
	 * loses a link, so its ctime changes; the source keeps its mtime */
	age(mp("ns/d"));
	expect_ok(link(mp("ns/d/g"), mp("ns/d/g2")));
	age(mp("ns/d"));
	age(mp("ns/e"));
	g = before_call(mp("ns/d/g2"));
	f = before_call(mp("ns/e/f"));
	d = before_call(mp("ns/d"));
	e = before_call(mp("ns/e"));
	t0 = kernel_now();
	expect_ok(rename(mp("ns/e/f"), mp("ns/d/g")));
	expect_stamps(mp("ns/d/g2"), g, t0, KEEP, KEEP, UPDATE,
		      "rename over a link");
	cr_assert(eq(u64, stat_of(mp("ns/d/g2")).st_nlink, 1));
	expect_stamps(mp("ns/d/g"), f, t0, KEEP, KEEP, UPDATE,
		      "rename over a link");
	expect_stamps(mp("ns/d"), d, t0, KEEP, UPDATE, UPDATE,
		      "rename over a link");
	expect_stamps(mp("ns/e"), e, t0, KEEP, UPDATE, UPDATE,
		      "rename over a link");

	/* mkdir and rmdir: the parent's mtime and ctime; a new node has
	 * all three stamps of its creation */
	d = before_call(mp("ns/d"));
	t0 = kernel_now();
	expect_ok(mkdir(mp("ns/d/sub"), 0755));
	expect_stamps(mp("ns/d"), d, t0, KEEP, UPDATE, UPDATE, "mkdir");
	sub = before_call(mp("ns/d/sub"));
	expect_ts(sub.st.st_atim, sub.st.st_atim, UPDATE, t0, "ns/d/sub",
		  "atime", "mkdir");
	expect_ts(sub.st.st_mtim, sub.st.st_mtim, UPDATE, t0, "ns/d/sub",
		  "mtime", "mkdir");
	expect_ts(sub.st.st_ctim, sub.st.st_ctim, UPDATE, t0, "ns/d/sub",
		  "ctime", "mkdir");
	age(mp("ns/d"));
	d = before_call(mp("ns/d"));
	t0 = kernel_now();
	expect_ok(rmdir(mp("ns/d/sub")));
	expect_stamps(mp("ns/d"), d, t0, KEEP, UPDATE, UPDATE, "rmdir");

	/* a failed call changes nothing */
	d = before_call(mp("ns/d"));
	g = before_call(mp("ns/d/g"));
	t0 = kernel_now();
	expect_err(link(mp("ns/d/g"), mp("ns/d/g2")), EEXIST);
	expect_err(rmdir(mp("ns/d/g")), ENOTDIR);
	expect_err(rename(mp("ns/d/g"), mp("other/g")), EXDEV);
	expect_stamps(mp("ns/d"), d, t0, KEEP, KEEP, KEEP, "failed calls");
	expect_stamps(mp("ns/d/g"), g, t0, KEEP, KEEP, KEEP, "failed calls");
}

/* ------------------------------------------------------------------ */
/* O_EXCL, O_TRUNC, ftruncate through several handles */

Test(posix, o_excl_and_o_trunc)
{
	char buf[16];
	int fd, fd2;

	make_file(mp("ns/f"), "contents");
	expect_ok(mkdir(mp("ns/d"), 0755));
	expect_ok(symlink("f", mp("ns/l")));
	expect_err(open(mp("ns/f"), O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	expect_err(open(mp("ns/d"), O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	expect_err(open(mp("ns/l"), O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	expect_err(open(mp("ns/d"), O_RDONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	cr_assert(eq(i64, file_cmp(mp("ns/f"), "contents", 8), -1));
	/* O_EXCL creates exactly once */
	fd = open(mp("ns/new"), O_RDWR | O_CREAT | O_EXCL, 0600);
	cr_assert(ge(int, fd, 0));
	expect_err(open(mp("ns/new"), O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST);
	expect_ok(close(fd));

	/* O_TRUNC empties the file for every handle open on it */
	fd = open(mp("ns/f"), O_RDONLY);
	cr_assert(ge(int, fd, 0));
	fd2 = open(mp("ns/f"), O_WRONLY | O_TRUNC);
	cr_assert(ge(int, fd2, 0));
	cr_assert(eq(i64, read(fd, buf, sizeof(buf)), 0));
	cr_assert(eq(i64, write(fd2, "new", 3), 3));
	cr_assert(eq(i64, pread(fd, buf, sizeof(buf), 0), 3));
	cr_assert(eq(int, memcmp(buf, "new", 3), 0));
	expect_ok(close(fd2));
	expect_ok(close(fd));
	/* O_TRUNC through a symlink truncates the target; O_TRUNC with
	 * O_RDONLY truncates too on Linux */
	expect_ok(close(open(mp("ns/l"), O_WRONLY | O_TRUNC)));
	cr_assert(eq(i64, stat_of(mp("ns/f")).st_size, 0));
	make_file(mp("ns/f"), "again");
	fd = open(mp("ns/f"), O_RDONLY | O_TRUNC);
	cr_assert(ge(int, fd, 0));
	expect_ok(close(fd));
	cr_assert(eq(i64, stat_of(mp("ns/f")).st_size, 0));
	cr_assert(eq(int, tm_remount(), 0));
	cr_assert(eq(i64, stat_of(mp("ns/f")).st_size, 0));
	cr_assert(eq(i64, file_cmp(mp("ns/new"), "", 0), -1));
}

Test(posix, ftruncate_seen_by_other_handles)
{
	static char data[3 * 65536], want[3 * 65536 + 128];
	struct stat st;
	char buf[4096];
	int a, b, c;

	fill_random(data, sizeof(data), 71);
	a = open(mp("ns/f"), O_RDWR | O_CREAT, 0644);
	b = open(mp("ns/f"), O_RDWR);
	c = open(mp("ns/f"), O_WRONLY | O_APPEND);
	cr_assert(ge(int, a, 0));
	cr_assert(ge(int, b, 0));
	cr_assert(ge(int, c, 0));
	cr_assert(eq(i64, write(a, data, sizeof(data)), (long)sizeof(data)));

	/* shrink through b: a and c see the new size */
	expect_ok(ftruncate(b, 1000));
	expect_ok(fstat(a, &st));
	cr_assert(eq(i64, st.st_size, 1000));
	expect_ok(fstat(c, &st));
	cr_assert(eq(i64, st.st_size, 1000));
	cr_assert(eq(i64, pread(a, buf, sizeof(buf), 0), 1000));
	cr_assert(eq(int, memcmp(buf, data, 1000), 0));
	cr_assert(eq(i64, pread(a, buf, sizeof(buf), 1000), 0));
	/* O_APPEND writes at the new end */
	cr_assert(eq(i64, write(c, "tail", 4), 4));
	cr_assert(eq(i64, lseek(c, 0, SEEK_CUR), 1004));
	/* a's offset is still past the end: its write leaves a hole */
	cr_assert(eq(i64, lseek(a, 0, SEEK_CUR), (long)sizeof(data)));
	cr_assert(eq(i64, write(a, "end", 3), 3));

	memset(want, 0, sizeof(want));
	memcpy(want, data, 1000);
	memcpy(want + 1000, "tail", 4);
	memcpy(want + sizeof(data), "end", 3);
	cr_assert(eq(i64, file_cmp(mp("ns/f"), want, sizeof(data) + 3), -1));

	/* grow through c (O_APPEND does not prevent ftruncate): zeros */
	expect_ok(ftruncate(c, sizeof(data) + 100));
	expect_ok(fstat(b, &st));
	cr_assert(eq(i64, st.st_size, (long)sizeof(data) + 100));
	cr_assert(eq(i64, pread(b, buf, 200, sizeof(data)), 100));
	cr_assert(eq(int, memcmp(buf, "end", 3), 0));
	cr_assert(eq(int, buf[3] | buf[50] | buf[99], 0));

	/* errors */
	expect_err(ftruncate(a, -1), EINVAL);
	expect_ok(close(c));
	c = open(mp("ns/f"), O_RDONLY);
	cr_assert(ge(int, c, 0));
	expect_err(ftruncate(c, 0), EINVAL);
	expect_ok(close(c));
	expect_ok(close(b));
	expect_ok(fsync(a));
	expect_ok(close(a));

	cr_assert(eq(int, tm_remount(), 0));
	cr_assert(eq(i64, file_cmp(mp("ns/f"), want, sizeof(data) + 100), -1));
}

/* ------------------------------------------------------------------ */
/* readdir while other names come and go */

#define NSTABLE 400
#define NCHURN 50
#define LISTINGS 15

struct churn {
	atomic_bool stop;
	atomic_long ops;
	int err;
};

static void *churn_main(void *arg)
{
	struct churn *c = arg;
	long round = 0;

	while (!atomic_load(&c->stop)) {
		int i = (int)(round % NCHURN), fd;
		char p[PATH_MAX + 32];

		/* not mp(): its buffers are not for two threads */
		snprintf(p, sizeof(p), "%s/ns/dir/churn-%02d", tm.mnt, i);

		if (round / NCHURN % 2 == 0) {
			fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
			if (fd < 0) {
				c->err = errno;
				break;
			}
			close(fd);
		} else if (unlink(p) < 0) {
			c->err = errno;
			break;
		}
		round++;
		atomic_fetch_add(&c->ops, 1);
	}
	return NULL;
}

Test(posix, readdir_during_creates_and_unlinks)
{
	static unsigned char seen[NSTABLE], churn_seen[NCHURN];
	struct churn c = { 0 };
	pthread_t th;
	int round, i;

	expect_ok(mkdir(mp("ns/dir"), 0755));
	for (i = 0; i < NSTABLE; i++) {
		int fd = open(mp("ns/dir/stable-%03d", i),
			      O_WRONLY | O_CREAT | O_EXCL, 0644);

		cr_assert(ge(int, fd, 0));
		close(fd);
	}
	cr_assert(eq(int, pthread_create(&th, NULL, churn_main, &c), 0));
	for (round = 0; round < LISTINGS; round++) {
		struct dirent *de;
		long ops0 = atomic_load(&c.ops);
		DIR *d = opendir(mp("ns/dir"));
		int n = 0;

		cr_assert(ne(ptr, d, NULL));
		memset(seen, 0, sizeof(seen));
		memset(churn_seen, 0, sizeof(churn_seen));
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") ||
			    !strcmp(de->d_name, ".."))
				continue;
			if (sscanf(de->d_name, "stable-%d", &i) == 1) {
				cr_assert(lt(int, i, NSTABLE));
				cr_assert(eq(int, seen[i], 0),
					  "round %d: '%s' listed twice", round,
					  de->d_name);
				seen[i] = 1;
				n++;
			} else if (sscanf(de->d_name, "churn-%d", &i) == 1) {
				cr_assert(lt(int, i, NCHURN));
				cr_assert(eq(int, churn_seen[i], 0),
					  "round %d: '%s' listed twice", round,
					  de->d_name);
				churn_seen[i] = 1;
			} else {
				cr_fatal("unexpected name '%s'", de->d_name);
			}
		}
		closedir(d);
		cr_assert(eq(int, n, NSTABLE),
			  "round %d: %d of %d entries that existed throughout",
			  round, n, NSTABLE);
		/* the listing really overlapped some churn */
		while (atomic_load(&c.ops) == ops0 && !c.err)
			sched_yield();
	}
	atomic_store(&c.stop, true);
	pthread_join(th, NULL);
	cr_assert(eq(int, c.err, 0), "churn: %s", strerror(c.err));
	cr_assert(gt(i64, atomic_load(&c.ops), LISTINGS));
}
