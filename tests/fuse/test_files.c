/* SPDX-License-Identifier: MIT */
/*
 * Regular file data on a real mount: block boundaries (1 MiB blocks),
 * overwrites of committed data, O_APPEND, truncate, sparse files and the
 * objects they need in the store.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

static void files_init(void)
{
	tm_init();
	tm_mkns("ns");
}

TestSuite(files, .init = files_init, .fini = tm_fini, .timeout = 60);

static int open_ok(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC, 0644);

	cr_assert(ge(int, fd, 0), "open %s: %s", path, strerror(errno));
	return fd;
}

static void pwrite_ok(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n = pwrite(fd, buf, len, off);

	cr_assert(eq(i64, n, (long)len), "pwrite %zu at %lld: %s", len,
		  (long long)off, n < 0 ? strerror(errno) : "short");
}

static void close_ok(int fd)
{
	int rc = close(fd);

	cr_assert(eq(int, rc, 0), "close: %s", strerror(errno));
}

static off_t size_of(const char *path)
{
	struct stat st;
	int rc = stat(path, &st);

	cr_assert(eq(int, rc, 0), "stat %s: %s", path, strerror(errno));
	return st.st_size;
}

/* pread exactly len bytes at off and compare with want. */
static void expect_pread(int fd, const void *want, size_t len, off_t off)
{
	char *got = malloc(len + 1);
	ssize_t n;
	long d;

	cr_assert(ne(ptr, got, NULL));
	n = pread(fd, got, len + 1, off);
	cr_assert(ge(i64, n, (long)len), "pread %zu at %lld: %s", len,
		  (long long)off, n < 0 ? strerror(errno) : "short");
	d = first_diff(got, want, len);
	free(got);
	cr_assert(eq(i64, d, -1), "pread at %lld: first difference at +%ld",
		  (long long)off, d);
}

Test(files, round_trip_across_block_boundaries)
{
	const size_t len = 4 * MIB + 10;
	const off_t offs[] = { 0, MIB - 1, MIB, 3 * MIB + 5 };
	char *data = malloc(len), *model = calloc(1, len);
	char piece[64];
	size_t i;
	int fd;

	cr_assert(ne(ptr, data, NULL));
	cr_assert(ne(ptr, model, NULL));
	fill_random(data, len, 1);

	/* one big write, read back whole and at the boundaries */
	cr_assert(eq(int, write_file(mp("ns/big"), data, len), 0));
	cr_assert(eq(i64, size_of(mp("ns/big")), (long)len));
	cr_assert(eq(i64, file_cmp(mp("ns/big"), data, len), -1));
	fd = open_ok(mp("ns/big"), O_RDONLY);
	for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
		expect_pread(fd, data + offs[i], 5, offs[i]);
	expect_pread(fd, data + len - 3, 3, (off_t)(len - 3));
	close_ok(fd);

	/* small writes at the boundaries of an empty file, zeros between */
	fd = open_ok(mp("ns/pieces"), O_RDWR | O_CREAT | O_TRUNC);
	for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		fill_random(piece, sizeof(piece), 100 + i);
		pwrite_ok(fd, piece, sizeof(piece), offs[i]);
		memcpy(model + offs[i], piece, sizeof(piece));
	}
	/* before the commit, through the dirty buffer */
	expect_pread(fd, model, 3 * MIB + 5 + sizeof(piece), 0);
	close_ok(fd);
	cr_assert(eq(i64, size_of(mp("ns/pieces")),
		     3 * MIB + 5 + (long)sizeof(piece)));
	/* after the commit */
	cr_assert(eq(i64,
		     file_cmp(mp("ns/pieces"), model,
			      3 * MIB + 5 + sizeof(piece)),
		     -1));
	free(data);
	free(model);
}

Test(files, pwrite_into_committed_file)
{
	const size_t len = 3 * MIB;
	char *data = malloc(len);
	char patch[300];
	int fd;

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, len, 2);
	cr_assert(eq(int, write_file(mp("ns/f"), data, len), 0));

	fd = open_ok(mp("ns/f"), O_WRONLY);
	fill_random(patch, sizeof(patch), 3);
	pwrite_ok(fd, patch, 10, MIB + MIB / 2);
	memcpy(data + MIB + MIB / 2, patch, 10);
	/* straddling the 2 MiB boundary */
	pwrite_ok(fd, patch + 10, 200, 2 * MIB - 100);
	memcpy(data + 2 * MIB - 100, patch + 10, 200);
	/* the very first and the very last byte */
	pwrite_ok(fd, patch + 210, 1, 0);
	data[0] = patch[210];
	pwrite_ok(fd, patch + 211, 1, (off_t)len - 1);
	data[len - 1] = patch[211];
	close_ok(fd);

	cr_assert(eq(i64, size_of(mp("ns/f")), (long)len));
	cr_assert(eq(i64, file_cmp(mp("ns/f"), data, len), -1));
	free(data);
}

Test(files, o_append_appends_at_the_end)
{
	char *want = malloc(MIB + 7);
	int fd;
	off_t pos;
	ssize_t n;

	cr_assert(ne(ptr, want, NULL));
	cr_assert(eq(int, write_file(mp("ns/log"), "hello", 5), 0));
	fd = open_ok(mp("ns/log"), O_WRONLY | O_APPEND);
	pos = lseek(fd, 0, SEEK_SET);
	cr_assert(eq(i64, pos, 0));
	n = write(fd, " world", 6);
	cr_assert(eq(i64, n, 6));
	pos = lseek(fd, 0, SEEK_CUR);
	cr_assert(eq(i64, pos, 11));
	close_ok(fd);
	cr_assert(eq(i64, file_cmp(mp("ns/log"), "hello world", 11), -1));

	/* appending across a block boundary, two handles interleaved */
	fill_random(want, MIB - 3, 4);
	cr_assert(eq(int, write_file(mp("ns/log2"), want, MIB - 3), 0));
	{
		int a = open_ok(mp("ns/log2"), O_WRONLY | O_APPEND);
		int b = open_ok(mp("ns/log2"), O_WRONLY | O_APPEND);

		n = write(a, "ABCD", 4);
		cr_assert(eq(i64, n, 4));
		n = write(b, "EFG", 3);
		cr_assert(eq(i64, n, 3));
		close_ok(a);
		close_ok(b);
	}
	memcpy(want + MIB - 3, "ABCDEFG", 7);
	cr_assert(eq(i64, size_of(mp("ns/log2")), MIB + 4));
	cr_assert(eq(i64, file_cmp(mp("ns/log2"), want, MIB + 4), -1));
	free(want);
}

Test(files, ftruncate_grow_and_shrink)
{
	char *want = calloc(1, 3 * MIB);
	char zero[100] = { 0 };
	int fd;

	cr_assert(ne(ptr, want, NULL));
	/* small: grow reads zeros */
	memset(want, 'A', 100);
	fd = open_ok(mp("ns/t"), O_RDWR | O_CREAT | O_TRUNC);
	pwrite_ok(fd, want, 100, 0);
	close_ok(fd);
	fd = open_ok(mp("ns/t"), O_RDWR);
	expect_ok(ftruncate(fd, 300));
	expect_pread(fd, want, 100, 0);
	expect_pread(fd, zero, 100, 150);
	/* shrink, then grow again: the tail is zeros, not the old bytes */
	expect_ok(ftruncate(fd, 10));
	expect_ok(ftruncate(fd, 100));
	expect_pread(fd, want, 10, 0);
	expect_pread(fd, zero, 90, 10);
	close_ok(fd);
	memset(want + 10, 0, 90);
	cr_assert(eq(i64, size_of(mp("ns/t")), 100));
	cr_assert(eq(i64, file_cmp(mp("ns/t"), want, 100), -1));

	/* across blocks: 2 MiB of data, cut inside block 1, grow to 3 MiB */
	fill_random(want, 2 * MIB, 5);
	cr_assert(eq(int, write_file(mp("ns/t2"), want, 2 * MIB), 0));
	fd = open_ok(mp("ns/t2"), O_RDWR);
	expect_ok(ftruncate(fd, MIB + 10));
	expect_ok(ftruncate(fd, 3 * MIB));
	memset(want + MIB + 10, 0, 2 * MIB - 10);
	expect_pread(fd, want, 3 * MIB, 0);
	close_ok(fd);
	cr_assert(eq(i64, size_of(mp("ns/t2")), 3 * MIB));
	cr_assert(eq(i64, file_cmp(mp("ns/t2"), want, 3 * MIB), -1));
	free(want);
}

Test(files, truncate_by_path_grow_and_shrink)
{
	char *want = calloc(1, 3 * MIB);

	cr_assert(ne(ptr, want, NULL));
	memset(want, 'B', 100);
	cr_assert(eq(int, write_file(mp("ns/t"), want, 100), 0));
	expect_ok(truncate(mp("ns/t"), 4096));
	cr_assert(eq(i64, size_of(mp("ns/t")), 4096));
	cr_assert(eq(i64, file_cmp(mp("ns/t"), want, 4096), -1));
	expect_ok(truncate(mp("ns/t"), 10));
	expect_ok(truncate(mp("ns/t"), 100));
	memset(want + 10, 0, 90);
	cr_assert(eq(i64, size_of(mp("ns/t")), 100));
	cr_assert(eq(i64, file_cmp(mp("ns/t"), want, 100), -1));

	/* across blocks, with the file not open anywhere */
	fill_random(want, 2 * MIB + 77, 6);
	cr_assert(eq(int, write_file(mp("ns/t2"), want, 2 * MIB + 77), 0));
	expect_ok(truncate(mp("ns/t2"), MIB - 1));
	cr_assert(eq(i64, size_of(mp("ns/t2")), MIB - 1));
	cr_assert(eq(i64, file_cmp(mp("ns/t2"), want, MIB - 1), -1));
	expect_ok(truncate(mp("ns/t2"), 3 * MIB));
	memset(want + MIB - 1, 0, 2 * MIB + 1);
	cr_assert(eq(i64, size_of(mp("ns/t2")), 3 * MIB));
	cr_assert(eq(i64, file_cmp(mp("ns/t2"), want, 3 * MIB), -1));
	/* truncate to zero drops every object of the file */
	expect_ok(truncate(mp("ns/t2"), 0));
	cr_assert(eq(i64, size_of(mp("ns/t2")), 0));
	expect_ok(truncate(mp("ns/t"), 0));
	cr_assert(eq(i64, tm_wait_objects(0, 2000), 0));
	free(want);
}

Test(files, sparse_file_needs_one_object)
{
	const off_t off = 10 * MIB;
	char data[4096], *got;
	struct stat st;
	size_t n, i;
	long before = tm_count_objects();
	int fd;

	cr_assert(eq(i64, before, 0));
	fill_random(data, sizeof(data), 7);
	fd = open_ok(mp("ns/sparse"), O_WRONLY | O_CREAT | O_TRUNC);
	pwrite_ok(fd, data, sizeof(data), off);
	close_ok(fd);

	expect_ok(stat(mp("ns/sparse"), &st));
	cr_assert(eq(i64, st.st_size, off + 4096));
	/* the allocation is the one short block, not 10 MiB of zeros */
	cr_assert(le(i64, st.st_blocks, 2048), "st_blocks %lld",
		  (long long)st.st_blocks);
	cr_assert(eq(i64, tm_count_objects(), 1));

	got = read_file(mp("ns/sparse"), &n);
	cr_assert(ne(ptr, got, NULL));
	cr_assert(eq(sz, n, (size_t)off + 4096));
	for (i = 0; i < (size_t)off; i++)
		if (got[i])
			break;
	cr_assert(eq(sz, i, (size_t)off), "hole byte %zu is not zero", i);
	cr_assert(eq(i64, first_diff(got + off, data, sizeof(data)), -1));
	free(got);
}

Test(files, zero_blocks_need_no_object)
{
	char *want = calloc(1, 3 * MIB);
	int fd;

	cr_assert(ne(ptr, want, NULL));
	cr_assert(eq(i64, tm_count_objects(), 0));
	/* a file of explicit zeros */
	cr_assert(eq(int, write_file(mp("ns/zeros"), want, 2 * MIB), 0));
	cr_assert(eq(i64, tm_count_objects(), 0));
	cr_assert(eq(i64, file_cmp(mp("ns/zeros"), want, 2 * MIB), -1));

	/* zeros, data, zeros: only the middle block is stored */
	fill_random(want + MIB, MIB, 8);
	fd = open_ok(mp("ns/mixed"), O_WRONLY | O_CREAT | O_TRUNC);
	pwrite_ok(fd, want, 3 * MIB, 0);
	close_ok(fd);
	cr_assert(eq(i64, tm_count_objects(), 1));
	cr_assert(eq(i64, file_cmp(mp("ns/mixed"), want, 3 * MIB), -1));

	/* overwriting the data block with zeros frees its object */
	memset(want + MIB, 0, MIB);
	fd = open_ok(mp("ns/mixed"), O_WRONLY);
	pwrite_ok(fd, want + MIB, MIB, MIB);
	close_ok(fd);
	cr_assert(eq(i64, tm_wait_objects(0, 2000), 0));
	cr_assert(eq(i64, file_cmp(mp("ns/mixed"), want, 3 * MIB), -1));
	free(want);
}

Test(files, overwrite_drops_the_old_object)
{
	char a[5000], b[5000];
	char objs[256];
	long n;

	fill_random(a, sizeof(a), 9);
	fill_random(b, sizeof(b), 10);
	cr_assert(eq(int, write_file(mp("ns/f"), a, sizeof(a)), 0));
	n = xattr_get(mp("ns/f"), "user.tally.objects", objs, sizeof(objs));
	cr_assert(eq(i64, n, 34), "user.tally.objects '%s'", objs);
	cr_assert(eq(str, objs + 32, "@0"));
	objs[32] = '\0';
	cr_assert(eq(int, tm_object_exists(objs), 1));
	cr_assert(eq(i64, tm_count_objects(), 1));

	cr_assert(eq(int, write_file(mp("ns/f"), b, sizeof(b)), 0));
	cr_assert(eq(i64, file_cmp(mp("ns/f"), b, sizeof(b)), -1));
	cr_assert(eq(i64, tm_wait_objects(1, 2000), 1));
	cr_assert(eq(int, tm_object_exists(objs), 0),
		  "object %s of the old content is still stored", objs);
}

Test(files, shrink_and_grow_while_dirty)
{
	char *want = malloc(3 * MIB);
	int fd;

	cr_assert(ne(ptr, want, NULL));
	fill_random(want, 2 * MIB, 15);
	fd = open_ok(mp("ns/d"), O_RDWR | O_CREAT | O_TRUNC);
	pwrite_ok(fd, want, 2 * MIB, 0);
	/* nothing committed yet: cut inside block 1, grow, write past it */
	expect_ok(ftruncate(fd, MIB + 10));
	expect_ok(ftruncate(fd, 2 * MIB));
	pwrite_ok(fd, "tail", 4, 2 * MIB + 100);
	memset(want + MIB + 10, 0, 2 * MIB - 10);
	memcpy(want + 2 * MIB + 100, "tail", 4);
	expect_pread(fd, want, 2 * MIB + 104, 0);
	close_ok(fd);
	cr_assert(eq(i64, size_of(mp("ns/d")), 2 * MIB + 104));
	cr_assert(eq(i64, file_cmp(mp("ns/d"), want, 2 * MIB + 104), -1));
	free(want);
}

Test(files, extending_a_short_last_block)
{
	char *want = calloc(1, 2 * MIB);
	int fd;

	cr_assert(ne(ptr, want, NULL));
	/* a committed 5000-byte file: its only object is short */
	fill_random(want, 5000, 16);
	cr_assert(eq(int, write_file(mp("ns/s"), want, 5000), 0));
	fd = open_ok(mp("ns/s"), O_WRONLY);
	pwrite_ok(fd, "after the gap", 13, 10000);
	close_ok(fd);
	memcpy(want + 10000, "after the gap", 13);
	cr_assert(eq(i64, size_of(mp("ns/s")), 10013));
	cr_assert(eq(i64, file_cmp(mp("ns/s"), want, 10013), -1));

	/* the same, jumping into the next block */
	memset(want, 0, 2 * MIB);
	fill_random(want, 100, 17);
	cr_assert(eq(int, write_file(mp("ns/s2"), want, 100), 0));
	fd = open_ok(mp("ns/s2"), O_WRONLY);
	pwrite_ok(fd, "far", 3, MIB + MIB / 2);
	close_ok(fd);
	memcpy(want + MIB + MIB / 2, "far", 3);
	cr_assert(eq(i64, size_of(mp("ns/s2")), MIB + MIB / 2 + 3));
	cr_assert(eq(i64, file_cmp(mp("ns/s2"), want, MIB + MIB / 2 + 3), -1));
	free(want);
}

Test(files, sparse_beyond_4_gib)
{
	const off_t off = 5LL * 1024 * MIB + 12345;
	char buf[64], got[64 + 16];
	struct stat st;
	ssize_t n;
	int fd;

	fill_random(buf, sizeof(buf), 18);
	fd = open_ok(mp("ns/huge"), O_RDWR | O_CREAT | O_TRUNC);
	pwrite_ok(fd, buf, sizeof(buf), off);
	close_ok(fd);
	expect_ok(stat(mp("ns/huge"), &st));
	cr_assert(eq(i64, st.st_size, off + 64));
	cr_assert(eq(i64, tm_count_objects(), 1));

	fd = open_ok(mp("ns/huge"), O_RDONLY);
	n = pread(fd, got, sizeof(got), off - 16);
	cr_assert(eq(i64, n, 80));
	cr_assert(eq(i64,
		     first_diff(got, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16),
		     -1));
	cr_assert(eq(i64, first_diff(got + 16, buf, sizeof(buf)), -1));
	n = pread(fd, got, 16, 4LL * 1024 * MIB);
	cr_assert(eq(i64, n, 16));
	cr_assert(eq(i64,
		     first_diff(got, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16),
		     -1));
	close_ok(fd);
	expect_ok(truncate(mp("ns/huge"), 0));
	cr_assert(eq(i64, tm_wait_objects(0, 2000), 0));
}

Test(files, mmap_shared_write_and_read)
{
	const size_t len = MIB + 8192;
	char *want = malloc(len), *map;
	int fd;

	cr_assert(ne(ptr, want, NULL));
	fill_random(want, len, 19);
	fd = open_ok(mp("ns/m"), O_RDWR | O_CREAT | O_TRUNC);
	expect_ok(ftruncate(fd, (off_t)len));
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert(ne(ptr, map, MAP_FAILED), "mmap: %s", strerror(errno));
	memcpy(map, want, len);
	expect_ok(msync(map, len, MS_SYNC));
	expect_ok(munmap(map, len));
	close_ok(fd);
	cr_assert(eq(i64, size_of(mp("ns/m")), (long)len));
	cr_assert(eq(i64, file_cmp(mp("ns/m"), want, len), -1));
	cr_assert(eq(i64, tm_count_objects(), 2));

	/* read through a fresh mapping after a remount */
	cr_assert(eq(int, tm_remount(), 0));
	fd = open_ok(mp("ns/m"), O_RDONLY);
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	cr_assert(ne(ptr, map, MAP_FAILED), "mmap: %s", strerror(errno));
	cr_assert(eq(i64, first_diff(map, want, len), -1));
	expect_ok(munmap(map, len));
	close_ok(fd);
	free(want);
}

Test(files, hole_reads_zero_while_dirty)
{
	char buf[4096], got[4096], zero[4096] = { 0 };
	int fd;

	fill_random(buf, sizeof(buf), 20);
	fd = open_ok(mp("ns/h"), O_RDWR | O_CREAT | O_TRUNC);
	pwrite_ok(fd, buf, sizeof(buf), 3 * MIB);
	/* not committed yet */
	cr_assert(eq(i64, pread(fd, got, sizeof(got), MIB), 4096));
	cr_assert(eq(i64, first_diff(got, zero, sizeof(zero)), -1));
	cr_assert(eq(i64, pread(fd, got, sizeof(got), 3 * MIB - 2048), 4096));
	cr_assert(eq(i64, first_diff(got, zero, 2048), -1));
	cr_assert(eq(i64, first_diff(got + 2048, buf, 2048), -1));
	close_ok(fd);
	cr_assert(eq(i64, tm_count_objects(), 1));
}

Test(files, many_small_appends)
{
	const size_t piece = 700, count = 3000;
	char *want = malloc(piece * count);
	size_t i;
	int fd;

	cr_assert(ne(ptr, want, NULL));
	fill_random(want, piece * count, 21);
	fd = open_ok(mp("ns/log"), O_WRONLY | O_CREAT | O_APPEND);
	for (i = 0; i < count; i++) {
		ssize_t n = write(fd, want + i * piece, piece);

		cr_assert(eq(i64, n, (long)piece), "append %zu", i);
	}
	close_ok(fd);
	cr_assert(eq(i64, size_of(mp("ns/log")), (long)(piece * count)));
	cr_assert(eq(i64, file_cmp(mp("ns/log"), want, piece * count), -1));
	cr_assert(eq(i64, tm_count_objects(), 3));
	free(want);
}
