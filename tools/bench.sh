#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A quick benchmark, on demand (not part of the test suite): tallyfs
# against a native directory on the same disk, in the same run, each
# workload alternated RUNS times; prints medians and the ratio
# tallyfs / native.
#   tools/bench.sh [SIZE_MIB=1024] [FILES=10000] [RUNS=3]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
size=${1:-1024}
files=${2:-10000}
runs=${3:-3}
bin="$top/build/fs/tallyfs"
[ -x "$bin" ] || { echo "build first: ninja -C $top/build"; exit 2; }
work=$(mktemp -d "${TMPDIR:-/var/tmp}/tally-bench.XXXXXX")
mnt="$work/mnt"
mkdir -p "$mnt" "$work/native"
cleanup() {
	fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
"$bin" "$work/store" "$mnt"
mkdir "$mnt/bench"

now() { date +%s.%N; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# workload DIR -> seconds
w_write() { rm -f "$1/big"; drop; local t0; t0=$(now)
	dd if="$work/src" of="$1/big" bs=1M conv=fsync status=none
	echo "$(now) - $t0" | bc; }
w_read() { drop; local t0; t0=$(now)
	dd if="$1/big" of=/dev/null bs=1M status=none
	echo "$(now) - $t0" | bc; }
w_create() { rm -rf "$1/many"; mkdir "$1/many"; local t0; t0=$(now)
	(cd "$1/many" && seq "$files" | xargs touch)
	echo "$(now) - $t0" | bc; }
w_stat() { local t0; t0=$(now); find "$1/many" -type f -printf '%s\n' >/dev/null
	echo "$(now) - $t0" | bc; }

results=""
for w in write read create stat; do
	tf=""; tn=""
	for r in $(seq "$runs"); do
		if [ "$w" = write ]; then
			head -c $((size << 20)) /dev/urandom >"$work/src"
			sync
		fi
		tf="$tf $(w_$w "$mnt/bench")"
		tn="$tn $(w_$w "$work/native")"
	done
	mf=$(echo $tf | tr ' ' '\n' | median)
	mn=$(echo $tn | tr ' ' '\n' | median)
	results="$results$w $mf $mn\n"
done
t0=$(now)
echo "branch bench b2" >"$mnt/.tally/ctl"
tb=$(echo "$(now) - $t0" | bc)

printf "%-8s %12s %12s %8s\n" workload tallyfs native ratio
printf "$results" | while read -r w f n; do
	case $w in
	write|read) unit="MB/s"; fv=$(echo "$size * 1.048576 / $f" | bc -l)
		nv=$(echo "$size * 1.048576 / $n" | bc -l) ;;
	*) unit="files/s"; fv=$(echo "$files / $f" | bc -l)
		nv=$(echo "$files / $n" | bc -l) ;;
	esac
	printf "%-8s %12.0f %12.0f %8.2f  %s (median of %d)\n" "$w" "$fv" "$nv" \
		"$(echo "$fv / $nv" | bc -l)" "$unit" "$runs"
done
echo "branch of a namespace with $files files: ${tb}s"
