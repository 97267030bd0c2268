"""The traffic plugins of issue #12 item 3 through the real binary, real
sockets and real upstreams: limit-req (leaky bucket, delay without blocking a
worker, state shared by workers), limit-conn (the count drops when the
request ends: response sent, tunnel closed, client gone), uri-blocker and
real-ip; each plugin's schema checked on arrival (a bad one leaves the route
out with a log line naming route, plugin and field).

Expected behaviour is APISIX 3.x (apisix/plugins/<name>.lua, t/plugin/<name>.t).
No assertion is about speed: a delay is checked by ordering and a generous
lower bound only."""
import json
import socket
import threading
import time
import unittest

from harness import GatewayTest, LoopbackServer, free_port
from test_plugins import Resp, call, get, route
from test_shared_dict import metric
from test_streaming import WebSocketUpstream, read_head
import base64
import os


class HeldUpstream(LoopbackServer):
    """An upstream that holds every request until `release` is set: `arrived`
    counts the requests it has received (with the time each came), so that a
    test knows when a request is in flight without sleeping."""

    def __init__(self):
        self.release = threading.Event()
        self.arrivals = []
        self.cond = threading.Condition()
        super().__init__()

    def serve(self, c, _index):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            with self.cond:
                self.arrivals.append((time.time(), head.split(b"\r\n")[0].decode()))
                self.cond.notify_all()
            self.release.wait(30)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nheld")

    def wait_arrivals(self, n, timeout=10):
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.arrivals) >= n, timeout)
        if not ok:
            raise AssertionError(f"upstream saw {len(self.arrivals)} requests, expected {n}")


def in_thread(fn, *args, **kw):
    """Runs fn in a thread; returns (thread, box) where box gets 'result' or 'error'."""
    box = {}

    def run():
        try:
            box["result"] = fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - reported by the test
            box["error"] = e
        box["done"] = time.time()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def poll_status(gw, path, want, timeout=10.0, **kw):
    """Requests `path` until it answers `want`; returns the statuses seen."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = get(gw, path, **kw).status
        seen.append(s)
        if s == want:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{path} never answered {want}; saw {seen[-10:]}")


class TrafficTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("up1")

    def assert_skipped(self, gw, rid, plugin, text):
        """The route is left out with one log line naming it, the plugin and the field."""
        line = f"skipping invalid route id={rid}: failed to check the configuration of plugin {plugin} err: {text}"
        gw.wait_log(line)
        self.assertEqual(get(gw, f"/{rid}").status, 404)


# --------------------------------------------------------------------------
# limit-req


class LimitReqTest(TrafficTest):
    def test_nodelay_burst_then_rejected_with_empty_503(self):
        # rate 0.01/s: the bucket leaks 10 thousandths a second, nothing
        # during the test. The first request finds it empty, the second fits
        # the burst of 1 (and would wait 100 s without nodelay: the call's
        # 10 s timeout would fail it), the third is beyond it.
        gw = self.gateway({"routes": [route("lr", "/lr", self.up, {"limit-req": {
            "rate": 0.01, "burst": 1, "key": "remote_addr", "nodelay": True}})]})
        rs = [get(gw, "/lr") for _ in range(3)]
        self.assertEqual([r.status for r in rs], [200, 200, 503], rs)
        self.assertEqual(rs[0].headers.get("x-upstream"), "up1")
        self.assertEqual(rs[2].body, b"")
        self.assertIsNone(rs[2].headers.get("x-upstream"))

    def test_rejected_code_and_msg(self):
        gw = self.gateway({"routes": [route("lr", "/lr", self.up, {"limit-req": {
            "rate": 0.01, "burst": 0, "key": "remote_addr", "rejected_code": 429, "rejected_msg": "too fast"}})]})
        self.assertEqual(get(gw, "/lr").status, 200)
        r = get(gw, "/lr")
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json(), {"error_msg": "too fast"})

    def test_excess_within_burst_is_delayed_without_blocking_the_worker(self):
        # One worker: if the delay blocked its thread, nothing else would be
        # served until it ended.
        gw = self.gateway({"routes": [
            route("lr", "/lr", self.up, {"limit-req": {"rate": 0.2, "burst": 1, "key": "remote_addr"}}),
            route("free", "/free", self.up)],
        }, config={"nginx_config": {"error_log_level": "debug"}})
        self.assertEqual(get(gw, "/lr").status, 200)
        # The second request finds one request of excess: it waits 1/0.2 = 5 s.
        t0 = time.time()
        th, box = in_thread(get, gw, "/lr", timeout=60)
        gw.wait_log("limit-req: delaying the request by")
        # Meanwhile the same worker serves another request, and the delayed
        # one is still waiting when that answer comes back.
        self.assertEqual(get(gw, "/free").status, 200)
        self.assertNotIn("done", box, "the delayed request ended before the other was served")
        th.join(60)
        self.assertNotIn("error", box, box)
        self.assertEqual(box["result"].status, 200)
        self.assertEqual(box["result"].headers.get("x-upstream"), "up1")
        # Lower bound only, with a wide margin (5 s were asked for).
        self.assertGreaterEqual(box["done"] - t0, 3.0)

    def test_bucket_leaks_at_rate(self):
        # rate 1/s, burst 0: a second request within the second is rejected;
        # once the bucket had a second to leak, a request fits again (polled).
        gw = self.gateway({"routes": [route("lr", "/lr", self.up, {"limit-req": {
            "rate": 1, "burst": 0, "key": "remote_addr", "nodelay": True}})]})
        self.assertEqual([get(gw, "/lr").status for _ in range(2)], [200, 503])
        seen = poll_status(gw, "/lr", 200)
        self.assertEqual(seen[-1], 200)

    def test_state_is_shared_by_all_workers(self):
        # New connections spread over both workers (SO_REUSEPORT); one bucket
        # for the client address lets exactly 1 + burst through.
        gw = self.gateway({"routes": [route("lr", "/lr", self.up, {"limit-req": {
            "rate": 0.01, "burst": 2, "key": "remote_addr", "nodelay": True}})]}, workers=2)
        statuses = [get(gw, "/lr").status for _ in range(10)]
        self.assertEqual(statuses, [200, 200, 200] + [503] * 7)

    def test_keys_like_limit_count(self):
        gw = self.gateway({"routes": [
            route("h", "/h", self.up, {"limit-req": {"rate": 0.01, "burst": 0, "key": "http_x_user", "nodelay": True}}),
            route("c", "/c", self.up, {"limit-req": {"rate": 0.01, "burst": 0, "key_type": "var_combination",
                                                     "key": "$http_x_a-$http_x_b", "nodelay": True}})]})
        self.assertEqual(get(gw, "/h", headers={"X-User": "ann"}).status, 200)
        self.assertEqual(get(gw, "/h", headers={"X-User": "ann"}).status, 503)
        self.assertEqual(get(gw, "/h", headers={"X-User": "bob"}).status, 200)
        # A key variable that is not set counts the client address.
        self.assertEqual(get(gw, "/h", source="127.0.0.2").status, 200)
        self.assertEqual(get(gw, "/h", source="127.0.0.2").status, 503)
        self.assertEqual(get(gw, "/h", source="127.0.0.3").status, 200)
        self.assertEqual(get(gw, "/c", headers={"X-A": "1", "X-B": "2"}).status, 200)
        self.assertEqual(get(gw, "/c", headers={"X-A": "1", "X-B": "2"}).status, 503)
        self.assertEqual(get(gw, "/c", headers={"X-A": "1", "X-B": "3"}).status, 200)

    def test_state_lives_in_the_bounded_store(self):
        gw = self.gateway({"routes": [route("lr", "/lr", self.up, {"limit-req": {
            "rate": 0.01, "burst": 0, "key": "http_x_user", "nodelay": True}})]},
            config={"apisix": {"status": {"ip": "127.0.0.1", "port": free_port()}},
                    "nginx_config": {"http": {"lua_shared_dict": {"plugin-limit-req": "1m"}}}})
        for u in ("a", "b", "c"):
            self.assertEqual(get(gw, "/lr", headers={"X-User": u}).status, 200)
        m = gw.request_status_raw("/metrics")
        d = {"dict": "plugin-limit-req"}
        self.assertEqual(metric(m, "holdfast_shared_dict_capacity_bytes", **d), 1 << 20, m)
        self.assertEqual(metric(m, "holdfast_shared_dict_entries", **d), 3, m)

    def test_schema_errors_leave_the_route_out(self):
        gw = self.gateway({"routes": [
            route("norate", "/norate", self.up, {"limit-req": {"burst": 1, "key": "remote_addr"}}),
            route("zero", "/zero", self.up, {"limit-req": {"rate": 0, "burst": 1, "key": "remote_addr"}}),
            route("neg", "/neg", self.up, {"limit-req": {"rate": 1, "burst": -1, "key": "remote_addr"}}),
            route("code", "/code", self.up, {"limit-req": {"rate": 1, "burst": 1, "key": "remote_addr",
                                                           "rejected_code": 600}}),
            route("kt", "/kt", self.up, {"limit-req": {"rate": 1, "burst": 1, "key": "a", "key_type": "constant"}}),
            route("ok", "/ok", self.up, {"limit-req": {"rate": 1, "burst": 1, "key": "remote_addr"}})]})
        self.assert_skipped(gw, "norate", "limit-req", 'property "rate" is required')
        self.assert_skipped(gw, "zero", "limit-req", 'property "rate" validation failed: expected 0 to be greater than 0')
        self.assert_skipped(gw, "neg", "limit-req", 'property "burst" validation failed: expected -1 to be at least 0')
        self.assert_skipped(gw, "code", "limit-req",
                            'property "rejected_code" validation failed: expected 600 to be at most 599')
        self.assert_skipped(gw, "kt", "limit-req", 'property "key_type" validation failed: matches none of the enum values')
        self.assertEqual(get(gw, "/ok").status, 200)


# --------------------------------------------------------------------------
# limit-conn


class LimitConnTest(TrafficTest):
    def held_gateway(self, conf, **kw):
        self.held = HeldUpstream()
        self._procs.append(self.held)
        self.addCleanup(self.held.release.set)
        return self.gateway({"routes": [route("lc", "/lc", self.held, {"limit-conn": conf}),
                                        route("bytes", "/bytes/*", self.up, {"limit-conn": conf})]}, **kw)

    def test_concurrent_requests_beyond_conn_are_rejected_and_the_count_drops_after(self):
        gw = self.held_gateway({"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"})
        ta, a = in_thread(get, gw, "/lc", timeout=30)
        self.held.wait_arrivals(1)
        b = get(gw, "/lc")
        self.assertEqual(b.status, 503)
        self.assertEqual(b.body, b"")
        self.held.release.set()
        ta.join(30)
        self.assertEqual(a["result"].status, 200)
        self.assertEqual(a["result"].body, b"held")
        # The first request ended: the next one is counted alone.
        self.assertEqual(get(gw, "/lc").status, 200)
        self.assertEqual(get(gw, "/lc").status, 200)

    def test_burst_is_delayed_then_rejected_beyond(self):
        gw = self.held_gateway({"conn": 1, "burst": 1, "default_conn_delay": 1, "key": "remote_addr",
                                "rejected_code": 429, "rejected_msg": "busy"})
        ta, a = in_thread(get, gw, "/lc", timeout=30)
        self.held.wait_arrivals(1)
        # The second is within the burst: it waits default_conn_delay x
        # floor((2 - 1) / 1) = 1 s, then goes upstream.
        sent = time.time()
        tb, b = in_thread(get, gw, "/lc", timeout=30)
        self.held.wait_arrivals(2)
        self.assertGreaterEqual(self.held.arrivals[1][0] - sent, 0.5)
        c = get(gw, "/lc")
        self.assertEqual(c.status, 429)
        self.assertEqual(c.json(), {"error_msg": "busy"})
        self.held.release.set()
        ta.join(30)
        tb.join(30)
        self.assertEqual((a["result"].status, b["result"].status), (200, 200))

    def test_count_recovers_after_a_client_abort(self):
        gw = self.held_gateway({"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"})
        # A client takes the one slot with a response that streams for a long
        # time (1 GB), reads its head and goes away.
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(b"GET /bytes/1000000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_head(s)
        self.assertEqual(status, 200)
        self.assertEqual(get(gw, "/bytes/0").status, 503)  # the slot is taken
        s.close()
        # The gateway finds the client gone when it next writes; the request
        # ends and its count with it.
        seen = poll_status(gw, "/bytes/0", 200)
        self.assertEqual(seen[-1], 200)

    def test_count_recovers_after_a_client_gives_up_waiting(self):
        gw = self.held_gateway({"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"})
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(b"GET /lc HTTP/1.1\r\nHost: x\r\n\r\n")
        self.held.wait_arrivals(1)
        s.close()  # gone before the upstream answered
        self.held.release.set()
        poll_status(gw, "/lc", 200)

    def test_a_websocket_tunnel_counts_until_it_closes(self):
        ws = WebSocketUpstream()
        self._procs.append(ws)
        conf = {"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"}
        gw = self.gateway({"routes": [{"id": "ws", "uri": "/ws", "enable_websocket": True,
                                       "upstream": {"nodes": {ws.addr: 1}}, "plugins": {"limit-conn": conf}}]})

        def handshake():
            key = base64.b64encode(os.urandom(16))
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
            status, _, _ = read_head(s)
            return s, status

        s1, st1 = handshake()
        self.assertEqual(st1, 101)
        s2, st2 = handshake()
        self.assertEqual(st2, 503)  # the tunnel holds the one slot
        s2.close()
        s1.close()
        self.assertTrue(ws.closed.wait(5))
        deadline = time.time() + 10
        while True:
            s3, st3 = handshake()
            s3.close()
            if st3 == 101 or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(st3, 101)

    def test_rules_and_schema(self):
        gw = self.gateway({"routes": [
            route("nodelay", "/nodelay", self.up, {"limit-conn": {"conn": 1, "burst": 0, "key": "remote_addr"}}),
            route("conn0", "/conn0", self.up, {"limit-conn": {"conn": 0, "burst": 0, "default_conn_delay": 1,
                                                               "key": "remote_addr"}}),
            route("both", "/both", self.up, {"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 1,
                                                             "key": "remote_addr",
                                                             "rules": [{"conn": 1, "burst": 0, "key": "x"}]}}),
            route("rules", "/rules", self.up, {"limit-conn": {"default_conn_delay": 1, "rules": [
                {"conn": 2, "burst": 0, "key": "$http_x_user"}]}})]})
        self.assert_skipped(gw, "nodelay", "limit-conn", "value should match only one schema, but matches none")
        self.assert_skipped(gw, "conn0", "limit-conn",
                            'property "conn" validation failed: value should match only one schema, but matches none')
        self.assert_skipped(gw, "both", "limit-conn", "value should match only one schema, but matches both")
        # A rules list: its key must resolve, else no rule applies (500).
        self.assertEqual(get(gw, "/rules", headers={"X-User": "a"}).status, 200)
        self.assertEqual(get(gw, "/rules").status, 500)


# --------------------------------------------------------------------------
# uri-blocker


class UriBlockerTest(TrafficTest):
    def blocker(self, conf, uri="/*"):
        return self.gateway({"routes": [route("ub", uri, self.up, {"uri-blocker": conf})]})

    def test_rules_match_path_and_query(self):
        # t/plugin/uri-blocker.t TEST 7-11.
        gw = self.blocker({"block_rules": ["aa", "bb", "c\\d+"]})
        self.assertEqual(get(gw, "/hello?x=bb").status, 403)
        self.assertEqual(get(gw, "/hello?bb=2").status, 403)
        self.assertEqual(get(gw, "/hello?c1=2").status, 403)
        self.assertEqual(get(gw, "/aa").status, 403)
        r = get(gw, "/hello?cc=2")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("x-upstream"), "up1")
        self.assertEqual(get(gw, "/hello?x=bb").body, b"")

    def test_rejected_msg_code_and_case(self):
        gw = self.blocker({"block_rules": ["AA"], "case_insensitive": True, "rejected_code": 451,
                           "rejected_msg": "access is not allowed"})
        r = get(gw, "/hello?aa=1")
        self.assertEqual(r.status, 451)
        self.assertEqual(r.json(), {"error_msg": "access is not allowed"})
        sensitive = self.gateway({"routes": [route("ub", "/*", self.up, {"uri-blocker": {"block_rules": ["AA"]}})]})
        self.assertEqual(get(sensitive, "/hello?aa=1").status, 200)
        self.assertEqual(get(sensitive, "/hello?AA=1").status, 403)

    def test_cannot_bypass_with_dot_segments_or_double_slashes(self):
        # t/plugin/uri-blocker.t TEST 21-22: the rule sees the normalised path.
        gw = self.blocker({"block_rules": ["^/internal/"]}, uri="/internal/*")
        self.assertEqual(get(gw, "/./internal/x?aa=1").status, 403)
        self.assertEqual(get(gw, "/internal/../internal/x").status, 403)
        self.assertEqual(get(gw, "/internal/x").status, 403)

    def test_schema_errors_leave_the_route_out(self):
        gw = self.gateway({"routes": [
            route("bad", "/bad", self.up, {"uri-blocker": {"block_rules": ["^a", "^b("]}}),
            route("msg", "/msg", self.up, {"uri-blocker": {"block_rules": ["^a"], "rejected_msg": ""}}),
            route("none", "/none", self.up, {"uri-blocker": {}}),
            route("dup", "/dup", self.up, {"uri-blocker": {"block_rules": ["x", "x"]}})]})
        self.assert_skipped(gw, "bad", "uri-blocker", 'pcre_compile() failed: missing closing parenthesis')
        self.assert_skipped(gw, "msg", "uri-blocker",
                            'property "rejected_msg" validation failed: string too short, expected at least 1, got 0')
        self.assert_skipped(gw, "none", "uri-blocker", 'property "block_rules" is required')
        self.assert_skipped(gw, "dup", "uri-blocker",
                            'property "block_rules" validation failed: expected unique items but items x are equal')


# --------------------------------------------------------------------------
# real-ip


class RealIpTest(TrafficTest):
    def seen(self, gw, path, headers=None, source=None):
        r = call(gw, "GET", path, headers=headers, source=source)
        self.assertEqual(r.status, 200, r)
        return r.upstream_values("x-real-ip")

    def test_source_header_sets_the_client_address(self):
        # real_ip_from is emptied of the default 127.0.0.1 so that only the
        # plugin sets the address.
        gw = self.gateway({"routes": [
            route("rip", "/rip", self.up, {"real-ip": {"source": "http_x_client"}}),
            route("plain", "/plain", self.up)]},
            config={"nginx_config": {"http": {"real_ip_from": ["192.0.2.1"]}}})
        self.assertEqual(self.seen(gw, "/rip", {"X-Client": "10.1.2.3"}), ["10.1.2.3"])
        self.assertEqual(self.seen(gw, "/rip", {"X-Client": "[2001:db8::1]:8080"}), ["2001:db8::1"])
        # Not an address, or absent: the peer stays.
        self.assertEqual(self.seen(gw, "/rip", {"X-Client": "nonsense"}), ["127.0.0.1"])
        self.assertEqual(self.seen(gw, "/rip"), ["127.0.0.1"])
        self.assertEqual(self.seen(gw, "/plain", {"X-Client": "10.1.2.3"}), ["127.0.0.1"])

    def test_trusted_addresses_and_recursive_x_forwarded_for(self):
        gw = self.gateway({"routes": [
            route("one", "/one", self.up, {"real-ip": {"source": "http_x_forwarded_for",
                                                       "trusted_addresses": ["127.0.0.0/24", "10.0.0.0/8"]}}),
            route("rec", "/rec", self.up, {"real-ip": {"source": "http_x_forwarded_for", "recursive": True,
                                                       "trusted_addresses": ["127.0.0.0/24", "10.0.0.0/8"]}}),
            route("ip", "/ip", self.up, {"real-ip": {"source": "http_x_forwarded_for"},
                                         "ip-restriction": {"whitelist": ["198.51.100.7"]}})]},
            config={"nginx_config": {"http": {"real_ip_from": ["192.0.2.1"]}}})
        chain = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.0.0.5"}
        # Not recursive: the last address.
        self.assertEqual(self.seen(gw, "/one", chain), ["10.0.0.5"])
        # Recursive: the last one that is not trusted.
        self.assertEqual(self.seen(gw, "/rec", chain), ["203.0.113.9"])
        # A peer outside trusted_addresses is not believed.
        self.assertEqual(self.seen(gw, "/one", chain, source="127.0.1.1"), ["127.0.1.1"])
        # Later plugins (ip-restriction) see the new address.
        self.assertEqual(get(gw, "/ip", headers={"X-Forwarded-For": "198.51.100.7"}).status, 200)
        self.assertEqual(get(gw, "/ip", headers={"X-Forwarded-For": "198.51.100.8"}).status, 403)

    def test_schema_errors_leave_the_route_out(self):
        gw = self.gateway({"routes": [
            route("nosrc", "/nosrc", self.up, {"real-ip": {}}),
            route("badip", "/badip", self.up, {"real-ip": {"source": "http_x", "trusted_addresses": ["1.2.3.4/99"]}}),
            route("empty", "/empty", self.up, {"real-ip": {"source": "http_x", "trusted_addresses": []}})]})
        self.assert_skipped(gw, "nosrc", "real-ip", 'property "source" is required')
        self.assert_skipped(gw, "badip", "real-ip", "invalid ip address: 1.2.3.4/99")
        self.assert_skipped(gw, "empty", "real-ip",
                            'property "trusted_addresses" validation failed: expect array to have at least 1 items')


if __name__ == "__main__":
    unittest.main()
