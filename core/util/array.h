/* SPDX-License-Identifier: MIT */
/*
 * One growable-array helper for core/: the arrays of rows, names and
 * objects that a query or a scan fills one element at a time.
 */
#ifndef TALLY_ARRAY_H
#define TALLY_ARRAY_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Make room for @need elements of @size bytes in the array whose pointer
 * is at @arrayp (a T **, passed as void *) and whose capacity is *@cap:
 * the capacity at least doubles, from 16. The array is unchanged on
 * failure. Returns 0 or -ENOMEM.
 */
static inline int array_reserve(void *arrayp, size_t *cap, size_t need,
				size_t size)
{
	void *old, *nv;
	size_t ncap;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 16;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	if (ncap > SIZE_MAX / size)
		return -ENOMEM;
	memcpy(&old, arrayp, sizeof(old));
	nv = realloc(old, ncap * size);
	if (!nv)
		return -ENOMEM;
	memcpy(arrayp, &nv, sizeof(nv));
	*cap = ncap;
	return 0;
}

#endif
