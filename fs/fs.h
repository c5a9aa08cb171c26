/* SPDX-License-Identifier: MIT */
/*
 * The FUSE front end: state shared by fs/main.c and fs/ops.c.
 */
#ifndef TALLY_FS_H
#define TALLY_FS_H

#include <fuse_lowlevel.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct tally;
struct metrics;

struct fs {
	struct tally *t;
	struct metrics *metrics; /* tally_metrics(t) */
	struct fuse_session *se; /* for the watch's notifications */
	double entry_timeout;
	double attr_timeout;
	const char *mountpoint;
	unsigned long long wb_max; /* the kernel's dirty pages of the mount */
	/* the kernel's writeback cache: written pages stay in the kernel
	 * until it writes them back (close, fsync, sync, its timer, or a
	 * push: tally_set_push) */
	atomic_bool writeback;
	bool threads;	   /* the multi-threaded loop (not -s) */
	bool splice;	   /* read replies spliced from object files */
	size_t splice_min; /* smaller reads are copied */
	size_t pipe_size;  /* of a pipe that holds the largest reply */
	/* tests (TALLYFS_FAULT=splice:N:ERR): the Nth splice fails */
	unsigned splice_fail_at;
	atomic_uint splices;
};

extern const struct fuse_lowlevel_ops fs_ops;

/* fs_ops with every request timed (fs/optime.c): the table the session
 * runs. */
void fs_ops_timed(struct fuse_lowlevel_ops *ops);
/* The errno of the reply the current request got (0: success), set by
 * fs/ops.c's replies for fs/optime.c: a request is answered on the
 * thread that runs its callback. */
extern _Thread_local int fs_reply_errno;

/*
 * Drop inode @ino's pages and attributes from the kernel's caches (@arg:
 * the struct fs). The kernel writes its dirty pages back first (it
 * launders each) and the call returns once they were served by the
 * loop's other threads: the hook of the watch (other nodes' changes) and
 * of the push (tally_set_push).
 */
void fs_inval_inode(void *arg, uint64_t ino);

#endif
