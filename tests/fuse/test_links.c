/* SPDX-License-Identifier: MIT */
/*
 * Hard links inside a namespace (one inode), links across namespaces (a
 * new inode sharing the objects, copy-on-write), and object files deleted
 * when their last reference goes, open handles included.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

static void links_init(void)
{
	tm_init();
	tm_mkns("a");
	tm_mkns("b");
}

TestSuite(links, .init = links_init, .fini = tm_fini, .timeout = 60);

static void hashes_of(const char *path, char hashes[][33], size_t want)
{
	char objs[512], *p = objs;
	long n = xattr_get(path, "user.tally.objects", objs, sizeof(objs));
	size_t i;

	cr_assert(eq(i64, n, (long)(want * 35 - 1)), "%s: objects '%s'", path,
		  objs);
	for (i = 0; i < want; i++, p += 35) {
		memcpy(hashes[i], p, 32);
		hashes[i][32] = '\0';
		cr_assert(eq(int, tm_object_exists(hashes[i]), 1), "%s",
			  hashes[i]);
	}
}

Test(links, hard_link_within_namespace)
{
	char refs[64], data[3000];
	struct stat s1, s2;
	int fd;

	fill_random(data, sizeof(data), 21);
	cr_assert(eq(int, write_file(mp("a/f"), data, sizeof(data)), 0));
	expect_ok(mkdir(mp("a/sub"), 0755));
	expect_ok(link(mp("a/f"), mp("a/sub/g")));

	expect_ok(stat(mp("a/f"), &s1));
	expect_ok(stat(mp("a/sub/g"), &s2));
	cr_assert(eq(u64, s1.st_ino, s2.st_ino));
	cr_assert(eq(u64, s1.st_nlink, 2));
	cr_assert(eq(u64, s2.st_nlink, 2));
	xattr_get(mp("a/f"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1"));
	cr_assert(eq(i64, tm_count_objects(), 1));

	/* a write through one name shows through the other */
	fd = open(mp("a/sub/g"), O_WRONLY);
	cr_assert(ge(int, fd, 0));
	cr_assert(eq(i64, pwrite(fd, "XYZ", 3, 10), 3));
	expect_ok(close(fd));
	memcpy(data + 10, "XYZ", 3);
	cr_assert(eq(i64, file_cmp(mp("a/f"), data, sizeof(data)), -1));

	/* removing one name keeps the inode and its object */
	expect_ok(unlink(mp("a/f")));
	expect_ok(stat(mp("a/sub/g"), &s2));
	cr_assert(eq(u64, s2.st_nlink, 1));
	cr_assert(eq(u64, s2.st_ino, s1.st_ino));
	cr_assert(eq(i64, file_cmp(mp("a/sub/g"), data, sizeof(data)), -1));
	xattr_get(mp("a/sub/g"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1"));
	cr_assert(eq(i64, tm_count_objects(), 1));

	/* hard links to directories are refused */
	expect_err(link(mp("a/sub"), mp("a/sub2")), EPERM);
}

Test(links, link_across_namespaces_is_copy_on_write)
{
	char *data = malloc(2 * MIB), *orig = malloc(2 * MIB);
	char refs[64], ha[2][33], hb[2][33];
	struct stat sa, sb;
	int fd;

	cr_assert(ne(ptr, data, NULL));
	cr_assert(ne(ptr, orig, NULL));
	fill_random(orig, 2 * MIB, 22);
	cr_assert(eq(int, write_file(mp("a/f"), orig, 2 * MIB), 0));
	cr_assert(eq(i64, tm_count_objects(), 2));

	expect_ok(link(mp("a/f"), mp("b/f")));
	expect_ok(stat(mp("a/f"), &sa));
	expect_ok(stat(mp("b/f"), &sb));
	cr_assert(ne(u64, sa.st_ino, sb.st_ino));
	cr_assert(eq(u64, sa.st_nlink, 1));
	cr_assert(eq(u64, sb.st_nlink, 1));
	cr_assert(eq(i64, sb.st_size, 2 * MIB));
	cr_assert(eq(u32, sb.st_mode, sa.st_mode));
	xattr_get(mp("a/f"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "2 2"));
	xattr_get(mp("b/f"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "2 2"));
	cr_assert(eq(i64, tm_count_objects(), 2));
	hashes_of(mp("a/f"), ha, 2);
	hashes_of(mp("b/f"), hb, 2);
	cr_assert(eq(str, ha[0], hb[0]));
	cr_assert(eq(str, ha[1], hb[1]));
	cr_assert(eq(i64, file_cmp(mp("b/f"), orig, 2 * MIB), -1));

	/* writing to the copy leaves the original alone */
	memcpy(data, orig, 2 * MIB);
	fd = open(mp("b/f"), O_WRONLY);
	cr_assert(ge(int, fd, 0));
	cr_assert(eq(i64, pwrite(fd, "changed", 7, MIB + 5), 7));
	expect_ok(close(fd));
	memcpy(data + MIB + 5, "changed", 7);
	cr_assert(eq(i64, file_cmp(mp("b/f"), data, 2 * MIB), -1));
	cr_assert(eq(i64, file_cmp(mp("a/f"), orig, 2 * MIB), -1));
	xattr_get(mp("a/f"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "2 1"));
	xattr_get(mp("b/f"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "2 1"));
	cr_assert(eq(i64, tm_count_objects(), 3));

	/* and the other way round: truncating the original */
	expect_ok(truncate(mp("a/f"), 0));
	cr_assert(eq(i64, file_cmp(mp("b/f"), data, 2 * MIB), -1));
	xattr_get(mp("b/f"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1 1"));
	cr_assert(eq(i64, tm_wait_objects(2, 2000), 2));
	cr_assert(eq(int, tm_object_exists(ha[1]), 0));
	free(data);
	free(orig);
}

Test(links, unlink_last_name_deletes_objects)
{
	char *data = malloc(2 * MIB);
	char h[2][33];

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, 2 * MIB, 23);
	cr_assert(eq(int, write_file(mp("a/f"), data, 2 * MIB), 0));
	hashes_of(mp("a/f"), h, 2);
	expect_ok(link(mp("a/f"), mp("a/g")));
	expect_ok(link(mp("a/f"), mp("b/f")));
	cr_assert(eq(i64, tm_count_objects(), 2));

	expect_ok(unlink(mp("a/f")));
	expect_ok(unlink(mp("b/f")));
	/* a/g still names the inode */
	cr_assert(eq(i64, tm_count_objects(), 2));
	cr_assert(eq(i64, file_cmp(mp("a/g"), data, 2 * MIB), -1));

	expect_ok(unlink(mp("a/g")));
	cr_assert(eq(i64, tm_wait_objects(0, 2000), 0));
	cr_assert(eq(int, tm_object_exists(h[0]), 0));
	cr_assert(eq(int, tm_object_exists(h[1]), 0));
	free(data);
}

Test(links, unlinked_open_file_lives_until_close)
{
	char *data = malloc(2 * MIB), buf[64];
	struct stat st;
	int fd;
	ssize_t n;

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, 2 * MIB, 24);
	cr_assert(eq(int, write_file(mp("a/f"), data, 2 * MIB), 0));
	cr_assert(eq(i64, tm_count_objects(), 2));

	fd = open(mp("a/f"), O_RDWR);
	cr_assert(ge(int, fd, 0));
	expect_ok(unlink(mp("a/f")));
	expect_err(stat(mp("a/f"), &st), ENOENT);
	expect_ok(fstat(fd, &st));
	cr_assert(eq(u64, st.st_nlink, 0));
	cr_assert(eq(i64, st.st_size, 2 * MIB));

	/* still readable: objects must stay while the handle is open */
	cr_assert(eq(i64, tm_count_objects(), 2));
	n = pread(fd, buf, sizeof(buf), MIB + 100);
	cr_assert(eq(i64, n, (long)sizeof(buf)));
	cr_assert(eq(i64, first_diff(buf, data + MIB + 100, sizeof(buf)), -1));

	/* still writable, also after fsync commits the change */
	n = pwrite(fd, "new bytes", 9, 2 * MIB);
	cr_assert(eq(i64, n, 9));
	expect_ok(fsync(fd));
	n = pread(fd, buf, 9, 2 * MIB);
	cr_assert(eq(i64, n, 9));
	cr_assert(eq(i64, first_diff(buf, "new bytes", 9), -1));
	n = pread(fd, buf, 16, 0);
	cr_assert(eq(i64, n, 16));
	cr_assert(eq(i64, first_diff(buf, data, 16), -1));
	expect_ok(fstat(fd, &st));
	cr_assert(eq(i64, st.st_size, 2 * MIB + 9));

	expect_ok(close(fd));
	cr_assert(eq(i64, tm_wait_objects(0, 3000), 0));
	free(data);
}

Test(links, link_across_namespaces_sees_unflushed_data)
{
	char refs[64];
	ssize_t n;
	int fd;

	fd = open(mp("a/f"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(ge(int, fd, 0));
	n = write(fd, "written before the link", 23);
	cr_assert(eq(i64, n, 23));
	/* the handle is still open: the data may only be buffered */
	expect_ok(link(mp("a/f"), mp("b/f")));
	cr_assert(eq(i64, file_cmp(mp("b/f"), "written before the link", 23),
		     -1));
	expect_ok(close(fd));
	cr_assert(eq(i64, file_cmp(mp("b/f"), "written before the link", 23),
		     -1));
	cr_assert(eq(i64, file_cmp(mp("a/f"), "written before the link", 23),
		     -1));
	xattr_get(mp("b/f"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "2"));
}

static ssize_t copy_all(const char *from, const char *to, off_t off_in,
			off_t off_out, size_t len)
{
	int in = open(from, O_RDONLY), out;
	ssize_t total = 0;

	cr_assert(ge(int, in, 0), "open %s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT, 0644);
	cr_assert(ge(int, out, 0), "open %s: %s", to, strerror(errno));
	while ((size_t)total < len) {
		ssize_t n = copy_file_range(in, &off_in, out, &off_out,
					    len - (size_t)total, 0);

		cr_assert(ge(i64, n, 0), "copy_file_range: %s",
			  strerror(errno));
		if (n == 0)
			break;
		total += n;
	}
	expect_ok(close(in));
	expect_ok(close(out));
	return total;
}

Test(links, copy_file_range_shares_blocks)
{
	const size_t len = 3 * MIB + 5;
	char *data = malloc(len), *want = calloc(1, len + 100);
	char refs[64];

	cr_assert(ne(ptr, data, NULL));
	cr_assert(ne(ptr, want, NULL));
	fill_random(data, len, 25);
	cr_assert(eq(int, write_file(mp("a/src"), data, len), 0));
	cr_assert(eq(i64, tm_count_objects(), 4));

	/* whole file, inside a namespace and into another one */
	cr_assert(eq(i64, copy_all(mp("a/src"), mp("a/cp"), 0, 0, len),
		     (long)len));
	cr_assert(eq(i64, copy_all(mp("a/src"), mp("b/cp"), 0, 0, len),
		     (long)len));
	cr_assert(eq(i64, file_cmp(mp("a/cp"), data, len), -1));
	cr_assert(eq(i64, file_cmp(mp("b/cp"), data, len), -1));
	cr_assert(eq(i64, tm_count_objects(), 4));
	xattr_get(mp("a/src"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "3 3 3 3"));

	/* unaligned: bytes land where they belong */
	cr_assert(
		eq(i64, copy_all(mp("a/src"), mp("a/odd"), 100, 0, MIB), MIB));
	cr_assert(eq(i64, file_cmp(mp("a/odd"), data + 100, MIB), -1));
	memcpy(want + 100, data, len);
	cr_assert(eq(i64, copy_all(mp("a/src"), mp("a/shift"), 0, 100, len),
		     (long)len));
	cr_assert(eq(i64, file_cmp(mp("a/shift"), want, len + 100), -1));

	/* the copies are independent */
	cr_assert(eq(int, write_file(mp("a/src"), "gone", 4), 0));
	cr_assert(eq(i64, file_cmp(mp("a/cp"), data, len), -1));
	cr_assert(eq(i64, file_cmp(mp("b/cp"), data, len), -1));
	free(data);
	free(want);
}
