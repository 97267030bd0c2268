"""Nothing Holdfast writes carries a control character (issue #9, item 1).

The path is percent-decoded for matching ($uri); plugins that build a target
or a header from it (proxy-rewrite, redirect, response-rewrite) must encode
it again as APISIX does, and the head writer refuses, with a 500, any field
that would still carry one. The upstream here records every byte it
receives, so "one request" means one request line reached it.
"""
import socket
import time
import unittest

from harness import GatewayTest
from test_smuggling import RecordingUpstream, exchange

SMUGGLE = b"/api/x%0d%0aHost:%20admin.internal%0d%0a%0d%0aGET%20/poisoned"


def get(path, extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\nHost: gw\r\n" + extra + b"Connection: close\r\n\r\n"


def head_lines(out):
    """The status line and header lines of the first response in `out`."""
    head, sep, _ = out.partition(b"\r\n\r\n")
    assert sep, out
    return head.split(b"\r\n")


def read_response(s):
    """Reads one response with a Content-Length body from socket `s`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before a full head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head.split(b"\r\n"), body


class ControlCharsTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.rec = RecordingUpstream()
        self._procs.append(self.rec)
        up = {"nodes": {self.rec.addr: 1}}

        def r(rid, uri, plugins=None, upstream=None):
            return {"id": rid, "uri": uri, "plugins": plugins or {}, "upstream": upstream or up}

        self.gw = self.gateway({"routes": [
            r("strip", "/api/*", {"proxy-rewrite": {"regex_uri": ["^/api/(.*)", "/$1"]}}),
            r("param", "/p/:name", {"proxy-rewrite": {"uri": "/users/$name"}}),
            r("tmpl-query", "/tq/*", {"proxy-rewrite": {"uri": "/t?from=$uri"}}),
            r("pr-header", "/ph/*", {"proxy-rewrite": {"headers": {"set": {"X-Path": "$uri"}}}}),
            r("rr-header", "/rh/*", {"response-rewrite": {"headers": {"set": {"X-Path": "$uri"}}}}),
            r("redirect-regex", "/r/*", {"redirect": {"regex_uri": ["^/r/(.*)", "/new/$1"]}}),
            r("redirect-uri", "/ru/*", {"redirect": {"uri": "$uri"}}),
            # APISIX's host pattern refuses this; the log line quoting it must not break.
            r("bad-host", "/bh", {"proxy-rewrite": {"host": "a\r\nFORGED log line"}}),
            # upstream_host is configuration no plugin encodes: the writer's backstop.
            r("backstop", "/bs", upstream={"nodes": {self.rec.addr: 1}, "pass_host": "rewrite",
                                           "upstream_host": "evil\r\nX-Injected: 1"}),
        ]}, config={"apisix": {"router": {"http": "radixtree_uri_with_parameter"}}})

    def lines_until(self, marker, timeout=5.0):
        """Request lines the upstream received, once one containing `marker` is there."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            _, reqs = self.rec.snapshot()
            lines = [line for line, _, _ in reqs]
            if any(marker in line for line in lines):
                return lines
            time.sleep(0.02)
        raise AssertionError(f"{marker!r} never reached the upstream: {self.rec.snapshot()}")

    def test_strip_prefix_smuggling_arrives_as_one_request(self):
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
            s.sendall(b"GET " + SMUGGLE + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
            lines, _ = read_response(s)
            self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
            # A second request on the same pooled upstream connection: anything
            # the first one smuggled would be received before it.
            s.sendall(get(b"/api/sentinel"))
            read_response(s)
        self.assertEqual(self.lines_until("/sentinel"), [
            "GET /x%0D%0AHost:%20admin.internal%0D%0A%0D%0AGET%20/poisoned HTTP/1.1",
            "GET /sentinel HTTP/1.1",
        ])
        data, reqs = self.rec.snapshot()
        self.assertNotIn(b"\r\nHost: admin.internal", data)
        self.assertEqual([h["host"] for _, h, _ in reqs], ["gw", "gw"])

    def test_path_parameter_and_template_query_are_encoded(self):
        exchange(self.gw.port, get(b"/p/x%0d%0aHost:%20evil"))
        exchange(self.gw.port, get(b"/tq/a%0d%0ab?c=1"))
        self.assertEqual(self.lines_until("/t?"), [
            "GET /users/x%0D%0AHost:%20evil HTTP/1.1",
            "GET /t?from=/tq/a%0D%0Ab&c=1 HTTP/1.1",
        ])

    def test_redirect_regex_uri_location_is_encoded(self):
        out, _ = exchange(self.gw.port, get(b"/r/x%0d%0aSet-Cookie:%20a=b"))
        lines = head_lines(out)
        self.assertEqual(lines[0], b"HTTP/1.1 302 Moved Temporarily", out)
        self.assertIn(b"Location: /new/x%0D%0ASet-Cookie: a=b", lines)
        self.assertFalse([l for l in lines if l.lower().startswith(b"set-cookie")], out)

    def test_redirect_uri_template_location_is_encoded(self):
        out, _ = exchange(self.gw.port, get(b"/ru/x%0d%0aSet-Cookie:%20a=b%0d%0a%0d%0a<html>"))
        lines = head_lines(out)
        self.assertEqual(lines[0], b"HTTP/1.1 302 Moved Temporarily", out)
        self.assertIn(b"Location: /ru/x%0D%0ASet-Cookie: a=b%0D%0A%0D%0A<html>", lines)
        self.assertFalse([l for l in lines if l.lower().startswith(b"set-cookie")], out)
        self.assertEqual(self.rec.snapshot()[1], [])  # answered by the plugin

    def test_proxy_rewrite_header_from_uri_is_encoded(self):
        exchange(self.gw.port, get(b"/ph/x%0d%0aX-Injected:%20yes"))
        self.lines_until("/ph/")
        _, reqs = self.rec.snapshot()
        self.assertEqual(len(reqs), 1, reqs)
        line, headers, _ = reqs[0]
        # proxy-rewrite always sends $uri through uri_safe_encode, as APISIX.
        self.assertEqual(line, "GET /ph/x%0D%0AX-Injected:%20yes HTTP/1.1")
        self.assertEqual(headers["x-path"], "/ph/x%0D%0AX-Injected: yes")
        self.assertNotIn("x-injected", headers)

    def test_response_rewrite_header_from_uri_is_encoded(self):
        out, _ = exchange(self.gw.port, get(b"/rh/x%0d%0aX-Injected:%20yes"))
        lines = head_lines(out)
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK", out)
        self.assertIn(b"X-Path: /rh/x%0D%0AX-Injected: yes", lines)
        self.assertFalse([l for l in lines if l.lower().startswith(b"x-injected")], out)

    def test_client_header_with_control_character_is_refused(self):
        out, _ = exchange(self.gw.port, get(b"/api/ok", b"X-A: a\x01b\r\n"))
        self.assertEqual(head_lines(out)[0], b"HTTP/1.1 400 Bad Request", out)
        # refused while parsing: nothing was forwarded
        self.assertEqual(self.rec.snapshot(), (b"", []))

    def test_invalid_host_is_refused_and_logged_on_one_line(self):
        self.gw.wait_log("bad-host")
        log = self.gw.logs()
        self.assertIn('skipping invalid route id=bad-host: failed to check the configuration of plugin '
                      'proxy-rewrite err: property "host" validation failed', log)
        self.assertIn("a\\x0d\\x0aFORGED log line", log)
        self.assertFalse([l for l in log.splitlines() if l.startswith("FORGED")], log)
        out, _ = exchange(self.gw.port, get(b"/bh"))
        self.assertEqual(head_lines(out)[0], b"HTTP/1.1 404 Not Found", out)

    def test_backstop_refuses_a_field_no_encoder_saw(self):
        out, _ = exchange(self.gw.port, get(b"/bs"))
        self.assertEqual(head_lines(out)[0], b"HTTP/1.1 500 Internal Server Error", out)
        self.gw.wait_log("refused to send the request to upstream")
        self.assertIn('header "Host" (set by the upstream\'s upstream_host): byte 0x0d', self.gw.logs())
        # Nothing was sent: the check runs before the upstream is contacted.
        self.assertEqual(self.rec.snapshot(), (b"", []))


if __name__ == "__main__":
    unittest.main()
