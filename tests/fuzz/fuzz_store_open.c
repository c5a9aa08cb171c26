/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for opening a store whose metadata is damaged
 * (core/objects/store.c store_open, core/meta/meta_db.c meta_open): the input is the
 * whole of STORE/meta.db, next to a good marker and lock file. The store
 * either opens (and closes) or is refused with -EUCLEAN (damaged, not a
 * SQLite database, another application's) or -EPROTO (another format
 * version); a refusal leaves every file of the directory as it was, byte
 * for byte, and adds none. The directory is laid out as a real store
 * (shards/0/tmp exist: a refused store that lacks them gets them, since
 * the object store opens before the shards are read). Seeds: the meta.db
 * of a fresh store, inputs that found bugs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util/log.h"
#include "core/objects/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MARKER_TEXT "tallyfs store\nformat 1\n"

static char top[4096], dir[4096];

static void rmrf(const char *path)
{
	struct stat st;
	struct dirent *de;
	char sub[4096];
	DIR *d;

	if (lstat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		d = opendir(path);
		if (d) {
			while ((de = readdir(d)) != NULL) {
				if (!strcmp(de->d_name, ".") ||
				    !strcmp(de->d_name, ".."))
					continue;
				snprintf(sub, sizeof(sub), "%s/%s", path,
					 de->d_name);
				rmrf(sub);
			}
			closedir(d);
		}
		rmdir(path);
	} else {
		unlink(path);
	}
}

static void put(const char *name, const void *buf, size_t len)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
		abort();
	close(fd);
}

/* File @name of the store holds exactly @len bytes @want. */
static int same(const char *name, const void *want, size_t len)
{
	char path[4200], *got;
	struct stat st;
	int fd, ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size != len) {
		close(fd);
		return 0;
	}
	got = malloc(len ? len : 1);
	if (!got)
		abort();
	ok = read(fd, got, len) == (ssize_t)len && !memcmp(got, want, len);
	free(got);
	close(fd);
	return ok;
}

static int entries(void)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		abort();
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void cleanup(void)
{
	rmrf(top);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store *s = NULL;
	char sub[4200];
	int rc;

	if (!top[0]) {
		const char *tmp = getenv("TMPDIR");

		snprintf(top, sizeof(top), "%s/fuzz-store-XXXXXX",
			 tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(top))
			abort();
		snprintf(dir, sizeof(dir), "%s/s", top);
		log_set_level(LOG_CRIT); /* a refusal per run otherwise */
		atexit(cleanup);
	}
	rmrf(dir);
	if (mkdir(dir, 0700) < 0)
		abort();
	/* the layout of a real store: shards/0/tmp exist */
	snprintf(sub, sizeof(sub), "%s/shards", dir);
	if (mkdir(sub, 0700) < 0)
		abort();
	snprintf(sub, sizeof(sub), "%s/shards/0", dir);
	if (mkdir(sub, 0700) < 0)
		abort();
	snprintf(sub, sizeof(sub), "%s/shards/0/tmp", dir);
	if (mkdir(sub, 0700) < 0)
		abort();
	put("tallyfs-store", MARKER_TEXT, sizeof(MARKER_TEXT) - 1);
	put("lock", "", 0);
	put("meta.db", data, size);

	rc = store_open(dir, false, 4096, &s);
	if (rc == 0) {
		store_close(s);
	} else {
		if (rc != -EUCLEAN && rc != -EPROTO) {
			fprintf(stderr, "store_open: unexpected %d (%s)\n", rc,
				strerror(-rc));
			abort();
		}
		const char *what = entries() != 4 ? "a file was added"
				   : !same("meta.db", data, size)
					   ? "meta.db changed"
				   : !same("lock", "", 0) ? "lock changed"
				   : !same("tallyfs-store", MARKER_TEXT,
					   sizeof(MARKER_TEXT) - 1)
					   ? "the marker changed"
					   : NULL;

		if (what) {
			fprintf(stderr, "a store refused with %d (%s): %s\n",
				rc, strerror(-rc), what);
			abort();
		}
	}
	rmrf(dir);
	return 0;
}
