"""Fields Holdfast does not implement are never ignored silently (#11 item
9), through the real binary. In a plugin configuration, a field APISIX's
schema does not know is accepted as APISIX accepts it (none of the ten
plugins' schemas sets additionalProperties = false) and named in a warning
at load time, in `holdfast -t` and in the Admin API's log; the rest of the
configuration is applied whole. In a resource (every APISIX resource schema
is closed), a key APISIX has and Holdfast does not act on is named, or
refused where ignoring it would change the behaviour.
"""
import os
import shutil
import tempfile
import time
import unittest

from harness import GatewayTest, run_holdfast, wait_port, yaml_dump


def route(rid, uri, up, plugins):
    return {"id": rid, "uri": uri, "upstream": {"nodes": {up.addr: 1}}, "plugins": plugins}


class PluginFieldsTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("up1")

    def test_unknown_field_is_accepted_with_a_warning(self):
        # APISIX's t/plugin/cors.t TEST 4 writes `madx_age` (a typo): its
        # schema accepts it and the route works with the default max_age.
        gw = self.gateway({"routes": [
            route("c1", "/c", self.up, {"cors": {"allow_origins": "**", "madx_age": 5}}),
            route("f1", "/f", self.up, {"fault-injection": {"abort": {"http_status": 403, "reason": "x"}}}),
            route("l1", "/l", self.up, {"limit-count": {"count": 1, "time_window": 60, "redis_host": "r"}}),
        ]})
        r = gw.get("/c", headers={"Origin": "http://a.test"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://a.test")
        self.assertEqual(r.headers.get("access-control-max-age"), "5")
        # A nested object's unknown field (abort.reason): the abort still applies.
        self.assertEqual(gw.get("/f").status, 403)
        # A redis setting under the local policy changes nothing: the limit applies.
        self.assertEqual(gw.get("/l").status, 200)
        self.assertEqual(gw.get("/l").status, 503)
        gw.wait_log("routes/c1: plugin cors: unknown field madx_age (ignored, as APISIX ignores it)")
        gw.wait_log("routes/f1: plugin fault-injection: unknown field abort.reason")
        gw.wait_log("routes/l1: plugin limit-count: field redis_host is not implemented by Holdfast (ignored")

    def test_consumer_auth_conf_unknown_field_is_named(self):
        # APISIX's consumer schemas (key-auth, basic-auth, jwt-auth) are open
        # too: an unknown field is accepted and the consumer authenticates.
        gw = self.gateway({
            "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key", "keyy": "typo"}}},
                          {"username": "rose", "plugins": {"basic-auth": {"username": "rose", "password": "pw",
                                                                          "salt": 1}}}],
            "routes": [route("k1", "/k", self.up, {"key-auth": {}}),
                       route("b1", "/b", self.up, {"basic-auth": {}})]})
        self.assertEqual(gw.get("/k", headers={"apikey": "jack-key"}).status, 200)
        self.assertEqual(gw.get("/b", headers={"Authorization": "Basic cm9zZTpwdw=="}).status, 200)
        gw.wait_log("consumers/jack: plugin key-auth: unknown field keyy (ignored, as APISIX ignores it)")
        gw.wait_log("consumers/rose: plugin basic-auth: unknown field salt (ignored, as APISIX ignores it)")
        self.assertNotIn("jack-key", gw.logs())

    def test_warning_once_per_change_and_names_odd_fields_quoted(self):
        plugins = {"request-id": {"header_name": "X-Id", "bad\tname": 1}}
        gw = self.gateway({"routes": [route("q1", "/q", self.up, plugins)]})
        self.assertTrue(gw.get("/q").headers.get("x-id"))
        warning = 'routes/q1: plugin request-id: unknown field "bad\\tname"'
        gw.wait_log(warning)
        self.assertNotIn("bad\tname", gw.logs())
        # A reload that leaves the route alone does not repeat it.
        gw.reload({"routes": [route("q1", "/q", self.up, plugins), route("q2", "/q2", self.up, {})]})
        self.assertEqual(gw.get("/q2").status, 200)
        self.assertEqual(gw.logs().count(warning), 1)

    def test_inherited_plugin_is_named_under_its_service_only(self):
        gw = self.gateway({
            "services": [{"id": "s1", "plugins": {"cors": {"madx_age": 1}}}],
            "routes": [{"id": "r1", "uri": "/s", "service_id": "s1", "upstream": {"nodes": {self.up.addr: 1}}}]})
        self.assertEqual(gw.get("/s").status, 200)
        gw.wait_log("services/s1: plugin cors: unknown field madx_age")
        self.assertNotIn("routes/r1: plugin cors", gw.logs())

    def test_empty_fault_injection_is_still_refused(self):
        # APISIX's minProperties = 1 (t/plugin/fault-injection.t TEST 3):
        # counted on what was written, so `{}` is refused, `{"x": 1}` is not.
        gw = self.gateway({"routes": [route("e1", "/e", self.up, {"fault-injection": {}}),
                                      route("e2", "/e2", self.up, {"fault-injection": {"x": 1}})]})
        self.assertEqual(gw.get("/e").status, 404)
        self.assertEqual(gw.get("/e2").status, 200)
        gw.wait_log("expect object to have at least 1 properties")

    def test_config_test_names_ignored_fields(self):
        d = tempfile.mkdtemp(prefix="holdfast-fields-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write("deployment:\n  role: data_plane\n  role_data_plane:\n    config_provider: yaml\n")
        with open(os.path.join(d, "apisix.yaml"), "w") as f:
            f.write(yaml_dump({"routes": [route("t1", "/t", self.up, {"cors": {"madx_age": 5}})]}) + "#END\n")
        p = run_holdfast(["-t", "-c", os.path.join(d, "config.yaml")])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("holdfast: warning: ", p.stderr)
        self.assertIn("routes/t1: plugin cors: unknown field madx_age", p.stderr)

    def test_admin_api_accepts_and_logs(self):
        etcd = self.etcd()
        gw = self.etcd_gateway(etcd, role="traditional")
        wait_port(gw.admin_port)
        body = {"uri": "/adm", "upstream": {"nodes": {self.up.addr: 1}},
                "plugins": {"cors": {"allow_origins": "**", "madx_age": 5}}}
        status, reply = gw.admin("PUT", "/apisix/admin/routes/a1", body)
        self.assertIn(status, (200, 201), reply)
        # Stored as written, as APISIX stores it.
        self.assertEqual(reply["value"]["plugins"]["cors"]["madx_age"], 5)
        gw.wait_log("Admin API: routes/a1: plugin cors: unknown field madx_age")
        deadline = time.time() + 5
        while True:
            r = gw.get("/adm", headers={"Origin": "http://a.test"})
            if r.status == 200 or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://a.test")



class ResourceKeysTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("up1")

    def checked(self, active):
        return {"nodes": {self.up.addr: 1},
                "checks": {"active": dict({"http_path": "/", "healthy": {"interval": 60}}, **active)}}

    def test_health_check_keys(self):
        gw = self.gateway({
            "upstreams": [dict(self.checked({"concurrency": 2}), id="u1")],
            "routes": [
                {"id": "ok", "uri": "/ok", "upstream_id": "u1"},
                # APISIX's defaults (GET, an empty body) are what probes do.
                {"id": "dflt", "uri": "/dflt", "upstream": self.checked({"http_method": "GET", "http_req_body": ""})},
                # A probe APISIX would send with POST or a body: refused, named.
                {"id": "post", "uri": "/post", "upstream": self.checked({"http_method": "POST"})},
            ]})
        self.assertEqual(gw.get("/ok").status, 200)
        self.assertEqual(gw.get("/dflt").status, 200)
        self.assertEqual(gw.get("/post").status, 404)
        gw.wait_log("upstreams/u1: checks.active.concurrency is not implemented by Holdfast")
        gw.wait_log("http_method other than GET is not supported by Holdfast")

    def test_admin_api_names_ignored_upstream_keys(self):
        etcd = self.etcd()
        gw = self.etcd_gateway(etcd, role="traditional")
        wait_port(gw.admin_port)
        status, reply = gw.admin("PUT", "/apisix/admin/upstreams/d1",
                                 {"service_name": "svc", "discovery_type": "dns"})
        self.assertIn(status, (200, 201), reply)
        gw.wait_log("Admin API: upstreams/d1: service_name is not implemented by Holdfast")


if __name__ == "__main__":
    unittest.main()
