/* SPDX-License-Identifier: MIT */
/*
 * tallyctl: the command-line front end of a mounted tallyfs. It talks to
 * the mount only through MOUNTPOINT/.tally, like any other program: a
 * command is one line written to .tally/ctl with a single write(2), which
 * returns when the mount has finished it (or fails with the command's
 * errno), and the command's report (key: value lines) is read back from
 * the same open descriptor; `status` reads .tally/status (one flat JSON
 * object). tallyctl checks the syntax of each command, turns paths into
 * paths relative to the mount and forwards everything else unchanged, so
 * that commands a mount does not know yet fail there (EINVAL) and work as
 * soon as the mount learns them. Output is for people by default (aligned
 * columns, sizes in KiB/MiB/GiB, ratios, durations) and one JSON object
 * with --json. Exit status: 0 ok, 1 the command failed, 2 usage error.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The longest command line the mount accepts (CTL_LINE_MAX of core/ctl.h). */
#define CMDLINE_MAX 4096

/* A report or status document larger than this is not from tallyfs. */
#define REPLY_MAX (64u << 20)

enum {
	RC_OK = 0,
	RC_FAILED = 1, /* the command (or talking to the mount) failed */
	RC_USAGE = 2,  /* bad usage, or MOUNTPOINT is not a tallyfs mount */
};

/* Command options (global ones, --json and --help, are handled apart). */
enum {
	OPT_TIMEOUT = 1u << 0,
	OPT_DRY_RUN = 1u << 1,
	OPT_GRACE = 1u << 2,
	OPT_SAMPLE = 1u << 3,
	OPT_BATCHES = 1u << 4,
};

static const struct {
	const char *name;
	unsigned bit;
	bool has_value;
} opt_defs[] = {
	{ "timeout", OPT_TIMEOUT, true }, { "dry-run", OPT_DRY_RUN, false },
	{ "grace", OPT_GRACE, true },	  { "sample", OPT_SAMPLE, true },
	{ "batches", OPT_BATCHES, true },
};

#define NOPTS (sizeof(opt_defs) / sizeof(opt_defs[0]))

/* One invocation: what the command line asked for. */
struct inv {
	const char *mnt;	    /* MOUNTPOINT as given */
	char *mnt_real;		    /* realpath of it (owned) */
	const struct cmd *cmd;	    /* the command */
	char **args;		    /* its arguments (borrowed from argv) */
	unsigned nargs;		    /* how many */
	bool json;		    /* --json */
	bool no_progress;	    /* --no-progress */
	double progress_delay;	    /* --progress-delay, seconds */
	unsigned opts;		    /* OPT_* bits given */
	const char *opt_val[NOPTS]; /* values, as opt_defs (borrowed) */
	char sent[CMDLINE_MAX + 1]; /* the line sent, for messages */
};

/* The command line being built for .tally/ctl. */
struct cmdline {
	char buf[CMDLINE_MAX + 2]; /* room for the newline and the NUL */
	size_t len;
};

struct cmd {
	const char *name;
	const char *synopsis; /* what follows the name */
	const char *summary;  /* one line for the overview */
	const char *help;     /* description, options, report, example */
	unsigned min_args, max_args;
	unsigned opts; /* OPT_* bits it accepts */
	/* fills the command line; RC_OK or RC_USAGE (message printed) */
	int (*build)(struct inv *inv, struct cmdline *l);
};

/* A `key: value` pair of a report, or a top-level member of the status. */
struct kv {
	char *key;
	char *val;
	bool json;   /* a member of the status: @val is JSON text... */
	bool quoted; /* ...of a string, decoded */
	size_t idx;  /* position in the document */
};

static const char *prog = "tallyctl";

/* --------------------------------------------------------------- JSON */

/* @s as a JSON string on stdout. */
static void print_json_string(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	putchar('"');
	for (; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", stdout);
			break;
		case '\\':
			fputs("\\\\", stdout);
			break;
		case '\n':
			fputs("\\n", stdout);
			break;
		case '\t':
			fputs("\\t", stdout);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				printf("\\u%04x", *p);
			else
				putchar(*p);
		}
	}
	putchar('"');
}

/* ----------------------------------------------------------- messages */

static void usage_error(const struct inv *inv, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Print "tallyctl: CMD: message" and where to find help. */
static void usage_error(const struct inv *inv, const char *fmt, ...)
{
	va_list ap;

	if (inv && inv->cmd)
		fprintf(stderr, "%s: %s: ", prog, inv->cmd->name);
	else
		fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (inv && inv->cmd)
		fprintf(stderr, "\n(see '%s %s --help')\n", prog,
			inv->cmd->name);
	else
		fprintf(stderr, "\n(see '%s --help')\n", prog);
}

static const struct {
	int err;
	const char *name;
	const char *meaning;
} errnos[] = {
	{ EINVAL, "EINVAL", "malformed or unknown command" },
	{ ENOENT, "ENOENT", "no such namespace, path, shard or object" },
	{ EEXIST, "EEXIST", "the target already exists" },
	{ ETIMEDOUT, "ETIMEDOUT",
	  "the timeout passed before the command finished (what it started "
	  "goes on in the background)" },
	{ ENAMETOOLONG, "ENAMETOOLONG", "a name is longer than 255 bytes" },
	{ EACCES, "EACCES",
	  "permission denied: only the user who mounted may write commands" },
	{ EPERM, "EPERM", "the mount does not allow this operation" },
	{ ENOTCONN, "ENOTCONN",
	  "the daemon serving the mount is gone (unmount it with "
	  "fusermount3 -u)" },
	{ EBUSY, "EBUSY", "busy: another job holds what this command needs" },
	{ ENOTEMPTY, "ENOTEMPTY", "not empty" },
	{ ENOSPC, "ENOSPC", "the store's disk is full" },
	{ EROFS, "EROFS", "the mount is read-only" },
	{ EIO, "EIO", "I/O error in the store (see the daemon's log)" },
	{ EUCLEAN, "EUCLEAN",
	  "the store is damaged (unmount it and run tallyfsck)" },
	{ EBADMSG, "EBADMSG", "an object does not match its hash" },
	{ ENOMEM, "ENOMEM", "the daemon ran out of memory" },
	{ EINTR, "EINTR",
	  "interrupted: the command may still be running in the mount" },
	{ ENOSYS, "ENOSYS", "not supported by this mount" },
	{ EOPNOTSUPP, "EOPNOTSUPP", "not supported by this mount" },
};

/*
 * The command (or the access to the mount) failed with @err: say so on
 * stderr, with the errno's name and what it means here, and as a JSON
 * object on stdout with --json. Returns RC_FAILED.
 */
static int command_failed(const struct inv *inv, const char *what, int err)
{
	const char *name = NULL, *meaning = NULL;
	char num[32], text[256];
	size_t i;

	for (i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		if (errnos[i].err == err) {
			name = errnos[i].name;
			meaning = errnos[i].meaning;
			break;
		}
	}
	if (!name) {
		snprintf(num, sizeof(num), "errno %d", err);
		name = num;
	}
	if (err == EINVAL && inv->sent[0]) {
		snprintf(text, sizeof(text),
			 "%s: the mount does not know '%s' (it may be older "
			 "than this tallyctl) or rejected its arguments",
			 meaning, inv->cmd->name);
		meaning = text;
	}
	fprintf(stderr, "%s: %s failed: %s (%s)", prog, what, name,
		strerror(err));
	if (meaning)
		fprintf(stderr, ": %s", meaning);
	if (inv->sent[0])
		fprintf(stderr, "\n%s: the line sent to %s/.tally/ctl was '%s'",
			prog, inv->mnt, inv->sent);
	fputc('\n', stderr);
	if (inv->json) {
		printf("{\"command\": ");
		print_json_string(inv->cmd ? inv->cmd->name : "");
		if (inv->sent[0]) {
			printf(", \"sent\": ");
			print_json_string(inv->sent);
		}
		printf(", \"error\": ");
		print_json_string(name);
		printf(", \"errno\": %d, \"message\": ", err);
		print_json_string(meaning ? meaning : strerror(err));
		printf("}\n");
	}
	return RC_FAILED;
}

/* ------------------------------------------------- reading the status */

/*
 * @s is a JSON number (RFC 8259 grammar) short enough to be one: a
 * 32-digit hash that happens to be all decimal digits stays a string.
 */
static bool is_json_number(const char *s)
{
	const char *p = s;

	if (strlen(s) > 20)
		return false;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (isdigit((unsigned char)*p))
			p++;
	else
		return false;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return *p == '\0';
}

static char *skip_ws(char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		int c = (unsigned char)p[i];

		if (!isxdigit(c))
			return -EINVAL;
		v = v * 16 +
		    (unsigned)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
	}
	*out = v;
	return 0;
}

static char *put_utf8(char *w, unsigned cp)
{
	if (cp < 0x80) {
		*w++ = (char)cp;
	} else if (cp < 0x800) {
		*w++ = (char)(0xc0 | (cp >> 6));
		*w++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*w++ = (char)(0xe0 | (cp >> 12));
		*w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*w++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*w++ = (char)(0xf0 | (cp >> 18));
		*w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*w++ = (char)(0x80 | (cp & 0x3f));
	}
	return w;
}

/*
 * Decode the JSON string that starts at the quote *@pp, in place (the
 * decoded text is never longer). *@pp moves past the closing quote.
 */
static int json_string(char **pp, char **out)
{
	char *r = *pp + 1, *w = *pp + 1, *start = w;
	unsigned cp, lo;

	for (;;) {
		if (*r == '"')
			break;
		if (*r == '\0' || (unsigned char)*r < 0x20)
			return -EINVAL;
		if (*r != '\\') {
			*w++ = *r++;
			continue;
		}
		r++;
		switch (*r) {
		case '"':
		case '\\':
		case '/':
			*w++ = *r++;
			break;
		case 'b':
			*w++ = '\b';
			r++;
			break;
		case 'f':
			*w++ = '\f';
			r++;
			break;
		case 'n':
			*w++ = '\n';
			r++;
			break;
		case 'r':
			*w++ = '\r';
			r++;
			break;
		case 't':
			*w++ = '\t';
			r++;
			break;
		case 'u':
			if (hex4(r + 1, &cp))
				return -EINVAL;
			r += 5;
			if (cp >= 0xd800 && cp < 0xdc00 && r[0] == '\\' &&
			    r[1] == 'u' && !hex4(r + 2, &lo) && lo >= 0xdc00 &&
			    lo < 0xe000) {
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
				r += 6;
			} else if (cp >= 0xd800 && cp < 0xe000) {
				cp = 0xfffd; /* a lone surrogate */
			}
			w = put_utf8(w, cp);
			break;
		default:
			return -EINVAL;
		}
	}
	*w = '\0';
	*pp = r + 1;
	*out = start;
	return 0;
}

/*
 * Skip the array, object or string at *@pp without interpreting it:
 * brackets are balanced, strings are skipped whole.
 */
static int json_skip(char **pp)
{
	char *p = *pp;
	int depth = 0;

	do {
		switch (*p) {
		case '\0':
			return -EINVAL;
		case '[':
		case '{':
			depth++;
			break;
		case ']':
		case '}':
			depth--;
			break;
		case '"':
			for (p++; *p != '"'; p++) {
				if (*p == '\0')
					return -EINVAL;
				if (*p == '\\' && p[1])
					p++;
			}
			break;
		}
		p++;
	} while (depth > 0);
	*pp = p;
	return 0;
}

/*
 * Read the members of the status document, a flat JSON object: keys and
 * values are NUL-terminated in place in @text. Scalars are kept as
 * written, strings decoded, nested values kept as their JSON text. Not a
 * general JSON parser: just enough for this one shape. -EINVAL for
 * anything else, text after the object included.
 */
static int parse_status(char *text, struct kv **out, size_t *n)
{
	struct kv *kv = NULL, *grown;
	size_t cap = 0, cnt = 0;
	char *p = skip_ws(text), *end, *key, *val;
	bool quoted;
	int rc = -EINVAL;

	if (*p++ != '{')
		goto out_free;
	p = skip_ws(p);
	if (*p == '}')
		goto out_end;
	for (;;) {
		p = skip_ws(p);
		if (*p != '"' || json_string(&p, &key))
			goto out_free;
		p = skip_ws(p);
		if (*p++ != ':')
			goto out_free;
		p = skip_ws(p);
		quoted = false;
		if (*p == '"') {
			if (json_string(&p, &val))
				goto out_free;
			quoted = true;
		} else if (*p == '[' || *p == '{') {
			val = p;
			if (json_skip(&p))
				goto out_free;
		} else {
			val = p;
			p += strcspn(p, ",} \t\r\n");
			if (p == val)
				goto out_free;
		}
		end = p;
		p = skip_ws(p);
		if (*p != ',' && *p != '}')
			goto out_free;
		if (cnt == cap) {
			cap = cap ? 2 * cap : 32;
			grown = realloc(kv, cap * sizeof(*kv));
			if (!grown) {
				rc = -ENOMEM;
				goto out_free;
			}
			kv = grown;
		}
		kv[cnt] = (struct kv){
			.key = key,
			.val = val,
			.json = true,
			.quoted = quoted,
			.idx = cnt,
		};
		cnt++;
		if (*p == '}') {
			*end = '\0';
			break;
		}
		*end = '\0';
		p++;
	}
out_end:
	/* p is at the closing brace: nothing but blanks may follow */
	if (*skip_ws(p + 1) != '\0')
		goto out_free;
	*out = kv;
	*n = cnt;
	return 0;
out_free:
	free(kv);
	return rc;
}

/* The number of elements of the JSON array at @p; -1 if malformed. */
static long json_array_len(char *p)
{
	long n = 0;

	p = skip_ws(p + 1);
	if (*p == ']')
		return 0;
	for (;;) {
		p = skip_ws(p);
		if (*p == '[' || *p == '{' || *p == '"') {
			if (json_skip(&p))
				return -1;
		} else {
			p += strcspn(p, ",] \t\r\n");
		}
		n++;
		p = skip_ws(p);
		if (*p == ']')
			return n;
		if (*p++ != ',')
			return -1;
	}
}

/* A job of the status document ("jobs"). */
struct job_seen {
	uint64_t id, done, total, started;
	char unit[32];
};

static bool json_u64(const char *s, uint64_t *out)
{
	size_t len = strlen(s);

	if (!len || len > 20 || strspn(s, "0123456789") != len)
		return false;
	*out = strtoull(s, NULL, 10);
	return true;
}

/*
 * Call @fn for each member object of the JSON array at @p (modified),
 * with its members. -EINVAL if the array is malformed.
 */
static int each_object(char *p, void (*fn)(void *ctx, struct kv *m, size_t nm),
		       void *ctx)
{
	struct kv *m;
	size_t nm;
	char *start, save;
	int rc;

	if (*p++ != '[')
		return -EINVAL;
	for (;;) {
		p = skip_ws(p);
		if (*p == ']')
			return 0;
		if (*p != '{')
			return -EINVAL;
		start = p;
		if (json_skip(&p))
			return -EINVAL;
		save = *p;
		*p = '\0';
		rc = parse_status(start, &m, &nm);
		*p = save;
		if (rc)
			return rc;
		fn(ctx, m, nm);
		free(m);
		p = skip_ws(p);
		if (*p == ',')
			p++;
		else if (*p != ']')
			return -EINVAL;
	}
}

struct jobs_walk {
	void (*fn)(void *ctx, const char *name, const struct job_seen *j);
	void *ctx;
	int rc;
};

/* One member of a "jobs" array: decoded and passed on, if it is whole. */
static void job_object(void *ctx, struct kv *m, size_t nm)
{
	struct jobs_walk *w = ctx;
	struct job_seen j = { .id = 0 };
	const char *name = NULL;
	size_t k;

	for (k = 0; k < nm && !w->rc; k++) {
		const char *key = m[k].key, *val = m[k].val;
		bool ok = true;

		if (!strcmp(key, "name") && m[k].quoted)
			name = val;
		else if (!strcmp(key, "unit") && m[k].quoted)
			snprintf(j.unit, sizeof(j.unit), "%s", val);
		else if (!strcmp(key, "id"))
			ok = json_u64(val, &j.id);
		else if (!strcmp(key, "started"))
			ok = json_u64(val, &j.started);
		else if (!strcmp(key, "done"))
			ok = json_u64(val, &j.done);
		else if (!strcmp(key, "total"))
			ok = json_u64(val, &j.total);
		if (!ok)
			w->rc = -EINVAL;
	}
	if (!w->rc && name && j.id)
		w->fn(w->ctx, name, &j);
}

/*
 * Call @fn for each job of the JSON array at @p (modified): its name, id,
 * started, done, total and unit. -EINVAL if the array is malformed.
 */
static int jobs_array(char *p,
		      void (*fn)(void *ctx, const char *name,
				 const struct job_seen *j),
		      void *ctx)
{
	struct jobs_walk w = { .fn = fn, .ctx = ctx };
	int rc = each_object(p, job_object, &w);

	return rc ? rc : w.rc;
}

/*
 * Call @fn for each job of the status document @text (modified). -EINVAL
 * if the document or its "jobs" array is malformed; 0 otherwise, also
 * when it has no "jobs" (an older mount).
 */
static int for_each_job(char *text,
			void (*fn)(void *ctx, const char *name,
				   const struct job_seen *j),
			void *ctx)
{
	struct kv *kv = NULL;
	size_t n = 0, i;
	char *p = NULL;
	int rc = parse_status(text, &kv, &n);

	if (rc)
		return rc;
	for (i = 0; i < n && !p; i++)
		if (!strcmp(kv[i].key, "jobs") && !kv[i].quoted &&
		    kv[i].val[0] == '[')
			p = kv[i].val;
	free(kv);
	return p ? jobs_array(p, fn, ctx) : 0;
}

/* ------------------------------------------------------ human output */

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

static bool is_size_key(const char *key)
{
	return strstr(key, "bytes") || ends_with(key, "_size") ||
	       !strcmp(key, "dirty_limit") || !strcmp(key, "free");
}

static void human_size(double v, char *buf, size_t n)
{
	static const char *const units[] = { "KiB", "MiB", "GiB",
					     "TiB", "PiB", "EiB" };
	size_t u = 0;

	if (v < 1024) {
		snprintf(buf, n, "%.0f B", v);
		return;
	}
	v /= 1024;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, n, "%.1f %s", v, units[u]);
}

static void human_duration(double ms, char *buf, size_t n)
{
	double s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, n, "%.1f ms", ms);
	else if (s < 60)
		snprintf(buf, n, "%.2f s", s);
	else if (s < 3600)
		snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
	else if (s < 3600.0 * INT_MAX)
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600),
			 (int)((long long)(s / 60) % 60));
	else /* no int holds its hours */
		snprintf(buf, n, "%.3g s", s);
}

/*
 * The value of @key as a person reads it: sizes in B/KiB/MiB/GiB, ratios
 * as 1.25x, durations in ms/s, times (`at`, `*_at`: seconds since the
 * epoch) as local dates. Anything else (and every string) as is.
 */
static const char *human_value(const char *key, const char *val, bool quoted,
			       char *buf, size_t n)
{
	double v;

	if (quoted || !is_json_number(val))
		return val;
	v = strtod(val, NULL);
	if ((!strcmp(key, "at") || ends_with(key, "_at")) && v > 0 &&
	    v < 1e11) {
		time_t when = (time_t)v;
		struct tm tm;

		if (localtime_r(&when, &tm) &&
		    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm))
			return buf;
		return val;
	}
	if (is_size_key(key) && v >= 0)
		human_size(v, buf, n);
	else if (ends_with(key, "_ratio"))
		snprintf(buf, n, "%.2fx", v);
	else if (ends_with(key, "_ms") && v >= 0)
		human_duration(v, buf, n);
	else if (ends_with(key, "_seconds") && v >= 0)
		human_duration(v * 1000, buf, n);
	else
		return val;
	return buf;
}

/* One running job of the status, on a line of its own below "jobs:". */
static void print_job(void *ctx, const char *name, const struct job_seen *j)
{
	int indent = *(const int *)ctx;
	char when[32] = "?";
	time_t started = (time_t)j->started;
	struct tm tm;

	if (localtime_r(&started, &tm))
		strftime(when, sizeof(when), "%H:%M:%S", &tm);
	if (j->total)
		printf("%*s%s: %llu/%llu %s (%d%%), since %s\n", indent + 2, "",
		       name, (unsigned long long)j->done,
		       (unsigned long long)j->total, j->unit,
		       (int)(j->done >= j->total ? 100
						 : j->done * 100 / j->total),
		       when);
	else
		printf("%*s%s: %llu %s, since %s\n", indent + 2, "", name,
		       (unsigned long long)j->done, j->unit, when);
}

/* The columns of the shards table, as the members of a shard are named. */
static const char *const shard_cols[] = { "id",	   "state", "objects",
					  "bytes", "free",  "path" };
#define NSHARD_COLS (sizeof(shard_cols) / sizeof(shard_cols[0]))

/* The rows of the shards table: a cell per column (malloc'ed). */
struct shard_table {
	char *(*cell)[NSHARD_COLS];
	size_t n, cap;
	int rc;
};

/*
 * One shard, as a member of the status's "shards" array or as the lines
 * of a `shard list` report (where the id is "shard"): its row of cells.
 */
static void shard_row(void *ctx, struct kv *m, size_t nm)
{
	struct shard_table *t = ctx;
	char buf[64], *(*grown)[NSHARD_COLS];
	size_t c, k;

	if (t->rc)
		return;
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 8;
		grown = realloc(t->cell, t->cap * sizeof(*t->cell));
		if (!grown) {
			t->rc = -ENOMEM;
			return;
		}
		t->cell = grown;
	}
	for (c = 0; c < NSHARD_COLS; c++) {
		const char *shown = "?";

		for (k = 0; k < nm; k++)
			if (m[k].key &&
			    (!strcmp(m[k].key, shard_cols[c]) ||
			     (c == 0 && !strcmp(m[k].key, "shard"))))
				shown = human_value(m[k].key, m[k].val,
						    m[k].quoted, buf,
						    sizeof(buf));
		t->cell[t->n][c] = strdup(shown);
		if (!t->cell[t->n][c]) {
			while (c-- > 0)
				free(t->cell[t->n][c]);
			t->rc = -ENOMEM;
			return;
		}
	}
	t->n++;
}

/*
 * The table of shards, indented by @indent + 2: a header, then one row
 * per shard, numbers and sizes right-aligned, the directory last; the
 * table is freed. Nothing is printed unless @ok.
 */
static void print_table(struct shard_table *t_, int indent, bool ok)
{
	struct shard_table t = *t_;
	size_t w[NSHARD_COLS], c, r, len;

	for (c = 0; c < NSHARD_COLS; c++) {
		w[c] = strlen(shard_cols[c]);
		for (r = 0; ok && r < t.n; r++) {
			len = strlen(t.cell[r][c]);
			if (len > w[c])
				w[c] = len;
		}
	}
	for (r = 0; ok && r <= t.n; r++) {
		char *const *row = r ? t.cell[r - 1] : (char **)shard_cols;

		printf("%*s", indent + 2, "");
		for (c = 0; c < NSHARD_COLS; c++) {
			/* state and path to the left, the rest to the right */
			bool left = c == 1 || c == NSHARD_COLS - 1;

			if (c == NSHARD_COLS - 1)
				printf("%s\n", row[c]);
			else
				printf("%*s  ", left ? -(int)w[c] : (int)w[c],
				       row[c]);
		}
	}
	for (r = 0; r < t.n; r++)
		for (c = 0; c < NSHARD_COLS; c++)
			free(t.cell[r][c]);
	free(t.cell);
}

/*
 * The status's "shards" array (@val) as a table below its key. false
 * (nothing printed) if @val is not an array of objects.
 */
static bool print_shards(const char *val, int indent)
{
	struct shard_table t = { .cell = NULL };
	char *copy = strdup(val);
	bool ok;

	if (!copy)
		return false;
	ok = !each_object(copy, shard_row, &t) && !t.rc;
	free(copy);
	print_table(&t, indent, ok);
	return ok;
}

/*
 * Aligned `key: value` lines, indented by @indent; entries without a key
 * are printed as is. A nested object of the status (last_gc, last_sweep)
 * is shown as its members, indented below its key; an array as its
 * length; null as "none". The running jobs are listed one per line below
 * "jobs:", the shards as a table below "shards:".
 */
static void print_human(struct kv *kv, size_t n, int indent)
{
	size_t i, m, width = 0, len;
	const char *shown;
	struct kv *sub;
	char buf[64], *copy;
	long items;
	bool raw;

	for (i = 0; i < n; i++) {
		if (kv[i].key) {
			len = strlen(kv[i].key);
			if (len > width && len <= 40)
				width = len;
		}
	}
	for (i = 0; i < n; i++) {
		if (!kv[i].key) {
			printf("%*s%s\n", indent, "", kv[i].val);
			continue;
		}
		raw = kv[i].json && !kv[i].quoted;
		if (raw && kv[i].val[0] == '{') {
			/* parsed in a copy: shown as is if it is not flat */
			copy = strdup(kv[i].val);
			if (copy && !parse_status(copy, &sub, &m)) {
				printf("%*s%s:\n", indent, "", kv[i].key);
				print_human(sub, m, indent + 2);
				free(sub);
				free(copy);
				continue;
			}
			free(copy);
		}
		shown = human_value(kv[i].key, kv[i].val, kv[i].quoted, buf,
				    sizeof(buf));
		if (raw && kv[i].val[0] == '[') {
			items = json_array_len(kv[i].val);
			if (items > 0 && !strcmp(kv[i].key, "jobs") &&
			    (copy = strdup(kv[i].val)) != NULL) {
				len = strlen(kv[i].key);
				printf("%*s%s:%*s %ld running\n", indent, "",
				       kv[i].key,
				       len < width ? (int)(width - len) : 0, "",
				       items);
				jobs_array(copy, print_job, &indent);
				free(copy);
				continue;
			}
			if (items > 0 && !strcmp(kv[i].key, "shards")) {
				len = strlen(kv[i].key);
				printf("%*s%s:%*s %ld\n", indent, "", kv[i].key,
				       len < width ? (int)(width - len) : 0, "",
				       items);
				if (!print_shards(kv[i].val, indent))
					printf("%*s(not readable: see --json)\n",
					       indent + 2, "");
				continue;
			}
			if (items == 0)
				shown = "none";
			else if (items > 0 &&
				 snprintf(buf, sizeof(buf), "%ld %s", items,
					  items == 1 ? "entry" : "entries") > 0)
				shown = buf;
		} else if (raw && !strcmp(kv[i].val, "null")) {
			shown = "none";
		}
		len = strlen(kv[i].key);
		printf("%*s%s:%*s %s\n", indent, "", kv[i].key,
		       len < width ? (int)(width - len) : 0, "", shown);
	}
}

/*
 * The report of `shard list`: its summary lines (aligned), then the
 * shards (a `shard: ID` line and the lines after it, each) as a table.
 */
static void print_shard_list(struct kv *kv, size_t n)
{
	struct shard_table t = { .cell = NULL };
	size_t first = 0, i, j;

	while (first < n && !(kv[first].key && !strcmp(kv[first].key, "shard")))
		first++;
	print_human(kv, first, 0);
	for (i = first; i < n; i = j) {
		for (j = i + 1; j < n; j++)
			if (kv[j].key && !strcmp(kv[j].key, "shard"))
				break;
		shard_row(&t, kv + i, j - i);
	}
	print_table(&t, -2, !t.rc && t.n);
}

/* ------------------------------------------------------------ reports */

static bool is_key_char(int c)
{
	return isalnum(c) || c == '_' || c == '-' || c == '.';
}

/*
 * Split a report into its lines, in place: `key: value` lines become
 * pairs, other non-empty lines entries without a key.
 */
static int parse_report(char *text, struct kv **out, size_t *n)
{
	struct kv *kv;
	size_t cap = 1, cnt = 0;
	char *p, *line, *nl, *colon;

	for (p = text; *p; p++)
		cap += *p == '\n';
	kv = calloc(cap, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	for (line = text; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		if (!*line)
			continue;
		for (colon = line; is_key_char((unsigned char)*colon); colon++)
			;
		if (colon > line && *colon == ':' &&
		    (colon[1] == ' ' || colon[1] == '\0')) {
			*colon = '\0';
			kv[cnt].key = line;
			kv[cnt].val = colon + 1 + strspn(colon + 1, " ");
		} else {
			kv[cnt].val = line;
		}
		kv[cnt].idx = cnt;
		cnt++;
	}
	*out = kv;
	*n = cnt;
	return 0;
}

/* The JSON member of a report line: its key, or "text" for a keyless one. */
static const char *kv_key(const struct kv *kv)
{
	return kv->key ? kv->key : "text";
}

static int cmp_key_idx(const void *a, const void *b)
{
	const struct kv *x = *(const struct kv *const *)a;
	const struct kv *y = *(const struct kv *const *)b;
	int c = strcmp(kv_key(x), kv_key(y));

	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_first_idx(const void *a, const void *b)
{
	const struct kv *const *x = *(const struct kv *const *const *)a;
	const struct kv *const *y = *(const struct kv *const *const *)b;

	return (*x)->idx < (*y)->idx ? -1 : (*x)->idx > (*y)->idx;
}

static void print_json_value(const char *val)
{
	if (is_json_number(val))
		fputs(val, stdout);
	else
		print_json_string(val);
}

/*
 * A report as one JSON object: numbers as numbers, everything else as
 * strings; a key that occurs on several lines becomes an array of its
 * values (in report order); lines without a key go to "text".
 */
static int print_report_json(const struct kv *kv, size_t n)
{
	const struct kv **byk;
	const struct kv ***groups;
	size_t i, j, ng = 0;

	byk = malloc((n ? n : 1) * sizeof(*byk));
	groups = malloc((n ? n : 1) * sizeof(*groups));
	if (!byk || !groups) {
		free(byk);
		free(groups);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		byk[i] = &kv[i];
	qsort(byk, n, sizeof(*byk), cmp_key_idx);
	for (i = 0; i < n; i++)
		if (i == 0 || strcmp(kv_key(byk[i - 1]), kv_key(byk[i])))
			groups[ng++] = &byk[i];
	qsort(groups, ng, sizeof(*groups), cmp_first_idx);
	putchar('{');
	for (i = 0; i < ng; i++) {
		const struct kv **g = groups[i];
		const char *key = kv_key(g[0]);
		size_t cnt = 1;

		while (g + cnt < byk + n && !strcmp(kv_key(g[cnt]), key))
			cnt++;
		if (i)
			fputs(", ", stdout);
		print_json_string(key);
		fputs(": ", stdout);
		if (cnt == 1 && g[0]->key) {
			print_json_value(g[0]->val);
			continue;
		}
		putchar('[');
		for (j = 0; j < cnt; j++) {
			if (j)
				fputs(", ", stdout);
			print_json_value(g[j]->val);
		}
		putchar(']');
	}
	fputs("}\n", stdout);
	free(groups);
	free(byk);
	return 0;
}

/* ------------------------------------------------------------ the I/O */

/* Read @fd to its end into a NUL-terminated, malloc'ed *@out. */
static int read_all(int fd, char **out)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *grown;
	ssize_t n;
	int rc;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (cap - len < 2) {
			if (cap >= REPLY_MAX) {
				rc = -EFBIG;
				goto out_free;
			}
			grown = realloc(buf, cap * 2);
			if (!grown) {
				rc = -ENOMEM;
				goto out_free;
			}
			buf = grown;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out_free;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
out_free:
	free(buf);
	return rc;
}

static char *path_join(const char *dir, const char *name)
{
	char *s;

	if (asprintf(&s, "%s%s%s", dir,
		     dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/",
		     name) < 0)
		return NULL;
	return s;
}

/* Run `status`: print .tally/status as is (--json) or as columns. */
static int run_status(struct inv *inv)
{
	char *path = path_join(inv->mnt, ".tally/status"), *text = NULL;
	struct kv *kv = NULL;
	size_t n = 0, len;
	int fd, rc;

	if (!path)
		return command_failed(inv, "status", ENOMEM);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno;
		free(path);
		return command_failed(inv, "reading .tally/status", rc);
	}
	free(path);
	rc = read_all(fd, &text);
	close(fd);
	if (rc)
		return command_failed(inv, "reading .tally/status", -rc);
	if (inv->json) {
		len = strlen(text);
		fputs(text, stdout);
		if (!len || text[len - 1] != '\n')
			putchar('\n');
		free(text);
		return RC_OK;
	}
	rc = parse_status(text, &kv, &n);
	if (rc == -EINVAL) {
		fprintf(stderr,
			"%s: status: %s/.tally/status is not the JSON object "
			"expected (see it with --json)\n",
			prog, inv->mnt);
		free(text);
		return RC_FAILED;
	}
	if (rc) {
		free(text);
		return command_failed(inv, "status", -rc);
	}
	print_human(kv, n, 0);
	free(kv);
	free(text);
	return RC_OK;
}

/* ----------------------------------------------------------- progress */

/*
 * While a long command runs (the write to .tally/ctl blocks until it is
 * done), a thread polls .tally/status for the command's job ("jobs":
 * [{"id", "name", "started", "done", "total", "unit"}]) and shows its
 * progress on stderr: a bar redrawn with \r on a terminal, a plain line
 * every PROGRESS_EVERY seconds otherwise. Nothing is shown before the
 * delay (--progress-delay, default PROGRESS_DELAY seconds) has passed,
 * so a quick command prints nothing; once something may have been shown,
 * a final line always ends it, when the command returns.
 */
#define PROGRESS_DELAY 0.5
#define PROGRESS_POLL_MS 200 /* between two reads of .tally/status */
#define PROGRESS_EVERY 2.0   /* seconds between two plain lines */
#define PROGRESS_KNOWN 16    /* ids of older jobs of the same name */

/* The commands that run as jobs showing progress (the job's name). */
static const char *const long_cmds[] = { "gc",	   "verify", "drain",
					 "branch", "sweep",  "rebalance" };

/*
 * The name of the job that the command runs in the mount, or NULL if it
 * runs none worth watching: the command's own name for the long ones,
 * "rebalance" for `shard drain` (which moves everything off the shard).
 */
static const char *job_name(const struct inv *inv)
{
	size_t i;

	if (!strcmp(inv->cmd->name, "shard"))
		return inv->nargs && !strcmp(inv->args[0], "drain")
			       ? "rebalance"
			       : NULL;
	for (i = 0; i < sizeof(long_cmds) / sizeof(long_cmds[0]); i++)
		if (!strcmp(inv->cmd->name, long_cmds[i]))
			return long_cmds[i];
	return NULL;
}

struct watch {
	struct inv *inv;
	const char *job_name; /* the job watched, and the label shown */
	char *status_path;
	bool tty;
	double delay;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop; /* protected by lock */
	/* the rest belongs to the thread until it is joined */
	struct timespec t0;
	uint64_t known[PROGRESS_KNOWN]; /* jobs of that name before ours */
	size_t nknown;
	bool seen;	     /* our job was found... */
	struct job_seen job; /* ...as last seen */
	bool shown;	     /* something was printed */
	double last_line;    /* elapsed seconds at the last plain line */
	size_t drawn;	     /* columns of the bar drawn last */
};

static double elapsed_s(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* "m:ss", or "h:mm:ss" */
static void clock_text(double s, char *buf, size_t n)
{
	long v = (long)s;

	if (v >= 3600)
		snprintf(buf, n, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60,
			 v % 60);
	else
		snprintf(buf, n, "%ld:%02ld", v / 60, v % 60);
}

/* The status document, or NULL if it cannot be read. */
static char *read_status(const char *path)
{
	char *text = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (read_all(fd, &text))
		text = NULL;
	close(fd);
	return text;
}

static void note_known(void *ctx, const char *name, const struct job_seen *j)
{
	struct watch *w = ctx;

	if (!strcmp(name, w->job_name) && w->nknown < PROGRESS_KNOWN)
		w->known[w->nknown++] = j->id;
}

/* Our job: the first of its name that was not there before, then that
 * one only. */
static void note_ours(void *ctx, const char *name, const struct job_seen *j)
{
	struct watch *w = ctx;
	size_t i;

	if (strcmp(name, w->job_name))
		return;
	if (w->seen) {
		if (j->id == w->job.id)
			w->job = *j;
		return;
	}
	for (i = 0; i < w->nknown; i++)
		if (w->known[i] == j->id)
			return;
	w->job = *j;
	w->seen = true;
}

/* "420/1000 objects (42%)", "420 objects" (total not known yet), or ""
 * (not seen yet, or nothing known). */
static void job_text(const struct watch *w, bool finished, char *buf, size_t n)
{
	uint64_t done = w->job.done, total = w->job.total;

	if (!w->seen || (!done && !total)) {
		buf[0] = '\0';
		return;
	}
	if (finished && total)
		done = total;
	if (total)
		snprintf(buf, n, "%llu/%llu %s (%d%%)",
			 (unsigned long long)done, (unsigned long long)total,
			 w->job.unit,
			 (int)(done >= total ? 100 : done * 100 / total));
	else
		snprintf(buf, n, "%llu %s", (unsigned long long)done,
			 w->job.unit);
}

static unsigned term_columns(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/*
 * Draw the bar on the terminal: "\rNAME [#####-----] 42% 420/1000
 * objects 0:03", padded over what was drawn before. @end: "done" or
 * "failed" closes the line.
 */
static void draw_bar(struct watch *w, double secs, const char *end)
{
	char counts[128], clk[32], line[512], bar[64];
	unsigned cols = term_columns(), width, fill, i;
	uint64_t done = w->job.done, total = w->job.total;
	int len;

	clock_text(secs, clk, sizeof(clk));
	if (w->seen && end && !strcmp(end, "done") && total)
		done = total;
	if (w->seen && total) {
		int pct = (int)(done >= total ? 100 : done * 100 / total);

		snprintf(counts, sizeof(counts), "%3d%% %llu/%llu %s", pct,
			 (unsigned long long)done, (unsigned long long)total,
			 w->job.unit);
		len = snprintf(NULL, 0, "%s [] %s %s%s%s", w->job_name, counts,
			       clk, end ? " " : "", end ? end : "");
		width = cols > (unsigned)len + 10 ? cols - (unsigned)len - 1
						  : 10;
		if (width > 40)
			width = 40;
		fill = (unsigned)((double)width * (double)done / (double)total);
		for (i = 0; i < width; i++)
			bar[i] = i < fill ? '#' : '-';
		bar[width] = '\0';
		len = snprintf(line, sizeof(line), "%s [%s] %s %s%s%s",
			       w->job_name, bar, counts, clk, end ? " " : "",
			       end ? end : "");
	} else {
		job_text(w, false, counts, sizeof(counts));
		len = snprintf(line, sizeof(line), "%s %s%s%s%s%s", w->job_name,
			       counts, counts[0] ? " " : "", clk,
			       end ? " " : "", end ? end : "");
	}
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(line))
		len = sizeof(line) - 1;
	fprintf(stderr, "\r%s%*s", line,
		w->drawn > (size_t)len ? (int)(w->drawn - (size_t)len) : 0, "");
	if (end)
		fputc('\n', stderr);
	fflush(stderr);
	w->drawn = (size_t)len;
	w->shown = true;
}

/* A plain line: "NAME: 420/1000 objects (42%), 0:03[, END]". */
static void print_line(struct watch *w, double secs, const char *end)
{
	char counts[128], clk[32];

	job_text(w, end && !strcmp(end, "done"), counts, sizeof(counts));
	clock_text(secs, clk, sizeof(clk));
	fprintf(stderr, "%s: %s%s%s%s%s\n", w->job_name, counts,
		counts[0] ? ", " : "", clk, end ? ", " : "", end ? end : "");
	fflush(stderr);
	w->shown = true;
	w->last_line = secs;
}

/* A plain line every PROGRESS_EVERY seconds; the first one as soon as
 * the job's total is known. */
static bool plain_due(const struct watch *w, double secs)
{
	if (w->shown)
		return secs - w->last_line >= PROGRESS_EVERY;
	return (w->seen && w->job.total) || secs - w->delay >= PROGRESS_EVERY;
}

static void *watch_fn(void *arg)
{
	struct watch *w = arg;
	struct timespec until;
	bool stop = false;

	while (!stop) {
		double secs = elapsed_s(&w->t0), took;
		char *text = read_status(w->status_path);
		long wait_ms;

		/*
		 * The status costs the mount a scan of its object table (0.8 s
		 * at a million objects): poll no more than a fifth of the time.
		 */
		took = elapsed_s(&w->t0) - secs;
		wait_ms = (long)(took * 4000);
		if (wait_ms < PROGRESS_POLL_MS)
			wait_ms = PROGRESS_POLL_MS;
		if (wait_ms > 5000)
			wait_ms = 5000;

		if (text) {
			for_each_job(text, note_ours, w);
			free(text);
		}
		if (secs >= w->delay && w->tty)
			draw_bar(w, secs, NULL);
		else if (secs >= w->delay && plain_due(w, secs))
			print_line(w, secs, NULL);
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += wait_ms / 1000;
		until.tv_nsec += wait_ms % 1000 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&w->lock);
		while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock,
							  &until) != ETIMEDOUT)
			;
		stop = w->stop;
		pthread_mutex_unlock(&w->lock);
	}
	return NULL;
}

/*
 * Start watching the job of the command about to be sent, if it is a
 * long one and progress is wanted. Returns whether a watch runs.
 */
static bool watch_start(struct watch *w, struct inv *inv)
{
	pthread_condattr_t ca;
	char *text;

	memset(w, 0, sizeof(*w));
	w->job_name = job_name(inv);
	if (inv->no_progress || !w->job_name)
		return false;
	w->inv = inv;
	w->tty = isatty(STDERR_FILENO);
	w->delay = inv->progress_delay;
	w->status_path = path_join(inv->mnt, ".tally/status");
	if (!w->status_path)
		return false;
	/* the jobs of that name already running are not ours */
	text = read_status(w->status_path);
	if (text) {
		for_each_job(text, note_known, w);
		free(text);
	}
	clock_gettime(CLOCK_MONOTONIC, &w->t0);
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&w->thread, NULL, watch_fn, w)) {
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		free(w->status_path);
		return false;
	}
	return true;
}

/*
 * The command returned (@ok: successfully): stop the thread and, if
 * anything may have been shown (the delay has passed), print the final
 * line, at 100% when the command succeeded.
 */
static void watch_stop(struct watch *w, bool ok)
{
	double secs;

	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	secs = elapsed_s(&w->t0);
	if (w->shown || secs >= w->delay) {
		if (w->tty)
			draw_bar(w, secs, ok ? "done" : "failed");
		else
			print_line(w, secs, ok ? "done" : "failed");
	}
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w->status_path);
}

/*
 * Send the line built for the command to .tally/ctl in one write(2) and
 * print the report read back from the same descriptor.
 */
static int run_ctl(struct inv *inv, struct cmdline *l)
{
	char *path = path_join(inv->mnt, ".tally/ctl"), *report = NULL;
	struct kv *kv = NULL;
	size_t n = 0;
	struct watch watch;
	bool watching;
	ssize_t w;
	int fd, rc;

	if (!path)
		return command_failed(inv, inv->cmd->name, ENOMEM);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rc = errno;
		free(path);
		return command_failed(inv, "opening .tally/ctl", rc);
	}
	free(path);
	memcpy(inv->sent, l->buf, l->len);
	inv->sent[l->len] = '\0';
	l->buf[l->len++] = '\n';
	watching = watch_start(&watch, inv);
	/* never retried: the command may have run (a second branch...) */
	w = write(fd, l->buf, l->len);
	if (watching)
		watch_stop(&watch, w == (ssize_t)l->len);
	if (w < 0) {
		rc = errno;
		close(fd);
		return command_failed(inv, inv->cmd->name, rc);
	}
	if ((size_t)w != l->len) {
		close(fd);
		fprintf(stderr,
			"%s: %s: the mount took %zd of the %zu bytes of the "
			"command line\n",
			prog, inv->cmd->name, w, l->len);
		return RC_FAILED;
	}
	rc = read_all(fd, &report);
	close(fd);
	if (rc)
		return command_failed(inv, "reading the report", -rc);
	rc = parse_report(report, &kv, &n);
	if (rc) {
		free(report);
		return command_failed(inv, "reading the report", -rc);
	}
	if (inv->json)
		rc = print_report_json(kv, n);
	else if (n == 0)
		printf("%s: done\n", inv->cmd->name);
	else if (!strcmp(inv->sent, "shard list"))
		print_shard_list(kv, n);
	else
		print_human(kv, n, 0);
	free(kv);
	free(report);
	return rc ? command_failed(inv, "printing the report", -rc) : RC_OK;
}

/* ------------------------------------------------ building the lines */

/* A word of a command line: not empty, no blank, no control character. */
static int add_word(struct inv *inv, struct cmdline *l, const char *word)
{
	size_t len = strlen(word), i;

	if (!len) {
		usage_error(inv, "an empty argument cannot be sent");
		return RC_USAGE;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)word[i];

		if (c <= ' ' || c == 0x7f) {
			usage_error(inv,
				    "'%s' contains a blank or a control "
				    "character, which a command line of "
				    ".tally/ctl cannot carry",
				    word);
			return RC_USAGE;
		}
	}
	if (l->len + (l->len ? 1 : 0) + len > CMDLINE_MAX) {
		usage_error(inv,
			    "the command line would be longer than %d "
			    "bytes",
			    CMDLINE_MAX);
		return RC_USAGE;
	}
	if (l->len)
		l->buf[l->len++] = ' ';
	memcpy(l->buf + l->len, word, len);
	l->len += len;
	l->buf[l->len] = '\0';
	return RC_OK;
}

static int add_pair(struct inv *inv, struct cmdline *l, const char *name,
		    const char *val)
{
	char word[CMDLINE_MAX + 1];

	if ((size_t)snprintf(word, sizeof(word), "%s=%s", name, val) >=
	    sizeof(word)) {
		usage_error(inv, "'%s' is too long", val);
		return RC_USAGE;
	}
	return add_word(inv, l, word);
}

/* The value given to the option @bit, or NULL. */
static const char *opt_value(const struct inv *inv, unsigned bit)
{
	size_t k;

	for (k = 0; k < NOPTS; k++)
		if (opt_defs[k].bit == bit)
			return inv->opt_val[k];
	return NULL;
}

/* Digits with at most one decimal point: a number of seconds or percent. */
static bool parse_decimal(const char *s, double *out)
{
	bool digit = false, dot = false;
	const char *p;

	for (p = s; *p; p++) {
		if (isdigit((unsigned char)*p))
			digit = true;
		else if (*p == '.' && !dot)
			dot = true;
		else
			return false;
	}
	if (!digit)
		return false;
	*out = strtod(s, NULL);
	return true;
}

/* drain's timeout: seconds above zero (fractions allowed), up to a year. */
static int check_timeout(struct inv *inv, const char *s)
{
	double v;

	if (!parse_decimal(s, &v) || v <= 0 || v > 31536000) {
		usage_error(inv,
			    "--timeout wants a number of seconds above zero "
			    "(up to a year), not '%s'",
			    s);
		return RC_USAGE;
	}
	return RC_OK;
}

/* gc's grace period: whole seconds, zero included, up to 100 years. */
static int check_grace(struct inv *inv, const char *s)
{
	size_t len = strlen(s);

	if (!len || len > 10 || strspn(s, "0123456789") != len ||
	    strtoull(s, NULL, 10) > 100ULL * 365 * 86400) {
		usage_error(inv,
			    "--grace wants a whole number of seconds (0 or "
			    "more, up to 100 years), not '%s'",
			    s);
		return RC_USAGE;
	}
	return RC_OK;
}

/* The command's name and its arguments, unchanged. */
static int build_plain(struct inv *inv, struct cmdline *l)
{
	unsigned i;
	int rc = add_word(inv, l, inv->cmd->name);

	for (i = 0; !rc && i < inv->nargs; i++)
		rc = add_word(inv, l, inv->args[i]);
	return rc;
}

static int build_drain(struct inv *inv, struct cmdline *l)
{
	const char *t = opt_value(inv, OPT_TIMEOUT);
	int rc = add_word(inv, l, "drain");

	if (!rc && t) {
		rc = check_timeout(inv, t);
		if (!rc)
			rc = add_word(inv, l, t);
	}
	return rc;
}

static int build_gc(struct inv *inv, struct cmdline *l)
{
	const char *grace = opt_value(inv, OPT_GRACE);
	int rc = add_word(inv, l, "gc");

	if (!rc && (inv->opts & OPT_DRY_RUN))
		rc = add_word(inv, l, "dry-run");
	if (!rc && grace) {
		rc = check_grace(inv, grace);
		if (!rc)
			rc = add_pair(inv, l, "grace", grace);
	}
	return rc;
}

/* sweep [--batches=N]: N whole, 0 (verdicts only) up to INT_MAX. */
static int build_sweep(struct inv *inv, struct cmdline *l)
{
	const char *b = opt_value(inv, OPT_BATCHES);
	size_t len;
	int rc = add_word(inv, l, "sweep");

	if (rc || !b)
		return rc;
	len = strlen(b);
	if (!len || len > 10 || strspn(b, "0123456789") != len ||
	    strtoull(b, NULL, 10) > 2147483647ULL) {
		usage_error(inv,
			    "--batches wants a whole number of batches (0 or "
			    "more, up to 2147483647), not '%s'",
			    b);
		return RC_USAGE;
	}
	return add_pair(inv, l, "batches", b);
}

static int build_verify(struct inv *inv, struct cmdline *l)
{
	const char *sample = opt_value(inv, OPT_SAMPLE);
	char num[32];
	size_t len;
	double v;
	int rc = add_word(inv, l, "verify");

	if (rc || !sample)
		return rc;
	len = strlen(sample);
	if (len && sample[len - 1] == '%')
		len--;
	if (len > 20)
		len = 0; /* not a percentage either */
	memcpy(num, sample, len);
	num[len] = '\0';
	if (!parse_decimal(num, &v) || v <= 0 || v > 100) {
		usage_error(inv,
			    "--sample wants a percentage above 0 and up to "
			    "100 (like 5%%), not '%s'",
			    sample);
		return RC_USAGE;
	}
	num[len] = '%';
	num[len + 1] = '\0';
	return add_pair(inv, l, "sample", num);
}

/* @path as an absolute path without ".", ".." or repeated slashes. */
static char *normalize(const char *path)
{
	char *abs = NULL, *out, *p, *comp, *slash;
	size_t o = 0, clen;

	if (path[0] == '/') {
		abs = strdup(path);
	} else {
		char *cwd = getcwd(NULL, 0);

		if (cwd)
			abs = path_join(cwd, path);
		free(cwd);
	}
	if (!abs)
		return NULL;
	out = malloc(strlen(abs) + 2);
	if (!out) {
		free(abs);
		return NULL;
	}
	for (p = abs; *p; p = slash) {
		p += strspn(p, "/");
		comp = p;
		slash = p + strcspn(p, "/");
		clen = (size_t)(slash - comp);
		if (clen == 0 || (clen == 1 && comp[0] == '.'))
			continue;
		if (clen == 2 && comp[0] == '.' && comp[1] == '.') {
			while (o > 0 && out[--o] != '/')
				;
			continue;
		}
		out[o++] = '/';
		memcpy(out + o, comp, clen);
		o += clen;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	free(abs);
	return out;
}

/*
 * The absolute, resolved form of @path: its directory through realpath
 * (so that symlinks and ".." are followed as the kernel would), its last
 * component kept as is (a symlink is named, not followed). A path whose
 * directory does not exist is normalized lexically.
 */
static char *resolve(const char *path)
{
	char *copy = strdup(path), *dir_real, *base, *res = NULL;
	size_t len;

	if (!copy)
		return NULL;
	len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	base = strrchr(copy, '/');
	if (base && base == copy && base[1] == '\0') {
		res = strdup("/");
	} else if (!strcmp(base ? base + 1 : copy, ".") ||
		   !strcmp(base ? base + 1 : copy, "..")) {
		res = realpath(copy, NULL);
	} else {
		if (base == copy)
			dir_real = realpath("/", NULL);
		else if (base) {
			*base = '\0';
			dir_real = realpath(copy, NULL);
			*base = '/';
		} else {
			dir_real = realpath(".", NULL);
		}
		if (dir_real)
			res = path_join(dir_real, base ? base + 1 : copy);
		free(dir_real);
	}
	if (!res)
		res = normalize(copy);
	free(copy);
	return res;
}

/*
 * *@rel = @path relative to the mount (malloc'ed). RC_USAGE, with a
 * message, for a path outside the mount, the mount itself or /.tally.
 */
static int mount_relative(struct inv *inv, const char *path, char **rel)
{
	char *abs = resolve(path);
	size_t mlen = strlen(inv->mnt_real);
	const char *r;

	if (!abs)
		return command_failed(inv, "resolving a path", ENOMEM);
	if (!strcmp(abs, inv->mnt_real)) {
		usage_error(inv,
			    "'%s' is the mount itself: name a path inside a "
			    "namespace",
			    path);
		free(abs);
		return RC_USAGE;
	}
	if (!strcmp(inv->mnt_real, "/"))
		mlen = 0;
	if (strncmp(abs, inv->mnt_real, mlen) || abs[mlen] != '/') {
		usage_error(inv, "'%s' is outside the mount %s", path,
			    inv->mnt_real);
		free(abs);
		return RC_USAGE;
	}
	r = abs + mlen + 1;
	if (!strncmp(r, ".tally", 6) && (r[6] == '\0' || r[6] == '/')) {
		usage_error(inv, "'%s' is a control file of the mount", path);
		free(abs);
		return RC_USAGE;
	}
	*rel = strdup(r);
	free(abs);
	if (!*rel)
		return command_failed(inv, "resolving a path", ENOMEM);
	return RC_OK;
}

/* pin PATH, unpin PATH: PATH relative to the mount. */
static int build_pin(struct inv *inv, struct cmdline *l)
{
	char *rel;
	int rc = mount_relative(inv, inv->args[0], &rel);

	if (rc)
		return rc;
	rc = add_word(inv, l, inv->cmd->name);
	if (!rc)
		rc = add_word(inv, l, rel);
	free(rel);
	return rc;
}

/* 32 lowercase hex digits, maybe -N (a collision), maybe @SHARD. */
static bool is_hash(const char *s, size_t *len)
{
	size_t i = 0;

	while (i < 32 &&
	       (isdigit((unsigned char)s[i]) || (s[i] >= 'a' && s[i] <= 'f')))
		i++;
	if (i != 32)
		return false;
	if (s[i] == '-' && isdigit((unsigned char)s[i + 1]))
		for (i++; isdigit((unsigned char)s[i]); i++)
			;
	*len = i;
	if (s[i] == '@' && s[i + 1]) {
		const char *p = s + i + 1;

		while (isdigit((unsigned char)*p))
			p++;
		return *p == '\0';
	}
	return s[i] == '\0';
}

/*
 * explain HASH (the object's name, @SHARD dropped) or explain PATH (a
 * path relative to the mount, so a file's always has a slash).
 */
static int build_explain(struct inv *inv, struct cmdline *l)
{
	const char *arg = inv->args[0];
	char hash[64], *rel;
	struct stat st;
	size_t len;
	int rc = add_word(inv, l, "explain");

	if (rc)
		return rc;
	if (is_hash(arg, &len) && len < sizeof(hash) && lstat(arg, &st) != 0) {
		memcpy(hash, arg, len);
		hash[len] = '\0';
		return add_word(inv, l, hash);
	}
	rc = mount_relative(inv, arg, &rel);
	if (rc)
		return rc;
	rc = add_word(inv, l, rel);
	free(rel);
	return rc;
}

/* du [NAMESPACE]: a name, or a path of a namespace's directory. */
static int build_du(struct inv *inv, struct cmdline *l)
{
	char *rel = NULL;
	const char *ns;
	int rc = add_word(inv, l, "du");

	if (rc || inv->nargs == 0)
		return rc;
	ns = inv->args[0];
	if (strchr(ns, '/')) {
		rc = mount_relative(inv, ns, &rel);
		if (rc)
			return rc;
		if (strchr(rel, '/')) {
			usage_error(inv,
				    "'%s' is not a namespace (a directory "
				    "at the top of the mount)",
				    ns);
			free(rel);
			return RC_USAGE;
		}
		ns = rel;
	} else if (!strcmp(ns, ".") || !strcmp(ns, "..") ||
		   !strcmp(ns, ".tally")) {
		usage_error(inv, "'%s' is not a namespace", ns);
		return RC_USAGE;
	}
	rc = add_word(inv, l, ns);
	free(rel);
	return rc;
}

/* shard add DIR | shard drain ID | shard activate ID | shard list */
static int build_shard(struct inv *inv, struct cmdline *l)
{
	const char *sub = inv->args[0];
	char *dir;
	size_t mlen;
	int rc;

	if (!strcmp(sub, "list")) {
		if (inv->nargs != 1) {
			usage_error(inv, "'shard list' takes no argument");
			return RC_USAGE;
		}
		return build_plain(inv, l);
	}
	if (strcmp(sub, "add") && strcmp(sub, "drain") &&
	    strcmp(sub, "activate")) {
		usage_error(inv, "'%s' is not add, drain, activate or list",
			    sub);
		return RC_USAGE;
	}
	if (inv->nargs != 2) {
		usage_error(inv, "'shard %s' takes one argument (%s)", sub,
			    strcmp(sub, "add") ? "the shard's ID" : "a DIR");
		return RC_USAGE;
	}
	if (strcmp(sub, "add")) {
		if (!inv->args[1][0] || strspn(inv->args[1], "0123456789") !=
						strlen(inv->args[1])) {
			usage_error(inv, "a shard ID is a number, not '%s'",
				    inv->args[1]);
			return RC_USAGE;
		}
		return build_plain(inv, l);
	}
	/* the daemon's working directory is not ours: send it absolute */
	dir = realpath(inv->args[1], NULL);
	if (!dir)
		dir = normalize(inv->args[1]);
	if (!dir)
		return command_failed(inv, "resolving a path", ENOMEM);
	mlen = strlen(inv->mnt_real);
	if (!strncmp(dir, inv->mnt_real, mlen) &&
	    (dir[mlen] == '\0' || dir[mlen] == '/')) {
		usage_error(inv, "a shard cannot live inside the mount (%s)",
			    dir);
		free(dir);
		return RC_USAGE;
	}
	rc = add_word(inv, l, "shard");
	if (!rc)
		rc = add_word(inv, l, "add");
	if (!rc)
		rc = add_word(inv, l, dir);
	free(dir);
	return rc;
}

/* ----------------------------------------------------------- commands */

static const struct cmd cmds[] = {
	{ "status", "", "counts, bytes, dedup ratio and the flush pipeline",
	  "Show the mount's counters, read from MOUNTPOINT/.tally/status:\n"
	  "namespaces, inodes, objects, logical / referenced / stored bytes,\n"
	  "the dedup ratio (referenced / stored) and the state of the flush\n"
	  "pipeline. Sizes are shown in B, KiB, MiB, GiB; --json prints the\n"
	  "status document (one JSON object) as is. The counts are the\n"
	  "committed ones: run `drain` first to include files just closed.\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t status\n"
	  "  tallyctl --json /mnt/t status | python3 -m json.tool\n",
	  0, 0, 0, NULL },
	{ "drain", "[--timeout=S]", "commit everything buffered",
	  "Flush every file's buffered data and wait until no flush is\n"
	  "pending, so that what was written is committed to the store.\n"
	  "\n"
	  "Options:\n"
	  "  --timeout=S  give up after S seconds: exit 1 with ETIMEDOUT (the\n"
	  "               flushes go on in the background)\n"
	  "\n"
	  "Report: flushed (flushes waited for), pending_flushes,\n"
	  "uncommitted_files, uncommitted_blocks (failed, still buffered),\n"
	  "durable_seq, flush_errors, duration_ms. Exit 1 with the flushes'\n"
	  "error (ENOSPC, EIO...) if data buffered before is not committed.\n"
	  "Sends: drain [S]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t drain --timeout=30\n",
	  0, 0, OPT_TIMEOUT, build_drain },
	{ "branch", "SRC DST", "copy-on-write clone of namespace SRC as DST",
	  "Create namespace DST as a copy-on-write clone of namespace SRC:\n"
	  "the metadata is copied in one transaction and every object's count\n"
	  "raised; no data is copied. Fails with ENOENT when SRC does not\n"
	  "exist and EEXIST when DST does.\n"
	  "\n"
	  "Report: source, branch, inodes (copied), duration_ms.\n"
	  "Sends: branch SRC DST\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t branch main dev\n",
	  2, 2, 0, build_plain },
	{ "gc", "[--dry-run] [--grace=S]",
	  "collect object files that nothing references",
	  "Run a GC cycle: list the object files, mark those that no file\n"
	  "references (an earlier mark is kept; marks survive a remount) and\n"
	  "delete those marked for longer than the grace period, re-checking\n"
	  "each one right before. It also reports drift between the stored\n"
	  "counts and the references (repair fixes it). The last cycles are\n"
	  "shown by status (last_gc, gc_log).\n"
	  "\n"
	  "Options:\n"
	  "  --dry-run   report what would be collected, delete nothing\n"
	  "  --grace=S   the grace period in whole seconds (default 300; 0\n"
	  "              collects every unreferenced object now)\n"
	  "\n"
	  "Report: dry_run, checked, live, unreferenced, collected,\n"
	  "bytes_freed, preserved (still in their grace period), drift,\n"
	  "drift_under, drift_over, grace, longest_hold_ms, duration_ms, ...\n"
	  "Sends: gc [dry-run] [grace=S]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t gc --dry-run --grace=0\n",
	  0, 0, OPT_DRY_RUN | OPT_GRACE, build_gc },
	{ "sweep", "[--batches=N]",
	  "repoint references to moved objects, purge ghosts",
	  "The anti-entropy sweep: for every ghost stub left where an object\n"
	  "moved between shards, repoint the references that still name the\n"
	  "old shard (in batches of inodes), and purge the ghost once nothing\n"
	  "needs it. status shows the ghosts left and the last sweep.\n"
	  "\n"
	  "Options:\n"
	  "  --batches=N  repoint at most N batches of references, then give\n"
	  "               the verdicts (0: verdicts only, nothing repointed);\n"
	  "               spreads a long sweep over several quieter runs\n"
	  "\n"
	  "Report: checked (ghosts), purged, kept (still referenced),\n"
	  "inconclusive (a shard could not be read), references_repointed,\n"
	  "duration_ms.\n"
	  "Sends: sweep [batches=N]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t sweep --batches=10\n",
	  0, 0, OPT_BATCHES, build_sweep },
	{ "pin", "PATH", "keep the objects of PATH alive",
	  "Pin the objects of PATH (a file or directory inside the mount):\n"
	  "the garbage collector keeps them even once no file references\n"
	  "them any more. PATH is relative to the current directory, like\n"
	  "any path; it is sent relative to the mount. A path outside the\n"
	  "mount is a usage error (exit 2).\n"
	  "\n"
	  "Sends: pin NAMESPACE/PATH\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t pin /mnt/t/main/photos\n",
	  1, 1, 0, build_pin },
	{ "unpin", "PATH", "drop a pin",
	  "Remove the pin that `pin PATH` set; the objects are then collected\n"
	  "as usual once nothing else references them. PATH as for pin.\n"
	  "\n"
	  "Sends: unpin NAMESPACE/PATH\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t unpin /mnt/t/main/photos\n",
	  1, 1, 0, build_pin },
	{ "shard", "add DIR | drain ID | activate ID | list",
	  "manage the object shards",
	  "  shard add DIR    add DIR (a directory outside the mount, sent as\n"
	  "                   an absolute path) as a new shard of the store\n"
	  "  shard drain ID   no new objects in shard ID, and a rebalance that\n"
	  "                   moves every object off it (its progress shows\n"
	  "                   as the rebalance job's); the state persists;\n"
	  "                   EBUSY for the last active shard\n"
	  "  shard activate ID  new objects may go to shard ID again\n"
	  "  shard list       list the shards: ID, state, objects, bytes, free\n"
	  "                   space, directory\n"
	  "\n"
	  "Report of drain: shard, state, then as rebalance (moved, bytes,\n"
	  "failed, recovered, ghosts, mb_per_s, objects_per_s, duration_ms).\n"
	  "Sends: shard add /ABS/DIR | shard drain ID | shard activate ID |\n"
	  "shard list\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t shard add /srv/disk2/tally\n"
	  "  tallyctl /mnt/t shard list\n",
	  1, 2, 0, build_shard },
	{ "rebalance", "", "spread the objects evenly over the shards",
	  "Move objects between shards until each holds its share of the\n"
	  "bytes. A moved object leaves a ghost behind; sweep settles them.\n"
	  "\n"
	  "Report: moved, bytes, failed, recovered (interrupted moves\n"
	  "settled), ghosts, mb_per_s, objects_per_s, duration_ms.\n"
	  "Sends: rebalance\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t rebalance\n",
	  0, 0, 0, build_plain },
	{ "verify", "[--sample=N%]",
	  "rehash objects, report corrupt or missing",
	  "Read and rehash every object (or a random sample of them) and\n"
	  "report the objects that are corrupt (contents do not match the\n"
	  "name) or missing.\n"
	  "\n"
	  "Options:\n"
	  "  --sample=N%  check only N percent of the objects (0 < N <= 100)\n"
	  "\n"
	  "Sends: verify [sample=N%]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t verify --sample=5%\n",
	  0, 0, OPT_SAMPLE, build_verify },
	{ "repair", "", "rebuild the reference counts",
	  "Rebuild every object's stored reference count from the block\n"
	  "references, online (what `tallyfsck --repair` does to an unmounted\n"
	  "store). gc reports the drift that this fixes.\n"
	  "\n"
	  "Report: repaired (counts changed), duration_ms.\n"
	  "Sends: repair\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t repair\n",
	  0, 0, 0, build_plain },
	{ "explain", "PATH|HASH", "why an object is alive, what a file holds",
	  "explain PATH lists the objects of a file with their shard, size\n"
	  "and count, and every holder of each: the namespaces and paths that\n"
	  "reference it, pins, ghosts. explain HASH says why that object is\n"
	  "still alive, or that it is unreferenced and when GC collects it.\n"
	  "HASH is 32 hex digits (maybe -N, maybe @SHARD as shown by\n"
	  "user.tally.objects); anything else is a PATH, sent relative to the\n"
	  "mount (a file's path always has a slash there).\n"
	  "\n"
	  "Sends: explain NAMESPACE/PATH | explain HASH\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t explain /mnt/t/main/big.iso\n",
	  1, 1, 0, build_explain },
	{ "du", "[NAMESPACE]", "bytes per namespace: shared, exclusive",
	  "For each namespace (or only NAMESPACE: a name, or the path of its\n"
	  "directory): logical bytes, stored bytes, bytes shared with other\n"
	  "namespaces and bytes exclusive to it, which is what deleting the\n"
	  "namespace would free.\n"
	  "\n"
	  "Sends: du [NAMESPACE]\n"
	  "\n"
	  "Example:\n"
	  "  tallyctl /mnt/t du main\n",
	  0, 1, 0, build_du },
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const struct cmd *find_cmd(const char *name)
{
	size_t i;

	for (i = 0; i < NCMDS; i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

static void usage(FILE *f)
{
	char left[64];
	size_t i;

	fprintf(f,
		"usage: tallyctl [--json] MOUNTPOINT COMMAND [ARGS]\n"
		"       tallyctl [COMMAND] --help\n"
		"       tallyctl --version\n"
		"\n"
		"Control a mounted tallyfs through MOUNTPOINT/.tally: each\n"
		"command is one line written to .tally/ctl, which returns when\n"
		"the mount has done it; its report is printed then.\n"
		"\n"
		"Commands:\n");
	for (i = 0; i < NCMDS; i++) {
		snprintf(left, sizeof(left), "%s%s%s", cmds[i].name,
			 cmds[i].synopsis[0] ? " " : "", cmds[i].synopsis);
		fprintf(f, "  %-34s %s\n", left, cmds[i].summary);
	}
	fprintf(f,
		"\n"
		"Options (anywhere on the line):\n"
		"  --json      one JSON object on stdout, for scripts\n"
		"  --no-progress\n"
		"              no progress of long commands (gc, verify,\n"
		"              drain, branch, sweep, rebalance, shard drain)\n"
		"              on stderr\n"
		"  --progress-delay=S\n"
		"              show progress once a command has run S seconds\n"
		"              (default 0.5; 0: at once, and always a final\n"
		"              line)\n"
		"  -h, --help  this text; `tallyctl COMMAND --help` for one "
		"command\n"
		"  --version   print the version\n"
		"\n"
		"A mount that does not know a command answers EINVAL (exit 1).\n"
		"Exit status: 0 ok, 1 the command failed, 2 usage error (also:\n"
		"MOUNTPOINT is not a tallyfs mount).\n"
		"\n"
		"Example:\n"
		"  tallyctl /mnt/t branch main dev\n");
}

static void cmd_usage(FILE *f, const struct cmd *c)
{
	fprintf(f, "usage: tallyctl [--json] MOUNTPOINT %s%s%s\n\n%s", c->name,
		c->synopsis[0] ? " " : "", c->synopsis, c->help);
}

/* ------------------------------------------------------------- main */

/* Every argument that starts with "-" (before "--") is an option. */
static int parse_options(struct inv *inv, int argc, char **argv, char **pos,
			 unsigned *npos, bool *help, bool *version)
{
	bool opts_done = false;
	int i;
	size_t k;

	*npos = 0;
	for (i = 1; i < argc; i++) {
		char *a = argv[i], *eq;
		size_t nlen;

		if (opts_done || a[0] != '-' || !a[1]) {
			pos[(*npos)++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			opts_done = true;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			*help = true;
			continue;
		}
		if (!strcmp(a, "--version")) {
			*version = true;
			continue;
		}
		if (!strcmp(a, "--json")) {
			inv->json = true;
			continue;
		}
		if (!strcmp(a, "--no-progress")) {
			inv->no_progress = true;
			continue;
		}
		if (!strncmp(a, "--progress-delay", 16) &&
		    (a[16] == '=' || !a[16])) {
			const char *v = a[16] ? a + 17 : NULL;

			if (!v && i + 1 < argc)
				v = argv[++i];
			if (!v) {
				usage_error(NULL, "option '%s' needs a value",
					    a);
				return RC_USAGE;
			}
			if (!parse_decimal(v, &inv->progress_delay) ||
			    inv->progress_delay > 3600) {
				usage_error(NULL,
					    "--progress-delay wants a number "
					    "of seconds (0 to 3600), not '%s'",
					    v);
				return RC_USAGE;
			}
			continue;
		}
		if (a[1] != '-')
			goto unknown;
		eq = strchr(a, '=');
		nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		for (k = 0; k < NOPTS; k++)
			if (strlen(opt_defs[k].name) == nlen &&
			    !strncmp(opt_defs[k].name, a + 2, nlen))
				break;
		if (k == NOPTS)
			goto unknown;
		if (opt_defs[k].has_value) {
			if (eq) {
				inv->opt_val[k] = eq + 1;
			} else if (i + 1 < argc) {
				inv->opt_val[k] = argv[++i];
			} else {
				usage_error(NULL, "option '%s' needs a value",
					    a);
				return RC_USAGE;
			}
		} else if (eq) {
			usage_error(NULL, "option '--%s' takes no value",
				    opt_defs[k].name);
			return RC_USAGE;
		}
		inv->opts |= opt_defs[k].bit;
	}
	return RC_OK;
unknown:
	usage_error(NULL, "unknown option '%s'", argv[i]);
	return RC_USAGE;
}

/* MOUNTPOINT must be a tallyfs mount: MOUNTPOINT/.tally/ctl exists. */
static int check_mount(struct inv *inv)
{
	char *ctl = path_join(inv->mnt, ".tally/ctl");
	struct stat st;
	int rc;

	if (!ctl)
		return command_failed(inv, "checking the mount", ENOMEM);
	rc = stat(ctl, &st) ? errno : 0;
	free(ctl);
	if (rc == ENOENT || rc == ENOTDIR || (!rc && !S_ISREG(st.st_mode))) {
		if (stat(inv->mnt, &st))
			usage_error(NULL, "cannot use '%s' as MOUNTPOINT: %s",
				    inv->mnt, strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			usage_error(NULL, "'%s' is not a directory", inv->mnt);
		else
			usage_error(NULL,
				    "'%s' is not a tallyfs mount (it has no "
				    ".tally/ctl)",
				    inv->mnt);
		return RC_USAGE;
	}
	if (rc)
		return command_failed(inv, "checking the mount", rc);
	inv->mnt_real = realpath(inv->mnt, NULL);
	if (!inv->mnt_real)
		return command_failed(inv, "checking the mount", errno);
	return RC_OK;
}

static int run(int argc, char **argv, struct inv *inv)
{
	struct cmdline line = { .len = 0 };
	bool help = false, version = false;
	const struct cmd *c;
	unsigned npos, i;
	char **pos;
	int rc;

	pos = calloc((size_t)argc + 1, sizeof(*pos));
	if (!pos)
		return command_failed(inv, "starting", ENOMEM);
	rc = parse_options(inv, argc, argv, pos, &npos, &help, &version);
	if (rc)
		goto out;
	if (version) {
		printf("tallyctl %s\n", TALLY_VERSION);
		goto out;
	}
	if (help) {
		/* tallyctl [MOUNTPOINT] [COMMAND [ARGS]] --help */
		struct stat st;
		const char *name = NULL;

		c = npos > 0 ? find_cmd(pos[0]) : NULL;
		if (!c && npos > 1)
			name = pos[1];
		else if (!c && npos == 1 &&
			 (stat(pos[0], &st) || !S_ISDIR(st.st_mode)))
			name = pos[0]; /* not a MOUNTPOINT either */
		if (name) {
			c = find_cmd(name);
			if (!c) {
				usage_error(NULL,
					    "'%s' is not a tallyctl command",
					    name);
				rc = RC_USAGE;
				goto out;
			}
		}
		if (c)
			cmd_usage(stdout, c);
		else
			usage(stdout); /* nothing, or just MOUNTPOINT */
		goto out;
	}
	if (npos == 0) {
		usage(stderr);
		rc = RC_USAGE;
		goto out;
	}
	if (npos == 1) {
		c = find_cmd(pos[0]);
		if (c)
			usage_error(NULL,
				    "missing MOUNTPOINT: tallyctl "
				    "MOUNTPOINT %s",
				    c->name);
		else
			usage_error(NULL, "missing COMMAND after '%s'", pos[0]);
		rc = RC_USAGE;
		goto out;
	}
	inv->mnt = pos[0];
	inv->cmd = find_cmd(pos[1]);
	if (!inv->cmd) {
		usage_error(NULL, "'%s' is not a tallyctl command", pos[1]);
		rc = RC_USAGE;
		goto out;
	}
	c = inv->cmd;
	inv->args = pos + 2;
	inv->nargs = npos - 2;
	if (inv->nargs < c->min_args || inv->nargs > c->max_args) {
		usage_error(inv, "%s; usage: tallyctl MOUNTPOINT %s%s%s",
			    inv->nargs < c->min_args ? "missing arguments"
						     : "too many arguments",
			    c->name, c->synopsis[0] ? " " : "", c->synopsis);
		rc = RC_USAGE;
		goto out;
	}
	for (i = 0; i < NOPTS; i++) {
		if ((inv->opts & opt_defs[i].bit) &&
		    !(c->opts & opt_defs[i].bit)) {
			usage_error(inv, "option '--%s' does not apply to %s",
				    opt_defs[i].name, c->name);
			rc = RC_USAGE;
			goto out;
		}
	}
	rc = check_mount(inv);
	if (rc)
		goto out;
	if (!c->build) {
		rc = run_status(inv);
		goto out;
	}
	rc = c->build(inv, &line);
	if (!rc)
		rc = run_ctl(inv, &line);
out:
	free(pos);
	return rc;
}

int main(int argc, char **argv)
{
	struct inv inv = { .mnt = NULL, .progress_delay = PROGRESS_DELAY };
	int rc = run(argc, argv, &inv);

	free(inv.mnt_real);
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "%s: writing the output: %s\n", prog,
			strerror(errno));
		return RC_FAILED;
	}
	return rc;
}
