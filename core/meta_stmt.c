/* SPDX-License-Identifier: MIT */
/*
 * The one way the metadata store runs a statement: each file keeps the
 * text of its statements in a table (struct meta_sql) indexed by its own
 * ids; meta_stmt() prepares each once, on first use, and caches it in
 * struct meta by family and id; a few helpers bind, step, read one row
 * or iterate the rows. Only meta_db.c runs multi-statement text (the
 * schema, at open).
 */
#include "core/meta_int.h"

#include <assert.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/array.h"
#include "core/log.h"

int meta_stmt_cache(struct meta *m, const struct meta_sql *t)
{
	if (m->stmt[t->family])
		return 0;
	m->stmt[t->family] = calloc(t->n, sizeof(*m->stmt[t->family]));
	if (!m->stmt[t->family])
		return -ENOMEM;
	m->nstmt[t->family] = t->n;
	return 0;
}

/*
 * Statement @id of @t, prepared on first use (kept: SQLITE_PREPARE_
 * PERSISTENT) and cached in @m by family and id, reset and with no
 * bindings. A statement that does not prepare is logged unless @quiet.
 */
static int prepare(struct meta *m, const struct meta_sql *t, int id, bool quiet,
		   sqlite3_stmt **out)
{
	sqlite3_stmt **cache;
	int rc = meta_stmt_cache(m, t);

	assert(id >= 0 && (unsigned)id < t->n);
	if (rc)
		return rc;
	cache = m->stmt[t->family];
	if (cache[id]) {
		sqlite3_reset(cache[id]);
		sqlite3_clear_bindings(cache[id]);
		*out = cache[id];
		return 0;
	}
	rc = sqlite3_prepare_v3(m->db, t->text[id], -1,
				SQLITE_PREPARE_PERSISTENT, &cache[id], NULL);
	if (rc != SQLITE_OK) {
		if (!quiet)
			log_msg(LOG_ERR, "cannot prepare '%s': %s", t->text[id],
				sqlite3_errmsg(m->db));
		return meta_errno(rc);
	}
	*out = cache[id];
	return 0;
}

/* Finalize every cached statement (before the connection closes). */
void meta_stmts_free(struct meta *m)
{
	unsigned f, i;

	for (f = 0; f < META_FAMILIES; f++) {
		for (i = 0; i < m->nstmt[f]; i++)
			sqlite3_finalize(m->stmt[f][i]);
		free(m->stmt[f]);
		m->stmt[f] = NULL;
		m->nstmt[f] = 0;
	}
}

int meta_stmt(struct meta *m, const struct meta_sql *t, int id,
	      sqlite3_stmt **out)
{
	return prepare(m, t, id, false, out);
}

int meta_stmt_quiet(struct meta *m, const struct meta_sql *t, int id,
		    sqlite3_stmt **out)
{
	return prepare(m, t, id, true, out);
}

int meta_step(struct meta *m, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc != SQLITE_DONE)
		rc = meta_fail(m, rc, what);
	else
		rc = 0;
	sqlite3_reset(s);
	return rc;
}

int meta_run(struct meta *m, sqlite3_stmt *s, const char *what)
{
	int rc;

	while ((rc = meta_step(m, s, what)) > 0)
		;
	return rc;
}

int meta_run_int(struct meta *m, const struct meta_sql *t, int id, int64_t a,
		 const char *what)
{
	sqlite3_stmt *s;
	int rc = meta_stmt(m, t, id, &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, a);
	return meta_run(m, s, what);
}

int meta_int(struct meta *m, sqlite3_stmt *s, int64_t *v, const char *what)
{
	int rc = meta_step(m, s, what);

	if (rc <= 0)
		return rc ? rc : -ENOENT;
	*v = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return 0;
}

int meta_count(struct meta *m, const struct meta_sql *t, int id,
	       const char *what, uint64_t *out)
{
	sqlite3_stmt *s;
	int64_t v;

	if (meta_stmt(m, t, id, &s) || meta_int(m, s, &v, what) || v < 0)
		return -EIO;
	*out = (uint64_t)v;
	return 0;
}

int meta_int_rows(struct meta *m, sqlite3_stmt *s, const char *what,
		  uint64_t **out, size_t *n)
{
	uint64_t *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	while ((rc = meta_step(m, s, what)) > 0) {
		if (array_reserve(&v, &cap, cnt + 1, sizeof(*v))) {
			sqlite3_reset(s);
			rc = -ENOMEM;
			break;
		}
		v[cnt++] = (uint64_t)sqlite3_column_int64(s, 0);
	}
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int meta_each_name(struct meta *m, sqlite3_stmt *s,
		   int (*fn)(void *ctx, const char *name), void *ctx)
{
	int rc, ret = 0;

	while (!ret && (rc = meta_step(m, s, "scan")) > 0) {
		int len = sqlite3_column_bytes(s, 0);
		char name[4096];

		if (len < 0 || len >= (int)sizeof(name))
			continue;
		memcpy(name, sqlite3_column_blob(s, 0), (size_t)len);
		name[len] = '\0';
		ret = fn(ctx, name);
	}
	sqlite3_reset(s);
	return ret ? ret : rc;
}

void meta_bind_name(sqlite3_stmt *s, int col, const char *name)
{
	sqlite3_bind_blob(s, col, name, (int)strlen(name), SQLITE_STATIC);
}
