/* SPDX-License-Identifier: MIT */
/*
 * The branch family of the metadata store: `branch SRC DST`, a copy of
 * a namespace's rows into a new one in one transaction (the rows its
 * one version holds, or with snapshots what its leaf shows), the copied
 * references counted.
 */
#include "core/meta/meta_int.h"

#include <errno.h>
#include <stdbool.h>

enum {
	B_TABLE,
	B_CLEAR,
	B_MAP,
	B_SHIFT,
	B_INODES,
	B_DENTRIES,
	B_BLOCKS,
	B_COUNTS,
	B_XATTRS,
	B_GONE,
	B_MAP_CHAIN,
	B_INODES_CHAIN,
	B_DENTRIES_CHAIN,
	B_BLOCKS_CHAIN,
	B_XATTRS_CHAIN,
	B_COUNT
};

/* a branch's rows: the new namespace's version, its root's new number */
#define BRANCH_VER "(SELECT new FROM temp.branch_map WHERE old = ?1)"

static const char *const branch_text[B_COUNT] = {
	/* meta_branch(), in this order: ?1 the source root; the map numbers
	 * from 0, then is shifted (?1) to the numbers taken */
	[B_TABLE] = "CREATE TEMP TABLE IF NOT EXISTS branch_map("
		    "old INTEGER PRIMARY KEY, new INTEGER NOT NULL)",
	[B_CLEAR] = "DELETE FROM temp.branch_map",
	[B_MAP] = "INSERT INTO temp.branch_map SELECT ino, ?2 - 1 + "
		  "row_number() OVER (ORDER BY ino) FROM inodes "
		  "WHERE nspace = ?1 AND nlink > 0",
	[B_SHIFT] = "UPDATE temp.branch_map SET new = new + ?1",
	[B_INODES] =
		"INSERT INTO inodes(ino, ver, nspace, mode, uid, gid, nlink, "
		"size, rdev, alloc, atime, mtime, ctime, target) SELECT m.new, " BRANCH_VER
		", " BRANCH_VER ", mode, uid, gid, nlink, size, "
		"rdev, alloc, atime, mtime, ctime, target FROM inodes i "
		"JOIN temp.branch_map m ON i.ino = m.old",
	[B_DENTRIES] =
		"INSERT INTO dentries(parent, name, ver, ino) SELECT p.new, "
		"d.name, " BRANCH_VER ", c.new FROM temp.branch_map p JOIN "
		"dentries d ON d.parent = p.old JOIN temp.branch_map c "
		"ON c.old = d.ino",
	/* CROSS JOIN: the map drives, so a branch reads the extents of its
	 * inodes by key, never all the store's (the planner has no
	 * statistics, and would scan extents_obj) */
	[B_BLOCKS] =
		"INSERT INTO extents(ino, ver, off, len, obj, shard) SELECT "
		"m.new, " BRANCH_VER ", b.off, b.len, b.obj, b.shard FROM "
		"temp.branch_map m CROSS JOIN extents b ON b.ino = m.old",
	/* the counts from the copied blocks (on PostgreSQL each statement
	 * reads the store anew: the source's could have changed) */
	[B_COUNTS] =
		"UPDATE objects SET refcount = refcount + c.n FROM "
		"(SELECT b.obj AS obj, count(*) AS n FROM temp.branch_map m "
		"CROSS JOIN extents b ON b.ino = m.new GROUP BY b.obj) AS c "
		"WHERE objects.id = c.obj",
	[B_XATTRS] = "INSERT INTO xattrs(ino, name, ver, value) SELECT m.new, "
		     "x.name, " BRANCH_VER ", x.value FROM temp.branch_map m "
		     "JOIN xattrs x ON x.ino = m.old",
	/* after the counts: copied references to objects whose rows
	 * another node deleted meanwhile (meta_refs_gone()) */
	[B_GONE] = "SELECT count(*) FROM temp.branch_map m CROSS JOIN "
		   "extents b ON b.ino = m.new WHERE NOT EXISTS "
		   "(SELECT 1 FROM objects o WHERE o.id = b.obj)",
	/* meta_branch() of a namespace with snapshots, its leaf ?3: what
	 * the leaf shows, copied. The inodes whose nearest row is no
	 * whiteout and has links, numbered as B_MAP does ... */
	[B_MAP_CHAIN] =
		"INSERT INTO temp.branch_map SELECT i.ino, ?2 - 1 + "
		"row_number() OVER (ORDER BY i.ino) FROM inodes i JOIN inodes "
		"n ON n.ino = " INODE_KEY(
			"i.ino",
			"?3") " WHERE i.nspace = ?1 "
			      "AND i.base IS NULL AND n.mode <> 0 AND n.nlink > 0",
	/* ... each one's nearest row (its target: its first row's) ... */
	[B_INODES_CHAIN] =
		"INSERT INTO inodes(ino, ver, nspace, mode, uid, gid, nlink, "
		"size, rdev, alloc, atime, mtime, ctime, target) SELECT m.new, " BRANCH_VER
		", " BRANCH_VER ", n.mode, n.uid, n.gid, n.nlink, n.size, "
		"n.rdev, n.alloc, n.atime, n.mtime, n.ctime, f.target FROM "
		"temp.branch_map m JOIN inodes f ON f.ino = m.old JOIN inodes "
		"n ON n.ino = " INODE_KEY("m.old", "?3") "",
	/* ... the entries that show (a whiteout names no inode of the map),
	 * the blocks that show, the xattrs that show */
	[B_DENTRIES_CHAIN] =
		"INSERT INTO dentries(parent, name, ver, ino) SELECT p.new, "
		"d.name, " BRANCH_VER ", c.new FROM temp.branch_map p JOIN "
		"dentries d ON d.parent = p.old JOIN temp.branch_map c "
		"ON c.old = d.ino WHERE " ON_CHAIN(
			"d.ver", "?3") " AND " ENTRY_SHOWS("d", "?3"),
	[B_BLOCKS_CHAIN] =
		"INSERT INTO extents(ino, ver, off, len, obj, shard) SELECT "
		"m.new, " BRANCH_VER ", b.off, b.len, b.obj, b.shard FROM "
		"temp.branch_map m CROSS JOIN extents b ON b.ino = m.old WHERE " BLOCK_SHOWS(
			"b", "?3"),
	[B_XATTRS_CHAIN] =
		"INSERT INTO xattrs(ino, name, ver, value) SELECT m.new, "
		"x.name, " BRANCH_VER ", x.value FROM temp.branch_map m "
		"JOIN xattrs x ON x.ino = m.old WHERE " XATTR_SHOWS("x", "?3"),
};

const struct meta_sql meta_branch_sql = { META_BRANCH, B_COUNT, branch_text,
					  NULL };

int meta_branch_table(struct meta *m)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_branch_sql, B_TABLE, &s);

	return rc ? rc : meta_run(m, s, "branch table");
}

/* The statement of step @id of a branch: through the chain of the
 * source's leaf when it has one. */
static int branch_step(int id, bool chain)
{
	if (!chain)
		return id;
	switch (id) {
	case B_MAP:
		return B_MAP_CHAIN;
	case B_INODES:
		return B_INODES_CHAIN;
	case B_DENTRIES:
		return B_DENTRIES_CHAIN;
	case B_BLOCKS:
		return B_BLOCKS_CHAIN;
	case B_XATTRS:
		return B_XATTRS_CHAIN;
	default:
		return id;
	}
}

int meta_branch(struct meta *m, uint64_t src_root, const struct meta_ver *leaf,
		const char *dst_name, uint64_t *next_ino, uint64_t *root,
		uint64_t *count)
{
	uint64_t copied = 0, first = 0;
	bool chain = meta_chained(leaf);
	int rc = 0, id;

	for (id = B_TABLE; id <= B_XATTRS && !rc; id++) {
		struct meta_st *s;

		if (id == B_SHIFT) {
			if (copied == 0)
				return -ENOENT;
			rc = meta_ino_take(m, *next_ino, copied, &first);
			if (rc)
				return rc;
		}
		rc = meta_stmt(m, &meta_branch_sql, branch_step(id, chain), &s);
		if (rc)
			return rc;
		if (id == B_SHIFT)
			meta_bind_int(s, 1, (int64_t)first);
		else if (meta_param_count(s) >= 1)
			meta_bind_int(s, 1, (int64_t)src_root);
		if (meta_param_count(s) >= 2)
			meta_bind_int(s, 2, 0);
		if (meta_param_count(s) >= 3)
			meta_bind_int(s, 3, leaf->id);
		rc = meta_run(m, s, "branch");
		if (id == B_MAP)
			copied = (uint64_t)meta_changes(m);
	}
	if (!rc)
		rc = meta_refs_gone(m, &meta_branch_sql, B_GONE, 0);
	if (!rc)
		rc = meta_inodes_added(m, (int64_t)copied);
	if (rc)
		return rc;
	/* The source root has the smallest number in its namespace. */
	*root = first;
	rc = meta_dentry_insert(m, &META_VER_ROOT, 1, dst_name, *root);
	if (rc)
		return rc;
	*next_ino = first + copied;
	*count = copied;
	return 0;
}
