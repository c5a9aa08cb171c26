/* SPDX-License-Identifier: MIT */
/*
 * The timing of requests: fs_ops_timed() gives the table of fs/ops.c with
 * each request callback wrapped. A wrapper reads the clock, runs the
 * callback, which replies before it returns (every fs_op_* replies once,
 * on its own thread), and records the time and the errno of the reply
 * in the mount's histograms (core/util/metrics.h): two clock reads, two or
 * three relaxed atomic adds, no lock.
 */
#include "fs/fs.h"

#include "core/util/metrics.h"

_Thread_local int fs_reply_errno;

/*
 * timed_OP: fs_ops.OP between two clock reads. @fs is read before the
 * callback: once it replied, the request is gone (forget frees it with
 * its fuse_reply_none()).
 */
#define TIMED(op, kind, params, ...)                                    \
	static void timed_##op params                                   \
	{                                                               \
		struct fs *fs = fuse_req_userdata(req);                 \
		int64_t t0 = metrics_clock();                           \
                                                                        \
		fs_reply_errno = 0;                                     \
		fs_ops.op(__VA_ARGS__);                                 \
		metrics_op_done(fs->metrics, kind, t0, fs_reply_errno); \
	}

TIMED(lookup, METRICS_OP_LOOKUP,
      (fuse_req_t req, fuse_ino_t parent, const char *name), req, parent, name)
TIMED(forget, METRICS_OP_FORGET,
      (fuse_req_t req, fuse_ino_t ino, uint64_t nlookup), req, ino, nlookup)
TIMED(forget_multi, METRICS_OP_BATCH_FORGET,
      (fuse_req_t req, size_t count, struct fuse_forget_data *forgets), req,
      count, forgets)
TIMED(getattr, METRICS_OP_GETATTR,
      (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), req, ino, fi)
TIMED(access, METRICS_OP_ACCESS, (fuse_req_t req, fuse_ino_t ino, int mask),
      req, ino, mask)
TIMED(setattr, METRICS_OP_SETATTR,
      (fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
       struct fuse_file_info *fi),
      req, ino, attr, to_set, fi)
TIMED(readlink, METRICS_OP_READLINK, (fuse_req_t req, fuse_ino_t ino), req, ino)
TIMED(mknod, METRICS_OP_MKNOD,
      (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
       dev_t rdev),
      req, parent, name, mode, rdev)
TIMED(mkdir, METRICS_OP_MKDIR,
      (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode), req,
      parent, name, mode)
TIMED(symlink, METRICS_OP_SYMLINK,
      (fuse_req_t req, const char *link, fuse_ino_t parent, const char *name),
      req, link, parent, name)
TIMED(unlink, METRICS_OP_UNLINK,
      (fuse_req_t req, fuse_ino_t parent, const char *name), req, parent, name)
TIMED(rmdir, METRICS_OP_RMDIR,
      (fuse_req_t req, fuse_ino_t parent, const char *name), req, parent, name)
TIMED(rename, METRICS_OP_RENAME,
      (fuse_req_t req, fuse_ino_t parent, const char *name,
       fuse_ino_t newparent, const char *newname, unsigned int flags),
      req, parent, name, newparent, newname, flags)
TIMED(link, METRICS_OP_LINK,
      (fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
       const char *newname),
      req, ino, newparent, newname)
TIMED(open, METRICS_OP_OPEN,
      (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), req, ino, fi)
TIMED(create, METRICS_OP_CREATE,
      (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
       struct fuse_file_info *fi),
      req, parent, name, mode, fi)
TIMED(read, METRICS_OP_READ,
      (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
       struct fuse_file_info *fi),
      req, ino, size, off, fi)
TIMED(write, METRICS_OP_WRITE,
      (fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
       struct fuse_file_info *fi),
      req, ino, buf, size, off, fi)
TIMED(flush, METRICS_OP_FLUSH,
      (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), req, ino, fi)
TIMED(release, METRICS_OP_RELEASE,
      (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), req, ino, fi)
TIMED(fsync, METRICS_OP_FSYNC,
      (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi),
      req, ino, datasync, fi)
TIMED(opendir, METRICS_OP_OPENDIR,
      (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), req, ino, fi)
TIMED(readdir, METRICS_OP_READDIR,
      (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
       struct fuse_file_info *fi),
      req, ino, size, off, fi)
TIMED(readdirplus, METRICS_OP_READDIRPLUS,
      (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
       struct fuse_file_info *fi),
      req, ino, size, off, fi)
TIMED(releasedir, METRICS_OP_RELEASEDIR,
      (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), req, ino, fi)
TIMED(fsyncdir, METRICS_OP_FSYNCDIR,
      (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi),
      req, ino, datasync, fi)
TIMED(statfs, METRICS_OP_STATFS, (fuse_req_t req, fuse_ino_t ino), req, ino)
TIMED(setxattr, METRICS_OP_SETXATTR,
      (fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
       size_t size, int flags),
      req, ino, name, value, size, flags)
TIMED(getxattr, METRICS_OP_GETXATTR,
      (fuse_req_t req, fuse_ino_t ino, const char *name, size_t size), req, ino,
      name, size)
TIMED(listxattr, METRICS_OP_LISTXATTR,
      (fuse_req_t req, fuse_ino_t ino, size_t size), req, ino, size)
TIMED(removexattr, METRICS_OP_REMOVEXATTR,
      (fuse_req_t req, fuse_ino_t ino, const char *name), req, ino, name)
TIMED(copy_file_range, METRICS_OP_COPY_FILE_RANGE,
      (fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
       struct fuse_file_info *fi_out, size_t len, int flags),
      req, ino_in, off_in, fi_in, ino_out, off_out, fi_out, len, flags)

void fs_ops_timed(struct fuse_lowlevel_ops *ops)
{
	*ops = fs_ops;
	ops->lookup = timed_lookup;
	ops->forget = timed_forget;
	ops->forget_multi = timed_forget_multi;
	ops->getattr = timed_getattr;
	ops->access = timed_access;
	ops->setattr = timed_setattr;
	ops->readlink = timed_readlink;
	ops->mknod = timed_mknod;
	ops->mkdir = timed_mkdir;
	ops->symlink = timed_symlink;
	ops->unlink = timed_unlink;
	ops->rmdir = timed_rmdir;
	ops->rename = timed_rename;
	ops->link = timed_link;
	ops->open = timed_open;
	ops->create = timed_create;
	ops->read = timed_read;
	ops->write = timed_write;
	ops->flush = timed_flush;
	ops->release = timed_release;
	ops->fsync = timed_fsync;
	ops->opendir = timed_opendir;
	ops->readdir = timed_readdir;
	ops->readdirplus = timed_readdirplus;
	ops->releasedir = timed_releasedir;
	ops->fsyncdir = timed_fsyncdir;
	ops->statfs = timed_statfs;
	ops->setxattr = timed_setxattr;
	ops->getxattr = timed_getxattr;
	ops->listxattr = timed_listxattr;
	ops->removexattr = timed_removexattr;
	ops->copy_file_range = timed_copy_file_range;
}
