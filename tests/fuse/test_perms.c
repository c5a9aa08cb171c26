/* SPDX-License-Identifier: MIT */
/*
 * Permissions on a mount with allow_other (default_permissions is on
 * there): other users get POSIX behaviour inside namespaces (permission
 * bits, sticky directories, set-user-ID and set-group-ID bits cleared on
 * write and chown), cannot use /.tally/ctl but can read /.tally/status;
 * control commands cannot reach outside the mount; the store is private.
 * A mount private to root goes without default_permissions: no other
 * user gets in, and root's rules hold (execute wants an x bit).
 *
 * The parts that need another user run in a forked child that drops to
 * that uid and gid with setresuid/setresgid; it reports the first failed
 * expectation through a pipe and its exit status.
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

#define UA 1001 /* users A, B and C, each with a group of the same id */
#define UB 1002
#define UC 1003

static void perms_init(void)
{
	tm_options = "allow_other";
	tm_init();
	/* mkdtemp made it 0700: let the other users reach the mount */
	expect_ok(chmod(tm.dir, 0755));
	expect_ok(mkdir(mp("ns"), 0755));
	expect_ok(mkdir(mp("ns/pub"), 0777));
	expect_ok(chmod(mp("ns/pub"), 0777)); /* past the umask */
}

TestSuite(perms, .init = perms_init, .fini = tm_fini, .timeout = 60);

/* ------------------------------------------------------------------ */
/* running as another user */

static int report_fd = -1; /* in the child: where failures go */

static void __attribute__((format(printf, 1, 2), noreturn))
child_fail(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && write(report_fd, buf, strlen(buf)) < 0)
		_exit(3);
	_exit(1);
}

#define U_OK(call)                                                            \
	do {                                                                  \
		long u_rc;                                                    \
		errno = 0;                                                    \
		u_rc = (long)(call);                                          \
		if (u_rc < 0)                                                 \
			child_fail("line %d: %s failed: %s", __LINE__, #call, \
				   strerror(errno));                          \
	} while (0)

#define U_ERR(call, err)                                                     \
	do {                                                                 \
		long u_rc;                                                   \
		int u_errno;                                                 \
		errno = 0;                                                   \
		u_rc = (long)(call);                                         \
		u_errno = errno;                                             \
		if (u_rc != -1 || u_errno != (err))                          \
			child_fail("line %d: %s: returned %ld, errno %s; "   \
				   "expected %s",                            \
				   __LINE__, #call, u_rc, strerror(u_errno), \
				   #err);                                    \
	} while (0)

#define U_TRUE(cond)                                                         \
	do {                                                                 \
		if (!(cond))                                                 \
			child_fail("line %d: %s is false", __LINE__, #cond); \
	} while (0)

/* Run fn() in a child as uid/gid (no supplementary groups). */
static void as_user(uid_t uid, gid_t gid, void (*fn)(void))
{
	char msg[1024];
	ssize_t n, len = 0;
	int p[2], status;
	bool ok;
	pid_t pid;

	cr_assert(eq(int, pipe(p), 0));
	pid = fork();
	cr_assert(ge(int, pid, 0));
	if (pid == 0) {
		close(p[0]);
		report_fd = p[1];
		if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid(uid, uid, uid) < 0)
			child_fail("cannot become %d:%d: %s", (int)uid,
				   (int)gid, strerror(errno));
		fn();
		_exit(0);
	}
	close(p[1]);
	while (len < (ssize_t)sizeof(msg) - 1 &&
	       (n = read(p[0], msg + len, sizeof(msg) - 1 - (size_t)len)) > 0)
		len += n;
	msg[len] = '\0';
	close(p[0]);
	cr_assert(eq(int, waitpid(pid, &status, 0), pid));
	ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	cr_assert(ok, "as uid %d: %s", (int)uid, len ? msg : "(child died)");
}

static void make_owned(const char *path, uid_t uid, mode_t mode)
{
	cr_assert(eq(int, write_file(path, "data", 4), 0), "%s", path);
	expect_ok(chown(path, uid, uid));
	expect_ok(chmod(path, mode));
}

static int create_as(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);

	if (fd < 0)
		return -1;
	return close(fd);
}

/* ------------------------------------------------------------------ */
/* ordinary permission bits */

static void user_b_bits(void)
{
	struct stat st;
	char buf[8];
	int fd;

	U_ERR(open(mp("ns/secret"), O_RDONLY), EACCES);
	U_ERR(open(mp("ns/readonly"), O_WRONLY), EACCES);
	U_ERR(truncate(mp("ns/readonly"), 0), EACCES);
	fd = open(mp("ns/readonly"), O_RDONLY);
	U_TRUE(fd >= 0);
	U_TRUE(read(fd, buf, sizeof(buf)) == 4);
	close(fd);
	U_ERR(create_as(mp("ns/mine")), EACCES); /* ns is 0755 root */
	U_ERR(unlink(mp("ns/readonly")), EACCES);
	U_ERR(rename(mp("ns/readonly"), mp("ns/pub/x")), EACCES);
	U_ERR(mkdir(mp("b-namespace"), 0755), EACCES); /* / is root's */
	U_ERR(opendir(mp("ns/private")) ? 0 : -1, EACCES);
	U_ERR(stat(mp("ns/private/f"), &st), EACCES);
	/* owner-only calls on someone else's file */
	U_ERR(chmod(mp("ns/readonly"), 0666), EPERM);
	U_ERR(chown(mp("ns/readonly"), UB, UB), EPERM);
	U_ERR(utimensat(AT_FDCWD, mp("ns/readonly"),
			(struct timespec[2]){ { 1, 0 }, { 1, 0 } }, 0),
	      EPERM);
	/* utimensat(NULL) needs write permission only */
	U_ERR(utimensat(AT_FDCWD, mp("ns/readonly"), NULL, 0), EACCES);
	U_OK(utimensat(AT_FDCWD, mp("ns/pub/shared"), NULL, 0));
	/* new nodes belong to their creator */
	U_OK(create_as(mp("ns/pub/b-file")));
	U_OK(mkdir(mp("ns/pub/b-dir"), 0700));
	U_OK(stat(mp("ns/pub/b-file"), &st));
	U_TRUE(st.st_uid == UB && st.st_gid == UB);
	/* and their owner may give the group away only to own groups */
	U_ERR(chown(mp("ns/pub/b-file"), -1, UA), EPERM);
	U_ERR(chown(mp("ns/pub/b-file"), UA, -1), EPERM);
	U_OK(chmod(mp("ns/pub/b-file"), 0600));
}

Test(perms, permission_bits_for_another_user)
{
	struct stat st;

	make_owned(mp("ns/secret"), 0, 0600);
	make_owned(mp("ns/readonly"), 0, 0644);
	make_owned(mp("ns/pub/shared"), UA, 0666);
	expect_ok(mkdir(mp("ns/private"), 0700));
	cr_assert(eq(int, write_file(mp("ns/private/f"), "p", 1), 0));
	as_user(UB, UB, user_b_bits);
	st = stat_of(mp("ns/pub/b-file"));
	cr_assert(eq(u32, st.st_uid, UB));
	cr_assert(eq(u32, st.st_mode, S_IFREG | 0600));
	st = stat_of(mp("ns/pub/b-dir"));
	cr_assert(eq(u32, st.st_uid, UB));
	cr_assert(eq(u32, st.st_mode, S_IFDIR | 0700));
	cr_assert(eq(i64, file_cmp(mp("ns/readonly"), "data", 4), -1));
	/* root is not bound by the bits */
	cr_assert(eq(i64, file_cmp(mp("ns/pub/b-file"), "", 0), -1));
}

/* ------------------------------------------------------------------ */
/* sticky directories */

static void user_a_sticky(void)
{
	U_OK(create_as(mp("ns/tmp/a-file")));
	U_OK(create_as(mp("ns/tmp/a-file2")));
	U_OK(mkdir(mp("ns/tmp/a-dir"), 0777));
	U_OK(create_as(mp("ns/open/a-file")));
}

static void user_b_sticky(void)
{
	/* another user's entries in a sticky directory */
	U_ERR(unlink(mp("ns/tmp/a-file")), EPERM);
	U_ERR(rmdir(mp("ns/tmp/a-dir")), EPERM);
	U_ERR(rename(mp("ns/tmp/a-file"), mp("ns/tmp/b-renamed")), EPERM);
	U_ERR(rename(mp("ns/tmp/a-file"), mp("ns/pub/b-moved")), EPERM);
	U_ERR(unlink(mp("ns/tmp/root-file")), EPERM);
	/* nor replace them by rename */
	U_OK(create_as(mp("ns/tmp/b-file")));
	U_ERR(rename(mp("ns/tmp/b-file"), mp("ns/tmp/a-file")), EPERM);
	U_ERR(renameat2(AT_FDCWD, mp("ns/tmp/b-file"), AT_FDCWD,
			mp("ns/tmp/a-file"), RENAME_EXCHANGE),
	      EPERM);
	/* own entries are fine */
	U_OK(rename(mp("ns/tmp/b-file"), mp("ns/tmp/b-file2")));
	U_OK(unlink(mp("ns/tmp/b-file2")));
	/* the same in a 0777 directory without the sticky bit works */
	U_OK(rename(mp("ns/open/a-file"), mp("ns/open/b-took-it")));
	U_OK(unlink(mp("ns/open/b-took-it")));
}

static void user_c_sticky(void)
{
	/* the directory's owner may remove anything in it */
	U_OK(unlink(mp("ns/tmp/a-file2")));
}

Test(perms, sticky_directory)
{
	struct stat st;

	expect_ok(mkdir(mp("ns/tmp"), 0777));
	expect_ok(chown(mp("ns/tmp"), UC, UC));
	expect_ok(chmod(mp("ns/tmp"), 01777));
	expect_ok(mkdir(mp("ns/open"), 0777));
	expect_ok(chmod(mp("ns/open"), 0777));
	cr_assert(eq(int, write_file(mp("ns/tmp/root-file"), "r", 1), 0));
	as_user(UA, UA, user_a_sticky);
	as_user(UB, UB, user_b_sticky);
	as_user(UC, UC, user_c_sticky);
	st = stat_of(mp("ns/tmp/a-file"));
	cr_assert(eq(u32, st.st_uid, UA));
	expect_err(lstat(mp("ns/tmp/a-file2"), &st), ENOENT);
	expect_err(lstat(mp("ns/open/a-file"), &st), ENOENT);
	st = stat_of(mp("ns/tmp/a-dir"));
	cr_assert(eq(u32, st.st_uid, UA));
	/* root may */
	expect_ok(unlink(mp("ns/tmp/a-file")));
	expect_ok(rmdir(mp("ns/tmp/a-dir")));
}

/* ------------------------------------------------------------------ */
/* set-user-ID and set-group-ID bits */

static void append_x(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND);

	if (fd < 0)
		child_fail("open %s: %s", path, strerror(errno));
	if (write(fd, "x", 1) != 1)
		child_fail("write %s: %s", path, strerror(errno));
	if (close(fd) < 0)
		child_fail("close %s: %s", path, strerror(errno));
}

static void user_b_writes(void)
{
	append_x(mp("ns/pub/s1"));
	append_x(mp("ns/pub/s2"));
	U_OK(truncate(mp("ns/pub/s3"), 1));
}

static void user_a_writes_own(void)
{
	append_x(mp("ns/pub/s4"));
}

Test(perms, setid_bits_cleared)
{
	/* the same expectations hold on tmpfs and ext4 (Linux 6.x) */
	make_owned(mp("ns/pub/s1"), UA, 06777);
	make_owned(mp("ns/pub/s2"), UA, 06757); /* S_ISGID, no group x */
	make_owned(mp("ns/pub/s3"), UA, 06777);
	make_owned(mp("ns/pub/s4"), UA, 06777);
	make_owned(mp("ns/pub/root-writes"), UA, 06777);
	as_user(UB, UB, user_b_writes);
	cr_assert(eq(u32, stat_of(mp("ns/pub/s1")).st_mode, S_IFREG | 0777),
		  "write by a non-owner");
	cr_assert(eq(u32, stat_of(mp("ns/pub/s2")).st_mode, S_IFREG | 0757),
		  "write by a non-owner outside the group");
	cr_assert(eq(u32, stat_of(mp("ns/pub/s3")).st_mode, S_IFREG | 0777),
		  "truncate by a non-owner");
	cr_assert(eq(i64, file_cmp(mp("ns/pub/s1"), "datax", 5), -1));
	as_user(UA, UA, user_a_writes_own);
	cr_assert(eq(u32, stat_of(mp("ns/pub/s4")).st_mode, S_IFREG | 0777),
		  "write by the owner (no CAP_FSETID)");
	/* root has CAP_FSETID: its write keeps them */
	cr_assert(eq(int, write_file(mp("ns/pub/root-writes"), "r", 1), 0));
	cr_assert(eq(u32, stat_of(mp("ns/pub/root-writes")).st_mode,
		     S_IFREG | 06777));

	/* chown clears S_ISUID, and S_ISGID when group-executable, even by
	 * root; directories keep theirs */
	make_owned(mp("ns/c1"), UA, 06777);
	expect_ok(chown(mp("ns/c1"), UB, UB));
	cr_assert(eq(u32, stat_of(mp("ns/c1")).st_mode, S_IFREG | 0777));
	make_owned(mp("ns/c2"), UA, 06767);
	expect_ok(chown(mp("ns/c2"), UB, -1));
	cr_assert(eq(u32, stat_of(mp("ns/c2")).st_mode, S_IFREG | 02767));
	make_owned(mp("ns/c3"), UA, 06777);
	expect_ok(chown(mp("ns/c3"), -1, 7));
	cr_assert(eq(u32, stat_of(mp("ns/c3")).st_mode, S_IFREG | 0777));
	expect_ok(mkdir(mp("ns/cd"), 0777));
	expect_ok(chmod(mp("ns/cd"), 07777));
	expect_ok(chown(mp("ns/cd"), UA, UA));
	cr_assert(eq(u32, stat_of(mp("ns/cd")).st_mode, S_IFDIR | 07777));

	/* what the kernel sent was stored */
	cr_assert(eq(int, tm_remount(), 0));
	cr_assert(eq(u32, stat_of(mp("ns/pub/s1")).st_mode, S_IFREG | 0777));
	cr_assert(eq(u32, stat_of(mp("ns/c2")).st_mode, S_IFREG | 02767));
	cr_assert(eq(u32, stat_of(mp("ns/pub/root-writes")).st_mode,
		     S_IFREG | 06777));
}

/* ------------------------------------------------------------------ */
/* the control files */

static void user_b_control(void)
{
	char buf[65536];
	ssize_t n;
	int fd;

	U_ERR(open(mp(".tally/ctl"), O_WRONLY), EACCES);
	U_ERR(open(mp(".tally/ctl"), O_RDWR), EACCES);
	U_ERR(open(mp(".tally/ctl"), O_RDONLY), EACCES);
	U_ERR(open(mp(".tally/status"), O_WRONLY), EACCES);
	U_ERR(chmod(mp(".tally/ctl"), 0666), EPERM);
	fd = open(mp(".tally/status"), O_RDONLY);
	U_TRUE(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	U_TRUE(n > 10);
	buf[n] = '\0';
	U_TRUE(buf[0] == '{');
	U_TRUE(strstr(buf, "\"namespaces\": 1") != NULL);
	/* inside a namespace, business as usual */
	U_OK(create_as(mp("ns/pub/b-was-here")));
}

Test(perms, control_files_for_another_user)
{
	struct stat st = stat_of(mp(".tally/ctl"));

	cr_assert(eq(u32, st.st_mode, S_IFREG | 0600));
	cr_assert(eq(u32, st.st_uid, 0));
	st = stat_of(mp(".tally/status"));
	cr_assert(eq(u32, st.st_mode, S_IFREG | 0444));
	cr_assert(eq(int, write_file(mp("ns/pub/f"), "x", 1), 0));
	as_user(UB, UB, user_b_control);
	cr_assert(eq(u32, stat_of(mp("ns/pub/b-was-here")).st_uid, UB));
}

/* ------------------------------------------------------------------ */
/* control commands stay inside the mount */

/* Write one command line to ctl; 0 or the errno of the write. */
static int ctl_cmd(const char *line)
{
	int fd = open(mp(".tally/ctl"), O_RDWR);
	ssize_t n;
	int e;

	cr_assert(ge(int, fd, 0), "open ctl: %s", strerror(errno));
	n = write(fd, line, strlen(line));
	e = n < 0 ? errno : 0;
	close(fd);
	return e;
}

static void pins_are_none(void)
{
	size_t len;
	char *doc = read_file(mp(".tally/status"), &len);

	cr_assert(ne(ptr, doc, NULL));
	cr_assert(ne(ptr, strstr(doc, "\"pins\": []"), NULL), "%s", doc);
	free(doc);
}

Test(perms, ctl_paths_stay_inside_the_mount)
{
	static const struct {
		const char *line;
		int err;
	} cases[] = {
		{ "pin ../../etc/passwd\n", EINVAL },
		{ "pin ns/../../../etc/passwd\n", EINVAL },
		{ "pin ./ns/f\n", EINVAL },
		{ "pin ns/out\n", EINVAL },	   /* a symlink to /etc */
		{ "pin ns/out/passwd\n", EINVAL }, /* through it */
		{ "pin ns/in\n", EINVAL },	   /* a symlink to ns/f */
		{ "pin ns/f/x\n", ENOTDIR },
		{ "pin /etc/passwd\n", ENOENT }, /* rooted at the mount */
		{ "pin etc/passwd\n", ENOENT },
		{ "explain ../../etc/passwd\n", EINVAL },
		{ "explain ns/out/passwd\n", EINVAL },
		{ "explain /etc/passwd\n", ENOENT },
		{ "unpin ../../etc/passwd\n", EINVAL },
		{ "du ..\n", ENOENT },
		{ "branch ns ../escape\n", EINVAL },
		{ "branch ../.. copy\n", EINVAL },
	};
	struct stat before, after;
	size_t i;

	cr_assert(eq(int, write_file(mp("ns/f"), "file", 4), 0));
	expect_ok(symlink("/etc", mp("ns/out")));
	expect_ok(symlink("f", mp("ns/in")));
	expect_ok(stat("/etc/passwd", &before));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int e = ctl_cmd(cases[i].line);

		cr_assert(eq(int, e, cases[i].err), "'%.*s': %s, expected %s",
			  (int)strlen(cases[i].line) - 1, cases[i].line,
			  strerror(e), strerror(cases[i].err));
	}
	/* nothing changed: no pin, no namespace, the host file untouched */
	pins_are_none();
	expect_err(lstat(mp("escape"), &after), ENOENT);
	expect_err(lstat(mp("copy"), &after), ENOENT);
	expect_ok(stat("/etc/passwd", &after));
	cr_assert(eq(i64, ts_diff_ns(after.st_mtim, before.st_mtim), 0));
	cr_assert(eq(i64, ts_diff_ns(after.st_ctim, before.st_ctim), 0));
	/* a path that does name a file inside the mount works, with or
	 * without a leading slash */
	cr_assert(eq(int, ctl_cmd("pin /ns/f\n"), 0));
	cr_assert(eq(int, ctl_cmd("unpin ns/f\n"), 0));
	pins_are_none();
}

/* ------------------------------------------------------------------ */
/* the store */

static void user_b_store(void)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/meta.db", tm.store);
	U_ERR(open(path, O_RDONLY), EACCES);
	U_ERR(opendir(tm.store) ? 0 : -1, EACCES);
}

/* The mountinfo line of tm.mnt, in @line. */
static void mountinfo_line(char *line, size_t size)
{
	char needle[PATH_MAX + 32];
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	cr_assert(ne(ptr, f, NULL));
	snprintf(needle, sizeof(needle), " %s ", tm.mnt);
	while (!found && fgets(line, (int)size, f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	cr_assert(found, "%s is not in mountinfo", tm.mnt);
}

Test(perms, mounted_with_default_permissions)
{
	char line[4096];

	mountinfo_line(line, sizeof(line));
	cr_assert(ne(ptr, strstr(line, "default_permissions"), NULL), "%s",
		  line);
	cr_assert(ne(ptr, strstr(line, "allow_other"), NULL), "%s", line);
}

Test(perms, store_is_private)
{
	struct stat st = stat_of(tm.store);

	cr_assert(eq(u32, st.st_mode, S_IFDIR | 0700));
	cr_assert(eq(u32, st.st_uid, 0));
	as_user(UB, UB, user_b_store);
}

/* ------------------------------------------------------------------ */
/* a mount private to root: no default_permissions, root's rules */

static void private_init(void)
{
	tm_options = NULL;
	tm_init();
	expect_ok(chmod(tm.dir, 0755));
	expect_ok(mkdir(mp("ns"), 0755));
}

TestSuite(private, .init = private_init, .fini = tm_fini, .timeout = 60);

static void enter_private(void)
{
	struct stat st;

	/* the kernel lets no one but root into a mount without allow_other */
	U_ERR(stat(mp("ns"), &st), EACCES);
}

Test(private, root_alone_by_roots_rules)
{
	static const char script[] = "#!/bin/sh\nexit 7\n";
	char buf[8], line[4096];
	int status, fd;
	pid_t pid;

	/* no GETATTR of the parent after each change of a directory */
	mountinfo_line(line, sizeof(line));
	cr_assert(eq(ptr, strstr(line, "default_permissions"), NULL), "%s",
		  line);
	as_user(UA, UA, enter_private);

	cr_assert(eq(int, write_file(mp("ns/s"), script, strlen(script)), 0));
	expect_ok(chmod(mp("ns/s"), 0644));
	/* execute wants an x bit, from access(2) and from exec */
	expect_err(access(mp("ns/s"), X_OK), EACCES);
	expect_ok(access(mp("ns/s"), R_OK | W_OK));
	expect_ok(access(mp("ns"), X_OK));
	pid = fork();
	cr_assert(ge(int, pid, 0));
	if (pid == 0) {
		execl(mp("ns/s"), "s", (char *)NULL);
		_exit(errno == EACCES ? 20 : 21);
	}
	cr_assert(eq(int, waitpid(pid, &status, 0), pid));
	cr_assert(eq(int, WEXITSTATUS(status), 20), "exec of a 0644 file");
	expect_ok(chmod(mp("ns/s"), 0700));
	expect_ok(access(mp("ns/s"), X_OK));
	pid = fork();
	cr_assert(ge(int, pid, 0));
	if (pid == 0) {
		execl(mp("ns/s"), "s", (char *)NULL);
		_exit(21);
	}
	cr_assert(eq(int, waitpid(pid, &status, 0), pid));
	cr_assert(eq(int, WEXITSTATUS(status), 7), "exec of a 0700 file");

	/* root reads and writes whatever the mode bits say */
	expect_ok(chmod(mp("ns/s"), 0));
	fd = open(mp("ns/s"), O_RDWR);
	expect_ok(fd);
	cr_assert(eq(i64, read(fd, buf, 2), 2));
	cr_assert(eq(int, memcmp(buf, "#!", 2), 0));
	expect_ok(close(fd));
	/* but the status is read-only, for root too */
	expect_err(open(mp(".tally/status"), O_WRONLY), EACCES);
}
