"""Downstream TLS against the real binary: certificates from `ssls` chosen
by SNI with APISIX's rules, ECDSA/RSA by what the client supports, protocol
limits, hot certificate changes, and the pipeline unchanged beneath TLS.
Certificates are made by the tests with the openssl command (pki.py); the
clients are Python's ssl module (OpenSSL), curl and openssl s_client."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import GatewayTest
from pki import Pki, SniConnection as _SniConnection, served_certificate


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
        return served_certificate(gw.tls_port, sni, ctx or self.client_ctx())

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

    def test_hot_certificate_swap_under_load_fails_no_request(self):
        # Keep-alive clients and new-connection clients run throughout while the
        # SSL object for a.test is replaced again and again: no request fails, no
        # open connection is dropped, and new handshakes present the new certificate.
        up = self.upstream()
        certs = [self.a_ec, self.b2, self.pki.leaf("c3", ["a.test"], "ec"), self.pki.leaf("c4", ["a.test"], "rsa")]
        res = {"routes": [route("/*", {up.addr: 1})], "ssls": [self.ssl_obj("a", ["a.test"], [certs[0]])]}
        gw = self.gateway(res, workers=2)
        stop = threading.Event()
        failures, done = [], [0]
        lock = threading.Lock()

        def keep_alive(n):
            conn = _SniConnection(gw.tls_port, "a.test", self.client_ctx())
            first_sock = None
            try:
                while not stop.is_set():
                    conn.request("GET", f"/ka{n}", headers={"Host": "a.test"})
                    r = conn.getresponse()
                    body = r.read()
                    if first_sock is None:
                        first_sock = conn.sock
                    if r.status != 200 or json.loads(body)["path"] != f"/ka{n}":
                        raise AssertionError(f"keep-alive {n}: {r.status} {body[:100]}")
                    if conn.sock is not first_sock:
                        raise AssertionError(f"keep-alive {n}: the connection was dropped")
                    with lock:
                        done[0] += 1
            except Exception as e:  # any failure is the test's failure
                with lock:
                    failures.append(f"keep-alive {n}: {e!r}")
            finally:
                conn.close()

        def new_connections(n):
            try:
                while not stop.is_set():
                    conn = _SniConnection(gw.tls_port, "a.test", self.client_ctx())
                    conn.request("GET", f"/new{n}", headers={"Host": "a.test", "Connection": "close"})
                    r = conn.getresponse()
                    body = r.read()
                    conn.close()
                    if r.status != 200 or json.loads(body)["path"] != f"/new{n}":
                        raise AssertionError(f"new {n}: {r.status} {body[:100]}")
                    with lock:
                        done[0] += 1
            except Exception as e:
                with lock:
                    failures.append(f"new {n}: {e!r}")

        threads = [threading.Thread(target=keep_alive, args=(i,)) for i in range(4)]
        threads += [threading.Thread(target=new_connections, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(1, 9):
                cert = certs[i % len(certs)]
                res["ssls"] = [self.ssl_obj("a", ["a.test"], [cert])]
                gw.write(res)
                want = ssl.PEM_cert_to_DER_cert(cert[0])
                deadline, in_a_row = time.time() + 10, 0
                # Both workers take the new snapshot: handshakes (spread over
                # them) settle on the new certificate.
                while in_a_row < 6:
                    self.assertLess(time.time(), deadline, f"swap {i}: the new certificate was not served")
                    in_a_row = in_a_row + 1 if self.handshake(gw, "a.test")[0] == want else 0
                self.assertFalse(failures, failures)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertEqual(failures, [])
        self.assertGreater(done[0], 50)

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


if __name__ == "__main__":
    unittest.main()
