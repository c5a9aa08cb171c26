/* SPDX-License-Identifier: MIT */
/*
 * The FUSE front end: state shared by fs/main.c and fs/ops.c.
 */
#ifndef TALLY_FS_H
#define TALLY_FS_H

#include <fuse_lowlevel.h>

struct tally;

struct fs {
	struct tally *t;
	double entry_timeout;
	double attr_timeout;
};

extern const struct fuse_lowlevel_ops fs_ops;

#endif
