/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the control-command parser (core/jobs/ctl.c): any
 * input is either a well-formed command or -EINVAL, never a crash, a hang
 * or an out-of-bounds access (built with AddressSanitizer).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/jobs/ctl.h"
#include "core/util/hash.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ctl_cmd cmd;
	char name[OBJNAME_MAX + 8];
	unsigned i;
	int rc = ctl_parse((const char *)data, size, &cmd);

	if (rc != 0 && rc != -EINVAL)
		abort();
	if (rc == 0) {
		if (cmd.nargs > CTL_MAX_ARGS)
			abort();
		for (i = 0; i < cmd.nargs; i++)
			if (!cmd.args[i] || !cmd.args[i][0] ||
			    strlen(cmd.args[i]) > CTL_LINE_MAX)
				abort();
	}
	/* object names too: what explain and the store listing accept */
	if (size < sizeof(name)) {
		memcpy(name, data, size);
		name[size] = '\0';
		(void)hash_name_valid(name);
	}
	return 0;
}
