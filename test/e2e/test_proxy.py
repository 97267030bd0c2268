"""Proxying over real sockets: one route end to end, forwarded headers,
hop-by-hop removal, keep-alive, streaming bodies, retries and timeouts."""
import http.client
import json
import os
import random
import socket
import threading
import time
import unittest

from harness import GatewayTest, free_port


def route(uri, nodes, **kw):
    r = {"id": kw.pop("id", "r1"), "uri": uri, "upstream": {"nodes": nodes, **kw.pop("upstream", {})}}
    r.update(kw)
    return r


class ProxyTest(GatewayTest):
    def test_one_route_end_to_end(self):
        up = self.upstream("alpha")
        gw = self.gateway({"routes": [route("/hello", {up.addr: 1})]})
        r = gw.get("/hello?x=1", headers={"Host": "example.com", "X-Custom": "yes"})
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body["server"], "alpha")
        self.assertEqual(body["path"], "/hello?x=1")
        self.assertEqual(body["headers"]["host"], "example.com")  # pass_host: pass
        self.assertEqual(body["headers"]["x-custom"], "yes")
        self.assertEqual(body["headers"]["x-real-ip"], "127.0.0.1")
        self.assertEqual(body["headers"]["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(body["headers"]["x-forwarded-proto"], "http")
        self.assertEqual(body["headers"]["x-forwarded-host"], "example.com")
        self.assertEqual(body["headers"]["x-forwarded-port"], str(gw.port))
        self.assertEqual(r.headers["x-upstream"], "alpha")

    def test_no_route_is_404_with_apisix_body(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/hello", {up.addr: 1})]})
        r = gw.get("/other")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json(), {"error_msg": "404 Route Not Found"})

    def test_hop_by_hop_headers_removed_and_xff_appended(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})]})
        r = gw.get("/h", headers={"Connection": "X-Secret, keep-alive", "X-Secret": "1", "Keep-Alive": "timeout=5",
                                  "TE": "trailers", "Proxy-Connection": "x", "X-Forwarded-For": "10.0.0.1"})
        h = r.json()["headers"]
        for name in ("x-secret", "keep-alive", "te", "proxy-connection"):
            self.assertNotIn(name, h)
        self.assertEqual(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1")

    def test_keepalive_both_sides(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})]})
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        ports = set()
        for i in range(20):
            conn.request("GET", f"/k{i}")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            json.loads(r.read())
            ports.add(conn.sock.getsockname()[1])
        self.assertEqual(len(ports), 1, "client connection was not kept alive")
        conn.close()

    def test_pass_host_node_and_rewrite(self):
        up = self.upstream()
        gw = self.gateway({"routes": [
            route("/node", {up.addr: 1}, id="a", upstream={"pass_host": "node"}),
            route("/rewrite", {up.addr: 1}, id="b", upstream={"pass_host": "rewrite", "upstream_host": "api.internal"}),
        ]})
        self.assertEqual(gw.get("/node").json()["headers"]["host"], up.addr)
        self.assertEqual(gw.get("/rewrite").json()["headers"]["host"], "api.internal")

    def test_pass_host_node_drops_only_the_schemes_default_port(self):
        # APISIX's balancer (parse_server_for_upstream_host) leaves the port
        # out of the node's Host only when it is the default port of the
        # upstream's scheme: 80 for http, so a plain-http node on 443 keeps
        # ":443". A random loopback address keeps ports 80/443 free of others.
        host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        for port in (80, 443):
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError as e:
                    self.skipTest(f"cannot listen on {host}:{port}: {e}")
            self.upstream(f"p{port}", port=port, host=host)
        gw = self.gateway({"routes": [
            route("/p80", {f"{host}:80": 1}, id="a", upstream={"pass_host": "node"}),
            route("/p443", {f"{host}:443": 1}, id="b", upstream={"pass_host": "node"}),
        ]})
        r = gw.get("/p80")
        self.assertEqual((r.json()["server"], r.json()["headers"]["host"]), ("p80", host))
        r = gw.get("/p443")
        self.assertEqual((r.json()["server"], r.json()["headers"]["host"]), ("p443", f"{host}:443"))

    def test_post_body_forwarded(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/sink", {up.addr: 1})]})
        data = os.urandom(300000)
        r = gw.request("POST", "/sink", body=data)
        import hashlib
        self.assertEqual(r.json()["body_size"], len(data))
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(data).hexdigest())

    def test_retry_to_other_node_when_one_is_down(self):
        up = self.upstream("alive")
        dead = free_port()  # nothing listens here
        gw = self.gateway({"routes": [route("/*", {up.addr: 1, f"127.0.0.1:{dead}": 1})]})
        for i in range(10):
            r = gw.get(f"/r{i}")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["server"], "alive")

    def test_all_nodes_down_is_502(self):
        dead = free_port()
        gw = self.gateway({"routes": [route("/*", {f"127.0.0.1:{dead}": 1})]})
        self.assertEqual(gw.get("/x").status, 502)

    def test_slow_upstream_is_504_after_read_timeout(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1}, timeout={"connect": 1, "send": 1, "read": 0.5})]})
        t0 = time.time()
        r = gw.get("/delay/3000")
        took = time.time() - t0
        self.assertEqual(r.status, 504)
        self.assertGreaterEqual(took, 0.45)
        self.assertLess(took, 2.5)
        # a fast request on the same route still works
        self.assertEqual(gw.get("/delay/10").status, 200)

    def test_upstream_closing_without_length(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})]})
        r = gw.get("/close")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"closed-body")

    def test_missing_upstream_is_503(self):
        gw = self.gateway({"routes": [{"id": "1", "uri": "/x", "plugins": {"request-id": {}}}]})
        r = gw.get("/x")
        self.assertEqual(r.status, 503)
        self.assertIn("missing upstream configuration", r.json()["error_msg"])

    def test_sigterm_drains_in_flight_request(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})]})
        result = {}

        def slow():
            result["r"] = gw.get("/delay/800")

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        rc = gw.stop()
        t.join()
        self.assertEqual(rc, 0)
        self.assertEqual(result["r"].status, 200)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", gw.port), timeout=0.5)

    def test_sigterm_with_every_component_busy_stops_cleanly(self):
        """Item 8: a SIGTERM while the status endpoint holds a keep-alive
        connection, an active health check probes, a client connection idles
        and a pooled upstream connection waits. Every component stops and the
        process tears down with nothing pending (exit 0 after "holdfast
        stopped", not the watchdog's forced exit); the sanitizer run checks
        the teardown itself, LeakSanitizer included."""
        up = self.upstream("h", mode="health=200")
        status_port = free_port()
        checks = {"active": {"http_path": "/health", "healthy": {"interval": 1}, "unhealthy": {"interval": 1}}}
        gw = self.gateway({"routes": [route("/*", {up.addr: 1}, upstream={"checks": checks})]},
                          config={"apisix": {"status": {"ip": "127.0.0.1", "port": status_port}}})
        status = http.client.HTTPConnection("127.0.0.1", status_port, timeout=5)
        status.request("GET", "/status")
        sr = status.getresponse()
        sr.read()
        self.assertEqual(sr.status, 200)
        client = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        client.request("GET", "/pooled")
        r = client.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        rc = gw.stop()
        status.close()
        client.close()
        self.assertEqual(rc, 0)
        logs = gw.logs()
        self.assertIn("holdfast stopped", logs)
        self.assertNotIn("without cleanup", logs)


if __name__ == "__main__":
    unittest.main()
