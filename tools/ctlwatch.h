/* SPDX-License-Identifier: MIT */
/*
 * ctlwatch: the progress of a long tallyctl command (gc, verify, drain,
 * branch, sweep, rebalance, shard drain) on stderr, read from the job it
 * runs in the mount while tallyctl waits on its write to .tally/ctl.
 */
#ifndef TALLY_TOOLS_CTLWATCH_H
#define TALLY_TOOLS_CTLWATCH_H

#include <stdbool.h>

/* Seconds a command runs before its progress shows (--progress-delay). */
#define CTLWATCH_DELAY 0.5

struct inv;
struct ctlwatch;

/*
 * Start watching the job of the command of @inv (borrowed until
 * ctlwatch_stop()), about to be sent, if it is a long one and progress is
 * wanted. Returns the running watch, or NULL when there is none (not a
 * long command, --no-progress, or no memory or thread for it).
 */
struct ctlwatch *ctlwatch_start(struct inv *inv);

/*
 * The command returned (@ok: successfully): stop the thread of @w and, if
 * anything may have been shown (the delay has passed), print the final
 * line, at 100% when the command succeeded; @w is freed. NULL is a no-op.
 */
void ctlwatch_stop(struct ctlwatch *w, bool ok);

#endif
