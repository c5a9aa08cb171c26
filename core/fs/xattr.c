/* SPDX-License-Identifier: MIT */
/*
 * Extended attributes: the stored ones (the user. namespace, in the
 * metadata store) and the virtual user.tally.refs and user.tally.objects
 * that show a regular file's object references.
 */
#include "core/fs/tally_int.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "core/meta/meta.h"

#define XATTR_REFS "user.tally.refs"
#define XATTR_OBJECTS "user.tally.objects"
#define XATTR_RESERVED "user.tally."

static ssize_t xattr_reply(const void *val, size_t len, void *buf, size_t size)
{
	if (size == 0)
		return (ssize_t)len;
	if (len > size)
		return -ERANGE;
	memcpy(buf, val, len);
	return (ssize_t)len;
}

/* The value of a virtual xattr into *out (malloc'ed); -ENODATA if none. */
static int virtual_xattr(struct tally *t, struct inode *ip, const char *name,
			 char **out, size_t *len)
{
	bool refs = !strcmp(name, XATTR_REFS);
	size_t i, n = 0, cap = 64;
	char *s;
	int rc;

	if (!refs && strcmp(name, XATTR_OBJECTS))
		return -ENODATA;
	if (!S_ISREG(ip->md.mode))
		return -ENODATA;
	pthread_rwlock_wrlock(&ip->io->rw);
	rc = flush_commit(t, ip, 0);
	if (!rc && refs) {
		uint64_t seq;

		/* counts move with other files' flushes too: those already
		 * started (closed files) are waited for */
		pthread_mutex_lock(&t->fin_lock);
		seq = t->rotated_seq;
		pthread_mutex_unlock(&t->fin_lock);
		rc = flush_wait(t, seq, 0);
	}
	if (!rc)
		rc = dirty_map_load(t, ip);
	if (rc)
		goto out_unlock;
	s = malloc(cap);
	if (!s) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	s[0] = '\0';
	if (refs) {
		uint64_t *counts = NULL;
		size_t cnt = 0;

		tally_lock(t);
		struct meta_ver v = inode_ver(t, ip);

		rc = meta_refcounts(t->meta, &v, ip->md.ino, &counts, &cnt);
		tally_unlock(t);
		for (i = 0; i < cnt && !rc; i++) {
			char num[32];
			int l = snprintf(num, sizeof(num), "%s%" PRIu64,
					 i ? " " : "", counts[i]);

			if (n + (size_t)l + 1 > cap) {
				char *ns;

				cap = (n + (size_t)l + 1) * 2;
				ns = realloc(s, cap);
				if (!ns) {
					rc = -ENOMEM;
					break;
				}
				s = ns;
			}
			memcpy(s + n, num, (size_t)l + 1);
			n += (size_t)l;
		}
		free(counts);
	} else {
		struct meta_bref *map = NULL;
		size_t nmap = 0;

		/* from the store, not the map: a sweep repoints references
		 * without touching the maps in memory */
		tally_lock(t);
		struct meta_ver v = inode_ver(t, ip);

		rc = meta_blocks_load(t->meta, &v, ip->md.ino, &map, &nmap);
		tally_unlock(t);
		for (i = 0; i < nmap && !rc; i++) {
			size_t need = n + OBJNAME_MAX + 16;

			if (need > cap) {
				char *ns;

				cap = need * 2;
				ns = realloc(s, cap);
				if (!ns) {
					rc = -ENOMEM;
					break;
				}
				s = ns;
			}
			n += (size_t)snprintf(s + n, cap - n, "%s%s@%u",
					      i ? " " : "", map[i].name,
					      map[i].shard);
		}
		free(map);
	}
	if (rc) {
		free(s);
		goto out_unlock;
	}
	*out = s;
	*len = n;
out_unlock:
	pthread_rwlock_unlock(&ip->io->rw);
	return rc;
}

static int xattr_ns_ok(const char *name)
{
	if (strlen(name) > XATTR_NAME_MAX)
		return -ERANGE;
	if (strncmp(name, "user.", 5))
		return -EOPNOTSUPP;
	return 0;
}

ssize_t tally_getxattr(struct tally *t, uint64_t ino, const char *name,
		       void *buf, size_t size)
{
	struct inode *ip;
	void *val = NULL;
	size_t len = 0;
	ssize_t ret;
	int rc;

	if (t->no_xattrs)
		return -ENOSYS;
	if (tally_is_virtual(ino) || tally_view(ino) == TALLY_VIEW_SNAPDIRS)
		return -ENODATA;
	rc = xattr_ns_ok(name);
	if (rc)
		return rc == -EOPNOTSUPP ? -ENODATA : rc;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	if (!strncmp(name, XATTR_RESERVED, strlen(XATTR_RESERVED))) {
		rc = virtual_xattr(t, ip, name, (char **)&val, &len);
	} else {
		struct meta_ver v;

		tally_lock(t);
		v = inode_ver(t, ip);
		rc = meta_xattr_get(t->meta, &v, ip->md.ino, name, &val, &len);
		tally_unlock(t);
	}
	ret = rc ? rc : xattr_reply(val, len, buf, size);
	free(val);
	file_put(t, ip);
	return ret;
}

int tally_setxattr(struct tally *t, uint64_t ino, const char *name,
		   const void *val, size_t len, int flags)
{
	struct inode *ip;
	int rc;

	if (t->no_xattrs)
		return -ENOSYS;
	if (tally_is_virtual(ino))
		return -EPERM;
	if (tally_view_ro(ino))
		return -EROFS;
	rc = xattr_ns_ok(name);
	if (rc)
		return rc;
	if (len > XATTR_SIZE_MAX)
		return -E2BIG;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	if (!strncmp(name, XATTR_RESERVED, strlen(XATTR_RESERVED))) {
		char *cur = NULL;
		size_t curlen = 0;

		/* read-only; rewriting the value it has is a no-op, so that
		 * cp -a / rsync -X between tallyfs files succeed */
		rc = virtual_xattr(t, ip, name, &cur, &curlen);
		if (rc == 0 && !(flags & XATTR_CREATE) && curlen == len &&
		    !memcmp(cur, val, len))
			rc = 0;
		else
			rc = -EPERM;
		free(cur);
		goto out;
	}
	tally_lock(t);
	rc = meta_room(t->meta);
	if (!rc)
		rc = meta_begin(t->meta);
	if (!rc) {
		struct meta_ver v = inode_ver(t, ip);

		rc = meta_xattr_set(t->meta, &v, ip->md.ino, name, val, len,
				    flags);
	}
	if (!rc) {
		struct meta_inode md = ip->md;

		md.ctime = tally_now();
		rc = inode_write_md(t, ip, &md);
		if (!rc)
			ip->md.ctime = md.ctime;
	}
	rc = tally_txn_end(t, rc);
	tally_unlock(t);
out:
	file_put(t, ip);
	return rc;
}

ssize_t tally_listxattr(struct tally *t, uint64_t ino, char *buf, size_t size)
{
	static const char virt[] = XATTR_REFS "\0" XATTR_OBJECTS;
	struct inode *ip;
	struct meta_ver v;
	char *names = NULL, *all;
	size_t len = 0, vlen = 0;
	ssize_t ret;
	int rc;

	if (t->no_xattrs)
		return -ENOSYS;
	if (tally_is_virtual(ino) || tally_view(ino) == TALLY_VIEW_SNAPDIRS)
		return 0;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	tally_lock(t);
	v = inode_ver(t, ip);
	rc = meta_xattr_list(t->meta, &v, ip->md.ino, &names, &len);
	if (S_ISREG(ip->md.mode))
		vlen = sizeof(virt);
	tally_unlock(t);
	if (rc) {
		file_put(t, ip);
		return rc;
	}
	all = malloc(len + vlen + 1);
	if (!all) {
		free(names);
		file_put(t, ip);
		return -ENOMEM;
	}
	memcpy(all, virt, vlen);
	if (len)
		memcpy(all + vlen, names, len);
	ret = xattr_reply(all, len + vlen, buf, size);
	free(all);
	free(names);
	file_put(t, ip);
	return ret;
}

int tally_removexattr(struct tally *t, uint64_t ino, const char *name)
{
	struct inode *ip;
	int rc;

	if (t->no_xattrs)
		return -ENOSYS;
	if (tally_is_virtual(ino))
		return -EPERM;
	if (tally_view_ro(ino))
		return -EROFS;
	rc = xattr_ns_ok(name);
	if (rc)
		return rc;
	if (!strncmp(name, XATTR_RESERVED, strlen(XATTR_RESERVED)))
		return -EPERM;
	rc = file_get(t, ino, &ip);
	if (rc)
		return rc;
	tally_lock(t);
	rc = meta_begin(t->meta);
	if (!rc) {
		struct meta_ver v = inode_ver(t, ip);

		rc = meta_xattr_remove(t->meta, &v, ip->md.ino, name);
	}
	if (!rc) {
		struct meta_inode md = ip->md;

		md.ctime = tally_now();
		rc = inode_write_md(t, ip, &md);
		if (!rc)
			ip->md.ctime = md.ctime;
	}
	rc = tally_txn_end(t, rc);
	tally_unlock(t);
	file_put(t, ip);
	return rc;
}
