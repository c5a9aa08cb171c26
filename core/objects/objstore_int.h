/* SPDX-License-Identifier: MIT */
/*
 * The object store's private state, shared by core/objects/objstore.c (objects:
 * writes, reads, dedup, doomed files) and core/objects/objshard.c (the shards:
 * attach, markers, reachability, how objects are synced, placement).
 */
#ifndef TALLY_OBJSTORE_INT_H
#define TALLY_OBJSTORE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/objects/objstore.h"

#define SHARD_MARKER "tallyfs-shard"
#define DOOM_BUCKETS 4096
#define FANOUT OBJSTORE_FANOUT
#define OS_ZPOOL 8 /* zstd contexts kept, of each kind, and buffers */
#define OS_ENV_KEPT (4u << 20) /* the largest envelope buffer kept */

struct shard {
	char *root;		  /* absolute; set once by attach, then fixed */
	_Atomic bool attached;	  /* release: root is set */
	_Atomic bool reachable;	  /* last check or I/O said so */
	_Atomic bool draining;	  /* no new objects */
	_Atomic uint64_t bytes;	  /* object bytes (placement estimate) */
	_Atomic uint64_t avail;	  /* free bytes of its filesystem, cached */
	_Atomic int64_t avail_at; /* when avail was read (monotonic s) */
	_Atomic uint64_t dev;	  /* st_dev of the root, as last checked */
	_Atomic bool per_file;	  /* objects synced one by one, no syncfs */
};

/* A syncfs(2) of one shard's file system, shared by the callers that
 * wait meanwhile (objstore_shard_syncfs(), core/objects/objsync.c). */
struct sync_gate {
	pthread_mutex_t lock;
	pthread_cond_t ended; /* a sync ended */
	uint64_t started;     /* the last one begun (1, 2, ...) */
	uint64_t done;	      /* the last one ended */
	uint64_t err_gen;     /* the last one that failed, */
	int err;	      /* with this error */
	unsigned waiting;     /* callers waiting for a sync to end */
	bool running;
};

struct objstore {
	struct shard sh[OBJSTORE_MAX_SHARDS];
	struct sync_gate sync[OBJSTORE_MAX_SHARDS];
	_Atomic unsigned nshards; /* highest attached id + 1 */
	/* a shared store's cache: shards 1.. are legs of shard 0 (see
	 * DESIGN NOTES of core/objects/objstore.c, Spans) */
	_Atomic bool span;
	uint64_t store_id;	  /* what shard markers must name */
	_Atomic int sync_mode;	  /* OBJSTORE_SYNC_* */
	_Atomic uint64_t corrupt; /* corrupt files met by byte compares */
	_Atomic unsigned long tmpseq;
	_Atomic unsigned batches; /* batches with objects staged, not finished */
	_Atomic unsigned fault_in[OBJSTORE_NOPS]; /* countdown; 0 = off */
	_Atomic int fault_err[OBJSTORE_NOPS];
	/* doomed files (see DESIGN NOTES), hashed by name */
	pthread_mutex_t doom_lock;
	pthread_cond_t doom_done; /* an unlink of a doomed file ended */
	_Atomic size_t ndoomed;
	struct doomed *doomed[DOOM_BUCKETS];
	/* the bytes of the object files on disk (objstore_count_dir()):
	 * until a fan-out directory is counted, its places, replaces and
	 * unlinks hold its lock, which its count holds too */
	pthread_mutex_t count_lock[FANOUT];
	_Atomic bool counted[FANOUT];
	_Atomic int64_t local_bytes;
	_Atomic unsigned ncounted;
	void (*stat_hook)(void *arg); /* tests: objstore_set_stat_hook() */
	void *stat_hook_arg;
	void (*count_hook)(void *arg, unsigned dir); /* tests */
	void *count_hook_arg;
	int (*sync_hook)(void *arg, unsigned shard); /* tests */
	void *sync_hook_arg;
	void (*unlink_hook)(void *arg); /* tests */
	void *unlink_hook_arg;
	/* compress_local: every object file an envelope
	 * (core/objects/objstore_codec.c); set before any object is read */
	_Atomic bool encoded;
	_Atomic int level;     /* zstd level of new files; 0: raw segments */
	pthread_mutex_t zlock; /* the contexts kept for reuse: */
	void *zc[OS_ZPOOL];
	void *zd[OS_ZPOOL];
	struct {
		void *p;
		size_t cap;
	} eb[OS_ZPOOL]; /* envelope buffers (os_encode()) */
	unsigned nzc, nzd, neb;
};

struct doomed {
	struct doomed *next;
	unsigned shard;
	bool unlinking; /* the unlink has begun: a check waits */
	char name[OBJNAME_MAX];
};

/* core/objects/objsync.c: the sync gates made and freed with the store;
 * make durable a directory of @shard ("" for its root): fsync(2) it, or
 * with @whole_fs syncfs(2) the filesystem it is on. */
void os_sync_init(struct objstore *os);
void os_sync_free(struct objstore *os);
int os_sync_dir(struct objstore *os, unsigned shard, const char *rel,
		bool whole_fs);

/* The root of attached shard @shard, or NULL. */
const char *objstore_root_of(struct objstore *os, unsigned shard);
/* Whether physical shard @id (a leg of a span too) is attached and was
 * reachable when last checked. */
bool objstore_phys_reachable(struct objstore *os, unsigned id);
/* Free bytes of physical shard @id's filesystem, read again at most once a
 * second (or now, with @fresh). */
uint64_t objstore_avail_of(struct objstore *os, unsigned id, bool fresh);
/* Check physical shard @id (a leg of a span too): 0, or why not. */
int objstore_phys_check(struct objstore *os, unsigned id);
/* "ROOT/@rest" into @buf (PATH_MAX bytes); -ENODEV for an unknown shard. */
int objstore_shard_path(struct objstore *os, unsigned shard, const char *rest,
			char *buf);
/* Remove the temp files left in @dir (a shard's tmp/). */
int objstore_clean_tmp(const char *dir);
/* The shard a new object of @len bytes goes to (placement policy):
 * 0 or -ENOSPC. */
int objstore_place_shard(struct objstore *os, size_t len, unsigned *out);

/* Shared by objstore.c and objstore_read.c: the fan-out directory of
 * @name (0 to 255); the path of object @name in physical shard @shard
 * into @buf (PATH_MAX bytes); the physical shard (a leg of a span) that
 * holds, or with @create receives, @name of shard @shard; and the check
 * of @name in @shard that takes it off the doomed list (a file checked
 * is no longer to be unlinked, or it is gone). */
int os_fanout(const char *name);
int os_obj_path(struct objstore *os, unsigned shard, const char *name,
		char *buf);
unsigned os_leg_of(struct objstore *os, unsigned shard, const char *name,
		   bool create, size_t len);
void os_doom_cancel(struct objstore *os, unsigned shard, const char *name);

/* core/objects/objstore_codec.c: the envelopes of compress_local. Its
 * contexts made and freed with the store; the envelope of @len bytes
 * of @buf into *@out (malloc'ed, *@outlen bytes); a read of envelope
 * @fd (objstore_read()'s answers: bytes, fewer at the end or at a
 * damaged segment); all of it checked (objstore_load()'s answers but
 * the hash); its plain size as far as it is whole. */
void os_codec_init(struct objstore *os);
void os_codec_free(struct objstore *os);
int os_encode(struct objstore *os, const void *buf, size_t len, void **out,
	      size_t *outlen, size_t *cap);
/* Give back os_encode()'s buffer (of @cap bytes). */
void os_env_put(struct objstore *os, void *env, size_t cap);
ssize_t os_codec_pread(struct objstore *os, int fd, void *buf, size_t len,
		       off_t off);
int os_codec_load(struct objstore *os, int fd, void **out, size_t *len);
/* The byte compare of a put (compare_object()) against envelope @fd: 0
 * equal, 1 different (a damaged envelope too), or -errno; *@size: its
 * plain bytes. */
int os_codec_compare(struct objstore *os, int fd, const void *buf, size_t len,
		     off_t *size);
int os_codec_size(int fd, off_t *size);

#endif
