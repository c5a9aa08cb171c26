/* SPDX-License-Identifier: MIT */
/*
 * The GC family of the metadata store: GC marks, the GC log, node
 * reports, pins and the object names they protect.
 */
#include "core/meta/meta_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/array.h"
#include "core/util/log.h"

enum {
	G_MARK_GET,
	G_MARK_PUT,
	G_MARK_DEL,
	G_MARK_LIST,
	G_MARK_RANGE,
	G_LOG_PUT,
	G_LOG_LAST,
	G_NODE_REPORT,
	G_NODE_CLEAR,
	G_NODE_NAME,
	G_NODE_DEL,
	G_PRUNE_SESSIONS,
	G_PRUNE_HOLDS,
	G_PRUNE_WATCHES,
	G_PRUNE_OBJECTS,
	G_PRUNE_REPORTS,
	G_NODES_COUNT,
	G_PROTECTED_NAMES,
	G_PROTECTED,
	G_PROTECTED_NOMOVE,
	G_PIN_ADD,
	G_PIN_NAME,
	G_UNPIN_OBJECTS,
	G_UNPIN,
	G_PINS,
	G_NSPACE_OBJECTS,
	G_COUNT
};

static const char *const gc_text[G_COUNT] = {
	[G_MARK_GET] = "SELECT since FROM gc_marks WHERE name = ?1",
	[G_MARK_PUT] = "INSERT OR IGNORE INTO gc_marks(name, shard, since) "
		       "VALUES (?1, ?2, ?3)",
	[G_MARK_DEL] = "DELETE FROM gc_marks WHERE name = ?1",
	[G_MARK_LIST] = "SELECT name FROM gc_marks",
	[G_MARK_RANGE] = "SELECT name, since FROM gc_marks WHERE name > ?1 "
			 "ORDER BY name LIMIT ?2",
	[G_LOG_PUT] = "INSERT INTO gc_log(at, dry_run, checked, live, "
		      "unreferenced, collected, preserved, bytes_freed, drift, "
		      "nodes, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
		      "?8, ?9, ?10, ?11)",
	[G_LOG_LAST] = "SELECT at, dry_run, checked, live, unreferenced, "
		       "collected, preserved, bytes_freed, drift, nodes, "
		       "duration_ms FROM gc_log ORDER BY id DESC LIMIT ?1",
	[G_NODE_REPORT] = "INSERT INTO node_reports(node, reported_at) "
			  "VALUES (?1, ?2) ON CONFLICT(node) DO UPDATE "
			  "SET reported_at = excluded.reported_at",
	[G_NODE_CLEAR] = "DELETE FROM node_objects WHERE node = ?1",
	[G_NODE_NAME] = "INSERT OR IGNORE INTO node_objects(node, name) "
			"VALUES (?1, ?2)",
	[G_NODE_DEL] = "DELETE FROM node_reports WHERE node = ?1",
	[G_PRUNE_SESSIONS] = "DELETE FROM sessions WHERE id IN "
			     "(SELECT node FROM node_reports WHERE "
			     "reported_at < ?1)",
	[G_PRUNE_HOLDS] = "DELETE FROM open_holds WHERE node IN "
			  "(SELECT node FROM node_reports WHERE "
			  "reported_at < ?1)",
	[G_PRUNE_WATCHES] = "DELETE FROM dir_watch WHERE node IN "
			    "(SELECT node FROM node_reports WHERE "
			    "reported_at < ?1)",
	[G_PRUNE_OBJECTS] = "DELETE FROM node_objects WHERE node IN "
			    "(SELECT node FROM node_reports WHERE "
			    "reported_at < ?1)",
	[G_PRUNE_REPORTS] = "DELETE FROM node_reports WHERE reported_at < ?1",
	[G_NODES_COUNT] = "SELECT count(*) FROM node_reports",
	[G_PROTECTED_NAMES] = "SELECT name FROM node_objects UNION "
			      "SELECT name FROM pin_objects UNION "
			      "SELECT name FROM moves",
	/* ?2: a node whose report is not asked (NULL: none) */
	[G_PROTECTED] = "SELECT 1 FROM pin_objects WHERE name = ?1 "
			"UNION ALL SELECT 1 FROM node_objects WHERE name = ?1 "
			"AND node IS NOT ?2 "
			"UNION ALL SELECT 1 FROM moves WHERE name = ?1 LIMIT 1",
	[G_PROTECTED_NOMOVE] =
		"SELECT 1 FROM pin_objects WHERE name = ?1 "
		"UNION ALL SELECT 1 FROM node_objects WHERE name = ?1 "
		"AND node IS NOT ?2 LIMIT 1",
	[G_PIN_ADD] = "INSERT INTO pins(path, created) VALUES (?1, ?2) "
		      "RETURNING id",
	[G_PIN_NAME] = "INSERT OR IGNORE INTO pin_objects(pin, name) "
		       "VALUES (?1, ?2)",
	[G_UNPIN_OBJECTS] = "DELETE FROM pin_objects WHERE pin IN "
			    "(SELECT id FROM pins WHERE path = ?1)",
	[G_UNPIN] = "DELETE FROM pins WHERE path = ?1",
	[G_PINS] = "SELECT path FROM pins ORDER BY path",
	/* the objects the rows on leaf ?1's chain name (what the namespace
	 * shows and more: its versions' older rows) */
	[G_NSPACE_OBJECTS] =
		"SELECT DISTINCT o.name FROM extents b JOIN "
		"objects o ON o.id = b.obj WHERE " ON_CHAIN("b.ver", "?1"),
};

const struct meta_sql meta_gc_sql = { META_GC, G_COUNT, gc_text, NULL };

/* Statement @id with text parameter ?1 = @name. */
static int stmt_text(struct meta *m, int id, const char *name,
		     struct meta_st **s)
{
	int rc = meta_stmt(m, &meta_gc_sql, id, s);

	if (!rc)
		meta_bind_text(*s, 1, name);
	return rc;
}

int meta_mark_get(struct meta *m, const char *name, int64_t *since)
{
	struct meta_st *s;
	int rc = stmt_text(m, G_MARK_GET, name, &s);

	return rc ? rc : meta_int(m, s, since, "gc mark read");
}

int meta_mark_put(struct meta *m, const char *name, uint32_t shard,
		  int64_t since)
{
	struct meta_st *s;
	int rc = stmt_text(m, G_MARK_PUT, name, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 2, shard);
	meta_bind_int(s, 3, since);
	return meta_run(m, s, "gc mark write");
}

int meta_mark_del(struct meta *m, const char *name)
{
	struct meta_st *s;
	int rc = stmt_text(m, G_MARK_DEL, name, &s);

	return rc ? rc : meta_run(m, s, "gc mark delete");
}

int meta_marks(struct meta *m, int (*fn)(void *ctx, const char *name),
	       void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_gc_sql, G_MARK_LIST, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "gc mark scan")) > 0)
		ret = fn(ctx, (const char *)meta_col_text(s, 0));
	meta_reset(s);
	return ret ? ret : rc;
}

int meta_marks_after(struct meta *m, const char *after, unsigned limit,
		     int (*fn)(void *ctx, const char *name, int64_t since),
		     void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_gc_sql, G_MARK_RANGE, &s), ret = 0, n = 0;

	if (rc)
		return rc;
	meta_bind_text(s, 1, after);
	meta_bind_int(s, 2, limit);
	while (!ret && (rc = meta_step(m, s, "gc mark scan")) > 0) {
		ret = fn(ctx, (const char *)meta_col_text(s, 0),
			 meta_col_int(s, 1));
		if (!ret)
			n++;
	}
	meta_reset(s);
	if (ret)
		return ret;
	return rc ? rc : n;
}

int meta_gc_log_put(struct meta *m, const struct meta_gc_event *e)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_gc_sql, G_LOG_PUT, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, e->at);
	meta_bind_int(s, 2, e->dry_run);
	meta_bind_int(s, 3, (int64_t)e->checked);
	meta_bind_int(s, 4, (int64_t)e->live);
	meta_bind_int(s, 5, (int64_t)e->unreferenced);
	meta_bind_int(s, 6, (int64_t)e->collected);
	meta_bind_int(s, 7, (int64_t)e->preserved);
	meta_bind_int(s, 8, (int64_t)e->bytes_freed);
	meta_bind_int(s, 9, (int64_t)e->drift);
	meta_bind_int(s, 10, (int64_t)e->nodes);
	meta_bind_int(s, 11, e->duration_ms);
	return meta_run(m, s, "gc log write");
}

int meta_gc_log(struct meta *m, struct meta_gc_event *v, size_t max, size_t *n)
{
	struct meta_st *s;
	size_t cnt = 0;
	int rc = meta_stmt(m, &meta_gc_sql, G_LOG_LAST, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, (int64_t)max);
	while (cnt < max && (rc = meta_step(m, s, "gc log read")) > 0) {
		struct meta_gc_event *e = &v[cnt++];

		e->at = meta_col_int(s, 0);
		e->dry_run = (int)meta_col_int(s, 1);
		e->checked = (uint64_t)meta_col_int(s, 2);
		e->live = (uint64_t)meta_col_int(s, 3);
		e->unreferenced = (uint64_t)meta_col_int(s, 4);
		e->collected = (uint64_t)meta_col_int(s, 5);
		e->preserved = (uint64_t)meta_col_int(s, 6);
		e->bytes_freed = (uint64_t)meta_col_int(s, 7);
		e->drift = (uint64_t)meta_col_int(s, 8);
		e->nodes = (uint64_t)meta_col_int(s, 9);
		e->duration_ms = meta_col_int(s, 10);
	}
	meta_reset(s);
	if (rc < 0)
		return rc;
	*n = cnt;
	return 0;
}

/* Run statement @id with integer parameters ?1 = @a and, if it has one,
 * ?2 = @b. */
static int exec_ints(struct meta *m, int id, int64_t a, int64_t b,
		     const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_gc_sql, id, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, a);
	if (meta_param_count(s) >= 2)
		meta_bind_int(s, 2, b);
	return meta_run(m, s, what);
}

/* Run statement @id (?1 = @key, ?2 = a name) for each of @names. */
static int insert_names(struct meta *m, int id, int64_t key,
			const char *const *names, size_t n, const char *what)
{
	struct meta_st *s;
	size_t i;
	int rc = 0;

	for (i = 0; i < n && !rc; i++) {
		rc = meta_stmt(m, &meta_gc_sql, id, &s);
		if (rc)
			break;
		meta_bind_int(s, 1, key);
		meta_bind_text(s, 2, names[i]);
		rc = meta_run(m, s, what);
	}
	return rc;
}

int meta_node_report(struct meta *m, int64_t node, int64_t at,
		     const char *const *names, size_t n)
{
	int rc = exec_ints(m, G_NODE_REPORT, node, at, "node report");

	if (!rc)
		rc = exec_ints(m, G_NODE_CLEAR, node, 0, "node report");
	if (rc)
		return rc;
	return insert_names(m, G_NODE_NAME, node, names, n, "node report");
}

int meta_node_remove(struct meta *m, int64_t node)
{
	int rc = exec_ints(m, G_NODE_CLEAR, node, 0, "node removal");

	return rc ? rc : exec_ints(m, G_NODE_DEL, node, 0, "node removal");
}

int meta_nodes_prune(struct meta *m, int64_t before, uint64_t *pruned)
{
	/* a node whose report is pruned has no session either: it must
	 * register again, and ship again what it had in flight, before it
	 * commits (meta_session_hold()) */
	int rc = exec_ints(m, G_PRUNE_SESSIONS, before, 0, "node prune");
	bool unheld = false;

	/* what meta_session_remove() takes with a session: its holds
	 * left behind, a file unlinked later would never be freed */
	if (!rc)
		rc = exec_ints(m, G_PRUNE_HOLDS, before, 0, "node prune");
	if (!rc)
		unheld = meta_changes(m) > 0;
	if (!rc)
		rc = exec_ints(m, G_PRUNE_WATCHES, before, 0, "node prune");
	if (!rc)
		rc = exec_ints(m, G_PRUNE_OBJECTS, before, 0, "node prune");

	if (!rc)
		rc = exec_ints(m, G_PRUNE_REPORTS, before, 0, "node prune");
	if (!rc)
		*pruned = (uint64_t)meta_changes(m);
	/* the unlinked files only those nodes held open go now */
	if (!rc && unheld && meta_shared(m)) {
		size_t n = 0;

		rc = meta_orphans_free(m, &n);
		if (!rc && n)
			log_msg(LOG_INFO,
				"freed %zu unlinked inode(s) that pruned "
				"nodes held open",
				n);
	}
	return rc;
}

int meta_nodes_count(struct meta *m, uint64_t *n)
{
	return meta_count(m, &meta_gc_sql, G_NODES_COUNT, "node count", n);
}

int meta_protected_names(struct meta *m, int (*fn)(void *ctx, const char *name),
			 void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_gc_sql, G_PROTECTED_NAMES, &s);

	return rc ? rc : meta_each_name(m, s, fn, ctx);
}

void meta_set_self(struct meta *m, int64_t node)
{
	m->self = node;
	if (m->pg)
		meta_pg_set_node(m, node);
}

void meta_set_idle_limit(struct meta *m, int64_t seconds)
{
	if (m->pg)
		meta_pg_set_idle(m, seconds);
}

int meta_name_protected(struct meta *m, const char *name, bool moves,
			bool not_mine)
{
	struct meta_st *s;
	int64_t v;
	int rc = meta_lookup_fault(m);

	if (!rc)
		rc = stmt_text(m, moves ? G_PROTECTED : G_PROTECTED_NOMOVE,
			       name, &s);
	if (!rc && not_mine && m->self)
		meta_bind_int(s, 2, m->self);
	if (!rc)
		rc = meta_int(m, s, &v, "protection lookup");
	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}

/* Statement @id with @path (a blob, copied) as ?1. */
static int stmt_path(struct meta *m, int id, const char *path,
		     struct meta_st **s)
{
	int rc = meta_stmt(m, &meta_gc_sql, id, s);

	if (!rc)
		meta_bind_blob(*s, 1, path, strlen(path));
	return rc;
}

int meta_pin_add(struct meta *m, const char *path, int64_t at,
		 const char *const *names, size_t n)
{
	struct meta_st *s;
	int64_t pin;
	int rc = stmt_path(m, G_PIN_ADD, path, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 2, at);
	rc = meta_int(m, s, &pin, "pin");
	if (rc)
		return rc == -ENOENT ? -EIO : rc;
	return insert_names(m, G_PIN_NAME, pin, names, n, "pin");
}

int meta_pin_remove(struct meta *m, const char *path)
{
	struct meta_st *s;
	int rc = stmt_path(m, G_UNPIN_OBJECTS, path, &s);

	if (!rc)
		rc = meta_run(m, s, "unpin");
	if (!rc)
		rc = stmt_path(m, G_UNPIN, path, &s);
	if (!rc)
		rc = meta_run(m, s, "unpin");
	if (!rc && meta_changes(m) == 0)
		return -ENOENT;
	return rc;
}

int meta_pins(struct meta *m, int (*fn)(void *ctx, const char *path), void *ctx)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_gc_sql, G_PINS, &s);

	return rc ? rc : meta_each_name(m, s, fn, ctx);
}

int meta_nspace_objects(struct meta *m, uint64_t nspace,
			int (*fn)(void *ctx, const char *name), void *ctx)
{
	struct meta_ver leaf;
	struct meta_st *s;
	int rc = meta_nspace_ver(m, nspace, &leaf);

	if (!rc)
		rc = meta_stmt(m, &meta_gc_sql, G_NSPACE_OBJECTS, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 1, leaf.id);
	return meta_each_name(m, s, fn, ctx);
}
