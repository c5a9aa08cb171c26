/* SPDX-License-Identifier: MIT */
/*
 * The text of the statements of the metadata store, by id.
 */
#include "core/meta_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/array.h"
#include "core/log.h"

const char *const meta_sql_text[S_COUNT] = {
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
	[S_PROTECTED] = "SELECT 1 FROM pin_objects WHERE name = ?1 "
			"UNION ALL SELECT 1 FROM node_objects WHERE name = ?1 "
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
		"UNION ALL SELECT 1 FROM node_objects WHERE name = ?1 LIMIT 1",
	/* prepared once: every operation runs both */
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
};
