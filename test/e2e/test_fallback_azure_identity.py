"""Azure Blob with Entra ID bearer tokens instead of a key: Azure Workload
Identity (the projected token exchanged at the authority's token endpoint)
and managed identity (IMDS), against Azurite over HTTPS with its basic OAuth.

What this proves: Holdfast makes the client-credentials exchange with a
JWT-bearer assertion read from AZURE_FEDERATED_TOKEN_FILE (re-read when
Kubernetes rotates it) and the IMDS request, as Microsoft documents them (the
local endpoints below check every field), refreshes tokens before they
expire, and sends them as Azurite expects (issuer, audience, lifetime).
What it does not: Azurite does not verify token signatures, and no request
went to Microsoft Entra ID or a real IMDS."""
import base64
import json
import os
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from azurite import ACCOUNT, Azurite, ensure_azurite, wait_for
from harness import GatewayTest
from pki import Pki

DATA, CONF = "fallback-cp-data", "fallback-cp-config"
MANIFEST = "holdfast/default/manifest.json"
INVALID_ETCD = ["https://INVALID_DOMAIN.invalid:7943"]
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "3e9a1f7c-0000-4000-8000-holdfast0001"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def access_token(audience="https://storage.azure.com", lifetime=600):
    """A JWT shaped as Entra ID's (Azurite checks iss, aud, nbf, exp; not the signature)."""
    now = int(time.time())
    claims = {"aud": audience, "iss": f"https://sts.windows.net/{TENANT}/", "nbf": now - 60, "iat": now - 60,
              "exp": now + lifetime, "oid": "11111111-2222-3333-4444-555555555555", "tid": TENANT}
    return ".".join([b64url(json.dumps({"typ": "JWT", "alg": "RS256"}).encode()),
                     b64url(json.dumps(claims).encode()), b64url(os.urandom(32))])


class IdentityEndpoints:
    """The Entra ID token endpoint ({tenant}/oauth2/v2.0/token) and IMDS
    (/metadata/identity/oauth2/token) on one loopback port. Each checks the
    request as Microsoft documents it and records what it saw."""

    def __init__(self, lifetime=600):
        self.lifetime = lifetime
        self.assertions = {"assertion-one"}  # the federated tokens it accepts
        self.audience = "https://storage.azure.com"
        self.seen = []  # (kind, detail)
        self.issued = []
        ep = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status, doc):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def token(self, expires_in):
                t = access_token(ep.audience, ep.lifetime)
                ep.issued.append(t)
                return {"token_type": "Bearer", "expires_in": expires_in, "access_token": t}

            def do_POST(self):
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                one = {k: v[0] for k, v in form.items()}
                ep.seen.append(("entra", self.path, one.get("client_assertion")))
                ok = (self.path == f"/{TENANT}/oauth2/v2.0/token"
                      and self.headers.get("Content-Type") == "application/x-www-form-urlencoded"
                      and one.get("grant_type") == "client_credentials" and one.get("client_id") == CLIENT_ID
                      and one.get("scope") == "https://storage.azure.com/.default"
                      and one.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                if not ok:
                    self.answer(400, {"error": "invalid_request"})
                elif one.get("client_assertion") not in ep.assertions:
                    self.answer(401, {"error": "invalid_client", "error_description": "AADSTS700024: assertion is "
                                      "not within its valid time range " + one.get("client_assertion", "")})
                else:
                    self.answer(200, self.token(ep.lifetime))

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = {k: v[0] for k, v in urllib.parse.parse_qs(u.query).items()}
                ep.seen.append(("imds", u.path, q.get("client_id")))
                if (u.path != "/metadata/identity/oauth2/token" or self.headers.get("Metadata") != "true"
                        or q.get("resource") != "https://storage.azure.com/" or not q.get("api-version")):
                    self.answer(400, {"error": "invalid_request"})
                else:
                    self.answer(200, dict(self.token(str(ep.lifetime)), resource=q["resource"]))

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def blob_cfg(az, mode=None):
    f = {"interval": 1, "azure_blob": {"account_name": ACCOUNT, "resource_container": DATA, "config_container": CONF,
                                       "endpoint": az.endpoint}}
    if mode:
        f["mode"] = mode
    return {"deployment": {"fallback_cp": f, "etcd": {"startup_timeout": 1, "resync_delay": 0.5}}}


class AzureIdentityTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        ensure_azurite()

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="azure-identity-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        pki = Pki(self.tmp)
        cert, key = pki.leaf("azurite", ["localhost", "IP:127.0.0.1"], alg="rsa")
        cert_file, key_file = os.path.join(self.tmp, "az.crt"), os.path.join(self.tmp, "az.key")
        for path, pem in ((cert_file, cert), (key_file, key)):
            with open(path, "w") as f:
                f.write(pem)
        ctx = ssl.create_default_context(cafile=pki.ca_crt)
        self.ca = pki.ca_crt
        self.az = Azurite(tls=(cert_file, key_file, ctx))

        class _Stop:
            def stop(_s):
                self.az.destroy()
        self._procs.append(_Stop())
        self.az.start()
        self.az.create_container(DATA)
        self.az.create_container(CONF)
        self.ids = IdentityEndpoints()
        self.addCleanup(self.ids.stop)
        self.etcd_ = self.etcd()
        self.up = self.upstream("origin")
        e = self.etcd_
        e.put("/apisix/upstreams/1", {"nodes": {self.up.addr: 1}, "type": "roundrobin"})
        e.put("/apisix/routes/2", {"uri": "/open", "upstream_id": "1"})

    def manifest(self):
        body = self.az.get(DATA, MANIFEST)
        return json.loads(body) if body else None

    def workload_env(self, token_file):
        return {"AZURE_CLIENT_ID": CLIENT_ID, "AZURE_TENANT_ID": TENANT, "AZURE_FEDERATED_TOKEN_FILE": token_file,
                "AZURE_AUTHORITY_HOST": self.ids.url + "/", "SSL_CERT_FILE": self.ca}

    def imds_env(self):
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.ids.url, "SSL_CERT_FILE": self.ca}

    def assert_no_secrets(self, logs):
        for t in self.ids.issued + sorted(self.ids.assertions):
            self.assertNotIn(t, logs)

    def test_workload_identity_rotation_refresh_and_failover(self):
        token_file = os.path.join(self.tmp, "azure-identity-token")
        with open(token_file, "w") as f:
            f.write("assertion-one")
        self.ids.lifetime = 4  # refreshed after half its life
        env = self.workload_env(token_file)
        backup = self.etcd_gateway(self.etcd_, config=blob_cfg(self.az, "write"), start=False, extra_env=env)
        backup.start(wait=False)
        m = wait_for(self.manifest, timeout=15, what="manifest written with a workload-identity token")
        self.assertEqual(m["revision"], self.etcd_.revision())
        self.assertIn("Azure credentials from workload-identity", backup.logs())

        # Kubernetes rotates the projected token; the old one stops working.
        self.ids.assertions = {"assertion-two"}
        with open(token_file + ".new", "w") as f:
            f.write("assertion-two")
        os.replace(token_file + ".new", token_file)
        # The 4 s token is renewed at half its life (the backup node exports
        # every second), reading the file again.
        wait_for(lambda: any(a == "assertion-two" for kind, _, a in self.ids.seen if kind == "entra"), timeout=15,
                 what="a refresh with the rotated token")
        self.etcd_.put("/apisix/routes/7", {"uri": "/seven", "upstream_id": "1"})
        m2 = wait_for(lambda: (lambda x: x if x and x["revision"] > m["revision"] else None)(self.manifest()),
                      timeout=15, what="export after the rotation")
        used = [a for kind, _, a in self.ids.seen if kind == "entra"]
        self.assertIn("assertion-one", used)
        self.assertIn("assertion-two", used, "the rotated file was read again")
        self.assertNotIn("assertion-one", used[used.index("assertion-two"):], "never the old one after rotation")
        self.assert_no_secrets(backup.logs())

        traffic = self.etcd_gateway(INVALID_ETCD, config=blob_cfg(self.az), extra_env=env)
        wait_for(lambda: traffic.get("/seven").status == 200, timeout=15, what="traffic node on workload identity")
        st = traffic.status()[1]
        self.assertEqual((st["source"], int(st["revision"])), ("azure_blob", m2["revision"]))
        self.assert_no_secrets(traffic.logs())

    def test_managed_identity_through_imds(self):
        backup = self.etcd_gateway(self.etcd_, config=blob_cfg(self.az, "write"), start=False, extra_env=self.imds_env())
        backup.start(wait=False)
        wait_for(self.manifest, timeout=15, what="manifest written with an IMDS token")
        self.assertIn("Azure credentials from managed-identity", backup.logs())
        self.assertTrue(any(kind == "imds" for kind, _, _ in self.ids.seen))
        self.assertFalse(any(kind == "entra" for kind, _, _ in self.ids.seen))
        traffic = self.etcd_gateway(INVALID_ETCD, config=blob_cfg(self.az), extra_env=self.imds_env())
        wait_for(lambda: traffic.get("/open").status == 200, timeout=15, what="traffic node on managed identity")
        self.assertEqual(traffic.status()[1]["source"], "azure_blob")
        self.assert_no_secrets(backup.logs() + traffic.logs())

    def test_refused_assertion_is_one_clear_line_and_retried(self):
        token_file = os.path.join(self.tmp, "azure-identity-token")
        with open(token_file, "w") as f:
            f.write("not-accepted")
        backup = self.etcd_gateway(self.etcd_, config=blob_cfg(self.az, "write"), start=False,
                                   extra_env=self.workload_env(token_file))
        backup.start(wait=False)
        backup.wait_log("invalid_client", timeout=10)
        wait_for(lambda: len([1 for kind, _, _ in self.ids.seen if kind == "entra"]) >= 2, timeout=30,
                 what="a retry of the exchange")
        logs = backup.logs()
        self.assertEqual(logs.count("invalid_client"), 1, "one clear line, not one per retry")
        self.assertNotIn("not-accepted", logs)
        self.assertNotIn("AADSTS", logs, "the endpoint's description (which may echo input) is not logged")
        self.assertIsNone(self.manifest())
        self.assertIsNone(backup.proc.poll())
        # The file is fixed: the next round goes through.
        self.ids.assertions = {"not-accepted", "assertion-fixed"}
        with open(token_file, "w") as f:
            f.write("assertion-fixed")
        wait_for(self.manifest, timeout=30, what="export once the token is accepted")

    def test_token_azurite_refuses_is_renewed_once(self):
        # A token for another audience: Azurite answers 401 AuthenticationFailed;
        # Holdfast gets a new token at once (one more exchange), which fails the
        # same way here, and then backs off.
        self.ids.audience = "https://management.azure.com"
        token_file = os.path.join(self.tmp, "azure-identity-token")
        with open(token_file, "w") as f:
            f.write("assertion-one")
        backup = self.etcd_gateway(self.etcd_, config=blob_cfg(self.az, "write"), start=False,
                                   extra_env=self.workload_env(token_file))
        backup.start(wait=False)
        backup.wait_log("AuthenticationFailed", timeout=15)
        self.assertGreaterEqual(len(self.ids.issued), 2, "a refused token is replaced before giving up")
        self.assertIsNone(self.manifest())
        self.ids.audience = "https://storage.azure.com"
        wait_for(self.manifest, timeout=60, what="export with a token of the right audience")
        self.assert_no_secrets(backup.logs())
