# SPDX-License-Identifier: MIT
"""An S3 look-alike that checks each request's SigV4 signature with an
independent signer (botocore's S3SigV4Auth, offline) and answers like S3.

    /usr/bin/python3 sigcheck.py --log FILE --access AK --secret SK
        [--token TOKEN] [--region R] [--bucket B]

Prints the port it listens on (127.0.0.1, chosen free) once ready, then
serves until SIGTERM, its parent's exit or --lifetime seconds. For every
request it recomputes the signature from the method, the path and query as
received (decoded, then encoded again the way botocore encodes them: a
client that sent a non-canonical form fails), the headers listed in
SignedHeaders and x-amz-date, and compares it with the Authorization
header. It also checks that every x-amz-* header is signed, that
x-amz-content-sha256 is the SHA-256 of the body received. An "Expect:
100-continue" is never answered with a 100: a client that waits for one
is held up for its whole expect timeout. One line per request goes to the log:
"OK METHOD TARGET" or "MISMATCH METHOD TARGET: why"; a mismatch is
answered 403 SignatureDoesNotMatch.

Answers (bucket B, default "sigtest"): PUT 200; GET/HEAD of any key a
1000-byte object (byte i is i * 7 % 251), ranges honoured; DELETE 204;
ListObjectsV2: two pages, the first ending with the continuation token
"a/b+c=d" (which must come back exactly) and holding a key made of XML's
special characters, escaped. Keys under "err/STATUS/CODE"
are answered with that HTTP status and S3 error code; "short/..." sends
half of its announced body and closes; "stall/..." sends nothing for 30 s;
"norange/..." ignores Range headers (200 and the whole object).
Python 3.11 with Debian's python3-botocore (/usr/bin/python3).
"""

import argparse
import hashlib
import hmac
from html import escape
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

OBJECT = bytes(i * 7 % 251 for i in range(1000))
TOKEN = "a/b+c=d"


def canonical_path(raw):
    return quote(unquote(raw), safe="/~")


def decoded_params(raw_query):
    params = []
    if raw_query:
        for pair in raw_query.split("&"):
            k, _, v = pair.partition("=")
            params.append((unquote(k), unquote(v)))
    return params


def canonical_query(params):
    enc = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~"))
                 for k, v in params)
    return "&".join(f"{k}={v}" for k, v in enc)


class Checker:
    def __init__(self, args):
        self.args = args
        self.creds = Credentials(args.access, args.secret, args.token)
        self.lock = threading.Lock()
        self.log = open(args.log, "a", buffering=1)

    def record(self, line):
        with self.lock:
            self.log.write(line + "\n")

    def verify(self, method, target, headers, body):
        """None if the request is signed right, else why not."""
        a = self.args
        auth = headers.get("Authorization", "")
        algo, _, rest = auth.partition(" ")
        if algo != "AWS4-HMAC-SHA256":
            return f"not a SigV4 Authorization: {auth[:40]!r}"
        parts = {}
        for comp in rest.split(","):
            k, _, v = comp.strip().partition("=")
            parts[k] = v
        try:
            cred = parts["Credential"].split("/")
            signed = parts["SignedHeaders"].split(";")
            provided = parts["Signature"]
        except KeyError as e:
            return f"Authorization lacks {e}"
        amz_date = headers.get("x-amz-date", "")
        if len(cred) != 5 or cred[0] != a.access or cred[1] != amz_date[:8] \
                or cred[2] != a.region or cred[3] != "s3" \
                or cred[4] != "aws4_request":
            return f"bad credential scope {parts['Credential']!r}"
        for need in ("host", "x-amz-date", "x-amz-content-sha256"):
            if need not in signed:
                return f"{need} not signed ({parts['SignedHeaders']})"
        for name in headers.keys():
            if name.lower().startswith("x-amz-") and \
                    name.lower() not in signed:
                return f"{name} sent but not signed"
        if a.token is not None and \
                headers.get("x-amz-security-token") != a.token:
            return "x-amz-security-token missing or wrong"
        if a.token is None and "x-amz-security-token" in headers:
            return "x-amz-security-token sent without a session token"
        if headers.get("x-amz-content-sha256") != \
                hashlib.sha256(body).hexdigest():
            return "x-amz-content-sha256 is not the SHA-256 of the body"
        split = urlsplit(target)
        if canonical_path(split.path) != split.path:
            return (f"path {split.path!r} is not canonically encoded "
                    f"({canonical_path(split.path)!r})")
        params = decoded_params(split.query)
        if canonical_query(params) != split.query:
            return (f"query {split.query!r} is not canonical "
                    f"({canonical_query(params)!r})")
        # botocore computes the canonical query string from the decoded
        # parameters and takes the path as the caller encoded it
        req = AWSRequest(method=method,
                         url="http://" + headers.get("Host", "") +
                         canonical_path(split.path),
                         headers={h: headers.get(h, "") for h in signed},
                         params=params, data=body)
        req.context["timestamp"] = amz_date
        signer = S3SigV4Auth(self.creds, "s3", a.region)
        cr = signer.canonical_request(req)
        sts = signer.string_to_sign(req, cr)
        want = signer.signature(sts, req)
        if signer.signed_headers(signer.headers_to_sign(req)) != \
                parts["SignedHeaders"]:
            return ("SignedHeaders not in canonical order: " +
                    parts["SignedHeaders"])
        if not hmac.compare_digest(want, provided):
            return "signature mismatch"
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sigcheck"

    def log_message(self, fmt, *args):
        pass

    def handle_expect_100(self):
        # no "100 Continue": a client that waits for one before sending
        # its body is held up for its whole expect timeout
        self.expected_100 = True
        return True

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message):
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                f'{code}</Code><Message>{message}</Message></Error>')
        # the code goes in a header too, for HEAD (as s3rver does)
        self.send(status, body.encode(), [("Content-Type", "application/xml"),
                                          ("x-amz-error-code", code)])

    def handle_any(self):
        ck = self.server.checker
        expect = getattr(self, "expected_100", False)
        self.expected_100 = False
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            self.send(411)
            return
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n else b""
        why = ck.verify(self.command, self.path, self.headers, body)
        if why:
            ck.record(f"MISMATCH {self.command} {self.path}: {why}")
            self.error(403, "SignatureDoesNotMatch", why)
            return
        ck.record(f"OK {self.command} {self.path}" +
                  (" (Expect: 100-continue)" if expect else ""))
        self.answer(body)

    def answer(self, body):
        split = urlsplit(self.path)
        path = unquote(split.path)
        bucket, _, key = path.lstrip("/").partition("/")
        params = dict(decoded_params(split.query))
        if bucket != self.server.checker.args.bucket:
            self.error(404, "NoSuchBucket", "The bucket does not exist")
            return
        if key.startswith("err/"):
            _, status, code = key.split("/", 2)
            self.error(int(status), code, f"injected {code}")
            return
        if key.startswith("stall/"):
            time.sleep(30)
            return
        if key.startswith("short/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(OBJECT)))
            self.end_headers()
            self.wfile.write(OBJECT[:len(OBJECT) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.command == "PUT":
            self.send(200, headers=[("ETag", '"%s"' %
                                     hashlib.md5(body).hexdigest())])
        elif self.command == "DELETE":
            self.send(204)
        elif self.command in ("GET", "HEAD") and key:
            self.get_object()
        elif self.command == "GET" and params.get("list-type") == "2":
            self.list_page(params)
        else:
            self.error(400, "InvalidRequest", "not handled here")

    def get_object(self):
        rng = self.headers.get("Range")
        if not rng or self.path.startswith(
                "/" + self.server.checker.args.bucket + "/norange/"):
            self.send(200, OBJECT)
            return
        if not rng.startswith("bytes="):
            self.error(400, "InvalidArgument", "bad Range")
            return
        first, _, last = rng[6:].partition("-")
        first = int(first)
        last = int(last) if last else len(OBJECT) - 1
        if first >= len(OBJECT):
            self.error(416, "InvalidRange", "range not satisfiable")
            return
        last = min(last, len(OBJECT) - 1)
        self.send(206, OBJECT[first:last + 1], [
            ("Content-Range", f"bytes {first}-{last}/{len(OBJECT)}")])

    def list_page(self, params):
        prefix = params.get("prefix", "")
        token = params.get("continuation-token")
        if token is not None and token != TOKEN:
            self.error(400, "InvalidArgument",
                       "continuation token came back changed")
            return
        first = token is None
        keys = [f"{prefix}k{i}" for i in ((1, 2) if first else (3,))]
        if first:
            keys.append(f"{prefix}k<&'\">")
        contents = "".join(f"<Contents><Key>{escape(k, quote=True)}</Key>"
                           f"<Size>{len(k)}</Size></Contents>"
                           for k in keys)
        nxt = (f"<NextContinuationToken>{TOKEN}</NextContinuationToken>"
               if first else "")
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/'
                f'2006-03-01/"><Name>{self.server.checker.args.bucket}'
                f'</Name><Prefix>{prefix}</Prefix>'
                f'<IsTruncated>{"true" if first else "false"}</IsTruncated>'
                f'{nxt}{contents}</ListBucketResult>')
        self.send(200, body.encode(), [("Content-Type", "application/xml")])

    do_GET = do_PUT = do_HEAD = do_DELETE = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--access", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--token")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--bucket", default="sigtest")
    ap.add_argument("--lifetime", type=float, default=300)
    args = ap.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.checker = Checker(args)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    parent = os.getppid()

    def watchdog():
        end = time.monotonic() + args.lifetime
        while time.monotonic() < end and os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
