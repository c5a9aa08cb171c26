/* SPDX-License-Identifier: MIT */
/*
 * Control commands and the status document.
 */
#include "core/jobs/ctl.h"
#include "core/jobs/ctl_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/jobs/gc.h"
#include "core/util/hash.h"
#include "core/objects/objstore.h"
#include "core/meta/meta.h"
#include "core/util/pool.h"
#include "core/jobs/shard.h"
#include "core/util/progress.h"
#include "core/remote/remote.h"
#include "core/fs/tally.h"

static const struct {
	const char *name;
	enum ctl_verb verb;
	unsigned min_args, max_args;
} verbs[] = {
	/* clang-format off */
	{ "drain", CTL_DRAIN, 0, 2 },
	{ "branch", CTL_BRANCH, 2, 2 },
	{ "gc", CTL_GC, 0, 2 },
	{ "repair", CTL_REPAIR, 0, 0 },
	{ "pin", CTL_PIN, 1, 1 },
	{ "unpin", CTL_UNPIN, 1, 1 },
	{ "du", CTL_DU, 0, 1 },
	{ "explain", CTL_EXPLAIN, 1, 1 },
	{ "verify", CTL_VERIFY, 0, 2 },
	{ "shard", CTL_SHARD, 1, 2 },
	{ "rebalance", CTL_REBALANCE, 0, 0 },
	{ "sweep", CTL_SWEEP, 0, 1 },
	{ "rekey", CTL_REKEY, 1, 1 },
	{ "snapshot", CTL_SNAPSHOT, 2, 2 },
	{ "snapshots", CTL_SNAPSHOTS, 0, 1 },
	{ "rmsnapshot", CTL_RMSNAPSHOT, 2, 2 },
	{ "rollback", CTL_ROLLBACK, 2, 3 },
	{ "diff", CTL_DIFF, 2, 2 },
	{ "autosnapshot", CTL_AUTOSNAPSHOT, 1, 3 },
	/* clang-format on */
};

/* A duration: whole seconds, or with a unit s, m, h or d; from 1 s up to
 * 100 years. */
static int parse_duration(const char *a, int64_t *out)
{
	static const struct {
		char unit;
		int64_t secs;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
	int64_t mult = 1;
	long long v;
	char *end;

	if (*a < '0' || *a > '9')
		return -EINVAL;
	errno = 0;
	v = strtoll(a, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) { /* a unit */
		mult = 0;
		for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++)
			if (end[0] == units[i].unit && !end[1])
				mult = units[i].secs;
		if (!mult)
			return -EINVAL;
	}
	if (v < 1 || v > 100LL * 365 * 86400 / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

/* autosnapshot NS [off | every=DURATION keep=N]: the last two once each,
 * in any order. */
static int parse_autosnapshot(struct ctl_cmd *cmd)
{
	cmd->every = -1;
	if (cmd->nargs == 1)
		return 0; /* show */
	if (cmd->nargs == 2) {
		cmd->every = 0;
		return strcmp(cmd->args[1], "off") ? -EINVAL : 0;
	}
	for (unsigned i = 1; i < 3; i++) {
		const char *a = cmd->args[i];

		if (!strncmp(a, "every=", 6) && cmd->every < 0) {
			if (parse_duration(a + 6, &cmd->every))
				return -EINVAL;
		} else if (!strncmp(a, "keep=", 5) && !cmd->keep) {
			char *end;
			long long v;

			errno = 0;
			v = strtoll(a + 5, &end, 10);
			if (errno || end == a + 5 || *end || v < 1 ||
			    v > 100000)
				return -EINVAL;
			cmd->keep = v;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

/* gc options: "dry-run" and "grace=SECONDS", each once, in any order. */
static int parse_gc(struct ctl_cmd *cmd)
{
	bool seen_grace = false;
	unsigned i;

	cmd->grace = -1;
	for (i = 0; i < cmd->nargs; i++) {
		const char *a = cmd->args[i];

		if (!strcmp(a, "dry-run") && !cmd->dry_run) {
			cmd->dry_run = true;
		} else if (!strncmp(a, "grace=", 6) && !seen_grace) {
			char *end;
			long long v;

			errno = 0;
			v = strtoll(a + 6, &end, 10);
			if (errno || end == a + 6 || *end || v < 0 ||
			    v > 100LL * 365 * 86400)
				return -EINVAL;
			cmd->grace = v;
			seen_grace = true;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

/* "PREFIX" followed by a decimal count (0 to 2^31-1) into *out. */
static int parse_count(const char *a, const char *prefix, long *out)
{
	size_t n = strlen(prefix);
	char *end;
	long v;

	if (strncmp(a, prefix, n) || !a[n] || a[n] < '0' || a[n] > '9')
		return -EINVAL;
	errno = 0;
	v = strtol(a + n, &end, 10);
	if (errno || *end || v < 0 || v > 2147483647L)
		return -EINVAL;
	*out = v;
	return 0;
}

/* shard add DIR | shard drain ID | shard activate ID | shard list */
static int parse_shard(struct ctl_cmd *cmd)
{
	const char *sub = cmd->args[0];
	long id;

	if (!strcmp(sub, "list"))
		return cmd->nargs == 1 ? 0 : -EINVAL;
	if (cmd->nargs != 2)
		return -EINVAL;
	if (!strcmp(sub, "add"))
		return cmd->args[1][0] == '/' ? 0 : -EINVAL;
	if (strcmp(sub, "drain") && strcmp(sub, "activate"))
		return -EINVAL;
	if (parse_count(cmd->args[1], "", &id) || id >= OBJSTORE_MAX_SHARDS)
		return -EINVAL;
	cmd->shard = (uint32_t)id;
	return 0;
}

int ctl_parse(const char *line, size_t len, struct ctl_cmd *cmd)
{
	char *p, *words[CTL_MAX_ARGS + 1];
	unsigned n = 0;
	size_t i;

	memset(cmd, 0, sizeof(*cmd));
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len == 0 || len > CTL_LINE_MAX)
		return -EINVAL;
	for (i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
			return -EINVAL; /* NUL, a second line, escapes */
	memcpy(cmd->buf, line, len);
	cmd->buf[len] = '\0';
	p = cmd->buf;
	for (;;) {
		p += strspn(p, " \t");
		if (!*p)
			break;
		if (n == CTL_MAX_ARGS + 1)
			return -EINVAL;
		words[n++] = p;
		p += strcspn(p, " \t");
		if (*p)
			*p++ = '\0';
	}
	if (n == 0)
		return -EINVAL;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(words[0], verbs[i].name))
			continue;
		if (n - 1 < verbs[i].min_args || n - 1 > verbs[i].max_args)
			return -EINVAL;
		cmd->verb = verbs[i].verb;
		cmd->nargs = n - 1;
		memcpy(cmd->args, words + 1, (n - 1) * sizeof(char *));
		break;
	}
	if (i == sizeof(verbs) / sizeof(verbs[0]))
		return -EINVAL;
	if (cmd->verb == CTL_GC)
		return parse_gc(cmd);
	if (cmd->verb == CTL_SHARD)
		return parse_shard(cmd);
	if (cmd->verb == CTL_AUTOSNAPSHOT)
		return parse_autosnapshot(cmd);
	if (cmd->verb == CTL_ROLLBACK) { /* rollback NS NAME [drop-later] */
		cmd->later = cmd->nargs == 3;
		return cmd->nargs < 3 || !strcmp(cmd->args[2], "drop-later")
			       ? 0
			       : -EINVAL;
	}
	if (cmd->verb == CTL_REKEY) /* rekey /ABS/KEYFILE */
		return cmd->args[0][0] == '/' ? 0 : -EINVAL;
	if (cmd->verb == CTL_SWEEP) {
		cmd->batches = -1;
		if (cmd->nargs == 1)
			return parse_count(cmd->args[0],
					   "batches=", &cmd->batches);
		return 0;
	}
	if (cmd->verb == CTL_VERIFY) {
		char *end;
		const char *a;

		/* verify [remote] [sample=N%] */
		cmd->sample = 100;
		cmd->remote = cmd->nargs && !strcmp(cmd->args[0], "remote");
		if (cmd->nargs == (cmd->remote ? 1u : 0u))
			return 0;
		if (cmd->nargs == 2 && !cmd->remote)
			return -EINVAL;
		a = cmd->args[cmd->remote ? 1 : 0];
		if (strncmp(a, "sample=", 7))
			return -EINVAL;
		errno = 0;
		cmd->sample = strtod(a + 7, &end);
		if (errno || end == a + 7 || strcmp(end, "%") ||
		    !isfinite(cmd->sample) || cmd->sample <= 0 ||
		    cmd->sample > 100)
			return -EINVAL;
		return 0;
	}
	if (cmd->verb == CTL_DRAIN) {
		const char *a;
		char *end;

		/* drain [TIMEOUT] | drain remote [TIMEOUT] */
		cmd->remote = cmd->nargs && !strcmp(cmd->args[0], "remote");
		if (cmd->nargs == 2 && !cmd->remote)
			return -EINVAL;
		if (cmd->nargs == (cmd->remote ? 1u : 0u))
			return 0;
		a = cmd->args[cmd->remote ? 1 : 0];
		errno = 0;
		cmd->timeout = strtod(a, &end);
		if (errno || *end || end == a || !isfinite(cmd->timeout) ||
		    cmd->timeout <= 0 || cmd->timeout > 31536000)
			return -EINVAL;
	}
	return 0;
}

double ctl_ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

int ctl_aprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(out, fmt, ap);
	va_end(ap);
	if (rc < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

int ctl_append(char **acc, const char *fmt, ...)
{
	char *line, *next;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -ENOMEM;
	rc = ctl_aprintf(&next, "%s%s", *acc ? *acc : "", line);
	free(line);
	if (rc)
		return rc;
	free(*acc);
	*acc = next;
	return 0;
}

struct du_acc {
	struct meta *m;
	const char *only; /* one namespace, or NULL for all */
	char *text;
	unsigned found;
	int rc;
};

const char *ctl_shard_state(const struct shard_info *s)
{
	if (!s->reachable)
		return "unreachable";
	return s->draining ? "draining" : "active";
}

/* One namespace's block of du report lines, or with @only NS@NAME, its
 * snapshot NAME's. */
static int du_one(void *ctx, int64_t cookie, const char *name,
		  const struct meta_inode *md)
{
	struct du_acc *a = ctx;
	const char *at = a->only ? strchr(a->only, '@') : NULL;
	size_t len = at ? (size_t)(at - a->only) : 0;
	struct meta_du du;

	(void)cookie;
	if (at ? strlen(name) != len || memcmp(a->only, name, len)
	       : a->only && strcmp(a->only, name))
		return 0;
	if (at) {
		struct meta_ver v;

		a->rc = meta_snapshot_find(a->m, md->nspace, at + 1, &v);
		if (!a->rc)
			a->rc = meta_du_snapshot(a->m, md->nspace, v.id, &du);
		name = a->only;
	} else {
		a->rc = meta_du(a->m, md->nspace, &du);
	}
	if (!a->rc)
		a->rc = ctl_append(
			&a->text,
			"namespace: %s\nfiles: %" PRIu64
			"\nbytes_logical: %" PRIu64 "\nobjects: %" PRIu64
			"\nbytes_referenced: %" PRIu64
			"\nbytes_shared: %" PRIu64 "\nbytes_exclusive: %" PRIu64
			"\nbytes_reclaimable: %" PRIu64 "\n",
			name, du.files, du.bytes_logical, du.objects,
			du.bytes_referenced,
			du.bytes_referenced > du.bytes_exclusive
				? du.bytes_referenced - du.bytes_exclusive
				: 0,
			du.bytes_exclusive, du.bytes_reclaimable);
	if (a->rc)
		return a->rc;
	a->found++;
	return 0;
}

/* Every namespace to du_one() (metadata lock held). */
static int du_all(struct meta *m, void *ctx)
{
	struct du_acc *a = ctx;

	a->m = m;
	return meta_readdir(m, &META_VER_ROOT, TALLY_ROOT_INO, 0, du_one, a);
}

/*
 * du: exact from the reference counts. Exclusive bytes are those of
 * objects only this namespace references; reclaimable ones are the
 * exclusive ones no pin keeps: what deleting the namespace would free.
 */
static int ctl_du(struct tally *t, const char *only, char **report)
{
	struct du_acc a = { .only = only };
	char *head;
	int rc;

	/* committed counts: let the closes' flushes finish first */
	rc = tally_drain(t, NULL, 0);
	if (rc)
		return rc;
	rc = tally_meta_read(t, du_all, &a);
	if (rc > 0)
		rc = a.rc;
	if (!rc && only && !a.found)
		rc = -ENOENT;
	if (!rc)
		rc = ctl_aprintf(&head, "command: du\nnamespaces: %u\n%s",
				 a.found, a.text ? a.text : "");
	free(a.text);
	if (!rc)
		*report = head;
	return rc;
}

static int explain_holder(void *ctx, const char *nspace, uint64_t refs,
			  uint64_t inodes)
{
	return ctl_append(ctx,
			  "holder: %s (%" PRIu64 " reference%s in %" PRIu64
			  " inode%s)\n",
			  nspace, refs, refs == 1 ? "" : "s", inodes,
			  inodes == 1 ? "" : "s");
}

static int explain_pinner(void *ctx, const char *what)
{
	return ctl_append(ctx, "kept_by: %s\n", what);
}

static int explain_ghost(void *ctx, uint32_t src, uint32_t dst,
			 int64_t refcount)
{
	return ctl_append(ctx,
			  "ghost: shard %u -> %u (%" PRId64
			  " reference%s naming shard %u)\n",
			  src, dst, refcount, refcount == 1 ? "" : "s", src);
}

static int explain_path(void *ctx, const char *path, uint64_t refs)
{
	return ctl_append(ctx, "path: %s (%" PRIu64 " reference%s)\n", path,
			  refs, refs == 1 ? "" : "s");
}

#define EXPLAIN_PATHS 8 /* paths listed for one object */

/* Whether a file of object @name is in some shard (no lock: disk I/O). */
static bool explain_on_disk(struct tally *t, const char *name)
{
	struct objstore *os = tally_objstore(t);
	unsigned shard;
	off_t fsize;

	for (shard = 0; shard < objstore_nshards(os); shard++)
		if (objstore_stat(os, shard, name, &fsize) == 0)
			return true;
	return false;
}

/* Why object @name is alive, or when GC will collect it (meta locked);
 * with @paths, the paths of (up to EXPLAIN_PATHS) files that hold it.
 * @on_disk: whether a file of it was found (read before the lock). */
static int explain_object(struct meta *m, struct remote *r, const char *name,
			  bool on_disk, bool paths, char **acc, bool *known)
{
	struct meta_remote_state rs;
	char key[1024];
	uint64_t size = 0;
	int64_t id = 0, refcount = 0, since;
	uint32_t shard = 0;
	int rc;

	rc = ctl_append(acc, "object: %s\n", name);
	if (rc)
		return rc;
	rc = meta_object_info(m, name, &id, &shard, &size, &refcount);
	if (rc && rc != -ENOENT)
		return rc;
	if (rc == 0) {
		*known = true;
		rc = ctl_append(acc,
				"shard: %u\nsize: %" PRIu64
				"\nrefcount: %" PRId64 "\n",
				shard, size, refcount);
		if (!rc)
			rc = meta_object_holders(m, id, explain_holder, acc);
		if (!rc && paths)
			rc = meta_object_paths(m, id, EXPLAIN_PATHS,
					       explain_path, acc);
		if (!rc)
			rc = meta_object_ghosts(m, id, explain_ghost, acc);
		/* where the bucket holds it (keyed names say nothing) */
		if (!rc && r && meta_remote_state(m, name, &rs) == 0 &&
		    rs.remote &&
		    remote_object_key(r, name, rs.gen, key, sizeof(key)) == 0)
			rc = ctl_append(acc, "bucket_key: %s\n", key);
	} else {
		rc = ctl_append(acc, "refcount: 0\nfile: %s\n",
				on_disk ? "present" : "absent");
		if (on_disk)
			*known = true;
	}
	if (!rc)
		rc = meta_object_pinners(m, name, explain_pinner, acc);
	if (rc)
		return rc;
	if (meta_mark_get(m, name, &since) == 0)
		rc = ctl_append(acc,
				"gc: unreferenced since %" PRId64
				", collectable from %" PRId64
				" (with the default grace of %d s)\n",
				since, since + GC_DEFAULT_GRACE,
				GC_DEFAULT_GRACE);
	else if (id == 0 || refcount <= 0)
		rc = ctl_append(acc, "gc: not marked yet (the next cycle marks "
				     "it if nothing keeps it)\n");
	return rc;
}

static int cmp_bref_name(const void *a, const void *b)
{
	return strcmp(((const struct meta_bref *)a)->name,
		      ((const struct meta_bref *)b)->name);
}

/* What explain reports on: objects by name, each with whether a file of
 * it was found (read before the lock). */
struct explain_set {
	const struct meta_bref *map;
	const bool *disk;
	size_t n;
	bool paths;	  /* one object named by the user: its paths too */
	struct remote *r; /* the remote tier, or NULL */
	char **acc;
	bool known;
	uint64_t ino;	    /* explain_map()'s file */
	struct meta_ver at; /* its snapshot's version, or id 0 */
	struct meta_bref *loaded;
	size_t nloaded;
};

/* explain_object() of each object of @ctx (metadata lock held). */
static int explain_all(struct meta *m, void *ctx)
{
	struct explain_set *e = ctx;
	size_t i;
	int rc = 0;

	for (i = 0; i < e->n && !rc; i++)
		rc = explain_object(m, e->r, e->map[i].name, e->disk[i],
				    e->paths, e->acc, &e->known);
	return rc;
}

/* The committed block map of e->ino (metadata lock held). */
static int explain_map(struct meta *m, void *ctx)
{
	struct explain_set *e = ctx;

	struct meta_inode md;
	struct meta_ver v = e->at;
	/* a snapshot's file: through its version; else the version its
	 * namespace reads now (a snapshot's removal since the path was
	 * resolved merged its leaf away) */
	int rc = v.id ? 0 : meta_inode_get(m, NULL, e->ino, &md);

	if (!rc && !v.id)
		rc = meta_nspace_ver(m, md.nspace, &v);
	return rc ? rc
		  : meta_blocks_load(m, &v, e->ino, &e->loaded, &e->nloaded);
}

/* explain PATH|HASH: a file's objects, or one object. */
static int ctl_explain(struct tally *t, const char *arg, char **report)
{
	struct explain_set e = { 0 };
	struct meta_bref *map = NULL;
	char *acc = NULL;
	bool *disk = NULL;
	size_t n = 0, i;
	int rc;

	e.acc = &acc;
	e.r = tally_remote(t);
	if (strcspn(arg, "@") < OBJNAME_MAX) {
		struct meta_bref one = { 0 };
		bool on_disk;

		snprintf(one.name, sizeof(one.name), "%.*s",
			 (int)strcspn(arg, "@"), arg);
		if (hash_name_valid(one.name)) {
			on_disk = explain_on_disk(t, one.name);
			rc = ctl_append(&acc, "command: explain\n");
			e.map = &one;
			e.disk = &on_disk;
			e.n = 1;
			e.paths = true;
			if (!rc)
				rc = tally_meta_read(t, explain_all, &e);
			if (!rc && !e.known)
				rc = -ENOENT;
			goto out;
		}
	}
	/* a path: the objects its blocks name, as committed */
	rc = tally_drain(t, NULL, 0);
	if (!rc)
		rc = tally_resolve(t, arg, &e.ino, &e.at);
	if (rc)
		goto out;
	rc = tally_meta_read(t, explain_map, &e);
	map = e.loaded;
	n = e.nloaded;
	if (!rc)
		rc = ctl_append(&acc,
				"command: explain\npath: %s\nblocks: %zu\n",
				arg, n);
	/* each object once, in name order; the files looked for without
	 * the lock */
	if (!rc && n) {
		size_t k = 0;

		qsort(map, n, sizeof(*map), cmp_bref_name);
		for (i = 0; i < n; i++)
			if (map[i].name[0] &&
			    (k == 0 || strcmp(map[k - 1].name, map[i].name)))
				map[k++] = map[i];
		n = k;
		disk = calloc(n ? n : 1, sizeof(*disk));
		if (!disk)
			rc = -ENOMEM;
		for (i = 0; i < n && !rc; i++)
			disk[i] = explain_on_disk(t, map[i].name);
	}
	if (!rc) {
		e.map = map;
		e.disk = disk;
		e.n = n;
		rc = tally_meta_read(t, explain_all, &e);
	}
	free(disk);
	free(map);
out:
	if (!rc)
		*report = acc;
	else
		free(acc);
	return rc;
}

/* Run a rebalance; append its report to *report. */
static int ctl_rebalance(struct tally *t, char **report)
{
	struct shard_rebalance_report r;
	double s;
	int rc = shard_rebalance(t, &r);

	s = r.duration_ms / 1e3;
	if (!rc)
		rc = ctl_append(report,
				"moved: %" PRIu64 "\nbytes: %" PRIu64
				"\nfailed: %" PRIu64 "\nrecovered: %" PRIu64
				"\nghosts: %" PRIu64
				"\nmb_per_s: %.1f\nobjects_per_s: %.1f"
				"\nduration_ms: %.1f\n",
				r.moved, r.bytes, r.failed, r.recovered,
				r.ghosts, s > 0 ? (double)r.bytes / 1e6 / s : 0,
				s > 0 ? (double)r.moved / s : 0, r.duration_ms);
	return rc;
}

/* shard add DIR | drain ID | activate ID | list */
static int ctl_shard(struct tally *t, const struct ctl_cmd *cmd, char **report)
{
	struct shard_infos *l;
	uint32_t id;
	unsigned i;
	int rc;

	if (!strcmp(cmd->args[0], "add")) {
		rc = shard_add(t, cmd->args[1], tally_mountpoint(t), &id);
		if (!rc)
			rc = ctl_aprintf(
				report,
				"command: shard add\nshard: %u\npath: %s\n", id,
				cmd->args[1]);
		return rc;
	}
	if (!strcmp(cmd->args[0], "drain")) {
		/* no new objects there, and everything moves off now */
		rc = shard_drain(t, cmd->shard);
		if (rc == -EBUSY) /* without memory, the errno alone */
			(void)ctl_aprintf(
				report,
				"command: shard drain\nshard: %u\n"
				"error: the last active shard cannot "
				"be drained: add a shard, or activate "
				"one, first\n",
				cmd->shard);
		if (!rc)
			rc = ctl_aprintf(report,
					 "command: shard drain\nshard: %u\n"
					 "state: draining\n",
					 cmd->shard);
		if (!rc)
			rc = ctl_rebalance(t, report);
		return rc;
	}
	if (!strcmp(cmd->args[0], "activate")) {
		rc = shard_activate(t, cmd->shard);
		if (!rc)
			rc = ctl_aprintf(report,
					 "command: shard activate\nshard: %u\n"
					 "state: active\n",
					 cmd->shard);
		return rc;
	}
	l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	rc = shard_infos(t, l);
	if (!rc)
		rc = ctl_append(
			report,
			"command: shard list\nshards: %u\nghosts: %" PRIu64
			"\n",
			l->n, l->ghosts);
	for (i = 0; i < l->n && !rc; i++)
		rc = ctl_append(
			report,
			"shard: %u\npath: %s\nstate: %s\nobjects: %" PRIu64
			"\nbytes: %" PRIu64 "\nfree: %" PRIu64 "\n",
			l->v[i].id, l->v[i].path, ctl_shard_state(&l->v[i]),
			l->v[i].objects, l->v[i].bytes, l->v[i].free);
	free(l);
	return rc;
}

/* rekey /ABS/KEYFILE: that key file opens the store from now on. */
static int ctl_rekey(struct tally *t, const char *path, char **report)
{
	struct remote *r = tally_remote(t);
	const char *mnt = tally_mountpoint(t);
	struct remote_rekey k;
	struct timespec t0;
	size_t mlen;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!r) {
		ctl_aprintf(report, "command: rekey\nerror: this mount has no "
				    "remote tier (-o remote=...)\n");
		return -EOPNOTSUPP;
	}
	mlen = mnt ? strlen(mnt) : 0;
	if (mlen && !strncmp(path, mnt, mlen) &&
	    (path[mlen] == '/' || !path[mlen])) {
		ctl_aprintf(report, "command: rekey\nerror: a key file cannot "
				    "live inside the mount it opens\n");
		return -EINVAL;
	}
	rc = remote_rekey(r, path, &k);
	if (rc) {
		ctl_aprintf(report, "command: rekey\nerror: %s\n", k.err);
		return rc;
	}
	rc = ctl_aprintf(report,
			 "command: rekey\nkey_id: %s\nprevious_key_id: %s\n"
			 "changed: %s\nduration_ms: %.1f\n",
			 k.new_id, k.old_id, k.unchanged ? "no" : "yes",
			 ctl_ms_since(&t0));
	if (!rc && k.marker_behind)
		rc = ctl_append(report, "warning: %s\n", k.err);
	return rc;
}

/* One command, run as a job of the worker pool. */
struct ctl_job {
	struct tally *t;
	struct ctl_cmd *cmd;
	char *report;
	int rc;
	bool done; /* protected by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

/* drain remote [TIMEOUT]: commit, then wait until the bucket has every
 * committed object; progress in the status meanwhile. */
static int ctl_drain_remote(struct tally *t, double timeout, char **report)
{
	struct remote *r = tally_remote(t);
	struct tally_drain_report dr = { 0 };
	struct remote_stats s0, s1;
	struct progress_job *pj;
	char key[1024];
	struct timespec t0;
	uint64_t seq;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!r) {
		ctl_aprintf(report,
			    "command: drain remote\nerror: this mount has "
			    "no remote tier (-o remote=...)\n");
		return -EOPNOTSUPP;
	}
	rc = tally_drain_report(t, timeout, &dr);
	seq = tally_done_seq(t);
	remote_stats(r, &s0);
	pj = progress_begin(tally_progress(t), "drain remote", "objects",
			    s0.queued);
	while (!rc) {
		double left = timeout > 0 ? timeout - ctl_ms_since(&t0) / 1000
					  : 1;

		if (left <= 0) {
			rc = -ETIMEDOUT;
			break;
		}
		rc = remote_wait(r, seq, left < 0.5 ? left : 0.5);
		remote_stats(r, &s1);
		progress_set(pj, s1.uploaded - s0.uploaded);
		if (rc == -ETIMEDOUT && (timeout <= 0 || left > 0.5))
			rc = 0; /* one step of the wait, not its end */
		else if (!rc)
			break;
	}
	progress_end(pj);
	/* and the metadata that names them */
	key[0] = '\0';
	if (!rc) {
		double left = timeout > 0 ? timeout - ctl_ms_since(&t0) / 1000
					  : 0;

		rc = left < 0 ? -ETIMEDOUT
			      : remote_snapshot(r, left, key, sizeof(key));
	}
	remote_stats(r, &s1);
	ctl_aprintf(
		report,
		"command: drain remote\n%s%s%ssnapshot: %s\nflushed: %" PRIu64
		"\ndurable_seq: %" PRIu64 "\ndurable_remote_seq: %" PRIu64
		"\nqueued: %" PRIu64 "\nuploaded: %" PRIu64 "\nfailed: %" PRIu64
		"\nlast_error: %s\nduration_ms: %.1f\n",
		rc ? "error: " : "", rc ? strerror(-rc) : "", rc ? "\n" : "",
		key[0] ? key : "none", dr.flushed, seq, s1.durable_remote_seq,
		s1.queued, s1.uploaded - s0.uploaded, s1.failed - s0.failed,
		s1.last_error[0] ? s1.last_error : "none", ctl_ms_since(&t0));
	return rc;
}

static void ctl_run(struct ctl_job *j)
{
	struct ctl_cmd *cmd = j->cmd;
	struct tally_stats st;
	struct timespec t0;
	uint64_t n = 0;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	switch (cmd->verb) {
	case CTL_DRAIN: {
		struct tally_drain_report dr;
		int err;

		if (cmd->remote) {
			rc = ctl_drain_remote(j->t, cmd->timeout, &j->report);
			break;
		}
		/* a failed drain reports too: what is still uncommitted */
		rc = tally_drain_report(j->t, cmd->timeout, &dr);
		err = tally_stats(j->t, &st);
		if (!err)
			err = ctl_aprintf(
				&j->report,
				"command: drain\n%s%s%sflushed: %" PRIu64
				"\npending_flushes: %" PRIu64
				"\nuncommitted_files: %" PRIu64
				"\nuncommitted_blocks: %" PRIu64
				"\ndurable_seq: %" PRIu64
				"\nflush_errors: %" PRIu64
				"\nduration_ms: %.1f\n",
				rc ? "error: " : "", rc ? strerror(-rc) : "",
				rc ? "\n" : "", dr.flushed, st.pending_flushes,
				dr.files, dr.blocks, st.durable_seq,
				st.commit_errors, ctl_ms_since(&t0));
		if (!rc)
			rc = err;
		break;
	}
	case CTL_GC: {
		struct gc_opts o = { .dry_run = cmd->dry_run,
				     .grace = cmd->grace };
		struct gc_report r;

		rc = gc_run(j->t, &o, &r);
		if (!rc)
			rc = ctl_aprintf(
				&j->report,
				"command: gc\ndry_run: %s\nchecked: %" PRIu64
				"\nlive: %" PRIu64 "\nunreferenced: %" PRIu64
				"\ncollected: %" PRIu64
				"\nbytes_freed: %" PRIu64
				"\npreserved: %" PRIu64
				"\nstale_nodes: %" PRIu64
				"\nnodes_reporting: %" PRIu64
				"\nnodes_unreported: %" PRIu64
				"\ndrift: %" PRIu64 "\ndrift_under: %" PRIu64
				"\ndrift_over: %" PRIu64 "\nblocked: %s"
				"\ngrace: %" PRId64 "\nlongest_hold_ms: %.1f"
				"\nduration_ms: %.1f\n",
				r.dry_run ? "yes" : "no", r.checked, r.live,
				r.unreferenced, r.collected, r.bytes_freed,
				r.preserved, r.stale_nodes, r.nodes_reporting,
				r.unreported, r.drift_under + r.drift_over,
				r.drift_under, r.drift_over,
				r.blocked ? "yes" : "no",
				cmd->grace < 0 ? (int64_t)GC_DEFAULT_GRACE
					       : cmd->grace,
				r.longest_hold_ms, r.duration_ms);
		if (!rc && r.has_remote)
			rc = ctl_append(
				&j->report,
				"remote_listing: %s\nremote_keys: %" PRIu64
				"\nremote_unreferenced: %" PRIu64
				"\nremote_queued: %" PRIu64 "\n",
				r.remote.failed ? "failed" : "whole",
				r.remote.listed, r.remote.unreferenced,
				r.remote.queued);
		break;
	}
	case CTL_PIN:
	case CTL_UNPIN:
		rc = tally_pin(j->t, cmd->args[0], cmd->verb == CTL_PIN, &n);
		if (!rc && cmd->verb == CTL_PIN)
			rc = ctl_aprintf(
				&j->report,
				"command: pin\npath: %s\nobjects: %" PRIu64
				"\n",
				cmd->args[0], n);
		else if (!rc)
			rc = ctl_aprintf(&j->report,
					 "command: unpin\npath: %s\n",
					 cmd->args[0]);
		break;
	case CTL_VERIFY: {
		struct gc_verify v;
		unsigned k;

		if (cmd->remote && !tally_remote(j->t)) {
			rc = -EOPNOTSUPP;
			ctl_aprintf(&j->report,
				    "command: verify remote\nerror: "
				    "this mount has no remote tier\n");
			break;
		}
		rc = cmd->remote ? remote_verify(tally_remote(j->t),
						 cmd->sample, &v)
				 : gc_verify(j->t, cmd->sample, &v);
		if (!rc)
			rc = ctl_append(
				&j->report,
				"command: verify%s\nsample_percent: %g"
				"\nobjects: %" PRIu64 "\nchecked: %" PRIu64
				"\nok: %" PRIu64 "\ncorrupt: %" PRIu64
				"\nmissing: %" PRIu64 "\nremote_only: %" PRIu64
				"\nbytes: %" PRIu64 "\nduration_ms: %.1f\n",
				cmd->remote ? " remote" : "", cmd->sample,
				v.objects, v.checked, v.ok, v.corrupt,
				v.missing, v.remote_only, v.bytes,
				v.duration_ms);
		for (k = 0; k < v.nbad && !rc; k++)
			rc = ctl_append(&j->report, "bad: %s\n", v.bad[k]);
		break;
	}
	case CTL_EXPLAIN:
		rc = ctl_explain(j->t, cmd->args[0], &j->report);
		break;
	case CTL_REKEY:
		rc = ctl_rekey(j->t, cmd->args[0], &j->report);
		break;
	case CTL_SNAPSHOT:
	case CTL_SNAPSHOTS:
	case CTL_RMSNAPSHOT:
	case CTL_ROLLBACK:
	case CTL_DIFF:
	case CTL_AUTOSNAPSHOT:
		rc = ctl_version(j->t, cmd, &j->report);
		break;
	case CTL_DU:
		rc = ctl_du(j->t, cmd->nargs ? cmd->args[0] : NULL, &j->report);
		break;
	case CTL_REPAIR:
		rc = gc_repair(j->t, &n);
		if (!rc)
			rc = ctl_aprintf(&j->report,
					 "command: repair\nrepaired: %" PRIu64
					 "\nduration_ms: %.1f\n",
					 n, ctl_ms_since(&t0));
		break;
	case CTL_SHARD:
		rc = ctl_shard(j->t, cmd, &j->report);
		break;
	case CTL_REBALANCE:
		rc = ctl_aprintf(&j->report, "command: rebalance\n");
		if (!rc)
			rc = ctl_rebalance(j->t, &j->report);
		break;
	case CTL_SWEEP: {
		struct shard_sweep_opts o = { .batches = cmd->batches };
		struct shard_sweep_report r;

		rc = shard_sweep(j->t, &o, &r);
		if (!rc)
			rc = ctl_aprintf(&j->report,
					 "command: sweep\nchecked: %" PRIu64
					 "\npurged: %" PRIu64 "\nkept: %" PRIu64
					 "\ninconclusive: %" PRIu64
					 "\nreferences_repointed: %" PRIu64
					 "\nduration_ms: %.1f\n",
					 r.checked, r.purged, r.kept,
					 r.inconclusive, r.repointed,
					 r.duration_ms);
		break;
	}
	case CTL_BRANCH: {
		unsigned tries = 0;

		/* a shared store's transaction that may pass: again */
		do
			rc = tally_branch(j->t, cmd->args[0], cmd->args[1], &n);
		while (tally_retry(j->t, &rc, &tries));
		if (!rc)
			rc = ctl_aprintf(
				&j->report,
				"command: branch\nsource: %s\nbranch: %s"
				"\ninodes: %" PRIu64 "\nduration_ms: %.1f\n",
				cmd->args[0], cmd->args[1], n,
				ctl_ms_since(&t0));
		break;
	}
	}
	j->rc = rc;
}

static void ctl_job_fn(void *arg)
{
	struct ctl_job *j = arg;

	ctl_run(j);
	pthread_mutex_lock(&j->lock);
	j->done = true;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

int ctl_exec(struct tally *t, const char *line, size_t len, char **report)
{
	struct ctl_job j = { .t = t };
	int rc;

	*report = NULL;
	j.cmd = malloc(sizeof(*j.cmd));
	if (!j.cmd)
		return -ENOMEM;
	rc = ctl_parse(line, len, j.cmd);
	if (rc)
		goto out;
	pthread_mutex_init(&j.lock, NULL);
	pthread_cond_init(&j.cond, NULL);
	if (pool_submit(tally_pool(t), POOL_CONTROL, ctl_job_fn, &j) != 0) {
		ctl_job_fn(&j); /* shutting down: run it here */
	}
	pthread_mutex_lock(&j.lock);
	while (!j.done) {
		pthread_mutex_unlock(&j.lock);
		/* help the pool, so that a busy pool cannot stall us */
		if (!pool_help(tally_pool(t))) {
			struct timespec until;

			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 20 * 1000000;
			if (until.tv_nsec >= 1000000000) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000;
			}
			pthread_mutex_lock(&j.lock);
			if (!j.done)
				pthread_cond_timedwait(&j.cond, &j.lock,
						       &until);
			continue;
		}
		pthread_mutex_lock(&j.lock);
	}
	pthread_mutex_unlock(&j.lock);
	pthread_cond_destroy(&j.cond);
	pthread_mutex_destroy(&j.lock);
	rc = j.rc;
	*report = j.report; /* a failure's too, if it left one */
out:
	free(j.cmd);
	return rc;
}
