/* SPDX-License-Identifier: MIT */
/*
 * The HTTP listener of -o metrics= (libmicrohttpd, its own thread): GET
 * /metrics answers the metrics document, anything else 404
 * (fs/metrics_http.h).
 */
#include "fs/metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/jobs/ctl.h"
#include "core/util/log.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_http {
	struct MHD_Daemon *d;
	struct tally *t;
};

/* "PORT": 1 to 65535, digits only. */
static int parse_port(const char *s, in_port_t *port)
{
	unsigned long v = 0;
	const char *p;

	if (!*s || strlen(s) > 5)
		return -EINVAL;
	for (p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*port = htons((uint16_t)v);
	return 0;
}

int metrics_http_parse(const char *spec, struct metrics_http_addr *a, char *err,
		       size_t errsize)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *port;
	size_t hlen;
	bool v6 = spec[0] == '[';
	in_port_t pn;

	memset(a, 0, sizeof(*a));
	if (v6) {
		const char *close = strchr(spec, ']');

		if (!close || close[1] != ':') {
			snprintf(err, errsize,
				 "metrics is ADDR:PORT or [ADDR6]:PORT, not "
				 "'%s'",
				 spec);
			return -EINVAL;
		}
		hlen = (size_t)(close - spec - 1);
		colon = close + 1;
		spec++;
	} else {
		colon = strrchr(spec, ':');
		if (!colon) {
			snprintf(err, errsize,
				 "metrics is ADDR:PORT (e.g. 127.0.0.1:9108), "
				 "not '%s': no port",
				 spec);
			return -EINVAL;
		}
		hlen = (size_t)(colon - spec);
	}
	port = colon + 1;
	if (parse_port(port, &pn)) {
		snprintf(err, errsize,
			 "metrics: the port is 1 to 65535, not '%s'", port);
		return -EINVAL;
	}
	if (hlen == 0 || hlen >= sizeof(host)) {
		snprintf(err, errsize,
			 "metrics: '%.*s' is not a numeric IP address",
			 (int)hlen, spec);
		return -EINVAL;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			goto bad_host;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = pn;
		a->len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&a->sa;

		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			goto bad_host;
		s4->sin_family = AF_INET;
		s4->sin_port = pn;
		a->len = sizeof(*s4);
	}
	return 0;
bad_host:
	snprintf(err, errsize,
		 "metrics: '%s' is not a numeric IP%s address (names are "
		 "not looked up)",
		 host, v6 ? "v6" : "v4");
	return -EINVAL;
}

int metrics_http_listen(const struct metrics_http_addr *a, int *fd)
{
	int s = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1, rc;

	if (s < 0)
		return -errno;
	/* a restarted daemon gets its port back at once (TIME_WAIT) */
	if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (a->sa.ss_family == AF_INET6 &&
	    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(s, (const struct sockaddr *)&a->sa, a->len) < 0)
		goto fail;
	if (listen(s, 16) < 0)
		goto fail;
	*fd = s;
	return 0;
fail:
	rc = -errno;
	close(s);
	return rc;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
			     char *body, size_t len, bool owned)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body,
					    owned ? MHD_RESPMEM_MUST_FREE
						  : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		if (owned)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				status == MHD_HTTP_OK ? CONTENT_TYPE
						      : "text/plain");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **state)
{
	static char not_found[] = "404 not found: GET /metrics\n";
	static char failed[] = "500 the metrics could not be read\n";
	struct metrics_http *h = cls;
	char *text = NULL;
	int rc;

	(void)version;
	(void)upload;
	if (*upload_size) { /* a body: not for us, dropped */
		*upload_size = 0;
		return MHD_YES;
	}
	if (!*state) { /* the headers: wait for the end of the request */
		*state = h;
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) || strcmp(url, "/metrics"))
		return reply(c, MHD_HTTP_NOT_FOUND, not_found,
			     sizeof(not_found) - 1, false);
	rc = ctl_metrics_text(h->t, &text);
	if (rc) {
		log_msg(LOG_WARNING, "metrics: cannot read them: %s",
			strerror(-rc));
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, failed,
			     sizeof(failed) - 1, false);
	}
	return reply(c, MHD_HTTP_OK, text, strlen(text), true);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_msg(LOG_INFO, "metrics: %s", line);
}

int metrics_http_start(struct tally *t, int fd, struct metrics_http **out)
{
	struct metrics_http *h = calloc(1, sizeof(*h));

	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	h->t = t;
	/* epoll: the daemon's descriptors may be past FD_SETSIZE */
	h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
					MHD_USE_ERROR_LOG,
				0, NULL, NULL, answer, h,
				/* first: the options after it log through it */
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
				MHD_OPTION_END);
	if (!h->d) {
		close(fd);
		free(h);
		return -EIO;
	}
	*out = h;
	return 0;
}

void metrics_http_stop(struct metrics_http *h)
{
	if (!h)
		return;
	/* closes the listening socket too */
	MHD_stop_daemon(h->d);
	free(h);
}
