#!/bin/bash
# SPDX-License-Identifier: MIT
# Progress of long jobs. A verify is held mid-way, deterministically: one
# object file of the store is replaced by a FIFO, and verify's open(2) of
# it blocks until the test opens the FIFO for writing. While it is held,
# /.tally/status lists the job (name, unit, started, done < total) and
# `tallyctl status` shows it; tallyctl verify, waiting on the write,
# prints plain progress lines on stderr when stderr is not a terminal, and
# a bar redrawn with \r on a pseudo-terminal; stdout keeps the report
# (pure JSON with --json). Once released, the job is gone from the status
# and tallyctl's final line says 100%, done. --progress-delay=0 makes the
# final line certain for quick commands too; nothing shows before the
# delay; --no-progress silences it; a failed command ends its progress
# with "failed".
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

: "${TALLY_BUILD:?TALLY_BUILD must name the build directory (set by meson test)}"
CTL=$TALLY_BUILD/tools/tallyctl
[[ -x $CTL ]] || fail "no tallyctl at $CTL"
N=40

mount_fs
mkdir "$MNT/main"
for ((i = 1; i <= N; i++)); do
	printf 'file %d\n' "$i" >"$MNT/main/f$i"
done
drain
assert_eq "objects" "$N" "$(object_count)"
held=$(objects "$MNT/main/f$N")
obj=$STORE/shards/0/${held:0:2}/$held
FIFO_SAVED=$TMP/held-object

# hold_object: replace the object file by a FIFO (verify blocks on it).
hold_object() {
	mv "$obj" "$FIFO_SAVED"
	mkfifo -m 0400 "$obj"
}

# release_object: let verify's open(2) of the FIFO return (it reads EOF:
# the object counts as corrupt), then put the object file back.
release_object() {
	T bash -c 'exec 4>"$1"' _ "$obj" || fail "could not release the FIFO"
}

restore_object() {
	rm -f "$obj"
	mv "$FIFO_SAVED" "$obj"
}

# verify_job: the verify job of the status as "done total unit started",
# or nothing (the status read directly: no drain, no other job).
verify_job() {
	T cat "$MNT/.tally/status" | python3 -c '
import json, sys
jobs = json.load(sys.stdin)["jobs"]
assert isinstance(jobs, list)
for j in jobs:
    assert set(j) == {"id", "name", "started", "done", "total", "unit"}, j
    if j["name"] == "verify":
        print(j["done"], j["total"], j["unit"], j["started"])'
}

# wait_for WHAT CMD...: poll CMD until it succeeds (30 s at most).
wait_for() {
	local what=$1 n=300

	shift
	until "$@"; do
		((n-- > 0)) || fail "waited 30 s for $what"
		sleep 0.1
	done
}

assert_eq "jobs when idle" "[]" "$(T cat "$MNT/.tally/status" |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["jobs"])')"

# ------------------------------------------- not a terminal: plain lines
hold_object
before=$(date +%s)
T "$CTL" --progress-delay=0 "$MNT" verify >"$TMP/out" 2>"$TMP/err" &
ctl_pid=$!
job=""
seen_job() {
	job=$(verify_job)
	[[ $job == *" $N objects "* ]]
}
wait_for "the verify job in the status" seen_job
read -r done total unit started <<<"$job"
assert_eq "unit of verify" objects "$unit"
assert_eq "total of verify" "$N" "$total"
((done < total)) || fail "verify held mid-way shows done $done of $total"
((started >= before && started <= $(date +%s))) ||
	fail "verify started at $started, not between $before and now"
T "$CTL" "$MNT" status >"$TMP/status" || fail "tallyctl status failed"
assert_match "tallyctl status while verify runs" \
	$'\njobs: +1 running\n  verify: [0-9]+/'"$N"' objects \([0-9]+%\), since [0-9:]+$' \
	"$(cat "$TMP/status")"
progress_line() {
	grep -qE "^verify: [0-9]+/$N objects \([0-9]+%\), 0:[0-9]{2}\$" \
		"$TMP/err"
}
wait_for "a progress line of tallyctl" progress_line
release_object
rc=0
wait "$ctl_pid" || rc=$?
assert_eq "exit of tallyctl verify (stderr: $(cat "$TMP/err"))" 0 "$rc"
restore_object
assert_eq "verify report: corrupt" "corrupt:        1" \
	"$(grep '^corrupt:' "$TMP/out")"
assert_match "verify report names the held object" "bad: +$held" \
	"$(cat "$TMP/out")"
assert_match "final line" $'\n'"verify: $N/$N objects \(100%\), 0:[0-9]{2}, done\$" \
	"$(cat "$TMP/err")"
grep -qvE "^verify: " "$TMP/err" &&
	fail "stderr has other lines than progress: $(cat "$TMP/err")"
assert_eq "the verify job after it ended" "" "$(verify_job)"
assert_eq "jobs after verify" "[]" "$(T cat "$MNT/.tally/status" |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["jobs"])')"

# ---------------------------------------- a pseudo-terminal: a \r bar
hold_object
T python3 - "$CTL" "$MNT" "$obj" "$N" >"$TMP/pty.out" 2>&1 <<-'EOF' ||
	import os, pty, re, select, subprocess, sys, time
	ctl, mnt, fifo, n = sys.argv[1:5]
	master, slave = pty.openpty()
	p = subprocess.Popen([ctl, "--progress-delay=0", mnt, "verify"],
	                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
	                     stderr=slave)
	os.close(slave)
	seen = b""
	def read_some(timeout):
	    global seen
	    r, _, _ = select.select([master], [], [], timeout)
	    if not r:
	        return False
	    try:
	        data = os.read(master, 4096)
	    except OSError:  # EIO: the child is gone
	        return None
	    seen += data
	    return bool(data)
	bar = re.compile(rb"\rverify \[[#-]+\] +\d+% \d+/" + n.encode() +
	                 rb" objects 0:\d\d")
	deadline = time.monotonic() + 30
	while not bar.search(seen):
	    if time.monotonic() > deadline:
	        sys.exit("no bar on the terminal: %r" % seen)
	    read_some(0.5)
	# release the held verify, then read until tallyctl exits
	os.close(os.open(fifo, os.O_WRONLY))
	out, _ = p.communicate(timeout=30)
	while read_some(0.2):
	    pass
	final = re.compile(rb"\rverify \[#+\] 100% " + n.encode() + b"/" +
	                   n.encode() + rb" objects 0:\d\d done *\r?\n$")
	if p.returncode != 0:
	    sys.exit("tallyctl exited %d" % p.returncode)
	if not final.search(seen):
	    sys.exit("no final 100%% line: %r" % seen)
	if b"corrupt:        1\n" not in out:
	    sys.exit("report on stdout: %r" % out)
	print("ok")
	EOF
	fail "terminal progress: $(cat "$TMP/pty.out")"
restore_object
assert_eq "terminal progress" ok "$(cat "$TMP/pty.out")"
assert_eq "the verify job after it ended" "" "$(verify_job)"

# ------------------------- --json: stdout stays JSON, progress on stderr
T "$CTL" --json --progress-delay=0 "$MNT" verify >"$TMP/out" 2>"$TMP/err" ||
	fail "tallyctl --json verify failed: $(cat "$TMP/err")"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["command"] == "verify" and d["corrupt"] == 0, d
assert d["checked"] == int(sys.argv[2]), d' "$TMP/out" "$N" ||
	fail "stdout of --json verify is not its report: $(cat "$TMP/out")"
# a quick job may end before tallyctl sees it: then the line has no counts
assert_match "final line of a quick verify" \
	"^verify: ($N/$N objects \(100%\), )?0:[0-9]{2}, done\$" \
	"$(tail -n 1 "$TMP/err")"

# ------------------------------------------ --no-progress, failures
T "$CTL" --no-progress --progress-delay=0 "$MNT" gc >"$TMP/out" \
	2>"$TMP/err" || fail "tallyctl gc --no-progress failed"
assert_eq "stderr with --no-progress" "" "$(cat "$TMP/err")"
assert_match "gc report" $'\nchecked: +'"$N"$'\n' "$(cat "$TMP/out")"
rc=0
T "$CTL" --progress-delay 0 "$MNT" branch missing x >"$TMP/out" \
	2>"$TMP/err" || rc=$?
assert_eq "exit of a failed branch" 1 "$rc"
assert_match "a failed branch ends its progress, then the error" \
	$'^branch: 0:[0-9]{2}, failed\ntallyctl: branch failed: ENOENT' \
	"$(cat "$TMP/err")"
# nothing before the delay: no command here runs for an hour
T "$CTL" --progress-delay=3600 "$MNT" gc >"$TMP/out" 2>"$TMP/err" ||
	fail "tallyctl gc --progress-delay=3600 failed"
assert_eq "stderr of gc before the delay" "" "$(cat "$TMP/err")"
# short commands have no progress
T "$CTL" --progress-delay=0 "$MNT" du >"$TMP/out" 2>"$TMP/err" ||
	fail "tallyctl du failed"
assert_eq "stderr of du" "" "$(cat "$TMP/err")"
rc=0
T "$CTL" --progress-delay=x "$MNT" gc >"$TMP/out" 2>"$TMP/err" || rc=$?
assert_eq "exit of --progress-delay=x" 2 "$rc"
assert_match "--progress-delay=x" "progress-delay wants" "$(cat "$TMP/err")"

umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck exit status ($FSCK_OUT)" 0 "$FSCK_RC"
log "ok"
