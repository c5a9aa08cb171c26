/* SPDX-License-Identifier: MIT */
/*
 * Offline check and repair of reference counts and object files.
 */
#include "core/fsck.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/meta.h"
#include "core/objstore.h"
#include "core/store.h"

struct fsck {
	struct store *s;
	bool repair;
	void (*say)(void *ctx, const char *line);
	void *ctx;
	struct fsck_result *res;
	char (*names)[OBJNAME_MAX]; /* sorted names of object rows */
	size_t nnames, cap;
	struct {
		int64_t id, truth;
	} * fix;
	size_t nfix, fixcap;
	struct meta_objlist dead; /* files to delete after repair */
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

static int add_name(struct fsck *f, const char *name)
{
	if (f->nnames == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 1024;
		void *v = realloc(f->names, cap * sizeof(*f->names));

		if (!v)
			return -ENOMEM;
		f->names = v;
		f->cap = cap;
	}
	snprintf(f->names[f->nnames++], OBJNAME_MAX, "%s", name);
	return 0;
}

static int add_fix(struct fsck *f, int64_t id, int64_t truth)
{
	if (f->nfix == f->fixcap) {
		size_t cap = f->fixcap ? f->fixcap * 2 : 64;
		void *v = realloc(f->fix, cap * sizeof(*f->fix));

		if (!v)
			return -ENOMEM;
		f->fix = v;
		f->fixcap = cap;
	}
	f->fix[f->nfix].id = id;
	f->fix[f->nfix].truth = truth;
	f->nfix++;
	return 0;
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
	rc = add_name(f, c->name);
	if (rc)
		return rc;
	if (objstore_stat(f->s->objs, c->shard, c->name, &size) < 0 &&
	    c->truth > 0) {
		f->res->dangling += (uint64_t)c->truth;
		sayf(f,
		     "dangling: object '%s' has %" PRId64 " reference(s) "
		     "but no file",
		     c->name, c->truth);
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
	return add_name(ctx, name);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int check_file(void *arg, const char *name, off_t size)
{
	struct fsck *f = arg;

	(void)size;
	if (bsearch(name, f->names, f->nnames, sizeof(*f->names), cmp_name))
		return 0;
	f->res->orphans++;
	sayf(f, "orphan: object file '%s' is not in the object table", name);
	return meta_objlist_add(&f->dead, 0, 0, name);
}

static int repair(struct fsck *f)
{
	size_t i;
	int rc;

	rc = meta_begin(f->s->meta);
	for (i = 0; i < f->nfix && !rc; i++)
		rc = meta_obj_set_count(f->s->meta, f->fix[i].id,
					f->fix[i].truth);
	if (!rc)
		rc = meta_commit(f->s->meta);
	if (!rc)
		rc = meta_sync(f->s->meta);
	if (rc) {
		meta_rollback(f->s->meta);
		return rc;
	}
	f->res->repaired = f->nfix;
	/* only after the commit, and only what nothing references */
	for (i = 0; i < f->dead.n; i++) {
		rc = objstore_unlink(f->s->objs, f->dead.v[i].shard,
				     f->dead.v[i].name);
		if (rc == 0)
			f->res->removed++;
		else if (rc != -ENOENT)
			sayf(f, "cannot remove object '%s': %s",
			     f->dead.v[i].name, strerror(-rc));
	}
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
	rc = meta_check_counts(s->meta, check_one, &f);
	/* pinned objects and node reports' active sets are no orphans */
	if (!rc)
		rc = meta_protected_names(s->meta, add_protected, &f);
	if (rc)
		goto out;
	if (f.nnames)
		qsort(f.names, f.nnames, sizeof(*f.names), cmp_name);
	rc = objstore_list(s->objs, 0, check_file, &f);
	if (rc)
		goto out;
	if (do_repair && (f.nfix || f.dead.n))
		rc = repair(&f);
out:
	free(f.names);
	free(f.fix);
	meta_objlist_release(&f.dead);
	return rc;
}

bool fsck_problems(const struct fsck_result *res)
{
	return res->drift_under || res->drift_over || res->dangling ||
	       res->orphans;
}
