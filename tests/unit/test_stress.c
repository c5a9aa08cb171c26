/* SPDX-License-Identifier: MIT */
/*
 * Concurrency stress of core/fs/tally.c: several threads at once write files
 * built from a small pool of shared blocks (so their objects are shared),
 * fsync some, link them into the other namespace (a copy-on-write copy),
 * copy them block by block, rename and unlink them, while one more thread
 * branches a namespace and deletes the branch again, and runs gc grace=0
 * (both through the control path and the worker pool). Each writer owns its
 * names, so the last content it wrote to each is known. Then a drain:
 * every file reads back what its last writer wrote, the object files are
 * exactly the objects in the table, and the offline check finds every
 * count equal to the references (no drift, nothing dangling, no orphan).
 * A fixed number of operations per thread: no timing in the assertions.
 * tools/test.sh also runs it under ThreadSanitizer, built as a plain
 * program (-DTALLY_NO_CRITERION, see tests/unit/nocriterion.h).
 */
#ifdef TALLY_NO_CRITERION
#include "tests/unit/nocriterion.h"
#else
#include <criterion/criterion.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/ctl.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096
#define THREADS 4
#define SLOTS 12
#define OPS 300
#define BRANCHES 8
#define POOL 6
#define MAX_LEN (3 * BS + 300)

static char *dir;
static char store[4096];
static struct tally *t;
static const struct tally_ctx me = { 0, 0 };
static uint64_t nspace[2];
static char pool[POOL][BS];

/* one file a writer owns: where it is and what it must hold */
struct slot {
	bool exists;
	int ns;
	char name[32];
	char data[MAX_LEN];
	size_t len;
};

struct writer {
	pthread_t th;
	unsigned id;
	unsigned seed;
	unsigned names; /* next name number */
	struct slot slot[SLOTS];
	int err; /* first unexpected return */
	char what[96];
};

static struct writer writers[THREADS];

static void setup(void)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.workers = 3,
		.max_pending = 4,
		.inode_dirty_max = 2 * BS,
	};
	struct stat st;
	int i;

	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	cr_assert_eq(tally_open(store, &o, &t), 0);
	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, "main", 0755, &st), 0);
	nspace[0] = st.st_ino;
	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, "other", 0755, &st),
		     0);
	nspace[1] = st.st_ino;
	for (i = 0; i < POOL; i++)
		tu_fill(pool[i], BS, 900 + (unsigned)i);
	memset(pool[0], 0, BS); /* a hole */
}

static void teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(stress, .init = setup, .fini = teardown, .timeout = 240);

static unsigned rnd(struct writer *w, unsigned n)
{
	w->seed = w->seed * 1103515245u + 12345u;
	return (w->seed >> 8) % n;
}

/* Record the first failure; returns whether @rc is the expected one. */
static bool ok(struct writer *w, int rc, int want, const char *what)
{
	if (rc == want)
		return true;
	if (!w->err) {
		w->err = rc ? rc : -EPROTO;
		snprintf(w->what, sizeof(w->what), "%s: %d, expected %d", what,
			 rc, want);
	}
	return false;
}

static void fresh_name(struct writer *w, struct slot *s, int ns)
{
	s->ns = ns;
	snprintf(s->name, sizeof(s->name), "w%u-%u", w->id, w->names++);
}

/* Open the file of @s (creating it when @create): its inode, or 0. */
static uint64_t open_slot(struct writer *w, struct slot *s, bool create)
{
	struct stat st;
	int rc;

	if (create)
		rc = tally_mknod(t, &me, nspace[s->ns], s->name, S_IFREG | 0644,
				 0, &st);
	else
		rc = tally_lookup(t, nspace[s->ns], s->name, &st);
	if (!ok(w, rc, 0, create ? "mknod" : "lookup"))
		return 0;
	if (!ok(w, tally_open_file(t, st.st_ino, O_RDWR), 0, "open")) {
		tally_forget(t, st.st_ino, 1);
		return 0;
	}
	return st.st_ino;
}

static void close_slot(struct writer *w, uint64_t ino)
{
	ok(w, tally_release(t, ino), 0, "release");
	tally_forget(t, ino, 1);
}

/* Overwrite (truncate, write) a file with pool blocks and own bytes. */
static void op_write(struct writer *w, struct slot *s)
{
	struct stat in, st;
	bool create = !s->exists;
	size_t len = 0, n;
	uint64_t ino;
	unsigned b;

	if (create)
		fresh_name(w, s, (int)rnd(w, 2));
	for (b = rnd(w, 4); b > 0; b--) {
		if (rnd(w, 3))
			memcpy(s->data + len, pool[rnd(w, POOL)], BS);
		else
			tu_fill(s->data + len, BS, w->seed);
		len += BS;
	}
	n = rnd(w, 300);
	tu_fill(s->data + len, n, w->seed + 1);
	len += n;
	ino = open_slot(w, s, create);
	if (!ino)
		return;
	s->exists = true;
	memset(&in, 0, sizeof(in));
	ok(w, tally_setattr(t, ino, &in, TALLY_SET_SIZE, &st), 0, "truncate");
	/* two writes: a flush may start between them */
	n = len / 2;
	ok(w, (int)tally_write(t, ino, s->data, n, 0), (int)n, "write");
	ok(w, (int)tally_write(t, ino, s->data + n, len - n, (off_t)n),
	   (int)(len - n), "write");
	s->len = len;
	if (rnd(w, 3) == 0)
		ok(w, tally_fsync(t, ino, false), 0, "fsync");
	close_slot(w, ino);
}

/* A free slot of @w, or NULL. */
static struct slot *free_slot(struct writer *w)
{
	unsigned i, start = rnd(w, SLOTS);

	for (i = 0; i < SLOTS; i++)
		if (!w->slot[(start + i) % SLOTS].exists)
			return &w->slot[(start + i) % SLOTS];
	return NULL;
}

/* Link into the other namespace: a copy of the data written so far. */
static void op_link(struct writer *w, struct slot *s)
{
	struct slot *d = free_slot(w);
	struct stat st;
	uint64_t src;

	if (!d)
		return;
	if (!ok(w, tally_lookup(t, nspace[s->ns], s->name, &st), 0, "lookup"))
		return;
	src = st.st_ino;
	fresh_name(w, d, !s->ns);
	if (ok(w, tally_link(t, src, nspace[d->ns], d->name, &st), 0,
	       "link across")) {
		tally_forget(t, st.st_ino, 1);
		memcpy(d->data, s->data, s->len);
		d->len = s->len;
		d->exists = true;
	}
	tally_forget(t, src, 1);
}

/* Copy the file block by block (references shared) into a new one. */
static void op_copy(struct writer *w, struct slot *s)
{
	struct slot *d = free_slot(w);
	uint64_t src, dst;

	if (!d)
		return;
	src = open_slot(w, s, false);
	if (!src)
		return;
	fresh_name(w, d, (int)rnd(w, 2));
	dst = open_slot(w, d, true);
	if (dst) {
		d->exists = true;
		d->len = 0;
		if (ok(w, (int)tally_copy_range(t, src, 0, dst, 0, s->len),
		       (int)s->len, "copy_range")) {
			memcpy(d->data, s->data, s->len);
			d->len = s->len;
		}
		close_slot(w, dst);
	}
	close_slot(w, src);
}

static void op_rename(struct writer *w, struct slot *s)
{
	char old[32];

	memcpy(old, s->name, sizeof(old));
	fresh_name(w, s, s->ns);
	ok(w, tally_rename(t, nspace[s->ns], old, nspace[s->ns], s->name, 0), 0,
	   "rename");
}

static void op_unlink(struct writer *w, struct slot *s)
{
	if (ok(w, tally_unlink(t, nspace[s->ns], s->name), 0, "unlink"))
		s->exists = false;
}

/* An empty file made, its mode changed and removed: metadata operations
 * with no data, between the others' flushes, links and branches. */
static void op_empty(struct writer *w, struct slot *s)
{
	struct stat in = { .st_mode = S_IFREG | 0600 }, st;
	char name[32];

	snprintf(name, sizeof(name), "e%u-%u", w->id, w->names++);
	if (!ok(w,
		tally_mknod(t, &me, nspace[s->ns], name, S_IFREG | 0644, 0,
			    &st),
		0, "mknod empty"))
		return;
	ok(w, tally_setattr(t, st.st_ino, &in, TALLY_SET_MODE, &st), 0,
	   "chmod empty");
	ok(w, tally_unlink(t, nspace[s->ns], name), 0, "unlink empty");
	tally_forget(t, st.st_ino, 1);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	unsigned i;

	for (i = 0; i < OPS && !w->err; i++) {
		struct slot *s = &w->slot[rnd(w, SLOTS)];

		if (!s->exists) {
			op_write(w, s);
			continue;
		}
		switch (rnd(w, 10)) {
		case 0:
		case 1:
		case 2:
			op_write(w, s);
			break;
		case 3:
		case 4:
			op_link(w, s);
			break;
		case 5:
			op_copy(w, s);
			break;
		case 6:
			op_rename(w, s);
			break;
		case 7:
			op_empty(w, s);
			break;
		default:
			op_unlink(w, s);
			break;
		}
	}
	return NULL;
}

/* readdir callback: collect names */
struct names {
	char (*v)[TALLY_NAME_MAX + 1];
	size_t n, cap;
};

static int add_name(void *ctx, const char *name, const struct stat *st,
		    off_t next)
{
	struct names *nm = ctx;

	(void)st;
	(void)next;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (nm->n == nm->cap) {
		size_t cap = nm->cap ? 2 * nm->cap : 64;
		void *v = realloc(nm->v, cap * sizeof(*nm->v));

		if (!v)
			return -ENOMEM; /* no assertion outside the test thread */
		nm->v = v;
		nm->cap = cap;
	}
	snprintf(nm->v[nm->n++], sizeof(*nm->v), "%s", name);
	return 0;
}

/* Branch main, then delete the branch again, BRANCHES times. */
static void *brancher_main(void *arg)
{
	int *err = arg, rc = 0, i;
	char *report = NULL;

	for (i = 0; i < BRANCHES && !rc; i++) {
		struct names nm = { 0 };
		uint64_t ino;
		struct stat st;
		size_t j;

		/* through the control path and the worker pool */
		rc = ctl_exec(
			t, i % 2 ? "branch other snap\n" : "branch main snap\n",
			i % 2 ? 18 : 17, &report);
		free(report);
		report = NULL;
		if (!rc)
			rc = tally_lookup(t, TALLY_ROOT_INO, "snap", &st);
		if (rc)
			break;
		ino = st.st_ino;
		rc = tally_readdir(t, ino, 0, false, add_name, &nm);
		for (j = 0; j < nm.n && !rc; j++)
			rc = tally_unlink(t, ino, nm.v[j]);
		free(nm.v);
		tally_forget(t, ino, 1);
		if (!rc)
			rc = tally_rmdir(t, TALLY_ROOT_INO, "snap");
		/* a cycle that collects at once, racing the writers */
		if (!rc)
			rc = ctl_exec(t, "gc grace=0\n", 11, &report);
		free(report);
		report = NULL;
	}
	*err = rc;
	return NULL;
}

static void expect_slot(struct slot *s, unsigned id)
{
	static char buf[MAX_LEN + BS];
	struct stat st;

	(void)id; /* only in messages, which nocriterion.h drops */
	cr_assert_eq(tally_lookup(t, nspace[s->ns], s->name, &st), 0,
		     "writer %u: %s", id, s->name);
	cr_assert_eq(st.st_size, (off_t)s->len, "writer %u: size of %s", id,
		     s->name);
	cr_assert_eq(tally_read(t, st.st_ino, buf, sizeof(buf), 0),
		     (ssize_t)s->len, "writer %u: %s", id, s->name);
	cr_assert_eq(memcmp(buf, s->data, s->len), 0,
		     "writer %u: content of %s", id, s->name);
	tally_forget(t, st.st_ino, 1);
}

static void expect_all(void)
{
	unsigned i, j;

	for (i = 0; i < THREADS; i++)
		for (j = 0; j < SLOTS; j++)
			if (writers[i].slot[j].exists)
				expect_slot(&writers[i].slot[j], i);
}

Test(stress, writers_linkers_and_a_brancher)
{
	struct tally_stats st;
	pthread_t br;
	int brc = 0;
	unsigned i;

	for (i = 0; i < THREADS; i++) {
		writers[i].id = i;
		writers[i].seed = 77 + i;
		cr_assert_eq(pthread_create(&writers[i].th, NULL, writer_main,
					    &writers[i]),
			     0);
	}
	cr_assert_eq(pthread_create(&br, NULL, brancher_main, &brc), 0);
	for (i = 0; i < THREADS; i++)
		pthread_join(writers[i].th, NULL);
	pthread_join(br, NULL);
	for (i = 0; i < THREADS; i++)
		cr_assert_eq(writers[i].err, 0, "writer %u: %s", i,
			     writers[i].what);
	cr_assert_eq(brc, 0, "brancher: %d", brc);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	expect_all();
	cr_assert_eq(tally_stats(t, &st), 0);
	cr_assert_eq((uint64_t)tu_count_objects(store), st.objects,
		     "object files = objects in the table");
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
	tu_fsck_clean(store, NULL);
	cr_assert_eq(
		tally_open(store, &(struct tally_opts){ .workers = 2 }, &t), 0);
	expect_all();
}

#ifdef TALLY_NO_CRITERION
int main(void)
{
	setup();
	stress_writers_linkers_and_a_brancher();
	teardown();
	puts("stress: ok");
	return 0;
}
#endif
