/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the unit tests: temporary directories and files.
 */
#ifndef TALLY_TEST_UTIL_H
#define TALLY_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* mkdtemp under $TMPDIR or /tmp; the path is static storage per call. */
char *tu_tmpdir(void);
/* rm -rf @path (bounded, best effort). */
void tu_rmrf(const char *path);
struct tally;

/* The end of a test with a store: close *t if open, remove and free
 * *dir; both are NULL afterwards. */
void tu_teardown(struct tally **t, char **dir);

/* Count object files under @store/shards/0. */
int tu_count_objects(const char *store);
struct fsck_result;

/*
 * Check the closed store @store offline; assert that the check ran and
 * found no problem. *r (may be NULL) receives the figures.
 */
void tu_fsck_clean(const char *store, struct fsck_result *r);

/* Fill @buf with deterministic pseudo-random bytes from @seed. */
void tu_fill(void *buf, size_t len, unsigned seed);

struct meta;
/* The stored count of object @name in @m (meta_check_counts()), -1 if
 * it has no row; asserts that the check ran. */
int64_t tu_stored_count(struct meta *m, const char *name);

/* Directory @dir of @m gets @n entries with inode rows of their own
 * (and some without, which a listing skips); meta_readdir() is checked
 * to list each once in order with its row, to stop when told and to go
 * on from a cookie, and meta_dentry_lookup_row() to find the same rows
 * (and no row for an entry without one). */
void tu_readdir_check(struct meta *m, uint64_t dir, unsigned n);

/*
 * Every call by inode reads and changes the rows of the version it names
 * (docs/design.md, section 13): an inode, its entry, extent and xattr
 * written into version 40 are found through it and through NULL (any),
 * not through version 41, and a change or delete through 41 changes
 * nothing (a shared store's changes fail with -ENOENT, as its block map
 * read with an inode row that is not there does).
 */
void tu_version_check(struct meta *m);
/*
 * Format 4 (docs/design.md 13.7): an inode read through a chain of
 * versions (meta_version_child(), a struct meta_ver with a depth) is its
 * row of the nearest ancestor; a change in the leaf copies it up and
 * leaves the frozen version's row as it was; a removal leaves a whiteout
 * where an ancestor's row would show, none where none does. Entries and
 * xattrs the same: read, listed, taken, removed, pointed elsewhere and
 * moved in the leaf, the frozen version's unchanged.
 */
void tu_chain_check(struct meta *m);

/* A namespace @name made by root; its inode. */
uint64_t tu_mkns(struct tally *t, const char *name);
/* An empty regular file @name in @parent made by root, left open for
 * reading and writing (tally_open_file); its inode. */
uint64_t tu_newfile(struct tally *t, uint64_t parent, const char *name);

#endif
