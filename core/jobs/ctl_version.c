/* SPDX-License-Identifier: MIT */
/*
 * The control commands of versions (docs/design.md, section 13):
 * snapshot NS NAME, snapshots [NS], rmsnapshot NS NAME, rollback NS NAME
 * [drop-later].
 */
#include <inttypes.h>
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
