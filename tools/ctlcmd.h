/* SPDX-License-Identifier: MIT */
/*
 * ctlcmd: the commands of tallyctl. Each has a synopsis, a help text, how
 * many arguments and which options it takes, and a builder that checks
 * its arguments and writes the one line sent to .tally/ctl; `status`,
 * which only reads .tally/status, has none.
 */
#ifndef TALLY_TOOLS_CTLCMD_H
#define TALLY_TOOLS_CTLCMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The longest command line the mount accepts (CTL_LINE_MAX of core/jobs/ctl.h). */
#define CMDLINE_MAX 4096

/* Command options (global ones, --json and --help, are handled apart). */
enum {
	OPT_TIMEOUT = 1u << 0,
	OPT_DRY_RUN = 1u << 1,
	OPT_GRACE = 1u << 2,
	OPT_SAMPLE = 1u << 3,
	OPT_BATCHES = 1u << 4,
	OPT_DROP_LATER = 1u << 5,
};

#define NOPTS 6

/* A command option: its name after "--", its OPT_* bit. */
struct ctlcmd_opt {
	const char *name;
	unsigned bit;
	bool has_value;
};

extern const struct ctlcmd_opt ctlcmd_opts[NOPTS];

/* The command line being built for .tally/ctl. */
struct cmdline {
	char buf[CMDLINE_MAX + 2]; /* room for the newline and the NUL */
	size_t len;
};

struct inv;

struct ctlcmd {
	const char *name;
	const char *synopsis; /* what follows the name */
	const char *summary;  /* one line for the overview */
	const char *help;     /* description, options, report, example */
	unsigned min_args, max_args;
	unsigned opts; /* OPT_* bits it accepts */
	/*
	 * fills the command line; RC_OK, RC_USAGE or RC_FAILED (message
	 * printed); NULL for status and metrics (they read a file)
	 */
	int (*build)(struct inv *inv, struct cmdline *l);
};

/* The command called @name, or NULL. */
const struct ctlcmd *ctlcmd_find(const char *name);

/* The overview of tallyctl and its commands, on @f. */
void ctlcmd_usage(FILE *f);

/* The help of the command @c, on @f. */
void ctlcmd_help(FILE *f, const struct ctlcmd *c);

/*
 * @s is digits with at most one decimal point (a number of seconds or a
 * percentage): *@out is its value. false, nothing written, otherwise.
 */
bool ctlcmd_decimal(const char *s, double *out);

#endif
