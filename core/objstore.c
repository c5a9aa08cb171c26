/* SPDX-License-Identifier: MIT */
/*
 * Object files on disk.
 *
 * DESIGN NOTES
 *
 * Invariants:
 *  1. An object file under <shard>/<xx>/ is complete and immutable: it is
 *     written to <shard>/tmp, fsync'ed, then renamed with RENAME_NOREPLACE.
 *  2. Object data is fsync'd, and its fan-out directory is fsync'd
 *     (objstore_sync_dirs), before the metadata that names it commits; the
 *     caller (core/tally.c) keeps that order.
 *  3. A name is never rebound to other bytes: a put whose hash names an
 *     existing object compares the bytes and, on a mismatch, moves on to
 *     the next variant name.
 *
 * There is no shared mutable state besides the temp-name counter, so no
 * lock: the caller serialises unlink against the reuse of a name.
 */
#include "core/objstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

#define MAX_VARIANTS 1000000u

struct objstore {
	int dirfd; /* STORE/shards */
	_Atomic unsigned long tmpseq;
};

static int fanout(const char *name)
{
	static const char hex[] = "0123456789abcdef";

	return (int)((strchr(hex, name[0]) - hex) * 16 +
		     (strchr(hex, name[1]) - hex));
}

void objstore_relpath(unsigned shard, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%u/%.2s/%s", shard, name, name);
}

static int mkdir_at(int base, const char *path)
{
	if (mkdirat(base, path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int clean_tmp(int base, unsigned shard)
{
	char path[64];
	DIR *d;
	struct dirent *de;
	int fd;

	snprintf(path, sizeof(path), "%u/tmp", shard);
	fd = openat(base, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
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
	struct objstore *os;
	int rc;

	if (mkdir(shards_dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	os = calloc(1, sizeof(*os));
	if (!os)
		return -ENOMEM;
	os->dirfd = open(shards_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (os->dirfd < 0) {
		rc = -errno;
		goto out_free;
	}
	rc = mkdir_at(os->dirfd, "0");
	if (!rc)
		rc = mkdir_at(os->dirfd, "0/tmp");
	if (!rc)
		rc = clean_tmp(os->dirfd, 0);
	if (rc)
		goto out_close;
	*out = os;
	return 0;

out_close:
	close(os->dirfd);
out_free:
	free(os);
	return rc;
}

void objstore_free(struct objstore *os)
{
	if (!os)
		return;
	close(os->dirfd);
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

static int sync_dir(int base, unsigned shard, int idx)
{
	char path[32];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%u/%02x", shard, idx);
	fd = openat(base, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int objstore_sync_dirs(struct objstore *os, unsigned shard,
		       struct objstore_dirs *dirs)
{
	int i, rc = 0;

	for (i = 0; i < 256; i++) {
		if (!(dirs->bits[i / 8] & (1u << (i % 8))))
			continue;
		if (!rc)
			rc = sync_dir(os->dirfd, shard, i);
		dirs->bits[i / 8] &= (uint8_t) ~(1u << (i % 8));
	}
	return rc;
}

/*
 * Create object @name from @buf: 1 created, 0 already there (not
 * compared), negative errno on failure.
 */
static int create_object(struct objstore *os, unsigned shard, const char *name,
			 const void *buf, size_t len,
			 struct objstore_dirs *dirs)
{
	char tmp[64], dst[96];
	unsigned long seq = atomic_fetch_add(&os->tmpseq, 1);
	int fd, rc;

	snprintf(tmp, sizeof(tmp), "%u/tmp/%ld.%lu", shard, (long)getpid(),
		 seq);
	objstore_relpath(shard, name, dst, sizeof(dst));
	fd = openat(os->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0400);
	if (fd < 0)
		return -errno;
	rc = write_all(fd, buf, len);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		goto out_unlink;
	for (;;) {
		if (renameat2(os->dirfd, tmp, os->dirfd, dst,
			      RENAME_NOREPLACE) == 0)
			break;
		rc = -errno;
		if (rc == -ENOENT) {
			char sub[16];

			snprintf(sub, sizeof(sub), "%u/%.2s", shard, name);
			rc = mkdir_at(os->dirfd, sub);
			if (!rc)
				continue;
		}
		if (rc == -EEXIST)
			rc = 0;
		goto out_unlink;
	}
	if (dirs) {
		int i = fanout(name);

		dirs->bits[i / 8] |= (uint8_t)(1u << (i % 8));
		return 1;
	}
	rc = sync_dir(os->dirfd, shard, fanout(name));
	return rc ? rc : 1;

out_unlink:
	unlinkat(os->dirfd, tmp, 0);
	return rc;
}

/* 0 equal, 1 different, negative errno. */
static int compare_object(struct objstore *os, unsigned shard, const char *name,
			  const void *buf, size_t len)
{
	char path[96], chunk[65536];
	const char *p = buf;
	struct stat st;
	size_t done = 0;
	int fd, rc = 0;

	objstore_relpath(shard, name, path, sizeof(path));
	fd = openat(os->dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if ((size_t)st.st_size != len) {
		rc = 1;
		goto out;
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
			goto out;
		}
		done += (size_t)n;
	}
out:
	close(fd);
	return rc;
}

int objstore_ensure(struct objstore *os, unsigned shard, const char *name,
		    const void *buf, size_t len, struct objstore_dirs *dirs)
{
	for (;;) {
		int rc = create_object(os, shard, name, buf, len, dirs);

		if (rc != 0)
			return rc < 0 ? rc : 0;
		rc = compare_object(os, shard, name, buf, len);
		if (rc == -ENOENT)
			continue; /* unlinked under us: create again */
		if (rc == 1)
			return -EEXIST;
		return rc;
	}
}

int objstore_put(struct objstore *os, unsigned shard, const void *buf,
		 size_t len, char name[OBJNAME_MAX], bool *created,
		 struct objstore_dirs *dirs)
{
	char hex[HASH_HEX_LEN + 1];
	unsigned v;

	hash_block(buf, len, hex);
	for (v = 0; v < MAX_VARIANTS; v++) {
		int rc;

		hash_variant_name(hex, v, name);
		/* Most puts of new data create; probe first for dedup hits. */
		rc = compare_object(os, shard, name, buf, len);
		if (rc == 0) {
			*created = false;
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
		rc = create_object(os, shard, name, buf, len, dirs);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			*created = true;
			return 0;
		}
		v--; /* raced with another writer: compare again */
	}
	return -EOVERFLOW;
}

ssize_t objstore_read(struct objstore *os, unsigned shard, const char *name,
		      void *buf, size_t len, off_t off)
{
	char path[96];
	size_t done = 0;
	int fd;

	objstore_relpath(shard, name, path, sizeof(path));
	fd = openat(os->dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  off + (off_t)done);

		if (n < 0) {
			int rc = -errno;

			if (rc == -EINTR)
				continue;
			close(fd);
			return rc;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	return (ssize_t)done;
}

int objstore_stat(struct objstore *os, unsigned shard, const char *name,
		  off_t *size)
{
	char path[96];
	struct stat st;

	objstore_relpath(shard, name, path, sizeof(path));
	if (fstatat(os->dirfd, path, &st, 0) < 0)
		return -errno;
	*size = st.st_size;
	return 0;
}

int objstore_unlink(struct objstore *os, unsigned shard, const char *name)
{
	char path[96];

	objstore_relpath(shard, name, path, sizeof(path));
	if (unlinkat(os->dirfd, path, 0) < 0)
		return -errno;
	return 0;
}

int objstore_list(struct objstore *os, unsigned shard,
		  int (*fn)(void *ctx, const char *name, off_t size), void *ctx)
{
	char path[32];
	int i, rc = 0;

	for (i = 0; i < 256 && !rc; i++) {
		struct dirent *de;
		DIR *d;
		int fd;

		snprintf(path, sizeof(path), "%u/%02x", shard, i);
		fd = openat(os->dirfd, path,
			    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				continue;
			return -errno;
		}
		d = fdopendir(fd);
		if (!d) {
			rc = -errno;
			close(fd);
			return rc;
		}
		while (!rc && (de = readdir(d)) != NULL) {
			struct stat st;

			if (!hash_name_valid(de->d_name) ||
			    fanout(de->d_name) != i)
				continue;
			if (fstatat(dirfd(d), de->d_name, &st, 0) < 0)
				continue;
			rc = fn(ctx, de->d_name, st.st_size);
		}
		closedir(d);
	}
	return rc;
}
