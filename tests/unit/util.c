/* SPDX-License-Identifier: MIT */
/*
 * Test helpers: temp directories, recursive removal, object counting.
 */
#include "tests/unit/util.h"

#ifdef TALLY_NO_CRITERION
#include "tests/unit/nocriterion.h"
#else
#include <criterion/criterion.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/jobs/fsck.h"
#include "core/meta/meta.h"
#include "core/objects/store.h"
#include "core/fs/tally.h"

char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&p, "%s/tally-unit.XXXXXX", base) < 0)
		return NULL;
	return mkdtemp(p);
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void tu_rmrf(const char *path)
{
	if (path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void tu_teardown(struct tally **t, char **dir)
{
	if (*t)
		tally_close(*t);
	*t = NULL;
	tu_rmrf(*dir);
	free(*dir);
	*dir = NULL;
}

int tu_count_objects(const char *store)
{
	char path[4096];
	int i, n = 0;

	for (i = 0; i < 256; i++) {
		struct dirent *de;
		DIR *d;

		snprintf(path, sizeof(path), "%s/shards/0/%02x", store, i);
		d = opendir(path);
		if (!d)
			continue;
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				n++;
		closedir(d);
	}
	return n;
}

void tu_fill(void *buf, size_t len, unsigned seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)x;
	}
}

void tu_fsck_clean(const char *store, struct fsck_result *out)
{
	struct fsck_result r;
	struct store *s;

	cr_assert_eq(store_open(store, false, STORE_DEFAULT_BLOCK_SIZE, &s), 0);
	cr_assert_eq(fsck_run(s, false, NULL, NULL, &r), 0);
	store_close(s);
	cr_assert_not(fsck_problems(&r),
		      "drift %llu/%llu dangling %llu orphans %llu",
		      (unsigned long long)r.drift_under,
		      (unsigned long long)r.drift_over,
		      (unsigned long long)r.dangling,
		      (unsigned long long)r.orphans);
	if (out)
		*out = r;
}

uint64_t tu_mkns(struct tally *t, const char *name)
{
	const struct tally_ctx root = { 0, 0 };
	struct stat st;

	cr_assert_eq(tally_mkdir(t, &root, TALLY_ROOT_INO, name, 0755, &st), 0);
	return st.st_ino;
}

uint64_t tu_newfile(struct tally *t, uint64_t parent, const char *name)
{
	const struct tally_ctx root = { 0, 0 };
	struct stat st;

	cr_assert_eq(
		tally_mknod(t, &root, parent, name, S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(tally_open_file(t, st.st_ino, O_RDWR), 0);
	return st.st_ino;
}

struct find {
	const char *name;
	int64_t count;
};

static int find_one(void *arg, const struct meta_check *c)
{
	struct find *f = arg;

	if (!strcmp(c->name, f->name))
		f->count = c->stored;
	return 0;
}

int64_t tu_stored_count(struct meta *m, const char *name)
{
	struct find f = { name, -1 };

	cr_assert_eq(meta_check_counts(m, find_one, &f), 0);
	return f.count;
}

/* tu_readdir_check(): what the listing saw. */
struct listing {
	unsigned n, stop_after;
	int64_t last;
	unsigned bad;
};

static int listed(void *ctx, int64_t cookie, const char *name,
		  const struct meta_inode *md)
{
	struct listing *l = ctx;
	unsigned i;

	/* e<i> is inode 1000 + i, of size 3 * i and mode 0600 | i % 8 */
	if (sscanf(name, "e%u", &i) != 1 || md->ino != 1000 + i ||
	    md->size != 3ull * i || md->mode != (S_IFREG | 0600 | (i % 8)) ||
	    md->nlink != 1 || md->mtime.tv_sec != (time_t)i ||
	    md->mtime.tv_nsec != 7 || cookie <= l->last)
		l->bad++;
	l->last = cookie;
	l->n++;
	return l->n == l->stop_after ? 7 : 0;
}

void tu_readdir_check(struct meta *m, uint64_t dir, unsigned n)
{
	struct listing l = { 0 };
	int64_t mid = 0;
	unsigned i;

	cr_assert_eq(meta_begin(m), 0);
	/* @dir, a namespace's root (the root's entries name namespaces) */
	{
		struct meta_inode md = { 0 };

		md.ino = dir;
		md.nspace = dir;
		md.mode = S_IFDIR | 0755;
		md.nlink = 2;
		cr_assert_eq(meta_inode_put(m, NULL, &md), 0);
		cr_assert_eq(meta_dentry_insert(m, &META_VER_ROOT, 1, "d", dir),
			     0);
	}
	for (i = 0; i < n; i++) {
		struct meta_inode md = { 0 };
		char name[32];

		md.ino = 1000 + i;
		md.nspace = dir;
		md.mode = S_IFREG | 0600 | (i % 8);
		md.nlink = 1;
		md.size = 3ull * i;
		md.mtime.tv_sec = (time_t)i;
		md.mtime.tv_nsec = 7;
		snprintf(name, sizeof(name), "e%u", i);
		cr_assert_eq(meta_inode_put(m, NULL, &md), 0);
		cr_assert_eq(meta_dentry_insert(m, NULL, dir, name, md.ino), 0);
		if (i % 50 == 0) /* an entry without an inode row: skipped */
			cr_assert_eq(meta_dentry_insert(m, NULL, dir, name + 1,
							900000 + i),
				     0);
	}
	cr_assert_eq(meta_commit(m), 0);
	/* whole, in cookie order, each entry once with its own row */
	cr_assert_eq(meta_readdir(m, NULL, dir, 0, listed, &l), 0);
	cr_assert_eq(l.n, n, "listed %u of %u entries", l.n, n);
	cr_assert_eq(l.bad, 0, "%u entries with wrong attributes", l.bad);
	/* stopped by the callback: its value, nothing listed after */
	memset(&l, 0, sizeof(l));
	l.stop_after = n / 3;
	cr_assert_eq(meta_readdir(m, NULL, dir, 0, listed, &l), 7);
	cr_assert_eq(l.n, n / 3);
	mid = l.last;
	/* from there on: the rest, none twice */
	memset(&l, 0, sizeof(l));
	l.last = mid;
	cr_assert_eq(meta_readdir(m, NULL, dir, mid, listed, &l), 0);
	cr_assert_eq(l.n, n - n / 3);
	cr_assert_eq(l.bad, 0);
	/* a lookup reads the same row with its entry */
	memset(&l, 0, sizeof(l));
	l.last = -1;
	for (i = 0; i < n; i += 7) {
		struct meta_inode md;
		char name[32];

		snprintf(name, sizeof(name), "e%u", i);
		cr_assert_eq(meta_dentry_lookup_row(m, NULL, dir, name, &md),
			     0);
		listed(&l, l.last + 1, name, &md);
		if (i % 50 == 0) /* the entry without a row */
			cr_assert_eq(meta_dentry_lookup_row(m, NULL, dir,
							    name + 1, &md),
				     -ENOENT);
	}
	cr_assert_eq(l.bad, 0, "%u lookups with wrong rows", l.bad);
	{
		struct meta_inode md;

		cr_assert_eq(meta_dentry_lookup_row(m, NULL, dir, "none", &md),
			     -ENOENT);
	}
}

void tu_version_check(struct meta *m)
{
	const struct meta_ver in = { .id = 40 }, other = { .id = 41 };
	struct meta_inode md = {
		.ino = 50, .nspace = 40, .mode = S_IFREG | 0644, .nlink = 1
	};
	struct meta_inode dmd = {
		.ino = 40, .nspace = 40, .mode = S_IFDIR | 0755, .nlink = 2
	};
	struct meta_inode got;
	struct meta_bref *map = NULL;
	size_t n = 0, len = 0;
	uint64_t ino = 0;
	uint32_t nlink = 0;
	void *val = NULL;
	int rc;

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, &in, &dmd), 0);
	cr_assert_eq(meta_inode_put(m, &in, &md), 0);
	cr_assert_eq(meta_dentry_insert(m, &in, 40, "f", 50), 0);
	cr_assert_eq(meta_block_set(m, &in, 50, 0,
				    "0123456789abcdef0123456789abcdef", 0, 10,
				    NULL),
		     0);
	cr_assert_eq(meta_xattr_set(m, &in, 50, "user.x", "v", 1, 0), 0);
	cr_assert_eq(meta_commit(m), 0);

	cr_assert_eq(meta_inode_get(m, &in, 50, &got), 0);
	cr_assert_eq(meta_inode_get(m, NULL, 50, &got), 0);
	cr_assert_eq(meta_inode_get(m, &other, 50, &got), -ENOENT);
	cr_assert_eq(meta_dentry_lookup(m, &in, 40, "f", &ino), 0);
	cr_assert_eq(ino, 50);
	cr_assert_eq(meta_dentry_lookup(m, &other, 40, "f", &ino), -ENOENT);
	cr_assert_eq(meta_dentry_lookup_row(m, &other, 40, "f", &got), -ENOENT);
	cr_assert_eq(meta_dir_empty(m, &in, 40), 0);
	cr_assert_eq(meta_dir_empty(m, &other, 40), 1);
	cr_assert_eq(meta_blocks_load(m, &in, 50, &map, &n), 0);
	cr_assert_eq(n, 1);
	free(map);
	if (meta_shared(m)) {
		/* a shared store's map is read with the inode's row: none
		 * there */
		cr_assert_eq(meta_blocks_load(m, &other, 50, &map, &n),
			     -ENOENT);
	} else {
		cr_assert_eq(meta_blocks_load(m, &other, 50, &map, &n), 0);
		cr_assert_eq(n, 0);
		free(map);
	}
	cr_assert_eq(meta_xattr_get(m, &other, 50, "user.x", &val, &len),
		     -ENODATA);
	cr_assert_eq(meta_xattr_get(m, &in, 50, "user.x", &val, &len), 0);
	free(val);

	/* through another version: nothing changed */
	cr_assert_eq(meta_begin(m), 0);
	md.nlink = 2;
	if (meta_shared(m))
		cr_assert_eq(meta_inode_update_commit(m, &other, &md, 1,
						      META_F_ROW, &nlink),
			     -ENOENT);
	else
		cr_assert_eq(meta_inode_update(m, &other, &md, 1, META_F_ROW,
					       &nlink),
			     -ENOENT);
	meta_rollback(m);
	cr_assert_eq(meta_begin(m), 0);
	if (meta_shared(m)) {
		cr_assert_eq(meta_dentry_delete(m, &other, 40, "f", 50), 0);
		cr_assert_eq(meta_commit(m), -ENOENT); /* it removed nothing */
		meta_rollback(m);
	} else {
		cr_assert_eq(meta_xattr_remove(m, &other, 50, "user.x"),
			     -ENODATA);
		cr_assert_eq(meta_blocks_drop(m, &other, 50, 0), 0);
		cr_assert_eq(meta_dentry_delete(m, &other, 40, "f", 50), 0);
		cr_assert_eq(meta_inode_delete(m, &other, 50), 0);
		cr_assert_eq(meta_commit(m), 0);
	}
	cr_assert_eq(meta_inode_get(m, &in, 50, &got), 0);
	cr_assert_eq(got.nlink, 1);
	cr_assert_eq(meta_dentry_lookup(m, &in, 40, "f", &ino), 0);
	cr_assert_eq(meta_blocks_load(m, &in, 50, &map, &n), 0);
	cr_assert_eq(n, 1);
	free(map);
	cr_assert_eq(meta_xattr_get(m, &in, 50, "user.x", &val, &len), 0);
	free(val);

	/* format 3: the key of an entry, an extent or an xattr has a row
	 * in each version that writes it (an inode's: format 4) */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_insert(m, &other, 40, "f", 51), 0);
	cr_assert_eq(meta_block_set(m, &other, 50, 0,
				    "fedcba9876543210fedcba9876543210", 0, 10,
				    NULL),
		     0);
	cr_assert_eq(meta_xattr_set(m, &other, 50, "user.x", "w", 1, 0), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_dentry_lookup(m, &in, 40, "f", &ino), 0);
	cr_assert_eq(ino, 50);
	cr_assert_eq(meta_dentry_lookup(m, &other, 40, "f", &ino), 0);
	cr_assert_eq(ino, 51);
	cr_assert_eq(meta_begin(m), 0);
	rc = meta_dentry_insert(m, &other, 40, "f", 52);
	if (!rc)
		rc = meta_commit(m);
	cr_assert_eq(rc, -EEXIST, "a name taken twice in a version: %d", rc);
	meta_rollback(m);
	for (int i = 0; i < 2; i++) {
		const struct meta_ver *v = i ? &other : &in;

		/* a shared store's map is read with the inode's row, which
		 * 41 lacks */
		if (!i || !meta_shared(m)) {
			cr_assert_eq(meta_blocks_load(m, v, 50, &map, &n), 0);
			cr_assert_eq(n, 1);
			cr_assert_eq(map[0].name[0], i ? 'f' : '0');
			free(map);
		}
		cr_assert_eq(meta_xattr_get(m, v, 50, "user.x", &val, &len), 0);
		cr_assert_eq(((char *)val)[0], i ? 'w' : 'v');
		free(val);
	}
}

/* The size of inode @ino read through @v, or -errno. */
static int64_t size_in(struct meta *m, const struct meta_ver *v, uint64_t ino)
{
	struct meta_inode got;
	int rc = meta_inode_get(m, v, ino, &got);

	if (rc)
		return rc;
	cr_assert_eq(got.ino, ino, "the row of another inode");
	return (int64_t)got.size;
}

/* The change of @md's size to @size in @v, committed: 0 or -errno. */
static int resize(struct meta *m, const struct meta_ver *v,
		  struct meta_inode *md, uint64_t size)
{
	uint32_t nlink = 0;
	int rc;

	md->size = size;
	cr_assert_eq(meta_begin(m), 0);
	if (meta_shared(m)) {
		rc = meta_inode_update_commit(m, v, md, 0,
					      META_F_SIZE | META_F_ROW, &nlink);
		if (rc == 1)
			rc = -ENOENT;
	} else {
		rc = meta_inode_update(m, v, md, 0, META_F_SIZE | META_F_ROW,
				       &nlink);
		if (!rc)
			rc = meta_commit(m);
	}
	if (rc)
		meta_rollback(m);
	else
		cr_assert_eq(nlink, md->nlink);
	return rc;
}

/* The lists the chain checks compare: words, each followed by a space,
 * in a buffer of WORDS bytes. */
#define WORDS 256

static void add_word(char *out, const char *word)
{
	size_t n = strlen(out);

	cr_assert_lt(snprintf(out + n, WORDS - n, "%s ", word),
		     (int)(WORDS - n));
}

/* The names @v shows in directory @dir, in cookie order. */
static int name_join(void *ctx, int64_t cookie, const char *name,
		     const struct meta_inode *md)
{
	(void)cookie;
	(void)md;
	add_word(ctx, name);
	return 0;
}

static const char *names_in(struct meta *m, const struct meta_ver *v,
			    uint64_t dir, char *out)
{
	out[0] = '\0';
	cr_assert_eq(meta_readdir(m, v, dir, 0, name_join, out), 0);
	return out;
}

/* The inode @v's entry @name in @dir names, or -errno. */
static int64_t entry_in(struct meta *m, const struct meta_ver *v, uint64_t dir,
			const char *name)
{
	uint64_t ino = 0;
	int rc = meta_dentry_lookup(m, v, dir, name, &ino);

	return rc ? rc : (int64_t)ino;
}

/* The first byte of xattr @name of @ino through @v, or -errno. */
static int xattr_in(struct meta *m, const struct meta_ver *v, uint64_t ino,
		    const char *name)
{
	void *val = NULL;
	size_t len = 0;
	int rc = meta_xattr_get(m, v, ino, name, &val, &len), c;

	if (rc)
		return rc;
	c = len ? ((char *)val)[0] : 0;
	free(val);
	return c;
}

/* The xattr names @v shows on @ino, each followed by a space. */
static const char *xattrs_in(struct meta *m, const struct meta_ver *v,
			     uint64_t ino, char *out)
{
	char *list = NULL;
	size_t len = 0;

	out[0] = '\0';
	cr_assert_eq(meta_xattr_list(m, v, ino, &list, &len), 0);
	for (size_t i = 0; i < len; i += strlen(list + i) + 1) {
		add_word(out, list + i);
	}
	free(list);
	return out;
}

/* A call in a transaction of its own (ONE_OP): its answer, committed if
 * 0, rolled back if not. */
static void one_op_begin(struct meta *m)
{
	cr_assert_eq(meta_begin(m), 0);
}

static int one_op_end(struct meta *m, int rc)
{
	if (!rc)
		rc = meta_commit(m);
	if (rc)
		meta_rollback(m);
	return rc;
}
#define ONE_OP(m, call) one_op_end(m, (one_op_begin(m), (call)))

/* Entries and xattrs through a chain (the second half of
 * tu_chain_check()): namespace 80, inodes 90 and 91. */
static void chain_names_check(struct meta *m)
{
	const struct meta_ver root = { .id = 80 };
	struct meta_ver leaf = { .depth = 2 };
	struct meta_inode dmd = {
		.ino = 80, .nspace = 80, .mode = S_IFDIR | 0755, .nlink = 2
	};
	struct meta_inode f = { .ino = 90,
				.nspace = 80,
				.mode = S_IFREG | 0644,
				.nlink = 1,
				.size = 7 };
	struct meta_inode got;
	char buf[WORDS];

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, &root, &dmd), 0);
	cr_assert_eq(meta_inode_put(m, &root, &f), 0);
	f.ino = 91;
	cr_assert_eq(meta_inode_put(m, &root, &f), 0);
	cr_assert_eq(meta_dentry_insert(m, &root, 80, "a", 90), 0);
	cr_assert_eq(meta_dentry_insert(m, &root, 80, "b", 91), 0);
	cr_assert_eq(meta_xattr_set(m, &root, 90, "user.x", "v", 1, 0), 0);
	cr_assert_eq(meta_xattr_set(m, &root, 90, "user.y", "w", 1, 0), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(ONE_OP(m, meta_version_child(m, 80, &leaf.id)), 0);

	/* the frozen version's entries, through the chain */
	cr_assert_eq(entry_in(m, &leaf, 80, "a"), 90);
	cr_assert_str_eq(names_in(m, &leaf, 80, buf), "a b ");
	cr_assert_eq(meta_dir_empty(m, &leaf, 80), 0);
	cr_assert_eq(meta_dentry_lookup_row(m, &leaf, 80, "b", &got), 0);
	cr_assert_eq(got.ino, 91);
	cr_assert_eq(got.size, 7);
	/* a name an ancestor shows is taken */
	cr_assert_eq(ONE_OP(m, meta_dentry_insert(m, &leaf, 80, "a", 91)),
		     -EEXIST);
	/* removed in the leaf: a whiteout, the frozen entry stays */
	cr_assert_eq(ONE_OP(m, meta_dentry_delete(m, &leaf, 80, "a", 91)),
		     -ENOENT, "a removal of a name that names another inode");
	cr_assert_eq(ONE_OP(m, meta_dentry_delete(m, &leaf, 80, "a", 90)), 0);
	cr_assert_eq(entry_in(m, &leaf, 80, "a"), -ENOENT);
	cr_assert_eq(meta_dentry_lookup_row(m, &leaf, 80, "a", &got), -ENOENT);
	cr_assert_eq(entry_in(m, &root, 80, "a"), 90);
	cr_assert_str_eq(names_in(m, &leaf, 80, buf), "b ");
	cr_assert_str_eq(names_in(m, &root, 80, buf), "a b ");
	/* made again over the leaf's whiteout */
	cr_assert_eq(ONE_OP(m, meta_dentry_insert(m, &leaf, 80, "a", 91)), 0);
	cr_assert_eq(entry_in(m, &leaf, 80, "a"), 91);
	cr_assert_eq(entry_in(m, &root, 80, "a"), 90);
	/* pointed at another inode: the entry copied up */
	cr_assert_eq(ONE_OP(m, meta_dentry_set_ino(m, &leaf, 80, "b", 90, 90)),
		     -ENOENT, "b names 91, not 90");
	cr_assert_eq(ONE_OP(m, meta_dentry_set_ino(m, &leaf, 80, "b", 91, 90)),
		     0);
	cr_assert_eq(entry_in(m, &leaf, 80, "b"), 90);
	cr_assert_eq(entry_in(m, &root, 80, "b"), 91);
	/* moved: gone from its old name in the leaf alone */
	cr_assert_eq(
		ONE_OP(m, meta_dentry_move(m, &leaf, 80, "b", 90, 80, "c")), 0);
	cr_assert_eq(entry_in(m, &leaf, 80, "b"), -ENOENT);
	cr_assert_eq(entry_in(m, &leaf, 80, "c"), 90);
	cr_assert_eq(entry_in(m, &root, 80, "c"), -ENOENT);
	cr_assert_str_eq(names_in(m, &leaf, 80, buf), "a c ");
	cr_assert_str_eq(names_in(m, &root, 80, buf), "a b ");
	/* every name gone from the leaf: empty there, not above */
	cr_assert_eq(ONE_OP(m, meta_dentry_delete(m, &leaf, 80, "a", 91)), 0);
	cr_assert_eq(ONE_OP(m, meta_dentry_delete(m, &leaf, 80, "c", 90)), 0);
	cr_assert_eq(meta_dir_empty(m, &leaf, 80), 1);
	cr_assert_eq(meta_dir_empty(m, &root, 80), 0);
	cr_assert_str_eq(names_in(m, &leaf, 80, buf), "");

	/* xattrs: the frozen version's, through the chain */
	cr_assert_eq(xattr_in(m, &leaf, 90, "user.x"), 'v');
	cr_assert_eq(ONE_OP(m, meta_xattr_set(m, &leaf, 90, "user.x", "z", 1,
					      XATTR_CREATE)),
		     -EEXIST);
	cr_assert_eq(ONE_OP(m, meta_xattr_set(m, &leaf, 90, "user.q", "z", 1,
					      XATTR_REPLACE)),
		     -ENODATA);
	cr_assert_eq(ONE_OP(m, meta_xattr_set(m, &leaf, 90, "user.x", "z", 1,
					      XATTR_REPLACE)),
		     0);
	cr_assert_eq(xattr_in(m, &leaf, 90, "user.x"), 'z');
	cr_assert_eq(xattr_in(m, &root, 90, "user.x"), 'v');
	cr_assert_eq(ONE_OP(m, meta_xattr_remove(m, &leaf, 90, "user.y")), 0);
	cr_assert_eq(xattr_in(m, &leaf, 90, "user.y"), -ENODATA);
	cr_assert_eq(xattr_in(m, &root, 90, "user.y"), 'w');
	cr_assert_eq(ONE_OP(m, meta_xattr_remove(m, &leaf, 90, "user.y")),
		     -ENODATA);
	cr_assert_str_eq(xattrs_in(m, &leaf, 90, buf), "user.x ");
	cr_assert_str_eq(xattrs_in(m, &root, 90, buf), "user.x user.y ");
	/* made again over the leaf's whiteout */
	cr_assert_eq(ONE_OP(m, meta_xattr_set(m, &leaf, 90, "user.y", "n", 1,
					      XATTR_CREATE)),
		     0);
	cr_assert_eq(xattr_in(m, &leaf, 90, "user.y"), 'n');
	cr_assert_str_eq(xattrs_in(m, &leaf, 90, buf), "user.x user.y ");
}

/* The blocks @v shows of @ino, as "idx:first letter of the object's
 * name" each followed by a space. */
static const char *blocks_in(struct meta *m, const struct meta_ver *v,
			     uint64_t ino, char *out)
{
	struct meta_bref *map = NULL;
	size_t n = 0;

	out[0] = '\0';
	cr_assert_eq(meta_blocks_load(m, v, ino, &map, &n), 0);
	for (size_t i = 0; i < n; i++) {
		char w[32];

		snprintf(w, sizeof(w), "%" PRIu64 ":%c", map[i].idx,
			 map[i].name[0]);
		add_word(out, w);
	}
	free(map);
	return out;
}

/* Every object's count is the rows that name it, in any version, and no
 * row names an object that is not there (meta_check_counts()). */
static int count_true(void *ctx, const struct meta_check *c)
{
	(void)ctx;
	cr_assert_neq(c->id, 0, "%" PRId64 " reference(s) to no object",
		      c->truth);
	cr_assert_eq(c->stored, c->truth,
		     "object %s: count %" PRId64 ", %" PRId64 " reference(s)",
		     c->name, c->stored, c->truth);
	return 0;
}

/* Block @idx of @ino in @v set to object @c (32 of it), or dropped (0). */
static int block_to(struct meta *m, const struct meta_ver *v, uint64_t ino,
		    uint64_t idx, char c)
{
	char name[33];

	memset(name, c, 32);
	name[32] = '\0';
	return meta_block_set(m, v, ino, idx, c ? name : NULL, 0, 10, NULL);
}

/* The block map through a chain (the last part of tu_chain_check()):
 * namespace 100, inode 110. */
static void chain_blocks_check(struct meta *m)
{
	const struct meta_ver root = { .id = 100 };
	struct meta_ver leaf = { .depth = 2 };
	struct meta_inode dmd = {
		.ino = 100, .nspace = 100, .mode = S_IFDIR | 0755, .nlink = 2
	};
	struct meta_inode f = { .ino = 110,
				.nspace = 100,
				.mode = S_IFREG | 0644,
				.nlink = 1,
				.size = 30 };
	uint64_t *counts = NULL;
	size_t n = 0;
	char buf[WORDS];

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, &root, &dmd), 0);
	cr_assert_eq(meta_inode_put(m, &root, &f), 0);
	cr_assert_eq(block_to(m, &root, 110, 0, 'a'), 0);
	cr_assert_eq(block_to(m, &root, 110, 1, 'b'), 0);
	cr_assert_eq(block_to(m, &root, 110, 2, 'c'), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(ONE_OP(m, meta_version_child(m, 100, &leaf.id)), 0);

	cr_assert_str_eq(blocks_in(m, &leaf, 110, buf), "0:a 1:b 2:c ");
	/* a block written in the leaf: its own extent, the frozen one
	 * kept and still counted */
	cr_assert_eq(ONE_OP(m, block_to(m, &leaf, 110, 1, 'd')), 0);
	cr_assert_str_eq(blocks_in(m, &leaf, 110, buf), "0:a 1:d 2:c ");
	cr_assert_str_eq(blocks_in(m, &root, 110, buf), "0:a 1:b 2:c ");
	/* a block dropped there: a whiteout */
	cr_assert_eq(ONE_OP(m, block_to(m, &leaf, 110, 0, 0)), 0);
	cr_assert_str_eq(blocks_in(m, &leaf, 110, buf), "1:d 2:c ");
	/* truncated there: whiteouts from block 2 on */
	cr_assert_eq(ONE_OP(m, meta_blocks_drop(m, &leaf, 110, 2)), 0);
	cr_assert_str_eq(blocks_in(m, &leaf, 110, buf), "1:d ");
	cr_assert_str_eq(blocks_in(m, &root, 110, buf), "0:a 1:b 2:c ");
	/* written again over a whiteout: a second reference to a */
	cr_assert_eq(ONE_OP(m, block_to(m, &leaf, 110, 0, 'a')), 0);
	cr_assert_str_eq(blocks_in(m, &leaf, 110, buf), "0:a 1:d ");
	cr_assert_eq(meta_refcounts(m, &leaf, 110, &counts, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(counts[0], 2, "a: the frozen row's and the leaf's");
	cr_assert_eq(counts[1], 1);
	free(counts);
	cr_assert_eq(meta_check_counts(m, count_true, NULL), 0);
	/* all of the leaf's dropped: d's last reference gone, the frozen
	 * version's unchanged */
	cr_assert_eq(ONE_OP(m, meta_blocks_drop(m, &leaf, 110, 0)), 0);
	cr_assert_str_eq(blocks_in(m, &leaf, 110, buf), "");
	cr_assert_str_eq(blocks_in(m, &root, 110, buf), "0:a 1:b 2:c ");
	cr_assert_eq(meta_refcounts(m, &root, 110, &counts, &n), 0);
	cr_assert_eq(n, 3);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(counts[i], 1);
	free(counts);
	cr_assert_eq(meta_check_counts(m, count_true, NULL), 0);
}

void tu_chain_check(struct meta *m)
{
	const struct meta_ver root = { .id = 60 };
	struct meta_ver leaf = { .depth = 2 }, below = { .depth = 3 };
	struct meta_inode dmd = {
		.ino = 60, .nspace = 60, .mode = S_IFDIR | 0755, .nlink = 2
	};
	struct meta_inode md = { .ino = 70,
				 .nspace = 60,
				 .mode = S_IFREG | 0644,
				 .nlink = 1,
				 .size = 5 };
	struct meta_inode nmd = md;

	/* a namespace's root makes its version, 60 */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, &root, &dmd), 0);
	cr_assert_eq(meta_inode_put(m, &root, &md), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_version_child(m, 60, &leaf.id), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_gt(leaf.id, 60, "ids grow from parent to child");
	/* only a leaf has children */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_version_child(m, 60, &below.id), -EINVAL);
	meta_rollback(m);

	/* the frozen version's row, through the chain */
	cr_assert_eq(size_in(m, &leaf, 70), 5);
	/* changed in the leaf (twice: one copy), the frozen row stays */
	cr_assert_eq(resize(m, &leaf, &md, 9), 0);
	cr_assert_eq(resize(m, &leaf, &md, 11), 0);
	cr_assert_eq(size_in(m, &leaf, 70), 11);
	cr_assert_eq(size_in(m, &root, 70), 5);
	/* a version below the leaf reads the leaf's copy */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_version_child(m, leaf.id, &below.id), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(size_in(m, &below, 70), 11);
	/* removed there: a whiteout; the versions above keep theirs, and
	 * a change through the whiteout finds no inode */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_delete(m, &below, 70), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(size_in(m, &below, 70), -ENOENT);
	cr_assert_eq(size_in(m, &leaf, 70), 11);
	cr_assert_eq(size_in(m, &root, 70), 5);
	cr_assert_eq(resize(m, &below, &md, 3), -ENOENT);
	/* an inode made in the deepest version is its first row there,
	 * seen by no version above, and goes with no whiteout */
	nmd.ino = 71;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, &below, &nmd), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(size_in(m, &below, 71), 5);
	cr_assert_eq(size_in(m, &leaf, 71), -ENOENT);
	cr_assert_eq(resize(m, &below, &nmd, 6), 0);
	cr_assert_eq(size_in(m, &below, 71), 6);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_delete(m, &below, 71), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(size_in(m, &below, 71), -ENOENT);
	{
		/* rows: 70's first, its copy in the leaf, its whiteout
		 * below; 71 left none */
		uint64_t max = 0;

		cr_assert_eq(meta_max_ino(m, &max), 0);
		cr_assert_lt(max, 100000, "copies take no inode number");
	}
	chain_names_check(m);
	chain_blocks_check(m);
}
