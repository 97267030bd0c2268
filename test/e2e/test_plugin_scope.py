"""What issue #12 leaves out (item 6), through the real binary: a route that
uses openid-connect, proxy-cache, opentelemetry or request-validation is
skipped with APISIX's `unknown plugin [name]` message, never served without
the plugin; and W3C `traceparent` / `tracestate` reach the upstream
untouched (Holdfast has no tracer of its own to replace them).
"""
import unittest

from harness import Gateway, Upstream

OUT_OF_SCOPE = {
    "openid-connect": {"client_id": "c", "client_secret": "s",
                       "discovery": "http://127.0.0.1:1/.well-known/openid-configuration"},
    "proxy-cache": {},
    "opentelemetry": {"sampler": {"name": "always_on"}},
    "request-validation": {"body_schema": {"type": "object", "required": ["x"]}},
}


class PluginScopeTest(unittest.TestCase):
    def setUp(self):
        self.up = Upstream("u1")
        self.addCleanup(self.up.stop)

    def gateway(self, resources):
        gw = Gateway(resources)
        self.addCleanup(gw.stop)
        return gw

    def test_out_of_scope_plugins_skip_their_route(self):
        routes = [{"id": name, "uri": f"/{name}", "plugins": {name: conf},
                   "upstream": {"nodes": {self.up.addr: 1}}} for name, conf in OUT_OF_SCOPE.items()]
        routes.append({"id": "plain", "uri": "/plain", "upstream": {"nodes": {self.up.addr: 1}}})
        gw = self.gateway({"routes": routes})
        self.assertEqual(gw.get("/plain").status, 200)
        for name in OUT_OF_SCOPE:
            with self.subTest(plugin=name):
                # Never proxied without the plugin it asked for.
                self.assertEqual(gw.get(f"/{name}").status, 404)
                gw.wait_log(f"unknown plugin [{name}]")

    def test_traceparent_passes_through(self):
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        gw = self.gateway({"routes": [{"id": "r", "uri": "/anything*",
                                       "plugins": {"response-rewrite": {"headers": {"set": {"X-Seen": "1"}}}},
                                       "upstream": {"nodes": {self.up.addr: 1}}}]})
        r = gw.get("/anything/t", headers={"traceparent": tp, "tracestate": "vendor=opaque"})
        self.assertEqual(r.status, 200)
        headers = r.json()["headers"]
        self.assertEqual(headers.get("traceparent"), tp)
        self.assertEqual(headers.get("tracestate"), "vendor=opaque")


if __name__ == "__main__":
    unittest.main()
