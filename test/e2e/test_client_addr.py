"""The client address as APISIX sets it up by default (nginx's realip module:
nginx_config.http.real_ip_header X-Real-IP, real_ip_from 127.0.0.1 and
unix:, real_ip_recursive off) and the X-Forwarded-* headers with and without
apisix.trusted_addresses (APISIX's ngx_tpl.lua and
handle_trusted_x_forwarded_headers in init.lua; t/node/remote_addrs.t,
t/core/trusted-addresses.t, t/plugin/ip-restriction.t).

Requests come from two loopback addresses: 127.0.0.1 (in the default
real_ip_from) and 127.0.0.2 (not in it)."""
import http.client
import json
import unittest

from harness import GatewayTest, run_holdfast


def call(gw, path, headers=None, source=None, method="GET"):
    """One request on a new connection from `source` (a loopback address)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def seen(gw, path, headers=None, source=None):
    """The request headers the upstream echo received (every line kept)."""
    status, _, body = call(gw, path, headers, source)
    assert status == 200, (status, body)
    out = {}
    for k, v in json.loads(body)["header_list"]:
        out.setdefault(k, []).append(v)
    return out


class ClientAddrTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("origin")

    def route(self, rid, uri, **kw):
        return dict({"id": rid, "uri": uri, "upstream": {"nodes": {self.up.addr: 1}}}, **kw)

    # --- real_ip_header / real_ip_from ------------------------------------

    def test_x_real_ip_from_loopback_sets_the_client(self):
        # APISIX t/node/remote_addrs.t 4: with the default realip set-up a
        # loopback client's X-Real-IP is remote_addr, for remote_addrs routing,
        # ip-restriction (t/plugin/ip-restriction.t sets its address the same
        # way), $remote_addr, X-Real-IP and X-Forwarded-For upstream and the
        # access log; $realip_remote_addr keeps the peer.
        gw = self.gateway({"routes": [
            self.route("ra", "/ra", remote_addrs=["192.168.1.0/24"]),
            self.route("ip", "/ip", plugins={"ip-restriction": {"whitelist": ["192.168.1.100"]}}),
            self.route("vars", "/vars", vars=[["remote_addr", "==", "192.168.1.100"],
                                              ["realip_remote_addr", "==", "127.0.0.1"]]),
        ]}, config={"holdfast": {"access_log": "stderr"}})
        xr = {"X-Real-IP": "192.168.1.100"}
        self.assertEqual(call(gw, "/ra", xr)[0], 200)
        self.assertEqual(call(gw, "/ra")[0], 404)
        self.assertEqual(call(gw, "/ip", xr)[0], 200)
        self.assertEqual(call(gw, "/ip")[0], 403)
        self.assertEqual(call(gw, "/vars", xr)[0], 200)
        h = seen(gw, "/ip", xr)
        self.assertEqual(h["x-real-ip"], ["192.168.1.100"])
        self.assertEqual(h["x-forwarded-for"], ["192.168.1.100"])
        gw.wait_log('192.168.1.100 - - "GET /ip HTTP/1.1" 200')
        self.assertNotIn('127.0.0.1 - - "GET /ip HTTP/1.1" 200', gw.logs())

    def test_limit_count_default_key_is_the_real_client(self):
        # limit-count's default key is remote_addr (APISIX limit-count.lua):
        # two clients behind the loopback proxy have a counter each.
        gw = self.gateway({"routes": [self.route("lc", "/lc", plugins={
            "limit-count": {"count": 1, "time_window": 60}})]})
        a, b = {"X-Real-IP": "10.0.0.1"}, {"X-Real-IP": "10.0.0.2"}
        self.assertEqual(call(gw, "/lc", a)[0], 200)
        self.assertEqual(call(gw, "/lc", a)[0], 503)
        self.assertEqual(call(gw, "/lc", b)[0], 200)

    def test_peer_not_in_real_ip_from_cannot_set_its_address(self):
        # nginx's realip: only a peer in set_real_ip_from is believed.
        gw = self.gateway({"routes": [
            self.route("ip", "/ip", plugins={"ip-restriction": {"whitelist": ["192.168.1.100"]}})]})
        xr = {"X-Real-IP": "192.168.1.100"}
        self.assertEqual(call(gw, "/ip", xr, source="127.0.0.2")[0], 403)
        # and with real_ip_from not holding 127.0.0.1, 127.0.0.1 is not believed
        gw2 = self.gateway({"routes": [
            self.route("ip", "/ip", plugins={"ip-restriction": {"whitelist": ["192.168.1.100"]}})]},
            config={"nginx_config": {"http": {"real_ip_from": ["127.0.0.2"]}}})
        self.assertEqual(call(gw2, "/ip", xr)[0], 403)
        self.assertEqual(call(gw2, "/ip", xr, source="127.0.0.2")[0], 200)

    def test_header_value_that_is_not_an_address_is_ignored(self):
        # nginx's realip: a value ngx_parse_addr_port refuses keeps the peer.
        gw = self.gateway({"routes": [self.route("r", "/*")]})
        for bad in ("not-an-ip", "192.168.1.300", "[::1]"):
            h = seen(gw, "/a", {"X-Real-IP": bad})
            self.assertEqual(h["x-real-ip"], ["127.0.0.1"], bad)
        # an address with a port is one
        self.assertEqual(seen(gw, "/a", {"X-Real-IP": "10.9.8.7:1234"})["x-real-ip"], ["10.9.8.7"])

    def test_real_ip_recursive_with_x_forwarded_for(self):
        # nginx: with real_ip_header X-Forwarded-For and real_ip_recursive on,
        # the client is the last address not in real_ip_from; off: the last
        # address. X-Forwarded-For upstream is the chain plus that client
        # ($proxy_add_x_forwarded_for).
        http_cfg = {"real_ip_header": "X-Forwarded-For", "real_ip_from": ["127.0.0.1", "10.0.0.0/8"]}
        chain = {"X-Forwarded-For": "1.1.1.1, 2.2.2.2, 10.0.0.5"}
        gw = self.gateway({"routes": [self.route("r", "/*")]},
                          config={"nginx_config": {"http": dict(http_cfg, real_ip_recursive="on")}})
        h = seen(gw, "/a", chain)
        self.assertEqual(h["x-real-ip"], ["2.2.2.2"])
        self.assertEqual(h["x-forwarded-for"], ["1.1.1.1, 2.2.2.2, 10.0.0.5, 2.2.2.2"])
        off = self.gateway({"routes": [self.route("r", "/*")]}, config={"nginx_config": {"http": http_cfg}})
        self.assertEqual(seen(off, "/a", chain)["x-real-ip"], ["10.0.0.5"])

    def test_invalid_real_ip_from_is_refused_naming_the_key(self):
        gw = self.gateway({"routes": []}, config={"nginx_config": {"http": {"real_ip_from": ["10.0.0.0/33"]}}},
                          start=False)
        r = run_holdfast(["-t", "-c", gw.config_path])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("nginx_config.http.real_ip_from[0]", r.stdout + r.stderr)

    # --- X-Forwarded-* and trusted_addresses ------------------------------

    spoof = {"X-Forwarded-For": "9.9.9.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test",
             "X-Forwarded-Port": "8443", "Forwarded": "for=1.2.3.4", "Host": "Api.Example.COM:8080"}

    def test_untrusted_peer_forwarded_headers_are_overwritten(self):
        # t/core/trusted-addresses.t 1: without trusted_addresses X-Forwarded-
        # Proto/Host/Port are this hop's and X-Forwarded-For is appended to;
        # 9 and 15: Forwarded is cleared. X-Forwarded-Host is the Host as sent,
        # port and case kept (ngx_tpl.lua's $var_x_forwarded_host).
        gw = self.gateway({"routes": [self.route("r", "/*")]})
        h = seen(gw, "/a", self.spoof)
        self.assertEqual(h["x-forwarded-proto"], ["http"])
        self.assertEqual(h["x-forwarded-host"], ["Api.Example.COM:8080"])
        self.assertEqual(h["x-forwarded-port"], ["8080"])
        self.assertEqual(h["x-forwarded-for"], ["9.9.9.9, 127.0.0.1"])
        self.assertNotIn("forwarded", h)
        # t/core/trusted-addresses.t 8, 15: with trusted_addresses, an
        # untrusted peer's X-Forwarded-For is dropped too; 18: route vars no
        # longer see it.
        gw2 = self.gateway({"routes": [
            self.route("xff", "/xff", vars=[["http_x_forwarded_for", "==", "9.9.9.9"]]),
            self.route("r", "/a")]},
            config={"apisix": {"trusted_addresses": ["10.0.0.0/8", "127.0.0.2"]}})
        h = seen(gw2, "/a", self.spoof)
        self.assertEqual(h["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual((h["x-forwarded-proto"], h["x-forwarded-host"], h["x-forwarded-port"]),
                         (["http"], ["Api.Example.COM:8080"], ["8080"]))
        self.assertNotIn("forwarded", h)
        self.assertEqual(call(gw2, "/xff", {"X-Forwarded-For": "9.9.9.9"})[0], 404)

    def test_trusted_peer_forwarded_headers_are_kept(self):
        # t/core/trusted-addresses.t 2, 10, 13, 16: a trusted peer's own
        # non-empty X-Forwarded-Proto/Host/Port and Forwarded go upstream, its
        # X-Forwarded-For is appended to; what it did not send is this hop's.
        gw = self.gateway({"routes": [
            self.route("xff", "/xff", vars=[["http_x_forwarded_for", "==", "9.9.9.9"]]),
            self.route("r", "/a")]},
            config={"apisix": {"trusted_addresses": ["127.0.0.2"]}})
        h = seen(gw, "/a", self.spoof, source="127.0.0.2")
        self.assertEqual(h["x-forwarded-proto"], ["https"])
        self.assertEqual(h["x-forwarded-host"], ["evil.test"])
        self.assertEqual(h["x-forwarded-port"], ["8443"])
        self.assertEqual(h["x-forwarded-for"], ["9.9.9.9, 127.0.0.2"])
        self.assertEqual(h["forwarded"], ["for=1.2.3.4"])
        self.assertEqual(call(gw, "/xff", {"X-Forwarded-For": "9.9.9.9"}, source="127.0.0.2")[0], 200)
        h = seen(gw, "/a", {"Host": "b.test:81", "X-Forwarded-Proto": ""}, source="127.0.0.2")
        self.assertEqual((h["x-forwarded-proto"], h["x-forwarded-host"], h["x-forwarded-port"]),
                         (["http"], ["b.test:81"], ["81"]))

    def test_redirect_http_to_https_believes_only_a_trusted_peer(self):
        # APISIX redirect.lua reads X-Forwarded-Proto after ngx_tpl.lua set it
        # to $scheme: a client's "https" counts only from a trusted peer.
        routes = {"routes": [self.route("r", "/*", plugins={"redirect": {"http_to_https": True}})]}
        gw = self.gateway(routes, config={"apisix": {"trusted_addresses": ["127.0.0.2"]}})
        xfp = {"X-Forwarded-Proto": "https", "Host": "a.test"}
        self.assertEqual(call(gw, "/p", xfp)[0], 301)
        status, _, body = call(gw, "/p", xfp, source="127.0.0.2")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["server"], "origin")
        plain = self.gateway(routes)
        self.assertEqual(call(plain, "/p", xfp, source="127.0.0.2")[0], 301)


if __name__ == "__main__":
    unittest.main()
