/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the PostgreSQL engine of the metadata (core/meta/meta_pg.c)
 * against a real server: TALLY_TEST_PG names a cluster (postgres://USER@
 * HOST:PORT, a role that may create databases), which tests/pg/
 * run_with_cluster.sh starts and stops. Every test gets a database of its own.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/jobs/gc.h"
#include "core/meta/meta.h"
#include "core/objects/reap.h"
#include "core/cluster/cluster.h"
#include "core/fs/tally.h"
#include "tests/unit/util.h"

static char db[64];
static char uri[512];
static struct meta *m;

/* Run @sql on database @dbname of the test's cluster. */
static void admin(const char *dbname, const char *sql)
{
	const char *base = getenv("TALLY_TEST_PG");
	char conn[512];
	PGconn *c;
	PGresult *r;

	cr_assert(base && *base, "TALLY_TEST_PG is not set "
				 "(run through tests/pg/run_with_cluster.sh)");
	snprintf(conn, sizeof(conn), "%s/%s", base, dbname);
	c = PQconnectdb(conn);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, sql);
	cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK ||
			  PQresultStatus(r) == PGRES_TUPLES_OK,
		  "%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(c);
}

static void setup(void)
{
	char sql[128];

	snprintf(db, sizeof(db), "unit_%d_%u", (int)getpid(),
		 (unsigned)random());
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
	admin("postgres", sql);
	snprintf(uri, sizeof(uri), "%s/%s", getenv("TALLY_TEST_PG"), db);
	cr_assert(meta_is_pg(uri));
	cr_assert_eq(meta_open(uri, true, 4096, &m), 0);
	cr_assert(meta_shared(m));
}

static void teardown(void)
{
	char sql[128];

	meta_close(m);
	m = NULL;
	snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", db);
	admin("postgres", sql);
}

TestSuite(meta_pg, .init = setup, .fini = teardown, .timeout = 60);

#define OBJ_A "0123456789abcdef0123456789abcdef"
#define OBJ_B "fedcba9876543210fedcba9876543210"

/* The stored count of object @name, -1 if it has no row. */
static int64_t count_of(const char *name)
{
	return tu_stored_count(m, name);
}

Test(meta_pg, formatted_with_root_and_settings)
{
	struct meta_inode root;
	int64_t v;

	cr_assert_eq(meta_config_get(m, "block_size", &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(meta_config_get(m, "next_ino", &v), 0);
	cr_assert_eq(v, 16);
	cr_assert_eq(meta_inode_get(m, NULL, 1, &root), 0);
	cr_assert(S_ISDIR(root.mode));
	cr_assert_eq(root.nlink, 2);
	cr_assert_eq(meta_config_get(m, "nope", &v), -ENOENT);
	/* a second open finds the store and does not format it again */
	meta_close(m);
	cr_assert_eq(meta_open(uri, false, 8192, &m), 0);
	cr_assert_eq(meta_config_get(m, "block_size", &v), 0);
	cr_assert_eq(v, 4096);
}

Test(meta_pg, refuses_foreign_empty_and_newer_databases)
{
	struct meta *x = NULL;
	char other[600], sql[128];

	/* another application's tables */
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s_f", db);
	admin("postgres", sql);
	snprintf(sql, sizeof(sql), "%s_f", db);
	admin(sql, "CREATE TABLE accounts(id int)");
	snprintf(other, sizeof(other), "%s_f", uri);
	cr_assert_eq(meta_open(other, true, 4096, &x), -EUCLEAN);
	cr_assert_null(x);
	/* nothing was created in it */
	admin(sql, "DO $$ BEGIN IF to_regclass('tally_store') IS NOT NULL "
		   "THEN RAISE 'formatted'; END IF; END $$");
	snprintf(sql, sizeof(sql), "DROP DATABASE %s_f WITH (FORCE)", db);
	admin("postgres", sql);
	/* an empty database is formatted only with create */
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s_e", db);
	admin("postgres", sql);
	snprintf(other, sizeof(other), "%s_e", uri);
	cr_assert_eq(meta_open(other, false, 4096, &x), -EUCLEAN);
	snprintf(sql, sizeof(sql), "DROP DATABASE %s_e WITH (FORCE)", db);
	admin("postgres", sql);
	/* a newer format */
	admin(db, "UPDATE tally_store SET format = format + 1");
	cr_assert_eq(meta_open(uri, false, 4096, &x), -EPROTO);
	admin(db, "UPDATE tally_store SET format = format - 1");
	cr_assert_eq(meta_open(uri, false, 4096, &x), 0);
	meta_close(x);
	x = NULL;
	/* a server that is not there */
	cr_assert_eq(meta_open("postgres://nobody@127.0.0.1:1/x", true, 4096,
			       &x),
		     -EIO);
}

Test(meta_pg, names_of_any_bytes_round_trip)
{
	char name[256], back[256];
	uint64_t ino = 0;
	int i, n = 0;

	/* every byte a file name may hold: 1..255 but '/' */
	for (i = 1; i < 256; i++)
		if (i != '/')
			name[n++] = (char)i;
	name[n] = '\0';
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, name, 77), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "a\\b'c\"", 78), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, name, &ino), 0);
	cr_assert_eq(ino, 77);
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, "a\\b'c\"", &ino), 0);
	cr_assert_eq(ino, 78);
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, "a\\\\b'c\"", &ino),
		     -ENOENT);
	/* the same name twice in one directory is refused (the insert
	 * waits for the next statement: here the COMMIT) */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, name, 79), 0);
	cr_assert_eq(meta_commit(m), -EEXIST);
	meta_rollback(m);
	(void)back;
}

Test(meta_pg, xattrs)
{
	unsigned char val[3000];
	void *got = NULL;
	char *list = NULL;
	size_t len = 0, i;

	for (i = 0; i < sizeof(val); i++)
		val[i] = (unsigned char)(i * 7);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_xattr_set(m, NULL, 1, "user.a", val, sizeof(val), 0),
		     0);
	cr_assert_eq(meta_xattr_set(m, NULL, 1, "user.b", "", 0, 0), 0);
	cr_assert_eq(meta_xattr_set(m, NULL, 1, "user.a", "x", 1, XATTR_CREATE),
		     -EEXIST);
	cr_assert_eq(meta_xattr_set(m, NULL, 1, "user.c", "x", 1,
				    XATTR_REPLACE),
		     -ENODATA);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_xattr_get(m, NULL, 1, "user.a", &got, &len), 0);
	cr_assert_eq(len, sizeof(val));
	cr_assert_eq(memcmp(got, val, len), 0);
	free(got);
	cr_assert_eq(meta_xattr_get(m, NULL, 1, "user.b", &got, &len), 0);
	cr_assert_eq(len, 0);
	free(got);
	cr_assert_eq(meta_xattr_get(m, NULL, 1, "user.c", &got, &len),
		     -ENODATA);
	cr_assert_eq(meta_xattr_list(m, NULL, 1, &list, &len), 0);
	cr_assert_eq(len, sizeof("user.a") + sizeof("user.b"));
	cr_assert_str_eq(list, "user.a");
	cr_assert_str_eq(list + sizeof("user.a"), "user.b");
	free(list);
}

/* readdir reads entries with their inode rows, in chunks (the engine is
 * asked for a few entries at a time, more as the listing goes on) */
/* PostgreSQL's statements see the rows of the version a call names, as
 * SQLite's do (tu_version_check()). */
Test(meta_pg, calls_see_the_rows_of_their_version)
{
	tu_version_check(m);
}

/* An inode read through a chain of versions: the nearest ancestor's row,
 * copied up by a change, a whiteout by a removal (tu_chain_check()). */
Test(meta_pg, inodes_read_through_a_chain_of_versions)
{
	tu_chain_check(m);
}

Test(meta_pg, readdir_lists_entries_with_their_rows)
{
	tu_readdir_check(m, 900, 2500);
}

Test(meta_pg, counts_settle_at_commit)
{
	struct meta_objlist zero;
	struct meta_bref ref;

	meta_objlist_init(&zero);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 0, OBJ_A, 0, 10, &ref), 0);
	cr_assert_eq(meta_block_set(m, NULL, 21, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count_of(OBJ_A), 2);
	cr_assert_gt(ref.obj, 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 0, OBJ_B, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count_of(OBJ_A), 1);
	cr_assert_eq(count_of(OBJ_B), 1);
	/* dropped to zero and raised again in one transaction: kept */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_blocks_drop(m, NULL, 21, 0), 0);
	cr_assert_eq(meta_block_set(m, NULL, 22, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count_of(OBJ_A), 1);
	meta_dead_take(m, &zero);
	cr_assert_eq(zero.n, 0);
	/* the last reference goes: the row goes, the object is listed */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_blocks_drop(m, NULL, 22, 0), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count_of(OBJ_A), -1);
	meta_dead_take(m, &zero);
	cr_assert_eq(zero.n, 1);
	cr_assert_str_eq(zero.v[0].name, OBJ_A);
	meta_objlist_release(&zero);
	/* a rollback leaves the counts alone */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_blocks_copy(m, NULL, NULL, 20, 30), 0);
	meta_rollback(m);
	cr_assert_eq(count_of(OBJ_B), 1);
}

/* Namespace "src" (inode 16) holding "file" (inode @file), one block of
 * object A, committed. */
static void src_with_a_file(uint64_t file)
{
	struct meta_inode ns = { 0 }, f = { 0 };

	ns.ino = 16;
	ns.nspace = 16;
	ns.mode = S_IFDIR | 0755;
	ns.nlink = 2;
	f.ino = file;
	f.nspace = 16;
	f.mode = S_IFREG | 0644;
	f.nlink = 1;
	f.size = 10;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &ns), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &f), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "src", 16), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 16, "file", file), 0);
	cr_assert_eq(meta_block_set(m, NULL, file, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
}

Test(meta_pg, branch_copies_a_namespace)
{
	uint64_t next = 100, root = 0, count = 0, ino = 0;

	src_with_a_file(17);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_branch(m, 16, NULL, "dst", &next, &root, &count), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count, 2);
	cr_assert_eq(root, 100);
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, "dst", &ino), 0);
	cr_assert_eq(ino, 100);
	cr_assert_eq(meta_dentry_lookup(m, NULL, 100, "file", &ino), 0);
	cr_assert_eq(ino, 101);
	cr_assert_eq(count_of(OBJ_A), 2);
	/* twice on one connection: the temporary map is emptied first */
	next = 200;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_branch(m, 16, NULL, "dst2", &next, &root, &count), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count, 2);
	cr_assert_eq(count_of(OBJ_A), 3);
}

struct heard {
	int n;
	char last[256];
};

static void heard_one(void *ctx, const char *payload)
{
	struct heard *h = ctx;

	h->n++;
	snprintf(h->last, sizeof(h->last), "%s", payload);
}

/* The notifications @l receives within @ms milliseconds. */
static void listen_for(struct meta_listen *l, int ms, struct heard *h)
{
	struct pollfd pfd = { .fd = meta_listen_fd(l), .events = POLLIN };

	while (poll(&pfd, 1, ms) > 0)
		cr_assert_eq(meta_listen_take(l, heard_one, h), 0);
	cr_assert_eq(meta_listen_take(l, heard_one, h), 0);
}

/*
 * What is notified: what another node's kernel may cache and a change
 * makes wrong. A new name (a create, a branch of 50 files) notifies
 * nothing, since no kernel caches a name's absence, and neither does a
 * directory's change of times or link count; a name's removal, a rename
 * (both names), a directory's mode and a file's attributes do, while
 * another node has a session; with none, nothing does.
 */
Test(meta_pg, what_a_change_notifies)
{
	struct meta_inode ns = { 0 }, f = { 0 }, d;
	uint64_t next = 1000, root = 0, count = 0, i;
	struct meta_listen *l = NULL;
	struct heard h = { 0 };
	uint32_t nlink;
	char name[16];

	ns.ino = 16;
	ns.nspace = 16;
	ns.mode = S_IFDIR | 0755;
	ns.nlink = 2;
	admin(db, "INSERT INTO sessions VALUES (77, 'other', 1, 0, 0, "
		  "9999999999)");
	cr_assert_eq(meta_listen_open(m, &l), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &ns), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "src", 16), 0);
	for (i = 0; i < 50; i++) {
		f = (struct meta_inode){ .ino = 17 + i,
					 .nspace = 16,
					 .mode = S_IFREG | 0644,
					 .nlink = 1 };
		snprintf(name, sizeof(name), "f%" PRIu64, i);
		cr_assert_eq(meta_inode_put(m, NULL, &f), 0);
		cr_assert_eq(meta_dentry_insert(m, NULL, 16, name, 17 + i), 0);
	}
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_branch(m, 16, NULL, "dst", &next, &root, &count), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count, 51);
	listen_for(l, 300, &h);
	cr_assert_eq(h.n, 0, "%d notifications of new names", h.n);

	/* a directory's times: nothing; its link count: nothing; its
	 * mode: one */
	cr_assert_eq(meta_inode_get(m, NULL, 16, &d), 0);
	d.mtime.tv_sec += 5;
	d.ctime.tv_sec += 5;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_update(m, NULL, &d, 0,
				       META_F_MTIME | META_F_CTIME, &nlink),
		     0);
	cr_assert_eq(meta_commit(m), 0);
	listen_for(l, 300, &h);
	cr_assert_eq(h.n, 0, "a directory's times notified");
	d.nlink++; /* a subdirectory made */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_update(m, NULL, &d, 1,
				       META_F_MTIME | META_F_CTIME, &nlink),
		     0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_inode_get(m, NULL, 16, &d), 0);
	cr_assert_eq(d.nlink, 3);
	listen_for(l, 300, &h);
	cr_assert_eq(h.n, 0, "a directory's link count notified");
	d.mode = S_IFDIR | 0700;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_update(m, NULL, &d, 0, META_F_MODE, &nlink), 0);
	cr_assert_eq(meta_commit(m), 0);
	listen_for(l, 300, &h);
	cr_assert_eq(h.n, 1, "%d notifications", h.n);
	cr_assert_str_eq(h.last, "i 0 16");

	/* a file's times: one */
	cr_assert_eq(meta_inode_get(m, NULL, 17, &f), 0);
	f.mtime.tv_sec += 5;
	h.n = 0;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_update(m, NULL, &f, 0,
				       META_F_MTIME | META_F_CTIME, &nlink),
		     0);
	cr_assert_eq(meta_commit(m), 0);
	listen_for(l, 300, &h);
	cr_assert_eq(h.n, 1, "%d notifications", h.n);
	cr_assert_str_eq(h.last, "i 0 17");

	/* a name removed: one; a rename: the old name and the new */
	h.n = 0;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_delete(m, NULL, 16, "f1", 18), 0);
	cr_assert_eq(meta_commit(m), 0);
	listen_for(l, 300, &h);
	cr_assert_eq(h.n, 1, "%d notifications", h.n);
	cr_assert_str_eq(h.last, "e 0 16 6631"); /* "f1" */
	h.n = 0;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_move(m, NULL, 16, "f2", 19, 16, "g2"), 0);
	cr_assert_eq(meta_commit(m), 0);
	listen_for(l, 300, &h);
	cr_assert_eq(h.n, 2, "%d notifications", h.n);
	cr_assert_str_eq(h.last, "e 0 16 6732"); /* "g2" */

	/* the other node gone: a removal, a rename and a file's times
	 * notify nothing */
	admin(db, "DELETE FROM sessions");
	h.n = 0;
	f.mtime.tv_sec += 5;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_delete(m, NULL, 16, "f3", 20), 0);
	cr_assert_eq(meta_dentry_move(m, NULL, 16, "f4", 21, 16, "g4"), 0);
	cr_assert_eq(meta_inode_update(m, NULL, &f, 0, META_F_MTIME, &nlink),
		     0);
	cr_assert_eq(meta_commit(m), 0);
	listen_for(l, 300, &h);
	cr_assert_eq(h.n, 0, "%d notifications with no other node", h.n);
	meta_listen_close(l);
}

/* A hold already there (a release whose commit was lost leaves one) is
 * taken again without error; a hold of a missing inode is -ENOENT. */
Test(meta_pg, a_hold_taken_twice_is_no_missing_inode)
{
	struct meta_inode f = { 0 };

	f.ino = 40;
	f.nspace = 40;
	f.mode = S_IFREG | 0644;
	f.nlink = 0; /* unlinked, held open by node 7 */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &f), 0);
	cr_assert_eq(meta_hold_add(m, 7, 40), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_hold_add(m, 7, 40), 0);
	cr_assert_eq(meta_hold_add(m, 7, 41), -ENOENT);
	/* held by node 7 (not last for node 8), by nobody else */
	cr_assert_eq(meta_inode_last(m, 40, 8), 0);
	cr_assert_eq(meta_inode_last(m, 40, 7), 1);
	cr_assert_eq(meta_hold_del(m, 7, 40), 0);
	cr_assert_eq(meta_inode_last(m, 40, 8), 1);
	cr_assert_eq(meta_commit(m), 0);
}

/* A name two mounts remove at once is removed once: the second delete
 * fails (ENOENT) with the link count's update that follows it, and the
 * file keeps its other name and its count. */
Test(meta_pg, a_name_removed_twice_takes_one_link)
{
	struct meta_inode f = { .ino = 43,
				.nspace = 1,
				.mode = S_IFREG | 0644,
				.nlink = 2 },
			  got;
	struct meta *b = NULL;
	uint64_t ino = 0;
	uint32_t n = 0;

	cr_assert_eq(meta_open(uri, false, 4096, &b), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &f), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "x", 43), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "y", 43), 0);
	cr_assert_eq(meta_commit(m), 0);
	/* m removes x */
	f.nlink = 1;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_delete(m, NULL, 1, "x", 43), 0);
	cr_assert_eq(meta_inode_update(m, NULL, &f, -1, 0, &n), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(n, 1);
	/* b, which saw x, removes it too */
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_dentry_delete(b, NULL, 1, "x", 43), 0); /* waits */
	cr_assert_eq(meta_inode_update(b, NULL, &f, -1, 0, &n), -ENOENT);
	meta_rollback(b);
	cr_assert_eq(meta_inode_get(b, NULL, 43, &got), 0);
	cr_assert_eq(got.nlink, 1, "a link taken twice");
	cr_assert_eq(meta_dentry_lookup(b, NULL, 1, "y", &ino), 0);
	cr_assert_eq(ino, 43);
	/* outside a transaction too */
	cr_assert_eq(meta_dentry_delete(b, NULL, 1, "x", 43), -ENOENT);
	meta_close(b);
}

/* A change of an entry names the inode its node looked up: an entry that
 * names another inode now (another node renamed something over it) is
 * ENOENT for a delete, a move and an update, and is left as it is. */
Test(meta_pg, an_entry_changed_only_while_it_names_its_inode)
{
	uint64_t ino = 0;

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "x", 50), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "y", 51), 0);
	cr_assert_eq(meta_commit(m), 0);
	/* x names 50, not 49 */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_delete(m, NULL, 1, "x", 49), 0); /* waits */
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, "y", &ino), -ENOENT);
	meta_rollback(m);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_move(m, NULL, 1, "x", 49, 1, "z"), -ENOENT);
	meta_rollback(m);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_set_ino(m, NULL, 1, "x", 49, 52), -ENOENT);
	meta_rollback(m);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_set_ino(m, NULL, 1, "gone", 50, 52), -ENOENT);
	meta_rollback(m);
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, "x", &ino), 0);
	cr_assert_eq(ino, 50, "left as it was");
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, "z", &ino), -ENOENT);
	/* with the right inode, each goes */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_set_ino(m, NULL, 1, "x", 50, 52), 0);
	cr_assert_eq(meta_dentry_move(m, NULL, 1, "x", 52, 1, "z"), 0);
	cr_assert_eq(meta_dentry_delete(m, NULL, 1, "y", 51), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, "z", &ino), 0);
	cr_assert_eq(ino, 52);
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, "y", &ino), -ENOENT);
}

Test(meta_pg, pins_and_protection)
{
	const char *names[] = { OBJ_A };

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_pin_add(m, "ns/file", 5, names, 1), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_name_protected(m, OBJ_A, true, false), 1);
	cr_assert_eq(meta_name_protected(m, OBJ_B, true, false), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_pin_add(m, "ns/file", 6, names, 1), -EEXIST);
	meta_rollback(m);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_pin_remove(m, "ns/file"), 0);
	cr_assert_eq(meta_pin_remove(m, "ns/file"), -ENOENT);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_name_protected(m, OBJ_A, true, false), 0);
}

/* End every other session of the test's database (a server restart, as
 * the mount sees it). */
static void drop_connections(void)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
		 "WHERE datname = '%s' AND pid <> pg_backend_pid()",
		 db);
	admin("postgres", sql);
}

Test(meta_pg, a_lost_connection_is_opened_again)
{
	struct meta_inode in;
	int64_t v;

	/* outside a transaction: the statement runs again, unseen */
	drop_connections();
	cr_assert_eq(meta_inode_get(m, NULL, 1, &in), 0);
	cr_assert_eq(meta_config_get(m, "block_size", &v), 0);
	/* a transaction it breaks fails, to be run again (-EDEADLK, as a
	 * deadlock), nothing of it committed... */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "probe", 1), 0);
	drop_connections();
	cr_assert_eq(meta_config_set(m, "probe", 2), -EDEADLK);
	meta_rollback(m);
	cr_assert_eq(meta_config_get(m, "probe", &v), -ENOENT);
	/* ...and the next one runs on a new connection */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "probe", 3), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_config_get(m, "probe", &v), 0);
	cr_assert_eq(v, 3);
}

/* The first column of the first row of @sql, run on database @dbname
 * of the test's cluster. */
static int64_t db_int(const char *dbname, const char *sql)
{
	const char *base = getenv("TALLY_TEST_PG");
	char conn[512];
	int64_t v;
	PGconn *c;
	PGresult *r;

	snprintf(conn, sizeof(conn), "%s/%s", base, dbname);
	c = PQconnectdb(conn);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, sql);
	cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1,
		  "%s: %s", sql, PQresultErrorMessage(r));
	v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return v;
}

static int64_t admin_int(const char *sql)
{
	return db_int("postgres", sql);
}

/* Connections to the test's database with a transaction open. */
static int64_t open_transactions(void)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' "
		 "AND state LIKE 'idle in transaction%%'",
		 db);
	return admin_int(sql);
}

/* The drop of a hold goes with the read of the inode's link count and
 * the COMMIT (one flight): the count given, the hold gone, nothing left
 * open; a gone inode is -ENOENT with the drop made; a connection lost
 * while idle is opened again (the release runs again: it can). */
Test(meta_pg, a_hold_is_released_with_the_link_count)
{
	struct meta_inode f = {
		.ino = 42, .nspace = 42, .mode = S_IFREG | 0644, .nlink = 2
	};
	uint32_t n = 9;

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &f), 0);
	cr_assert_eq(meta_hold_add(m, 7, 42), 0);
	cr_assert_eq(meta_hold_add(m, 8, 42), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_hold_release(m, 7, 42, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(open_transactions(), 0);
	/* unlinked: 0, and node 8's hold alone is left */
	cr_assert_eq(meta_begin(m), 0);
	f.nlink = 0;
	cr_assert_eq(meta_inode_update(m, NULL, &f, -2, 0, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(meta_hold_add(m, 7, 42), 0);
	cr_assert_eq(meta_commit(m), 0);
	drop_connections();
	n = 9;
	cr_assert_eq(meta_hold_release(m, 7, 42, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_last(m, 42, 7), 0, "node 8 holds it");
	cr_assert_eq(meta_inode_last(m, 42, 8), 1, "node 7's hold went");
	meta_rollback(m);
	/* the inode gone */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_hold_del(m, 8, 42), 0);
	cr_assert_eq(meta_inode_delete(m, NULL, 42), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_hold_release(m, 8, 42, &n), -ENOENT);
	cr_assert_eq(open_transactions(), 0);
	/* the connection goes on */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "probe", 4), 0);
	cr_assert_eq(meta_commit(m), 0);
}

/* A BEGIN goes in one round trip with the transaction's first statement
 * (and a relaxed commit's setting with the COMMIT): what the server sees
 * is still a transaction, whatever fails where. */
Test(meta_pg, a_begin_goes_with_the_first_statement)
{
	int64_t v;

	/* nothing reaches the server before a statement... */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(open_transactions(), 0);
	cr_assert_eq(meta_config_set(m, "probe", 1), 0);
	/* ...which opened the transaction */
	cr_assert_eq(open_transactions(), 1);
	cr_assert_eq(meta_relaxed(m), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(open_transactions(), 0);
	cr_assert_eq(meta_config_get(m, "probe", &v), 0);
	cr_assert_eq(v, 1);
	/* a transaction in which nothing ran commits and rolls back */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_relaxed(m), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(m), 0);
	meta_rollback(m);
	/* the first statement fails: the error is its own, the
	 * transaction is there to roll back, and it undoes the BEGIN's */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "d", 40), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "e", 41), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_move(m, NULL, 1, "e", 41, 1, "d"), -EEXIST);
	meta_rollback(m);
	cr_assert_eq(open_transactions(), 0);
	/* a statement after a waiting setting fails: its error, and the
	 * transaction rolls back whole */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "probe", 2), 0);
	cr_assert_eq(meta_relaxed(m), 0);
	cr_assert_eq(meta_dentry_move(m, NULL, 1, "e", 41, 1, "d"), -EEXIST);
	meta_rollback(m);
	cr_assert_eq(meta_config_get(m, "probe", &v), 0);
	cr_assert_eq(v, 1);
	/* the connection lost while the BEGIN waits: nothing was half
	 * done, the pipeline goes again on a new connection */
	cr_assert_eq(meta_begin(m), 0);
	drop_connections();
	cr_assert_eq(meta_config_set(m, "probe", 3), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_config_get(m, "probe", &v), 0);
	cr_assert_eq(v, 3);
	/* lost inside the transaction, a setting waiting: -EDEADLK, to be
	 * run again, nothing committed */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "probe", 4), 0);
	cr_assert_eq(meta_relaxed(m), 0);
	drop_connections();
	cr_assert_eq(meta_commit(m), -EIO); /* a lost COMMIT: unknown */
	meta_rollback(m);
	cr_assert_eq(meta_config_get(m, "probe", &v), 0);
	cr_assert_eq(v, 3);
}

Test(meta_pg, two_mounts_never_take_the_same_inode_numbers)
{
	struct meta *b = NULL;
	uint64_t fa = 0, fb = 0, fc = 0;

	cr_assert_eq(meta_open(uri, false, 4096, &b), 0);
	/* both saw next_ino 16 at open; each takes a range in turn */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_ino_take(m, 16, 1024, &fa), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_ino_take(b, 16, 1024, &fb), 0);
	cr_assert_eq(meta_commit(b), 0);
	cr_assert_eq(fa, 16);
	cr_assert_eq(fb, 16 + 1024);
	/* a floor above the counter (numbers found in use) is respected */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_ino_take(m, 5000, 10, &fc), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(fc, 5000);
	meta_close(b);
}

static int64_t remote_of(struct meta *x, const char *name)
{
	struct meta_remote_state st;

	cr_assert_eq(meta_remote_state(x, name, &st), 0);
	return st.remote;
}

/* The generation of @name's row. */
static int64_t gen_of(struct meta *x, const char *name)
{
	struct meta_remote_state st;

	cr_assert_eq(meta_remote_state(x, name, &st), 0);
	return st.gen;
}

/* The key name of @name's row. */
static const char *key_of(struct meta *x, const char *name)
{
	static char key[OBJKEY_MAX];

	meta_key_name(name, gen_of(x, name), key);
	return key;
}

/* In a transaction of @x's own: with @row, a row of OBJ_A made (a block
 * naming it); then its upload to the key of its row's generation
 * recorded, meta_remote_shipped()'s answer. */
static int ship(struct meta *x, bool row)
{
	int rc;

	cr_assert_eq(meta_begin(x), 0);
	if (row)
		cr_assert_eq(meta_block_set(x, NULL, 20, 0, OBJ_A, 0, 10, NULL),
			     0);
	rc = meta_remote_shipped(x, OBJ_A, gen_of(x, OBJ_A));
	cr_assert_geq(rc, 0);
	cr_assert_eq(meta_commit(x), 0);
	return rc;
}

/* In a transaction of m's own: the deletion of key @key made. */
static void deletion_made(const char *key)
{
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_remote_gone(m, key), 0);
	cr_assert_eq(meta_commit(m), 0);
}

Test(meta_pg, keys_are_names_and_generations)
{
	char key[OBJKEY_MAX], name[OBJNAME_MAX];
	int64_t gen = -1;

	meta_key_name(OBJ_A, 0, key);
	cr_assert_str_eq(key, OBJ_A);
	cr_assert_eq(meta_key_parse(key, name, &gen), 0);
	cr_assert_str_eq(name, OBJ_A);
	cr_assert_eq(gen, 0);
	meta_key_name(OBJ_A, 42, key);
	cr_assert_str_eq(key, OBJ_A ".g42");
	cr_assert_eq(meta_key_parse(key, name, &gen), 0);
	cr_assert_str_eq(name, OBJ_A);
	cr_assert_eq(gen, 42);
	/* one spelling per key; nothing else is a key */
	cr_assert_eq(meta_key_parse(OBJ_A ".g042", name, &gen), -EINVAL);
	cr_assert_eq(meta_key_parse(OBJ_A ".g0", name, &gen), -EINVAL);
	cr_assert_eq(meta_key_parse(OBJ_A ".g-1", name, &gen), -EINVAL);
	cr_assert_eq(meta_key_parse(OBJ_A ".g4x", name, &gen), -EINVAL);
	cr_assert_eq(meta_key_parse(OBJ_A ".g", name, &gen), -EINVAL);
	cr_assert_eq(meta_key_parse("tallyfs-store", name, &gen), -EINVAL);
}

Test(meta_pg, content_made_again_takes_a_new_key)
{
	char old[OBJKEY_MAX];

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_remote_enable(m, true), 0);
	cr_assert_eq(meta_commit(m), 0);
	/* a row, in the bucket, then gone: its key queued for deletion */
	cr_assert_eq(ship(m, true), 1);
	cr_assert_gt(gen_of(m, OBJ_A), 0);
	snprintf(old, sizeof(old), "%s", key_of(m, OBJ_A));
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_blocks_drop(m, NULL, 20, 0), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_remote_named(m, old), 1); /* queued */
	/* its deletion claimed and sent (the DELETE may arrive late) */
	cr_assert_eq(reap_remote_claim(m, old), 1);
	/* the same content again: a new row, a new generation, a key the
	 * DELETE does not name; recorded in the bucket once shipped */
	cr_assert_eq(ship(m, true), 1);
	cr_assert_str_neq(key_of(m, OBJ_A), old);
	cr_assert_eq(remote_of(m, OBJ_A), 1);
	/* the old key still goes; the new one is named */
	cr_assert_eq(reap_remote_free(m, old), 1);
	cr_assert_eq(reap_remote_free(m, key_of(m, OBJ_A)), 0);
	deletion_made(old);
	cr_assert_eq(remote_of(m, OBJ_A), 1);
}

Test(meta_pg, a_row_made_while_an_old_key_is_deleted_has_its_own)
{
	struct meta *b = NULL;

	cr_assert_eq(meta_open(uri, false, 4096, &b), 0);
	/* node m: the key of generation 0 of OBJ_A (no row) is being
	 * deleted */
	cr_assert_eq(reap_remote_claim(m, OBJ_A), 1);
	/* node b commits a row naming it, shipped to the key of its new
	 * generation: in the bucket, whatever the deletion does */
	cr_assert_eq(ship(b, true), 1);
	cr_assert_eq(remote_of(b, OBJ_A), 1);
	/* the old key may still go, never the row's */
	cr_assert_eq(reap_remote_claim(m, OBJ_A), 1);
	cr_assert_eq(reap_remote_claim(m, key_of(b, OBJ_A)), 0);
	deletion_made(OBJ_A);
	cr_assert_eq(remote_of(b, OBJ_A), 1);
	meta_close(b);
}

Test(meta_pg, a_generation_whose_key_was_claimed_is_never_recorded)
{
	char key[OBJKEY_MAX];
	int64_t g = 0;

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_remote_enable(m, true), 0);
	cr_assert_eq(meta_commit(m), 0);
	/* a flush took a generation and shipped to its key; before its
	 * commit, GC of the bucket found the key named by nothing and its
	 * deletion was claimed (grace and delay 0) */
	cr_assert_eq(meta_gen_take(m, &g), 0);
	cr_assert_gt(g, 0);
	meta_key_name(OBJ_A, g, key);
	cr_assert_eq(reap_remote_claim(m, key), 1);
	/* the commit makes the row with that generation: it takes a fresh
	 * one instead, not in the bucket, queued for the loop */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set_gen(m, NULL, 20, 0, OBJ_A, 0, 10, g, NULL),
		     0);
	cr_assert_eq(meta_remote_shipped(m, OBJ_A, g), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_gt(gen_of(m, OBJ_A), g);
	cr_assert_eq(remote_of(m, OBJ_A), 0);
	/* an upload of the claimed generation is not recorded either */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_remote_uploaded(m, OBJ_A, g), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(remote_of(m, OBJ_A), 0);
	cr_assert_eq(meta_remote_named(m, key), 1); /* its deletion queued */
}

Test(meta_pg, a_deletion_not_made_leaves_no_record)
{
	/* claimed, then not made (the job could not start): the key is
	 * as it was, and a row made afterwards is recorded in the bucket */
	cr_assert_eq(reap_remote_claim(m, OBJ_A), 1);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_remote_unclaim(m, OBJ_A), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_remote_shipped(m, OBJ_A, gen_of(m, OBJ_A)), 1);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(remote_of(m, OBJ_A), 1);
}

static int count_next(void *ctx, const char *name, int64_t gen, int64_t seq,
		      uint32_t shard, uint64_t size)
{
	(void)name, (void)gen, (void)seq, (void)shard, (void)size;
	(*(int *)ctx)++;
	return 0;
}

static int uploads_queued(void)
{
	int n = 0;

	cr_assert_eq(meta_remote_next(m, 10, count_next, &n), 0);
	return n;
}

Test(meta_pg, an_upload_waits_for_no_deletion_of_another_key)
{
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_remote_enable(m, true), 0);
	cr_assert_eq(meta_commit(m), 0);
	/* a deletion of the old key under way; the content written again
	 * (not shipped): its upload goes at once, to its own key */
	cr_assert_eq(reap_remote_claim(m, OBJ_A), 1);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(uploads_queued(), 1);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_remote_uploaded(m, OBJ_A, gen_of(m, OBJ_A)), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(remote_of(m, OBJ_A), 1);
	cr_assert_eq(uploads_queued(), 0);
	deletion_made(OBJ_A);
	cr_assert_eq(remote_of(m, OBJ_A), 1);
}

static uint64_t take_stale(void)
{
	uint64_t n = 99;

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_remote_claims_stale(m, &n), 0);
	cr_assert_eq(meta_commit(m), 0);
	return n;
}

Test(meta_pg, a_claim_of_a_node_gone_is_taken_over)
{
	int64_t now = (int64_t)time(NULL);

	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_remote_enable(m, true), 0);
	cr_assert_eq(meta_session_add(m, 7, "h", 1, now, now + 60), 0);
	cr_assert_eq(meta_commit(m), 0);
	/* node 7 claims the deletion of OBJ_A's old key; the content is
	 * written again meanwhile, under its own key */
	meta_set_self(m, 7);
	cr_assert_eq(reap_remote_claim(m, OBJ_A), 1);
	cr_assert_eq(ship(m, true), 1);
	/* node 7 lives: its claim holds */
	cr_assert_eq(take_stale(), 0);
	/* node 7 is gone (killed with its DELETE in flight): another
	 * node takes the claim over, once */
	meta_set_self(m, 8);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_session_remove(m, 7), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(take_stale(), 1);
	cr_assert_eq(take_stale(), 0);
	/* node 7 was only stopped, and its DELETE ends now: it named the
	 * old key, so the row stays in the bucket */
	meta_set_self(m, 7);
	deletion_made(OBJ_A);
	cr_assert_eq(remote_of(m, OBJ_A), 1);
	cr_assert_eq(uploads_queued(), 0);
}

/* Changes whose only answer is success (an inode's insert, an entry's)
 * wait and go with the next statement, their parameters copied: each
 * keeps its own values when the statement is bound again, more than the
 * queue holds go too, and a failure among them fails the transaction,
 * which rolls back whole. */
Test(meta_pg, changes_that_wait_keep_their_values_and_their_errors)
{
	struct meta_inode in, got;
	uint32_t nlink;
	int i;

	memset(&in, 0, sizeof(in));
	in.nspace = 1;
	in.mode = S_IFREG | 0644;
	in.nlink = 1;
	cr_assert_eq(meta_begin(m), 0);
	for (i = 0; i < 20; i++) {
		char name[16];

		in.ino = 100 + (uint64_t)i;
		in.size = 10 * (uint64_t)i;
		snprintf(name, sizeof(name), "w%d", i);
		cr_assert_eq(meta_inode_put(m, NULL, &in), 0);
		cr_assert_eq(meta_dentry_insert(m, NULL, 1, name, in.ino), 0);
	}
	cr_assert_eq(meta_commit(m), 0);
	for (i = 0; i < 20; i++) {
		cr_assert_eq(meta_inode_get(m, NULL, 100 + (uint64_t)i, &got),
			     0);
		cr_assert_eq(got.size, 10 * (uint64_t)i);
	}
	/* a taken name, its insert waiting: the next statement fails with
	 * EEXIST, and the inode inserted before it is not there */
	cr_assert_eq(meta_begin(m), 0);
	in.ino = 200;
	cr_assert_eq(meta_inode_put(m, NULL, &in), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "w3", in.ino), 0);
	cr_assert_eq(meta_inode_update(m, NULL, &in, 1, 0, &nlink), -EEXIST);
	meta_rollback(m);
	cr_assert_eq(meta_inode_get(m, NULL, 200, &got), -ENOENT);
	/* ...or the COMMIT does, if nothing came after it */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &in), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "w4", in.ino), 0);
	cr_assert_eq(meta_commit(m), -EEXIST);
	meta_rollback(m);
	cr_assert_eq(meta_inode_get(m, NULL, 200, &got), -ENOENT);
	/* and the connection goes on */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &in), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "w200", in.ino), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_inode_get(m, NULL, 200, &got), 0);
}

/* A change waiting in a transaction that a lost connection ended goes
 * with it: rolled back, never sent with a later transaction (here the
 * loss is met by a statement prepared again on the new connection) */
Test(meta_pg, a_change_waiting_when_the_connection_is_lost_goes_with_it)
{
	struct meta_inode in;
	uint64_t ino;
	int64_t v;

	drop_connections();
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "probe", 1), 0); /* reconnected */
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "lost", 90), 0); /* waits */
	drop_connections();
	/* a statement not prepared on this connection yet: its prepare
	 * meets the loss inside the transaction */
	cr_assert_eq(meta_inode_get(m, NULL, 1, &in), -EDEADLK);
	meta_rollback(m);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "probe", 2), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_config_get(m, "probe", &v), 0);
	cr_assert_eq(v, 2);
	cr_assert_eq(meta_dentry_lookup(m, NULL, 1, "lost", &ino), -ENOENT);
}

/* Two mounts of the store (as on two hosts), each knowing the inodes as
 * it last read them: an attribute one changes is never written back to
 * its old value by the other's write of another field (a setattr, a
 * flush's size, a parent's times). */
/* An entry's directory has a row: an entry is not made in a directory
 * another node removed, and a directory another node made an entry in
 * is not removed (an rmdir and a create on two nodes at once). */
Test(meta_pg, entries_only_in_directories_that_are_there)
{
	struct meta_inode d = { .ino = 16,
				.nspace = 16,
				.mode = S_IFDIR | 0755,
				.nlink = 2 },
			  f = { .ino = 17,
				.nspace = 16,
				.mode = S_IFREG | 0644,
				.nlink = 1 };
	struct meta *b = NULL;
	uint64_t ino = 0;
	uint32_t n = 0;

	/* a store formatted before the constraint gets it at open */
	admin(db, "ALTER TABLE dentries DROP CONSTRAINT dentries_parent_fk");
	cr_assert_eq(meta_open(uri, false, 4096, &b), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &d), 0);
	cr_assert_eq(meta_dentry_insert(m, NULL, 1, "d", 16), 0);
	cr_assert_eq(meta_commit(m), 0);
	/* b: an entry in d; m, which did not see it: d's row removed */
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_inode_put(b, NULL, &f), 0);
	cr_assert_eq(meta_dentry_insert(b, NULL, 16, "f", 17), 0);
	cr_assert_eq(meta_commit(b), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_delete(m, NULL, 1, "d", 16), 0);
	cr_assert_eq(meta_inode_delete(m, NULL, 16), 0);
	cr_assert_eq(meta_commit(m), -ENOLINK, "d is not empty");
	meta_rollback(m); /* as tally_txn_end() does */
	cr_assert_eq(meta_dentry_lookup(b, NULL, 1, "d", &ino), 0,
		     "rolled back");
	/* the other way: d emptied and removed, then b's entry in it */
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_dentry_delete(b, NULL, 16, "f", 17), 0);
	cr_assert_eq(meta_inode_delete(b, NULL, 17), 0);
	cr_assert_eq(meta_commit(b), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_dentry_delete(m, NULL, 1, "d", 16), 0);
	cr_assert_eq(meta_inode_delete(m, NULL, 16), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_inode_put(b, NULL, &f), 0);
	cr_assert_eq(meta_dentry_insert(b, NULL, 16, "f", 17), 0);
	cr_assert_eq(meta_commit(b), -ENOLINK, "d is gone");
	meta_rollback(b); /* as tally_txn_end() does */
	cr_assert_eq(meta_inode_get(m, NULL, 17, &f), -ENOENT, "rolled back");
	/* the failure seen by the next statement with an answer (a file's
	 * count): an error, not a row missing to be written whole */
	f.ino = 18;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &f), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_dentry_insert(b, NULL, 16, "g", 18), 0);
	f.nlink = 2;
	cr_assert_eq(meta_inode_update(b, NULL, &f, 1, 0, &n), -ENOLINK);
	meta_rollback(b);
	cr_assert_eq(meta_inode_get(m, NULL, 18, &f), 0);
	cr_assert_eq(f.nlink, 1);
	meta_close(b);
}

/* A change no decision reads the count of (a directory's, or none) goes
 * with the next statement: still a move of the count from what the row
 * has, the other fields as masked; a row another mount removed is never
 * made again. */
/* meta_inode_update() of @d on @x in a transaction of its own: the count
 * it gives. */
static uint32_t update(struct meta *x, const struct meta_inode *d,
		       int64_t delta, unsigned fields)
{
	uint32_t n = 0;

	cr_assert_eq(meta_begin(x), 0);
	cr_assert_eq(meta_inode_update(x, NULL, d, delta, fields, &n), 0);
	cr_assert_eq(meta_commit(x), 0);
	return n;
}

Test(meta_pg, changes_without_an_answer_move_counts_and_make_no_rows)
{
	struct meta_inode d = { .ino = 16,
				.nspace = 16,
				.mode = S_IFDIR | 0755,
				.nlink = 2 },
			  got;
	struct meta *b = NULL;

	cr_assert_eq(meta_open(uri, false, 4096, &b), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &d), 0);
	cr_assert_eq(meta_commit(m), 0);
	/* b: a subdirectory made (+1); m, from its copy: another (+1), and
	 * its mtime, with a mode it does not write */
	d.nlink = 3;
	cr_assert_eq(update(b, &d, 1, 0), 3);
	d.mode = S_IFDIR | 0700;
	d.mtime.tv_sec = 12345;
	cr_assert_eq(update(m, &d, 1, META_F_MTIME), 3,
		     "its own count, not the store's");
	cr_assert_eq(meta_inode_get(b, NULL, 16, &got), 0);
	cr_assert_eq(got.nlink, 4);
	cr_assert_eq(got.mtime.tv_sec, 12345);
	cr_assert_eq(got.mode, S_IFDIR | 0755);
	/* a row that is not there (b removed it: an rmdir on another
	 * node): m's attribute write and a directory's count going up
	 * change nothing and make no row */
	d.ino = 17;
	d.nlink = 5;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &d), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_inode_delete(b, NULL, 17), 0);
	cr_assert_eq(meta_commit(b), 0);
	cr_assert_eq(update(m, &d, 0, META_F_MTIME), 5);
	cr_assert_eq(update(m, &d, 1, META_F_MTIME), 5);
	cr_assert_eq(meta_inode_get(b, NULL, 17, &got), -ENOENT,
		     "a removed inode's row made again");
	/* a directory's count going down is the store's: from m's own 3
	 * (b's +1 missed), two subdirectories removed leave 2, not 1 */
	d.ino = 16;
	d.nlink = 2;
	cr_assert_eq(update(m, &d, -1, 0), 3);
	d.nlink = 2;
	cr_assert_eq(update(m, &d, -1, 0), 2);
	/* a file's count is answered by the store */
	d.ino = 18;
	d.mode = S_IFREG | 0644;
	d.nlink = 1;
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &d), 0);
	cr_assert_eq(meta_commit(m), 0);
	d.nlink = 2;
	cr_assert_eq(update(b, &d, 1, 0), 2);
	d.nlink = 0;
	cr_assert_eq(update(m, &d, -1, 0), 1,
		     "the store's count: a link is left");
	/* a file's count moved once its row is gone (a link on m while b
	 * removed the last name and the blocks): ENOENT, no row made with
	 * m's size and no blocks */
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_inode_delete(b, NULL, 18), 0);
	cr_assert_eq(meta_commit(b), 0);
	{
		uint32_t n = 0;

		d.nlink = 2;
		d.size = 4096;
		cr_assert_eq(meta_begin(m), 0);
		cr_assert_eq(meta_inode_update(m, NULL, &d, 1, 0, &n), -ENOENT);
		meta_rollback(m);
	}
	cr_assert_eq(meta_inode_get(b, NULL, 18, &got), -ENOENT);
	meta_close(b);
}

/*
 * Two mounts of the test's store (@o: its hooks are a's alone), a and b,
 * each with its cache directory in a new temp directory (returned,
 * malloc'ed: two_nodes_close() frees it), and a namespace "ns" made on a
 * (*@ns).
 */
static char *two_nodes(struct tally_opts *o, struct tally **a, struct tally **b,
		       uint64_t *ns)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	char *dir = tu_tmpdir(), path[4096];
	struct stat st;

	cr_assert_not_null(dir);
	o->block_size = 4096;
	o->create = true;
	o->meta = uri;
	snprintf(path, sizeof(path), "%s/node0", dir);
	cr_assert_eq(tally_open(path, o, a), 0);
	o->stream_hook = NULL;
	o->release_hook = NULL;
	o->rename_hook = NULL;
	snprintf(path, sizeof(path), "%s/node1", dir);
	cr_assert_eq(tally_open(path, o, b), 0);
	cr_assert_eq(tally_mkdir(*a, &me, 1, "ns", 0755, &st), 0);
	*ns = st.st_ino;
	return dir;
}

static void two_nodes_close(struct tally *a, struct tally *b, char *dir)
{
	cr_assert_eq(tally_close(a), 0);
	cr_assert_eq(tally_close(b), 0);
	tu_rmrf(dir);
	free(dir);
}

/*
 * A create whose COMMIT reaches the server but whose answer is lost
 * (EIO: the outcome unknown) spent its inode number: the next create
 * takes another, not the committed file's (a row already there: EEXIST
 * for every create after, or, written over, two names of one inode
 * with a link count of one).
 */
Test(meta_pg, a_create_whose_commit_answer_is_lost_spends_its_number)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct tally_opts o = { .block_size = 4096, .create = true };
	struct meta_inode md;
	struct tally *a, *b;
	struct stat st;
	uint64_t ns, lost, c;
	char *dir;

	dir = two_nodes(&o, &a, &b, &ns);
	meta_inject_lost(tally_meta_lock(a), 1);
	tally_meta_unlock(a);
	cr_assert_eq(tally_mknod(a, &me, ns, "lost", S_IFREG | 0644, 0, &st),
		     -EIO);
	/* committed all the same */
	cr_assert_eq(tally_lookup(b, ns, "lost", &st), 0);
	lost = st.st_ino;
	tally_forget(b, lost, 1);
	cr_assert_eq(tally_mknod(a, &me, ns, "next", S_IFREG | 0644, 0, &st),
		     0);
	c = st.st_ino;
	cr_assert_neq(c, lost);
	cr_assert_eq(meta_inode_get(m, NULL, lost, &md), 0);
	cr_assert_eq(md.nlink, 1);
	cr_assert_eq(tally_lookup(b, ns, "lost", &st), 0);
	cr_assert_eq(st.st_ino, lost, "the lost create's name moved");
	tally_forget(b, lost, 1);
	two_nodes_close(a, b, dir);
}

Test(meta_pg, attributes_changed_on_two_mounts_are_all_kept)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct tally_opts o = { .block_size = 4096, .create = true };
	char *dir;
	struct tally *a, *b;
	struct meta_inode md;
	struct stat st, in;
	uint64_t ns, f, d;

	dir = two_nodes(&o, &a, &b, &ns);
	cr_assert_eq(tally_create(a, &me, ns, "f", 0644, &st), 0);
	f = st.st_ino;
	cr_assert_eq(tally_release(a, f), 0);
	cr_assert_eq(tally_mkdir(a, &me, ns, "d", 0755, &st), 0);
	d = st.st_ino;
	/* b reads both as they are now */
	cr_assert_eq(tally_lookup(b, ns, "f", &st), 0);
	cr_assert_eq(tally_lookup(b, ns, "d", &st), 0);
	cr_assert_eq(tally_open_file(b, f, O_RDWR), 0);

	/* a: chmod; b: utimes, from its copy of the old mode */
	memset(&in, 0, sizeof(in));
	in.st_mode = 0600;
	cr_assert_eq(tally_setattr(a, f, &in, TALLY_SET_MODE, &st), 0);
	in.st_mtim.tv_sec = 1000000000;
	cr_assert_eq(tally_setattr(b, f, &in, TALLY_SET_MTIME, &st), 0);
	/* a: chown; b: a write through the handle it has open, flushed */
	in.st_uid = 1234;
	cr_assert_eq(tally_setattr(a, f, &in, TALLY_SET_UID, &st), 0);
	cr_assert_eq(tally_write(b, f, "data", 4, 0), 4);
	cr_assert_eq(tally_flush(b, f),
		     0); /* the close: waits for the commit */
	cr_assert_eq(tally_release(b, f), 0);
	cr_assert_eq(meta_inode_get(m, NULL, f, &md), 0);
	cr_assert_eq(md.mode, S_IFREG | 0600, "mode %o", md.mode);
	cr_assert_eq(md.uid, 1234);
	cr_assert_eq(md.size, 4);
	cr_assert_gt(md.mtime.tv_sec, 1000000000, "the write's mtime");

	/* a: chmod of a directory; b: a file made in it (its times) */
	in.st_mode = 0700;
	cr_assert_eq(tally_setattr(a, d, &in, TALLY_SET_MODE, &st), 0);
	cr_assert_eq(tally_mknod(b, &me, d, "g", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(meta_inode_get(m, NULL, d, &md), 0);
	cr_assert_eq(md.mode, S_IFDIR | 0700, "mode %o", md.mode);

	/* a write's mtime, not flushed yet, carried by a rename whose
	 * commit fails: still written by the flush after it */
	cr_assert_eq(tally_create(a, &me, ns, "h", 0644, &st), 0);
	f = st.st_ino;
	usleep(2000);
	cr_assert_eq(tally_write(a, f, "data", 4, 0), 4);
	cr_assert_eq(tally_getattr(a, f, &in), 0);
	meta_inject(tally_meta_lock(a), 1, -EIO);
	tally_meta_unlock(a);
	cr_assert_eq(tally_rename(a, ns, "h", ns, "h2", 0), -EIO);
	cr_assert_eq(tally_flush(a, f), 0);
	cr_assert_eq(tally_release(a, f), 0);
	cr_assert_eq(meta_inode_get(m, NULL, f, &md), 0);
	cr_assert_eq(md.mtime.tv_sec, in.st_mtim.tv_sec);
	cr_assert_eq(md.mtime.tv_nsec, in.st_mtim.tv_nsec,
		     "the write's mtime is not in the row");

	two_nodes_close(a, b, dir);
}

/* The rows of @table whose @col is @v, read from the store. */
static int64_t rows_of(const char *table, const char *col, uint64_t v)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM %s WHERE %s = %" PRIu64, table, col, v);
	return db_int(db, sql);
}

/* The holds of @ino. */
static int64_t holds_of(uint64_t ino)
{
	return rows_of("open_holds", "ino", ino);
}

/* Wait up to 10 s for @ino's holds to go. */
static bool hold_gone(uint64_t ino)
{
	int i;

	for (i = 0; i < 200; i++) {
		if (holds_of(ino) == 0)
			return true;
		usleep(50000);
	}
	return false;
}

/* File @name made in @dir on node @t, one block of @buf written, flushed
 * and closed (its hold kept a while): its inode number. */
static uint64_t written_closed(struct tally *t, uint64_t dir, const char *name,
			       const char *buf, size_t len)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct stat st;
	uint64_t ino;

	cr_assert_eq(tally_create(t, &me, dir, name, 0644, &st), 0);
	ino = st.st_ino;
	cr_assert_eq(tally_write(t, ino, buf, len, 0), (ssize_t)len);
	cr_assert_eq(tally_flush(t, ino), 0);
	cr_assert_eq(tally_release(t, ino), 0);
	return ino;
}

/* Wait up to 10 s for @ino's row to go (a free follows the drop of the
 * last hold, in a transaction of its own): whether it went. */
static bool row_gone(uint64_t ino)
{
	struct meta_inode md;
	int i;

	for (i = 0; i < 200 && meta_inode_get(m, NULL, ino, &md) == 0; i++)
		usleep(50000);
	return meta_inode_get(m, NULL, ino, &md) == -ENOENT;
}

/* A flush of one inode held in its stream phase until let go. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t ino;
	bool in, go;
} stall = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false,
	    false };

static void stall_hook(void *arg, uint64_t seq, uint64_t ino)
{
	(void)arg;
	(void)seq;
	pthread_mutex_lock(&stall.mu);
	if (ino == stall.ino) {
		stall.in = true;
		pthread_cond_broadcast(&stall.cv);
		while (!stall.go)
			pthread_cond_wait(&stall.cv, &stall.mu);
	}
	pthread_mutex_unlock(&stall.mu);
}

/*
 * Node a releases a file, and its hold goes, while the flush the
 * release started is still in flight; node b removes the file's last name, and
 * with no hold left frees its rows. a's flush, committing after that,
 * writes no block rows for the inode that is gone: every block row has
 * its inode, every count is its references.
 */
Test(meta_pg, a_flush_after_another_node_freed_its_inode_writes_nothing)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct tally_opts o = { .block_size = 4096, .create = true };
	char *dir, buf[3 * 4096];
	struct tally *a, *b;
	struct meta_inode md;
	struct stat st;
	uint64_t ns, f;

	o.stream_hook = stall_hook;
	dir = two_nodes(&o, &a, &b, &ns);
	cr_assert_eq(tally_create(a, &me, ns, "f", 0644, &st), 0);
	f = st.st_ino;
	tu_fill(buf, sizeof(buf), 1);
	cr_assert_eq(tally_write(a, f, buf, sizeof(buf), 0), sizeof(buf));
	cr_assert_eq(tally_flush(a, f), 0);
	cr_assert_eq(db_int(db, "SELECT count(*) FROM extents"), 3);

	/* new data; the release's flush stalls, the hold goes */
	tu_fill(buf, sizeof(buf), 2);
	cr_assert_eq(tally_write(a, f, buf, sizeof(buf), 4096), sizeof(buf));
	pthread_mutex_lock(&stall.mu);
	stall.ino = f;
	stall.in = stall.go = false;
	pthread_mutex_unlock(&stall.mu);
	cr_assert_eq(tally_release(a, f), 0);
	pthread_mutex_lock(&stall.mu);
	while (!stall.in)
		pthread_cond_wait(&stall.cv, &stall.mu);
	pthread_mutex_unlock(&stall.mu);
	/* the hold is kept a while after the release (a file another node
	 * unlinked meanwhile stays), then dropped: the flush still stalls */
	cr_assert(hold_gone(f), "the release's hold is never dropped");

	/* b removes the last name: nobody holds it, the rows go */
	cr_assert_eq(tally_lookup(b, ns, "f", &st), 0);
	cr_assert_eq(tally_unlink(b, ns, "f"), 0);
	cr_assert_eq(meta_inode_get(m, NULL, f, &md), -ENOENT);

	pthread_mutex_lock(&stall.mu);
	stall.go = true;
	pthread_cond_broadcast(&stall.cv);
	pthread_mutex_unlock(&stall.mu);
	cr_assert_eq(tally_drain(a, NULL, 30), 0);
	cr_assert_eq(db_int(db, "SELECT count(*) FROM extents b WHERE NOT "
				"EXISTS (SELECT 1 FROM inodes i WHERE "
				"i.ino = b.ino)"),
		     0, "block rows of an inode that is gone");
	cr_assert_eq(db_int(db, "SELECT count(*) FROM objects o WHERE "
				"refcount <> (SELECT count(*) FROM extents b "
				"WHERE b.obj = o.id)"),
		     0, "counts that are not their references");
	cr_assert_eq(meta_inode_get(m, NULL, f, &md), -ENOENT, "made again");

	two_nodes_close(a, b, dir);
}

/* Node b's change, made while node a's rename is between its lookups and
 * its transaction (once). */
static struct {
	struct tally *b;
	uint64_t ns;
	const char *unlink; /* the name b removes */
	bool done;
} meddle;

static void meddle_hook(void *arg, uint64_t ino)
{
	(void)arg;
	(void)ino;
	if (meddle.done)
		return;
	meddle.done = true;
	cr_assert_eq(tally_unlink(meddle.b, meddle.ns, meddle.unlink), 0);
}

/* A rename as the front end runs it: again while it says EDEADLK. */
static int rename_retried(struct tally *t, uint64_t ns, const char *from,
			  const char *to)
{
	unsigned n = 0;
	int rc;

	do
		rc = tally_rename(t, ns, from, ns, to, 0);
	while (tally_retry(t, &rc, &n));
	return rc;
}

/*
 * Node a renames over a target that node b removes between a's lookups
 * and a's transaction: a plain rename, the target's link taken once.
 * Then over a source that b removes the same way: ENOENT, nothing
 * changed (before: a rename that "succeeded" and moved nothing).
 */
Test(meta_pg, a_rename_meets_what_another_node_removed_meanwhile)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct tally_opts o = { .block_size = 4096, .create = true };
	char *dir;
	struct tally *a, *b;
	struct meta_inode md;
	struct stat st;
	uint64_t ns, src, dst, ino = 0;

	o.rename_hook = meddle_hook;
	dir = two_nodes(&o, &a, &b, &ns);
	cr_assert_eq(tally_mknod(a, &me, ns, "src", S_IFREG | 0644, 0, &st), 0);
	src = st.st_ino;
	cr_assert_eq(tally_mknod(a, &me, ns, "dst", S_IFREG | 0644, 0, &st), 0);
	dst = st.st_ino;
	/* a second name of dst: its count shows a link taken twice */
	cr_assert_eq(tally_link(a, dst, ns, "dst2", &st), 0);

	meddle.b = b;
	meddle.ns = ns;
	meddle.unlink = "dst";
	meddle.done = false;
	cr_assert_eq(rename_retried(a, ns, "src", "dst"), 0);
	cr_assert(meddle.done);
	cr_assert_eq(meta_dentry_lookup(m, NULL, ns, "dst", &ino), 0);
	cr_assert_eq(ino, src, "dst names the source");
	cr_assert_eq(meta_dentry_lookup(m, NULL, ns, "src", &ino), -ENOENT);
	cr_assert_eq(meta_inode_get(m, NULL, dst, &md), 0);
	cr_assert_eq(md.nlink, 1, "dst2 keeps its file: nlink %u", md.nlink);

	/* b removes the source itself meanwhile */
	meddle.unlink = "dst";
	meddle.done = false;
	cr_assert_eq(rename_retried(a, ns, "dst", "other"), -ENOENT);
	cr_assert(meddle.done);
	cr_assert_eq(meta_dentry_lookup(m, NULL, ns, "other", &ino), -ENOENT,
		     "a rename of a name that went made it again");
	cr_assert_eq(meta_dentry_lookup(m, NULL, ns, "dst2", &ino), 0);
	cr_assert_eq(ino, dst);

	two_nodes_close(a, b, dir);
}

/*
 * The last close keeps the node's hold a while (no round trip), then the
 * flusher drops it: a file another node unlinked meanwhile stays until
 * then, and goes with the drop; an open within the time reuses the kept
 * hold; an unmount drops every kept hold, freeing what it kept.
 */
Test(meta_pg, a_hold_is_kept_after_the_last_close_then_dropped)
{
	struct tally_opts o = { .block_size = 4096, .create = true };
	char *dir, buf[4096], back[4096];
	struct tally *a, *b;
	struct meta_inode md;
	struct stat st;
	uint64_t ns, f, g;

	dir = two_nodes(&o, &a, &b, &ns);
	tu_fill(buf, sizeof(buf), 7);
	f = written_closed(a, ns, "f", buf, sizeof(buf));
	cr_assert_eq(holds_of(f), 1, "the hold is kept after the close");

	/* b removes the last name: a's kept hold keeps the file */
	cr_assert_eq(tally_lookup(b, ns, "f", &st), 0);
	cr_assert_eq(tally_unlink(b, ns, "f"), 0);
	cr_assert_eq(meta_inode_get(m, NULL, f, &md), 0);
	cr_assert_eq(md.nlink, 0);
	cr_assert(hold_gone(f), "the kept hold is never dropped");
	cr_assert(row_gone(f), "the file goes with the kept hold");
	cr_assert_eq(db_int(db, "SELECT count(*) FROM extents"), 0);

	/* closed and opened again within the time: the kept hold serves,
	 * and holds while the file is open past it */
	g = written_closed(a, ns, "g", buf, sizeof(buf));
	cr_assert_eq(tally_open_file(a, g, O_RDONLY), 0);
	usleep(3500 * 1000); /* past the time: the open keeps it */
	cr_assert_eq(holds_of(g), 1, "an open file lost its hold");
	cr_assert_eq(tally_lookup(b, ns, "g", &st), 0);
	cr_assert_eq(tally_unlink(b, ns, "g"), 0);
	cr_assert_eq(meta_inode_get(m, NULL, g, &md), 0,
		     "freed while open on a");
	cr_assert_eq(tally_read(a, g, back, sizeof(back), 0), sizeof(back));
	cr_assert_eq(memcmp(back, buf, sizeof(buf)), 0);
	cr_assert_eq(tally_release(a, g), 0);
	/* nlink 0 as a knows it now? then it went at the close, else it is
	 * kept: the unmount drops it either way */
	cr_assert_eq(tally_close(a), 0);
	cr_assert_eq(meta_inode_get(m, NULL, g, &md), -ENOENT,
		     "the unmount left a file nobody holds");
	cr_assert_eq(db_int(db, "SELECT count(*) FROM open_holds"), 0);
	cr_assert_eq(tally_close(b), 0);
	tu_rmrf(dir);
	free(dir);
}

/*
 * Kept holds are dropped many in a transaction (core/fs/file.c, HOLD_BATCH
 * of 512): 600 files closed on a, every third unlinked on b meanwhile.
 * Once due, every hold of a goes, the unlinked files with their rows and
 * blocks, the others stay whole; a file opened again keeps its hold.
 */
Test(meta_pg, kept_holds_are_dropped_in_batches)
{
	struct tally_opts o = { .block_size = 4096, .create = true };
	enum {
		N = 600
	};
	char *dir, name[32], buf[4096];
	struct tally *a, *b;
	struct meta_inode md;
	struct stat st;
	uint64_t ns, ino[N], kept;
	int i, gone = 0;

	dir = two_nodes(&o, &a, &b, &ns);
	tu_fill(buf, sizeof(buf), 3);
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		ino[i] = written_closed(a, ns, name, buf, sizeof(buf));
	}
	for (i = 0; i < N; i += 3) {
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_eq(tally_lookup(b, ns, name, &st), 0);
		cr_assert_eq(tally_unlink(b, ns, name), 0);
	}
	/* one opened again: its kept hold serves the open and stays */
	kept = ino[1];
	cr_assert_eq(tally_open_file(a, kept, O_RDONLY), 0);
	for (i = 0;
	     i < 200 && db_int(db, "SELECT count(*) FROM open_holds") > 1; i++)
		usleep(50000);
	cr_assert_eq(db_int(db, "SELECT count(*) FROM open_holds"), 1,
		     "kept holds are never dropped");
	cr_assert_eq(holds_of(kept), 1, "the open file lost its hold");
	/* the frees follow the batch's commit, each in a transaction */
	for (i = 0; i < 200 && db_int(db, "SELECT count(*) FROM inodes "
					  "WHERE nlink = 0") > 0;
	     i++)
		usleep(50000);
	for (i = 0; i < N; i++) {
		int rc = meta_inode_get(m, NULL, ino[i], &md);

		if (i % 3 == 0) {
			cr_assert_eq(rc, -ENOENT, "unlinked f%d stays", i);
			gone++;
		} else {
			cr_assert_eq(rc, 0, "f%d is gone", i);
			cr_assert_eq(md.nlink, 1);
		}
	}
	cr_assert_eq(gone, N / 3);
	cr_assert_eq(db_int(db, "SELECT count(*) FROM extents"), N - N / 3);
	cr_assert_eq(tally_release(a, kept), 0);
	two_nodes_close(a, b, dir);
}

/* The dir_watch rows of @dir. */
static int64_t watches_of(uint64_t dir)
{
	return rows_of("dir_watch", "dir", dir);
}

/* Wait up to 5 s for node @t to find @name in @dir: its lookup's rc. */
static int lookup_soon(struct tally *t, uint64_t dir, const char *name)
{
	struct stat st;
	int i, rc = -ENOENT;

	for (i = 0; i < 100 && rc == -ENOENT; i++) {
		rc = tally_lookup(t, dir, name, &st);
		if (rc == -ENOENT)
			usleep(50000);
	}
	if (!rc)
		tally_forget(t, st.st_ino, 1);
	return rc;
}

/*
 * A directory a node made while its watch listened is known whole
 * (core/fs/dirnames.c): a lookup of a name it lacks is ENOENT with no round
 * trip, so a name another node inserted without notifying (its
 * dir_watch row taken away by hand) stays unseen; with the row, another
 * node's insert notifies and the node asks the store again. Names the
 * node adds itself (create, rename, link) are found; a node without a
 * watch knows no directory whole; the rows go with the session.
 */
Test(meta_pg, a_directory_made_here_is_known_whole)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	static const struct tally_inval none = { NULL, NULL, NULL };
	struct tally_opts o = { .block_size = 4096, .create = true };
	char *dir, name[32], sql[256];
	struct tally *a, *b;
	struct stat st;
	uint64_t ns, d = 0, d2 = 0, e, f;
	int64_t node;
	int i;

	dir = two_nodes(&o, &a, &b, &ns);
	cr_assert_eq(tally_watch(a, &none), 0);
	/* known whole once the watch listens: the mkdir's row says so */
	for (i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		cr_assert_eq(tally_mkdir(a, &me, ns, name, 0755, &st), 0);
		if (watches_of(st.st_ino) == 1) {
			d = st.st_ino;
			break;
		}
		usleep(50000);
	}
	cr_assert_neq(d, 0, "the watch never listened");
	cr_assert_eq(tally_mknod(a, &me, d, "mine", S_IFREG | 0644, 0, &st), 0);
	f = st.st_ino;
	cr_assert_eq(lookup_soon(a, d, "mine"), 0);
	cr_assert_eq(tally_lookup(a, d, "none", &st), -ENOENT);

	/* b's insert with no row to notify: a answers from its set */
	snprintf(sql, sizeof(sql),
		 "SELECT node FROM dir_watch WHERE dir = %" PRIu64, d);
	node = db_int(db, sql);
	admin(db, "ALTER TABLE dir_watch DISABLE TRIGGER dir_watch_ended");
	snprintf(sql, sizeof(sql),
		 "WITH x AS (DELETE FROM dir_watch WHERE dir = %" PRIu64
		 " RETURNING 1) SELECT count(*) FROM x",
		 d);
	cr_assert_eq(db_int(db, sql), 1);
	admin(db, "ALTER TABLE dir_watch ENABLE TRIGGER dir_watch_ended");
	cr_assert_eq(tally_mknod(b, &me, d, "x", S_IFREG | 0644, 0, &st), 0);
	usleep(300000);
	cr_assert_eq(tally_lookup(a, d, "x", &st), -ENOENT,
		     "a asked the store about a directory known whole");
	/* with the row, b's insert notifies: a asks the store again */
	snprintf(sql, sizeof(sql),
		 "WITH x AS (INSERT INTO dir_watch VALUES (%" PRIu64
		 ", %" PRId64 ") RETURNING 1) SELECT count(*) FROM x",
		 d, node);
	cr_assert_eq(db_int(db, sql), 1);
	cr_assert_eq(tally_mknod(b, &me, d, "y", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(lookup_soon(a, d, "y"), 0, "b's name never seen on a");
	cr_assert_eq(lookup_soon(a, d, "x"), 0);
	cr_assert_eq(watches_of(d), 0, "b's insert left a's row");

	/* a rename and a link into a directory known whole are found */
	for (i = 0; i < 100 && !d2; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		cr_assert_eq(tally_mkdir(a, &me, ns, name, 0755, &st), 0);
		if (watches_of(st.st_ino) == 1)
			d2 = st.st_ino;
	}
	cr_assert_neq(d2, 0);
	cr_assert_eq(tally_rename(a, d, "mine", d2, "moved", 0), 0);
	cr_assert_eq(tally_lookup(a, d2, "moved", &st), 0);
	tally_forget(a, st.st_ino, 1);
	cr_assert_eq(tally_link(a, f, d2, "linked", &st), 0);
	cr_assert_eq(tally_lookup(a, d2, "linked", &st), 0);
	tally_forget(a, st.st_ino, 1);
	cr_assert_eq(tally_lookup(a, d2, "none", &st), -ENOENT);

	/* b has no watch: its directory is never known whole */
	cr_assert_eq(tally_mkdir(b, &me, ns, "e", 0755, &st), 0);
	e = st.st_ino;
	cr_assert_eq(watches_of(e), 0);
	cr_assert_eq(tally_lookup(b, e, "z", &st), -ENOENT);
	cr_assert_eq(tally_mknod(a, &me, e, "z", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(tally_lookup(b, e, "z", &st), 0);
	tally_forget(b, st.st_ino, 1);

	/* the rows go with a's session */
	tally_unwatch(a);
	cr_assert_eq(tally_close(a), 0);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM dir_watch WHERE node = %" PRId64, node);
	cr_assert_eq(db_int(db, sql), 0);
	cr_assert_eq(tally_close(b), 0);
	tu_rmrf(dir);
	free(dir);
}

/* With no_negcache (-o nonegcache) a listening node knows no directory
 * whole: its mkdir registers nothing, and every lookup asks the store. */
Test(meta_pg, no_negcache_knows_no_directory_whole)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	static const struct tally_inval none = { NULL, NULL, NULL };
	struct tally_opts o = { .block_size = 4096,
				.create = true,
				.no_negcache = true };
	char *dir, name[32];
	struct tally *a, *b;
	struct stat st;
	uint64_t ns, d;
	int i;

	dir = two_nodes(&o, &a, &b, &ns);
	cr_assert_eq(tally_watch(a, &none), 0);
	/* a listens once it has seen one of b's changes */
	for (i = 0; i < 100 && tally_watch_seen(a) == 0; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		cr_assert_eq(tally_mknod(b, &me, ns, name, S_IFREG | 0644, 0,
					 &st),
			     0);
		cr_assert_eq(tally_unlink(b, ns, name), 0);
		usleep(50000);
	}
	cr_assert_gt(tally_watch_seen(a), 0, "a's watch never listened");
	cr_assert_eq(tally_mkdir(a, &me, ns, "d", 0755, &st), 0);
	d = st.st_ino;
	cr_assert_eq(watches_of(d), 0);
	cr_assert_eq(tally_lookup(a, d, "x", &st), -ENOENT);
	cr_assert_eq(tally_mknod(b, &me, d, "x", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(tally_lookup(a, d, "x", &st), 0, "a did not ask");
	tally_forget(a, st.st_ino, 1);
	tally_unwatch(a);
	two_nodes_close(a, b, dir);
}

/* A connection of the test's own to its database: for a transaction
 * held open across the code under test. */
static PGconn *raw_conn(void)
{
	char conn[512];
	PGconn *c;

	snprintf(conn, sizeof(conn), "%s/%s", getenv("TALLY_TEST_PG"), db);
	c = PQconnectdb(conn);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	return c;
}

static void raw_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);

	cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK ||
			  PQresultStatus(r) == PGRES_TUPLES_OK,
		  "%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

/*
 * The number of inodes is counted in a row per node (by the last four
 * bits of its id): one node's create waits for no other node's create
 * in flight, whose count row stays locked until its COMMIT. An insert is
 * counted by the statement sent with it, a delete by a trigger. A store
 * that has only the one row of before, and a trigger that counted
 * inserts, gets the nodes' rows and a trigger of deletes at open, and
 * keeps its count.
 */
Test(meta_pg, the_nodes_count_their_inodes_in_rows_of_their_own)
{
	struct meta_inode in = {
		.ino = 500, .nspace = 1, .mode = S_IFREG, .nlink = 1
	};
	uint64_t before, after, bytes;
	struct meta *b = NULL;
	PGconn *c;

	cr_assert_eq(meta_statfs(m, &before, &bytes), 0);
	cr_assert_eq(before, 1, "the root");
	/* node 1's create, open; ended by the server if it is kept idle
	 * for 5 s (so that a wait below ends, and fails the COMMIT) */
	c = raw_conn();
	raw_exec(c, "SET idle_in_transaction_session_timeout = '5s'");
	raw_exec(c, "BEGIN");
	raw_exec(c, "SET LOCAL tally.node = '1'");
	raw_exec(c, "INSERT INTO inodes(ino, ver, nspace, mode, uid, gid, "
		    "nlink, size, rdev, alloc, atime, mtime, ctime) VALUES "
		    "(400, 0, 1, 32768, 0, 0, 1, 0, 0, 0, 0, 0, 0)");
	raw_exec(c, "UPDATE config SET value = value + 1 "
		    "WHERE key = 'inodes.1'");
	/* node -3 (its last bits 13) */
	meta_set_self(m, -3);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_put(m, NULL, &in), 0);
	cr_assert_eq(meta_commit(m), 0);
	raw_exec(c, "COMMIT");
	PQfinish(c);
	cr_assert_eq(meta_statfs(m, &after, &bytes), 0);
	cr_assert_eq(after, before + 2);
	cr_assert_eq(db_int(db, "SELECT value FROM config "
				"WHERE key = 'inodes.1'"),
		     1);
	cr_assert_eq(db_int(db, "SELECT value FROM config "
				"WHERE key = 'inodes.13'"),
		     1);
	/* a delete counts down in the deleting node's row */
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_inode_delete(m, NULL, 400), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(meta_statfs(m, &after, &bytes), 0);
	cr_assert_eq(after, before + 1);
	/* a store of before: one row, the old function */
	admin(db, "DELETE FROM config WHERE key LIKE 'inodes.%';"
		  "UPDATE config SET value = 7 WHERE key = 'inodes';"
		  "CREATE OR REPLACE FUNCTION tally_inodes() RETURNS trigger "
		  "LANGUAGE plpgsql AS $$ BEGIN UPDATE config SET value = "
		  "value + 1 WHERE key = 'inodes'; RETURN NULL; END $$;"
		  "DROP TRIGGER inodes_count ON inodes;"
		  "CREATE TRIGGER inodes_count AFTER INSERT OR DELETE ON "
		  "inodes FOR EACH ROW EXECUTE FUNCTION tally_inodes();"
		  "DROP TRIGGER inodes_notify ON inodes;"
		  "CREATE TRIGGER inodes_notify AFTER UPDATE OR DELETE ON "
		  "inodes FOR EACH ROW EXECUTE FUNCTION tally_notify_inode();"
		  "DROP TRIGGER dentries_notify ON dentries;"
		  "CREATE TRIGGER dentries_notify AFTER INSERT OR DELETE OR "
		  "UPDATE ON dentries FOR EACH ROW EXECUTE FUNCTION "
		  "tally_notify_entry()");
	cr_assert_eq(meta_open(uri, false, 4096, &b), 0);
	meta_set_self(b, 2);
	in.ino = 501;
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_inode_put(b, NULL, &in), 0);
	cr_assert_eq(meta_commit(b), 0);
	cr_assert_eq(meta_statfs(b, &after, &bytes), 0);
	cr_assert_eq(after, 8);
	cr_assert_eq(db_int(db, "SELECT value FROM config "
				"WHERE key = 'inodes.2'"),
		     1);
	cr_assert_eq(db_int(db, "SELECT count(*) FROM pg_trigger WHERE "
				"tgname = 'inodes_count' AND tgtype & 4 = 0"),
		     1, "the trigger of before still counts inserts");
	cr_assert_eq(
		db_int(db, "SELECT count(*) FROM pg_trigger WHERE "
			   "tgname = 'dentries_notify' AND tgtype & 4 = 0"),
		1, "the entries' trigger of before still fires on inserts");
	cr_assert_eq(db_int(db, "SELECT count(*) FROM pg_trigger WHERE "
				"tgname = 'inodes_notify' AND tgtype & 16 = 0"),
		     1, "the inodes' trigger of before still fires on updates");
	meta_close(b);
}

/*
 * Another node's removal of the last name, not committed yet when node
 * a's batch of kept holds runs (the count at 1 in a's snapshot, at 0 in
 * the other's transaction, which sees a's hold and so leaves the file
 * to it): a's batch waits for the row and reads the count after the
 * lock, and frees the file. A batch that read the count before the
 * lock, or filtered on it below the lock, left it to nobody.
 */
Test(meta_pg, a_batch_of_kept_holds_meets_an_unlink_in_flight)
{
	struct tally_opts o = { .block_size = 4096, .create = true };
	char *dir, buf[4096], sql[256];
	struct tally *a, *b;
	uint64_t ns, f;
	PGconn *c;

	dir = two_nodes(&o, &a, &b, &ns);
	tu_fill(buf, sizeof(buf), 5);
	f = written_closed(a, ns, "f", buf, sizeof(buf));
	cr_assert_eq(holds_of(f), 1);
	/* the other node's unlink, held open past a's batch (due 2 s after
	 * the close, on the next tick) */
	c = raw_conn();
	raw_exec(c, "BEGIN");
	snprintf(sql, sizeof(sql), "DELETE FROM dentries WHERE ino = %" PRIu64,
		 f);
	raw_exec(c, sql);
	snprintf(sql, sizeof(sql),
		 "UPDATE inodes SET nlink = 0 WHERE ino = %" PRIu64, f);
	raw_exec(c, sql);
	usleep(3500 * 1000);
	raw_exec(c, "COMMIT");
	PQfinish(c);
	cr_assert(hold_gone(f), "the kept hold is never dropped");
	cr_assert(row_gone(f), "the unlinked file is left to nobody");
	cr_assert_eq(db_int(db, "SELECT count(*) FROM extents"), 0);
	two_nodes_close(a, b, dir);
}

/* A rename into a directory another node removed, which this node still
 * has in memory: ENOENT at once, not run again until EIO (the retry of a
 * rename whose names went would meet the same gone parent). */
Test(meta_pg, a_rename_into_a_directory_another_node_removed_is_enoent)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct tally_opts o = { .block_size = 4096, .create = true };
	char *dir;
	struct tally *a, *b;
	struct stat st;
	uint64_t ns, d2;
	unsigned n = 0;
	int rc;

	dir = two_nodes(&o, &a, &b, &ns);
	cr_assert_eq(tally_mkdir(a, &me, ns, "d2", 0755, &st), 0);
	d2 = st.st_ino;
	cr_assert_eq(tally_mknod(a, &me, ns, "src", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(tally_lookup(b, ns, "d2", &st), 0);
	cr_assert_eq(tally_rmdir(b, ns, "d2"), 0);
	do
		rc = tally_rename(a, ns, "src", d2, "x", 0);
	while (tally_retry(a, &rc, &n));
	cr_assert_eq(rc, -ENOENT, "rename: %d after %u tries", rc, n);
	cr_assert_eq(n, 0, "run again %u times", n);
	two_nodes_close(a, b, dir);
}

/* A transaction this mount left idle past its limit (a node stopped
 * inside it) is ended by the server: another mount waiting for its lock
 * goes on, and this one, back, finds it gone (run again: EDEADLK) and
 * works on. */
Test(meta_pg, a_transaction_left_idle_past_the_limit_is_ended)
{
	struct meta *b = NULL;
	int64_t v = 0;
	int rc;

	cr_assert_eq(meta_open(uri, false, 4096, &b), 0);
	cr_assert_eq(meta_config_set(m, "probe", 1), 0);
	meta_set_idle_limit(m, 1);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_config_set(m, "probe", 2), 0);
	cr_assert_eq(meta_config_get(m, "probe", &v), 0); /* sent: locked */
	cr_assert_eq(v, 2);
	sleep(2);
	/* b waits for the row no longer than the limit */
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_config_set(b, "probe", 3), 0);
	cr_assert_eq(meta_commit(b), 0);
	rc = meta_commit(m);
	cr_assert(rc == -EDEADLK || rc == -EIO, "commit after the end: %d", rc);
	meta_rollback(m);
	cr_assert_eq(meta_config_get(m, "probe", &v), 0);
	cr_assert_eq(v, 3, "the ended transaction's change is not there");
	meta_close(b);
}

/* An unlink as the front end runs it: again while it says EDEADLK. */
static int unlink_retried(struct tally *t, uint64_t ns, const char *name)
{
	unsigned n = 0;
	int rc;

	do
		rc = tally_unlink(t, ns, name);
	while (tally_retry(t, &rc, &n));
	return rc;
}

/*
 * With hints (entry_hint_ms), an unlink, rmdir or rename on a shared
 * store takes the inode its node's last look found instead of looking
 * again, and its one-round-trip forms commit with the store's count: a
 * hint another node made stale, a count another node took to zero, and
 * a link of a file another node freed each end as if the store had been
 * asked first.
 */
Test(meta_pg, hints_and_one_round_trip_forms_meet_other_nodes_changes)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct tally_opts o = { .block_size = 4096,
				.create = true,
				.entry_hint_ms = 600000 };
	char *dir;
	struct tally *a, *b;
	struct meta_inode md;
	struct stat st;
	uint64_t ns, x, y, z, w, d1, d2, ino = 0;
	struct meta_orphan *orphans = NULL;
	size_t n = 0;

	dir = two_nodes(&o, &a, &b, &ns);

	/* a's hint says f is x; b renames g (y) over f: a's unlink of f
	 * removes y, the name's inode now, and x is gone with b's rename */
	cr_assert_eq(tally_mknod(a, &me, ns, "f", S_IFREG | 0644, 0, &st), 0);
	x = st.st_ino;
	cr_assert_eq(tally_mknod(a, &me, ns, "g", S_IFREG | 0644, 0, &st), 0);
	y = st.st_ino;
	cr_assert_eq(rename_retried(b, ns, "g", "f"), 0);
	cr_assert_eq(unlink_retried(a, ns, "f"), 0);
	cr_assert_eq(meta_dentry_lookup(m, NULL, ns, "f", &ino), -ENOENT);
	cr_assert_eq(meta_inode_get(m, NULL, y, &md), -ENOENT, "y is freed");
	cr_assert_eq(meta_inode_get(m, NULL, x, &md), -ENOENT, "x is freed");
	/* a hint of a name another node removed: ENOENT, nothing else */
	cr_assert_eq(tally_mknod(a, &me, ns, "e", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(unlink_retried(b, ns, "e"), 0);
	cr_assert_eq(unlink_retried(a, ns, "e"), -ENOENT);

	/* a sees h with two links; b removes one; a's unlink of the other,
	 * one round trip with its COMMIT, meets the store's count of 0: h
	 * is freed in a transaction of its own, not left an orphan */
	cr_assert_eq(tally_mknod(a, &me, ns, "h", S_IFREG | 0644, 0, &st), 0);
	z = st.st_ino;
	cr_assert_eq(tally_link(a, z, ns, "h2", &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	cr_assert_eq(unlink_retried(b, ns, "h2"), 0);
	cr_assert_eq(unlink_retried(a, ns, "h"), 0);
	cr_assert_eq(meta_inode_get(m, NULL, z, &md), -ENOENT, "h is freed");
	cr_assert_eq(meta_inode_orphans(m, &orphans, &n), 0);
	cr_assert_eq(n, 0, "%zu inodes with no link left", n);
	free(orphans);

	/* a link, whose count comes back with its COMMIT, of a file b
	 * freed meanwhile: ENOENT and no entry naming a missing inode */
	cr_assert_eq(tally_mknod(a, &me, ns, "k", S_IFREG | 0644, 0, &st), 0);
	w = st.st_ino;
	cr_assert_eq(unlink_retried(b, ns, "k"), 0);
	cr_assert_eq(tally_link(a, w, ns, "k2", &st), -ENOENT);
	cr_assert_eq(meta_dentry_lookup(m, NULL, ns, "k2", &ino), -ENOENT);

	/* a's hint says d is d1; b replaces it by another directory d2
	 * with an entry: a's rmdir of d meets d2 and says ENOTEMPTY;
	 * emptied, d2 goes, and the parent's count comes back right */
	cr_assert_eq(tally_mkdir(a, &me, ns, "d", 0755, &st), 0);
	d1 = st.st_ino;
	cr_assert_eq(tally_rmdir(b, ns, "d"), 0);
	cr_assert_eq(tally_mkdir(b, &me, ns, "d", 0755, &st), 0);
	d2 = st.st_ino;
	cr_assert_neq(d1, d2);
	cr_assert_eq(tally_mknod(b, &me, d2, "in", S_IFREG | 0644, 0, &st), 0);
	{
		unsigned tries = 0;
		int rc;

		do
			rc = tally_rmdir(a, ns, "d");
		while (tally_retry(a, &rc, &tries));
		cr_assert_eq(rc, -ENOTEMPTY);
		cr_assert_eq(unlink_retried(b, d2, "in"), 0);
		tries = 0;
		do
			rc = tally_rmdir(a, ns, "d");
		while (tally_retry(a, &rc, &tries));
		cr_assert_eq(rc, 0);
	}
	cr_assert_eq(meta_inode_get(m, NULL, d2, &md), -ENOENT);
	cr_assert_eq(meta_inode_get(m, NULL, ns, &md), 0);
	cr_assert_eq(md.nlink, 2, "ns counts %u links", md.nlink);

	/* a's hint says p is a directory with an entry; b moves it away
	 * and an empty one in its place: a's rmdir of p does not answer
	 * ENOTEMPTY from its hint, it asks the store and removes the empty
	 * one; the same for an unlink whose hint says directory */
	cr_assert_eq(tally_mkdir(a, &me, ns, "p", 0755, &st), 0);
	d1 = st.st_ino;
	cr_assert_eq(tally_mknod(a, &me, d1, "in", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(tally_mkdir(b, &me, ns, "q", 0755, &st), 0);
	d2 = st.st_ino;
	cr_assert_eq(rename_retried(b, ns, "p", "p_old"), 0);
	cr_assert_eq(rename_retried(b, ns, "q", "p"), 0);
	cr_assert_eq(tally_rmdir(a, ns, "p"), 0, "a answered from its hint");
	cr_assert_eq(meta_inode_get(m, NULL, d2, &md), -ENOENT);
	cr_assert_eq(meta_inode_get(m, NULL, d1, &md), 0);
	cr_assert_eq(tally_mkdir(a, &me, ns, "r", 0755, &st), 0);
	cr_assert_eq(tally_rmdir(b, ns, "r"), 0);
	cr_assert_eq(tally_mknod(b, &me, ns, "r", S_IFREG | 0644, 0, &st), 0);
	cr_assert_eq(unlink_retried(a, ns, "r"), 0, "a answered EISDIR");

	two_nodes_close(a, b, dir);
}

/* Connections to the test's database waiting for a row lock. */
static int64_t lock_waiters(void)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' "
		 "AND wait_event_type = 'Lock'",
		 db);
	return admin_int(sql);
}

/* What node a does while node b's removal of the last reference holds the
 * object's row: one of three reference-adding changes, in a thread. */
enum racer {
	RACE_BLOCK_SET,
	RACE_COPY,
	RACE_BRANCH
};

struct race {
	enum racer what;
	int rc;
};

static void *race_run(void *arg)
{
	struct race *r = arg;
	uint64_t next = 500, root = 0, count = 0;

	cr_assert_eq(meta_begin(m), 0);
	switch (r->what) {
	case RACE_BLOCK_SET:
		r->rc = meta_block_set(m, NULL, 41, 0, OBJ_A, 0, 10, NULL);
		break;
	case RACE_COPY:
		r->rc = meta_blocks_copy(m, NULL, NULL, 40, 42);
		break;
	case RACE_BRANCH:
		r->rc = meta_branch(m, 16, NULL, "dst", &next, &root, &count);
		break;
	}
	if (!r->rc)
		r->rc = meta_commit(m);
	else
		meta_rollback(m);
	return NULL;
}

/*
 * Node b removes the last reference to object A (its transaction holds
 * the row, at count 0) while node a adds a reference to A: a's update of
 * the count waits for b's commit, which deletes the row. a's change must
 * not succeed (its reference would name an object that is gone, read as
 * EIO by every node): -EDEADLK, the operation runs again and meets no
 * row. Before, a committed a dangling reference, 21 % of such races on
 * a real mount.
 */
static void race_last_reference(enum racer what)
{
	struct race r = { what, 1 };
	struct meta *b = NULL;
	pthread_t th;
	int i;

	src_with_a_file(40);
	cr_assert_eq(count_of(OBJ_A), 1);

	cr_assert_eq(meta_open(uri, false, 4096, &b), 0);
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_blocks_drop(b, NULL, 40, 0), 0);
	cr_assert_eq(pthread_create(&th, NULL, race_run, &r), 0);
	for (i = 0; i < 500 && lock_waiters() == 0; i++)
		usleep(10000);
	cr_assert_gt(lock_waiters(), 0, "node a never waited for b's row");
	cr_assert_eq(meta_commit(b), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(r.rc, -EDEADLK, "a's change ended %d", r.rc);
	cr_assert_eq(count_of(OBJ_A), -1);
	cr_assert_eq(db_int(db, "SELECT count(*) FROM extents b WHERE NOT "
				"EXISTS (SELECT 1 FROM objects o WHERE "
				"o.id = b.obj)"),
		     0, "a reference names an object that is gone");

	/* run again, it makes the object anew */
	if (what == RACE_BLOCK_SET) {
		cr_assert_eq(meta_begin(m), 0);
		cr_assert_eq(meta_block_set(m, NULL, 41, 0, OBJ_A, 0, 10, NULL),
			     0);
		cr_assert_eq(meta_commit(m), 0);
		cr_assert_eq(count_of(OBJ_A), 1);
	}
	meta_close(b);
}

Test(meta_pg, a_reference_added_as_another_node_drops_the_last_runs_again)
{
	race_last_reference(RACE_BLOCK_SET);
}

Test(meta_pg, a_copy_of_blocks_whose_object_goes_meanwhile_runs_again)
{
	race_last_reference(RACE_COPY);
}

Test(meta_pg, a_branch_whose_objects_go_meanwhile_runs_again)
{
	race_last_reference(RACE_BRANCH);
}

struct flush_job {
	struct tally *t;
	uint64_t ino;
	int rc;
};

static void *flush_run(void *arg)
{
	struct flush_job *j = arg;

	j->rc = tally_flush(j->t, j->ino);
	return NULL;
}

/*
 * The race through two mounts: node b's file x holds the only reference
 * to content C; the removal of that reference (a raw transaction, held
 * open) is under way when node a's flush of file y, the same bytes,
 * found the row and adds to its count. a's commit waits, the row goes,
 * a's flush runs again and makes the object anew: y's close succeeds and
 * y reads back C (before: a reference to the dead row, every read EIO).
 */
Test(meta_pg, a_flush_whose_object_another_node_frees_makes_it_anew)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct tally_opts o = { .block_size = 4096, .create = true };
	struct flush_job j = { 0 };
	char buf[4096], back[4096], sql[256];
	struct tally *a, *b;
	struct stat st;
	uint64_t ns, x;
	pthread_t th;
	PGconn *c;
	char *dir;
	int i;

	dir = two_nodes(&o, &a, &b, &ns);
	tu_fill(buf, sizeof(buf), 7);
	x = written_closed(b, ns, "x", buf, sizeof(buf));
	cr_assert_eq(db_int(db, "SELECT count(*) FROM objects"), 1);

	c = raw_conn();
	raw_exec(c, "BEGIN");
	snprintf(sql, sizeof(sql),
		 "DELETE FROM objects WHERE id = (SELECT obj FROM extents "
		 "WHERE ino = %" PRIu64 ")",
		 x);
	raw_exec(c, sql);
	snprintf(sql, sizeof(sql), "DELETE FROM extents WHERE ino = %" PRIu64,
		 x);
	raw_exec(c, sql);

	cr_assert_eq(tally_create(a, &me, ns, "y", 0644, &st), 0);
	j.t = a;
	j.ino = st.st_ino;
	cr_assert_eq(tally_write(a, j.ino, buf, sizeof(buf), 0),
		     (ssize_t)sizeof(buf));
	cr_assert_eq(pthread_create(&th, NULL, flush_run, &j), 0);
	for (i = 0; i < 500 && lock_waiters() == 0; i++)
		usleep(10000);
	cr_assert_gt(lock_waiters(), 0, "a's commit never waited");
	raw_exec(c, "COMMIT");
	PQfinish(c);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(j.rc, 0);
	cr_assert_eq(db_int(db, "SELECT count(*) FROM extents b WHERE NOT "
				"EXISTS (SELECT 1 FROM objects o WHERE "
				"o.id = b.obj)"),
		     0, "y's reference names an object that is gone");
	cr_assert_eq(db_int(db, "SELECT refcount FROM objects"), 1);
	memset(back, 0, sizeof(back));
	cr_assert_eq(tally_read(a, j.ino, back, sizeof(back), 0),
		     (ssize_t)sizeof(back));
	cr_assert_eq(memcmp(back, buf, sizeof(buf)), 0);
	cr_assert_eq(tally_release(a, j.ino), 0);
	two_nodes_close(a, b, dir);
}

/* The rows of @table whose column @col names node @node. */
static int64_t node_rows(const char *table, const char *col, int64_t node)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM %s WHERE %s = %" PRId64, table, col,
		 node);
	return db_int(db, sql);
}

/* The node that holds @ino open (0: none). */
static int64_t holder_of(uint64_t ino)
{
	char sql[128];

	snprintf(sql, sizeof(sql),
		 "SELECT coalesce(max(node), 0) FROM open_holds WHERE "
		 "ino = %" PRIu64,
		 ino);
	return db_int(db, sql);
}

/* File @name made in @dir on node @t, @len bytes of @buf written and
 * committed, left open: its inode number. */
static uint64_t written_open(struct tally *t, uint64_t dir, const char *name,
			     const char *buf, size_t len)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct stat st;

	cr_assert_eq(tally_create(t, &me, dir, name, 0644, &st), 0);
	cr_assert_eq(tally_write(t, st.st_ino, buf, len, 0), (ssize_t)len);
	cr_assert_eq(tally_flush(t, st.st_ino), 0);
	return st.st_ino;
}

/*
 * Node a has two files open when its session expires and another node's
 * cleanup removes it with its holds (a was stopped, or cut off). Node b
 * removes one of them, "gone", before a is back: nobody holds it, its
 * rows go. a, back, registers again and holds its open files again in
 * that same transaction: b's removal of "kept" after that leaves it to
 * a, which reads it whole. "gone" is lost to a: its reads and writes
 * fail with EIO (before: its reads gave zeros where the blocks were, its
 * writes returned success and were dropped; and "kept" went too).
 */
Test(meta_pg, open_files_are_held_again_after_a_renewal)
{
	struct tally_opts o = { .block_size = 4096, .create = true };
	char buf[3 * 4096], back[3 * 4096];
	struct tally *a, *b;
	struct meta_inode md;
	struct stat st;
	uint64_t ns, k, g;
	int64_t old, beat;
	char *dir, sql[128];
	int i;

	o.heartbeat = 3;
	dir = two_nodes(&o, &a, &b, &ns);
	tu_fill(buf, sizeof(buf), 3);
	k = written_open(a, ns, "kept", buf, sizeof(buf));
	g = written_open(a, ns, "gone", buf, sizeof(buf));
	old = holder_of(k);
	cr_assert_neq(old, 0);
	cr_assert_eq(holder_of(g), old);

	/* a's session expired: the cleanup takes it and its holds, right
	 * after a's heartbeat (a notices at its next, 2-3 s later) */
	snprintf(sql, sizeof(sql),
		 "SELECT heartbeat FROM sessions WHERE id = %" PRId64, old);
	beat = db_int(db, sql);
	for (i = 0; i < 400 && db_int(db, sql) == beat; i++)
		usleep(20000);
	cr_assert_neq(db_int(db, sql), beat, "a never beat");
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_session_remove(m, old), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(tally_lookup(b, ns, "gone", &st), 0);
	cr_assert_eq(tally_unlink(b, ns, "gone"), 0);
	cr_assert(row_gone(g), "nobody held it, yet it stays");

	/* a is back: a new session, holding "kept" again */
	for (i = 0; i < 200 && (holder_of(k) == 0 || holder_of(k) == old); i++)
		usleep(50000);
	cr_assert(holder_of(k) != 0 && holder_of(k) != old,
		  "a never held its open file again");
	cr_assert_eq(tally_lookup(b, ns, "kept", &st), 0);
	cr_assert_eq(tally_unlink(b, ns, "kept"), 0);
	cr_assert_eq(meta_inode_get(m, NULL, k, &md), 0,
		     "freed under a's hold");
	cr_assert_eq(md.nlink, 0);
	memset(back, 0, sizeof(back));
	cr_assert_eq(tally_read(a, k, back, sizeof(back), 0),
		     (ssize_t)sizeof(back));
	cr_assert_eq(memcmp(back, buf, sizeof(buf)), 0);

	/* "gone" is lost here: EIO, never holes, never a write dropped */
	cr_assert_eq(tally_read(a, g, back, sizeof(back), 0), -EIO);
	cr_assert_eq(tally_write(a, g, buf, 4096, 0), -EIO);
	cr_assert_eq(tally_fsync(a, g, false), -EIO);

	/* the session's times are the server's */
	cr_assert_eq(db_int(db, "SELECT count(*) FROM sessions WHERE "
				"abs(heartbeat - extract(epoch FROM now())) "
				"> 5"),
		     0);

	cr_assert_eq(tally_release(a, k), 0);
	tally_release(a, g);
	cr_assert(row_gone(k), "the last close left the file");
	two_nodes_close(a, b, dir);
}

/*
 * GC prunes node a (its report older than the stale limit: a stopped
 * node): a's session goes, and with it a's open holds and directory
 * watches, as when a session expires. A file a held open that b had
 * unlinked goes then (before: its hold stayed, and the file was never
 * freed; nor was any file a had open and b unlinked later).
 */
Test(meta_pg, a_pruned_node_leaves_no_holds_or_watches)
{
	static const struct tally_ctx me = { .uid = 0, .gid = 0 };
	struct tally_opts o = { .block_size = 4096, .create = true };
	struct gc_opts go = { .grace = 0 };
	struct gc_report r;
	char buf[4096], sql[160];
	struct tally *a, *b;
	struct meta_inode md;
	struct stat st;
	uint64_t ns, f;
	int64_t an;
	char *dir;

	dir = two_nodes(&o, &a, &b, &ns);
	tu_fill(buf, sizeof(buf), 5);
	f = written_open(a, ns, "f", buf, sizeof(buf));
	an = holder_of(f);
	cr_assert_neq(an, 0);
	cr_assert_eq(tally_mkdir(a, &me, ns, "d", 0755, &st), 0);
	cr_assert_eq(tally_report(a), 0);
	cr_assert_eq(tally_lookup(b, ns, "f", &st), 0);
	cr_assert_eq(tally_unlink(b, ns, "f"), 0);
	cr_assert_eq(meta_inode_get(m, NULL, f, &md), 0);

	snprintf(
		sql, sizeof(sql),
		"UPDATE node_reports SET reported_at = 1 WHERE node = %" PRId64,
		an);
	admin(db, sql);
	cr_assert_eq(gc_run(b, &go, &r), 0);
	cr_assert_geq(r.stale_nodes, 1);
	cr_assert_eq(node_rows("sessions", "id", an), 0);
	cr_assert_eq(node_rows("open_holds", "node", an), 0);
	cr_assert_eq(node_rows("dir_watch", "node", an), 0);
	cr_assert_eq(meta_inode_get(m, NULL, f, &md), -ENOENT,
		     "an unlinked file only the pruned node held stays");
	tally_release(a, f);
	two_nodes_close(a, b, dir);
}

/*
 * Run under faketime with this process's clock ten minutes behind the
 * server's (tests/pg/meson.build, unit_meta_pg_skew): every time this
 * node writes to its session and its report is the server's, so a node
 * with a right clock neither takes it for dead (before: its expiry lay
 * ten minutes in the past, and every other node's cleanup removed it at
 * once, a new session at every heartbeat) nor keeps it too long.
 */
Test(meta_pg, skewed_a_node_behind_the_server_clock_keeps_its_session)
{
	struct tally_opts o = { .block_size = 4096, .create = true };
	int64_t skew, node;
	struct tally *a;
	char path[4096], sql[200], *dir = tu_tmpdir();

	skew = db_int(db, "SELECT CAST(extract(epoch FROM now()) AS BIGINT)") -
	       (int64_t)time(NULL);
	cr_assert_gt(skew, 300,
		     "this process's clock is not behind the "
		     "server's (run under faketime)");
	o.meta = uri;
	o.heartbeat = 1;
	snprintf(path, sizeof(path), "%s/node", dir);
	cr_assert_eq(tally_open(path, &o, &a), 0);
	cr_assert_eq(tally_report(a), 0);
	node = db_int(db, "SELECT id FROM sessions");
	/* three heartbeats: still the one session, its times the server's */
	sleep(3);
	cr_assert_eq(db_int(db, "SELECT count(*) FROM sessions"), 1);
	cr_assert_eq(db_int(db, "SELECT id FROM sessions"), node,
		     "the session was taken for expired");
	cr_assert_eq(db_int(db, "SELECT count(*) FROM sessions WHERE "
				"abs(heartbeat - extract(epoch FROM now())) "
				"> 5 OR expires < extract(epoch FROM now())"),
		     0, "the session's times are this node's clock");
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM node_reports WHERE abs(reported_at - "
		 "extract(epoch FROM now())) > 10");
	cr_assert_eq(db_int(db, sql), 0, "the report's time is this node's");
	cr_assert_eq(tally_close(a), 0);
	tu_rmrf(dir);
}

struct drop_arg {
	struct meta *m;
	uint64_t ino;
	int rc;
};

static void *drop_and_commit(void *p)
{
	struct drop_arg *a = p;

	a->rc = meta_begin(a->m);
	if (!a->rc)
		a->rc = meta_blocks_drop(a->m, NULL, a->ino, 0);
	a->rc = a->rc ? a->rc : meta_commit(a->m);
	if (a->rc)
		meta_rollback(a->m);
	return NULL;
}

/*
 * Two nodes free one inode at once (a mount's cleanup of the unlinked
 * files its last mount left open, and another node's of an expired
 * session's): its rows go once and its objects' counts fall once. Each
 * listed the rows, then took their counts off, and one deleted them:
 * an object named elsewhere was left under-counted (the fault harness,
 * SEED=20261126, a remount under the skew nemesis: count 3, rows 4).
 */
Test(meta_pg, an_inode_freed_by_two_nodes_at_once_counts_once)
{
	struct meta *b = NULL;
	struct drop_arg a;
	pthread_t th;

	cr_assert_eq(meta_open(uri, false, 4096, &b), 0);
	cr_assert_eq(meta_begin(m), 0);
	cr_assert_eq(meta_block_set(m, NULL, 20, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_block_set(m, NULL, 21, 0, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_block_set(m, NULL, 21, 1, OBJ_A, 0, 10, NULL), 0);
	cr_assert_eq(meta_commit(m), 0);
	cr_assert_eq(count_of(OBJ_A), 3);
	/* b frees inode 20 and has not committed; m frees it too */
	cr_assert_eq(meta_begin(b), 0);
	cr_assert_eq(meta_blocks_drop(b, NULL, 20, 0), 0);
	a = (struct drop_arg){ .m = m, .ino = 20 };
	cr_assert_eq(pthread_create(&th, NULL, drop_and_commit, &a), 0);
	usleep(300 * 1000); /* m waits for b's locks */
	cr_assert_eq(meta_commit(b), 0);
	pthread_join(th, NULL);
	cr_assert_eq(a.rc, 0);
	cr_assert_eq(count_of(OBJ_A), 2,
		     "the count fell twice for one row: %lld for 2 rows",
		     (long long)count_of(OBJ_A));
	meta_close(b);
}
