/* SPDX-License-Identifier: MIT */
/*
 * The control commands of versions (docs/design.md, section 13):
 * snapshot NS NAME, snapshots [NS], rmsnapshot NS NAME, rollback NS NAME
 * [drop-later], diff A B, autosnapshot NS [off | every=S keep=N].
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "core/jobs/ctl.h"
#include "core/jobs/ctl_int.h"
#include "core/fs/tally.h"
#include "core/meta/meta.h"

struct snap_list {
	char *text;
	unsigned n;
};

static int snap_line(void *ctx, const char *ns, const struct meta_snapshot *sn)
{
	struct snap_list *l = ctx;
	time_t at = (time_t)sn->created;
	struct tm tm;
	char when[32];

	if (!gmtime_r(&at, &tm) ||
	    !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
		when[0] = '\0';
	l->n++;
	return ctl_append(&l->text,
			  "snapshot: %s@%s\ncreated: %s\nbytes_exclusive: "
			  "%" PRIu64 "\n",
			  ns, sn->name, when, sn->bytes);
}

/*
 * A path of a diff's line: as is, or, when it holds a control character,
 * a quote or a backslash, in double quotes with C escapes (\n, \t, \",
 * \\, \ooo for the other bytes below 32 and 127), as git does.
 */
static int quoted(char **text, const char *path)
{
	const unsigned char *p;
	bool plain = true;
	int rc;

	for (p = (const unsigned char *)path; *p && plain; p++)
		plain = *p >= 32 && *p != 127 && *p != '"' && *p != '\\';
	if (plain)
		return ctl_append(text, "%s", path);
	rc = ctl_append(text, "\"");
	for (p = (const unsigned char *)path; *p && !rc; p++) {
		if (*p == '\n')
			rc = ctl_append(text, "\\n");
		else if (*p == '\t')
			rc = ctl_append(text, "\\t");
		else if (*p == '"' || *p == '\\')
			rc = ctl_append(text, "\\%c", *p);
		else if (*p < 32 || *p == 127)
			rc = ctl_append(text, "\\%03o", *p);
		else
			rc = ctl_append(text, "%c", *p);
	}
	return rc ? rc : ctl_append(text, "\"");
}

/* diff A B: the counts, then a line per path ("A path", "D path", "M
 * path"), sorted by path. */
static int diff_report(struct tally *t, const struct ctl_cmd *cmd,
		       char **report)
{
	struct tally_change *v;
	size_t n, i, count[3] = { 0 };
	char *lines = NULL;
	int rc = tally_diff(t, cmd->args[0], cmd->args[1], &v, &n);

	for (i = 0; !rc && i < n; i++) {
		count[v[i].status == 'A' ? 0 : v[i].status == 'D' ? 1 : 2]++;
		rc = ctl_append(&lines, "%c ", v[i].status);
		if (!rc)
			rc = quoted(&lines, v[i].path);
		if (!rc)
			rc = ctl_append(&lines, "\n");
	}
	if (!rc)
		rc = ctl_aprintf(report,
				 "command: diff\nfrom: %s\nto: %s\nadded: %zu\n"
				 "removed: %zu\nmodified: %zu\n%s",
				 cmd->args[0], cmd->args[1], count[0], count[1],
				 count[2], lines ? lines : "");
	free(lines);
	tally_changes_free(v, n);
	return rc;
}

int ctl_version(struct tally *t, const struct ctl_cmd *cmd, char **report)
{
	struct timespec t0;
	struct snap_list l = { 0 };
	int64_t ver;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	switch (cmd->verb) {
	case CTL_SNAPSHOT:
	case CTL_RMSNAPSHOT:
	case CTL_ROLLBACK:
		rc = cmd->verb == CTL_SNAPSHOT
			     ? tally_snapshot(t, cmd->args[0], cmd->args[1],
					      &ver)
		     : cmd->verb == CTL_RMSNAPSHOT
			     ? tally_rmsnapshot(t, cmd->args[0], cmd->args[1])
			     : tally_rollback(t, cmd->args[0], cmd->args[1],
					      cmd->later);
		return rc ? rc
			  : ctl_aprintf(report,
					"command: %s\nnamespace: %s\nsnapshot: "
					"%s\nduration_ms: %.1f\n",
					cmd->verb == CTL_SNAPSHOT ? "snapshot"
					: cmd->verb == CTL_RMSNAPSHOT
						? "rmsnapshot"
						: "rollback",
					cmd->args[0], cmd->args[1],
					ctl_ms_since(&t0));
	case CTL_DIFF:
		return diff_report(t, cmd, report);
	case CTL_AUTOSNAPSHOT: {
		int64_t every = cmd->every, keep = cmd->keep;

		rc = every < 0 ? tally_autosnapshot_get(t, cmd->args[0], &every,
							&keep)
			       : tally_autosnapshot_set(t, cmd->args[0], every,
							keep);
		return rc ? rc
			  : ctl_aprintf(report,
					"command: autosnapshot\nnamespace: "
					"%s\nevery: %" PRId64 "\nkeep: %" PRId64
					"\n",
					cmd->args[0], every, keep);
	}
	default:
		rc = tally_snapshots(t, cmd->nargs ? cmd->args[0] : NULL,
				     snap_line, &l);
		if (!rc)
			rc = ctl_aprintf(
				report, "command: snapshots\nsnapshots: %u\n%s",
				l.n, l.text ? l.text : "");
		free(l.text);
		return rc;
	}
}
