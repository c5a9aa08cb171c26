/* SPDX-License-Identifier: MIT */
/*
 * Fault injection: a crash at a chosen point (core/util/fault.h).
 */
#include "core/util/fault.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/util/log.h"

void fault_kill_at(long armed, long point, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	if (armed != point)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	log_msg(LOG_NOTICE, "fault injection: killed %s", what);
	raise(SIGKILL);
}
