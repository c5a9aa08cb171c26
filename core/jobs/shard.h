/* SPDX-License-Identifier: MIT */
/*
 * Shards, online rebalance, ghost stubs and the anti-entropy sweep.
 *
 * A store pools several directories (shards, typically one per disk).
 * Objects move between them online; a moved object leaves a ghost in the
 * metadata (object, source shard -> target shard, count of the block
 * references that still name the source), reads follow ghosts, and the
 * sweep repoints those references and purges the ghosts nothing needs.
 */
#ifndef TALLY_SHARD_H
#define TALLY_SHARD_H

#include <stdbool.h>
#include <stdint.h>

struct tally;

/*
 * At mount: placement counts from the object table, and the moves an
 * earlier mount left half done are finished or undone.
 */
int shard_setup(struct tally *t);

/*
 * Make directory @dir (absolute, existing, empty, not inside the mount
 * at @mountpoint, which may be NULL) a new shard of the store. *id
 * receives its number. -EINVAL (relative or inside the mount), -ENOENT,
 * -ENOTDIR, -ENOTEMPTY, -EEXIST (a shard already), -EMLINK (too many).
 */
int shard_add(struct tally *t, const char *dir, const char *mountpoint,
	      uint32_t *id);

/*
 * Stop placing objects in shard @id; the next rebalance empties it. The
 * state persists. -ENOENT for an unknown shard, -EBUSY (nothing changes)
 * when @id is the last active shard: new objects would have nowhere to
 * go. Draining a draining shard again is allowed.
 */
int shard_drain(struct tally *t, uint32_t id);

/* Make shard @id active again (new objects may go there; the next
 * rebalance gives it a share). The state persists. -ENOENT for an unknown
 * shard; an active shard stays active. */
int shard_activate(struct tally *t, uint32_t id);

/* Check every shard (reachable or not), as the timer does. */
void shard_check_all(struct tally *t);

struct shard_rebalance_report {
	uint64_t moved;	    /* objects moved */
	uint64_t bytes;	    /* their bytes */
	uint64_t failed;    /* moves that failed (the object stays) */
	uint64_t recovered; /* interrupted moves finished or undone */
	uint64_t ghosts;    /* ghosts after the rebalance */
	double duration_ms;
};

/*
 * Move objects until every reachable active shard holds its share of the
 * bytes (in proportion to its capacity, within one object) and draining
 * shards are empty. Each move: copy, fsync, verify, record the new place
 * and a ghost, then remove the source copy. Interrupted (unmount, kill),
 * it is resumed by running it again; an object always has a readable
 * copy.
 */
int shard_rebalance(struct tally *t, struct shard_rebalance_report *r);

struct shard_sweep_opts {
	long batches; /* repoint batches at most; < 0: all */
};

struct shard_sweep_report {
	int64_t at;
	uint64_t checked, purged, kept, inconclusive, repointed;
	double duration_ms;
};

/*
 * The anti-entropy sweep: repoint the references that name a ghost's
 * source to its target (in batches; each lowers the ghost's count), then
 * decide per ghost: purge it when no reference names the source and the
 * target shard holds the object (checked right before, on disk; a ghost
 * whose count was already 0 is purged without that check), keep it while
 * references remain, inconclusive when its target shard is unreachable.
 * The report is logged (status: last_sweep, total_purged).
 */
int shard_sweep(struct tally *t, const struct shard_sweep_opts *o,
		struct shard_sweep_report *r);

struct shard_info {
	uint32_t id;
	char path[4096];
	bool reachable, draining;
	uint64_t objects, bytes; /* from the object table */
	uint64_t free;		 /* free bytes of its filesystem */
};

struct shard_infos {
	struct shard_info v[64]; /* OBJSTORE_MAX_SHARDS */
	unsigned n;
	uint64_t ghosts, total_purged;
	bool have_sweep;
	struct shard_sweep_report last_sweep;
};

/* Every shard (checked now), the ghosts and the last sweep. */
int shard_infos(struct tally *t, struct shard_infos *out);

#endif
