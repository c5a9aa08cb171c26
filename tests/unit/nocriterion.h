/* SPDX-License-Identifier: MIT */
/*
 * The few Criterion macros a test uses, for a build without Criterion:
 * Criterion cannot start under ThreadSanitizer (its inheritable arena
 * collides with TSan's memory layout, Snaipe/Criterion#274), so the
 * stress test is also built as a plain program (-DTALLY_NO_CRITERION)
 * that tools/test.sh runs under TSan. A failed assertion prints the
 * expression and aborts; messages are dropped.
 */
#ifndef TALLY_TEST_NOCRITERION_H
#define TALLY_TEST_NOCRITERION_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void nc_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	abort();
}

#define cr_assert(cond, ...)                                \
	do {                                                \
		if (!(cond))                                \
			nc_fail(__FILE__, __LINE__, #cond); \
	} while (0)
#define cr_assert_not(cond, ...) cr_assert(!(cond))
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b))
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b))
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b))
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b))
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL)

/* TestSuite() declares nothing; Test(s, n) defines s_n(), which the
 * program's main() calls between the suite's init and fini. */
#define TestSuite(...) extern int nc_no_suite
#define Test(suite, name, ...) static void suite##_##name(void)

#endif
