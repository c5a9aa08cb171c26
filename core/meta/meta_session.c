/* SPDX-License-Identifier: MIT */
/*
 * Sessions and leases in the metadata store (core/cluster/session.c drives them).
 *
 *   sessions(id, host, pid, started, heartbeat, expires)
 *       a mount (a node) while it lives: id is its node id, the one its
 *       node report is filed under; expires is when the others may take
 *       it for dead (its last heartbeat plus the expiry it announced).
 *   leases(name, holder, expires)
 *       a background job that one node at a time runs (session cleanup),
 *       taken by a conditional upsert: free, expired or already ours.
 *
 * The SQLite engine has the same tables (one node at a time holds the
 * store there, but the status and tallyfsck read them alike).
 */
#include "core/meta/meta_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/array.h"
#include "core/util/log.h"

enum {
	S_ADD,
	S_BEAT,
	S_DEL,
	S_LIST,
	S_EXPIRED,
	S_LIVE,
	S_LEASE_TAKE,
	S_LEASE_DROP,
	S_HOLD,
	S_UNREPORTED,
	S_HOLD_ADD,
	S_HOLD_NEW,
	S_WATCH_ADD,
	S_WATCH_DEL,
	S_WATCHES_DEL,
	S_HOLD_DEL,
	S_HOLDS_DEL,
	S_HELD,
	S_INODE_LOCK,
	S_UNHELD,
	S_HOLDS_DEL_SOME,
	S_INODES_LOCK,
	S_RELAXED,
	S_NOW,
	S_COUNT
};

static const char *const session_text[S_COUNT] = {
	[S_ADD] = "INSERT INTO sessions(id, host, pid, started, heartbeat, "
		  "expires) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
	[S_BEAT] = "UPDATE sessions SET heartbeat = ?2, expires = ?3 "
		   "WHERE id = ?1",
	[S_DEL] = "DELETE FROM sessions WHERE id = ?1",
	[S_LIST] = "SELECT s.id, s.host, s.pid, s.started, s.heartbeat, "
		   "s.expires, (SELECT count(*) FROM node_objects o "
		   "WHERE o.node = s.id) FROM sessions s ORDER BY s.started, "
		   "s.id",
	[S_EXPIRED] = "SELECT id FROM sessions WHERE expires < ?1 ORDER BY id",
	[S_LIVE] = "SELECT count(*) FROM sessions WHERE expires >= ?1 "
		   "AND id <> ?2",
	[S_LEASE_TAKE] = "INSERT INTO leases(name, holder, expires) "
			 "VALUES (?1, ?2, ?3) ON CONFLICT(name) DO UPDATE "
			 "SET holder = excluded.holder, "
			 "expires = excluded.expires WHERE "
			 "leases.holder = excluded.holder OR "
			 "leases.expires < ?4",
	[S_LEASE_DROP] = "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
	/* one mount at a time holds an embedded store: nothing to hold */
	[S_HOLD] = "SELECT 1",
	[S_UNREPORTED] = "SELECT count(*) FROM sessions s WHERE NOT EXISTS "
			 "(SELECT 1 FROM node_reports r WHERE r.node = s.id)",
	/* a hold already there (a release whose commit was lost left
	 * it) counts as a row: only a missing inode is -ENOENT */
	[S_HOLD_ADD] = "INSERT INTO open_holds(node, ino) SELECT ?1, ino "
		       "FROM inodes WHERE ino = ?2 ON CONFLICT(node, ino) "
		       "DO UPDATE SET node = excluded.node",
	/* the inode's row was made by this same transaction: no other
	 * sees it, so there is nothing to lock (PostgreSQL's FOR SHARE of
	 * it made a create about 40 us slower) */
	[S_HOLD_NEW] = "INSERT INTO open_holds(node, ino) VALUES (?1, ?2)",
	[S_WATCH_ADD] = "INSERT INTO dir_watch(dir, node) VALUES (?1, ?2) "
			"ON CONFLICT DO NOTHING",
	[S_WATCHES_DEL] = "DELETE FROM dir_watch WHERE node = ?1",
	[S_WATCH_DEL] = "DELETE FROM dir_watch WHERE dir = ?1 AND node <> ?2",
	[S_HOLD_DEL] = "DELETE FROM open_holds WHERE node = ?1 AND ino = ?2",
	[S_HOLDS_DEL] = "DELETE FROM open_holds WHERE node = ?1",
	[S_HELD] = "SELECT count(*) FROM open_holds WHERE ino = ?1 "
		   "AND node <> ?2",
	[S_INODE_LOCK] = "SELECT nlink FROM inodes WHERE ino = ?1",
	[S_UNHELD] = META_ORPHANS_SQL " AND NOT EXISTS (SELECT 1 FROM "
				      "open_holds h WHERE h.ino = coalesce("
				      "i.base, i.ino))",
	/* ?2, ?1: a JSON array of inode numbers (meta_holds_release()) */
	[S_HOLDS_DEL_SOME] = "DELETE FROM open_holds WHERE node = ?1 AND "
			     "ino IN (SELECT value FROM json_each(?2))",
	[S_INODES_LOCK] = "SELECT ino FROM inodes WHERE nlink = 0 AND "
			  "ino IN (SELECT value FROM json_each(?1)) "
			  "ORDER BY ino",
	[S_RELAXED] = "SELECT 1",
	[S_NOW] = "SELECT CAST(strftime('%s', 'now') AS INTEGER)",
};

static const char *const session_pg[S_COUNT] = {
	[S_HOLD] = "SELECT 1 FROM sessions WHERE id = ?1 FOR SHARE",
	/* an open's hold and an unlink's last link take the inode's row
	 * in turn: the unlink sees the hold, or the open finds no row */
	[S_HOLD_ADD] = "INSERT INTO open_holds(node, ino) SELECT ?1, ino "
		       "FROM (SELECT ino FROM inodes WHERE ino = ?2 FOR SHARE) "
		       "AS i ON CONFLICT(node, ino) "
		       "DO UPDATE SET node = excluded.node",
	[S_INODE_LOCK] = "SELECT nlink FROM inodes WHERE ino = ?1 FOR UPDATE",
	[S_HOLDS_DEL_SOME] = "DELETE FROM open_holds WHERE node = ?1 AND "
			     "ino IN (SELECT x::bigint FROM "
			     "jsonb_array_elements_text(?2::jsonb) AS v(x))",
	/* every row locked, in one order (no deadlock between two such),
	 * and the count of each read after its lock, as S_INODE_LOCK's: a
	 * count another node's commit took to 0 meanwhile is 0. The lock
	 * is MATERIALIZED: a filter on the count pushed below it would
	 * pass by a row at 1 in the snapshot, neither locked nor read
	 * again */
	[S_INODES_LOCK] = "WITH l AS MATERIALIZED (SELECT ino, nlink FROM "
			  "inodes WHERE ino IN (SELECT x::bigint FROM "
			  "jsonb_array_elements_text(?1::jsonb) AS v(x)) "
			  "ORDER BY ino FOR UPDATE) SELECT ino FROM l "
			  "WHERE nlink = 0",
	[S_RELAXED] = "SELECT set_config('synchronous_commit', 'off', true)",
	/* the server's clock, the one every node's times are compared by */
	[S_NOW] = "SELECT CAST(extract(epoch FROM clock_timestamp()) "
		  "AS BIGINT)",
};

const struct meta_sql meta_session_sql = { META_SESSION, S_COUNT, session_text,
					   session_pg };

int meta_sessions_unreported(struct meta *m, uint64_t *n)
{
	return meta_count(m, &meta_session_sql, S_UNREPORTED,
			  "unreported sessions", n);
}

int meta_session_hold(struct meta *m, int64_t id)
{
	struct meta_st *s;
	int64_t v;
	int rc = meta_stmt(m, &meta_session_sql, S_HOLD, &s);

	if (rc)
		return rc;
	if (m->pg)
		meta_bind_int(s, 1, id);
	rc = meta_int(m, s, &v, "session hold");
	return rc == -ENOENT ? -ESTALE : rc;
}

int meta_session_add(struct meta *m, int64_t id, const char *host, int64_t pid,
		     int64_t now, int64_t expires)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_session_sql, S_ADD, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, id);
	meta_bind_text(s, 2, host);
	meta_bind_int(s, 3, pid);
	meta_bind_int(s, 4, now);
	meta_bind_int(s, 5, expires);
	return meta_run(m, s, "session start");
}

int meta_session_beat(struct meta *m, int64_t id, int64_t now, int64_t expires)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_session_sql, S_BEAT, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, id);
	meta_bind_int(s, 2, now);
	meta_bind_int(s, 3, expires);
	rc = meta_run(m, s, "heartbeat");
	if (!rc && meta_changes(m) == 0)
		return -ENOENT;
	return rc;
}

int meta_session_remove(struct meta *m, int64_t id)
{
	int rc = meta_run_int(m, &meta_session_sql, S_DEL, id, "session end");

	if (!rc)
		rc = meta_run_int(m, &meta_session_sql, S_HOLDS_DEL, id,
				  "session end");
	if (!rc)
		rc = meta_run_int(m, &meta_session_sql, S_WATCHES_DEL, id,
				  "session end");
	return rc ? rc : meta_node_remove(m, id);
}

/* Statement @id with integers ?1 = @a, ?2 = @b. */
static int stmt2(struct meta *m, int id, int64_t a, int64_t b,
		 struct meta_st **s)
{
	int rc = meta_stmt(m, &meta_session_sql, id, s);

	if (!rc) {
		meta_bind_int(*s, 1, a);
		meta_bind_int(*s, 2, b);
	}
	return rc;
}

int meta_hold_add(struct meta *m, int64_t node, uint64_t ino)
{
	struct meta_st *s;
	int rc = stmt2(m, S_HOLD_ADD, node, (int64_t)ino, &s);

	if (!rc)
		rc = meta_run(m, s, "open hold");
	return !rc && meta_changes(m) == 0 ? -ENOENT : rc;
}

int meta_hold_new(struct meta *m, int64_t node, uint64_t ino)
{
	struct meta_st *s;
	int rc = stmt2(m, S_HOLD_NEW, node, (int64_t)ino, &s);

	return rc ? rc : meta_run_later(m, s, "open hold");
}

int meta_dir_watch(struct meta *m, uint64_t dir, int64_t node)
{
	struct meta_st *s;
	int rc = stmt2(m, S_WATCH_ADD, (int64_t)dir, node, &s);

	return rc ? rc : meta_run_later(m, s, "directory watch");
}

int meta_dir_unwatch(struct meta *m, uint64_t dir, int64_t keep)
{
	struct meta_st *s;
	int rc = stmt2(m, S_WATCH_DEL, (int64_t)dir, keep, &s);

	return rc ? rc : meta_run_later(m, s, "directory watch");
}

int meta_hold_del(struct meta *m, int64_t node, uint64_t ino)
{
	struct meta_st *s;
	int rc = stmt2(m, S_HOLD_DEL, node, (int64_t)ino, &s);

	return rc ? rc : meta_run_later(m, s, "open hold");
}

static int hold_release(struct meta *m, int64_t node, uint64_t ino,
			uint32_t *nlink)
{
	struct meta_st *s;
	int64_t v = 0;
	int rc = meta_begin(m);

	if (!rc)
		rc = meta_hold_del(m, node, ino);
	if (!rc)
		rc = meta_relaxed(m); /* only the hold goes */
	if (!rc)
		rc = meta_stmt(m, &meta_session_sql, S_INODE_LOCK, &s);
	if (!rc) {
		meta_bind_int(s, 1, (int64_t)ino);
		rc = meta_int_commit(m, s, &v, "inode lock");
		if (!rc)
			*nlink = v < 0 ? 0 : (uint32_t)v;
		if (rc >= 0)
			return rc ? -ENOENT : 0; /* 1: the row is gone */
	}
	meta_rollback(m);
	return rc;
}

/* The @n numbers of @inos as a JSON array: a new string, or NULL. */
static char *json_inos(const uint64_t *inos, size_t n)
{
	size_t cap = n * 21 + 3, len = 0, i;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	out[len++] = '[';
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, cap - len, "%s%" PRIu64,
					i ? "," : "", inos[i]);
	out[len++] = ']';
	out[len] = '\0';
	return out;
}

static int holds_release(struct meta *m, int64_t node, const char *list,
			 uint64_t **zero, size_t *nzero)
{
	struct meta_st *s;
	int rc = meta_begin(m);

	if (!rc)
		rc = meta_stmt(m, &meta_session_sql, S_HOLDS_DEL_SOME, &s);
	if (!rc) {
		meta_bind_int(s, 1, node);
		meta_bind_text(s, 2, list);
		rc = meta_run_later(m, s, "open holds");
	}
	if (!rc)
		rc = meta_relaxed(m); /* only the holds go */
	if (!rc)
		rc = meta_stmt(m, &meta_session_sql, S_INODES_LOCK, &s);
	if (!rc) {
		meta_bind_text(s, 1, list);
		rc = meta_int_rows(m, s, "inode locks", zero, nzero);
	}
	if (!rc) {
		rc = meta_commit(m);
		if (!rc)
			return 0;
		free(*zero);
	}
	*zero = NULL;
	*nzero = 0;
	meta_rollback(m);
	return rc;
}

int meta_holds_release(struct meta *m, int64_t node, const uint64_t *inos,
		       size_t n, uint64_t **zero, size_t *nzero)
{
	char *list = json_inos(inos, n);
	int rc;

	*zero = NULL;
	*nzero = 0;
	if (!list)
		return -ENOMEM;
	rc = holds_release(m, node, list, zero, nzero);
	/* as meta_hold_release(): the drop and the reads may run twice */
	if (rc == -EIO && meta_pg_lost(m))
		rc = holds_release(m, node, list, zero, nzero);
	free(list);
	return rc;
}

int meta_hold_release(struct meta *m, int64_t node, uint64_t ino,
		      uint32_t *nlink)
{
	int rc = hold_release(m, node, ino, nlink);

	/* a connection lost under the COMMIT: whether it committed is
	 * unknown, but the drop of a hold and a read may run twice */
	if (rc == -EIO && meta_pg_lost(m))
		rc = hold_release(m, node, ino, nlink);
	return rc;
}

int meta_inode_last(struct meta *m, uint64_t ino, int64_t node)
{
	struct meta_st *s;
	int64_t v;
	int rc = meta_stmt(m, &meta_session_sql, S_INODE_LOCK, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)ino);
	rc = meta_int(m, s, &v, "inode lock");
	if (rc)
		return rc;
	return v > 0 ? 0 : meta_inode_unheld(m, ino, node);
}

int meta_inode_unheld(struct meta *m, uint64_t ino, int64_t node)
{
	struct meta_st *s;
	int64_t v;
	int rc = stmt2(m, S_HELD, (int64_t)ino, node, &s);

	if (!rc)
		rc = meta_int(m, s, &v, "open holds");
	if (rc)
		return rc == -ENOENT ? -EIO : rc;
	return v == 0;
}

int meta_relaxed(struct meta *m)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_session_sql, S_RELAXED, &s);

	return rc ? rc : meta_run_setting(m, s, "relaxed commit");
}

int meta_orphan_rows(struct meta *m, struct meta_st *s,
		     struct meta_orphan **out, size_t *n)
{
	struct meta_orphan *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	while ((rc = meta_step(m, s, "orphan scan")) > 0) {
		if (array_reserve(&v, &cap, cnt + 1, sizeof(*v))) {
			meta_reset(s);
			rc = -ENOMEM;
			break;
		}
		v[cnt++] = (struct meta_orphan){
			.ino = (uint64_t)meta_col_int(s, 0),
			.v = { .id = meta_col_int(s, 1),
			       .depth = (int)meta_col_int(s, 2) },
		};
	}
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int meta_orphans_unheld(struct meta *m, struct meta_orphan **out, size_t *n)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_session_sql, S_UNHELD, &s);

	return rc ? rc : meta_orphan_rows(m, s, out, n);
}

int meta_orphan_free(struct meta *m, const struct meta_orphan *o)
{
	int rc = meta_blocks_drop(m, &o->v, o->ino, 0);

	return rc ? rc : meta_inode_delete(m, &o->v, o->ino);
}

int meta_orphans_free(struct meta *m, size_t *n)
{
	struct meta_orphan *o = NULL;
	size_t i;
	int rc = meta_orphans_unheld(m, &o, n);

	for (i = 0; !rc && i < *n; i++)
		rc = meta_orphan_free(m, &o[i]);
	free(o);
	return rc;
}

int meta_now(struct meta *m, int64_t *now)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_session_sql, S_NOW, &s);

	if (!rc)
		rc = meta_int(m, s, now, "clock");
	return rc == -ENOENT ? -EIO : rc;
}

int meta_sessions(struct meta *m,
		  int (*fn)(void *ctx, const struct meta_session *s), void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_session_sql, S_LIST, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "session list")) > 0) {
		struct meta_session e = { 0 };
		const char *host = meta_col_text(s, 1);

		e.id = meta_col_int(s, 0);
		snprintf(e.host, sizeof(e.host), "%s", host ? host : "");
		e.pid = meta_col_int(s, 2);
		e.started = meta_col_int(s, 3);
		e.heartbeat = meta_col_int(s, 4);
		e.expires = meta_col_int(s, 5);
		e.active = (uint64_t)meta_col_int(s, 6);
		ret = fn(ctx, &e);
	}
	meta_reset(s);
	return ret ? ret : rc;
}

int meta_sessions_live(struct meta *m, int64_t now, int64_t self, uint64_t *n)
{
	struct meta_st *s;
	int64_t v;
	int rc = stmt2(m, S_LIVE, now, self, &s);

	if (!rc)
		rc = meta_int(m, s, &v, "live sessions");
	if (rc)
		return rc == -ENOENT ? -EIO : rc;
	*n = (uint64_t)v;
	return 0;
}

int meta_sessions_expired(struct meta *m, int64_t now, int64_t **ids, size_t *n)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_session_sql, S_EXPIRED, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, now);
	return meta_int_rows(m, s, "expired sessions", (uint64_t **)ids, n);
}

int meta_lease_take(struct meta *m, const char *name, int64_t holder,
		    int64_t now, int64_t until)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_session_sql, S_LEASE_TAKE, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	meta_bind_int(s, 2, holder);
	meta_bind_int(s, 3, until);
	meta_bind_int(s, 4, now);
	rc = meta_run(m, s, "lease");
	return rc ? rc : meta_changes(m) > 0;
}

int meta_lease_drop(struct meta *m, const char *name, int64_t holder)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_session_sql, S_LEASE_DROP, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	meta_bind_int(s, 2, holder);
	return meta_run(m, s, "lease release");
}
