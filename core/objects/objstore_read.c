/* SPDX-License-Identifier: MIT */
/*
 * Reading object files and listing them: open, read and stat of an
 * object (a shard found gone on the way is marked unreachable), the
 * listings of a shard's fan-out directories, and the count of a cache
 * directory's bytes. Nothing here deletes. The DESIGN NOTES of
 * core/objects/objstore.c hold here.
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
#include "core/util/io.h"
#include "core/util/log.h"

/* After an I/O error on @shard: is it the shard that is gone? */
static int check_after(struct objstore *os, unsigned shard, int err)
{
	if (err == -ENOENT || err == -EIO || err == -ENOTDIR ||
	    err == -ESTALE || err == -ENXIO || err == -ENODEV)
		objstore_shard_check(os, shard);
	return err;
}

int objstore_open_read(struct objstore *os, unsigned shard, const char *name)
{
	char path[PATH_MAX];
	int fd, rc;

	rc = os_obj_path(os, os_leg_of(os, shard, name, false, 0), name, path);
	if (rc)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? check_after(os, shard, -errno) : fd;
}

ssize_t objstore_read(struct objstore *os, unsigned shard, const char *name,
		      void *buf, size_t len, off_t off)
{
	ssize_t n;
	int fd;

	fd = objstore_open_read(os, shard, name);
	if (fd < 0)
		return fd;
	n = objstore_encoded(os) ? os_codec_pread(os, fd, buf, len, off)
				 : io_read_full(fd, buf, len, off);
	close(fd);
	return n < 0 ? check_after(os, shard, (int)n) : n;
}

/* A plain object file @fd whole into *@out (malloc'ed, *@len bytes): 0,
 * -EFBIG past OBJSTORE_OBJECT_MAX, -EIO if it ends early, or -errno. */
static int load_plain(int fd, void **out, size_t *len)
{
	struct stat st;
	void *buf;
	ssize_t n;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size > OBJSTORE_OBJECT_MAX)
		return -EFBIG;
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf)
		return -ENOMEM;
	n = io_read_full(fd, buf, (size_t)st.st_size, 0);
	if (n != st.st_size) {
		free(buf);
		return n < 0 ? (int)n : -EIO;
	}
	*out = buf;
	*len = (size_t)st.st_size;
	return 0;
}

int objstore_load(struct objstore *os, unsigned shard, const char *name,
		  void **out, size_t *len)
{
	char hex[HASH_HEX_LEN + 1];
	void *buf;
	int fd, rc;

	fd = objstore_open_read(os, shard, name);
	if (fd < 0)
		return fd;
	rc = objstore_encoded(os) ? os_codec_load(os, fd, &buf, len)
				  : load_plain(fd, &buf, len);
	close(fd);
	if (rc)
		return rc;
	hash_block(buf, *len, hex);
	if (strncmp(hex, name, HASH_HEX_LEN)) {
		free(buf);
		return -EBADMSG;
	}
	*out = buf;
	return 0;
}

int objstore_stat(struct objstore *os, unsigned shard, const char *name,
		  off_t *size)
{
	char path[PATH_MAX];
	struct stat st;
	int rc = os_obj_path(os, os_leg_of(os, shard, name, false, 0), name,
			     path);

	if (rc)
		return rc;
	if (os->stat_hook)
		os->stat_hook(os->stat_hook_arg);
	os_doom_cancel(os, shard, name);
	if (objstore_encoded(os)) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			return -errno;
		rc = os_codec_size(fd, size);
		close(fd);
		return rc;
	}
	if (stat(path, &st) < 0)
		return -errno;
	*size = st.st_size;
	return 0;
}

/* The object files of fan-out directory @i of @shard; their sizes too if
 * @sizes (a stat each), else -1. */
static int list_dir(struct objstore *os, unsigned shard, unsigned i, bool sizes,
		    int (*fn)(void *ctx, const char *name, off_t size),
		    void *ctx)
{
	char path[PATH_MAX], rel[4];
	struct dirent *de;
	DIR *d;
	int rc;

	snprintf(rel, sizeof(rel), "%02x", i);
	rc = objstore_shard_path(os, shard, rel, path);
	if (rc)
		return rc;
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (!rc && (de = readdir(d)) != NULL) {
		struct stat st;

		if (!hash_name_valid(de->d_name) ||
		    os_fanout(de->d_name) != (int)i)
			continue;
		if (!sizes && de->d_type == DT_REG) {
			rc = fn(ctx, de->d_name, -1);
			continue;
		}
		if (fstatat(dirfd(d), de->d_name, &st, 0) < 0)
			continue;
		rc = fn(ctx, de->d_name, sizes ? st.st_size : -1);
	}
	closedir(d);
	return rc;
}

/* The same in every leg of a span's shard 0. */
static int list_legs(struct objstore *os, unsigned shard, unsigned i,
		     bool sizes,
		     int (*fn)(void *ctx, const char *name, off_t size),
		     void *ctx)
{
	unsigned leg, n = atomic_load(&os->nshards);
	int rc = 0;

	if (shard != 0 || !atomic_load(&os->span))
		return list_dir(os, shard, i, sizes, fn, ctx);
	for (leg = 0; leg < n && !rc; leg++)
		if (objstore_root_of(os, leg))
			rc = list_dir(os, leg, i, sizes, fn, ctx);
	return rc;
}

static int list(struct objstore *os, unsigned shard, bool sizes,
		int (*fn)(void *ctx, const char *name, off_t size), void *ctx)
{
	unsigned i;
	int rc = 0;

	for (i = 0; i < FANOUT && !rc; i++)
		rc = list_legs(os, shard, i, sizes, fn, ctx);
	return rc;
}

int objstore_list(struct objstore *os, unsigned shard,
		  int (*fn)(void *ctx, const char *name, off_t size), void *ctx)
{
	return list(os, shard, true, fn, ctx);
}

int objstore_list_names(struct objstore *os, unsigned shard,
			int (*fn)(void *ctx, const char *name, off_t size),
			void *ctx)
{
	return list(os, shard, false, fn, ctx);
}

int objstore_list_dir(struct objstore *os, unsigned shard, unsigned dir,
		      int (*fn)(void *ctx, const char *name, off_t size),
		      void *ctx)
{
	return dir < FANOUT ? list_legs(os, shard, dir, true, fn, ctx)
			    : -EINVAL;
}

static int add_size(void *ctx, const char *name, off_t size)
{
	(void)name;
	*(int64_t *)ctx += size;
	return 0;
}

int objstore_count_dir(struct objstore *os, unsigned dir)
{
	unsigned n = atomic_load(&os->nshards), shard;
	int64_t sum = 0;
	int rc = 0;

	if (dir >= FANOUT)
		return -EINVAL;
	pthread_mutex_lock(&os->count_lock[dir]);
	if (atomic_load(&os->counted[dir])) {
		pthread_mutex_unlock(&os->count_lock[dir]);
		return 0;
	}
	/* an attached shard that cannot be listed now: counted later, not
	 * as empty */
	for (shard = 0; shard < n && !rc; shard++)
		if (!objstore_root_of(os, shard))
			continue;
		else if (!objstore_phys_reachable(os, shard))
			rc = -EIO;
		else
			rc = list_dir(os, shard, dir, true, add_size, &sum);
	if (os->count_hook)
		os->count_hook(os->count_hook_arg, dir);
	if (!rc) {
		atomic_fetch_add(&os->local_bytes, sum);
		atomic_store(&os->counted[dir], true);
		atomic_fetch_add(&os->ncounted, 1);
	}
	pthread_mutex_unlock(&os->count_lock[dir]);
	return rc;
}

bool objstore_local_bytes(struct objstore *os, uint64_t *bytes)
{
	int64_t b = atomic_load(&os->local_bytes);

	*bytes = b > 0 ? (uint64_t)b : 0;
	return atomic_load(&os->ncounted) == FANOUT;
}
