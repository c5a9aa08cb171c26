/* SPDX-License-Identifier: MIT */
/*
 * What the control commands (ctl.c), the status document (ctl_status.c)
 * and the metrics document (ctl_metrics.c) share.
 */
#ifndef TALLY_CTL_INT_H
#define TALLY_CTL_INT_H

#include <stddef.h>

#include "core/meta/meta.h"
#include "core/jobs/shard.h"

struct tally;
struct tally_stats;

/* *out: a malloc'ed formatted string (NULL and -ENOMEM on failure). */
int ctl_aprintf(char **out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Append formatted text to *acc (malloc'ed; NULL counts as empty). */
int ctl_append(char **acc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Milliseconds since @t0 (CLOCK_MONOTONIC). */
struct timespec;
double ctl_ms_since(const struct timespec *t0);
/* snapshot, snapshots, rmsnapshot (ctl_version.c): the command's report
 * in *@report. */
struct ctl_cmd;
int ctl_version(struct tally *t, const struct ctl_cmd *cmd, char **report);
/* A shard's state as the status and `shard list` name it: "active",
 * "draining" or "unreachable". */
const char *ctl_shard_state(const struct shard_info *s);

/* The figures both documents show, from one source each (ctl_status.c):
 * the newest @max GC events of the store, newest first (the status's
 * last_gc and gc_log); */
int ctl_gc_log(struct tally *t, struct meta_gc_event *v, size_t max, size_t *n);
/* each live session to @fn, under the metadata lock (@fn does no I/O;
 * its non-zero return stops the walk and is returned); */
int ctl_sessions(struct tally *t,
		 int (*fn)(void *ctx, const struct meta_session *e), void *ctx);
/* bytes referenced / bytes stored (1 for an empty store). */
double ctl_dedup_ratio(const struct tally_stats *st);

#endif
