/* SPDX-License-Identifier: MIT */
/*
 * Block maps and dirty buffers: the pool of block buffers, the committed
 * block map of an inode (load, find, set), its dirty buffers, and the read
 * of a block from the layers below them (flushes in flight, parked
 * flushes, the committed map; core/fs/flush.c, FLUSH PIPELINE).
 */
#include "core/fs/tally_int.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/objects/reap.h"

/* ------------------------------------------------------------------ */
/* block buffers: reused, so that buffering a write does not fault in
 * fresh pages every time */

static char *dirty_buf_get(struct tally *t)
{
	char *buf = NULL;

	pthread_mutex_lock(&t->pool_lock);
	if (t->npool)
		buf = t->pool_bufs[--t->npool];
	t->pool_taken = true;
	pthread_mutex_unlock(&t->pool_lock);
	return buf ? buf : malloc(t->bs);
}

void dirty_buf_put(struct tally *t, char *buf)
{
	if (!buf)
		return;
	pthread_mutex_lock(&t->pool_lock);
	if (t->npool < POOL_MAX) {
		t->pool_bufs[t->npool++] = buf;
		buf = NULL;
	}
	pthread_mutex_unlock(&t->pool_lock);
	free(buf);
}

/*
 * The flusher's tick: when no buffer was taken since the last tick, the
 * pooled ones go back to the system (a mount that stopped writing keeps
 * no block buffers: 64 of 1 MiB would be 64 MiB of its RSS).
 */
void dirty_pool_trim(struct tally *t)
{
	char *bufs[POOL_MAX];
	size_t n = 0;

	pthread_mutex_lock(&t->pool_lock);
	if (!t->pool_taken) {
		n = t->npool;
		memcpy(bufs, t->pool_bufs, n * sizeof(*bufs));
		t->npool = 0;
	}
	t->pool_taken = false;
	pthread_mutex_unlock(&t->pool_lock);
	if (!n)
		return;
	while (n)
		free(bufs[--n]);
	/* freed block-sized chunks may sit inside an arena: give their
	 * pages back too */
	malloc_trim(0);
}

size_t dirty_pool_bytes(struct tally *t)
{
	size_t n;

	pthread_mutex_lock(&t->pool_lock);
	n = t->npool;
	pthread_mutex_unlock(&t->pool_lock);
	return n * t->bs;
}

/* ------------------------------------------------------------------ */
/* block maps and dirty buffers */

struct meta_bref *dirty_map_find(struct inode *ip, uint64_t idx)
{
	size_t lo = 0, hi = ip->io->nmap;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ip->io->map[mid].idx == idx)
			return &ip->io->map[mid];
		if (ip->io->map[mid].idx < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Index of the first entry of @v[0..n) with idx >= @idx. */
static size_t dpos(const struct dirty *v, size_t n, uint64_t idx)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (v[mid].idx < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct dirty *dirty_search(struct dirty *v, size_t n, uint64_t idx)
{
	size_t pos = dpos(v, n, idx);

	return pos < n && v[pos].idx == idx ? &v[pos] : NULL;
}

size_t dirty_pos(struct inode *ip, uint64_t idx)
{
	return dpos(ip->io->dirty, ip->ndirty, idx);
}

struct dirty *dirty_find(struct inode *ip, uint64_t idx)
{
	return dirty_search(ip->io->dirty, ip->ndirty, idx);
}

/* Load the committed block map once (t->lock, then mlock: the finalizer
 * cannot change the store between the read and the install). */
/* Nothing of this node's decides @ip's data: no block dirty, in flight
 * or failed, no shrink or flush pending (t->lock and mlock held). */
static bool data_idle(const struct inode *ip)
{
	return !ip->ndirty && !ip->flight_blocks && !ip->nfailed &&
	       !ip->truncated && !ip->freed && !ip->io->inflight &&
	       !ip->io->failed;
}

/*
 * A shared store: another node may have committed the file since this
 * node read its row (at the open: a descriptor keeps its node's view,
 * but the map is read at the first read). The size read with the map
 * goes with it, unless this node's own data decides the size (dirty, in
 * flight, failed or a shrink not flushed): a map of the new content with
 * the old size read zeros past the new end (t->lock and mlock held).
 */
static void map_size(struct inode *ip, const struct meta_map_at *at)
{
	if (!at->known || !data_idle(ip))
		return;
	ip->md.size = ip->dsize = at->size;
	ip->md.alloc = ip->dalloc = at->alloc;
}

int dirty_map_load(struct tally *t, struct inode *ip)
{
	int rc = 0;

	tally_lock(t);
	if (ip->lost) {
		tally_unlock(t);
		return -EIO;
	}
	pthread_mutex_lock(&ip->io->mlock);
	if (!ip->io->map_loaded) {
		struct meta_map_at at;
		struct meta_bref *map = NULL;
		size_t nmap = 0;

		/* until a new one is read, readers sharing rw keep the old
		 * (a failed read must not leave them an empty map: holes) */
		struct meta_ver v = inode_ver(t, ip);

		rc = meta_blocks_load_at(t->meta, &v, ip->md.ino, &map, &nmap,
					 &at);
		if (!rc) {
			free(ip->io->map); /* whatever it gathered unloaded */
			ip->io->map = map;
			ip->io->nmap = ip->io->mapcap = nmap;
			ip->io->map_loaded = true;
			ip->io->map_gen++;
			map_size(ip, &at);
		} else if (rc == -ENOENT) {
			/* a shared store: the inode's row is gone (another
			 * node freed it): no block reads as a hole */
			if (!ip->freed) {
				ip->lost = true;
				log_msg(LOG_ERR,
					"inode %" PRIu64 " was removed by "
					"another node: its reads and writes "
					"fail with EIO",
					ip->ino);
			}
			rc = -EIO;
		}
	}
	pthread_mutex_unlock(&ip->io->mlock);
	tally_unlock(t);
	return rc;
}

#define FETCH_TRIES 4 /* fetches of a copy evicted before its read */

/* tally_inject_evict(): the copy just fetched goes before its read. */
static void evict_fault(struct tally *t, uint32_t shard, const char *name)
{
	unsigned n = atomic_load(&t->evict_fault);

	while (n && !atomic_compare_exchange_weak(&t->evict_fault, &n, n - 1))
		;
	if (n == 1 && reap_evict_fault(t->objs, shard, name) == 0)
		log_msg(LOG_NOTICE,
			"fault injection: the copy of '%s' fetched for a read "
			"is evicted before the read",
			name);
}

/* Read committed block @ref's bytes [off, off+len) into @buf (zero-fill
 * past the object's end). */
static int read_ref(struct tally *t, const struct meta_bref *ref, char *buf,
		    size_t off, size_t len, bool *ahead)
{
	uint32_t at = ref->shard;
	bool refetched = false;
	ssize_t n;

	if (!ref->name[0])
		return -EIO;
again:
	n = objstore_read(t->objs, at, ref->name, buf, len, (off_t)off);
	if (n == -ENOENT) {
		uint32_t where, dst;
		int64_t id, count;
		uint64_t size;
		int rc;

		/* moved by a rebalance: follow the ghost (or, once the
		 * sweep repointed the reference, the object row) */
		tally_lock(t);
		rc = meta_object_info(t->meta, ref->name, &id, &where, &size,
				      &count);
		if (!rc &&
		    meta_ghost_target(t->meta, id, ref->shard, &dst) == 0)
			where = dst;
		tally_unlock(t);
		if (rc)
			return rc; /* -ENOENT: replaced meanwhile, retried */
		n = -ENOENT;
		if (where != ref->shard)
			n = objstore_read(t->objs, where, ref->name, buf, len,
					  (off_t)off);
		/* evicted to the bucket, or lost: fetched from the bucket;
		 * fetched again if the cache's own bound evicted the copy
		 * before this read got to it (a read never fails for the
		 * cache's bound: EIO was logged under read-ahead) */
		for (unsigned tries = 0;
		     n == -ENOENT && t->remote && tries < FETCH_TRIES;
		     tries++) {
			rc = t->up->remote_fetch(t->remote, where, ref->name,
						 size);
			if (rc == -ESTALE)
				return -ENOENT; /* replaced meanwhile */
			/* the cache disk full, nothing to evict that makes
			 * room: read from the bucket, no copy kept */
			if (rc == -ENOSPC)
				n = t->up->remote_read(t->remote, where,
						       ref->name, size, buf,
						       off, len);
			if (rc)
				break;
			evict_fault(t, where, ref->name);
			n = objstore_read(t->objs, where, ref->name, buf, len,
					  (off_t)off);
			*ahead = true;
		}
		if (n == -ENOENT)
			return -EIO; /* its shard lost it, or is gone */
		at = where;
	}
	if (t->remote && t->up->remote_touch(t->remote, ref->name))
		*ahead = true; /* a read met what read-ahead fetched */
	if (n < 0)
		return n == -ENODEV ? -EIO : (int)n;
	/* bytes the object has, by its row, that its file lacks: the file
	 * is short (power loss, damage), never zeros in their place; with
	 * a bucket, its copy there replaces it (remote_fetch() checks) */
	if (off + (size_t)n < ref->size && (size_t)n < len && t->remote &&
	    !refetched) {
		int rc = t->up->remote_fetch(t->remote, at, ref->name,
					     ref->size);

		refetched = true;
		if (rc == -ESTALE)
			return -ENOENT; /* replaced meanwhile */
		if (rc == 0)
			goto again;
	}
	if (off + (size_t)n < ref->size && (size_t)n < len) {
		tally_note_corrupt(t, ref->name, "is shorter than its size");
		return -EIO;
	}
	if ((size_t)n < len)
		memset(buf + n, 0, len - (size_t)n);
	return 0;
}

/*
 * A read of block @idx had to fetch its object from the bucket, or met
 * one that read-ahead fetched: fetch the next REMOTE_AHEAD committed
 * blocks in the background (mlock taken here; the queue of the remote
 * tier skips what is local or queued already).
 */
#define REMOTE_AHEAD 16 /* blocks read ahead */

static void read_ahead(struct tally *t, struct inode *ip, uint64_t idx)
{
	struct meta_bref next[REMOTE_AHEAD];
	unsigned i, n = 0;

	pthread_mutex_lock(&ip->io->mlock);
	for (i = 1; i <= REMOTE_AHEAD; i++) {
		struct meta_bref *r = dirty_map_find(ip, idx + i);

		if (r && r->name[0])
			next[n++] = *r;
	}
	pthread_mutex_unlock(&ip->io->mlock);
	for (i = 0; i < n; i++)
		t->up->remote_prefetch(t->remote, next[i].shard, next[i].name,
				       next[i].size);
}

/*
 * Whether @ip's committed map is to be read again after a block's object,
 * found in map @gen, was gone: on a shared store, with nothing of this
 * node's deciding the data (data_idle(): a finalizer's own replacement
 * is in the map already). A map read again since @gen is simply used
 * (true, nothing to read); else it is marked unloaded (rw held).
 */
static bool map_replaced(struct tally *t, struct inode *ip, uint64_t gen)
{
	bool again;

	if (!meta_shared(t->meta))
		return false;
	tally_lock(t);
	pthread_mutex_lock(&ip->io->mlock);
	again = ip->io->map_gen != gen || data_idle(ip);
	if (again && ip->io->map_gen == gen)
		ip->io->map_loaded = false;
	pthread_mutex_unlock(&ip->io->mlock);
	tally_unlock(t);
	return again;
}

uint64_t dirty_map_gen(struct inode *ip)
{
	uint64_t gen;

	pthread_mutex_lock(&ip->io->mlock);
	gen = ip->io->map_gen;
	pthread_mutex_unlock(&ip->io->mlock);
	return gen;
}

/*
 * Bytes [off, off+len) of block @idx as the layers below the dirty
 * buffers hold them: in-flight flushes, failed flushes, committed map
 * (rw held, shared or exclusive; map loaded).
 */
int dirty_read_below(struct tally *t, struct inode *ip, uint64_t idx, char *dst,
		     size_t off, size_t len, bool reload)
{
	struct flush *lists[2];
	struct meta_bref ref;
	uint64_t gen;
	int tries, rc = 0, l;

	for (tries = 0; tries < 4; tries++) {
		bool found = false, have_ref = false, ahead = false;

		pthread_mutex_lock(&ip->io->mlock);
		lists[0] = ip->io->inflight;
		lists[1] = ip->io->failed;
		for (l = 0; l < 2 && !found; l++) {
			struct flush *f;

			for (f = lists[l]; f && !found; f = f->next) {
				struct dirty *d =
					dirty_search(f->blk, f->nblk, idx);

				if (d) {
					dirty_copy_out(d, dst, off, len);
					found = true;
				} else if (f->truncated &&
					   idx >= tally_blocks_for(
							  t, f->trunc_size)) {
					memset(dst, 0, len);
					found = true;
				}
			}
		}
		if (!found && ip->truncated &&
		    idx >= tally_blocks_for(t, ip->trunc_size)) {
			/* a shrink not flushed yet (its flush failed) */
			memset(dst, 0, len);
			found = true;
		}
		if (!found) {
			struct meta_bref *r = dirty_map_find(ip, idx);

			if (r) {
				ref = *r;
				have_ref = true;
			}
		}
		gen = ip->io->map_gen;
		pthread_mutex_unlock(&ip->io->mlock);
		if (found)
			return 0;
		if (!have_ref) {
			memset(dst, 0, len);
			return 0;
		}
		rc = read_ref(t, &ref, dst, off, len, &ahead);
		if (ahead)
			read_ahead(t, ip, idx);
		/* the finalizer may have replaced and unlinked the object
		 * since: its map already says what replaced it */
		if (rc != -ENOENT)
			break;
		/* another node replaced it (this node has the file open, so
		 * kept the map of its first read): a reader may read the map
		 * again, and its read starts over (tally_read(): map_gen) */
		if (reload && map_replaced(t, ip, gen)) {
			int lrc = dirty_map_load(t, ip);

			if (lrc) {
				rc = lrc;
				break;
			}
		}
	}
	if (rc) {
		log_msg(LOG_ERR,
			"cannot read block %" PRIu64 " of inode %" PRIu64
			": %s",
			idx, ip->ino, strerror(-rc));
		if (rc == -ENOENT)
			rc = -EIO;
	}
	return rc;
}

void dirty_copy_out(const struct dirty *d, char *dst, size_t off, size_t len)
{
	size_t have = off < d->end ? d->end - off : 0;

	if (have > len)
		have = len;
	memcpy(dst, d->buf + off, have);
	memset(dst + have, 0, len - have);
}

void dirty_zero_to(struct dirty *d, size_t end)
{
	if (end > d->end) {
		memset(d->buf + d->end, 0, end - d->end);
		d->end = end;
	}
}

void dirty_put_bytes(struct dirty *d, size_t off, const void *src, size_t len)
{
	dirty_zero_to(d, off);
	memcpy(d->buf + off, src, len);
	if (off + len > d->end)
		d->end = off + len;
}

/*
 * The dirty buffer of block @idx, created from the layers below if
 * needed. @whole: the caller overwrites the block from its start to at
 * least EOF, so nothing needs reading.
 */
int dirty_get(struct tally *t, struct inode *ip, uint64_t idx, bool whole,
	      struct dirty **out)
{
	size_t pos = dirty_pos(ip, idx);
	uint64_t keep = 0;
	struct dirty *d;
	char *buf;
	int rc;

	if (pos < ip->ndirty && ip->io->dirty[pos].idx == idx) {
		*out = &ip->io->dirty[pos];
		return 0;
	}
	if (ip->ndirty == ip->io->dcap) {
		size_t cap = ip->io->dcap ? ip->io->dcap * 2 : 8;
		struct dirty *v = realloc(ip->io->dirty, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ip->io->dirty = v;
		ip->io->dcap = cap;
	}
	buf = dirty_buf_get(t);
	if (!buf)
		return -ENOMEM;
	/* bytes past what is read (EOF) are zero without a memset of the
	 * whole block (1 MiB by default, for a file of a few bytes): they
	 * lie past d->end */
	if (!whole && idx * t->bs < ip->md.size) {
		keep = ip->md.size - idx * t->bs;
		if (keep > t->bs)
			keep = t->bs;
		rc = dirty_read_below(t, ip, idx, buf, 0, (size_t)keep, false);
		if (rc) {
			dirty_buf_put(t, buf);
			return rc;
		}
	}
	memmove(&ip->io->dirty[pos + 1], &ip->io->dirty[pos],
		(ip->ndirty - pos) * sizeof(*ip->io->dirty));
	d = &ip->io->dirty[pos];
	d->idx = idx;
	d->buf = buf;
	d->end = (size_t)keep;
	tally_lock(t);
	if (ip->ndirty++ == 0)
		ip->dirty_since = tally_now().tv_sec;
	t->dirty_blocks++;
	tally_unlock(t);
	*out = d;
	return 0;
}

/* A shrink to @size: committed blocks past it go with the next flush
 * (rw held; tally_drain reads truncated under t->lock alone). */
void dirty_trunc_note(struct tally *t, struct inode *ip, uint64_t size)
{
	if (!ip->truncated || size < ip->trunc_size)
		ip->trunc_size = size;
	tally_lock(t);
	ip->truncated = true;
	tally_unlock(t);
}

bool dirty_all_zero(const char *buf, size_t len)
{
	static const char zeros[4096];

	while (len >= sizeof(zeros)) {
		if (memcmp(buf, zeros, sizeof(zeros)))
			return false;
		buf += sizeof(zeros);
		len -= sizeof(zeros);
	}
	return memcmp(buf, zeros, len) == 0;
}

/* Room for @more entries in the map (mlock held). */
int dirty_map_reserve(struct inode *ip, size_t more)
{
	size_t cap = ip->io->mapcap;
	struct meta_bref *v;

	if (ip->io->nmap + more <= cap)
		return 0;
	while (cap < ip->io->nmap + more)
		cap = cap ? cap * 2 : 1; /* most files have one block */
	v = realloc(ip->io->map, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	ip->io->map = v;
	ip->io->mapcap = cap;
	return 0;
}

/* Replace or insert @ref in the sorted map; @ref NULL removes @idx
 * (mlock held). */
int dirty_map_set(struct inode *ip, uint64_t idx, const struct meta_bref *ref)
{
	size_t lo = 0, hi = ip->io->nmap;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ip->io->map[mid].idx < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < ip->io->nmap && ip->io->map[lo].idx == idx) {
		if (ref)
			ip->io->map[lo] = *ref;
		else
			memmove(&ip->io->map[lo], &ip->io->map[lo + 1],
				(ip->io->nmap-- - lo - 1) *
					sizeof(*ip->io->map));
		return 0;
	}
	if (!ref)
		return 0;
	if (dirty_map_reserve(ip, 1))
		return -ENOMEM;
	memmove(&ip->io->map[lo + 1], &ip->io->map[lo],
		(ip->io->nmap - lo) * sizeof(*ip->io->map));
	ip->io->map[lo] = *ref;
	ip->io->nmap++;
	return 0;
}
