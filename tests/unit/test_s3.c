/* SPDX-License-Identifier: MIT */
/*
 * core/s3/s3.c without a server: s3_cfg_parse() (URL, bucket naming rules,
 * endpoint, region, credentials from the environment or from a shared
 * credentials file) and s3_key(). The requests themselves are tested
 * against servers in tests/s3/.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/s3/s3.h"
#include "tests/unit/util.h"

static struct s3_cfg cfg;
static char err[256];
static char *dir;

static void clear_env(void)
{
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_PROFILE");
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	dir = tu_tmpdir();
	setenv("HOME", dir, 1);
}

static void fini(void)
{
	s3_cfg_release(&cfg);
	tu_rmrf(dir);
	free(dir);
	dir = NULL;
}

TestSuite(s3, .init = clear_env, .fini = fini, .timeout = 30);

static void env_keys(void)
{
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "env/secret+key", 1);
}

static int parse(const char *url, const char *endpoint, const char *region)
{
	s3_cfg_release(&cfg);
	return s3_cfg_parse(&cfg, url, endpoint, region, err, sizeof(err));
}

/* A credentials file at @path with @text. */
static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fputs(text, f) >= 0, true);
	cr_assert_eq(fclose(f), 0);
}

Test(s3, parse_url_endpoint_region_env)
{
	env_keys();
	setenv("AWS_SESSION_TOKEN", "tok", 1);
	cr_assert_eq(parse("s3://my-bucket.1/a/b/", "http://127.0.0.1:9000/",
			   NULL),
		     0, "%s", err);
	cr_assert_str_eq(cfg.endpoint, "http://127.0.0.1:9000");
	cr_assert_str_eq(cfg.bucket, "my-bucket.1");
	cr_assert_str_eq(cfg.prefix, "a/b");
	cr_assert_str_eq(cfg.region, "us-east-1");
	cr_assert_str_eq(cfg.access_key, "AKIDENV");
	cr_assert_str_eq(cfg.secret_key, "env/secret+key");
	cr_assert_str_eq(cfg.session_token, "tok");
	cr_assert_eq(cfg.connect_timeout, 0);
	cr_assert_eq(cfg.stall_timeout, 0);

	unsetenv("AWS_SESSION_TOKEN");
	cr_assert_eq(parse("s3://bkt", "https://s3.example.com", "eu-west-3"),
		     0, "%s", err);
	cr_assert_str_eq(cfg.prefix, "");
	cr_assert_str_eq(cfg.region, "eu-west-3");
	cr_assert_str_eq(cfg.endpoint, "https://s3.example.com");
	cr_assert_null(cfg.session_token);
	cr_assert_eq(parse("s3://bkt/", "http://[::1]:9000", NULL), 0, "%s",
		     err);
	cr_assert_str_eq(cfg.prefix, "");
}

Test(s3, bucket_naming_rules)
{
	static const char *const bad[] = {
		"s3://ab",   "s3://Upper",   "s3://a_b_c",
		"s3://-abc", "s3://abc-",    "s3://.abc",
		"s3://",     "s3:///prefix", "s3://a b c",
	};
	char url[80];
	size_t i;

	env_keys();
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(parse(bad[i], "http://h", NULL), -EINVAL, "%s",
			     bad[i]);
		cr_assert(strstr(err, "bucket"), "%s: [%s]", bad[i], err);
	}
	/* 63 characters, then 64 */
	memset(url, 'a', sizeof(url));
	memcpy(url, "s3://", 5);
	url[5 + 63] = '\0';
	cr_assert_eq(parse(url, "http://h", NULL), 0, "63: %s", err);
	url[5 + 63] = 'a';
	url[5 + 64] = '\0';
	cr_assert_eq(parse(url, "http://h", NULL), -EINVAL, "64 characters");
	cr_assert_eq(parse("s3://a-1.b", "http://h", NULL), 0, "%s", err);
}

Test(s3, malformed_url_prefix_endpoint_region)
{
	static const char *const bad_ep[] = {
		"ftp://h",
		"http://",
		"http://h:0",
		"http://h:99999",
		"http://h:",
		"http://h/path",
		"h:9000",
		"http://h:9000/x/",
		"http://[::1",
		"http://h p",
		"",
	};
	size_t i;

	env_keys();
	cr_assert_eq(parse("http://bucket", "http://h", NULL), -EINVAL);
	cr_assert(strstr(err, "s3://"), "[%s]", err);
	cr_assert_eq(parse(NULL, "http://h", NULL), -EINVAL);
	cr_assert_eq(parse("s3://bucket/a//b", "http://h", NULL), -EINVAL);
	cr_assert(strstr(err, "prefix"), "[%s]", err);
	for (i = 0; i < sizeof(bad_ep) / sizeof(bad_ep[0]); i++) {
		cr_assert_eq(parse("s3://bucket", bad_ep[i], NULL), -EINVAL,
			     "[%s]", bad_ep[i]);
		cr_assert(strstr(err, "endpoint"), "%s: [%s]", bad_ep[i], err);
	}
	cr_assert_eq(parse("s3://bucket", NULL, NULL), -EINVAL);
	cr_assert_eq(parse("s3://bucket", "http://h", "us:east"), -EINVAL);
	cr_assert(strstr(err, "region"), "[%s]", err);
	cr_assert_eq(parse("s3://bucket", "http://h", ""), -EINVAL);
}

Test(s3, credentials_file_profiles)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/creds", dir);
	write_file(path, "# shared credentials\n"
			 "[default]\n"
			 "aws_access_key_id = AKIDDEFAULT\n"
			 "aws_secret_access_key=default/secret\n"
			 "\n"
			 "[ other ]\r\n"
			 "; a comment\n"
			 "aws_access_key_id\t=  AKIDOTHER  \r\n"
			 "aws_secret_access_key = other+secret=\n"
			 "aws_session_token = other-token\n"
			 "region = eu-west-1\n"
			 "[partial]\n"
			 "aws_access_key_id = AKIDPARTIAL\n");
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);

	cr_assert_eq(parse("s3://bucket", "http://h", NULL), 0, "%s", err);
	cr_assert_str_eq(cfg.access_key, "AKIDDEFAULT");
	cr_assert_str_eq(cfg.secret_key, "default/secret");
	cr_assert_null(cfg.session_token);

	setenv("AWS_PROFILE", "other", 1);
	cr_assert_eq(parse("s3://bucket", "http://h", NULL), 0, "%s", err);
	cr_assert_str_eq(cfg.access_key, "AKIDOTHER");
	cr_assert_str_eq(cfg.secret_key, "other+secret=");
	cr_assert_str_eq(cfg.session_token, "other-token");
	cr_assert_str_eq(cfg.region, "us-east-1",
			 "the file's region is "
			 "not the mount's");

	setenv("AWS_PROFILE", "partial", 1);
	cr_assert_eq(parse("s3://bucket", "http://h", NULL), -ENOKEY);
	cr_assert(strstr(err, "partial"), "[%s]", err);
	cr_assert(!strstr(err, "AKIDPARTIAL"), "[%s]", err);

	setenv("AWS_PROFILE", "nosuch", 1);
	cr_assert_eq(parse("s3://bucket", "http://h", NULL), -ENOKEY);
	cr_assert(strstr(err, "nosuch"), "[%s]", err);

	/* the environment comes first */
	env_keys();
	cr_assert_eq(parse("s3://bucket", "http://h", NULL), 0, "%s", err);
	cr_assert_str_eq(cfg.access_key, "AKIDENV");
}

Test(s3, credentials_in_home)
{
	char path[512];

	cr_assert_eq(parse("s3://bucket", "http://h", NULL), -ENOKEY);
	cr_assert(strstr(err, ".aws/credentials"), "[%s]", err);

	snprintf(path, sizeof(path), "%s/.aws", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/.aws/credentials", dir);
	write_file(path, "[default]\naws_access_key_id = AKIDHOME\n"
			 "aws_secret_access_key = home-secret\n");
	cr_assert_eq(parse("s3://bucket", "http://h", NULL), 0, "%s", err);
	cr_assert_str_eq(cfg.access_key, "AKIDHOME");
	cr_assert_str_eq(cfg.secret_key, "home-secret");

	/* only one of the two variables: not enough, the file is used */
	setenv("AWS_ACCESS_KEY_ID", "AKIDHALF", 1);
	cr_assert_eq(parse("s3://bucket", "http://h", NULL), 0, "%s", err);
	cr_assert_str_eq(cfg.access_key, "AKIDHOME");
}

Test(s3, key_under_prefix)
{
	char out[32];

	env_keys();
	cr_assert_eq(parse("s3://bucket/a/b", "http://h", NULL), 0);
	cr_assert_eq(s3_key(&cfg, "objects/ab/x", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "a/b/objects/ab/x");
	cr_assert_eq(s3_key(&cfg, "objects/ab/x", out, 16), -ENAMETOOLONG);
	cr_assert_eq(s3_key(&cfg, "objects/ab/x", out, 17), 0);
	cr_assert_eq(parse("s3://bucket", "http://h", NULL), 0);
	cr_assert_eq(s3_key(&cfg, "meta/snap", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "meta/snap");
}

Test(s3, new_free_without_server)
{
	struct s3 *s = NULL;

	env_keys();
	cr_assert_eq(parse("s3://bucket", "http://127.0.0.1:9", NULL), 0);
	cr_assert_eq(s3_new(&cfg, &s), 0);
	cr_assert_not_null(s);
	cr_assert_str_eq(s3_last_error(s), "");
	s3_free(s);
	s3_free(NULL);
}
