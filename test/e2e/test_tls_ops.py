"""TLS in operation: SSL objects in the S3 fallback snapshot (a traffic node
that never reached etcd serves HTTPS with the right certificate per SNI),
`holdfast snapshot inspect` listing certificates without keys, the
certificate expiry metric, and bad SSL objects (at `holdfast -t` and in a
hot reload) left out by id while the others keep serving."""
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from harness import BIN, GatewayTest, free_port
from pki import Pki, https_get, served_certificate
from test_fallback import FallbackBase, fallback_cfg, wait_for

KEYRING = ["0123456789abcdef"]
METRIC = "holdfast_ssl_certificate_expiry_timestamp_seconds"


def not_after(pki, name):
    """The certificate's notAfter in Unix seconds, as the openssl command reads it."""
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", os.path.join(pki.dir, name + ".crt")],
                         capture_output=True, text=True, check=True).stdout
    return int(ssl.cert_time_to_seconds(out.strip().split("=", 1)[1]))


def key_lines(key_pem):
    """The base64 lines of a PEM key: none of them may appear anywhere."""
    return [l for l in key_pem.splitlines() if l and not l.startswith("-----")]


class PkiMixin:
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki_dir = tempfile.mkdtemp(prefix="holdfast-pki-")
        cls.pki = Pki(cls.pki_dir)
        cls.a_ec = cls.pki.leaf("a-ec", ["a.test"], "ec")
        cls.b_rsa = cls.pki.leaf("b-rsa", ["*.b.test"], "rsa")
        cls.c_ec = cls.pki.leaf("c-ec", ["c.test"], "ec")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki_dir, True)
        super().tearDownClass()

    def served(self, port, sni):
        """The DER leaf the listener serves for `sni` (verified against the test CA)."""
        return served_certificate(port, sni, ssl.create_default_context(cafile=self.pki.ca_crt))[0]

    def https_get(self, port, sni, path):
        return https_get(port, sni, path, ssl.create_default_context(cafile=self.pki.ca_crt))

    def assert_handshake_fails(self, port, sni):
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        ctx.check_hostname = False
        with self.assertRaises(ssl.SSLError, msg=sni):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni):
                    pass


class TlsFallbackTest(PkiMixin, FallbackBase):
    def inspect(self, gw):
        return subprocess.run([BIN, "snapshot", "inspect", "-c", gw.config_path], capture_output=True, text=True,
                              timeout=30)

    def test_https_from_the_s3_snapshot_after_admin_api_with_encrypted_keys(self):
        # The control plane: etcd behind an Admin API that encrypts keys.
        enc = {"apisix": {"data_encryption": {"keyring": KEYRING}}}
        cp = self.etcd_gateway(self.etcd_, role="control_plane", config=enc)
        for path, body in [
                ("/apisix/admin/upstreams/1", {"nodes": {self.up.addr: 1}, "type": "roundrobin"}),
                ("/apisix/admin/routes/1", {"uri": "/tls/*", "upstream_id": "1"}),
                ("/apisix/admin/ssls/a", {"snis": ["a.test"], "cert": self.a_ec[0], "key": self.a_ec[1]}),
                ("/apisix/admin/ssls/b", {"snis": ["*.b.test"], "cert": self.b_rsa[0], "key": self.b_rsa[1]})]:
            st, body = cp.admin("PUT", path, body)
            self.assertIn(st, (200, 201), body)
        # etcd holds the key encrypted (APISIX's data encryption), the certificate as given.
        for sid, (cert, key) in (("a", self.a_ec), ("b", self.b_rsa)):
            stored = json.loads(self.etcd_.get(f"/apisix/ssls/{sid}"))
            self.assertEqual(stored["cert"], cert)
            self.assertFalse(stored["key"].startswith("---"), "the key is stored in clear")
            for line in key_lines(key):
                self.assertNotIn(line, json.dumps(stored))

        # The backup node (same keyring) exports to S3; the resource object keeps the encrypted keys.
        bcfg = fallback_cfg(self.peer, "write")
        bcfg.update(enc)
        backup = self.etcd_gateway(self.etcd_, config=bcfg, start=False)
        backup.start(wait=False)  # a backup node opens no proxy port
        rev = self.etcd_.revision()
        m = wait_for(lambda: (lambda m: m if m and m["revision"] >= rev else None)(self.manifest()), what="export")
        resources = json.loads(self.peer.get("fallback-cp-data", m["resource"]["key"]))
        self.assertEqual(sorted(s["id"] for s in resources["ssls"]), ["a", "b"])
        text = json.dumps(resources)
        for _, key in (self.a_ec, self.b_rsa):
            for line in key_lines(key):
                self.assertNotIn(line, text)
        self.assertNotIn("PRIVATE KEY", text)

        # `snapshot inspect`: ids, SNIs, key types and expiry dates; never keys.
        r = self.inspect(backup)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout + r.stderr
        exp_a = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after(self.pki, "a-ec")))
        exp_b = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after(self.pki, "b-rsa")))
        self.assertIn("ssls:            2", out)
        self.assertRegex(out, rf"ssl a: EC, expires {re.escape(exp_a)} \(in \d+ days\), snis a\.test\n")
        self.assertRegex(out, rf"ssl b: RSA, expires {re.escape(exp_b)} \(in \d+ days\), snis \*\.b\.test\n")
        self.assertNotIn("PRIVATE KEY", out)
        for sid in ("a", "b"):
            enc_key = next(s["key"] for s in resources["ssls"] if s["id"] == sid)
            self.assertNotIn(enc_key[:24], out)
        for _, key in (self.a_ec, self.b_rsa):
            for line in key_lines(key):
                self.assertNotIn(line, out)

        # The control plane goes away; a traffic node that never reached etcd
        # (and has no keyring of its own: the snapshot's decrypts) serves HTTPS from S3.
        backup.stop()
        self.etcd_.stop()
        tcfg = fallback_cfg(self.peer)
        traffic = self.etcd_gateway(self.etcd_, config=tcfg)
        wait_for(lambda: traffic.status()[1].get("source") == "s3", what="traffic node on the S3 snapshot")
        self.assertEqual(self.served(traffic.tls_port, "a.test"), ssl.PEM_cert_to_DER_cert(self.a_ec[0]))
        self.assertEqual(self.served(traffic.tls_port, "api.b.test"), ssl.PEM_cert_to_DER_cert(self.b_rsa[0]))
        self.assert_handshake_fails(traffic.tls_port, "other.test")
        self.assert_handshake_fails(traffic.tls_port, "x.api.b.test")  # a wildcard covers one label
        status, body = self.https_get(traffic.tls_port, "a.test", "/tls/x")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["server"], "origin")
        # The expiry metric for the snapshot's certificates.
        metrics = traffic.request_status_raw("/metrics")
        self.assertIn(f'{METRIC}{{sni="a.test",ssl_id="a",type="EC"}} {not_after(self.pki, "a-ec")}\n', metrics)
        self.assertIn(f'{METRIC}{{sni="*.b.test",ssl_id="b",type="RSA"}} {not_after(self.pki, "b-rsa")}\n', metrics)
        self.assertIn(f"# TYPE {METRIC} gauge\n", metrics)
        logs = traffic.logs()
        for _, key in (self.a_ec, self.b_rsa):
            for line in key_lines(key):
                self.assertNotIn(line, logs + metrics)


class BadSslObjectTest(PkiMixin, GatewayTest):
    def test_hot_reload_skips_a_broken_object_by_id_and_keeps_serving(self):
        up = self.upstream("alpha")
        status_port = free_port()
        routes = [{"id": "r1", "uri": "/*", "upstream": {"nodes": {up.addr: 1}}}]
        good = {"id": "a", "snis": ["a.test"], "cert": self.a_ec[0], "key": self.a_ec[1]}
        gw = self.gateway({"routes": routes, "ssls": [good]},
                          config={"apisix": {"status": {"ip": "127.0.0.1", "port": status_port}}})
        self.assertEqual(self.served(gw.tls_port, "a.test"), ssl.PEM_cert_to_DER_cert(self.a_ec[0]))
        # A key that does not match its certificate, and a key no keyring entry decrypts,
        # next to a new good object.
        broken = {"id": "broken-1", "snis": ["broken.test"], "cert": self.c_ec[0], "key": self.a_ec[1]}
        undecryptable = {"id": "enc-2", "snis": ["enc.test"], "cert": self.c_ec[0], "key": "bm90IGEga2V5IGF0IGFsbA=="}
        added = {"id": "c", "snis": ["c.test"], "cert": self.c_ec[0], "key": self.c_ec[1]}
        gw.reload({"routes": routes, "ssls": [good, broken, undecryptable, added]})
        logs = gw.logs()
        self.assertIn("broken-1", logs)
        self.assertIn("does not match the certificate", logs)
        self.assertIn("enc-2", logs)
        self.assertIn("no keyring entry decrypts it", logs)
        self.assertEqual(self.served(gw.tls_port, "a.test"), ssl.PEM_cert_to_DER_cert(self.a_ec[0]))
        self.assertEqual(self.served(gw.tls_port, "c.test"), ssl.PEM_cert_to_DER_cert(self.c_ec[0]))
        self.assert_handshake_fails(gw.tls_port, "broken.test")
        self.assert_handshake_fails(gw.tls_port, "enc.test")
        status, _ = self.https_get(gw.tls_port, "c.test", "/hello")
        self.assertEqual(status, 200)
        # Only the certificates that serve are in the metric.
        metrics = gw.request_status_raw("/metrics")
        self.assertIn(f'{METRIC}{{sni="a.test",ssl_id="a",type="EC"}} {not_after(self.pki, "a-ec")}\n', metrics)
        self.assertIn(f'{METRIC}{{sni="c.test",ssl_id="c",type="EC"}} {not_after(self.pki, "c-ec")}\n', metrics)
        self.assertNotIn("broken-1", metrics)
        self.assertNotIn("enc-2", metrics)
        for line in key_lines(self.a_ec[1]) + key_lines(self.c_ec[1]):
            self.assertNotIn(line, gw.logs())
        # `holdfast -t` on the same file names both and fails.
        p = subprocess.run([BIN, "-t", "-c", gw.config_path], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("ssl broken-1: key: the private key does not match the certificate", p.stderr)
        self.assertIn("ssl enc-2: key: the key is not PEM and no keyring entry decrypts it", p.stderr)
        self.assertNotIn("ssl a:", p.stderr)
        self.assertNotIn("ssl c:", p.stderr)

    def test_standalone_file_keys_encrypted_with_the_keyring(self):
        # As etcd and S3: a key in apisix.yaml encrypted with either keyring entry
        # is decrypted; one the keyring cannot decrypt is left out by id.
        from test_admin import openssl_aes
        keyring = ["0123456789abcdef", "fedcba9876543210"]
        up = self.upstream("alpha")
        routes = [{"id": "r1", "uri": "/*", "upstream": {"nodes": {up.addr: 1}}}]
        ssls = [{"id": "enc-a", "snis": ["a.test"], "cert": self.a_ec[0], "key": openssl_aes(self.a_ec[1], keyring[0])},
                {"id": "enc-c", "snis": ["c.test"], "cert": self.c_ec[0], "key": openssl_aes(self.c_ec[1], keyring[1])},
                {"id": "foreign", "snis": ["b.test"], "cert": self.b_rsa[0],
                 "key": openssl_aes(self.b_rsa[1], "another-keyring!")}]
        gw = self.gateway({"routes": routes, "ssls": ssls},
                          config={"apisix": {"data_encryption": {"keyring": keyring}}})
        self.assertEqual(self.served(gw.tls_port, "a.test"), ssl.PEM_cert_to_DER_cert(self.a_ec[0]))
        self.assertEqual(self.https_get(gw.tls_port, "c.test", "/x")[0], 200)
        self.assert_handshake_fails(gw.tls_port, "x.b.test")
        gw.wait_log("ssl foreign: skipped: key: the key is not PEM and no keyring entry decrypts it")
        self.assertNotIn("ssl enc-a:", gw.logs())
        p = subprocess.run([BIN, "-t", "-c", gw.config_path], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("ssl foreign: key: the key is not PEM and no keyring entry decrypts it", p.stderr)
        self.assertNotIn("ssl enc-", p.stderr)

    def test_metric_label_values_are_escaped(self):
        status_port = free_port()
        odd = {"id": 'we"ird\\id', "snis": ["a.test"], "cert": self.a_ec[0], "key": self.a_ec[1]}
        gw = self.gateway({"routes": [], "ssls": [odd]},
                          config={"apisix": {"status": {"ip": "127.0.0.1", "port": status_port}}})
        metrics = gw.request_status_raw("/metrics")
        self.assertIn(f'{METRIC}{{sni="a.test",ssl_id="we\\"ird\\\\id",type="EC"}} ', metrics)


def failures_metric(gw):
    text = gw.request_status_raw("/metrics")
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r'^holdfast_tls_handshake_failures_total\{reason="(\w+)"\} (\d+)$', text, re.M)}


class HandshakeFloodTest(PkiMixin, GatewayTest):
    def test_aborted_handshakes_are_counted_not_logged_and_disturb_no_one(self):
        # Thousands of connections that never finish a handshake (not TLS at
        # all, a ClientHello cut short, an unknown SNI) while a client makes
        # requests: every one is counted by reason, the log does not grow
        # with them, and the client sees no failure.
        up = self.upstream("alpha")
        status_port = free_port()
        gw = self.gateway({"routes": [{"id": "r1", "uri": "/*", "upstream": {"nodes": {up.addr: 1}}}],
                           "ssls": [{"id": "a", "snis": ["a.test"], "cert": self.a_ec[0], "key": self.a_ec[1]}]},
                          config={"apisix": {"status": {"ip": "127.0.0.1", "port": status_port}}}, workers=2)
        self.assertEqual(failures_metric(gw), {r: 0 for r in ("timeout", "closed", "no_sni", "unknown_sni",
                                                             "malformed_sni", "client_certificate", "protocol")})
        log_before = os.path.getsize(gw.log_path)
        # The first bytes of a ClientHello record: a handshake that is cut short.
        partial = bytes.fromhex("16030100f4010000f00303") + os.urandom(16)
        garbage, cut, unknown = 1500, 1500, 200
        stop = threading.Event()
        client_results = []

        def client():
            while not stop.is_set():
                try:
                    client_results.append(self.https_get(gw.tls_port, "a.test", "/during")[0])
                except Exception as e:  # any failure is the test's failure
                    client_results.append(repr(e))

        def raw(payload, n):
            for _ in range(n):
                with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5) as s:
                    s.sendall(payload)

        def unknown_sni(n):
            ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
            ctx.check_hostname = False
            for _ in range(n):
                try:
                    with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5) as s:
                        ctx.wrap_socket(s, server_hostname="nobody.test").close()
                except ssl.SSLError:
                    pass

        c = threading.Thread(target=client)
        c.start()
        try:
            floods = [threading.Thread(target=raw, args=(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", garbage // 3))
                      for _ in range(3)]
            floods += [threading.Thread(target=raw, args=(partial, cut // 3)) for _ in range(3)]
            floods.append(threading.Thread(target=unknown_sni, args=(unknown,)))
            for t in floods:
                t.start()
            for t in floods:
                t.join(120)
            deadline = time.time() + 10
            want = {"protocol": garbage, "closed": cut, "unknown_sni": unknown}
            while {k: failures_metric(gw)[k] for k in want} != want:
                self.assertLess(time.time(), deadline, failures_metric(gw))
                time.sleep(0.1)
        finally:
            stop.set()
            c.join(10)
        self.assertGreater(len(client_results), 0)
        self.assertEqual(set(client_results), {200}, [r for r in client_results if r != 200][:5])
        # A few lines at most (none per handshake): 3200 aborted handshakes
        # would be hundreds of kilobytes at one line each.
        self.assertLess(os.path.getsize(gw.log_path) - log_before, 4096, gw.logs()[-2000:])


class AdminTlsWarningTest(GatewayTest):
    def test_https_admin_and_admin_api_mtls_warn_at_start(self):
        """The Admin API has no TLS yet: asking for it is named in a warning, at `-t` and at start."""
        etcd = self.etcd()
        gw = self.etcd_gateway(etcd, role="traditional", config={"deployment": {"admin": {
            "https_admin": True, "admin_api_mtls": {"admin_ssl_cert": "/no/such.crt", "admin_ssl_cert_key": "/no/such.key"}}}})
        for key in ("deployment.admin.https_admin", "deployment.admin.admin_api_mtls"):
            self.assertIn(f"{key}: the Admin API over TLS is not supported yet", gw.logs())
        p = subprocess.run([BIN, "-t", "-c", gw.config_path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("warning: deployment.admin.https_admin: the Admin API over TLS is not supported yet", p.stderr)
        self.assertIn("warning: deployment.admin.admin_api_mtls: the Admin API over TLS", p.stderr)
        # Turned off (APISIX's default): nothing to say.
        off = self.etcd_gateway(etcd, role="traditional", config={"deployment": {"admin": {"https_admin": False}}},
                                start=False)
        p = subprocess.run([BIN, "-t", "-c", off.config_path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("https_admin", p.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()
