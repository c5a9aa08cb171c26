/* SPDX-License-Identifier: MIT */
/*
 * ctljson: tallyctl's reader of the status document, over jansson (see
 * ctljson.h). jansson keeps the members of an object in document order
 * and refuses what is not JSON (text after the value, lone surrogates,
 * integers beyond 2^63 - 1, reals that overflow); this file adds the shape
 * tallyctl expects (an object at the top, objects in the walked arrays)
 * and the strict reading of counts.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ctljson.h"

int ctljson_parse(const char *text, struct json_t **out)
{
	json_error_t err;
	json_t *doc = json_loads(text, 0, &err);

	if (!doc)
		return json_error_code(&err) == json_error_out_of_memory
			       ? -ENOMEM
			       : -EINVAL;
	if (!json_is_object(doc)) {
		json_decref(doc);
		return -EINVAL;
	}
	*out = doc;
	return 0;
}

void ctljson_free(struct json_t *doc)
{
	json_decref(doc);
}

enum ctljson_kind ctljson_kind(const struct json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return CTLJSON_STRING;
	case JSON_INTEGER:
	case JSON_REAL:
		return CTLJSON_NUMBER;
	case JSON_TRUE:
	case JSON_FALSE:
		return CTLJSON_LITERAL;
	case JSON_ARRAY:
		return CTLJSON_ARRAY;
	case JSON_OBJECT:
		return CTLJSON_OBJECT;
	case JSON_NULL:
	default:
		return CTLJSON_NULL;
	}
}

struct json_t *ctljson_get(const struct json_t *obj, const char *key)
{
	return json_object_get(obj, key);
}

size_t ctljson_len(const struct json_t *v)
{
	if (json_is_array(v))
		return json_array_size(v);
	return json_object_size(v);
}

/*
 * A real as the shortest text that reads back as the same double, with a
 * ".0" when it looks whole, so that it still reads as a real.
 */
static void real_text(double v, char *buf, size_t n)
{
	size_t len;
	int prec;

	for (prec = 1; prec < 17; prec++) {
		snprintf(buf, n, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	if (prec == 17)
		snprintf(buf, n, "%.17g", v);
	len = strlen(buf);
	if (strspn(buf, "-0123456789") == len && len + 2 < n)
		memcpy(buf + len, ".0", 3);
}

const char *ctljson_text(const struct json_t *v, char *buf, size_t n)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return json_string_value(v);
	case JSON_INTEGER:
		snprintf(buf, n, "%" JSON_INTEGER_FORMAT,
			 json_integer_value(v));
		return buf;
	case JSON_REAL:
		real_text(json_real_value(v), buf, n);
		return buf;
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	case JSON_NULL:
		return "null";
	default:
		return NULL;
	}
}

int ctljson_each_member(struct json_t *obj,
			int (*fn)(void *ctx, const char *key, struct json_t *v),
			void *ctx)
{
	void *it;
	int rc = 0;

	for (it = json_object_iter(obj); it && !rc;
	     it = json_object_iter_next(obj, it))
		rc = fn(ctx, json_object_iter_key(it),
			json_object_iter_value(it));
	return rc;
}

int ctljson_each_object(struct json_t *arr,
			int (*fn)(void *ctx, struct json_t *obj), void *ctx)
{
	size_t i;
	int rc = 0;

	if (!json_is_array(arr))
		return -EINVAL;
	for (i = 0; i < json_array_size(arr) && !rc; i++) {
		json_t *e = json_array_get(arr, i);

		rc = json_is_object(e) ? fn(ctx, e) : -EINVAL;
	}
	return rc;
}

bool ctljson_is_number(const char *s)
{
	const char *p = s;

	if (strlen(s) > 20)
		return false;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (isdigit((unsigned char)*p))
			p++;
	else
		return false;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return *p == '\0';
}

int ctljson_u64(const struct json_t *v, uint64_t *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return -EINVAL;
	i = json_integer_value(v);
	if (i < 0)
		return -EINVAL;
	*out = (uint64_t)i;
	return 0;
}

struct jobs_walk {
	void (*fn)(void *ctx, const char *name, const struct ctljson_job *j);
	void *ctx;
};

/* A count member of a job, if it is there. */
static int job_count(json_t *obj, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);

	return v ? ctljson_u64(v, out) : 0;
}

/* One element of a "jobs" array: decoded and passed on, if it is whole. */
static int job_object(void *ctx, struct json_t *obj)
{
	struct jobs_walk *w = ctx;
	struct ctljson_job j = { .id = 0 };
	const char *name = json_string_value(json_object_get(obj, "name"));
	const char *unit = json_string_value(json_object_get(obj, "unit"));

	if (job_count(obj, "id", &j.id) ||
	    job_count(obj, "started", &j.started) ||
	    job_count(obj, "done", &j.done) ||
	    job_count(obj, "total", &j.total))
		return -EINVAL;
	if (unit)
		snprintf(j.unit, sizeof(j.unit), "%s", unit);
	if (name && j.id)
		w->fn(w->ctx, name, &j);
	return 0;
}

int ctljson_each_job(struct json_t *jobs,
		     void (*fn)(void *ctx, const char *name,
				const struct ctljson_job *j),
		     void *ctx)
{
	struct jobs_walk w = { .fn = fn, .ctx = ctx };

	if (!json_is_array(jobs))
		return 0;
	return ctljson_each_object(jobs, job_object, &w);
}
