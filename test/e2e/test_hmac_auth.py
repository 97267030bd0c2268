"""hmac-auth through the real binary, a real etcd and the Admin API (issue
#12 item 2): APISIX 3.11+'s `Authorization: Signature keyId=...` scheme.
Signatures and digests are computed here with Python's hmac and hashlib,
independently of Holdfast's code.

Expected behaviour is APISIX 3.x: apisix/plugins/hmac-auth.lua and
t/plugin/hmac-auth*.t.
"""
import base64
import email.utils
import hashlib
import hmac
import json
import socket
import time
import unittest

from harness import wait_status
from test_auth import openssl_aes
from test_plugins import PluginTestCase, call

ADMIN = "/apisix/admin"
QUIET = {"message": "client request can't be validated"}
HASHES = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}


def http_date(offset=0):
    return email.utils.formatdate(time.time() + offset, usegmt=True)


def signature(key_id, secret, method, target, headers, signed, alg="hmac-sha256"):
    """The Authorization value for a request: keyId, then one line per signed
    header ("@request-target" is "METHOD target"), each ending in a newline."""
    lines = [key_id]
    for h in signed:
        lines.append(f"{method} {target}" if h == "@request-target" else f"{h}: {headers[h]}")
    mac = hmac.new(secret.encode(), ("\n".join(lines) + "\n").encode(), HASHES[alg]).digest()
    return (f'Signature keyId="{key_id}",algorithm="{alg}",headers="{" ".join(signed)}",'
            f'signature="{base64.b64encode(mac).decode()}"')


def signed(key_id="jack-key", secret="jack-secret-1", method="GET", target="/h", extra=None,
           names=("@request-target", "date"), alg="hmac-sha256", date=None, body=None):
    headers = {"date": date or http_date(), **(extra or {})}
    if body is not None:
        headers["digest"] = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    headers["Authorization"] = signature(key_id, secret, method, target, headers, list(names), alg)
    return headers


class HmacAuthTest(PluginTestCase):
    def setUp(self):
        super().setUp()
        self.store = self.etcd()
        self.gw = self.etcd_gateway(self.store, role="traditional")
        self.admin("PUT", "/consumers", {"username": "jack", "labels": {"custom_id": "j-1"}, "plugins": {
            "hmac-auth": {"key_id": "jack-key", "secret_key": "jack-secret-1"}}})
        self.admin("PUT", "/consumers", {"username": "anon"})
        self.routes = 0

    def admin(self, method, path, body=None, want=(200, 201)):
        code, reply = self.gw.admin(method, ADMIN + path, body)
        self.assertIn(code, want, reply)
        return reply

    def route(self, conf, uri="/h", **kw):
        """A route with hmac-auth `conf` at `uri`, live once it stops answering 404."""
        self.routes += 1
        rid = f"r{self.routes}"
        self.admin("PUT", f"/routes/{rid}", {"uri": uri, "plugins": {"hmac-auth": conf},
                                             "upstream": {"nodes": {self.up.addr: 1}}, **kw})
        deadline = time.time() + 5
        method = kw.get("methods", ["GET"])[0]
        while call(self.gw, method, uri).status == 404:
            self.assertLess(time.time(), deadline, self.gw.logs()[-2000:])
            time.sleep(0.05)

    def assert_401(self, r, body=QUIET):
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json(), body)
        self.assertEqual(r.headers.get("www-authenticate"), 'hmac realm="hmac"')
        self.assert_not_from_upstream(r)

    def test_valid_signature_identifies_the_consumer(self):
        self.route({})
        r = call(self.gw, "GET", "/h", headers=signed())
        self.assertEqual(r.status, 200, r)
        self.assert_from_upstream(r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
        self.assertEqual(r.upstream_values("x-consumer-custom-id"), ["j-1"])
        self.assertEqual(r.upstream_values("x-credential-identifier"), [])
        self.assertEqual(len(r.upstream_values("authorization")), 1)  # hide_credentials defaults to false
        # Every algorithm, the query in the request target, a custom signed header.
        for alg in HASHES:
            h = signed(alg=alg, target="/h?a=1&b=2", extra={"x-custom": "v$%1"},
                       names=("@request-target", "date", "x-custom"))
            self.assertEqual(call(self.gw, "GET", "/h?a=1&b=2", headers=h).status, 200, alg)

    def test_rejections_with_apisix_answers(self):
        self.route({"signed_headers": ["date", "x-custom"]})
        full = ("@request-target", "date", "x-custom")
        x = {"x-custom": "v"}
        self.assert_401(call(self.gw, "GET", "/h"),
                        {"message": "client request can't be validated: missing Authorization header"})
        self.assert_401(call(self.gw, "GET", "/h", headers={"Authorization": "Basic eDp5"}),
                        {"message": "client request can't be validated: "
                                    "Authorization header does not start with 'Signature'"})
        self.assertEqual(call(self.gw, "GET", "/h", headers=signed(extra=x, names=full)).status, 200)
        cases = {
            "wrong signature": signed(secret="not-the-secret", extra=x, names=full),
            "unknown keyId": signed(key_id="nobody", extra=x, names=full),
            "clock skew": signed(extra=x, names=full, date=http_date(-301)),
            "bad date": signed(extra=x, names=full, date="yesterday"),
            "missing signed header": signed(extra=x),
            "other method signed": signed(method="POST", extra=x, names=full),
        }
        for what, headers in cases.items():
            with self.subTest(what):
                self.assert_401(call(self.gw, "GET", "/h", headers=headers))
        # A signed header changed on the way.
        h = signed(extra=x, names=full)
        h["x-custom"] = "w"
        self.assert_401(call(self.gw, "GET", "/h", headers=h))
        no_date = signed(extra=x, names=full)
        del no_date["date"]
        self.assert_401(call(self.gw, "GET", "/h", headers=no_date))
        self.assert_log(self.gw, "client request can't be validated: Clock skew exceeded")
        self.assert_log(self.gw, "client request can't be validated: expected header \"x-custom\" missing in signing")
        self.assert_log(self.gw, "client request can't be validated: Invalid key_id")

    def test_allowed_algorithms_and_clock_skew(self):
        self.route({"allowed_algorithms": ["hmac-sha512"], "clock_skew": 600})
        self.assert_401(call(self.gw, "GET", "/h", headers=signed(alg="hmac-sha256")))
        self.assert_log(self.gw, "Invalid algorithm")
        self.assertEqual(call(self.gw, "GET", "/h", headers=signed(alg="hmac-sha512", date=http_date(-500))).status,
                         200)
        self.assert_401(call(self.gw, "GET", "/h", headers=signed(alg="hmac-sha512", date=http_date(700))))

    def test_body_digest(self):
        self.route({"validate_request_body": True, "max_req_body_size": 1000}, methods=["POST"])
        body = b'{"name": "a body"}'
        r = call(self.gw, "POST", "/h", headers=signed(method="POST", body=body), body=body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(body).hexdigest())  # the whole body went on
        h = signed(method="POST", body=body)
        self.assert_401(call(self.gw, "POST", "/h", headers=h, body=body.replace(b"a body", b"b body")))
        del h["digest"]
        self.assert_401(call(self.gw, "POST", "/h", headers=h, body=body))
        exact = b"x" * 1000
        r = call(self.gw, "POST", "/h", headers=signed(method="POST", body=exact), body=exact)
        self.assertEqual((r.status, r.json()["body_size"]), (200, 1000))
        big = b"x" * 1001
        r = call(self.gw, "POST", "/h", headers=signed(method="POST", body=big), body=big)
        self.assertEqual(r.status, 413, r)
        self.assertEqual(r.json(), {"message": "request size 1001 is greater than the maximum size 1000 allowed"})
        self.assert_not_from_upstream(r)
        self.assert_log(self.gw, "failed to read request body")
        # A wrong signature is answered 401 before the size matters.
        self.assert_401(call(self.gw, "POST", "/h", headers=signed(method="POST", secret="no", body=big), body=big))
        # Chunked, in several chunks: read whole, then checked.
        chunked = {**signed(method="POST", body=body), "Transfer-Encoding": "chunked"}
        r = self.raw_request("POST", "/h", chunked, b"5\r\n" + body[:5] + b"\r\n" + b"%x\r\n" % (len(body) - 5) +
                             body[5:] + b"\r\n0\r\n\r\n")
        self.assertIn(b" 200 ", r.split(b"\r\n")[0], r)
        big_chunked = {**signed(method="POST", body=big), "Transfer-Encoding": "chunked"}
        r = self.raw_request("POST", "/h", big_chunked, b"3e9\r\n" + big + b"\r\n0\r\n\r\n")
        self.assertIn(b" 413 ", r.split(b"\r\n")[0], r)

    def raw_request(self, method, target, headers, body):
        head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=10) as s:
            s.sendall(head.encode() + body)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    def test_default_limit_is_64_mib(self):
        self.route({"validate_request_body": True}, methods=["POST"])
        body = b"y" * (3 << 20)  # several buffers' worth, read whole before the plugin runs
        r = call(self.gw, "POST", "/h", headers=signed(method="POST", body=body), body=body)
        self.assertEqual((r.status, r.json()["body_size"]), (200, len(body)))
        # Larger than 64 MiB by its Content-Length: refused without reading it.
        size = (64 << 20) + 1
        h = {**signed(method="POST", body=b""), "Content-Length": str(size)}
        head = "POST /h HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=10) as s:
            s.sendall(head.encode() + b"z" * 1000)
            out = b""
            while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        self.assertIn(b" 413 ", out.split(b"\r\n")[0], out)
        self.assertIn(f"request size {size} is greater than the maximum size 67108864 allowed".encode(), out)

    def test_unsigned_request_never_makes_the_node_buffer_its_body(self):
        # APISIX reads the body only once the signature holds: a client
        # without a key is answered 401 from the head alone, while its
        # (large, unsent) body is still pending.
        self.route({"validate_request_body": True}, methods=["POST"])
        for h in ({**signed(method="POST", secret="not-the-key", body=b""), "Content-Length": str(32 << 20)},
                  {"Digest": "SHA-256=x", "Date": "x", "Content-Length": str(32 << 20)}):
            head = "POST /h HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
            with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
                s.sendall(head.encode() + b"z" * 1000)
                status = s.recv(65536).split(b"\r\n")[0]  # a timeout here: the node waited for the body
            self.assertIn(b" 401 ", status)

    def test_body_digest_in_a_global_rule(self):
        # Global rules run before routing: the body is read before them.
        self.admin("PUT", "/routes/plain", {"uri": "/p", "methods": ["POST"], "upstream": {"nodes": {self.up.addr: 1}}})
        self.admin("PUT", "/global_rules/1", {"plugins": {"hmac-auth": {"validate_request_body": True}}})
        body = b"z" * 200000
        h = signed(method="POST", target="/p", body=body)
        deadline = time.time() + 5
        while (r := call(self.gw, "POST", "/p", headers=h, body=body)).status == 404 or (
                r.status == 200 and "x-consumer-username" not in r.json()["headers"]):
            self.assertLess(time.time(), deadline, r)
            time.sleep(0.05)
        self.assertEqual((r.status, r.json()["body_size"]), (200, len(body)))
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
        self.assert_401(call(self.gw, "POST", "/p", headers=h, body=body[:-1] + b"y"))

    def test_hide_credentials(self):
        self.route({"hide_credentials": True})
        r = call(self.gw, "GET", "/h", headers=signed())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("authorization"), [])
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])

    def test_anonymous_consumer(self):
        self.route({"anonymous_consumer": "anon"})
        r = call(self.gw, "GET", "/h")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["anon"])
        r = call(self.gw, "GET", "/h", headers=signed(secret="wrong"))
        self.assertEqual(r.upstream_values("x-consumer-username"), ["anon"])
        self.assertEqual(call(self.gw, "GET", "/h", headers=signed()).upstream_values("x-consumer-username"), ["jack"])
        self.route({"anonymous_consumer": "ghost"}, uri="/g")
        self.assert_401(call(self.gw, "GET", "/g"), {"message": "Invalid user authorization"})
        self.assert_log(self.gw, "failed to get anonymous consumer ghost")

    def test_credentials_resource_and_encrypted_secret(self):
        self.admin("PUT", "/consumers/jack/credentials/c1",
                   {"plugins": {"hmac-auth": {"key_id": "cred-key", "secret_key": "cred-secret-2"}}})
        self.route({})
        h = signed(key_id="cred-key", secret="cred-secret-2")
        r = wait_status(self.gw, "/h", 200, headers=h)
        self.assertEqual(r.json()["headers"].get("x-consumer-username"), "jack")
        self.assertEqual(r.json()["headers"].get("x-credential-identifier"), "c1")
        stored = json.loads(self.store.get("/apisix/consumers/jack"))["plugins"]["hmac-auth"]
        self.assertEqual(stored["secret_key"], openssl_aes("jack-secret-1", "qeddd145sfvddff3"))
        cred = json.loads(self.store.get("/apisix/consumers/jack/credentials/c1"))["plugins"]["hmac-auth"]
        self.assertEqual(cred["secret_key"], openssl_aes("cred-secret-2", "qeddd145sfvddff3"))
        # The stored (encrypted) form is not the secret.
        self.assert_401(call(self.gw, "GET", "/h", headers=signed(secret=stored["secret_key"])))
        # The consumer schema, with APISIX's messages.
        code, body = self.gw.admin("PUT", ADMIN + "/consumers", {"username": "bob", "plugins": {
            "hmac-auth": {"key_id": "bob-key"}}})
        self.assertEqual((code, body), (400, {"error_msg": (
            "invalid plugins configuration: failed to check the configuration of plugin hmac-auth err: "
            "property \"secret_key\" is required")}))
        code, body = self.gw.admin("PUT", ADMIN + "/consumers", {"username": "bob", "plugins": {
            "hmac-auth": {"key_id": "k" * 320, "secret_key": "s"}}})
        self.assertEqual((code, body), (400, {"error_msg": (
            "invalid plugins configuration: failed to check the configuration of plugin hmac-auth err: "
            "property \"key_id\" validation failed: string too long, expected at most 256, got 320")}))
        code, body = self.gw.admin("PUT", ADMIN + "/routes/bad", {"uri": "/bad", "plugins": {
            "hmac-auth": {"clock_skew": 0}}, "upstream": {"nodes": {self.up.addr: 1}}})
        self.assertEqual(code, 400, body)
        self.assertIn("failed to check the configuration of plugin hmac-auth err", body["error_msg"])

    def test_secret_key_from_an_env_reference(self):
        # hmac-auth4.t: secret_key as a secret reference ($env://), resolved into the snapshot only.
        gw = self.gateway({"routes": [{"id": "e", "uri": "/h", "plugins": {"hmac-auth": {}},
                                       "upstream": {"nodes": {self.up.addr: 1}}}],
                           "consumers": [{"username": "env", "plugins": {"hmac-auth": {
                               "key_id": "env-key", "secret_key": "$env://HF_HMAC_SECRET"}}}]},
                          extra_env={"HF_HMAC_SECRET": "from-the-env-7"})
        r = wait_status(gw, "/h", 200, headers=signed(key_id="env-key", secret="from-the-env-7"))
        self.assertEqual(r.json()["headers"].get("x-consumer-username"), "env")
        self.assert_401(call(gw, "GET", "/h", headers=signed(key_id="env-key", secret="$env://HF_HMAC_SECRET")))
        self.assertNotIn("from-the-env-7", gw.logs())

    def test_secret_not_in_logs(self):
        self.route({})
        for secret in ("jack-secret-1", "wrong-secret-9"):
            call(self.gw, "GET", "/h", headers=signed(secret=secret, names=("@request-target",)))
            call(self.gw, "GET", "/h", headers=signed(secret=secret, date=http_date(-1000)))
            call(self.gw, "GET", "/h", headers={"Authorization": f"Signature keyId=\"{secret}\""})
        self.assert_log(self.gw, "client request can't be validated")
        logs = self.gw.logs()
        self.assertNotIn("jack-secret-1", logs)
        self.assertNotIn("wrong-secret-9", logs)


if __name__ == "__main__":
    unittest.main()
