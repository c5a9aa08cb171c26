/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL engine of the metadata store (libpq): a store whose
 * metadata lives in a database named by a postgres:// URI, so that
 * several mounts on several hosts can share it. The statements are those
 * of the SQLite engine (the families of meta_*.c), translated here where
 * the dialects differ (?N parameters become $N, INSERT OR IGNORE becomes
 * ON CONFLICT DO NOTHING, temp. becomes pg_temp., CROSS JOIN becomes
 * JOIN, IS [NOT] ?N becomes IS [NOT] DISTINCT FROM $N); a family gives
 * its own text where translation is not enough.
 *
 * DESIGN NOTES
 *
 * Schema: the tables of the SQLite engine with BIGINT for INTEGER and
 * BYTEA for BLOB, the same triggers in PL/pgSQL, unixepoch() as a SQL
 * function, and tally_store(app, format): a database is a tallyfs store
 * when that table says app 'tallyfs'; one of another format version is
 * refused (-EPROTO), one with tables of something else (-EUCLEAN). The
 * first mount formats an empty database; concurrent first mounts are
 * serialised by a transaction-scoped advisory lock.
 *
 * Durability: every COMMIT is durable when it returns (the server's
 * synchronous_commit, on by default), so meta_sync() has nothing to do.
 *
 * Statements run with the extended protocol: prepared once per
 * connection under a name of their own, results in text format (bytea in
 * hex, decoded by meta_stmt.c). A connection found broken is opened
 * again (with backoff, for at most the retry time); a statement outside
 * a transaction then runs again, one inside fails with -EDEADLK (the
 * transaction is gone: nothing of it was committed), as a serialization
 * failure or a deadlock does: the caller runs the transaction again
 * (tally_retry()), and its BEGIN reconnects. After the retry time, -EIO.
 *
 * Round trips: a BEGIN, and statements of a transaction whose only
 * result is success (meta_run_later(); meta_run_setting(): the relaxed
 * commit's set_config), are not sent on their own but in one pipeline
 * with the next statement (libpq's pipeline mode: one round trip for
 * all), their parameters copied; a failure among them is the error of
 * that next statement, and the transaction rolls back whole as before.
 * Waiting statements count as an open transaction, whose ROLLBACK drops
 * them. A transaction in which nothing but settings ran reaches the
 * server not at all: its COMMIT or ROLLBACK drops the BEGIN. A connection
 * lost under a pipeline that opens the transaction is opened again and
 * the pipeline sent again, as a statement outside a transaction is
 * (nothing was half done: the server rolls back what the connection
 * left), unless the pipeline ends with the COMMIT: that may have
 * committed, and is never sent twice.
 *
 * Errors are told by SQLSTATE, never by message text.
 *
 * Locking: none inside; the caller serialises every call on a struct meta.
 */
#include "core/meta_int.h"

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

#include "core/log.h"

#define APP_NAME "tallyfs"
/* pg_advisory_xact_lock key of formatting ('TALY' 'FMT') */
#define FORMAT_LOCK 0x54414c59464d54LL
/* a broken connection is opened again for at most this long */
#define RETRY_MS_DEFAULT 15000
#define TEXT_OID 25

/* A statement waiting to go with the next one, its parameters copied
 * (the statement may be bound again meanwhile). */
struct pg_later {
	struct meta_st *s;
	char **v; /* NULL: SQL NULL */
	int *l, *f;
	int n;
	bool setting; /* a transaction-local setting: no change of its own */
	bool after;   /* goes after the statement with an answer */
};

struct meta_pg {
	PGconn *conn;
	char *uri;
	char *shown;  /* the URI without its password, for messages */
	uint64_t gen; /* the connection's generation (statements prepared
			 on an older one are prepared again) */
	unsigned serial;
	unsigned retry_ms;
	int64_t node;	/* tally.node of every connection */
	int64_t idle_s; /* idle_in_transaction_session_timeout, 0: none */
	bool lost;	/* the last statement failed with the connection */
	char msg[512];	/* the last error */
	/* statements that wait to go with the next one (meta_pg_later()):
	 * a BEGIN, then changes and settings of the transaction */
	struct meta_st *begin;
	struct pg_later later[8];
	int nlater;
	/* the COMMIT to send right after the next statement, in its
	 * pipeline (meta_pg_set_tail()) */
	struct meta_st *tail;
};

/*
 * What other nodes' kernels may cache and a change makes wrong, notified
 * at commit (core/watch.c). A name that goes or moves: an entry's delete
 * or update. A new name only in a directory another node knows whole
 * (a dir_watch row, core/dirnames.c): no kernel caches a name's absence
 * (a lookup of a missing name is answered ENOENT, which the kernel keeps
 * for no time). An inode's change (by a statement sent with it,
 * I_INODE_NOTIFY in core/meta_inode.c) or removal, but not a change of a
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
 * (I_INODE_NOTIFY in core/meta_inode.c): no trigger function runs in the
 * update of a directory's times that every create makes. */
#define NOTIFY_INODE_TRIGGER                                            \
	"CREATE TRIGGER inodes_notify AFTER DELETE ON inodes FOR EACH " \
	"ROW EXECUTE FUNCTION tally_notify_inode()"

/* Not on inserts: no trigger function runs in a create (below). */
#define NOTIFY_ENTRY_TRIGGER                                     \
	"CREATE TRIGGER dentries_notify AFTER DELETE OR UPDATE " \
	"ON dentries FOR EACH ROW EXECUTE FUNCTION tally_notify_entry()"

/*
 * Directories a node knows whole (core/dirnames.c): another node's
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
 * core/meta_inode.c). Replaced at every open.
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
 * of the entries they have.
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
	"CREATE TABLE config(key TEXT PRIMARY KEY, value BIGINT NOT NULL);"
	"CREATE TABLE inodes(ino BIGINT PRIMARY KEY, nspace BIGINT NOT NULL,"
	" mode BIGINT NOT NULL, uid BIGINT NOT NULL, gid BIGINT NOT NULL,"
	" nlink BIGINT NOT NULL, size BIGINT NOT NULL,"
	" rdev BIGINT NOT NULL, alloc BIGINT NOT NULL,"
	" atime BIGINT NOT NULL, mtime BIGINT NOT NULL,"
	" ctime BIGINT NOT NULL, target BYTEA);"
	"CREATE INDEX inodes_nspace ON inodes(nspace);"
	"CREATE TABLE dentries(id BIGINT GENERATED BY DEFAULT AS IDENTITY"
	" PRIMARY KEY, parent BIGINT NOT NULL, name BYTEA NOT NULL,"
	" ino BIGINT NOT NULL, UNIQUE(parent, name));"
	"CREATE INDEX dentries_parent ON dentries(parent, id);" PARENT_FK ";"
	"CREATE TABLE objects(id BIGINT GENERATED BY DEFAULT AS IDENTITY"
	" PRIMARY KEY, name TEXT NOT NULL UNIQUE, shard BIGINT NOT NULL,"
	" size BIGINT NOT NULL, refcount BIGINT NOT NULL,"
	" remote BIGINT NOT NULL DEFAULT 0, cached BIGINT NOT NULL DEFAULT 1,"
	" gen BIGINT NOT NULL DEFAULT 0);" OBJECT_GEN ";"
	"CREATE TABLE blocks(ino BIGINT NOT NULL, idx BIGINT NOT NULL,"
	" obj BIGINT NOT NULL, shard BIGINT NOT NULL, PRIMARY KEY(ino, idx));"
	"CREATE INDEX blocks_obj ON blocks(obj, shard);"
	"CREATE TABLE xattrs(ino BIGINT NOT NULL, name BYTEA NOT NULL,"
	" value BYTEA NOT NULL, PRIMARY KEY(ino, name));",
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
	" ('evicted_bytes', 0);" INODES_COUNT ";" INODES_COUNT_TRIGGER ";"
	/* ghosts count the references that still name their source shard */
	"CREATE FUNCTION tally_ghost_refs() RETURNS trigger LANGUAGE plpgsql"
	" AS $$ BEGIN"
	" IF TG_OP IN ('DELETE', 'UPDATE') THEN UPDATE ghosts"
	" SET refcount = refcount - 1 WHERE obj = OLD.obj AND src = OLD.shard;"
	" END IF;"
	" IF TG_OP IN ('INSERT', 'UPDATE') THEN UPDATE ghosts"
	" SET refcount = refcount + 1 WHERE obj = NEW.obj AND src = NEW.shard;"
	" END IF; RETURN NULL; END $$;"
	"CREATE TRIGGER ghost_refs AFTER INSERT OR DELETE OR UPDATE OF obj,"
	" shard ON blocks FOR EACH ROW EXECUTE FUNCTION tally_ghost_refs();"
	/* per shard usage; the ghosts of an object go with its row; the
	 * remote tier's queues (meta_remote.c) */
	OBJECTS_FN ";"
	"CREATE TRIGGER objects_add_del AFTER INSERT OR DELETE ON objects"
	" FOR EACH ROW EXECUTE FUNCTION tally_objects();"
	"CREATE TRIGGER objects_move AFTER UPDATE OF shard ON objects"
	" FOR EACH ROW WHEN (OLD.shard IS DISTINCT FROM NEW.shard)"
	" EXECUTE FUNCTION tally_objects();",
	/* the other nodes drop what their kernels cache of a name or an
	 * inode that changed (meta_listen_*(), core/watch.c): delivered at
	 * commit, with the node that made the change */
	NOTIFY_ENTRY ";" ONE_ENTRY ";" NOTIFY_ENTRY_TRIGGER ";" NOTIFY_INODE
		     ";" NOTIFY_INODE_TRIGGER ";",
};

bool meta_is_pg(const char *path)
{
	return !strncmp(path, "postgres://", 11) ||
	       !strncmp(path, "postgresql://", 13);
}

bool meta_shared(const struct meta *m)
{
	return m->pg != NULL;
}

const char *meta_pg_message(struct meta *m)
{
	return m->pg->msg;
}

/* The text shown in place of a password */
#define MASK "***"
#define BLANKS " \t\n\r\f\v"

/* A string being built, its size bounded by meta_uri_masked() */
struct shown {
	char *text;
	size_t len, size;
};

static void put(struct shown *b, const char *s, size_t n)
{
	assert(b->len + n < b->size);
	memcpy(b->text + b->len, s, n);
	b->len += n;
}

/* Whether the @n bytes at @key name a password (password, sslpassword):
 * libpq's keywords are case-sensitive, the mask is not. */
static bool password_key(const char *key, size_t n)
{
	return n >= 8 && !strncasecmp(key + n - 8, "password", 8);
}

/* The parameters of a URI's query at @q (after '?'): KEY=VALUE&... */
static void put_query(struct shown *b, const char *q)
{
	while (*q) {
		size_t n = strcspn(q, "&");
		const char *eq = memchr(q, '=', n);

		if (eq && password_key(q, (size_t)(eq - q))) {
			put(b, q, (size_t)(eq - q) + 1);
			put(b, MASK, strlen(MASK));
		} else {
			put(b, q, n);
		}
		q += n;
		if (*q)
			put(b, q++, 1);
	}
}

/* A keyword/value connection string at @s, parsed as libpq does:
 * KEY = VALUE separated by blanks, a value either 'quoted' or ending at
 * a blank, a backslash escaping the next character in both. */
static void put_conninfo(struct shown *b, const char *s)
{
	const char *key, *value;
	size_t n, keylen;

	while (*s) {
		n = strspn(s, BLANKS);
		put(b, s, n);
		s += n;
		key = s;
		keylen = strcspn(s, "=" BLANKS);
		put(b, s, keylen);
		s += keylen;
		n = strspn(s, BLANKS);
		put(b, s, n);
		s += n;
		if (*s != '=') {
			/* malformed (libpq refuses it): whatever follows a
			 * password keyword may be the password */
			if (password_key(key, keylen) && *s) {
				put(b, MASK, strlen(MASK));
				return;
			}
			continue;
		}
		put(b, s++, 1);
		n = strspn(s, BLANKS);
		put(b, s, n);
		s += n;
		value = s;
		if (*s == '\'') {
			for (s++; *s && *s != '\''; s++)
				if (*s == '\\' && s[1])
					s++;
			if (*s)
				s++;
		} else {
			for (; *s && !strchr(BLANKS, *s); s++)
				if (*s == '\\' && s[1])
					s++;
		}
		if (password_key(key, keylen))
			put(b, MASK, strlen(MASK));
		else
			put(b, value, (size_t)(s - value));
	}
}

/*
 * Masking errs on the side of hiding: a password may hold any character
 * that the user did not percent-encode (':', '/', '?', '@'), so a URI's
 * user information is taken to end at its last '@', and a database name
 * or query holding an '@' is hidden with it.
 */
char *meta_uri_masked(const char *uri)
{
	const char *rest = strstr(uri, "://"), *at = strrchr(uri, '@');
	const char *colon, *query;
	struct shown b;

	/* every mask but one follows a password keyword and its '=' (9
	 * bytes or more): the text grows by less than half, and 3 bytes */
	b.size = 2 * strlen(uri) + sizeof(MASK) + 1;
	b.text = malloc(b.size);
	b.len = 0;
	if (!b.text)
		return NULL;
	if (rest && strspn(uri, "abcdefghijklmnopqrstuvwxyz"
				"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-") ==
			    (size_t)(rest - uri)) {
		/* scheme://[user[:password]@]host[:port][/db][?query] */
		rest += 3;
		colon = at && at > rest ? memchr(rest, ':', (size_t)(at - rest))
					: NULL;
		if (colon) {
			put(&b, uri, (size_t)(colon - uri) + 1);
			put(&b, MASK, strlen(MASK));
			rest = at;
		} else {
			put(&b, uri, (size_t)(rest - uri));
		}
		query = strchr(rest, '?');
		if (query) {
			put(&b, rest, (size_t)(query - rest) + 1);
			put_query(&b, query + 1);
		} else {
			put(&b, rest, strlen(rest));
		}
	} else if (!strchr(uri, '=') && (colon = strchr(uri, ':')) && at &&
		   colon < at) {
		/* not a URI, but user:password@host all the same */
		put(&b, uri, (size_t)(colon - uri) + 1);
		put(&b, MASK, strlen(MASK));
		put(&b, at, strlen(at));
	} else {
		put_conninfo(&b, uri);
	}
	b.text[b.len] = '\0';
	return b.text;
}

/* Keep the first line of libpq's message @msg as the last error. */
static void set_msg(struct meta_pg *p, const char *msg)
{
	size_t n;

	snprintf(p->msg, sizeof(p->msg), "%s", msg && *msg ? msg : "unknown");
	n = strcspn(p->msg, "\n");
	p->msg[n] = '\0';
}

/* The errno value of SQLSTATE @state (NULL: the connection failed). */
static int state_errno(const char *state)
{
	if (!state)
		return -EIO;
	if (!strcmp(state, "23503")) /* the directory's row went, or an
				       * entry still names it */
		return -ENOLINK;
	if (!strncmp(state, "23", 2)) /* integrity constraint violation */
		return -EEXIST;
	if (!strcmp(state, "40001") || !strcmp(state, "40P01"))
		return -EDEADLK; /* serialization failure, deadlock: retry */
	if (!strcmp(state, "P0002")) /* an entry's delete removed nothing */
		return -ENOENT;
	if (!strcmp(state, "53100"))
		return -ENOSPC;
	if (!strcmp(state, "53200"))
		return -ENOMEM;
	if (!strcmp(state, "53300"))
		return -EBUSY; /* too many connections */
	if (!strcmp(state, "54000") || !strcmp(state, "54001"))
		return -E2BIG;
	if (!strcmp(state, "42501") || !strncmp(state, "28", 2))
		return -EACCES;
	if (!strcmp(state, "42P01") || !strcmp(state, "42703"))
		return -EUCLEAN; /* a table or column that is not there */
	return -EIO;
}

/* Whether the connection is gone (rather than the statement refused). */
static bool conn_lost(struct meta_pg *p, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				: NULL;

	if (PQstatus(p->conn) == CONNECTION_BAD)
		return true;
	/* 08: connection exception; 57P0x: the server shuts down */
	return state &&
	       (!strncmp(state, "08", 2) || !strncmp(state, "57P0", 4));
}

/* Whether the server has a transaction open on the connection (a BEGIN
 * still waiting to be sent does not count). */
static bool server_in_txn(const struct meta_pg *p)
{
	PGTransactionStatusType t = PQtransactionStatus(p->conn);

	return t == PQTRANS_INTRANS || t == PQTRANS_INERROR ||
	       t == PQTRANS_ACTIVE;
}

/* Free the copied parameters of @e. */
static void later_free(struct pg_later *e)
{
	int i;

	for (i = 0; i < e->n && e->v; i++)
		free(e->v[i]);
	free(e->v);
	free(e->l);
	free(e->f);
}

/* Drop what waits (sent, failed, or to go with its transaction). */
static void later_clear(struct meta_pg *p)
{
	int i;

	for (i = 0; i < p->nlater; i++)
		later_free(&p->later[i]);
	p->nlater = 0;
	p->begin = NULL;
}

/* Whether nothing waits but a BEGIN and settings: an empty transaction. */
static bool later_empty_txn(const struct meta_pg *p)
{
	int i;

	for (i = 0; i < p->nlater; i++)
		if (!p->later[i].setting)
			return false;
	return p->begin != NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Session settings of every connection, and the temporary table of
 * branching (meta_inode.c), which its statements need to prepare. */
static int conn_setup(struct meta_pg *p)
{
	char sql[512];
	PGresult *res;

	snprintf(sql, sizeof(sql),
		 "SET client_min_messages = warning;"
		 "SET synchronous_commit = on;"
		 "SET tally.node = '%lld';"
		 "SET idle_in_transaction_session_timeout = '%llds';"
		 "CREATE TEMP TABLE IF NOT EXISTS branch_map("
		 "old BIGINT PRIMARY KEY, new BIGINT NOT NULL)",
		 (long long)p->node, (long long)p->idle_s);
	res = PQexec(p->conn, sql);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -EIO;

	if (rc)
		set_msg(p, PQerrorMessage(p->conn));
	PQclear(res);
	return rc;
}

/* Connect (the first time, or again after a failure): 0 or -errno. */
static int conn_open(struct meta_pg *p)
{
	if (p->conn)
		PQfinish(p->conn);
	p->conn = PQconnectdb(p->uri);
	p->gen++;
	if (!p->conn)
		return -ENOMEM;
	if (PQstatus(p->conn) != CONNECTION_OK) {
		set_msg(p, PQerrorMessage(p->conn));
		return -EIO;
	}
	return conn_setup(p);
}

/*
 * The connection broke: open it again, waiting between attempts, for at
 * most the retry time. 0 once connected, -EIO after.
 */
static int reconnect(struct meta_pg *p)
{
	int64_t until = now_ms() + p->retry_ms;
	unsigned wait = 50;
	int n = 0;

	log_msg(LOG_WARNING, "metadata %s: connection lost (%s); reconnecting",
		p->shown, p->msg);
	for (;;) {
		struct timespec ts;

		if (conn_open(p) == 0) {
			log_msg(LOG_NOTICE,
				"metadata %s: connected again after %d "
				"attempts",
				p->shown, n + 1);
			return 0;
		}
		n++;
		if (now_ms() + wait > until)
			break;
		ts.tv_sec = wait / 1000;
		ts.tv_nsec = (long)(wait % 1000) * 1000000;
		nanosleep(&ts, NULL);
		if (wait < 1000)
			wait *= 2;
	}
	log_msg(LOG_ERR, "metadata %s: cannot reconnect after %d attempts: %s",
		p->shown, n, p->msg);
	return -EIO;
}

/* The text PostgreSQL runs for @text: malloc'ed; *@nparam receives the
 * highest parameter number, *@used the bits of the numbers used (up to
 * 64). */
static char *translate(const char *text, int *nparam, uint64_t *used)
{
	size_t n = strlen(text), cap = n * 6 + 64, o = 0; /* " IS ?": 4 -> 22 */
	char *out = malloc(cap);
	const char *p = text, *ret = NULL;
	bool ignore = false, quote = false;

	*nparam = 0;
	*used = 0;
	if (!out)
		return NULL;
	if (!strncmp(p, "INSERT OR IGNORE ", 17)) {
		memcpy(out, "INSERT ", 7);
		o = 7;
		p += 17;
		ignore = true;
	}
	while (*p) {
		if (*p == '\'')
			quote = !quote;
		if (!quote && *p == '?' && p[1] >= '0' && p[1] <= '9') {
			int v = (int)strtol(p + 1, (char **)&p, 10);

			o += (size_t)snprintf(out + o, cap - o, "$%d", v);
			if (v >= 1 && v <= 64)
				*used |= 1ull << (v - 1);
			if (v > *nparam)
				*nparam = v;
			continue;
		}
		if (!quote && !strncmp(p, "temp.", 5) &&
		    (p == text || p[-1] == ' ')) {
			memcpy(out + o, "pg_temp.", 8);
			o += 8;
			p += 5;
			continue;
		}
		/* SQLite's IS [NOT] with a value: null-safe comparison */
		if (!quote && !strncmp(p, " IS NOT ?", 9)) {
			memcpy(out + o, " IS DISTINCT FROM ", 18);
			o += 18;
			p += 8;
			continue;
		}
		if (!quote && !strncmp(p, " IS ?", 5)) {
			memcpy(out + o, " IS NOT DISTINCT FROM ", 22);
			o += 22;
			p += 4;
			continue;
		}
		if (!quote && !strncmp(p, "CROSS JOIN ", 11)) {
			memcpy(out + o, "JOIN ", 5);
			o += 5;
			p += 11;
			continue;
		}
		if (!quote && ignore && !ret && !strncmp(p, " RETURNING ", 11))
			ret = p;
		if (ret == p) {
			memcpy(out + o, " ON CONFLICT DO NOTHING", 23);
			o += 23;
		}
		out[o++] = *p++;
	}
	if (ignore && !ret) {
		memcpy(out + o, " ON CONFLICT DO NOTHING", 23);
		o += 23;
	}
	out[o] = '\0';
	return out;
}

int meta_pg_prepare(struct meta *m, struct meta_st *s, const char *text,
		    bool quiet)
{
	struct meta_pg *p = m->pg;
	PGresult *res;
	char name[24];
	Oid types[64];
	int i, rc;

	if (s->serial && s->gen == p->gen)
		return 0;
	if (!s->pgtext) {
		int np;

		s->pgtext = translate(text, &np, &s->used);
		if (!s->pgtext)
			return -ENOMEM;
		s->pv = calloc(np ? np : 1, sizeof(*s->pv));
		s->pl = calloc(np ? np : 1, sizeof(*s->pl));
		s->pf = calloc(np ? np : 1, sizeof(*s->pf));
		s->pcap = calloc(np ? np : 1, sizeof(*s->pcap));
		if (!s->pv || !s->pl || !s->pf || !s->pcap)
			return -ENOMEM;
		for (i = 0; i < np; i++)
			s->pl[i] = -1;
		s->nparam = np < 64 ? np : 64;
	}
	/* a parameter the text does not use (SQLite allows the gaps) has
	 * no type to infer: text, which takes any value bound */
	for (i = 0; i < s->nparam; i++)
		types[i] = s->used & (1ull << i) ? 0 : TEXT_OID;
	if (!s->serial)
		s->serial = ++p->serial;
	snprintf(name, sizeof(name), "t%u", s->serial);
	for (;;) {
		bool outside = !server_in_txn(p);

		res = PQprepare(p->conn, name, s->pgtext, s->nparam, types);
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			break;
		set_msg(p, res ? PQresultErrorMessage(res)
			       : PQerrorMessage(p->conn));
		if (outside && conn_lost(p, res)) {
			PQclear(res);
			if (reconnect(p))
				return -EIO;
			continue;
		}
		rc = state_errno(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				     : NULL);
		/* the transaction went with the connection: retry it */
		p->lost = conn_lost(p, res);
		if (p->lost)
			rc = -EDEADLK;
		if (!quiet)
			log_msg(LOG_ERR, "cannot prepare '%s': %s", s->pgtext,
				p->msg);
		PQclear(res);
		return rc;
	}
	PQclear(res);
	s->gen = p->gen;
	return 0;
}

void meta_pg_clear(struct meta_st *s)
{
	int i;

	for (i = 0; i < s->ndec; i++)
		s->decrow[i] = -1; /* decoded from a result now gone */
	if (s->res)
		PQclear(s->res);
	s->res = NULL;
	s->ran = false;
	s->row = -1;
	s->nrows = 0;
}

static bool text_is(const struct meta_st *s, const char *text)
{
	return s && s->pgtext && !strcmp(s->pgtext, text);
}

/* The parameter values of @s as libpq takes them. */
static int bound_values(const struct meta_st *s, const char **vals)
{
	int i, n = s->nparam < 64 ? s->nparam : 64;

	for (i = 0; i < n; i++)
		vals[i] = s->pl[i] < 0 ? NULL : s->pv[i];
	return n;
}

/*
 * The waiting statements, then @s (may be NULL), then the tail's COMMIT
 * if one is set, in one pipeline: the result of @s (or, when something
 * failed, the first error) in *@out; NULL when the connection failed
 * first.
 */
static void pipeline(struct meta *m, struct meta_st *s, PGresult **out)
{
	struct meta_pg *p = m->pg;
	/* what goes, in order: the BEGIN, the waiting statements, @s, the
	 * tail */
	struct pg_later q[3 + sizeof(p->later) / sizeof(p->later[0])];
	PGresult *err = NULL, *mine = NULL, *res;
	const char *vals[64];
	int n = 0, i, idx = 0, nulls = 0, at = -1;
	bool sent = true, synced = false;

	if (p->begin)
		q[n++] = (struct pg_later){ .s = p->begin };
	for (i = 0; i < p->nlater; i++)
		if (!p->later[i].after)
			q[n++] = p->later[i];
	if (s) {
		at = n;
		q[n] = (struct pg_later){ .s = s, .l = s->pl, .f = s->pf };
		q[n].n = bound_values(s, vals);
		q[n++].v = (char **)vals;
	}
	for (i = 0; i < p->nlater; i++)
		if (p->later[i].after)
			q[n++] = p->later[i];
	if (s && p->tail)
		q[n++] = (struct pg_later){ .s = p->tail };
	/* preparing (again) is not allowed inside the pipeline; a prepare
	 * that reconnects makes the ones before it stale: again */
	for (i = 0; i < n && sent; i++) {
		uint64_t gen = p->gen;

		if (meta_pg_prepare(m, q[i].s, q[i].s->pgtext, false))
			sent = false;
		else if (p->gen != gen)
			i = -1;
	}
	*out = NULL;
	if (!sent || !PQenterPipelineMode(p->conn))
		return;
	for (i = 0; i < n && sent; i++) {
		char name[24];

		snprintf(name, sizeof(name), "t%u", q[i].s->serial);
		sent = PQsendQueryPrepared(p->conn, name, q[i].n,
					   (const char *const *)q[i].v, q[i].l,
					   q[i].f, 0) == 1;
	}
	if (!sent || !PQpipelineSync(p->conn)) {
		PQexitPipelineMode(p->conn);
		return;
	}
	/* each statement's result, then a NULL; the sync's result ends */
	for (;;) {
		res = PQgetResult(p->conn);
		if (!res) {
			idx++;
			if (PQstatus(p->conn) == CONNECTION_BAD ||
			    ++nulls > 2 * n + 2)
				break;
			continue;
		}
		if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			synced = true;
			break;
		}
		if (PQresultStatus(res) == PGRES_FATAL_ERROR && !err)
			err = res;
		else if (s && idx == at && !mine &&
			 PQresultStatus(res) != PGRES_PIPELINE_ABORTED)
			mine = res;
		else
			PQclear(res);
	}
	PQexitPipelineMode(p->conn);
	/* a tail's COMMIT counts only once the pipeline's end was seen:
	 * the statement's result alone does not say it committed */
	if (p->tail && !synced && !err) {
		PQclear(mine);
		mine = NULL;
	}
	if (err) {
		PQclear(mine);
		*out = err;
	} else if (s && mine) {
		*out = mine;
	} else if (!s && idx >= n) {
		*out = PQmakeEmptyPGresult(p->conn, PGRES_COMMAND_OK);
	} else {
		PQclear(mine);
	}
}

/* Open the connection again and prepare @s on it; on failure what waits
 * is dropped (it would go with the transaction). */
static int reopen(struct meta *m, struct meta_st *s)
{
	int rc = reconnect(m->pg) ? -EIO
				  : meta_pg_prepare(m, s, s->pgtext, false);

	if (rc)
		later_clear(m->pg);
	return rc;
}

int meta_pg_run(struct meta *m, struct meta_st *s, const char *what)
{
	struct meta_pg *p = m->pg;
	const char *vals[64];
	char name[24];
	PGresult *res;
	int i, n;
	ExecStatusType st;

	if ((p->begin && text_is(s, "ROLLBACK")) ||
	    (later_empty_txn(p) && text_is(s, "COMMIT"))) {
		/* nothing reached the server since the BEGIN, or nothing
		 * but settings is to: nothing to send */
		later_clear(p);
		s->res = NULL;
		s->nrows = 0;
		m->changes = 0;
		return 0;
	}
	if (text_is(s, "ROLLBACK"))
		later_clear(p); /* they would go with the transaction */
	/* a connection known lost and a transaction that has not reached
	 * the server yet (its BEGIN waits): opened again before anything is
	 * sent into it (what waits is prepared again as it goes) */
	if (PQstatus(p->conn) == CONNECTION_BAD && p->begin) {
		int rc = reopen(m, s);

		if (rc)
			return rc;
	}
	n = bound_values(s, vals);
	for (;;) {
		/* a COMMIT is never sent twice: it may have committed */
		bool outside = !server_in_txn(p) && !text_is(s, "COMMIT") &&
			       !p->tail;
		bool queued = p->begin || p->nlater || p->tail;

		if (queued) {
			pipeline(m, s, &res);
		} else {
			snprintf(name, sizeof(name), "t%u", s->serial);
			res = PQexecPrepared(p->conn, name, n, vals, s->pl,
					     s->pf, 0);
		}
		st = PQresultStatus(res);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
			later_clear(p);
			break;
		}
		set_msg(p, res ? PQresultErrorMessage(res)
			       : PQerrorMessage(p->conn));
		if (outside && conn_lost(p, res)) {
			int rc;

			/* nothing was half done: run it again (what waited
			 * is prepared again when it is sent) */
			PQclear(res);
			rc = reopen(m, s);
			if (rc)
				return rc;
			continue;
		}
		/* what waited went (or failed) with it */
		later_clear(p);
		i = state_errno(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				    : NULL);
		/* a deadlock or a serialization failure is run again; a
		 * constraint that holds is an answer (a name taken, a
		 * directory gone or not empty, an entry another node
		 * removed first) */
		log_msg(i == -EDEADLK || i == -EEXIST || i == -ENOLINK ||
					i == -ENOENT
				? LOG_INFO
				: LOG_ERR,
			"metadata %s failed: %s", what, p->msg);
		/* the transaction went with the connection: retry it */
		p->lost = conn_lost(p, res);
		if (p->lost)
			i = -EDEADLK;
		PQclear(res);
		return i;
	}
	s->res = res;
	s->nrows = st == PGRES_TUPLES_OK ? PQntuples(res) : 0;
	m->changes = strtoll(PQcmdTuples(res), NULL, 10);
	return 0;
}

void meta_pg_set_tail(struct meta *m, struct meta_st *commit)
{
	m->pg->tail = commit;
}

int meta_pg_later(struct meta *m, struct meta_st *s, enum meta_wait how,
		  const char *what)
{
	struct meta_pg *p = m->pg;
	const char *vals[64];
	struct pg_later *e;
	int i;

	if (text_is(s, "BEGIN") && !p->begin && !p->nlater &&
	    !server_in_txn(p)) {
		p->begin = s;
		return 0;
	}
	/* outside a transaction, or too many waiting: now (with them) */
	if (!(p->begin || server_in_txn(p)) ||
	    p->nlater == (int)(sizeof(p->later) / sizeof(p->later[0])))
		return meta_run(m, s, what);
	e = &p->later[p->nlater];
	memset(e, 0, sizeof(*e));
	e->s = s;
	e->setting = how == META_WAIT_SETTING;
	e->after = how == META_WAIT_AFTER;
	e->n = bound_values(s, vals);
	if (e->n) {
		e->v = calloc((size_t)e->n, sizeof(*e->v));
		e->l = calloc((size_t)e->n, sizeof(*e->l));
		e->f = calloc((size_t)e->n, sizeof(*e->f));
		if (!e->v || !e->l || !e->f)
			goto now;
		memcpy(e->l, s->pl, (size_t)e->n * sizeof(*e->l));
		memcpy(e->f, s->pf, (size_t)e->n * sizeof(*e->f));
	}
	for (i = 0; i < e->n; i++) {
		if (!vals[i])
			continue;
		e->v[i] = malloc((size_t)e->l[i] + 1);
		if (!e->v[i])
			goto now;
		memcpy(e->v[i], vals[i], (size_t)e->l[i] + 1);
	}
	p->nlater++;
	return 0;

now:
	later_free(e);
	return meta_run(m, s, what);
}

int meta_pg_exec(struct meta *m, const char *sql)
{
	struct meta_pg *p = m->pg;
	bool waiting = p->begin || p->nlater;
	PGresult *res;
	ExecStatusType st;
	int rc = 0;

	/* what waits goes first, then @sql */
	if (waiting) {
		pipeline(m, NULL, &res);
		later_clear(p);
	} else {
		res = PQexec(p->conn, sql);
	}
	st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		set_msg(p, res ? PQresultErrorMessage(res)
			       : PQerrorMessage(p->conn));
		log_msg(LOG_ERR, "metadata: '%.60s...' failed: %s",
			waiting ? "statements waiting" : sql, p->msg);
		rc = state_errno(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				     : NULL);
		p->lost = waiting && conn_lost(p, res);
		if (p->lost)
			rc = -EDEADLK; /* the transaction went with it */
	}
	PQclear(res);
	return rc || !waiting ? rc : meta_pg_exec(m, sql);
}

/* A connection of its own that listens for the changes other nodes
 * commit (core/watch.c). */
struct meta_listen {
	PGconn *conn;
	int64_t probe_at; /* monotonic ms the probe out was sent, or 0 */
	int64_t probe_ok; /* monotonic ms of the last probe answered */
};

int meta_listen_open(struct meta *m, struct meta_listen **out)
{
	struct meta_listen *l;
	PGresult *res;

	if (!m->pg)
		return -EOPNOTSUPP;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->conn = PQconnectdb(m->pg->uri);
	if (!l->conn || PQstatus(l->conn) != CONNECTION_OK) {
		log_msg(LOG_WARNING, "metadata %s: cannot listen: %s",
			m->pg->shown,
			l->conn ? PQerrorMessage(l->conn) : "no memory");
		meta_listen_close(l);
		return -EIO;
	}
	res = PQexec(l->conn, "LISTEN tally_inval");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		PQclear(res);
		meta_listen_close(l);
		return -EIO;
	}
	PQclear(res);
	*out = l;
	return 0;
}

int meta_listen_fd(struct meta_listen *l)
{
	return PQsocket(l->conn);
}

int meta_listen_take(struct meta_listen *l,
		     void (*fn)(void *ctx, const char *payload), void *ctx)
{
	PGnotify *n;
	PGresult *r;

	if (!PQconsumeInput(l->conn) || PQstatus(l->conn) != CONNECTION_OK)
		return -EIO;
	while ((n = PQnotifies(l->conn)) != NULL) {
		fn(ctx, n->extra);
		PQfreemem(n);
	}
	/* the probe's answer (meta_listen_probe()) */
	while (l->probe_at && !PQisBusy(l->conn)) {
		r = PQgetResult(l->conn);
		if (!r) {
			l->probe_ok = l->probe_at;
			l->probe_at = 0;
			break;
		}
		PQclear(r);
	}
	return 0;
}

int meta_listen_probe(struct meta_listen *l, int64_t now_ms)
{
	if (l->probe_at)
		return now_ms - l->probe_at > META_PROBE_MS * 3 ? -ETIMEDOUT
								: 0;
	if (l->probe_ok && now_ms - l->probe_ok < META_PROBE_MS)
		return 0;
	if (!PQsendQuery(l->conn, "SELECT 1") || PQflush(l->conn) < 0)
		return -EIO;
	l->probe_at = now_ms ? now_ms : 1;
	if (!l->probe_ok)
		l->probe_ok = l->probe_at;
	return 0;
}

void meta_listen_close(struct meta_listen *l)
{
	if (!l)
		return;
	if (l->conn)
		PQfinish(l->conn);
	free(l);
}

void meta_pg_set_node(struct meta *m, int64_t node)
{
	char sql[64];

	m->pg->node = node;
	snprintf(sql, sizeof(sql), "SET tally.node = '%lld'", (long long)node);
	meta_pg_exec(m, sql);
}

void meta_pg_set_idle(struct meta *m, int64_t seconds)
{
	char sql[96];

	m->pg->idle_s = seconds;
	snprintf(sql, sizeof(sql),
		 "SET idle_in_transaction_session_timeout = '%llds'",
		 (long long)seconds);
	meta_pg_exec(m, sql);
}

bool meta_pg_lost(struct meta *m)
{
	return m->pg && m->pg->lost;
}

bool meta_pg_in_txn(struct meta *m)
{
	/* statements waiting are a transaction too, to roll back (its
	 * ROLLBACK drops them), whatever became of the connection */
	return m->pg->begin || m->pg->nlater || server_in_txn(m->pg);
}

void meta_pg_close(struct meta *m)
{
	struct meta_pg *p = m->pg;

	if (!p)
		return;
	later_clear(p);
	if (p->conn)
		PQfinish(p->conn);
	free(p->uri);
	free(p->shown);
	free(p);
	m->pg = NULL;
}

/* The first column of the first row of @sql as an integer (-1: no row
 * or NULL), or -errno. */
static int query_int(struct meta *m, const char *sql, int64_t *v)
{
	PGresult *res = PQexec(m->pg->conn, sql);
	int rc = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		set_msg(m->pg, PQresultErrorMessage(res));
		rc = state_errno(PQresultErrorField(res, PG_DIAG_SQLSTATE));
	} else if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0)) {
		*v = -1;
	} else {
		*v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	}
	PQclear(res);
	return rc;
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

/* Is the database a tallyfs store? Format it if it is empty and
 * @create. Inside a transaction. */
static int check_or_format(struct meta *m, bool create, uint32_t block_size)
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
	if (fmt != META_FORMAT) {
		log_msg(LOG_ERR,
			"metadata %s has format version %" PRId64
			", this tallyfs reads version %d",
			p->shown, fmt, META_FORMAT);
		return -EPROTO;
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

int meta_pg_open(const char *uri, bool create, uint32_t block_size,
		 struct meta **out)
{
	struct meta *m = calloc(1, sizeof(*m));
	struct meta_pg *p;
	const char *env;
	int rc;

	if (!m)
		return -ENOMEM;
	p = m->pg = calloc(1, sizeof(*p));
	if (!p) {
		free(m);
		return -ENOMEM;
	}
	p->uri = strdup(uri);
	p->shown = meta_uri_masked(uri);
	p->retry_ms = RETRY_MS_DEFAULT;
	env = getenv("TALLY_PG_RETRY_MS");
	if (env && *env)
		p->retry_ms = (unsigned)strtoul(env, NULL, 10);
	if (!p->uri || !p->shown) {
		rc = -ENOMEM;
		goto out_close;
	}
	rc = conn_open(p);
	if (rc) {
		log_msg(LOG_ERR, "cannot connect to metadata %s: %s", p->shown,
			p->msg);
		goto out_close;
	}
	rc = meta_pg_exec(m, "BEGIN");
	if (!rc)
		rc = check_or_format(m, create, block_size);
	if (!rc)
		rc = meta_pg_exec(m, "COMMIT");
	if (rc) {
		meta_pg_exec(m, "ROLLBACK");
		goto out_close;
	}
	/* a statement the server refuses is found now, not mid-operation */
	rc = meta_prepare_all(m);
	if (rc)
		goto out_close;
	*out = m;
	return 0;

out_close:
	meta_stmts_free(m);
	meta_pg_close(m);
	free(m);
	return rc;
}
