/* SPDX-License-Identifier: MIT */
/*
 * The inode family of the metadata store: inodes, directory entries,
 * extended attributes, symlink targets, readdir, orphans and branches.
 */
#include "core/meta_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "core/array.h"
#include "core/log.h"

static int64_t ts_to_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static struct timespec ns_to_ts(int64_t ns)
{
	struct timespec ts;

	ts.tv_sec = ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	if (ts.tv_nsec < 0) {
		ts.tv_nsec += 1000000000;
		ts.tv_sec--;
	}
	return ts;
}

int meta_inode_get(struct meta *m, uint64_t ino, struct meta_inode *out)
{
	STMT_OR_RETURN(s, m, S_INODE_GET);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? -ENOENT
					 : meta_fail(m, rc, "inode read");
	}
	out->ino = ino;
	out->nspace = (uint64_t)sqlite3_column_int64(s, 0);
	out->mode = (uint32_t)sqlite3_column_int64(s, 1);
	out->uid = (uint32_t)sqlite3_column_int64(s, 2);
	out->gid = (uint32_t)sqlite3_column_int64(s, 3);
	out->nlink = (uint32_t)sqlite3_column_int64(s, 4);
	out->size = (uint64_t)sqlite3_column_int64(s, 5);
	out->rdev = (uint64_t)sqlite3_column_int64(s, 6);
	out->alloc = (uint64_t)sqlite3_column_int64(s, 7);
	out->atime = ns_to_ts(sqlite3_column_int64(s, 8));
	out->mtime = ns_to_ts(sqlite3_column_int64(s, 9));
	out->ctime = ns_to_ts(sqlite3_column_int64(s, 10));
	sqlite3_reset(s);
	return 0;
}

int meta_inode_put(struct meta *m, const struct meta_inode *in)
{
	STMT_OR_RETURN(s, m, S_INODE_PUT);

	sqlite3_bind_int64(s, 1, (int64_t)in->ino);
	sqlite3_bind_int64(s, 2, (int64_t)in->nspace);
	sqlite3_bind_int64(s, 3, in->mode);
	sqlite3_bind_int64(s, 4, in->uid);
	sqlite3_bind_int64(s, 5, in->gid);
	sqlite3_bind_int64(s, 6, in->nlink);
	sqlite3_bind_int64(s, 7, (int64_t)in->size);
	sqlite3_bind_int64(s, 8, (int64_t)in->rdev);
	sqlite3_bind_int64(s, 9, (int64_t)in->alloc);
	sqlite3_bind_int64(s, 10, ts_to_ns(&in->atime));
	sqlite3_bind_int64(s, 11, ts_to_ns(&in->mtime));
	sqlite3_bind_int64(s, 12, ts_to_ns(&in->ctime));
	return meta_step_done(m, s, "inode write");
}

int meta_inode_delete(struct meta *m, uint64_t ino)
{
	int rc = meta_exec_ino(m, S_INODE_DEL_X, ino, "xattr delete");

	return rc ? rc : meta_exec_ino(m, S_INODE_DEL, ino, "inode delete");
}

int meta_max_ino(struct meta *m, uint64_t *max)
{
	int64_t v =
		meta_pragma_int(m, "SELECT coalesce(max(ino), 0) FROM inodes");

	if (v < 0)
		return -EIO;
	*max = (uint64_t)v;
	return 0;
}

int meta_inode_orphans(struct meta *m, uint64_t **inos, size_t *n)
{
	STMT_OR_RETURN(s, m, S_ORPHANS);
	uint64_t *v = NULL;
	size_t cnt = 0;
	int rc;

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
		return meta_fail(m, rc, "orphan scan");
	}
	*inos = v;
	*n = cnt;
	return 0;
}

int meta_target_set(struct meta *m, uint64_t ino, const char *target)
{
	STMT_OR_RETURN(s, m, S_TARGET_SET);

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_blob(s, 2, target, (int)strlen(target), SQLITE_STATIC);
	return meta_step_done(m, s, "symlink write");
}

int meta_target_get(struct meta *m, uint64_t ino, char **out)
{
	STMT_OR_RETURN(s, m, S_TARGET_GET);
	int rc, len;
	char *t;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? -ENOENT
					 : meta_fail(m, rc, "symlink read");
	}
	len = sqlite3_column_bytes(s, 0);
	t = malloc((size_t)len + 1);
	if (!t) {
		sqlite3_reset(s);
		return -ENOMEM;
	}
	if (len)
		memcpy(t, sqlite3_column_blob(s, 0), (size_t)len);
	t[len] = '\0';
	sqlite3_reset(s);
	*out = t;
	return 0;
}

static void bind_name(sqlite3_stmt *s, int col, const char *name)
{
	sqlite3_bind_blob(s, col, name, (int)strlen(name), SQLITE_STATIC);
}

int meta_dentry_lookup(struct meta *m, uint64_t parent, const char *name,
		       uint64_t *ino)
{
	STMT_OR_RETURN(s, m, S_DENTRY_LOOKUP);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	bind_name(s, 2, name);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*ino = (uint64_t)sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? -ENOENT : meta_fail(m, rc, "lookup");
}

static int dentry_exec(struct meta *m, int id, uint64_t parent,
		       const char *name, uint64_t ino, const char *what)
{
	STMT_OR_RETURN(s, m, id);

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	bind_name(s, 2, name);
	if (id != S_DENTRY_DELETE)
		sqlite3_bind_int64(s, 3, (int64_t)ino);
	return meta_step_done(m, s, what);
}

int meta_dentry_insert(struct meta *m, uint64_t parent, const char *name,
		       uint64_t ino)
{
	return dentry_exec(m, S_DENTRY_INSERT, parent, name, ino,
			   "entry insert");
}

int meta_dentry_delete(struct meta *m, uint64_t parent, const char *name)
{
	return dentry_exec(m, S_DENTRY_DELETE, parent, name, 0, "entry delete");
}

int meta_dentry_set_ino(struct meta *m, uint64_t parent, const char *name,
			uint64_t ino)
{
	return dentry_exec(m, S_DENTRY_SET_INO, parent, name, ino,
			   "entry update");
}

int meta_dentry_move(struct meta *m, uint64_t parent, const char *name,
		     uint64_t newparent, const char *newname)
{
	STMT_OR_RETURN(s, m, S_DENTRY_MOVE);

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	bind_name(s, 2, name);
	sqlite3_bind_int64(s, 3, (int64_t)newparent);
	bind_name(s, 4, newname);
	return meta_step_done(m, s, "entry move");
}

int meta_dir_empty(struct meta *m, uint64_t ino)
{
	STMT_OR_RETURN(s, m, S_DIR_EMPTY);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? 1 : meta_fail(m, rc, "directory scan");
}

int meta_readdir(struct meta *m, uint64_t parent, int64_t after,
		 int (*fn)(void *ctx, int64_t cookie, const char *name,
			   uint64_t ino),
		 void *ctx)
{
	STMT_OR_RETURN(s, m, S_READDIR);
	char name[256];
	int rc, ret = 0;

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_int64(s, 2, after);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int len = sqlite3_column_bytes(s, 1);

		if (len <= 0 || len > 255)
			continue;
		memcpy(name, sqlite3_column_blob(s, 1), (size_t)len);
		name[len] = '\0';
		ret = fn(ctx, sqlite3_column_int64(s, 0), name,
			 (uint64_t)sqlite3_column_int64(s, 2));
		if (ret)
			break;
	}
	sqlite3_reset(s);
	if (!ret && rc != SQLITE_DONE)
		return meta_fail(m, rc, "readdir");
	return ret;
}

int meta_branch(struct meta *m, uint64_t src_root, const char *dst_name,
		uint64_t *next_ino, uint64_t *root, uint64_t *count)
{
	static const char *const steps[] = {
		"CREATE TEMP TABLE IF NOT EXISTS branch_map("
		"old INTEGER PRIMARY KEY, new INTEGER NOT NULL)",
		"DELETE FROM temp.branch_map",
		"INSERT INTO temp.branch_map SELECT ino, ?2 - 1 + "
		"row_number() OVER (ORDER BY ino) FROM inodes "
		"WHERE nspace = ?1 AND nlink > 0",
		"INSERT INTO inodes(ino, nspace, mode, uid, gid, nlink, size, "
		"rdev, alloc, atime, mtime, ctime, target) SELECT m.new, "
		"(SELECT new FROM temp.branch_map WHERE old = ?1), mode, uid, "
		"gid, nlink, size, rdev, alloc, atime, mtime, ctime, target "
		"FROM inodes i JOIN temp.branch_map m ON i.ino = m.old",
		"INSERT INTO dentries(parent, name, ino) SELECT p.new, d.name, "
		"c.new FROM temp.branch_map p JOIN dentries d "
		"ON d.parent = p.old JOIN temp.branch_map c ON c.old = d.ino",
		/* CROSS JOIN: the map drives, so a branch reads the blocks
		 * of its inodes by key, never all the store's (the planner
		 * has no statistics, and would scan blocks_obj) */
		"UPDATE objects SET refcount = refcount + c.n FROM "
		"(SELECT b.obj AS obj, count(*) AS n FROM temp.branch_map m "
		"CROSS JOIN blocks b ON b.ino = m.old GROUP BY b.obj) AS c "
		"WHERE objects.id = c.obj",
		"INSERT INTO blocks(ino, idx, obj, shard) SELECT m.new, b.idx, "
		"b.obj, b.shard FROM temp.branch_map m CROSS JOIN blocks b "
		"ON b.ino = m.old",
		"INSERT INTO xattrs(ino, name, value) SELECT m.new, x.name, "
		"x.value FROM temp.branch_map m JOIN xattrs x "
		"ON x.ino = m.old",
	};
	uint64_t copied = 0;
	size_t i;
	int rc = 0;

	for (i = 0; i < sizeof(steps) / sizeof(steps[0]) && !rc; i++) {
		sqlite3_stmt *s;

		if (sqlite3_prepare_v2(m->db, steps[i], -1, &s, NULL) !=
		    SQLITE_OK)
			return meta_fail(m, SQLITE_ERROR, "branch");
		if (sqlite3_bind_parameter_count(s) >= 1)
			sqlite3_bind_int64(s, 1, (int64_t)src_root);
		if (sqlite3_bind_parameter_count(s) >= 2)
			sqlite3_bind_int64(s, 2, (int64_t)*next_ino);
		rc = sqlite3_step(s);
		rc = (rc == SQLITE_DONE) ? 0 : meta_fail(m, rc, "branch");
		if (i == 2)
			copied = (uint64_t)sqlite3_changes(m->db);
		sqlite3_finalize(s);
	}
	if (rc)
		return rc;
	if (copied == 0)
		return -ENOENT;
	/* The source root has the smallest number in its namespace. */
	*root = *next_ino;
	rc = meta_dentry_insert(m, 1, dst_name, *root);
	if (rc)
		return rc;
	*next_ino += copied;
	*count = copied;
	return meta_config_set(m, "next_ino", (int64_t)*next_ino);
}

int meta_xattr_get(struct meta *m, uint64_t ino, const char *name, void **out,
		   size_t *len)
{
	STMT_OR_RETURN(s, m, S_XATTR_GET);
	int rc, n;
	void *v;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	bind_name(s, 2, name);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? -ENODATA
					 : meta_fail(m, rc, "xattr read");
	}
	n = sqlite3_column_bytes(s, 0);
	v = malloc(n ? (size_t)n : 1);
	if (!v) {
		sqlite3_reset(s);
		return -ENOMEM;
	}
	if (n)
		memcpy(v, sqlite3_column_blob(s, 0), (size_t)n);
	sqlite3_reset(s);
	*out = v;
	*len = (size_t)n;
	return 0;
}

int meta_xattr_set(struct meta *m, uint64_t ino, const char *name,
		   const void *val, size_t len, int flags)
{
	int id = (flags & XATTR_CREATE)	   ? S_XATTR_INSERT
		 : (flags & XATTR_REPLACE) ? S_XATTR_REPLACE
					   : S_XATTR_UPSERT;
	STMT_OR_RETURN(s, m, id);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	bind_name(s, 2, name);
	sqlite3_bind_blob(s, 3, len ? val : "", (int)len, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return -EEXIST;
	if (rc != SQLITE_DONE)
		return meta_fail(m, rc, "xattr write");
	if (id == S_XATTR_REPLACE && sqlite3_changes(m->db) == 0)
		return -ENODATA;
	return 0;
}

int meta_xattr_remove(struct meta *m, uint64_t ino, const char *name)
{
	STMT_OR_RETURN(s, m, S_XATTR_DEL);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	bind_name(s, 2, name);
	rc = meta_step_done(m, s, "xattr delete");
	if (!rc && sqlite3_changes(m->db) == 0)
		return -ENODATA;
	return rc;
}

int meta_xattr_list(struct meta *m, uint64_t ino, char **out, size_t *len)
{
	STMT_OR_RETURN(s, m, S_XATTR_LIST);
	char *v = NULL;
	size_t n = 0;
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int l = sqlite3_column_bytes(s, 0);
		char *nv = realloc(v, n + (size_t)l + 1);

		if (!nv) {
			free(v);
			sqlite3_reset(s);
			return -ENOMEM;
		}
		v = nv;
		memcpy(v + n, sqlite3_column_blob(s, 0), (size_t)l);
		n += (size_t)l;
		v[n++] = '\0';
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return meta_fail(m, rc, "xattr list");
	}
	*out = v;
	*len = n;
	return 0;
}
