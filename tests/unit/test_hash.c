/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of object naming (core/util/hash.c).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/util/hash.h"

TestSuite(hash, .timeout = 10);

Test(hash, known_value_and_format)
{
	char hex[HASH_HEX_LEN + 1];

	hash_block("", 0, hex);
	/* XXH3-128 of the empty input */
	cr_assert_str_eq(hex, "99aa06d3014798d86001c324468d497f");
	hash_block("abc", 3, hex);
	cr_assert_eq(strlen(hex), 32);
	cr_assert(hash_name_valid(hex));
}

Test(hash, names)
{
	char name[OBJNAME_MAX];

	hash_variant_name("0123456789abcdef0123456789abcdef", 0, name);
	cr_assert_str_eq(name, "0123456789abcdef0123456789abcdef");
	hash_variant_name("0123456789abcdef0123456789abcdef", 12, name);
	cr_assert_str_eq(name, "0123456789abcdef0123456789abcdef-12");
	cr_assert(hash_name_valid(name));
	cr_assert_not(hash_name_valid("0123456789abcdef0123456789abcdeF"));
	cr_assert_not(hash_name_valid("0123456789abcdef0123456789abcde"));
	cr_assert_not(hash_name_valid("0123456789abcdef0123456789abcdef-0"));
	cr_assert_not(hash_name_valid("0123456789abcdef0123456789abcdef-"));
	cr_assert_not(hash_name_valid("0123456789abcdef0123456789abcdef.t"));
}
