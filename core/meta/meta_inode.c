/* SPDX-License-Identifier: MIT */
/*
 * The inode family of the metadata store: inodes, directory entries,
 * extended attributes, symlink targets, readdir and orphans.
 */
#include "core/meta/meta_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util/array.h"
#include "core/util/log.h"

enum {
	I_INODE_GET,
	I_INODE_GET_ANY,
	I_INODE_PUT,
	I_INODE_PUT_FIRST,
	I_INODE_PUT_LEAF,
	I_TARGET_GET_CHAIN,
	I_INODE_DEL,
	I_INODE_DEL_X,
	I_INODE_UPDATE,
	I_INODE_UPDATE_SURE,
	I_INODE_CHANGE,
	I_MAX_INO,
	I_ORPHANS,
	I_NAMELESS,
	I_HOMELESS,
	I_UNNAME,
	I_TARGET_SET,
	I_TARGET_GET,
	I_DENTRY_LOOKUP,
	I_DENTRY_ROW,
	I_DENTRY_ROW_ROOT,
	I_DENTRY_INSERT,
	I_DENTRY_DELETE,
	I_DENTRY_SET_INO,
	I_DENTRY_MOVE,
	I_DIR_EMPTY,
	I_READDIR,
	I_INO_TAKE,
	I_VER_OF,
	I_MISFILED,
	I_INODES_MOVE,
	I_INODE_NOTIFY,
	I_INODE_GET_CHAIN,
	I_INODE_COPY_UP,
	I_INODE_UPDATE_LEAF,
	I_INODE_DEL_LEAF,
	I_INODE_WHITEOUT,
	I_DENTRY_LOOKUP_CHAIN,
	I_DENTRY_ROW_CHAIN,
	I_READDIR_CHAIN,
	I_READDIR_ROOT,
	I_DIR_EMPTY_CHAIN,
	I_DENTRY_PUT_LEAF,
	I_DENTRY_DEL_LEAF,
	I_DENTRY_WHITEOUT,
	I_DENTRY_SET_INO_CHAIN,
	I_COUNT
};

/*
 * Format 2 (versions, docs/design.md section 13): every namespace has one
 * version, whose id is its root's inode number, and version 0 holds the
 * root directory and its entries. A row is written into the version the
 * caller names (struct meta_ver, bound from C: meta_ver_id()).
 */

/* An inode's fields of ?13 (META_F_*) written, its link count moved by
 * ?6, in its row of version ?14 */
#define INODE_CHANGE INODE_CHANGE_WHERE("ino = ?1 AND " VER_IS("ver", "?14"))
/*
 * Format 4 (docs/design.md 13.7), a version with a chain (struct
 * meta_ver's depth): the row of inode ?1 of the nearest version on the
 * chain of version ?2 (its first row, ino ?1, or a row of a later
 * version, base ?1: a range of inodes_base), a whiteout if its mode is 0;
 * the key of a row in a later version, a number below zero that no inode
 * has (SQLite: the smallest key less one, in the writer's transaction).
 */
#define INODE_NEAREST(p, v)                                              \
	"(SELECT * FROM inodes WHERE (ino = " p " OR base = " p ") AND " \
	"" ON_CHAIN("inodes.ver", v) " ORDER BY ver DESC LIMIT 1) AS n"
#define INODE_COPY_KEY "min(0, coalesce((SELECT min(ino) FROM inodes), 0)) - 1"
/* the nearest row copied into leaf ?2 under key k, unless it is the
 * leaf's own already, or a whiteout */
#define INODE_COPY_UP(k)                                                     \
	"INSERT INTO inodes(ino, ver, base, nspace, mode, uid, gid, nlink, " \
	"size, rdev, alloc, atime, mtime, ctime, target) SELECT " k ", "     \
	"CAST(?2 AS bigint), CAST(?1 AS bigint), nspace, mode, uid, gid, "   \
	"nlink, size, rdev, alloc, atime, mtime, ctime, target "             \
	"FROM " INODE_NEAREST("?1", "?2") " WHERE n.ver <> ?2 AND n.mode <> 0"
/* after the leaf's own row went: a whiteout in leaf ?2 under key k if an
 * ancestor's row still shows */
#define INODE_WHITEOUT(k)                                                    \
	"INSERT INTO inodes(ino, ver, base, nspace, mode, uid, gid, nlink, " \
	"size, rdev, alloc, atime, mtime, ctime) SELECT " k ", CAST(?2 AS "  \
	"bigint), CAST(?1 AS bigint), nspace, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 " \
	"FROM " INODE_NEAREST("?1", "?2") " WHERE n.mode <> 0"
/* the nearest row of entry (?1, ?2) on the chain of v, a whiteout (ino 0)
 * too */
#define ENTRY_NEAREST(v)                                                      \
	"(SELECT parent, name, ver, ino FROM dentries WHERE parent = ?1 AND " \
	"name = ?2 AND " ON_CHAIN("dentries.ver",                             \
				  v) " ORDER BY ver DESC LIMIT 1) AS n"
/* the columns of an inode's row after its number and namespace */
#define INODE_ATTRS(a)                                               \
	a ".mode, " a ".uid, " a ".gid, " a ".nlink, " a ".size, " a \
	  ".rdev, " a ".alloc, " a ".atime, " a ".mtime, " a ".ctime"
/* an entry of the root with its namespace and the first row of the
 * namespace's root */
#define ROOT_ENTRY                                                          \
	"dentries d JOIN nspaces n ON n.id = d.ino JOIN inodes i ON i.ino " \
	"= n.root"
#define INODE_COLS(a)                                                   \
	"coalesce(" a ".base, " a ".ino), " a ".nspace, " a ".mode, " a \
	".uid, " a ".gid, " a ".nlink, " a ".size, " a ".rdev, " a      \
	".alloc, " a ".atime, " a ".mtime, " a ".ctime"
#define INODE_CHANGE_WHERE(where)                                     \
	"UPDATE inodes SET "                                          \
	"mode = CASE WHEN (?13 & 1) <> 0 THEN ?3 ELSE mode END, "     \
	"uid = CASE WHEN (?13 & 2) <> 0 THEN ?4 ELSE uid END, "       \
	"gid = CASE WHEN (?13 & 4) <> 0 THEN ?5 ELSE gid END, "       \
	"nlink = nlink + ?6, "                                        \
	"size = CASE WHEN (?13 & 8) <> 0 THEN ?7 ELSE size END, "     \
	"alloc = CASE WHEN (?13 & 8) <> 0 THEN ?9 ELSE alloc END, "   \
	"atime = CASE WHEN (?13 & 16) <> 0 THEN ?10 ELSE atime END, " \
	"mtime = CASE WHEN (?13 & 32) <> 0 THEN ?11 ELSE mtime END, " \
	"ctime = CASE WHEN (?13 & 64) <> 0 THEN ?12 ELSE ctime END "  \
	"WHERE " where

/* A row of version @ver filed in another namespace than the first row
 * @i of its inode: the root directory's in version 0, another's in a
 * version of its namespace (versions.nspace) */
#define MISFILED(ver, i)                                                       \
	"CASE WHEN " i ".ino = 1 THEN " ver " <> 0 ELSE NOT EXISTS (SELECT 1 " \
	"FROM ver_anc a JOIN versions v ON v.id = a.anc WHERE a.ver = " ver    \
	" AND v.nspace = " i ".nspace) END"
#define MISFILED_IN(from, ver, i) \
	"(SELECT count(*) FROM " from " WHERE " MISFILED(ver, i) ")"

static const char *const inode_text[I_COUNT] = {
	[I_INODE_GET] = "SELECT ino, nspace, mode, uid, gid, nlink, size, "
			"rdev, alloc, atime, mtime, ctime FROM inodes "
			"WHERE ino = ?1 AND " VER_IS("ver", "?2"),
	/* by number alone (no version named: the row of the version of
	 * the inode's rows, in one statement, as an inode the kernel names
	 * by number is read) */
	[I_INODE_GET_ANY] = "SELECT ino, nspace, mode, uid, gid, nlink, size, "
			    "rdev, alloc, atime, mtime, ctime FROM inodes "
			    "WHERE ino = ?1",
	[I_INODE_PUT] =
		"INSERT INTO inodes(ino, ver, nspace, mode, uid, gid, nlink, "
		"size, rdev, alloc, atime, mtime, ctime) VALUES (?1, ?13, "
		"?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON "
		"CONFLICT(ino) DO UPDATE SET mode = ?3, uid = ?4, gid = ?5, "
		"nlink = ?6, size = ?7, rdev = ?8, alloc = ?9, atime = ?10, "
		"mtime = ?11, ctime = ?12",
	[I_INODE_DEL] =
		"DELETE FROM inodes WHERE ino = ?1 AND " VER_IS("ver", "?2"),
	/* the link count moved by a delta, the fields of ?13 written */
	[I_INODE_UPDATE] = INODE_CHANGE " RETURNING nlink",
	/* the same, failing when the row is gone (PostgreSQL: its COMMIT
	 * goes in the same pipeline, meta_inode_update_commit()) */
	[I_INODE_UPDATE_SURE] = INODE_CHANGE " RETURNING nlink",
	/* the same with no answer: nothing when the row is gone (another
	 * node removed the inode; never made again, nameless) */
	[I_INODE_CHANGE] = INODE_CHANGE,
	[I_INODE_DEL_X] =
		"DELETE FROM xattrs WHERE ino = ?1 AND " VER_IS("ver", "?2"),
	[I_MAX_INO] = "SELECT coalesce(max(ino), 0) FROM inodes",
	[I_ORPHANS] = META_ORPHANS_SQL,
	/* linked by its count, named by no entry (the root aside; a
	 * namespace's root is named by its row in nspaces, which the
	 * root's entry names) */
	[I_NAMELESS] = "SELECT coalesce(base, ino) FROM inodes WHERE nlink > 0 "
		       "AND ino <> 1 EXCEPT SELECT ino FROM dentries EXCEPT "
		       "SELECT root FROM nspaces ORDER BY 1",
	/* block or xattr rows of an inode that has no row */
	[I_HOMELESS] = "SELECT ino FROM extents b WHERE NOT EXISTS (SELECT 1 "
		       "FROM inodes i WHERE i.ino = b.ino) UNION SELECT ino "
		       "FROM xattrs x WHERE NOT EXISTS (SELECT 1 FROM inodes "
		       "i WHERE i.ino = x.ino) ORDER BY 1",
	/* every row of the inode, in whatever version */
	[I_UNNAME] = "UPDATE inodes SET nlink = 0 WHERE (ino = ?1 OR base = "
		     "?1) AND mode <> 0 AND NOT EXISTS (SELECT 1 FROM "
		     "dentries WHERE ino = ?1) AND NOT EXISTS (SELECT 1 "
		     "FROM nspaces WHERE root = ?1)",
	[I_TARGET_SET] = "UPDATE inodes SET target = ?2 WHERE ino = ?1 "
			 "AND " VER_IS("ver", "?3"),
	[I_TARGET_GET] = "SELECT target FROM inodes WHERE ino = ?1 AND " VER_IS(
		"ver", "?2"),
	[I_DENTRY_LOOKUP] = "SELECT ino FROM dentries WHERE parent = ?1 AND "
			    "name = ?2 AND " VER_IS("ver", "?3"),
	[I_DENTRY_ROW] = "SELECT i.ino, i.nspace, i.mode, i.uid, i.gid, "
			 "i.nlink, i.size, i.rdev, i.alloc, i.atime, i.mtime, "
			 "i.ctime FROM dentries d JOIN inodes i "
			 "ON i.ino = d.ino WHERE d.parent = ?1 AND d.name = ?2 "
			 "AND " VER_IS("d.ver", "?3"),
	/* the root's entries name namespaces (nspaces.id), each seen as
	 * its root's row with the namespace's id (branches share a root) */
	[I_DENTRY_ROW_ROOT] = "SELECT i.ino, n.id, " INODE_ATTRS(
		"i") " FROM " ROOT_ENTRY " WHERE d.parent = ?1 AND d.name = ?2 "
		     "AND " VER_IS("d.ver", "?3"),
	[I_READDIR_ROOT] = "SELECT d.id, d.name, i.ino, n.id, " INODE_ATTRS(
		"i") " FROM " ROOT_ENTRY " WHERE d.parent = ?1 AND d.id > ?2 "
		     "AND " VER_IS("d.ver", "?4") " ORDER BY d.id LIMIT ?3",
	[I_DENTRY_INSERT] = "INSERT INTO dentries(parent, name, ver, ino) "
			    "VALUES (?1, ?2, ?4, ?3)",
	/* an entry changed only while it names the inode the node looked
	 * up (?3, or ?4, ?5): of another node's rename over it, or unlink,
	 * and this node's change, one fails (ENOENT) and is run again, so
	 * that no link is taken from, nor an entry pointed at, an inode
	 * the name no longer has */
	[I_DENTRY_DELETE] = "DELETE FROM dentries WHERE parent = ?1 AND "
			    "name = ?2 AND ino = ?3 AND " VER_IS("ver", "?4"),
	[I_DENTRY_SET_INO] =
		"UPDATE dentries SET ino = ?3 WHERE parent = ?1 "
		"AND name = ?2 AND ino = ?4 AND " VER_IS("ver", "?5"),
	[I_DENTRY_MOVE] = "UPDATE dentries SET parent = ?3, name = ?4 WHERE "
			  "parent = ?1 AND name = ?2 AND ino = ?5 AND " VER_IS(
				  "ver", "?6"),
	[I_DIR_EMPTY] = "SELECT 1 FROM dentries WHERE parent = ?1 AND " VER_IS(
		"ver", "?2") " LIMIT 1",
	/* an entry with its inode's row: readdirplus in one statement */
	[I_READDIR] = "SELECT d.id, d.name, i.ino, i.nspace, i.mode, i.uid, "
		      "i.gid, i.nlink, i.size, i.rdev, i.alloc, i.atime, "
		      "i.mtime, i.ctime FROM dentries d JOIN inodes i "
		      "ON i.ino = d.ino WHERE d.parent = ?1 AND d.id > ?2 "
		      "AND " VER_IS("d.ver", "?4") " ORDER BY d.id LIMIT ?3",
	/* one statement: mounts sharing the store never get a number twice */
	/* the version of an inode's row (meta_ver_id(); no row: 0, as the
	 * upgrade files rows of no inode) */
	[I_VER_OF] = "SELECT coalesce((SELECT ver FROM inodes WHERE ino = ?1 "
		     "LIMIT 1), (SELECT ver FROM extents WHERE ino = ?1 LIMIT "
		     "1), (SELECT ver FROM xattrs WHERE ino = ?1 LIMIT 1), "
		     "(SELECT ver FROM dentries WHERE parent = ?1 LIMIT 1), 0)",
	/* rows in another version than their namespace's (format 2: an
	 * inode's is its namespace's, 0 for the root directory; an entry's
	 * its directory's; an extent's or an xattr's its inode's) */
	/* rows in a version of another namespace than their inode's */
	[I_MISFILED] = "SELECT " MISFILED_IN("inodes i", "i.ver", "i") " + " MISFILED_IN(
		"dentries d JOIN inodes p ON p.ino = d.parent", "d.ver",
		"p") " + " MISFILED_IN("extents e JOIN inodes i ON "
				       "i.ino = e.ino",
				       "e.ver",
				       "i") " + " MISFILED_IN("xattrs x JOIN inodes i ON i.ino = x.ino",
							      "x.ver", "i"),
	[I_INO_TAKE] = "UPDATE config SET value = max(value, ?1) + ?2 "
		       "WHERE key = 'next_ino' RETURNING value",
	/* PostgreSQL: the inodes a statement added, in the node's row of
	 * the count (core/meta/meta_pg.c, INODES_COUNT) */
	[I_INODES_MOVE] = "UPDATE config SET value = value + ?2 "
			  "WHERE key = ?1",
	/* PostgreSQL only (inode_pg) */
	[I_INODE_NOTIFY] = "SELECT ?1, ?2 WHERE 0",
	/* format 4, a version with a chain: the nearest row read (its
	 * first row's number, whichever row it is) */
	[I_INODE_GET_CHAIN] =
		"SELECT coalesce(base, ino), nspace, mode, uid, gid, nlink, "
		"size, rdev, alloc, atime, mtime, ctime FROM " INODE_NEAREST(
			"?1", "?2"),
	[I_INODE_COPY_UP] = INODE_COPY_UP(INODE_COPY_KEY),
	/* the leaf's own row (its first, or its copy) changed */
	[I_INODE_UPDATE_LEAF] =
		INODE_CHANGE_WHERE("(ino = ?1 OR base = ?1) AND " VER_IS(
			"ver", "?14")) " AND mode <> 0 RETURNING nlink",
	[I_INODE_DEL_LEAF] = "DELETE FROM inodes WHERE (ino = ?1 OR base = "
			     "?1) AND " VER_IS("ver", "?2"),
	[I_INODE_WHITEOUT] = INODE_WHITEOUT(INODE_COPY_KEY),
	/* meta_inode_put() through a chain: an inode's first row if it has
	 * none (a new inode), then its copy into leaf ?13 (INODE_COPY_UP,
	 * run before this one), which takes the fields */
	[I_INODE_PUT_FIRST] =
		"INSERT INTO inodes(ino, ver, nspace, mode, uid, gid, nlink, "
		"size, rdev, alloc, atime, mtime, ctime) VALUES (?1, ?13, ?2, "
		"?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT(ino) "
		"DO NOTHING",
	[I_INODE_PUT_LEAF] = "UPDATE inodes SET mode = ?3, uid = ?4, gid = "
			     "?5, nlink = ?6, size = ?7, rdev = ?8, alloc = "
			     "?9, atime = ?10, mtime = ?11, ctime = ?12 WHERE "
			     "(ino = ?1 OR base = ?1) AND ver = ?13 AND mode "
			     "<> 0 AND nspace = ?2",
	[I_TARGET_GET_CHAIN] =
		"SELECT target FROM inodes WHERE ino = " INODE_KEY(
			"?1", "?2") " AND mode <> 0",
	/* entries through a chain (?1 parent, ?2 name), as their
	 * statements without it, their parameters the same */
	[I_DENTRY_LOOKUP_CHAIN] =
		"SELECT n.ino FROM " ENTRY_NEAREST("?3") " WHERE n.ino <> 0",
	[I_DENTRY_ROW_CHAIN] = "SELECT " INODE_COLS("i") " FROM " ENTRY_NEAREST(
		"?3") " JOIN inodes i ON i.ino = " INODE_KEY("n.ino",
							     "?3") " "
								   "WHERE n.ino <> "
								   "0 AND i.mode "
								   "<> 0",
	/* an anti-join: a row shows unless a deeper one has its name */
	[I_READDIR_CHAIN] =
		"SELECT d.id, d.name, " INODE_COLS("i") " FROM dentries d JOIN inodes i ON i.ino = " INODE_KEY("d.ino", "?4") " WHERE d.parent = ?1 AND d.id > ?2 AND " ON_CHAIN(
			"d.ver",
			"?4") " AND d.ino <> 0 AND i.mode <> 0 AND " ENTRY_SHOWS("d",
										 "?4") " ORDER BY d.id LIMIT ?3",
	[I_DIR_EMPTY_CHAIN] =
		"SELECT 1 FROM dentries d WHERE d.parent = ?1 "
		"AND " ON_CHAIN("d.ver", "?2") " AND d.ino <> 0 AND " ENTRY_SHOWS(
			"d", "?2") " LIMIT 1",
	/* the leaf's own row of a name no version above shows: a new one,
	 * or over the leaf's whiteout (no change: the name is taken) */
	[I_DENTRY_PUT_LEAF] =
		"INSERT INTO dentries(parent, name, ver, ino) VALUES (?1, ?2, "
		"?4, ?3) ON CONFLICT(parent, name, ver) DO UPDATE SET ino = "
		"excluded.ino WHERE dentries.ino = 0",
	[I_DENTRY_DEL_LEAF] = "DELETE FROM dentries WHERE parent = ?1 AND "
			      "name = ?2 AND " VER_IS("ver", "?3"),
	/* after the leaf's own row went: a whiteout where an ancestor's
	 * row would show */
	[I_DENTRY_WHITEOUT] =
		"INSERT INTO dentries(parent, name, ver, ino) SELECT "
		"n.parent, n.name, CAST(?3 AS bigint), 0 FROM " ENTRY_NEAREST(
			"?3") " WHERE n.ino <> 0",
	/* the name's nearest row, naming ?4, made to name ?3 in leaf ?5 */
	[I_DENTRY_SET_INO_CHAIN] =
		"INSERT INTO dentries(parent, name, ver, ino) SELECT "
		"n.parent, n.name, CAST(?5 AS bigint), CAST(?3 AS bigint) "
		"FROM " ENTRY_NEAREST("?5") " WHERE n.ino = ?4 ON "
					    "CONFLICT(parent, name, ver) DO "
					    "UPDATE SET ino = excluded.ino",
};

/* The statement that reads through @v's chain for @id, if @v has one
 * (format 4: the same parameters), else @id. */
static int in_chain(const struct meta_ver *v, int id)
{
	static const int chain[I_COUNT] = {
		[I_DENTRY_LOOKUP] = I_DENTRY_LOOKUP_CHAIN,
		[I_DENTRY_ROW] = I_DENTRY_ROW_CHAIN,
		[I_READDIR] = I_READDIR_CHAIN,
		[I_DIR_EMPTY] = I_DIR_EMPTY_CHAIN,
		[I_DENTRY_SET_INO] = I_DENTRY_SET_INO_CHAIN,
	};

	return meta_chained(v) && chain[id] ? chain[id] : id;
}

static const char *const inode_pg[I_COUNT] = {
	/* only a new inode's row on a shared store (its number taken from
	 * the store's counter), counted by I_INODES_MOVE: a row that is
	 * there already is an error (EEXIST), never counted twice */
	[I_INODE_PUT] =
		"INSERT INTO inodes(ino, ver, nspace, mode, uid, gid, nlink, "
		"size, rdev, alloc, atime, mtime, ctime) VALUES (?1, ?13, "
		"?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	/* other nodes' kernels drop what they cache of inode ?2, changed by
	 * node ?1 (core/cluster/watch.c), if there are other nodes: sent with the
	 * change, in place of a trigger function that every update of a
	 * row (a directory's times in every create) would call */
	[I_INODE_NOTIFY] = "SELECT pg_notify('tally_inval', 'i ' || "
			   "CAST(?1 AS bigint) || ' ' || CAST(?2 AS bigint)) "
			   "WHERE EXISTS (SELECT 1 FROM sessions WHERE id <> "
			   "CAST(?1 AS bigint))",
	/* an error when it removes nothing: another node removed the name
	 * first (core/meta/meta_pg.c, ONE_ENTRY); it has no answer to wait for */
	[I_DENTRY_DELETE] =
		"WITH d AS (DELETE FROM dentries WHERE parent = "
		"?1 AND name = ?2 AND ino = ?3 AND " VER_IS(
			"ver", "?4") " RETURNING 1) SELECT "
				     "tally_one_entry(count(*)) FROM d",
	[I_INO_TAKE] = "UPDATE config SET value = greatest(value, ?1) + ?2 "
		       "WHERE key = 'next_ino' RETURNING value",
	/* a sequence of its own: nodes copy up at once */
	[I_INODE_COPY_UP] = INODE_COPY_UP("-nextval('inode_copies')"),
	[I_INODE_WHITEOUT] = INODE_WHITEOUT("-nextval('inode_copies')"),
	/* no row: no_data_found (ENOENT) from tally_one_entry(), so that
	 * the COMMIT sent with it commits nothing */
	[I_INODE_UPDATE_SURE] = "WITH u AS (" INODE_CHANGE " RETURNING nlink) "
				"SELECT (SELECT nlink FROM u) FROM (SELECT "
				"tally_one_entry(count(*)) FROM u) AS one",
};

const struct meta_sql meta_inode_sql = { META_INODE, I_COUNT, inode_text,
					 inode_pg };

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

/* The inode row of the current row of @s, from column @c on (ino,
 * nspace, mode, uid, gid, nlink, size, rdev, alloc, atime, mtime,
 * ctime). */
static void inode_cols(struct meta_st *s, int c, struct meta_inode *out)
{
	memset(out, 0, sizeof(*out));
	out->ino = (uint64_t)meta_col_int(s, c);
	out->nspace = (uint64_t)meta_col_int(s, c + 1);
	out->mode = (uint32_t)meta_col_int(s, c + 2);
	out->uid = (uint32_t)meta_col_int(s, c + 3);
	out->gid = (uint32_t)meta_col_int(s, c + 4);
	out->nlink = (uint32_t)meta_col_int(s, c + 5);
	out->size = (uint64_t)meta_col_int(s, c + 6);
	out->rdev = (uint64_t)meta_col_int(s, c + 7);
	out->alloc = (uint64_t)meta_col_int(s, c + 8);
	out->atime = ns_to_ts(meta_col_int(s, c + 9));
	out->mtime = ns_to_ts(meta_col_int(s, c + 10));
	out->ctime = ns_to_ts(meta_col_int(s, c + 11));
}

/* The inode row that bound statement @s reads (-ENOENT: none). */
static int inode_row(struct meta *m, struct meta_st *s, const char *what,
		     struct meta_inode *out)
{
	int rc = meta_step(m, s, what);

	if (rc <= 0)
		return rc ? rc : -ENOENT;
	inode_cols(s, 0, out);
	meta_reset(s);
	return 0;
}

/* Statement @id with ?1 = @a and ?2 = @b run (@later: with the next). */
static int run_pair(struct meta *m, int id, int64_t a, int64_t b, bool later,
		    const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt_pair(m, &meta_inode_sql, id, a, b, &s);

	if (rc)
		return rc;
	return later ? meta_run_later(m, s, what) : meta_run(m, s, what);
}

int meta_inode_get(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   struct meta_inode *out)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_inode_sql,
			   meta_chained(v) ? I_INODE_GET_CHAIN
			   : v		   ? I_INODE_GET
					   : I_INODE_GET_ANY,
			   &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)ino);
	if (v)
		meta_bind_int(s, 2, v->id);
	rc = inode_row(m, s, "inode read", out);
	/* a whiteout: removed in a version on the chain */
	return !rc && meta_chained(v) && out->mode == 0 ? -ENOENT : rc;
}

/* Statement @id with the fields of @in bound (?6: @nlink). */
static int inode_stmt(struct meta *m, int id, const struct meta_inode *in,
		      int64_t nlink, struct meta_st **out)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_inode_sql, id, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)in->ino);
	meta_bind_int(s, 2, (int64_t)in->nspace);
	meta_bind_int(s, 3, in->mode);
	meta_bind_int(s, 4, in->uid);
	meta_bind_int(s, 5, in->gid);
	meta_bind_int(s, 6, nlink);
	meta_bind_int(s, 7, (int64_t)in->size);
	meta_bind_int(s, 8, (int64_t)in->rdev);
	meta_bind_int(s, 9, (int64_t)in->alloc);
	meta_bind_int(s, 10, ts_to_ns(&in->atime));
	meta_bind_int(s, 11, ts_to_ns(&in->mtime));
	meta_bind_int(s, 12, ts_to_ns(&in->ctime));
	*out = s;
	return 0;
}

/*
 * PostgreSQL: the other nodes are told of a change of @in's @fields
 * (core/meta/meta_pg.c, the notifications), sent with it. Not a directory's
 * times or link count: every create and unlink in it changes them, and
 * they reach the other nodes by the attribute timeout.
 */
static int inode_notify(struct meta *m, const struct meta_inode *in,
			unsigned fields)
{
	struct meta_st *s;
	int rc;

	if (!m->pg || (S_ISDIR(in->mode) &&
		       !(fields & (META_F_MODE | META_F_UID | META_F_GID))))
		return 0;
	rc = meta_stmt(m, &meta_inode_sql, I_INODE_NOTIFY, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 1, m->self);
	meta_bind_int(s, 2, (int64_t)in->ino);
	return meta_run_later(m, s, "inode update");
}

/* Format 4: the update of meta_inode_update() in leaf @v, whose chain
 * has more than itself: the nearest row copied up into the leaf first. */
static int inode_update_chain(struct meta *m, const struct meta_ver *v,
			      const struct meta_inode *in, int64_t delta,
			      unsigned fields, bool commit, uint32_t *nlink)
{
	struct meta_st *s;
	int64_t got = 0;
	int rc = run_pair(m, I_INODE_COPY_UP, (int64_t)in->ino, v->id, true,
			  "inode copy-up");

	if (!rc)
		rc = inode_stmt(m, I_INODE_UPDATE_LEAF, in, delta, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 13, fields & ~(META_F_AFTER | META_F_ROW));
	meta_bind_int(s, 14, v->id);
	if (commit) {
		rc = meta_int_commit(m, s, &got, "inode update");
		if (rc >= 0) /* 1: the row is gone */
			*nlink = rc || got < 0 ? 0 : (uint32_t)got;
		return rc;
	}
	rc = meta_int(m, s, &got, "inode update");
	if (!rc)
		*nlink = got < 0 ? 0 : (uint32_t)got;
	return rc;
}

int meta_inode_update(struct meta *m, const struct meta_ver *v,
		      const struct meta_inode *in, int64_t delta,
		      unsigned fields, uint32_t *nlink)
{
	struct meta_st *s;
	int64_t got, ver;
	int rc = meta_ver_id(m, v, in->ino, &ver);

	if (!rc)
		rc = inode_notify(m, in, fields);

	if (rc)
		return rc;
	if (meta_chained(v))
		return inode_update_chain(m, v, in, delta, fields, false,
					  nlink);

	/* no decision reads the count (it does not move, or a directory's
	 * goes up): no answer to wait for, the change goes with the next
	 * statement. A count that goes down is the store's: from the
	 * node's own count (which misses other nodes' changes) a directory
	 * could seem removed. Every inode's row is made by its creation
	 * (meta_inode_put()); one that is gone was removed by another node,
	 * and is not made again: a nameless row nothing would collect, or,
	 * for a file whose blocks went with it, a size read as zeros */
	if ((delta == 0 || (S_ISDIR(in->mode) && delta > 0)) &&
	    !(fields & META_F_ROW)) {
		rc = inode_stmt(m, I_INODE_CHANGE, in, delta, &s);
		if (rc)
			return rc;
		meta_bind_int(s, 13, fields & ~META_F_AFTER);
		meta_bind_int(s, 14, ver);
		*nlink = in->nlink;
		return fields & META_F_AFTER
			       ? meta_run_after(m, s, "inode update")
			       : meta_run_later(m, s, "inode update");
	}
	rc = inode_stmt(m, I_INODE_UPDATE, in, delta, &s);
	if (!rc) {
		meta_bind_int(s, 13, fields & ~META_F_AFTER);
		meta_bind_int(s, 14, ver);
		/* -ENOENT: the row is gone (-ENOLINK: a statement before
		 * failed) */
		rc = meta_int(m, s, &got, "inode update");
	}
	if (!rc)
		*nlink = got < 0 ? 0 : (uint32_t)got;
	return rc;
}

int meta_inode_update_commit(struct meta *m, const struct meta_ver *v,
			     const struct meta_inode *in, int64_t delta,
			     unsigned fields, uint32_t *nlink)
{
	struct meta_st *s;
	int64_t got = 0, ver;
	int rc = meta_ver_id(m, v, in->ino, &ver);

	if (!rc)
		rc = inode_notify(m, in, fields);
	if (!rc && meta_chained(v))
		return inode_update_chain(m, v, in, delta, fields, true, nlink);
	if (!rc)
		rc = inode_stmt(m,
				fields & META_F_ROW ? I_INODE_UPDATE_SURE
						    : I_INODE_UPDATE,
				in, delta, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 13, fields & ~(META_F_AFTER | META_F_ROW));
	meta_bind_int(s, 14, ver);
	rc = meta_int_commit(m, s, &got, "inode update");
	if (rc >= 0) /* 1: the row is gone */
		*nlink = rc || got < 0 ? 0 : (uint32_t)got;
	return rc;
}

/* PostgreSQL: @n inodes added by this node, in its row of the count. */
int meta_inodes_added(struct meta *m, int64_t n)
{
	struct meta_st *s;
	char key[16];
	int rc;

	if (!m->pg)
		return 0; /* SQLite counts by a trigger */
	rc = meta_stmt(m, &meta_inode_sql, I_INODES_MOVE, &s);
	if (rc)
		return rc;
	snprintf(key, sizeof(key), "inodes.%d", (int)(m->self & 15));
	meta_bind_text(s, 1, key);
	meta_bind_int(s, 2, n);
	return meta_run_later(m, s, "inode count");
}

int meta_ver_id(struct meta *m, const struct meta_ver *v, uint64_t ino,
		int64_t *id)
{
	struct meta_st *s;
	int rc;

	if (v) {
		*id = v->id;
		return 0;
	}
	rc = meta_stmt(m, &meta_inode_sql, I_VER_OF, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)ino);
	return meta_int(m, s, id, "version read");
}

int meta_stmt_ver(struct meta *m, const struct meta_sql *t, int id,
		  uint64_t ino, const struct meta_ver *v, int vcol,
		  struct meta_st **out)
{
	int64_t ver;
	int rc = meta_ver_id(m, v, ino, &ver);

	if (!rc)
		rc = meta_stmt(m, t, id, out);
	if (!rc) {
		meta_bind_int(*out, 1, (int64_t)ino);
		meta_bind_int(*out, vcol, ver);
	}
	return rc;
}

int meta_inode_put(struct meta *m, const struct meta_ver *v,
		   const struct meta_inode *in)
{
	/* a chain: the leaf's own row written, never an ancestor's */
	static const int chain[] = { I_INODE_PUT_FIRST, I_INODE_COPY_UP,
				     I_INODE_PUT_LEAF };
	bool c = meta_chained(v);
	struct meta_st *s;
	int rc = 0;

	for (size_t i = 0; !rc && i < (c ? 3 : 1); i++) {
		if (c && chain[i] == I_INODE_COPY_UP) {
			rc = run_pair(m, I_INODE_COPY_UP, (int64_t)in->ino,
				      v->id, true, "inode copy");
			continue;
		}
		rc = inode_stmt(m, c ? chain[i] : I_INODE_PUT, in, in->nlink,
				&s);
		/* NULL: the namespace's version (its row may not be there
		 * yet) */
		if (!rc)
			meta_bind_int(s, 13, v ? v->id : meta_ver_of(in).id);
		if (rc)
			break;
		if (c && chain[i] == I_INODE_PUT_LEAF && !m->pg) {
			/* one writer: the leaf's row is there now, unless
			 * the inode was removed in the chain (a whiteout),
			 * which no write brings back */
			rc = meta_run(m, s, "inode write");
			if (!rc && meta_changes(m) != 1) {
				log_msg(LOG_WARNING,
					"inode %" PRIu64 " write in version "
					"%" PRId64 ": no row (removed there)",
					in->ino, v->id);
				rc = -ENOENT;
			}
		} else {
			rc = meta_run_later(m, s, "inode write");
		}
	}
	/* PostgreSQL counts what it adds; a chain's put there (none yet:
	 * a shared store takes no snapshot) makes a new inode only */
	return rc ? rc : meta_inodes_added(m, 1);
}

int meta_inode_delete(struct meta *m, const struct meta_ver *v, uint64_t ino)
{
	static const int ids[] = { I_INODE_DEL_X, I_INODE_DEL };
	/* format 4, a chain: the leaf's own row, then a whiteout where an
	 * ancestor's would show */
	static const int chain[] = { I_INODE_DEL_X, I_INODE_DEL_LEAF,
				     I_INODE_WHITEOUT };
	bool c = meta_chained(v);
	size_t n = c ? sizeof(chain) / sizeof(*chain)
		     : sizeof(ids) / sizeof(*ids);
	int64_t ver;
	int rc = meta_ver_id(m, v, ino, &ver);

	/* all go with the next statement */
	for (size_t i = 0; i < n && !rc; i++)
		rc = run_pair(m, c ? chain[i] : ids[i], (int64_t)ino, ver, true,
			      i ? "inode delete" : "xattr delete");
	return rc;
}

int meta_max_ino(struct meta *m, uint64_t *max)
{
	return meta_count(m, &meta_inode_sql, I_MAX_INO, "inode scan", max);
}

int meta_inode_orphans(struct meta *m, struct meta_orphan **out, size_t *n)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_inode_sql, I_ORPHANS, &s);

	return rc ? rc : meta_orphan_rows(m, s, out, n);
}

int meta_inode_nameless(struct meta *m, uint64_t **inos, size_t *n)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_inode_sql, I_NAMELESS, &s);

	return rc ? rc : meta_int_rows(m, s, "nameless scan", inos, n);
}

int meta_inode_homeless(struct meta *m, uint64_t **inos, size_t *n)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_inode_sql, I_HOMELESS, &s);

	return rc ? rc : meta_int_rows(m, s, "homeless scan", inos, n);
}

int meta_rows_misfiled(struct meta *m, uint64_t *n)
{
	return meta_count(m, &meta_inode_sql, I_MISFILED, "version check", n);
}

int meta_inode_unname(struct meta *m, uint64_t ino)
{
	return meta_run_int_later(m, &meta_inode_sql, I_UNNAME, (int64_t)ino,
				  "inode unname");
}

int meta_target_set(struct meta *m, const struct meta_ver *v, uint64_t ino,
		    const char *target)
{
	struct meta_st *s;
	int rc = meta_stmt_ver(m, &meta_inode_sql, I_TARGET_SET, ino, v, 3, &s);

	if (rc)
		return rc;
	meta_bind_blob(s, 2, target, strlen(target));
	return meta_run(m, s, "symlink write");
}

int meta_stmt_key_name(struct meta *m, const struct meta_sql *t, int id,
		       uint64_t key, const char *name, const struct meta_ver *v,
		       int vcol, struct meta_st **out)
{
	int rc = meta_stmt_ver(m, t, id, key, v, vcol, out);

	if (!rc)
		meta_bind_name(*out, 2, name);
	return rc;
}

int meta_blob_get(struct meta *m, const struct meta_sql *t, int id,
		  uint64_t ino, const char *name, const struct meta_ver *ver,
		  int none, const char *what, char **out, size_t *len)
{
	struct meta_st *s;
	char *v;
	int rc = meta_stmt_ver(m, t, id, ino, ver, name ? 3 : 2, &s), n;

	if (rc)
		return rc;
	if (name)
		meta_bind_name(s, 2, name);
	rc = meta_step(m, s, what);
	if (rc <= 0)
		return rc ? rc : none;
	n = meta_col_bytes(s, 0);
	v = malloc((size_t)n + 1);
	if (!v) {
		meta_reset(s);
		return -ENOMEM;
	}
	if (n)
		memcpy(v, meta_col_blob(s, 0), (size_t)n);
	v[n] = '\0';
	meta_reset(s);
	*out = v;
	*len = (size_t)n;
	return 0;
}

int meta_target_get(struct meta *m, const struct meta_ver *v, uint64_t ino,
		    char **out)
{
	size_t len;

	return meta_blob_get(m, &meta_inode_sql,
			     meta_chained(v) ? I_TARGET_GET_CHAIN
					     : I_TARGET_GET,
			     ino, NULL, v, -ENOENT, "symlink read", out, &len);
}

int meta_dentry_lookup(struct meta *m, const struct meta_ver *v,
		       uint64_t parent, const char *name, uint64_t *ino)
{
	struct meta_st *s;
	int64_t got;
	int rc = meta_stmt_key_name(m, &meta_inode_sql,
				    in_chain(v, I_DENTRY_LOOKUP), parent, name,
				    v, 3, &s);

	if (rc)
		return rc;
	rc = meta_int(m, s, &got, "lookup");
	if (!rc)
		*ino = (uint64_t)got;
	return rc;
}

int meta_dentry_lookup_row(struct meta *m, const struct meta_ver *v,
			   uint64_t parent, const char *name,
			   struct meta_inode *out)
{
	struct meta_st *s;
	int rc = meta_stmt_key_name(m, &meta_inode_sql,
				    parent == 1 ? I_DENTRY_ROW_ROOT
						: in_chain(v, I_DENTRY_ROW),
				    parent, name, v, 3, &s);

	if (rc)
		return rc;
	return inode_row(m, s, "lookup", out);
}

/* ?4 = @v: the version an insert writes, the one a delete's row is in */
static int dentry_exec(struct meta *m, int id, const struct meta_ver *v,
		       uint64_t parent, const char *name, uint64_t ino,
		       const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt_key_name(m, &meta_inode_sql, id, parent, name, v, 4,
				    &s);

	if (rc)
		return rc;
	meta_bind_int(s, 3, (int64_t)ino);
	/* an insert's only answer is success or a taken name (EEXIST), a
	 * delete's success: they go with the next statement */
	return id == I_DENTRY_INSERT || id == I_DENTRY_DELETE
		       ? meta_run_later(m, s, what)
		       : meta_run(m, s, what);
}

int meta_key_name_run(struct meta *m, const struct meta_sql *t, int id,
		      const struct meta_ver *v, uint64_t key, const char *name,
		      const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt_key_name(m, t, id, key, name, v, 3, &s);

	return rc ? rc : meta_run(m, s, what);
}

/* Format 4, a chain: an entry inserted into the leaf only where no
 * version on the chain shows the name (EEXIST), over the leaf's own
 * whiteout. The versions above are frozen: a row of the leaf is all
 * another writer could add meanwhile, and the insert's conflict finds
 * it. */
static int dentry_insert_chain(struct meta *m, const struct meta_ver *v,
			       uint64_t parent, const char *name, uint64_t ino)
{
	struct meta_st *s;
	uint64_t shown;
	int rc = meta_dentry_lookup(m, v, parent, name, &shown);

	if (!rc)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	rc = meta_stmt_key_name(m, &meta_inode_sql, I_DENTRY_PUT_LEAF, parent,
				name, v, 4, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 3, (int64_t)ino);
	rc = meta_run(m, s, "entry insert");
	return !rc && meta_changes(m) == 0 ? -EEXIST : rc;
}

/* Format 4, a chain: the entry, while it names @ino, removed from the
 * leaf, and hidden by a whiteout where an ancestor's row would show
 * (ENOENT: it names another inode, or none). */
static int dentry_delete_chain(struct meta *m, const struct meta_ver *v,
			       uint64_t parent, const char *name, uint64_t ino)
{
	uint64_t got;
	int rc = meta_dentry_lookup(m, v, parent, name, &got);

	if (!rc && got != ino)
		rc = -ENOENT;
	if (!rc)
		rc = meta_key_name_run(m, &meta_inode_sql, I_DENTRY_DEL_LEAF, v,
				       parent, name, "entry delete");
	if (!rc)
		rc = meta_key_name_run(m, &meta_inode_sql, I_DENTRY_WHITEOUT, v,
				       parent, name, "entry whiteout");
	return rc;
}

int meta_dentry_insert(struct meta *m, const struct meta_ver *v,
		       uint64_t parent, const char *name, uint64_t ino)
{
	int rc = meta_chained(v) ? dentry_insert_chain(m, v, parent, name, ino)
				 : dentry_exec(m, I_DENTRY_INSERT, v, parent,
					       name, ino, "entry insert");

	/* PostgreSQL: the insert takes from other nodes the directory
	 * they knew whole (core/fs/dirnames.c) */
	return rc || !m->pg ? rc : meta_dir_unwatch(m, parent, m->self);
}

int meta_dentry_delete(struct meta *m, const struct meta_ver *v,
		       uint64_t parent, const char *name, uint64_t ino)
{
	if (meta_chained(v))
		return dentry_delete_chain(m, v, parent, name, ino);
	return dentry_exec(m, I_DENTRY_DELETE, v, parent, name, ino,
			   "entry delete");
}

int meta_dentry_set_ino(struct meta *m, const struct meta_ver *v,
			uint64_t parent, const char *name, uint64_t old,
			uint64_t ino)
{
	struct meta_st *s;
	int rc = meta_stmt_key_name(m, &meta_inode_sql,
				    in_chain(v, I_DENTRY_SET_INO), parent, name,
				    v, 5, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 3, (int64_t)ino);
	meta_bind_int(s, 4, (int64_t)old);
	rc = meta_run(m, s, "entry update");
	/* the entry is gone, or names another inode now */
	return !rc && meta_changes(m) == 0 ? -ENOENT : rc;
}

int meta_dentry_move(struct meta *m, const struct meta_ver *v, uint64_t parent,
		     const char *name, uint64_t ino, uint64_t newparent,
		     const char *newname)
{
	struct meta_st *s;
	int rc;

	/* a chain: a removal and an insert (the entry's cookie is new) */
	if (meta_chained(v)) {
		rc = dentry_delete_chain(m, v, parent, name, ino);
		return rc ? rc
			  : dentry_insert_chain(m, v, newparent, newname, ino);
	}
	rc = meta_stmt_key_name(m, &meta_inode_sql, I_DENTRY_MOVE, parent, name,
				v, 6, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 3, (int64_t)newparent);
	meta_bind_name(s, 4, newname);
	meta_bind_int(s, 5, (int64_t)ino);
	rc = meta_run(m, s, "entry move");
	/* the entry is gone, or names another inode now */
	return !rc && meta_changes(m) == 0 ? -ENOENT : rc;
}

int meta_dir_empty(struct meta *m, const struct meta_ver *v, uint64_t ino)
{
	struct meta_st *s;
	int64_t one;
	int rc = meta_stmt_ver(m, &meta_inode_sql, in_chain(v, I_DIR_EMPTY),
			       ino, v, 2, &s);

	if (rc)
		return rc;
	rc = meta_int(m, s, &one, "directory scan");
	if (rc == -ENOENT)
		return 1;
	return rc;
}

int meta_readdir(struct meta *m, const struct meta_ver *v, uint64_t parent,
		 int64_t after,
		 int (*fn)(void *ctx, int64_t cookie, const char *name,
			   const struct meta_inode *md),
		 void *ctx)
{
	/* in chunks, growing: a reader that stops after a few entries (a
	 * 4 KiB readdirplus buffer takes about 25) does not make the
	 * engine produce the whole directory, and a long listing takes few
	 * statements */
	int64_t limit = 32, ver;
	int rc = meta_ver_id(m, v, parent, &ver), ret = 0;

	if (rc)
		return rc;

	for (;;) {
		struct meta_st *s;
		int64_t rows = 0;

		rc = meta_stmt(m, &meta_inode_sql,
			       parent == 1 ? I_READDIR_ROOT
					   : in_chain(v, I_READDIR),
			       &s);
		if (rc)
			return rc;
		meta_bind_int(s, 1, (int64_t)parent);
		meta_bind_int(s, 2, after);
		meta_bind_int(s, 3, limit);
		meta_bind_int(s, 4, ver);
		while (!ret && (rc = meta_step(m, s, "readdir")) > 0) {
			struct meta_inode md;
			char name[256];
			int len = meta_col_bytes(s, 1);

			rows++;
			after = meta_col_int(s, 0);
			if (len <= 0 || len > 255)
				continue;
			memcpy(name, meta_col_blob(s, 1), (size_t)len);
			name[len] = '\0';
			inode_cols(s, 2, &md);
			ret = fn(ctx, after, name, &md);
		}
		meta_reset(s);
		if (ret || rc < 0 || rows < limit)
			return ret ? ret : rc;
		if (limit < 1024)
			limit *= 2;
	}
}

int meta_ino_take(struct meta *m, uint64_t floor, uint64_t n, uint64_t *first)
{
	struct meta_st *s;
	int64_t v;
	int rc = meta_stmt(m, &meta_inode_sql, I_INO_TAKE, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)floor);
	meta_bind_int(s, 2, (int64_t)n);
	rc = meta_int(m, s, &v, "inode numbers");
	if (rc)
		return rc == -ENOENT ? -EUCLEAN : rc;
	if ((uint64_t)v > META_INO_LIMIT) {
		log_msg(LOG_ERR,
			"inode numbers are spent: %" PRIu64 " more would pass "
			"%llu",
			n, META_INO_LIMIT);
		return -ENOSPC;
	}
	*first = (uint64_t)v - n;
	return 0;
}
