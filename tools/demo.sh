#!/bin/sh
# SPDX-License-Identifier: MIT
# Install dependencies, build, and mount a demo tallyfs:
#   DIR/store (the store) on DIR/mnt (the mount), DIR=/tmp/tallyfs-demo
# or the directory given as the first argument.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-/tmp/tallyfs-demo}
"$top/tools/install-deps.sh"
[ -f "$top/build/build.ninja" ] || meson setup "$top/build" >/dev/null
ninja -C "$top/build" >/dev/null
mkdir -p "$dir/mnt"
if grep -q " $dir/mnt " /proc/mounts; then
	echo "demo: $dir/mnt is already mounted"
else
	"$top/build/fs/tallyfs" "$dir/store" "$dir/mnt"
fi
[ -d "$dir/mnt/main" ] || mkdir "$dir/mnt/main"
echo "hello from tallyfs" >"$dir/mnt/main/hello.txt"
cat <<EOT
tallyfs is mounted: store $dir/store, mount $dir/mnt

  ls $dir/mnt                                   # namespaces
  cp -r /usr/share/doc/fuse3 $dir/mnt/main/     # data is deduplicated
  echo "branch main dev" > $dir/mnt/.tally/ctl  # copy-on-write branch
  getfattr -d -m user.tally $dir/mnt/dev/hello.txt
  cat $dir/mnt/.tally/status                    # counts, bytes, dedup
  $top/build/tools/tallyctl $dir/mnt status      # the same, for humans
  $top/build/tools/tallyctl $dir/mnt gc --dry-run  # what GC would collect
  fusermount3 -u $dir/mnt                       # unmount
  $top/build/tools/tallyfsck $dir/store          # offline check
EOT
