/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the status document reader of tallyctl
 * (tools/tallyctl.c: parse_status, the "jobs" array, json_array_len and
 * the number check): any text is read (0) or refused (-EINVAL), never a
 * crash, a hang or a read outside the text; every member read lies inside
 * the text and is NUL-terminated there. tallyctl.c is compiled in here,
 * its main renamed, so the static functions are the ones it runs.
 */
#include <stddef.h>
#include <stdint.h>

int tallyctl_main(int argc, char **argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define main tallyctl_main
#include "tools/tallyctl.c"
#undef main

static char *text_lo, *text_hi; /* the copy being parsed */

static void inside(const char *s)
{
	if (s < text_lo || s >= text_hi ||
	    !memchr(s, '\0', (size_t)(text_hi - s)))
		abort();
}

static void job_seen(void *ctx, const char *name, const struct job_seen *j)
{
	(void)ctx;
	inside(name);
	if (j->id == 0 || !memchr(j->unit, '\0', sizeof(j->unit)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kv *kv = NULL;
	size_t n = 0, i;
	char *text, buf[64];
	int rc;

	if (size > 65536)
		return 0;
	/* exact size plus the NUL the reader is given: ASan sees overreads */
	text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	text_lo = text;
	text_hi = text + size + 1;
	rc = parse_status(text, &kv, &n);
	if (rc != 0 && rc != -EINVAL)
		abort();
	if (rc == 0) {
		/* a whole object: it ends with its brace, blanks after */
		size_t end = strnlen((const char *)data, size);

		while (end > 0 && strchr(" \t\r\n", data[end - 1]))
			end--;
		if (end == 0 || data[end - 1] != '}')
			abort();
		for (i = 0; i < n; i++) {
			inside(kv[i].key);
			inside(kv[i].val);
			if (kv[i].idx != i)
				abort();
			(void)human_value(kv[i].key, kv[i].val, kv[i].quoted,
					  buf, sizeof(buf));
			if (!kv[i].quoted && kv[i].val[0] == '[' &&
			    json_array_len(kv[i].val) < -1)
				abort();
		}
		free(kv);
	}

	/* the jobs of the same text, read afresh */
	memcpy(text, data, size);
	text[size] = '\0';
	rc = for_each_job(text, job_seen, NULL);
	if (rc != 0 && rc != -EINVAL)
		abort();
	free(text);
	return 0;
}
