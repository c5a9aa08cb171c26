/* SPDX-License-Identifier: MIT */
/*
 * The shard family of the metadata store: shards and their usage,
 * rebalance moves, ghosts and the sweep log.
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
	H_SHARDS,
	H_SHARD_NEXT,
	H_SHARD_ADD,
	H_SHARD_STATE,
	H_USAGE,
	H_USAGE_CHECK,
	H_USAGE_CLEAR,
	H_USAGE_FILL,
	H_OBJECTS_IN,
	H_MOVE_BEGIN,
	H_MOVE_END,
	H_MOVES,
	H_MOVE_CHECK,
	H_MOVE_GHOST_DEL,
	H_MOVE_GHOST_DST,
	H_MOVE_GHOST_ADD,
	H_MOVE_OBJECT,
	H_GHOSTS,
	H_GHOST_COUNT,
	H_GHOST_DST,
	H_REPOINT_END,
	H_REPOINT,
	H_GHOST_PURGE,
	H_CHECK_GHOSTS,
	H_GHOST_FIX,
	H_REFERENCE_FIX,
	H_SWEEP_PUT,
	H_SWEEP_LAST,
	H_GHOST_REFCOUNT,
	H_OBJECT_GHOSTS,
	H_COUNT
};

static const char *const shard_text[H_COUNT] = {
	[H_SHARDS] = "SELECT id, path, state FROM shards ORDER BY id",
	[H_SHARD_NEXT] = "SELECT coalesce(max(id), 0) + 1 FROM shards",
	[H_SHARD_ADD] = "INSERT INTO shards(id, path, state, added) "
			"VALUES (?1, ?2, 0, ?3)",
	[H_SHARD_STATE] = "UPDATE shards SET state = ?2 WHERE id = ?1",
	[H_USAGE] = "SELECT shard, objects, bytes FROM shard_usage",
	/* the shards whose counts differ from the object table's */
	[H_USAGE_CHECK] =
		"WITH t AS (SELECT shard, count(*) AS n, sum(size) AS b FROM "
		"objects GROUP BY shard) SELECT t.shard, t.n, t.b FROM t "
		"LEFT JOIN shard_usage u ON u.shard = t.shard WHERE u.shard "
		"IS NULL OR u.objects <> t.n OR u.bytes <> t.b UNION ALL "
		"SELECT u.shard, 0, 0 FROM shard_usage u WHERE (u.objects "
		"<> 0 OR u.bytes <> 0) AND NOT EXISTS (SELECT 1 FROM t WHERE "
		"t.shard = u.shard)",
	[H_USAGE_CLEAR] = "DELETE FROM shard_usage",
	[H_USAGE_FILL] = "INSERT INTO shard_usage SELECT shard, count(*), "
			 "coalesce(sum(size), 0) FROM objects GROUP BY shard",
	[H_OBJECTS_IN] = "SELECT id, name, size FROM objects WHERE id > ?2 "
			 "AND shard = ?1 ORDER BY id LIMIT ?3",
	[H_MOVE_BEGIN] = "INSERT INTO moves(obj, name, src, dst) "
			 "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(obj) DO UPDATE "
			 "SET name = excluded.name, src = excluded.src, "
			 "dst = excluded.dst",
	[H_MOVE_END] = "DELETE FROM moves WHERE obj = ?1",
	[H_MOVES] = "SELECT obj, name, src, dst FROM moves",
	[H_MOVE_CHECK] = "SELECT o.shard, o.refcount, (SELECT coalesce("
			 "sum(refcount), 0) FROM ghosts WHERE obj = o.id) "
			 "FROM objects o WHERE o.id = ?1",
	/* meta_move_commit(): ?1 obj, ?2 src, ?3 dst, ?4 refcount, ?5 now */
	[H_MOVE_GHOST_DEL] = "DELETE FROM ghosts WHERE obj = ?1 AND src = ?3",
	[H_MOVE_GHOST_DST] = "UPDATE ghosts SET dst = ?3 WHERE obj = ?1",
	[H_MOVE_GHOST_ADD] =
		"INSERT INTO ghosts(obj, src, dst, name, refcount, "
		"created) SELECT id, ?2, ?3, name, ?4, ?5 FROM "
		"objects WHERE id = ?1",
	[H_MOVE_OBJECT] = "UPDATE objects SET shard = ?3 WHERE id = ?1",
	[H_GHOSTS] = "SELECT g.obj, g.name, g.src, g.dst, g.refcount, "
		     "g.created, o.id IS NOT NULL FROM ghosts g "
		     "LEFT JOIN objects o ON o.id = g.obj",
	[H_GHOST_COUNT] = "SELECT count(*) FROM ghosts",
	[H_GHOST_DST] = "SELECT dst FROM ghosts WHERE obj = ?1 AND src = ?2",
	[H_REPOINT_END] =
		"SELECT ino FROM extents WHERE ino >= ?1 ORDER BY ino "
		"LIMIT 1 OFFSET ?2",
	[H_REPOINT] = "UPDATE extents SET shard = g.dst FROM ghosts g "
		      "WHERE extents.ino >= ?1 AND extents.ino < ?2 "
		      "AND g.obj = extents.obj AND g.src = extents.shard "
		      "AND ((?3 >> g.dst) & 1) = 0",
	[H_GHOST_PURGE] = "DELETE FROM ghosts WHERE obj = ?1 AND src = ?2 "
			  "AND refcount <= 0",
	[H_CHECK_GHOSTS] =
		"WITH r AS (SELECT b.obj, b.shard AS src, count(*) AS n "
		"FROM extents b JOIN objects o ON o.id = b.obj "
		"WHERE b.shard <> o.shard GROUP BY b.obj, b.shard) "
		"SELECT r.obj, r.src, coalesce(g.refcount, 0), r.n, "
		"CASE WHEN g.obj IS NULL THEN 0 ELSE 1 END "
		"FROM r LEFT JOIN ghosts g "
		"ON g.obj = r.obj AND g.src = r.src "
		"WHERE g.refcount IS NULL OR g.refcount <> r.n "
		"UNION ALL SELECT g.obj, g.src, g.refcount, 0, 1 FROM ghosts g "
		"WHERE g.refcount <> 0 AND NOT EXISTS (SELECT 1 FROM r "
		"WHERE r.obj = g.obj AND r.src = g.src)",
	[H_GHOST_FIX] = "UPDATE ghosts SET refcount = ?3 "
			"WHERE obj = ?1 AND src = ?2",
	/* references to a shard with no ghost: point them at the object */
	[H_REFERENCE_FIX] =
		"UPDATE extents SET shard = (SELECT shard FROM "
		"objects WHERE id = ?1) WHERE obj = ?1 AND shard = ?2",
	[H_SWEEP_PUT] = "INSERT INTO sweep_log(at, checked, purged, kept, "
			"inconclusive, repointed, duration_ms) VALUES (?1, "
			"?2, ?3, ?4, ?5, ?6, ?7)",
	[H_SWEEP_LAST] =
		"SELECT at, checked, purged, kept, inconclusive, "
		"repointed, duration_ms, (SELECT coalesce(sum(purged), "
		"0) FROM sweep_log) FROM sweep_log ORDER BY id DESC "
		"LIMIT 1",
	[H_GHOST_REFCOUNT] = "SELECT refcount FROM ghosts "
			     "WHERE obj = ?1 AND src = ?2",
	[H_OBJECT_GHOSTS] = "SELECT src, dst, refcount FROM ghosts "
			    "WHERE obj = ?1 ORDER BY src",
};

static const char *const shard_pg[H_COUNT] = {
	[H_REPOINT] = "UPDATE extents SET shard = g.dst FROM ghosts g "
		      "WHERE extents.ino >= ?1 AND extents.ino < ?2 "
		      "AND g.obj = extents.obj AND g.src = extents.shard "
		      "AND ((?3::bigint >> g.dst::int) & 1) = 0",
};

const struct meta_sql meta_shard_sql = { META_SHARD, H_COUNT, shard_text,
					 shard_pg };

/* Statement @id with integer parameters ?1..?@n from @v. */
static int stmt_ints(struct meta *m, int id, const int64_t *v, int n,
		     struct meta_st **s)
{
	int rc = meta_stmt(m, &meta_shard_sql, id, s), i;

	for (i = 0; !rc && i < n; i++)
		meta_bind_int(*s, i + 1, v[i]);
	return rc;
}

/* Run statement @id with integer parameters ?1..?@n from @v. */
static int exec_ints(struct meta *m, int id, const int64_t *v, int n,
		     const char *what)
{
	struct meta_st *s;
	int rc = stmt_ints(m, id, v, n, &s);

	return rc ? rc : meta_run(m, s, what);
}

/* The first column of statement @id's row for integer parameters ?1..?@n
 * from @v: 0, -ENOENT if there is none, or -errno. */
static int int_by_ints(struct meta *m, int id, const int64_t *v, int n,
		       int64_t *out, const char *what)
{
	struct meta_st *s;
	int rc = stmt_ints(m, id, v, n, &s);

	return rc ? rc : meta_int(m, s, out, what);
}

int meta_shards(struct meta *m,
		int (*fn)(void *ctx, uint32_t id, const char *path, int state),
		void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_shard_sql, H_SHARDS, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "shard list")) > 0)
		ret = fn(ctx, (uint32_t)meta_col_int(s, 0),
			 (const char *)meta_col_text(s, 1), meta_col_int(s, 2));
	meta_reset(s);
	return ret ? ret : rc;
}

int meta_shard_add(struct meta *m, const char *path, uint32_t max_id,
		   int64_t now, uint32_t *id)
{
	struct meta_st *s;
	int64_t next = 0;
	int rc = meta_stmt(m, &meta_shard_sql, H_SHARD_NEXT, &s);

	if (rc)
		return rc;
	rc = meta_int(m, s, &next, "shard number");
	if (rc && rc != -ENOENT)
		return rc;
	if (next <= 0 || next > (int64_t)max_id)
		return -EMLINK;
	rc = meta_stmt(m, &meta_shard_sql, H_SHARD_ADD, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 1, next);
	meta_bind_text(s, 2, path);
	meta_bind_int(s, 3, now);
	rc = meta_run(m, s, "shard insert");
	if (!rc)
		*id = (uint32_t)next;
	return rc;
}

int meta_shard_set_state(struct meta *m, uint32_t id, int state)
{
	int64_t v[2] = { id, state };
	int rc = exec_ints(m, H_SHARD_STATE, v, 2, "shard state");

	if (!rc && meta_changes(m) == 0)
		rc = -ENOENT;
	return rc;
}

/* Rows (shard, objects, bytes) of statement @id to @fn. */
static int usage_rows(struct meta *m, int id,
		      int (*fn)(void *ctx, uint32_t shard, uint64_t objects,
				uint64_t bytes),
		      void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_shard_sql, id, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "shard usage")) > 0)
		ret = fn(ctx, (uint32_t)meta_col_int(s, 0),
			 (uint64_t)meta_col_int(s, 1),
			 (uint64_t)meta_col_int(s, 2));
	meta_reset(s);
	return ret ? ret : rc;
}

int meta_shard_usage(struct meta *m,
		     int (*fn)(void *ctx, uint32_t shard, uint64_t objects,
			       uint64_t bytes),
		     void *ctx)
{
	return usage_rows(m, H_USAGE, fn, ctx);
}

int meta_shard_usage_check(struct meta *m,
			   int (*fn)(void *ctx, uint32_t shard,
				     uint64_t objects, uint64_t bytes),
			   void *ctx)
{
	return usage_rows(m, H_USAGE_CHECK, fn, ctx);
}

int meta_shard_usage_rebuild(struct meta *m)
{
	int rc = exec_ints(m, H_USAGE_CLEAR, NULL, 0, "shard usage rebuild");

	return rc ? rc
		  : exec_ints(m, H_USAGE_FILL, NULL, 0, "shard usage rebuild");
}

int meta_objects_in(struct meta *m, uint32_t shard, int64_t after,
		    unsigned limit,
		    int (*fn)(void *ctx, int64_t id, const char *name,
			      uint64_t size),
		    void *ctx)
{
	int64_t v[3] = { shard, after, limit };
	struct meta_st *s;
	int rc = stmt_ints(m, H_OBJECTS_IN, v, 3, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "objects of a shard")) > 0)
		ret = fn(ctx, meta_col_int(s, 0),
			 (const char *)meta_col_text(s, 1),
			 (uint64_t)meta_col_int(s, 2));
	meta_reset(s);
	return ret ? ret : rc;
}

int meta_move_begin(struct meta *m, int64_t obj, const char *name, uint32_t src,
		    uint32_t dst)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_shard_sql, H_MOVE_BEGIN, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, obj);
	meta_bind_text(s, 2, name);
	meta_bind_int(s, 3, src);
	meta_bind_int(s, 4, dst);
	return meta_run(m, s, "move intent");
}

int meta_move_end(struct meta *m, int64_t obj)
{
	return exec_ints(m, H_MOVE_END, &obj, 1, "move end");
}

int meta_moves(struct meta *m,
	       int (*fn)(void *ctx, int64_t obj, const char *name, uint32_t src,
			 uint32_t dst),
	       void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_shard_sql, H_MOVES, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "move list")) > 0)
		ret = fn(ctx, meta_col_int(s, 0),
			 (const char *)meta_col_text(s, 1),
			 (uint32_t)meta_col_int(s, 2),
			 (uint32_t)meta_col_int(s, 3));
	meta_reset(s);
	return ret ? ret : rc;
}

int meta_move_commit(struct meta *m, int64_t obj, uint32_t src, uint32_t dst,
		     int64_t now)
{
	struct meta_st *s;
	int64_t where = -1, refcount = 0, ghosted = 0;
	int64_t v[5];
	int rc = stmt_ints(m, H_MOVE_CHECK, &obj, 1, &s);

	if (rc)
		return rc;
	rc = meta_step(m, s, "move check");
	if (rc < 0)
		return rc;
	if (rc > 0) {
		where = meta_col_int(s, 0);
		refcount = meta_col_int(s, 1);
		ghosted = meta_col_int(s, 2);
		meta_reset(s);
	}
	if (where != (int64_t)src)
		return 0; /* gone, or moved by someone else */
	v[0] = obj;
	v[1] = src;
	v[2] = dst;
	/* references naming dst are direct again; the other ghosts now
	 * lead to dst; the new ghost counts the references naming src,
	 * i.e. all but those the older ghosts count */
	v[3] = refcount - ghosted;
	v[4] = now;
	rc = exec_ints(m, H_MOVE_GHOST_DEL, v, 3, "ghost delete");
	if (!rc)
		rc = exec_ints(m, H_MOVE_GHOST_DST, v, 3, "ghost update");
	if (!rc)
		rc = exec_ints(m, H_MOVE_GHOST_ADD, v, 5, "ghost insert");
	if (!rc)
		rc = exec_ints(m, H_MOVE_OBJECT, v, 3, "object move");
	return rc ? rc : 1;
}

int meta_ghosts(struct meta *m,
		int (*fn)(void *ctx, const struct meta_ghost *g), void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_shard_sql, H_GHOSTS, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "ghost list")) > 0) {
		struct meta_ghost g;

		g.obj = meta_col_int(s, 0);
		snprintf(g.name, sizeof(g.name), "%s",
			 (const char *)meta_col_text(s, 1));
		g.src = (uint32_t)meta_col_int(s, 2);
		g.dst = (uint32_t)meta_col_int(s, 3);
		g.refcount = meta_col_int(s, 4);
		g.created = meta_col_int(s, 5);
		g.object_exists = meta_col_int(s, 6) != 0;
		ret = fn(ctx, &g);
	}
	meta_reset(s);
	return ret ? ret : rc;
}

int meta_ghost_count(struct meta *m, uint64_t *n)
{
	return meta_count(m, &meta_shard_sql, H_GHOST_COUNT, "ghost count", n);
}

int meta_ghost_target(struct meta *m, int64_t obj, uint32_t src, uint32_t *dst)
{
	int64_t v[2] = { obj, src }, d;
	int rc = int_by_ints(m, H_GHOST_DST, v, 2, &d, "ghost lookup");

	if (!rc)
		*dst = (uint32_t)d;
	return rc;
}

int meta_ghosts_repoint(struct meta *m, uint64_t from, size_t max_blocks,
			uint64_t skip_dst, uint64_t *next, uint64_t *repointed)
{
	int64_t v[3] = { (int64_t)from, (int64_t)max_blocks, 0 };
	int64_t end = INT64_MAX;
	int rc = int_by_ints(m, H_REPOINT_END, v, 2, &end, "repoint range");

	if (rc && rc != -ENOENT)
		return rc;
	if (end == (int64_t)from)
		end++; /* one inode with more blocks than a batch */
	v[1] = end;
	v[2] = (int64_t)skip_dst;
	rc = exec_ints(m, H_REPOINT, v, 3, "repoint");
	if (rc)
		return rc;
	*repointed = (uint64_t)meta_changes(m);
	*next = end == INT64_MAX ? UINT64_MAX : (uint64_t)end;
	return 0;
}

int meta_ghost_purge(struct meta *m, int64_t obj, uint32_t src, bool *purged)
{
	int64_t v[2] = { obj, src };
	int rc = exec_ints(m, H_GHOST_PURGE, v, 2, "ghost purge");

	if (!rc)
		*purged = meta_changes(m) > 0;
	return rc;
}

int meta_check_ghosts(struct meta *m,
		      int (*fn)(void *ctx, int64_t obj, uint32_t src,
				int64_t stored, int64_t truth, bool has_ghost),
		      void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_shard_sql, H_CHECK_GHOSTS, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "ghost check")) > 0)
		ret = fn(ctx, meta_col_int(s, 0), (uint32_t)meta_col_int(s, 1),
			 meta_col_int(s, 2), meta_col_int(s, 3),
			 meta_col_int(s, 4) != 0);
	meta_reset(s);
	return ret ? ret : rc;
}

int meta_ghost_fix(struct meta *m, int64_t obj, uint32_t src, int64_t truth,
		   bool has_ghost)
{
	int64_t v[3] = { obj, src, truth };

	if (has_ghost)
		return exec_ints(m, H_GHOST_FIX, v, 3, "ghost repair");
	return exec_ints(m, H_REFERENCE_FIX, v, 2, "reference repair");
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

	return exec_ints(m, H_SWEEP_PUT, v, 7, "sweep log");
}

int meta_sweep_last(struct meta *m, struct meta_sweep_event *e,
		    uint64_t *total_purged)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_shard_sql, H_SWEEP_LAST, &s);

	if (rc)
		return rc;
	rc = meta_step(m, s, "sweep log");
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	e->at = meta_col_int(s, 0);
	e->checked = (uint64_t)meta_col_int(s, 1);
	e->purged = (uint64_t)meta_col_int(s, 2);
	e->kept = (uint64_t)meta_col_int(s, 3);
	e->inconclusive = (uint64_t)meta_col_int(s, 4);
	e->repointed = (uint64_t)meta_col_int(s, 5);
	e->duration_ms = meta_col_int(s, 6);
	*total_purged = (uint64_t)meta_col_int(s, 7);
	meta_reset(s);
	return 0;
}

int meta_ghost_refcount(struct meta *m, int64_t obj, uint32_t src,
			int64_t *refcount)
{
	int64_t v[2] = { obj, src };

	return int_by_ints(m, H_GHOST_REFCOUNT, v, 2, refcount, "ghost count");
}

int meta_object_ghosts(struct meta *m, int64_t obj,
		       int (*fn)(void *ctx, uint32_t src, uint32_t dst,
				 int64_t refcount),
		       void *ctx)
{
	struct meta_st *s;
	int rc = stmt_ints(m, H_OBJECT_GHOSTS, &obj, 1, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "object ghosts")) > 0)
		ret = fn(ctx, (uint32_t)meta_col_int(s, 0),
			 (uint32_t)meta_col_int(s, 1), meta_col_int(s, 2));
	meta_reset(s);
	return ret ? ret : rc;
}
