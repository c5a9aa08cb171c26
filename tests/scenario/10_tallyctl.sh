#!/bin/bash
# SPDX-License-Identifier: MIT
# tallyctl against a real mount. Every command's --help exits 0 and shows
# an example. status prints aligned columns with sizes and ratios, and
# --json the status document itself; drain and branch print their reports
# (aligned, or as JSON with numbers as numbers, --json before or after the
# command); failures exit 1 with the errno and what it means; usage
# errors (unknown commands and options, missing arguments, bad values, a
# MOUNTPOINT that is not a tallyfs mount, a path outside the mount) exit 2
# and send nothing. Every other command is forwarded as the documented
# line: a command the mount does not know yet exits 1 with EINVAL and a
# message that says so.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

: "${TALLY_BUILD:?TALLY_BUILD must name the build directory (set by meson test)}"
CTL=$TALLY_BUILD/tools/tallyctl
[[ -x $CTL ]] || fail "no tallyctl at $CTL"
COMMANDS=(status drain branch gc sweep pin unpin shard rebalance verify
	repair explain du rekey)

# tc ARGS...: run tallyctl (bounded); sets OUT, ERR and RC.
tc() {
	RC=0
	OUT=$(T "$CTL" "$@" 2>"$TMP/tc.err") || RC=$?
	ERR=$(<"$TMP/tc.err")
}

# tc_rc WANT ARGS...: tallyctl ARGS must exit WANT.
tc_rc() {
	local want=$1

	shift
	tc "$@"
	((RC != 124 && RC != 137)) || fail "tallyctl $* timed out"
	[[ $RC == "$want" ]] ||
		fail "tallyctl $*: exit $RC, expected $want (stdout [$OUT]," \
			"stderr [$ERR])"
}

# usage_err MESSAGE ARGS...: tallyctl ARGS is a usage error (exit 2, no
# output on stdout, MESSAGE on stderr).
usage_err() {
	local msg=$1

	shift
	tc_rc 2 "$@"
	assert_eq "stdout of the usage error 'tallyctl $*'" "" "$OUT"
	[[ $ERR == *"$msg"* ]] ||
		fail "tallyctl $*: stderr [$ERR] does not say '$msg'"
}

# value KEY TEXT: the value of the line `KEY: value` of TEXT.
value() { sed -n "s/^$1: *//p" <<<"$2"; }

# assert_aligned WHAT TEXT: the values of the unindented `key: value`
# lines of TEXT all start in one column.
assert_aligned() {
	local cols

	cols=$(grep -E '^[a-z_]+: +[^ ]' <<<"$2" |
		awk '{ match($0, /^[a-z_]+: +/); print RLENGTH }' | sort -u) ||
		true
	[[ -n $cols && $cols != *$'\n'* ]] ||
		fail "$1: values not aligned (columns ${cols//$'\n'/ })):"$'\n'"$2"
}

# json_check WHAT JSON PYEXPR...: every python expression must hold for
# d = the JSON object.
json_check() {
	local what=$1 json=$2

	shift 2
	python3 - "$json" "$@" <<-'EOF' || fail "$what: $json"
	import json, sys
	d = json.loads(sys.argv[1])
	assert isinstance(d, dict), "not a JSON object"
	for e in sys.argv[2:]:
	    assert eval(e), "does not hold: " + e
	EOF
}

# ------------------------------------------------ help, no mount needed
tc_rc 0 --help
for c in "${COMMANDS[@]}"; do
	grep -qE "^  $c( |$)" <<<"$OUT" || fail "--help does not list $c"
done
assert_match "--help" 'Example:' "$OUT"
tc_rc 0 --version
assert_match "--version" '^tallyctl [0-9]+\.[0-9]+\.[0-9]+$' "$OUT"
for c in "${COMMANDS[@]}"; do
	tc_rc 0 "$c" --help
	assert_match "$c --help: usage" "^usage: tallyctl .*MOUNTPOINT $c" "$OUT"
	assert_match "$c --help: example" $'\nExamples?:\n  tallyctl /mnt/t '"$c" \
		"$OUT"
	tc_rc 0 "$MNT" "$c" -h
	assert_match "tallyctl MNT $c -h" "^usage: tallyctl .*MOUNTPOINT $c" \
		"$OUT"
done
usage_err "is not a tallyctl command" bogus --help
usage_err "missing MOUNTPOINT" status
usage_err "usage: tallyctl" # nothing at all

# ---------------------------------------------------- a mount with data
mount_fs
mkdir "$MNT/main"
rand_file "$TMP/big" $((2 * MIB + 100))
T cp "$TMP/big" "$MNT/main/big"
printf 'small\n' >"$MNT/main/small"

# ---------------------------------------------------------------- rekey
# (its work: 39_remote_rekey) a key file inside the mount or missing is
# a usage error; a mount without a bucket fails, and says why
usage_err "cannot live inside the mount" "$MNT" rekey "$MNT/main/small"
usage_err "No such file" "$MNT" rekey "$TMP/no-such-key"
(umask 077 && head -c 32 /dev/urandom >"$TMP/key")
tc_rc 1 "$MNT" rekey "$TMP/key"
assert_match "rekey without a bucket says why" "rekey: this mount has no remote tier" \
	"$ERR"
assert_match "rekey without a bucket: errno" "EOPNOTSUPP" "$ERR"

# ---------------------------------------------------------------- drain
tc_rc 0 "$MNT" drain
assert_aligned "drain report" "$OUT"
assert_eq "drain: command" drain "$(value command "$OUT")"
assert_eq "drain: pending_flushes" 0 "$(value pending_flushes "$OUT")"
assert_eq "drain: flush_errors" 0 "$(value flush_errors "$OUT")"
assert_match "drain: duration in ms" '^[0-9.]+ (ms|s)$' \
	"$(value duration_ms "$OUT")"
tc_rc 0 --json "$MNT" drain --timeout=30
json_check "drain --json" "$OUT" 'd["command"] == "drain"' \
	'd["pending_flushes"] == 0' 'type(d["flushed"]) is int' \
	'type(d["duration_ms"]) in (int, float)'
tc_rc 0 "$MNT" drain --timeout 2.5 --json
json_check "drain --timeout 2.5 --json" "$OUT" 'd["command"] == "drain"'

# --------------------------------------------------------------- status
tc_rc 0 "$MNT" status
human=$OUT
assert_aligned "status" "$human"
assert_eq "status: namespaces" 1 "$(value namespaces "$human")"
assert_eq "status: block_size" "1.0 MiB" "$(value block_size "$human")"
assert_eq "status: bytes_stored" "2.0 MiB" "$(value bytes_stored "$human")"
assert_eq "status: dedup_ratio" "1.00x" "$(value dedup_ratio "$human")"
assert_eq "status: pending_flushes" 0 "$(value pending_flushes "$human")"
tc_rc 0 "$MNT" status --json
json=$OUT
file=$(T cat "$MNT/.tally/status")
python3 - "$json" "$file" "$human" <<-'EOF' || fail "status --json: $json"
import json, sys
d, f = json.loads(sys.argv[1]), json.loads(sys.argv[2])
moving = {"jobs_queued", "jobs_running", "control_jobs_queued",
          "control_jobs_running", "dirty_bytes", "shards"}
assert d.keys() == f.keys(), "keys differ from .tally/status"
for k in d.keys() - moving:
    assert d[k] == f[k], "%s: %r, the file says %r" % (k, d[k], f[k])
# a shard's free space moves with everything else on its disk
def fixed(shards):
    return [{k: v for k, v in s.items() if k != "free"} for s in shards]
assert fixed(d["shards"]) == fixed(f["shards"]), d["shards"]
assert d["bytes_stored"] == 2 * 1048576 + 100 + 6, d["bytes_stored"]
# the human output has a line for every member
keys = [l.split(":")[0] for l in sys.argv[3].splitlines()
        if l and not l.startswith(" ")]
assert keys == list(d.keys()), "human keys %s" % keys
EOF

# --------------------------------------------------------------- branch
tc_rc 0 "$MNT" branch main dev
assert_aligned "branch report" "$OUT"
assert_eq "branch: command" branch "$(value command "$OUT")"
assert_eq "branch: source" main "$(value source "$OUT")"
assert_eq "branch: branch" dev "$(value branch "$OUT")"
# in O(1): no inode copied
assert_eq "branch: inodes" 0 "$(value inodes "$OUT")"
assert_eq "ls after branch" $'dev\nmain' "$(ls "$MNT")"
assert_same_content "$TMP/big" "$MNT/dev/big"
assert_eq "refs of dev/big" "1 1 1" "$(refs "$MNT/dev/big")"
tc_rc 0 "$MNT" --json branch main dev2
json_check "branch --json" "$OUT" 'd["command"] == "branch"' \
	'd["source"] == "main"' 'd["branch"] == "dev2"' 'd["inodes"] == 0'
assert_exists "$MNT/dev2/small"
tc_rc 0 "$MNT" status
assert_eq "status: namespaces after branch" 3 "$(value namespaces "$OUT")"
# the files stored over the bytes stored: a branch in O(1) stores no
# file (du NS gives what each namespace shows)
assert_eq "status: dedup_ratio after branch" "1.00x" \
	"$(value dedup_ratio "$OUT")"

# ---------------------------------------------- the command failed: 1
tc_rc 1 "$MNT" branch main dev
assert_eq "stdout of a failed branch" "" "$OUT"
assert_match "failed branch" \
	"branch failed: EEXIST \(File exists\): the target already exists" \
	"$ERR"
tc_rc 1 "$MNT" branch missing x --json
json_check "failed branch --json" "$OUT" 'd["error"] == "ENOENT"' \
	'd["errno"] == 2' 'd["sent"] == "branch missing x"'
assert_match "failed branch" "ENOENT" "$ERR"
tc_rc 1 "$MNT" branch main a/b
assert_match "branch to a bad name" \
	"EINVAL \(Invalid argument\): malformed or unknown command" "$ERR"
assert_absent "$MNT/x"

# A command the mount does not know: the first of these that it answers
# with EINVAL (the mount learns them over time).
unknown=""
for c in "du" "shard list" "verify" "rebalance" "sweep"; do
	if [[ $(ctl_errno "$c"$'\n') == EINVAL ]]; then
		unknown=$c
		break
	fi
done
if [[ -n $unknown ]]; then
	# shellcheck disable=SC2086 # the words of the command
	tc_rc 1 "$MNT" $unknown
	assert_eq "stdout of the unknown '$unknown'" "" "$OUT"
	assert_match "unknown '$unknown'" \
		"${unknown%% *} failed: EINVAL \(Invalid argument\): malformed or unknown command: the mount does not know '${unknown%% *}'" \
		"$ERR"
	# shellcheck disable=SC2086
	tc_rc 1 --json "$MNT" $unknown
	json_check "unknown '$unknown' --json" "$OUT" \
		'd["error"] == "EINVAL"' 'd["errno"] == 22' \
		"d['sent'] == '$unknown'" '"does not know" in d["message"]'
else
	log "every candidate command is known to the mount: EINVAL of an" \
		"unknown command not checked"
fi

# Every command is forwarded as its documented line: where the mount does
# not know it (yet), the JSON error names the line that was sent.
hash=$(objects "$MNT/main/big" | head -n 1)
mkdir "$TMP/shard2"
shard2=$(realpath "$TMP/shard2")
while IFS='|' read -r sent args; do
	[[ -n $sent ]] || continue
	# shellcheck disable=SC2086 # the words of the command
	tc --json "$MNT" $args
	case $RC in
	0) json_check "tallyctl $args" "$OUT" 'True' ;;
	1) json_check "tallyctl $args" "$OUT" "d['sent'] == '$sent'" \
		'd["error"].startswith("E")' ;;
	*) fail "tallyctl $args: exit $RC ($ERR)" ;;
	esac
done <<EOF
gc dry-run grace=5|gc --dry-run --grace=5
gc dry-run|gc --dry-run
sweep|sweep
sweep batches=3|sweep --batches=3
sweep batches=0|sweep --batches 0
pin main/big|pin $MNT/main/big
unpin main/big|unpin $MNT/dev/../main/big
pin main|pin $MNT/main/
shard list|shard list
shard add $shard2|shard add $TMP/shard2
shard drain 7|shard drain 7
shard activate 7|shard activate 7
rebalance|rebalance
verify|verify
verify sample=10%|verify --sample=10%
verify sample=2.5%|verify --sample=2.5
explain main/big|explain $MNT/main/big
explain $hash|explain $hash@0
du|du
du main|du main
du dev|du $MNT/dev/
du main@none|du main@none
repair|repair
EOF
# a path relative to the current directory
(cd "$MNT/main" && T "$CTL" --json "$MNT" pin big) >"$TMP/out" \
	2>"$TMP/err" && rc=0 || rc=$?
if ((rc == 1)); then
	json_check "pin big (in main)" "$(cat "$TMP/out")" \
		'd["sent"] == "pin main/big"'
fi
((rc <= 1)) || fail "pin big (in main): exit $rc: $(cat "$TMP/err")"

# ---------------------------------------------- shards and the sweep
# shard2 was added above (forwarded lines); objects may have moved to it
# (rebalance) and left ghosts behind.
# shards_match HUMAN JSON: the table of the human output (status, or
# shard list) has a header and one row per shard of the JSON, with the
# same id, state, objects, bytes and free (as tallyctl writes sizes:
# "%.0f B" below 1 KiB, "%.1f KiB|MiB|GiB...") and path.
shards_match() {
	python3 - "$1" "$2" <<-'EOF' || fail "shard table: [$1] vs [$2]"
	import json, re, sys
	human, shards = sys.argv[1], json.loads(sys.argv[2])
	def size(v):
	    if v < 1024:
	        return "%d B" % v
	    v /= 1024
	    for u in ("KiB", "MiB", "GiB", "TiB", "PiB"):
	        if v < 1024:
	            break
	        v /= 1024
	    return "%.1f %s" % (v, u)
	lines = human.splitlines()
	head = [i for i, l in enumerate(lines)
	        if re.fullmatch(r" *id  state +objects +bytes +free  path", l)]
	assert len(head) == 1, "no table header"
	h = head[0]
	rows = lines[h + 1:h + 1 + len(shards)]
	for r, s in zip(rows, shards):
	    m = re.fullmatch(r" *(\d+)  (\S+) +(\d+) +(\d+(?:\.\d)? \S+)"
	                     r" +(\d+(?:\.\d)? \S+)  (.*)", r)
	    assert m, "row [%s]" % r
	    want = (str(s["id"]), s["state"], str(s["objects"]),
	            size(s["bytes"]), m.group(5), s["path"])
	    assert m.groups() == want, "row %s, want %s" % (m.groups(), want)
	    # free space moves under our feet: its unit and shape only
	    assert re.fullmatch(r"\d+\.\d [KMGTP]iB", m.group(5)), r
	    # every row has the columns in one place
	    assert len(r) - len(s["path"]) == len(rows[0]) - \
	        len(shards[0]["path"]), "not aligned: %s" % rows
	assert len(rows) == len(shards), "rows %s" % rows
	EOF
}

# status_shards: the "shards" array of the status (as a JSON text)
status_shards() {
	T cat "$MNT/.tally/status" |
		python3 -c 'import json, sys
print(json.dumps(json.load(sys.stdin)["shards"]))'
}

tc_rc 0 "$MNT" status
human=$OUT
shards=$(status_shards)
json_check "status shards" "{\"s\": $shards}" 'len(d["s"]) == 2' \
	"d['s'][1]['path'] == '$shard2'" \
	'[s["state"] for s in d["s"]] == ["active", "active"]'
assert_eq "status: shards" 2 "$(value shards "$human")"
shards_match "$human" "$shards"
assert_match "status: ghosts" '^[0-9]+$' "$(value ghosts "$human")"
tc_rc 0 "$MNT" shard list
assert_aligned "shard list" "$(grep -v '^ *[0-9]' <<<"$OUT" | grep -v '^id')"
assert_eq "shard list: shards" 2 "$(value shards "$OUT")"
shards_match "$OUT" "$(status_shards)"
tc_rc 0 --json "$MNT" shard list
json_check "shard list --json" "$OUT" 'd["shard"] == [0, 1]' \
	'd["state"] == ["active", "active"]' \
	"d['path'][1] == '$shard2'" 'type(d["free"][0]) is int'

# shard drain runs a rebalance in the mount: tallyctl follows that job
tc_rc 0 --progress-delay=0 "$MNT" shard drain 1
assert_aligned "shard drain report" "$OUT"
assert_eq "shard drain: command" "shard drain" "$(value command "$OUT")"
assert_eq "shard drain: state" draining "$(value state "$OUT")"
assert_eq "shard drain: failed" 0 "$(value failed "$OUT")"
assert_match "shard drain: progress (stderr)" \
	'^rebalance: ([0-9]+/[0-9]+ bytes \(100%\), )?[0-9]+:[0-9]{2}, done$' \
	"$(tail -n 1 <<<"$ERR")"
tc_rc 0 "$MNT" shard list
shards_match "$OUT" "$(status_shards)"
json_check "after shard drain 1" "{\"s\": $(status_shards)}" \
	'[s["state"] for s in d["s"]] == ["active", "draining"]' \
	'd["s"][1]["objects"] == 0' 'd["s"][1]["bytes"] == 0' \
	'd["s"][0]["objects"] == 4'
tc_rc 0 --no-progress --progress-delay=0 "$MNT" shard drain 1
assert_eq "shard drain --no-progress: stderr" "" "$ERR"
tc_rc 1 --progress-delay=0 "$MNT" shard drain 9
assert_eq "stdout of shard drain 9" "" "$OUT"
assert_match "shard drain 9" \
	$'^rebalance: [0-9]+:[0-9]{2}, failed\ntallyctl: shard failed: ENOENT' \
	"$ERR"
tc_rc 1 --json "$MNT" shard drain 9
json_check "shard drain 9 --json" "$OUT" 'd["error"] == "ENOENT"' \
	'd["sent"] == "shard drain 9"'

# the ghosts: verdicts only (a ghost nothing names any more goes), then
# a full sweep that purges the rest
ghosts=$(status_get ghosts)
purged0=$(status_get total_purged)
((ghosts > 0)) || fail "no ghosts after the moves"
tc_rc 0 --json "$MNT" sweep --batches=0
json_check "sweep --batches=0" "$OUT" 'd["command"] == "sweep"' \
	'd["references_repointed"] == 0' "d['checked'] == $ghosts" \
	'd["inconclusive"] == 0' 'd["purged"] + d["kept"] == d["checked"]'
purged1=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["purged"])' "$OUT")
tc_rc 0 "$MNT" status
assert_eq "status: last_sweep (a block below)" "" \
	"$(value last_sweep "$OUT")"
sweep_block=$(sed -n '/^last_sweep:$/,/^[a-z]/p' <<<"$OUT" | sed '1d;$d')
assert_match "status: last_sweep.at, a date" \
	'^  at: +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}$' \
	"$(grep '^  at:' <<<"$sweep_block")"
assert_eq "status: last_sweep.checked" "$ghosts" \
	"$(value '  checked' "$sweep_block")"
assert_eq "status: last_sweep.references_repointed" 0 \
	"$(value '  references_repointed' "$sweep_block")"
assert_match "status: last_sweep.duration_ms" '^[0-9.]+ (ms|s)$' \
	"$(value '  duration_ms' "$sweep_block")"
assert_eq "last_sweep lines" 7 "$(wc -l <<<"$sweep_block")"
tc_rc 0 --progress-delay=0 "$MNT" sweep
assert_aligned "sweep report" "$OUT"
assert_eq "sweep: purged" $((ghosts - purged1)) "$(value purged "$OUT")"
assert_match "sweep: progress (stderr)" '^sweep: .*, done$' \
	"$(tail -n 1 <<<"$ERR")"
tc_rc 0 "$MNT" status
assert_eq "status: ghosts after the sweep" 0 "$(value ghosts "$OUT")"
assert_eq "status: total_purged" $((purged0 + ghosts)) \
	"$(value total_purged "$OUT")"
assert_same_content "$TMP/big" "$MNT/main/big"

# ----------------------------------------------------- usage errors: 2
usage_err "is not a tallyctl command" "$MNT" bogus
usage_err "missing COMMAND" "$MNT"
usage_err "unknown option '--bogus'" "$MNT" status --bogus
usage_err "unknown option '-x'" "$MNT" drain -x
usage_err "missing arguments" "$MNT" branch main
usage_err "too many arguments" "$MNT" branch main a b
usage_err "too many arguments" "$MNT" status now
usage_err "does not apply to drain" "$MNT" drain --grace=1
usage_err "needs a value" "$MNT" drain --timeout
usage_err "takes no value" "$MNT" gc --dry-run=yes
usage_err "--timeout wants" "$MNT" drain --timeout=0
usage_err "--timeout wants" "$MNT" drain --timeout=soon
usage_err "--grace wants" "$MNT" gc --grace=1.5
usage_err "--grace wants" "$MNT" gc --grace=-1
usage_err "--sample wants" "$MNT" verify --sample=0%
usage_err "--sample wants" "$MNT" verify --sample=101%
usage_err "--batches wants" "$MNT" sweep --batches=-1
usage_err "--batches wants" "$MNT" sweep --batches=1.5
usage_err "--batches wants" "$MNT" sweep --batches=2147483648
usage_err "--batches wants" "$MNT" sweep --batches=
usage_err "does not apply to gc" "$MNT" gc --batches=1
usage_err "not add, drain, activate or list" "$MNT" shard remove 1
usage_err "a shard ID is a number" "$MNT" shard drain one
usage_err "cannot live inside the mount" "$MNT" shard add "$MNT/main"
usage_err "not a namespace" "$MNT" du .tally
usage_err "not a namespace" "$MNT" du "$MNT/main/big"
usage_err "cannot carry" "$MNT" branch main $'a\tb'
usage_err "is not a tallyfs mount" "$TMP" status
usage_err "is not a tallyfs mount" "$MNT/main" drain
usage_err "No such file or directory" "$TMP/nowhere" status
usage_err "is not a directory" "$TMP/big" status
# paths outside the mount
usage_err "is outside the mount" "$MNT" pin /etc/passwd
usage_err "is outside the mount" "$MNT" pin "$TMP/big"
usage_err "is outside the mount" "$MNT" unpin "$MNT/main/../../big"
usage_err "is outside the mount" "$MNT" explain "$TMP/big"
usage_err "is the mount itself" "$MNT" pin "$MNT"
usage_err "is a control file" "$MNT" pin "$MNT/.tally/ctl"
T ln -s "$TMP" "$MNT/main/out"
usage_err "is outside the mount" "$MNT" pin "$MNT/main/out/big"
(cd "$MNT/main" && T "$CTL" "$MNT" pin ../../big) >"$TMP/out" 2>&1 &&
	rc=0 || rc=$?
assert_eq "exit of pin ../../big in main ($(cat "$TMP/out"))" 2 "$rc"
assert_match "pin ../../big in main" "is outside the mount" \
	"$(cat "$TMP/out")"
assert_eq "ls after the usage errors" $'dev\ndev2\nmain' "$(ls "$MNT")"

umount_fs
usage_err "is not a tallyfs mount" "$MNT" status
fsck_store "$STORE"
assert_eq "tallyfsck exit code (output: $FSCK_OUT)" 0 "$FSCK_RC"
log "ok"
