/* SPDX-License-Identifier: MIT */
/*
 * Snapshots as the kernel sees them (docs/design.md 13.3, 13.4): each
 * snapshot has a view, given once, never again, kept in the store; the
 * files of snapshot NAME of namespace NS are read-only inodes whose node
 * ids and st_ino are view << TALLY_VIEW_SHIFT | ino, rooted at
 * /.snapshots/NS/NAME. /.snapshots and /.snapshots/NS are virtual
 * directories (the highest view, TALLY_VIEW_SNAPDIRS): the first lists
 * every namespace, the second its snapshots, oldest first.
 *
 * The table of views is read from the store at open and again after
 * every change of a namespace's snapshots (snapshot, rmsnapshot, a
 * rollback, automatic snapshots): a view whose snapshot is gone reads as
 * ESTALE, never as another version (a removal merges a snapshot's id
 * into its child's rows). A table that could not be read again is
 * empty until it can be. Locking: t->lock for the table.
 */
#include "core/fs/tally_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/array.h"
#include "core/util/log.h"

struct views_acc {
	struct view *v;
	size_t n, cap;
};

static int view_add(void *ctx, const struct meta_snapshot *sn)
{
	struct views_acc *a = ctx;
	char *name;

	/* no view (a store not opened for writing since snapshots had
	 * them): not browsable, never served as view 0, the namespace's */
	if (sn->view == 0 || sn->view > META_VIEW_MAX) {
		log_msg(LOG_WARNING,
			"snapshot '%s' has view %u: not shown in /.snapshots",
			sn->name, sn->view);
		return 0;
	}
	if (array_reserve(&a->v, &a->cap, a->n + 1, sizeof(*a->v)))
		return -ENOMEM;
	name = strdup(sn->name);
	if (!name)
		return -ENOMEM;
	a->v[a->n++] = (struct view){
		.view = sn->view,
		.nspace = sn->nspace,
		.v = { .id = sn->id, .depth = sn->depth },
		.created = sn->created,
		.name = name,
	};
	return 0;
}

static int view_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct view *)a)->view;
	uint32_t y = ((const struct view *)b)->view;

	return x < y ? -1 : x > y;
}

static void views_drop(struct view *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

void views_free(struct tally *t)
{
	views_drop(t->views, t->nviews);
	t->views = NULL;
	t->nviews = 0;
}

int views_load(struct tally *t)
{
	struct views_acc a = { 0 };
	int rc = meta_snapshots(t->meta, 0, false, view_add, &a);

	/* whatever the outcome, no view of before is answered for */
	views_free(t);
	t->views_stale = rc != 0;
	if (rc) {
		views_drop(a.v, a.n);
		return rc;
	}
	if (a.n)
		qsort(a.v, a.n, sizeof(*a.v), view_cmp);
	t->views = a.v;
	t->nviews = a.n;
	return 0;
}

/* The table, read again if the last reading failed. */
static int views_ready(struct tally *t)
{
	return t->views_stale ? views_load(t) : 0;
}

static const struct view *view_find(struct tally *t, uint32_t view)
{
	const struct view key = { .view = view };

	if (views_ready(t) || !t->nviews)
		return NULL;
	return bsearch(&key, t->views, t->nviews, sizeof(*t->views), view_cmp);
}

int view_ver(struct tally *t, uint64_t node, struct meta_ver *v)
{
	const struct view *w = view_find(t, tally_view(node));

	if (!w)
		return -ESTALE;
	*v = w->v;
	return 0;
}

void views_reload(struct tally *t)
{
	int rc = views_load(t);

	if (rc)
		log_msg(LOG_WARNING,
			"the snapshots' views: %s (read again at their next "
			"use)",
			strerror(-rc));
}

bool views_open(struct tally *t, uint64_t nspace, int64_t lo, int64_t hi)
{
	for (size_t i = 0; i < ((size_t)1 << t->ibits); i++)
		for (struct inode *ip = t->itable[i]; ip; ip = ip->next) {
			struct meta_ver v;

			const struct view *w;

			if (!tally_view_ro(ip->ino) || !ip->opens ||
			    view_ver(t, ip->ino, &v))
				continue;
			/* the snapshot's namespace (a file its rows name
			 * may have been made in another) */
			w = view_find(t, tally_view(ip->ino));
			if (w && w->nspace == nspace && v.id >= lo &&
			    v.id <= hi)
				return true;
		}
	return false;
}

int views_names(struct tally *t, uint64_t nspace, int64_t above, char ***names,
		size_t *n)
{
	size_t cap = 0;
	int rc = views_ready(t);

	for (size_t i = 0; !rc && i < t->nviews; i++) {
		const struct view *w = &t->views[i];
		char *name;

		if (w->nspace != nspace || w->v.id <= above)
			continue;
		if (array_reserve(names, &cap, *n + 1, sizeof(**names)))
			return -ENOMEM;
		name = strdup(w->name);
		if (!name)
			return -ENOMEM;
		(*names)[(*n)++] = name;
	}
	return rc;
}

int view_named(struct tally *t, uint64_t nspace, const char *name,
	       uint32_t *view)
{
	int rc = views_ready(t);

	for (size_t i = 0; !rc && i < t->nviews; i++)
		if (t->views[i].nspace == nspace &&
		    !strcmp(t->views[i].name, name)) {
			*view = t->views[i].view;
			return 0;
		}
	return rc ? rc : -ENOENT;
}

/* ------------------------------------------------------------------ */
/* /.snapshots and /.snapshots/NS */

/* Whether namespace @nspace still is (t->lock held). */
static int nspace_is(struct tally *t, uint64_t nspace)
{
	struct meta_ver v;
	int rc = meta_nspace_ver(t->meta, nspace, &v);

	return rc == -ENOENT ? -ENOENT : rc;
}

int snapdir_getattr(struct tally *t, uint64_t ino, struct stat *st)
{
	int rc = 0;

	if (ino != TALLY_SNAPDIR_INO) {
		tally_lock(t);
		rc = nspace_is(t, node_ino(ino));
		tally_unlock(t);
	}
	if (!rc)
		inode_virtual_stat(t, ino, st);
	return rc;
}

/* The root of namespace @nspace's snapshot seen through @view in memory
 * (t->lock held): the namespace's root (a branch's may be another's). */
static int snap_root(struct tally *t, uint32_t view, uint64_t nspace,
		     struct inode **ip)
{
	return inode_get(
		t, node_of(view, node_ino(tally_nspace_node(t, nspace))), ip);
}

int snapdir_lookup(struct tally *t, uint64_t parent, const char *name,
		   struct stat *st)
{
	struct meta_inode md;
	int rc;

	tally_lock(t);
	if (parent == TALLY_SNAPDIR_INO) {
		rc = tally_nspace_row(t, name, &md);
		if (!rc)
			inode_virtual_stat(
				t, node_of(TALLY_VIEW_SNAPDIRS, md.nspace), st);
	} else {
		uint32_t view = 0;
		struct inode *ip;

		rc = nspace_is(t, node_ino(parent));
		if (!rc)
			rc = view_named(t, node_ino(parent), name, &view);
		if (!rc)
			rc = snap_root(t, view, node_ino(parent), &ip);
		if (!rc) {
			ip->nlookup++;
			inode_fill_stat(t, ip, st);
			inode_put(t, ip);
		}
	}
	tally_unlock(t);
	return rc;
}

struct ns_list {
	struct tally *t;
	tally_dir_fn fn;
	void *ctx;
};

/* A namespace of the root's entries, as a directory of /.snapshots */
static int ns_entry(void *arg, int64_t cookie, const char *name,
		    const struct meta_inode *md)
{
	struct ns_list *l = arg;
	struct stat st;

	if (!S_ISDIR(md->mode))
		return 0;
	inode_virtual_stat(l->t, node_of(TALLY_VIEW_SNAPDIRS, md->nspace), &st);
	return l->fn(l->ctx, name, &st, (off_t)cookie + 2);
}

int snapdir_readdir(struct tally *t, uint64_t ino, off_t off, bool plus,
		    tally_dir_fn fn, void *ctx)
{
	struct stat st;
	int rc = snapdir_getattr(t, ino, &st);

	if (rc)
		return rc;
	if (off < 1 && fn(ctx, ".", &st, 1))
		return 0;
	if (off < 2) {
		rc = ino == TALLY_SNAPDIR_INO
			     ? tally_getattr(t, TALLY_ROOT_INO, &st)
			     : snapdir_getattr(t, TALLY_SNAPDIR_INO, &st);
		if (rc || fn(ctx, "..", &st, 2))
			return rc;
		off = 2;
	}
	tally_lock(t);
	if (ino == TALLY_SNAPDIR_INO) {
		struct ns_list l = { t, fn, ctx };

		rc = meta_readdir(t->meta, &META_VER_ROOT, TALLY_ROOT_INO,
				  off - 2, ns_entry, &l);
		rc = rc > 0 ? 0 : rc;
	} else {
		bool full = false, emitted = false;

		rc = views_ready(t);
		/* a snapshot's cookie: its view, after the two above */
		for (size_t i = 0; !rc && !full && i < t->nviews; i++) {
			const struct view *w = &t->views[i];
			struct inode *ip;

			if (w->nspace != node_ino(ino) ||
			    (off_t)w->view + 2 <= off)
				continue;
			rc = snap_root(t, w->view, w->nspace, &ip);
			if (rc) {
				/* what was listed stands (the kernel holds
				 * those entries); this one is asked again */
				rc = emitted ? 0 : rc;
				break;
			}
			inode_fill_stat(t, ip, &st);
			full = fn(ctx, w->name, &st, (off_t)w->view + 2);
			emitted = !full;
			/* with attributes: the kernel holds the entry */
			if (!full && plus)
				ip->nlookup++;
			inode_put(t, ip);
		}
	}
	tally_unlock(t);
	return rc;
}
