/* SPDX-License-Identifier: MIT */
/*
 * Mount harness of the fuse suite: spawns the real daemon on a mkdtemp
 * directory, waits for the mount, tears it down whatever happened, and
 * offers the small file helpers the tests share. See mount.h.
 */
#include "tests/fuse/mount.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define MOUNT_WAIT_MS 10000
#define EXIT_WAIT_MS 10000

struct tmount tm = { .guard_fd = -1 };
const char *tm_options;

void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int64_t ts_diff_ns(struct timespec a, struct timespec b)
{
	return (int64_t)(a.tv_sec - b.tv_sec) * 1000000000LL +
	       (int64_t)(a.tv_nsec - b.tv_nsec);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Close every descriptor above 2 except keep (-1: none). */
static void close_fds_except(int keep)
{
	long max = sysconf(_SC_OPEN_MAX);
	int fd;

	if (max < 0 || max > 65536)
		max = 65536;
	for (fd = 3; fd < max; fd++)
		if (fd != keep)
			close(fd);
}

static bool mounted_at(const char *path)
{
	char line[8192], *p;
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int field;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		/* id parent major:minor root MOUNTPOINT ... */
		p = line;
		for (field = 0; field < 4 && p; field++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p)
			continue;
		p[strcspn(p, " ")] = '\0';
		found = strcmp(p, path) == 0;
	}
	fclose(f);
	return found;
}

bool tm_is_mounted(void)
{
	return tm.mnt[0] && mounted_at(tm.mnt);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* rm -rf that never crosses into another file system (a live mount). */
static void rm_rf(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static int run_wait(char *const argv[], int ms);

/*
 * With TALLY_TEST_PG (postgres://USER@HOST:PORT of a role that may create
 * databases; tests/pg/run_with_cluster.sh sets it), the test's metadata lives in
 * a database of its own, created here and dropped in tm_fini(): tm.meta
 * is then "meta=URI" for the daemon.
 */
static int pg_create(void)
{
	const char *base = getenv("TALLY_TEST_PG");
	char admin[PATH_MAX], sql[128];
	char *argv[] = { "psql", "-X",	"-q", "-v", "ON_ERROR_STOP=1",
			 "-d",	 admin, "-c", sql,  NULL };

	tm.meta[0] = '\0';
	if (!base || !*base)
		return 0;
	snprintf(tm.db, sizeof(tm.db), "t_%s", strrchr(tm.dir, '.') + 1);
	for (char *c = tm.db; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	snprintf(admin, sizeof(admin), "%s/postgres", base);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", tm.db);
	if (run_wait(argv, 30000) != 0) {
		fprintf(stderr, "# cannot create database %s at %s\n", tm.db,
			base);
		tm.db[0] = '\0';
		return -1;
	}
	snprintf(tm.meta, sizeof(tm.meta), "meta=%s/%s", base, tm.db);
	return 0;
}

static void pg_drop(void)
{
	const char *base = getenv("TALLY_TEST_PG");
	char admin[PATH_MAX], sql[128];
	char *argv[] = { "psql", "-X", "-q", "-d", admin, "-c", sql, NULL };

	if (!base || !tm.db[0])
		return;
	snprintf(admin, sizeof(admin), "%s/postgres", base);
	snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", tm.db);
	if (run_wait(argv, 30000) != 0)
		fprintf(stderr, "# cannot drop database %s\n", tm.db);
	tm.db[0] = '\0';
}

/* Run argv, waiting at most ms; returns the exit status or -1. */
static int run_wait(char *const argv[], int ms)
{
	int64_t deadline = now_ms() + ms;
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		close_fds_except(-1);
		execvp(argv[0], argv);
		_exit(127);
	}
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		msleep(5);
	}
}

/* Whether /proc/PID/status shows a pending SIGKILL. */
static bool kill_pending(pid_t pid)
{
	char path[64], line[256];
	bool pending = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!pending && fgets(line, sizeof(line), f)) {
		unsigned long long mask;

		if ((sscanf(line, "SigPnd: %llx", &mask) == 1 ||
		     sscanf(line, "ShdPnd: %llx", &mask) == 1) &&
		    (mask & (1ULL << (SIGKILL - 1))))
			pending = true;
	}
	fclose(f);
	return pending;
}

/* The parent pid of pid, or -1 when it is gone. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd, ppid;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* after "pid (comm)" */
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/*
 * The guardian: learns the daemon's pid from its pipe and waits for EOF,
 * which comes when the test process exits or dies; then it detaches
 * whatever is still mounted and removes the directory. In the normal case
 * tm_fini() has already done both and the guardian finds nothing left.
 *
 * A test process blocked on a hung daemon cannot die: once the kernel has
 * handed a request to the daemon it waits for the answer even with SIGKILL
 * pending. So when the test process has a SIGKILL pending (Criterion's
 * timeout) or has lost its runner (meson's timeout), the guardian kills the
 * daemon, which aborts the connection and lets the test process go.
 */
static void guardian_main(int rfd, pid_t worker, pid_t runner)
{
	int null = open("/dev/null", O_RDWR);
	pid_t daemon = 0;
	int stuck = 0, i;

	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
	close_fds_except(rfd);
	setsid();
	for (;;) {
		struct pollfd pfd = { .fd = rfd, .events = POLLIN };
		int r = poll(&pfd, 1, 100);

		if (r < 0 && errno != EINTR)
			break;
		if (r > 0) {
			pid_t msg;
			ssize_t n = read(rfd, &msg, sizeof(msg));

			if (n == 0 || (n < 0 && errno != EINTR))
				break; /* the test process is gone */
			if (n == (ssize_t)sizeof(msg))
				daemon = msg;
			continue;
		}
		if (kill_pending(worker) || parent_of(worker) != runner)
			stuck++;
		else
			stuck = 0;
		if (stuck == 10 && daemon > 0 && parent_of(daemon) == worker)
			kill(daemon, SIGKILL);
	}
	/* the daemon gets SIGKILL from PR_SET_PDEATHSIG; let it go */
	for (i = 0; i < 100 && mounted_at(tm.mnt); i++) {
		if (umount2(tm.mnt, 0) == 0)
			break;
		if (i >= 10)
			umount2(tm.mnt, MNT_DETACH);
		msleep(20);
	}
	rm_rf(tm.dir);
	_exit(0);
}

static int start_guardian(void)
{
	pid_t worker = getpid(), runner = getppid(), pid;
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[1]);
		guardian_main(p[0], worker, runner);
	}
	close(p[0]);
	tm.guardian = pid;
	tm.guard_fd = p[1];
	return 0;
}

static void stop_guardian(void)
{
	int64_t deadline = now_ms() + EXIT_WAIT_MS;

	if (tm.guard_fd >= 0)
		close(tm.guard_fd);
	tm.guard_fd = -1;
	if (!tm.guardian)
		return;
	while (waitpid(tm.guardian, NULL, WNOHANG) == 0) {
		if (now_ms() > deadline) {
			kill(tm.guardian, SIGKILL);
			waitpid(tm.guardian, NULL, 0);
			break;
		}
		msleep(5);
	}
	tm.guardian = 0;
}

static void dump_log(const char *why)
{
	char buf[4096];
	FILE *f = fopen(tm.log, "re");

	fprintf(stderr, "# %s; daemon log %s:\n", why, tm.log);
	if (!f)
		return;
	while (fgets(buf, sizeof(buf), f))
		fprintf(stderr, "#   %s", buf);
	fclose(f);
}

int tm_mount(void)
{
	const char *bin = getenv("TALLYFS");
	int64_t deadline;
	pid_t parent = getpid(), pid;
	int status;

	if (!bin || !*bin) {
		fprintf(stderr,
			"# TALLYFS is not set (run through meson test)\n");
		return -1;
	}
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(tm.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int null = open("/dev/null", O_RDONLY);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (null >= 0)
			dup2(null, 0);
		close_fds_except(-1);
		/* never outlive the test process (timeout, crash) */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		if (tm.meta[0])
			execl(bin, bin, "-f", "-o", tm.meta, "-o",
			      tm_options ? tm_options : "rw", tm.store, tm.mnt,
			      (char *)NULL);
		else if (tm_options)
			execl(bin, bin, "-f", "-o", tm_options, tm.store,
			      tm.mnt, (char *)NULL);
		else
			execl(bin, bin, "-f", tm.store, tm.mnt, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	tm.daemon = pid;
	/* tell the guardian which daemon to kill should this process hang */
	if (tm.guard_fd >= 0 &&
	    write(tm.guard_fd, &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
		fprintf(stderr, "# cannot tell the guardian the daemon pid\n");
	deadline = now_ms() + MOUNT_WAIT_MS;
	while (!mounted_at(tm.mnt)) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid) {
			tm.daemon = 0;
			dump_log("the daemon exited before mounting");
			return -1;
		}
		if (now_ms() > deadline) {
			dump_log("the mount did not appear within 10 s");
			tm_unmount();
			return -1;
		}
		msleep(5);
	}
	if (tm.meta[0]) {
		char db[PATH_MAX + 32];

		/* the metadata went where it was told, not to meta.db */
		snprintf(db, sizeof(db), "%s/meta.db", tm.store);
		if (access(db, F_OK) == 0) {
			dump_log(
				"meta= was given, yet the store has a meta.db");
			tm_unmount();
			return -1;
		}
	}
	return 0;
}

static int reap_daemon(int ms)
{
	int64_t deadline = now_ms() + ms;
	int status;
	pid_t r;

	if (!tm.daemon)
		return -1;
	while ((r = waitpid(tm.daemon, &status, WNOHANG)) == 0 ||
	       (r < 0 && errno == EINTR)) {
		if (now_ms() > deadline) {
			fprintf(stderr,
				"# the daemon did not exit within "
				"%d ms: SIGKILL\n",
				ms);
			kill(tm.daemon, SIGKILL);
			r = waitpid(tm.daemon, &status, 0);
			break;
		}
		msleep(5);
	}
	tm.daemon = 0;
	if (r < 0)
		return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int tm_unmount(void)
{
	char *fusermount[] = { "fusermount3", "-u", tm.mnt, NULL };
	int i;

	if (mounted_at(tm.mnt) && run_wait(fusermount, EXIT_WAIT_MS) != 0) {
		fprintf(stderr, "# fusermount3 -u %s failed: lazy umount\n",
			tm.mnt);
		for (i = 0; i < 50 && mounted_at(tm.mnt); i++) {
			umount2(tm.mnt, MNT_DETACH);
			msleep(10);
		}
	}
	return reap_daemon(EXIT_WAIT_MS);
}

int tm_remount(void)
{
	int st = tm_unmount();

	if (st != 0) {
		dump_log("the daemon did not exit cleanly");
		fprintf(stderr, "# daemon exit status %d\n", st);
		return -1;
	}
	return tm_mount();
}

void tm_kill_daemon(void)
{
	int i;

	if (tm.daemon) {
		kill(tm.daemon, SIGKILL);
		waitpid(tm.daemon, NULL, 0);
		tm.daemon = 0;
	}
	for (i = 0; i < 50 && mounted_at(tm.mnt); i++) {
		umount2(tm.mnt, MNT_DETACH);
		msleep(10);
	}
}

static void setup_fail(const char *what)
{
	int e = errno;

	tm_fini();
	cr_fatal("test set-up: %s: %s", what, strerror(e));
}

void tm_init(void)
{
	const char *tmp = getenv("TMPDIR");
	char real[PATH_MAX];

	signal(SIGPIPE, SIG_IGN);
	snprintf(tm.dir, sizeof(tm.dir), "%s/tallyfs-fuse.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tm.dir)) {
		tm.dir[0] = '\0';
		setup_fail("mkdtemp");
	}
	/* mountinfo shows canonical paths */
	if (!realpath(tm.dir, real))
		setup_fail("realpath");
	snprintf(tm.dir, sizeof(tm.dir), "%s", real);
	snprintf(tm.store, sizeof(tm.store), "%s/store", tm.dir);
	snprintf(tm.mnt, sizeof(tm.mnt), "%s/mnt", tm.dir);
	snprintf(tm.log, sizeof(tm.log), "%s/daemon.log", tm.dir);
	if (mkdir(tm.mnt, 0755) < 0)
		setup_fail("mkdir mnt");
	if (pg_create() < 0)
		setup_fail("create the test's database");
	if (start_guardian() < 0)
		setup_fail("fork the guardian");
	if (tm_mount() < 0) {
		errno = EIO;
		setup_fail("mount the daemon");
	}
}

/* Close descriptors a failed test left open on the mount, so that the
 * unmount is not busy. */
static void close_mount_fds(void)
{
	char link[PATH_MAX + 32], target[PATH_MAX + 32];
	size_t len = strlen(tm.mnt);
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	int fds[256], n = 0, i;

	if (!d || !len)
		goto out;
	while ((de = readdir(d)) && n < 256) {
		int fd = atoi(de->d_name);
		ssize_t l;

		if (fd <= 2 || fd == dirfd(d) || fd == tm.guard_fd)
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		l = readlink(link, target, sizeof(target) - 1);
		if (l <= 0)
			continue;
		target[l] = '\0';
		if (!strncmp(target, tm.mnt, len) &&
		    (target[len] == '/' || target[len] == '\0'))
			fds[n++] = fd;
	}
out:
	if (d)
		closedir(d);
	for (i = 0; i < n; i++)
		close(fds[i]);
}

void tm_fini(void)
{
	close_mount_fds();
	if (tm.daemon || tm_is_mounted())
		tm_unmount();
	if (tm.dir[0])
		rm_rf(tm.dir);
	stop_guardian();
	pg_drop();
}

const char *mp(const char *fmt, ...)
{
	static char bufs[8][PATH_MAX];
	static unsigned next;
	char *b = bufs[next++ % 8];
	int n = snprintf(b, PATH_MAX, "%s/", tm.mnt);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b + n, PATH_MAX - (size_t)n, fmt, ap);
	va_end(ap);
	return b;
}

static bool is_hex_name(const char *s, size_t len)
{
	size_t i;

	if (strlen(s) != len)
		return false;
	for (i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

int tm_ctl(const char *cmd)
{
	size_t len = strlen(cmd);
	ssize_t n;
	int fd = open(mp(".tally/ctl"), O_WRONLY), err;

	if (fd < 0)
		return -errno;
	n = write(fd, cmd, len);
	err = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return err;
}

/*
 * TALLY_TEST_BRANCH=1 (the fuse_branch_* tests): namespace @name is made
 * by a branch in O(1) of a namespace with a file and an xattr (docs/
 * design.md 13.2), which is then emptied and removed: @name shares its
 * root with it, is seen through a view of its own, writes into a leaf
 * below their branch point and starts empty over whiteouts of what it
 * inherited.
 */
static void nspace_branch(const char *name)
{
	char cmd[PATH_MAX + 64];
	struct stat st;
	DIR *dir;
	int fd;

	if (!getenv("TALLY_TEST_BRANCH"))
		return;
	expect_ok(rmdir(mp("%s", name)));
	expect_ok(mkdir(mp("%s.b", name), 0755));
	/* no data: the suites count the store's objects */
	fd = open(mp("%s.b/.b", name), O_CREAT | O_WRONLY, 0600);
	cr_assert(fd >= 0, "branch file: %s", strerror(errno));
	close(fd);
	expect_ok(setxattr(mp("%s.b", name), "user.b", "1", 1, 0));
	snprintf(cmd, sizeof(cmd), "branch %s.b %s\n", name, name);
	cr_assert(eq(int, tm_ctl(cmd), 0), "branch of %s", name);
	/* the root listed: its entries known to the kernel, not to the
	 * mount's entry cache (a removal then looks each up in the store) */
	dir = opendir(mp("."));
	cr_assert_not_null(dir, "opendir of the root: %s", strerror(errno));
	while (readdir(dir))
		;
	closedir(dir);
	expect_ok(unlink(mp("%s.b/.b", name)));
	expect_ok(rmdir(mp("%s.b", name)));
	expect_ok(unlink(mp("%s/.b", name)));
	expect_ok(removexattr(mp("%s", name), "user.b"));
	expect_ok(stat(mp("%s", name), &st));
	cr_assert_geq(st.st_ino >> 40, 1u << 23,
		      "namespace %s seen through its view", name);
}

void tm_mkns(const char *name)
{
	const char *env = getenv("TALLY_TEST_CHAIN");
	int n = env ? atoi(env) : 0, i, fd;
	char cmd[128], val[16];

	expect_ok(mkdir(mp("%s", name), 0755));
	for (i = 0; i < n; i++) {
		fd = open(mp("%s/.chain%d", name, i), O_CREAT | O_WRONLY, 0600);
		cr_assert(fd >= 0, "chain file %d: %s", i, strerror(errno));
		close(fd);
		if (i)
			expect_ok(chmod(mp("%s/.chain%d", name, i - 1), 0640));
		snprintf(val, sizeof(val), "%d", i);
		expect_ok(setxattr(mp("%s", name), "user.chain", val,
				   strlen(val), 0));
		snprintf(cmd, sizeof(cmd), "snapshot %s chain%d\n", name, i);
		cr_assert(eq(int, tm_ctl(cmd), 0), "snapshot %d of %s", i,
			  name);
	}
	for (i = 0; i < n; i++)
		expect_ok(unlink(mp("%s/.chain%d", name, i)));
	if (n)
		expect_ok(removexattr(mp("%s", name), "user.chain"));
	nspace_branch(name);
}

/* Let every flush in flight finish: a close does not wait for its own. */
void tm_settle(void)
{
	ssize_t n;
	int fd;

	if (!tm_is_mounted())
		return;
	fd = open(mp(".tally/ctl"), O_WRONLY);
	if (fd < 0)
		return;
	n = write(fd, "drain\n", 6);
	(void)n;
	close(fd);
}

long tm_count_objects(void)
{
	char path[PATH_MAX + 300];
	struct dirent *de, *oe;
	DIR *top, *sub;
	long n = 0;

	tm_settle();
	snprintf(path, sizeof(path), "%s/shards/0", tm.store);
	top = opendir(path);
	if (!top)
		return -1;
	while ((de = readdir(top))) {
		if (!is_hex_name(de->d_name, 2))
			continue;
		snprintf(path, sizeof(path), "%s/shards/0/%s", tm.store,
			 de->d_name);
		sub = opendir(path);
		if (!sub)
			continue;
		while ((oe = readdir(sub)))
			if (is_hex_name(oe->d_name, 32))
				n++;
		closedir(sub);
	}
	closedir(top);
	return n;
}

long tm_wait_objects(long want, int ms)
{
	int64_t deadline = now_ms() + ms;
	long n;

	while ((n = tm_count_objects()) != want && now_ms() < deadline)
		msleep(10);
	return n;
}

bool tm_object_exists(const char *hash)
{
	char path[PATH_MAX + 64];

	if (!is_hex_name(hash, 32))
		return false;
	snprintf(path, sizeof(path), "%s/shards/0/%.2s/%s", tm.store, hash,
		 hash);
	return access(path, F_OK) == 0;
}

void fill_random(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
	unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t v;
		size_t k;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		v = x * 0x2545F4914F6CDD1DULL;
		for (k = 0; k < 8 && i + k < len; k++)
			p[i + k] = (unsigned char)(v >> (8 * k));
	}
}

long first_diff(const void *a, const void *b, size_t len)
{
	const unsigned char *x = a, *y = b;
	size_t i;

	if (memcmp(a, b, len) == 0)
		return -1;
	for (i = 0; i < len; i++)
		if (x[i] != y[i])
			break;
	return (long)i;
}

int write_file(const char *path, const void *buf, size_t len)
{
	const char *p = buf;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int rc = 0;

	if (fd < 0)
		return -errno;
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			rc = -errno;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	return rc;
}

char *read_file(const char *path, size_t *len)
{
	size_t cap = 65536, used = 0;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	buf = malloc(cap + 1);
	for (;;) {
		ssize_t n;

		if (!buf)
			break;
		if (used == cap) {
			char *nb = realloc(buf, cap * 2 + 1);

			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + used, cap - used);
		if (n < 0) {
			int e = errno;

			free(buf);
			buf = NULL;
			errno = e;
			break;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	if (buf) {
		buf[used] = '\0';
		*len = used;
	}
	return buf;
}

long file_cmp(const char *path, const void *want, size_t len)
{
	size_t n;
	char *got = read_file(path, &n);
	long d;

	if (!got)
		return -2;
	d = first_diff(got, want, n < len ? n : len);
	if (d < 0 && n != len)
		d = (long)(n < len ? n : len);
	free(got);
	return d;
}

long xattr_get(const char *path, const char *name, char *buf, size_t size)
{
	ssize_t n = getxattr(path, name, buf, size - 1);

	if (n < 0) {
		buf[0] = '\0';
		return -errno;
	}
	buf[n] = '\0';
	return (long)n;
}

int tm_run_fsck(void)
{
	const char *bin = getenv("TALLYFSCK");
	int status;
	pid_t pid;

	cr_assert(ne(ptr, (void *)bin, NULL), "TALLYFSCK is not set");
	pid = fork();
	cr_assert(ge(int, pid, 0));
	if (pid == 0) {
		/* its report is not TAP: keep it off stdout */
		dup2(2, 1);
		if (tm.meta[0])
			execl(bin, bin, "-o", tm.meta, tm.store, (char *)NULL);
		else
			execl(bin, bin, tm.store, (char *)NULL);
		_exit(127);
	}
	cr_assert(eq(int, waitpid(pid, &status, 0), pid));
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct stat stat_of(const char *path)
{
	struct stat st;
	int rc = lstat(path, &st);

	cr_assert(eq(int, rc, 0), "lstat %s: %s", path, strerror(errno));
	return st;
}

struct timespec realtime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

struct timespec kernel_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return ts;
}
