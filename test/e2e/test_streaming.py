"""Large and special bodies through the real binary: 100 MB uploads and
downloads stream without buffering (the gateway's RSS stays small), slow
readers apply back-pressure, Expect: 100-continue, HEAD, 204/304, and
WebSocket upgrades (only when the route enables them)."""
import base64
import hashlib
import http.client
import json
import os
import socket
import threading
import time
import unittest

from harness import GatewayTest, LoopbackServer, SANITIZER

MB = 1 << 20
SIZE = 100 * MB
RSS_LIMIT_KB = 64 * 1024
# Under the sanitizer run (README, Tests) RSS measures ASan (shadow memory,
# and a quarantine that holds freed blocks back from reuse), not Holdfast:
# the absolute bound is checked on the normal build only. The transfers and
# their checksums, and the slow reader's growth bound, still run.
CHECK_RSS_LIMIT = not SANITIZER
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


class RssSampler:
    """Samples the gateway's RSS from a thread while a transfer runs."""

    def __init__(self, gw, interval=0.01):
        self.gw = gw
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self.gw.rss_kb())
            except OSError:
                pass
            time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    @property
    def max_kb(self):
        return max(self.samples)


def sha_of_x(n):
    h = hashlib.sha256()
    block = b"x" * MB
    left = n
    while left:
        part = block[: min(left, MB)]
        h.update(part)
        left -= len(part)
    return h.hexdigest()


def _recv_head(sock, have, timeout):
    sock.settimeout(timeout)
    buf = have
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed after {buf!r}")
        buf += chunk
    return buf


def split_head(buf):
    """(first line, headers with lower-case names, bytes after the head) of a
    buffer that holds a whole message head."""
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], headers, rest


def read_head(sock, timeout=5.0):
    """Reads one response head from a raw socket; returns (status, headers, leftover bytes)."""
    first, headers, rest = split_head(_recv_head(sock, b"", timeout))
    return int(first.split()[1]), headers, rest


def read_exact(sock, n, have=b"", timeout=5.0):
    sock.settimeout(timeout)
    buf = have
    while len(buf) < n:
        chunk = sock.recv(max(65536, n - len(buf)))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf[:n], buf[n:]


class StreamingTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("big")
        self.gw = self.gateway({"routes": [{"id": "all", "uri": "/*", "upstream": {"nodes": {self.up.addr: 1}},
                                            "timeout": {"connect": 5, "send": 60, "read": 60}}]})

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=timeout)

    def upload(self, chunked):
        block = os.urandom(MB)
        expected = hashlib.sha256()

        def body():
            for i in range(SIZE // MB):
                b = bytes([i]) + block[1:]
                expected.update(b)
                yield b

        conn = self.conn()
        headers = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(SIZE)}
        with RssSampler(self.gw) as rss:
            conn.request("POST", "/sink", body=body(), headers=headers, encode_chunked=chunked)
            r = conn.getresponse()
            data = json.loads(r.read())
        conn.close()
        self.assertEqual(r.status, 200)
        self.assertEqual(data["body_size"], SIZE)
        self.assertEqual(data["body_sha256"], expected.hexdigest())
        self.assertEqual(data["headers"].get("transfer-encoding", "").lower(), "chunked" if chunked else "")
        self.assertGreater(len(rss.samples), 5)
        if CHECK_RSS_LIMIT:
            self.assertLess(rss.max_kb, RSS_LIMIT_KB, f"gateway RSS reached {rss.max_kb} kB")

    def test_100mb_chunked_upload_streams(self):
        self.upload(chunked=True)

    def test_100mb_sized_upload_streams(self):
        self.upload(chunked=False)

    def download(self, path, chunked):
        conn = self.conn()
        h = hashlib.sha256()
        n = 0
        with RssSampler(self.gw) as rss:
            conn.request("GET", path)
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            te = (r.getheader("Transfer-Encoding") or "").lower()
            cl = r.getheader("Content-Length")
            while True:
                d = r.read(MB)
                if not d:
                    break
                h.update(d)
                n += len(d)
        conn.close()
        if chunked:
            self.assertEqual(te, "chunked")
            self.assertIsNone(cl)
        else:
            self.assertEqual(cl, str(SIZE))
        self.assertEqual(n, SIZE)
        self.assertEqual(h.hexdigest(), sha_of_x(SIZE))
        self.assertGreater(len(rss.samples), 5)
        if CHECK_RSS_LIMIT:
            self.assertLess(rss.max_kb, RSS_LIMIT_KB, f"gateway RSS reached {rss.max_kb} kB")

    def test_100mb_download_streams(self):
        self.download(f"/bytes/{SIZE}", chunked=False)

    def test_100mb_chunked_download_streams(self):
        self.download(f"/bytes/{SIZE}?chunked=1", chunked=True)

    def test_slow_reader_does_not_grow_gateway_memory(self):
        # Warm up so the baseline includes pools and buffers.
        self.assertEqual(self.gw.get("/bytes/1000").status, 200)
        base = self.gw.rss_kb()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.connect(("127.0.0.1", self.gw.port))
        s.sendall(f"GET /bytes/{SIZE} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, got = read_head(s)
        self.assertEqual(status, 200)
        received = len(got)
        with RssSampler(self.gw, interval=0.02) as rss:
            t_end = time.time() + 3.0
            while time.time() < t_end:  # ~3 MB/s: far slower than the upstream sends
                received += len(s.recv(64 * 1024))
                time.sleep(0.02)
        # The upstream is far ahead and would have filled memory if the gateway buffered.
        self.assertLess(received, SIZE // 4)
        if CHECK_RSS_LIMIT:
            self.assertLess(rss.max_kb, RSS_LIMIT_KB, f"gateway RSS reached {rss.max_kb} kB")
        self.assertLess(rss.max_kb - base, 24 * 1024, f"RSS grew from {base} to {rss.max_kb} kB")
        # Reading on still gets the rest, intact.
        s.settimeout(30)
        h_len = received
        while h_len < SIZE:
            d = s.recv(4 * MB)
            if not d:
                break
            h_len += len(d)
        s.close()
        self.assertEqual(h_len, SIZE)
        self.assertEqual(self.gw.get("/anything").status, 200)

    def test_slow_uploader_does_not_grow_gateway_memory(self):
        # The client pauses in the middle of a body: the gateway waits, without holding the body.
        s = socket.create_connection(("127.0.0.1", self.gw.port))
        total = 20 * MB
        s.sendall(f"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n".encode())
        block = b"u" * MB
        with RssSampler(self.gw, interval=0.02) as rss:
            for i in range(total // MB):
                s.sendall(block)
                if i % 5 == 4:
                    time.sleep(0.3)
        status, headers, rest = read_head(s, timeout=30)
        body, _ = read_exact(s, int(headers["content-length"]), rest)
        s.close()
        self.assertEqual(status, 200)
        data = json.loads(body)
        self.assertEqual(data["body_size"], total)
        self.assertEqual(data["body_sha256"], hashlib.sha256(block * (total // MB)).hexdigest())
        if CHECK_RSS_LIMIT:
            self.assertLess(rss.max_kb, RSS_LIMIT_KB)


class ExpectContinueTest(GatewayTest):
    def test_expect_100_continue_upload(self):
        up = self.upstream()
        gw = self.gateway({"routes": [{"id": "r", "uri": "/*", "upstream": {"nodes": {up.addr: 1}}}]})
        body = os.urandom(MB)
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
        status, _, rest = read_head(s, timeout=3)  # must come without the body being sent
        self.assertEqual(status, 100)
        self.assertEqual(rest, b"")
        s.sendall(body)
        status, headers, rest = read_head(s, timeout=10)
        self.assertEqual(status, 200)
        data, _ = read_exact(s, int(headers["content-length"]), rest)
        s.close()
        data = json.loads(data)
        self.assertEqual(data["body_size"], len(body))
        self.assertEqual(data["body_sha256"], hashlib.sha256(body).hexdigest())
        self.assertNotIn("expect", data["headers"])

    def test_expect_rejected_by_plugin_gets_final_status_without_100(self):
        up = self.upstream()
        gw = self.gateway({"routes": [{"id": "r", "uri": "/*", "plugins": {"key-auth": {}},
                                       "upstream": {"nodes": {up.addr: 1}}}]})
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
        status, headers, _ = read_head(s, timeout=3)
        s.close()
        self.assertEqual(status, 401)


class HeadAnd204304Test(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("h")
        self.gw = self.gateway({"routes": [{"id": "r", "uri": "/*", "upstream": {"nodes": {self.up.addr: 1}}}]})

    def test_head_keeps_content_length_and_has_no_body(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=5)
        conn.request("HEAD", "/bytes/123456")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Content-Length"), "123456")
        self.assertEqual(r.read(), b"")
        port = conn.sock.getsockname()[1]
        # the connection stays usable: the next response is framed right
        conn.request("GET", "/bytes/10")
        r = conn.getresponse()
        self.assertEqual(r.read(), b"x" * 10)
        conn.request("HEAD", "/anything")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.read(), b"")
        conn.request("GET", "/anything")
        r = conn.getresponse()
        self.assertEqual(json.loads(r.read())["method"], "GET")
        self.assertEqual(conn.sock.getsockname()[1], port)
        conn.close()

    def test_head_raw_framing(self):
        # Raw: a HEAD answer must carry no body bytes at all, even for a chunked resource.
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
        s.sendall(b"HEAD /bytes/5000?chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /bytes/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, rest = read_head(s)
        self.assertEqual(status, 200)
        status2, headers2, rest2 = read_head_from(s, rest)
        self.assertEqual(status2, 200)
        body, _ = read_exact(s, int(headers2["content-length"]), rest2)
        self.assertEqual(body, b"xxx")
        s.close()

    def test_204_and_304_have_no_body(self):
        for code in (204, 304):
            with self.subTest(code):
                s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
                s.sendall(f"GET /status/{code} HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /bytes/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                status, headers, rest = read_head(s)
                self.assertEqual(status, code)
                self.assertNotIn("transfer-encoding", headers)
                if code == 204:
                    self.assertIn(headers.get("content-length"), (None, "0"))
                # the very next bytes are the next response
                status2, headers2, rest2 = read_head_from(s, rest)
                self.assertEqual(status2, 200)
                body, _ = read_exact(s, int(headers2["content-length"]), rest2)
                self.assertEqual(body, b"xxxx")
                s.close()


def read_head_from(sock, have, timeout=5.0):
    """Like read_head, starting with bytes already received."""
    buf = _recv_head(sock, have, timeout)
    if not buf.startswith(b"HTTP/1.1 "):
        raise AssertionError(f"expected a status line, got {buf[:200]!r}")
    first, headers, rest = split_head(buf)
    return int(first.split()[1]), headers, rest


class WebSocketUpstream(LoopbackServer):
    """A tiny WebSocket upstream (thread): answers the handshake with 101,
    sends a greeting, then echoes every byte. Without an Upgrade header it
    answers a plain 200 and closes."""

    GREETING = b"hello-from-upstream"

    def __init__(self):
        self.handshakes = []
        self.tunnel_bytes = bytearray()  # everything received after the handshake
        self.closed = threading.Event()
        super().__init__(backlog=16)

    def serve(self, c, _index):
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
            request_line, headers, rest = split_head(buf)
            self.handshakes.append((request_line, headers))
            if headers.get("upgrade", "").lower() != "websocket":
                body = b"no upgrade"
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
                return
            accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + WS_GUID).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + self.GREETING)
            if rest:
                self.tunnel_bytes.extend(rest)
                c.sendall(rest)
            while True:
                data = c.recv(65536)
                if not data:
                    break
                self.tunnel_bytes.extend(data)
                c.sendall(data)
            self.closed.set()
        except OSError:
            self.closed.set()


def ws_frame(payload, opcode=0x1):
    """A masked client frame (RFC 6455)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class WebSocketTest(GatewayTest):
    def handshake(self, gw, path="/ws"):
        key = base64.b64encode(os.urandom(16))
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        status, headers, rest = read_head(s)
        return s, key, status, headers, rest

    def test_websocket_upgrade_and_bidirectional_bytes(self):
        ws = WebSocketUpstream()
        self._procs.append(ws)
        gw = self.gateway({"routes": [{"id": "ws", "uri": "/ws", "enable_websocket": True,
                                       "upstream": {"nodes": {ws.addr: 1}}}]})
        s, key, status, headers, rest = self.handshake(gw)
        self.assertEqual(status, 101)
        self.assertEqual(headers.get("upgrade", "").lower(), "websocket")
        self.assertIn("upgrade", headers.get("connection", "").lower())
        self.assertEqual(headers.get("sec-websocket-accept"),
                         base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode())
        _, up_headers = ws.handshakes[0]
        self.assertEqual(up_headers.get("upgrade", "").lower(), "websocket")
        self.assertIn("upgrade", up_headers.get("connection", "").lower())
        self.assertEqual(up_headers.get("sec-websocket-key"), key.decode())
        # upstream -> client without the client sending anything
        greeting, rest = read_exact(s, len(WebSocketUpstream.GREETING), rest)
        self.assertEqual(greeting, WebSocketUpstream.GREETING)
        # client -> upstream -> client
        sent = b""
        for payload in (b"ping", os.urandom(300), os.urandom(70000)):
            frame = ws_frame(payload, 0x2)
            s.sendall(frame)
            sent += frame
            echoed, rest = read_exact(s, len(frame), rest, timeout=10)
            self.assertEqual(bytes(ws.tunnel_bytes[:len(sent)]), sent,
                             "the upstream's tunnel bytes differ from what the client sent")
            self.assertEqual(echoed, frame)
        # the tunnel survives idle time
        time.sleep(0.5)
        frame = ws_frame(b"after idle")
        s.sendall(frame)
        echoed, rest = read_exact(s, len(frame), rest)
        self.assertEqual(echoed, frame)
        # the client closing ends the upstream side too
        s.close()
        self.assertTrue(ws.closed.wait(3), "upstream side of the tunnel was not closed")

    def test_enable_websocket_from_service(self):
        ws = WebSocketUpstream()
        self._procs.append(ws)
        gw = self.gateway({"services": [{"id": "s", "enable_websocket": True, "upstream": {"nodes": {ws.addr: 1}}}],
                           "routes": [{"id": "ws", "uri": "/ws", "service_id": "s"}]})
        s, key, status, headers, rest = self.handshake(gw)
        self.assertEqual(status, 101)
        greeting, rest = read_exact(s, len(WebSocketUpstream.GREETING), rest)
        self.assertEqual(greeting, WebSocketUpstream.GREETING)
        s.close()

    def test_without_enable_websocket_upgrade_is_not_passed(self):
        ws = WebSocketUpstream()
        self._procs.append(ws)
        gw = self.gateway({"routes": [{"id": "ws", "uri": "/ws", "upstream": {"nodes": {ws.addr: 1}}}]})
        s, key, status, headers, rest = self.handshake(gw)
        self.assertEqual(status, 200)
        body, _ = read_exact(s, int(headers["content-length"]), rest)
        s.close()
        self.assertEqual(body, b"no upgrade")
        _, up_headers = ws.handshakes[0]
        self.assertNotIn("upgrade", up_headers)
        self.assertNotIn("upgrade", up_headers.get("connection", "").lower())
        self.assertNotIn("upgrade", headers)


if __name__ == "__main__":
    unittest.main()
