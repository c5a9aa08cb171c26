#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An HTTP/1.1 fault proxy, between tallyfs and its S3 server in the tests.

    faultproxy.py --upstream HOST:PORT [--listen-addr A] [--listen-port N]
                  [--control-port N] [--lifetime SECONDS] [--verbose]

Listens on 127.0.0.1:N (0: a free port; --listen-addr another address of
this host) and forwards each request to the upstream server,
transparently: the request head goes out byte for byte,
bodies are streamed both ways (Content-Length and chunked), interim 100
Continue answers are relayed, and each client connection has its own
upstream connection, kept alive as long as both ends keep theirs.

The Host header goes out unchanged: S3 clients sign it (SigV4), so the
client is given the proxy's address as its endpoint and the upstream
checks the signature against the host:port of the proxy. s3rver, the
tests' S3 server, accepts that: it computes the signature over the Host it
receives, port included, and reads a bucket name out of Host only when the
host is neither an IP address nor localhost (path-style requests to
127.0.0.1:PORT are what it sees).

A second port, the control port (127.0.0.1, --control-port, 0: a free
one), takes the commands below. Once both listen, the proxy prints the
proxy port on the first line of stdout and the control port on the
second, then writes nothing more there; its log goes to stderr (faults
always, every request with --verbose). It exits on SIGTERM or SIGINT, and
by itself after --lifetime seconds (default 1800, 0 = never), so a test
that dies leaves no proxy behind for long.

CONTROL. One plain HTTP GET per command, the answer is text/plain:

    GET /MODE[/ARG...][?n=N][&method=M[,M...]][&key=TEXT]   (any of the
                                                    parameters alone too:
                                                    ?method=PUT)

sets the fault mode and answers 200 with the mode now in force (as in the
`mode` line of the stats), or 400 and what is wrong. The answer comes once
the mode is in force: after `down` the proxy port refuses connections.
MODE is one of:

    pass                  forward everything (the mode at start)
    status CODE [S3CODE]  answer CODE (400..599) with an S3 XML error body
                          <Error><Code>S3CODE</Code>...; S3CODE defaults to
                          SlowDown for 503, InternalError for 500, and the
                          reason phrase without spaces for other codes
    full                  answer 507 XMinioStorageFull (see FULL below)
    stall                 forward the request head and the first half of
                          its body, then move nothing either way (read
                          nothing more from the client, send nothing to
                          it) until the next mode command; a request
                          without a body is forwarded whole and its
                          response stalls after half its body, or before
                          its head when it has none
    cut                   like stall, but where stall stops, close both
                          connections: a mid-body cut of the upload, or of
                          the download for a request without a body
    refuse                reset (RST) the client's connection at once: a
                          new connection as soon as it is accepted, a kept
                          alive one when its next request arrives
    down                  stop listening (connections are refused) and
                          close every client connection; the next mode
                          command listens again on the same port
    hold                  read the request whole and keep it, sending
                          nothing upstream and no answer to the client,
                          until a deliver command (below): a request held
                          in the network, which reaches the server after
                          its client gave up on it, was killed, or sent it
                          again. The client's connection stays open,
                          silent, until the client closes it or the
                          request is delivered (then it is closed, with no
                          answer); a held request outlives its client

A mode other than pass and down applies to the next N requests that it
matches (a refused connection counts as one), then the mode is pass again;
without n, until changed. method= limits it to requests of these classes:
PUT, GET (of an object), LIST (a GET of a bucket or of /), HEAD, DELETE,
POST (path-style addressing, as tallyfs uses, is assumed); key= to
requests whose target contains TEXT (an object's name: one key of the
bucket); a refuse with method= or key= waits for the request head instead
of acting at accept.

Every mode command, whatever it sets, releases the stalled requests, which
then go on as if nothing had happened; except one whose client has given
up (closed its connection): that one is dropped, both connections closed,
so that an abandoned request never completes upstream late. The proxy sees
such a close during the stall or, when the close is queued behind body
bytes still in the client's socket buffers, once those bytes come: the
last byte of a released request body is held until the client is seen
still connected (0.3 s).

A status or full answer to a request with a body first reads and discards
that body, so the connection stays usable; unless the client sent Expect:
100-continue: then the answer comes at once, with Connection: close.

    GET /deliver          send every held request upstream, in the order
                          they came, each on a new connection of its own,
                          and wait for each answer (10 s at most each);
                          answers one line per request, "STATUS METHOD
                          TARGET" (STATUS 000: no answer from upstream).
                          The mode stays; stalled requests stay stalled
    GET /stats            the counters, one "NAME VALUE" line each, in this
                          order: connections (accepted, refused ones
                          included), requests (heads read), forwarded
                          (responses relayed whole from upstream, stalled
                          ones included once released), forwarded_PUT,
                          forwarded_GET, forwarded_LIST, forwarded_HEAD,
                          forwarded_DELETE, forwarded_POST, forwarded_OTHER,
                          then the faults injected: status, full, stall,
                          cut, refuse, hold (requests or connections
                          each), down (times the listener was closed),
                          then upstream_errors (upstream unreachable, or
                          closed on us mid-request), held (requests held
                          now), delivered (held requests delivered, with
                          or without an answer), and last "mode MODE..."
    GET /reset            zero the counters (the mode stays); answers the
                          stats

FULL. What an S3-compatible server says when it runs out of room: MinIO,
the common self-hosted one, answers 507 Insufficient Storage with code
XMinioStorageFull ("Storage backend has reached its minimum free drive
threshold. Please delete a few objects to proceed."); Ceph RGW has no S3
code for a full cluster (its error table maps ENOSPC to nothing, so 500
UnknownError) and answers 403 QuotaExceeded for a quota; AWS S3 never
fills. `full` is MinIO's answer; the others are `status 500 UnknownError`
and `status 403 QuotaExceeded`.

Example (bash):

    python3 faultproxy.py --upstream 127.0.0.1:4568 >ports &
    { read -r port; read -r ctl; } <ports   # once it has two lines
    curl -fsS "http://127.0.0.1:$ctl/status/503/SlowDown?n=2&method=PUT"
    curl -fsS "http://127.0.0.1:$ctl/stats" | awk '$1 == "status" { print $2 }'

Python 3 standard library only (asyncio), written for 3.7 and later
(tested with 3.11).
"""

import argparse
import asyncio
import email.utils
import http
import re
import signal
import socket
import struct
import sys
import time
import urllib.parse
from xml.sax.saxutils import escape

BLOCK = 65536           # one read of a body
HEAD_LIMIT = 65536      # the longest request or response head
TCP_ESTABLISHED = 1     # tcpi_state of struct tcp_info (Linux)

CLASSES = ("PUT", "GET", "LIST", "HEAD", "DELETE", "POST", "OTHER")
FAULTS = ("status", "full", "stall", "cut", "refuse", "hold", "down")
MODES = ("pass",) + FAULTS
STAT_KEYS = (("connections", "requests", "forwarded") +
             tuple("forwarded_" + c for c in CLASSES) + FAULTS +
             ("upstream_errors", "held", "delivered"))

DEFAULT_S3CODE = {500: "InternalError", 503: "SlowDown",
                  507: "XMinioStorageFull"}
MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "ServiceUnavailable": "Reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "XMinioStorageFull": "Storage backend has reached its minimum free "
                         "drive threshold. Please delete a few objects to "
                         "proceed.",
    "QuotaExceeded": "Quota exceeded.",
}

VERBOSE = False


def log(fmt, *args):
    sys.stderr.write("faultproxy %s: %s\n" % (time.strftime("%H:%M:%S"),
                                              fmt % args))
    sys.stderr.flush()


def debug(fmt, *args):
    if VERBOSE:
        log(fmt, *args)


class CommandError(Exception):
    """A control command that makes no sense; its text says why."""


class Cut(Exception):
    """A cut fault struck: close both connections."""


class PeerClosed(Exception):
    """One side of the exchange closed or reset its connection."""

    def __init__(self, side):
        super().__init__(side)
        self.side = side


class Head:
    """The head of a request or a response, as received (raw)."""

    def __init__(self, raw):
        self.raw = raw
        lines = raw[:-4].split(b"\r\n")
        self.start = lines[0].decode("latin-1").split(" ", 2)
        self.headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name.strip():
                raise ValueError("malformed header line %r" % line)
            self.headers.append((name.strip().decode("latin-1").lower(),
                                 value.strip().decode("latin-1")))

    def values(self, name):
        return [v for n, v in self.headers if n == name]

    def tokens(self, name):
        """The comma-separated tokens of header @name, lowercase."""
        return [t.strip().lower() for v in self.values(name)
                for t in v.split(",") if t.strip()]

    def keep_alive(self):
        conn = self.tokens("connection")
        if "close" in conn:
            return False
        return self.version != "HTTP/1.0" or "keep-alive" in conn

    def body_framing(self, default):
        """("length", N), ("chunked", None) or @default (no length)."""
        te = self.tokens("transfer-encoding")
        if te:
            if te[-1] != "chunked":
                return ("close", None)
            return ("chunked", None)
        lengths = set(self.values("content-length"))
        if not lengths:
            return default
        if len(lengths) != 1 or not lengths.copy().pop().isdigit():
            raise ValueError("bad Content-Length %r" % sorted(lengths))
        return ("length", int(lengths.pop()))


class Request(Head):
    def __init__(self, raw):
        super().__init__(raw)
        if len(self.start) != 3 or not self.start[2].startswith("HTTP/1."):
            raise ValueError("malformed request line %r" % self.start)
        self.method, self.target, self.version = self.start
        self.framing = self.body_framing(("length", 0))
        if self.framing[0] == "close":
            raise ValueError("request body without a length")
        self.cls = request_class(self.method, self.target)

    def has_body(self):
        return self.framing != ("length", 0)


class Response(Head):
    def __init__(self, raw, request):
        super().__init__(raw)
        if len(self.start) < 2 or not self.start[1].isdigit():
            raise ValueError("malformed status line %r" % self.start)
        self.version = self.start[0]
        self.status = int(self.start[1])
        if (request.method == "HEAD" or self.status < 200 or
                self.status in (204, 304)):
            self.framing = ("length", 0)
        else:
            self.framing = self.body_framing(("close", None))


def request_class(method, target):
    """PUT, GET, LIST, HEAD, DELETE, POST or OTHER (path-style S3)."""
    if method == "GET":
        path = urllib.parse.urlsplit(target).path
        if len([s for s in path.split("/") if s]) <= 1:
            return "LIST"
    return method if method in CLASSES else "OTHER"


def status_phrase(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_response(status, s3code, resource, request_id, close, head_only):
    """An S3 error answer: the head and its XML body (none for HEAD)."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            "<Error><Code>%s</Code><Message>%s</Message>"
            "<Resource>%s</Resource><RequestId>%s</RequestId></Error>\n" %
            (s3code, escape(MESSAGES.get(s3code, "Injected by faultproxy.")),
             escape(resource), request_id)).encode()
    head = ("HTTP/1.1 %d %s\r\n"
            "Date: %s\r\n"
            "Server: faultproxy\r\n"
            "x-amz-request-id: %s\r\n"
            "Content-Type: application/xml\r\n"
            "Content-Length: %d\r\n"
            "%s\r\n" %
            (status, status_phrase(status),
             email.utils.formatdate(usegmt=True), request_id, len(body),
             "Connection: close\r\n" if close else "")).encode()
    return head if head_only else head + body


class Mode:
    """A fault mode: what to do, to which requests, how many more times
    (@left; None until changed)."""

    def __init__(self, kind, status=None, s3code=None, left=None,
                 methods=None, key=None):
        self.kind = kind
        self.status = status
        self.s3code = s3code
        self.left = left
        self.methods = methods
        self.key = key

    def __str__(self):
        words = [self.kind]
        if self.kind == "status":
            words += [str(self.status), self.s3code]
        if self.left is not None:
            words.append("n=%d" % self.left)
        if self.methods is not None:
            words.append("method=" + ",".join(self.methods))
        if self.key is not None:
            words.append("key=" + self.key)
        return " ".join(words)


def parse_mode(words, query):
    """The Mode of control path @words and @query; CommandError."""
    kind, args = words[0], words[1:]
    if kind not in MODES:
        raise CommandError("unknown command %r" % kind)
    left = methods = key_text = None
    for key, values in query.items():
        if len(values) != 1:
            raise CommandError("%s given twice" % key)
        if key == "n":
            if not values[0].isdigit() or int(values[0]) < 1:
                raise CommandError("n must be a count >= 1")
            left = int(values[0])
        elif key == "method":
            methods = tuple(m.upper() for m in values[0].split(","))
            for m in methods:
                if m not in CLASSES:
                    raise CommandError("unknown method class %r (one of "
                                       "%s)" % (m, ", ".join(CLASSES)))
        elif key == "key":
            if not re.fullmatch(r"[A-Za-z0-9._/-]+", values[0]):
                raise CommandError("bad key text %r" % values[0])
            key_text = values[0]
        else:
            raise CommandError("unknown parameter %r" % key)
    if kind in ("pass", "down") and (left is not None or
                                     methods is not None or
                                     key_text is not None):
        raise CommandError("%s takes neither n, method nor key" % kind)
    if kind == "status":
        if not 1 <= len(args) <= 2 or not args[0].isdigit() or \
                not 400 <= int(args[0]) <= 599:
            raise CommandError("usage: /status/CODE[/S3CODE], CODE in "
                               "400..599")
        status = int(args[0])
        if len(args) == 2:
            s3code = args[1]
        else:
            s3code = DEFAULT_S3CODE.get(status,
                                        status_phrase(status).replace(" ",
                                                                      ""))
        if not re.fullmatch(r"[A-Za-z0-9.]+", s3code):
            raise CommandError("bad S3 error code %r" % s3code)
        return Mode(kind, status, s3code, left, methods, key_text)
    if args:
        raise CommandError("%s takes no arguments" % kind)
    if kind == "full":
        return Mode(kind, 507, "XMinioStorageFull", left, methods,
                    key_text)
    return Mode(kind, None, None, left, methods, key_text)


class Peer:
    """One end of a proxied exchange: a stream pair and a name ("client",
    "upstream") that its errors carry."""

    def __init__(self, name, reader, writer, gate):
        self.name = name
        self.reader = reader
        self.writer = writer
        self.gate = gate        # set while the exchange may move
        # drain() waits for the kernel to take every byte: a cut or a
        # stall then strikes at an exact offset
        writer.transport.set_write_buffer_limits(0)

    def gone(self):
        """Has the peer closed its end (a FIN or an RST came)? Seen in the
        TCP state, even with unread data before the FIN."""
        if self.writer.transport.is_closing():
            return True
        sock = self.writer.get_extra_info("socket")
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        except (OSError, AttributeError):
            return False
        return info[0] != TCP_ESTABLISHED

    def usable(self):
        return (not self.reader.at_eof() and
                not self.writer.transport.is_closing())

    async def read(self, n):
        """Up to @n bytes; PeerClosed at the end of the stream."""
        try:
            data = await self.reader.read(n)
        except ConnectionError as e:
            raise PeerClosed(self.name) from e
        if not data:
            raise PeerClosed(self.name)
        return data

    async def read_some(self, n):
        """Up to @n bytes, b"" at the end of the stream."""
        try:
            return await self.reader.read(n)
        except ConnectionError as e:
            raise PeerClosed(self.name) from e

    async def read_head(self):
        try:
            return await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError) as e:
            raise PeerClosed(self.name) from e

    async def read_line(self):
        try:
            return await self.reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError) as e:
            raise PeerClosed(self.name) from e

    async def read_exactly(self, n):
        try:
            return await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise PeerClosed(self.name) from e

    async def send(self, data):
        await self.gate.wait()
        if self.writer.transport.is_closing():
            raise PeerClosed(self.name)
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError as e:
            raise PeerClosed(self.name) from e

    async def linger(self, seconds=2.0):
        """End the exchange as HTTP servers do after an answer given before
        the request's body was read: stop writing, then read and drop what
        the peer still sends until it closes (or @seconds pass). Closed at
        once, a socket with unread bytes sends an RST, which can reach the
        peer before the answer does: it would see "connection reset", not
        the error the fault answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
            while loop.time() < deadline:
                data = await asyncio.wait_for(self.read_some(1 << 16),
                                              deadline - loop.time())
                if not data:
                    break
        except (asyncio.TimeoutError, PeerClosed, OSError):
            pass

    def abort(self, reset=False):
        """Close at once; with @reset, with an RST."""
        if reset:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                except OSError:
                    pass
        self.writer.transport.abort()


class Strike:
    """Where a stall or a cut strikes in one body: after half of it (for a
    chunked body, half of its first chunk), once."""

    def __init__(self, kind):
        self.kind = kind
        self.budget = None      # bytes to relay before it strikes
        self.spent = False
        self.released = False   # a stall, over

    def arm(self, size):
        if self.budget is None:
            self.budget = size // 2

    def due(self):
        return not self.spent and self.budget == 0


class Conn:
    """One client connection and its upstream connection."""

    def __init__(self, proxy, reader, writer):
        self.proxy = proxy
        self.gate = asyncio.Event()
        self.gate.set()
        self.client = Peer("client", reader, writer, self.gate)
        self.up = None
        self.body_read = False  # the request body is all read

    def abort(self, reset=False):
        self.client.abort(reset)
        if self.up is not None:
            self.up.abort()

    async def run(self):
        stats = self.proxy.stats
        stats["connections"] += 1
        fault = self.proxy.take(None)
        if fault is not None:
            log("%s: reset a new connection", fault.kind)
            self.abort(reset=True)
            return
        try:
            while await self.one_request():
                pass
        except Cut:
            self.abort()
        except PeerClosed as e:
            if e.side == "upstream":
                stats["upstream_errors"] += 1
            log("the %s closed its connection mid-request", e.side)
            self.abort()
        except (ConnectionError, OSError) as e:
            debug("connection error: %s", e)
            self.abort()
        finally:
            self.client.writer.close()
            if self.up is not None:
                self.up.writer.close()

    async def one_request(self):
        """Serve one request; False when the connection is to end."""
        try:
            raw = await self.client.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        except asyncio.LimitOverrunError:
            await self.client.send(error_response(
                431, "RequestHeaderSectionTooLarge", "", "-", True, False))
            return False
        try:
            req = Request(raw)
        except ValueError as e:
            log("bad request: %s", e)
            await self.client.send(error_response(
                400, "BadRequest", "", "-", True, False))
            return False
        self.proxy.stats["requests"] += 1
        fault = self.proxy.take(req.cls, req.target)
        if fault is None:
            debug("%s %s: forward", req.method, req.target)
            return await self.forward(req, None)
        log("%s %s: %s", req.method, req.target, fault.kind)
        if fault.kind in ("status", "full"):
            return await self.answer(req, fault)
        if fault.kind in ("refuse", "down"):
            self.abort(reset=True)
            return False
        if fault.kind == "hold":
            await self.hold(req)
            return False
        return await self.forward(req, Strike(fault.kind))

    async def hold(self, req):
        """Read request @req whole and keep it for a deliver command; keep
        the client's connection open and silent until the client leaves
        or the request is delivered."""
        sink = Sink()
        await self.relay(self.client, sink, req.framing, None)
        held = Held(req, req.raw + bytes(sink.data))
        self.proxy.held.append(held)
        while not held.delivered.is_set():
            if self.client.gone() or self.client.reader.at_eof():
                log("the client of a held request left: the request stays "
                    "held")
                return
            try:
                await asyncio.wait_for(held.delivered.wait(), 0.2)
            except asyncio.TimeoutError:
                pass

    async def answer(self, req, fault):
        """Answer the fault's error without asking upstream."""
        close = not req.keep_alive()
        if req.has_body():
            if "100-continue" in req.tokens("expect"):
                close = True
            else:
                await self.relay(self.client, None, req.framing, None)
        await self.client.send(error_response(
            fault.status, fault.s3code,
            urllib.parse.urlsplit(req.target).path,
            self.proxy.request_id(), close, req.method == "HEAD"))
        if close:
            await self.client.linger()
        return not close

    async def connect_upstream(self):
        if self.up is not None and self.up.usable():
            return True
        if self.up is not None:
            self.up.abort()
            self.up = None
        host, port = self.proxy.upstream
        try:
            reader, writer = await asyncio.open_connection(
                host, port, limit=HEAD_LIMIT)
        except OSError as e:
            log("cannot connect to upstream %s:%d: %s", host, port, e)
            return False
        self.up = Peer("upstream", reader, writer, self.gate)
        return True

    async def forward(self, req, strike):
        """Forward one request and relay its response, @strike (or None)
        striking in the request body, or in the response when the request
        has none. True when both connections stay open."""
        if not await self.connect_upstream():
            self.proxy.stats["upstream_errors"] += 1
            await self.client.send(error_response(
                502, "BadGateway", urllib.parse.urlsplit(req.target).path,
                self.proxy.request_id(), True, req.method == "HEAD"))
            return False
        body = req.has_body()
        self.body_read = not body
        await self.up.send(req.raw)
        up_task = asyncio.ensure_future(
            self.pump_request(req, strike if body else None))
        down_task = asyncio.ensure_future(
            self.pump_response(req, None if body else strike))
        try:
            await asyncio.wait({up_task, down_task},
                               return_when=asyncio.FIRST_COMPLETED)
            if up_task.done():
                up_task.result()
                keep = await down_task
            else:
                keep = down_task.result()
                if self.body_read:
                    await up_task
                else:
                    # answered before the body was sent (an error, or no
                    # 100 Continue): where the next request starts is lost
                    keep = False
        finally:
            await settle(up_task, down_task)
        stats = self.proxy.stats
        stats["forwarded"] += 1
        stats["forwarded_" + req.cls] += 1
        return keep and req.keep_alive()

    async def pump_request(self, req, strike):
        await self.relay(self.client, self.up, req.framing, strike)
        if strike is not None and not strike.spent:
            await self.strike(strike)   # an empty chunked body

    async def pump_response(self, req, strike):
        while True:
            raw = await self.up.read_head()
            try:
                resp = Response(raw, req)
            except ValueError as e:
                log("bad response from upstream: %s", e)
                raise PeerClosed("upstream") from e
            if resp.status >= 200 or resp.status == 101:
                break
            await self.client.send(raw)     # 100 Continue
        if strike is not None and resp.framing == ("length", 0):
            await self.strike(strike)
            strike = None
        await self.client.send(raw)
        await self.relay(self.up, self.client, resp.framing, strike)
        if strike is not None and not strike.spent:
            await self.strike(strike)   # an empty chunked or closed body
        return (resp.framing[0] != "close" and
                resp.keep_alive())

    async def relay(self, src, dst, framing, strike):
        """Copy one body framed as @framing from @src to @dst (None: read
        and discard it)."""
        kind, size = framing
        if kind == "length":
            await self.copy(src, dst, size, strike, True)
        elif kind == "chunked":
            while True:
                line = await src.read_line()
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise PeerClosed(src.name) from None
                await put(dst, line)
                if size == 0:
                    while True:     # trailers, then the empty line
                        line = await src.read_line()
                        if line in (b"\r\n", b"\n"):
                            break
                        await put(dst, line)
                    if self.holding(src, strike):
                        await self.check_client()
                    await put(dst, line)
                    break
                await self.copy(src, dst, size, strike, False)
                await put(dst, await src.read_exactly(2))
        else:
            while True:
                data = await src.read_some(BLOCK)
                if not data:
                    break
                if strike is not None and not strike.spent:
                    strike.arm(len(data))
                    await put(dst, data[:strike.budget])
                    data = data[strike.budget:]
                    strike.budget = 0
                    await self.strike(strike)
                await put(dst, data)
        if src is self.client:
            self.body_read = True

    async def copy(self, src, dst, size, strike, last):
        """Copy @size bytes; @last: they end the body."""
        if strike is not None:
            strike.arm(size)
        while True:
            if strike is not None and strike.due():
                await self.strike(strike)
            if size == 0:
                break
            want = min(size, BLOCK)
            if strike is not None and not strike.spent:
                want = min(want, strike.budget)
            elif last and self.holding(src, strike):
                if size == 1:
                    await self.check_client()
                else:
                    want = min(want, size - 1)
            data = await src.read(want)
            await put(dst, data)
            size -= len(data)
            if strike is not None and not strike.spent:
                strike.budget -= len(data)

    def holding(self, src, strike):
        """Is the last byte of this body to wait for check_client()?"""
        return src is self.client and strike is not None and strike.released

    async def check_client(self):
        """Before the last byte of a request body that stalled: is its
        client still there? One that gave up during the stall closed its
        socket, but its kernel still delivers what it had sent, then the
        close, right behind that last byte."""
        for _ in range(10):
            if self.client.gone() or self.client.reader.at_eof():
                log("the stalled client left: close both connections")
                raise Cut()
            await asyncio.sleep(0.03)

    async def strike(self, strike):
        strike.spent = True
        if strike.kind == "cut":
            log("cut both connections")
            raise Cut()
        log("stall until the next mode command")
        released = self.proxy.release
        self.gate.clear()
        try:
            while True:
                if self.client.gone():
                    log("the stalled client left: close both connections")
                    raise Cut()
                if released.is_set():
                    break
                try:
                    await asyncio.wait_for(released.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.gate.set()
        strike.released = True
        log("stall released")


class Sink:
    """A destination of relay() that keeps what it is sent."""

    def __init__(self):
        self.data = bytearray()

    async def send(self, data):
        self.data += data


class Held:
    """A request read whole and held: its parsed head, its bytes."""

    def __init__(self, req, data):
        self.req = req
        self.data = data
        self.delivered = asyncio.Event()


async def deliver_one(upstream, held):
    """Send held request @held on a new connection to @upstream and read
    its answer: the HTTP status, or 0 without one."""
    gate = asyncio.Event()
    gate.set()
    try:
        reader, writer = await asyncio.open_connection(
            upstream[0], upstream[1], limit=HEAD_LIMIT)
    except OSError as e:
        log("deliver: cannot connect to upstream: %s", e)
        return 0
    up = Peer("upstream", reader, writer, gate)
    try:
        await up.send(held.data)
        while True:
            resp = Response(await up.read_head(), held.req)
            if resp.status >= 200 or resp.status == 101:
                break
        kind, size = resp.framing
        if kind == "length":
            await up.read_exactly(size)
        else:
            while await up.read_some(BLOCK):
                pass
        return resp.status
    except (PeerClosed, ValueError) as e:
        log("deliver: no whole answer from upstream: %s", e)
        return 0
    finally:
        up.abort()


async def put(dst, data):
    if dst is not None:
        await dst.send(data)


async def settle(*tasks):
    """Cancel what still runs of @tasks and collect every outcome."""
    for t in tasks:
        if not t.done():
            t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Proxy:
    """The listener, the mode, the counters."""

    def __init__(self, upstream, addr="127.0.0.1"):
        self.upstream = upstream
        self.addr = addr
        self.mode = Mode("pass")
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self.release = asyncio.Event()
        self.server = None
        self.port = None
        self.conns = set()
        self.next_id = 1
        self.held = []          # Held requests, oldest first

    def request_id(self):
        self.next_id += 1
        return "FAULTPROXY%08d" % (self.next_id - 1)

    async def listen(self, port):
        self.server = await asyncio.start_server(
            self.serve, self.addr, port, limit=HEAD_LIMIT,
            reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self):
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.conns):
            conn.abort()

    async def serve(self, reader, writer):
        conn = Conn(self, reader, writer)
        self.conns.add(conn)
        try:
            await conn.run()
        finally:
            self.conns.discard(conn)

    def take(self, cls, target=None):
        """The fault for one request of class @cls and @target (None: a
        connection just accepted), counted; None to forward it."""
        m = self.mode
        if m.kind == "pass":
            return None
        if m.kind == "down":
            return m
        if cls is None:
            if m.kind != "refuse" or m.methods is not None or \
                    m.key is not None:
                return None
        elif m.methods is not None and cls not in m.methods:
            return None
        elif m.key is not None and m.key not in target:
            return None
        if m.left is not None:
            m.left -= 1
            if m.left == 0:
                self.mode = Mode("pass")
        self.stats[m.kind] += 1
        return m

    async def set_mode(self, mode):
        self.mode = mode
        self.release.set()
        self.release = asyncio.Event()
        if mode.kind == "down":
            if self.server is not None:
                self.stats["down"] += 1
                self.close()
                log("down: not listening")
        elif self.server is None:
            await self.listen(self.port)
            log("listening again on port %d", self.port)
        log("mode %s", mode)

    def stats_text(self):
        self.stats["held"] = len(self.held)
        return "".join("%s %d\n" % (k, self.stats[k]) for k in STAT_KEYS) \
            + "mode %s\n" % self.mode

    async def deliver(self):
        """Send every held request upstream; one line per request."""
        held, self.held = self.held, []
        lines = []
        for h in held:
            try:
                status = await asyncio.wait_for(
                    deliver_one(self.upstream, h), 10)
            except asyncio.TimeoutError:
                log("deliver: no answer from upstream in 10 s")
                status = 0
            h.delivered.set()
            self.stats["delivered"] += 1
            log("delivered %s %s: %03d", h.req.method, h.req.target, status)
            lines.append("%03d %s %s\n" % (status, h.req.method,
                                           h.req.target))
        return "".join(lines)

    async def command(self, method, target):
        """Run one control command: (HTTP status, text)."""
        if method != "GET":
            return 405, "only GET\n"
        url = urllib.parse.urlsplit(target)
        words = [urllib.parse.unquote(w) for w in url.path.split("/") if w]
        try:
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True,
                                          strict_parsing=bool(url.query))
        except ValueError:
            return 400, "malformed query %r\n" % url.query
        if not words:
            return 400, "no command\n"
        if words[0] == "deliver":
            if len(words) > 1 or query:
                return 400, "deliver takes no arguments\n"
            return 200, await self.deliver()
        if words[0] in ("stats", "reset"):
            if len(words) > 1 or query:
                return 400, "%s takes no arguments\n" % words[0]
            if words[0] == "reset":
                self.stats = dict.fromkeys(STAT_KEYS, 0)
            return 200, self.stats_text()
        try:
            mode = parse_mode(words, query)
        except CommandError as e:
            return 400, "%s\n" % e
        try:
            await self.set_mode(mode)
        except OSError as e:
            return 500, "cannot listen on port %d: %s\n" % (self.port, e)
        return 200, "%s\n" % self.mode

    async def control(self, reader, writer):
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            req = Request(raw)
            status, text = await self.command(req.method, req.target)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        except ValueError as e:
            status, text = 400, "%s\n" % e
        body = text.encode()
        writer.write(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                      "Content-Length: %d\r\nConnection: close\r\n\r\n" %
                      (status, status_phrase(status), len(body))).encode()
                     + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()


def parse_hostport(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host.strip("[]"), int(port)


async def run(args):
    proxy = Proxy(args.upstream, args.listen_addr)
    await proxy.listen(args.listen_port)
    ctl = await asyncio.start_server(proxy.control, "127.0.0.1",
                                     args.control_port, reuse_address=True)
    ctl_port = ctl.sockets[0].getsockname()[1]
    sys.stdout.write("%d\n%d\n" % (proxy.port, ctl_port))
    sys.stdout.flush()
    log("listening on %s:%d, control on 127.0.0.1:%d, upstream %s:%d",
        args.listen_addr, proxy.port, ctl_port, *args.upstream)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.lifetime or None)
    except asyncio.TimeoutError:
        log("lifetime of %d s over: exiting", args.lifetime)
    ctl.close()
    proxy.close()


def main():
    global VERBOSE

    ap = argparse.ArgumentParser(
        description="HTTP/1.1 fault proxy for the S3 tests (see the "
                    "notes at the top of this file)")
    ap.add_argument("--upstream", required=True, type=parse_hostport,
                    help="HOST:PORT of the S3 server")
    ap.add_argument("--listen-addr", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; the "
                         "fault harness gives its bridge's)")
    ap.add_argument("--listen-port", type=int, default=0,
                    help="port on the listen address (default 0: a free "
                         "one)")
    ap.add_argument("--control-port", type=int, default=0,
                    help="control port on 127.0.0.1 (default 0: a free "
                         "one)")
    ap.add_argument("--lifetime", type=int, default=1800,
                    help="exit after this many seconds (0: never)")
    ap.add_argument("--verbose", action="store_true",
                    help="log every request, not only the faults")
    args = ap.parse_args()
    VERBOSE = args.verbose
    try:
        asyncio.run(run(args))
    except OSError as e:
        log("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
