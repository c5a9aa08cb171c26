/* SPDX-License-Identifier: MIT */
/*
 * The object family of the metadata store: object rows, the block
 * references that name them and their counts (settled at commit), the
 * count checks by chunks and the object scans.
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

void meta_objlist_init(struct meta_objlist *l)
{
	memset(l, 0, sizeof(*l));
}

void meta_objlist_release(struct meta_objlist *l)
{
	free(l->v);
	meta_objlist_init(l);
}

int meta_objlist_add(struct meta_objlist *l, int64_t id, uint32_t shard,
		     const char *name)
{
	if (array_reserve(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return -ENOMEM;
	l->v[l->n].id = id;
	l->v[l->n].shard = shard;
	snprintf(l->v[l->n].name, OBJNAME_MAX, "%s", name);
	l->n++;
	return 0;
}

int meta_blocks_load(struct meta *m, uint64_t ino, struct meta_bref **out,
		     size_t *n)
{
	STMT_OR_RETURN(s, m, S_BLOCKS_LOAD);
	struct meta_bref *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct meta_bref *b;
		const unsigned char *name;

		if (cnt == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct meta_bref *nv = realloc(v, ncap * sizeof(*v));

			if (!nv) {
				free(v);
				sqlite3_reset(s);
				return -ENOMEM;
			}
			v = nv;
			cap = ncap;
		}
		b = &v[cnt++];
		b->idx = (uint64_t)sqlite3_column_int64(s, 0);
		b->obj = sqlite3_column_int64(s, 1);
		b->shard = (uint32_t)sqlite3_column_int64(s, 2);
		name = sqlite3_column_text(s, 3);
		b->size = (uint32_t)sqlite3_column_int64(s, 4);
		if (!name) {
			log_msg(LOG_ERR,
				"inode %" PRIu64 " block %" PRIu64
				" names unknown object %" PRId64,
				ino, b->idx, b->obj);
			b->name[0] = '\0';
		} else {
			snprintf(b->name, OBJNAME_MAX, "%s", name);
		}
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return meta_fail(m, rc, "block map read");
	}
	*out = v;
	*n = cnt;
	return 0;
}

/*
 * Add @delta to the count of object @id. A count that reaches zero or
 * below does not delete the row here: the object becomes a candidate,
 * settled at commit against the transaction's final state (a later
 * reference in the same transaction raises the count again). An unknown
 * object is a warning.
 */
static int obj_add(struct meta *m, int64_t id, int64_t delta)
{
	STMT_OR_RETURN(s, m, S_OBJ_ADD);
	int64_t count;
	int rc;

	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, delta);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(s);
		log_msg(LOG_WARNING,
			"refcount change %+" PRId64 " of unknown "
			"object %" PRId64 ": ignored, nothing deleted",
			delta, id);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return meta_fail(m, rc, "refcount update");
	}
	count = sqlite3_column_int64(s, 0);
	/* RETURNING statements finish their work on the first step. */
	sqlite3_reset(s);
	if (count > 0)
		return 0;
	if (array_reserve(&m->zero, &m->zcap, m->nzero + 1, sizeof(*m->zero)))
		return -ENOMEM;
	m->zero[m->nzero++] = id;
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The number of block references to object @id (through blocks_obj). */
static int obj_refs(struct meta *m, int64_t id, int64_t *refs)
{
	return meta_int_by_id(m, S_OBJ_REFS, id, refs, "reference count");
}

/*
 * Settle the zero-count candidates of the transaction (before its
 * COMMIT): a count raised again keeps the object; a count that
 * disagrees with the references that name it is drift, corrected to
 * them and logged; a row at zero that nothing names is deleted and its
 * object listed for meta_dead_take(). A row below zero that nothing
 * names is deleted but its file is left to GC: the count was wrong, so
 * the deletion waits for GC's own check and grace.
 */
int meta_settle(struct meta *m)
{
	size_t i;
	int rc = 0;

	qsort(m->zero, m->nzero, sizeof(*m->zero), cmp_id);
	for (i = 0; i < m->nzero && !rc; i++) {
		char name[OBJNAME_MAX];
		int64_t id = m->zero[i], count, refs;
		uint32_t shard;

		if (i && m->zero[i - 1] == id)
			continue;
		{
			STMT_OR_RETURN(s, m, S_OBJ_GET);

			sqlite3_bind_int64(s, 1, id);
			rc = sqlite3_step(s);
			if (rc == SQLITE_ROW) {
				count = sqlite3_column_int64(s, 0);
				snprintf(name, sizeof(name), "%s",
					 (const char *)sqlite3_column_text(s,
									   1));
				shard = (uint32_t)sqlite3_column_int64(s, 2);
			}
			sqlite3_reset(s);
			if (rc == SQLITE_DONE) {
				rc = 0;
				continue; /* deleted meanwhile */
			}
			if (rc != SQLITE_ROW)
				return meta_fail(m, rc, "object read");
			rc = 0;
		}
		if (count > 0)
			continue; /* named again in this transaction */
		rc = obj_refs(m, id, &refs);
		if (rc)
			break;
		if (refs > 0) {
			m->drift++;
			log_msg(LOG_WARNING,
				"object '%s' count %" PRId64 " but %" PRId64
				" reference(s) name it: count corrected, "
				"nothing deleted",
				name, count, refs);
			rc = meta_obj_set_count(m, id, refs);
			continue;
		}
		rc = meta_exec_ino(m, S_OBJ_DELETE, (uint64_t)id,
				   "object delete");
		if (rc)
			break;
		if (count < 0) {
			m->drift++;
			log_msg(LOG_WARNING,
				"object '%s' count went below zero (%" PRId64
				"): row deleted, its file left to GC",
				name, count);
			continue;
		}
		rc = meta_objlist_add(&m->dead, id, shard, name);
	}
	m->nzero = 0;
	return rc;
}

static int obj_find(struct meta *m, const char *name, int64_t *id)
{
	return meta_int_by_text(m, S_OBJ_FIND, name, id, "object lookup");
}

int meta_obj_exists(struct meta *m, const char *name)
{
	int64_t id;
	int rc = obj_find(m, name, &id);

	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}

int meta_block_set(struct meta *m, uint64_t ino, uint64_t idx, const char *name,
		   uint32_t shard, uint32_t size, struct meta_bref *out)
{
	int64_t old = 0, id = 0;
	bool had = false;
	int rc;

	{
		STMT_OR_RETURN(s, m, S_BLOCK_GET);

		sqlite3_bind_int64(s, 1, (int64_t)ino);
		sqlite3_bind_int64(s, 2, (int64_t)idx);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			old = sqlite3_column_int64(s, 0);
			had = true;
		}
		sqlite3_reset(s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return meta_fail(m, rc, "block read");
		rc = 0;
	}
	if (name) {
		rc = obj_find(m, name, &id);
		if (rc == 0) {
			int64_t where;

			/* a reference names where the object is now */
			rc = meta_int_by_id(m, S_OBJ_SHARD, id, &where,
					    "object shard");
			if (!rc)
				shard = (uint32_t)where;
		}
		if (rc == 0 && !(had && old == id)) {
			rc = obj_add(m, id, 1);
		} else if (rc == -ENOENT) {
			STMT_OR_RETURN(s, m, S_OBJ_INSERT);

			sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
			sqlite3_bind_int64(s, 2, shard);
			sqlite3_bind_int64(s, 3, size);
			rc = meta_step_done(m, s, "object insert");
			id = sqlite3_last_insert_rowid(m->db);
		}
		if (rc)
			return rc;
		{
			STMT_OR_RETURN(s, m, S_BLOCK_PUT);

			sqlite3_bind_int64(s, 1, (int64_t)ino);
			sqlite3_bind_int64(s, 2, (int64_t)idx);
			sqlite3_bind_int64(s, 3, id);
			sqlite3_bind_int64(s, 4, shard);
			rc = meta_step_done(m, s, "block write");
		}
	} else if (had) {
		STMT_OR_RETURN(s, m, S_BLOCK_DEL);

		sqlite3_bind_int64(s, 1, (int64_t)ino);
		sqlite3_bind_int64(s, 2, (int64_t)idx);
		rc = meta_step_done(m, s, "block delete");
	}
	if (rc)
		return rc;
	if (had && old != id)
		rc = obj_add(m, old, -1);
	if (!rc && out && name) {
		out->idx = idx;
		out->obj = id;
		out->shard = shard;
		out->size = size;
		snprintf(out->name, OBJNAME_MAX, "%s", name);
	}
	return rc;
}

int meta_blocks_drop(struct meta *m, uint64_t ino, uint64_t from)
{
	struct {
		int64_t obj, n;
	} *v = NULL;
	size_t cnt = 0, i;
	int rc;

	{
		STMT_OR_RETURN(s, m, S_DROP_LIST);

		sqlite3_bind_int64(s, 1, (int64_t)ino);
		sqlite3_bind_int64(s, 2, (int64_t)from);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			void *nv = realloc(v, (cnt + 1) * sizeof(*v));

			if (!nv) {
				sqlite3_reset(s);
				free(v);
				return -ENOMEM;
			}
			v = nv;
			v[cnt].obj = sqlite3_column_int64(s, 0);
			v[cnt].n = sqlite3_column_int64(s, 1);
			cnt++;
		}
		sqlite3_reset(s);
		if (rc != SQLITE_DONE) {
			free(v);
			return meta_fail(m, rc, "block scan");
		}
	}
	rc = 0;
	for (i = 0; i < cnt && !rc; i++)
		rc = obj_add(m, v[i].obj, -v[i].n);
	free(v);
	if (!rc) {
		STMT_OR_RETURN(s, m, S_DROP_DEL);

		sqlite3_bind_int64(s, 1, (int64_t)ino);
		sqlite3_bind_int64(s, 2, (int64_t)from);
		rc = meta_step_done(m, s, "block delete");
	}
	return rc;
}

static int exec_pair(struct meta *m, int id, uint64_t a, uint64_t b,
		     const char *what)
{
	STMT_OR_RETURN(s, m, id);

	sqlite3_bind_int64(s, 1, (int64_t)a);
	sqlite3_bind_int64(s, 2, (int64_t)b);
	return meta_step_done(m, s, what);
}

int meta_blocks_copy(struct meta *m, uint64_t src, uint64_t dst)
{
	int rc = exec_pair(m, S_COPY_BLOCKS, src, dst, "block copy");

	if (!rc)
		rc = meta_exec_ino(m, S_COPY_COUNTS, src, "refcount update");
	if (!rc)
		rc = exec_pair(m, S_COPY_XATTRS, src, dst, "xattr copy");
	return rc;
}

int meta_refcounts(struct meta *m, uint64_t ino, uint64_t **counts, size_t *n)
{
	STMT_OR_RETURN(s, m, S_REFCOUNTS);
	uint64_t *v = NULL;
	size_t cnt = 0;
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		uint64_t *nv = realloc(v, (cnt + 1) * sizeof(*v));

		if (!nv) {
			free(v);
			sqlite3_reset(s);
			return -ENOMEM;
		}
		v = nv;
		v[cnt++] = (uint64_t)sqlite3_column_int64(s, 0);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return meta_fail(m, rc, "refcount read");
	}
	*counts = v;
	*n = cnt;
	return 0;
}

/* The check of the ids in [@from, @to], in one statement: one snapshot. */
static int check_range(struct meta *m, int64_t from, int64_t to,
		       int (*fn)(void *ctx, const struct meta_check *c),
		       void *ctx)
{
	STMT_OR_RETURN(s, m, S_CHECK);
	struct meta_check c;
	int rc, ret = 0;

	sqlite3_bind_int64(s, 1, from);
	sqlite3_bind_int64(s, 2, to);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *name = sqlite3_column_text(s, 1);

		c.id = sqlite3_column_int64(s, 0);
		snprintf(c.name, sizeof(c.name), "%s",
			 name ? (const char *)name : "");
		c.shard = (uint32_t)sqlite3_column_int64(s, 2);
		c.stored = sqlite3_column_int64(s, 3);
		c.truth = sqlite3_column_int64(s, 4);
		ret = fn(ctx, &c);
		if (ret)
			break;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return meta_fail(m, rc, "refcount check");
	return ret;
}

int meta_check_counts(struct meta *m,
		      int (*fn)(void *ctx, const struct meta_check *c),
		      void *ctx)
{
	return check_range(m, INT64_MIN, INT64_MAX, fn, ctx);
}

int meta_check_chunk(struct meta *m, int64_t from, unsigned limit,
		     int64_t *next,
		     int (*fn)(void *ctx, const struct meta_check *c),
		     void *ctx)
{
	int64_t to = INT64_MAX;
	int rc;

	assert(limit > 0);
	{
		STMT_OR_RETURN(s, m, S_CHECK_END);

		sqlite3_bind_int64(s, 1, from);
		sqlite3_bind_int64(s, 2, limit);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			to = sqlite3_column_int64(s, 0) - 1;
		sqlite3_reset(s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return meta_fail(m, rc, "refcount check");
	}
	rc = check_range(m, from, to, fn, ctx);
	if (rc)
		return rc;
	if (to == INT64_MAX)
		return 0;
	*next = to + 1;
	return 1;
}

int meta_obj_set_count(struct meta *m, int64_t id, int64_t count)
{
	if (count <= 0)
		return meta_exec_ino(m, S_OBJ_DELETE, (uint64_t)id,
				     "object delete");
	{
		STMT_OR_RETURN(s, m, S_OBJ_SET);

		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, count);
		return meta_step_done(m, s, "refcount repair");
	}
}

/* Each object row of @s (id, name, shard, refcount) to @fn, *@last the
 * last id; the callback's error, or the number of rows. */
static int object_rows(struct meta *m, sqlite3_stmt *s, int64_t *last,
		       int (*fn)(void *ctx, int64_t id, const char *name,
				 uint32_t shard, int64_t refcount),
		       void *ctx)
{
	int rc, ret = 0, n = 0;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		*last = sqlite3_column_int64(s, 0);
		ret = fn(ctx, *last, (const char *)sqlite3_column_text(s, 1),
			 (uint32_t)sqlite3_column_int64(s, 2),
			 sqlite3_column_int64(s, 3));
		if (ret)
			break;
		n++;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return meta_fail(m, rc, "object scan");
	return ret ? ret : n;
}

int meta_objects(struct meta *m,
		 int (*fn)(void *ctx, int64_t id, const char *name,
			   uint32_t shard, int64_t refcount),
		 void *ctx)
{
	STMT_OR_RETURN(s, m, S_OBJECTS);
	int64_t last;
	int rc = object_rows(m, s, &last, fn, ctx);

	return rc < 0 ? rc : 0;
}

int meta_objects_after(struct meta *m, int64_t after, unsigned limit,
		       int64_t *last,
		       int (*fn)(void *ctx, int64_t id, const char *name,
				 uint32_t shard, int64_t refcount),
		       void *ctx)
{
	STMT_OR_RETURN(s, m, S_OBJECTS_AFTER);

	sqlite3_bind_int64(s, 1, after);
	sqlite3_bind_int64(s, 2, limit);
	return object_rows(m, s, last, fn, ctx);
}

int meta_obj_referenced(struct meta *m, int64_t id)
{
	int64_t refs;
	int rc = meta_lookup_fault(m);

	if (!rc)
		rc = obj_refs(m, id, &refs);
	return rc ? rc : refs > 0;
}

int meta_object_shard(struct meta *m, int64_t obj, uint32_t *shard)
{
	int64_t v;
	int rc = meta_int_by_id(m, S_OBJ_SHARD, obj, &v, "object shard");

	if (!rc)
		*shard = (uint32_t)v;
	return rc;
}
