/* SPDX-License-Identifier: MIT */
/*
 * What a verify pass found, over the local store (core/jobs/gc.c,
 * gc_verify()) or the bucket (core/remote/remote_fetch.c,
 * remote_verify()), and which objects its sample holds.
 */
#ifndef TALLY_VERIFY_H
#define TALLY_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

struct gc_verify {
	uint64_t objects; /* rows considered */
	uint64_t checked, ok, corrupt, missing, bytes;
	uint64_t remote_only; /* evicted: only the bucket has them */
	char bad[10][48];     /* the first corrupt or missing names */
	unsigned nbad;
	double duration_ms;
};

/* Whether object @name is in the sample of @percent percent (chosen by
 * name: the same objects every time; verify and verify remote). */
bool gc_verify_picks(const char *name, double percent);
/* Note @name among the first bad objects of @v. */
void gc_verify_bad(struct gc_verify *v, const char *name);

#endif
