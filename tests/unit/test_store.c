/* SPDX-License-Identifier: MIT */
/*
 * A corrupt or foreign store is refused with a message naming the
 * problem, and the exact errno: a meta.db of random bytes, truncated,
 * empty, another application's SQLite database, a future format version;
 * a marker of garbage or of a future format; a directory that is not a
 * store. Every refusal leaves the directory exactly as it was: the same
 * files, sizes and bytes (the lock file too), none added.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/objects/store.h"
#include "tests/unit/util.h"

static char *dir;
static char store[4096];

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
}

static void teardown(void)
{
	tu_rmrf(dir);
	free(dir);
	dir = NULL;
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

static char *path_of(const char *name)
{
	static char p[4200];

	snprintf(p, sizeof(p), "%s/%s", store, name);
	return p;
}

static void put(const char *name, const void *buf, size_t len)
{
	int fd = open(path_of(name), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0, "%s", name);
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* A real store, created and closed (marker, lock, meta.db, shards/). */
static void make_store(void)
{
	struct store *s;

	cr_assert_eq(store_open(store, true, 4096, &s), 0);
	store_close(s);
	/* as left by another process: a refusal must not rewrite it */
	put("lock", "1\n", 2);
}

/* Run @sql on @name (an SQLite database of the store or a new one). */
static void sql(const char *name, const char *text)
{
	sqlite3 *db;

	cr_assert_eq(sqlite3_open(path_of(name), &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK,
		     "%s: %s", text, sqlite3_errmsg(db));
	cr_assert_eq(sqlite3_close(db), SQLITE_OK);
}

/* One line per file under @path: name, type, size, hash of the bytes. */
static void snap(const char *path, const char *rel, char *out, size_t size)
{
	struct dirent **v;
	int n, i;

	n = scandir(path, &v, NULL, alphasort);
	cr_assert_geq(n, 0, "%s", path);
	for (i = 0; i < n; i++) {
		char p[4200], r[4200];
		struct stat st;
		size_t len = strlen(out);

		if (!strcmp(v[i]->d_name, ".") || !strcmp(v[i]->d_name, "..")) {
			free(v[i]);
			continue;
		}
		snprintf(p, sizeof(p), "%s/%s", path, v[i]->d_name);
		snprintf(r, sizeof(r), "%s%s", rel, v[i]->d_name);
		cr_assert_eq(lstat(p, &st), 0);
		if (S_ISDIR(st.st_mode)) {
			snprintf(out + len, size - len, "%s/\n", r);
			snprintf(r, sizeof(r), "%s%s/", rel, v[i]->d_name);
			snap(p, r, out, size);
			free(v[i]);
		} else {
			/* meta.reserve: 5 MiB */
			static char buf[8 << 20];
			int fd = open(p, O_RDONLY);
			ssize_t got;

			cr_assert_geq(fd, 0);
			got = read(fd, buf, sizeof(buf));
			close(fd);
			cr_assert_eq(got, st.st_size, "%s", r);
			snprintf(out + len, size - len, "%s %o %lld %016llx\n",
				 r, (unsigned)st.st_mode, (long long)st.st_size,
				 (unsigned long long)XXH3_64bits(buf,
								 (size_t)got));
			free(v[i]);
		}
	}
	free(v);
}

/*
 * store_open(@create) of the store refuses with @err, logs a message
 * containing @msg, and changes nothing in the directory.
 */
static void refused(bool create, int err, const char *msg)
{
	static char before[65536], after[65536], log[8192];
	struct store *s = NULL;
	char logf[4200];
	int saved, fd;
	ssize_t n;

	before[0] = after[0] = '\0';
	snap(store, "", before, sizeof(before));
	snprintf(logf, sizeof(logf), "%s/log", dir);
	fd = open(logf, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	cr_assert_eq(store_open(store, create, 4096, &s), err,
		     "store_open should fail with %d (%s)", err,
		     strerror(-err));
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, log, sizeof(log) - 1, 0);
	close(fd);
	log[n > 0 ? n : 0] = '\0';
	cr_assert_not_null(strstr(log, msg), "message '%s' not in: %s", msg,
			   log);
	snap(store, "", after, sizeof(after));
	cr_assert_str_eq(after, before, "the refused store was modified");
}

Test(store, meta_random_bytes)
{
	char junk[8192];

	make_store();
	tu_fill(junk, sizeof(junk), 7);
	put("meta.db", junk, sizeof(junk));
	refused(false, -EUCLEAN, "is not a SQLite database");
	refused(true, -EUCLEAN, "is not a SQLite database");
}

Test(store, meta_truncated)
{
	static char db[1 << 20];
	size_t cuts[] = { 4096, 8192, 100, 1 }, i;
	ssize_t len;
	int fd;

	make_store();
	fd = open(path_of("meta.db"), O_RDONLY);
	cr_assert_geq(fd, 0);
	len = read(fd, db, sizeof(db));
	close(fd);
	cr_assert_gt(len, 16384);
	for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		put("meta.db", db, cuts[i]);
		refused(false, -EUCLEAN, "meta.db");
	}
}

Test(store, meta_empty)
{
	make_store();
	put("meta.db", "", 0);
	refused(false, -EUCLEAN, "metadata");
	refused(true, -EUCLEAN, "is empty");
}

Test(store, meta_missing)
{
	make_store();
	cr_assert_eq(unlink(path_of("meta.db")), 0);
	refused(false, -ENOENT, "no meta.db): mount it with -o meta=URI");
	refused(true, -ENOENT, "no meta.db): mount it with -o meta=URI");
}

Test(store, meta_of_another_application)
{
	make_store();
	cr_assert_eq(unlink(path_of("meta.db")), 0);
	sql("meta.db", "CREATE TABLE t(a); INSERT INTO t VALUES (1)");
	refused(false, -EUCLEAN,
		"belongs to another application "
		"(application_id 0)");
	sql("meta.db", "PRAGMA application_id = 305419896");
	refused(true, -EUCLEAN, "(application_id 305419896)");
}

Test(store, meta_future_version)
{
	make_store();
	sql("meta.db", "PRAGMA user_version = 5");
	refused(false, -EPROTO,
		"has format version 5, this tallyfs reads "
		"version 4");
	/* and it opens again once the version is back */
	sql("meta.db", "PRAGMA user_version = 4");
	make_store();
}

Test(store, marker_garbage)
{
	static const char *const bad[] = {
		"",
		"tallyfs store\n",
		"tallyfs store\nformat\n",
		"tallyfs store \nformat 1\n",
		"TALLYFS STORE\nformat 1\n",
		"tallyfs store\nformat x1\n",
		"\177ELF\2\1\1",
	};
	size_t i;

	make_store();
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put("tallyfs-store", bad[i], strlen(bad[i]));
		refused(false, -EUCLEAN, "not a tallyfs store marker");
		refused(true, -EUCLEAN, "not a tallyfs store marker");
	}
}

Test(store, marker_future_format)
{
	make_store();
	put("tallyfs-store", "tallyfs store\nformat 3\n", 23);
	refused(false, -EPROTO,
		"has format version 3; this tallyfs knows "
		"versions 1 and 2");
	put("tallyfs-store", "tallyfs store\nformat 99999999999\n", 33);
	refused(true, -EPROTO, "has format version 2147483647");
}

Test(store, not_a_store)
{
	cr_assert_eq(mkdir(store, 0700), 0);
	refused(false, -ENOENT, "is not a tallyfs store");
	put("notes.txt", "hello\n", 6);
	refused(false, -ENOTEMPTY, "is not empty and is not a tallyfs store");
	refused(true, -ENOTEMPTY, "is not empty and is not a tallyfs store");
}

/* the marker is checked before meta.db is even opened */
Test(store, marker_before_meta)
{
	char junk[4096];

	make_store();
	tu_fill(junk, sizeof(junk), 9);
	put("meta.db", junk, sizeof(junk));
	put("tallyfs-store", "tallyfs store\nformat 3\n", 23);
	refused(false, -EPROTO, "has format version 3");
}

/*
 * A damaged config (found by fuzz_store_open): refused before meta_open
 * writes anything, such as the row of shard 0 that an older store lacks.
 */
Test(store, meta_bad_block_size)
{
	make_store();
	sql("meta.db", "DELETE FROM shards WHERE id = 0;"
		       "UPDATE config SET value = 1000 "
		       "WHERE key = 'block_size'");
	refused(false, -EUCLEAN, "is damaged: bad block size");
	sql("meta.db", "DELETE FROM config WHERE key = 'block_size'");
	refused(true, -EUCLEAN, "is damaged: bad block size");
	/* with its block size back, the store opens (and gets its row) */
	sql("meta.db", "INSERT INTO config(key, value) "
		       "VALUES ('block_size', 4096)");
	make_store();
}

/*
 * A table that is not the one tallyfs made (found by fuzz_store_open: a
 * damaged schema made the upgrade fail with -EIO): -EUCLEAN, and the
 * tables the upgrade had created before it failed are rolled back.
 */
Test(store, meta_foreign_table)
{
	make_store();
	sql("meta.db", "DROP TABLE pin_objects; DROP TABLE shards;"
		       "CREATE TABLE shards(id INTEGER PRIMARY KEY)");
	refused(false, -EUCLEAN, "its tables are not those of tallyfs");
	refused(true, -EUCLEAN, "its tables are not those of tallyfs");
}

/*
 * A config table out of key order in a store of an older version (found
 * by fuzz_store_open; tests/fuzz/corpus/store_open/config_out_of_order_
 * before_upgrade): its block size read well before the upgrade of its
 * tables, and not after it. Refused with nothing written, the upgrade
 * rolled back, not committed before the refusal.
 */
Test(store, meta_reads_otherwise_after_its_upgrade)
{
	const char *src = getenv("TALLY_SRC");
	char from[4200];
	static char buf[1 << 16];
	ssize_t n;
	int fd;

	cr_assert_not_null(src, "TALLY_SRC is not set");
	make_store();
	snprintf(from, sizeof(from),
		 "%s/tests/fuzz/corpus/store_open/"
		 "config_out_of_order_before_upgrade",
		 src);
	fd = open(from, O_RDONLY);
	cr_assert_geq(fd, 0, "%s", from);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	cr_assert_gt(n, 0);
	unlink(path_of("meta.db-wal"));
	unlink(path_of("meta.db-shm"));
	put("meta.db", buf, (size_t)n);
	refused(false, -EUCLEAN, "once its tables are brought up to date");
}
