/* SPDX-License-Identifier: MIT */
/*
 * What survives the daemon: a clean remount keeps inode numbers, contents,
 * attributes and xattrs; fsync'ed (and closed) data survives kill -9.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

TestSuite(persist, .init = tm_init, .fini = tm_fini, .timeout = 90);

struct node {
	const char *path;
	struct stat st;
};

static void snap(struct node *n, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++) {
		int rc = lstat(mp("%s", n[i].path), &n[i].st);

		cr_assert(eq(int, rc, 0), "lstat %s: %s", n[i].path,
			  strerror(errno));
	}
}

/* Write one command to the control file: 0 or -errno. */
static int ctl_write(const char *path, const char *cmd)
{
	ssize_t n;
	int fd = open(path, O_WRONLY), rc = 0;

	if (fd < 0)
		return -errno;
	n = write(fd, cmd, strlen(cmd));
	if (n < 0)
		rc = -errno;
	close(fd);
	return rc;
}

Test(persist, remount_keeps_inodes_contents_xattrs)
{
	struct node n[] = {
		{ .path = "a" },	  { .path = "b" },
		{ .path = "a/dir" },	  { .path = "a/dir/file" },
		{ .path = "a/dir/hard" }, { .path = "a/big" },
		{ .path = "a/link" },	  { .path = "a/fifo" },
		{ .path = "b/copy" },	  { .path = "a/empty" },
	};
	struct node m[sizeof(n) / sizeof(n[0])];
	const size_t count = sizeof(n) / sizeof(n[0]);
	struct timespec times[2] = { { 1111111111, 1 }, { 1222222222, 2 } };
	char *big = malloc(3 * MIB + 17), val[256], objs[256];
	char target[64];
	size_t i;
	ssize_t len;

	cr_assert(ne(ptr, big, NULL));
	fill_random(big, 3 * MIB + 17, 51);
	expect_ok(mkdir(mp("a"), 0755));
	expect_ok(mkdir(mp("b"), 0700));
	expect_ok(mkdir(mp("a/dir"), 0750));
	cr_assert(eq(int, write_file(mp("a/dir/file"), "small file", 10), 0));
	expect_ok(link(mp("a/dir/file"), mp("a/dir/hard")));
	cr_assert(eq(int, write_file(mp("a/big"), big, 3 * MIB + 17), 0));
	expect_ok(symlink("dir/file", mp("a/link")));
	expect_ok(mkfifo(mp("a/fifo"), 0600));
	expect_ok(link(mp("a/big"), mp("b/copy")));
	cr_assert(eq(int, write_file(mp("a/empty"), "", 0), 0));
	expect_ok(setxattr(mp("a/big"), "user.k", "value", 5, 0));
	expect_ok(setxattr(mp("a/dir"), "user.d", "dir value", 9, 0));
	expect_ok(chmod(mp("a/dir/file"), 0604));
	expect_ok(chown(mp("a/dir/file"), 321, 654));
	expect_ok(utimensat(AT_FDCWD, mp("a/big"), times, 0));
	xattr_get(mp("a/big"), "user.tally.objects", objs, sizeof(objs));
	snap(n, count);
	memcpy(m, n, sizeof(n));

	cr_assert(eq(int, tm_unmount(), 0), "the daemon did not exit 0");
	cr_assert(eq(int, tm_is_mounted(), 0));
	cr_assert(eq(int, tm_run_fsck(), 0), "tallyfsck after a clean unmount");
	cr_assert(eq(int, tm_mount(), 0));
	snap(m, count);

	for (i = 0; i < count; i++) {
		cr_assert(eq(u64, m[i].st.st_ino, n[i].st.st_ino),
			  "st_ino of %s", n[i].path);
		cr_assert(eq(u32, m[i].st.st_mode, n[i].st.st_mode),
			  "st_mode of %s", n[i].path);
		cr_assert(eq(u64, m[i].st.st_nlink, n[i].st.st_nlink),
			  "st_nlink of %s", n[i].path);
		cr_assert(eq(u32, m[i].st.st_uid, n[i].st.st_uid),
			  "st_uid of %s", n[i].path);
		cr_assert(eq(u32, m[i].st.st_gid, n[i].st.st_gid),
			  "st_gid of %s", n[i].path);
		cr_assert(eq(i64, m[i].st.st_size, n[i].st.st_size),
			  "st_size of %s", n[i].path);
		cr_assert(eq(i64, ts_diff_ns(m[i].st.st_mtim, n[i].st.st_mtim),
			     0),
			  "st_mtime of %s", n[i].path);
		cr_assert(eq(i64, ts_diff_ns(m[i].st.st_ctim, n[i].st.st_ctim),
			     0),
			  "st_ctime of %s", n[i].path);
	}
	cr_assert(eq(u64, m[4].st.st_ino, m[3].st.st_ino));
	cr_assert(eq(u64, m[3].st.st_nlink, 2));
	cr_assert(eq(i64, m[5].st.st_mtim.tv_sec, 1222222222));
	cr_assert(eq(i64, m[5].st.st_mtim.tv_nsec, 2));
	cr_assert(eq(i64, m[5].st.st_atim.tv_sec, 1111111111));
	cr_assert(eq(i64, m[5].st.st_atim.tv_nsec, 1));

	cr_assert(eq(i64, file_cmp(mp("a/dir/file"), "small file", 10), -1));
	cr_assert(eq(i64, file_cmp(mp("a/dir/hard"), "small file", 10), -1));
	cr_assert(eq(i64, file_cmp(mp("a/big"), big, 3 * MIB + 17), -1));
	cr_assert(eq(i64, file_cmp(mp("b/copy"), big, 3 * MIB + 17), -1));
	cr_assert(eq(i64, file_cmp(mp("a/empty"), "", 0), -1));
	len = readlink(mp("a/link"), target, sizeof(target) - 1);
	cr_assert(eq(i64, len, 8));
	target[len] = '\0';
	cr_assert(eq(str, target, "dir/file"));
	xattr_get(mp("a/big"), "user.k", val, sizeof(val));
	cr_assert(eq(str, val, "value"));
	xattr_get(mp("a/dir"), "user.d", val, sizeof(val));
	cr_assert(eq(str, val, "dir value"));
	xattr_get(mp("a/big"), "user.tally.objects", val, sizeof(val));
	cr_assert(eq(str, val, objs));
	xattr_get(mp("a/big"), "user.tally.refs", val, sizeof(val));
	cr_assert(eq(str, val, "2 2 2 2"));

	/* new inodes after the remount do not reuse old numbers */
	cr_assert(eq(int, write_file(mp("a/new"), "n", 1), 0));
	{
		struct stat st;

		expect_ok(lstat(mp("a/new"), &st));
		for (i = 0; i < count; i++)
			cr_assert(ne(u64, st.st_ino, n[i].st.st_ino),
				  "a/new reuses the inode of %s", n[i].path);
	}
	free(big);
}

Test(persist, fsynced_data_survives_kill)
{
	const size_t len = 3 * MIB + 5;
	char *data = malloc(len);
	struct stat st;
	ssize_t w;
	int fd;

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, len, 52);
	expect_ok(mkdir(mp("ns"), 0755));

	fd = open(mp("ns/synced"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	cr_assert(ge(int, fd, 0));
	w = write(fd, data, len);
	cr_assert(eq(i64, w, (long)len));
	expect_ok(fsync(fd));
	/* an overwrite of committed data, fsync'ed again */
	memcpy(data + MIB - 2, "OVERWRITTEN", 11);
	w = pwrite(fd, "OVERWRITTEN", 11, MIB - 2);
	cr_assert(eq(i64, w, 11));
	expect_ok(fdatasync(fd));

	tm_kill_daemon();
	close(fd); /* the connection is gone: whatever close says */
	cr_assert(eq(int, tm_is_mounted(), 0));
	cr_assert(eq(int, tm_mount(), 0));

	expect_ok(stat(mp("ns/synced"), &st));
	cr_assert(eq(i64, st.st_size, (long)len));
	cr_assert(eq(i64, file_cmp(mp("ns/synced"), data, len), -1));
	/* nothing written was unfsync'ed: the store checks clean */
	cr_assert(eq(int, tm_unmount(), 0), "the daemon did not exit 0");
	cr_assert(eq(int, tm_run_fsck(), 0), "tallyfsck after kill -9");
	free(data);
}

Test(persist, closed_data_survives_kill)
{
	const size_t len = 2 * MIB + 100;
	char *data = malloc(len);
	char refs[64];

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, len, 53);
	expect_ok(mkdir(mp("ns"), 0755));
	cr_assert(eq(int, write_file(mp("ns/closed"), data, len), 0));
	expect_ok(mkdir(mp("ns/dir"), 0755));
	expect_ok(symlink("../closed", mp("ns/dir/l")));
	/* a close starts its flush without waiting; drain waits */
	cr_assert(eq(int, ctl_write(mp(".tally/ctl"), "drain\n"), 0));

	tm_kill_daemon();
	cr_assert(eq(int, tm_mount(), 0));
	cr_assert(eq(i64, file_cmp(mp("ns/closed"), data, len), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/dir/l"), data, len), -1));
	xattr_get(mp("ns/closed"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1 1 1"));
	free(data);
}

Test(persist, second_mount_of_a_store_is_refused)
{
	char other[PATH_MAX + 32], logp[PATH_MAX + 32];
	const char *bin = getenv("TALLYFS");
	int status;
	pid_t pid;

	snprintf(other, sizeof(other), "%s/mnt2", tm.dir);
	snprintf(logp, sizeof(logp), "%s/second.log", tm.dir);
	expect_ok(mkdir(other, 0755));
	pid = fork();
	cr_assert(ge(int, pid, 0));
	if (pid == 0) {
		int lfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (lfd >= 0) {
			dup2(lfd, 1);
			dup2(lfd, 2);
		}
		alarm(20);
		execl(bin, bin, "-f", tm.store, other, (char *)NULL);
		_exit(127);
	}
	cr_assert(eq(int, waitpid(pid, &status, 0), pid));
	{
		int exited = WIFEXITED(status);
		int code = WEXITSTATUS(status);
		size_t n;
		char *msg = read_file(logp, &n);

		if (!exited) {
			/* it mounted after all: take it down again */
			umount2(other, MNT_DETACH);
		}
		cr_assert(eq(int, exited, 1), "the second daemon was killed");
		cr_assert(ne(int, code, 0), "a second mount of the store "
					    "succeeded");
		cr_assert(ne(ptr, msg, NULL));
		cr_assert(gt(sz, n, 0), "no message names the problem");
		cr_assert(ne(ptr, strstr(msg, tm.store), NULL),
			  "the message does not name the store: '%s'", msg);
		free(msg);
	}
	/* the first mount is unharmed */
	expect_ok(mkdir(mp("still"), 0755));
}

Test(persist, truncated_tail_stays_zero_after_remount)
{
	char *want = malloc(2 * MIB);

	cr_assert(ne(ptr, want, NULL));
	expect_ok(mkdir(mp("ns"), 0755));
	fill_random(want, 2 * MIB, 54);
	cr_assert(eq(int, write_file(mp("ns/t"), want, 2 * MIB), 0));
	expect_ok(truncate(mp("ns/t"), MIB + 300));
	expect_ok(truncate(mp("ns/t"), 2 * MIB));
	memset(want + MIB + 300, 0, MIB - 300);
	cr_assert(eq(int, write_file(mp("ns/u"), "0123456789", 10), 0));
	expect_ok(truncate(mp("ns/u"), 4));
	expect_ok(truncate(mp("ns/u"), 8));

	cr_assert(eq(int, tm_remount(), 0));
	cr_assert(eq(i64, file_cmp(mp("ns/t"), want, 2 * MIB), -1));
	cr_assert(eq(i64, file_cmp(mp("ns/u"), "0123\0\0\0\0", 8), -1));
	free(want);
}

/* Write @bytes at @off of @fd, and into @model. */
static void put(int fd, char *model, const char *bytes, size_t len, off_t off)
{
	cr_assert(eq(i64, pwrite(fd, bytes, len, off), (long)len));
	memcpy(model + off, bytes, len);
}

/*
 * The kernel's writeback cache keeps what write() accepted in its pages.
 * What a file open for writing holds there is taken by a link into another
 * namespace, a branch, copy_file_range and drain as it is, and a drain
 * makes it durable: all before any close. With a shared store (meta=) the
 * cache is off and the same must hold.
 */
Test(persist, written_pages_reach_links_branches_copies_and_drain)
{
	const size_t len = 3 * MIB + 123;
	char *model = malloc(len), *status, *map;
	size_t slen;
	int fd, fd2;

	cr_assert(ne(ptr, model, NULL));
	fill_random(model, len, 54);
	status = read_file(mp(".tally/status"), &slen);
	cr_assert(ne(ptr, status, NULL));
	cr_assert(ne(ptr,
		     strstr(status, tm.meta[0] ? "\"writeback_cache\": false"
					       : "\"writeback_cache\": true"),
		     NULL),
		  "status: %s", status);
	free(status);
	expect_ok(mkdir(mp("A"), 0755));
	expect_ok(mkdir(mp("B"), 0755));
	fd = open(mp("A/f"), O_RDWR | O_CREAT, 0644);
	cr_assert(ge(int, fd, 0));
	cr_assert(eq(i64, write(fd, model, len), (long)len));
	put(fd, model, "after the first write", 21, 8190);

	/* a link into another namespace copies what the file holds now */
	expect_ok(link(mp("A/f"), mp("B/f")));
	cr_assert(eq(i64, file_cmp(mp("B/f"), model, len), -1));

	/* a branch */
	put(fd, model, "before the branch", 17, 2 * MIB - 3);
	cr_assert(eq(int, ctl_write(mp(".tally/ctl"), "branch A C\n"), 0));
	cr_assert(eq(i64, file_cmp(mp("C/f"), model, len), -1));

	/* pages written through a shared mapping, then a link */
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert(ne(ptr, map, MAP_FAILED));
	memcpy(map + 5000, "through the map", 15);
	memcpy(model + 5000, "through the map", 15);
	expect_ok(link(mp("A/f"), mp("B/g")));
	cr_assert(eq(i64, file_cmp(mp("B/g"), model, len), -1));
	expect_ok(munmap(map, len));

	/* copy_file_range into another file */
	put(fd, model, "before the copy", 15, 3 * MIB);
	fd2 = open(mp("A/copy"), O_RDWR | O_CREAT, 0644);
	cr_assert(ge(int, fd2, 0));
	cr_assert(eq(i64,
		     copy_file_range(fd, &(off_t){ 0 }, fd2, &(off_t){ 0 }, len,
				     0),
		     (long)len));
	expect_ok(close(fd2));
	cr_assert(eq(i64, file_cmp(mp("A/copy"), model, len), -1));

	/* drain commits it, durably: kill -9 before any close */
	put(fd, model, "before the drain", 16, 100);
	cr_assert(eq(int, ctl_write(mp(".tally/ctl"), "drain\n"), 0));
	tm_kill_daemon();
	close(fd); /* the connection is gone: whatever close says */
	cr_assert(eq(int, tm_mount(), 0));
	cr_assert(eq(i64, file_cmp(mp("A/f"), model, len), -1));
	cr_assert(eq(int, tm_unmount(), 0), "the daemon did not exit 0");
	cr_assert(eq(int, tm_run_fsck(), 0));
	free(model);
}
