/* SPDX-License-Identifier: MIT */
/*
 * ctlwatch: the progress of a long tallyctl command. While it runs (the
 * write to .tally/ctl blocks until it is done), a thread polls
 * .tally/status for the command's job ("jobs": [{"id", "name", "started",
 * "done", "total", "unit"}]) and shows its progress on stderr: a bar
 * redrawn with \r on a terminal, a plain line every PROGRESS_EVERY seconds
 * otherwise. Nothing is shown before the delay (--progress-delay, default
 * CTLWATCH_DELAY seconds) has passed, so a quick command prints nothing;
 * once something may have been shown, a final line always ends it, when
 * the command returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "tools/ctljson.h"
#include "tools/ctlwatch.h"
#include "tools/tallyctl.h"

#define PROGRESS_POLL_MS 200 /* between two reads of .tally/status */
#define PROGRESS_EVERY 2.0   /* seconds between two plain lines */
#define PROGRESS_KNOWN 16    /* ids of older jobs of the same name */

/* The commands that run as jobs showing progress (the job's name). */
static const char *const long_cmds[] = { "gc",	   "verify", "drain",
					 "branch", "sweep",  "rebalance" };

/*
 * The name of the job that the command runs in the mount, or NULL if it
 * runs none worth watching: the command's own name for the long ones,
 * "rebalance" for `shard drain` (which moves everything off the shard),
 * "drain remote" and "verify remote" for those.
 */
static const char *job_name(const struct inv *inv)
{
	bool remote = inv->nargs && !strcmp(inv->args[0], "remote");
	size_t i;

	if (remote && !strcmp(inv->cmd->name, "drain"))
		return "drain remote";
	if (remote && !strcmp(inv->cmd->name, "verify"))
		return "verify remote";
	if (!strcmp(inv->cmd->name, "shard"))
		return inv->nargs && !strcmp(inv->args[0], "drain")
			       ? "rebalance"
			       : NULL;
	for (i = 0; i < sizeof(long_cmds) / sizeof(long_cmds[0]); i++)
		if (!strcmp(inv->cmd->name, long_cmds[i]))
			return long_cmds[i];
	return NULL;
}

struct ctlwatch {
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
	bool seen;		/* our job was found... */
	struct ctljson_job job; /* ...as last seen */
	bool shown;		/* something was printed */
	double last_line;	/* elapsed seconds at the last plain line */
	size_t drawn;		/* columns of the bar drawn last */
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

/*
 * Call @fn for each job of the status document at @path; nothing if it
 * cannot be read or is not the JSON object expected.
 */
static void status_jobs(const char *path,
			void (*fn)(void *ctx, const char *name,
				   const struct ctljson_job *j),
			void *ctx)
{
	struct json_t *doc = NULL;
	char *text = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (!tallyctl_read_all(fd, &text) && !ctljson_parse(text, &doc)) {
		ctljson_each_job(ctljson_get(doc, "jobs"), fn, ctx);
		ctljson_free(doc);
	}
	free(text);
	close(fd);
}

static void note_known(void *ctx, const char *name, const struct ctljson_job *j)
{
	struct ctlwatch *w = ctx;

	if (!strcmp(name, w->job_name) && w->nknown < PROGRESS_KNOWN)
		w->known[w->nknown++] = j->id;
}

/* Our job: the first of its name that was not there before, then that
 * one only. */
static void note_ours(void *ctx, const char *name, const struct ctljson_job *j)
{
	struct ctlwatch *w = ctx;
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
static void job_text(const struct ctlwatch *w, bool finished, char *buf,
		     size_t n)
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
static void draw_bar(struct ctlwatch *w, double secs, const char *end)
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
static void print_line(struct ctlwatch *w, double secs, const char *end)
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
static bool plain_due(const struct ctlwatch *w, double secs)
{
	if (w->shown)
		return secs - w->last_line >= PROGRESS_EVERY;
	return (w->seen && w->job.total) || secs - w->delay >= PROGRESS_EVERY;
}

static void *watch_fn(void *arg)
{
	struct ctlwatch *w = arg;
	struct timespec until;
	bool stop = false;

	while (!stop) {
		double secs = elapsed_s(&w->t0), took;
		long wait_ms;

		status_jobs(w->status_path, note_ours, w);

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

struct ctlwatch *ctlwatch_start(struct inv *inv)
{
	const char *name = job_name(inv);
	pthread_condattr_t ca;
	struct ctlwatch *w;

	if (inv->no_progress || !name)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->job_name = name;
	w->inv = inv;
	w->tty = isatty(STDERR_FILENO);
	w->delay = inv->progress_delay;
	w->status_path = tallyctl_path_join(inv->mnt, ".tally/status");
	if (!w->status_path) {
		free(w);
		return NULL;
	}
	/* the jobs of that name already running are not ours */
	status_jobs(w->status_path, note_known, w);
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
		free(w);
		return NULL;
	}
	return w;
}

void ctlwatch_stop(struct ctlwatch *w, bool ok)
{
	double secs;

	if (!w)
		return;
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
	free(w);
}
