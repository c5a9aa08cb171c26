/* SPDX-License-Identifier: MIT */
/*
 * The explain queries of the metadata store: du, statistics, and what
 * holds, pins or names an object, and the path of an inode.
 */
#include "core/meta/meta_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/array.h"
#include "core/util/log.h"

enum {
	Q_NAMESPACES,
	Q_INODES,
	Q_OBJECTS,
	Q_BYTES_STORED,
	Q_BYTES_REFERENCED,
	Q_BYTES_LOGICAL,
	Q_DU_FILES,
	Q_DU_OBJECTS,
	Q_DU_FILES_CHAIN,
	Q_DU_OBJECTS_CHAIN,
	Q_BRANCHED,
	Q_DU_SNAP_OBJECTS,
	Q_OBJECT_INFO,
	Q_OBJECT_HOLDERS,
	Q_OBJECT_PINNERS,
	Q_OBJECT_INODES,
	Q_INODE_PARENT,
	Q_INODE_PARENT_AT,
	Q_COUNT
};

/* a whiteout of the inode of extent row b on the chain of v, deeper
 * than b */
#define INODE_GONE(b, v)                                               \
	"EXISTS (SELECT 1 FROM inodes w WHERE w.base = " b ".ino AND " \
	"w.mode = 0 AND w.ver > " b ".ver AND " ON_CHAIN("w.ver", v) ")"

/* du's objects of the rows (obj, n) of c: how many, their bytes, those
 * whose every reference c.n counts (exclusive) and of them, those no pin
 * keeps (reclaimable) */
#define DU_OBJECTS_OF                                              \
	"SELECT count(*), coalesce(sum(o.size), 0), "              \
	"coalesce(sum(CASE WHEN c.n >= o.refcount THEN o.size "    \
	"ELSE 0 END), 0), "                                        \
	"coalesce(sum(CASE WHEN c.n >= o.refcount AND NOT EXISTS " \
	"(SELECT 1 FROM pin_objects p WHERE p.name = o.name) "     \
	"THEN o.size ELSE 0 END), 0) "

static const char *const query_text[Q_COUNT] = {
	[Q_NAMESPACES] = "SELECT count(*) FROM dentries WHERE parent = 1",
	/* PostgreSQL's count is in rows of its nodes (core/meta/meta_pg.c) */
	[Q_INODES] = "SELECT coalesce(sum(value), 0) FROM config "
		     "WHERE key = 'inodes' OR key LIKE 'inodes.%'",
	/* kept per shard by triggers: no scan of the object table */
	[Q_OBJECTS] = "SELECT coalesce(sum(objects), 0) FROM shard_usage",
	[Q_BYTES_STORED] = "SELECT coalesce(sum(bytes), 0) FROM shard_usage",
	[Q_BYTES_REFERENCED] = "SELECT coalesce(sum(size * refcount), 0) "
			       "FROM objects",
	[Q_BYTES_LOGICAL] = "SELECT coalesce(sum(size), 0) FROM inodes "
			    "WHERE (mode & 61440) = 32768",
	[Q_DU_FILES] = "SELECT count(*), coalesce(sum(size), 0) FROM inodes "
		       "WHERE nspace = ?1 AND (mode & 61440) = 32768",
	[Q_DU_OBJECTS] = DU_OBJECTS_OF
	"FROM (SELECT b.obj AS obj, count(*) AS n FROM extents b "
	"JOIN inodes i ON i.ino = b.ino WHERE i.nspace = ?1 "
	"GROUP BY b.obj) AS c JOIN objects o ON o.id = c.obj",
	/* a namespace with snapshots: its files as its leaf ?2 shows them,
	 * each inode's row of the nearest version of the chain (a whiteout
	 * deeper hides it) */
	[Q_DU_FILES_CHAIN] =
		"SELECT count(*), coalesce(sum(i.size), 0) FROM inodes i WHERE "
		"CAST(?1 AS bigint) > 0 AND (i.mode & 61440) = 32768 AND +i.ver "
		"IN "
		"(SELECT a.anc FROM ver_anc a WHERE a.ver = ?2) AND NOT EXISTS "
		"(SELECT 1 FROM inodes j WHERE (j.ino = coalesce(i.base, "
		"i.ino) OR j.base = coalesce(i.base, i.ino)) AND j.ver > i.ver "
		"AND j.ver IN (SELECT a.anc FROM ver_anc a WHERE a.ver = ?2))",
	/* a namespace with a chain: the objects its leaf ?2 shows, and
	 * those only the leaf's rows name (what its removal frees) */
	[Q_DU_OBJECTS_CHAIN] = DU_OBJECTS_OF
	"FROM (SELECT b.obj AS obj, sum(CASE WHEN b.ver = ?2 THEN 1 "
	"ELSE 0 END) AS n FROM extents b WHERE CAST(?1 AS bigint) > 0 "
	"AND " BLOCK_SHOWS("b", "?2") " AND NOT " INODE_GONE(
		"b", "?2") " GROUP BY b.obj) AS c JOIN objects o ON "
			   "o.id = c.obj",
	/* the branch points on the chain of ?1 */
	[Q_BRANCHED] = "SELECT count(*) FROM ver_anc a JOIN versions v ON v.id "
		       "= a.anc WHERE a.ver = ?1 AND v.kind = 2",
	/* the objects version ?2 of namespace ?1 shows: its chain's blocks
	 * that show, of inodes no whiteout on the chain removed */
	[Q_DU_SNAP_OBJECTS] =
		"SELECT count(*), coalesce(sum(o.size), 0) FROM objects o WHERE "
		"o.id IN (SELECT b.obj FROM extents b JOIN inodes i ON i.ino = "
		"b.ino WHERE i.nspace = ?1 AND " BLOCK_SHOWS(
			"b", "?2") " AND NOT " INODE_GONE("b", "?2") ")",
	[Q_OBJECT_INFO] = "SELECT id, shard, size, refcount "
			  "FROM objects WHERE name = ?1",
	/* by namespace and version: a snapshot's rows are its own */
	[Q_OBJECT_HOLDERS] =
		"SELECT d.name, count(*), count(DISTINCT b.ino), v.name "
		"FROM extents b JOIN inodes i ON i.ino = b.ino "
		"LEFT JOIN dentries d ON d.parent = 1 AND d.ino = i.nspace "
		"LEFT JOIN versions v ON v.id = b.ver AND v.kind = 3 "
		"WHERE b.obj = ?1 GROUP BY i.nspace, d.name, b.ver, v.name "
		"ORDER BY d.name, b.ver",
	[Q_OBJECT_PINNERS] =
		"SELECT p.path FROM pins p JOIN pin_objects o ON "
		"o.pin = p.id WHERE o.name = ?1 UNION ALL SELECT "
		"'node ' || node FROM node_objects WHERE name = ?1",
	/* by inode and version, a snapshot's named */
	[Q_OBJECT_INODES] =
		"SELECT b.ino, b.ver, count(*), (SELECT v.name FROM versions v "
		"WHERE v.id = b.ver AND v.kind = 3) FROM extents b WHERE "
		"b.obj = ?1 GROUP BY b.ino, b.ver ORDER BY b.ino, b.ver LIMIT ?2",
	[Q_INODE_PARENT] = "SELECT parent, name FROM dentries WHERE ino = ?1 "
			   "ORDER BY id LIMIT 1",
	/* a name of inode ?1 that version ?2 shows (the root directory's,
	 * version 0, for a namespace's root: the entry of version ?2's
	 * namespace, branches sharing a root) */
	[Q_INODE_PARENT_AT] =
		"SELECT x.parent, x.name FROM (SELECT d.id, d.parent, d.name "
		"FROM dentries d WHERE d.ino = ?1 AND d.ver <> 0 AND " ON_CHAIN(
			"d.ver",
			"?2") " AND " ENTRY_SHOWS("d",
						  "?2") " UNION ALL SELECT "
							"d.id, d.parent, "
							"d.name FROM versions "
							"v JOIN nspaces n ON "
							"n.id = v.nspace JOIN "
							"dentries d ON "
							"d.parent = 1 AND "
							"d.ver = 0 AND d.ino "
							"= n.id WHERE v.id = "
							"?2 AND n.root = ?1) "
							"AS x ORDER BY x.id "
							"LIMIT 1",
};

/* paths are bytea there: the node's line too */
static const char *const query_pg[Q_COUNT] = {
	[Q_OBJECT_PINNERS] =
		"SELECT p.path FROM pins p JOIN pin_objects o ON "
		"o.pin = p.id WHERE o.name = ?1 UNION ALL SELECT "
		"convert_to('node ' || node, 'UTF8') FROM node_objects "
		"WHERE name = ?1",
};

const struct meta_sql meta_query_sql = { META_QUERY, Q_COUNT, query_text,
					 query_pg };

/* The one number query @id yields (a negative one reads as 0). */
static int query_u64(struct meta *m, int id, uint64_t *out)
{
	struct meta_st *s;
	int64_t v;
	int rc = meta_stmt(m, &meta_query_sql, id, &s);

	if (!rc)
		rc = meta_int(m, s, &v, "statistics");
	if (rc == -ENOENT)
		return meta_no_row("statistics");
	if (!rc)
		*out = v < 0 ? 0 : (uint64_t)v;
	return rc;
}

int meta_stats(struct meta *m, struct meta_stats *out)
{
	int64_t seq = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = query_u64(m, Q_NAMESPACES, &out->namespaces);
	if (!rc)
		rc = meta_statfs(m, &out->inodes, &out->bytes_stored);
	if (!rc)
		rc = query_u64(m, Q_OBJECTS, &out->objects);
	if (!rc)
		rc = query_u64(m, Q_BYTES_REFERENCED, &out->bytes_referenced);
	if (!rc)
		rc = query_u64(m, Q_BYTES_LOGICAL, &out->bytes_logical);
	if (!rc)
		rc = meta_config_get(m, "durable_seq", &seq);
	out->durable_seq = (uint64_t)seq;
	return rc;
}

int meta_statfs(struct meta *m, uint64_t *inodes, uint64_t *bytes_stored)
{
	int rc = meta_lookup_fault(m);

	if (!rc)
		rc = query_u64(m, Q_INODES, inodes);
	if (!rc)
		rc = query_u64(m, Q_BYTES_STORED, bytes_stored);
	return rc;
}

/* Query @id with ?1 = @a, ?2 = @b: its first @n columns in @out. */
static int query_ints(struct meta *m, int id, int64_t a, int64_t b, int n,
		      int64_t *out)
{
	struct meta_st *s;
	int rc = meta_stmt_pair(m, &meta_query_sql, id, a, b, &s);

	if (!rc)
		rc = meta_ints(m, s, "du", n, out);
	return rc == -ENOENT ? meta_no_row("du") : rc;
}

int meta_du_snapshot(struct meta *m, uint64_t nspace, int64_t ver,
		     struct meta_du *out)
{
	int64_t files[2], objs[2];
	uint64_t own[2];
	int rc =
		query_ints(m, Q_DU_FILES_CHAIN, (int64_t)nspace, ver, 2, files);

	if (!rc)
		rc = query_ints(m, Q_DU_SNAP_OBJECTS, (int64_t)nspace, ver, 2,
				objs);
	if (!rc)
		rc = meta_version_own(m, ver, own);
	if (rc)
		return rc;
	*out = (struct meta_du){
		.files = (uint64_t)files[0],
		.bytes_logical = (uint64_t)files[1],
		.objects = (uint64_t)objs[0],
		.bytes_referenced = (uint64_t)objs[1],
		.bytes_exclusive = own[0],
		.bytes_reclaimable = own[1],
	};
	return 0;
}

int meta_du(struct meta *m, uint64_t nspace, struct meta_du *out)
{
	struct meta_ver leaf;
	struct meta_st *s;
	int64_t v[2][4], branched = 0;
	int q, rc = meta_nspace_ver(m, nspace, &leaf);

	/* a chain with branch points: its objects are shared with the
	 * other branches (its inodes' rows in all versions are not its own) */
	if (!rc && leaf.id != (int64_t)nspace)
		rc = meta_stmt(m, &meta_query_sql, Q_BRANCHED, &s);
	if (!rc && leaf.id != (int64_t)nspace) {
		meta_bind_int(s, 1, leaf.id);
		rc = meta_int(m, s, &branched, "du");
	}
	if (rc)
		return rc;
	memset(v, 0, sizeof(v));
	for (q = 0; q < 2; q++) {
		/* with a chain (snapshots, branches), the files as the
		 * namespace shows them; with a branch point on it, the
		 * objects its leaf shows and those only the leaf names;
		 * else the files and objects of its inodes */
		bool chain = leaf.id != (int64_t)nspace && (!q || branched);
		int k;

		rc = meta_stmt(m, &meta_query_sql,
			       chain ? (q ? Q_DU_OBJECTS_CHAIN
					  : Q_DU_FILES_CHAIN)
				     : Q_DU_FILES + q,
			       &s);
		if (rc)
			return rc;
		meta_bind_int(s, 1, (int64_t)nspace);
		if (chain)
			meta_bind_int(s, 2, leaf.id);
		rc = meta_step(m, s, "du");
		if (rc == 0)
			return meta_no_row("du");
		if (rc < 0)
			return rc;
		for (k = 0; k < meta_col_count(s) && k < 4; k++)
			v[q][k] = meta_col_int(s, k);
		meta_reset(s);
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
	struct meta_st *s;
	int rc = meta_lookup_fault(m);

	if (!rc)
		rc = meta_stmt(m, &meta_query_sql, Q_OBJECT_INFO, &s);
	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	rc = meta_step(m, s, "object info");
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	*id = meta_col_int(s, 0);
	*shard = (uint32_t)meta_col_int(s, 1);
	*size = (uint64_t)meta_col_int(s, 2);
	*refcount = meta_col_int(s, 3);
	meta_reset(s);
	return 0;
}

int meta_object_holders(struct meta *m, int64_t id,
			int (*fn)(void *ctx, const char *nspace, uint64_t refs,
				  uint64_t inodes),
			void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_query_sql, Q_OBJECT_HOLDERS, &s), ret = 0;

	if (rc)
		return rc;
	meta_bind_int(s, 1, id);
	while (!ret && (rc = meta_step(m, s, "object holders")) > 0) {
		char ns[2 * 256 + 1] = "(unlinked)";
		int len = meta_col_bytes(s, 0), vlen = meta_col_bytes(s, 3);

		if (!meta_col_null(s, 0) && len > 0 && len < 256) {
			memcpy(ns, meta_col_blob(s, 0), (size_t)len);
			ns[len] = '\0';
			/* a snapshot's rows: NS@NAME */
			if (!meta_col_null(s, 3) && vlen > 0 && vlen < 256) {
				ns[len] = '@';
				memcpy(ns + len + 1, meta_col_blob(s, 3),
				       (size_t)vlen);
				ns[len + 1 + vlen] = '\0';
			}
		}
		ret = fn(ctx, ns, (uint64_t)meta_col_int(s, 1),
			 (uint64_t)meta_col_int(s, 2));
	}
	meta_reset(s);
	return ret ? ret : rc;
}

int meta_object_pinners(struct meta *m, const char *name,
			int (*fn)(void *ctx, const char *what), void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_query_sql, Q_OBJECT_PINNERS, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	return meta_each_name(m, s, fn, ctx);
}

/* meta_inode_path() in version @ver (-1: any) */
static int inode_path_at(struct meta *m, uint64_t ino, int64_t ver, char *buf,
			 size_t size)
{
	char tmp[4096];
	size_t len = 0;
	unsigned depth;

	/* from the inode up to the root, each name put in front */
	for (depth = 0; ino != 1 && depth < 4096; depth++) {
		struct meta_st *s;
		const void *name;
		int n, rc = meta_stmt(m, &meta_query_sql,
				      ver < 0 ? Q_INODE_PARENT
					      : Q_INODE_PARENT_AT,
				      &s);

		if (rc)
			return rc;
		meta_bind_int(s, 1, (int64_t)ino);
		if (ver >= 0)
			meta_bind_int(s, 2, ver);
		rc = meta_step(m, s, "inode path");
		if (rc <= 0)
			return rc ? rc : -ENOENT;
		name = meta_col_blob(s, 1);
		n = meta_col_bytes(s, 1);
		if ((size_t)n + 1 + len >= sizeof(tmp)) {
			meta_reset(s);
			return -ENAMETOOLONG;
		}
		memmove(tmp + n + (len ? 1 : 0), tmp, len);
		memcpy(tmp, name, (size_t)n);
		if (len)
			tmp[n] = '/';
		len += (size_t)n + (len ? 1 : 0);
		ino = (uint64_t)meta_col_int(s, 0);
		meta_reset(s);
	}
	if (ino != 1)
		return -ELOOP;
	if (len + 1 > size)
		return -ENAMETOOLONG;
	memcpy(buf, tmp, len);
	buf[len] = '\0';
	return 0;
}

int meta_inode_path(struct meta *m, uint64_t ino, char *buf, size_t size)
{
	return inode_path_at(m, ino, -1, buf, size);
}

/* The path of @ino in version @ver, of snapshot @snap if not NULL
 * (".snapshots/NS/NAME/..."), "(inode N, unlinked)", or for names that
 * lead to no root (a damaged store, that tallyfsck reports) or too
 * long, "(inode N)". */
static int ref_path(struct meta *m, uint64_t ino, int64_t ver, const char *snap,
		    char *buf, size_t size)
{
	char p[4096];
	const char *rest;
	int rc = inode_path_at(m, ino, ver, p, sizeof(p));

	if (rc == -ENOENT || rc == -ELOOP || rc == -ENAMETOOLONG) {
		snprintf(buf, size, "(inode %" PRIu64 "%s)", ino,
			 rc == -ENOENT ? ", unlinked" : "");
		return 0;
	}
	if (rc)
		return rc;
	rest = strchr(p, '/');
	if (!snap)
		rc = snprintf(buf, size, "%s", p);
	else
		rc = snprintf(buf, size, ".snapshots/%.*s/%s%s",
			      (int)(rest ? rest - p : (ptrdiff_t)strlen(p)), p,
			      snap, rest ? rest : "");
	if (rc < 0 || (size_t)rc >= size)
		snprintf(buf, size, "(inode %" PRIu64 ")", ino);
	return 0;
}

int meta_object_paths(struct meta *m, int64_t obj, unsigned limit,
		      int (*fn)(void *ctx, const char *path, uint64_t refs),
		      void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_query_sql, Q_OBJECT_INODES, &s), ret = 0;

	if (rc)
		return rc;
	meta_bind_int(s, 1, obj);
	meta_bind_int(s, 2, limit);
	while (!ret && (rc = meta_step(m, s, "object inodes")) > 0) {
		char snap[256], path[4096 + 2 * 256];
		int len = meta_col_bytes(s, 3);
		bool named = !meta_col_null(s, 3) && len > 0 &&
			     len < (int)sizeof(snap);

		if (named) {
			memcpy(snap, meta_col_blob(s, 3), (size_t)len);
			snap[len] = '\0';
		}
		ret = ref_path(m, (uint64_t)meta_col_int(s, 0),
			       meta_col_int(s, 1), named ? snap : NULL, path,
			       sizeof(path));
		if (!ret)
			ret = fn(ctx, path, (uint64_t)meta_col_int(s, 2));
	}
	meta_reset(s);
	return ret ? ret : rc;
}
