"""Standalone hot reload over real sockets (APISIX_COMPAT.md §6.2, README
"Standalone file"): the file is checked every second; YAML needs #END; an
unparseable file keeps the previous configuration; an invalid resource is
skipped and logged; reloads are atomic and lose no requests."""
import http.client
import json
import os
import threading
import time
import unittest

from harness import GatewayTest

APPLY_WITHIN = 2.5  # seconds: the file is polled every second


def doc(*routes, **sections):
    d = {"routes": list(routes)}
    d.update(sections)
    return d


def route(rid, uri, up, **kw):
    r = {"id": rid, "uri": uri, "upstream": {"nodes": {up.addr: 1}}}
    r.update(kw)
    return r


class ReloadTest(GatewayTest):
    def server_of(self, gw, path):
        """The upstream name that served `path`, or the status code."""
        r = gw.get(path)
        if r.status != 200:
            return r.status
        return r.json()["server"]

    def wait_for(self, gw, path, expected, within=APPLY_WITHIN):
        """Polls until `path` is served by `expected` (a name or a status);
        returns the seconds it took."""
        t0 = time.time()
        last = None
        while time.time() - t0 < within:
            last = self.server_of(gw, path)
            if last == expected:
                return time.time() - t0
            time.sleep(0.05)
        self.fail(f"{path}: expected {expected!r} within {within}s, last answer {last!r}; log:\n{gw.logs()[-2000:]}")

    def assert_stays(self, gw, path, expected, seconds=2.2):
        """`path` keeps being served by `expected` for `seconds` (more than
        two file polls)."""
        t0 = time.time()
        while time.time() - t0 < seconds:
            self.assertEqual(self.server_of(gw, path), expected, path)
            time.sleep(0.1)

    def test_route_added_changed_removed_without_restart(self):
        one, two = self.upstream("one"), self.upstream("two")
        gw = self.gateway(doc(route("a", "/a", one)))
        self.assertEqual(self.server_of(gw, "/a"), "one")
        self.assertEqual(self.server_of(gw, "/b"), 404)

        gw.write(doc(route("a", "/a", one), route("b", "/b", two)))  # add
        self.wait_for(gw, "/b", "two")
        self.assertEqual(self.server_of(gw, "/a"), "one")

        gw.write(doc(route("a", "/a", two), route("b", "/b", two)))  # change
        self.wait_for(gw, "/a", "two")

        gw.write(doc(route("b", "/b", two)))  # remove
        self.wait_for(gw, "/a", 404)
        self.assertEqual(self.server_of(gw, "/b"), "two")

        self.assertIsNone(gw.proc.poll())
        self.assertEqual(gw.logs().count("started"), 1)  # never restarted

    def test_upstream_resource_change_applies_to_routes_using_it(self):
        one, two = self.upstream("one"), self.upstream("two")
        r = {"id": "r", "uri": "/u", "upstream_id": "up"}
        gw = self.gateway(doc(r, upstreams=[{"id": "up", "nodes": {one.addr: 1}}]))
        self.assertEqual(self.server_of(gw, "/u"), "one")
        gw.write(doc(r, upstreams=[{"id": "up", "nodes": {two.addr: 1}}]))
        self.wait_for(gw, "/u", "two")

    def test_yaml_without_end_marker_is_not_applied(self):
        one = self.upstream("one")
        gw = self.gateway(doc(route("a", "/a", one)))
        new = doc(route("a", "/a", one), route("new", "/new", one))
        gw.write_raw(json.dumps(new, indent=2) + "\n")  # no #END: a half-written file
        gw.wait_log("#END", timeout=APPLY_WITHIN)
        self.assert_stays(gw, "/new", 404)
        self.assertEqual(self.server_of(gw, "/a"), "one")
        # a truncated file is not read either
        text = json.dumps(new, indent=2)
        gw.write_raw(text[: len(text) // 2])
        self.assert_stays(gw, "/new", 404, seconds=1.2)
        self.assertEqual(self.server_of(gw, "/a"), "one")
        # the same content with the marker is applied
        gw.write(new)
        self.wait_for(gw, "/new", "one")

    def test_unparseable_file_keeps_previous_configuration(self):
        one = self.upstream("one")
        gw = self.gateway(doc(route("a", "/a", one)))
        gw.write_raw("routes:\n  - id: [unclosed\n    uri: {{{\n#END\n")
        gw.wait_log("keeping the previous configuration", timeout=APPLY_WITHIN)
        line = [l for l in gw.logs().splitlines() if "keeping the previous configuration" in l][-1]
        self.assertIn("YAML", line)  # the log says why
        self.assert_stays(gw, "/a", "one", seconds=1.5)
        # top level is not a mapping
        gw.write_raw("- just\n- a list\n#END\n")
        gw.wait_log("keeping the previous configuration", timeout=APPLY_WITHIN, count=2)
        line = [l for l in gw.logs().splitlines() if "keeping the previous configuration" in l][-1]
        self.assertIn("mapping", line)
        self.assertEqual(self.server_of(gw, "/a"), "one")
        # a good file afterwards is applied
        gw.write(doc(route("b", "/b", one)))
        self.wait_for(gw, "/b", "one")
        self.assertEqual(self.server_of(gw, "/a"), 404)

    def test_broken_file_at_startup_then_fixed(self):
        one = self.upstream("one")
        gw = self.gateway(raw_standalone="routes:\n  - id: a\n    uri: /a\n")  # no #END
        self.assertIsNone(gw.proc.poll(), "the gateway must start and wait for a usable file")
        self.assertIn("#END", gw.logs())
        self.assertNotEqual(self.server_of(gw, "/a"), "one")
        gw.write(doc(route("a", "/a", one)))
        self.wait_for(gw, "/a", "one")

    def test_deleted_file_keeps_previous_configuration(self):
        one = self.upstream("one")
        gw = self.gateway(doc(route("a", "/a", one)))
        # The listener opens before the first load: delete the file only once
        # it has been applied (deleting it earlier was a flake, not a test).
        gw.wait_log("configuration applied", timeout=APPLY_WITHIN)
        os.unlink(gw.standalone_path)
        gw.wait_log("cannot stat", timeout=APPLY_WITHIN)
        self.assert_stays(gw, "/a", "one", seconds=1.2)
        gw.write(doc(route("b", "/b", one)))
        self.wait_for(gw, "/b", "one")

    def test_invalid_resource_skipped_valid_ones_applied(self):
        one = self.upstream("one")
        gw = self.gateway(doc(route("old", "/old", one)))
        gw.reload(doc(
            route("good", "/good", one),
            route("broken", "/broken", one, methods=["FETCH"]),
            route("unknown-plugin", "/unknown", one, plugins={"no-such-plugin": {}}),
            route("bad-vars", "/bad-vars", one, vars=[["arg_a", "<>", "1"]]),
            {"id": "uses-bad-up", "uri": "/uses-bad-up", "upstream_id": "bad-up"},
            {"id": "uses-good-up", "uri": "/uses-good-up", "upstream_id": "good-up"},
            upstreams=[
                {"id": "bad-up", "nodes": {one.addr: 1}, "type": "roundrobin", "pass_host": "sideways"},
                {"id": "good-up", "nodes": {one.addr: 1}},
            ],
        ))
        logs = gw.logs()

        def skip_line(kind, rid):
            lines = [l for l in logs.splitlines() if "skipping invalid" in l and kind in l and rid in l]
            self.assertTrue(lines, f"no skip line for {kind} {rid}:\n{logs[-3000:]}")
            return lines[0]

        self.assertIn("FETCH", skip_line("route", "broken"))
        self.assertIn("no-such-plugin", skip_line("route", "unknown-plugin"))
        self.assertIn("<>", skip_line("route", "bad-vars"))
        self.assertIn("pass_host", skip_line("upstream", "bad-up"))
        self.assertNotIn("id=good", logs.replace("id=good-up", ""))

        self.assertEqual(self.server_of(gw, "/good"), "one")
        self.assertEqual(self.server_of(gw, "/uses-good-up"), "one")
        for path in ("/broken", "/unknown", "/bad-vars", "/old"):
            self.assertEqual(self.server_of(gw, path), 404, path)
        self.assertEqual(self.server_of(gw, "/uses-bad-up"), 502)  # its upstream_id is missing

    def test_json_provider(self):
        one, two = self.upstream("one"), self.upstream("two")
        gw = self.gateway(doc(route("a", "/a", one)), provider="json")
        self.assertTrue(gw.standalone_path.endswith("apisix.json"))
        self.assertEqual(self.server_of(gw, "/a"), "one")
        gw.write(doc(route("a", "/a", two), route("b", "/b", one)))  # JSON needs no #END
        self.wait_for(gw, "/a", "two")
        self.assertEqual(self.server_of(gw, "/b"), "one")
        gw.write_raw('{"routes": [{"id": "a", "uri": "/a",')
        gw.wait_log("invalid JSON", timeout=APPLY_WITHIN)
        self.assert_stays(gw, "/a", "two", seconds=1.2)
        gw.write(doc(route("c", "/c", one)))
        self.wait_for(gw, "/c", "one")
        self.assertEqual(self.server_of(gw, "/a"), 404)

    def test_hot_reload_under_load_has_zero_failures(self):
        one, two = self.upstream("one"), self.upstream("two")
        ups = [one, two]

        def conf(up):
            return doc(route("r", "/*", up), route("other", "/other", up))

        gw = self.gateway(conf(one), workers=2)
        stop = threading.Event()
        lock = threading.Lock()
        failures, samples, conns = [], [], {}
        applied_before = gw.logs().count("configuration applied")

        def client(idx):
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
            ports = set()
            n = 0
            while not stop.is_set():
                start = time.time()
                try:
                    conn.request("GET", f"/load/{idx}/{n}")
                    r = conn.getresponse()
                    body = r.read()
                    ports.add(conn.sock.getsockname()[1] if conn.sock else None)
                    if r.status != 200:
                        with lock:
                            failures.append((idx, n, r.status, body[:200]))
                    else:
                        with lock:
                            samples.append((start, json.loads(body)["server"]))
                except Exception as e:  # noqa: BLE001 - every exception is a failed request
                    with lock:
                        failures.append((idx, n, repr(e)))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
                n += 1
            conn.close()
            with lock:
                conns[idx] = (n, ports)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(10):  # ten rewrites over ~5 s: two, one, two, ..., two
                time.sleep(0.5)
                gw.write(conf(ups[(i + 1) % 2]))
            # The file now names `two`; once a response says so, no later poll
            # can bring `one` back.
            self.wait_for(gw, "/other", "two")
            # a margin for the snapshot to reach the other worker
            applied_at = time.time() + 0.1
            time.sleep(0.7)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertEqual(failures, [], f"{len(failures)} failed requests")
        total = sum(n for n, _ in conns.values())
        self.assertGreater(total, 200, "too few requests to say anything")
        self.assertEqual(len(conns), 4)
        for idx, (n, ports) in conns.items():
            self.assertEqual(len(ports), 1, f"client {idx}: keep-alive connection was not kept across reloads")
        applied = gw.logs().count("configuration applied") - applied_before
        self.assertGreaterEqual(applied, 4, "the file was rewritten ten times but rarely applied")
        servers = {s for _, s in samples}
        self.assertEqual(servers, {"one", "two"})
        after = [s for t, s in samples if t > applied_at]
        self.assertGreater(len(after), 10)
        self.assertEqual(set(after), {"two"}, "responses after the last reload must come from the new upstream")

    def test_in_flight_slow_requests_complete_after_reload(self):
        old, new = self.upstream("old"), self.upstream("new")
        gw = self.gateway(doc(route("r", "/*", old)), workers=2)
        # Re-apply the same file first: the next poll is then about 1 s away,
        # so the real reload below lands in the middle of the 1.5 s requests.
        gw.reload(doc(route("r", "/*", old)), timeout=3)
        results = {}

        def slow(i):
            t0 = time.time()
            try:
                r = gw.get("/delay/1500", timeout=10)
                results[i] = (r.status, r.json().get("server") if r.status == 200 else r.body, t0, time.time())
            except Exception as e:  # noqa: BLE001
                results[i] = (repr(e), None, t0, time.time())

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        # the new configuration drops the old upstream entirely
        gw.reload(doc(route("r", "/*", new)), timeout=3)
        applied_at = time.time()
        self.assertEqual(self.server_of(gw, "/fresh"), "new")
        for t in threads:
            t.join(10)
        self.assertEqual(len(results), 3)
        for i, (status, server, t0, t1) in results.items():
            self.assertEqual(status, 200, results[i])
            self.assertEqual(server, "old", "an in-flight request finishes on the snapshot it started with")
            self.assertLess(t0, applied_at)
            self.assertGreater(t1, applied_at, "the reload must happen while the request is in flight")


if __name__ == "__main__":
    unittest.main()
