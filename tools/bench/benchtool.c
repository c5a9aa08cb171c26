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
 *
 * Each prints "OPS SECONDS" (OPS = bytes for seqwrite/seqread, else
 * operations) on stdout. The data of seqwrite is generated before the
 * clock starts; the same SEED gives the same bytes, and every 4 KiB of it
 * is distinct, so neither a deduplicating nor a compressing target can
 * skip work unless it is given the same SEED twice on purpose. Any failed
 * call exits 1 with a message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

static int meta(const char *op, const char *dir, long first, long count)
{
	char a[32], b[32];
	struct stat st;
	double t0, t1;
	long ops = 0;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		die("open", dir);
	t0 = now();
	for (long i = first; i < first + count; i++) {
		snprintf(a, sizeof a, "f%07ld", i);
		if (!strcmp(op, "create")) {
			int fd = openat(dfd, a,
					O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
					0644);
			if (fd < 0 || close(fd) != 0)
				die("create", a);
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
	printf("%ld %.6f\n", ops, t1 - t0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "seqwrite"))
		return seqwrite(argv[2], strtoull(argv[3], NULL, 0),
				strtoull(argv[4], NULL, 0));
	if (argc == 3 && !strcmp(argv[1], "seqread"))
		return seqread(argv[2]);
	if (argc == 5)
		return meta(argv[1], argv[2], strtol(argv[3], NULL, 0),
			    strtol(argv[4], NULL, 0));
	fprintf(stderr, "usage: see the comment at the top of benchtool.c\n");
	return 2;
}
