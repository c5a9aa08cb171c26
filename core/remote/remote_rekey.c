/* SPDX-License-Identifier: MIT */
/*
 * rekey: a keyed store (envelope 2, core/s3/seal.h) changes the key file
 * that opens it. Its bodies are sealed with the store's own random keys,
 * which the seal record keeps wrapped by each key file's key ("keyring"
 * lines): a rekey wraps them for the new key and drops the old key's
 * ring. No body is sealed again, so a rekey takes two small writes of
 * the metadata and two of the marker, whatever the size of the store.
 *
 * DESIGN NOTES
 *
 * 1. Steps. (1) The seal record gets the new ring, first, and names the
 *    new key as the one in force; the old ring stays: both keys open
 *    the store. Committed and synced before (2) the marker says the
 *    same (a restore from the bucket alone reads the marker). (3) The
 *    record keeps the new ring only: the rekey's end, synced before
 *    (4) the marker says so. The record leads and the marker follows,
 *    a step behind at most: never does it name a key in force that the
 *    durable record does not (after (3) it may still hold the old
 *    ring, until (4)). A marker left behind (a write that failed) is
 *    written again by the mount's loop every 2 s (rings_behind), and by
 *    the next mount. Each change of the record is a compare-and-swap
 *    against the record read from the store, not the mount's copy: a
 *    shared store's other node may have changed it (-ESTALE: nothing
 *    written, try again).
 * 2. Cut short (kill -9, power loss, a bucket unreachable at (2) or
 *    (4)): a record with more than one ring is a rekey to its key in
 *    force that did not end. The next mount, with either key, ends it:
 *    (3) from seal_setup(), and the marker's rings made the record's at
 *    the mount's bucket check (core/remote/remote.c, check_marker()).
 *    Before (3) both keys open the store, mount and restore; after it,
 *    the new key only.
 * 3. What a rekey does not do: seal the bodies again. The store's keys
 *    are the same: whoever held the old key file and read the old ring
 *    (in the marker or a snapshot's copy of the record, before the
 *    rekey) can still derive them. docs/remote.md says what a rekey
 *    protects against and what it does not.
 * 4. A shared store: the other nodes keep their keys in memory (the same
 *    keys), and their marker checks accept rings that differ (they do
 *    not rewrite them); their next mount needs a key with a ring. A
 *    marker write reads the record again first; a node that read it
 *    just before another's rekey and writes the marker just after it
 *    can still leave an older ring set there, until the rekeying node's
 *    next write (a race of milliseconds, at a mount).
 * 5. What a bucket writer can do: put an older marker back (a rollback).
 *    A restore from it opens with the keys in force then, and its
 *    mount ends whatever rekey that marker shows; it gets no key it
 *    did not have (the rings are authenticated, the store's keys never
 *    change). Nothing in the bucket alone can tell a rollback.
 */
#include "core/remote/remote_loop.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "core/fs/tally.h"
#include "core/meta/meta.h"
#include "core/util/log.h"

/* remote_rekey_crash_at(): 0 none, N: killed after step N (tests) */
static unsigned crash_at;

void remote_rekey_crash_at(unsigned step)
{
	crash_at = step;
}

static void crash_if(unsigned step)
{
	if (crash_at == step) {
		log_msg(LOG_NOTICE,
			"fault injection: killed after step %u "
			"of a rekey",
			step);
		raise(SIGKILL);
	}
}

/* The id of the key in force that seal record @text names ("" if none)
 * into @id. */
static void in_force(const char *text, char id[17])
{
	const char *k = strstr(text, "\nkey_id ");

	snprintf(id, 17, "%.16s", k ? k + 8 : "");
}

struct swap {
	const char *old, *val;
};

static int seal_swap(struct meta *m, void *arg)
{
	struct swap *w = arg;

	return meta_remote_conf_swap(m, "seal", w->old, w->val);
}

/*
 * The store's seal record made @val if it is @old still (-ESTALE: another
 * node changed it meanwhile, nothing written), durably. Committed, it is
 * the mount's too, the sync's failure notwithstanding (*@written says
 * so; the store then opens as @val says at the next mount, whatever this
 * returns).
 */
static int seal_store(struct remote *r, const char *old, const char *val,
		      bool *written)
{
	struct swap w = { old, val };
	char id[17];
	int rc = tally_meta_txn(r->t, seal_swap, &w);

	*written = rc == 0;
	if (rc)
		return rc;
	in_force(val, id);
	pthread_mutex_lock(&r->lock);
	snprintf(r->seal_text, sizeof(r->seal_text), "%s", val);
	if (id[0]) /* the key in force, as the record names it */
		snprintf(r->st.key_id, sizeof(r->st.key_id), "%s", id);
	r->rings_behind = true; /* until the marker follows */
	pthread_mutex_unlock(&r->lock);
	return tally_meta_sync(r->t);
}

/* Step (3): the record keeps the ring of the key in force only. 0 when
 * it did (or had no other), or -errno. */
static int rekey_end(struct remote *r, const char *text, bool *written)
{
	char trimmed[SEAL_TEXT_MAX];
	int rc = seal_keyring_trim(text, trimmed, sizeof(trimmed));

	*written = false;
	if (rc <= 0)
		return rc;
	return seal_store(r, text, trimmed, written);
}

int rl_rekey_finish(struct remote *r)
{
	char text[SEAL_TEXT_MAX], id[17];
	bool written;
	int rc;

	if (!strstr(r->seal_text, "envelope 2\n"))
		return 0;
	snprintf(text, sizeof(text), "%s", r->seal_text);
	rc = rekey_end(r, text, &written);
	if (rc && !written) {
		log_msg(LOG_ERR,
			"a rekey cut short cannot end: the store's seal record "
			"cannot be written: %s",
			strerror(-rc));
		return rc;
	}
	if (!strcmp(text, r->seal_text))
		return 0;
	in_force(r->seal_text, id);
	log_msg(LOG_NOTICE,
		"a rekey to key %s was cut short: it ends now, and the store "
		"opens with that key only%s",
		id, rc ? " (not synced yet)" : "");
	return 0;
}

int remote_rekey(struct remote *r, const char *path, struct remote_rekey *out)
{
	char cur[SEAL_TEXT_MAX], next[SEAL_TEXT_MAX];
	struct seal_key nk;
	bool written = false;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&nk, 0, sizeof(nk));
	pthread_mutex_lock(&r->rekey_lock);
	/* the record as the store has it (another node may have rekeyed) */
	rc = rl_seal_refresh(r, cur, sizeof(cur));
	if (rc) {
		snprintf(out->err, sizeof(out->err),
			 "cannot read the store's seal record: %s",
			 strerror(-rc));
		goto out;
	}
	in_force(cur, out->old_id);
	if (!r->seal.keyed) {
		snprintf(out->err, sizeof(out->err),
			 "this store's bodies are not encrypted: a key is "
			 "chosen when a store is bound (-o key_file)");
		rc = -EINVAL;
		goto out;
	}
	if (!strstr(cur, "envelope 2\n")) {
		snprintf(out->err, sizeof(out->err),
			 "this store was bound with envelope 1, whose bodies "
			 "are sealed with the key file's own keys: changing "
			 "it would seal every body again, which is not built");
		rc = -EOPNOTSUPP;
		goto out;
	}
	if (rl_fenced(r)) {
		snprintf(out->err, sizeof(out->err),
			 "the bucket's marker names another store (a restore "
			 "took it over): this store changes nothing there");
		rc = -EUCLEAN;
		goto out;
	}
	rc = seal_key_load(path, &nk, out->err, sizeof(out->err));
	if (rc)
		goto out;
	seal_key_id_text(nk.id, out->new_id);
	if (!strcmp(out->new_id, out->old_id)) {
		/* nothing to wrap; a ring left by a rekey cut short goes */
		rc = rekey_end(r, cur, &written);
		out->unchanged = true;
		if (!rc && written)
			(void)rl_marker_sync(r); /* failing: the loop's */
		if (rc)
			snprintf(out->err, sizeof(out->err),
				 "the old ring of a rekey cut short cannot be "
				 "dropped: %s",
				 strerror(-rc));
		goto out;
	}
	rc = seal_keyring_add(cur, &r->seal.key, &nk, next, sizeof(next));
	if (rc) {
		snprintf(out->err, sizeof(out->err),
			 "cannot wrap the store's keys for key %s: %s",
			 out->new_id, strerror(-rc));
		goto out;
	}
	/* (1) both keys, the new one in force */
	rc = seal_store(r, cur, next, &written);
	if (rc) {
		snprintf(out->err, sizeof(out->err),
			 rc == -ESTALE ? "the store's seal record changed "
					 "meanwhile (another node's rekey?): "
					 "nothing changed; try again"
			 : written ? "the store's seal record is written but "
				     "not synced (%s): keep both key files; "
				     "the next mount ends the rekey"
				   : "cannot write the store's seal record: %s",
			 strerror(-rc));
		goto out;
	}
	crash_if(1);
	/* (2) the marker follows */
	rc = rl_marker_sync(r);
	if (rc) {
		snprintf(
			out->err, sizeof(out->err),
			"the new key opens the store, but the bucket's marker "
			"could not be written (%s): the rekey ends at the next "
			"mount or rekey, and until then both keys open it",
			strerror(-rc));
		goto out;
	}
	crash_if(2);
	/* (3) the new key only: the end */
	rc = rekey_end(r, next, &written);
	if (rc) {
		snprintf(out->err, sizeof(out->err),
			 written ? "the old key's ring is dropped but not "
				   "synced (%s): keep both key files until "
				   "the next mount"
				 : "both keys still open the store (the old "
				   "ring cannot be dropped: %s): the rekey "
				   "ends at the next mount or rekey",
			 strerror(-rc));
		goto out;
	}
	crash_if(3);
	log_msg(LOG_NOTICE, "rekey: the store opens with key %s, not %s",
		out->new_id, out->old_id);
	/* (4) the marker follows: failing, the loop writes it later */
	if (rl_marker_sync(r)) {
		snprintf(out->err, sizeof(out->err),
			 "the rekey is done, but the bucket's marker still "
			 "names the old key too: this mount writes it again "
			 "every 2 s until the bucket takes it (until then a "
			 "restore from the bucket opens with either key)");
		out->marker_behind = true;
	}
out:
	explicit_bzero(&nk, sizeof(nk));
	pthread_mutex_unlock(&r->rekey_lock);
	return rc;
}
