/* SPDX-License-Identifier: MIT */
/*
 * Test harness for the fuse suite: a real tallyfs daemon mounted on a fresh
 * mkdtemp directory for every test, plus small POSIX helpers the tests share.
 *
 * tm_init() (a Criterion .init) creates DIR/store and DIR/mnt, starts
 * "$TALLYFS -f DIR/store DIR/mnt" and waits until the mount is visible.
 * tm_fini() (the matching .fini) unmounts whatever happened, reaps the
 * daemon (SIGKILL after a bounded wait) and removes DIR. A guardian process
 * does the same if the test process dies without reaching .fini (Criterion
 * timeout, crash), and the daemon gets SIGKILL when the test process dies,
 * so no mount outlives a test.
 */
#ifndef TALLY_TESTS_FUSE_MOUNT_H
#define TALLY_TESTS_FUSE_MOUNT_H

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#define MIB 1048576L

struct tmount {
	char dir[PATH_MAX];	   /* the mkdtemp directory */
	char store[PATH_MAX + 16]; /* DIR/store */
	char mnt[PATH_MAX + 16];   /* DIR/mnt */
	char log[PATH_MAX + 16];   /* DIR/daemon.log: the daemon's stderr */
	pid_t daemon;		   /* 0 when not running */
	pid_t guardian;		   /* 0 when not running */
	int guard_fd;		   /* write end of the guardian's pipe, or -1 */
	char db[64];		   /* the test's database (TALLY_TEST_PG) */
	char meta[PATH_MAX];	   /* "meta=URI" for the daemon, or "" */
};

/* The mount of the running test (one per test process). */
extern struct tmount tm;

/* Extra "-o" options for the daemon (e.g. "allow_other"), or NULL: set it
 * before tm_init()/tm_mount(). */
extern const char *tm_options;

/* Criterion .init / .fini: mount a fresh store, tear everything down. */
void tm_init(void);
void tm_fini(void);

/*
 * Start the daemon on tm.store / tm.mnt and wait (10 s at most) until it is
 * mounted. Returns 0, or -1 with a diagnostic on stderr (daemon log included).
 */
int tm_mount(void);

/*
 * Unmount cleanly (fusermount3 -u, then a lazy umount2 as a fallback) and
 * reap the daemon (SIGKILL after 10 s). Returns the daemon's exit status
 * (0 on a clean exit), 128 + signal if it was killed, -1 if nothing ran.
 */
int tm_unmount(void);

/* tm_unmount() then tm_mount(); returns tm_mount()'s result, or -1 when
 * the daemon did not exit with status 0. */
int tm_remount(void);

/* SIGKILL the daemon, reap it and lazily detach the dead mount. */
void tm_kill_daemon(void);

/* Whether tm.mnt is currently a mount point (per /proc/self/mountinfo). */
bool tm_is_mounted(void);

/*
 * Path inside the mount: tm.mnt + "/" + the formatted suffix. Returns one of
 * a few rotating static buffers, valid until eight more calls.
 */
const char *mp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Make namespace @name, a directory of the mount's root. With
 * TALLY_TEST_CHAIN=N in the environment (the fuse_chain_* tests), it
 * then gets N snapshots, each over a version that wrote rows of its own
 * (an empty file made, the one before changed, an xattr of the
 * namespace's directory set), and those are removed after the last:
 * the test runs at the end of a chain of N + 1 versions, over
 * whiteouts (docs/design.md, section 13). No object is made, so the
 * tests' counts of objects hold.
 */
void tm_mkns(const char *name);

/* Write @cmd (a line) to the control file: 0, or -errno. */
int tm_ctl(const char *cmd);

/* Wait for the flushes in flight ("drain"): a close does not wait for its
 * own, so counts and usage are final only after this. */
void tm_settle(void);

/* Run $TALLYFSCK on tm.store (unmounted); returns its exit status. */
int tm_run_fsck(void);

/* Number of object files (32 hex names) under STORE/shards/0/XX/, once
 * the flushes in flight have finished ("drain" when mounted). */
long tm_count_objects(void);

/* Poll tm_count_objects() until it equals want or ms elapse; returns the
 * last count seen. Object deletion follows RELEASE/FORGET, which the kernel
 * sends asynchronously after close(2)/unlink(2) have returned. */
long tm_wait_objects(long want, int ms);

/* Whether STORE/shards/0/<hash[0..1]>/<hash> exists. */
bool tm_object_exists(const char *hash);

/* Deterministic pseudo-random bytes (xorshift64*), distinct per seed. */
void fill_random(void *buf, size_t len, uint64_t seed);

/* Offset of the first differing byte, or -1 when equal. */
long first_diff(const void *a, const void *b, size_t len);

/* Create/truncate path with mode 0644 and write len bytes; 0 or -errno. */
int write_file(const char *path, const void *buf, size_t len);

/* Read a whole file into a malloc'd, NUL-terminated buffer; *len gets the
 * byte count. NULL with errno set on failure. */
char *read_file(const char *path, size_t *len);

/* Compare the whole file at path with want[0..len); -1 when equal and the
 * size matches, the first differing offset otherwise (len if the file is
 * longer, its size if shorter), -2 if it cannot be read. */
long file_cmp(const char *path, const void *want, size_t len);

/* getxattr into buf (NUL-terminated); returns the value length or -errno. */
long xattr_get(const char *path, const char *name, char *buf, size_t size);

/* Sleep for ms milliseconds. */
void msleep(int ms);

/* a - b in nanoseconds. */
int64_t ts_diff_ns(struct timespec a, struct timespec b);

/* lstat(2) of @path, asserted to succeed. */
struct stat stat_of(const char *path);

/* CLOCK_REALTIME now. */
struct timespec realtime(void);
/* CLOCK_REALTIME_COARSE now: the clock the kernel stamps a file's times
 * with when it keeps them itself (the writeback cache), a tick behind
 * realtime() at most. */
struct timespec kernel_now(void);

/*
 * Assert that call fails with -1 and errno err. The result and errno are
 * captured before Criterion evaluates anything.
 */
#define expect_err(call, err)                                                  \
	do {                                                                   \
		long expect_rc;                                                \
		int expect_errno;                                              \
		errno = 0;                                                     \
		expect_rc = (long)(call);                                      \
		expect_errno = errno;                                          \
		cr_assert(eq(i64, expect_rc, -1),                              \
			  "%s succeeded (%ld), expected %s", #call, expect_rc, \
			  #err);                                               \
		cr_assert(eq(int, expect_errno, err),                          \
			  "%s: errno %d (%s), expected %s (%s)", #call,        \
			  expect_errno, strerror(expect_errno), #err,          \
			  strerror(err));                                      \
	} while (0)

/* Assert that call returns >= 0; evaluates to nothing. */
#define expect_ok(call)                                                  \
	do {                                                             \
		long expect_rc;                                          \
		int expect_errno;                                        \
		errno = 0;                                               \
		expect_rc = (long)(call);                                \
		expect_errno = errno;                                    \
		cr_assert(ge(i64, expect_rc, 0), "%s failed: %s", #call, \
			  strerror(expect_errno));                       \
	} while (0)

#endif
