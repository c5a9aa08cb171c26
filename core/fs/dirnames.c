/* SPDX-License-Identifier: MIT */
/*
 * Directories known whole, on a shared store: a lookup of a name missing
 * from a directory this node knows every name of is answered ENOENT here,
 * without the round trip to the server that the kernel's lookup before
 * each create would cost (a create's two round trips become one).
 *
 * DESIGN NOTES
 *
 * 1. A directory is known whole only if this node made it (mkdir) while
 *    its watch (core/cluster/watch.c) listened, and registered its interest in
 *    the same transaction (a dir_watch row: meta_dir_watch()). Another
 *    node's insert of a name into a directory with a row of another node
 *    takes that row away (meta_dentry_insert()), and the row's delete
 *    notifies ("w NODE DIR", DIR_WATCH in core/meta/meta_pg.c), once: the
 *    node knows it whole no more; deletes and renames always notify.
 *    Inserts elsewhere notify nothing.
 * 2. What this node itself adds to a directory it knows whole (create,
 *    mknod, mkdir, symlink, link, rename) goes into the set before its
 *    transaction, whose outcome a lost connection may hide
 *    (dirnames_add()). A name removed stays in the set: the set
 *    only ever says a name is absent, and a name it wrongly holds costs a
 *    round trip, never a wrong answer.
 * 3. Knowledge ends (the store is asked again) when: a notification of
 *    another node's change of a name in the directory arrives
 *    (dirnames_changed(): inode->names_epoch = 0); the watch loses its
 *    connection (or its probe goes unanswered), stops, or the node's
 *    session is renewed (another node may have removed the rows of the
 *    old one), or the set overflows (dirnames_forget_all():
 *    t->names_epoch moves on, voiding every directory's); the inode
 *    leaves memory (a new one starts unknown). It is not used while the
 *    session's last heartbeat is more than two old: another node's
 *    cleanup removes an expired session's rows, after five.
 * 4. A name another node inserted is answered ENOENT until its
 *    notification arrives (about a millisecond here): a window that
 *    did not exist before (-o nonegcache: none).
 *
 * The set: one open-addressing table of 64-bit keys, the name's XXH3-64
 * seeded with the directory's inode number (0 is an empty slot), for all
 * directories at once; keys of directories no longer known stay until
 * the table is cleared at DIRNAMES_MAX keys.
 *
 * Locking: the table and each inode's names_epoch under t->lock;
 * t->names_epoch and t->listening are atomics (the watch thread writes
 * them holding no lock).
 */
#include "core/fs/tally_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "core/util/log.h"

/* Keys held at most (a table of twice as many slots: 16 MiB) */
#define DIRNAMES_MAX (1u << 20)

static uint64_t key_of(uint64_t dir, const char *name)
{
	uint64_t k = XXH3_64bits_withSeed(name, strlen(name), dir);

	return k ? k : 1;
}

/* @dir is known whole now: its epoch is the current one, the watch
 * listens, and the session was beaten lately (two heartbeats: another
 * node's cleanup removes a session's rows, its dir_watch ones too, only
 * after five are missed). t->lock held. */
static bool known(struct tally *t, const struct inode *dir)
{
	return dir && dir->names_epoch &&
	       dir->names_epoch == atomic_load(&t->names_epoch) &&
	       atomic_load(&t->listening) &&
	       (int64_t)time(NULL) - t->last_beat <= 2 * t->heartbeat;
}

static bool has(const struct dirnames *d, uint64_t k)
{
	size_t i;

	if (!d->cap)
		return false;
	for (i = k & (d->cap - 1); d->slot[i]; i = (i + 1) & (d->cap - 1))
		if (d->slot[i] == k)
			return true;
	return false;
}

static void put(struct dirnames *d, uint64_t k)
{
	size_t i;

	for (i = k & (d->cap - 1); d->slot[i]; i = (i + 1) & (d->cap - 1))
		if (d->slot[i] == k)
			return;
	d->slot[i] = k;
	d->n++;
}

/* Room for one key more: 0, or -ENOMEM / -ENOSPC (the table is full). */
static int reserve(struct dirnames *d)
{
	uint64_t *old = d->slot;
	size_t oldcap = d->cap, i;

	if ((d->n + 1) * 2 <= d->cap)
		return 0;
	if (d->n + 1 > DIRNAMES_MAX)
		return -ENOSPC;
	d->cap = oldcap ? oldcap * 2 : 1024;
	d->slot = calloc(d->cap, sizeof(*d->slot));
	if (!d->slot) {
		d->slot = old;
		d->cap = oldcap;
		return -ENOMEM;
	}
	d->n = 0;
	for (i = 0; i < oldcap; i++)
		if (old[i])
			put(d, old[i]);
	free(old);
	return 0;
}

bool dirnames_listening(struct tally *t, uint32_t *epoch)
{
	*epoch = atomic_load(&t->names_epoch);
	if (!meta_shared(t->meta) || t->no_negcache ||
	    !atomic_load(&t->listening))
		return false;
	/* before the transaction: a notification that arrives between
	 * its commit and dirnames_known() is not passed by */
	atomic_store(&t->names_used, true);
	return true;
}

void dirnames_known(struct inode *dir, uint32_t epoch)
{
	dir->names_epoch = epoch;
}

bool dirnames_absent(struct tally *t, struct inode *dir, const char *name)
{
	return known(t, dir) && !has(&t->dirnames, key_of(dir->ino, name));
}

void dirnames_add(struct tally *t, uint64_t dir, const char *name)
{
	struct inode *ip = inode_find(t, dir);
	int rc;

	if (!known(t, ip))
		return;
	rc = reserve(&t->dirnames);
	if (rc) {
		/* every directory is asked about again, and the table
		 * starts over */
		log_msg(rc == -ENOSPC ? LOG_INFO : LOG_WARNING,
			"directories known whole: %s, forgotten",
			rc == -ENOSPC ? "too many names" : strerror(-rc));
		dirnames_forget_all(t);
		free(t->dirnames.slot);
		memset(&t->dirnames, 0, sizeof(t->dirnames));
		return;
	}
	put(&t->dirnames, key_of(dir, name));
}

void dirnames_changed(struct tally *t, uint64_t dir)
{
	struct inode *ip;

	if (!atomic_load(&t->names_used))
		return;
	/* t->lock may be held across round trips to the server: rather
	 * than wait, every directory is forgotten */
	if (!tally_trylock(t)) {
		dirnames_forget_all(t);
		return;
	}
	ip = inode_find(t, dir);
	if (ip)
		ip->names_epoch = 0;
	tally_unlock(t);
}

void dirnames_forget_all(struct tally *t)
{
	uint32_t e = atomic_load(&t->names_epoch);

	/* 0 is no epoch: an inode's 0 means not known */
	while (!atomic_compare_exchange_weak(&t->names_epoch, &e,
					     e + 1 ? e + 1 : 1))
		;
}

void dirnames_release(struct tally *t)
{
	free(t->dirnames.slot);
	memset(&t->dirnames, 0, sizeof(t->dirnames));
}
