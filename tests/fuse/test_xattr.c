/* SPDX-License-Identifier: MIT */
/*
 * Deduplication and the virtual xattrs that show it (user.tally.refs,
 * user.tally.objects), and ordinary user.* extended attributes.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

static void xattr_init(void)
{
	tm_init();
	tm_mkns("ns");
}

TestSuite(xattr, .init = xattr_init, .fini = tm_fini, .timeout = 60);

/* Split "H1@0 H2@0" into hashes; asserts the exact format. */
static size_t parse_objects(const char *val, char hashes[][33], size_t max)
{
	const char *p = val;
	size_t n = 0;

	while (*p) {
		size_t i;

		cr_assert(lt(sz, n, max), "too many objects in '%s'", val);
		for (i = 0; i < 32; i++) {
			int hex = (p[i] >= '0' && p[i] <= '9') ||
				  (p[i] >= 'a' && p[i] <= 'f');

			cr_assert(eq(int, hex, 1),
				  "not a lowercase 32-hex hash in '%s'", val);
		}
		memcpy(hashes[n], p, 32);
		hashes[n][32] = '\0';
		p += 32;
		cr_assert(eq(int, strncmp(p, "@0", 2), 0), "no @0 in '%s'",
			  val);
		p += 2;
		n++;
		if (*p) {
			cr_assert(eq(chr, *p, ' '), "separator in '%s'", val);
			p++;
			cr_assert(ne(chr, *p, '\0'), "trailing space in '%s'",
				  val);
		}
	}
	return n;
}

Test(xattr, identical_files_share_objects)
{
	const size_t len = 2 * MIB;
	char *data = malloc(len);
	char refs[256], objs[256], objs2[256], hashes[4][33];
	long before, n;
	size_t k;

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, len, 11);
	before = tm_count_objects();
	cr_assert(eq(i64, before, 0));

	cr_assert(eq(int, write_file(mp("ns/a"), data, len), 0));
	cr_assert(eq(i64, tm_count_objects(), before + 2));
	n = xattr_get(mp("ns/a"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1 1"), "getxattr refs: %ld", n);

	cr_assert(eq(int, write_file(mp("ns/b"), data, len), 0));
	cr_assert(eq(i64, tm_count_objects(), before + 2));
	cr_assert(eq(i64, file_cmp(mp("ns/b"), data, len), -1));

	n = xattr_get(mp("ns/a"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(i64, n, 3));
	cr_assert(eq(str, refs, "2 2"));
	n = xattr_get(mp("ns/b"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "2 2"));

	n = xattr_get(mp("ns/a"), "user.tally.objects", objs, sizeof(objs));
	cr_assert(eq(i64, n, 2 * 34 + 1), "objects '%s'", objs);
	k = parse_objects(objs, hashes, 4);
	cr_assert(eq(sz, k, 2));
	cr_assert(ne(str, hashes[0], hashes[1]));
	cr_assert(eq(int, tm_object_exists(hashes[0]), 1), "%s", hashes[0]);
	cr_assert(eq(int, tm_object_exists(hashes[1]), 1), "%s", hashes[1]);
	n = xattr_get(mp("ns/b"), "user.tally.objects", objs2, sizeof(objs2));
	cr_assert(eq(str, objs2, objs));

	/* the size query of getxattr agrees with the value */
	n = getxattr(mp("ns/a"), "user.tally.objects", NULL, 0);
	cr_assert(eq(i64, n, 2 * 34 + 1));
	expect_err(getxattr(mp("ns/a"), "user.tally.objects", objs, 10),
		   ERANGE);

	/* one copy gone: counts drop to 1, the objects stay */
	expect_ok(unlink(mp("ns/b")));
	n = xattr_get(mp("ns/a"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1 1"));
	cr_assert(eq(i64, tm_count_objects(), before + 2));
	free(data);
}

Test(xattr, refs_in_block_order_within_one_file)
{
	char *data = malloc(3 * MIB);
	char refs[256], objs[256], hashes[4][33];
	size_t k;

	cr_assert(ne(ptr, data, NULL));
	/* blocks A B A: two objects, A referenced twice */
	fill_random(data, MIB, 12);
	fill_random(data + MIB, MIB, 13);
	memcpy(data + 2 * MIB, data, MIB);
	cr_assert(eq(int, write_file(mp("ns/aba"), data, 3 * MIB), 0));
	cr_assert(eq(i64, tm_count_objects(), 2));
	xattr_get(mp("ns/aba"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "2 1 2"));
	xattr_get(mp("ns/aba"), "user.tally.objects", objs, sizeof(objs));
	k = parse_objects(objs, hashes, 4);
	cr_assert(eq(sz, k, 3));
	cr_assert(eq(str, hashes[0], hashes[2]));
	cr_assert(ne(str, hashes[0], hashes[1]));
	cr_assert(eq(i64, file_cmp(mp("ns/aba"), data, 3 * MIB), -1));
	free(data);
}

Test(xattr, virtual_xattrs_are_read_only)
{
	char refs[64], objs[128];

	cr_assert(eq(int, write_file(mp("ns/f"), "content", 7), 0));
	xattr_get(mp("ns/f"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1"));
	xattr_get(mp("ns/f"), "user.tally.objects", objs, sizeof(objs));

	expect_err(setxattr(mp("ns/f"), "user.tally.refs", "7", 1, 0), EPERM);
	expect_err(setxattr(mp("ns/f"), "user.tally.refs", "7", 1,
			    XATTR_REPLACE),
		   EPERM);
	expect_err(setxattr(mp("ns/f"), "user.tally.objects", "x", 1, 0),
		   EPERM);
	expect_err(removexattr(mp("ns/f"), "user.tally.refs"), EPERM);
	expect_err(removexattr(mp("ns/f"), "user.tally.objects"), EPERM);
	/* nothing changed */
	{
		char again[128];

		xattr_get(mp("ns/f"), "user.tally.refs", again, sizeof(again));
		cr_assert(eq(str, again, "1"));
		xattr_get(mp("ns/f"), "user.tally.objects", again,
			  sizeof(again));
		cr_assert(eq(str, again, objs));
	}
}

static bool list_has(const char *list, ssize_t len, const char *name)
{
	ssize_t i = 0;

	while (i < len) {
		if (!strcmp(list + i, name))
			return true;
		i += (ssize_t)strlen(list + i) + 1;
	}
	return false;
}

static int list_count(const char *list, ssize_t len)
{
	ssize_t i = 0;
	int n = 0;

	while (i < len) {
		n++;
		i += (ssize_t)strlen(list + i) + 1;
	}
	return n;
}

Test(xattr, listxattr_shows_virtual_and_user_names)
{
	char list[1024];
	ssize_t n;
	bool has;

	cr_assert(eq(int, write_file(mp("ns/f"), "abc", 3), 0));
	expect_ok(setxattr(mp("ns/f"), "user.color", "blue", 4, 0));
	expect_ok(setxattr(mp("ns/f"), "user.empty", "", 0, 0));

	n = listxattr(mp("ns/f"), NULL, 0);
	cr_assert(gt(i64, n, 0), "listxattr size: %s", strerror(errno));
	n = listxattr(mp("ns/f"), list, sizeof(list));
	cr_assert(gt(i64, n, 0), "listxattr: %s", strerror(errno));
	cr_assert(eq(chr, list[n - 1], '\0'));
	has = list_has(list, n, "user.tally.refs");
	cr_assert(eq(int, has, 1));
	has = list_has(list, n, "user.tally.objects");
	cr_assert(eq(int, has, 1));
	has = list_has(list, n, "user.color");
	cr_assert(eq(int, has, 1));
	has = list_has(list, n, "user.empty");
	cr_assert(eq(int, has, 1));
	cr_assert(eq(int, list_count(list, n), 4));

	expect_ok(removexattr(mp("ns/f"), "user.color"));
	n = listxattr(mp("ns/f"), list, sizeof(list));
	has = list_has(list, n, "user.color");
	cr_assert(eq(int, has, 0));
	cr_assert(eq(int, list_count(list, n), 3));

	/* a buffer that is too small */
	expect_err(listxattr(mp("ns/f"), list, 5), ERANGE);
}

Test(xattr, user_xattr_set_get_remove)
{
	char val[300], big[255];
	long n;

	cr_assert(eq(int, write_file(mp("ns/f"), "abc", 3), 0));
	expect_ok(mkdir(mp("ns/d"), 0755));

	expect_err(getxattr(mp("ns/f"), "user.k", val, sizeof(val)), ENODATA);
	expect_err(setxattr(mp("ns/f"), "user.k", "v1", 2, XATTR_REPLACE),
		   ENODATA);
	expect_ok(setxattr(mp("ns/f"), "user.k", "v1", 2, XATTR_CREATE));
	n = xattr_get(mp("ns/f"), "user.k", val, sizeof(val));
	cr_assert(eq(i64, n, 2));
	cr_assert(eq(str, val, "v1"));
	expect_err(setxattr(mp("ns/f"), "user.k", "v2", 2, XATTR_CREATE),
		   EEXIST);
	xattr_get(mp("ns/f"), "user.k", val, sizeof(val));
	cr_assert(eq(str, val, "v1"));
	expect_ok(setxattr(mp("ns/f"), "user.k", "value2", 6, XATTR_REPLACE));
	n = xattr_get(mp("ns/f"), "user.k", val, sizeof(val));
	cr_assert(eq(i64, n, 6));
	cr_assert(eq(str, val, "value2"));
	expect_ok(setxattr(mp("ns/f"), "user.k", "v3", 2, 0));
	xattr_get(mp("ns/f"), "user.k", val, sizeof(val));
	cr_assert(eq(str, val, "v3"));

	/* binary value with NULs, exact length back */
	fill_random(big, sizeof(big), 14);
	big[0] = '\0';
	big[100] = '\0';
	expect_ok(setxattr(mp("ns/f"), "user.bin", big, sizeof(big), 0));
	n = getxattr(mp("ns/f"), "user.bin", val, sizeof(val));
	cr_assert(eq(i64, n, (long)sizeof(big)));
	cr_assert(eq(i64, first_diff(val, big, sizeof(big)), -1));

	/* on a directory too */
	expect_ok(setxattr(mp("ns/d"), "user.k", "dir", 3, 0));
	xattr_get(mp("ns/d"), "user.k", val, sizeof(val));
	cr_assert(eq(str, val, "dir"));

	expect_ok(removexattr(mp("ns/f"), "user.k"));
	expect_err(getxattr(mp("ns/f"), "user.k", val, sizeof(val)), ENODATA);
	expect_err(removexattr(mp("ns/f"), "user.k"), ENODATA);
	/* the directory's attribute is its own */
	xattr_get(mp("ns/d"), "user.k", val, sizeof(val));
	cr_assert(eq(str, val, "dir"));
}

Test(xattr, other_namespaces_are_not_supported)
{
	cr_assert(eq(int, write_file(mp("ns/f"), "abc", 3), 0));
	expect_err(setxattr(mp("ns/f"), "trusted.k", "v", 1, 0), EOPNOTSUPP);
	expect_err(setxattr(mp("ns/f"), "security.k", "v", 1, 0), EOPNOTSUPP);
}

Test(xattr, large_values_and_many_names)
{
	static char big[65536], got[65536 + 1];
	char name[64], list[8192];
	ssize_t n;
	int i;

	cr_assert(eq(int, write_file(mp("ns/f"), "abc", 3), 0));
	fill_random(big, sizeof(big), 15);
	expect_ok(setxattr(mp("ns/f"), "user.big", big, sizeof(big), 0));
	n = getxattr(mp("ns/f"), "user.big", got, sizeof(got));
	cr_assert(eq(i64, n, 65536), "getxattr: %s", strerror(errno));
	cr_assert(eq(i64, first_diff(got, big, sizeof(big)), -1));

	for (i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "user.name-%03d", i);
		expect_ok(setxattr(mp("ns/f"), name, name, strlen(name), 0));
	}
	n = listxattr(mp("ns/f"), NULL, 0);
	/* 100 * "user.name-NNN\0" + big + the two virtual names */
	cr_assert(eq(i64, n, 100 * 14 + 9 + 16 + 19));
	n = listxattr(mp("ns/f"), list, sizeof(list));
	cr_assert(eq(i64, n, 100 * 14 + 9 + 16 + 19));
	for (i = 0; i < 100; i++) {
		char val[64];
		bool has;

		snprintf(name, sizeof(name), "user.name-%03d", i);
		has = list_has(list, n, name);
		cr_assert(eq(int, has, 1), "%s not listed", name);
		xattr_get(mp("ns/f"), name, val, sizeof(val));
		cr_assert(eq(str, val, name));
	}
}
