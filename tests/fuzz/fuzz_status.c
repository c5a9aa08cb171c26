/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for tallyctl's reader of the status document
 * (tools/ctljson.c over jansson): any text is read (0) or refused
 * (-EINVAL), never a crash, a hang or a read outside the text. What is
 * read is walked as tallyctl walks it: every member's text (a number as
 * JSON writes it, and then a number to ctljson_is_number) and its human
 * form (tools/ctlout.c), nested objects and arrays to the bottom, the
 * "jobs" array with its strict counts.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ctljson.h"
#include "tools/ctlout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(struct json_t *v, unsigned depth);

static int walk_member(void *ctx, const char *key, struct json_t *v)
{
	unsigned depth = *(const unsigned *)ctx;
	char buf[32], human[64];
	const char *text = ctljson_text(v, buf, sizeof(buf));

	if (!key)
		abort();
	if (text)
		(void)ctlout_value(key, text, ctljson_kind(v) == CTLJSON_STRING,
				   human, sizeof(human));
	walk(v, depth + 1);
	return 0;
}

static int walk_object(void *ctx, struct json_t *obj)
{
	walk(obj, *(const unsigned *)ctx + 1);
	return 0;
}

/* A value and everything below it; a count checked as tallyctl does. */
static void walk(struct json_t *v, unsigned depth)
{
	enum ctljson_kind kind = ctljson_kind(v);
	char buf[32];
	const char *text = ctljson_text(v, buf, sizeof(buf));
	uint64_t u;

	if (!text != (kind == CTLJSON_ARRAY || kind == CTLJSON_OBJECT))
		abort();
	/* longer ones (1e300 in full) are not taken for numbers, as in a report */
	if (kind == CTLJSON_NUMBER && strlen(text) <= 20 &&
	    !ctljson_is_number(text))
		abort();
	if (!ctljson_u64(v, &u) && kind != CTLJSON_NUMBER)
		abort();
	if (kind == CTLJSON_OBJECT)
		ctljson_each_member(v, walk_member, &depth);
	else if (kind == CTLJSON_ARRAY)
		(void)ctljson_each_object(v, walk_object, &depth);
}

static void job_seen(void *ctx, const char *name, const struct ctljson_job *j)
{
	(void)ctx;
	if (!name || j->id == 0 || !memchr(j->unit, '\0', sizeof(j->unit)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_t *doc = NULL;
	char *text;
	int rc;

	if (size > 65536)
		return 0;
	/* exact size plus the NUL the reader is given: ASan sees overreads */
	text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	rc = ctljson_parse(text, &doc);
	free(text);
	if (rc != 0 && rc != -EINVAL)
		abort();
	if (rc == 0) {
		/* a whole object: it ends with its brace, blanks after */
		size_t end = strnlen((const char *)data, size);

		while (end > 0 && strchr(" \t\r\n", data[end - 1]))
			end--;
		if (end == 0 || data[end - 1] != '}' ||
		    ctljson_kind(doc) != CTLJSON_OBJECT)
			abort();
		walk(doc, 0);
		rc = ctljson_each_job(ctljson_get(doc, "jobs"), job_seen, NULL);
		if (rc != 0 && rc != -EINVAL)
			abort();
		ctljson_free(doc);
	}
	return 0;
}
