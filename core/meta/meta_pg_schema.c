/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL engine's schema: the tables, triggers and functions
 * of a store, formatting an empty database, and the check of a
 * database at open (a store of this format, or refused). The DESIGN
 * NOTES of core/meta/meta_pg.c hold here.
 */
#include "core/meta/meta_pg_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util/fault.h"
#include "core/util/log.h"

/*
 * What other nodes' kernels may cache and a change makes wrong, notified
 * at commit (core/cluster/watch.c). A name that goes or moves: an entry's delete
 * or update. A new name only in a directory another node knows whole
 * (a dir_watch row, core/fs/dirnames.c): no kernel caches a name's absence
 * (a lookup of a missing name is answered ENOENT, which the kernel keeps
 * for no time). An inode's change (by a statement sent with it,
 * I_INODE_NOTIFY in core/meta/meta_inode.c) or removal, but not a change of a
 * directory's times or link count (every create and unlink in it
 * changes its times, every mkdir and rmdir its count): those reach the
 * other nodes by the attribute timeout. A transaction
 * that notifies pays the queue entry, the commit's lock on the queue and
 * the listeners' wake-up (docs/design.md, push invalidation): 1000
 * unlinks through one mount took 640 µs each, 500 without. So a node
 * alone (OTHERS: no other session row) notifies nothing but the
 * dir_watch case, whose rows are other nodes' own; a node that
 * registers while a change is in flight may miss that change's
 * notification, and has the kernel timeouts. Replaced at every open, so
 * that stores formatted before have them.
 */
/* Written into the triggers, whose plan of it PL/pgSQL keeps: a SQL
 * function called there is planned again in every transaction. */
#define OTHERS                                                             \
	" IF NOT EXISTS (SELECT 1 FROM sessions WHERE id <> tally_node())" \
	" THEN RETURN NULL; END IF;"

#define NOTIFY_ENTRY                                                         \
	"CREATE OR REPLACE FUNCTION tally_notify_entry() RETURNS trigger"    \
	" LANGUAGE plpgsql AS $$ BEGIN" OTHERS                               \
	" PERFORM pg_notify('tally_inval', 'e ' || tally_node() || ' ' ||"   \
	" OLD.parent || ' ' || encode(OLD.name, 'hex'));"                    \
	" IF TG_OP = 'UPDATE' AND (NEW.parent, NEW.name) IS DISTINCT FROM"   \
	" (OLD.parent, OLD.name) THEN PERFORM pg_notify('tally_inval', 'e '" \
	" || tally_node() || ' ' || NEW.parent || ' ' ||"                    \
	" encode(NEW.name, 'hex')); END IF;"                                 \
	" RETURN NULL; END $$"

#define NOTIFY_INODE                                                       \
	"CREATE OR REPLACE FUNCTION tally_notify_inode() RETURNS trigger"  \
	" LANGUAGE plpgsql AS $$ BEGIN" OTHERS                             \
	" PERFORM pg_notify('tally_inval', 'i ' || tally_node() || ' ' ||" \
	" OLD.ino); RETURN NULL; END $$"

/* An inode's removal; its changes notify by a statement sent with them
 * (I_INODE_NOTIFY in core/meta/meta_inode.c): no trigger function runs in the
 * update of a directory's times that every create makes. */
#define NOTIFY_INODE_TRIGGER                                            \
	"CREATE TRIGGER inodes_notify AFTER DELETE ON inodes FOR EACH " \
	"ROW EXECUTE FUNCTION tally_notify_inode()"

/* Not on inserts: no trigger function runs in a create (below). */
#define NOTIFY_ENTRY_TRIGGER                                     \
	"CREATE TRIGGER dentries_notify AFTER DELETE OR UPDATE " \
	"ON dentries FOR EACH ROW EXECUTE FUNCTION tally_notify_entry()"

/*
 * Directories a node knows whole (core/fs/dirnames.c): another node's
 * insert of an entry into one takes the row away (meta_dentry_insert()
 * sends the delete with the insert) and the row's delete notifies the
 * node, once ("w NODE DIR"; it knows the directory whole no more, and
 * later inserts need tell it nothing). Not when the node itself deletes
 * its rows (its rmdir, its session's end), nor when its session is gone
 * (another node's cleanup). A delete that finds no row runs no function:
 * a trigger on the entries ran one in every create, and that and the
 * inode count's cost a create about 40 µs (docs/design.md). Made at open
 * for stores formatted before.
 */
#define DIR_WATCH                                                              \
	"CREATE TABLE IF NOT EXISTS dir_watch(dir BIGINT NOT NULL, node "      \
	"BIGINT NOT NULL, PRIMARY KEY(dir, node));"                            \
	"CREATE INDEX IF NOT EXISTS dir_watch_node ON dir_watch(node);"        \
	"CREATE OR REPLACE FUNCTION tally_watch_ended() RETURNS trigger "      \
	"LANGUAGE plpgsql AS $$ BEGIN IF OLD.node <> tally_node() AND EXISTS " \
	"(SELECT 1 FROM sessions WHERE id = OLD.node) THEN PERFORM "           \
	"pg_notify('tally_inval', 'w ' || tally_node() || ' ' || OLD.dir); "   \
	"END IF; RETURN NULL; END $$;"                                         \
	"CREATE OR REPLACE TRIGGER dir_watch_ended AFTER DELETE ON dir_watch " \
	"FOR EACH ROW EXECUTE FUNCTION tally_watch_ended()"

/*
 * The number of inodes, for statfs without a scan: the sum of the
 * config rows 'inodes' (what stores formatted before counted) and
 * 'inodes.0' to 'inodes.15', each node counting into the row of its
 * id's last four bits. One row for all would be locked by every create
 * and unlink from its update to its COMMIT (the WAL's flush), and the
 * nodes' creates would take turns. A delete counts by a trigger; an
 * insert, by the statement sent with it (meta_inode_put(), meta_branch():
 * a trigger function in every create cost it, above). Replaced at every
 * open.
 */
#define INODES_COUNT                                                          \
	"INSERT INTO config(key, value) SELECT 'inodes.' || g, 0 FROM "       \
	"generate_series(0, 15) g ON CONFLICT(key) DO NOTHING;"               \
	"CREATE OR REPLACE FUNCTION tally_inodes() RETURNS trigger LANGUAGE " \
	"plpgsql AS $$ BEGIN UPDATE config SET value = value + (CASE WHEN "   \
	"TG_OP = 'INSERT' THEN 1 ELSE -1 END) WHERE key = 'inodes.' || "      \
	"(tally_node() & 15); RETURN NULL; END $$"
#define INODES_COUNT_TRIGGER                                               \
	"CREATE TRIGGER inodes_count AFTER DELETE ON inodes FOR EACH ROW " \
	"EXECUTE FUNCTION tally_inodes()"

/*
 * An entry's delete that removed nothing fails (SQLSTATE P0002, ENOENT):
 * the delete waits for its answer with the next statement, and a name
 * two nodes remove at once must be removed once, or a file with another
 * link would lose a link count it still has (I_DENTRY_DELETE in
 * core/meta/meta_inode.c). Replaced at every open.
 */
#define ONE_ENTRY                                                       \
	"CREATE OR REPLACE FUNCTION tally_one_entry(n bigint) RETURNS " \
	"bigint LANGUAGE plpgsql AS $$ BEGIN IF n <> 1 THEN RAISE "     \
	"EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = "         \
	"'the entry is gone'; END IF; RETURN n; END $$"

/*
 * An entry's directory has a row: the insert of an entry takes its
 * directory's row (KEY SHARE) and fails once the row went (23503, ENOENT),
 * and the delete of a directory's row fails while an entry names it,
 * also one another node is inserting: an rmdir and a create in the
 * directory on two nodes never leave an entry whose directory is gone.
 * NOT VALID: added at open to stores formatted before, without a scan
 * of the entries they have. It references the inode number, the
 * inodes' key until format 4 (docs/design.md 13.5, 13.7).
 */
#define PARENT_FK                                                             \
	"ALTER TABLE dentries ADD CONSTRAINT dentries_parent_fk FOREIGN KEY " \
	"(parent) REFERENCES inodes(ino) NOT VALID"

/*
 * Per shard usage; the ghosts of an object go with its row; the remote
 * tier's queues (meta_remote.c): the deletion queue names keys
 * (meta_key_name()), the upload queue names objects. A new row of a
 * name and a bucket deletion of one of its keys take turns
 * (meta_remote_claim()). Replaced at every open.
 */
#define OBJECTS_FN                                                             \
	"CREATE OR REPLACE FUNCTION tally_objects() RETURNS trigger "          \
	"LANGUAGE plpgsql AS $$ BEGIN"                                         \
	" IF TG_OP IN ('DELETE', 'UPDATE') THEN UPDATE shard_usage"            \
	" SET objects = objects - 1, bytes = bytes - OLD.size"                 \
	" WHERE shard = OLD.shard; END IF;"                                    \
	" IF TG_OP IN ('INSERT', 'UPDATE') THEN"                               \
	" INSERT INTO shard_usage VALUES (NEW.shard, 1, NEW.size)"             \
	" ON CONFLICT(shard) DO UPDATE SET objects = shard_usage.objects + 1," \
	" bytes = shard_usage.bytes + NEW.size; END IF;"                       \
	" IF TG_OP = 'DELETE' THEN DELETE FROM ghosts WHERE obj = OLD.id;"     \
	" DELETE FROM remote_up WHERE name = OLD.name;"                        \
	" IF OLD.remote = 1 THEN INSERT INTO remote_del(name, since)"          \
	" VALUES (CASE WHEN OLD.gen = 0 THEN OLD.name ELSE OLD.name || '.g'"   \
	" || OLD.gen END, unixepoch()) ON CONFLICT(name) DO UPDATE"            \
	" SET since = excluded.since; END IF;"                                 \
	" IF OLD.cached = 0 THEN UPDATE config SET value = value - OLD.size"   \
	" WHERE key = 'evicted_bytes'; END IF; END IF;"                        \
	" IF TG_OP = 'INSERT' THEN"                                            \
	" PERFORM pg_advisory_xact_lock(hashtextextended(NEW.name, 0));"       \
	" END IF;"                                                             \
	" IF TG_OP = 'INSERT' AND (SELECT value FROM config"                   \
	" WHERE key = 'remote') = 1 THEN"                                      \
	" INSERT INTO remote_up(name, seq, node) VALUES (NEW.name, (SELECT"    \
	" value FROM config WHERE key = 'durable_seq') + 1, tally_node())"     \
	" ON CONFLICT(name) DO UPDATE SET seq = excluded.seq,"                 \
	" node = excluded.node; END IF;"                                       \
	" RETURN NULL; END $$"

/* Generations of bucket keys (meta_gen_take(), meta_key_name()): a
 * store of before gets the column (its rows keep generation 0: their key
 * is their name) and the sequence at open. */
#define OBJECT_GEN "CREATE SEQUENCE IF NOT EXISTS object_gen"
#define OBJECT_GEN_COLUMN                                                   \
	"ALTER TABLE objects ADD COLUMN IF NOT EXISTS gen BIGINT NOT NULL " \
	"DEFAULT 0"

/*
 * Versions (docs/design.md section 13): the tree of versions and its
 * closure, and the namespaces (format 3), as in core/meta/meta_db.c. A
 * namespace has one version so far, whose id is its root's number, made
 * and dropped with its root's row by triggers whose WHEN spares every
 * other inode's insert and delete a function call. `ver` is each
 * table's last column, as format 2's upgrade's ADD COLUMN put it, and
 * each table's key ends with it (format 3).
 */
#define VERSIONS_TABLES                                                  \
	"CREATE TABLE versions(id BIGINT PRIMARY KEY, parent BIGINT,"    \
	" kind BIGINT NOT NULL, name BYTEA, nspace BIGINT,"              \
	" view BIGINT NOT NULL, created BIGINT NOT NULL);"               \
	"CREATE TABLE ver_anc(ver BIGINT NOT NULL, anc BIGINT NOT NULL," \
	" PRIMARY KEY(ver, anc));"
#define VERSION_FNS                                                       \
	"CREATE OR REPLACE FUNCTION tally_version_add() RETURNS trigger"  \
	" LANGUAGE plpgsql AS $$ BEGIN INSERT INTO versions VALUES"       \
	" (NEW.ver, NULL, 1, NULL, NEW.ino, 0, NEW.ctime) ON CONFLICT DO" \
	" NOTHING; INSERT INTO ver_anc VALUES (NEW.ver, NEW.ver) ON"      \
	" CONFLICT DO NOTHING; INSERT INTO nspaces VALUES (NEW.ino,"      \
	" NEW.ino, NEW.ver, 0) ON CONFLICT DO NOTHING; RETURN NULL;"      \
	" END $$;"                                                        \
	"CREATE OR REPLACE FUNCTION tally_version_del() RETURNS trigger"  \
	" LANGUAGE plpgsql AS $$ BEGIN DELETE FROM nspaces WHERE id ="    \
	" OLD.ino; DELETE FROM ver_anc WHERE ver = OLD.ver; DELETE FROM"  \
	" versions WHERE id = OLD.ver; RETURN NULL; END $$"
#define VERSION_TRIGGERS                                                 \
	"CREATE TRIGGER version_add AFTER INSERT ON inodes FOR EACH ROW" \
	" WHEN (NEW.nspace = NEW.ino AND NEW.ino <> 1)"                  \
	" EXECUTE FUNCTION tally_version_add();"                         \
	"CREATE TRIGGER version_del AFTER DELETE ON inodes FOR EACH ROW" \
	" WHEN (OLD.nspace = OLD.ino AND OLD.ino <> 1)"                  \
	" EXECUTE FUNCTION tally_version_del()"
#define NSPACES_TABLE                                                       \
	"CREATE TABLE nspaces(id BIGINT PRIMARY KEY, root BIGINT NOT NULL," \
	" leaf BIGINT NOT NULL, view BIGINT NOT NULL);"
/*
 * Format 4: an inode's rows in later versions, as in meta_db_schema.c,
 * their keys below zero from a sequence (nodes copy up at once), their
 * inserts counted by a trigger that fires for them alone.
 */
#define INODES_BASE_INDEX                                      \
	"CREATE UNIQUE INDEX inodes_base ON inodes(base, ver)" \
	" WHERE base IS NOT NULL;"                             \
	"CREATE SEQUENCE inode_copies"
#define INODES_COPY_COUNT_TRIGGER                                           \
	"CREATE TRIGGER inodes_count_copy AFTER INSERT ON inodes FOR EACH " \
	"ROW WHEN (NEW.ino < 0) EXECUTE FUNCTION tally_inodes()"
/* format 2's key; format 3's upgrade changes it (pg_upgrade_3) */
#define EXTENTS_TABLE                                                    \
	"CREATE TABLE extents(ino BIGINT NOT NULL, off BIGINT NOT NULL," \
	" len BIGINT NOT NULL, obj BIGINT NOT NULL,"                     \
	" shard BIGINT NOT NULL, ver BIGINT NOT NULL,"                   \
	" PRIMARY KEY(ino, off));"
#define GHOST_REFS_TRIGGER                                                   \
	"CREATE TRIGGER ghost_refs AFTER INSERT OR DELETE OR UPDATE OF obj," \
	" shard ON extents FOR EACH ROW EXECUTE FUNCTION tally_ghost_refs()"

/*
 * Format 1 to 2, in the open's transaction under the format's lock, with
 * no other session live (another node of format 1 would write rows this
 * one no longer reads). What meta_db_schema.c's upgrade does: every row
 * its namespace's version, the block map as extents of block_size bytes.
 */
static const char *const pg_upgrade_2[] = {
	/* no notification nor count of each row the upgrade rewrites (a
	 * store last opened by an older build notifies updates too); made
	 * again at the end, the functions replaced after the upgrade */
	"DROP TRIGGER IF EXISTS ghost_refs ON blocks;"
	"DROP TRIGGER IF EXISTS dentries_notify ON dentries;"
	"DROP TRIGGER IF EXISTS inodes_notify ON inodes;"
	"DROP TRIGGER IF EXISTS inodes_count ON inodes;" VERSIONS_TABLES
	"INSERT INTO versions VALUES (0, NULL, 0, NULL, NULL, 0, 0);"
	"INSERT INTO versions SELECT ino, NULL, 1, NULL, ino, 0, ctime"
	" FROM inodes WHERE nspace = ino AND ino <> 1;"
	"INSERT INTO ver_anc SELECT id, id FROM versions;"
	"ALTER TABLE inodes ADD COLUMN ver BIGINT NOT NULL DEFAULT 0;"
	"UPDATE inodes SET ver = nspace WHERE ino <> 1;"
	"ALTER TABLE dentries ADD COLUMN ver BIGINT NOT NULL DEFAULT 0;"
	"UPDATE dentries d SET ver = coalesce((SELECT i.ver FROM inodes i"
	" WHERE i.ino = d.parent), 0);",
	"ALTER TABLE xattrs ADD COLUMN ver BIGINT NOT NULL DEFAULT 0;"
	"UPDATE xattrs x SET ver = coalesce((SELECT i.ver FROM inodes i"
	" WHERE i.ino = x.ino), 0);" EXTENTS_TABLE
	"INSERT INTO extents SELECT b.ino, b.idx * c.value, c.value, b.obj,"
	" b.shard, coalesce(i.ver, 0) FROM blocks b"
	" CROSS JOIN config c LEFT JOIN inodes i ON i.ino = b.ino"
	" WHERE c.key = 'block_size';"
	"DROP TABLE blocks;"
	"CREATE INDEX extents_obj ON extents(obj, shard);" GHOST_REFS_TRIGGER
	";" VERSION_FNS ";" VERSION_TRIGGERS ";" NOTIFY_ENTRY ";" NOTIFY_INODE
	";" INODES_COUNT ";" NOTIFY_ENTRY_TRIGGER ";" NOTIFY_INODE_TRIGGER
	";" INODES_COUNT_TRIGGER ";"
	"UPDATE tally_store SET format = 2;",
};

/*
 * Format 2 to 3, as meta_db_schema.c's: the tables of entries, extents
 * and xattrs keyed with the version of their rows (in place: the rows
 * stay, the keys are built again), an xattr's value NULL for a
 * whiteout, and a row in nspaces for each namespace.
 */
static const char *const pg_upgrade_3[] = {
	"ALTER TABLE dentries DROP CONSTRAINT dentries_parent_name_key;"
	"ALTER TABLE dentries ADD UNIQUE (parent, name, ver);"
	"ALTER TABLE extents DROP CONSTRAINT extents_pkey;"
	"ALTER TABLE extents ADD PRIMARY KEY (ino, ver, off);"
	"ALTER TABLE xattrs DROP CONSTRAINT xattrs_pkey;"
	"ALTER TABLE xattrs ADD PRIMARY KEY (ino, name, ver);"
	"ALTER TABLE xattrs ALTER COLUMN value DROP NOT NULL;" NSPACES_TABLE
	"INSERT INTO nspaces SELECT ino, ino, ver, 0 FROM inodes"
	" WHERE nspace = ino AND ino <> 1;" VERSION_FNS ";"
	"UPDATE tally_store SET format = 3;",
};

/*
 * Format 3 to 4, as meta_db_schema.c's: the column that names the inode
 * of a row in a later version than the inode's first, and its index.
 */
static const char *const pg_upgrade_4[] = {
	"ALTER TABLE inodes ADD COLUMN base BIGINT;" INODES_BASE_INDEX
	";" INODES_COPY_COUNT_TRIGGER ";"
	"UPDATE tally_store SET format = 4;",
};

/* In pieces: C99 compilers need not take strings over 4 KiB. */
static const char *const pg_schema[] = {
	"CREATE FUNCTION unixepoch() RETURNS bigint LANGUAGE sql STABLE"
	" AS 'SELECT extract(epoch FROM now())::bigint';"
	/* the node of the connection (meta_pg_set_node()), 0 if unset */
	"CREATE FUNCTION tally_node() RETURNS bigint LANGUAGE sql STABLE"
	" AS $$SELECT coalesce(nullif(current_setting('tally.node', true),"
	" ''), '0')::bigint$$;"
	"CREATE TABLE tally_store(app TEXT NOT NULL, format BIGINT NOT NULL,"
	" created BIGINT NOT NULL);"
	"CREATE TABLE config(key TEXT PRIMARY KEY, value BIGINT NOT NULL);" VERSIONS_TABLES
		NSPACES_TABLE
	"CREATE TABLE inodes(ino BIGINT PRIMARY KEY, nspace BIGINT NOT NULL,"
	" mode BIGINT NOT NULL, uid BIGINT NOT NULL, gid BIGINT NOT NULL,"
	" nlink BIGINT NOT NULL, size BIGINT NOT NULL,"
	" rdev BIGINT NOT NULL, alloc BIGINT NOT NULL,"
	" atime BIGINT NOT NULL, mtime BIGINT NOT NULL,"
	" ctime BIGINT NOT NULL, target BYTEA, ver BIGINT NOT NULL,"
	" base BIGINT);"
	"CREATE INDEX inodes_nspace ON inodes(nspace);" INODES_BASE_INDEX ";"
	"CREATE TABLE dentries(id BIGINT GENERATED BY DEFAULT AS IDENTITY"
	" PRIMARY KEY, parent BIGINT NOT NULL, name BYTEA NOT NULL,"
	" ino BIGINT NOT NULL, ver BIGINT NOT NULL,"
	" UNIQUE(parent, name, ver));"
	"CREATE INDEX dentries_parent ON dentries(parent, id);" PARENT_FK ";"
	"CREATE TABLE objects(id BIGINT GENERATED BY DEFAULT AS IDENTITY"
	" PRIMARY KEY, name TEXT NOT NULL UNIQUE, shard BIGINT NOT NULL,"
	" size BIGINT NOT NULL, refcount BIGINT NOT NULL,"
	" remote BIGINT NOT NULL DEFAULT 0, cached BIGINT NOT NULL DEFAULT 1,"
	" gen BIGINT NOT NULL DEFAULT 0);" OBJECT_GEN ";"
	"CREATE TABLE extents(ino BIGINT NOT NULL, off BIGINT NOT NULL,"
	" len BIGINT NOT NULL, obj BIGINT NOT NULL,"
	" shard BIGINT NOT NULL, ver BIGINT NOT NULL,"
	" PRIMARY KEY(ino, ver, off));"
	"CREATE INDEX extents_obj ON extents(obj, shard);"
	"CREATE TABLE xattrs(ino BIGINT NOT NULL, name BYTEA NOT NULL,"
	" value BYTEA, ver BIGINT NOT NULL, PRIMARY KEY(ino, name, ver));"
	"INSERT INTO versions VALUES (0, NULL, 0, NULL, NULL, 0, 0);"
	"INSERT INTO ver_anc VALUES (0, 0);" VERSION_FNS ";" VERSION_TRIGGERS
	";",
	"CREATE TABLE gc_marks(name TEXT PRIMARY KEY, shard BIGINT NOT NULL,"
	" since BIGINT NOT NULL);"
	"CREATE TABLE gc_log(id BIGINT GENERATED BY DEFAULT AS IDENTITY"
	" PRIMARY KEY, at BIGINT NOT NULL, dry_run BIGINT NOT NULL,"
	" checked BIGINT NOT NULL, live BIGINT NOT NULL,"
	" unreferenced BIGINT NOT NULL, collected BIGINT NOT NULL,"
	" preserved BIGINT NOT NULL, bytes_freed BIGINT NOT NULL,"
	" drift BIGINT NOT NULL, nodes BIGINT NOT NULL,"
	" duration_ms BIGINT NOT NULL);"
	"CREATE TABLE node_reports(node BIGINT PRIMARY KEY,"
	" reported_at BIGINT NOT NULL);"
	"CREATE TABLE node_objects(node BIGINT NOT NULL, name TEXT NOT NULL,"
	" PRIMARY KEY(node, name));"
	"CREATE INDEX node_objects_name ON node_objects(name);"
	"CREATE TABLE pins(id BIGINT GENERATED BY DEFAULT AS IDENTITY"
	" PRIMARY KEY, path BYTEA NOT NULL UNIQUE, created BIGINT NOT NULL);"
	"CREATE TABLE pin_objects(pin BIGINT NOT NULL, name TEXT NOT NULL,"
	" PRIMARY KEY(pin, name));"
	"CREATE INDEX pin_objects_name ON pin_objects(name);"
	"CREATE TABLE shards(id BIGINT PRIMARY KEY, path TEXT UNIQUE,"
	" state BIGINT NOT NULL, added BIGINT NOT NULL);"
	"INSERT INTO shards(id, path, state, added) VALUES (0, NULL, 0, 0);"
	"CREATE TABLE ghosts(obj BIGINT NOT NULL, src BIGINT NOT NULL,"
	" dst BIGINT NOT NULL, name TEXT NOT NULL, refcount BIGINT NOT NULL,"
	" created BIGINT NOT NULL, PRIMARY KEY(obj, src));"
	"CREATE TABLE moves(obj BIGINT PRIMARY KEY, name TEXT NOT NULL,"
	" src BIGINT NOT NULL, dst BIGINT NOT NULL);"
	"CREATE INDEX moves_name ON moves(name);"
	"CREATE TABLE sweep_log(id BIGINT GENERATED BY DEFAULT AS IDENTITY"
	" PRIMARY KEY, at BIGINT NOT NULL, checked BIGINT NOT NULL,"
	" purged BIGINT NOT NULL, kept BIGINT NOT NULL,"
	" inconclusive BIGINT NOT NULL, repointed BIGINT NOT NULL,"
	" duration_ms BIGINT NOT NULL);"
	"CREATE TABLE shard_usage(shard BIGINT PRIMARY KEY,"
	" objects BIGINT NOT NULL, bytes BIGINT NOT NULL);"
	"CREATE TABLE remote_up(name TEXT PRIMARY KEY, seq BIGINT NOT NULL,"
	" node BIGINT NOT NULL DEFAULT 0);"
	"CREATE INDEX remote_up_seq ON remote_up(seq);"
	"CREATE TABLE remote_del(name TEXT PRIMARY KEY,"
	" since BIGINT NOT NULL);"
	"CREATE INDEX remote_del_since ON remote_del(since);"
	"CREATE TABLE remote_marks(name TEXT PRIMARY KEY,"
	" since BIGINT NOT NULL);"
	/* keys whose deletion in the bucket is under way (reap.c), and the
	 * node whose job makes it */
	"CREATE TABLE remote_deleting(name TEXT PRIMARY KEY,"
	" since BIGINT NOT NULL, node BIGINT NOT NULL DEFAULT 0);"
	"CREATE TABLE remote_conf(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE sessions(id BIGINT PRIMARY KEY, host TEXT NOT NULL,"
	" pid BIGINT NOT NULL, started BIGINT NOT NULL,"
	" heartbeat BIGINT NOT NULL, expires BIGINT NOT NULL);"
	"CREATE TABLE leases(name TEXT PRIMARY KEY, holder BIGINT NOT NULL,"
	" expires BIGINT NOT NULL);"
	"CREATE TABLE open_holds(node BIGINT NOT NULL, ino BIGINT NOT NULL,"
	" PRIMARY KEY(node, ino));"
	"CREATE INDEX open_holds_ino ON open_holds(ino);" DIR_WATCH ";",
	"INSERT INTO config(key, value) VALUES ('inodes', 0),"
	" ('evicted_bytes', 0);" INODES_COUNT ";" INODES_COUNT_TRIGGER
	";" INODES_COPY_COUNT_TRIGGER ";"
	/* ghosts count the references that still name their source shard */
	"CREATE FUNCTION tally_ghost_refs() RETURNS trigger LANGUAGE plpgsql"
	" AS $$ BEGIN"
	" IF TG_OP IN ('DELETE', 'UPDATE') THEN UPDATE ghosts"
	" SET refcount = refcount - 1 WHERE obj = OLD.obj AND src = OLD.shard;"
	" END IF;"
	" IF TG_OP IN ('INSERT', 'UPDATE') THEN UPDATE ghosts"
	" SET refcount = refcount + 1 WHERE obj = NEW.obj AND src = NEW.shard;"
	" END IF; RETURN NULL; END $$;" GHOST_REFS_TRIGGER ";"
	/* per shard usage; the ghosts of an object go with its row; the
	 * remote tier's queues (meta_remote.c) */
	OBJECTS_FN ";"
	"CREATE TRIGGER objects_add_del AFTER INSERT OR DELETE ON objects"
	" FOR EACH ROW EXECUTE FUNCTION tally_objects();"
	"CREATE TRIGGER objects_move AFTER UPDATE OF shard ON objects"
	" FOR EACH ROW WHEN (OLD.shard IS DISTINCT FROM NEW.shard)"
	" EXECUTE FUNCTION tally_objects();",
	/* the other nodes drop what their kernels cache of a name or an
	 * inode that changed (meta_listen_*(), core/cluster/watch.c): delivered at
	 * commit, with the node that made the change */
	NOTIFY_ENTRY ";" ONE_ENTRY ";" NOTIFY_ENTRY_TRIGGER ";" NOTIFY_INODE
		     ";" NOTIFY_INODE_TRIGGER ";",
};

/* The first column of the first row of @sql as an integer (-1: no row
 * or NULL), or -errno. */
static int query_int(struct meta *m, const char *sql, int64_t *v)
{
	PGresult *res = PQexec(m->pg->conn, sql);
	int rc = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pg_set_msg(m->pg, PQresultErrorMessage(res));
		rc = pg_state_errno(PQresultErrorField(res, PG_DIAG_SQLSTATE));
	} else if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0)) {
		*v = -1;
	} else {
		*v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	}
	PQclear(res);
	return rc;
}

/* Index @name made by @sql if the database lacks it (a store of before). */
static int index_made(struct meta *m, const char *name, const char *sql)
{
	char q[128];
	int64_t has;
	int rc;

	snprintf(q, sizeof(q),
		 "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = "
		 "'%s'",
		 name);
	rc = query_int(m, q, &has);
	return rc || has ? rc : meta_exec(m, sql);
}

/* Format an empty database (inside the open's transaction). */
static int format(struct meta *m, uint32_t block_size)
{
	char sql[256];
	size_t i;
	int rc = 0;

	for (i = 0; i < sizeof(pg_schema) / sizeof(pg_schema[0]) && !rc; i++)
		rc = meta_exec(m, pg_schema[i]);
	if (rc)
		return rc;
	snprintf(sql, sizeof(sql),
		 "INSERT INTO tally_store(app, format, created) "
		 "VALUES ('" APP_NAME "', %d, unixepoch())",
		 META_FORMAT);
	rc = meta_exec(m, sql);
	return rc ? rc : meta_format_root(m, block_size);
}

/* Trigger @name on @table made again with @create if it fires on any of
 * the @events (pg_trigger.tgtype bits: 4 insert, 16 update). */
static int trigger_remade(struct meta *m, const char *name, const char *table,
			  int events, const char *create)
{
	char sql[256];
	int64_t has;
	int rc;

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgname = "
		 "'%s' AND tgrelid = '%s'::regclass AND tgtype & %d <> 0",
		 name, table, events);
	rc = query_int(m, sql, &has);
	if (rc || !has)
		return rc;
	snprintf(sql, sizeof(sql), "DROP TRIGGER %s ON %s", name, table);
	rc = meta_exec(m, sql);
	return rc ? rc : meta_exec(m, create);
}

/* Format @from to 4 (pg_upgrade_2, _3, _4), or refused while
 * another session is live: 0 or -errno (said). */
static int upgrade(struct meta *m, int64_t from)
{
	struct meta_pg *p = m->pg;
	int64_t live;
	size_t i;
	int rc = query_int(m,
			   "SELECT count(*) FROM sessions WHERE expires > "
			   "unixepoch()",
			   &live);

	if (!rc && live > 0) {
		log_msg(LOG_ERR,
			"metadata %s has format version %" PRId64 ": it is "
			"upgraded to %d by the first mount when no other is "
			"live, and %" PRId64 " session(s) are: unmount the "
			"others (their tallyfs reads version %" PRId64 ")",
			p->shown, from, META_FORMAT, live, from);
		return -EBUSY;
	}
	log_msg(LOG_NOTICE,
		"metadata %s: upgrading from format %" PRId64 " to %d "
		"(versions: every row names its version, each table is keyed "
		"with it, the block map is extents)",
		p->shown, from, META_FORMAT);
	for (i = 0; from < 2 && !rc &&
		    i < sizeof(pg_upgrade_2) / sizeof(*pg_upgrade_2);
	     i++)
		rc = meta_exec(m, pg_upgrade_2[i]);
	for (i = 0; from < 3 && !rc &&
		    i < sizeof(pg_upgrade_3) / sizeof(*pg_upgrade_3);
	     i++)
		rc = meta_exec(m, pg_upgrade_3[i]);
	for (i = 0; !rc && i < sizeof(pg_upgrade_4) / sizeof(*pg_upgrade_4);
	     i++)
		rc = meta_exec(m, pg_upgrade_4[i]);
	if (!rc)
		fault_kill_at(meta_upgrade_crash, 1,
			      "during the upgrade of %s to format %d", p->shown,
			      META_FORMAT);
	if (rc)
		log_msg(LOG_ERR, "metadata %s: the upgrade failed: %s",
			p->shown, p->msg);
	return rc;
}

/* Is the database a tallyfs store? Format it if it is empty and
 * @create. Inside a transaction. */
int meta_pg_check_or_format(struct meta *m, bool create, uint32_t block_size)
{
	struct meta_pg *p = m->pg;
	int64_t has, tables, fmt, bs;
	char sql[160];
	int rc;

	snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%lld)",
		 (long long)FORMAT_LOCK);
	rc = meta_exec(m, sql);
	if (!rc)
		rc = query_int(m,
			       "SELECT count(*) FROM pg_catalog.pg_tables "
			       "WHERE schemaname = current_schema() AND "
			       "tablename = 'tally_store'",
			       &has);
	if (!rc)
		rc = query_int(m,
			       "SELECT count(*) FROM pg_catalog.pg_class c "
			       "JOIN pg_catalog.pg_namespace n ON n.oid = "
			       "c.relnamespace WHERE n.nspname = "
			       "current_schema() AND c.relkind IN "
			       "('r', 'v', 'm', 'S', 'f', 'p')",
			       &tables);
	if (rc) {
		log_msg(LOG_ERR, "metadata %s: cannot read the catalog: %s",
			p->shown, p->msg);
		return rc;
	}
	if (!has && tables > 0) {
		log_msg(LOG_ERR,
			"metadata %s belongs to another application: it has "
			"%" PRId64 " tables and no tally_store",
			p->shown, tables);
		return -EUCLEAN;
	}
	if (!has) {
		if (!create) {
			log_msg(LOG_ERR, "metadata %s is empty", p->shown);
			return -EUCLEAN;
		}
		log_msg(LOG_NOTICE, "metadata %s: formatting an empty database",
			p->shown);
		return format(m, block_size);
	}
	rc = query_int(m,
		       "SELECT CASE WHEN app = '" APP_NAME "' THEN format "
		       "ELSE -2 END FROM tally_store LIMIT 1",
		       &fmt);
	if (rc || fmt == -1 || fmt == -2) {
		log_msg(LOG_ERR,
			"metadata %s belongs to another application "
			"(tally_store says so)",
			p->shown);
		return -EUCLEAN;
	}
	if (fmt < 1 || fmt > META_FORMAT) {
		log_msg(LOG_ERR,
			"metadata %s has format version %" PRId64
			", this tallyfs reads version %d",
			p->shown, fmt, META_FORMAT);
		return -EPROTO;
	}
	if (fmt < META_FORMAT) {
		rc = upgrade(m, fmt);
		if (rc)
			return rc;
	}
	rc = query_int(m, "SELECT value FROM config WHERE key = 'block_size'",
		       &bs);
	if (rc || bs < 4096 || bs > (64 << 20) || (bs & (bs - 1))) {
		log_msg(LOG_ERR, "metadata %s is damaged: bad block size",
			p->shown);
		return -EUCLEAN;
	}
	/* the functions and constraints of this version (under the
	 * format's lock) */
	rc = query_int(m,
		       "SELECT count(*) FROM pg_catalog.pg_constraint WHERE "
		       "conname = 'dentries_parent_fk' AND conrelid = "
		       "'dentries'::regclass",
		       &has);
	if (!rc && !has)
		rc = meta_exec(m, PARENT_FK);
	/* the rows of versions made by a freeze (meta_int.h, IN_C): a
	 * store of before has no such row, its indexes are made empty */
	if (!rc)
		rc = index_made(m, "extents_later", META_LATER_INDEXES);
	/* the names of an inode (a diff's paths): a store of before lacks it */
	if (!rc)
		rc = index_made(m, "dentries_ino", META_INO_INDEX);
	/* the views of snapshots (a store of before: the counter) */
	if (!rc)
		rc = meta_exec(m, META_VIEWS_GIVEN);
	/* the deletion claims (a store of before may lack the table), and
	 * their node (one of before: none, so its claims are taken for
	 * those of a node that is gone) */
	if (!rc)
		rc = meta_exec(m, "CREATE TABLE IF NOT EXISTS remote_deleting("
				  "name TEXT PRIMARY KEY, since BIGINT NOT "
				  "NULL, node BIGINT NOT NULL DEFAULT 0)");
	if (!rc)
		rc = query_int(m,
			       "SELECT count(*) FROM pg_catalog.pg_attribute "
			       "WHERE attrelid = 'remote_deleting'::regclass "
			       "AND attname = 'node' AND NOT attisdropped",
			       &has);
	if (!rc && !has)
		rc = meta_exec(m, "ALTER TABLE remote_deleting ADD COLUMN "
				  "node BIGINT NOT NULL DEFAULT 0");
	if (!rc)
		rc = meta_exec(m, OBJECT_GEN_COLUMN);
	if (!rc)
		rc = meta_exec(m, OBJECT_GEN);
	if (!rc)
		rc = meta_exec(m, OBJECTS_FN);
	if (!rc)
		rc = meta_exec(m, DIR_WATCH);
	if (!rc)
		rc = meta_exec(m, NOTIFY_ENTRY);
	if (!rc)
		rc = meta_exec(m, NOTIFY_INODE);
	if (!rc)
		rc = meta_exec(m, ONE_ENTRY);
	if (!rc)
		rc = meta_exec(m, VERSION_FNS);
	if (!rc)
		rc = meta_exec(m, INODES_COUNT);
	/* the entries' and inodes' triggers fire on no insert, and the
	 * inodes' notification on no update; a store of before had them */
	if (!rc)
		rc = trigger_remade(m, "dentries_notify", "dentries", 4,
				    NOTIFY_ENTRY_TRIGGER);
	if (!rc)
		rc = trigger_remade(m, "inodes_count", "inodes", 4,
				    INODES_COUNT_TRIGGER);
	if (!rc)
		rc = trigger_remade(m, "inodes_notify", "inodes", 16,
				    NOTIFY_INODE_TRIGGER);
	if (rc)
		log_msg(LOG_ERR, "metadata %s: cannot update its functions: %s",
			p->shown, p->msg);
	return rc;
}
