/* SPDX-License-Identifier: MIT */
/*
 * What the s3 test programs share: TAP output (one "ok N - name" per
 * case, the failed expectations as "#" lines before a "not ok"), and the
 * sinks and listing callbacks that collect what core/s3/s3.c hands over.
 * The programs run under a shell script (tests/s3/test_*.sh) that starts
 * the server and relays their output to meson, which reads TAP.
 */
#ifndef TALLY_TEST_S3TEST_H
#define TALLY_TEST_S3TEST_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/s3/s3.h"

static int tap_n, tap_failed;
static bool tap_case_failed;

static inline void tap_fail(const char *file, int line, const char *expr,
			    const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static inline void tap_fail(const char *file, int line, const char *expr,
			    const char *fmt, ...)
{
	va_list ap;

	printf("# %s:%d: expected %s: ", file, line, expr);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	tap_case_failed = true;
}

/* Record a failure and go on. */
#define EXPECT(cond, ...)                                                 \
	do {                                                              \
		if (!(cond))                                              \
			tap_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
	} while (0)

/* Record a failure and end the case. */
#define REQUIRE(cond, ...)                                                \
	do {                                                              \
		if (!(cond)) {                                            \
			tap_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
			return;                                           \
		}                                                         \
	} while (0)

/* An errno value as its name, for messages. */
static inline const char *errname(int rc)
{
	switch (rc) {
	case 0:
		return "0";
	case -ENOENT:
		return "-ENOENT";
	case -EACCES:
		return "-EACCES";
	case -EAGAIN:
		return "-EAGAIN";
	case -ENOSPC:
		return "-ENOSPC";
	case -EIO:
		return "-EIO";
	case -ERANGE:
		return "-ERANGE";
	case -EINVAL:
		return "-EINVAL";
	case -ENOKEY:
		return "-ENOKEY";
	case -ENOMEM:
		return "-ENOMEM";
	case -EFBIG:
		return "-EFBIG";
	default:
		return "another errno";
	}
}

static inline void tap_case(const char *name, void (*fn)(void))
{
	tap_case_failed = false;
	fn();
	tap_n++;
	if (tap_case_failed)
		tap_failed++;
	printf("%sok %d - %s\n", tap_case_failed ? "not " : "", tap_n, name);
	fflush(stdout);
}

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	fflush(stdout);
	return tap_failed ? 1 : 0;
}

/* A growable buffer that s3_get() fills. */
struct membuf {
	unsigned char *p;
	size_t len, cap;
	size_t calls;
};

static inline int membuf_sink(void *arg, const void *buf, size_t n)
{
	struct membuf *m = arg;

	if (m->len + n > m->cap) {
		size_t ncap = (m->len + n) * 2;
		unsigned char *np = realloc(m->p, ncap);

		if (!np)
			return -ENOMEM;
		m->p = np;
		m->cap = ncap;
	}
	memcpy(m->p + m->len, buf, n);
	m->len += n;
	m->calls++;
	return 0;
}

static inline void membuf_release(struct membuf *m)
{
	free(m->p);
	memset(m, 0, sizeof(*m));
}

/* The keys and sizes s3_list() reports, in order. */
struct keylist {
	char **keys;
	uint64_t *sizes;
	size_t n, cap;
};

static inline int keylist_add(void *arg, const char *key, uint64_t size)
{
	struct keylist *l = arg;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		char **nk = realloc(l->keys, ncap * sizeof(*nk));
		uint64_t *ns;

		if (!nk)
			return -ENOMEM;
		l->keys = nk;
		ns = realloc(l->sizes, ncap * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		l->sizes = ns;
		l->cap = ncap;
	}
	l->keys[l->n] = strdup(key);
	if (!l->keys[l->n])
		return -ENOMEM;
	l->sizes[l->n++] = size;
	return 0;
}

static inline void keylist_release(struct keylist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->keys[i]);
	free(l->keys);
	free(l->sizes);
	memset(l, 0, sizeof(*l));
}

/* The whole of environment variable @name, or exit(2). */
static inline const char *need_env(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v) {
		fprintf(stderr, "%s is not set\n", name);
		exit(2);
	}
	return v;
}

#endif
