/* SPDX-License-Identifier: MIT */
/*
 * Namespaces and pins: branch (a namespace copied by reference), the
 * resolution of mount-relative paths in canonical form, and pin/unpin.
 */
#include "core/fs/tally_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/meta/meta.h"
#include "core/util/array.h"
#include "core/util/progress.h"

static int nspace_name_ok(const char *name)
{
	int rc = tally_check_name(name);

	if (rc)
		return rc == -ENAMETOOLONG ? rc : -EINVAL;
	if (!strcmp(name, ".") || !strcmp(name, "..") ||
	    !strcmp(name, TALLY_CTLDIR_NAME))
		return -EINVAL;
	return 0;
}

int tally_branch(struct tally *t, const char *src, const char *dst,
		 uint64_t *inodes)
{
	struct inode *root = NULL;
	struct progress_job *pj;
	struct meta_inode md;
	uint64_t src_ino, dst_ino, next, newroot = 0, count = 0;
	int rc = nspace_name_ok(src);

	if (!rc)
		rc = nspace_name_ok(dst);
	if (!rc)
		rc = tally_nspace_name_taken(dst);
	if (rc)
		return rc;
	tally_lock(t);
	rc = meta_dentry_lookup(t->meta, &META_VER_ROOT, TALLY_ROOT_INO, src,
				&src_ino);
	if (!rc) {
		rc = meta_dentry_lookup(t->meta, &META_VER_ROOT, TALLY_ROOT_INO,
					dst, &dst_ino);
		rc = rc == -ENOENT ? 0 : (rc ? rc : -EEXIST);
	}
	tally_unlock(t);
	if (rc)
		return rc;
	/* the copy is one statement: its count is known when it is done */
	pj = progress_begin(t->progress, "branch", "inodes", 0);
	/* committed data only: drain first (a later write goes on, as in
	 * any snapshot taken while a file is open) */
	rc = tally_drain(t, NULL, 0);
	if (rc) {
		progress_end(pj);
		return rc;
	}
	tally_lock(t);
	rc = meta_dentry_lookup(t->meta, &META_VER_ROOT, TALLY_ROOT_INO, src,
				&src_ino);
	if (!rc) {
		rc = meta_dentry_lookup(t->meta, &META_VER_ROOT, TALLY_ROOT_INO,
					dst, &dst_ino);
		rc = rc == -ENOENT ? 0 : (rc ? rc : -EEXIST);
	}
	if (!rc)
		rc = meta_room(t->meta);
	if (!rc)
		rc = inode_get(t, TALLY_ROOT_INO, &root);
	if (rc)
		goto out;
	next = t->next_ino;
	md = root->md;
	md.nlink++;
	md.mtime = md.ctime = tally_now();
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_branch(t->meta, src_ino, dst, &next, &newroot,
				 &count);
	if (!rc)
		rc = inode_write_md(t, root, &md);
	rc = tally_txn_end(t, rc);
	if (rc)
		goto out;
	t->next_ino = next;
	t->ino_limit = next;
	root->md = md;
	*inodes = count;
	progress_set_total(pj, count);
	progress_set(pj, count);
out:
	inode_put(t, root);
	tally_unlock(t);
	progress_end(pj);
	return rc;
}

int active_add(struct active *a, const char *name)
{
	if (array_reserve(&a->v, &a->cap, a->n + 1, sizeof(*a->v)))
		return -ENOMEM;
	a->v[a->n++] = name;
	return 0;
}

static int pin_collect(void *ctx, const char *name)
{
	char *copy = strdup(name);

	if (!copy)
		return -ENOMEM;
	if (active_add(ctx, copy)) {
		free(copy);
		return -ENOMEM;
	}
	return 0;
}

/* Mount-relative @path in canonical form ("a/b"); "." and ".." refused. */
static int canonical(const char *path, char *canon, size_t size)
{
	char buf[4096], *p, *save = NULL;
	size_t used = 0;

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	snprintf(buf, sizeof(buf), "%s", path);
	canon[0] = '\0';
	for (p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		if (!strcmp(p, ".") || !strcmp(p, ".."))
			return -EINVAL;
		used += (size_t)snprintf(canon + used, size - used, "%s%s",
					 used ? "/" : "", p);
		if (used >= size)
			return -ENAMETOOLONG;
	}
	return used ? 0 : -EINVAL;
}

/* Resolve mount-relative @path to an inode (t->lock held); @canon gets
 * the path in canonical form ("a/b", no empty components). Symlinks are
 * not followed: one before the last component is EINVAL (another
 * non-directory there is ENOTDIR), so a command never leaves the mount. */
static int resolve(struct tally *t, const char *path, uint64_t *ino,
		   uint64_t *parent, char *canon, size_t size)
{
	char buf[4096], *p, *save = NULL;
	uint64_t cur = TALLY_ROOT_INO, up = 0;
	size_t used = 0;

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	snprintf(buf, sizeof(buf), "%s", path);
	for (p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		int rc;

		if (!strcmp(p, ".") || !strcmp(p, ".."))
			return -EINVAL;
		rc = tally_check_name(p);
		if (rc)
			return rc;
		if (cur != TALLY_ROOT_INO) {
			struct meta_inode md;

			rc = meta_inode_get(t->meta, NULL, cur, &md);
			if (rc)
				return rc;
			if (!S_ISDIR(md.mode))
				return S_ISLNK(md.mode) ? -EINVAL : -ENOTDIR;
		}
		up = cur;
		rc = meta_dentry_lookup(t->meta, NULL, cur, p, &cur);
		if (rc)
			return rc;
		used += (size_t)snprintf(canon + used, size - used, "%s%s",
					 used ? "/" : "", p);
		if (used >= size)
			return -ENAMETOOLONG;
	}
	if (cur == TALLY_ROOT_INO)
		return -EINVAL; /* the root itself */
	*ino = cur;
	*parent = up;
	return 0;
}

int tally_pin(struct tally *t, const char *path, bool pin, uint64_t *objects)
{
	struct active a = { 0 };
	struct meta_inode md;
	uint64_t ino, parent;
	char canon[4096];
	size_t i;
	int rc;

	if (!path[0])
		return -EINVAL;
	if (pin) {
		/* the objects as committed: let pending closes finish */
		rc = tally_drain(t, NULL, 0);
		if (rc)
			return rc;
	}
	tally_lock(t);
	if (!pin) {
		/* by name: the file may be gone since it was pinned */
		rc = canonical(path, canon, sizeof(canon));
		if (!rc)
			rc = meta_begin(t->meta);
		if (!rc)
			rc = meta_pin_remove(t->meta, canon);
		rc = tally_txn_end(t, rc);
		goto out;
	}
	rc = resolve(t, path, &ino, &parent, canon, sizeof(canon));
	if (rc)
		goto out;
	path = canon;
	rc = meta_inode_get(t->meta, NULL, ino, &md);
	if (rc)
		goto out;
	if (parent == TALLY_ROOT_INO) {
		rc = meta_nspace_objects(t->meta, md.nspace, pin_collect, &a);
	} else if (S_ISREG(md.mode)) {
		struct meta_bref *map = NULL;
		size_t n = 0;

		struct meta_ver v = meta_ver_of(&md);

		rc = meta_blocks_load(t->meta, &v, ino, &map, &n);
		for (i = 0; i < n && !rc; i++)
			if (map[i].name[0])
				rc = pin_collect(&a, map[i].name);
		free(map);
	} else {
		rc = -EINVAL; /* a file or a whole namespace */
	}
	if (rc)
		goto out;
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_pin_add(t->meta, path, (int64_t)time(NULL), a.v, a.n);
	rc = tally_txn_end(t, rc);
	if (!rc)
		*objects = a.n;
out:
	tally_unlock(t);
	for (i = 0; i < a.n; i++)
		free((char *)a.v[i]);
	free(a.v);
	return rc;
}

int tally_resolve(struct tally *t, const char *path, uint64_t *ino)
{
	char canon[4096];
	uint64_t parent;
	int rc;

	tally_lock(t);
	rc = resolve(t, path, ino, &parent, canon, sizeof(canon));
	tally_unlock(t);
	return rc;
}
