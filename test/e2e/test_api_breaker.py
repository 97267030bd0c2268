"""api-breaker (issue #12 item 3) through the real binary, a real etcd (the
Admin API of a traditional node) and a real upstream whose status the test
sets and whose hits it counts: the breaker opens after `unhealthy.failures`
failures and answers without reaching the upstream, closes after 2^n
seconds (doubling per trip, as APISIX computes it), `healthy.successes`
reset it, its state survives a reload of unrelated resources, and bad
configurations get APISIX's messages.

Each sequence runs on one keep-alive connection: the gateway finishes a
request's log phase (where the breaker counts) before it reads the next
request, so no sleep is needed between them. Waiting for the break to end
is the behaviour under test: done once per break, with a margin.

Expected behaviour is APISIX 3.x (apisix/plugins/api-breaker.lua,
t/plugin/api-breaker.t)."""
import http.client
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import GatewayTest, free_port, wait_port

ADMIN = "/apisix/admin"


class CountingUpstream:
    """A real HTTP upstream in a thread: answers `status` and counts hits."""

    def __init__(self):
        self.status = 200
        self.hits = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with outer.lock:
                    outer.hits += 1
                    status = outer.status
                body = b"from upstream"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class Client:
    """One keep-alive connection to the gateway."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body

    def close(self):
        self.conn.close()


class ApiBreakerTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls._holder = GatewayTest()
        cls._holder.setUp()
        cls.etcd_srv = cls._holder.etcd()
        cls.gw = cls._holder.etcd_gateway(cls.etcd_srv, role="traditional")
        wait_port(cls.gw.admin_port)
        cls.up = CountingUpstream()
        cls._holder._procs.append(cls.up)

    @classmethod
    def tearDownClass(cls):
        cls._holder.tearDown()

    def setUp(self):
        super().setUp()
        self.client = Client(self.gw.port)
        self.addCleanup(self.client.close)
        self.up.status = 200

    def breaker_route(self, rid, uri, conf):
        code, body = self.gw.admin("PUT", f"{ADMIN}/routes/{rid}",
                                   {"uri": uri, "plugins": {"api-breaker": conf},
                                    "upstream": {"nodes": {self.up.addr: 1}}})
        self.assertIn(code, (200, 201), body)
        # Served once applied (on another path: the breaker counts per path).
        warm = uri.replace("*", "warm")
        deadline = time.time() + 10
        while self.client.get(warm)[0] != 200:
            self.assertLess(time.time(), deadline, "route not applied")
            time.sleep(0.05)

    def fail_until_open(self, path, failures):
        """`failures` requests that reach the upstream and fail; returns the
        time the last one was answered (the breaker opened then)."""
        self.up.status = 500
        before = self.up.hits
        for _ in range(failures):
            self.assertEqual(self.client.get(path)[0], 500)
        opened = time.time()
        self.assertEqual(self.up.hits, before + failures)
        return opened

    def assert_open(self, path, code=502):
        before = self.up.hits
        for _ in range(3):
            self.assertEqual(self.client.get(path)[0], code)
        self.assertEqual(self.up.hits, before, "a request reached the upstream while the breaker was open")

    def test_opens_after_failures_and_closes_after_break(self):
        self.breaker_route("ab-open", "/open/*", {
            "break_response_code": 502, "break_response_body": "breaker open",
            "break_response_headers": [{"key": "X-Breaker", "value": "$uri"}],
            "unhealthy": {"http_statuses": [500, 503], "failures": 3}})
        self.up.status = 500
        self.assertEqual(self.client.get("/open/x")[0], 500)
        self.assertEqual(self.client.get("/open/x")[0], 500)
        opened = self.fail_until_open("/open/x", 1)
        before = self.up.hits
        status, headers, body = self.client.get("/open/x")
        self.assertEqual((status, body, headers.get("x-breaker")), (502, b"breaker open", "/open/x"))
        self.assert_open("/open/x")
        self.assertEqual(self.up.hits, before)
        # Another path has a breaker of its own (APISIX keys host and $uri).
        self.assertEqual(self.client.get("/open/other")[0], 500)
        # The first break lasts 2 s (2^1) in whole seconds: over by 3 s.
        time.sleep(max(0, opened + 3.2 - time.time()))
        self.up.status = 200
        before = self.up.hits
        status, _, body = self.client.get("/open/x")
        self.assertEqual((status, body), (200, b"from upstream"))
        self.assertEqual(self.up.hits, before + 1)

    def test_break_time_doubles_and_successes_reset(self):
        self.breaker_route("ab-double", "/double/*", {
            "break_response_code": 599, "unhealthy": {"failures": 2}, "healthy": {"successes": 2}})
        opened = self.fail_until_open("/double/x", 2)
        self.assert_open("/double/x", 599)
        time.sleep(max(0, opened + 3.2 - time.time()))
        # Two more failures: the second trip (4 failures: 2^2 = 4 s) is still
        # open when a 2 s one would be over.
        opened = self.fail_until_open("/double/x", 2)
        self.assert_open("/double/x", 599)
        time.sleep(max(0, opened + 3.2 - time.time()))
        self.assert_open("/double/x", 599)
        time.sleep(max(0, opened + 5.2 - time.time()))
        # Two successes reset the count: the next trip is back to 2 s.
        self.up.status = 200
        self.assertEqual(self.client.get("/double/x")[0], 200)
        self.assertEqual(self.client.get("/double/x")[0], 200)
        opened = self.fail_until_open("/double/x", 2)
        self.assert_open("/double/x", 599)
        time.sleep(max(0, opened + 3.2 - time.time()))
        self.up.status = 200
        self.assertEqual(self.client.get("/double/x")[0], 200)

    def test_upstream_connect_failure_counts(self):
        # nginx's $upstream_status is 502 when the node refuses the
        # connection: that counts as the upstream's answer.
        closed = free_port()
        code, body = self.gw.admin("PUT", f"{ADMIN}/routes/ab-down",
                                   {"uri": "/down/*", "plugins": {"api-breaker": {
                                       "break_response_code": 599, "unhealthy": {"http_statuses": [502], "failures": 2}}},
                                    "upstream": {"nodes": {f"127.0.0.1:{closed}": 1}}})
        self.assertIn(code, (200, 201), body)
        deadline = time.time() + 10
        while self.client.get("/down/warm")[0] != 502:
            self.assertLess(time.time(), deadline, "route not applied")
            time.sleep(0.05)
        self.assertEqual(self.client.get("/down/x")[0], 502)
        self.assertEqual(self.client.get("/down/x")[0], 502)
        self.assertEqual(self.client.get("/down/x")[0], 599)

    def test_state_shared_by_workers(self):
        gw = self.gateway({"routes": [{"id": "ab-w", "uri": "/w/*", "plugins": {"api-breaker": {
            "break_response_code": 599, "unhealthy": {"failures": 2}}},
            "upstream": {"nodes": {self.up.addr: 1}}}]}, workers=2)
        c = Client(gw.port)
        self.addCleanup(c.close)
        self.up.status = 500
        before = self.up.hits
        self.assertEqual(c.get("/w/x")[0], 500)
        self.assertEqual(c.get("/w/x")[0], 500)
        # New connections land on either worker: all of them see the open breaker.
        for _ in range(20):
            other = Client(gw.port)
            try:
                self.assertEqual(other.get("/w/x")[0], 599)
            finally:
                other.close()
        self.assertEqual(self.up.hits, before + 2)

    def test_state_survives_unrelated_reload(self):
        self.breaker_route("ab-keep", "/keep/*", {"break_response_code": 503, "max_breaker_sec": 300})
        self.fail_until_open("/keep/x", 3)  # APISIX's defaults: [500], 3 failures
        self.assert_open("/keep/x", 503)
        n = self.gw.logs().count("configuration applied")
        code, body = self.gw.admin("PUT", f"{ADMIN}/routes/ab-unrelated",
                                   {"uri": "/unrelated", "upstream": {"nodes": {self.up.addr: 1}}})
        self.assertIn(code, (200, 201), body)
        self.gw.wait_log("configuration applied", count=n + 1)
        self.assert_open("/keep/x", 503)

    def test_bad_config_rejected_with_apisix_messages(self):
        prefix = "failed to check the configuration of plugin api-breaker err: "
        cases = [
            ({}, 'property "break_response_code" is required'),
            ({"break_response_code": 199}, 'property "break_response_code" validation failed: expected 199 to be at least 200'),
            ({"break_response_code": 502, "max_breaker_sec": 2},
             'property "max_breaker_sec" validation failed: expected 2 to be at least 3'),
            ({"break_response_code": 500, "unhealthy": {"http_statuses": [500, 503], "failures": 3},
              "healthy": {"http_statuses": [206, 206], "successes": 3}},
             'property "healthy" validation failed: property "http_statuses" validation failed: '
             'expected unique items but items 1 and 2 are equal'),
            ({"break_response_code": 500, "unhealthy": {"http_statuses": [404]}},
             'property "unhealthy" validation failed: property "http_statuses" validation failed: '
             'failed to validate item 1: expected 404 to be at least 500'),
            ({"break_response_code": 500, "break_response_headers": [{"key": "X"}]},
             'property "break_response_headers" validation failed: failed to validate item 1: '
             'property "value" is required'),
        ]
        for conf, msg in cases:
            with self.subTest(conf=conf):
                code, body = self.gw.admin("PUT", f"{ADMIN}/routes/ab-bad",
                                           {"uri": "/bad", "plugins": {"api-breaker": conf},
                                            "upstream": {"nodes": {self.up.addr: 1}}})
                self.assertEqual(code, 400, body)
                self.assertEqual(body, {"error_msg": prefix + msg})
        self.assertIsNone(self.etcd_srv.get("/apisix/routes/ab-bad"))


if __name__ == "__main__":
    unittest.main()
