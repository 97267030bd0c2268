"""The fallback control plane with Azure Blob as its store, end to end: a
real etcd, a backup node that exports to Azurite (Microsoft's emulator,
which checks every Shared Key signature and SAS token), and traffic nodes
that never reached etcd serving the CP's routes from it. What this proves
and what it does not: README, "deployment.fallback_cp"."""
import base64
import json
import re
import unittest

from azurite import ACCOUNT, ACCOUNT_KEY, Azurite, ensure_azurite, wait_for
from harness import GatewayTest

DATA, CONF = "fallback-cp-data", "fallback-cp-config"
MANIFEST = "holdfast/default/manifest.json"
INVALID_ETCD = ["https://INVALID_DOMAIN.invalid:7943"]


def azure_cfg(az, mode=None, **blob):
    b = {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY, "resource_container": DATA, "config_container": CONF,
         "endpoint": az.endpoint}
    b.update(blob)
    b = {k: v for k, v in b.items() if v is not None}
    f = {"interval": 1, "azure_blob": b}
    if mode:
        f["mode"] = mode
    return {"deployment": {"fallback_cp": f, "etcd": {"startup_timeout": 1, "resync_delay": 0.5}}}


def metrics(gw):
    """One scrape of /metrics: {name with labels: value}."""
    out = {}
    for line in gw.request_status_raw("/metrics").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metric(gw, name):
    return metrics(gw).get(name)


class AzureFallbackBase(GatewayTest):
    @classmethod
    def setUpClass(cls):
        ensure_azurite()  # raises (the tests fail, never skip) when Azurite cannot be installed

    def setUp(self):
        super().setUp()
        self.az = Azurite()

        class _Stop:
            def stop(_s):
                self.az.destroy()
        self._procs.append(_Stop())
        self.az.start()
        self.az.create_container(DATA)
        self.az.create_container(CONF)
        self.etcd_ = self.etcd()
        self.up = self.upstream("origin")

    def cp_routes(self):
        e = self.etcd_
        e.put("/apisix/upstreams/1", {"nodes": {self.up.addr: 1}, "type": "roundrobin"})
        e.put("/apisix/routes/1", {"uri": "/api/*", "upstream_id": "1", "plugins": {"key-auth": {}}})
        e.put("/apisix/routes/2", {"uri": "/open", "upstream_id": "1"})
        e.put("/apisix/consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}})

    def manifest(self):
        body = self.az.get(DATA, MANIFEST)
        return json.loads(body) if body else None

    def backup_node(self, **blob):
        return self.etcd_gateway(self.etcd_, config=azure_cfg(self.az, "write", **blob), start=False)

    def traffic_node(self, **blob):
        return self.etcd_gateway(INVALID_ETCD, config=azure_cfg(self.az, **blob))


class AzureFallbackTest(AzureFallbackBase):
    def test_backup_then_traffic_node_with_invalid_etcd_serves_cp_routes(self):
        self.cp_routes()
        backup = self.backup_node()
        backup.start(wait=False)
        m = wait_for(self.manifest, what="manifest in the resource container")
        self.assertEqual(m["gateway_group_id"], "default")
        self.assertEqual(m["revision"], self.etcd_.revision())
        self.assertEqual(m["resource"]["bucket"], DATA)
        self.assertEqual(m["config"]["bucket"], CONF)
        # Both containers hold the API7-named object and the immutable one.
        self.assertIn("default", self.az.blobs(CONF))
        self.assertIn(m["config"]["key"], self.az.blobs(CONF))
        self.assertIn("default", self.az.blobs(DATA))
        resources = json.loads(self.az.get(DATA, m["resource"]["key"]))
        self.assertEqual(sorted(r["id"] for r in resources["routes"]), ["1", "2"])
        # The next rounds find the content unchanged: only the manifest's
        # heartbeat is rewritten, with If-Match on the ETag just read, which
        # Azurite accepts.
        wait_for(lambda: (metric(backup, 'holdfast_backup_uploads_skipped_total{store="azure_blob"}') or 0) >= 2,
                 what="two heartbeat-only rounds")
        scrape = metrics(backup)  # one scrape: a round may end between two
        self.assertEqual(scrape['holdfast_backup_exports_total{store="azure_blob"}'],
                         scrape['holdfast_backup_uploads_skipped_total{store="azure_blob"}'] + 1)
        self.assertNotIn("backup export failed", backup.logs())
        later = self.manifest()
        self.assertGreater(later["heartbeat_at"], m["heartbeat_at"])  # rounds 1 s apart rewrote it
        self.assertEqual((later["created_at"], later["resource"]), (m["created_at"], m["resource"]))

        # A traffic node whose etcd host does not resolve: the CP's routes from Azure Blob.
        traffic = self.traffic_node()
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node serving from Azure Blob")
        self.assertEqual(traffic.get("/api/x").status, 401)
        r = traffic.get("/api/x", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"]["x-consumer-username"], "jack")
        _, st = traffic.status()
        self.assertEqual(st["source"], "azure_blob")
        self.assertEqual(int(st["revision"]), m["revision"])
        self.assertIn('holdfast_config_source{source="azure_blob"} 1', traffic.request_status_raw("/metrics"))
        self.assertIn("fallback on Azure Blob", traffic.logs())
        for gw in (backup, traffic):
            self.assertNotIn(ACCOUNT_KEY, gw.logs())

    def test_never_overwrites_a_newer_revision(self):
        # A manifest of a far higher revision, written by someone else: the
        # backup node reads it (Get Blob) and leaves it alone.
        self.cp_routes()
        backup = self.backup_node()
        backup.start(wait=False)
        m = wait_for(self.manifest, what="first export")
        m["revision"] = 10 ** 6
        self.az.put(DATA, MANIFEST, json.dumps(m).encode())
        backup.wait_log("newer than ours", timeout=10)
        self.assertEqual(self.manifest()["revision"], 10 ** 6)

    def test_sas_tokens_for_the_backup_and_the_traffic_node(self):
        self.cp_routes()
        # Write needs create and write; a traffic node only reads.
        backup = self.backup_node(account_key=None, sas_token="?" + self.az.account_sas("rwc"))
        backup.start(wait=False)
        m = wait_for(self.manifest, what="manifest written with a SAS token")
        traffic = self.traffic_node(account_key=None, sas_token=self.az.account_sas("r"))
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node reading with a SAS token")
        self.assertEqual(int(traffic.status()[1]["revision"]), m["revision"])
        for gw in (backup, traffic):
            self.assertNotIn("sig=", gw.logs(), "a SAS token never reaches a log")

    def test_wrong_account_key_one_clear_log_line_and_retries(self):
        self.cp_routes()
        wrong = base64.b64encode(b"definitely-the-wrong-account-key").decode()
        backup = self.backup_node(account_key=wrong)
        backup.start(wait=False)
        # Azurite answers a wrong key with AuthorizationFailure (Azure with AuthenticationFailed).
        backup.wait_log("AuthorizationFailure", timeout=10)
        failures = 'holdfast_fallback_failures_total{store="azure_blob",reason="AuthorizationFailure"}'
        wait_for(lambda: (metric(backup, failures) or 0) >= 3, timeout=20, what="three failed rounds (backing off: 1, 2 s)")
        logs = backup.logs()
        self.assertEqual(logs.count("AuthorizationFailure"), 1, "one clear line, not one per retry")
        self.assertIn("the account key or SAS token was refused", logs)
        self.assertNotIn(wrong, logs)
        self.assertIsNone(backup.proc.poll(), "the node keeps running")
        self.assertIsNone(self.manifest())

        # A traffic node with the wrong key: one line, keeps trying, serves nothing.
        traffic = self.traffic_node(account_key=wrong)
        traffic.wait_log("fallback snapshot not loaded from Azure Blob", timeout=10)
        wait_for(lambda: (metric(traffic, 'holdfast_fallback_failures_total{store="azure_blob",reason="azure_blob"}') or 0) >= 3,
                 timeout=20, what="three failed polls")
        self.assertEqual(traffic.logs().count("AuthorizationFailure"), 1)
        self.assertEqual(traffic.get("/open").status, 503)  # no configuration loaded
        self.assertIsNone(traffic.proc.poll())

    def test_missing_container_is_named(self):
        self.cp_routes()
        backup = self.backup_node(resource_container="no-such-container")
        backup.start(wait=False)
        backup.wait_log("ContainerNotFound", timeout=10)
        line = next(l for l in backup.logs().splitlines() if "ContainerNotFound" in l)
        self.assertIn("no-such-container", line)
        self.assertIn("the container does not exist", line)
        self.assertIsNone(backup.proc.poll())

        traffic = self.traffic_node(config_container="no-such-config")
        # The resource container exists but holds no manifest yet: BlobNotFound,
        # not ContainerNotFound — the two are told apart.
        traffic.wait_log("fallback snapshot not loaded from Azure Blob", timeout=10)
        self.assertIn("BlobNotFound", traffic.logs())
        self.assertNotIn("ContainerNotFound", traffic.logs())
        traffic2 = self.traffic_node(resource_container="no-such-data")
        traffic2.wait_log("ContainerNotFound", timeout=10)
        self.assertTrue(re.search(r"no-such-data\S*: ContainerNotFound", traffic2.logs()), traffic2.logs()[-2000:])


if __name__ == "__main__":
    unittest.main()
