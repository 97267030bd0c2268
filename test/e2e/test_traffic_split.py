"""traffic-split (issue #12 item 3) through the real binary, a real etcd (the
Admin API of a traditional node writes there) and several real upstreams:
weighted round-robin counts, `match` rules, `upstream_id` references that
follow the referenced upstream, active health checks on a split upstream,
and APISIX's schema messages on bad configurations.

Expected behaviour is APISIX 3.x (apisix/plugins/traffic-split.lua,
t/plugin/traffic-split*.t)."""
import collections
import time
import unittest

from harness import GatewayTest, wait_port
from test_plugins import call, get
from test_prometheus import parse, scrape, value

ADMIN = "/apisix/admin"


def wait_until(what, fn, timeout=10.0):
    """Polls fn() until it returns a true value; returns it."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what}: not reached (last: {last!r})")


class TrafficSplitTest(GatewayTest):
    """One etcd, one traditional node and four upstreams for the class; each
    test uses its own route ids and paths."""

    @classmethod
    def setUpClass(cls):
        cls._holder = GatewayTest()
        cls._holder.setUp()
        cls.etcd_srv = cls._holder.etcd()
        cls.gw = cls._holder.etcd_gateway(cls.etcd_srv, role="traditional")
        wait_port(cls.gw.admin_port)
        cls.a = cls._holder.upstream("A")
        cls.b = cls._holder.upstream("B")
        cls.c = cls._holder.upstream("C")
        cls.bad = cls._holder.upstream("bad", mode="health=500")  # serves, but /health answers 500

    @classmethod
    def tearDownClass(cls):
        cls._holder.tearDown()

    def put(self, kind, rid, body):
        code, resp = self.gw.admin("PUT", f"{ADMIN}/{kind}/{rid}", body)
        self.assertIn(code, (200, 201), resp)

    def server(self, path, headers=None):
        r = get(self.gw, path, headers=headers)
        return r.headers.get("x-upstream") if r.status == 200 else f"status {r.status}"

    def split_route(self, rid, uri, rules, upstream=None):
        body = {"uri": uri, "plugins": {"traffic-split": {"rules": rules}}}
        if upstream is not None:
            body["upstream"] = {"nodes": {upstream.addr: 1}}
        self.put("routes", rid, body)

    def test_weights_roundrobin(self):
        self.put("upstreams", "ts-w-b", {"nodes": {self.b.addr: 1}})
        self.split_route("ts-w", "/w/*", [{"weighted_upstreams": [
            {"upstream": {"nodes": {self.a.addr: 1}, "type": "roundrobin"}, "weight": 3},
            {"upstream_id": "ts-w-b", "weight": 2},
            {"weight": 1},  # the route's own upstream
        ]}], upstream=self.c)
        wait_until("route served", lambda: self.server("/w/0") in ("A", "B", "C"))
        # APISIX's round-robin is periodic over sum(weights)/gcd = 6 picks:
        # any 60 consecutive requests are 10 whole periods, whatever the phase.
        counts = collections.Counter(self.server(f"/w/{i}") for i in range(60))
        self.assertEqual(counts, {"A": 30, "B": 20, "C": 10})

    def test_weight_zero_entry_never_chosen(self):
        self.split_route("ts-z", "/z/*", [{"weighted_upstreams": [
            {"upstream": {"nodes": {self.a.addr: 1}}, "weight": 0},
            {"weight": 2},
        ]}], upstream=self.c)
        wait_until("route served", lambda: self.server("/z/0") == "C")
        self.assertEqual({self.server(f"/z/{i}") for i in range(12)}, {"C"})

    def test_match_by_header_or_arg_else_route_upstream(self):
        self.split_route("ts-m", "/m/*", [
            {"match": [{"vars": [["http_x_canary", "==", "1"]]}, {"vars": [["arg_canary", "==", "yes"]]}],
             "weighted_upstreams": [{"upstream": {"nodes": {self.a.addr: 1}}}]},
            {"match": [{"vars": [["arg_beta", "==", "1"], ["http_x_beta", "==", "on"]]}],
             "weighted_upstreams": [{"upstream": {"nodes": {self.b.addr: 1}}}]},
        ], upstream=self.c)
        wait_until("route served", lambda: self.server("/m/x") == "C")
        self.assertEqual(self.server("/m/x", {"X-Canary": "1"}), "A")
        self.assertEqual(self.server("/m/x?canary=yes"), "A")  # the second match entry: OR
        self.assertEqual(self.server("/m/x", {"X-Canary": "2"}), "C")
        self.assertEqual(self.server("/m/x?canary=no"), "C")
        # Within one vars list the conditions are ANDed.
        self.assertEqual(self.server("/m/x?beta=1", {"X-Beta": "on"}), "B")
        self.assertEqual(self.server("/m/x?beta=1"), "C")
        # The first rule that passes wins.
        self.assertEqual(self.server("/m/x?beta=1&canary=yes", {"X-Beta": "on"}), "A")

    def test_match_by_post_arg(self):
        self.split_route("ts-post", "/post/*", [
            {"match": [{"vars": [["post_arg_canary", "==", "1"]]}],
             "weighted_upstreams": [{"upstream": {"nodes": {self.a.addr: 1}}}]}], upstream=self.c)
        form = {"Content-Type": "application/x-www-form-urlencoded"}

        def post(body):
            r = call(self.gw, "POST", "/post/x", headers=form, body=body)
            return r.headers.get("x-upstream") if r.status == 200 else f"status {r.status}"
        wait_until("route served", lambda: post("canary=0") == "C")
        self.assertEqual(post("a=b&canary=1"), "A")
        self.assertEqual(post("canary=2"), "C")

    def test_upstream_id_follows_update_and_missing_id(self):
        self.put("upstreams", "ts-ref", {"nodes": {self.a.addr: 1}})
        self.split_route("ts-r", "/r/*", [{"weighted_upstreams": [{"upstream_id": "ts-ref"}]}], upstream=self.c)
        wait_until("split to A", lambda: self.server("/r/x") == "A")
        self.put("upstreams", "ts-ref", {"nodes": {self.b.addr: 1}})
        wait_until("split follows the upstream's update", lambda: self.server("/r/x") == "B")
        self.assertEqual({self.server(f"/r/{i}") for i in range(6)}, {"B"})

        # An upstream_id naming no upstream: APISIX's 500 for requests that
        # reach that rule, and a log line naming route, plugin and field.
        self.split_route("ts-miss", "/miss/*", [
            {"match": [{"vars": [["arg_go", "==", "1"]]}], "weighted_upstreams": [{"upstream_id": "ts-none"}]},
        ], upstream=self.c)
        r = wait_until("missing upstream_id answered",
                       lambda: (lambda r: r if r.status == 500 else None)(get(self.gw, "/miss/x?go=1")))
        self.assertEqual(r.body, b"failed to fetch upstream info by upstream id: ts-none")
        self.gw.wait_log("routes/ts-miss: plugin traffic-split: rules[1].weighted_upstreams[1].upstream_id: "
                         "failed to fetch upstream info by upstream id: ts-none")
        # The first rule is checked before its match: every request reaches it.
        self.assertEqual(get(self.gw, "/miss/x").status, 500)
        self.put("upstreams", "ts-none", {"nodes": {self.b.addr: 1}})
        wait_until("the reference resolves once the upstream exists", lambda: self.server("/miss/x?go=1") == "B")
        self.assertEqual(self.server("/miss/x"), "C")

    def test_referenced_upstream_cannot_be_deleted(self):
        self.put("upstreams", "ts-del", {"nodes": {self.a.addr: 1}})
        self.split_route("ts-d", "/d/*", [{"weighted_upstreams": [{"weight": 1}, {"upstream_id": "ts-del"}]}],
                         upstream=self.c)
        self.put("plugin_configs", "ts-pc", {"plugins": {"traffic-split": {"rules": [
            {"weighted_upstreams": [{"upstream_id": "ts-del"}]}]}}})
        self.assertEqual(self.gw.admin("DELETE", f"{ADMIN}/upstreams/ts-del"),
                         (400, {"error_msg": "can not delete this upstream, plugin in route [ts-d] is still using it now"}))
        self.assertEqual(self.gw.admin("DELETE", f"{ADMIN}/routes/ts-d")[0], 200)
        self.assertEqual(self.gw.admin("DELETE", f"{ADMIN}/upstreams/ts-del"),
                         (400, {"error_msg": "can not delete this upstream, plugin in plugin_config [ts-pc] is still "
                                             "using it now"}))
        self.assertEqual(self.gw.admin("DELETE", f"{ADMIN}/plugin_configs/ts-pc")[0], 200)
        self.assertEqual(self.gw.admin("DELETE", f"{ADMIN}/upstreams/ts-del")[0], 200)

    def test_unhealthy_split_node_avoided(self):
        checks = {"active": {"http_path": "/health", "timeout": 1,
                             "healthy": {"interval": 1, "successes": 1},
                             "unhealthy": {"interval": 1, "http_failures": 1}}}
        self.split_route("ts-h", "/h/*", [{"weighted_upstreams": [
            {"upstream": {"nodes": {self.a.addr: 1, self.bad.addr: 1}, "checks": checks}}]}], upstream=self.c)
        wait_until("route served", lambda: self.server("/h/0") in ("A", "bad"))
        self.gw.wait_log(f"node {self.bad.addr} marked unhealthy", timeout=10)
        self.assertEqual({self.server(f"/h/{i}") for i in range(20)}, {"A"})
        # Their state is exported as APISIX's checkers' is.
        samples = parse(scrape(self.gw.prometheus_port)[2])
        name = "/apisix/routes/ts-h/traffic-split/rules[1].weighted_upstreams[1]"
        self.assertEqual(value(samples, "apisix_upstream_status", name=name, port=self.bad.port), 0)
        self.assertEqual(value(samples, "apisix_upstream_status", name=name, port=self.a.port), 1)

    def test_split_upstream_pass_host(self):
        self.split_route("ts-p", "/p/*", [{"weighted_upstreams": [
            {"upstream": {"nodes": {self.a.addr: 1}, "pass_host": "rewrite", "upstream_host": "split.example"}}]}],
            upstream=self.c)
        r = wait_until("split to A", lambda: (lambda r: r if r.headers.get("x-upstream") == "A" else None)(
            get(self.gw, "/p/x")))
        self.assertEqual(r.json()["headers"]["host"], "split.example")

    def test_bad_config_rejected_with_apisix_messages(self):
        prefix = "failed to check the configuration of plugin traffic-split err: "
        cases = [
            ({"rules": [{"weighted_upstreams": [{"weight": -1}]}]},
             'property "rules" validation failed: failed to validate item 1: property "weighted_upstreams" '
             'validation failed: failed to validate item 1: property "weight" validation failed: '
             'expected -1 to be at least 0'),
            ({"rules": [{"weighted_upstreams": []}]},
             'property "rules" validation failed: failed to validate item 1: property "weighted_upstreams" '
             'validation failed: expect array to have at least 1 items'),
            ({"rules": [{"match": [{"vars": [["arg_name", 123, "jack"]]}]}]},
             "failed to validate the 'vars' expression: invalid operator '123'"),
            ({"rules": [{"weighted_upstreams": [{"upstream_id": "bad id!"}]}]},
             'property "rules" validation failed: failed to validate item 1: property "weighted_upstreams" '
             'validation failed: failed to validate item 1: property "upstream_id" validation failed: '
             'object matches none of the required'),
        ]
        for conf, msg in cases:
            with self.subTest(conf=conf):
                code, body = self.gw.admin("PUT", f"{ADMIN}/routes/ts-bad",
                                           {"uri": "/bad", "plugins": {"traffic-split": conf},
                                            "upstream": {"nodes": {self.c.addr: 1}}})
                self.assertEqual(code, 400, body)
                self.assertEqual(body, {"error_msg": prefix + msg})
        self.assertIsNone(self.etcd_srv.get("/apisix/routes/ts-bad"))


if __name__ == "__main__":
    unittest.main()
