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
 *     metadata that names the object commits; the caller (core/tally.c)
 *     keeps that order.
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
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/log.h"

#define MAX_VARIANTS 1000000u

struct objstore {
	int dirfd; /* STORE/shards */
	_Atomic unsigned long tmpseq;
	_Atomic unsigned fault_in[2]; /* countdown per op; 0 = off */
	_Atomic int fault_err[2];
};

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

struct objstore_staged {
	unsigned shard;
	char tmp[64];
	const void *buf;
	size_t len;
	char *name;    /* borrowed from the caller */
	bool *created; /* borrowed from the caller */
	bool placed;
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

/* Write @buf to a new temp file of @shard; @sync: fsync it. */
static int write_tmp(struct objstore *os, unsigned shard, const void *buf,
		     size_t len, bool sync, char tmp[64])
{
	unsigned long seq = atomic_fetch_add(&os->tmpseq, 1);
	int fd, rc;

	snprintf(tmp, 64, "%u/tmp/%ld.%lu", shard, (long)getpid(), seq);
	fd = openat(os->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0400);
	if (fd < 0)
		return -errno;
	rc = fault(os, OBJSTORE_WRITE);
	if (!rc)
		rc = room_for(fd, len);
	if (!rc)
		rc = write_all(fd, buf, len);
	if (!rc && sync) {
		rc = fault(os, OBJSTORE_SYNC);
		if (!rc && fsync(fd) < 0)
			rc = -errno;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		unlinkat(os->dirfd, tmp, 0);
	return rc;
}

/* Rename temp file @tmp to object @name: 1 placed, 0 the name exists. */
static int place(struct objstore *os, unsigned shard, const char *tmp,
		 const char *name)
{
	char dst[96];
	int rc;

	objstore_relpath(shard, name, dst, sizeof(dst));
	for (;;) {
		if (renameat2(os->dirfd, tmp, os->dirfd, dst,
			      RENAME_NOREPLACE) == 0)
			return 1;
		rc = -errno;
		if (rc == -ENOENT) {
			char sub[16];

			snprintf(sub, sizeof(sub), "%u/%.2s", shard, name);
			rc = mkdir_at(os->dirfd, sub);
			if (!rc)
				continue;
		}
		return rc == -EEXIST ? 0 : rc;
	}
}

/*
 * Create object @name from @buf, durably: 1 created, 0 already there (not
 * compared), negative errno on failure.
 */
static int create_object(struct objstore *os, unsigned shard, const char *name,
			 const void *buf, size_t len)
{
	char tmp[64];
	int rc = write_tmp(os, shard, buf, len, true, tmp);

	if (rc)
		return rc;
	rc = place(os, shard, tmp, name);
	if (rc <= 0) {
		unlinkat(os->dirfd, tmp, 0);
		return rc;
	}
	rc = sync_dir(os->dirfd, shard, fanout(name));
	return rc ? rc : 1;
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
		    const void *buf, size_t len)
{
	for (;;) {
		int rc = create_object(os, shard, name, buf, len);

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

static int stage(struct objstore *os, unsigned shard, const void *buf,
		 size_t len, char *name, bool *created,
		 struct objstore_batch *b)
{
	struct objstore_staged *st;
	int rc;

	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		void *v = realloc(b->v, cap * sizeof(*b->v));

		if (!v)
			return -ENOMEM;
		b->v = v;
		b->cap = cap;
	}
	st = &b->v[b->n];
	rc = write_tmp(os, shard, buf, len, false, st->tmp);
	if (rc)
		return rc;
	st->shard = shard;
	st->buf = buf;
	st->len = len;
	st->name = name;
	st->created = created;
	st->placed = false;
	*created = true;
	b->n++;
	return 0;
}

int objstore_put(struct objstore *os, unsigned shard, const void *buf,
		 size_t len, char name[OBJNAME_MAX], bool *created,
		 struct objstore_batch *batch)
{
	char hex[HASH_HEX_LEN + 1];
	unsigned v;

	hash_block(buf, len, hex);
	for (v = 0; v < MAX_VARIANTS; v++) {
		int rc;

		hash_variant_name(hex, v, name);
		/* probe first: a dedup hit writes nothing */
		rc = compare_object(os, shard, name, buf, len);
		if (rc == 0) {
			*created = false;
			/* another stream may have put it in place without
			 * having made it durable yet: the batch syncs */
			if (batch)
				batch->hits++;
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
		if (batch)
			return stage(os, shard, buf, len, name, created, batch);
		rc = create_object(os, shard, name, buf, len);
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

int objstore_batch_finish(struct objstore *os, struct objstore_batch *b)
{
	size_t i;
	int rc;

	if (b->n == 0) {
		if (b->hits && syncfs(os->dirfd) < 0)
			return -errno;
		return 0;
	}
	/* 1: the data of every temp file */
	rc = fault(os, OBJSTORE_SYNC);
	if (rc)
		return rc;
	if (syncfs(os->dirfd) < 0)
		return -errno;
	/* 2: the names */
	for (i = 0; i < b->n; i++) {
		struct objstore_staged *st = &b->v[i];

		rc = place(os, st->shard, st->tmp, st->name);
		if (rc < 0)
			return rc;
		st->placed = true;
		if (rc == 1)
			continue;
		/* someone stored this name meanwhile: same bytes, or not */
		unlinkat(os->dirfd, st->tmp, 0);
		rc = objstore_put(os, st->shard, st->buf, st->len, st->name,
				  st->created, NULL);
		if (rc)
			return rc;
	}
	/* 3: the renames */
	if (syncfs(os->dirfd) < 0)
		return -errno;
	return 0;
}

void objstore_batch_release(struct objstore *os, struct objstore_batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		if (!b->v[i].placed)
			unlinkat(os->dirfd, b->v[i].tmp, 0);
	free(b->v);
	memset(b, 0, sizeof(*b));
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
