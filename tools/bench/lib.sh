# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The shell helpers of the benchmarks that mount tallyfs themselves
# (tools/bench/remote, tools/bench/hosts): sourced, never run. The script
# sets `tallyfs` (the daemon) and `tally_opts` (extra -o options for every
# mount, may be empty) before it mounts.
#
#   usage                 print the script's "# Usage:" block
#   die MSG / say MSG     "bench: MSG" on stderr; die exits 2
#   posint OPT VAL        die unless VAL is a positive integer
#   mount_tally STORE MNT [OPTS]
#                         tallyfs -f in a background job, -o OPTS then
#                         $tally_opts, its log in MNT.log; waits until MNT
#                         is mounted (30 s at most) and notes "MNT PID" in
#                         the array `mounts`
#   unmount MNT           unmount what mount_tally mounted there, wait for
#                         its daemon, and forget it
#   unmount_all           unmount_one everything in `mounts`, newest first
#   unmount_one MNT PID   fusermount3 -u (retried while busy, then lazy),
#                         then wait for PID (2 min, then TERM and KILL)
#   wait_mount MNT PID LOG
#   drop_caches           sync; echo 3 >/proc/sys/vm/drop_caches
#   now / secs T0 T1      $EPOCHREALTIME; T1 - T0 with 3 decimals
#   need_build_tools      add to the array `need` the Debian packages
#                         build_tools lacks (gcc, pkg-config, fuse3,
#                         python3, libfuse3-dev with its examples)
#   build_tools WORK      WORK/bin/passthrough_ll (libfuse's example, from
#                         the source libfuse3-dev ships) and
#                         WORK/bin/benchtool

usage() { sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "bench: $*" >&2; exit 2; }
say() { echo "bench: $*" >&2; }
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 wants a positive integer, not '$2'"; }

mounts=() # "MNT PID" of everything mounted here, unmounted on exit

# unmount_one MNT PID: unmount (retrying while busy, then lazily) and wait
# for the daemon.
unmount_one() {
	local mnt=$1 pid=$2 i
	if mountpoint -q "$mnt" 2>/dev/null; then
		for ((i = 0; i < 20; i++)); do
			timeout 10 fusermount3 -u "$mnt" 2>/dev/null && break
			sleep 0.5
		done
		if mountpoint -q "$mnt" 2>/dev/null; then
			say "$mnt still busy: lazy unmount"
			umount -l "$mnt" 2>/dev/null || true
		fi
	fi
	[ -n "$pid" ] || return 0
	for ((i = 0; i < 240; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "daemon $pid did not exit: killing it"
		kill "$pid" 2>/dev/null || true
		sleep 1
		kill -9 "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# unmount MNT: unmount_one what mount_tally mounted there, and forget it.
unmount() {
	local i m rest=()
	for i in "${!mounts[@]}"; do
		m=${mounts[$i]}
		if [ "${m% *}" = "$1" ]; then
			unmount_one "${m% *}" "${m##* }"
		else
			rest+=("$m")
		fi
	done
	mounts=(${rest[@]+"${rest[@]}"})
}

unmount_all() {
	local i m
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
		m=${mounts[$i]}
		unmount_one "${m% *}" "${m##* }"
	done
	mounts=()
}

wait_mount() {
	local mnt=$1 pid=$2 log=$3 i
	for ((i = 0; i < 300; i++)); do
		mountpoint -q "$mnt" && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	cat "$log" >&2 || true
	die "could not mount $mnt"
}

# mount_tally STORE MNT [OPTS]: tallyfs in the foreground of a background
# job, its log in MNT.log. OPTS are -o options (comma-separated).
mount_tally() {
	local store=$1 mnt=$2 opts=${3:-}
	opts=${opts:+$opts${tally_opts:+,}}$tally_opts
	mkdir -p "$mnt"
	# shellcheck disable=SC2154 # tallyfs: set by the script
	"$tallyfs" -f ${opts:+-o "$opts"} "$store" "$mnt" >>"$mnt.log" 2>&1 &
	mounts+=("$mnt $!")
	wait_mount "$mnt" "$!" "$mnt.log"
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

now() { echo "$EPOCHREALTIME"; }
# secs T0 T1: T1 - T0
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

examples=/usr/share/doc/libfuse3-dev/examples
have_example() {
	[ -e "$examples/passthrough_ll.c" ] ||
		[ -e "$examples/passthrough_ll.c.gz" ]
}

need_build_tools() {
	command -v python3 >/dev/null || need+=(python3)
	command -v cc >/dev/null || need+=(gcc)
	command -v pkg-config >/dev/null || need+=(pkg-config)
	command -v fusermount3 >/dev/null || need+=(fuse3)
	command -v mountpoint >/dev/null || need+=(util-linux)
	{ pkg-config --exists fuse3 2>/dev/null && have_example; } ||
		need+=(libfuse3-dev)
}

build_tools() {
	local work=$1 src=$1/src ex=$examples f
	mkdir -p "$work/bin" "$src"
	if ! have_example; then
		# an image whose dpkg excludes /usr/share/doc: the example
		# straight out of the package
		say "no $examples: extracting it from the libfuse3-dev package"
		(cd "$src" && apt-get download libfuse3-dev >/dev/null &&
			dpkg-deb -x libfuse3-dev_*.deb pkg)
		ex=$src/pkg/usr/share/doc/libfuse3-dev/examples
		[ -e "$ex/passthrough_ll.c" ] ||
			[ -e "$ex/passthrough_ll.c.gz" ] ||
			die "libfuse3-dev has no passthrough_ll.c example"
	fi
	for f in passthrough_ll.c passthrough_helpers.h; do
		if [ -e "$ex/$f" ]; then
			cp "$ex/$f" "$src/$f"
		elif [ -e "$ex/$f.gz" ]; then
			gzip -dc "$ex/$f.gz" >"$src/$f"
		fi
	done
	# shellcheck disable=SC2046 # pkg-config's words are separate arguments
	cc -O2 -w -o "$work/bin/passthrough_ll" "$src/passthrough_ll.c" \
		$(pkg-config --cflags --libs fuse3)
	cc -O2 -Wall -o "$work/bin/benchtool" \
		"$(dirname "${BASH_SOURCE[0]}")/benchtool.c"
}
