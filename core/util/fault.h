/* SPDX-License-Identifier: MIT */
/*
 * Fault injection, for tests: a crash at a chosen point. Each module
 * keeps which of its points is armed (set before any thread starts, from
 * TALLYFS_FAULT: fs/main.c) and calls fault_kill_at() at each point.
 */
#ifndef TALLY_FAULT_H
#define TALLY_FAULT_H

/* When @armed is @point: "fault injection: killed " and @fmt logged, then
 * the process killed with SIGKILL (a crash, or a power loss with the
 * daemon). Otherwise nothing. */
void fault_kill_at(long armed, long point, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
