/* SPDX-License-Identifier: MIT */
/*
 * The versions of the metadata store (core/meta/meta_version.c,
 * docs/design.md section 13): the version a call reads and writes, the
 * tree of versions, namespaces, snapshots and branches. Included by
 * core/meta/meta.h.
 */
#ifndef TALLY_META_VER_H
#define TALLY_META_VER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct meta;

/*
 * The version a call reads and writes (docs/design.md, section 13): the
 * leaf of the namespace the inode belongs to. So far a namespace has one
 * version, whose id is its root's inode number, and version 0 holds the
 * root directory and its entries (META_VER_ROOT). core/fs works it out
 * from the inode's row (meta_ver_of()). NULL (tests, repairs): the
 * version of the inode's rows, read first (one more statement).
 */
struct meta_ver {
	int64_t id;
	/* the versions on id's chain (ver_anc), itself included: 0 or 1,
	 * id's own rows alone, by equality (every namespace so far); more,
	 * an inode's row of the nearest ancestor (format 4, 13.7), copied
	 * up into id before a change, a whiteout where its removal would
	 * leave an ancestor's showing (tests so far: the reads of entries,
	 * extents and xattrs through a chain come next) */
	int depth;
};
#define META_VER_ROOT ((const struct meta_ver){ .id = 0 })

/*
 * The tree of versions (core/meta/meta_version.c, docs/design.md 13).
 * meta_version_freeze(): leaf @leaf becomes frozen, a branch point (kind
 * 2, @name NULL) or a snapshot named @name (kind 3), and a new leaf, its
 * child, is made (*@child); the namespace that wrote into @leaf writes
 * into the child from now on. Its id is taken from a counter of its own
 * (META_VER_CHILD_MIN on), so that ids grow from parent to child.
 * @born: the first inode number the child may give (every inode from
 * it on is made in the child, and has rows there alone). -EINVAL:
 * @leaf is not a leaf. meta_version_child(): a branch point whose born
 * no inode reaches.
 */
int meta_version_freeze(struct meta *m, int64_t leaf, const char *name,
			uint64_t born, int64_t *child);
/* The ids of versions made by a freeze start here, above every inode
 * number and so every namespace's first version (its root's number):
 * their rows are the ones partial indexes keep (a merge, a snapshot's
 * own bytes find them without a scan). */
#define META_VER_CHILD_MIN (1ll << 41)
int meta_version_child(struct meta *m, int64_t parent, int64_t *child);
/* The born of version @ver (meta_version_freeze(); 0 for a namespace's
 * first version). */
int meta_version_born(struct meta *m, int64_t ver, uint64_t *born);
/*
 * Merge frozen version @ver and its only child (*@child) into one
 * version, @ver's id, which shows what the child showed and takes its
 * kind and name: the child's rows replace @ver's (the counts of the
 * extents replaced fall), the rest are relabelled @ver, and the
 * namespace whose leaf was the child writes into @ver. Costs the
 * child's rows. What a snapshot's removal is. A snapshot with several
 * children (a rollback past a branch point made it a branch point)
 * keeps its rows for them and loses its name (*@child 0); -EBUSY: it
 * has none. In a transaction.
 */
int meta_version_merge(struct meta *m, int64_t ver, int64_t *child);
/*
 * A rollback: the namespace whose leaf is @leaf reads as its snapshot
 * @snap again. The rows of @leaf, and of the versions between @snap and
 * it (the snapshots taken since, only when @later allows it), are
 * deleted, the counts of their extents falling; @leaf stays the leaf, a
 * child of @snap. @name: each name of the entries deleted (parent and
 * name, @len bytes), for the caches of names. -EEXIST: snapshots taken
 * since, and not @later; -ENOENT: @snap is not on @leaf's chain. Costs
 * the rows deleted. In a transaction.
 */
/*
 * The versions on @ver's chain below its ancestor @anc, deepest (@ver)
 * first, into *@vers (malloc'ed; none if @ver is @anc): what a rollback
 * drops and a diff reads. -ENOENT: @anc is not on @ver's chain.
 */
int meta_version_between(struct meta *m, int64_t ver, int64_t anc,
			 int64_t **vers, size_t *n);
/*
 * What version @ver (made by a freeze) changed, from its own rows: each
 * name it wrote or removed to @entry (parent and name, @len bytes), then
 * each inode whose row, extents or xattrs it wrote to @inode (once per
 * inode). Costs its rows.
 */
int meta_version_changes(struct meta *m, int64_t ver,
			 int (*entry)(void *ctx, uint64_t parent,
				      const char *name, size_t len),
			 int (*inode)(void *ctx, uint64_t ino), void *ctx);
/* The entries of @v's chain that may name inode @ino (a row of a deeper
 * version may hide one: meta_dentry_lookup() in @v tells). */
int meta_names_of(struct meta *m, const struct meta_ver *v, uint64_t ino,
		  int (*fn)(void *ctx, uint64_t parent, const char *name,
			    size_t len),
		  void *ctx);
/* The automatic snapshots (docs/design.md 13.4): each namespace's
 * setting, @every seconds between two and @keep kept, by namespace; set
 * (0 for @every: none) in a transaction or alone. */
int meta_autosnaps(struct meta *m,
		   int (*fn)(void *ctx, uint64_t nspace, int64_t every,
			     int64_t keep),
		   void *ctx);
int meta_autosnap_set(struct meta *m, uint64_t nspace, int64_t every,
		      int64_t keep);
int meta_version_rollback(struct meta *m, int64_t leaf, int64_t snap,
			  bool later,
			  int (*name)(void *ctx, uint64_t parent,
				      const char *name, size_t len),
			  void *ctx);
/* A namespace as core/fs keeps it: its id (the root's entry names it),
 * its root directory, its leaf and depth (the versions on the leaf's
 * chain, itself included), the leaf's born and its view (0: none). */
struct meta_nsleaf {
	uint64_t nspace, root;
	struct meta_ver leaf;
	uint64_t born;
	uint32_t view;
};
/* Each namespace whose leaf is not its first version (a snapshot was
 * taken of it, or a branch), or that has a view or a root of another
 * number (docs/design.md 13.3) to @fn, in the order of their ids: 0, the
 * first nonzero value of @fn, or -errno. */
int meta_nspace_leaves(struct meta *m,
		       int (*fn)(void *ctx, const struct meta_nsleaf *l),
		       void *ctx);
/*
 * A branch in O(1) (docs/design.md 13.2), in a transaction: leaf
 * @src_leaf frozen (a branch point, kind 2), with two children: the
 * leaf its namespace writes into now (*@src_child) and *@dst_leaf,
 * the leaf of a new namespace @dst (an id no inode has) named @name in
 * the root, whose root directory is @root and whose view is *@view.
 * Both leaves gave inode numbers from @born on. -ENOSPC: no view left.
 */
int meta_version_branch(struct meta *m, int64_t src_leaf, uint64_t dst,
			uint64_t root, const char *name, uint64_t born,
			int64_t *src_child, int64_t *dst_leaf, uint32_t *view);
/*
 * Namespace @nspace removed, in a transaction, when its leaf is not its
 * first version: its entry in the root, its row, its leaf's rows (the
 * counts of their extents falling; each entry's name to @name first,
 * unless NULL), then each branch point above that no version reads any
 * more, with its rows (docs/design.md 13.2).
 */
int meta_nspace_drop(struct meta *m, uint64_t nspace,
		     int (*name)(void *ctx, uint64_t parent, const char *name,
				 size_t len),
		     void *ctx);
/* The deepest version on the chains of both @a and @b in *@common (0:
 * none, versions of two namespaces made apart). */
int meta_version_common(struct meta *m, int64_t a, int64_t b, int64_t *common);
/* The name namespace @nspace has in the root, into @buf of @len. */
int meta_nspace_name(struct meta *m, uint64_t nspace, char *buf, size_t len);
/* The leaf namespace @nspace writes into, with its depth, as the store
 * says (core/fs keeps the same in memory): 0, or -ENOENT. */
int meta_nspace_ver(struct meta *m, uint64_t nspace, struct meta_ver *v);
/* A snapshot: a frozen version of a namespace, with a name. */
struct meta_snapshot {
	uint64_t nspace;
	int64_t id;
	int64_t created; /* seconds since the epoch */
	const char *name;
	int depth;	/* of its chain: struct meta_ver's */
	uint32_t view;	/* the kernel sees it through (13.3) */
	uint64_t bytes; /* of the objects only it holds (what its removal
			 * frees, pins aside), with meta_snapshots()'s
			 * @bytes; else 0 */
};
/* The views of snapshots: 1 up to this (a 24-bit field of the kernel's
 * node ids above META_INO_LIMIT's bits, whose upper half is kept for the
 * views of namespaces and whose highest value is the front end's:
 * docs/design.md 13.3). */
#define META_VIEW_MAX ((1 << 23) - 1)
/* The views of namespaces (meta_version_branch()): from 2^23 up to the
 * highest but one. */
#define META_NSVIEW_MIN (1 << 23)
#define META_NSVIEW_MAX ((1 << 24) - 2)
/* The snapshots of namespace @nspace (0: of every namespace), oldest
 * first, to @fn (the name lives until @fn returns); with @bytes, each
 * one's bytes (a query of its own per snapshot). */
int meta_snapshots(struct meta *m, uint64_t nspace, bool bytes,
		   int (*fn)(void *ctx, const struct meta_snapshot *sn),
		   void *ctx);
/* The version of the snapshot @name of @nspace, to read it through: 0,
 * or -ENOENT. */
int meta_snapshot_find(struct meta *m, uint64_t nspace, const char *name,
		       struct meta_ver *v);

#endif
