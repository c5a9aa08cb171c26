/* SPDX-License-Identifier: MIT */
/*
 * The flush pipeline seen through a real mount: many concurrent writers,
 * and an object write that fails (fault injection in the daemon, through
 * TALLYFS_FAULT) reported by fsync, close and drain without losing data.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

#define WRITERS 8
#define FILE_LEN (3 * MIB + 12345)
#define CHUNK (64 * 1024)

static void pipeline_fini(void)
{
	unsetenv("TALLYFS_FAULT");
	tm_fini();
}

TestSuite(pipeline, .fini = pipeline_fini, .timeout = 120);

struct writer {
	int id;
	char *data;
	int err;
};

/* Write the file in CHUNK pieces, in a scrambled order, then close. */
static void *write_one(void *arg)
{
	struct writer *w = arg;
	size_t nchunks = (FILE_LEN + CHUNK - 1) / CHUNK, i;
	int fd = open(mp("ns/w%d", w->id), O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0) {
		w->err = errno;
		return NULL;
	}
	for (i = 0; i < nchunks; i++) {
		size_t c = (i * 97 + (size_t)w->id) % nchunks; /* 97: prime */
		size_t off = c * CHUNK;
		size_t len = FILE_LEN - off < CHUNK ? FILE_LEN - off : CHUNK;

		if (pwrite(fd, w->data + off, len, (off_t)off) !=
		    (ssize_t)len) {
			w->err = errno ? errno : EIO;
			break;
		}
	}
	if (close(fd) < 0 && !w->err)
		w->err = errno;
	return NULL;
}

Test(pipeline, concurrent_writers_all_land)
{
	struct writer w[WRITERS];
	pthread_t th[WRITERS];
	int i;

	tm_init();
	expect_ok(mkdir(mp("ns"), 0755));
	for (i = 0; i < WRITERS; i++) {
		w[i].id = i;
		w[i].err = 0;
		w[i].data = malloc(FILE_LEN);
		cr_assert(ne(ptr, w[i].data, NULL));
		fill_random(w[i].data, FILE_LEN, (uint64_t)i + 500);
		cr_assert(eq(int,
			     pthread_create(&th[i], NULL, write_one, &w[i]),
			     0));
	}
	for (i = 0; i < WRITERS; i++) {
		pthread_join(th[i], NULL);
		cr_assert(eq(int, w[i].err, 0), "writer %d: %s", i,
			  strerror(w[i].err));
	}
	/* read back at once: in flight or committed, the newest data */
	for (i = 0; i < WRITERS; i++) {
		long d = file_cmp(mp("ns/w%d", i), w[i].data, FILE_LEN);

		cr_assert(eq(i64, d, -1), "writer %d: first difference at %ld",
			  i, d);
	}
	cr_assert(eq(int, tm_remount(), 0));
	for (i = 0; i < WRITERS; i++) {
		cr_assert(eq(i64,
			     file_cmp(mp("ns/w%d", i), w[i].data, FILE_LEN),
			     -1),
			  "writer %d after a remount", i);
		free(w[i].data);
	}
	cr_assert(eq(long, tm_count_objects(), WRITERS * 4L));
	cr_assert(eq(int, tm_unmount(), 0));
	cr_assert(eq(int, tm_run_fsck(), 0));
}

/*
 * Mount with TALLYFS_FAULT=@fault, then write MIB bytes from @seed to a
 * new file ns/f through a descriptor left open (*fd). Returns the bytes
 * (malloc'ed, the caller frees).
 */
static char *faulty_write(const char *fault, uint64_t seed, int *fd)
{
	char *data = malloc(MIB);

	cr_assert(ne(ptr, data, NULL));
	fill_random(data, MIB, seed);
	setenv("TALLYFS_FAULT", fault, 1);
	tm_init();
	unsetenv("TALLYFS_FAULT");
	expect_ok(mkdir(mp("ns"), 0755));
	*fd = open(mp("ns/f"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	cr_assert(ge(int, *fd, 0));
	cr_assert(eq(i64, pwrite(*fd, data, MIB, 0), MIB));
	return data;
}

Test(pipeline, failed_object_write_reaches_fsync)
{
	int fd;
	/* the daemon's first object write fails with ENOSPC, once */
	char *data = faulty_write("write:1:28", 77, &fd);

	cr_assert(eq(int, fsync(fd), -1));
	cr_assert(eq(int, errno, ENOSPC), "fsync: %s", strerror(errno));
	/* nothing was lost: the data is read back, and goes again */
	cr_assert(eq(i64, file_cmp(mp("ns/f"), data, MIB), -1));
	expect_ok(fsync(fd));
	expect_ok(close(fd));
	cr_assert(eq(long, tm_count_objects(), 1L));
	cr_assert(eq(int, tm_remount(), 0));
	cr_assert(eq(i64, file_cmp(mp("ns/f"), data, MIB), -1));
	cr_assert(eq(int, tm_unmount(), 0));
	cr_assert(eq(int, tm_run_fsck(), 0));
	free(data);
}

Test(pipeline, failed_sync_reaches_the_next_close)
{
	int fd;
	char *data = faulty_write("sync:1:5", 78, &fd);

	if (tm.meta[0]) {
		struct stat st;
		int i;

		/* a shared store: close waits for its commit (close-to-open
		 * across nodes), so this close reports the failure, and the
		 * release after it drops what it reported: the file is as
		 * committed, empty (another node may write it now, and the
		 * data sent later would land over that) */
		cr_assert(eq(int, close(fd), -1), "close reports EIO");
		cr_assert(eq(int, errno, EIO), "close: %s", strerror(errno));
		for (i = 0; i < 100; i++) { /* the kernel's attributes: 1 s */
			expect_ok(stat(mp("ns/f"), &st));
			if (st.st_size == 0)
				break;
			usleep(50 * 1000);
		}
		cr_assert(eq(i64, st.st_size, 0), "the failed write stays");
		/* written again, it goes */
		fd = open(mp("ns/f"), O_RDWR);
		cr_assert(ge(int, fd, 0));
		cr_assert(eq(i64, pwrite(fd, data, MIB, 0), MIB));
		expect_ok(close(fd));
	} else {
		/* a close starts the flush and does not wait for it; the
		 * first close after the failure reports it. With the
		 * kernel's writeback cache the setattr of the times that
		 * comes before this close's FLUSH starts the flush already,
		 * and it may fail before the FLUSH: then this close reports
		 * it, else the next one does */
		int rc = close(fd), err = errno;

		if (rc == 0) {
			tm_settle(); /* the flush fails */
			fd = open(mp("ns/f"), O_RDWR);
			cr_assert(ge(int, fd, 0));
			rc = close(fd);
			err = errno;
		}
		cr_assert(eq(int, rc, -1), "a close reports EIO");
		cr_assert(eq(int, err, EIO), "close: %s", strerror(err));
		/* once: the data went again */
		fd = open(mp("ns/f"), O_RDWR);
		cr_assert(ge(int, fd, 0));
		expect_ok(close(fd));
	}
	cr_assert(eq(i64, file_cmp(mp("ns/f"), data, MIB), -1));
	cr_assert(eq(long, tm_count_objects(), 1L));
	cr_assert(eq(int, tm_unmount(), 0));
	cr_assert(eq(int, tm_run_fsck(), 0));
	free(data);
}

Test(pipeline, failed_drain_reaches_the_ctl_writer)
{
	char report[1024];
	ssize_t n;
	int fd, cfd;
	char *data = faulty_write("sync:1:5", 79, &fd);

	/* the drain flushes the buffered data, whose sync fails */
	cfd = open(mp(".tally/ctl"), O_RDWR);
	cr_assert(ge(int, cfd, 0));
	cr_assert(eq(i64, write(cfd, "drain\n", 6), -1), "drain succeeded");
	cr_assert(eq(int, errno, EIO), "drain: %s", strerror(errno));
	/* its report, where the failed write left the offset */
	n = read(cfd, report, sizeof(report) - 1);
	cr_assert(gt(i64, n, 0), "no report: %s", strerror(errno));
	report[n] = '\0';
	cr_assert(ne(ptr, strstr(report, "error: Input/output error\n"), NULL),
		  "%s", report);
	cr_assert(ne(ptr,
		     strstr(report,
			    "uncommitted_files: 1\nuncommitted_blocks: 1\n"),
		     NULL),
		  "%s", report);
	expect_ok(close(cfd));
	/* the next drain commits it; the file's fsync reports the failure */
	cfd = open(mp(".tally/ctl"), O_WRONLY);
	cr_assert(ge(int, cfd, 0));
	cr_assert(eq(i64, write(cfd, "drain\n", 6), 6), "drain: %s",
		  strerror(errno));
	expect_ok(close(cfd));
	cr_assert(eq(int, fsync(fd), -1));
	cr_assert(eq(int, errno, EIO), "fsync: %s", strerror(errno));
	expect_ok(close(fd));
	cr_assert(eq(i64, file_cmp(mp("ns/f"), data, MIB), -1));
	cr_assert(eq(int, tm_unmount(), 0));
	cr_assert(eq(int, tm_run_fsck(), 0));
	free(data);
}
