/* SPDX-License-Identifier: MIT */
/*
 * Object files of a store made with compress_local: each is an envelope
 * (core/objects/objcodec.h) that the object store writes and opens here,
 * behind the same calls as plain files (objstore_read(), objstore_load(),
 * objstore_stat(), the byte compare of a put). zstd contexts are kept
 * for reuse (a context made per 4 KiB read costs more than the read).
 *
 * A damaged segment reads as the end of the file: the bytes before it
 * are served, and the caller sees a file shorter than its row says, as
 * with a plain file cut by a power loss (a bucket's copy replaces it,
 * else EIO and the corruption reported: core/fs/dirty.c). A damaged head
 * reads as an empty file.
 */
#include "core/objects/objstore_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "core/objects/objcodec.h"
#include "core/util/io.h"

void objstore_encode_local(struct objstore *os, int level)
{
	atomic_store(&os->level, level);
	atomic_store(&os->encoded, true);
}

bool objstore_encoded(struct objstore *os)
{
	return atomic_load(&os->encoded);
}

int objstore_local_level(struct objstore *os)
{
	return objstore_encoded(os) ? atomic_load(&os->level) : -1;
}

static void *pool_get(struct objstore *os, void **pool, unsigned *n, bool comp)
{
	void *z = NULL;

	pthread_mutex_lock(&os->zlock);
	if (*n)
		z = pool[--*n];
	pthread_mutex_unlock(&os->zlock);
	if (!z)
		z = comp ? (void *)ZSTD_createCCtx()
			 : (void *)ZSTD_createDCtx();
	return z;
}

static void pool_put(struct objstore *os, void **pool, unsigned *n, void *z,
		     bool comp)
{
	if (!z)
		return;
	pthread_mutex_lock(&os->zlock);
	if (*n < OS_ZPOOL) {
		pool[(*n)++] = z;
		z = NULL;
	}
	pthread_mutex_unlock(&os->zlock);
	if (comp)
		ZSTD_freeCCtx(z);
	else
		ZSTD_freeDCtx(z);
}

void os_codec_init(struct objstore *os)
{
	pthread_mutex_init(&os->zlock, NULL);
}

void os_codec_free(struct objstore *os)
{
	while (os->nzc)
		ZSTD_freeCCtx(os->zc[--os->nzc]);
	while (os->nzd)
		ZSTD_freeDCtx(os->zd[--os->nzd]);
	while (os->neb)
		free(os->eb[--os->neb].p);
	pthread_mutex_destroy(&os->zlock);
}

/* A buffer of @need bytes at least for an envelope, from those kept
 * (a fresh 1 MiB buffer a block costs its page faults each time), with
 * its size in *@cap; NULL without memory. */
static void *env_get(struct objstore *os, size_t need, size_t *cap)
{
	void *p = NULL;
	unsigned i;

	pthread_mutex_lock(&os->zlock);
	for (i = 0; i < os->neb; i++)
		if (os->eb[i].cap >= need) {
			p = os->eb[i].p;
			*cap = os->eb[i].cap;
			os->eb[i] = os->eb[--os->neb];
			break;
		}
	pthread_mutex_unlock(&os->zlock);
	if (!p) {
		p = malloc(need);
		*cap = need;
	}
	return p;
}

void os_env_put(struct objstore *os, void *env, size_t cap)
{
	if (!env)
		return;
	pthread_mutex_lock(&os->zlock);
	if (os->neb < OS_ZPOOL && cap <= OS_ENV_KEPT) {
		os->eb[os->neb].p = env;
		os->eb[os->neb++].cap = cap;
		env = NULL;
	}
	pthread_mutex_unlock(&os->zlock);
	free(env);
}

int os_encode(struct objstore *os, const void *buf, size_t len, void **out,
	      size_t *outlen, size_t *cap)
{
	int level = atomic_load(&os->level);
	void *zc = level ? pool_get(os, os->zc, &os->nzc, true) : NULL;
	void *o = env_get(os, objcodec_bound(len), cap);
	int rc = o ? objcodec_encode(zc, level, buf, len, o, outlen) : -ENOMEM;

	pool_put(os, os->zc, &os->nzc, zc, true);
	if (rc) {
		os_env_put(os, o, *cap);
		return rc;
	}
	*out = o;
	return 0;
}

/*
 * The head of envelope @fd into *@head (malloc'ed; @ix points into it):
 * 0, 1 (no envelope there: damaged, cut, empty), or -errno.
 */
static int read_head(int fd, struct objcodec_index *ix, unsigned char **head)
{
	size_t want = 4096;
	unsigned char *h = NULL;

	for (;;) {
		unsigned char *nh = realloc(h, want);
		ssize_t n;
		int rc;

		if (!nh) {
			free(h);
			return -ENOMEM;
		}
		h = nh;
		n = io_read_full(fd, h, want, 0);
		if (n < 0) {
			free(h);
			return (int)n;
		}
		rc = objcodec_parse(h, (size_t)n, OBJSTORE_OBJECT_MAX, ix);
		if (rc == -EAGAIN && (size_t)n == want && ix->head_len > want) {
			want = ix->head_len;
			continue;
		}
		if (rc) {
			free(h);
			return 1;
		}
		*head = h;
		return 0;
	}
}

ssize_t os_codec_pread(struct objstore *os, int fd, void *buf, size_t len,
		       off_t off)
{
	struct objcodec_index ix;
	unsigned char *head, *raw = NULL, *seg = NULL;
	uint64_t pos = (uint64_t)off, end;
	void *zd = NULL;
	ssize_t done = 0;
	int rc = read_head(fd, &ix, &head);

	if (rc)
		return rc < 0 ? rc : 0;
	end = pos + len < ix.plain ? pos + len : ix.plain;
	raw = malloc(OBJCODEC_SEGMENT + OBJCODEC_CHECK);
	seg = malloc(OBJCODEC_SEGMENT);
	zd = pool_get(os, os->zd, &os->nzd, false);
	if (!raw || !seg || !zd)
		rc = -ENOMEM;
	while (!rc && pos < end) {
		uint32_t i = (uint32_t)(pos >> OBJCODEC_SHIFT), stored, plain;
		uint64_t at, from = (uint64_t)i << OBJCODEC_SHIFT;
		size_t skip = (size_t)(pos - from), take;
		bool z;
		ssize_t n;

		objcodec_seg(&ix, i, &at, &stored, &plain, &z);
		take = plain - skip < end - pos ? plain - skip
						: (size_t)(end - pos);
		n = io_read_full(fd, raw, stored + OBJCODEC_CHECK, (off_t)at);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		/* cut or damaged: the file ends here */
		if ((size_t)n != stored + OBJCODEC_CHECK)
			break;
		if (take == plain) { /* a whole segment: opened in place */
			if (objcodec_seg_open(zd, &ix, i, raw,
					      (char *)buf + done))
				break;
		} else if (objcodec_seg_open(zd, &ix, i, raw, seg)) {
			break;
		} else {
			memcpy((char *)buf + done, seg + skip, take);
		}
		done += (ssize_t)take;
		pos += take;
	}
	pool_put(os, os->zd, &os->nzd, zd, false);
	free(raw);
	free(seg);
	free(head);
	return rc ? rc : done;
}

int os_codec_load(struct objstore *os, int fd, void **out, size_t *len)
{
	struct stat st;
	unsigned char *in;
	void *plain = NULL, *zd;
	struct objcodec_index ix;
	ssize_t n;
	int rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size > objcodec_bound(OBJSTORE_OBJECT_MAX))
		return -EFBIG;
	in = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!in)
		return -ENOMEM;
	n = io_read_full(fd, in, (size_t)st.st_size, 0);
	rc = n < 0 ? (int)n : n != st.st_size ? -EIO : 0;
	if (!rc)
		rc = objcodec_parse(in, (size_t)n, OBJSTORE_OBJECT_MAX, &ix)
			     ? -EBADMSG
			     : 0;
	if (!rc) {
		plain = malloc(ix.plain ? (size_t)ix.plain : 1);
		zd = pool_get(os, os->zd, &os->nzd, false);
		rc = plain && zd ? objcodec_decode(zd, in, (size_t)n, plain,
						   (size_t)ix.plain, len)
				 : -ENOMEM;
		pool_put(os, os->zd, &os->nzd, zd, false);
	}
	free(in);
	if (rc) {
		free(plain);
		return rc;
	}
	*out = plain;
	return 0;
}

int os_codec_compare(struct objstore *os, int fd, const void *buf, size_t len,
		     off_t *size)
{
	void *plain;
	size_t n;
	int rc = os_codec_load(os, fd, &plain, &n);

	*size = 0;
	if (rc == -EBADMSG || rc == -EFBIG)
		return 1;
	if (rc)
		return rc;
	*size = (off_t)n;
	rc = n != len || memcmp(plain, buf, len) ? 1 : 0;
	free(plain);
	return rc;
}

int os_codec_size(int fd, off_t *size)
{
	struct objcodec_index ix;
	unsigned char *head;
	struct stat st;
	int rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	rc = read_head(fd, &ix, &head);
	if (rc < 0)
		return rc;
	*size = rc ? 0 : (off_t)objcodec_readable(&ix, (uint64_t)st.st_size);
	if (!rc)
		free(head);
	return 0;
}
