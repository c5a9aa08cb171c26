#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The metrics document of a mount, checked with Prometheus' own parser
(python3-prometheus-client), for tests/scenario/33_metrics.sh.

  metrics_check.py parse FILE          parse the exposition in FILE, check
                                       it (below) and print its samples as
                                       JSON: {"types": {family: type},
                                       "samples": {"name{k=\"v\",...}": v}}
  metrics_check.py value JSON KEY      the value of sample KEY (labels
                                       sorted by name), or exit 1
  metrics_check.py grafana DASH JSON   every tallyfs_* name the dashboard
                                       DASH references is in JSON

The checks of parse: the parser takes the whole text; every family has a
type and a help text; each histogram has, per label set, a bucket for
every bound in increasing order with +Inf last, counts that never
decrease, +Inf equal to _count, and a _sum; counters are never negative;
no sample appears twice.
"""
import json
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families


def fail(msg):
    print("metrics_check: " + msg, file=sys.stderr)
    sys.exit(1)


def key(name, labels):
    if not labels:
        return name
    return name + "{" + ",".join(
        '%s="%s"' % (k, labels[k]) for k in sorted(labels)) + "}"


def check_histogram(fam):
    groups = {}
    for s in fam.samples:
        base = {k: v for k, v in s.labels.items() if k != "le"}
        g = groups.setdefault(key("", base), {"b": [], "sum": None,
                                              "count": None})
        if s.name == fam.name + "_bucket":
            g["b"].append((s.labels["le"], s.value))
        elif s.name == fam.name + "_sum":
            g["sum"] = s.value
        elif s.name == fam.name + "_count":
            g["count"] = s.value
        elif s.name != fam.name + "_created":
            fail("%s: stray sample %s" % (fam.name, s.name))
    if not groups:
        fail("histogram %s has no samples" % fam.name)
    for lab, g in groups.items():
        where = fam.name + lab
        if not g["b"] or g["b"][-1][0] != "+Inf":
            fail("%s: the last bucket is not +Inf: %s" % (where, g["b"]))
        bounds = [float(le) for le, _ in g["b"]]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            fail("%s: bounds not increasing: %s" % (where, bounds))
        counts = [v for _, v in g["b"]]
        if any(b < a for a, b in zip(counts, counts[1:])):
            fail("%s: buckets not cumulative: %s" % (where, counts))
        if g["count"] is None or g["sum"] is None:
            fail("%s: no _count or no _sum" % where)
        if counts[-1] != g["count"]:
            fail("%s: +Inf %s != _count %s" % (where, counts[-1],
                                                g["count"]))
        if g["sum"] < 0 or (g["count"] == 0 and g["sum"] != 0):
            fail("%s: _sum %s with _count %s" % (where, g["sum"],
                                                 g["count"]))


def parse(path):
    text = open(path, encoding="utf-8").read()
    if not text.endswith("\n"):
        fail("%s does not end with a newline" % path)
    types, samples = {}, {}
    try:
        fams = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser's own words
        fail("%s: the parser refuses it: %s" % (path, e))
    if not fams:
        fail("%s: no metric family" % path)
    for fam in fams:
        if fam.name in types:
            fail("family %s twice" % fam.name)
        if fam.type == "unknown" or not fam.documentation:
            fail("family %s: no # TYPE or no # HELP" % fam.name)
        types[fam.name] = fam.type
        if fam.type == "histogram":
            check_histogram(fam)
        for s in fam.samples:
            k = key(s.name, s.labels)
            if k in samples:
                fail("sample %s twice" % k)
            if math.isnan(s.value):
                fail("sample %s is NaN" % k)
            if fam.type == "counter" and s.value < 0:
                fail("counter %s is negative" % k)
            samples[k] = s.value
    # every name of the text is a family the parser knows
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, typ = line.split()[2:4]
            fam = name[:-6] if typ == "counter" and \
                name.endswith("_total") else name
            if types.get(fam) != typ:
                fail("# TYPE %s %s: parsed as %s" % (name, typ,
                                                     types.get(fam)))
    json.dump({"types": types, "samples": samples}, sys.stdout)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "parse":
        parse(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "value":
        d = json.load(open(sys.argv[2]))
        if sys.argv[3] not in d["samples"]:
            fail("no sample %s" % sys.argv[3])
        v = d["samples"][sys.argv[3]]
        print(int(v) if v == int(v) else v)
    elif len(sys.argv) == 4 and sys.argv[1] == "grafana":
        dash = open(sys.argv[2], encoding="utf-8").read()
        json.loads(dash)  # valid JSON
        names = set(re.findall(r"\btallyfs_[a-z0-9_]+", dash))
        have = set()
        for k in json.load(open(sys.argv[3]))["samples"]:
            have.add(k.split("{")[0])
        missing = sorted(n for n in names if n not in have)
        if not names:
            fail("the dashboard names no tallyfs_ metric")
        if missing:
            fail("the dashboard names metrics not exposed: %s" %
                 " ".join(missing))
        print(len(names))
    else:
        fail("usage: parse FILE | value JSON KEY | grafana DASH JSON")


if __name__ == "__main__":
    main()
