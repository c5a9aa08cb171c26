/* SPDX-License-Identifier: MIT */
/*
 * ctlpath: the paths that tallyctl sends to a mount, made relative to the
 * mount or absolute, checked against the mount (see ctlpath.c).
 */
#ifndef TALLY_TOOLS_CTLPATH_H
#define TALLY_TOOLS_CTLPATH_H

struct inv;

/*
 * @path as an absolute path without ".", ".." or repeated slashes, taken
 * lexically (no symlink followed). malloc'ed (the caller's), or NULL when
 * out of memory.
 */
char *ctlpath_normalize(const char *path);

/*
 * *@rel = @path relative to the mount of @inv (malloc'ed, the caller's):
 * its directory resolved through realpath, its last component kept as is
 * (a symlink is named, not followed). RC_USAGE, with a message, for a path
 * outside the mount, the mount itself or /.tally; RC_FAILED (reported)
 * when out of memory; RC_OK.
 */
int ctlpath_relative(struct inv *inv, const char *path, char **rel);

#endif
