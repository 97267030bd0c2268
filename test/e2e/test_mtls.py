"""Client certificates (an SSL object's `client`) against the real binary,
as APISIX: a required certificate fails the handshake, skip_mtls_uri_regex
moves the check to the request (400), the Host may not differ from the SNI
of a client-verified connection, and the $ssl_* variables reach plugins and
route `vars`. Also the X-Forwarded-* rules and the redirect plugin's
http_to_https port. Certificates come from pki.py (openssl CLI); clients are
Python's ssl module and curl."""
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

from harness import GatewayTest
from pki import Pki, SniConnection as _SniConnection

SSL_VARS = {"X-Verify": "$ssl_client_verify", "X-DN": "$ssl_client_s_dn", "X-Serial": "$ssl_client_serial",
            "X-SNI": "$ssl_server_name", "X-Scheme": "$scheme"}


def serial_of(cert_path):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", cert_path], capture_output=True, text=True,
                         check=True).stdout.strip()
    return out.split("=", 1)[1]


class MtlsTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="holdfast-mtls-")
        cls.pki = Pki(cls.dir)
        cls.server = cls.pki.leaf("server", ["mtls.test", "plain.test", "other.test", "m2.test"])
        cls.client = cls.pki.leaf("client", ["client.test"], client=True)
        cls.other_dir = tempfile.mkdtemp(prefix="holdfast-mtls-other-")
        cls.other = Pki(cls.other_dir)
        cls.stranger = cls.other.leaf("stranger", ["client.test"], client=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)
        shutil.rmtree(cls.other_dir, True)

    def ctx(self, cert=None, directory=None):
        c = ssl.create_default_context(cafile=self.pki.ca_crt)
        if cert:
            c.load_cert_chain(f"{directory or self.dir}/{cert}.crt", f"{directory or self.dir}/{cert}.key")
        return c

    def ssl_obj(self, id, snis, client=None):
        o = {"id": id, "snis": snis, "cert": self.server[0], "key": self.server[1]}
        if client is not None:
            o["client"] = client
        return o

    def request(self, gw, sni, path="/", host=None, ctx=None):
        conn = _SniConnection(gw.tls_port, sni, ctx or self.ctx())
        try:
            conn.request("GET", path, headers={"Host": host or sni})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def assertRefused(self, gw, sni, ctx, path="/"):
        # TLS 1.3 finishes the client's side of the handshake before the
        # server has checked the certificate: the refusal then arrives as an
        # alert (or a closed connection) on the first read.
        with self.assertRaises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            self.request(gw, sni, path, ctx=ctx)

    def gateway_with(self, ssls, routes=None, config=None):
        up = self.upstream("origin")
        routes = routes or [{"id": "r1", "uri": "/*", "upstream": {"nodes": {up.addr: 1}},
                             "plugins": {"proxy-rewrite": {"headers": {"set": SSL_VARS}}}}]
        return self.gateway({"routes": routes, "ssls": ssls}, config=config)

    def test_required_client_certificate(self):
        gw = self.gateway_with([self.ssl_obj("m", ["mtls.test"], {"ca": self.pki.ca_pem()})])
        # No certificate, or one from another CA: no request gets through.
        self.assertRefused(gw, "mtls.test", self.ctx())
        self.assertRefused(gw, "mtls.test", self.ctx("stranger", self.other_dir))
        # A certificate from the object's CA: served, with the variables.
        status, body = self.request(gw, "mtls.test", "/x", ctx=self.ctx("client"))
        self.assertEqual(status, 200, body)
        h = json.loads(body)["headers"]
        self.assertEqual(h["x-verify"], "SUCCESS")
        self.assertEqual(h["x-dn"], "CN=client.test")
        self.assertEqual(h["x-serial"], serial_of(f"{self.dir}/client.crt"))
        self.assertEqual(h["x-sni"], "mtls.test")
        self.assertEqual(h["x-scheme"], "https")
        self.assertEqual(h["x-forwarded-proto"], "https")
        # curl --cert, as an operator would check it.
        base = ["curl", "-sS", "--cacert", self.pki.ca_crt, "--resolve", f"mtls.test:{gw.tls_port}:127.0.0.1"]
        url = f"https://mtls.test:{gw.tls_port}/y"
        out = subprocess.run(base + ["--cert", f"{self.dir}/client.crt", "--key", f"{self.dir}/client.key", url],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["headers"]["x-dn"], "CN=client.test")
        out = subprocess.run(base + [url], capture_output=True, text=True, timeout=10)
        self.assertNotEqual(out.returncode, 0, out.stdout)

    def test_route_vars_see_the_client_certificate(self):
        up = self.upstream("origin")
        routes = [{"id": "r1", "uri": "/who", "vars": [["ssl_client_s_dn", "==", "CN=client.test"]],
                   "upstream": {"nodes": {up.addr: 1}}}]
        gw = self.gateway_with([self.ssl_obj("m", ["mtls.test"], {"ca": self.pki.ca_pem(),
                                                                   "skip_mtls_uri_regex": ["^/who"]})], routes)
        self.assertEqual(self.request(gw, "mtls.test", "/who", ctx=self.ctx("client"))[0], 200)
        # Without a certificate the path is let through by the regex, but the
        # route's vars do not match.
        self.assertEqual(self.request(gw, "mtls.test", "/who")[0], 404)

    def test_skip_mtls_uri_regex(self):
        gw = self.gateway_with([self.ssl_obj("m", ["mtls.test"], {"ca": self.pki.ca_pem(), "depth": 2,
                                                                   "skip_mtls_uri_regex": ["^/public/", "\\.css$"]})])
        # Without a certificate the handshake completes: matching paths are
        # served, the others get 400.
        status, body = self.request(gw, "mtls.test", "/public/a")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["headers"]["x-verify"], "NONE")
        self.assertEqual(self.request(gw, "mtls.test", "/x/site.css")[0], 200)
        self.assertEqual(self.request(gw, "mtls.test", "/private")[0], 400)
        # A certificate from another CA counts as none.
        stranger = self.ctx("stranger", self.other_dir)
        status, body = self.request(gw, "mtls.test", "/public/a", ctx=stranger)
        self.assertEqual(status, 200)
        self.assertTrue(json.loads(body)["headers"]["x-verify"].startswith("FAILED:"))
        self.assertEqual(self.request(gw, "mtls.test", "/private", ctx=stranger)[0], 400)
        # A verified certificate opens every path.
        self.assertEqual(self.request(gw, "mtls.test", "/private", ctx=self.ctx("client"))[0], 200)

    def test_host_must_be_the_sni(self):
        gw = self.gateway_with([self.ssl_obj("m", ["mtls.test"], {"ca": self.pki.ca_pem()}),
                                self.ssl_obj("p", ["plain.test", "other.test"])])
        client = self.ctx("client")
        self.assertEqual(self.request(gw, "mtls.test", "/", host="MTLS.test:443", ctx=client)[0], 200)
        # A verified connection for mtls.test does not serve another Host.
        self.assertEqual(self.request(gw, "mtls.test", "/", host="other.test", ctx=client)[0], 400)
        # Nor does a connection without client certificate (plain.test)
        # reach mtls.test by its Host.
        self.assertEqual(self.request(gw, "plain.test", "/", host="mtls.test")[0], 400)
        self.assertEqual(self.request(gw, "plain.test", "/", host="other.test")[0], 200)

    def test_resumed_session_from_another_sni(self):
        # m2.test trusts the other CA: a session verified there must not be
        # resumed into mtls.test, which trusts only the first (TLS 1.2
        # resumption keeps the first handshake's result). Tickets: the
        # session cache drops sessions of connections closed without a
        # close_notify, which is how the listener closes.
        gw = self.gateway_with([self.ssl_obj("m", ["mtls.test"], {"ca": self.pki.ca_pem()}),
                                self.ssl_obj("m2", ["m2.test"], {"ca": self.other.ca_pem()})],
                               config={"apisix": {"ssl": {"ssl_session_tickets": True}}})
        ctx = self.ctx("stranger", self.other_dir)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2

        def get(sni, session=None):
            with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s:
                    s.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
                    out = b""
                    while chunk := s.recv(65536):
                        out += chunk
                    return out, s.session, s.session_reused

        out, session, _ = get("m2.test")
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:100])
        out, _, reused = get("m2.test", session)
        self.assertTrue(reused)
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:100])
        out, _, reused = get("mtls.test", session)
        self.assertTrue(reused)
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out[:100])

    def test_x_forwarded_headers(self):
        up = self.upstream("origin")
        gw = self.gateway({"routes": [{"id": "r1", "uri": "/*", "upstream": {"nodes": {up.addr: 1}}}],
                           "ssls": [self.ssl_obj("p", ["plain.test"])]})
        spoof = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test", "X-Forwarded-Port": "1"}
        h = gw.get("/a", headers=dict(spoof, Host="Example.TEST:8080")).json()["headers"]
        self.assertEqual(h["x-forwarded-host"], "Example.TEST:8080")
        self.assertEqual(h["x-forwarded-port"], "8080")
        self.assertEqual(h["x-forwarded-proto"], "http")
        h = gw.get("/a", headers=dict(spoof, Host="example.test")).json()["headers"]
        self.assertEqual(h["x-forwarded-host"], "example.test")
        self.assertEqual(h["x-forwarded-port"], str(gw.port))
        h = gw.get("/a", headers={"Host": "[::1]:9"}).json()["headers"]
        self.assertEqual(h["x-forwarded-port"], "9")
        status, body = self.request(gw, "plain.test", "/a", host="plain.test")
        h = json.loads(body)["headers"]
        self.assertEqual((h["x-forwarded-proto"], h["x-forwarded-port"]), ("https", str(gw.tls_port)))

    def test_redirect_http_to_https_port(self):
        routes = {"routes": [{"id": "r1", "uri": "/*", "plugins": {"redirect": {"http_to_https": True}},
                              "upstream": {"nodes": {"127.0.0.1:1": 1}}}]}
        gw = self.gateway(routes)
        r = gw.get("/p?q=1", headers={"Host": "a.test:8080"})
        self.assertEqual(r.status, 301)
        self.assertEqual(r.headers["location"], f"https://a.test:{gw.tls_port}/p?q=1")
        gw443 = self.gateway(routes, config={"plugin_attr": {"redirect": {"https_port": 443}}})
        self.assertEqual(gw443.get("/p", headers={"Host": "a.test"}).headers["location"], "https://a.test/p")
        gw_set = self.gateway(routes, config={"plugin_attr": {"redirect": {"https_port": 8443}}})
        self.assertEqual(gw_set.get("/p", headers={"Host": "a.test"}).headers["location"], "https://a.test:8443/p")


if __name__ == "__main__":
    unittest.main()
