#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2119 # pg_start, pg_restart: optional arguments
# The fault harness (docs/design.md, "The fault harness"): three nodes of
# one shared store as three hosts, a nemesis per round, a workload and a
# checker (workload.py).
#
# Each node's daemon runs in a network namespace of its own, linked by a
# veth pair to a bridge of this machine that holds PostgreSQL's and the S3
# servers' addresses (PostgreSQL on $HOSTIP, 10.213.X.1, the S3 server on
# $S3IP, .2; the nodes are .11, .12, .13; the namespaces have no other
# route). A round picks, from the seed, a nemesis
# and the node it strikes:
#   partition  the node's link down 7 s (past its session's expiry), up
#   cut_pg     the node cut from PostgreSQL alone 7 s (a blackhole route
#              in its namespace), its session expiring meanwhile
#   cut_s3     the node cut from the S3 server alone 7 s
#   late       the node's PUTs and DELETEs held 7 s by its fault proxy
#              (each node reaches the S3 server through one of its own,
#              tests/s3/faultproxy.py), then delivered late: after the
#              node sent them again, and after other nodes shipped the
#              same content again
#   5xx        the S3 server answers the node 503 SlowDown for 7 s
#   full       the node's cache disk (a tmpfs of its own) filled while
#              it writes too, then emptied
#   fullkill   the node's cache disk filled while it writes, then kill
#              -9 of its daemon and a remount on the full disk (which
#              must succeed), then the disk emptied
#   commitlost the answers to the node's next 3 COMMITs lost: its
#              metadata goes through a PostgreSQL fault proxy of its own
#              (tests/pg/pgproxy.py), which passes each COMMIT to the
#              server and then swallows every answer and cuts the
#              connection (the outcome unknown to the node)
#   stop       SIGSTOP of the node's daemon 7 s, then SIGCONT
#   kill9      kill -9 of the node's daemon, then a remount
#   skew       the node remounted with its clock 2 minutes behind
#              (faketime) for the round
#   pg         PostgreSQL restarted
#   s3         the S3 server restarted
#   gc         a GC cycle with grace 0 on the node, during the writes
#   drain      drain remote on the node, during the writes
#   restore    a restore drill beside the single host s (below): one of
#              its kept snapshots restored from a copy of its bucket
#              prefix, mounted and checked against its model
#   powerloss  at the round's end, after s's drain: the power of s's
#              disk goes (its store lives on plfs, tests/powerloss/
#              plfs.c: what was not synced is dropped) with kill -9 of
#              its daemon, then s is mounted again; the next round
#              checks its model, every file read back (its cache is
#              8 MiB: most of them from the bucket)
# Beside the three nodes, s is one host's store (SQLite, on plfs) with a
# bucket prefix of its own: the workload plays on it too (a model of its
# own), and after each round a drain uploads a snapshot of its model. At
# the end its oldest kept snapshot is restored on its own prefix (the
# restored store takes the bucket over, writes, collects at grace 0 and
# drains), and s, fenced, must still read its whole model; then every
# snapshot its bucket keeps must restore byte-exact.
# The workload writes, links, renames and unlinks on every node before the
# fault, on the nodes it spares during it, and holds files open across it.
# After healing, every node drains to the bucket (drain remote must
# complete) and the checker reads every path on every node. At the end
# every node unmounts and tallyfsck (database and bucket) must be clean.
#
#   ROUNDS=N   rounds (default 30)
#   SEED=S     replays the run of seed S (printed at the start; else
#              HARNESS_SEED, CI's, else a random one)
#   KEEP_GOING=1  a round the checker fails does not end the run: the
#              failing rounds are listed at the end
#   NEMESIS='A B'  draw the nemeses from these alone
# Needs root (network namespaces). The first failing round ends the run:
# its seed, round, nemesis and the checker's lines are printed, with the
# end of the daemons' log.
set -eu
: "${TALLY_SRC:?TALLY_SRC must name the source tree (set by meson test)}"
ROUNDS=${ROUNDS:-30}
# the watchdog's bound: a minute of setup and 25 s a round (4 to 10 here)
SCN_TIMEOUT=${SCN_TIMEOUT:-$((ROUNDS * 25 + 60 > 840 ? ROUNDS * 25 + 60 : 840))}
source "$TALLY_SRC/tests/scenario/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$TALLY_SRC/tests/scenario/remote_lib.sh"

HDIR=$TALLY_SRC/tests/harness
# CI gives HARNESS_SEED (tools/test.sh): a run that changed its draws at
# every push would fail main at random; SEED= explores
SEED=${SEED:-${HARNESS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}}
NODES=(a b c)
log "harness: SEED=$SEED ROUNDS=$ROUNDS (replay: SEED=$SEED)"
# the nemeses' and the targets' draws follow the seed
RANDOM=$SEED

# ---------------------------------------------------------- the network

ID=$(($$ % 10000))
SUB=10.213.$((ID % 250 + 1))
HOSTIP=$SUB.1
S3IP=$SUB.2
BR=tfh${ID}br
declare -A NS=() VETH=()
for i in "${!NODES[@]}"; do
	NS[${NODES[i]}]=tfh$ID-${NODES[i]}
	VETH[${NODES[i]}]=tfh$ID${NODES[i]}
done

net_down() {
	local n

	for n in "${NODES[@]}"; do
		ip netns del "${NS[$n]}" 2>/dev/null
		ip link del "${VETH[$n]}" 2>/dev/null
	done
	ip link del "$BR" 2>/dev/null
	return 0
}

net_up() {
	local i n

	ip link add "$BR" type bridge || return 1
	ip addr add "$HOSTIP/24" dev "$BR" || return 1
	ip addr add "$S3IP/24" dev "$BR" || return 1
	ip link set "$BR" up || return 1
	for i in "${!NODES[@]}"; do
		n=${NODES[i]}
		ip netns add "${NS[$n]}" || return 1
		ip link add "${VETH[$n]}" type veth peer name "${VETH[$n]}n" ||
			return 1
		ip link set "${VETH[$n]}n" netns "${NS[$n]}" || return 1
		ip link set "${VETH[$n]}" master "$BR" || return 1
		ip link set "${VETH[$n]}" up || return 1
		nsenter --net="/var/run/netns/${NS[$n]}" sh -c "
			ip link set lo up &&
			ip link set ${VETH[$n]}n name eth0 &&
			ip addr add $SUB.$((11 + i))/24 dev eth0 &&
			ip link set eth0 up" || return 1
	done
}

# in_ns NODE CMD...: CMD in NODE's network namespace
in_ns() { nsenter --net="/var/run/netns/${NS[$1]}" "${@:2}"; }

if (($(id -u) != 0)); then
	log "SKIP: network namespaces need root"
	exit 77
fi

# At the end, whatever happens: stopped daemons continued, mounts and
# daemons gone, then the namespaces, PostgreSQL and the S3 server.
harness_down() {
	local p

	for p in "${DAEMON_PID[@]}"; do kill -CONT "$p" 2>/dev/null; done
	[[ -n ${WP:-} ]] && kill "$WP" 2>/dev/null
	daemons_down
	for p in "${PROXY_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	net_down
}
PG_BEFORE_STOP=harness_down
trap 'rc=$?; set +e; harness_down; (exit $rc); pg__on_exit' EXIT

net_up || fail "cannot make the network namespaces"
# the S3 server on the bridge's address, PostgreSQL on it too
export TALLY_S3RVER_ADDR=$S3IP
s3_start tally-harness || fail "cannot start the S3 server"
pg_start || fail "cannot start PostgreSQL"
pg__as tee -a "$PG_DATA/postgresql.conf" >/dev/null <<-EOF
	listen_addresses = '127.0.0.1,$HOSTIP'
EOF
pg__as tee -a "$PG_DATA/pg_hba.conf" >/dev/null <<-EOF
	host	all		all		$SUB.0/24	scram-sha-256
EOF
pg_restart || fail "cannot restart PostgreSQL on $HOSTIP"
export no_proxy=$no_proxy,$HOSTIP,$S3IP NO_PROXY=$NO_PROXY,$HOSTIP,$S3IP
S3_EP=http://$S3IP:$S3_PORT
NSHARED="remote=s3://$S3_BUCKET/hx"
FSCK_OPTS="meta=$PG_URI,remote_endpoint=$S3_EP"

# node_proxies KIND SCRIPT UPSTREAM ADDR: a proxy of SCRIPT per node
# (listening on ADDR, forwarding to UPSTREAM), its ports in
# KIND_PORT[NODE] and KIND_CTL[NODE]
node_proxies() {
	local kind=$1 script=$2 up=$3 addr=$4 n
	local -n ports=${kind}_PORT ctls=${kind}_CTL

	for n in "${NODES[@]}"; do
		python3 "$script" --upstream "$up" --listen-addr "$addr" \
			--lifetime "$SCN_TIMEOUT" >"$TMP/$kind.$n.ports" \
			2>"$TMP/$kind.$n.log" &
		PROXY_PIDS+=($!)
	done
	for n in "${NODES[@]}"; do
		proxy_ports "$kind.$n"
		ports[$n]=$PROXY_P
		ctls[$n]=$PROXY_C
	done
}
PROXY_PIDS=()
# each node's requests to the S3 server go through a fault proxy of its
# own on the bridge (the late and 5xx nemeses); controlled from here
declare -A S3P_PORT=() S3P_CTL=()
node_proxies S3P "$TALLY_SRC/tests/s3/faultproxy.py" "$S3IP:$S3_PORT" "$S3IP"
# hproxy NODE COMMAND: a command to NODE's fault proxy (faultproxy.py)
hproxy() {
	T curl -fsS "http://127.0.0.1:${S3P_CTL[$1]}/$2" ||
		fail "round ${R:-0}: $1's fault proxy: $2"
}
# and each node's metadata goes to PostgreSQL through a fault proxy of
# its own on the bridge (the commitlost nemesis)
declare -A PGP_PORT=() PGP_CTL=()
node_proxies PGP "$TALLY_SRC/tests/pg/pgproxy.py" "$HOSTIP:$PG_PORT" "$HOSTIP"
# gproxy NODE COMMAND: a command to NODE's PostgreSQL proxy (pgproxy.py)
gproxy() {
	T curl -fsS "http://127.0.0.1:${PGP_CTL[$1]}/$2" ||
		fail "round ${R:-0}: $1's PostgreSQL proxy: $2"
}

# -------------------------------------------------------------- the nodes

export HARNESS_TALLYFS=$TALLYFS
TALLYFS=$HDIR/node_exec.sh
HARNESS_FAKETIME_LIB=
for f in /usr/lib/*/faketime/libfaketime.so.1; do
	[[ -e $f ]] && HARNESS_FAKETIME_LIB=$f
done
export HARNESS_FAKETIME_LIB

# every node's cache directory on a disk of its own (the full nemesis
# fills it); unmounted with the mounts at the end (lib.sh, daemons_down)
for n in "${NODES[@]}"; do
	mkdir -p "$TMP/cache_$n"
	mount -t tmpfs -o size=128m "tallyfs-harness-$n" "$TMP/cache_$n" ||
		fail "cannot mount a tmpfs for node $n's cache"
done

# hnode_mount NODE [SKEW]: mount NODE in its namespace
export HARNESS_NS HARNESS_SKEW
hnode_mount() {
	mkdir -p "$(mnt "$1")"
	HARNESS_NS=${NS[$1]}
	HARNESS_SKEW=${2:-}
	mount_fs "$TMP/cache_$1" "$(mnt "$1")" \
		-o "meta=postgres://tally@$HOSTIP:${PGP_PORT[$1]}/$PG_DB,$NSHARED" \
		-o "remote_endpoint=http://$S3IP:${S3P_PORT[$1]}" \
		-o heartbeat=1,remote_delete_delay=1,remote_retry_max=1 \
		-o remote_timeout=10,remote_drain_timeout=10
}
NODE_DRAIN_WAIT=60

for n in "${NODES[@]}"; do hnode_mount "$n"; done
mkdir "$(mnt a)/hx"

# ------------------------------------------------------ the single host

# Node s: one host's store (SQLite) with a bucket prefix of its own (hs),
# in this namespace, on the same S3 server: the workload plays on it too
# (a model of its own), the servers' nemeses strike it, and after every
# round a drain of it uploads a snapshot of a known model
# ($TMP/snaps/NAME.json). snapshot_interval=0: no snapshot but those;
# the newest 4 are kept, deletions are due 1 s after the last name goes,
# and an 8 MiB cache evicts.
S_PFX=hs
S_REMOTE="remote=s3://$S3_BUCKET/$S_PFX,remote_endpoint=$S3_EP"
S_MNT=$TMP/mnt_s
mkdir -p "$S_MNT" "$TMP/snaps" "$TMP/plfs_back" "$TMP/plfs"
# s's disk: plfs over a directory of this machine's (the powerloss
# nemesis drops what s did not sync); unmounted with the others at the
# end (lib.sh, daemons_down: newest first, s before it)
"$PLFS" -f "$TMP/plfs_back" "$TMP/plfs" </dev/null >>"$TMP/plfs.log" 2>&1 &
wait_for 10 is_mounted "$TMP/plfs" ||
	fail "plfs did not mount: $(cat "$TMP/plfs.log")"
S_STORE=$TMP/plfs/store_s
s_mount() {
	TALLYFS=$HARNESS_TALLYFS mount_fs "$S_STORE" "$S_MNT" \
		-o "$S_REMOTE" -o snapshot_interval=0,snapshot_keep=4 \
		-o remote_delete_delay=1,cache_size=8M,remote_timeout=10
}
s_mount
export HARNESS_SINGLE=$S_MNT
# s_snapshot WHAT: drain s; its snapshot is of the model the workload
# saved ($TMP/model.json.single)
s_snapshot() {
	local rep key

	rep=$(ctl_report "drain remote 60" "$S_MNT" 2>&1) ||
		fail "$1: drain remote on s: $rep"
	key=$(report_get snapshot "$rep")
	[[ $key == "$S_PFX/meta/snap-"* ]] || fail "$1: no snapshot of s: $rep"
	cp "$TMP/model.json.single" "$TMP/snaps/${key##*/}.json"
}
# hs3 CMD ARGS...: tests/s3/s3cli.py against the S3 server's address on
# the bridge
hs3() { S3_ENDPOINT=$S3_EP T "${S3CLI[@]}" "$@"; }
# s_kept PREFIX: the snapshots the bucket keeps under PREFIX, by name
s_kept() {
	hs3 ls "$S3_BUCKET" "$1/meta/" |
		awk '{ n = $1; sub(/.*\//, "", n) } n ~ /^snap-.*\.db$/ { print n }'
}
# s_restore_check PREFIX NAME WHAT: snapshot NAME of PREFIX restored to a
# new store, mounted, and checked against its model (workload.py
# --check), then unmounted and removed
s_restore_check() {
	local out rc=0 st=$TMP/restored m=$TMP/mnt_restored
	local remote="remote=s3://$S3_BUCKET/$1,remote_endpoint=$S3_EP"

	rm -rf "$st"
	mkdir -p "$m"
	out=$(T "$HARNESS_TALLYFS" --restore -o "$remote" -o "snapshot=$2" \
		"$st" 2>&1) || rc=$?
	((rc == 0)) || { log "$3: restore of $1 $2 refused: $out"; return 1; }
	TALLYFS=$HARNESS_TALLYFS mount_fs "$st" "$m" -o "$remote"
	T python3 "$HDIR/workload.py" --check "$SEED" "$TMP/snaps/$2.json" \
		s="$m" >"$TMP/restored.out" 2>&1 || rc=$?
	umount_fs "$m"
	rm -rf "$st"
	if ((rc != 0)); then
		log "$3: snapshot $2 restored wrong: $(cat "$TMP/restored.out")"
		return 1
	fi
	log "$3: snapshot $2 of $1 restores byte-exact"
}
# s_drill: a restore drill beside s, which goes on working (the restore
# nemesis): its bucket prefix copied, and a kept snapshot (one of the
# older ones, if s has any) restored from the copy (a restore takes the
# prefix over: docs/remote.md, Restore)
s_drill() {
	local kept=() pick dst=hd$R

	mapfile -t kept < <(s_kept "$S_PFX" | sort -V | while read -r n; do
		[[ -e $TMP/snaps/$n.json ]] && echo "$n"; done)
	((${#kept[@]})) || { log "round $R: s has no snapshot yet"; return 0; }
	((${#kept[@]} == 1)) || unset 'kept[-1]'
	pick=${kept[RANDOM % ${#kept[@]}]}
	hs3 cp "$S3_BUCKET" "$S_PFX/" "$dst/" ||
		fail "round $R: copying s's prefix"
	s_restore_check "$dst" "$pick" "round $R (drill)" || return 1
	hs3 rmtree "$S3_BUCKET" "$dst/" ||
		fail "round $R: removing the drill's copy"
}

NEMESES=(partition cut_pg cut_s3 late 5xx full fullkill commitlost stop
	kill9 pg s3 gc drain restore powerloss)
if [[ -n $HARNESS_FAKETIME_LIB && ${HARNESS_NO_SKEW:-0} != 1 ]]; then
	NEMESES+=(skew)
fi
# shellcheck disable=SC2206 # a list of words
[[ -z ${NEMESIS:-} ]] || NEMESES=($NEMESIS)

# hs_wait NAME SECONDS: the workload wrote NAME in the round's directory
# within SECONDS (1: not yet; fails if the workload is gone)
hs_wait() {
	local n=$(($2 * 10))

	while ((n-- > 0)); do
		[[ -e $RD/$1 ]] && return 0
		pid_alive "$WP" || fail "round $R: the workload exited before" \
			"'$1': $(cat "$RD/out")"
		sleep 0.1
	done
	return 1
}
hs_say() { echo "${2:-1}" >"$RD/$1"; }

# round_failed WHAT: the round's verdict and the workload's log; ends
# the run, or with KEEP_GOING=1 (the checker's verdicts only) counts it
round_failed() {
	echo "FAIL: SEED=$SEED round $R nemesis $NEM on $TARGET: $*" >&2
	cat "$RD/out" >&2
	if [[ ${KEEP_GOING:-0} == 1 && $1 == checker ]]; then
		FAILED+=("$R:$NEM:$TARGET")
		return 0
	fi
	fail "round $R ($NEM on $TARGET): see above; replay with SEED=$SEED"
}
FAILED=()

# fsck_clean WHAT: tallyfsck's report ($FSCK_OUT, exit $FSCK_RC) is
# clean, but for keys whose deletion was queued and no mount is left to
# send (bucket_orphans: GC collects them, nothing is lost)
fsck_clean() {
	local bad

	bad=$(awk -F': ' '$2 ~ /^[0-9]+$/ && $2 != 0 &&
		$1 !~ /^(objects|references|bucket_keys|bucket_orphans)$/' \
		<<<"$FSCK_OUT")
	if [[ -n $bad ]] || { ((FSCK_RC != 0)) &&
		[[ $FSCK_OUT != *"bucket_orphans: "[1-9]* ]]; }; then
		fail "tallyfsck $1 at the end (SEED=$SEED), exit $FSCK_RC:" \
			"$FSCK_OUT"
	fi
}

T0=$SECONDS
for ((R = 1; R <= ROUNDS; R++)); do
	NEM=${NEMESES[RANDOM % ${#NEMESES[@]}]}
	TARGET=${NODES[RANDOM % ${#NODES[@]}]}
	case $NEM in
	pg | s3 | gc | drain | restore | powerloss) STRUCK=none ;;
	*) STRUCK=$TARGET ;;
	esac
	log "round $R: $NEM on $TARGET ($((SECONDS - T0)) s)"
	RD=$TMP/round$R
	mkdir "$RD"
	if [[ $NEM == skew ]]; then
		umount_fs "$(mnt "$TARGET")"
		hnode_mount "$TARGET" -2m
	fi
	HARNESS_NEMESIS=$NEM python3 "$HDIR/workload.py" "$RD" "$SEED" "$R" "$STRUCK" \
		"$TMP/model.json" a="$(mnt a)" b="$(mnt b)" c="$(mnt c)" \
		>"$RD/out" 2>&1 &
	WP=$!
	hs_wait ready 120 || round_failed "no 'ready' from the workload"

	# the fault, on
	pid=${DAEMON_PID[$(mnt "$TARGET")]}
	healed=-
	case $NEM in
	partition)
		ip link set "${VETH[$TARGET]}" down
		healed="expired $TARGET"
		;;
	cut_pg)
		in_ns "$TARGET" ip route add blackhole "$HOSTIP/32"
		healed="expired $TARGET"
		;;
	cut_s3) in_ns "$TARGET" ip route add blackhole "$S3IP/32" ;;
	late) hproxy "$TARGET" "hold?method=PUT,DELETE" >/dev/null ;;
	5xx) hproxy "$TARGET" "status/503" >/dev/null ;;
	full | fullkill)
		avail=$(df --output=avail -B1 "$TMP/cache_$TARGET" | tail -n 1)
		fallocate -l "$avail" "$TMP/cache_$TARGET/filler" ||
			fail "round $R: cannot fill $TARGET's cache disk"
		[[ $NEM == full ]] || healed="killed $TARGET"
		;;
	commitlost) gproxy "$TARGET" "lose-commit?n=3" >/dev/null ;;
	stop)
		kill -STOP "$pid"
		healed="expired $TARGET"
		;;
	kill9)
		kill9_fs "$(mnt "$TARGET")"
		healed="killed $TARGET"
		;;
	pg) pg_restart || fail "round $R: PostgreSQL did not restart" ;;
	s3) s3_restart || fail "round $R: the S3 server did not restart" ;;
	esac
	t_on=$SECONDS
	hs_say faulted
	case $NEM in
	gc)
		ctl "gc grace=0" "$(mnt "$TARGET")" ||
			round_failed "gc grace=0 on $TARGET failed"
		ctl "gc grace=0" "$S_MNT" || round_failed "gc grace=0 on s failed"
		;;
	drain)
		drained "$TARGET" "round $R: drain during writes"
		# a drain of s commits, but makes no snapshot: one of a
		# state no model knows would be a kept snapshot the end
		# cannot check (a drain in the last rounds kept it)
		ctl_report "drain 60" "$S_MNT" >/dev/null ||
			round_failed "drain on s during writes"
		;;
	restore) s_drill || round_failed checker "the restore drill" ;;
	esac
	case $NEM in
	partition | cut_pg | cut_s3 | late | 5xx | full | fullkill | commitlost | stop)
		# the spared nodes' work, but the fault lasts 7 s, and is
		# healed after 30 s whatever the others wait for
		hs_wait fdone 30 || log "round $R: healing with the spared" \
			"nodes' work under way"
		while ((SECONDS - t_on < 7)); do sleep 0.2; done
		;;
	*) hs_wait fdone 120 || round_failed "the spared nodes' work" \
		"did not end" ;;
	esac

	# healed
	case $NEM in
	partition) ip link set "${VETH[$TARGET]}" up ;;
	cut_pg) in_ns "$TARGET" ip route del blackhole "$HOSTIP/32" ;;
	cut_s3) in_ns "$TARGET" ip route del blackhole "$S3IP/32" ;;
	late)
		# what was held reaches the server now, late: the node has
		# sent it again meanwhile, the other nodes wrote on
		hproxy "$TARGET" pass >/dev/null
		log "round $R: delivered late:" \
			"$(hproxy "$TARGET" deliver | awk '{ print $1, $2 }' |
				sort | uniq -c | tr -s ' \n' ' ')"
		;;
	5xx) hproxy "$TARGET" pass >/dev/null ;;
	full) rm -f "$TMP/cache_$TARGET/filler" ;;
	fullkill)
		# an open must need no room beyond what the store kept
		kill9_fs "$(mnt "$TARGET")"
		hnode_mount "$TARGET"
		rm -f "$TMP/cache_$TARGET/filler"
		;;
	commitlost)
		log "round $R: answers lost: $(gproxy "$TARGET" stats |
			awk '$1 == "lost" { print $2 }') in all so far"
		gproxy "$TARGET" pass >/dev/null
		;;
	stop) kill -CONT "$pid" ;;
	kill9) hnode_mount "$TARGET" ;;
	esac
	hs_wait fdone 120 || round_failed "the spared nodes' work did not end"
	hs_say healed "$healed"
	hs_wait bdone 120 || round_failed "the work after healing did not end"
	if [[ $NEM == skew ]]; then
		umount_fs "$(mnt "$TARGET")"
		hnode_mount "$TARGET"
	fi
	for n in "${NODES[@]}"; do drained "$n" "round $R: after healing"; done
	# every object's count is the rows that name it, after every round
	# (a transaction changes both; tallyfsck checks it at the end, this
	# says which round broke it)
	drift=$(pg_psql -At -c "SELECT o.name || ' count ' || o.refcount ||
		' rows ' || (SELECT count(*) FROM extents b WHERE b.obj = o.id)
		FROM objects o WHERE o.refcount <> (SELECT count(*) FROM extents
		b WHERE b.obj = o.id)")
	[[ -z $drift ]] || round_failed "counts drifted: $drift"
	hs_say drained
	hs_wait sdone 120 || round_failed "s's check did not end"
	s_snapshot "round $R"
	if [[ $NEM == powerloss ]]; then
		kill9_fs "$S_MNT"
		echo powerloss >"$TMP/plfs/.plfs_ctl" ||
			fail "round $R: plfs refused powerloss"
		s_mount
	fi
	rc=0
	wait "$WP" || rc=$?
	WP=
	# what the struck node's own operations during the fault came to
	s_ok=$(grep -c '(struck): .* -> ok$' "$RD/out" || true)
	s_all=$(grep -c '(struck): ' "$RD/out" || true)
	((s_all == 0)) || log "round $R: $TARGET's operations while struck:" \
		"$s_ok of $s_all returned 0"
	((rc == 0)) || round_failed checker "found violations"
done
log "$ROUNDS rounds in $((SECONDS - T0)) s"
((${#FAILED[@]} == 0)) ||
	log "SEED=$SEED: rounds that failed (round:nemesis:node): ${FAILED[*]}"

# a node's copies of objects another node freed are its cache's, and GC
# collects them (docs/design.md, section 4, several nodes): tallyfsck
# must then find none (cache_stale). First the unlinked files the last
# closes left held go (a hold is kept 2 s after the last close, core/
# file.c): one freed at an unmount after the GCs left its objects'
# copies in the caches (SEED=3194401234, round 4). Then twice round: a
# node's GC may free an object whose copy another node's GC, run before
# it, kept.
orphans_gone() {
	[[ $(pg_psql -At -c 'SELECT count(*) FROM inodes WHERE nlink = 0') == 0 ]]
}
wait_for 30 orphans_gone || fail "unlinked files still held at the end:" \
	"$(pg_psql -At -c 'SELECT ino FROM inodes WHERE nlink = 0')"
for pass in 1 2; do
	for n in "${NODES[@]}"; do
		ctl "gc grace=0" "$(mnt "$n")" ||
			fail "gc grace=0 on $n at the end (pass $pass)"
	done
done
for n in "${NODES[@]}"; do umount_fs "$(mnt "$n")"; done

# the single host: tallyfsck of its store and bucket clean (but for
# deletions still queued), then every snapshot the bucket keeps restored
# beside it and checked against its model (each restore takes the prefix
# over; the next may still take a snapshot of the store it came from)
# (what a power loss's lost commits had written is a leak GC collects:
# docs/durability.md)
ctl "gc grace=0" "$S_MNT" || fail "gc grace=0 on s at the end"
umount_fs "$S_MNT"
FSCK_RC=0
FSCK_OUT=$(T "$TALLYFSCK" -o "$S_REMOTE" "$S_STORE" 2>&1) || FSCK_RC=$?
fsck_clean "of s"

# a restore on s's own prefix (issue 45, item 6): s's oldest kept
# snapshot restored there takes the bucket over and fences s; the
# restored store writes, collects at grace 0 and drains (commits only:
# a snapshot of its own would push s's out of the bucket); s, fenced,
# still reads every file of its model, most of them from the bucket
s_mount
mapfile -t kept < <(s_kept "$S_PFX" | sort -V)
((${#kept[@]} > 0)) || fail "s's bucket keeps no snapshot"
RS=$TMP/restored_same
RM=$TMP/mnt_restored_same
mkdir -p "$RM"
out=$(T "$HARNESS_TALLYFS" --restore -o "$S_REMOTE" -o "snapshot=${kept[0]}" \
	"$RS" 2>&1) || fail "restore of ${kept[0]} on s's own prefix: $out"
wait_for 30 fenced "$S_MNT" ||
	fail "s was not fenced by the restore: $(remote_get last_error "$S_MNT")"
TALLYFS=$HARNESS_TALLYFS mount_fs "$RS" "$RM" -o "$S_REMOTE" \
	-o snapshot_interval=0,remote_delete_delay=0
mkdir "$RM/same"
for i in 1 2 3; do
	rand_file "$RM/same/f$i" $((100 * 1024 + i))
done
ctl "gc grace=0" "$RM" || fail "gc grace=0 on the restored store"
ctl_report "drain 60" "$RM" >/dev/null || fail "drain on the restored store"
sleep 6 # deletions are looked at every 5 s
umount_fs "$RM"
rm -rf "$RS"
echo 3 >/proc/sys/vm/drop_caches
T python3 "$HDIR/workload.py" --check "$SEED" "$TMP/model.json.single" \
	s="$S_MNT" >"$TMP/same.out" 2>&1 ||
	fail "SEED=$SEED: s reads its model otherwise after a restore on its" \
		"own prefix: $(cat "$TMP/same.out")"
log "a restore on s's own prefix: s, fenced, still reads its whole model"
umount_fs "$S_MNT"
mapfile -t kept < <(s_kept "$S_PFX" | sort -V)
((${#kept[@]} > 0)) || fail "s's bucket keeps no snapshot"
for n in "${kept[@]}"; do
	[[ -e $TMP/snaps/$n.json ]] || fail "s's snapshot $n: no model of it"
	s_restore_check "$S_PFX" "$n" "the end" ||
		fail "SEED=$SEED: kept snapshot $n of s does not restore"
done
# tallyfsck once no session lives (a killed node's expires after 5
# heartbeats)
for ((i = 0; i < 30; i++)); do
	FSCK_RC=0
	FSCK_OUT=$(T "$TALLYFSCK" -o "$FSCK_OPTS" "$TMP/cache_a" 2>&1) ||
		FSCK_RC=$?
	((FSCK_RC != 2)) || [[ $FSCK_OUT != *"live session"* ]] && break
	sleep 0.5
done
fsck_clean "of the shared store"
((${#FAILED[@]} == 0)) ||
	fail "SEED=$SEED: rounds that failed (round:nemesis:node): ${FAILED[*]}"
log "ok: SEED=$SEED, $ROUNDS rounds"
