"""Per-key state of limit-count is bounded (issue #9 item 6): its counters
live in one store per process, sized by config.yaml's
`nginx_config.http.lua_shared_dict.plugin-limit-count` (APISIX's default 10m),
evicting expired entries first and then the least recently used, and counting
evictions of live entries in /metrics.

Through the real binary, a real upstream and the status endpoint.
"""
import re
import socket
import threading
import unittest

from harness import GatewayTest, free_port

LIMIT = {"count": 2, "time_window": 3600, "key": "http_x_key", "key_type": "var", "rejected_code": 429}


def metric(text, name, **labels):
    """The value of one series in Prometheus text, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(r"^" + re.escape(name + ("{" + want + "}" if want else "")) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def flood(port, start, n, key_len=1024, threads=4, batch=50):
    """Sends n requests, each with its own X-Key of key_len bytes, pipelined in
    batches over keep-alive connections; returns the status codes seen."""
    counts = {}
    lock = threading.Lock()

    def run(lo, hi):
        seen = {}
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            for b in range(lo, hi, batch):
                reqs = []
                for i in range(b, min(b + batch, hi)):
                    key = f"{i:010d}".ljust(key_len, "k")
                    reqs.append(f"GET /bytes/0 HTTP/1.1\r\nHost: t\r\nX-Key: {key}\r\n\r\n")
                s.sendall("".join(reqs).encode())
                want, buf = len(reqs), b""
                # /bytes/0 and limit-count's rejections have empty bodies:
                # each response is one head.
                while buf.count(b"\r\n\r\n") < want:
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        raise AssertionError("connection closed mid-batch")
                    buf += chunk
                for head in buf.split(b"\r\n\r\n")[:want]:
                    code = int(head.split(b" ", 2)[1])
                    seen[code] = seen.get(code, 0) + 1
        finally:
            s.close()
        with lock:
            for k, v in seen.items():
                counts[k] = counts.get(k, 0) + v

    step = (n + threads - 1) // threads
    ts = [threading.Thread(target=run, args=(start + i * step, min(start + n, start + (i + 1) * step)))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


class LimitCountStoreTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.upstream()

    def start(self, dict_size=None, routes=None):
        config = {"apisix": {"status": {"ip": "127.0.0.1", "port": free_port()}}}
        if dict_size:
            config["nginx_config"] = {"http": {"lua_shared_dict": {"plugin-limit-count": dict_size}}}
        routes = routes or [{"id": "lc", "uri": "/bytes/0", "upstream": {"nodes": {self.up.addr: 1}},
                             "plugins": {"limit-count": dict(LIMIT)}}]
        return self.gateway({"routes": routes}, config=config)

    def statuses(self, gw, key, n):
        return [gw.get("/bytes/0", headers={"X-Key": key}).status for _ in range(n)]

    def test_distinct_keys_cannot_grow_memory_and_evictions_are_counted(self):
        gw = self.start("1m")
        # Not under pressure: a key gets its 429 after `count` requests.
        self.assertEqual(self.statuses(gw, "alice", 3), [200, 200, 429])
        # Fill the 1 MiB store (about 900 entries of 1 KiB keys) and warm up
        # buffers, then measure.
        self.assertEqual(flood(gw.port, 0, 3000), {200: 3000})
        before = gw.rss_kb()
        counts = flood(gw.port, 3000, 30000)
        after = gw.rss_kb()
        print(f"\nRSS {before} -> {after} KiB over 30,000 distinct 1 KiB keys")
        # Every new key is let through once: none is mistaken for another.
        self.assertEqual(counts, {200: 30000})
        # 30,000 more keys of 1 KiB held for the whole window would take
        # about 40 MiB (as they did before the store was bounded).
        self.assertLess(after - before, 6 * 1024, f"RSS grew from {before} to {after} KiB")
        m = gw.request_status_raw("/metrics")
        d = {"dict": "plugin-limit-count"}
        self.assertEqual(metric(m, "holdfast_shared_dict_capacity_bytes", **d), 1024 * 1024, m)
        self.assertLessEqual(metric(m, "holdfast_shared_dict_used_bytes", **d), 1024 * 1024)
        self.assertLess(metric(m, "holdfast_shared_dict_entries", **d), 1024)
        # Each key beyond the capacity pushed a live counter out: a limit
        # reset that clients can force, so it is counted.
        unexpired = metric(m, "holdfast_shared_dict_evictions_total", **d, reason="unexpired")
        self.assertGreaterEqual(unexpired, 30000, m)
        self.assertEqual(metric(m, "holdfast_shared_dict_evictions_total", **d, reason="expired"), 0)
        # alice's counter was among them: she starts again.
        self.assertEqual(self.statuses(gw, "alice", 3), [200, 200, 429])

    def test_default_size_is_apisix_10m(self):
        gw = self.start()
        self.assertEqual(self.statuses(gw, "bob", 3), [200, 200, 429])
        m = gw.request_status_raw("/metrics")
        self.assertEqual(metric(m, "holdfast_shared_dict_capacity_bytes", dict="plugin-limit-count"), 10 << 20, m)
        self.assertEqual(metric(m, "holdfast_shared_dict_entries", dict="plugin-limit-count"), 1, m)

    def test_counters_survive_a_reload(self):
        gw = self.start("1m")
        self.assertEqual(self.statuses(gw, "carol", 1), [200])
        other = {"id": "other", "uri": "/other", "upstream": {"nodes": {self.up.addr: 1}}}
        gw.reload({"routes": [{"id": "lc", "uri": "/bytes/0", "upstream": {"nodes": {self.up.addr: 1}},
                               "plugins": {"limit-count": dict(LIMIT)}}, other]})
        self.assertEqual(self.statuses(gw, "carol", 2), [200, 429])

    def test_key_larger_than_the_store_fails_as_apisix(self):
        # 16k: one shard of about 15 KiB; a 20 KiB key cannot be stored.
        routes = [{"id": "lc", "uri": "/bytes/0", "upstream": {"nodes": {self.up.addr: 1}},
                   "plugins": {"limit-count": dict(LIMIT)}},
                  {"id": "deg", "uri": "/deg", "upstream": {"nodes": {self.up.addr: 1}},
                   "plugins": {"limit-count": dict(LIMIT, allow_degradation=True)}}]
        gw = self.start("16k", routes)
        r = gw.get("/bytes/0", headers={"X-Key": "k" * 20000})
        self.assertEqual(r.status, 500)
        self.assertEqual(r.json(), {"error_msg": "failed to limit count"})
        r = gw.get("/deg", headers={"X-Key": "k" * 20000})  # allow_degradation: let through
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["path"], "/deg")
        gw.wait_log("failed to limit count: no memory")
        m = gw.request_status_raw("/metrics")
        self.assertEqual(metric(m, "holdfast_shared_dict_no_memory_total", dict="plugin-limit-count"), 2, m)
        self.assertEqual(self.statuses(gw, "dave", 3), [200, 200, 429])


if __name__ == "__main__":
    unittest.main()
