/* SPDX-License-Identifier: MIT */
/*
 * The versions family of the metadata store: the tree of versions
 * (docs/design.md, section 13). A leaf frozen, as a branch point or as a
 * named snapshot, with its child the namespace's new leaf; the leaves
 * and depths of the namespaces that have chains; the snapshots.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/meta/meta_int.h"

enum {
	V_FREEZE,
	V_CHILD,
	V_ANC_CHILD,
	V_NSPACE_LEAF,
	V_LEAVES,
	V_SNAPSHOTS,
	V_SNAPSHOT_FIND,
	V_CHILDREN,
	V_ENT_SHADOWED,
	V_ENT_WHITEOUTS,
	V_ENT_RELABEL,
	V_X_GONE,
	V_X_SHADOWED,
	V_X_WHITEOUTS,
	V_X_RELABEL,
	V_INO_GONE,
	V_INO_TAKE,
	V_INO_COPIES,
	V_INO_MERGED,
	V_INO_RELABEL,
	V_TAKE_KIND,
	V_REPARENT,
	V_ANC_DROP,
	V_DROP,
	V_COUNT
};

/*
 * A merge (meta_version_merge()): frozen version ?1 (S) and its only
 * child ?2 (C) become one version, S's id, holding what C showed. Each
 * row of C replaces S's row of its key; a whiteout of C goes too when no
 * ancestor of S has a row of its key (nothing left to hide); the rest of
 * C is relabelled S. For a table of key k (columns of alias "t"):
 */
/* the strict ancestors of S */
#define ABOVE_S "(SELECT anc FROM ver_anc WHERE ver = ?1 AND anc <> ?1)"
#define SHADOWED(table, same)                              \
	"DELETE FROM " table                               \
	" WHERE ver = ?1 AND EXISTS (SELECT 1 FROM " table \
	" c WHERE c.ver = ?2 AND " same ")"
#define WHITEOUTS_LEFT(table, hole, same)                                   \
	"DELETE FROM " table " WHERE ver = ?2 AND " hole " AND NOT EXISTS " \
	"(SELECT 1 FROM " table " c WHERE c.ver IN " ABOVE_S " AND " same ")"
#define RELABEL(table) "UPDATE " table " SET ver = ?1 WHERE ver = ?2"
#define SAME_ENTRY(t) "c.parent = " t ".parent AND c.name = " t ".name"
#define SAME_XATTR(t) "c.ino = " t ".ino AND c.name = " t ".name"

/* the depth of version v: the versions on its chain */
#define DEPTH(v) "(SELECT count(*) FROM ver_anc a WHERE a.ver = " v ")"
/* C removed the inode of row t: a whiteout of it */
#define GONE_IN_C(t)                                                      \
	"EXISTS (SELECT 1 FROM inodes w WHERE w.ver = ?2 AND w.base = " t \
	".ino AND w.mode = 0)"

static const char *const version_text[V_COUNT] = {
	/* leaf ?1 frozen: a branch point (kind 2, no name), or a snapshot
	 * (kind 3) named ?2 */
	[V_FREEZE] = "UPDATE versions SET kind = ?3, name = ?2, created = "
		     "unixepoch() WHERE id = ?1 AND kind = 1",
	/* leaf ?2, child of ?1, of the same namespace and view */
	[V_CHILD] = "INSERT INTO versions(id, parent, kind, name, nspace, "
		    "view, created) SELECT CAST(?2 AS bigint), id, 1, NULL, "
		    "nspace, view, unixepoch() FROM versions WHERE id = ?1",
	[V_ANC_CHILD] = "INSERT INTO ver_anc(ver, anc) SELECT CAST(?2 AS "
			"bigint), anc FROM ver_anc WHERE ver = ?1 UNION ALL "
			"SELECT CAST(?2 AS bigint), CAST(?2 AS bigint)",
	[V_NSPACE_LEAF] = "UPDATE nspaces SET leaf = ?2 WHERE leaf = ?1",
	/* the namespaces whose leaf is not their first version */
	[V_LEAVES] = "SELECT n.id, n.leaf, (SELECT count(*) FROM ver_anc a "
		     "WHERE a.ver = n.leaf) FROM nspaces n WHERE n.leaf <> "
		     "n.id ORDER BY n.id",
	/* the snapshots of namespace ?1 (0: of every one), oldest first */
	[V_SNAPSHOTS] = "SELECT nspace, id, created, name, " DEPTH(
		"id") " FROM versions WHERE kind = 3 AND (nspace = ?1 OR ?1 "
		      "= 0) ORDER BY nspace, id",
	[V_SNAPSHOT_FIND] = "SELECT id, " DEPTH(
		"id") " FROM versions WHERE kind = 3 AND nspace = ?1 AND name = "
		      "?2",
	/* the children of ?1: how many, and the first */
	[V_CHILDREN] = "SELECT count(*), coalesce(min(id), 0) FROM versions "
		       "WHERE parent = ?1",
	[V_ENT_SHADOWED] = SHADOWED("dentries", SAME_ENTRY("dentries")),
	[V_ENT_WHITEOUTS] =
		WHITEOUTS_LEFT("dentries", "ino = 0", SAME_ENTRY("dentries")),
	[V_ENT_RELABEL] = RELABEL("dentries"),
	/* S's xattrs of an inode C removed (its whiteout hides them) */
	[V_X_GONE] =
		"DELETE FROM xattrs WHERE ver = ?1 AND " GONE_IN_C("xattrs"),
	[V_X_SHADOWED] = SHADOWED("xattrs", SAME_XATTR("xattrs")),
	[V_X_WHITEOUTS] =
		WHITEOUTS_LEFT("xattrs", "value IS NULL", SAME_XATTR("xattrs")),
	[V_X_RELABEL] = RELABEL("xattrs"),
	/* inodes: an inode's first row stays while any of its rows does.
	 * S's first rows that C whited out go (no ancestor of S has the
	 * inode, which was made in S) ... */
	[V_INO_GONE] = "DELETE FROM inodes WHERE ver = ?1 AND base IS NULL "
		       "AND EXISTS (SELECT 1 FROM inodes c WHERE c.ver = ?2 "
		       "AND c.base = inodes.ino AND c.mode = 0)",
	/* ... the others take the fields of C's copy ... */
	[V_INO_TAKE] = "UPDATE inodes SET mode = c.mode, uid = c.uid, gid = "
		       "c.gid, nlink = c.nlink, size = c.size, rdev = c.rdev, "
		       "alloc = c.alloc, atime = c.atime, mtime = c.mtime, "
		       "ctime = c.ctime, target = c.target FROM inodes c "
		       "WHERE inodes.ver = ?1 AND inodes.base IS NULL AND "
		       "c.ver = ?2 AND c.base = inodes.ino",
	/* ... S's copies that C has too go ... */
	[V_INO_COPIES] = "DELETE FROM inodes WHERE ver = ?1 AND base IS NOT "
			 "NULL AND EXISTS (SELECT 1 FROM inodes c WHERE c.ver "
			 "= ?2 AND c.base = inodes.base)",
	/* ... and C's copies whose first row is S's (or went above) */
	[V_INO_MERGED] = "DELETE FROM inodes WHERE ver = ?2 AND base IS NOT "
			 "NULL AND NOT EXISTS (SELECT 1 FROM inodes f WHERE "
			 "f.ino = inodes.base AND f.ver <> ?1)",
	[V_INO_RELABEL] = RELABEL("inodes"),
	/* S takes C's kind and name (a leaf, or a snapshot) and children */
	[V_TAKE_KIND] = "UPDATE versions SET kind = (SELECT kind FROM "
			"versions c WHERE c.id = ?2), name = (SELECT name FROM "
			"versions c WHERE c.id = ?2) WHERE id = ?1",
	[V_REPARENT] = "UPDATE versions SET parent = ?1 WHERE parent = ?2",
	/* of ?1, the child merged */
	[V_ANC_DROP] = "DELETE FROM ver_anc WHERE anc = ?1 OR ver = ?1",
	[V_DROP] = "DELETE FROM versions WHERE id = ?1",
};

const struct meta_sql meta_version_sql = { META_VERSION, V_COUNT, version_text,
					   NULL };

int meta_version_freeze(struct meta *m, int64_t leaf, const char *name,
			int64_t *child)
{
	static const int ids[] = { V_CHILD, V_ANC_CHILD, V_NSPACE_LEAF };
	struct meta_st *s;
	uint64_t id;
	int rc = meta_stmt(m, &meta_version_sql, V_FREEZE, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, leaf);
	if (name)
		meta_bind_name(s, 2, name);
	meta_bind_int(s, 3, name ? 3 : 2);
	rc = meta_run(m, s, "version freeze");
	if (!rc && meta_changes(m) != 1)
		return -EINVAL; /* not a leaf */
	if (!rc)
		rc = meta_ino_take(m, (uint64_t)leaf + 1, 1, &id);
	for (size_t i = 0; !rc && i < sizeof(ids) / sizeof(*ids); i++) {
		rc = meta_stmt_pair(m, &meta_version_sql, ids[i], leaf,
				    (int64_t)id, &s);
		if (!rc)
			rc = meta_run(m, s, "version child");
	}
	if (!rc)
		*child = (int64_t)id;
	return rc;
}

int meta_version_child(struct meta *m, int64_t parent, int64_t *child)
{
	return meta_version_freeze(m, parent, NULL, child);
}

int meta_nspace_leaves(struct meta *m,
		       int (*fn)(void *ctx, uint64_t nspace, int64_t leaf,
				 int depth),
		       void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_LEAVES, &s);

	while (!rc && (rc = meta_step(m, s, "namespace leaves")) > 0) {
		rc = fn(ctx, (uint64_t)meta_col_int(s, 0), meta_col_int(s, 1),
			(int)meta_col_int(s, 2));
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

int meta_snapshots(struct meta *m, uint64_t nspace,
		   int (*fn)(void *ctx, const struct meta_snapshot *sn),
		   void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_SNAPSHOTS, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)nspace);
	while ((rc = meta_step(m, s, "snapshot list")) > 0) {
		char name[256];
		int len = meta_col_bytes(s, 3);
		struct meta_snapshot sn = {
			.nspace = (uint64_t)meta_col_int(s, 0),
			.id = meta_col_int(s, 1),
			.created = meta_col_int(s, 2),
			.name = name,
			.depth = (int)meta_col_int(s, 4),
		};

		if (len < 0 || (size_t)len >= sizeof(name))
			len = 0;
		if (len)
			memcpy(name, meta_col_blob(s, 3), (size_t)len);
		name[len] = '\0';
		rc = fn(ctx, &sn);
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

/* Statement @id of the versions run with ?1 = @a, ?2 = @b. */
static int run_pair(struct meta *m, int id, int64_t a, int64_t b,
		    const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt_pair(m, &meta_version_sql, id, a, b, &s);

	return rc ? rc : meta_run(m, s, what);
}

int meta_version_merge(struct meta *m, int64_t ver, int64_t *child)
{
	/* entries, xattrs and extents before inodes: an entry's parent
	 * (PostgreSQL's dentries_parent_fk) goes after its entries */
	static const int rows[] = { V_ENT_SHADOWED, V_ENT_WHITEOUTS,
				    V_ENT_RELABEL,  V_X_GONE,
				    V_X_SHADOWED,   V_X_WHITEOUTS,
				    V_X_RELABEL };
	static const int inodes[] = { V_INO_GONE,   V_INO_TAKE,	   V_INO_COPIES,
				      V_INO_MERGED, V_INO_RELABEL, V_TAKE_KIND,
				      V_REPARENT };
	struct meta_st *s;
	int64_t n, c;
	size_t i;
	int rc = meta_stmt(m, &meta_version_sql, V_CHILDREN, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, ver);
	rc = meta_step(m, s, "version children");
	if (rc <= 0)
		return rc ? rc : meta_no_row("version children");
	n = meta_col_int(s, 0);
	c = meta_col_int(s, 1);
	meta_reset(s);
	rc = 0;
	if (n != 1)
		return -EBUSY; /* a branch point: not a chain */
	for (i = 0; !rc && i < sizeof(rows) / sizeof(*rows); i++)
		rc = run_pair(m, rows[i], ver, c, "version merge");
	if (!rc)
		rc = meta_extents_merge(m, ver, c);
	for (i = 0; !rc && i < sizeof(inodes) / sizeof(*inodes); i++)
		rc = run_pair(m, inodes[i], ver, c, "version merge");
	/* the namespace whose leaf C was writes into S */
	if (!rc)
		rc = run_pair(m, V_NSPACE_LEAF, c, ver, "version merge");
	if (!rc)
		rc = meta_run_int(m, &meta_version_sql, V_ANC_DROP, c,
				  "version merge");
	if (!rc)
		rc = meta_run_int(m, &meta_version_sql, V_DROP, c,
				  "version merge");
	if (!rc)
		*child = c;
	return rc;
}

int meta_snapshot_find(struct meta *m, uint64_t nspace, const char *name,
		       struct meta_ver *v)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_SNAPSHOT_FIND, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)nspace);
	meta_bind_name(s, 2, name);
	rc = meta_step(m, s, "snapshot lookup");
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	v->id = meta_col_int(s, 0);
	v->depth = (int)meta_col_int(s, 1);
	meta_reset(s);
	return 0;
}
