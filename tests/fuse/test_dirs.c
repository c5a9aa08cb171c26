/* SPDX-License-Identifier: MIT */
/*
 * Directories larger than one readdir buffer, readdir while entries are
 * removed (rm -r), and the kernel's lookup counts under readdirplus.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuse/mount.h"

#define NFILES 600

static void dirs_init(void)
{
	tm_init();
	tm_mkns("ns");
	expect_ok(mkdir(mp("ns/big"), 0755));
}

TestSuite(dirs, .init = dirs_init, .fini = tm_fini, .timeout = 60);

static void populate(int n, bool with_data)
{
	char name[64];
	int i;

	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "entry-with-a-longish-name-%04d",
			 i);
		if (with_data) {
			char data[100];

			fill_random(data, sizeof(data), 1000 + (uint64_t)i);
			cr_assert(eq(int,
				     write_file(mp("ns/big/%s", name), data,
						sizeof(data)),
				     0));
		} else {
			int fd = open(mp("ns/big/%s", name),
				      O_WRONLY | O_CREAT | O_EXCL, 0644);

			cr_assert(ge(int, fd, 0), "create %s: %s", name,
				  strerror(errno));
			close(fd);
		}
	}
}

Test(dirs, readdir_returns_every_entry_once)
{
	static unsigned char seen[NFILES];
	struct dirent *de;
	int n = 0, dots = 0, i;
	DIR *d;

	populate(NFILES, false);
	expect_ok(mkdir(mp("ns/big/subdir"), 0755));
	d = opendir(mp("ns/big"));
	cr_assert(ne(ptr, d, NULL));
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) {
			dots++;
			continue;
		}
		if (!strcmp(de->d_name, "subdir")) {
			cr_assert(eq(int, de->d_type, DT_DIR));
			n++;
			continue;
		}
		cr_assert(eq(int,
			     sscanf(de->d_name, "entry-with-a-longish-name-%d",
				    &i),
			     1),
			  "unexpected name '%s'", de->d_name);
		cr_assert(lt(int, i, NFILES));
		cr_assert(eq(int, seen[i], 0), "'%s' listed twice", de->d_name);
		cr_assert(eq(int, de->d_type, DT_REG));
		{
			struct stat st;

			expect_ok(fstatat(dirfd(d), de->d_name, &st,
					  AT_SYMLINK_NOFOLLOW));
			cr_assert(eq(u64, de->d_ino, st.st_ino),
				  "d_ino of '%s'", de->d_name);
		}
		seen[i] = 1;
		n++;
	}
	closedir(d);
	cr_assert(eq(int, n, NFILES + 1));
	cr_assert(eq(int, dots, 2), "'.' and '..' seen %d times", dots);
}

Test(dirs, readdir_while_unlinking_removes_everything)
{
	struct dirent *de;
	int removed = 0;
	DIR *d;

	populate(NFILES, true);
	cr_assert(eq(i64, tm_count_objects(), NFILES));
	/* what rm -r does: unlink each entry as it is read */
	d = opendir(mp("ns/big"));
	cr_assert(ne(ptr, d, NULL));
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		expect_ok(unlinkat(dirfd(d), de->d_name, 0));
		removed++;
	}
	closedir(d);
	cr_assert(eq(int, removed, NFILES));
	expect_ok(rmdir(mp("ns/big")));
	cr_assert(eq(i64, tm_wait_objects(0, 5000), 0));
}

Test(dirs, listing_then_unlinking_frees_objects)
{
	char name[64];
	struct stat st;
	struct dirent *de;
	int i, n = 0, fd;
	DIR *d;
	ssize_t r;

	populate(50, true);
	/* ls -l: readdir(plus) and a stat of each entry, twice */
	for (i = 0; i < 2; i++) {
		d = opendir(mp("ns/big"));
		cr_assert(ne(ptr, d, NULL));
		while ((de = readdir(d)))
			if (fstatat(dirfd(d), de->d_name, &st,
				    AT_SYMLINK_NOFOLLOW) == 0)
				n++;
		closedir(d);
	}
	cr_assert(eq(int, n, 2 * 52));

	/* one of them stays open across its unlink */
	fd = open(mp("ns/big/entry-with-a-longish-name-0007"), O_RDONLY);
	cr_assert(ge(int, fd, 0));
	for (i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "entry-with-a-longish-name-%04d",
			 i);
		expect_ok(unlink(mp("ns/big/%s", name)));
	}
	cr_assert(eq(i64, tm_wait_objects(1, 5000), 1));
	{
		char got[100], want[100];

		fill_random(want, sizeof(want), 1007);
		r = pread(fd, got, sizeof(got), 0);
		cr_assert(eq(i64, r, 100));
		cr_assert(eq(i64, first_diff(got, want, sizeof(want)), -1));
	}
	expect_ok(close(fd));
	cr_assert(eq(i64, tm_wait_objects(0, 5000), 0));
}

Test(dirs, fsync_of_a_directory)
{
	int fd = open(mp("ns/big"), O_RDONLY | O_DIRECTORY);

	cr_assert(ge(int, fd, 0));
	cr_assert(eq(int, write_file(mp("ns/big/f"), "x", 1), 0));
	expect_ok(fsync(fd));
	expect_ok(fdatasync(fd));
	expect_ok(close(fd));
}

/* readdirplus gives the kernel each entry's attributes, read with the
 * entry: after a remount (no inode in the daemon's memory) every stat
 * of a listed entry, answered from what the listing gave, is its own */
Test(dirs, readdirplus_gives_each_entry_its_own_attributes)
{
	char data[NFILES];
	struct dirent *de;
	int i, n = 0;
	DIR *d;

	fill_random(data, sizeof(data), 77);
	for (i = 0; i < NFILES; i++) {
		char name[64];

		snprintf(name, sizeof(name), "e%04d", i);
		cr_assert(eq(int,
			     write_file(mp("ns/big/%s", name), data, (size_t)i),
			     0));
		expect_ok(chmod(mp("ns/big/%s", name), 0600 | (i % 8)));
		if (i % 7 == 0)
			expect_ok(link(mp("ns/big/%s", name),
				       mp("ns/e%04d-link", i)));
	}
	expect_ok(mkdir(mp("ns/big/sub"), 0750));
	cr_assert(eq(int, tm_remount(), 0));
	d = opendir(mp("ns/big"));
	cr_assert(ne(ptr, d, NULL));
	while ((de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		expect_ok(fstatat(dirfd(d), de->d_name, &st,
				  AT_SYMLINK_NOFOLLOW));
		n++;
		if (!strcmp(de->d_name, "sub")) {
			cr_assert(eq(u32, st.st_mode, S_IFDIR | 0750));
			cr_assert(eq(u32, de->d_type, DT_DIR));
			continue;
		}
		cr_assert(eq(int, sscanf(de->d_name, "e%d", &i), 1));
		cr_assert(eq(u32, de->d_type, DT_REG));
		cr_assert(eq(i64, st.st_size, i), "%s", de->d_name);
		cr_assert(eq(u32, st.st_mode, S_IFREG | 0600 | (i % 8)), "%s",
			  de->d_name);
		cr_assert(eq(u32, st.st_nlink, i % 7 == 0 ? 2 : 1), "%s",
			  de->d_name);
	}
	closedir(d);
	cr_assert(eq(int, n, NFILES + 1));
}
