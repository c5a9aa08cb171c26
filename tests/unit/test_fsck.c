/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the offline checker (core/jobs/fsck.c) on real stores damaged
 * on purpose.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/jobs/fsck.h"
#include "core/objects/store.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096

static char *dir;
static char store[4096];

static void setup(void)
{
	static const struct tally_ctx me = { 0, 0 };
	struct tally_opts o = { .block_size = BS, .create = true };
	struct tally *t;
	struct stat ns, f;
	char data[3 * BS];

	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	cr_assert_eq(tally_open(store, &o, &t), 0);
	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, "main", 0755, &ns), 0);
	cr_assert_eq(tally_mknod(t, &me, ns.st_ino, "f", S_IFREG | 0644, 0, &f),
		     0);
	cr_assert_eq(tally_open_file(t, f.st_ino, O_RDWR), 0);
	tu_fill(data, sizeof(data), 42);
	cr_assert_eq(tally_write(t, f.st_ino, data, sizeof(data), 0),
		     (ssize_t)sizeof(data));
	cr_assert_eq(tally_release(t, f.st_ino), 0);
	cr_assert_eq(tally_close(t), 0);
}

static void teardown(void)
{
	tu_rmrf(dir);
	free(dir);
}

TestSuite(fsck, .init = setup, .fini = teardown, .timeout = 30);

static void run(bool repair, struct fsck_result *r)
{
	struct store *s;

	cr_assert_eq(store_open(store, false, BS, &s), 0);
	cr_assert_eq(fsck_run(s, repair, NULL, NULL, r), 0);
	store_close(s);
}

static void sql(const char *q)
{
	char path[4200];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/meta.db", store);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK, "%s",
		     sqlite3_errmsg(db));
	sqlite3_close(db);
}

Test(fsck, clean_store)
{
	struct fsck_result r;

	run(false, &r);
	cr_assert_eq(r.objects, 3);
	cr_assert_eq(r.references, 3);
	cr_assert_not(fsck_problems(&r));
}

Test(fsck, drift_found_and_repaired)
{
	struct fsck_result r;

	sql("UPDATE objects SET refcount = 5 WHERE id = 1;"
	    "UPDATE objects SET refcount = 0 WHERE id = 2");
	run(false, &r);
	cr_assert_eq(r.drift_over, 1);
	cr_assert_eq(r.drift_under, 1);
	run(true, &r);
	cr_assert_eq(r.repaired, 2);
	cr_assert_eq(r.removed, 0, "referenced objects are never deleted");
	run(false, &r);
	cr_assert_not(fsck_problems(&r));
	cr_assert_eq(tu_count_objects(store), 3);
}

/* Name of object row @id, read with SQLite directly. */
static void object_name(int id, char *name, size_t size)
{
	char path[4200];
	sqlite3_stmt *st;
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/meta.db", store);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db,
					"SELECT name FROM objects "
					"WHERE id = ?1",
					-1, &st, NULL),
		     SQLITE_OK);
	sqlite3_bind_int(st, 1, id);
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	snprintf(name, size, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

Test(fsck, orphan_found_and_removed)
{
	char path[4200];
	struct fsck_result r;
	int fd;

	snprintf(path, sizeof(path), "%s/shards/0/ab", store);
	mkdir(path, 0700);
	snprintf(path, sizeof(path),
		 "%s/shards/0/ab/abababababababababababababababab", store);
	fd = open(path, O_CREAT | O_WRONLY, 0400);
	cr_assert_geq(fd, 0);
	close(fd);
	run(false, &r);
	cr_assert_eq(r.orphans, 1);
	cr_assert(fsck_problems(&r));
	run(true, &r);
	cr_assert_eq(r.removed, 1);
	cr_assert_eq(access(path, F_OK), -1);
	run(false, &r);
	cr_assert_not(fsck_problems(&r));
	cr_assert_eq(tu_count_objects(store), 3);
}

Test(fsck, dangling_reference_found_not_hidden)
{
	char path[4200], name[64];
	struct fsck_result r;

	object_name(1, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/shards/0/%.2s/%s", store, name, name);
	cr_assert_eq(unlink(path), 0);
	run(false, &r);
	cr_assert_eq(r.dangling, 1);
	run(true, &r);
	run(false, &r);
	cr_assert_eq(r.dangling, 1, "a lost object cannot be repaired away");
	cr_assert_eq(tu_count_objects(store), 2);
}

Test(fsck, mounted_store_refused)
{
	struct store *a, *b;

	cr_assert_eq(store_open(store, false, BS, &a), 0);
	cr_assert_eq(store_open(store, false, BS, &b), -EBUSY);
	store_close(a);
}
