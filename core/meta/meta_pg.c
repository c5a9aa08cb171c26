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
 *
 * Files: this one holds the connection, statements, pipelines and
 * notifications; meta_pg_schema.c the schema, formatting and the check
 * at open; meta_pg_mask.c the masking of passwords; their shared state
 * is in core/meta/meta_pg_int.h.
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

#include "core/util/log.h"

/* a broken connection is opened again for at most this long */
#define RETRY_MS_DEFAULT 15000
#define TEXT_OID 25

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

/* Keep the first line of libpq's message @msg as the last error. */
void pg_set_msg(struct meta_pg *p, const char *msg)
{
	size_t n;

	snprintf(p->msg, sizeof(p->msg), "%s", msg && *msg ? msg : "unknown");
	n = strcspn(p->msg, "\n");
	p->msg[n] = '\0';
}

/* The errno value of SQLSTATE @state (NULL: the connection failed). */
int pg_state_errno(const char *state)
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
 * branching (meta_branch.c), which its statements need to prepare. */
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
		pg_set_msg(p, PQerrorMessage(p->conn));
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
		pg_set_msg(p, PQerrorMessage(p->conn));
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
		pg_set_msg(p, res ? PQresultErrorMessage(res)
				  : PQerrorMessage(p->conn));
		if (outside && conn_lost(p, res)) {
			PQclear(res);
			if (reconnect(p))
				return -EIO;
			continue;
		}
		rc = pg_state_errno(
			res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
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
		pg_set_msg(p, res ? PQresultErrorMessage(res)
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
		i = pg_state_errno(
			res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
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
		pg_set_msg(p, res ? PQresultErrorMessage(res)
				  : PQerrorMessage(p->conn));
		log_msg(LOG_ERR, "metadata: '%.60s...' failed: %s",
			waiting ? "statements waiting" : sql, p->msg);
		rc = pg_state_errno(
			res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
		p->lost = waiting && conn_lost(p, res);
		if (p->lost)
			rc = -EDEADLK; /* the transaction went with it */
	}
	PQclear(res);
	return rc || !waiting ? rc : meta_pg_exec(m, sql);
}

/* A connection of its own that listens for the changes other nodes
 * commit (core/cluster/watch.c). */
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
		rc = meta_pg_check_or_format(m, create, block_size);
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
