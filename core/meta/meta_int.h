/* SPDX-License-Identifier: MIT */
/*
 * The body of struct meta and the helpers that the files of the metadata
 * store share (meta_db.c, meta_inode.c, meta_object.c, meta_gc.c,
 * meta_shard.c, meta_query.c, meta_stmt.c): the one way of running statements, error
 * mapping and the settling of counts at commit. Not for use outside
 * core/meta/.
 */
#ifndef TALLY_META_INT_H
#define TALLY_META_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/meta/meta.h"

/* The families of statements, each the slot of its cache in struct meta. */
enum meta_family {
	META_DB,
	META_INODE,
	META_OBJECT,
	META_GC,
	META_SHARD,
	META_QUERY,
	META_REMOTE,
	META_SESSION,
	META_XATTR,
	META_VERSION,
	META_BRANCH,
	META_FAMILIES
};

/*
 * The statements of one family: @text[id] for each of its @n ids, in the
 * SQL that both engines speak where they can; @pg[id], when the table
 * has one and it is not NULL, replaces it for PostgreSQL (meta_pg.c
 * translates the rest: ?N parameters, INSERT OR IGNORE).
 */
struct meta_sql {
	enum meta_family family;
	unsigned n;
	const char *const *text;
	const char *const *pg;
};

/* The families, each in its file (meta_db.c, meta_inode.c, ...). */
extern const struct meta_sql meta_db_sql, meta_inode_sql, meta_object_sql,
	meta_gc_sql, meta_shard_sql, meta_query_sql, meta_remote_sql,
	meta_session_sql, meta_xattr_sql, meta_version_sql, meta_branch_sql;

/* PostgreSQL: the per-node counter of inodes moved by @n (SQLite counts
 * by a trigger). */
int meta_inodes_added(struct meta *m, int64_t n);

/* A @pg text that says: SQLite only (meta_stmt() gives -EOPNOTSUPP). */
#define META_SQLITE_ONLY ""

/* Prepare every statement of every family (PostgreSQL: at open, so that
 * one the server refuses is found then): 0 or the first error. */
int meta_prepare_all(struct meta *m);

struct meta_pg;	  /* a PostgreSQL connection (meta_pg.c) */
struct pg_result; /* libpq's PGresult */

/*
 * A prepared statement of either engine, cached in struct meta by family
 * and id. With SQLite, @lite; with PostgreSQL, the name it was prepared
 * under on the connection of generation @gen (a new connection prepares
 * again), the copies of its parameters, and the result of its last run,
 * read row by row as SQLite's would be.
 */
struct meta_st {
	struct meta *m;
	sqlite3_stmt *lite;
	const char *text; /* as the family wrote it, for messages */
	char *pgtext;	  /* what PostgreSQL runs */
	uint64_t gen;
	unsigned serial; /* the name: "t<serial>" */
	int nparam;	 /* at most 64 */
	uint64_t used;	 /* the parameters the text uses */
	char **pv;	 /* parameter values (owned copies; NULL: SQL NULL) */
	int *pl, *pf;
	size_t *pcap;
	struct pg_result *res;
	int row, nrows;
	bool ran;
	/* bytea columns of the current row, decoded on demand */
	unsigned char **dec;
	size_t *declen;
	int *decrow, ndec;
};

struct meta {
	sqlite3 *db;	    /* the SQLite engine, or NULL */
	struct meta_pg *pg; /* the PostgreSQL engine, or NULL */
	/* prepared on first use, by family and id; finalized at close */
	struct meta_st **stmt[META_FAMILIES];
	unsigned nstmt[META_FAMILIES];
	unsigned fault_in; /* meta_inject: commits until the fault; 0 off */
	int fault_err;
	/* objects whose count went to zero or below in this transaction:
	 * settled against its final state at commit (meta_settle()) */
	int64_t *zero;
	size_t nzero, zcap;
	unsigned lookup_fail; /* meta_inject_lookup: lookups still to fail */
	unsigned lost_in;     /* meta_inject_lost: commits until the lost one */
	int lookup_err;
	struct meta_objlist dead; /* deleted rows, for meta_dead_take() */
	uint64_t drift;		  /* counts found wrong by meta_settle() */
	int64_t self;		  /* this mount's node id (meta_set_self) */
	int64_t changes;	  /* rows changed by the last statement */
	struct meta_ilog *ilog;	  /* the intent log, or NULL (meta_ilog.c) */
	char *upgrade_due; /* the database's path: its upgrade waits for the
			    * log's replay (meta_upgrade_due()), or NULL */
	uint64_t schema;   /* SQLite: an XXH3-64 of every row of
			    * sqlite_schema (the tables, indexes and
			    * triggers), as meta_open() or
			    * meta_upgrade_due() left them */
};

/*
 * The intent log's state (core/meta/meta_ilog.c; under the caller's
 * lock, as the connection is): one of these, changed only through the
 * transitions docs/design.md section 12 lists (meta_ilog.c checks each
 * one against its table). The engine can make one more on its own: it
 * rolls an open group back (an I/O error, a full disk), which is found
 * as IL_GROUP with the connection in autocommit ("lost").
 */
enum ilog_state {
	IL_IDLE,       /* no group open: the database holds every answer */
	IL_GROUP,      /* a group open (BEGIN), between operations */
	IL_OP,	       /* an operation's savepoint open in the group */
	IL_OP_UNNOTED, /* ... a change of it not noted: it rolls back */
	IL_COMMIT,     /* the log's own statements run: a group's commit,
			 * the application of a lost group again */
	IL_BROKEN,     /* a lost group not applied again yet: it waits in
			 * the log, operations and reads are refused */
	IL_STATES
};

/* The room the log keeps on the store's disk (meta.reserve). */
enum ilog_room {
	IL_ROOM_KEPT, /* both tiers: operations go in groups */
	IL_ROOM_SOLO, /* the open's tier alone: each commits on its own */
	IL_ROOM_BARE, /* none: an open after a crash needs the disk's room */
};

struct meta_ilog {
	int fd; /* STORE/meta.ilog, at its end */
	enum ilog_state state;
	enum ilog_room room;
	uint64_t seq;	      /* the last record appended */
	uint64_t bytes;	      /* the log's length */
	uint64_t groups;      /* groups committed */
	uint64_t own_changes; /* rows the log's upkeep changed (ilog_seq) */
	int64_t reserve_try;  /* when the reserve was last tried (ns) */
	char *reserve; /* STORE/meta.reserve: room for a commit, a replay */
	unsigned ops;  /* operations in the open group */
	unsigned replay_fail; /* meta_ilog_inject_loss(): replays to fail */
	int64_t opened;	      /* when the group opened (CLOCK_MONOTONIC ns) */
	int64_t age_ns;	      /* a group commits at this age */
	char *rec;	      /* the open operation's statements, NUL-ended */
	size_t n, cap;
};

/* The statements of an operation inside a group (meta_db.c). */
enum meta_txn_stmt {
	META_D_BEGIN,
	META_D_COMMIT,
	META_D_ROLLBACK,
	META_D_SAVEPOINT,
	META_D_RELEASE,
	META_D_ROLLBACK_TO,
};
int meta_exec_id(struct meta *m, enum meta_txn_stmt which);

/* The upgrade of the tables meta_open() left for after the intent log's
 * replay (a log held records written for them as they were), run now
 * and committed: 0 (none due, or done) or -errno. */
int meta_upgrade_due(struct meta *m);

/* meta_ilog.c, for meta_db.c and meta_stmt.c */
int meta_ilog_op_begin(struct meta *m);
int meta_ilog_op_commit(struct meta *m);
void meta_ilog_op_rollback(struct meta *m);
bool meta_ilog_in_op(struct meta *m);
/* A lost group waits in the log to be applied again (and the log's own
 * statements are not running). */
bool meta_ilog_broken(struct meta *m);
/* The log on, and groups made (not a full disk's each operation alone). */
bool meta_grouping(struct meta *m);
bool meta_ilog_committing(struct meta *m);
/* Before a change outside an operation of a group: the open group
 * committed, a group that waits in the log applied; 0 or -errno. */
int meta_ilog_ready(struct meta *m);
struct sqlite3_stmt;
int meta_ilog_note(struct meta *m, struct sqlite3_stmt *st);
int meta_ilog_note_text(struct meta *m, const char *sql);
void meta_ilog_close(struct meta *m);
/* The temporary table a branch fills (meta_inode.c), for a replay. */
int meta_branch_table(struct meta *m);

/*
 * The one way of running a statement: meta_stmt() gives statement @id of
 * family @t, prepared once and cached in @m, reset and with no bindings;
 * the caller binds, then steps it with meta_step(), meta_run(),
 * meta_int() or meta_each_name(), each of which leaves it reset when it
 * returns 0 or -errno. A caller that stops reading rows early resets it.
 * Failures are logged with @what. Returns 0 or -errno.
 */
int meta_stmt(struct meta *m, const struct meta_sql *t, int id,
	      struct meta_st **out);

/* Make room for the statements of family @t (done by meta_stmt() on
 * first use; preparing then allocates nothing of ours): 0 or -ENOMEM. */
int meta_stmt_cache(struct meta *m, const struct meta_sql *t);

/* The same, silent when the statement does not prepare (a table that an
 * older store lacks: meta_db.c, at open). */
int meta_stmt_quiet(struct meta *m, const struct meta_sql *t, int id,
		    struct meta_st **out);

/* Finalize and forget every cached statement (before closing). */
void meta_stmts_free(struct meta *m);

/* The next row of @s: 1 (a row to read), 0 at the end, or -errno. */
int meta_step(struct meta *m, struct meta_st *s, const char *what);

/* Run @s to its end (rows, if any, ignored): 0 or -errno. */
int meta_run(struct meta *m, struct meta_st *s, const char *what);
/* meta_run() of a statement whose only result is success or failure
 * (not meta_changes() either), which PostgreSQL may send with the next
 * statement of its transaction (and a BEGIN with the first): a failure
 * then comes back from that one, and the transaction rolls back whole. */
int meta_run_later(struct meta *m, struct meta_st *s, const char *what);
/* meta_run_later() of a setting of the transaction, with no change of its
 * own: a transaction with nothing else in it is not sent at all. */
int meta_run_setting(struct meta *m, struct meta_st *s, const char *what);
/* meta_run_later() of a change that PostgreSQL sends right after the next
 * statement that has an answer, not before it (in the order of the rows
 * the transaction takes: a child's before its directory's). */
int meta_run_after(struct meta *m, struct meta_st *s, const char *what);

/* Fetch statement @id of @t, bind integer ?1 = @a, run it: 0 or -errno. */
int meta_run_int(struct meta *m, const struct meta_sql *t, int id, int64_t a,
		 const char *what);
/* Statement @id of @t prepared in *@out with integers ?1 = @a and
 * ?2 = @b bound. */
int meta_stmt_pair(struct meta *m, const struct meta_sql *t, int id, int64_t a,
		   int64_t b, struct meta_st **out);
/* meta_run_int() through meta_run_later(). */
int meta_run_int_later(struct meta *m, const struct meta_sql *t, int id,
		       int64_t a, const char *what);

/*
 * A shared store, after a statement that raised the counts of copied
 * references: statement @id of @t (integer ?1 = @a, if it has one)
 * counts the references whose object row is gone (another node deleted
 * it between the copy and the update). 0 when none (and always on one
 * writer), -EDEADLK when some (the operation runs again), or -errno.
 */
int meta_refs_gone(struct meta *m, const struct meta_sql *t, int id, int64_t a);
/* In a statement's text: a row of version ?p. An equality, so that a
 * key that goes on after the version (an extent's offset) is searched
 * too; a caller that names no version (tests, repairs) binds that of the
 * inode's rows, meta_ver_id(). */
#define VER_IS(col, p) col " = " p
/*
 * Format 4: a row of column col is on the chain of version ?p: col is ?p
 * or one of its ancestors, a probe of ver_anc's key (?p, col). Ids grow
 * from parent to child, so of a key's rows on the chain the nearest is
 * the one of the greatest version, and a statement that reads through a
 * chain walks the key's rows from the greatest version down (the key's
 * index) and stops at the first that the probe finds. It costs the
 * key's rows, in every version, and builds nothing per statement (ver_anc's
 * list as `IN (SELECT ...)` built a temporary table each time). A
 * bound `col <= ?p`, one range of the key's index, held only while a key
 * had rows in one namespace's chain; branches that share rows make the
 * versions a tree (docs/design.md 13.1), where a smaller id may be
 * another branch's.
 */
#define ON_CHAIN(col, p)                                             \
	"EXISTS (SELECT 1 FROM ver_anc a_ WHERE a_.ver = " p " AND " \
	"a_.anc = " col ")"
/*
 * Format 4, through a chain (docs/design.md 13.6): a version's extent
 * replaces its ancestors' at the same offset (fixed blocks tile alike in
 * every version), and an extent of object 0 is a whiteout, a hole where
 * an ancestor has a block. So extent row b shows in v when it is on the
 * chain of v, no deeper version on it has an extent at its offset, and
 * it names an object.
 */
#define BLOCK_SHOWS(b, v)                                                    \
	ON_CHAIN(b ".ver", v)                                                \
	" AND " b ".obj <> 0 AND NOT EXISTS (SELECT 1 FROM extents e WHERE " \
	"e.ino = " b ".ino AND e.ver > " b                                   \
	".ver AND " ON_CHAIN("e.ver", v) " AND e.off = " b ".off)"
/* the same of xattr row x: its name's nearest row on the chain of v, and
 * no whiteout (a NULL value) */
#define XATTR_SHOWS(x, v)                                                    \
	ON_CHAIN(x ".ver", v)                                                \
	" AND " x ".value IS NOT NULL AND NOT EXISTS (SELECT 1 FROM xattrs " \
	"y WHERE y.ino = " x ".ino AND y.name = " x ".name AND y.ver > " x   \
	".ver AND " ON_CHAIN("y.ver", v) ")"

/* no row of a deeper version on the chain of v has the key of entry row
 * a (a whiteout of it included) */
#define ENTRY_SHOWS(a, v)                                          \
	"NOT EXISTS (SELECT 1 FROM dentries e WHERE e.parent = " a \
	".parent AND e.name = " a ".name AND e.ver > " a           \
	".ver AND " ON_CHAIN("e.ver", v) ")"
/* the key of the row of inode x of the nearest version on the chain of
 * version v (its first row's, or a later version's: format 4) */
#define INODE_KEY(x, v)                                                   \
	"(SELECT k.ino FROM inodes k WHERE (k.ino = " x " OR k.base = " x \
	") AND " ON_CHAIN("k.ver", v) " ORDER BY k.ver DESC LIMIT 1)"
/* Does @v read through a chain (format 4: the rows of its ancestors,
 * struct meta_ver's depth)? */
static inline bool meta_chained(const struct meta_ver *v)
{
	return v && v->depth > 1;
}
/* The id of version @v, or, @v NULL, the version of inode @ino's rows:
 * its row's, or, if it has none (rows a repair removes), its extents',
 * its xattrs' or its entries' (0: none at all). */
int meta_ver_id(struct meta *m, const struct meta_ver *v, uint64_t ino,
		int64_t *id);
/* Statement @id of @t with ?1 = @key, ?2 = @name and ?@vcol = the
 * version @v names (of @key's rows if NULL) bound, in *@out. */
int meta_stmt_key_name(struct meta *m, const struct meta_sql *t, int id,
		       uint64_t key, const char *name, const struct meta_ver *v,
		       int vcol, struct meta_st **out);
/* The same with ?3 the version, run. */
int meta_key_name_run(struct meta *m, const struct meta_sql *t, int id,
		      const struct meta_ver *v, uint64_t key, const char *name,
		      const char *what);
/*
 * The blob of the first column of the row of statement @id of @t for
 * (@ino, @name if not NULL) in version @ver (the parameter after them),
 * copied into a new buffer of *@len bytes and a NUL: @none when there is
 * no row.
 */
int meta_blob_get(struct meta *m, const struct meta_sql *t, int id,
		  uint64_t ino, const char *name, const struct meta_ver *ver,
		  int none, const char *what, char **out, size_t *len);
/* Statement @id of @t prepared in *@out, with ?1 = @ino and ?@vcol = the
 * version @v names (meta_ver_id() of @ino if NULL) bound. */
int meta_stmt_ver(struct meta *m, const struct meta_sql *t, int id,
		  uint64_t ino, const struct meta_ver *v, int vcol,
		  struct meta_st **out);

/* The first column of the first row of @s in *@v: 0, -ENOENT if there is
 * no row, or -errno. meta_ints(): its first @n columns in @v[0..n). */
int meta_int(struct meta *m, struct meta_st *s, int64_t *v, const char *what);
int meta_ints(struct meta *m, struct meta_st *s, const char *what, int n,
	      int64_t *v);
/*
 * Run @s (a statement of one integer) and commit: 0 and *@v its value,
 * or 1 when it gave no row (committed all the same). On PostgreSQL @s
 * and the COMMIT go in one pipeline, one round trip; an error (-errno,
 * -ENOENT among them: a statement that went before @s failed so) leaves
 * the transaction to roll back, as a failed COMMIT does.
 */
int meta_int_commit(struct meta *m, struct meta_st *s, int64_t *v,
		    const char *what);

/* The number statement @id of @t yields (a count, never negative) in
 * *@out: 0, or -EIO if there is none. */
int meta_count(struct meta *m, const struct meta_sql *t, int id,
	       const char *what, uint64_t *out);

/* The first column of each row of @s: a new array of *@n integers (NULL
 * when there is none), or -errno. */
int meta_int_rows(struct meta *m, struct meta_st *s, const char *what,
		  uint64_t **out, size_t *n);

/* Each text of the first column of the rows of @s to @fn: 0, the first
 * nonzero value of @fn, or -errno. */
int meta_each_name(struct meta *m, struct meta_st *s,
		   int (*fn)(void *ctx, const char *name), void *ctx);

/* Bind name @name (a file or attribute name: a blob) to parameter @col. */
void meta_bind_name(struct meta_st *s, int col, const char *name);

/*
 * Parameters and columns, the same for both engines. Parameters are
 * numbered from 1, columns from 0. A text or blob bound stays the
 * caller's until the statement has run (SQLite reads it in place).
 * Column values live until the next step or reset of the statement.
 */
void meta_bind_int(struct meta_st *s, int col, int64_t v);
void meta_bind_text(struct meta_st *s, int col, const char *v);
void meta_bind_blob(struct meta_st *s, int col, const void *v, size_t len);
int meta_param_count(struct meta_st *s);
int64_t meta_col_int(struct meta_st *s, int col);
const char *meta_col_text(struct meta_st *s, int col);
const void *meta_col_blob(struct meta_st *s, int col);
int meta_col_bytes(struct meta_st *s, int col);
bool meta_col_null(struct meta_st *s, int col);
int meta_col_count(struct meta_st *s);
/* Forget the rows of the statement's last run (it can run again). */
void meta_reset(struct meta_st *s);
/* Rows inserted, updated or deleted by the last statement that ran. */
int64_t meta_changes(struct meta *m);
/* Run multi-statement text (schema, repairs): 0 or -errno, logged. */
int meta_exec(struct meta *m, const char *sql);
/* Whether a transaction is open. */
bool meta_in_txn(struct meta *m);

/* -- the PostgreSQL engine (meta_pg.c) -- */

/* Prepare @s (of text @text) on the connection, if it is not yet. */
int meta_pg_prepare(struct meta *m, struct meta_st *s, const char *text,
		    bool quiet);
/* Run @s with its parameters: its rows in s->res, or -errno (logged
 * with @what). */
int meta_pg_run(struct meta *m, struct meta_st *s, const char *what);
/* The COMMIT @commit goes in the pipeline of the next statement run, right
 * after it (NULL: none); meta_int_commit(). */
void meta_pg_set_tail(struct meta *m, struct meta_st *commit);
/* How a statement waits: a change, a setting, a change after the next
 * statement with an answer (meta_run_later(), _setting(), _after()). */
enum meta_wait {
	META_WAIT_CHANGE,
	META_WAIT_SETTING,
	META_WAIT_AFTER
};
int meta_pg_later(struct meta *m, struct meta_st *s, enum meta_wait how,
		  const char *what);
void meta_pg_clear(struct meta_st *s);
int meta_pg_exec(struct meta *m, const char *sql);
bool meta_pg_in_txn(struct meta *m);
/* Whether the last statement that failed lost the connection. */
bool meta_pg_lost(struct meta *m);
void meta_pg_close(struct meta *m);
/* This connection's node id (tally.node), for the triggers and queries
 * that file rows under the node that made them; set again on every new
 * connection. */
void meta_pg_set_node(struct meta *m, int64_t node);
void meta_pg_set_idle(struct meta *m, int64_t seconds);
const char *meta_pg_message(struct meta *m);

/* The errno value of SQLite result code @rc (0 for OK, ROW and DONE). */
int meta_errno(int rc);

/* Log the failure of @what with SQLite's message; the errno value of @rc. */
int meta_fail(struct meta *m, int rc, const char *what);

/* The settings and the root directory of a new store (in the
 * transaction that creates its tables). */
int meta_format_root(struct meta *m, uint32_t block_size);
/* meta_upgrade_crash_at(): an upgrade of the format kills the process
 * before its commit (tests; both engines) */
extern bool meta_upgrade_crash;
/*
 * The unlinked inodes a crash left (a link count of 0: open then): the
 * rows of leaves only (a frozen version's orphan is kept with it), no
 * whiteout (mode 0); each one's inode, version and the depth of its
 * chain (meta_orphan_rows()).
 */
#define META_ORPHANS_SQL                                                      \
	"SELECT coalesce(i.base, i.ino), i.ver, (SELECT count(*) FROM "       \
	"ver_anc a WHERE a.ver = i.ver) FROM inodes i WHERE i.nlink = 0 AND " \
	"i.mode <> 0 AND NOT EXISTS (SELECT 1 FROM versions f WHERE f.id = "  \
	"i.ver AND f.kind >= 2)"
/* The rows of @s, a META_ORPHANS_SQL, in a new array *@out of *@n. */
int meta_orphan_rows(struct meta *m, struct meta_st *s,
		     struct meta_orphan **out, size_t *n);
/* core/meta/meta_db_schema.c: the SQLite schema's texts */
extern const char meta_db_schema[], meta_db_gc_schema[], meta_db_shard_schema[],
	meta_db_objects_upgrade[], meta_db_versions_upgrade[],
	meta_db_keys_upgrade[], meta_db_base_upgrade[], meta_db_usage_fill[];

/* Log that query @what gave no row: -EIO. */
int meta_no_row(const char *what);

/* meta_open() of a PostgreSQL database (meta_pg.c). */
int meta_pg_open(const char *uri, bool create, uint32_t block_size,
		 struct meta **out);

/* An injected failure of an object lookup (meta_inject_lookup()), or 0. */
int meta_lookup_fault(struct meta *m);

/* The remote tier's tables, columns and triggers, inside the transaction
 * that opens a store (meta_remote.c). */
int meta_remote_schema(struct meta *m);

/*
 * A row of version ?2, a version made by a freeze (its id at
 * META_VER_CHILD_MIN or above), found through the partial indexes of
 * such rows (*_later): the literal bound is what lets either engine use
 * them with a parameter. Rows of a namespace's first version, nearly
 * all of a store, are in none of them.
 */
#define META_LATER_LIT "2199023255552"
#define IN_C(col) col " >= " META_LATER_LIT " AND " col " = ?2"
/* The partial indexes, made at open when missing (both engines). */
#define META_LATER_INDEXES                                                  \
	"CREATE INDEX IF NOT EXISTS dentries_later ON dentries(ver) WHERE " \
	"ver >= " META_LATER_LIT ";"                                        \
	"CREATE INDEX IF NOT EXISTS extents_later ON extents(ver) WHERE "   \
	"ver >= " META_LATER_LIT ";"                                        \
	"CREATE INDEX IF NOT EXISTS xattrs_later ON xattrs(ver) WHERE "     \
	"ver >= " META_LATER_LIT ";"                                        \
	"CREATE INDEX IF NOT EXISTS inodes_later ON inodes(ver) WHERE "     \
	"ver >= " META_LATER_LIT ";"
/* The entries that name an inode (made at open when missing, both
 * engines): the path of a changed row in a diff, without a scan. */
#define META_INO_INDEX \
	"CREATE INDEX IF NOT EXISTS dentries_ino ON dentries(ino, ver);"
/* The views of snapshots (docs/design.md 13.3), given at open (both
 * engines) to each snapshot taken before views were (their column 0),
 * each above every view given, and the counter (config 'next_view',
 * made by the first snapshot otherwise) then above them all. A store
 * without snapshots is not written to: an open that changes nothing
 * writes nothing (a damaged table can read well until it is written). */
#define META_VIEWS_GIVEN                                                     \
	"UPDATE versions SET view = coalesce((SELECT value FROM config "     \
	"WHERE key = 'next_view'), 1) + (SELECT count(*) FROM versions o "   \
	"WHERE o.kind = 3 AND o.id < versions.id) WHERE kind = 3 AND view "  \
	"= 0;"                                                               \
	"INSERT INTO config(key, value) SELECT 'next_view', max(view) + 1 "  \
	"FROM versions WHERE kind = 3 HAVING count(*) > 0 ON CONFLICT(key) " \
	"DO UPDATE SET value = excluded.value WHERE config.value < "         \
	"excluded.value;"
/* The extents of a merge (meta_version_merge()): version @ver's that its
 * child @child replaces go, their counts falling; @child's holes left
 * hiding nothing go; the rest of @child's are relabelled @ver. */
int meta_extents_merge(struct meta *m, int64_t ver, int64_t child);
/* The extents of version @ver deleted (below META_VER_CHILD_MIN, a
 * namespace's first version: by a scan),
 * the counts of their objects falling. */
int meta_extents_drop_ver(struct meta *m, int64_t ver);
/* The bytes of the objects that only version @ver's extents that its
 * child @child hides name: what @ver alone holds ([0]), and of those
 * the ones no pin keeps ([1]). */
int meta_extents_exclusive(struct meta *m, int64_t ver, int64_t child,
			   uint64_t bytes[2]);
/* The same of snapshot @ver, through its child: 0 for a version of two
 * children, or of none. */
int meta_version_own(struct meta *m, int64_t ver, uint64_t bytes[2]);

/* Settle the zero-count candidates of the transaction, before its COMMIT
 * (meta_object.c). */
int meta_settle(struct meta *m);

#endif
