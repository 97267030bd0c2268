"""Talking to a secured etcd (APISIX_COMPAT §1.3 "Auth, TLS, role") against a
real etcd (Debian etcd-server): https with a private CA, mutual TLS, SNI used
for verification, refusals that name the reason, user/password auth for the
data plane and the Admin API, and an auth token that expires under a watch.

Certificates come from Debian's openssl CLI, made once per class in a temp dir."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import GatewayTest, wait_status

ROUTE_BODY = {"plugins": {"mocking": {"response_example": "ok"}}}


def route(uri):
    return dict(ROUTE_BODY, uri=uri)



def assert_nothing_loaded(test, gw):
    r = gw.get("/one")
    test.assertEqual(r.status, 503, r)
    test.assertIn(b"no configuration loaded yet", r.body)
    # Keep-alive: each request is answered once, then the next one.
    out = gw.raw(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    test.assertEqual(out.count(b"no configuration loaded yet"), 2, out[:300])


def log_lines(gw, text):
    return [line for line in gw.logs().splitlines() if text in line]


class Pki:
    """A throw-away CA (and an unrelated one) with server and client certificates."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="holdfast-pki-")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.dir)

    def ca(self, name):
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}", "-days", "1",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return self.path(f"{name}.pem")

    def cert(self, name, ca, san=None):
        """A leaf signed by `ca` (no extendedKeyUsage, so usable by a server
        and a client: etcd's own gateway presents its server certificate to
        its gRPC port under --client-cert-auth)."""
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        ext = []
        if san:
            with open(self.path(f"{name}.ext"), "w") as f:
                f.write(f"subjectAltName={san}\n")
            ext = ["-extfile", f"{name}.ext"]
        self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                      "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", *ext)
        return self.path(f"{name}.pem"), self.path(f"{name}.key")

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class EtcdTlsTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.ca = cls.pki.ca("ca")
        cls.rogue_ca = cls.pki.ca("rogue-ca")
        cls.server = cls.pki.cert("server", "ca", "IP:127.0.0.1,DNS:localhost")
        cls.named = cls.pki.cert("named", "ca", "DNS:etcd.test")
        cls.client = cls.pki.cert("client", "ca")

    @classmethod
    def tearDownClass(cls):
        cls.pki.remove()

    def tls_gateway(self, etcd, tls, apisix_ssl=None, **etcd_cfg):
        cfg = {"deployment": {"etcd": dict({"tls": tls, "resync_delay": 0.3}, **etcd_cfg)}}
        if apisix_ssl:
            cfg["apisix"] = {"ssl": apisix_ssl}
        return self.etcd_gateway(etcd, config=cfg)

    def test_https_with_private_ca_loads_and_refuses_other_cas(self):
        etcd = self.etcd(tls={"cert": self.server[0], "key": self.server[1], "ca": self.ca})
        self.assertTrue(etcd.url.startswith("https://"))
        etcd.put("/apisix/routes/1", route("/one"))
        missing_ca = self.pki.path("later-ca.pem")
        good = self.tls_gateway(etcd, {"ca": self.ca, "verify": True})
        rogue = self.tls_gateway(etcd, {"ca": self.rogue_ca, "verify": True})
        system_only = self.tls_gateway(etcd, {"verify": True})
        late = self.tls_gateway(etcd, {"ca": missing_ca, "verify": True})
        # APISIX's key for the CA: a list with "system" and a file
        apisix_style = self.tls_gateway(etcd, {"verify": True},
                                        apisix_ssl={"ssl_trusted_certificate": f"system, {self.ca}"})

        wait_status(good, "/one", 200)
        wait_status(apisix_style, "/one", 200)
        etcd.put("/apisix/routes/2", route("/two"))  # the watch runs over TLS too
        wait_status(good, "/two", 200, timeout=3)

        # A CA that did not sign the server certificate (and the system store
        # alone) is refused, with the verification error in the one log line.
        for gw in (rogue, system_only):
            gw.wait_log("etcd unreachable")
            line = log_lines(gw, "etcd unreachable")[0]
            self.assertIn("certificate verify failed", line)
            self.assertIn("unable to get local issuer certificate", line)
            assert_nothing_loaded(self, gw)
            self.assertEqual(gw.status()[1]["etcd"], "unreachable")

        # A CA file that cannot be read is named in the log, and the node keeps
        # retrying: once the file appears (a secret mounted late) it loads.
        late.wait_log("etcd unreachable")
        line = log_lines(late, "etcd unreachable")[0]
        self.assertIn(missing_ca, line)
        self.assertIn("CA", line)
        self.assertEqual(late.proc.poll(), None)
        shutil.copy(self.ca, missing_ca)
        wait_status(late, "/two", 200, timeout=8)
        time.sleep(0.5)
        # the refused nodes kept retrying (resync_delay 0.3 s) and logged it once
        self.assertEqual(len(log_lines(rogue, "etcd unreachable")), 1, rogue.logs())
        assert_nothing_loaded(self, rogue)

    def test_mutual_tls(self):
        tls = {"cert": self.server[0], "key": self.server[1], "ca": self.ca, "client_ca": self.ca,
               "client_cert": self.client[0], "client_key": self.client[1]}
        etcd = self.etcd(tls=tls)
        etcd.put("/apisix/routes/1", route("/one"))
        with_cert = self.tls_gateway(etcd, {"ca": self.ca, "cert": self.client[0], "key": self.client[1]})
        without = self.tls_gateway(etcd, {"ca": self.ca})
        wait_status(with_cert, "/one", 200)
        etcd.put("/apisix/routes/2", route("/two"))
        wait_status(with_cert, "/two", 200, timeout=3)

        without.wait_log("etcd unreachable")
        time.sleep(1.0)  # several retries at resync_delay 0.3
        lines = log_lines(without, "etcd unreachable")
        self.assertEqual(len(lines), 1, without.logs())
        self.assertIn("client certificate", lines[0])
        assert_nothing_loaded(self, without)
        with open(etcd.log_path, errors="replace") as f:
            self.assertGreaterEqual(f.read().count("rejected connection"), 2, "the node did not retry")

        # Still retrying: etcd stops asking for client certificates, the node loads.
        etcd.stop()
        etcd.tls = {k: v for k, v in tls.items() if k not in ("client_ca", "client_cert", "client_key")}
        etcd.start()
        wait_status(without, "/two", 200, timeout=8)
        without.wait_log("etcd reachable")

    def test_sni_is_the_name_verified(self):
        # The certificate names only etcd.test; the node connects to 127.0.0.1.
        etcd = self.etcd(tls={"cert": self.named[0], "key": self.named[1], "ca": self.ca, "check_hostname": False})
        etcd.put("/apisix/routes/1", route("/one"))
        with_sni = self.tls_gateway(etcd, {"ca": self.ca, "verify": True, "sni": "etcd.test"})
        no_sni = self.tls_gateway(etcd, {"ca": self.ca, "verify": True})
        wrong_sni = self.tls_gateway(etcd, {"ca": self.ca, "verify": True, "sni": "other.test"})
        no_verify = self.tls_gateway(etcd, {"verify": False})
        wait_status(with_sni, "/one", 200)
        wait_status(no_verify, "/one", 200)
        etcd.put("/apisix/routes/2", route("/two"))
        wait_status(with_sni, "/two", 200, timeout=3)

        no_sni.wait_log("etcd unreachable")
        self.assertIn("IP address mismatch", log_lines(no_sni, "etcd unreachable")[0])
        wrong_sni.wait_log("etcd unreachable")
        self.assertIn("hostname mismatch", log_lines(wrong_sni, "etcd unreachable")[0])
        for gw in (no_sni, wrong_sni):
            assert_nothing_loaded(self, gw)
        # the configured name is what the server saw as SNI
        with open(etcd.log_path, errors="replace") as f:
            self.assertIn('ServerName "other.test"', f.read())


class EtcdAuthTest(GatewayTest):
    USER, PASSWORD = "holdfast", "gw-Secret-77"

    def auth_etcd(self, **kw):
        etcd = self.etcd(**kw)
        etcd.put("/apisix/routes/1", route("/one"))
        etcd.enable_auth("root-Secret-55", users=[(self.USER, self.PASSWORD, "/apisix/")])
        return etcd

    def auth_gateway(self, etcd, password=None, role="data_plane", **etcd_cfg):
        cfg = {"deployment": {"etcd": dict({"user": self.USER, "password": password or self.PASSWORD,
                                            "resync_delay": 0.3}, **etcd_cfg)}}
        return self.etcd_gateway(etcd, role=role, config=cfg)

    def test_user_password_data_plane_and_admin_api(self):
        etcd = self.auth_etcd()
        dp = self.auth_gateway(etcd)
        wrong = self.auth_gateway(etcd, password="Wr0ng-Pa55word", role="traditional")
        anonymous = self.etcd_gateway(etcd, config={"deployment": {"etcd": {"resync_delay": 0.3}}})
        cp = self.auth_gateway(etcd, role="traditional")

        wait_status(dp, "/one", 200)
        etcd.put("/apisix/routes/2", route("/two"))
        wait_status(dp, "/two", 200, timeout=3)

        # The Admin API writes through the authenticated client; the data plane sees it.
        code, body = cp.admin("PUT", "/apisix/admin/routes/3", route("/three"))
        self.assertIn(code, (200, 201), body)
        self.assertEqual(json.loads(etcd.get("/apisix/routes/3"))["uri"], "/three")
        wait_status(dp, "/three", 200, timeout=3)
        wait_status(cp, "/three", 200, timeout=3)
        code, body = cp.admin("DELETE", "/apisix/admin/routes/3")
        self.assertEqual(code, 200, body)
        wait_status(dp, "/three", 404, timeout=3)

        # A wrong password: one clear line, no password in it, nothing served,
        # and the Admin API answers with an error that does not leak it either.
        wrong.wait_log("etcd unreachable")
        lines = log_lines(wrong, "etcd unreachable")
        self.assertEqual(len(lines), 1)
        self.assertIn(f"etcd authentication as {self.USER} failed", lines[0])
        self.assertIn("invalid user ID or password", lines[0])
        code, body = wrong.admin("PUT", "/apisix/admin/routes/4", route("/four"))
        self.assertGreaterEqual(code, 500)
        self.assertNotIn("Wr0ng-Pa55word", str(body))
        self.assertNotIn("Wr0ng-Pa55word", wrong.logs())
        self.assertNotIn(self.PASSWORD, dp.logs() + cp.logs())
        self.assertIsNone(etcd.get("/apisix/routes/4"))
        assert_nothing_loaded(self, wrong)

        # No credentials at all against an etcd with auth: refused, said so.
        anonymous.wait_log("etcd unreachable")
        self.assertIn("user name is empty", log_lines(anonymous, "etcd unreachable")[0])

    def test_token_expiring_under_the_watch_is_renewed(self):
        # Simple tokens expire after 1 s unused; the watch is re-created every
        # 1.5 s idle, so each re-creation meets an expired token.
        etcd = self.auth_etcd(extra_args=["--auth-token-ttl", "1"])
        dp = self.auth_gateway(etcd, watch_timeout=1.5)
        wait_status(dp, "/one", 200)
        time.sleep(4.5)
        t0 = time.time()
        etcd.put("/apisix/routes/2", route("/two"))
        wait_status(dp, "/two", 200, timeout=3)
        self.assertLess(time.time() - t0, 2.0)
        logs = dp.logs()
        # renewed in place: no canceled watch, no full reload, no outage
        self.assertNotIn("watch canceled", logs)
        self.assertNotIn("etcd unreachable", logs)
        self.assertEqual(logs.count("configuration applied"), 2, logs)


if __name__ == "__main__":
    unittest.main()
