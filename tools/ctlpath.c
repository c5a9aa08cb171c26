/* SPDX-License-Identifier: MIT */
/*
 * ctlpath: the paths that tallyctl sends to a mount. A path given on the
 * command line is relative to tallyctl's working directory and may go
 * through symlinks and ".."; the mount wants it relative to its root, and
 * the daemon (whose working directory is not ours) wants a shard's
 * directory absolute. Paths outside the mount, the mount itself and its
 * control files are usage errors.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/ctlpath.h"
#include "tools/tallyctl.h"

/* @path as an absolute path without ".", ".." or repeated slashes. */
char *ctlpath_normalize(const char *path)
{
	char *abs = NULL, *out, *p, *comp, *slash;
	size_t o = 0, clen;

	if (path[0] == '/') {
		abs = strdup(path);
	} else {
		char *cwd = getcwd(NULL, 0);

		if (cwd)
			abs = tallyctl_path_join(cwd, path);
		free(cwd);
	}
	if (!abs)
		return NULL;
	out = malloc(strlen(abs) + 2);
	if (!out) {
		free(abs);
		return NULL;
	}
	for (p = abs; *p; p = slash) {
		p += strspn(p, "/");
		comp = p;
		slash = p + strcspn(p, "/");
		clen = (size_t)(slash - comp);
		if (clen == 0 || (clen == 1 && comp[0] == '.'))
			continue;
		if (clen == 2 && comp[0] == '.' && comp[1] == '.') {
			while (o > 0 && out[--o] != '/')
				;
			continue;
		}
		out[o++] = '/';
		memcpy(out + o, comp, clen);
		o += clen;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	free(abs);
	return out;
}

/*
 * The absolute, resolved form of @path: its directory through realpath
 * (so that symlinks and ".." are followed as the kernel would), its last
 * component kept as is (a symlink is named, not followed). A path whose
 * directory does not exist is normalized lexically.
 */
static char *resolve(const char *path)
{
	char *copy = strdup(path), *dir_real, *base, *res = NULL;
	size_t len;

	if (!copy)
		return NULL;
	len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	base = strrchr(copy, '/');
	if (base && base == copy && base[1] == '\0') {
		res = strdup("/");
	} else if (!strcmp(base ? base + 1 : copy, ".") ||
		   !strcmp(base ? base + 1 : copy, "..")) {
		res = realpath(copy, NULL);
	} else {
		if (base == copy)
			dir_real = realpath("/", NULL);
		else if (base) {
			*base = '\0';
			dir_real = realpath(copy, NULL);
			*base = '/';
		} else {
			dir_real = realpath(".", NULL);
		}
		if (dir_real)
			res = tallyctl_path_join(dir_real,
						 base ? base + 1 : copy);
		free(dir_real);
	}
	if (!res)
		res = ctlpath_normalize(copy);
	free(copy);
	return res;
}

/*
 * *@rel = @path relative to the mount (malloc'ed). RC_USAGE, with a
 * message, for a path outside the mount, the mount itself or /.tally.
 */
int ctlpath_relative(struct inv *inv, const char *path, char **rel)
{
	char *abs = resolve(path);
	size_t mlen = strlen(inv->mnt_real);
	const char *r;

	if (!abs)
		return tallyctl_failed(inv, "resolving a path", ENOMEM);
	if (!strcmp(abs, inv->mnt_real)) {
		tallyctl_usage(inv,
			       "'%s' is the mount itself: name a path inside a "
			       "namespace",
			       path);
		free(abs);
		return RC_USAGE;
	}
	if (!strcmp(inv->mnt_real, "/"))
		mlen = 0;
	if (strncmp(abs, inv->mnt_real, mlen) || abs[mlen] != '/') {
		tallyctl_usage(inv, "'%s' is outside the mount %s", path,
			       inv->mnt_real);
		free(abs);
		return RC_USAGE;
	}
	r = abs + mlen + 1;
	if (!strncmp(r, ".tally", 6) && (r[6] == '\0' || r[6] == '/')) {
		tallyctl_usage(inv, "'%s' is a control file of the mount",
			       path);
		free(abs);
		return RC_USAGE;
	}
	*rel = strdup(r);
	free(abs);
	if (!*rel)
		return tallyctl_failed(inv, "resolving a path", ENOMEM);
	return RC_OK;
}
