"""Configuration input budgets (src/core/budgets.h) end to end: a YAML alias
bomb on hot reload, the Admin API body size, one nesting-depth limit per
resource that every source (Admin API, etcd, S3 snapshot, local cache)
agrees on."""
import http.client
import json
import os
import socket
import time
import unittest

from harness import GatewayTest, wait_port, wait_status
from test_fallback import FallbackBase, fallback_cfg, wait_for

ADMIN = "/apisix/admin"


def alias_bomb():
    """9 levels x 9 aliases: under 1 KiB of YAML, 9^9 strings once expanded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\nroutes: []\n#END\n"


def nested_vars(levels):
    """A route `vars` expression whose route object is `levels` deep: the
    route is one level, `vars` one more, then one per nested group."""
    expr = ["arg_deep", "==", "1"]
    for _ in range(levels - 3):
        expr = ["AND", expr]
    return [expr]


def depth(v):
    if isinstance(v, dict):
        return 1 + max([depth(x) for x in v.values()] or [0])
    if isinstance(v, list):
        return 1 + max([depth(x) for x in v] or [0])
    return 0


class AliasBombTest(GatewayTest):
    def test_alias_bomb_on_hot_reload_keeps_the_previous_config(self):
        bomb = alias_bomb()
        self.assertLess(len(bomb), 1024)
        gw = self.gateway({"routes": [{"id": "1", "uri": "/ok", "plugins": {"mocking": {"response_example": "ok"}}}]})
        wait_status(gw, "/ok", 200)
        gw.write_raw(bomb)
        gw.wait_log("standalone file not applied, keeping the previous configuration", timeout=10)
        self.assertIn("aliases expand the document beyond 10 times", gw.logs())
        self.assertIsNone(gw.proc.poll(), "the node must survive the alias bomb")
        self.assertEqual(gw.get("/ok").status, 200)
        # and the next good file is applied as usual
        gw.reload({"routes": [{"id": "2", "uri": "/next", "plugins": {"mocking": {"response_example": "n"}}}]})
        self.assertEqual(gw.get("/next").status, 200)


class AdminBudgetTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.etcd_ = self.etcd()
        self.cp = self.etcd_gateway(self.etcd_, role="traditional")
        wait_port(self.cp.admin_port)

    def test_oversized_body_gets_413_and_nothing_is_stored(self):
        # The declared length decides: the answer comes before the body is read.
        with socket.create_connection(("127.0.0.1", self.cp.admin_port), timeout=5) as s:
            s.sendall(b"PUT /apisix/admin/routes/big HTTP/1.1\r\nHost: x\r\nX-API-KEY: admin-key\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 1572865\r\n\r\n{")
            head = s.recv(65536).split(b"\r\n", 1)[0]
        self.assertEqual(head, b"HTTP/1.1 413 Client Error")
        self.assertEqual(self.cp.admin("GET", ADMIN + "/routes/big")[0], 404)
        # exactly 1.5 MiB passes the budget and reaches validation (etcd's own
        # --max-request-bytes would refuse to store that much anyway)
        body = {"uri": "/big", "desc": ""}
        body["desc"] = "x" * (1572864 - len(json.dumps(body)))
        self.assertEqual(len(json.dumps(body)), 1572864)
        code, resp = self.cp.admin("PUT", ADMIN + "/routes/big", json.dumps(body))
        self.assertEqual(code, 400, resp)
        self.assertIn('property "desc" validation failed: string too long', resp["error_msg"])

    def test_depth_limit_is_64_per_resource(self):
        ok = {"uri": "/d64", "plugins": {"mocking": {"response_example": "x"}},
              "vars": [["arg_x", "in", json.loads("[" * 61 + "]" * 61)]]}
        self.assertEqual(depth(ok), 64)
        code, body = self.cp.admin("PUT", ADMIN + "/routes/d64", ok)
        self.assertEqual(code, 201, body)
        self.assertEqual(self.cp.admin("GET", ADMIN + "/routes/d64")[1]["value"]["vars"], ok["vars"])
        too_deep = {"uri": "/d65", "vars": [["arg_x", "in", json.loads("[" * 62 + "]" * 62)]]}
        self.assertEqual(depth(too_deep), 65)
        code, body = self.cp.admin("PUT", ADMIN + "/routes/d65", too_deep)
        self.assertEqual(code, 400, body)
        self.assertIn("nested deeper than 64 levels", body["error_msg"])
        # a PATCH cannot build what a body could not carry
        # plugins.mocking.deep sits 3 levels down: a 62-deep body makes the route 65 deep
        code, body = self.cp.admin("PATCH", ADMIN + "/routes/d64/plugins/mocking/deep", [json.loads("[" * 61 + "]" * 61)])
        self.assertEqual(code, 400, body)
        self.assertIn("nested deeper than 64 levels", body["error_msg"])


class DeepRouteEverySourceTest(FallbackBase):
    """A route 31 levels deep (Boost.JSON's default limit is 32): accepted by
    the Admin API, served by an etcd data plane, and then by traffic nodes
    from the S3 snapshot and from the local cache, where it sits inside
    {"routes": [...]} and {"resources": {"routes": [...]}}."""

    def test_deep_route_survives_s3_snapshot_and_local_cache(self):
        cp = self.etcd_gateway(self.etcd_, role="traditional")
        wait_port(cp.admin_port)
        route = {"uri": "/deep", "plugins": {"mocking": {"response_example": "deep"}}, "vars": nested_vars(31)}
        self.assertEqual(depth(route), 31)
        code, body = cp.admin("PUT", ADMIN + "/routes/deep", route)
        self.assertEqual(code, 201, body)
        open_route = {"uri": "/open", "plugins": {"mocking": {"response_example": "open"}}}
        self.assertEqual(cp.admin("PUT", ADMIN + "/routes/open", open_route)[0], 201)

        backup = self.backup_node()
        backup.start(wait=False)
        m = wait_for(lambda: (self.manifest() or {}).get("revision") == self.etcd_.revision() and self.manifest(),
                     what="manifest of the current revision")
        traffic = self.etcd_gateway(self.etcd_, config=fallback_cfg(self.peer))
        wait_status(traffic, "/deep?deep=1", 200)
        self.assertEqual(traffic.get("/deep").status, 404)  # the vars really are evaluated
        wait_for(lambda: os.path.exists(os.path.join(traffic.dir, "fallback-cache.json")), what="local cache")

        # etcd gone: a new traffic node serves the route from the S3 snapshot
        self.etcd_.stop()
        from_s3 = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=fallback_cfg(self.peer))
        wait_for(lambda: from_s3.get("/open").status == 200, what="traffic node serving from S3")
        self.assertEqual(from_s3.status()[1]["source"], "s3")
        self.assertEqual(from_s3.get("/deep?deep=1").status, 200, from_s3.logs()[-2000:])
        self.assertEqual(int(from_s3.status()[1]["revision"]), m["revision"])

        # S3 gone too: the first traffic node restarts from its local cache
        self.peer.stop()
        traffic.restart()
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node serving from the cache")
        self.assertEqual(traffic.status()[1]["source"], "cache")
        self.assertEqual(traffic.get("/deep?deep=1").status, 200, traffic.logs()[-2000:])


if __name__ == "__main__":
    unittest.main()
