/* SPDX-License-Identifier: MIT */
/*
 * The explain queries of the metadata store: du, statistics, and what
 * holds, pins or names an object, and the path of an inode.
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

/* The one number @sql yields (a negative one reads as 0). */
static int query_u64(struct meta *m, const char *sql, uint64_t *out)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return meta_fail(m, SQLITE_ERROR, "statistics");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		int64_t v = sqlite3_column_int64(s, 0);

		*out = v < 0 ? 0 : (uint64_t)v;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : meta_fail(m, rc, "statistics");
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
			return meta_fail(m, SQLITE_ERROR, "du");
		sqlite3_bind_int64(s, 1, (int64_t)nspace);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			for (k = 0; k < sqlite3_column_count(s) && k < 4; k++)
				v[q][k] = sqlite3_column_int64(s, k);
		sqlite3_finalize(s);
		if (rc != SQLITE_ROW)
			return meta_fail(m, rc, "du");
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
	int rc = meta_lookup_fault(m);

	if (rc)
		return rc;
	if (sqlite3_prepare_v2(m->db,
			       "SELECT id, shard, size, refcount "
			       "FROM objects WHERE name = ?1",
			       -1, &s, NULL) != SQLITE_OK)
		return meta_fail(m, SQLITE_ERROR, "object info");
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
	return rc == SQLITE_DONE ? -ENOENT : meta_fail(m, rc, "object info");
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
		return meta_fail(m, SQLITE_ERROR, "object holders");
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
		return meta_fail(m, rc, "object holders");
	return ret;
}

int meta_object_pinners(struct meta *m, const char *name,
			int (*fn)(void *ctx, const char *what), void *ctx)
{
	return meta_each_name(
		m,
		"SELECT p.path FROM pins p JOIN pin_objects o ON "
		"o.pin = p.id WHERE o.name = ?1 UNION ALL SELECT "
		"'node ' || node FROM node_objects WHERE name = ?1",
		name, NULL, fn, ctx);
}

int meta_object_inodes(struct meta *m, int64_t obj, unsigned limit,
		       int (*fn)(void *ctx, uint64_t ino, uint64_t refs),
		       void *ctx)
{
	sqlite3_stmt *s;
	int rc = meta_prep(m,
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
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, "object inodes");
}

int meta_inode_path(struct meta *m, uint64_t ino, char *buf, size_t size)
{
	sqlite3_stmt *s;
	char tmp[4096];
	size_t len = 0;
	unsigned depth;
	int rc = meta_prep(m,
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
			return rc == SQLITE_DONE
				       ? -ENOENT
				       : meta_fail(m, rc, "inode path");
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
