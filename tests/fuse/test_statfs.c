/* SPDX-License-Identifier: MIT */
/*
 * statfs(2) of a mount reports real numbers: the name limit, free space of
 * the store's disk, inode counts, and blocks used by stored objects.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

static void statfs_init(void)
{
	tm_init();
	expect_ok(mkdir(mp("ns"), 0755));
}

TestSuite(statfs, .init = statfs_init, .fini = tm_fini, .timeout = 60);

/* statfs counts committed data: let the closes' flushes finish first */
static struct statvfs statvfs_of(void)
{
	struct statvfs sv;
	int rc;

	tm_settle();
	rc = statvfs(tm.mnt, &sv);

	cr_assert(eq(int, rc, 0), "statvfs: %s", strerror(errno));
	return sv;
}

/* Bytes the mount reports as used. */
static int64_t used_bytes(const struct statvfs *sv)
{
	return (int64_t)(sv->f_blocks - sv->f_bfree) * (int64_t)sv->f_frsize;
}

Test(statfs, limits_and_counts)
{
	struct statvfs sv;
	int i;

	for (i = 0; i < 20; i++)
		cr_assert(eq(int, write_file(mp("ns/f%d", i), "x", 1), 0));
	expect_ok(mkdir(mp("ns/d"), 0755));
	sv = statvfs_of();
	cr_assert(eq(u64, sv.f_namemax, 255));
	cr_assert(gt(u64, sv.f_bavail, 0));
	cr_assert(gt(u64, sv.f_bfree, 0));
	cr_assert(ge(u64, sv.f_bfree, sv.f_bavail));
	cr_assert(ge(u64, sv.f_blocks, sv.f_bfree));
	cr_assert(gt(u64, sv.f_frsize, 0));
	cr_assert(gt(u64, sv.f_bsize, 0));
	/* root, ns, 20 files, d */
	cr_assert(ge(u64, sv.f_files, 23));
	cr_assert(ge(u64, sv.f_files, sv.f_ffree));
	cr_assert(ge(u64, sv.f_files - sv.f_ffree, 23),
		  "f_files %llu - f_ffree %llu < 23 inodes in use",
		  (unsigned long long)sv.f_files,
		  (unsigned long long)sv.f_ffree);
}

Test(statfs, used_blocks_follow_stored_data)
{
	const size_t len = 4 * MIB;
	char *data = malloc(len);
	struct statvfs s0, s1, s2;
	int64_t u0, u1, u2;

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, len, 41);
	s0 = statvfs_of();
	u0 = used_bytes(&s0);

	cr_assert(eq(int, write_file(mp("ns/big"), data, len), 0));
	s1 = statvfs_of();
	u1 = used_bytes(&s1);
	cr_assert(ge(i64, u1 - u0, (int64_t)len),
		  "used grew by %lld bytes after writing %zu",
		  (long long)(u1 - u0), len);
	cr_assert(le(i64, u1 - u0, (int64_t)len + 2 * MIB),
		  "used grew by %lld bytes after writing %zu",
		  (long long)(u1 - u0), len);

	/* a duplicate stores nothing new */
	cr_assert(eq(int, write_file(mp("ns/dup"), data, len), 0));
	s1 = statvfs_of();
	cr_assert(le(i64, used_bytes(&s1) - u1, MIB / 2),
		  "a duplicate grew used by %lld bytes",
		  (long long)(used_bytes(&s1) - u1));
	u1 = used_bytes(&s1);

	expect_ok(unlink(mp("ns/big")));
	expect_ok(unlink(mp("ns/dup")));
	cr_assert(eq(i64, tm_wait_objects(0, 2000), 0));
	s2 = statvfs_of();
	u2 = used_bytes(&s2);
	cr_assert(ge(i64, u1 - u2, (int64_t)len),
		  "used dropped by %lld bytes after deleting %zu",
		  (long long)(u1 - u2), len);
	free(data);
}
