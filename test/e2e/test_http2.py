"""Downstream HTTP/2 against the real binary (#13): h2c with prior knowledge
and ALPN h2 on the same ports as HTTP/1.1, each stream through the same
pipeline (routing, plugins, access log), flow control both ways, the strict
h2 -> h1 downgrade, the limits, and the defences against abusive clients
(python3-h2 speaking raw frames). Clients: curl, h2load, python3-h2."""
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame,
                              SettingsFrame, WindowUpdateFrame)
import hpack

from harness import GatewayTest, LoopbackServer
from pki import Pki


def route(uri, nodes, **kw):
    r = {"id": kw.pop("id", "r1"), "uri": uri, "upstream": {"nodes": nodes}}
    r.update(kw)
    return r


class H2Client:
    """A python3-h2 client on one connection (h2c, or h2 over TLS)."""

    def __init__(self, port, tls=None, sni="a.test", validate=True, window=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            tls.set_alpn_protocols(["h2"])
            self.sock = tls.wrap_socket(self.sock, server_hostname=sni)
            assert self.sock.selected_alpn_protocol() == "h2"
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate, validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(cfg)
        self.closed = False
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.streams = {}
        self.goaway = None
        self.closed = False
        self.auto_ack = True

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True

    def send_raw(self, data):
        self.sock.sendall(data)

    def _st(self, sid):
        return self.streams.setdefault(sid, {"status": None, "headers": [], "data": bytearray(), "trailers": None,
                                             "ended": False, "reset": None})

    def start(self, method="GET", path="/", authority="a.test", headers=(), end=True, scheme="http"):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", scheme), (":authority", authority)] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end)
        self._st(sid)
        self.flush()
        return sid

    def send_body(self, sid, data, end=True, timeout=20):
        view = memoryview(data)
        deadline = time.time() + timeout
        while view:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(view))
            if room <= 0:
                self.pump(lambda: self.conn.local_flow_control_window(sid) > 0 or self.streams[sid]["reset"] is not None,
                          timeout=deadline - time.time())
                if self.streams[sid]["reset"] is not None:
                    return
                continue
            self.conn.send_data(sid, bytes(view[:room]))
            view = view[room:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self, done, timeout=10):
        deadline = time.time() + timeout
        while not done():
            if self.closed:
                raise AssertionError("connection closed")
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("h2 client: condition not reached")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.closed = True
                if done():
                    return
                raise AssertionError("connection closed")
            for ev in self.conn.receive_data(data):
                self.on_event(ev)
            self.flush()

    def on_event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            st = self._st(ev.stream_id)
            st["headers"] = ev.headers
            st["status"] = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            st = self._st(ev.stream_id)
            st["data"] += ev.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self._st(ev.stream_id)["trailers"] = ev.headers
        elif isinstance(ev, h2.events.StreamEnded):
            self._st(ev.stream_id)["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            self._st(ev.stream_id)["reset"] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev

    def wait(self, sid, timeout=10):
        self.pump(lambda: self.streams[sid]["ended"] or self.streams[sid]["reset"] is not None, timeout)
        return self.streams[sid]

    def get(self, path, **kw):
        return self.wait(self.start("GET", path, **kw))

    def wait_closed(self, timeout=10):
        try:
            self.pump(lambda: self.closed, timeout)
        except AssertionError:
            pass
        return self.closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class RawConn:
    """HTTP/2 frames by hand (hyperframe + hpack), for what a library refuses to send."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b""

    def send(self, frame):
        self.sock.sendall(frame.serialize())

    def headers(self, sid, method, path, end=True):
        f = HeadersFrame(sid)
        f.data = self.encoder.encode([(":method", method), (":path", path), (":scheme", "http"), (":authority", "a")])
        f.flags.add("END_HEADERS")
        if end:
            f.flags.add("END_STREAM")
        self.send(f)

    def _read(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise AssertionError("connection closed")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        f, length = Frame.parse_frame_header(memoryview(self._read(9)))
        f.parse_body(memoryview(self._read(length)))
        return f

    def wait_eof(self, timeout=10):
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except OSError:
            return False

    def read_until(self, pred, limit=10000):
        for _ in range(limit):
            f = self.read_frame()
            if pred(f):
                return f
        raise AssertionError("frame not seen")

    def close(self):
        self.sock.close()


class HoldingOrigin(LoopbackServer):
    """An HTTP/1.1 origin on raw sockets that says what happened to each of
    its connections: /hold/* requests get no answer until `release` is set
    (then 200 "held") or the peer closes the connection (recorded in
    `closed`); /echo answers with what it received, the body's raw bytes
    included (chunk framing and trailers as sent); anything else 200 "ok"
    at once, on a keep-alive connection."""

    def __init__(self):
        self.cond = threading.Condition()
        self.held = []     # connection indexes holding a /hold request
        self.closed = []   # those the peer closed while held
        self.release = threading.Event()
        super().__init__()

    def _reply(self, conn, body, ctype=b"text/plain"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body)

    def serve(self, conn, index):
        buf = b""

        def fill(pred):
            nonlocal buf
            while not pred():
                d = conn.recv(65536)
                if not d:
                    raise OSError("closed")
                buf += d

        def line():
            nonlocal buf
            fill(lambda: b"\r\n" in buf)
            out, buf = buf.split(b"\r\n", 1)
            return out

        def take(n):
            nonlocal buf
            fill(lambda: len(buf) >= n)
            out, buf = buf[:n], buf[n:]
            return out

        while True:
            try:
                fill(lambda: b"\r\n\r\n" in buf)
            except OSError:
                return
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:]]
            hd = {k.lower(): v for k, v in headers}
            raw = b""
            if "content-length" in hd:
                raw = take(int(hd["content-length"]))
            elif hd.get("transfer-encoding", "").lower() == "chunked":
                # As sent: chunk framing, the last chunk, trailers, the empty line.
                while True:
                    size_line = line()
                    raw += size_line + b"\r\n"
                    size = int(size_line.split(b";")[0], 16)
                    if size == 0:
                        while True:
                            t = line()
                            raw += t + b"\r\n"
                            if not t:
                                break
                        break
                    raw += take(size + 2)
            if path.startswith("/hold"):
                with self.cond:
                    self.held.append(index)
                    self.cond.notify_all()
                conn.settimeout(0.05)
                while not self.release.is_set():
                    try:
                        if conn.recv(1) == b"":
                            with self.cond:
                                self.closed.append(index)
                                self.cond.notify_all()
                            return
                    except socket.timeout:
                        pass
                conn.settimeout(None)
                self._reply(conn, b"held")
            elif path.startswith("/echo"):
                self._reply(conn, json.dumps({"headers": headers, "raw": raw.decode("latin-1")}).encode(),
                            b"application/json")
            else:
                self._reply(conn, b"ok")

    def wait(self, pred, timeout=10):
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self), timeout), (self.held, self.closed)


class Http2Test(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="holdfast-h2-")
        cls.pki = Pki(cls.dir)
        cls.cert = cls.pki.leaf("a", ["a.test"], "ec")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)

    def setUp(self):
        super().setUp()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        super().tearDown()

    def client(self, port, **kw):
        c = H2Client(port, **kw)
        self.clients.append(c)
        return c

    def tls_ctx(self):
        return ssl.create_default_context(cafile=self.pki.ca_crt)

    def gw(self, routes=None, config=None, **res):
        up = getattr(self, "up", None) or self.upstream("alpha")
        self.up = up
        resources = {"routes": routes or [route("/*", {up.addr: 1})],
                     "ssls": [{"id": "a", "snis": ["a.test"], "cert": self.cert[0], "key": self.cert[1]}]}
        resources.update(res)
        return self.gateway(resources, config=config)

    def curl(self, *args, timeout=30):
        out = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)
        return out

    # --- item 1: the protocol on both listeners -------------------------------------------------------

    def test_h2c_prior_knowledge_and_http11_on_the_same_port(self):
        gw = self.gw()
        out = self.curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                        f"http://127.0.0.1:{gw.port}/hello")
        self.assertEqual(out.stdout.decode(), "2 200", out.stderr)
        out = self.curl("--http2-prior-knowledge", f"http://127.0.0.1:{gw.port}/hello?x=1", "-H", "X-A: b")
        body = json.loads(out.stdout)
        self.assertEqual(body["server"], "alpha")
        self.assertEqual(body["path"], "/hello?x=1")
        self.assertEqual(body["headers"]["x-a"], "b")
        self.assertEqual(body["headers"]["host"], f"127.0.0.1:{gw.port}")
        # HTTP/1.1 on the same port, keep-alive included.
        out = self.curl("--http1.1", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_version} %{http_code}\n",
                        f"http://127.0.0.1:{gw.port}/a", f"http://127.0.0.1:{gw.port}/b")
        self.assertEqual(out.stdout.decode(), "1.1 200\n1.1 200\n", out.stderr)
        r = gw.get("/plain")
        self.assertEqual(r.status, 200)
        # A request line that starts like the preface is still HTTP/1.1.
        self.assertTrue(gw.raw(b"PRI / HTTP/1.1\r\nHost: a\r\n\r\n").startswith(b"HTTP/1.1 501"))  # proxied as HTTP/1.1

    def test_alpn_h2_over_tls(self):
        gw = self.gw()
        base = ["--cacert", self.pki.ca_crt, "--resolve", f"a.test:{gw.tls_port}:127.0.0.1",
                "-w", "%{http_version} %{http_code}", "-o", "/dev/null"]
        out = self.curl("--http2", *base, f"https://a.test:{gw.tls_port}/hello")
        self.assertEqual(out.stdout.decode(), "2 200", out.stderr)
        out = self.curl("--http1.1", *base, f"https://a.test:{gw.tls_port}/hello")
        self.assertEqual(out.stdout.decode(), "1.1 200", out.stderr)
        # The scheme seen upstream is https.
        c = self.client(gw.tls_port, tls=self.tls_ctx())
        st = c.get("/x", scheme="https")
        self.assertEqual(st["status"], 200)
        self.assertEqual(json.loads(st["data"])["headers"]["x-forwarded-proto"], "https")

    def test_enable_http2_false_speaks_http11_only(self):
        gw = self.gw(config={"apisix": {"enable_http2": False}})
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        got = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except socket.timeout:
            pass
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 400"), got[:100])
        ctx = self.tls_ctx()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5), server_hostname="a.test") as t:
            self.assertEqual(t.selected_alpn_protocol(), "http/1.1")
        out = self.curl("--http2", "--cacert", self.pki.ca_crt, "--resolve", f"a.test:{gw.tls_port}:127.0.0.1",
                        "-w", "%{http_version}", "-o", "/dev/null", f"https://a.test:{gw.tls_port}/")
        self.assertEqual(out.stdout.decode(), "1.1")

    def test_alpn_with_http2_on_offers_h2_first(self):
        gw = self.gw()
        ctx = self.tls_ctx()
        ctx.set_alpn_protocols(["http/1.1", "h2"])  # the server's preference decides
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5), server_hostname="a.test") as t:
            self.assertEqual(t.selected_alpn_protocol(), "h2")

    def test_plugin_access_log_and_server_protocol(self):
        self.up = self.upstream("alpha")
        log = os.path.join(tempfile.mkdtemp(prefix="holdfast-h2log-"), "access.log")
        self.addCleanup(shutil.rmtree, os.path.dirname(log), True)
        routes = [route("/auth", {self.up.addr: 1}, id="auth", plugins={"key-auth": {}}),
                  route("/proto", {self.up.addr: 1}, id="h2only", vars=[["server_protocol", "==", "HTTP/2.0"]])]
        gw = self.gw(routes, config={"holdfast": {"access_log": log}},
                     consumers=[{"username": "jack", "plugins": {"key-auth": {"key": "k1"}}}])
        c = self.client(gw.port)
        self.assertEqual(c.get("/auth")["status"], 401)
        st = c.get("/auth", headers=[("apikey", "k1")])
        self.assertEqual(st["status"], 200)
        self.assertEqual(json.loads(st["data"])["server"], "alpha")
        # $server_protocol is HTTP/2.0 on a stream, HTTP/1.1 otherwise.
        self.assertEqual(c.get("/proto")["status"], 200)
        self.assertEqual(gw.get("/proto").status, 404)
        deadline = time.time() + 5
        text = ""
        while time.time() < deadline and text.count("HTTP/2.0") < 3:
            text = open(log).read() if os.path.exists(log) else ""
            time.sleep(0.05)
        self.assertIn('"GET /auth HTTP/2.0" 401', text)
        self.assertIn('"GET /auth HTTP/2.0" 200', text)
        self.assertIn('"GET /proto HTTP/1.1" 404', text)

    # --- item 4: concurrency, bodies, flow control ----------------------------------------------------

    def test_100_concurrent_streams_on_one_connection(self):
        gw = self.gw()
        out = subprocess.run(["h2load", "-c", "1", "-m", "100", "-n", "1000", f"http://127.0.0.1:{gw.port}/load"],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed", out.stdout)
        self.assertIn("status codes: 1000 2xx", out.stdout)

    def test_streams_count_their_connection_once(self):
        gw = self.gw()
        c = self.client(gw.port)
        sids = [c.start("GET", "/delay/1500") for _ in range(5)]
        self.wait_writing(gw, 1)  # five requests, one connection
        self.assertEqual(self.connections(gw)["active"], 1)
        for sid in sids:
            self.assertEqual(c.wait(sid)["status"], 200)
        c.close()
        deadline = time.time() + 10
        while self.connections(gw)["active"] != 0:
            self.assertLess(time.time(), deadline)
            time.sleep(0.02)

    def test_1mib_upload_and_download_with_checksums(self):
        gw = self.gw()
        data = os.urandom(1 << 20)
        path = os.path.join(self.dir, "up.bin")
        with open(path, "wb") as f:
            f.write(data)
        # Upload with a Content-Length (curl), then without one (chunked upstream).
        out = self.curl("--http2-prior-knowledge", "--data-binary", "@" + path, f"http://127.0.0.1:{gw.port}/up")
        body = json.loads(out.stdout)
        self.assertEqual(body["body_size"], 1 << 20)
        self.assertEqual(body["body_sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(body["headers"]["content-length"], str(1 << 20))
        c = self.client(gw.port)
        sid = c.start("POST", "/up2", end=False)
        c.send_body(sid, data)
        st = c.wait(sid, timeout=30)
        body = json.loads(st["data"])
        self.assertEqual(body["body_sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(body["headers"].get("transfer-encoding"), "chunked")
        # Download, Content-Length and chunked from the origin.
        expect = b"".join(b"%08d\n" % i for i in range((1 << 20) // 9 + 1))[: 1 << 20]
        for q in ("pattern=1", "pattern=1&chunked=1"):
            out = self.curl("--http2-prior-knowledge", f"http://127.0.0.1:{gw.port}/bytes/{1 << 20}?{q}")
            self.assertEqual(hashlib.sha256(out.stdout).hexdigest(), hashlib.sha256(expect).hexdigest(), q)

    def test_slow_reader_keeps_memory_bounded(self):
        gw = self.gw()
        base = gw.rss_kb()
        # A client that reads nothing: its windows (64 KiB) fill, and Holdfast
        # must stop reading the origin instead of buffering 256 MiB.
        c = self.client(gw.port)
        c.auto_ack = False
        sid = c.start("GET", f"/bytes/{256 << 20}")
        c.pump(lambda: len(c.streams[sid]["data"]) >= 65535, timeout=10)
        peak = base
        end = time.time() + 3
        while time.time() < end:
            peak = max(peak, gw.rss_kb())
            time.sleep(0.1)
        self.assertLess(peak - base, 40 * 1024, f"RSS grew from {base} to {peak} KiB")
        # The node still serves others.
        self.assertEqual(self.client(gw.port).get("/ok")["status"], 200)

    # --- the strict downgrade --------------------------------------------------------------------------

    def test_host_differing_from_authority_is_400(self):
        gw = self.gw()
        c = self.client(gw.port, validate=False)
        self.assertEqual(c.get("/x", authority="a.test", headers=[("host", "b.test")])["status"], 400)
        st = c.get("/x", authority="a.test", headers=[("host", "a.test")])
        self.assertEqual(st["status"], 200)
        self.assertEqual(json.loads(st["data"])["headers"]["host"], "a.test")

    def test_connection_specific_headers_are_refused(self):
        gw = self.gw()
        for name, value in (("connection", "keep-alive"), ("transfer-encoding", "chunked"), ("upgrade", "websocket"),
                            ("keep-alive", "5"), ("proxy-connection", "x"), ("te", "gzip")):
            c = self.client(gw.port, validate=False)
            st = c.get("/x", headers=[(name, value)])
            self.assertTrue(st["reset"] is not None or st["status"] == 400, (name, st))
            self.assertNotEqual(st["status"], 200, name)
        # te: trailers is the one allowed value.
        self.assertEqual(self.client(gw.port).get("/x", headers=[("te", "trailers")])["status"], 200)

    def test_cookies_joined_and_content_length_checked(self):
        gw = self.gw()
        c = self.client(gw.port)
        st = c.get("/c", headers=[("cookie", "a=1"), ("cookie", "b=2")])
        self.assertEqual(json.loads(st["data"])["headers"]["cookie"], "a=1; b=2")
        # Content-Length 10 with 3 bytes of DATA: a stream error, nothing answered 200.
        c = self.client(gw.port, validate=False)
        sid = c.start("POST", "/cl", headers=[("content-length", "10")], end=False)
        c.conn.send_data(sid, b"abc", end_stream=True)
        c.flush()
        st = c.wait(sid)
        self.assertIsNotNone(st["reset"])

    def test_control_characters_and_connect_refused(self):
        gw = self.gw()
        c = self.client(gw.port, validate=False)
        st = c.get("/x", headers=[("x-a", "a\x01b")])
        self.assertEqual(st["reset"], 1, st)  # PROTOCOL_ERROR: never forwarded
        c = self.client(gw.port, validate=False)
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "a.test:443")], end_stream=False)
        c._st(sid)
        c.flush()
        st = c.wait(sid)
        self.assertEqual(st["status"], 405)

    # --- limits --------------------------------------------------------------------------------------

    def test_max_concurrent_streams_is_enforced(self):
        gw = self.gw(config={"holdfast": {"http2": {"max_concurrent_streams": 4}}})
        r = RawConn(gw.port)
        self.clients.append(r)
        settings = r.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
        self.assertEqual(settings.settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS], 4)
        # Our SETTINGS not acknowledged yet: the extra stream is refused alone.
        for sid in (1, 3, 5, 7):  # four streams held open (bodies not ended)
            r.headers(sid, "POST", "/hold", end=False)
        r.headers(9, "GET", "/fifth", end=True)  # one too many, sent anyway
        rst = r.read_until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 9)
        self.assertIn(rst.error_code, (1, 7))  # PROTOCOL_ERROR or REFUSED_STREAM
        for sid in (1, 3, 5, 7):
            r.send(DataFrame(sid, data=b"x", flags=["END_STREAM"]))
        statuses = {}
        while len(statuses) < 4:
            f = r.read_until(lambda f: isinstance(f, HeadersFrame))
            statuses[f.stream_id] = dict(r.decoder.decode(f.data))[":status"]
        self.assertEqual(statuses, {1: "200", 3: "200", 5: "200", 7: "200"})
        # Once the client has acknowledged the limit, exceeding it is a
        # connection error.
        r = RawConn(gw.port)
        self.clients.append(r)
        r.read_until(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
        r.send(SettingsFrame(0, flags=["ACK"]))
        for sid in (1, 3, 5, 7, 9):
            r.headers(sid, "POST", "/hold", end=False)
        goaway = r.read_until(lambda f: isinstance(f, GoAwayFrame))
        self.assertEqual(goaway.error_code, 1)  # PROTOCOL_ERROR

    def test_requests_per_connection_then_goaway(self):
        gw = self.gw(config={"holdfast": {"http2": {"max_requests": 3}}})
        r = RawConn(gw.port)
        self.clients.append(r)
        for sid in (1, 3, 5):
            r.headers(sid, "GET", "/r")
        # GOAWAY names the third stream as the last; all three are answered
        # (python3-h2 stops at a GOAWAY, so frames are read raw).
        statuses, goaway, ended = {}, None, set()
        while len(ended) < 3 or goaway is None:
            f = r.read_frame()
            if isinstance(f, HeadersFrame):
                statuses[f.stream_id] = dict(r.decoder.decode(f.data))[":status"]
            if isinstance(f, GoAwayFrame):
                goaway = f
            if isinstance(f, (HeadersFrame, DataFrame)) and "END_STREAM" in f.flags:
                ended.add(f.stream_id)
        self.assertEqual(statuses, {1: "200", 3: "200", 5: "200"})
        self.assertEqual((goaway.error_code, goaway.last_stream_id), (0, 5))
        self.assertTrue(r.wait_eof())

    def test_idle_connection_gets_goaway(self):
        gw = self.gw(config={"nginx_config": {"http": {"keepalive_timeout": "1s"}}})
        c = self.client(gw.port)
        self.assertEqual(c.get("/i")["status"], 200)
        self.assertTrue(c.wait_closed(10))
        self.assertIsNotNone(c.goaway)
        self.assertEqual(c.goaway.error_code, 0)

    # A stream left open with no pipeline running must not keep the
    # connection for ever: the deadline sends GOAWAY, and send_timeout later
    # the connection ends whatever its streams are doing.
    TIMEOUTS = {"nginx_config": {"http": {"client_header_timeout": "1s", "keepalive_timeout": "1s",
                                          "send_timeout": "1s"}}}

    def test_unfinished_header_block_does_not_hold_the_connection(self):
        gw = self.gw(config=self.TIMEOUTS)
        r = RawConn(gw.port)
        f = HeadersFrame(1)
        f.data = r.encoder.encode([(":method", "GET"), (":path", "/x"), (":scheme", "http"), (":authority", "a")])
        f.flags.add("END_STREAM")  # and no END_HEADERS: a CONTINUATION would follow, and never does
        r.send(f)
        t0 = time.time()
        self.assertTrue(r.wait_eof(timeout=15), "the connection stayed open")
        self.assertLess(time.time() - t0, 10)
        self.assertIsNone(gw.proc.poll())

    def test_window_never_opened_does_not_hold_the_connection(self):
        gw = self.gw(config=self.TIMEOUTS)
        r = RawConn(gw.port)
        r.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}))
        for sid in (1, 3, 5):
            r.headers(sid, "GET", f"/w{sid}")  # answers the client never lets through
        t0 = time.time()
        self.assertTrue(r.wait_eof(timeout=15), "the connection stayed open")
        self.assertLess(time.time() - t0, 10)
        self.assertEqual(self.client(gw.port).get("/ok")["status"], 200)

    def test_oversized_header_list_gets_431(self):
        gw = self.gw(config={"holdfast": {"http2": {"max_header_list_size": 4096}}})
        c = self.client(gw.port, validate=False)
        st = c.get("/big", headers=[(f"x-h{i}", "v" * 100) for i in range(60)])
        self.assertEqual(st["status"], 431)
        self.assertEqual(c.get("/small")["status"], 200)

    def test_answers_of_the_session_are_in_the_access_log(self):
        # The 400/405/431 the session sends before any pipeline runs are
        # logged in the pipeline's format (HTTP/2.0) and counted in
        # apisix_http_requests_total; what the client sent is escaped.
        log = os.path.join(tempfile.mkdtemp(prefix="holdfast-h2log-"), "access.log")
        self.addCleanup(shutil.rmtree, os.path.dirname(log), True)
        gw = self.gw(config={"holdfast": {"access_log": log, "http2": {"max_header_list_size": 4096}}})

        def requests_total():
            with urllib.request.urlopen(f"http://127.0.0.1:{gw.prometheus_port}/apisix/prometheus/metrics",
                                        timeout=5) as r:
                return int(re.search(r"^apisix_http_requests_total (\d+)$", r.read().decode(), re.M).group(1))
        before = requests_total()
        c = self.client(gw.port, validate=False)
        self.assertEqual(c.get("/host", headers=[("host", "b.test"), ("user-agent", 'ua "q"')])["status"], 400)
        self.assertEqual(c.get("/utf", headers=[("host", "c.test"), ("user-agent", "caf\u00e9\\")])["status"], 400)
        self.assertEqual(c.get("/big", headers=[(f"x-h{i}", "v" * 100) for i in range(60)])["status"], 431)
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "a.test:443")], end_stream=False)
        c._st(sid)
        c.flush()
        self.assertEqual(c.wait(sid)["status"], 405)
        self.assertEqual(c.get("/fine")["status"], 200)
        deadline = time.time() + 5
        text = ""
        while time.time() < deadline and "/fine" not in text:
            text = open(log).read() if os.path.exists(log) else ""
            time.sleep(0.05)
        self.assertIn('"GET /host HTTP/2.0" 400 0 0.000 "ua \\x22q\\x22" route=-', text)
        self.assertIn('"GET /utf HTTP/2.0" 400 0 0.000 "caf\\xC3\\xA9\\x5C" route=-', text)
        self.assertIn('"GET /big HTTP/2.0" 431 0 0.000', text)
        self.assertIn('"CONNECT  HTTP/2.0" 405 0 0.000', text)
        self.assertIn('"GET /fine HTTP/2.0" 200', text)
        self.assertFalse(re.search(r"[^\n\x20-\x7e]", text), repr(text))
        self.assertEqual(requests_total() - before, 5)

    def test_request_trailers_reach_an_http11_origin(self):
        # Request trailers go to an HTTP/1.1 origin as the trailers of the
        # chunked body (a body without Content-Length goes chunked); fields
        # that may not be trailers (RFC 9110 §6.5.1) or that the gateway sets
        # are dropped; with a Content-Length there is no chunked body to
        # carry them, and they are dropped too.
        o = HoldingOrigin()
        self.addCleanup(o.stop)
        gw = self.gw([route("/*", {o.addr: 1})])
        c = self.client(gw.port, validate=False)
        sid = c.start("POST", "/echo", end=False)
        c.send_body(sid, b"hello", end=False)
        c.conn.send_headers(sid, [("x-checksum", "abc"), ("authorization", "Bearer t"),
                                  ("x-forwarded-for", "6.6.6.6"), ("x-consumer-username", "admin"),
                                  ("x-credential-identifier", "c1"), ("x-request-id", "forged"),
                                  ("x-other", "1")], end_stream=True)
        c.flush()
        st = c.wait(sid)
        self.assertEqual(st["status"], 200)
        raw = json.loads(bytes(st["data"]))["raw"]
        self.assertEqual(raw, "5\r\nhello\r\n0\r\nx-checksum: abc\r\nx-other: 1\r\n\r\n")
        sid = c.start("POST", "/echo", headers=[("content-length", "5")], end=False)
        c.send_body(sid, b"hello", end=False)
        c.conn.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
        c.flush()
        st = c.wait(sid)
        self.assertEqual((st["status"], json.loads(bytes(st["data"]))["raw"]), (200, "hello"))

    def test_bad_request_trailers_reset_the_stream(self):
        # The checks of the header block: a control character, or more than
        # max_header_list_size, resets the stream; the connection goes on.
        o = HoldingOrigin()
        self.addCleanup(o.stop)
        gw = self.gw([route("/*", {o.addr: 1})], config={"holdfast": {"http2": {"max_header_list_size": 4096}}})
        c = self.client(gw.port, validate=False)
        for trailers in ([("x-bad", "a\x01b")], [(f"x-t{i}", "v" * 100) for i in range(40)]):
            sid = c.start("POST", "/hold/t", end=False)
            c.send_body(sid, b"hello", end=False)
            c.conn.send_headers(sid, trailers, end_stream=True)
            c.flush()
            st = c.wait(sid)
            self.assertIsNotNone(st["reset"], st)
            self.assertIsNone(st["status"])
        self.assertEqual(c.get("/ok")["status"], 200)
        self.assertEqual(o.held, [])  # neither request reached the origin whole

    def connections(self, gw):
        """apisix_nginx_http_current_connections by state."""
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.prometheus_port}/apisix/prometheus/metrics", timeout=5) as r:
            text = r.read().decode()
        return {m.group(1): int(m.group(2)) for m in
                re.finditer(r'^apisix_nginx_http_current_connections\{state="(\w+)"\} (\d+)$', text, re.M)}

    def wait_writing(self, gw, n):
        deadline = time.time() + 10
        while self.connections(gw).get("writing") != n:
            self.assertLess(time.time(), deadline, self.connections(gw))
            time.sleep(0.02)

    def test_drain_finishes_open_streams_after_goaway(self):
        gw = self.gw()
        r = RawConn(gw.port)
        self.clients.append(r)
        r.headers(1, "GET", "/delay/800")
        self.wait_writing(gw, 1)  # the stream is in the pipeline
        gw.proc.send_signal(15)
        goaway, status, ended = None, None, False
        while not (goaway and ended):
            f = r.read_frame()
            if isinstance(f, GoAwayFrame):
                goaway = f
            if isinstance(f, HeadersFrame):
                status = dict(r.decoder.decode(f.data))[":status"]
            if isinstance(f, (HeadersFrame, DataFrame)) and "END_STREAM" in f.flags:
                ended = True
        self.assertEqual(status, "200")
        self.assertEqual((goaway.error_code, goaway.last_stream_id), (0, 1))
        self.assertTrue(r.wait_eof())
        self.assertEqual(gw.proc.wait(15), 0)

    # --- item 3: defences ------------------------------------------------------------------------------

    def assert_alive(self, gw, base_rss, what):
        c = self.client(gw.port)
        self.assertEqual(c.get("/alive")["status"], 200, what)
        grown = gw.rss_kb() - base_rss
        self.assertLess(grown, 64 * 1024, f"{what}: RSS grew by {grown} KiB")

    def flood(self, gw, frames, repeat, chunk=200):
        """Sends `frames` (bytes) `repeat` times; returns the client (goaway set if the node sent one)."""
        c = self.client(gw.port)
        try:
            for i in range(0, repeat, chunk):
                c.send_raw(frames * min(chunk, repeat - i))
        except (BrokenPipeError, ConnectionResetError):
            c.closed = True
        c.wait_closed(10)
        return c

    def test_rapid_reset_gets_goaway(self):
        self.up = self.upstream("alpha")
        # The reset streams get 404s, not the origin; max_requests does not end it first.
        gw = self.gw([route("/alive", {self.up.addr: 1})], config={"holdfast": {"http2": {"max_requests": 100000}}})
        base = gw.rss_kb()
        c = self.client(gw.port)
        try:
            for i in range(3000):
                sid = c.conn.get_next_available_stream_id()
                c.conn.send_headers(sid, [(":method", "GET"), (":path", "/nothing"), (":scheme", "http"),
                                          (":authority", "a")], end_stream=True)
                c.conn.reset_stream(sid)
                if i % 50 == 0:
                    c.flush()
            c.flush()
        except (BrokenPipeError, ConnectionResetError):
            c.closed = True
        self.assertTrue(c.wait_closed(10))
        self.assertIsNotNone(c.goaway)
        self.assertNotEqual(c.goaway.error_code, 0)
        self.assert_alive(gw, base, "rapid reset")

    def test_reset_stream_abandons_its_upstream_request(self):
        # A stream the client resets while its request waits on the origin
        # ends that request at once: the upstream connection is closed (its
        # response state is unknown, so never pooled), the stream's slot is
        # free again, and the connection's other streams and other clients go
        # on. The origin here would hold the requests for ever.
        o = HoldingOrigin()
        self.addCleanup(o.stop)
        self.addCleanup(o.release.set)
        log = os.path.join(tempfile.mkdtemp(prefix="holdfast-h2log-"), "access.log")
        self.addCleanup(shutil.rmtree, os.path.dirname(log), True)
        gw = self.gw([route("/*", {o.addr: 1})],
                     config={"holdfast": {"http2": {"max_concurrent_streams": 4}, "access_log": log}})
        a, b = self.client(gw.port), self.client(gw.port)
        keep = a.start("GET", "/hold/keep")
        other = b.start("GET", "/hold/other")
        gone = [a.start("GET", f"/hold/{i}") for i in range(3)]
        d = self.client(gw.port)
        d.start("GET", "/hold/dropped")
        o.wait(lambda o: len(o.held) == 6)
        for sid in gone:
            a.conn.reset_stream(sid, error_code=8)  # CANCEL
        a.flush()
        d.close()  # a client whose connection ends
        o.wait(lambda o: len(o.closed) == 4, timeout=5)
        # The three slots are free: the connection's limit (4) is reached
        # again at once, and nothing is refused.
        fresh = [a.start("GET", "/ok") for _ in range(3)]
        for sid in fresh:
            st = a.wait(sid)
            self.assertEqual((st["status"], st["reset"], bytes(st["data"])), (200, None, b"ok"))
        o.release.set()
        for c, sid in ((a, keep), (b, other)):
            st = c.wait(sid)
            self.assertEqual((st["status"], bytes(st["data"])), (200, b"held"))
        self.assertEqual(len(o.closed), 4)
        deadline = time.time() + 5
        text = ""
        while time.time() < deadline and text.count(" 499 ") < 3:
            text = open(log).read() if os.path.exists(log) else ""
            time.sleep(0.05)
        for i in range(3):
            self.assertIn(f'"GET /hold/{i} HTTP/2.0" 499', text)
        self.assertNotIn("connection failed before a response", gw.logs())
        # Reset while its body streams to the origin: the same.
        sid = a.start("POST", "/hold/body", end=False)
        a.send_body(sid, b"part", end=False)
        a.conn.reset_stream(sid, error_code=8)
        a.flush()
        while time.time() < deadline + 5 and '"POST /hold/body HTTP/2.0" 499' not in text:
            text = open(log).read()
            time.sleep(0.05)
        self.assertIn('"POST /hold/body HTTP/2.0" 499', text)

    def test_reset_streams_leak_nothing_under_load(self):
        # Open-and-reset rounds against an origin that never answers, then
        # h2load at the connection's full stream limit: every held upstream
        # connection was closed, every stream slot came back, and the
        # gateway's descriptors return to where they were.
        o = HoldingOrigin()
        self.addCleanup(o.stop)
        self.addCleanup(o.release.set)
        gw = self.gw([route("/*", {o.addr: 1})], config={"holdfast": {"http2": {"max_concurrent_streams": 32}}})

        def load():
            out = subprocess.run(["h2load", "-c", "2", "-m", "32", "-n", "2000", f"http://127.0.0.1:{gw.port}/ok"],
                                 capture_output=True, text=True, timeout=120)
            self.assertIn("2000 succeeded, 0 failed, 0 errored", out.stdout, out.stdout + out.stderr)

        def fds():
            return len(os.listdir(f"/proc/{gw.proc.pid}/fd"))
        load()
        base = fds()
        r = RawConn(gw.port)
        self.clients.append(r)
        sid = 1
        for n in range(10):
            ids = list(range(sid, sid + 64, 2))
            sid += 64
            for i in ids:
                r.headers(i, "GET", f"/hold/{i}")
            o.wait(lambda o: len(o.held) == 32 * (n + 1))
            for i in ids:
                r.send(RstStreamFrame(i, error_code=8))
            o.wait(lambda o: len(o.closed) == 32 * (n + 1), timeout=5)
        load()
        r.close()
        # Idle pooled upstream connections stay open (60 s), and either load
        # may leave up to 64 of them (2 connections x 32 streams), so the
        # bound is the first count plus 64: 320 leaked upstream sockets, or
        # any number of leaked stream slots' sockets above 64, exceed it.
        deadline = time.time() + 10
        while fds() > base + 64:
            self.assertLess(time.time(), deadline, (fds(), base))
            time.sleep(0.05)

    def test_continuation_flood_is_refused(self):
        gw = self.gw()
        base = gw.rss_kb()
        c = self.client(gw.port)
        enc = hpack.Encoder()
        f = HeadersFrame(1)
        f.data = enc.encode([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "a")])
        frames = f.serialize()
        for i in range(2000):
            cf = ContinuationFrame(1)
            cf.data = enc.encode([(f"x-{i}", "v" * 1000)])
            frames += cf.serialize()
        try:
            c.send_raw(frames)
        except (BrokenPipeError, ConnectionResetError):
            pass
        c.closed = False
        self.assertTrue(c.wait_closed(10))
        self.assert_alive(gw, base, "CONTINUATION flood")

    def test_ping_flood_gets_enhance_your_calm(self):
        gw = self.gw()
        base = gw.rss_kb()
        c = self.flood(gw, PingFrame(0, opaque_data=b"12345678").serialize(), 100000)
        self.assertTrue(c.closed)
        self.assertIsNotNone(c.goaway)
        self.assertEqual(c.goaway.error_code, 11)  # ENHANCE_YOUR_CALM
        self.assert_alive(gw, base, "PING flood")

    def test_settings_flood_is_refused(self):
        gw = self.gw()
        base = gw.rss_kb()
        s = SettingsFrame(0, settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100})
        c = self.flood(gw, s.serialize(), 100000)
        self.assertTrue(c.closed)
        self.assertIsNotNone(c.goaway)
        self.assertNotEqual(c.goaway.error_code, 0)
        self.assert_alive(gw, base, "SETTINGS flood")

    def test_window_update_flood_gets_enhance_your_calm(self):
        gw = self.gw()
        base = gw.rss_kb()
        c = self.flood(gw, WindowUpdateFrame(0, window_increment=1).serialize(), 100000)
        self.assertTrue(c.closed)
        self.assertIsNotNone(c.goaway)
        self.assertNotEqual(c.goaway.error_code, 0)
        self.assert_alive(gw, base, "WINDOW_UPDATE flood")

    def test_empty_data_flood_gets_enhance_your_calm(self):
        gw = self.gw()
        base = gw.rss_kb()
        c = self.client(gw.port)
        sid = c.start("POST", "/hold", end=False)
        f = DataFrame(sid)
        f.data = b""
        try:
            for _ in range(50):
                c.send_raw(f.serialize() * 2000)
        except (BrokenPipeError, ConnectionResetError):
            c.closed = True
        self.assertTrue(c.wait_closed(10))
        self.assertIsNotNone(c.goaway)
        self.assertEqual(c.goaway.error_code, 11)
        self.assert_alive(gw, base, "empty DATA flood")


if __name__ == "__main__":
    unittest.main()
