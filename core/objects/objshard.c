/* SPDX-License-Identifier: MIT */
/*
 * The shards of the object store: attaching a shard's directory, its
 * marker (which store, which id), whether it is reachable, how objects
 * are made durable on its filesystem (syncfs, or file by file where
 * syncfs makes nothing durable: core/objects/objstore.c, DESIGN NOTES 2), its
 * free space and the placement of new objects (the reachable, active
 * shard with the lowest fill). The objects themselves are
 * core/objects/objstore.c's.
 */
#include "core/objects/objstore_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/util/log.h"

static int64_t mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

int objstore_marker_text(char *buf, size_t size, uint64_t store_id, unsigned id)
{
	return snprintf(buf, size,
			"tallyfs shard\nstore %016" PRIx64 "\nid %u\n",
			store_id, id);
}

/* Fixed-width lowercase hex, or a decimal with no leading zero: 0/-1. */
static int marker_num(const char **pp, const char *end, int base, uint64_t max,
		      uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;
	unsigned digits = 0;

	for (; p < end && digits < 20; p++, digits++) {
		unsigned d;

		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else
			break;
		if (base == 10 && digits == 1 && v == 0)
			return -1; /* leading zero */
		if (v > (max - d) / (unsigned)base)
			return -1;
		v = v * (unsigned)base + d;
	}
	if (base == 16 ? digits != 16 : digits == 0)
		return -1;
	*pp = p;
	*out = v;
	return 0;
}

int objstore_marker_parse(const char *buf, size_t len, uint64_t *store_id,
			  unsigned *id)
{
	const char *p = buf, *end = buf + len;
	uint64_t sid, n;

#define TAKE(lit)                                          \
	do {                                               \
		if ((size_t)(end - p) < sizeof(lit) - 1 || \
		    memcmp(p, lit, sizeof(lit) - 1))       \
			return -EUCLEAN;                   \
		p += sizeof(lit) - 1;                      \
	} while (0)
	TAKE("tallyfs shard\nstore ");
	if (marker_num(&p, end, 16, UINT64_MAX, &sid))
		return -EUCLEAN;
	TAKE("\nid ");
	if (marker_num(&p, end, 10, UINT32_MAX, &n))
		return -EUCLEAN;
	TAKE("\n");
#undef TAKE
	if (p != end)
		return -EUCLEAN;
	*store_id = sid;
	*id = (unsigned)n;
	return 0;
}

/* Whether @id's marker names this store and this shard: 0, or -errno. */
static int marker_check(struct objstore *os, unsigned id, const char *root)
{
	char path[PATH_MAX], got[128];
	uint64_t sid;
	unsigned gid;
	ssize_t n;
	int fd;

	if (snprintf(path, sizeof(path), "%s/" SHARD_MARKER, root) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, got, sizeof(got));
	close(fd);
	if (n < 0)
		return -EIO;
	if (objstore_marker_parse(got, (size_t)n, &sid, &gid) ||
	    sid != os->store_id || gid != id)
		return -EUCLEAN;
	return 0;
}

int objstore_phys_check(struct objstore *os, unsigned id)
{
	const char *root = objstore_root_of(os, id);
	struct shard *sh;
	struct statvfs vfs;
	struct stat st;
	char tmp[PATH_MAX];
	int rc = 0;

	if (!root)
		return -ENODEV;
	sh = &os->sh[id];
	if (stat(root, &st) < 0)
		rc = -errno;
	else if (!S_ISDIR(st.st_mode))
		rc = -ENOTDIR;
	else
		atomic_store(&sh->dev, (uint64_t)st.st_dev);
	if (!rc && id > 0)
		rc = marker_check(os, id, root);
	if (!rc) {
		snprintf(tmp, sizeof(tmp), "%s/tmp", root);
		rc = objstore_mkdir(tmp);
	}
	if (!rc && statvfs(root, &vfs) == 0) {
		atomic_store(&sh->avail,
			     (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize);
		atomic_store(&sh->avail_at, mono_s());
	}
	if (atomic_exchange(&sh->reachable, rc == 0) != (rc == 0))
		log_msg(rc ? LOG_ERR : LOG_NOTICE, "shard %u '%s' is %s%s%s",
			id, root, rc ? "unreachable: " : "reachable again",
			rc ? strerror(-rc) : "", "");
	return rc;
}

/*
 * The name of @root's filesystem type when it is one whose syncfs(2) makes
 * nothing durable, NULL otherwise (or when it cannot be told).
 */
static const char *syncfs_blind(const char *root)
{
	static const struct {
		unsigned long magic;
		const char *name;
	} blind[] = {
		{ 0x65735546ul, "fuse" },   { 0x6969ul, "nfs" },
		{ 0xff534d42ul, "cifs" },   { 0xfe534d42ul, "smb2" },
		{ 0x517bul, "smb" },	    { 0x01021997ul, "9p" },
		{ 0x73757245ul, "coda" },   { 0x564c0000ul, "ncp" },
		{ 0x0bd00bd0ul, "lustre" },
	};
	struct statfs sf;
	size_t i;

	if (statfs(root, &sf) < 0)
		return NULL;
	for (i = 0; i < sizeof(blind) / sizeof(blind[0]); i++)
		if ((unsigned long)(uint32_t)sf.f_type == blind[i].magic)
			return blind[i].name;
	return NULL;
}

/* Decide how shard @id's objects are made durable (see DESIGN NOTES, 2). */
static void choose_sync(struct objstore *os, unsigned id)
{
	struct shard *sh = &os->sh[id];
	int mode = atomic_load(&os->sync_mode);
	const char *blind = mode != OBJSTORE_SYNC_FILE ? syncfs_blind(sh->root)
						       : NULL;
	bool pf = mode == OBJSTORE_SYNC_FILE ||
		  (mode == OBJSTORE_SYNC_AUTO && blind);

	/* said as done: the store sets a forced mode before it attaches
	 * its shards (STORE_SYNC(), core/objects/store.h) */
	if (atomic_exchange(&sh->per_file, pf) != pf && blind)
		log_msg(LOG_NOTICE,
			"shard %u '%s' is on %s, whose syncfs makes nothing "
			"durable: its objects are synced file by file",
			id, sh->root, blind);
	else if (!pf && blind)
		log_msg(LOG_WARNING,
			"shard %u '%s' is on %s, whose syncfs makes nothing "
			"durable, and sync_objects=fs syncs its objects with "
			"syncfs all the same",
			id, sh->root, blind);
}

void objstore_set_sync_mode(struct objstore *os, int mode)
{
	unsigned i, n = atomic_load(&os->nshards);

	atomic_store(&os->sync_mode, mode);
	for (i = 0; i < n; i++)
		if (atomic_load_explicit(&os->sh[i].attached,
					 memory_order_acquire))
			choose_sync(os, i);
}

bool objstore_shard_per_file(struct objstore *os, unsigned id)
{
	return id < OBJSTORE_MAX_SHARDS && atomic_load(&os->sh[id].per_file);
}

int objstore_shard_attach(struct objstore *os, unsigned id, const char *root,
			  bool draining)
{
	struct shard *sh;
	unsigned n;

	if (id >= OBJSTORE_MAX_SHARDS)
		return -ERANGE;
	sh = &os->sh[id];
	if (atomic_load(&sh->attached))
		return -EEXIST;
	sh->root = strdup(root);
	if (!sh->root)
		return -ENOMEM;
	atomic_store(&sh->draining, draining);
	atomic_store(&sh->reachable, true);
	choose_sync(os, id);
	atomic_store_explicit(&sh->attached, true, memory_order_release);
	n = atomic_load(&os->nshards);
	while (n < id + 1 &&
	       !atomic_compare_exchange_weak(&os->nshards, &n, id + 1))
		;
	if (objstore_phys_check(os, id) == 0) {
		char tmp[PATH_MAX];

		snprintf(tmp, sizeof(tmp), "%s/tmp", root);
		objstore_clean_tmp(tmp);
	}
	return 0;
}

int objstore_shard_init(struct objstore *os, unsigned id, const char *root)
{
	char path[PATH_MAX], text[128];
	DIR *d;
	struct dirent *de;
	int fd, rc = 0;
	size_t len;

	d = opendir(root);
	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			rc = -ENOTEMPTY;
			break;
		}
	closedir(d);
	if (rc)
		return rc;
	if (snprintf(path, sizeof(path), "%s/" SHARD_MARKER, root) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	len = (size_t)objstore_marker_text(text, sizeof(text), os->store_id,
					   id);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc) {
		fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			if (fsync(fd) < 0)
				rc = -errno;
			close(fd);
		}
	}
	if (rc)
		unlink(path);
	return rc;
}

void objstore_set_store_id(struct objstore *os, uint64_t id)
{
	os->store_id = id;
}

void objstore_set_span(struct objstore *os)
{
	atomic_store(&os->span, true);
}

unsigned objstore_legs(struct objstore *os)
{
	return atomic_load(&os->nshards);
}

/* A span shows shard 0 alone: its legs are the object store's own. */
unsigned objstore_nshards(struct objstore *os)
{
	return atomic_load(&os->span) ? 1 : atomic_load(&os->nshards);
}

bool objstore_shard_attached(struct objstore *os, unsigned id)
{
	if (id > 0 && atomic_load(&os->span))
		return false;
	return objstore_root_of(os, id) != NULL;
}

bool objstore_phys_reachable(struct objstore *os, unsigned id)
{
	return objstore_root_of(os, id) && atomic_load(&os->sh[id].reachable);
}

/* A span's shard 0 is reachable when every leg is: what cannot be seen
 * is never taken for gone. */
bool objstore_shard_reachable(struct objstore *os, unsigned id)
{
	unsigned i, n;

	if (!atomic_load(&os->span))
		return objstore_phys_reachable(os, id);
	if (id > 0)
		return false;
	n = atomic_load(&os->nshards);
	for (i = 0; i < n; i++)
		if (objstore_root_of(os, i) && !objstore_phys_reachable(os, i))
			return false;
	return true;
}

/* A span's shard 0: every leg checked; the first failure. */
int objstore_shard_check(struct objstore *os, unsigned id)
{
	unsigned i, n;
	int rc = 0;

	if (!atomic_load(&os->span))
		return objstore_phys_check(os, id);
	if (id > 0)
		return -ENODEV;
	n = atomic_load(&os->nshards);
	for (i = 0; i < n; i++)
		if (objstore_root_of(os, i)) {
			int r = objstore_phys_check(os, i);

			rc = rc ? rc : r;
		}
	return rc;
}

void objstore_shard_set_draining(struct objstore *os, unsigned id,
				 bool draining)
{
	if (objstore_root_of(os, id))
		atomic_store(&os->sh[id].draining, draining);
}

void objstore_shard_account(struct objstore *os, unsigned id, int64_t bytes)
{
	if (objstore_root_of(os, id))
		atomic_fetch_add(&os->sh[id].bytes, (uint64_t)bytes);
}

int objstore_shard_info(struct objstore *os, unsigned id,
			struct objstore_shard_info *out)
{
	const char *root = objstore_root_of(os, id);

	if (!root)
		return -ENODEV;
	out->root = root;
	out->reachable = atomic_load(&os->sh[id].reachable);
	out->draining = atomic_load(&os->sh[id].draining);
	out->avail = atomic_load(&os->sh[id].avail);
	out->dev = atomic_load(&os->sh[id].dev);
	return 0;
}

uint64_t objstore_avail_of(struct objstore *os, unsigned id, bool fresh)
{
	struct shard *sh = &os->sh[id];
	int64_t now = mono_s();
	struct statvfs vfs;

	if ((fresh || now != atomic_load(&sh->avail_at)) &&
	    statvfs(sh->root, &vfs) == 0) {
		atomic_store(&sh->avail,
			     (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize);
		atomic_store(&sh->avail_at, now);
	}
	return atomic_load(&sh->avail);
}

/*
 * Placement: the reachable, active shard with the lowest fill, where fill
 * = object bytes / (object bytes + free bytes of its filesystem). Shards
 * on one filesystem then get equal shares; shards on disks of different
 * sizes fill in proportion to their capacity. A shard whose free space
 * is below OBJSTORE_RESERVE plus @len is passed by; -ENOSPC when all are.
 */
int objstore_place_shard(struct objstore *os, size_t len, unsigned *out)
{
	unsigned n = atomic_load(&os->nshards), i, best = 0;
	double best_fill = 2.0;
	bool fresh = false;

again:
	for (i = 0; i < n; i++) {
		struct shard *sh = &os->sh[i];
		uint64_t avail, bytes;
		double fill;

		if (!objstore_root_of(os, i) || !atomic_load(&sh->reachable) ||
		    atomic_load(&sh->draining))
			continue;
		avail = objstore_avail_of(os, i, fresh);
		if (avail < OBJSTORE_RESERVE + len)
			continue;
		bytes = atomic_load(&sh->bytes);
		fill = (double)bytes / ((double)bytes + (double)avail);
		if (fill < best_fill) {
			best_fill = fill;
			best = i;
		}
	}
	if (best_fill > 1.0 && !fresh) {
		/* full by figures up to a second old: space may have been
		 * freed since; ask the filesystems again before ENOSPC */
		fresh = true;
		goto again;
	}
	if (best_fill > 1.0)
		return -ENOSPC;
	*out = best;
	atomic_fetch_add(&os->sh[best].bytes, (uint64_t)len);
	return 0;
}

uint64_t objstore_avail(struct objstore *os)
{
	unsigned n = atomic_load(&os->nshards), i, k, ndev = 0;
	dev_t devs[OBJSTORE_MAX_SHARDS];
	uint64_t sum = 0;

	for (i = 0; i < n; i++) {
		struct statvfs vfs;
		struct stat st;
		uint64_t a;

		if (!objstore_phys_reachable(os, i) ||
		    atomic_load(&os->sh[i].draining) ||
		    stat(os->sh[i].root, &st) < 0 ||
		    statvfs(os->sh[i].root, &vfs) < 0)
			continue;
		/* shards sharing a filesystem share its free space */
		for (k = 0; k < ndev && devs[k] != st.st_dev; k++)
			;
		if (k < ndev)
			continue;
		devs[ndev++] = st.st_dev;
		a = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		sum += a > OBJSTORE_RESERVE ? a - OBJSTORE_RESERVE : 0;
	}
	return sum;
}
