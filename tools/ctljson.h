/* SPDX-License-Identifier: MIT */
/*
 * ctljson: tallyctl's reader of the status document (.tally/status, one
 * JSON object), a thin layer over jansson. It parses the document, hands
 * out members and walks arrays and objects in document order, gives each
 * scalar as the text a person reads, and checks numbers strictly: a count
 * that is negative, fractional or does not fit is refused, never rounded.
 * jansson stays behind this header: the rest of tallyctl (and its tests)
 * see only struct json_t, opaque.
 */
#ifndef TALLY_TOOLS_CTLJSON_H
#define TALLY_TOOLS_CTLJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;

/* What a JSON value is. */
enum ctljson_kind {
	CTLJSON_STRING,
	CTLJSON_NUMBER,
	CTLJSON_LITERAL, /* true, false */
	CTLJSON_NULL,
	CTLJSON_ARRAY,
	CTLJSON_OBJECT,
};

/*
 * Parse @text (NUL-terminated) as one JSON object, with nothing but
 * blanks after it. *@out is the caller's, freed with ctljson_free(), and
 * owns every value and key read from it. Returns 0, -EINVAL when @text is
 * not such an object (malformed JSON, another kind of value, text after
 * it, a number out of range) or -ENOMEM.
 */
int ctljson_parse(const char *text, struct json_t **out);

/* Free a document of ctljson_parse(); NULL is a no-op. */
void ctljson_free(struct json_t *doc);

enum ctljson_kind ctljson_kind(const struct json_t *v);

/* The member @key of the object @obj, or NULL (borrowed from @obj). */
struct json_t *ctljson_get(const struct json_t *obj, const char *key);

/* The number of elements of an array, of members of an object; else 0. */
size_t ctljson_len(const struct json_t *v);

/*
 * A scalar as text: a string decoded (borrowed from @v), a number as JSON
 * writes it, "true", "false" or "null" (in @buf, @n bytes, 32 are enough).
 * NULL for an array or an object.
 */
const char *ctljson_text(const struct json_t *v, char *buf, size_t n);

/*
 * Call @fn for each member of the object @obj, in document order, with
 * its key and value (both borrowed from @obj). Stops at the first non-zero
 * return of @fn and returns it; 0 otherwise.
 */
int ctljson_each_member(struct json_t *obj,
			int (*fn)(void *ctx, const char *key, struct json_t *v),
			void *ctx);

/*
 * Call @fn for each element of the array @arr, which holds objects only.
 * Returns -EINVAL if @arr is not an array or at the first element that is
 * not an object (the ones before it were passed on), the first non-zero
 * return of @fn, or 0.
 */
int ctljson_each_object(struct json_t *arr,
			int (*fn)(void *ctx, struct json_t *obj), void *ctx);

/*
 * @s is a JSON number (RFC 8259 grammar) short enough to be one: a
 * 32-digit hash that happens to be all decimal digits stays a string.
 */
bool ctljson_is_number(const char *s);

/*
 * The count @v: 0 and *@out set, or -EINVAL (nothing written) unless @v
 * is a whole number from 0 up (a string, a negative or fractional number,
 * 1e3 and anything beyond 2^63 - 1 are refused).
 */
int ctljson_u64(const struct json_t *v, uint64_t *out);

/* A job of the status document ("jobs"). */
struct ctljson_job {
	uint64_t id, done, total, started;
	char unit[32];
};

/*
 * Call @fn for each job of @jobs (the status's "jobs" array): its name
 * (borrowed), id, started, done, total and unit; a job without a name or
 * an id is passed over. Returns -EINVAL if the array is malformed (an
 * element not an object, a count that ctljson_u64() refuses), after the
 * jobs before it were passed on; 0 otherwise, also when @jobs is NULL or
 * not an array (a mount older than jobs).
 */
int ctljson_each_job(struct json_t *jobs,
		     void (*fn)(void *ctx, const char *name,
				const struct ctljson_job *j),
		     void *ctx);

#endif
