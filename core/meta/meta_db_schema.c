/* SPDX-License-Identifier: MIT */
/*
 * The SQLite engine's schema (core/meta/meta_db.c opens stores with it):
 * the tables of a new store, those an older one lacks (made at every
 * open if missing), and the rebuilds of the upgrades. Texts only.
 */
#include "core/meta/meta_int.h"

/*
 * The tree of versions (docs/design.md, section 13): a row per version,
 * its parent (NULL for a root), its kind (0: the root directory's rows;
 * 1: a leaf, which a namespace writes into; 2: frozen, a branch point;
 * 3: a snapshot, frozen and named), its name and namespace, the view the
 * kernel sees it through, when it was made; and the closure of the
 * versions that are read: a row (ver, anc) per ancestor, itself
 * included. Ids grow from parent to child.
 */
#define VERSIONS_TABLES                                                    \
	"CREATE TABLE versions(id INTEGER PRIMARY KEY, parent INTEGER,"    \
	" kind INTEGER NOT NULL, name BLOB, nspace INTEGER,"               \
	" view INTEGER NOT NULL, created INTEGER NOT NULL);"               \
	"CREATE TABLE ver_anc(ver INTEGER NOT NULL, anc INTEGER NOT NULL," \
	" PRIMARY KEY(ver, anc)) WITHOUT ROWID;"

/*
 * Format 3: a namespace is a row (its id the number of the root it was
 * made with, its name the root directory's entry that names it), with
 * the leaf it writes into and the view the kernel sees it through.
 */
#define NSPACES_TABLE                                                         \
	"CREATE TABLE nspaces(id INTEGER PRIMARY KEY, root INTEGER NOT NULL," \
	" leaf INTEGER NOT NULL, view INTEGER NOT NULL);"

/*
 * The namespace tables of format 3: entries, extents and xattrs keyed
 * with the version of their rows, so that a version may hold its own
 * row of a key an ancestor holds too (docs/design.md, 13.1). A
 * whiteout, a row that hides an ancestor's, names nothing: an entry of
 * inode 0, an xattr of a NULL value, an extent of object 0 (a hole).
 * Inodes keep format 1's key (ino, the rowid) until format 4 gives them
 * theirs (13.7 says why it is a format of its own).
 */
#define DENTRIES_TABLE(name)                                                  \
	"CREATE TABLE " name "(id INTEGER PRIMARY KEY,"                       \
	" parent INTEGER NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL," \
	" ver INTEGER NOT NULL, UNIQUE(parent, name, ver));"
#define EXTENTS_TABLE(name)                                                    \
	"CREATE TABLE " name "(ino INTEGER NOT NULL, off INTEGER NOT NULL,"    \
	" len INTEGER NOT NULL, obj INTEGER NOT NULL, shard INTEGER NOT NULL," \
	" ver INTEGER NOT NULL, PRIMARY KEY(ino, ver, off)) WITHOUT ROWID;"
#define XATTRS_TABLE(name)                                                \
	"CREATE TABLE " name "(ino INTEGER NOT NULL, name BLOB NOT NULL," \
	" value BLOB, ver INTEGER NOT NULL,"                              \
	" PRIMARY KEY(ino, name, ver)) WITHOUT ROWID;"
#define DENTRIES_INDEX "CREATE INDEX dentries_parent ON dentries(parent);"

/*
 * Format 4: an inode's row in a version other than the one it was made
 * in (a version below it in the tree: its copy-up, or its whiteout) is
 * keyed by a number of its own, taken as an inode number is, and names
 * the inode in `base`; the row of the version the inode was made in
 * keeps the inode's number as its key, `base` NULL. So a store whose
 * versions have no chains reads and writes the rows it did in format 3,
 * by one key, and the rows of an inode in later versions are one range
 * of a partial index that holds nothing else (docs/design.md, 13.7).
 */
#define INODES_BASE_INDEX                                      \
	"CREATE UNIQUE INDEX inodes_base ON inodes(base, ver)" \
	" WHERE base IS NOT NULL;"

/*
 * Format 3 (versions, docs/design.md section 13): every row of the
 * namespace tables names the version it belongs to (`ver`, its last
 * column), and all but an inode's are keyed with it (13.7: format 4
 * keys inodes so); version 0 holds the root directory and
 * its entries, one per namespace. The block map is a list of extents
 * (byte offset, length, object): a fixed-size block is an extent of
 * block_size bytes at a multiple of it.
 */
/* clang-format off */
const char meta_db_schema[] =
	"CREATE TABLE config(key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
	" WITHOUT ROWID;"
	VERSIONS_TABLES
	NSPACES_TABLE
	"CREATE TABLE inodes(ino INTEGER PRIMARY KEY, nspace INTEGER NOT NULL,"
	" mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
	" nlink INTEGER NOT NULL, size INTEGER NOT NULL,"
	" rdev INTEGER NOT NULL, alloc INTEGER NOT NULL,"
	" atime INTEGER NOT NULL, mtime INTEGER NOT NULL,"
	" ctime INTEGER NOT NULL, target BLOB, ver INTEGER NOT NULL,"
	" base INTEGER);"
	DENTRIES_TABLE("dentries")
	"CREATE TABLE objects(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE, shard INTEGER NOT NULL,"
	" size INTEGER NOT NULL, refcount INTEGER NOT NULL);"
	EXTENTS_TABLE("extents")
	XATTRS_TABLE("xattrs")
	"CREATE INDEX inodes_nspace ON inodes(nspace);"
	INODES_BASE_INDEX
	DENTRIES_INDEX;
/* clang-format on */

/* GC state, added to format 1 stores when they are opened. */
const char meta_db_gc_schema[] =
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
	 * (core/jobs/gc.c); with the shard, it covers the scans by object */
	"CREATE INDEX IF NOT EXISTS extents_obj ON extents(obj, shard);"
	/* the rows of versions made by a freeze (meta_int.h, IN_C) */
	META_LATER_INDEXES
		/* the names of an inode (a diff's paths) */
		META_INO_INDEX
			/* the views of snapshots */
			META_VIEWS_GIVEN
	/* the number of inodes, for statfs without a scan */
	"INSERT INTO config(key, value) SELECT 'inodes',"
	" (SELECT count(*) FROM inodes) WHERE NOT EXISTS"
	" (SELECT 1 FROM config WHERE key = 'inodes');"
	"CREATE TRIGGER IF NOT EXISTS inodes_add AFTER INSERT ON inodes"
	" BEGIN UPDATE config SET value = value + 1 WHERE key = 'inodes'; END;"
	"CREATE TRIGGER IF NOT EXISTS inodes_del AFTER DELETE ON inodes"
	" BEGIN UPDATE config SET value = value - 1 WHERE key = 'inodes'; END;"
	/* a namespace's row and version (one version per namespace so far,
	 * its id its root's number), made and dropped with its root's row */
	"CREATE TRIGGER IF NOT EXISTS version_add AFTER INSERT ON inodes"
	" WHEN NEW.nspace = NEW.ino AND NEW.ino <> 1 BEGIN"
	" INSERT OR IGNORE INTO versions VALUES (NEW.ver, NULL, 1, NULL,"
	" NEW.ino, 0, NEW.ctime);"
	" INSERT OR IGNORE INTO ver_anc VALUES (NEW.ver, NEW.ver);"
	" INSERT OR IGNORE INTO nspaces VALUES (NEW.ino, NEW.ino, NEW.ver, 0);"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS version_del AFTER DELETE ON inodes"
	" WHEN OLD.nspace = OLD.ino AND OLD.ino <> 1 BEGIN"
	" DELETE FROM nspaces WHERE id = OLD.ino;"
	" DELETE FROM ver_anc WHERE ver = OLD.ver;"
	" DELETE FROM versions WHERE id = OLD.ver; END;"
	/* mounts and the jobs one of them runs (core/meta/meta_session.c) */
	"CREATE TABLE IF NOT EXISTS sessions(id INTEGER PRIMARY KEY,"
	" host TEXT NOT NULL, pid INTEGER NOT NULL, started INTEGER NOT NULL,"
	" heartbeat INTEGER NOT NULL, expires INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS leases(name TEXT PRIMARY KEY,"
	" holder INTEGER NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS open_holds(node INTEGER NOT NULL,"
	" ino INTEGER NOT NULL, PRIMARY KEY(node, ino)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS open_holds_ino ON open_holds(ino);"
	/* directories a node knows whole (core/fs/dirnames.c): a shared
	 * store's alone, the same table here */
	"CREATE TABLE IF NOT EXISTS dir_watch(dir INTEGER NOT NULL,"
	" node INTEGER NOT NULL, PRIMARY KEY(dir, node)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS dir_watch_node ON dir_watch(node);";

/*
 * Shards, ghosts and moves, added to format 1 stores when they are opened.
 * Shard 0 (STORE/shards/0) has a row with a NULL path. A ghost (obj, src)
 * says that object obj, which block references still name as being in
 * shard src, now lives in shard dst; its refcount is the number of those
 * references, kept exact by the triggers on extents (recursive triggers
 * are on, so the deletes of INSERT OR REPLACE count too). The ghosts of
 * an object go with its row (a row deleted by damage must not leave
 * them). shard_usage counts the objects and bytes of each shard, kept by
 * the triggers on objects, so that the status need not scan the object
 * table. A move row is the intent of a rebalance move in progress
 * (core/jobs/shard.c).
 */
const char meta_db_shard_schema[] =
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
	"CREATE TRIGGER IF NOT EXISTS ghost_ref_add AFTER INSERT ON extents"
	" BEGIN UPDATE ghosts SET refcount = refcount + 1"
	" WHERE obj = NEW.obj AND src = NEW.shard; END;"
	"CREATE TRIGGER IF NOT EXISTS ghost_ref_del AFTER DELETE ON extents"
	" BEGIN UPDATE ghosts SET refcount = refcount - 1"
	" WHERE obj = OLD.obj AND src = OLD.shard; END;"
	"CREATE TRIGGER IF NOT EXISTS ghost_ref_mov AFTER UPDATE OF obj, shard"
	" ON extents BEGIN UPDATE ghosts SET refcount = refcount - 1"
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
const char meta_db_objects_upgrade[] =
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
	" (SELECT coalesce(max(obj), 0) FROM extents),"
	" (SELECT coalesce(max(obj), 0) FROM ghosts),"
	" (SELECT coalesce(max(obj), 0) FROM moves));";

/*
 * Format 1 to 2 (versions, docs/design.md section 13.7): each namespace
 * gets a leaf version whose id is its root inode's number (ids then
 * come from the inode counter, which only grows: a child's id is above
 * its parent's), version 0 holds the root directory and its entries;
 * every row gets its namespace's version (rows of no inode, a leak
 * tallyfsck reports, version 0); the block map becomes extents of
 * block_size bytes at idx * block_size. Format 1's namespaces share no
 * rows (a branch copied them), so nothing else changes. In the
 * transaction that opens the store: O(rows), once; the keys stay, each
 * table gets its column (last, as a new store has it). The ghost
 * triggers on blocks go with it; meta_db_shard_schema makes them again
 * on extents.
 */
const char meta_db_versions_upgrade[] =
	"DROP TRIGGER IF EXISTS ghost_ref_add;"
	"DROP TRIGGER IF EXISTS ghost_ref_del;"
	"DROP TRIGGER IF EXISTS ghost_ref_mov;"
	"DROP INDEX IF EXISTS blocks_obj;" VERSIONS_TABLES
	"INSERT INTO versions VALUES (0, NULL, 0, NULL, NULL, 0, 0);"
	"INSERT INTO versions SELECT ino, NULL, 1, NULL, ino, 0, ctime"
	" FROM inodes WHERE nspace = ino AND ino <> 1;"
	"INSERT INTO ver_anc SELECT id, id FROM versions;"
	"ALTER TABLE inodes ADD COLUMN ver INTEGER NOT NULL DEFAULT 0;"
	"UPDATE inodes SET ver = nspace WHERE ino <> 1;"
	"ALTER TABLE dentries ADD COLUMN ver INTEGER NOT NULL DEFAULT 0;"
	"UPDATE dentries SET ver = coalesce((SELECT i.ver FROM inodes i"
	" WHERE i.ino = dentries.parent), 0);"
	"ALTER TABLE xattrs ADD COLUMN ver INTEGER NOT NULL DEFAULT 0;"
	"UPDATE xattrs SET ver = coalesce((SELECT i.ver FROM inodes i"
	" WHERE i.ino = xattrs.ino), 0);"
	"CREATE TABLE extents(ino INTEGER NOT NULL, off INTEGER NOT NULL,"
	" len INTEGER NOT NULL, obj INTEGER NOT NULL, shard INTEGER NOT NULL,"
	" ver INTEGER NOT NULL, PRIMARY KEY(ino, off)) WITHOUT ROWID;"
	"INSERT INTO extents SELECT b.ino, b.idx * c.value, c.value, b.obj,"
	" b.shard, coalesce(i.ver, 0) FROM blocks b CROSS JOIN config c"
	" LEFT JOIN inodes i ON i.ino = b.ino WHERE c.key = 'block_size';"
	"DROP TABLE blocks;"
	"PRAGMA user_version = 2;";

/*
 * Format 2 to 3 (docs/design.md section 13.7): the tables of entries,
 * extents and xattrs rebuilt with the version in their keys (their rows
 * copied as they are, an entry's id, the readdir cookie, kept), and a
 * row in nspaces for each namespace. The triggers and indexes of the
 * tables go with them; the schemas after this one make them again. In
 * the transaction that opens the store: O(rows), once.
 */
/* clang-format off */
const char meta_db_keys_upgrade[] =
	"DROP TRIGGER IF EXISTS ghost_ref_add;"
	"DROP TRIGGER IF EXISTS ghost_ref_del;"
	"DROP TRIGGER IF EXISTS ghost_ref_mov;"
	"DROP TRIGGER IF EXISTS version_add;"
	"DROP TRIGGER IF EXISTS version_del;"
	DENTRIES_TABLE("dentries_3")
	"INSERT INTO dentries_3 SELECT id, parent, name, ino, ver"
	" FROM dentries;"
	"DROP TABLE dentries;"
	"ALTER TABLE dentries_3 RENAME TO dentries;"
	EXTENTS_TABLE("extents_3")
	"INSERT INTO extents_3 SELECT ino, off, len, obj, shard, ver"
	" FROM extents;"
	"DROP TABLE extents;"
	"ALTER TABLE extents_3 RENAME TO extents;"
	XATTRS_TABLE("xattrs_3")
	"INSERT INTO xattrs_3 SELECT ino, name, value, ver FROM xattrs;"
	"DROP TABLE xattrs;"
	"ALTER TABLE xattrs_3 RENAME TO xattrs;"
	DENTRIES_INDEX
	NSPACES_TABLE
	"INSERT INTO nspaces SELECT ino, ino, ver, 0 FROM inodes"
	" WHERE nspace = ino AND ino <> 1;"
	"PRAGMA user_version = 3;";
/* clang-format on */

/*
 * Format 3 to 4 (docs/design.md section 13.7): the column that names
 * the inode of a row in a later version, and its index. No row changes:
 * every row of a format 3 store is its inode's first. O(1) but the
 * index's one pass over the table.
 */
const char meta_db_base_upgrade[] = "ALTER TABLE inodes ADD COLUMN base "
				    "INTEGER;" INODES_BASE_INDEX
				    "PRAGMA user_version = 4;";

/* shard_usage from the object table (a new table, or a repair). */
const char meta_db_usage_fill[] =
	"DELETE FROM shard_usage;"
	"INSERT INTO shard_usage SELECT shard, count(*), coalesce(sum(size), 0)"
	" FROM objects GROUP BY shard;";
