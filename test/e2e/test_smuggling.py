"""Request smuggling and framing over raw sockets.

Every ambiguous or malformed request must get one 400 (or the limit status)
followed by a closed connection, and the upstream must never see the request
hidden behind it. The upstream here records every byte it receives, so "never
sees" means: not one byte of the smuggled request reached it.
"""
import json
import socket
import threading
import time
import unittest

from harness import GatewayTest, LoopbackServer

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


class RecordingUpstream(LoopbackServer):
    """A minimal HTTP/1.1 keep-alive upstream in a thread. It records all
    bytes received and every complete request; it answers each request with
    a JSON body naming the request line, body size and body."""

    def __init__(self):
        self.data = bytearray()
        self.requests = []  # (request line, headers dict, body)
        super().__init__()

    def reset(self):
        with self.lock:
            self.data.clear()
            self.requests.clear()

    def snapshot(self):
        with self.lock:
            return bytes(self.data), list(self.requests)

    def serve(self, c, _index):
        buf = bytearray()

        def more():
            chunk = c.recv(65536)
            if not chunk:
                raise EOFError
            with self.lock:
                self.data.extend(chunk)
            buf.extend(chunk)

        def line():
            while b"\r\n" not in buf:
                more()
            i = buf.index(b"\r\n")
            out = bytes(buf[:i])
            del buf[: i + 2]
            return out

        def take(n):
            while len(buf) < n:
                more()
            out = bytes(buf[:n])
            del buf[:n]
            return out

        try:
            while True:
                request_line = line()
                headers = {}
                while True:
                    h = line()
                    if not h:
                        break
                    k, _, v = h.partition(b":")
                    headers[k.strip().lower().decode()] = v.strip().decode()
                body = b""
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int(line().split(b";")[0], 16)
                        if size == 0:
                            while line():
                                pass
                            break
                        body += take(size)
                        take(2)
                elif "content-length" in headers:
                    body = take(int(headers["content-length"]))
                with self.lock:
                    self.requests.append((request_line.decode(), headers, body))
                out = json.dumps({"line": request_line.decode(), "body_size": len(body),
                                  "body": body.decode("latin-1")}).encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Upstream: rec\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
        except (EOFError, ValueError):
            pass


def exchange(port, data, timeout=3.0, pause_after=None):
    """Sends `data` on a new connection and reads until the peer closes.
    Returns (bytes received, closed by peer?)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    closed = False
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    finally:
        s.close()
    return out, closed


def split_responses(data):
    """Splits a byte stream of HTTP/1.1 responses with Content-Length bodies."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            out.append((head, None, b""))
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for l in lines[1:]:
            k, _, v = l.partition(b":")
            hdrs[k.strip().lower().decode()] = v.strip().decode()
        n = int(hdrs.get("content-length", "0"))
        out.append((status, hdrs, rest[:n]))
        data = rest[n:]
    return out


class SmugglingTestBase(GatewayTest):
    CONFIG = None

    def setUp(self):
        super().setUp()
        self.rec = RecordingUpstream()
        self._procs.append(self.rec)
        self.gw = self.gateway({"routes": [{"id": "all", "uri": "/*",
                                            "upstream": {"nodes": {self.rec.addr: 1}}}]},
                               config=self.CONFIG)

    def assert_rejected(self, payload, status=400, statuses=None):
        """One error response, the connection closed, nothing reached the upstream."""
        self.rec.reset()
        out, closed = exchange(self.gw.port, payload)
        resps = split_responses(out)
        self.assertTrue(out.startswith(b"HTTP/1.1 "), out)
        self.assertEqual(len(resps), 1, out)
        self.assertIn(resps[0][0], statuses or (status,), out)
        self.assertEqual(resps[0][1].get("connection", "").lower(), "close", out)
        self.assertTrue(closed, f"connection left open after {out!r}")
        time.sleep(0.1)  # anything forwarded would have arrived by now
        data, reqs = self.rec.snapshot()
        self.assertNotIn(b"smuggled", data)
        self.assertEqual(data, b"", "upstream received bytes of a rejected request")
        self.assertEqual(reqs, [])
        self.assert_still_serves()

    def assert_still_serves(self):
        """A valid request afterwards works, and it is the only one the upstream saw."""
        self.rec.reset()
        out, closed = exchange(self.gw.port, b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        resps = split_responses(out)
        self.assertEqual(len(resps), 1, out)
        self.assertEqual(resps[0][0], 200, out)
        self.assertEqual(json.loads(resps[0][2])["line"], "GET /after HTTP/1.1")
        _, reqs = self.rec.snapshot()
        self.assertEqual([r[0] for r in reqs], ["GET /after HTTP/1.1"])

    def check_all(self, cases, **kw):
        for name, payload in cases:
            with self.subTest(name):
                self.assert_rejected(payload, **kw)


def post(headers, body=b"", version=b"HTTP/1.1"):
    return b"POST /a " + version + b"\r\nHost: x\r\n" + headers + b"\r\n" + body + SMUGGLED


class SmugglingTest(SmugglingTestBase):
    def test_content_length_with_transfer_encoding(self):
        self.check_all([
            ("CL then TE", post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
            ("TE then CL", post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n")),
            ("CL then TE, CL covers smuggled", post(b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n",
                                                   b"0\r\n\r\n")),
            ("CL 0 with TE", post(b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
        ])

    def test_duplicate_content_length(self):
        self.check_all([
            ("same values", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
            ("different values", post(b"Content-Length: 5\r\nContent-Length: 41\r\n", b"hello")),
            ("different case", post(b"Content-Length: 5\r\ncontent-length: 0\r\n", b"hello")),
        ])

    def test_invalid_content_length(self):
        cases = [b"abc", b"-5", b"5, 5", b"+5", b"0x5", b"5.0", b"5 5", b"", b"99999999999999999999999"]
        self.check_all([(f"Content-Length: {v!r}", post(b"Content-Length: " + v + b"\r\n", b"hello"))
                        for v in cases])

    def test_transfer_encoding_other_than_chunked(self):
        body = b"0\r\n\r\n"
        self.check_all([
            ("gzip", post(b"Transfer-Encoding: gzip\r\n", body)),
            ("identity", post(b"Transfer-Encoding: identity\r\n", body)),
            ("chunked, identity", post(b"Transfer-Encoding: chunked, identity\r\n", body)),
            ("gzip, chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", body)),
            ("xchunked", post(b"Transfer-Encoding:  xchunked\r\n", body)),
            ("chunked-false", post(b"Transfer-Encoding: chunked-false\r\n", body)),
            ("duplicate chunked", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", body)),
            ("chunked then identity", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", body)),
            ("vertical tab", post(b"Transfer-Encoding: \x0bchunked\r\n", body)),
        ])

    def test_space_before_colon(self):
        self.check_all([
            ("TE", post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n")),
            ("CL", post(b"Content-Length : 5\r\n", b"hello")),
            ("tab", post(b"Content-Length\t: 5\r\n", b"hello")),
            ("Host", b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n" + SMUGGLED),
        ])

    def test_obs_fold(self):
        self.check_all([
            ("space fold", post(b"X-A: a\r\n b\r\nContent-Length: 5\r\n", b"hello")),
            ("tab fold", post(b"X-A: a\r\n\tb\r\nContent-Length: 5\r\n", b"hello")),
            ("folded TE", post(b"Transfer-Encoding: identity\r\n chunked\r\n", b"0\r\n\r\n")),
            ("first header line folded", b"GET /a HTTP/1.1\r\n Host: x\r\n\r\n" + SMUGGLED),
        ])

    def test_bad_chunk_framing(self):
        te = b"Transfer-Encoding: chunked\r\n"
        self.check_all([
            ("non-hex size", post(te, b"zz\r\nhello\r\n0\r\n\r\n")),
            ("0x prefix", post(te, b"0x5\r\nhello\r\n0\r\n\r\n")),
            ("negative size", post(te, b"-5\r\nhello\r\n0\r\n\r\n")),
            ("overflow", post(te, b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n")),
            ("overflow ff", post(te, b"f" * 20 + b"\r\nhello\r\n0\r\n\r\n")),
            ("missing CRLF after data", post(te, b"5\r\nhelloXX0\r\n\r\n")),
            ("data longer than size", post(te, b"3\r\nhello\r\n0\r\n\r\n")),
            ("space after size", post(te, b"5 \r\nhello\r\n0\r\n\r\n")),
            ("space before size", post(te, b" 5\r\nhello\r\n0\r\n\r\n")),
            ("bare LF after size", post(te, b"5\nhello\r\n0\r\n\r\n")),
            ("empty size", post(te, b"\r\nhello\r\n0\r\n\r\n")),
        ])

    def test_bare_cr(self):
        self.check_all([
            ("in request line", b"GET /a HTTP/1.1\rHost: x\r\n\r\n" + SMUGGLED),
            ("in header value", b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n" + SMUGGLED),
            ("as line end", b"GET /a HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n" + SMUGGLED),
            ("before header end", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\r\n" + SMUGGLED),
        ])

    def test_host_rules(self):
        self.check_all([
            ("missing Host", b"GET /a HTTP/1.1\r\n\r\n" + SMUGGLED),
            ("duplicate Host", b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + SMUGGLED),
        ])

    def test_unsupported_versions(self):
        # 505 would also be a correct answer for an unsupported major version.
        for name, line in [("HTTP/2.0", b"HTTP/2.0"), ("HTTP/1.2", b"HTTP/1.2"), ("lowercase", b"http/1.1"),
                           ("HTTP/1.10", b"HTTP/1.10")]:
            with self.subTest(name):
                self.assert_rejected(b"GET /a " + line + b"\r\nHost: x\r\n\r\n" + SMUGGLED, statuses=(400, 505))

    def test_chunked_in_http10(self):
        self.check_all([
            ("chunked HTTP/1.0", post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", version=b"HTTP/1.0")),
        ])

    def test_malformed_request_lines_and_names(self):
        self.check_all([
            ("NUL in header", post(b"X-A: a\x00b\r\nContent-Length: 5\r\n", b"hello")),
            ("space in method", b"GE T /a HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED),
            ("space in target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED),
            ("empty header name", post(b": v\r\nContent-Length: 5\r\n", b"hello")),
            ("header without colon", post(b"X-No-Colon\r\nContent-Length: 5\r\n", b"hello")),
        ])

    def test_valid_requests_are_framed_exactly(self):
        """Control: the same shapes, valid, reach the upstream intact, and a
        pipelined request after a body is answered as its own request."""
        self.rec.reset()
        payload = (b"POST /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                   b"POST /p2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nworld\r\n3;ext=1\r\n!!!\r\n0\r\nX-Trailer: t\r\n\r\n"
                   b"GET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out, closed = exchange(self.gw.port, payload)
        resps = split_responses(out)
        self.assertEqual([r[0] for r in resps], [200, 200, 200], out)
        bodies = [json.loads(r[2]) for r in resps]
        self.assertEqual([b["line"] for b in bodies], ["POST /p1 HTTP/1.1", "POST /p2 HTTP/1.1", "GET /p3 HTTP/1.1"])
        self.assertEqual(bodies[0]["body"], "hello")
        self.assertEqual(bodies[1]["body"], "world!!!")
        self.assertTrue(closed)
        _, reqs = self.rec.snapshot()
        self.assertEqual([r[0] for r in reqs], ["POST /p1 HTTP/1.1", "POST /p2 HTTP/1.1", "GET /p3 HTTP/1.1"])


class PipelinedAfterChunkedBodyTest(GatewayTest):
    """A request pipelined behind a complete chunked body must go through the
    gateway's own routing and plugins, never straight to the upstream."""

    def test_pipelined_request_after_chunked_body_does_not_bypass_auth(self):
        rec = RecordingUpstream()
        self._procs.append(rec)
        gw = self.gateway({
            "routes": [
                {"id": "public", "uri": "/public/*", "upstream": {"nodes": {rec.addr: 1}}},
                {"id": "admin", "uri": "/admin/*", "plugins": {"key-auth": {}},
                 "upstream": {"nodes": {rec.addr: 1}}},
            ],
            "consumers": [{"username": "ops", "plugins": {"key-auth": {"key": "secret-key"}}}],
        })
        payload = (b"POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n0\r\n\r\n"
                   b"GET /admin/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out, closed = exchange(gw.port, payload)
        resps = split_responses(out)
        self.assertEqual([r[0] for r in resps], [200, 401], out)
        self.assertEqual(json.loads(resps[0][2])["body"], "hello")
        time.sleep(0.2)
        data, reqs = rec.snapshot()
        self.assertEqual([r[0] for r in reqs], ["POST /public/x HTTP/1.1"])
        self.assertNotIn(b"/admin/secret", data, "the unauthenticated request reached the upstream")


class PipeliningTest(SmugglingTestBase):
    def test_pipelined_requests_answered_in_order(self):
        n = 10
        payload = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n))
        payload += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out, closed = exchange(self.gw.port, payload)
        resps = split_responses(out)
        self.assertEqual(len(resps), n + 1, out)
        lines = [json.loads(r[2])["line"] for r in resps]
        self.assertEqual(lines, [f"GET /p{i} HTTP/1.1" for i in range(n)] + ["GET /last HTTP/1.1"])
        self.assertTrue(all(r[0] == 200 for r in resps))
        self.assertTrue(closed)

    def test_pipelined_requests_sent_byte_by_byte_slowly(self):
        payload = (b"GET /s1 HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"POST /s2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                   b"GET /s3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(payload), 7):
            s.sendall(payload[i:i + 7])
            time.sleep(0.002)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        s.close()
        resps = split_responses(out)
        self.assertEqual([json.loads(r[2])["line"] for r in resps],
                         ["GET /s1 HTTP/1.1", "POST /s2 HTTP/1.1", "GET /s3 HTTP/1.1"])
        self.assertEqual(json.loads(resps[1][2])["body"], "abc")

    def test_valid_then_invalid_pipelined(self):
        self.rec.reset()
        payload = (b"GET /ok1 HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                   + SMUGGLED)
        out, closed = exchange(self.gw.port, payload)
        resps = split_responses(out)
        self.assertEqual([r[0] for r in resps], [200, 400], out)
        self.assertEqual(json.loads(resps[0][2])["line"], "GET /ok1 HTTP/1.1")
        self.assertTrue(closed)
        time.sleep(0.1)
        data, reqs = self.rec.snapshot()
        self.assertEqual([r[0] for r in reqs], ["GET /ok1 HTTP/1.1"])
        self.assertNotIn(b"/bad", data)
        self.assertNotIn(b"smuggled", data)


class LimitsTest(SmugglingTestBase):
    CONFIG = {"holdfast": {"max_uri_size": 1024, "max_header_size": 4096, "max_body_size": 1000}}

    def test_uri_too_long_is_414(self):
        self.assert_rejected(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED, status=414)
        # an endless request line is cut off without waiting for its end
        self.assert_rejected(b"GET /" + b"a" * 3000, status=414)
        # just under the limit is fine
        self.rec.reset()
        out, _ = exchange(self.gw.port, b"GET /" + b"a" * 1000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(split_responses(out)[0][0], 200, out[:200])

    def test_headers_too_large_is_431(self):
        self.assert_rejected(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n" + SMUGGLED,
                             status=431)
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(90))  # ~4.4 KB in small headers
        self.assert_rejected(b"GET /a HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n" + SMUGGLED, status=431)
        self.rec.reset()
        out, _ = exchange(self.gw.port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
                          + b"a" * 3000 + b"\r\n\r\n")
        self.assertEqual(split_responses(out)[0][0], 200, out[:200])

    def test_body_too_large_is_413(self):
        self.assert_rejected(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n" + b"b" * 1001 + SMUGGLED,
                             status=413)
        # exactly the limit passes intact
        self.rec.reset()
        out, _ = exchange(self.gw.port, b"POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n"
                          + b"b" * 1000)
        resps = split_responses(out)
        self.assertEqual(resps[0][0], 200, out[:200])
        self.assertEqual(json.loads(resps[0][2])["body_size"], 1000)

    def test_chunked_body_too_large_is_413(self):
        # a body that arrives in pieces
        self.rec.reset()
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
        s.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.05)
        s.sendall(b"800\r\n" + b"c" * 0x800 + b"\r\n")
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out)
        time.sleep(0.1)
        _, reqs = self.rec.snapshot()
        self.assertEqual(reqs, [], "upstream received a complete over-limit request")

    def test_small_chunked_body_over_limit_sent_at_once_is_413(self):
        # the whole over-limit body is in the first read: the limit still applies
        body = b"5dc\r\n" + b"c" * 1500 + b"\r\n0\r\n\r\n"
        self.assert_rejected(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body + SMUGGLED,
                             status=413)

    def test_chunked_body_at_limit_passes(self):
        self.rec.reset()
        body = b"1f4\r\n" + b"c" * 500 + b"\r\n1f4\r\n" + b"d" * 500 + b"\r\n0\r\n\r\n"
        out, _ = exchange(self.gw.port, b"POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n" + body)
        resps = split_responses(out)
        self.assertEqual(resps[0][0], 200, out[:300])
        self.assertEqual(json.loads(resps[0][2])["body_size"], 1000)


if __name__ == "__main__":
    unittest.main()
