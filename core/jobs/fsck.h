/* SPDX-License-Identifier: MIT */
/*
 * Offline consistency check of a store (used by tallyfsck): recomputes
 * every object's count from the block references and compares it with the
 * stored one, and the object table with the object files.
 */
#ifndef TALLY_FSCK_H
#define TALLY_FSCK_H

#include <stdbool.h>
#include <stdint.h>

struct store;

struct fsck_result {
	uint64_t objects;     /* rows in the object table */
	uint64_t references;  /* block references */
	uint64_t drift_under; /* stored count < truth (dangerous) */
	uint64_t drift_over;  /* stored count > truth (a leak) */
	uint64_t dangling;    /* references to a missing object */
	uint64_t orphans;     /* object files nothing knows */
	uint64_t cache_stale; /* a shared store: local copies of objects
				 whose rows went (not a problem) */
	uint64_t ghosts;      /* ghost stubs (not a problem) */
	uint64_t ghost_drift; /* ghost counts or shard names that are wrong */
	uint64_t unreachable; /* shards that could not be checked */
	uint64_t usage_drift; /* shards whose kept counts are wrong */
	uint64_t repaired;    /* counts rewritten by --repair */
	uint64_t removed;     /* unreferenced object files deleted */
	uint64_t corrupt;     /* object files whose size is not their row's */
	uint64_t restored;    /* corrupt objects rewritten from a good copy */
	uint64_t dropped;     /* corrupt objects nothing could restore */
	uint64_t remote_only; /* evicted: only the bucket holds them (fine) */
	uint64_t queued_missing; /* queued for upload, no local copy (lost) */
	/* a shared store: queued for upload by another node, whose cache
	 * holds the copy (not lost) */
	uint64_t queued_elsewhere;
	/* a shared store: deletions left under way by nodes gone, holding
	 * the uploads of their names (--repair: taken over) */
	uint64_t claims_stale;
	uint64_t settled;     /* fsck_settle(): queued uploads without a local
			     copy, found in the bucket and recorded so */
	uint64_t bucket_keys; /* fsck_bucket(): object keys listed */
	uint64_t bucket_missing; /* recorded in the bucket, not there (lost) */
	uint64_t bucket_orphans; /* keys nothing names (a leak) */
	uint64_t nameless;	 /* inodes with links no entry names (a
				    leak; --repair: freed at the next mount) */
	uint64_t homeless;	 /* inodes without a row that block or xattr
			      rows name (a leak; --repair: removed) */
	uint64_t misfiled;	 /* rows in another version than their
			      namespace's (a defect of the build that
			      wrote them; not repaired) */
};

/*
 * Check the store @s (opened and locked by the caller). @say receives one
 * line per problem found. With @repair, counts are rebuilt exactly from
 * the references, and object files that nothing references are deleted;
 * a referenced object is never deleted. A corrupt object (a file shorter
 * or longer than its row says, as power loss may leave) is rewritten from
 * a good copy (the same name in another shard, or a variant name holding
 * the same bytes); only when there is none are it and its references
 * dropped (those blocks read as zeros), and each file that lost data is
 * named. An inode whose rows give it links while no entry names it (a
 * leak) gets a link count of 0, so that the next mount frees it as it
 * frees the unlinked inodes a crash left. Block and xattr rows of an
 * inode that has no row (a leak) are removed, their objects' counts
 * lowered with them.
 */
int fsck_run(struct store *s, bool repair,
	     void (*say)(void *ctx, const char *line), void *ctx,
	     struct fsck_result *res);

/* Whether @res shows any problem. */
bool fsck_problems(const struct fsck_result *res);

/*
 * The store's bucket (@cfg): every object recorded there must be listed,
 * every listed key must be named by a row or a queued upload or
 * deletion. Counts in @res, one line per problem to @say. 0, or the
 * error of the listing (said too).
 */
struct s3_cfg;
/*
 * --repair with the bucket, before fsck_run(): each upload queued for an
 * object whose local copy is gone (a power loss that kept an eviction's
 * unlink and not its rows, before evictions synced them) and whose key
 * the bucket has is recorded as uploaded and evicted (res->settled,
 * each said). What the bucket lacks stays queued: fsck_run() says it is
 * lost. Not on a shared store (another node's cache holds such copies).
 */
int fsck_settle(struct store *s, const struct s3_cfg *cfg,
		void (*say)(void *ctx, const char *line), void *ctx,
		struct fsck_result *res);
int fsck_bucket(struct store *s, const struct s3_cfg *cfg,
		void (*say)(void *ctx, const char *line), void *ctx,
		struct fsck_result *res);

#endif
