/* SPDX-License-Identifier: MIT */
/*
 * The one way the metadata store runs a statement, on either engine: each
 * file keeps the text of its statements in a table (struct meta_sql)
 * indexed by its own ids; meta_stmt() prepares each once, on first use,
 * and caches it in struct meta by family and id; a few helpers bind,
 * step, read one row or iterate the rows. SQLite runs its statements in
 * place; PostgreSQL runs a statement at its first step and hands out the
 * rows of the result (meta_pg.c). Only meta_db.c, meta_pg.c and
 * meta_remote.c run multi-statement text (schema, repairs).
 */
#include "core/meta/meta_int.h"

#include <assert.h>
#include <errno.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util/array.h"
#include "core/util/log.h"

int meta_stmt_cache(struct meta *m, const struct meta_sql *t)
{
	struct meta_st **v;
	unsigned i;

	if (m->stmt[t->family])
		return 0;
	v = calloc(t->n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (i = 0; i < t->n; i++) {
		v[i] = calloc(1, sizeof(*v[i]));
		if (!v[i]) {
			while (i--)
				free(v[i]);
			free(v);
			return -ENOMEM;
		}
		v[i]->m = m;
		v[i]->text = t->text[i];
		v[i]->row = -1;
	}
	m->stmt[t->family] = v;
	m->nstmt[t->family] = t->n;
	return 0;
}

static void st_free(struct meta_st *s)
{
	int i;

	if (!s)
		return;
	if (s->lite)
		sqlite3_finalize(s->lite);
	meta_pg_clear(s);
	for (i = 0; i < s->nparam; i++)
		free(s->pv[i]);
	for (i = 0; i < s->ndec; i++)
		free(s->dec[i]);
	free(s->pv);
	free(s->pl);
	free(s->pf);
	free(s->pcap);
	free(s->dec);
	free(s->declen);
	free(s->decrow);
	free(s->pgtext);
	free(s);
}

/* Parameters back to NULL (SQLite: sqlite3_clear_bindings()). */
static void st_unbind(struct meta_st *s)
{
	int i;

	if (s->lite) {
		sqlite3_reset(s->lite);
		sqlite3_clear_bindings(s->lite);
		return;
	}
	meta_pg_clear(s);
	for (i = 0; i < s->nparam; i++)
		s->pl[i] = -1; /* NULL */
}

/*
 * Statement @id of @t, prepared on first use (SQLite: kept with
 * SQLITE_PREPARE_PERSISTENT) and cached in @m by family and id, reset and
 * with no bindings. A statement that does not prepare is logged unless
 * @quiet.
 */
static int prepare(struct meta *m, const struct meta_sql *t, int id, bool quiet,
		   struct meta_st **out)
{
	struct meta_st **cache, *s;
	const char *text;
	int rc = meta_stmt_cache(m, t);

	assert(id >= 0 && (unsigned)id < t->n);
	if (rc)
		return rc;
	cache = m->stmt[t->family];
	s = cache[id];
	if (m->db) {
		if (s->lite) {
			st_unbind(s);
			*out = s;
			return 0;
		}
		rc = sqlite3_prepare_v3(m->db, s->text, -1,
					SQLITE_PREPARE_PERSISTENT, &s->lite,
					NULL);
		if (rc != SQLITE_OK) {
			if (!quiet)
				log_msg(LOG_ERR, "cannot prepare '%s': %s",
					s->text, sqlite3_errmsg(m->db));
			return meta_errno(rc);
		}
		*out = s;
		return 0;
	}
	text = t->pg && t->pg[id] ? t->pg[id] : t->text[id];
	if (!*text) {
		if (!quiet)
			log_msg(LOG_ERR, "'%s' is for SQLite only", s->text);
		return -EOPNOTSUPP;
	}
	rc = meta_pg_prepare(m, s, text, quiet);
	if (rc)
		return rc;
	st_unbind(s);
	*out = s;
	return 0;
}

/* Free every cached statement (before the connection closes). */
void meta_stmts_free(struct meta *m)
{
	unsigned f, i;

	for (f = 0; f < META_FAMILIES; f++) {
		for (i = 0; i < m->nstmt[f]; i++)
			st_free(m->stmt[f][i]);
		free(m->stmt[f]);
		m->stmt[f] = NULL;
		m->nstmt[f] = 0;
	}
}

int meta_prepare_all(struct meta *m)
{
	static const struct meta_sql *const all[] = {
		&meta_db_sql,	   &meta_inode_sql,   &meta_object_sql,
		&meta_gc_sql,	   &meta_shard_sql,   &meta_query_sql,
		&meta_remote_sql,  &meta_session_sql, &meta_xattr_sql,
		&meta_version_sql, &meta_branch_sql
	};
	struct meta_st *s;
	unsigned f, id;
	int rc;

	for (f = 0; f < sizeof(all) / sizeof(all[0]); f++) {
		for (id = 0; id < all[f]->n; id++) {
			if (m->pg && all[f]->pg && all[f]->pg[id] &&
			    !*all[f]->pg[id])
				continue;
			rc = prepare(m, all[f], (int)id, false, &s);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int meta_stmt(struct meta *m, const struct meta_sql *t, int id,
	      struct meta_st **out)
{
	/* a lost group not applied yet: the database lacks operations that
	 * were answered, and a read would show it (a created file missing,
	 * a removed one back); the group applied first, or EIO. Here, before
	 * the caller binds: applying it runs statements of its own, which
	 * may be this one. */
	if (m->ilog && meta_ilog_broken(m) && meta_ilog_ready(m) != 0) {
		*out = NULL;
		return -EIO;
	}
	return prepare(m, t, id, false, out);
}

int meta_stmt_quiet(struct meta *m, const struct meta_sql *t, int id,
		    struct meta_st **out)
{
	return prepare(m, t, id, true, out);
}

/* Whether @sql is an INSERT, UPDATE or DELETE (or REPLACE): a statement
 * whose only effects are the rows it changes. */
static bool is_dml(const char *sql)
{
	static const char *const kw[] = { "INSERT", "UPDATE", "DELETE",
					  "REPLACE" };
	size_t i;

	while (*sql == ' ' || *sql == '\n' || *sql == '\t')
		sql++;
	for (i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
		if (!strncasecmp(sql, kw[i], strlen(kw[i])))
			return true;
	return false;
}

int meta_step(struct meta *m, struct meta_st *s, const char *what)
{
	int rc;

	if (s->lite) {
		sqlite3_int64 before;
		bool note = false;

		/* the intent log (meta_ilog.c): an operation's changes are
		 * noted; a change outside one goes after the group's commit,
		 * on its own as it always did */
		if (m->ilog && !sqlite3_stmt_busy(s->lite) &&
		    !sqlite3_stmt_readonly(s->lite)) {
			if (meta_ilog_in_op(m))
				note = true;
			else if ((rc = meta_ilog_ready(m)) != 0)
				return rc;
		}
		before = note ? sqlite3_total_changes64(m->db) : 0;
		rc = sqlite3_step(s->lite);
		/* an INSERT, UPDATE or DELETE that changed no row (nor,
		 * then, fired a trigger) changed nothing to replay */
		if (note && rc == SQLITE_DONE &&
		    sqlite3_total_changes64(m->db) == before &&
		    is_dml(sqlite3_sql(s->lite)))
			note = false;
		if (note && (rc == SQLITE_ROW || rc == SQLITE_DONE)) {
			int nrc = meta_ilog_note(m, s->lite);

			if (nrc) {
				sqlite3_reset(s->lite);
				return nrc;
			}
		}
		if (rc == SQLITE_ROW)
			return 1;
		if (rc != SQLITE_DONE)
			rc = meta_fail(m, rc, what);
		else
			rc = 0;
		m->changes = sqlite3_changes(m->db);
		sqlite3_reset(s->lite);
		return rc;
	}
	if (!s->ran) {
		rc = meta_pg_run(m, s, what);
		if (rc) {
			meta_reset(s);
			return rc;
		}
		s->ran = true;
		s->row = -1;
	}
	if (++s->row < s->nrows)
		return 1;
	meta_reset(s);
	return 0;
}

void meta_reset(struct meta_st *s)
{
	if (s->lite)
		sqlite3_reset(s->lite);
	else
		meta_pg_clear(s);
}

int64_t meta_changes(struct meta *m)
{
	return m->changes;
}

int meta_run(struct meta *m, struct meta_st *s, const char *what)
{
	int rc;

	while ((rc = meta_step(m, s, what)) > 0)
		;
	return rc;
}

int meta_run_later(struct meta *m, struct meta_st *s, const char *what)
{
	return m->pg ? meta_pg_later(m, s, META_WAIT_CHANGE, what)
		     : meta_run(m, s, what);
}

int meta_run_setting(struct meta *m, struct meta_st *s, const char *what)
{
	return m->pg ? meta_pg_later(m, s, META_WAIT_SETTING, what)
		     : meta_run(m, s, what);
}

int meta_run_after(struct meta *m, struct meta_st *s, const char *what)
{
	return m->pg ? meta_pg_later(m, s, META_WAIT_AFTER, what)
		     : meta_run(m, s, what);
}

int meta_stmt_pair(struct meta *m, const struct meta_sql *t, int id, int64_t a,
		   int64_t b, struct meta_st **out)
{
	int rc = meta_stmt(m, t, id, out);

	if (rc)
		return rc;
	meta_bind_int(*out, 1, a);
	meta_bind_int(*out, 2, b);
	return 0;
}

/* Statement @id of @t with integer ?1 = @a, run now or @later. */
static int run_int(struct meta *m, const struct meta_sql *t, int id, int64_t a,
		   bool later, const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt(m, t, id, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, a);
	return later ? meta_run_later(m, s, what) : meta_run(m, s, what);
}

int meta_run_int(struct meta *m, const struct meta_sql *t, int id, int64_t a,
		 const char *what)
{
	return run_int(m, t, id, a, false, what);
}

int meta_run_int_later(struct meta *m, const struct meta_sql *t, int id,
		       int64_t a, const char *what)
{
	return run_int(m, t, id, a, true, what);
}

int meta_ints(struct meta *m, struct meta_st *s, const char *what, int n,
	      int64_t *v)
{
	int rc = meta_step(m, s, what);

	if (rc <= 0)
		return rc ? rc : -ENOENT;
	for (int k = 0; k < n; k++)
		v[k] = meta_col_int(s, k);
	meta_reset(s);
	return 0;
}

int meta_int(struct meta *m, struct meta_st *s, int64_t *v, const char *what)
{
	return meta_ints(m, s, what, 1, v);
}

int meta_count(struct meta *m, const struct meta_sql *t, int id,
	       const char *what, uint64_t *out)
{
	struct meta_st *s;
	int64_t v;

	if (meta_stmt(m, t, id, &s) || meta_int(m, s, &v, what) || v < 0)
		return -EIO;
	*out = (uint64_t)v;
	return 0;
}

int meta_int_rows(struct meta *m, struct meta_st *s, const char *what,
		  uint64_t **out, size_t *n)
{
	uint64_t *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	while ((rc = meta_step(m, s, what)) > 0) {
		if (array_reserve(&v, &cap, cnt + 1, sizeof(*v))) {
			meta_reset(s);
			rc = -ENOMEM;
			break;
		}
		v[cnt++] = (uint64_t)meta_col_int(s, 0);
	}
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int meta_each_name(struct meta *m, struct meta_st *s,
		   int (*fn)(void *ctx, const char *name), void *ctx)
{
	int rc, ret = 0;

	while (!ret && (rc = meta_step(m, s, "scan")) > 0) {
		int len = meta_col_bytes(s, 0);
		char name[4096];

		if (len < 0 || len >= (int)sizeof(name))
			continue;
		memcpy(name, meta_col_blob(s, 0), (size_t)len);
		name[len] = '\0';
		ret = fn(ctx, name);
	}
	meta_reset(s);
	return ret ? ret : rc;
}

/* PostgreSQL: a copy of @len bytes of @v as parameter @col (1-based), in
 * @format (0 text, 1 binary). */
static void pg_param(struct meta_st *s, int col, const void *v, size_t len,
		     int format)
{
	int i = col - 1;

	if (i < 0 || i >= s->nparam)
		return;
	if (len + 1 > s->pcap[i]) {
		char *p = realloc(s->pv[i], len + 1);

		if (!p) {
			/* runs as NULL: a NOT NULL column refuses it */
			s->pl[i] = -1;
			return;
		}
		s->pv[i] = p;
		s->pcap[i] = len + 1;
	}
	memcpy(s->pv[i], v, len);
	s->pv[i][len] = '\0';
	s->pl[i] = (int)len;
	s->pf[i] = format;
}

void meta_bind_int(struct meta_st *s, int col, int64_t v)
{
	char buf[24];
	int n;

	if (s->lite) {
		sqlite3_bind_int64(s->lite, col, v);
		return;
	}
	n = snprintf(buf, sizeof(buf), "%lld", (long long)v);
	pg_param(s, col, buf, (size_t)n, 0);
}

void meta_bind_text(struct meta_st *s, int col, const char *v)
{
	if (s->lite)
		sqlite3_bind_text(s->lite, col, v, -1, SQLITE_STATIC);
	else
		pg_param(s, col, v, strlen(v), 0);
}

void meta_bind_blob(struct meta_st *s, int col, const void *v, size_t len)
{
	if (s->lite)
		sqlite3_bind_blob(s->lite, col, len ? v : "", (int)len,
				  SQLITE_STATIC);
	else
		pg_param(s, col, len ? v : "", len, 1);
}

void meta_bind_name(struct meta_st *s, int col, const char *name)
{
	meta_bind_blob(s, col, name, strlen(name));
}

int meta_param_count(struct meta_st *s)
{
	return s->lite ? sqlite3_bind_parameter_count(s->lite) : s->nparam;
}

/* The text of column @col of the current PostgreSQL row ("" for NULL). */
static const char *pg_value(struct meta_st *s, int col)
{
	if (!s->res || s->row < 0 || s->row >= s->nrows ||
	    col >= PQnfields(s->res))
		return "";
	return PQgetvalue(s->res, s->row, col);
}

int64_t meta_col_int(struct meta_st *s, int col)
{
	const char *v;

	if (s->lite)
		return sqlite3_column_int64(s->lite, col);
	v = pg_value(s, col);
	if (v[0] == 't' && !v[1]) /* a boolean */
		return 1;
	return strtoll(v, NULL, 10);
}

bool meta_col_null(struct meta_st *s, int col)
{
	if (s->lite)
		return sqlite3_column_type(s->lite, col) == SQLITE_NULL;
	return !s->res || s->row < 0 || s->row >= s->nrows ||
	       col >= PQnfields(s->res) || PQgetisnull(s->res, s->row, col);
}

int meta_col_count(struct meta_st *s)
{
	if (s->lite)
		return sqlite3_column_count(s->lite);
	return s->res ? PQnfields(s->res) : 0;
}

#define BYTEA_OID 17

/*
 * Column @col of the current row as bytes: a bytea column (text results
 * give it in hex, "\x...") decoded once per row and kept in @s; any other
 * column as its text. *@len receives the length. NULL only without
 * memory (*@len 0).
 */
static const unsigned char *pg_bytes(struct meta_st *s, int col, size_t *len)
{
	const char *v = pg_value(s, col);
	size_t n;
	unsigned char *d;

	*len = 0;
	if (!s->res || col >= PQnfields(s->res) ||
	    PQftype(s->res, col) != BYTEA_OID || strncmp(v, "\\x", 2)) {
		*len = strlen(v);
		return (const unsigned char *)v;
	}
	if (col >= s->ndec) {
		int k, nd = col + 1;
		unsigned char **dv = realloc(s->dec, nd * sizeof(*dv));
		size_t *dl;
		int *dr;

		if (!dv)
			return NULL;
		s->dec = dv;
		dl = realloc(s->declen, nd * sizeof(*dl));
		if (!dl)
			return NULL;
		s->declen = dl;
		dr = realloc(s->decrow, nd * sizeof(*dr));
		if (!dr)
			return NULL;
		s->decrow = dr;
		for (k = s->ndec; k < nd; k++) {
			s->dec[k] = NULL;
			s->declen[k] = 0;
			s->decrow[k] = -1;
		}
		s->ndec = nd;
	}
	if (s->decrow[col] == s->row && s->dec[col]) {
		*len = s->declen[col];
		return s->dec[col];
	}
	n = (strlen(v) - 2) / 2;
	d = realloc(s->dec[col], n + 1);
	if (!d)
		return NULL;
	s->dec[col] = d;
	hex_decode(v + 2, n, d); /* the server's hex: never a bad digit */
	d[n] = '\0';
	s->declen[col] = n;
	s->decrow[col] = s->row;
	*len = n;
	return d;
}

const char *meta_col_text(struct meta_st *s, int col)
{
	size_t len;

	if (s->lite)
		return (const char *)sqlite3_column_text(s->lite, col);
	if (meta_col_null(s, col))
		return NULL;
	return (const char *)pg_bytes(s, col, &len);
}

const void *meta_col_blob(struct meta_st *s, int col)
{
	size_t len;

	if (s->lite)
		return sqlite3_column_blob(s->lite, col);
	if (meta_col_null(s, col))
		return NULL;
	return pg_bytes(s, col, &len);
}

int meta_col_bytes(struct meta_st *s, int col)
{
	size_t len;

	if (s->lite)
		return sqlite3_column_bytes(s->lite, col);
	if (meta_col_null(s, col) || !pg_bytes(s, col, &len))
		return 0;
	return (int)len;
}

int meta_exec(struct meta *m, const char *sql)
{
	char *err = NULL;
	int rc;

	if (m->pg)
		return meta_pg_exec(m, sql);
	rc = meta_ilog_ready(m);
	if (rc)
		return rc;
	rc = sqlite3_exec(m->db, sql, NULL, NULL, &err);
	if (rc == SQLITE_OK && meta_ilog_in_op(m)) {
		rc = meta_ilog_note_text(m, sql);
		return rc;
	}
	if (rc != SQLITE_OK) {
		log_msg(LOG_ERR, "metadata '%s' failed: %s", sql,
			err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return meta_errno(rc);
	}
	return 0;
}

bool meta_in_txn(struct meta *m)
{
	if (m->pg)
		return meta_pg_in_txn(m);
	return !sqlite3_get_autocommit(m->db);
}
