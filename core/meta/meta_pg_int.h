/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL engine's state, private to its files: meta_pg.c (the
 * connection, statements, pipelines, notifications), meta_pg_schema.c
 * (the schema, formatting and the check of a database at open) and
 * meta_pg_mask.c (URIs and connection strings with their passwords
 * masked). The DESIGN NOTES of core/meta/meta_pg.c hold for all three.
 */
#ifndef TALLY_META_PG_INT_H
#define TALLY_META_PG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/meta/meta_int.h"

#define APP_NAME "tallyfs"
/* pg_advisory_xact_lock key of formatting ('TALY' 'FMT') */
#define FORMAT_LOCK 0x54414c59464d54LL

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

/* meta_pg.c: keep the first line of libpq's message @msg as the last
 * error; the errno value of SQLSTATE @state (NULL: the connection
 * failed). */
void pg_set_msg(struct meta_pg *p, const char *msg);
int pg_state_errno(const char *state);

/* meta_pg_schema.c: format an empty database (@create) or check that it
 * is a store of this format, its functions made anew. */
int meta_pg_check_or_format(struct meta *m, bool create, uint32_t block_size);

#endif
