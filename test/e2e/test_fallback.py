"""The fallback control plane end to end: a real etcd, a backup node that
exports to an S3 endpoint verifying SigV4 with botocore (s3peer.py), and
traffic nodes that keep serving the CP's routes when etcd is gone."""
import json
import os
import time
import unittest

from harness import GatewayTest, free_port
from s3peer import S3Peer

AK, SK = "AKIAHOLDFASTTEST01", "holdfast/test/secret+key/0123456789abcd"


def fallback_cfg(peer, mode=None, **extra):
    s3 = {"region": "us-east-1", "access_key": AK, "secret_key": SK, "resource_bucket": "fallback-cp-data",
          "config_bucket": "fallback-cp-config", "endpoint": peer.endpoint}
    f = {"interval": 1, "aws_s3": s3}
    if mode:
        f["mode"] = mode
    f.update(extra)
    return {"deployment": {"fallback_cp": f, "etcd": {"startup_timeout": 1, "resync_delay": 0.5}}}


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class FallbackBase(GatewayTest):
    def setUp(self):
        super().setUp()
        self.peer = S3Peer(quiet=True).start()

        class _Stop:
            def stop(_s):
                self.peer.destroy()
        self._procs.append(_Stop())
        self.peer.create_bucket("fallback-cp-data")
        self.peer.create_bucket("fallback-cp-config")
        self.peer.add_user(AK, SK)
        self.etcd_ = self.etcd()
        self.up = self.upstream("origin")

    def cp_routes(self):
        e = self.etcd_
        e.put("/apisix/upstreams/1", {"nodes": {self.up.addr: 1}, "type": "roundrobin"})
        e.put("/apisix/routes/1", {"uri": "/api/*", "upstream_id": "1", "plugins": {"key-auth": {}}})
        e.put("/apisix/routes/2", {"uri": "/open", "upstream_id": "1"})
        e.put("/apisix/consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}})

    def backup_node(self, **extra):
        return self.etcd_gateway(self.etcd_, config=fallback_cfg(self.peer, "write", **extra), start=False)

    def manifest(self):
        objs = self.peer.objects("fallback-cp-data")
        keys = [o["key"] if isinstance(o, dict) else o for o in objs]
        if "holdfast/default/manifest.json" not in keys:
            return None
        return json.loads(self.peer.get("fallback-cp-data", "holdfast/default/manifest.json"))

    def publish(self, resources, revision, tamper=None, signing_key=None):
        """Writes a snapshot with botocore (not with Holdfast), as a backup node would."""
        import hashlib
        import hmac
        rbody = json.dumps(resources, separators=(",", ":")).encode()
        cbody = json.dumps({"config": {"config_version": revision, "config_payload": {"keyring": [], "discovery": {}}}}).encode()
        rsha, csha = hashlib.sha256(rbody).hexdigest(), hashlib.sha256(cbody).hexdigest()
        rkey, ckey = f"holdfast/default/resources/{rsha}.json", f"holdfast/default/config/{csha}.json"
        now = int(time.time())
        m = {"format": "holdfast-fallback", "format_version": 1, "gateway_group_id": "default", "revision": revision,
             "producer": {"hostname": "test", "version": "test"}, "created_at": now, "heartbeat_at": now,
             "resource": {"bucket": "fallback-cp-data", "key": rkey, "sha256": rsha, "size": len(rbody)},
             "config": {"bucket": "fallback-cp-config", "key": ckey, "sha256": csha, "size": len(cbody)}}
        if signing_key:
            s = (f"holdfast-fallback/v1\ndefault\n{revision}\n{now}\nfallback-cp-data/{rkey}\n{rsha}\n"
                 f"fallback-cp-config/{ckey}\n{csha}")
            m["hmac_sha256"] = hmac.new(signing_key.encode(), s.encode(), hashlib.sha256).hexdigest()
        if tamper == "body":
            rbody = rbody.replace(b"/from", b"/evil")
        self.peer.put("fallback-cp-data", rkey, rbody)
        self.peer.put("fallback-cp-config", ckey, cbody)
        self.peer.put("fallback-cp-data", "holdfast/default/manifest.json", json.dumps(m).encode())


class FallbackTest(FallbackBase):
    def test_backup_then_traffic_node_with_invalid_etcd_serves_cp_routes(self):
        self.cp_routes()
        backup = self.backup_node()
        backup.start(wait=False)
        m = wait_for(self.manifest, what="manifest in the resource bucket")
        self.assertEqual(m["gateway_group_id"], "default")
        self.assertEqual(m["revision"], self.etcd_.revision())
        # both buckets hold the gateway group's objects (API7 names + immutable ones)
        cfg_keys = [o["key"] if isinstance(o, dict) else o for o in self.peer.objects("fallback-cp-config")]
        self.assertIn("default", cfg_keys)
        self.assertIn(m["config"]["key"], cfg_keys)
        resources = json.loads(self.peer.get("fallback-cp-data", m["resource"]["key"]))
        self.assertEqual(sorted(r["id"] for r in resources["routes"]), ["1", "2"])
        config = json.loads(self.peer.get("fallback-cp-config", "default"))
        self.assertIn("keyring", config["config"]["config_payload"])
        # the backup node does not proxy
        with self.assertRaises(OSError):
            import socket
            socket.create_connection(("127.0.0.1", backup.port), timeout=0.5)

        # A traffic node whose etcd host does not resolve: CP routes from S3.
        traffic = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=fallback_cfg(self.peer))
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node serving from S3")
        self.assertEqual(traffic.get("/api/x").status, 401)
        r = traffic.get("/api/x", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"]["x-consumer-username"], "jack")
        code, st = traffic.status()
        self.assertEqual(st["source"], "s3")
        self.assertEqual(int(st["revision"]), m["revision"])
        metrics = traffic.request_status_raw("/metrics")
        self.assertIn('holdfast_config_source{source="s3"} 1', metrics)
        self.assertIn("holdfast_fallback_snapshot_revision", metrics)
        self.assertIn("holdfast_aws_credential_refreshes_total 1", metrics)
        self.assertIn("holdfast_aws_credential_refresh_failures_total 0", metrics)

    def test_cache_first_then_s3_and_back_to_etcd(self):
        self.cp_routes()
        backup = self.backup_node()
        backup.start(wait=False)
        wait_for(self.manifest, what="manifest")
        traffic = self.etcd_gateway(self.etcd_, config=fallback_cfg(self.peer))
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node on etcd")
        self.assertEqual(traffic.status()[1]["source"], "etcd")
        cache = json.load(open(os.path.join(traffic.dir, "fallback-cache.json")))
        self.assertEqual(cache["revision"], self.etcd_.revision())
        # restart the traffic node with etcd down and S3 down: the cache serves
        def outage():
            self.etcd_.stop()
            self.peer.stop()
        traffic.restart(before_start=outage)
        traffic2 = traffic
        wait_for(lambda: traffic2.get("/open").status == 200, what="traffic node serving from the cache")
        self.assertEqual(traffic2.status()[1]["source"], "cache")
        # etcd returns with a new route: the node switches back to etcd
        self.etcd_.start()
        self.etcd_.put("/apisix/routes/3", {"uri": "/new", "plugins": {"mocking": {"response_example": "new"}}})
        wait_for(lambda: traffic2.get("/new").status == 200, timeout=15, what="back on etcd")
        self.assertEqual(traffic2.status()[1]["source"], "etcd")

    def test_runtime_etcd_loss_polls_s3_for_newer_snapshots(self):
        self.cp_routes()
        traffic = self.etcd_gateway(self.etcd_, config=fallback_cfg(self.peer))
        wait_for(lambda: traffic.get("/open").status == 200, what="etcd config")
        self.etcd_.stop()
        # another (healthy) CP site exports a newer snapshot: write it with an independent client
        rev = 1000
        resources = {"routes": [{"id": "9", "uri": "/from-s3", "plugins": {"mocking": {"response_example": "s3"}}}]}
        self.publish(resources, rev)
        wait_for(lambda: traffic.get("/from-s3").status == 200, timeout=10, what="newer S3 snapshot applied")
        self.assertEqual(traffic.status()[1]["source"], "s3")

    def test_bad_snapshots_never_replace_a_good_one(self):
        good = {"routes": [{"id": "1", "uri": "/good", "plugins": {"mocking": {"response_example": "good"}}}]}
        self.publish(good, 10)
        cfg = fallback_cfg(self.peer, signing_key="sign-me")
        # S3 as the primary source (config_provider json + fallback_cp)
        cfg["deployment"]["role_data_plane"] = {"config_provider": "json"}
        self.publish(good, 10, signing_key="sign-me")
        traffic = self.gateway(config=cfg, provider="json", raw_standalone="{}")
        wait_for(lambda: traffic.get("/good").status == 200, what="signed snapshot applied")
        # tampered body: digest mismatch
        self.publish({"routes": [{"id": "1", "uri": "/from-evil", "upstream": {"nodes": {"127.0.0.1:1": 1}}}]}, 11,
                     tamper="body", signing_key="sign-me")
        traffic.wait_log("digest does not match", timeout=5)
        # unsigned manifest
        self.publish({"routes": [{"id": "2", "uri": "/unsigned", "plugins": {"mocking": {"response_example": "x"}}}]}, 12)
        traffic.wait_log("not signed", timeout=5)
        # schema error inside a correctly signed snapshot: rejected whole
        self.publish({"routes": [{"id": "3", "uri": 42}, {"id": "4", "uri": "/partial",
                                                          "plugins": {"mocking": {"response_example": "x"}}}]},
                     13, signing_key="sign-me")
        traffic.wait_log("rejected whole", timeout=5)
        self.assertEqual(traffic.get("/good").status, 200)
        self.assertEqual(traffic.get("/partial").status, 404)
        self.assertEqual(traffic.get("/unsigned").status, 404)
        metrics = traffic.request_status_raw("/metrics") if traffic.status_port else ""
        self.assertTrue(metrics == "" or "holdfast_fallback_failures_total" in metrics)

    def test_failure_reasons_name_what_failed(self):
        # A missing manifest is the store's failure (its key holds the word
        # "manifest", which once made it count as a format failure); a
        # resource object of the wrong shape is a format failure.
        traffic = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=fallback_cfg(self.peer), start=False)
        traffic.start(wait=False)

        def reasons():
            try:
                return traffic.request_status_raw("/metrics")
            except OSError:  # the status port is not open yet
                return ""
        wait_for(lambda: 'holdfast_fallback_failures_total{store="aws_s3",reason="s3"}' in reasons(), what="missing manifest counted")
        self.assertNotIn('reason="format"', reasons())
        self.publish({"routes": {"id": "1", "uri": "/not-a-list"}}, 5)
        wait_for(lambda: 'holdfast_fallback_failures_total{store="aws_s3",reason="format"}' in reasons(), what="bad shape counted")
        self.publish({"routes": [{"id": "1", "uri": "/from-s3"}]}, 6, tamper="body")
        wait_for(lambda: 'holdfast_fallback_failures_total{store="aws_s3",reason="digest"}' in reasons(), what="bad digest counted")

    def test_export_skips_unchanged_content_but_heartbeats(self):
        self.cp_routes()
        backup = self.backup_node()
        backup.start(wait=False)
        m1 = wait_for(self.manifest, what="first manifest")
        puts_before = self.peer.counters()
        time.sleep(2.5)
        m2 = self.manifest()
        self.assertEqual(m1["resource"]["sha256"], m2["resource"]["sha256"])
        self.assertEqual(m1["created_at"], m2["created_at"])
        self.assertGreater(m2["heartbeat_at"], m1["heartbeat_at"])
        keys = [o["key"] if isinstance(o, dict) else o for o in self.peer.objects("fallback-cp-data")]
        self.assertEqual(len([k for k in keys if k.startswith("holdfast/default/resources/")]), 1)
        # a change exports a new immutable object and moves the manifest
        self.etcd_.put("/apisix/routes/5", {"uri": "/five", "upstream_id": "1"})
        m3 = wait_for(lambda: (lambda m: m if m and m["revision"] > m2["revision"] else None)(self.manifest()),
                      what="new revision exported")
        self.assertNotEqual(m3["resource"]["sha256"], m1["resource"]["sha256"])

    def test_never_overwrites_a_newer_revision_or_exports_empty(self):
        # empty etcd: nothing exported
        backup = self.backup_node()
        backup.start(wait=False)
        backup.wait_log("not exporting an empty snapshot", timeout=10)
        self.assertIsNone(self.manifest())
        backup.stop()
        # a newer revision already in the bucket is kept
        self.publish({"routes": [{"id": "1", "uri": "/newer", "plugins": {"mocking": {"response_example": "n"}}}]}, 10 ** 6)
        self.cp_routes()
        backup2 = self.backup_node()
        backup2.start(wait=False)
        backup2.wait_log("newer than ours", timeout=10)
        self.assertEqual(self.manifest()["revision"], 10 ** 6)

    def test_wrong_credentials_one_clear_log_line_and_retry(self):
        self.cp_routes()
        cfg = fallback_cfg(self.peer, "write")
        cfg["deployment"]["fallback_cp"]["aws_s3"]["secret_key"] = "definitely-wrong-secret"
        backup = self.etcd_gateway(self.etcd_, config=cfg, start=False)
        backup.start(wait=False)
        backup.wait_log("SignatureDoesNotMatch", timeout=10)
        time.sleep(2.5)  # several rounds
        logs = backup.logs()
        self.assertEqual(logs.count("SignatureDoesNotMatch"), 1, "one clear line, not one per retry")
        self.assertNotIn("definitely-wrong-secret", logs)
        self.assertNotIn(SK, logs)
        self.assertIsNone(backup.proc.poll(), "the node must keep running")


if __name__ == "__main__":
    unittest.main()


class GrpcFromFallbackTest(FallbackBase):
    def test_grpc_route_restored_from_s3(self):
        # Issue #13 item 4: a gRPC route the backup node exported is served by
        # a traffic node that never reached etcd, to a grpcio client over h2c.
        import grpc  # Debian's python3-grpcio
        from test_grpc import GrpcOrigin
        o = GrpcOrigin()
        self._procs.append(o)
        self.etcd_.put("/apisix/routes/g", {"uri": "/test.Echo/*", "upstream": {"scheme": "grpc",
                                                                               "nodes": {o.addr: 1}}})
        backup = self.backup_node()
        backup.start(wait=False)
        wait_for(self.manifest, what="manifest with the gRPC route")
        traffic = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=fallback_cfg(self.peer))
        ch = grpc.insecure_channel(f"127.0.0.1:{traffic.port}")
        self.addCleanup(ch.close)

        def unary():
            try:
                return ch.unary_unary("/test.Echo/Unary")(b"from-s3", timeout=5)
            except grpc.RpcError:
                return None
        self.assertEqual(wait_for(unary, what="the gRPC call served from the S3 snapshot"), b"echo:from-s3")
        self.assertEqual(traffic.status()[1]["source"], "s3")
        got = list(ch.unary_stream("/test.Echo/ServerStream")(b"3", timeout=10))
        self.assertEqual(got, [b"msg-0", b"msg-1", b"msg-2"])


class IrsaTest(FallbackBase):
    """Web identity (IRSA): the token file is exchanged at STS for temporary
    credentials, re-read on every refresh (Kubernetes rotates it)."""

    ROLE = "arn:aws:iam::123456789012:role/holdfast-backup"

    def irsa_env(self, token_file):
        return {"AWS_ROLE_ARN": self.ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": token_file,
                "AWS_ROLE_SESSION_NAME": "holdfast-e2e", "AWS_ENDPOINT_URL_STS": self.peer.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}

    def irsa_cfg(self, mode=None):
        cfg = fallback_cfg(self.peer, mode)
        s3 = cfg["deployment"]["fallback_cp"]["aws_s3"]
        del s3["access_key"], s3["secret_key"]
        return cfg

    def test_backup_and_traffic_nodes_with_web_identity(self):
        import tempfile
        self.cp_routes()
        tok_dir = tempfile.mkdtemp(prefix="irsa-")
        token_file = os.path.join(tok_dir, "token")
        with open(token_file, "w") as f:
            f.write("jwt-token-one")
        # credentials that expire quickly force refreshes during the test
        self.peer.register_web_identity(self.ROLE, "jwt-token-one", lifetime=4)
        backup = self.etcd_gateway(self.etcd_, config=self.irsa_cfg("write"), start=False,
                                   extra_env=self.irsa_env(token_file))
        backup.start(wait=False)
        m = wait_for(self.manifest, what="manifest written with IRSA credentials")
        self.assertEqual(m["revision"], self.etcd_.revision())
        sts_calls = lambda: sum(self.peer.counters()["sts"]["calls"].values())  # noqa: E731
        first = sts_calls()
        self.assertGreaterEqual(first, 1)
        # Kubernetes rotates the projected token: the next refresh must read the new one.
        self.peer.register_web_identity(self.ROLE, "jwt-token-two", lifetime=4)
        with open(token_file + ".new", "w") as f:
            f.write("jwt-token-two")
        os.replace(token_file + ".new", token_file)
        self.etcd_.put("/apisix/routes/7", {"uri": "/seven", "upstream_id": "1"})
        m2 = wait_for(lambda: (lambda x: x if x and x["revision"] > m["revision"] else None)(self.manifest()),
                      timeout=15, what="export after the token rotation")
        self.assertGreater(sts_calls(), first)
        logs = backup.logs()
        self.assertIn("AWS credentials from web-identity", logs)
        for secret in ("jwt-token-one", "jwt-token-two"):
            self.assertNotIn(secret, logs)
        # a traffic node using IRSA reads what the backup node wrote
        traffic = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=self.irsa_cfg(),
                                    extra_env=self.irsa_env(token_file))
        wait_for(lambda: traffic.get("/seven").status == 200, what="traffic node on IRSA credentials")
        self.assertEqual(traffic.status()[1]["source"], "s3")
        self.assertEqual(int(traffic.status()[1]["revision"]), m2["revision"])

    def test_bad_web_identity_token_is_one_log_line(self):
        import tempfile
        self.cp_routes()
        token_file = os.path.join(tempfile.mkdtemp(prefix="irsa-"), "token")
        with open(token_file, "w") as f:
            f.write("not-registered")
        backup = self.etcd_gateway(self.etcd_, config=self.irsa_cfg("write"), start=False,
                                   extra_env=self.irsa_env(token_file))
        backup.start(wait=False)
        backup.wait_log("InvalidIdentityToken", timeout=10)
        time.sleep(2.5)
        logs = backup.logs()
        self.assertEqual(logs.count("InvalidIdentityToken"), 1)
        self.assertNotIn("not-registered", logs)
        self.assertIsNone(backup.proc.poll())


class SnapshotCliTest(FallbackBase):
    def cli(self, gw, *args):
        import subprocess
        from harness import BIN
        return subprocess.run([BIN, "snapshot", *args, "-c", gw.config_path], capture_output=True, text=True, timeout=30)

    def test_inspect_verify_pull_push(self):
        self.cp_routes()
        backup = self.backup_node()
        backup.start(wait=False)
        m = wait_for(self.manifest, what="manifest")
        r = self.cli(backup, "inspect")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"revision:        {m['revision']}", r.stdout)
        r = self.cli(backup, "verify")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 routes", r.stdout)
        out = os.path.join(backup.dir, "pulled.json")
        r = self.cli(backup, "pull", "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        pulled = json.load(open(out))
        self.assertEqual(sorted(x["id"] for x in pulled["routes"]), ["1", "2"])
        # push a modified copy as a new revision
        pulled["routes"].append({"id": "3", "uri": "/pushed", "plugins": {"mocking": {"response_example": "p"}}})
        backup.stop(keep_dir=True)  # keep the backup node from exporting over our push
        with open(out, "w") as f:
            json.dump(pulled, f)
        r = self.cli(backup, "push", "-i", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.manifest()["revision"], m["revision"] + 1)
        r = self.cli(backup, "push", "-i", out, "--revision", "1")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("refusing", r.stderr)
        # an invalid file is refused before anything is uploaded
        with open(out, "w") as f:
            json.dump({"routes": [{"id": "x", "uri": 5}]}, f)
        r = self.cli(backup, "push", "-i", out)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.manifest()["revision"], m["revision"] + 1)
        # tamper with the resource object: verify fails
        cur = self.manifest()
        self.peer.put("fallback-cp-data", cur["resource"]["key"], b'{"routes":[]}')
        r = self.cli(backup, "verify")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("digest", r.stderr)


class S3ErrorHandlingTest(FallbackBase):
    def test_expired_token_forces_refresh_and_one_retry(self):
        import tempfile
        self.cp_routes()
        role = IrsaTest.ROLE
        token_file = os.path.join(tempfile.mkdtemp(prefix="irsa-"), "token")
        with open(token_file, "w") as f:
            f.write("tok-expiry-test")
        # long-lived credentials: no refresh would happen on its own
        self.peer.register_web_identity(role, "tok-expiry-test", lifetime=3600)
        env = {"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": token_file, "AWS_ENDPOINT_URL_STS": self.peer.endpoint,
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
        cfg = fallback_cfg(self.peer, "write")
        del cfg["deployment"]["fallback_cp"]["aws_s3"]["access_key"], cfg["deployment"]["fallback_cp"]["aws_s3"]["secret_key"]
        backup = self.etcd_gateway(self.etcd_, config=cfg, start=False, extra_env=env)
        backup.start(wait=False)
        m = wait_for(self.manifest, what="first export")
        sts = lambda: sum(self.peer.counters()["sts"]["calls"].values())  # noqa: E731
        before = sts()
        self.assertGreaterEqual(self.peer.expire_credentials(), 1)
        self.etcd_.put("/apisix/routes/8", {"uri": "/eight", "upstream_id": "1"})
        wait_for(lambda: (lambda x: x if x and x["revision"] > m["revision"] else None)(self.manifest()),
                 what="export after the credentials expired")
        self.assertEqual(sts(), before + 1, "ExpiredToken must force exactly one refresh")
        self.assertIn("ExpiredToken", json.dumps(self.peer.counters()))

    def test_wrong_region_is_named_in_the_log(self):
        self.cp_routes()
        cfg = fallback_cfg(self.peer, "write")
        cfg["deployment"]["fallback_cp"]["aws_s3"]["region"] = "eu-west-3"
        backup = self.etcd_gateway(self.etcd_, config=cfg, start=False)
        backup.start(wait=False)
        backup.wait_log("another region", timeout=10)
        self.assertIn("us-east-1", backup.logs())

    def test_transient_5xx_is_retried(self):
        self.cp_routes()
        self.peer.fault("503", count=2, method="PUT")
        backup = self.backup_node()
        backup.start(wait=False)
        m = wait_for(self.manifest, what="export despite two 503 answers")
        self.assertEqual(m["revision"], self.etcd_.revision())
        self.assertNotIn("backup export failed", backup.logs())

    def test_missing_manifest_answered_403_without_listbucket(self):
        # S3 answers 403 for a missing key when the role lacks s3:ListBucket.
        self.peer.fault("error", count=1000, method="GET", bucket="fallback-cp-data",
                        key="holdfast/default/manifest.json", status=403, code="AccessDenied", message="Access Denied")
        self.cp_routes()
        backup = self.backup_node()
        backup.start(wait=False)
        backup.wait_log("backup exported revision", timeout=10)
        self.peer.clear_faults()
        self.assertEqual(self.manifest()["revision"], self.etcd_.revision())


class MetadataCredentialsTest(FallbackBase):
    """EKS Pod Identity and EC2 IMDSv2: no such service runs here, so small
    loopback servers speak their HTTP protocols; the credentials they hand out
    are real ones for the SigV4-verifying S3 peer."""

    def serve(self, handler_cls):
        import threading
        from http.server import ThreadingHTTPServer
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        threading.Thread(target=srv.serve_forever, daemon=True).start()

        class _Stop:
            def stop(_s):
                srv.shutdown()
                srv.server_close()
        self._procs.append(_Stop())
        return srv

    def creds_json(self, ak, sk, token):
        exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return json.dumps({"AccessKeyId": ak, "SecretAccessKey": sk, "Token": token, "Expiration": exp}).encode()

    def static_free_cfg(self):
        cfg = fallback_cfg(self.peer, "write")
        s3 = cfg["deployment"]["fallback_cp"]["aws_s3"]
        del s3["access_key"], s3["secret_key"]
        return cfg

    def test_pod_identity(self):
        import tempfile
        from http.server import BaseHTTPRequestHandler
        ak, sk, tok = "ASIAPODIDENTITY00001", "pod-secret-key-0123456789", "pod-session-token"
        self.peer.add_user(ak, sk, session_token=tok, expires_in=3600)
        seen = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                seen.append(self.headers.get("Authorization"))
                if self.path != "/v1/credentials" or self.headers.get("Authorization") != "agent-token":
                    self.send_response(401)
                    self.end_headers()
                    return
                body = outer.creds_json(ak, sk, tok)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        srv = self.serve(Handler)
        token_file = os.path.join(tempfile.mkdtemp(prefix="pod-"), "token")
        with open(token_file, "w") as f:
            f.write("agent-token\n")
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{srv.server_address[1]}/v1/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": token_file, "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ROLE_ARN": ""}
        self.cp_routes()
        backup = self.etcd_gateway(self.etcd_, config=self.static_free_cfg(), start=False, extra_env=env)
        backup.start(wait=False)
        m = wait_for(self.manifest, what="export with pod identity credentials")
        self.assertEqual(m["revision"], self.etcd_.revision())
        self.assertEqual(seen[0], "agent-token")
        self.assertIn("AWS credentials from pod-identity", backup.logs())
        self.assertNotIn("agent-token", backup.logs())

    def test_imds_v2(self):
        from http.server import BaseHTTPRequestHandler
        ak, sk, tok = "ASIAINSTANCEROLE0001", "imds-secret-key-0123456789", "imds-session-token"
        self.peer.add_user(ak, sk, session_token=tok, expires_in=3600)
        calls = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                calls.append(("PUT", self.path))
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self.reply(200, b"imds-v2-session")
                self.reply(400)

            def do_GET(self):
                calls.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != "imds-v2-session":
                    return self.reply(401)  # IMDSv2 only: no token, no answer
                if self.path == "/latest/meta-data/iam/security-credentials/":
                    return self.reply(200, b"holdfast-node-role")
                if self.path == "/latest/meta-data/iam/security-credentials/holdfast-node-role":
                    return self.reply(200, outer.creds_json(ak, sk, tok))
                self.reply(404)

        srv = self.serve(Handler)
        env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{srv.server_address[1]}",
               "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ROLE_ARN": "",
               "AWS_CONTAINER_CREDENTIALS_FULL_URI": ""}
        self.cp_routes()
        backup = self.etcd_gateway(self.etcd_, config=self.static_free_cfg(), start=False, extra_env=env)
        backup.start(wait=False)
        m = wait_for(self.manifest, what="export with instance-metadata credentials")
        self.assertEqual(m["revision"], self.etcd_.revision())
        self.assertEqual(calls[0], ("PUT", "/latest/api/token"))
        self.assertIn("AWS credentials from instance-metadata", backup.logs())


class EncryptedFailoverTest(FallbackBase):
    def test_keys_encrypted_by_the_admin_api_work_after_failover(self):
        # A traditional node that is also the backup node: resources go in
        # through its Admin API (key-auth keys encrypted with the keyring).
        cfg = fallback_cfg(self.peer, "write", proxy=True)
        cfg["apisix"] = {"data_encryption": {"keyring": ["0123456789abcdef"]}}
        cp = self.etcd_gateway(self.etcd_, role="traditional", config=cfg)
        st, _ = cp.admin("PUT", "/apisix/admin/upstreams/1", {"nodes": {self.up.addr: 1}, "type": "roundrobin"})
        self.assertIn(st, (200, 201))
        st, _ = cp.admin("PUT", "/apisix/admin/consumers", {"username": "bob", "plugins": {"key-auth": {"key": "bob-plain-key"}}})
        self.assertIn(st, (200, 201))
        st, _ = cp.admin("PUT", "/apisix/admin/routes/1", {"uri": "/secure", "upstream_id": "1", "plugins": {"key-auth": {}}})
        self.assertIn(st, (200, 201))
        stored = json.loads(self.etcd_.get("/apisix/consumers/bob"))
        self.assertNotEqual(stored["plugins"]["key-auth"]["key"], "bob-plain-key")
        rev = self.etcd_.revision()
        wait_for(lambda: (lambda m: m if m and m["revision"] >= rev else None)(self.manifest()), what="export")
        # the exported resource object keeps the encrypted form; the keyring travels in the config object
        m = self.manifest()
        resources = self.peer.get("fallback-cp-data", m["resource"]["key"]).decode()
        self.assertNotIn("bob-plain-key", resources)
        config = json.loads(self.peer.get("fallback-cp-config", m["config"]["key"]))
        self.assertEqual(config["config"]["config_payload"]["keyring"], ["0123456789abcdef"])
        # a traffic node with a different local keyring and no etcd decrypts with the snapshot's keyring
        tcfg = fallback_cfg(self.peer)
        tcfg["apisix"] = {"data_encryption": {"keyring": ["fedcba9876543210"]}}
        traffic = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=tcfg)
        wait_for(lambda: traffic.get("/secure").status == 401, what="route from S3")
        r = traffic.get("/secure", headers={"apikey": "bob-plain-key"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"]["x-consumer-username"], "bob")
        self.assertNotIn("bob-plain-key", traffic.logs())
