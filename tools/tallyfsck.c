/* SPDX-License-Identifier: MIT */
/*
 * tallyfsck: offline check (and repair) of a tallyfs store.
 * Exit 0 clean, 1 problems found (or repaired), 2 could not run.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/jobs/fsck.h"
#include "core/util/log.h"
#include "core/meta/meta.h"
#include "core/s3/bucket.h"
#include "core/s3/s3.h"
#include "core/s3/seal.h"
#include "core/objects/store.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tallyfsck [--repair] [--wait[=SECONDS]]\n"
		"                 [--remote-endpoint=URL [--remote-region=R]]\n"
		"                 [--key-file=PATH] [-o OPTIONS] STORE\n"
		"\n"
		"Check an unmounted tallyfs store: recompute every object's\n"
		"reference count from the block references and report drift,\n"
		"dangling references, orphan object files, inodes that\n"
		"no entry names and rows of inodes that are gone.\n"
		"\n"
		"  --repair    rebuild the counts exactly; delete object files\n"
		"              that nothing references (never a referenced one);\n"
		"              the next mount frees the nameless inodes;\n"
		"              rows of inodes that are gone are removed\n"
		"  --wait[=S]  if a process still has the store open (a mount\n"
		"              that is just being unmounted), wait up to S\n"
		"              seconds (default 30) for it to let go\n"
		"  --remote-endpoint=URL  also check the store's bucket at URL\n"
		"              (credentials as for tallyfs): objects recorded\n"
		"              there and missing, keys nothing names\n"
		"  --key-file=PATH  the key of a bucket bound with one (its\n"
		"              keys' names are keyed); also reports the id\n"
		"              this store names it by (key_file_id) and\n"
		"              whether it opens the store (key_file_opens)\n"
		"  -o meta=URI  the store's metadata is in PostgreSQL "
		"(as for tallyfs);\n"
		"              -o also takes remote_endpoint=URL and "
		"remote_region=R\n"
		"  -h, --help  this text\n"
		"  --version   print the version\n"
		"\n"
		"Exit status: 0 clean, 1 problems found (or repaired),\n"
		"2 could not run.\n");
}

static int say_session(void *ctx, const struct meta_session *e)
{
	int64_t now = *(int64_t *)ctx;

	if (e->expires >= now)
		fprintf(stderr,
			"tallyfsck:   node %lld on %s (pid %lld), last "
			"heartbeat %lld s ago\n",
			(long long)e->id, e->host, (long long)e->pid,
			(long long)(now - e->heartbeat));
	return 0;
}

/*
 * A shared store (meta=) has no lock file that mounts hold: its live
 * sessions say whether it is mounted. 0 if none is, -EBUSY (said, when
 * @say) if some are, or -errno.
 */
static int sessions_live(struct store *s, bool say)
{
	int64_t now = 0;
	uint64_t n = 0;
	int rc;

	if (!meta_shared(s->meta))
		return 0;
	/* the server's clock, as the sessions' own times */
	rc = meta_now(s->meta, &now);
	if (!rc)
		rc = meta_sessions_live(s->meta, now, 0, &n);
	if (rc || !n)
		return rc;
	if (say) {
		fprintf(stderr,
			"tallyfsck: the store is mounted: %llu live "
			"session(s)\n",
			(unsigned long long)n);
		meta_sessions(s->meta, say_session, &now);
	}
	return -EBUSY;
}

/* What a wait is for: the process that holds the store's lock (its
 * pid, from STORE/lock), or, @opened, the live sessions of its mounts. */
static void say_waiting(const char *store, bool opened)
{
	char path[4096], pid[32] = "";
	ssize_t n = -1;
	int fd;

	if (opened) {
		fprintf(stderr, "tallyfsck: waiting for the live sessions of "
				"the store's mounts to end\n");
		return;
	}
	snprintf(path, sizeof(path), "%s/lock", store);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, pid, sizeof(pid) - 1);
		close(fd);
	}
	pid[n > 0 ? n : 0] = '\0';
	pid[strcspn(pid, "\n")] = '\0';
	fprintf(stderr, "tallyfsck: waiting for pid %s to close the store\n",
		pid[0] ? pid : "(unknown)");
}

static void say(void *ctx, const char *line)
{
	(void)ctx;
	printf("%s\n", line);
}

/* The keys of a store bound with a key (its remote_conf 'seal' names its
 * id), opened with @key_file, into @k: 0 (*@keyed says whether it has
 * one), or -errno (said). */
static int bucket_key(struct store *s, const char *key_file, struct seal_key *k,
		      bool *keyed)
{
	char *conf = NULL, text[SEAL_TEXT_MAX], err[256];
	struct seal_key file;
	uint64_t id = 0;
	int rc = meta_remote_conf_get(s->meta, "seal", &conf);

	*keyed = false;
	if (rc == -ENOENT)
		return 0;
	if (!rc)
		rc = bucket_seal_parse(conf, text, sizeof(text), &id);
	free(conf);
	if (rc || !id)
		return rc;
	rc = key_file ? seal_key_load(key_file, &file, err, sizeof(err)) : 0;
	if (!rc)
		rc = seal_key_open(text, id, key_file ? &file : NULL, k, err,
				   sizeof(err));
	explicit_bzero(&file, sizeof(file));
	if (rc) {
		fprintf(stderr, "tallyfsck: %s%s\n", err,
			rc == -ENOKEY ? ": give --key-file=PATH" : "");
		return rc;
	}
	*keyed = true;
	return 0;
}

/* With --key-file, for a store bound with a key: the id this store
 * names @key_file by (salted per store, envelope 3) and whether it
 * opens the store's keys, as "key_file_id" and "key_file_opens". */
static void key_report(struct store *s, const char *key_file)
{
	char *conf = NULL, text[SEAL_TEXT_MAX], err[256], hex[17];
	struct seal_key file, k;
	uint64_t id = 0;
	int rc;

	if (!key_file || meta_remote_conf_get(s->meta, "seal", &conf))
		return;
	rc = bucket_seal_parse(conf, text, sizeof(text), &id);
	free(conf);
	if (rc || !id || seal_key_load(key_file, &file, err, sizeof(err)))
		return;
	if (!seal_key_salt(&file, text)) {
		seal_key_id_text(file.id, hex);
		rc = seal_key_open(text, id, &file, &k, err, sizeof(err));
		printf("key_file_id: %s\nkey_file_opens: %s\n", hex,
		       rc ? "no" : "yes");
		explicit_bzero(&k, sizeof(k));
	}
	explicit_bzero(&file, sizeof(file));
}

/* The store's bucket, with --remote-endpoint: 0, or -errno (said). */
static int check_bucket(struct store *s, const char *endpoint,
			const char *region, const char *key_file, bool settle,
			struct fsck_result *res)
{
	struct s3_cfg cfg;
	struct seal_key k;
	bool keyed = false;
	char *url = NULL, err[256];
	int rc = meta_remote_conf_get(s->meta, "url", &url);

	if (rc == -ENOENT) {
		if (endpoint && !settle)
			printf("bucket: none (the store is not bound to one)\n");
		return 0;
	}
	if (rc)
		return rc;
	if (!endpoint && settle) {
		free(url);
		return 0;
	}
	if (!endpoint) {
		printf("bucket: %s not checked (--remote-endpoint=URL)\n", url);
		free(url);
		return 0;
	}
	memset(&cfg, 0, sizeof(cfg));
	rc = bucket_key(s, key_file, &k, &keyed);
	if (rc) {
		explicit_bzero(&k, sizeof(k));
		free(url);
		return rc;
	}
	rc = s3_cfg_parse(&cfg, url, endpoint, region, err, sizeof(err));
	cfg.names_key = keyed ? k.names : NULL;
	if (rc) {
		fprintf(stderr, "tallyfsck: %s\n",
			rc == -ENOKEY ? "no S3 credentials (AWS_ACCESS_KEY_ID, "
					"AWS_SECRET_ACCESS_KEY or a profile)"
				      : err);
	} else if (settle) {
		rc = fsck_settle(s, &cfg, say, NULL, res);
	} else {
		printf("bucket: %s\n", url);
		rc = fsck_bucket(s, &cfg, say, NULL, res);
	}
	s3_cfg_release(&cfg);
	explicit_bzero(&k, sizeof(k));
	free(url);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "wait", optional_argument, NULL, 'w' },
		{ "remote-endpoint", required_argument, NULL, 'e' },
		{ "remote-region", required_argument, NULL, 'g' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct fsck_result res;
	struct store *s;
	const char *endpoint = NULL, *region = NULL, *key_file = NULL;
	static char o_opts[4096]; /* -o, cut into its options */
	char *meta = NULL;
	bool repair = false, opened;
	double wait = 0;
	int c, rc;

	while ((c = getopt_long(argc, argv, "rho:", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			repair = true;
			break;
		case 'o': {
			char *tok, *save = NULL;

			if (strlen(optarg) >= sizeof(o_opts)) {
				usage(stderr);
				return 2;
			}
			snprintf(o_opts, sizeof(o_opts), "%s", optarg);
			for (tok = strtok_r(o_opts, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				if (!strncmp(tok, "meta=", 5)) {
					meta = tok + 5;
				} else if (!strncmp(tok,
						    "remote_endpoint=", 16)) {
					endpoint = tok + 16;
				} else if (!strncmp(tok,
						    "remote_region=", 14)) {
					region = tok + 14;
				} else if (!strncmp(tok, "key_file=", 9)) {
					key_file = tok + 9;
				} else if (strncmp(tok, "remote=", 7)) {
					/* the bucket is the one the metadata
					 * names: remote= is taken, unused */
					fprintf(stderr,
						"tallyfsck: unknown option "
						"'%s'\n",
						tok);
					return 2;
				}
			}
			break;
		}
		case 'w': {
			char *end = NULL;

			wait = optarg ? strtod(optarg, &end) : 30;
			if (optarg && (*end || end == optarg || wait < 0 ||
				       wait > 3600)) {
				usage(stderr);
				return 2;
			}
			break;
		}
		case 'e':
			endpoint = optarg;
			break;
		case 'g':
			region = optarg;
			break;
		case 'k':
			key_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("tallyfsck %s\n", TALLY_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	/* while it waits, a store held by another process is refused
	 * quietly: the wait is said once, and the last try says why */
	rc = store_open_flags(argv[optind], meta, false,
			      STORE_DEFAULT_BLOCK_SIZE,
			      wait > 0 ? STORE_QUIET_BUSY : 0, &s);
	opened = !rc;
	if (!rc && (rc = sessions_live(s, wait <= 0)) != 0)
		store_close(s);
	/* an unmount returns before the daemon has closed the store */
	if (rc == -EBUSY && wait > 0)
		say_waiting(argv[optind], opened);
	for (; rc == -EBUSY && wait > 0; wait -= 0.1) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		rc = store_open_flags(argv[optind], meta, false,
				      STORE_DEFAULT_BLOCK_SIZE,
				      wait > 0.1 ? STORE_QUIET_BUSY : 0, &s);
		if (!rc && (rc = sessions_live(s, wait <= 0.1)) != 0)
			store_close(s);
	}
	log_set_level(LOG_INFO);
	if (rc) {
		fprintf(stderr, "tallyfsck: cannot check '%s': %s\n",
			argv[optind], strerror(-rc));
		return 2;
	}
	/* with --repair, queued uploads whose copy is gone settled against
	 * the bucket first: the check below then counts them evicted */
	rc = repair ? check_bucket(s, endpoint, region, key_file, true, &res)
		    : 0;
	if (!rc) {
		uint64_t settled = res.settled;

		rc = fsck_run(s, repair, say, NULL, &res);
		res.settled = settled;
	}
	if (!rc)
		rc = check_bucket(s, endpoint, region, key_file, false, &res);
	if (!rc)
		key_report(s, key_file);
	store_close(s);
	if (rc) {
		fprintf(stderr, "tallyfsck: check of '%s' failed: %s\n",
			argv[optind], strerror(-rc));
		return 2;
	}
	printf("objects: %llu\nreferences: %llu\ndrift_under: %llu\n"
	       "drift_over: %llu\ndangling: %llu\norphans: %llu\n"
	       "ghosts: %llu\nghost_drift: %llu\nunreachable_shards: %llu\n"
	       "usage_drift: %llu\ncorrupt: %llu\nremote_only: %llu\n"
	       "queued_missing: %llu\nnameless: %llu\nhomeless: %llu\n"
	       "misfiled: %llu\n",
	       (unsigned long long)res.objects,
	       (unsigned long long)res.references,
	       (unsigned long long)res.drift_under,
	       (unsigned long long)res.drift_over,
	       (unsigned long long)res.dangling,
	       (unsigned long long)res.orphans, (unsigned long long)res.ghosts,
	       (unsigned long long)res.ghost_drift,
	       (unsigned long long)res.unreachable,
	       (unsigned long long)res.usage_drift,
	       (unsigned long long)res.corrupt,
	       (unsigned long long)res.remote_only,
	       (unsigned long long)res.queued_missing,
	       (unsigned long long)res.nameless,
	       (unsigned long long)res.homeless,
	       (unsigned long long)res.misfiled);
	if (meta)
		printf("cache_stale: %llu\nqueued_elsewhere: %llu\n"
		       "claims_stale: %llu\n",
		       (unsigned long long)res.cache_stale,
		       (unsigned long long)res.queued_elsewhere,
		       (unsigned long long)res.claims_stale);
	if (endpoint)
		printf("bucket_keys: %llu\nbucket_missing: %llu\n"
		       "bucket_orphans: %llu\n",
		       (unsigned long long)res.bucket_keys,
		       (unsigned long long)res.bucket_missing,
		       (unsigned long long)res.bucket_orphans);
	if (repair && endpoint)
		printf("settled: %llu\n", (unsigned long long)res.settled);
	if (repair)
		printf("repaired: %llu\nremoved: %llu\nrestored: %llu\n"
		       "dropped: %llu\n",
		       (unsigned long long)res.repaired,
		       (unsigned long long)res.removed,
		       (unsigned long long)res.restored,
		       (unsigned long long)res.dropped);
	if (!fsck_problems(&res)) {
		printf("status: clean\n");
		return 0;
	}
	/* an upload queued without its copy is settled against the bucket
	 * alone (--remote-endpoint): not repaired without it */
	if (repair && res.queued_missing)
		printf("not repaired: %llu object(s) queued for upload without "
		       "a local copy: %s\n",
		       (unsigned long long)res.queued_missing,
		       endpoint ? "the bucket does not have them either"
				: "run again with --remote-endpoint=URL to "
				  "settle them against the bucket");
	printf("status: %s\n",
	       repair && !res.queued_missing ? "repaired" : "problems found");
	return 1;
}
