/* SPDX-License-Identifier: MIT */
/*
 * The storage loop's state, shared by the files of the remote tier and
 * by them alone: remote.c (the loop thread, its connections, the
 * bucket's marker, the interface), remote_up.c (workers, uploads and
 * their recording, the low-water mark, ships from a flush's buffer),
 * remote_del.c (deletions in the bucket, bucket GC), remote_cache.c
 * (eviction), remote_snap.c (metadata snapshots, listings) and
 * remote_fetch.c (fetches, read-ahead, verify remote). The DESIGN NOTES
 * of core/remote/remote.c hold for all of them.
 */
#ifndef TALLY_REMOTE_LOOP_H
#define TALLY_REMOTE_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/remote/remote.h"
#include "core/s3/bucket.h"

#define LRU_SLOTS (1u << 16)
#define CONNS_MAX 16
#define DELETE_BATCH 64
#define EVICT_SAMPLE 1024
#define COUNT_SLICE 0.2 /* s of a loop round spent counting the cache */
/* s a made deletion of a key is remembered (a shared store): a flush that
 * shipped the object before it does not record it in the bucket */
#define GONE_KEEP 86400
#define UPLOAD_HIST 64	  /* samples of done_seq, for upload_delay */
#define RESERVED_SLOTS 64 /* generations reserved by ships, by name */
#define CHECK_TIMEOUT 5L  /* s a request of a bucket check may last */

enum job_kind {
	JOB_UP,
	JOB_DEL
};

struct job {
	enum job_kind kind;
	char name[OBJKEY_MAX]; /* an upload: the object; a deletion: the key */
	int64_t gen;	       /* an upload: the generation of its key */
	uint32_t shard;
	uint64_t size;
	uint64_t stored; /* an upload: the bytes put (its envelope's) */
	int64_t seq;
	int rc;
	bool server;  /* the failure came from the server, not the copy */
	bool evicted; /* an upload: found in the bucket, no local copy */
	char err[256];
	struct job *next;
};

/* An upload that failed: when it may go again. */
struct backoff {
	char name[OBJKEY_MAX];
	unsigned attempts;
	double not_before; /* monotonic seconds */
};

/* A fetch in progress: readers of the same object wait for it. */
struct fetch {
	char name[OBJNAME_MAX];
	bool done;
	int rc;
	unsigned waiters;
	struct fetch *next;
};

struct remote {
	struct tally *t;
	struct s3_cfg cfg;
	unsigned max_jobs;
	uint64_t cache_size;
	int64_t delete_delay;
	double drain_timeout, retry_max;
	uint64_t store_id;
	char *ancestors; /* remote_conf 'ancestors' (a restored store), or NULL */
	double started;
	/* the envelope of the store's bodies (remote_conf 'seal', which the
	 * marker repeats): set at mount, read-only after */
	bool sealed;
	struct seal seal;
	/* remote_conf 'seal', "" if not sealed; a rekey changes it (under
	 * lock, and rekey_lock, which one rekey at a time holds) */
	char seal_text[SEAL_TEXT_MAX];
	/* the key file this mount was given, kept while the record is of
	 * envelope 2 (zeroed otherwise): a rekey, which makes it envelope
	 * 3, wraps the keys for it again (under rekey_lock) */
	struct seal_key file;
	pthread_mutex_t rekey_lock;
	/* the marker's rings lag the record (under lock): the loop writes
	 * them every 2 s (next_rings, the loop's) until it succeeds */
	bool rings_behind;
	double next_rings;

	pthread_mutex_t lock;
	pthread_cond_t work;	 /* protected by lock: ready jobs, or stop */
	pthread_cond_t report;	 /* a job finished, a kick, or stop */
	pthread_cond_t done;	 /* durable_remote_seq advanced, or stop */
	pthread_cond_t fetched;	 /* a fetch ended */
	struct job *ready;	 /* protected by lock: to run, FIFO */
	struct job *finished;	 /* protected by lock: to record */
	struct job **running;	 /* protected by lock: max_jobs slots */
	struct backoff *backoff; /* protected by lock */
	size_t nbackoff, backcap;
	struct fetch *fetching;	     /* protected by lock */
	struct s3 *conns[CONNS_MAX]; /* protected by lock: idle, for fetches */
	unsigned nconns;
	bool kicked, stop_workers, stop_loop; /* protected by lock */
	unsigned hurry;		 /* protected by lock: waiters for uploads, who
			   bypass upload_delay */
	double pause_until;	 /* protected by lock: the server failed: no job
			       before then (backoff over all jobs) */
	unsigned pause_attempts; /* protected by lock */
	double upload_delay;
	struct {
		double at;
		uint64_t seq;
	} hist[UPLOAD_HIST]; /* loop thread only: done_seq over time */
	unsigned nhist;
	bool verified, marker_known;	/* loop thread only */
	bool fenced;			/* protected by lock: the marker names
					   another store (a restore took the
					   bucket over) */
	double next_marker;		/* loop thread only */
	uint64_t durable;		/* protected by lock */
	struct remote_stats st;		/* protected by lock */
	double next_delete, next_evict; /* loop thread only */
	double next_stale;		/* loop thread only: claims of nodes
					   gone, taken over */
	/* evict_lock: one eviction at a time (the loop's, to cache_size;
	 * a fetch's, to make room on a full disk: rl_make_room()) */
	pthread_mutex_t evict_lock;
	int64_t evict_cursor; /* under evict_lock */
	unsigned evict_dir;   /* under evict_lock: shared store */
	unsigned count_dir;   /* loop thread only: shared store */

	_Atomic uint64_t lru_key[LRU_SLOTS];  /* remote_touch(): racy, an */
	_Atomic uint32_t lru_tick[LRU_SLOTS]; /* 1/100 s: approximate order */
	_Atomic uint8_t lru_ahead[LRU_SLOTS]; /* fetched by read-ahead */

	/* read-ahead: a bounded queue and its threads (protected by lock) */
	pthread_cond_t ahead_work;
	struct job *ahead;
	unsigned nahead;
	pthread_t ahead_threads[REMOTE_AHEAD_THREADS];
	unsigned nahead_threads;

	/* metadata snapshots (snap_lock: one at a time; the others are
	 * protected by lock) */
	pthread_mutex_t snap_lock;
	pthread_cond_t snap_wake; /* with lock: stop */
	double snapshot_interval;
	unsigned snapshot_keep;
	uint64_t snap_seq;    /* protected by snap_lock: done_seq of the last */
	uint64_t snap_base;   /* added to done_seq in snapshot names: a restored
			       store's sort after those it came from */
	int64_t snap_changes; /* protected by snap_lock: meta_change_count()
				 after the last one's copy */
	bool snap_thread_on;
	pthread_t snap_thread;

	/* the generation a ship reserved for a name with no row (protected
	 * by lock): a ship of the same content again (the flush failed and
	 * goes again) reuses it, so a PUT that reached the server after its
	 * request failed leaves no key of another generation behind */
	struct {
		char name[OBJNAME_MAX];
		int64_t gen;
	} reserved[RESERVED_SLOTS];
	unsigned reserved_next;

	pthread_t loop;
	pthread_t *workers;
	unsigned nworkers;
};

static inline double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void deadline_ts(double secs, struct timespec *ts)
{
	double whole;

	clock_gettime(CLOCK_REALTIME, ts);
	secs += (double)ts->tv_nsec / 1e9;
	whole = (double)(int64_t)secs;
	ts->tv_sec += (time_t)whole;
	ts->tv_nsec = (long)((secs - whole) * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* A buffer of fixed size that rl_mem_sink() fills (remote.c). */
struct membuf {
	char *buf;
	size_t n, cap;
};

/* An object's remote state, read by rl_state_read() (remote_up.c). */
struct state_ctx {
	const char *name;
	struct meta_remote_state st;
};

/* A list of object names (meta_each_name() callbacks fill it; remote_del.c,
 * rl_names_add()). */
struct names {
	char (*v)[OBJKEY_MAX]; /* object names, or key names */
	size_t n, cap;
};

/* Across the files of the remote tier (each defined in the file named) */
/* remote.c */
struct s3 *rl_conn_get(struct remote *r);
void rl_conn_put(struct remote *r, struct s3 *s);
bool rl_fenced(struct remote *r);
int rl_mem_sink(void *arg, const void *buf, size_t n);
void rl_note_error(struct remote *r, const char *what, const char *err);
int rl_still_owner(struct remote *r);
/* The bucket's marker made to name this store's rings (a rekey's): 0 or
 * -errno (-EUCLEAN: the marker names another store, or is lost). */
int rl_marker_sync(struct remote *r);
/* Whether the marker's rings lag the record (rl_marker_sync() clears it) */
bool rl_rings_behind(struct remote *r);
/* The store's seal record read again (a shared store's may have changed)
 * into r->seal_text and @text (@len bytes): 0 or -errno (@text then the
 * mount's copy). */
int rl_seal_refresh(struct remote *r, char *text, size_t len);
/* remote_rekey.c: at the mount, a rekey cut short ends if the mount was
 * given its new key (r->file): 0 or -errno */
int rl_rekey_finish(struct remote *r);
/* remote_up.c */
double rl_backoff_delay(struct remote *r, unsigned attempts);
struct backoff *rl_backoff_find(struct remote *r, const char *name);
bool rl_busy(struct remote *r, const char *name);
void rl_push_ready(struct remote *r, struct job *j);
void rl_record(struct remote *r, struct job *jobs);
void rl_schedule_uploads(struct remote *r);
int rl_state_read(struct meta *m, void *arg);
void rl_update_low(struct remote *r);
void *rl_worker_main(void *arg);
/* remote_del.c */
int rl_names_add(void *arg, const char *name);
void rl_schedule_deletes(struct remote *r);
void rl_take_stale_claims(struct remote *r);
int rl_unclaim_ready(struct meta *m, void *arg);
/* remote_cache.c */
void rl_evict(struct remote *r);
/* Evict at least @bytes of local copies the bucket holds (a fetch on a
 * full cache disk): 0 when some were, -ENOSPC when none could be. */
int rl_make_room(struct remote *r, uint64_t bytes);
void rl_mark_ahead(struct remote *r, const char *name);
/* remote_snap.c */
void *rl_snap_main(void *arg);
/* remote_fetch.c */
void *rl_ahead_main(void *arg);
void rl_sleep_s(double s);

#endif
