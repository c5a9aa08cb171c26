/* SPDX-License-Identifier: MIT */
/*
 * What the control commands (ctl.c) and the status document
 * (ctl_status.c) share.
 */
#ifndef TALLY_CTL_INT_H
#define TALLY_CTL_INT_H

#include "core/jobs/shard.h"

/* *out: a malloc'ed formatted string (NULL and -ENOMEM on failure). */
int ctl_aprintf(char **out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Append formatted text to *acc (malloc'ed; NULL counts as empty). */
int ctl_append(char **acc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A shard's state as the status and `shard list` name it: "active",
 * "draining" or "unreachable". */
const char *ctl_shard_state(const struct shard_info *s);

#endif
