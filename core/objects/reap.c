/* SPDX-License-Identifier: MIT */
/*
 * Deleting object files: the verdicts that allow it and the unlinks.
 *
 * DESIGN NOTES
 *
 * Deleting data is the most dangerous thing a store does, so one module
 * does it, by one rule: an object file is deleted only on a positive
 * answer that nothing names the object. What names an object:
 *  - its row in objects (by name: a row made again by a later commit,
 *    for the same content, names the same file);
 *  - a block reference to its id (extents_obj; ids are never used again);
 *  - a pin, a node report (another mount's, or this one's, active set)
 *    or a move in progress.
 * A copy of an object in a shard other than the one its row names is
 * needed by nothing but a move copying into it.
 *
 * Invariants:
 *  1. A lookup that fails (EIO, EBUSY, ENOMEM...) is never taken for
 *     "nothing": the verdict is an error and the file is kept (a leak,
 *     which GC collects once it can see it is one).
 *  2. A verdict is asked under the metadata lock once the transaction
 *     that made the object deletable is durable (the WAL synced: the
 *     caller's tally_txn_sync() or tally_meta_sync()), and the unlink
 *     happens in the same hold (reap_dead(), reap_copy()), or the file is
 *     doomed in that hold and unlinked after it (reap_doom(): a commit
 *     that checks the file meanwhile cancels the deletion,
 *     core/objects/objstore.c).
 *  3. Counts are not trusted: the store settles a count that reached
 *     zero against the references at commit (core/meta/meta_object.c,
 *     meta_settle()), and the verdict asks the references again.
 *  4. The bucket of the remote tier (core/remote/remote.c) follows the same
 *     rule with two more verdicts: a key is deleted from the bucket only
 *     when no row names the object, no upload of it is queued and no pin,
 *     report or move names it (reap_remote_free()), once the WAL is
 *     synced and the deletion's delay has passed; and a local copy is
 *     evicted only when the bucket is recorded to hold the object (its
 *     row says so, written after the bucket answered its upload with
 *     success) and no move or pin names it (reap_evict_free()), doomed
 *     in the verdict's hold (reap_evict_doom(): a commit that checks the
 *     file before its unlink keeps it) and unlinked once the rows that
 *     allow it (remote=1, cached=0) are durable (rl_evict() syncs them
 *     first: a power loss kept unlinks whose rows it dropped). The
 *     request that deletes a key is made here (reap_remote_delete()).
 *     With a shared store (several nodes) the verdict is a claim
 *     (reap_remote_claim()): in one transaction, the name's turn taken
 *     (a row inserted by another node waits for it, or it waits for the
 *     row's commit), the verdict, and the deletion recorded as under way
 *     until it is done or failed (or its node is gone: taken over), then
 *     as made for a day; a row inserted
 *     meanwhile, or shipped before a deletion that ended since, is not
 *     recorded as in the bucket, and its upload waits for the deletion
 *     to end.
 *
 * Locks: the caller's metadata lock (see core/objects/reap.h); none of its own.
 */
#include "core/objects/reap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/s3/bucket.h"
#include "core/s3/s3.h"

int reap_object_free(struct meta *m, const char *name, int64_t id,
		     unsigned flags)
{
	return reap_copy_free(m, name, id, UINT32_MAX, flags);
}

/* The protections of @name: pins, node reports, moves, as @flags say. */
static int protected(struct meta *m, const char *name, unsigned flags)
{
	return meta_name_protected(m, name, !(flags & REAP_OWN_MOVE),
				   flags & REAP_NOT_MINE);
}

int reap_copy_free(struct meta *m, const char *name, int64_t id, uint32_t shard,
		   unsigned flags)
{
	bool moves = !(flags & REAP_OWN_MOVE);
	uint32_t where;
	uint64_t size;
	int64_t row, refs;
	int rc = meta_object_info(m, name, &row, &where, &size, &refs);

	if (rc == 0) {
		/* the object lives: only the copy its row names is needed,
		 * and the target of a move in progress */
		if (shard == UINT32_MAX || where == shard)
			return 0;
		if (!moves)
			return 1;
		rc = meta_name_protected(m, name, true, false);
		return rc < 0 ? rc : !rc;
	}
	if (rc != -ENOENT)
		return rc;
	if (id > 0) {
		rc = meta_obj_referenced(m, id);
		if (rc)
			return rc < 0 ? rc : 0;
	}
	rc = protected(m, name, flags);
	return rc < 0 ? rc : !rc;
}

/* Unlink the copy of @name in @shard; a missing file counts as done. */
static int unlink_copy(struct objstore *os, const char *name, uint32_t shard)
{
	int rc = objstore_unlink(os, shard, name);

	if (rc == -ENOENT)
		rc = 0;
	if (rc)
		log_msg(LOG_WARNING, "cannot delete object '%s': %s", name,
			strerror(-rc));
	return rc;
}

/*
 * The verdicts of the dead objects (meta_dead_take()): each one the
 * verdict frees is unlinked at once, or, with @doomed, doomed in this
 * hold and added to @doomed (unlinked after it: reap_dead_unlink()).
 * Returns the files unlinked or doomed.
 */
static unsigned dead_verdicts(struct meta *m, struct objstore *os,
			      struct meta_objlist *doomed)
{
	struct meta_objlist dead;
	unsigned n = 0;
	size_t i;

	meta_dead_take(m, &dead);
	for (i = 0; i < dead.n; i++) {
		const struct meta_obj *o = &dead.v[i];
		int rc = reap_object_free(m, o->name, o->id, REAP_NOT_MINE);

		if (rc == 1 && !doomed) {
			if (unlink_copy(os, o->name, o->shard) == 0)
				n++;
		} else if (rc == 1) {
			/* listed first: a file doomed and not listed would
			 * stay doomed, and on disk, until the store closes */
			rc = meta_objlist_add(doomed, o->id, o->shard, o->name);
			if (!rc) {
				rc = objstore_doom(os, o->shard, o->name);
				if (rc)
					doomed->n--;
				else
					n++;
			}
		}
		if (rc < 0) {
			log_msg(LOG_WARNING,
				"object '%s' kept: cannot tell whether "
				"anything names it: %s",
				o->name, strerror(-rc));
		}
		/* 0: named again (a pin, a report): GC decides later */
	}
	meta_objlist_release(&dead);
	return n;
}

unsigned reap_dead(struct meta *m, struct objstore *os)
{
	return dead_verdicts(m, os, NULL);
}

unsigned reap_dead_doom(struct meta *m, struct objstore *os,
			struct meta_objlist *doomed)
{
	return dead_verdicts(m, os, doomed);
}

unsigned reap_dead_unlink(struct objstore *os, struct meta_objlist *doomed)
{
	unsigned n = 0;
	size_t i;

	for (i = 0; i < doomed->n; i++) {
		const struct meta_obj *o = &doomed->v[i];
		off_t size;
		int rc = objstore_unlink_doomed(os, o->shard, o->name, &size);

		if (rc == 0 || rc == -ENOENT)
			n++;
		else if (rc < 0)
			log_msg(LOG_WARNING, "cannot delete object '%s': %s",
				o->name, strerror(-rc));
		/* 1: a commit checked the file meanwhile: it stays */
	}
	doomed->n = 0;
	return n;
}

int reap_copy(struct meta *m, struct objstore *os, const char *name, int64_t id,
	      uint32_t shard, unsigned flags)
{
	int rc = reap_copy_free(m, name, id, shard, flags);

	if (rc == 1)
		rc = unlink_copy(os, name, shard) ? 0 : 1;
	else if (rc < 0)
		log_msg(LOG_WARNING,
			"copy of object '%s' in shard %" PRIu32
			" kept: cannot tell whether anything needs it: %s",
			name, shard, strerror(-rc));
	return rc;
}

int reap_doom(struct meta *m, struct objstore *os, const char *name,
	      uint32_t shard)
{
	int rc = reap_copy_free(m, name, 0, shard, 0);

	if (rc == 1) {
		rc = objstore_doom(os, shard, name);
		if (!rc)
			rc = 1;
	}
	return rc;
}

int reap_unlink_doomed(struct objstore *os, uint32_t shard, const char *name,
		       off_t *size)
{
	return objstore_unlink_doomed(os, shard, name, size);
}

int reap_remote_free(struct meta *m, const char *key)
{
	struct meta_remote_state st;
	char name[OBJNAME_MAX];
	int64_t gen;
	int rc = meta_key_parse(key, name, &gen);

	if (rc)
		return rc; /* no key of an object: not this module's to judge */
	rc = meta_remote_state(m, name, &st);
	if (rc == 0 && st.gen == gen)
		return 0; /* its row names this key */
	if (rc && rc != -ENOENT)
		return rc;
	/* a metadata snapshot still kept may name it: restorable */
	rc = meta_remote_snap_named(m, key);
	if (rc)
		return rc < 0 ? rc : 0;
	/* no row of this generation: a row of the name (or none) names
	 * another key; what names the object (a flush about to commit a
	 * row of this generation, a pin) keeps every key of it */
	rc = meta_name_protected(m, name, true, false);
	return rc < 0 ? rc : !rc;
}

int reap_remote_claim(struct meta *m, const char *key)
{
	char name[OBJNAME_MAX];
	int64_t gen;
	int rc = meta_key_parse(key, name, &gen);

	if (rc)
		return rc;
	rc = meta_begin(m);
	/* a node inserting a row of the name waits, or is waited for */
	if (!rc)
		rc = meta_remote_name_lock(m, name);
	if (!rc) {
		rc = reap_remote_free(m, key);
		if (rc == 1) {
			int rc2 = meta_remote_claim(m, key);

			rc = rc2 ? rc2 : 1;
		}
	}
	if (rc < 0) {
		meta_rollback(m);
		return rc;
	}
	rc = meta_end(m, 0) ? -EIO : rc;
	return rc;
}

int reap_remote_delete(struct s3 *s, const struct s3_cfg *cfg, const char *name)
{
	char key[1024];
	int rc = bucket_object_key(cfg, name, key, sizeof(key));

	return rc ? rc : s3_delete(s, key);
}

int reap_evict_free(struct meta *m, const char *name, uint32_t *shard)
{
	struct meta_remote_state st;
	int rc = meta_remote_state(m, name, &st);

	if (rc == -ENOENT)
		return 0; /* no row: the object verdicts decide, not this */
	if (rc)
		return rc;
	/* a shared store's rows say nothing of this node's copy */
	if (!st.remote || (!st.cached && !meta_shared(m)))
		return 0;
	rc = meta_name_protected(m, name, true, false);
	if (rc)
		return rc < 0 ? rc : 0;
	*shard = st.shard;
	return 1;
}

int reap_evict_doom(struct meta *m, struct objstore *os, const char *name,
		    uint32_t *shard)
{
	int rc = reap_evict_free(m, name, shard);

	if (rc == 1) {
		rc = objstore_doom(os, *shard, name);
		if (!rc)
			rc = 1;
	}
	return rc;
}

int reap_evict(struct objstore *os, uint32_t shard, const char *name)
{
	off_t size;
	int rc = objstore_unlink_doomed(os, shard, name, &size);

	return rc == -ENOENT ? 0 : rc;
}

int reap_evict_fault(struct objstore *os, uint32_t shard, const char *name)
{
	return objstore_unlink(os, shard, name);
}

unsigned reap_snapshots(struct s3 *s, const char *const *keys, size_t n,
			unsigned keep)
{
	unsigned deleted = 0;
	size_t i;

	if (keep == 0)
		keep = 1; /* never the last one */
	for (i = 0; i + keep < n; i++) {
		int rc = s3_delete(s, keys[i]);

		if (rc)
			log_msg(LOG_WARNING,
				"remote: cannot delete old snapshot '%s': %s",
				keys[i], s3_last_error(s));
		else
			deleted++;
	}
	return deleted;
}
