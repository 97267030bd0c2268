"""Several fallback stores at once, end to end: the project's S3 peer
(SigV4 checked with botocore) and Azurite (Shared Key checked by Microsoft's
emulator) side by side under one fallback_cp, a real etcd for the backup
node, and the faults one store can have while the other is healthy: 500s, a
store that accepts and never answers, a tampered snapshot, a wrong key, a
missing bucket or container, a skewed clock."""
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
import unittest

from azurite import ACCOUNT, ACCOUNT_KEY, Azurite, ensure_azurite, wait_for
from harness import GatewayTest, free_port
from s3peer import S3Peer

AK, SK = "AKIAHOLDFASTTEST01", "holdfast/test/secret+key/0123456789abcd"
DATA, CONF = "fallback-cp-data", "fallback-cp-config"  # the bucket and the container names alike
MANIFEST = "holdfast/default/manifest.json"
INVALID_ETCD = ["https://INVALID_DOMAIN.invalid:7943"]
WRONG_AZURE_KEY = "ZGVmaW5pdGVseS10aGUtd3JvbmctYWNjb3VudC1rZXk="


def metrics(gw):
    """One scrape of /metrics: {name with labels: value}; {} before the port opens."""
    out = {}
    try:
        text = gw.request_status_raw("/metrics")
    except OSError:
        return out
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def status(gw):
    try:
        return gw.status()[1]
    except OSError:
        return {}


def snapshot_objects(resources, revision, signing_key=None, tamper=False):
    """A snapshot as a backup node writes it (built here, not by Holdfast):
    [(bucket, key, body)], the manifest last."""
    rbody = json.dumps(resources, separators=(",", ":")).encode()
    cbody = json.dumps({"config": {"config_version": revision, "config_payload": {"keyring": [], "discovery": {}}}}).encode()
    rsha, csha = hashlib.sha256(rbody).hexdigest(), hashlib.sha256(cbody).hexdigest()
    rkey, ckey = f"holdfast/default/resources/{rsha}.json", f"holdfast/default/config/{csha}.json"
    now = int(time.time())
    m = {"format": "holdfast-fallback", "format_version": 1, "gateway_group_id": "default", "revision": revision,
         "producer": {"hostname": "test", "version": "test"}, "created_at": now, "heartbeat_at": now,
         "resource": {"bucket": DATA, "key": rkey, "sha256": rsha, "size": len(rbody)},
         "config": {"bucket": CONF, "key": ckey, "sha256": csha, "size": len(cbody)}}
    if signing_key:
        s = f"holdfast-fallback/v1\ndefault\n{revision}\n{now}\n{DATA}/{rkey}\n{rsha}\n{CONF}/{ckey}\n{csha}"
        m["hmac_sha256"] = hmac.new(signing_key.encode(), s.encode(), hashlib.sha256).hexdigest()
    if tamper:
        rbody = rbody.replace(b"/from", b"/evil")  # the manifest's digest no longer matches
    return [(DATA, rkey, rbody), (CONF, ckey, cbody), (DATA, MANIFEST, json.dumps(m).encode())]


def mocked(uri, text):
    return {"routes": [{"id": "1", "uri": uri, "plugins": {"mocking": {"response_example": text}}}]}


class HangingServer:
    """Accepts connections and reads requests, never answers: a store that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self.conns = []
        self.done = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)  # held open, never read to the end, never answered

    def stop(self):
        self.done = True
        for c in self.conns:
            c.close()
        self.sock.close()


def first_200(gw, path, timeout=20.0):
    """Waits until `path` first answers 200 (polled every 5 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.005)
    raise AssertionError(f"{path} never answered 200:\n{gw.logs()[-3000:]}")


class StoresBase(GatewayTest):
    @classmethod
    def setUpClass(cls):
        ensure_azurite()  # raises (the tests fail, never skip) when Azurite cannot be installed

    def setUp(self):
        super().setUp()
        self.peer = S3Peer(quiet=True).start()
        self.az = Azurite()

        class _Stop:
            def __init__(s, f):
                s.stop = f
        self._procs.append(_Stop(self.peer.destroy))
        self._procs.append(_Stop(self.az.destroy))
        self.az.start()
        for b in (DATA, CONF):
            self.peer.create_bucket(b)
            self.az.create_container(b)
        self.peer.add_user(AK, SK)

    def s3(self, **over):
        s = {"region": "us-east-1", "access_key": AK, "secret_key": SK, "resource_bucket": DATA, "config_bucket": CONF,
             "endpoint": self.peer.endpoint}
        s.update(over)
        return s

    def azure(self, **over):
        b = {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY, "resource_container": DATA, "config_container": CONF,
             "endpoint": self.az.endpoint}
        b.update(over)
        return b

    def fallback(self, stores, mode=None, **extra):
        """stores: [("aws_s3", {...}), ("azure_blob", {...})] in config order."""
        f = {"interval": 1}
        if mode:
            f["mode"] = mode
        for name, conf in stores:
            f[name] = conf
        f.update(extra)
        return f

    def traffic_node(self, stores, start=True, **extra):
        """A traffic node whose primary source is the stores (config_provider json + fallback_cp)."""
        cfg = {"apisix": {"status": {"ip": "127.0.0.1", "port": free_port()}},
               "deployment": {"role_data_plane": {"config_provider": "json"},
                              "fallback_cp": self.fallback(stores, **extra)}}
        gw = self.gateway(config=cfg, provider="json", raw_standalone="{}", start=False)
        if start:
            gw.start()
        return gw

    def publish_s3(self, *a, **kw):
        for bucket, key, body in snapshot_objects(*a, **kw):
            self.peer.put(bucket, key, body)

    def publish_azure(self, *a, **kw):
        for container, blob, body in snapshot_objects(*a, **kw):
            self.az.put(container, blob, body)


class SeveralStoresTest(StoresBase):
    def test_backup_writes_every_store_and_reports_each(self):
        etcd = self.etcd()
        up = self.upstream("origin")
        etcd.put("/apisix/upstreams/1", {"nodes": {up.addr: 1}, "type": "roundrobin"})
        etcd.put("/apisix/routes/1", {"uri": "/open", "upstream_id": "1"})
        cfg = {"deployment": {"fallback_cp": self.fallback([("aws_s3", self.s3()), ("azure_blob", self.azure())], "write"),
                              "etcd": {"startup_timeout": 1, "resync_delay": 0.5}}}
        backup = self.etcd_gateway(etcd, config=cfg, start=False)
        backup.start(wait=False)
        s3m = wait_for(lambda: self.peer.get(DATA, MANIFEST), what="manifest in S3")
        azm = wait_for(lambda: self.az.get(DATA, MANIFEST), what="manifest in Azure Blob")
        self.assertEqual(json.loads(s3m)["revision"], etcd.revision())
        self.assertEqual(json.loads(azm)["revision"], etcd.revision())
        self.assertEqual(json.loads(s3m)["resource"]["sha256"], json.loads(azm)["resource"]["sha256"])
        wait_for(lambda: all(metrics(backup).get(f'holdfast_backup_exports_total{{store="{s}"}}', 0) >= 2
                             for s in ("aws_s3", "azure_blob")), what="two rounds to each store")
        st = status(backup)["stores"]
        self.assertEqual(set(st), {"aws_s3", "azure_blob"})
        self.assertEqual(st["aws_s3"]["revision"], etcd.revision())
        self.assertTrue(st["azure_blob"]["ok"])
        # Two stores and no signing key: any one of them could override the other.
        self.assertIn("2 stores without signing_key", backup.logs())
        self.assertIn("backup node (fallback_cp.mode: write) to S3 and Azure Blob", backup.logs())

    def test_traffic_node_moves_up_never_down_and_ties_go_to_the_first_store(self):
        # Only Azure has a snapshot (S3 is listed first but empty): Azure serves.
        self.publish_azure(mocked("/a", "azure-10"), 10)
        traffic = self.traffic_node([("aws_s3", self.s3()), ("azure_blob", self.azure())])
        wait_for(lambda: traffic.get("/a").status == 200, what="Azure's snapshot served")
        self.assertEqual(status(traffic)["source"], "azure_blob")
        # The same revision in S3, listed first: the tie goes to S3.
        self.publish_s3(mocked("/s", "s3-10"), 10)
        wait_for(lambda: status(traffic).get("source") == "s3", what="the tie going to the first store")
        self.assertEqual(traffic.get("/s").status, 200)
        self.assertEqual(int(status(traffic)["revision"]), 10)
        # A higher revision in the second store: up to it.
        self.publish_azure(mocked("/a12", "azure-12"), 12)
        wait_for(lambda: traffic.get("/a12").status == 200, what="moving up to Azure's revision 12")
        self.assertEqual(status(traffic)["source"], "azure_blob")
        # A lower one in the first store: never down (both stores are read each second).
        self.publish_s3(mocked("/s11", "s3-11"), 11)
        wait_for(lambda: status(traffic)["stores"]["aws_s3"]["revision"] == 11, what="S3's revision 11 read")
        self.assertEqual(traffic.get("/s11").status, 404)
        self.assertEqual(int(status(traffic)["revision"]), 12)
        m = metrics(traffic)
        self.assertEqual(m['holdfast_config_source{source="azure_blob"}'], 1)
        self.assertEqual(m['holdfast_fallback_store_revision{store="aws_s3"}'], 11)
        self.assertEqual(m['holdfast_fallback_store_revision{store="azure_blob"}'], 12)

    def test_snapshot_cli_takes_a_store_name(self):
        self.publish_s3(mocked("/s", "s3"), 7)
        self.publish_azure(mocked("/a", "a"), 9)
        traffic = self.traffic_node([("aws_s3", self.s3()), ("azure_blob", self.azure())], start=False)
        import subprocess
        from harness import BIN

        def cli(*args):
            return subprocess.run([BIN, "snapshot", *args, "-c", traffic.config_path], capture_output=True, text=True,
                                   timeout=60)
        r = cli("inspect")
        self.assertEqual(r.returncode, 2)
        self.assertIn("choose one with --store NAME", r.stderr)
        r = cli("inspect", "--store", "azure_blob")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("revision:        9", r.stdout)
        r = cli("verify", "--store", "aws_s3")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("snapshot revision 7 is valid", r.stdout)
        r = cli("verify", "--store", "gcs")
        self.assertEqual(r.returncode, 2)
        self.assertIn("not configured", r.stderr)


class StoreFaultsTest(StoresBase):
    def test_store_answering_500_the_other_serves(self):
        self.publish_s3(mocked("/s", "s3"), 5)
        self.publish_azure(mocked("/a", "azure"), 5)
        self.peer.fault("500", count=100000)  # every S3 request from now on
        traffic = self.traffic_node([("aws_s3", self.s3()), ("azure_blob", self.azure())])
        wait_for(lambda: traffic.get("/a").status == 200, what="the healthy store serving")
        self.assertEqual(status(traffic)["source"], "azure_blob")
        wait_for(lambda: metrics(traffic).get('holdfast_fallback_failures_total{store="aws_s3",reason="s3"}', 0) >= 1,
                 what="S3's 500s counted")
        st = status(traffic)["stores"]
        self.assertFalse(st["aws_s3"]["ok"])
        self.assertIn("InternalError", st["aws_s3"]["error"])
        self.assertTrue(st["azure_blob"]["ok"])
        self.assertIsNone(traffic.proc.poll())

    def test_hanging_store_does_not_delay_the_healthy_one(self):
        self.publish_azure(mocked("/a", "azure"), 5)
        hang = HangingServer()
        self._procs.append(hang)
        # Azure alone, then Azure with a hanging S3 listed first; timed from
        # the start of the process to the first 200.
        alone = self.traffic_node([("azure_blob", self.azure())], start=False)
        t0 = time.monotonic()
        alone.start(wait=False)
        first_200(alone, "/a")
        healthy_alone = time.monotonic() - t0
        alone.stop()
        both = self.traffic_node([("aws_s3", self.s3(endpoint=hang.endpoint)), ("azure_blob", self.azure())],
                                 start=False)
        t0 = time.monotonic()
        both.start(wait=False)
        first_200(both, "/a")
        with_hanging = time.monotonic() - t0
        self.assertGreaterEqual(hang.accepted, 1, "the hanging store was asked")
        self.assertEqual(status(both)["source"], "azure_blob")
        # A store still waiting for its first answer is not reported as working.
        self.assertFalse(status(both)["stores"]["aws_s3"]["ok"])
        self.assertEqual(metrics(both)['holdfast_fallback_store_ok{store="aws_s3"}'], 0)
        self.assertEqual(metrics(both)['holdfast_fallback_store_ok{store="azure_blob"}'], 1)
        print(f"\nfirst 200: Azure Blob alone {healthy_alone * 1000:.0f} ms; with S3 hanging "
              f"{with_hanging * 1000:.0f} ms (target: <= alone + 100 ms)")

    def test_shutdown_never_waits_on_a_hanging_store(self):
        # Both stores hang, a traffic node waits on each; a backup node
        # exports to them. SIGTERM must end every request in flight instead
        # of leaving it to the stop watchdog (which exits without cleanup).
        hang = HangingServer()
        self._procs.append(hang)
        stores = [("aws_s3", self.s3(endpoint=hang.endpoint)),
                  ("azure_blob", self.azure(endpoint=f"{hang.endpoint}/{ACCOUNT}"))]
        traffic = self.traffic_node(stores, start=False)
        traffic.start(wait=False)
        wait_for(lambda: hang.accepted >= 2, what="both stores asked by the traffic node")
        etcd = self.etcd()
        etcd.put("/apisix/routes/1", {"uri": "/open", "plugins": {"mocking": {"response_example": "x"}}})
        backup = self.etcd_gateway(etcd, config={"deployment": {"fallback_cp": self.fallback(stores, "write")}},
                                   start=False)
        backup.start(wait=False)
        wait_for(lambda: hang.accepted >= 4, what="both stores written by the backup node")
        for gw in (traffic, backup):
            gw.stop()
            logs = gw.logs()
            self.assertIn("holdfast stopped", logs)
            self.assertNotIn("stopped without cleanup", logs)
            self.assertIn("cancelled (shutting down)", logs)

    def test_hanging_store_never_holds_up_the_backup_of_the_other(self):
        hang = HangingServer()
        self._procs.append(hang)
        etcd = self.etcd()
        etcd.put("/apisix/routes/1", {"uri": "/open", "plugins": {"mocking": {"response_example": "x"}}})
        stores = [("aws_s3", self.s3(endpoint=hang.endpoint)), ("azure_blob", self.azure())]
        cfg = {"deployment": {"fallback_cp": self.fallback(stores, "write"),
                              "etcd": {"startup_timeout": 1, "resync_delay": 0.5}}}
        backup = self.etcd_gateway(etcd, config=cfg, start=False)
        backup.start(wait=False)
        # S3's first request waits for its 15 s timeout (4 attempts); Azure's rounds go on meanwhile.
        wait_for(lambda: metrics(backup).get('holdfast_backup_exports_total{store="azure_blob"}', 0) >= 3,
                 what="three Azure rounds while S3 hangs")
        self.assertGreaterEqual(hang.accepted, 1)
        self.assertEqual(metrics(backup).get('holdfast_backup_exports_total{store="aws_s3"}'), 0)
        self.assertEqual(json.loads(self.az.get(DATA, MANIFEST))["revision"], etcd.revision())

    def test_tampered_in_one_store_valid_in_the_other(self):
        self.publish_s3(mocked("/from-s3", "good"), 10, signing_key="sign-me")
        # A higher revision in Azure, its resource object changed after signing.
        self.publish_azure(mocked("/from-azure", "bad"), 11, signing_key="sign-me", tamper=True)
        traffic = self.traffic_node([("azure_blob", self.azure()), ("aws_s3", self.s3())], signing_key="sign-me")
        wait_for(lambda: traffic.get("/from-s3").status == 200, what="the valid snapshot served")
        wait_for(lambda: metrics(traffic).get('holdfast_fallback_failures_total{store="azure_blob",reason="digest"}', 0)
                 >= 1, what="the tampered one counted")
        self.assertEqual(traffic.get("/evil-azure").status, 404)
        self.assertEqual(traffic.get("/from-azure").status, 404)
        self.assertEqual(status(traffic)["source"], "s3")
        self.assertEqual(int(status(traffic)["revision"]), 10)
        self.assertIn("digest does not match", status(traffic)["stores"]["azure_blob"]["error"])

    def test_wrong_azure_key_while_s3_serves(self):
        self.publish_s3(mocked("/s", "s3"), 5)
        traffic = self.traffic_node([("azure_blob", self.azure(account_key=WRONG_AZURE_KEY)), ("aws_s3", self.s3())])
        wait_for(lambda: traffic.get("/s").status == 200, what="S3 serving")
        # Azurite says AuthorizationFailure (Azure: AuthenticationFailed): a credentials error, backed off.
        wait_for(lambda: metrics(traffic).get('holdfast_fallback_failures_total{store="azure_blob",reason="azure_blob"}',
                                              0) >= 3, timeout=20, what="three refused rounds")
        logs = traffic.logs()
        self.assertEqual(logs.count("AuthorizationFailure"), 1, "one clear line, not one per round")
        self.assertIn("the account key or SAS token was refused", logs)
        self.assertNotIn(WRONG_AZURE_KEY, logs)
        self.assertIsNone(traffic.proc.poll())
        # Refused credentials back off (1, 2, 4 s ...) while S3 keeps its 1 s rounds.
        m = metrics(traffic)
        self.assertEqual(status(traffic)["source"], "s3")
        self.assertFalse(status(traffic)["stores"]["azure_blob"]["ok"])
        self.assertTrue(status(traffic)["stores"]["aws_s3"]["ok"])
        self.assertEqual(m['holdfast_fallback_store_ok{store="aws_s3"}'], 1)

    def test_wrong_azure_key_on_the_backup_node_never_holds_up_s3(self):
        etcd = self.etcd()
        etcd.put("/apisix/routes/1", {"uri": "/open", "plugins": {"mocking": {"response_example": "x"}}})
        stores = [("azure_blob", self.azure(account_key=WRONG_AZURE_KEY)), ("aws_s3", self.s3())]
        cfg = {"deployment": {"fallback_cp": self.fallback(stores, "write"),
                              "etcd": {"startup_timeout": 1, "resync_delay": 0.5}}}
        backup = self.etcd_gateway(etcd, config=cfg, start=False)
        backup.start(wait=False)
        wait_for(lambda: metrics(backup).get('holdfast_backup_exports_total{store="aws_s3"}', 0) >= 3, timeout=15,
                 what="S3 rounds while Azure refuses the key")
        self.assertEqual(backup.logs().count("AuthorizationFailure"), 1)
        # Azure's refused rounds back off (1, 2, 4 s ...) in their own loop; S3 keeps its 1 s rounds.
        refused = 'holdfast_fallback_failures_total{store="azure_blob",reason="AuthorizationFailure"}'
        # Azure's rounds at 0, 1, 3, 7 s; S3's every second: about 8 by the fourth refusal.
        wait_for(lambda: metrics(backup).get(refused, 0) >= 4, timeout=20, what="four refused Azure rounds")
        m = metrics(backup)
        self.assertGreaterEqual(m['holdfast_backup_exports_total{store="aws_s3"}'], m[refused] + 2)
        self.assertIsNone(self.az.get(DATA, MANIFEST))
        self.assertIsNone(backup.proc.poll())

    def test_missing_bucket_and_missing_container(self):
        etcd = self.etcd()
        etcd.put("/apisix/routes/1", {"uri": "/open", "plugins": {"mocking": {"response_example": "x"}}})
        stores = [("aws_s3", self.s3(resource_bucket="no-such-bucket")), ("azure_blob", self.azure())]
        cfg = {"deployment": {"fallback_cp": self.fallback(stores, "write"),
                              "etcd": {"startup_timeout": 1, "resync_delay": 0.5}}}
        backup = self.etcd_gateway(etcd, config=cfg, start=False)
        backup.start(wait=False)
        wait_for(lambda: self.az.get(DATA, MANIFEST), what="Azure written despite the missing S3 bucket")
        backup.wait_log("NoSuchBucket", timeout=10)
        self.assertTrue(any("no-such-bucket" in l for l in backup.logs().splitlines() if "NoSuchBucket" in l))

        self.publish_s3(mocked("/s", "s3"), 5)
        traffic = self.traffic_node([("azure_blob", self.azure(resource_container="no-such-data")), ("aws_s3", self.s3())])
        wait_for(lambda: traffic.get("/s").status == 200, what="S3 serving despite the missing container")
        traffic.wait_log("ContainerNotFound", timeout=10)
        self.assertIn("the container does not exist", status(traffic)["stores"]["azure_blob"]["error"])

    def test_clock_skew_is_reported_clearly(self):
        self.publish_azure(mocked("/a", "azure"), 5)
        self.peer.settings(clock_offset=3600)  # the S3 peer's clock is an hour ahead of ours
        traffic = self.traffic_node([("aws_s3", self.s3()), ("azure_blob", self.azure())])
        wait_for(lambda: traffic.get("/a").status == 200, what="Azure serving")
        traffic.wait_log("RequestTimeTooSkewed", timeout=10)
        line = next(l for l in traffic.logs().splitlines() if "RequestTimeTooSkewed" in l)
        self.assertIn("check this host's clock", line)
        self.assertEqual(traffic.logs().count("RequestTimeTooSkewed"), 1)


if __name__ == "__main__":
    unittest.main()
