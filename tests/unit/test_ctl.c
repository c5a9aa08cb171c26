/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the control-command parser (core/jobs/ctl.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/jobs/ctl.h"

TestSuite(ctl, .timeout = 10);

static int parse(const char *s, struct ctl_cmd *c)
{
	return ctl_parse(s, strlen(s), c);
}

Test(ctl, good_commands)
{
	struct ctl_cmd c;

	cr_assert_eq(parse("drain\n", &c), 0);
	cr_assert_eq(c.verb, CTL_DRAIN);
	cr_assert_eq(c.nargs, 0);
	cr_assert_eq(parse("  drain 2.5 ", &c), 0);
	cr_assert_eq(c.nargs, 1);
	cr_assert_float_eq(c.timeout, 2.5, 1e-9);
	cr_assert_eq(parse("branch main dev\n", &c), 0);
	cr_assert_eq(c.verb, CTL_BRANCH);
	cr_assert_str_eq(c.args[0], "main");
	cr_assert_str_eq(c.args[1], "dev");
	cr_assert_eq(parse("branch\tmain\t dev", &c), 0);
	cr_assert_str_eq(c.args[1], "dev");
	cr_assert_eq(parse("rekey /root/new.key\n", &c), 0);
	cr_assert_eq(c.verb, CTL_REKEY);
	cr_assert_str_eq(c.args[0], "/root/new.key");
	cr_assert_eq(parse("rollback main s1\n", &c), 0);
	cr_assert_eq(c.verb, CTL_ROLLBACK);
	cr_assert_not(c.later);
	cr_assert_eq(parse("rollback main s1 drop-later\n", &c), 0);
	cr_assert_eq(c.verb, CTL_ROLLBACK);
	cr_assert_str_eq(c.args[1], "s1");
	cr_assert(c.later);
	cr_assert_eq(parse("autosnapshot main every=1h keep=24\n", &c), 0);
	cr_assert_eq(c.verb, CTL_AUTOSNAPSHOT);
	cr_assert_eq(c.every, 3600);
	cr_assert_eq(c.keep, 24);
	cr_assert_eq(parse("autosnapshot main keep=2 every=90", &c), 0);
	cr_assert_eq(c.every, 90);
	cr_assert_eq(c.keep, 2);
	cr_assert_eq(parse("autosnapshot main every=2d keep=1", &c), 0);
	cr_assert_eq(c.every, 2 * 86400);
	cr_assert_eq(parse("autosnapshot main off", &c), 0);
	cr_assert_eq(c.every, 0);
	cr_assert_eq(parse("autosnapshot main", &c), 0);
	cr_assert_eq(c.every, -1);
}

Test(ctl, malformed_commands)
{
	static const char *const bad[] = {
		"",
		"\n",
		"   ",
		"bogus",
		"drain now",
		"drain -1",
		"drain 0",
		"drain nan",
		"drain inf",
		"drain 1e99",
		"branch",
		"branch a",
		"branch a b c",
		"drain\n\n",
		"branch a\nb",
		"DRAIN",
		"rekey",
		"rekey new.key",
		"rekey ./new.key",
		"rekey /a /b",
		"rollback",
		"rollback main",
		"rollback main s1 later",
		"rollback main s1 drop-later drop-later",
		"autosnapshot",
		"autosnapshot main on",
		"autosnapshot main every=1h",
		"autosnapshot main keep=3 keep=3",
		"autosnapshot main every=0 keep=3",
		"autosnapshot main every=-5 keep=3",
		"autosnapshot main every=1w keep=3",
		"autosnapshot main every=h keep=3",
		"autosnapshot main every=1hh keep=3",
		"autosnapshot main every=1h keep=0",
		"autosnapshot main every=1h keep=x",
		"autosnapshot main every=1h keep=3 off",
	};
	struct ctl_cmd c;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(parse(bad[i], &c), -EINVAL, "'%s' accepted",
			     bad[i]);
	cr_assert_eq(ctl_parse("drain\0x", 7, &c), -EINVAL);
	{
		char big[CTL_LINE_MAX + 2];

		memset(big, 'a', sizeof(big));
		cr_assert_eq(ctl_parse(big, sizeof(big), &c), -EINVAL);
	}
}
