/* SPDX-License-Identifier: MIT */
/*
 * The object family of the metadata store: object rows, the block
 * references that name them and their counts (settled at commit), the
 * count checks by chunks and the object scans.
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
	O_BLOCKS_LOAD,
	O_BLOCK_GET,
	O_BLOCK_PUT,
	O_BLOCK_DEL,
	O_OBJ_FIND,
	O_OBJ_INSERT,
	O_OBJ_ADD,
	O_OBJ_GET,
	O_OBJ_REFS,
	O_OBJ_DELETE,
	O_OBJ_UNREF,
	O_OBJ_SET,
	O_OBJ_SHARD,
	O_DROP_LIST,
	O_DROP_DEL,
	O_COPY_BLOCKS,
	O_COPY_COUNTS,
	O_COPY_GONE,
	O_COPY_XATTRS,
	O_REFCOUNTS,
	O_CHECK,
	O_CHECK_END,
	O_OBJECTS,
	O_OBJECTS_AFTER,
	O_BLOCKS_LOAD_CHAIN,
	O_BLOCK_WHITEOUT,
	O_DROP_WHITEOUT,
	O_REFCOUNTS_CHAIN,
	O_COPY_BLOCKS_CHAIN,
	O_COPY_XATTRS_CHAIN,
	O_MERGE_LIST,
	O_MERGE_DEL,
	O_MERGE_WHITEOUTS,
	O_MERGE_RELABEL,
	O_EXCLUSIVE,
	O_VER_LIST,
	O_VER_DEL,
	O_VER_LIST_ALL,
	O_VER_DEL_ALL,
	O_COUNT
};

/*
 * Format 2 (docs/design.md, section 13.6): the block map is extents of
 * bytes; a fixed-size block idx is the extent of block_size bytes at
 * idx * block_size, which the statements work out from the store's
 * block size. An extent is written into the version the caller names
 * (struct meta_ver, bound from C).
 */
#define BS "(SELECT value FROM config WHERE key = 'block_size')"
#define OFF(idx) "(" idx " * " BS ")"
/* extent t of version ?1 that its child ?2 hides: ?2 has one at its
 * offset, or removed its inode (a whiteout of the inode); found from
 * ?2's rows (IN_C), ?1's by their keys */
#define HIDDEN_BY_C(t)                                                                                                  \
	t ".ino IN (SELECT c.ino FROM extents c WHERE " IN_C("c.ver") " UNION SELECT w.base FROM inodes w WHERE " IN_C( \
		"w.ver") " AND w.mode = 0) AND " t ".ver = ?1 AND (EXISTS "                                             \
			 "(SELECT 1 FROM extents c WHERE c.ino = " t ".ino "                                            \
			 "AND c.ver = ?2 AND c.off = " t ".off) OR EXISTS "                                             \
			 "(SELECT 1 FROM inodes w WHERE w.ver = ?2 AND "                                                \
			 "w.base = " t ".ino AND w.mode = 0))"
/* the extents of ?1 that the chain of ?4 shows, as ?2's in version ?3 */
#define COPY_SHOWN                                                          \
	"SELECT ?2, ?3, b.off, b.len, b.obj, b.shard FROM extents b WHERE " \
	"b.ino = ?1 AND " BLOCK_SHOWS("b", "?4")
/* the same of its xattrs: each name's nearest row, unless a whiteout */
#define COPY_XATTRS_SHOWN                                                   \
	"INSERT INTO xattrs(ino, name, ver, value) SELECT ?2, x.name, ?3, " \
	"x.value FROM xattrs x WHERE x.ino = ?1 AND " XATTR_SHOWS("x", "?4")

static const char *const object_text[O_COUNT] = {
	[O_BLOCKS_LOAD] = "SELECT b.off / " BS ", b.obj, b.shard, o.name, "
			  "o.size FROM extents b LEFT JOIN objects o "
			  "ON o.id = b.obj WHERE b.ino = ?1 AND " VER_IS(
				  "b.ver", "?2") " ORDER BY b.off",
	[O_BLOCK_GET] = "SELECT obj FROM extents WHERE ino = ?1 "
			"AND off = " OFF("?2") " AND " VER_IS("ver", "?3"),
	/* an update of an extent fires ghost_ref_mov (meta_db_schema.c) */
	[O_BLOCK_PUT] =
		"INSERT INTO extents(ino, ver, off, len, obj, shard) "
		"VALUES (?1, ?5, " OFF(
			"?2") ", " BS ", ?3, ?4) "
			      "ON CONFLICT(ino, ver, off) DO "
			      "UPDATE SET obj = excluded.obj, shard = excluded.shard",
	[O_BLOCK_DEL] = "DELETE FROM extents WHERE ino = ?1 "
			"AND off = " OFF("?2") " AND " VER_IS("ver", "?3"),
	[O_OBJ_FIND] = "SELECT id FROM objects WHERE name = ?1",
	/* an upsert: another mount of a shared store may insert the same
	 * object between the lookup and this */
	[O_OBJ_INSERT] = "INSERT INTO objects(name, shard, size, refcount, "
			 "gen) VALUES (?1, ?2, ?3, 1, coalesce(nullif(?4, 0), "
			 "(SELECT coalesce(max(seq), 0) + 1 FROM "
			 "sqlite_sequence WHERE name = 'objects'))) "
			 "ON CONFLICT(name) DO UPDATE "
			 "SET refcount = objects.refcount + 1 "
			 "RETURNING id, shard",
	[O_OBJ_ADD] = "UPDATE objects SET refcount = refcount + ?2 "
		      "WHERE id = ?1 RETURNING refcount, name, shard",
	[O_OBJ_GET] = "SELECT refcount, name, shard FROM objects WHERE id = ?1",
	/* through extents_obj: does any reference name the object? */
	[O_OBJ_REFS] = "SELECT count(*) FROM extents WHERE obj = ?1",
	[O_OBJ_DELETE] = "DELETE FROM objects WHERE id = ?1",
	[O_OBJ_UNREF] = "DELETE FROM extents WHERE obj = ?1",
	[O_OBJ_SET] = "UPDATE objects SET refcount = ?2 WHERE id = ?1",
	[O_OBJ_SHARD] = "SELECT shard FROM objects WHERE id = ?1",
	[O_DROP_LIST] = "SELECT obj, count(*) FROM extents WHERE ino = ?1 "
			"AND off >= " OFF("?2") " AND " VER_IS(
				"ver", "?3") " GROUP BY obj",
	[O_DROP_DEL] = "DELETE FROM extents WHERE ino = ?1 AND off >= " OFF(
		"?2") " AND " VER_IS("ver", "?3"),
	/* ?1's extents in version ?4 given to ?2 in version ?3 */
	[O_COPY_BLOCKS] =
		"INSERT INTO extents(ino, ver, off, len, obj, shard) "
		"SELECT ?2, ?3, off, len, obj, shard "
		"FROM extents WHERE ino = ?1 AND " VER_IS("ver", "?4"),
	/* the copy's counts from the copy itself (?1 the new inode): on
	 * PostgreSQL every statement reads the store anew */
	[O_COPY_COUNTS] =
		"UPDATE objects SET refcount = refcount + c.n FROM "
		"(SELECT obj, count(*) AS n FROM extents WHERE ino = ?1 "
		"GROUP BY obj) AS c WHERE objects.id = c.obj",
	/* after the counts: the references of ?1 to an object whose row
	 * another node deleted meanwhile (every row still there is held by
	 * the update until the commit) */
	[O_COPY_GONE] =
		"SELECT count(*) FROM extents b WHERE b.ino = ?1 AND "
		"NOT EXISTS (SELECT 1 FROM objects o WHERE o.id = b.obj)",
	[O_COPY_XATTRS] = "INSERT INTO xattrs(ino, name, ver, value) "
			  "SELECT ?2, name, ?3, value FROM xattrs WHERE ino = "
			  "?1 AND " VER_IS("ver", "?4"),
	[O_REFCOUNTS] =
		"SELECT coalesce(o.refcount, 0) FROM extents b "
		"LEFT JOIN objects o ON o.id = b.obj "
		"WHERE b.ino = ?1 AND " VER_IS("b.ver", "?2") " ORDER BY b.off",
	/* the ids in [?1, ?2]: a count per object and the references to
	 * no object, through extents_obj */
	[O_CHECK] =
		"SELECT o.id, o.name, o.shard, o.refcount, "
		"(SELECT count(*) FROM extents b WHERE b.obj = o.id), o.size "
		"FROM objects o WHERE o.id BETWEEN ?1 AND ?2 "
		"UNION ALL SELECT 0, NULL, min(b.shard), 0, count(*), 0 "
		"FROM extents b WHERE b.obj BETWEEN ?1 AND ?2 AND b.obj <> 0 "
		"AND NOT EXISTS "
		"(SELECT 1 FROM objects WHERE id = b.obj) GROUP BY b.obj",
	[O_CHECK_END] = "SELECT id FROM objects WHERE id >= ?1 ORDER BY id "
			"LIMIT 1 OFFSET ?2",
	[O_OBJECTS] = "SELECT id, name, shard, refcount FROM objects",
	[O_OBJECTS_AFTER] = "SELECT id, name, shard, refcount FROM objects "
			    "WHERE id > ?1 ORDER BY id LIMIT ?2",
	/* the blocks a version shows through its chain, as O_BLOCKS_LOAD */
	[O_BLOCKS_LOAD_CHAIN] =
		"SELECT b.off / " BS ", b.obj, b.shard, o.name, o.size FROM "
		"extents b LEFT JOIN objects o ON o.id = b.obj WHERE b.ino = "
		"?1 AND " BLOCK_SHOWS("b", "?2") " ORDER BY b.off",
	/* after the leaf's own extent at block ?2 went: a whiteout in leaf
	 * ?3 where an ancestor's block would show */
	[O_BLOCK_WHITEOUT] =
		"INSERT INTO extents(ino, ver, off, len, obj, shard) SELECT "
		"n.ino, CAST(?3 AS bigint), n.off, n.len, 0, 0 FROM (SELECT "
		"ino, off, len, obj FROM extents WHERE ino = ?1 AND off = " OFF(
			"?2") " AND " ON_CHAIN("extents.ver",
					       "?3") " ORDER BY ver DESC "
						     "LIMIT 1) AS n WHERE "
						     "n.obj <> 0",
	/* after the leaf's own extents from block ?2 on went: whiteouts
	 * where an ancestor's blocks would show */
	[O_DROP_WHITEOUT] =
		"INSERT INTO extents(ino, ver, off, len, obj, shard) SELECT "
		"b.ino, CAST(?3 AS bigint), b.off, b.len, 0, 0 FROM extents b "
		"WHERE b.ino = ?1 AND b.off >= " OFF(
			"?2") " AND " BLOCK_SHOWS("b", "?3"),
	[O_REFCOUNTS_CHAIN] =
		"SELECT coalesce(o.refcount, 0) FROM extents b LEFT JOIN "
		"objects o ON o.id = b.obj WHERE b.ino = ?1 AND " BLOCK_SHOWS(
			"b", "?2") " ORDER BY b.off",
	/* the copies through the chain of ?4: what it shows */
	[O_COPY_BLOCKS_CHAIN] = "INSERT INTO extents(ino, ver, off, len, obj, "
				"shard) " COPY_SHOWN,
	[O_COPY_XATTRS_CHAIN] = COPY_XATTRS_SHOWN,
	/* meta_extents_merge(): version ?1's extents that its child ?2
	 * replaces, their objects counted ... */
	[O_MERGE_LIST] =
		"SELECT e.obj, count(*) FROM extents e WHERE " HIDDEN_BY_C(
			"e") " AND e.obj <> 0 GROUP BY e.obj",
	[O_MERGE_DEL] = "DELETE FROM extents WHERE " HIDDEN_BY_C("extents"),
	/* ... ?2's holes where no ancestor of ?1 has a block ... */
	[O_MERGE_WHITEOUTS] =
		"DELETE FROM extents WHERE ino IN (SELECT c.ino FROM extents c "
		"WHERE " IN_C("c.ver") " AND c.obj = 0) AND ver = ?2 AND obj = "
				       "0 AND NOT EXISTS (SELECT 1 FROM "
				       "extents a WHERE a.ino = extents.ino "
				       "AND a.off = extents.off AND a.ver IN "
				       "(SELECT anc FROM ver_anc WHERE ver = "
				       "?1 AND anc <> ?1))",
	/* ... and the rest of ?2 relabelled ?1 */
	[O_MERGE_RELABEL] = "UPDATE extents SET ver = ?1 WHERE " IN_C("ver"),
	/* the bytes only version ?1 holds: of the objects all of whose
	 * references are its extents that its child ?2 replaces */
	/* ... and of those no pin keeps */
	[O_EXCLUSIVE] =
		"SELECT coalesce(sum(o.size), 0), coalesce(sum(CASE "
		"WHEN NOT EXISTS (SELECT 1 FROM pin_objects p WHERE "
		"p.name = o.name) THEN o.size ELSE 0 END), 0) FROM "
		"(SELECT e.obj, count(*) AS n FROM extents e WHERE " HIDDEN_BY_C(
			"e") " AND e.obj <> 0 GROUP BY e.obj) AS d "
			     "JOIN objects o ON o.id = d.obj WHERE "
			     "d.n >= o.refcount",
	/* meta_extents_drop_ver(): the extents of version ?1, one made by a
	 * freeze (the partial index), their objects counted, then gone */
	[O_VER_LIST] =
		"SELECT obj, count(*) FROM extents WHERE ver >= " META_LATER_LIT
		" AND ver = ?1 AND obj <> 0 GROUP BY obj",
	[O_VER_DEL] = "DELETE FROM extents WHERE ver >= " META_LATER_LIT
		      " AND ver = ?1",
	/* the same of a namespace's first version (a scan) */
	[O_VER_LIST_ALL] = "SELECT obj, count(*) FROM extents WHERE ver = ?1 "
			   "AND obj <> 0 GROUP BY obj",
	[O_VER_DEL_ALL] = "DELETE FROM extents WHERE ver = ?1",
};

/* PostgreSQL: the copy's size and allocation from the source's row of
 * key k, in the snapshot its extents were read in */
#define COPY_SIZE(k)                                                      \
	"UPDATE inodes SET size = s.size, alloc = s.alloc FROM inodes s " \
	"WHERE inodes.ino = ?2 AND s.ino = " k                            \
	" RETURNING inodes.size, inodes.alloc"

static const char *const object_pg[O_COUNT] = {
	/* a fresh generation unless the flush shipped to one it took */
	[O_OBJ_INSERT] = "INSERT INTO objects(name, shard, size, refcount, "
			 "gen) VALUES (?1, ?2, ?3, 1, coalesce(nullif(?4::"
			 "bigint, 0), nextval('object_gen'))) "
			 "ON CONFLICT(name) DO UPDATE "
			 "SET refcount = objects.refcount + 1 "
			 "RETURNING id, shard",
	/* a shared store: the inode's row with its blocks (one row of NULLs
	 * if it has none), so that an inode another node freed is told
	 * from one without blocks: no row at all */
	/* the copy gives ?2 the size and allocation of ?1 read in the
	 * snapshot its blocks are read in (one statement): another node's
	 * commit between two statements gave a copy of its new blocks the
	 * old size, zeros past the new end */
	[O_COPY_BLOCKS] =
		"WITH c AS (INSERT INTO extents(ino, ver, off, len, "
		"obj, shard) SELECT ?2, ?3, off, len, obj, shard "
		"FROM extents WHERE ino = ?1 AND ver = ?4) " COPY_SIZE("?1"),
	[O_COPY_BLOCKS_CHAIN] =
		"WITH c AS (INSERT INTO extents(ino, ver, off, len, obj, "
		"shard) " COPY_SHOWN ") " COPY_SIZE(INODE_KEY("?1", "?4")),
	/* the rows deleted, and counted, by one statement: two nodes that
	 * free one inode at once (a mount's cleanup of the unlinked files
	 * its last mount left open, and another node's of an expired
	 * session's) each listed the rows, then both took their counts
	 * off, and one deleted them: the objects under-counted (the fault
	 * harness, a remount under the skew nemesis). The second DELETE
	 * waits for the first's row locks, then finds the rows gone and
	 * returns none */
	[O_DROP_LIST] = "WITH d AS (DELETE FROM extents WHERE ino = ?1 AND "
			"off >= " OFF("?2") " AND " VER_IS(
				"ver", "?3") " RETURNING obj) SELECT obj, "
					     "count(*) FROM d GROUP BY obj",
	/* with the inode's size and allocation in the same snapshot */
	[O_BLOCKS_LOAD_CHAIN] =
		"SELECT b.off / " BS ", b.obj, b.shard, o.name, "
		"o.size, i.size, i.alloc FROM inodes i LEFT JOIN extents b ON "
		"b.ino = ?1 AND " BLOCK_SHOWS(
			"b", "?2") " LEFT JOIN objects o ON o.id = b.obj WHERE "
				   "i.ino = " INODE_KEY("?1", "?2") " AND "
								    "i.mode <> "
								    "0 ORDER "
								    "BY b.off",
	[O_BLOCKS_LOAD] =
		"SELECT b.off / " BS ", b.obj, b.shard, o.name, "
		"o.size, i.size, i.alloc "
		"FROM inodes i LEFT JOIN extents b ON b.ino = i.ino "
		"AND " VER_IS(
			"b.ver",
			"?2") " LEFT JOIN objects o "
			      "ON o.id = b.obj WHERE i.ino = ?1 AND " VER_IS(
				      "i.ver", "?2") " ORDER BY b.off",
};

const struct meta_sql meta_object_sql = { META_OBJECT, O_COUNT, object_text,
					  object_pg };

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

/* Statement @id with integer parameters ?1 = @a and ?2 = @b. */
static int stmt_pair(struct meta *m, int id, int64_t a, int64_t b,
		     struct meta_st **s)
{
	return meta_stmt_pair(m, &meta_object_sql, id, a, b, s);
}

/* Run statement @id with integer parameters ?1 = @a and ?2 = @b. */
static int exec_pair(struct meta *m, int id, int64_t a, int64_t b,
		     const char *what)
{
	struct meta_st *s;
	int rc = stmt_pair(m, id, a, b, &s);

	return rc ? rc : meta_run(m, s, what);
}

/* The first column of statement @id's row for integer ?1 = @key. */
static int int_by_id(struct meta *m, int id, int64_t key, int64_t *val,
		     const char *what)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_object_sql, id, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, key);
	return meta_int(m, s, val, what);
}

int meta_blocks_load(struct meta *m, const struct meta_ver *ver, uint64_t ino,
		     struct meta_bref **out, size_t *n)
{
	return meta_blocks_load_at(m, ver, ino, out, n, NULL);
}

int meta_blocks_load_at(struct meta *m, const struct meta_ver *ver,
			uint64_t ino, struct meta_bref **out, size_t *n,
			struct meta_map_at *at)
{
	struct meta_st *s;
	struct meta_bref *v = NULL;
	size_t cnt = 0, cap = 0, rows = 0;
	int rc = meta_stmt_ver(m, &meta_object_sql,
			       meta_chained(ver) ? O_BLOCKS_LOAD_CHAIN
						 : O_BLOCKS_LOAD,
			       ino, ver, 2, &s);

	if (at)
		at->known = false;
	if (rc)
		return rc;
	while ((rc = meta_step(m, s, "block map read")) > 0) {
		struct meta_bref *b;
		const char *name;

		rows++;
		if (at && meta_shared(m)) {
			at->known = true;
			at->size = (uint64_t)meta_col_int(s, 5);
			at->alloc = (uint64_t)meta_col_int(s, 6);
		}
		if (meta_col_int(s, 1) == 0)
			continue; /* the inode's row alone: no block */
		if (array_reserve(&v, &cap, cnt + 1, sizeof(*v))) {
			meta_reset(s);
			rc = -ENOMEM;
			break;
		}
		b = &v[cnt++];
		b->idx = (uint64_t)meta_col_int(s, 0);
		b->obj = meta_col_int(s, 1);
		b->shard = (uint32_t)meta_col_int(s, 2);
		name = meta_col_text(s, 3);
		b->size = (uint32_t)meta_col_int(s, 4);
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
	if (!rc && !rows && meta_shared(m))
		rc = -ENOENT; /* no inode row */
	if (rc) {
		free(v);
		return rc;
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
	struct meta_st *s;
	int64_t count;
	int rc = stmt_pair(m, O_OBJ_ADD, id, delta, &s);

	if (rc)
		return rc;
	/* RETURNING statements finish their work on the first step. */
	rc = meta_int(m, s, &count, "refcount update");
	if (rc == -ENOENT && delta > 0 && meta_shared(m)) {
		/* another node deleted the row after this transaction found
		 * it (its last reference went): the reference would name
		 * an object that is gone. The operation runs again, and
		 * meets no row: a new object */
		log_msg(LOG_INFO,
			"object %" PRId64 " went while a reference to it "
			"was added: the operation runs again",
			id);
		return -EDEADLK;
	}
	if (rc == -ENOENT) {
		log_msg(LOG_WARNING,
			"refcount change %+" PRId64 " of unknown "
			"object %" PRId64 ": ignored, nothing deleted",
			delta, id);
		return 0;
	}
	if (rc || count > 0)
		return rc;
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

/* The number of block references to object @id (through extents_obj). */
static int obj_refs(struct meta *m, int64_t id, int64_t *refs)
{
	return int_by_id(m, O_OBJ_REFS, id, refs, "reference count");
}

/* The count, name and shard of object @id: 0, -ENOENT or -errno. */
static int obj_get(struct meta *m, int64_t id, int64_t *count, char *name,
		   uint32_t *shard)
{
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_object_sql, O_OBJ_GET, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, id);
	rc = meta_step(m, s, "object read");
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	*count = meta_col_int(s, 0);
	snprintf(name, OBJNAME_MAX, "%s", (const char *)meta_col_text(s, 1));
	*shard = (uint32_t)meta_col_int(s, 2);
	meta_reset(s);
	return 0;
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

	if (m->nzero)
		qsort(m->zero, m->nzero, sizeof(*m->zero), cmp_id);
	for (i = 0; i < m->nzero && !rc; i++) {
		char name[OBJNAME_MAX];
		int64_t id = m->zero[i], count, refs;
		uint32_t shard;

		if (i && m->zero[i - 1] == id)
			continue;
		rc = obj_get(m, id, &count, name, &shard);
		if (rc == -ENOENT) {
			rc = 0;
			continue; /* deleted meanwhile */
		}
		if (rc)
			return rc;
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
		rc = meta_run_int(m, &meta_object_sql, O_OBJ_DELETE, id,
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
	struct meta_st *s;
	int rc = meta_stmt(m, &meta_object_sql, O_OBJ_FIND, &s);

	if (rc)
		return rc;
	meta_bind_text(s, 1, name);
	return meta_int(m, s, id, "object lookup");
}

int meta_obj_exists(struct meta *m, const char *name)
{
	int64_t id;
	int rc = obj_find(m, name, &id);

	if (rc == -ENOENT)
		return 0;
	return rc ? rc : 1;
}

int meta_block_set(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   uint64_t idx, const char *name, uint32_t shard,
		   uint32_t size, struct meta_bref *out)
{
	return meta_block_set_gen(m, v, ino, idx, name, shard, size, 0, out);
}

int meta_block_set_gen(struct meta *m, const struct meta_ver *v, uint64_t ino,
		       uint64_t idx, const char *name, uint32_t shard,
		       uint32_t size, int64_t gen, struct meta_bref *out)
{
	struct meta_st *s;
	int64_t old = 0, id = 0, ver = 0;
	bool had;
	int rc = meta_ver_id(m, v, ino, &ver);

	if (!rc)
		rc = stmt_pair(m, O_BLOCK_GET, (int64_t)ino, (int64_t)idx, &s);
	if (!rc) {
		meta_bind_int(s, 3, ver);
		rc = meta_int(m, s, &old, "block read");
	}
	if (rc && rc != -ENOENT)
		return rc;
	had = rc == 0;
	rc = 0;
	if (name) {
		rc = obj_find(m, name, &id);
		if (rc == 0) {
			int64_t where;

			/* a reference names where the object is now */
			rc = int_by_id(m, O_OBJ_SHARD, id, &where,
				       "object shard");
			if (!rc)
				shard = (uint32_t)where;
		}
		if (rc == 0 && !(had && old == id)) {
			rc = obj_add(m, id, 1);
		} else if (rc == -ENOENT) {
			rc = meta_stmt(m, &meta_object_sql, O_OBJ_INSERT, &s);
			if (rc)
				return rc;
			meta_bind_text(s, 1, name);
			meta_bind_int(s, 2, shard);
			meta_bind_int(s, 3, size);
			meta_bind_int(s, 4, gen);
			rc = meta_step(m, s, "object insert");
			if (rc == 1) {
				id = meta_col_int(s, 0);
				shard = (uint32_t)meta_col_int(s, 1);
				meta_reset(s);
				rc = 0;
			} else if (rc == 0) {
				rc = meta_no_row("object insert");
			}
		}
		if (!rc)
			rc = stmt_pair(m, O_BLOCK_PUT, (int64_t)ino,
				       (int64_t)idx, &s);
		if (rc)
			return rc;
		meta_bind_int(s, 3, id);
		meta_bind_int(s, 4, shard);
		meta_bind_int(s, 5, ver);
		rc = meta_run(m, s, "block write");
	} else if (had || meta_chained(v)) {
		/* a chain: the leaf's own extent, then a whiteout where an
		 * ancestor's would show */
		for (int i = had ? 0 : 1; i < (meta_chained(v) ? 2 : 1) && !rc;
		     i++) {
			rc = stmt_pair(m, i ? O_BLOCK_WHITEOUT : O_BLOCK_DEL,
				       (int64_t)ino, (int64_t)idx, &s);
			if (rc)
				return rc;
			meta_bind_int(s, 3, ver);
			rc = meta_run(m, s, "block delete");
		}
	}
	if (rc)
		return rc;
	/* a whiteout (object 0) names nothing */
	if (had && old != id && old != 0)
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

/* Each row (object, references) of bound statement @s: the object's
 * count falls by that many (those at zero settle at the commit); *@n
 * receives the number of rows. Whiteouts (object 0) name nothing. */
static int counts_fall(struct meta *m, struct meta_st *s, const char *what,
		       size_t *n)
{
	struct {
		int64_t obj, n;
	} *v = NULL;
	size_t cnt = 0, cap = 0, i;
	int rc;

	while ((rc = meta_step(m, s, what)) > 0) {
		if (array_reserve(&v, &cap, cnt + 1, sizeof(*v))) {
			meta_reset(s);
			rc = -ENOMEM;
			break;
		}
		v[cnt].obj = meta_col_int(s, 0);
		v[cnt].n = meta_col_int(s, 1);
		cnt++;
	}
	for (i = 0; i < cnt && !rc; i++)
		if (v[i].obj != 0)
			rc = obj_add(m, v[i].obj, -v[i].n);
	free(v);
	*n = cnt;
	return rc;
}

int meta_blocks_drop(struct meta *m, const struct meta_ver *ver, uint64_t ino,
		     uint64_t from)
{
	struct meta_st *s;
	size_t cnt = 0;
	int64_t vid;
	int rc = meta_ver_id(m, ver, ino, &vid);

	if (!rc)
		rc = stmt_pair(m, O_DROP_LIST, (int64_t)ino, (int64_t)from, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 3, vid);
	rc = counts_fall(m, s, "block scan", &cnt);
	/* one writer, no row found in this transaction: nothing to delete
	 * (an empty file's or a directory's removal: one statement, and
	 * one note in the intent log, less); PostgreSQL: deleted above.
	 * With the next statement: its only answer is success */
	if (!rc && !meta_shared(m) && cnt) {
		rc = stmt_pair(m, O_DROP_DEL, (int64_t)ino, (int64_t)from, &s);
		if (!rc) {
			meta_bind_int(s, 3, vid);
			rc = meta_run_later(m, s, "block delete");
		}
	}
	/* a chain: whiteouts where an ancestor's blocks would show, once
	 * the leaf's own are gone */
	if (rc || !meta_chained(ver))
		return rc;
	rc = stmt_pair(m, O_DROP_WHITEOUT, (int64_t)ino, (int64_t)from, &s);
	if (rc)
		return rc;
	meta_bind_int(s, 3, vid);
	return meta_run(m, s, "block whiteout");
}

int meta_refs_gone(struct meta *m, const struct meta_sql *t, int id, int64_t a)
{
	struct meta_st *s;
	int64_t gone = 0;
	int rc;

	if (!meta_shared(m))
		return 0; /* one writer: no row goes under a transaction */
	rc = meta_stmt(m, t, id, &s);
	if (rc)
		return rc;
	if (meta_param_count(s) >= 1)
		meta_bind_int(s, 1, a);
	rc = meta_int(m, s, &gone, "reference check");
	if (rc || !gone)
		return rc;
	log_msg(LOG_INFO,
		"%" PRId64 " copied reference(s) name objects another node "
		"deleted meanwhile: the operation runs again",
		gone);
	return -EDEADLK;
}

int meta_blocks_copy(struct meta *m, const struct meta_ver *sv,
		     const struct meta_ver *v, uint64_t src, uint64_t dst)
{
	return meta_blocks_copy_at(m, sv, v, src, dst, NULL);
}

/* Statement @id of a copy (?1 @src, ?2 @dst, ?3 @ver, ?4 @sver). */
static int copy_stmt(struct meta *m, int id, uint64_t src, uint64_t dst,
		     int64_t ver, int64_t sver, struct meta_st **s)
{
	int rc = stmt_pair(m, id, (int64_t)src, (int64_t)dst, s);

	if (!rc) {
		meta_bind_int(*s, 3, ver);
		meta_bind_int(*s, 4, sver);
	}
	return rc;
}

int meta_blocks_copy_at(struct meta *m, const struct meta_ver *sv,
			const struct meta_ver *v, uint64_t src, uint64_t dst,
			struct meta_map_at *at)
{
	bool chain = meta_chained(sv);
	struct meta_st *s;
	int64_t ver, sver;
	int rc = meta_ver_id(m, v, dst, &ver);

	if (at)
		at->known = false;
	if (!rc)
		rc = meta_ver_id(m, sv, src, &sver);
	if (!rc)
		rc = copy_stmt(m, chain ? O_COPY_BLOCKS_CHAIN : O_COPY_BLOCKS,
			       src, dst, ver, sver, &s);
	if (rc)
		return rc;
	/* a shared store's copy returns the size it gave @dst */
	while ((rc = meta_step(m, s, "block copy")) > 0) {
		if (at) {
			at->known = true;
			at->size = (uint64_t)meta_col_int(s, 0);
			at->alloc = (uint64_t)meta_col_int(s, 1);
		}
	}
	if (!rc)
		rc = meta_run_int(m, &meta_object_sql, O_COPY_COUNTS,
				  (int64_t)dst, "refcount update");
	if (!rc)
		rc = meta_refs_gone(m, &meta_object_sql, O_COPY_GONE,
				    (int64_t)dst);
	if (!rc)
		rc = copy_stmt(m, chain ? O_COPY_XATTRS_CHAIN : O_COPY_XATTRS,
			       src, dst, ver, sver, &s);
	return rc ? rc : meta_run(m, s, "xattr copy");
}

int meta_extents_merge(struct meta *m, int64_t ver, int64_t child)
{
	static const int ids[] = { O_MERGE_DEL, O_MERGE_WHITEOUTS,
				   O_MERGE_RELABEL };
	struct meta_st *s;
	size_t n, i;
	int rc = stmt_pair(m, O_MERGE_LIST, ver, child, &s);

	/* the replaced references' counts fall: those at zero are settled
	 * at the commit, by the deletion rule */
	if (!rc)
		rc = counts_fall(m, s, "version merge", &n);
	for (i = 0; !rc && i < sizeof(ids) / sizeof(*ids); i++)
		rc = exec_pair(m, ids[i], ver, child, "version merge");
	return rc;
}

int meta_extents_drop_ver(struct meta *m, int64_t ver)
{
	struct meta_st *s;
	size_t n;
	bool first = ver < META_VER_CHILD_MIN;
	int rc = meta_stmt(m, &meta_object_sql,
			   first ? O_VER_LIST_ALL : O_VER_LIST, &s);

	if (rc)
		return rc;
	meta_bind_int(s, 1, ver);
	/* the counts fall: objects at zero go by the deletion rule */
	rc = counts_fall(m, s, "version drop", &n);
	return rc ? rc
		  : meta_run_int(m, &meta_object_sql,
				 first ? O_VER_DEL_ALL : O_VER_DEL, ver,
				 "version drop");
}

int meta_extents_exclusive(struct meta *m, int64_t ver, int64_t child,
			   uint64_t bytes[2])
{
	struct meta_st *s;
	int64_t v[2];
	int rc = stmt_pair(m, O_EXCLUSIVE, ver, child, &s);

	if (!rc)
		rc = meta_ints(m, s, "exclusive bytes", 2, v);
	if (rc)
		return rc == -ENOENT ? meta_no_row("exclusive bytes") : rc;
	bytes[0] = (uint64_t)v[0];
	bytes[1] = (uint64_t)v[1];
	return 0;
}

int meta_refcounts(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   uint64_t **counts, size_t *n)
{
	struct meta_st *s;
	int rc =
		meta_stmt_ver(m, &meta_object_sql,
			      meta_chained(v) ? O_REFCOUNTS_CHAIN : O_REFCOUNTS,
			      ino, v, 2, &s);

	if (rc)
		return rc;
	return meta_int_rows(m, s, "refcount read", counts, n);
}

/* The check of the ids in [@from, @to], in one statement: one snapshot. */
static int check_range(struct meta *m, int64_t from, int64_t to,
		       int (*fn)(void *ctx, const struct meta_check *c),
		       void *ctx)
{
	struct meta_st *s;
	struct meta_check c;
	int rc = stmt_pair(m, O_CHECK, from, to, &s), ret = 0;

	if (rc)
		return rc;
	while (!ret && (rc = meta_step(m, s, "refcount check")) > 0) {
		const char *name = meta_col_text(s, 1);

		c.id = meta_col_int(s, 0);
		snprintf(c.name, sizeof(c.name), "%s",
			 name ? (const char *)name : "");
		c.shard = (uint32_t)meta_col_int(s, 2);
		c.stored = meta_col_int(s, 3);
		c.truth = meta_col_int(s, 4);
		c.size = (uint64_t)meta_col_int(s, 5);
		ret = fn(ctx, &c);
	}
	meta_reset(s);
	return ret ? ret : rc;
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
	struct meta_st *s;
	int64_t to = INT64_MAX, end;
	int rc;

	assert(limit > 0);
	rc = stmt_pair(m, O_CHECK_END, from, limit, &s);
	if (!rc)
		rc = meta_int(m, s, &end, "refcount check");
	if (!rc)
		to = end - 1;
	else if (rc != -ENOENT)
		return rc;
	rc = check_range(m, from, to, fn, ctx);
	if (rc)
		return rc;
	if (to == INT64_MAX)
		return 0;
	*next = to + 1;
	return 1;
}

int meta_obj_drop(struct meta *m, int64_t id)
{
	int rc = meta_run_int(m, &meta_object_sql, O_OBJ_UNREF, id,
			      "reference delete");

	if (!rc)
		rc = meta_run_int(m, &meta_object_sql, O_OBJ_DELETE, id,
				  "object delete");
	return rc;
}

int meta_obj_set_count(struct meta *m, int64_t id, int64_t count)
{
	if (count <= 0)
		return meta_run_int(m, &meta_object_sql, O_OBJ_DELETE, id,
				    "object delete");
	return exec_pair(m, O_OBJ_SET, id, count, "refcount repair");
}

/* Each object row of @s (id, name, shard, refcount) to @fn, *@last the
 * last id; the callback's error, or the number of rows. */
static int object_rows(struct meta *m, struct meta_st *s, int64_t *last,
		       int (*fn)(void *ctx, int64_t id, const char *name,
				 uint32_t shard, int64_t refcount),
		       void *ctx)
{
	int rc, ret = 0, n = 0;

	while (!ret && (rc = meta_step(m, s, "object scan")) > 0) {
		*last = meta_col_int(s, 0);
		ret = fn(ctx, *last, (const char *)meta_col_text(s, 1),
			 (uint32_t)meta_col_int(s, 2), meta_col_int(s, 3));
		if (!ret)
			n++;
	}
	meta_reset(s);
	if (ret)
		return ret;
	return rc ? rc : n;
}

int meta_objects(struct meta *m,
		 int (*fn)(void *ctx, int64_t id, const char *name,
			   uint32_t shard, int64_t refcount),
		 void *ctx)
{
	struct meta_st *s;
	int64_t last;
	int rc = meta_stmt(m, &meta_object_sql, O_OBJECTS, &s);

	if (!rc)
		rc = object_rows(m, s, &last, fn, ctx);
	return rc < 0 ? rc : 0;
}

int meta_objects_after(struct meta *m, int64_t after, unsigned limit,
		       int64_t *last,
		       int (*fn)(void *ctx, int64_t id, const char *name,
				 uint32_t shard, int64_t refcount),
		       void *ctx)
{
	struct meta_st *s;
	int rc = stmt_pair(m, O_OBJECTS_AFTER, after, limit, &s);

	return rc ? rc : object_rows(m, s, last, fn, ctx);
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
	int rc = int_by_id(m, O_OBJ_SHARD, obj, &v, "object shard");

	if (!rc)
		*shard = (uint32_t)v;
	return rc;
}
