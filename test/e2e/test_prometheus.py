"""The prometheus plugin and APISIX's export server (issue #12 item 4), with
the real binary, a real upstream and a real Prometheus server (Debian's
`prometheus`) scraping it: the PromQL of the APISIX Grafana dashboard's
panels returns the series that known traffic should have made.

APISIX behaviour followed (apisix/plugins/prometheus/exporter.lua):
- apisix_http_status{code,route,matched_uri,matched_host,service,consumer,node}
  counts requests of routes, services or global rules that have the plugin,
  and only those; apisix_http_latency (histogram, ms, types request, upstream,
  apisix) and apisix_bandwidth (ingress, egress) by route, service, consumer,
  node;
- node-level series on every scrape: apisix_nginx_http_current_connections,
  apisix_http_requests_total, apisix_node_info, apisix_upstream_status,
  apisix_shared_dict_*; apisix_etcd_* only when the configuration is in etcd;
- served at plugin_attr.prometheus.export_addr + export_uri
  (/apisix/prometheus/metrics), with holdfast_* metrics beside them.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from harness import BIN, Gateway, Upstream, free_port, run_holdfast, wait_port


def scrape(port, path="/apisix/prometheus/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """[(name, {label: value}, float)] of the text format; fails on a line it cannot read."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = dict(LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def value(samples, metric, **labels):
    found = [v for n, l, v in samples if n == metric and all(l.get(k) == str(x) for k, x in labels.items())]
    return sum(found) if found else None


class PrometheusPluginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = Upstream("u1")
        node = {cls.up.addr: 1}
        cls.gw = Gateway({
            "services": [{"id": "s1", "name": "billing", "plugins": {"prometheus": {"prefer_name": True}}}],
            "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}],
            "routes": [
                {"id": "r1", "uri": "/anything", "plugins": {"prometheus": {}}, "upstream": {"nodes": node}},
                {"id": "r2", "uri": "/status/*", "upstream": {"nodes": node}},  # no prometheus
                {"id": "r3", "name": "billing-route", "uri": "/bytes/*", "service_id": "s1",
                 "upstream": {"nodes": node}},
                {"id": "r4", "uri": "/delay/*", "hosts": ["*.example.com"],
                 "plugins": {"prometheus": {}, "key-auth": {}}, "upstream": {"nodes": node}},
                {"id": "r5", "uri": "/anything/checked", "plugins": {"prometheus": {}},
                 "upstream": {"nodes": node, "checks": {"active": {"http_path": "/anything", "healthy": {"interval": 1}}}}},
            ],
        })

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.up.stop()

    def samples(self, until=None):
        """The scraped samples; with `until`, scraped again (up to 5 s) until
        until(samples) holds: a request is counted in its log phase, after
        its response went out, so a client can scrape before it is."""
        deadline = time.time() + 5
        while True:
            status, ctype, text = scrape(self.gw.prometheus_port)
            self.assertEqual(status, 200)
            self.assertTrue(ctype.startswith("text/plain"), ctype)
            s = parse(text)
            if until is None or until(s) or time.time() > deadline:
                return s, text
            time.sleep(0.02)

    def test_counts_follow_the_traffic_of_routes_with_the_plugin_only(self):
        before, _ = self.samples()
        base = value(before, "apisix_http_status", route="r1", code=200) or 0
        for _ in range(5):
            self.assertEqual(self.gw.get("/anything").status, 200)
        for _ in range(3):
            self.assertEqual(self.gw.get("/status/503").status, 503)  # r2: not recorded
        s, text = self.samples(until=lambda s: (value(s, "apisix_http_status", route="r1", code=200) or 0) >= base + 5)
        self.assertEqual(value(s, "apisix_http_status", code=200, route="r1", matched_uri="/anything",
                               matched_host="", service="", consumer="", node="127.0.0.1"), base + 5, text)
        self.assertIsNone(value(s, "apisix_http_status", route="r2"), "r2 has no prometheus plugin")
        self.assertGreaterEqual(value(s, "apisix_http_latency_count", type="request", route="r1"), base + 5)
        self.assertGreaterEqual(value(s, "apisix_http_latency_count", type="upstream", route="r1"), base + 5)
        self.assertEqual(value(s, "apisix_http_latency_bucket", type="request", route="r1", le="+Inf"),
                         value(s, "apisix_http_latency_count", type="request", route="r1"))
        self.assertGreater(value(s, "apisix_bandwidth", type="ingress", route="r1"), 5 * len("GET /anything HTTP/1.1\r\n"))
        self.assertGreater(value(s, "apisix_bandwidth", type="egress", route="r1"), 5 * 100)
        self.assertGreaterEqual(value(s, "apisix_http_requests_total"), 8)

    def test_prefer_name_uses_route_and_service_names(self):
        self.assertEqual(self.gw.get("/bytes/10").status, 200)
        s, text = self.samples(until=lambda s: value(s, "apisix_http_status", route="billing-route") is not None)
        self.assertGreaterEqual(value(s, "apisix_http_status", code=200, route="billing-route", service="billing",
                                      matched_uri="/bytes/*") or 0, 1, text)
        self.assertIsNone(value(s, "apisix_http_status", route="r3"))

    def test_consumer_and_matched_host(self):
        r = self.gw.get("/delay/1", headers={"Host": "api.example.com", "apikey": "jack-key"})
        self.assertEqual(r.status, 200)
        r = self.gw.get("/delay/1", headers={"Host": "api.example.com"})
        self.assertEqual(r.status, 401)
        s, text = self.samples(until=lambda s: value(s, "apisix_http_status", code=401, route="r4") is not None)
        self.assertEqual(value(s, "apisix_http_status", code=200, route="r4", consumer="jack",
                               matched_host="*.example.com"), 1, text)
        # Refused before any upstream: no node, and no upstream latency.
        self.assertEqual(value(s, "apisix_http_status", code=401, route="r4", consumer="", node=""), 1, text)
        self.assertIsNone(value(s, "apisix_http_latency_count", type="upstream", route="r4", node=""))
        self.assertEqual(value(s, "apisix_http_latency_count", type="request", route="r4", node=""), 1)

    def test_node_level_series(self):
        s, text = self.samples()
        for state in ("active", "reading", "writing", "waiting", "accepted", "handled"):
            self.assertIsNotNone(value(s, "apisix_nginx_http_current_connections", state=state), state)
        self.assertEqual(value(s, "apisix_node_info", hostname=os.uname().nodename), 1, text)
        # The checked upstream's node is healthy, as its probes find.
        self.assertEqual(value(s, "apisix_upstream_status", name="/apisix/routes/r5", ip="127.0.0.1",
                               port=self.up.port), 1, text)
        self.assertIsNone(value(s, "apisix_etcd_reachable"), "not configured from etcd")
        self.assertIn("holdfast_config_loaded 1", text)

    def test_other_paths_and_methods_are_404(self):
        for path in ("/metrics", "/apisix/prometheus/metricsx", "/"):
            with self.assertRaises(urllib.error.HTTPError) as e:
                scrape(self.gw.prometheus_port, path)
            self.assertEqual(e.exception.code, 404)
        req = urllib.request.Request(f"http://127.0.0.1:{self.gw.prometheus_port}/apisix/prometheus/metrics",
                                     method="POST", data=b"x")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        self.assertEqual(e.exception.code, 404)

    def test_schema(self):
        bad = Gateway({"routes": [
            {"id": "bad", "uri": "/anything", "plugins": {"prometheus": {"prefer_name": "yes"}},
             "upstream": {"nodes": {self.up.addr: 1}}}]})
        try:
            self.assertEqual(bad.get("/anything").status, 404)
            self.assertIn("prefer_name", bad.logs())
        finally:
            bad.stop()


class ExportServerConfigTest(unittest.TestCase):
    def test_prefix_buckets_and_uri_from_plugin_attr(self):
        up = Upstream("u1")
        gw = Gateway({"routes": [{"id": "r1", "uri": "/anything", "plugins": {"prometheus": {}},
                                  "upstream": {"nodes": {up.addr: 1}}}]},
                     config={"plugin_attr": {"prometheus": {"metric_prefix": "edge_", "export_uri": "/m",
                                                            "default_buckets": [0.5, 250, 1000]}}})
        try:
            self.assertEqual(gw.get("/anything").status, 200)
            _, _, text = scrape(gw.prometheus_port, "/m")
            s = parse(text)
            self.assertEqual(value(s, "edge_http_status", route="r1", code=200), 1, text)
            les = sorted({l["le"] for n, l, _ in s if n == "edge_http_latency_bucket"})
            self.assertEqual(les, ["+Inf", "0000.5", "0250.0", "1000.0"])
            self.assertNotIn("apisix_", text)
        finally:
            gw.stop()
            up.stop()

    def test_bad_attributes_are_refused_by_name(self):
        for attr, key in (({"default_buckets": [5, 1]}, "default_buckets"),
                          ({"export_addr": {"ip": "nowhere", "port": 9091}}, "export_addr.ip"),
                          ({"export_addr": {"ip": "127.0.0.1", "port": 70000}}, "export_addr.port"),
                          ({"metric_prefix": "a-b"}, "metric_prefix")):
            with self.subTest(key=key):
                d = tempfile.mkdtemp(prefix="holdfast-e2e-")
                try:
                    path = os.path.join(d, "config.yaml")
                    with open(path, "w") as f:
                        json.dump({"apisix": {"node_listen": [{"ip": "127.0.0.1", "port": free_port()}]},
                                   "plugin_attr": {"prometheus": attr}}, f)
                    r = run_holdfast(["-t", "-c", path])
                    self.assertNotEqual(r.returncode, 0)
                    self.assertIn("plugin_attr.prometheus." + key, r.stdout + r.stderr)
                finally:
                    shutil.rmtree(d)

    def test_unsupported_attribute_is_named(self):
        d = tempfile.mkdtemp(prefix="holdfast-e2e-")
        try:
            path = os.path.join(d, "config.yaml")
            with open(path, "w") as f:
                json.dump({"apisix": {"node_listen": [{"ip": "127.0.0.1", "port": free_port()}]},
                           "plugin_attr": {"prometheus": {"metrics": {"http_status": {"extra_labels": []}}}}}, f)
            r = run_holdfast(["-t", "-c", path])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("plugin_attr.prometheus.metrics", r.stdout + r.stderr)
        finally:
            shutil.rmtree(d)

    def test_export_port_taken_fails_the_start(self):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            taken = s.getsockname()[1]
            gw = Gateway({}, config={"plugin_attr": {"prometheus": {"export_addr": {"ip": "127.0.0.1", "port": taken}}}},
                         start=False)
            try:
                with self.assertRaises(RuntimeError):
                    gw.start()
                gw.proc.wait(10)
                self.assertNotEqual(gw.proc.returncode, 0)
                self.assertIn(str(taken), gw.logs())
            finally:
                gw.stop()

    def test_disabled_plugin_means_no_export_server(self):
        gw = Gateway({}, config={"plugins": ["key-auth"]})
        try:
            import socket
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", gw.prometheus_port), timeout=1).close()
        finally:
            gw.stop()


@unittest.skipUnless(shutil.which("prometheus"), "Debian's prometheus package (scripts/install-deps.sh)")
class RealPrometheusTest(unittest.TestCase):
    """A real Prometheus scrapes Holdfast; the dashboard's panel queries answer."""

    def test_dashboard_queries(self):
        up = Upstream("u1")
        gw = Gateway({"routes": [
            {"id": "r1", "uri": "/anything", "plugins": {"prometheus": {}}, "upstream": {"nodes": {up.addr: 1}}},
            {"id": "r2", "uri": "/status/*", "plugins": {"prometheus": {}}, "upstream": {"nodes": {up.addr: 1}}}]})
        d = tempfile.mkdtemp(prefix="holdfast-e2e-prom-")
        prom = None
        try:
            web = free_port()
            with open(os.path.join(d, "prometheus.yml"), "w") as f:
                f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: apisix
    metrics_path: /apisix/prometheus/metrics
    static_configs:
      - targets: ["127.0.0.1:{gw.prometheus_port}"]
""")
            log = open(os.path.join(d, "prometheus.log"), "wb")
            self.addCleanup(log.close)
            prom = subprocess.Popen(["prometheus", f"--config.file={d}/prometheus.yml", f"--storage.tsdb.path={d}/data",
                                     f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=log)
            wait_port(web, timeout=30, proc=prom)

            def query(q):
                url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode({"query": q})
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        body = json.load(r)
                except urllib.error.HTTPError as e:
                    if e.code == 503:  # still starting (its TSDB): not ready yet
                        return []
                    raise
                self.assertEqual(body["status"], "success", body)
                return body["data"]["result"]

            def poll(q, ok, timeout=40):
                end = time.time() + timeout
                while True:
                    res = query(q)
                    if ok(res):
                        return res
                    if time.time() > end:
                        self.fail(f"{q}: {res}")
                    # Traffic between scrapes, so that rate() has a slope.
                    gw.get("/anything")
                    gw.get("/status/500")
                    time.sleep(0.5)

            # Wait for the first scrape, then send known traffic.
            poll('up{job="apisix"}', lambda r: r and r[0]["value"][1] == "1")
            for _ in range(20):
                gw.get("/anything")
            for _ in range(7):
                gw.get("/status/500")
            # Total requests by status (dashboard: "Total Requests" / "Status").
            res = poll('sum(apisix_http_status{route="r2"}) by (code)',
                       lambda r: r and float(r[0]["value"][1]) >= 7)
            self.assertEqual([x["metric"]["code"] for x in res], ["500"])
            res = poll('sum(apisix_http_status{route="r1",code="200"})', lambda r: r and float(r[0]["value"][1]) >= 20)
            # Request rate by status code.
            res = poll('sum(rate(apisix_http_status[30s])) by (code)', lambda r: {x["metric"]["code"] for x in r} >= {"200", "500"})
            # p99 latency by route (histogram_quantile over the buckets).
            res = poll('histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type="request"}[30s])) by (le, route))',
                       lambda r: {x["metric"].get("route") for x in r if x["value"][1] not in ("NaN",)} >= {"r1", "r2"})
            for x in res:
                if x["value"][1] != "NaN":
                    self.assertGreater(float(x["value"][1]), 0)
                    self.assertLessEqual(float(x["value"][1]), 60000)
            # Bandwidth by direction.
            res = poll('sum(rate(apisix_bandwidth[30s])) by (type)',
                       lambda r: {x["metric"]["type"] for x in r if float(x["value"][1]) > 0} == {"ingress", "egress"})
            # Node-level panels.
            poll('sum(apisix_nginx_http_current_connections{state="accepted"})', lambda r: r and float(r[0]["value"][1]) >= 27)
            poll('apisix_http_requests_total', lambda r: r and float(r[0]["value"][1]) >= 27)
        finally:
            if prom:
                prom.terminate()
                prom.wait(15)
            shutil.rmtree(d, ignore_errors=True)
            gw.stop()
            up.stop()


if __name__ == "__main__":
    unittest.main()
