/* SPDX-License-Identifier: MIT */
/*
 * The client half of the signature test (tests/s3/test_sig.sh): every
 * kind of request core/s3/s3.c makes, sent to sigcheck.py, which recomputes
 * each signature with botocore and answers 403 SignatureDoesNotMatch when
 * it differs. "good" mode expects every request to be accepted and the
 * answers (ranges, listings, error codes) to come back mapped as
 * core/s3/s3.h says; "bad" mode (run with a wrong secret) expects every
 * request to be refused with -EACCES. Prints TAP, and "# requests: N":
 * how many requests reached the server, which the script compares with
 * sigcheck's log.
 *
 *   s3_sig_client good|bad    (SIG_ENDPOINT, AWS_ACCESS_KEY_ID,
 *                              AWS_SECRET_ACCESS_KEY[, AWS_SESSION_TOKEN])
 */
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "tests/s3/s3test.h"

#define OBJ_SIZE 1000
#define ENC_KEY "enc/a b+c=d&e?f#g%h~i*j'k(l)m!n,o;p:q@r$s/\xc3\xa9.x"

static struct s3_cfg cfg;
static struct s3 *s3;
static unsigned requests; /* that reached the server */
static const char *secret;

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * sigcheck never answers "Expect: 100-continue" with a 100: a PUT that
 * waited for one would take curl's expect timeout (1 s) at least.
 */
#define NO_WAIT 0.9

static unsigned char obj_byte(size_t i)
{
	return (unsigned char)(i * 7 % 251);
}

/* The last error must not show the secret. */
static void no_secret(void)
{
	EXPECT(!strstr(s3_last_error(s3), secret), "[%s] shows the secret",
	       s3_last_error(s3));
}

static void put_fd(void)
{
	char path[] = "/tmp/tallyfs-sig.XXXXXX";
	unsigned char buf[4096];
	size_t i, total = 300 * 1024 + 7;
	double t;
	int fd, rc;

	fd = mkstemp(path);
	REQUIRE(fd >= 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	for (i = 0; i < total; i += sizeof(buf)) {
		size_t n = total - i < sizeof(buf) ? total - i : sizeof(buf);

		memset(buf, (int)(i / sizeof(buf)), n);
		REQUIRE(write(fd, buf, n) == (ssize_t)n, "write");
	}
	t = now();
	rc = s3_put_fd(s3, "objects/ab/0123456789abcdef", fd, total);
	t = now() - t;
	requests++;
	EXPECT(rc == 0, "%s: %s", errname(rc), s3_last_error(s3));
	EXPECT(t < NO_WAIT, "took %.2fs: waited for a 100 Continue?", t);
	close(fd);
}

static void put_buf(void)
{
	double t = now();
	int rc = s3_put_buf(s3, "meta/index", "hello", 5);

	t = now() - t;
	requests++;
	EXPECT(rc == 0, "%s: %s", errname(rc), s3_last_error(s3));
	EXPECT(t < NO_WAIT, "took %.2fs: waited for a 100 Continue?", t);
	rc = s3_put_buf(s3, "meta/empty", NULL, 0);
	requests++;
	EXPECT(rc == 0, "empty body: %s: %s", errname(rc), s3_last_error(s3));
}

static void get_ranges(void)
{
	struct membuf m = { 0 };
	uint64_t total = 0;
	size_t i;
	int rc;

	rc = s3_get(s3, "objects/ab/x", 100, 50, membuf_sink, &m, &total);
	requests++;
	EXPECT(rc == 0, "%s: %s", errname(rc), s3_last_error(s3));
	EXPECT(m.len == 50 && total == OBJ_SIZE, "got %zu bytes of %llu", m.len,
	       (unsigned long long)total);
	for (i = 0; i < m.len; i++)
		EXPECT(m.p[i] == obj_byte(100 + i), "byte %zu", i);
	membuf_release(&m);

	rc = s3_get(s3, "objects/ab/x", 990, 0, membuf_sink, &m, &total);
	requests++;
	EXPECT(rc == 0 && m.len == 10 && m.p[9] == obj_byte(999),
	       "to the end: %s, %zu bytes", errname(rc), m.len);
	membuf_release(&m);

	rc = s3_get(s3, "objects/ab/x", 0, 0, membuf_sink, &m, &total);
	requests++;
	EXPECT(rc == 0 && m.len == OBJ_SIZE && total == OBJ_SIZE,
	       "whole: %s, %zu bytes", errname(rc), m.len);
	for (i = 0; i < m.len; i++)
		EXPECT(m.p[i] == obj_byte(i), "byte %zu", i);
	membuf_release(&m);

	rc = s3_get(s3, "objects/ab/x", OBJ_SIZE, 10, membuf_sink, &m, NULL);
	requests++;
	EXPECT(rc == -ERANGE && m.len == 0, "past the end: %s: %s", errname(rc),
	       s3_last_error(s3));
	membuf_release(&m);

	/* a server that ignores the range: the client keeps the range */
	rc = s3_get(s3, "norange/x", 100, 50, membuf_sink, &m, &total);
	requests++;
	EXPECT(rc == 0 && m.len == 50 && total == OBJ_SIZE,
	       "200 to a ranged GET: %s, %zu bytes of %llu", errname(rc), m.len,
	       (unsigned long long)total);
	for (i = 0; i < m.len; i++)
		EXPECT(m.p[i] == obj_byte(100 + i), "byte %zu", i);
	membuf_release(&m);
	rc = s3_get(s3, "norange/x", 990, 0, membuf_sink, &m, &total);
	requests++;
	EXPECT(rc == 0 && m.len == 10 && m.p[0] == obj_byte(990),
	       "200 to a GET from an offset: %s, %zu bytes", errname(rc),
	       m.len);
	membuf_release(&m);
	rc = s3_get(s3, "norange/x", OBJ_SIZE, 10, membuf_sink, &m, NULL);
	requests++;
	EXPECT(rc == -ERANGE && m.len == 0, "200, past the end: %s, %zu bytes",
	       errname(rc), m.len);
	membuf_release(&m);
}

static void head_delete(void)
{
	uint64_t size = 0;
	int rc;

	rc = s3_head(s3, "objects/ab/x", &size);
	requests++;
	EXPECT(rc == 0 && size == OBJ_SIZE, "%s, size %llu: %s", errname(rc),
	       (unsigned long long)size, s3_last_error(s3));
	rc = s3_delete(s3, "objects/ab/x");
	requests++;
	EXPECT(rc == 0, "%s: %s", errname(rc), s3_last_error(s3));
	/* a server that says 404 NoSuchKey for a missing key: not an error */
	rc = s3_delete(s3, "err/404/NoSuchKey");
	requests++;
	EXPECT(rc == 0, "%s: %s", errname(rc), s3_last_error(s3));
}

static void list_pages(void)
{
	struct keylist l = { 0 };
	char *next = NULL, *token;
	int rc;

	rc = s3_list(s3, "objects/", NULL, 7, keylist_add, &l, &next);
	requests++;
	REQUIRE(rc == 0, "%s: %s", errname(rc), s3_last_error(s3));
	EXPECT(l.n == 3 && !strcmp(l.keys[0], "objects/k1") &&
		       l.sizes[0] == strlen("objects/k1") &&
		       !strcmp(l.keys[1], "objects/k2") &&
		       !strcmp(l.keys[2], "objects/k<&'\">"),
	       "first page: %zu keys", l.n);
	REQUIRE(next && !strcmp(next, "a/b+c=d"), "token [%s]",
		next ? next : "(null)");
	/* the token goes back encoded: sigcheck refuses it otherwise */
	token = next;
	next = NULL;
	rc = s3_list(s3, "objects/", token, 7, keylist_add, &l, &next);
	free(token);
	requests++;
	EXPECT(rc == 0, "%s: %s", errname(rc), s3_last_error(s3));
	EXPECT(l.n == 4 && !strcmp(l.keys[3], "objects/k3"), "%zu keys", l.n);
	EXPECT(next == NULL, "a last page has no next token");
	free(next);
	keylist_release(&l);
}

static void encoded_key(void)
{
	struct membuf m = { 0 };
	uint64_t size = 0;
	int rc;

	rc = s3_put_buf(s3, ENC_KEY, "x", 1);
	requests++;
	EXPECT(rc == 0, "PUT: %s: %s", errname(rc), s3_last_error(s3));
	rc = s3_head(s3, ENC_KEY, &size);
	requests++;
	EXPECT(rc == 0 && size == OBJ_SIZE, "HEAD: %s: %s", errname(rc),
	       s3_last_error(s3));
	rc = s3_get(s3, ENC_KEY, 3, 4, membuf_sink, &m, NULL);
	requests++;
	EXPECT(rc == 0 && m.len == 4, "GET: %s: %s", errname(rc),
	       s3_last_error(s3));
	membuf_release(&m);
	rc = s3_delete(s3, ENC_KEY);
	requests++;
	EXPECT(rc == 0, "DELETE: %s: %s", errname(rc), s3_last_error(s3));
}

static void check(void)
{
	int rc = s3_check(s3);

	requests++;
	EXPECT(rc == 0, "%s: %s", errname(rc), s3_last_error(s3));
}

static void errors(void)
{
	static const struct {
		const char *key;
		int rc;
		const char *msg;
	} t[] = {
		{ "err/503/SlowDown", -EAGAIN, "HTTP 503 SlowDown: injected" },
		{ "err/400/SlowDown", -EAGAIN, "HTTP 400 SlowDown" },
		{ "err/500/InternalError", -EAGAIN, "HTTP 500 InternalError" },
		{ "err/502/BadGateway", -EAGAIN, "HTTP 502" },
		{ "err/504/GatewayTimeout", -EAGAIN, "HTTP 504" },
		{ "err/408/RequestTimeout", -EAGAIN, "HTTP 408" },
		{ "err/429/TooManyRequests", -EAGAIN, "HTTP 429" },
		{ "err/507/InsufficientStorage", -ENOSPC, "HTTP 507" },
		{ "err/400/XMinioStorageFull", -ENOSPC, "XMinioStorageFull" },
		{ "err/404/NoSuchKey", -ENOENT, "HTTP 404 NoSuchKey" },
		{ "err/403/AccessDenied", -EACCES, "HTTP 403 AccessDenied" },
		{ "err/401/Unauthorized", -EACCES, "HTTP 401" },
		{ "err/409/OperationAborted", -EIO, "HTTP 409 Operation" },
		{ "err/400/InvalidArgument", -EIO, "HTTP 400 InvalidArgument" },
	};
	struct membuf m = { 0 };
	size_t i;
	int rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rc = s3_get(s3, t[i].key, 0, 0, membuf_sink, &m, NULL);
		requests++;
		EXPECT(rc == t[i].rc && strstr(s3_last_error(s3), t[i].msg),
		       "%s: %s [%s], wanted %s [%s]", t[i].key, errname(rc),
		       s3_last_error(s3), errname(t[i].rc), t[i].msg);
		EXPECT(m.len == 0, "%s: the error body reached the sink",
		       t[i].key);
	}
	membuf_release(&m);
}

static void short_body(void)
{
	struct membuf m = { 0 };
	int rc = s3_get(s3, "short/x", 0, 0, membuf_sink, &m, NULL);

	requests++;
	EXPECT(rc == -EAGAIN, "%s: %s", errname(rc), s3_last_error(s3));
	membuf_release(&m);
}

static void stall(void)
{
	struct membuf m = { 0 };
	double secs;
	int rc;

	cfg.stall_timeout = 2;
	secs = now();
	rc = s3_get(s3, "stall/x", 0, 0, membuf_sink, &m, NULL);
	secs = now() - secs;
	requests++;
	cfg.stall_timeout = 0;
	EXPECT(rc == -EAGAIN, "%s: %s", errname(rc), s3_last_error(s3));
	EXPECT(secs >= 1.5 && secs < 10, "cut after %.1fs (stall_timeout 2)",
	       secs);
	membuf_release(&m);
}

static int refuse(void *arg, const void *buf, size_t n)
{
	(void)arg;
	(void)buf;
	(void)n;
	return -EFBIG;
}

static void sink_error(void)
{
	int rc = s3_get(s3, "objects/ab/x", 0, 0, refuse, NULL, NULL);

	requests++;
	EXPECT(rc == -EFBIG, "%s: %s", errname(rc), s3_last_error(s3));
}

static void short_file(void)
{
	char path[] = "/tmp/tallyfs-sig.XXXXXX";
	int fd, rc;

	fd = mkstemp(path);
	REQUIRE(fd >= 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	REQUIRE(write(fd, "abc", 3) == 3, "write");
	/* refused before anything is sent */
	rc = s3_put_fd(s3, "objects/short", fd, 10);
	EXPECT(rc == -EIO, "%s: %s", errname(rc), s3_last_error(s3));
	close(fd);
}

/* With the wrong secret every request is refused. */
static void refused(void)
{
	struct membuf m = { 0 };
	struct keylist l = { 0 };
	uint64_t size;
	char *next = NULL;
	int rc[8], i = 0, j;

	rc[i++] = s3_put_buf(s3, "meta/index", "hello", 5);
	rc[i++] = s3_put_buf(s3, ENC_KEY, "x", 1);
	rc[i++] = s3_get(s3, "objects/ab/x", 100, 50, membuf_sink, &m, NULL);
	rc[i++] = s3_get(s3, "objects/ab/x", 0, 0, membuf_sink, &m, NULL);
	rc[i++] = s3_head(s3, "objects/ab/x", &size);
	rc[i++] = s3_delete(s3, "objects/ab/x");
	rc[i++] = s3_list(s3, "objects/", "a/b+c=d", 7, keylist_add, &l, &next);
	rc[i++] = s3_check(s3);
	requests += (unsigned)i;
	for (j = 0; j < i; j++)
		EXPECT(rc[j] == -EACCES, "request %d: %s", j, errname(rc[j]));
	EXPECT(strstr(s3_last_error(s3), "HTTP 403 SignatureDoesNotMatch"),
	       "[%s]", s3_last_error(s3));
	EXPECT(m.len == 0, "an error body reached the sink");
	EXPECT(next == NULL && l.n == 0, "a refused listing listed");
	no_secret();
	membuf_release(&m);
	keylist_release(&l);
}

int main(int argc, char **argv)
{
	char err[256];
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2 || (strcmp(argv[1], "good") && strcmp(argv[1], "bad"))) {
		fprintf(stderr, "usage: s3_sig_client good|bad\n");
		return 2;
	}
	secret = need_env("AWS_SECRET_ACCESS_KEY");
	rc = s3_cfg_parse(&cfg, "s3://sigtest/pfx", need_env("SIG_ENDPOINT"),
			  NULL, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "s3_cfg_parse: %s\n", err);
		return 2;
	}
	rc = s3_new(&cfg, &s3);
	if (rc) {
		fprintf(stderr, "s3_new: %s\n", strerror(-rc));
		return 2;
	}
	if (!strcmp(argv[1], "good")) {
		tap_case("PUT of a file (hash pass, streamed body)", put_fd);
		tap_case("PUT of a buffer, and of an empty one", put_buf);
		tap_case("GET: ranges, to the end, whole, past the end; a "
			 "server that ignores ranges",
			 get_ranges);
		tap_case("HEAD, DELETE", head_delete);
		tap_case("ListObjectsV2 with a prefix and a token to encode",
			 list_pages);
		tap_case("a key that needs percent-encoding", encoded_key);
		tap_case("s3_check", check);
		tap_case("error answers map to core/s3/s3.h's errno", errors);
		tap_case("a short body is -EAGAIN", short_body);
		tap_case("a stalled answer is cut after stall_timeout", stall);
		tap_case("a sink's error aborts the GET", sink_error);
		tap_case("a file shorter than its size is not sent",
			 short_file);
	} else {
		tap_case("every request refused with the wrong secret",
			 refused);
	}
	printf("# requests: %u\n", requests);
	s3_free(s3);
	s3_cfg_release(&cfg);
	return tap_done();
}
