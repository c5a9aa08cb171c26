/* SPDX-License-Identifier: MIT */
/*
 * The single logging sink: level filter, then stderr or syslog.
 */
#include "core/util/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

static _Atomic int log_level = LOG_INFO;
static _Atomic bool log_syslog;

void log_set_level(int level)
{
	atomic_store(&log_level, level);
}

void log_to_syslog(const char *ident)
{
	openlog(ident, LOG_PID, LOG_DAEMON);
	atomic_store(&log_syslog, true);
}

void log_msg(int level, const char *fmt, ...)
{
	static const char *const names[] = {
		"emerg",   "alert",  "crit", "error",
		"warning", "notice", "info", "debug",
	};
	va_list ap;

	if (level > atomic_load(&log_level))
		return;
	va_start(ap, fmt);
	if (atomic_load(&log_syslog)) {
		vsyslog(level, fmt, ap);
	} else {
		char line[1024];

		vsnprintf(line, sizeof(line), fmt, ap);
		fprintf(stderr, "tallyfs: %s: %s\n", names[level & 7], line);
	}
	va_end(ap);
}
