/* SPDX-License-Identifier: MIT */
/*
 * The mount: the filesystem model (core/fs/) opened with the layers
 * above it. The model calls upward only through struct tally_upper
 * (core/fs/tally.h); this file fills it in, from the one layer that sees
 * them all (core/README.md).
 */
#include "core/fs/tally.h"

#include "core/cluster/cluster.h"
#include "core/jobs/gc.h"
#include "core/jobs/shard.h"
#include "core/remote/remote.h"
#include "core/util/log.h"
#include "core/util/pool.h"

/* The flusher thread's tick (once a second, the @n-th). */
static void mount_tick(struct tally *t, unsigned n)
{
	if (report_due(t))
		tally_report(t);
	session_tick(t);
	/* shards that went away, or came back */
	if (n % 5 == 0)
		shard_check_all(t);
	if (report_gc_due(t) &&
	    pool_submit(tally_pool(t), POOL_CONTROL, gc_auto, t) != 0)
		log_msg(LOG_WARNING, "cannot start an automatic gc");
	if (tally_autosnap_due(t) && pool_submit(tally_pool(t), POOL_CONTROL,
						 tally_autosnap_run, t) != 0) {
		log_msg(LOG_WARNING, "cannot start the automatic snapshots");
		tally_autosnap_skip(t);
	}
}

static const struct tally_upper mount_upper = {
	.session_start = session_start,
	.session_end = session_end,
	.session_renew = session_renew,
	.setup = shard_setup,
	.tick = mount_tick,
	.unwatch = tally_unwatch,
	.remote_new = remote_new,
	.remote_free = remote_free,
	.remote_kick = remote_kick,
	.remote_ship = remote_ship,
	.remote_fetch = remote_fetch,
	.remote_read = remote_read,
	.remote_vet = remote_vet,
	.remote_touch = remote_touch,
	.remote_prefetch = remote_prefetch,
};

int tally_open(const char *path, const struct tally_opts *opts,
	       struct tally **out)
{
	return tally_open_with(path, opts, &mount_upper, out);
}
