/* SPDX-License-Identifier: MIT */
/*
 * The daemon's HTTP listener for Prometheus (-o metrics=ADDR:PORT):
 * GET /metrics answers the metrics document (core/jobs/ctl.h,
 * ctl_metrics_text()); any other method or path is 404. It lives in fs/
 * because it is the daemon's: core/ stays free of sockets and of
 * libmicrohttpd, which only the tallyfs program links.
 *
 * The listening socket is made before the daemon forks, so that a
 * malformed address or a failed bind refuses the mount with a message on
 * the terminal; libmicrohttpd's thread starts in the daemon, once the
 * store is open, and stops before the store closes. One thread serves
 * every scrape (they are rare); it takes the locks the status document
 * takes (core/jobs/ctl_status.c), through the same functions.
 */
#ifndef TALLY_FS_METRICS_HTTP_H
#define TALLY_FS_METRICS_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

struct tally;
struct metrics_http;

/* An address of -o metrics=: IPv4 "A.B.C.D:PORT" or IPv6 "[ADDR]:PORT",
 * PORT 1 to 65535; a name is not looked up. */
struct metrics_http_addr {
	struct sockaddr_storage sa;
	socklen_t len;
};

/* Parse @spec into @a: 0, or -EINVAL with what is wrong in @err. */
int metrics_http_parse(const char *spec, struct metrics_http_addr *a, char *err,
		       size_t errsize);
/* A socket bound to @a and listening (close-on-exec) in *fd, or -errno
 * (-EADDRINUSE, -EADDRNOTAVAIL, -EACCES...). */
int metrics_http_listen(const struct metrics_http_addr *a, int *fd);
/* Serve the metrics of @t (borrowed: it must outlive the listener) on
 * listening socket @fd, which the listener takes over (closed by
 * metrics_http_stop(), or here on failure). 0, or -errno. */
int metrics_http_start(struct tally *t, int fd, struct metrics_http **out);
/* Stop serving and free; waits for a scrape in progress. NULL is a
 * no-op. */
void metrics_http_stop(struct metrics_http *h);

#endif
