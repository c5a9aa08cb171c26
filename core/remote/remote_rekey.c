/* SPDX-License-Identifier: MIT */
/*
 * rekey: a keyed store (envelope 2 or 3, core/s3/seal.h) changes the key
 * file that opens it. Its bodies are sealed with the store's own random keys,
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
 *    force that did not end. The next mount with its new key ends it
 *    (a mount with the old key retires nothing: a rekey its caller was
 *    told failed may have been committed):
 *    (3) from seal_setup(), and the marker's rings made the record's at
 *    the mount's bucket check (core/remote/remote.c, check_marker()).
 *    Before (3) both keys open the store, mount and restore; after it,
 *    the new key only. A commit of the record that fails is read back
 *    (seal_read_back()): committed, not committed, or not known, said
 *    so, never guessed.
 * 3. What a rekey does not do: seal the bodies again. The store's keys
 *    are the same: whoever held the old key file and read the old ring
 *    (in the marker or a snapshot's copy of the record, before the
 *    rekey) can still derive them. docs/remote.md says what a rekey
 *    protects against and what it does not.
 * 4. A shared store: the other nodes keep their keys in memory (the same
 *    keys), and their marker checks accept rings that differ (they do
 *    not rewrite them); their next mount needs a key with a ring. A
 *    marker write reads the record again first, and again after it,
 *    writing again while it changed (core/remote/remote.c, put_rings()):
 *    a node that mounts while another rekeys leaves no retired ring in
 *    the marker (unless killed between its write and that read).
 * 5. What a bucket writer can do: put an older marker back (a rollback;
 *    in envelope 3 every line of a marker's record is authenticated
 *    with the store's keys, so it can replay a record, not make one).
 *    A restore from it opens with the keys in force then, and its
 *    mount ends whatever rekey that marker shows; it gets no key it
 *    did not have (the rings are authenticated, the store's keys never
 *    change). Nothing in the bucket alone can tell a rollback.
 */
#include "core/remote/remote_loop.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/fs/tally.h"
#include "core/meta/meta.h"
#include "core/util/fault.h"
#include "core/util/log.h"

/* remote_rekey_crash_at(): 0 none, N: killed after step N (tests) */
static unsigned crash_at;
/* remote_rekey_lose_at(): 0 none, N: the answer to the commit of step N
 * is lost (tests) */
static unsigned lose_at;

void remote_rekey_crash_at(unsigned step)
{
	crash_at = step;
}

void remote_rekey_lose_at(unsigned step)
{
	lose_at = step;
}

static void crash_if(unsigned step)
{
	fault_kill_at(crash_at, step, "after step %u of a rekey", step);
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
	unsigned step; /* of the rekey (1 or 3), for remote_rekey_lose_at() */
};

static int seal_swap(struct meta *m, void *arg)
{
	struct swap *w = arg;

	if (lose_at && lose_at == w->step) {
		log_msg(LOG_NOTICE,
			"fault injection: the answer to the commit of step "
			"%u of a rekey is lost",
			w->step);
		meta_inject_lost(m, 1);
		lose_at = 0;
	}
	return meta_remote_conf_swap(m, "seal", w->old, w->val);
}

/*
 * A commit of the record that failed: its outcome, read back from the
 * store (a commit whose answer was lost, a connection cut after the
 * server committed, may have committed). 0: @val is there (committed);
 * -ENOENT: @old is (not committed); -ESTALE: neither (another node's);
 * -EIO: it cannot be read (the outcome is unknown). Tried for 5 s: a
 * server that was cut off may take a moment to be back.
 */
static int seal_read_back(struct remote *r, const char *old, const char *val)
{
	char now[SEAL_TEXT_MAX];
	int i, rc = -EIO;

	for (i = 0; i < 10; i++) {
		if (i)
			usleep(500 * 1000);
		rc = rl_seal_refresh(r, now, sizeof(now));
		if (!rc)
			break;
	}
	if (rc)
		return -EIO;
	if (!strcmp(now, val))
		return 0;
	return !strcmp(now, old) ? -ENOENT : -ESTALE;
}

/*
 * The store's seal record made @val if it is @old still (-ESTALE: another
 * node changed it meanwhile, nothing written), durably. Committed, it is
 * the mount's too, the sync's failure notwithstanding (*@written says
 * so; the store then opens as @val says at the next mount, whatever this
 * returns). A commit that fails is read back: *@written then says what
 * the store holds, and *@unknown that it could not be read (-EIO).
 */
static int seal_store(struct remote *r, const char *old, const char *val,
		      unsigned step, bool *written, bool *unknown)
{
	struct swap w = { old, val, step };
	char id[17];
	int rc = tally_meta_txn(r->t, seal_swap, &w);

	*unknown = false;
	if (rc && rc != -ESTALE) {
		int back = seal_read_back(r, old, val);

		*unknown = back == -EIO;
		if (back == 0) {
			log_msg(LOG_NOTICE,
				"rekey: the store's seal record was committed "
				"(read back: the commit's answer was lost: %s)",
				strerror(-rc));
			rc = 0;
		} else if (back == -ESTALE) {
			rc = -ESTALE;
		}
	}
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
static int rekey_end(struct remote *r, const char *text, bool *written,
		     bool *unknown)
{
	char trimmed[SEAL_TEXT_MAX];
	int rc =
		seal_keyring_trim(text, &r->seal.key, trimmed, sizeof(trimmed));

	*written = *unknown = false;
	if (rc <= 0)
		return rc;
	return seal_store(r, text, trimmed, 3, written, unknown);
}

int rl_rekey_finish(struct remote *r)
{
	char text[SEAL_TEXT_MAX], id[17], given[17];
	bool written, unknown;
	int rc;

	if (!seal_ringed(r->seal_text))
		return 0;
	/* a rekey is ended by its new key only: a mount given the old one
	 * (a rekey reported failed whose commit was made) retires nothing */
	in_force(r->seal_text, id);
	seal_key_id_text(r->file.id, given);
	if (strcmp(id, given) != 0) {
		if (seal_keyring_trim(r->seal_text, &r->seal.key, text,
				      sizeof(text)) > 0)
			log_msg(LOG_NOTICE,
				"a rekey to key %s did not end: this mount was "
				"given key %s, and both open the store until a "
				"mount or a rekey with key %s ends it",
				id, given, id);
		return 0;
	}
	snprintf(text, sizeof(text), "%s", r->seal_text);
	rc = rekey_end(r, text, &written, &unknown);
	if (rc && !written) {
		log_msg(LOG_ERR,
			"a rekey cut short cannot end: the store's seal record "
			"cannot be written: %s",
			strerror(-rc));
		return rc;
	}
	if (strcmp(text, r->seal_text)) {
		in_force(r->seal_text, id);
		log_msg(LOG_NOTICE,
			"a rekey to key %s was cut short: it ends now, and the "
			"store opens with that key only%s",
			id, rc ? " (not synced yet)" : "");
	}
	return 0;
}

int remote_rekey(struct remote *r, const char *path, struct remote_rekey *out)
{
	char cur[SEAL_TEXT_MAX], next[SEAL_TEXT_MAX];
	struct seal_key nk;
	bool written = false, unknown = false;
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
	if (!seal_ringed(cur)) {
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
	/* the key file's id as this store names it (salted, envelope 3) */
	rc = seal_key_salt(&nk, cur);
	if (rc) {
		snprintf(out->err, sizeof(out->err),
			 "the store's seal record has a damaged salt");
		goto out;
	}
	seal_key_id_text(nk.id, out->new_id);
	if (!strcmp(out->new_id, out->old_id) &&
	    seal_record_version(cur) == 3) {
		/* nothing to wrap; a ring left by a rekey cut short goes */
		rc = rekey_end(r, cur, &written, &unknown);
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
	/* envelope 2 is made 3 on the way: the rings are salted again,
	 * which needs each key file; this mount holds its own only, so it
	 * must be the one in force, with no other ring (a rekey cut short
	 * ends at a mount with its new key first) */
	if (seal_record_version(cur) == 2) {
		char mine[17], trimmed[SEAL_TEXT_MAX];

		seal_key_id_text(r->file.id1, mine); /* its unsalted id */
		if (strcmp(mine, out->old_id) ||
		    seal_keyring_trim(cur, &r->seal.key, trimmed,
				      sizeof(trimmed)) != 0) {
			snprintf(out->err, sizeof(out->err),
				 "a rekey to key %s did not end: remount with "
				 "that key (which ends it), then rekey",
				 out->old_id);
			rc = -EBUSY;
			goto out;
		}
		out->unchanged = !strcmp(out->new_id, out->old_id);
	}
	rc = seal_keyring_add(cur, &r->seal.key, &nk, &r->file, next,
			      sizeof(next));
	/* the new key's id in the record it made (salted, envelope 3) */
	seal_key_id_text(nk.id, out->new_id);
	if (rc) {
		snprintf(out->err, sizeof(out->err),
			 "cannot wrap the store's keys for key %s: %s",
			 out->new_id, strerror(-rc));
		goto out;
	}
	/* (1) both keys, the new one in force; a commit that failed is read
	 * back: committed, not committed, or not known, never a guess */
	rc = seal_store(r, cur, next, 1, &written, &unknown);
	if (rc) {
		snprintf(out->err, sizeof(out->err),
			 rc == -ESTALE ? "the store's seal record changed "
					 "meanwhile (another node's rekey?): "
					 "nothing changed; try again"
			 : written ? "committed: the store's seal record is "
				     "written but not synced (%s): keep both "
				     "key files; a mount with the new key "
				     "ends the rekey"
			 : unknown ? "not known whether committed: the "
				     "store's seal record cannot be read back "
				     "(%s): keep both key files; both open the "
				     "store until a mount with the new key "
				     "ends the rekey"
				   : "not committed: the store's seal record "
				     "cannot be written (%s): the old key "
				     "alone opens the store",
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
	rc = rekey_end(r, next, &written, &unknown);
	if (rc) {
		snprintf(out->err, sizeof(out->err),
			 written   ? "the old key's ring is dropped but not "
				     "synced (%s): keep both key files until "
				     "the next mount"
			 : unknown ? "not known whether the old key's ring is "
				     "dropped (%s): keep both key files; a "
				     "mount with the new key ends the rekey"
				   : "both keys still open the store (the old "
				     "ring cannot be dropped: %s): the rekey "
				     "ends at the next mount with the new key "
				     "or rekey",
			 strerror(-rc));
		goto out;
	}
	crash_if(3);
	if (out->unchanged) /* envelope 2 made 3, the same key file */
		log_msg(LOG_NOTICE,
			"rekey: the store's seal record is envelope 3 now: its "
			"key, %s in envelope 2, is named %s in it (ids salted "
			"per store)",
			out->old_id, out->new_id);
	else
		log_msg(LOG_NOTICE,
			"rekey: the store opens with key %s, not %s",
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
	/* the mount's key file served a record of envelope 2 only */
	pthread_mutex_lock(&r->lock);
	if (seal_record_version(r->seal_text) == 3)
		explicit_bzero(&r->file, sizeof(r->file));
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_unlock(&r->rekey_lock);
	return rc;
}
