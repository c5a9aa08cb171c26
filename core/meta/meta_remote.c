/* SPDX-License-Identifier: MIT */
/*
 * The remote family of the metadata store: the persistent queues of the
 * remote tier (uploads, bucket deletions), the per-object remote state
 * (in the bucket, local copy cached) and the binding of a store to its
 * bucket. core/remote/remote.c runs the jobs; the queues are filled by triggers
 * on the object table, in the transaction that creates or deletes a row,
 * so no job can be lost between a commit and its queueing.
 */
#include "core/meta/meta_int.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/log.h"

/*
 * objects.remote: 1 once the bucket answered the upload of the object
 * with success (never before). objects.cached: 0 once the local copy was
 * evicted. remote_up(name, seq): objects to upload; seq is a flush
 * sequence number no higher than that of the flush that committed the
 * object (durable_seq + 1 at insert time: every flush of the group
 * committing it is above the last group's). remote_del(name, since):
 * bucket keys to delete once the deletion delay has passed since the
 * row went, if nothing names them again. The upload trigger works only
 * while config 'remote' is 1 (a store bound to a bucket).
 * config 'evicted_bytes' counts the bytes of rows whose copy is evicted.
 * objects.gen: the generation of the row's key (meta_key_name()); the
 * deletion queue, the marks of bucket GC and the deletion claims name
 * keys, the upload queue names objects (the row's generation goes).
 * The triggers are made again at every open: a store of before gets
 * those of this version.
 */
static const char remote_tables[] =
	"CREATE TABLE IF NOT EXISTS remote_up(name TEXT PRIMARY KEY,"
	" seq INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS remote_up_seq ON remote_up(seq);"
	"CREATE TABLE IF NOT EXISTS remote_del(name TEXT PRIMARY KEY,"
	" since INTEGER NOT NULL, epoch INTEGER NOT NULL DEFAULT 0)"
	" WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS remote_del_since ON remote_del(since);"
	"CREATE TABLE IF NOT EXISTS remote_marks(name TEXT PRIMARY KEY,"
	" since INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS remote_conf(key TEXT PRIMARY KEY,"
	" value TEXT NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS remote_deleting(name TEXT PRIMARY KEY,"
	" since INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS remote_snaps(key TEXT PRIMARY KEY,"
	" epoch INTEGER NOT NULL) WITHOUT ROWID;"
	/* keys a restore found that its snapshot does not name: the
	 * original's, kept for it (meta_remote_kept_add()) */
	"CREATE TABLE IF NOT EXISTS remote_kept(name TEXT PRIMARY KEY)"
	" WITHOUT ROWID;"
	"INSERT OR IGNORE INTO config(key, value) VALUES ('evicted_bytes', 0),"
	" ('snap_epoch', 1), ('snap_kept_epoch', 9223372036854775807);";

/* a deletion queue of before: its keys were deleted before any kept
 * snapshot (epoch 0), as then */
static const char epoch_column[] =
	"ALTER TABLE remote_del ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;";

static const char remote_triggers[] =
	"DROP TRIGGER IF EXISTS remote_obj_add;"
	"DROP TRIGGER IF EXISTS remote_obj_del;"
	"CREATE TRIGGER remote_obj_add AFTER INSERT ON objects"
	" WHEN (SELECT value FROM config WHERE key = 'remote') = 1 BEGIN"
	" INSERT OR REPLACE INTO remote_up(name, seq) VALUES (NEW.name,"
	" (SELECT value FROM config WHERE key = 'durable_seq') + 1); END;"
	"CREATE TRIGGER remote_obj_del AFTER DELETE ON objects"
	" BEGIN DELETE FROM remote_up WHERE name = OLD.name;"
	" INSERT OR REPLACE INTO remote_del(name, since, epoch)"
	" SELECT CASE WHEN OLD.gen = 0 THEN OLD.name"
	" ELSE OLD.name || '.g' || OLD.gen END, unixepoch(),"
	" (SELECT value FROM config WHERE key = 'snap_epoch')"
	" WHERE OLD.remote = 1;"
	" UPDATE config SET value = value - OLD.size"
	" WHERE key = 'evicted_bytes' AND OLD.cached = 0; END;";

static const char remote_columns[] =
	"ALTER TABLE objects ADD COLUMN remote INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE objects ADD COLUMN cached INTEGER NOT NULL DEFAULT 1;";

/* every row of before keeps generation 0: its key is its name */
static const char gen_column[] =
	"ALTER TABLE objects ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;";

enum {
	R_HAS_COLUMNS,
	R_HAS_GEN,
	R_HAS_EPOCH,
	R_SNAP_NAMED,
	R_SNAP_BUMP,
	R_SNAP_RECORD,
	R_SNAP_EPOCH,
	R_SNAP_KEPT,
	R_SNAP_PRUNE,
	R_GEN_TAKE,
	R_CONF_GET,
	R_CONF_SET,
	R_CONF_SWAP,
	R_ENABLE,
	R_QUEUE_ALL,
	R_NEXT,
	R_DONE_OBJ,
	R_DONE_QUEUE,
	R_DONE_QUEUE_GONE,
	R_ORPHAN_DEL,
	R_LOW,
	R_DELS,
	R_DELS_DUE,
	R_DEL_DONE,
	R_QUEUED,
	R_STATE,
	R_EVICTABLE,
	R_SET_CACHED,
	R_EVICTED_ADD,
	R_CACHE_BYTES,
	R_DEL_QUEUED,
	R_IN_BUCKET,
	R_NAMED,
	R_MARK_PUT,
	R_MARK_GET,
	R_MARK_DEL,
	R_DEL_ADD,
	R_NAME_LOCK,
	R_CLAIM,
	R_UNCLAIM,
	R_GONE,
	R_GONE_PRUNE,
	R_SHIPPED,
	R_STALE,
	R_CLAIMS,
	R_QUEUED_BY,
	R_REVIVE_OBJ,
	R_REVIVE_QUEUE,
	R_KEPT_ADD,
	R_KEPT_DROP,
	R_COUNT
};

static const char *const remote_text[R_COUNT] = {
	[R_HAS_COLUMNS] = "SELECT count(*) FROM pragma_table_info('objects') "
			  "WHERE name IN ('remote', 'cached')",
	[R_HAS_GEN] = "SELECT count(*) FROM pragma_table_info('objects') "
		      "WHERE name = 'gen'",
	[R_HAS_EPOCH] = "SELECT count(*) FROM pragma_table_info('remote_del') "
			"WHERE name = 'epoch'",
	/* a key whose row went before the copy of the oldest snapshot kept
	 * is named by none kept; one that went later may be */
	[R_SNAP_NAMED] = "SELECT 1 FROM remote_del WHERE name = ?1 AND epoch > "
			 "(SELECT value FROM config WHERE key = "
			 "'snap_kept_epoch')",
	[R_SNAP_BUMP] = "UPDATE config SET value = value + 1 WHERE key = "
			"'snap_epoch' RETURNING value - 1",
	[R_SNAP_RECORD] = "INSERT OR REPLACE INTO remote_snaps(key, epoch) "
			  "VALUES (?1, ?2)",
	/* a snapshot of before has no record: epoch 0, before every
	 * deletion recorded with one */
	[R_SNAP_EPOCH] = "SELECT coalesce((SELECT epoch FROM remote_snaps "
			 "WHERE key = ?1), 0)",
	[R_SNAP_KEPT] = "UPDATE config SET value = ?1 WHERE key = "
			"'snap_kept_epoch'",
	[R_SNAP_PRUNE] = "DELETE FROM remote_snaps WHERE epoch < ?1",
	/* one mount at a time holds an embedded store, and its flushes
	 * ship nothing before their commit: the next row's id, which
	 * AUTOINCREMENT never gives twice (O_OBJ_INSERT) */
	[R_GEN_TAKE] = "SELECT coalesce(max(seq), 0) + 1 FROM sqlite_sequence "
		       "WHERE name = 'objects'",
	[R_CONF_GET] = "SELECT value FROM remote_conf WHERE key = ?1",
	[R_CONF_SET] = "INSERT INTO remote_conf(key, value) VALUES (?1, ?2) "
		       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
	[R_CONF_SWAP] = "UPDATE remote_conf SET value = ?3 WHERE key = ?1 AND "
			"value = ?2 RETURNING 1",
	[R_ENABLE] = "INSERT INTO config(key, value) VALUES ('remote', 1) "
		     "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
	/* objects committed before the store had a bucket */
	[R_QUEUE_ALL] = "INSERT OR IGNORE INTO remote_up(name, seq) "
			"SELECT name, 0 FROM objects WHERE remote = 0",
	[R_NEXT] = "SELECT q.name, o.gen, q.seq, o.shard, o.size "
		   "FROM remote_up q JOIN objects o ON o.name = q.name "
		   "ORDER BY q.seq, q.name LIMIT ?1",
	[R_DONE_OBJ] = "UPDATE objects SET remote = 1 WHERE name = ?1 AND "
		       "gen = ?2",
	[R_DONE_QUEUE] = "DELETE FROM remote_up WHERE name = ?1",
	/* a row of another generation keeps its upload queued */
	[R_DONE_QUEUE_GONE] = "DELETE FROM remote_up WHERE name = ?1 AND NOT "
			      "EXISTS (SELECT 1 FROM objects WHERE name = ?1)",
	/* uploaded after its row went: the key is deleted in its turn */
	[R_ORPHAN_DEL] = "INSERT OR IGNORE INTO remote_del(name, since, epoch) "
			 "VALUES (?1, unixepoch(), (SELECT value FROM config "
			 "WHERE key = 'snap_epoch'))",
	[R_LOW] = "SELECT coalesce(min(seq), -1), count(*) FROM remote_up",
	[R_DELS] = "SELECT count(*) FROM remote_del",
	[R_DELS_DUE] = "SELECT name FROM remote_del WHERE since <= ?1 "
		       "ORDER BY since, name LIMIT ?2",
	[R_DEL_DONE] = "DELETE FROM remote_del WHERE name = ?1",
	[R_QUEUED] = "SELECT 1 FROM remote_up WHERE name = ?1",
	[R_STATE] = "SELECT remote, cached, shard, size, gen FROM objects "
		    "WHERE name = ?1",
	[R_EVICTABLE] = "SELECT id, name, shard, size FROM objects "
			"WHERE remote = 1 AND cached = 1 AND id > ?1 "
			"ORDER BY id LIMIT ?2",
	[R_SET_CACHED] = "UPDATE objects SET cached = ?2 WHERE name = ?1 "
			 "AND cached <> ?2 RETURNING size",
	[R_EVICTED_ADD] = "UPDATE config SET value = value + ?1 "
			  "WHERE key = 'evicted_bytes'",
	/* the key of any generation of the name */
	[R_DEL_QUEUED] = "SELECT 1 FROM remote_del WHERE name = ?1 OR "
			 "substr(name, 1, length(?1) + 2) = ?1 || '.g' LIMIT 1",
	[R_NAMED] = "SELECT 1 FROM objects WHERE name = ?1 AND gen = ?2 "
		    "UNION ALL SELECT 1 FROM remote_del WHERE name = ?3 "
		    "UNION ALL SELECT 1 FROM remote_kept WHERE name = ?3 "
		    "LIMIT 1",
	[R_KEPT_ADD] = "INSERT OR IGNORE INTO remote_kept(name) VALUES (?1)",
	[R_KEPT_DROP] = "DELETE FROM remote_kept",
	[R_MARK_PUT] = "INSERT OR IGNORE INTO remote_marks(name, since) "
		       "VALUES (?1, ?2)",
	[R_MARK_GET] = "SELECT since FROM remote_marks WHERE name = ?1",
	[R_MARK_DEL] = "DELETE FROM remote_marks WHERE name = ?1",
	[R_DEL_ADD] = "INSERT OR IGNORE INTO remote_del(name, since, epoch) "
		      "VALUES (?1, ?2, (SELECT value FROM config WHERE key = "
		      "'snap_epoch'))",
	[R_IN_BUCKET] = "SELECT name, size, gen FROM objects WHERE remote = 1",
	/* one mount at a time holds an embedded store: no turns to take */
	[R_NAME_LOCK] = "SELECT ?1",
	/* since > 0: under way since then; < 0: made (or tried) at -since */
	[R_CLAIM] = "INSERT INTO remote_deleting(name, since) "
		    "VALUES (?1, unixepoch()) ON CONFLICT(name) DO UPDATE "
		    "SET since = excluded.since",
	[R_UNCLAIM] = "DELETE FROM remote_deleting WHERE name = ?1",
	[R_GONE] = "UPDATE remote_deleting SET since = -unixepoch() "
		   "WHERE name = ?1 AND since > 0",
	[R_GONE_PRUNE] = "DELETE FROM remote_deleting WHERE since < 0 AND "
			 "-since < ?1",
	/* the embedded engine's flushes ship nothing before their commit:
	 * its rows take no generation again here */
	[R_SHIPPED] = "UPDATE objects SET remote = 1 WHERE name = ?1 AND "
		      "gen = ?2 AND NOT EXISTS (SELECT 1 FROM remote_deleting "
		      "WHERE name = ?3) RETURNING remote",
	/* one mount at a time holds an embedded store: a claim under way
	 * is of a mount that ended (a shared store only calls these) */
	[R_STALE] = "UPDATE remote_deleting SET since = -unixepoch() "
		    "WHERE since > 0",
	[R_CLAIMS] = "SELECT name, since, 0 FROM remote_deleting "
		     "WHERE since > 0 ORDER BY name",
	[R_QUEUED_BY] = "SELECT 0 FROM remote_up WHERE name = ?1",
	[R_REVIVE_OBJ] = "UPDATE objects SET remote = 0 WHERE name = ?1 "
			 "AND gen = ?2 AND remote = 1",
	[R_REVIVE_QUEUE] = "INSERT OR IGNORE INTO remote_up(name, seq) "
			   "SELECT name, (SELECT value FROM config WHERE "
			   "key = 'durable_seq') + 1 FROM objects "
			   "WHERE name = ?1 AND gen = ?2",
	[R_CACHE_BYTES] = "SELECT (SELECT coalesce(sum(bytes), 0) FROM "
			  "shard_usage) - (SELECT value FROM config WHERE "
			  "key = 'evicted_bytes')",
};

static const char restored_sql[] =
	"UPDATE objects SET remote = 1, cached = 0;"
	"DELETE FROM remote_up;"
	"UPDATE config SET value = (SELECT coalesce(sum(size), 0) FROM objects)"
	" WHERE key = 'evicted_bytes';"
	"DELETE FROM node_objects; DELETE FROM node_reports;"
	"DELETE FROM gc_marks;";

static const char *const remote_pg[R_COUNT] = {
	[R_HAS_COLUMNS] = META_SQLITE_ONLY,
	[R_HAS_GEN] = META_SQLITE_ONLY,
	[R_GEN_TAKE] = "SELECT nextval('object_gen')",
	/* a shared store makes no metadata snapshots */
	[R_HAS_EPOCH] = META_SQLITE_ONLY,
	[R_SNAP_NAMED] = META_SQLITE_ONLY,
	[R_SNAP_BUMP] = META_SQLITE_ONLY,
	[R_SNAP_RECORD] = META_SQLITE_ONLY,
	[R_SNAP_EPOCH] = META_SQLITE_ONLY,
	[R_SNAP_KEPT] = META_SQLITE_ONLY,
	[R_SNAP_PRUNE] = META_SQLITE_ONLY,
	/* a shared store is not made by a restore: nothing kept */
	[R_NAMED] = "SELECT 1 FROM objects WHERE name = ?1 AND gen = ?2 "
		    "UNION ALL SELECT 1 FROM remote_del WHERE name = ?3 "
		    "LIMIT 1",
	[R_KEPT_ADD] = META_SQLITE_ONLY,
	[R_KEPT_DROP] = META_SQLITE_ONLY,
	[R_ORPHAN_DEL] = "INSERT OR IGNORE INTO remote_del(name, since) "
			 "VALUES (?1, unixepoch())",
	[R_DEL_ADD] = "INSERT OR IGNORE INTO remote_del(name, since) "
		      "VALUES (?1, ?2)",
	/* a shared store: the uploads this node queued, and those of nodes
	 * whose session is gone (their copy may be here: a remount) */
	[R_NEXT] = "SELECT q.name, o.gen, q.seq, o.shard, o.size "
		   "FROM remote_up q JOIN objects o ON o.name = q.name "
		   "WHERE (q.node = tally_node() OR NOT EXISTS (SELECT 1 "
		   "FROM sessions s WHERE s.id = q.node AND s.expires >= "
		   "unixepoch())) AND NOT EXISTS (SELECT 1 FROM "
		   "remote_deleting d WHERE d.name = CASE WHEN o.gen = 0 "
		   "THEN o.name ELSE o.name || '.g' || o.gen END AND "
		   "d.since > 0) ORDER BY q.seq, q.name LIMIT ?1",
	/* the row of the generation shipped; one whose key has a deletion
	 * claimed takes a fresh generation (the insert of the row took the
	 * name's turn: a claim made before it is seen here) */
	[R_SHIPPED] = "UPDATE objects o SET remote = CASE WHEN c.claimed "
		      "THEN 0 ELSE 1 END, gen = CASE WHEN c.claimed THEN "
		      "nextval('object_gen') ELSE o.gen END FROM (SELECT "
		      "EXISTS (SELECT 1 FROM remote_deleting WHERE name = "
		      "?3) AS claimed) c WHERE o.name = ?1 AND o.gen = ?2 "
		      "RETURNING o.remote",
	[R_NAME_LOCK] = "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))",
	[R_CLAIM] =
		"INSERT INTO remote_deleting(name, since, node) "
		"VALUES (?1, unixepoch(), tally_node()) ON CONFLICT(name) "
		"DO UPDATE SET since = excluded.since, node = excluded.node",
	/* claims under way of nodes whose session is gone: their job went
	 * with the node (killed, or its session expired) */
	[R_STALE] = "UPDATE remote_deleting d SET since = -unixepoch() "
		    "WHERE d.since > 0 AND NOT EXISTS (SELECT 1 FROM sessions "
		    "s WHERE s.id = d.node AND s.expires >= unixepoch())",
	[R_CLAIMS] = "SELECT name, since, node FROM remote_deleting "
		     "WHERE since > 0 ORDER BY name",
	[R_QUEUED_BY] = "SELECT node FROM remote_up WHERE name = ?1",
	/* this node's claim only: another's (made after a takeover of
	 * this one) is not its to end */
	[R_GONE] = "UPDATE remote_deleting SET since = -unixepoch() "
		   "WHERE name = ?1 AND since > 0 AND node = tally_node()",
	[R_REVIVE_QUEUE] = "INSERT INTO remote_up(name, seq, node) "
			   "SELECT name, (SELECT value FROM config WHERE "
			   "key = 'durable_seq') + 1, tally_node() FROM "
			   "objects WHERE name = ?1 AND gen = ?2 ON "
			   "CONFLICT(name) DO NOTHING",
};

const struct meta_sql meta_remote_sql = { META_REMOTE, R_COUNT, remote_text,
					  remote_pg };

/* Inside the transaction that opens a store (core/meta/meta_db.c). */
int meta_remote_schema(struct meta *m)
{
	struct meta_st *s;
	int64_t n = 0, gen = 0, epoch = 0;
	int rc = meta_stmt(m, &meta_remote_sql, R_HAS_COLUMNS, &s);

	if (!rc)
		rc = meta_int(m, s, &n, "remote columns");
	if (!rc)
		rc = meta_stmt(m, &meta_remote_sql, R_HAS_GEN, &s);
	if (!rc)
		rc = meta_int(m, s, &gen, "remote columns");
	if (!rc && n != 2)
		rc = meta_exec(m, remote_columns);
	if (!rc && !gen)
		rc = meta_exec(m, gen_column);
	if (!rc)
		rc = meta_exec(m, remote_tables);
	if (!rc)
		rc = meta_stmt(m, &meta_remote_sql, R_HAS_EPOCH, &s);
	if (!rc)
		rc = meta_int(m, s, &epoch, "remote columns");
	if (!rc && !epoch)
		rc = meta_exec(m, epoch_column);
	if (!rc)
		rc = meta_exec(m, remote_triggers);
	return rc;
}

void meta_key_name(const char *name, int64_t gen, char out[OBJKEY_MAX])
{
	if (gen == 0)
		snprintf(out, OBJKEY_MAX, "%s", name);
	else
		snprintf(out, OBJKEY_MAX, "%s.g%" PRId64, name, gen);
}

int meta_key_parse(const char *key, char name[OBJNAME_MAX], int64_t *gen)
{
	const char *g = strstr(key, ".g");
	size_t n = g ? (size_t)(g - key) : strlen(key);
	char *end;

	if (n >= OBJNAME_MAX)
		return -EINVAL;
	memcpy(name, key, n);
	name[n] = '\0';
	if (!hash_name_valid(name))
		return -EINVAL;
	*gen = 0;
	if (!g)
		return 0;
	/* digits only, no sign, no leading zero: one spelling per key */
	if (g[2] < '1' || g[2] > '9')
		return -EINVAL;
	errno = 0;
	*gen = strtoll(g + 2, &end, 10);
	return errno || *end || *gen <= 0 ? -EINVAL : 0;
}

int meta_gen_take(struct meta *m, int64_t *gen)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_GEN_TAKE, &s);

	return rc ? rc : meta_int(m, s, gen, "key generation");
}

int meta_remote_conf_get(struct meta *m, const char *key, char **out)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_CONF_GET, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, key);
	rc = meta_step(m, s, "remote settings");
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	*out = strdup((const char *)meta_col_text(s, 0));
	meta_reset(s);
	return *out ? 0 : -ENOMEM;
}

int meta_remote_conf_set(struct meta *m, const char *key, const char *val)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_CONF_SET, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, key);
	meta_bind_text(s, 2, val);
	return meta_run(m, s, "remote settings");
}

int meta_remote_conf_swap(struct meta *m, const char *key, const char *old,
			  const char *val)
{
	struct meta_st *s;
	int64_t one;
	int rc = meta_stmt(m, &meta_remote_sql, R_CONF_SWAP, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, key);
	meta_bind_text(s, 2, old);
	meta_bind_text(s, 3, val);
	rc = meta_int(m, s, &one, "remote settings");
	return rc == -ENOENT ? -ESTALE : rc;
}

int meta_remote_enable(struct meta *m, bool first)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_ENABLE, &s);

	if (!rc)
		rc = meta_run(m, s, "remote enable");
	if (!rc && first)
		rc = meta_stmt(m, &meta_remote_sql, R_QUEUE_ALL, &s);
	if (!rc && first)
		rc = meta_run(m, s, "remote queue");
	return rc;
}

int meta_remote_next(struct meta *m, unsigned limit,
		     int (*fn)(void *ctx, const char *name, int64_t gen,
			       int64_t seq, uint32_t shard, uint64_t size),
		     void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_NEXT, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, limit);
	while ((rc = meta_step(m, s, "upload queue")) > 0) {
		rc = fn(ctx, (const char *)meta_col_text(s, 0),
			meta_col_int(s, 1), meta_col_int(s, 2),
			(uint32_t)meta_col_int(s, 3),
			(uint64_t)meta_col_int(s, 4));
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

static int run_name(struct meta *m, int id, const char *name, const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, id, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	return meta_run(m, s, what);
}

/* Statement @id with ?1 = @name, ?2 = generation @gen, run. */
static int run_gen(struct meta *m, int id, const char *name, int64_t gen,
		   const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, id, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	meta_bind_int(s, 2, gen);
	return meta_run(m, s, what);
}

int meta_remote_uploaded(struct meta *m, const char *name, int64_t gen)
{
	char key[OBJKEY_MAX];
	int rc = run_gen(m, R_DONE_OBJ, name, gen, "upload record");

	if (rc || meta_changes(m) > 0)
		return rc ? rc
			  : run_name(m, R_DONE_QUEUE, name, "upload record");
	/* the row went while the upload ran, or was made again as another
	 * generation: this key goes, in its turn, unless it is named
	 * again by then; the other generation stays queued */
	meta_key_name(name, gen, key);
	rc = run_name(m, R_ORPHAN_DEL, key, "upload record");
	return rc ? rc : run_name(m, R_DONE_QUEUE_GONE, name, "upload record");
}

int meta_remote_name_lock(struct meta *m, const char *name)
{
	return run_name(m, R_NAME_LOCK, name, "name lock");
}

int meta_remote_claim(struct meta *m, const char *name)
{
	return run_name(m, R_CLAIM, name, "deletion claim");
}

int meta_remote_unclaim(struct meta *m, const char *name)
{
	return run_name(m, R_UNCLAIM, name, "deletion claim");
}

int meta_remote_gone(struct meta *m, const char *name)
{
	int rc = run_name(m, R_GONE, name, "deletion claim");

	if (rc || meta_changes(m) > 0)
		return rc;
	/* no claim of this node under way: taken over while the request
	 * ran (this node was taken for gone); a row of this key's
	 * generation (none can be made after its claim) is shipped again */
	{
		char obj[OBJNAME_MAX];
		int64_t gen;

		if (meta_key_parse(name, obj, &gen))
			return 0;
		rc = run_gen(m, R_REVIVE_OBJ, obj, gen, "deletion claim");
		return rc ? rc
			  : run_gen(m, R_REVIVE_QUEUE, obj, gen,
				    "deletion claim");
	}
}

int meta_remote_gone_prune(struct meta *m, int64_t before)
{
	return meta_run_int(m, &meta_remote_sql, R_GONE_PRUNE, before,
			    "deletion records");
}

int meta_remote_claims_stale(struct meta *m, uint64_t *n)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_STALE, &s);

	if (rc)
		return rc;
	rc = meta_run(m, s, "deletion claims");
	if (!rc)
		*n = (uint64_t)meta_changes(m);
	return rc;
}

int meta_remote_claims(struct meta *m,
		       int (*fn)(void *ctx, const char *name, int64_t since,
				 int64_t node),
		       void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_CLAIMS, &s);

	if (rc)
		return rc;
	while ((rc = meta_step(m, s, "deletion claims")) > 0) {
		rc = fn(ctx, (const char *)meta_col_text(s, 0),
			meta_col_int(s, 1), meta_col_int(s, 2));
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

int meta_remote_queued_by(struct meta *m, const char *name, int64_t *node)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_QUEUED_BY, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	return meta_int(m, s, node, "upload queue lookup");
}

int meta_remote_shipped(struct meta *m, const char *name, int64_t gen)
{
	char key[OBJKEY_MAX];
	struct meta_st *s;
	int64_t remote = 0;
	int rc = meta_stmt(m, &meta_remote_sql, R_SHIPPED, &s);

	if (rc)
		return rc;
	meta_key_name(name, gen, key);
	meta_bind_text(s, 1, name);
	meta_bind_int(s, 2, gen);
	meta_bind_text(s, 3, key);
	rc = meta_int(m, s, &remote, "upload record");
	if (rc == -ENOENT || (!rc && remote != 1))
		return 0; /* another generation, or its key claimed: queued */
	if (rc)
		return rc;
	rc = run_name(m, R_DONE_QUEUE, name, "upload record");
	return rc ? rc : 1;
}

int meta_remote_low(struct meta *m, int64_t *min_seq, uint64_t *queued)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_LOW, &s);

	if (rc)
		return rc;
	rc = meta_step(m, s, "upload queue");
	if (rc <= 0)
		return rc ? rc : -EIO;
	*min_seq = meta_col_int(s, 0);
	*queued = (uint64_t)meta_col_int(s, 1);
	meta_reset(s);
	return 0;
}

int meta_remote_dels(struct meta *m, uint64_t *n)
{
	return meta_count(m, &meta_remote_sql, R_DELS, "deletion queue", n);
}

int meta_remote_dels_due(struct meta *m, int64_t before, unsigned limit,
			 int (*fn)(void *ctx, const char *name), void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_DELS_DUE, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, before);
	meta_bind_int(s, 2, limit);
	return meta_each_name(m, s, fn, ctx);
}

int meta_remote_del_done(struct meta *m, const char *name)
{
	return run_name(m, R_DEL_DONE, name, "deletion record");
}

/* 1 if statement @id finds a row for @name, 0 if not, or -errno; @fault:
 * a lookup of the verdicts, which meta_inject_lookup() fails too. */
static int name_found(struct meta *m, int id, const char *name, bool fault,
		      const char *what)
{
	struct meta_st *s;
	int64_t one;
	int rc = fault ? meta_lookup_fault(m) : 0;

	if (!rc)
		rc = meta_stmt(m, &meta_remote_sql, id, &s);
	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	rc = meta_int(m, s, &one, what);
	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}

int meta_remote_queued(struct meta *m, const char *name)
{
	return name_found(m, R_QUEUED, name, true, "upload queue lookup");
}

int meta_remote_state(struct meta *m, const char *name,
		      struct meta_remote_state *out)
{
	struct meta_st *s;
	int rc = meta_lookup_fault(m);

	if (rc)
		return rc;
	rc = meta_stmt(m, &meta_remote_sql, R_STATE, &s);
	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	rc = meta_step(m, s, "object state");
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	out->remote = meta_col_int(s, 0) == 1;
	out->cached = meta_col_int(s, 1) != 0;
	out->shard = (uint32_t)meta_col_int(s, 2);
	out->size = (uint64_t)meta_col_int(s, 3);
	out->gen = meta_col_int(s, 4);
	meta_reset(s);
	return 0;
}

int meta_remote_evictable(struct meta *m, int64_t after, unsigned limit,
			  int (*fn)(void *ctx, int64_t id, const char *name,
				    uint32_t shard, uint64_t size),
			  void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_EVICTABLE, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, after);
	meta_bind_int(s, 2, limit);
	while ((rc = meta_step(m, s, "cache scan")) > 0) {
		rc = fn(ctx, meta_col_int(s, 0),
			(const char *)meta_col_text(s, 1),
			(uint32_t)meta_col_int(s, 2),
			(uint64_t)meta_col_int(s, 3));
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

int meta_remote_set_cached(struct meta *m, const char *name, bool cached)
{
	struct meta_st *s;
	int64_t size;
	int rc = meta_stmt(m, &meta_remote_sql, R_SET_CACHED, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	meta_bind_int(s, 2, cached ? 1 : 0);
	rc = meta_int(m, s, &size, "cache state");
	if (rc == -ENOENT)
		return 0; /* no row, or already so */
	if (rc)
		return rc;
	return meta_run_int(m, &meta_remote_sql, R_EVICTED_ADD,
			    cached ? -size : size, "cache bytes");
}

int meta_remote_cache_bytes(struct meta *m, uint64_t *bytes)
{
	return meta_count(m, &meta_remote_sql, R_CACHE_BYTES, "cache bytes",
			  bytes);
}

int meta_remote_del_queued(struct meta *m, const char *name)
{
	return name_found(m, R_DEL_QUEUED, name, false,
			  "deletion queue lookup");
}

int meta_snapshot_queued(const char *path,
			 int (*fn)(void *ctx, const char *name), void *ctx)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT name FROM remote_up", -1,
					&s, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		int err = fn(ctx, (const char *)sqlite3_column_text(s, 0));

		if (err) {
			sqlite3_finalize(s);
			sqlite3_close(db);
			return err;
		}
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		log_msg(LOG_ERR, "cannot read snapshot '%s': %s", path,
			db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rc == SQLITE_DONE ? 0 : meta_errno(rc);
}

int meta_remote_restored(struct meta *m)
{
	return meta_exec(m, restored_sql);
}

int meta_remote_in_bucket(struct meta *m,
			  int (*fn)(void *ctx, const char *name, uint64_t size),
			  void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_IN_BUCKET, &s);

	if (rc)
		return rc;
	while ((rc = meta_step(m, s, "objects in the bucket")) > 0) {
		char key[OBJKEY_MAX];

		meta_key_name((const char *)meta_col_text(s, 0),
			      meta_col_int(s, 2), key);
		rc = fn(ctx, key, (uint64_t)meta_col_int(s, 1));
		if (rc) {
			meta_reset(s);
			return rc;
		}
	}
	return rc;
}

/* Statement @id with text ?1 = @name and integer ?2 = @v, run. */
static int run_name_int(struct meta *m, int id, const char *name, int64_t v,
			const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, id, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	meta_bind_int(s, 2, v);
	return meta_run(m, s, what);
}

int meta_remote_named(struct meta *m, const char *name)
{
	char obj[OBJNAME_MAX];
	struct meta_st *s;
	int64_t gen, one;
	int rc = meta_key_parse(name, obj, &gen);

	if (!rc)
		rc = meta_lookup_fault(m);
	if (!rc)
		rc = meta_stmt(m, &meta_remote_sql, R_NAMED, &s);
	if (rc)
		return rc;
	meta_bind_text(s, 1, obj);
	meta_bind_int(s, 2, gen);
	meta_bind_text(s, 3, name);
	rc = meta_int(m, s, &one, "bucket key lookup");
	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}

int meta_remote_kept_add(struct meta *m, const char *key)
{
	struct meta_st *s;
	int rc;

	if (m->pg)
		return 0;
	rc = meta_stmt(m, &meta_remote_sql, R_KEPT_ADD, &s);
	if (rc)
		return rc;
	meta_bind_text(s, 1, key);
	return meta_run(m, s, "kept key");
}

int meta_remote_kept_release(struct meta *m)
{
	struct meta_st *s;
	int rc;

	if (m->pg)
		return 0;
	rc = meta_stmt(m, &meta_remote_sql, R_KEPT_DROP, &s);
	if (!rc)
		rc = meta_run(m, s, "kept keys");
	if (!rc)
		rc = meta_remote_conf_set(m, "kept_snaps", "");
	return rc;
}

int meta_remote_mark(struct meta *m, const char *name, int64_t now,
		     int64_t *since)
{
	struct meta_st *s;
	int rc = run_name_int(m, R_MARK_PUT, name, now, "bucket mark");

	if (!rc)
		rc = meta_stmt(m, &meta_remote_sql, R_MARK_GET, &s);
	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	return meta_int(m, s, since, "bucket mark");
}

int meta_remote_mark_get(struct meta *m, const char *name, int64_t *since)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_MARK_GET, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	return meta_int(m, s, since, "bucket mark");
}

int meta_remote_unmark(struct meta *m, const char *name)
{
	return run_name(m, R_MARK_DEL, name, "bucket mark");
}

int meta_remote_del_add(struct meta *m, const char *name, int64_t since)
{
	return run_name_int(m, R_DEL_ADD, name, since, "deletion queue");
}

int meta_remote_snap_named(struct meta *m, const char *key)
{
	if (meta_shared(m))
		return 0;
	return name_found(m, R_SNAP_NAMED, key, true, "snapshot lookup");
}

int meta_snap_epoch_bump(struct meta *m, int64_t *epoch)
{
	struct meta_st *s;
	int rc = meta_begin(m);

	if (rc)
		return rc;
	rc = meta_stmt(m, &meta_remote_sql, R_SNAP_BUMP, &s);
	if (!rc)
		rc = meta_int(m, s, epoch, "snapshot epoch");
	return meta_end(m, rc);
}

int meta_snap_record(struct meta *m, const char *key, int64_t epoch)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_remote_sql, R_SNAP_RECORD, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, key);
	meta_bind_int(s, 2, epoch);
	return meta_run(m, s, "snapshot record");
}

int meta_snap_kept(struct meta *m, const char *const *keys, size_t n)
{
	int64_t kept = INT64_MAX, e;
	size_t i;
	int rc = 0;

	for (i = 0; i < n && !rc; i++) {
		struct meta_st *s;

		rc = meta_stmt(m, &meta_remote_sql, R_SNAP_EPOCH, &s);
		if (rc)
			break;
		meta_bind_text(s, 1, keys[i]);
		rc = meta_int(m, s, &e, "snapshot record");
		if (!rc && e < kept)
			kept = e;
	}
	if (!rc)
		rc = meta_run_int(m, &meta_remote_sql, R_SNAP_KEPT, kept,
				  "snapshot record");
	if (!rc && kept != INT64_MAX)
		rc = meta_run_int(m, &meta_remote_sql, R_SNAP_PRUNE, kept,
				  "snapshot record");
	return rc;
}

int64_t meta_change_count(struct meta *m)
{
	/* less the intent log's own rows (ilog_seq): upkeep, no change to
	 * snapshot */
	return m->db ? (int64_t)sqlite3_total_changes64(m->db) -
			       (m->ilog ? (int64_t)m->ilog->own_changes : 0)
		     : 0;
}
