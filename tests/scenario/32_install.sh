#!/bin/bash
# SPDX-License-Identifier: MIT
# `meson install` (into a DESTDIR of the scenario's own) installs the
# three programs, the three man pages made from docs/*.md and tallyctl's
# bash completion:
#  - man finds each page by name in the installed tree (MANPATH) and
#    renders it with no warning from groff, NAME and SYNOPSIS first;
#  - the completion, loaded by bash-completion, completes tallyctl's
#    commands, subcommands and options, and the namespaces of a real
#    mount for du.
SCN_TIMEOUT=120
source "$(dirname "$0")/lib.sh"

DEST=$TMP/dest
T meson install -C "$TALLY_BUILD" --destdir "$DEST" --no-rebuild \
	--quiet >"$TMP/install.log" 2>&1 ||
	fail "meson install: $(tail -5 "$TMP/install.log")"
for prog in tallyfs tallyfsck tallyctl; do
	[[ -n $(find "$DEST" -type f -name "$prog" -perm -u+x) ]] ||
		fail "$prog is not installed"
done

log "the man pages"
for page in tallyfs.8 tallyctl.1 tallyfsck.8; do
	f=$(find "$DEST" -path "*/man/man${page##*.}/$page")
	[[ -n $f ]] || fail "$page is not installed: $(find "$DEST" -name '*.[18]')"
	mandir=${f%/man*/*}
	got=$(MANPATH=$mandir T man -w "${page%.*}") ||
		fail "man -w ${page%.*} finds nothing in $mandir"
	assert_eq "man -w ${page%.*}" "$f" "$got"
	MANWIDTH=80 MANPATH=$mandir T man --warnings "${page%.*}" \
		>"$TMP/$page.txt" 2>"$TMP/$page.err" || fail "man ${page%.*} failed"
	[[ ! -s $TMP/$page.err ]] ||
		fail "man ${page%.*} warns: $(head -5 "$TMP/$page.err")"
	assert_eq "$page's first section" NAME \
		"$(grep -m1 -E '^[A-Z]' "$TMP/$page.txt")"
	grep -q '^SYNOPSIS' "$TMP/$page.txt" || fail "$page has no SYNOPSIS"
done
grep -q -- '-o cache_size=BYTES' "$TMP/tallyfs.8.txt" ||
	fail "tallyfs(8) lacks its options"

log "tallyctl's bash completion"
comp=$(find "$DEST" -path '*/bash-completion/completions/tallyctl')
[[ -n $comp ]] || fail "the completion is not installed"
mount_fs
mkdir "$MNT/alpha" "$MNT/beta"
# complete WORD...: what completing the last word of `tallyctl WORD...`
# offers, sorted, on one line
complete_words() {
	T bash -c '
		source /usr/share/bash-completion/bash_completion
		source "$1"; shift
		COMP_WORDS=(tallyctl "$@"); COMP_CWORD=$#
		COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
		_tallyctl tallyctl "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
		printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' \
		_ "$comp" "$@"
}
assert_eq "commands after sh" "shard " "$(complete_words "$MNT" sh)"
assert_eq "commands after d" "diff drain du " "$(complete_words "$MNT" d)"
assert_eq "shard's subcommands after a" "activate add " \
	"$(complete_words "$MNT" shard a)"
assert_eq "gc's options after --d" "--dry-run " \
	"$(complete_words "$MNT" gc --d)"
assert_eq "drain remote" "remote " "$(complete_words "$MNT" drain r)"
assert_eq "du's namespaces" "alpha beta " "$(complete_words "$MNT" du "")"
assert_eq "rollback's option" "--drop-later " \
	"$(complete_words "$MNT" rollback --d)"
assert_eq "autosnapshot's words" "every= keep= off " \
	"$(complete_words "$MNT" autosnapshot alpha "")"
umount_fs
log "ok"
