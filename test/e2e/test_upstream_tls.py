"""Upstream TLS against the real binary: `scheme: https` upstreams with and
without verification, the SNI each pass_host mode sends, upstream mTLS
(tls.client_cert and tls.client_cert_id), TLS-aware keep-alive pooling with
session reuse, and active health checks over TLS. The origin is a Python ssl
server in this process (harness.LoopbackServer) that reports what it saw;
certificates come from pki.py."""
import json
import shutil
import ssl
import tempfile
import threading
import time
import unittest

from harness import GatewayTest, LoopbackServer, wait_status
from pki import Pki


class TlsOrigin(LoopbackServer):
    """An HTTPS origin. Every response is JSON naming the connection, the SNI
    the client sent, the Host header, the client certificate's CN and
    whether the TLS session was resumed. `health_status` answers /health."""

    def __init__(self, cert, key, client_ca=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca)
        self.ctx.sni_callback = self._sni
        self.seen = []  # (connection index, sni, host, path)
        self.health_status = 200
        self.health_probes = 0
        self.handshake_errors = []  # what failed handshakes said (e.g. the client's alert)
        self.stray_sent = threading.Event()
        super().__init__()

    @staticmethod
    def _sni(sock, name, ctx):
        sock.sni = name

    def serve(self, conn, index):
        try:
            s = self.ctx.wrap_socket(conn, server_side=True)
        except ssl.SSLError as e:
            with self.lock:
                self.handshake_errors.append(str(e))
            return
        with s:
            self._exchange(s, index)

    def _exchange(self, s, index):
        cert = s.getpeercert()
        cn = None
        if cert:
            cn = dict(x[0] for x in cert["subject"]).get("commonName")
        sni = getattr(s, "sni", None)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = s.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, version = lines[0].split(" ")
            headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
            host = headers.get("host")
            with self.lock:
                self.seen.append((index, sni, host, path))
            status = 200
            if path == "/health":
                status = self.health_status
                with self.lock:
                    self.health_probes += 1
            body = json.dumps({"conn": index, "sni": sni, "host": host, "cn": cn, "path": path,
                               "reused": s.session_reused, "version": s.version()}).encode()
            s.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                      .encode() + body)
            if path == "/then-stray":
                # A second response nobody asked for, once the first is idle in the pool.
                time.sleep(0.3)
                stray = b'{"path": "STRAY"}'
                s.sendall(b"HTTP/1.1 200 X\r\nContent-Length: %d\r\n\r\n" % len(stray) + stray)
                self.stray_sent.set()
            if version == "HTTP/1.0":
                return


def up(origin, path="/", **kw):
    u = {"scheme": "https", "nodes": {origin.addr: 1}}
    u.update(kw)
    return u


class UpstreamTlsTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="holdfast-pki-")
        cls.pki = Pki(cls.dir)
        cls.server = cls.pki.leaf("origin", ["rewrite.test", "client.test", "localhost", "a.test", "b.test"])
        cls.client = cls.pki.leaf("gateway-client", ["gateway-client"], client=True)
        cls.other_dir = tempfile.mkdtemp(prefix="holdfast-pki-other-")
        cls.other = Pki(cls.other_dir)  # a CA that signed nothing the origin shows
        for name, pem in (("origin.pem", cls.server[0]), ("origin.key.pem", cls.server[1])):
            with open(f"{cls.dir}/{name}", "w") as f:
                f.write(pem)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)
        shutil.rmtree(cls.other_dir, True)

    def origin(self, client_ca=None):
        o = TlsOrigin(f"{self.dir}/origin.pem", f"{self.dir}/origin.key.pem", client_ca)
        self._procs.append(o)
        return o

    def routes(self, *routes, ssls=None, config=None):
        res = {"routes": [{"id": f"r{i}", "uri": uri, "upstream": u} for i, (uri, u) in enumerate(routes)]}
        if ssls:
            res["ssls"] = ssls
        return self.gateway(res, config=config)

    def wait_unknown_ca_alert(self, o, timeout=5):
        """The origin's handshake thread records the gateway's unknown_ca alert
        on its own schedule, possibly after the gateway has logged its side:
        wait for it rather than read the list at once (that raced, 1 run in ~20)."""
        deadline = time.monotonic() + timeout
        while True:
            with o.lock:
                errors = list(o.handshake_errors)
            if any("UNKNOWN_CA" in e.upper() for e in errors) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        self.assertTrue(any("UNKNOWN_CA" in e.upper() for e in errors), errors)

    def test_https_upstream_without_verification(self):
        o = self.origin()
        gw = self.routes(("/*", up(o)))  # the origin's CA is unknown to the gateway: verify is off by default
        r = wait_status(gw, "/x", 200)
        body = r.json()
        self.assertIn(body["version"], ("TLSv1.2", "TLSv1.3"))
        self.assertEqual(body["host"], f"127.0.0.1:{gw.port}")

    def test_verify_with_the_configured_ca(self):
        o = self.origin()
        ok = up(o, pass_host="rewrite", upstream_host="rewrite.test", tls={"verify": True})
        wrong_name = up(o, pass_host="rewrite", upstream_host="elsewhere.test", tls={"verify": True})
        gw = self.routes(("/ok", ok), ("/wrong-name", wrong_name),
                         config={"apisix": {"ssl": {"ssl_trusted_certificate": self.pki.ca_crt}}})
        self.assertEqual(wait_status(gw, "/ok", 200).json()["sni"], "rewrite.test")
        self.assertEqual(gw.get("/wrong-name").status, 502)
        gw.wait_log("certificate verify failed")

    def test_verify_with_a_wrong_ca_fails(self):
        o = self.origin()
        gw = self.routes(("/*", up(o, pass_host="rewrite", upstream_host="rewrite.test", tls={"verify": True})),
                         config={"apisix": {"ssl": {"ssl_trusted_certificate": self.other.ca_crt}}})
        self.assertEqual(gw.get("/x").status, 502)
        gw.wait_log("certificate verify failed")
        self.wait_unknown_ca_alert(o)
        with o.lock:
            self.assertEqual(o.seen, [])  # no request went out on an unverified connection

    def test_sni_follows_the_upstream_host(self):
        o = self.origin()
        gw = self.routes(("/rewrite", up(o, pass_host="rewrite", upstream_host="rewrite.test:8443")),
                         ("/node", {"scheme": "https", "pass_host": "node", "nodes": {f"localhost:{o.port}": 1}}),
                         ("/ip", up(o, pass_host="node")),
                         ("/pass", up(o)))
        self.assertEqual(wait_status(gw, "/rewrite", 200).json()["sni"], "rewrite.test")
        self.assertEqual(gw.get("/node").json()["sni"], "localhost")
        self.assertIsNone(gw.get("/ip").json()["sni"])  # no SNI for an IP literal
        body = gw.get("/pass", headers={"Host": "Client.Test:9080"}).json()
        self.assertEqual(body["sni"], "client.test")
        self.assertEqual(body["host"], "Client.Test:9080")

    def test_client_certificate(self):
        o = self.origin(client_ca=self.pki.ca_crt)
        cert, key = self.client
        gw = self.routes(("/pem", up(o, tls={"client_cert": cert, "client_key": key})),
                         ("/id", up(o, tls={"client_cert_id": "client1"})),
                         ("/none", up(o)),
                         ssls=[{"id": "client1", "type": "client", "cert": cert, "key": key}])
        self.assertEqual(wait_status(gw, "/pem", 200).json()["cn"], "gateway-client")
        self.assertEqual(gw.get("/id").json()["cn"], "gateway-client")
        self.assertEqual(gw.get("/none").status, 502)

    def test_client_key_encrypted_with_the_keyring(self):
        o = self.origin(client_ca=self.pki.ca_crt)
        cert, key = self.client
        keyring = "edd1c9f0985e76a2"
        import base64
        import subprocess
        # AES-128-CBC with the key as IV, base64 (APISIX data encryption).
        enc = subprocess.run(["openssl", "enc", "-aes-128-cbc", "-K", keyring.encode().hex(), "-iv",
                              keyring.encode().hex()], input=key.encode(), capture_output=True, check=True).stdout
        gw = self.routes(("/*", up(o, tls={"client_cert": cert, "client_key": base64.b64encode(enc).decode()})),
                         config={"apisix": {"data_encryption": {"enable_encrypt_fields": True, "keyring": [keyring]}}})
        self.assertEqual(wait_status(gw, "/x", 200).json()["cn"], "gateway-client")

    def test_pooled_connections_are_kept_apart_by_sni(self):
        o = self.origin()
        gw = self.routes(("/a", up(o, pass_host="rewrite", upstream_host="a.test")),
                         ("/b", up(o, pass_host="rewrite", upstream_host="b.test")))
        for _ in range(3):
            self.assertEqual(gw.get("/a").json()["sni"], "a.test")
            self.assertEqual(gw.get("/b").json()["sni"], "b.test")
        with o.lock:
            seen = list(o.seen)
        by_conn = {}
        for index, sni, host, _ in seen:
            by_conn.setdefault(index, set()).add((sni, host))
        # Every connection carried one SNI and only its own Host, and the
        # pool reused them (two connections for six requests).
        self.assertEqual(sorted(by_conn.values(), key=str), [{("a.test", "a.test")}, {("b.test", "b.test")}])

    def test_stray_bytes_on_an_idle_pooled_tls_connection_close_it(self):
        # As for plain TCP (test_edge IdlePoolTest): a TLS record arriving on an
        # idle pooled connection means it is out of step; the next request must
        # get its own response on another connection.
        o = self.origin()
        gw = self.routes(("/*", up(o)))
        first = wait_status(gw, "/then-stray", 200).json()
        self.assertTrue(o.stray_sent.wait(5))
        time.sleep(0.1)  # the stray record reaches the gateway's socket
        conns = []
        for path in ("/second", "/third"):
            r = gw.get(path)
            self.assertEqual(r.status, 200)
            body = r.json()
            self.assertEqual(body["path"], path, "one client got another exchange's response")
            conns.append(body["conn"])
        # The pool is in use (so the first connection would have been reused),
        # and the connection that saw the stray record is not.
        self.assertEqual(conns[0], conns[1])
        self.assertNotEqual(conns[0], first["conn"])

    def test_new_connections_resume_the_session(self):
        o = self.origin()
        gw = self.routes(("/*", up(o, keepalive_pool={"size": 1, "requests": 1})))  # a new connection per request
        first = wait_status(gw, "/x", 200).json()
        second = gw.get("/x").json()
        self.assertNotEqual(first["conn"], second["conn"])
        self.assertFalse(first["reused"])
        self.assertTrue(second["reused"])

    def test_active_health_check_over_tls(self):
        o = self.origin()
        checks = {"active": {"type": "https", "http_path": "/health", "host": "rewrite.test",
                             "https_verify_certificate": False,
                             "healthy": {"interval": 1, "successes": 1},
                             "unhealthy": {"interval": 1, "http_failures": 1}}}
        gw = self.routes(("/*", up(o, checks=checks)))
        deadline = time.time() + 5
        while time.time() < deadline:
            with o.lock:
                probes = [s for s in o.seen if s[3] == "/health"]
            if probes:
                break
            time.sleep(0.05)
        self.assertTrue(probes, "no health probe arrived over TLS")
        self.assertEqual(probes[0][1], "rewrite.test")  # the check's host as SNI
        o.health_status = 500
        gw.wait_log("marked unhealthy (http failures)", timeout=5)
        o.health_status = 200
        gw.wait_log("is healthy again", timeout=5)

    def test_health_check_verifies_by_default(self):
        o = self.origin()
        checks = {"active": {"type": "https", "http_path": "/health", "host": "rewrite.test",
                             "unhealthy": {"interval": 1, "tcp_failures": 1}}}
        gw = self.routes(("/*", up(o, checks=checks)))  # unknown CA: https_verify_certificate (default true) fails
        gw.wait_log("marked unhealthy (tcp failures)", timeout=5)
        self.wait_unknown_ca_alert(o)  # the probe spoke TLS and refused the certificate
        with o.lock:
            self.assertEqual([s for s in o.seen if s[3] == "/health"], [])


if __name__ == "__main__":
    unittest.main()
