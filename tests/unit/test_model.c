/* SPDX-License-Identifier: MIT */
/*
 * A long seeded sequence of overlapping writes, truncates, copies, links
 * and unlinks in two namespaces, checked against an in-memory model of
 * every file, through core/fs/tally.c's API on a real store with 4 KiB
 * blocks. A small pool of block patterns makes content repeat: dedup hits,
 * content that moves between blocks and between files, often inside one
 * flush (a file kept open across several writes), where a flush drops an
 * object's last reference and names the same content again. Every name
 * must read back its model bytes, and the closed store must pass the
 * offline check: no drift, no dangling reference, no orphan.
 *
 * Snapshots of either namespace are taken and removed at random points
 * (docs/design.md, section 13: each removal merges two versions), so
 * that every operation also runs at the end of a chain of versions;
 * each snapshot must keep reading as it was taken (the names, inodes,
 * sizes, link counts and block maps the namespace had then), whatever
 * the namespace and the other snapshots' removals did since. A
 * rollback to a random snapshot makes its namespace what the snapshot
 * holds (the model takes the snapshot's names, sizes, links and bytes),
 * refused while a file of it is open or, without drop-later, while
 * later snapshots of it exist. A diff between each two versions of a
 * namespace (snapshots, the namespace itself) lists what the model says
 * changed between them.
 *
 * A failure names its seed and operation: run that seed's test alone.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/jobs/fsck.h"
#include "core/meta/meta.h"
#include "core/objects/store.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096
#define MAXB 12 /* blocks a file may reach */
#define MAXSIZE (MAXB * BS)
#define NPAT 5 /* block patterns; pattern 0 is zeros */
#define NNSPACE 2
#define NSLOT 4	  /* names per namespace */
#define NFILES 24 /* model inodes: named, or unlinked but open */
#define MAXHELD 3 /* files kept open across operations */
#define OPS 1500
#define MAXSNAP 6 /* snapshots kept at once */
#define CHECK_EVERY 10
#define CTX "seed %u op %u (%s): "
#define CTXARGS seed, op, what

static char *dir;
static char store[4096];
static struct tally *t;

/* The model of one inode. Bytes past size are zero. */
struct mfile {
	uint64_t ino;
	unsigned char *data; /* MAXSIZE bytes */
	size_t size;
	unsigned nlink;
	bool held; /* opened by an earlier operation, not yet released */
	bool live;
	int ns; /* its namespace */
};

static struct mfile files[NFILES];
static int names[NNSPACE][NSLOT]; /* index into files[], or -1 */
static uint64_t nspace[NNSPACE];
static unsigned char pat[NPAT][BS];
static unsigned char scratch[MAXSIZE + BS];
/* A snapshot as it was taken: each name of its namespace's slots. */
struct msnap {
	bool live;
	int ns;
	unsigned seq; /* the order it was taken in */
	char name[16];
	struct {
		uint64_t ino; /* 0: no name in the slot */
		uint64_t size;
		uint32_t nlink;
		size_t nmap;
		struct meta_bref *map;
		unsigned char *data; /* MAXSIZE bytes, for a rollback */
	} slot[NSLOT];
};

static struct msnap snaps[MAXSNAP];
static unsigned snap_seq, snap_merges, snap_dropped, rollbacks;
static unsigned branches_chained; /* of a namespace with snapshots */
static uint64_t rng;
static unsigned seed, op;
static char what[160];
static unsigned opens;

/* Every other open, a file's buffered blocks start a flush early: more
 * flushes in flight while the next operations run. */
static void open_store(void)
{
	struct tally_opts o = {
		.block_size = BS,
		.create = true,
		.workers = 2,
		.inode_dirty_max = opens % 2 ? 6 * BS : 0,
		/* every third open, the intent log's groups wait for a
		 * sync, 256 operations or step()'s random commits */
		.group_ms = opens % 3 == 1 ? 600000 : 0,
	};

	opens++;

	cr_assert_eq(tally_open(store, &o, &t), 0, CTX "open", CTXARGS);
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	opens = 0;
	snprintf(store, sizeof(store), "%s/store", dir);
	open_store();
}

static void snap_free(struct msnap *sn)
{
	for (int s = 0; s < NSLOT; s++) {
		free(sn->slot[s].map);
		sn->slot[s].map = NULL;
		free(sn->slot[s].data);
		sn->slot[s].data = NULL;
	}
	sn->live = false;
}

static void teardown(void)
{
	int i;

	for (i = 0; i < NFILES; i++) {
		free(files[i].data);
		files[i].data = NULL;
	}
	for (i = 0; i < MAXSNAP; i++)
		snap_free(&snaps[i]);
	tu_teardown(&t, &dir);
}

TestSuite(model, .init = setup, .fini = teardown, .timeout = 240);

/* A number in [0, n). */
static unsigned rnd(unsigned n)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (unsigned)((rng * 0x2545f4914f6cdd1dull) >> 32) % n;
}

static void name_of(int slot, char *buf, size_t len)
{
	snprintf(buf, len, "f%d", slot);
}

/* ------------------------------------------------------------------ */
/* checks */

/* Read all of inode @ino and compare with the model of @f, size
 * included. */
static void check_bytes(uint64_t ino, int f)
{
	struct mfile *m = &files[f];
	struct stat st;
	size_t got = 0, i;
	ssize_t n;

	cr_assert_eq(tally_getattr(t, ino, &st), 0, CTX "getattr %llu", CTXARGS,
		     (unsigned long long)ino);
	cr_assert_eq((size_t)st.st_size, m->size,
		     CTX "inode %llu size %lld, model %zu", CTXARGS,
		     (unsigned long long)ino, (long long)st.st_size, m->size);
	do {
		n = tally_read(t, ino, scratch + got, sizeof(scratch) - got,
			       (off_t)got);
		cr_assert_geq(n, 0, CTX "read inode %llu at %zu: %s", CTXARGS,
			      (unsigned long long)ino, got, strerror(-n));
		got += (size_t)n;
	} while (n > 0 && got < sizeof(scratch));
	cr_assert_eq(got, m->size, CTX "inode %llu read %zu bytes, model %zu",
		     CTXARGS, (unsigned long long)ino, got, m->size);
	if (memcmp(scratch, m->data, got) == 0)
		return;
	for (i = 0; scratch[i] == m->data[i]; i++)
		;
	cr_assert_fail(CTX "inode %llu bytes differ from %zu (block %zu)",
		       CTXARGS, (unsigned long long)ino, i, i / BS);
}

static void check_file(int f)
{
	check_bytes(files[f].ino, f);
}

/* Every name reads back its model; empty slots are absent. */
static void check_all(void)
{
	int n, s, f;

	for (n = 0; n < NNSPACE; n++)
		for (s = 0; s < NSLOT; s++) {
			char name[16];
			struct stat st;
			int rc;

			name_of(s, name, sizeof(name));
			rc = tally_lookup(t, nspace[n], name, &st);
			f = names[n][s];
			if (f < 0) {
				cr_assert_eq(rc, -ENOENT,
					     CTX "%d/%s should be absent: %d",
					     CTXARGS, n, name, rc);
				continue;
			}
			cr_assert_eq(rc, 0, CTX "lookup %d/%s: %s", CTXARGS, n,
				     name, strerror(-rc));
			tally_forget(t, st.st_ino, 1);
			cr_assert_eq(st.st_ino, files[f].ino,
				     CTX "%d/%s is inode %llu, model %llu",
				     CTXARGS, n, name,
				     (unsigned long long)st.st_ino,
				     (unsigned long long)files[f].ino);
			cr_assert_eq(st.st_nlink, files[f].nlink,
				     CTX "%d/%s nlink", CTXARGS, n, name);
			check_file(f);
		}
	for (f = 0; f < NFILES; f++)
		if (files[f].live && files[f].nlink == 0)
			check_file(f); /* unlinked, still open */
}

static void fsck_say(void *ctx, const char *line)
{
	char *first = ctx;

	if (!*first)
		snprintf(first, 256, "%s", line);
}

/* The offline check of the closed store. */
static void check_offline(void)
{
	struct fsck_result r;
	struct store *s;
	char first[256] = "";

	cr_assert_eq(store_open(store, false, STORE_DEFAULT_BLOCK_SIZE, &s), 0,
		     CTX "store_open", CTXARGS);
	cr_assert_eq(fsck_run(s, false, fsck_say, first, &r), 0, CTX "fsck_run",
		     CTXARGS);
	store_close(s);
	cr_assert_not(fsck_problems(&r),
		      CTX "fsck: drift %llu/%llu dangling %llu orphans %llu: "
			  "%s",
		      CTXARGS, (unsigned long long)r.drift_under,
		      (unsigned long long)r.drift_over,
		      (unsigned long long)r.dangling,
		      (unsigned long long)r.orphans, first);
}

/* The rows snapshot @sn reads through its version (a store the test
 * holds the lock of): @want, or compared with it. */
static void snap_read(struct meta *m, struct msnap *sn, bool want)
{
	struct meta_ver v;
	int s, rc;

	rc = meta_snapshot_find(m, nspace[sn->ns], sn->name, &v);
	cr_assert_eq(rc, 0, CTX "snapshot %s: %s", CTXARGS, sn->name,
		     strerror(-rc));
	for (s = 0; s < NSLOT; s++) {
		struct meta_bref *map = NULL;
		struct meta_inode md;
		uint64_t ino = 0;
		size_t n = 0, i;
		char name[16];

		name_of(s, name, sizeof(name));
		rc = meta_dentry_lookup(m, &v, nspace[sn->ns], name, &ino);
		cr_assert(rc == 0 || rc == -ENOENT, CTX "%s lookup %s: %d",
			  CTXARGS, sn->name, name, rc);
		if (want && rc) {
			sn->slot[s].ino = 0;
			continue;
		}
		if (!want) {
			cr_assert_eq(ino, sn->slot[s].ino,
				     CTX "snapshot %s: %s is inode %llu, was "
					 "%llu",
				     CTXARGS, sn->name, name,
				     (unsigned long long)ino,
				     (unsigned long long)sn->slot[s].ino);
			if (!ino)
				continue;
		}
		cr_assert_eq(meta_inode_get(m, &v, ino, &md), 0,
			     CTX "snapshot %s: inode of %s", CTXARGS, sn->name,
			     name);
		cr_assert_eq(meta_blocks_load(m, &v, ino, &map, &n), 0,
			     CTX "snapshot %s: blocks of %s", CTXARGS, sn->name,
			     name);
		if (want) {
			sn->slot[s].ino = ino;
			sn->slot[s].size = md.size;
			sn->slot[s].nlink = md.nlink;
			sn->slot[s].map = map;
			sn->slot[s].nmap = n;
			continue;
		}
		cr_assert_eq(md.size, sn->slot[s].size,
			     CTX "snapshot %s: %s size", CTXARGS, sn->name,
			     name);
		cr_assert_eq(md.nlink, sn->slot[s].nlink,
			     CTX "snapshot %s: %s links", CTXARGS, sn->name,
			     name);
		cr_assert_eq(n, sn->slot[s].nmap,
			     CTX "snapshot %s: %s has %zu blocks, had %zu",
			     CTXARGS, sn->name, name, n, sn->slot[s].nmap);
		for (i = 0; i < n; i++)
			cr_assert(map[i].idx == sn->slot[s].map[i].idx &&
					  !strcmp(map[i].name,
						  sn->slot[s].map[i].name),
				  CTX "snapshot %s: %s block %zu changed",
				  CTXARGS, sn->name, name, i);
		free(map);
	}
}

/* A lookup that must succeed, its node id returned. */
static uint64_t must_lookup(uint64_t parent, const char *name)
{
	struct stat st;
	int rc = tally_lookup(t, parent, name, &st);

	cr_assert_eq(rc, 0, CTX "lookup of %s: %s", CTXARGS, name,
		     strerror(-rc));
	return st.st_ino;
}

/* The root of snapshot @sn as the kernel finds it, /.snapshots/NS/NAME
 * (one lookup of it held: tally_forget() it). */
static uint64_t snap_root(const struct msnap *sn)
{
	uint64_t nsdir;

	cr_assert_eq(must_lookup(TALLY_ROOT_INO, TALLY_SNAPDIR_NAME),
		     TALLY_SNAPDIR_INO, CTX "/.snapshots", CTXARGS);
	nsdir = must_lookup(TALLY_SNAPDIR_INO, sn->ns ? "b" : "a");
	cr_assert_eq(tally_view(nsdir), TALLY_VIEW_SNAPDIRS,
		     CTX "/.snapshots/NS", CTXARGS);
	return must_lookup(nsdir, sn->name);
}

/* Snapshot @sn as /.snapshots/NS/NAME shows it: each slot's name, its
 * st_ino (the snapshot's view over the inode's number), size, links and
 * bytes; a write there EROFS. */
static void snap_view(const struct msnap *sn)
{
	uint64_t root = snap_root(sn), view = tally_view(root);
	struct stat st;
	int s, rc;

	cr_assert(view > 0 && view < TALLY_VIEW_SNAPDIRS,
		  CTX "snapshot %s: view %llu", CTXARGS, sn->name,
		  (unsigned long long)view);
	for (s = 0; s < NSLOT; s++) {
		char name[16];
		ssize_t n;

		name_of(s, name, sizeof(name));
		rc = tally_lookup(t, root, name, &st);
		if (!sn->slot[s].ino) {
			cr_assert_eq(rc, -ENOENT, CTX "%s/%s: %d", CTXARGS,
				     sn->name, name, rc);
			continue;
		}
		cr_assert_eq(rc, 0, CTX "%s/%s: %s", CTXARGS, sn->name, name,
			     strerror(-rc));
		cr_assert_eq(st.st_ino,
			     view << TALLY_VIEW_SHIFT | sn->slot[s].ino,
			     CTX "%s/%s: st_ino", CTXARGS, sn->name, name);
		cr_assert_eq((uint64_t)st.st_size, sn->slot[s].size,
			     CTX "%s/%s: size", CTXARGS, sn->name, name);
		cr_assert_eq(st.st_nlink, sn->slot[s].nlink, CTX "%s/%s: links",
			     CTXARGS, sn->name, name);
		cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), -EROFS,
			     CTX "%s/%s: open to write", CTXARGS, sn->name,
			     name);
		cr_assert_eq(tally_open_file(t, st.st_ino, O_RDONLY), 0,
			     CTX "%s/%s: open", CTXARGS, sn->name, name);
		n = tally_read(t, st.st_ino, scratch, sizeof(scratch), 0);
		cr_assert(n == (ssize_t)sn->slot[s].size &&
				  !memcmp(scratch, sn->slot[s].data, (size_t)n),
			  CTX "%s/%s: bytes (%zd read)", CTXARGS, sn->name,
			  name, n);
		cr_assert_eq(tally_write(t, st.st_ino, "x", 1, 0), -EROFS,
			     CTX "%s/%s: write", CTXARGS, sn->name, name);
		cr_assert_eq(tally_release(t, st.st_ino), 0);
		tally_forget(t, st.st_ino, 1);
	}
	cr_assert_eq(tally_unlink(t, root, "f0"), -EROFS, CTX "unlink",
		     CTXARGS);
	tally_forget(t, root, 1);
}

/* Every snapshot reads as it was taken: its rows, and what the kernel
 * would read through its view. */
static void check_snaps(void)
{
	struct meta *m = tally_meta_lock(t);
	int i;

	for (i = 0; i < MAXSNAP; i++)
		if (snaps[i].live)
			snap_read(m, &snaps[i], false);
	tally_meta_unlock(t);
	for (i = 0; i < MAXSNAP; i++)
		if (snaps[i].live)
			snap_view(&snaps[i]);
}

/* A side of a diff as the model has it: each slot's inode and bytes. */
struct mside {
	char spec[32];
	uint64_t ino[NSLOT];
	size_t size[NSLOT];
	const unsigned char *data[NSLOT];
};

static void side_live(int ns, struct mside *x)
{
	snprintf(x->spec, sizeof(x->spec), "%s", ns ? "b" : "a");
	for (int s = 0; s < NSLOT; s++) {
		int f = names[ns][s];

		x->ino[s] = f < 0 ? 0 : files[f].ino;
		x->size[s] = f < 0 ? 0 : files[f].size;
		x->data[s] = f < 0 ? NULL : files[f].data;
	}
}

static void side_snap(const struct msnap *sn, struct mside *x)
{
	snprintf(x->spec, sizeof(x->spec), "%s@%s", sn->ns ? "b" : "a",
		 sn->name);
	for (int s = 0; s < NSLOT; s++) {
		x->ino[s] = sn->slot[s].ino;
		x->size[s] = sn->slot[s].size;
		x->data[s] = sn->slot[s].data;
	}
}

/*
 * tally_diff() from @x to @y says what the model says: a name in @y only
 * "A", in @x only "D", naming another inode or other bytes "M"; the
 * same inode with the same bytes may be "M" (its mtime), as may the root
 * "."; nothing else.
 */
static void check_diff(const struct mside *x, const struct mside *y)
{
	struct tally_change *v;
	char want[NSLOT] = { 0 };
	bool may[NSLOT] = { 0 }, seen[NSLOT] = { 0 };
	size_t n, i;
	int s, rc = tally_diff(t, x->spec, y->spec, &v, &n);

	cr_assert_eq(rc, 0, CTX "diff %s %s: %s", CTXARGS, x->spec, y->spec,
		     strerror(-rc));
	for (s = 0; s < NSLOT; s++) {
		if (!x->ino[s] != !y->ino[s])
			want[s] = x->ino[s] ? 'D' : 'A';
		else if (x->ino[s] != y->ino[s] ||
			 (x->ino[s] &&
			  (x->size[s] != y->size[s] ||
			   memcmp(x->data[s], y->data[s], x->size[s]))))
			want[s] = 'M';
		else
			may[s] = x->ino[s] != 0;
	}
	for (i = 0; i < n; i++) {
		const char *p = v[i].path;

		if (!strcmp(p, ".")) {
			cr_assert_eq(v[i].status, 'M', CTX "diff %s %s: %c .",
				     CTXARGS, x->spec, y->spec, v[i].status);
			continue;
		}
		cr_assert(p[0] == 'f' && p[1] >= '0' && p[1] < '0' + NSLOT &&
				  !p[2],
			  CTX "diff %s %s: a path %s", CTXARGS, x->spec,
			  y->spec, p);
		s = p[1] - '0';
		cr_assert(v[i].status == want[s] ||
				  (!want[s] && may[s] && v[i].status == 'M'),
			  CTX "diff %s %s: %c %s, the model says %c", CTXARGS,
			  x->spec, y->spec, v[i].status, p,
			  want[s] ? want[s] : '-');
		seen[s] = true;
	}
	for (s = 0; s < NSLOT; s++)
		cr_assert(!want[s] || seen[s], CTX "diff %s %s: no %c f%d",
			  CTXARGS, x->spec, y->spec, want[s], s);
	tally_changes_free(v, n);
}

/* Each snapshot against the later ones of its namespace, and (@live)
 * against the namespace itself, both ways. */
static void check_diffs(bool live)
{
	struct mside x, y;
	int i, j;

	for (i = 0; i < MAXSNAP; i++) {
		if (!snaps[i].live)
			continue;
		side_snap(&snaps[i], &x);
		if (live) {
			side_live(snaps[i].ns, &y);
			check_diff(&x, &y);
			check_diff(&y, &x);
		}
		for (j = 0; j < MAXSNAP; j++)
			if (snaps[j].live && snaps[j].ns == snaps[i].ns &&
			    snaps[j].seq > snaps[i].seq) {
				side_snap(&snaps[j], &y);
				check_diff(&x, &y);
			}
	}
}

/* ------------------------------------------------------------------ */
/* the model */

static int new_file(uint64_t ino)
{
	int f;

	for (f = 0; f < NFILES && files[f].live; f++)
		;
	cr_assert_lt(f, NFILES, CTX "model full", CTXARGS);
	if (!files[f].data)
		files[f].data = malloc(MAXSIZE);
	cr_assert_not_null(files[f].data);
	memset(files[f].data, 0, MAXSIZE);
	files[f].ino = ino;
	files[f].size = 0;
	files[f].nlink = 1;
	files[f].held = false;
	files[f].live = true;
	return f;
}

/* The last name and the last handle are gone. */
static void maybe_gone(int f)
{
	if (files[f].nlink == 0 && !files[f].held)
		files[f].live = false;
}

static void model_write(int f, const void *buf, size_t len, size_t off)
{
	struct mfile *m = &files[f];

	cr_assert_leq(off + len, (size_t)MAXSIZE);
	memcpy(m->data + off, buf, len);
	if (off + len > m->size)
		m->size = off + len;
}

/* A random live file (named, or unlinked and open), or -1. */
static int pick_file(void)
{
	int cand[NFILES], n = 0, f;

	for (f = 0; f < NFILES; f++)
		if (files[f].live)
			cand[n++] = f;
	return n ? cand[rnd(n)] : -1;
}

/* A random used (@used) or empty slot: *ns and *slot; false if none. */
static bool pick_slot(bool used, int only_ns, int *ns, int *slot)
{
	int cand[NNSPACE * NSLOT], n = 0, i;

	for (i = 0; i < NNSPACE * NSLOT; i++) {
		if (only_ns >= 0 && i / NSLOT != only_ns)
			continue;
		if ((names[i / NSLOT][i % NSLOT] >= 0) == used)
			cand[n++] = i;
	}
	if (!n)
		return false;
	i = cand[rnd(n)];
	*ns = i / NSLOT;
	*slot = i % NSLOT;
	return true;
}

/* A handle for one operation, unless the file is kept open. */
static void begin(int f)
{
	if (!files[f].held)
		cr_assert_eq(tally_open_file(t, files[f].ino, O_RDWR), 0,
			     CTX "open", CTXARGS);
}

static void end(int f)
{
	int rc;

	if (files[f].held)
		return;
	rc = tally_release(t, files[f].ino);
	cr_assert_eq(rc, 0, CTX "release: %s", CTXARGS, strerror(-rc));
}

/* ------------------------------------------------------------------ */
/* operations */

static void do_write(int f, const void *buf, size_t len, size_t off)
{
	ssize_t n;

	begin(f);
	n = tally_write(t, files[f].ino, buf, len, (off_t)off);
	cr_assert_eq(n, (ssize_t)len, CTX "write: %zd", CTXARGS, n);
	end(f);
	model_write(f, buf, len, off);
}

/* 1 to 3 whole blocks, each a pattern. */
static void op_write_blocks(int f)
{
	size_t b = rnd(MAXB), nb = 1 + rnd(3), k;

	if (b + nb > MAXB)
		nb = MAXB - b;
	for (k = 0; k < nb; k++)
		memcpy(scratch + k * BS, pat[rnd(NPAT)], BS);
	snprintf(what, sizeof(what), "write inode %llu blocks %zu+%zu",
		 (unsigned long long)files[f].ino, b, nb);
	do_write(f, scratch, nb * BS, b * BS);
}

/* Part of a pattern at its place in a block: the block may become the
 * pattern again, or end short with it. */
static void op_write_patch(int f)
{
	size_t b = rnd(MAXB), from = rnd(BS), to = from + 1 + rnd(BS - from);
	const unsigned char *p = pat[rnd(NPAT)];

	snprintf(what, sizeof(what), "patch inode %llu block %zu [%zu,%zu)",
		 (unsigned long long)files[f].ino, b, from, to);
	do_write(f, p + from, to - from, b * BS + from);
}

static void op_write_bytes(int f)
{
	size_t off = rnd(MAXSIZE), len = 1 + rnd(2 * BS + BS / 2);
	unsigned char buf[3 * BS];

	if (off + len > MAXSIZE)
		len = MAXSIZE - off;
	tu_fill(buf, len, rnd(1u << 31));
	snprintf(what, sizeof(what), "write inode %llu [%zu,+%zu)",
		 (unsigned long long)files[f].ino, off, len);
	do_write(f, buf, len, off);
}

/*
 * Swap two blocks of @f (or move one, leaving a pattern behind) under one
 * handle: one flush drops the references of both contents and names them
 * again, at other places.
 */
static void op_swap(int f)
{
	struct mfile *m = &files[f];
	size_t i = rnd(MAXB), j = (i + 1 + rnd(MAXB - 1)) % MAXB;
	unsigned char *a = scratch, *b = scratch + BS;
	bool move = rnd(3) == 0;
	ssize_t n;

	memcpy(a, m->data + i * BS, BS);
	memcpy(b, move ? pat[rnd(NPAT)] : m->data + j * BS, BS);
	snprintf(what, sizeof(what), "%s inode %llu block %zu and %zu",
		 move ? "move" : "swap", (unsigned long long)m->ino, i, j);
	begin(f);
	n = tally_write(t, m->ino, a, BS, (off_t)(j * BS));
	cr_assert_eq(n, BS, CTX "write: %zd", CTXARGS, n);
	model_write(f, a, BS, j * BS);
	n = tally_write(t, m->ino, b, BS, (off_t)(i * BS));
	cr_assert_eq(n, BS, CTX "write: %zd", CTXARGS, n);
	model_write(f, b, BS, i * BS);
	end(f);
}

static void op_truncate(int f)
{
	struct mfile *m = &files[f];
	size_t size = rnd(2) ? rnd(MAXB + 1) * BS : rnd(MAXSIZE + 1);
	struct stat in = { 0 }, st;
	int rc;

	snprintf(what, sizeof(what), "truncate inode %llu %zu -> %zu",
		 (unsigned long long)m->ino, m->size, size);
	in.st_size = (off_t)size;
	begin(f);
	rc = tally_setattr(t, m->ino, &in, TALLY_SET_SIZE, &st);
	cr_assert_eq(rc, 0, CTX "setattr: %s", CTXARGS, strerror(-rc));
	cr_assert_eq((size_t)st.st_size, size, CTX "size after", CTXARGS);
	end(f);
	if (size < m->size)
		memset(m->data + size, 0, m->size - size);
	m->size = size;
}

/*
 * What tally_copy_range() returns: the bytes up to the source's EOF; with
 * both offsets aligned, only whole blocks are shared, so a short last
 * block stops the copy unless it ends both files (then it is shared too);
 * less than a block is copied as bytes.
 */
static size_t copy_expect(int in, size_t off_in, int out, size_t off_out,
			  size_t len)
{
	size_t avail = off_in < files[in].size ? files[in].size - off_in : 0;

	if (len > avail)
		len = avail;
	if (len == 0 || off_in % BS || off_out % BS || len < BS ||
	    len % BS == 0)
		return len;
	if (off_out + len >= files[out].size && off_in + len >= files[in].size)
		return len;
	return len / BS * BS;
}

static void op_copy(int in, int out, bool aligned)
{
	size_t off_in, off_out, len, want;
	ssize_t n;

	if (aligned) {
		off_in = rnd(MAXB) * BS;
		off_out = rnd(MAXB) * BS;
		switch (rnd(3)) {
		case 0:
			len = (1 + rnd(4)) * BS;
			break;
		case 1:
			len = MAXSIZE; /* to the source's EOF */
			break;
		default:
			len = 1 + rnd(4 * BS);
		}
	} else {
		off_in = rnd(MAXSIZE);
		off_out = rnd(MAXSIZE);
		len = 1 + rnd(3 * BS);
	}
	if (off_out + len > MAXSIZE)
		len = MAXSIZE - off_out;
	want = copy_expect(in, off_in, out, off_out, len);
	snprintf(what, sizeof(what),
		 "copy inode %llu [%zu,+%zu) -> inode %llu at %zu",
		 (unsigned long long)files[in].ino, off_in, len,
		 (unsigned long long)files[out].ino, off_out);
	begin(in);
	begin(out);
	n = tally_copy_range(t, files[in].ino, (off_t)off_in, files[out].ino,
			     (off_t)off_out, len);
	cr_assert_eq(n, (ssize_t)want,
		     CTX "copied %zd, model %zu (source size %zu, dest %zu)",
		     CTXARGS, n, want, files[in].size, files[out].size);
	end(out);
	end(in);
	if (want)
		model_write(out, files[in].data + off_in, want, off_out);
}

static void op_create(int ns, int slot)
{
	const struct tally_ctx root = { 0, 0 };
	char name[16];
	struct stat st;
	int rc;

	name_of(slot, name, sizeof(name));
	snprintf(what, sizeof(what), "create %d/%s", ns, name);
	rc = tally_mknod(t, &root, nspace[ns], name, S_IFREG | 0644, 0, &st);
	cr_assert_eq(rc, 0, CTX "mknod: %s", CTXARGS, strerror(-rc));
	tally_forget(t, st.st_ino, 1);
	names[ns][slot] = new_file(st.st_ino);
	files[names[ns][slot]].ns = ns;
}

/* Link the file of @ns/@slot as @nns/@nslot: a hard link in the same
 * namespace, a new inode sharing the objects in another. */
static void op_link(int ns, int slot, int nns, int nslot)
{
	int f = names[ns][slot], g;
	char name[16], nname[16];
	struct stat st;
	int rc;

	name_of(slot, name, sizeof(name));
	name_of(nslot, nname, sizeof(nname));
	snprintf(what, sizeof(what), "link %d/%s (inode %llu) as %d/%s", ns,
		 name, (unsigned long long)files[f].ino, nns, nname);
	rc = tally_link(t, files[f].ino, nspace[nns], nname, &st);
	cr_assert_eq(rc, 0, CTX "link: %s", CTXARGS, strerror(-rc));
	tally_forget(t, st.st_ino, 1);
	if (nns == ns) {
		cr_assert_eq(st.st_ino, files[f].ino, CTX "same inode",
			     CTXARGS);
		files[f].nlink++;
		names[nns][nslot] = f;
		return;
	}
	cr_assert_neq(st.st_ino, files[f].ino, CTX "a new inode", CTXARGS);
	cr_assert_eq((size_t)st.st_size, files[f].size, CTX "size", CTXARGS);
	g = new_file(st.st_ino);
	files[g].ns = nns;
	memcpy(files[g].data, files[f].data, MAXSIZE);
	files[g].size = files[f].size;
	names[nns][nslot] = g;
}

static void op_unlink(int ns, int slot)
{
	int f = names[ns][slot], rc;
	char name[16];

	name_of(slot, name, sizeof(name));
	snprintf(what, sizeof(what), "unlink %d/%s (inode %llu)", ns, name,
		 (unsigned long long)files[f].ino);
	rc = tally_unlink(t, nspace[ns], name);
	cr_assert_eq(rc, 0, CTX "unlink: %s", CTXARGS, strerror(-rc));
	names[ns][slot] = -1;
	files[f].nlink--;
	maybe_gone(f);
}

/* A snapshot of namespace @ns: what it reads now, kept. */
static void op_snapshot(int ns)
{
	const char *nsname = ns ? "b" : "a";
	struct msnap *sn = NULL;
	struct meta *m;
	int64_t ver;
	int i, s, rc;

	for (i = 0; i < MAXSNAP && !sn; i++)
		if (!snaps[i].live)
			sn = &snaps[i];
	if (!sn)
		return;
	snprintf(sn->name, sizeof(sn->name), "s%u", ++snap_seq);
	sn->seq = snap_seq;
	snprintf(what, sizeof(what), "snapshot %s %s", nsname, sn->name);
	sn->ns = ns;
	rc = tally_snapshot(t, nsname, sn->name, &ver);
	cr_assert_eq(rc, 0, CTX "snapshot: %s", CTXARGS, strerror(-rc));
	cr_assert_eq(tally_snapshot(t, nsname, sn->name, &ver), -EEXIST,
		     CTX "the same name again", CTXARGS);
	sn->live = true;
	m = tally_meta_lock(t);
	snap_read(m, sn, true);
	tally_meta_unlock(t);
	/* it holds what the model says the namespace held */
	for (s = 0; s < NSLOT; s++) {
		int f = names[ns][s];

		cr_assert_eq(sn->slot[s].ino, f < 0 ? 0 : files[f].ino,
			     CTX "slot %d", CTXARGS, s);
		if (f < 0)
			continue;
		cr_assert_eq(sn->slot[s].size, files[f].size,
			     CTX "slot %d size", CTXARGS, s);
		cr_assert_eq(sn->slot[s].nlink, files[f].nlink,
			     CTX "slot %d links", CTXARGS, s);
		sn->slot[s].data = malloc(MAXSIZE);
		cr_assert_not_null(sn->slot[s].data);
		memcpy(sn->slot[s].data, files[f].data, MAXSIZE);
	}
}

/* A random live snapshot, or -1. */
static int pick_snap(void)
{
	int i = (int)rnd(MAXSNAP), k;

	for (k = 0; k < MAXSNAP && !snaps[(i + k) % MAXSNAP].live; k++)
		;
	return k == MAXSNAP ? -1 : (i + k) % MAXSNAP;
}

/* The removal of a random snapshot (a merge of two versions). */
static void op_rmsnapshot(void)
{
	int i = pick_snap(), rc;

	if (i < 0)
		return;
	snprintf(what, sizeof(what), "rmsnapshot %s %s",
		 snaps[i].ns ? "b" : "a", snaps[i].name);
	/* its root open, as a file of it would be: EBUSY */
	if (rnd(4) == 0) {
		uint64_t root = snap_root(&snaps[i]);

		cr_assert_eq(tally_open_file(t, root, O_RDONLY), 0);
		rc = tally_rmsnapshot(t, snaps[i].ns ? "b" : "a",
				      snaps[i].name);
		cr_assert_eq(rc, -EBUSY, CTX "with a file of it open: %d",
			     CTXARGS, rc);
		cr_assert_eq(tally_release(t, root), 0);
		tally_forget(t, root, 1);
	}
	rc = tally_rmsnapshot(t, snaps[i].ns ? "b" : "a", snaps[i].name);
	cr_assert_eq(rc, 0, CTX "rmsnapshot: %s", CTXARGS, strerror(-rc));
	snap_free(&snaps[i]);
	snap_merges++;
}

static void op_unhold(int f);

/* The model of namespace @ns after its rollback to @sn: its names, and
 * the inodes they name, as the snapshot had them. */
static void model_rollback(int ns, const struct msnap *sn)
{
	int s, f;

	for (f = 0; f < NFILES; f++)
		if (files[f].live && files[f].ns == ns)
			files[f].live = false;
	for (s = 0; s < NSLOT; s++)
		names[ns][s] = -1;
	for (s = 0; s < NSLOT; s++) {
		if (!sn->slot[s].ino)
			continue;
		for (f = 0; f < NFILES &&
			    !(files[f].live && files[f].ino == sn->slot[s].ino);
		     f++)
			;
		if (f == NFILES) { /* its first name: the inode again */
			f = new_file(sn->slot[s].ino);
			files[f].ns = ns;
			memcpy(files[f].data, sn->slot[s].data, MAXSIZE);
			files[f].size = sn->slot[s].size;
			files[f].nlink = sn->slot[s].nlink;
		}
		names[ns][s] = f;
	}
}

/* A rollback of a random snapshot's namespace to it: refused while a
 * file of it is open, and while later snapshots exist unless they are
 * dropped too. */
static void op_rollback(void)
{
	int i = pick_snap(), ns, k, f, rc;
	bool later = false, busy = false, drop;
	const char *nsname;

	if (i < 0)
		return;
	ns = snaps[i].ns;
	nsname = ns ? "b" : "a";
	for (k = 0; k < MAXSNAP; k++)
		later |= snaps[k].live && snaps[k].ns == ns &&
			 snaps[k].seq > snaps[i].seq;
	for (f = 0; f < NFILES; f++)
		busy |= files[f].live && files[f].ns == ns && files[f].held;
	drop = later && rnd(2);
	snprintf(what, sizeof(what), "rollback %s %s%s", nsname, snaps[i].name,
		 drop ? " drop-later" : "");
	if (busy) {
		rc = tally_rollback(t, nsname, snaps[i].name, drop);
		cr_assert_eq(rc, -EBUSY, CTX "with a file open: %d", CTXARGS,
			     rc);
		for (f = 0; f < NFILES; f++)
			if (files[f].live && files[f].ns == ns && files[f].held)
				op_unhold(f);
		snprintf(what, sizeof(what), "rollback %s %s%s", nsname,
			 snaps[i].name, drop ? " drop-later" : "");
	}
	rc = tally_rollback(t, nsname, snaps[i].name, drop);
	if (later && !drop) {
		cr_assert_eq(rc, -EEXIST, CTX "with later snapshots: %d",
			     CTXARGS, rc);
		return;
	}
	cr_assert_eq(rc, 0, CTX "rollback: %s", CTXARGS, strerror(-rc));
	model_rollback(ns, &snaps[i]);
	for (k = 0; k < MAXSNAP; k++)
		if (snaps[k].live && snaps[k].ns == ns &&
		    snaps[k].seq > snaps[i].seq) {
			snap_free(&snaps[k]);
			snap_dropped++;
		}
	rollbacks++;
	check_all();
	check_snaps();
	check_diffs(true);
}

/* A branch of namespace @ns as c: c holds what the model says @ns
 * holds (a copy of each inode, hard links one copy), also while @ns has
 * snapshots; then c is removed again, its counts falling (the recounts
 * of the checks see them). */
static void op_branch(int ns)
{
	const char *src = ns ? "b" : "a";
	uint64_t inodes, root, got[NSLOT] = { 0 };
	unsigned want = 1, live = 0;
	struct stat st;
	int s, k, rc;

	for (k = 0; k < MAXSNAP; k++)
		live += snaps[k].live && snaps[k].ns == ns;
	snprintf(what, sizeof(what), "branch %s c (%u snapshots)", src, live);
	rc = tally_branch(t, src, "c", &inodes);
	cr_assert_eq(rc, 0, CTX "branch: %s", CTXARGS, strerror(-rc));
	branches_chained += live > 0;
	root = must_lookup(TALLY_ROOT_INO, "c");
	for (s = 0; s < NSLOT; s++) {
		int f = names[ns][s];
		char name[16];

		name_of(s, name, sizeof(name));
		rc = tally_lookup(t, root, name, &st);
		if (f < 0) {
			cr_assert_eq(rc, -ENOENT, CTX "c/%s: %d", CTXARGS, name,
				     rc);
			continue;
		}
		cr_assert_eq(rc, 0, CTX "c/%s: %s", CTXARGS, name,
			     strerror(-rc));
		tally_forget(t, st.st_ino, 1);
		got[s] = st.st_ino;
		cr_assert_neq(st.st_ino, files[f].ino, CTX "c/%s: a copy",
			      CTXARGS, name);
		cr_assert_eq(st.st_nlink, files[f].nlink, CTX "c/%s links",
			     CTXARGS, name);
		/* the names of one inode, one copy */
		for (k = 0; k < s; k++)
			if (names[ns][k] == f)
				break;
		if (k < s)
			cr_assert_eq(got[k], st.st_ino,
				     CTX "c/%s: a hard link's copy", CTXARGS,
				     name);
		else
			want++;
		check_bytes(st.st_ino, f);
	}
	/* one host: in O(1), nothing copied (want counts what a copy
	 * would be) */
	cr_assert_eq(inodes, 0, CTX "%llu inodes copied, model %u", CTXARGS,
		     (unsigned long long)inodes, want);
	/* nothing changed since the branch, either way */
	{
		struct tally_change *v = NULL;
		size_t n = 0;

		rc = tally_diff(t, src, "c", &v, &n);
		cr_assert_eq(rc, 0, CTX "diff %s c: %s", CTXARGS, src,
			     strerror(-rc));
		cr_assert_eq(n, 0,
			     CTX "diff %s c: %zu changes, the first %c %s",
			     CTXARGS, src, n, n ? v[0].status : '-',
			     n ? v[0].path : "");
		tally_changes_free(v, n);
	}
	for (s = 0; s < NSLOT; s++) {
		char name[16];

		if (!got[s])
			continue;
		name_of(s, name, sizeof(name));
		rc = tally_unlink(t, root, name);
		cr_assert_eq(rc, 0, CTX "unlink c/%s: %s", CTXARGS, name,
			     strerror(-rc));
	}
	tally_forget(t, root, 1);
	rc = tally_rmdir(t, TALLY_ROOT_INO, "c");
	cr_assert_eq(rc, 0, CTX "rmdir c: %s", CTXARGS, strerror(-rc));
}

static void op_hold(int f)
{
	snprintf(what, sizeof(what), "keep inode %llu open",
		 (unsigned long long)files[f].ino);
	begin(f);
	files[f].held = true;
}

static void op_unhold(int f)
{
	snprintf(what, sizeof(what), "release inode %llu",
		 (unsigned long long)files[f].ino);
	files[f].held = false;
	end(f);
	maybe_gone(f);
}

static void op_fsync(int f)
{
	int rc;

	snprintf(what, sizeof(what), "fsync inode %llu",
		 (unsigned long long)files[f].ino);
	begin(f);
	rc = tally_fsync(t, files[f].ino, rnd(2));
	cr_assert_eq(rc, 0, CTX "fsync: %s", CTXARGS, strerror(-rc));
	end(f);
}

static void op_read(int f)
{
	struct mfile *m = &files[f];
	size_t off = rnd(MAXSIZE), len = 1 + rnd(3 * BS), want;
	ssize_t n;

	snprintf(what, sizeof(what), "read inode %llu [%zu,+%zu)",
		 (unsigned long long)m->ino, off, len);
	want = off < m->size ? m->size - off : 0;
	if (want > len)
		want = len;
	begin(f);
	n = tally_read(t, m->ino, scratch, len, (off_t)off);
	end(f);
	cr_assert_eq(n, (ssize_t)want, CTX "read %zd, model %zu: %s", CTXARGS,
		     n, want, n < 0 ? strerror((int)-n) : "short");
	cr_assert_eq(memcmp(scratch, m->data + off, want), 0,
		     CTX "bytes differ", CTXARGS);
}

static void release_held(void)
{
	int f;

	for (f = 0; f < NFILES; f++)
		if (files[f].live && files[f].held)
			op_unhold(f);
}

static void op_reopen(bool check)
{
	int rc;

	release_held();
	snprintf(what, sizeof(what), "reopen the store");
	rc = tally_close(t);
	t = NULL;
	cr_assert_eq(rc, 0, CTX "close: %s", CTXARGS, strerror(-rc));
	if (check)
		check_offline();
	open_store();
}

static unsigned nheld(void)
{
	unsigned n = 0;
	int f;

	for (f = 0; f < NFILES; f++)
		n += files[f].live && files[f].held;
	return n;
}

/* A second live file other than @f, or -1. */
static int pick_other(int f)
{
	int i, g;

	for (i = 0; i < 8; i++) {
		g = pick_file();
		if (g != f)
			return g;
	}
	return -1;
}

/* One random operation. */
static void step(void)
{
	unsigned r = rnd(100);
	int f = pick_file(), g, ns, slot, nns, nslot;

	if (rnd(100) < 5) { /* the intent log's group commits here */
		snprintf(what, sizeof(what), "group commit");
		g = tally_group_commit(t);
		cr_assert_eq(g, 0, CTX "group commit: %s", CTXARGS,
			     strerror(-g));
	}

	if (rnd(1000) < 15) {
		op_snapshot((int)rnd(NNSPACE));
		return;
	}
	if (rnd(1000) < 10) {
		op_rmsnapshot();
		return;
	}
	if (rnd(1000) < 8) {
		op_rollback();
		return;
	}
	if (rnd(1000) < 6) {
		op_branch((int)rnd(NNSPACE));
		return;
	}
	if (f < 0 || (r >= 68 && r < 72)) {
		if (pick_slot(false, -1, &ns, &slot)) {
			op_create(ns, slot);
			return;
		}
		r = 0; /* every name taken: a write instead */
	}
	if (r < 15) {
		op_write_blocks(f);
	} else if (r < 22) {
		op_swap(f);
	} else if (r < 30) {
		op_write_patch(f);
	} else if (r < 40) {
		op_write_bytes(f);
	} else if (r < 48) {
		op_truncate(f);
	} else if (r < 62) {
		g = pick_other(f);
		if (g < 0)
			op_write_blocks(f);
		else
			op_copy(f, g, r < 57);
	} else if (r < 68) {
		/* a link: in the same namespace (8 of 10) or across */
		if (!pick_slot(true, -1, &ns, &slot)) {
			op_write_blocks(f);
			return;
		}
		nns = rnd(10) < 8 ? ns : 1 - ns;
		if (pick_slot(false, nns, &nns, &nslot))
			op_link(ns, slot, nns, nslot);
		else
			op_unlink(ns, slot);
	} else if (r < 78) {
		if (pick_slot(true, -1, &ns, &slot))
			op_unlink(ns, slot);
	} else if (r < 84) {
		if (!files[f].held && nheld() < MAXHELD)
			op_hold(f);
		else
			op_write_blocks(f);
	} else if (r < 89) {
		for (g = 0; g < NFILES; g++)
			if (files[g].live && files[g].held)
				break;
		if (g < NFILES)
			op_unhold(g);
		else
			op_write_patch(f);
	} else if (r < 93) {
		op_fsync(f);
	} else if (r < 97) {
		op_read(f);
	} else if (r < 99) {
		snprintf(what, sizeof(what), "drain");
		cr_assert_eq(tally_drain(t, NULL, 0), 0, CTX "drain", CTXARGS);
	} else {
		op_reopen(rnd(2));
	}
}

static void run(unsigned s)
{
	int n, i;

	seed = s;
	op = 0;
	rng = s * 0x9e3779b97f4a7c15ull + 1;
	snprintf(what, sizeof(what), "start");
	memset(files, 0, sizeof(files));
	memset(names, -1, sizeof(names));
	for (i = 0; i < MAXSNAP; i++)
		snap_free(&snaps[i]);
	snap_seq = snap_merges = snap_dropped = rollbacks = 0;
	branches_chained = 0;
	memset(pat[0], 0, BS);
	for (i = 1; i < NPAT; i++)
		tu_fill(pat[i], BS, 1000 + (unsigned)i);
	for (n = 0; n < NNSPACE; n++)
		nspace[n] = tu_mkns(t, n ? "b" : "a");
	for (op = 1; op <= OPS; op++) {
		snprintf(what, sizeof(what), "nothing to do");
		step();
		if (op % CHECK_EVERY == 0) {
			char last[sizeof(what)];

			snprintf(last, sizeof(last), "%s", what);
			snprintf(what, sizeof(what), "check after %.120s",
				 last);
			check_all();
			check_snaps();
			check_diffs(op % 50 == 0);
		}
	}
	op = OPS;
	snprintf(what, sizeof(what), "end");
	release_held();
	cr_assert_eq(tally_drain(t, NULL, 0), 0, CTX "drain", CTXARGS);
	check_all();
	op_reopen(true);
	snprintf(what, sizeof(what), "end, reopened");
	check_all();
	check_snaps();
	/* every snapshot removed: the namespaces as they are */
	for (i = 0; i < MAXSNAP; i++)
		op_rmsnapshot();
	check_all();
	op_reopen(true);
	snprintf(what, sizeof(what), "end, no snapshot");
	check_all();
	/* the sequence took and merged versions, not a few */
	cr_assert_geq(snap_seq, 10, CTX "%u snapshots", CTXARGS, snap_seq);
	cr_assert_eq(snap_merges + snap_dropped, snap_seq,
		     CTX "%u merged and %u dropped of %u", CTXARGS, snap_merges,
		     snap_dropped, snap_seq);
	/* and rolled back to some */
	cr_assert_geq(rollbacks, 2, CTX "%u rollbacks", CTXARGS, rollbacks);
	/* and branched namespaces that had snapshots */
	cr_assert_geq(branches_chained, 2, CTX "%u branches with snapshots",
		      CTXARGS, branches_chained);
}

Test(model, seed_1)
{
	run(1);
}

Test(model, seed_2)
{
	run(2);
}

Test(model, seed_3)
{
	run(3);
}
