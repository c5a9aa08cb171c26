/* SPDX-License-Identifier: MIT */
/*
 * The remote tier: committed objects shipped to an S3 bucket by a storage
 * loop, the local shards a cache of the bucket, deletions in the bucket
 * behind a delay. See DESIGN NOTES in core/remote/remote.c and docs/design.md,
 * "The remote tier".
 */
#ifndef TALLY_REMOTE_H
#define TALLY_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/s3/s3.h"
#include "core/s3/seal.h"

struct tally;
struct remote;

/* Defaults of the mount options. */
#define REMOTE_MAX_UPLOADS 8
#define REMOTE_DRAIN_TIMEOUT 60		/* seconds, at unmount */
#define REMOTE_DELETE_DELAY (7 * 86400) /* seconds */
#define REMOTE_SNAPSHOT_INTERVAL 3600	/* seconds */
#define REMOTE_UPLOAD_DELAY 1.0		/* seconds */
#define REMOTE_SNAPSHOT_KEEP 24

struct remote_opts {
	struct s3_cfg cfg;	  /* the bucket: taken over by remote_new() */
	unsigned max_uploads;	  /* jobs in flight; 0 = REMOTE_MAX_UPLOADS */
	uint64_t cache_size;	  /* local object bytes kept; 0 = no eviction */
	int64_t delete_delay;	  /* seconds before a key is deleted; < 0 = the
				 default */
	double drain_timeout;	  /* at unmount, seconds; < 0 = the default */
	double retry_max;	  /* longest backoff, seconds; 0 = 30 */
	double upload_delay;	  /* an object waits this long after its
				     commit before it is shipped, unless
				     someone waits for the uploads; < 0 =
				     the default */
	double snapshot_interval; /* seconds between metadata snapshots
				     (when something changed); 0 = only on
				     drain remote; < 0 = the default */
	unsigned snapshot_keep;	  /* snapshots kept; 0 = the default */
	bool keyed;		  /* key_file: bodies encrypted with key */
	struct seal_key key;
	int compress; /* zstd level of the bodies; 0: none */
};

/*
 * Bind the store of @t to the bucket of @o and start the storage loop.
 * A store bound to another bucket, or a bucket holding another store,
 * is refused (-EUCLEAN, logged); a server that refuses the credentials
 * (-EACCES) or has no such bucket (-ENOENT) too. A server that cannot be
 * reached is logged, and the loop waits for it. @o->cfg is taken over
 * (zeroed) on success and on failure.
 */
int remote_new(struct tally *t, struct remote_opts *o, struct remote **out);

/*
 * Stop: wait until everything committed is in the bucket, at most the
 * drain timeout, then stop the loop (jobs in flight end first); what is
 * still queued stays queued, for the next mount, and is logged.
 */
void remote_free(struct remote *r);

/* The bucket key of object @name's copy of generation @gen (its row's):
 * 0 or -errno. */
int remote_object_key(struct remote *r, const char *name, int64_t gen,
		      char *key, size_t len);

/* New work may be queued (a commit made objects). */
void remote_kick(struct remote *r);

/*
 * Wait until every object committed by flushes up to @seq is in the
 * bucket (durable_remote_seq >= @seq): 0, or -ETIMEDOUT after @timeout
 * seconds (0: as long as it takes), or -ESHUTDOWN when unmounting.
 */
int remote_wait(struct remote *r, uint64_t seq, double timeout);

/*
 * The local copy of object @name, which its row places in @shard, is
 * missing: fetch it from the bucket, check that its bytes hash to its
 * name and are @size long, and store it there. Retried with backoff for
 * a few seconds. 0, -ENOENT (the bucket does not have it), -EBADMSG (it
 * holds other bytes), -ESTALE (its row went meanwhile: the copy is not
 * kept), -EIO (unreachable), or the local error.
 */
/*
 * A shared store (meta=): put object @name (@size bytes, in @shard) into
 * the bucket now, unless its row says the bucket has it; retried while
 * the server fails, for a few seconds. The flush stream calls it, so that
 * objects are in the bucket before the commit that names them (every node
 * can fetch what any node committed). @buf (borrowed, may be NULL): the
 * object's bytes, put from there when the copy in @shard is gone and no
 * row names the object (a GC cycle collected it before this node's
 * report named it). The key is that of the row's generation (*@gen), or,
 * with no row, of a fresh one (*@fresh: the commit's new row takes it,
 * meta_block_set_gen()). No lock held. 1 if it was put there now, 0 if
 * its row says the bucket has it, or -errno (-EIO: neither copy, row nor
 * @buf).
 */
int remote_ship(struct remote *r, uint32_t shard, const char *name,
		uint64_t size, const void *buf, int64_t *gen, bool *fresh);
int remote_fetch(struct remote *r, uint32_t shard, const char *name,
		 uint64_t size);
/*
 * A read of object @name's bytes [@off, @off + @len) into @out from the
 * bucket, its bytes checked against its name, no copy kept: what a read
 * does when remote_fetch() says -ENOSPC (the cache disk is full, and the
 * copies it could evict do not make room). The bytes read (fewer past
 * the object's end), or -errno.
 */
ssize_t remote_read(struct remote *r, uint32_t shard, const char *name,
		    uint64_t size, void *out, size_t off, size_t len);

/*
 * A new block whose name no local copy holds (core/fs/flush.c, through
 * objstore_put_vetted()): 0 if no row names the object, or the bucket's
 * copy of it holds @len bytes equal to @buf's (a dedup hit, compared);
 * 1 if it may hold other bytes: a row not in the bucket, of another size,
 * a copy that differs, or one that cannot be read now (the server fails,
 * the key is not there); the block then goes under the next variant
 * name, which is never wrong, at worst a second copy. Or a negative
 * errno of the metadata. No lock held.
 */
int remote_vet(struct remote *r, const char *name, const void *buf, size_t len);

/*
 * Upload a consistent snapshot of the metadata, once every object it
 * names is in the bucket (waiting at most @timeout seconds, 0: an hour),
 * as PREFIX/meta/snap-SEQ-TIME.db (its key in @key, of @len bytes); then
 * delete all but the newest snapshot_keep. 0, -ETIMEDOUT, -ESTALE (an
 * object it names went before its upload: the snapshot is dropped), or
 * the error of the copy or the upload.
 */
int remote_snapshot(struct remote *r, double timeout, char *key, size_t len);

/*
 * GC of the bucket: list every object key (all pages; a listing that
 * fails collects nothing) and mark the keys that no row, queued upload
 * or queued deletion names (core/meta/meta_remote.c); a key marked longer
 * than @grace seconds is queued for deletion, which comes after the
 * deletion delay counted from its mark, by the storage loop and the
 * verdict of core/objects/reap.c. A key named again loses its mark. @dry_run
 * changes nothing. 0 or -errno.
 */
struct gc_remote {
	uint64_t listed;       /* object keys in the bucket */
	uint64_t unreferenced; /* of those, named by nothing */
	uint64_t queued;       /* of those, queued for deletion now */
	bool failed;	       /* the listing failed: nothing decided */
};
int remote_gc(struct remote *r, int64_t grace, bool dry_run,
	      struct gc_remote *out);

/*
 * verify remote: fetch the objects the bucket has by their rows (@percent
 * of them, chosen by name as verify does, 100 for all) and rehash them.
 * Counts in *@v (missing: a key the bucket lacks; corrupt: other bytes).
 * 0, or the error that stopped it (the server unreachable: -EAGAIN).
 */
struct gc_verify;
int remote_verify(struct remote *r, double percent, struct gc_verify *v);

/*
 * rekey PATH: key file PATH opens the store from now on, its old one no
 * more (a store bound with a key, envelope 2 or 3, a record of 2 made
 * 3: core/remote/remote_rekey.c). 0 (*@out says the ids; unchanged: PATH
 * holds the key in force already, whose id may change from envelope 2's
 * to 3's), or -errno with the reason in @out->err.
 */
struct remote_rekey {
	char old_id[17], new_id[17];
	bool unchanged;	    /* the key in force already */
	bool marker_behind; /* done; the bucket's marker written at the next
			       mount (said in err) */
	char err[320];
};
int remote_rekey(struct remote *r, const char *path, struct remote_rekey *out);
/* Tests only: kill the daemon after step @step (1 to 3) of a rekey. */
void remote_rekey_crash_at(unsigned step);
/* Tests only: the answer to the commit of step @step (1 or 3) of the next
 * rekey is lost (it commits, and its caller is told EIO). */
void remote_rekey_lose_at(unsigned step);

/* tallyfs --restore: a new store from the bucket alone. */
struct remote_restore_opts {
	const struct s3_cfg *cfg; /* the bucket (borrowed) */
	const char *store;	  /* to create: absent, or an empty directory */
	const char *snapshot;	  /* its name (snap-...), or NULL: newest */
	bool incomplete_ok;	  /* restore with objects missing */
	bool keyed;		  /* key_file given */
	struct seal_key key;
};
struct remote_restore_report {
	char snapshot[1024]; /* the key restored */
	uint64_t objects, missing, bucket_keys, inodes, bytes;
	uint64_t kept; /* keys the snapshot does not name, kept */
	double seconds;
};
/*
 * Make store @o->store from the bucket: the snapshot's metadata, every
 * object in the bucket and none local, after checking that the bucket
 * holds every object it names (@say gets one line per missing object and
 * per error). -EEXIST (a store or files there), -ENOENT (no such
 * snapshot, none at all, or objects missing), -EUCLEAN (no store in the
 * bucket, or a snapshot of another store), -EACCES, -EAGAIN (the
 * server), or a local error. A store directory it created is removed on
 * failure.
 */
int remote_restore(const struct remote_restore_opts *o,
		   struct remote_restore_report *rep,
		   void (*say)(void *ctx, const char *line), void *ctx);

/* A read used object @name (for the eviction order). True when the
 * object was fetched by read-ahead and this is its first read since:
 * the reader goes on sequentially, read further ahead. */
bool remote_touch(struct remote *r, const char *name);

/* Fetch object @name (its reference says in @shard) in the background
 * if the bucket has it and it is not local: read-ahead. At most
 * REMOTE_AHEAD_QUEUE wait; more are dropped. */
#define REMOTE_AHEAD_THREADS 8 /* fetches of read-ahead at once */
#define REMOTE_AHEAD_QUEUE 64
void remote_prefetch(struct remote *r, uint32_t shard, const char *name,
		     uint64_t size);

struct remote_stats {
	const struct s3_cfg *cfg; /* endpoint, bucket, prefix */
	uint64_t queued, in_flight, uploaded, failed, retries;
	uint64_t bytes_uploaded, durable_remote_seq, delete_queued, deleted;
	uint64_t fetched, bytes_fetched, evicted, cache_bytes, cache_size;
	uint64_t snapshots;
	uint64_t read_ahead; /* fetches made by read-ahead (of fetched) */
	uint64_t compared;   /* new blocks compared with the bucket's copy */
	/* the envelope: bodies sealed, encrypted (key_id), zstd level; the
	 * objects uploaded by this mount, before and after it */
	bool sealed, encrypted;
	int compress;
	char key_id[17];
	uint64_t bytes_logical, bytes_stored;
	bool reachable;
	char last_error[256];
	char last_snapshot[256];
};
void remote_stats(struct remote *r, struct remote_stats *out);

#endif
