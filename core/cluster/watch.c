/* SPDX-License-Identifier: MIT */
/*
 * Push invalidation across the nodes of a shared store: a thread of its
 * own listens, on a connection of its own (meta_listen_*()), for the
 * changes other nodes commit to names and inodes, and has the front end
 * drop what the kernel caches of them (tally_watch(): FUSE's
 * notify_inval_entry and notify_inval_inode), so that a change converges
 * well before the kernel timeouts. A change of this node is skipped (its
 * kernel saw it happen). A lost connection is opened again after a
 * second; what changed meanwhile converges by the timeouts alone.
 *
 * Locking: w->lock guards nothing but the thread's start and stop; the
 * node id is read atomically; no lock is held while the hooks run.
 */
#include "core/cluster/cluster.h"
#include "core/fs/tally_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/log.h"
#include "core/meta/meta.h"

struct watch {
	struct tally *t;
	struct tally_inval hooks;
	pthread_t thread;
	atomic_bool stop;
	_Atomic uint64_t seen; /* changes handed to the hooks */
};

/* One change: "e NODE PARENT HEXNAME", "i NODE INO", or "w NODE DIR"
 * (another node's entry went into DIR, which this node knew whole). */
static void deliver(void *ctx, const char *payload)
{
	struct watch *w = ctx;
	char kind, name[TALLY_NAME_MAX + 1];
	long long node;
	unsigned long long a;
	const char *hex;
	size_t n;
	int used = 0;

	if (sscanf(payload, "%c %lld %llu %n", &kind, &node, &a, &used) < 3)
		return;
	if (node == (long long)w->t->node_id)
		return; /* this node's own change */
	if (kind == 'i') {
		if (w->hooks.inode)
			w->hooks.inode(w->hooks.arg, a);
		atomic_fetch_add(&w->seen, 1);
		return;
	}
	if (kind == 'w') {
		/* no kernel caches the new name's absence: nothing for
		 * the hooks (core/fs/dirnames.c) */
		dirnames_changed(w->t, a);
		atomic_fetch_add(&w->seen, 1);
		return;
	}
	if (kind != 'e' || !used)
		return;
	/* every hint made before it is void (dcache_hint()), and the
	 * directory is no longer known whole (core/fs/dirnames.c) */
	atomic_fetch_add(&w->t->entry_gen, 1);
	dirnames_changed(w->t, a);
	if (!w->hooks.entry)
		return;
	hex = payload + used;
	n = strlen(hex) / 2;
	if (n == 0 || n > TALLY_NAME_MAX)
		return;
	if (hex_decode(hex, n, (unsigned char *)name))
		return;
	name[n] = '\0';
	w->hooks.entry(w->hooks.arg, a, name);
	atomic_fetch_add(&w->seen, 1);
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	struct meta_listen *l = NULL;

	while (!atomic_load(&w->stop)) {
		struct pollfd p;

		if (!l && meta_listen_open(w->t->meta, &l)) {
			struct timespec ts = { 1, 0 };

			l = NULL;
			nanosleep(&ts, NULL);
			continue;
		}
		atomic_store(&w->t->listening, true);
		p.fd = meta_listen_fd(l);
		p.events = POLLIN;
		p.revents = 0;
		/* the stop is seen within half a second */
		if (poll(&p, 1, 500) < 0 && errno != EINTR)
			p.revents = POLLERR;
		if ((p.revents && meta_listen_take(l, deliver, w)) ||
		    meta_listen_probe(l, tally_mono_ms())) {
			log_msg(LOG_WARNING, "watch: the listening connection "
					     "was lost; opening another");
			meta_listen_close(l);
			l = NULL;
			/* changes meanwhile go unseen: no hint stands, no
			 * directory is known whole */
			atomic_store(&w->t->listening, false);
			dirnames_forget_all(w->t);
			atomic_fetch_add(&w->t->entry_gen, 1);
		}
	}
	atomic_store(&w->t->listening, false);
	dirnames_forget_all(w->t);
	meta_listen_close(l);
	return NULL;
}

int tally_watch(struct tally *t, const struct tally_inval *hooks)
{
	struct watch *w;

	tally_lock(t);
	t->inval = *hooks; /* a rollback's, on every store */
	tally_unlock(t);
	if (!meta_shared(t->meta))
		return 0; /* one node: nothing changes behind its back */
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->t = t;
	w->hooks = *hooks;
	if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
		free(w);
		return -EAGAIN;
	}
	t->watch = w;
	return 0;
}

void tally_unwatch(struct tally *t)
{
	struct watch *w = t->watch;

	tally_lock(t);
	t->inval = (struct tally_inval){ 0 };
	tally_unlock(t);
	if (!w)
		return;
	atomic_store(&w->stop, true);
	pthread_join(w->thread, NULL);
	t->watch = NULL;
	free(w);
}

uint64_t tally_watch_seen(struct tally *t)
{
	return t->watch ? atomic_load(&t->watch->seen) : 0;
}
