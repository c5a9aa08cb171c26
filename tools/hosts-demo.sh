#!/bin/sh
# SPDX-License-Identifier: MIT
# Several hosts, tried on one machine: a throwaway PostgreSQL cluster
# (Debian's postgresql-15), an S3 server (s3rver, from npm) and two mounts
# of one store, each with its own cache directory, as two hosts would:
#
#   tools/hosts-demo.sh [DIR]       install, build, start, mount DIR/a, DIR/b
#   tools/hosts-demo.sh stop [DIR]  unmount both, stop the servers, remove DIR
#
# DIR defaults to /tmp/tallyfs-hosts. Run as root (the cluster runs as the
# postgres user).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
pgbin=/usr/lib/postgresql/15/bin

if [ "${1:-}" = stop ]; then
	dir=${2:-/tmp/tallyfs-hosts}
	for m in "$dir/a" "$dir/b"; do
		grep -q " $m " /proc/mounts && fusermount3 -u "$m"
	done
	if [ -f "$dir/pg/data/postmaster.pid" ]; then
		(cd "$dir/pg" && setpriv --reuid postgres --regid postgres \
			--clear-groups "$pgbin/pg_ctl" -D "$dir/pg/data" \
			-m fast -w stop >/dev/null)
	fi
	[ -f "$dir/s3.pid" ] && kill "$(cat "$dir/s3.pid")" 2>/dev/null
	rm -rf "$dir"
	echo "hosts-demo: stopped, $dir removed"
	exit 0
fi

dir=${1:-/tmp/tallyfs-hosts}
"$top/tools/install-deps.sh"
[ -f "$top/build/build.ninja" ] || meson setup "$top/build" >/dev/null
ninja -C "$top/build" >/dev/null
if [ -e "$dir" ]; then
	echo "hosts-demo: $dir exists (tools/hosts-demo.sh stop $dir first)" >&2
	exit 1
fi
mkdir -p "$dir/pg" "$dir/s3" "$dir/a" "$dir/b"
chown postgres "$dir/pg"
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# PostgreSQL: a cluster of the demo's own, on 127.0.0.1
pgport=$(free_port)
as_pg() {
	(cd "$dir/pg" && setpriv --reuid postgres --regid postgres \
		--clear-groups "$@")
}
as_pg "$pgbin/initdb" -N -A trust -U postgres -E UTF8 --locale=C \
	-D "$dir/pg/data" >/dev/null
as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w \
	-o "-p $pgport -k $dir/pg -c listen_addresses=127.0.0.1" start >/dev/null
as_pg "$pgbin/createdb" -h "$dir/pg" -p "$pgport" -U postgres tally
meta="postgres://postgres@127.0.0.1:$pgport/tally"

# the S3 server: its parent shell stays, so that it runs on after us
s3dir=$(TALLY_S3RVER_DIR="$top/build/s3rver" sh "$top/tests/s3/install-s3rver.sh")
TALLY_S3RVER_DIR=$s3dir setsid sh -c "echo \$\$ >'$dir/s3.pid';
	node --openssl-legacy-provider '$top/tests/s3/s3rver.js' 0 '$dir/s3' \
	tally >'$dir/s3.port' 2>'$dir/s3.log'; :" </dev/null >/dev/null 2>&1 &
n=100
while [ "$n" -gt 0 ] && ! [ -s "$dir/s3.port" ]; do
	sleep 0.1
	n=$((n - 1))
done
s3port=$(head -n 1 "$dir/s3.port")
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
remote="remote=s3://tally/demo,remote_endpoint=http://127.0.0.1:$s3port"

# two nodes: the first mount formats the database
for node in a b; do
	"$top/build/fs/tallyfs" -o "meta=$meta,$remote" "$dir/cache_$node" \
		"$dir/$node"
done
mkdir "$dir/a/main"
echo "written on a" >"$dir/a/main/hello.txt"
cat <<EOT
Two mounts of one store: $dir/a and $dir/b (metadata $meta,
objects in s3://tally/demo at http://127.0.0.1:$s3port)

  cat $dir/b/main/hello.txt                        # written on a, read on b
  cp -r /usr/share/doc/fuse3 $dir/b/main/ && ls $dir/a/main
  ln $dir/a/main/hello.txt $dir/a/main/hello2.txt
  getfattr -n user.tally.refs $dir/b/main/hello2.txt
  $top/build/tools/tallyctl $dir/a status           # nodes: a and b
  tools/hosts-demo.sh stop $dir                     # unmount, stop, remove
EOT
