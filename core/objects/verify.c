/* SPDX-License-Identifier: MIT */
/* The sample and the record of a verify pass (core/objects/verify.h). */
#include "core/objects/verify.h"

#include <stdio.h>
#include <stdlib.h>

bool gc_verify_picks(const char *name, double percent)
{
	/* a sample by name: the same objects every time for one percentage */
	unsigned long pick =
		strtoul((char[9]){ name[0], name[1], name[2], name[3], name[4],
				   name[5], name[6], name[7], 0 },
			NULL, 16) %
		10000;

	return (double)pick < percent * 100;
}

void gc_verify_bad(struct gc_verify *v, const char *name)
{
	if (v->nbad < sizeof(v->bad) / sizeof(v->bad[0]))
		snprintf(v->bad[v->nbad++], sizeof(v->bad[0]), "%s", name);
}
