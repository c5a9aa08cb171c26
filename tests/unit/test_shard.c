/* SPDX-License-Identifier: MIT */
/*
 * Shards, rebalance, ghosts and the sweep (core/jobs/shard.c) on a real store
 * with real shard directories: placement, balance, reads through ghosts,
 * sweep verdicts (purge, keep, inconclusive), unreachable shards, drain,
 * interrupted moves, and GC of stray copies.
 */
#include <criterion/criterion.h>
#include <time.h>
#include <sys/statvfs.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/jobs/ctl.h"
#include "core/jobs/fsck.h"
#include "core/jobs/gc.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/jobs/shard.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096
#define NFILES 30

static char *dir;
static char store[4096], mnt[4200];
static struct tally *t;
static const struct tally_ctx me = { 0, 0 };
static uint64_t ns, ino[NFILES];
static char data[NFILES][BS];

static void open_store(void)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.workers = 2,
		.inode_dirty_max = BS,
		.mountpoint = mnt,
	};

	cr_assert_eq(tally_open(store, &o, &t), 0);
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	cr_assert_eq(mkdir(mnt, 0755), 0);
	open_store();
}

static void teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(shard, .init = setup, .fini = teardown, .timeout = 60);

/* A new empty directory DIR/@name; its path into @out. */
static void newdir(const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", dir, name);
	cr_assert_eq(mkdir(out, 0700), 0);
}

static uint32_t add_shard(const char *name)
{
	char path[4200];
	uint32_t id = 0;

	newdir(name, path, sizeof(path));
	cr_assert_eq(shard_add(t, path, mnt, &id), 0);
	return id;
}

static uint64_t mkfile(uint64_t parent, const char *name, const void *buf,
		       size_t len)
{
	struct stat st;

	cr_assert_eq(tally_mknod(t, &me, parent, name, S_IFREG | 0644, 0, &st),
		     0);
	cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), 0);
	cr_assert_eq(tally_write(t, st.st_ino, buf, len, 0), (ssize_t)len);
	cr_assert_eq(tally_release(t, st.st_ino), 0);
	return st.st_ino;
}

/* NFILES files of one block each, distinct contents, committed. */
static void write_files(void)
{
	struct stat st;
	int i;

	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, "ns", 0755, &st), 0);
	ns = st.st_ino;
	for (i = 0; i < NFILES; i++) {
		char name[32];

		tu_fill(data[i], BS, 1000 + (unsigned)i);
		snprintf(name, sizeof(name), "f%d", i);
		ino[i] = mkfile(ns, name, data[i], BS);
	}
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
}

/* Every file reads back exactly (through ghosts where there are). */
static void expect_contents(void)
{
	char buf[BS];
	int i;

	for (i = 0; i < NFILES; i++) {
		cr_assert_eq(tally_read(t, ino[i], buf, BS, 0), BS, "file %d",
			     i);
		cr_assert_eq(memcmp(buf, data[i], BS), 0, "file %d", i);
	}
}

static void infos(struct shard_infos *l)
{
	cr_assert_eq(shard_infos(t, l), 0);
}

/* The shard that user.tally.objects names for the file of @i. */
static unsigned named_shard(int i)
{
	char buf[256], *at;
	ssize_t n = tally_getxattr(t, ino[i], "user.tally.objects", buf,
				   sizeof(buf) - 1);

	cr_assert_gt(n, 0);
	buf[n] = '\0';
	at = strchr(buf, '@');
	cr_assert_not_null(at);
	return (unsigned)strtoul(at + 1, NULL, 10);
}

/* The name of the object of file @i (its only block). */
static void object_of(int i, char name[OBJNAME_MAX])
{
	char buf[OBJNAME_MAX + 8], *at;
	ssize_t n = tally_getxattr(t, ino[i], "user.tally.objects", buf,
				   sizeof(buf) - 1);

	cr_assert_gt(n, 0);
	buf[n] = '\0';
	at = strchr(buf, '@');
	*at = '\0';
	snprintf(name, OBJNAME_MAX, "%.*s", OBJNAME_MAX - 1, buf);
}

/* The shard where object @name lives, by its row. */
static uint32_t object_shard(const char *name)
{
	struct meta *m = tally_meta_lock(t);
	uint64_t osize;
	int64_t id, refs;
	uint32_t where = UINT32_MAX;

	cr_assert_eq(meta_object_info(m, name, &id, &where, &osize, &refs), 0);
	tally_meta_unlock(t);
	return where;
}

static void sweep(long batches, struct shard_sweep_report *r)
{
	struct shard_sweep_opts o = { .batches = batches };

	cr_assert_eq(shard_sweep(t, &o, r), 0);
}

static void close_and_check(struct fsck_result *r)
{
	tally_close(t);
	t = NULL;
	tu_fsck_clean(store, r);
}

Test(shard, new_objects_spread_over_the_shards)
{
	struct shard_infos l;
	uint64_t lo = UINT64_MAX, hi = 0, sum = 0;
	unsigned i;

	cr_assert_eq(add_shard("d1"), 1);
	cr_assert_eq(add_shard("d2"), 2);
	write_files();
	infos(&l);
	cr_assert_eq(l.n, 3);
	for (i = 0; i < l.n; i++) {
		cr_assert(l.v[i].reachable);
		cr_assert_not(l.v[i].draining);
		lo = l.v[i].objects < lo ? l.v[i].objects : lo;
		hi = l.v[i].objects > hi ? l.v[i].objects : hi;
		sum += l.v[i].objects;
	}
	cr_assert_eq(sum, NFILES);
	cr_assert_leq(hi - lo, 1, "placement balances: %lu..%lu",
		      (unsigned long)lo, (unsigned long)hi);
	expect_contents();
	close_and_check(NULL);
}

Test(shard, rebalance_then_sweep)
{
	struct shard_rebalance_report rb;
	struct shard_sweep_report sw;
	struct shard_infos l;
	struct fsck_result fr;
	unsigned before[NFILES], i, rw, moved = 0;
	bool explained = false;
	uint64_t lo = UINT64_MAX, hi = 0;
	char *status = NULL;

	add_shard("d1");
	add_shard("d2");
	write_files();
	for (i = 0; i < NFILES; i++)
		before[i] = named_shard((int)i);
	cr_assert_eq(add_shard("d3"), 3);
	cr_assert_eq(shard_rebalance(t, &rb), 0);
	cr_assert_eq(rb.failed, 0);
	cr_assert_eq(rb.ghosts, rb.moved);
	{
		struct shard_rebalance_report again;

		/* balanced: a second rebalance has nothing to move */
		cr_assert_eq(shard_rebalance(t, &again), 0);
		cr_assert_eq(again.moved, 0);
		cr_assert_eq(again.ghosts, rb.moved);
	}
	cr_assert_eq(rb.bytes, rb.moved * BS);
	infos(&l);
	for (i = 0; i < l.n; i++) {
		lo = l.v[i].objects < lo ? l.v[i].objects : lo;
		hi = l.v[i].objects > hi ? l.v[i].objects : hi;
	}
	cr_assert_leq(hi - lo, 1, "balanced: %lu..%lu", (unsigned long)lo,
		      (unsigned long)hi);
	cr_assert_geq(l.v[3].objects, NFILES / 4,
		      "the new shard took its share");
	cr_assert_eq(l.v[0].objects + l.v[1].objects + l.v[2].objects +
			     l.v[3].objects,
		     NFILES);
	cr_assert_eq(l.ghosts, rb.moved);
	/* the references still name the source; reads follow the ghosts */
	for (i = 0; i < NFILES; i++)
		cr_assert_eq(named_shard((int)i), before[i]);
	expect_contents();
	/* explain shows the ghost and the file holding the object */
	for (i = 0; i < NFILES && !explained; i++) {
		char name[OBJNAME_MAX], line[256], *report = NULL;
		uint32_t where;

		object_of((int)i, name);
		where = object_shard(name);
		if (where == before[i])
			continue;
		snprintf(line, sizeof(line), "explain %s\n", name);
		cr_assert_eq(ctl_exec(t, line, strlen(line), &report), 0);
		snprintf(
			line, sizeof(line),
			"ghost: shard %u -> %u (1 reference naming shard %u)\n",
			before[i], where, before[i]);
		cr_assert_not_null(strstr(report, line), "%s", report);
		snprintf(line, sizeof(line), "path: ns/f%u (1 reference)\n", i);
		cr_assert_not_null(strstr(report, line), "%s", report);
		free(report);
		explained = true;
	}
	cr_assert(explained);
	/* a block rewritten: its reference to the source goes (the ghost's
	 * count with it), the new one names the new object's shard */
	for (i = 0; i < NFILES && named_shard((int)i) == before[i]; i++) {
		char name[OBJNAME_MAX];
		uint32_t where;

		object_of((int)i, name);
		where = object_shard(name);
		if (where != before[i])
			break;
	}
	cr_assert_lt(i, NFILES);
	rw = i;
	tu_fill(data[i], BS, 7777);
	cr_assert_eq(tally_open_file(t, ino[i], O_RDWR), 0);
	cr_assert_eq(tally_write(t, ino[i], data[i], BS, 0), BS);
	cr_assert_eq(tally_release(t, ino[i]), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	/* a remount keeps the ghosts; their counts are exact */
	tally_close(t);
	t = NULL;
	tu_fsck_clean(store, &fr);
	cr_assert_eq(fr.ghosts, rb.moved - 1, "the rewritten one went");
	open_store();
	infos(&l);
	cr_assert_eq(l.ghosts, rb.moved - 1);
	expect_contents();

	sweep(-1, &sw);
	cr_assert_eq(sw.checked, rb.moved - 1);
	cr_assert_eq(sw.purged, rb.moved - 1);
	cr_assert_eq(sw.kept, 0);
	cr_assert_eq(sw.inconclusive, 0);
	cr_assert_eq(sw.repointed, rb.moved - 1);
	/* every reference now names where its object is */
	infos(&l);
	for (i = 0; i < NFILES; i++)
		if (i != rw && named_shard((int)i) != before[i])
			moved++;
	cr_assert_eq(moved, rb.moved - 1);
	{
		uint64_t per[4] = { 0 };

		for (i = 0; i < NFILES; i++)
			per[named_shard((int)i)]++;
		for (i = 0; i < 4; i++)
			cr_assert_eq(per[i], l.v[i].objects, "shard %u", i);
	}
	expect_contents();
	cr_assert_eq(l.ghosts, 0);
	cr_assert_eq(l.total_purged, rb.moved - 1);
	cr_assert(l.have_sweep);
	cr_assert_eq(l.last_sweep.purged, rb.moved - 1);
	cr_assert_eq(ctl_status_json(t, &status), 0);
	cr_assert_not_null(strstr(status, "\"ghosts\": 0"), "%s", status);
	cr_assert_not_null(strstr(status, "\"state\": \"active\""));
	free(status);
	/* nothing left to do */
	sweep(-1, &sw);
	cr_assert_eq(sw.checked, 0);
	close_and_check(&fr);
	cr_assert_eq(fr.objects, NFILES);
	cr_assert_eq(fr.ghosts, 0);
}

/* Rename shard directory @name away (unreachable) or back. */
static void hide(const char *name, bool away)
{
	char a[4200], b[4300];

	snprintf(a, sizeof(a), "%s/%s", dir, name);
	snprintf(b, sizeof(b), "%s/%s.away", dir, name);
	cr_assert_eq(away ? rename(a, b) : rename(b, a), 0);
}

Test(shard, sweep_verdicts)
{
	struct shard_rebalance_report rb;
	struct shard_sweep_report sw;
	struct shard_infos l;
	char buf[BS];
	int i, victim = -1, unreadable = 0;
	uint64_t twin;

	add_shard("d1");
	write_files();
	add_shard("d2");
	cr_assert_eq(shard_rebalance(t, &rb), 0);
	cr_assert_geq(rb.moved, 2);
	/* verdicts only: every ghost still has its reference */
	sweep(0, &sw);
	cr_assert_eq(sw.checked, rb.moved);
	cr_assert_eq(sw.kept, rb.moved);
	cr_assert_eq(sw.purged + sw.inconclusive + sw.repointed, 0);

	/* a ghost whose count drops to 0: a twin of a moved file names
	 * the target, the file that named the source goes */
	infos(&l);
	for (i = 0; i < NFILES && victim < 0; i++) {
		char name[OBJNAME_MAX];

		object_of(i, name);
		if (object_shard(name) == 2 && named_shard(i) != 2)
			victim = i;
	}
	cr_assert_geq(victim, 0);
	twin = mkfile(ns, "twin", data[victim], BS);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	{
		char name[32];

		snprintf(name, sizeof(name), "f%d", victim);
		cr_assert_eq(tally_unlink(t, ns, name), 0);
	}
	cr_assert_eq(tally_drain(t, NULL, 0), 0);

	/* the target shard is gone: reads fail with EIO, the ghosts whose
	 * count is not 0 are inconclusive, the one at 0 goes anyway */
	hide("d2", true);
	for (i = 0; i < NFILES; i++) {
		if (i == victim)
			continue;
		if (tally_read(t, ino[i], buf, BS, 0) == -EIO)
			unreadable++;
	}
	cr_assert_gt(unreadable, 0);
	sweep(-1, &sw);
	cr_assert_eq(sw.checked, rb.moved);
	cr_assert_eq(sw.repointed, 0);
	cr_assert_geq(sw.purged, 1, "the ghost at 0 needs no remote check");
	cr_assert_eq(sw.purged + sw.inconclusive, rb.moved);
	cr_assert_eq(sw.kept, 0);
	infos(&l);
	cr_assert_not(l.v[2].reachable);
	cr_assert_eq(l.ghosts, sw.inconclusive);

	/* back again: the rest goes, everything reads */
	hide("d2", false);
	sweep(-1, &sw);
	cr_assert_eq(sw.purged, sw.checked);
	cr_assert_eq(sw.inconclusive, 0);
	cr_assert_eq(tally_read(t, twin, buf, BS, 0), BS);
	cr_assert_eq(memcmp(buf, data[victim], BS), 0);
	for (i = 0; i < NFILES; i++) {
		if (i == victim)
			continue;
		cr_assert_eq(tally_read(t, ino[i], buf, BS, 0), BS);
		cr_assert_eq(memcmp(buf, data[i], BS), 0);
	}
	infos(&l);
	cr_assert(l.v[2].reachable);
	cr_assert_eq(l.ghosts, 0);
	close_and_check(NULL);
}

Test(shard, add_refuses_bad_directories)
{
	char path[4300];
	uint32_t id;
	int fd;

	cr_assert_eq(shard_add(t, "relative/dir", mnt, &id), -EINVAL);
	snprintf(path, sizeof(path), "%s/missing", dir);
	cr_assert_eq(shard_add(t, path, mnt, &id), -ENOENT);
	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(shard_add(t, path, mnt, &id), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/full", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/full/x", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/full", dir);
	cr_assert_eq(shard_add(t, path, mnt, &id), -ENOTEMPTY);
	snprintf(path, sizeof(path), "%s/sub", mnt);
	cr_assert_eq(mkdir(path, 0700), 0);
	cr_assert_eq(shard_add(t, path, mnt, &id), -EINVAL, "inside the mount");
	snprintf(path, sizeof(path), "%s/x/../sub", mnt);
	cr_assert_eq(shard_add(t, path, mnt, &id), -EINVAL);
	cr_assert_eq(shard_add(t, store, mnt, &id), -EINVAL, "the store");
	cr_assert_eq(add_shard("ok"), 1);
	snprintf(path, sizeof(path), "%s/ok", dir);
	cr_assert_eq(shard_add(t, path, mnt, &id), -EEXIST, "a shard");
	cr_assert_eq(shard_drain(t, 7), -ENOENT);
	/* nothing of the refused ones was recorded */
	{
		struct shard_infos l;

		infos(&l);
		cr_assert_eq(l.n, 2);
	}
	/* a foreign marker makes a shard unreachable, not used */
	tally_close(t);
	snprintf(path, sizeof(path), "%s/ok/tallyfs-shard", dir);
	cr_assert_eq(chmod(path, 0600), 0);
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "tallyfs shard\nstore 1\nid 1\n", 27), 27);
	close(fd);
	open_store();
	{
		struct shard_infos l;

		infos(&l);
		cr_assert_not(l.v[1].reachable);
	}
	write_files();
	expect_contents();
	{
		struct shard_infos l;

		infos(&l);
		cr_assert_eq(l.v[0].objects, NFILES, "only shard 0 takes");
	}
}

Test(shard, drained_shard_is_emptied)
{
	struct shard_rebalance_report rb;
	struct shard_infos l;
	struct stat st;
	char buf[BS];

	add_shard("d1");
	write_files();
	infos(&l);
	cr_assert_gt(l.v[1].objects, 0);
	cr_assert_eq(shard_drain(t, 1), 0);
	/* new data goes elsewhere */
	tu_fill(buf, BS, 7);
	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, "more", 0755, &st), 0);
	mkfile(st.st_ino, "new", buf, BS);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	infos(&l);
	cr_assert(l.v[1].draining);
	cr_assert_eq(l.v[0].objects + l.v[1].objects, NFILES + 1);
	cr_assert_eq(shard_rebalance(t, &rb), 0);
	infos(&l);
	cr_assert_eq(l.v[1].objects, 0);
	cr_assert_eq(l.v[0].objects, NFILES + 1);
	expect_contents();
	/* the state survives a remount */
	tally_close(t);
	open_store();
	infos(&l);
	cr_assert(l.v[1].draining);
	close_and_check(NULL);
}

Test(shard, last_active_shard_is_never_drained)
{
	struct shard_infos l;
	char *report = NULL;

	/* one shard: draining it would leave new objects nowhere */
	cr_assert_eq(shard_drain(t, 0), -EBUSY);
	cr_assert_eq(ctl_exec(t, "shard drain 0\n", 14, &report), -EBUSY);
	cr_assert_not_null(report);
	cr_assert_not_null(strstr(report, "error: the last active shard"), "%s",
			   report);
	free(report);
	infos(&l);
	cr_assert_not(l.v[0].draining);
	write_files();
	/* two: either may drain, not both */
	cr_assert_eq(add_shard("d1"), 1);
	cr_assert_eq(shard_drain(t, 0), 0);
	cr_assert_eq(shard_drain(t, 0), 0, "again: nothing changes");
	cr_assert_eq(shard_drain(t, 1), -EBUSY);
	infos(&l);
	cr_assert(l.v[0].draining);
	cr_assert_not(l.v[1].draining);
	/* activate makes a draining shard active again, for good */
	cr_assert_eq(shard_activate(t, 9), -ENOENT);
	cr_assert_eq(ctl_exec(t, "shard activate 0\n", 17, &report), 0);
	cr_assert_not_null(strstr(report, "state: active\n"), "%s", report);
	free(report);
	cr_assert_eq(shard_activate(t, 1), 0, "an active shard stays so");
	cr_assert_eq(shard_drain(t, 1), 0);
	tally_close(t);
	open_store();
	infos(&l);
	cr_assert_not(l.v[0].draining);
	cr_assert(l.v[1].draining);
	expect_contents();
	close_and_check(NULL);
}

Test(shard, activate_unbricks_a_store_with_every_shard_draining)
{
	struct shard_infos l;
	char buf[BS];
	struct meta *m;
	uint64_t f;
	int rc;

	/* as an older version left it: the only shard draining */
	m = tally_meta_lock(t);
	rc = meta_begin(m);
	if (!rc)
		rc = meta_shard_set_state(m, 0, META_SHARD_DRAINING);
	cr_assert_eq(meta_end(m, rc), 0);
	tally_meta_unlock(t);
	tally_close(t);
	open_store();
	infos(&l);
	cr_assert(l.v[0].draining);
	f = tu_newfile(t, tu_mkns(t, "ns"), "f");
	tu_fill(buf, BS, 5);
	/* no shard takes objects: no room to reserve, the write refused */
	cr_assert_eq(tally_write(t, f, buf, BS, 0), -ENOSPC);
	cr_assert_eq(shard_activate(t, 0), 0);
	cr_assert_eq(tally_write(t, f, buf, BS, 0), BS);
	cr_assert_eq(tally_fsync(t, f, false), 0, "the data goes");
	cr_assert_eq(tally_release(t, f), 0);
	close_and_check(NULL);
}

/* Whether object @name has a file in @shard. */
static bool has_copy(unsigned shard, const char *name)
{
	off_t size;

	return objstore_stat(tally_objstore(t), shard, name, &size) == 0;
}

Test(shard, interrupted_moves_are_settled)
{
	struct fsck_result fr;
	char a[OBJNAME_MAX], b[OBJNAME_MAX];
	uint64_t osize;
	int64_t ida, idb, refs;
	uint32_t where;
	struct meta *m;
	off_t size;

	write_files(); /* all in shard 0 */
	add_shard("d1");
	object_of(0, a);
	object_of(1, b);
	m = tally_meta_lock(t);
	cr_assert_eq(meta_object_info(m, a, &ida, &where, &osize, &refs), 0);
	cr_assert_eq(meta_object_info(m, b, &idb, &where, &osize, &refs), 0);
	/* a: journaled and copied, never committed (crash mid-copy);
	 * b: committed, source copy still there (crash before unlink) */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_move_begin(m, ida, a, 0, 1), 0);
	cr_assert_eq(meta_move_begin(m, idb, b, 0, 1), 0);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
	cr_assert_eq(objstore_copy(tally_objstore(t), a, 0, 1, &size), 0);
	cr_assert_eq(objstore_copy(tally_objstore(t), b, 0, 1, &size), 0);
	m = tally_meta_lock(t);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_move_commit(m, idb, 0, 1, 1), 1);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
	cr_assert(has_copy(0, a) && has_copy(1, a));
	cr_assert(has_copy(0, b) && has_copy(1, b));
	/* GC keeps journaled objects in every shard */
	{
		struct gc_opts o = { .grace = 0 };
		struct gc_report r;

		cr_assert_eq(gc_run(t, &o, &r), 0);
		cr_assert_eq(gc_run(t, &o, &r), 0);
		cr_assert_eq(r.collected, 0);
	}
	/* the "crash": a remount settles both */
	tally_close(t);
	t = NULL;
	tu_fsck_clean(store, NULL);
	open_store();
	cr_assert(has_copy(0, a));
	cr_assert_not(has_copy(1, a), "an uncommitted move is undone");
	cr_assert_not(has_copy(0, b), "a committed move is finished");
	cr_assert(has_copy(1, b));
	expect_contents();
	close_and_check(&fr);
	cr_assert_eq(fr.ghosts, 1);
}

/* A verdict lookup that fails while a move is settled keeps both copies
 * and the move journaled; the next settle finishes it. */
Test(shard, failed_lookup_keeps_copies_of_a_move)
{
	struct shard_rebalance_report rr;
	char b[OBJNAME_MAX];
	uint64_t osize;
	int64_t idb, refs;
	uint32_t where;
	struct meta *m;
	off_t size;
	int i;

	write_files();
	add_shard("d1");
	object_of(1, b);
	m = tally_meta_lock(t);
	cr_assert_eq(meta_object_info(m, b, &idb, &where, &osize, &refs), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_move_begin(m, idb, b, 0, 1), 0);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
	cr_assert_eq(objstore_copy(tally_objstore(t), b, 0, 1, &size), 0);
	m = tally_meta_lock(t);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_move_commit(m, idb, 0, 1, 1), 1);
	cr_assert_eq(meta_commit(m), 0);
	tally_meta_unlock(t);
	/* the source copy's lookup fails: both copies stay, and the move */
	m = tally_meta_lock(t);
	meta_inject_lookup(m, 1, -EIO);
	tally_meta_unlock(t);
	cr_assert_eq(shard_rebalance(t, &rr), 0);
	cr_assert_eq(rr.recovered, 1);
	cr_assert(has_copy(0, b) && has_copy(1, b));
	/* the target copy's lookup fails: the source copy goes on its own
	 * positive answer, the target stays, and so does the move */
	for (i = 0; i < 2; i++) {
		m = tally_meta_lock(t);
		meta_inject_lookup(m, 2, -EIO);
		tally_meta_unlock(t);
		cr_assert_eq(shard_rebalance(t, &rr), 0);
		cr_assert_eq(rr.recovered, 1, "still journaled");
		cr_assert_not(has_copy(0, b));
		cr_assert(has_copy(1, b));
	}
	m = tally_meta_lock(t);
	meta_inject_lookup(m, 0, 0);
	tally_meta_unlock(t);
	cr_assert_eq(shard_rebalance(t, &rr), 0);
	cr_assert_eq(rr.recovered, 1);
	cr_assert_not(has_copy(0, b), "the committed move is finished");
	cr_assert(has_copy(1, b));
	cr_assert_eq(shard_rebalance(t, &rr), 0);
	cr_assert_eq(rr.recovered, 0, "and forgotten");
	expect_contents();
	close_and_check(NULL);
}

Test(shard, gc_collects_stray_copies_only)
{
	struct gc_opts o = { .grace = 0 };
	struct gc_report r;
	char a[OBJNAME_MAX];
	off_t size;

	write_files();
	add_shard("d1");
	object_of(0, a);
	/* a copy nothing names, as an interrupted rebalance could leave */
	cr_assert_eq(objstore_copy(tally_objstore(t), a, 0, 1, &size), 0);
	cr_assert_eq(gc_run(t, &o, &r), 0); /* marks and, grace 0, collects */
	cr_assert_eq(r.checked, NFILES + 1);
	cr_assert_eq(r.unreferenced, 1);
	cr_assert_eq(r.collected, 1);
	cr_assert_not(has_copy(1, a));
	cr_assert(has_copy(0, a));
	expect_contents();
	close_and_check(NULL);
}

Test(shard, sweep_resumes_after_a_partial_repoint)
{
	struct shard_rebalance_report rb;
	struct shard_sweep_report sw;
	struct fsck_result fr;
	struct shard_infos l;
	enum {
		BIG = 2000
	}; /* blocks per file: 3 files, over one batch */
	char *buf = malloc((size_t)BIG * BS), *back = malloc(BS);
	uint64_t f[3];
	struct stat st;
	int i, k;

	cr_assert_not_null(buf);
	cr_assert_not_null(back);
	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, "big", 0755, &st), 0);
	for (i = 0; i < 3; i++) {
		char name[8];

		tu_fill(buf, (size_t)BIG * BS, 500 + (unsigned)i);
		snprintf(name, sizeof(name), "b%d", i);
		f[i] = mkfile(st.st_ino, name, buf, (size_t)BIG * BS);
	}
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	add_shard("d1");
	cr_assert_eq(shard_drain(t, 0), 0);
	cr_assert_eq(shard_rebalance(t, &rb), 0);
	cr_assert_eq(rb.moved, 3 * BIG);
	/* one batch of references only, as a sweep killed after its first
	 * transaction would leave them */
	sweep(1, &sw);
	cr_assert_gt(sw.repointed, 0);
	cr_assert_lt(sw.repointed, 3 * BIG);
	cr_assert_eq(sw.purged, sw.repointed);
	cr_assert_eq(sw.kept, 3 * BIG - sw.repointed);
	tally_close(t);
	t = NULL;
	tu_fsck_clean(store, &fr); /* the ghost counts are exact */
	cr_assert_eq(fr.ghosts, sw.kept);
	open_store();
	sweep(-1, &sw);
	cr_assert_eq(sw.purged, sw.checked);
	cr_assert_eq(sw.kept + sw.inconclusive, 0);
	infos(&l);
	cr_assert_eq(l.ghosts, 0);
	cr_assert_eq(l.v[0].objects, 0);
	cr_assert_eq(l.v[1].objects, 3 * BIG);
	for (i = 0; i < 3; i++) {
		tu_fill(buf, (size_t)BIG * BS, 500 + (unsigned)i);
		for (k = 0; k < BIG; k += 97) {
			cr_assert_eq(tally_read(t, f[i], back, BS,
						(off_t)k * BS),
				     BS);
			cr_assert_eq(memcmp(back, buf + (size_t)k * BS, BS), 0,
				     "file %d block %d", i, k);
		}
	}
	free(buf);
	free(back);
	close_and_check(NULL);
}

/* The stat hook's probe: can another thread take the metadata lock (a
 * statfs) while a file of a shard is looked at? */
struct probe {
	int calls, blocked;
};

static void *statfs_main(void *arg)
{
	struct statvfs sv;

	(void)arg;
	tally_statfs(t, &sv);
	return NULL;
}

static void probe_lock(void *arg)
{
	struct probe *p = arg;
	struct timespec until;
	pthread_t th;

	p->calls++;
	cr_assert_eq(pthread_create(&th, NULL, statfs_main, NULL), 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	if (pthread_timedjoin_np(th, NULL, &until) != 0) {
		p->blocked++; /* the caller holds the lock: join later */
		pthread_detach(th);
	}
}

/*
 * No object file is looked at under the metadata lock by the ghost
 * sweep's verdicts or by explain: a statfs (which takes the lock) gets
 * through while each stat runs.
 */
Test(shard, sweep_and_explain_look_at_files_without_the_lock)
{
	struct shard_rebalance_report rb;
	struct shard_sweep_report sw;
	struct probe p = { 0 };
	char hash[OBJNAME_MAX], line[OBJNAME_MAX + 16];
	char *report = NULL;

	add_shard("d1");
	write_files();
	cr_assert_eq(add_shard("d2"), 2);
	cr_assert_eq(shard_rebalance(t, &rb), 0);
	cr_assert_gt(rb.ghosts, 0);
	object_of(0, hash);
	objstore_set_stat_hook(tally_objstore(t), probe_lock, &p);
	sweep(-1, &sw);
	snprintf(line, sizeof(line), "explain %s\n", hash);
	cr_assert_eq(ctl_exec(t, line, strlen(line), &report), 0);
	objstore_set_stat_hook(tally_objstore(t), NULL, NULL);
	free(report);
	cr_assert_gt(p.calls, 0, "the hook ran");
	cr_assert_eq(p.blocked, 0, "%d of %d stats held the lock", p.blocked,
		     p.calls);
	expect_contents();
}
