/* SPDX-License-Identifier: MIT */
/*
 * diff A B (docs/design.md 13.2): the paths that differ between two
 * versions of one namespace, A and B each the namespace (its leaf) or
 * one of its snapshots (NS@NAME). The versions between the older and the
 * newer on the newer's chain hold, in their own rows, every key that
 * changed: the names written or removed, the inodes whose row, extents
 * or xattrs were written. Each is read in both versions and turned into
 * paths; nothing else of the tree is read, so the cost follows the
 * changes, not the namespace (a directory added or removed lists what it
 * holds: that is output).
 */
#include "core/fs/tally_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/meta/meta.h"
#include "core/util/array.h"

#define PATH_DEPTH_MAX 4096

struct dkey {
	uint64_t parent;
	char *name;
};

struct diff {
	struct meta *m;
	uint64_t root;		  /* the namespace's root directory */
	struct meta_ver vo, vn;	  /* from A, to B */
	struct dkey *keys, *cand; /* changed names; candidates of a name */
	size_t nkeys, kcap, ncand, ccap;
	uint64_t *inos; /* changed inodes */
	size_t ninos, icap;
	struct tally_change *out; /* the result */
	size_t nout, ocap;
	/* the last directory whose path each side built (names come sorted
	 * by directory: most paths ask for the one before) */
	uint64_t last_dir[2];
	char *last_path[2];
};

static int key_add(struct dkey **v, size_t *n, size_t *cap, uint64_t parent,
		   const char *name, size_t len)
{
	char *copy;

	if (array_reserve(v, cap, *n + 1, sizeof(**v)))
		return -ENOMEM;
	copy = strndup(name, len);
	if (!copy)
		return -ENOMEM;
	(*v)[(*n)++] = (struct dkey){ parent, copy };
	return 0;
}

static void keys_free(struct dkey *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
}

static int on_entry(void *ctx, uint64_t parent, const char *name, size_t len)
{
	struct diff *d = ctx;

	return key_add(&d->keys, &d->nkeys, &d->kcap, parent, name, len);
}

static int on_inode(void *ctx, uint64_t ino)
{
	struct diff *d = ctx;

	if (array_reserve(&d->inos, &d->icap, d->ninos + 1, sizeof(*d->inos)))
		return -ENOMEM;
	d->inos[d->ninos++] = ino;
	return 0;
}

static int on_cand(void *ctx, uint64_t parent, const char *name, size_t len)
{
	struct diff *d = ctx;

	return key_add(&d->cand, &d->ncand, &d->ccap, parent, name, len);
}

static int emit(struct diff *d, char status, char *path)
{
	if (array_reserve(&d->out, &d->ocap, d->nout + 1, sizeof(*d->out))) {
		free(path);
		return -ENOMEM;
	}
	d->out[d->nout++] = (struct tally_change){ status, path };
	return 0;
}

/* "@dir/@name" (either "": the other alone), malloc'ed. */
static char *join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);

	if (!p)
		return NULL;
	memcpy(p, dir, a);
	if (a && b)
		p[a++] = '/';
	memcpy(p + a, name, b + 1);
	return p;
}

/* Entry (@parent, @name) as version @v shows it: its row in *@md, 0 with
 * md->ino 0 if none. */
static int entry_in(struct diff *d, const struct meta_ver *v, uint64_t parent,
		    const char *name, struct meta_inode *md)
{
	int rc = meta_dentry_lookup_row(d->m, v, parent, name, md);

	if (rc == -ENOENT) {
		md->ino = 0;
		rc = 0;
	}
	return rc;
}

/* The names that show inode @ino in @v into *@out and *@n (its entries the
 * chain does not hide; keys_free() them). */
static int names_in(struct diff *d, const struct meta_ver *v, uint64_t ino,
		    struct dkey **out, size_t *n)
{
	size_t i, k = 0;
	int rc;

	keys_free(d->cand, d->ncand);
	d->ncand = 0;
	rc = meta_names_of(d->m, v, ino, on_cand, d);
	for (i = 0; !rc && i < d->ncand; i++) {
		uint64_t x;

		rc = meta_dentry_lookup(d->m, v, d->cand[i].parent,
					d->cand[i].name, &x);
		if (rc == -ENOENT || (!rc && x != ino)) {
			rc = 0;
			free(d->cand[i].name);
			continue;
		}
		d->cand[k++] = d->cand[i];
	}
	for (; i < d->ncand; i++)
		free(d->cand[i].name);
	/* the caller's: a path walk below uses d->cand again */
	*out = d->cand;
	*n = k;
	d->cand = NULL;
	d->ncand = d->ccap = 0;
	if (rc) {
		keys_free(*out, *n);
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

/* The path of directory @dir in @v, relative to the namespace's root ("":
 * the root), malloc'ed into *@out. */
static int dir_path_walk(struct diff *d, const struct meta_ver *v, uint64_t dir,
			 char **out)
{
	char *path = strdup(""), *up;
	unsigned depth;
	int rc = 0;

	for (depth = 0; path && dir != d->root && depth < PATH_DEPTH_MAX;
	     depth++) {
		struct dkey *names;
		size_t n;

		rc = names_in(d, v, dir, &names, &n);
		if (!rc && n == 0)
			rc = -ENOENT; /* a directory no name shows */
		if (!rc) {
			up = join(names[0].name, path);
			free(path);
			path = up;
			dir = names[0].parent;
		}
		keys_free(names, n);
		free(names);
		if (rc)
			break;
	}
	if (!path)
		return -ENOMEM;
	if (!rc && dir != d->root)
		rc = -ELOOP;
	if (rc) {
		free(path);
		return rc;
	}
	*out = path;
	return 0;
}

/* dir_path_walk(), through the side's last one. */
static int dir_path(struct diff *d, const struct meta_ver *v, uint64_t dir,
		    char **out)
{
	int side = v == &d->vn;
	char *path;
	int rc;

	if (!d->last_path[side] || d->last_dir[side] != dir) {
		rc = dir_path_walk(d, v, dir, &path);
		if (rc)
			return rc;
		free(d->last_path[side]);
		d->last_path[side] = path;
		d->last_dir[side] = dir;
	}
	*out = strdup(d->last_path[side]);
	return *out ? 0 : -ENOMEM;
}

/* The path of entry (@parent, @name) in @v, malloc'ed into *@out. */
static int entry_path(struct diff *d, const struct meta_ver *v, uint64_t parent,
		      const char *name, char **out)
{
	char *dir;
	int rc = dir_path(d, v, parent, &dir);

	if (rc)
		return rc;
	*out = join(dir, name);
	free(dir);
	return *out ? 0 : -ENOMEM;
}

/* "D" or "A" for @path and, a directory, everything below it in @v. */
static int emit_tree(struct diff *d, const struct meta_ver *v, char status,
		     char *path, const struct meta_inode *md);

struct child {
	char *name;
	struct meta_inode md;
};

struct children {
	struct child *v;
	size_t n, cap;
};

static int on_child(void *ctx, int64_t cookie, const char *name,
		    const struct meta_inode *md)
{
	struct children *c = ctx;

	(void)cookie;
	if (array_reserve(&c->v, &c->cap, c->n + 1, sizeof(*c->v)))
		return -ENOMEM;
	c->v[c->n].name = strdup(name);
	if (!c->v[c->n].name)
		return -ENOMEM;
	c->v[c->n++].md = *md;
	return 0;
}

static int emit_tree(struct diff *d, const struct meta_ver *v, char status,
		     char *path, const struct meta_inode *md)
{
	struct children c = { 0 };
	size_t i;
	int rc;
	char *copy = S_ISDIR(md->mode) ? strdup(path) : NULL;

	rc = emit(d, status, path);
	if (rc || !S_ISDIR(md->mode)) {
		free(copy);
		return rc;
	}
	if (!copy)
		return -ENOMEM;
	/* the listing first: its statement is the one a level below uses */
	rc = meta_readdir(d->m, v, md->ino, 0, on_child, &c);
	for (i = 0; !rc && i < c.n; i++) {
		char *p = join(copy, c.v[i].name);

		rc = p ? emit_tree(d, v, status, p, &c.v[i].md) : -ENOMEM;
	}
	for (i = 0; i < c.n; i++)
		free(c.v[i].name);
	free(c.v);
	free(copy);
	return rc;
}

/* Name (@parent, @name), written or removed between the two versions. */
static int diff_name(struct diff *d, uint64_t parent, const char *name)
{
	struct meta_inode o, n;
	char *path;
	int rc = entry_in(d, &d->vo, parent, name, &o);

	if (!rc)
		rc = entry_in(d, &d->vn, parent, name, &n);
	if (rc || o.ino == n.ino)
		return rc; /* the same inode: its own changes say the rest */
	if (o.ino && n.ino && !S_ISDIR(o.mode) && !S_ISDIR(n.mode)) {
		/* another file under the same name */
		rc = entry_path(d, &d->vn, parent, name, &path);
		return rc ? rc : emit(d, 'M', path);
	}
	if (o.ino) {
		rc = entry_path(d, &d->vo, parent, name, &path);
		if (!rc)
			rc = emit_tree(d, &d->vo, 'D', path, &o);
	}
	if (!rc && n.ino) {
		rc = entry_path(d, &d->vn, parent, name, &path);
		if (!rc)
			rc = emit_tree(d, &d->vn, 'A', path, &n);
	}
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The xattrs of @ino in @v: names sorted (pointers into *@buf). */
static int xattr_names(struct diff *d, const struct meta_ver *v, uint64_t ino,
		       char **buf, char ***names, size_t *n)
{
	size_t len, cap = 0, i;
	int rc = meta_xattr_list(d->m, v, ino, buf, &len);

	*names = NULL;
	*n = 0;
	for (i = 0; !rc && i < len; i += strlen(*buf + i) + 1) {
		if (array_reserve(names, &cap, *n + 1, sizeof(**names)))
			rc = -ENOMEM;
		else
			(*names)[(*n)++] = *buf + i;
	}
	if (!rc && *n)
		qsort(*names, *n, sizeof(**names), cmp_names);
	return rc;
}

/* Whether inode @ino's xattrs differ between the two versions. */
static int xattrs_differ(struct diff *d, uint64_t ino, bool *differ)
{
	char *bo = NULL, *bn = NULL, **no = NULL, **nn = NULL;
	size_t co, cn, i;
	int rc = xattr_names(d, &d->vo, ino, &bo, &no, &co);

	if (!rc)
		rc = xattr_names(d, &d->vn, ino, &bn, &nn, &cn);
	*differ = !rc && co != cn;
	for (i = 0; !rc && !*differ && i < co; i++) {
		void *vo = NULL, *vn = NULL;
		size_t lo, ln;

		*differ = strcmp(no[i], nn[i]) != 0;
		if (*differ)
			break;
		rc = meta_xattr_get(d->m, &d->vo, ino, no[i], &vo, &lo);
		if (!rc)
			rc = meta_xattr_get(d->m, &d->vn, ino, nn[i], &vn, &ln);
		if (!rc)
			*differ = lo != ln || (lo && memcmp(vo, vn, lo));
		free(vo);
		free(vn);
	}
	free(bo);
	free(bn);
	free(no);
	free(nn);
	return rc;
}

/* Whether inode @ino's block map differs between the two versions. */
static int blocks_differ(struct diff *d, uint64_t ino, bool *differ)
{
	struct meta_bref *mo = NULL, *mn = NULL;
	size_t no = 0, nn = 0, i;
	int rc = meta_blocks_load(d->m, &d->vo, ino, &mo, &no);

	if (!rc)
		rc = meta_blocks_load(d->m, &d->vn, ino, &mn, &nn);
	*differ = !rc && no != nn;
	for (i = 0; !rc && !*differ && i < no; i++)
		*differ = mo[i].idx != mn[i].idx || mo[i].obj != mn[i].obj;
	free(mo);
	free(mn);
	return rc;
}

/* Inode @ino, whose row, extents or xattrs were written between the two
 * versions: "M" for each of its names, if it reads otherwise (a file made
 * or removed in between is its names' "A" or "D"). */
static int diff_inode(struct diff *d, uint64_t ino)
{
	struct meta_inode o, nw;
	struct dkey *names;
	size_t n;
	bool differ;
	int rc = meta_inode_get(d->m, &d->vo, ino, &o);

	if (!rc)
		rc = meta_inode_get(d->m, &d->vn, ino, &nw);
	if (rc)
		return rc == -ENOENT ? 0 : rc;
	/* the contents and what ls -l shows; not the times of access and
	 * change, nor the link count (its names say) */
	differ = o.mode != nw.mode || o.uid != nw.uid || o.gid != nw.gid ||
		 o.size != nw.size || o.rdev != nw.rdev ||
		 o.mtime.tv_sec != nw.mtime.tv_sec ||
		 o.mtime.tv_nsec != nw.mtime.tv_nsec;
	if (!differ && S_ISREG(nw.mode))
		rc = blocks_differ(d, ino, &differ);
	if (!rc && !differ)
		rc = xattrs_differ(d, ino, &differ);
	if (rc || !differ)
		return rc;
	if (ino == d->root) {
		char *dot = strdup(".");

		return dot ? emit(d, 'M', dot) : -ENOMEM;
	}
	rc = names_in(d, &d->vn, ino, &names, &n);
	for (size_t i = 0; !rc && i < n; i++) {
		char *path;

		rc = entry_path(d, &d->vn, names[i].parent, names[i].name,
				&path);
		if (!rc)
			rc = emit(d, 'M', path);
	}
	keys_free(names, n);
	free(names);
	return rc;
}

static int cmp_key(const void *a, const void *b)
{
	const struct dkey *x = a, *y = b;

	if (x->parent != y->parent)
		return x->parent < y->parent ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_ino(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* By path; for one path, its removal before its addition. */
static int cmp_change(const void *a, const void *b)
{
	const struct tally_change *x = a, *y = b;
	static const char order[] = "DAM";
	int c = strcmp(x->path, y->path);

	if (c)
		return c;
	return (int)(strchr(order, x->status) - order) -
	       (int)(strchr(order, y->status) - order);
}

/* Every change between the two versions, whose deepest common ancestor
 * is @common, into d->out, sorted, each once: the keys the versions
 * below it on each side wrote, read in both. */
static int diff_run(struct diff *d, int64_t common)
{
	const int64_t side[2] = { d->vo.id, d->vn.id };
	int64_t *vers;
	size_t n, i, k;
	int rc = 0;

	for (int s = 0; !rc && s < 2; s++) {
		rc = meta_version_between(d->m, side[s], common, &vers, &n);
		for (i = 0; !rc && i < n; i++)
			rc = meta_version_changes(d->m, vers[i], on_entry,
						  on_inode, d);
		free(vers);
	}
	if (rc)
		return rc;
	if (d->nkeys)
		qsort(d->keys, d->nkeys, sizeof(*d->keys), cmp_key);
	if (d->ninos)
		qsort(d->inos, d->ninos, sizeof(*d->inos), cmp_ino);
	for (i = 0; !rc && i < d->nkeys; i++)
		if (i == 0 || cmp_key(&d->keys[i - 1], &d->keys[i]))
			rc = diff_name(d, d->keys[i].parent, d->keys[i].name);
	for (i = 0; !rc && i < d->ninos; i++)
		if (i == 0 || d->inos[i - 1] != d->inos[i])
			rc = diff_inode(d, d->inos[i]);
	if (rc || !d->nout)
		return rc;
	qsort(d->out, d->nout, sizeof(*d->out), cmp_change);
	/* each once; a path added or removed is not also modified (a file
	 * changed under a second name of it) */
	for (i = 1, k = 1; i < d->nout; i++) {
		const struct tally_change *p = &d->out[k - 1];

		if (!cmp_change(p, &d->out[i]) ||
		    (d->out[i].status == 'M' &&
		     !strcmp(p->path, d->out[i].path))) {
			free(d->out[i].path);
			continue;
		}
		d->out[k++] = d->out[i];
	}
	d->nout = k;
	return 0;
}

/* Side @spec ("NS" or "NS@NAME"): its namespace and version (t->lock
 * held); *@live: the namespace itself. */
static int side_of(struct tally *t, const char *spec, uint64_t *nspace,
		   struct meta_ver *v)
{
	const char *at = strchr(spec, '@');
	size_t len = at ? (size_t)(at - spec) : strlen(spec);
	struct meta_inode md;
	char ns[TALLY_NAME_MAX + 1];
	int rc;

	if (len == 0 || len > TALLY_NAME_MAX || (at && !at[1]))
		return -EINVAL;
	memcpy(ns, spec, len);
	ns[len] = '\0';
	rc = tally_nspace_name_ok(ns);
	if (!rc && at)
		rc = tally_check_name(at + 1) ? -EINVAL : 0;
	if (!rc)
		rc = tally_nspace_row(t, ns, &md);
	if (rc)
		return rc;
	*nspace = md.nspace;
	if (at)
		return meta_snapshot_find(t->meta, md.nspace, at + 1, v);
	*v = tally_nspace_leaf(t, md.nspace);
	if (!v->depth)
		v->depth = 1;
	return 0;
}

int tally_diff(struct tally *t, const char *a, const char *b,
	       struct tally_change **out, size_t *n)
{
	struct diff d = { .m = t->meta };
	uint64_t na, nb;
	int64_t common = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (tally_meta_shared(t))
		return -EOPNOTSUPP; /* no snapshots there yet */
	/* a namespace's side is what it committed: its buffers first */
	if (!strchr(a, '@') || !strchr(b, '@'))
		rc = tally_drain(t, NULL, 0);
	if (rc)
		return rc;
	tally_lock(t);
	rc = side_of(t, a, &na, &d.vo);
	if (!rc)
		rc = side_of(t, b, &nb, &d.vn);
	/* versions of one namespace, or of two branches: from their
	 * deepest common ancestor (none: two namespaces made apart) */
	if (!rc)
		rc = meta_version_common(t->meta, d.vo.id, d.vn.id, &common);
	if (!rc && !common)
		rc = -EXDEV;
	/* their root directory (branches share one) */
	d.root = node_ino(tally_nspace_node(t, na));
	if (!rc && d.vo.id != d.vn.id)
		rc = diff_run(&d, common);
	tally_unlock(t);
	keys_free(d.keys, d.nkeys);
	keys_free(d.cand, d.ncand);
	free(d.keys);
	free(d.cand);
	free(d.inos);
	free(d.last_path[0]);
	free(d.last_path[1]);
	if (rc) {
		tally_changes_free(d.out, d.nout);
		return rc;
	}
	*out = d.out;
	*n = d.nout;
	return 0;
}

void tally_changes_free(struct tally_change *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}
