/* SPDX-License-Identifier: MIT */
/*
 * The counters behind tests/unit/allocfail.h: af_arm(N) makes the Nth
 * allocation from now on fail once (NULL, errno ENOMEM); af_arm(0)
 * disarms (and keeps what af_fired() says: whether it did).
 */
#include "tests/unit/allocfail_ctl.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static _Atomic long countdown;
static _Atomic bool fired;

void af_arm(long nth)
{
	if (nth > 0)
		atomic_store(&fired, false);
	atomic_store(&countdown, nth);
}

bool af_fired(void)
{
	return atomic_load(&fired);
}

/* Whether this allocation is the one to fail. */
static bool fail_now(void)
{
	long n = atomic_load(&countdown);

	while (n > 0) {
		if (atomic_compare_exchange_weak(&countdown, &n, n - 1)) {
			if (n == 1) {
				atomic_store(&fired, true);
				errno = ENOMEM;
				return true;
			}
			return false;
		}
	}
	return false;
}

void *af_malloc(size_t n)
{
	return fail_now() ? NULL : malloc(n);
}

void *af_calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : calloc(n, size);
}

void *af_realloc(void *p, size_t n)
{
	return fail_now() ? NULL : realloc(p, n);
}

char *af_strdup(const char *s)
{
	return fail_now() ? NULL : strdup(s);
}
