/* SPDX-License-Identifier: MIT */
/*
 * The S3 client of the remote tier (core/s3/s3.h): configuration parsing,
 * request building (path-style URLs, a canonical query string, the
 * payload hash), one libcurl easy handle per connection signing with its
 * AWS SigV4 support, response parsing with expat, and the mapping of
 * every failure to one negative errno and one message.
 *
 * DESIGN NOTES
 *
 * Invariants:
 *  1. What libcurl 7.88 signs is what is sent: it takes the canonical URI
 *     and query string from the URL as they are, so keys are
 *     percent-encoded here (RFC 3986 unreserved kept, '/' kept in paths)
 *     and the query string is built sorted and encoded by s3_query(); it
 *     hashes no streamed body, so x-amz-content-sha256 is always set here
 *     (the SHA-256 of the body, of "" when there is none).
 *  2. A PUT of a file reads it twice with pread(2), never holding it: a
 *     hash pass, then the streamed body (which curl may rewind through
 *     the seek callback when a reused connection turns out to be dead).
 *     A file that changes in between is refused by the server (the hash
 *     does not match).
 *  3. The handle is reset before every request (curl_easy_reset keeps the
 *     live connections), so no option of one request leaks into the next.
 *  4. Credentials appear only in the handle's options and in s->userpwd
 *     (wiped on free): never in a message, a URL or the log.
 *  5. One call is one attempt; a failure maps to exactly one errno
 *     (core/s3/s3.h) and leaves its description in s->err.
 *
 * A listing page is buffered whole and parsed before the first callback,
 * so a cut transfer never shows a caller half a page.
 */
#include "core/s3/s3.h"
#include "core/s3/s3_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <expat.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util/array.h"

#define IO_CHUNK (256 * 1024)		 /* read size of the hash pass */
#define ERR_BODY_MAX (64 * 1024)	 /* kept of an error body */
#define LIST_BODY_MAX (32 * 1024 * 1024) /* a listing page, at most */
#define XML_TEXT_MAX (64 * 1024)	 /* one element's text, at most */
#define SHA256_HEX 65

/* ------------------------------------------------------------ buffers */

int sbuf_add(struct sbuf *b, const void *d, size_t n)
{
	size_t need, ncap;
	char *np;

	if (n > SIZE_MAX - b->len - 1)
		return -ENOMEM;
	need = b->len + n + 1;
	if (need > b->cap) {
		ncap = b->cap ? b->cap : 64;
		while (ncap < need)
			ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
		np = realloc(b->p, ncap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int sbuf_adds(struct sbuf *b, const char *s)
{
	return sbuf_add(b, s, strlen(s));
}

void sbuf_release(struct sbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
	       c == '~';
}

/*
 * Append @s percent-encoded as SigV4 wants it: RFC 3986 unreserved
 * characters as they are, '/' too when @keep_slash (a key in a path),
 * every other byte as %XX with upper-case hex digits.
 */
static int sbuf_encode(struct sbuf *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char e[3];
	int rc;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (is_unreserved(c) || (keep_slash && c == '/')) {
			rc = sbuf_add(b, s, 1);
		} else {
			e[0] = '%';
			e[1] = hex[c >> 4];
			e[2] = hex[c & 15];
			rc = sbuf_add(b, e, sizeof(e));
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ queries */

struct s3_param {
	const char *name, *value;
};

struct enc_param {
	char *name, *value;
};

static int enc_param_cmp(const void *a, const void *b)
{
	const struct enc_param *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/*
 * The query string of the @n parameters @p, in the canonical form SigV4
 * signs (libcurl 7.88 signs the query string of the URL as it is): each
 * name and value percent-encoded (only RFC 3986 unreserved characters
 * kept), the pairs sorted by encoded name then encoded value, "name=value"
 * joined by '&'. Malloc'ed in *@out. 0 or -ENOMEM.
 */
static int s3_query(const struct s3_param *p, size_t n, char **out)
{
	struct enc_param *e;
	struct sbuf b = { 0 };
	size_t i;
	int rc = 0;

	e = calloc(n ? n : 1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (i = 0; i < n && !rc; i++) {
		struct sbuf nb = { 0 }, vb = { 0 };

		rc = sbuf_encode(&nb, p[i].name, false);
		if (!rc)
			rc = sbuf_add(&nb, "", 0);
		if (!rc)
			rc = sbuf_encode(&vb, p[i].value, false);
		if (!rc)
			rc = sbuf_add(&vb, "", 0);
		e[i].name = nb.p;
		e[i].value = vb.p;
	}
	if (rc)
		goto out_free;
	qsort(e, n, sizeof(*e), enc_param_cmp);
	rc = sbuf_add(&b, "", 0);
	for (i = 0; i < n && !rc; i++) {
		if (i)
			rc = sbuf_adds(&b, "&");
		if (!rc)
			rc = sbuf_adds(&b, e[i].name);
		if (!rc)
			rc = sbuf_adds(&b, "=");
		if (!rc)
			rc = sbuf_adds(&b, e[i].value);
	}
	if (rc) {
		sbuf_release(&b);
		goto out_free;
	}
	*out = b.p;
out_free:
	for (i = 0; i < n; i++) {
		free(e[i].name);
		free(e[i].value);
	}
	free(e);
	return rc;
}

/* ------------------------------------------------------------ hashing */

static void hex_of(const unsigned char *d, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * n] = '\0';
}

/*
 * The hex SHA-256 of @size bytes: of @buf, or read from @fd with pread(2)
 * from offset 0 when @buf is NULL. -ENOMEM, -EIO (the file is shorter
 * than @size), or the -errno of pread.
 */
static int sha256_hex_each(const void *buf, int fd, uint64_t size,
			   char out[SHA256_HEX],
			   int (*each)(void *arg, const void *buf, size_t n),
			   void *arg)
{
	unsigned char md[EVP_MAX_MD_SIZE], *chunk = NULL;
	unsigned int mdlen = 0;
	uint64_t pos = 0;
	EVP_MD_CTX *ctx;
	int rc = -EIO;

	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	if (buf) {
		if (size && EVP_DigestUpdate(ctx, buf, (size_t)size) != 1)
			goto out;
	} else {
		chunk = malloc(IO_CHUNK);
		if (!chunk) {
			rc = -ENOMEM;
			goto out;
		}
		while (pos < size) {
			size_t want = size - pos < IO_CHUNK ? size - pos
							    : IO_CHUNK;
			ssize_t got = pread(fd, chunk, want, (off_t)pos);

			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0) {
				rc = -errno;
				goto out;
			}
			if (got == 0)
				goto out; /* shorter than @size */
			if (EVP_DigestUpdate(ctx, chunk, (size_t)got) != 1)
				goto out;
			if (each) {
				rc = each(arg, chunk, (size_t)got);
				if (rc)
					goto out;
				rc = -EIO;
			}
			pos += (uint64_t)got;
		}
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
		goto out;
	hex_of(md, mdlen, out);
	rc = 0;
out:
	free(chunk);
	EVP_MD_CTX_free(ctx);
	return rc;
}

static int sha256_hex(const void *buf, int fd, uint64_t size,
		      char out[SHA256_HEX])
{
	return sha256_hex_each(buf, fd, size, out, NULL, NULL);
}

/* ------------------------------------------------------- connections */

struct s3 {
	const struct s3_cfg *cfg; /* borrowed */
	CURL *curl;
	char *userpwd; /* "access:secret", wiped on free */
	char *sigv4;   /* "aws:amz:REGION:s3" */
	char curl_err[CURL_ERROR_SIZE];
	char err[512];
	long timeout; /* s3_set_timeout(): seconds a request may last, 0 */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
/*
 * Whether an "Expect:" header may remove curl's "Expect: 100-continue":
 * before 8.3.0 curl signs the removed header as an empty one, which no
 * server sees (curl issue 11664), so there the header stays, unsigned as
 * every SDK leaves it, and curl sends the body without waiting for a 100.
 */
static bool expect_removable;

static void global_init(void)
{
	const curl_version_info_data *v;

	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (global_rc != CURLE_OK)
		return;
	v = curl_version_info(CURLVERSION_NOW);
	expect_removable = v && v->version_num >= 0x080300;
}

static void s3_say(struct s3 *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void s3_say(struct s3 *s, const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	/* server text: one line, printable */
	for (p = s->err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

int s3_new(const struct s3_cfg *cfg, struct s3 **out)
{
	size_t ulen = strlen(cfg->access_key) + strlen(cfg->secret_key) + 2;
	size_t slen = strlen(cfg->region) + sizeof("aws:amz::s3");
	struct s3 *s;

	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return global_rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = cfg;
	s->userpwd = malloc(ulen);
	s->sigv4 = malloc(slen);
	s->curl = curl_easy_init();
	if (!s->userpwd || !s->sigv4 || !s->curl) {
		s3_free(s);
		return -ENOMEM;
	}
	snprintf(s->userpwd, ulen, "%s:%s", cfg->access_key, cfg->secret_key);
	snprintf(s->sigv4, slen, "aws:amz:%s:s3", cfg->region);
	*out = s;
	return 0;
}

void s3_set_timeout(struct s3 *s, long seconds)
{
	s->timeout = seconds > 0 ? seconds : 0;
}

void s3_free(struct s3 *s)
{
	if (!s)
		return;
	if (s->curl)
		curl_easy_cleanup(s->curl);
	if (s->userpwd) {
		explicit_bzero(s->userpwd, strlen(s->userpwd));
		free(s->userpwd);
	}
	free(s->sigv4);
	free(s);
}

const char *s3_last_error(struct s3 *s)
{
	return s->err;
}

/* ----------------------------------------------------------- requests */

struct s3_req {
	CURL *curl;
	const char *method; /* "GET", "PUT", "HEAD", "DELETE" */
	const char *key;    /* NULL: the bucket */
	const char *query;  /* from s3_query(), or NULL */

	/* the body of a PUT: @buf, or @fd when @buf is NULL */
	bool upload;
	const unsigned char *buf;
	int fd;
	uint64_t size, pos;
	char sha[SHA256_HEX];

	/* a GET of [off, off + len), len 0 = to the end */
	bool ranged;
	uint64_t off, len;
	int (*sink)(void *arg, const void *buf, size_t n);
	void *arg;

	struct sbuf *body; /* a 2xx body is collected here (listings) */
	struct sbuf errbody;
	long status;
	uint64_t got; /* body bytes received */
	bool have_crange;
	uint64_t crange_start, crange_total;
	char hdr_code[64], hdr_msg[256]; /* x-amz-error-code, -message */
	int cb_rc; /* an error of ours that aborted the transfer */
};

static bool status_ok(long status)
{
	return status >= 200 && status < 300;
}

static size_t read_cb(char *dst, size_t size, size_t nitems, void *arg)
{
	struct s3_req *r = arg;
	size_t want = size * nitems;
	ssize_t got;

	if (want > r->size - r->pos)
		want = (size_t)(r->size - r->pos);
	if (!want)
		return 0;
	if (r->buf) {
		memcpy(dst, r->buf + r->pos, want);
		r->pos += want;
		return want;
	}
	do {
		got = pread(r->fd, dst, want, (off_t)r->pos);
	} while (got < 0 && errno == EINTR);
	if (got <= 0) {
		r->cb_rc = got < 0 ? -errno : -EIO;
		return CURL_READFUNC_ABORT;
	}
	r->pos += (uint64_t)got;
	return (size_t)got;
}

static int seek_cb(void *arg, curl_off_t offset, int origin)
{
	struct s3_req *r = arg;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->size)
		return CURL_SEEKFUNC_CANTSEEK;
	r->pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static void hdr_value(const char *line, size_t n, size_t name_len, char *out,
		      size_t outlen)
{
	const char *v = line + name_len, *e = line + n;

	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
		e--;
	snprintf(out, outlen, "%.*s", (int)(e - v), v);
}

static size_t header_cb(char *line, size_t size, size_t nitems, void *arg)
{
	static const char crange[] = "content-range:";
	static const char code[] = "x-amz-error-code:";
	static const char msg[] = "x-amz-error-message:";
	struct s3_req *r = arg;
	size_t n = size * nitems;
	char v[128];

	if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
		/* a new response (after an interim one): forget the last */
		r->have_crange = false;
		r->hdr_code[0] = r->hdr_msg[0] = '\0';
	} else if (n > sizeof(crange) &&
		   !strncasecmp(line, crange, sizeof(crange) - 1)) {
		unsigned long long a, b, t;

		hdr_value(line, n, sizeof(crange) - 1, v, sizeof(v));
		if (sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) == 3) {
			r->have_crange = true;
			r->crange_start = a;
			r->crange_total = t;
		}
	} else if (n > sizeof(code) &&
		   !strncasecmp(line, code, sizeof(code) - 1)) {
		hdr_value(line, n, sizeof(code) - 1, r->hdr_code,
			  sizeof(r->hdr_code));
	} else if (n > sizeof(msg) &&
		   !strncasecmp(line, msg, sizeof(msg) - 1)) {
		hdr_value(line, n, sizeof(msg) - 1, r->hdr_msg,
			  sizeof(r->hdr_msg));
	}
	return n;
}

static size_t write_cb(char *data, size_t size, size_t nitems, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nitems;
	uint64_t pos = r->got, lo, hi;
	int rc;

	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &r->status);
	r->got += n;
	if (!status_ok(r->status)) {
		if (r->errbody.len < ERR_BODY_MAX &&
		    sbuf_add(&r->errbody, data,
			     n < ERR_BODY_MAX - r->errbody.len
				     ? n
				     : ERR_BODY_MAX - r->errbody.len))
			r->cb_rc = -ENOMEM;
		return r->cb_rc ? 0 : n;
	}
	if (r->body) {
		if (r->body->len + n > LIST_BODY_MAX)
			r->cb_rc = -EIO;
		else if (sbuf_add(r->body, data, n))
			r->cb_rc = -ENOMEM;
		return r->cb_rc ? 0 : n;
	}
	if (!r->sink)
		return n;
	lo = pos;
	hi = pos + n;
	if (r->ranged && r->status == 200) {
		/* the whole object although a range was asked: keep the
		 * range */
		lo = lo > r->off ? lo : r->off;
		if (r->len && hi > r->off + r->len)
			hi = r->off + r->len;
	}
	if (lo >= hi)
		return n;
	rc = r->sink(r->arg, data + (lo - pos), (size_t)(hi - lo));
	if (rc < 0) {
		r->cb_rc = rc;
		return 0;
	}
	return n;
}

/* ------------------------------------------------------------- errors */

static bool code_is(const char *code, const char *const *list)
{
	for (; code && *list; list++)
		if (!strcmp(code, *list))
			return true;
	return false;
}

/* core/s3/s3.h's mapping of an HTTP failure (@code: S3's error code, or
 * NULL). */
static int http_errno(long status, const char *code)
{
	/* codes that S3 and the S3-compatible servers use for "full" */
	static const char *const full[] = {
		"InsufficientStorage", "StorageFull",	 "XMinioStorageFull",
		"QuotaExceeded",       "NotEnoughSpace", NULL
	};
	static const char *const retry[] = { "SlowDown",
					     "RequestTimeout",
					     "InternalError",
					     "ServiceUnavailable",
					     "Throttling",
					     "ThrottlingException",
					     "RequestTimeTooSkewed",
					     NULL };

	if (status == 507 || code_is(code, full))
		return -ENOSPC;
	if (status == 404)
		return -ENOENT;
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 416)
		return -ERANGE;
	if (status == 408 || status == 429 || status == 500 || status == 502 ||
	    status == 503 || status == 504 || code_is(code, retry))
		return -EAGAIN;
	return -EIO;
}

static int curl_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SEND_FAIL_REWIND:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

static int http_error(struct s3 *s, struct s3_req *r, char *code,
		      size_t codelen)
{
	struct xml x = { 0 };
	const char *c = NULL, *m = NULL;
	int rc;

	if (r->errbody.len && !xml_parse(&x, r->errbody.p, r->errbody.len) &&
	    x.root == ROOT_ERROR) {
		c = x.code;
		m = x.message;
	}
	if (!c && r->hdr_code[0])
		c = r->hdr_code;
	if (!m && r->hdr_msg[0])
		m = r->hdr_msg;
	rc = http_errno(r->status, c);
	if (c)
		s3_say(s, "HTTP %ld %s: %s", r->status, c, m ? m : "");
	else
		s3_say(s, "HTTP %ld", r->status);
	snprintf(code, codelen, "%s", c ? c : "");
	xml_release(&x);
	return rc;
}

/* ------------------------------------------------------------ perform */

#define EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static int build_url(const struct s3_cfg *cfg, const struct s3_req *r,
		     struct sbuf *url)
{
	int rc = sbuf_adds(url, cfg->endpoint);

	if (!rc)
		rc = sbuf_adds(url, "/");
	if (!rc)
		rc = sbuf_encode(url, cfg->bucket, false);
	if (!rc && r->key) {
		rc = sbuf_adds(url, "/");
		if (!rc)
			rc = sbuf_encode(url, r->key, true);
	}
	if (!rc && r->query && *r->query) {
		rc = sbuf_adds(url, "?");
		if (!rc)
			rc = sbuf_adds(url, r->query);
	}
	return rc;
}

static int build_headers(const struct s3 *s, const struct s3_req *r,
			 struct curl_slist **out)
{
	struct curl_slist *h = NULL, *n;
	struct sbuf line = { 0 };
	int rc;

	rc = sbuf_adds(&line, "x-amz-content-sha256: ");
	if (!rc)
		rc = sbuf_adds(&line, r->sha[0] ? r->sha : EMPTY_SHA256);
	if (rc)
		goto out;
	n = curl_slist_append(h, line.p);
	if (!n)
		goto nomem;
	h = n;
	if (s->cfg->session_token) {
		line.len = 0;
		rc = sbuf_adds(&line, "x-amz-security-token: ");
		if (!rc)
			rc = sbuf_adds(&line, s->cfg->session_token);
		if (rc)
			goto out;
		n = curl_slist_append(h, line.p);
		explicit_bzero(line.p, line.len);
		if (!n)
			goto nomem;
		h = n;
	}
	if (r->upload && expect_removable) {
		/* no 100-continue round trip before each body */
		n = curl_slist_append(h, "Expect:");
		if (!n)
			goto nomem;
		h = n;
	}
	*out = h;
	h = NULL;
	goto out;
nomem:
	rc = -ENOMEM;
out:
	curl_slist_free_all(h);
	sbuf_release(&line);
	return rc;
}

#define SETOPT(opt, val)                                    \
	do {                                                \
		if (cc == CURLE_OK)                         \
			cc = curl_easy_setopt(c, opt, val); \
	} while (0)

/* Set up the handle for @r (after a reset: invariant 3). */
static CURLcode set_options(struct s3 *s, struct s3_req *r, const char *url,
			    struct curl_slist *hdrs, const char *range)
{
	const struct s3_cfg *cfg = s->cfg;
	CURL *c = s->curl;
	CURLcode cc = CURLE_OK;

	curl_easy_reset(c);
	SETOPT(CURLOPT_URL, url);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_PATH_AS_IS, 1L); /* "." and ".." are key names */
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_ERRORBUFFER, s->curl_err);
	SETOPT(CURLOPT_USERAGENT, "tallyfs/" TALLY_VERSION);
	SETOPT(CURLOPT_USERPWD, s->userpwd);
	SETOPT(CURLOPT_AWS_SIGV4, s->sigv4);
	SETOPT(CURLOPT_HTTPHEADER, hdrs);
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(CURLOPT_CONNECTTIMEOUT,
	       cfg->connect_timeout > 0 ? cfg->connect_timeout : 10L);
	if (s->timeout > 0)
		SETOPT(CURLOPT_TIMEOUT, s->timeout);
	SETOPT(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SETOPT(CURLOPT_LOW_SPEED_TIME,
	       cfg->stall_timeout > 0 ? cfg->stall_timeout : 30L);
	SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
	SETOPT(CURLOPT_HEADERDATA, r);
	SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(CURLOPT_WRITEDATA, r);
	if (!strcmp(r->method, "HEAD")) {
		SETOPT(CURLOPT_NOBODY, 1L);
	} else if (!strcmp(r->method, "DELETE")) {
		SETOPT(CURLOPT_CUSTOMREQUEST, "DELETE");
	} else if (r->upload) {
		SETOPT(CURLOPT_UPLOAD, 1L);
		SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->size);
		SETOPT(CURLOPT_READFUNCTION, read_cb);
		SETOPT(CURLOPT_READDATA, r);
		SETOPT(CURLOPT_SEEKFUNCTION, seek_cb);
		SETOPT(CURLOPT_SEEKDATA, r);
		/* no 100-continue round trip (see expect_removable) */
		if (!expect_removable)
			SETOPT(CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
	}
	if (range)
		SETOPT(CURLOPT_RANGE, range);
	return cc;
}

/*
 * Issue @r once. 0 on a 2xx answer; otherwise the errno of core/s3/s3.h,
 * with s->err saying why and @code (of @codelen bytes, may be NULL)
 * receiving S3's error code ("" if none).
 */
static int perform(struct s3 *s, struct s3_req *r, char *code, size_t codelen)
{
	struct curl_slist *hdrs = NULL;
	struct sbuf url = { 0 };
	char range[48], nocode[64];
	const char *rg = NULL;
	CURLcode cc;
	int rc;

	if (!code) {
		code = nocode;
		codelen = sizeof(nocode);
	}
	code[0] = '\0';
	s->err[0] = '\0';
	s->curl_err[0] = '\0';
	r->curl = s->curl;
	if (r->ranged) {
		if (r->len)
			snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64,
				 r->off, r->off + r->len - 1);
		else
			snprintf(range, sizeof(range), "%" PRIu64 "-", r->off);
		rg = range;
	}
	rc = build_url(s->cfg, r, &url);
	if (!rc)
		rc = build_headers(s, r, &hdrs);
	if (rc) {
		s3_say(s, "out of memory");
		goto out;
	}
	cc = set_options(s, r, url.p, hdrs, rg);
	if (cc != CURLE_OK) {
		rc = cc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
		s3_say(s, "setting up the request: %s", curl_easy_strerror(cc));
		goto out_reset;
	}
	cc = curl_easy_perform(s->curl);
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->cb_rc) {
		rc = r->cb_rc;
		if (r->upload)
			s3_say(s, "%s: reading the file: %s", r->method,
			       rc == -EIO ? "shorter than its size"
					  : strerror(-rc));
		else if (r->body && rc == -EIO)
			s3_say(s, "%s: the listing exceeds %d bytes", r->method,
			       LIST_BODY_MAX);
		else
			s3_say(s, "%s: aborted: %s", r->method, strerror(-rc));
	} else if (cc != CURLE_OK) {
		rc = curl_errno(cc);
		s3_say(s, "%s",
		       s->curl_err[0] ? s->curl_err : curl_easy_strerror(cc));
	} else if (!status_ok(r->status)) {
		rc = http_error(s, r, code, codelen);
	}
out_reset:
	/* the handle must not keep pointers to what is freed below */
	curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, NULL);
out:
	curl_slist_free_all(hdrs);
	sbuf_release(&url);
	sbuf_release(&r->errbody);
	return rc;
}

/* --------------------------------------------------------- operations */

int s3_put_fd(struct s3 *s, const char *key, int fd, uint64_t size)
{
	return s3_put_fd_each(s, key, fd, size, NULL, NULL);
}

int s3_put_fd_each(struct s3 *s, const char *key, int fd, uint64_t size,
		   int (*each)(void *arg, const void *buf, size_t n), void *arg)
{
	struct s3_req r = { .method = "PUT",
			    .key = key,
			    .upload = true,
			    .fd = fd,
			    .size = size };
	int rc;

	s->err[0] = '\0';
	rc = sha256_hex_each(NULL, fd, size, r.sha, each, arg);
	if (!rc && each)
		rc = each(arg, NULL, 0); /* the end of the pass */
	if (rc && each && rc != -EIO && rc != -ENOMEM) {
		s3_say(s, "PUT: the file was refused before it was sent: %s",
		       strerror(-rc));
		return rc;
	}
	if (rc) {
		s3_say(s, "PUT: hashing the file: %s",
		       rc == -EIO ? "shorter than its size" : strerror(-rc));
		return rc;
	}
	return perform(s, &r, NULL, 0);
}

int s3_put_buf(struct s3 *s, const char *key, const void *buf, size_t len)
{
	struct s3_req r = { .method = "PUT",
			    .key = key,
			    .upload = true,
			    .buf = len ? buf : (const void *)"",
			    .size = len };
	int rc;

	s->err[0] = '\0';
	rc = sha256_hex(r.buf, -1, len, r.sha);
	if (rc) {
		s3_say(s, "PUT: hashing the body: %s", strerror(-rc));
		return rc;
	}
	return perform(s, &r, NULL, 0);
}

int s3_get(struct s3 *s, const char *key, uint64_t off, uint64_t len,
	   int (*sink)(void *arg, const void *buf, size_t n), void *arg,
	   uint64_t *total)
{
	struct s3_req r = { .method = "GET",
			    .key = key,
			    .ranged = off || len,
			    .off = off,
			    .len = len,
			    .sink = sink,
			    .arg = arg };
	curl_off_t cl = -1;
	uint64_t t;
	int rc;

	if (len && off > UINT64_MAX - (len - 1)) {
		s3_say(s, "GET: range past 2^64");
		return -EINVAL;
	}
	rc = perform(s, &r, NULL, 0);
	if (rc)
		return rc;
	if (r.status == 206) {
		if (!r.have_crange || r.crange_start != off) {
			s3_say(s, "GET: HTTP 206 without the range asked for");
			return -EIO;
		}
		t = r.crange_total;
	} else {
		curl_easy_getinfo(s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
				  &cl);
		t = cl >= 0 ? (uint64_t)cl : r.got;
		if (r.ranged && off >= t) {
			s3_say(s,
			       "GET: offset %" PRIu64
			       " past the end of %" PRIu64 " bytes",
			       off, t);
			return -ERANGE;
		}
	}
	if (total)
		*total = t;
	return 0;
}

int s3_head(struct s3 *s, const char *key, uint64_t *size)
{
	struct s3_req r = { .method = "HEAD", .key = key };
	curl_off_t cl = -1;
	int rc;

	rc = perform(s, &r, NULL, 0);
	if (rc)
		return rc;
	curl_easy_getinfo(s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (cl < 0) {
		s3_say(s, "HEAD: no Content-Length in the answer");
		return -EIO;
	}
	*size = (uint64_t)cl;
	return 0;
}

int s3_delete(struct s3 *s, const char *key)
{
	struct s3_req r = { .method = "DELETE", .key = key };
	char code[64];
	int rc;

	rc = perform(s, &r, code, sizeof(code));
	/* some S3-compatible servers say 404 where S3 says 204 */
	if (rc == -ENOENT && !strcmp(code, "NoSuchKey")) {
		s->err[0] = '\0';
		rc = 0;
	}
	return rc;
}

int s3_list(struct s3 *s, const char *prefix, const char *token, unsigned max,
	    int (*fn)(void *arg, const char *key, uint64_t size), void *arg,
	    char **next)
{
	struct s3_param p[4];
	struct s3_req r = { .method = "GET" };
	struct sbuf body = { 0 };
	struct xml x = { 0 };
	char maxs[16], *query = NULL;
	size_t n = 0, i;
	int rc;

	p[n++] = (struct s3_param){ "list-type", "2" };
	if (prefix && *prefix)
		p[n++] = (struct s3_param){ "prefix", prefix };
	if (max) {
		snprintf(maxs, sizeof(maxs), "%u", max);
		p[n++] = (struct s3_param){ "max-keys", maxs };
	}
	if (token)
		p[n++] = (struct s3_param){ "continuation-token", token };
	rc = s3_query(p, n, &query);
	if (rc) {
		s3_say(s, "out of memory");
		return rc;
	}
	r.query = query;
	r.body = &body;
	rc = perform(s, &r, NULL, 0);
	if (rc)
		goto out;
	rc = xml_parse(&x, body.p ? body.p : "", body.len);
	if (!rc && x.root != ROOT_LIST) {
		rc = -EIO;
		x.why = "not a ListBucketResult";
	}
	if (!rc && x.truncated && (!x.token || !*x.token)) {
		rc = -EIO;
		x.why = "truncated without a NextContinuationToken";
	}
	if (rc) {
		s3_say(s, "GET: malformed listing: %s",
		       x.why ? x.why : "out of memory");
		goto out;
	}
	for (i = 0; i < x.n; i++) {
		rc = fn(arg, x.entries[i].key, x.entries[i].size);
		if (rc)
			goto out;
	}
	*next = x.truncated ? x.token : NULL;
	if (x.truncated)
		x.token = NULL;
out:
	xml_release(&x);
	sbuf_release(&body);
	free(query);
	return rc;
}

static int list_none(void *arg, const char *key, uint64_t size)
{
	(void)arg;
	(void)key;
	(void)size;
	return 0;
}

int s3_check(struct s3 *s)
{
	struct sbuf pre = { 0 };
	char *next = NULL;
	int rc = 0;

	if (*s->cfg->prefix) {
		rc = sbuf_adds(&pre, s->cfg->prefix);
		if (!rc)
			rc = sbuf_adds(&pre, "/");
		if (rc) {
			s3_say(s, "out of memory");
			return rc;
		}
	}
	rc = s3_list(s, pre.p ? pre.p : "", NULL, 1, list_none, NULL, &next);
	free(next);
	sbuf_release(&pre);
	return rc;
}
