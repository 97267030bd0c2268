"""TLS session resumption on the downstream listener against the real
binary: session ids from the cache shared by all workers (APISIX's default,
`ssl_session_tickets: false`), and session tickets with rotating keys.
The client is `openssl s_client` (-sess_out / -sess_in)."""
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import GatewayTest, free_port
from pki import Pki


class SessionTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="holdfast-pki-")
        cls.pki = Pki(cls.dir)
        cls.a_ec = cls.pki.leaf("a-ec", ["a.test"], "ec")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)

    def resources(self, up):
        return {"routes": [{"id": "r1", "uri": "/*", "upstream": {"nodes": {up.addr: 1}}}],
                "ssls": [{"id": "a", "snis": ["a.test"], "cert": self.a_ec[0], "key": self.a_ec[1]}]}

    def s_client(self, gw, version, sess_out=None, sess_in=None, server_closes=True):
        """One connection with one request; returns s_client's output. With
        server_closes the request says `Connection: close` and s_client waits
        for the server to close; else s_client closes first (close_notify at
        the end of its input) once it has the response."""
        args = ["openssl", "s_client", "-connect", f"127.0.0.1:{gw.tls_port}", "-servername", "a.test", version,
                "-CAfile", self.pki.ca_crt, "-verify_return_error"]
        if sess_out:
            args += ["-sess_out", sess_out]
        if sess_in:
            args += ["-sess_in", sess_in]
        if server_closes:
            args.append("-ign_eof")
            req = "GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        else:
            # Without -ign_eof s_client sends close_notify as soon as its input
            # ends: a handshake-only connection (TLS 1.2 makes the session in
            # the handshake).
            req = ""
        out = subprocess.run(args, input=req, capture_output=True, text=True, timeout=15)
        return out.stdout + out.stderr

    def path(self, name):
        return os.path.join(self.dir, f"{self.id()}.{name}")

    def assert_resumes(self, gw, version, server_closes, rounds=6):
        sess = self.path(version + str(server_closes))
        first = self.s_client(gw, version, sess_out=sess, server_closes=server_closes)
        self.assertIn("New, ", first)
        self.assertTrue(os.path.getsize(sess) > 0, first)
        # Several connections, so that with two workers (SO_REUSEPORT spreads
        # them) some land on the worker that did not make the session.
        for i in range(rounds):
            out = self.s_client(gw, version, sess_in=sess, server_closes=server_closes)
            self.assertIn("Reused, ", out, f"{version} round {i}:\n{out[-2000:]}")

    def metric(self, gw, name):
        m = re.search(rf"^{name} (\d+)$", gw.request_status_raw("/metrics"), re.M)
        self.assertIsNotNone(m, name)
        return int(m.group(1))

    def test_session_ids_resume_across_connections_and_workers_with_tickets_off(self):
        up = self.upstream()
        gw = self.gateway(self.resources(up), workers=2,
                          config={"apisix": {"status": {"ip": "127.0.0.1", "port": free_port()}}})
        # The server closes (Connection: close), or the client does (TLS 1.2
        # only: a TLS 1.3 session arrives after the handshake, and s_client
        # closing at once may not have read it).
        self.assert_resumes(gw, "-tls1_2", server_closes=True)
        self.assert_resumes(gw, "-tls1_2", server_closes=False)
        self.assert_resumes(gw, "-tls1_3", server_closes=True)  # stateful tickets: tickets are off
        self.assertEqual(self.metric(gw, "holdfast_tls_session_resumptions_total"), 18)
        self.assertGreaterEqual(self.metric(gw, "holdfast_tls_session_cache_sessions"), 3)
        self.assertEqual(self.metric(gw, "holdfast_tls_session_cache_size_max"), 20480)
        self.assertNotIn("holdfast_tls_ticket_keys_total", gw.request_status_raw("/metrics"))

    def wait_server_closed(self, gw, client_port):
        """Polls until the gateway has closed its side of the connection from
        `client_port` (its socket gone from `ss`)."""
        deadline = time.time() + 10
        while True:
            out = subprocess.run(["ss", "-Htn", f"( sport = :{gw.tls_port} and dport = :{client_port} )"],
                                 capture_output=True, text=True, check=True).stdout
            if not out.strip():
                return
            self.assertLess(time.time(), deadline, out)
            time.sleep(0.02)

    def test_session_survives_a_client_that_closes_without_close_notify(self):
        # Many clients just close the socket after the last response (Python's
        # ssl without unwrap(), browsers, load balancers): not a reason to drop
        # the session.
        up = self.upstream()
        gw = self.gateway(self.resources(up))
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        session = None
        for i in range(3):
            raw = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5)
            s = ctx.wrap_socket(raw, server_hostname="a.test", session=session)
            s.sendall(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")  # keep-alive: the client closes
            data = b""
            while b'"body_sha256"' not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, data)
                data += chunk
            self.assertEqual(s.session_reused, i > 0, f"connection {i}")
            session = s.session
            port = s.getsockname()[1]
            s.close()  # a FIN without close_notify
            self.wait_server_closed(gw, port)

    def read_to_close_notify(self, gw, request, version):
        """Sends `request` and reads until the server ends the TLS stream;
        fails if the end is a bare TCP close (no close_notify): a client could
        not tell a close-delimited response from a truncated one."""
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        ctx.minimum_version = ctx.maximum_version = version
        with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="a.test", suppress_ragged_eofs=False) as s:
                s.sendall(request)
                data = b""
                try:
                    while chunk := s.recv(65536):
                        data += chunk
                except ssl.SSLEOFError as e:
                    self.fail(f"{version.name}: the server closed without close_notify ({e}) after {data[:200]!r}")
                return data

    def test_server_ends_every_closing_response_with_close_notify(self):
        up = self.upstream()
        gw = self.gateway(self.resources(up))
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            # Connection: close, and HTTP/1.0 (a close-delimited body)
            data = self.read_to_close_notify(gw, b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                                             version)
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
            data = self.read_to_close_notify(gw, b"GET /x HTTP/1.0\r\nHost: a.test\r\n\r\n", version)
            self.assertTrue(data.startswith(b"HTTP/1.1 200") and b'"body_sha256"' in data, data[:300])
            # an error answer, then the lingering close
            data = self.read_to_close_notify(gw, b"GET /x HTTP/1.1\r\nHost: a.test\r\nBad Header: x\r\n\r\n", version)
            self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:100])

    def test_session_tickets_resume_when_on(self):
        up = self.upstream()
        gw = self.gateway(self.resources(up), workers=2,
                          config={"apisix": {"ssl": {"ssl_session_tickets": True},
                                             "status": {"ip": "127.0.0.1", "port": free_port()}}})
        for version in ("-tls1_2", "-tls1_3"):
            self.assert_resumes(gw, version, server_closes=True, rounds=3)
        # Stateless: tickets leave the server cache empty.
        self.assertEqual(self.metric(gw, "holdfast_tls_session_cache_sessions"), 0)
        self.assertEqual(self.metric(gw, "holdfast_tls_ticket_keys_total"), 1)
        self.assertEqual(self.metric(gw, "holdfast_tls_session_resumptions_total"), 6)


if __name__ == "__main__":
    unittest.main()
