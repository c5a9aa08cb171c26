/* SPDX-License-Identifier: MIT */
/*
 * Read replies spliced from object files (fs/ops.c, tally_read_fd()): the
 * bytes are exactly those a copied reply gives, across block boundaries,
 * at EOF, over holes, and never older than dirty or in-flight data.
 *
 * The daemon splices only when a pipe can grow to hold its largest reply,
 * which fs.pipe-max-size (1 MiB by default) forbids without
 * CAP_SYS_RESOURCE; the suite raises it for its mounts and puts back the
 * old value. Reads use O_DIRECT so that each read(2) reaches the daemon
 * with its own offset and size instead of the kernel's readahead.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

#define BS 65536 /* the block size of the suite's store */
#define PIPE_MAX "/proc/sys/fs/pipe-max-size"

static char old_pipe_max[32];

static void put_pipe_max(const char *v)
{
	FILE *f = fopen(PIPE_MAX, "w");

	cr_assert(ne(ptr, f, NULL), "open %s: %s", PIPE_MAX, strerror(errno));
	cr_assert(ge(int, fputs(v, f), 0));
	cr_assert(eq(int, fclose(f), 0), "write %s: %s", PIPE_MAX,
		  strerror(errno));
}

static void splice_init(void)
{
	FILE *f = fopen(PIPE_MAX, "r");

	cr_assert(ne(ptr, f, NULL), "open %s: %s", PIPE_MAX, strerror(errno));
	cr_assert(ne(ptr, fgets(old_pipe_max, sizeof(old_pipe_max), f), NULL));
	fclose(f);
	put_pipe_max("4194304");
	tm_options = "block_size=65536";
	tm_init();
}

static void splice_fini(void)
{
	unsetenv("TALLYFS_FAULT");
	tm_fini();
	if (old_pipe_max[0])
		put_pipe_max(old_pipe_max);
}

TestSuite(splice, .init = splice_init, .fini = splice_fini, .timeout = 90);

/* status field @key as a number (-1 when missing) */
static long long status_num(const char *key)
{
	size_t n;
	char *doc = read_file(mp(".tally/status"), &n), pat[64], *p;
	long long v = -1;

	cr_assert(ne(ptr, doc, NULL), "read status: %s", strerror(errno));
	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = strstr(doc, pat);
	if (p)
		v = strtoll(p + strlen(pat), NULL, 10);
	free(doc);
	return v;
}

/* O_DIRECT pread of [off, off+len) compared with want (the file's bytes,
 * @size of them): the read must return exactly what lies before EOF */
static void check_read(int fd, const char *want, size_t size, off_t off,
		       size_t len)
{
	char *got = malloc(len ? len : 1);
	size_t expect = (size_t)off >= size	   ? 0
			: size - (size_t)off < len ? size - (size_t)off
						   : len;
	ssize_t n;

	cr_assert(ne(ptr, got, NULL));
	n = pread(fd, got, len, off);
	cr_assert(eq(i64, n, (int64_t)expect),
		  "pread %zu at %lld: %zd (%s), expected %zu", len,
		  (long long)off, n, n < 0 ? strerror(errno) : "", expect);
	cr_assert(eq(i64, first_diff(got, want + off, expect), -1),
		  "pread %zu at %lld differs at +%ld", len, (long long)off,
		  first_diff(got, want + off, expect));
	free(got);
}

Test(splice, committed_data_reads_back_exactly)
{
	/* 9 blocks and a tail; block 5 a hole (zeros, read by copy) */
	size_t size = 9 * BS + 1234, i;
	char *want = malloc(size);
	long long before, after;
	int fd;
	struct {
		off_t off;
		size_t len;
	} r[] = {
		{ 0, 4096 },		/* inside block 0 */
		{ 0, BS },		/* block 0 exactly */
		{ BS - 100, 8192 },	/* across blocks 0 and 1 */
		{ 2 * BS + 7, 3 * BS }, /* four blocks */
		{ BS, 6 * BS },		/* more blocks than one reply splices */
		{ 5 * BS - 10, 4096 },	/* into the hole */
		{ 9 * BS - 4096, 8192 }, /* across the last block to the tail */
		{ 9 * BS + 1000, 65536 }, /* past EOF */
		{ (off_t)size, 4096 },	  /* at EOF */
		{ 3, 1 << 20 },		  /* the whole file, unaligned */
	};

	cr_assert(ne(ptr, want, NULL));
	fill_random(want, size, 42);
	memset(want + 5 * BS, 0, BS);
	expect_ok(mkdir(mp("ns"), 0755));
	fd = open(mp("ns/f"), O_CREAT | O_WRONLY, 0644);
	expect_ok(fd);
	/* the hole: block 5 is never written */
	cr_assert(eq(i64, pwrite(fd, want, 5 * BS, 0), 5 * BS));
	cr_assert(eq(i64, pwrite(fd, want + 6 * BS, size - 6 * BS, 6 * BS),
		     (int64_t)(size - 6 * BS)));
	expect_ok(close(fd));
	tm_settle();
	/* a fresh mount: nothing of the file in the kernel's cache */
	cr_assert(eq(int, tm_remount(), 0));
	before = status_num("spliced_reads");
	cr_assert(ge(i64, before, 0), "no spliced_reads in the status");
	fd = open(mp("ns/f"), O_RDONLY | O_DIRECT);
	expect_ok(fd);
	for (i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		check_read(fd, want, size, r[i].off, r[i].len);
	expect_ok(close(fd));
	after = status_num("spliced_reads");
	/* blocks 0, 0, 0-1, 2-5 (no: the hole), 1-6 (too many), 4-5 (hole),
	 * 8-9, 9, -, 0-9 (too many): at least four spliced */
	cr_assert(ge(i64, after - before, 4), "spliced %lld reads",
		  after - before);
	free(want);
}

Test(splice, newer_data_is_never_hidden_by_the_object_file)
{
	size_t size = 4 * BS, i;
	char *want = malloc(size), *patch = malloc(BS);
	int wfd, rfd;

	cr_assert(ne(ptr, want, NULL));
	cr_assert(ne(ptr, patch, NULL));
	fill_random(want, size, 7);
	expect_ok(mkdir(mp("ns"), 0755));
	cr_assert(eq(int, write_file(mp("ns/f"), want, size), 0));
	tm_settle();
	wfd = open(mp("ns/f"), O_WRONLY);
	expect_ok(wfd);
	rfd = open(mp("ns/f"), O_RDONLY | O_DIRECT);
	expect_ok(rfd);
	for (i = 0; i < 8; i++) {
		/* dirty (not yet flushed) data over a committed block, then
		 * read across it: the new bytes, never the object's */
		off_t off = (off_t)(i % 4) * BS + (off_t)i * 1000;

		fill_random(patch, 3000, 100 + i);
		cr_assert(eq(i64, pwrite(wfd, patch, 3000, off), 3000));
		memcpy(want + off, patch, 3000);
		check_read(rfd, want, size, 0, size);
		check_read(rfd, want, size, off - 10 > 0 ? off - 10 : 0,
			   BS + 20);
		if (i % 2) {
			/* in flight or committed: the same bytes */
			expect_ok(fsync(wfd));
			check_read(rfd, want, size, 0, size);
		}
	}
	expect_ok(close(wfd));
	tm_settle();
	check_read(rfd, want, size, 0, size);
	expect_ok(close(rfd));
	/* and after a remount, from the object files alone */
	cr_assert(eq(int, tm_remount(), 0));
	cr_assert(eq(i64, file_cmp(mp("ns/f"), want, size), -1));
	free(want);
	free(patch);
}

Test(splice, a_failed_splice_sends_nothing_and_the_read_is_copied)
{
	size_t size = 3 * BS;
	char *want = malloc(size);
	int fd;

	cr_assert(ne(ptr, want, NULL));
	fill_random(want, size, 9);
	expect_ok(mkdir(mp("ns"), 0755));
	cr_assert(eq(int, write_file(mp("ns/f"), want, size), 0));
	tm_settle();
	/* the daemon's second splice of an object file into a reply's pipe
	 * fails: the first segment of that reply is in the pipe already */
	setenv("TALLYFS_FAULT", "splice:2:5", 1);
	cr_assert(eq(int, tm_remount(), 0));
	unsetenv("TALLYFS_FAULT");
	/* through the page cache (the first read spans two blocks): a
	 * short reply would read as EOF, or as zeros */
	cr_assert(eq(i64, file_cmp(mp("ns/f"), want, size), -1));
	fd = open(mp("ns/f"), O_RDONLY | O_DIRECT);
	expect_ok(fd);
	check_read(fd, want, size, BS / 2, 2 * BS);
	expect_ok(close(fd));
	free(want);
}
