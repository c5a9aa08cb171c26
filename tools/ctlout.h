/* SPDX-License-Identifier: MIT */
/*
 * ctlout: what tallyctl prints on stdout. A report (the `key: value`
 * lines that .tally/ctl answers) or the status document is shown to
 * people as aligned lines, sizes in B/KiB/MiB/GiB, ratios, durations and
 * dates, the running jobs one per line and the shards as a table; to
 * scripts (--json) a report is one JSON object, numbers as numbers.
 */
#ifndef TALLY_TOOLS_CTLOUT_H
#define TALLY_TOOLS_CTLOUT_H

#include <stdbool.h>
#include <stddef.h>

struct json_t;

/* A `key: value` line of a report, or a member of an object of the status. */
struct kv {
	const char *key;     /* NULL: a report line without a key */
	const char *val;     /* the value as text (a string decoded) */
	struct json_t *node; /* a member of the status: its value, else NULL */
	bool quoted;	     /* @val is a string */
	size_t idx;	     /* position in the document */
	char num[32];	     /* the text of a number, true, false or null */
};

/* @s as a JSON string on stdout. */
void ctlout_json_string(const char *s);

/*
 * The value @val of @key as a person reads it: sizes in B/KiB/MiB/GiB,
 * ratios as 1.25x, durations in ms/s, times (`at`, `*_at`: seconds since
 * the epoch) as local dates; anything else (and every string, @quoted) as
 * is. Returns @val or @buf (@n bytes, 64 are enough).
 */
const char *ctlout_value(const char *key, const char *val, bool quoted,
			 char *buf, size_t n);

/*
 * Aligned `key: value` lines, indented by @indent; entries without a key
 * are printed as is. A nested object of the status (last_gc, last_sweep)
 * is shown as its members, indented below its key; an array as its
 * length; null as "none". The running jobs are listed one per line below
 * "jobs:", the shards as a table below "shards:".
 */
void ctlout_human(struct kv *kv, size_t n, int indent);

/*
 * The status document @doc (an object of ctljson_parse(), borrowed) as
 * ctlout_human() shows it. 0 or -ENOMEM (nothing printed).
 */
int ctlout_status(struct json_t *doc);

/*
 * The report of `shard list`: its summary lines (aligned), then the
 * shards (a `shard: ID` line and the lines after it, each) as a table.
 */
void ctlout_shard_list(struct kv *kv, size_t n);

/*
 * Split a report into its lines, in place: `key: value` lines become
 * pairs, other non-empty lines entries without a key. *@out is malloc'ed
 * (the caller's), its strings point into @text. 0 or -ENOMEM.
 */
int ctlout_parse_report(char *text, struct kv **out, size_t *n);

/*
 * A report as one JSON object: numbers as numbers, everything else as
 * strings; a key that occurs on several lines becomes an array of its
 * values (in report order); lines without a key go to "text". 0 or
 * -ENOMEM (nothing printed).
 */
int ctlout_report_json(const struct kv *kv, size_t n);

#endif
