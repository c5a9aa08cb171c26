/* SPDX-License-Identifier: MIT */
/*
 * The deletion of object files (core/reap.c and the settling of counts
 * at commit in core/meta_object.c): nothing that something still names is ever
 * deleted, whatever the order of the changes in a flush, a wrong count or
 * a lookup that fails. Against a real store: SQLite database and object
 * files, through core/tally.c's API.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fsck.h"
#include "core/gc.h"
#include "core/hash.h"
#include "core/meta.h"
#include "core/objstore.h"
#include "core/reap.h"
#include "core/tally.h"
#include "tests/unit/util.h"

#define BS 4096

static char *dir;
static char store[4096];
static struct tally *t;
static uint32_t bs = BS;
static void (*release_hook)(void *arg, uint64_t ino);

static void open_store(void)
{
	struct tally_opts o = {
		.block_size = bs,
		.create = true,
		.workers = 2,
		.release_hook = release_hook,
	};

	cr_assert_eq(tally_open(store, &o, &t), 0);
}

static void close_store(void)
{
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	bs = BS;
	release_hook = NULL;
	open_store();
}

static void teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(reap, .init = setup, .fini = teardown, .timeout = 120);

/* Run @sql on the closed store's database (damage made by hand). */
static void sql(const char *text)
{
	char path[4200];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/meta.db", store);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK,
		     "%s: %s", text, sqlite3_errmsg(db));
	sqlite3_close(db);
}

static void put(uint64_t ino, const void *buf, size_t len, off_t off)
{
	cr_assert_eq(tally_write(t, ino, buf, len, off), (ssize_t)len);
}

static void expect(uint64_t ino, const void *want, size_t len, off_t off)
{
	char *buf = malloc(len);
	ssize_t n;

	cr_assert_not_null(buf);
	n = tally_read(t, ino, buf, len, off);
	cr_assert_eq(n, (ssize_t)len, "read %zd of %zu at %lld", n, len,
		     (long long)off);
	cr_assert_eq(memcmp(buf, want, len), 0, "bytes differ at %lld",
		     (long long)off);
	free(buf);
}

/* A closed file @name in @ns holding @len bytes of @buf. */
static uint64_t file_with(uint64_t ns, const char *name, const void *buf,
			  size_t len)
{
	uint64_t ino = tu_newfile(t, ns, name);

	put(ino, buf, len, 0);
	cr_assert_eq(tally_release(t, ino), 0);
	return ino;
}

static uint64_t drift_now(void)
{
	struct tally_stats st;

	cr_assert_eq(tally_stats(t, &st), 0);
	return st.refcount_drift;
}

/*
 * Block 0 holds C (committed); one flush then writes D over block 0 and C
 * into block 1. The flush drops C's only old reference and names C again:
 * the object must survive, with one reference.
 */
static void move_content(uint32_t block_size)
{
	char *c = malloc(block_size), *d = malloc(block_size);
	uint64_t ns, ino;

	cr_assert(c && d);
	if (block_size != bs) {
		close_store();
		tu_rmrf(store);
		bs = block_size;
		open_store();
	}
	tu_fill(c, block_size, 1);
	tu_fill(d, block_size, 2);
	ns = tu_mkns(t, "main");
	ino = tu_newfile(t, ns, "f");
	put(ino, c, block_size, 0);
	cr_assert_eq(tally_fsync(t, ino, false), 0);
	put(ino, d, block_size, 0);
	put(ino, c, block_size, block_size);
	cr_assert_eq(tally_fsync(t, ino, false), 0);
	expect(ino, d, block_size, 0);
	expect(ino, c, block_size, block_size);
	cr_assert_eq(tally_release(t, ino), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tu_count_objects(store), 2);
	close_store();
	tu_fsck_clean(store, NULL);
	open_store();
	expect(ino, d, block_size, 0);
	expect(ino, c, block_size, block_size);
	free(c);
	free(d);
}

Test(reap, content_moved_inside_a_file_survives_4k)
{
	move_content(4096);
}

Test(reap, content_moved_inside_a_file_survives_1m)
{
	move_content(1u << 20);
}

Test(reap, under_count_never_deletes)
{
	char x[BS];
	uint64_t ns, b;

	tu_fill(x, sizeof(x), 3);
	ns = tu_mkns(t, "main");
	file_with(ns, "a", x, sizeof(x));
	b = file_with(ns, "b", x, sizeof(x));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	close_store();
	sql("UPDATE objects SET refcount = 1"); /* drift: 2 references */
	open_store();
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0); /* deletions done */
	cr_assert_eq(tu_count_objects(store), 1, "the object file is kept");
	expect(b, x, sizeof(x), 0);
	cr_assert_eq(drift_now(), 1);
	close_store();
	tu_fsck_clean(store, NULL); /* the count was corrected to 1 */
	open_store();
	expect(b, x, sizeof(x), 0);
}

Test(reap, count_below_zero_never_deletes)
{
	char x[BS], y[BS];
	uint64_t ns, b;

	tu_fill(x, sizeof(x), 4);
	tu_fill(y, sizeof(y), 5);
	ns = tu_mkns(t, "main");
	file_with(ns, "a", x, sizeof(x));
	b = file_with(ns, "b", x, sizeof(x));
	file_with(ns, "c", y, sizeof(y));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	close_store();
	sql("UPDATE objects SET refcount = 0");
	open_store();
	/* x: -1 with one reference left: corrected to 1 */
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	expect(b, x, sizeof(x), 0);
	/* y: -1 with none: the row goes, the file is left to GC */
	cr_assert_eq(tally_unlink(t, ns, "c"), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tu_count_objects(store), 2);
	cr_assert_eq(drift_now(), 2);
	{
		struct gc_opts o = { .grace = 0 };
		struct gc_report r;
		uint64_t collected;

		cr_assert_eq(gc_run(t, &o, &r), 0);
		collected = r.collected;
		cr_assert_eq(gc_run(t, &o, &r), 0);
		cr_assert_eq(collected + r.collected, 1);
	}
	cr_assert_eq(tu_count_objects(store), 1);
	close_store();
	tu_fsck_clean(store, NULL);
}

/* A dangling block reference (damage) must never bind to a new object. */
Test(reap, object_ids_are_never_used_again)
{
	char x[BS], y[BS];
	uint64_t ns, a;

	tu_fill(x, sizeof(x), 6);
	tu_fill(y, sizeof(y), 7);
	ns = tu_mkns(t, "main");
	a = file_with(ns, "a", x, sizeof(x));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	close_store();
	/* damage: x's row disappears, its reference stays */
	sql("DELETE FROM objects");
	open_store();
	file_with(ns, "b", y, sizeof(y));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	{
		char buf[BS];

		/* the reference to the vanished row reads nothing of y */
		cr_assert_lt(tally_read(t, a, buf, sizeof(buf), 0), 0);
	}
	close_store();
}

/* A store made before ids were kept unique is upgraded when opened. */
Test(reap, old_object_table_is_upgraded_at_open)
{
	char x[BS], y[BS];
	uint64_t ns;
	struct meta *m;
	int64_t id;
	uint32_t where;
	uint64_t size;
	int64_t refs;
	char name[OBJNAME_MAX];

	tu_fill(x, sizeof(x), 8);
	tu_fill(y, sizeof(y), 9);
	ns = tu_mkns(t, "main");
	file_with(ns, "a", x, sizeof(x));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	close_store();
	/* the table as it was made before, and a dangling reference to 7 */
	sql("DROP TRIGGER usage_add; DROP TRIGGER usage_del;"
	    "DROP TRIGGER usage_mov; DROP TRIGGER ghost_obj_del;"
	    "CREATE TABLE o1(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
	    " shard INTEGER NOT NULL, size INTEGER NOT NULL,"
	    " refcount INTEGER NOT NULL);"
	    "INSERT INTO o1 SELECT id, name, shard, size, refcount FROM objects;"
	    "DROP TABLE objects;"
	    "ALTER TABLE o1 RENAME TO objects;"
	    "DELETE FROM sqlite_sequence;"
	    "INSERT INTO blocks(ino, idx, obj, shard) VALUES (99999, 0, 7, 0)");
	open_store();
	file_with(ns, "b", y, sizeof(y));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	m = tally_meta_lock(t);
	/* the new object is the newest row: its id is past the dangling 7 */
	{
		struct meta_stats ms;

		cr_assert_eq(meta_stats(m, &ms), 0);
		cr_assert_eq(ms.objects, 2, "the triggers were made again");
	}
	tally_meta_unlock(t);
	{
		struct stat st;
		char key[256];
		ssize_t n;

		cr_assert_eq(tally_lookup(t, ns, "b", &st), 0);
		n = tally_getxattr(t, st.st_ino, "user.tally.objects", key,
				   sizeof(key) - 1);
		cr_assert_gt(n, 0);
		key[n] = '\0';
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(key, "@"),
			 key);
	}
	m = tally_meta_lock(t);
	cr_assert_eq(meta_object_info(m, name, &id, &where, &size, &refs), 0);
	tally_meta_unlock(t);
	cr_assert_gt(id, 7, "new object id %lld", (long long)id);
}

static uint64_t reopened;

static void reopen_once(void *arg, uint64_t ino)
{
	(void)arg;
	if (reopened == 0) {
		reopened = ino;
		cr_assert_eq(tally_open_file(t, ino, O_RDWR), 0);
	}
}

/* An open that comes in while the last handle of an unlinked file is
 * released gets a live file. */
Test(reap, release_races_a_reopen_of_an_unlinked_file)
{
	char x[BS], y[BS];
	uint64_t ns, ino;

	close_store();
	release_hook = reopen_once;
	reopened = 0;
	open_store();
	tu_fill(x, sizeof(x), 10);
	tu_fill(y, sizeof(y), 11);
	ns = tu_mkns(t, "main");
	ino = tu_newfile(t, ns, "f");
	put(ino, x, sizeof(x), 0);
	cr_assert_eq(tally_unlink(t, ns, "f"), 0);
	cr_assert_eq(tally_release(t, ino), 0); /* the hook reopens */
	cr_assert_eq(reopened, ino);
	expect(ino, x, sizeof(x), 0);
	put(ino, y, sizeof(y), BS);
	cr_assert_eq(tally_fsync(t, ino, false), 0);
	expect(ino, y, sizeof(y), BS);
	cr_assert_eq(tally_release(t, ino), 0); /* the real last one */
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tu_count_objects(store), 0);
	close_store();
	tu_fsck_clean(store, NULL);
}

/* A lookup of a verdict that fails keeps the file. */
Test(reap, failed_lookup_keeps_the_file)
{
	char x[BS];
	struct meta *m;
	uint64_t ns;
	int i;

	tu_fill(x, sizeof(x), 12);
	ns = tu_mkns(t, "main");
	file_with(ns, "a", x, sizeof(x));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tu_count_objects(store), 0);
	/* a stray file with no row: the row, the references and the
	 * protections are looked up; each lookup fails once in turn */
	for (i = 1; i <= 3; i++) {
		char name[OBJNAME_MAX];

		hash_block(x, sizeof(x), name);
		cr_assert_eq(objstore_ensure(tally_objstore(t), 0, name, x,
					     sizeof(x)),
			     0);
		m = tally_meta_lock(t);
		meta_inject_lookup(m, (unsigned)i, -EIO);
		cr_assert_eq(reap_copy(m, tally_objstore(t), name, 12345, 0, 0),
			     -EIO);
		tally_meta_unlock(t);
		cr_assert_eq(tu_count_objects(store), 1, "kept");
		m = tally_meta_lock(t);
		cr_assert_eq(reap_copy(m, tally_objstore(t), name, 12345, 0, 0),
			     1);
		tally_meta_unlock(t);
		cr_assert_eq(tu_count_objects(store), 0);
	}
}

/* The name of the object of the one-block file @ino. */
static void object_of(uint64_t ino, char name[OBJNAME_MAX])
{
	char buf[256];
	ssize_t n = tally_getxattr(t, ino, "user.tally.objects", buf,
				   sizeof(buf) - 1);

	cr_assert_gt(n, 0);
	buf[n] = '\0';
	snprintf(name, OBJNAME_MAX, "%.*s", (int)strcspn(buf, "@"), buf);
}

/* Record that node @node's report names @name. */
static void report_names(int64_t node, const char *name)
{
	const char *names[] = { name };
	struct meta *m = tally_meta_lock(t);

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_node_report(m, node, (int64_t)time(NULL), names, 1),
		     0);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
}

/*
 * Another node's report keeps an object whose last reference goes (its
 * flush may be about to name it); this mount's own stored report does
 * not: it knows its flushes in flight, which check again at commit.
 */
Test(reap, reports_of_other_nodes_keep_objects_not_our_own)
{
	char x[BS], y[BS], nx[OBJNAME_MAX], ny[OBJNAME_MAX];
	int64_t stale, self;
	unsigned min_nodes;
	uint64_t ns, a, b;

	tu_fill(x, sizeof(x), 13);
	tu_fill(y, sizeof(y), 14);
	ns = tu_mkns(t, "main");
	a = file_with(ns, "a", x, sizeof(x));
	b = file_with(ns, "b", y, sizeof(y));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	object_of(a, nx);
	object_of(b, ny);
	tally_gc_settings(t, &stale, &min_nodes, &self);
	report_names(self, nx);
	report_names(self ^ 2, ny); /* another node */
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	cr_assert_eq(tally_unlink(t, ns, "b"), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tu_count_objects(store), 1, "y kept, x deleted");
	{
		struct meta *m = tally_meta_lock(t);

		cr_assert_eq(meta_node_remove(m, self ^ 2), 0);
		tally_meta_unlock(t);
	}
	close_store();
}

/*
 * An object file whose last reference an rm dropped is deleted only once
 * the commit of the rm is durable (the WAL synced): power loss before
 * that brings the reference back, and it must find its file. The sync
 * comes with the next fsync, drain or unmount, or the flusher's tick
 * (about a second), never one per rm.
 */
Test(reap, deletion_waits_for_a_durable_commit)
{
	char x[BS], y[BS];
	uint64_t ns, b;
	int i;

	tu_fill(x, sizeof(x), 15);
	tu_fill(y, sizeof(y), 16);
	ns = tu_mkns(t, "main");
	file_with(ns, "a", x, sizeof(x));
	b = file_with(ns, "b", y, sizeof(y));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	cr_assert_eq(tu_count_objects(store), 2, "not before the sync");
	/* an fsync of another file syncs the WAL: then it goes */
	cr_assert_eq(tally_open_file(t, b, O_RDWR), 0);
	cr_assert_eq(tally_fsync(t, b, false), 0);
	cr_assert_eq(tally_release(t, b), 0);
	cr_assert_eq(tu_count_objects(store), 1);
	/* with no fsync at all: the flusher's tick */
	cr_assert_eq(tally_unlink(t, ns, "b"), 0);
	cr_assert_eq(tu_count_objects(store), 1);
	for (i = 0; i < 100 && tu_count_objects(store) > 0; i++)
		usleep(50000);
	cr_assert_eq(tu_count_objects(store), 0, "gone within 5 s");
	close_store();
	tu_fsck_clean(store, NULL);
}
