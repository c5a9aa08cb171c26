/* SPDX-License-Identifier: MIT */
/*
 * The syncs of the object store: a directory's fsync(2), a shard's
 * syncfs(2), shared by the callers that ask while one runs (see
 * objstore_shard_syncfs()).
 *
 * Locks: each shard's sync gate (struct sync_gate), held around no
 * system call; its holder takes no other lock.
 */
#include "core/objects/objstore_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void os_sync_init(struct objstore *os)
{
	unsigned i;

	for (i = 0; i < OBJSTORE_MAX_SHARDS; i++) {
		pthread_mutex_init(&os->sync[i].lock, NULL);
		pthread_cond_init(&os->sync[i].ended, NULL);
	}
}

void os_sync_free(struct objstore *os)
{
	unsigned i;

	for (i = 0; i < OBJSTORE_MAX_SHARDS; i++) {
		pthread_mutex_destroy(&os->sync[i].lock);
		pthread_cond_destroy(&os->sync[i].ended);
	}
}

/* fsync(2) directory @path, or with @whole_fs syncfs(2) its filesystem. */
static int dir_sync(const char *path, bool whole_fs)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if ((whole_fs ? syncfs(fd) : fsync(fd)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int objstore_dir_sync(const char *path)
{
	return dir_sync(path, false);
}

int objstore_mkdir(const char *path)
{
	char parent[PATH_MAX];
	char *slash;

	if (mkdir(path, 0700) < 0)
		return errno == EEXIST ? 0 : -errno;
	/* the new entry is durable only once its directory is synced */
	snprintf(parent, sizeof(parent), "%s", path);
	slash = strrchr(parent, '/');
	if (!slash)
		return objstore_dir_sync(".");
	if (slash == parent)
		slash++;
	*slash = '\0';
	return objstore_dir_sync(parent);
}

/*
 * Make durable a directory of @shard ("" for its root): fsync(2) it, or
 * with @whole_fs syncfs(2) the filesystem it is on.
 */
int os_sync_dir(struct objstore *os, unsigned shard, const char *rel,
		bool whole_fs)
{
	char path[PATH_MAX];
	int rc = objstore_shard_path(os, shard, rel, path);

	if (rc)
		return rc;
	rc = dir_sync(path, whole_fs);
	return rc;
}

/*
 * Callers that come while a syncfs(2) runs wait for it to end and share
 * the next one, which the first of them runs: the streams of many small
 * flushes each asked for two of their own. An error goes to every
 * caller whose sync it could have been (one that began after the call:
 * err_gen >= want).
 */
int objstore_shard_syncfs(struct objstore *os, unsigned id)
{
	struct sync_gate *g = &os->sync[id];
	uint64_t want, gen;
	int rc;

	pthread_mutex_lock(&g->lock);
	want = g->started + 1;
	while (g->done < want) {
		if (g->running) {
			g->waiting++;
			pthread_cond_wait(&g->ended, &g->lock);
			g->waiting--;
			continue;
		}
		g->running = true;
		gen = ++g->started;
		pthread_mutex_unlock(&g->lock);
		rc = os->sync_hook ? os->sync_hook(os->sync_hook_arg, id) : 0;
		if (!rc)
			rc = os_sync_dir(os, id, "", true);
		pthread_mutex_lock(&g->lock);
		g->running = false;
		g->done = gen;
		if (rc) {
			g->err = rc;
			g->err_gen = gen;
		}
		pthread_cond_broadcast(&g->ended);
	}
	rc = g->err_gen >= want ? g->err : 0;
	pthread_mutex_unlock(&g->lock);
	return rc;
}

unsigned objstore_batches_open(struct objstore *os)
{
	return atomic_load(&os->batches);
}

unsigned objstore_sync_waiting(struct objstore *os, unsigned id)
{
	unsigned n;

	pthread_mutex_lock(&os->sync[id].lock);
	n = os->sync[id].waiting;
	pthread_mutex_unlock(&os->sync[id].lock);
	return n;
}

void objstore_set_sync_hook(struct objstore *os,
			    int (*fn)(void *arg, unsigned shard), void *arg)
{
	os->sync_hook_arg = arg;
	os->sync_hook = fn;
}
