/* SPDX-License-Identifier: MIT */
/*
 * The shard family of the metadata store: shards and their usage,
 * rebalance moves, ghosts and the sweep log.
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

/*
 * The prepared statement of literal @sql, reset and with no bindings:
 * prepared once, kept by address (a rebalance runs these per object).
 * Each user ends with sqlite3_reset(), never finalize.
 */
int meta_prep(struct meta *m, const char *sql, sqlite3_stmt **out)
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
		return meta_errno(rc);
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
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, what);
}

int meta_shards(struct meta *m,
		int (*fn)(void *ctx, uint32_t id, const char *path, int state),
		void *ctx)
{
	sqlite3_stmt *s;
	int rc = meta_prep(m, "SELECT id, path, state FROM shards ORDER BY id",
			   &s);

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
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, "shard list");
}

int meta_shard_add(struct meta *m, const char *path, uint32_t max_id,
		   int64_t now, uint32_t *id)
{
	sqlite3_stmt *s;
	int64_t next = 0;
	int rc =
		meta_prep(m, "SELECT coalesce(max(id), 0) + 1 FROM shards", &s);

	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		next = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (next <= 0 || next > (int64_t)max_id)
		return -EMLINK;
	rc = meta_prep(m,
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
	int rc = meta_prep(m, "UPDATE shards SET state = ?2 WHERE id = ?1", &s);

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
	int rc = meta_prep(m, sql, &s);

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
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, "shard usage");
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
	return meta_exec(m,
			 "DELETE FROM shard_usage; INSERT INTO shard_usage "
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
	int rc = meta_prep(m,
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
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, "objects of a shard");
}

int meta_move_begin(struct meta *m, int64_t obj, const char *name, uint32_t src,
		    uint32_t dst)
{
	sqlite3_stmt *s;
	int rc = meta_prep(m,
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
	int rc = meta_prep(m, "DELETE FROM moves WHERE obj = ?1", &s);

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
	int rc = meta_prep(m, "SELECT obj, name, src, dst FROM moves", &s);

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
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, "move list");
}

/* Run @sql with integer parameters ?1..?n. */
static int exec_ints(struct meta *m, const char *sql, const int64_t *v, int n,
		     const char *what)
{
	sqlite3_stmt *s;
	int rc = meta_prep(m, sql, &s), i;

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
	int rc = meta_prep(m,
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
		return meta_fail(m, rc, "move check");
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
		rc = meta_prep(
			m,
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
	int rc = meta_prep(m,
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
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, "ghost list");
}

int meta_ghost_count(struct meta *m, uint64_t *n)
{
	int64_t v = meta_pragma_int(m, "SELECT count(*) FROM ghosts");

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
	return rc == SQLITE_DONE ? -ENOENT : meta_fail(m, rc, what);
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

int meta_ghosts_repoint(struct meta *m, uint64_t from, size_t max_blocks,
			uint64_t skip_dst, uint64_t *next, uint64_t *repointed)
{
	sqlite3_stmt *s;
	int64_t end = INT64_MAX;
	int rc =
		meta_prep(m,
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
		return meta_fail(m, rc, "repoint range");
	if (end == (int64_t)from)
		end++; /* one inode with more blocks than a batch */
	rc = meta_prep(m,
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
	int rc = meta_prep(
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
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, "ghost check");
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
	int rc = meta_prep(
		m,
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
	return rc == SQLITE_DONE ? -ENOENT : meta_fail(m, rc, "sweep log");
}

int meta_ghost_refcount(struct meta *m, int64_t obj, uint32_t src,
			int64_t *refcount)
{
	sqlite3_stmt *s;
	int rc = meta_prep(
		m, "SELECT refcount FROM ghosts WHERE obj = ?1 AND src = ?2",
		&s);

	return rc ? rc : int_by_pair(m, s, obj, src, refcount, "ghost count");
}

int meta_object_ghosts(struct meta *m, int64_t obj,
		       int (*fn)(void *ctx, uint32_t src, uint32_t dst,
				 int64_t refcount),
		       void *ctx)
{
	sqlite3_stmt *s;
	int rc = meta_prep(
		m,
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
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, "object ghosts");
}
