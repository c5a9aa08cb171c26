/* SPDX-License-Identifier: MIT */
/*
 * fuse_lowlevel_ops: each callback translates a kernel request into a
 * core/ call and replies exactly once. The control files of /.tally keep
 * their per-open state (the last command's report, the status or metrics
 * snapshot) in the file handle.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/jobs/ctl.h"
#include "core/util/log.h"
#include "core/fs/tally.h"
#include "core/util/metrics.h"
#include "fs/fs.h"

/* Per-open state of /.tally/ctl, /.tally/status and /.tally/metrics. */
struct ctl_handle {
	pthread_mutex_t lock;
	char *text; /* protected by lock: report or status document */
	size_t len; /* protected by lock */
	off_t base; /* protected by lock: file offset where text starts */
};

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* fuse_reply_err(), noted for the request's metrics (fs/optime.c). */
static void reply_err(fuse_req_t req, int err)
{
	fs_reply_errno = err;
	fuse_reply_err(req, err);
}

/* The control files: their text is made at open and kept per open. */
static bool is_ctl_file(fuse_ino_t ino)
{
	return ino >= TALLY_CTL_INO && ino <= TALLY_METRICS_INO;
}

static void reply_entry(fuse_req_t req, int rc, const struct stat *st)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;

	if (rc) {
		reply_err(req, -rc);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = st->st_ino;
	e.generation = 1;
	e.attr = *st;
	e.attr_timeout = fs->attr_timeout;
	e.entry_timeout = fs->entry_timeout;
	fuse_reply_entry(req, &e);
}

static void reply_attr(fuse_req_t req, int rc, const struct stat *st)
{
	if (rc)
		reply_err(req, -rc);
	else
		fuse_reply_attr(req, st, fs_of(req)->attr_timeout);
}

#define MAX_READ (1u << 20) /* the largest read request (max_readahead) */

/*
 * Whether a pipe can grow to hold the reply to the largest read. libfuse
 * splices a reply through a pipe it grows to the reply's size plus a few
 * pages; when it cannot (fs.pipe-max-size is 1 MiB by default, and only
 * CAP_SYS_RESOURCE may go over it) it reads the file into a fresh buffer
 * instead, which measured 2.5 times the daemon's CPU of not splicing.
 */
static bool pipe_holds(size_t bytes)
{
	int p[2];
	bool ok;

	if (pipe2(p, O_CLOEXEC) != 0)
		return false;
	ok = fcntl(p[0], F_SETPIPE_SZ, (int)bytes) >= (int)bytes;
	close(p[0]);
	close(p[1]);
	return ok;
}

void fs_inval_inode(void *arg, uint64_t ino)
{
	struct fs *fs = arg;

	fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
}

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	conn->max_write = 1u << 20;
	/* read replies of committed data are spliced from the object files
	 * (fs_op_read): measured +6 % cold and +22 % warm reads, -30 % CPU
	 * per MiB */
	if (!(conn->capable & FUSE_CAP_SPLICE_WRITE))
		fs->splice = false;
	/* a reply's pages, one more at each end of a range when unaligned */
	fs->pipe_size = MAX_READ + 8 * page;
	if (fs->splice && !pipe_holds(fs->pipe_size)) {
		log_msg(LOG_INFO,
			"read replies are copied, not spliced: a "
			"pipe cannot grow to %zu bytes "
			"(fs.pipe-max-size)",
			fs->pipe_size);
		fs->splice = false;
	}
	if (fs->splice)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	fs->splice_min = 2 * page; /* below it libfuse copies anyway */
	conn->max_readahead = MAX_READ;
	/* many small writes become few large ones (measured 4.7-5.8x on
	 * random 4 KiB writes); the kernel then keeps a file's size and
	 * times itself, and sends them with its writes */
	if (!(conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		atomic_store(&fs->writeback, false);
	if (atomic_load(&fs->writeback))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	/* pages written through shared mappings are the kernel's too, with
	 * or without the cache; set before any other request comes */
	if (fs->threads)
		tally_set_push(fs->t, fs_inval_inode, fs,
			       atomic_load(&fs->writeback));
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* permissions: the kernel's (default_permissions), or root only */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	conn->want &= ~(unsigned)FUSE_CAP_POSIX_ACL;
	conn->want &= ~(unsigned)FUSE_CAP_ATOMIC_O_TRUNC;
}

static void fs_op_destroy(void *userdata)
{
	struct fs *fs = userdata;

	tally_drain(fs->t, NULL, 0);
}

static void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct stat st;
	int rc = tally_lookup(fs_of(req)->t, parent, name, &st);

	reply_entry(req, rc, &st);
}

static void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	tally_forget(fs_of(req)->t, ino, nlookup);
	fuse_reply_none(req);
}

static void fs_op_forget_multi(fuse_req_t req, size_t count,
			       struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		tally_forget(fs_of(req)->t, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fs_op_getattr(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct stat st;
	int rc;

	(void)fi;
	rc = tally_getattr(fs_of(req)->t, ino, &st);
	reply_attr(req, rc, &st);
}

/*
 * access(2), asked only on a mount private to root (without
 * default_permissions, fs/main.c): root passes every check but execute,
 * which wants an x bit on anything but a directory, as the kernel's own
 * check has it. (A uid-0 process stripped of CAP_DAC_OVERRIDE is not held
 * to the other mode bits there.)
 */
static void fs_op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct stat st;
	int rc = tally_getattr(fs_of(req)->t, ino, &st);

	if (!rc && (mask & X_OK) && !S_ISDIR(st.st_mode) &&
	    !(st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)))
		rc = -EACCES;
	reply_err(req, -rc);
}

static void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			  int to_set, struct fuse_file_info *fi)
{
	struct tally *t = fs_of(req)->t;
	struct stat st;
	unsigned n = 0;
	int flags = 0, rc;

	(void)fi;
	if (to_set & FUSE_SET_ATTR_MODE)
		flags |= TALLY_SET_MODE;
	if (to_set & FUSE_SET_ATTR_UID)
		flags |= TALLY_SET_UID;
	if (to_set & FUSE_SET_ATTR_GID)
		flags |= TALLY_SET_GID;
	if (to_set & FUSE_SET_ATTR_SIZE)
		flags |= TALLY_SET_SIZE;
	if (to_set & FUSE_SET_ATTR_ATIME)
		flags |= TALLY_SET_ATIME;
	if (to_set & FUSE_SET_ATTR_MTIME)
		flags |= TALLY_SET_MTIME;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		flags |= TALLY_SET_ATIME_NOW;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		flags |= TALLY_SET_MTIME_NOW;
	if (to_set & FUSE_SET_ATTR_CTIME)
		flags |= TALLY_SET_CTIME;
	do
		rc = tally_setattr(t, ino, attr, flags, &st);
	while (tally_retry(t, &rc, &n));
	if (!rc && tally_is_virtual(ino))
		rc = tally_getattr(t, ino, &st);
	reply_attr(req, rc, &st);
}

static void fs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char *target = NULL;
	int rc = tally_readlink(fs_of(req)->t, ino, &target);

	if (rc)
		reply_err(req, -rc);
	else
		fuse_reply_readlink(req, target);
	free(target);
}

static struct tally_ctx ctx_of(fuse_req_t req)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct tally_ctx c = { .uid = fc->uid, .gid = fc->gid };

	return c;
}

static void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
			mode_t mode, dev_t rdev)
{
	struct tally_ctx c = ctx_of(req);
	struct stat st;
	unsigned n = 0;
	int rc;

	do
		rc = tally_mknod(fs_of(req)->t, &c, parent, name, mode, rdev,
				 &st);
	while (tally_retry(fs_of(req)->t, &rc, &n));
	reply_entry(req, rc, &st);
}

static void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
			mode_t mode)
{
	struct tally_ctx c = ctx_of(req);
	struct stat st;
	unsigned n = 0;
	int rc;

	do
		rc = tally_mkdir(fs_of(req)->t, &c, parent, name, mode, &st);
	while (tally_retry(fs_of(req)->t, &rc, &n));
	reply_entry(req, rc, &st);
}

static void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			  const char *name)
{
	struct tally_ctx c = ctx_of(req);
	struct stat st;
	unsigned n = 0;
	int rc;

	do
		rc = tally_symlink(fs_of(req)->t, &c, parent, name, link, &st);
	while (tally_retry(fs_of(req)->t, &rc, &n));
	reply_entry(req, rc, &st);
}

static void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	unsigned n = 0;
	int rc;

	do
		rc = tally_unlink(fs_of(req)->t, parent, name);
	while (tally_retry(fs_of(req)->t, &rc, &n));
	reply_err(req, -rc);
}

static void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	unsigned n = 0;
	int rc;

	do
		rc = tally_rmdir(fs_of(req)->t, parent, name);
	while (tally_retry(fs_of(req)->t, &rc, &n));
	reply_err(req, -rc);
}

static void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			 fuse_ino_t newparent, const char *newname,
			 unsigned int flags)
{
	unsigned n = 0;
	int rc;

	do
		rc = tally_rename(fs_of(req)->t, parent, name, newparent,
				  newname, flags);
	while (tally_retry(fs_of(req)->t, &rc, &n));
	reply_err(req, -rc);
}

static void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		       const char *newname)
{
	struct stat st;
	unsigned n = 0;
	int rc;

	do
		rc = tally_link(fs_of(req)->t, ino, newparent, newname, &st);
	while (tally_retry(fs_of(req)->t, &rc, &n));
	reply_entry(req, rc, &st);
}

static int ctl_open(struct tally *t, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ctl_handle *h = calloc(1, sizeof(*h));
	int rc = 0;

	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	if (ino != TALLY_CTL_INO) {
		if ((fi->flags & O_ACCMODE) != O_RDONLY) {
			rc = -EACCES;
		} else {
			rc = ino == TALLY_STATUS_INO
				     ? ctl_status_json(t, &h->text)
				     : ctl_metrics_text(t, &h->text);
			if (!rc)
				h->len = strlen(h->text);
		}
	}
	if (rc) {
		pthread_mutex_destroy(&h->lock);
		free(h);
		return rc;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 1;
	fi->nonseekable = 0;
	return 0;
}

/*
 * A file opened for writing while the store's free space is low: its
 * writes bypass the kernel's cache. With the writeback cache, write()
 * returns once the kernel holds the data, and a daemon with no room for
 * it could only fail the close; sent one by one, each write is reserved
 * or refused with ENOSPC as it is made (docs/design.md, full disk).
 */
static void space_check(struct tally *t, struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY && tally_space_low(t))
		fi->direct_io = 1;
}

/*
 * A regular file's handle (fi->fh): whether its writes are stamped here.
 * With the writeback cache the kernel keeps a file's mtime and ctime,
 * O_DIRECT writes included (it stamps them itself, with its coarse clock,
 * and sends them with a SETATTR at the close when they changed): a stamp
 * of the daemon's own at a write differed from what stat showed, by the
 * kernel's tick, and was what a remount showed. Stamped here: without
 * the writeback cache, or on a handle that bypasses it (direct_io), whose
 * writes the kernel does not time.
 */
#define FH_STAMP 1u

static void stamp_mode(struct fs *fs, struct fuse_file_info *fi)
{
	fi->fh = fi->direct_io || !atomic_load(&fs->writeback) ? FH_STAMP : 0;
}

static void fs_op_open(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct tally *t = fs_of(req)->t;
	int rc;

	if (is_ctl_file(ino)) {
		rc = ctl_open(t, ino, fi);
	} else if (ino == TALLY_CTLDIR_INO) {
		rc = -EISDIR;
	} else {
		rc = tally_open_file(t, ino, fi->flags);
		/* committed blocks are immutable and every change passes
		 * through this kernel: its page cache stays valid */
		fi->keep_cache = 1;
		space_check(t, fi);
		stamp_mode(fs_of(req), fi);
	}
	if (rc)
		reply_err(req, -rc);
	else
		fuse_reply_open(req, fi);
}

static void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
			 mode_t mode, struct fuse_file_info *fi)
{
	struct tally *t = fs_of(req)->t;
	struct tally_ctx c = ctx_of(req);
	struct fuse_entry_param e;
	unsigned n = 0;
	int rc;

	memset(&e, 0, sizeof(e));
	do
		rc = tally_create(t, &c, parent, name, mode, &e.attr);
	while (tally_retry(t, &rc, &n));
	if (rc) {
		reply_err(req, -rc);
		return;
	}
	e.ino = e.attr.st_ino;
	e.generation = 1;
	e.attr_timeout = fs_of(req)->attr_timeout;
	e.entry_timeout = fs_of(req)->entry_timeout;
	fi->keep_cache = 1;
	space_check(t, fi);
	stamp_mode(fs_of(req), fi);
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		/* interrupted: the kernel never saw the open */
		tally_release(t, e.ino);
		tally_forget(t, e.ino, 1);
	}
}

static struct ctl_handle *handle_of(struct fuse_file_info *fi)
{
	return (struct ctl_handle *)(uintptr_t)fi->fh;
}

/*
 * Reply with bytes of object files, with no copy in this process: they
 * are spliced into a pipe of ours first, all of them, and libfuse splices
 * the pipe to the kernel. Were the files handed to libfuse directly, a
 * read error in a later file would become a short reply (libfuse sends
 * what it has), which the kernel takes for EOF; here it is seen before
 * anything is sent. Returns 0 once replied, or 1 when nothing was sent
 * (the caller copies the bytes, and meets the error itself).
 */
static int reply_spliced(fuse_req_t req, const struct tally_seg *seg,
			 size_t nseg)
{
	struct fs *fs = fs_of(req);
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);
	size_t i;
	int p[2];

	if (pipe2(p, O_CLOEXEC) != 0)
		return 1;
	if (fcntl(p[0], F_SETPIPE_SZ, (int)fs->pipe_size) < 0)
		goto fail;
	for (i = 0; i < nseg; i++) {
		loff_t at = seg[i].off;
		size_t left = seg[i].len;

		while (left > 0) {
			ssize_t n = splice(seg[i].fd, &at, p[1], NULL, left,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

			if (fs->splice_fail_at &&
			    atomic_fetch_add(&fs->splices, 1) + 1 ==
				    fs->splice_fail_at)
				n = -1; /* injected */
			if (n <= 0)
				goto fail; /* an error, or a file shorter */
			left -= (size_t)n;
		}
		bv.buf[0].size += seg[i].len;
	}
	bv.buf[0].flags = FUSE_BUF_IS_FD;
	bv.buf[0].fd = p[0];
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
	close(p[0]);
	close(p[1]);
	return 0;
fail:
	close(p[0]);
	close(p[1]);
	return 1;
}

static void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	ssize_t n;
	char *buf;

	if (is_ctl_file(ino)) {
		struct ctl_handle *h = handle_of(fi);
		size_t rel;

		buf = NULL;
		pthread_mutex_lock(&h->lock);
		/* the report starts where the command's write ended */
		rel = (size_t)(off >= h->base ? off - h->base : off);
		if (rel > h->len)
			rel = h->len;
		if (size > h->len - rel)
			size = h->len - rel;
		if (size) {
			buf = malloc(size);
			if (buf)
				memcpy(buf, h->text + rel, size);
		}
		pthread_mutex_unlock(&h->lock);
		/* no lock held: once replied, a release may free @h */
		if (size && !buf)
			reply_err(req, ENOMEM);
		else
			fuse_reply_buf(req, buf, size);
		free(buf);
		return;
	}
	if (fs_of(req)->splice && size >= fs_of(req)->splice_min) {
		struct tally_seg seg[TALLY_SEGS_MAX];
		size_t nseg, i;
		int rc;

		rc = tally_read_fd(fs_of(req)->t, ino, size, off, seg, &nseg);
		if (rc == 0) {
			struct metrics *m = fs_of(req)->metrics;
			size_t bytes = 0;

			for (i = 0; i < nseg; i++)
				bytes += seg[i].len;
			rc = reply_spliced(req, seg, nseg);
			for (i = 0; i < nseg; i++)
				close(seg[i].fd);
			if (rc == 0) {
				metrics_add(m, METRICS_READ_BYTES, bytes);
				return;
			}
		}
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		reply_err(req, ENOMEM);
		return;
	}
	n = tally_read(fs_of(req)->t, ino, buf, size, off);
	if (n < 0) {
		reply_err(req, (int)-n);
	} else {
		metrics_add(fs_of(req)->metrics, METRICS_READ_BYTES,
			    (uint64_t)n);
		fuse_reply_buf(req, buf, (size_t)n);
	}
	free(buf);
}

static void ctl_write(fuse_req_t req, struct ctl_handle *h, const char *buf,
		      size_t size, off_t off)
{
	char *report = NULL;
	int rc = ctl_exec(fs_of(req)->t, buf, size, &report);

	if (rc && !report) {
		reply_err(req, -rc);
		return;
	}
	/* a failure's report is read where the failed write left the
	 * offset */
	pthread_mutex_lock(&h->lock);
	free(h->text);
	h->text = report;
	h->len = report ? strlen(report) : 0;
	h->base = rc ? off : off + (off_t)size;
	pthread_mutex_unlock(&h->lock);
	if (rc)
		reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

static void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
			size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n;

	if (ino == TALLY_CTL_INO) {
		ctl_write(req, handle_of(fi), buf, size, off);
		return;
	}
	if (is_ctl_file(ino)) {
		reply_err(req, EACCES);
		return;
	}
	/* pages of the writeback cache, or a write the kernel timed: the
	 * kernel keeps the times (stamp_mode()) */
	if (fi->writepage || !(fi->fh & FH_STAMP))
		n = tally_write_pages(fs_of(req)->t, ino, buf, size, off);
	else
		n = tally_write(fs_of(req)->t, ino, buf, size, off);
	if (n < 0) {
		reply_err(req, (int)-n);
	} else {
		metrics_add(fs_of(req)->metrics, METRICS_WRITE_BYTES,
			    (uint64_t)n);
		fuse_reply_write(req, (size_t)n);
	}
}

static void fs_op_flush(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	(void)fi;
	reply_err(req, -tally_flush(fs_of(req)->t, ino));
}

static void fs_op_release(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	if (is_ctl_file(ino)) {
		struct ctl_handle *h = handle_of(fi);

		free(h->text);
		pthread_mutex_destroy(&h->lock);
		free(h);
		reply_err(req, 0);
		return;
	}
	reply_err(req, -tally_release(fs_of(req)->t, ino));
}

static void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	(void)fi;
	reply_err(req, -tally_fsync(fs_of(req)->t, ino, datasync != 0));
}

static void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in,
				  off_t off_in, struct fuse_file_info *fi_in,
				  fuse_ino_t ino_out, off_t off_out,
				  struct fuse_file_info *fi_out, size_t len,
				  int flags)
{
	unsigned tries = 0;
	ssize_t n;
	int rc;

	(void)fi_in;
	(void)fi_out;
	if (flags) {
		reply_err(req, EINVAL);
		return;
	}
	do {
		n = tally_copy_range(fs_of(req)->t, ino_in, off_in, ino_out,
				     off_out, len);
		rc = n < 0 ? (int)n : 0;
	} while (tally_retry(fs_of(req)->t, &rc, &tries));
	if (rc)
		reply_err(req, -rc);
	else
		fuse_reply_write(req, (size_t)n);
}

static void fs_op_opendir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct stat st;
	int rc = tally_getattr(fs_of(req)->t, ino, &st);

	if (!rc && !S_ISDIR(st.st_mode))
		rc = -ENOTDIR;
	if (rc)
		reply_err(req, -rc);
	else
		fuse_reply_open(req, fi);
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, used;
	bool plus;
};

static int dir_add(void *arg, const char *name, const struct stat *st,
		   off_t next)
{
	struct dirbuf *d = arg;
	size_t n;

	if (d->plus) {
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		e.ino = st->st_ino;
		e.generation = 1;
		e.attr = *st;
		e.attr_timeout = fs_of(d->req)->attr_timeout;
		e.entry_timeout = fs_of(d->req)->entry_timeout;
		n = fuse_add_direntry_plus(d->req, d->buf + d->used,
					   d->size - d->used, name, &e, next);
	} else {
		n = fuse_add_direntry(d->req, d->buf + d->used,
				      d->size - d->used, name, st, next);
	}
	if (n > d->size - d->used)
		return 1;
	d->used += n;
	return 0;
}

/* the first reply of a listing with attributes, at most: see do_readdir() */
#define PLUS_FIRST (32u << 10)

/*
 * A listing's replies. The kernel asks with attributes (readdirplus) for
 * the first reply, then only when lookups in the directory came in
 * between (FUSE_CAP_READDIRPLUS_AUTO), and its buffer is the caller's:
 * glibc's is st_blksize, 1 MiB here. The first reply with attributes is
 * held to PLUS_FIRST (what glibc's default 32 KiB buffer takes, about
 * 200 entries): the whole directory with attributes made the kernel
 * build an inode and a dentry for every entry, and a cold listing of
 * 5,000 entries took 22-29 ms against 7-10 ms without (and 12 ms on
 * passthrough_ll, whose first reply is the same 32 KiB).
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       bool plus)
{
	struct dirbuf d = { .req = req, .size = size, .plus = plus };
	int rc;

	if (plus && off == 0 && d.size > PLUS_FIRST)
		d.size = PLUS_FIRST;

	d.buf = malloc(size ? size : 1);
	if (!d.buf) {
		reply_err(req, ENOMEM);
		return;
	}
	rc = tally_readdir(fs_of(req)->t, ino, off, plus, dir_add, &d);
	if (rc)
		reply_err(req, -rc);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
			  off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			      off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino,
			     struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	reply_err(req, 0);
}

static void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			   struct fuse_file_info *fi)
{
	(void)fi;
	reply_err(req, -tally_fsync(fs_of(req)->t, ino, datasync != 0));
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int rc;

	(void)ino;
	rc = tally_statfs(fs_of(req)->t, &sv);
	if (rc)
		reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &sv);
}

static void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			   const char *value, size_t size, int flags)
{
	unsigned n = 0;
	int rc;

	do
		rc = tally_setxattr(fs_of(req)->t, ino, name, value, size,
				    flags);
	while (tally_retry(fs_of(req)->t, &rc, &n));
	reply_err(req, -rc);
}

static void reply_xattr(fuse_req_t req, ssize_t n, const char *buf, size_t size)
{
	if (n < 0)
		reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			   size_t size)
{
	char *buf = malloc(size ? size : 1);
	ssize_t n;

	if (!buf) {
		reply_err(req, ENOMEM);
		return;
	}
	n = tally_getxattr(fs_of(req)->t, ino, name, buf, size);
	reply_xattr(req, n, buf, size);
	free(buf);
}

static void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = malloc(size ? size : 1);
	ssize_t n;

	if (!buf) {
		reply_err(req, ENOMEM);
		return;
	}
	n = tally_listxattr(fs_of(req)->t, ino, buf, size);
	reply_xattr(req, n, buf, size);
	free(buf);
}

static void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	unsigned n = 0;
	int rc;

	do
		rc = tally_removexattr(fs_of(req)->t, ino, name);
	while (tally_retry(fs_of(req)->t, &rc, &n));
	reply_err(req, -rc);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_op_init,
	.destroy = fs_op_destroy,
	.lookup = fs_op_lookup,
	.forget = fs_op_forget,
	.forget_multi = fs_op_forget_multi,
	.getattr = fs_op_getattr,
	.access = fs_op_access,
	.setattr = fs_op_setattr,
	.readlink = fs_op_readlink,
	.mknod = fs_op_mknod,
	.mkdir = fs_op_mkdir,
	.symlink = fs_op_symlink,
	.unlink = fs_op_unlink,
	.rmdir = fs_op_rmdir,
	.rename = fs_op_rename,
	.link = fs_op_link,
	.open = fs_op_open,
	.create = fs_op_create,
	.read = fs_op_read,
	.write = fs_op_write,
	.flush = fs_op_flush,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.fsyncdir = fs_op_fsyncdir,
	.statfs = fs_op_statfs,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
	.copy_file_range = fs_op_copy_file_range,
};
