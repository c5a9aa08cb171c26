/* SPDX-License-Identifier: MIT */
/*
 * Corrupt objects: an object file shorter than its row says (power loss
 * can leave one, or damage) is never served as zeros. Reads fail with EIO
 * (logged once, counted in the status), verify reports it, tallyfsck
 * reports it, and --repair rewrites it from a good copy or, when there is
 * none, drops it and names the files that lost data. Against a real store.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/jobs/fsck.h"
#include "core/jobs/gc.h"
#include "core/util/hash.h"
#include "core/objects/store.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

#define BS 4096

static char *dir;
static char store[4096];
static struct tally *t;
static uint64_t ns;
static char x[BS], y[BS];

static void open_store(void)
{
	struct tally_opts o = { .block_size = BS, .create = true };

	cr_assert_eq(tally_open(store, &o, &t), 0);
}

static void close_store(void)
{
	cr_assert_eq(tally_close(t), 0);
	t = NULL;
}

static void setup(void)
{
	dir = tu_tmpdir();
	cr_assert_not_null(dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	open_store();
	ns = tu_mkns(t, "main");
	tu_fill(x, sizeof(x), 1);
	tu_fill(y, sizeof(y), 2);
}

static void teardown(void)
{
	tu_teardown(&t, &dir);
}

TestSuite(corrupt, .init = setup, .fini = teardown, .timeout = 60);

/* File @name holding x then y (two blocks, two objects); its inode. */
static uint64_t two_blocks(const char *name)
{
	uint64_t ino = tu_newfile(t, ns, name);

	cr_assert_eq(tally_write(t, ino, x, BS, 0), BS);
	cr_assert_eq(tally_write(t, ino, y, BS, BS), BS);
	cr_assert_eq(tally_release(t, ino), 0);
	cr_assert_eq(tally_drain(t, NULL, 0), 0);
	return ino;
}

/* Cut the file of the object holding @data to @len bytes. */
static void cut(const void *data, off_t len)
{
	char hex[HASH_HEX_LEN + 1], path[4300];

	hash_block(data, BS, hex);
	snprintf(path, sizeof(path), "%s/shards/0/%.2s/%s", store, hex, hex);
	cr_assert_eq(truncate(path, len), 0, "%s", path);
}

static uint64_t corrupt_now(void)
{
	struct tally_stats st;

	cr_assert_eq(tally_stats(t, &st), 0);
	return st.corrupt_objects;
}

static void fsck(bool repair, struct fsck_result *r)
{
	struct store *s;

	cr_assert_eq(store_open(store, false, BS, &s), 0);
	cr_assert_eq(fsck_run(s, repair, NULL, NULL, r), 0);
	store_close(s);
}

Test(corrupt, short_object_reads_eio_and_is_reported)
{
	struct fsck_result r;
	struct gc_verify v;
	char buf[2 * BS];
	uint64_t ino = two_blocks("f");

	close_store();
	cut(y, BS / 2); /* the second block's object: half of it */
	open_store();
	cr_assert_eq(tally_read(t, ino, buf, BS, 0), BS, "the first block");
	cr_assert_eq(memcmp(buf, x, BS), 0);
	cr_assert_eq(tally_read(t, ino, buf, BS, BS), -EIO);
	cr_assert_eq(tally_read(t, ino, buf, 10, BS + BS / 2), -EIO);
	cr_assert_eq(tally_read(t, ino, buf, 2 * BS, 0), -EIO);
	cr_assert_eq(corrupt_now(), 1, "counted once");
	cr_assert_eq(gc_verify(t, 100, &v), 0);
	cr_assert_eq(v.corrupt, 1);
	close_store();
	fsck(false, &r);
	cr_assert_eq(r.corrupt, 1);
	cr_assert(fsck_problems(&r));
	/* no copy anywhere: dropped, its block a hole */
	fsck(true, &r);
	cr_assert_eq(r.dropped, 1);
	cr_assert_eq(r.restored, 0);
	tu_fsck_clean(store, NULL);
	open_store();
	cr_assert_eq(tally_read(t, ino, buf, 2 * BS, 0), 2 * BS);
	cr_assert_eq(memcmp(buf, x, BS), 0, "the good block stays");
	{
		static const char zeros[BS];

		cr_assert_eq(memcmp(buf + BS, zeros, BS), 0, "a hole now");
	}
}

Test(corrupt, empty_object_reads_eio)
{
	char buf[BS];
	uint64_t ino = two_blocks("f");

	close_store();
	cut(x, 0);
	open_store();
	cr_assert_eq(tally_read(t, ino, buf, BS, 0), -EIO);
	cr_assert_eq(corrupt_now(), 1);
}

/*
 * The same bytes written again meet the corrupt file in a dedup compare:
 * counted, and stored under another name; tallyfsck --repair rewrites the
 * corrupt object from that good copy, and the first file reads whole.
 */
Test(corrupt, repair_restores_from_the_same_bytes_stored_again)
{
	struct fsck_result r;
	char buf[2 * BS];
	uint64_t a = two_blocks("a"), b;

	close_store();
	cut(y, 100);
	open_store();
	b = two_blocks("b");
	cr_assert_eq(corrupt_now(), 1, "the compare saw it");
	cr_assert_eq(tally_read(t, b, buf, 2 * BS, 0), 2 * BS);
	cr_assert_eq(memcmp(buf + BS, y, BS), 0, "b is whole");
	cr_assert_eq(tally_read(t, a, buf, 2 * BS, 0), -EIO);
	close_store();
	fsck(true, &r);
	cr_assert_eq(r.corrupt, 1);
	cr_assert_eq(r.restored, 1);
	cr_assert_eq(r.dropped, 0);
	tu_fsck_clean(store, NULL);
	open_store();
	cr_assert_eq(tally_read(t, a, buf, 2 * BS, 0), 2 * BS);
	cr_assert_eq(memcmp(buf, x, BS), 0);
	cr_assert_eq(memcmp(buf + BS, y, BS), 0, "a is whole again");
}
