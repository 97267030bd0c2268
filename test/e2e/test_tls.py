"""Downstream TLS against the real binary: certificates from `ssls` chosen
by SNI with APISIX's rules, ECDSA/RSA by what the client supports, protocol
limits, hot certificate changes, and the pipeline unchanged beneath TLS.
Certificates are made by the tests with the openssl command (pki.py); the
clients are Python's ssl module (OpenSSL), curl and openssl s_client."""
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import GatewayTest
from pki import Pki


def route(uri, nodes, **kw):
    r = {"id": kw.pop("id", "r1"), "uri": uri, "upstream": {"nodes": nodes}}
    r.update(kw)
    return r


class TlsTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="holdfast-pki-")
        cls.pki = Pki(cls.dir)
        cls.a_ec = cls.pki.leaf("a-ec", ["a.test"], "ec")
        cls.a_rsa = cls.pki.leaf("a-rsa", ["a.test"], "rsa")
        cls.wild = cls.pki.leaf("wild", ["*.example.test"], "ec")
        cls.b2 = cls.pki.leaf("b2", ["a.test"], "ec")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)

    def client_ctx(self, **kw):
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def handshake(self, gw, sni, ctx=None):
        """The server's leaf certificate (DER) for a handshake naming `sni`."""
        ctx = ctx or self.client_ctx()
        with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as s:
                return s.getpeercert(binary_form=True), s.version()

    def ssl_obj(self, id, snis, pairs, **kw):
        o = {"id": id, "snis": snis, "cert": pairs[0][0], "key": pairs[0][1]}
        if len(pairs) > 1:
            o["certs"] = [p[0] for p in pairs[1:]]
            o["keys"] = [p[1] for p in pairs[1:]]
        o.update(kw)
        return o

    def test_https_route_end_to_end(self):
        up = self.upstream("alpha")
        gw = self.gateway({"routes": [route("/hello", {up.addr: 1})], "ssls": [self.ssl_obj("a", ["a.test"], [self.a_ec])]})
        conn = _SniConnection(gw.tls_port, "a.test", self.client_ctx())
        for i in range(3):  # keep-alive over TLS
            conn.request("GET", "/hello?x=1", headers={"Host": "a.test"})
            r = conn.getresponse()
            body = json.loads(r.read())
            self.assertEqual(r.status, 200)
            self.assertEqual(body["server"], "alpha")
            self.assertEqual(body["path"], "/hello?x=1")
            self.assertEqual(body["headers"]["x-forwarded-proto"], "https")
            self.assertEqual(body["headers"]["x-forwarded-port"], str(gw.tls_port))
        conn.close()
        # The plain listener is still plain.
        self.assertEqual(gw.get("/hello").json()["headers"]["x-forwarded-proto"], "http")
        # curl, verifying the chain against the test CA.
        out = subprocess.run(["curl", "-sS", "--cacert", self.pki.ca_crt, "--resolve", f"a.test:{gw.tls_port}:127.0.0.1",
                              f"https://a.test:{gw.tls_port}/hello"], capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["server"], "alpha")

    def test_unknown_sni_and_missing_sni_abort_the_handshake(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})], "ssls": [self.ssl_obj("a", ["a.test"], [self.a_ec])]})
        with self.assertRaises(ssl.SSLError):
            self.handshake(gw, "b.test", self.client_ctx(check_hostname=False))
        ctx = self.client_ctx(check_hostname=False)
        with self.assertRaises(ssl.SSLError):
            self.handshake(gw, None, ctx)
        # The listener survives both.
        der, _ = self.handshake(gw, "a.test")
        self.assertTrue(der)

    def test_fallback_sni_applies_only_without_sni(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})], "ssls": [self.ssl_obj("a", ["a.test"], [self.a_ec])]},
                          config={"apisix": {"ssl": {"fallback_sni": "A.test."}}})
        der, _ = self.handshake(gw, None, self.client_ctx(check_hostname=False))
        self.assertEqual(der, ssl.PEM_cert_to_DER_cert(self.a_ec[0]))
        with self.assertRaises(ssl.SSLError):
            self.handshake(gw, "unknown.test", self.client_ctx(check_hostname=False))

    def test_wildcard_covers_exactly_one_label(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})],
                           "ssls": [self.ssl_obj("w", ["*.example.test"], [self.wild])]})
        der, _ = self.handshake(gw, "api.example.test")
        self.assertEqual(der, ssl.PEM_cert_to_DER_cert(self.wild[0]))
        ctx = self.client_ctx(check_hostname=False)
        for name in ("a.b.example.test", "example.test"):
            with self.assertRaises(ssl.SSLError, msg=name):
                self.handshake(gw, name, ctx)

    def test_ecdsa_or_rsa_by_what_the_client_supports(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})],
                           "ssls": [self.ssl_obj("a", ["a.test"], [self.a_ec, self.a_rsa])]})

        def served(sigalgs):
            out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{gw.tls_port}", "-servername", "a.test",
                                  "-tls1_2", "-sigalgs", sigalgs], input="", capture_output=True, text=True, timeout=10)
            return out.stdout

        self.assertIn("Peer signature type: ECDSA", served("ECDSA+SHA256"))
        self.assertIn("Peer signature type: RSA", served("RSA+SHA256:RSA-PSS+SHA256"))

    def test_object_protocols_limit_the_handshake(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})],
                           "ssls": [self.ssl_obj("a", ["a.test"], [self.a_ec], ssl_protocols=["TLSv1.3"])]})
        _, version = self.handshake(gw, "a.test")
        self.assertEqual(version, "TLSv1.3")
        ctx = self.client_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with self.assertRaises(ssl.SSLError):
            self.handshake(gw, "a.test", ctx)

    def test_certificate_change_applies_without_dropping_open_connections(self):
        up = self.upstream()
        res = {"routes": [route("/*", {up.addr: 1})], "ssls": [self.ssl_obj("a", ["a.test"], [self.a_ec])]}
        gw = self.gateway(res)
        conn = _SniConnection(gw.tls_port, "a.test", self.client_ctx())
        conn.request("GET", "/one")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        r.read()
        res["ssls"] = [self.ssl_obj("a", ["a.test"], [self.b2])]
        gw.write(res)
        want = ssl.PEM_cert_to_DER_cert(self.b2[0])
        deadline = time.time() + 10
        while self.handshake(gw, "a.test")[0] != want:
            self.assertLess(time.time(), deadline, "the new certificate was not served")
            time.sleep(0.1)
        conn.request("GET", "/two")  # the connection opened before the change still works
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.read())["path"], "/two")
        conn.close()

    def test_stalled_handshake_is_closed_by_client_header_timeout(self):
        up = self.upstream()
        gw = self.gateway({"routes": [route("/*", {up.addr: 1})], "ssls": [self.ssl_obj("a", ["a.test"], [self.a_ec])]},
                          config={"nginx_config": {"http": {"client_header_timeout": "1s"}}})
        s = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5)
        s.sendall(b"\x16\x03\x01")  # the start of a record, then nothing
        t0 = time.time()
        self.assertEqual(s.recv(100), b"")  # closed by the server
        self.assertLess(time.time() - t0, 4)
        s.close()


class _SniConnection(http.client.HTTPConnection):
    """HTTPS with an explicit SNI (http.client takes SNI from the host it connects to)."""

    def __init__(self, port, sni, ctx):
        super().__init__("127.0.0.1", port, timeout=5)
        self._sni, self._ctx = sni, ctx

    def connect(self):
        super().connect()
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._sni)


if __name__ == "__main__":
    unittest.main()
