/* SPDX-License-Identifier: MIT */
/*
 * The control files: /.tally/ctl runs a command per write and returns its
 * report on read; /.tally/status is one JSON document.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests/fuse/mount.h"
#include "tools/ctljson.h"

TestSuite(ctl, .init = tm_init, .fini = tm_fini, .timeout = 60);

/* Write one command to /.tally/ctl; returns 0 or the errno of write(). */
static int ctl(const char *cmd)
{
	int fd = open(mp(".tally/ctl"), O_WRONLY);
	ssize_t n;
	int e = 0;

	cr_assert(ge(int, fd, 0), "open ctl: %s", strerror(errno));
	n = write(fd, cmd, strlen(cmd));
	if (n < 0)
		e = errno;
	else
		cr_assert(eq(i64, n, (long)strlen(cmd)), "short ctl write");
	close(fd);
	return e;
}

/* Sorted, comma-joined names of the root directory. */
static void root_names(char *out, size_t size)
{
	char *names[64];
	size_t n = 0, i, j;
	struct dirent *de;
	DIR *d = opendir(tm.mnt);

	cr_assert(ne(ptr, d, NULL));
	while ((de = readdir(d)) && n < 64)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			names[n++] = strdup(de->d_name);
	closedir(d);
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			char *t = names[j];

			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	out[0] = '\0';
	for (i = 0; i < n; i++) {
		size_t l = strlen(out);

		snprintf(out + l, size - l, "%s%s", i ? "," : "", names[i]);
		free(names[i]);
	}
}

Test(ctl, modes_of_the_control_files)
{
	struct stat st;

	expect_ok(stat(mp(".tally/ctl"), &st));
	cr_assert(eq(u32, st.st_mode, S_IFREG | 0600));
	expect_ok(stat(mp(".tally/status"), &st));
	cr_assert(eq(u32, st.st_mode, S_IFREG | 0444));
}

Test(ctl, branch_copies_a_namespace)
{
	char *data = malloc(2 * MIB), refs[64], buf[64];
	bool copy;
	struct stat sa, sb;
	ssize_t n;
	int fd;

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, 2 * MIB, 61);
	expect_ok(mkdir(mp("A"), 0755));
	expect_ok(mkdir(mp("A/sub"), 0750));
	cr_assert(eq(int, write_file(mp("A/file"), data, 2 * MIB), 0));
	cr_assert(eq(int, write_file(mp("A/sub/small"), "small", 5), 0));
	expect_ok(symlink("../file", mp("A/sub/link")));
	expect_ok(setxattr(mp("A/file"), "user.k", "v", 1, 0));
	cr_assert(eq(i64, tm_count_objects(), 3));

	cr_assert(eq(int, ctl("branch A B\n"), 0));
	root_names(buf, sizeof(buf));
	cr_assert(eq(str, buf, ".tally,A,B"));
	cr_assert(eq(i64, file_cmp(mp("B/file"), data, 2 * MIB), -1));
	cr_assert(eq(i64, file_cmp(mp("B/sub/small"), "small", 5), -1));
	n = readlink(mp("B/sub/link"), buf, sizeof(buf) - 1);
	cr_assert(eq(i64, n, 7));
	buf[n] = '\0';
	cr_assert(eq(str, buf, "../file"));
	xattr_get(mp("B/file"), "user.k", buf, sizeof(buf));
	cr_assert(eq(str, buf, "v"));
	/* one host, in O(1): no row copied, no count changed (B reads A's
	 * rows); a store of several hosts (TALLY_TEST_PG) still copies */
	copy = tm.db[0] != '\0';
	xattr_get(mp("A/file"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, copy ? "2 2" : "1 1"));
	xattr_get(mp("B/file"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, copy ? "2 2" : "1 1"));
	xattr_get(mp("B/sub/small"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, copy ? "2" : "1"));
	/* no data copied */
	cr_assert(eq(i64, tm_count_objects(), 3));
	expect_ok(stat(mp("A/sub"), &sa));
	expect_ok(stat(mp("B/sub"), &sb));
	cr_assert(ne(u64, sa.st_ino, sb.st_ino));
	cr_assert(eq(u32, sb.st_mode, sa.st_mode));

	/* copy-on-write: the branches are independent */
	fd = open(mp("B/file"), O_WRONLY);
	cr_assert(ge(int, fd, 0));
	n = pwrite(fd, "branch B", 8, 0);
	cr_assert(eq(i64, n, 8));
	expect_ok(close(fd));
	cr_assert(eq(i64, file_cmp(mp("A/file"), data, 2 * MIB), -1));
	xattr_get(mp("A/file"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, copy ? "1 2" : "1 1"));
	expect_ok(unlink(mp("A/sub/small")));
	cr_assert(eq(i64, file_cmp(mp("B/sub/small"), "small", 5), -1));
	xattr_get(mp("B/sub/small"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1"));
	free(data);
}

Test(ctl, bad_commands_fail_and_change_nothing)
{
	char before[256], after[256];

	expect_ok(mkdir(mp("A"), 0755));
	expect_ok(mkdir(mp("A2"), 0755));
	cr_assert(eq(int, write_file(mp("A/f"), "a", 1), 0));
	cr_assert(eq(int, write_file(mp("A2/g"), "g", 1), 0));
	root_names(before, sizeof(before));
	cr_assert(eq(str, before, ".tally,A,A2"));

	cr_assert(eq(int, ctl("bogus\n"), EINVAL));
	cr_assert(eq(int, ctl("bogus"), EINVAL));
	cr_assert(eq(int, ctl("branch A\n"), EINVAL));
	cr_assert(eq(int, ctl("branch A B C\n"), EINVAL));
	cr_assert(eq(int, ctl("\n"), EINVAL));
	cr_assert(eq(int, ctl("branch missing X\n"), ENOENT));
	cr_assert(eq(int, ctl("branch A A2\n"), EEXIST));
	{
		/* .tally is taken, though not a namespace */
		int e = ctl("branch A .tally\n");

		cr_assert(e == EEXIST || e == EINVAL, "branch A .tally: %s",
			  strerror(e));
	}
	cr_assert(eq(int, ctl("drain\ndrain\n"), EINVAL));

	root_names(after, sizeof(after));
	cr_assert(eq(str, after, before));
	cr_assert(eq(i64, file_cmp(mp("A2/g"), "g", 1), -1));
	expect_err(lstat(mp("A2/f"), &(struct stat){ 0 }), ENOENT);
	expect_err(lstat(mp("X"), &(struct stat){ 0 }), ENOENT);
	expect_err(lstat(mp("B"), &(struct stat){ 0 }), ENOENT);
}

Test(ctl, drain_report_is_read_back)
{
	char buf[4096], line[256];
	const char *p;
	off_t pos;
	ssize_t n;
	int fd, wfd;

	expect_ok(mkdir(mp("A"), 0755));
	/* something buffered: an open file with unwritten data */
	wfd = open(mp("A/f"), O_WRONLY | O_CREAT, 0644);
	cr_assert(ge(int, wfd, 0));
	n = write(wfd, "buffered", 8);
	cr_assert(eq(i64, n, 8));

	fd = open(mp(".tally/ctl"), O_RDWR);
	cr_assert(ge(int, fd, 0), "open ctl: %s", strerror(errno));
	n = write(fd, "drain\n", 6);
	cr_assert(eq(i64, n, 6), "write drain: %s", strerror(errno));
	pos = lseek(fd, 0, SEEK_CUR);
	cr_assert(eq(i64, pos, 6));
	n = pread(fd, buf, sizeof(buf) - 1, pos);
	cr_assert(gt(i64, n, 0), "pread report: %s", strerror(errno));
	buf[n] = '\0';
	cr_assert(ne(ptr, strstr(buf, "flushed: "), NULL), "report '%s'", buf);
	/* every line is "key: value" */
	for (p = buf; *p;) {
		size_t l = strcspn(p, "\n");
		char *colon;

		cr_assert(lt(sz, l, sizeof(line)));
		memcpy(line, p, l);
		line[l] = '\0';
		colon = strstr(line, ": ");
		cr_assert(ne(ptr, colon, NULL), "report line '%s'", line);
		cr_assert(gt(i64, colon - line, 0), "report line '%s'", line);
		p += l;
		if (*p == '\n')
			p++;
	}
	/* read(2) at the current offset returns the same report */
	{
		char again[4096];
		ssize_t m = read(fd, again, sizeof(again) - 1);

		cr_assert(eq(i64, m, n));
		again[m] = '\0';
		cr_assert(eq(str, again, buf));
	}
	expect_ok(close(fd));
	/* the drain committed the buffered data: visible in the store */
	cr_assert(eq(i64, tm_count_objects(), 1));
	expect_ok(close(wfd));
	cr_assert(eq(i64, file_cmp(mp("A/f"), "buffered", 8), -1));
}

/* The number member @key of the status @doc, or -1. */
static double status_number(struct json_t *doc, const char *key)
{
	struct json_t *v = ctljson_get(doc, key);
	char buf[32];

	if (!v || ctljson_kind(v) != CTLJSON_NUMBER)
		return -1;
	return strtod(ctljson_text(v, buf, sizeof(buf)), NULL);
}

/* The count member @key of the status @doc (a whole number), or -1. */
static double status_count(struct json_t *doc, const char *key)
{
	uint64_t v;

	if (ctljson_u64(ctljson_get(doc, key), &v))
		return -1;
	return (double)v;
}

Test(ctl, status_is_json)
{
	static const char *const counts[] = {
		"namespaces",	 "inodes",	 "objects",
		"bytes_logical", "bytes_stored", "pending_flushes",
		"durable_seq",	 "block_size",
	};
	char *data = malloc(MIB);
	struct json_t *status = NULL;
	char *doc;
	size_t n, i;

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, MIB, 62);
	expect_ok(mkdir(mp("A"), 0755));
	expect_ok(mkdir(mp("B"), 0755));
	cr_assert(eq(int, write_file(mp("A/f"), data, MIB), 0));
	cr_assert(eq(int, write_file(mp("B/f"), data, MIB), 0));
	/* closes do not wait for their flushes: the counts are committed */
	cr_assert(eq(int, ctl("drain\n"), 0));

	doc = read_file(mp(".tally/status"), &n);
	cr_assert(ne(ptr, doc, NULL), "read status: %s", strerror(errno));
	cr_assert(gt(sz, n, 0));
	cr_assert(eq(sz, strlen(doc), n), "NUL inside the status");
	/* one JSON object, nothing after it */
	cr_assert(eq(int, ctljson_parse(doc, &status), 0),
		  "not a JSON object: '%s'", doc);

	cr_assert(ne(ptr, strstr(doc, "\"namespaces\": 2"), NULL),
		  "status: '%s'", doc);
	for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		double v = status_count(status, counts[i]);

		cr_assert(ge(dbl, v, 0.0), "no count for \"%s\" in '%s'",
			  counts[i], doc);
	}
	cr_assert(eq(dbl, status_count(status, "namespaces"), 2.0));
	cr_assert(eq(dbl, status_count(status, "objects"), 1.0));
	cr_assert(eq(dbl, status_count(status, "block_size"), 1048576.0));
	cr_assert(eq(dbl, status_count(status, "bytes_logical"), 2.0 * MIB));
	cr_assert(eq(dbl, status_count(status, "bytes_stored"), 1.0 * MIB));
	cr_assert(eq(dbl, status_number(status, "dedup_ratio"), 2.0));
	cr_assert(eq(dbl, status_count(status, "pending_flushes"), 0.0));
	ctljson_free(status);
	free(doc);
	free(data);
}

Test(ctl, branch_includes_unflushed_writes)
{
	char refs[64];
	ssize_t n;
	int fd;

	expect_ok(mkdir(mp("A"), 0755));
	fd = open(mp("A/f"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(ge(int, fd, 0));
	n = write(fd, "before the branch", 17);
	cr_assert(eq(i64, n, 17));
	/* written, not yet closed */
	cr_assert(eq(int, ctl("branch A B\n"), 0));
	cr_assert(eq(i64, file_cmp(mp("B/f"), "before the branch", 17), -1));
	n = pwrite(fd, "AFTER", 5, 0);
	cr_assert(eq(i64, n, 5));
	expect_ok(close(fd));
	cr_assert(eq(i64, file_cmp(mp("A/f"), "AFTERe the branch", 17), -1));
	cr_assert(eq(i64, file_cmp(mp("B/f"), "before the branch", 17), -1));
	/* A's new version is committed once its flush is */
	cr_assert(eq(int, ctl("drain\n"), 0));
	xattr_get(mp("B/f"), "user.tally.refs", refs, sizeof(refs));
	cr_assert(eq(str, refs, "1"));
}
