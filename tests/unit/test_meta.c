/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of core/meta/: schema, transactions, reference counts.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/fs/tally.h"
#include "core/meta/meta.h"
#include "tests/unit/util.h"

static char *dir;
static char path[4096];
static struct meta *m;

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(path, sizeof(path), "%s/meta.db", dir);
	cr_assert_eq(meta_open(path, true, 4096, &m), 0);
}

static void teardown(void)
{
	meta_close(m);
	m = NULL;
	tu_rmrf(dir);
	free(dir);
}

TestSuite(meta, .init = setup, .fini = teardown, .timeout = 30);

/* The stored count of object @name, -1 if it has no row. */
static int64_t count_of(const char *name)
{
	return tu_stored_count(m, name);
}

#define OBJ_A "0123456789abcdef0123456789abcdef"
#define OBJ_B "fedcba9876543210fedcba9876543210"

Test(meta, config_and_root_exist)
{
	struct meta_inode root;
	int64_t v;

	cr_assert_eq(meta_config_get(m, "block_size", &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(meta_config_get(m, "next_ino", &v), 0);
	cr_assert_eq(v, 16);
	cr_assert_eq(meta_inode_get(m, NULL, 1, &root), 0);
	cr_assert(S_ISDIR(root.mode));
	cr_assert_eq(meta_config_get(m, "nope", &v), -ENOENT);
}

/* Inode numbers stop below 2^40 (the bits above are a version's view,
 * docs/design.md section 13.3): a take that would pass it is ENOSPC. */
Test(meta, inode_numbers_stop_below_two_to_the_forty)
{
	uint64_t first = 0;

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_ino_take(m, META_INO_LIMIT - 2048, 1024, &first), 0);
	cr_assert_eq(first, META_INO_LIMIT - 2048);
	cr_assert_eq(meta_ino_take(m, 0, 1024, &first), 0);
	cr_assert_eq(first, META_INO_LIMIT - 1024); /* the last ones */
	cr_assert_eq(meta_ino_take(m, 0, 1, &first), -ENOSPC);
	meta_rollback(m);
}

/* Every call by inode sees the rows of the version it names
 * (tu_version_check()). */
Test(meta, calls_see_the_rows_of_their_version)
{
	tu_version_check(m);
}

/* An inode read through a chain of versions: the nearest ancestor's row,
 * copied up by a change, a whiteout by a removal (tu_chain_check()). */
Test(meta, inodes_read_through_a_chain_of_versions)
{
	tu_chain_check(m);
}

/* A remote setting changed only if it is what the caller read (a rekey's
 * record on a store other nodes share): else ESTALE, nothing written. */
Test(meta, remote_setting_swaps_only_from_what_was_read)
{
	char *v = NULL;

	cr_assert_eq(meta_remote_conf_swap(m, "seal", "a", "b"), -ESTALE);
	cr_assert_eq(meta_remote_conf_get(m, "seal", &v), -ENOENT);
	cr_assert_eq(meta_remote_conf_set(m, "seal", "a"), 0);
	cr_assert_eq(meta_remote_conf_swap(m, "seal", "x", "b"), -ESTALE);
	cr_assert_eq(meta_remote_conf_get(m, "seal", &v), 0);
	cr_assert_str_eq(v, "a");
	free(v);
	cr_assert_eq(meta_remote_conf_swap(m, "seal", "a", "b"), 0);
	cr_assert_eq(meta_remote_conf_get(m, "seal", &v), 0);
	cr_assert_str_eq(v, "b");
	free(v);
	cr_assert_eq(meta_remote_conf_swap(m, "seal", "a", "c"), -ESTALE);
}

/* readdir reads entries with their inode rows, in chunks (the engine is
 * asked for a few entries at a time, more as the listing goes on) */
Test(meta, readdir_lists_entries_with_their_rows)
{
	tu_readdir_check(m, 900, 2500);
}

Test(meta, reference_and_count_change_together)
{
	struct meta_objlist zero;
	struct meta_bref ref;

	meta_objlist_init(&zero);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 0, OBJ_A, 0, 10, &ref), 0);
	cr_assert_eq(meta_block_set(m, NULL, 21, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count_of(OBJ_A), 2);
	/* replace block 0 of inode 20: A loses one, B gains one */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 0, OBJ_B, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count_of(OBJ_A), 1);
	cr_assert_eq(count_of(OBJ_B), 1);
	meta_dead_take(m, &zero);
	cr_assert_eq(zero.n, 0);
	/* dropping the last reference lists the object for unlinking */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_blocks_drop(m, NULL, 21, 0), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count_of(OBJ_A), -1, "row deleted at zero");
	meta_dead_take(m, &zero);
	cr_assert_eq(zero.n, 1);
	cr_assert_str_eq(zero.v[0].name, OBJ_A);
	meta_objlist_release(&zero);
}

Test(meta, rollback_leaves_counts_alone)
{
	struct meta_objlist zero;

	meta_objlist_init(&zero);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 1, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_blocks_copy(m, NULL, NULL, 20, 30), 0);
	meta_rollback(m);
	cr_assert_eq(count_of(OBJ_A), 1);
	meta_objlist_release(&zero);
}

Test(meta, unknown_object_decrement_deletes_nothing)
{
	struct meta_objlist zero;
	sqlite3 *db;

	meta_objlist_init(&zero);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 1, OBJ_B, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
	/* damage: the row of B disappears */
	meta_close(m);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(
		sqlite3_exec(db, "DELETE FROM objects WHERE name = '" OBJ_B "'",
			     NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(meta_open(path, false, 4096, &m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_blocks_drop(m, NULL, 20, 0), 0);
	cr_assert_eq(meta_commit(m), 0);
	meta_dead_take(m, &zero);
	cr_assert_eq(zero.n, 1, "only the known object is listed");
	cr_assert_str_eq(zero.v[0].name, OBJ_A);
	meta_objlist_release(&zero);
}

Test(meta, foreign_and_future_databases_refused)
{
	char other[4096];
	struct meta *x;
	sqlite3 *db;

	snprintf(other, sizeof(other), "%s/other.db", dir);
	cr_assert_eq(sqlite3_open(other, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL),
		     SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(meta_open(other, true, 4096, &x), -EUCLEAN);
	meta_close(m);
	m = NULL;
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL,
				  NULL),
		     SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(meta_open(path, true, 4096, &x), -EPROTO);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	/* the version back: it opens again */
	cr_assert_eq(sqlite3_exec(db, "PRAGMA user_version = 4", NULL, NULL,
				  NULL),
		     SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(meta_open(path, false, 4096, &m), 0);
}

struct chunks {
	int64_t seen[16]; /* rows by object id, 0-15 */
	int64_t dangling; /* references to no object */
	int rows;
};

static int count_row(void *arg, const struct meta_check *c)
{
	struct chunks *k = arg;

	k->rows++;
	if (c->id == 0) {
		k->dangling += c->truth;
		return 0;
	}
	cr_assert(c->id > 0 && c->id < 16, "id %lld", (long long)c->id);
	k->seen[c->id]++;
	cr_assert_eq(c->stored,
		     c->id == 2	  ? 9
		     : c->id == 3 ? 2
				  : 1,
		     "object %lld", (long long)c->id);
	cr_assert_eq(c->truth, c->id == 3 ? 2 : 1, "object %lld",
		     (long long)c->id);
	return 0;
}

Test(meta, check_chunks_see_every_id_once)
{
	struct chunks k = { 0 }, all = { 0 };
	struct meta_objlist zero;
	char name[40];
	int64_t from = INT64_MIN;
	sqlite3 *db;
	int i, rc, n = 0;

	/* objects 1-9, one reference each; 3 has two, 2 is over-counted */
	meta_objlist_init(&zero);
	cr_assert_eq(meta_begin(m), 0);
	for (i = 1; i <= 9; i++) {
		snprintf(name, sizeof(name), "%032x", i);
		cr_assert_eq(meta_block_set(m, NULL, 20, (uint64_t)i, name, 0,
					    10, NULL),
			     0);
	}
	cr_assert_eq(meta_block_set(m, NULL, 21, 0,
				    "00000000000000000000000000000003", 0, 10,
				    NULL),
		     0);
	cr_assert_eq(meta_obj_set_count(m, 2, 9), 0);
	cr_assert_eq(meta_commit(m), 0);
	meta_objlist_release(&zero);
	/* damage: references to ids before, among and after the objects;
	 * an extent of object 0 is a whiteout (format 4), no reference */
	meta_close(m);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(
		sqlite3_exec(db,
			     "INSERT INTO extents(ino, ver, off, len, obj, "
			     "shard) VALUES (30, 0, 0, 4096, "
			     "-5, 0), (30, 0, 4096, 4096, 0, 0), "
			     "(30, 0, 8192, 4096, 12, 0), "
			     "(30, 0, 12288, 4096, 12, 0), "
			     "(30, 0, 16384, 4096, 9223372036854775807,"
			     " 0); DELETE FROM objects WHERE id = 5",
			     NULL, NULL, NULL),
		SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);
	cr_assert_eq(meta_open(path, false, 4096, &m), 0);
	do {
		rc = meta_check_chunk(m, from, 2, &from, count_row, &k);
		n++;
	} while (rc == 1);
	cr_assert_eq(rc, 0);
	cr_assert_eq(n, 4, "[min,2] [3,5] [6,7] [8,max]");
	for (i = 1; i <= 9; i++)
		cr_assert_eq(k.seen[i], i == 5 ? 0 : 1, "object %d", i);
	cr_assert_eq(k.dangling, 5, "-5, 5, 12 twice, max");
	cr_assert_eq(k.rows, 8 + 4);
	/* and all at once: the same rows */
	cr_assert_eq(meta_check_counts(m, count_row, &all), 0);
	cr_assert_eq(memcmp(all.seen, k.seen, sizeof(k.seen)), 0);
	cr_assert_eq(all.dangling, k.dangling);
	cr_assert_eq(all.rows, k.rows);
}

Test(meta, store_without_the_obj_index_gets_it_on_open)
{
	sqlite3_stmt *st;
	sqlite3 *db;

	meta_close(m);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "DROP INDEX extents_obj", NULL, NULL,
				  NULL),
		     SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);
	cr_assert_eq(meta_open(path, false, 4096, &m), 0);
	meta_close(m);
	m = NULL;
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db,
					"SELECT count(*) FROM sqlite_master "
					"WHERE type = 'index' AND name IN "
					"('extents_obj', 'node_objects_name', "
					"'moves_name')",
					-1, &st, NULL),
		     SQLITE_OK);
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	cr_assert_eq(sqlite3_column_int(st, 0), 3);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static int count_one(void *arg, const char *what)
{
	(void)what;
	(*(int *)arg)++;
	return 0;
}

/* Names are bound, never formatted into a statement: a name with a
 * quote is looked up as itself. */
Test(meta, names_are_bound_not_formatted)
{
	const char *odd = "a' OR '1'='1";
	const char *names[] = { odd };
	int n = 0;

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_pin_add(m, "p", 1, names, 1), 0);
	cr_assert_eq(meta_pin_add(m, "q", 1, (const char *[]){ OBJ_A }, 1), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_object_pinners(m, odd, count_one, &n), 0);
	cr_assert_eq(n, 1, "the odd name's pin only");
	n = 0;
	cr_assert_eq(meta_object_pinners(m, "b' OR '1'='1", count_one, &n), 0);
	cr_assert_eq(n, 0);
}

/* Whether this process holds a file SQLite made for a temporary journal
 * (named etilqs_*, unlinked as soon as it is open). */
static bool holds_sqlite_temp_file(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	bool found = false;

	cr_assert_not_null(d);
	while ((e = readdir(d)) && !found) {
		char target[4096];
		ssize_t n = readlinkat(dirfd(d), e->d_name, target,
				       sizeof(target) - 1);

		if (n > 0) {
			target[n] = '\0';
			found = strstr(target, "etilqs_") != NULL;
		}
	}
	closedir(d);
	return found;
}

/*
 * An operation of an intent-log group runs in a savepoint, whose
 * sub-journal holds every page it changes: it stays in memory, however
 * large (SQLITE_CONFIG_STMTJRNL_SPILL -1, core/meta/meta_db.c). Spilled
 * to a file once, it stayed one for the connection's life (locking_mode
 * EXCLUSIVE), and every later operation paid a pwrite() per page.
 */
Test(meta, savepoint_journal_stays_in_memory)
{
	char log[4096 + 16];
	struct meta_ilog_stats st;
	uint64_t i;

	snprintf(log, sizeof(log), "%s/meta.ilog", dir);
	cr_assert_eq(meta_ilog_open(m, log, 7, true, &st), 0);
	/* about 160 KB of block rows, committed: pages that existed before
	 * the group */
	cr_assert_eq(meta_begin(m), 0);
	for (i = 0; i < 2000; i++)
		cr_assert_eq(meta_block_set(m, NULL, 20, i, OBJ_A, 0, 10, NULL),
			     0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_group_commit(m), 0);
	/* one operation changes them all: far past SQLite's 64 KiB */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_blocks_drop(m, NULL, 20, 0), 0);
	cr_assert_not(holds_sqlite_temp_file(),
		      "the sub-journal went to a temporary file");
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_group_commit(m), 0);
	cr_assert_eq(count_of(OBJ_A), -1);
}

/*
 * Issue 45, item 4: a group the engine rolled back, whose application
 * from the intent log fails too. Its operations were answered: a read
 * does not show the database without them (EIO until the log is
 * applied), an operation that finds it so is refused, and a sync
 * applies it or fails loudly; once the log applies, every answered
 * operation is there.
 */
Test(meta, a_lost_group_never_shows_through_reads)
{
	char log[4096 + 16];
	struct meta_ilog_stats st;
	int64_t v = 0;

	snprintf(log, sizeof(log), "%s/meta.ilog", dir);
	cr_assert_eq(meta_ilog_open(m, log, 7, true, &st), 0);
	/* two answered operations, in the open group */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "answered_a", 1), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "answered_b", 2), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert(meta_group_open(m));
	/* the engine loses the group; the next four applications fail */
	meta_ilog_inject_loss(m, 4);
	cr_assert_eq(meta_config_get(m, "answered_a", &v), -EIO,
		     "a read showed the database without the lost group");
	cr_assert_eq(meta_config_get(m, "answered_b", &v), -EIO);
	cr_assert_neq(meta_begin(m), 0, "an operation ran on a lost group");
	cr_assert_neq(meta_sync(m), 0, "a sync said done with a lost group");
	/* the log applies at the next try: everything answered is there */
	v = 0;
	cr_assert_eq(meta_config_get(m, "answered_a", &v), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(meta_config_get(m, "answered_b", &v), 0);
	cr_assert_eq(v, 2);
	cr_assert_eq(meta_sync(m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "after", 3), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_sync(m), 0);
}

/* A message shows a metadata address with every password it holds
 * masked, whatever its form, and the rest of it as given. */
Test(meta, uri_masked_hides_every_password)
{
	static const char *const cases[][2] = {
		{ "postgres://u:pw@db.example:5432/tally",
		  "postgres://u:***@db.example:5432/tally" },
		/* no database path */
		{ "postgres://u:pw@host:5432", "postgres://u:***@host:5432" },
		{ "postgresql://u:pw@host", "postgresql://u:***@host" },
		{ "postgres://:pw@host/db", "postgres://:***@host/db" },
		/* characters a user did not percent-encode */
		{ "postgres://u:p/w?x@y@host:5432/db",
		  "postgres://u:***@host:5432/db" },
		{ "postgres://u@host:5432/db", "postgres://u@host:5432/db" },
		{ "postgres://host:5432/db", "postgres://host:5432/db" },
		/* the query's password and sslpassword */
		{ "postgres://u@host/db?password=pw",
		  "postgres://u@host/db?password=***" },
		{ "postgres://host/db?sslmode=require&password=pw&user=u",
		  "postgres://host/db?sslmode=require&password=***&user=u" },
		{ "postgres://host/db?sslpassword=pw&PASSWORD=pw@x",
		  "postgres://host/db?sslpassword=***&PASSWORD=***" },
		{ "postgres://u:pw@host/db?password=pw",
		  "postgres://u:***@host/db?password=***" },
		/* keyword/value strings, as libpq parses them */
		{ "host=h password=pw dbname=d",
		  "host=h password=*** dbname=d" },
		{ "password = 'p w\\' x' user=u", "password = *** user=u" },
		{ "user=u password=p\\ w", "user=u password=***" },
		{ "  password=pw", "  password=***" },
		{ "host=h password", "host=h password" },
		{ "password pw", "password ***" },
		/* neither */
		{ "postgres:/u:pw@host/db", "postgres:***@host/db" },
		{ "u:pw@host", "u:***@host" },
		{ "/var/lib/meta.db", "/var/lib/meta.db" },
		{ "", "" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *shown = meta_uri_masked(cases[i][0]);

		cr_assert_not_null(shown);
		cr_assert_str_eq(shown, cases[i][1], "%s", cases[i][0]);
		cr_assert_null(strstr(shown, "pw"), "%s", shown);
		free(shown);
	}
}

/*
 * Issue 45, item 4: the intent log's records replay onto the tables they
 * were written for. The fixture: a database of an older version (the
 * store_open corpus's fresh_store: no shard_usage, no remote columns)
 * and a log of the previous format (version 1, no schema line), as a
 * mount of that version left them after kill -9.
 */
#define OLD_STORE_ID "6728597027877148635" /* fresh_store's */

/* Write STORE/meta.ilog: @head (zero-padded to @head_len), then one
 * record @seq of statement @sql, then the end mark. */
static void put_log(const char *head, size_t head_len, uint64_t seq,
		    const char *sql)
{
	struct {
		uint64_t seq;
		uint32_t len, pad;
		uint64_t sum;
	} h = { .seq = seq, .len = (uint32_t)strlen(sql) + 1 };
	char name[4200], buf[4096] = { 0 };
	size_t off = head_len;
	FILE *f;

	memcpy(buf, head, strlen(head));
	/* the record's sum, as core/meta/meta_ilog.c writes it */
	h.sum = XXH3_64bits_withSeed(sql, h.len,
				     h.seq * 0x9E3779B97F4A7C15ULL ^ h.len);
	memcpy(buf + off, &h, sizeof(h));
	memcpy(buf + off + sizeof(h), sql, h.len);
	off += sizeof(h) + h.len + sizeof(h); /* the end mark: zeros */
	snprintf(name, sizeof(name), "%s/meta.ilog", dir);
	f = fopen(name, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(buf, 1, off, f), off);
	fclose(f);
}

/* The rows of the store's sqlite_schema (the store closed), -1 on error. */
static int64_t schema_rows(void)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t n = -1;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) ==
		    SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema", -1,
			       &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* The old store in place of the suite's; the count of its schema rows. */
static int64_t old_store(void)
{
	const char *src = getenv("TALLY_SRC");
	char cmd[16500];

	cr_assert_not_null(src, "TALLY_SRC is not set");
	meta_close(m);
	m = NULL;
	snprintf(cmd, sizeof(cmd),
		 "rm -f '%s'-wal '%s'-shm && cp '%s/tests/fuzz/corpus/"
		 "store_open/fresh_store' '%s'",
		 path, path, src, path);
	cr_assert_eq(system(cmd), 0);
	return schema_rows();
}

Test(meta, a_log_of_the_previous_format_replays_before_the_upgrade)
{
	char log[4200], head[128];
	struct meta_ilog_stats st;
	int64_t rows = old_store(), v = 0;
	FILE *f;

	cr_assert_gt(rows, 0);
	/* a write whose value says what tables it ran on */
	put_log("tallyfs intent log 1\nstore " OLD_STORE_ID "\n", 64, 1,
		"INSERT INTO config(key, value) SELECT 'tables_at_replay', "
		"count(*) FROM sqlite_schema");
	cr_assert_eq(meta_open(path, false, 4096, &m), 0);
	snprintf(log, sizeof(log), "%s/meta.ilog", dir);
	cr_assert_eq(meta_ilog_open(m, log, 6728597027877148635ULL, true, &st),
		     0);
	cr_assert_eq(st.replayed, 1);
	cr_assert_eq(meta_config_get(m, "tables_at_replay", &v), 0);
	cr_assert_eq(v, rows,
		     "the record replayed on %lld schema rows, the store "
		     "had %lld as found: the upgrade ran first",
		     (long long)v, (long long)rows);
	/* the log begins again, in this version's format, for the tables
	 * as they are now */
	f = fopen(log, "r");
	cr_assert_not_null(f);
	cr_assert_eq(fread(head, 1, sizeof(head), f), sizeof(head));
	fclose(f);
	cr_assert_eq(memcmp(head, "tallyfs intent log 2\nstore ", 27), 0);
	cr_assert_not_null(strstr(head, "\nschema "));
	meta_close(m);
	m = NULL;
	/* and the tables were brought up to date after it */
	cr_assert_gt(schema_rows(), rows);
	cr_assert_eq(meta_open(path, false, 4096, &m), 0);
}

Test(meta, a_log_written_for_other_tables_is_refused)
{
	char log[4200];
	struct meta_ilog_stats st;
	int64_t rows = old_store(), v = 0;

	put_log("tallyfs intent log 2\nstore " OLD_STORE_ID
		"\nschema 0123456789abcdef\n",
		128, 1, "INSERT INTO config(key, value) VALUES ('x', 1)");
	cr_assert_eq(meta_open(path, false, 4096, &m), 0);
	snprintf(log, sizeof(log), "%s/meta.ilog", dir);
	cr_assert_eq(meta_ilog_open(m, log, 6728597027877148635ULL, true, &st),
		     -EUCLEAN);
	cr_assert_eq(meta_config_get(m, "x", &v), -ENOENT);
	meta_close(m);
	m = NULL;
	/* left as it was: neither replayed nor upgraded */
	cr_assert_eq(schema_rows(), rows);
	cr_assert_eq(meta_open(path, false, 4096, &m), 0);
}

static int view_of(void *ctx, const struct meta_snapshot *sn)
{
	uint32_t *views = ctx;

	views[sn->name[1] - '1'] = sn->view;
	return 0;
}

/* Snapshots' views stop below the namespaces' (docs/design.md 13.3):
 * the last one given is META_VIEW_MAX, the next snapshot ENOSPC. */
Test(meta, snapshot_views_stop_below_the_namespaces)
{
	struct meta_inode root = {
		.ino = 80, .nspace = 80, .mode = S_IFDIR | 0755, .nlink = 2
	};
	uint32_t views[3] = { 0 };
	int64_t leaf, next;
	sqlite3 *db;
	char sql[128];

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, &(struct meta_ver){ .id = 80 }, &root),
		     0);
	cr_assert_eq(meta_version_freeze(m, 80, "s1", 100, &leaf), 0);
	cr_assert_eq(meta_commit(m), 0);
	meta_close(m);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	snprintf(sql, sizeof(sql),
		 "UPDATE config SET value = %d WHERE key = 'next_view'",
		 META_VIEW_MAX);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_changes(db), 1);
	sqlite3_close(db);
	cr_assert_eq(meta_open(path, false, 4096, &m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_version_freeze(m, leaf, "s2", 100, &next), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_version_freeze(m, next, "s3", 100, &leaf), -ENOSPC);
	meta_rollback(m);
	cr_assert_eq(meta_snapshots(m, 80, false, view_of, views), 0);
	cr_assert_eq(views[0], 1);
	cr_assert_eq(views[1], META_VIEW_MAX);
	cr_assert_eq(views[2], 0, "s3 was not taken");
	cr_assert_lt(views[1], TALLY_VIEW_NSPACES);
}
