// SPDX-License-Identifier: MIT
/*
 * benchtool: the timed loops of tools/bench/run, one process per
 * measurement so that no fork or interpreter sits inside a timed loop.
 * Compiled by tools/bench/run into its temporary directory.
 *
 *   benchtool seqwrite FILE BYTES SEED   write BYTES of pseudo-random data
 *                                        (1 MiB writes), fsync, close
 *   benchtool seqread FILE               read to EOF in 1 MiB reads
 *   benchtool create DIR FIRST COUNT     open(O_CREAT|O_EXCL)+close f<i>
 *   benchtool stat   DIR FIRST COUNT     fstatat f<i>
 *   benchtool link   DIR FIRST COUNT     linkat f<i> -> l<i>
 *   benchtool unlink DIR FIRST COUNT     unlinkat l<i>, then f<i>
 *   benchtool mkdir  DIR FIRST COUNT     mkdirat d<i>
 *   benchtool rmdir  DIR FIRST COUNT     unlinkat(AT_REMOVEDIR) d<i>
 *   benchtool readdir DIR REPEAT         list DIR REPEAT times (opendir,
 *                                        readdir to the end, closedir)
 *   benchtool converge DIRA DIRB COUNT POLL_US TIMEOUT_S
 *                                        COUNT probes of one directory
 *                                        seen through two mounts (below)
 *
 * Each prints "OPS SECONDS" (OPS = bytes for seqwrite/seqread, entries
 * other than . and .. for readdir, else operations) on stdout. With
 * BENCHTOOL_START=T in the environment (seconds since the epoch, a
 * fraction allowed), the metadata loops and readdir wait until the
 * realtime clock reaches T before their clock starts, so that several
 * processes run at once (their figures then overlap). With
 * BENCHTOOL_FILE_BYTES=N, create writes N bytes into each file before
 * its close (one write; the index of the file and the pid of the process
 * at the start of every 4 KiB, so that no two files, not even those of
 * two processes, share a block).
 *
 * converge: probe i creates c<i> in DIRA (open O_CREAT|O_EXCL, close),
 * then stats c<i> in DIRB every POLL_US microseconds until it is there;
 * then renames c<i> to m<i> in DIRA and polls DIRB until m<i> is there
 * and c<i> is gone. DIRB's lookup of c<i> has just happened when the
 * rename starts, so the old name lives as long as the kernel keeps that
 * entry (entry_timeout): the worst case. One line per probe: "CREATE
 * APPEAR RENAME NEW OLD", the seconds of the create on A, from its close
 * to B seeing the name, of the rename on A, and from its return to B
 * seeing the new name and to B no longer seeing the old one; a poll that
 * gives up after TIMEOUT_S seconds prints -1. The data of seqwrite is generated before the
 * clock starts; the same SEED gives the same bytes, and every 4 KiB of it
 * is distinct, so neither a deduplicating nor a compressing target can
 * skip work unless it is given the same SEED twice on purpose. Any failed
 * call exits 1 with a message.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *arg)
{
	fprintf(stderr, "benchtool: %s %s: %s\n", what, arg, strerror(errno));
	exit(1);
}

/* BENCHTOOL_START: sleep until that realtime, if it is set */
static void start_barrier(void)
{
	const char *at = getenv("BENCHTOOL_START");
	struct timespec ts;
	double t;

	if (!at || !*at)
		return;
	t = strtod(at, NULL);
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int seqwrite(const char *path, uint64_t bytes, uint64_t seed)
{
	uint64_t *buf, s = seed, off;
	size_t words = (size_t)(bytes + 7) / 8;
	double t0, t1;
	int fd;

	buf = malloc(words * 8 + 8);
	if (!buf)
		die("malloc", "");
	for (size_t i = 0; i < words; i++)
		buf[i] = splitmix64(&s);
	t0 = now();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("open", path);
	for (off = 0; off < bytes;) {
		size_t n = bytes - off < CHUNK ? (size_t)(bytes - off) : CHUNK;
		ssize_t w = write(fd, (char *)buf + off, n);

		if (w <= 0)
			die("write", path);
		off += (uint64_t)w;
	}
	if (fsync(fd) != 0)
		die("fsync", path);
	if (close(fd) != 0)
		die("close", path);
	t1 = now();
	printf("%llu %.6f\n", (unsigned long long)bytes, t1 - t0);
	free(buf);
	return 0;
}

static int seqread(const char *path)
{
	char *buf = malloc(CHUNK);
	uint64_t total = 0;
	double t0, t1;
	ssize_t r;
	int fd;

	if (!buf)
		die("malloc", "");
	t0 = now();
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open", path);
	while ((r = read(fd, buf, CHUNK)) > 0)
		total += (uint64_t)r;
	if (r < 0)
		die("read", path);
	close(fd);
	t1 = now();
	printf("%llu %.6f\n", (unsigned long long)total, t1 - t0);
	free(buf);
	return 0;
}

/*
 * The bytes create writes into each file (BENCHTOOL_FILE_BYTES), made
 * distinct per file and per process by stamp(): NULL when none.
 */
static uint64_t *file_data(size_t *bytes)
{
	const char *env = getenv("BENCHTOOL_FILE_BYTES");
	uint64_t *buf, s = (uint64_t)getpid() << 32;
	size_t words;

	*bytes = env ? strtoul(env, NULL, 0) : 0;
	if (!*bytes)
		return NULL;
	words = (*bytes + 7) / 8;
	buf = malloc(words * 8);
	if (!buf)
		die("malloc", "");
	for (size_t i = 0; i < words; i++)
		buf[i] = splitmix64(&s);
	return buf;
}

/* file i's bytes: its index and our pid at the start of every 4 KiB */
static void stamp(uint64_t *buf, size_t bytes, long i)
{
	for (size_t off = 0; off + 16 <= bytes; off += 4096) {
		buf[off / 8] = (uint64_t)i;
		buf[off / 8 + 1] = (uint64_t)getpid();
	}
}

static int meta(const char *op, const char *dir, long first, long count)
{
	char a[32], b[32];
	struct stat st;
	double t0, t1;
	long ops = 0;
	size_t fbytes;
	uint64_t *fdata = file_data(&fbytes);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		die("open", dir);
	start_barrier();
	t0 = now();
	for (long i = first; i < first + count; i++) {
		snprintf(a, sizeof a, "f%07ld", i);
		if (!strcmp(op, "create")) {
			int fd = openat(dfd, a,
					O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
					0644);
			if (fd < 0)
				die("create", a);
			if (fdata) {
				stamp(fdata, fbytes, i);
				if (write(fd, fdata, fbytes) != (ssize_t)fbytes)
					die("write", a);
			}
			if (close(fd) != 0)
				die("close", a);
		} else if (!strcmp(op, "stat")) {
			if (fstatat(dfd, a, &st, AT_SYMLINK_NOFOLLOW) != 0)
				die("stat", a);
		} else if (!strcmp(op, "link")) {
			snprintf(b, sizeof b, "l%07ld", i);
			if (linkat(dfd, a, dfd, b, 0) != 0)
				die("link", a);
		} else if (!strcmp(op, "unlink")) {
			snprintf(b, sizeof b, "l%07ld", i);
			if (unlinkat(dfd, b, 0) != 0)
				die("unlink", b);
			ops++;
			if (unlinkat(dfd, a, 0) != 0)
				die("unlink", a);
		} else if (!strcmp(op, "mkdir")) {
			snprintf(a, sizeof a, "d%07ld", i);
			if (mkdirat(dfd, a, 0755) != 0)
				die("mkdir", a);
		} else if (!strcmp(op, "rmdir")) {
			snprintf(a, sizeof a, "d%07ld", i);
			if (unlinkat(dfd, a, AT_REMOVEDIR) != 0)
				die("rmdir", a);
		} else {
			fprintf(stderr, "benchtool: unknown operation %s\n",
				op);
			return 2;
		}
		ops++;
	}
	t1 = now();
	close(dfd);
	free(fdata);
	printf("%ld %.6f\n", ops, t1 - t0);
	return 0;
}

static int list(const char *dir, long repeat)
{
	long entries = 0;
	double t0, t1;

	start_barrier();
	t0 = now();
	for (long r = 0; r < repeat; r++) {
		DIR *d = opendir(dir);
		struct dirent *de;

		if (!d)
			die("opendir", dir);
		errno = 0;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				entries++;
		}
		if (errno)
			die("readdir", dir);
		closedir(d);
	}
	t1 = now();
	printf("%ld %.6f\n", entries, t1 - t0);
	return 0;
}

/*
 * Poll DFD/NAME every poll_us until it exists (want_there) or is gone;
 * return the seconds since t0, or -1 after timeout seconds.
 */
static double poll_name(int dfd, const char *name, bool want_there, double t0,
			long poll_us, double timeout)
{
	struct timespec nap = { poll_us / 1000000, poll_us % 1000000 * 1000 };
	struct stat st;

	for (;;) {
		int rc = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW);
		double t = now();

		if (rc != 0 && errno != ENOENT)
			die("stat", name);
		if ((rc == 0) == want_there)
			return t - t0;
		if (t - t0 > timeout)
			return -1;
		nanosleep(&nap, NULL);
	}
}

static int converge(const char *dira, const char *dirb, long count,
		    long poll_us, double timeout)
{
	int da = open(dira, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int db = open(dirb, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char c[32], m[32];

	if (da < 0)
		die("open", dira);
	if (db < 0)
		die("open", dirb);
	for (long i = 0; i < count; i++) {
		double t0, t1, appear, t2, t3, seen, gone;
		int fd;

		snprintf(c, sizeof c, "c%07ld", i);
		snprintf(m, sizeof m, "m%07ld", i);
		t0 = now();
		fd = openat(da, c, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			    0644);
		if (fd < 0 || close(fd) != 0)
			die("create", c);
		t1 = now();
		appear = poll_name(db, c, true, t1, poll_us, timeout);
		t2 = now();
		if (renameat(da, c, da, m) != 0)
			die("rename", c);
		t3 = now();
		seen = poll_name(db, m, true, t3, poll_us, timeout);
		gone = poll_name(db, c, false, t3, poll_us, timeout);
		printf("%.6f %.6f %.6f %.6f %.6f\n", t1 - t0, appear, t3 - t2,
		       seen, gone);
		fflush(stdout);
	}
	close(db);
	close(da);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "seqwrite"))
		return seqwrite(argv[2], strtoull(argv[3], NULL, 0),
				strtoull(argv[4], NULL, 0));
	if (argc == 3 && !strcmp(argv[1], "seqread"))
		return seqread(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "readdir"))
		return list(argv[2], strtol(argv[3], NULL, 0));
	if (argc == 7 && !strcmp(argv[1], "converge"))
		return converge(argv[2], argv[3], strtol(argv[4], NULL, 0),
				strtol(argv[5], NULL, 0),
				strtod(argv[6], NULL));
	if (argc == 5)
		return meta(argv[1], argv[2], strtol(argv[3], NULL, 0),
			    strtol(argv[4], NULL, 0));
	fprintf(stderr, "usage: see the comment at the top of benchtool.c\n");
	return 2;
}
