"""The etcd config source against a real etcd (Debian etcd-server): full
load, watch, propagation, compaction, outages, several hosts, and values in
the shape APISIX writes."""
import os
import signal
import threading
import time
import unittest

from harness import GatewayTest, free_port, wait_status


def route(uri, up, **kw):
    r = {"uri": uri, "upstream": {"nodes": {up.addr: 1}, "type": "roundrobin"}}
    r.update(kw)
    return r



class EtcdSourceTest(GatewayTest):
    def test_full_load_and_watch_propagation(self):
        etcd = self.etcd()
        up = self.upstream("alpha")
        etcd.put("/apisix/routes/1", route("/one", up))
        gw = self.etcd_gateway(etcd)
        wait_status(gw, "/one", 200)
        self.assertEqual(gw.get("/two").status, 404)
        t0 = time.time()
        etcd.put("/apisix/routes/2", route("/two", up))
        wait_status(gw, "/two", 200, timeout=2)
        self.assertLess(time.time() - t0, 2)
        etcd.delete("/apisix/routes/1")
        wait_status(gw, "/one", 404, timeout=2)
        code, st = gw.status()
        self.assertEqual(code, 200)
        self.assertEqual(st["source"], "etcd")
        self.assertEqual(st["etcd"], "reachable")
        self.assertEqual(int(st["revision"]), etcd.revision())

    def test_burst_of_writes_builds_few_snapshots(self):
        import json as _json
        from harness import b64
        etcd = self.etcd()
        up = self.upstream()
        gw = self.etcd_gateway(etcd)
        gw.wait_log("configuration applied from etcd")
        # 100 routes in one etcd transaction: one watch response, one snapshot.
        before = gw.logs().count("configuration applied")
        ops = [{"request_put": {"key": b64(f"/apisix/routes/t{i}"), "value": b64(_json.dumps(route(f"/t{i}", up)))}}
               for i in range(100)]
        etcd.call("/v3/kv/txn", {"success": ops})
        wait_status(gw, "/t99", 200)
        time.sleep(0.2)
        self.assertLessEqual(gw.logs().count("configuration applied") - before, 2)
        # Sequential writes: changes that arrive together are applied together.
        before = gw.logs().count("configuration applied")
        for i in range(200):
            etcd.put(f"/apisix/routes/b{i}", route(f"/b{i}", up))
        wait_status(gw, "/b199", 200)
        applied = gw.logs().count("configuration applied") - before
        self.assertLess(applied, 200, "watch events were not coalesced")
        self.assertEqual(gw.get("/b0").status, 200)

    def test_keys_outside_the_resources_build_no_snapshot(self):
        etcd = self.etcd()
        up = self.upstream()
        etcd.put("/apisix/routes/1", route("/one", up))
        gw = self.etcd_gateway(etcd)
        wait_status(gw, "/one", 200)
        before = gw.logs().count("configuration applied")
        etcd.put("/apisix/data_plane/server_info/node-1", {"id": "node-1", "hostname": "a"})
        etcd.put("/apisix/gen_id", "42")
        etcd.put("/apisix/junk/x", {"a": 1})
        time.sleep(0.2)  # well past the 5 ms coalescing: a rebuild would have happened
        # A route change after them is applied; the three keys before it
        # built nothing of their own.
        etcd.put("/apisix/routes/2", route("/two", up))
        wait_status(gw, "/two", 200)
        self.assertEqual(gw.logs().count("configuration applied") - before, 1)

    def test_apisix_written_values(self):
        etcd = self.etcd()
        up = self.upstream()
        # What APISIX's CLI and Admin API leave in etcd: directory markers,
        # gen_id, the plugins list, ids as strings (or missing), no defaults.
        etcd.put("/apisix/routes/", "init_dir")
        etcd.put("/apisix/upstreams/", "init_dir")
        etcd.put("/apisix/gen_id", "12")
        etcd.put("/apisix/plugins", [{"name": "key-auth"}, {"name": "mqtt-proxy", "stream": True}])
        etcd.put("/apisix/data_plane/server_info/abc", {"id": "abc", "version": "3.18.0"})
        etcd.put("/apisix/upstreams/00000000000000000012", {"nodes": {up.addr: 1}, "type": "roundrobin",
                                                             "create_time": 1700000000, "update_time": 1700000000})
        etcd.put("/apisix/routes/7", {"id": "7", "uri": "/shaped", "upstream_id": "00000000000000000012",
                                      "plugins": {"key-auth": {}}})
        etcd.put("/apisix/routes/8", {"uri": "/noid", "upstream_id": "00000000000000000012"})
        etcd.put("/apisix/consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}})
        etcd.put("/apisix/consumers/jack/credentials/c1", {"plugins": {"key-auth": {"key": "cred-key"}}})
        etcd.put("/apisix/routes/bad", "not json")
        gw = self.etcd_gateway(etcd)
        wait_status(gw, "/noid", 200)
        self.assertEqual(gw.get("/shaped").status, 401)
        r = gw.get("/shaped", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"]["x-consumer-username"], "jack")
        r = gw.get("/shaped", headers={"apikey": "cred-key"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"]["x-credential-identifier"], "c1")
        self.assertIn("etcd key /apisix/routes/bad: value is not a JSON object", gw.logs())

    def test_compaction_then_new_changes(self):
        etcd = self.etcd()
        up = self.upstream()
        etcd.put("/apisix/routes/1", route("/one", up))
        gw = self.etcd_gateway(etcd, config={"deployment": {"etcd": {"watch_timeout": 1}}})
        wait_status(gw, "/one", 200)
        # Freeze the gateway, change and compact past its revision, then let it
        # re-create its watch from the old revision.
        os.kill(gw.proc.pid, signal.SIGSTOP)
        try:
            etcd.put("/apisix/routes/2", route("/two", up))
            etcd.put("/apisix/routes/3", route("/three", up))
            etcd.delete("/apisix/routes/1")
            etcd.compact(etcd.revision())
            time.sleep(1.5)
        finally:
            os.kill(gw.proc.pid, signal.SIGCONT)
        wait_status(gw, "/three", 200, timeout=5)
        wait_status(gw, "/one", 404, timeout=5)
        self.assertEqual(gw.get("/two").status, 200)
        etcd.put("/apisix/routes/4", route("/four", up))
        wait_status(gw, "/four", 200, timeout=3)

    def test_watch_created_at_a_compacted_revision_reloads_fully(self):
        # The watch answer that says "compacted" (not a broken stream): the
        # gateway's watch goes silent, changes are written and compacted, and
        # after watch_timeout the gateway re-creates its watch from its old
        # revision on a new connection; etcd cancels it with compact_revision.
        from harness import TcpForwarder
        etcd = self.etcd()
        up = self.upstream()
        etcd.put("/apisix/routes/1", route("/one", up))
        fwd = TcpForwarder(int(etcd.url.rsplit(":", 1)[1]))
        self._procs.append(fwd)
        gw = self.etcd_gateway([fwd.url], config={"deployment": {"etcd": {"watch_timeout": 1}}})
        wait_status(gw, "/one", 200)
        fwd.mute_existing()
        etcd.put("/apisix/routes/2", route("/two", up))
        etcd.delete("/apisix/routes/1")
        etcd.compact(etcd.revision())
        wait_status(gw, "/two", 200, timeout=10)
        wait_status(gw, "/one", 404, timeout=2)
        logs = gw.logs()
        self.assertIn("etcd watch canceled (compact revision", logs)
        # The full load does not wait on the kept-alive connection that went
        # silent with the watch: no outage is reported.
        self.assertNotIn("etcd unreachable", logs)
        self.assertLess(logs.index("etcd watch canceled"), logs.rindex("configuration applied from etcd"))
        # and the new watch carries on
        etcd.put("/apisix/routes/3", route("/three", up))
        wait_status(gw, "/three", 200, timeout=3)

    def test_etcd_outage_under_load_zero_failures(self):
        etcd = self.etcd()
        up = self.upstream()
        etcd.put("/apisix/routes/1", route("/*", up))
        gw = self.etcd_gateway(etcd, config={"deployment": {"etcd": {"resync_delay": 0.5}}})
        wait_status(gw, "/x", 200)
        failures, count, stop = [], [0], threading.Event()

        def load():
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
            while not stop.is_set():
                try:
                    conn.request("GET", "/load")
                    r = conn.getresponse()
                    r.read()
                    count[0] += 1
                    if r.status != 200:
                        failures.append(r.status)
                except Exception as e:  # noqa: BLE001 - any failure counts
                    failures.append(repr(e))
                    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        etcd.stop()
        time.sleep(2.5)
        served_during_outage = count[0]
        code, st = gw.status()
        self.assertEqual(st["etcd"], "unreachable")
        self.assertEqual(code, 200)
        etcd.start()
        etcd.put("/apisix/routes/2", {"uri": "/after", "plugins": {"mocking": {"response_example": "back"}}})
        deadline = time.time() + 10
        while time.time() < deadline and gw.get("/after").body != b"back":
            time.sleep(0.05)
        self.assertEqual(gw.get("/after").body, b"back")
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        self.assertGreater(served_during_outage, 50)
        logs = gw.logs()
        self.assertEqual(logs.count("etcd unreachable"), 1, "the outage must be logged once, not per retry")
        self.assertIn("etcd reachable at", logs)

    def test_several_hosts_one_dead(self):
        etcd = self.etcd()
        up = self.upstream()
        etcd.put("/apisix/routes/1", route("/one", up))
        dead = f"http://127.0.0.1:{free_port()}"
        gw = self.etcd_gateway([dead, etcd.url])
        wait_status(gw, "/one", 200)
        etcd.put("/apisix/routes/2", route("/two", up))
        wait_status(gw, "/two", 200, timeout=3)

    def test_start_without_etcd_then_etcd_appears(self):
        etcd = self.etcd()
        up = self.upstream()
        etcd.put("/apisix/routes/1", route("/one", up))
        etcd.stop()
        gw = self.etcd_gateway(etcd, config={"deployment": {"etcd": {"resync_delay": 0.5}}})
        code, st = gw.status("/status/ready")
        self.assertEqual(code, 503)
        self.assertFalse(st["config_loaded"])
        self.assertEqual(gw.get("/one").status, 503)  # no configuration yet
        etcd.start()
        wait_status(gw, "/one", 200, timeout=10)
        code, st = gw.status("/status/ready")
        self.assertEqual(code, 200)

    def test_invalid_resource_in_etcd_is_skipped(self):
        etcd = self.etcd()
        up = self.upstream()
        etcd.put("/apisix/routes/good", route("/good", up))
        etcd.put("/apisix/routes/bad", {"uri": 42, "upstream": {"nodes": {up.addr: 1}}})
        gw = self.etcd_gateway(etcd)
        wait_status(gw, "/good", 200)
        gw.wait_log("skipping invalid route id=bad")
        # a later bad update of a good route keeps nothing broken elsewhere
        etcd.put("/apisix/routes/good2", route("/good2", up))
        wait_status(gw, "/good2", 200)


if __name__ == "__main__":
    unittest.main()
