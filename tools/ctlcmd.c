/* SPDX-License-Identifier: MIT */
/*
 * ctlcmd: the commands of tallyctl (see ctlcmd.h): the table of commands
 * with their help, and the builders that check a command's arguments and
 * options and write the line for .tally/ctl, word by word (a word is never
 * empty and carries no blank or control character; the line never exceeds
 * CMDLINE_MAX). Arguments are forwarded unchanged, but for paths, sent
 * relative to the mount (ctlpath.c).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/ctlcmd.h"
#include "tools/ctlpath.h"
#include "tools/tallyctl.h"

const struct ctlcmd_opt ctlcmd_opts[NOPTS] = {
	{ "timeout", OPT_TIMEOUT, true },
	{ "dry-run", OPT_DRY_RUN, false },
	{ "grace", OPT_GRACE, true },
	{ "sample", OPT_SAMPLE, true },
	{ "batches", OPT_BATCHES, true },
	{ "drop-later", OPT_DROP_LATER, false },
};

/* A word of a command line: not empty, no blank, no control character. */
static int add_word(struct inv *inv, struct cmdline *l, const char *word)
{
	size_t len = strlen(word), i;

	if (!len) {
		tallyctl_usage(inv, "an empty argument cannot be sent");
		return RC_USAGE;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)word[i];

		if (c <= ' ' || c == 0x7f) {
			tallyctl_usage(inv,
				       "'%s' contains a blank or a control "
				       "character, which a command line of "
				       ".tally/ctl cannot carry",
				       word);
			return RC_USAGE;
		}
	}
	if (l->len + (l->len ? 1 : 0) + len > CMDLINE_MAX) {
		tallyctl_usage(inv,
			       "the command line would be longer than %d "
			       "bytes",
			       CMDLINE_MAX);
		return RC_USAGE;
	}
	if (l->len)
		l->buf[l->len++] = ' ';
	memcpy(l->buf + l->len, word, len);
	l->len += len;
	l->buf[l->len] = '\0';
	return RC_OK;
}

static int add_pair(struct inv *inv, struct cmdline *l, const char *name,
		    const char *val)
{
	char word[CMDLINE_MAX + 1];

	if ((size_t)snprintf(word, sizeof(word), "%s=%s", name, val) >=
	    sizeof(word)) {
		tallyctl_usage(inv, "'%s' is too long", val);
		return RC_USAGE;
	}
	return add_word(inv, l, word);
}

/* The value given to the option @bit, or NULL. */
static const char *opt_value(const struct inv *inv, unsigned bit)
{
	size_t k;

	for (k = 0; k < NOPTS; k++)
		if (ctlcmd_opts[k].bit == bit)
			return inv->opt_val[k];
	return NULL;
}

/* Digits with at most one decimal point: a number of seconds or percent. */
bool ctlcmd_decimal(const char *s, double *out)
{
	bool digit = false, dot = false;
	const char *p;

	for (p = s; *p; p++) {
		if (isdigit((unsigned char)*p))
			digit = true;
		else if (*p == '.' && !dot)
			dot = true;
		else
			return false;
	}
	if (!digit)
		return false;
	*out = strtod(s, NULL);
	return true;
}

/* drain's timeout: seconds above zero (fractions allowed), up to a year. */
static int check_timeout(struct inv *inv, const char *s)
{
	double v;

	if (!ctlcmd_decimal(s, &v) || v <= 0 || v > 31536000) {
		tallyctl_usage(inv,
			       "--timeout wants a number of seconds above zero "
			       "(up to a year), not '%s'",
			       s);
		return RC_USAGE;
	}
	return RC_OK;
}

/* gc's grace period: whole seconds, zero included, up to 100 years. */
static int check_grace(struct inv *inv, const char *s)
{
	size_t len = strlen(s);

	if (!len || len > 10 || strspn(s, "0123456789") != len ||
	    strtoull(s, NULL, 10) > 100ULL * 365 * 86400) {
		tallyctl_usage(inv,
			       "--grace wants a whole number of seconds (0 or "
			       "more, up to 100 years), not '%s'",
			       s);
		return RC_USAGE;
	}
	return RC_OK;
}

/* The command's name and its arguments, unchanged. */
static int build_plain(struct inv *inv, struct cmdline *l)
{
	unsigned i;
	int rc = add_word(inv, l, inv->cmd->name);

	for (i = 0; !rc && i < inv->nargs; i++)
		rc = add_word(inv, l, inv->args[i]);
	return rc;
}

/* The command's name, and "remote" when it was given (drain, verify). */
static int add_name_remote(struct inv *inv, struct cmdline *l)
{
	int rc = add_word(inv, l, inv->cmd->name);

	if (!rc && inv->nargs == 1) {
		if (strcmp(inv->args[0], "remote")) {
			tallyctl_usage(inv,
				       "%s takes 'remote' or nothing, not '%s'",
				       inv->cmd->name, inv->args[0]);
			return RC_USAGE;
		}
		rc = add_word(inv, l, "remote");
	}
	return rc;
}

static int build_drain(struct inv *inv, struct cmdline *l)
{
	const char *t = opt_value(inv, OPT_TIMEOUT);
	int rc = add_name_remote(inv, l);

	if (!rc && t) {
		rc = check_timeout(inv, t);
		if (!rc)
			rc = add_word(inv, l, t);
	}
	return rc;
}

static int build_gc(struct inv *inv, struct cmdline *l)
{
	const char *grace = opt_value(inv, OPT_GRACE);
	int rc = add_word(inv, l, "gc");

	if (!rc && (inv->opts & OPT_DRY_RUN))
		rc = add_word(inv, l, "dry-run");
	if (!rc && grace) {
		rc = check_grace(inv, grace);
		if (!rc)
			rc = add_pair(inv, l, "grace", grace);
	}
	return rc;
}

static int build_rollback(struct inv *inv, struct cmdline *l)
{
	int rc = build_plain(inv, l);

	if (!rc && (inv->opts & OPT_DROP_LATER))
		rc = add_word(inv, l, "drop-later");
	return rc;
}

/* sweep [--batches=N]: N whole, 0 (verdicts only) up to INT_MAX. */
static int build_sweep(struct inv *inv, struct cmdline *l)
{
	const char *b = opt_value(inv, OPT_BATCHES);
	size_t len;
	int rc = add_word(inv, l, "sweep");

	if (rc || !b)
		return rc;
	len = strlen(b);
	if (!len || len > 10 || strspn(b, "0123456789") != len ||
	    strtoull(b, NULL, 10) > 2147483647ULL) {
		tallyctl_usage(
			inv,
			"--batches wants a whole number of batches (0 or "
			"more, up to 2147483647), not '%s'",
			b);
		return RC_USAGE;
	}
	return add_pair(inv, l, "batches", b);
}

static int build_verify(struct inv *inv, struct cmdline *l)
{
	const char *sample = opt_value(inv, OPT_SAMPLE);
	char num[32];
	size_t len;
	double v;
	int rc = add_name_remote(inv, l);

	if (rc || !sample)
		return rc;
	len = strlen(sample);
	if (len && sample[len - 1] == '%')
		len--;
	if (len > 20)
		len = 0; /* not a percentage either */
	memcpy(num, sample, len);
	num[len] = '\0';
	if (!ctlcmd_decimal(num, &v) || v <= 0 || v > 100) {
		tallyctl_usage(inv,
			       "--sample wants a percentage above 0 and up to "
			       "100 (like 5%%), not '%s'",
			       sample);
		return RC_USAGE;
	}
	num[len] = '%';
	num[len + 1] = '\0';
	return add_pair(inv, l, "sample", num);
}

/* pin PATH, unpin PATH: PATH relative to the mount. */
static int build_pin(struct inv *inv, struct cmdline *l)
{
	char *rel;
	int rc = ctlpath_relative(inv, inv->args[0], &rel);

	if (rc)
		return rc;
	rc = add_word(inv, l, inv->cmd->name);
	if (!rc)
		rc = add_word(inv, l, rel);
	free(rel);
	return rc;
}

/* 32 lowercase hex digits, maybe -N (a collision), maybe @SHARD. */
static bool is_hash(const char *s, size_t *len)
{
	size_t i = 0;

	while (i < 32 &&
	       (isdigit((unsigned char)s[i]) || (s[i] >= 'a' && s[i] <= 'f')))
		i++;
	if (i != 32)
		return false;
	if (s[i] == '-' && isdigit((unsigned char)s[i + 1]))
		for (i++; isdigit((unsigned char)s[i]); i++)
			;
	*len = i;
	if (s[i] == '@' && s[i + 1]) {
		const char *p = s + i + 1;

		while (isdigit((unsigned char)*p))
			p++;
		return *p == '\0';
	}
	return s[i] == '\0';
}

/*
 * explain HASH (the object's name, @SHARD dropped) or explain PATH (a
 * path relative to the mount, so a file's always has a slash).
 */
static int build_explain(struct inv *inv, struct cmdline *l)
{
	const char *arg = inv->args[0];
	char hash[64], *rel;
	struct stat st;
	size_t len;
	int rc = add_word(inv, l, "explain");

	if (rc)
		return rc;
	if (is_hash(arg, &len) && len < sizeof(hash) && lstat(arg, &st) != 0) {
		memcpy(hash, arg, len);
		hash[len] = '\0';
		return add_word(inv, l, hash);
	}
	rc = ctlpath_relative(inv, arg, &rel);
	if (rc)
		return rc;
	rc = add_word(inv, l, rel);
	free(rel);
	return rc;
}

/* du [NAMESPACE]: a name, or a path of a namespace's directory. */
static int build_du(struct inv *inv, struct cmdline *l)
{
	char *rel = NULL;
	const char *ns;
	int rc = add_word(inv, l, "du");

	if (rc || inv->nargs == 0)
		return rc;
	ns = inv->args[0];
	if (strchr(ns, '/')) {
		rc = ctlpath_relative(inv, ns, &rel);
		if (rc)
			return rc;
		if (strchr(rel, '/')) {
			tallyctl_usage(inv,
				       "'%s' is not a namespace (a directory "
				       "at the top of the mount)",
				       ns);
			free(rel);
			return RC_USAGE;
		}
		ns = rel;
	} else if (!strcmp(ns, ".") || !strcmp(ns, "..") ||
		   !strcmp(ns, ".tally")) {
		tallyctl_usage(inv, "'%s' is not a namespace", ns);
		return RC_USAGE;
	}
	rc = add_word(inv, l, ns);
	free(rel);
	return rc;
}

/* Whether absolute path @path is the mount or inside it: a usage error
 * saying that @what cannot live there (and 1), or 0. */
static int inside_mount(struct inv *inv, const char *path, const char *what)
{
	size_t mlen = strlen(inv->mnt_real);

	if (strncmp(path, inv->mnt_real, mlen) ||
	    (path[mlen] != '\0' && path[mlen] != '/'))
		return 0;
	tallyctl_usage(inv, "%s cannot live inside the mount (%s)", what, path);
	return 1;
}

/* shard add DIR | shard drain ID | shard activate ID | shard list */
static int build_shard(struct inv *inv, struct cmdline *l)
{
	const char *sub = inv->args[0];
	char *dir;
	int rc;

	if (!strcmp(sub, "list")) {
		if (inv->nargs != 1) {
			tallyctl_usage(inv, "'shard list' takes no argument");
			return RC_USAGE;
		}
		return build_plain(inv, l);
	}
	if (strcmp(sub, "add") && strcmp(sub, "drain") &&
	    strcmp(sub, "activate")) {
		tallyctl_usage(inv, "'%s' is not add, drain, activate or list",
			       sub);
		return RC_USAGE;
	}
	if (inv->nargs != 2) {
		tallyctl_usage(inv, "'shard %s' takes one argument (%s)", sub,
			       strcmp(sub, "add") ? "the shard's ID" : "a DIR");
		return RC_USAGE;
	}
	if (strcmp(sub, "add")) {
		if (!inv->args[1][0] || strspn(inv->args[1], "0123456789") !=
						strlen(inv->args[1])) {
			tallyctl_usage(inv, "a shard ID is a number, not '%s'",
				       inv->args[1]);
			return RC_USAGE;
		}
		return build_plain(inv, l);
	}
	/* the daemon's working directory is not ours: send it absolute */
	dir = realpath(inv->args[1], NULL);
	if (!dir)
		dir = ctlpath_normalize(inv->args[1]);
	if (!dir)
		return tallyctl_failed(inv, "resolving a path", ENOMEM);
	if (inside_mount(inv, dir, "a shard")) {
		free(dir);
		return RC_USAGE;
	}
	rc = add_word(inv, l, "shard");
	if (!rc)
		rc = add_word(inv, l, "add");
	if (!rc)
		rc = add_word(inv, l, dir);
	free(dir);
	return rc;
}

/* rekey KEYFILE: sent absolute (the daemon's working directory is not
 * ours); a key file inside the mount is refused (the daemon would read it
 * through itself, and the key would live in the store it opens) */
static int build_rekey(struct inv *inv, struct cmdline *l)
{
	char *path = realpath(inv->args[0], NULL);
	int rc;

	if (!path) {
		tallyctl_usage(inv, "key file '%s': %s", inv->args[0],
			       strerror(errno));
		return RC_USAGE;
	}
	if (inside_mount(inv, path, "a key file")) {
		free(path);
		return RC_USAGE;
	}
	rc = add_word(inv, l, "rekey");
	if (!rc)
		rc = add_word(inv, l, path);
	free(path);
	return rc;
}

static const struct ctlcmd cmds[] = {
	{ "status", "", "counts, bytes, dedup ratio and the flush pipeline",
	  "Show the mount's counters, read from MOUNTPOINT/.tally/status:\n"
	  "namespaces, inodes, objects, logical / referenced / stored bytes,\n"
	  "the dedup ratio (referenced / stored) and the state of the flush\n"
	  "pipeline. Sizes are shown in B, KiB, MiB, GiB; --json prints the\n"
	  "status document (one JSON object) as is. The counts are the\n"
	  "committed ones: run `drain` first to include files just closed.\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t status\n"
	  "  tallyctl --json /mnt/t status | python3 -m json.tool\n",
	  0, 0, 0, NULL },
	{ "metrics", "", "the counters and latencies, for Prometheus",
	  "Print MOUNTPOINT/.tally/metrics as is: the mount's counters,\n"
	  "gauges and latency histograms (FUSE requests by op, flushes,\n"
	  "dedup, GC, shards, the remote tier) in the Prometheus text\n"
	  "format, as -o metrics=ADDR:PORT serves them to a scraper\n"
	  "(docs/metrics.md names every metric). --json changes nothing.\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t metrics | grep '^tallyfs_write_bytes_total'\n",
	  0, 0, 0, NULL },
	{ "drain", "[remote] [--timeout=S]", "commit everything buffered",
	  "Flush every file's buffered data and wait until no flush is\n"
	  "pending, so that what was written is committed to the store.\n"
	  "With 'remote' (a mount with -o remote=...), then wait until the\n"
	  "bucket holds every committed object, and upload a snapshot of\n"
	  "the metadata (progress shown while it waits).\n"
	  "\n"
	  "Options:\n"
	  "  --timeout=S  give up after S seconds: exit 1 with ETIMEDOUT (the\n"
	  "               flushes go on in the background)\n"
	  "\n"
	  "Report: flushed (flushes waited for), pending_flushes,\n"
	  "uncommitted_files, uncommitted_blocks (failed, still buffered),\n"
	  "durable_seq, flush_errors, duration_ms. Exit 1 with the flushes'\n"
	  "error (ENOSPC, EIO...) if data buffered before is not committed.\n"
	  "Report of drain remote: snapshot (its key), flushed, durable_seq,\n"
	  "durable_remote_seq, queued, uploaded, failed, last_error,\n"
	  "duration_ms.\n"
	  "Sends: drain [remote] [S]\n"
	  "\n"
	  "Examples:\n"
	  "  tallyctl /mnt/t drain --timeout=30\n"
	  "  tallyctl /mnt/t drain remote\n",
	  0, 1, OPT_TIMEOUT, build_drain },
	{ "branch", "SRC DST", "copy-on-write clone of namespace SRC as DST",
	  "Create namespace DST as a copy-on-write clone of namespace SRC:\n"
	  "the metadata is copied in one transaction and every object's count\n"
	  "raised; no data is copied. Fails with ENOENT when SRC does not\n"
	  "exist and EEXIST when DST does.\n"
	  "\n"
	  "Report: source, branch, inodes (copied), duration_ms.\n"
	  "Sends: branch SRC DST\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t branch main dev\n",
	  2, 2, 0, build_plain },
	{ "snapshot", "NAMESPACE NAME",
	  "read-only version of a namespace, in O(1)",
	  "Freeze what NAMESPACE holds now as its snapshot NAME, in time that\n"
	  "does not grow with the namespace: the namespace goes on in a new\n"
	  "version, and only what it changes from then on takes new rows.\n"
	  "Buffered data is committed first. NAME is a file name without '@'\n"
	  "(NAMESPACE@NAME names the snapshot), not starting with 'auto-'.\n"
	  "Fails with ENOENT (no NAMESPACE), EEXIST (NAME is taken), EINVAL\n"
	  "(a bad name), EOPNOTSUPP (a store of several hosts: not yet).\n"
	  "A namespace with snapshots is not removed (EBUSY) until they are\n"
	  "gone; a branch of it copies what it shows now.\n"
	  "\n"
	  "Report: namespace, snapshot, duration_ms.\n"
	  "Sends: snapshot NAMESPACE NAME\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t snapshot main before-upgrade\n",
	  2, 2, 0, build_plain },
	{ "snapshots", "[NAMESPACE]", "the snapshots, oldest first",
	  "List the snapshots of every namespace (or of NAMESPACE), oldest\n"
	  "first: each as NAMESPACE@NAME with the time it was taken (UTC) and\n"
	  "the bytes of the objects only it holds (what removing it frees).\n"
	  "\n"
	  "Report: snapshots (how many), then snapshot, created and\n"
	  "bytes_exclusive for each.\n"
	  "Sends: snapshots [NAMESPACE]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t snapshots main\n",
	  0, 1, 0, build_plain },
	{ "rmsnapshot", "NAMESPACE NAME", "remove a snapshot",
	  "Remove snapshot NAME of NAMESPACE: its version is merged with the\n"
	  "one after it, in time that grows with what changed since, not\n"
	  "with the namespace. Objects only it held lose their last\n"
	  "reference and go at the next GC cycle. Fails with ENOENT (no such\n"
	  "namespace or snapshot).\n"
	  "\n"
	  "Report: namespace, snapshot, duration_ms.\n"
	  "Sends: rmsnapshot NAMESPACE NAME\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t rmsnapshot main before-upgrade\n",
	  2, 2, 0, build_plain },
	{ "rollback", "[--drop-later] NAMESPACE NAME",
	  "make a namespace its snapshot again",
	  "Make NAMESPACE hold what its snapshot NAME holds, in time that\n"
	  "grows with what was written since, not with the namespace. What\n"
	  "was written since is dropped: objects only it held lose their last\n"
	  "reference and go at the next GC cycle. The snapshot stays. The\n"
	  "kernel's caches of what went are dropped. Durable when it returns.\n"
	  "Fails with ENOENT (no such namespace or snapshot), EEXIST (later\n"
	  "snapshots of NAMESPACE exist: remove them, or give --drop-later),\n"
	  "EBUSY (a file of NAMESPACE is open), EOPNOTSUPP (a store of\n"
	  "several hosts: not yet).\n"
	  "\n"
	  "Options:\n"
	  "  --drop-later  drop the snapshots taken after NAME too\n"
	  "\n"
	  "Report: namespace, snapshot, duration_ms.\n"
	  "Sends: rollback NAMESPACE NAME [drop-later]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t rollback main before-upgrade\n",
	  2, 2, OPT_DROP_LATER, build_rollback },
	{ "diff", "A B", "what changed between two versions of a namespace",
	  "List every path that differs between A and B, each a namespace\n"
	  "(what it holds now) or one of its snapshots (NAMESPACE@NAME), in\n"
	  "time that grows with what changed between them, not with the\n"
	  "namespace: one line per path, relative to the namespace's root,\n"
	  "sorted, as git diff --name-status does:\n"
	  "  A path   in B only (a directory added lists what it holds)\n"
	  "  D path   in A only\n"
	  "  M path   in both, changed: contents, size, mode, owner, mtime,\n"
	  "           xattrs, or another file under the name (a directory\n"
	  "           whose entries changed has a new mtime)\n"
	  "A path with a control character, a quote or a backslash is\n"
	  "written in double quotes with C escapes. A and B must be versions\n"
	  "of one namespace (EXDEV: a branch is a copy, with no version in\n"
	  "common); ENOENT for no such namespace or snapshot.\n"
	  "\n"
	  "Report: from, to, added, removed, modified, then the lines.\n"
	  "Sends: diff A B\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t diff main@before-upgrade main\n",
	  2, 2, 0, build_plain },
	{ "autosnapshot", "NAMESPACE [off | every=DURATION keep=N]",
	  "automatic snapshots of a namespace",
	  "With every= and keep=, NAMESPACE gets a snapshot named\n"
	  "auto-YYYYMMDD-HHMMSS (UTC) every DURATION (whole seconds, or with a\n"
	  "unit: 90s, 15m, 1h, 1d), and its automatic snapshots beyond the\n"
	  "newest N are removed, oldest first; a user's snapshots are never\n"
	  "counted nor removed. The setting is kept in the store (a remount\n"
	  "keeps it); the first snapshot is taken within a second if none of\n"
	  "the namespace's automatic ones is DURATION old or newer. With off,\n"
	  "no more are taken (those taken stay); with neither, the setting is\n"
	  "shown (every 0: none). These are versions of the namespace, apart\n"
	  "from the bucket's metadata snapshots (-o snapshot_interval).\n"
	  "Fails with ENOENT (no NAMESPACE), EINVAL (a bad DURATION or N),\n"
	  "EOPNOTSUPP (a store of several hosts: not yet).\n"
	  "\n"
	  "Report: namespace, every (seconds; 0: none), keep.\n"
	  "Sends: autosnapshot NAMESPACE [off | every=DURATION keep=N]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t autosnapshot main every=1h keep=24\n",
	  1, 3, 0, build_plain },
	{ "gc", "[--dry-run] [--grace=S]",
	  "collect object files that nothing references",
	  "Run a GC cycle: list the object files, mark those that no file\n"
	  "references (an earlier mark is kept; marks survive a remount) and\n"
	  "delete those marked for longer than the grace period, re-checking\n"
	  "each one right before. It also reports drift between the stored\n"
	  "counts and the references (repair fixes it). The last cycles are\n"
	  "shown by status (last_gc, gc_log).\n"
	  "\n"
	  "Options:\n"
	  "  --dry-run   report what would be collected, delete nothing\n"
	  "  --grace=S   the grace period in whole seconds (default 300; 0\n"
	  "              collects every unreferenced object now)\n"
	  "\n"
	  "Report: dry_run, checked, live, unreferenced, collected,\n"
	  "bytes_freed, preserved (still in their grace period), drift,\n"
	  "drift_under, drift_over, grace, longest_hold_ms, duration_ms, ...\n"
	  "Sends: gc [dry-run] [grace=S]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t gc --dry-run --grace=0\n",
	  0, 0, OPT_DRY_RUN | OPT_GRACE, build_gc },
	{ "sweep", "[--batches=N]",
	  "repoint references to moved objects, purge ghosts",
	  "The anti-entropy sweep: for every ghost stub left where an object\n"
	  "moved between shards, repoint the references that still name the\n"
	  "old shard (in batches of inodes), and purge the ghost once nothing\n"
	  "needs it. status shows the ghosts left and the last sweep.\n"
	  "\n"
	  "Options:\n"
	  "  --batches=N  repoint at most N batches of references, then give\n"
	  "               the verdicts (0: verdicts only, nothing repointed);\n"
	  "               spreads a long sweep over several quieter runs\n"
	  "\n"
	  "Report: checked (ghosts), purged, kept (still referenced),\n"
	  "inconclusive (a shard could not be read), references_repointed,\n"
	  "duration_ms.\n"
	  "Sends: sweep [batches=N]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t sweep --batches=10\n",
	  0, 0, OPT_BATCHES, build_sweep },
	{ "pin", "PATH", "keep the objects of PATH alive",
	  "Pin the objects of PATH (a file or directory inside the mount):\n"
	  "the garbage collector keeps them even once no file references\n"
	  "them any more. PATH is relative to the current directory, like\n"
	  "any path; it is sent relative to the mount. A path outside the\n"
	  "mount is a usage error (exit 2).\n"
	  "\n"
	  "Sends: pin NAMESPACE/PATH\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t pin /mnt/t/main/photos\n",
	  1, 1, 0, build_pin },
	{ "unpin", "PATH", "drop a pin",
	  "Remove the pin that `pin PATH` set; the objects are then collected\n"
	  "as usual once nothing else references them. PATH as for pin.\n"
	  "\n"
	  "Sends: unpin NAMESPACE/PATH\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t unpin /mnt/t/main/photos\n",
	  1, 1, 0, build_pin },
	{ "shard", "add DIR | drain ID | activate ID | list",
	  "manage the object shards",
	  "  shard add DIR    add DIR (a directory outside the mount, sent as\n"
	  "                   an absolute path) as a new shard of the store\n"
	  "  shard drain ID   no new objects in shard ID, and a rebalance that\n"
	  "                   moves every object off it (its progress shows\n"
	  "                   as the rebalance job's); the state persists;\n"
	  "                   EBUSY for the last active shard\n"
	  "  shard activate ID  new objects may go to shard ID again\n"
	  "  shard list       list the shards: ID, state, objects, bytes, free\n"
	  "                   space, directory\n"
	  "\n"
	  "Report of drain: shard, state, then as rebalance (moved, bytes,\n"
	  "failed, recovered, ghosts, mb_per_s, objects_per_s, duration_ms).\n"
	  "Sends: shard add /ABS/DIR | shard drain ID | shard activate ID |\n"
	  "shard list\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t shard add /srv/disk2/tally\n"
	  "  tallyctl /mnt/t shard list\n",
	  1, 2, 0, build_shard },
	{ "rekey", "KEYFILE", "open an encrypted store with another key file",
	  "From now on key file KEYFILE (32 bytes or more, no group or other\n"
	  "permission) opens the store, and its old key file no more: in\n"
	  "mounts, restores and tallyfsck. A store bound with -o key_file\n"
	  "seals its bodies with keys of its own, kept wrapped by the key\n"
	  "file's: a rekey wraps them for KEYFILE and drops the old wrap (in\n"
	  "the store's record, then in the bucket's marker). No body is\n"
	  "sealed again: it takes milliseconds whatever the size of the\n"
	  "store. Cut short (kill -9), both keys open the store until the\n"
	  "next mount ends the rekey. Keep the old key until then. A new\n"
	  "key file: (umask 077; head -c 32 /dev/urandom > /root/new.key)\n"
	  "\n"
	  "Report: key_id, previous_key_id, changed (no: KEYFILE holds the\n"
	  "key in force already), duration_ms.\n"
	  "Sends: rekey /ABS/KEYFILE\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t rekey /root/new.key\n",
	  1, 1, 0, build_rekey },
	{ "rebalance", "", "spread the objects evenly over the shards",
	  "Move objects between shards until each holds its share of the\n"
	  "bytes. A moved object leaves a ghost behind; sweep settles them.\n"
	  "\n"
	  "Report: moved, bytes, failed, recovered (interrupted moves\n"
	  "settled), ghosts, mb_per_s, objects_per_s, duration_ms.\n"
	  "Sends: rebalance\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t rebalance\n",
	  0, 0, 0, build_plain },
	{ "verify", "[remote] [--sample=N%]",
	  "rehash objects, report corrupt or missing",
	  "Read and rehash every object (or a random sample of them) and\n"
	  "report the objects that are corrupt (contents do not match the\n"
	  "name) or missing. With 'remote', the bucket's copies (fetched).\n"
	  "\n"
	  "Options:\n"
	  "  --sample=N%  check only N percent of the objects (0 < N <= 100)\n"
	  "\n"
	  "Sends: verify [remote] [sample=N%]\n"
	  "\n"
	  "Examples:\n"
	  "  tallyctl /mnt/t verify --sample=5%\n"
	  "  tallyctl /mnt/t verify remote\n",
	  0, 1, OPT_SAMPLE, build_verify },
	{ "repair", "", "rebuild the reference counts",
	  "Rebuild every object's stored reference count from the block\n"
	  "references, online (what `tallyfsck --repair` does to an unmounted\n"
	  "store). gc reports the drift that this fixes.\n"
	  "\n"
	  "Report: repaired (counts changed), duration_ms.\n"
	  "Sends: repair\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t repair\n",
	  0, 0, 0, build_plain },
	{ "explain", "PATH|HASH", "why an object is alive, what a file holds",
	  "explain PATH lists the objects of a file with their shard, size\n"
	  "and count, and every holder of each: the namespaces and paths that\n"
	  "reference it, pins, ghosts. explain HASH says why that object is\n"
	  "still alive, or that it is unreferenced and when GC collects it.\n"
	  "HASH is 32 hex digits (maybe -N, maybe @SHARD as shown by\n"
	  "user.tally.objects); anything else is a PATH, sent relative to the\n"
	  "mount (a file's path always has a slash there).\n"
	  "\n"
	  "Sends: explain NAMESPACE/PATH | explain HASH\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t explain /mnt/t/main/big.iso\n",
	  1, 1, 0, build_explain },
	{ "du", "[NAMESPACE|NS@NAME]", "bytes per namespace: shared, exclusive",
	  "For each namespace (or only NAMESPACE: a name, or the path of its\n"
	  "directory): logical bytes, stored bytes, bytes shared with other\n"
	  "namespaces and bytes exclusive to it, which is what deleting the\n"
	  "namespace would free. NS@NAME: snapshot NAME of NS, its files and\n"
	  "objects, and the bytes only it holds (what rmsnapshot frees).\n"
	  "\n"
	  "Sends: du [NAMESPACE]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t du main\n",
	  0, 1, 0, build_du },
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

const struct ctlcmd *ctlcmd_find(const char *name)
{
	size_t i;

	for (i = 0; i < NCMDS; i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

void ctlcmd_usage(FILE *f)
{
	char left[64];
	size_t i;

	fprintf(f,
		"usage: tallyctl [--json] MOUNTPOINT COMMAND [ARGS]\n"
		"       tallyctl [COMMAND] --help\n"
		"       tallyctl --version\n"
		"\n"
		"Control a mounted tallyfs through MOUNTPOINT/.tally: each\n"
		"command is one line written to .tally/ctl, which returns when\n"
		"the mount has done it; its report is printed then.\n"
		"\n"
		"Commands:\n");
	for (i = 0; i < NCMDS; i++) {
		snprintf(left, sizeof(left), "%s%s%s", cmds[i].name,
			 cmds[i].synopsis[0] ? " " : "", cmds[i].synopsis);
		fprintf(f, "  %-34s %s\n", left, cmds[i].summary);
	}
	fprintf(f,
		"\n"
		"Options (anywhere on the line):\n"
		"  --json      one JSON object on stdout, for scripts\n"
		"  --no-progress\n"
		"              no progress of long commands (gc, verify,\n"
		"              drain, branch, sweep, rebalance, shard drain)\n"
		"              on stderr\n"
		"  --progress-delay=S\n"
		"              show progress once a command has run S seconds\n"
		"              (default 0.5; 0: at once, and always a final\n"
		"              line)\n"
		"  -h, --help  this text; `tallyctl COMMAND --help` for one "
		"command\n"
		"  --version   print the version\n"
		"\n"
		"A mount that does not know a command answers EINVAL (exit 1).\n"
		"Exit status: 0 ok, 1 the command failed, 2 usage error (also:\n"
		"MOUNTPOINT is not a tallyfs mount).\n"
		"\n"
		"Example:\n"
		"  tallyctl /mnt/t branch main dev\n");
}

void ctlcmd_help(FILE *f, const struct ctlcmd *c)
{
	fprintf(f, "usage: tallyctl [--json] MOUNTPOINT %s%s%s\n\n%s", c->name,
		c->synopsis[0] ? " " : "", c->synopsis, c->help);
}
