/* SPDX-License-Identifier: MIT */
/*
 * The control interface behind /.tally: parsing of command lines written
 * to /.tally/ctl, running them, and the JSON document of /.tally/status.
 *
 * Commands (one line each, words separated by blanks, one optional
 * trailing newline):
 *   drain [TIMEOUT_SECONDS]   commit everything buffered
 *   drain remote [TIMEOUT]    ... and wait until the bucket has every
 *                             committed object (-EOPNOTSUPP without a
 *                             remote tier)
 *   branch SRC DST            copy-on-write clone of namespace SRC as DST
 *   gc [dry-run] [grace=S]    a GC cycle (core/jobs/gc.h)
 *   repair                    rebuild every reference count
 *   pin PATH / unpin PATH     keep the objects of a file or namespace
 *                             (PATH relative to the mount root)
 *   explain PATH|HASH         why the objects of a file, or one object,
 *                             are alive: counts, holders, pins, GC marks
 *   verify [sample=N%]        rehash the objects (or N percent of them)
 *   verify remote [sample=N%] the same with the bucket's copies
 *   du [NAMESPACE]            space per namespace: logical, referenced,
 *                             shared, exclusive, reclaimable bytes
 *   shard add DIR             a new shard (absolute path, empty directory)
 *   shard drain ID            no new objects there, and a rebalance that
 *                             moves everything off it (not the last
 *                             active shard: -EBUSY)
 *   shard activate ID         new objects may go there again
 *   shard list                every shard, its state and usage
 *   rebalance                 move objects until shards are balanced
 *   sweep [batches=N]         repoint references of ghosts (at most N
 *                             batches), purge the ghosts nothing needs
 * Anything else is -EINVAL and changes nothing.
 */
#ifndef TALLY_CTL_H
#define TALLY_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tally;

#define CTL_LINE_MAX 4096
#define CTL_MAX_ARGS 4

enum ctl_verb {
	CTL_DRAIN,
	CTL_BRANCH,
	CTL_GC,
	CTL_REPAIR,
	CTL_PIN,
	CTL_UNPIN,
	CTL_DU,
	CTL_EXPLAIN,
	CTL_VERIFY,
	CTL_SHARD,
	CTL_REBALANCE,
	CTL_SWEEP,
	CTL_REKEY,
	CTL_SNAPSHOT,
	CTL_SNAPSHOTS,
	CTL_RMSNAPSHOT,
	CTL_ROLLBACK,
	CTL_DIFF,
	CTL_AUTOSNAPSHOT,
};

struct ctl_cmd {
	enum ctl_verb verb;
	unsigned nargs;
	char *args[CTL_MAX_ARGS]; /* point into @buf */
	double timeout;		  /* drain: seconds, 0 = none */
	bool remote;		  /* drain remote, verify remote */
	bool dry_run;		  /* gc dry-run */
	bool later;		  /* rollback drop-later */
	int64_t every, keep;	  /* autosnapshot: every=SECONDS (0: off; -1:
			      * show), keep=N */
	int64_t grace;		  /* gc grace=SECONDS, -1 = default */
	double sample;		  /* verify sample=N%: percent, 100 = all */
	uint32_t shard;		  /* shard drain/activate ID */
	long batches;		  /* sweep batches=N, -1 = all */
	char buf[CTL_LINE_MAX + 1];
};

/* Parse @len bytes of @line into @cmd. -EINVAL for anything malformed. */
int ctl_parse(const char *line, size_t len, struct ctl_cmd *cmd);

/*
 * Parse and run one command. *report (malloc'ed, caller frees) receives
 * the report as "key: value" lines: on success, and on a failure that
 * has one to give (its "error:" line says why; drain: what is still
 * uncommitted; shard drain of the last active shard), else NULL. Errors:
 * -EINVAL (malformed), -ENOENT / -EEXIST (namespaces), -EBUSY (shard
 * drain of the last active shard), or what the command failed with.
 */
int ctl_exec(struct tally *t, const char *line, size_t len, char **report);

/* The status document (one JSON object, newline-terminated) in *out. */
int ctl_status_json(struct tally *t, char **out);
/* The metrics document (the Prometheus text format, docs/metrics.md) in
 * *out (malloc'ed, the caller frees). -ENOMEM, or what reading the
 * store's figures failed with. */
int ctl_metrics_text(struct tally *t, char **out);

#endif
