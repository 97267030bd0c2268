"""The S3 fallback against a real S3 implementation that is not ours: Ceph's
radosgw from Debian (radosgw.py). It checks SigV4 itself, issues STS session
credentials itself and validates web-identity tokens against an OpenID
Connect provider (a small server here) itself. The objects are read and
written beside Holdfast with boto3, another independent client.

One cluster serves the whole class (it takes seconds to start); each test
uses buckets of its own."""
import base64
import http.server
import json
import os
import tempfile
import threading
import time
import unittest
import uuid

import boto3
import botocore.config

import radosgw
from harness import GatewayTest
from test_fallback import wait_for

AK, SK = "AKIARGWHOLDFAST00001", "rgw/holdfast/secret+key/0123456789abcd"
REGION = "us-east-1"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class OidcProvider:
    """An OpenID Connect issuer on loopback: discovery document, a JWKS whose
    RSA key carries an x5c certificate (radosgw 16.2 verifies with it), and
    RS256 tokens."""

    def __init__(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        import datetime
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "holdfast-test-oidc")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2)).sign(self.key, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        nums = self.key.public_key().public_numbers()
        jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1",
                          "n": b64url(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
                          "e": b64url(nums.e.to_bytes(3, "big")), "x5c": [base64.b64encode(der).decode()]}]}
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.endswith("/.well-known/openid-configuration"):
                    body = json.dumps({"issuer": provider.issuer,
                                       "jwks_uri": provider.issuer + "/protocol/openid-connect/certs"}).encode()
                elif self.path.endswith("/protocol/openid-connect/certs"):
                    body = json.dumps(jwks).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host_path = f"127.0.0.1:{self.server.server_address[1]}/realms/holdfast"
        self.issuer = "http://" + self.host_path
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, audience, subject="system:serviceaccount:holdfast:backup", lifetime=600):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        now = int(time.time())
        head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode())
        claims = b64url(json.dumps({"iss": self.issuer, "sub": subject, "aud": audience, "iat": now,
                                    "exp": now + lifetime}).encode())
        signing_input = f"{head}.{claims}".encode()
        sig = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{claims}.{b64url(sig)}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class RadosgwFallbackTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.rgw = radosgw.RadosGW().start()
        cls.rgw.add_user("holdfast", AK, SK)

    @classmethod
    def tearDownClass(cls):
        cls.rgw.stop()

    def client(self, service="s3", **creds):
        creds = creds or {"aws_access_key_id": AK, "aws_secret_access_key": SK}
        return boto3.client(service, endpoint_url=self.rgw.endpoint, region_name=REGION,
                            config=botocore.config.Config(s3={"addressing_style": "path"}), **creds)

    def setUp(self):
        super().setUp()
        self.s3 = self.client()
        tag = uuid.uuid4().hex[:8]
        self.data, self.conf = f"hf-data-{tag}", f"hf-config-{tag}"
        for b in (self.data, self.conf):
            self.s3.create_bucket(Bucket=b)
        self.etcd_ = self.etcd()
        self.up = self.upstream("origin")

    def cfg(self, mode=None, keys=True, secret=SK):
        s3 = {"region": REGION, "resource_bucket": self.data, "config_bucket": self.conf,
              "endpoint": self.rgw.endpoint}
        if keys:
            s3.update(access_key=AK, secret_key=secret)
        f = {"interval": 1, "aws_s3": s3}
        if mode:
            f["mode"] = mode
        return {"deployment": {"fallback_cp": f, "etcd": {"startup_timeout": 1, "resync_delay": 0.5}}}

    def manifest(self, s3=None):
        s3 = s3 or self.s3
        try:
            body = s3.get_object(Bucket=self.data, Key="holdfast/default/manifest.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def cp_routes(self):
        e = self.etcd_
        e.put("/apisix/upstreams/1", {"nodes": {self.up.addr: 1}, "type": "roundrobin"})
        e.put("/apisix/routes/1", {"uri": "/api/*", "upstream_id": "1", "plugins": {"key-auth": {}}})
        e.put("/apisix/routes/2", {"uri": "/open", "upstream_id": "1"})
        e.put("/apisix/consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}})

    def test_backup_then_traffic_node_with_static_keys(self):
        self.cp_routes()
        backup = self.etcd_gateway(self.etcd_, config=self.cfg("write"), start=False)
        backup.start(wait=False)
        m = wait_for(self.manifest, what="manifest written to radosgw")
        self.assertEqual(m["revision"], self.etcd_.revision())
        resources = json.loads(self.s3.get_object(Bucket=self.data, Key=m["resource"]["key"])["Body"].read())
        self.assertEqual(sorted(r["id"] for r in resources["routes"]), ["1", "2"])
        self.assertIn("keyring", json.loads(self.s3.get_object(Bucket=self.conf, Key="default")["Body"].read())
                      ["config"]["config_payload"])
        # Unchanged content: the heartbeat moves, the immutable objects stay.
        wait_for(lambda: self.manifest()["heartbeat_at"] > m["heartbeat_at"], what="a heartbeat")
        keys = [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.data, Prefix="holdfast/default/resources/")
                .get("Contents", [])]
        self.assertEqual(keys, [m["resource"]["key"]])

        traffic = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=self.cfg())
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node serving from radosgw")
        self.assertEqual(traffic.get("/api/x").status, 401)
        r = traffic.get("/api/x", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"]["x-consumer-username"], "jack")
        st = traffic.status()[1]
        self.assertEqual((st["source"], int(st["revision"])), ("s3", m["revision"]))

        # A newer revision already in the bucket (another site's) is never
        # overwritten by this backup node: the conditional write holds on
        # radosgw too.
        backup.stop()
        newer = dict(m, revision=10 ** 6)
        self.s3.put_object(Bucket=self.data, Key="holdfast/default/manifest.json", Body=json.dumps(newer).encode())
        self.etcd_.put("/apisix/routes/5", {"uri": "/five", "upstream_id": "1"})
        backup2 = self.etcd_gateway(self.etcd_, config=self.cfg("write"), start=False)
        backup2.start(wait=False)
        backup2.wait_log("newer than ours", timeout=10)
        self.assertEqual(self.manifest()["revision"], 10 ** 6)

    def test_wrong_secret_is_one_clear_line_and_the_node_stays_up(self):
        # radosgw with STS on answers AccessDenied for a bad signature (its
        # log says the signature did not match).
        self.cp_routes()
        backup = self.etcd_gateway(self.etcd_, config=self.cfg("write", secret="definitely-wrong-secret"), start=False)
        backup.start(wait=False)
        backup.wait_log("AccessDenied", timeout=10)
        time.sleep(2.5)  # several rounds
        logs = backup.logs()
        self.assertEqual(logs.count("AccessDenied"), 1, "one clear line, not one per retry")
        self.assertNotIn("definitely-wrong-secret", logs)
        self.assertIsNone(self.manifest())
        self.assertIsNone(backup.proc.poll(), "the node must keep running")

    def test_web_identity_through_radosgw_sts(self):
        oidc = OidcProvider()
        self.addCleanup(oidc.stop)
        iam = self.client("iam")
        iam.create_open_id_connect_provider(Url=oidc.issuer, ClientIDList=["holdfast"], ThumbprintList=["0" * 40])
        role_name = "hf-backup-" + uuid.uuid4().hex[:6]
        # radosgw 16.2 does not decode '+' in form bodies: compact JSON only.
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": [f"arn:aws:iam:::oidc-provider/{oidc.host_path}"]},
            "Action": ["sts:AssumeRoleWithWebIdentity"]}]}, separators=(",", ":"))
        role = iam.create_role(RoleName=role_name, Path="/", AssumeRolePolicyDocument=trust)["Role"]
        policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"],
                                                                     "Resource": "arn:aws:s3:::*"}]},
                            separators=(",", ":"))
        iam.put_role_policy(RoleName=role_name, PolicyName="fallback", PolicyDocument=policy)

        token_file = os.path.join(tempfile.mkdtemp(prefix="irsa-"), "token")
        with open(token_file, "w") as f:
            f.write(oidc.token("holdfast"))
        env = {"AWS_ROLE_ARN": role["Arn"], "AWS_WEB_IDENTITY_TOKEN_FILE": token_file,
               "AWS_ROLE_SESSION_NAME": "holdfast-e2e", "AWS_ENDPOINT_URL_STS": self.rgw.endpoint,
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
        self.cp_routes()
        backup = self.etcd_gateway(self.etcd_, config=self.cfg("write", keys=False), start=False, extra_env=env)
        backup.start(wait=False)
        # Objects a role session writes are the session's: read them as the
        # role too, with credentials boto3 gets from radosgw's STS itself.
        c = self.client("sts").assume_role_with_web_identity(
            RoleArn=role["Arn"], RoleSessionName="reader", WebIdentityToken=open(token_file).read())["Credentials"]
        as_role = self.client(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                              aws_session_token=c["SessionToken"])
        m = wait_for(lambda: self.manifest(as_role), what="manifest written with radosgw STS credentials")
        self.assertEqual(m["revision"], self.etcd_.revision())
        logs = backup.logs()
        self.assertIn("AWS credentials from web-identity", logs)
        self.assertNotIn(open(token_file).read(), logs)

        traffic = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=self.cfg(keys=False),
                                    extra_env=env)
        wait_for(lambda: traffic.get("/open").status == 200, what="traffic node on radosgw STS credentials")
        self.assertEqual(traffic.status()[1]["source"], "s3")

        # A token for another audience is refused by radosgw: one clear
        # line, and the node keeps running.
        with open(token_file, "w") as f:
            f.write(oidc.token("someone-else"))
        other = self.etcd_gateway(self.etcd_, config=self.cfg("write", keys=False), start=False, extra_env=env)
        other.start(wait=False)
        other.wait_log("AssumeRoleWithWebIdentity", timeout=10)
        time.sleep(2.5)  # several rounds
        logs = other.logs()
        self.assertEqual(logs.count("AssumeRoleWithWebIdentity"), 1, logs)
        self.assertIn("AccessDenied", logs)
        self.assertNotIn(open(token_file).read(), logs)
        self.assertIsNone(other.proc.poll())


if __name__ == "__main__":
    unittest.main()
