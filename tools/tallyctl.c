/* SPDX-License-Identifier: MIT */
/*
 * tallyctl: the command-line front end of a mounted tallyfs. It talks to
 * the mount only through MOUNTPOINT/.tally, like any other program: a
 * command is one line written to .tally/ctl with a single write(2), which
 * returns when the mount has finished it (or fails with the command's
 * errno), and the command's report (key: value lines) is read back from
 * the same open descriptor; `status` reads .tally/status (one flat JSON
 * object), `metrics` .tally/metrics (the Prometheus text format). tallyctl checks the syntax of each command, turns paths into
 * paths relative to the mount and forwards everything else unchanged, so
 * that commands a mount does not know yet fail there (EINVAL) and work as
 * soon as the mount learns them. Output is for people by default (aligned
 * columns, sizes in KiB/MiB/GiB, ratios, durations) and one JSON object
 * with --json. Exit status: 0 ok, 1 the command failed, 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/ctlcmd.h"
#include "tools/ctljson.h"
#include "tools/ctlout.h"
#include "tools/ctlwatch.h"
#include "tools/tallyctl.h"

/* A report or status document larger than this is not from tallyfs. */
#define REPLY_MAX (64u << 20)

static const char *prog = "tallyctl";

/* ----------------------------------------------------------- messages */

/* Print "tallyctl: CMD: message" and where to find help. */
void tallyctl_usage(const struct inv *inv, const char *fmt, ...)
{
	va_list ap;

	if (inv && inv->cmd)
		fprintf(stderr, "%s: %s: ", prog, inv->cmd->name);
	else
		fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (inv && inv->cmd)
		fprintf(stderr, "\n(see '%s %s --help')\n", prog,
			inv->cmd->name);
	else
		fprintf(stderr, "\n(see '%s --help')\n", prog);
}

static const struct {
	int err;
	const char *name;
	const char *meaning;
} errnos[] = {
	{ EINVAL, "EINVAL", "malformed or unknown command" },
	{ ENOENT, "ENOENT", "no such namespace, path, shard or object" },
	{ EEXIST, "EEXIST", "the target already exists" },
	{ ETIMEDOUT, "ETIMEDOUT",
	  "the timeout passed before the command finished (what it started "
	  "goes on in the background)" },
	{ ENAMETOOLONG, "ENAMETOOLONG", "a name is longer than 255 bytes" },
	{ EACCES, "EACCES",
	  "permission denied: only the user who mounted may write commands" },
	{ EPERM, "EPERM", "the mount does not allow this operation" },
	{ ENOTCONN, "ENOTCONN",
	  "the daemon serving the mount is gone (unmount it with "
	  "fusermount3 -u)" },
	{ EBUSY, "EBUSY", "busy: another job holds what this command needs" },
	{ ENOTEMPTY, "ENOTEMPTY", "not empty" },
	{ ENOSPC, "ENOSPC", "the store's disk is full" },
	{ EROFS, "EROFS", "the mount is read-only" },
	{ EIO, "EIO", "I/O error in the store (see the daemon's log)" },
	{ EUCLEAN, "EUCLEAN",
	  "the store is damaged (unmount it and run tallyfsck)" },
	{ EBADMSG, "EBADMSG", "an object does not match its hash" },
	{ ENOMEM, "ENOMEM", "the daemon ran out of memory" },
	{ EINTR, "EINTR",
	  "interrupted: the command may still be running in the mount" },
	{ ENOSYS, "ENOSYS", "not supported by this mount" },
	{ EOPNOTSUPP, "EOPNOTSUPP", "not supported by this mount" },
	{ EXDEV, "EXDEV",
	  "not versions of one namespace (a branch is a copy: no version in "
	  "common)" },
};

/*
 * The command (or the access to the mount) failed with @err: say so on
 * stderr, with the errno's name and what it means here, and as a JSON
 * object on stdout with --json. Returns RC_FAILED.
 */
int tallyctl_failed(const struct inv *inv, const char *what, int err)
{
	const char *name = NULL, *meaning = NULL;
	char num[32], text[256];
	size_t i;

	for (i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		if (errnos[i].err == err) {
			name = errnos[i].name;
			meaning = errnos[i].meaning;
			break;
		}
	}
	if (!name) {
		snprintf(num, sizeof(num), "errno %d", err);
		name = num;
	}
	if (err == EINVAL && inv->sent[0]) {
		snprintf(text, sizeof(text),
			 "%s: the mount does not know '%s' (it may be older "
			 "than this tallyctl) or rejected its arguments",
			 meaning, inv->cmd->name);
		meaning = text;
	}
	fprintf(stderr, "%s: %s failed: %s (%s)", prog, what, name,
		strerror(err));
	if (meaning)
		fprintf(stderr, ": %s", meaning);
	if (inv->sent[0])
		fprintf(stderr, "\n%s: the line sent to %s/.tally/ctl was '%s'",
			prog, inv->mnt, inv->sent);
	fputc('\n', stderr);
	if (inv->json) {
		printf("{\"command\": ");
		ctlout_json_string(inv->cmd ? inv->cmd->name : "");
		if (inv->sent[0]) {
			printf(", \"sent\": ");
			ctlout_json_string(inv->sent);
		}
		printf(", \"error\": ");
		ctlout_json_string(name);
		printf(", \"errno\": %d, \"message\": ", err);
		ctlout_json_string(meaning ? meaning : strerror(err));
		printf("}\n");
	}
	return RC_FAILED;
}

/* ------------------------------------------------------------ the I/O */

/* Read @fd to its end into a NUL-terminated, malloc'ed *@out. */
int tallyctl_read_all(int fd, char **out)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *grown;
	ssize_t n;
	int rc;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (cap - len < 2) {
			if (cap >= REPLY_MAX) {
				rc = -EFBIG;
				goto out_free;
			}
			grown = realloc(buf, cap * 2);
			if (!grown) {
				rc = -ENOMEM;
				goto out_free;
			}
			buf = grown;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out_free;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
out_free:
	free(buf);
	return rc;
}

char *tallyctl_path_join(const char *dir, const char *name)
{
	char *s;

	if (asprintf(&s, "%s%s%s", dir,
		     dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/",
		     name) < 0)
		return NULL;
	return s;
}

/*
 * Open MOUNTPOINT/.tally/@name with @flags into *@fd: RC_OK, or RC_FAILED
 * with the failure reported as that of @what.
 */
static int open_tally(struct inv *inv, const char *name, int flags,
		      const char *what, int *fd)
{
	char *path = tallyctl_path_join(inv->mnt, name);
	int rc;

	if (!path)
		return tallyctl_failed(inv, inv->cmd->name, ENOMEM);
	*fd = open(path, flags | O_CLOEXEC);
	rc = errno;
	free(path);
	return *fd < 0 ? tallyctl_failed(inv, what, rc) : RC_OK;
}

/* Run `status`: print .tally/status as is (--json) or as columns. */
static int run_status(struct inv *inv)
{
	struct json_t *doc = NULL;
	char *text = NULL;
	size_t len;
	int fd, rc;

	rc = open_tally(inv, ".tally/status", O_RDONLY, "reading .tally/status",
			&fd);
	if (rc)
		return rc;
	rc = tallyctl_read_all(fd, &text);
	close(fd);
	if (rc)
		return tallyctl_failed(inv, "reading .tally/status", -rc);
	if (inv->json) {
		len = strlen(text);
		fputs(text, stdout);
		if (!len || text[len - 1] != '\n')
			putchar('\n');
		free(text);
		return RC_OK;
	}
	rc = ctljson_parse(text, &doc);
	free(text);
	if (rc == -EINVAL) {
		fprintf(stderr,
			"%s: status: %s/.tally/status is not the JSON object "
			"expected (see it with --json)\n",
			prog, inv->mnt);
		return RC_FAILED;
	}
	if (!rc)
		rc = ctlout_status(doc);
	ctljson_free(doc);
	return rc ? tallyctl_failed(inv, "status", -rc) : RC_OK;
}

/* Run `metrics`: print .tally/metrics as is (--json too: it is text). */
static int run_metrics(struct inv *inv)
{
	char *text = NULL;
	int fd, rc;

	rc = open_tally(inv, ".tally/metrics", O_RDONLY,
			"reading .tally/metrics", &fd);
	if (rc)
		return rc;
	rc = tallyctl_read_all(fd, &text);
	close(fd);
	if (rc)
		return tallyctl_failed(inv, "reading .tally/metrics", -rc);
	fputs(text, stdout);
	free(text);
	return RC_OK;
}

/*
 * Send the line built for the command to .tally/ctl in one write(2) and
 * print the report read back from the same descriptor.
 */
static int run_ctl(struct inv *inv, struct cmdline *l)
{
	struct ctlwatch *watch;
	struct kv *kv = NULL;
	char *report = NULL;
	size_t n = 0;
	ssize_t w;
	int fd, rc;

	rc = open_tally(inv, ".tally/ctl", O_RDWR, "opening .tally/ctl", &fd);
	if (rc)
		return rc;
	memcpy(inv->sent, l->buf, l->len);
	inv->sent[l->len] = '\0';
	l->buf[l->len++] = '\n';
	watch = ctlwatch_start(inv);
	/* never retried: the command may have run (a second branch...) */
	w = write(fd, l->buf, l->len);
	ctlwatch_stop(watch, w == (ssize_t)l->len);
	if (w < 0) {
		const char *e;

		rc = errno;
		/* the failure's own words, when it left a report: read
		 * where the failed write left the offset */
		if (rc != ENOTCONN && !tallyctl_read_all(fd, &report) &&
		    (e = strstr(report, "error: ")) != NULL &&
		    (e == report || e[-1] == '\n'))
			fprintf(stderr, "%s: %s: %.*s\n", prog, inv->cmd->name,
				(int)strcspn(e + 7, "\n"), e + 7);
		free(report);
		close(fd);
		return tallyctl_failed(inv, inv->cmd->name, rc);
	}
	if ((size_t)w != l->len) {
		close(fd);
		fprintf(stderr,
			"%s: %s: the mount took %zd of the %zu bytes of the "
			"command line\n",
			prog, inv->cmd->name, w, l->len);
		return RC_FAILED;
	}
	rc = tallyctl_read_all(fd, &report);
	close(fd);
	if (rc)
		return tallyctl_failed(inv, "reading the report", -rc);
	rc = ctlout_parse_report(report, &kv, &n);
	if (rc) {
		free(report);
		return tallyctl_failed(inv, "reading the report", -rc);
	}
	if (inv->json)
		rc = ctlout_report_json(kv, n);
	else if (n == 0)
		printf("%s: done\n", inv->cmd->name);
	else if (!strcmp(inv->sent, "shard list"))
		ctlout_shard_list(kv, n);
	else
		ctlout_human(kv, n, 0);
	free(kv);
	free(report);
	return rc ? tallyctl_failed(inv, "printing the report", -rc) : RC_OK;
}

/* ------------------------------------------------------------- main */

/* Every argument that starts with "-" (before "--") is an option. */
static int parse_options(struct inv *inv, int argc, char **argv, char **pos,
			 unsigned *npos, bool *help, bool *version)
{
	bool opts_done = false;
	int i;
	size_t k;

	*npos = 0;
	for (i = 1; i < argc; i++) {
		char *a = argv[i], *eq;
		size_t nlen;

		if (opts_done || a[0] != '-' || !a[1]) {
			pos[(*npos)++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			opts_done = true;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			*help = true;
			continue;
		}
		if (!strcmp(a, "--version")) {
			*version = true;
			continue;
		}
		if (!strcmp(a, "--json")) {
			inv->json = true;
			continue;
		}
		if (!strcmp(a, "--no-progress")) {
			inv->no_progress = true;
			continue;
		}
		if (!strncmp(a, "--progress-delay", 16) &&
		    (a[16] == '=' || !a[16])) {
			const char *v = a[16] ? a + 17 : NULL;

			if (!v && i + 1 < argc)
				v = argv[++i];
			if (!v) {
				tallyctl_usage(NULL,
					       "option '%s' needs a value", a);
				return RC_USAGE;
			}
			if (!ctlcmd_decimal(v, &inv->progress_delay) ||
			    inv->progress_delay > 3600) {
				tallyctl_usage(
					NULL,
					"--progress-delay wants a number "
					"of seconds (0 to 3600), not '%s'",
					v);
				return RC_USAGE;
			}
			continue;
		}
		if (a[1] != '-')
			goto unknown;
		eq = strchr(a, '=');
		nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		for (k = 0; k < NOPTS; k++)
			if (strlen(ctlcmd_opts[k].name) == nlen &&
			    !strncmp(ctlcmd_opts[k].name, a + 2, nlen))
				break;
		if (k == NOPTS)
			goto unknown;
		if (ctlcmd_opts[k].has_value) {
			if (eq) {
				inv->opt_val[k] = eq + 1;
			} else if (i + 1 < argc) {
				inv->opt_val[k] = argv[++i];
			} else {
				tallyctl_usage(NULL,
					       "option '%s' needs a value", a);
				return RC_USAGE;
			}
		} else if (eq) {
			tallyctl_usage(NULL, "option '--%s' takes no value",
				       ctlcmd_opts[k].name);
			return RC_USAGE;
		}
		inv->opts |= ctlcmd_opts[k].bit;
	}
	return RC_OK;
unknown:
	tallyctl_usage(NULL, "unknown option '%s'", argv[i]);
	return RC_USAGE;
}

/* MOUNTPOINT must be a tallyfs mount: MOUNTPOINT/.tally/ctl exists. */
static int check_mount(struct inv *inv)
{
	char *ctl = tallyctl_path_join(inv->mnt, ".tally/ctl");
	struct stat st;
	int rc;

	if (!ctl)
		return tallyctl_failed(inv, "checking the mount", ENOMEM);
	rc = stat(ctl, &st) ? errno : 0;
	free(ctl);
	if (rc == ENOENT || rc == ENOTDIR || (!rc && !S_ISREG(st.st_mode))) {
		if (stat(inv->mnt, &st))
			tallyctl_usage(NULL,
				       "cannot use '%s' as MOUNTPOINT: %s",
				       inv->mnt, strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			tallyctl_usage(NULL, "'%s' is not a directory",
				       inv->mnt);
		else
			tallyctl_usage(NULL,
				       "'%s' is not a tallyfs mount (it has no "
				       ".tally/ctl)",
				       inv->mnt);
		return RC_USAGE;
	}
	if (rc)
		return tallyctl_failed(inv, "checking the mount", rc);
	inv->mnt_real = realpath(inv->mnt, NULL);
	if (!inv->mnt_real)
		return tallyctl_failed(inv, "checking the mount", errno);
	return RC_OK;
}

static int run(int argc, char **argv, struct inv *inv)
{
	struct cmdline line = { .len = 0 };
	bool help = false, version = false;
	const struct ctlcmd *c;
	unsigned npos, i;
	char **pos;
	int rc;

	pos = calloc((size_t)argc + 1, sizeof(*pos));
	if (!pos)
		return tallyctl_failed(inv, "starting", ENOMEM);
	rc = parse_options(inv, argc, argv, pos, &npos, &help, &version);
	if (rc)
		goto out;
	if (version) {
		printf("tallyctl %s\n", TALLY_VERSION);
		goto out;
	}
	if (help) {
		/* tallyctl [MOUNTPOINT] [COMMAND [ARGS]] --help */
		struct stat st;
		const char *name = NULL;

		c = npos > 0 ? ctlcmd_find(pos[0]) : NULL;
		if (!c && npos > 1)
			name = pos[1];
		else if (!c && npos == 1 &&
			 (stat(pos[0], &st) || !S_ISDIR(st.st_mode)))
			name = pos[0]; /* not a MOUNTPOINT either */
		if (name) {
			c = ctlcmd_find(name);
			if (!c) {
				tallyctl_usage(NULL,
					       "'%s' is not a tallyctl command",
					       name);
				rc = RC_USAGE;
				goto out;
			}
		}
		if (c)
			ctlcmd_help(stdout, c);
		else
			ctlcmd_usage(stdout); /* nothing, or just MOUNTPOINT */
		goto out;
	}
	if (npos == 0) {
		ctlcmd_usage(stderr);
		rc = RC_USAGE;
		goto out;
	}
	if (npos == 1) {
		c = ctlcmd_find(pos[0]);
		if (c)
			tallyctl_usage(NULL,
				       "missing MOUNTPOINT: tallyctl "
				       "MOUNTPOINT %s",
				       c->name);
		else
			tallyctl_usage(NULL, "missing COMMAND after '%s'",
				       pos[0]);
		rc = RC_USAGE;
		goto out;
	}
	inv->mnt = pos[0];
	inv->cmd = ctlcmd_find(pos[1]);
	if (!inv->cmd) {
		tallyctl_usage(NULL, "'%s' is not a tallyctl command", pos[1]);
		rc = RC_USAGE;
		goto out;
	}
	c = inv->cmd;
	inv->args = pos + 2;
	inv->nargs = npos - 2;
	if (inv->nargs < c->min_args || inv->nargs > c->max_args) {
		tallyctl_usage(inv, "%s; usage: tallyctl MOUNTPOINT %s%s%s",
			       inv->nargs < c->min_args ? "missing arguments"
							: "too many arguments",
			       c->name, c->synopsis[0] ? " " : "", c->synopsis);
		rc = RC_USAGE;
		goto out;
	}
	for (i = 0; i < NOPTS; i++) {
		if ((inv->opts & ctlcmd_opts[i].bit) &&
		    !(c->opts & ctlcmd_opts[i].bit)) {
			tallyctl_usage(inv,
				       "option '--%s' does not apply to %s",
				       ctlcmd_opts[i].name, c->name);
			rc = RC_USAGE;
			goto out;
		}
	}
	rc = check_mount(inv);
	if (rc)
		goto out;
	if (!c->build) {
		rc = strcmp(c->name, "metrics") ? run_status(inv)
						: run_metrics(inv);
		goto out;
	}
	rc = c->build(inv, &line);
	if (!rc)
		rc = run_ctl(inv, &line);
out:
	free(pos);
	return rc;
}

int main(int argc, char **argv)
{
	struct inv inv = { .mnt = NULL, .progress_delay = CTLWATCH_DELAY };
	int rc = run(argc, argv, &inv);

	free(inv.mnt_real);
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "%s: writing the output: %s\n", prog,
			strerror(errno));
		return RC_FAILED;
	}
	return rc;
}
