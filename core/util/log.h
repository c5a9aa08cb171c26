/* SPDX-License-Identifier: MIT */
/*
 * Logging for libtally and the tools: one entry point that tests the level
 * before formatting. Messages go to stderr until log_to_syslog() is called
 * (the daemon does so once it has detached from its terminal).
 */
#ifndef TALLY_LOG_H
#define TALLY_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Messages above this syslog level are dropped; LOG_INFO by default. */
void log_set_level(int level);

/* Route further messages to syslog(3) under @ident (borrowed, kept). */
void log_to_syslog(const char *ident);

/* Log one line; no trailing newline needed. */
void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
