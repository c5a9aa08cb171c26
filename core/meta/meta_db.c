/* SPDX-License-Identifier: MIT */
/*
 * The SQLite engine of the metadata store (WAL mode): opening a store,
 * its pragmas, schema and upgrades, transactions, the mapping of SQLite
 * errors to errno values. Statements run through meta_stmt.c; those of
 * each table family live in meta_inode.c, meta_object.c, meta_gc.c,
 * meta_shard.c and meta_query.c.
 *
 * DESIGN NOTES
 *
 * Schema (PRAGMA application_id 'TALY', user_version META_FORMAT):
 *   config(key, value)                    block_size, next_ino, durable_seq
 *   versions, ver_anc, nspaces            the tree of versions, each
 *                                         namespace's leaf (format 3)
 *   inodes(ino, ver, nspace, mode, ..., target, base)  nspace = ino
 *                                         of its namespace's root; key
 *                                         ino: the inode's number for
 *                                         its first row, below zero for
 *                                         a later version's (base: its
 *                                         inode; format 4)
 *   dentries(id, parent, name, ver, ino)  id is the stable readdir cookie;
 *                                         unique (parent, name, ver)
 *   objects(id, name, shard, size, refcount)
 *   extents(ino, ver, off, len, obj, shard)  one object reference per
 *                                         extent (a block: off = idx *
 *                                         block_size; index extents_obj:
 *                                         see meta_db_schema.c); key
 *                                         (ino, ver, off)
 *   xattrs(ino, name, ver, value)         key (ino, name, ver)
 *   shards, ghosts, moves                 see meta_db_schema.c
 *
 * Invariants (checked offline by tallyfsck):
 *  1. objects.refcount = number of extents rows naming the object. A
 *     count that reaches zero is settled at commit against the
 *     transaction's final state (meta_settle(), core/meta/meta_object.c): the
 *     row goes only if nothing names the object any more, and the file
 *     is deleted only after the commit, by core/objects/reap.c (a crash between
 *     the two leaks a file; it never leaves a dangling reference). Object
 *     ids are never used again (AUTOINCREMENT).
 *  2. Every change runs inside one transaction opened by meta_begin(), so
 *     a reference and its count change together or not at all.
 *  3. Ordinary commits use synchronous=NORMAL (durable against a crash of
 *     the process); meta_sync() syncs the WAL, which makes every earlier
 *     commit durable against power loss too (fsync).
 *
 * Locking: none inside; the caller serialises every call on a struct meta.
 */
#include "core/meta/meta_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/util/array.h"
#include "core/util/fault.h"
#include "core/util/log.h"

#define APP_ID 0x54414c59 /* 'TALY' */

enum {
	D_BEGIN,
	D_COMMIT,
	D_ROLLBACK,
	D_APP_ID,
	D_USER_VERSION,
	D_TABLES,
	D_BLOCK_SIZE,
	D_CONFIG_ROWS,
	D_SHARD_ROWS,
	D_HAS_USAGE,
	D_AUTOINCREMENT,
	D_SCHEMA_ROWS,
	D_SYNC_FULL,
	D_SYNC_NORMAL,
	D_SYNC_SEQ,
	D_CONFIG_GET,
	D_CONFIG_SET,
	D_SAVEPOINT,
	D_RELEASE,
	D_ROLLBACK_TO,
	D_COUNT
};

static const char *const db_text[D_COUNT] = {
	/* prepared once: every operation runs both */
	[D_BEGIN] = "BEGIN IMMEDIATE",
	[D_COMMIT] = "COMMIT",
	[D_ROLLBACK] = "ROLLBACK",
	[D_APP_ID] = "PRAGMA application_id",
	[D_USER_VERSION] = "PRAGMA user_version",
	[D_TABLES] = "SELECT count(*) FROM sqlite_schema",
	[D_BLOCK_SIZE] = "SELECT value FROM config WHERE key = 'block_size'",
	[D_CONFIG_ROWS] = "SELECT * FROM config",
	[D_SHARD_ROWS] = "SELECT * FROM shards",
	[D_HAS_USAGE] = "SELECT count(*) FROM sqlite_master "
			"WHERE name = 'shard_usage'",
	[D_AUTOINCREMENT] = "SELECT count(*) FROM sqlite_master WHERE "
			    "name = 'objects' AND sql LIKE '%AUTOINCREMENT%'",
	[D_SCHEMA_ROWS] = "SELECT type, name, coalesce(sql, '') FROM "
			  "sqlite_schema ORDER BY type, name",
	[D_SYNC_FULL] = "PRAGMA synchronous = FULL",
	[D_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
	[D_SYNC_SEQ] = "INSERT INTO config(key, value) VALUES ('sync_seq', 1) "
		       "ON CONFLICT(key) DO UPDATE SET value = value + 1",
	[D_CONFIG_GET] = "SELECT value FROM config WHERE key = ?1",
	[D_CONFIG_SET] =
		"INSERT INTO config(key, value) VALUES (?1, ?2) "
		"ON CONFLICT(key) DO UPDATE SET value = excluded.value",
	/* an operation inside a group (core/meta/meta_ilog.c) */
	[D_SAVEPOINT] = "SAVEPOINT op",
	[D_RELEASE] = "RELEASE op",
	[D_ROLLBACK_TO] = "ROLLBACK TO op",
};

/* PostgreSQL runs the others as they are (meta_pg.c translates). */
static const char *const db_pg[D_COUNT] = {
	[D_BEGIN] = "BEGIN",
	[D_APP_ID] = META_SQLITE_ONLY,
	[D_USER_VERSION] = META_SQLITE_ONLY,
	[D_TABLES] = META_SQLITE_ONLY,
	[D_HAS_USAGE] = META_SQLITE_ONLY,
	[D_AUTOINCREMENT] = META_SQLITE_ONLY,
	[D_SCHEMA_ROWS] = META_SQLITE_ONLY,
	[D_SYNC_FULL] = META_SQLITE_ONLY,
	[D_SYNC_NORMAL] = META_SQLITE_ONLY,
	[D_SYNC_SEQ] = META_SQLITE_ONLY,
	[D_SAVEPOINT] = META_SQLITE_ONLY,
	[D_RELEASE] = META_SQLITE_ONLY,
	[D_ROLLBACK_TO] = META_SQLITE_ONLY,
};

const struct meta_sql meta_db_sql = { META_DB, D_COUNT, db_text, db_pg };

int meta_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_TOOBIG:
		return -E2BIG;
	default:
		return -EIO;
	}
}

int meta_fail(struct meta *m, int rc, const char *what)
{
	int err = meta_errno(rc);

	/* a constraint that holds is an answer (a name taken), not a fault */
	log_msg(err == -EEXIST ? LOG_INFO : LOG_ERR, "metadata %s failed: %s",
		what, m->pg ? meta_pg_message(m) : sqlite3_errmsg(m->db));
	return err;
}

int meta_no_row(const char *what)
{
	log_msg(LOG_ERR, "metadata %s failed: no row", what);
	return -EIO;
}

/* Multi-statement text: the pragmas and DDL of opening a store only. */
static int exec(struct meta *m, const char *sql)
{
	return meta_exec(m, sql);
}

/* Run engine statement @id to its end, a failure logged with its text. */
static int exec_id(struct meta *m, int id)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_db_sql, id, &s);

	return rc ? rc : meta_run(m, s, db_text[id]);
}

int meta_exec_id(struct meta *m, enum meta_txn_stmt which)
{
	static const int ids[] = {
		[META_D_BEGIN] = D_BEGIN,
		[META_D_COMMIT] = D_COMMIT,
		[META_D_ROLLBACK] = D_ROLLBACK,
		[META_D_SAVEPOINT] = D_SAVEPOINT,
		[META_D_RELEASE] = D_RELEASE,
		[META_D_ROLLBACK_TO] = D_ROLLBACK_TO,
	};

	return exec_id(m, ids[which]);
}

/* The first column of engine query @id, or -1 (no row, or a query that
 * does not prepare: a table the store lacks). */
static int64_t probe(struct meta *m, int id)
{
	struct meta_st *s;
	int64_t v = -1;

	if (meta_stmt_quiet(m, &meta_db_sql, id, &s))
		return -1;
	if (sqlite3_step(s->lite) == SQLITE_ROW)
		v = meta_col_int(s, 0);
	meta_reset(s);
	return v;
}

/*
 * Read every row of engine query @id: 0, or -EUCLEAN if a page is
 * damaged. A query that does not prepare (a table an older store lacks)
 * reads nothing.
 */
static int rows_readable(struct meta *m, int id)
{
	struct meta_st *s;
	int rc;

	if (meta_stmt_quiet(m, &meta_db_sql, id, &s))
		return 0;
	while ((rc = sqlite3_step(s->lite)) == SQLITE_ROW)
		;
	meta_reset(s);
	return rc == SQLITE_DONE ? 0 : -EUCLEAN;
}

int meta_format_root(struct meta *m, uint32_t block_size)
{
	struct meta_inode root;
	int rc = meta_config_set(m, "block_size", block_size);

	if (!rc)
		rc = meta_config_set(m, "next_ino", 16);
	if (!rc)
		rc = meta_config_set(m, "durable_seq", 0);
	if (rc)
		return rc;
	memset(&root, 0, sizeof(root));
	root.ino = 1;
	root.mode = S_IFDIR | 0755;
	root.nlink = 2;
	clock_gettime(CLOCK_REALTIME, &root.mtime);
	root.atime = root.ctime = root.mtime;
	return meta_inode_put(m, &META_VER_ROOT, &root);
}

static int create_schema(struct meta *m, uint32_t block_size)
{
	int rc;

	rc = exec_id(m, D_BEGIN);
	if (rc)
		return rc;
	rc = exec(m, meta_db_schema);
	if (!rc)
		rc = exec(m, "INSERT INTO versions VALUES (0, NULL, 0, NULL, "
			     "NULL, 0, 0);"
			     "INSERT INTO ver_anc VALUES (0, 0)");
	if (!rc)
		rc = meta_format_root(m, block_size);
	if (!rc)
		rc = exec(m, "PRAGMA application_id = 1413565529;"
			     "PRAGMA user_version = " META_FORMAT_STR);
	if (rc) {
		exec_id(m, D_ROLLBACK);
		return rc;
	}
	return exec_id(m, D_COMMIT);
}

/* An XXH3-64 of every row of sqlite_schema, in *@out: 0 or -errno. */
static int schema_sum(struct meta *m, uint64_t *out)
{
	XXH3_state_t *st = XXH3_createState();
	struct meta_st *s = NULL;
	int rc, step;

	if (!st)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	rc = meta_stmt(m, &meta_db_sql, D_SCHEMA_ROWS, &s);
	if (!rc) {
		while ((step = sqlite3_step(s->lite)) == SQLITE_ROW)
			for (int c = 0; c < 3; c++) {
				const char *t = meta_col_text(s, c);

				t = t ? t : "";
				XXH3_64bits_update(st, t, strlen(t) + 1);
			}
		if (step != SQLITE_DONE)
			rc = meta_fail(m, step, "reading the schema");
		meta_reset(s);
	}
	if (!rc)
		*out = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return rc;
}

/* What is wrong with what opening a store reads (its block size, the
 * config and shard rows), or NULL. */
static const char *damaged(struct meta *m)
{
	int64_t bs = probe(m, D_BLOCK_SIZE);

	if (bs < 4096 || bs > (64 << 20) || (bs & (bs - 1)))
		return "bad block size";
	if (rows_readable(m, D_CONFIG_ROWS) || rows_readable(m, D_SHARD_ROWS))
		return sqlite3_errmsg(m->db);
	return NULL;
}

/*
 * Once per process, before the first connection: a savepoint's
 * sub-journal (a copy of each page an operation of an intent-log group
 * changes, core/meta/meta_ilog.c) and a temporary table's journal stay
 * in memory, in SQLite's small chunks (1 KiB), and never go to a file.
 * Past the default 64 KiB the sub-journal went to a temporary file, and
 * with locking_mode EXCLUSIVE it stayed one for the connection's life:
 * every later operation wrote each page it changed there, a pwrite()
 * per page (strace of 4,000 rm: 43,446 of 61,322 pwrite64). The cost is
 * memory while one operation runs: a page for each page it changes
 * that existed before its group (the rm of a file of a million blocks:
 * about 80 MB). A spill threshold above 64 KiB is not used: SQLite 3.40
 * then allocates the whole threshold as one chunk per savepoint, and
 * failed statements with SQLITE_FULL on a disk with room (256 KiB and
 * 16 MiB were tried, under strace and AddressSanitizer).
 */
static void config_sqlite(void)
{
	int rc = sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, -1);

	if (rc != SQLITE_OK)
		log_msg(LOG_WARNING,
			"SQLite keeps its sub-journals on disk: %s",
			sqlite3_errstr(rc));
}

/*
 * The tables a store of an older version lacks, all or nothing. A store
 * whose schema and rows come out of it as they went in (this version's)
 * rolls it back: an open writes nothing before the intent log's replay.
 * A full disk refused the COMMIT of this transaction when it changed
 * nothing but made the remote tier's triggers again, and the store did
 * not open (nor check). With @defer (the intent log holds records,
 * written for the tables as they are), an upgrade is rolled back too,
 * its checks passed, and waits for the log's replay: m->upgrade_due,
 * meta_upgrade_due(). The sum of the tables as they are then in
 * m->schema. 0, or -errno with nothing committed.
 */
bool meta_upgrade_crash; /* meta_upgrade_crash_at() */

void meta_upgrade_crash_at(bool on)
{
	meta_upgrade_crash = on;
}

static int upgrade(struct meta *m, const char *path, bool defer)
{
	const char *damage;
	uint64_t sum = 0, was = 0;
	int64_t changes;
	bool rebuilt = false, versioned = false;
	int64_t from = probe(m, D_USER_VERSION);
	int rc = schema_sum(m, &sum);

	changes = sqlite3_total_changes64(m->db);
	/* a change of format is synced at its commit: the intent log's
	 * header, synced next, names the new tables, and must never
	 * outlive them after a power loss (set outside the transaction,
	 * as SQLite wants) */
	versioned = !rc && !defer && from > 0 && from < META_FORMAT;
	if (versioned)
		rc = exec_id(m, D_SYNC_FULL);
	if (!rc)
		rc = exec_id(m, D_BEGIN);
	/* an older format: its tables first, those gc_schema and
	 * shard_schema name then being the new ones */
	if (!rc && from > 0 && from < META_FORMAT) {
		/* the intent log's records are statements on the old
		 * format's tables: they replay first, and the O(rows)
		 * conversion runs once, after them (not here and again then) */
		if (defer) {
			m->schema = sum;
			exec_id(m, D_ROLLBACK);
			log_msg(LOG_NOTICE,
				"metadata '%s': format %" PRId64 " is upgraded "
				"to %d once the intent log's records, written "
				"for its tables, are replayed",
				path, from, META_FORMAT);
			m->upgrade_due = strdup(path);
			return m->upgrade_due ? 0 : -ENOMEM;
		}
		log_msg(LOG_NOTICE,
			"metadata '%s': upgrading from format %" PRId64
			" to %d "
			"(versions: every row names its version, each table "
			"is keyed with it, the block map is extents), in one "
			"transaction: the write-ahead log grows to about the "
			"database's size meanwhile",
			path, from, META_FORMAT);
		/* format 1 to 2, 2 to 3, then 3 to 4 */
		if (from < 2)
			rc = exec(m, meta_db_versions_upgrade);
		if (!rc && from < 3)
			rc = exec(m, meta_db_keys_upgrade);
		if (!rc)
			rc = exec(m, meta_db_base_upgrade);
		if (!rc)
			fault_kill_at(meta_upgrade_crash, 1,
				      "during the upgrade of '%s' to format %d",
				      path, META_FORMAT);
		if (rc == -ENOSPC)
			log_msg(LOG_ERR,
				"metadata '%s': the upgrade to format %d needs "
				"free space about the database's size on its "
				"disk: free some (or open it with the build "
				"before, which reads format %" PRId64 ") and "
				"mount again",
				path, META_FORMAT, from);
	}
	if (!rc)
		rc = exec(m, meta_db_gc_schema);
	if (!rc) {
		/* a store from before shard_usage: count its objects once */
		bool fill = probe(m, D_HAS_USAGE) == 0;

		rc = exec(m, meta_db_shard_schema);
		if (!rc && fill)
			rc = exec(m, meta_db_usage_fill);
	}
	if (!rc && probe(m, D_AUTOINCREMENT) == 0) {
		rebuilt = true;
		rc = exec(m, meta_db_objects_upgrade);
		if (!rc)
			rc = exec(m, meta_db_shard_schema);
	}
	if (!rc)
		rc = meta_remote_schema(m);
	/* what opening a store reads, read again in the transaction that
	 * changed the tables: a damaged database can read well before a
	 * write and not after it (a b-tree out of order); refused then,
	 * with nothing written */
	if (!rc && (damage = damaged(m)) != NULL) {
		log_msg(LOG_ERR,
			"metadata '%s' is damaged: it reads otherwise once "
			"its tables are brought up to date (%s)",
			path, damage);
		meta_rollback(m);
		return -EUCLEAN;
	}
	if (rc) {
		/* SQLITE_ERROR: a table of that name is not the one
		 * expected; SQLITE_CONSTRAINT: rows that break their own
		 * table's rules (a NULL key), which an upgrade copies */
		int code = sqlite3_errcode(m->db) & 0xff;

		if (code == SQLITE_ERROR || code == SQLITE_CONSTRAINT) {
			log_msg(LOG_ERR, "metadata '%s' is damaged: %s (%s)",
				path,
				code == SQLITE_ERROR
					? "its tables are not those of tallyfs"
					: "rows break their tables' rules",
				sqlite3_errmsg(m->db));
			rc = -EUCLEAN;
		}
		meta_rollback(m);
		return rc;
	}
	rc = schema_sum(m, &was);
	m->schema = sum; /* the tables as they stay, unless committed */
	if (!rc && was == sum && sqlite3_total_changes64(m->db) == changes)
		return exec_id(m, D_ROLLBACK);
	if (!rc && defer) {
		log_msg(LOG_NOTICE,
			"metadata '%s': its tables are brought up to date "
			"once the intent log's records, written for them as "
			"they are, are replayed",
			path);
		m->upgrade_due = strdup(path);
		rc = m->upgrade_due ? 0 : -ENOMEM;
		meta_rollback(m);
		return rc;
	}
	if (rc) {
		meta_rollback(m);
		return rc;
	}
	/* an upgrade, its checks passed: the room the store kept on its
	 * disk is this commit's first (meta_ilog_open() keeps it again) */
	meta_ilog_unreserve(path);
	rc = exec_id(m, D_COMMIT);
	if (versioned)
		exec_id(m, D_SYNC_NORMAL);
	if (!rc)
		m->schema = was;
	if (!rc && rebuilt)
		log_msg(LOG_NOTICE,
			"metadata '%s': object ids are never used again from "
			"now on (table rebuilt)",
			path);
	if (!rc && versioned)
		log_msg(LOG_NOTICE,
			"metadata '%s': upgraded from format %" PRId64 " to %d",
			path, from, META_FORMAT);
	return rc;
}

int meta_upgrade_due(struct meta *m)
{
	char *path = m->upgrade_due;
	int rc;

	if (!path)
		return 0;
	m->upgrade_due = NULL;
	rc = upgrade(m, path, false);
	free(path);
	return rc;
}

int meta_open(const char *path, bool create, uint32_t block_size,
	      struct meta **out)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct meta *m;
	const char *damage;
	int64_t app, ver;
	int rc, flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

	if (meta_is_pg(path))
		return meta_pg_open(path, create, block_size, out);
	pthread_once(&once, config_sqlite);
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	rc = sqlite3_open_v2(path, &m->db, flags, NULL);
	if (rc != SQLITE_OK) {
		log_msg(LOG_ERR, "cannot open metadata '%s': %s", path,
			m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(rc));
		rc = meta_errno(rc);
		goto out_close;
	}
	sqlite3_extended_result_codes(m->db, 1);
	sqlite3_busy_timeout(m->db, 5000);
	/* one process owns the store (STORE/lock): no file locks per
	 * transaction, and the WAL index lives in memory */
	rc = exec(m, "PRAGMA locking_mode = EXCLUSIVE");
	if (rc)
		goto out_close;
	/* before the probes below, which read a failure as damage */
	rc = meta_stmt_cache(m, &meta_db_sql);
	if (rc)
		goto out_close;
	app = probe(m, D_APP_ID);
	ver = probe(m, D_USER_VERSION);
	if (app < 0 || ver < 0) {
		log_msg(LOG_ERR, "metadata '%s' is not a SQLite database: %s",
			path, sqlite3_errmsg(m->db));
		rc = -EUCLEAN;
		goto out_close;
	}
	if (app == 0 && ver == 0 && probe(m, D_TABLES) == 0) {
		if (!create) {
			log_msg(LOG_ERR, "metadata '%s' is empty", path);
			rc = -EUCLEAN;
			goto out_close;
		}
		rc = exec(m, "PRAGMA journal_mode = WAL");
		if (!rc)
			rc = create_schema(m, block_size);
		if (rc)
			goto out_close;
	} else if (app != APP_ID) {
		log_msg(LOG_ERR,
			"metadata '%s' belongs to another application "
			"(application_id %" PRId64 ")",
			path, app);
		rc = -EUCLEAN;
		goto out_close;
	} else if (ver < 1 || ver > META_FORMAT) { /* older: upgraded below */
		log_msg(LOG_ERR,
			"metadata '%s' has format version %" PRId64
			", this tallyfs reads version %d",
			path, ver, META_FORMAT);
		rc = -EPROTO;
		goto out_close;
	}
	/* before anything below writes (journal mode, new tables, shard
	 * 0's row): a store refused as damaged is left as it was */
	damage = damaged(m);
	if (damage) {
		log_msg(LOG_ERR, "metadata '%s' is damaged: %s", path, damage);
		rc = -EUCLEAN;
		goto out_close;
	}
	/*
	 * The WAL keeps its size when it restarts after a checkpoint (up to
	 * 64 MiB; it restarts at about 4 MiB): a WAL truncated to nothing
	 * at each restart makes every commit extend the file again, which
	 * allocates and zeroes its blocks. Measured with tools/bench/run
	 * --only meta --files 10000, against passthrough_ll: unlink 0.81 ->
	 * 1.03, link 0.71 -> 0.89, mkdir 0.92 -> 1.23, create 1.17 -> 1.31.
	 */
	/* temporary tables (the map of a branch: a row per inode) in a
	 * file with a small cache of its own, not in memory; a page cache
	 * of 32 MiB (pages beyond it come from the kernel's): with a
	 * million inodes in memory, a branch of a million files took the
	 * daemon's RSS from 466 to 568 MB with 64 MiB and the map in
	 * memory (tools/bench/scale) */
	rc = exec(m,
		  "PRAGMA synchronous = NORMAL;"
		  "PRAGMA foreign_keys = OFF; PRAGMA temp_store = FILE;"
		  "PRAGMA cache_size = -32768; PRAGMA recursive_triggers = ON;"
		  "PRAGMA journal_size_limit = 67108864");
	if (rc)
		goto out_close;
	rc = upgrade(m, path, meta_ilog_pending(path));
	if (rc)
		goto out_close;
	/* last: it rewrites the header of a database not in WAL mode yet
	 * (and writes nothing in one that is) */
	rc = exec(m, "PRAGMA journal_mode = WAL");
	if (rc)
		goto out_close;
	*out = m;
	return 0;

out_close:
	/* SQLite opens a file whose header asks for a newer write format
	 * read-only: a writable file refused so is damaged, not read-only */
	if (rc == -EROFS && access(path, W_OK) == 0) {
		log_msg(LOG_ERR,
			"metadata '%s' is damaged: SQLite can only read it "
			"(%s)",
			path, sqlite3_errmsg(m->db));
		rc = -EUCLEAN;
	}
	meta_stmts_free(m);
	sqlite3_close(m->db);
	free(m->upgrade_due);
	free(m);
	return rc;
}

void meta_close(struct meta *m)
{
	if (!m)
		return;
	meta_ilog_close(m);
	meta_stmts_free(m);
	free(m->zero);
	meta_objlist_release(&m->dead);
	free(m->upgrade_due);
	if (m->pg)
		meta_pg_close(m);
	else if (sqlite3_close(m->db) != SQLITE_OK)
		log_msg(LOG_ERR, "closing metadata failed: %s",
			sqlite3_errmsg(m->db));
	free(m);
}

int meta_end(struct meta *m, int rc)
{
	if (!rc)
		rc = meta_commit(m);
	if (rc)
		meta_rollback(m);
	return rc;
}

int meta_begin(struct meta *m)
{
	struct meta_st *s;
	int rc;

	if (meta_grouping(m))
		return meta_ilog_op_begin(m);
	/* the intent log went off (a full disk) with a group open, or
	 * with a group that waits in the log */
	rc = meta_ilog_ready(m);
	if (rc)
		return rc;
	rc = meta_stmt(m, &meta_db_sql, D_BEGIN, &s);

	return rc ? rc : meta_run_later(m, s, "begin");
}

/*
 * The COMMIT, after @s if not NULL: *@v its integer, or 1 when it gave
 * no row (committed all the same). On PostgreSQL both go in one
 * pipeline: one round trip. -errno: nothing committed.
 */
static int commit_with(struct meta *m, struct meta_st *s, int64_t *v,
		       const char *what)
{
	size_t ndead = m->dead.n;
	bool none = false; /* @s gave no row */
	struct meta_st *c;
	int rc;

	if (m->fault_in > 0 && --m->fault_in == 0) {
		meta_rollback(m);
		log_msg(LOG_ERR, "metadata commit failed: injected %s",
			strerror(-m->fault_err));
		return m->fault_err;
	}
	rc = meta_settle(m);
	if (meta_ilog_in_op(m)) {
		/* an operation of a group: its record, then its release */
		if (!rc && s) {
			rc = meta_step(m, s, what);
			if (rc > 0) {
				*v = meta_col_int(s, 0);
				meta_reset(s);
			}
			none = rc == 0;
			rc = rc > 0 ? 0 : rc;
		}
		if (!rc)
			rc = meta_ilog_op_commit(m);
		else
			meta_ilog_op_rollback(m);
		/* meta_inject_lost(): done, and told otherwise */
		if (!rc && m->lost_in > 0 && --m->lost_in == 0) {
			log_msg(LOG_ERR, "metadata commit: the answer was lost "
					 "(injected); whether it committed is "
					 "unknown");
			rc = -EIO;
		}
		if (rc) {
			m->dead.n = ndead;
			return rc;
		}
		return none ? 1 : 0;
	}
	if (!rc && meta_grouping(m)) {
		/* no operation open: the statements ran outside one, each
		 * after the group's commit (meta_step()) */
		log_msg(LOG_ERR, "metadata: a commit with no transaction");
		return -EINVAL;
	}
	if (!rc)
		rc = meta_stmt(m, &meta_db_sql, D_COMMIT, &c);
	if (!rc && s) {
		if (m->pg) /* the COMMIT goes in @s's pipeline */
			meta_pg_set_tail(m, c);
		/* no row is an answer (PostgreSQL: the pipeline went whole);
		 * an -ENOENT is a failure, of @s or of a statement that went
		 * before it (an entry's delete that removed nothing) */
		rc = meta_step(m, s, what);
		if (m->pg)
			meta_pg_set_tail(m, NULL);
		if (rc > 0) {
			*v = meta_col_int(s, 0);
			meta_reset(s);
		}
		none = rc == 0;
		rc = rc > 0 ? 0 : rc;
	}
	if (!rc && !(s && m->pg))
		rc = meta_run(m, c, "commit");
	/* a COMMIT cut off with the connection may have committed: not run
	 * again (that could do it twice), an error */
	if ((rc == -EDEADLK && meta_pg_lost(m)) ||
	    (!rc && m->lost_in > 0 && --m->lost_in == 0)) {
		log_msg(LOG_ERR, "metadata commit: the connection was lost; "
				 "whether it committed is unknown");
		rc = -EIO;
	}
	if (rc) {
		m->dead.n = ndead; /* nothing of it was deleted */
		return rc;
	}
	return none ? 1 : 0;
}

int meta_commit(struct meta *m)
{
	return commit_with(m, NULL, NULL, "commit");
}

int meta_int_commit(struct meta *m, struct meta_st *s, int64_t *v,
		    const char *what)
{
	return commit_with(m, s, v, what);
}

size_t meta_dead_count(struct meta *m)
{
	return m->dead.n;
}

void meta_dead_take(struct meta *m, struct meta_objlist *out)
{
	*out = m->dead;
	meta_objlist_init(&m->dead);
}

uint64_t meta_drift(struct meta *m)
{
	return m->drift;
}

void meta_inject_lost(struct meta *m, unsigned nth)
{
	m->lost_in = nth;
}

void meta_inject_lookup(struct meta *m, unsigned nth, int err)
{
	m->lookup_fail = nth;
	m->lookup_err = err;
}

/* An injected failure of an object lookup (meta_inject_lookup()). */
int meta_lookup_fault(struct meta *m)
{
	if (!m->lookup_fail || --m->lookup_fail)
		return 0;
	return m->lookup_err;
}

unsigned meta_inject(struct meta *m, unsigned nth, int err)
{
	unsigned left = m->fault_in;

	m->fault_err = err;
	m->fault_in = nth;
	return left;
}

int meta_sync(struct meta *m)
{
	int rc;

	if (m->pg)
		return 0; /* every commit is durable (synchronous_commit) */
	/* a lost group applied again first, outside any transaction (a
	 * sync repairs the state, or fails and says why) */
	rc = meta_ilog_ready(m);
	if (rc) {
		log_msg(LOG_ERR,
			"metadata: a sync finds operations that wait in the "
			"intent log and cannot be applied: %s",
			strerror(-rc));
		return rc;
	}
	/* the group first: what the WAL makes durable is committed */
	rc = meta_group_commit(m);
	if (rc)
		return rc;
	/*
	 * synchronous cannot change inside a transaction: make the WAL
	 * durable with one more, tiny, transaction committed with FULL,
	 * whose sync covers every frame written before it.
	 */
	rc = exec_id(m, D_SYNC_FULL);
	if (rc)
		return rc;
	rc = exec_id(m, D_BEGIN);
	if (!rc)
		rc = exec_id(m, D_SYNC_SEQ);
	if (!rc)
		rc = exec_id(m, D_COMMIT);
	if (rc)
		exec_id(m, D_ROLLBACK);
	exec_id(m, D_SYNC_NORMAL);
	return rc;
}

void meta_rollback(struct meta *m)
{
	m->nzero = 0;
	if (meta_grouping(m) || meta_ilog_in_op(m)) {
		meta_ilog_op_rollback(m);
		return;
	}
	/* the log went off (a full disk) and a group is still open: the
	 * transaction is the group's, of answered operations, not one
	 * this operation began (meta_begin() could not commit it) */
	if (meta_group_open(m))
		return;
	if (meta_in_txn(m))
		exec_id(m, D_ROLLBACK);
}

int meta_config_get(struct meta *m, const char *key, int64_t *val)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_db_sql, D_CONFIG_GET, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, key);
	return meta_int(m, s, val, "config read");
}

int meta_config_set(struct meta *m, const char *key, int64_t val)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_db_sql, D_CONFIG_SET, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, key);
	meta_bind_int(s, 2, val);
	return meta_run(m, s, "config write");
}

struct meta_backup {
	struct meta *m;
	sqlite3 *dst;
	sqlite3_backup *b;
};

int meta_backup_begin(struct meta *m, const char *path,
		      struct meta_backup **out)
{
	struct meta_backup *b;
	int rc;

	if (m->pg) {
		log_msg(LOG_ERR,
			"metadata snapshots are of SQLite stores only");
		return -EOPNOTSUPP;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->m = m;
	rc = sqlite3_open_v2(path, &b->dst,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		log_msg(LOG_ERR, "cannot create snapshot '%s': %s", path,
			b->dst ? sqlite3_errmsg(b->dst) : sqlite3_errstr(rc));
		rc = meta_errno(rc);
		goto out_close;
	}
	/* the copy takes the source's header, WAL mode included: in
	 * exclusive locking mode its WAL index lives in memory, not in a
	 * -shm file mapped shared, which a store on a filesystem without
	 * shared mappings (FUSE with direct I/O: plfs, the power-loss
	 * simulator of the tests) refuses (the snapshot failed, EIO) */
	rc = sqlite3_exec(b->dst, "PRAGMA locking_mode = EXCLUSIVE", NULL, NULL,
			  NULL);
	if (rc != SQLITE_OK) {
		log_msg(LOG_ERR, "cannot create snapshot '%s': %s", path,
			sqlite3_errmsg(b->dst));
		rc = meta_errno(rc);
		goto out_close;
	}
	b->b = sqlite3_backup_init(b->dst, "main", m->db, "main");
	if (!b->b) {
		log_msg(LOG_ERR, "cannot start snapshot '%s': %s", path,
			sqlite3_errmsg(b->dst));
		rc = -EIO;
		goto out_close;
	}
	*out = b;
	return 0;

out_close:
	sqlite3_close(b->dst);
	free(b);
	return rc;
}

int meta_backup_step(struct meta_backup *b, int pages)
{
	int rc;

	/* the source's write transaction (a group of the intent log) holds
	 * the backup off: what it copies is what is committed */
	rc = meta_ilog_ready(b->m);
	if (rc)
		return rc;
	rc = sqlite3_backup_step(b->b, pages);

	if (rc == SQLITE_DONE)
		return 0;
	if (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return 1;
	log_msg(LOG_ERR, "snapshot of the metadata failed: %s",
		sqlite3_errstr(rc));
	return meta_errno(rc);
}

int meta_backup_end(struct meta_backup *b)
{
	int rc;

	if (!b)
		return 0;
	rc = meta_errno(sqlite3_backup_finish(b->b));
	if (!rc)
		rc = meta_errno(sqlite3_exec(b->dst,
					     "PRAGMA journal_mode = DELETE",
					     NULL, NULL, NULL));
	if (sqlite3_close(b->dst) != SQLITE_OK && !rc)
		rc = -EIO;
	free(b);
	return rc;
}
