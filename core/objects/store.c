/* SPDX-License-Identifier: MIT */
/*
 * Store directory: recognition, creation and the single-process lock.
 */
#include "core/objects/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/objcodec.h"
#include "core/objects/objstore.h"

#define MARKER "tallyfs-store"

static int dir_is_empty(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);
	int empty = 1;

	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			empty = 0;
			break;
		}
	closedir(d);
	return empty;
}

int store_marker_parse(const char *buf, size_t len, int *format)
{
	static const char head[] = "tallyfs store\n";
	const char *line = buf + sizeof(head) - 1, *nl;
	char text[STORE_MARKER_MAX], *end;
	size_t n;
	long v;

	if (len < sizeof(head) - 1 || memcmp(buf, head, sizeof(head) - 1))
		return -EUCLEAN;
	/* the second line, up to its newline, a NUL or 127 bytes */
	n = len - (size_t)(line - buf);
	nl = memchr(line, '\n', n);
	if (nl)
		n = (size_t)(nl - line);
	if (n > 127)
		n = 127;
	memcpy(text, line, n);
	text[n] = '\0';
	if (strncmp(text, "format", 6))
		return -EUCLEAN;
	errno = 0;
	v = strtol(text + 6, &end, 10);
	if (end == text + 6)
		return -EUCLEAN;
	/* a number too large for an int is an unknown format all the same */
	if (errno == ERANGE || v > INT_MAX || v < INT_MIN)
		v = v < 0 ? INT_MIN : INT_MAX;
	*format = (int)v;
	return 0;
}

static int read_marker(const char *path, int *format)
{
	char file[4096], buf[STORE_MARKER_MAX];
	size_t len = 0;
	ssize_t n;
	int fd, rc;

	snprintf(file, sizeof(file), "%s/" MARKER, path);
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len < sizeof(buf) &&
	       (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc) {
		log_msg(LOG_ERR, "cannot read '%s': %s", file, strerror(-rc));
		return rc;
	}
	rc = store_marker_parse(buf, len, format);
	if (rc)
		log_msg(LOG_ERR, "'%s' is damaged: not a tallyfs store marker",
			file);
	return rc;
}

static int write_marker(const char *path, int format)
{
	char file[4096], tmp[4096], text[64];
	int fd, rc = 0, len;

	snprintf(file, sizeof(file), "%s/" MARKER, path);
	snprintf(tmp, sizeof(tmp), "%s/." MARKER ".tmp", path);
	len = snprintf(text, sizeof(text), "tallyfs store\nformat %d\n",
		       format);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, (size_t)len) != len || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (!rc && rename(tmp, file) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/* The marker of @s, of @format, in place and its directory synced (with
 * meta.db and its WAL, for a new store): 0, or -errno and a message. */
static int set_marker(struct store *s, int format)
{
	int rc = write_marker(s->path, format);

	if (!rc)
		rc = objstore_dir_sync(s->path);
	if (rc)
		log_msg(LOG_ERR, "cannot write store marker in '%s': %s",
			s->path, strerror(-rc));
	else
		s->format = format;
	return rc;
}

static int take_lock(struct store *s, bool quiet)
{
	char file[4096], pid[32];
	ssize_t n;

	snprintf(file, sizeof(file), "%s/lock", s->path);
	s->lockfd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lockfd < 0) {
		int rc = -errno;

		log_msg(LOG_ERR, "cannot open lock file '%s': %s", file,
			strerror(-rc));
		return rc;
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
		int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;

		n = pread(s->lockfd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (!quiet || rc != -EBUSY)
			log_msg(LOG_ERR,
				"store '%s' is already in use by another "
				"process (pid %s)",
				s->path, pid[0] ? pid : "unknown");
		close(s->lockfd);
		s->lockfd = -1;
		return rc;
	}
	return 0;
}

void store_set_pid(struct store *s)
{
	char pid[32];
	int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());

	if (ftruncate(s->lockfd, 0) < 0 ||
	    pwrite(s->lockfd, pid, (size_t)len, 0) != len)
		log_msg(LOG_WARNING, "cannot record pid in lock file: %s",
			strerror(errno));
}

int64_t store_random_id(void)
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	return (int64_t)(r >> 1) | 1;
}

/* The store's identity, which the markers of its shards name; made
 * with the store, and with it what is decided then (STORE_COMPRESS_LOCAL). */
static int store_identity(struct store *s, unsigned flags, uint64_t *out)
{
	int64_t id;
	int rc = meta_config_get(s->meta, "store_id", &id);

	if (rc == -ENOENT) {
		id = store_random_id();
		rc = meta_begin(s->meta);
		if (!rc)
			rc = meta_config_set(s->meta, "store_id", id);
		if (!rc && (flags & STORE_COMPRESS_LOCAL))
			rc = meta_config_set(s->meta, "compress_local", 1);
		if (!rc)
			rc = meta_commit(s->meta);
		else
			meta_rollback(s->meta);
	}
	if (!rc)
		*out = (uint64_t)id;
	return rc;
}

static int attach_one(void *ctx, uint32_t id, const char *path, int state)
{
	struct objstore *os = ctx;
	bool draining = state == META_SHARD_DRAINING;

	if (id == 0) {
		objstore_shard_set_draining(os, 0, draining);
		return 0;
	}
	if (!path) {
		log_msg(LOG_ERR, "shard %u has no path: ignored", id);
		return 0;
	}
	return objstore_shard_attach(os, id, path, draining);
}

/*
 * Whether the object files are envelopes (compress_local): the store's
 * config says, as it was made. Asked of a store made without: refused,
 * since a plain object file cannot be told from an envelope by its bytes.
 */
static int store_codec(struct store *s, unsigned flags)
{
	int64_t v = 0;
	int rc = meta_config_get(s->meta, "compress_local", &v);

	if (rc && rc != -ENOENT)
		return rc;
	if (v != 0 && v != 1) {
		log_msg(LOG_ERR,
			"store '%s' is damaged: compress_local is %lld",
			s->path, (long long)v);
		return -EUCLEAN;
	}
	if (v == 0 && s->format == STORE_FORMAT_ENVELOPES) {
		log_msg(LOG_ERR,
			"store '%s' is damaged: its marker says format %d "
			"(compress_local), its metadata does not",
			s->path, s->format);
		return -EUCLEAN;
	}
	if (v == 1) {
		/* a store just restored, or a node's new cache of a shared
		 * store made with it: its marker says so from now on */
		if (s->format != STORE_FORMAT_ENVELOPES) {
			rc = set_marker(s, STORE_FORMAT_ENVELOPES);
			if (rc)
				return rc;
		}
		objstore_encode_local(s->objs, OBJCODEC_ZSTD_DEFAULT);
		return 0;
	}
	if (flags & STORE_COMPRESS_LOCAL) {
		log_msg(LOG_ERR,
			"store '%s' was made without compress_local: it is "
			"decided when a store is made (its object files are "
			"plain)",
			s->path);
		return -EINVAL;
	}
	return 0;
}

/* Attach the shards the metadata lists (an unreachable one too). */
static int attach_shards(struct store *s, unsigned flags)
{
	uint64_t id;
	int rc = store_identity(s, flags, &id);

	if (!rc)
		rc = store_codec(s, flags);
	if (rc)
		return rc;
	/* the intent log of the SQLite engine, replayed before anything
	 * reads the store (core/meta/meta_ilog.c) */
	if (!meta_shared(s->meta)) {
		char path[PATH_MAX];
		struct meta_ilog_stats st;

		snprintf(path, sizeof(path), "%s/" META_ILOG_NAME, s->path);
		rc = meta_ilog_open(s->meta, path, id,
				    !(flags & STORE_NO_INTENT_LOG), &st);
		if (rc)
			return rc;
	}
	objstore_set_store_id(s->objs, id);
	return meta_shards(s->meta, attach_one, s->objs);
}

/*
 * The legs of a shared store's cache (core/objects/objstore.c, Spans): STORE/legs,
 * a line "ID PATH" per leg added to this node's cache, ids from 1 up.
 * The file is the node's: no row names a leg.
 */
#define LEGS "legs"

/* Attach the legs STORE/legs lists (an unreachable one too). */
static int attach_legs(struct store *s)
{
	char path[PATH_MAX], line[PATH_MAX + 32];
	unsigned want = 1;
	FILE *f;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/" LEGS, s->path);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (!rc && fgets(line, sizeof(line), f)) {
		char *end, *root;
		unsigned long id = strtoul(line, &end, 10);
		size_t n;

		root = end + (*end == ' ');
		n = strlen(root);
		if (n && root[n - 1] == '\n')
			root[--n] = '\0';
		if (end == line || *end != ' ' || id != want ||
		    id >= OBJSTORE_MAX_SHARDS || root[0] != '/') {
			log_msg(LOG_ERR,
				"'%s' is damaged: line %u is not \"ID PATH\"",
				path, want);
			rc = -EUCLEAN;
			break;
		}
		rc = objstore_shard_attach(s->objs, (unsigned)id, root, false);
		want++;
	}
	fclose(f);
	return rc;
}

int store_leg_add(struct store *s, unsigned id, const char *root)
{
	char path[PATH_MAX], tmp[PATH_MAX], line[PATH_MAX + 32];
	FILE *in, *out;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/" LEGS, s->path);
	snprintf(tmp, sizeof(tmp), "%s/" LEGS ".tmp", s->path);
	out = fopen(tmp, "we");
	if (!out)
		return -errno;
	in = fopen(path, "re");
	if (in) {
		while (fgets(line, sizeof(line), in))
			fputs(line, out);
		fclose(in);
	}
	fprintf(out, "%u %s\n", id, root);
	if (fflush(out) || fsync(fileno(out)) < 0)
		rc = -errno;
	if (fclose(out) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (!rc)
		rc = objstore_dir_sync(s->path);
	if (rc)
		unlink(tmp);
	return rc;
}

int store_open(const char *path, bool create, uint32_t block_size,
	       struct store **out)
{
	return store_open_meta(path, NULL, create, block_size, out);
}

int store_open_meta(const char *path, const char *meta, bool create,
		    uint32_t block_size, struct store **out)
{
	return store_open_flags(path, meta, create, block_size, 0, out);
}

int store_open_flags(const char *path, const char *meta, bool create,
		     uint32_t block_size, unsigned flags, struct store **out)
{
	char file[4096];
	struct store *s;
	struct stat st;
	bool fresh = false;
	int64_t bs = 0;
	int rc, format = 0;

	if (block_size < 4096 || block_size > (64u << 20) ||
	    (block_size & (block_size - 1))) {
		log_msg(LOG_ERR,
			"block size %u is not a power of two between "
			"4 KiB and 64 MiB",
			block_size);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lockfd = -1;
	s->path = realpath(path, NULL);
	if (!s->path && errno == ENOENT && create) {
		rc = objstore_mkdir(path);
		if (rc) {
			log_msg(LOG_ERR, "cannot create store '%s': %s", path,
				strerror(-rc));
			goto out_free;
		}
		s->path = realpath(path, NULL);
	}
	if (!s->path) {
		rc = -errno;
		log_msg(LOG_ERR, "cannot open store '%s': %s", path,
			strerror(-rc));
		goto out_free;
	}
	if (stat(s->path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		rc = -ENOTDIR;
		log_msg(LOG_ERR, "store '%s' is not a directory", s->path);
		goto out_free;
	}
	rc = read_marker(s->path, &format);
	s->format = format;
	if (rc == -ENOENT) {
		rc = dir_is_empty(s->path);
		if (rc == 0) {
			log_msg(LOG_ERR,
				"'%s' is not empty and is not a "
				"tallyfs store (no '" MARKER "' file)",
				s->path);
			rc = -ENOTEMPTY;
			goto out_free;
		}
		if (rc < 0)
			goto out_free;
		if (!create) {
			log_msg(LOG_ERR, "'%s' is not a tallyfs store",
				s->path);
			rc = -ENOENT;
			goto out_free;
		}
		fresh = true;
	} else if (rc) {
		goto out_free;
	} else if (format != STORE_FORMAT && format != STORE_FORMAT_ENVELOPES) {
		log_msg(LOG_ERR,
			"store '%s' has format version %d; this "
			"tallyfs knows versions %d and %d",
			s->path, format, STORE_FORMAT, STORE_FORMAT_ENVELOPES);
		rc = -EPROTO;
		goto out_free;
	}
	rc = take_lock(s, flags & STORE_QUIET_BUSY);
	if (rc)
		goto out_free;
	snprintf(file, sizeof(file), "%s/meta.db", s->path);
	if (meta && !meta_is_pg(meta)) {
		char *shown = meta_uri_masked(meta);

		log_msg(LOG_ERR, "meta=%s: not a postgres:// URI",
			shown ? shown : "(no memory)");
		free(shown);
		rc = -EINVAL;
		goto out_unlock;
	}
	if (meta && access(file, F_OK) == 0) {
		log_msg(LOG_ERR,
			"store '%s' has metadata of its own (meta.db): "
			"it cannot be mounted with meta=",
			s->path);
		rc = -EEXIST;
		goto out_unlock;
	}
	if (!meta && !fresh && access(file, F_OK) < 0 && errno == ENOENT) {
		log_msg(LOG_ERR,
			"store '%s' keeps its metadata elsewhere (no meta.db): "
			"mount it with -o meta=URI",
			s->path);
		rc = -ENOENT;
		goto out_unlock;
	}
	/* a shared database: formatted by the first mount of any host */
	rc = meta_open(meta ? meta : file, meta ? create : fresh, block_size,
		       &s->meta);
	if (rc)
		goto out_unlock;
	if (fresh) {
		/* the marker last: renamed in place, then the store's
		 * directory synced (meta.db and its WAL with it) */
		rc = set_marker(s, flags & STORE_COMPRESS_LOCAL
					   ? STORE_FORMAT_ENVELOPES
					   : STORE_FORMAT);
		if (rc)
			goto out_meta;
	}
	rc = meta_config_get(s->meta, "block_size", &bs);
	if (rc || bs < 4096 || bs > (64 << 20) || (bs & (bs - 1))) {
		log_msg(LOG_ERR, "store '%s' is damaged: bad block size",
			s->path);
		rc = -EUCLEAN;
		goto out_meta;
	}
	s->block_size = (uint32_t)bs;
	snprintf(file, sizeof(file), "%s/shards", s->path);
	rc = objstore_open_sync(file, (int)(flags >> STORE_SYNC_SHIFT) & 3,
				&s->objs);
	if (rc) {
		log_msg(LOG_ERR, "cannot open object store '%s': %s", file,
			strerror(-rc));
		goto out_meta;
	}
	rc = attach_shards(s, flags);
	/* a shared store: this directory is the node's cache, spread over
	 * the legs it was given */
	if (!rc && meta_shared(s->meta)) {
		objstore_set_span(s->objs);
		rc = attach_legs(s);
	}
	if (rc) {
		log_msg(LOG_ERR, "cannot attach the shards of '%s': %s",
			s->path, strerror(-rc));
		objstore_free(s->objs);
		goto out_meta;
	}
	/* only now: a store refused leaves its lock file as it was */
	store_set_pid(s);
	*out = s;
	return 0;

out_meta:
	meta_close(s->meta);
out_unlock:
	close(s->lockfd);
out_free:
	free(s->path);
	free(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	objstore_free(s->objs);
	meta_close(s->meta);
	if (s->lockfd >= 0)
		close(s->lockfd);
	free(s->path);
	free(s);
}
