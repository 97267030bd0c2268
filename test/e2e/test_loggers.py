"""http-logger and file-logger (issue #12 item 5) through the real binary, a
real upstream and a real HTTP collector (a server on a loopback socket).

APISIX behaviour followed (apisix/plugins/http-logger.lua, file-logger.lua,
apisix/utils/log-util.lua, batch-processor.lua):
- the entry: request {url, uri, method, headers, querystring, size, body?},
  response {status, headers, size}, server, upstream, route_id, service_id,
  consumer, client_ip, start_time, latency, upstream_latency, apisix_latency;
  a custom log_format (conf, else plugin_metadata) of "$var" values instead;
- http-logger POSTs batches: a JSON array (one object when batch_max_size is
  1) or JSON lines (concat_method new_line), Authorization = auth_header,
  route_id "no-matched" without a route; a failed batch is retried
  max_retry_count times, retry_delay apart;
- file-logger appends one JSON line per request (`match` selects).
Deliberate difference: credential headers and the apikey argument are
redacted in entries.
"""
import json
import os
import shutil
import tempfile
import threading
import time
import unittest
import urllib.request

from harness import Gateway, LoopbackServer, RecordingServer, Upstream, free_port


class Collector(RecordingServer):
    """A real HTTP log collector. `fail` answers 500 to that many POSTs first;
    `hang` never answers."""

    def __init__(self, fail=0, hang=False):
        self.fail = fail
        self.hang = hang
        super().__init__()

    def answer(self, handler, record):
        with self.cond:
            failing = self.fail > 0
            if failing:
                self.fail -= 1
        if self.hang:
            self.release.wait(30)
            return
        self.reply(handler, 500 if failing else 200, b"ok")

    @property
    def posts(self):
        return self.seen

    @property
    def uri(self):
        return f"http://127.0.0.1:{self.port}/logs?src=holdfast"

    def wait_posts(self, n, timeout=15):
        return self.wait(lambda seen: len(seen) >= n, timeout)


def entries(post):
    v = json.loads(post["body"])
    return v if isinstance(v, list) else [v]


def metrics(gw):
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.status_port}/metrics", timeout=5) as r:
        return r.read().decode()


class HttpLoggerTest(unittest.TestCase):
    def setUp(self):
        self.up = Upstream("u1")
        self.addCleanup(self.up.stop)

    def gateway(self, plugins, consumers=None, metadata=None, global_rules=None, uri="/anything*"):
        res = {"routes": [{"id": "r1", "uri": uri, "plugins": plugins,
                           "upstream": {"nodes": {self.up.addr: 1}}}]}
        if consumers:
            res["consumers"] = consumers
        if metadata:
            res["plugin_metadata"] = metadata
        if global_rules:
            res["global_rules"] = global_rules
        gw = Gateway(res, config={"apisix": {"status": {"ip": "127.0.0.1", "port": free_port()}}})
        self.addCleanup(gw.stop)
        return gw

    def collector(self, **kw):
        c = Collector(**kw)
        self.addCleanup(c.stop)
        return c

    def test_full_entry_one_per_post(self):
        c = self.collector()
        gw = self.gateway({"key-auth": {}, "http-logger": {"uri": c.uri, "batch_max_size": 1, "auth_header": "Bearer log-token-123"}},
                          consumers=[{"username": "jack", "plugins": {"key-auth": {"key": "jack-secret-key"}}}])
        r = gw.get("/anything/x?a=1&b=2&b=3&flag&apikey=jack-secret-key",
                   headers={"X-Trace": "t1", "Authorization": "Basic c2VjcmV0"})
        self.assertEqual(r.status, 200)
        post = c.wait_posts(1)[0]
        self.assertEqual(post["headers"]["content-type"], "application/json")
        self.assertEqual(post["headers"]["authorization"], "Bearer log-token-123")
        e = json.loads(post["body"])
        self.assertIsInstance(e, dict, "batch_max_size 1: the object itself")
        self.assertEqual(e["request"]["method"], "GET")
        self.assertEqual(e["request"]["uri"], "/anything/x?a=1&b=2&b=3&flag&apikey=[redacted]")
        self.assertEqual(e["request"]["url"], f"http://127.0.0.1:{gw.port}" + e["request"]["uri"])
        self.assertEqual(e["request"]["querystring"]["a"], "1")
        self.assertEqual(e["request"]["querystring"]["b"], ["2", "3"])
        self.assertIs(e["request"]["querystring"]["flag"], True)
        self.assertEqual(e["request"]["headers"]["x-trace"], "t1")
        self.assertGreater(e["request"]["size"], 50)
        self.assertEqual(e["response"]["status"], 200)
        self.assertGreater(e["response"]["size"], 0)
        self.assertIn("content-type", e["response"]["headers"])
        self.assertEqual(e["route_id"], "r1")
        self.assertEqual(e["service_id"], "")
        self.assertEqual(e["consumer"], {"username": "jack"})
        self.assertEqual(e["upstream"], self.up.addr)
        self.assertEqual(e["client_ip"], "127.0.0.1")
        self.assertAlmostEqual(e["start_time"] / 1000, time.time(), delta=30)
        self.assertGreaterEqual(e["latency"], e["upstream_latency"])
        self.assertGreaterEqual(e["apisix_latency"], 0)
        self.assertEqual(e["server"]["hostname"], os.uname().nodename)
        # Credentials are not shipped.
        self.assertEqual(e["request"]["headers"]["authorization"], "[redacted]")
        self.assertEqual(e["request"]["querystring"]["apikey"], "[redacted]")
        self.assertNotIn("jack-secret-key", post["body"].decode())
        self.assertNotIn("c2VjcmV0", post["body"].decode())
        self.assertNotIn("log-token-123", gw.logs())

    def test_batches_as_a_json_array_and_as_lines(self):
        c = self.collector()
        gw = self.gateway({"http-logger": {"uri": c.uri, "batch_max_size": 3, "inactive_timeout": 30}})
        for i in range(3):
            self.assertEqual(gw.get(f"/anything/{i}").status, 200)
        posts = c.wait_posts(1)
        self.assertEqual([e["request"]["uri"] for e in entries(posts[0])], ["/anything/0", "/anything/1", "/anything/2"])
        c2 = self.collector()
        gw2 = self.gateway({"http-logger": {"uri": c2.uri, "batch_max_size": 2, "concat_method": "new_line"}})
        gw2.get("/anything/a")
        gw2.get("/anything/b")
        post = c2.wait_posts(1)[0]
        self.assertEqual(post["headers"]["content-type"], "text/plain")
        lines = post["body"].decode().split("\n")
        self.assertEqual([json.loads(l)["request"]["uri"] for l in lines], ["/anything/a", "/anything/b"])

    def test_inactive_timeout_sends_a_partial_batch(self):
        c = self.collector()
        gw = self.gateway({"http-logger": {"uri": c.uri, "batch_max_size": 100, "inactive_timeout": 1}})
        gw.get("/anything/only")
        post = c.wait_posts(1, timeout=10)[0]
        self.assertEqual(len(entries(post)), 1)

    def test_failed_batch_is_retried(self):
        c = self.collector(fail=1)
        gw = self.gateway({"http-logger": {"uri": c.uri, "batch_max_size": 1, "max_retry_count": 2, "retry_delay": 1}})
        gw.get("/anything/r")
        posts = c.wait_posts(2)
        self.assertEqual(posts[0]["body"], posts[1]["body"], "the same batch, sent again")
        deadline = time.time() + 5
        while 'holdfast_log_batches_total{plugin="http-logger",result="sent"} 1' not in metrics(gw):
            self.assertLess(time.time(), deadline, metrics(gw))
            time.sleep(0.1)
        gw.wait_log("retry 1 of 2")

    def test_given_up_batch_is_counted(self):
        c = self.collector(fail=100)
        gw = self.gateway({"http-logger": {"uri": c.uri, "batch_max_size": 1, "auth_header": "Bearer hidden-token-9"}})
        gw.get("/anything/x")
        gw.wait_log("dropped after 0 retries", timeout=10)
        deadline = time.time() + 5
        while 'holdfast_log_entries_dropped_total{plugin="http-logger",reason="send"} 1' not in metrics(gw):
            self.assertLess(time.time(), deadline, metrics(gw))
            time.sleep(0.1)
        self.assertNotIn("hidden-token-9", gw.logs())

    def test_a_hanging_collector_never_holds_requests(self):
        c = self.collector(hang=True)
        gw = self.gateway({"http-logger": {"uri": c.uri, "batch_max_size": 1, "timeout": 30}})
        for i in range(30):
            self.assertEqual(gw.get(f"/anything/{i}", timeout=5).status, 200)
        c.wait_posts(1)

    def test_custom_log_format_conf_then_metadata(self):
        c = self.collector()
        gw = self.gateway({"http-logger": {"uri": c.uri, "batch_max_size": 1,
                                           "log_format": {"host": "$host", "client": "$remote_addr", "k": "const",
                                                          "nothing": "$no_such_var"}}})
        gw.get("/anything/f", headers={"Host": "logs.example"})
        e = entries(c.wait_posts(1)[0])[0]
        self.assertEqual(set(e), {"host", "client", "k", "nothing", "route_id"})
        self.assertEqual(e["host"], "logs.example")
        self.assertEqual(e["k"], "const")
        self.assertIsNone(e["nothing"])
        c2 = self.collector()
        gw2 = self.gateway({"http-logger": {"uri": c2.uri, "batch_max_size": 1}},
                           metadata=[{"id": "http-logger", "log_format": {"uri": "$uri", "status": "$status"}}])
        gw2.get("/anything/m")
        e = entries(c2.wait_posts(1)[0])[0]
        self.assertEqual(e["uri"], "/anything/m")
        self.assertNotIn("request", e)

    def test_no_route_entry_says_no_matched(self):
        c = self.collector()
        gw = self.gateway({}, global_rules=[{"id": "g1", "plugins": {"http-logger": {"uri": c.uri, "batch_max_size": 1}}}])
        self.assertEqual(gw.get("/nowhere").status, 404)
        e = entries(c.wait_posts(1)[0])[0]
        self.assertEqual(e["route_id"], "no-matched")
        self.assertEqual(e["response"]["status"], 404)

    def test_request_body_when_asked(self):
        c = self.collector()
        gw = self.gateway({"http-logger": {"uri": c.uri, "batch_max_size": 1, "include_req_body": True,
                                           "include_req_body_expr": [["arg_log", "==", "yes"]]}})
        gw.request("POST", "/anything/p?log=yes", body=b"hello-body")
        gw.request("POST", "/anything/p?log=no", body=b"other-body")
        posts = c.wait_posts(2)
        by_uri = {entries(p)[0]["request"]["uri"]: entries(p)[0]["request"] for p in posts}
        self.assertEqual(by_uri["/anything/p?log=yes"]["body"], "hello-body")
        self.assertNotIn("body", by_uri["/anything/p?log=no"])

    def test_response_body_when_asked(self):
        """include_resp_body: the body as the client got it (chunk framing
        removed, gzip decoded), cut at max_resp_body_bytes, for requests
        include_resp_body_expr selects; a plugin's own response too."""
        c = self.collector()
        gw = self.gateway({"key-auth": {"_meta": {"filter": [["arg_auth", "==", "yes"]]}},
                           "http-logger": {"uri": c.uri, "batch_max_size": 1, "include_resp_body": True,
                                           "include_resp_body_expr": [["arg_log", "~=", "no"]],
                                           "max_resp_body_bytes": 70000}}, uri="/*")
        got = {}
        for path in ("/anything/small",                    # read with its head (Content-Length)
                     "/bytes/100000?pattern=1",            # streamed, sized: cut at 70,000
                     "/bytes/50000?pattern=1&chunked=1",   # streamed, chunked: whole
                     "/bytes/90000?pattern=1&chunked=1",   # streamed, chunked: cut
                     "/gzip",                              # decoded for the log
                     "/anything/quiet?log=no",             # the expression says no
                     "/anything/denied?auth=yes"):         # key-auth answers 401 itself
            r = gw.get(path)
            got[path] = r
        posts = c.wait_posts(len(got))
        logged = {entries(p)[0]["request"]["uri"]: entries(p)[0]["response"] for p in posts}
        for path in ("/anything/small", "/bytes/50000?pattern=1&chunked=1", "/anything/denied?auth=yes"):
            self.assertEqual(logged[path]["body"].encode(), got[path].body, path)
        self.assertEqual(got["/anything/denied?auth=yes"].status, 401)
        for path in ("/bytes/100000?pattern=1", "/bytes/90000?pattern=1&chunked=1"):
            self.assertEqual(len(got[path].body), int(path.split("/")[2].split("?")[0]))
            self.assertEqual(logged[path]["body"].encode(), got[path].body[:70000], path)
        self.assertEqual(logged["/gzip"]["body"], "compressed hello from u1")
        self.assertEqual(got["/gzip"].headers.get("content-encoding"), "gzip")  # the client's copy untouched
        self.assertNotIn("body", logged["/anything/quiet?log=no"])

    def test_response_body_from_an_origin_that_breaks_off(self):
        """The origin promises 100,000 bytes (sized, then chunked) and closes
        after 30,000: the client's response is cut, the entry holds what
        came (never more), the node stays up and serves the next request."""
        class Breaking(LoopbackServer):
            def serve(self, conn, index):
                conn.recv(65536)
                if index % 2 == 0:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 30000)
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                 b"7530\r\n" + b"b" * 30000 + b"\r\n")
        origin = Breaking()
        self.addCleanup(origin.stop)
        c = self.collector()
        res = {"routes": [{"id": "r1", "uri": "/*", "upstream": {"nodes": {origin.addr: 1}},
                           "plugins": {"http-logger": {"uri": c.uri, "batch_max_size": 1,
                                                       "include_resp_body": True}}},
                          {"id": "ok", "uri": "/fine", "upstream": {"nodes": {self.up.addr: 1}}}]}
        gw = Gateway(res)
        self.addCleanup(gw.stop)
        for path, byte in (("/sized", "a"), ("/chunked", "b")):
            with self.subTest(path=path):
                try:
                    gw.get(path)  # cut short: the client library may raise
                except Exception:
                    pass
                body = entries(c.wait_posts(1 if byte == "a" else 2)[-1])[0]["response"].get("body", "")
                self.assertLessEqual(len(body), 30000)
                self.assertEqual(body, byte * len(body))
        self.assertEqual(gw.get("/fine").status, 200)
        self.assertIsNone(gw.proc.poll())

    def test_schema(self):
        for conf, word in (({}, "uri"), ({"uri": "ftp://x"}, "uri"), ({"uri": "http://127.0.0.1:1", "batch_max_size": 0}, "batch_max_size"),
                           ({"uri": "http://127.0.0.1:1", "concat_method": "xml"}, "concat_method"),
                           ({"uri": "http://127.0.0.1:1", "include_req_body_expr": [["a", "~~", "("]]}, "include_req_body_expr")):
            with self.subTest(conf=conf):
                gw = self.gateway({"http-logger": conf})
                self.assertEqual(gw.get("/anything").status, 404)
                self.assertIn(word, gw.logs())


class BrokenCollectorTest(unittest.TestCase):
    """A collector that resets, answers garbage or sends endless 1xx: the
    batch fails (counted, retried as configured), requests are unaffected,
    the node stays up."""

    def serve(self, reply):
        import socket
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        self.addCleanup(srv.close)
        stop = threading.Event()
        self.addCleanup(stop.set)

        def run():
            srv.settimeout(0.2)
            while not stop.is_set():
                try:
                    c, _ = srv.accept()
                except OSError:
                    continue
                try:
                    c.settimeout(2)
                    c.recv(65536)
                    reply(c)
                except OSError:
                    pass
                finally:
                    c.close()
        threading.Thread(target=run, daemon=True).start()
        return srv.getsockname()[1]

    def check(self, reply):
        up = Upstream("u1")
        self.addCleanup(up.stop)
        port = self.serve(reply)
        gw = Gateway({"routes": [{"id": "r1", "uri": "/anything*", "upstream": {"nodes": {up.addr: 1}},
                                  "plugins": {"http-logger": {"uri": f"http://127.0.0.1:{port}/l", "batch_max_size": 1,
                                                              "timeout": 2}}}]},
                     config={"apisix": {"status": {"ip": "127.0.0.1", "port": free_port()}}})
        self.addCleanup(gw.stop)
        for i in range(3):
            self.assertEqual(gw.get(f"/anything/{i}").status, 200)
        deadline = time.time() + 15
        while 'holdfast_log_entries_dropped_total{plugin="http-logger",reason="send"} 3' not in metrics(gw):
            self.assertLess(time.time(), deadline, metrics(gw))
            time.sleep(0.2)
        self.assertEqual(gw.get("/anything/after").status, 200)
        self.assertIsNone(gw.proc.poll())

    def test_reset(self):
        import socket
        import struct
        # SO_LINGER 0: close() sends a reset.
        self.check(lambda c: c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)))

    def test_garbage_reply(self):
        self.check(lambda c: c.sendall(b"\x00\x01garbage\r\n\r\n"))

    def test_endless_1xx(self):
        def reply(c):
            for _ in range(10000):
                c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.check(reply)


class FileLoggerTest(unittest.TestCase):
    def test_lines_appended_and_match(self):
        up = Upstream("u1")
        self.addCleanup(up.stop)
        d = tempfile.mkdtemp(prefix="holdfast-e2e-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "access.jsonl")
        gw = Gateway({"routes": [{"id": "r1", "uri": "/anything*", "upstream": {"nodes": {up.addr: 1}},
                                  "plugins": {"file-logger": {"path": path, "match": [["arg_skip", "~=", "1"]]}}}]})
        self.addCleanup(gw.stop)
        for i in range(5):
            gw.get(f"/anything/{i}")
        gw.get("/anything/skipped?skip=1")
        deadline = time.time() + 10
        lines = []
        while len(lines) < 5:
            self.assertLess(time.time(), deadline, lines)
            time.sleep(0.1)
            if os.path.exists(path):
                with open(path) as f:
                    lines = f.read().splitlines()
        time.sleep(0.5)
        with open(path) as f:
            lines = f.read().splitlines()
        uris = [json.loads(l)["request"]["uri"] for l in lines]
        self.assertEqual(uris, [f"/anything/{i}" for i in range(5)])

    def test_unwritable_path_is_logged_not_fatal(self):
        up = Upstream("u1")
        self.addCleanup(up.stop)
        gw = Gateway({"routes": [{"id": "r1", "uri": "/anything*", "upstream": {"nodes": {up.addr: 1}},
                                  "plugins": {"file-logger": {"path": "/nonexistent-dir/x/log.jsonl"}}}]})
        self.addCleanup(gw.stop)
        self.assertEqual(gw.get("/anything").status, 200)
        gw.wait_log("failed to open file: /nonexistent-dir/x/log.jsonl", timeout=10)
        self.assertEqual(gw.get("/anything").status, 200)


if __name__ == "__main__":
    unittest.main()
