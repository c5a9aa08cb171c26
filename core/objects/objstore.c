/* SPDX-License-Identifier: MIT */
/*
 * Object files on disk.
 *
 * DESIGN NOTES
 *
 * Invariants:
 *  1. An object file under <shard>/<xx>/ is complete and immutable: it is
 *     written to <shard>/tmp, made durable (fsync, or syncfs for a whole
 *     batch), then renamed with RENAME_NOREPLACE.
 *  2. Object data and the rename are durable (fsync of the file and its
 *     fan-out directory, or syncfs after the batch's renames) before
 *     objstore_put()/objstore_batch_finish() return, hence before the
 *     metadata that names the object commits; the caller (core/fs/flush.c)
 *     keeps that order. syncfs(2) is used only on a shard whose
 *     filesystem passes it through: FUSE (virtiofs aside, which cannot
 *     be told apart), NFS, SMB and 9p return success without making
 *     anything durable, so a shard on one of them (or every shard, with
 *     OBJSTORE_SYNC_FILE) has each object file fsync'ed before its
 *     rename and its fan-out directory after (per_file). So has an
 *     object of SOLO_MAX bytes at most in any shard (but with
 *     OBJSTORE_SYNC_FS) when its batch is the only one staging: a
 *     syncfs pair for a few KiB of one flush cost more than the fsyncs,
 *     while flushes that overlap share their syncfs (tools/bench/tree's
 *     tar x: each way alone lost at 10,000 files or at 100,000).
 *  3. A name is never rebound to other bytes: a put whose hash names an
 *     existing object compares the bytes and, on a mismatch, moves on to
 *     the next variant name. A name with no local file may still name
 *     bytes elsewhere (a copy evicted to the bucket): the caller's vet
 *     (objstore_put_vetted()) compares them, or sends the put on to the
 *     next variant name.
 *
 * Locks: the shards' state (core/objects/objshard.c) and the counters are
 * atomics; the doomed files have doom_lock (below), the count of local
 * bytes count_lock (below), each shard's shared syncfs its sync gate
 * (core/objects/objsync.c); nothing else is shared. The caller
 * serialises an unlink against the reuse of a name (core/objects/reap.c's
 * verdicts under the metadata lock).
 *
 * Doomed files. GC checks a batch of unreferenced files under the metadata
 * lock, then unlinks them without it (objstore_doom, then
 * objstore_unlink_doomed). A commit that is about to name an object with
 * no row checks its file under the metadata lock first (objstore_stat or
 * objstore_ensure, core/fs/tally.c invariant 2; the commit of a move,
 * core/jobs/shard.c): that check cancels a pending doom of the file, or waits
 * until an unlink of it that has begun is over (under doom_lock), so the
 * file is either gone when checked (and written again) or stays.
 *
 * Local bytes. The bytes of the object files on disk (the cache of a
 * shared store, core/remote/remote.c) are counted once, a fan-out directory at a
 * time (objstore_count_dir(): its files in every attached shard), and
 * kept since by every place, replace and unlink of a file. Until its
 * directory is counted, such a change holds the directory's count_lock
 * around the change itself, and the count holds it around its listing:
 * a file is then counted by the listing or by its change, never by both
 * or neither, and the count is exact. (Once counted, a directory's
 * changes take no lock; before, its lock serialises them, which the
 * directory's own inode lock in the kernel does anyway.)
 *
 * Spans. A shared store's rows name shard 0 for every object: the
 * bucket is the objects' home, and each node's cache is its own. A
 * node's cache may span several directories (disks), its legs: the
 * physical shards of this object store, shard 0 first, which no row
 * names. Each name ranks the legs (rendezvous: a mix of the name's first
 * 64 bits and the leg's number, highest first); a new copy goes to the
 * first reachable, active leg of its rank with room, and a copy is
 * looked for in that order (a stat each until found), so that a copy
 * placed before a leg was added, or passed to the next leg by a full
 * one, is still found. Every public call on shard 0 picks its leg
 * (os_leg_of()) and works on that leg as a shard; the doomed files keep
 * shard 0, the name every caller uses. Without a span nothing changes.
 */
#include "core/objects/objstore_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/util/array.h"
#include "core/util/log.h"

#define MAX_VARIANTS 1000000u
/* objects of at most this many bytes are synced on their own (stage()) */
#define SOLO_MAX (128u << 10)
#define CORRUPT_LOGGED 16 /* corrupt files logged by compares */

static struct doomed **doom_find(struct objstore *os, unsigned shard,
				 const char *name)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	const char *p;
	struct doomed **pp;

	for (p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	pp = &os->doomed[(h ^ shard) % DOOM_BUCKETS];
	while (*pp && ((*pp)->shard != shard || strcmp((*pp)->name, name)))
		pp = &(*pp)->next;
	return pp;
}

int objstore_doom(struct objstore *os, unsigned shard, const char *name)
{
	struct doomed **pp, *d;
	int rc = 0;

	pthread_mutex_lock(&os->doom_lock);
	pp = doom_find(os, shard, name);
	if (!*pp) {
		d = calloc(1, sizeof(*d));
		if (d) {
			d->shard = shard;
			snprintf(d->name, sizeof(d->name), "%s", name);
			*pp = d;
			atomic_fetch_add(&os->ndoomed, 1);
		} else {
			rc = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&os->doom_lock);
	return rc;
}

/* Forget a doom of @name in @shard (doom_lock held); whether there was. */
static bool doom_forget(struct objstore *os, unsigned shard, const char *name)
{
	struct doomed **pp = doom_find(os, shard, name), *d = *pp;

	if (!d)
		return false;
	*pp = d->next;
	free(d);
	atomic_fetch_sub(&os->ndoomed, 1);
	return true;
}

/* A check of @name in @shard: it is no longer to be unlinked, or it is
 * gone. */
void os_doom_cancel(struct objstore *os, unsigned shard, const char *name)
{
	struct doomed **pp;

	if (atomic_load(&os->ndoomed) == 0)
		return;
	pthread_mutex_lock(&os->doom_lock);
	while (*(pp = doom_find(os, shard, name)) && (*pp)->unlinking)
		pthread_cond_wait(&os->doom_done, &os->doom_lock);
	doom_forget(os, shard, name);
	pthread_mutex_unlock(&os->doom_lock);
}

void objstore_inject(struct objstore *os, enum objstore_op op, unsigned nth,
		     int err)
{
	atomic_store(&os->fault_err[op], err);
	atomic_store(&os->fault_in[op], nth);
}

/* An injected failure of this @op, or 0. */
static int fault(struct objstore *os, enum objstore_op op)
{
	unsigned n = atomic_load(&os->fault_in[op]);

	while (n > 0) {
		if (atomic_compare_exchange_weak(&os->fault_in[op], &n, n - 1))
			return n == 1 ? atomic_load(&os->fault_err[op]) : 0;
	}
	return 0;
}

int os_fanout(const char *name)
{
	static const char hex[] = "0123456789abcdef";

	return (int)((strchr(hex, name[0]) - hex) * 16 +
		     (strchr(hex, name[1]) - hex));
}

/* Before a change of the file of @name: its directory's lock while the
 * directory is not counted (see Local bytes); whether it was taken. */
static bool count_begin(struct objstore *os, const char *name)
{
	int d = os_fanout(name);

	if (atomic_load(&os->counted[d]))
		return false;
	pthread_mutex_lock(&os->count_lock[d]);
	return true;
}

/* After it: @delta bytes counted if the directory is, the lock let go. */
static void count_end(struct objstore *os, const char *name, bool locked,
		      int64_t delta)
{
	int d = os_fanout(name);

	if (delta && atomic_load(&os->counted[d]))
		atomic_fetch_add(&os->local_bytes, delta);
	if (locked)
		pthread_mutex_unlock(&os->count_lock[d]);
}

void objstore_relpath(unsigned shard, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%u/%.2s/%s", shard, name, name);
}

void objstore_key(char out[OBJSTORE_KEY_MAX], const char *name, unsigned shard)
{
	if (shard == 0)
		snprintf(out, OBJSTORE_KEY_MAX, "%s", name);
	else
		snprintf(out, OBJSTORE_KEY_MAX, "%s@%u", name, shard);
}

unsigned objstore_key_split(const char *key, char name[OBJNAME_MAX])
{
	const char *at = strchr(key, '@');

	if (!at) {
		snprintf(name, OBJNAME_MAX, "%s", key);
		return 0;
	}
	snprintf(name, OBJNAME_MAX, "%.*s", (int)(at - key), key);
	return (unsigned)strtoul(at + 1, NULL, 10);
}

/* The root of @shard, or NULL if no such shard is attached. */
const char *objstore_root_of(struct objstore *os, unsigned shard)
{
	if (shard >= OBJSTORE_MAX_SHARDS ||
	    !atomic_load_explicit(&os->sh[shard].attached,
				  memory_order_acquire))
		return NULL;
	return os->sh[shard].root;
}

/* "ROOT/@rest" into @buf (PATH_MAX); -ENODEV for an unknown shard. */
int objstore_shard_path(struct objstore *os, unsigned shard, const char *rest,
			char *buf)
{
	const char *root = objstore_root_of(os, shard);

	if (!root)
		return -ENODEV;
	if (snprintf(buf, PATH_MAX, "%s/%s", root, rest) >= PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* Path of object @name in @shard. */
int os_obj_path(struct objstore *os, unsigned shard, const char *name,
		char *buf)
{
	char rel[OBJNAME_MAX + 8];

	if (!hash_name_valid(name))
		return -EINVAL; /* and its fan-out index would be none */
	snprintf(rel, sizeof(rel), "%.2s/%s", name, name);
	return objstore_shard_path(os, shard, rel, buf);
}

/* splitmix64's finaliser: a well-spread 64-bit mix. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The legs of the span in @name's rank order into @out; how many. */
static unsigned leg_order(struct objstore *os, const char *name,
			  unsigned out[OBJSTORE_MAX_SHARDS])
{
	uint64_t score[OBJSTORE_MAX_SHARDS], h = 0;
	unsigned n = atomic_load(&os->nshards), i, k = 0;

	/* a valid name (hash_name_valid()) begins with 32 hex digits */
	for (i = 0; i < 16; i++)
		h = h << 4 | (uint64_t)(name[i] <= '9' ? name[i] - '0'
						       : name[i] - 'a' + 10);
	for (i = 0; i < n; i++) {
		uint64_t s;
		unsigned j;

		if (!objstore_root_of(os, i))
			continue;
		s = mix64(h ^ mix64(i + 1));
		/* insertion: highest score first */
		for (j = k; j > 0 && score[j - 1] < s; j--) {
			score[j] = score[j - 1];
			out[j] = out[j - 1];
		}
		score[j] = s;
		out[j] = i;
		k++;
	}
	return k;
}

/*
 * The physical shard for object @name of shard @shard: @shard itself,
 * but for shard 0 of a span (see Spans) the first leg of the name's rank
 * holding its file; if none does, with @create the first reachable,
 * active leg with room for @len more bytes, else (or if none has room)
 * the first reachable one.
 */
unsigned os_leg_of(struct objstore *os, unsigned shard, const char *name,
		   bool create, size_t len)
{
	unsigned order[OBJSTORE_MAX_SHARDS], n, i, first = 0;
	bool have_first = false;
	char path[PATH_MAX];
	struct stat st;

	/* one leg (a node with no shard added): no look */
	if (shard != 0 || !atomic_load(&os->span) ||
	    atomic_load(&os->nshards) < 2 || !hash_name_valid(name))
		return shard;
	n = leg_order(os, name, order);
	for (i = 0; i < n; i++) {
		if (!objstore_phys_reachable(os, order[i]))
			continue;
		if (!have_first) {
			first = order[i];
			have_first = true;
		}
		if (os_obj_path(os, order[i], name, path) == 0 &&
		    stat(path, &st) == 0)
			return order[i];
	}
	if (!create)
		return first;
	/* room as placement counts it (objstore_place_shard()), the free
	 * space read now */
	for (i = 0; i < n; i++)
		if (objstore_phys_reachable(os, order[i]) &&
		    !atomic_load(&os->sh[order[i]].draining) &&
		    objstore_avail_of(os, order[i], true) >=
			    (uint64_t)len + OBJSTORE_RESERVE)
			return order[i];
	return first;
}

int objstore_clean_tmp(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0)
			log_msg(LOG_WARNING, "cannot remove temp file '%s': %s",
				de->d_name, strerror(errno));
	}
	closedir(d);
	return 0;
}

int objstore_open(const char *shards_dir, struct objstore **out)
{
	return objstore_open_sync(shards_dir, OBJSTORE_SYNC_AUTO, out);
}

int objstore_open_sync(const char *shards_dir, int sync_mode,
		       struct objstore **out)
{
	struct objstore *os;
	char path[PATH_MAX], *abs;
	unsigned i;
	int rc;

	rc = objstore_mkdir(shards_dir);
	if (rc)
		return rc;
	abs = realpath(shards_dir, NULL);
	if (!abs)
		return -errno;
	os = calloc(1, sizeof(*os));
	if (!os) {
		free(abs);
		return -ENOMEM;
	}
	pthread_mutex_init(&os->doom_lock, NULL);
	pthread_cond_init(&os->doom_done, NULL);
	os_sync_init(os);
	atomic_store(&os->sync_mode, sync_mode);
	os_codec_init(os);
	for (i = 0; i < FANOUT; i++)
		pthread_mutex_init(&os->count_lock[i], NULL);
	rc = snprintf(path, sizeof(path), "%s/0", abs) >= (int)sizeof(path)
		     ? -ENAMETOOLONG
		     : objstore_mkdir(path);
	free(abs);
	if (!rc)
		rc = objstore_shard_attach(os, 0, path, false);
	if (!rc && !objstore_shard_reachable(os, 0))
		rc = -EIO;
	if (rc) {
		objstore_free(os);
		return rc;
	}
	*out = os;
	return 0;
}

void objstore_free(struct objstore *os)
{
	unsigned i;

	if (!os)
		return;
	for (i = 0; i < OBJSTORE_MAX_SHARDS; i++)
		free(os->sh[i].root);
	for (i = 0; i < DOOM_BUCKETS; i++)
		while (os->doomed[i]) {
			struct doomed *d = os->doomed[i];

			os->doomed[i] = d->next;
			free(d);
		}
	pthread_mutex_destroy(&os->doom_lock);
	pthread_cond_destroy(&os->doom_done);
	os_sync_free(os);
	os_codec_free(os);
	for (i = 0; i < FANOUT; i++)
		pthread_mutex_destroy(&os->count_lock[i]);
	free(os);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct objstore_staged {
	unsigned shard;
	char tmp[PATH_MAX];
	const void *buf;
	size_t len;
	size_t disk;   /* bytes of its file (an envelope's: fewer, or more) */
	char *name;    /* borrowed from the caller */
	bool *created; /* borrowed from the caller */
	unsigned *shardp; /* borrowed from the caller */
	bool placed;
	bool fixed; /* objstore_stage(): the name is given */
	bool solo;  /* synced on its own (see stage()) */
};

/*
 * Whether the file system of @fd keeps OBJSTORE_RESERVE bytes free after
 * @len more: 0 or -ENOSPC. The reserve is for the metadata, so that the
 * deletions that free space can still commit once objects filled the disk.
 */
static int room_for(int fd, size_t len)
{
	struct statvfs sv;

	if (fstatvfs(fd, &sv) < 0)
		return -errno;
	if ((uint64_t)sv.f_bavail * sv.f_frsize <
	    (uint64_t)len + OBJSTORE_RESERVE)
		return -ENOSPC;
	return 0;
}

/* Write @buf to a new temp file of @shard (an envelope of it, with
 * compress_local); @sync: fsync it. *@disk: the file's bytes. */
static int write_tmp(struct objstore *os, unsigned shard, const void *buf,
		     size_t len, bool sync, char tmp[PATH_MAX], size_t *disk)
{
	unsigned long seq = atomic_fetch_add(&os->tmpseq, 1);
	void *env = NULL;
	size_t cap = 0;
	char rel[64];
	int fd, rc;

	snprintf(rel, sizeof(rel), "tmp/%ld.%lu", (long)getpid(), seq);
	rc = objstore_shard_path(os, shard, rel, tmp);
	if (!rc && objstore_encoded(os)) {
		rc = os_encode(os, buf, len, &env, &len, &cap);
		buf = env;
	}
	if (rc)
		return rc;
	*disk = len;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
	if (fd < 0) {
		os_env_put(os, env, cap);
		return -errno;
	}
	rc = fault(os, OBJSTORE_WRITE);
	if (!rc)
		rc = room_for(fd, len);
	if (!rc)
		rc = write_all(fd, buf, len);
	os_env_put(os, env, cap);
	if (!rc && sync) {
		rc = fault(os, OBJSTORE_SYNC);
		if (!rc && fsync(fd) < 0)
			rc = -errno;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/* Rename temp file @tmp (@len bytes) to object @name: 1 placed, 0 the
 * name exists. */
static int place(struct objstore *os, unsigned shard, const char *tmp,
		 const char *name, size_t len)
{
	char dst[PATH_MAX];
	bool locked;
	int rc;

	rc = fault(os, OBJSTORE_RENAME);
	if (!rc)
		rc = os_obj_path(os, shard, name, dst);
	if (rc)
		return rc;
	locked = count_begin(os, name);
	for (;;) {
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) ==
		    0) {
			rc = 1;
			break;
		}
		rc = -errno;
		if (rc == -ENOENT) {
			char sub[PATH_MAX], rel[4];

			snprintf(rel, sizeof(rel), "%.2s", name);
			rc = objstore_shard_path(os, shard, rel, sub);
			if (!rc)
				rc = objstore_mkdir(sub);
			if (!rc)
				continue;
		}
		if (rc == -EEXIST)
			rc = 0;
		break;
	}
	count_end(os, name, locked, rc == 1 ? (int64_t)len : 0);
	return rc;
}

/*
 * Create object @name from @buf, durably: 1 created, 0 already there (not
 * compared), negative errno on failure.
 */
static int create_object(struct objstore *os, unsigned shard, const char *name,
			 const void *buf, size_t len)
{
	char tmp[PATH_MAX], rel[4];
	size_t disk;
	int rc = write_tmp(os, shard, buf, len, true, tmp, &disk);

	if (rc)
		return rc;
	rc = place(os, shard, tmp, name, disk);
	if (rc <= 0) {
		unlink(tmp);
		return rc;
	}
	snprintf(rel, sizeof(rel), "%.2s", name);
	rc = os_sync_dir(os, shard, rel, false);
	return rc ? rc : 1;
}

/* 0 equal, 1 different, negative errno. */
/*
 * After a byte compare found the file of @name in @shard (@size bytes)
 * other than the bytes at hand: a genuine collision holds bytes that hash
 * to the name too; a file that does not (objstore_load()'s -EBADMSG) is
 * corrupt (short after a power loss, damaged): counted and logged (the
 * first CORRUPT_LOGGED). Nothing else changes: the bytes at hand go under
 * the next variant name.
 */
static void check_content(struct objstore *os, unsigned shard, const char *name,
			  size_t size)
{
	void *buf;
	size_t len;
	int rc = objstore_load(os, shard, name, &buf, &len);

	if (!rc)
		free(buf);
	if (rc != -EBADMSG)
		return;
	if (atomic_fetch_add(&os->corrupt, 1) < CORRUPT_LOGGED)
		log_msg(LOG_ERR,
			"object '%s' does not hold what its name says (%zu "
			"bytes): it is corrupt; the same bytes are stored "
			"under another name (run tallyfsck --repair)",
			name, size);
}

uint64_t objstore_corrupt(struct objstore *os)
{
	return atomic_load(&os->corrupt);
}

static int compare_object(struct objstore *os, unsigned shard, const char *name,
			  const void *buf, size_t len)
{
	char path[PATH_MAX], chunk[65536];
	const char *p = buf;
	struct stat st;
	size_t done = 0;
	int fd, rc;

	rc = os_obj_path(os, shard, name, path);
	if (rc)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (objstore_encoded(os)) {
		rc = os_codec_compare(os, fd, buf, len, &st.st_size);
		if (rc == 1)
			goto out_differ;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if ((size_t)st.st_size != len) {
		rc = 1;
		goto out_differ;
	}
	while (done < len) {
		size_t want = len - done < sizeof(chunk) ? len - done
							 : sizeof(chunk);
		ssize_t n = pread(fd, chunk, want, (off_t)done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		if (n == 0 || memcmp(chunk, p + done, (size_t)n) != 0) {
			rc = 1;
			goto out_differ;
		}
		done += (size_t)n;
	}
out:
	close(fd);
	return rc;
out_differ:
	close(fd);
	/* a collision, or a file that is not what its name says */
	check_content(os, shard, name, (size_t)st.st_size);
	return rc;
}

int objstore_ensure(struct objstore *os, unsigned shard, const char *name,
		    const void *buf, size_t len)
{
	os_doom_cancel(os, shard, name);
	for (;;) {
		unsigned leg = os_leg_of(os, shard, name, true, len);
		int rc = create_object(os, leg, name, buf, len);

		if (rc != 0)
			return rc < 0 ? rc : 0;
		rc = compare_object(os, leg, name, buf, len);
		if (rc == -ENOENT)
			continue; /* unlinked under us: create again */
		if (rc == 1)
			return -EEXIST;
		return rc;
	}
}

static int stage(struct objstore *os, unsigned shard, const void *buf,
		 size_t len, char *name, bool *created, unsigned *shardp,
		 struct objstore_batch *b)
{
	struct objstore_staged *st;
	int rc;

	if (array_reserve(&b->v, &b->cap, b->n + 1, sizeof(*b->v)))
		return -ENOMEM;
	if (!b->open) {
		b->open = true;
		atomic_fetch_add(&os->batches, 1);
	}
	st = &b->v[b->n];
	/* a small object of the only batch staging is synced on its own
	 * (fsync'ed when written, its fan-out directory after its rename),
	 * not by the batch's syncfs pair: a lone flush of one small file
	 * paid two syncfs of the whole file system for a few KiB. Batches
	 * that overlap share their syncfs instead (objsync.c), which costs
	 * less than an fsync pair each (invariant 2) */
	st->solo = objstore_shard_per_file(os, shard) ||
		   (len <= SOLO_MAX &&
		    atomic_load(&os->sync_mode) == OBJSTORE_SYNC_AUTO &&
		    atomic_load(&os->batches) <= 1);
	rc = write_tmp(os, shard, buf, len, st->solo, st->tmp, &st->disk);
	if (rc)
		return rc;
	st->shard = shard;
	st->buf = buf;
	st->len = len;
	st->name = name;
	st->created = created;
	st->shardp = shardp;
	st->placed = false;
	st->fixed = false;
	*created = true;
	*shardp = shard;
	if (!st->solo)
		b->shards |= 1ull << shard;
	b->n++;
	return 0;
}

/*
 * Look for object @name with @buf's bytes: in *shard, or with
 * OBJSTORE_ANY in every reachable shard. 0 found (*shard says where),
 * 1 a different object has the name, -ENOENT nowhere, other errors.
 */
static int probe(struct objstore *os, unsigned *shard, const char *name,
		 const void *buf, size_t len)
{
	unsigned n, i;
	int rc, verdict = -ENOENT;

	if (*shard != OBJSTORE_ANY)
		return compare_object(os, *shard, name, buf, len);
	n = atomic_load(&os->nshards);
	for (i = 0; i < n; i++) {
		if (!objstore_phys_reachable(os, i))
			continue;
		rc = compare_object(os, i, name, buf, len);
		if (rc == 0) {
			*shard = i;
			return 0;
		}
		if (rc == 1)
			verdict = 1;
		else if (rc != -ENOENT && verdict == -ENOENT)
			verdict = rc;
	}
	return verdict;
}

int objstore_put(struct objstore *os, unsigned *shard, const void *buf,
		 size_t len, char name[OBJNAME_MAX], bool *created,
		 struct objstore_batch *batch)
{
	return objstore_put_vetted(os, shard, buf, len, name, created, batch,
				   NULL);
}

int objstore_put_vetted(struct objstore *os, unsigned *shard, const void *buf,
			size_t len, char name[OBJNAME_MAX], bool *created,
			struct objstore_batch *batch,
			const struct objstore_vet *vet)
{
	char hex[HASH_HEX_LEN + 1];
	unsigned v, where;
	/* a span: the legs are placed in and looked in here; the caller
	 * gets shard 0 */
	bool span = atomic_load(&os->span) &&
		    (*shard == 0 || *shard == OBJSTORE_ANY);

	hash_block(buf, len, hex);
	for (v = 0; v < MAX_VARIANTS; v++) {
		int rc;

		hash_variant_name(hex, v, name);
		/* probe first: a dedup hit writes nothing */
		where = span ? os_leg_of(os, 0, name, false, 0) : *shard;
		rc = probe(os, &where, name, buf, len);
		if (rc == 0) {
			*created = false;
			*shard = span ? 0 : where;
			/* another stream may have put it in place without
			 * having made it durable yet: the batch syncs (one
			 * by one: its directory now) */
			if (objstore_shard_per_file(os, where)) {
				char rel[4];

				snprintf(rel, sizeof(rel), "%.2s", name);
				return os_sync_dir(os, where, rel, false);
			}
			if (batch) {
				batch->hits++;
				batch->shards |= 1ull << where;
			}
			return 0;
		}
		if (rc == 1) {
			log_msg(LOG_NOTICE,
				"hash collision on object '%s': storing "
				"the block under the next name",
				name);
			continue;
		}
		if (rc != -ENOENT)
			return rc;
		/* no local copy: the name may still be another's (3) */
		rc = vet ? vet->fn(vet->ctx, name, buf, len) : 0;
		if (rc < 0)
			return rc;
		if (rc == 1)
			continue;
		where = span ? os_leg_of(os, 0, name, true, len) : *shard;
		if (where == OBJSTORE_ANY) {
			rc = objstore_place_shard(os, len, &where);
			if (rc)
				return rc;
		}
		if (batch) {
			rc = stage(os, where, buf, len, name, created, shard,
				   batch);
			if (!rc && span)
				*shard = 0;
			return rc;
		}
		rc = create_object(os, where, name, buf, len);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			*created = true;
			*shard = span ? 0 : where;
			return 0;
		}
		v--; /* raced with another writer: compare again */
	}
	return -EOVERFLOW;
}

/* syncfs of every shard the batch touched (its per-file shards aside:
 * their temp files were fsync'ed when written). */
static int sync_batch_shards(struct objstore *os, uint64_t shards)
{
	unsigned i;
	int rc;

	for (i = 0; i < OBJSTORE_MAX_SHARDS; i++) {
		if (!(shards & (1ull << i)) || objstore_shard_per_file(os, i))
			continue;
		rc = objstore_shard_syncfs(os, i);
		if (rc)
			return rc;
	}
	return 0;
}

/* The renames of the batch's objects synced on their own (all of a
 * per-file shard's, the small ones of any): an fsync of each fan-out
 * directory they went to, once. */
static int sync_batch_dirs(struct objstore *os, const struct objstore_batch *b)
{
	uint64_t done[OBJSTORE_MAX_SHARDS][4] = { { 0 } };
	size_t i;
	int rc;

	for (i = 0; i < b->n; i++) {
		const struct objstore_staged *st = &b->v[i];
		unsigned d;
		char rel[4];

		if (!st->solo)
			continue;
		d = (unsigned)strtoul((char[3]){ st->name[0], st->name[1], 0 },
				      NULL, 16) &
		    255;
		if (done[st->shard][d / 64] & (1ull << (d % 64)))
			continue;
		done[st->shard][d / 64] |= 1ull << (d % 64);
		snprintf(rel, sizeof(rel), "%.2s", st->name);
		rc = os_sync_dir(os, st->shard, rel, false);
		if (rc)
			return rc;
	}
	return 0;
}

int objstore_batch_finish(struct objstore *os, struct objstore_batch *b)
{
	size_t i;
	int rc;

	if (b->open) {
		b->open = false;
		atomic_fetch_sub(&os->batches, 1);
	}
	if (b->n == 0)
		return b->hits ? sync_batch_shards(os, b->shards) : 0;
	/* 1: the data of every temp file */
	rc = fault(os, OBJSTORE_SYNC);
	if (rc)
		return rc;
	rc = sync_batch_shards(os, b->shards);
	if (rc)
		return rc;
	/* 2: the names */
	for (i = 0; i < b->n; i++) {
		struct objstore_staged *st = &b->v[i];

		rc = place(os, st->shard, st->tmp, st->name, st->disk);
		if (rc < 0)
			return rc;
		st->placed = true;
		if (rc == 1)
			continue;
		/* someone stored this name meanwhile: same bytes, or not */
		unlink(st->tmp);
		if (st->fixed) {
			rc = compare_object(os, st->shard, st->name, st->buf,
					    st->len);
			if (rc)
				return rc < 0 ? rc : -EEXIST;
			continue;
		}
		objstore_shard_account(os, st->shard, -(int64_t)st->len);
		/* a span's caller names shard 0, whichever leg */
		*st->shardp = atomic_load(&os->span) ? 0 : st->shard;
		rc = objstore_put(os, st->shardp, st->buf, st->len, st->name,
				  st->created, NULL);
		if (rc)
			return rc;
	}
	/* 3: the renames */
	rc = sync_batch_dirs(os, b);
	return rc ? rc : sync_batch_shards(os, b->shards);
}

void objstore_batch_release(struct objstore *os, struct objstore_batch *b)
{
	size_t i;

	if (b->open)
		atomic_fetch_sub(&os->batches, 1);
	for (i = 0; i < b->n; i++)
		if (!b->v[i].placed) {
			unlink(b->v[i].tmp);
			objstore_shard_account(os, b->v[i].shard,
					       -(int64_t)b->v[i].len);
		}
	free(b->v);
	memset(b, 0, sizeof(*b));
}

void objstore_set_count_hook(struct objstore *os,
			     void (*fn)(void *arg, unsigned dir), void *arg)
{
	os->count_hook_arg = arg;
	os->count_hook = fn;
}

void objstore_set_unlink_hook(struct objstore *os, void (*fn)(void *arg),
			      void *arg)
{
	os->unlink_hook_arg = arg;
	os->unlink_hook = fn;
}

void objstore_set_stat_hook(struct objstore *os, void (*fn)(void *arg),
			    void *arg)
{
	os->stat_hook_arg = arg;
	os->stat_hook = fn;
}

static int objstore_unlink_size(struct objstore *os, unsigned shard,
				const char *name, off_t *size)
{
	char path[PATH_MAX];
	struct stat st;
	off_t plain = -1;
	bool locked;
	int rc = fault(os, OBJSTORE_UNLINK);

	shard = os_leg_of(os, shard, name, false, 0);
	if (!rc)
		rc = os_obj_path(os, shard, name, path);
	if (rc)
		return rc;
	/* the shard's estimate counts plain bytes: an envelope's from its
	 * head (its file's size when that cannot be read) */
	if (objstore_encoded(os)) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd >= 0 && os_codec_size(fd, &plain) < 0)
			plain = -1;
		if (fd >= 0)
			close(fd);
	}
	locked = count_begin(os, name);
	if (stat(path, &st) < 0 || unlink(path) < 0) {
		rc = -errno;
		count_end(os, name, locked, 0);
		return rc;
	}
	count_end(os, name, locked, -(int64_t)st.st_size);
	objstore_shard_account(os, shard,
			       -(int64_t)(plain >= 0 ? plain : st.st_size));
	*size = st.st_size;
	return 0;
}

int objstore_unlink(struct objstore *os, unsigned shard, const char *name)
{
	off_t size;

	return objstore_unlink_size(os, shard, name, &size);
}

int objstore_unlink_doomed(struct objstore *os, unsigned shard,
			   const char *name, off_t *size)
{
	struct doomed *d;
	int rc;

	pthread_mutex_lock(&os->doom_lock);
	d = *doom_find(os, shard, name);
	if (!d || d->unlinking) {
		pthread_mutex_unlock(&os->doom_lock);
		return 1; /* checked meanwhile: kept (or another GC's) */
	}
	d->unlinking = true;
	pthread_mutex_unlock(&os->doom_lock);
	if (os->unlink_hook)
		os->unlink_hook(os->unlink_hook_arg);
	*size = 0;
	rc = objstore_unlink_size(os, shard, name, size);
	pthread_mutex_lock(&os->doom_lock);
	doom_forget(os, shard, name);
	pthread_cond_broadcast(&os->doom_done);
	pthread_mutex_unlock(&os->doom_lock);
	return rc;
}

int objstore_stage(struct objstore *os, unsigned shard, const char *name,
		   const void *buf, size_t len, struct objstore_batch *b)
{
	struct objstore_staged *st;
	unsigned where;
	bool created;
	int rc;

	shard = os_leg_of(os, shard, name, true, len);
	where = shard;
	/* stage() keeps the name pointer; here it is the caller's, fixed */
	rc = stage(os, shard, buf, len, (char *)name, &created, &where, b);
	if (rc)
		return rc;
	st = &b->v[b->n - 1];
	st->created = NULL;
	st->shardp = NULL;
	st->fixed = true;
	objstore_shard_account(os, shard, (int64_t)len);
	return 0;
}

/*
 * Put @len bytes of @buf in place as object @name in @shard, replacing a
 * copy there: checked against the name first (-EBADMSG), written to a
 * temp file and renamed over, the fan-out directory made if missing;
 * with @durable, the file and its directory synced.
 */
static int replace_copy(struct objstore *os, unsigned shard, const char *name,
			const void *buf, size_t len, bool durable)
{
	char tmp[PATH_MAX], dst[PATH_MAX], rel[4], hex[HASH_HEX_LEN + 1];
	struct stat old;
	int64_t delta;
	size_t disk = 0;
	bool locked;
	int rc;

	hash_block(buf, len, hex);
	rc = hash_name_check(name, hex); /* not this object's bytes */
	if (rc)
		return rc;
	shard = os_leg_of(os, shard, name, true, len);
	rc = write_tmp(os, shard, buf, len, durable, tmp, &disk);
	delta = (int64_t)disk;
	if (!rc)
		rc = os_obj_path(os, shard, name, dst);
	snprintf(rel, sizeof(rel), "%.2s", name);
	if (rc) {
		unlink(tmp);
		return rc;
	}
	locked = count_begin(os, name);
	if (stat(dst, &old) == 0)
		delta -= (int64_t)old.st_size; /* the copy it replaces */
	while (!rc && rename(tmp, dst) < 0) {
		char sub[PATH_MAX];

		rc = -errno;
		if (rc != -ENOENT)
			break;
		rc = objstore_shard_path(os, shard, rel, sub);
		if (!rc)
			rc = objstore_mkdir(sub);
	}
	count_end(os, name, locked, rc ? 0 : delta);
	if (rc) {
		unlink(tmp);
		return rc;
	}
	return durable ? os_sync_dir(os, shard, rel, false) : 0;
}

int objstore_restore(struct objstore *os, unsigned shard, const char *name,
		     const void *buf, size_t len)
{
	return replace_copy(os, shard, name, buf, len, true);
}

int objstore_cache_put(struct objstore *os, unsigned shard, const char *name,
		       const void *buf, size_t len)
{
	return replace_copy(os, shard, name, buf, len, false);
}

int objstore_copy(struct objstore *os, const char *name, unsigned src,
		  unsigned dst, off_t *size)
{
	void *buf, *back;
	size_t len, blen;
	int rc;

	/* the source must be what its name says before it is copied */
	rc = objstore_load(os, src, name, &buf, &len);
	if (rc)
		return rc;
	rc = objstore_ensure(os, dst, name, buf, len);
	if (!rc)
		objstore_shard_account(os, dst, (int64_t)len);
	free(buf);
	/* and the copy as it reads back from the target */
	if (!rc)
		rc = objstore_load(os, dst, name, &back, &blen);
	if (!rc) {
		free(back);
		*size = (off_t)blen;
	}
	return rc;
}
