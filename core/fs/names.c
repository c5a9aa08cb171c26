/* SPDX-License-Identifier: MIT */
/*
 * Names: creating and removing directory entries (mknod, mkdir, symlink,
 * unlink, rmdir, rename, link), readlink, inode number reservation and
 * readdir.
 */
#include "core/fs/tally_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/log.h"
#include "core/meta/meta.h"

/* ------------------------------------------------------------------ */
/* creating and removing names */

/*
 * Inode numbers are never reused: a mount takes them 1024 at a time from
 * the store's counter ("next_ino", meta_ino_take(): one statement, so
 * that mounts sharing a store never get the same), in a transaction of
 * its own, so most creations write no extra row. t->lock held. Numbers
 * taken and not used (a crash) are never used.
 */
#define INO_RESERVE 1024

int tally_ino_refill(struct tally *t)
{
	uint64_t first;
	int rc;

	if (t->next_ino < t->ino_limit)
		return 0;
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_ino_take(t->meta, t->next_ino, INO_RESERVE, &first);
	rc = tally_txn_end(t, rc);
	if (rc)
		return rc;
	t->next_ino = first;
	t->ino_limit = first + INO_RESERVE;
	return 0;
}

static int parent_dir(struct tally *t, uint64_t parent, struct inode **out)
{
	struct inode *pip;
	int rc;

	if (tally_is_virtual(parent))
		return -EPERM;
	if (tally_view_ro(parent))
		return -EROFS; /* a snapshot's */
	rc = inode_get(t, parent, &pip);
	if (rc)
		return rc;
	if (!S_ISDIR(pip->md.mode)) {
		inode_put(t, pip);
		return -ENOTDIR;
	}
	if (pip->freed || pip->md.nlink == 0) {
		inode_put(t, pip);
		return -ENOENT;
	}
	*out = pip;
	return 0;
}

/* With @open, the new node is also opened (one handle: a shared
 * store's hold in the same transaction). */
static int create_node(struct tally *t, const struct tally_ctx *c,
		       uint64_t parent, const char *name, mode_t mode,
		       dev_t rdev, const char *target, bool open,
		       struct stat *st)
{
	struct inode *pip = NULL, *ip;
	struct meta_inode md, pmd;
	struct meta_ver v, pv;
	struct timespec ts = tally_now();
	uint32_t epoch = 0;
	bool whole = false;
	int rc = tally_check_name(name);

	if (!rc && tally_view_ro(parent))
		rc = -EROFS; /* a snapshot's */
	if (rc)
		return rc;
	if (tally_is_ctl_name(parent, name))
		return -EEXIST;
	tally_lock(t);
	rc = parent_dir(t, parent, &pip);
	if (rc)
		goto out;
	if (parent == TALLY_ROOT_INO && !S_ISDIR(mode)) {
		rc = -EPERM;
		goto out;
	}
	if (parent == TALLY_ROOT_INO) {
		rc = tally_nspace_name_taken(name);
		if (rc)
			goto out;
	}
	/* an existing name is found by the entry's insert (-EEXIST, the
	 * transaction rolled back): no lookup first, which the kernel has
	 * just made (a round trip with a shared store) */
	rc = tally_ino_refill(t);
	if (!rc)
		rc = meta_room(t->meta);
	if (rc)
		goto out;
	memset(&md, 0, sizeof(md));
	md.ino = t->next_ino;
	/* made in the namespace its parent is seen in (a view's: whichever
	 * the parent's row was made in) */
	md.nspace = parent == TALLY_ROOT_INO ? md.ino
					     : node_nspace(t, parent, &pip->md);
	if (!md.nspace) {
		rc = -ESTALE;
		goto out;
	}
	md.mode = mode;
	md.uid = c->uid;
	md.gid = c->gid;
	if (pip->md.mode & S_ISGID) {
		md.gid = pip->md.gid;
		if (S_ISDIR(mode))
			md.mode |= S_ISGID;
	}
	md.nlink = S_ISDIR(mode) ? 2 : 1;
	md.rdev = rdev;
	md.size = target ? strlen(target) : 0;
	md.atime = md.mtime = md.ctime = ts;
	pmd = pip->md;
	pmd.mtime = pmd.ctime = ts;
	if (S_ISDIR(mode))
		pmd.nlink++;
	v = tally_ver_of(t, &md);
	pv = inode_ver(t, pip);
	/* before the commit: an ENOMEM must leave nothing done */
	ip = inode_alloc(&md);
	if (!ip) {
		rc = -ENOMEM;
		goto out;
	}
	/* seen through its parent's view */
	ip->ino = node_of(tally_view(parent), md.ino);

	/* in its directory's set before: a commit whose outcome is not
	 * known (a lost connection) may have made it (core/fs/dirnames.c) */
	dirnames_add(t, parent, name);
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_inode_put(t->meta, &v, &md);
	if (!rc && target)
		rc = meta_target_set(t->meta, &v, md.ino, target);
	if (!rc)
		rc = meta_dentry_insert(t->meta, &pv, pip->md.ino, name,
					md.ino);
	if (!rc)
		rc = inode_write_md(t, pip, &pmd);
	if (!rc && open && meta_shared(t->meta))
		rc = meta_hold_new(t->meta, t->node_id, md.ino);
	/* a directory this node makes is known whole (core/fs/dirnames.c) */
	if (!rc && S_ISDIR(mode) && dirnames_listening(t, &epoch)) {
		whole = true;
		rc = meta_dir_watch(t->meta, md.ino, t->node_id);
	}
	rc = tally_txn_end(t, rc);
	/* spent whatever the outcome: a commit whose outcome a lost
	 * connection hides may have used it */
	t->next_ino++;
	if (rc) {
		inode_destroy(t, ip);
		goto out;
	}
	pip->md = pmd;
	inode_insert(t, ip);
	ip->nlookup = 1;
	ip->opens = open ? 1 : 0;
	dcache_put(t, parent, name, ip->ino);
	if (whole)
		dirnames_known(ip, epoch);
	inode_fill_stat(t, ip, st);
out:
	inode_put(t, pip);
	tally_unlock(t);
	return rc;
}

int tally_mknod(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		const char *name, mode_t mode, dev_t rdev, struct stat *st)
{
	if (S_ISDIR(mode) || S_ISLNK(mode))
		return -EINVAL;
	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISCHR(mode) &&
	    !S_ISBLK(mode) && !S_ISSOCK(mode))
		mode |= S_IFREG;
	return create_node(t, c, parent, name, mode,
			   S_ISCHR(mode) || S_ISBLK(mode) ? rdev : 0, NULL,
			   false, st);
}

int tally_create(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		 const char *name, mode_t mode, struct stat *st)
{
	return create_node(t, c, parent, name, S_IFREG | (mode & 07777), 0,
			   NULL, true, st);
}

int tally_mkdir(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		const char *name, mode_t mode, struct stat *st)
{
	return create_node(t, c, parent, name, S_IFDIR | (mode & 07777), 0,
			   NULL, false, st);
}

int tally_symlink(struct tally *t, const struct tally_ctx *c, uint64_t parent,
		  const char *name, const char *target, struct stat *st)
{
	size_t len = strlen(target);

	if (len == 0)
		return -ENOENT;
	if (len >= 4096)
		return -ENAMETOOLONG;
	return create_node(t, c, parent, name, S_IFLNK | 0777, 0, target, false,
			   st);
}

int tally_readlink(struct tally *t, uint64_t ino, char **target)
{
	struct inode *ip;
	int rc;

	if (tally_is_virtual(ino) || tally_view(ino) == TALLY_VIEW_SNAPDIRS)
		return -EINVAL;
	tally_lock(t);
	rc = inode_get(t, ino, &ip);
	if (!rc) {
		struct meta_ver v = inode_ver(t, ip);

		rc = S_ISLNK(ip->md.mode)
			     ? meta_target_get(t->meta, &v, ip->md.ino, target)
			     : -EINVAL;
		inode_put(t, ip);
	}
	tally_unlock(t);
	return rc;
}

/*
 * Look up @name in @parent (t->lock held) and get its inode. On a shared
 * store the kernel has just looked the name up (a round trip), and the
 * inode that look found stands in for another (dcache_hint()): every
 * change that follows names the inode it expects (AND ino = ?) and fails
 * if the entry names another one now (raced(): the operation runs again
 * from the store, the hint dropped), and the hint is no older than what
 * the kernel acts on itself. A hinted inode that is gone is looked up
 * again at once. *@hinted says a hint of a shared store stood in: a check
 * made on the inode before the transaction that fails is made again
 * from the store (unhint()).
 */
static int child(struct tally *t, struct inode *pip, uint64_t parent,
		 const char *name, struct inode **out, bool *hinted)
{
	struct meta_ver pv = inode_ver(t, pip);
	uint64_t ino;
	int rc;

	*hinted = false;
	if (dcache_hint(t, parent, name, &ino)) {
		rc = inode_get(t, ino, out);
		*hinted = !rc && meta_shared(t->meta);
		if (rc != -ENOENT || !meta_shared(t->meta))
			return rc;
		dcache_drop(t, parent, name);
	}
	rc = meta_dentry_lookup(t->meta, &pv, pip->md.ino, name, &ino);
	if (rc)
		return rc;
	return inode_get(t, tally_child_node(t, parent, ino), out);
}

/*
 * A check made before the transaction (EISDIR, ENOTDIR, ENOTEMPTY, a
 * rename's EEXIST or its two names of one inode) failed on an inode a
 * hint gave (child()): the hint may be stale, and the store decides, so
 * the hints of @name (and @name2, unless NULL) are dropped and the
 * operation looks again (true: go again; t->lock held).
 */
static bool unhint(struct tally *t, bool *hinted, uint64_t parent,
		   const char *name, uint64_t parent2, const char *name2)
{
	if (!*hinted)
		return false;
	*hinted = false;
	dcache_drop(t, parent, name);
	if (name2)
		dcache_drop(t, parent2, name2);
	return true;
}

/*
 * The end @rc of a transaction that changed entries looked up before it:
 * on a shared store, -ENOENT says an entry or row went, or an entry
 * names another inode now, by another node's change since the lookups
 * (core/meta/meta.h, meta_dentry_delete()). Nothing was done: the operation
 * runs again from its lookups (-EDEADLK, tally_retry()) and meets what
 * is there now (a rename's target gone: a plain rename; its source
 * gone: ENOENT from the lookup).
 */
static int raced(struct tally *t, int rc)
{
	return rc == -ENOENT && meta_shared(t->meta) ? -EDEADLK : rc;
}

/*
 * Drop one link of @ip (t->lock held, in a transaction). At nlink 0 with
 * no open handle, the inode and its references go (after commit the
 * caller sets ip->freed when *freed says so).
 */
static int drop_link(struct tally *t, struct inode *ip, struct meta_inode *md,
		     bool *freed)
{
	md->ctime = tally_now();
	if (S_ISDIR(md->mode))
		md->nlink = 0;
	else if (md->nlink > 0)
		md->nlink--;
	*freed = false;
	if (meta_shared(t->meta)) {
		/* the count the store has now decides (other nodes link
		 * and unlink too); another node may hold it open: its rows
		 * stay until the last hold goes (core/fs/file.c). A count that
		 * goes down is answered by the store, whose update took the
		 * row: a hold made after it waits for the commit and then
		 * finds the row gone, so only the holds are asked then */
		bool counted = md->nlink < ip->md.nlink;
		int rc = inode_write_md(t, ip, md);

		if (rc || md->nlink > 0 || ip->opens)
			return rc;
		rc = counted ? meta_inode_unheld(t->meta, ip->md.ino,
						 t->node_id)
			     : meta_inode_last(t->meta, ip->md.ino, t->node_id);
		if (rc < 0)
			return rc;
		*freed = rc == 1;
		return *freed ? inode_drop(t, ip) : 0;
	}
	*freed = md->nlink == 0 && ip->opens == 0;
	if (*freed)
		return inode_drop(t, ip);
	return inode_write_md(t, ip, md);
}

/*
 * The rest of an unlink on a shared store, in the transaction @rc says
 * how far it came, of a name of @ip that has others as far as this node
 * knows: the count's update, the directory's after it (rows in the order
 * of drop_link()'s) and the COMMIT go in one round trip (the store's
 * count comes back with the COMMIT). A count the store answers with 0
 * (another node removed the other names meanwhile) is left to
 * unlinked_last(). Ends the transaction: 0 or -errno (raced()).
 */
static int unlink_one_of_several(struct tally *t, struct inode *ip,
				 struct meta_inode *md, struct inode *pip,
				 struct meta_inode *pmd, int rc)
{
	md->ctime = pmd->ctime;
	md->nlink--;
	if (!rc)
		rc = inode_write_md_after(t, pip, pmd);
	if (!rc) {
		rc = inode_write_md_commit(t, ip, md, 0);
		if (rc == 1)
			rc = 0; /* the row went: another node freed it */
		return raced(t, tally_txn_done(t, rc, -ENOENT));
	}
	return raced(t, tally_txn_end(t, rc));
}

/*
 * A file whose last link another node's unlink or this node's took in a
 * transaction that did not free it (unlink_one_of_several()): freed now,
 * in a transaction of its own, if the store still says no link is left
 * and no node holds it (meta_inode_last(), as the release of the last
 * hold does). A failure leaves it to the next mount or session cleanup,
 * which free unlinked inodes nobody holds. t->lock held.
 */
static void unlinked_last(struct tally *t, struct inode *ip)
{
	bool drop;
	int rc = inode_drop_if_last(t, ip, &drop);

	if (!rc && drop) {
		ip->freed = true;
		inode_drop_failed(t, ip);
	} else if (rc) {
		log_msg(LOG_WARNING,
			"unlink of inode %llu: its rows stay until a cleanup "
			"frees them: %s",
			(unsigned long long)ip->ino, strerror(-rc));
	}
}

int tally_unlink(struct tally *t, uint64_t parent, const char *name)
{
	struct inode *pip = NULL, *ip = NULL;
	struct meta_inode md, pmd;
	struct meta_ver pv;
	bool freed = false, several, hinted = false;
	int rc = tally_check_name(name);

	if (!rc && tally_view_ro(parent))
		rc = -EROFS; /* a snapshot's */
	if (rc)
		return rc;
	if (tally_is_ctl_name(parent, name))
		return -EPERM;
	tally_lock(t);
again:
	rc = parent_dir(t, parent, &pip);
	if (!rc)
		rc = child(t, pip, parent, name, &ip, &hinted);
	if (rc)
		goto out;
	if (S_ISDIR(ip->md.mode)) {
		rc = -EISDIR;
		if (unhint(t, &hinted, parent, name, 0, NULL)) {
			inode_put(t, ip);
			inode_put(t, pip);
			ip = pip = NULL;
			goto again;
		}
		goto out;
	}
	md = ip->md;
	pmd = pip->md;
	pmd.mtime = pmd.ctime = tally_now();
	pv = inode_ver(t, pip);
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_dentry_delete(t->meta, &pv, pip->md.ino, name,
					ip->md.ino);
	several = meta_shared(t->meta) && md.nlink > 1;
	if (several) {
		rc = unlink_one_of_several(t, ip, &md, pip, &pmd, rc);
	} else {
		if (!rc)
			rc = drop_link(t, ip, &md, &freed);
		if (!rc)
			rc = inode_write_md(t, pip, &pmd);
		rc = raced(t, tally_txn_end(t, rc));
	}
	dcache_drop(t, parent, name);
	if (rc)
		goto out;
	ip->md = md;
	ip->freed = freed;
	if (freed)
		inode_drop_failed(t, ip);
	pip->md = pmd;
	if (several && md.nlink == 0 && !ip->opens)
		unlinked_last(t, ip);
out:
	inode_put(t, ip);
	inode_put(t, pip);
	tally_unlock(t);
	return rc;
}

/* The number the entry @name of @parent names for inode @ip: in the
 * root, a namespace's id (branches share a root); else the inode's
 * (t->lock held). */
static uint64_t entry_ino(struct tally *t, uint64_t parent,
			  const struct inode *ip)
{
	return parent == TALLY_ROOT_INO ? node_nspace(t, ip->ino, &ip->md)
					: ip->md.ino;
}

int tally_rmdir(struct tally *t, uint64_t parent, const char *name)
{
	struct inode *pip = NULL, *ip = NULL;
	struct meta_inode pmd;
	struct meta_ver v, pv;
	bool hinted = false, drop = false;
	int rc = tally_check_name(name);

	if (rc)
		return rc;
	if (!strcmp(name, "."))
		return -EINVAL;
	if (!strcmp(name, ".."))
		return -ENOTEMPTY;
	if (tally_view_ro(parent))
		return -EROFS;
	if (tally_is_ctl_name(parent, name))
		return -EPERM;
	tally_lock(t);
again:
	rc = parent_dir(t, parent, &pip);
	if (!rc)
		rc = child(t, pip, parent, name, &ip, &hinted);
	if (rc)
		goto out;
	if (!S_ISDIR(ip->md.mode)) {
		rc = -ENOTDIR;
		goto out_check;
	}
	/* looked at first on a shared store too, although the delete of
	 * the directory's row fails while an entry names it (the foreign
	 * key dentries_parent_fk): without the look, that delete holds the
	 * row while the key's check waits for another node's unlink in the
	 * directory, which waits for the row, a deadlock the server breaks
	 * only after a second */
	v = inode_ver(t, ip);
	pv = inode_ver(t, pip);
	if (parent == TALLY_ROOT_INO)
		rc = tally_nspace_removable(t, name, ip, false, &drop);
	if (rc)
		goto out;
	rc = meta_dir_empty(t->meta, &v, ip->md.ino);
	if (rc <= 0) {
		rc = rc ? rc : -ENOTEMPTY;
		goto out_check;
	}
	pmd = pip->md;
	pmd.mtime = pmd.ctime = tally_now();
	pmd.nlink--;
	rc = meta_begin(t->meta);
	/* a namespace with versions of its own: its leaf's rows go, and
	 * the versions above that nothing reads any more */
	if (!rc && drop)
		rc = meta_nspace_drop(t->meta, entry_ino(t, parent, ip), NULL,
				      NULL);
	else if (!rc)
		rc = meta_dentry_delete(t->meta, &pv, pip->md.ino, name,
					entry_ino(t, parent, ip));
	if (!rc && !drop)
		rc = meta_inode_delete(t->meta, &v, ip->md.ino);
	if (!rc && meta_shared(t->meta))
		rc = meta_dir_unwatch(t->meta, ip->md.ino, 0);
	/* an entry in it (another node's, made meanwhile, too): the delete
	 * of its row fails while an entry names it. On a shared store the
	 * parent's count (the store's answer) comes back with the COMMIT:
	 * one round trip */
	if (!rc && meta_shared(t->meta)) {
		rc = inode_write_md_commit(t, pip, &pmd, 0);
		rc = raced(t, tally_txn_done(t, rc == 1 ? 0 : rc, -ENOTEMPTY));
	} else {
		if (!rc)
			rc = inode_write_md(t, pip, &pmd);
		rc = raced(t, tally_txn_end_as(t, rc, -ENOTEMPTY));
	}
	dcache_drop(t, parent, name);
	if (rc)
		goto out;
	if (drop)
		tally_nspace_dropped(t, entry_ino(t, parent, ip));
	pip->md = pmd;
	ip->md.nlink = 0;
	ip->freed = true;
	goto out;
out_check:
	if ((rc == -ENOTDIR || rc == -ENOTEMPTY) &&
	    unhint(t, &hinted, parent, name, 0, NULL)) {
		inode_put(t, ip);
		inode_put(t, pip);
		ip = pip = NULL;
		goto again;
	}
out:
	inode_put(t, ip);
	inode_put(t, pip);
	tally_unlock(t);
	return rc;
}

/* Whether nodes @a and @b are seen in one namespace (t->lock held). */
static bool same_nspace(struct tally *t, const struct inode *a,
			const struct inode *b)
{
	if (a->ino == TALLY_ROOT_INO || b->ino == TALLY_ROOT_INO)
		return a->ino == b->ino;
	return node_nspace(t, a->ino, &a->md) == node_nspace(t, b->ino, &b->md);
}

int tally_rename(struct tally *t, uint64_t parent, const char *name,
		 uint64_t newparent, const char *newname, unsigned flags)
{
	struct inode *pip = NULL, *npip = NULL, *sip = NULL, *dip = NULL;
	struct meta_inode pmd, npmd, smd, dmd;
	struct meta_ver pv, npv, dv;
	struct timespec ts = tally_now();
	bool freed = false, over_dir, shint = false, dhint = false, hinted;
	int rc;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	rc = tally_check_name(name);
	if (!rc)
		rc = tally_check_name(newname);
	if (rc)
		return rc;
	if (tally_view_ro(parent) || tally_view_ro(newparent))
		return -EROFS;
	if (tally_is_ctl_name(parent, name) ||
	    tally_is_ctl_name(newparent, newname))
		return -EPERM;
	if (newparent == TALLY_ROOT_INO) {
		rc = tally_nspace_name_taken(newname);
		if (rc)
			return rc;
	}
	tally_lock(t);
again:
	rc = parent_dir(t, parent, &pip);
	if (!rc)
		rc = parent_dir(t, newparent, &npip);
	if (!rc)
		rc = child(t, pip, parent, name, &sip, &shint);
	if (rc)
		goto out;
	if (!same_nspace(t, pip, npip)) {
		rc = -EXDEV;
		goto out;
	}
	rc = child(t, npip, newparent, newname, &dip, &dhint);
	if (rc == -ENOENT) {
		rc = 0;
		dip = NULL;
	} else if (rc) {
		goto out;
	}
	if (dip && (flags & RENAME_NOREPLACE)) {
		rc = -EEXIST;
		goto out_check;
	}
	if (!dip && (flags & RENAME_EXCHANGE)) {
		rc = -ENOENT;
		goto out_check;
	}
	if (dip == sip) {
		rc = 0; /* two names of one inode: POSIX says do nothing */
		goto out_check;
	}
	if (dip && !(flags & RENAME_EXCHANGE)) {
		if (S_ISDIR(sip->md.mode) && !S_ISDIR(dip->md.mode)) {
			rc = -ENOTDIR;
			goto out_check;
		}
		if (!S_ISDIR(sip->md.mode) && S_ISDIR(dip->md.mode)) {
			rc = -EISDIR;
			goto out_check;
		}
		if (S_ISDIR(dip->md.mode)) {
			dv = inode_ver(t, dip);
			if (newparent == TALLY_ROOT_INO)
				rc = tally_nspace_removable(t, newname, dip,
							    true, NULL);
			if (rc)
				goto out_check;
			rc = meta_dir_empty(t->meta, &dv, dip->md.ino);
			if (rc <= 0) {
				rc = rc ? rc : -ENOTEMPTY;
				goto out_check;
			}
		}
	}
	pmd = pip->md;
	pmd.mtime = pmd.ctime = ts;
	smd = sip->md;
	smd.ctime = ts;
	if (dip) {
		dmd = dip->md;
		dmd.ctime = ts;
	}
	if (t->rename_hook)
		t->rename_hook(t->hook_arg, sip->ino);
	dirnames_add(t, newparent, newname); /* as create_node() */
	pv = inode_ver(t, pip);
	npv = inode_ver(t, npip);
	rc = meta_begin(t->meta);
	if (rc)
		goto out;
	if (flags & RENAME_EXCHANGE) {
		rc = meta_dentry_set_ino(t->meta, &pv, pip->md.ino, name,
					 entry_ino(t, parent, sip),
					 entry_ino(t, parent, dip));
		if (!rc)
			rc = meta_dentry_set_ino(t->meta, &npv, npip->md.ino,
						 newname,
						 entry_ino(t, newparent, dip),
						 entry_ino(t, newparent, sip));
		if (!rc)
			rc = inode_write_md(t, dip, &dmd);
	} else {
		if (dip) {
			dv = inode_ver(t, dip);
			rc = meta_dentry_delete(t->meta, &npv, npip->md.ino,
						newname,
						entry_ino(t, newparent, dip));
			if (!rc && S_ISDIR(dip->md.mode)) {
				dmd.nlink = 0;
				rc = meta_inode_delete(t->meta, &dv,
						       dip->md.ino);
				freed = true;
			} else if (!rc) {
				rc = drop_link(t, dip, &dmd, &freed);
			}
		}
		if (!rc)
			rc = meta_dentry_move(t->meta, &pv, pip->md.ino, name,
					      entry_ino(t, parent, sip),
					      npip->md.ino, newname);
	}
	if (!rc)
		rc = inode_write_md(t, sip, &smd);
	if (!rc && pip != npip) {
		npmd = npip->md;
		npmd.mtime = npmd.ctime = ts;
		if (flags & RENAME_EXCHANGE) {
			/* a directory that changes parent moves its ".." */
			if (S_ISDIR(sip->md.mode) && !S_ISDIR(dip->md.mode)) {
				pmd.nlink--;
				npmd.nlink++;
			} else if (!S_ISDIR(sip->md.mode) &&
				   S_ISDIR(dip->md.mode)) {
				npmd.nlink--;
				pmd.nlink++;
			}
		} else if (S_ISDIR(sip->md.mode)) {
			pmd.nlink--;
			if (!dip)
				npmd.nlink++;
		}
		rc = inode_write_md(t, npip, &npmd);
	} else if (!rc && dip && S_ISDIR(dip->md.mode) &&
		   !(flags & RENAME_EXCHANGE)) {
		pmd.nlink--;
	}
	if (!rc)
		rc = inode_write_md(t, pip, &pmd);
	/* the directory it replaces got an entry on another node meanwhile
	 * (its row's delete fails while one names it), or the new parent
	 * went */
	over_dir = dip && S_ISDIR(dip->md.mode) && !(flags & RENAME_EXCHANGE);
	/* a new parent gone (its foreign key) is not run again: the node's
	 * copy of it would lead to the same failure; ENOENT */
	rc = raced(t,
		   tally_txn_end_as(t, rc, over_dir ? -ENOTEMPTY : -ENOLINK));
	if (rc == -ENOLINK)
		rc = -ENOENT;
	dcache_drop(t, parent, name);
	dcache_drop(t, newparent, newname);
	if (rc)
		goto out;
	pip->md = pmd;
	if (pip != npip)
		npip->md = npmd;
	sip->md = smd;
	if (dip) {
		dip->md = dmd;
		dip->freed = freed;
		if (freed)
			inode_drop_failed(t, dip);
	}
	goto out;
out_check:
	hinted = shint || dhint;
	if (rc != -EIO &&
	    unhint(t, &hinted, parent, name, newparent, newname)) {
		inode_put(t, dip);
		inode_put(t, sip);
		inode_put(t, npip);
		inode_put(t, pip);
		dip = sip = npip = pip = NULL;
		goto again;
	}
out:
	inode_put(t, dip);
	inode_put(t, sip);
	inode_put(t, npip);
	inode_put(t, pip);
	tally_unlock(t);
	return rc;
}

int tally_link(struct tally *t, uint64_t ino, uint64_t newparent,
	       const char *newname, struct stat *st)
{
	struct inode *ip = NULL, *npip = NULL, *nip;
	struct meta_inode md, npmd;
	struct meta_ver v, pv, sv;
	struct meta_map_at at = { 0 };
	bool open;
	int rc = tally_check_name(newname);

	if (rc)
		return rc;
	if (tally_view_ro(ino) || tally_view_ro(newparent))
		return -EROFS;
	if (tally_is_virtual(ino) || tally_is_ctl_name(newparent, newname))
		return -EPERM;
	tally_lock(t);
	rc = inode_get(t, ino, &ip);
	open = !rc && ip->opens > 0;
	tally_unlock(t);
	if (rc)
		return rc;
	if (S_ISDIR(ip->md.mode)) {
		rc = -EPERM;
		goto out_put;
	}
	/* a link into another namespace copies committed references: what
	 * the kernel holds of an open file is sent first (no lock held) */
	if (open && t->push)
		t->push(t->push_arg, ip->ino);
	pthread_rwlock_wrlock(&ip->io->rw);
	tally_lock(t);
	rc = parent_dir(t, newparent, &npip);
	if (!rc && newparent == TALLY_ROOT_INO)
		rc = -EPERM;
	if (!rc && (ip->freed || ip->md.nlink == 0))
		rc = -ENOENT;
	if (!rc)
		rc = meta_room(t->meta);
	/* a taken name is found by the entry's insert (-EEXIST, the whole
	 * transaction rolled back), as by a create: no lookup first */
	if (rc)
		goto out_unlock;
	npmd = npip->md;
	npmd.mtime = npmd.ctime = tally_now();
	pv = inode_ver(t, npip);
	if (same_nspace(t, ip, npip)) {
		md = ip->md;
		md.nlink++;
		md.ctime = npmd.ctime;
		dirnames_add(t, newparent, newname); /* as create_node() */
		rc = meta_begin(t->meta);
		if (!rc)
			rc = meta_dentry_insert(t->meta, &pv, npip->md.ino,
						newname, ip->md.ino);
		if (meta_shared(t->meta)) {
			/* the directory's times after the file's count,
			 * which comes back with the COMMIT: one round trip */
			if (!rc)
				rc = inode_write_md_after(t, npip, &npmd);
			if (!rc) {
				/* a row another node removed meanwhile is
				 * -ENOENT, and the entry is not made */
				rc = inode_write_md_commit(t, ip, &md,
							   META_F_ROW);
				rc = tally_txn_done(t, rc, -ENOENT);
			} else {
				rc = tally_txn_end(t, rc);
			}
		} else {
			if (!rc)
				rc = inode_write_md(t, ip, &md);
			if (!rc)
				rc = inode_write_md(t, npip, &npmd);
			rc = tally_txn_end(t, rc);
		}
		if (rc)
			goto out_unlock;
		ip->md = md;
		npip->md = npmd;
		ip->nlookup++;
		dcache_put(t, newparent, newname, ip->ino);
		inode_fill_stat(t, ip, st);
		goto out_unlock;
	}
	/* wait for flushes already started too (a close does not wait) */
	tally_unlock(t);
	rc = flush_commit(t, ip, 0);
	tally_lock(t);
	if (rc)
		goto out_unlock;
	rc = tally_ino_refill(t);
	if (rc)
		goto out_unlock;
	md = ip->md;
	md.ino = t->next_ino;
	md.nspace = node_nspace(t, newparent, &npip->md);
	md.nlink = 1;
	md.size = ip->dsize;
	md.alloc = ip->dalloc;
	md.ctime = npmd.ctime;
	v = tally_ver_of(t, &md);
	/* before the commit: an ENOMEM must leave nothing done */
	nip = inode_alloc(&md);
	if (!nip) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	nip->ino = node_of(tally_view(newparent), md.ino);
	dirnames_add(t, newparent, newname); /* as create_node() */
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_inode_put(t->meta, &v, &md);
	sv = inode_ver(t, ip);
	if (!rc && S_ISLNK(md.mode)) {
		char *target = NULL;

		rc = meta_target_get(t->meta, &sv, ip->md.ino, &target);
		if (!rc)
			rc = meta_target_set(t->meta, &v, md.ino, target);
		free(target);
	}
	if (!rc)
		rc = meta_blocks_copy_at(t->meta, &sv, &v, ip->md.ino, md.ino,
					 &at);
	/* a shared store: the source's committed size, read with the
	 * blocks copied (another node may have rewritten it since this
	 * node read its row: dsize is this node's view); no row, another
	 * node removed it */
	if (!rc && meta_shared(t->meta) && !at.known)
		rc = -ENOENT;
	if (!rc)
		rc = meta_dentry_insert(t->meta, &pv, npip->md.ino, newname,
					md.ino);
	if (!rc)
		rc = inode_write_md(t, npip, &npmd);
	rc = tally_txn_end(t, rc);
	t->next_ino++; /* spent whatever the outcome (create_node()) */
	if (rc) {
		inode_destroy(t, nip);
		goto out_unlock;
	}
	npip->md = npmd;
	if (at.known) {
		nip->md.size = nip->dsize = at.size;
		nip->md.alloc = nip->dalloc = at.alloc;
	}
	inode_insert(t, nip);
	nip->nlookup = 1;
	dcache_put(t, newparent, newname, nip->ino);
	inode_fill_stat(t, nip, st);
out_unlock:
	inode_put(t, npip);
	tally_unlock(t);
	pthread_rwlock_unlock(&ip->io->rw);
out_put:
	tally_lock(t);
	inode_put(t, ip);
	tally_unlock(t);
	return rc;
}

/* ------------------------------------------------------------------ */
/* directories */

struct readdir_ctx {
	struct tally *t;
	bool plus;
	tally_dir_fn fn;
	void *ctx;
	int64_t base;  /* cookie of an entry = dentry id + base */
	uint32_t view; /* the directory's, and so its entries' */
	bool root;     /* the root's listing: namespaces */
	bool emitted;  /* an entry was listed */
	int err;
};

/* One entry, its attributes from the row read with it unless the inode
 * is in memory with something of this node's newer (an open handle, data
 * in flight; on one host, always). readdirplus makes the kernel hold the
 * entry: the inode is kept (nlookup), made from the row. On a shared
 * store an idle inode in memory takes the row: given its stale size, the
 * kernel would read a file another node grew short until the attribute
 * timeout, and this node's reads stop at that size. */
static int readdir_entry(void *arg, int64_t cookie, const char *name,
			 const struct meta_inode *md)
{
	struct readdir_ctx *rc = arg;
	struct meta_inode row = *md;
	/* a namespace in the root: its root through its view */
	uint64_t node = rc->root ? tally_nspace_node(rc->t, md->nspace)
				 : node_of(rc->view, md->ino);
	struct inode *ip = inode_find(rc->t, node), *fresh = NULL;
	struct stat st;

	/* a namespace in the root: its row as its chain shows it */
	if (rc->root && !ip) {
		rc->err = tally_nspace_root_row(rc->t, &row);
		if (rc->err)
			return 1;
	}
	if (!ip && rc->plus) {
		ip = fresh = inode_alloc(&row);
		if (!ip) {
			rc->err = -ENOMEM;
			return 1;
		}
		fresh->ino = node;
	}
	if (ip && ip != fresh)
		inode_refresh(rc->t, ip, &row);
	if (ip) {
		inode_fill_stat(rc->t, ip, &st);
	} else {
		inode_md_stat(rc->t, &row, row.alloc, &st);
		st.st_ino = node;
	}
	if (rc->fn(rc->ctx, name, &st, (off_t)(cookie + rc->base))) {
		if (fresh)
			inode_destroy(rc->t, fresh);
		return 1;
	}
	rc->emitted = true;
	if (fresh)
		inode_insert(rc->t, fresh);
	if (rc->plus)
		ip->nlookup++;
	return 0;
}

int tally_readdir(struct tally *t, uint64_t ino, off_t off, bool plus,
		  tally_dir_fn fn, void *ctx)
{
	struct readdir_ctx rc = {
		.t = t,
		.plus = plus,
		.fn = fn,
		.ctx = ctx,
	};
	struct inode *ip = NULL;
	struct stat st;
	int err;

	if (ino == TALLY_CTLDIR_INO) {
		static const struct {
			const char *name;
			uint64_t ino;
		} ents[] = {
			{ ".", TALLY_CTLDIR_INO },
			{ "..", TALLY_ROOT_INO },
			{ "ctl", TALLY_CTL_INO },
			{ "status", TALLY_STATUS_INO },
			{ "metrics", TALLY_METRICS_INO },
		};
		for (; off < 5; off++) {
			if (ents[off].ino == TALLY_ROOT_INO) {
				err = tally_getattr(t, TALLY_ROOT_INO, &st);
				if (err)
					return err;
			} else {
				inode_virtual_stat(t, ents[off].ino, &st);
			}
			if (fn(ctx, ents[off].name, &st, off + 1))
				break;
		}
		return 0;
	}
	if (tally_is_virtual(ino))
		return -ENOTDIR;
	if (tally_view(ino) == TALLY_VIEW_SNAPDIRS)
		return snapdir_readdir(t, ino, off, plus, fn, ctx);
	tally_lock(t);
	err = inode_get(t, ino, &ip);
	if (err)
		goto out;
	if (!S_ISDIR(ip->md.mode)) {
		err = -ENOTDIR;
		goto out;
	}
	rc.root = ino == TALLY_ROOT_INO;
	rc.base = rc.root ? 3 : 2;
	rc.view = tally_view(ino);
	inode_fill_stat(t, ip, &st);
	if (off < 1) {
		if (fn(ctx, ".", &st, 1))
			goto out;
		off = 1;
	}
	if (off < 2) {
		if (fn(ctx, "..", &st, 2))
			goto out;
		off = 2;
	}
	if (ino == TALLY_ROOT_INO && off < 3) {
		inode_virtual_stat(t, TALLY_CTLDIR_INO, &st);
		if (fn(ctx, TALLY_CTLDIR_NAME, &st, 3))
			goto out;
		off = 3;
	}
	if (!ip->freed) {
		struct meta_ver v = inode_ver(t, ip);

		err = meta_readdir(t->meta, &v, ip->md.ino, off - rc.base,
				   readdir_entry, &rc);
		err = err > 0 ? rc.err : err;
		/* what was listed stands (with attributes, the kernel
		 * holds those entries): the failed one is asked again */
		if (err && rc.emitted)
			err = 0;
	}
out:
	inode_put(t, ip);
	tally_unlock(t);
	return err;
}
