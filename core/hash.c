/* SPDX-License-Identifier: MIT */
/*
 * XXH3-128 block naming (libxxhash), with the test-only bit truncation.
 */
#include "core/hash.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

void hash_block(const void *buf, size_t len, char hex[HASH_HEX_LEN + 1])
{
	XXH128_hash_t h = XXH3_128bits(buf, len);
	uint64_t hi = h.high64, lo = h.low64;

#if TALLY_HASH_BITS > 0 && TALLY_HASH_BITS < 128
#if TALLY_HASH_BITS <= 64
	hi &= ~UINT64_C(0) << (64 - TALLY_HASH_BITS);
	lo = 0;
#else
	lo &= ~UINT64_C(0) << (128 - TALLY_HASH_BITS);
#endif
#endif
	snprintf(hex, HASH_HEX_LEN + 1, "%016llx%016llx",
		 (unsigned long long)hi, (unsigned long long)lo);
}

void hash_variant_name(const char *hex, unsigned variant, char out[OBJNAME_MAX])
{
	if (variant == 0)
		snprintf(out, OBJNAME_MAX, "%.32s", hex);
	else
		snprintf(out, OBJNAME_MAX, "%.32s-%u", hex, variant);
}

int hash_name_valid(const char *name)
{
	size_t i;

	for (i = 0; i < HASH_HEX_LEN; i++)
		if (!((name[i] >= '0' && name[i] <= '9') ||
		      (name[i] >= 'a' && name[i] <= 'f')))
			return 0;
	if (name[i] == '\0')
		return 1;
	if (name[i] != '-' || name[i + 1] < '1' || name[i + 1] > '9')
		return 0;
	for (i++; name[i]; i++)
		if (name[i] < '0' || name[i] > '9' || i > HASH_HEX_LEN + 10)
			return 0;
	return 1;
}
