/* SPDX-License-Identifier: MIT */
/*
 * The S3 client's configuration (core/s3/s3.h): the bucket URL, the
 * endpoint and the region checked, the credentials found as every S3
 * tool finds them, and the full keys under the prefix. The DESIGN NOTES
 * of core/s3/s3.c hold here.
 */
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

/* ----------------------------------------------------- configuration */

static void say(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* S3's bucket naming rules: 3 to 63 of [a-z0-9.-], a letter or digit at
 * both ends. */
static bool bucket_ok(const char *b, size_t n)
{
	size_t i;

	if (n < 3 || n > 63 || !is_lower_alnum(b[0]) ||
	    !is_lower_alnum(b[n - 1]))
		return false;
	for (i = 0; i < n; i++)
		if (!is_lower_alnum(b[i]) && b[i] != '.' && b[i] != '-')
			return false;
	return true;
}

static int cfg_url(struct s3_cfg *cfg, const char *url, char *err,
		   size_t errlen)
{
	const char *b, *slash, *pre;
	size_t n, i;

	if (!url || strncmp(url, "s3://", 5)) {
		say(err, errlen, "'%s': not an s3://BUCKET[/PREFIX] URL",
		    url ? url : "");
		return -EINVAL;
	}
	b = url + 5;
	slash = strchr(b, '/');
	n = slash ? (size_t)(slash - b) : strlen(b);
	if (!bucket_ok(b, n)) {
		say(err, errlen,
		    "'%.*s': not a valid bucket name (3 to 63 lowercase "
		    "letters, digits, dots and hyphens, starting and ending "
		    "with a letter or digit)",
		    (int)n, b);
		return -EINVAL;
	}
	cfg->bucket = dup_n(b, n);
	if (!cfg->bucket)
		return -ENOMEM;
	pre = slash ? slash + 1 : "";
	n = strlen(pre);
	while (n && pre[n - 1] == '/')
		n--;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)pre[i];

		if (c < 0x20 || c == 0x7f || (c == '/' && pre[i + 1] == '/') ||
		    (i == 0 && c == '/')) {
			say(err, errlen, "'%s': malformed prefix", url);
			return -EINVAL;
		}
	}
	cfg->prefix = dup_n(pre, n);
	return cfg->prefix ? 0 : -ENOMEM;
}

static int cfg_endpoint(struct s3_cfg *cfg, const char *ep, char *err,
			size_t errlen)
{
	const char *h, *end, *port = NULL;
	size_t n;
	unsigned long pn;
	char *e;

	if (!ep)
		goto bad;
	if (!strncmp(ep, "http://", 7))
		h = ep + 7;
	else if (!strncmp(ep, "https://", 8))
		h = ep + 8;
	else
		goto bad;
	n = strlen(h);
	if (n && h[n - 1] == '/')
		n--;
	end = h + n;
	if (h < end && *h == '[') { /* [IPv6] */
		const char *c = memchr(h, ']', n);

		if (!c || c == h + 1)
			goto bad;
		for (const char *q = h + 1; q < c; q++)
			if (!strchr("0123456789abcdefABCDEF:.", *q))
				goto bad;
		if (c + 1 < end) {
			if (c[1] != ':')
				goto bad;
			port = c + 2;
		}
	} else {
		const char *q;

		for (q = h; q < end && *q != ':'; q++)
			if (!is_lower_alnum(*q) && *q != '.' && *q != '-' &&
			    !(*q >= 'A' && *q <= 'Z'))
				goto bad;
		if (q == h)
			goto bad;
		if (q < end)
			port = q + 1;
	}
	if (port) {
		if (port == end || *port < '0' || *port > '9')
			goto bad;
		errno = 0;
		pn = strtoul(port, &e, 10);
		if (errno || e != end || pn == 0 || pn > 65535)
			goto bad;
	}
	cfg->endpoint = dup_n(ep, (size_t)(end - ep));
	return cfg->endpoint ? 0 : -ENOMEM;
bad:
	say(err, errlen, "'%s': not an endpoint http[s]://HOST[:PORT]",
	    ep ? ep : "");
	return -EINVAL;
}

static int cfg_region(struct s3_cfg *cfg, const char *region, char *err,
		      size_t errlen)
{
	const char *r = region ? region : "us-east-1";
	size_t i, n = strlen(r);

	/* it goes into "aws:amz:REGION:s3" and the credential scope */
	for (i = 0; i < n; i++)
		if (!is_lower_alnum(r[i]) && r[i] != '-')
			break;
	if (!n || n > 64 || i < n) {
		say(err, errlen, "'%s': not a region name", r);
		return -EINVAL;
	}
	cfg->region = strdup(r);
	return cfg->region ? 0 : -ENOMEM;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
			 e[-1] == '\r'))
		e--;
	*e = '\0';
	return s;
}

/* Set *@slot to a copy of @v, wiping and freeing what it held. */
static int set_secret(char **slot, const char *v)
{
	char *d = strdup(v);

	if (!d)
		return -ENOMEM;
	if (*slot) {
		explicit_bzero(*slot, strlen(*slot));
		free(*slot);
	}
	*slot = d;
	return 0;
}

/*
 * The profile @profile of the shared credentials file @path (INI:
 * "[profile]" sections of "name = value" lines, '#' and ';' comments).
 */
static int cfg_cred_file(struct s3_cfg *cfg, const char *path,
			 const char *profile, char *err, size_t errlen)
{
	FILE *f;
	char *line = NULL, *l, *eq;
	size_t cap = 0;
	bool in = false, found = false;
	int rc = 0;

	f = fopen(path, "re");
	if (!f) {
		rc = -errno;
		say(err, errlen, "no credentials: cannot read '%s': %s", path,
		    strerror(-rc));
		return rc == -ENOMEM ? rc : -ENOKEY;
	}
	while (!rc && getline(&line, &cap, f) >= 0) {
		l = trim(line);
		if (!*l || *l == '#' || *l == ';')
			continue;
		if (*l == '[') {
			char *close = strchr(l, ']');

			if (close)
				*close = '\0';
			in = !strcmp(trim(l + 1), profile);
			found |= in;
			continue;
		}
		eq = strchr(l, '=');
		if (!in || !eq)
			continue;
		*eq = '\0';
		l = trim(l);
		if (!strcmp(l, "aws_access_key_id"))
			rc = set_secret(&cfg->access_key, trim(eq + 1));
		else if (!strcmp(l, "aws_secret_access_key"))
			rc = set_secret(&cfg->secret_key, trim(eq + 1));
		else if (!strcmp(l, "aws_session_token"))
			rc = set_secret(&cfg->session_token, trim(eq + 1));
	}
	if (line) {
		explicit_bzero(line, cap);
		free(line);
	}
	fclose(f);
	if (rc)
		return rc;
	if (!found) {
		say(err, errlen, "no credentials: no profile '%s' in '%s'",
		    profile, path);
		return -ENOKEY;
	}
	if (!cfg->access_key || !*cfg->access_key || !cfg->secret_key ||
	    !*cfg->secret_key) {
		say(err, errlen,
		    "no credentials: profile '%s' of '%s' lacks "
		    "aws_access_key_id or aws_secret_access_key",
		    profile, path);
		return -ENOKEY;
	}
	if (cfg->session_token && !*cfg->session_token) {
		free(cfg->session_token);
		cfg->session_token = NULL;
	}
	return 0;
}

static int cfg_credentials(struct s3_cfg *cfg, char *err, size_t errlen)
{
	const char *ak = getenv("AWS_ACCESS_KEY_ID");
	const char *sk = getenv("AWS_SECRET_ACCESS_KEY");
	const char *tok = getenv("AWS_SESSION_TOKEN");
	const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE");
	const char *profile = getenv("AWS_PROFILE");
	struct sbuf path = { 0 };
	int rc;

	if (ak && *ak && sk && *sk) {
		rc = set_secret(&cfg->access_key, ak);
		if (!rc)
			rc = set_secret(&cfg->secret_key, sk);
		if (!rc && tok && *tok)
			rc = set_secret(&cfg->session_token, tok);
		return rc;
	}
	if (!profile || !*profile)
		profile = "default";
	if (!file || !*file) {
		const char *home = getenv("HOME");
		struct passwd pw, *pwp = NULL;
		char pwbuf[4096];

		if ((!home || !*home) &&
		    !getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &pwp) &&
		    pwp)
			home = pw.pw_dir;
		if (!home || !*home) {
			say(err, errlen,
			    "no credentials: AWS_ACCESS_KEY_ID is not set and "
			    "there is no home directory");
			return -ENOKEY;
		}
		rc = sbuf_adds(&path, home);
		if (!rc)
			rc = sbuf_adds(&path, "/.aws/credentials");
		if (rc)
			goto out;
		file = path.p;
	}
	rc = cfg_cred_file(cfg, file, profile, err, errlen);
out:
	sbuf_release(&path);
	return rc;
}

int s3_cfg_parse(struct s3_cfg *cfg, const char *url, const char *endpoint,
		 const char *region, char *err, size_t errlen)
{
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	say(err, errlen, "%s", "");
	rc = cfg_url(cfg, url, err, errlen);
	if (!rc)
		rc = cfg_endpoint(cfg, endpoint, err, errlen);
	if (!rc)
		rc = cfg_region(cfg, region, err, errlen);
	if (!rc)
		rc = cfg_credentials(cfg, err, errlen);
	if (rc == -ENOMEM)
		say(err, errlen, "out of memory");
	return rc;
}

void s3_cfg_release(struct s3_cfg *cfg)
{
	char **secrets[] = { &cfg->access_key, &cfg->secret_key,
			     &cfg->session_token };
	size_t i;

	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		if (*secrets[i])
			explicit_bzero(*secrets[i], strlen(*secrets[i]));
		free(*secrets[i]);
	}
	free(cfg->endpoint);
	free(cfg->bucket);
	free(cfg->prefix);
	free(cfg->region);
	memset(cfg, 0, sizeof(*cfg));
}

int s3_key(const struct s3_cfg *cfg, const char *rel, char *out, size_t len)
{
	int n;

	if (cfg->prefix && *cfg->prefix)
		n = snprintf(out, len, "%s/%s", cfg->prefix, rel);
	else
		n = snprintf(out, len, "%s", rel);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}
