/* SPDX-License-Identifier: MIT */
/*
 * tallyfs: option parsing, mounting and daemonizing.
 *
 * The daemon forks before it opens the store (SQLite connections and their
 * POSIX locks must not cross a fork); the parent waits until the child has
 * mounted, or failed, and exits with the child's verdict, so errors such as
 * a refused store reach the terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cluster/cluster.h"
#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/objects/objstore.h"
#include "core/remote/remote.h"
#include "core/fs/tally.h"
#include "core/util/metrics.h"
#include "fs/fs.h"
#include "fs/metrics_http.h"

struct options {
	char *store;
	unsigned block_size;
	double entry_timeout;
	double attr_timeout;
	unsigned long inode_dirty_mb;
	unsigned long long dirty_limit;
	unsigned workers;
	unsigned max_pending;
	long long report_interval;
	long long stale_after;
	unsigned min_nodes;
	long long gc_interval;
	int nosplice;
	int noxattr;
	int nonegcache;
	int writeback;	    /* 1 writeback, 0 nowriteback, -1 not given */
	char *sync_objects; /* auto, file or fs */
	char *meta;	    /* postgres://... (NULL: STORE/meta.db) */
	unsigned heartbeat; /* seconds between a session's heartbeats */
	unsigned group_ms;  /* the intent log's groups: their longest age */
	int no_intent_log;  /* each operation committed on its own */
	int compress_local; /* a new store's object files compressed */
	char *remote;	    /* s3://BUCKET[/PREFIX] */
	char *remote_endpoint, *remote_region;
	char *key_file, *compress; /* the envelope of bodies in the bucket */
	unsigned max_uploads;
	char *cache_size; /* bytes, or with K, M, G, T */
	long long remote_delete_delay;
	double remote_drain_timeout;
	double remote_retry_max;
	double upload_delay;
	unsigned remote_timeout;
	double snapshot_interval;
	unsigned snapshot_keep;
	int restore;	/* --restore: make STORE from the bucket, exit */
	char *snapshot; /* --restore: which snapshot */
	char *metrics;	/* ADDR:PORT of the HTTP listener for Prometheus */
	int restore_incomplete;
	int shared;	  /* allow_other or allow_root: other users may enter */
	int kernel_perms; /* default_permissions given */
	int help;
	int version;
};

enum {
	KEY_SHARED = 1,
	KEY_KERNEL_PERMS
};

#define OPT(t, p)                                 \
	{                                         \
		t, offsetof(struct options, p), 1 \
	}
static const struct fuse_opt option_spec[] = {
	OPT("block_size=%u", block_size),
	OPT("entry_timeout=%lf", entry_timeout),
	OPT("attr_timeout=%lf", attr_timeout),
	OPT("inode_dirty_mb=%lu", inode_dirty_mb),
	OPT("dirty_limit=%llu", dirty_limit),
	OPT("workers=%u", workers),
	OPT("max_pending_flushes=%u", max_pending),
	OPT("report_interval=%lld", report_interval),
	OPT("stale_after=%lld", stale_after),
	OPT("min_nodes_reporting=%u", min_nodes),
	OPT("gc_interval=%lld", gc_interval),
	OPT("nosplice", nosplice),
	OPT("noxattr", noxattr),
	OPT("nonegcache", nonegcache),
	{ "writeback", offsetof(struct options, writeback), 1 },
	{ "nowriteback", offsetof(struct options, writeback), 0 },
	OPT("sync_objects=%s", sync_objects),
	OPT("meta=%s", meta),
	OPT("heartbeat=%u", heartbeat),
	OPT("group_ms=%u", group_ms),
	OPT("nointent_log", no_intent_log),
	OPT("compress_local", compress_local),
	OPT("remote=%s", remote),
	OPT("remote_endpoint=%s", remote_endpoint),
	OPT("remote_region=%s", remote_region),
	OPT("key_file=%s", key_file),
	OPT("compress=%s", compress),
	OPT("max_uploads=%u", max_uploads),
	OPT("cache_size=%s", cache_size),
	OPT("remote_delete_delay=%lld", remote_delete_delay),
	OPT("remote_drain_timeout=%lf", remote_drain_timeout),
	OPT("remote_retry_max=%lf", remote_retry_max),
	OPT("upload_delay=%lf", upload_delay),
	OPT("remote_timeout=%u", remote_timeout),
	OPT("snapshot_interval=%lf", snapshot_interval),
	OPT("snapshot_keep=%u", snapshot_keep),
	OPT("--restore", restore),
	OPT("snapshot=%s", snapshot),
	OPT("restore_incomplete", restore_incomplete),
	OPT("metrics=%s", metrics),
	OPT("-h", help),
	OPT("--help", help),
	OPT("-V", version),
	OPT("--version", version),
	FUSE_OPT_KEY("allow_other", KEY_SHARED),
	FUSE_OPT_KEY("allow_root", KEY_SHARED),
	FUSE_OPT_KEY("default_permissions", KEY_KERNEL_PERMS),
	FUSE_OPT_END
};

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	/* noted, and passed on to libfuse */
	if (key == KEY_SHARED)
		o->shared = 1;
	if (key == KEY_KERNEL_PERMS)
		o->kernel_perms = 1;
	if (key == FUSE_OPT_KEY_NONOPT && !o->store) {
		o->store = strdup(arg);
		return 0; /* consumed: the next one is the mountpoint */
	}
	return 1;
}

static void usage(const char *prog)
{
	printf("usage: %s [-f] [-o OPTIONS] STORE MOUNTPOINT\n"
	       "       %s --restore -o remote=s3://BUCKET[/PREFIX],"
	       "remote_endpoint=URL\n"
	       "          [-o snapshot=NAME] [-o restore_incomplete] [-o key_file=PATH]\n"
	       "          STORE\n"
	       "\n"
	       "Mount the tallyfs store STORE (created on first use) on\n"
	       "MOUNTPOINT. Top-level directories are namespaces; see\n"
	       "MOUNTPOINT/.tally/ctl and MOUNTPOINT/.tally/status.\n"
	       "Unmount with: fusermount3 -u MOUNTPOINT\n"
	       "\n"
	       "tallyfs options:\n"
	       "    -o block_size=BYTES     block size of a new store "
	       "(default 1048576)\n"
	       "    -o meta=postgres://USER@HOST:PORT/DB  the metadata in "
	       "PostgreSQL,\n"
	       "                            shared by the mounts of several "
	       "hosts (the\n"
	       "                            password from PGPASSWORD or "
	       "PGPASSFILE)\n"
	       "    -o nointent_log         commit each metadata operation "
	       "on its own\n"
	       "    -o group_ms=MS          the metadata operations the intent "
	       "log groups\n"
	       "                            into one commit: at most this "
	       "old (default 5)\n"
	       "    -o heartbeat=SECS       the session's heartbeat (default "
	       "12); it expires\n"
	       "                            when five are missed\n"
	       "    -o entry_timeout=SECS   kernel name cache (default 3600; "
	       "1 with meta=)\n"
	       "    -o attr_timeout=SECS    kernel attribute cache "
	       "(default 3600; 1 with meta=)\n"
	       "    -o inode_dirty_mb=MB    a sequential writer's buffered data "
	       "that starts a flush (default 8)\n"
	       "    -o dirty_limit=BYTES    all buffered data; writers wait "
	       "above it (default: a tenth of memory, 256 MiB to 4 GiB)\n"
	       "    -o max_pending_flushes=N  flushes in flight (default 32)\n"
	       "    -o workers=N            flush threads (default: one per "
	       "CPU)\n"
	       "    -o report_interval=SECS node report period (default 60)\n"
	       "    -o stale_after=SECS     GC prunes older node reports "
	       "(default 600)\n"
	       "    -o min_nodes_reporting=N  GC collects only with N reports "
	       "(default 1)\n"
	       "    -o gc_interval=SECS     automatic GC cycles (default: "
	       "none)\n"
	       "    -o nowriteback          every write() goes to the daemon "
	       "at once (default:\n"
	       "                            the kernel's writeback cache, "
	       "off with meta=)\n"
	       "    -o noxattr              no extended attributes (ENOSYS): "
	       "the kernel then\n"
	       "                            asks nothing before each write "
	       "(faster small writes)\n"
	       "    -o nonegcache           with meta=, every lookup of a "
	       "missing name asks\n"
	       "                            the server (a name another node "
	       "made is found at once)\n"
	       "    -o nosplice             copy read replies instead of "
	       "splicing them from object files\n"
	       "    -o sync_objects=MODE    how objects are made durable: "
	       "auto (default:\n"
	       "                            syncfs, file by file on FUSE, "
	       "NFS, SMB, 9p),\n"
	       "                            file (fsync of each object and "
	       "its directory)\n"
	       "                            or fs (syncfs everywhere)\n"
	       "",
	       prog, prog);
	printf("    -o remote=s3://BUCKET[/PREFIX]  ship objects to this "
	       "bucket (the store\n"
	       "                            becomes its cache; credentials "
	       "from AWS_* or\n"
	       "                            ~/.aws/credentials)\n"
	       "    -o remote_endpoint=URL  the S3 server, http[s]://HOST[:PORT]\n"
	       "    -o remote_region=NAME   signing region (default us-east-1)\n"
	       "    -o key_file=PATH        encrypt bodies in the bucket "
	       "(AES-256-GCM) with\n"
	       "                            the key in PATH (32 bytes or "
	       "more, mode 0600),\n"
	       "                            set when the store is bound\n"
	       "    -o compress=zstd[:LEVEL]  compress bodies in the bucket "
	       "(level 1-19,\n"
	       "                            default 3); none: do not\n"
	       "    -o compress_local       a new store keeps its object files "
	       "compressed\n"
	       "                            too (zstd at compress's level; "
	       "set when the\n"
	       "                            store is made; not spliced)\n"
	       "    -o max_uploads=N        uploads in flight (default 8)\n"
	       "    -o cache_size=BYTES     local object bytes kept (K, M, G, "
	       "T suffixes;\n"
	       "                            default: everything)\n"
	       "    -o remote_delete_delay=SECS  deletions in the bucket lag "
	       "(default 7 days)\n"
	       "    -o remote_drain_timeout=SECS  uploads waited for at "
	       "unmount (default 60)\n"
	       "    -o remote_timeout=SECS  a request that moves no byte this "
	       "long is cut\n"
	       "                            and retried (default 30)\n"
	       "    -o upload_delay=SECS    an object is shipped this long after "
	       "its commit\n"
	       "                            (default 1; drain remote does "
	       "not wait)\n"
	       "    -o snapshot_interval=SECS  metadata snapshots to the "
	       "bucket (default 3600;\n"
	       "                            0: only on drain remote)\n"
	       "    -o snapshot_keep=N      snapshots kept (default 24)\n"
	       "    -o remote_retry_max=SECS  longest wait between retries "
	       "(default 30)\n"
	       "    -o metrics=ADDR:PORT    serve GET /metrics to Prometheus "
	       "there (e.g.\n"
	       "                            127.0.0.1:9108; [::1]:9108)\n"
	       "    -f                      stay in the foreground\n"
	       "    -V, --version           print the version\n"
	       "\n");
	printf("FUSE options:\n");
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

static void fuse_log_to_ours(enum fuse_log_level level, const char *fmt,
			     va_list ap) __attribute__((format(printf, 2, 0)));

static void fuse_log_to_ours(enum fuse_log_level level, const char *fmt,
			     va_list ap)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_msg((int)level, "%s", line);
}

/* Write @value into the mount's backing device's sysfs file @name. */
static int bdi_set(const struct stat *st, const char *name,
		   unsigned long long value)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/%s",
		 major(st->st_dev), minor(st->st_dev), name);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	fprintf(f, "%llu\n", value);
	return fclose(f) != 0 ? -errno : 0;
}

/*
 * The kernel's limits for this mount, raised through sysfs when allowed
 * (root), once the mount answers:
 * - readahead: capped at the device default (128 KiB) whatever
 *   max_readahead says; a larger window cut read requests by 8x here;
 * - with the writeback cache, the dirty pages it may hold: FUSE mounts
 *   get 1 % of the dirty threshold (about 50 MB here), past which a
 *   writer waits for its pages to be written back, so random writes into
 *   a larger file reached the daemon page by page as without the cache
 *   (about 20k 4 KiB writes/s either way in a 256 MiB file). With
 *   WB_MAX_BYTES: 31-35k. Not more: the kernel starts writing back at
 *   half the bound, and a sequential writer's pages held until its fsync
 *   no longer overlap with their commit (1 GiB + fsync, 25 % slower with
 *   2.5 GB, within 4 % of no cache with 256 MiB).
 */
#define WB_MAX_BYTES (256ull << 20)
static void *tune_bdi(void *arg)
{
	struct fs *fs = arg;
	struct stat st;
	int rc;

	if (stat(fs->mountpoint, &st) < 0)
		return NULL;
	rc = bdi_set(&st, "read_ahead_kb", 1024);
	if (rc)
		log_msg(LOG_DEBUG, "cannot raise readahead: %s", strerror(-rc));
	if (!atomic_load(&fs->writeback))
		return NULL;
	rc = bdi_set(&st, "max_bytes", fs->wb_max);
	if (rc)
		log_msg(LOG_INFO,
			"the kernel keeps its own bound of this mount's "
			"dirty pages (about 1 %% of its dirty threshold): "
			"cannot set max_bytes: %s",
			strerror(-rc));
	return NULL;
}

/*
 * Tests only: TALLYFS_FAULT="replay:N:9" kills the daemon during the
 * intent log's replay at open: after N records applied and before they
 * commit, or with N 0 after the commit and before the log is emptied.
 * TALLYFS_FAULT="rekey:N:9" kills it after step N (1 to 3) of a rekey
 * (core/remote/remote_rekey.c); "rekeylost:N" loses the answer to the
 * commit of its step N (1 or 3): committed, its caller told EIO.
 * "holdlost:N" loses the answer to the commit of the Nth open hold of a
 * shared store (core/fs/file.c). "upgrade:1:9" kills it during the
 * upgrade of a store's format, before its commit (core/meta/meta_db.c).
 */
static void inject_replay_crash(void)
{
	const char *spec = getenv("TALLYFS_FAULT");
	unsigned nth;
	int sig;

	if (spec && sscanf(spec, "replay:%u:%d", &nth, &sig) == 2 &&
	    sig == SIGKILL)
		meta_ilog_crash_at(nth);
	if (spec && sscanf(spec, "rekey:%u:%d", &nth, &sig) == 2 &&
	    sig == SIGKILL && nth >= 1 && nth <= 3)
		remote_rekey_crash_at(nth);
	if (spec && sscanf(spec, "rekeylost:%u", &nth) == 1 &&
	    (nth == 1 || nth == 3))
		remote_rekey_lose_at(nth);
	if (spec && sscanf(spec, "holdlost:%u", &nth) == 1)
		tally_inject_hold_lost(nth);
	if (spec && sscanf(spec, "upgrade:%u:%d", &nth, &sig) == 2 &&
	    nth == 1 && sig == SIGKILL)
		meta_upgrade_crash_at(true);
}

/*
 * Tests only: TALLYFS_FAULT="write:N:ERRNO", "sync:N:ERRNO" or
 * "unlink:N:ERRNO" or "rename:N:ERRNO" makes the Nth object write, sync,
 * unlink or rename into place fail once
 * with errno ERRNO (a number). A failed unlink leaves the object file
 * behind (a leak that GC collects). "evict:N:1": the copy the Nth fetch
 * of a read brought is unlinked before the read gets to it.
 */
static void inject_faults(struct fs *fs, struct tally *t)
{
	static const char *const ops[] = {
		[OBJSTORE_WRITE] = "write",
		[OBJSTORE_SYNC] = "sync",
		[OBJSTORE_UNLINK] = "unlink",
		[OBJSTORE_RENAME] = "rename",
	};
	const char *spec = getenv("TALLYFS_FAULT");
	unsigned nth, op;
	char name[8];
	int err, parsed;

	if (!spec || !strncmp(spec, "replay:", 7) ||
	    !strncmp(spec, "rekey:", 6) || !strncmp(spec, "rekeylost:", 10) ||
	    !strncmp(spec, "holdlost:", 9) || !strncmp(spec, "upgrade:", 8))
		return;
	parsed = sscanf(spec, "%7[a-z]:%u:%d", name, &nth, &err) == 3;
	if (parsed && strcmp(name, "evict") == 0 && nth > 0) {
		/* the copy the nth fetch of a read brought, before the read */
		log_msg(LOG_NOTICE, "fault injection: fetch %u is evicted",
			nth);
		tally_inject_evict(t, nth);
		return;
	}
	if (parsed && strcmp(name, "splice") == 0 && nth > 0) {
		/* the nth splice of an object file into a reply's pipe */
		log_msg(LOG_NOTICE, "fault injection: splice %u fails", nth);
		fs->splice_fail_at = nth;
		return;
	}
	if (!parsed || err <= 0)
		op = OBJSTORE_NOPS;
	else
		for (op = 0; op < OBJSTORE_NOPS && strcmp(name, ops[op]); op++)
			;
	if (op == OBJSTORE_NOPS) {
		log_msg(LOG_WARNING, "ignoring TALLYFS_FAULT='%s'", spec);
		return;
	}
	log_msg(LOG_NOTICE, "fault injection: %s %u fails with %s", name, nth,
		strerror(err));
	objstore_inject(tally_objstore(t), (enum objstore_op)op, nth, -err);
}

/* Fork; the parent waits for the child's verdict on a pipe. */
static int start_daemon(int *notify)
{
	int p[2];
	pid_t pid;
	char c;

	if (pipe(p) < 0) {
		perror("tallyfs: pipe");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("tallyfs: fork");
		return -1;
	}
	if (pid > 0) {
		int status;

		close(p[1]);
		if (read(p[0], &c, 1) == 1)
			_exit(c);
		/* the child died before it said anything */
		if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
			_exit(WEXITSTATUS(status) ? WEXITSTATUS(status) : 1);
		_exit(1);
	}
	close(p[0]);
	setsid();
	*notify = p[1];
	return 0;
}

static void detach(int notify)
{
	int fd = open("/dev/null", O_RDWR);
	char ok = 0;

	if (chdir("/") < 0)
		log_msg(LOG_WARNING, "chdir / failed: %s", strerror(errno));
	log_to_syslog("tallyfs");
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	if (write(notify, &ok, 1) != 1)
		log_msg(LOG_WARNING, "cannot notify the parent process");
	close(notify);
}

/* BYTES with an optional K, M, G or T (powers of 1024): 0 or -1. */
static int parse_bytes(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	switch (*end) {
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	case '\0':
		break;
	default:
		return -1;
	}
	if (shift && end[1])
		return -1;
	if (shift && v > (~0ULL >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

/* compress=zstd[:LEVEL] or none: the zstd level into *@level (0: none). */
static int parse_compress(const char *v, int *level)
{
	char *end;
	long l;

	if (!strcmp(v, "none")) {
		*level = 0;
		return 0;
	}
	if (!strcmp(v, "zstd")) {
		*level = SEAL_ZSTD_DEFAULT;
		return 0;
	}
	if (strncmp(v, "zstd:", 5))
		return -1;
	errno = 0;
	l = strtol(v + 5, &end, 10);
	if (errno || *end || end == v + 5 || l < 1 || l > 19)
		return -1;
	*level = (int)l;
	return 0;
}

/* The remote tier's options, checked before the daemon starts: 0, or -1
 * with a message. */
static int remote_options(const char *prog, const struct options *o,
			  struct remote_opts *r, bool *on)
{
	char err[256];
	int rc;

	memset(r, 0, sizeof(*r));
	if (!o->remote) {
		if (o->remote_endpoint || o->remote_region || o->cache_size ||
		    o->max_uploads || o->key_file ||
		    (o->compress && !o->compress_local)) {
			fprintf(stderr,
				"%s: remote_endpoint, remote_region, "
				"cache_size, max_uploads, key_file and "
				"compress need -o remote=s3://BUCKET "
				"(compress also goes with compress_local)\n",
				prog);
			return -1;
		}
	}
	if (o->compress && parse_compress(o->compress, &r->compress)) {
		fprintf(stderr,
			"%s: compress is zstd, zstd:LEVEL (1 to 19) or none, "
			"not '%s'\n",
			prog, o->compress);
		return -1;
	}
	if (!o->remote)
		return 0;
	if (o->key_file) {
		rc = seal_key_load(o->key_file, &r->key, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "%s: %s\n", prog, err);
			return -1;
		}
		r->keyed = true;
	}
	if (!o->remote_endpoint) {
		fprintf(stderr, "%s: -o remote needs -o remote_endpoint=URL\n",
			prog);
		return -1;
	}
	if (o->cache_size && parse_bytes(o->cache_size, &r->cache_size)) {
		fprintf(stderr,
			"%s: cache_size is a number of bytes, not '%s'\n", prog,
			o->cache_size);
		return -1;
	}
	if (o->max_uploads > 256) {
		fprintf(stderr, "%s: max_uploads is 1 to 256\n", prog);
		return -1;
	}
	rc = s3_cfg_parse(&r->cfg, o->remote, o->remote_endpoint,
			  o->remote_region, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "%s: %s\n", prog,
			rc == -ENOKEY ? "no S3 credentials: set "
					"AWS_ACCESS_KEY_ID and "
					"AWS_SECRET_ACCESS_KEY, or a profile "
					"in ~/.aws/credentials"
				      : err);
		s3_cfg_release(&r->cfg);
		return -1;
	}
	r->max_uploads = o->max_uploads;
	r->delete_delay = o->remote_delete_delay;
	r->drain_timeout = o->remote_drain_timeout;
	r->retry_max = o->remote_retry_max;
	r->upload_delay = o->upload_delay;
	r->cfg.stall_timeout = o->remote_timeout;
	r->snapshot_interval = o->snapshot_interval;
	r->snapshot_keep = o->snapshot_keep;
	*on = true;
	return 0;
}

static void say_line(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "%s\n", line);
}

/* tallyfs --restore -o remote=...,remote_endpoint=... STORE */
static int restore(const char *prog, const struct options *o)
{
	struct remote_restore_opts ro = { 0 };
	struct remote_restore_report rep;
	struct remote_opts r;
	bool on = false;
	int rc;

	if (!o->store || !o->remote) {
		fprintf(stderr,
			"usage: %s --restore -o remote=s3://BUCKET[/PREFIX],"
			"remote_endpoint=URL [-o snapshot=NAME] "
			"[-o restore_incomplete] [-o key_file=PATH] STORE\n",
			prog);
		return 2;
	}
	if (o->compress_local) {
		fprintf(stderr,
			"%s: compress_local is decided when a store is made: "
			"a restore keeps the one of the store it restores\n",
			prog);
		return 2;
	}
	if (remote_options(prog, o, &r, &on))
		return 2;
	ro.cfg = &r.cfg;
	ro.store = o->store;
	ro.snapshot = o->snapshot;
	ro.incomplete_ok = o->restore_incomplete;
	ro.keyed = r.keyed;
	ro.key = r.key;
	rc = remote_restore(&ro, &rep, say_line, NULL);
	explicit_bzero(&r.key, sizeof(r.key));
	explicit_bzero(&ro.key, sizeof(ro.key));
	s3_cfg_release(&r.cfg);
	printf("snapshot: %s\nobjects: %llu\nmissing: %llu\n"
	       "bucket_keys: %llu\nkept: %llu\ninodes: %llu\nbytes: %llu\n"
	       "seconds: %.2f\nstatus: %s\n",
	       rep.snapshot[0] ? rep.snapshot : "none",
	       (unsigned long long)rep.objects, (unsigned long long)rep.missing,
	       (unsigned long long)rep.bucket_keys,
	       (unsigned long long)rep.kept, (unsigned long long)rep.inodes,
	       (unsigned long long)rep.bytes, rep.seconds,
	       rc ? strerror(-rc) : "restored");
	return rc ? 1 : 0;
}

static void inval_entry(void *arg, uint64_t parent, const char *name)
{
	struct fs *fs = arg;

	/* -ENOENT: the kernel does not cache it; nothing to do */
	fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = { .entry_timeout = -1,
			     .attr_timeout = -1,
			     .remote_delete_delay = -1,
			     .remote_drain_timeout = -1,
			     .snapshot_interval = -1,
			     .upload_delay = -1,
			     .writeback = -1 };
	struct fuse_cmdline_opts cmd;
	struct fuse_lowlevel_ops ops;
	struct fuse_loop_config *loop;
	struct metrics_http_addr maddr;
	struct metrics_http *http = NULL;
	int mfd = -1;
	struct tally_opts topts;
	struct fuse_session *se;
	struct fs fs = { 0 };
	pthread_t tuner;
	struct stat mst;
	bool tuning = false;
	struct remote_opts ropts;
	bool remote_on = false;
	char fsname[PATH_MAX + 16];
	int notify = -1, ret = 1, rc;
	bool kernel_perms;

	memset(&cmd, 0, sizeof(cmd));
	if (fuse_opt_parse(&args, &o, option_spec, opt_proc) < 0) {
		ret = 2;
		goto out_args;
	}
	if (o.help || o.version) {
		if (o.help)
			usage(argv[0]);
		else
			printf("tallyfs %s (libfuse %s)\n", TALLY_VERSION,
			       fuse_pkgversion());
		ret = 0;
		goto out_args;
	}
	if (o.restore) {
		ret = restore(argv[0], &o);
		goto out_args;
	}
	if (fuse_parse_cmdline(&args, &cmd) != 0) {
		ret = 2;
		goto out_args;
	}
	if (o.sync_objects && strcmp(o.sync_objects, "auto") &&
	    strcmp(o.sync_objects, "file") && strcmp(o.sync_objects, "fs")) {
		fprintf(stderr,
			"%s: sync_objects is auto, file or fs, not '%s'\n",
			argv[0], o.sync_objects);
		ret = 2;
		goto out_args;
	}
	if (remote_options(argv[0], &o, &ropts, &remote_on)) {
		ret = 2;
		goto out_args;
	}
	if (o.metrics) {
		char err[256];

		if (metrics_http_parse(o.metrics, &maddr, err, sizeof(err))) {
			fprintf(stderr, "%s: %s\n", argv[0], err);
			ret = 2;
			goto out_args;
		}
	}
	if (o.writeback == 1 && (o.meta || cmd.singlethread)) {
		fprintf(stderr, "%s: -o writeback %s\n", argv[0],
			o.meta ? "cannot go with meta=: the kernel keeps its "
				 "own size of a file it caches, and would cut "
				 "short what other nodes write"
			       : "needs the multi-threaded loop (not -s): "
				 "the kernel's pages of an open file are "
				 "sent while a request waits");
		ret = 2;
		goto out_args;
	}
	if (!o.store || !cmd.mountpoint) {
		fprintf(stderr,
			"usage: %s [-f] [-o OPTIONS] STORE MOUNTPOINT "
			"(see --help)\n",
			argv[0]);
		ret = 2;
		goto out_args;
	}
	/* the kernel mounts a FUSE filesystem on a regular file too: its
	 * root, a directory, would then be a file, and every access EIO */
	if (strncmp(cmd.mountpoint, "/dev/fd/", 8) != 0 &&
	    stat(cmd.mountpoint, &mst) == 0 && !S_ISDIR(mst.st_mode)) {
		fprintf(stderr, "%s: cannot mount on '%s': %s\n", argv[0],
			cmd.mountpoint, strerror(ENOTDIR));
		ret = 2;
		goto out_args;
	}
	if (cmd.debug)
		log_set_level(LOG_DEBUG);
	fuse_set_log_func(fuse_log_to_ours);
	/*
	 * The kernel checks permissions (default_permissions), except on a
	 * mount private to root: a daemon run by root without allow_other
	 * lets only root's processes in, which the mode bits do not stop,
	 * and the check would cost a GETATTR of the parent directory after
	 * every create, link, unlink, mkdir and rmdir in it (a change of a
	 * directory invalidates its attributes in the kernel). There the
	 * daemon answers access(2) (fs_op_access) and the kernel still
	 * refuses to execute a file with no x bit.
	 */
	/* (libfuse mounts for the real uid: a set-user-ID root daemon
	 * makes the mount its caller's) */
	kernel_perms = o.kernel_perms || o.shared || geteuid() != 0 ||
		       getuid() != 0;
	if (kernel_perms && !o.kernel_perms &&
	    strncmp(cmd.mountpoint, "/dev/fd/", 8) == 0) {
		/* mounted already by the caller (mount.fuse3 with
		 * drop_privileges): too late to add the option */
		fprintf(stderr,
			"%s: a mount that other users can enter needs the "
			"kernel's permission checks: add -o "
			"default_permissions\n",
			argv[0]);
		ret = 2;
		goto out_args;
	}
	if (kernel_perms && !o.kernel_perms)
		fuse_opt_add_arg(&args, "-odefault_permissions");
	if (!strchr(o.store, ',')) {
		snprintf(fsname, sizeof(fsname), "-ofsname=tallyfs:%s",
			 o.store);
		fuse_opt_add_arg(&args, fsname);
	}
	/* bound before the fork: a port in use refuses the mount here */
	if (o.metrics) {
		rc = metrics_http_listen(&maddr, &mfd);
		if (rc) {
			fprintf(stderr,
				"%s: cannot listen on '%s' for metrics: %s\n",
				argv[0], o.metrics, strerror(-rc));
			goto out_args;
		}
	}
	if (!cmd.foreground && start_daemon(&notify) < 0)
		goto out_args;

	memset(&topts, 0, sizeof(topts));
	topts.block_size = o.block_size;
	topts.create = true;
	topts.inode_dirty_max = o.inode_dirty_mb << 20;
	topts.dirty_limit = o.dirty_limit;
	topts.workers = o.workers;
	topts.max_pending = o.max_pending;
	topts.report_interval = o.report_interval > 0 ? o.report_interval : 0;
	topts.stale_after = o.stale_after > 0 ? o.stale_after : 0;
	topts.min_nodes_reporting = o.min_nodes;
	topts.gc_interval = o.gc_interval > 0 ? o.gc_interval : 0;
	topts.sync_objects = !o.sync_objects || !strcmp(o.sync_objects, "auto")
				     ? OBJSTORE_SYNC_AUTO
			     : !strcmp(o.sync_objects, "file")
				     ? OBJSTORE_SYNC_FILE
				     : OBJSTORE_SYNC_FS;
	topts.owner = getuid();
	topts.owner_gid = getgid();
	topts.mountpoint = cmd.mountpoint; /* made absolute by libfuse */
	topts.remote = remote_on ? &ropts : NULL;
	topts.meta = o.meta;
	topts.heartbeat = o.heartbeat;
	topts.group_ms = o.group_ms;
	topts.no_intent_log = o.no_intent_log;
	topts.compress_local = o.compress_local;
	topts.local_level = !o.compress		  ? 0
			    : ropts.compress == 0 ? -1
						  : ropts.compress;
	topts.no_xattrs = o.noxattr;
	topts.no_negcache = o.nonegcache;
	/* other mounts change a shared store: the kernel asks again soon */
	fs.entry_timeout = o.entry_timeout >= 0 ? o.entry_timeout
			   : o.meta		? 1
						: 3600;
	fs.attr_timeout = o.attr_timeout >= 0 ? o.attr_timeout
			  : o.meta	      ? 1
					      : 3600;
	/* a name the kernel looked up is what it acts on that long */
	topts.entry_hint_ms = (int64_t)(fs.entry_timeout * 1000);
	inject_replay_crash();
	rc = tally_open(o.store, &topts, &fs.t);
	/* the remote tier keeps its own copy of the key */
	explicit_bzero(&ropts.key, sizeof(ropts.key));
	if (rc) {
		fprintf(stderr, "tallyfs: cannot open store '%s': %s\n",
			o.store, strerror(-rc));
		goto out_args;
	}
	inject_faults(&fs, fs.t);
	fs.metrics = tally_metrics(fs.t);
	if (mfd >= 0) {
		rc = metrics_http_start(fs.t, mfd, &http);
		mfd = -1; /* the listener's, or closed */
		if (rc) {
			fprintf(stderr,
				"tallyfs: cannot serve metrics on '%s': %s\n",
				o.metrics, strerror(-rc));
			goto out_tally;
		}
	}
	fs.splice = !o.nosplice;
	fs.threads = !cmd.singlethread;
	fs.mountpoint = cmd.mountpoint;
	{
		struct tally_stats ts;

		fs.wb_max = tally_stats(fs.t, &ts) == 0 &&
					    ts.dirty_limit < WB_MAX_BYTES
				    ? ts.dirty_limit
				    : WB_MAX_BYTES;
	}
	/* fs_op_init turns it on if the kernel can */
	atomic_init(&fs.writeback,
		    o.writeback == 1 ||
			    (o.writeback < 0 && !o.meta && !cmd.singlethread));

	fs_ops_timed(&ops);
	se = fuse_session_new(&args, &ops, sizeof(ops), &fs);
	if (!se)
		goto out_tally;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, cmd.mountpoint) != 0)
		goto out_signals;
	if (!cmd.foreground) {
		tally_set_pid(fs.t);
		detach(notify);
		notify = -1;
	}
	log_msg(LOG_INFO, "mounted '%s' on '%s'", tally_store_path(fs.t),
		cmd.mountpoint);
	fs.se = se;
	{
		/* a shared store: what other nodes change leaves the
		 * kernel's caches at once */
		struct tally_inval inval = { inval_entry, fs_inval_inode, &fs };

		if (tally_watch(fs.t, &inval))
			log_msg(LOG_WARNING,
				"no watch of other nodes' changes: "
				"the kernel timeouts bound them");
	}
	/* joined once the session is gone: it reads fs and the mountpoint */
	tuning = pthread_create(&tuner, NULL, tune_bdi, &fs) == 0;
	if (cmd.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		loop = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(loop, (unsigned)cmd.clone_fd);
		fuse_loop_cfg_set_max_threads(loop, cmd.max_threads);
		ret = fuse_session_loop_mt(se, loop);
		fuse_loop_cfg_destroy(loop);
	}
	ret = ret < 0 ? 1 : 0;
	tally_unwatch(fs.t); /* no notification once the session goes */
	tally_set_push(fs.t, NULL, NULL, false);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	if (tuning)
		pthread_join(tuner, NULL);
out_tally:
	metrics_http_stop(http); /* it reads the store */
	rc = tally_close(fs.t);
	if (rc) {
		log_msg(LOG_ERR,
			"committing buffered data at unmount failed: "
			"%s",
			strerror(-rc));
		ret = 1;
	}
	if (ret == 0)
		log_msg(LOG_INFO, "unmounted cleanly");
out_args:
	free(cmd.mountpoint);
	free(o.store);
	free(o.sync_objects);
	free(o.meta);
	free(o.remote);
	free(o.remote_endpoint);
	free(o.remote_region);
	free(o.key_file);
	free(o.compress);
	free(o.cache_size);
	free(o.snapshot);
	free(o.metrics);
	if (mfd >= 0)
		close(mfd);
	if (remote_on)
		s3_cfg_release(&ropts.cfg); /* what tally_open did not take */
	explicit_bzero(&ropts.key, sizeof(ropts.key));
	fuse_opt_free_args(&args);
	return ret;
}
