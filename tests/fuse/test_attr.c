/* SPDX-License-Identifier: MIT */
/*
 * Inode attributes on a real mount: chmod/chown/utimensat, ctime and
 * mtime updates, directory link counts, name length limits, symlinks.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

static void attr_init(void)
{
	tm_init();
	tm_mkns("ns");
}

TestSuite(attr, .init = attr_init, .fini = tm_fini, .timeout = 60);

/* Assert that a is strictly later than b. */
static void expect_later(struct timespec a, struct timespec b, const char *what)
{
	int64_t d = ts_diff_ns(a, b);

	cr_assert(gt(i64, d, 0),
		  "%s did not advance (%lld.%09ld -> "
		  "%lld.%09ld)",
		  what, (long long)b.tv_sec, b.tv_nsec, (long long)a.tv_sec,
		  a.tv_nsec);
}

/* Assert that t lies within [lo - slack, hi + slack]: the daemon reads
 * its own clock, possibly a coarse one. */
static void expect_between(struct timespec t, struct timespec lo,
			   struct timespec hi, const char *what)
{
	const int64_t slack = 20 * 1000000LL;
	int64_t a = ts_diff_ns(t, lo), b = ts_diff_ns(hi, t);

	cr_assert(ge(i64, a, -slack), "%s %lld.%09ld is before %lld.%09ld",
		  what, (long long)t.tv_sec, t.tv_nsec, (long long)lo.tv_sec,
		  lo.tv_nsec);
	cr_assert(ge(i64, b, -slack), "%s %lld.%09ld is after %lld.%09ld", what,
		  (long long)t.tv_sec, t.tv_nsec, (long long)hi.tv_sec,
		  hi.tv_nsec);
}

Test(attr, chmod_chown_exact)
{
	struct stat st;

	cr_assert(eq(int, write_file(mp("ns/f"), "x", 1), 0));
	expect_ok(chmod(mp("ns/f"), 0751));
	st = stat_of(mp("ns/f"));
	cr_assert(eq(u32, st.st_mode, S_IFREG | 0751));
	expect_ok(chmod(mp("ns/f"), 04710));
	st = stat_of(mp("ns/f"));
	cr_assert(eq(u32, st.st_mode, S_IFREG | 04710));

	expect_ok(chown(mp("ns/f"), 1234, 5678));
	st = stat_of(mp("ns/f"));
	cr_assert(eq(u32, st.st_uid, 1234));
	cr_assert(eq(u32, st.st_gid, 5678));
	expect_ok(chown(mp("ns/f"), (uid_t)-1, 42));
	st = stat_of(mp("ns/f"));
	cr_assert(eq(u32, st.st_uid, 1234));
	cr_assert(eq(u32, st.st_gid, 42));

	expect_ok(mkdir(mp("ns/d"), 0700));
	expect_ok(chmod(mp("ns/d"), 01777));
	expect_ok(chown(mp("ns/d"), 7, 8));
	st = stat_of(mp("ns/d"));
	cr_assert(eq(u32, st.st_mode, S_IFDIR | 01777));
	cr_assert(eq(u32, st.st_uid, 7));
	cr_assert(eq(u32, st.st_gid, 8));

	/* the creator owns new nodes: root here */
	st = stat_of(mp("ns"));
	cr_assert(eq(u32, st.st_uid, 0));
	cr_assert(eq(u32, st.st_gid, 0));
}

Test(attr, utimensat_explicit_and_now)
{
	struct timespec ts[2] = { { 1000000000, 123456789 },
				  { 1234567890, 987654321 } };
	struct timespec before, after;
	struct stat st;

	cr_assert(eq(int, write_file(mp("ns/f"), "x", 1), 0));
	expect_ok(utimensat(AT_FDCWD, mp("ns/f"), ts, 0));
	st = stat_of(mp("ns/f"));
	cr_assert(eq(i64, st.st_atim.tv_sec, 1000000000));
	cr_assert(eq(i64, st.st_atim.tv_nsec, 123456789));
	cr_assert(eq(i64, st.st_mtim.tv_sec, 1234567890));
	cr_assert(eq(i64, st.st_mtim.tv_nsec, 987654321));

	/* UTIME_OMIT keeps one, UTIME_NOW sets the other to now */
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_nsec = UTIME_NOW;
	before = realtime();
	expect_ok(utimensat(AT_FDCWD, mp("ns/f"), ts, 0));
	after = realtime();
	st = stat_of(mp("ns/f"));
	cr_assert(eq(i64, st.st_atim.tv_sec, 1000000000));
	cr_assert(eq(i64, st.st_atim.tv_nsec, 123456789));
	expect_between(st.st_mtim, before, after, "mtime");
	expect_between(st.st_ctim, before, after, "ctime");

	/* times == NULL: both now */
	msleep(20);
	before = realtime();
	expect_ok(utimensat(AT_FDCWD, mp("ns/f"), NULL, 0));
	after = realtime();
	st = stat_of(mp("ns/f"));
	expect_between(st.st_atim, before, after, "atime");
	expect_between(st.st_mtim, before, after, "mtime");

	/* on a symlink itself */
	expect_ok(symlink("f", mp("ns/l")));
	ts[0].tv_sec = 5;
	ts[0].tv_nsec = 6;
	ts[1].tv_sec = 7;
	ts[1].tv_nsec = 8;
	expect_ok(utimensat(AT_FDCWD, mp("ns/l"), ts, AT_SYMLINK_NOFOLLOW));
	st = stat_of(mp("ns/l"));
	cr_assert(eq(i64, st.st_atim.tv_sec, 5));
	cr_assert(eq(i64, st.st_atim.tv_nsec, 6));
	cr_assert(eq(i64, st.st_mtim.tv_sec, 7));
	cr_assert(eq(i64, st.st_mtim.tv_nsec, 8));
}

Test(attr, ctime_changes)
{
	struct stat s0, s1;

	cr_assert(eq(int, write_file(mp("ns/f"), "x", 1), 0));
	s0 = stat_of(mp("ns/f"));

	msleep(20);
	expect_ok(chmod(mp("ns/f"), 0600));
	s1 = stat_of(mp("ns/f"));
	expect_later(s1.st_ctim, s0.st_ctim, "ctime on chmod");
	cr_assert(eq(i64, ts_diff_ns(s1.st_mtim, s0.st_mtim), 0),
		  "chmod changed mtime");

	msleep(20);
	s0 = s1;
	expect_ok(chown(mp("ns/f"), 1, 1));
	s1 = stat_of(mp("ns/f"));
	expect_later(s1.st_ctim, s0.st_ctim, "ctime on chown");

	msleep(20);
	s0 = s1;
	expect_ok(link(mp("ns/f"), mp("ns/g")));
	s1 = stat_of(mp("ns/f"));
	expect_later(s1.st_ctim, s0.st_ctim, "ctime on link");

	msleep(20);
	s0 = s1;
	expect_ok(rename(mp("ns/f"), mp("ns/h")));
	s1 = stat_of(mp("ns/h"));
	expect_later(s1.st_ctim, s0.st_ctim, "ctime on rename");

	msleep(20);
	s0 = s1;
	expect_ok(unlink(mp("ns/g")));
	s1 = stat_of(mp("ns/h"));
	expect_later(s1.st_ctim, s0.st_ctim, "ctime on unlink of a link");
	cr_assert(eq(u64, s1.st_nlink, 1));

	msleep(20);
	s0 = s1;
	cr_assert(eq(int, write_file(mp("ns/h"), "yy", 2), 0));
	s1 = stat_of(mp("ns/h"));
	expect_later(s1.st_mtim, s0.st_mtim, "mtime on write");
	expect_later(s1.st_ctim, s0.st_ctim, "ctime on write");

	msleep(20);
	s0 = s1;
	expect_ok(truncate(mp("ns/h"), 100));
	s1 = stat_of(mp("ns/h"));
	expect_later(s1.st_mtim, s0.st_mtim, "mtime on truncate");
	expect_later(s1.st_ctim, s0.st_ctim, "ctime on truncate");
}

Test(attr, parent_times_change_on_create_and_unlink)
{
	struct stat d0, d1;
	int fd;

	expect_ok(mkdir(mp("ns/d"), 0755));
	d0 = stat_of(mp("ns/d"));

	msleep(20);
	fd = open(mp("ns/d/f"), O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert(ge(int, fd, 0));
	expect_ok(close(fd));
	d1 = stat_of(mp("ns/d"));
	expect_later(d1.st_mtim, d0.st_mtim, "dir mtime on create");
	expect_later(d1.st_ctim, d0.st_ctim, "dir ctime on create");

	msleep(20);
	d0 = d1;
	expect_ok(unlink(mp("ns/d/f")));
	d1 = stat_of(mp("ns/d"));
	expect_later(d1.st_mtim, d0.st_mtim, "dir mtime on unlink");
	expect_later(d1.st_ctim, d0.st_ctim, "dir ctime on unlink");

	msleep(20);
	d0 = d1;
	expect_ok(mkdir(mp("ns/d/sub"), 0755));
	d1 = stat_of(mp("ns/d"));
	expect_later(d1.st_mtim, d0.st_mtim, "dir mtime on mkdir");

	msleep(20);
	d0 = d1;
	expect_ok(rename(mp("ns/d/sub"), mp("ns/sub")));
	d1 = stat_of(mp("ns/d"));
	expect_later(d1.st_mtim, d0.st_mtim, "dir mtime on rename out");

	msleep(20);
	d0 = d1;
	expect_ok(symlink("target", mp("ns/d/l")));
	d1 = stat_of(mp("ns/d"));
	expect_later(d1.st_mtim, d0.st_mtim, "dir mtime on symlink");
}

Test(attr, directory_nlink_counts_subdirectories)
{
	struct stat st;

	st = stat_of(mp("ns"));
	cr_assert(eq(u64, st.st_nlink, 2));
	expect_ok(mkdir(mp("ns/d"), 0755));
	st = stat_of(mp("ns/d"));
	cr_assert(eq(u64, st.st_nlink, 2));
	expect_ok(mkdir(mp("ns/d/a"), 0755));
	expect_ok(mkdir(mp("ns/d/b"), 0755));
	cr_assert(eq(int, write_file(mp("ns/d/file"), "f", 1), 0));
	expect_ok(mkfifo(mp("ns/d/fifo"), 0644));
	st = stat_of(mp("ns/d"));
	cr_assert(eq(u64, st.st_nlink, 4));
	st = stat_of(mp("ns"));
	cr_assert(eq(u64, st.st_nlink, 3));

	expect_ok(rmdir(mp("ns/d/a")));
	st = stat_of(mp("ns/d"));
	cr_assert(eq(u64, st.st_nlink, 3));
	/* moving a subdirectory moves its ".." link */
	expect_ok(rename(mp("ns/d/b"), mp("ns/b")));
	st = stat_of(mp("ns/d"));
	cr_assert(eq(u64, st.st_nlink, 2));
	st = stat_of(mp("ns"));
	cr_assert(eq(u64, st.st_nlink, 4));
}

Test(attr, name_length_limit)
{
	char name[300], path[PATH_MAX], ok255[PATH_MAX];
	int fd;

	memset(name, 'n', 255);
	name[255] = '\0';
	snprintf(path, sizeof(path), "%s", mp("ns/%s", name));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert(ge(int, fd, 0), "255-byte name: %s", strerror(errno));
	expect_ok(close(fd));
	cr_assert(eq(int, write_file(path, "ok", 2), 0));
	cr_assert(eq(i64, file_cmp(path, "ok", 2), -1));
	snprintf(ok255, sizeof(ok255), "%s", path);
	name[0] = 'd';
	expect_ok(mkdir(mp("ns/%s", name), 0755));
	name[0] = 's';
	expect_ok(symlink("t", mp("ns/%s", name)));

	memset(name, 'm', 256);
	name[256] = '\0';
	snprintf(path, sizeof(path), "%s", mp("ns/%s", name));
	expect_err(open(path, O_WRONLY | O_CREAT, 0644), ENAMETOOLONG);
	expect_err(mkdir(path, 0755), ENAMETOOLONG);
	expect_err(symlink("t", path), ENAMETOOLONG);
	expect_err(mkfifo(path, 0644), ENAMETOOLONG);
	expect_err(link(ok255, path), ENAMETOOLONG);
	expect_err(rename(ok255, path), ENAMETOOLONG);
	cr_assert(eq(i64, file_cmp(ok255, "ok", 2), -1));
	expect_err(stat(path, &(struct stat){ 0 }), ENAMETOOLONG);
	expect_err(mkdir(mp("%s", name), 0755), ENAMETOOLONG);
}

Test(attr, symlink_target_exact)
{
	char target[2048], got[4096];
	struct stat st;
	ssize_t n;
	int islnk;

	expect_ok(symlink("../some where/ünïcode\tname", mp("ns/l1")));
	n = readlink(mp("ns/l1"), got, sizeof(got));
	cr_assert(eq(i64, n, (long)strlen("../some where/ünïcode\tname")));
	got[n] = '\0';
	cr_assert(eq(str, got, "../some where/ünïcode\tname"));
	st = stat_of(mp("ns/l1"));
	islnk = S_ISLNK(st.st_mode);
	cr_assert(eq(int, islnk, 1));
	cr_assert(eq(i64, st.st_size, n));

	/* a long target */
	memset(target, 'x', sizeof(target) - 1);
	target[sizeof(target) - 1] = '\0';
	target[100] = '/';
	expect_ok(symlink(target, mp("ns/l2")));
	n = readlink(mp("ns/l2"), got, sizeof(got));
	cr_assert(eq(i64, n, (long)strlen(target)));
	got[n] = '\0';
	cr_assert(eq(str, got, target));

	/* a symlink that resolves inside the mount */
	cr_assert(eq(int, write_file(mp("ns/real"), "real", 4), 0));
	expect_ok(symlink("real", mp("ns/l3")));
	cr_assert(eq(i64, file_cmp(mp("ns/l3"), "real", 4), -1));
	expect_err(readlink(mp("ns/real"), got, sizeof(got)), EINVAL);
}

Test(attr, futimens_before_close_sticks)
{
	struct timespec ts[2] = { { 1500000000, 11 }, { 1600000000, 22 } };
	struct stat st;
	int fd;

	/* cp -p and tar set the times on the open handle, then close */
	fd = open(mp("ns/f"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(ge(int, fd, 0));
	cr_assert(eq(i64, write(fd, "some data", 9), 9));
	expect_ok(futimens(fd, ts));
	expect_ok(fchmod(fd, 0600));
	expect_ok(close(fd));
	st = stat_of(mp("ns/f"));
	cr_assert(eq(i64, st.st_mtim.tv_sec, 1600000000));
	cr_assert(eq(i64, st.st_mtim.tv_nsec, 22));
	cr_assert(eq(i64, st.st_atim.tv_sec, 1500000000));
	cr_assert(eq(i64, st.st_atim.tv_nsec, 11));
	cr_assert(eq(u32, st.st_mode, S_IFREG | 0600));
	cr_assert(eq(i64, file_cmp(mp("ns/f"), "some data", 9), -1));

	/* and they survive a remount, where the kernel's cache is gone */
	cr_assert(eq(int, tm_remount(), 0));
	st = stat_of(mp("ns/f"));
	cr_assert(eq(i64, st.st_mtim.tv_sec, 1600000000));
	cr_assert(eq(i64, st.st_mtim.tv_nsec, 22));
	cr_assert(eq(u32, st.st_mode, S_IFREG | 0600));
	cr_assert(eq(i64, st.st_size, 9));
}

Test(attr, devices_umask_and_setgid_directories)
{
	struct stat st;
	mode_t old;
	int fd, isdir;

	/* a character device inside a namespace keeps its rdev */
	expect_ok(mknod(mp("ns/null"), S_IFCHR | 0640, makedev(1, 3)));
	st = stat_of(mp("ns/null"));
	cr_assert(eq(u32, st.st_mode, S_IFCHR | 0640));
	cr_assert(eq(u64, st.st_rdev, makedev(1, 3)));

	/* the kernel applies the umask */
	old = umask(027);
	fd = open(mp("ns/masked"), O_WRONLY | O_CREAT, 0666);
	umask(old);
	cr_assert(ge(int, fd, 0));
	expect_ok(close(fd));
	st = stat_of(mp("ns/masked"));
	cr_assert(eq(u32, st.st_mode, S_IFREG | 0640));

	/* BSD group semantics under a set-group-ID directory */
	expect_ok(mkdir(mp("ns/sgid"), 0775));
	expect_ok(chown(mp("ns/sgid"), 0, 4321));
	expect_ok(chmod(mp("ns/sgid"), 02775));
	cr_assert(eq(int, write_file(mp("ns/sgid/f"), "x", 1), 0));
	st = stat_of(mp("ns/sgid/f"));
	cr_assert(eq(u32, st.st_gid, 4321), "file gid under a setgid dir");
	expect_ok(mkdir(mp("ns/sgid/d"), 0755));
	st = stat_of(mp("ns/sgid/d"));
	cr_assert(eq(u32, st.st_gid, 4321), "dir gid under a setgid dir");
	isdir = S_ISDIR(st.st_mode);
	cr_assert(eq(int, isdir, 1));
	cr_assert(eq(u32, st.st_mode & 07777, 02755),
		  "a subdirectory inherits S_ISGID");

	cr_assert(eq(int, tm_remount(), 0));
	st = stat_of(mp("ns/null"));
	cr_assert(eq(u64, st.st_rdev, makedev(1, 3)));
	st = stat_of(mp("ns/sgid/f"));
	cr_assert(eq(u32, st.st_gid, 4321));
}
