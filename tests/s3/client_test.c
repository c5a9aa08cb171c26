/* SPDX-License-Identifier: MIT */
/*
 * core/s3/s3.c against a real S3 server (s3rver, which checks signatures),
 * run by tests/s3/test_client.sh: PUT, whole and ranged GETs compared
 * byte for byte, HEAD, DELETE, listings in pages, prefixes, keys that
 * need encoding, and the errno of each failure: wrong secret, no such
 * bucket, nobody listening, the server killed and restarted under one
 * struct s3. Prints TAP. To have the server killed or restarted it prints
 * "@kill" or "@restart" and waits for the script's "done" on stdin.
 *
 *   s3_client_test   (S3_ENDPOINT, S3_BUCKET, AWS_ACCESS_KEY_ID,
 *                     AWS_SECRET_ACCESS_KEY: tests/s3/lib.sh's s3_start)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/s3/s3test.h"

#define BIG_SIZE (3 * 1024 * 1024 + 17)
#define NLIST 25
#define PAGE 7
#define ENC_KEY "enc/a b+c=d&e?f#g%h~i*j'k(l)m!n,o;p:q@r$s/\xc3\xa9.x"
/* s3rver escapes '&' and '\'' twice in listings: listed keys avoid them */
#define LISTED_KEY "enc/a b+c=d?f#g%h~i*j(l)m!n,o;p:q@r$s/\xc3\xa9.y"

static struct s3_cfg cfg;
static struct s3 *s3;
static unsigned char *big;
static char tmpl[] = "/tmp/tallyfs-s3c.XXXXXX";
static int big_fd = -1;

/* The full key of @rel under the test's prefix. */
static const char *key(const char *rel)
{
	static char k[4][512];
	static unsigned i;
	char *out = k[i++ % 4];

	if (s3_key(&cfg, rel, out, sizeof(k[0])))
		abort();
	return out;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint8_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint8_t)(rnd_state >> 24);
}

/* Ask the script to do @what to the server; true once done. */
static bool ask(const char *what)
{
	char line[64];

	printf("@%s\n", what);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	return !strcmp(line, "done\n");
}

static void check_ok(void)
{
	int rc = s3_check(s3);

	EXPECT(rc == 0, "%s: %s", errname(rc), s3_last_error(s3));
	EXPECT(!strcmp(s3_last_error(s3), ""), "error [%s] after a success",
	       s3_last_error(s3));
}

static void put_get(void)
{
	struct membuf m = { 0 };
	uint64_t total = 0, size = 0;
	int rc;

	rc = s3_put_fd(s3, key("objects/big"), big_fd, BIG_SIZE);
	REQUIRE(rc == 0, "PUT: %s: %s", errname(rc), s3_last_error(s3));

	rc = s3_get(s3, key("objects/big"), 0, 0, membuf_sink, &m, &total);
	EXPECT(rc == 0, "GET: %s: %s", errname(rc), s3_last_error(s3));
	EXPECT(total == BIG_SIZE, "total %llu", (unsigned long long)total);
	EXPECT(m.len == BIG_SIZE && !memcmp(m.p, big, BIG_SIZE),
	       "whole GET: %zu bytes, or other bytes", m.len);
	EXPECT(m.calls > 1, "the body came in %zu piece(s)", m.calls);
	membuf_release(&m);

	rc = s3_get(s3, key("objects/big"), 1000, 5000, membuf_sink, &m,
		    &total);
	EXPECT(rc == 0, "ranged GET: %s: %s", errname(rc), s3_last_error(s3));
	EXPECT(total == BIG_SIZE, "total %llu", (unsigned long long)total);
	EXPECT(m.len == 5000 && !memcmp(m.p, big + 1000, 5000),
	       "ranged GET: %zu bytes, or other bytes", m.len);
	membuf_release(&m);

	/* a range over the end: what is there */
	rc = s3_get(s3, key("objects/big"), BIG_SIZE - 10, 100, membuf_sink, &m,
		    &total);
	EXPECT(rc == 0 && m.len == 10 && !memcmp(m.p, big + BIG_SIZE - 10, 10),
	       "over the end: %s, %zu bytes", errname(rc), m.len);
	membuf_release(&m);

	/* from an offset to the end */
	rc = s3_get(s3, key("objects/big"), BIG_SIZE - 100, 0, membuf_sink, &m,
		    &total);
	EXPECT(rc == 0 && m.len == 100 &&
		       !memcmp(m.p, big + BIG_SIZE - 100, 100),
	       "to the end: %s, %zu bytes", errname(rc), m.len);
	membuf_release(&m);

	rc = s3_get(s3, key("objects/big"), BIG_SIZE, 10, membuf_sink, &m,
		    &total);
	EXPECT(rc == -ERANGE && m.len == 0, "past the end: %s, %zu bytes: %s",
	       errname(rc), m.len, s3_last_error(s3));
	membuf_release(&m);

	rc = s3_head(s3, key("objects/big"), &size);
	EXPECT(rc == 0 && size == BIG_SIZE, "HEAD: %s, %llu", errname(rc),
	       (unsigned long long)size);
}

static void put_buf(void)
{
	struct membuf m = { 0 };
	uint64_t size = 1, total = 1;
	int rc;

	rc = s3_put_buf(s3, key("meta/index"), "hello", 5);
	EXPECT(rc == 0, "PUT: %s: %s", errname(rc), s3_last_error(s3));
	rc = s3_get(s3, key("meta/index"), 0, 0, membuf_sink, &m, &total);
	EXPECT(rc == 0 && m.len == 5 && !memcmp(m.p, "hello", 5) && total == 5,
	       "GET: %s, %zu bytes", errname(rc), m.len);
	membuf_release(&m);

	rc = s3_put_buf(s3, key("meta/empty"), NULL, 0);
	EXPECT(rc == 0, "empty PUT: %s: %s", errname(rc), s3_last_error(s3));
	rc = s3_head(s3, key("meta/empty"), &size);
	EXPECT(rc == 0 && size == 0, "HEAD: %s, %llu", errname(rc),
	       (unsigned long long)size);
	rc = s3_get(s3, key("meta/empty"), 0, 0, membuf_sink, &m, &total);
	EXPECT(rc == 0 && m.len == 0 && total == 0, "GET: %s, %zu bytes",
	       errname(rc), m.len);
	membuf_release(&m);
}

static void missing(void)
{
	struct membuf m = { 0 };
	uint64_t size;
	int rc;

	rc = s3_head(s3, key("objects/none"), &size);
	EXPECT(rc == -ENOENT, "HEAD: %s: %s", errname(rc), s3_last_error(s3));
	EXPECT(strstr(s3_last_error(s3), "HTTP 404"), "[%s]",
	       s3_last_error(s3));
	rc = s3_get(s3, key("objects/none"), 0, 0, membuf_sink, &m, NULL);
	EXPECT(rc == -ENOENT, "GET: %s: %s", errname(rc), s3_last_error(s3));
	EXPECT(strstr(s3_last_error(s3), "HTTP 404 NoSuchKey"), "[%s]",
	       s3_last_error(s3));
	EXPECT(m.len == 0, "the error body reached the sink");
	membuf_release(&m);
}

static void delete (void)
{
	uint64_t size;
	int rc;

	rc = s3_put_buf(s3, key("objects/gone"), "x", 1);
	REQUIRE(rc == 0, "PUT: %s: %s", errname(rc), s3_last_error(s3));
	rc = s3_delete(s3, key("objects/gone"));
	EXPECT(rc == 0, "DELETE: %s: %s", errname(rc), s3_last_error(s3));
	rc = s3_head(s3, key("objects/gone"), &size);
	EXPECT(rc == -ENOENT, "HEAD after DELETE: %s", errname(rc));
	rc = s3_delete(s3, key("objects/gone"));
	EXPECT(rc == 0, "DELETE again: %s: %s", errname(rc), s3_last_error(s3));
}

static void list_pages(void)
{
	struct keylist l = { 0 };
	char rel[64], *token = NULL, *next = NULL;
	size_t pages = 0, sizes[5] = { 0 }, i;
	bool encoded = false;
	int rc;

	for (i = 0; i < NLIST; i++) {
		snprintf(rel, sizeof(rel), "list/k%02zu", i);
		rc = s3_put_buf(s3, key(rel), big, i);
		REQUIRE(rc == 0, "PUT %s: %s", rel, s3_last_error(s3));
	}
	/* neighbours that the prefix "list/" must leave out */
	REQUIRE(!s3_put_buf(s3, key("listx/other"), "x", 1), "PUT listx");
	REQUIRE(!s3_put_buf(s3, key("lis"), "x", 1), "PUT lis");
	do {
		size_t before = l.n;

		rc = s3_list(s3, key("list/"), token, PAGE, keylist_add, &l,
			     &next);
		REQUIRE(rc == 0, "page %zu: %s: %s", pages, errname(rc),
			s3_last_error(s3));
		if (pages < 5)
			sizes[pages] = l.n - before;
		pages++;
		if (next && strpbrk(next, "+/="))
			encoded = true;
		free(token);
		token = next;
	} while (token && pages < 10);
	free(token);
	EXPECT(pages == 4, "%zu pages", pages);
	EXPECT(sizes[0] == PAGE && sizes[1] == PAGE && sizes[2] == PAGE &&
		       sizes[3] == NLIST - 3 * PAGE,
	       "pages of %zu, %zu, %zu, %zu keys", sizes[0], sizes[1], sizes[2],
	       sizes[3]);
	EXPECT(encoded, "no token needed encoding ('+', '/' or '=')");
	EXPECT(l.n == NLIST, "%zu keys", l.n);
	for (i = 0; i < l.n && i < NLIST; i++) {
		snprintf(rel, sizeof(rel), "list/k%02zu", i);
		EXPECT(!strcmp(l.keys[i], key(rel)) && l.sizes[i] == i,
		       "key %zu: %s (%llu bytes)", i, l.keys[i],
		       (unsigned long long)l.sizes[i]);
	}
	keylist_release(&l);

	rc = s3_list(s3, key("listx/"), NULL, 0, keylist_add, &l, &next);
	EXPECT(rc == 0 && l.n == 1 && !strcmp(l.keys[0], key("listx/other")) &&
		       !next,
	       "listx/: %s, %zu keys", errname(rc), l.n);
	keylist_release(&l);
}

static void encoded_key(void)
{
	struct membuf m = { 0 };
	struct keylist l = { 0 };
	uint64_t size = 0;
	char *next = NULL;
	int rc;

	rc = s3_put_buf(s3, key(ENC_KEY), "encoded", 7);
	REQUIRE(rc == 0, "PUT: %s: %s", errname(rc), s3_last_error(s3));
	rc = s3_head(s3, key(ENC_KEY), &size);
	EXPECT(rc == 0 && size == 7, "HEAD: %s, %llu", errname(rc),
	       (unsigned long long)size);
	rc = s3_get(s3, key(ENC_KEY), 2, 3, membuf_sink, &m, NULL);
	EXPECT(rc == 0 && m.len == 3 && !memcmp(m.p, "cod", 3),
	       "GET: %s, %zu bytes", errname(rc), m.len);
	membuf_release(&m);
	rc = s3_delete(s3, key(ENC_KEY));
	EXPECT(rc == 0, "DELETE: %s: %s", errname(rc), s3_last_error(s3));
	rc = s3_head(s3, key(ENC_KEY), &size);
	EXPECT(rc == -ENOENT, "HEAD after DELETE: %s", errname(rc));

	rc = s3_put_buf(s3, key(LISTED_KEY), "listed", 6);
	REQUIRE(rc == 0, "PUT: %s: %s", errname(rc), s3_last_error(s3));
	rc = s3_list(s3, key("enc/"), NULL, 0, keylist_add, &l, &next);
	EXPECT(rc == 0 && l.n == 1 && !strcmp(l.keys[0], key(LISTED_KEY)) &&
		       l.sizes[0] == 6,
	       "list: %s, %zu keys, [%s]", errname(rc), l.n,
	       l.n ? l.keys[0] : "");
	keylist_release(&l);
}

/* @c, @s: a copy of the configuration and a connection with it. */
static bool other_conn(struct s3_cfg *c, struct s3 **s)
{
	int rc = s3_new(c, s);

	if (rc)
		printf("# s3_new: %s\n", errname(rc));
	return !rc;
}

static void wrong_secret(void)
{
	struct s3_cfg c = cfg;
	struct s3 *s;
	int rc;

	c.secret_key = "NotTheSecret42";
	REQUIRE(other_conn(&c, &s), "connection");
	rc = s3_check(s);
	EXPECT(rc == -EACCES, "check: %s: %s", errname(rc), s3_last_error(s));
	EXPECT(strstr(s3_last_error(s), "HTTP 403 SignatureDoesNotMatch: "),
	       "[%s]", s3_last_error(s));
	EXPECT(!strstr(s3_last_error(s), "NotTheSecret42"), "secret shown");
	rc = s3_put_buf(s, key("objects/refused"), "x", 1);
	EXPECT(rc == -EACCES, "PUT: %s: %s", errname(rc), s3_last_error(s));
	s3_free(s);
}

static void no_bucket(void)
{
	struct s3_cfg c = cfg;
	struct s3 *s;
	uint64_t size;
	int rc;

	c.bucket = "no-such-bucket";
	REQUIRE(other_conn(&c, &s), "connection");
	rc = s3_check(s);
	EXPECT(rc == -ENOENT, "check: %s: %s", errname(rc), s3_last_error(s));
	EXPECT(strstr(s3_last_error(s), "NoSuchBucket"), "[%s]",
	       s3_last_error(s));
	rc = s3_head(s, key("objects/big"), &size);
	EXPECT(rc == -ENOENT, "HEAD: %s: %s", errname(rc), s3_last_error(s));
	s3_free(s);
}

/* A port of 127.0.0.1 that nobody listens on (it was free a moment ago). */
static int closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd, port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (!bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &len))
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static void unreachable(void)
{
	struct s3_cfg c = cfg;
	char ep[64];
	struct s3 *s;
	uint64_t size;
	int rc, port = closed_port();

	REQUIRE(port > 0, "no port");
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
	c.endpoint = ep;
	REQUIRE(other_conn(&c, &s), "connection");
	rc = s3_check(s);
	EXPECT(rc == -EAGAIN, "check: %s: %s", errname(rc), s3_last_error(s));
	EXPECT(*s3_last_error(s), "no message");
	rc = s3_head(s, key("objects/big"), &size);
	EXPECT(rc == -EAGAIN, "HEAD: %s: %s", errname(rc), s3_last_error(s));
	s3_free(s);
}

static void kill_restart(void)
{
	struct membuf m = { 0 };
	uint64_t size = 0;
	int rc;

	/* a live connection first */
	rc = s3_head(s3, key("objects/big"), &size);
	REQUIRE(rc == 0, "HEAD: %s: %s", errname(rc), s3_last_error(s3));
	REQUIRE(ask("kill"), "the server was not killed");
	rc = s3_head(s3, key("objects/big"), &size);
	EXPECT(rc == -EAGAIN, "HEAD, server dead: %s: %s", errname(rc),
	       s3_last_error(s3));
	rc = s3_put_buf(s3, key("meta/while-dead"), "x", 1);
	EXPECT(rc == -EAGAIN, "PUT, server dead: %s: %s", errname(rc),
	       s3_last_error(s3));
	REQUIRE(ask("restart"), "the server was not restarted");
	rc = s3_head(s3, key("objects/big"), &size);
	EXPECT(rc == 0 && size == BIG_SIZE, "HEAD after restart: %s: %s",
	       errname(rc), s3_last_error(s3));
	rc = s3_get(s3, key("objects/big"), 0, 0, membuf_sink, &m, NULL);
	EXPECT(rc == 0 && m.len == BIG_SIZE && !memcmp(m.p, big, BIG_SIZE),
	       "GET after restart: %s, %zu bytes", errname(rc), m.len);
	membuf_release(&m);
	rc = s3_put_fd(s3, key("objects/after"), big_fd, BIG_SIZE);
	EXPECT(rc == 0, "PUT after restart: %s: %s", errname(rc),
	       s3_last_error(s3));
	/* and once more, after a clean stop: a connection closed by the
	 * server between requests */
	REQUIRE(ask("restart"), "the server was not restarted");
	rc = s3_put_fd(s3, key("objects/after2"), big_fd, BIG_SIZE);
	EXPECT(rc == 0, "PUT after a second restart: %s: %s", errname(rc),
	       s3_last_error(s3));
	rc = s3_head(s3, key("objects/after2"), &size);
	EXPECT(rc == 0 && size == BIG_SIZE, "HEAD: %s", errname(rc));
}

int main(void)
{
	char url[128], err[256];
	size_t i;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(url, sizeof(url), "s3://%s/t", need_env("S3_BUCKET"));
	rc = s3_cfg_parse(&cfg, url, need_env("S3_ENDPOINT"), NULL, err,
			  sizeof(err));
	if (rc) {
		fprintf(stderr, "s3_cfg_parse: %s\n", err);
		return 2;
	}
	rc = s3_new(&cfg, &s3);
	if (rc) {
		fprintf(stderr, "s3_new: %s\n", strerror(-rc));
		return 2;
	}
	big = malloc(BIG_SIZE);
	big_fd = mkstemp(tmpl);
	if (!big || big_fd < 0) {
		fprintf(stderr, "no room for the test file\n");
		return 2;
	}
	unlink(tmpl);
	for (i = 0; i < BIG_SIZE; i++)
		big[i] = rnd();
	if (write(big_fd, big, BIG_SIZE) != BIG_SIZE) {
		fprintf(stderr, "cannot write the test file\n");
		return 2;
	}

	tap_case("s3_check: the bucket is there, the credentials work",
		 check_ok);
	tap_case("PUT of a file, whole and ranged GETs, HEAD", put_get);
	tap_case("PUT of a buffer and of an empty object", put_buf);
	tap_case("a missing key: -ENOENT", missing);
	tap_case("DELETE, and DELETE of a missing key", delete);
	tap_case("25 keys listed 7 at a time: 4 pages, each key once, in "
		 "order, the prefix respected",
		 list_pages);
	tap_case("a key that needs percent-encoding", encoded_key);
	tap_case("a wrong secret: -EACCES, SignatureDoesNotMatch",
		 wrong_secret);
	tap_case("no such bucket: -ENOENT", no_bucket);
	tap_case("nobody listening: -EAGAIN", unreachable);
	tap_case("server killed: -EAGAIN; restarted: the same connection "
		 "works",
		 kill_restart);

	s3_free(s3);
	s3_cfg_release(&cfg);
	close(big_fd);
	free(big);
	return tap_done();
}
