/* SPDX-License-Identifier: MIT */
/*
 * The deletion of object files (core/objects/reap.c and the settling of counts
 * at commit in core/meta/meta_object.c): nothing that something still names is ever
 * deleted, whatever the order of the changes in a flush, a wrong count or
 * a lookup that fails. Against a real store: SQLite database and object
 * files, through core/fs/tally.c's API. And the byte count of the local
 * copies (a shared store's cache, what its eviction goes by): exact,
 * however the files come and go while it is made.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/jobs/fsck.h"
#include "core/jobs/gc.h"
#include "core/util/hash.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/objects/reap.h"
#include "core/fs/tally.h"
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
	    "INSERT INTO extents(ino, ver, off, len, obj, shard) "
	    "VALUES (99999, 0, 0, 4096, 7, 0)");
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
/* In namespace "main" (its inode returned), file "a" of @x (one block
 * filled from @seed) committed, then unlinked: its object is dead, its
 * file not yet deleted. */
static uint64_t dead_file(char x[BS], unsigned seed)
{
	uint64_t ns;

	tu_fill(x, BS, seed);
	ns = tu_mkns(t, "main");
	file_with(ns, "a", x, BS);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(tally_unlink(t, ns, "a"), 0);
	return ns;
}

Test(reap, failed_lookup_keeps_the_file)
{
	char x[BS];
	struct meta *m;
	int i;

	dead_file(x, 12);
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

/*
 * The file of a dead object is doomed in the hold that asked its verdict
 * and unlinked after it (reap_dead_doom(), reap_dead_unlink()): a flush
 * of the same content that commits in between checks the file, which
 * cancels the deletion, and the new file's block finds its bytes.
 */
Test(reap, dead_object_named_again_before_its_unlink_stays)
{
	struct meta_objlist doomed;
	char x[BS], back[BS];
	struct meta *m;
	uint64_t ns, b;

	ns = dead_file(x, 17);
	meta_objlist_init(&doomed);
	m = tally_meta_lock(t);
	cr_assert_eq(meta_sync(m), 0);
	cr_assert_eq(reap_dead_doom(m, tally_objstore(t), &doomed), 1);
	tally_meta_unlock(t);
	cr_assert_eq(tu_count_objects(store), 1, "doomed, not unlinked");
	/* the same bytes again, committed before the unlink */
	b = file_with(ns, "b", x, sizeof(x));
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	cr_assert_eq(reap_dead_unlink(tally_objstore(t), &doomed), 0);
	meta_objlist_release(&doomed);
	cr_assert_eq(tu_count_objects(store), 1, "named again: kept");
	cr_assert_eq(tally_open_file(t, b, O_RDONLY), 0);
	cr_assert_eq(tally_read(t, b, back, sizeof(back), 0), (ssize_t)BS);
	cr_assert_eq(tally_release(t, b), 0);
	cr_assert_arr_eq(back, x, sizeof(x));
	close_store();
	tu_fsck_clean(store, NULL);
}

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool in, go;
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false };

/* The unlink of a doomed file waits for the test's word. */
static void unlink_held(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&gate.lock);
	gate.in = true;
	pthread_cond_broadcast(&gate.cond);
	while (!gate.go)
		pthread_cond_wait(&gate.cond, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
}

static _Atomic bool synced;

static void *meta_syncer(void *arg)
{
	(void)arg;
	cr_assert_eq(tally_meta_sync(t), 0);
	atomic_store(&synced, true);
	return NULL;
}

/*
 * The files one hold doomed are unlinked after it, by the thread that
 * held it; a sync in another thread (drain's, fsync's) meanwhile returns
 * only once those unlinks are done: drain promises the deletions its
 * commits allowed.
 */
Test(reap, sync_waits_for_unlinks_another_hold_doomed)
{
	pthread_t a, b;
	char x[BS];

	dead_file(x, 18);
	objstore_set_unlink_hook(tally_objstore(t), unlink_held, NULL);
	cr_assert_eq(pthread_create(&a, NULL, meta_syncer, NULL), 0);
	pthread_mutex_lock(&gate.lock);
	while (!gate.in)
		pthread_cond_wait(&gate.cond, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
	/* a's unlink is held: a second sync must wait for it */
	atomic_store(&synced, false);
	cr_assert_eq(pthread_create(&b, NULL, meta_syncer, NULL), 0);
	usleep(300000);
	cr_assert_not(atomic_load(&synced), "returned before the unlink");
	pthread_mutex_lock(&gate.lock);
	gate.go = true;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
	cr_assert_eq(pthread_join(b, NULL), 0);
	cr_assert_eq(tu_count_objects(store), 0, "gone when the sync returned");
	cr_assert_eq(pthread_join(a, NULL), 0);
	objstore_set_unlink_hook(tally_objstore(t), NULL, NULL);
	close_store();
	tu_fsck_clean(store, NULL);
}

/* ------------------------------------------------------------------ */
/* the local copies' byte count (core/objects/objstore.c, Local bytes) */

static int add_listed(void *ctx, const char *name, off_t size)
{
	(void)name;
	*(uint64_t *)ctx += (uint64_t)size;
	return 0;
}

/* The bytes of the object files of shard 0, as a listing finds them. */
static uint64_t listed_bytes(struct objstore *os)
{
	uint64_t sum = 0;

	cr_assert_eq(objstore_list(os, 0, add_listed, &sum), 0);
	return sum;
}

/* Object @seed: 1 to 6000 bytes of its own. */
static size_t copy_bytes(unsigned seed, char *buf)
{
	size_t len = 1 + (seed * 2654435761u) % 6000;

	tu_fill(buf, len, seed);
	return len;
}

/* Put objects @from..@to-1 in one batch; their names into @names[0..]. */
static void put_objects(struct objstore *os, unsigned from, unsigned to,
			char (*names)[OBJNAME_MAX])
{
	struct objstore_batch b = { 0 };
	static char bufs[64][6000];
	bool created[64];
	unsigned shard[64], i;

	cr_assert_leq(to - from, 64);
	for (i = from; i < to; i++) {
		size_t len = copy_bytes(i, bufs[i - from]);

		shard[i - from] = 0;
		cr_assert_eq(objstore_put(os, &shard[i - from], bufs[i - from],
					  len, names[i - from],
					  &created[i - from], &b),
			     0);
	}
	cr_assert_eq(objstore_batch_finish(os, &b), 0);
	objstore_batch_release(os, &b);
}

static struct objstore *open_objects(void)
{
	char path[4200];
	struct objstore *os;

	snprintf(path, sizeof(path), "%s/shards", dir);
	cr_assert_eq(objstore_open(path, &os), 0);
	return os;
}

Test(reap, local_copies_are_counted_exactly)
{
	static char names[512][OBJNAME_MAX];
	struct objstore *os;
	char buf[6000];
	uint64_t bytes;
	unsigned i, d;

	close_store();
	os = open_objects();
	for (i = 0; i < 256; i += 64)
		put_objects(os, i, i + 64, names + i);
	/* half the directories counted, then files come and go */
	for (d = 0; d < 128; d++)
		cr_assert_eq(objstore_count_dir(os, d), 0);
	cr_assert_not(objstore_local_bytes(os, &bytes), "not whole yet");
	for (i = 256; i < 512; i += 64)
		put_objects(os, i, i + 64, names + i);
	for (i = 0; i < 512; i += 3)
		cr_assert_eq(objstore_unlink(os, 0, names[i]), 0);
	/* a fetched copy: put back in place, and over a copy there */
	for (i = 0; i < 512; i += 6)
		cr_assert_eq(objstore_cache_put(os, 0, names[i], buf,
						copy_bytes(i, buf)),
			     0);
	for (i = 1; i < 512; i += 7)
		cr_assert_eq(objstore_cache_put(os, 0, names[i], buf,
						copy_bytes(i, buf)),
			     0);
	for (d = 0; d < 256; d++)
		cr_assert_eq(objstore_count_dir(os, d), 0);
	cr_assert(objstore_local_bytes(os, &bytes));
	cr_assert_eq(bytes, listed_bytes(os));
	/* counted again: nothing changes */
	cr_assert_eq(objstore_count_dir(os, 7), 0);
	cr_assert(objstore_local_bytes(os, &bytes));
	cr_assert_eq(bytes, listed_bytes(os));
	/* and kept since */
	for (i = 2; i < 512; i += 3)
		cr_assert_eq(objstore_unlink(os, 0, names[i]), 0);
	cr_assert(objstore_local_bytes(os, &bytes));
	cr_assert_eq(bytes, listed_bytes(os));
	objstore_free(os);
	open_store();
}

/* Put object @seed into batch @b (its bytes in @buf, kept until the
 * batch ends); its name into @name. */
static size_t put_in(struct objstore *os, struct objstore_batch *b,
		     unsigned seed, char *buf, char *name)
{
	size_t len = copy_bytes(seed, buf);
	unsigned shard = 0;
	bool created;

	cr_assert_eq(objstore_put(os, &shard, buf, len, name, &created, b), 0);
	cr_assert(created);
	return len;
}

/* The count of open batches that decides how small objects are synced:
 * one each while staged, none once finished or released (a leak would
 * leave every later batch thinking it is not alone), and the objects of
 * two batches at once (synced by syncfs, not one by one) whole. */
Test(reap, open_batches_are_counted)
{
	static char bufs[3][6000];
	struct objstore_batch a = { 0 }, b = { 0 }, c = { 0 };
	char names[3][OBJNAME_MAX], back[6000];
	struct objstore *os;
	size_t len[3];
	off_t size;
	unsigned i;

	close_store();
	os = open_objects();
	cr_assert_eq(objstore_batches_open(os), 0);
	len[0] = put_in(os, &a, 9001, bufs[0], names[0]);
	cr_assert_eq(objstore_batches_open(os), 1);
	len[1] = put_in(os, &b, 9002, bufs[1], names[1]);
	cr_assert_eq(objstore_batches_open(os), 2);
	cr_assert_eq(objstore_batch_finish(os, &a), 0);
	cr_assert_eq(objstore_batches_open(os), 1);
	objstore_batch_release(os, &a);
	cr_assert_eq(objstore_batches_open(os), 1);
	cr_assert_eq(objstore_batch_finish(os, &b), 0);
	objstore_batch_release(os, &b);
	cr_assert_eq(objstore_batches_open(os), 0);
	for (i = 0; i < 2; i++) {
		cr_assert_eq(objstore_read(os, 0, names[i], back, sizeof(back),
					   0),
			     (ssize_t)len[i]);
		cr_assert_eq(memcmp(back, bufs[i], len[i]), 0);
	}
	/* released unfinished: uncounted, and its object never placed */
	len[2] = put_in(os, &c, 9003, bufs[2], names[2]);
	cr_assert_eq(objstore_batches_open(os), 1);
	objstore_batch_release(os, &c);
	cr_assert_eq(objstore_batches_open(os), 0);
	cr_assert_eq(objstore_stat(os, 0, names[2], &size), -ENOENT);
	objstore_free(os);
	open_store();
}

/* Object seed @from and up whose name falls in fan-out directory @dir:
 * its seed. */
static unsigned seed_in(unsigned fan, unsigned from)
{
	char buf[6000], hex[HASH_HEX_LEN + 1], name[OBJNAME_MAX];

	for (;; from++) {
		hash_block(buf, copy_bytes(from, buf), hex);
		hash_variant_name(hex, 0, name);
		if (strtoul((char[3]){ name[0], name[1], 0 }, NULL, 16) == fan)
			return from;
	}
}

/* A file placed and another unlinked in the directory being counted,
 * between its listing and its count's end (the count hook), by another
 * thread: with the directory's lock, they wait for the count. */
struct racer {
	struct objstore *os;
	unsigned dir, put_seed;
	char gone[OBJNAME_MAX];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool go, done;
	int err;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	struct objstore_batch b = { 0 };
	static char buf[6000];
	char name[OBJNAME_MAX];
	unsigned shard = 0;
	bool created;
	int rc;

	pthread_mutex_lock(&r->lock);
	while (!r->go)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
	rc = objstore_put(r->os, &shard, buf, copy_bytes(r->put_seed, buf),
			  name, &created, &b);
	if (!rc)
		rc = objstore_batch_finish(r->os, &b);
	objstore_batch_release(r->os, &b);
	if (!rc)
		rc = objstore_unlink(r->os, 0, r->gone);
	pthread_mutex_lock(&r->lock);
	r->err = rc;
	r->done = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* The hook: the racer goes, and is given 300 ms to be done. */
static void count_race(void *arg, unsigned fan)
{
	struct racer *r = arg;
	struct timespec ts;

	if (fan != r->dir)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 300 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->lock);
	r->go = true;
	pthread_cond_broadcast(&r->cond);
	while (!r->done && pthread_cond_timedwait(&r->cond, &r->lock, &ts) == 0)
		;
	pthread_mutex_unlock(&r->lock);
}

/* Without the directories' locks, a file placed or unlinked between a
 * directory's listing and its count's end is counted twice or never. */
Test(reap, local_copies_counted_while_they_come_and_go)
{
	static char names[256][OBJNAME_MAX], gone[1][OBJNAME_MAX];
	struct racer r = { .dir = 0x5a };
	unsigned seed = seed_in(r.dir, 1000), d;
	uint64_t bytes;
	pthread_t th;

	close_store();
	r.os = open_objects();
	r.put_seed = seed_in(r.dir, seed + 1);
	/* the file to go: seed's, in the same directory */
	put_objects(r.os, seed, seed + 1, gone);
	snprintf(r.gone, sizeof(r.gone), "%s", gone[0]);
	put_objects(r.os, 0, 64, names);
	pthread_mutex_init(&r.lock, NULL);
	pthread_cond_init(&r.cond, NULL);
	objstore_set_count_hook(r.os, count_race, &r);
	cr_assert_eq(pthread_create(&th, NULL, racer_main, &r), 0);
	for (d = 0; d < 256; d++)
		cr_assert_eq(objstore_count_dir(r.os, d), 0);
	pthread_join(th, NULL);
	cr_assert_eq(r.err, 0, "%s", strerror(-r.err));
	cr_assert(objstore_local_bytes(r.os, &bytes));
	cr_assert_eq(bytes, listed_bytes(r.os));
	objstore_set_count_hook(r.os, NULL, NULL);
	objstore_free(r.os);
	pthread_mutex_destroy(&r.lock);
	pthread_cond_destroy(&r.cond);
	open_store();
}

/* ------------------------------------------------------------------ */
/* the syncfs of a shard, shared (core/objects/objstore.c) */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned runs, fail_run;
	bool first_in, release;
} probe = {
	PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, false, false
};

/* Each sync the gate runs: the first waits for the test's word; the
 * fail_run-th fails. */
static int sync_probe(void *arg, unsigned shard)
{
	unsigned run;

	(void)arg;
	(void)shard;
	pthread_mutex_lock(&probe.lock);
	run = ++probe.runs;
	if (run == 1) {
		probe.first_in = true;
		pthread_cond_broadcast(&probe.cond);
		while (!probe.release)
			pthread_cond_wait(&probe.cond, &probe.lock);
	}
	pthread_mutex_unlock(&probe.lock);
	return run == probe.fail_run ? -EIO : 0;
}

static void *syncer(void *arg)
{
	return (void *)(intptr_t)objstore_shard_syncfs(arg, 0);
}

/*
 * Callers that come while a syncfs runs do not take it for theirs: they
 * wait, and share the next one (one run for both), and its error.
 */
Test(reap, callers_during_a_syncfs_share_the_next_one)
{
	pthread_t a, b, c;
	struct objstore *os;
	void *ra, *rb, *rc;
	int i;

	close_store();
	os = open_objects();
	probe.fail_run = 2;
	objstore_set_sync_hook(os, sync_probe, NULL);
	cr_assert_eq(pthread_create(&a, NULL, syncer, os), 0);
	pthread_mutex_lock(&probe.lock);
	while (!probe.first_in)
		pthread_cond_wait(&probe.cond, &probe.lock);
	pthread_mutex_unlock(&probe.lock);
	cr_assert_eq(pthread_create(&b, NULL, syncer, os), 0);
	cr_assert_eq(pthread_create(&c, NULL, syncer, os), 0);
	for (i = 0; i < 2000 && objstore_sync_waiting(os, 0) < 2; i++)
		usleep(5000);
	cr_assert_eq(objstore_sync_waiting(os, 0), 2);
	pthread_mutex_lock(&probe.lock);
	probe.release = true;
	pthread_cond_broadcast(&probe.cond);
	pthread_mutex_unlock(&probe.lock);
	cr_assert_eq(pthread_join(a, &ra), 0);
	cr_assert_eq(pthread_join(b, &rb), 0);
	cr_assert_eq(pthread_join(c, &rc), 0);
	cr_assert_eq((intptr_t)ra, 0, "the first sync");
	cr_assert_eq((intptr_t)rb, -EIO, "the second, shared, failed");
	cr_assert_eq((intptr_t)rc, -EIO);
	cr_assert_eq(probe.runs, 2);
	/* a caller alone: a sync of its own */
	cr_assert_eq(objstore_shard_syncfs(os, 0), 0);
	cr_assert_eq(probe.runs, 3);
	objstore_set_sync_hook(os, NULL, NULL);
	objstore_free(os);
}
