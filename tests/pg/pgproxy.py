#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A PostgreSQL fault proxy, between tallyfs and its PostgreSQL server in
the tests: it loses the answer to a COMMIT.

    pgproxy.py --upstream HOST:PORT [--listen-addr A] [--listen-port N]
               [--control-port N] [--lifetime SECONDS]

Listens on A (default 127.0.0.1) port N (0: a free one) and forwards each
client connection to the upstream server, byte for byte, both ways. It
reads the client's side of the frontend/backend protocol (version 3) as it
passes: the untyped start-up messages, then each typed message (a type
byte and a length). An SSLRequest or GSSENCRequest is answered 'N' by the
proxy itself (not forwarded), so that the stream stays readable; libpq's
default sslmode=prefer goes on in the clear.

The fault (the answer to a COMMIT lost, as a network cut, a failover or a
proxy restart loses it): the client's COMMIT (a simple query, or a Bind
of the extended protocol, libpq's pipelines included, of a statement
prepared as COMMIT or END, named or not) reaches the server, which
commits; from then on nothing
the server sends reaches that client, and after --settle seconds (0.5)
both connections are closed. The client sees its connection lost with
the COMMIT's outcome unknown to it; the server has committed.

CONTROL. One plain HTTP GET on the control port (127.0.0.1), the answer
text/plain:

    GET /pass                  forward everything (the mode at start)
    GET /lose-commit[?n=N][&with=TEXT]
                               lose the answers of the next N COMMITs (1
                               by default); with=TEXT: only of a COMMIT
                               whose transaction sent TEXT to the server
                               (in any message since the last COMMIT or
                               ROLLBACK on that connection: a statement's
                               text or a bound value)
    GET /stats                 "connections N", "commits N" (COMMITs
                               seen), "lost N" (answers lost), "mode ..."

Once both ports listen, the proxy prints the proxy port on the first line
of stdout and the control port on the second. It exits on SIGTERM or
SIGINT, and by itself after --lifetime seconds (default 1800, 0 = never).

Python 3 standard library only (asyncio).
"""

import argparse
import asyncio
import signal
import struct
import sys
import urllib.parse

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


def log(fmt, *args):
    print("pgproxy: " + (fmt % args if args else fmt), file=sys.stderr,
          flush=True)


class State:
    def __init__(self, settle):
        self.settle = settle
        self.lose = 0           # COMMIT answers still to lose
        self.with_text = None   # only a transaction that sent this
        self.connections = 0
        self.commits = 0
        self.lost = 0

    def mode(self):
        if not self.lose:
            return "pass"
        return "lose-commit n=%d%s" % (
            self.lose, " with=%s" % self.with_text if self.with_text else "")


def first_word(sql):
    words = sql.replace(";", " ").upper().split()
    return words[0] if words else ""


def is_commit(sql):
    return first_word(sql) in ("COMMIT", "END")


def is_rollback(sql):
    return first_word(sql) in ("ROLLBACK", "ABORT")


class Conn:
    """One client connection and its upstream one."""

    def __init__(self, state, reader, writer, upstream):
        self.st = state
        self.cr, self.cw = reader, writer
        self.upstream = upstream
        self.ur = self.uw = None
        self.swallow = False    # the server's bytes go nowhere
        self.sent = b""         # what this transaction sent (with=)
        self.prepared = {}      # statement name -> its text

    async def run(self):
        host, port = self.upstream
        try:
            self.ur, self.uw = await asyncio.open_connection(host, port)
        except OSError as e:
            log("upstream unreachable: %s", e)
            self.cw.close()
            return
        down = asyncio.ensure_future(self.server_to_client())
        try:
            await self.client_to_server()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            await self.close_later(0)
            down.cancel()

    async def close_later(self, delay):
        if delay:
            await asyncio.sleep(delay)
        for w in (self.cw, self.uw):
            if w is not None:
                try:
                    w.close()
                except OSError:
                    pass

    async def server_to_client(self):
        try:
            while True:
                data = await self.ur.read(65536)
                if not data:
                    break
                if self.swallow:
                    continue
                self.cw.write(data)
                await self.cw.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            if not self.swallow:
                await self.close_later(0)

    async def client_to_server(self):
        # the start-up: untyped messages until the StartupMessage
        while True:
            head = await self.cr.readexactly(4)
            (n,) = struct.unpack("!I", head)
            body = await self.cr.readexactly(n - 4) if n > 4 else b""
            code = struct.unpack("!I", body[:4])[0] if len(body) >= 4 else 0
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                self.cw.write(b"N")     # no encryption: stay readable
                await self.cw.drain()
                continue
            self.uw.write(head + body)
            await self.uw.drain()
            if code == CANCEL_REQUEST:
                return
            break
        # then typed messages
        lose = False
        while True:
            t = await self.cr.readexactly(1)
            head = await self.cr.readexactly(4)
            (n,) = struct.unpack("!I", head)
            body = await self.cr.readexactly(n - 4) if n > 4 else b""
            lose = self.look(t, body) or lose
            self.uw.write(t + head + body)
            await self.uw.drain()
            # a Bind of COMMIT runs once its Execute and the Sync (or
            # Flush) after it reach the server: those go too
            if lose and t in (b"Q", b"S", b"H"):
                self.swallow = True
                self.st.lost += 1
                log("the answer to a COMMIT is lost (%d so far)",
                    self.st.lost)
                await self.close_later(self.st.settle)
                return

    def look(self, t, body):
        """Whether the answer to this message is to be lost."""
        sql = None
        if t == b"Q":
            sql = body.split(b"\0", 1)[0]
        elif t == b"P":
            # a statement prepared (under a name, or the unnamed one):
            # what a later Bind runs
            parts = body.split(b"\0", 2)
            if len(parts) > 1:
                self.prepared[parts[0]] = parts[1]
        elif t == b"B":
            parts = body.split(b"\0", 2)
            if len(parts) > 1:
                sql = self.prepared.get(parts[1], b"")
        if self.st.with_text is not None:
            self.sent += body
        if sql is None:
            return False
        text = sql.decode("utf-8", "replace")
        if is_rollback(text):
            self.sent = b""
            return False
        if not is_commit(text):
            return False
        self.st.commits += 1
        sent, self.sent = self.sent, b""
        if not self.st.lose:
            return False
        if (self.st.with_text is not None and
                self.st.with_text.encode() not in sent):
            return False
        self.st.lose -= 1
        if not self.st.lose:
            self.st.with_text = None
        return True


async def control(state, reader, writer):
    try:
        line = (await reader.readline()).decode("latin-1").split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        url = urllib.parse.urlsplit(line[1] if len(line) > 1 else "/")
        q = urllib.parse.parse_qs(url.query)
        code, text = 200, ""
        if url.path == "/pass":
            state.lose, state.with_text = 0, None
            text = state.mode()
        elif url.path == "/lose-commit":
            try:
                n = int(q.get("n", ["1"])[0])
            except ValueError:
                n = -1
            if n < 1:
                code, text = 400, "n must be a positive count"
            else:
                state.lose = n
                state.with_text = q.get("with", [None])[0]
                text = state.mode()
        elif url.path == "/stats":
            text = ("connections %d\ncommits %d\nlost %d\nmode %s" %
                    (state.connections, state.commits, state.lost,
                     state.mode()))
        else:
            code, text = 400, "unknown command %s" % url.path
        body = (text + "\n").encode()
        writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" %
                     (code, b"OK" if code == 200 else b"Bad Request",
                      len(body)) + body)
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--listen-addr", default="127.0.0.1")
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--lifetime", type=float, default=1800)
    ap.add_argument("--settle", type=float, default=0.5)
    a = ap.parse_args()
    host, _, port = a.upstream.rpartition(":")
    state = State(a.settle)

    async def client(reader, writer):
        state.connections += 1
        await Conn(state, reader, writer, (host, int(port))).run()

    srv = await asyncio.start_server(client, a.listen_addr, a.listen_port)
    ctl = await asyncio.start_server(lambda r, w: control(state, r, w),
                                     "127.0.0.1", a.control_port)
    print(srv.sockets[0].getsockname()[1], flush=True)
    print(ctl.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    if a.lifetime > 0:
        loop.call_later(a.lifetime, stop.set)
    await stop.wait()
    srv.close()
    ctl.close()


if __name__ == "__main__":
    asyncio.run(main())
