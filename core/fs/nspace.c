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
#include "core/util/log.h"
#include "core/util/array.h"
#include "core/util/progress.h"

/* The leaf namespace @nspace writes into, its chain's depth and the
 * leaf's born; NULL: its first version, no chain (t->lock held). */
static int nsleaf_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct meta_nsleaf *)a)->nspace;
	uint64_t y = ((const struct meta_nsleaf *)b)->nspace;

	return x < y ? -1 : x > y;
}

static const struct meta_nsleaf *nsleaf_find(struct tally *t, uint64_t nspace)
{
	const struct meta_nsleaf key = { .nspace = nspace };

	return t->nnsleaves ? bsearch(&key, t->nsleaves, t->nnsleaves,
				      sizeof(*t->nsleaves), nsleaf_cmp)
			    : NULL;
}

struct meta_ver tally_ver_in(struct tally *t, uint64_t nspace,
			     const struct meta_inode *md)
{
	const struct meta_nsleaf *l;

	if (md->ino == TALLY_ROOT_INO)
		return META_VER_ROOT;
	l = nsleaf_find(t, nspace);
	/* no chain: the namespace's first version, its root's number */
	if (!l || l->leaf.id == 0)
		return (struct meta_ver){ .id = (int64_t)nspace };
	/* made in the leaf: no row of it in any version above, its calls
	 * read the leaf's rows alone */
	if (md->ino >= l->born)
		return (struct meta_ver){ .id = l->leaf.id, .depth = 1 };
	return l->leaf;
}

struct meta_ver tally_ver_of(struct tally *t, const struct meta_inode *md)
{
	return tally_ver_in(t, md->nspace, md);
}

uint64_t tally_view_nspace(struct tally *t, uint32_t view)
{
	/* a few namespaces have views: a walk of the table */
	for (size_t i = 0; i < t->nnsleaves; i++)
		if (t->nsleaves[i].view == view)
			return t->nsleaves[i].nspace;
	return 0;
}

uint64_t tally_nspace_node(struct tally *t, uint64_t nspace)
{
	const struct meta_nsleaf *l = nsleaf_find(t, nspace);

	return l ? node_of(l->view, l->root) : nspace;
}

int tally_inode_row(struct tally *t, uint64_t ino, struct meta_inode *md)
{
	struct meta_ver v;
	int rc;

	/* seen through a snapshot's view: the row its version reads */
	if (tally_view_ro(ino)) {
		rc = view_ver(t, ino, &v);
		return rc ? rc : meta_inode_get(t->meta, &v, node_ino(ino), md);
	}
	/* the first row names the namespace it was made in; with a chain,
	 * the row of the nearest version is the inode as the namespace it
	 * is seen in (its view's) sees it */
	rc = meta_inode_get(t->meta, NULL, node_ino(ino), md);
	if (!rc)
		rc = node_ver(t, ino, md, &v);
	if (rc)
		return rc;
	return v.depth > 1 ? meta_inode_get(t->meta, &v, node_ino(ino), md) : 0;
}

int tally_nspace_root_row(struct tally *t, struct meta_inode *md)
{
	/* md->nspace: the namespace, whose root may be another's too */
	return tally_ver_of(t, md).depth > 1
		       ? tally_inode_row(t, tally_nspace_node(t, md->nspace),
					 md)
		       : 0;
}

struct meta_ver tally_nspace_leaf(struct tally *t, uint64_t nspace)
{
	const struct meta_nsleaf *l = nsleaf_find(t, nspace);

	return l ? l->leaf : (struct meta_ver){ .id = (int64_t)nspace };
}

static uint64_t nsleaf_born(struct tally *t, uint64_t nspace)
{
	const struct meta_nsleaf *l = nsleaf_find(t, nspace);

	return l ? l->born : 0;
}

/* Room for one more namespace with a chain, made before the transaction
 * that gives it one: its leaf is then set in memory without a failure. */
static int nsleaf_reserve(struct tally *t, size_t n)
{
	return array_reserve(&t->nsleaves, &t->nsleaves_cap, t->nnsleaves + n,
			     sizeof(*t->nsleaves))
		       ? -ENOMEM
		       : 0;
}

/* Namespace @l->nspace as @l says, in its place (nsleaf_reserve() made
 * room). */
static void nsleaf_put(struct tally *t, const struct meta_nsleaf *l)
{
	size_t i = 0;

	while (i < t->nnsleaves && t->nsleaves[i].nspace < l->nspace)
		i++;
	if (i == t->nnsleaves || t->nsleaves[i].nspace != l->nspace) {
		memmove(&t->nsleaves[i + 1], &t->nsleaves[i],
			(t->nnsleaves - i) * sizeof(*t->nsleaves));
		t->nnsleaves++;
	}
	t->nsleaves[i] = *l;
}

/* Namespace @nspace writes into @v from now on (nsleaf_reserve() made
 * room): kept when it has a chain, dropped when it is back to its first
 * version. */
static void nsleaf_set(struct tally *t, uint64_t nspace, struct meta_ver v,
		       uint64_t born)
{
	size_t i = 0;

	while (i < t->nnsleaves && t->nsleaves[i].nspace < nspace)
		i++;
	if (i < t->nnsleaves && t->nsleaves[i].nspace == nspace) {
		/* a namespace with a view is kept whatever its depth */
		if (v.depth > 1 || t->nsleaves[i].view ||
		    t->nsleaves[i].root != nspace) {
			t->nsleaves[i].leaf = v;
			t->nsleaves[i].born = born;
			return;
		}
		memmove(&t->nsleaves[i], &t->nsleaves[i + 1],
			(t->nnsleaves - i - 1) * sizeof(*t->nsleaves));
		t->nnsleaves--;
		return;
	}
	if (v.depth > 1)
		nsleaf_put(t, &(struct meta_nsleaf){ .nspace = nspace,
						     .root = nspace,
						     .leaf = v,
						     .born = born });
}

struct leaves {
	struct meta_nsleaf *v;
	size_t n, cap;
};

static int leaf_add(void *ctx, const struct meta_nsleaf *leaf)
{
	struct leaves *l = ctx;

	if (array_reserve(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return -ENOMEM;
	l->v[l->n++] = *leaf;
	return 0;
}

int tally_nspace_leaves_load(struct tally *t)
{
	struct leaves l = { 0 };
	int rc = meta_nspace_leaves(t->meta, leaf_add, &l);

	if (rc) {
		free(l.v);
		return rc;
	}
	free(t->nsleaves);
	t->nsleaves = l.v;
	t->nnsleaves = l.n;
	t->nsleaves_cap = l.cap;
	return 0;
}

int tally_nspace_name_ok(const char *name)
{
	int rc = tally_check_name(name);

	if (rc)
		return rc == -ENAMETOOLONG ? rc : -EINVAL;
	if (!strcmp(name, ".") || !strcmp(name, "..") ||
	    !strcmp(name, TALLY_CTLDIR_NAME))
		return -EINVAL;
	return 0;
}

/* A snapshot's name: a file name, not "." or "..", no '@' (NS@NAME names
 * it), and, for a user's new one (@user), not "auto-..." (the automatic
 * snapshots' names). */
static int snapshot_name_ok(const char *name, bool user)
{
	int rc = tally_check_name(name);

	if (rc)
		return rc == -ENAMETOOLONG ? rc : -EINVAL;
	if (!strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '@') ||
	    (user && !strncmp(name, "auto-", 5)))
		return -EINVAL;
	return 0;
}

int tally_nspace_row(struct tally *t, const char *ns, struct meta_inode *md)
{
	uint64_t id;
	int rc = meta_dentry_lookup(t->meta, &META_VER_ROOT, TALLY_ROOT_INO, ns,
				    &id);

	if (!rc)
		rc = tally_inode_row(t, tally_nspace_node(t, id), md);
	if (!rc)
		md->nspace = id; /* a root another namespace may share */
	return rc;
}

/* The checks of a change of namespace @ns's versions named @name (@user:
 * a user's new snapshot). */
static int version_change_ok(struct tally *t, const char *ns, const char *name,
			     bool user)
{
	int rc = tally_nspace_name_ok(ns);

	if (!rc)
		rc = snapshot_name_ok(name, user);
	if (!rc && meta_shared(t->meta)) {
		log_msg(LOG_ERR,
			"snapshots of a shared store wait for the leaf lock "
			"of several hosts (docs/design.md 13.5): refused");
		rc = -EOPNOTSUPP;
	}
	return rc;
}

/* version_change_ok(), then what is buffered committed. */
static int version_change_drained(struct tally *t, const char *ns,
				  const char *name, bool user)
{
	int rc = version_change_ok(t, ns, name, user);

	return rc ? rc : tally_drain(t, NULL, 0);
}

/* The kernel told to forget /.snapshots/NS/@name of namespace @nspace and
 * what it cached below (no lock held; @inval zero: nothing changed). */
static void snapdir_forget(const struct tally_inval *inval, uint64_t nspace,
			   const char *name)
{
	if (inval->entry)
		inval->entry(inval->arg, node_of(TALLY_VIEW_SNAPDIRS, nspace),
			     name);
}

int tally_snapshot_as(struct tally *t, const char *ns, const char *name,
		      bool user, int64_t *ver)
{
	struct tally_inval inval = { 0 };
	struct meta_inode md = { 0 }; /* its nspace read by snapdir_forget() */
	struct meta_ver v, sv;
	int64_t child;
	/* committed data only: drained first (a write after it goes on
	 * into the new leaf, as in any snapshot taken while a file is
	 * open) */
	int rc = version_change_drained(t, ns, name, user);

	if (rc)
		return rc;
	tally_lock(t);
	rc = tally_nspace_row(t, ns, &md);
	if (!rc) {
		rc = meta_snapshot_find(t->meta, md.nspace, name, &sv);
		rc = rc == -ENOENT ? 0 : (rc ? rc : -EEXIST);
	}
	if (!rc)
		rc = nsleaf_reserve(t, 1);
	if (!rc)
		rc = meta_room(t->meta);
	if (rc)
		goto out;
	v = tally_nspace_leaf(t, md.nspace);
	rc = meta_begin(t->meta);
	/* an inode made from now on is the new leaf's alone */
	if (!rc)
		rc = meta_version_freeze(t->meta, v.id, name, t->next_ino,
					 &child);
	rc = tally_txn_end(t, rc);
	if (!rc) {
		/* every later call of the namespace's inodes: the new leaf */
		nsleaf_set(t, md.nspace,
			   (struct meta_ver){ .id = child,
					      .depth = (v.depth ? v.depth : 1) +
						       1 },
			   t->next_ino);
		*ver = v.id;
		/* a snapshot that returned survives power loss */
		rc = tally_txn_sync(t);
		views_reload(t);
		inval = t->inval;
	}
out:
	tally_unlock(t);
	/* a lookup of /.snapshots/NS/NAME before it was may be cached */
	snapdir_forget(&inval, md.nspace, name);
	return rc;
}

int tally_snapshot(struct tally *t, const char *ns, const char *name,
		   int64_t *ver)
{
	return tally_snapshot_as(t, ns, name, true, ver);
}

/* Namespace @ns's root row in *@md and its snapshot @name's version in
 * *@sv, then room for a transaction: the opening of a change of a
 * snapshot (takes t->lock, held on return whatever the outcome). */
static int snapshot_open(struct tally *t, const char *ns, const char *name,
			 struct meta_inode *md, struct meta_ver *sv)
{
	int rc;

	tally_lock(t);
	rc = tally_nspace_row(t, ns, md);
	if (!rc)
		rc = meta_snapshot_find(t->meta, md->nspace, name, sv);
	return rc ? rc : meta_room(t->meta);
}

int tally_rmsnapshot(struct tally *t, const char *ns, const char *name)
{
	struct tally_inval inval = { 0 };
	struct meta_inode md = { 0 }; /* its nspace read by snapdir_forget() */
	struct meta_ver v, sv;
	uint64_t born;
	int64_t child;
	int rc = version_change_ok(t, ns, name, false);

	if (rc)
		return rc;
	rc = snapshot_open(t, ns, name, &md, &sv);
	/* a file of it open (/.snapshots/NS/NAME) */
	if (!rc && views_open(t, md.nspace, sv.id, sv.id))
		rc = -EBUSY;
	if (rc)
		goto out;
	v = tally_nspace_leaf(t, md.nspace);
	born = nsleaf_born(t, md.nspace);
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_version_merge(t->meta, sv.id, &child);
	/* its leaf merged into the snapshot: the snapshot's id is the
	 * leaf's, and the inodes made in it since its own birth its own */
	if (!rc && child == v.id)
		rc = meta_version_born(t->meta, sv.id, &born);
	rc = tally_txn_end(t, rc);
	/* the chain one shorter (a leaf that is not the child keeps its id
	 * and birth); no child: a branch point that lost its name, the
	 * chain as it was */
	if (!rc && child)
		nsleaf_set(t, md.nspace,
			   (struct meta_ver){ .id = child == v.id ? sv.id
								  : v.id,
					      .depth = v.depth - 1 },
			   born);
	if (!rc) {
		rc = tally_txn_sync(t); /* durable too */
		views_reload(t);
		inval = t->inval;
	}
out:
	tally_unlock(t);
	/* the kernel forgets /.snapshots/NS/NAME and all below it */
	snapdir_forget(&inval, md.nspace, name);
	return rc;
}

/* The names and inodes a rollback changed, to drop from the caches. */
struct gone {
	struct gone_name {
		uint64_t parent;
		char *name;
	} * names;
	size_t nnames, names_cap;
	uint64_t *inos;
	size_t ninos, inos_cap;
	char **snaps; /* the later snapshots, with drop-later */
	size_t nsnaps;
};

static int gone_name(void *ctx, uint64_t parent, const char *name, size_t len)
{
	struct gone *g = ctx;
	char *copy;

	if (array_reserve(&g->names, &g->names_cap, g->nnames + 1,
			  sizeof(*g->names)))
		return -ENOMEM;
	copy = strndup(name, len);
	if (!copy)
		return -ENOMEM;
	g->names[g->nnames++] = (struct gone_name){ parent, copy };
	return 0;
}

static void gone_free(struct gone *g)
{
	for (size_t i = 0; i < g->nnames; i++)
		free(g->names[i].name);
	free(g->names);
	free(g->inos);
	for (size_t i = 0; i < g->nsnaps; i++)
		free(g->snaps[i]);
	free(g->snaps);
}

/* Whether an inode of namespace @nspace is open, or holds data or a
 * shrink not committed yet (t->lock held). */
static bool nspace_busy(struct tally *t, uint64_t nspace)
{
	for (size_t i = 0; i < ((size_t)1 << t->ibits); i++)
		for (struct inode *ip = t->itable[i]; ip; ip = ip->next)
			if (!tally_view_ro(ip->ino) &&
			    node_nspace(t, ip->ino, &ip->md) == nspace &&
			    (ip->opens || ip->ndirty || ip->nfailed ||
			     ip->flight_blocks || ip->truncated))
				return true;
	return false;
}

static int snapshot_seen(void *ctx, const struct meta_snapshot *sn)
{
	(void)sn;
	*(bool *)ctx = true;
	return 1; /* one is enough */
}

int tally_nspace_removable(struct tally *t, const char *name,
			   const struct inode *ip, bool replace, bool *drop)
{
	uint64_t nspace = node_nspace(t, ip->ino, &ip->md);
	bool snaps = false, chained;
	int rc = meta_snapshots(t->meta, nspace, false, snapshot_seen, &snaps);

	if (rc < 0)
		return rc;
	if (snaps) {
		log_msg(LOG_NOTICE,
			"namespace '%s' has snapshots: it is not removed or "
			"replaced until they are (rmsnapshot)",
			name);
		return -EBUSY;
	}
	chained = tally_nspace_leaf(t, nspace).id >= META_VER_CHILD_MIN;
	if (chained && replace) {
		log_msg(LOG_NOTICE,
			"namespace '%s' shares versions with a branch: rmdir "
			"it before a rename takes its name",
			name);
		return -EBUSY;
	}
	/* its leaf's rows go with it: a file of it open keeps them */
	if (chained && nspace_busy(t, nspace))
		return -EBUSY;
	if (drop)
		*drop = chained;
	return 0;
}

void tally_nspace_dropped(struct tally *t, uint64_t nspace)
{
	size_t i = 0;

	while (i < t->nnsleaves && t->nsleaves[i].nspace != nspace)
		i++;
	if (i == t->nnsleaves)
		return;
	memmove(&t->nsleaves[i], &t->nsleaves[i + 1],
		(t->nnsleaves - i - 1) * sizeof(*t->nsleaves));
	t->nnsleaves--;
}

/*
 * After a rollback of @nspace: each of its inodes in memory made again
 * from the row it reads now (freed no more, if it was removed since the
 * snapshot), or marked freed when it has none (made since the
 * snapshot), and its number kept in @g for the kernel; the
 * names the rollback changed out of the entry cache (t->lock held).
 */
static void nspace_reload(struct tally *t, uint64_t nspace, struct gone *g)
{
	for (size_t i = 0; i < ((size_t)1 << t->ibits); i++)
		for (struct inode *ip = t->itable[i]; ip; ip = ip->next) {
			struct meta_inode md;

			if (tally_view_ro(ip->ino) ||
			    node_nspace(t, ip->ino, &ip->md) != nspace)
				continue;
			/* a file removed since the snapshot is back */
			if (tally_inode_row(t, ip->ino, &md) == 0) {
				inode_take_row(ip, &md);
				ip->freed = false;
			} else {
				ip->md.nlink = 0;
				ip->freed = true;
			}
			/* no room: the kernel's cache of it times out */
			if (!array_reserve(&g->inos, &g->inos_cap, g->ninos + 1,
					   sizeof(*g->inos)))
				g->inos[g->ninos++] = ip->ino;
		}
	for (size_t i = 0; i < g->nnames; i++)
		dcache_drop(t, g->names[i].parent, g->names[i].name);
	dirnames_forget_all(t);
}

int tally_rollback(struct tally *t, const char *ns, const char *name,
		   bool later)
{
	struct tally_inval inval = { 0 };
	struct gone g = { 0 };
	struct meta_inode md = { 0 }; /* its nspace read by snapdir_forget() */
	struct meta_ver v, sv;
	/* what was written before it is committed, and then dropped: the
	 * kernel's dirty pages are not written back over the old state */
	int rc = version_change_drained(t, ns, name, false);

	if (rc)
		return rc;
	rc = snapshot_open(t, ns, name, &md, &sv);
	if (!rc && nspace_busy(t, md.nspace))
		rc = -EBUSY; /* an open file would write into what went */
	/* a file open in a later snapshot, which goes with drop-later */
	if (!rc && later && views_open(t, md.nspace, sv.id + 1, INT64_MAX))
		rc = -EBUSY;
	if (!rc && later)
		rc = views_names(t, md.nspace, sv.id, &g.snaps, &g.nsnaps);
	if (!rc)
		rc = nsleaf_reserve(t, 1);
	if (rc)
		goto out;
	v = tally_nspace_leaf(t, md.nspace);
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_version_rollback(t->meta, v.id, sv.id, later,
					   gone_name, &g);
	rc = tally_txn_end(t, rc);
	if (!rc) {
		/* the same leaf, now the snapshot's child; its born stays a
		 * bound of what was made in it */
		nsleaf_set(t, md.nspace,
			   (struct meta_ver){ .id = v.id,
					      .depth = sv.depth + 1 },
			   nsleaf_born(t, md.nspace));
		nspace_reload(t, md.nspace, &g);
		inval = t->inval;
		rc = tally_txn_sync(t); /* durable when it returns */
		views_reload(t);
	}
out:
	tally_unlock(t);
	/*
	 * The kernel forgets what went: the namespace's entry in the root,
	 * which prunes every unused entry below it, and so every inode of
	 * it no process holds (a FUSE inode goes with its last entry: with
	 * the writeback cache, the kernel keeps the size of a file it
	 * holds, whatever getattr says); then the attributes and pages of
	 * the ones still held (a working directory). No file of it is open.
	 */
	if (inval.entry)
		inval.entry(inval.arg, TALLY_ROOT_INO, ns);
	for (size_t i = 0; inval.inode && i < g.ninos; i++)
		inval.inode(inval.arg, g.inos[i]);
	/* and the later snapshots that went: /.snapshots/NS/NAME */
	for (size_t i = 0; i < g.nsnaps; i++)
		snapdir_forget(&inval, md.nspace, g.snaps[i]);
	gone_free(&g);
	return rc;
}

struct snap_walk {
	struct meta *m;
	const char *only;
	int (*fn)(void *ctx, const char *ns, const struct meta_snapshot *sn);
	void *ctx;
	const char *ns; /* the namespace walked */
	unsigned found;
};

static int snap_one(void *ctx, const struct meta_snapshot *sn)
{
	struct snap_walk *w = ctx;

	return w->fn(w->ctx, w->ns, sn);
}

static int snap_nspace(void *ctx, int64_t cookie, const char *name,
		       const struct meta_inode *md)
{
	struct snap_walk *w = ctx;

	(void)cookie;
	if (w->only && strcmp(w->only, name))
		return 0;
	w->found++;
	w->ns = name;
	return meta_snapshots(w->m, md->nspace, true, snap_one, w);
}

int tally_snapshots(struct tally *t, const char *ns,
		    int (*fn)(void *ctx, const char *ns,
			      const struct meta_snapshot *sn),
		    void *ctx)
{
	struct snap_walk w = { t->meta, ns, fn, ctx, NULL, 0 };
	int rc;

	tally_lock(t);
	rc = meta_readdir(t->meta, &META_VER_ROOT, TALLY_ROOT_INO, 0,
			  snap_nspace, &w);
	tally_unlock(t);
	if (!rc && ns && !w.found)
		rc = -ENOENT;
	return rc;
}

/* Room for a transaction, and the root in *@root with its row as a new
 * namespace leaves it in *@md (t->lock held). */
static int root_gains(struct tally *t, struct inode **root,
		      struct meta_inode *md)
{
	int rc = meta_room(t->meta);

	if (!rc)
		rc = inode_get(t, TALLY_ROOT_INO, root);
	if (rc)
		return rc;
	*md = (*root)->md;
	md->nlink++;
	md->mtime = md->ctime = tally_now();
	return 0;
}

/*
 * Namespace @src branched as @dst in O(1) (t->lock held, the store
 * drained): @src's leaf frozen, a new leaf for each, @dst a namespace
 * of a new id sharing @src's root through a view of its own.
 */
static int branch_versions(struct tally *t, uint64_t src, const char *dst)
{
	struct meta_nsleaf l = { 0 };
	struct meta_ver v = tally_nspace_leaf(t, src);
	struct inode *root = NULL;
	struct meta_inode md;
	int64_t child = 0;
	int rc = nsleaf_reserve(t, 2);

	if (!rc)
		rc = tally_ino_refill(t);
	if (!rc)
		rc = root_gains(t, &root, &md);
	if (rc)
		goto out;
	/* a number no inode will have names the new namespace */
	l.nspace = t->next_ino++;
	l.born = t->next_ino;
	l.root = node_ino(tally_nspace_node(t, src));
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_version_branch(t->meta, v.id, l.nspace, l.root, dst,
					 l.born, &child, &l.leaf.id, &l.view);
	if (!rc)
		rc = inode_write_md(t, root, &md);
	rc = tally_txn_end(t, rc);
	if (rc)
		goto out;
	root->md = md;
	/* both leaves one deeper than the frozen one */
	l.leaf.depth = (v.depth ? v.depth : 1) + 1;
	nsleaf_set(t, src,
		   (struct meta_ver){ .id = child, .depth = l.leaf.depth },
		   l.born);
	nsleaf_put(t, &l);
	dirnames_add(t, TALLY_ROOT_INO, dst);
	rc = tally_txn_sync(t); /* a branch that returned survives power loss */
out:
	inode_put(t, root);
	return rc;
}

int tally_branch(struct tally *t, const char *src, const char *dst,
		 uint64_t *inodes)
{
	struct inode *root = NULL;
	struct progress_job *pj;
	struct meta_inode md;
	struct meta_ver leaf = { 0 };
	uint64_t src_ino, dst_ino, next, newroot = 0, count = 0;
	int rc = tally_nspace_name_ok(src);

	if (!rc)
		rc = tally_nspace_name_ok(dst);
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
	/* one host: in O(1), a version each (docs/design.md 13.2) */
	if (!rc && !meta_shared(t->meta)) {
		rc = branch_versions(t, src_ino, dst);
		*inodes = 0;
		goto out;
	}
	if (!rc)
		rc = tally_inode_row(t, src_ino, &md);
	/* with snapshots: what its leaf shows, copied */
	if (!rc)
		leaf = tally_ver_of(t, &md);
	if (!rc)
		rc = root_gains(t, &root, &md);
	if (rc)
		goto out;
	next = t->next_ino;
	rc = meta_begin(t->meta);
	if (!rc)
		rc = meta_branch(t->meta, src_ino, &leaf, dst, &next, &newroot,
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
		struct meta_inode md;
		struct meta_ver v;
		uint64_t child;
		int rc;

		if (!strcmp(p, ".") || !strcmp(p, ".."))
			return -EINVAL;
		rc = tally_check_name(p);
		if (rc)
			return rc;
		/* /.snapshots/NS/NAME: snapshot NAME's root, seen through
		 * its view, as in the mount */
		if (cur == TALLY_ROOT_INO && !strcmp(p, TALLY_SNAPDIR_NAME)) {
			char *ns = strtok_r(NULL, "/", &save);
			char *name = ns ? strtok_r(NULL, "/", &save) : NULL;
			uint32_t view;

			if (!name)
				return -EINVAL; /* a directory of names only */
			rc = tally_nspace_row(t, ns, &md);
			if (!rc)
				rc = view_named(t, md.nspace, name, &view);
			if (rc)
				return rc;
			up = cur;
			cur = node_of(view, node_ino(tally_nspace_node(
						    t, md.nspace)));
			used += (size_t)snprintf(canon + used, size - used,
						 "%s/%s/%s", p, ns, name);
			if (used >= size)
				return -ENAMETOOLONG;
			continue;
		}
		rc = tally_inode_row(t, cur, &md);
		if (rc)
			return rc;
		if (!S_ISDIR(md.mode))
			return S_ISLNK(md.mode) ? -EINVAL : -ENOTDIR;
		up = cur;
		rc = node_ver(t, cur, &md, &v);
		if (!rc)
			rc = meta_dentry_lookup(t->meta, &v, node_ino(cur), p,
						&child);
		if (rc)
			return rc;
		cur = tally_child_node(t, up, child);
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
	if (!rc && tally_view_ro(ino))
		rc = -EROFS; /* a snapshot's: its rows hold it already */
	if (rc)
		goto out;
	path = canon;
	rc = tally_inode_row(t, ino, &md);
	if (rc)
		goto out;
	if (parent == TALLY_ROOT_INO) {
		rc = meta_nspace_objects(t->meta, node_nspace(t, ino, &md),
					 pin_collect, &a);
	} else if (S_ISREG(md.mode)) {
		struct meta_bref *map = NULL;
		struct meta_ver v;
		size_t n = 0;

		rc = node_ver(t, ino, &md, &v);
		if (!rc)
			rc = meta_blocks_load(t->meta, &v, node_ino(ino), &map,
					      &n);
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

int tally_resolve(struct tally *t, const char *path, uint64_t *ino,
		  struct meta_ver *at)
{
	char canon[4096];
	uint64_t parent, node;
	int rc;

	tally_lock(t);
	rc = resolve(t, path, &node, &parent, canon, sizeof(canon));
	*at = (struct meta_ver){ 0 };
	if (!rc && tally_view_ro(node)) {
		rc = view_ver(t, node, at);
	} else if (!rc && tally_view(node)) {
		/* a branch's: the leaf of the namespace it is seen in */
		struct meta_inode md;

		rc = tally_inode_row(t, node, &md);
		if (!rc)
			rc = node_ver(t, node, &md, at);
	}
	tally_unlock(t);
	*ino = node_ino(node);
	return rc;
}
