/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the shard marker parser (core/objects/objstore.c,
 * objstore_marker_parse): any bytes are either exactly the text that
 * objstore_marker_text() writes for some store and shard (0) or -EUCLEAN,
 * never a crash or an out-of-bounds read; every marker written parses
 * back to its store and shard.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/objects/objstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, text[OBJSTORE_MARKER_MAX];
	uint64_t sid = 0, sid2;
	unsigned id = 0, id2;
	int rc, len;

	if (size > OBJSTORE_MARKER_MAX)
		size = OBJSTORE_MARKER_MAX; /* what marker_check reads */
	/* exact size: ASan sees overreads */
	buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	rc = objstore_marker_parse(buf, size, &sid, &id);
	if (rc != 0 && rc != -EUCLEAN)
		abort();
	if (rc == 0) {
		/* accepted: the canonical text of what it names, nothing
		 * else */
		len = objstore_marker_text(text, sizeof(text), sid, id);
		if ((size_t)len != size || memcmp(text, buf, size))
			abort();
	}
	free(buf);

	/* what objstore_shard_init writes parses back */
	if (size >= 12) {
		memcpy(&sid, data, 8);
		memcpy(&id, data + 8, 4);
		len = objstore_marker_text(text, sizeof(text), sid, id);
		if (len <= 0 || len >= (int)sizeof(text) ||
		    objstore_marker_parse(text, (size_t)len, &sid2, &id2) ||
		    sid2 != sid || id2 != id)
			abort();
		/* and any one byte less, or one more, is refused */
		if (objstore_marker_parse(text, (size_t)len - 1, &sid2, &id2) !=
		    -EUCLEAN)
			abort();
		text[len] = data[11];
		if (objstore_marker_parse(text, (size_t)len + 1, &sid2, &id2) !=
		    -EUCLEAN)
			abort();
	}
	return 0;
}
