"""Active and passive health checks against real upstream processes."""
import time
import unittest

from harness import GatewayTest


def checked_route(nodes, checks):
    return {"routes": [{"id": "r", "uri": "/*", "upstream": {"nodes": nodes, "checks": checks}}]}


class HealthCheckTest(GatewayTest):
    def test_active_http_check_removes_unhealthy_node(self):
        good = self.upstream("good")
        bad = self.upstream("bad", mode="health=500")  # alive, but /health answers 500
        gw = self.gateway(checked_route({good.addr: 1, bad.addr: 1}, {
            "active": {"http_path": "/health", "timeout": 1,
                       "healthy": {"interval": 1, "successes": 1},
                       "unhealthy": {"interval": 1, "http_failures": 1}}}))
        gw.wait_log("marked unhealthy (http failures)", timeout=5)
        servers = [gw.get(f"/x{i}").json()["server"] for i in range(20)]
        self.assertEqual(set(servers), {"good"})

    def test_active_tcp_check_and_recovery(self):
        good = self.upstream("good")
        flappy = self.upstream("flappy")
        port = flappy.port
        gw = self.gateway(checked_route({good.addr: 1, flappy.addr: 1}, {
            "active": {"type": "tcp", "timeout": 1,
                       "healthy": {"interval": 1, "successes": 1},
                       "unhealthy": {"interval": 1, "tcp_failures": 1}}}))
        self.assertEqual({gw.get(f"/a{i}").json()["server"] for i in range(10)}, {"good", "flappy"})
        flappy.stop()
        gw.wait_log("marked unhealthy (tcp failures)", timeout=5)
        revived = self.upstream("flappy", port=port)
        gw.wait_log("is healthy again", timeout=5)
        seen = {gw.get(f"/b{i}").json()["server"] for i in range(10)}
        self.assertEqual(seen, {"good", "flappy"})
        revived.stop()

    def test_passive_check_marks_failing_node(self):
        good = self.upstream("good")
        failing = self.upstream("failing", mode="fail=500")
        gw = self.gateway(checked_route({good.addr: 1, failing.addr: 1}, {
            # active is required by the schema; a long interval keeps it out of the way
            "active": {"http_path": "/health", "healthy": {"interval": 300}, "unhealthy": {"interval": 300}},
            "passive": {"unhealthy": {"http_statuses": [500], "http_failures": 2}}}))
        statuses = [gw.get(f"/p{i}").status for i in range(6)]
        self.assertIn(500, statuses)  # the failing node was used before it was detected
        gw.wait_log("marked unhealthy (passive)")
        after = [gw.get(f"/q{i}") for i in range(10)]
        self.assertTrue(all(r.status == 200 and r.json()["server"] == "good" for r in after))

    def test_all_nodes_unhealthy_still_tries_them(self):
        only = self.upstream("only", mode="health=500")
        gw = self.gateway(checked_route({only.addr: 1}, {
            "active": {"http_path": "/health", "healthy": {"interval": 1}, "unhealthy": {"interval": 1, "http_failures": 1}}}))
        gw.wait_log("marked unhealthy")
        self.assertEqual(gw.get("/x").status, 200)


if __name__ == "__main__":
    unittest.main()
