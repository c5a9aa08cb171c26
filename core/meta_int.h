/* SPDX-License-Identifier: MIT */
/*
 * The body of struct meta and the helpers that the files of the metadata
 * store share (meta_db.c, meta_inode.c, meta_object.c, meta_gc.c,
 * meta_shard.c, meta_query.c): the statement machinery, error mapping and
 * the settling of counts at commit. Not for use outside core/meta*.c.
 */
#ifndef TALLY_META_INT_H
#define TALLY_META_INT_H

#include <sqlite3.h>
#include <stdint.h>

#include "core/meta.h"

#define ADHOC_MAX 64 /* statements of the shard section, by text */

enum {
	S_CONFIG_GET,
	S_CONFIG_SET,
	S_INODE_GET,
	S_INODE_PUT,
	S_INODE_DEL,
	S_INODE_DEL_X,
	S_ORPHANS,
	S_TARGET_SET,
	S_TARGET_GET,
	S_DENTRY_LOOKUP,
	S_DENTRY_INSERT,
	S_DENTRY_DELETE,
	S_DENTRY_SET_INO,
	S_DENTRY_MOVE,
	S_DIR_EMPTY,
	S_READDIR,
	S_BLOCKS_LOAD,
	S_BLOCK_GET,
	S_BLOCK_PUT,
	S_BLOCK_DEL,
	S_OBJ_FIND,
	S_OBJ_INSERT,
	S_OBJ_ADD,
	S_OBJ_DELETE,
	S_DROP_LIST,
	S_DROP_DEL,
	S_COPY_BLOCKS,
	S_COPY_COUNTS,
	S_COPY_XATTRS,
	S_REFCOUNTS,
	S_XATTR_GET,
	S_XATTR_INSERT,
	S_XATTR_REPLACE,
	S_XATTR_UPSERT,
	S_XATTR_DEL,
	S_XATTR_LIST,
	S_CHECK,
	S_CHECK_END,
	S_PROTECTED,
	S_OBJ_SET,
	S_OBJECTS,
	S_OBJECTS_AFTER,
	S_MARK_GET,
	S_MARK_PUT,
	S_MARK_DEL,
	S_MARK_LIST,
	S_MARK_RANGE,
	S_LOG_PUT,
	S_LOG_LAST,
	S_OBJ_SHARD,
	S_GHOST_DST,
	S_OBJ_GET,
	S_OBJ_REFS,
	S_PROTECTED_NOMOVE,
	S_BEGIN,
	S_COMMIT,
	S_COUNT
};

struct meta {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	struct {
		const char *sql; /* a literal: compared by address */
		sqlite3_stmt *s;
	} adhoc[ADHOC_MAX];
	unsigned nadhoc;
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
};

#define STMT_OR_RETURN(var, m, id)                \
	sqlite3_stmt *var = meta_stmt((m), (id)); \
	if (!var)                                 \
	return -EIO

/* The text of each statement id (meta_sql.c). */
extern const char *const meta_sql_text[S_COUNT];

/* The errno value of SQLite result code @rc (0 for OK, ROW and DONE). */
int meta_errno(int rc);

/* Log the failure of @what with SQLite's message; the errno value of @rc. */
int meta_fail(struct meta *m, int rc, const char *what);

/* The prepared statement @id, reset and with no bindings; NULL if it does
 * not prepare (logged). */
sqlite3_stmt *meta_stmt(struct meta *m, int id);

/* Step a statement that returns no rows, and reset it: 0 or -errno. */
int meta_step_done(struct meta *m, sqlite3_stmt *s, const char *what);

/* Run the statements of @sql, no parameters: 0 or -errno. */
int meta_exec(struct meta *m, const char *sql);

/* The first column of @sql's first row, or -1. */
int64_t meta_pragma_int(struct meta *m, const char *sql);

/*
 * Run statement @id with text parameter @key (or integer parameter @key
 * for meta_int_by_id()); the first column of its row goes to *val.
 * -ENOENT when there is no row.
 */
int meta_int_by_text(struct meta *m, int id, const char *key, int64_t *val,
		     const char *what);
int meta_int_by_id(struct meta *m, int id, int64_t key, int64_t *val,
		   const char *what);

/* Run statement @id with integer parameter @ino; no rows expected. */
int meta_exec_ino(struct meta *m, int id, uint64_t ino, const char *what);

/* An injected failure of an object lookup (meta_inject_lookup()), or 0. */
int meta_lookup_fault(struct meta *m);

/* Each text of the first column of @sql's rows to @fn (meta_gc.c). */
int meta_each_name(struct meta *m, const char *sql, const char *text,
		   const int64_t *num, int (*fn)(void *ctx, const char *name),
		   void *ctx);

/* The prepared statement of literal @sql, cached by address (meta_shard.c). */
int meta_prep(struct meta *m, const char *sql, sqlite3_stmt **out);

/* Settle the zero-count candidates of the transaction, before its COMMIT
 * (meta_object.c). */
int meta_settle(struct meta *m);

#endif
