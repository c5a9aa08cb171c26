/* SPDX-License-Identifier: MIT */
/*
 * plfs: a power-loss simulator for the tests. A FUSE passthrough
 * filesystem over a backing directory that holds back what a disk would
 * lose when the power goes: file data and sizes until the file is fsync'ed,
 * directory entries until they are made durable; on command it drops all
 * that, and the backing directory is left holding exactly what had been
 * made durable.
 *
 * USAGE
 *
 *   plfs [-f] [-d] [-o FUSE options] BACKING_DIR MOUNTPOINT
 *
 * The FUSE loop is single-threaded (-s is always added). Unmounting is a
 * clean shutdown: everything pending is written and made durable first.
 * Killing the daemon leaves the backing directory with every directory
 * operation applied but no unsynced data: use the commands below instead.
 *
 * COMMANDS
 *
 * The control file /.plfs_ctl at the mount root (found by name, not listed
 * by readdir) takes one command per write:
 *   powerloss   drop what is not durable (below); the mount starts a new
 *               life
 *   sync        make everything durable, as a sync(2) would on a real disk
 * Reading it gives a status, one "key value" per line: life (power losses
 * so far), unsynced_files, unsynced_bytes (whole 4 KiB pages held in
 * memory), pending_ops (directory operations not yet durable), undo_errors.
 * SIGUSR1 does what "powerloss" does.
 *
 *   echo powerloss > MNT/.plfs_ctl; cat MNT/.plfs_ctl
 *
 * WHAT SURVIVES A POWER LOSS
 *
 *  1. File data and size changes (write, truncate, O_TRUNC, fallocate
 *     extending the size) stay in memory, merged over the backing file for
 *     reads and stat, until fsync or fdatasync of that file writes them to
 *     the backing file and syncs it. close and the FUSE flush make nothing
 *     durable.
 *  2. create, mknod, mkdir, symlink, link, unlink, rmdir and rename are
 *     applied to the backing directory at once and journaled. An operation
 *     becomes durable when a directory it changed is fsync'ed (fsyncdir),
 *     or when the file it created or renamed into place is fsync'ed (as
 *     ext4 data=ordered commits the entry of a file fsync'ed in it); then
 *     so do the earlier pending operations on the same name or below it
 *     (undoing them around a durable one would not be consistent).
 *     Nothing else: a file fsync'ed in a directory that is itself new and
 *     never fsync'ed is lost with that directory.
 *  3. A power loss drops every unsynced extent and size change, then undoes
 *     the pending directory operations newest first. Files removed or
 *     replaced by a pending operation wait in BACKING_DIR/.plfs_trash (never
 *     visible through the mount) to be put back; a mkdir undone takes what
 *     is below it along.
 *  4. syncfs(2) and sync(2) never reach a FUSE daemon: on a plfs mount they
 *     make nothing durable. That is the hazard this tool exists to show; a
 *     program that relies on syncfs must be tested against it.
 *  5. Not modelled, durable at once: chmod, chown, utimens, xattrs (and the
 *     backing file's mtime moves when its data is written at fsync).
 *
 * After a power loss the mount keeps working: new opens see the new state.
 * Handles opened before it (files and directories) are stale and fail with
 * EIO, as the processes holding them would be gone; only their close works.
 *
 * LIMITS
 *
 * The high-level libfuse API runs with hard_remove: a file unlinked while
 * open is gone from libfuse's name table, so fstat(2) of it fails with
 * ESTALE; its reads, writes and fsync still work. Unsynced data of every
 * file is held in memory (whole 4 KiB pages) with one fd per such file.
 * fallocate is honoured for mode 0 only (EOPNOTSUPP otherwise); lseek
 * SEEK_DATA/SEEK_HOLE, copy_file_range and POSIX locks are left to the
 * kernel's generic code.
 *
 * KERNEL CACHES
 *
 * Files are opened with direct_io and entries, attributes and negative
 * lookups have zero timeouts, so the kernel caches nothing that a power
 * loss could leave stale: every read, stat and lookup comes here. Shared
 * writable mmap is therefore refused (SQLite in WAL mode with
 * locking_mode=EXCLUSIVE does not need it).
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#define PAGE_SIZE_PLFS 4096
#define PFILE_BUCKETS 4096
#define TRASH_NAME ".plfs_trash"
#define CTL_NAME ".plfs_ctl"

/* One page of unsynced data: the whole page as the mount sees it. */
struct page {
	uint64_t idx;
	char data[PAGE_SIZE_PLFS];
};

/*
 * The unsynced state of one backing inode. Invariants: low <= size;
 * bytes of the backing file at or past min(low, backing) read as zeros;
 * bytes of a page at or past size are zeros.
 */
struct pfile {
	dev_t dev;
	ino_t ino;
	off_t size;	    /* the size seen through the mount */
	off_t low;	    /* lowest size since the last sync */
	off_t backing;	    /* the size of the backing file */
	int fd;		    /* the backing inode, open for writing */
	struct page **slot; /* open addressing on idx */
	size_t cap;
	size_t npages;
	struct pfile *next; /* hash chain */
};

enum jop_kind {
	JOP_CREATE,
	JOP_UNLINK,
	JOP_RMDIR,
	JOP_RENAME,
	JOP_EXCHANGE,
};

/*
 * One pending directory operation. path[0] is the name created or removed
 * or the rename source, path[1] the rename target; dir[] their parents'
 * inodes; ino[] the inodes that the operation put at path[0] (create) or
 * path[1] (rename), and at path[0] for an exchange.
 */
struct jop {
	enum jop_kind kind;
	char *path[2];
	ino_t dir[2];
	ino_t ino[2];
	unsigned long trash; /* trash/<n> holds what was removed; 0: none */
	bool isdir;	     /* create: a directory */
	bool replaced_dir;   /* rename: replaced the empty directory old */
	bool durable;	     /* set by jop_make_durable, then freed */
	struct stat old;     /* rmdir, replaced_dir: to recreate it */
	struct jop *prev;
	struct jop *next;
};

struct fh {
	int fd;	       /* -1 for the control file */
	uint64_t life; /* g.life when opened: stale after a power loss */
	bool append;   /* O_APPEND: write at the size seen by the mount */
	bool sync;     /* O_SYNC or O_DSYNC: every write is synced */
	bool datasync; /* O_DSYNC alone */
	bool root;     /* the root directory: hide the trash */
	DIR *dir;      /* a directory handle */
};

struct plfs {
	char *backing_path;
	int rootfd;
	int trashfd;
	uint64_t life;
	unsigned long trash_seq;
	unsigned long undo_errors;
	struct pfile *pfiles[PFILE_BUCKETS];
	size_t nfiles;
	size_t npages;
	struct jop *head; /* oldest */
	struct jop *tail; /* newest */
	size_t nops;
	char *ctl_path; /* the control file, for the SIGUSR1 thread */
};

static struct plfs g = {
	.rootfd = -1,
	.trashfd = -1,
};

/* ------------------------------------------------------------ paths */

/* The backing path relative to rootfd of a mount path ("/" is "."). */
static const char *rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

static bool is_trash(const char *path)
{
	size_t n = strlen(TRASH_NAME);

	path = rel(path);
	return strncmp(path, TRASH_NAME, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

static bool is_ctl(const char *path)
{
	return path && strcmp(rel(path), CTL_NAME) == 0;
}

static bool is_special(const char *path)
{
	return path && (is_trash(path) || is_ctl(path));
}

/* The inode of the directory holding @r, 0 when it cannot be read. */
static ino_t parent_ino(const char *r)
{
	const char *slash = strrchr(r, '/');
	char *dir;
	struct stat st;
	int rc;

	if (!slash)
		return fstatat(g.rootfd, ".", &st, 0) ? 0 : st.st_ino;
	dir = strndup(r, (size_t)(slash - r));
	if (!dir)
		return 0;
	rc = fstatat(g.rootfd, dir, &st, 0);
	free(dir);
	return rc ? 0 : st.st_ino;
}

/* The inode at @r (not followed), 0 when there is none. */
static ino_t ino_at(const char *r)
{
	struct stat st;

	return fstatat(g.rootfd, r, &st, AT_SYMLINK_NOFOLLOW) ? 0 : st.st_ino;
}

/* ------------------------------------------------------------ pages */

static size_t page_hash(uint64_t idx, size_t cap)
{
	return (size_t)((idx * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

static struct page *pf_page_find(struct pfile *pf, uint64_t idx)
{
	size_t i;

	if (!pf->cap)
		return NULL;
	for (i = page_hash(idx, pf->cap); pf->slot[i];
	     i = (i + 1) & (pf->cap - 1))
		if (pf->slot[i]->idx == idx)
			return pf->slot[i];
	return NULL;
}

static void pf_slot_put(struct page **slot, size_t cap, struct page *p)
{
	size_t i;

	for (i = page_hash(p->idx, cap); slot[i]; i = (i + 1) & (cap - 1))
		;
	slot[i] = p;
}

static int pf_page_insert(struct pfile *pf, struct page *p)
{
	struct page **slot;
	size_t cap, i;

	if ((pf->npages + 1) * 2 > pf->cap) {
		cap = pf->cap ? pf->cap * 2 : 64;
		slot = calloc(cap, sizeof(*slot));
		if (!slot)
			return -ENOMEM;
		for (i = 0; i < pf->cap; i++)
			if (pf->slot[i])
				pf_slot_put(slot, cap, pf->slot[i]);
		free(pf->slot);
		pf->slot = slot;
		pf->cap = cap;
	}
	pf_slot_put(pf->slot, pf->cap, p);
	pf->npages++;
	g.npages++;
	return 0;
}

/* Drop the pages at or past page index @from (all of them for 0). */
static int pf_pages_drop_from(struct pfile *pf, uint64_t from)
{
	struct page **slot = NULL;
	size_t i, kept = 0;

	if (pf->cap) {
		slot = calloc(pf->cap, sizeof(*slot));
		if (!slot && from)
			return -ENOMEM;
	}
	for (i = 0; i < pf->cap; i++) {
		struct page *p = pf->slot[i];

		if (!p)
			continue;
		if (p->idx >= from || !slot) {
			free(p);
			g.npages--;
		} else {
			pf_slot_put(slot, pf->cap, p);
			kept++;
		}
	}
	free(pf->slot);
	pf->slot = kept ? slot : NULL;
	if (!kept) {
		free(slot);
		pf->cap = 0;
	}
	pf->npages = kept;
	return 0;
}

/* ---------------------------------------------------------- pfiles */

static struct pfile **pf_bucket(dev_t dev, ino_t ino)
{
	uint64_t h =
		((uint64_t)ino ^ ((uint64_t)dev << 32)) * 0x9e3779b97f4a7c15ull;

	return &g.pfiles[(h >> 40) % PFILE_BUCKETS];
}

static struct pfile *pf_find(dev_t dev, ino_t ino)
{
	struct pfile *pf;

	for (pf = *pf_bucket(dev, ino); pf; pf = pf->next)
		if (pf->dev == dev && pf->ino == ino)
			return pf;
	return NULL;
}

/* The unsynced state of the file open as @fd, created clean if none. */
static int pf_get(int fd, struct pfile **out)
{
	struct pfile *pf, **b;
	struct stat st;
	char proc[64];
	int rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	pf = pf_find(st.st_dev, st.st_ino);
	if (!pf) {
		pf = calloc(1, sizeof(*pf));
		if (!pf)
			return -ENOMEM;
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		pf->fd = open(proc, O_RDWR | O_CLOEXEC);
		if (pf->fd < 0) {
			rc = -errno;
			free(pf);
			return rc;
		}
		pf->dev = st.st_dev;
		pf->ino = st.st_ino;
		pf->size = pf->low = pf->backing = st.st_size;
		b = pf_bucket(pf->dev, pf->ino);
		pf->next = *b;
		*b = pf;
		g.nfiles++;
	}
	*out = pf;
	return 0;
}

static void pf_free(struct pfile *pf)
{
	struct pfile **pp = pf_bucket(pf->dev, pf->ino);

	while (*pp != pf)
		pp = &(*pp)->next;
	*pp = pf->next;
	pf_pages_drop_from(pf, 0);
	close(pf->fd);
	free(pf);
	g.nfiles--;
}

/* Read the backing file as the mount sees it under @pf's pages. */
static int pf_backing_read(struct pfile *pf, char *buf, size_t len, off_t off)
{
	off_t valid = pf->low < pf->backing ? pf->low : pf->backing;
	size_t done = 0;
	ssize_t n;

	while (done < len && off + (off_t)done < valid) {
		size_t want = len - done;

		if ((off_t)want > valid - off - (off_t)done)
			want = (size_t)(valid - off - (off_t)done);
		n = pread(pf->fd, buf + done, want, off + (off_t)done);
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	memset(buf + done, 0, len - done);
	return 0;
}

/*
 * The page holding offset @at (*idx) and where in it (*in): how many of
 * @left bytes from @at it holds.
 */
static size_t page_span(off_t at, size_t left, uint64_t *idx, size_t *in)
{
	size_t n;

	*idx = (uint64_t)at / PAGE_SIZE_PLFS;
	*in = (size_t)((uint64_t)at % PAGE_SIZE_PLFS);
	n = PAGE_SIZE_PLFS - *in;
	return n < left ? n : left;
}

static int pf_write(struct pfile *pf, const char *buf, size_t len, off_t off)
{
	size_t done = 0;
	int rc;

	while (done < len) {
		uint64_t idx;
		size_t in,
			n = page_span(off + (off_t)done, len - done, &idx, &in);
		struct page *p = pf_page_find(pf, idx);

		if (!p) {
			p = malloc(sizeof(*p));
			if (!p)
				return -ENOMEM;
			p->idx = idx;
			rc = pf_backing_read(pf, p->data, PAGE_SIZE_PLFS,
					     (off_t)(idx * PAGE_SIZE_PLFS));
			if (!rc)
				rc = pf_page_insert(pf, p);
			if (rc) {
				free(p);
				return rc;
			}
		}
		memcpy(p->data + in, buf + done, n);
		done += n;
	}
	if (off + (off_t)len > pf->size)
		pf->size = off + (off_t)len;
	return 0;
}

static ssize_t pf_read(struct pfile *pf, char *buf, size_t len, off_t off)
{
	size_t done = 0;
	int rc;

	if (off >= pf->size)
		return 0;
	if ((off_t)len > pf->size - off)
		len = (size_t)(pf->size - off);
	while (done < len) {
		uint64_t idx;
		size_t in,
			n = page_span(off + (off_t)done, len - done, &idx, &in);
		struct page *p = pf_page_find(pf, idx);

		if (p) {
			memcpy(buf + done, p->data + in, n);
			done += n;
			continue;
		}
		/* a run of pages that are not held: one read */
		while (done + n < len &&
		       !pf_page_find(pf, (uint64_t)(off + (off_t)(done + n)) /
						 PAGE_SIZE_PLFS)) {
			n += PAGE_SIZE_PLFS;
			if (n > len - done)
				n = len - done;
		}
		rc = pf_backing_read(pf, buf + done, n, off + (off_t)done);
		if (rc)
			return rc;
		done += n;
	}
	return (ssize_t)len;
}

static int pf_truncate(struct pfile *pf, off_t size)
{
	uint64_t idx = (uint64_t)size / PAGE_SIZE_PLFS;
	size_t in = (size_t)((uint64_t)size % PAGE_SIZE_PLFS);
	struct page *p;
	int rc;

	if (size < pf->size) {
		rc = pf_pages_drop_from(pf, in ? idx + 1 : idx);
		if (rc)
			return rc;
		p = pf_page_find(pf, idx);
		if (p && in)
			memset(p->data + in, 0, PAGE_SIZE_PLFS - in);
		if (size < pf->low)
			pf->low = size;
	}
	pf->size = size;
	return 0;
}

/* Write @pf to the backing file and sync it; @pf is freed on success. */
static int pf_sync(struct pfile *pf, bool datasync)
{
	int fd = pf->fd;
	size_t i;
	int rc;

	if (pf->low < pf->backing) {
		if (ftruncate(fd, pf->low) < 0)
			return -errno;
		pf->backing = pf->low;
	}
	for (i = 0; i < pf->cap; i++) {
		struct page *p = pf->slot[i];
		off_t at;
		size_t n = PAGE_SIZE_PLFS;

		if (!p)
			continue;
		at = (off_t)(p->idx * PAGE_SIZE_PLFS);
		if (at >= pf->size)
			continue;
		if ((off_t)n > pf->size - at)
			n = (size_t)(pf->size - at);
		if (pwrite(fd, p->data, n, at) != (ssize_t)n)
			return errno ? -errno : -EIO;
		if (at + (off_t)n > pf->backing)
			pf->backing = at + (off_t)n;
	}
	if (pf->backing != pf->size && ftruncate(fd, pf->size) < 0)
		return -errno;
	pf->backing = pf->low = pf->size;
	rc = datasync ? fdatasync(fd) : fsync(fd);
	if (rc < 0)
		return -errno;
	pf_free(pf);
	return 0;
}

/* Sync the file open as @fd, with its unsynced state if any. */
static int pf_sync_fd(int fd, bool datasync)
{
	struct pfile *pf;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	pf = S_ISREG(st.st_mode) ? pf_find(st.st_dev, st.st_ino) : NULL;
	if (pf)
		return pf_sync(pf, datasync);
	return (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
}

/* --------------------------------------------------------- journal */

/* Earlier operation @y touches a name of @x or something below it. */
static bool jop_related(const struct jop *x, const struct jop *y)
{
	int i, j;

	for (i = 0; i < 2 && x->path[i]; i++) {
		size_t n = strlen(x->path[i]);

		for (j = 0; j < 2 && y->path[j]; j++)
			if (strncmp(y->path[j], x->path[i], n) == 0 &&
			    (y->path[j][n] == '\0' || y->path[j][n] == '/'))
				return true;
	}
	return false;
}

static void jop_free(struct jop *op)
{
	free(op->path[0]);
	free(op->path[1]);
	free(op);
}

static void jop_unlink(struct jop *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else
		g.head = op->next;
	if (op->next)
		op->next->prev = op->prev;
	else
		g.tail = op->prev;
	g.nops--;
}

static void trash_name(unsigned long n, char *buf, size_t len)
{
	snprintf(buf, len, "%lu", n);
}

/* Mark @op durable, with the earlier operations it depends on. */
static void jop_mark(struct jop *op)
{
	struct jop *x, *y;
	bool again = true;

	op->durable = true;
	/* a fixpoint over the (short) pending journal */
	while (again) {
		again = false;
		for (x = op; x; x = x->prev) {
			if (!x->durable)
				continue;
			for (y = x->prev; y; y = y->prev)
				if (!y->durable && jop_related(x, y)) {
					y->durable = true;
					again = true;
				}
		}
	}
}

/* Forget the operations marked durable, and what their trash held. */
static void jop_sweep(void)
{
	struct jop *op, *next;
	char name[32];

	for (op = g.head; op; op = next) {
		next = op->next;
		if (!op->durable)
			continue;
		if (op->trash) {
			trash_name(op->trash, name, sizeof(name));
			unlinkat(g.trashfd, name, 0);
		}
		jop_unlink(op);
		jop_free(op);
	}
}

static int jop_add(enum jop_kind kind, const char *p0, const char *p1,
		   struct jop **out)
{
	struct jop *op = calloc(1, sizeof(*op));

	if (!op)
		return -ENOMEM;
	op->kind = kind;
	op->path[0] = strdup(p0);
	op->path[1] = p1 ? strdup(p1) : NULL;
	if (!op->path[0] || (p1 && !op->path[1])) {
		jop_free(op);
		return -ENOMEM;
	}
	op->dir[0] = parent_ino(p0);
	op->dir[1] = p1 ? parent_ino(p1) : 0;
	op->prev = g.tail;
	if (g.tail)
		g.tail->next = op;
	else
		g.head = op;
	g.tail = op;
	g.nops++;
	if (out)
		*out = op;
	return 0;
}

/* Journal the creation of @r (already done). */
static void jop_created(const char *r)
{
	struct jop *op;
	struct stat st;

	if (fstatat(g.rootfd, r, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (jop_add(JOP_CREATE, r, NULL, &op))
		return;
	op->ino[0] = st.st_ino;
	op->isdir = S_ISDIR(st.st_mode);
}

/* fsync of the inode @ino: its own entries become durable. */
static void jop_fsync_ino(ino_t ino)
{
	struct jop *op;
	bool any = false;

	for (op = g.head; op; op = op->next)
		if (op->ino[0] == ino || op->ino[1] == ino) {
			jop_mark(op);
			any = true;
		}
	if (any)
		jop_sweep();
}

/* fsyncdir of the directory @ino: every operation in it is durable. */
static void jop_fsync_dir(ino_t ino)
{
	struct jop *op;
	bool any = false;

	for (op = g.head; op; op = op->next)
		if (op->dir[0] == ino || (op->path[1] && op->dir[1] == ino)) {
			jop_mark(op);
			any = true;
		}
	if (any)
		jop_sweep();
}

static void jop_all_durable(void)
{
	struct jop *op;

	for (op = g.head; op; op = op->next)
		op->durable = true;
	jop_sweep();
}

static int remove_tree(int at, const char *name);

/* Remove everything in the directory open as @fd, which is taken over. */
static int empty_dir(int fd)
{
	struct dirent *de;
	int rc = 0;
	DIR *d;

	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			if (remove_tree(dirfd(d), de->d_name) && !rc)
				rc = -EIO;
	closedir(d);
	return rc;
}

/* Remove @name under @at and everything below it. */
static int remove_tree(int at, const char *name)
{
	int fd, rc;

	if (unlinkat(at, name, 0) == 0)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	rc = empty_dir(fd);
	if (unlinkat(at, name, AT_REMOVEDIR) < 0 && !rc)
		rc = -errno;
	return rc;
}

static int recreate_dir(const char *r, const struct stat *st)
{
	int flags = AT_SYMLINK_NOFOLLOW;

	if (mkdirat(g.rootfd, r, st->st_mode & 07777) < 0)
		return -errno;
	if (fchownat(g.rootfd, r, st->st_uid, st->st_gid, flags) < 0)
		return -errno;
	return 0;
}

static int jop_undo(struct jop *op)
{
	char name[32];
	int rc = 0;

	trash_name(op->trash, name, sizeof(name));
	switch (op->kind) {
	case JOP_CREATE:
		if (op->isdir)
			rc = remove_tree(g.rootfd, op->path[0]);
		else if (unlinkat(g.rootfd, op->path[0], 0) < 0)
			rc = -errno;
		break;
	case JOP_UNLINK:
		if (renameat(g.trashfd, name, g.rootfd, op->path[0]) < 0)
			rc = -errno;
		break;
	case JOP_RMDIR:
		rc = recreate_dir(op->path[0], &op->old);
		break;
	case JOP_RENAME:
		if (renameat(g.rootfd, op->path[1], g.rootfd, op->path[0]) < 0)
			rc = -errno;
		else if (op->trash &&
			 renameat(g.trashfd, name, g.rootfd, op->path[1]) < 0)
			rc = -errno;
		else if (op->replaced_dir)
			rc = recreate_dir(op->path[1], &op->old);
		break;
	case JOP_EXCHANGE:
		if (renameat2(g.rootfd, op->path[0], g.rootfd, op->path[1],
			      RENAME_EXCHANGE) < 0)
			rc = -errno;
		break;
	}
	return rc;
}

/* ------------------------------------------------------------ power */

static void plfs_powerloss(void)
{
	struct jop *op;
	size_t i;
	int rc;

	for (i = 0; i < PFILE_BUCKETS; i++)
		while (g.pfiles[i])
			pf_free(g.pfiles[i]);
	while ((op = g.tail)) {
		rc = jop_undo(op);
		if (rc) {
			fprintf(stderr,
				"plfs: cannot undo an operation on '%s': %s\n",
				op->path[op->path[1] ? 1 : 0], strerror(-rc));
			g.undo_errors++;
		}
		jop_unlink(op);
		jop_free(op);
	}
	g.life++;
}

/* Make everything durable; the first error is returned. */
static int plfs_sync_all(void)
{
	size_t i;
	int rc = 0, r;

	for (i = 0; i < PFILE_BUCKETS; i++) {
		struct pfile *pf = g.pfiles[i], *next;

		for (; pf; pf = next) {
			next = pf->next;
			r = pf_sync(pf, false);
			if (r && !rc)
				rc = r;
		}
	}
	jop_all_durable();
	if (syncfs(g.rootfd) < 0 && !rc)
		rc = -errno;
	return rc;
}

static int ctl_command(const char *buf, size_t len)
{
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		len--;
	if (len == 9 && memcmp(buf, "powerloss", 9) == 0) {
		plfs_powerloss();
		return 0;
	}
	if (len == 4 && memcmp(buf, "sync", 4) == 0)
		return plfs_sync_all();
	return -EINVAL;
}

static int ctl_status(char *buf, size_t len)
{
	return snprintf(buf, len,
			"life %" PRIu64 "\n"
			"unsynced_files %zu\n"
			"unsynced_bytes %zu\n"
			"pending_ops %zu\n"
			"undo_errors %lu\n",
			g.life, g.nfiles, g.npages * PAGE_SIZE_PLFS, g.nops,
			g.undo_errors);
}

/* ------------------------------------------------------- operations */

static struct fh *fh_of(const struct fuse_file_info *fi)
{
	return fi ? (struct fh *)(uintptr_t)fi->fh : NULL;
}

/* The handle of @fi if it is a live file or directory handle, else NULL. */
static int fh_live(const struct fuse_file_info *fi, struct fh **out)
{
	struct fh *fh = fh_of(fi);

	*out = NULL;
	if (!fh || fh->fd < 0)
		return 0;
	if (fh->life != g.life)
		return -EIO;
	*out = fh;
	return 0;
}

/*
 * What an attribute operation acts on: 1 for the control file, else 0 with
 * *fd a live handle's fd, or -1 and *r the backing path.
 */
static int target(const char *path, struct fuse_file_info *fi, int *fd,
		  const char **r)
{
	struct fh *fh;
	int rc;

	*fd = -1;
	*r = NULL;
	if (is_ctl(path) || (fh_of(fi) && fh_of(fi)->fd < 0))
		return 1;
	if (path && is_trash(path))
		return -ENOENT;
	rc = fh_live(fi, &fh);
	if (rc)
		return rc;
	if (fh)
		*fd = fh->fd;
	else if (path)
		*r = rel(path);
	else
		return -EBADF;
	return 0;
}

/* The live handle of @fi, which must be a file or directory handle. */
static int fh_need(const struct fuse_file_info *fi, struct fh **out)
{
	int rc = fh_live(fi, out);

	if (!rc && !*out)
		rc = -EBADF;
	return rc;
}

static void *plfs_sigusr1(void *arg)
{
	sigset_t set;
	int sig, fd;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	/* through the control file: the FUSE loop serialises it */
	while (sigwait(&set, &sig) == 0) {
		fd = open(g.ctl_path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (write(fd, "powerloss\n", 10) < 0)
			perror("plfs: powerloss on SIGUSR1");
		close(fd);
	}
	return NULL;
}

static void *plfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	pthread_t t;

	(void)conn;
	cfg->use_ino = 1;
	cfg->readdir_ino = 1;
	cfg->entry_timeout = 0;
	cfg->attr_timeout = 0;
	cfg->negative_timeout = 0;
	cfg->direct_io = 1;
	cfg->kernel_cache = 0;
	cfg->auto_cache = 0;
	cfg->hard_remove = 1;
	cfg->nullpath_ok = 1;
	if (pthread_create(&t, NULL, plfs_sigusr1, NULL) == 0)
		pthread_detach(t);
	else
		fprintf(stderr, "plfs: no SIGUSR1 thread\n");
	return NULL;
}

static void plfs_destroy(void *data)
{
	int rc;

	(void)data;
	rc = plfs_sync_all();
	if (rc)
		fprintf(stderr, "plfs: sync at unmount failed: %s\n",
			strerror(-rc));
	/* empty once everything is durable */
	unlinkat(g.rootfd, TRASH_NAME, AT_REMOVEDIR);
}

static int plfs_getattr(const char *path, struct stat *st,
			struct fuse_file_info *fi)
{
	struct pfile *pf;
	const char *r;
	int fd, rc;

	rc = target(path, fi, &fd, &r);
	if (rc > 0) {
		memset(st, 0, sizeof(*st));
		st->st_ino = (ino_t)-2;
		st->st_mode = S_IFREG | 0666;
		st->st_nlink = 1;
		st->st_uid = getuid();
		st->st_gid = getgid();
		return 0;
	}
	if (rc)
		return rc;
	if (fd >= 0)
		rc = fstat(fd, st);
	else
		rc = fstatat(g.rootfd, r, st, AT_SYMLINK_NOFOLLOW);
	if (rc < 0)
		return -errno;
	if (S_ISREG(st->st_mode) && (pf = pf_find(st->st_dev, st->st_ino))) {
		st->st_size = pf->size;
		st->st_blocks = (pf->size + 511) / 512;
	}
	return 0;
}

static int plfs_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n;

	if (is_special(path))
		return -ENOENT;
	if (size == 0)
		return -EINVAL;
	n = readlinkat(g.rootfd, rel(path), buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int plfs_mknod(const char *path, mode_t mode, dev_t rdev)
{
	if (is_special(path))
		return -EPERM;
	if (mknodat(g.rootfd, rel(path), mode, rdev) < 0)
		return -errno;
	jop_created(rel(path));
	return 0;
}

static int plfs_mkdir(const char *path, mode_t mode)
{
	if (is_special(path))
		return -EPERM;
	if (mkdirat(g.rootfd, rel(path), mode) < 0)
		return -errno;
	jop_created(rel(path));
	return 0;
}

static int plfs_symlink(const char *target, const char *path)
{
	if (is_special(path))
		return -EPERM;
	if (symlinkat(target, g.rootfd, rel(path)) < 0)
		return -errno;
	jop_created(rel(path));
	return 0;
}

static int plfs_link(const char *from, const char *to)
{
	if (is_special(from) || is_special(to))
		return -EPERM;
	if (linkat(g.rootfd, rel(from), g.rootfd, rel(to), 0) < 0)
		return -errno;
	jop_created(rel(to));
	return 0;
}

static int plfs_unlink(const char *path)
{
	const char *r = rel(path);
	unsigned long n;
	struct jop *op;
	struct stat st;
	char name[32];

	if (is_special(path))
		return -EPERM;
	if (fstatat(g.rootfd, r, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	/* kept aside in the trash until the unlink is durable */
	n = ++g.trash_seq;
	trash_name(n, name, sizeof(name));
	if (renameat(g.rootfd, r, g.trashfd, name) < 0)
		return -errno;
	if (jop_add(JOP_UNLINK, r, NULL, &op)) {
		unlinkat(g.trashfd, name, 0);
		return 0;
	}
	op->trash = n;
	return 0;
}

static int plfs_rmdir(const char *path)
{
	const char *r = rel(path);
	struct jop *op;
	struct stat st;

	if (is_special(path))
		return -EPERM;
	if (fstatat(g.rootfd, r, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (unlinkat(g.rootfd, r, AT_REMOVEDIR) < 0)
		return -errno;
	if (jop_add(JOP_RMDIR, r, NULL, &op) == 0)
		op->old = st;
	return 0;
}

static int plfs_rename(const char *from, const char *to, unsigned int flags)
{
	const char *rf = rel(from), *rt = rel(to);
	struct stat sf, st;
	bool have_to;
	unsigned long n = 0;
	struct jop *op;
	char name[32];

	if (is_special(from) || is_special(to))
		return -EPERM;
	if (flags & ~(unsigned int)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if (flags & RENAME_EXCHANGE) {
		if (renameat2(g.rootfd, rf, g.rootfd, rt, flags) < 0)
			return -errno;
		if (jop_add(JOP_EXCHANGE, rf, rt, &op) == 0) {
			op->ino[0] = ino_at(rf);
			op->ino[1] = ino_at(rt);
		}
		return 0;
	}
	if (fstatat(g.rootfd, rf, &sf, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	have_to = fstatat(g.rootfd, rt, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (have_to && sf.st_dev == st.st_dev && sf.st_ino == st.st_ino &&
	    !(flags & RENAME_NOREPLACE))
		return 0; /* two links of one file: rename does nothing */
	if (have_to && !(flags & RENAME_NOREPLACE) && !S_ISDIR(st.st_mode)) {
		/* the file replaced waits in the trash */
		n = ++g.trash_seq;
		trash_name(n, name, sizeof(name));
		if (linkat(g.rootfd, rt, g.trashfd, name, 0) < 0)
			return -errno;
	}
	if (renameat2(g.rootfd, rf, g.rootfd, rt, flags) < 0) {
		int rc = -errno;

		if (n)
			unlinkat(g.trashfd, name, 0);
		return rc;
	}
	if (jop_add(JOP_RENAME, rf, rt, &op)) {
		if (n)
			unlinkat(g.trashfd, name, 0);
		return 0;
	}
	op->trash = n;
	op->ino[1] = sf.st_ino;
	if (have_to && S_ISDIR(st.st_mode)) {
		op->replaced_dir = true;
		op->old = st;
	}
	return 0;
}

static int plfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	const char *r;
	int fd, rc;

	rc = target(path, fi, &fd, &r);
	if (rc)
		return rc > 0 ? -EPERM : rc;
	if (fd >= 0)
		rc = fchmod(fd, mode);
	else
		rc = fchmodat(g.rootfd, r, mode, 0);
	return rc < 0 ? -errno : 0;
}

static int plfs_chown(const char *path, uid_t uid, gid_t gid,
		      struct fuse_file_info *fi)
{
	const char *r;
	int fd, rc;

	rc = target(path, fi, &fd, &r);
	if (rc)
		return rc > 0 ? -EPERM : rc;
	if (fd >= 0)
		rc = fchown(fd, uid, gid);
	else
		rc = fchownat(g.rootfd, r, uid, gid, AT_SYMLINK_NOFOLLOW);
	return rc < 0 ? -errno : 0;
}

static int plfs_truncate(const char *path, off_t size,
			 struct fuse_file_info *fi)
{
	struct pfile *pf;
	const char *r;
	int fd, rc;

	rc = target(path, fi, &fd, &r);
	if (rc)
		return rc > 0 ? 0 : rc;
	if (r)
		fd = openat(g.rootfd, r, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = pf_get(fd, &pf);
	if (!rc)
		rc = pf_truncate(pf, size);
	if (r)
		close(fd);
	return rc;
}

static int plfs_utimens(const char *path, const struct timespec tv[2],
			struct fuse_file_info *fi)
{
	const char *r;
	int fd, rc;

	rc = target(path, fi, &fd, &r);
	if (rc)
		return rc > 0 ? 0 : rc;
	if (fd >= 0)
		rc = futimens(fd, tv);
	else
		rc = utimensat(g.rootfd, r, tv, AT_SYMLINK_NOFOLLOW);
	return rc < 0 ? -errno : 0;
}

/* Open @path (as create when @create), with @fi's flags held back. */
static int do_open(const char *path, struct fuse_file_info *fi, bool create,
		   mode_t mode)
{
	const char *r = rel(path);
	int flags = fi->flags, fd, rc;
	bool existed = true;
	struct pfile *pf;
	struct stat st;
	struct fh *fh;

	fh = calloc(1, sizeof(*fh));
	if (!fh)
		return -ENOMEM;
	fh->life = g.life;
	fh->fd = -1;
	if (is_ctl(path)) {
		fi->fh = (uintptr_t)fh;
		fi->direct_io = 1;
		fi->nonseekable = 0;
		return 0;
	}
	rc = -ENOENT;
	if (is_trash(path))
		goto out_free;
	if (create)
		existed = fstatat(g.rootfd, r, &st, AT_SYMLINK_NOFOLLOW) == 0;
	fd = openat(g.rootfd, r,
		    (flags & ~(O_TRUNC | O_APPEND | O_DIRECT | O_SYNC |
			       O_DSYNC | O_NOCTTY)) |
			    O_CLOEXEC,
		    mode);
	if (fd < 0) {
		rc = -errno;
		goto out_free;
	}
	fh->fd = fd;
	fh->append = flags & O_APPEND;
	fh->sync = flags & (O_SYNC | O_DSYNC);
	fh->datasync = (flags & O_SYNC) != O_SYNC;
	if (!existed)
		jop_created(r);
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
		rc = pf_get(fd, &pf);
		if (!rc)
			rc = pf_truncate(pf, 0);
		if (rc)
			goto out_close;
	}
	fi->fh = (uintptr_t)fh;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	return 0;

out_close:
	close(fd);
out_free:
	free(fh);
	return rc;
}

static int plfs_open(const char *path, struct fuse_file_info *fi)
{
	return do_open(path, fi, false, 0);
}

static int plfs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	if (is_special(path))
		return -EPERM;
	return do_open(path, fi, true, mode);
}

static int plfs_read(const char *path, char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	struct pfile *pf;
	struct stat st;
	char status[512];
	ssize_t n;
	int len, rc;

	(void)path;
	if (fh->fd < 0) {
		len = ctl_status(status, sizeof(status));
		if (off >= len)
			return 0;
		n = len - off < (off_t)size ? len - off : (off_t)size;
		memcpy(buf, status + off, (size_t)n);
		return (int)n;
	}
	rc = fh_live(fi, &fh);
	if (rc)
		return rc;
	if (size > INT_MAX)
		size = INT_MAX;
	if (fstat(fh->fd, &st) < 0)
		return -errno;
	pf = pf_find(st.st_dev, st.st_ino);
	if (pf)
		n = pf_read(pf, buf, size, off);
	else
		n = pread(fh->fd, buf, size, off);
	if (n < 0)
		return pf ? (int)n : -errno;
	return (int)n;
}

static int plfs_write(const char *path, const char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	struct pfile *pf;
	int rc;

	(void)path;
	if (size > INT_MAX)
		size = INT_MAX;
	if (fh->fd < 0) {
		rc = ctl_command(buf, size);
		return rc ? rc : (int)size;
	}
	rc = fh_live(fi, &fh);
	if (rc)
		return rc;
	rc = pf_get(fh->fd, &pf);
	if (rc)
		return rc;
	if (fh->append)
		off = pf->size;
	rc = pf_write(pf, buf, size, off);
	if (rc)
		return rc;
	if (fh->sync) {
		rc = pf_sync(pf, fh->datasync);
		if (rc)
			return rc;
	}
	return (int)size;
}

static int plfs_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return fstatvfs(g.rootfd, sv) < 0 ? -errno : 0;
}

static int plfs_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	return 0;
}

static int plfs_release(const char *path, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);

	(void)path;
	if (fh->fd >= 0)
		close(fh->fd);
	free(fh);
	return 0;
}

static int plfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct stat st;
	struct fh *fh;
	int rc;

	(void)path;
	if (fh_of(fi) && fh_of(fi)->fd < 0)
		return 0;
	rc = fh_need(fi, &fh);
	if (rc)
		return rc;
	rc = pf_sync_fd(fh->fd, datasync);
	if (rc)
		return rc;
	if (fstat(fh->fd, &st) == 0)
		jop_fsync_ino(st.st_ino);
	return 0;
}

static int plfs_fallocate(const char *path, int mode, off_t off, off_t len,
			  struct fuse_file_info *fi)
{
	struct pfile *pf;
	struct fh *fh;
	int rc;

	(void)path;
	if (mode)
		return -EOPNOTSUPP;
	rc = fh_need(fi, &fh);
	if (rc)
		return rc;
	rc = pf_get(fh->fd, &pf);
	if (rc)
		return rc;
	if (off + len > pf->size)
		rc = pf_truncate(pf, off + len);
	return rc;
}

static int plfs_opendir(const char *path, struct fuse_file_info *fi)
{
	struct fh *fh;
	int fd;

	if (is_special(path))
		return -ENOENT;
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		return -ENOMEM;
	fd = openat(g.rootfd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(fh->dir = fdopendir(fd))) {
		int rc = -errno;

		if (fd >= 0)
			close(fd);
		free(fh);
		return rc;
	}
	fh->fd = fd;
	fh->life = g.life;
	fh->root = strcmp(rel(path), ".") == 0;
	fi->fh = (uintptr_t)fh;
	return 0;
}

static int plfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
			off_t off, struct fuse_file_info *fi,
			enum fuse_readdir_flags flags)
{
	struct dirent *de;
	struct stat st;
	struct fh *fh;
	int rc;

	(void)path;
	(void)off;
	(void)flags;
	rc = fh_need(fi, &fh);
	if (rc)
		return rc;
	rewinddir(fh->dir);
	while ((errno = 0, de = readdir(fh->dir))) {
		if (fh->root && (strcmp(de->d_name, TRASH_NAME) == 0 ||
				 strcmp(de->d_name, CTL_NAME) == 0))
			continue;
		memset(&st, 0, sizeof(st));
		st.st_ino = de->d_ino;
		st.st_mode = (mode_t)DTTOIF(de->d_type);
		if (filler(buf, de->d_name, &st, 0, 0))
			break;
	}
	return errno ? -errno : 0;
}

static int plfs_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);

	(void)path;
	closedir(fh->dir);
	free(fh);
	return 0;
}

static int plfs_fsyncdir(const char *path, int datasync,
			 struct fuse_file_info *fi)
{
	struct stat st;
	struct fh *fh;
	int rc;

	(void)path;
	rc = fh_need(fi, &fh);
	if (rc)
		return rc;
	if ((datasync ? fdatasync(fh->fd) : fsync(fh->fd)) < 0)
		return -errno;
	if (fstat(fh->fd, &st) < 0)
		return -errno;
	jop_fsync_dir(st.st_ino);
	return 0;
}

/* The absolute backing path of @path, for the calls that have no *at. */
static int full_path(const char *path, char *buf, size_t len)
{
	if (is_special(path))
		return -ENOENT;
	if (snprintf(buf, len, "%s/%s", g.backing_path, rel(path)) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

static int plfs_setxattr(const char *path, const char *name, const char *value,
			 size_t size, int flags)
{
	char p[PATH_MAX];
	int rc = full_path(path, p, sizeof(p));

	if (rc)
		return rc;
	return lsetxattr(p, name, value, size, flags) < 0 ? -errno : 0;
}

static int plfs_getxattr(const char *path, const char *name, char *value,
			 size_t size)
{
	char p[PATH_MAX];
	int rc = full_path(path, p, sizeof(p));
	ssize_t n;

	if (rc)
		return rc;
	n = lgetxattr(p, name, value, size);
	return n < 0 ? -errno : (int)n;
}

static int plfs_listxattr(const char *path, char *list, size_t size)
{
	char p[PATH_MAX];
	int rc = full_path(path, p, sizeof(p));
	ssize_t n;

	if (rc)
		return rc;
	n = llistxattr(p, list, size);
	return n < 0 ? -errno : (int)n;
}

static int plfs_removexattr(const char *path, const char *name)
{
	char p[PATH_MAX];
	int rc = full_path(path, p, sizeof(p));

	if (rc)
		return rc;
	return lremovexattr(p, name) < 0 ? -errno : 0;
}

static const struct fuse_operations plfs_ops = {
	.init = plfs_init,
	.destroy = plfs_destroy,
	.getattr = plfs_getattr,
	.readlink = plfs_readlink,
	.mknod = plfs_mknod,
	.mkdir = plfs_mkdir,
	.symlink = plfs_symlink,
	.link = plfs_link,
	.unlink = plfs_unlink,
	.rmdir = plfs_rmdir,
	.rename = plfs_rename,
	.chmod = plfs_chmod,
	.chown = plfs_chown,
	.truncate = plfs_truncate,
	.utimens = plfs_utimens,
	.open = plfs_open,
	.create = plfs_create,
	.read = plfs_read,
	.write = plfs_write,
	.statfs = plfs_statfs,
	.flush = plfs_flush,
	.release = plfs_release,
	.fsync = plfs_fsync,
	.fallocate = plfs_fallocate,
	.opendir = plfs_opendir,
	.readdir = plfs_readdir,
	.releasedir = plfs_releasedir,
	.fsyncdir = plfs_fsyncdir,
	.setxattr = plfs_setxattr,
	.getxattr = plfs_getxattr,
	.listxattr = plfs_listxattr,
	.removexattr = plfs_removexattr,
};

/* ------------------------------------------------------------- main */

struct args {
	char *backing;
	char *mountpoint;
};

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct args *a = data;

	(void)outargs;
	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	if (!a->backing) {
		a->backing = strdup(arg);
		return 0;
	}
	if (!a->mountpoint)
		a->mountpoint = strdup(arg);
	return 1;
}

/* Create the trash, or empty what a previous run left in it. */
static int trash_open(void)
{
	int fd;

	if (mkdirat(g.rootfd, TRASH_NAME, 0700) < 0 && errno != EEXIST)
		return -errno;
	g.trashfd = openat(g.rootfd, TRASH_NAME,
			   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (g.trashfd < 0)
		return -errno;
	fd = dup(g.trashfd);
	if (fd < 0)
		return -errno;
	return empty_dir(fd);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct args a = { 0 };
	struct rlimit rl;
	char *mnt = NULL;
	sigset_t set;
	int rc;

	if (fuse_opt_parse(&args, &a, NULL, opt_proc) < 0)
		return 2;
	if (!a.backing || !a.mountpoint) {
		fprintf(stderr,
			"usage: %s [-f] [-d] [-o options] BACKING_DIR MOUNTPOINT\n",
			argv[0]);
		return 2;
	}
	g.backing_path = realpath(a.backing, NULL);
	mnt = realpath(a.mountpoint, NULL);
	if (!g.backing_path || !mnt) {
		fprintf(stderr, "plfs: cannot resolve '%s' or '%s': %s\n",
			a.backing, a.mountpoint, strerror(errno));
		return 1;
	}
	g.rootfd = open(g.backing_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g.rootfd < 0) {
		fprintf(stderr, "plfs: cannot open '%s': %s\n", g.backing_path,
			strerror(errno));
		return 1;
	}
	rc = trash_open();
	if (rc) {
		fprintf(stderr, "plfs: cannot set up '%s/%s': %s\n",
			g.backing_path, TRASH_NAME, strerror(-rc));
		return 1;
	}
	if (asprintf(&g.ctl_path, "%s/%s", mnt, CTL_NAME) < 0)
		return 1;
	/* a file with unsynced data keeps an fd: allow many */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* SIGUSR1 is taken by sigwait in its own thread (plfs_init) */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (fuse_opt_add_arg(&args, "-s") ||
	    fuse_opt_add_arg(&args, "-ofsname=plfs,subtype=plfs"))
		return 1;
	rc = fuse_main(args.argc, args.argv, &plfs_ops, NULL);
	fuse_opt_free_args(&args);
	free(mnt);
	return rc;
}
