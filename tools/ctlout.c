/* SPDX-License-Identifier: MIT */
/*
 * ctlout: what tallyctl prints on stdout, for people and for scripts (see
 * ctlout.h): the human form of values and of the status document (nested
 * objects below their key, jobs one per line, the shards as a table), the
 * lines of a report, and a report as one JSON object.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/ctljson.h"
#include "tools/ctlout.h"

/* @s as a JSON string on stdout. */
void ctlout_json_string(const char *s)
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
const char *ctlout_value(const char *key, const char *val, bool quoted,
			 char *buf, size_t n)
{
	double v;

	if (quoted || !ctljson_is_number(val))
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
static void print_job(void *ctx, const char *name, const struct ctljson_job *j)
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
				shown = ctlout_value(m[k].key, m[k].val,
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

struct members {
	struct kv *kv;
	size_t n;
};

static int add_member(void *ctx, const char *key, struct json_t *v)
{
	struct members *m = ctx;
	struct kv *kv = &m->kv[m->n];
	const char *text = ctljson_text(v, kv->num, sizeof(kv->num));

	kv->key = key;
	kv->val = text ? text : "";
	kv->node = v;
	kv->quoted = ctljson_kind(v) == CTLJSON_STRING;
	kv->idx = m->n++;
	return 0;
}

/*
 * The members of the status's object @obj as pairs, in document order:
 * *@out is malloc'ed, its keys and strings are borrowed from @obj.
 */
static int object_members(struct json_t *obj, struct kv **out, size_t *n)
{
	size_t len = ctljson_len(obj);
	struct members m = { .kv = calloc(len ? len : 1, sizeof(*m.kv)) };

	if (!m.kv)
		return -ENOMEM;
	ctljson_each_member(obj, add_member, &m);
	*out = m.kv;
	*n = m.n;
	return 0;
}

/* One shard of the status's "shards" array: a row of the table. */
static int shard_object(void *ctx, struct json_t *obj)
{
	struct shard_table *t = ctx;
	struct kv *m;
	size_t nm;
	int rc = object_members(obj, &m, &nm);

	if (rc)
		return rc;
	shard_row(t, m, nm);
	free(m);
	return t->rc;
}

/* The value of member @key of @m (@nm of them), or "?". */
static const char *member(const struct kv *m, size_t nm, const char *key)
{
	size_t i;

	for (i = 0; i < nm; i++)
		if (m[i].key && !strcmp(m[i].key, key))
			return m[i].val ? m[i].val : "?";
	return "?";
}

/* One node of the status's "nodes" array (a session): a line. */
static int node_object(void *ctx, struct json_t *obj)
{
	int indent = *(const int *)ctx;
	long long beat, ago = -1;
	struct kv *m;
	size_t nm;
	int rc = object_members(obj, &m, &nm);

	if (rc)
		return rc;
	beat = strtoll(member(m, nm, "last_heartbeat"), NULL, 10);
	if (beat > 0)
		ago = (long long)time(NULL) - beat;
	printf("%*snode %s on %s (pid %s): heartbeat %llds ago, %s active "
	       "object(s)\n",
	       indent + 2, "", member(m, nm, "id"), member(m, nm, "host"),
	       member(m, nm, "pid"), ago, member(m, nm, "active"));
	free(m);
	return 0;
}

/*
 * The status's "shards" array (@arr) as a table below its key. false
 * (nothing printed) if @arr is not an array of objects.
 */
static bool print_shards(struct json_t *arr, int indent)
{
	struct shard_table t = { .cell = NULL };
	bool ok = !ctljson_each_object(arr, shard_object, &t) && !t.rc;

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
void ctlout_human(struct kv *kv, size_t n, int indent)
{
	size_t i, m, width = 0, len;
	enum ctljson_kind kind;
	const char *shown;
	struct kv *sub;
	char buf[64];
	size_t items;

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
		kind = kv[i].node ? ctljson_kind(kv[i].node) : CTLJSON_STRING;
		if (kind == CTLJSON_OBJECT &&
		    !object_members(kv[i].node, &sub, &m)) {
			printf("%*s%s:\n", indent, "", kv[i].key);
			ctlout_human(sub, m, indent + 2);
			free(sub);
			continue;
		}
		shown = ctlout_value(kv[i].key, kv[i].val, kv[i].quoted, buf,
				     sizeof(buf));
		len = strlen(kv[i].key);
		if (kind == CTLJSON_ARRAY) {
			items = ctljson_len(kv[i].node);
			if (items > 0 && !strcmp(kv[i].key, "jobs")) {
				printf("%*s%s:%*s %zu running\n", indent, "",
				       kv[i].key,
				       len < width ? (int)(width - len) : 0, "",
				       items);
				ctljson_each_job(kv[i].node, print_job,
						 &indent);
				continue;
			}
			if (items > 0 && !strcmp(kv[i].key, "nodes")) {
				printf("%*s%s:%*s %zu\n", indent, "", kv[i].key,
				       len < width ? (int)(width - len) : 0, "",
				       items);
				ctljson_each_object(kv[i].node, node_object,
						    &indent);
				continue;
			}
			if (items > 0 && !strcmp(kv[i].key, "shards")) {
				printf("%*s%s:%*s %zu\n", indent, "", kv[i].key,
				       len < width ? (int)(width - len) : 0, "",
				       items);
				if (!print_shards(kv[i].node, indent))
					printf("%*s(not readable: see --json)\n",
					       indent + 2, "");
				continue;
			}
			if (items == 0)
				shown = "none";
			else if (snprintf(buf, sizeof(buf), "%zu %s", items,
					  items == 1 ? "entry" : "entries") > 0)
				shown = buf;
		} else if (kind == CTLJSON_NULL) {
			shown = "none";
		}
		printf("%*s%s:%*s %s\n", indent, "", kv[i].key,
		       len < width ? (int)(width - len) : 0, "", shown);
	}
}

/*
 * The report of `shard list`: its summary lines (aligned), then the
 * shards (a `shard: ID` line and the lines after it, each) as a table.
 */
void ctlout_shard_list(struct kv *kv, size_t n)
{
	struct shard_table t = { .cell = NULL };
	size_t first = 0, i, j;

	while (first < n && !(kv[first].key && !strcmp(kv[first].key, "shard")))
		first++;
	ctlout_human(kv, first, 0);
	for (i = first; i < n; i = j) {
		for (j = i + 1; j < n; j++)
			if (kv[j].key && !strcmp(kv[j].key, "shard"))
				break;
		shard_row(&t, kv + i, j - i);
	}
	print_table(&t, -2, !t.rc && t.n);
}

int ctlout_status(struct json_t *doc)
{
	struct kv *kv;
	size_t n;
	int rc = object_members(doc, &kv, &n);

	if (rc)
		return rc;
	ctlout_human(kv, n, 0);
	free(kv);
	return 0;
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
int ctlout_parse_report(char *text, struct kv **out, size_t *n)
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
	if (ctljson_is_number(val))
		fputs(val, stdout);
	else
		ctlout_json_string(val);
}

/*
 * A report as one JSON object: numbers as numbers, everything else as
 * strings; a key that occurs on several lines becomes an array of its
 * values (in report order); lines without a key go to "text".
 */
int ctlout_report_json(const struct kv *kv, size_t n)
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
		ctlout_json_string(key);
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
