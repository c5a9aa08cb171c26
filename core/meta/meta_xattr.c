/* SPDX-License-Identifier: MIT */
/*
 * The xattrs family of the metadata store: an inode's extended
 * attributes, keyed (ino, name, ver), read and written in the version a
 * call names, or through its chain (format 4, docs/design.md 13.7: the
 * nearest row, a NULL value a whiteout).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "core/meta/meta_int.h"
#include "core/util/array.h"

enum {
	X_XATTR_GET,
	X_XATTR_INSERT,
	X_XATTR_REPLACE,
	X_XATTR_UPSERT,
	X_XATTR_DEL,
	X_XATTR_LIST,
	X_XATTR_GET_CHAIN,
	X_XATTR_LIST_CHAIN,
	X_XATTR_CREATE_LEAF,
	X_XATTR_WHITEOUT,
	X_COUNT
};

/* the nearest row of xattr (?1, ?2) on the chain of v, a whiteout (NULL)
 * too */
#define XATTR_NEAREST(v)                                                     \
	"(SELECT ino, name, value FROM xattrs WHERE ino = ?1 AND name = ?2 " \
	"AND " ON_CHAIN("xattrs.ver", v) " ORDER BY ver DESC LIMIT 1) AS x"

static const char *const xattr_text[X_COUNT] = {
	[X_XATTR_GET] = "SELECT value FROM xattrs WHERE ino = ?1 AND name = ?2 "
			"AND " VER_IS("ver", "?3"),
	[X_XATTR_INSERT] = "INSERT INTO xattrs(ino, name, ver, value) "
			   "VALUES (?1, ?2, ?4, ?3) ON CONFLICT DO NOTHING",
	[X_XATTR_REPLACE] = "UPDATE xattrs SET value = ?3 WHERE ino = ?1 AND "
			    "name = ?2 AND " VER_IS("ver", "?4"),
	[X_XATTR_UPSERT] =
		"INSERT INTO xattrs(ino, name, ver, value) "
		"VALUES (?1, ?2, ?4, ?3) ON CONFLICT(ino, name, ver) "
		"DO UPDATE SET value = excluded.value",
	[X_XATTR_DEL] =
		"DELETE FROM xattrs WHERE ino = ?1 AND name = ?2 AND " VER_IS(
			"ver", "?3"),
	[X_XATTR_LIST] = "SELECT name FROM xattrs WHERE ino = ?1 AND " VER_IS(
		"ver", "?2") " ORDER BY name",
	/* xattrs through a chain (?1 inode, ?2 name) */
	[X_XATTR_GET_CHAIN] = "SELECT x.value FROM " XATTR_NEAREST(
		"?3") " WHERE x.value IS NOT NULL",
	[X_XATTR_LIST_CHAIN] =
		"SELECT x.name FROM xattrs x WHERE x.ino = ?1 AND " XATTR_SHOWS(
			"x", "?2") " ORDER BY x.name",
	/* the leaf's own row of a name no version above shows */
	[X_XATTR_CREATE_LEAF] =
		"INSERT INTO xattrs(ino, name, ver, value) VALUES (?1, ?2, "
		"?4, ?3) ON CONFLICT(ino, name, ver) DO UPDATE SET value = "
		"excluded.value WHERE xattrs.value IS NULL",
	[X_XATTR_WHITEOUT] =
		"INSERT INTO xattrs(ino, name, ver, value) SELECT x.ino, "
		"x.name, CAST(?3 AS bigint), NULL FROM " XATTR_NEAREST(
			"?3") " WHERE x.value IS NOT NULL",
};

const struct meta_sql meta_xattr_sql = { META_XATTR, X_COUNT, xattr_text,
					 NULL };

/* The statement that reads through @v's chain for @id, if @v has one
 * (the same parameters), else @id. */
static int x_chain(const struct meta_ver *v, int id)
{
	if (!meta_chained(v))
		return id;
	return id == X_XATTR_GET    ? X_XATTR_GET_CHAIN
	       : id == X_XATTR_LIST ? X_XATTR_LIST_CHAIN
				    : id;
}

int meta_xattr_get(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   const char *name, void **out, size_t *len)
{
	char *val;
	int rc = meta_blob_get(m, &meta_xattr_sql, x_chain(v, X_XATTR_GET), ino,
			       name, v, -ENODATA, "xattr read", &val, len);
	if (!rc)
		*out = val;
	return rc;
}

/* Format 4, a chain: 0 if xattr @name of @ino shows through @v's chain,
 * -ENODATA if not, or -errno. */
static int xattr_shows(struct meta *m, const struct meta_ver *v, uint64_t ino,
		       const char *name)
{
	char *val;
	size_t len;
	int rc = meta_blob_get(m, &meta_xattr_sql, X_XATTR_GET_CHAIN, ino, name,
			       v, -ENODATA, "xattr read", &val, &len);

	if (!rc)
		free(val);
	return rc;
}

int meta_xattr_set(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   const char *name, const void *val, size_t len, int flags)
{
	int id = (flags & XATTR_CREATE)	   ? X_XATTR_INSERT
		 : (flags & XATTR_REPLACE) ? X_XATTR_REPLACE
					   : X_XATTR_UPSERT;
	struct meta_st *s;
	int rc;

	/* a chain: what the name shows decides, the leaf's row is
	 * written (over its whiteout) */
	if (meta_chained(v) && id != X_XATTR_UPSERT) {
		rc = xattr_shows(m, v, ino, name);
		if (id == X_XATTR_INSERT) {
			if (rc != -ENODATA)
				return rc ? rc : -EEXIST;
			id = X_XATTR_CREATE_LEAF;
		} else if (rc) {
			return rc;
		} else {
			id = X_XATTR_UPSERT;
		}
	}
	rc = meta_stmt_key_name(m, &meta_xattr_sql, id, ino, name, v, 4, &s);
	if (rc)
		return rc;
	meta_bind_blob(s, 3, len ? val : "", len);
	rc = meta_run(m, s, "xattr write");
	if (!rc && (id == X_XATTR_INSERT || id == X_XATTR_CREATE_LEAF) &&
	    meta_changes(m) == 0)
		return -EEXIST;
	if (!rc && id == X_XATTR_REPLACE && meta_changes(m) == 0)
		return -ENODATA;
	return rc;
}

int meta_xattr_remove(struct meta *m, const struct meta_ver *v, uint64_t ino,
		      const char *name)
{
	struct meta_st *s;
	int rc;

	/* a chain: the leaf's row removed, a whiteout where an ancestor's
	 * would show */
	if (meta_chained(v)) {
		rc = xattr_shows(m, v, ino, name);
		if (!rc)
			rc = meta_key_name_run(m, &meta_xattr_sql, X_XATTR_DEL,
					       v, ino, name, "xattr delete");
		if (!rc)
			rc = meta_key_name_run(m, &meta_xattr_sql,
					       X_XATTR_WHITEOUT, v, ino, name,
					       "xattr whiteout");
		return rc;
	}
	rc = meta_stmt_key_name(m, &meta_xattr_sql, X_XATTR_DEL, ino, name, v,
				3, &s);
	if (rc)
		return rc;
	rc = meta_run(m, s, "xattr delete");
	if (!rc && meta_changes(m) == 0)
		return -ENODATA;
	return rc;
}

int meta_xattr_list(struct meta *m, const struct meta_ver *ver, uint64_t ino,
		    char **out, size_t *len)
{
	struct meta_st *s;
	char *v = NULL;
	size_t n = 0, cap = 0;
	int rc = meta_stmt_ver(m, &meta_xattr_sql, x_chain(ver, X_XATTR_LIST),
			       ino, ver, 2, &s);

	if (rc)
		return rc;
	while ((rc = meta_step(m, s, "xattr list")) > 0) {
		int l = meta_col_bytes(s, 0);

		if (array_reserve(&v, &cap, n + (size_t)l + 1, 1)) {
			meta_reset(s);
			rc = -ENOMEM;
			break;
		}
		memcpy(v + n, meta_col_blob(s, 0), (size_t)l);
		n += (size_t)l;
		v[n++] = '\0';
	}
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*len = n;
	return 0;
}
