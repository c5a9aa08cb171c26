/* SPDX-License-Identifier: MIT */
/* Control of the allocation faults of tests/unit/allocfail.h. */
#ifndef TALLY_ALLOCFAIL_CTL_H
#define TALLY_ALLOCFAIL_CTL_H

#include <stdbool.h>
#include <stddef.h>

/* The Nth allocation from now on fails once; 0 disarms (af_fired()
 * still says whether it failed). */
void af_arm(long nth);
/* Whether the armed allocation failed. */
bool af_fired(void);

void *af_malloc(size_t n);
void *af_calloc(size_t n, size_t size);
void *af_realloc(void *p, size_t n);
char *af_strdup(const char *s);

#endif
