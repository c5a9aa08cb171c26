/* SPDX-License-Identifier: MIT */
/*
 * Hash collisions: this test links a copy of core/ built with the hash
 * shrunk to 4 bits (-DTALLY_HASH_BITS=4), so that almost every block
 * collides with another. Every file must read back its own content, and
 * the counts must stay exact.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/fsck.h"
#include "core/util/hash.h"
#include "core/objects/store.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096
#define FILES 12
#define BLOCKS 6

static char *dir;
static char store[4096];

/* Object files once every flush has been finalized (closes do not wait). */
static int objects_now(struct tally *tt)
{
	if (tt)
		cr_assert_eq(tally_drain(tt, NULL, 0), 0);
	return tu_count_objects(store);
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
}

static void teardown(void)
{
	tu_rmrf(dir);
	free(dir);
}

TestSuite(collision, .init = setup, .fini = teardown, .timeout = 60);

Test(collision, hash_really_is_shrunk)
{
	char a[HASH_HEX_LEN + 1], b[HASH_HEX_LEN + 1];

	hash_block("abc", 3, a);
	hash_block("abd", 3, b);
	cr_assert_eq(strspn(a + 1, "0"), HASH_HEX_LEN - 1);
	cr_assert_eq(strspn(b + 1, "0"), HASH_HEX_LEN - 1);
}

Test(collision, colliding_blocks_keep_their_contents)
{
	static const struct tally_ctx me = { 0, 0 };
	struct tally_opts o = { .block_size = BS, .create = true };
	static char data[FILES][BLOCKS * BS];
	uint64_t ino[FILES];
	struct fsck_result r;
	struct tally *t;
	struct stat ns, st;
	char name[16], buf[BLOCKS * BS];
	int i;

	cr_assert_eq(tally_open(store, &o, &t), 0);
	cr_assert_eq(tally_mkdir(t, &me, TALLY_ROOT_INO, "main", 0755, &ns), 0);
	for (i = 0; i < FILES; i++) {
		/* files 0..5 distinct, 6..11 copies of 0..5: dedup still
		 * works through the collisions */
		tu_fill(data[i], sizeof(data[i]), (unsigned)(i % 6) + 1);
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_eq(tally_mknod(t, &me, ns.st_ino, name,
					 S_IFREG | 0644, 0, &st),
			     0);
		ino[i] = st.st_ino;
		cr_assert_eq(tally_open_file(t, ino[i], O_RDWR), 0);
		cr_assert_eq(tally_write(t, ino[i], data[i], sizeof(data[i]),
					 0),
			     (ssize_t)sizeof(data[i]));
		cr_assert_eq(tally_release(t, ino[i]), 0);
	}
	cr_assert_eq(objects_now(t), 6 * BLOCKS);
	for (i = 0; i < FILES; i++) {
		cr_assert_eq(tally_read(t, ino[i], buf, sizeof(buf), 0),
			     (ssize_t)sizeof(buf));
		cr_assert_eq(memcmp(buf, data[i], sizeof(buf)), 0,
			     "file %d got another block's bytes", i);
	}
	/* drop the copies: counts must reach exactly 1 again */
	for (i = 6; i < FILES; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_eq(tally_unlink(t, ns.st_ino, name), 0);
	}
	cr_assert_eq(objects_now(t), 6 * BLOCKS);
	cr_assert_eq(tally_close(t), 0);
	tu_fsck_clean(store, &r);
	cr_assert_eq(r.references, 6 * BLOCKS);
}
