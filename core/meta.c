/* SPDX-License-Identifier: MIT */
/*
 * The SQLite engine of the metadata store (WAL mode). All SQL is here.
 *
 * DESIGN NOTES
 *
 * Schema (PRAGMA application_id 'TALY', user_version META_FORMAT):
 *   config(key, value)                    block_size, next_ino, durable_seq
 *   inodes(ino, nspace, mode, ..., target)  nspace = ino of namespace root
 *   dentries(id, parent, name, ino)       id is the stable readdir cookie
 *   objects(id, name, shard, size, refcount)
 *   blocks(ino, idx, obj, shard)          one object reference per block
 *                                         (index blocks_obj: see gc_schema)
 *   xattrs(ino, name, value)
 *   shards, ghosts, moves                 see shard_schema
 *
 * Invariants (checked offline by tallyfsck):
 *  1. objects.refcount = number of blocks rows naming the object; a row
 *     whose count reaches zero is deleted in the same transaction, and
 *     the caller unlinks the file only after the commit (a crash between
 *     the two leaks a file; it never leaves a dangling reference).
 *  2. Every change runs inside one transaction opened by meta_begin(), so
 *     a reference and its count change together or not at all.
 *  3. Ordinary commits use synchronous=NORMAL (durable against a crash of
 *     the process); meta_sync() syncs the WAL, which makes every earlier
 *     commit durable against power loss too (fsync).
 *
 * Locking: none inside; the caller serialises every call on a struct meta.
 */
#include "core/meta.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "core/array.h"
#include "core/log.h"

#define APP_ID 0x54414c59 /* 'TALY' */

enum {
	S_CONFIG_GET,
	S_CONFIG_SET,
	S_INODE_GET,
	S_INODE_PUT,
	S_INODE_DEL,
	S_INODE_DEL_X,
	S_ORPHANS,
	S_TARGET_SET,
	S_TARGET_GET,
	S_DENTRY_LOOKUP,
	S_DENTRY_INSERT,
	S_DENTRY_DELETE,
	S_DENTRY_SET_INO,
	S_DENTRY_MOVE,
	S_DIR_EMPTY,
	S_READDIR,
	S_BLOCKS_LOAD,
	S_BLOCK_GET,
	S_BLOCK_PUT,
	S_BLOCK_DEL,
	S_OBJ_FIND,
	S_OBJ_INSERT,
	S_OBJ_ADD,
	S_OBJ_DELETE,
	S_DROP_LIST,
	S_DROP_DEL,
	S_COPY_BLOCKS,
	S_COPY_COUNTS,
	S_COPY_XATTRS,
	S_REFCOUNTS,
	S_XATTR_GET,
	S_XATTR_INSERT,
	S_XATTR_REPLACE,
	S_XATTR_UPSERT,
	S_XATTR_DEL,
	S_XATTR_LIST,
	S_CHECK,
	S_CHECK_END,
	S_PROTECTED,
	S_OBJ_SET,
	S_OBJECTS,
	S_OBJECTS_AFTER,
	S_MARK_GET,
	S_MARK_PUT,
	S_MARK_DEL,
	S_MARK_LIST,
	S_MARK_RANGE,
	S_LOG_PUT,
	S_LOG_LAST,
	S_OBJ_SHARD,
	S_GHOST_DST,
	S_OBJ_GET,
	S_OBJ_REFS,
	S_PROTECTED_NOMOVE,
	S_BEGIN,
	S_COMMIT,
	S_COUNT
};

static const char *const sql_text[S_COUNT] = {
	[S_CONFIG_GET] = "SELECT value FROM config WHERE key = ?1",
	[S_CONFIG_SET] = "INSERT OR REPLACE INTO config(key, value) "
			 "VALUES (?1, ?2)",
	[S_INODE_GET] = "SELECT nspace, mode, uid, gid, nlink, size, rdev, "
			"alloc, atime, mtime, ctime FROM inodes WHERE ino = ?1",
	[S_INODE_PUT] =
		"INSERT INTO inodes(ino, nspace, mode, uid, gid, nlink, size, "
		"rdev, alloc, atime, mtime, ctime) VALUES (?1, ?2, ?3, ?4, "
		"?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT(ino) DO "
		"UPDATE SET mode = ?3, uid = ?4, gid = ?5, "
		"nlink = ?6, size = ?7, rdev = ?8, alloc = ?9, atime = ?10, "
		"mtime = ?11, ctime = ?12",
	[S_INODE_DEL] = "DELETE FROM inodes WHERE ino = ?1",
	[S_INODE_DEL_X] = "DELETE FROM xattrs WHERE ino = ?1",
	[S_ORPHANS] = "SELECT ino FROM inodes WHERE nlink = 0",
	[S_TARGET_SET] = "UPDATE inodes SET target = ?2 WHERE ino = ?1",
	[S_TARGET_GET] = "SELECT target FROM inodes WHERE ino = ?1",
	[S_DENTRY_LOOKUP] = "SELECT ino FROM dentries "
			    "WHERE parent = ?1 AND name = ?2",
	[S_DENTRY_INSERT] = "INSERT INTO dentries(parent, name, ino) "
			    "VALUES (?1, ?2, ?3)",
	[S_DENTRY_DELETE] = "DELETE FROM dentries "
			    "WHERE parent = ?1 AND name = ?2",
	[S_DENTRY_SET_INO] = "UPDATE dentries SET ino = ?3 "
			     "WHERE parent = ?1 AND name = ?2",
	[S_DENTRY_MOVE] = "UPDATE dentries SET parent = ?3, name = ?4 "
			  "WHERE parent = ?1 AND name = ?2",
	[S_DIR_EMPTY] = "SELECT 1 FROM dentries WHERE parent = ?1 LIMIT 1",
	[S_READDIR] = "SELECT id, name, ino FROM dentries "
		      "WHERE parent = ?1 AND id > ?2 ORDER BY id",
	[S_BLOCKS_LOAD] = "SELECT b.idx, b.obj, b.shard, o.name, o.size "
			  "FROM blocks b LEFT JOIN objects o ON o.id = b.obj "
			  "WHERE b.ino = ?1 ORDER BY b.idx",
	[S_BLOCK_GET] = "SELECT obj FROM blocks WHERE ino = ?1 AND idx = ?2",
	[S_BLOCK_PUT] = "INSERT OR REPLACE INTO blocks(ino, idx, obj, shard) "
			"VALUES (?1, ?2, ?3, ?4)",
	[S_BLOCK_DEL] = "DELETE FROM blocks WHERE ino = ?1 AND idx = ?2",
	[S_OBJ_FIND] = "SELECT id FROM objects WHERE name = ?1",
	[S_OBJ_INSERT] = "INSERT INTO objects(name, shard, size, refcount) "
			 "VALUES (?1, ?2, ?3, 1)",
	[S_OBJ_ADD] = "UPDATE objects SET refcount = refcount + ?2 "
		      "WHERE id = ?1 RETURNING refcount, name, shard",
	[S_OBJ_DELETE] = "DELETE FROM objects WHERE id = ?1",
	[S_DROP_LIST] = "SELECT obj, count(*) FROM blocks "
			"WHERE ino = ?1 AND idx >= ?2 GROUP BY obj",
	[S_DROP_DEL] = "DELETE FROM blocks WHERE ino = ?1 AND idx >= ?2",
	[S_COPY_BLOCKS] = "INSERT INTO blocks(ino, idx, obj, shard) "
			  "SELECT ?2, idx, obj, shard FROM blocks "
			  "WHERE ino = ?1",
	[S_COPY_COUNTS] =
		"UPDATE objects SET refcount = refcount + c.n FROM "
		"(SELECT obj, count(*) AS n FROM blocks WHERE ino = ?1 "
		"GROUP BY obj) AS c WHERE objects.id = c.obj",
	[S_COPY_XATTRS] = "INSERT INTO xattrs(ino, name, value) "
			  "SELECT ?2, name, value FROM xattrs WHERE ino = ?1",
	[S_REFCOUNTS] = "SELECT coalesce(o.refcount, 0) FROM blocks b "
			"LEFT JOIN objects o ON o.id = b.obj "
			"WHERE b.ino = ?1 ORDER BY b.idx",
	[S_XATTR_GET] = "SELECT value FROM xattrs WHERE ino = ?1 AND name = ?2",
	[S_XATTR_INSERT] = "INSERT INTO xattrs(ino, name, value) "
			   "VALUES (?1, ?2, ?3)",
	[S_XATTR_REPLACE] = "UPDATE xattrs SET value = ?3 "
			    "WHERE ino = ?1 AND name = ?2",
	[S_XATTR_UPSERT] = "INSERT OR REPLACE INTO xattrs(ino, name, value) "
			   "VALUES (?1, ?2, ?3)",
	[S_XATTR_DEL] = "DELETE FROM xattrs WHERE ino = ?1 AND name = ?2",
	[S_XATTR_LIST] = "SELECT name FROM xattrs WHERE ino = ?1 "
			 "ORDER BY name",
	/* the ids in [?1, ?2]: a count per object and the references to
	 * no object, through blocks_obj */
	[S_CHECK] =
		"SELECT o.id, o.name, o.shard, o.refcount, "
		"(SELECT count(*) FROM blocks b WHERE b.obj = o.id) "
		"FROM objects o WHERE o.id BETWEEN ?1 AND ?2 "
		"UNION ALL SELECT 0, NULL, min(b.shard), 0, count(*) "
		"FROM blocks b WHERE b.obj BETWEEN ?1 AND ?2 AND NOT EXISTS "
		"(SELECT 1 FROM objects WHERE id = b.obj) GROUP BY b.obj",
	[S_CHECK_END] = "SELECT id FROM objects WHERE id >= ?1 ORDER BY id "
			"LIMIT 1 OFFSET ?2",
	/* ?2: a node whose report is not asked (NULL: none) */
	[S_PROTECTED] = "SELECT 1 FROM pin_objects WHERE name = ?1 "
			"UNION ALL SELECT 1 FROM node_objects WHERE name = ?1 "
			"AND node IS NOT ?2 "
			"UNION ALL SELECT 1 FROM moves WHERE name = ?1 LIMIT 1",
	[S_OBJ_SET] = "UPDATE objects SET refcount = ?2 WHERE id = ?1",
	[S_OBJECTS] = "SELECT id, name, shard, refcount FROM objects",
	[S_OBJECTS_AFTER] = "SELECT id, name, shard, refcount FROM objects "
			    "WHERE id > ?1 ORDER BY id LIMIT ?2",
	[S_MARK_GET] = "SELECT since FROM gc_marks WHERE name = ?1",
	[S_MARK_PUT] = "INSERT OR IGNORE INTO gc_marks(name, shard, since) "
		       "VALUES (?1, ?2, ?3)",
	[S_MARK_DEL] = "DELETE FROM gc_marks WHERE name = ?1",
	[S_MARK_LIST] = "SELECT name FROM gc_marks",
	[S_MARK_RANGE] = "SELECT name, since FROM gc_marks WHERE name > ?1 "
			 "ORDER BY name LIMIT ?2",
	[S_LOG_PUT] = "INSERT INTO gc_log(at, dry_run, checked, live, "
		      "unreferenced, collected, preserved, bytes_freed, drift, "
		      "nodes, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
		      "?8, ?9, ?10, ?11)",
	[S_LOG_LAST] = "SELECT at, dry_run, checked, live, unreferenced, "
		       "collected, preserved, bytes_freed, drift, nodes, "
		       "duration_ms FROM gc_log ORDER BY id DESC LIMIT ?1",
	[S_OBJ_SHARD] = "SELECT shard FROM objects WHERE id = ?1",
	[S_GHOST_DST] = "SELECT dst FROM ghosts WHERE obj = ?1 AND src = ?2",
	[S_OBJ_GET] = "SELECT refcount, name, shard FROM objects WHERE id = ?1",
	/* through blocks_obj: does any reference name the object? */
	[S_OBJ_REFS] = "SELECT count(*) FROM blocks WHERE obj = ?1",
	[S_PROTECTED_NOMOVE] =
		"SELECT 1 FROM pin_objects WHERE name = ?1 "
		"UNION ALL SELECT 1 FROM node_objects WHERE name = ?1 "
		"AND node IS NOT ?2 LIMIT 1",
	/* prepared once: every operation runs both */
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
};

static const char schema[] =
	"CREATE TABLE config(key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
	" WITHOUT ROWID;"
	"CREATE TABLE inodes(ino INTEGER PRIMARY KEY, nspace INTEGER NOT NULL,"
	" mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
	" nlink INTEGER NOT NULL, size INTEGER NOT NULL,"
	" rdev INTEGER NOT NULL, alloc INTEGER NOT NULL,"
	" atime INTEGER NOT NULL, mtime INTEGER NOT NULL,"
	" ctime INTEGER NOT NULL, target BLOB);"
	"CREATE INDEX inodes_nspace ON inodes(nspace);"
	"CREATE TABLE dentries(id INTEGER PRIMARY KEY,"
	" parent INTEGER NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL,"
	" UNIQUE(parent, name));"
	"CREATE INDEX dentries_parent ON dentries(parent);"
	"CREATE TABLE objects(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE, shard INTEGER NOT NULL,"
	" size INTEGER NOT NULL, refcount INTEGER NOT NULL);"
	"CREATE TABLE blocks(ino INTEGER NOT NULL, idx INTEGER NOT NULL,"
	" obj INTEGER NOT NULL, shard INTEGER NOT NULL,"
	" PRIMARY KEY(ino, idx)) WITHOUT ROWID;"
	"CREATE TABLE xattrs(ino INTEGER NOT NULL, name BLOB NOT NULL,"
	" value BLOB NOT NULL, PRIMARY KEY(ino, name)) WITHOUT ROWID;";

/* GC state, added to format 1 stores when they are opened. */
static const char gc_schema[] =
	"CREATE TABLE IF NOT EXISTS gc_marks(name TEXT PRIMARY KEY,"
	" shard INTEGER NOT NULL, since INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS gc_log(id INTEGER PRIMARY KEY,"
	" at INTEGER NOT NULL, dry_run INTEGER NOT NULL,"
	" checked INTEGER NOT NULL, live INTEGER NOT NULL,"
	" unreferenced INTEGER NOT NULL, collected INTEGER NOT NULL,"
	" preserved INTEGER NOT NULL, bytes_freed INTEGER NOT NULL,"
	" drift INTEGER NOT NULL, nodes INTEGER NOT NULL,"
	" duration_ms INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS node_reports(node INTEGER PRIMARY KEY,"
	" reported_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS node_objects(node INTEGER NOT NULL,"
	" name TEXT NOT NULL, PRIMARY KEY(node, name)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS pins(id INTEGER PRIMARY KEY,"
	" path BLOB NOT NULL UNIQUE, created INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS pin_objects(pin INTEGER NOT NULL,"
	" name TEXT NOT NULL, PRIMARY KEY(pin, name)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS pin_objects_name ON pin_objects(name);"
	"CREATE INDEX IF NOT EXISTS node_objects_name ON node_objects(name);"
	/* the references of an object: the drift check of GC by chunks
	 * (core/gc.c); with the shard, it covers the scans by object */
	"CREATE INDEX IF NOT EXISTS blocks_obj ON blocks(obj, shard);"
	/* the number of inodes, for statfs without a scan */
	"INSERT INTO config(key, value) SELECT 'inodes',"
	" (SELECT count(*) FROM inodes) WHERE NOT EXISTS"
	" (SELECT 1 FROM config WHERE key = 'inodes');"
	"CREATE TRIGGER IF NOT EXISTS inodes_add AFTER INSERT ON inodes"
	" BEGIN UPDATE config SET value = value + 1 WHERE key = 'inodes'; END;"
	"CREATE TRIGGER IF NOT EXISTS inodes_del AFTER DELETE ON inodes"
	" BEGIN UPDATE config SET value = value - 1 WHERE key = 'inodes'; END;";

/*
 * Shards, ghosts and moves, added to format 1 stores when they are opened.
 * Shard 0 (STORE/shards/0) has a row with a NULL path. A ghost (obj, src)
 * says that object obj, which block references still name as being in
 * shard src, now lives in shard dst; its refcount is the number of those
 * references, kept exact by the triggers on blocks (recursive triggers
 * are on, so the deletes of INSERT OR REPLACE count too). The ghosts of
 * an object go with its row (object ids may be used again). shard_usage
 * counts the objects and bytes of each shard, kept by the triggers on
 * objects, so that the status need not scan the object table. A move row is
 * the intent of a rebalance move in progress (core/shard.c).
 */
static const char shard_schema[] =
	"CREATE TABLE IF NOT EXISTS shards(id INTEGER PRIMARY KEY,"
	" path BLOB UNIQUE, state INTEGER NOT NULL, added INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO shards(id, path, state, added)"
	" VALUES (0, NULL, 0, 0);"
	"CREATE TABLE IF NOT EXISTS ghosts(obj INTEGER NOT NULL,"
	" src INTEGER NOT NULL, dst INTEGER NOT NULL, name TEXT NOT NULL,"
	" refcount INTEGER NOT NULL, created INTEGER NOT NULL,"
	" PRIMARY KEY(obj, src)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS moves(obj INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS moves_name ON moves(name);"
	"CREATE TRIGGER IF NOT EXISTS ghost_ref_add AFTER INSERT ON blocks"
	" BEGIN UPDATE ghosts SET refcount = refcount + 1"
	" WHERE obj = NEW.obj AND src = NEW.shard; END;"
	"CREATE TRIGGER IF NOT EXISTS ghost_ref_del AFTER DELETE ON blocks"
	" BEGIN UPDATE ghosts SET refcount = refcount - 1"
	" WHERE obj = OLD.obj AND src = OLD.shard; END;"
	"CREATE TRIGGER IF NOT EXISTS ghost_ref_mov AFTER UPDATE OF obj, shard"
	" ON blocks BEGIN UPDATE ghosts SET refcount = refcount - 1"
	" WHERE obj = OLD.obj AND src = OLD.shard;"
	" UPDATE ghosts SET refcount = refcount + 1"
	" WHERE obj = NEW.obj AND src = NEW.shard; END;"
	"CREATE TABLE IF NOT EXISTS sweep_log(id INTEGER PRIMARY KEY,"
	" at INTEGER NOT NULL, checked INTEGER NOT NULL,"
	" purged INTEGER NOT NULL, kept INTEGER NOT NULL,"
	" inconclusive INTEGER NOT NULL, repointed INTEGER NOT NULL,"
	" duration_ms INTEGER NOT NULL);"
	"CREATE TRIGGER IF NOT EXISTS ghost_obj_del AFTER DELETE ON objects"
	" BEGIN DELETE FROM ghosts WHERE obj = OLD.id; END;"
	"CREATE TABLE IF NOT EXISTS shard_usage(shard INTEGER PRIMARY KEY,"
	" objects INTEGER NOT NULL, bytes INTEGER NOT NULL);"
	"CREATE TRIGGER IF NOT EXISTS usage_add AFTER INSERT ON objects"
	" BEGIN INSERT INTO shard_usage VALUES (NEW.shard, 1, NEW.size)"
	" ON CONFLICT(shard) DO UPDATE SET objects = objects + 1,"
	" bytes = bytes + NEW.size; END;"
	"CREATE TRIGGER IF NOT EXISTS usage_del AFTER DELETE ON objects"
	" BEGIN UPDATE shard_usage SET objects = objects - 1,"
	" bytes = bytes - OLD.size WHERE shard = OLD.shard; END;"
	"CREATE TRIGGER IF NOT EXISTS usage_mov AFTER UPDATE OF shard"
	" ON objects BEGIN UPDATE shard_usage SET objects = objects - 1,"
	" bytes = bytes - OLD.size WHERE shard = OLD.shard;"
	" INSERT INTO shard_usage VALUES (NEW.shard, 1, NEW.size)"
	" ON CONFLICT(shard) DO UPDATE SET objects = objects + 1,"
	" bytes = bytes + NEW.size; END;";

/*
 * Object ids are never used again (AUTOINCREMENT): a reference left
 * dangling by damage must never bind to a later object. A store made
 * before that gets its table rebuilt in the transaction that opens it,
 * its counter set past every id anything still names. The triggers on
 * objects go with the old table; shard_schema makes them again.
 */
static const char objects_upgrade[] =
	"DROP TRIGGER IF EXISTS ghost_obj_del; DROP TRIGGER IF EXISTS usage_add;"
	"DROP TRIGGER IF EXISTS usage_del; DROP TRIGGER IF EXISTS usage_mov;"
	"CREATE TABLE objects_v2(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE, shard INTEGER NOT NULL,"
	" size INTEGER NOT NULL, refcount INTEGER NOT NULL);"
	"INSERT INTO objects_v2 SELECT id, name, shard, size, refcount"
	" FROM objects;"
	"DROP TABLE objects;"
	"ALTER TABLE objects_v2 RENAME TO objects;"
	"DELETE FROM sqlite_sequence WHERE name = 'objects';"
	"INSERT INTO sqlite_sequence(name, seq) SELECT 'objects', max("
	" (SELECT coalesce(max(id), 0) FROM objects),"
	" (SELECT coalesce(max(obj), 0) FROM blocks),"
	" (SELECT coalesce(max(obj), 0) FROM ghosts),"
	" (SELECT coalesce(max(obj), 0) FROM moves));";

/* shard_usage from the object table (a new table, or a repair). */
static const char usage_fill[] =
	"DELETE FROM shard_usage;"
	"INSERT INTO shard_usage SELECT shard, count(*), coalesce(sum(size), 0)"
	" FROM objects GROUP BY shard;";

#define ADHOC_MAX 64 /* statements of the shard section, by text */

struct meta {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	struct {
		const char *sql; /* a literal: compared by address */
		sqlite3_stmt *s;
	} adhoc[ADHOC_MAX];
	unsigned nadhoc;
	unsigned fault_in; /* meta_inject: commits until the fault; 0 off */
	int fault_err;
	/* objects whose count went to zero or below in this transaction:
	 * settled against its final state at commit (settle()) */
	int64_t *zero;
	size_t nzero, zcap;
	unsigned lookup_fail; /* meta_inject_lookup: lookups still to fail */
	int lookup_err;
	struct meta_objlist dead; /* deleted rows, for meta_dead_take() */
	uint64_t drift;		  /* counts found wrong by settle() */
	int64_t self;		  /* this mount's node id (meta_set_self) */
};

static int errno_of(int rc)
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

static int settle(struct meta *m);

static int fail(struct meta *m, int rc, const char *what)
{
	log_msg(LOG_ERR, "metadata %s failed: %s", what, sqlite3_errmsg(m->db));
	return errno_of(rc);
}

/* The prepared statement @id, reset and with no bindings. */
static sqlite3_stmt *stmt(struct meta *m, int id)
{
	sqlite3_stmt *s = m->stmt[id];

	if (!s) {
		int rc = sqlite3_prepare_v3(m->db, sql_text[id], -1,
					    SQLITE_PREPARE_PERSISTENT,
					    &m->stmt[id], NULL);
		if (rc != SQLITE_OK) {
			log_msg(LOG_CRIT, "cannot prepare '%s': %s",
				sql_text[id], sqlite3_errmsg(m->db));
			return NULL;
		}
		return m->stmt[id];
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

#define STMT_OR_RETURN(var, m, id)           \
	sqlite3_stmt *var = stmt((m), (id)); \
	if (!var)                            \
	return -EIO

/* Step a statement that returns no rows. */
static int step_done(struct meta *m, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return fail(m, rc, what);
	return 0;
}

static int exec(struct meta *m, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(m->db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		log_msg(LOG_ERR, "metadata '%s' failed: %s", sql,
			err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return errno_of(rc);
	}
	return 0;
}

static int64_t pragma_int(struct meta *m, const char *sql)
{
	sqlite3_stmt *s;
	int64_t v = -1;

	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/*
 * Read every row of @sql: 0, or -EUCLEAN if a page is damaged. A query
 * that does not prepare (a table an older store lacks) reads nothing.
 */
static int rows_readable(struct meta *m, const char *sql)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -EUCLEAN;
}

void meta_objlist_init(struct meta_objlist *l)
{
	memset(l, 0, sizeof(*l));
}

void meta_objlist_release(struct meta_objlist *l)
{
	free(l->v);
	meta_objlist_init(l);
}

int meta_objlist_add(struct meta_objlist *l, int64_t id, uint32_t shard,
		     const char *name)
{
	if (array_reserve(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return -ENOMEM;
	l->v[l->n].id = id;
	l->v[l->n].shard = shard;
	snprintf(l->v[l->n].name, OBJNAME_MAX, "%s", name);
	l->n++;
	return 0;
}

static int64_t ts_to_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static struct timespec ns_to_ts(int64_t ns)
{
	struct timespec ts;

	ts.tv_sec = ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	if (ts.tv_nsec < 0) {
		ts.tv_nsec += 1000000000;
		ts.tv_sec--;
	}
	return ts;
}

static int create_schema(struct meta *m, uint32_t block_size)
{
	struct meta_inode root;
	int rc;

	rc = exec(m, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = exec(m, schema);
	if (!rc)
		rc = meta_config_set(m, "block_size", block_size);
	if (!rc)
		rc = meta_config_set(m, "next_ino", 16);
	if (!rc)
		rc = meta_config_set(m, "durable_seq", 0);
	if (!rc) {
		memset(&root, 0, sizeof(root));
		root.ino = 1;
		root.mode = S_IFDIR | 0755;
		root.nlink = 2;
		clock_gettime(CLOCK_REALTIME, &root.mtime);
		root.atime = root.ctime = root.mtime;
		rc = meta_inode_put(m, &root);
	}
	if (!rc)
		rc = exec(m, "PRAGMA application_id = 1413565529;"
			     "PRAGMA user_version = 1");
	if (rc) {
		exec(m, "ROLLBACK");
		return rc;
	}
	return exec(m, "COMMIT");
}

int meta_open(const char *path, bool create, uint32_t block_size,
	      struct meta **out)
{
	struct meta *m;
	int64_t app, ver, bs;
	int rc, flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	rc = sqlite3_open_v2(path, &m->db, flags, NULL);
	if (rc != SQLITE_OK) {
		log_msg(LOG_ERR, "cannot open metadata '%s': %s", path,
			m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(rc));
		rc = errno_of(rc);
		goto out_close;
	}
	sqlite3_extended_result_codes(m->db, 1);
	sqlite3_busy_timeout(m->db, 5000);
	/* one process owns the store (STORE/lock): no file locks per
	 * transaction, and the WAL index lives in memory */
	rc = exec(m, "PRAGMA locking_mode = EXCLUSIVE");
	if (rc)
		goto out_close;
	app = pragma_int(m, "PRAGMA application_id");
	ver = pragma_int(m, "PRAGMA user_version");
	if (app < 0 || ver < 0) {
		log_msg(LOG_ERR, "metadata '%s' is not a SQLite database: %s",
			path, sqlite3_errmsg(m->db));
		rc = -EUCLEAN;
		goto out_close;
	}
	if (app == 0 && ver == 0 &&
	    pragma_int(m, "SELECT count(*) FROM "
			  "sqlite_schema") == 0) {
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
	} else if (ver != META_FORMAT) {
		log_msg(LOG_ERR,
			"metadata '%s' has format version %" PRId64
			", this tallyfs reads version %d",
			path, ver, META_FORMAT);
		rc = -EPROTO;
		goto out_close;
	}
	/* before anything below writes (journal mode, new tables, shard
	 * 0's row): a store refused as damaged is left as it was */
	bs = pragma_int(m, "SELECT value FROM config WHERE key = 'block_size'");
	if (bs < 4096 || bs > (64 << 20) || (bs & (bs - 1))) {
		log_msg(LOG_ERR, "metadata '%s' is damaged: bad block size",
			path);
		rc = -EUCLEAN;
		goto out_close;
	}
	/* and the rest of what opening a store reads (small tables) */
	if (rows_readable(m, "SELECT * FROM config") ||
	    rows_readable(m, "SELECT * FROM shards")) {
		log_msg(LOG_ERR, "metadata '%s' is damaged: %s", path,
			sqlite3_errmsg(m->db));
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
	rc = exec(m,
		  "PRAGMA synchronous = NORMAL;"
		  "PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;"
		  "PRAGMA cache_size = -65536; PRAGMA recursive_triggers = ON;"
		  "PRAGMA journal_size_limit = 67108864");
	if (rc)
		goto out_close;
	/* the tables a store of an older version lacks, all or nothing */
	rc = exec(m, "BEGIN IMMEDIATE");
	if (!rc)
		rc = exec(m, gc_schema);
	if (!rc) {
		/* a store from before shard_usage: count its objects once */
		bool fill = pragma_int(m, "SELECT count(*) FROM sqlite_master "
					  "WHERE name = 'shard_usage'") == 0;

		rc = exec(m, shard_schema);
		if (!rc && fill)
			rc = exec(m, usage_fill);
	}
	if (!rc && pragma_int(m, "SELECT count(*) FROM sqlite_master WHERE "
				 "name = 'objects' AND "
				 "sql LIKE '%AUTOINCREMENT%'") == 0) {
		log_msg(LOG_NOTICE,
			"metadata '%s': object ids are never used "
			"again from now on (table rebuilt)",
			path);
		rc = exec(m, objects_upgrade);
		if (!rc)
			rc = exec(m, shard_schema);
	}
	if (rc) {
		/* SQLITE_ERROR: a table of that name is not the one expected */
		if ((sqlite3_errcode(m->db) & 0xff) == SQLITE_ERROR) {
			log_msg(LOG_ERR,
				"metadata '%s' is damaged: its tables are "
				"not those of tallyfs",
				path);
			rc = -EUCLEAN;
		}
		meta_rollback(m);
		goto out_close;
	}
	rc = exec(m, "COMMIT");
	/* last: it rewrites the header of a database not in WAL mode yet */
	if (!rc)
		rc = exec(m, "PRAGMA journal_mode = WAL");
	if (rc)
		goto out_close;
	*out = m;
	return 0;

out_close:
	sqlite3_close(m->db);
	free(m);
	return rc;
}

void meta_close(struct meta *m)
{
	int i;

	if (!m)
		return;
	for (i = 0; i < S_COUNT; i++)
		sqlite3_finalize(m->stmt[i]);
	for (i = 0; i < (int)m->nadhoc; i++)
		sqlite3_finalize(m->adhoc[i].s);
	free(m->zero);
	meta_objlist_release(&m->dead);
	if (sqlite3_close(m->db) != SQLITE_OK)
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
	STMT_OR_RETURN(s, m, S_BEGIN);

	return step_done(m, s, "begin");
}

int meta_commit(struct meta *m)
{
	size_t ndead = m->dead.n;
	int rc;

	if (m->fault_in > 0 && --m->fault_in == 0) {
		meta_rollback(m);
		log_msg(LOG_ERR, "metadata commit failed: injected %s",
			strerror(-m->fault_err));
		return m->fault_err;
	}
	rc = settle(m);
	if (!rc) {
		STMT_OR_RETURN(s, m, S_COMMIT);

		rc = step_done(m, s, "commit");
	}
	if (rc)
		m->dead.n = ndead; /* nothing of it was deleted */
	return rc;
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

void meta_inject_lookup(struct meta *m, unsigned nth, int err)
{
	m->lookup_fail = nth;
	m->lookup_err = err;
}

/* An injected failure of an object lookup (meta_inject_lookup()). */
static int lookup_fault(struct meta *m)
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

	/*
	 * synchronous cannot change inside a transaction: make the WAL
	 * durable with one more, tiny, transaction committed with FULL,
	 * whose sync covers every frame written before it.
	 */
	rc = exec(m, "PRAGMA synchronous = FULL");
	if (rc)
		return rc;
	rc = exec(m, "BEGIN IMMEDIATE;"
		     "INSERT INTO config(key, value) VALUES ('sync_seq', 1) "
		     "ON CONFLICT(key) DO UPDATE SET value = value + 1;"
		     "COMMIT");
	if (rc)
		exec(m, "ROLLBACK");
	exec(m, "PRAGMA synchronous = NORMAL");
	return rc;
}

void meta_rollback(struct meta *m)
{
	m->nzero = 0;
	if (!sqlite3_get_autocommit(m->db))
		exec(m, "ROLLBACK");
}

/*
 * Run prepared statement @id with text parameter @key; the first column
 * of its row goes to *val. -ENOENT when there is no row.
 */
static int int_by_text(struct meta *m, int id, const char *key, int64_t *val,
		       const char *what)
{
	STMT_OR_RETURN(s, m, id);
	int rc;

	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*val = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : fail(m, rc, what);
}

/* The same for statement @id with integer parameter @key. */
static int int_by_id(struct meta *m, int id, int64_t key, int64_t *val,
		     const char *what)
{
	STMT_OR_RETURN(s, m, id);
	int rc;

	sqlite3_bind_int64(s, 1, key);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*val = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : fail(m, rc, what);
}

int meta_config_get(struct meta *m, const char *key, int64_t *val)
{
	return int_by_text(m, S_CONFIG_GET, key, val, "config read");
}

int meta_config_set(struct meta *m, const char *key, int64_t val)
{
	STMT_OR_RETURN(s, m, S_CONFIG_SET);

	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, val);
	return step_done(m, s, "config write");
}

int meta_inode_get(struct meta *m, uint64_t ino, struct meta_inode *out)
{
	STMT_OR_RETURN(s, m, S_INODE_GET);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? -ENOENT : fail(m, rc, "inode read");
	}
	out->ino = ino;
	out->nspace = (uint64_t)sqlite3_column_int64(s, 0);
	out->mode = (uint32_t)sqlite3_column_int64(s, 1);
	out->uid = (uint32_t)sqlite3_column_int64(s, 2);
	out->gid = (uint32_t)sqlite3_column_int64(s, 3);
	out->nlink = (uint32_t)sqlite3_column_int64(s, 4);
	out->size = (uint64_t)sqlite3_column_int64(s, 5);
	out->rdev = (uint64_t)sqlite3_column_int64(s, 6);
	out->alloc = (uint64_t)sqlite3_column_int64(s, 7);
	out->atime = ns_to_ts(sqlite3_column_int64(s, 8));
	out->mtime = ns_to_ts(sqlite3_column_int64(s, 9));
	out->ctime = ns_to_ts(sqlite3_column_int64(s, 10));
	sqlite3_reset(s);
	return 0;
}

int meta_inode_put(struct meta *m, const struct meta_inode *in)
{
	STMT_OR_RETURN(s, m, S_INODE_PUT);

	sqlite3_bind_int64(s, 1, (int64_t)in->ino);
	sqlite3_bind_int64(s, 2, (int64_t)in->nspace);
	sqlite3_bind_int64(s, 3, in->mode);
	sqlite3_bind_int64(s, 4, in->uid);
	sqlite3_bind_int64(s, 5, in->gid);
	sqlite3_bind_int64(s, 6, in->nlink);
	sqlite3_bind_int64(s, 7, (int64_t)in->size);
	sqlite3_bind_int64(s, 8, (int64_t)in->rdev);
	sqlite3_bind_int64(s, 9, (int64_t)in->alloc);
	sqlite3_bind_int64(s, 10, ts_to_ns(&in->atime));
	sqlite3_bind_int64(s, 11, ts_to_ns(&in->mtime));
	sqlite3_bind_int64(s, 12, ts_to_ns(&in->ctime));
	return step_done(m, s, "inode write");
}

static int exec_ino(struct meta *m, int id, uint64_t ino, const char *what)
{
	STMT_OR_RETURN(s, m, id);

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	return step_done(m, s, what);
}

int meta_inode_delete(struct meta *m, uint64_t ino)
{
	int rc = exec_ino(m, S_INODE_DEL_X, ino, "xattr delete");

	return rc ? rc : exec_ino(m, S_INODE_DEL, ino, "inode delete");
}

int meta_max_ino(struct meta *m, uint64_t *max)
{
	int64_t v = pragma_int(m, "SELECT coalesce(max(ino), 0) FROM inodes");

	if (v < 0)
		return -EIO;
	*max = (uint64_t)v;
	return 0;
}

int meta_inode_orphans(struct meta *m, uint64_t **inos, size_t *n)
{
	STMT_OR_RETURN(s, m, S_ORPHANS);
	uint64_t *v = NULL;
	size_t cnt = 0;
	int rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		uint64_t *nv = realloc(v, (cnt + 1) * sizeof(*v));

		if (!nv) {
			free(v);
			sqlite3_reset(s);
			return -ENOMEM;
		}
		v = nv;
		v[cnt++] = (uint64_t)sqlite3_column_int64(s, 0);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return fail(m, rc, "orphan scan");
	}
	*inos = v;
	*n = cnt;
	return 0;
}

int meta_target_set(struct meta *m, uint64_t ino, const char *target)
{
	STMT_OR_RETURN(s, m, S_TARGET_SET);

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_blob(s, 2, target, (int)strlen(target), SQLITE_STATIC);
	return step_done(m, s, "symlink write");
}

int meta_target_get(struct meta *m, uint64_t ino, char **out)
{
	STMT_OR_RETURN(s, m, S_TARGET_GET);
	int rc, len;
	char *t;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? -ENOENT
					 : fail(m, rc, "symlink read");
	}
	len = sqlite3_column_bytes(s, 0);
	t = malloc((size_t)len + 1);
	if (!t) {
		sqlite3_reset(s);
		return -ENOMEM;
	}
	if (len)
		memcpy(t, sqlite3_column_blob(s, 0), (size_t)len);
	t[len] = '\0';
	sqlite3_reset(s);
	*out = t;
	return 0;
}

static void bind_name(sqlite3_stmt *s, int col, const char *name)
{
	sqlite3_bind_blob(s, col, name, (int)strlen(name), SQLITE_STATIC);
}

int meta_dentry_lookup(struct meta *m, uint64_t parent, const char *name,
		       uint64_t *ino)
{
	STMT_OR_RETURN(s, m, S_DENTRY_LOOKUP);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	bind_name(s, 2, name);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*ino = (uint64_t)sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? -ENOENT : fail(m, rc, "lookup");
}

static int dentry_exec(struct meta *m, int id, uint64_t parent,
		       const char *name, uint64_t ino, const char *what)
{
	STMT_OR_RETURN(s, m, id);

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	bind_name(s, 2, name);
	if (id != S_DENTRY_DELETE)
		sqlite3_bind_int64(s, 3, (int64_t)ino);
	return step_done(m, s, what);
}

int meta_dentry_insert(struct meta *m, uint64_t parent, const char *name,
		       uint64_t ino)
{
	return dentry_exec(m, S_DENTRY_INSERT, parent, name, ino,
			   "entry insert");
}

int meta_dentry_delete(struct meta *m, uint64_t parent, const char *name)
{
	return dentry_exec(m, S_DENTRY_DELETE, parent, name, 0, "entry delete");
}

int meta_dentry_set_ino(struct meta *m, uint64_t parent, const char *name,
			uint64_t ino)
{
	return dentry_exec(m, S_DENTRY_SET_INO, parent, name, ino,
			   "entry update");
}

int meta_dentry_move(struct meta *m, uint64_t parent, const char *name,
		     uint64_t newparent, const char *newname)
{
	STMT_OR_RETURN(s, m, S_DENTRY_MOVE);

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	bind_name(s, 2, name);
	sqlite3_bind_int64(s, 3, (int64_t)newparent);
	bind_name(s, 4, newname);
	return step_done(m, s, "entry move");
}

int meta_dir_empty(struct meta *m, uint64_t ino)
{
	STMT_OR_RETURN(s, m, S_DIR_EMPTY);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? 1 : fail(m, rc, "directory scan");
}

int meta_readdir(struct meta *m, uint64_t parent, int64_t after,
		 int (*fn)(void *ctx, int64_t cookie, const char *name,
			   uint64_t ino),
		 void *ctx)
{
	STMT_OR_RETURN(s, m, S_READDIR);
	char name[256];
	int rc, ret = 0;

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_int64(s, 2, after);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int len = sqlite3_column_bytes(s, 1);

		if (len <= 0 || len > 255)
			continue;
		memcpy(name, sqlite3_column_blob(s, 1), (size_t)len);
		name[len] = '\0';
		ret = fn(ctx, sqlite3_column_int64(s, 0), name,
			 (uint64_t)sqlite3_column_int64(s, 2));
		if (ret)
			break;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return fail(m, rc, "readdir");
	return ret;
}

int meta_blocks_load(struct meta *m, uint64_t ino, struct meta_bref **out,
		     size_t *n)
{
	STMT_OR_RETURN(s, m, S_BLOCKS_LOAD);
	struct meta_bref *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct meta_bref *b;
		const unsigned char *name;

		if (cnt == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct meta_bref *nv = realloc(v, ncap * sizeof(*v));

			if (!nv) {
				free(v);
				sqlite3_reset(s);
				return -ENOMEM;
			}
			v = nv;
			cap = ncap;
		}
		b = &v[cnt++];
		b->idx = (uint64_t)sqlite3_column_int64(s, 0);
		b->obj = sqlite3_column_int64(s, 1);
		b->shard = (uint32_t)sqlite3_column_int64(s, 2);
		name = sqlite3_column_text(s, 3);
		b->size = (uint32_t)sqlite3_column_int64(s, 4);
		if (!name) {
			log_msg(LOG_ERR,
				"inode %" PRIu64 " block %" PRIu64
				" names unknown object %" PRId64,
				ino, b->idx, b->obj);
			b->name[0] = '\0';
		} else {
			snprintf(b->name, OBJNAME_MAX, "%s", name);
		}
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return fail(m, rc, "block map read");
	}
	*out = v;
	*n = cnt;
	return 0;
}

/*
 * Add @delta to the count of object @id. A count that reaches zero or
 * below does not delete the row here: the object becomes a candidate,
 * settled at commit against the transaction's final state (a later
 * reference in the same transaction raises the count again). An unknown
 * object is a warning.
 */
static int obj_add(struct meta *m, int64_t id, int64_t delta)
{
	STMT_OR_RETURN(s, m, S_OBJ_ADD);
	int64_t count;
	int rc;

	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, delta);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(s);
		log_msg(LOG_WARNING,
			"refcount change %+" PRId64 " of unknown "
			"object %" PRId64 ": ignored, nothing deleted",
			delta, id);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return fail(m, rc, "refcount update");
	}
	count = sqlite3_column_int64(s, 0);
	/* RETURNING statements finish their work on the first step. */
	sqlite3_reset(s);
	if (count > 0)
		return 0;
	if (array_reserve(&m->zero, &m->zcap, m->nzero + 1, sizeof(*m->zero)))
		return -ENOMEM;
	m->zero[m->nzero++] = id;
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The number of block references to object @id (through blocks_obj). */
static int obj_refs(struct meta *m, int64_t id, int64_t *refs)
{
	return int_by_id(m, S_OBJ_REFS, id, refs, "reference count");
}

/*
 * Settle the zero-count candidates of the transaction (before its
 * COMMIT): a count raised again keeps the object; a count that
 * disagrees with the references that name it is drift, corrected to
 * them and logged; a row at zero that nothing names is deleted and its
 * object listed for meta_dead_take(). A row below zero that nothing
 * names is deleted but its file is left to GC: the count was wrong, so
 * the deletion waits for GC's own check and grace.
 */
static int settle(struct meta *m)
{
	size_t i;
	int rc = 0;

	if (m->nzero)
		qsort(m->zero, m->nzero, sizeof(*m->zero), cmp_id);
	for (i = 0; i < m->nzero && !rc; i++) {
		char name[OBJNAME_MAX];
		int64_t id = m->zero[i], count, refs;
		uint32_t shard;

		if (i && m->zero[i - 1] == id)
			continue;
		{
			STMT_OR_RETURN(s, m, S_OBJ_GET);

			sqlite3_bind_int64(s, 1, id);
			rc = sqlite3_step(s);
			if (rc == SQLITE_ROW) {
				count = sqlite3_column_int64(s, 0);
				snprintf(name, sizeof(name), "%s",
					 (const char *)sqlite3_column_text(s,
									   1));
				shard = (uint32_t)sqlite3_column_int64(s, 2);
			}
			sqlite3_reset(s);
			if (rc == SQLITE_DONE) {
				rc = 0;
				continue; /* deleted meanwhile */
			}
			if (rc != SQLITE_ROW)
				return fail(m, rc, "object read");
			rc = 0;
		}
		if (count > 0)
			continue; /* named again in this transaction */
		rc = obj_refs(m, id, &refs);
		if (rc)
			break;
		if (refs > 0) {
			m->drift++;
			log_msg(LOG_WARNING,
				"object '%s' count %" PRId64 " but %" PRId64
				" reference(s) name it: count corrected, "
				"nothing deleted",
				name, count, refs);
			rc = meta_obj_set_count(m, id, refs);
			continue;
		}
		rc = exec_ino(m, S_OBJ_DELETE, (uint64_t)id, "object delete");
		if (rc)
			break;
		if (count < 0) {
			m->drift++;
			log_msg(LOG_WARNING,
				"object '%s' count went below zero (%" PRId64
				"): row deleted, its file left to GC",
				name, count);
			continue;
		}
		rc = meta_objlist_add(&m->dead, id, shard, name);
	}
	m->nzero = 0;
	return rc;
}

static int obj_find(struct meta *m, const char *name, int64_t *id)
{
	return int_by_text(m, S_OBJ_FIND, name, id, "object lookup");
}

int meta_obj_exists(struct meta *m, const char *name)
{
	int64_t id;
	int rc = obj_find(m, name, &id);

	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}

int meta_block_set(struct meta *m, uint64_t ino, uint64_t idx, const char *name,
		   uint32_t shard, uint32_t size, struct meta_bref *out)
{
	int64_t old = 0, id = 0;
	bool had = false;
	int rc;

	{
		STMT_OR_RETURN(s, m, S_BLOCK_GET);

		sqlite3_bind_int64(s, 1, (int64_t)ino);
		sqlite3_bind_int64(s, 2, (int64_t)idx);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			old = sqlite3_column_int64(s, 0);
			had = true;
		}
		sqlite3_reset(s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return fail(m, rc, "block read");
		rc = 0;
	}
	if (name) {
		rc = obj_find(m, name, &id);
		if (rc == 0) {
			int64_t where;

			/* a reference names where the object is now */
			rc = int_by_id(m, S_OBJ_SHARD, id, &where,
				       "object shard");
			if (!rc)
				shard = (uint32_t)where;
		}
		if (rc == 0 && !(had && old == id)) {
			rc = obj_add(m, id, 1);
		} else if (rc == -ENOENT) {
			STMT_OR_RETURN(s, m, S_OBJ_INSERT);

			sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
			sqlite3_bind_int64(s, 2, shard);
			sqlite3_bind_int64(s, 3, size);
			rc = step_done(m, s, "object insert");
			id = sqlite3_last_insert_rowid(m->db);
		}
		if (rc)
			return rc;
		{
			STMT_OR_RETURN(s, m, S_BLOCK_PUT);

			sqlite3_bind_int64(s, 1, (int64_t)ino);
			sqlite3_bind_int64(s, 2, (int64_t)idx);
			sqlite3_bind_int64(s, 3, id);
			sqlite3_bind_int64(s, 4, shard);
			rc = step_done(m, s, "block write");
		}
	} else if (had) {
		STMT_OR_RETURN(s, m, S_BLOCK_DEL);

		sqlite3_bind_int64(s, 1, (int64_t)ino);
		sqlite3_bind_int64(s, 2, (int64_t)idx);
		rc = step_done(m, s, "block delete");
	}
	if (rc)
		return rc;
	if (had && old != id)
		rc = obj_add(m, old, -1);
	if (!rc && out && name) {
		out->idx = idx;
		out->obj = id;
		out->shard = shard;
		out->size = size;
		snprintf(out->name, OBJNAME_MAX, "%s", name);
	}
	return rc;
}

int meta_blocks_drop(struct meta *m, uint64_t ino, uint64_t from)
{
	struct {
		int64_t obj, n;
	} *v = NULL;
	size_t cnt = 0, i;
	int rc;

	{
		STMT_OR_RETURN(s, m, S_DROP_LIST);

		sqlite3_bind_int64(s, 1, (int64_t)ino);
		sqlite3_bind_int64(s, 2, (int64_t)from);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			void *nv = realloc(v, (cnt + 1) * sizeof(*v));

			if (!nv) {
				sqlite3_reset(s);
				free(v);
				return -ENOMEM;
			}
			v = nv;
			v[cnt].obj = sqlite3_column_int64(s, 0);
			v[cnt].n = sqlite3_column_int64(s, 1);
			cnt++;
		}
		sqlite3_reset(s);
		if (rc != SQLITE_DONE) {
			free(v);
			return fail(m, rc, "block scan");
		}
	}
	rc = 0;
	for (i = 0; i < cnt && !rc; i++)
		rc = obj_add(m, v[i].obj, -v[i].n);
	free(v);
	if (!rc) {
		STMT_OR_RETURN(s, m, S_DROP_DEL);

		sqlite3_bind_int64(s, 1, (int64_t)ino);
		sqlite3_bind_int64(s, 2, (int64_t)from);
		rc = step_done(m, s, "block delete");
	}
	return rc;
}

static int exec_pair(struct meta *m, int id, uint64_t a, uint64_t b,
		     const char *what)
{
	STMT_OR_RETURN(s, m, id);

	sqlite3_bind_int64(s, 1, (int64_t)a);
	sqlite3_bind_int64(s, 2, (int64_t)b);
	return step_done(m, s, what);
}

int meta_blocks_copy(struct meta *m, uint64_t src, uint64_t dst)
{
	int rc = exec_pair(m, S_COPY_BLOCKS, src, dst, "block copy");

	if (!rc)
		rc = exec_ino(m, S_COPY_COUNTS, src, "refcount update");
	if (!rc)
		rc = exec_pair(m, S_COPY_XATTRS, src, dst, "xattr copy");
	return rc;
}

int meta_refcounts(struct meta *m, uint64_t ino, uint64_t **counts, size_t *n)
{
	STMT_OR_RETURN(s, m, S_REFCOUNTS);
	uint64_t *v = NULL;
	size_t cnt = 0;
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		uint64_t *nv = realloc(v, (cnt + 1) * sizeof(*v));

		if (!nv) {
			free(v);
			sqlite3_reset(s);
			return -ENOMEM;
		}
		v = nv;
		v[cnt++] = (uint64_t)sqlite3_column_int64(s, 0);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return fail(m, rc, "refcount read");
	}
	*counts = v;
	*n = cnt;
	return 0;
}

int meta_branch(struct meta *m, uint64_t src_root, const char *dst_name,
		uint64_t *next_ino, uint64_t *root, uint64_t *count)
{
	static const char *const steps[] = {
		"CREATE TEMP TABLE IF NOT EXISTS branch_map("
		"old INTEGER PRIMARY KEY, new INTEGER NOT NULL)",
		"DELETE FROM temp.branch_map",
		"INSERT INTO temp.branch_map SELECT ino, ?2 - 1 + "
		"row_number() OVER (ORDER BY ino) FROM inodes "
		"WHERE nspace = ?1 AND nlink > 0",
		"INSERT INTO inodes(ino, nspace, mode, uid, gid, nlink, size, "
		"rdev, alloc, atime, mtime, ctime, target) SELECT m.new, "
		"(SELECT new FROM temp.branch_map WHERE old = ?1), mode, uid, "
		"gid, nlink, size, rdev, alloc, atime, mtime, ctime, target "
		"FROM inodes i JOIN temp.branch_map m ON i.ino = m.old",
		"INSERT INTO dentries(parent, name, ino) SELECT p.new, d.name, "
		"c.new FROM temp.branch_map p JOIN dentries d "
		"ON d.parent = p.old JOIN temp.branch_map c ON c.old = d.ino",
		/* CROSS JOIN: the map drives, so a branch reads the blocks
		 * of its inodes by key, never all the store's (the planner
		 * has no statistics, and would scan blocks_obj) */
		"UPDATE objects SET refcount = refcount + c.n FROM "
		"(SELECT b.obj AS obj, count(*) AS n FROM temp.branch_map m "
		"CROSS JOIN blocks b ON b.ino = m.old GROUP BY b.obj) AS c "
		"WHERE objects.id = c.obj",
		"INSERT INTO blocks(ino, idx, obj, shard) SELECT m.new, b.idx, "
		"b.obj, b.shard FROM temp.branch_map m CROSS JOIN blocks b "
		"ON b.ino = m.old",
		"INSERT INTO xattrs(ino, name, value) SELECT m.new, x.name, "
		"x.value FROM temp.branch_map m JOIN xattrs x "
		"ON x.ino = m.old",
	};
	uint64_t copied = 0;
	size_t i;
	int rc = 0;

	for (i = 0; i < sizeof(steps) / sizeof(steps[0]) && !rc; i++) {
		sqlite3_stmt *s;

		if (sqlite3_prepare_v2(m->db, steps[i], -1, &s, NULL) !=
		    SQLITE_OK)
			return fail(m, SQLITE_ERROR, "branch");
		if (sqlite3_bind_parameter_count(s) >= 1)
			sqlite3_bind_int64(s, 1, (int64_t)src_root);
		if (sqlite3_bind_parameter_count(s) >= 2)
			sqlite3_bind_int64(s, 2, (int64_t)*next_ino);
		rc = sqlite3_step(s);
		rc = (rc == SQLITE_DONE) ? 0 : fail(m, rc, "branch");
		if (i == 2)
			copied = (uint64_t)sqlite3_changes(m->db);
		sqlite3_finalize(s);
	}
	if (rc)
		return rc;
	if (copied == 0)
		return -ENOENT;
	/* The source root has the smallest number in its namespace. */
	*root = *next_ino;
	rc = meta_dentry_insert(m, 1, dst_name, *root);
	if (rc)
		return rc;
	*next_ino += copied;
	*count = copied;
	return meta_config_set(m, "next_ino", (int64_t)*next_ino);
}

int meta_xattr_get(struct meta *m, uint64_t ino, const char *name, void **out,
		   size_t *len)
{
	STMT_OR_RETURN(s, m, S_XATTR_GET);
	int rc, n;
	void *v;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	bind_name(s, 2, name);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? -ENODATA : fail(m, rc, "xattr read");
	}
	n = sqlite3_column_bytes(s, 0);
	v = malloc(n ? (size_t)n : 1);
	if (!v) {
		sqlite3_reset(s);
		return -ENOMEM;
	}
	if (n)
		memcpy(v, sqlite3_column_blob(s, 0), (size_t)n);
	sqlite3_reset(s);
	*out = v;
	*len = (size_t)n;
	return 0;
}

int meta_xattr_set(struct meta *m, uint64_t ino, const char *name,
		   const void *val, size_t len, int flags)
{
	int id = (flags & XATTR_CREATE)	   ? S_XATTR_INSERT
		 : (flags & XATTR_REPLACE) ? S_XATTR_REPLACE
					   : S_XATTR_UPSERT;
	STMT_OR_RETURN(s, m, id);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	bind_name(s, 2, name);
	sqlite3_bind_blob(s, 3, len ? val : "", (int)len, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return -EEXIST;
	if (rc != SQLITE_DONE)
		return fail(m, rc, "xattr write");
	if (id == S_XATTR_REPLACE && sqlite3_changes(m->db) == 0)
		return -ENODATA;
	return 0;
}

int meta_xattr_remove(struct meta *m, uint64_t ino, const char *name)
{
	STMT_OR_RETURN(s, m, S_XATTR_DEL);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	bind_name(s, 2, name);
	rc = step_done(m, s, "xattr delete");
	if (!rc && sqlite3_changes(m->db) == 0)
		return -ENODATA;
	return rc;
}

int meta_xattr_list(struct meta *m, uint64_t ino, char **out, size_t *len)
{
	STMT_OR_RETURN(s, m, S_XATTR_LIST);
	char *v = NULL;
	size_t n = 0;
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int l = sqlite3_column_bytes(s, 0);
		char *nv = realloc(v, n + (size_t)l + 1);

		if (!nv) {
			free(v);
			sqlite3_reset(s);
			return -ENOMEM;
		}
		v = nv;
		memcpy(v + n, sqlite3_column_blob(s, 0), (size_t)l);
		n += (size_t)l;
		v[n++] = '\0';
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return fail(m, rc, "xattr list");
	}
	*out = v;
	*len = n;
	return 0;
}

/* The one number @sql yields (a negative one reads as 0). */
static int query_u64(struct meta *m, const char *sql, uint64_t *out)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return fail(m, SQLITE_ERROR, "statistics");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		int64_t v = sqlite3_column_int64(s, 0);

		*out = v < 0 ? 0 : (uint64_t)v;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : fail(m, rc, "statistics");
}

int meta_stats(struct meta *m, struct meta_stats *out)
{
	int64_t seq = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = query_u64(m, "SELECT count(*) FROM dentries WHERE parent = 1",
		       &out->namespaces);
	if (!rc)
		rc = meta_statfs(m, &out->inodes, &out->bytes_stored);
	/* kept per shard by triggers: no scan of the object table */
	if (!rc)
		rc = query_u64(m,
			       "SELECT coalesce(sum(objects), 0) "
			       "FROM shard_usage",
			       &out->objects);
	if (!rc)
		rc = query_u64(m,
			       "SELECT coalesce(sum(size * refcount), 0) "
			       "FROM objects",
			       &out->bytes_referenced);
	if (!rc)
		rc = query_u64(m,
			       "SELECT coalesce(sum(size), 0) FROM inodes "
			       "WHERE (mode & 61440) = 32768",
			       &out->bytes_logical);
	if (!rc)
		rc = meta_config_get(m, "durable_seq", &seq);
	out->durable_seq = (uint64_t)seq;
	return rc;
}

int meta_statfs(struct meta *m, uint64_t *inodes, uint64_t *bytes_stored)
{
	int rc = query_u64(m, "SELECT value FROM config WHERE key = 'inodes'",
			   inodes);

	if (!rc)
		rc = query_u64(m,
			       "SELECT coalesce(sum(bytes), 0) "
			       "FROM shard_usage",
			       bytes_stored);
	return rc;
}

/* The check of the ids in [@from, @to], in one statement: one snapshot. */
static int check_range(struct meta *m, int64_t from, int64_t to,
		       int (*fn)(void *ctx, const struct meta_check *c),
		       void *ctx)
{
	STMT_OR_RETURN(s, m, S_CHECK);
	struct meta_check c;
	int rc, ret = 0;

	sqlite3_bind_int64(s, 1, from);
	sqlite3_bind_int64(s, 2, to);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *name = sqlite3_column_text(s, 1);

		c.id = sqlite3_column_int64(s, 0);
		snprintf(c.name, sizeof(c.name), "%s",
			 name ? (const char *)name : "");
		c.shard = (uint32_t)sqlite3_column_int64(s, 2);
		c.stored = sqlite3_column_int64(s, 3);
		c.truth = sqlite3_column_int64(s, 4);
		ret = fn(ctx, &c);
		if (ret)
			break;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return fail(m, rc, "refcount check");
	return ret;
}

int meta_check_counts(struct meta *m,
		      int (*fn)(void *ctx, const struct meta_check *c),
		      void *ctx)
{
	return check_range(m, INT64_MIN, INT64_MAX, fn, ctx);
}

int meta_check_chunk(struct meta *m, int64_t from, unsigned limit,
		     int64_t *next,
		     int (*fn)(void *ctx, const struct meta_check *c),
		     void *ctx)
{
	int64_t to = INT64_MAX;
	int rc;

	assert(limit > 0);
	{
		STMT_OR_RETURN(s, m, S_CHECK_END);

		sqlite3_bind_int64(s, 1, from);
		sqlite3_bind_int64(s, 2, limit);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			to = sqlite3_column_int64(s, 0) - 1;
		sqlite3_reset(s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return fail(m, rc, "refcount check");
	}
	rc = check_range(m, from, to, fn, ctx);
	if (rc)
		return rc;
	if (to == INT64_MAX)
		return 0;
	*next = to + 1;
	return 1;
}

int meta_obj_set_count(struct meta *m, int64_t id, int64_t count)
{
	if (count <= 0)
		return exec_ino(m, S_OBJ_DELETE, (uint64_t)id, "object delete");
	{
		STMT_OR_RETURN(s, m, S_OBJ_SET);

		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, count);
		return step_done(m, s, "refcount repair");
	}
}

/* Each object row of @s (id, name, shard, refcount) to @fn, *@last the
 * last id; the callback's error, or the number of rows. */
static int object_rows(struct meta *m, sqlite3_stmt *s, int64_t *last,
		       int (*fn)(void *ctx, int64_t id, const char *name,
				 uint32_t shard, int64_t refcount),
		       void *ctx)
{
	int rc, ret = 0, n = 0;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		*last = sqlite3_column_int64(s, 0);
		ret = fn(ctx, *last, (const char *)sqlite3_column_text(s, 1),
			 (uint32_t)sqlite3_column_int64(s, 2),
			 sqlite3_column_int64(s, 3));
		if (ret)
			break;
		n++;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return fail(m, rc, "object scan");
	return ret ? ret : n;
}

int meta_objects(struct meta *m,
		 int (*fn)(void *ctx, int64_t id, const char *name,
			   uint32_t shard, int64_t refcount),
		 void *ctx)
{
	STMT_OR_RETURN(s, m, S_OBJECTS);
	int64_t last;
	int rc = object_rows(m, s, &last, fn, ctx);

	return rc < 0 ? rc : 0;
}

int meta_objects_after(struct meta *m, int64_t after, unsigned limit,
		       int64_t *last,
		       int (*fn)(void *ctx, int64_t id, const char *name,
				 uint32_t shard, int64_t refcount),
		       void *ctx)
{
	STMT_OR_RETURN(s, m, S_OBJECTS_AFTER);

	sqlite3_bind_int64(s, 1, after);
	sqlite3_bind_int64(s, 2, limit);
	return object_rows(m, s, last, fn, ctx);
}

int meta_mark_get(struct meta *m, const char *name, int64_t *since)
{
	return int_by_text(m, S_MARK_GET, name, since, "gc mark read");
}

int meta_mark_put(struct meta *m, const char *name, uint32_t shard,
		  int64_t since)
{
	STMT_OR_RETURN(s, m, S_MARK_PUT);

	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, shard);
	sqlite3_bind_int64(s, 3, since);
	return step_done(m, s, "gc mark write");
}

int meta_mark_del(struct meta *m, const char *name)
{
	STMT_OR_RETURN(s, m, S_MARK_DEL);

	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	return step_done(m, s, "gc mark delete");
}

int meta_marks(struct meta *m, int (*fn)(void *ctx, const char *name),
	       void *ctx)
{
	STMT_OR_RETURN(s, m, S_MARK_LIST);
	int rc, ret = 0;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		ret = fn(ctx, (const char *)sqlite3_column_text(s, 0));
		if (ret)
			break;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return fail(m, rc, "gc mark scan");
	return ret;
}

int meta_marks_after(struct meta *m, const char *after, unsigned limit,
		     int (*fn)(void *ctx, const char *name, int64_t since),
		     void *ctx)
{
	STMT_OR_RETURN(s, m, S_MARK_RANGE);
	int rc, ret = 0, n = 0;

	sqlite3_bind_text(s, 1, after, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, limit);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		ret = fn(ctx, (const char *)sqlite3_column_text(s, 0),
			 sqlite3_column_int64(s, 1));
		if (ret)
			break;
		n++;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return fail(m, rc, "gc mark scan");
	return ret ? ret : n;
}

int meta_gc_log_put(struct meta *m, const struct meta_gc_event *e)
{
	STMT_OR_RETURN(s, m, S_LOG_PUT);

	sqlite3_bind_int64(s, 1, e->at);
	sqlite3_bind_int64(s, 2, e->dry_run);
	sqlite3_bind_int64(s, 3, (int64_t)e->checked);
	sqlite3_bind_int64(s, 4, (int64_t)e->live);
	sqlite3_bind_int64(s, 5, (int64_t)e->unreferenced);
	sqlite3_bind_int64(s, 6, (int64_t)e->collected);
	sqlite3_bind_int64(s, 7, (int64_t)e->preserved);
	sqlite3_bind_int64(s, 8, (int64_t)e->bytes_freed);
	sqlite3_bind_int64(s, 9, (int64_t)e->drift);
	sqlite3_bind_int64(s, 10, (int64_t)e->nodes);
	sqlite3_bind_int64(s, 11, e->duration_ms);
	return step_done(m, s, "gc log write");
}

int meta_gc_log(struct meta *m, struct meta_gc_event *v, size_t max, size_t *n)
{
	STMT_OR_RETURN(s, m, S_LOG_LAST);
	size_t cnt = 0;
	int rc = SQLITE_DONE;

	sqlite3_bind_int64(s, 1, (int64_t)max);
	while (cnt < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct meta_gc_event *e = &v[cnt++];

		e->at = sqlite3_column_int64(s, 0);
		e->dry_run = (int)sqlite3_column_int64(s, 1);
		e->checked = (uint64_t)sqlite3_column_int64(s, 2);
		e->live = (uint64_t)sqlite3_column_int64(s, 3);
		e->unreferenced = (uint64_t)sqlite3_column_int64(s, 4);
		e->collected = (uint64_t)sqlite3_column_int64(s, 5);
		e->preserved = (uint64_t)sqlite3_column_int64(s, 6);
		e->bytes_freed = (uint64_t)sqlite3_column_int64(s, 7);
		e->drift = (uint64_t)sqlite3_column_int64(s, 8);
		e->nodes = (uint64_t)sqlite3_column_int64(s, 9);
		e->duration_ms = sqlite3_column_int64(s, 10);
	}
	if (cnt < max && rc != SQLITE_DONE) {
		sqlite3_reset(s);
		return fail(m, rc, "gc log read");
	}
	sqlite3_reset(s);
	*n = cnt;
	return 0;
}

/* Run @sql with up to two integer/text parameters; no rows expected. */
static int exec_bind(struct meta *m, const char *sql, const char *text,
		     int64_t a, int64_t b, const char *what)
{
	sqlite3_stmt *s;
	int rc, i = 1;

	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return fail(m, SQLITE_ERROR, what);
	if (text)
		sqlite3_bind_blob(s, i++, text, (int)strlen(text),
				  SQLITE_TRANSIENT);
	if (sqlite3_bind_parameter_count(s) >= i)
		sqlite3_bind_int64(s, i++, a);
	if (sqlite3_bind_parameter_count(s) >= i)
		sqlite3_bind_int64(s, i, b);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : fail(m, rc, what);
}

/* Run @sql (?1 = @key, ?2 = a name) for each of @names. */
static int insert_names(struct meta *m, const char *sql, int64_t key,
			const char *const *names, size_t n, const char *what)
{
	sqlite3_stmt *s;
	size_t i;
	int rc = 0;

	if (n == 0)
		return 0;
	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return fail(m, SQLITE_ERROR, what);
	for (i = 0; i < n && !rc; i++) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, key);
		sqlite3_bind_text(s, 2, names[i], -1, SQLITE_STATIC);
		rc = sqlite3_step(s);
		rc = rc == SQLITE_DONE ? 0 : fail(m, rc, what);
	}
	sqlite3_finalize(s);
	return rc;
}

int meta_node_report(struct meta *m, int64_t node, int64_t at,
		     const char *const *names, size_t n)
{
	int rc;

	rc = exec_bind(m,
		       "INSERT OR REPLACE INTO node_reports(node, "
		       "reported_at) VALUES (?1, ?2)",
		       NULL, node, at, "node report");
	if (!rc)
		rc = exec_bind(m, "DELETE FROM node_objects WHERE node = ?1",
			       NULL, node, 0, "node report");
	if (rc)
		return rc;
	return insert_names(m,
			    "INSERT OR IGNORE INTO node_objects(node, name) "
			    "VALUES (?1, ?2)",
			    node, names, n, "node report");
}

int meta_node_remove(struct meta *m, int64_t node)
{
	int rc = exec_bind(m, "DELETE FROM node_objects WHERE node = ?1", NULL,
			   node, 0, "node removal");

	return rc ? rc
		  : exec_bind(m, "DELETE FROM node_reports WHERE node = ?1",
			      NULL, node, 0, "node removal");
}

int meta_nodes_prune(struct meta *m, int64_t before, uint64_t *pruned)
{
	int rc = exec_bind(m,
			   "DELETE FROM node_objects WHERE node IN "
			   "(SELECT node FROM node_reports WHERE "
			   "reported_at < ?1)",
			   NULL, before, 0, "node prune");

	if (!rc)
		rc = exec_bind(m,
			       "DELETE FROM node_reports WHERE "
			       "reported_at < ?1",
			       NULL, before, 0, "node prune");
	if (!rc)
		*pruned = (uint64_t)sqlite3_changes(m->db);
	return rc;
}

/* Call @fn for each row of a one-text-column query. */
/*
 * Each text of the first column of @sql's rows to @fn. Parameter ?1 is
 * bound to @text if not NULL, else to *@num if @num is not NULL: values
 * are bound, never formatted into the statement.
 */
static int each_name(struct meta *m, const char *sql, const char *text,
		     const int64_t *num, int (*fn)(void *ctx, const char *name),
		     void *ctx)
{
	sqlite3_stmt *s;
	int rc, ret = 0;

	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return fail(m, SQLITE_ERROR, "scan");
	if (text)
		sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
	else if (num)
		sqlite3_bind_int64(s, 1, *num);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int len = sqlite3_column_bytes(s, 0);
		char name[4096];

		if (len < 0 || len >= (int)sizeof(name))
			continue;
		memcpy(name, sqlite3_column_blob(s, 0), (size_t)len);
		name[len] = '\0';
		ret = fn(ctx, name);
		if (ret)
			break;
	}
	sqlite3_finalize(s);
	if (!ret && rc != SQLITE_DONE)
		return fail(m, rc, "scan");
	return ret;
}

int meta_nodes_count(struct meta *m, uint64_t *n)
{
	int64_t v = pragma_int(m, "SELECT count(*) FROM node_reports");

	if (v < 0)
		return -EIO;
	*n = (uint64_t)v;
	return 0;
}

int meta_protected_names(struct meta *m, int (*fn)(void *ctx, const char *name),
			 void *ctx)
{
	return each_name(m,
			 "SELECT name FROM node_objects UNION "
			 "SELECT name FROM pin_objects UNION "
			 "SELECT name FROM moves",
			 NULL, NULL, fn, ctx);
}

void meta_set_self(struct meta *m, int64_t node)
{
	m->self = node;
}

int meta_name_protected(struct meta *m, const char *name, bool moves,
			bool not_mine)
{
	STMT_OR_RETURN(s, m, moves ? S_PROTECTED : S_PROTECTED_NOMOVE);
	int rc = lookup_fault(m);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (not_mine && m->self)
		sqlite3_bind_int64(s, 2, m->self);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : fail(m, rc, "protection lookup");
}

int meta_pin_add(struct meta *m, const char *path, int64_t at,
		 const char *const *names, size_t n)
{
	int64_t id;
	int rc;

	rc = exec_bind(m, "INSERT INTO pins(path, created) VALUES (?1, ?2)",
		       path, at, 0, "pin");
	if (rc)
		return rc;
	id = sqlite3_last_insert_rowid(m->db);
	return insert_names(m,
			    "INSERT OR IGNORE INTO pin_objects(pin, name) "
			    "VALUES (?1, ?2)",
			    id, names, n, "pin");
}

int meta_pin_remove(struct meta *m, const char *path)
{
	int rc = exec_bind(m,
			   "DELETE FROM pin_objects WHERE pin IN "
			   "(SELECT id FROM pins WHERE path = ?1)",
			   path, 0, 0, "unpin");

	if (!rc)
		rc = exec_bind(m, "DELETE FROM pins WHERE path = ?1", path, 0,
			       0, "unpin");
	if (!rc && sqlite3_changes(m->db) == 0)
		return -ENOENT;
	return rc;
}

int meta_pins(struct meta *m, int (*fn)(void *ctx, const char *path), void *ctx)
{
	return each_name(m, "SELECT path FROM pins ORDER BY path", NULL, NULL,
			 fn, ctx);
}

int meta_nspace_objects(struct meta *m, uint64_t nspace,
			int (*fn)(void *ctx, const char *name), void *ctx)
{
	int64_t ns = (int64_t)nspace;

	return each_name(
		m,
		"SELECT DISTINCT o.name FROM inodes i JOIN blocks b ON "
		"b.ino = i.ino JOIN objects o ON o.id = b.obj WHERE "
		"i.nspace = ?1",
		NULL, &ns, fn, ctx);
}

int meta_obj_referenced(struct meta *m, int64_t id)
{
	int64_t refs;
	int rc = lookup_fault(m);

	if (!rc)
		rc = obj_refs(m, id, &refs);
	return rc ? rc : refs > 0;
}

int meta_du(struct meta *m, uint64_t nspace, struct meta_du *out)
{
	static const char *const sql[] = {
		"SELECT count(*), coalesce(sum(size), 0) FROM inodes "
		"WHERE nspace = ?1 AND (mode & 61440) = 32768",
		"SELECT count(*), coalesce(sum(o.size), 0), "
		"coalesce(sum(CASE WHEN c.n >= o.refcount THEN o.size "
		"ELSE 0 END), 0), "
		"coalesce(sum(CASE WHEN c.n >= o.refcount AND NOT EXISTS "
		"(SELECT 1 FROM pin_objects p WHERE p.name = o.name) "
		"THEN o.size ELSE 0 END), 0) "
		"FROM (SELECT b.obj AS obj, count(*) AS n FROM blocks b "
		"JOIN inodes i ON i.ino = b.ino WHERE i.nspace = ?1 "
		"GROUP BY b.obj) AS c JOIN objects o ON o.id = c.obj",
	};
	int64_t v[2][4];
	size_t q;

	memset(v, 0, sizeof(v));
	for (q = 0; q < 2; q++) {
		sqlite3_stmt *s;
		int rc, k;

		if (sqlite3_prepare_v2(m->db, sql[q], -1, &s, NULL) !=
		    SQLITE_OK)
			return fail(m, SQLITE_ERROR, "du");
		sqlite3_bind_int64(s, 1, (int64_t)nspace);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			for (k = 0; k < sqlite3_column_count(s) && k < 4; k++)
				v[q][k] = sqlite3_column_int64(s, k);
		sqlite3_finalize(s);
		if (rc != SQLITE_ROW)
			return fail(m, rc, "du");
	}
	out->files = (uint64_t)v[0][0];
	out->bytes_logical = (uint64_t)v[0][1];
	out->objects = (uint64_t)v[1][0];
	out->bytes_referenced = (uint64_t)v[1][1];
	out->bytes_exclusive = (uint64_t)v[1][2];
	out->bytes_reclaimable = (uint64_t)v[1][3];
	return 0;
}

int meta_object_info(struct meta *m, const char *name, int64_t *id,
		     uint32_t *shard, uint64_t *size, int64_t *refcount)
{
	sqlite3_stmt *s;
	int rc = lookup_fault(m);

	if (rc)
		return rc;
	if (sqlite3_prepare_v2(m->db,
			       "SELECT id, shard, size, refcount "
			       "FROM objects WHERE name = ?1",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(m, SQLITE_ERROR, "object info");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(s, 0);
		*shard = (uint32_t)sqlite3_column_int64(s, 1);
		*size = (uint64_t)sqlite3_column_int64(s, 2);
		*refcount = sqlite3_column_int64(s, 3);
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : fail(m, rc, "object info");
}

int meta_object_holders(struct meta *m, int64_t id,
			int (*fn)(void *ctx, const char *nspace, uint64_t refs,
				  uint64_t inodes),
			void *ctx)
{
	sqlite3_stmt *s;
	int rc, ret = 0;

	if (sqlite3_prepare_v2(
		    m->db,
		    "SELECT d.name, count(*), count(DISTINCT b.ino) "
		    "FROM blocks b JOIN inodes i ON i.ino = b.ino "
		    "LEFT JOIN dentries d ON d.parent = 1 AND d.ino = i.nspace "
		    "WHERE b.obj = ?1 GROUP BY i.nspace ORDER BY d.name",
		    -1, &s, NULL) != SQLITE_OK)
		return fail(m, SQLITE_ERROR, "object holders");
	sqlite3_bind_int64(s, 1, id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		char ns[256] = "(unlinked)";
		int len = sqlite3_column_bytes(s, 0);

		if (sqlite3_column_type(s, 0) != SQLITE_NULL && len > 0 &&
		    len < (int)sizeof(ns)) {
			memcpy(ns, sqlite3_column_blob(s, 0), (size_t)len);
			ns[len] = '\0';
		}
		ret = fn(ctx, ns, (uint64_t)sqlite3_column_int64(s, 1),
			 (uint64_t)sqlite3_column_int64(s, 2));
		if (ret)
			break;
	}
	sqlite3_finalize(s);
	if (!ret && rc != SQLITE_DONE)
		return fail(m, rc, "object holders");
	return ret;
}

int meta_object_pinners(struct meta *m, const char *name,
			int (*fn)(void *ctx, const char *what), void *ctx)
{
	return each_name(m,
			 "SELECT p.path FROM pins p JOIN pin_objects o ON "
			 "o.pin = p.id WHERE o.name = ?1 UNION ALL SELECT "
			 "'node ' || node FROM node_objects WHERE name = ?1",
			 name, NULL, fn, ctx);
}

/* -- shards, ghosts and moves -- */

/*
 * The prepared statement of literal @sql, reset and with no bindings:
 * prepared once, kept by address (a rebalance runs these per object).
 * Each user ends with sqlite3_reset(), never finalize.
 */
static int prep(struct meta *m, const char *sql, sqlite3_stmt **out)
{
	unsigned i;
	int rc;

	for (i = 0; i < m->nadhoc; i++)
		if (m->adhoc[i].sql == sql) {
			sqlite3_reset(m->adhoc[i].s);
			sqlite3_clear_bindings(m->adhoc[i].s);
			*out = m->adhoc[i].s;
			return 0;
		}
	rc = sqlite3_prepare_v3(m->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
				NULL);
	if (rc != SQLITE_OK) {
		log_msg(LOG_ERR, "cannot prepare '%s': %s", sql,
			sqlite3_errmsg(m->db));
		return errno_of(rc);
	}
	if (m->nadhoc == ADHOC_MAX) {
		/* more statements than slots: raise ADHOC_MAX */
		assert(!"ADHOC_MAX too small");
		sqlite3_finalize(*out);
		return -ENOMEM;
	}
	m->adhoc[m->nadhoc].sql = sql;
	m->adhoc[m->nadhoc].s = *out;
	m->nadhoc++;
	return 0;
}

/* Step @s to the end and reset it. */
static int run_once(struct meta *m, sqlite3_stmt *s, const char *what)
{
	int rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : fail(m, rc, what);
}

int meta_shards(struct meta *m,
		int (*fn)(void *ctx, uint32_t id, const char *path, int state),
		void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(m, "SELECT id, path, state FROM shards ORDER BY id", &s);

	if (rc)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int r = fn(ctx, (uint32_t)sqlite3_column_int64(s, 0),
			   (const char *)sqlite3_column_text(s, 1),
			   sqlite3_column_int(s, 2));
		if (r) {
			sqlite3_reset(s);
			return r;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : fail(m, rc, "shard list");
}

int meta_shard_add(struct meta *m, const char *path, uint32_t max_id,
		   int64_t now, uint32_t *id)
{
	sqlite3_stmt *s;
	int64_t next = 0;
	int rc = prep(m, "SELECT coalesce(max(id), 0) + 1 FROM shards", &s);

	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		next = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (next <= 0 || next > (int64_t)max_id)
		return -EMLINK;
	rc = prep(m,
		  "INSERT INTO shards(id, path, state, added) "
		  "VALUES (?1, ?2, 0, ?3)",
		  &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, next);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now);
	rc = run_once(m, s, "shard insert");
	if (!rc)
		*id = (uint32_t)next;
	return rc;
}

int meta_shard_set_state(struct meta *m, uint32_t id, int state)
{
	sqlite3_stmt *s;
	int rc = prep(m, "UPDATE shards SET state = ?2 WHERE id = ?1", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int(s, 2, state);
	rc = run_once(m, s, "shard state");
	if (!rc && sqlite3_changes(m->db) == 0)
		rc = -ENOENT;
	return rc;
}

/* Rows (shard, objects, bytes) of @sql to @fn. */
static int usage_rows(struct meta *m, const char *sql,
		      int (*fn)(void *ctx, uint32_t shard, uint64_t objects,
				uint64_t bytes),
		      void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(m, sql, &s);

	if (rc)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int r = fn(ctx, (uint32_t)sqlite3_column_int64(s, 0),
			   (uint64_t)sqlite3_column_int64(s, 1),
			   (uint64_t)sqlite3_column_int64(s, 2));
		if (r) {
			sqlite3_reset(s);
			return r;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : fail(m, rc, "shard usage");
}

int meta_shard_usage(struct meta *m,
		     int (*fn)(void *ctx, uint32_t shard, uint64_t objects,
			       uint64_t bytes),
		     void *ctx)
{
	return usage_rows(m, "SELECT shard, objects, bytes FROM shard_usage",
			  fn, ctx);
}

int meta_shard_usage_check(struct meta *m,
			   int (*fn)(void *ctx, uint32_t shard,
				     uint64_t objects, uint64_t bytes),
			   void *ctx)
{
	/* the shards whose counts differ from the object table's */
	return usage_rows(
		m,
		"WITH t AS (SELECT shard, count(*) AS n, sum(size) AS b FROM "
		"objects GROUP BY shard) SELECT t.shard, t.n, t.b FROM t "
		"LEFT JOIN shard_usage u ON u.shard = t.shard WHERE u.shard "
		"IS NULL OR u.objects <> t.n OR u.bytes <> t.b UNION ALL "
		"SELECT u.shard, 0, 0 FROM shard_usage u WHERE (u.objects "
		"<> 0 OR u.bytes <> 0) AND NOT EXISTS (SELECT 1 FROM t WHERE "
		"t.shard = u.shard)",
		fn, ctx);
}

int meta_shard_usage_rebuild(struct meta *m)
{
	return exec(m, "DELETE FROM shard_usage; INSERT INTO shard_usage "
		       "SELECT shard, count(*), coalesce(sum(size), 0) FROM "
		       "objects GROUP BY shard");
}

int meta_objects_in(struct meta *m, uint32_t shard, int64_t after,
		    unsigned limit,
		    int (*fn)(void *ctx, int64_t id, const char *name,
			      uint64_t size),
		    void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(m,
		      "SELECT id, name, size FROM objects WHERE id > ?2 "
		      "AND shard = ?1 ORDER BY id LIMIT ?3",
		      &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, shard);
	sqlite3_bind_int64(s, 2, after);
	sqlite3_bind_int64(s, 3, limit);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int r = fn(ctx, sqlite3_column_int64(s, 0),
			   (const char *)sqlite3_column_text(s, 1),
			   (uint64_t)sqlite3_column_int64(s, 2));
		if (r) {
			sqlite3_reset(s);
			return r;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : fail(m, rc, "objects of a shard");
}

int meta_move_begin(struct meta *m, int64_t obj, const char *name, uint32_t src,
		    uint32_t dst)
{
	sqlite3_stmt *s;
	int rc = prep(m,
		      "INSERT OR REPLACE INTO moves(obj, name, src, dst) "
		      "VALUES (?1, ?2, ?3, ?4)",
		      &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, obj);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, src);
	sqlite3_bind_int64(s, 4, dst);
	return run_once(m, s, "move intent");
}

int meta_move_end(struct meta *m, int64_t obj)
{
	sqlite3_stmt *s;
	int rc = prep(m, "DELETE FROM moves WHERE obj = ?1", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, obj);
	return run_once(m, s, "move end");
}

int meta_moves(struct meta *m,
	       int (*fn)(void *ctx, int64_t obj, const char *name, uint32_t src,
			 uint32_t dst),
	       void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(m, "SELECT obj, name, src, dst FROM moves", &s);

	if (rc)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int r = fn(ctx, sqlite3_column_int64(s, 0),
			   (const char *)sqlite3_column_text(s, 1),
			   (uint32_t)sqlite3_column_int64(s, 2),
			   (uint32_t)sqlite3_column_int64(s, 3));
		if (r) {
			sqlite3_reset(s);
			return r;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : fail(m, rc, "move list");
}

/* Run @sql with integer parameters ?1..?n. */
static int exec_ints(struct meta *m, const char *sql, const int64_t *v, int n,
		     const char *what)
{
	sqlite3_stmt *s;
	int rc = prep(m, sql, &s), i;

	if (rc)
		return rc;
	for (i = 0; i < n; i++)
		sqlite3_bind_int64(s, i + 1, v[i]);
	return run_once(m, s, what);
}

int meta_move_commit(struct meta *m, int64_t obj, uint32_t src, uint32_t dst,
		     int64_t now)
{
	sqlite3_stmt *s;
	int64_t where = -1, refcount = 0, ghosted = 0;
	int64_t v[4];
	int rc = prep(m,
		      "SELECT o.shard, o.refcount, (SELECT coalesce("
		      "sum(refcount), 0) FROM ghosts WHERE obj = o.id) "
		      "FROM objects o WHERE o.id = ?1",
		      &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, obj);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		where = sqlite3_column_int64(s, 0);
		refcount = sqlite3_column_int64(s, 1);
		ghosted = sqlite3_column_int64(s, 2);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail(m, rc, "move check");
	if (where != (int64_t)src)
		return 0; /* gone, or moved by someone else */
	v[0] = obj;
	v[1] = src;
	v[2] = dst;
	/* references naming dst are direct again; the other ghosts now
	 * lead to dst; the new ghost counts the references naming src,
	 * i.e. all but those the older ghosts count */
	v[3] = now;
	rc = exec_ints(m, "DELETE FROM ghosts WHERE obj = ?1 AND src = ?3", v,
		       3, "ghost delete");
	if (!rc)
		rc = exec_ints(m, "UPDATE ghosts SET dst = ?3 WHERE obj = ?1",
			       v, 3, "ghost update");
	if (!rc) {
		rc = prep(m,
			  "INSERT INTO ghosts(obj, src, dst, name, refcount, "
			  "created) SELECT id, ?2, ?3, name, ?4, ?5 FROM "
			  "objects WHERE id = ?1",
			  &s);
		if (!rc) {
			sqlite3_bind_int64(s, 1, obj);
			sqlite3_bind_int64(s, 2, src);
			sqlite3_bind_int64(s, 3, dst);
			sqlite3_bind_int64(s, 4, refcount - ghosted);
			sqlite3_bind_int64(s, 5, now);
			rc = run_once(m, s, "ghost insert");
		}
	}
	if (!rc)
		rc = exec_ints(m, "UPDATE objects SET shard = ?3 WHERE id = ?1",
			       v, 3, "object move");
	return rc ? rc : 1;
}

int meta_ghosts(struct meta *m,
		int (*fn)(void *ctx, const struct meta_ghost *g), void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(m,
		      "SELECT g.obj, g.name, g.src, g.dst, g.refcount, "
		      "g.created, o.id IS NOT NULL FROM ghosts g "
		      "LEFT JOIN objects o ON o.id = g.obj",
		      &s);

	if (rc)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct meta_ghost g;
		int r;

		g.obj = sqlite3_column_int64(s, 0);
		snprintf(g.name, sizeof(g.name), "%s",
			 (const char *)sqlite3_column_text(s, 1));
		g.src = (uint32_t)sqlite3_column_int64(s, 2);
		g.dst = (uint32_t)sqlite3_column_int64(s, 3);
		g.refcount = sqlite3_column_int64(s, 4);
		g.created = sqlite3_column_int64(s, 5);
		g.object_exists = sqlite3_column_int(s, 6) != 0;
		r = fn(ctx, &g);
		if (r) {
			sqlite3_reset(s);
			return r;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : fail(m, rc, "ghost list");
}

int meta_ghost_count(struct meta *m, uint64_t *n)
{
	int64_t v = pragma_int(m, "SELECT count(*) FROM ghosts");

	if (v < 0)
		return -EIO;
	*n = (uint64_t)v;
	return 0;
}

/* The first column of @s's row for parameters (@a, @b); -ENOENT if none. */
static int int_by_pair(struct meta *m, sqlite3_stmt *s, int64_t a, int64_t b,
		       int64_t *out, const char *what)
{
	int rc;

	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : fail(m, rc, what);
}

int meta_ghost_target(struct meta *m, int64_t obj, uint32_t src, uint32_t *dst)
{
	STMT_OR_RETURN(s, m, S_GHOST_DST);
	int64_t v;
	int rc = int_by_pair(m, s, obj, src, &v, "ghost lookup");

	if (!rc)
		*dst = (uint32_t)v;
	return rc;
}

int meta_object_shard(struct meta *m, int64_t obj, uint32_t *shard)
{
	int64_t v;
	int rc = int_by_id(m, S_OBJ_SHARD, obj, &v, "object shard");

	if (!rc)
		*shard = (uint32_t)v;
	return rc;
}

int meta_ghosts_repoint(struct meta *m, uint64_t from, size_t max_blocks,
			uint64_t skip_dst, uint64_t *next, uint64_t *repointed)
{
	sqlite3_stmt *s;
	int64_t end = INT64_MAX;
	int rc = prep(m,
		      "SELECT ino FROM blocks WHERE ino >= ?1 ORDER BY ino "
		      "LIMIT 1 OFFSET ?2",
		      &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, (int64_t)from);
	sqlite3_bind_int64(s, 2, (int64_t)max_blocks);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		end = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail(m, rc, "repoint range");
	if (end == (int64_t)from)
		end++; /* one inode with more blocks than a batch */
	rc = prep(m,
		  "UPDATE blocks SET shard = g.dst FROM ghosts g "
		  "WHERE blocks.ino >= ?1 AND blocks.ino < ?2 "
		  "AND g.obj = blocks.obj AND g.src = blocks.shard "
		  "AND ((?3 >> g.dst) & 1) = 0",
		  &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, (int64_t)from);
	sqlite3_bind_int64(s, 2, end);
	sqlite3_bind_int64(s, 3, (int64_t)skip_dst);
	rc = run_once(m, s, "repoint");
	if (rc)
		return rc;
	*repointed = (uint64_t)sqlite3_changes(m->db);
	*next = end == INT64_MAX ? UINT64_MAX : (uint64_t)end;
	return 0;
}

int meta_ghost_purge(struct meta *m, int64_t obj, uint32_t src, bool *purged)
{
	int64_t v[2] = { obj, src };
	int rc = exec_ints(m,
			   "DELETE FROM ghosts WHERE obj = ?1 AND src = ?2 "
			   "AND refcount <= 0",
			   v, 2, "ghost purge");

	if (!rc)
		*purged = sqlite3_changes(m->db) > 0;
	return rc;
}

int meta_check_ghosts(struct meta *m,
		      int (*fn)(void *ctx, int64_t obj, uint32_t src,
				int64_t stored, int64_t truth, bool has_ghost),
		      void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(
		m,
		"WITH r AS (SELECT b.obj, b.shard AS src, count(*) AS n "
		"FROM blocks b JOIN objects o ON o.id = b.obj "
		"WHERE b.shard <> o.shard GROUP BY b.obj, b.shard) "
		"SELECT r.obj, r.src, coalesce(g.refcount, 0), r.n, "
		"g.obj IS NOT NULL FROM r LEFT JOIN ghosts g "
		"ON g.obj = r.obj AND g.src = r.src "
		"WHERE g.refcount IS NULL OR g.refcount <> r.n "
		"UNION ALL SELECT g.obj, g.src, g.refcount, 0, 1 FROM ghosts g "
		"WHERE g.refcount <> 0 AND NOT EXISTS (SELECT 1 FROM r "
		"WHERE r.obj = g.obj AND r.src = g.src)",
		&s);

	if (rc)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int r = fn(ctx, sqlite3_column_int64(s, 0),
			   (uint32_t)sqlite3_column_int64(s, 1),
			   sqlite3_column_int64(s, 2),
			   sqlite3_column_int64(s, 3),
			   sqlite3_column_int(s, 4) != 0);
		if (r) {
			sqlite3_reset(s);
			return r;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : fail(m, rc, "ghost check");
}

int meta_ghost_fix(struct meta *m, int64_t obj, uint32_t src, int64_t truth,
		   bool has_ghost)
{
	int64_t v[3] = { obj, src, truth };

	if (has_ghost)
		return exec_ints(m,
				 "UPDATE ghosts SET refcount = ?3 "
				 "WHERE obj = ?1 AND src = ?2",
				 v, 3, "ghost repair");
	/* references to a shard with no ghost: point them at the object */
	return exec_ints(m,
			 "UPDATE blocks SET shard = (SELECT shard FROM "
			 "objects WHERE id = ?1) WHERE obj = ?1 AND shard = ?2",
			 v, 2, "reference repair");
}

int meta_sweep_log_put(struct meta *m, const struct meta_sweep_event *e)
{
	int64_t v[7] = { e->at,
			 (int64_t)e->checked,
			 (int64_t)e->purged,
			 (int64_t)e->kept,
			 (int64_t)e->inconclusive,
			 (int64_t)e->repointed,
			 e->duration_ms };

	return exec_ints(m,
			 "INSERT INTO sweep_log(at, checked, purged, kept, "
			 "inconclusive, repointed, duration_ms) VALUES (?1, "
			 "?2, ?3, ?4, ?5, ?6, ?7)",
			 v, 7, "sweep log");
}

int meta_sweep_last(struct meta *m, struct meta_sweep_event *e,
		    uint64_t *total_purged)
{
	sqlite3_stmt *s;
	int rc = prep(m,
		      "SELECT at, checked, purged, kept, inconclusive, "
		      "repointed, duration_ms, (SELECT coalesce(sum(purged), "
		      "0) FROM sweep_log) FROM sweep_log ORDER BY id DESC "
		      "LIMIT 1",
		      &s);

	if (rc)
		return rc;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		e->at = sqlite3_column_int64(s, 0);
		e->checked = (uint64_t)sqlite3_column_int64(s, 1);
		e->purged = (uint64_t)sqlite3_column_int64(s, 2);
		e->kept = (uint64_t)sqlite3_column_int64(s, 3);
		e->inconclusive = (uint64_t)sqlite3_column_int64(s, 4);
		e->repointed = (uint64_t)sqlite3_column_int64(s, 5);
		e->duration_ms = sqlite3_column_int64(s, 6);
		*total_purged = (uint64_t)sqlite3_column_int64(s, 7);
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : fail(m, rc, "sweep log");
}

int meta_ghost_refcount(struct meta *m, int64_t obj, uint32_t src,
			int64_t *refcount)
{
	sqlite3_stmt *s;
	int rc = prep(m,
		      "SELECT refcount FROM ghosts WHERE obj = ?1 AND src = ?2",
		      &s);

	return rc ? rc : int_by_pair(m, s, obj, src, refcount, "ghost count");
}

int meta_object_ghosts(struct meta *m, int64_t obj,
		       int (*fn)(void *ctx, uint32_t src, uint32_t dst,
				 int64_t refcount),
		       void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(m,
		      "SELECT src, dst, refcount FROM ghosts WHERE obj = ?1 "
		      "ORDER BY src",
		      &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, obj);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int r = fn(ctx, (uint32_t)sqlite3_column_int64(s, 0),
			   (uint32_t)sqlite3_column_int64(s, 1),
			   sqlite3_column_int64(s, 2));
		if (r) {
			sqlite3_reset(s);
			return r;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : fail(m, rc, "object ghosts");
}

int meta_object_inodes(struct meta *m, int64_t obj, unsigned limit,
		       int (*fn)(void *ctx, uint64_t ino, uint64_t refs),
		       void *ctx)
{
	sqlite3_stmt *s;
	int rc = prep(m,
		      "SELECT ino, count(*) FROM blocks WHERE obj = ?1 "
		      "GROUP BY ino ORDER BY ino LIMIT ?2",
		      &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, obj);
	sqlite3_bind_int64(s, 2, limit);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int r = fn(ctx, (uint64_t)sqlite3_column_int64(s, 0),
			   (uint64_t)sqlite3_column_int64(s, 1));
		if (r) {
			sqlite3_reset(s);
			return r;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : fail(m, rc, "object inodes");
}

int meta_inode_path(struct meta *m, uint64_t ino, char *buf, size_t size)
{
	sqlite3_stmt *s;
	char tmp[4096];
	size_t len = 0;
	unsigned depth;
	int rc = prep(m,
		      "SELECT parent, name FROM dentries WHERE ino = ?1 "
		      "ORDER BY id LIMIT 1",
		      &s);

	if (rc)
		return rc;
	/* from the inode up to the root, each name put in front */
	for (depth = 0; ino != 1 && depth < 4096; depth++) {
		const void *name;
		int n;

		sqlite3_bind_int64(s, 1, (int64_t)ino);
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW) {
			sqlite3_reset(s);
			return rc == SQLITE_DONE ? -ENOENT
						 : fail(m, rc, "inode path");
		}
		name = sqlite3_column_blob(s, 1);
		n = sqlite3_column_bytes(s, 1);
		if ((size_t)n + 1 + len >= sizeof(tmp)) {
			sqlite3_reset(s);
			return -ENAMETOOLONG;
		}
		memmove(tmp + n + (len ? 1 : 0), tmp, len);
		memcpy(tmp, name, (size_t)n);
		if (len)
			tmp[n] = '/';
		len += (size_t)n + (len ? 1 : 0);
		ino = (uint64_t)sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
	}
	if (ino != 1)
		return -ELOOP;
	if (len + 1 > size)
		return -ENAMETOOLONG;
	memcpy(buf, tmp, len);
	buf[len] = '\0';
	return 0;
}
