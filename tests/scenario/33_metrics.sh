#!/bin/bash
# SPDX-License-Identifier: MIT
# The metrics (docs/metrics.md), read by Prometheus' own parser
# (metrics_check.py, python3-prometheus-client):
#  - /.tally/metrics, `tallyctl metrics` and the HTTP listener of
#    -o metrics=127.0.0.1:PORT parse, with the expected families and
#    types; histograms are cumulative, +Inf == _count;
#  - the listener answers GET /metrics only (404 otherwise), and listens
#    on the address given only;
#  - a known workload moves the counters: N bytes written -> write bytes
#    +N at least; K creates -> op="create" +K exactly; the same blocks
#    written twice -> dedup hits; a remount and a cold read -> read
#    bytes; a GC cycle -> gc_runs_total +1;
#  - a malformed metrics= and a port in use refuse the mount, naming the
#    problem;
#  - with a remote tier (s3rver): the remote families, uploads rise;
#    every metric docs/grafana-tallyfs.json names is exposed.
SCN_TIMEOUT=360
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"

# /usr/bin/python3: the one Debian's python3-prometheus-client is for
CHECK=(/usr/bin/python3 "$SCN_DIR/metrics_check.py")
CTL=$TALLY_BUILD/tools/tallyctl
[[ -x $CTL ]] || fail "no tallyctl at $CTL"

# free_port: a port of 127.0.0.1 nothing listens on (now)
free_port() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# scrape NAME [URL]: the document, parsed and checked, in $TMP/NAME.json
# (from URL, else from /.tally/metrics)
scrape() {
	local out=$TMP/$1.txt

	if [[ -n ${2:-} ]]; then
		T curl -fsS "$2" -o "$out" || fail "GET $2 failed"
	else
		T cat "$MNT/.tally/metrics" >"$out" ||
			fail "cannot read $MNT/.tally/metrics"
	fi
	T "${CHECK[@]}" parse "$out" >"$TMP/$1.json" ||
		fail "the metrics of $1 do not parse (see $out)"
}

# val NAME KEY: a sample of scrape NAME
val() { "${CHECK[@]}" value "$TMP/$1.json" "$2" || fail "no $2 in $1"; }

# type_of NAME FAMILY: its type as the parser saw it
type_of() {
	python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["types"].get(sys.argv[2], "none"))' \
		"$TMP/$1.json" "$2"
}

PORT=$(free_port)
URL=http://127.0.0.1:$PORT/metrics

log "a malformed metrics= is refused, naming the problem"
mkdir "$TMP/m2"
assert_fails "no port" "$TALLYFS" -f -o metrics=127.0.0.1 "$TMP/s2" "$TMP/m2"
assert_fails "not a numeric IPv4 address" "$TALLYFS" -f \
	-o metrics=localhost:9108 "$TMP/s2" "$TMP/m2"
assert_fails "the port is 1 to 65535" "$TALLYFS" -f \
	-o metrics=127.0.0.1:70000 "$TMP/s2" "$TMP/m2"
assert_fails "the port is 1 to 65535" "$TALLYFS" -f \
	-o metrics=127.0.0.1:12ab "$TMP/s2" "$TMP/m2"
is_mounted "$TMP/m2" && fail "a refused mount is mounted"

log "mount with the listener"
mount_fs "$STORE" "$MNT" -o "metrics=127.0.0.1:$PORT"
mkdir "$MNT/main"

log "a port in use refuses a second mount"
assert_fails "cannot listen on '127.0.0.1:$PORT' for metrics: Address" \
	"$TALLYFS" -f -o "metrics=127.0.0.1:$PORT" "$TMP/s2" "$TMP/m2"
is_mounted "$TMP/m2" && fail "a refused mount is mounted"

log "the three ways in parse, with the expected families"
scrape file
scrape http "$URL"
T "$CTL" "$MNT" metrics >"$TMP/ctl.txt" || fail "tallyctl metrics failed"
T "${CHECK[@]}" parse "$TMP/ctl.txt" >"$TMP/ctl.json" ||
	fail "tallyctl metrics does not parse"
for fam in tallyfs_fuse_request_duration_seconds:histogram \
	tallyfs_flush_duration_seconds:histogram \
	tallyfs_fuse_request_errors:counter tallyfs_read_bytes:counter \
	tallyfs_write_bytes:counter tallyfs_flush_errors:counter \
	tallyfs_dedup_hits:counter tallyfs_gc_runs:counter \
	tallyfs_gc_collected_objects:counter tallyfs_objects:gauge \
	tallyfs_stored_bytes:gauge tallyfs_dedup_ratio:gauge \
	tallyfs_shard_bytes:gauge tallyfs_sessions:gauge \
	tallyfs_hosts:gauge tallyfs_build_info:gauge; do
	for src in file http ctl; do
		assert_eq "type of ${fam%%:*} ($src)" "${fam##*:}" \
			"$(type_of "$src" "${fam%%:*}")"
	done
done
assert_eq "no remote family without a remote tier" "" \
	"$(grep -o '^tallyfs_remote_[a-z_]*' "$TMP/http.txt" | head -1)"
for op in lookup create write read flush release getattr mkdir; do
	val http "tallyfs_fuse_request_duration_seconds_count{op=\"$op\"}" \
		>/dev/null
done

log "the listener: GET /metrics only, its content type, 127.0.0.1 only"
code() { T curl -s -o /dev/null -w '%{http_code}' "$@"; }
assert_eq "GET /" 404 "$(code "http://127.0.0.1:$PORT/")"
assert_eq "GET /metricsx" 404 "$(code "${URL}x")"
assert_eq "POST /metrics" 404 "$(code -X POST -d x "$URL")"
assert_eq "GET /metrics" 200 "$(code "$URL")"
ctype=$(T curl -fsS -o /dev/null -w '%{content_type}' "$URL")
assert_match "content type" '^text/plain; version=0\.0\.4' "$ctype"
listen=$(ss -Hltn "sport = :$PORT" | awk '{ print $4 }' | sort -u)
assert_eq "listening on" "127.0.0.1:$PORT" "$listen"

log "a workload moves the counters"
N=$((3 * MIB + 4321))
K=7
scrape before "$URL"
rand_file "$TMP/data" "$N"
T cp "$TMP/data" "$MNT/main/w1"
for ((i = 0; i < K; i++)); do
	: >"$MNT/main/c$i"
done
drain
scrape after1 "$URL"
T cp "$TMP/data" "$MNT/main/w2" # the same blocks: dedup hits
drain
scrape after "$URL"
d=$(($(val after tallyfs_write_bytes_total) - $(val before \
	tallyfs_write_bytes_total)))
((d >= 2 * N)) || fail "write bytes rose by $d, not >= $((2 * N))"
key='tallyfs_fuse_request_duration_seconds_count{op="create"}'
assert_eq "creates counted" $((K + 2)) \
	$(($(val after "$key") - $(val before "$key")))
blocks=$(((N + MIB - 1) / MIB))
d=$(($(val after tallyfs_dedup_hits_total) - $(val after1 \
	tallyfs_dedup_hits_total)))
((d >= blocks)) || fail "dedup hits rose by $d, not >= $blocks"
d=$(($(val after tallyfs_object_writes_total) - $(val before \
	tallyfs_object_writes_total)))
((d >= blocks)) || fail "new objects rose by $d, not >= $blocks"
d=$(($(val after tallyfs_flush_duration_seconds_count) - $(val before \
	tallyfs_flush_duration_seconds_count)))
((d >= 2)) || fail "flushes rose by $d, not >= 2"
assert_eq "objects (status vs metrics)" "$(status_get objects)" \
	"$(val after tallyfs_objects)"
assert_eq "stored bytes (status vs metrics)" "$(status_get bytes_stored)" \
	"$(val after tallyfs_stored_bytes)"
# a lookup of a missing name is an error reply
e0=$(val after 'tallyfs_fuse_request_errors_total{op="lookup"}')
[[ ! -e $MNT/main/absent ]] || fail "absent exists"
scrape after2 "$URL"
e1=$(val after2 'tallyfs_fuse_request_errors_total{op="lookup"}')
((e1 > e0)) || fail "a failed lookup was not counted ($e0 -> $e1)"

log "a GC cycle"
ctl "gc grace=0" || fail "gc failed"
scrape gc "$URL"
assert_eq "gc runs" $(($(val after tallyfs_gc_runs_total) + 1)) \
	"$(val gc tallyfs_gc_runs_total)"
val gc tallyfs_gc_reclaimable_bytes >/dev/null
val gc tallyfs_gc_last_run_timestamp_seconds >/dev/null

log "a remount starts over; a cold read counts its bytes"
umount_fs
mount_fs "$STORE" "$MNT" -o "metrics=127.0.0.1:$PORT"
scrape cold0 "$URL"
T cat "$MNT/main/w1" >/dev/null
scrape cold1 "$URL"
d=$(($(val cold1 tallyfs_read_bytes_total) - $(val cold0 \
	tallyfs_read_bytes_total)))
((d >= N)) || fail "read bytes rose by $d, not >= $N"
key='tallyfs_fuse_request_duration_seconds_count{op="read"}'
(($(val cold1 "$key") > 0)) || fail "no read request counted"
umount_fs
T curl -s "$URL" -o /dev/null && fail "the listener outlived the unmount"

log "a remote tier: its families, uploads; the Grafana dashboard"
s3_start tally-metrics || fail "cannot start the S3 server"
PORT2=$(free_port)
URL2=http://127.0.0.1:$PORT2/metrics
mount_fs "$TMP/rstore" "$TMP/m2" -o "metrics=127.0.0.1:$PORT2" \
	-o "remote=s3://$S3_BUCKET/m,remote_endpoint=$S3_ENDPOINT"
mkdir "$TMP/m2/main"
scrape r0 "$URL2"
T cp "$TMP/data" "$TMP/m2/main/f"
ctl "drain remote 120" "$TMP/m2" || fail "drain remote failed"
ctl "gc grace=0" "$TMP/m2" || fail "gc failed"
scrape r1 "$URL2"
for fam in tallyfs_remote_uploads:counter \
	tallyfs_remote_upload_bytes:counter \
	tallyfs_remote_queue_depth:gauge tallyfs_remote_fetches:counter; do
	assert_eq "type of ${fam%%:*}" "${fam##*:}" \
		"$(type_of r1 "${fam%%:*}")"
done
d=$(($(val r1 tallyfs_remote_uploads_total) - $(val r0 \
	tallyfs_remote_uploads_total)))
((d >= blocks)) || fail "uploads rose by $d, not >= $blocks"
d=$(($(val r1 tallyfs_remote_upload_bytes_total) - $(val r0 \
	tallyfs_remote_upload_bytes_total)))
((d >= N)) || fail "uploaded bytes rose by $d, not >= $N"
assert_eq "queue depth after drain remote" 0 \
	"$(val r1 tallyfs_remote_queue_depth)"
n=$(T "${CHECK[@]}" grafana "$TALLY_SRC/docs/grafana-tallyfs.json" \
	"$TMP/r1.json") || fail "the dashboard names metrics not exposed"
log "the dashboard's $n metric names are exposed"
umount_fs "$TMP/m2"
log "ok"
