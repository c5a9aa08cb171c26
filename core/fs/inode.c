/* SPDX-License-Identifier: MIT */
/*
 * Inodes in memory: the inode table (get, put, allocation, eviction), the
 * entry cache, stat of real and virtual inodes, and the operations on
 * attributes (lookup, forget, getattr, setattr).
 *
 * DESIGN NOTES
 *
 * Counts. Three counts are kept apart (docs/design.md, section 6):
 *  - inode->nlookup: the kernel's lookup references (lookup, create,
 *    readdirplus add; forget drops);
 *  - inode->refs and inode->opens: in-memory users and open handles;
 *  - objects.refcount in the metadata store: block references.
 * An inode is freed (its block references dropped in the same transaction
 * that deletes it) when nlink is 0 and no handle is open. Its in-memory
 * struct lives on until refs, nlookup and opens are all 0.
 *
 * Invariants:
 *  1. inode->map is the committed block map (as in the metadata store);
 *     inode->dirty holds whole-block buffers newer than the map.
 *  2. The size and allocation written by metadata-only operations are the
 *     committed ones (dsize, dalloc): a crash never exposes a size whose
 *     data was not committed with it.
 *  3. A failed commit keeps its dirty blocks; the error is returned by the
 *     next flush/fsync/close of the file (inode->err). A close reports
 *     only the failures of flushes started before it (inode->err_seq):
 *     its own flush may fail later, and that reaches the next one. On a
 *     shared store a close waits for its flush, and the release after
 *     the node's last close that reported a failure drops the data
 *     (inode_drop_unsaved()).
 *
 * Lock order: inode->rw, then t->lock, then inode->mlock. t->lock
 * protects the inode table, the entry cache and the fields of struct
 * inode marked so; inode->rw the dirty buffers (and size changes take
 * both); inode->mlock the committed map and the lists of flushes.
 */
#include "core/fs/tally_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/meta/meta.h"

/* ------------------------------------------------------------------ */
/* entry cache: direct-mapped, positive entries only; t->lock */

static size_t dcache_slot(uint64_t parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ parent;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return (size_t)(h & (DCACHE_SIZE - 1));
}

static bool dcache_find(struct tally *t, uint64_t parent, const char *name,
			uint64_t *ino, struct dentry_cache **out)
{
	struct dentry_cache *d = &t->dcache[dcache_slot(parent, name)];

	if (d->name && d->parent == parent && !strcmp(d->name, name)) {
		*ino = d->ino;
		*out = d;
		return true;
	}
	return false;
}

bool dcache_get(struct tally *t, uint64_t parent, const char *name,
		uint64_t *ino)
{
	struct dentry_cache *d;

	/* a shared store: other nodes change names; the store answers */
	if (meta_shared(t->meta))
		return false;
	return dcache_find(t, parent, name, ino, &d);
}

bool dcache_hint(struct tally *t, uint64_t parent, const char *name,
		 uint64_t *ino)
{
	struct dentry_cache *d;

	if (!meta_shared(t->meta))
		return dcache_get(t, parent, name, ino);
	return t->entry_hint_ms > 0 && dcache_find(t, parent, name, ino, &d) &&
	       d->gen == atomic_load(&t->entry_gen) &&
	       tally_mono_ms() - d->at < t->entry_hint_ms;
}

void dcache_put(struct tally *t, uint64_t parent, const char *name,
		uint64_t ino)
{
	struct dentry_cache *d = &t->dcache[dcache_slot(parent, name)];
	char *copy;

	/* a name that exists: in its directory's set if known whole */
	dirnames_add(t, parent, name);

	/* a shared store keeps it as a hint only (dcache_hint()) */
	if (meta_shared(t->meta) && t->entry_hint_ms <= 0)
		return;
	copy = strdup(name);
	if (!copy)
		return;
	free(d->name);
	d->name = copy;
	d->parent = parent;
	d->ino = ino;
	d->at = meta_shared(t->meta) ? tally_mono_ms() : 0;
	d->gen = atomic_load(&t->entry_gen);
}

void dcache_drop(struct tally *t, uint64_t parent, const char *name)
{
	struct dentry_cache *d = &t->dcache[dcache_slot(parent, name)];

	if (d->name && d->parent == parent && !strcmp(d->name, name)) {
		free(d->name);
		d->name = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* inode table; t->lock */

static size_t ihash(const struct tally *t, uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> (64 - t->ibits));
}

static struct inode **ibucket(struct tally *t, uint64_t ino)
{
	return &t->itable[ihash(t, ino)];
}

/* Twice the chains once there are two inodes a chain (t->lock held), so
 * that a lookup walks two on average at a million inodes as at a
 * thousand. Out of memory: the table stays as it is. */
static void itable_grow(struct tally *t)
{
	size_t old = itable_size(t), i;
	struct inode **v;

	if (t->ninodes <= 2 * old || t->ibits >= 30)
		return;
	v = calloc(old * 2, sizeof(*v));
	if (!v)
		return;
	t->ibits++;
	for (i = 0; i < old; i++)
		while (t->itable[i]) {
			struct inode *ip = t->itable[i];
			size_t h = ihash(t, ip->ino);

			t->itable[i] = ip->next;
			ip->next = v[h];
			v[h] = ip;
		}
	free(t->itable);
	t->itable = v;
}

/* Drop the parked flushes of a freed inode: nothing will want their
 * data (t->lock held). */
void inode_drop_failed(struct tally *t, struct inode *ip)
{
	struct flush *failed;

	if (!ip->io)
		return; /* nothing parked: a parked flush holds a reference */
	pthread_mutex_lock(&ip->io->mlock);
	failed = ip->io->failed;
	ip->io->failed = NULL;
	pthread_mutex_unlock(&ip->io->mlock);
	while (failed) {
		struct flush *f = failed;

		failed = f->next;
		assert(ip->refs > 0 && ip->nfailed > 0);
		ip->refs--; /* the parked flush's reference */
		ip->nfailed--;
		t->parked--;
		ip->flight_blocks -= f->nblk;
		t->dirty_blocks -= f->nblk;
		flush_free(t, f);
	}
}

/*
 * A shared store's last close of @ip on this node reported that its data
 * could not be committed (a full cache disk, a server unreachable past
 * the retries), and the file is released: what it reported goes, the
 * parked flushes and a shrink not committed, and the inode is as
 * committed (its size too), to be made again from its row at the next
 * open or lookup. Kept, the data would go again with a later flush, over
 * what other nodes wrote since (close-to-open: they may, once it is
 * closed here). A single host keeps it: nothing else writes the file.
 * Not with another descriptor open, dirty data (a write that came after)
 * or a flush in flight.
 */
uint64_t inode_drop_unsaved(struct tally *t, struct inode *ip)
{
	uint64_t before = ip->flight_blocks;
	bool inflight;

	if (!meta_shared(t->meta) || !ip->io || ip->opens > 1 || ip->ndirty)
		return 0;
	pthread_mutex_lock(&ip->io->mlock);
	inflight = ip->io->inflight != NULL;
	pthread_mutex_unlock(&ip->io->mlock);
	if (inflight)
		return 0;
	inode_drop_failed(t, ip);
	ip->truncated = false;
	ip->md.size = ip->dsize;
	ip->md.alloc = ip->dalloc;
	return before - ip->flight_blocks;
}

/* Drop the data of an inode (t->lock held): it was freed, or the whole
 * filesystem goes. */

void inode_free_data(struct tally *t, struct inode *ip)
{
	size_t i;

	if (!ip->io)
		return; /* no dirty buffers, no map, no flushes */
	inode_drop_failed(t, ip);
	for (i = 0; i < ip->ndirty; i++)
		dirty_buf_put(t, ip->io->dirty[i].buf);
	t->dirty_blocks -= ip->ndirty;
	ip->ndirty = 0;
	free(ip->io->dirty);
	ip->io->dirty = NULL;
	ip->io->dcap = 0;
	free(ip->io->map);
	ip->io->map = NULL;
	ip->io->nmap = ip->io->mapcap = 0;
	ip->io->map_loaded = false;
}

/* Free the io part of @ip (t->lock held). */
static void io_free(struct tally *t, struct inode *ip)
{
	if (!ip->io)
		return;
	inode_free_data(t, ip);
	pthread_rwlock_destroy(&ip->io->rw);
	pthread_mutex_destroy(&ip->io->mlock);
	free(ip->io);
	ip->io = NULL;
}

void inode_destroy(struct tally *t, struct inode *ip)
{
	io_free(t, ip);
	free(ip);
}

struct inode *inode_alloc(const struct meta_inode *md)
{
	struct inode *ip = calloc(1, sizeof(*ip));

	if (!ip)
		return NULL;
	ip->ino = md->ino;
	ip->md = *md;
	ip->dsize = md->size;
	ip->dalloc = md->alloc;
	return ip;
}

int inode_hold(struct inode *ip)
{
	if (!ip->io) {
		struct inode_io *io = calloc(1, sizeof(*io));

		if (!io)
			return -ENOMEM;
		pthread_rwlock_init(&io->rw, NULL);
		pthread_mutex_init(&io->mlock, NULL);
		ip->io = io;
	}
	ip->refs++;
	return 0;
}

void inode_insert(struct tally *t, struct inode *ip)
{
	struct inode **b = ibucket(t, ip->ino);

	ip->next = *b;
	*b = ip;
	t->ninodes++;
	itable_grow(t);
}

struct inode *inode_find(struct tally *t, uint64_t ino)
{
	struct inode *ip;

	for (ip = *ibucket(t, ino); ip; ip = ip->next)
		if (ip->ino == ino)
			return ip;
	return NULL;
}

/* The row of @ino into @md: @row if given (just read with its entry),
 * else read now. */
static int row_of(struct tally *t, uint64_t ino, const struct meta_inode *row,
		  struct meta_inode *md)
{
	if (!row)
		return tally_inode_row(t, ino, md);
	*md = *row;
	return 0;
}

/* Get an in-memory reference to @ino, made from row_of() if it is not in
 * memory. */
static int get_row(struct tally *t, uint64_t ino, const struct meta_inode *row,
		   struct inode **out)
{
	struct inode *ip = inode_find(t, ino);
	struct meta_ver v;
	int rc;

	/* seen through a snapshot's view that is gone: what it has in
	 * memory is served no more */
	if (tally_view_ro(ino) ? view_ver(t, ino, &v) != 0
			       : node_nspace_view(ino) &&
					 !tally_view_nspace(t, tally_view(ino)))
		return -ESTALE;
	if (!ip) {
		struct meta_inode md;

		rc = row_of(t, ino, row, &md);
		if (rc)
			return rc;
		ip = inode_alloc(&md);
		if (!ip)
			return -ENOMEM;
		ip->ino = ino; /* seen through a view: its node id */
		inode_insert(t, ip);
	}
	rc = inode_hold(ip);
	if (rc) {
		/* evicted again if nothing else keeps it */
		ip->refs++;
		inode_put(t, ip);
		return rc;
	}
	*out = ip;
	return 0;
}

int inode_get(struct tally *t, uint64_t ino, struct inode **out)
{
	return get_row(t, ino, NULL, out);
}

/*
 * Whether @ip, in memory, is to be made again from its committed row: a
 * shared store's inode that this node neither holds open nor has anything
 * of pending (data dirty, in flight or failed, a shrink, attributes
 * changed in place, a flush without blocks such as a chmod's: its commit
 * writes ip->md); close-to-open: another node may have committed since
 * (t->lock held).
 */
static bool inode_stale(struct tally *t, const struct inode *ip)
{
	bool busy = false;

	if (!meta_shared(t->meta) || ip->opens || ip->ndirty ||
	    ip->flight_blocks || ip->nfailed || ip->freed || ip->mdirty ||
	    ip->truncated)
		return false;
	if (ip->io) {
		pthread_mutex_lock(&ip->io->mlock);
		busy = ip->io->inflight || ip->io->failed;
		pthread_mutex_unlock(&ip->io->mlock);
	}
	return !busy;
}

void inode_take_row(struct inode *ip, const struct meta_inode *md)
{
	ip->md = *md;
	ip->dsize = md->size;
	ip->dalloc = md->alloc;
	if (ip->io) {
		pthread_mutex_lock(&ip->io->mlock);
		ip->io->map_loaded = false;
		pthread_mutex_unlock(&ip->io->mlock);
	}
}

void inode_refresh(struct tally *t, struct inode *ip,
		   const struct meta_inode *md)
{
	if (inode_stale(t, ip))
		inode_take_row(ip, md);
}

/* inode_get_fresh(), with @row if given (just read with its entry). */
static int get_fresh(struct tally *t, uint64_t ino,
		     const struct meta_inode *row, struct inode **out)
{
	struct inode *ip = inode_find(t, ino);
	struct meta_inode md;
	int rc;

	/* a view's inode is never stale (a snapshot does not change) */
	if (!ip || tally_view_ro(ino) || !inode_stale(t, ip))
		return get_row(t, ino, row, out);
	rc = row_of(t, ino, row, &md);
	if (rc)
		return rc;
	rc = inode_hold(ip);
	if (rc)
		return rc;
	inode_take_row(ip, &md);
	*out = ip;
	return 0;
}

int inode_get_fresh(struct tally *t, uint64_t ino, struct inode **out)
{
	return get_fresh(t, ino, NULL, out);
}

/* Drop a reference; evict the inode when nothing needs it. */
void inode_put(struct tally *t, struct inode *ip)
{
	struct inode **pp;

	if (!ip)
		return;
	assert(ip->refs > 0);
	if (--ip->refs)
		return;
	/* nobody uses it now: the io part goes unless a handle is open or
	 * data waits (its map is read again when needed) */
	if (!ip->opens && !ip->ndirty && !ip->nfailed && !ip->flight_blocks &&
	    !ip->truncated)
		io_free(t, ip);
	if (ip->nlookup || ip->opens || ip->ndirty)
		return;
	for (pp = ibucket(t, ip->ino); *pp; pp = &(*pp)->next)
		if (*pp == ip) {
			*pp = ip->next;
			t->ninodes--;
			break;
		}
	inode_destroy(t, ip);
}

/* The stat of inode row @md, with @alloc bytes allocated. */
void inode_md_stat(struct tally *t, const struct meta_inode *md, uint64_t alloc,
		   struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = md->ino;
	st->st_mode = md->mode;
	st->st_nlink = md->nlink;
	st->st_uid = md->uid;
	st->st_gid = md->gid;
	st->st_rdev = md->rdev;
	st->st_size = (off_t)md->size;
	st->st_blksize = (blksize_t)t->bs;
	if (S_ISREG(md->mode)) {
		if (alloc > md->size + t->bs)
			alloc = md->size;
		st->st_blocks = (blkcnt_t)((alloc + 511) / 512);
	} else if (S_ISDIR(md->mode)) {
		st->st_size = 4096;
		st->st_blocks = 8;
	}
	st->st_atim = md->atime;
	st->st_mtim = md->mtime;
	st->st_ctim = md->ctime;
}

void inode_fill_stat(struct tally *t, const struct inode *ip, struct stat *st)
{
	/* blocks in flight count as allocated: st_blocks never dips below
	 * what the file will hold (cp takes a file that looks sparse for
	 * one, and copies it byte by byte) */
	inode_md_stat(t, &ip->md,
		      ip->dalloc + (ip->ndirty + ip->flight_blocks) *
					   (uint64_t)t->bs,
		      st);
	st->st_ino = ip->ino; /* a view's node id */
}

void inode_virtual_stat(struct tally *t, uint64_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = t->owner;
	st->st_gid = t->owner_gid;
	st->st_atim = st->st_mtim = st->st_ctim = t->started;
	st->st_blksize = 4096;
	if (tally_view(ino) == TALLY_VIEW_SNAPDIRS)
		ino = TALLY_CTLDIR_INO; /* a directory of /.snapshots: alike */
	switch (ino) {
	case TALLY_CTLDIR_INO:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		break;
	case TALLY_CTL_INO:
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		break;
	default:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		break;
	}
}

/* The META_F_* fields in which @a and @b differ (not the size). */
static unsigned md_diff(const struct meta_inode *a, const struct meta_inode *b)
{
	unsigned f = 0;

	if (a->mode != b->mode)
		f |= META_F_MODE;
	if (a->uid != b->uid)
		f |= META_F_UID;
	if (a->gid != b->gid)
		f |= META_F_GID;
	if (a->atime.tv_sec != b->atime.tv_sec ||
	    a->atime.tv_nsec != b->atime.tv_nsec)
		f |= META_F_ATIME;
	if (a->mtime.tv_sec != b->mtime.tv_sec ||
	    a->mtime.tv_nsec != b->mtime.tv_nsec)
		f |= META_F_MTIME;
	if (a->ctime.tv_sec != b->ctime.tv_sec ||
	    a->ctime.tv_nsec != b->ctime.tv_nsec)
		f |= META_F_CTIME;
	return f;
}

void inode_md_written(struct tally *t, struct inode *ip)
{
	if (ip->mdirty &&
	    t->nmd_written < sizeof(t->md_written) / sizeof(t->md_written[0])) {
		t->md_written[t->nmd_written].ip = ip;
		t->md_written[t->nmd_written++].mask = ip->mdirty;
	}
}

static int write_md(struct tally *t, struct inode *ip, struct meta_inode *md,
		    bool commit, unsigned extra)
{
	struct meta_inode copy = *md;
	struct meta_ver v = inode_ver(t, ip);
	unsigned fields;
	int64_t delta = (int64_t)md->nlink - (int64_t)ip->md.nlink;

	copy.size = ip->dsize;
	copy.alloc = ip->dalloc;
	inode_md_written(t, ip);
	if (!meta_shared(t->meta)) {
		int rc = meta_inode_put(t->meta, &v, &copy);

		return rc || !commit ? rc : meta_commit(t->meta);
	}
	/* a shared store: what this node changed, not the size (a flush's
	 * to write), and the link count as a delta from what this node
	 * saw (other nodes change rows too); md gets the count now */
	fields = ((md_diff(&ip->md, md) | ip->mdirty) & ~META_F_SIZE) | extra;
	if (commit)
		return meta_inode_update_commit(t->meta, &v, &copy, delta,
						fields, &md->nlink);
	return meta_inode_update(t->meta, &v, &copy, delta, fields, &md->nlink);
}

/* Write @md with the committed size and allocation (invariant 4). */
int inode_write_md(struct tally *t, struct inode *ip, struct meta_inode *md)
{
	return write_md(t, ip, md, false, 0);
}

int inode_write_md_commit(struct tally *t, struct inode *ip,
			  struct meta_inode *md, unsigned extra)
{
	return write_md(t, ip, md, true, extra);
}

int inode_write_md_after(struct tally *t, struct inode *ip,
			 struct meta_inode *md)
{
	return write_md(t, ip, md, false, META_F_AFTER);
}

int inode_drop_if_last(struct tally *t, struct inode *ip, bool *dropped)
{
	int rc = meta_begin(t->meta);

	*dropped = false;
	if (!rc) {
		rc = meta_inode_last(t->meta, ip->md.ino, t->node_id);
		*dropped = rc == 1;
		rc = rc == -ENOENT ? 0 : (rc < 0 ? rc : 0);
	}
	if (!rc && *dropped)
		rc = inode_drop(t, ip);
	rc = tally_txn_end(t, rc);
	if (rc)
		*dropped = false;
	return rc;
}

/* Drop an unlinked, closed inode's references and row; t->lock held,
 * inside a transaction. Marks it freed once the caller commits. */
int inode_drop(struct tally *t, struct inode *ip)
{
	struct meta_ver v = inode_ver(t, ip);
	int rc = meta_blocks_drop(t->meta, &v, ip->md.ino, 0);

	if (!rc)
		rc = meta_inode_delete(t->meta, &v, ip->md.ino);
	return rc;
}

/* ------------------------------------------------------------------ */
/* lookups and attributes */

int tally_lookup(struct tally *t, uint64_t parent, const char *name,
		 struct stat *st)
{
	struct inode *pip = NULL, *ip = NULL;
	uint64_t ino;
	int rc = tally_check_name(name);

	if (rc)
		return rc;
	if (parent == TALLY_CTLDIR_INO) {
		if (!strcmp(name, "ctl"))
			inode_virtual_stat(t, TALLY_CTL_INO, st);
		else if (!strcmp(name, "status"))
			inode_virtual_stat(t, TALLY_STATUS_INO, st);
		else if (!strcmp(name, "metrics"))
			inode_virtual_stat(t, TALLY_METRICS_INO, st);
		else
			return -ENOENT;
		return 0;
	}
	if (tally_is_virtual(parent))
		return -ENOTDIR;
	if (tally_view(parent) == TALLY_VIEW_SNAPDIRS)
		return snapdir_lookup(t, parent, name, st);
	if (parent == TALLY_ROOT_INO && !strcmp(name, TALLY_SNAPDIR_NAME))
		return snapdir_getattr(t, TALLY_SNAPDIR_INO, st);
	if (tally_is_ctl_name(parent, name)) {
		inode_virtual_stat(t, TALLY_CTLDIR_INO, st);
		return 0;
	}
	tally_lock(t);
	rc = inode_get(t, parent, &pip);
	if (rc)
		goto out;
	if (!S_ISDIR(pip->md.mode)) {
		rc = -ENOTDIR;
		goto out;
	}
	if (!dcache_get(t, parent, name, &ino)) {
		struct meta_inode row;

		/* a directory known whole: a name it lacks is missing
		 * (core/fs/dirnames.c) */
		if (dirnames_absent(t, pip, name)) {
			rc = -ENOENT;
			goto out;
		}
		/* the entry with its inode's row: one statement; seen
		 * through the parent's view */
		struct meta_ver pv = inode_ver(t, pip);
		uint64_t node;

		rc = meta_dentry_lookup_row(t->meta, &pv, pip->md.ino, name,
					    &row);
		if (rc == -ENOENT)
			dcache_drop(t, parent, name); /* a hint, now wrong */
		if (rc)
			goto out;
		/* a namespace in the root: through its view, if it has one */
		node = parent == TALLY_ROOT_INO
			       ? tally_nspace_node(t, row.nspace)
			       : node_of(tally_view(parent), row.ino);
		dcache_put(t, parent, name, node);
		/* a namespace's root read with its entry in the root is the
		 * row of its first version: with a chain, its nearest */
		rc = parent == TALLY_ROOT_INO ? tally_nspace_root_row(t, &row)
					      : 0;
		if (!rc)
			rc = get_fresh(t, node, &row, &ip);
	} else {
		rc = inode_get_fresh(t, ino, &ip);
	}
	if (rc)
		goto out;
	ip->nlookup++;
	inode_fill_stat(t, ip, st);
out:
	inode_put(t, ip);
	inode_put(t, pip);
	tally_unlock(t);
	return rc;
}

void tally_forget(struct tally *t, uint64_t ino, uint64_t n)
{
	struct inode *ip;

	if (ino == TALLY_ROOT_INO || tally_is_virtual(ino))
		return;
	tally_lock(t);
	ip = inode_find(t, ino);
	if (ip) {
		assert(ip->nlookup >= n);
		ip->nlookup = ip->nlookup >= n ? ip->nlookup - n : 0;
		ip->refs++;
		inode_put(t, ip);
	}
	tally_unlock(t);
}

int tally_getattr(struct tally *t, uint64_t ino, struct stat *st)
{
	struct inode *ip;
	int rc;

	if (tally_is_virtual(ino)) {
		inode_virtual_stat(t, ino, st);
		return 0;
	}
	if (tally_view(ino) == TALLY_VIEW_SNAPDIRS)
		return snapdir_getattr(t, ino, st);
	tally_lock(t);
	rc = inode_get_fresh(t, ino, &ip);
	if (!rc) {
		inode_fill_stat(t, ip, st);
		inode_put(t, ip);
	}
	tally_unlock(t);
	return rc;
}

#define SET_TIMES                                                  \
	(TALLY_SET_ATIME | TALLY_SET_MTIME | TALLY_SET_ATIME_NOW | \
	 TALLY_SET_MTIME_NOW | TALLY_SET_CTIME)

int tally_setattr(struct tally *t, uint64_t ino, const struct stat *in,
		  int to_set, struct stat *st)
{
	struct inode *ip;
	struct timespec ts = tally_now();
	bool times_only, ctime_only;
	int rc;

	if (tally_is_virtual(ino))
		return to_set & TALLY_SET_SIZE ? 0 : -EPERM;
	if (tally_view_ro(ino))
		return -EROFS;
	tally_lock(t);
	rc = inode_get(t, ino, &ip);
	tally_unlock(t);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&ip->io->rw);
	if (to_set & TALLY_SET_SIZE) {
		if (!S_ISREG(ip->md.mode)) {
			rc = S_ISDIR(ip->md.mode) ? -EISDIR : -EINVAL;
			goto out;
		}
		if (in->st_size < 0) {
			rc = -EINVAL;
			goto out;
		}
		rc = file_set_size(t, ip, (uint64_t)in->st_size);
		if (rc)
			goto out;
	}
	tally_lock(t);
	/* the kernel's ctime after a link, unlink or rename of a file whose
	 * times it keeps (writeback cache), its mtime unchanged: the change
	 * itself committed a ctime already; this one stays in memory and
	 * goes with the inode's next write */
	times_only = S_ISREG(ip->md.mode) && !tally_meta_shared(t) &&
		     !(to_set & ~SET_TIMES);
	ctime_only = times_only && (to_set & TALLY_SET_CTIME) &&
		     !(to_set & ~(TALLY_SET_CTIME | TALLY_SET_MTIME)) &&
		     (!(to_set & TALLY_SET_MTIME) ||
		      (in->st_mtim.tv_sec == ip->md.mtime.tv_sec &&
		       in->st_mtim.tv_nsec == ip->md.mtime.tv_nsec));
	if (to_set & TALLY_SET_MODE) {
		ip->md.mode = (ip->md.mode & S_IFMT) | (in->st_mode & 07777);
		ip->mdirty |= META_F_MODE;
	}
	if (to_set & TALLY_SET_UID) {
		ip->md.uid = in->st_uid;
		ip->mdirty |= META_F_UID;
	}
	if (to_set & TALLY_SET_GID) {
		ip->md.gid = in->st_gid;
		ip->mdirty |= META_F_GID;
	}
	if (to_set & (TALLY_SET_ATIME_NOW | TALLY_SET_ATIME)) {
		ip->md.atime = to_set & TALLY_SET_ATIME_NOW ? ts : in->st_atim;
		ip->mdirty |= META_F_ATIME;
	}
	if (to_set & (TALLY_SET_MTIME_NOW | TALLY_SET_MTIME)) {
		ip->md.mtime = to_set & TALLY_SET_MTIME_NOW ? ts : in->st_mtim;
		ip->mdirty |= META_F_MTIME;
	}
	if ((to_set & TALLY_SET_SIZE) &&
	    !(to_set & (TALLY_SET_MTIME_NOW | TALLY_SET_MTIME))) {
		/* (the kernel stamps a truncate itself with its writeback
		 * cache, and keeps that time) */
		ip->md.mtime = ts;
		ip->mdirty |= META_F_MTIME;
	}
	ip->md.ctime = to_set & TALLY_SET_CTIME ? in->st_ctim : ts;
	ip->mdirty |= META_F_CTIME;
	tally_unlock(t);
	if (ctime_only) {
		rc = 0;
	} else if (times_only) {
		uint64_t seq;
		bool carried;

		/* times alone (the kernel sends a written file's at every
		 * close with its writeback cache): committed as a write's
		 * are, with the file's next flush, not waited for here. A
		 * flush still in flight (the close's, usually) writes the
		 * row with them; else one of its own is started */
		tally_lock(t);
		carried = flush_in_flight(t, ip);
		tally_unlock(t);
		rc = carried ? 0 : flush_rotate(t, ip, NULL, 0, true, &seq);
	} else if (S_ISREG(ip->md.mode) && (to_set & TALLY_SET_SIZE)) {
		/* a truncate commits with the data before it */
		rc = flush_commit(t, ip, COMMIT_FORCE);
	} else {
		/* a chmod, chown (tar sets both on each file it wrote): the
		 * row alone, with the committed size (invariant 4); the
		 * file's dirty data goes with its next flush, whose commit
		 * writes the inode's fields as they are then */
		tally_lock(t);
		rc = meta_begin(t->meta);
		if (!rc)
			rc = inode_write_md(t, ip, &ip->md);
		rc = tally_txn_end(t, rc);
		tally_unlock(t);
	}
out:
	pthread_rwlock_unlock(&ip->io->rw);
	tally_lock(t);
	if (!rc)
		inode_fill_stat(t, ip, st);
	inode_put(t, ip);
	tally_unlock(t);
	return rc;
}
