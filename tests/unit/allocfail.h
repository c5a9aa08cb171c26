/* SPDX-License-Identifier: MIT */
/*
 * Allocation fault injection, for one test build of core/ only (forced in
 * with -include): malloc, calloc, realloc and strdup go through counters
 * that make the Nth call fail (tests/unit/allocfail.c).
 */
#ifndef TALLY_ALLOCFAIL_H
#define TALLY_ALLOCFAIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *af_malloc(size_t n);
void *af_calloc(size_t n, size_t size);
void *af_realloc(void *p, size_t n);
char *af_strdup(const char *s);

#undef strdup
#define malloc(n) af_malloc(n)
#define calloc(n, size) af_calloc(n, size)
#define realloc(p, n) af_realloc(p, n)
#define strdup(s) af_strdup(s)

#endif
