/* SPDX-License-Identifier: MIT */
/*
 * The intent log of the SQLite engine (STORE/meta.ilog).
 *
 * DESIGN NOTES
 *
 * 1. Groups. With the log on, meta_begin() opens a SAVEPOINT inside one
 *    SQLite transaction that spans many operations (a group); the
 *    operation's "commit" releases the savepoint and its rollback rolls
 *    back to it, the operation alone. Reads on the connection see the
 *    open group: the answers of later operations include the earlier
 *    ones. The group commits after GROUP_OPS operations or GROUP_NS of
 *    age (checked at each operation's end), on the flusher's tick, and
 *    at once before anything that needs the applied state: meta_sync()
 *    (fsync, syncfs, drain, the deletions that wait for a durable
 *    commit), a multi-statement text, a statement run outside an
 *    operation, and close.
 *
 * 2. One record per operation. Each write statement an operation runs
 *    through meta_step() is noted as its text with the values bound
 *    (sqlite3_expanded_sql(); the engine binds integers, text and blobs
 *    only). Before the savepoint is released, the notes go to the log as
 *    one record, with one write() and no sync: SEQ, LEN, an XXH3-64 of
 *    both and of the text, then the text. A failed write rolls the
 *    operation back and returns its error: nothing is answered that the
 *    log does not hold.
 *
 * 3. Replay. The group's commit stores the last sequence it holds
 *    (config ilog_seq) and then rewinds the log: the next record goes
 *    after the header. Each append writes an end mark after its record
 *    (a zero head, overwritten by the next record), so the replay
 *    stops there and never reads the older records beyond (whose
 *    sequences ilog_seq covers anyway). At
 *    open, the records after ilog_seq are run again, in order, in one
 *    transaction that stores the new ilog_seq: a crash during replay
 *    replays again. A record whose sum is wrong, or cut short, ends the
 *    replay: it and what follows are counted, logged and not applied. A
 *    log whose header names another store is refused.
 *
 * 4. Durability is unchanged: a record survives kill -9 (the page
 *    cache), and power loss keeps what a sync made durable, as the WAL
 *    does without the log (meta_sync() commits the group first).
 */
#include "core/meta/meta_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/util/array.h"
#include "core/util/fault.h"
#include "core/util/log.h"

/*
 * The header: the magic, the store's id and (from version 2) the sum of
 * the tables the records were written for (m->schema), padded
 * with zeros to its length. A version-1 log (no schema line) was written
 * for the tables the store has as found: its records replay before any
 * upgrade of them, as those of version 2 do.
 */
#define ILOG_MAGIC1 "tallyfs intent log 1\n"
#define HEADER_LEN1 64
#define ILOG_MAGIC "tallyfs intent log 2\n"
#define HEADER_LEN 128
#define GROUP_OPS 256
#define GROUP_NS (5 * 1000000LL)
#define LOG_KEEP (8 << 20) /* a log this long is cut when emptied */
/*
 * Room kept on the store's disk (STORE/meta.reserve, allocated with
 * posix_fallocate), in two tiers:
 * - RESERVE_GROUP, for the commit of a group (its pages in the WAL):
 *   given back when a commit meets a full disk, so that the group
 *   commits, and the log then stays off (each operation commits on its
 *   own, and fails on its own) until it can be made again;
 * - RESERVE_OPEN below it, which a running mount never gives back:
 *   the room of the next open's replay. meta_ilog_unreserve() gives the
 *   whole file back before an open commits anything, so an open after a
 *   crash on a full disk has what the store kept for itself.
 */
#define RESERVE_GROUP (4 << 20)
#define RESERVE_OPEN (1 << 20)
#define RESERVE_NAME "meta.reserve"
#define RESERVE_RETRY_NS (5 * 1000000000LL)

struct rec_head {
	uint64_t seq;
	uint32_t len; /* bytes of text */
	uint32_t pad;
	uint64_t sum; /* XXH3-64 of seq, len and the text */
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * The transitions of the log's state (docs/design.md section 12), a bit
 * for each state a state may go to:
 * - IDLE -> GROUP (an operation's BEGIN, before its SAVEPOINT);
 * - GROUP -> OP (an operation in the open group), GROUP -> COMMIT (the
 *   group's commit, or a lost group applied again);
 * - OP -> OP_UNNOTED (a change could not be noted), OP and OP_UNNOTED
 *   -> GROUP (RELEASE, or ROLLBACK TO);
 * - COMMIT -> IDLE (committed, or applied again), COMMIT -> GROUP (a
 *   commit refused with the group still open: tried again later),
 *   COMMIT -> BROKEN (a lost group not applied again);
 * - BROKEN -> COMMIT (tried again before an operation, a read, a sync).
 */
#define TO(s) (1u << (s))
static const unsigned transitions[IL_STATES] = {
	[IL_IDLE] = TO(IL_GROUP),
	[IL_GROUP] = TO(IL_OP) | TO(IL_COMMIT),
	[IL_OP] = TO(IL_OP_UNNOTED) | TO(IL_GROUP),
	[IL_OP_UNNOTED] = TO(IL_GROUP),
	[IL_COMMIT] = TO(IL_IDLE) | TO(IL_GROUP) | TO(IL_BROKEN),
	[IL_BROKEN] = TO(IL_COMMIT),
};

static void to(struct meta_ilog *il, enum ilog_state next)
{
	assert(next == il->state || (transitions[il->state] & TO(next)));
	il->state = next;
}

/* A group is open (an operation in it or not). */
static bool in_group(const struct meta_ilog *il)
{
	return il->state == IL_GROUP || il->state == IL_OP ||
	       il->state == IL_OP_UNNOTED;
}

static bool in_op(const struct meta_ilog *il)
{
	return il->state == IL_OP || il->state == IL_OP_UNNOTED;
}

/* The open group is gone: the engine rolled it back. */
static bool lost(struct meta *m)
{
	return m->ilog->state == IL_GROUP && sqlite3_get_autocommit(m->db);
}

static uint64_t rec_sum(const struct rec_head *h, const char *text)
{
	/* the sequence and the length in the seed: a record moved or cut
	 * does not sum right */
	return XXH3_64bits_withSeed(text, h->len,
				    h->seq * 0x9E3779B97F4A7C15ULL ^ h->len);
}

/* The header of version 2 (@schema) or 1 (@v1, no schema line) into
 * @out (HEADER_LEN bytes): its length. */
static size_t header_text(uint64_t store_id, uint64_t schema, bool v1,
			  char *out)
{
	memset(out, 0, HEADER_LEN);
	if (v1) {
		snprintf(out, HEADER_LEN1, "%sstore %" PRIu64 "\n", ILOG_MAGIC1,
			 store_id);
		return HEADER_LEN1;
	}
	snprintf(out, HEADER_LEN,
		 "%sstore %" PRIu64 "\nschema %016" PRIx64 "\n", ILOG_MAGIC,
		 store_id, schema);
	return HEADER_LEN;
}

/* The path of file @name in the directory of file @beside, into @out. */
static void path_beside(const char *beside, const char *name,
			char out[PATH_MAX])
{
	const char *slash = strrchr(beside, '/');

	snprintf(out, PATH_MAX, "%.*s/%s", slash ? (int)(slash - beside) : 1,
		 slash ? beside : ".", name);
}

/* A log's header as read (head_read()). */
struct log_head {
	off_t len;	 /* its bytes: where the records begin */
	uint64_t store;	 /* the store whose log it is */
	uint64_t schema; /* the tables its records were written for */
	bool has_schema; /* version 2: the line above is there */
};

/*
 * The header of the log open at @fd, in *@h: 1 with records after it;
 * 0 with nothing to apply (no bytes, a header of zeros: cut while it
 * was written, or a header alone: whose ever it was, a restore gives
 * the store its own identity after the log began); -EUCLEAN if it is
 * no header of an intent log of tallyfs; or -errno.
 */
static int head_read(int fd, struct log_head *h)
{
	char got[HEADER_LEN + 1], want[HEADER_LEN];
	unsigned long long store = 0, schema = 0;
	ssize_t r = pread(fd, got, HEADER_LEN, 0);
	off_t end;

	memset(h, 0, sizeof(*h));
	if (r < 0)
		return -errno;
	if (r == 0 || (!got[0] && !memcmp(got, got + 1, (size_t)r - 1)))
		return 0;
	got[r] = '\0';
	if (r >= HEADER_LEN && !strncmp(got, ILOG_MAGIC, strlen(ILOG_MAGIC)) &&
	    sscanf(got + strlen(ILOG_MAGIC), "store %llu\nschema %llx\n",
		   &store, &schema) == 2) {
		h->len = (off_t)header_text(store, schema, false, want);
		h->has_schema = true;
	} else if (r >= HEADER_LEN1 &&
		   !strncmp(got, ILOG_MAGIC1, strlen(ILOG_MAGIC1)) &&
		   sscanf(got + strlen(ILOG_MAGIC1), "store %llu\n", &store) ==
			   1) {
		h->len = (off_t)header_text(store, 0, true, want);
	} else {
		return -EUCLEAN;
	}
	/* one spelling of each header: anything else is damage */
	if (memcmp(got, want, (size_t)h->len))
		return -EUCLEAN;
	h->store = store;
	h->schema = schema;
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return -errno;
	return end > h->len;
}

bool meta_ilog_pending(const char *beside)
{
	char path[PATH_MAX];
	struct log_head h;
	int fd, rc;

	path_beside(beside, META_ILOG_NAME, path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	rc = head_read(fd, &h);
	close(fd);
	return rc == 1;
}

bool meta_ilog_on(struct meta *m)
{
	return m->ilog != NULL;
}

bool meta_ilog_in_op(struct meta *m)
{
	return m->ilog && in_op(m->ilog);
}

bool meta_ilog_broken(struct meta *m)
{
	/* broken, or lost and not found out yet (the engine rolled the
	 * group back: regroup() applies it, or it is broken then) */
	return m->ilog && (m->ilog->state == IL_BROKEN || lost(m));
}

int meta_ilog_note(struct meta *m, struct sqlite3_stmt *st)
{
	char *sql = sqlite3_expanded_sql(st);
	int rc;

	if (!sql) {
		to(m->ilog, IL_OP_UNNOTED);
		return -ENOMEM;
	}
	rc = meta_ilog_note_text(m, sql);
	sqlite3_free(sql);
	return rc;
}

/* Append the open operation's notes as record @seq, and the end mark
 * after it (which the next record overwrites): 0 or -errno. */
static int append(struct meta_ilog *il, uint64_t seq)
{
	struct rec_head h = { .seq = seq, .len = (uint32_t)il->n };
	char *buf;
	size_t total = sizeof(h) + il->n;
	ssize_t w;

	h.sum = rec_sum(&h, il->rec);
	buf = malloc(total + sizeof(h));
	if (!buf)
		return -ENOMEM;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), il->rec, il->n);
	memset(buf + total, 0, sizeof(h)); /* the end mark */
	w = pwrite(il->fd, buf, total + sizeof(h), (off_t)il->bytes);
	free(buf);
	if (w == (ssize_t)(total + sizeof(h))) {
		il->bytes += total;
		return 0;
	}
	/* a short write leaves a torn tail: cut it off, or replay stops
	 * at it (and counts it) */
	if (w > 0 && ftruncate(il->fd, (off_t)il->bytes) < 0)
		log_msg(LOG_WARNING, "intent log: a torn append stays: %s",
			strerror(errno));
	return w < 0 ? -errno : -ENOSPC;
}

/* What a replay did (replay()). */
struct replayed {
	uint64_t last;	  /* the last sequence applied */
	uint64_t done;	  /* records applied */
	uint64_t dropped; /* bytes after a record damaged or cut short */
	uint64_t stale;	  /* bytes from an intact record out of sequence */
};

static int replay(struct meta *m, int fd, off_t start, uint64_t applied,
		  bool each, struct replayed *out);

/*
 * Make the reserve, both tiers if there is room: the room now kept
 * (KEPT: both; SOLO: the open's tier alone; BARE: none, an open after a
 * crash now needs the disk's own free space). Said once when none is.
 */
static enum ilog_room reserve_make(struct meta_ilog *il)
{
	int fd = open(il->reserve, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	enum ilog_room room = IL_ROOM_KEPT;

	if (fd >= 0 && posix_fallocate(fd, 0, RESERVE_OPEN + RESERVE_GROUP)) {
		/* the group's tier gone again: the open's alone (what a
		 * failed allocation took beyond it given back) */
		room = IL_ROOM_SOLO;
		if (ftruncate(fd, RESERVE_OPEN) < 0 ||
		    posix_fallocate(fd, 0, RESERVE_OPEN)) {
			close(fd);
			fd = -1;
			unlink(il->reserve);
		}
	}
	if (fd < 0) {
		if (il->room != IL_ROOM_BARE)
			log_msg(LOG_WARNING,
				"metadata: the disk is full: no room is kept "
				"for a replay after a crash (%d KiB); remove "
				"files to make room",
				RESERVE_OPEN >> 10);
		return IL_ROOM_BARE;
	}
	close(fd);
	return room;
}

/*
 * No room for the reserve: the WAL's pages copied into the database and
 * the WAL cut to nothing (it keeps its blocks otherwise, up to 64 MiB:
 * meta_db.c), which after a crash holds the frames of the replay and of
 * every group since the last checkpoint; then the reserve again. At
 * open only (a running mount's tick tries reserve_make() alone: room a
 * checkpoint freed under a full disk's operations would come and go
 * with its timing). A checkpoint the disk refuses (the database grows)
 * leaves the WAL as it was.
 */
static enum ilog_room reserve_make_tight(struct meta *m, struct meta_ilog *il)
{
	enum ilog_room room = reserve_make(il);
	int frames = 0, copied = 0;

	if (room == IL_ROOM_KEPT || !sqlite3_get_autocommit(m->db))
		return room;
	if (sqlite3_wal_checkpoint_v2(m->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
				      &frames, &copied) != SQLITE_OK) {
		log_msg(LOG_WARNING,
			"metadata: the disk is full: the WAL cannot be "
			"checkpointed to make room: %s",
			sqlite3_errmsg(m->db));
		return room;
	}
	return reserve_make(il);
}

/* Give the group's tier of the reserve back: whether it was there. */
static bool reserve_release(struct meta_ilog *il)
{
	struct stat sb;

	if (stat(il->reserve, &sb) < 0 || sb.st_size <= RESERVE_OPEN ||
	    truncate(il->reserve, RESERVE_OPEN) < 0)
		return false;
	if (il->room == IL_ROOM_KEPT)
		log_msg(LOG_WARNING,
			"metadata: the disk is full: the intent log is off, "
			"each operation commits on its own until %d MiB are "
			"free again",
			RESERVE_GROUP >> 20);
	il->room = IL_ROOM_SOLO;
	return true;
}

int meta_room(struct meta *m)
{
	struct meta_ilog *il = m->ilog;
	struct statvfs sv;

	if (!il || il->room == IL_ROOM_KEPT)
		return 0;
	if (fstatvfs(il->fd, &sv) < 0)
		return 0; /* no answer: the commit finds out */
	return (uint64_t)sv.f_bavail * sv.f_frsize < RESERVE_GROUP ? -ENOSPC
								   : 0;
}

void meta_ilog_unreserve(const char *beside)
{
	char path[PATH_MAX];

	path_beside(beside, RESERVE_NAME, path);
	if (unlink(path) == 0)
		log_msg(LOG_INFO,
			"metadata: the room the store kept on its disk is "
			"given back to this open");
}

bool meta_grouping(struct meta *m)
{
	return m->ilog && m->ilog->room == IL_ROOM_KEPT;
}

/*
 * The log applied whole: the next record goes right after the header,
 * over the old ones, whose end mark ends the replay until then (and
 * whose sequences the database covers). Not cut: freeing the blocks at
 * every group made each commit wait for the disk's discard (a store on
 * an ext4 mounted with -o discard: tar x of 3,000 small files, 3,825
 * waits in ext4_free_blocks). A log grown past LOG_KEEP is cut.
 */
static void ilog_empty(struct meta_ilog *il)
{
	if (il->bytes > LOG_KEEP && ftruncate(il->fd, HEADER_LEN) < 0)
		return;
	il->bytes = HEADER_LEN;
}

/* The last sequence the database applied (config ilog_seq; 0 before
 * any): 0 or -errno. */
static int applied_seq(struct meta *m, int64_t *applied)
{
	int rc = meta_config_get(m, "ilog_seq", applied);

	if (rc == -ENOENT) {
		*applied = 0;
		rc = 0;
	}
	return rc;
}

/*
 * A group that could not be applied again (below) is tried again before
 * each operation, a transaction per record: 0 once the log is applied;
 * -ENOSPC or -EIO while it is not (the operation is refused; what is
 * answered waits in the log, and a remount replays it too).
 */
static int unbreak(struct meta *m)
{
	struct meta_ilog *il = m->ilog;
	struct replayed rp;
	int64_t applied = 0;
	int rc;

	to(il, IL_COMMIT); /* its own reads: not refused as broken */
	rc = applied_seq(m, &applied);
	if (!rc)
		rc = replay(m, il->fd, HEADER_LEN, (uint64_t)applied, true,
			    &rp);
	if (!rc && rp.last != il->seq)
		rc = -EIO;
	if (rc) {
		to(il, IL_BROKEN);
		return rc == -ENOSPC ? -ENOSPC : -EIO;
	}
	to(il, IL_IDLE);
	ilog_empty(il);
	log_msg(LOG_NOTICE,
		"metadata: the operations that waited in the intent log "
		"are applied (%" PRIu64 ")",
		rp.done);
	return 0;
}

/*
 * The open group is gone (SQLite rolled the whole transaction back: an
 * I/O error, a full disk): apply its records again from the log, in a
 * transaction of their own (or, on a disk too full for that, one per
 * record), then start afresh. 0; or -ENOSPC or -EIO, and until unbreak() applies
 * them every later operation is refused.
 */
static int regroup(struct meta *m)
{
	struct meta_ilog *il = m->ilog;
	struct replayed rp;
	int64_t applied = 0;
	int rc;

	if (il->state == IL_BROKEN)
		return unbreak(m);
	if (!lost(m))
		return 0;
	to(il, IL_COMMIT);
	rc = applied_seq(m, &applied);
	if (!rc)
		rc = replay(m, il->fd, HEADER_LEN, (uint64_t)applied, false,
			    &rp);
	/* too full for the group's pages: with the reserve given back,
	 * then a transaction per record */
	if (rc == -ENOSPC && reserve_release(il))
		rc = replay(m, il->fd, HEADER_LEN, (uint64_t)applied, false,
			    &rp);
	if (rc == -ENOSPC)
		rc = replay(m, il->fd, HEADER_LEN, (uint64_t)applied, true,
			    &rp);
	if (!rc && rp.last != il->seq)
		rc = -EIO; /* the log does not hold the whole group */
	if (rc) {
		to(il, IL_BROKEN);
		log_msg(LOG_ERR,
			"metadata: a group of %u operation(s) was rolled "
			"back and cannot be applied again yet (%s): they "
			"wait in the intent log, and operations are refused "
			"until they are applied",
			il->ops, strerror(-rc));
		return rc == -ENOSPC ? -ENOSPC : -EIO;
	}
	log_msg(LOG_WARNING,
		"metadata: a group rolled back by the engine was applied "
		"again from the intent log (%" PRIu64 " operation(s))",
		rp.done);
	to(il, IL_IDLE);
	ilog_empty(il);
	return 0;
}

int meta_ilog_op_begin(struct meta *m)
{
	struct meta_ilog *il = m->ilog;
	int rc = 0;

	if (in_op(il)) { /* as BEGIN inside a transaction: refused */
		log_msg(LOG_ERR, "metadata: a transaction inside another");
		return -EBUSY;
	}
	rc = regroup(m);
	if (rc)
		return rc;
	if (il->state == IL_IDLE) {
		rc = meta_exec_id(m, META_D_BEGIN);
		if (rc)
			return rc;
		to(il, IL_GROUP);
		il->ops = 0;
		il->opened = now_ns();
	}
	rc = meta_exec_id(m, META_D_SAVEPOINT);
	if (rc)
		return rc;
	to(il, IL_OP);
	il->n = 0;
	return 0;
}

int meta_ilog_op_commit(struct meta *m)
{
	struct meta_ilog *il = m->ilog;
	int rc = 0;

	if (il->state == IL_OP_UNNOTED) {
		meta_ilog_op_rollback(m);
		return -ENOMEM;
	}
	if (il->n) {
		rc = append(il, il->seq + 1);
		/* a full disk: the reserve makes room for this record, and
		 * the operations after it commit on their own */
		if (rc == -ENOSPC && reserve_release(il))
			rc = append(il, il->seq + 1);
		if (rc) {
			log_msg(LOG_ERR, "cannot append to the intent log: %s",
				strerror(-rc));
			meta_ilog_op_rollback(m);
			return rc;
		}
		il->seq++;
	}
	rc = meta_exec_id(m, META_D_RELEASE);
	to(il, IL_GROUP);
	il->n = 0;
	if (rc) {
		/* the record is in the log: a group SQLite rolled back is
		 * applied again from it (regroup()), and the operation is
		 * done; if that fails too, its outcome is not known until
		 * the log is applied (reads are EIO meanwhile): EIO */
		log_msg(LOG_ERR, "metadata: an operation's release failed: %s",
			strerror(-rc));
		return regroup(m) ? -EIO : 0;
	}
	il->ops++;
	/* the operation is done: a group that fails to commit stays open,
	 * its records in the log, and commits later (or at the replay) */
	if (il->room != IL_ROOM_KEPT || il->ops >= GROUP_OPS ||
	    now_ns() - il->opened >= il->age_ns)
		meta_group_commit(m);
	return 0;
}

void meta_ilog_op_rollback(struct meta *m)
{
	struct meta_ilog *il = m->ilog;

	if (!in_op(il))
		return;
	meta_exec_id(m, META_D_ROLLBACK_TO);
	meta_exec_id(m, META_D_RELEASE);
	to(il, IL_GROUP);
	il->n = 0;
	/* a failure that rolled back the whole group (an I/O error, a full
	 * disk without a statement journal) */
	regroup(m);
}

int meta_group_commit(struct meta *m)
{
	struct meta_ilog *il = m->ilog;
	int rc;

	if (!il || il->state != IL_GROUP)
		return 0;
	if (lost(m))
		return regroup(m); /* SQLite rolled it back: applied again */
	to(il, IL_COMMIT);
	{
		sqlite3_int64 before = sqlite3_total_changes64(m->db);

		rc = meta_config_set(m, "ilog_seq", (int64_t)il->seq);
		il->own_changes +=
			(uint64_t)(sqlite3_total_changes64(m->db) - before);
	}
	if (!rc) {
		rc = meta_exec_id(m, META_D_COMMIT);
		if (rc == -ENOSPC && !sqlite3_get_autocommit(m->db) &&
		    reserve_release(il))
			rc = meta_exec_id(m, META_D_COMMIT);
	}
	to(il, rc ? IL_GROUP : IL_IDLE);
	if (rc && lost(m))
		return regroup(m);
	if (rc) {
		/* the group stays open (its records stay in the log): the
		 * next commit tries again */
		log_msg(LOG_ERR, "cannot commit a group of the metadata: %s",
			strerror(-rc));
		return rc;
	}
	il->groups++;
	ilog_empty(il);
	return 0;
}

int meta_group_commit_due(struct meta *m, int64_t age_ns)
{
	struct meta_ilog *il = m->ilog;

	if (il && il->room != IL_ROOM_KEPT && !in_group(il) &&
	    now_ns() - il->reserve_try >= RESERVE_RETRY_NS) {
		enum ilog_room room = reserve_make(il);

		il->reserve_try = now_ns();
		if (room == IL_ROOM_KEPT)
			log_msg(LOG_NOTICE, "metadata: the intent log is on "
					    "again");
		il->room = room;
	}
	if (!il || !in_group(il) || now_ns() - il->opened < age_ns)
		return 0;
	return meta_group_commit(m);
}

bool meta_ilog_committing(struct meta *m)
{
	return m->ilog && m->ilog->state == IL_COMMIT;
}

void meta_ilog_tune(struct meta *m, int64_t age_ns)
{
	if (m->ilog && age_ns > 0)
		m->ilog->age_ns = age_ns;
}

bool meta_group_open(struct meta *m)
{
	return m->ilog && in_group(m->ilog);
}

int meta_ilog_ready(struct meta *m)
{
	struct meta_ilog *il = m->ilog;

	if (!il)
		return 0;
	switch (il->state) {
	case IL_BROKEN:
		return unbreak(m);
	case IL_GROUP:
		return meta_group_commit(m);
	default: /* idle; or an operation, or the log's own, runs */
		return 0;
	}
}

/* Run the statements of one record (NUL-separated text of @len bytes). */
static int run_record(struct meta *m, const char *text, size_t len)
{
	size_t off = 0;

	while (off < len) {
		const char *sql = text + off;
		size_t n = strnlen(sql, len - off);
		char *err = NULL;
		int rc;

		if (n == len - off)
			return -EBADMSG; /* no NUL: not ours */
		rc = sqlite3_exec(m->db, sql, NULL, NULL, &err);
		if (rc != SQLITE_OK) {
			log_msg(LOG_ERR,
				"intent log: a statement does not replay: "
				"%s",
				err ? err : "?");
			sqlite3_free(err);
			/* a full disk: the caller's reserve and per-record
			 * tries; anything else is not this store's log */
			return (rc & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
		}
		off += n + 1;
	}
	return 0;
}

/* meta_ilog_crash_at(): -1 none, 0 after the replay's commit, N after
 * the Nth record replayed (set before any thread starts) */
static long crash_at = -1;

void meta_ilog_crash_at(unsigned nth)
{
	crash_at = nth;
}

static void crash_if(long point)
{
	fault_kill_at(crash_at, point, "during replay");
}

/* End a replay's transaction at @last: 0, or -errno (rolled back). */
static int replay_commit(struct meta *m, uint64_t last)
{
	int rc = meta_config_set(m, "ilog_seq", (int64_t)last);

	if (!rc)
		rc = meta_exec_id(m, META_D_COMMIT);
	if (rc)
		meta_exec_id(m, META_D_ROLLBACK);
	return rc;
}

/*
 * Replay the records after @applied from @fd, whose first record is at
 * @start: what it did in *@out (the count applied, the last sequence
 * applied, the bytes ignored after a damaged or cut record, or after an
 * intact record that does not follow the database's last: left of an
 * earlier pass over the log, which a power loss can bring back). In one
 * transaction; or, with @each (a disk too full for the whole group's
 * pages), one transaction per record, each storing its sequence, so that
 * what committed stays. 0, or -errno of a statement or commit that
 * failed (the transaction it was in is not applied).
 */
static int replay(struct meta *m, int fd, off_t start, uint64_t applied,
		  bool each, struct replayed *out)
{
	struct stat sb;
	char *buf = NULL;
	off_t off = start;
	uint64_t seq = applied, n = 0; /* read, uncommitted included */
	int rc = 0;
	bool began = false, intact = false;

	memset(out, 0, sizeof(*out));
	out->last = applied;
	if (m->ilog && m->ilog->replay_fail) {
		m->ilog->replay_fail--;
		log_msg(LOG_NOTICE, "fault injection: the log's replay fails");
		return -EIO;
	}
	if (fstat(fd, &sb) < 0)
		return -errno;
	while (off < sb.st_size) {
		struct rec_head h;
		ssize_t r = pread(fd, &h, sizeof(h), off);

		if (r == (ssize_t)sizeof(h) && !h.seq && !h.len && !h.sum) {
			off = sb.st_size; /* the end mark: nothing is cut */
			break;
		}
		if (r != (ssize_t)sizeof(h) ||
		    (off_t)(sizeof(h) + h.len) > sb.st_size - off)
			break; /* cut short */
		free(buf);
		buf = malloc(h.len ? h.len : 1);
		if (!buf) {
			rc = -ENOMEM;
			break;
		}
		if (pread(fd, buf, h.len, off + (off_t)sizeof(h)) !=
			    (ssize_t)h.len ||
		    rec_sum(&h, buf) != h.sum)
			break;	    /* damaged */
		if (h.seq <= seq) { /* in the group already */
			off += (off_t)(sizeof(h) + h.len);
			continue;
		}
		if (h.seq != seq + 1) {
			intact = true; /* a gap: not the log of this state */
			break;
		}
		if (!began) {
			rc = meta_exec_id(m, META_D_BEGIN);
			/* the temporary table a branch fills (a connection's
			 * own: the record may take it as made) */
			if (!rc)
				rc = meta_branch_table(m);
			if (rc) {
				if (sqlite3_get_autocommit(m->db) == 0)
					meta_exec_id(m, META_D_ROLLBACK);
				break;
			}
			began = true;
		}
		rc = run_record(m, buf, h.len);
		if (rc) {
			meta_exec_id(m, META_D_ROLLBACK);
			began = false;
			break;
		}
		seq = h.seq;
		n++;
		off += (off_t)(sizeof(h) + h.len);
		if (each) {
			began = false;
			rc = replay_commit(m, seq);
			if (rc)
				break;
			out->last = seq;
			out->done = n;
		}
		crash_if((long)n);
	}
	free(buf);
	if (off < sb.st_size && !rc)
		*(intact ? &out->stale : &out->dropped) =
			(uint64_t)(sb.st_size - off);
	if (began) {
		rc = replay_commit(m, seq);
		if (!rc) {
			out->last = seq;
			out->done = n;
		}
	}
	return rc;
}

/*
 * Whether sqlite3_expanded_sql() writes every bound value whole, which a
 * record's replay relies on: a SQLite built with SQLITE_TRACE_SIZE_LIMIT
 * cuts them silently. Asked of a text and a blob longer than any limit
 * a build would set, once per process (a property of the library).
 */
static int expanded_asked(struct meta *m)
{
	enum {
		LEN = 8192
	};
	char text[LEN];
	unsigned char blob[LEN];
	sqlite3_stmt *st = NULL;
	char *sql = NULL;
	int ok;

	memset(text, 'x', sizeof(text));
	memset(blob, 0xab, sizeof(blob));
	if (sqlite3_prepare_v2(m->db, "SELECT ?1, ?2", -1, &st, NULL) ==
		    SQLITE_OK &&
	    sqlite3_bind_text(st, 1, text, LEN, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_blob(st, 2, blob, LEN, SQLITE_STATIC) == SQLITE_OK)
		sql = sqlite3_expanded_sql(st);
	/* SELECT 'x...x', x'abab...' : the text, and the blob in hex (no
	 * text: not known, asked again next time) */
	ok = sql ? strlen(sql) == strlen("SELECT '', x''") + 3 * LEN ? 1 : 2
		 : 0;
	sqlite3_free(sql);
	sqlite3_finalize(st);
	return ok;
}

static bool expanded_whole(struct meta *m)
{
	static atomic_int known; /* 0 not known, 1 whole, 2 cut */
	int k = atomic_load(&known);

	if (!k) {
		k = expanded_asked(m);
		atomic_store(&known, k);
	}
	return k == 1; /* not known: off for this open, as if cut */
}

/*
 * Check the log open at @fd (@path) against the store and replay what it
 * holds beyond the database's last: 0, or -errno with the store left as
 * it was (a log of another store or of other tables, or one that does
 * not replay, is refused with a message). The database's last sequence
 * in *@applied.
 */
static int replay_at_open(struct meta *m, const char *path, int fd,
			  uint64_t store_id, int64_t *applied,
			  struct meta_ilog_stats *stats)
{
	struct log_head h;
	struct replayed rp;
	int rc = head_read(fd, &h);

	if (rc == -EUCLEAN) {
		log_msg(LOG_ERR,
			"'%s' is not an intent log of tallyfs, or its header "
			"is damaged: refused",
			path);
		return rc;
	}
	if (rc < 0)
		return rc;
	if (rc && h.store != store_id) {
		log_msg(LOG_ERR,
			"the intent log '%s' is another store's: refused",
			path);
		return -EUCLEAN;
	}
	/* the records replay onto the tables they were written for: the
	 * store's as found, an upgrade of them waits for the replay
	 * (meta_open(), meta_upgrade_due()) */
	if (rc && h.has_schema && h.schema != m->schema) {
		log_msg(LOG_ERR,
			"the intent log '%s' was written for other tables than "
			"the store has (schema %016" PRIx64
			", the store's %016" PRIx64
			"): refused; the tallyfs that wrote it replays it",
			path, h.schema, m->schema);
		return -EUCLEAN;
	}
	/* the room the store kept on its disk (meta.reserve, beside the
	 * log): this open's, its replay's above all (a crash on a full
	 * disk), before anything commits; kept again by the caller */
	meta_ilog_unreserve(path);
	/* the last sequence applied, log or no log: the records appended
	 * from now on follow it (a replay skips what it covers) */
	rc = applied_seq(m, applied);
	if (rc || !h.len)
		return rc;
	rc = replay(m, fd, h.len, (uint64_t)*applied, false, &rp);
	if (rc == -ENOSPC) /* a disk too full for it in one */
		rc = replay(m, fd, h.len, (uint64_t)*applied, true, &rp);
	if (rc) {
		log_msg(LOG_ERR,
			"the intent log '%s' does not replay: %s "
			"(the store is left as it was)",
			path, strerror(-rc));
		return rc;
	}
	stats->replayed = rp.done;
	stats->dropped = rp.dropped;
	stats->stale = rp.stale;
	if (rp.stale) /* expected after a power loss: not damage */
		log_msg(LOG_NOTICE,
			"intent log: %" PRIu64 " byte(s) of intact records "
			"that do not follow the store's last ignored (left of "
			"an earlier pass over the log, whose operations the "
			"store had not made durable)",
			rp.stale);
	if (rp.done || rp.dropped || rp.stale)
		log_msg(rp.dropped ? LOG_WARNING : LOG_NOTICE,
			"intent log: %" PRIu64
			" operation(s) replayed, %" PRIu64
			" byte(s) of a damaged or cut tail ignored",
			rp.done, rp.dropped);
	*applied = (int64_t)rp.last;
	/* durable before the log that held it goes */
	if (rp.done) {
		rc = meta_sync(m);
		if (rc)
			return rc;
		crash_if(0);
	}
	return 0;
}

int meta_ilog_open(struct meta *m, const char *path, uint64_t store_id,
		   bool keep, struct meta_ilog_stats *stats)
{
	char want[HEADER_LEN];
	struct meta_ilog *il;
	int64_t applied = 0;
	int fd, rc;

	memset(stats, 0, sizeof(*stats));
	if (m->pg)
		return 0; /* PostgreSQL commits each operation */
	if (keep && !expanded_whole(m)) {
		log_msg(LOG_WARNING,
			"this SQLite cuts the values sqlite3_expanded_sql() "
			"writes (SQLITE_TRACE_SIZE_LIMIT): the intent log is "
			"off, each operation commits on its own");
		keep = false;
	}
	fd = open(path, O_RDWR | (keep ? O_CREAT : 0) | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT && !keep) {
		meta_ilog_unreserve(path); /* no log, none wanted: no room */
		return meta_upgrade_due(m);
	}
	if (fd < 0) {
		rc = -errno;
		log_msg(LOG_ERR, "cannot open the intent log '%s': %s", path,
			strerror(-rc));
		return rc;
	}
	rc = replay_at_open(m, path, fd, store_id, &applied, stats);
	/* the tables brought up to date once the log is applied */
	if (!rc)
		rc = meta_upgrade_due(m);
	if (rc) {
		close(fd);
		return rc;
	}
	crash_at = -1; /* the replays of a running mount are not a test's */
	if (!keep) {   /* applied: the log goes (-o nointent_log) */
		close(fd);
		if (unlink(path) < 0)
			return -errno;
		return 0;
	}
	/* everything is applied: a fresh log, for the tables as they are */
	header_text(store_id, m->schema, false, want);
	if (ftruncate(fd, 0) < 0 ||
	    pwrite(fd, want, HEADER_LEN, 0) != HEADER_LEN) {
		rc = -errno;
		close(fd);
		return rc ? rc : -EIO;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	lseek(fd, HEADER_LEN, SEEK_SET);
	il = calloc(1, sizeof(*il));
	if (!il) {
		close(fd);
		return -ENOMEM;
	}
	il->fd = fd;
	il->age_ns = GROUP_NS;
	{
		char rpath[PATH_MAX];

		path_beside(path, RESERVE_NAME, rpath);
		il->reserve = strdup(rpath);
		if (!il->reserve) {
			close(fd);
			free(il);
			return -ENOMEM;
		}
	}
	il->room = reserve_make_tight(m, il);
	if (il->room != IL_ROOM_KEPT) { /* a full disk already: no groups */
		il->reserve_try = now_ns();
		log_msg(LOG_WARNING,
			"metadata: no room for the intent log's reserve: "
			"each operation commits on its own");
	}
	il->seq = (uint64_t)applied;
	il->bytes = HEADER_LEN;
	m->ilog = il;
	return 0;
}

void meta_ilog_close(struct meta *m)
{
	struct meta_ilog *il = m->ilog;

	if (!il)
		return;
	if (in_op(il))
		meta_ilog_op_rollback(m);
	meta_group_commit(m);
	/* applied whole: the log is its header alone, as a mount makes it
	 * (whose ever store a later mount is, nothing here is to apply) */
	if (il->bytes == HEADER_LEN && ftruncate(il->fd, HEADER_LEN) < 0)
		log_msg(LOG_WARNING, "intent log: cannot cut it: %s",
			strerror(errno));
	m->ilog = NULL;
	close(il->fd);
	/* the reserve stays: the room of the next open (a disk filled
	 * while the store is not mounted) */
	free(il->reserve);
	free(il->rec);
	free(il);
}

void meta_ilog_inject_loss(struct meta *m, unsigned replays)
{
	struct meta_ilog *il = m->ilog;

	if (!il || in_op(il))
		return;
	if (il->state == IL_GROUP)
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	il->replay_fail = replays;
}

uint64_t meta_ilog_groups(struct meta *m)
{
	return m->ilog ? m->ilog->groups : 0;
}

int meta_ilog_note_text(struct meta *m, const char *sql)
{
	struct meta_ilog *il = m->ilog;
	size_t len = strlen(sql) + 1; /* each statement ends with its NUL */

	if (array_reserve(&il->rec, &il->cap, il->n + len, 1)) {
		to(il, IL_OP_UNNOTED);
		return -ENOMEM;
	}
	memcpy(il->rec + il->n, sql, len);
	il->n += len;
	return 0;
}
