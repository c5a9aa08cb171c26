/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the store marker parser (core/objects/store.c,
 * store_marker_parse): any bytes are a marker (0, with its format) or
 * -EUCLEAN, never a crash or an out-of-bounds read. The verdict and the
 * format are those of the reader it replaced (fgets + sscanf, run here on
 * the same bytes through fmemopen), and every marker that
 * tallyfs writes reads back with its format.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/objects/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reader before the refactor, as it read the file (first 256 bytes). */
static int old_reader(const char *buf, size_t len, int *format)
{
	char line[128];
	FILE *f;
	int rc = -EUCLEAN;

	if (len == 0)
		return -EUCLEAN;
	f = fmemopen((void *)buf, len, "r");
	if (!f)
		abort();
	if (fgets(line, sizeof(line), f) && !strcmp(line, "tallyfs store\n") &&
	    fgets(line, sizeof(line), f) &&
	    sscanf(line, "format %d", format) == 1)
		rc = 0;
	fclose(f);
	return rc;
}

/* Whether the number after "format" on line 2 fits an int (the old
 * reader's sscanf had undefined behaviour past that). */
static int fits_int(int format)
{
	return format != INT_MAX && format != INT_MIN;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, text[64];
	int rc, old, format = 0, oformat = 0, len;

	if (size > STORE_MARKER_MAX)
		size = STORE_MARKER_MAX; /* what read_marker reads */
	/* exact size: ASan sees overreads */
	buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	rc = store_marker_parse(buf, size, &format);
	if (rc != 0 && rc != -EUCLEAN)
		abort();
	old = old_reader(buf, size, &oformat);
	if (old != rc)
		abort();
	if (rc == 0 && fits_int(format) && format != oformat)
		abort();
	free(buf);

	/* what write_marker writes, for any format */
	if (size >= sizeof(int)) {
		memcpy(&format, data, sizeof(int));
		len = snprintf(text, sizeof(text), "tallyfs store\nformat %d\n",
			       format);
		if (store_marker_parse(text, (size_t)len, &oformat) != 0 ||
		    oformat != format)
			abort();
	}
	return 0;
}
