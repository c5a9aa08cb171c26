/* SPDX-License-Identifier: MIT */
/*
 * The metadata store: every SQL statement of tallyfs lives in core/meta/,
 * so that another engine with the same schema can replace SQLite later.
 *
 * Callers serialise all calls on one struct meta (core/fs/tally.c holds its
 * metadata lock around them). Functions that change anything must run
 * between meta_begin() and meta_commit()/meta_rollback(): one transaction
 * per filesystem operation, so a reference and its count always change
 * together.
 */
#ifndef TALLY_META_H
#define TALLY_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/util/hash.h"

/* The schema's version, PRAGMA user_version (3: entries, extents and
 * xattrs keyed with their version; 4: an inode's rows in later versions
 * keyed by numbers of their own, naming it in `base`; docs/design.md
 * 13.7). */
#define META_FORMAT 4
#define META_FORMAT_STR "4"

struct meta;

/* One inode row. nspace is the inode number of its namespace's root. */
struct meta_inode {
	uint64_t ino;
	uint64_t nspace;
	uint32_t mode, uid, gid, nlink;
	uint64_t size;
	uint64_t rdev;
	uint64_t alloc; /* bytes held in objects (not holes) */
	struct timespec atime, mtime, ctime;
};

/* One block reference of a file. */
struct meta_bref {
	uint64_t idx;
	int64_t obj; /* objects.id */
	uint32_t shard;
	uint32_t size; /* object size in bytes */
	char name[OBJNAME_MAX];
};

/* An object that must be unlinked once the transaction has committed. */
struct meta_obj {
	int64_t id;
	uint32_t shard;
	char name[OBJNAME_MAX];
};

/* A growable list of objects (owned by whoever called meta_objlist_init). */
struct meta_objlist {
	struct meta_obj *v;
	size_t n, cap;
};

struct meta_stats {
	uint64_t namespaces, inodes, objects;
	uint64_t bytes_logical, bytes_stored, bytes_referenced;
	uint64_t durable_seq;
};

void meta_objlist_init(struct meta_objlist *l);
void meta_objlist_release(struct meta_objlist *l);
int meta_objlist_add(struct meta_objlist *l, int64_t id, uint32_t shard,
		     const char *name);

/*
 * Open STORE's database at @path. With @create, a missing database is
 * created with @block_size. A database of another application or an
 * unknown format version is refused with -EUCLEAN / -EPROTO and a message.
 * @path may be a postgres:// URI instead (meta_is_pg()).
 */
int meta_open(const char *path, bool create, uint32_t block_size,
	      struct meta **out);
void meta_close(struct meta *m);
/* Whether @path is a postgres:// or postgresql:// URI: meta_open() then
 * opens that database (core/meta/meta_pg.c), formatting it with @create if it
 * is empty. */
bool meta_is_pg(const char *path);
/*
 * @uri as a message may show it: every password it holds replaced by
 * "***", whatever its form (a URI's user:PASSWORD@host, its query's
 * password=, a keyword/value string's password=...). Malloc'ed (the
 * caller frees it), or NULL without memory.
 */
char *meta_uri_masked(const char *uri);
/* Whether @m is such a database (shared by several mounts). */
bool meta_shared(const struct meta *m);

/*
 * The changes other nodes commit to a shared store, as they commit them:
 * a connection of its own (meta_listen_open(), -EOPNOTSUPP for SQLite)
 * whose socket (meta_listen_fd()) becomes readable when some arrive;
 * meta_listen_take() hands each to @fn: "e NODE PARENT HEXNAME" (an entry
 * of directory PARENT, its name in hex) or "i NODE INO" (an inode), NODE
 * being the node that made the change. -EIO once the connection is lost
 * (open a new one). No lock needed: the connection is the caller's.
 */
struct meta_listen;
int meta_listen_open(struct meta *m, struct meta_listen **out);
int meta_listen_fd(struct meta_listen *l);
int meta_listen_take(struct meta_listen *l,
		     void (*fn)(void *ctx, const char *payload), void *ctx);
void meta_listen_close(struct meta_listen *l);
/*
 * A silent loss of the listening connection (a peer that vanished, a
 * dropped idle socket) shows as no error at all: every META_PROBE_MS the
 * caller probes it (a query whose answer meta_listen_take() reads). 0, or
 * -ETIMEDOUT when the probe sent has had no answer for three times as
 * long, -EIO when it cannot be sent: the connection is to be taken for
 * lost. @now_ms: CLOCK_MONOTONIC in ms.
 */
#define META_PROBE_MS 1000
int meta_listen_probe(struct meta_listen *l, int64_t now_ms);

/* Transactions (BEGIN IMMEDIATE). Commits are durable against a crash of
 * the process (synchronous=NORMAL); meta_sync() (outside a transaction)
 * makes every committed transaction durable against power loss too. */
int meta_begin(struct meta *m);
/* End the transaction of a batch: commit if @rc is 0 (a failed commit
 * rolls back), else roll back; returns the first error. */
int meta_end(struct meta *m, int rc);
/*
 * Commit. First the objects whose count reached zero or below in the
 * transaction are settled against its final state: a count raised again
 * keeps the object; a count that disagrees with the block references
 * naming the object is set to them (drift: logged, meta_drift()); a row
 * at zero that nothing names is deleted and its object listed for
 * meta_dead_take(); a row below zero that nothing names is deleted and
 * its file left to GC. On error nothing is committed (roll back).
 */
int meta_commit(struct meta *m);
/*
 * Move the objects whose rows committed transactions deleted to @out
 * (initialised here; the caller releases it). Their files are the
 * caller's to delete, through core/objects/reap.c only.
 */
void meta_dead_take(struct meta *m, struct meta_objlist *out);
/* How many objects meta_dead_take() would give. */
size_t meta_dead_count(struct meta *m);
/* Counts found wrong (and corrected) by commits since the open. */
uint64_t meta_drift(struct meta *m);
int meta_sync(struct meta *m);

/*
 * The intent log of the SQLite engine (core/meta/meta_ilog.c): at open,
 * @path (STORE/meta.ilog) is replayed onto the store (what was answered
 * before a crash and not yet in a committed group) and then kept: each
 * operation appends one record before its commit returns, and groups of
 * operations commit together. Nothing on PostgreSQL. -EUCLEAN: the log
 * is another store's, or not a log.
 */
struct meta_ilog_stats {
	uint64_t replayed; /* records applied at open */
	uint64_t dropped;  /* bytes of a damaged or cut tail, not applied */
	uint64_t stale;	   /* bytes of intact records out of sequence */
};
#define META_ILOG_NAME "meta.ilog"
int meta_ilog_open(struct meta *m, const char *path, uint64_t store_id,
		   bool keep, struct meta_ilog_stats *stats);
bool meta_ilog_on(struct meta *m);
/*
 * Whether an operation that adds metadata (a name, an xattr, a branch)
 * may run: 0, or -ENOSPC while the disk is full (the reserve's group
 * tier given back) and has less free than that tier: what is left is
 * the room of removals, checkpoints and the next open, which a full
 * disk would otherwise take (ext4 keeps its reserved blocks so).
 */
int meta_room(struct meta *m);
/* Give back the room a store keeps on its disk (meta.reserve, in the
 * directory of file @beside: its database or its log),
 * under the store's lock: meta_ilog_open() before its replay (and keeps
 * it again after), meta_open() before the commit of an upgrade. */
void meta_ilog_unreserve(const char *beside);
/* Whether the intent log beside file @beside (the database) holds
 * records to replay: meta_open() brings the tables up to date after
 * their replay, not before. */
bool meta_ilog_pending(const char *beside);
/* Commit the open group, if any (its operations all ended): 0 or -errno
 * (the group stays open; its records stay in the log). */
int meta_group_commit(struct meta *m);
/* The same, if the group is @age_ns old or older. */
int meta_group_commit_due(struct meta *m, int64_t age_ns);
bool meta_group_open(struct meta *m);
/* A group commits at @age_ns (default 5 ms) or 256 operations. */
void meta_ilog_tune(struct meta *m, int64_t age_ns);
uint64_t meta_ilog_groups(struct meta *m);
/*
 * Fault injection, for tests of a crash during replay: the process kills
 * itself (SIGKILL) once the next meta_ilog_open() has applied @nth
 * records, before their transaction commits; or, with @nth 0, once that
 * transaction committed and before the log is emptied.
 */
void meta_ilog_crash_at(unsigned nth);
/* Fault injection, for tests of a crash during an upgrade of the format
 * (docs/design.md, section 13.7): with @on, the process kills itself
 * once the upgrade's statements ran, before its transaction commits. */
void meta_upgrade_crash_at(bool on);
void meta_rollback(struct meta *m);
/*
 * Fault injection, for tests: the @nth next meta_commit() rolls the
 * transaction back and returns @err (a negative errno), once; @nth 0
 * disables. Returns the commits that were still to go before the fault
 * armed until now (0: it fired, or none was armed). Same serialisation
 * as every call on @m.
 */
unsigned meta_inject(struct meta *m, unsigned nth, int err);
/* Fault injection, for tests: the @nth next object lookup of the
 * deletion verdicts (meta_object_info(), meta_obj_referenced(),
 * meta_name_protected()) or of meta_statfs() fails with @err, once;
 * @nth 0 disables. */
void meta_inject_lookup(struct meta *m, unsigned nth, int err);
/* Fault injection, for tests: the @nth next meta_commit() commits, then
 * fails with -EIO as one whose connection was lost after the server
 * committed (its outcome unknown to the caller), once; @nth 0 disables. */
void meta_inject_lost(struct meta *m, unsigned nth);
/* Fault injection, for tests of the intent log: the open group is rolled
 * back by the engine (as an I/O error or SQLITE_FULL at a statement or
 * at COMMIT does), and the @replays next applications of the log fail
 * (-EIO) before they run anything. Outside an operation. */
void meta_ilog_inject_loss(struct meta *m, unsigned replays);

/* Integer settings: "block_size", "next_ino", "durable_seq". */
int meta_config_get(struct meta *m, const char *key, int64_t *val);
int meta_config_set(struct meta *m, const char *key, int64_t val);

#include "core/meta/meta_ver.h"

/* The version of the rows of the inode of @md: its namespace's, whose id
 * is the namespace's root number in format 2; the root directory's
 * (inode 1), 0. */
static inline struct meta_ver meta_ver_of(const struct meta_inode *md)
{
	return (struct meta_ver){ .id = md->ino == 1 ? 0
						     : (int64_t)md->nspace };
}

int meta_inode_get(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   struct meta_inode *out);
/*
 * Insert or replace the whole row (the symlink target is kept). The
 * namespace of an existing row is never changed (an inode does not move
 * between namespaces): leaving it alone spares an index update per call.
 * @v NULL: the version of @in's namespace.
 */
int meta_inode_put(struct meta *m, const struct meta_ver *v,
		   const struct meta_inode *in);
/* Fields of an inode row, for meta_inode_update() */
#define META_F_MODE 1u
#define META_F_UID 2u
#define META_F_GID 4u
#define META_F_SIZE 8u /* the size and the allocation */
#define META_F_ATIME 16u
#define META_F_MTIME 32u
#define META_F_CTIME 64u
/* not a field: the row must be there, the answer is waited for (-ENOENT
 * when it is gone) and its lock held, even with no count to move */
#define META_F_ROW 128u
/* not a field: a change with no answer to wait for goes right after the
 * next statement that has one (meta_run_after(): a directory's row after
 * its child's) */
#define META_F_AFTER 256u

/*
 * Write the @fields (META_F_*) of @in into its row, the others left as
 * the row has them, and move its link count by @delta from what the row
 * has (other mounts of a shared store change rows too: a field this
 * mount did not change is never written back from its copy); @in->nlink
 * is the count after the move. *@nlink receives the count now: the
 * store's after the statement, or, when no decision needs it (@delta 0,
 * or a directory's), @in->nlink, the change then going with the next
 * statement (PostgreSQL: no round trip of its own). A missing row (an
 * inode another mount removed) is never made again: -ENOENT when the
 * count is answered, nothing changed otherwise.
 */
int meta_inode_update(struct meta *m, const struct meta_ver *v,
		      const struct meta_inode *in, int64_t delta,
		      unsigned fields, uint32_t *nlink);
/*
 * meta_inode_update() with its answer waited for, then the COMMIT of the
 * transaction (meta_commit(): PostgreSQL sends both in one pipeline).
 * 0: committed; 1: the row is gone (*@nlink 0), the rest committed all
 * the same, but with META_F_ROW in @fields -ENOENT, nothing committed;
 * -errno: nothing committed, the caller rolls back.
 */
int meta_inode_update_commit(struct meta *m, const struct meta_ver *v,
			     const struct meta_inode *in, int64_t delta,
			     unsigned fields, uint32_t *nlink);
/* Delete an inode row, its xattrs and its symlink target. No blocks. */
int meta_inode_delete(struct meta *m, const struct meta_ver *v, uint64_t ino);
/*
 * Take @n inode numbers, none below @floor, from the store's counter
 * ("next_ino") in one statement, so that mounts sharing the store never
 * get the same number: *first receives the first of them. In a
 * transaction. -ENOSPC (the transaction to roll back) when they would
 * reach META_INO_LIMIT: the kernel will see a namespace's or a
 * snapshot's view above those bits (docs/design.md, section 13.3).
 */
#define META_INO_LIMIT (1ull << 40)
int meta_ino_take(struct meta *m, uint64_t floor, uint64_t n, uint64_t *first);
/* Highest inode number in use. */
int meta_max_ino(struct meta *m, uint64_t *max);
/* An inode whose link count is 0 in leaf @v (left by a crash while
 * open): its rows there are freed by meta_orphan_free(). */
struct meta_orphan {
	uint64_t ino;
	struct meta_ver v;
};
/* The orphans of every leaf: a new array *@out of *@n. */
int meta_inode_orphans(struct meta *m, struct meta_orphan **out, size_t *n);
/* In a transaction: the rows of orphan @o in its leaf go (its blocks
 * first, a whiteout where an ancestor's row would show). */
int meta_orphan_free(struct meta *m, const struct meta_orphan *o);
/* Inodes with links that no entry names (a leak: tallyfsck), ascending. */
int meta_inode_nameless(struct meta *m, uint64_t **inos, size_t *n);
/* Inodes with no row that block or xattr rows still name (a leak: a
 * flush that committed after another node removed its inode, before
 * that could not happen), ascending. */
int meta_inode_homeless(struct meta *m, uint64_t **inos, size_t *n);
/* Rows of the namespace tables filed in another version than their
 * namespace's (a defect of the build that wrote them: tallyfsck). */
int meta_rows_misfiled(struct meta *m, uint64_t *n);
/* Set an inode's link count to 0, so that it goes as a crash's orphans
 * do (nothing holds it: at the next mount). In a transaction. */
int meta_inode_unname(struct meta *m, uint64_t ino);

int meta_target_set(struct meta *m, const struct meta_ver *v, uint64_t ino,
		    const char *target);
/* *out is malloc'ed, caller frees. */
int meta_target_get(struct meta *m, const struct meta_ver *v, uint64_t ino,
		    char **out);

int meta_dentry_lookup(struct meta *m, const struct meta_ver *v,
		       uint64_t parent, const char *name, uint64_t *ino);
/* The inode row of entry @name of @parent, read with it; -ENOENT if
 * there is no such entry (or it names no row). An entry of the root
 * (@parent 1) names a namespace: the row is its root's first, with the
 * namespace's id in its nspace (docs/design.md 13.1). */
int meta_dentry_lookup_row(struct meta *m, const struct meta_ver *v,
			   uint64_t parent, const char *name,
			   struct meta_inode *out);
int meta_dentry_insert(struct meta *m, const struct meta_ver *v,
		       uint64_t parent, const char *name, uint64_t ino);
/*
 * The changes of an existing entry name the inode it had when looked up
 * (@ino, @old): an entry gone or naming another inode now (another node
 * removed it, or renamed something over it) is -ENOENT, nothing changed.
 * A delete goes with the next statement (its -ENOENT comes from there).
 */
int meta_dentry_delete(struct meta *m, const struct meta_ver *v,
		       uint64_t parent, const char *name, uint64_t ino);
/* Point an existing entry at another inode (rename over, exchange). */
int meta_dentry_set_ino(struct meta *m, const struct meta_ver *v,
			uint64_t parent, const char *name, uint64_t old,
			uint64_t ino);
int meta_dentry_move(struct meta *m, const struct meta_ver *v, uint64_t parent,
		     const char *name, uint64_t ino, uint64_t newparent,
		     const char *newname);
/* 1 if directory @ino has no entries, 0 if it has, negative errno. */
int meta_dir_empty(struct meta *m, const struct meta_ver *v, uint64_t ino);
/*
 * Entries of @parent with a cookie greater than @after, in cookie order,
 * each with its inode's row (@md; an entry without one is skipped; of
 * the root, as meta_dentry_lookup_row() says).
 * @fn returns non-zero to stop; that value is returned.
 */
int meta_readdir(struct meta *m, const struct meta_ver *v, uint64_t parent,
		 int64_t after,
		 int (*fn)(void *ctx, int64_t cookie, const char *name,
			   const struct meta_inode *md),
		 void *ctx);

/* Block map of @ino, sorted by index; *out malloc'ed, caller frees. On a
 * shared store -ENOENT if the inode has no row (another node freed it). */
int meta_blocks_load(struct meta *m, const struct meta_ver *v, uint64_t ino,
		     struct meta_bref **out, size_t *n);
/* The inode's size and allocation read with its block map (a shared
 * store: the same snapshot; known is false on one host). */
struct meta_map_at {
	bool known;
	uint64_t size;
	uint64_t alloc;
};
int meta_blocks_load_at(struct meta *m, const struct meta_ver *v, uint64_t ino,
			struct meta_bref **out, size_t *n,
			struct meta_map_at *at);
/*
 * Point block @idx of @ino at @name (inserting the object row with count 1
 * or raising its count by 1) after dropping the reference it had, if any.
 * @name NULL makes the block a hole. An object whose count reaches zero
 * is settled when the transaction commits (meta_commit()). On success
 * @out (may be NULL) receives the new reference.
 */
int meta_block_set(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   uint64_t idx, const char *name, uint32_t shard,
		   uint32_t size, struct meta_bref *out);
/* meta_block_set() whose insert of a new row takes generation @gen (a
 * shared store's flush shipped the object to that generation's key
 * before its commit; 0: a fresh one). A row already there keeps its
 * own. */
int meta_block_set_gen(struct meta *m, const struct meta_ver *v, uint64_t ino,
		       uint64_t idx, const char *name, uint32_t shard,
		       uint32_t size, int64_t gen, struct meta_bref *out);
/* Whether an object row named @name exists (1), or not (0). */
int meta_obj_exists(struct meta *m, const char *name);
/*
 * Drop every block reference of @ino with index >= @from: counts go
 * down; objects at zero are settled at commit (meta_commit()). A
 * reference to an object the table does not know logs a warning.
 */
int meta_blocks_drop(struct meta *m, const struct meta_ver *v, uint64_t ino,
		     uint64_t from);
/* Give inode @dst, of version @v, the block references and xattrs of
 * @src as its version @sv shows them (counts +1; NULL: the version of
 * each one's rows). */
int meta_blocks_copy(struct meta *m, const struct meta_ver *sv,
		     const struct meta_ver *v, uint64_t src, uint64_t dst);
/* The same; a shared store also gives @dst the size and allocation of
 * @src read with its blocks, and says them in @at (known is false on
 * one host, and on a shared store when either row is gone). */
int meta_blocks_copy_at(struct meta *m, const struct meta_ver *sv,
			const struct meta_ver *v, uint64_t src, uint64_t dst,
			struct meta_map_at *at);
/* Refcounts of the objects of @ino, in block order (holes skipped). */
int meta_refcounts(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   uint64_t **counts, size_t *n);

/*
 * Copy namespace @src_root as new namespace @dst_name: inodes get numbers
 * taken (meta_ino_take()) from *next_ino on; *next_ino receives the one
 * after them. Entries, blocks (counts raised) and xattrs are copied: with
 * @leaf, the source's leaf of a chain (its snapshots), what the leaf
 * shows; else the rows of the source's one version. *root receives the
 * new namespace's root, *count the number of inodes copied.
 */
int meta_branch(struct meta *m, uint64_t src_root, const struct meta_ver *leaf,
		const char *dst_name, uint64_t *next_ino, uint64_t *root,
		uint64_t *count);

/* xattrs: get copies into *out (malloc'ed); -ENODATA if absent. */
int meta_xattr_get(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   const char *name, void **out, size_t *len);
/* @flags: XATTR_CREATE (-EEXIST) / XATTR_REPLACE (-ENODATA). */
int meta_xattr_set(struct meta *m, const struct meta_ver *v, uint64_t ino,
		   const char *name, const void *val, size_t len, int flags);
int meta_xattr_remove(struct meta *m, const struct meta_ver *v, uint64_t ino,
		      const char *name);
/* NUL-separated names into *out (malloc'ed). */
int meta_xattr_list(struct meta *m, const struct meta_ver *v, uint64_t ino,
		    char **out, size_t *len);

int meta_stats(struct meta *m, struct meta_stats *out);
/* What statfs needs, without a scan: the number of inodes (kept by
 * triggers) and the bytes of the object files (shard_usage). */
int meta_statfs(struct meta *m, uint64_t *inodes, uint64_t *bytes_stored);

/* For tallyfsck: the recomputed count of each object vs. the stored one. */
struct meta_check {
	int64_t id; /* 0 for a reference to an unknown object */
	char name[OBJNAME_MAX];
	uint32_t shard;
	int64_t stored, truth;
	uint64_t size; /* the object's size by its row */
};
int meta_check_counts(struct meta *m,
		      int (*fn)(void *ctx, const struct meta_check *c),
		      void *ctx);
/*
 * The same for one chunk: the objects with ids from @from on, at most
 * @limit (> 0) of them, and the references to the ids of the range they
 * span (the last chunk spans up to INT64_MAX), read in one statement: a
 * consistent snapshot of the chunk. The chunks from INT64_MIN cover every
 * id once. Returns 1 and sets *@next to the start of the next chunk,
 * 0 after the last one, or the callback's error or a negative errno.
 */
int meta_check_chunk(struct meta *m, int64_t from, unsigned limit,
		     int64_t *next,
		     int (*fn)(void *ctx, const struct meta_check *c),
		     void *ctx);
/* Set an object's stored count (repair). 0 deletes the row. */
int meta_obj_set_count(struct meta *m, int64_t id, int64_t count);
/* Every object row: name, shard, stored count. Returns 0, or the
 * callback's error (a negative errno; it stops the scan). */
int meta_objects(struct meta *m,
		 int (*fn)(void *ctx, int64_t id, const char *name,
			   uint32_t shard, int64_t refcount),
		 void *ctx);

/* The first @limit object rows with ids above @after, by id; *@last gets
 * the last id. Returns how many, or the callback's error. */
int meta_objects_after(struct meta *m, int64_t after, unsigned limit,
		       int64_t *last,
		       int (*fn)(void *ctx, int64_t id, const char *name,
				 uint32_t shard, int64_t refcount),
		       void *ctx);

/* GC marks: an unreferenced object file, and since when (unix seconds). */
int meta_mark_get(struct meta *m, const char *name, int64_t *since);
/* Keeps an earlier mark. */
int meta_mark_put(struct meta *m, const char *name, uint32_t shard,
		  int64_t since);
int meta_mark_del(struct meta *m, const char *name);
int meta_marks(struct meta *m, int (*fn)(void *ctx, const char *name),
	       void *ctx);
/* The first @limit marks with names after @after, in name order (strcmp);
 * returns how many, or the callback's error. */
int meta_marks_after(struct meta *m, const char *after, unsigned limit,
		     int (*fn)(void *ctx, const char *name, int64_t since),
		     void *ctx);

/* One GC cycle, as logged. */
struct meta_gc_event {
	int64_t at, duration_ms;
	int dry_run;
	uint64_t checked, live, unreferenced, collected, preserved;
	uint64_t bytes_freed, drift, nodes;
};
int meta_gc_log_put(struct meta *m, const struct meta_gc_event *e);
/* The newest @max events, newest first. */
int meta_gc_log(struct meta *m, struct meta_gc_event *v, size_t max, size_t *n);

/* Node reports: a mount's active set (objects its flushes in flight may
 * still commit), with the time it was reported. */
int meta_node_report(struct meta *m, int64_t node, int64_t at,
		     const char *const *names, size_t n);
int meta_node_remove(struct meta *m, int64_t node);
/* Drop the reports older than @before, and with them the nodes'
 * sessions, open holds and directory watches (as meta_session_remove());
 * on a shared store the unlinked inodes that only they held go too.
 * *pruned receives how many reports went. */
int meta_nodes_prune(struct meta *m, int64_t before, uint64_t *pruned);
int meta_nodes_count(struct meta *m, uint64_t *n);
/* Every object named by a node report, a pin or a move in progress. */
int meta_protected_names(struct meta *m, int (*fn)(void *ctx, const char *name),
			 void *ctx);
/* 1 if a node report, a pin or (with @moves) a move in progress names
 * object @name, 0 if none does (indexed lookups). With @not_mine, the
 * report of this mount's node (meta_set_self()) is not asked. */
int meta_name_protected(struct meta *m, const char *name, bool moves,
			bool not_mine);
/* This mount's node id, for meta_name_protected(). */
void meta_set_self(struct meta *m, int64_t node);
/*
 * A shared engine: a transaction of this mount's left idle (the process
 * stopped, or cut off) for @seconds is ended by the server, and the
 * locks it held go with it (0: never). Kept across reconnects.
 */
void meta_set_idle_limit(struct meta *m, int64_t seconds);
/* 1 if a block reference names object @id, 0 if none does (extents_obj). */
int meta_obj_referenced(struct meta *m, int64_t id);

/*
 * Sessions (core/meta/meta_session.c): a row per live mount (node), with the
 * time after which the others may take it for dead.
 */
struct meta_session {
	int64_t id; /* the node id */
	char host[256];
	int64_t pid, started, heartbeat, expires;
	uint64_t active; /* objects in its node report */
};
int meta_session_add(struct meta *m, int64_t id, const char *host, int64_t pid,
		     int64_t now, int64_t expires);
/* -ENOENT if the session is gone (expired and cleaned up by another). */
int meta_session_beat(struct meta *m, int64_t id, int64_t now, int64_t expires);
/*
 * In a transaction: session @id exists, and (a shared store) stays until
 * the commit (FOR SHARE: a prune or a cleanup waits). -ESTALE if it is
 * gone: the node must register again and ship again what it had in
 * flight before it commits.
 */
int meta_session_hold(struct meta *m, int64_t id);
/* Sessions without a node report: nodes whose active set is unknown. */
int meta_sessions_unreported(struct meta *m, uint64_t *n);
/*
 * Open holds: node @node has inode @ino open (a shared store, where
 * another node may remove its last name meanwhile). meta_hold_add()
 * gives -ENOENT if the inode is gone; it and meta_inode_last() take the
 * inode's row in turn, so that an unlink sees a hold, or the open finds
 * no row.
 */
int meta_hold_add(struct meta *m, int64_t node, uint64_t ino);
/* The hold of an inode inserted in this same transaction (it cannot be
 * gone): no answer to wait for, it goes with the next statement. */
int meta_hold_new(struct meta *m, int64_t node, uint64_t ino);
int meta_hold_del(struct meta *m, int64_t node, uint64_t ino);
/* Node @node knows directory @dir whole (core/fs/dirnames.c): other nodes'
 * inserts into it notify. In a transaction; no answer is waited for. The
 * rows go with the node's session (meta_session_remove()). */
int meta_dir_watch(struct meta *m, uint64_t dir, int64_t node);
/* The rows of directory @dir go but node @keep's (@keep 0: every row, as
 * when @dir is removed; node ids are never 0). On PostgreSQL the delete
 * of another node's row notifies it (core/meta/meta_pg.c, DIR_WATCH). In a
 * transaction; no answer is waited for. */
int meta_dir_unwatch(struct meta *m, uint64_t dir, int64_t keep);
/* 1 if inode @ino has no link left and no node but @node holds it open
 * (its rows may go now), 0 if not, -ENOENT if it is gone. */
int meta_inode_last(struct meta *m, uint64_t ino, int64_t node);
/* The second half of meta_inode_last(), for a caller whose transaction
 * has taken the row already (its update of the link count, which the
 * store answered with 0): 1 if no node but @node holds @ino. */
int meta_inode_unheld(struct meta *m, uint64_t ino, int64_t node);
/*
 * Drop node @node's hold of @ino in a transaction of its own, with a
 * relaxed commit; *@nlink: the inode's link count, read (row locked) in
 * that transaction (PostgreSQL: one round trip for it all). -ENOENT: the
 * inode is gone (the hold's drop committed).
 */
int meta_hold_release(struct meta *m, int64_t node, uint64_t ino,
		      uint32_t *nlink);
/*
 * meta_hold_release() of node @node's holds of the @n inodes @inos, all
 * in one transaction (PostgreSQL: two round trips, whatever @n); their
 * rows are locked in inode order. *@zero (a new array of *@nzero, the
 * caller frees it): those of them whose link count is 0 (their rows may
 * go, meta_inode_last()); inodes that are gone are not in it.
 */
int meta_holds_release(struct meta *m, int64_t node, const uint64_t *inos,
		       size_t n, uint64_t **zero, size_t *nzero);
/* The transaction's commit need not wait for the disk (PostgreSQL:
 * synchronous_commit off for it): what a crash of the server may lose
 * of it is harmless (the drop of an open hold: the inode stays until
 * its session goes). In a transaction. */
int meta_relaxed(struct meta *m);
/* The orphans no node holds: a new array *@out of *@n. */
int meta_orphans_unheld(struct meta *m, struct meta_orphan **out, size_t *n);
/* In a transaction: free those inodes (their blocks and rows); *@n
 * receives how many. */
int meta_orphans_free(struct meta *m, size_t *n);
/*
 * The store's clock in seconds since the epoch: on a shared store the
 * server's, so that the times of sessions and node reports that nodes
 * compare are read off one clock whatever the nodes' own say (a node
 * whose clock is minutes off neither expires early nor lingers).
 */
int meta_now(struct meta *m, int64_t *now);
/* Remove session @id, its open holds and its node report. */
int meta_session_remove(struct meta *m, int64_t id);
/* Every session, oldest first; a nonzero return of @fn stops the scan. */
int meta_sessions(struct meta *m,
		  int (*fn)(void *ctx, const struct meta_session *s),
		  void *ctx);
/* How many sessions other than @self have not expired at @now. */
int meta_sessions_live(struct meta *m, int64_t now, int64_t self, uint64_t *n);
/* The ids of the sessions expired at @now: a new array (*ids). */
int meta_sessions_expired(struct meta *m, int64_t now, int64_t **ids,
			  size_t *n);
/* Take (or keep) lease @name for @holder until @until: 1 if it is
 * @holder's now, 0 if another holds it and it has not expired at @now. */
int meta_lease_take(struct meta *m, const char *name, int64_t holder,
		    int64_t now, int64_t until);
int meta_lease_drop(struct meta *m, const char *name, int64_t holder);

/* Pins: @path (mount-relative) keeps @names alive. -EEXIST if pinned. */
int meta_pin_add(struct meta *m, const char *path, int64_t at,
		 const char *const *names, size_t n);
/* -ENOENT if @path is not pinned. */
int meta_pin_remove(struct meta *m, const char *path);
int meta_pins(struct meta *m, int (*fn)(void *ctx, const char *path),
	      void *ctx);
/* The objects referenced by the inodes of namespace @nspace. */
int meta_nspace_objects(struct meta *m, uint64_t nspace,
			int (*fn)(void *ctx, const char *name), void *ctx);

/* The row of object @name; -ENOENT if none. */
int meta_object_info(struct meta *m, const char *name, int64_t *id,
		     uint32_t *shard, uint64_t *size, int64_t *refcount);
/* Per namespace and version: references to object @id and inodes holding
 * them, the holder named NS for rows of a namespace's own, NS@NAME for
 * rows of its snapshot NAME (which the versions after it read too where
 * they did not change them: docs/design.md 13.4). */
int meta_object_holders(struct meta *m, int64_t id,
			int (*fn)(void *ctx, const char *nspace, uint64_t refs,
				  uint64_t inodes),
			void *ctx);
/* Pins ("PATH") and node reports ("node ID") that keep object @name,
 * which must be a valid object name (hash_name_valid()). */
int meta_object_pinners(struct meta *m, const char *name,
			int (*fn)(void *ctx, const char *what), void *ctx);

/* The ghosts of object @obj: source shard, target, references. */
int meta_object_ghosts(struct meta *m, int64_t obj,
		       int (*fn)(void *ctx, uint32_t src, uint32_t dst,
				 int64_t refcount),
		       void *ctx);
/* Drop object @id and every block reference to it (the blocks become
 * holes): tallyfsck --repair's last resort for a corrupt object that
 * nothing can restore. */
int meta_obj_drop(struct meta *m, int64_t id);
/* Up to @limit inodes referencing object @obj, by inode and version, each
 * with its references and its path in that version: "ns/dir/file", for
 * a snapshot's rows ".snapshots/ns/NAME/dir/file", and for an inode that
 * version shows under no name "(inode N, unlinked)". */
int meta_object_paths(struct meta *m, int64_t obj, unsigned limit,
		      int (*fn)(void *ctx, const char *path, uint64_t refs),
		      void *ctx);
/* A mount-relative path of inode @ino ("ns/dir/file"; one of its names
 * if it has several); -ENOENT for an unlinked inode. */
int meta_inode_path(struct meta *m, uint64_t ino, char *buf, size_t size);

/* Space of one namespace, exact from the reference counts: its files as
 * it shows them now; its objects those of all its versions (its
 * snapshots' too, whose own are in meta_snapshots()). */
struct meta_du {
	uint64_t files, bytes_logical;
	uint64_t objects;	    /* distinct objects it references */
	uint64_t bytes_referenced;  /* their stored bytes */
	uint64_t bytes_exclusive;   /* referenced by this namespace only */
	uint64_t bytes_reclaimable; /* exclusive and not pinned: what
				       deleting the namespace frees */
};
int meta_du(struct meta *m, uint64_t nspace, struct meta_du *out);
/* The same of snapshot version @ver of @nspace: its files and the objects
 * it shows, as /.snapshots shows it; exclusive bytes are those only it
 * holds, what its removal frees (pins aside: reclaimable). */
int meta_du_snapshot(struct meta *m, uint64_t nspace, int64_t ver,
		     struct meta_du *out);

/* -- shards, ghosts and moves (core/jobs/shard.c) -- */

#define META_SHARD_ACTIVE 0
#define META_SHARD_DRAINING 1

/* Every shard row: id, path (NULL for shard 0, STORE/shards/0), state. */
int meta_shards(struct meta *m,
		int (*fn)(void *ctx, uint32_t id, const char *path, int state),
		void *ctx);
/* A new shard row for @path with the next id (-EMLINK past @max_id,
 * -EEXIST if @path is a shard already). */
int meta_shard_add(struct meta *m, const char *path, uint32_t max_id,
		   int64_t now, uint32_t *id);
/* -ENOENT for an unknown shard. */
int meta_shard_set_state(struct meta *m, uint32_t id, int state);
/* Objects and their bytes per shard (kept up to date by triggers). */
int meta_shard_usage(struct meta *m,
		     int (*fn)(void *ctx, uint32_t shard, uint64_t objects,
			       uint64_t bytes),
		     void *ctx);
/* For tallyfsck: the shards whose kept counts differ from the object
 * table, with the true counts; and the repair (in a transaction). */
int meta_shard_usage_check(struct meta *m,
			   int (*fn)(void *ctx, uint32_t shard,
				     uint64_t objects, uint64_t bytes),
			   void *ctx);
int meta_shard_usage_rebuild(struct meta *m);
/* Up to @limit objects of @shard with an id above @after, by id. */
int meta_objects_in(struct meta *m, uint32_t shard, int64_t after,
		    unsigned limit,
		    int (*fn)(void *ctx, int64_t id, const char *name,
			      uint64_t size),
		    void *ctx);

/* The intent of moving object @obj from @src to @dst (kept until
 * meta_move_end(), so that an interrupted move is finished or undone). */
int meta_move_begin(struct meta *m, int64_t obj, const char *name, uint32_t src,
		    uint32_t dst);
int meta_move_end(struct meta *m, int64_t obj);
int meta_moves(struct meta *m,
	       int (*fn)(void *ctx, int64_t obj, const char *name, uint32_t src,
			 uint32_t dst),
	       void *ctx);
/*
 * Record that object @obj, found in @src, now lives in @dst: the object
 * row names @dst, a ghost (obj, src -> dst) counts the references that
 * still name @src, older ghosts of the object lead to @dst, and a ghost
 * from @dst itself goes (its references are direct again). Returns 1, or
 * 0 and changes nothing when the object is gone or not in @src.
 */
int meta_move_commit(struct meta *m, int64_t obj, uint32_t src, uint32_t dst,
		     int64_t now);

struct meta_ghost {
	int64_t obj;
	char name[OBJNAME_MAX];
	uint32_t src, dst;
	int64_t refcount, created;
	bool object_exists;
};
int meta_ghosts(struct meta *m,
		int (*fn)(void *ctx, const struct meta_ghost *g), void *ctx);
int meta_ghost_count(struct meta *m, uint64_t *n);
/* Where the ghost (obj, src) leads; -ENOENT if there is none. */
int meta_ghost_target(struct meta *m, int64_t obj, uint32_t src, uint32_t *dst);
/* The shard object @obj lives in; -ENOENT if no such object. */
int meta_object_shard(struct meta *m, int64_t obj, uint32_t *shard);
/*
 * Repoint to their ghosts' targets the references of the inodes from
 * @from on, about @max_blocks block rows' worth; ghosts whose target is
 * a bit set in @skip_dst are left alone. *next receives the first inode
 * of the next batch (UINT64_MAX when done), *repointed the references
 * changed (their ghosts' counts go down with them).
 */
int meta_ghosts_repoint(struct meta *m, uint64_t from, size_t max_blocks,
			uint64_t skip_dst, uint64_t *next, uint64_t *repointed);
/* The count of ghost (obj, src); -ENOENT if there is none. */
int meta_ghost_refcount(struct meta *m, int64_t obj, uint32_t src,
			int64_t *refcount);
/* Delete ghost (obj, src) if its count is 0: *purged says whether. */
int meta_ghost_purge(struct meta *m, int64_t obj, uint32_t src, bool *purged);
/*
 * For tallyfsck: references that name a shard other than their object's
 * whose ghost is missing (has_ghost false) or counts them wrong.
 */
int meta_check_ghosts(struct meta *m,
		      int (*fn)(void *ctx, int64_t obj, uint32_t src,
				int64_t stored, int64_t truth, bool has_ghost),
		      void *ctx);
/* Repair one finding of meta_check_ghosts(): the ghost's count is set to
 * @truth, or references without a ghost name the object's shard. */
int meta_ghost_fix(struct meta *m, int64_t obj, uint32_t src, int64_t truth,
		   bool has_ghost);

/* One sweep, as logged. */
struct meta_sweep_event {
	int64_t at, duration_ms;
	uint64_t checked, purged, kept, inconclusive, repointed;
};
int meta_sweep_log_put(struct meta *m, const struct meta_sweep_event *e);
/* The newest sweep and the ghosts purged by all of them; -ENOENT if no
 * sweep ran yet. */
int meta_sweep_last(struct meta *m, struct meta_sweep_event *e,
		    uint64_t *total_purged);

/*
 * The remote tier (core/meta/meta_remote.c). A store is bound to a bucket by
 * meta_remote_enable(): from then on every new object row is queued for
 * upload and every deleted row that was in the bucket for deletion there
 * (once the deletion delay has passed), by triggers, in the transaction
 * that makes the change.
 */
/*
 * Keys of the bucket are made from an object's name and the generation
 * of its row (objects.gen): 0 for a row made before generations (the key
 * is the name), else a number a store never gives twice (the key is
 * NAME.gN). A deletion names a key, never a name: content made again
 * after its row went is a new row, with a new generation, so a DELETE
 * that arrives late cannot touch it (docs/design.md, section 10).
 */
#define OBJKEY_MAX (OBJNAME_MAX + 24)
/* The key name of generation @gen of object @name into @out. */
void meta_key_name(const char *name, int64_t gen, char out[OBJKEY_MAX]);
/* The object name and generation of key name @key: 0, or -EINVAL if
 * @key is no key name. */
int meta_key_parse(const char *key, char name[OBJNAME_MAX], int64_t *gen);
/* A fresh generation (a shared store's flush, before it ships a new
 * object): never given again. */
int meta_gen_take(struct meta *m, int64_t *gen);
/* Text settings of the binding ("url", "store"): -ENOENT if unset; *out
 * malloc'ed. */
int meta_remote_conf_get(struct meta *m, const char *key, char **out);
int meta_remote_conf_set(struct meta *m, const char *key, const char *val);
/* Setting @key made @val if it is @old still: 0, or -ESTALE (it is not:
 * another node changed it meanwhile). */
int meta_remote_conf_swap(struct meta *m, const char *key, const char *old,
			  const char *val);
/* Bind the store (in a transaction); when @first, queue every object
 * not in the bucket yet. */
int meta_remote_enable(struct meta *m, bool first);
/* The first @limit queued uploads, by sequence: name, generation,
 * sequence, where the object lives and its size. A nonzero return of
 * @fn stops the scan. */
int meta_remote_next(struct meta *m, unsigned limit,
		     int (*fn)(void *ctx, const char *name, int64_t gen,
			       int64_t seq, uint32_t shard, uint64_t size),
		     void *ctx);
/* The bucket has generation @gen of object @name: record it and dequeue
 * it (a row deleted meanwhile, or made again as another generation, gets
 * the key queued for deletion; the other generation stays queued). */
int meta_remote_uploaded(struct meta *m, const char *name, int64_t gen);
/*
 * A shared store: a new row of object @name and a deletion of one of its
 * keys in the bucket take turns. The claims below name keys
 * (meta_key_name()). meta_remote_name_lock() takes the name's turn
 * until the transaction ends (PostgreSQL: an advisory lock, which the
 * insert of an object row takes too); meta_remote_claim() records that
 * the key's deletion is under way, so that a row inserted meanwhile is
 * not recorded as in the bucket and its upload waits for the deletion.
 * meta_remote_unclaim(): the deletion was not made (the record goes);
 * meta_remote_gone(): it was made or tried (the record stays, as made,
 * until meta_remote_gone_prune() drops those made before @before, unix
 * seconds): a flush that shipped the object before it cannot tell
 * whether its copy went with the deletion. If this node's claim was no
 * longer under way (taken over by meta_remote_claims_stale() while the
 * request ran), a row of the name is no longer recorded in the bucket
 * and its upload is queued again: the content may have been shipped
 * anew before the DELETE arrived.
 */
int meta_remote_name_lock(struct meta *m, const char *name);
int meta_remote_claim(struct meta *m, const char *name);
int meta_remote_unclaim(struct meta *m, const char *name);
int meta_remote_gone(struct meta *m, const char *name);
int meta_remote_gone_prune(struct meta *m, int64_t before);
/*
 * Take over the claims under way of nodes whose session is gone (a node
 * killed, or cut off past its expiry, with a deletion in flight): each
 * is recorded as made or tried (meta_remote_gone()), so the upload of
 * the content written again goes. *@n: how many. A shared store's
 * storage loop calls it; with the embedded engine (one mount at a time)
 * every claim under way is a mount's that ended.
 */
int meta_remote_claims_stale(struct meta *m, uint64_t *n);
/* Each claim under way: @fn(ctx, name, since, node) (node 0: unknown),
 * by name; a nonzero return of @fn stops and is returned. */
int meta_remote_claims(struct meta *m,
		       int (*fn)(void *ctx, const char *name, int64_t since,
				 int64_t node),
		       void *ctx);
/* The node that queued the upload of @name (0: unknown, the embedded
 * engine): 0, -ENOENT if none is queued, or -errno. */
int meta_remote_queued_by(struct meta *m, const char *name, int64_t *node);
/* The flush shipped generation @gen of object @name before its commit:
 * record it in the bucket and dequeue it (1), if the row is of that
 * generation; 0 if not (left queued). A row of that generation whose key
 * has a deletion claimed (under way or made: a deletion of a key no row
 * named yet) takes a fresh generation, left queued: a late DELETE of
 * the claimed key cannot touch what the loop uploads. */
int meta_remote_shipped(struct meta *m, const char *name, int64_t gen);
/* The lowest queued sequence (-1: the queue is empty) and the queue's
 * length. */
int meta_remote_low(struct meta *m, int64_t *min_seq, uint64_t *queued);
/* Keys queued for deletion in the bucket. */
int meta_remote_dels(struct meta *m, uint64_t *n);
/* The first @limit keys queued for deletion at or before @before (unix
 * seconds), oldest first. */
int meta_remote_dels_due(struct meta *m, int64_t before, unsigned limit,
			 int (*fn)(void *ctx, const char *name), void *ctx);
int meta_remote_del_done(struct meta *m, const char *name);
/* 1 if object @name is queued for upload, 0 if not (a lookup of the
 * verdicts: meta_inject_lookup() fails it too). */
int meta_remote_queued(struct meta *m, const char *name);
struct meta_remote_state {
	bool remote; /* the bucket has it */
	bool cached; /* its local copy was not evicted */
	uint32_t shard;
	uint64_t size;
	int64_t gen; /* its key's generation */
};
/* The remote state of object @name's row: 0, -ENOENT (no row), -errno. */
int meta_remote_state(struct meta *m, const char *name,
		      struct meta_remote_state *out);
/* Objects in the bucket whose copy is local, by id above @after (at most
 * @limit): the candidates for eviction. */
int meta_remote_evictable(struct meta *m, int64_t after, unsigned limit,
			  int (*fn)(void *ctx, int64_t id, const char *name,
				    uint32_t shard, uint64_t size),
			  void *ctx);
/* Record that object @name's local copy is there (@cached) or evicted. */
int meta_remote_set_cached(struct meta *m, const char *name, bool cached);
/* Bytes of the objects whose copy is local. */
int meta_remote_cache_bytes(struct meta *m, uint64_t *bytes);
/* GC of the bucket: 1 if a row of its generation or a queued deletion
 * names key @name, 0 if nothing does (a lookup of the verdicts:
 * meta_inject_lookup() fails it too); -EINVAL: no key name. */
int meta_remote_named(struct meta *m, const char *name);
/*
 * A restore on the bucket of the store it comes from: bucket key @key,
 * which the restored snapshot does not name, is the original's (written
 * after the snapshot, named by its newer kept snapshots): kept, counted
 * as named (meta_remote_named()) until meta_remote_kept_release(), which
 * the bucket's GC calls once the original's snapshots of then are gone
 * and remote_conf 'kept_until' has passed (core/remote/remote_del.c).
 * Nothing on a shared store. 0 or -errno.
 */
int meta_remote_kept_add(struct meta *m, const char *key);
int meta_remote_kept_release(struct meta *m);
/* Mark key @name unreferenced since @now (an earlier mark is kept);
 * *since gets the mark's time. */
int meta_remote_mark(struct meta *m, const char *name, int64_t now,
		     int64_t *since);
/* The mark of @name: 0 and *since, or -ENOENT. */
int meta_remote_mark_get(struct meta *m, const char *name, int64_t *since);
int meta_remote_unmark(struct meta *m, const char *name);
/* Queue key @name for deletion, as unreferenced since @since. */
int meta_remote_del_add(struct meta *m, const char *name, int64_t since);
/* Every object the bucket has (by its row): its key name and size. */
int meta_remote_in_bucket(struct meta *m,
			  int (*fn)(void *ctx, const char *name, uint64_t size),
			  void *ctx);
/*
 * Metadata snapshots keep what they name (SQLite stores; a shared store
 * makes none). config 'snap_epoch' counts snapshot copies: a key queued
 * for deletion records the epoch of its row's deletion, and a snapshot
 * copied at epoch E names no row deleted at an epoch above E.
 * meta_remote_snap_named(): 1 if key @key may be named by a snapshot
 * still kept (deleted at an epoch above the oldest kept one's), else 0.
 * meta_snap_epoch_bump(): in a transaction of its own, right after a
 * snapshot's copy is complete (under the same lock): *@epoch gets the
 * copy's epoch, and later deletions record the next.
 * meta_snap_record(): snapshot @key, of @epoch, is in the bucket.
 * meta_snap_kept(): the snapshots the bucket keeps are @keys (a whole
 * listing); one without a record (made before epochs) counts as epoch 0.
 * meta_change_count(): rows changed through this connection since it
 * opened (SQLite; 0 on PostgreSQL): a change since the last snapshot.
 */
int meta_remote_snap_named(struct meta *m, const char *key);
int meta_snap_epoch_bump(struct meta *m, int64_t *epoch);
int meta_snap_record(struct meta *m, const char *key, int64_t epoch);
int meta_snap_kept(struct meta *m, const char *const *keys, size_t n);
int64_t meta_change_count(struct meta *m);
/* 1 if a deletion of a key of object @name is queued, 0 if not. */
int meta_remote_del_queued(struct meta *m, const char *name);

/*
 * A consistent copy of the metadata in the SQLite file @path (online
 * backup): meta_backup_begin() under the caller's lock, then
 * meta_backup_step() (1: more to copy, 0: done, or -errno), each under
 * the lock (changes made between the steps by the same connection reach
 * the copy), then meta_backup_end() (the copy closed; 0 or -errno).
 */
struct meta_backup;
int meta_backup_begin(struct meta *m, const char *path,
		      struct meta_backup **out);
int meta_backup_step(struct meta_backup *b, int pages);
int meta_backup_end(struct meta_backup *b);
/* The uploads queued in the snapshot file @path, to @fn. */
int meta_snapshot_queued(const char *path,
			 int (*fn)(void *ctx, const char *name), void *ctx);
/*
 * A store made from a snapshot (in a transaction): every object is in
 * the bucket and none is local (remote = 1, cached = 0), nothing queued
 * for upload, no node report or GC mark of the store it came from.
 */
int meta_remote_restored(struct meta *m);

#endif
