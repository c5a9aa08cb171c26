/* SPDX-License-Identifier: MIT */
/*
 * The body of struct meta and the helpers that the files of the metadata
 * store share (meta_db.c, meta_inode.c, meta_object.c, meta_gc.c,
 * meta_shard.c, meta_query.c, meta_stmt.c): the one way of running statements, error
 * mapping and the settling of counts at commit. Not for use outside
 * core/meta*.c.
 */
#ifndef TALLY_META_INT_H
#define TALLY_META_INT_H

#include <sqlite3.h>
#include <stdint.h>

#include "core/meta.h"

/* The families of statements, each the slot of its cache in struct meta. */
enum meta_family {
	META_DB,
	META_INODE,
	META_OBJECT,
	META_GC,
	META_SHARD,
	META_QUERY,
	META_REMOTE,
	META_FAMILIES
};

/* The statements of one family: @text[id] for each of its @n ids. */
struct meta_sql {
	enum meta_family family;
	unsigned n;
	const char *const *text;
};

struct meta {
	sqlite3 *db;
	/* prepared on first use, by family and id; finalized at close */
	sqlite3_stmt **stmt[META_FAMILIES];
	unsigned nstmt[META_FAMILIES];
	unsigned fault_in; /* meta_inject: commits until the fault; 0 off */
	int fault_err;
	/* objects whose count went to zero or below in this transaction:
	 * settled against its final state at commit (meta_settle()) */
	int64_t *zero;
	size_t nzero, zcap;
	unsigned lookup_fail; /* meta_inject_lookup: lookups still to fail */
	int lookup_err;
	struct meta_objlist dead; /* deleted rows, for meta_dead_take() */
	uint64_t drift;		  /* counts found wrong by meta_settle() */
	int64_t self;		  /* this mount's node id (meta_set_self) */
};

/*
 * The one way of running a statement: meta_stmt() gives statement @id of
 * family @t, prepared once and cached in @m, reset and with no bindings;
 * the caller binds, then steps it with meta_step(), meta_run(),
 * meta_int() or meta_each_name(), each of which leaves it reset when it
 * returns 0 or -errno. A caller that stops reading rows early resets it.
 * Failures are logged with @what. Returns 0 or -errno.
 */
int meta_stmt(struct meta *m, const struct meta_sql *t, int id,
	      sqlite3_stmt **out);

/* Make room for the statements of family @t (done by meta_stmt() on
 * first use): 0 or -ENOMEM. */
int meta_stmt_cache(struct meta *m, const struct meta_sql *t);

/* The same, silent when the statement does not prepare (a table that an
 * older store lacks: meta_db.c, at open). */
int meta_stmt_quiet(struct meta *m, const struct meta_sql *t, int id,
		    sqlite3_stmt **out);

/* Finalize and forget every cached statement (before closing). */
void meta_stmts_free(struct meta *m);

/* The next row of @s: 1 (a row to read), 0 at the end, or -errno. */
int meta_step(struct meta *m, sqlite3_stmt *s, const char *what);

/* Run @s to its end (rows, if any, ignored): 0 or -errno. */
int meta_run(struct meta *m, sqlite3_stmt *s, const char *what);

/* Fetch statement @id of @t, bind integer ?1 = @a, run it: 0 or -errno. */
int meta_run_int(struct meta *m, const struct meta_sql *t, int id, int64_t a,
		 const char *what);

/* The first column of the first row of @s in *@v: 0, -ENOENT if there is
 * no row, or -errno. */
int meta_int(struct meta *m, sqlite3_stmt *s, int64_t *v, const char *what);

/* The number statement @id of @t yields (a count, never negative) in
 * *@out: 0, or -EIO if there is none. */
int meta_count(struct meta *m, const struct meta_sql *t, int id,
	       const char *what, uint64_t *out);

/* The first column of each row of @s: a new array of *@n integers (NULL
 * when there is none), or -errno. */
int meta_int_rows(struct meta *m, sqlite3_stmt *s, const char *what,
		  uint64_t **out, size_t *n);

/* Each text of the first column of the rows of @s to @fn: 0, the first
 * nonzero value of @fn, or -errno. */
int meta_each_name(struct meta *m, sqlite3_stmt *s,
		   int (*fn)(void *ctx, const char *name), void *ctx);

/* Bind name @name (a file or attribute name: a blob) to parameter @col. */
void meta_bind_name(sqlite3_stmt *s, int col, const char *name);

/* The errno value of SQLite result code @rc (0 for OK, ROW and DONE). */
int meta_errno(int rc);

/* Log the failure of @what with SQLite's message; the errno value of @rc. */
int meta_fail(struct meta *m, int rc, const char *what);

/* An injected failure of an object lookup (meta_inject_lookup()), or 0. */
int meta_lookup_fault(struct meta *m);

/* The remote tier's tables, columns and triggers, inside the transaction
 * that opens a store (meta_remote.c). */
int meta_remote_schema(struct meta *m);

/* Settle the zero-count candidates of the transaction, before its COMMIT
 * (meta_object.c). */
int meta_settle(struct meta *m);

#endif
