"""The fallback control plane with Google Cloud Storage as its store, end to
end: a real etcd, a backup node that exports to the project's S3 peer in GCS
mode (HMAC requests checked with botocore's SigV4, generations, and bearer
tokens only from its own token endpoint and metadata server), and traffic
nodes that never reached etcd serving the CP's routes from it. What this
proves and what it does not (nothing here is Google itself): README,
"deployment.fallback_cp"."""
import json
import os
import subprocess
import tempfile
import unittest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness import BIN, GatewayTest, free_port
from s3peer import S3Peer
import test_fallback
from test_fallback import wait_for
from test_fallback_stores import CONF, DATA, metrics, mocked, snapshot_objects

HMAC_ID, HMAC_SECRET = "GOOG1EHOLDFASTTESTACCESSID0123456789", "holdfast+gcs/test/secret0123456789abcdef"
MANIFEST = "holdfast/default/manifest.json"
INVALID_ETCD = ["https://INVALID_DOMAIN.invalid:7943"]
EMAIL = "holdfast-fallback@holdfast-test.iam.gserviceaccount.com"


def rsa_key():
    """(private PEM as in a Google key file, public PEM)."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
    public = k.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


class GcsBase(GatewayTest):
    """One GCS-mode peer for the class; every test gets buckets of its own."""
    _n = 0

    @classmethod
    def setUpClass(cls):
        cls.peer = S3Peer(gcs=True, quiet=True).start()
        cls.peer.add_user(HMAC_ID, HMAC_SECRET)
        cls.keydir = tempfile.mkdtemp(prefix="gcs-keys-")

    @classmethod
    def tearDownClass(cls):
        cls.peer.destroy()
        for f in os.listdir(cls.keydir):
            os.remove(os.path.join(cls.keydir, f))
        os.rmdir(cls.keydir)

    def setUp(self):
        super().setUp()
        GcsBase._n += 1
        self.data, self.conf = f"gcs-data-{GcsBase._n}", f"gcs-conf-{GcsBase._n}"
        self.peer.create_bucket(self.data)
        self.peer.create_bucket(self.conf)
        self.peer.clear_faults()
        self.peer.reset_counters()
        self.etcd_ = self.etcd()
        self.up = self.upstream("origin")

    def gcs(self, **over):
        g = {"resource_bucket": self.data, "config_bucket": self.conf, "endpoint": self.peer.endpoint,
             "hmac_access_id": HMAC_ID, "hmac_secret": HMAC_SECRET}
        g.update(over)
        return {k: v for k, v in g.items() if v is not None}

    def cfg(self, mode=None, **over):
        f = {"interval": 1, "gcs": self.gcs(**over)}
        if mode:
            f["mode"] = mode
        return {"deployment": {"fallback_cp": f, "etcd": {"startup_timeout": 1, "resync_delay": 0.5}}}

    # The control plane's routes, as in the S3 tests (self.etcd_, self.up).
    cp_routes = test_fallback.FallbackBase.cp_routes

    def manifest(self):
        body = self.peer.get(self.data, MANIFEST)
        return json.loads(body) if body else None

    def generation(self, key=MANIFEST):
        return next((o["generation"] for o in self.peer.objects(self.data) if o["key"] == key), None)

    def backup_node(self, env=None, **over):
        gw = self.etcd_gateway(self.etcd_, config=self.cfg("write", **over), start=False, extra_env=env)
        gw.start(wait=False)
        return gw

    def traffic_node(self, env=None, **over):
        return self.etcd_gateway(INVALID_ETCD, config=self.cfg(**over), extra_env=env)

    def key_file(self, private_pem, name="key.json", token_uri=None):
        path = os.path.join(self.keydir, f"{self.data}-{name}")
        with open(path, "w") as f:
            json.dump({"type": "service_account", "project_id": "holdfast-test", "private_key_id": "k1",
                       "private_key": private_pem, "client_email": EMAIL, "client_id": "1",
                       "token_uri": token_uri or self.peer.token_uri}, f)
        return path


class GcsHmacTest(GcsBase):
    def test_backup_then_traffic_node_with_invalid_etcd_serves_cp_routes(self):
        self.cp_routes()
        backup = self.backup_node()
        m = wait_for(self.manifest, what="manifest in the resource bucket")
        self.assertEqual(m["revision"], self.etcd_.revision())
        self.assertEqual((m["resource"]["bucket"], m["config"]["bucket"]), (self.data, self.conf))
        self.assertIn(m["config"]["key"], [o["key"] for o in self.peer.objects(self.conf)])
        # Heartbeat rounds replace the manifest only at the generation they read.
        wait_for(lambda: metrics(backup).get('holdfast_backup_uploads_skipped_total{store="gcs"}', 0) >= 2,
                 what="two heartbeat-only rounds")
        puts = [r for r in self.peer.requests() if r["method"] == "PUT" and (r["bucket"], r["key"]) == (self.data, MANIFEST)]
        self.assertTrue(all(r["auth"] == "ok" and r["status"] == 200 for r in puts), puts)
        self.assertTrue(all("x-goog-if-generation-match" in r["signed_headers"] for r in puts), puts)
        self.assertNotIn("backup export failed", backup.logs())

        traffic = self.traffic_node()
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node serving from GCS")
        self.assertEqual(traffic.get("/api/x").status, 401)
        self.assertEqual(traffic.get("/api/x", headers={"apikey": "jack-key"}).status, 200)
        _, st = traffic.status()
        self.assertEqual(st["source"], "gcs")
        self.assertEqual(int(st["revision"]), m["revision"])
        self.assertIn("gcs", st["stores"])
        self.assertEqual(metrics(traffic)['holdfast_config_source{source="gcs"}'], 1)
        self.assertIn("fallback on GCS", traffic.logs())
        for gw in (backup, traffic):
            self.assertNotIn(HMAC_SECRET, gw.logs())

        # holdfast snapshot ... --store gcs reads the same snapshot.
        r = subprocess.run([BIN, "snapshot", "verify", "--store", "gcs", "-c", traffic.config_path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"snapshot revision {m['revision']} is valid", r.stdout)

    def test_never_regresses_and_a_stale_generation_loses(self):
        self.cp_routes()
        backup = self.backup_node()
        first = wait_for(self.manifest, what="first export")
        # The next manifest write is held in the store while someone else
        # replaces the manifest: the held write names the generation it
        # read, which is no longer current, and loses (412).
        self.peer.fault("hang", seconds=2.0, method="PUT", bucket=self.data, key=MANIFEST)
        wait_for(lambda: self.peer.counters()["faults_injected"].get("hang"), what="a held manifest write")
        other = dict(first, heartbeat_at=first["heartbeat_at"] + 1, producer={"hostname": "other", "version": "x"})
        self.peer.put(self.data, MANIFEST, json.dumps(other))
        backup.wait_log("the manifest changed while exporting", timeout=10)
        lost = [r for r in self.peer.requests()
                if r["method"] == "PUT" and (r["bucket"], r["key"]) == (self.data, MANIFEST) and r["status"] == 412]
        self.assertEqual(len(lost), 1, lost)
        wait_for(lambda: self.manifest()["producer"]["hostname"] != "other", what="the next round from a fresh read")

        # A far higher revision written by someone else is never overwritten.
        high = dict(self.manifest(), revision=10 ** 6)
        self.peer.put(self.data, MANIFEST, json.dumps(high))
        gen = self.generation()
        backup.wait_log("newer than ours", timeout=10)
        self.assertEqual(self.manifest()["revision"], 10 ** 6)
        self.assertEqual(self.generation(), gen)

    def test_wrong_hmac_secret_one_clear_log_line_and_backs_off(self):
        self.cp_routes()
        wrong = "definitely+the/wrong-secret0123456789"
        backup = self.backup_node(hmac_secret=wrong)
        backup.wait_log("SignatureDoesNotMatch", timeout=10)
        refused = 'holdfast_fallback_failures_total{store="gcs",reason="SignatureDoesNotMatch"}'
        wait_for(lambda: metrics(backup).get(refused, 0) >= 3, timeout=20, what="three refused rounds (1, 2 s apart)")
        logs = backup.logs()
        self.assertEqual(logs.count("SignatureDoesNotMatch"), 1, "one clear line, not one per round")
        self.assertIn("the HMAC secret does not match the access id", logs)
        self.assertNotIn(wrong, logs)
        self.assertNotIn("AWS4-HMAC-SHA256", logs)
        self.assertIsNone(backup.proc.poll(), "the node keeps running")
        self.assertIsNone(self.manifest())

    def test_missing_bucket_is_named(self):
        self.cp_routes()
        backup = self.backup_node(resource_bucket="no-such-bucket")
        backup.wait_log("NoSuchBucket", timeout=10)
        line = next(l for l in backup.logs().splitlines() if "NoSuchBucket" in l)
        self.assertIn("gs://no-such-bucket/", line)
        self.assertIn("the bucket does not exist", line)
        self.assertIsNone(backup.proc.poll())
        traffic = self.traffic_node(resource_bucket="no-such-data")
        traffic.wait_log("NoSuchBucket", timeout=10)
        self.assertIn("the bucket does not exist", traffic.status()[1]["stores"]["gcs"]["error"])


class GcsTokenTest(GcsBase):
    def test_service_account_key_file(self):
        private, public = rsa_key()
        self.peer.add_service_account(EMAIL, public)
        path = self.key_file(private)
        before = self.peer.counters().get("gcs", {}).get("tokens_issued", {}).get("service-account", 0)
        self.cp_routes()
        backup = self.backup_node(hmac_access_id=None, hmac_secret=None, credentials_file=path)
        m = wait_for(self.manifest, what="manifest written with a service-account token")
        self.assertEqual(m["revision"], self.etcd_.revision())
        # The peer issued the token only for a JWT that its public key
        # verifies, with iss, aud, scope, iat and exp as Google checks them.
        gcs = self.peer.counters()["gcs"]
        self.assertEqual(gcs["tokens_issued"]["service-account"], before + 1)
        self.assertGreaterEqual(gcs["bearer_ok"], 3)

        # A revoked token is refused once (401), replaced at once, and the round still works.
        wait_for(lambda: metrics(backup).get('holdfast_backup_exports_total{store="gcs"}', 0) >= 2, what="second round")
        self.peer.revoke_tokens()
        exports = metrics(backup)['holdfast_backup_exports_total{store="gcs"}']
        wait_for(lambda: metrics(backup).get('holdfast_backup_exports_total{store="gcs"}', 0) >= exports + 2,
                 what="rounds after the revocation")
        self.assertEqual(self.peer.counters()["gcs"]["tokens_issued"]["service-account"], before + 2)
        self.assertNotIn("backup export failed", backup.logs())

        # A traffic node finds the file through GOOGLE_APPLICATION_CREDENTIALS.
        traffic = self.traffic_node(env={"GOOGLE_APPLICATION_CREDENTIALS": path}, hmac_access_id=None,
                                    hmac_secret=None)
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node reading with a token")
        self.assertIn("GCS credentials from service-account", traffic.logs())
        for gw in (backup, traffic):
            logs = gw.logs()
            self.assertNotIn("ya29.", logs, "a token never reaches a log")
            self.assertNotIn(private.splitlines()[1], logs, "nor the private key")

    def test_service_account_key_the_token_endpoint_refuses(self):
        # The file's key is not the one the token endpoint knows for the account.
        private, _ = rsa_key()
        _, other_public = rsa_key()
        self.peer.add_service_account(EMAIL, other_public)
        path = self.key_file(private, "wrong.json")
        self.cp_routes()
        backup = self.backup_node(hmac_access_id=None, hmac_secret=None, credentials_file=path)
        backup.wait_log("invalid_grant", timeout=10)
        wait_for(lambda: metrics(backup).get('holdfast_fallback_failures_total{store="gcs",reason="NoCredentials"}', 0)
                 >= 3, timeout=20, what="three rounds without a token")
        logs = backup.logs()
        self.assertEqual(logs.count("invalid_grant"), 1, "one clear line")
        self.assertIn(f"service account {EMAIL}: the token exchange failed: HTTP 400 invalid_grant", logs)
        self.assertNotIn(private.splitlines()[1], logs)
        self.assertIsNone(backup.proc.poll())
        self.assertIsNone(self.manifest())
        self.assertGreaterEqual(self.peer.counters()["gcs"]["token_refused"]["signature does not verify"], 1)

    def test_metadata_server(self):
        # Tokens of 4 s: renewed at half their lifetime, before they expire.
        self.peer.metadata_server(token_lifetime=4)
        host = f"127.0.0.1:{self.peer.port}"
        env = {"GCE_METADATA_HOST": host, "GOOGLE_APPLICATION_CREDENTIALS": ""}
        self.cp_routes()
        backup = self.backup_node(env=env, hmac_access_id=None, hmac_secret=None)
        wait_for(self.manifest, what="manifest written with a metadata-server token")
        traffic = self.traffic_node(env=env, hmac_access_id=None, hmac_secret=None)
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node reading with a metadata token")
        self.assertIn("GCS credentials from metadata-server", traffic.logs())
        gcs = self.peer.counters()["gcs"]
        self.assertGreaterEqual(gcs["tokens_issued"]["metadata"], 2)
        wait_for(lambda: self.peer.counters()["gcs"]["tokens_issued"]["metadata"] >= 5, timeout=15,
                 what="tokens renewed before they expire")
        # The peer refuses a token request without Metadata-Flavor: Google; none came.
        self.assertNotIn("no Metadata-Flavor: Google header", gcs.get("token_refused", {}))
        self.assertEqual(self.peer.counters()["gcs"].get("bearer_refused", 0), 0)


class GcsAndS3Test(GcsBase):
    """GCS beside an S3 store: the higher revision wins, whichever serves it."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.s3peer = S3Peer(quiet=True).start()
        cls.s3peer.add_user(HMAC_ID, HMAC_SECRET)
        for b in (DATA, CONF):
            cls.s3peer.create_bucket(b)
            cls.peer.create_bucket(b)

    @classmethod
    def tearDownClass(cls):
        cls.s3peer.destroy()
        super().tearDownClass()

    def test_higher_revision_wins_and_status_names_gcs(self):
        for bucket, key, body in snapshot_objects(mocked("/from-s3", "s3"), 5):
            self.s3peer.put(bucket, key, body)
        for bucket, key, body in snapshot_objects(mocked("/from-gcs", "gcs"), 7):
            self.peer.put(bucket, key, body)
        s3 = {"region": "us-east-1", "access_key": HMAC_ID, "secret_key": HMAC_SECRET, "resource_bucket": DATA,
              "config_bucket": CONF, "endpoint": self.s3peer.endpoint}
        # S3 is listed first, GCS holds the higher revision.
        cfg = {"apisix": {"status": {"ip": "127.0.0.1", "port": free_port()}},
               "deployment": {"role_data_plane": {"config_provider": "json"},
                              "fallback_cp": {"interval": 1, "aws_s3": s3,
                                              "gcs": self.gcs(resource_bucket=DATA, config_bucket=CONF)}}}
        traffic = self.gateway(config=cfg, provider="json", raw_standalone="{}")
        wait_for(lambda: traffic.get("/from-gcs").status == 200, what="GCS's higher revision served")
        self.assertEqual(traffic.get("/from-s3").status, 404)
        st = traffic.status()[1]
        self.assertEqual(st["source"], "gcs")
        self.assertEqual(int(st["revision"]), 7)
        self.assertEqual(st["stores"]["gcs"]["revision"], 7)
        wait_for(lambda: traffic.status()[1]["stores"]["aws_s3"]["revision"] == 5, what="S3 read too")
        m = metrics(traffic)
        self.assertEqual(m['holdfast_fallback_store_revision{store="gcs"}'], 7)
        self.assertEqual(m['holdfast_config_source{source="gcs"}'], 1)
        self.assertIn("2 stores without signing_key", traffic.logs())


if __name__ == "__main__":
    unittest.main()
