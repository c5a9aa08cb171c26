/* SPDX-License-Identifier: MIT */
/*
 * The GC family of the metadata store: GC marks, the GC log, node
 * reports, pins and the object names they protect.
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

int meta_mark_get(struct meta *m, const char *name, int64_t *since)
{
	return meta_int_by_text(m, S_MARK_GET, name, since, "gc mark read");
}

int meta_mark_put(struct meta *m, const char *name, uint32_t shard,
		  int64_t since)
{
	STMT_OR_RETURN(s, m, S_MARK_PUT);

	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, shard);
	sqlite3_bind_int64(s, 3, since);
	return meta_step_done(m, s, "gc mark write");
}

int meta_mark_del(struct meta *m, const char *name)
{
	STMT_OR_RETURN(s, m, S_MARK_DEL);

	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	return meta_step_done(m, s, "gc mark delete");
}

int meta_marks(struct meta *m, int (*fn)(void *ctx, const char *name),
	       void *ctx)
{
	STMT_OR_RETURN(s, m, S_MARK_LIST);
	int rc, ret = 0;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		ret = fn(ctx, (const char *)sqlite3_column_text(s, 0));
		if (ret)
			break;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return meta_fail(m, rc, "gc mark scan");
	return ret;
}

int meta_marks_after(struct meta *m, const char *after, unsigned limit,
		     int (*fn)(void *ctx, const char *name, int64_t since),
		     void *ctx)
{
	STMT_OR_RETURN(s, m, S_MARK_RANGE);
	int rc, ret = 0, n = 0;

	sqlite3_bind_text(s, 1, after, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, limit);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		ret = fn(ctx, (const char *)sqlite3_column_text(s, 0),
			 sqlite3_column_int64(s, 1));
		if (ret)
			break;
		n++;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return meta_fail(m, rc, "gc mark scan");
	return ret ? ret : n;
}

int meta_gc_log_put(struct meta *m, const struct meta_gc_event *e)
{
	STMT_OR_RETURN(s, m, S_LOG_PUT);

	sqlite3_bind_int64(s, 1, e->at);
	sqlite3_bind_int64(s, 2, e->dry_run);
	sqlite3_bind_int64(s, 3, (int64_t)e->checked);
	sqlite3_bind_int64(s, 4, (int64_t)e->live);
	sqlite3_bind_int64(s, 5, (int64_t)e->unreferenced);
	sqlite3_bind_int64(s, 6, (int64_t)e->collected);
	sqlite3_bind_int64(s, 7, (int64_t)e->preserved);
	sqlite3_bind_int64(s, 8, (int64_t)e->bytes_freed);
	sqlite3_bind_int64(s, 9, (int64_t)e->drift);
	sqlite3_bind_int64(s, 10, (int64_t)e->nodes);
	sqlite3_bind_int64(s, 11, e->duration_ms);
	return meta_step_done(m, s, "gc log write");
}

int meta_gc_log(struct meta *m, struct meta_gc_event *v, size_t max, size_t *n)
{
	STMT_OR_RETURN(s, m, S_LOG_LAST);
	size_t cnt = 0;
	int rc = SQLITE_DONE;

	sqlite3_bind_int64(s, 1, (int64_t)max);
	while (cnt < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct meta_gc_event *e = &v[cnt++];

		e->at = sqlite3_column_int64(s, 0);
		e->dry_run = (int)sqlite3_column_int64(s, 1);
		e->checked = (uint64_t)sqlite3_column_int64(s, 2);
		e->live = (uint64_t)sqlite3_column_int64(s, 3);
		e->unreferenced = (uint64_t)sqlite3_column_int64(s, 4);
		e->collected = (uint64_t)sqlite3_column_int64(s, 5);
		e->preserved = (uint64_t)sqlite3_column_int64(s, 6);
		e->bytes_freed = (uint64_t)sqlite3_column_int64(s, 7);
		e->drift = (uint64_t)sqlite3_column_int64(s, 8);
		e->nodes = (uint64_t)sqlite3_column_int64(s, 9);
		e->duration_ms = sqlite3_column_int64(s, 10);
	}
	if (cnt < max && rc != SQLITE_DONE) {
		sqlite3_reset(s);
		return meta_fail(m, rc, "gc log read");
	}
	sqlite3_reset(s);
	*n = cnt;
	return 0;
}

/* Run @sql with up to two integer/text parameters; no rows expected. */
static int exec_bind(struct meta *m, const char *sql, const char *text,
		     int64_t a, int64_t b, const char *what)
{
	sqlite3_stmt *s;
	int rc, i = 1;

	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return meta_fail(m, SQLITE_ERROR, what);
	if (text)
		sqlite3_bind_blob(s, i++, text, (int)strlen(text),
				  SQLITE_TRANSIENT);
	if (sqlite3_bind_parameter_count(s) >= i)
		sqlite3_bind_int64(s, i++, a);
	if (sqlite3_bind_parameter_count(s) >= i)
		sqlite3_bind_int64(s, i, b);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0
						     : meta_fail(m, rc, what);
}

/* Run @sql (?1 = @key, ?2 = a name) for each of @names. */
static int insert_names(struct meta *m, const char *sql, int64_t key,
			const char *const *names, size_t n, const char *what)
{
	sqlite3_stmt *s;
	size_t i;
	int rc = 0;

	if (n == 0)
		return 0;
	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return meta_fail(m, SQLITE_ERROR, what);
	for (i = 0; i < n && !rc; i++) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, key);
		sqlite3_bind_text(s, 2, names[i], -1, SQLITE_STATIC);
		rc = sqlite3_step(s);
		rc = rc == SQLITE_DONE ? 0 : meta_fail(m, rc, what);
	}
	sqlite3_finalize(s);
	return rc;
}

int meta_node_report(struct meta *m, int64_t node, int64_t at,
		     const char *const *names, size_t n)
{
	int rc;

	rc = exec_bind(m,
		       "INSERT OR REPLACE INTO node_reports(node, "
		       "reported_at) VALUES (?1, ?2)",
		       NULL, node, at, "node report");
	if (!rc)
		rc = exec_bind(m, "DELETE FROM node_objects WHERE node = ?1",
			       NULL, node, 0, "node report");
	if (rc)
		return rc;
	return insert_names(m,
			    "INSERT OR IGNORE INTO node_objects(node, name) "
			    "VALUES (?1, ?2)",
			    node, names, n, "node report");
}

int meta_node_remove(struct meta *m, int64_t node)
{
	int rc = exec_bind(m, "DELETE FROM node_objects WHERE node = ?1", NULL,
			   node, 0, "node removal");

	return rc ? rc
		  : exec_bind(m, "DELETE FROM node_reports WHERE node = ?1",
			      NULL, node, 0, "node removal");
}

int meta_nodes_prune(struct meta *m, int64_t before, uint64_t *pruned)
{
	int rc = exec_bind(m,
			   "DELETE FROM node_objects WHERE node IN "
			   "(SELECT node FROM node_reports WHERE "
			   "reported_at < ?1)",
			   NULL, before, 0, "node prune");

	if (!rc)
		rc = exec_bind(m,
			       "DELETE FROM node_reports WHERE "
			       "reported_at < ?1",
			       NULL, before, 0, "node prune");
	if (!rc)
		*pruned = (uint64_t)sqlite3_changes(m->db);
	return rc;
}

/* Call @fn for each row of a one-text-column query. */
/*
 * Each text of the first column of @sql's rows to @fn. Parameter ?1 is
 * bound to @text if not NULL, else to *@num if @num is not NULL: values
 * are bound, never formatted into the statement.
 */
int meta_each_name(struct meta *m, const char *sql, const char *text,
		   const int64_t *num, int (*fn)(void *ctx, const char *name),
		   void *ctx)
{
	sqlite3_stmt *s;
	int rc, ret = 0;

	if (sqlite3_prepare_v2(m->db, sql, -1, &s, NULL) != SQLITE_OK)
		return meta_fail(m, SQLITE_ERROR, "scan");
	if (text)
		sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
	else if (num)
		sqlite3_bind_int64(s, 1, *num);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int len = sqlite3_column_bytes(s, 0);
		char name[4096];

		if (len < 0 || len >= (int)sizeof(name))
			continue;
		memcpy(name, sqlite3_column_blob(s, 0), (size_t)len);
		name[len] = '\0';
		ret = fn(ctx, name);
		if (ret)
			break;
	}
	sqlite3_finalize(s);
	if (!ret && rc != SQLITE_DONE)
		return meta_fail(m, rc, "scan");
	return ret;
}

int meta_nodes_count(struct meta *m, uint64_t *n)
{
	int64_t v = meta_pragma_int(m, "SELECT count(*) FROM node_reports");

	if (v < 0)
		return -EIO;
	*n = (uint64_t)v;
	return 0;
}

int meta_protected_names(struct meta *m, int (*fn)(void *ctx, const char *name),
			 void *ctx)
{
	return meta_each_name(m,
			      "SELECT name FROM node_objects UNION "
			      "SELECT name FROM pin_objects UNION "
			      "SELECT name FROM moves",
			      NULL, NULL, fn, ctx);
}

int meta_name_protected(struct meta *m, const char *name, bool moves)
{
	STMT_OR_RETURN(s, m, moves ? S_PROTECTED : S_PROTECTED_NOMOVE);
	int rc = meta_lookup_fault(m);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : meta_fail(m, rc, "protection lookup");
}

int meta_pin_add(struct meta *m, const char *path, int64_t at,
		 const char *const *names, size_t n)
{
	int64_t id;
	int rc;

	rc = exec_bind(m, "INSERT INTO pins(path, created) VALUES (?1, ?2)",
		       path, at, 0, "pin");
	if (rc)
		return rc;
	id = sqlite3_last_insert_rowid(m->db);
	return insert_names(m,
			    "INSERT OR IGNORE INTO pin_objects(pin, name) "
			    "VALUES (?1, ?2)",
			    id, names, n, "pin");
}

int meta_pin_remove(struct meta *m, const char *path)
{
	int rc = exec_bind(m,
			   "DELETE FROM pin_objects WHERE pin IN "
			   "(SELECT id FROM pins WHERE path = ?1)",
			   path, 0, 0, "unpin");

	if (!rc)
		rc = exec_bind(m, "DELETE FROM pins WHERE path = ?1", path, 0,
			       0, "unpin");
	if (!rc && sqlite3_changes(m->db) == 0)
		return -ENOENT;
	return rc;
}

int meta_pins(struct meta *m, int (*fn)(void *ctx, const char *path), void *ctx)
{
	return meta_each_name(m, "SELECT path FROM pins ORDER BY path", NULL,
			      NULL, fn, ctx);
}

int meta_nspace_objects(struct meta *m, uint64_t nspace,
			int (*fn)(void *ctx, const char *name), void *ctx)
{
	int64_t ns = (int64_t)nspace;

	return meta_each_name(
		m,
		"SELECT DISTINCT o.name FROM inodes i JOIN blocks b ON "
		"b.ino = i.ino JOIN objects o ON o.id = b.obj WHERE "
		"i.nspace = ?1",
		NULL, &ns, fn, ctx);
}
