/* SPDX-License-Identifier: MIT */
/*
 * The versions family of the metadata store: the tree of versions
 * (docs/design.md, section 13). A leaf frozen, as a branch point or as a
 * named snapshot, with its child the namespace's new leaf; the leaves
 * and depths of the namespaces that have chains; the snapshots.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/meta/meta_int.h"
#include "core/util/array.h"
#include "core/util/log.h"

enum {
	V_FREEZE,
	V_ID_INIT,
	V_ID_TAKE,
	V_BORN_SET,
	V_BORN_GET,
	V_BORN_DROP,
	V_CHILD,
	V_ANC_CHILD,
	V_NSPACE_LEAF,
	V_LEAVES,
	V_NSPACE_VER,
	V_SNAPSHOTS,
	V_SNAPSHOT_FIND,
	V_VIEW_INIT,
	V_VIEW_TAKE,
	V_VIEW_SET,
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
	V_LATER,
	V_ON_CHAIN,
	V_GONE_NAMES,
	V_GONE_ENT,
	V_GONE_X,
	V_GONE_INO,
	V_SET_PARENT,
	V_CHANGED_INOS,
	V_NAMES_OF,
	V_AUTO_LIST,
	V_AUTO_DROP,
	V_BRANCH_LEAF,
	V_NSVIEW_INIT,
	V_NSVIEW_TAKE,
	V_NSPACE_ADD,
	V_NSPACE_DEL,
	V_ROOT_ENT_DEL,
	V_ROOT_NAME,
	V_PARENT_KIND,
	V_KIND,
	V_COMMON,
	V_UNNAME,
	V_ANC_CUT,
	V_ALL_ENT,
	V_ALL_X,
	V_ALL_INO,
	V_COUNT
};

/*
 * A merge (meta_version_merge()): frozen version ?1 (S) and its only
 * child ?2 (C) become one version, S's id, holding what C showed. Each
 * row of C replaces S's row of its key; a whiteout of C goes too when no
 * ancestor of S has a row of its key (nothing left to hide); the rest of
 * C is relabelled S. Every statement is driven by C's rows (IN_C: the
 * partial indexes), S's found by their keys: the cost is C's rows.
 */
/* the strict ancestors of S */
#define ABOVE_S "(SELECT anc FROM ver_anc WHERE ver = ?1 AND anc <> ?1)"
/* the inodes C removed (its whiteouts of them) */
#define GONE_IN_C                                                          \
	"(SELECT w.base FROM inodes w WHERE " IN_C("w.ver") " AND w.mode " \
							    "= 0)"
/* a row of version ?1, one made by a freeze (the partial indexes) */
#define OF_V1(col) col " >= " META_LATER_LIT " AND " col " = ?1"
/* the depth of version v: the versions on its chain */
#define DEPTH(v) "(SELECT count(*) FROM ver_anc a WHERE a.ver = " v ")"

static const char *const version_text[V_COUNT] = {
	/* leaf ?1 frozen: a branch point (kind 2, no name), or a snapshot
	 * (kind 3) named ?2 */
	[V_FREEZE] = "UPDATE versions SET kind = ?3, name = ?2, created = "
		     "unixepoch() WHERE id = ?1 AND kind = 1",
	/* the ids of versions made by a freeze: META_VER_CHILD_MIN on */
	[V_ID_INIT] = "INSERT OR IGNORE INTO config(key, value) VALUES "
		      "('next_version', " META_LATER_LIT ")",
	[V_ID_TAKE] = "UPDATE config SET value = value + 1 WHERE key = "
		      "'next_version' RETURNING value - 1",
	/* the first inode number a leaf ?1 gave (config 'born.ID'): an
	 * inode from ?2 on was made in it, and has no row in any other
	 * version (0, or no row: a namespace's first version) */
	[V_BORN_SET] = "INSERT INTO config(key, value) VALUES ('born.' || "
		       "CAST(?1 AS bigint), ?2) ON CONFLICT(key) DO UPDATE SET "
		       "value = excluded.value",
	[V_BORN_GET] = "SELECT coalesce((SELECT value FROM config WHERE key = "
		       "'born.' || CAST(?1 AS bigint)), 0)",
	[V_BORN_DROP] = "DELETE FROM config WHERE key = 'born.' || CAST(?1 AS "
			"bigint)",
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
		     "WHERE a.ver = n.leaf), coalesce((SELECT value FROM "
		     "config WHERE key = 'born.' || n.leaf), 0), n.view, "
		     "n.root FROM nspaces n WHERE n.leaf <> n.id OR n.view "
		     "<> 0 OR n.root <> n.id ORDER BY n.id",
	/* the leaf of namespace ?1 and its depth */
	[V_NSPACE_VER] = "SELECT leaf, " DEPTH("leaf") " FROM nspaces WHERE "
						       "id = ?1",
	/* the snapshots of namespace ?1 (0: of every one), oldest first */
	[V_SNAPSHOTS] = "SELECT nspace, id, created, name, " DEPTH(
		"id") ", view FROM versions WHERE kind = 3 AND (nspace = ?1 "
		      "OR ?1 = 0) ORDER BY nspace, id",
	[V_SNAPSHOT_FIND] = "SELECT id, " DEPTH(
		"id") " FROM versions WHERE kind = 3 AND nspace = ?1 AND name = "
		      "?2",
	/* a snapshot's view (13.3): given once, never again (config
	 * 'next_view', made by the first or at open: META_VIEWS_GIVEN) */
	[V_VIEW_INIT] = "INSERT INTO config(key, value) VALUES ('next_view', "
			"1) ON CONFLICT(key) DO NOTHING",
	[V_VIEW_TAKE] = "UPDATE config SET value = value + 1 WHERE key = "
			"'next_view' RETURNING value - 1",
	[V_VIEW_SET] = "UPDATE versions SET view = ?2 WHERE id = ?1",
	/* the children of ?1: how many, and the first */
	[V_CHILDREN] = "SELECT count(*), coalesce(min(id), 0) FROM versions "
		       "WHERE parent = ?1",
	[V_ENT_SHADOWED] =
		"DELETE FROM dentries WHERE id IN (SELECT s.id FROM dentries c "
		"JOIN dentries s ON s.parent = c.parent AND s.name = c.name "
		"AND s.ver = ?1 WHERE " IN_C("c.ver") ")",
	[V_ENT_WHITEOUTS] =
		"DELETE FROM dentries WHERE id IN (SELECT c.id FROM dentries c "
		"WHERE " IN_C(
			"c.ver") " AND c.ino = 0 AND NOT EXISTS (SELECT 1 "
				 "FROM dentries a WHERE a.parent = "
				 "c.parent AND a.name = c.name AND a.ver "
				 "IN " ABOVE_S "))",
	[V_ENT_RELABEL] = "UPDATE dentries SET ver = ?1 WHERE " IN_C("ver"),
	/* S's xattrs of an inode C removed (its whiteout hides them) */
	[V_X_GONE] = "DELETE FROM xattrs WHERE ino IN " GONE_IN_C " AND ver "
		     "= ?1",
	[V_X_SHADOWED] = "DELETE FROM xattrs WHERE ino IN (SELECT c.ino FROM "
			 "xattrs c WHERE " IN_C("c.ver") ") AND ver = ?1 AND "
							 "EXISTS (SELECT 1 "
							 "FROM xattrs c WHERE "
							 "c.ino = xattrs.ino "
							 "AND c.name = "
							 "xattrs.name AND "
							 "c.ver = ?2)",
	[V_X_WHITEOUTS] =
		"DELETE FROM xattrs WHERE ino IN (SELECT c.ino FROM xattrs c "
		"WHERE " IN_C("c.ver") " AND c.value IS NULL) AND ver = ?2 AND "
				       "value IS NULL AND NOT EXISTS (SELECT "
				       "1 FROM xattrs a WHERE a.ino = "
				       "xattrs.ino AND a.name = xattrs.name "
				       "AND a.ver IN " ABOVE_S ")",
	[V_X_RELABEL] = "UPDATE xattrs SET ver = ?1 WHERE " IN_C("ver"),
	/* inodes: an inode's first row stays while any of its rows does.
	 * S's first rows that C whited out go (no ancestor of S has the
	 * inode, which was made in S) ... */
	[V_INO_GONE] = "DELETE FROM inodes WHERE ino IN " GONE_IN_C " AND ver "
		       "= ?1 AND base IS NULL",
	/* ... the others take the fields of C's copy ... */
	[V_INO_TAKE] = "UPDATE inodes SET mode = c.mode, uid = c.uid, gid = "
		       "c.gid, nlink = c.nlink, size = c.size, rdev = c.rdev, "
		       "alloc = c.alloc, atime = c.atime, mtime = c.mtime, "
		       "ctime = c.ctime, target = c.target FROM inodes c "
		       "WHERE " IN_C("c.ver") " AND c.base = inodes.ino AND "
					      "inodes.ver = ?1 AND "
					      "inodes.base IS NULL",
	/* ... S's copies that C has too go ... */
	[V_INO_COPIES] = "DELETE FROM inodes WHERE ino IN (SELECT s.ino FROM "
			 "inodes c JOIN inodes s ON s.base = c.base AND s.ver "
			 "= ?1 WHERE " IN_C("c.ver") " AND c.base IS NOT NULL)",
	/* ... and C's copies whose first row is S's (or went above) */
	[V_INO_MERGED] = "DELETE FROM inodes WHERE ino IN (SELECT c.ino FROM "
			 "inodes c WHERE " IN_C("c.ver") " AND c.base IS NOT "
							 "NULL AND NOT EXISTS "
							 "(SELECT 1 FROM "
							 "inodes f WHERE f.ino "
							 "= c.base AND f.ver "
							 "<> ?1))",
	[V_INO_RELABEL] = "UPDATE inodes SET ver = ?1 WHERE " IN_C("ver"),
	/* S takes C's kind and name (a leaf, or a snapshot) and children */
	[V_TAKE_KIND] = "UPDATE versions SET kind = c.kind, name = c.name, "
			"created = c.created, view = c.view FROM versions c "
			"WHERE c.id = ?2 AND versions.id = ?1",
	[V_REPARENT] = "UPDATE versions SET parent = ?1 WHERE parent = ?2",
	/* of ?1, the child merged */
	[V_ANC_DROP] = "DELETE FROM ver_anc WHERE anc = ?1 OR ver = ?1",
	[V_DROP] = "DELETE FROM versions WHERE id = ?1",
	/* a rollback (meta_version_rollback()): the versions of leaf ?1's
	 * chain below snapshot ?2, the leaf first */
	[V_LATER] = "SELECT anc FROM ver_anc WHERE ver = ?1 AND anc > ?2 "
		    "ORDER BY anc DESC",
	[V_ON_CHAIN] = "SELECT count(*) FROM ver_anc WHERE ver = ?1 AND anc "
		       "= ?2",
	/* the rows of version ?1, dropped: the names, for the caches */
	[V_GONE_NAMES] =
		"SELECT parent, name FROM dentries WHERE " OF_V1("ver"),
	[V_GONE_ENT] = "DELETE FROM dentries WHERE " OF_V1("ver"),
	[V_GONE_X] = "DELETE FROM xattrs WHERE " OF_V1("ver"),
	[V_GONE_INO] = "DELETE FROM inodes WHERE " OF_V1("ver"),
	[V_SET_PARENT] = "UPDATE versions SET parent = ?2 WHERE id = ?1",
	/* a diff: the inodes version ?1 changed (an inode's rows, its
	 * extents, its xattrs; a copy names its inode in base) */
	[V_CHANGED_INOS] =
		"SELECT coalesce(base, ino) FROM inodes WHERE " OF_V1("ver") " UNION SELECT ino FROM extents WHERE " OF_V1(
			"ver") " UNION "
			       "SELECT ino FROM xattrs WHERE " OF_V1("ver"),
	/* the entries that may name inode ?1 in version ?2: each row of its
	 * chain (a later row of the same name may hide it) */
	[V_NAMES_OF] = "SELECT parent, name FROM dentries WHERE ino = ?1 AND "
		       "+ver IN (SELECT anc FROM ver_anc WHERE ver = ?2)",
	/* the automatic snapshots' settings: config 'autosnap.NSPACE' (the
	 * seconds between two) and 'autokeep.NSPACE' (how many are kept) */
	[V_AUTO_LIST] = "SELECT CAST(substr(a.key, 10) AS bigint), a.value, "
			"coalesce((SELECT k.value FROM config k WHERE k.key = "
			"'autokeep.' || substr(a.key, 10)), 0) FROM config a "
			"WHERE a.key LIKE 'autosnap.%' ORDER BY 1",
	[V_AUTO_DROP] = "DELETE FROM config WHERE key = 'autosnap.' || "
			"CAST(?1 AS bigint) OR key = 'autokeep.' || CAST(?1 AS "
			"bigint)",
	/* a branch (meta_version_branch()): leaf ?1 of namespace ?3,
	 * child of ?2 */
	[V_BRANCH_LEAF] = "INSERT INTO versions(id, parent, kind, name, "
			  "nspace, view, created) VALUES (?1, ?2, 1, NULL, ?3, "
			  "0, unixepoch())",
	/* the namespaces' views, from META_NSVIEW_MIN */
	[V_NSVIEW_INIT] = "INSERT INTO config(key, value) VALUES "
			  "('next_nsview', 8388608) ON CONFLICT(key) DO "
			  "NOTHING",
	[V_NSVIEW_TAKE] = "UPDATE config SET value = value + 1 WHERE key = "
			  "'next_nsview' RETURNING value - 1",
	[V_NSPACE_ADD] = "INSERT INTO nspaces(id, root, leaf, view) VALUES "
			 "(?1, ?2, ?3, ?4)",
	[V_NSPACE_DEL] = "DELETE FROM nspaces WHERE id = ?1",
	[V_ROOT_ENT_DEL] = "DELETE FROM dentries WHERE parent = 1 AND ino = "
			   "?1 AND ver = 0",
	[V_ROOT_NAME] = "SELECT name FROM dentries WHERE parent = 1 AND ino = "
			"?1 AND ver = 0",
	/* the parent of version ?1 and its kind (no parent: 0, 0) */
	[V_PARENT_KIND] = "SELECT coalesce(p.id, 0), coalesce(p.kind, 0) FROM "
			  "versions v LEFT JOIN versions p ON p.id = v.parent "
			  "WHERE v.id = ?1",
	[V_KIND] = "SELECT kind FROM versions WHERE id = ?1",
	/* the deepest common ancestor of ?1 and ?2 (ids grow from parent to
	 * child), 0 for none */
	[V_COMMON] = "SELECT coalesce(max(x.anc), 0) FROM ver_anc x JOIN "
		     "ver_anc y ON y.anc = x.anc AND y.ver = ?2 WHERE x.ver = "
		     "?1",
	/* a snapshot above a branch point, rolled back past: frozen, with
	 * no name or view */
	[V_UNNAME] = "UPDATE versions SET kind = 2, name = NULL, view = 0 "
		     "WHERE id = ?1",
	/* leaf ?1's chain cut below snapshot ?2: its ancestors between */
	[V_ANC_CUT] = "DELETE FROM ver_anc WHERE ver = ?1 AND anc > ?2 AND "
		      "anc <> ?1",
	/* the rows of a namespace's first version ?1 (no partial index:
	 * a scan, once, when the last version reading them goes) */
	[V_ALL_ENT] = "DELETE FROM dentries WHERE ver = ?1",
	[V_ALL_X] = "DELETE FROM xattrs WHERE ver = ?1",
	[V_ALL_INO] = "DELETE FROM inodes WHERE ver = ?1",
};

const struct meta_sql meta_version_sql = { META_VERSION, V_COUNT, version_text,
					   NULL };

/* The two integers of the one row of bound statement @s: 0, or -ENOENT
 * for no row. */
static int two_ints(struct meta *m, struct meta_st *s, const char *what,
		    int64_t *a, int64_t *b)
{
	int64_t v[2];
	int rc = meta_ints(m, s, what, 2, v);

	if (!rc) {
		*a = v[0];
		*b = v[1];
	}
	return rc;
}

/* The number of children of version @ver in *@n, the first in *@c. */
static int children(struct meta *m, int64_t ver, int64_t *n, int64_t *c)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_CHILDREN, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, ver);
	rc = two_ints(m, s, "version children", n, c);
	return rc == -ENOENT ? meta_no_row("version children") : rc;
}

/* The bytes only snapshot @ver holds: those its child hides (a chain: a
 * version of one child; 0 for another). */
int meta_version_own(struct meta *m, int64_t ver, uint64_t bytes[2])
{
	int64_t n, c;
	int rc = children(m, ver, &n, &c);

	bytes[0] = bytes[1] = 0;
	if (rc || n != 1 || c < META_VER_CHILD_MIN)
		return rc;
	return meta_extents_exclusive(m, ver, c, bytes);
}

/* The next value of a counter of config, made by statement @init when
 * missing and taken by @take. */
static int counter_take(struct meta *m, int init, int take, const char *what,
			int64_t *value)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, init, &s);

	if (!rc)
		rc = meta_run(m, s, what);
	if (!rc)
		rc = meta_stmt(m, &meta_version_sql, take, &s);
	return rc ? rc : meta_int(m, s, value, what);
}

/* Snapshot @ver gets a view of its own (docs/design.md 13.3). -ENOSPC
 * when every view was given. */
static int view_give(struct meta *m, int64_t ver)
{
	struct meta_st *s;
	int64_t view;
	int rc = counter_take(m, V_VIEW_INIT, V_VIEW_TAKE, "snapshot view",
			      &view);

	if (!rc && (view < 1 || view > META_VIEW_MAX)) {
		log_msg(LOG_ERR, "no view left for a snapshot (%" PRId64 ")",
			view);
		rc = -ENOSPC;
	}
	if (!rc)
		rc = meta_stmt_pair(m, &meta_version_sql, V_VIEW_SET, ver, view,
				    &s);
	return rc ? rc : meta_run(m, s, "snapshot view");
}

int meta_version_freeze(struct meta *m, int64_t leaf, const char *name,
			uint64_t born, int64_t *child)
{
	static const int ids[] = { V_CHILD, V_ANC_CHILD, V_NSPACE_LEAF };
	struct meta_st *s;
	int64_t id;
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
		rc = counter_take(m, V_ID_INIT, V_ID_TAKE, "version id", &id);
	if (!rc && id <= leaf)
		rc = meta_no_row("version id");
	for (size_t i = 0; !rc && i < sizeof(ids) / sizeof(*ids); i++) {
		rc = meta_stmt_pair(m, &meta_version_sql, ids[i], leaf, id, &s);
		if (!rc)
			rc = meta_run(m, s, "version child");
	}
	if (!rc)
		rc = meta_stmt_pair(m, &meta_version_sql, V_BORN_SET, id,
				    (int64_t)born, &s);
	if (!rc)
		rc = meta_run(m, s, "version child");
	/* a snapshot is seen through a view of its own; the child made
	 * above has the namespace's */
	if (!rc && name)
		rc = view_give(m, leaf);
	if (!rc)
		*child = id;
	return rc;
}

int meta_version_child(struct meta *m, int64_t parent, int64_t *child)
{
	/* a leaf no inode number says is its own: every call through it */
	return meta_version_freeze(m, parent, NULL, UINT64_MAX >> 1, child);
}

int meta_version_born(struct meta *m, int64_t ver, uint64_t *born)
{
	struct meta_st *s;
	int64_t v;
	int rc = meta_stmt(m, &meta_version_sql, V_BORN_GET, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, ver);
	rc = meta_int(m, s, &v, "version birth");
	if (!rc)
		*born = (uint64_t)v;
	return rc;
}

int meta_nspace_leaves(struct meta *m,
		       int (*fn)(void *ctx, const struct meta_nsleaf *l),
		       void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_LEAVES, &s);

	while (!rc && (rc = meta_step(m, s, "namespace leaves")) > 0) {
		struct meta_nsleaf l = {
			.nspace = (uint64_t)meta_col_int(s, 0),
			.leaf = { .id = meta_col_int(s, 1),
				  .depth = (int)meta_col_int(s, 2) },
			.born = (uint64_t)meta_col_int(s, 3),
			.view = (uint32_t)meta_col_int(s, 4),
			.root = (uint64_t)meta_col_int(s, 5),
		};

		rc = fn(ctx, &l);
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

/* The version and depth of the one row of bound statement @s into @v. */
static int ver_row(struct meta *m, struct meta_st *s, const char *what,
		   struct meta_ver *v)
{
	int64_t depth;
	int rc = two_ints(m, s, what, &v->id, &depth);

	if (!rc)
		v->depth = (int)depth;
	return rc;
}

int meta_nspace_ver(struct meta *m, uint64_t nspace, struct meta_ver *v)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_NSPACE_VER, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)nspace);
	return ver_row(m, s, "namespace leaf", v);
}

int meta_snapshots(struct meta *m, uint64_t nspace, bool bytes,
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
			.view = (uint32_t)meta_col_int(s, 5),
		};

		if (len < 0 || (size_t)len >= sizeof(name))
			len = 0;
		if (len)
			memcpy(name, meta_col_blob(s, 3), (size_t)len);
		name[len] = '\0';
		rc = 0;
		if (bytes) {
			uint64_t own[2];

			rc = meta_version_own(m, sn.id, own);
			sn.bytes = own[0];
		}
		if (!rc)
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

/* Version @ver gone from the tree, its rows already moved or deleted:
 * its place on every chain, its row, its born. */
static int version_forget(struct meta *m, int64_t ver, const char *what)
{
	static const int ids[] = { V_ANC_DROP, V_DROP, V_BORN_DROP };
	int rc = 0;

	for (size_t i = 0; !rc && i < sizeof(ids) / sizeof(*ids); i++)
		rc = meta_run_int(m, &meta_version_sql, ids[i], ver, what);
	return rc;
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
	int64_t n, c;
	size_t i;
	int rc = children(m, ver, &n, &c);

	if (rc)
		return rc;
	/* a branch point (a rollback past a branch left it one): the
	 * other branch reads its rows, which stay; it loses its name */
	if (n > 1) {
		*child = 0;
		return meta_run_int(m, &meta_version_sql, V_UNNAME, ver,
				    "version merge");
	}
	if (n != 1)
		return -EBUSY; /* not a chain */
	if (c < META_VER_CHILD_MIN) {
		/* its rows are in no partial index: none would move */
		log_msg(LOG_ERR,
			"version %" PRId64 " has the id of a first version: "
			"not merged",
			c);
		return -EPROTO;
	}
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
		rc = version_forget(m, c, "version merge");
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
	return ver_row(m, s, "snapshot lookup", v);
}

/* Each (parent, name) of the rows of bound statement @s to @fn. */
static int name_rows(struct meta *m, struct meta_st *s, const char *what,
		     int (*fn)(void *ctx, uint64_t parent, const char *name,
			       size_t len),
		     void *ctx)
{
	int rc;

	while ((rc = meta_step(m, s, what)) > 0) {
		int len = meta_col_bytes(s, 1);

		rc = fn(ctx, (uint64_t)meta_col_int(s, 0),
			(const char *)meta_col_blob(s, 1),
			len > 0 ? (size_t)len : 0);
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

/* Each name of the entries of version @ver (parent and name) to @fn. */
static int version_names(struct meta *m, int64_t ver, const char *what,
			 int (*fn)(void *ctx, uint64_t parent, const char *name,
				   size_t len),
			 void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_GONE_NAMES, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, ver);
	return name_rows(m, s, what, fn, ctx);
}

/* The rows of version @ver deleted, the counts of its extents falling;
 * each of its entries' names to @name first. */
static int drop_rows(struct meta *m, int64_t ver,
		     int (*name)(void *ctx, uint64_t parent, const char *name,
				 size_t len),
		     void *ctx)
{
	/* a namespace's first version: its rows are in no partial index */
	bool first = ver < META_VER_CHILD_MIN;
	int rc = first || !name
			 ? 0
			 : version_names(m, ver, "version drop", name, ctx);

	/* entries before inodes: an entry's parent (dentries_parent_fk) */
	if (!rc)
		rc = meta_run_int(m, &meta_version_sql,
				  first ? V_ALL_ENT : V_GONE_ENT, ver,
				  "version drop");
	if (!rc)
		rc = meta_run_int(m, &meta_version_sql,
				  first ? V_ALL_X : V_GONE_X, ver,
				  "version drop");
	if (!rc)
		rc = meta_extents_drop_ver(m, ver);
	if (!rc)
		rc = meta_run_int(m, &meta_version_sql,
				  first ? V_ALL_INO : V_GONE_INO, ver,
				  "version drop");
	return rc;
}

int meta_version_between(struct meta *m, int64_t ver, int64_t anc,
			 int64_t **vers, size_t *n)
{
	struct meta_st *s;
	int64_t on = 0;
	size_t cap = 0, i;
	int rc = meta_stmt_pair(m, &meta_version_sql, V_ON_CHAIN, ver, anc, &s);

	*vers = NULL;
	*n = 0;
	if (!rc)
		rc = meta_int(m, s, &on, "versions between");
	if (!rc && on != 1)
		return -ENOENT; /* not an ancestor */
	if (!rc)
		rc = meta_stmt_pair(m, &meta_version_sql, V_LATER, ver, anc,
				    &s);
	while (!rc && (rc = meta_step(m, s, "versions between")) > 0) {
		if (array_reserve(vers, &cap, *n + 1, sizeof(**vers))) {
			meta_reset(s);
			rc = -ENOMEM;
			break;
		}
		(*vers)[(*n)++] = meta_col_int(s, 0);
		rc = 0; /* a row: the next */
	}
	if (!rc && *n && (*vers)[0] != ver) {
		log_msg(LOG_ERR,
			"version %" PRId64 " is not the deepest of its "
			"chain",
			ver);
		rc = -EPROTO;
	}
	for (i = 0; !rc && i < *n; i++)
		if ((*vers)[i] < META_VER_CHILD_MIN) {
			/* its rows are in no partial index */
			log_msg(LOG_ERR,
				"version %" PRId64 " has the id of a first "
				"version, below another",
				(*vers)[i]);
			rc = -EPROTO;
		}
	if (rc) {
		free(*vers);
		*vers = NULL;
		*n = 0;
	}
	return rc;
}

/* The kind of version @ver (1 leaf, 2 branch point, 3 snapshot). */
static int version_kind(struct meta *m, int64_t ver, int64_t *kind)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_KIND, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, ver);
	return meta_int(m, s, kind, "version kind");
}

int meta_version_rollback(struct meta *m, int64_t leaf, int64_t snap,
			  bool later,
			  int (*name)(void *ctx, uint64_t parent,
				      const char *name, size_t len),
			  void *ctx)
{
	int64_t *vers;
	size_t n, i, own, snaps = 0;
	int rc = meta_version_between(m, leaf, snap, &vers, &n);

	own = n;
	if (!rc && n == 0)
		rc = -EPROTO; /* a snapshot is never a leaf */
	/* the versions between: the namespace's own down to the first
	 * branch point (another namespace reads it and all above it) */
	for (i = 1; !rc && i < n; i++) {
		int64_t kind = 0;

		rc = version_kind(m, vers[i], &kind);
		snaps += kind == 3;
		if (!rc && kind == 2 && own == n)
			own = i;
	}
	/* the snapshots taken since: dropped only when asked (as ZFS's
	 * rollback -r); above a branch point, they keep their rows and
	 * lose their names */
	if (!rc && snaps && !later)
		rc = -EEXIST;
	for (i = 0; !rc && i < own; i++)
		rc = drop_rows(m, vers[i], name, ctx);
	for (i = 1; !rc && i < own; i++)
		rc = version_forget(m, vers[i], "rollback");
	for (i = own; !rc && i < n; i++)
		rc = meta_run_int(m, &meta_version_sql, V_UNNAME, vers[i],
				  "rollback");
	/* the leaf's chain: the snapshot's, and itself */
	if (!rc)
		rc = run_pair(m, V_ANC_CUT, leaf, snap, "rollback");
	if (!rc)
		rc = run_pair(m, V_SET_PARENT, leaf, snap, "rollback");
	free(vers);
	return rc;
}

int meta_version_changes(struct meta *m, int64_t ver,
			 int (*entry)(void *ctx, uint64_t parent,
				      const char *name, size_t len),
			 int (*inode)(void *ctx, uint64_t ino), void *ctx)
{
	struct meta_st *s;
	int rc = version_names(m, ver, "version changes", entry, ctx);

	if (!rc)
		rc = meta_stmt(m, &meta_version_sql, V_CHANGED_INOS, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 1, ver);
	while ((rc = meta_step(m, s, "version changes")) > 0) {
		rc = inode(ctx, (uint64_t)meta_col_int(s, 0));
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

int meta_names_of(struct meta *m, const struct meta_ver *v, uint64_t ino,
		  int (*fn)(void *ctx, uint64_t parent, const char *name,
			    size_t len),
		  void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt_pair(m, &meta_version_sql, V_NAMES_OF, (int64_t)ino,
				v->id, &s);

	return rc ? rc : name_rows(m, s, "names of an inode", fn, ctx);
}

int meta_autosnaps(struct meta *m,
		   int (*fn)(void *ctx, uint64_t nspace, int64_t every,
			     int64_t keep),
		   void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_AUTO_LIST, &s);

	while (!rc && (rc = meta_step(m, s, "automatic snapshots")) > 0) {
		rc = fn(ctx, (uint64_t)meta_col_int(s, 0), meta_col_int(s, 1),
			meta_col_int(s, 2));
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

int meta_autosnap_set(struct meta *m, uint64_t nspace, int64_t every,
		      int64_t keep)
{
	char key[64];
	int rc = meta_run_int(m, &meta_version_sql, V_AUTO_DROP,
			      (int64_t)nspace, "automatic snapshots");

	if (rc || every <= 0)
		return rc;
	snprintf(key, sizeof(key), "autosnap.%" PRIu64, nspace);
	rc = meta_config_set(m, key, every);
	snprintf(key, sizeof(key), "autokeep.%" PRIu64, nspace);
	return rc ? rc : meta_config_set(m, key, keep);
}

int meta_version_branch(struct meta *m, int64_t src_leaf, uint64_t dst,
			uint64_t root, const char *name, uint64_t born,
			int64_t *src_child, int64_t *dst_leaf, uint32_t *view)
{
	struct meta_st *s;
	int64_t id = 0, v = 0;
	int rc = meta_version_freeze(m, src_leaf, NULL, born, src_child);

	if (!rc)
		rc = counter_take(m, V_ID_INIT, V_ID_TAKE, "version id", &id);
	if (!rc)
		rc = meta_stmt(m, &meta_version_sql, V_BRANCH_LEAF, &s);
	if (!rc) {
		meta_bind_int(s, 1, id);
		meta_bind_int(s, 2, src_leaf);
		meta_bind_int(s, 3, (int64_t)dst);
		rc = meta_run(m, s, "branch");
	}
	if (!rc)
		rc = run_pair(m, V_ANC_CHILD, src_leaf, id, "branch");
	if (!rc)
		rc = run_pair(m, V_BORN_SET, id, (int64_t)born, "branch");
	if (!rc)
		rc = counter_take(m, V_NSVIEW_INIT, V_NSVIEW_TAKE,
				  "namespace view", &v);
	if (!rc && (v < META_NSVIEW_MIN || v > META_NSVIEW_MAX)) {
		log_msg(LOG_ERR, "no view left for a namespace (%" PRId64 ")",
			v);
		rc = -ENOSPC;
	}
	if (!rc)
		rc = meta_stmt(m, &meta_version_sql, V_NSPACE_ADD, &s);
	if (!rc) {
		meta_bind_int(s, 1, (int64_t)dst);
		meta_bind_int(s, 2, (int64_t)root);
		meta_bind_int(s, 3, id);
		meta_bind_int(s, 4, v);
		rc = meta_run(m, s, "branch");
	}
	if (!rc)
		rc = meta_dentry_insert(m, &META_VER_ROOT, 1, name, dst);
	if (!rc) {
		*dst_leaf = id;
		*view = (uint32_t)v;
	}
	return rc;
}

int meta_nspace_drop(struct meta *m, uint64_t nspace,
		     int (*name)(void *ctx, uint64_t parent, const char *name,
				 size_t len),
		     void *ctx)
{
	struct meta_ver leaf;
	struct meta_st *s;
	int64_t ver, up[2] = { 0, 0 }, n = 0, c;
	int rc = meta_nspace_ver(m, nspace, &leaf);

	if (!rc && leaf.id < META_VER_CHILD_MIN)
		rc = -EPROTO; /* its first version: its root's row goes */
	if (!rc)
		rc = meta_run_int(m, &meta_version_sql, V_ROOT_ENT_DEL,
				  (int64_t)nspace, "rmdir");
	if (!rc)
		rc = meta_run_int(m, &meta_version_sql, V_NSPACE_DEL,
				  (int64_t)nspace, "rmdir");
	/* the leaf, then each branch point no version reads any more */
	for (ver = leaf.id; !rc && ver; ver = up[1] == 2 && !n ? up[0] : 0) {
		rc = meta_stmt(m, &meta_version_sql, V_PARENT_KIND, &s);
		if (!rc) {
			meta_bind_int(s, 1, ver);
			rc = meta_ints(m, s, "rmdir", 2, up);
		}
		if (!rc)
			rc = drop_rows(m, ver, name, ctx);
		if (!rc)
			rc = version_forget(m, ver, "rmdir");
		if (!rc && up[0])
			rc = children(m, up[0], &n, &c);
	}
	return rc;
}

int meta_version_common(struct meta *m, int64_t a, int64_t b, int64_t *common)
{
	struct meta_st *s;
	int rc = meta_stmt_pair(m, &meta_version_sql, V_COMMON, a, b, &s);

	return rc ? rc : meta_int(m, s, common, "common version");
}

int meta_nspace_name(struct meta *m, uint64_t nspace, char *buf, size_t len)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_version_sql, V_ROOT_NAME, &s), n;

	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)nspace);
	rc = meta_step(m, s, "namespace name");
	if (rc > 0) {
		n = meta_col_bytes(s, 0);
		rc = n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
		if (!rc) {
			memcpy(buf, meta_col_blob(s, 0), (size_t)n);
			buf[n] = '\0';
		}
		meta_reset(s);
	} else if (rc == 0) {
		rc = -ENOENT;
	}
	return rc;
}
