#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Self-test of faultproxy.py: puts it in front of a small in-memory HTTP
# server (PUT, GET, HEAD, DELETE of whole objects; it logs each request it
# answers, and each PUT whose body came short) and checks with curl(1):
#
#   * pass: a 3 MiB PUT and the GET of the same bytes (sha256) over one
#     kept-alive connection; a chunked PUT; HEAD, DELETE (204) and a GET
#     of a missing key, then a GET, over one connection;
#   * status: 503 SlowDown (status line, XML code) for n=2 requests, none
#     of them reaching the upstream, then pass; a PUT's body drained so
#     the connection serves the next request, or with Expect: 100-continue
#     an answer at once with Connection: close; method=PUT and method=LIST
#     filters, and key= (a part of the target); full: 507
#     XMinioStorageFull;
#   * stall: curl --speed-time 2 --speed-limit 1 gives up (exit 28) on an
#     upload and on a download (which got exactly half the body); the
#     abandoned upload never completes upstream; a stall released in time
#     completes with the right bytes;
#   * cut: an upload fails with no answer and reaches the upstream short;
#     a download stops after half the body (exit 18);
#   * refuse: the connection is reset (no HTTP status), once; down: the
#     connection is refused (exit 7) until the next command;
#   * hold: a DELETE kept (never upstream) past its client's timeout, then
#     delivered by the deliver command and done upstream; a held PUT
#     delivered whole while its client waits, which gets no answer;
#   * the counters of each, and bad control commands refused (400).
#
# The proxy runs under $PYTHON (python3 from PATH), and a short pass under
# /usr/bin/python3 when that is another interpreter. When
# $TALLY_S3RVER_DIR holds @20minutes/s3rver (an npm prefix where it is
# installed, or the package itself) and node is there, SigV4-signed
# requests also go through the proxy to s3rver: signed for the proxy's
# host:port, they pass, and a wrong secret is refused.
#
# Everything started here is killed by the EXIT trap; every command is
# bounded by timeout(1).
set -euo pipefail
export LC_ALL=C.UTF-8

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FAULTPROXY=$HERE/faultproxy.py
PYTHON=${PYTHON:-python3}
MIB=1048576

TMP=$(mktemp -d "${TMPDIR:-/tmp}/faultproxy-selftest.XXXXXX")
PIDS=()

log() { printf '# %s\n' "$*"; }

# fail MESSAGE...: report the failing line of the script (not of a helper)
# and exit 1.
fail() {
	local n=${#BASH_LINENO[@]}

	printf 'FAIL [faultproxy_selftest.sh:%s]: %s\n' \
		"${BASH_LINENO[n - 2]}" "$*" >&2
	exit 1
}

cleanup() {
	local rc=$? pid

	set +e
	trap - EXIT
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null ||
			kill -9 "$pid" 2>/dev/null
	done
	if ((rc != 0)); then
		for f in "$TMP"/*.log; do
			[[ -s $f ]] || continue
			echo "---- $(basename "$f") ----" >&2
			tail -n 30 "$f" >&2
		done
	fi
	rm -rf "$TMP"
	if ((rc == 0)); then
		echo "1 passed, 0 failed"
	else
		echo "0 passed, 1 failed"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v curl >/dev/null || fail "curl is missing (tools/install-deps.sh)"

# ------------------------------------------------------------- processes

# wait_lines FILE N PID: wait (10 s at most) until FILE has N lines, while
# PID lives.
wait_lines() {
	local n=100

	while ((n-- > 0)); do
		(($(wc -l <"$1") >= $2)) && return 0
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# The upstream: objects in memory, keyed by path. A PUT whose body comes
# short (the connection cut) stores nothing. Prints its port, then logs
# "METHOD PATH STATUS" per answer on stderr.
cat >"$TMP/upstream.py" <<'EOF'
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = {}

    def log_request(self, code="-", size="-"):
        sys.stderr.write("%s %s %s\n" % (self.command, self.path, code))
        sys.stderr.flush()

    def log_message(self, fmt, *args):
        pass

    def body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            data = b""
            while True:
                line = self.rfile.readline()
                if not line.endswith(b"\n"):
                    return None
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                chunk = self.rfile.read(size + 2)
                if len(chunk) != size + 2:
                    return None
                data += chunk[:size]
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        return data if len(data) == n else None

    def reply(self, code, data=b"", head=False):
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def do_PUT(self):
        data = self.body()
        if data is None:
            self.close_connection = True
            sys.stderr.write("PUT %s short\n" % self.path)
            sys.stderr.flush()
            return
        self.store[self.path] = data
        self.reply(200)

    def do_GET(self):
        if self.path in self.store:
            self.reply(200, self.store[self.path])
        else:
            self.reply(404)

    def do_HEAD(self):
        if self.path in self.store:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.store[self.path])))
            self.end_headers()
        else:
            self.reply(404, head=True)

    def do_DELETE(self):
        self.store.pop(self.path, None)
        self.reply(204)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        sys.stderr.write("%s: %s\n" % (client_address, sys.exc_info()[1]))
        sys.stderr.flush()


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF

start_upstream() {
	: >"$TMP/upstream.out"
	timeout -k 5 600 "$PYTHON" "$TMP/upstream.py" >"$TMP/upstream.out" \
		2>"$TMP/upstream.log" &
	PIDS+=($!)
	wait_lines "$TMP/upstream.out" 1 $! || fail "the upstream did not start"
	UPORT=$(head -n 1 "$TMP/upstream.out")
}

# start_proxy PYTHON UPSTREAM_PORT: sets PORT and CTL (the control port).
start_proxy() {
	local out=$TMP/proxy.$RANDOM.out

	: >"$out"
	timeout -k 5 600 "$1" "$FAULTPROXY" --upstream "127.0.0.1:$2" \
		--lifetime 300 >"$out" 2>>"$TMP/proxy.log" &
	PIDS+=($!)
	wait_lines "$out" 2 $! || fail "faultproxy ($1) did not start"
	PORT=$(sed -n 1p "$out")
	CTL=$(sed -n 2p "$out")
	[[ $PORT =~ ^[0-9]+$ && $CTL =~ ^[0-9]+$ ]] ||
		fail "faultproxy printed '$(cat "$out")', not two ports"
}

# ---------------------------------------------------------------- helpers

# C ARGS...: curl, bounded.
C() { timeout -k 2 30 curl -sS --max-time 20 "$@"; }

# ctl COMMAND: one control command; prints the answer.
ctl() {
	C -f "http://127.0.0.1:$CTL/$1" || fail "control command '$1' failed"
}

# counter NAME: one counter of the proxy.
counter() {
	ctl stats | awk -v k="$1" '$1 == k { print $2; f = 1 }
		END { exit !f }' || fail "no counter '$1' in the stats"
}

assert_eq() {
	[[ $3 == "$2" ]] || fail "$1: expected '$2', got '$3'"
}

# code ARGS...: the HTTP status curl saw ("000": none); curl's own exit
# status is ignored here.
code() { C -o /dev/null -w '%{http_code}' "$@" 2>/dev/null || true; }

# outcome ARGS...: "HTTP_STATUS EXIT_STATUS" of one curl (HTTP status
# "000": no answer, "100": only a 100 Continue).
outcome() {
	local rc=0 http

	http=$(C -o /dev/null -w '%{http_code}' "$@" 2>/dev/null) || rc=$?
	echo "$http $rc"
}

# wait_until SECONDS CMD...: true once CMD succeeds, false after SECONDS.
wait_until() {
	local n=$(($1 * 10))

	shift
	while ((n-- > 0)); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}

sha() { sha256sum <"$1" | cut -d' ' -f1; }

upstream_saw() { grep -c -- "$1" "$TMP/upstream.log" || true; }

# ------------------------------------------------------------------ tests

head -c $((3 * MIB)) /dev/urandom >"$TMP/big"
head -c 1000 /dev/urandom >"$TMP/small"
start_upstream
start_proxy "$PYTHON" "$UPORT"
U=http://127.0.0.1:$PORT/bucket
log "upstream on $UPORT, proxy on $PORT, control on $CTL"

log "pass: a 3 MiB PUT and its GET over one kept-alive connection"
out=$(C -T "$TMP/big" -o /dev/null -w '%{http_code} %{num_connects}\n' \
	"$U/big" --next -sS -o "$TMP/got" \
	-w '%{http_code} %{num_connects}\n' "$U/big") ||
	fail "curl failed: $out"
assert_eq "status and new connections of PUT, GET" $'200 1\n200 0' "$out"
assert_eq "sha256 of the GET" "$(sha "$TMP/big")" "$(sha "$TMP/got")"
assert_eq "connections" 1 "$(counter connections)"
assert_eq "forwarded" 2 "$(counter forwarded)"
assert_eq "forwarded_PUT" 1 "$(counter forwarded_PUT)"
assert_eq "forwarded_GET" 1 "$(counter forwarded_GET)"

log "pass: a chunked PUT; HEAD, DELETE, a missing key over one connection"
assert_eq "chunked PUT" 200 "$(code -T - "$U/chunked" <"$TMP/big")"
C -o "$TMP/got" "$U/chunked" || fail "GET of the chunked PUT failed"
assert_eq "sha256 of the chunked PUT" "$(sha "$TMP/big")" "$(sha "$TMP/got")"
# bodiless answers (HEAD, 204) must not leave the connection waiting for
# a body: the GET after them would hang
W=(-w '%{http_code} %{num_connects} %{size_download}\n')
out=$(C -o /dev/null -I "${W[@]}" "$U/big" \
	--next -sS -o /dev/null -X DELETE "${W[@]}" "$U/chunked" \
	--next -sS -o /dev/null "${W[@]}" "$U/chunked" \
	--next -sS -o "$TMP/got" "${W[@]}" "$U/big") || fail "curl failed: $out"
assert_eq "HEAD, DELETE, GET of the deleted key, GET" \
	"$(printf '%s\n' "200 1 0" "204 0 0" "404 0 0" "200 0 $((3 * MIB))")" \
	"$out"
assert_eq "sha256 of the GET" "$(sha "$TMP/big")" "$(sha "$TMP/got")"
assert_eq "forwarded_HEAD" 1 "$(counter forwarded_HEAD)"
assert_eq "forwarded_DELETE" 1 "$(counter forwarded_DELETE)"
assert_eq "faults so far" "0 0 0 0 0 0" "$(for f in status full stall cut \
	refuse down; do counter $f; done | xargs)"

log "status 503 SlowDown for 2 requests, then pass"
assert_eq "mode" "status 503 SlowDown n=2" "$(ctl 'status/503/SlowDown?n=2')"
seen=$(upstream_saw "GET /bucket/big")
for i in 1 2; do
	C -D "$TMP/h" -o "$TMP/body" "$U/big" || true
	assert_eq "status line $i" "HTTP/1.1 503 Service Unavailable" \
		"$(head -n 1 "$TMP/h" | tr -d '\r')"
	grep -q '<Code>SlowDown</Code>' "$TMP/body" ||
		fail "no SlowDown code in: $(cat "$TMP/body")"
	grep -qi '^content-type: application/xml' "$TMP/h" ||
		fail "no XML content type in: $(cat "$TMP/h")"
done
assert_eq "upstream GETs during the fault" "$seen" \
	"$(upstream_saw "GET /bucket/big")"
assert_eq "third GET" 200 "$(code "$U/big")"
assert_eq "status count" 2 "$(counter status)"
assert_eq "mode after 2" "mode pass" "$(ctl stats | tail -n 1)"

log "status 503 on a PUT with a body: drained, the connection kept"
ctl 'status/503?n=1' >/dev/null
out=$(C -H 'Expect:' -T "$TMP/small" -o /dev/null \
	-w '%{http_code} %{num_connects}\n' "$U/small" --next -sS -o /dev/null \
	-w '%{http_code} %{num_connects}\n' "$U/big") ||
	fail "curl failed: $out"
assert_eq "PUT 503 then GET on the same connection" $'503 1\n200 0' "$out"

log "status 503 on a PUT with Expect: 100-continue: answered at once"
ctl 'status/503?n=1' >/dev/null
C -D "$TMP/h" -o /dev/null -T "$TMP/big" "$U/expect" || true
grep -qi '^connection: close' "$TMP/h" ||
	fail "no Connection: close in: $(cat "$TMP/h")"
grep -q '^HTTP/1.1 100' "$TMP/h" && fail "a 100 Continue came: $(cat "$TMP/h")"
assert_eq "GET of the refused PUT" 404 "$(code "$U/expect")"

log "status 500 for PUTs only; LIST apart from GET"
ctl 'status/500?n=1&method=PUT' >/dev/null
assert_eq "GET while PUTs fail" 200 "$(code "$U/big")"
C -o "$TMP/body" -T "$TMP/small" "$U/small" || true
grep -q '<Code>InternalError</Code>' "$TMP/body" ||
	fail "no InternalError code in: $(cat "$TMP/body")"
assert_eq "next PUT" 200 "$(code -T "$TMP/small" "$U/small")"
ctl 'status/503/SlowDown?n=1&method=LIST' >/dev/null
assert_eq "object GET while LISTs fail" 200 "$(code "$U/big")"
assert_eq "LIST" 503 "$(code "$U?list-type=2")"
log "key=: only requests whose target names it"
ctl 'status/503?n=1&key=smal' >/dev/null
assert_eq "GET of another key" 200 "$(code "$U/big")"
assert_eq "GET of the key" 503 "$(code "$U/small")"
assert_eq "GET of the key, once" 200 "$(code "$U/small")"
assert_eq "status count" 7 "$(counter status)"

log "full: 507 XMinioStorageFull"
ctl 'full?n=1&method=PUT' >/dev/null
C -D "$TMP/h" -o "$TMP/body" -T "$TMP/big" "$U/full" || true
assert_eq "status line" "HTTP/1.1 507 Insufficient Storage" \
	"$(head -n 1 "$TMP/h" | tr -d '\r')"
grep -q '<Code>XMinioStorageFull</Code>' "$TMP/body" ||
	fail "no XMinioStorageFull code in: $(cat "$TMP/body")"
assert_eq "GET of the refused PUT" 404 "$(code "$U/full")"
assert_eq "full count" 1 "$(counter full)"

log "stall of an upload: curl --speed-time 2 gives up"
ctl 'stall?n=1' >/dev/null
assert_eq "HTTP and curl exit status" "100 28" "$(outcome --speed-time 2 \
	--speed-limit 1 -T "$TMP/big" "$U/stalled")"
assert_eq "stall count" 1 "$(counter stall)"
# its client gone, the request is dropped (seen during the stall, or at
# the latest once released): the upstream sees it end short
ctl pass >/dev/null
wait_until 5 grep -q "PUT /bucket/stalled short" "$TMP/upstream.log" ||
	fail "the upstream did not see the abandoned PUT end short"
assert_eq "GET of the stalled PUT" 404 "$(code "$U/stalled")"
assert_eq "PUT after the stall" 200 "$(code -T "$TMP/small" "$U/stalled")"

log "stall of a download, until changed: stops after half the body"
ctl 'stall?method=GET' >/dev/null
assert_eq "HTTP and curl exit status" "200 28" "$(C --speed-time 2 \
	--speed-limit 1 -o "$TMP/got" -w '%{http_code} ' "$U/big" 2>/dev/null
	echo $?)"
assert_eq "bytes received" $((3 * MIB / 2)) "$(wc -c <"$TMP/got")"
assert_eq "PUT during a GET stall" 200 "$(code -T "$TMP/small" "$U/small")"
assert_eq "stall count" 2 "$(counter stall)"
ctl pass >/dev/null

log "stall released in time: the request completes"
ctl 'stall?n=1&method=GET' >/dev/null
C -o "$TMP/got" "$U/big" &
slow=$!
sleep 1
kill -0 "$slow" 2>/dev/null || fail "the stalled GET did not stall"
ctl pass >/dev/null
wait "$slow" || fail "the released GET failed"
assert_eq "sha256 of the released GET" "$(sha "$TMP/big")" "$(sha "$TMP/got")"

log "cut of an upload: curl fails, nothing stored"
ctl 'cut?n=1' >/dev/null
out=$(outcome -T "$TMP/big" "$U/cut")
[[ $out =~ ^(000|100)\ (52|55|56)$ ]] ||
	fail "HTTP and curl exit status: '$out', not 000 or 100, 52, 55 or 56"
assert_eq "GET of the cut PUT" 404 "$(code "$U/cut")"
assert_eq "upstream saw a short PUT" 1 "$(upstream_saw "PUT /bucket/cut short")"
assert_eq "cut count" 1 "$(counter cut)"

log "cut of a download: curl gets half the body (exit 18)"
ctl 'cut?n=1&method=GET' >/dev/null
assert_eq "HTTP and curl exit status" "200 18" "$(C -o "$TMP/got" \
	-w '%{http_code} ' "$U/big" 2>/dev/null
	echo $?)"
assert_eq "bytes received" $((3 * MIB / 2)) "$(wc -c <"$TMP/got")"
assert_eq "cut count" 2 "$(counter cut)"

log "refuse: the connection is reset, then pass again"
conns=$(counter connections)
ctl 'refuse?n=1' >/dev/null
# the RST comes before or after curl sees its connect() done: 7, or 52,
# 55, 56
out=$(outcome "$U/big")
[[ $out =~ ^000\ (7|52|55|56)$ ]] ||
	fail "HTTP and curl exit status: '$out', not 000, 7, 52, 55 or 56"
assert_eq "GET after refuse" 200 "$(code "$U/big")"
assert_eq "refuse count" 1 "$(counter refuse)"
assert_eq "connections" $((conns + 2)) "$(counter connections)"

log "down: the connection is refused, until changed"
ctl down >/dev/null
assert_eq "HTTP and curl exit status" "000 7" "$(outcome "$U/big")"
assert_eq "HTTP and curl exit status" "000 7" "$(outcome "$U/big")"
ctl pass >/dev/null
assert_eq "GET after down" 200 "$(code "$U/big")"
assert_eq "down count" 1 "$(counter down)"

log "hold: a DELETE kept past its client, delivered on command"
assert_eq "PUT of the key to delete" 200 "$(code -T "$TMP/small" "$U/held")"
ctl 'hold?n=1&method=DELETE' >/dev/null
assert_eq "HTTP and curl exit status of the held DELETE" "000 28" \
	"$(outcome --max-time 2 -X DELETE "$U/held")"
assert_eq "upstream DELETEs while held" 0 "$(upstream_saw "DELETE /bucket/held")"
assert_eq "GET while the DELETE is held" 200 "$(code "$U/held")"
assert_eq "hold count" 1 "$(counter hold)"
assert_eq "held" 1 "$(counter held)"
assert_eq "mode after the hold" "mode pass" "$(ctl stats | tail -n 1)"
assert_eq "deliver" "204 DELETE /bucket/held" "$(ctl deliver)"
assert_eq "upstream DELETEs once delivered" 1 \
	"$(upstream_saw "DELETE /bucket/held 204")"
assert_eq "GET after the delivery" 404 "$(code "$U/held")"
assert_eq "held after the delivery" 0 "$(counter held)"
assert_eq "delivered" 1 "$(counter delivered)"
assert_eq "deliver with nothing held" "" "$(ctl deliver)"

log "hold: a PUT with a body, its client still waiting, delivered whole"
ctl 'hold?n=1&method=PUT' >/dev/null
C -o /dev/null -T "$TMP/big" "$U/heldput" 2>/dev/null &
slow=$!
wait_until 5 bash -c "[[ \$(curl -sS http://127.0.0.1:$CTL/stats |
	awk '\$1 == \"held\" { print \$2 }') == 1 ]]" ||
	fail "the PUT was not held"
assert_eq "GET while the PUT is held" 404 "$(code "$U/heldput")"
assert_eq "deliver" "200 PUT /bucket/heldput" "$(ctl deliver)"
wait "$slow" && fail "the client of a delivered PUT got an answer"
C -o "$TMP/got" "$U/heldput" || fail "GET of the delivered PUT failed"
assert_eq "sha256 of the delivered PUT" "$(sha "$TMP/big")" "$(sha "$TMP/got")"

log "control: bad commands are refused"
for bad in 'nosuch' 'status/200' 'status' 'stall?n=0' 'cut?method=PUT,FOO' \
	'down?n=1' 'pass/x' 'stall?x=1' 'deliver/x' 'deliver?n=1' \
	'stall?key=a%20b' 'pass?key=x'; do
	assert_eq "control /$bad" 400 \
		"$(code "http://127.0.0.1:$CTL/$bad")"
done
assert_eq "faults in all" "7 1 3 2 1 1" "$(for f in status full stall cut \
	refuse down; do counter $f; done | xargs)"
assert_eq "reset" 0 "$(ctl reset | awk '$1 == "requests" { print $2 }')"

if [[ -x /usr/bin/python3 ]] && [[ $(readlink -f /usr/bin/python3) != \
	"$(readlink -f "$(command -v "$PYTHON")")" ]]; then
	log "/usr/bin/python3: pass, status, stats"
	start_proxy /usr/bin/python3 "$UPORT"
	U=http://127.0.0.1:$PORT/bucket
	C -o "$TMP/got" "$U/big" || fail "GET through /usr/bin/python3 failed"
	assert_eq "sha256" "$(sha "$TMP/big")" "$(sha "$TMP/got")"
	ctl 'status/503?n=1' >/dev/null
	assert_eq "status" 503 "$(code "$U/big")"
	assert_eq "status count" 1 "$(counter status)"
fi

# ---------------------------------------------------------------- s3rver

# s3rver_start: start s3rver from $TALLY_S3RVER_DIR on a free port with
# bucket "fp"; sets S3PORT.
s3rver_start() {
	cat >"$TMP/s3rver.js" <<-'EOF'
	const dir = process.env.TALLY_S3RVER_DIR;
	let S3rver;
	try {
		S3rver = require(require.resolve('@20minutes/s3rver',
			{ paths: [dir] }));
	} catch (e) {
		S3rver = require(dir);
	}
	new S3rver({ address: '127.0.0.1', port: 0, silent: true,
		directory: process.argv[2],
		configureBuckets: [{ name: 'fp' }] })
		.run().then(({ port }) => console.log(port));
	EOF
	: >"$TMP/s3rver.out"
	timeout -k 5 600 node "$TMP/s3rver.js" "$TMP/s3data" \
		>"$TMP/s3rver.out" 2>"$TMP/s3rver.log" &
	PIDS+=($!)
	wait_lines "$TMP/s3rver.out" 1 $! || fail "s3rver did not start"
	S3PORT=$(head -n 1 "$TMP/s3rver.out")
}

if [[ -n ${TALLY_S3RVER_DIR:-} ]] && command -v node >/dev/null; then
	log "s3rver: SigV4 requests signed for the proxy's host:port"
	s3rver_start
	start_proxy "$PYTHON" "$S3PORT"
	SIGN=(--aws-sigv4 "aws:amz:us-east-1:s3"
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
	S=("${SIGN[@]}" --user S3RVER:S3RVER)
	U=http://127.0.0.1:$PORT/fp
	assert_eq "signed PUT" 200 "$(code "${S[@]}" -T "$TMP/big" "$U/o")"
	C -f "${S[@]}" -o "$TMP/got" "$U/o" || fail "signed GET failed"
	assert_eq "sha256" "$(sha "$TMP/big")" "$(sha "$TMP/got")"
	C -f "${S[@]}" -o "$TMP/list" "$U?list-type=2" &&
		grep -q '<Key>o</Key>' "$TMP/list" ||
		fail "the signed LIST does not name the object"
	ctl 'status/503/SlowDown?n=1&method=PUT' >/dev/null
	assert_eq "signed PUT, faulted" 503 \
		"$(code "${S[@]}" -T "$TMP/small" "$U/o2")"
	assert_eq "signed PUT, passed" 200 \
		"$(code "${S[@]}" -T "$TMP/small" "$U/o2")"
	# the signature is checked: the 200s above verified host:proxyport
	C "${SIGN[@]}" --user S3RVER:WRONG -o "$TMP/body" -T "$TMP/small" \
		"$U/o3" || true
	grep -q '<Code>SignatureDoesNotMatch</Code>' "$TMP/body" ||
		fail "a wrong secret was not refused: $(cat "$TMP/body")"
	assert_eq "forwarded" 5 "$(counter forwarded)"
else
	log "s3rver: skipped (TALLY_S3RVER_DIR unset or node missing)"
fi
