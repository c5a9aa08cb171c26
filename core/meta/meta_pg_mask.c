/* SPDX-License-Identifier: MIT */
/*
 * Connection URIs and keyword strings as a log or an error may show
 * them: every password masked (meta_uri_masked()).
 */
#include "core/meta/meta_pg_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util/log.h"

/* The text shown in place of a password */
#define MASK "***"
#define BLANKS " \t\n\r\f\v"

/* A string being built, its size bounded by meta_uri_masked() */
struct shown {
	char *text;
	size_t len, size;
};

static void put(struct shown *b, const char *s, size_t n)
{
	assert(b->len + n < b->size);
	memcpy(b->text + b->len, s, n);
	b->len += n;
}

/* Whether the @n bytes at @key name a password (password, sslpassword):
 * libpq's keywords are case-sensitive, the mask is not. */
static bool password_key(const char *key, size_t n)
{
	return n >= 8 && !strncasecmp(key + n - 8, "password", 8);
}

/* The parameters of a URI's query at @q (after '?'): KEY=VALUE&... */
static void put_query(struct shown *b, const char *q)
{
	while (*q) {
		size_t n = strcspn(q, "&");
		const char *eq = memchr(q, '=', n);

		if (eq && password_key(q, (size_t)(eq - q))) {
			put(b, q, (size_t)(eq - q) + 1);
			put(b, MASK, strlen(MASK));
		} else {
			put(b, q, n);
		}
		q += n;
		if (*q)
			put(b, q++, 1);
	}
}

/* A keyword/value connection string at @s, parsed as libpq does:
 * KEY = VALUE separated by blanks, a value either 'quoted' or ending at
 * a blank, a backslash escaping the next character in both. */
static void put_conninfo(struct shown *b, const char *s)
{
	const char *key, *value;
	size_t n, keylen;

	while (*s) {
		n = strspn(s, BLANKS);
		put(b, s, n);
		s += n;
		key = s;
		keylen = strcspn(s, "=" BLANKS);
		put(b, s, keylen);
		s += keylen;
		n = strspn(s, BLANKS);
		put(b, s, n);
		s += n;
		if (*s != '=') {
			/* malformed (libpq refuses it): whatever follows a
			 * password keyword may be the password */
			if (password_key(key, keylen) && *s) {
				put(b, MASK, strlen(MASK));
				return;
			}
			continue;
		}
		put(b, s++, 1);
		n = strspn(s, BLANKS);
		put(b, s, n);
		s += n;
		value = s;
		if (*s == '\'') {
			for (s++; *s && *s != '\''; s++)
				if (*s == '\\' && s[1])
					s++;
			if (*s)
				s++;
		} else {
			for (; *s && !strchr(BLANKS, *s); s++)
				if (*s == '\\' && s[1])
					s++;
		}
		if (password_key(key, keylen))
			put(b, MASK, strlen(MASK));
		else
			put(b, value, (size_t)(s - value));
	}
}

/*
 * Masking errs on the side of hiding: a password may hold any character
 * that the user did not percent-encode (':', '/', '?', '@'), so a URI's
 * user information is taken to end at its last '@', and a database name
 * or query holding an '@' is hidden with it.
 */
char *meta_uri_masked(const char *uri)
{
	const char *rest = strstr(uri, "://"), *at = strrchr(uri, '@');
	const char *colon, *query;
	struct shown b;

	/* every mask but one follows a password keyword and its '=' (9
	 * bytes or more): the text grows by less than half, and 3 bytes */
	b.size = 2 * strlen(uri) + sizeof(MASK) + 1;
	b.text = malloc(b.size);
	b.len = 0;
	if (!b.text)
		return NULL;
	if (rest && strspn(uri, "abcdefghijklmnopqrstuvwxyz"
				"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-") ==
			    (size_t)(rest - uri)) {
		/* scheme://[user[:password]@]host[:port][/db][?query] */
		rest += 3;
		colon = at && at > rest ? memchr(rest, ':', (size_t)(at - rest))
					: NULL;
		if (colon) {
			put(&b, uri, (size_t)(colon - uri) + 1);
			put(&b, MASK, strlen(MASK));
			rest = at;
		} else {
			put(&b, uri, (size_t)(rest - uri));
		}
		query = strchr(rest, '?');
		if (query) {
			put(&b, rest, (size_t)(query - rest) + 1);
			put_query(&b, query + 1);
		} else {
			put(&b, rest, strlen(rest));
		}
	} else if (!strchr(uri, '=') && (colon = strchr(uri, ':')) && at &&
		   colon < at) {
		/* not a URI, but user:password@host all the same */
		put(&b, uri, (size_t)(colon - uri) + 1);
		put(&b, MASK, strlen(MASK));
		put(&b, at, strlen(at));
	} else {
		put_conninfo(&b, uri);
	}
	b.text[b.len] = '\0';
	return b.text;
}
