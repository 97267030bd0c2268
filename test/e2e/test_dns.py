"""Upstream nodes given as host names: resolved by the gateway's own
resolver against a real DNS server (test/e2e/dnspeer.py), cached by TTL,
re-resolved in the background, never on the request path."""
import unittest

from dnspeer import DnsServer
from harness import GatewayTest, free_port, wait_status

NAME = "origin.holdfast.test"


def dns_config(dns, timeout=1):
    return {"apisix": {"dns_resolver": [dns.addr], "resolver_timeout": timeout,
                       "enable_resolv_search_opt": False}}


def name_route(port, name=NAME):
    return {"routes": [{"id": "r", "uri": "/*", "upstream": {"nodes": {f"{name}:{port}": 1}}}]}


class DnsTest(GatewayTest):
    def dns(self, records, ttl=1):
        d = DnsServer(records, ttl=ttl)
        self._procs.append(d)
        return d

    def test_node_given_as_name_is_served(self):
        up = self.upstream("named")
        dns = self.dns({NAME: ["127.0.0.1"]}, ttl=300)
        gw = self.gateway(name_route(up.port), config=dns_config(dns))
        r = wait_status(gw, "/x", 200)
        self.assertEqual(r.json()["server"], "named")
        gw.wait_log(f"dns: {NAME} resolves to 127.0.0.1")
        # Resolved once for its TTL (300 s), not once per request or connection.
        for i in range(5):
            self.assertEqual(gw.get(f"/close?{i}").status, 200)
        self.assertEqual(dns.stats()[0], 1)

    def test_node_follows_the_new_address_after_the_ttl(self):
        port = free_port()
        self.upstream("a", port=port, host="127.0.0.2")
        self.upstream("b", port=port, host="127.0.0.3")
        dns = self.dns({NAME: ["127.0.0.2"]}, ttl=1)
        gw = self.gateway(name_route(port), config=dns_config(dns))
        self.assertEqual(wait_status(gw, "/x", 200).json()["server"], "a")
        # A kept-alive connection to a exists now; it must not be reused
        # once the name points at b.
        self.assertEqual(gw.get("/y").json()["server"], "a")
        dns.set(NAME, ["127.0.0.3"])
        gw.wait_log(f"dns: {NAME} resolves to 127.0.0.3", timeout=10)
        # first address, then the new one: two rebuilds
        gw.wait_log("dns: node addresses changed", count=2)
        servers = [gw.get(f"/z{i}").json()["server"] for i in range(10)]
        self.assertEqual(servers, ["b"] * 10)

    def test_name_that_stops_resolving_keeps_its_last_addresses(self):
        up = self.upstream("kept")
        dns = self.dns({NAME: ["127.0.0.1"]}, ttl=1)
        gw = self.gateway(name_route(up.port), config=dns_config(dns))
        wait_status(gw, "/x", 200)
        dns.silent = True
        line = f"dns: cannot resolve {NAME}"
        gw.wait_log(line, timeout=10)
        # Let the resolver fail again: it sends each query twice, one
        # resolution at a time, so three more queries mean that the next
        # resolution has failed too. Still one line for the streak.
        dns.wait_queries(dns.stats()[0] + 3, timeout=15)
        for i in range(10):
            r = gw.get(f"/close?{i}")
            self.assertEqual(r.status, 200)
        logs = gw.logs()
        self.assertEqual(logs.count(line), 1, logs[-3000:])
        self.assertIn("keeping its last addresses 127.0.0.1", logs)
        # and when it answers again, that is said once too
        dns.silent = False
        gw.wait_log(f"dns: {NAME} resolves again: 127.0.0.1", timeout=15)

    def test_slow_resolver_does_not_delay_requests(self):
        named = self.upstream("named")
        by_ip = self.upstream("by-ip")
        dns = self.dns({NAME: ["127.0.0.1"]}, ttl=1)
        gw = self.gateway({"routes": [
            {"id": "name", "uri": "/*", "host": "name.test",
             "upstream": {"nodes": {f"{NAME}:{named.port}": 1}}},
            {"id": "ip", "uri": "/*", "host": "ip.test", "upstream": {"nodes": {by_ip.addr: 1}}},
        ]}, config=dns_config(dns, timeout=5))
        wait_status(gw, "/x", 200, headers={"Host": "name.test"})
        dns.delay = 3.0
        # Wait until a re-resolution is in flight: received, not yet answered.
        queries, answered = dns.stats()
        dns.wait_queries(queries + 1, timeout=10)
        pending_since = dns.stats()
        self.assertGreater(pending_since[0], pending_since[1])
        # New upstream connections (/close) to the resolved name and to an IP
        # node, on the same (single) worker, while the resolver waits.
        for i in range(5):
            for host, server in (("name.test", "named"), ("ip.test", "by-ip")):
                r = gw.get(f"/close?{i}", headers={"Host": host})
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, b"closed-body")
            r = gw.get(f"/echo{i}", headers={"Host": "name.test"})
            self.assertEqual(r.json()["server"], "named")
        # No answer was sent meanwhile: none of the requests waited for it.
        self.assertEqual(dns.stats()[1], pending_since[1])

    def test_active_health_check_probes_the_resolved_address(self):
        # The named node answers /health with 500: only a probe that reached
        # it at its resolved address can see an HTTP failure.
        named = self.upstream("named", mode="health=500")
        good = self.upstream("good")
        dns = self.dns({NAME: ["127.0.0.1"]}, ttl=300)
        gw = self.gateway({"routes": [{"id": "r", "uri": "/*", "upstream": {
            "nodes": {f"{NAME}:{named.port}": 1, good.addr: 1},
            "checks": {"active": {"http_path": "/health", "timeout": 1,
                                  "healthy": {"interval": 1, "successes": 1},
                                  "unhealthy": {"interval": 1, "http_failures": 1}}}}}]},
            config=dns_config(dns))
        gw.wait_log(f"node {NAME}:{named.port} marked unhealthy (http failures)", timeout=10)
        servers = {gw.get(f"/h{i}").json()["server"] for i in range(10)}
        self.assertEqual(servers, {"good"})

    def test_name_never_resolved_is_502_not_a_stall(self):
        up = self.upstream("never")
        dns = self.dns({}, ttl=1)  # NXDOMAIN for everything
        gw = self.gateway(name_route(up.port, name="missing.holdfast.test"), config=dns_config(dns))
        gw.wait_log("dns: cannot resolve missing.holdfast.test: no such name (NXDOMAIN); its nodes are unusable")
        r = gw.get("/x", timeout=3)
        self.assertEqual(r.status, 502)
        gw.wait_log("node missing.holdfast.test has no address yet")


if __name__ == "__main__":
    unittest.main()
