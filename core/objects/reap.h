/* SPDX-License-Identifier: MIT */
/*
 * The deletion of object files: the one module (besides the object
 * store's own temp files) that removes an object file, and the rule it
 * enforces. See DESIGN NOTES in core/objects/reap.c and docs/design.md,
 * "Deleting objects".
 *
 * Every function here expects the metadata lock held (the caller's
 * serialisation of @m), outside a transaction, once the commits that
 * made the objects deletable are durable (the WAL synced), except
 * reap_unlink_doomed(), which runs without it.
 */
#ifndef TALLY_REAP_H
#define TALLY_REAP_H

#include <stdint.h>
#include <sys/types.h>

struct meta;
struct objstore;
struct meta_objlist;
struct s3;
struct s3_cfg;

/* Flags of the copy verdicts. */
#define REAP_OWN_MOVE 1u /* the caller settles the move journaled for it */
/* this mount's own node report is not asked: its flushes in flight
 * check their objects again when they commit (core/fs/tally.c, 2), and a
 * stale copy of its active set would only leak */
#define REAP_NOT_MINE 2u

/*
 * Whether nothing names object @name, whose row id was @id (0 if not
 * known): no object row by that name, no block reference to @id, no pin,
 * node report or move (as @flags say). 1: nothing does; 0: something
 * does; a negative errno: a lookup failed (so the answer is "keep").
 */
int reap_object_free(struct meta *m, const char *name, int64_t id,
		     unsigned flags);

/*
 * Whether the copy of @name in shard @shard is needed by nothing: the
 * object's row names another shard and no move in progress names the
 * object (unless @flags has REAP_OWN_MOVE), or the object has no row and
 * reap_object_free() says so (moves aside with REAP_OWN_MOVE). 1, 0 or
 * a negative errno as reap_object_free().
 */
int reap_copy_free(struct meta *m, const char *name, int64_t id, uint32_t shard,
		   unsigned flags);

/*
 * Delete the files of the objects whose rows the committed transactions
 * deleted (meta_dead_take()), each only where the object verdict (with
 * REAP_NOT_MINE) says 1; the others are kept and logged. Returns the
 * number of files deleted.
 */
unsigned reap_dead(struct meta *m, struct objstore *os);
/*
 * reap_dead() in two halves, for a caller whose hold other requests wait
 * on: the verdicts, each file one frees doomed in the hold and added to
 * @doomed (a commit that checks the file from then on keeps it:
 * objstore_doom()); then, after the hold, the unlinks, which empty
 * @doomed. Each returns the files doomed, or unlinked.
 */
unsigned reap_dead_doom(struct meta *m, struct objstore *os,
			struct meta_objlist *doomed);
unsigned reap_dead_unlink(struct objstore *os, struct meta_objlist *doomed);

/*
 * Delete the copy of @name in @shard if reap_copy_free() says 1.
 * Returns 1 if it was deleted (or already gone), 0 if kept, or a
 * negative errno (kept).
 */
int reap_copy(struct meta *m, struct objstore *os, const char *name, int64_t id,
	      uint32_t shard, unsigned flags);

/*
 * For deletions done in bulk outside the lock (GC): doom the copy of
 * @name in @shard when reap_copy_free() says 1, in the hold that asked
 * (a commit that checks the file from then on cancels the deletion:
 * objstore_doom()). 1 doomed, 0 kept, or a negative errno (kept).
 */
int reap_doom(struct meta *m, struct objstore *os, const char *name,
	      uint32_t shard);
/* Unlink a file reap_doom() doomed, without the lock: 0 (*size its
 * size), 1 if a commit cancelled it, or a negative errno. */
int reap_unlink_doomed(struct objstore *os, uint32_t shard, const char *name,
		       off_t *size);

/*
 * The remote tier (core/remote/remote.c). Whether bucket key @key (a key name,
 * meta_key_name(): an object's name and generation) may go: no row of
 * that generation names it (a row of another generation names another
 * key), no pin, node report or move names the object. 1, 0, or a
 * negative errno (kept; -EINVAL: no key name).
 */
int reap_remote_free(struct meta *m, const char *key);
/*
 * A shared store: reap_remote_free() in a transaction of its own that
 * takes the name's turn first and, when it says 1, records the deletion
 * as under way (meta_remote_claim(), naming this node; the caller ends
 * it with meta_remote_gone() once the request is done or failed, with
 * meta_remote_unclaim() if it was never made; a node gone leaves it to
 * meta_remote_claims_stale()). Same
 * answers; the caller's metadata lock held, no transaction open.
 */
int reap_remote_claim(struct meta *m, const char *key);
/* The request that deletes key @name (a key name) from the bucket (after
 * reap_remote_free() said 1, once the WAL is synced; without the lock):
 * s3_delete()'s result. */
int reap_remote_delete(struct s3 *s, const struct s3_cfg *cfg,
		       const char *name);
/*
 * Whether the local copy of object @name may be evicted: its row says
 * the bucket has it and the copy is cached (a shared store's rows say
 * nothing of a node's copies: the bucket alone), and no pin, report or
 * move names it. 1 (*@shard: where the copy is), 0, or a negative errno.
 */
int reap_evict_free(struct meta *m, const char *name, uint32_t *shard);
/*
 * Delete the metadata snapshots of @keys (a whole listing, oldest first)
 * but the newest @keep (at least one). Returns how many went.
 */
unsigned reap_snapshots(struct s3 *s, const char *const *keys, size_t n,
			unsigned keep);
/*
 * reap_evict_free(), and when it says 1 the copy doomed in the same hold
 * (a commit that checks the file from then on keeps it: a row made again
 * meanwhile, its upload to come from that copy). 1 doomed, 0, -errno.
 */
int reap_evict_doom(struct meta *m, struct objstore *os, const char *name,
		    uint32_t *shard);
/* Unlink the copy reap_evict_doom() doomed, once the commit recording it
 * evicted is done (without the lock): 0, 1 if a commit kept it, or a
 * negative errno. */
int reap_evict(struct objstore *os, uint32_t shard, const char *name);
/* Fault injection, for tests only (tally_inject_evict()): the local copy
 * of @name unlinked with no verdict, as an eviction that won a race with
 * a read does; its row still says cached, and a read fetches it again.
 * Never on a copy the bucket does not hold (its caller fetched it). */
int reap_evict_fault(struct objstore *os, uint32_t shard, const char *name);

#endif
