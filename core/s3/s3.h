/* SPDX-License-Identifier: MIT */
/*
 * A small S3 client: the requests the remote tier needs (PUT of an object
 * file, ranged GET, HEAD, DELETE, ListObjectsV2 one page at a time), over
 * libcurl, signed with libcurl's AWS SigV4 (CURLOPT_AWS_SIGV4). Path-style
 * addressing (ENDPOINT/BUCKET/KEY), http or https.
 *
 * struct s3_cfg says where the bucket is and with which credentials; it is
 * parsed once and shared read-only. struct s3 is one connection (a curl
 * easy handle, which keeps its connection alive between requests): not
 * thread-safe, one per thread that issues requests.
 *
 * Each request is one attempt: retries and backoff are the caller's
 * (core/remote/remote.c). Errors:
 *   -ENOENT       404 (no such key or bucket)
 *   -EACCES       401/403: the server refuses the credentials or the
 *                 signature (s3_last_error() names the S3 error code)
 *   -EAGAIN       worth retrying: the server could not be reached, the
 *                 connection was cut or stalled, 408/429/500/502/503/504,
 *                 SlowDown, a short body
 *   -ENOSPC       the server is out of room (507, an error code that says
 *                 so)
 *   -EIO          anything else (s3_last_error() says what)
 *   -ENOMEM, and the -errno of reading or writing a local file.
 *
 * Credentials are never logged, and never taken from the command line.
 */
#ifndef TALLY_S3_H
#define TALLY_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct s3_cfg {
	char *endpoint; /* "http[s]://host[:port]", no trailing slash */
	char *bucket;
	char *prefix; /* "" or "a/b": keys are PREFIX/..., no slashes at
			 either end */
	char *region; /* "us-east-1" unless told */
	char *access_key, *secret_key, *session_token; /* token may be NULL */

	long connect_timeout; /* seconds; 0 = 10 */
	long stall_timeout;   /* a transfer below 1 byte/s this long is cut,
			       seconds; 0 = 30 */
	/* keyed object names (core/s3/seal.h, seal_name_encode()): the
	 * 64-byte names key of a store with a key_file, or NULL; borrowed */
	const unsigned char *names_key;
};

/*
 * Fill @cfg from the mount options: @url is "s3://BUCKET[/PREFIX]",
 * @endpoint "http[s]://host[:port][/]", @region may be NULL. Loads the
 * credentials as every S3 tool finds them: AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from the environment, else
 * the profile AWS_PROFILE (or "default") of AWS_SHARED_CREDENTIALS_FILE
 * (or ~/.aws/credentials). -EINVAL with a message in @err (of @errlen
 * bytes) for a malformed URL or endpoint, -ENOKEY when no credentials are
 * found. @cfg is released by s3_cfg_release() (also after a failure).
 */
int s3_cfg_parse(struct s3_cfg *cfg, const char *url, const char *endpoint,
		 const char *region, char *err, size_t errlen);
void s3_cfg_release(struct s3_cfg *cfg);

/* The key of @rel ("objects/ab/NAME", "meta/...") under the prefix, in
 * @out of @len bytes; -ENAMETOOLONG if it does not fit. */
int s3_key(const struct s3_cfg *cfg, const char *rel, char *out, size_t len);

struct s3;

/* One connection to @cfg's endpoint (@cfg borrowed; it must outlive the
 * connection). -ENOMEM, or -EIO when libcurl cannot be initialised. */
int s3_new(const struct s3_cfg *cfg, struct s3 **out);
void s3_free(struct s3 *s);

/*
 * Every request of @s from now on ends within @seconds, connection
 * included (-EAGAIN, as a stall, if it has not), whether or not bytes
 * move; 0 lifts the bound (the connect and stall timeouts of the
 * configuration remain). For requests whose answers are small, such as
 * a bucket check that a mount waits for: a server that accepts the
 * connection and never answers costs @seconds, not the stall timeout.
 */
void s3_set_timeout(struct s3 *s, long seconds);

/* The last failure of @s, for logs and the status: "HTTP 403
 * SignatureDoesNotMatch: ..." or curl's message. Never credentials. Valid
 * until the next request on @s. */
const char *s3_last_error(struct s3 *s);

/*
 * Is the bucket there and do the credentials work? One ListObjectsV2 of
 * at most one key. 0, -EACCES (refused: wrong credentials, signature),
 * -ENOENT (no such bucket), -EAGAIN (unreachable), -EIO.
 */
int s3_check(struct s3 *s);

/*
 * PUT @size bytes of descriptor @fd (from offset 0, read with pread(2),
 * streamed: never the whole file in memory) as @key (full key, see
 * s3_key()). The SHA-256 of the body is computed first (a read pass) and
 * sent as x-amz-content-sha256, so the server checks the bytes it got.
 */
int s3_put_fd(struct s3 *s, const char *key, int fd, uint64_t size);
/*
 * s3_put_fd() that gives each chunk of its hashing pass to @each too
 * (the caller's own check of the bytes, in the same read), then calls
 * @each(@arg, NULL, 0) at the end of the pass: a nonzero return of
 * @each stops the PUT before anything is sent, with that error.
 */
int s3_put_fd_each(struct s3 *s, const char *key, int fd, uint64_t size,
		   int (*each)(void *arg, const void *buf, size_t n),
		   void *arg);
/* PUT of @len bytes of @buf (small bodies: metadata snapshots' index). */
int s3_put_buf(struct s3 *s, const char *key, const void *buf, size_t len);

/*
 * GET @key, the @len bytes at @off (a ranged GET), or the whole object
 * when @len is 0 (from @off to the end when @off is not 0). The body
 * is given to @sink as it arrives; a negative return of @sink aborts with
 * that error. *@total (may be NULL) receives the object's size (from
 * Content-Range or Content-Length). A ranged GET past the end is -ERANGE;
 * a range past 2^64 bytes is -EINVAL.
 */
int s3_get(struct s3 *s, const char *key, uint64_t off, uint64_t len,
	   int (*sink)(void *arg, const void *buf, size_t n), void *arg,
	   uint64_t *total);

/* HEAD @key: 0 and *@size, or -ENOENT. */
int s3_head(struct s3 *s, const char *key, uint64_t *size);

/* DELETE @key. A key that is not there is not an error (S3 answers 204
 * either way). */
int s3_delete(struct s3 *s, const char *key);

/*
 * One page (at most @max keys, 0 = the server's 1000) of ListObjectsV2
 * of the keys under @prefix (a full key prefix; "" = the whole bucket),
 * in key order, starting after continuation token @token (NULL for the
 * first page). @fn is called per key with its size; a non-zero return
 * stops and is returned. *@next receives the malloc'ed continuation
 * token of the next page, or NULL when this was the last page; it is
 * written only when 0 is returned. The page is received and parsed whole
 * before @fn is first called.
 */
int s3_list(struct s3 *s, const char *prefix, const char *token, unsigned max,
	    int (*fn)(void *arg, const char *key, uint64_t size), void *arg,
	    char **next);

#endif
