/* SPDX-License-Identifier: MIT */
/*
 * A store made from its bucket alone (tallyfs --restore): the newest (or
 * a chosen) metadata snapshot becomes the metadata of a new, empty store
 * directory, every object of it marked as in the bucket and not local;
 * the bucket is listed to check that every object the snapshot names is
 * there. Mounting the store with the same remote options then fetches
 * objects as reads need them.
 *
 * The snapshot must come from the store the bucket's marker names; a
 * bucket without a marker or without snapshots is refused, and so is a
 * restore that finds objects missing, unless told otherwise. A store
 * directory that exists and is not empty is never touched; one this
 * restore created is removed again when it fails.
 */
#include "core/remote/remote.h"
#include "core/s3/bucket.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/store.h"

struct fd_sink {
	int fd;
	uint64_t n;
};

static int to_fd(void *arg, const void *buf, size_t n)
{
	struct fd_sink *f = arg;
	const char *p = buf;

	while (n) {
		ssize_t w = write(f->fd, p, n);

		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
		f->n += (uint64_t)w;
	}
	return 0;
}

struct buf_sink {
	char buf[MARKER_MAX + 1];
	size_t n;
};

static int to_buf(void *arg, const void *buf, size_t n)
{
	struct buf_sink *b = arg;

	if (n > sizeof(b->buf) - 1 - b->n)
		return -EFBIG;
	memcpy(b->buf + b->n, buf, n);
	b->n += n;
	return 0;
}

static void sayf(void (*say)(void *, const char *), void *ctx, const char *fmt,
		 ...) __attribute__((format(printf, 3, 4)));

static void sayf(void (*say)(void *, const char *), void *ctx, const char *fmt,
		 ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (say)
		say(ctx, line);
}

static bool dir_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	bool empty = true;

	if (!d)
		return false;
	while (empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	closedir(d);
	return empty;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* The store id the bucket's marker names, its ancestors and envelope
 * lines (@seal, of SEAL_TEXT_MAX bytes; *@key_id): 0, -ENOENT (no marker),
 * or -EUCLEAN (not a marker). */
static int marker_id(const struct s3_cfg *cfg, struct s3 *s, uint64_t *id,
		     char *ancestors, size_t alen, char *seal, uint64_t *key_id)
{
	struct buf_sink b = { .n = 0 };
	char key[1024], want[sizeof(b.buf)];
	const char *a;
	unsigned long long v;
	int rc = s3_key(cfg, MARKER_KEY, key, sizeof(key));

	if (!rc)
		rc = s3_get(s, key, 0, 0, to_buf, &b, NULL);
	if (rc)
		return rc == -EFBIG ? -EUCLEAN : rc;
	b.buf[b.n] = '\0';
	if (sscanf(b.buf, "tallyfs store\nstore_id %llu", &v) != 1)
		return -EUCLEAN;
	a = strstr(b.buf, "\nancestors ");
	snprintf(ancestors, alen, "%s", a ? a + 11 : "");
	ancestors[strcspn(ancestors, "\n")] = '\0';
	if (bucket_seal_parse(b.buf, seal, SEAL_TEXT_MAX, key_id))
		return -EUCLEAN;
	bucket_marker_text(v, ancestors, seal, want, sizeof(want));
	if (strcmp(want, b.buf))
		return -EUCLEAN;
	*id = v;
	return 0;
}

/* The key of snapshot @want ("snap-...", with or without ".db", or a
 * whole key) in @k, or of the newest when @want is NULL. */
static const char *pick(const struct bucket_keys *k, const char *want)
{
	size_t i, wl;

	if (!k->n)
		return NULL;
	if (!want)
		return k->v[k->n - 1];
	wl = strlen(want);
	for (i = 0; i < k->n; i++) {
		const char *base = strrchr(k->v[i], '/');

		base = base ? base + 1 : k->v[i];
		if (!strcmp(k->v[i], want) || !strcmp(base, want) ||
		    (!strncmp(base, want, wl) && !strcmp(base + wl, ".db")))
			return k->v[i];
	}
	return NULL;
}

static int download(struct s3 *s, const char *key, const char *path,
		    uint64_t *size)
{
	struct fd_sink f = { -1, 0 };
	int rc;

	f.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (f.fd < 0)
		return -errno;
	rc = s3_get(s, key, 0, 0, to_fd, &f, NULL);
	if (!rc && fsync(f.fd))
		rc = -errno;
	if (close(f.fd) && !rc)
		rc = -errno;
	*size = f.n;
	return rc;
}

/* Sealed snapshot @key, downloaded to @path.sealed, opened into @path:
 * 0, or -errno (seal_open_fd()'s: said through @say). */
static int download_sealed(struct s3 *s, const struct seal *sl, const char *key,
			   const char *path, uint64_t *size,
			   void (*say)(void *ctx, const char *line), void *ctx)
{
	char tmp[4200], kid[17];
	uint64_t got_id = 0;
	int in, out, rc;

	snprintf(tmp, sizeof(tmp), "%s.sealed", path);
	rc = download(s, key, tmp, size);
	if (rc) {
		unlink(tmp);
		return rc;
	}
	in = open(tmp, O_RDONLY | O_CLOEXEC);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	rc = in < 0 || out < 0 ? -errno : 0;
	if (!rc)
		rc = seal_open_fd(sl, seal_snapshot_ctx(key), in, out, size,
				  &got_id);
	if (!rc && fsync(out))
		rc = -errno;
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) && !rc)
		rc = -errno;
	unlink(tmp);
	seal_key_id_text(got_id, kid);
	if (rc == -EKEYREJECTED)
		sayf(say, ctx,
		     "error: snapshot '%s' is sealed with key %s, "
		     "not the key given",
		     key, kid);
	else if (rc == -EBADMSG || rc == -EUCLEAN || rc == -ENOKEY)
		sayf(say, ctx,
		     "error: snapshot '%s' does not open (%s): altered, cut, "
		     "or not this store's",
		     key, strerror(-rc));
	return rc;
}

struct check_ctx {
	struct meta *m;
	const struct bucket_keys *objects;
	const struct s3_cfg *cfg;
	struct remote_restore_report *rep;
	void (*say)(void *ctx, const char *line);
	void *sctx;
};

static int check_object(void *arg, int64_t id, const char *name, uint32_t shard,
			int64_t refcount)
{
	struct check_ctx *c = arg;
	struct meta_remote_state st;
	char key[1024], kn[OBJKEY_MAX];

	(void)id;
	(void)shard;
	c->rep->objects++;
	/* the key of the row's generation */
	if (meta_remote_state(c->m, name, &st) == 0)
		meta_key_name(name, st.gen, kn);
	else
		kn[0] = '\0';
	if (!kn[0] || bucket_object_key(c->cfg, kn, key, sizeof(key)) ||
	    !bucket_keys_has(c->objects, key)) {
		c->rep->missing++;
		sayf(c->say, c->sctx,
		     "missing: object '%s' (%" PRId64 " reference(s)) is "
		     "not in the bucket",
		     name, refcount);
	}
	return 0;
}

/*
 * The restored store's own identity: @id (the new store directory's,
 * which its shard markers name), snapshot sequences above @seq_base - 1,
 * the highest any snapshot listed has (its snapshots sort after every
 * one of the store it came from), and the stores it comes from,
 * @ancestors (whose snapshots a later restore may take). It is bound to
 * the bucket and prefix it was restored from, @cfg's, whatever the
 * snapshot's store was bound to: a restore from a copy of a prefix (a
 * drill beside a store in use) mounts on the copy. Its seal record is
 * the marker's, @seal ("": none), not the snapshot's: a rekey after the
 * snapshot changed the keys' rings (core/remote/remote_rekey.c), and the
 * snapshot's would bring the old key back.
 */
static int restored(struct meta *m, const struct s3_cfg *cfg, uint64_t id,
		    uint64_t seq_base, const char *ancestors, const char *seal)
{
	char url[1024];
	int rc = meta_begin(m);

	bucket_url(cfg, url, sizeof(url));

	if (!rc)
		rc = meta_remote_restored(m);
	if (!rc)
		rc = meta_config_set(m, "store_id", (int64_t)id);
	if (!rc)
		rc = meta_config_set(m, "snap_seq_base", (int64_t)seq_base);
	if (!rc)
		rc = meta_remote_conf_set(m, "ancestors", ancestors);
	if (!rc)
		rc = meta_remote_conf_set(m, "url", url);
	if (!rc && seal[0])
		rc = meta_remote_conf_set(m, "seal", seal);
	return meta_end(m, rc);
}

/* The sequence after every snapshot @k lists (SNAP_PREFIX + SEQ-...). */
static uint64_t seq_after(const struct bucket_keys *k)
{
	uint64_t best = 0;
	size_t i;

	for (i = 0; i < k->n; i++) {
		const char *p = strstr(k->v[i], SNAP_PREFIX);
		unsigned long long v;

		if (p && sscanf(p + strlen(SNAP_PREFIX), "%llu", &v) == 1 &&
		    v >= best)
			best = v + 1;
	}
	return best;
}

/*
 * The keys of the bucket that the restored snapshot does not name: the
 * store it came from wrote them after it (its newer kept snapshots name
 * them, and its fenced mount still reads them), or nothing names them.
 * A restore on the original's own prefix must not destroy them: each is
 * kept (meta_remote_kept_add(), counted as named), until the snapshots
 * newer than the restored one, listed in remote_conf 'kept_snaps', are
 * all gone from the bucket (the retention that kept them ended) and
 * 'kept_until' (KEPT_DAYS after the restore) has passed: the bucket's GC
 * then releases them (core/remote/remote_del.c).
 */
#define KEPT_DAYS 7

static int keep_for_original(struct meta *m, const struct s3_cfg *kcfg,
			     const struct bucket_keys *objects,
			     const struct bucket_keys *snaps, const char *key,
			     uint64_t *kept)
{
	char until[32], *newer = NULL;
	size_t i, len = 1, at = 0;
	int rc = meta_begin(m);

	*kept = 0;
	for (i = 0; i < objects->n && !rc; i++) {
		char kn[OBJKEY_MAX];
		int v;

		if (bucket_key_name(kcfg, objects->v[i], kn))
			continue; /* not an object key of this store's */
		v = meta_remote_named(m, kn);
		if (v < 0)
			rc = v;
		else if (v == 0 && (rc = meta_remote_kept_add(m, kn)) == 0)
			(*kept)++;
	}
	for (i = 0; i < snaps->n; i++)
		len += strlen(snaps->v[i]) + 1;
	newer = calloc(1, len);
	if (!rc && !newer)
		rc = -ENOMEM;
	for (i = 0; i < snaps->n && !rc; i++) {
		if (strcmp(snaps->v[i], key) <= 0)
			continue;
		at += (size_t)snprintf(newer + at, len - at, "%s%s",
				       at ? " " : "", snaps->v[i]);
	}
	snprintf(until, sizeof(until), "%lld",
		 (long long)time(NULL) + KEPT_DAYS * 86400LL);
	if (!rc)
		rc = meta_remote_conf_set(m, "kept_snaps", newer);
	if (!rc)
		rc = meta_remote_conf_set(m, "kept_until", until);
	free(newer);
	return meta_end(m, rc);
}

/* Whether store @sid is one of @ancestors (ids, space separated). */
static bool ancestor(const char *ancestors, uint64_t sid)
{
	const char *p = ancestors;

	while (*p) {
		char *end;
		unsigned long long v = strtoull(p, &end, 10);

		if (end == p)
			return false;
		if (v == sid)
			return true;
		p = end + strspn(end, " ");
	}
	return false;
}

/* The bucket's marker names store @id, made from @ancestors, from now on
 * (a takeover). */
static int take_over(const struct s3_cfg *cfg, struct s3 *s, uint64_t id,
		     const char *ancestors, const char *seal)
{
	char key[1024], text[MARKER_MAX];
	int rc = s3_key(cfg, MARKER_KEY, key, sizeof(key));

	bucket_marker_text(id, ancestors, seal, text, sizeof(text));
	return rc ? rc : s3_put_buf(s, key, text, strlen(text));
}

int remote_restore(const struct remote_restore_opts *o,
		   struct remote_restore_report *rep,
		   void (*say)(void *ctx, const char *line), void *ctx)
{
	struct bucket_keys snaps = { 0 }, objects = { 0 };
	char file[4096], prefix[1024];
	struct timespec t0, t1;
	struct store *st = NULL;
	struct meta_stats ms;
	struct s3 *s = NULL;
	uint64_t id, size;
	int64_t sid, nid = 0;
	char anc[700], newanc[sizeof(anc) + 24], seal_text[SEAL_TEXT_MAX];
	char err[256];
	struct seal sl = { .keyed = o->keyed, .key = o->key };
	uint64_t key_id = 0;
	const char *key;
	bool created = false, existed = false;
	struct stat sb;
	int rc;

	memset(rep, 0, sizeof(*rep));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (stat(o->store, &sb) == 0) {
		if (!S_ISDIR(sb.st_mode) || !dir_empty(o->store)) {
			sayf(say, ctx,
			     "error: '%s' exists and is not an empty "
			     "directory: a restore makes a new store",
			     o->store);
			return -EEXIST;
		}
		existed = true;
	} else if (errno != ENOENT) {
		return -errno;
	}
	rc = s3_new(o->cfg, &s);
	if (rc)
		return rc;
	rc = s3_check(s);
	if (!rc)
		rc = marker_id(o->cfg, s, &id, anc, sizeof(anc), seal_text,
			       &key_id);
	if (rc == -ENOENT || rc == -EUCLEAN) {
		sayf(say, ctx,
		     "error: bucket '%s' prefix '%s' holds no tallyfs store "
		     "(no valid '" MARKER_KEY "')",
		     o->cfg->bucket, o->cfg->prefix);
		goto out;
	}
	if (!rc) {
		rc = seal_key_open(seal_text, key_id, o->keyed ? &o->key : NULL,
				   &sl.key, err, sizeof(err));
		if (rc) {
			sayf(say, ctx, "error: %s%s", err,
			     rc == -ENOKEY ? ": restore with -o key_file=FILE "
					     "holding it"
			     : rc == -EINVAL ? ": no key_file is needed"
					     : "");
			goto out;
		}
	}
	if (!rc) {
		const char *a = anc;

		sl.stores[sl.nstores++] = id;
		while (*a &&
		       sl.nstores < sizeof(sl.stores) / sizeof(sl.stores[0])) {
			char *end;
			unsigned long long v = strtoull(a, &end, 10);

			if (end == a)
				break;
			sl.stores[sl.nstores++] = v;
			a = end + strspn(end, " ");
		}
	}
	if (!rc)
		rc = bucket_list_snapshots(o->cfg, s, &snaps);
	if (rc) {
		sayf(say, ctx, "error: bucket '%s' at '%s': %s", o->cfg->bucket,
		     o->cfg->endpoint, s3_last_error(s));
		goto out;
	}
	key = pick(&snaps, o->snapshot);
	if (!key) {
		sayf(say, ctx, "error: %s",
		     o->snapshot ? "no such snapshot"
				 : "the bucket holds no "
				   "metadata snapshot");
		for (size_t i = 0; i < snaps.n; i++)
			sayf(say, ctx, "snapshot: %s", snaps.v[i]);
		rc = -ENOENT;
		goto out;
	}
	snprintf(rep->snapshot, sizeof(rep->snapshot), "%s", key);
	/* a new, empty store whose metadata the snapshot replaces; its
	 * identity is its own */
	rc = store_open(o->store, true, STORE_DEFAULT_BLOCK_SIZE, &st);
	if (rc)
		goto out;
	created = true;
	rc = meta_config_get(st->meta, "store_id", &nid);
	store_close(st);
	if (rc)
		goto out;
	st = NULL;
	snprintf(file, sizeof(file), "%s/meta.db-wal", o->store);
	unlink(file);
	snprintf(file, sizeof(file), "%s/meta.db-shm", o->store);
	unlink(file);
	/* the intent log of the store just made: not the snapshot's */
	snprintf(file, sizeof(file), "%s/meta.ilog", o->store);
	unlink(file);
	snprintf(file, sizeof(file), "%s/meta.db", o->store);
	if (seal_text[0])
		rc = download_sealed(s, &sl, key, file, &size, say, ctx);
	else
		rc = download(s, key, file, &size);
	if (rc && rc != -EBADMSG && rc != -EKEYREJECTED && rc != -EUCLEAN &&
	    rc != -ENOKEY) {
		sayf(say, ctx, "error: cannot fetch snapshot '%s': %s", key,
		     s3_last_error(s));
		goto out;
	}
	if (rc)
		goto out;
	rc = store_open(o->store, false, STORE_DEFAULT_BLOCK_SIZE, &st);
	if (rc) {
		sayf(say, ctx,
		     "error: snapshot '%s' is not the metadata of a tallyfs "
		     "store: %s",
		     key, strerror(-rc));
		goto out;
	}
	rc = meta_config_get(st->meta, "store_id", &sid);
	/* the marker's store, or one it was restored from */
	if (rc || ((uint64_t)sid != id && !ancestor(anc, (uint64_t)sid))) {
		sayf(say, ctx,
		     "error: snapshot '%s' is of another store than the "
		     "bucket's marker names",
		     key);
		rc = -EUCLEAN;
		goto out;
	}
	/* the stores this one comes from: the marker's and its own (the
	 * newest 16 kept: a marker stays small) */
	{
		char all[sizeof(anc) + 24];
		const char *p = all;
		int words = 0;

		snprintf(all, sizeof(all), "%s%s%" PRIu64, anc,
			 anc[0] ? " " : "", id);
		for (const char *q = all; *q; q++)
			words += *q == ' ';
		for (; words >= 16; words--)
			p = strchr(p, ' ') + 1;
		snprintf(newanc, sizeof(newanc), "%s", p);
	}
	rc = restored(st->meta, o->cfg, (uint64_t)nid, seq_after(&snaps),
		      newanc, seal_text);
	if (rc)
		goto out;
	/* every object it names must be in the bucket */
	rc = s3_key(o->cfg, OBJECTS_PREFIX, prefix, sizeof(prefix));
	if (!rc)
		rc = bucket_list_all(s, prefix, &objects);
	if (rc) {
		sayf(say, ctx, "error: cannot list the bucket: %s",
		     s3_last_error(s));
		goto out;
	}
	rep->bucket_keys = objects.n;
	{
		/* keyed names: the bucket's keys of the rows' names */
		struct s3_cfg kcfg = *o->cfg;
		struct check_ctx c = {
			st->meta, &objects, &kcfg, rep, say, ctx
		};

		kcfg.names_key = o->keyed ? sl.key.names : NULL;
		rc = meta_objects(st->meta, check_object, &c);
	}
	if (!rc)
		rc = meta_stats(st->meta, &ms);
	if (rc)
		goto out;
	rep->inodes = ms.inodes;
	rep->bytes = ms.bytes_stored;
	if (rep->missing && !o->incomplete_ok) {
		sayf(say, ctx,
		     "error: %" PRIu64 " object(s) the snapshot names are "
		     "not in the bucket: refused (restore_incomplete "
		     "restores anyway; their blocks then read as errors)",
		     rep->missing);
		rc = -ENOENT;
	}
	/* what the bucket holds beyond the snapshot stays, for the store
	 * it came from (docs/remote.md, "Restore") */
	if (!rc) {
		struct s3_cfg kcfg = *o->cfg;

		kcfg.names_key = o->keyed ? sl.key.names : NULL;
		rc = keep_for_original(st->meta, &kcfg, &objects, &snaps, key,
				       &rep->kept);
		if (!rc && rep->kept)
			sayf(say, ctx,
			     "kept: %" PRIu64 " key(s) of the bucket the "
			     "snapshot does not name stay for the store it "
			     "came from, until its newer snapshots are gone "
			     "and %d days have passed",
			     rep->kept, KEPT_DAYS);
	}
	/* the bucket is the restored store's now: the store it came from,
	 * if still mounted, finds another store named and stops uploading,
	 * deleting and snapshotting there (core/remote/remote.c, fenced) */
	if (!rc) {
		rc = take_over(o->cfg, s, (uint64_t)nid, newanc, seal_text);
		if (rc)
			sayf(say, ctx,
			     "error: cannot write '" MARKER_KEY
			     "' to the bucket: %s",
			     s3_last_error(s));
		else
			sayf(say, ctx,
			     "store: %" PRIu64 " (the bucket's "
			     "marker names it now)",
			     (uint64_t)nid);
	}
out:
	store_close(st);
	if (rc && created) {
		nftw(o->store, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		if (existed)
			mkdir(o->store, sb.st_mode & 07777);
	}
	explicit_bzero(&sl, sizeof(sl));
	bucket_keys_release(&snaps);
	bucket_keys_release(&objects);
	s3_free(s);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rep->seconds = (double)(t1.tv_sec - t0.tv_sec) +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	return rc;
}
