/* SPDX-License-Identifier: MIT */
/*
 * File data: open, release, flush and fsync of a file, reads (into a
 * buffer, or as object file segments for splice), writes into the dirty
 * buffers, copy_file_range (sharing whole blocks) and size changes.
 */
#include "core/fs/tally_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util/array.h"
#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"

/* Shrink or grow @ip to @size (exclusive rw held). */
int file_set_size(struct tally *t, struct inode *ip, uint64_t size)
{
	uint64_t keep = tally_blocks_for(t, size);
	size_t pos;
	int rc;

	rc = dirty_map_load(t, ip);
	if (rc)
		return rc;
	if (size < ip->md.size) {
		/* the partial last block gets a zeroed tail, committed below */
		if (size % t->bs) {
			struct dirty *d;
			size_t off = size % t->bs;

			rc = dirty_get(t, ip, size / t->bs, false, &d);
			if (rc)
				return rc;
			/* the bytes past it read as zero */
			if (d->end > off)
				d->end = off;
		}
		pos = dirty_pos(ip, keep);
		tally_lock(t);
		while (ip->ndirty > pos) {
			dirty_buf_put(t, ip->io->dirty[--ip->ndirty].buf);
			t->dirty_blocks--;
		}
		tally_unlock(t);
		dirty_trunc_note(t, ip, size);
	}
	tally_lock(t);
	ip->md.size = size;
	tally_unlock(t);
	return 0;
}

int file_get(struct tally *t, uint64_t ino, struct inode **out)
{
	int rc;

	tally_lock(t);
	rc = inode_get(t, ino, out);
	tally_unlock(t);
	return rc;
}

void file_put(struct tally *t, struct inode *ip)
{
	tally_lock(t);
	inode_put(t, ip);
	tally_unlock(t);
}

/* A shared store: this node holds @ip open (t->lock held). -ENOENT if
 * another node removed it meanwhile. */
static unsigned hold_lost; /* tally_inject_hold_lost(): counts down */

void tally_inject_hold_lost(unsigned nth)
{
	hold_lost = nth;
}

static int hold_once(struct tally *t, struct inode *ip)
{
	int rc = meta_begin(t->meta);

	if (!rc)
		rc = meta_hold_add(t->meta, t->node_id, ip->md.ino);
	if (!rc && hold_lost && --hold_lost == 0)
		meta_inject_lost(t->meta, 1);
	return tally_txn_end(t, rc);
}

static int hold(struct tally *t, struct inode *ip)
{
	int rc = hold_once(t, ip);

	/* -EIO: a commit whose answer was lost (a connection cut after
	 * the server committed) may have left the hold there, which no
	 * close would drop: the file would stay held after its last name
	 * went, until this node's session ends. The hold is added again
	 * (the same row: S_HOLD_ADD's conflict clause), so that the open
	 * holds it for sure; failing again, it is left to the session */
	if (rc == -EIO)
		rc = hold_once(t, ip);
	if (rc == -EIO)
		log_msg(LOG_ERR,
			"cannot hold inode %" PRIu64 " open: a hold the server "
			"may have committed goes with this node's session",
			ip->ino);
	return rc;
}

/*
 * Kept holds. On a shared store the first open of a file on a node adds
 * the node's hold (open_holds), so that another node removing the last
 * name leaves the file to it. The last close does not drop the hold at
 * once: it is kept HOLD_KEEP_MS, so that a close costs no round trip to
 * the server, nor does an open within that time (the hold is there).
 * A kept hold delays the free of a file another node unlinked by as
 * long, nothing more. The flusher's tick drops those due
 * (file_drop_kept_holds()), an unmount all of them before its session
 * ends; a session that expired took them with it.
 */
#define HOLD_KEEP_MS 2000

/* Queue a kept hold of @ino, due then (t->lock held). */
static int kept_push(struct tally *t, uint64_t ino, int64_t due)
{
	/* the dropped part of the queue goes before it grows */
	if (t->kepthead && t->kepthead * 2 >= t->nkept) {
		t->nkept -= t->kepthead;
		memmove(t->kept, t->kept + t->kepthead,
			t->nkept * sizeof(*t->kept));
		t->kepthead = 0;
	}
	if (array_reserve(&t->kept, &t->keptcap, t->nkept + 1,
			  sizeof(*t->kept)))
		return -ENOMEM;
	t->kept[t->nkept].ino = ino;
	t->kept[t->nkept++].due = due;
	return 0;
}

/* Keep this node's hold of @ip after its last close (t->lock held). */
static int hold_keep(struct tally *t, struct inode *ip)
{
	int64_t due = tally_mono_ms() + HOLD_KEEP_MS;
	int rc = kept_push(t, ip->ino, due);

	if (!rc)
		ip->hold_due = due;
	return rc;
}

/*
 * @ip's hold is dropped and the store said its link count is 0: its rows
 * go too if no other node holds the file open, decided again in a
 * transaction of its own (t->lock held, and @ip's exclusive rw).
 */
static int free_if_last(struct tally *t, struct inode *ip)
{
	bool drop = false;
	int rc = inode_drop_if_last(t, ip, &drop);

	if (!rc && drop) {
		ip->freed = true;
		inode_free_data(t, ip);
	}
	return rc;
}

static void log_undropped(uint64_t ino, int rc)
{
	log_msg(LOG_ERR,
		"cannot release inode %" PRIu64 ": %s (its hold goes with "
		"the session)",
		ino, strerror(-rc));
}

/*
 * Drop this node's hold of @ip (t->lock held, and its exclusive rw): one
 * round trip, with the link count; the rows go too if the last name went
 * (here or on another node) and no other node holds the file open.
 */
static void hold_drop(struct tally *t, struct inode *ip)
{
	uint32_t nlink = 0;
	int rc = meta_hold_release(t->meta, t->node_id, ip->md.ino, &nlink);

	if (rc == -ENOENT)
		rc = 0; /* gone: not ours to free */
	else if (!rc && nlink == 0)
		rc = free_if_last(t, ip);
	if (rc)
		log_undropped(ip->ino, rc);
}

/* Kept holds dropped in one transaction at most (t->lock held that long) */
#define HOLD_BATCH 512

/*
 * Drop the kept holds of @inos in one transaction (t->lock held, and the
 * exclusive rw of each @ips[i] not NULL, which holds a reference: the
 * inodes in memory); free those whose link count the store says is 0
 * and no other node holds. A batch that fails is kept again, to be tried
 * at a later tick (not when @all: an unmount's holds go with its
 * session). Releases the rws and the references.
 */
static void holds_drop(struct tally *t, const uint64_t *inos,
		       struct inode **ips, size_t n, bool all)
{
	int64_t due = tally_mono_ms() + HOLD_KEEP_MS;
	uint64_t *zero = NULL, rows[HOLD_BATCH];
	size_t nzero = 0, i, j = 0;
	int rc;

	/* the store holds rows by their numbers, the queue node ids */
	for (i = 0; i < n; i++)
		rows[i] = node_ino(inos[i]);
	rc = meta_holds_release(t->meta, t->node_id, rows, n, &zero, &nzero);

	if (rc) {
		log_msg(LOG_WARNING, "cannot release %zu kept hold(s): %s (%s)",
			n, strerror(-rc),
			all ? "they go with the session" : "tried again later");
		for (i = 0; i < n && !all; i++) {
			if (kept_push(t, inos[i], due))
				break; /* no memory: with the session */
			if (ips[i])
				ips[i]->hold_due = due;
		}
	}
	for (i = 0; i < nzero; i++) {
		struct inode *ip = NULL;
		bool locked = false;

		for (j = 0; j < n; j++)
			if (rows[j] == zero[i])
				break;
		if (j == n)
			continue; /* not one of ours */
		if (ips[j]) {
			ip = ips[j];
		} else if (!inode_get(t, inos[j], &ip)) {
			/* not in memory: no handle, no writer; the
			 * try is for the rule, not for a wait */
			locked = !pthread_rwlock_trywrlock(&ip->io->rw);
			if (!locked) {
				inode_put(t, ip);
				continue; /* the session cleanup frees it */
			}
		} else {
			continue;
		}
		rc = free_if_last(t, ip);
		if (rc)
			log_undropped(ip->ino, rc);
		if (locked) {
			pthread_rwlock_unlock(&ip->io->rw);
			inode_put(t, ip);
		}
	}
	free(zero);
	for (i = 0; i < n; i++) {
		if (!ips[i])
			continue;
		pthread_rwlock_unlock(&ips[i]->io->rw);
		inode_put(t, ips[i]);
	}
}

void file_drop_kept_holds(struct tally *t, bool all)
{
	int64_t now = tally_mono_ms();
	uint64_t inos[HOLD_BATCH];
	struct inode *ips[HOLD_BATCH];
	size_t n;

	do {
		n = 0;
		tally_lock(t);
		while (n < HOLD_BATCH && t->kepthead < t->nkept) {
			struct kept_hold k = t->kept[t->kepthead];
			struct inode *ip;

			if (!all && k.due > now)
				break;
			t->kepthead++;
			ip = inode_find(t, k.ino);
			/* open again, or kept again since (a later entry) */
			if (ip && (ip->opens || ip->hold_due != k.due))
				continue;
			if (ip && inode_get(t, k.ino, &ip))
				continue; /* no memory: goes with the session */
			/* the flusher only try-locks a file (a writer
			 * holding it may wait for what the flusher frees):
			 * in use, it is kept a while more. t->lock is
			 * taken first here, but a try never waits */
			if (ip && pthread_rwlock_trywrlock(&ip->io->rw)) {
				if (!all && hold_keep(t, ip))
					log_msg(LOG_WARNING,
						"inode %" PRIu64 ": its hold "
						"goes with the session (no "
						"memory)",
						ip->ino);
				inode_put(t, ip);
				continue;
			}
			if (ip)
				ip->hold_due = 0;
			inos[n] = k.ino;
			ips[n++] = ip;
		}
		if (t->kepthead == t->nkept)
			t->kepthead = t->nkept = 0;
		if (n)
			holds_drop(t, inos, ips, n, all);
		tally_unlock(t);
	} while (n == HOLD_BATCH);
}

void file_forget_kept_holds(struct tally *t)
{
	size_t i;

	for (i = t->kepthead; i < t->nkept; i++) {
		struct inode *ip = inode_find(t, t->kept[i].ino);

		if (ip)
			ip->hold_due = 0;
	}
	t->kepthead = t->nkept = 0;
}

int tally_open_file(struct tally *t, uint64_t ino, int flags)
{
	struct inode *ip;
	int rc;

	if (tally_is_virtual(ino))
		return 0;
	/* a snapshot's file: read-only */
	if (tally_view_ro(ino) &&
	    ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
		return -EROFS;
	tally_lock(t);
	/* close-to-open: a first open reads what other nodes committed */
	rc = inode_get_fresh(t, ino, &ip);
	if (!rc) {
		if (S_ISDIR(ip->md.mode) && (flags & O_ACCMODE) != O_RDONLY)
			rc = -EISDIR;
		else if (tally_meta_shared(t) && ip->opens == 0 &&
			 S_ISREG(ip->md.mode) && !ip->hold_due &&
			 !tally_view_ro(ino))
			rc = hold(t, ip); /* another node may unlink it */
		if (!rc) {
			ip->opens++;
			ip->hold_due = 0; /* a kept hold serves it */
		}
		inode_put(t, ip);
	}
	tally_unlock(t);
	return rc;
}

int tally_release(struct tally *t, uint64_t ino)
{
	struct inode *ip;
	uint64_t seq, dropped = 0;
	bool last;
	int rc = 0;

	if (tally_is_virtual(ino))
		return 0;
	if (tally_view_ro(ino)) {
		/* a snapshot's file: nothing to flush, hold or free (and its
		 * view may be gone) */
		tally_lock(t);
		ip = inode_find(t, ino);
		if (ip && ip->opens) {
			ip->opens--;
			ip->refs++;
			inode_put(t, ip);
		}
		tally_unlock(t);
		return 0;
	}
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&ip->io->rw);
	tally_lock(t);
	last = ip->opens == 1 && ip->md.nlink == 0 && !ip->freed &&
	       !S_ISDIR(ip->md.mode);
	/* a shared store: what the last close reported it could not
	 * commit goes, rather than go again over what other nodes write
	 * once it is closed here (inode_drop_unsaved()); a failure no
	 * close reported yet (ip->err) is sent again */
	if (tally_meta_shared(t) && ip->opens == 1 && ip->nfailed && !ip->err)
		dropped = inode_drop_unsaved(t, ip);
	tally_unlock(t);
	if (dropped)
		log_msg(LOG_ERR,
			"data of inode %" PRIu64 " not committed: %" PRIu64
			" block(s) dropped at its last close, which reported "
			"the failure; the file is as committed",
			ino, dropped);
	/* data of a file that goes away now needs no flush */
	if (!last)
		rc = flush_rotate(t, ip, NULL, 0, false, &seq);
	if (t->release_hook)
		t->release_hook(t->hook_arg, ino);
	tally_lock(t);
	assert(ip->opens > 0);
	/* decided again in the hold that frees: an open may have come in
	 * between (through /proc/PID/fd/N), or the last name gone */
	last = ip->opens == 1 && ip->md.nlink == 0 && !ip->freed &&
	       !S_ISDIR(ip->md.mode);
	ip->opens--;
	if (tally_meta_shared(t) && ip->opens == 0 && !ip->freed &&
	    S_ISREG(ip->md.mode)) {
		/* a shared store: the hold is kept a while, unless the
		 * file has no name left (here, or as far as this node
		 * knows) */
		if (ip->md.nlink == 0 || hold_keep(t, ip))
			hold_drop(t, ip);
	} else if (last) {
		int rc2;

		rc2 = meta_begin(t->meta);
		if (!rc2)
			rc2 = inode_drop(t, ip);
		rc2 = tally_txn_end(t, rc2);
		if (!rc2) {
			ip->freed = true;
			inode_free_data(t, ip);
		} else {
			log_msg(LOG_ERR,
				"cannot free unlinked inode %" PRIu64
				": %s (it is freed at the next mount)",
				ip->ino, strerror(-rc2));
		}
	}
	tally_unlock(t);
	pthread_rwlock_unlock(&ip->io->rw);
	file_put(t, ip);
	return rc;
}

/* Close of one descriptor: start a flush, do not wait for it; report
 * what failed before (invariant 3); on a shared store, wait for it (and
 * tally_release() drops what the last close could not commit). */
int tally_flush(struct tally *t, uint64_t ino)
{
	struct inode *ip;
	uint64_t seq, before;
	int rc;

	if (tally_is_virtual(ino))
		return 0;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	pthread_mutex_lock(&t->fin_lock);
	before = t->rotated_seq;
	pthread_mutex_unlock(&t->fin_lock);
	pthread_rwlock_wrlock(&ip->io->rw);
	rc = flush_rotate(t, ip, NULL, 0, false, &seq);
	pthread_rwlock_unlock(&ip->io->rw);
	/* a shared store: close-to-open across nodes, so a close returns
	 * once what it wrote is committed (and in the bucket) */
	if (!rc && tally_meta_shared(t)) {
		rc = flush_wait(t, seq, 0);
		if (!rc)
			rc = flush_take_err(t, ip, UINT64_MAX);
	} else if (!rc) {
		rc = flush_take_err(t, ip, before);
	}
	file_put(t, ip);
	return rc;
}

int tally_fsync(struct tally *t, uint64_t ino, bool datasync)
{
	struct inode *ip;
	uint64_t seq;
	int rc;

	(void)datasync;
	if (tally_is_virtual(ino))
		return 0;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&ip->io->rw);
	rc = flush_rotate(t, ip, NULL, 0, false, &seq);
	pthread_rwlock_unlock(&ip->io->rw);
	/* readers and writers go on while the flush is finalized */
	if (!rc)
		rc = flush_wait(t, seq, 0);
	if (!rc)
		rc = flush_take_err(t, ip, UINT64_MAX);
	if (!rc) {
		tally_lock(t);
		rc = tally_txn_sync(t);
		tally_unlock(t);
	}
	file_put(t, ip);
	return rc;
}

/* Copy file bytes [off, off+len) into @buf (rw held, map loaded);
 * @reload: dirty_read_below()'s. */
static int read_range(struct tally *t, struct inode *ip, char *buf,
		      uint64_t off, size_t len, bool reload)
{
	while (len > 0) {
		uint64_t idx = off / t->bs;
		size_t boff = (size_t)(off % t->bs);
		size_t n = t->bs - boff < len ? t->bs - boff : len;
		struct dirty *d = dirty_find(ip, idx);

		if (d) {
			dirty_copy_out(d, buf, boff, n);
		} else {
			int rc = dirty_read_below(t, ip, idx, buf, boff, n,
						  reload);

			if (rc)
				return rc;
		}
		buf += n;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * The start of a read: the regular file @ino with its rw lock shared and
 * its map loaded, and *@size clipped at EOF; *@gen (may be NULL): the
 * map's generation, read with the size. Returns 0 (the caller ends with
 * read_end()), 1 at or past EOF (nothing held), or -errno.
 */
static int read_begin(struct tally *t, uint64_t ino, off_t off, size_t *size,
		      struct inode **out, uint64_t *gen)
{
	struct inode *ip;
	uint64_t fsize = 0;
	int rc;

	if (off < 0)
		return -EINVAL;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	if (!S_ISREG(ip->md.mode)) {
		rc = S_ISDIR(ip->md.mode) ? -EISDIR : -EINVAL;
		file_put(t, ip);
		return rc;
	}
	pthread_rwlock_rdlock(&ip->io->rw);
	rc = dirty_map_load(t, ip);
	if (!rc) {
		/* another reader's load of a shared store's map may set the
		 * size under mlock meanwhile (dirty.c, map_size()) */
		pthread_mutex_lock(&ip->io->mlock);
		fsize = ip->md.size;
		if (gen)
			*gen = ip->io->map_gen;
		pthread_mutex_unlock(&ip->io->mlock);
		if ((uint64_t)off >= fsize)
			rc = 1;
	}
	if (rc) {
		pthread_rwlock_unlock(&ip->io->rw);
		file_put(t, ip);
		return rc;
	}
	if (*size > fsize - (uint64_t)off)
		*size = (size_t)(fsize - (uint64_t)off);
	*out = ip;
	return 0;
}

static void read_end(struct tally *t, struct inode *ip)
{
	pthread_rwlock_unlock(&ip->io->rw);
	file_put(t, ip);
}

ssize_t tally_read(struct tally *t, uint64_t ino, void *buf, size_t size,
		   off_t off)
{
	size_t want = size;
	unsigned tries;
	bool again = true;
	int rc = 0;

	/* a read whose map was read again meanwhile (another node replaced
	 * the file: dirty_read_below()) starts over, so that its bytes and
	 * its size are of one commit */
	for (tries = 0; tries < 3 && again; tries++) {
		struct inode *ip;
		uint64_t gen;

		size = want;
		rc = read_begin(t, ino, off, &size, &ip, &gen);
		if (rc)
			return rc == 1 ? 0 : rc;
		rc = read_range(t, ip, buf, (uint64_t)off, size, true);
		again = dirty_map_gen(ip) != gen;
		read_end(t, ip);
	}
	if (!rc && again) {
		log_msg(LOG_ERR,
			"inode %" PRIu64 ": replaced by other nodes during "
			"each of %u reads",
			ino, tries);
		rc = -EIO;
	}
	return rc ? rc : (ssize_t)size;
}

/* Open the object file of each of @n block references for the bytes
 * [boff, boff+size) of the file from the first block on; all or none. */
static int open_segs(struct tally *t, const struct meta_bref *refs, size_t n,
		     size_t boff, size_t size, struct tally_seg *segs)
{
	size_t i;

	for (i = 0; i < n; i++) {
		size_t len = t->bs - boff < size ? t->bs - boff : size;
		int f = objstore_open_read(t->objs, refs[i].shard,
					   refs[i].name);
		struct stat st;

		/* moved (a ghost), or shorter than the range (the rest
		 * reads as zeros): copied instead */
		if (f >= 0 &&
		    (fstat(f, &st) != 0 || (uint64_t)st.st_size < boff + len)) {
			close(f);
			f = -1;
		}
		if (f < 0) {
			while (i-- > 0)
				close(segs[i].fd);
			return 1;
		}
		segs[i].fd = f;
		segs[i].off = (off_t)boff;
		segs[i].len = len;
		size -= len;
		boff = 0;
	}
	return 0;
}

int tally_read_fd(struct tally *t, uint64_t ino, size_t size, off_t off,
		  struct tally_seg *segs, size_t *nsegs)
{
	struct meta_bref refs[TALLY_SEGS_MAX];
	struct inode *ip;
	uint64_t idx, last, i;
	size_t boff, n = 0;
	int rc;

	/* compress_local: a file holds an envelope, copied by tally_read() */
	if (!size || objstore_encoded(t->objs))
		return 1;
	/* errors, EOF: tally_read() answers them */
	if (read_begin(t, ino, off, &size, &ip, NULL) != 0)
		return 1;
	rc = 1;
	idx = (uint64_t)off / t->bs;
	last = ((uint64_t)off + size - 1) / t->bs;
	boff = (size_t)((uint64_t)off % t->bs);
	/* a shrink not flushed yet: dirty_read_below() knows the zeros */
	if (last - idx >= TALLY_SEGS_MAX || ip->truncated)
		goto out_unlock;
	for (i = idx; i <= last; i++)
		if (dirty_find(ip, i))
			goto out_unlock;
	/* writers wait for rw; the finalizer changes the map under mlock,
	 * but only for blocks in flight, and there are none */
	pthread_mutex_lock(&ip->io->mlock);
	if (!ip->io->inflight && !ip->io->failed) {
		for (i = idx; i <= last; i++) {
			struct meta_bref *r = dirty_map_find(ip, i);

			if (!r || !r->name[0])
				break; /* a hole reads as zeros: copied */
			refs[n++] = *r;
		}
	}
	pthread_mutex_unlock(&ip->io->mlock);
	if (n == last - idx + 1 &&
	    open_segs(t, refs, n, boff, size, segs) == 0) {
		*nsegs = n;
		atomic_fetch_add(&t->spliced_reads, 1);
		rc = 0;
	}
out_unlock:
	read_end(t, ip);
	return rc;
}

/* New data up to @end: extend the size and, with @stamp, touch mtime
 * and ctime (rw held). */
static void data_changed(struct tally *t, struct inode *ip, uint64_t end,
			 bool stamp)
{
	tally_lock(t);
	if (end > ip->md.size)
		ip->md.size = end;
	if (stamp) {
		ip->md.mtime = ip->md.ctime = tally_now();
		ip->mdirty |= META_F_MTIME | META_F_CTIME;
	}
	tally_unlock(t);
}

/* The blocks of [off, off+len) of @ip not dirty yet: those a write there
 * adds to the data not committed (rw held). */
static uint64_t blocks_new(struct tally *t, struct inode *ip, uint64_t off,
			   size_t len)
{
	uint64_t idx, n = 0;

	if (!len)
		return 0;
	for (idx = off / t->bs; idx <= (off + len - 1) / t->bs; idx++)
		if (!dirty_find(ip, idx))
			n++;
	return n;
}

/* Write into the dirty buffers (exclusive rw held, map loaded). */
static ssize_t write_range(struct tally *t, struct inode *ip, const char *buf,
			   uint64_t off, size_t len)
{
	size_t done = 0;

	/* bytes copied before a failure count: the caller extends the size
	 * over them, so no buffer holds bytes past EOF */
	while (len > 0) {
		uint64_t idx = off / t->bs;
		size_t boff = (size_t)(off % t->bs);
		size_t n = t->bs - boff < len ? t->bs - boff : len;
		/* bytes past EOF are zero in a dirty buffer, so a write
		 * that reaches EOF from the block start needs no read */
		bool whole = n == t->bs ||
			     (boff == 0 && off + n >= ip->md.size);
		struct dirty *d;
		int rc = dirty_get(t, ip, idx, whole, &d);

		if (rc)
			return done ? (ssize_t)done : rc;
		dirty_put_bytes(d, boff, buf, n);
		buf += n;
		off += n;
		len -= n;
		done += n;
	}
	return (ssize_t)done;
}

/* tally_write(); @stamp: the write stamps the file's times. */
static ssize_t file_write(struct tally *t, uint64_t ino, const void *buf,
			  size_t size, off_t off, bool stamp)
{
	struct inode *ip;
	ssize_t ret;
	int rc;

	if (off < 0 || (uint64_t)off + size > (uint64_t)INT64_MAX)
		return -EFBIG;
	if (tally_view_ro(ino))
		return -EROFS;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	if (!S_ISREG(ip->md.mode)) {
		file_put(t, ip);
		return S_ISDIR(ip->md.mode) ? -EISDIR : -EINVAL;
	}
	pthread_rwlock_wrlock(&ip->io->rw);
	rc = flush_throttle(t, ip);
	if (!rc)
		rc = dirty_map_load(t, ip);
	if (!rc)
		rc = flush_reserve(t, ip,
				   blocks_new(t, ip, (uint64_t)off, size));
	if (rc) {
		ret = rc;
		goto out;
	}
	ret = write_range(t, ip, buf, (uint64_t)off, size);
	if (ret <= 0)
		goto out;
	data_changed(t, ip, (uint64_t)off + (uint64_t)ret, stamp);
	/*
	 * A sequential writer with enough for a flush of its own sends it
	 * down the pipeline. Random writes keep landing in the blocks they
	 * dirtied, and a rotated block must be read back and rewritten
	 * whole at the next write: theirs wait for the age, the close or
	 * the dirty limit. Sequential means a run of at least a flush's
	 * worth: random writers meet their previous end now and then (fio
	 * fills the gaps of its map in order), and a rotation at each of
	 * those flushed every block they had dirtied.
	 */
	if ((uint64_t)off == ip->io->write_end)
		ip->io->seq_run += (uint64_t)ret;
	else
		ip->io->seq_run = (uint64_t)ret;
	ip->io->write_end = (uint64_t)off + (uint64_t)ret;
	if (ip->ndirty * (size_t)t->bs >= t->rotate_bytes &&
	    ip->io->seq_run >= t->rotate_bytes) {
		uint64_t seq;

		flush_rotate(t, ip, NULL, 0, false, &seq);
	}
out:
	pthread_rwlock_unlock(&ip->io->rw);
	file_put(t, ip);
	return ret;
}

ssize_t tally_write(struct tally *t, uint64_t ino, const void *buf, size_t size,
		    off_t off)
{
	return file_write(t, ino, buf, size, off, true);
}

ssize_t tally_write_pages(struct tally *t, uint64_t ino, const void *buf,
			  size_t size, off_t off)
{
	return file_write(t, ino, buf, size, off, false);
}

#define COPY_BYTES_MAX (16u << 20) /* bytes copied per call, slow path */

/* Drop the dirty buffers of blocks [from, to) (rw held). */
static void dirty_drop_range(struct tally *t, struct inode *ip, uint64_t from,
			     uint64_t to)
{
	size_t a = dirty_pos(ip, from), b = dirty_pos(ip, to), k;

	if (a == b)
		return;
	for (k = a; k < b; k++)
		dirty_buf_put(t, ip->io->dirty[k].buf);
	memmove(&ip->io->dirty[a], &ip->io->dirty[b],
		(ip->ndirty - b) * sizeof(*ip->io->dirty));
	tally_lock(t);
	ip->ndirty -= b - a;
	t->dirty_blocks -= b - a;
	tally_unlock(t);
}

/*
 * Share whole blocks of @in into @out: both block-aligned, both rw held,
 * @in committed. Returns bytes copied.
 */
static ssize_t copy_shared(struct tally *t, struct inode *in, uint64_t off_in,
			   struct inode *out, uint64_t off_out, uint64_t len)
{
	uint64_t nb = len / t->bs, k, end = off_out + len;
	struct meta_inode was;
	struct pending *sh;
	ssize_t ret;
	int rc;

	/* a short last block can be shared only where it ends both files */
	if (len % t->bs && end >= out->md.size && off_in + len >= in->md.size)
		nb++;
	else
		len = nb * t->bs;
	if (nb == 0)
		return 0;
	sh = calloc(nb, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	pthread_mutex_lock(&in->io->mlock);
	for (k = 0; k < nb; k++) {
		struct meta_bref *ref = dirty_map_find(in, off_in / t->bs + k);

		sh[k].idx = off_out / t->bs + k;
		sh[k].shared = true;
		if (!ref) {
			sh[k].hole = true;
			sh[k].len = t->bs;
			continue;
		}
		sh[k].len = ref->size;
		sh[k].shard = ref->shard;
		snprintf(sh[k].name, sizeof(sh[k].name), "%s", ref->name);
	}
	pthread_mutex_unlock(&in->io->mlock);
	tally_lock(t);
	was = out->md;
	tally_unlock(t);
	dirty_drop_range(t, out, off_out / t->bs, off_out / t->bs + nb);
	data_changed(t, out, off_out + len, true);
	rc = flush_commit_with(t, out, COMMIT_FORCE, sh, nb);
	if (rc) {
		/* nothing was copied: the size and times are as they were
		 * (the exclusive rw lock kept every writer out) */
		tally_lock(t);
		out->md.size = was.size;
		out->md.mtime = was.mtime;
		out->md.ctime = was.ctime;
		tally_unlock(t);
	}
	ret = rc ? rc : (ssize_t)len;
	free(sh);
	return ret;
}

ssize_t tally_copy_range(struct tally *t, uint64_t ino_in, off_t off_in,
			 uint64_t ino_out, off_t off_out, size_t len)
{
	struct inode *in, *out, *first, *second;
	uint64_t avail;
	ssize_t ret;
	char *buf = NULL;
	int rc;

	if (off_in < 0 || off_out < 0)
		return -EINVAL;
	if (tally_is_virtual(ino_in) || tally_is_virtual(ino_out))
		return -EOPNOTSUPP;
	if (tally_view_ro(ino_out))
		return -EROFS;
	/* from a snapshot: copied by the caller (its block map is read
	 * through a view, which the copy of references does not take) */
	if (tally_view_ro(ino_in))
		return -EXDEV;
	rc = file_get(t, ino_in, &in);
	if (rc)
		return rc;
	rc = file_get(t, ino_out, &out);
	if (rc) {
		file_put(t, in);
		return rc;
	}
	if (!S_ISREG(in->md.mode) || !S_ISREG(out->md.mode)) {
		ret = -EINVAL;
		goto out_put;
	}
	/* two inode locks: lower inode number first */
	first = in->ino <= out->ino ? in : out;
	second = first == in ? out : in;
	pthread_rwlock_wrlock(&first->io->rw);
	if (second != first)
		pthread_rwlock_wrlock(&second->io->rw);
	rc = flush_commit(t, in, 0);
	if (!rc)
		rc = dirty_map_load(t, in);
	if (!rc)
		rc = dirty_map_load(t, out);
	if (rc) {
		ret = rc;
		goto out_unlock;
	}
	avail = (uint64_t)off_in < in->md.size ? in->md.size - (uint64_t)off_in
					       : 0;
	if (len > avail)
		len = (size_t)avail;
	if (len == 0) {
		ret = 0;
		goto out_unlock;
	}
	/* before either path writes anything */
	if ((uint64_t)off_out + len > (uint64_t)INT64_MAX) {
		ret = -EFBIG;
		goto out_unlock;
	}
	if ((uint64_t)off_in % t->bs == 0 && (uint64_t)off_out % t->bs == 0) {
		ret = copy_shared(t, in, (uint64_t)off_in, out,
				  (uint64_t)off_out, len);
		if (ret != 0)
			goto out_unlock;
	}
	/* unaligned, or less than a block: copy bytes */
	if (len > COPY_BYTES_MAX)
		len = COPY_BYTES_MAX;
	buf = malloc(len);
	if (!buf) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	rc = read_range(t, in, buf, (uint64_t)off_in, len, false);
	if (!rc)
		rc = flush_reserve(t, out,
				   blocks_new(t, out, (uint64_t)off_out, len));
	if (rc) {
		ret = rc;
		goto out_unlock;
	}
	ret = write_range(t, out, buf, (uint64_t)off_out, len);
	if (ret > 0)
		data_changed(t, out, (uint64_t)off_out + (uint64_t)ret, true);
out_unlock:
	free(buf);
	if (second != first)
		pthread_rwlock_unlock(&second->io->rw);
	pthread_rwlock_unlock(&first->io->rw);
out_put:
	file_put(t, out);
	file_put(t, in);
	return ret;
}
