/* SPDX-License-Identifier: MIT */
/*
 * tallyctl: what its files share. One invocation (struct inv: the mount,
 * the command, its arguments and options), the exit codes, the messages
 * of a usage error or of a failed command, and reading from the mount.
 * The files: tallyctl.c (options, dispatch, the I/O with the mount),
 * ctlcmd.c (the commands and their lines), ctlpath.c (paths relative to
 * the mount), ctlout.c (what is printed), ctlwatch.c (progress),
 * ctljson.c (the status document).
 */
#ifndef TALLY_TOOLS_TALLYCTL_H
#define TALLY_TOOLS_TALLYCTL_H

#include <stdbool.h>

#include "tools/ctlcmd.h"

enum {
	RC_OK = 0,
	RC_FAILED = 1, /* the command (or talking to the mount) failed */
	RC_USAGE = 2,  /* bad usage, or MOUNTPOINT is not a tallyfs mount */
};

/* One invocation: what the command line asked for. */
struct inv {
	const char *mnt;	    /* MOUNTPOINT as given */
	char *mnt_real;		    /* realpath of it (owned) */
	const struct ctlcmd *cmd;   /* the command */
	char **args;		    /* its arguments (borrowed from argv) */
	unsigned nargs;		    /* how many */
	bool json;		    /* --json */
	bool no_progress;	    /* --no-progress */
	double progress_delay;	    /* --progress-delay, seconds */
	unsigned opts;		    /* OPT_* bits given */
	const char *opt_val[NOPTS]; /* values, as ctlcmd_opts (borrowed) */
	char sent[CMDLINE_MAX + 1]; /* the line sent, for messages */
};

/*
 * A usage error: "tallyctl: CMD: message" on stderr (without CMD when
 * @inv, which may be NULL, has no command yet) and where to find help.
 */
void tallyctl_usage(const struct inv *inv, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * The command (or the access to the mount) failed with @err, a positive
 * errno: say so on stderr, with the errno's name and what it means here,
 * and as a JSON object on stdout with --json. Returns RC_FAILED.
 */
int tallyctl_failed(const struct inv *inv, const char *what, int err);

/*
 * Read @fd to its end into a NUL-terminated *@out (malloc'ed, the
 * caller's). 0, -EFBIG past what a mount writes, -ENOMEM or the -errno of
 * read(2).
 */
int tallyctl_read_all(int fd, char **out);

/* @dir/@name (malloc'ed, the caller's), or NULL when out of memory. */
char *tallyctl_path_join(const char *dir, const char *name);

#endif
