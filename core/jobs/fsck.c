/* SPDX-License-Identifier: MIT */
/*
 * Offline check and repair of reference counts, ghosts and object files.
 *
 * An object file is known where its row says the object lives (keys as
 * in objstore_key()); a protected object (pin, node report, a move in
 * progress) is known in every shard. A shard that cannot be reached is
 * reported and not listed: nothing in it is called an orphan.
 */
#include "core/jobs/fsck.h"
#include "core/s3/bucket.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/array.h"
#include "core/util/hash.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/objects/reap.h"
#include "core/objects/store.h"

#define RESTORE_VARIANTS 16 /* variant names looked at for a good copy */

struct fsck {
	struct store *s;
	bool repair;
	void (*say)(void *ctx, const char *line);
	void *ctx;
	struct fsck_result *res;
	char (*names)[OBJSTORE_KEY_MAX]; /* sorted keys of object rows */
	size_t nnames, cap;
	char (*prot)[OBJSTORE_KEY_MAX]; /* sorted protected names */
	size_t nprot, protcap;
	unsigned shard; /* being listed */
	int64_t self;	/* a shared store: the node of this directory's
			   last mount (STORE/session), 0 if unknown */
	struct {
		int64_t obj, truth;
		uint32_t src;
		bool has_ghost;
	} * gfix;
	size_t ngfix, gfixcap;
	struct {
		int64_t id, truth;
	} * fix;
	size_t nfix, fixcap;
	struct meta_objlist dead; /* files to delete after repair */
	uint64_t *nameless;	  /* inodes with links and no entry */
	size_t nnameless;
	uint64_t *homeless; /* inodes with no row, named by block rows */
	size_t nhomeless;
	struct {
		struct meta_obj o;
		uint64_t size; /* by its row */
	} * bad;	       /* corrupt objects */
	size_t nbad, badcap;
};

static void sayf(struct fsck *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sayf(struct fsck *f, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (f->say)
		f->say(f->ctx, line);
}

/* Append @key to a list of keys. */
static int key_add(char (**v)[OBJSTORE_KEY_MAX], size_t *n, size_t *cap,
		   const char *key)
{
	if (array_reserve(v, cap, *n + 1, sizeof(**v)))
		return -ENOMEM;
	snprintf((*v)[(*n)++], OBJSTORE_KEY_MAX, "%s", key);
	return 0;
}

static int add_name(struct fsck *f, const char *name, uint32_t shard)
{
	char key[OBJSTORE_KEY_MAX];

	objstore_key(key, name, shard);
	return key_add(&f->names, &f->nnames, &f->cap, key);
}

static int add_fix(struct fsck *f, int64_t id, int64_t truth)
{
	if (array_reserve(&f->fix, &f->fixcap, f->nfix + 1, sizeof(*f->fix)))
		return -ENOMEM;
	f->fix[f->nfix].id = id;
	f->fix[f->nfix].truth = truth;
	f->nfix++;
	return 0;
}

/*
 * A shared store: whether object @name is queued for upload by a node
 * other than this directory's last mount. Its copy is then in that node's
 * cache directory (a flush writes the copy before its commit queues the
 * upload, and a copy not in the bucket is never evicted), not in this
 * one: not a loss this check can see (said).
 */
static bool queued_elsewhere(struct fsck *f, const char *name)
{
	int64_t node = 0;

	if (!meta_shared(f->s->meta) ||
	    meta_remote_queued_by(f->s->meta, name, &node) || !node ||
	    node == f->self)
		return false;
	sayf(f,
	     "elsewhere: object '%s' is queued for upload by node %" PRId64
	     ", whose cache directory holds its copy (not this one's)",
	     name, node);
	return true;
}

static int check_one(void *arg, const struct meta_check *c)
{
	struct fsck *f = arg;
	off_t size;
	int rc;

	f->res->references += (uint64_t)c->truth;
	if (c->id == 0) {
		f->res->dangling += (uint64_t)c->truth;
		sayf(f,
		     "dangling: %" PRId64 " reference(s) to an object "
		     "missing from the object table",
		     c->truth);
		return 0;
	}
	f->res->objects++;
	rc = add_name(f, c->name, c->shard);
	if (rc)
		return rc;
	if (objstore_stat(f->s->objs, c->shard, c->name, &size) < 0) {
		struct meta_remote_state rs;

		/* evicted, or (a shared store) never fetched to this
		 * node's cache: the bucket of the remote tier holds it */
		if (meta_remote_state(f->s->meta, c->name, &rs) == 0 &&
		    rs.remote && (!rs.cached || meta_shared(f->s->meta))) {
			f->res->remote_only++;
		} else if (c->truth > 0 && queued_elsewhere(f, c->name)) {
			f->res->queued_elsewhere++;
		} else if (c->truth > 0 &&
			   meta_remote_queued(f->s->meta, c->name) == 1) {
			f->res->dangling += (uint64_t)c->truth;
			f->res->queued_missing++;
			sayf(f,
			     "lost: object '%s' is queued for upload but has "
			     "no local copy (%" PRId64 " reference(s))",
			     c->name, c->truth);
		} else if (c->truth > 0) {
			f->res->dangling += (uint64_t)c->truth;
			sayf(f,
			     "dangling: object '%s' has %" PRId64
			     " reference(s) but no file",
			     c->name, c->truth);
		}
	} else if ((uint64_t)size != c->size) {
		f->res->corrupt++;
		sayf(f,
		     "corrupt: object '%s' in shard %u is %lld byte(s), its "
		     "row says %" PRIu64,
		     c->name, c->shard, (long long)size, c->size);
		if (array_reserve(&f->bad, &f->badcap, f->nbad + 1,
				  sizeof(*f->bad)))
			return -ENOMEM;
		f->bad[f->nbad].o.id = c->id;
		f->bad[f->nbad].o.shard = c->shard;
		snprintf(f->bad[f->nbad].o.name, OBJNAME_MAX, "%s", c->name);
		f->bad[f->nbad++].size = c->size;
	}
	if (c->stored == c->truth)
		return 0;
	if (c->stored < c->truth) {
		f->res->drift_under++;
		sayf(f,
		     "drift: object '%s' count %" PRId64 " < %" PRId64
		     " references (under-counted)",
		     c->name, c->stored, c->truth);
	} else {
		f->res->drift_over++;
		sayf(f,
		     "drift: object '%s' count %" PRId64 " > %" PRId64
		     " references (leak)",
		     c->name, c->stored, c->truth);
	}
	rc = add_fix(f, c->id, c->truth);
	if (!rc && c->truth == 0)
		rc = meta_objlist_add(&f->dead, c->id, c->shard, c->name);
	return rc;
}

static int add_protected(void *ctx, const char *name)
{
	struct fsck *f = ctx;

	return key_add(&f->prot, &f->nprot, &f->protcap, name);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int check_file(void *arg, const char *name, off_t size)
{
	struct fsck *f = arg;
	char key[OBJSTORE_KEY_MAX];

	(void)size;
	objstore_key(key, name, f->shard);
	if (f->nnames &&
	    bsearch(key, f->names, f->nnames, sizeof(*f->names), cmp_name))
		return 0;
	if (f->nprot &&
	    bsearch(name, f->prot, f->nprot, sizeof(*f->prot), cmp_name))
		return 0;
	/* a shared store's directory is this node's cache: another node
	 * deleted the row, the bucket was the object's home */
	if (meta_shared(f->s->meta)) {
		f->res->cache_stale++;
		sayf(f,
		     "stale copy: object file '%s' in shard %u, whose row "
		     "went",
		     name, f->shard);
	} else {
		f->res->orphans++;
		sayf(f,
		     "orphan: object file '%s' in shard %u is not in the "
		     "object table there",
		     name, f->shard);
	}
	return meta_objlist_add(&f->dead, 0, f->shard, name);
}

static int check_ghost(void *arg, int64_t obj, uint32_t src, int64_t stored,
		       int64_t truth, bool has_ghost)
{
	struct fsck *f = arg;

	f->res->ghost_drift++;
	if (has_ghost)
		sayf(f,
		     "ghost: object %" PRId64 " from shard %u counts %" PRId64
		     " reference(s), %" PRId64 " name that shard",
		     obj, src, stored, truth);
	else
		sayf(f,
		     "ghost: %" PRId64 " reference(s) to object %" PRId64
		     " name shard %u, where it is not, and no ghost leads on",
		     truth, obj, src);
	if (array_reserve(&f->gfix, &f->gfixcap, f->ngfix + 1,
			  sizeof(*f->gfix)))
		return -ENOMEM;
	f->gfix[f->ngfix].obj = obj;
	f->gfix[f->ngfix].src = src;
	f->gfix[f->ngfix].truth = truth;
	f->gfix[f->ngfix].has_ghost = has_ghost;
	f->ngfix++;
	return 0;
}

static int check_usage(void *arg, uint32_t shard, uint64_t objects,
		       uint64_t bytes)
{
	struct fsck *f = arg;

	f->res->usage_drift++;
	sayf(f,
	     "usage: shard %u holds %" PRIu64 " object(s), %" PRIu64
	     " byte(s); its kept counts differ",
	     shard, objects, bytes);
	return 0;
}

/*
 * Rewrite corrupt object @b from a good copy of its bytes: the same name
 * in another shard, or a variant name of its hash (the same bytes stored
 * again under another name when a dedup met the corrupt file). 1 done, 0
 * no good copy.
 */
static int restore_one(struct fsck *f, const struct meta_obj *b, uint64_t size)
{
	struct objstore *os = f->s->objs;
	char hex[HASH_HEX_LEN + 1], other[OBJNAME_MAX];
	unsigned sh, v;

	snprintf(hex, sizeof(hex), "%.*s", HASH_HEX_LEN, b->name);
	for (v = 0; v < RESTORE_VARIANTS; v++) {
		hash_variant_name(hex, v, other);
		for (sh = 0; sh < objstore_nshards(os); sh++) {
			void *buf;
			size_t len;
			int rc;

			if ((sh == b->shard && !strcmp(other, b->name)) ||
			    !objstore_shard_reachable(os, sh) ||
			    objstore_load(os, sh, other, &buf, &len))
				continue;
			rc = len == size ? objstore_restore(os, b->shard,
							    b->name, buf, len)
					 : -EBADMSG;
			free(buf);
			if (!rc) {
				sayf(f,
				     "restored: object '%s' from '%s' in "
				     "shard %u",
				     b->name, other, sh);
				return 1;
			}
		}
	}
	return 0;
}

static int lost_file(void *ctx, const char *path, uint64_t refs)
{
	struct fsck *f = ctx;

	sayf(f,
	     "lost: file '%s' loses %" PRIu64 " block(s): they read as "
	     "zeros",
	     path, refs);
	return 0;
}

/* The corrupt objects: restored, or dropped with their references (in
 * the repair's transaction). */
static int repair_corrupt(struct fsck *f)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < f->nbad && !rc; i++) {
		const struct meta_obj *b = &f->bad[i].o;

		if (restore_one(f, b, f->bad[i].size)) {
			f->res->restored++;
			continue;
		}
		sayf(f, "dropped: object '%s': no good copy of it anywhere",
		     b->name);
		rc = meta_object_paths(f->s->meta, b->id, UINT32_MAX, lost_file,
				       f);
		if (!rc)
			rc = meta_obj_drop(f->s->meta, b->id);
		if (!rc)
			rc = meta_objlist_add(&f->dead, b->id, b->shard,
					      b->name);
		if (!rc)
			f->res->dropped++;
	}
	return rc;
}

static int repair(struct fsck *f)
{
	uint64_t stale = 0;
	size_t i;
	int rc;

	rc = meta_begin(f->s->meta);
	if (!rc)
		rc = repair_corrupt(f);
	for (i = 0; i < f->nfix && !rc; i++)
		rc = meta_obj_set_count(f->s->meta, f->fix[i].id,
					f->fix[i].truth);
	if (!rc && f->res->usage_drift)
		rc = meta_shard_usage_rebuild(f->s->meta);
	for (i = 0; i < f->ngfix && !rc; i++)
		rc = meta_ghost_fix(f->s->meta, f->gfix[i].obj, f->gfix[i].src,
				    f->gfix[i].truth, f->gfix[i].has_ghost);
	for (i = 0; i < f->nnameless && !rc; i++)
		rc = meta_inode_unname(f->s->meta, f->nameless[i]);
	if (!rc && f->res->claims_stale)
		rc = meta_remote_claims_stale(f->s->meta, &stale);
	/* after the counts were set to the references, these among them:
	 * the objects left at zero are settled by the commit */
	for (i = 0; i < f->nhomeless && !rc; i++) {
		rc = meta_blocks_drop(f->s->meta, NULL, f->homeless[i], 0);
		if (!rc)
			rc = meta_inode_delete(f->s->meta, NULL,
					       f->homeless[i]);
	}
	if (!rc)
		rc = meta_commit(f->s->meta);
	if (!rc)
		rc = meta_sync(f->s->meta);
	if (rc) {
		meta_rollback(f->s->meta);
		return rc;
	}
	f->res->repaired = f->nfix + f->ngfix + f->res->usage_drift +
			   f->nnameless + f->nhomeless + stale;
	/* the objects the drop of homeless rows left at zero */
	f->res->removed += reap_dead(f->s->meta, f->s->objs);
	/* only after the commit (made durable), and only what nothing
	 * names (core/objects/reap.c decides) */
	for (i = 0; i < f->dead.n; i++) {
		rc = reap_copy(f->s->meta, f->s->objs, f->dead.v[i].name,
			       f->dead.v[i].id, f->dead.v[i].shard, 0);
		if (rc == 1)
			f->res->removed++;
		else if (rc < 0)
			sayf(f, "kept object '%s': %s", f->dead.v[i].name,
			     strerror(-rc));
	}
	return 0;
}

/*
 * Say each nameless inode, and keep for the repair those that name no
 * entry themselves: a directory with entries is left (its entries would
 * lose their directory), and said.
 */
static int nameless_check(struct fsck *f)
{
	size_t i, keep = 0;

	for (i = 0; i < f->nnameless; i++) {
		uint64_t ino = f->nameless[i];
		int empty = meta_dir_empty(f->s->meta, NULL, ino);

		if (empty < 0)
			return empty;
		sayf(f,
		     "nameless: inode %" PRIu64 " has links but no entry "
		     "names it (a leak%s)",
		     ino,
		     !empty	 ? "; it has entries: not repaired"
		     : f->repair ? ": freed at the next mount"
				 : "");
		if (empty)
			f->nameless[keep++] = ino;
	}
	f->nnameless = keep;
	return 0;
}

/* The node of the last mount of the store directory (STORE/session),
 * 0 if unknown. */
static int64_t last_node(struct store *s)
{
	char path[4096], buf[32] = "";
	FILE *fp;

	snprintf(path, sizeof(path), "%s/session", s->path);
	fp = fopen(path, "r");
	if (!fp)
		return 0;
	if (!fgets(buf, sizeof(buf), fp))
		buf[0] = '\0';
	fclose(fp);
	return strtoll(buf, NULL, 10);
}

/* A deletion claim under way: no node is mounted while the check runs
 * (tallyfsck refuses a live session), so the node that made it is gone,
 * and its claim holds the upload of its name until a mount takes it
 * over (core/remote/remote.c) or --repair does. */
static int check_claim(void *arg, const char *name, int64_t since, int64_t node)
{
	struct fsck *f = arg;

	f->res->claims_stale++;
	sayf(f,
	     "stale claim: the deletion of bucket key '%s' was left under "
	     "way by node %" PRId64 " (at %" PRId64 "): an upload of the "
	     "object may wait for it%s",
	     name, node, since,
	     f->repair ? ": taken over" : " until a mount takes it over");
	return 0;
}

int fsck_run(struct store *s, bool do_repair,
	     void (*say)(void *ctx, const char *line), void *ctx,
	     struct fsck_result *res)
{
	struct fsck f = {
		.s = s,
		.repair = do_repair,
		.say = say,
		.ctx = ctx,
		.res = res,
	};
	int rc;

	memset(res, 0, sizeof(*res));
	meta_objlist_init(&f.dead);
	if (meta_shared(s->meta))
		f.self = last_node(s);
	rc = meta_check_counts(s->meta, check_one, &f);
	if (!rc)
		rc = meta_remote_claims(s->meta, check_claim, &f);
	/* pinned objects and node reports' active sets are no orphans */
	if (!rc)
		rc = meta_protected_names(s->meta, add_protected, &f);
	if (rc)
		goto out;
	if (!rc)
		rc = meta_check_ghosts(s->meta, check_ghost, &f);
	if (!rc)
		rc = meta_ghost_count(s->meta, &res->ghosts);
	if (!rc)
		rc = meta_shard_usage_check(s->meta, check_usage, &f);
	if (!rc)
		rc = meta_inode_nameless(s->meta, &f.nameless, &f.nnameless);
	if (rc)
		goto out;
	res->nameless = f.nnameless;
	rc = nameless_check(&f);
	if (!rc)
		rc = meta_inode_homeless(s->meta, &f.homeless, &f.nhomeless);
	if (rc)
		goto out;
	res->homeless = f.nhomeless;
	rc = meta_rows_misfiled(s->meta, &res->misfiled);
	if (rc)
		goto out;
	if (res->misfiled)
		sayf(&f,
		     "misfiled: %" PRIu64 " row(s) of inodes, entries, "
		     "extents or xattrs are in another version than their "
		     "namespace's (a defect of tallyfs's to report; not "
		     "repaired)",
		     res->misfiled);
	for (size_t i = 0; i < f.nhomeless; i++)
		sayf(&f,
		     "homeless: inode %" PRIu64 " is gone but block or xattr "
		     "rows name it (a leak%s)",
		     f.homeless[i], do_repair ? ": removed" : "");
	if (f.nnames)
		qsort(f.names, f.nnames, sizeof(*f.names), cmp_name);
	if (f.nprot)
		qsort(f.prot, f.nprot, sizeof(*f.prot), cmp_name);
	for (f.shard = 0; f.shard < objstore_nshards(s->objs); f.shard++) {
		int err;

		if (!objstore_shard_attached(s->objs, f.shard))
			continue;
		err = objstore_shard_check(s->objs, f.shard);
		if (err) {
			res->unreachable++;
			sayf(&f, "shard %u is unreachable (%s): not checked",
			     f.shard, strerror(-err));
			continue;
		}
		rc = objstore_list(s->objs, f.shard, check_file, &f);
		if (rc)
			goto out;
	}
	if (do_repair &&
	    (f.nfix || f.ngfix || f.dead.n || f.nbad || res->usage_drift ||
	     f.nnameless || f.nhomeless || res->claims_stale))
		rc = repair(&f);
out:
	free(f.nameless);
	free(f.homeless);
	free(f.names);
	free(f.prot);
	free(f.gfix);
	free(f.fix);
	free(f.bad);
	meta_objlist_release(&f.dead);
	return rc;
}

bool fsck_problems(const struct fsck_result *res)
{
	return res->drift_under || res->drift_over || res->dangling ||
	       res->orphans || res->ghost_drift || res->unreachable ||
	       res->usage_drift || res->corrupt || res->bucket_missing ||
	       res->bucket_orphans || res->nameless || res->homeless ||
	       res->misfiled || res->claims_stale;
}

struct bucket_ctx {
	struct store *s;
	const struct bucket_keys *keys;
	const struct s3_cfg *cfg;
	struct fsck_result *res;
	void (*say)(void *ctx, const char *line);
	void *sctx;
};

static int bucket_object(void *arg, const char *name, uint64_t size)
{
	struct bucket_ctx *c = arg;
	char key[1024], line[1200];

	(void)size;
	if (bucket_object_key(c->cfg, name, key, sizeof(key)) ||
	    !bucket_keys_has(c->keys, key)) {
		c->res->bucket_missing++;
		char obj[OBJNAME_MAX];
		int64_t gen;

		if (meta_key_parse(name, obj, &gen))
			snprintf(obj, sizeof(obj), "?");
		snprintf(line, sizeof(line),
			 "lost: object '%s' (bucket key '%s') is recorded in "
			 "the bucket, which does not have it",
			 obj, name);
		c->say(c->sctx, line);
	}
	return 0;
}

/* An upload queued for an object with no local copy whose key the
 * bucket has (fsck_settle()). */
struct settle {
	char name[OBJNAME_MAX];
	int64_t gen;
};

struct settle_ctx {
	struct store *s;
	const struct bucket_keys *keys;
	const struct s3_cfg *cfg;
	struct settle *v;
	size_t n, cap;
};

static int settle_find(void *arg, const char *name, int64_t gen, int64_t seq,
		       uint32_t shard, uint64_t size)
{
	struct settle_ctx *c = arg;
	char kn[OBJKEY_MAX], key[1024];
	off_t have;

	(void)seq;
	(void)size;
	if (objstore_stat(c->s->objs, shard, name, &have) == 0)
		return 0; /* its copy is here: the upload will go */
	meta_key_name(name, gen, kn);
	if (bucket_object_key(c->cfg, kn, key, sizeof(key)) ||
	    !bucket_keys_has(c->keys, key))
		return 0; /* lost: fsck_run() says so */
	if (array_reserve(&c->v, &c->cap, c->n + 1, sizeof(*c->v)))
		return -ENOMEM;
	snprintf(c->v[c->n].name, OBJNAME_MAX, "%s", name);
	c->v[c->n++].gen = gen;
	return 0;
}

/* The object keys of the bucket, whole, into @keys (a client in *@s3,
 * the caller's to free): 0, or -errno (said). */
static int list_objects(const struct s3_cfg *cfg, struct s3 **s3,
			struct bucket_keys *keys,
			void (*say)(void *ctx, const char *line), void *ctx)
{
	char prefix[1024], line[1200];
	int rc = s3_new(cfg, s3);

	if (!rc)
		rc = s3_key(cfg, "objects/", prefix, sizeof(prefix));
	if (!rc)
		rc = bucket_list_all(*s3, prefix, keys);
	if (rc) {
		snprintf(line, sizeof(line), "bucket: cannot list it: %s",
			 *s3 ? s3_last_error(*s3) : strerror(-rc));
		say(ctx, line);
	}
	return rc;
}

int fsck_settle(struct store *s, const struct s3_cfg *cfg,
		void (*say)(void *ctx, const char *line), void *ctx,
		struct fsck_result *res)
{
	struct bucket_keys keys = { 0 };
	struct settle_ctx c = { s, &keys, cfg, NULL, 0, 0 };
	struct s3 *s3 = NULL;
	char line[1200];
	size_t i;
	int rc;

	if (meta_shared(s->meta))
		return 0; /* the rows are every node's, the copies too */
	rc = list_objects(cfg, &s3, &keys, say, ctx);
	if (rc)
		goto out;
	rc = meta_remote_next(s->meta, UINT_MAX, settle_find, &c);
	if (rc || !c.n)
		goto out;
	rc = meta_begin(s->meta);
	for (i = 0; i < c.n && !rc; i++) {
		rc = meta_remote_uploaded(s->meta, c.v[i].name, c.v[i].gen);
		if (!rc)
			rc = meta_remote_set_cached(s->meta, c.v[i].name,
						    false);
	}
	rc = meta_end(s->meta, rc);
	for (i = 0; i < c.n && !rc; i++) {
		snprintf(line, sizeof(line),
			 "settled: object '%s' was queued for upload with no "
			 "local copy; the bucket has it: recorded as uploaded "
			 "and evicted",
			 c.v[i].name);
		say(ctx, line);
	}
	if (!rc)
		res->settled = c.n;
out:
	free(c.v);
	bucket_keys_release(&keys);
	s3_free(s3);
	return rc;
}

int fsck_bucket(struct store *s, const struct s3_cfg *cfg,
		void (*say)(void *ctx, const char *line), void *ctx,
		struct fsck_result *res)
{
	struct bucket_keys keys = { 0 };
	struct bucket_ctx c = { s, &keys, cfg, res, say, ctx };
	struct s3 *s3 = NULL;
	char line[1200];
	size_t i;
	int rc = list_objects(cfg, &s3, &keys, say, ctx);

	if (rc)
		goto out;
	res->bucket_keys = keys.n;
	rc = meta_remote_in_bucket(s->meta, bucket_object, &c);
	for (i = 0; i < keys.n && !rc; i++) {
		char kn[OBJKEY_MAX];
		int v;

		v = bucket_key_name(cfg, keys.v[i], kn) == 0
			    ? meta_remote_named(s->meta, kn)
			    : 0;
		if (v < 0) {
			rc = v;
			break;
		}
		if (v)
			continue;
		res->bucket_orphans++;
		snprintf(line, sizeof(line),
			 "orphan: bucket key '%s' is named by nothing (GC "
			 "collects it)",
			 keys.v[i]);
		say(ctx, line);
	}
out:
	bucket_keys_release(&keys);
	s3_free(s3);
	return rc;
}
