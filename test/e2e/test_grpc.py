"""gRPC upstreams (`scheme: grpc` and `grpcs`) against the real binary: a
python3-grpcio origin (grpc_origin.py, its own process) behind Holdfast.
Until the client side speaks HTTP/2, calls go to Holdfast over HTTP/1.1 as a
raw socket client: a chunked request of gRPC-framed messages (5-byte
prefix), a chunked response whose trailers carry grpc-status. Also: many
calls share one upstream connection, a GOAWAY moves new calls to a new
connection, a down upstream and a passed grpc-timeout come back as gRPC
statuses."""
import glob
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import GatewayTest, free_port, wait_port
from pki import Pki

HERE = os.path.dirname(os.path.abspath(__file__))
# grpcio is Debian's (python3-grpcio): the system interpreter.
PY = "/usr/bin/python3"


class GrpcOrigin:
    def __init__(self, port=None, cert=None, key=None, max_streams=None):
        self.port = port or free_port()
        args = [PY, os.path.join(HERE, "grpc_origin.py"), str(self.port)] + ([cert, key] if cert else [])
        env = dict(os.environ, **({"GRPC_MAX_STREAMS": str(max_streams)} if max_streams else {}))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.proc.stdout.readline()
        wait_port(self.port, proc=self.proc)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def frame(msg):
    return b"\0" + struct.pack(">I", len(msg)) + msg


def chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


class H2Origin:
    """A gRPC-shaped HTTP/2 origin in python3-h2 (threads, raw sockets), for
    what grpcio will not do. It records every connection's requests (path,
    headers, trailers, body) and the RST_STREAM frames it receives.
    /test.Echo/Hold is never answered; any other path is answered once the
    request ends with one message, the JSON of what the request carried, and
    grpc-status 0. `refuse` breaks the origin on purpose, for the first stream
    of a connection: "rst" resets it with REFUSED_STREAM (the connection goes
    on), "goaway" sends GOAWAY with last-stream-id 0 and closes the
    connection; `refuse_conns` says which connections (indexes from 0) do."""

    def __init__(self, refuse=None, refuse_conns=None):
        import h2.config
        import h2.connection
        self._h2 = (h2.config, h2.connection)
        self.refuse, self.refuse_conns = refuse, refuse_conns
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.cond = threading.Condition()
        self.conns = 0
        self.requests = []  # {"conn", "stream", "path", "headers", "trailers", "body"}
        self.resets = []    # (conn, stream, error code)
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        for c in [self.sock] + self.socks:
            try:
                c.close()
            except OSError:
                pass

    def wait(self, pred, timeout=10):
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self), timeout), (self.conns, self.requests, self.resets)

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.cond:
                index = self.conns
                self.conns += 1
                self.socks.append(c)
                self.cond.notify_all()
            threading.Thread(target=self._serve, args=(c, index), daemon=True).start()

    def _serve(self, c, index):
        import h2.events
        cfg, conn_mod = self._h2
        conn = conn_mod.H2Connection(cfg.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        c.sendall(conn.data_to_send())
        streams = {}
        first = True
        refusing = self.refuse and (self.refuse_conns is None or index in self.refuse_conns)
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        hd = dict(ev.headers)
                        if first and refusing:
                            first = False
                            if self.refuse == "goaway":
                                conn.close_connection(last_stream_id=0)
                                c.sendall(conn.data_to_send())
                                return
                            conn.reset_stream(ev.stream_id, error_code=7)  # REFUSED_STREAM
                            continue
                        first = False
                        streams[ev.stream_id] = {"conn": index, "stream": ev.stream_id, "path": hd[":path"],
                                                 "headers": ev.headers, "trailers": None, "body": b""}
                        if ev.stream_ended:
                            self._done(conn, streams[ev.stream_id])
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        if ev.stream_id in streams:
                            streams[ev.stream_id]["body"] += ev.data
                    elif isinstance(ev, h2.events.TrailersReceived):
                        if ev.stream_id in streams:
                            streams[ev.stream_id]["trailers"] = ev.headers
                    elif isinstance(ev, h2.events.StreamEnded):
                        if ev.stream_id in streams:
                            self._done(conn, streams[ev.stream_id])
                    elif isinstance(ev, h2.events.StreamReset):
                        with self.cond:
                            self.resets.append((index, ev.stream_id, ev.error_code))
                            self.cond.notify_all()
                c.sendall(conn.data_to_send())
        except Exception:
            pass
        finally:
            c.close()

    def _done(self, conn, st):
        with self.cond:
            self.requests.append(st)
            self.cond.notify_all()
        if st["path"] == "/test.Echo/Hold":
            return
        import json
        msg = json.dumps({"headers": st["headers"], "trailers": st["trailers"], "body": st["body"].hex()}).encode()
        conn.send_headers(st["stream"], [(":status", "200"), ("content-type", "application/grpc")])
        conn.send_data(st["stream"], frame(msg))
        conn.send_headers(st["stream"], [("grpc-status", "0")], end_stream=True)


class H1Call:
    """One gRPC call over HTTP/1.1 on its own connection, read incrementally."""

    def __init__(self, port, path, headers=(), timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers)
        self.head = (f"POST {path} HTTP/1.1\r\nHost: grpc.test\r\nContent-Type: application/grpc\r\n"
                     f"TE: trailers\r\n{hdrs}Transfer-Encoding: chunked\r\n\r\n").encode()
        self.status = None
        self.headers = {}
        self.trailers = {}
        self.chunked = False
        self.left = 0        # Content-Length body left
        self.payload = b""   # response payload read, not yet split into messages
        self.done = False

    def close(self):
        self.sock.close()

    def send_head(self, extra=b""):
        self.sock.sendall(self.head + extra)

    def send_message(self, msg):
        self.sock.sendall(chunk(frame(msg)))

    def end(self, trailers=b""):
        self.sock.sendall(b"0\r\n" + trailers + b"\r\n")

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def read_head(self):
        while self.status is None:
            line = self._line()
            parts = line.split(" ", 2)
            status = int(parts[1])
            fields = {}
            while True:
                l = self._line()
                if not l:
                    break
                k, v = l.split(":", 1)
                fields[k.strip().lower()] = v.strip()
            if 100 <= status < 200:
                continue
            self.status, self.headers = status, fields
            self.chunked = "chunked" in fields.get("transfer-encoding", "")
            self.left = int(fields.get("content-length", "0")) if not self.chunked else 0
            if not self.chunked and self.left == 0:
                self.done = True
        return self.status

    def _read_chunk(self):
        size = int(self._line().split(";")[0], 16)
        if size == 0:
            while True:
                l = self._line()
                if not l:
                    break
                k, v = l.split(":", 1)
                self.trailers[k.strip().lower()] = v.strip()
            self.done = True
            return
        while len(self.buf) < size + 2:
            self._fill()
        self.payload += self.buf[:size]
        self.buf = self.buf[size + 2:]

    def read_message(self):
        """The next response message, or None at the end of the response."""
        self.read_head()
        while len(self.payload) < 5 or len(self.payload) < 5 + struct.unpack(">I", self.payload[1:5])[0]:
            if self.done:
                return None
            if self.chunked:
                self._read_chunk()
            else:
                while not self.buf:
                    self._fill()
                take = self.buf[:self.left]
                self.payload += take
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                self.done = self.left == 0
        n = struct.unpack(">I", self.payload[1:5])[0]
        msg, self.payload = self.payload[5:5 + n], self.payload[5 + n:]
        return msg

    def finish(self):
        """Reads the rest; returns (messages, grpc-status, grpc-message)."""
        msgs = []
        while True:
            m = self.read_message()
            if m is None:
                break
            msgs.append(m)
        # Trailers-Only: the status is in the head.
        fields = self.trailers if "grpc-status" in self.trailers else self.headers
        return msgs, fields.get("grpc-status"), fields.get("grpc-message")


def call(port, path, messages, headers=()):
    c = H1Call(port, path, headers)
    try:
        c.send_head(b"".join(chunk(frame(m)) for m in messages) + b"0\r\n\r\n")
        status = c.read_head()
        msgs, st, msg = c.finish()
        return status, c.headers, msgs, st, msg
    finally:
        c.close()


class GrpcTest(GatewayTest):
    def origin(self, **kw):
        o = GrpcOrigin(**kw)
        self._procs.append(o)
        return o

    def grpc_gateway(self, addr, scheme="grpc", upstream_extra=None, route_extra=None, config=None):
        u = {"scheme": scheme, "type": "roundrobin", "nodes": {addr: 1}}
        u.update(upstream_extra or {})
        r = {"id": "g", "uri": "/test.Echo/*", "upstream": u}
        r.update(route_extra or {})
        return self.gateway({"routes": [r]}, config=config)

    def test_unary(self):
        o = self.origin()
        gw = self.grpc_gateway(o.addr)
        status, headers, msgs, st, _ = call(gw.port, "/test.Echo/Unary", [b"hello"])
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-type"), "application/grpc")
        self.assertEqual(msgs, [b"echo:hello"])
        self.assertEqual(st, "0")

    def test_server_streaming(self):
        o = self.origin()
        gw = self.grpc_gateway(o.addr)
        _, _, msgs, st, _ = call(gw.port, "/test.Echo/ServerStream", [b"5"])
        self.assertEqual(msgs, [b"msg-%d" % i for i in range(5)])
        self.assertEqual(st, "0")

    def test_client_streaming_as_it_is_sent(self):
        o = self.origin()
        gw = self.grpc_gateway(o.addr)
        c = H1Call(gw.port, "/test.Echo/ClientStream")
        try:
            c.send_head()
            for m in (b"a", b"bb", b"ccc"):
                c.send_message(m)
                time.sleep(0.05)  # separate reads on the way, not a synchronisation
            c.end()
            self.assertEqual(c.read_head(), 200)
            msgs, st, _ = c.finish()
            self.assertEqual(msgs, [b"a,bb,ccc"])
            self.assertEqual(st, "0")
        finally:
            c.close()

    def test_bidi_streams_both_ways_while_open(self):
        o = self.origin()
        gw = self.grpc_gateway(o.addr)
        c = H1Call(gw.port, "/test.Echo/Bidi")
        try:
            c.send_head()
            # Each answer arrives before the next request is sent: nothing
            # waits for a whole body.
            for m in (b"one", b"two", b"three"):
                c.send_message(m)
                self.assertEqual(c.read_message(), b"re:" + m)
            c.end()
            msgs, st, _ = c.finish()
            self.assertEqual(msgs, [])
            self.assertEqual(st, "0")
        finally:
            c.close()

    def test_large_messages_both_ways(self):
        # Several windows' worth each way: flow control must give the window
        # back as the client reads, and hold the request while the origin's
        # window is full, without losing a byte.
        o = self.origin()
        gw = self.grpc_gateway(o.addr)
        big = bytes(range(256)) * 4096 * 3  # 3 MiB
        _, _, msgs, st, _ = call(gw.port, "/test.Echo/Unary", [big])
        self.assertEqual(st, "0")
        self.assertEqual(len(msgs), 1)
        self.assertTrue(msgs[0] == b"echo:" + big)
        c = H1Call(gw.port, "/test.Echo/ClientStream")
        try:
            c.send_head()
            for i in range(8):
                c.send_message(big[: 512 * 1024])
            c.end()
            msgs, st, _ = c.finish()
            self.assertEqual(st, "0")
            self.assertEqual(len(msgs[0]), 8 * 512 * 1024 + 7)
        finally:
            c.close()

    def test_non_ok_status_with_message(self):
        o = self.origin()
        gw = self.grpc_gateway(o.addr)
        status, _, msgs, st, msg = call(gw.port, "/test.Echo/Fail", [b"thing"])
        self.assertEqual(status, 200)
        self.assertEqual(msgs, [])
        self.assertEqual(st, "5")
        self.assertEqual(msg, "no such thing: thing")

    def test_metadata_reaches_the_upstream(self):
        o = self.origin()
        gw = self.grpc_gateway(o.addr)
        _, _, msgs, st, _ = call(gw.port, "/test.Echo/Headers", [b""], headers=[("x-meta", "v1")])
        self.assertEqual(st, "0")
        lines = msgs[0].decode().split("\n")
        self.assertIn("x-meta=v1", lines)
        # Connection-specific fields never reach an HTTP/2 upstream.
        self.assertFalse([l for l in lines if l.startswith(("transfer-encoding=", "connection="))], lines)

    def test_many_calls_share_one_connection(self):
        o = self.origin()
        gw = self.grpc_gateway(o.addr)
        peers, errors = [], []

        def one():
            try:
                _, _, msgs, st, _ = call(gw.port, "/test.Echo/Peer", [b""])
                peers.append((msgs[0] if msgs else None, st))
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=one) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(peers), 40)
        self.assertTrue(all(st == "0" for _, st in peers), peers)
        # The origin saw every call come from one connection (one peer port).
        self.assertEqual(len({p for p, _ in peers}), 1, peers)

    def test_peer_stream_cap_opens_another_connection(self):
        o = self.origin(max_streams=2)
        gw = self.grpc_gateway(o.addr)
        call(gw.port, "/test.Echo/Peer", [b""])  # the connection, with the peer's SETTINGS
        peers, errors = [], []

        def one():
            try:
                _, _, msgs, st, _ = call(gw.port, "/test.Echo/Peer", [b"1.5"])
                peers.append((msgs[0] if msgs else None, st))
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertTrue(all(st == "0" for _, st in peers), peers)
        # Two streams per connection: six calls at once need three.
        self.assertEqual(len({p for p, _ in peers}), 3, peers)

    def test_idle_connection_closes_after_keepalive_timeout(self):
        o = self.origin()
        gw = self.grpc_gateway(o.addr, upstream_extra={"keepalive_pool": {"idle_timeout": 0.3, "requests": 3}})
        first = call(gw.port, "/test.Echo/Peer", [b""])[2]
        self.assertEqual(call(gw.port, "/test.Echo/Peer", [b""])[2], first)  # within the idle timeout
        time.sleep(1.0)  # the idle timeout passing is the behaviour under test
        second = call(gw.port, "/test.Echo/Peer", [b""])[2]
        self.assertNotEqual(second, first)
        # keepalive_pool.requests: three calls per connection.
        self.assertEqual(call(gw.port, "/test.Echo/Peer", [b""])[2], second)
        self.assertEqual(call(gw.port, "/test.Echo/Peer", [b""])[2], second)
        self.assertNotEqual(call(gw.port, "/test.Echo/Peer", [b""])[2], second)

    def test_goaway_moves_new_calls_to_a_new_connection(self):
        o = self.origin()
        port = o.port
        gw = self.grpc_gateway(o.addr)
        _, _, first, st, _ = call(gw.port, "/test.Echo/Peer", [b""])
        self.assertEqual(st, "0")
        self.assertEqual(call(gw.port, "/test.Echo/Peer", [b""])[2], first)  # pooled
        o.stop()  # graceful: GOAWAY, then the connection closes
        self._procs.remove(o)
        o2 = self.origin(port=port)
        _, _, second, st, _ = call(gw.port, "/test.Echo/Peer", [b""])
        self.assertEqual(st, "0")
        self.assertNotEqual(second, first)
        self.assertEqual(call(gw.port, "/test.Echo/Unary", [b"x"])[2], [b"echo:x"])

    def h2_client(self, port):
        from test_http2 import H2Client
        c = H2Client(port)
        self.addCleanup(c.close)
        return c

    def h2_call(self, c, path, body, trailers=None, headers=()):
        """Starts a call on H2Client `c`: headers, one message, then END_STREAM
        (or trailers). Returns the stream id."""
        sid = c.start("POST", path, headers=[("content-type", "application/grpc"), ("te", "trailers"), *headers],
                      end=False)
        c.send_body(sid, frame(body), end=trailers is None)
        if trailers is not None:
            c.conn.send_headers(sid, trailers, end_stream=True)
            c.flush()
        return sid

    def test_client_reset_cancels_the_upstream_stream(self):
        # An HTTP/2 client resets its call while the origin holds it: the
        # upstream stream is reset (CANCEL) at once, and the pooled connection
        # to the origin goes on serving calls.
        o = H2Origin()
        self.addCleanup(o.stop)
        gw = self.grpc_gateway(o.addr)
        c = self.h2_client(gw.port)
        st = c.wait(self.h2_call(c, "/test.Echo/Unary", b"a"))
        self.assertEqual((st["status"], dict(st["trailers"]).get("grpc-status")), (200, "0"))
        held = self.h2_call(c, "/test.Echo/Hold", b"x")
        o.wait(lambda o: any(r["path"] == "/test.Echo/Hold" for r in o.requests))
        c.conn.reset_stream(held, error_code=8)
        c.flush()
        o.wait(lambda o: (0, 3, 8) in o.resets, timeout=5)  # the origin's stream 3, CANCEL
        st = c.wait(self.h2_call(c, "/test.Echo/Unary", b"b"))
        self.assertEqual((st["status"], dict(st["trailers"]).get("grpc-status")), (200, "0"))
        self.assertEqual(o.conns, 1)
        self.assertEqual([r["stream"] for r in o.requests], [1, 3, 5])

    def test_request_trailers_reach_the_origin_as_trailing_headers(self):
        o = H2Origin()
        self.addCleanup(o.stop)
        gw = self.grpc_gateway(o.addr)
        c = self.h2_client(gw.port)
        st = c.wait(self.h2_call(c, "/test.Echo/Unary", b"m", trailers=[("x-sum", "42"), ("x-other", "a b")]))
        self.assertEqual((st["status"], dict(st["trailers"]).get("grpc-status")), (200, "0"))
        self.assertEqual(o.requests[0]["trailers"], [("x-sum", "42"), ("x-other", "a b")])
        self.assertEqual(o.requests[0]["body"], frame(b"m"))

    def test_refused_stream_is_sent_again(self):
        # An origin that refuses the first stream of each connection
        # (RST_STREAM REFUSED_STREAM) processed nothing: the call goes again,
        # once, and succeeds on the connection that is still usable.
        o = H2Origin(refuse="rst")
        self.addCleanup(o.stop)
        gw = self.grpc_gateway(o.addr)
        status, _, msgs, st, _ = call(gw.port, "/test.Echo/Unary", [b"r"])
        self.assertEqual((status, st), (200, "0"))
        self.assertEqual(len(msgs), 1)
        self.assertEqual([(r["conn"], r["stream"]) for r in o.requests], [(0, 3)])
        self.assertIn("refused the request unprocessed; sending it again", gw.logs())

    def test_goaway_below_the_call_is_sent_again_on_a_new_connection(self):
        # GOAWAY with last-stream-id 0 on the first connection: the call was
        # not processed and goes again, on a new connection.
        o = H2Origin(refuse="goaway", refuse_conns={0})
        self.addCleanup(o.stop)
        gw = self.grpc_gateway(o.addr)
        status, _, msgs, st, _ = call(gw.port, "/test.Echo/Unary", [b"g"])
        self.assertEqual((status, st), (200, "0"))
        self.assertEqual([(r["conn"], r["stream"]) for r in o.requests], [(1, 1)])

    def test_refusal_is_retried_only_once(self):
        # Every connection's first stream goes away: one retry, then the
        # client gets UNAVAILABLE; a streamed body (not all buffered) is not
        # sent again at all.
        o = H2Origin(refuse="goaway")
        self.addCleanup(o.stop)
        gw = self.grpc_gateway(o.addr)
        status, _, _, st, _ = call(gw.port, "/test.Echo/Unary", [b"g"])
        self.assertEqual((status, st), (200, "14"))
        self.assertEqual(o.conns, 2)
        c = H1Call(gw.port, "/test.Echo/Unary")
        self.addCleanup(c.close)
        c.send_head()  # the body follows later: it streams, nothing is buffered
        self.assertEqual(c.read_head(), 200)
        self.assertEqual(c.finish()[1], "14")
        self.assertEqual(o.conns, 3)

    def test_upstream_down_is_unavailable(self):
        port = free_port()  # nobody listens
        gw = self.grpc_gateway(f"127.0.0.1:{port}")
        status, headers, msgs, st, msg = call(gw.port, "/test.Echo/Unary", [b"x"])
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-type"), "application/grpc")
        self.assertEqual(st, "14")
        self.assertEqual(msg, "Bad Gateway")

    def test_origin_header_bomb_is_refused_with_bounded_memory(self):
        # HPACK lets an origin repeat a 4 KiB table entry with one byte per
        # field: 20,000 of them are ~40 KiB on the wire and 80 MB decoded.
        # nghttp2 does not enforce the advertised header list size, so
        # Holdfast counts it and resets the stream.
        import h2.config
        import h2.connection
        import h2.events
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        self.addCleanup(srv.close)

        def serve():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
            conn.initiate_connection()
            c.sendall(conn.data_to_send())
            try:
                while True:
                    data = c.recv(65536)
                    if not data:
                        return
                    for ev in conn.receive_data(data):
                        if isinstance(ev, h2.events.RequestReceived):
                            big = [(b":status", b"200"), (b"content-type", b"application/grpc")]
                            big += [(b"x-a", b"a" * 4000)] * 20000
                            conn.send_headers(ev.stream_id, big)
                    c.sendall(conn.data_to_send())
            except Exception:
                pass
            finally:
                c.close()
        threading.Thread(target=serve, daemon=True).start()
        gw = self.grpc_gateway(f"127.0.0.1:{srv.getsockname()[1]}")
        base = gw.rss_kb()
        peak = [base]
        done = threading.Event()

        def sample():  # the decoded list is freed after the call: watch the peak
            while not done.is_set():
                peak[0] = max(peak[0], gw.rss_kb())
                time.sleep(0.002)
        t = threading.Thread(target=sample)
        t.start()
        try:
            status, headers, msgs, st, msg = call(gw.port, "/test.Echo/Unary", [b"x"])
            time.sleep(0.2)
        finally:
            done.set()
            t.join()
        self.assertEqual((status, st), (200, "14"), "the call fails as UNAVAILABLE (502)")
        self.assertLess(peak[0] - base, 32 * 1024, "the decoded header list was not bounded")
        self.assertIsNone(gw.proc.poll())

    def test_generated_errors_are_grpc_statuses(self):
        o = self.origin()
        gw = self.gateway({"routes": [
            {"id": "g", "uri": "/test.Echo/*", "upstream": {"scheme": "grpc", "nodes": {o.addr: 1}}},
            {"id": "k", "uri": "/locked.Svc/*", "plugins": {"key-auth": {}},
             "upstream": {"scheme": "grpc", "nodes": {o.addr: 1}}}]})
        status, _, _, st, msg = call(gw.port, "/no.Such/Method", [b"x"])
        self.assertEqual((status, st, msg), (200, "12", "404 Route Not Found"))
        status, _, _, st, _ = call(gw.port, "/locked.Svc/M", [b"x"])
        self.assertEqual((status, st), (200, "16"))
        # A plain HTTP request keeps its HTTP status.
        r = gw.request("POST", "/no.Such/Method", body=b"x")
        self.assertEqual(r.status, 404)

    def test_grpc_timeout_gives_deadline_exceeded(self):
        o = self.origin()
        # The origin would enforce grpc-timeout itself: it does not see it
        # here, so the deadline met is Holdfast's.
        gw = self.grpc_gateway(o.addr, route_extra={"plugins": {"proxy-rewrite": {"headers": {"remove": ["grpc-timeout"]}}}})
        start = time.monotonic()
        status, _, msgs, st, msg = call(gw.port, "/test.Echo/Slow", [b"3"], headers=[("grpc-timeout", "300m")])
        self.assertEqual(status, 200)
        self.assertEqual(msgs, [])
        self.assertEqual(st, "4")
        self.assertLess(time.monotonic() - start, 2.5)  # not the origin's 3 s
        # Within its deadline the call succeeds.
        _, _, msgs, st, _ = call(gw.port, "/test.Echo/Slow", [b"0.05"], headers=[("grpc-timeout", "5S")])
        self.assertEqual((msgs, st), ([b"late"], "0"))

    def test_route_read_timeout_bounds_grpc_timeout(self):
        o = self.origin()
        gw = self.grpc_gateway(o.addr, route_extra={"timeout": {"connect": 1, "send": 1, "read": 0.3}})
        status, _, _, st, _ = call(gw.port, "/test.Echo/Slow", [b"3"], headers=[("grpc-timeout", "20S")])
        self.assertEqual((status, st), (200, "4"))


# Downstream HTTP/2 (issue #13 item 1) comes in its own change; until its
# sources are in the tree a grpcio client cannot reach Holdfast. Decided by
# the sources, not by probing the binary, so that a broken h2 listener fails
# these tests instead of skipping them.
DOWNSTREAM_H2 = bool(glob.glob(os.path.join(HERE, "..", "..", "src", "transport", "h2_*")))


@unittest.skipUnless(DOWNSTREAM_H2, "downstream HTTP/2 is not in this tree yet")
class GrpcClientTest(GatewayTest):
    """A grpcio client through Holdfast (downstream h2c with prior knowledge,
    issue #13 item 4) to a grpcio origin: every call kind end to end."""

    def setUp(self):
        super().setUp()
        import grpc  # Debian's python3-grpcio (the system interpreter)
        self.grpc = grpc
        self.o = GrpcOrigin()
        self._procs.append(self.o)
        self.gw = self.gateway({"routes": [
            {"id": "g", "uri": "/test.Echo/*", "upstream": {"scheme": "grpc", "nodes": {self.o.addr: 1}}},
            {"id": "k", "uri": "/locked.Svc/*", "plugins": {"key-auth": {}},
             "upstream": {"scheme": "grpc", "nodes": {self.o.addr: 1}}}]})
        self.ch = grpc.insecure_channel(f"127.0.0.1:{self.gw.port}")
        self.addCleanup(self.ch.close)

    def test_unary(self):
        self.assertEqual(self.ch.unary_unary("/test.Echo/Unary")(b"hi", timeout=10), b"echo:hi")

    def test_server_streaming(self):
        got = list(self.ch.unary_stream("/test.Echo/ServerStream")(b"4", timeout=10))
        self.assertEqual(got, [b"msg-0", b"msg-1", b"msg-2", b"msg-3"])

    def test_client_streaming(self):
        got = self.ch.stream_unary("/test.Echo/ClientStream")(iter([b"a", b"b", b"c"]), timeout=10)
        self.assertEqual(got, b"a,b,c")

    def test_bidi_streaming_interleaved(self):
        import queue
        q = queue.Queue()

        def requests():
            while True:
                m = q.get()
                if m is None:
                    return
                yield m

        q.put(b"one")
        it = self.ch.stream_stream("/test.Echo/Bidi")(requests(), timeout=10)
        # Each answer comes back before the next request exists.
        self.assertEqual(next(it), b"re:one")
        q.put(b"two")
        self.assertEqual(next(it), b"re:two")
        q.put(None)
        self.assertEqual(list(it), [])

    def test_non_ok_status_with_message(self):
        with self.assertRaises(self.grpc.RpcError) as e:
            self.ch.unary_unary("/test.Echo/Fail")(b"x", timeout=10)
        self.assertEqual(e.exception.code(), self.grpc.StatusCode.NOT_FOUND)
        self.assertEqual(e.exception.details(), "no such thing: x")

    def test_generated_errors(self):
        with self.assertRaises(self.grpc.RpcError) as e:
            self.ch.unary_unary("/no.Such/Method")(b"x", timeout=10)
        self.assertEqual(e.exception.code(), self.grpc.StatusCode.UNIMPLEMENTED)
        with self.assertRaises(self.grpc.RpcError) as e:
            self.ch.unary_unary("/locked.Svc/M")(b"x", timeout=10)
        self.assertEqual(e.exception.code(), self.grpc.StatusCode.UNAUTHENTICATED)

    def test_deadline(self):
        with self.assertRaises(self.grpc.RpcError) as e:
            self.ch.unary_unary("/test.Echo/Slow")(b"3", timeout=0.3)
        self.assertEqual(e.exception.code(), self.grpc.StatusCode.DEADLINE_EXCEEDED)
        # The connection (and Holdfast's upstream stream, reset) serve on.
        self.assertEqual(self.ch.unary_unary("/test.Echo/Unary")(b"after", timeout=10), b"echo:after")


class GrpcsTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="holdfast-pki-")
        cls.pki = Pki(cls.dir)
        cert, key = cls.pki.leaf("origin", ["grpc.test", "localhost"])
        cls.cert, cls.key = f"{cls.dir}/origin.pem", f"{cls.dir}/origin.key.pem"
        for path, pem in ((cls.cert, cert), (cls.key, key)):
            with open(path, "w") as f:
                f.write(pem)
        cls.other_dir = tempfile.mkdtemp(prefix="holdfast-pki-other-")
        cls.other = Pki(cls.other_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)
        shutil.rmtree(cls.other_dir, True)

    def setup(self, ca):
        o = GrpcOrigin(cert=self.cert, key=self.key)
        self._procs.append(o)
        gw = self.gateway({"routes": [{"id": "g", "uri": "/test.Echo/*", "upstream": {
            "scheme": "grpcs", "nodes": {o.addr: 1}, "pass_host": "rewrite", "upstream_host": "grpc.test",
            "tls": {"verify": True}}}]},
            config={"apisix": {"ssl": {"ssl_trusted_certificate": ca}}})
        return o, gw

    def test_grpcs_verified(self):
        _, gw = self.setup(self.pki.ca_crt)
        status, _, msgs, st, _ = call(gw.port, "/test.Echo/Unary", [b"tls"])
        self.assertEqual((status, msgs, st), (200, [b"echo:tls"], "0"))
        _, _, msgs, st, _ = call(gw.port, "/test.Echo/ServerStream", [b"3"])
        self.assertEqual((msgs, st), ([b"msg-0", b"msg-1", b"msg-2"], "0"))
        _, _, _, st, msg = call(gw.port, "/test.Echo/Fail", [b"t"])
        self.assertEqual((st, msg), ("5", "no such thing: t"))

    def test_grpcs_unknown_ca_is_unavailable(self):
        _, gw = self.setup(self.other.ca_crt)
        status, _, msgs, st, _ = call(gw.port, "/test.Echo/Unary", [b"tls"])
        self.assertEqual((status, msgs, st), (200, [], "14"))
        gw.wait_log("certificate verify failed")


if __name__ == "__main__":
    unittest.main()
