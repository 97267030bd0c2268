"""forward-auth (issue #12 item 2) through the real binary: a real etcd, a
traditional node configured through its Admin API, a real upstream and a
real auth service (a Python HTTP server started here), plus scripted hostile
auth services on raw sockets.

APISIX behaviour followed (apisix/plugins/forward-auth.lua,
t/plugin/forward-auth.t): the auth service gets X-Forwarded-Proto, -Method,
-Host, -Uri and -For of this request (never the client's own), then
extra_headers ($vars resolved), then the client's request_headers; a 2xx
answer copies upstream_headers into the request (a header the service did
not send is removed), any other answer goes back to the client with its
status, body and client_headers; no answer is status_on_error (403), or a
pass with allow_degradation. Holdfast bounds the auth answer's body at
1 MiB (beyond: no answer).
"""
import http.client
import json
import threading
import unittest

from harness import Etcd, Gateway, LoopbackServer, RecordingServer, Upstream, free_port, wait_status

ADMIN = "/apisix/admin"


class AuthService(RecordingServer):
    """A real auth service. By the request's Authorization header:
    "allow" -> 200 with X-User-ID; "deny" -> 401 with Location, X-Reason and
    a body; "hang" -> never answers in time; anything else -> 200. Every
    request it gets is recorded (method, path, headers, body)."""

    def answer(self, handler, record):
        auth = handler.headers.get("Authorization", "")
        if auth == "hang":
            self.release.wait(30)
            return
        if auth == "deny" or (handler.command == "POST" and b"deny" in record["body"]):
            self.reply(handler, 401, b"go away",
                       [("Location", "http://example.com/login"), ("X-Reason", "bad token")])
            return
        allow = auth == "allow" or handler.command == "POST"
        self.reply(handler, 200, headers=[("X-User-ID", "user-42")] if allow else [])

    def url(self, path="/auth"):
        return f"http://127.0.0.1:{self.port}{path}"


class Hostile(LoopbackServer):
    """An auth service that misbehaves: `garbage` answers bytes that are not
    HTTP, `huge` a 200 whose body is 8 MiB, `silent` reads the request and
    never answers (until stopped), `interim` sends 1xx answers forever."""

    def __init__(self, mode):
        self.mode = mode
        self.stopped = threading.Event()
        super().__init__()

    def serve(self, conn, index):
        conn.recv(65536)
        if self.mode == "garbage":
            conn.sendall(b"\x00\x01NOT HTTP AT ALL\r\n\r\n" * 10)
        elif self.mode in ("huge", "huge-deny"):
            status = b"401 Unauthorized" if self.mode == "huge-deny" else b"200 OK"
            conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 8388608\r\n\r\n")
            chunk = b"x" * 65536
            for _ in range(128):
                conn.sendall(chunk)
        elif self.mode == "silent":
            self.stopped.wait(60)
        elif self.mode == "interim":  # 1xx answers, forever
            while not self.stopped.wait(0.05):
                conn.sendall(b"HTTP/1.1 102 Processing\r\n\r\n")

    def stop(self):
        self.stopped.set()
        super().stop()


class ForwardAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.etcd = Etcd()
        cls.up = Upstream("u1")
        cls.auth = AuthService()
        cfg = {"apisix": {"status": {"ip": "127.0.0.1", "port": free_port()}},
               "deployment": {"role": "traditional", "role_traditional": {"config_provider": "etcd"},
                              "etcd": {"host": [cls.etcd.url], "prefix": "/apisix", "timeout": 3},
                              "admin": {"admin_listen": {"ip": "127.0.0.1", "port": free_port()},
                                        "admin_key": [{"name": "admin", "key": "admin-key", "role": "admin"}]}}}
        cls.gw = Gateway(config=cfg, provider="etcd")

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.auth.stop()
        cls.up.stop()
        cls.etcd.destroy()

    def route(self, rid, conf, uri=None):
        """Puts a route /<rid> and /<rid>/* with forward-auth `conf`. Not
        /<rid>*: /fa1* would also take /fa10, and a test waiting for its own
        route could be answered by another test's."""
        where = {"uri": uri} if uri else {"uris": [f"/{rid}", f"/{rid}/*"]}
        code, body = self.gw.admin("PUT", f"{ADMIN}/routes/{rid}", {
            **where, "plugins": {"forward-auth": conf}, "upstream": {"nodes": {self.up.addr: 1}}})
        self.assertIn(code, (200, 201), body)
        return code

    def wait_route(self, path, want, headers=None):
        return wait_status(self.gw, path, want, timeout=10, headers=headers)

    def alive(self):
        self.assertIsNone(self.gw.proc.poll(), "holdfast exited")

    def test_allow_copies_upstream_headers_and_sends_forwarded(self):
        self.route("fa1", {"uri": self.auth.url(), "request_headers": ["Authorization"],
                           "upstream_headers": ["X-User-ID"]})
        r = self.wait_route("/fa1/x?q=1", 200, headers={"Authorization": "allow", "Host": "Example.COM:8080",
                                                         "X-Forwarded-Host": "evil.example", "X-Real-IP": "10.1.2.3"})
        echo = r.json()
        self.assertEqual(echo["path"], "/fa1/x?q=1")
        self.assertEqual(echo["headers"].get("x-user-id"), "user-42")
        seen = self.auth.last()
        self.assertEqual(seen["method"], "GET")
        self.assertEqual(seen["path"], "/auth")
        h = seen["headers"]
        self.assertEqual(h["authorization"], "allow")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(h["x-forwarded-method"], "GET")
        self.assertEqual(h["x-forwarded-host"], "example.com")   # $host: lowercase, no port, not the client's
        self.assertEqual(h["x-forwarded-uri"], "/fa1/x?q=1")
        self.assertEqual(h["x-forwarded-for"], "10.1.2.3")       # the client address (real-ip from 127.0.0.1)
        self.assertNotIn("x-real-ip", h)                          # only what request_headers names

    def test_upstream_header_removed_when_auth_did_not_send_it(self):
        self.route("fa2", {"uri": self.auth.url(), "request_headers": ["Authorization"],
                           "upstream_headers": ["X-User-ID"]})
        r = self.wait_route("/fa2", 200, headers={"Authorization": "other", "X-User-ID": "admin"})
        self.assertNotIn("x-user-id", r.json()["headers"])  # a client cannot forge it

    def test_deny_passes_status_body_and_client_headers(self):
        self.route("fa3", {"uri": self.auth.url(), "request_headers": ["Authorization"],
                           "client_headers": ["Location"]})
        r = self.wait_route("/fa3", 401, headers={"Authorization": "deny"})
        self.assertEqual(r.body, b"go away")
        hdrs = r.headers
        self.assertEqual(hdrs.get("location"), "http://example.com/login")
        self.assertNotIn("x-reason", hdrs)  # not in client_headers
        # Without request_headers the service never sees Authorization.
        self.route("fa3b", {"uri": self.auth.url()})
        r = self.wait_route("/fa3b", 200, headers={"Authorization": "deny"})
        self.assertNotIn("authorization", self.auth.last()["headers"])

    def test_post_sends_client_body(self):
        self.route("fa4", {"uri": self.auth.url("/check"), "request_method": "POST",
                           "upstream_headers": ["X-User-ID"]})
        body = json.dumps({"token": "deny"}).encode()
        self.wait_route("/fa4", 200)  # a GET: an empty POST to the service, which allows it
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
        conn.request("POST", "/fa4", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        self.assertEqual(r.status, 401, r.read())
        self.assertEqual(self.auth.last()["body"], body)
        self.assertEqual(self.auth.last()["method"], "POST")
        conn.close()
        r = self.gw.request("POST", "/fa4", body=b'{"token":"fine"}', headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"].get("x-user-id"), "user-42")
        self.assertEqual(r.json()["body_size"], len(b'{"token":"fine"}'))  # the upstream still gets the body

    def test_extra_headers_resolve_vars(self):
        self.route("fa5", {"uri": self.auth.url(), "extra_headers": {"X-Tenant": "$arg_tenant", "X-Fixed": "abc"}})
        self.wait_route("/fa5?tenant=t-9", 200)
        h = self.auth.last()["headers"]
        self.assertEqual(h.get("x-tenant"), "t-9")
        self.assertEqual(h.get("x-fixed"), "abc")
        # A value that would inject a header is refused: no answer, 403.
        r = self.gw.get("/fa5?tenant=a%0d%0aX-Admin:%201")
        self.assertEqual(r.status, 403)
        # Even with allow_degradation: the client cannot choose "no answer"
        # and pass without the auth service.
        self.route("fa5d", {"uri": self.auth.url(), "extra_headers": {"X-Tenant": "$arg_tenant"},
                            "request_headers": ["Authorization"], "allow_degradation": True})
        self.wait_route("/fa5d?tenant=ok", 200)
        self.assertEqual(self.gw.get("/fa5d?tenant=ok", headers={"Authorization": "deny"}).status, 401)
        r = self.gw.get("/fa5d?tenant=a%0d%0aX-Admin:%201", headers={"Authorization": "deny"})
        self.assertEqual(r.status, 403)

    def test_large_deny_stays_a_deny(self):
        # A refusal whose body is over the 1 MiB bound is still a refusal
        # (its body dropped), not "no answer" that allow_degradation passes.
        h = Hostile("huge-deny")
        self.addCleanup(h.stop)
        self.route("fa14", {"uri": f"http://127.0.0.1:{h.port}/auth", "allow_degradation": True},
                   uri="/hostile/fa14")
        self.route("fa14ok", {"uri": self.auth.url()}, uri="/hostile/fa14ok")
        self.wait_route("/hostile/fa14ok", 200)
        self.assertEqual(self.gw.get("/hostile/fa14").status, 401)

    def test_timeout_status_on_error_and_degradation(self):
        self.route("fa6", {"uri": self.auth.url(), "request_headers": ["Authorization"], "timeout": 300})
        self.route("fa6e", {"uri": self.auth.url(), "request_headers": ["Authorization"], "timeout": 300,
                            "status_on_error": 503})
        self.route("fa6d", {"uri": self.auth.url(), "request_headers": ["Authorization"], "timeout": 300,
                            "allow_degradation": True})
        self.wait_route("/fa6", 200)
        self.wait_route("/fa6e", 200)
        self.wait_route("/fa6d", 200)
        self.assertEqual(self.gw.get("/fa6", headers={"Authorization": "hang"}).status, 403)
        self.assertEqual(self.gw.get("/fa6e", headers={"Authorization": "hang"}).status, 503)
        self.assertEqual(self.gw.get("/fa6d", headers={"Authorization": "hang"}).status, 200)
        self.assertIn("failed to process forward auth, err: timeout", self.gw.logs())

    def test_auth_service_down(self):
        port = free_port()  # nothing listens there
        self.route("fa7", {"uri": f"http://127.0.0.1:{port}/auth"})
        self.route("fa7d", {"uri": f"http://127.0.0.1:{port}/auth", "allow_degradation": True})
        self.wait_route("/fa7d", 200)
        self.wait_route("/fa7", 403)

    def check_hostile(self, mode, rid):
        h = Hostile(mode)
        self.addCleanup(h.stop)
        # Paths no other test's route prefix (/fa1*, ...) matches: the wait
        # below must see this test's routes applied, not an older route.
        self.route(rid, {"uri": f"http://127.0.0.1:{h.port}/auth", "timeout": 1000}, uri=f"/hostile/{rid}")
        self.route(rid + "ok", {"uri": self.auth.url()}, uri=f"/hostile/{rid}ok")
        self.wait_route(f"/hostile/{rid}ok", 200)
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=20)
        try:
            conn.request("GET", f"/hostile/{rid}")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 403, mode)
            sock = conn.sock
            self.assertIsNotNone(sock, "the client connection was closed")
            # The next request on the same client connection works.
            conn.request("GET", f"/hostile/{rid}ok")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            r.read()
            self.assertIs(conn.sock, sock)
        finally:
            conn.close()
        self.alive()

    def test_hostile_garbage(self):
        self.check_hostile("garbage", "fa8")

    def test_hostile_huge_body(self):
        self.check_hostile("huge", "fa9")
        self.assertIn("failed to process forward auth, err: response body too large", self.gw.logs())

    def test_hostile_silent(self):
        self.check_hostile("silent", "fa10")

    def test_hostile_endless_interim(self):
        self.check_hostile("interim", "fa13")

    def test_worker_not_blocked_while_waiting(self):
        # One worker: while a request waits for a hanging auth service, other
        # requests are served (the wait is the connection's, not the worker's).
        self.route("fa11", {"uri": self.auth.url(), "request_headers": ["Authorization"], "timeout": 5000})
        self.wait_route("/fa11", 200)
        before = len(self.auth.seen)
        done = {}

        def slow():
            done["r"] = self.gw.get("/fa11", headers={"Authorization": "hang"}, timeout=20)
        t = threading.Thread(target=slow)
        t.start()
        with self.auth.cond:
            self.assertTrue(self.auth.cond.wait_for(lambda: len(self.auth.seen) > before, 10))
        self.assertEqual(self.gw.get("/fa11", headers={"Authorization": "allow"}).status, 200)
        self.assertNotIn("r", done)  # the hanging one is still waiting
        t.join(20)
        self.assertEqual(done["r"].status, 403)

    def test_keepalive(self):
        # keepalive (the default): the auth service sees one connection for
        # consecutive requests; keepalive false: one per request.
        self.route("fa12", {"uri": self.auth.url()})
        self.route("fa12n", {"uri": self.auth.url(), "keepalive": False})
        self.wait_route("/fa12", 200)
        self.wait_route("/fa12n", 200)
        peers = []
        for path in ("/fa12", "/fa12", "/fa12n", "/fa12n"):
            self.assertEqual(self.gw.get(path).status, 200)
            peers.append(self.auth.last()["peer"])
        self.assertEqual(peers[0], peers[1])
        self.assertNotEqual(peers[2], peers[3])

    def test_schema(self):
        code, body = self.gw.admin("PUT", f"{ADMIN}/routes/bad", {
            "uri": "/bad", "plugins": {"forward-auth": {"request_method": "PUT", "uri": self.auth.url()}},
            "upstream": {"nodes": {self.up.addr: 1}}})
        self.assertEqual(code, 400, body)
        code, body = self.gw.admin("PUT", f"{ADMIN}/routes/bad", {
            "uri": "/bad", "plugins": {"forward-auth": {}}, "upstream": {"nodes": {self.up.addr: 1}}})
        self.assertEqual(code, 400, body)
        self.assertIn('property \\"uri\\" is required', json.dumps(body))


if __name__ == "__main__":
    unittest.main()
