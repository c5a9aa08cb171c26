#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Self-test of tests/pg/pgproxy.py against a real cluster (lib.sh): psql
# through the proxy works as without it (start-up, SSLRequest answered
# 'N', queries); with lose-commit armed, a COMMIT reaches the server and
# commits, and its client sees its connection lost, never the answer;
# with=TEXT spares a transaction that did not send TEXT; ROLLBACK forgets
# what a transaction sent; the control port refuses a bad count.
SCN_TIMEOUT=${SCN_TIMEOUT:-120}
source "$(dirname "$0")/../scenario/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$TALLY_SRC/tests/scenario/remote_lib.sh" # pgproxy_start

pg_start || fail "cannot start PostgreSQL"
# (stopped with the cluster: PG_BEFORE_STOP)
pgproxy_start
PORT=$PROXY_P
ctl_get() { T curl -fsS "http://127.0.0.1:$PGPROXY_CTL/$1"; }
# via SQL...: statements one by one through the proxy (psql sends each
# as a simple query; sslmode=prefer asks for SSL first)
via() {
	printf '%s;\n' "$@" | T env PGSSLMODE=prefer psql -X -q -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$PORT" -U tally -d "$PG_DB" 2>&1
}
rows() { pg_psql -At -c "SELECT string_agg(v, ',' ORDER BY v) FROM t"; }

out=$(via "CREATE TABLE t(v text)" "INSERT INTO t VALUES ('a')") ||
	fail "psql through the proxy: $out"
assert_eq "rows through the proxy" a "$(rows)"

# a COMMIT whose answer is lost: committed, the client cut
ctl_get "lose-commit?n=1&with=marker" >/dev/null
# a transaction without the text passes
via "BEGIN" "INSERT INTO t VALUES ('b')" "COMMIT" >/dev/null ||
	fail "a transaction without the text lost its answer"
# one that sent it and rolled back is forgotten
via "BEGIN" "INSERT INTO t VALUES ('marker-0')" "ROLLBACK" \
	"BEGIN" "INSERT INTO t VALUES ('c')" "COMMIT" >/dev/null ||
	fail "a transaction after a rollback lost its answer"
rc=0
out=$(via "BEGIN" "INSERT INTO t VALUES ('marker-1')" "COMMIT" \
	"INSERT INTO t VALUES ('never')") || rc=$?
((rc != 0)) || fail "the client got the answer of the COMMIT: $out"
assert_match "the client's error" "connection" "$out"
assert_eq "rows after the lost answer" a,b,c,marker-1 "$(rows)"
assert_match "stats" "lost 1" "$(ctl_get stats)"
assert_match "mode after it" "mode pass" "$(ctl_get stats)"
# passing again: a new connection works
via "INSERT INTO t VALUES ('d')" >/dev/null || fail "after the fault"
assert_eq "rows at the end" a,b,c,d,marker-1 "$(rows)"
# bad input: a count that is not one
code=$(curl -s -o /dev/null -w '%{http_code}' \
	"http://127.0.0.1:$PGPROXY_CTL/lose-commit?n=0")
assert_eq "a bad count" 400 "$code"
log "ok"
