"""Authentication through the real binary and real sockets (issue #12 items
1 and 2): consumer groups, the headers and $consumer_name an authenticated
request carries, credentials for every auth plugin, basic-auth,
consumer-restriction and jwt-auth, secrets encrypted through the Admin API
and never in logs.

Expected behaviour is APISIX 3.x: apisix/consumer.lua, apisix/plugin.lua
(merge_consumer_route), apisix/plugins/{basic-auth,consumer-restriction,
jwt-auth}.lua and their t/plugin/*.t.
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import tempfile
import time
import unittest

from harness import wait_port, wait_status
from test_plugins import PluginTestCase, call, get, route

ADMIN = "/apisix/admin"


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl_aes(plain, key):
    """AES-CBC with key = IV = the keyring entry, as APISIX stores fields."""
    cipher = "aes-128-cbc" if len(key) == 16 else "aes-256-cbc"
    out = subprocess.run(["openssl", "enc", f"-{cipher}", "-K", key.encode().hex(), "-iv", key[:16].encode().hex(),
                          "-base64", "-A"], input=plain.encode(), capture_output=True, check=True).stdout
    return out.decode().strip()


# --------------------------------------------------------------------------
# consumers: groups, the attached headers, $consumer_name


class ConsumerGroupTest(PluginTestCase):
    def gw(self, consumers, groups, route_plugins=None, auth="key-auth"):
        plugins = {auth: {}}
        plugins.update(route_plugins or {})
        return self.gateway({
            "routes": [route("r", "/g", self.up, plugins)],
            "consumers": consumers,
            "consumer_groups": groups,
        })

    def test_group_plugins_apply_to_its_consumers_only(self):
        gw = self.gw([{"username": "jack", "group_id": "gold", "plugins": {"key-auth": {"key": "jack-key"}}},
                      {"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}}],
                     [{"id": "gold", "plugins": {"proxy-rewrite": {"headers": {"set": {"X-Tier": "gold"}}},
                                                 "response-rewrite": {"headers": {"set": {"X-Resp": "gold"}}}}}])
        r = get(gw, "/g", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-tier"), ["gold"])
        self.assertEqual(r.values("x-resp"), ["gold"])
        r = get(gw, "/g", headers={"apikey": "rose-key"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-tier"), [])
        self.assertEqual(r.values("x-resp"), [])

    def test_consumer_beats_group_beats_route(self):
        gw = self.gw([{"username": "jack", "group_id": "g", "plugins": {
                          "key-auth": {"key": "jack-key"},
                          "proxy-rewrite": {"headers": {"set": {"X-Who": "consumer"}}}}},
                      {"username": "rose", "group_id": "g", "plugins": {"key-auth": {"key": "rose-key"}}}],
                     [{"id": "g", "plugins": {"proxy-rewrite": {"headers": {"set": {"X-Who": "group"}}},
                                              "limit-count": {"count": 1, "time_window": 60, "rejected_code": 429}}}],
                     {"proxy-rewrite": {"headers": {"set": {"X-Who": "route"}}}})
        self.assertEqual(get(gw, "/g", headers={"apikey": "jack-key"}).upstream_values("x-who"), ["consumer"])
        self.assertEqual(get(gw, "/g", headers={"apikey": "rose-key"}).upstream_values("x-who"), ["group"])
        # The group's limit-count applies to its consumers.
        self.assertEqual(get(gw, "/g", headers={"apikey": "rose-key"}).status, 429)

    def test_credential_takes_its_consumers_group(self):
        gw = self.gw([{"username": "jack", "group_id": "gold"},
                      {"id": "jack/credentials/c1", "plugins": {"key-auth": {"key": "c1-key"}}}],
                     [{"id": "gold", "plugins": {"proxy-rewrite": {"headers": {"set": {"X-Tier": "gold"}}}}}])
        r = get(gw, "/g", headers={"apikey": "c1-key"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-tier"), ["gold"])
        self.assertEqual(r.upstream_values("x-credential-identifier"), ["c1"])
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])

    def test_missing_group_answers_503(self):
        gw = self.gw([{"username": "jack", "group_id": "nope", "plugins": {"key-auth": {"key": "jack-key"}}},
                      {"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}}], [])
        r = get(gw, "/g", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 503, r)
        self.assert_not_from_upstream(r)
        self.assertEqual(get(gw, "/g", headers={"apikey": "rose-key"}).status, 200)
        self.assert_log(gw, "consumer jack", "failed to fetch consumer group config by id: nope")

    def test_consumer_name_variable_and_headers_not_spoofable(self):
        gw = self.gw([{"username": "jack", "plugins": {"basic-auth": {"username": "jack", "password": "pw"}}}], [],
                     {"proxy-rewrite": {"headers": {"set": {"X-Name": "$consumer_name"}}}}, auth="basic-auth")
        r = get(gw, "/g", headers={**basic("jack", "pw"), "X-Consumer-Username": "admin",
                                   "X-Credential-Identifier": "forged", "X-Consumer-Custom-ID": "forged"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-name"), ["jack"])
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
        self.assertEqual(r.upstream_values("x-credential-identifier"), [])
        self.assertEqual(r.upstream_values("x-consumer-custom-id"), [])


# --------------------------------------------------------------------------
# basic-auth


class BasicAuthTest(PluginTestCase):
    CONSUMERS = [
        {"username": "jack", "plugins": {"basic-auth": {"username": "jack-user", "password": "jack-pw"}}},
        {"username": "rose", "labels": {"custom_id": "r-1"},
         "plugins": {"basic-auth": {"username": "rose", "password": "rose-pw"}}},
        {"username": "anon"},
    ]

    def gw(self, conf=None, consumers=None):
        return self.gateway({
            "routes": [route("ba", "/ba", self.up, {"basic-auth": conf or {}})],
            "consumers": consumers if consumers is not None else self.CONSUMERS,
        })

    def assert_401(self, r, message, realm="basic"):
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json(), {"message": message})
        self.assertEqual(r.headers.get("www-authenticate"), f'Basic realm="{realm}"')
        self.assert_not_from_upstream(r)

    def test_rejections_with_apisix_messages(self):
        gw = self.gw()
        self.assert_401(get(gw, "/ba"), "Missing authorization in request")
        self.assert_401(get(gw, "/ba", headers={"Authorization": "Bearer abc"}), "Invalid authorization in request")
        self.assert_401(get(gw, "/ba", headers={"Authorization": "Basic !!notbase64"}),
                        "Invalid authorization in request")
        self.assert_401(get(gw, "/ba", headers={"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}),
                        "Invalid authorization in request")
        self.assert_401(get(gw, "/ba", headers=basic("nobody", "jack-pw")), "Invalid user authorization")
        self.assert_401(get(gw, "/ba", headers=basic("jack-user", "wrong")), "Invalid user authorization")
        self.assert_401(get(gw, "/ba", headers=basic("jack-user", "jack-pw-longer")), "Invalid user authorization")

    def test_valid_credentials_identify_the_consumer(self):
        gw = self.gw()
        r = get(gw, "/ba", headers=basic("jack-user", "jack-pw"))
        self.assertEqual(r.status, 200, r)
        self.assert_from_upstream(r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
        self.assertEqual(len(r.upstream_values("authorization")), 1)  # hide_credentials defaults to false
        r = get(gw, "/ba", headers=basic("rose", "rose-pw"))
        self.assertEqual(r.upstream_values("x-consumer-username"), ["rose"])
        self.assertEqual(r.upstream_values("x-consumer-custom-id"), ["r-1"])
        # The scheme in any case, spaces inside the decoded pair dropped (APISIX).
        r = get(gw, "/ba", headers={"Authorization": "bAsIc " + base64.b64encode(b" rose : rose-pw ").decode()})
        self.assertEqual(r.status, 200, r)

    def test_hide_credentials(self):
        gw = self.gw({"hide_credentials": True})
        r = get(gw, "/ba", headers=basic("jack-user", "jack-pw"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("authorization"), [])

    def test_realm(self):
        gw = self.gw({"realm": "my realm"})
        self.assert_401(get(gw, "/ba"), "Missing authorization in request", realm="my realm")

    def test_anonymous_consumer(self):
        gw = self.gw({"anonymous_consumer": "anon"})
        r = get(gw, "/ba", headers=basic("jack-user", "wrong"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["anon"])
        self.assertEqual(get(gw, "/ba", headers=basic("jack-user", "jack-pw")).upstream_values("x-consumer-username"),
                         ["jack"])
        gw2 = self.gw({"anonymous_consumer": "ghost"})
        self.assert_401(get(gw2, "/ba"), "Invalid user authorization")
        self.assert_log(gw2, "failed to get anonymous consumer ghost")

    def test_credentials_of_a_consumer(self):
        gw = self.gw(consumers=[
            {"username": "jack", "labels": {"custom_id": "j"}},
            {"id": "jack/credentials/one", "plugins": {"basic-auth": {"username": "j1", "password": "p1"}}},
            {"id": "jack/credentials/two", "plugins": {"basic-auth": {"username": "j2", "password": "p2"}}},
        ])
        for user, pw, cred in (("j1", "p1", "one"), ("j2", "p2", "two")):
            r = get(gw, "/ba", headers=basic(user, pw))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
            self.assertEqual(r.upstream_values("x-credential-identifier"), [cred])
            self.assertEqual(r.upstream_values("x-consumer-custom-id"), ["j"])
        self.assertEqual(get(gw, "/ba", headers=basic("j1", "p2")).status, 401)

    def test_bad_configuration_is_left_out_with_a_log_line_and_no_secret(self):
        gw = self.gateway({
            "routes": [route("ba", "/ba", self.up, {"basic-auth": {}}),
                       route("bad", "/bad", self.up, {"basic-auth": {"hide_credentials": "yes"}})],
            "consumers": [{"username": "ok", "plugins": {"basic-auth": {"username": "ok", "password": "ok-pw"}}},
                          {"username": "nopw", "plugins": {"basic-auth": {"username": "nopw"}}},
                          {"username": "badtype",
                           "plugins": {"basic-auth": {"username": 7, "password": "hunter2-secret"}}}],
        })
        self.assertEqual(get(gw, "/bad").status, 404)
        self.assert_log(gw, "route id=bad", "basic-auth", "hide_credentials")
        self.assert_log(gw, "consumer id=nopw", "basic-auth", "password", "is required")
        self.assert_log(gw, "consumer id=badtype", "basic-auth", "username", "expected string")
        self.assertEqual(get(gw, "/ba", headers=basic("ok", "ok-pw")).status, 200)
        # Wrong passwords and malformed headers that carry a secret.
        get(gw, "/ba", headers=basic("ok", "hunter2-secret"))
        get(gw, "/ba", headers={"Authorization": "Basic hunter2-secret!"})
        get(gw, "/ba", headers=basic("hunter2-secret", "x"))
        self.assertNotIn("hunter2-secret", gw.logs())
        self.assertNotIn("ok-pw", gw.logs())


class EncryptedSecretsTest(PluginTestCase):
    """basic-auth passwords written through the Admin API are stored
    encrypted with the keyring (apisix.data_encryption) and still
    authenticate on a data plane; the Admin API checks the consumer schema."""

    def test_password_encrypted_in_etcd(self):
        etcd = self.etcd()
        cp = self.etcd_gateway(etcd, role="control_plane")
        dp = self.etcd_gateway(etcd, role="data_plane")
        code, body = cp.admin("PUT", ADMIN + "/consumers", {"username": "alice", "plugins": {
            "basic-auth": {"username": "alice", "password": "alice-basic-pw"}}})
        self.assertEqual(code, 201, body)
        code, body = cp.admin("PUT", ADMIN + "/consumers/alice/credentials/c2",
                              {"plugins": {"basic-auth": {"username": "alice2", "password": "alice-cred-pw"}}})
        self.assertEqual(code, 201, body)
        code, body = cp.admin("PUT", ADMIN + "/routes/b", {"uri": "/b", "plugins": {"basic-auth": {}},
                                                           "upstream": {"nodes": {self.up.addr: 1}}})
        self.assertEqual(code, 201, body)
        stored = json.loads(etcd.get("/apisix/consumers/alice"))["plugins"]
        self.assertEqual(stored["basic-auth"]["password"], openssl_aes("alice-basic-pw", "qeddd145sfvddff3"))
        cred = json.loads(etcd.get("/apisix/consumers/alice/credentials/c2"))["plugins"]["basic-auth"]["password"]
        self.assertEqual(cred, openssl_aes("alice-cred-pw", "qeddd145sfvddff3"))
        r = wait_status(dp, "/b", 200, headers=basic("alice", "alice-basic-pw"))
        self.assertEqual(r.json()["headers"].get("x-consumer-username"), "alice")
        r = wait_status(dp, "/b", 200, headers=basic("alice2", "alice-cred-pw"))
        self.assertEqual(r.json()["headers"].get("x-credential-identifier"), "c2")
        self.assertEqual(dp.get("/b", headers=basic("alice", stored["basic-auth"]["password"])).status, 401)
        code, body = cp.admin("PUT", ADMIN + "/consumers", {"username": "bob", "plugins": {
            "basic-auth": {"username": "bob"}}})
        self.assertEqual((code, body), (400, {"error_msg": (
            "invalid plugins configuration: failed to check the configuration of plugin basic-auth err: "
            "property \"password\" is required")}))
        code, body = cp.admin("PUT", ADMIN + "/consumers", {"username": "bob", "plugins": {"basic-auth": "blah"}})
        self.assertEqual((code, body), (400, {"error_msg": (
            "invalid plugins configuration: invalid plugin conf \"blah\" for plugin [basic-auth]")}))
        for secret in ("alice-basic-pw", "alice-cred-pw"):
            self.assertNotIn(secret, dp.logs())
            self.assertNotIn(secret, cp.logs())


# --------------------------------------------------------------------------
# consumer-restriction


class ConsumerRestrictionTest(PluginTestCase):
    CONSUMERS = [
        {"username": "jack", "group_id": "g1", "plugins": {"key-auth": {"key": "jack-key"}}},
        {"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}},
    ]

    def gw(self, conf, auth=True, **kw):
        plugins = {"consumer-restriction": conf}
        if auth:
            plugins["key-auth"] = {}
        return self.gateway({
            "routes": [route("r1", "/cr", self.up, plugins, **kw)],
            "services": [{"id": "s1"}],
            "consumers": self.CONSUMERS,
            "consumer_groups": [{"id": "g1", "plugins": {}}],
        })

    def test_whitelist_by_consumer_name(self):
        gw = self.gw({"whitelist": ["jack"]})
        self.assertEqual(get(gw, "/cr", headers={"apikey": "jack-key"}).status, 200)
        r = get(gw, "/cr", headers={"apikey": "rose-key"})
        self.assertEqual((r.status, r.json()), (403, {"message": "The consumer_name is forbidden."}))
        self.assert_not_from_upstream(r)

    def test_blacklist_with_rejected_code_and_msg(self):
        gw = self.gw({"blacklist": ["jack"], "rejected_code": 401, "rejected_msg": "request is forbidden"})
        r = get(gw, "/cr", headers={"apikey": "jack-key"})
        self.assertEqual((r.status, r.json()), (401, {"message": "request is forbidden"}))
        self.assertEqual(get(gw, "/cr", headers={"apikey": "rose-key"}).status, 200)

    def test_without_a_consumer(self):
        gw = self.gw({"whitelist": ["jack"]}, auth=False)
        r = get(gw, "/cr")
        self.assertEqual((r.status, r.json()),
                         (401, {"message": "The request is rejected, please check the consumer_name for this request"}))

    def test_allowed_by_methods(self):
        gw = self.gw({"allowed_by_methods": [{"user": "jack", "methods": ["POST"]}]})
        r = get(gw, "/cr", headers={"apikey": "jack-key"})
        self.assertEqual((r.status, r.json()), (403, {"message": "The consumer_name is forbidden."}))
        self.assertEqual(call(gw, "POST", "/cr", headers={"apikey": "jack-key"}, body=b"").status, 200)
        self.assertEqual(get(gw, "/cr", headers={"apikey": "rose-key"}).status, 200)  # no entry: any method
        # A whitelisted consumer is not held to its methods.
        gw2 = self.gw({"whitelist": ["jack"], "allowed_by_methods": [{"user": "jack", "methods": ["POST"]}]})
        self.assertEqual(get(gw2, "/cr", headers={"apikey": "jack-key"}).status, 200)

    def test_by_consumer_group_route_and_service(self):
        gw = self.gw({"type": "consumer_group_id", "blacklist": ["g1"]})
        r = get(gw, "/cr", headers={"apikey": "jack-key"})
        self.assertEqual((r.status, r.json()), (403, {"message": "The consumer_group_id is forbidden."}))
        r = get(gw, "/cr", headers={"apikey": "rose-key"})
        self.assertEqual((r.status, r.json()), (401, {
            "message": "The request is rejected, please check the consumer_group_id for this request"}))
        gw = self.gw({"type": "route_id", "whitelist": ["r1"]})
        self.assertEqual(get(gw, "/cr", headers={"apikey": "rose-key"}).status, 200)
        gw = self.gw({"type": "route_id", "whitelist": ["other"]})
        self.assertEqual(get(gw, "/cr", headers={"apikey": "rose-key"}).json(), {"message": "The route_id is forbidden."})
        gw = self.gw({"type": "service_id", "blacklist": ["s1"]}, service_id="s1")
        self.assertEqual(get(gw, "/cr", headers={"apikey": "rose-key"}).json(),
                         {"message": "The service_id is forbidden."})
        gw = self.gw({"type": "service_id", "blacklist": ["s1"]})
        self.assertEqual(get(gw, "/cr", headers={"apikey": "rose-key"}).json(), {
            "message": "The request is rejected, please check the service_id for this request"})

    def test_on_a_consumer(self):
        # APISIX t/plugin/consumer-restriction.t TEST 36-38: the consumer's own
        # consumer-restriction, merged into the route's plugins.
        consumers = [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"},
                                                      "consumer-restriction": {"type": "route_id",
                                                                               "whitelist": ["r2"]}}}]
        gw = self.gateway({"routes": [route("r1", "/r1", self.up, {"key-auth": {}}),
                                      route("r2", "/r2", self.up, {"key-auth": {}})],
                           "consumers": consumers})
        self.assertEqual(get(gw, "/r1", headers={"apikey": "jack-key"}).json(),
                         {"message": "The route_id is forbidden."})
        self.assertEqual(get(gw, "/r2", headers={"apikey": "jack-key"}).status, 200)

    def test_schema(self):
        gw = self.gateway({"routes": [
            route("none", "/none", self.up, {"consumer-restriction": {"type": "consumer_name"}}),
            route("code", "/code", self.up, {"consumer-restriction": {"whitelist": ["a"], "rejected_code": 100}}),
            route("method", "/method", self.up, {"consumer-restriction": {
                "allowed_by_methods": [{"user": "a", "methods": ["FETCH"]}]}}),
            route("empty", "/empty", self.up, {"consumer-restriction": {"whitelist": []}}),
        ]})
        self.assert_log(gw, "route id=none", "consumer-restriction", "object matches none of the required")
        self.assert_log(gw, "route id=code", "consumer-restriction", "rejected_code")
        self.assert_log(gw, "route id=method", "consumer-restriction", "allowed_by_methods",
                        "matches none of the enum values")
        self.assert_log(gw, "route id=empty", "consumer-restriction", "whitelist")
        for p in ("/none", "/code", "/method", "/empty"):
            self.assertEqual(get(gw, p).status, 404)


# --------------------------------------------------------------------------
# jwt-auth


class Keys:
    """An RSA and an EC P-256 key pair made with the openssl command."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="holdfast-jwt-")
        self.rsa = self._make("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        self.ec = self._make("ec", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])

    def _make(self, name, args):
        key = os.path.join(self.dir, name + ".pem")
        subprocess.run(["openssl", "genpkey", *args, "-out", key], check=True, capture_output=True)
        pub = subprocess.run(["openssl", "pkey", "-in", key, "-pubout"], check=True, capture_output=True).stdout
        return key, pub.decode()

    def rsa2(self):
        """A second RSA key pair (a consumer's key rotated)."""
        if not hasattr(self, "_rsa2"):
            self._rsa2 = self._make("rsa2", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        return self._rsa2

    def sign(self, which, data, key_file=None):
        key = key_file or (self.rsa[0] if which == "rsa" else self.ec[0])
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=data, check=True,
                             capture_output=True).stdout
        return sig if which == "rsa" else der_to_raw(sig, 32)


def der_to_raw(der, size):
    """An ECDSA DER signature as JWS r||s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\x00")
        out += v.rjust(size, b"\x00")
        i += 2 + n
    return out


_KEYS = None


def keys():
    global _KEYS
    if _KEYS is None:
        _KEYS = Keys()
    return _KEYS


def jwt(payload, secret=b"jack-secret", alg="HS256", header=None, key_file=None):
    h = b64url(json.dumps(header or {"typ": "JWT", "alg": alg}).encode())
    p = b64url(json.dumps(payload).encode())
    data = f"{h}.{p}".encode()
    if alg.startswith("HS"):
        sig = hmac.new(secret, data, {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]).digest()
    else:
        sig = keys().sign("rsa" if alg == "RS256" else "ec", data, key_file)
    return f"{h}.{p}.{b64url(sig)}"


def bearer(token):
    return {"Authorization": "Bearer " + token}


class JwtAuthTest(PluginTestCase):
    def consumers(self):
        return [
            {"username": "jack", "plugins": {"jwt-auth": {"key": "user-key", "secret": "jack-secret"}}},
            {"username": "hs512", "plugins": {"jwt-auth": {"key": "hs512-key", "secret": "s512",
                                                           "algorithm": "HS512"}}},
            {"username": "b64", "plugins": {"jwt-auth": {"key": "b64-key", "base64_secret": True,
                                                         "secret": base64.b64encode(b"\x00raw\xffbytes").decode()}}},
            {"username": "rsa", "plugins": {"jwt-auth": {"key": "rsa-key", "algorithm": "RS256",
                                                         "public_key": keys().rsa[1]}}},
            {"username": "ec", "plugins": {"jwt-auth": {"key": "ec-key", "algorithm": "ES256",
                                                        "public_key": keys().ec[1]}}},
            {"username": "grace", "plugins": {"jwt-auth": {"key": "grace-key", "secret": "g",
                                                           "lifetime_grace_period": 100}}},
            {"username": "anon"},
        ]

    def gw(self, conf=None, consumers=None):
        return self.gateway({
            "routes": [route("j", "/j", self.up, {"jwt-auth": conf or {}})],
            "consumers": consumers if consumers is not None else self.consumers(),
        })

    def assert_401(self, r, message, realm="jwt"):
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json(), {"message": message})
        self.assertEqual(r.headers.get("www-authenticate"), f'Bearer realm="{realm}"')
        self.assert_not_from_upstream(r)

    def assert_ok(self, r, user):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), [user])

    def test_rejections_with_apisix_messages(self):
        gw = self.gw()
        now = int(time.time())
        self.assert_401(get(gw, "/j"), "Missing JWT token in request")
        self.assert_401(get(gw, "/j", headers=bearer("not-a-jwt")), "JWT token invalid")
        self.assert_401(get(gw, "/j", headers=bearer("a.b.c")), "JWT token invalid")
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"sub": "x"}))), "missing user key in JWT token")
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"key": "nobody"}))), "Invalid user key in JWT token")
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"key": "user-key"}, secret=b"wrong"))), "failed to verify jwt")
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"key": "user-key", "exp": now - 10}))), "failed to verify jwt")
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"key": "user-key", "nbf": now + 100}))),
                        "failed to verify jwt")
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"key": "user-key", "exp": "never"}))),
                        "failed to verify jwt")
        # The token's alg must be the consumer's (an HS256 token against an RS256 consumer).
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"key": "rsa-key"}, secret=keys().rsa[1].encode()))),
                        "failed to verify jwt")
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"key": "hs512-key"}, secret=b"s512"))),
                        "failed to verify jwt")

    def test_algorithms_and_secrets(self):
        gw = self.gw()
        now = int(time.time())
        self.assert_ok(get(gw, "/j", headers=bearer(jwt({"key": "user-key", "exp": now + 60}))), "jack")
        self.assert_ok(get(gw, "/j", headers=bearer(jwt({"key": "hs512-key"}, secret=b"s512", alg="HS512"))), "hs512")
        self.assert_ok(get(gw, "/j", headers=bearer(jwt({"key": "b64-key"}, secret=b"\x00raw\xffbytes"))), "b64")
        self.assert_ok(get(gw, "/j", headers=bearer(jwt({"key": "rsa-key", "exp": now + 60}, alg="RS256"))), "rsa")
        self.assert_ok(get(gw, "/j", headers=bearer(jwt({"key": "ec-key"}, alg="ES256"))), "ec")
        bad = jwt({"key": "ec-key"}, alg="ES256")
        bad = bad[:-4] + ("AAAA" if not bad.endswith("AAAA") else "BBBB")
        self.assert_401(get(gw, "/j", headers=bearer(bad)), "failed to verify jwt")
        # lifetime_grace_period: expired 50 s ago, within 100 s of grace.
        self.assert_ok(get(gw, "/j", headers=bearer(jwt({"key": "grace-key", "exp": now - 50}, secret=b"g"))), "grace")
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"key": "grace-key", "exp": now - 500}, secret=b"g"))),
                        "failed to verify jwt")

    def test_token_in_header_query_and_cookie(self):
        gw = self.gw()
        t = jwt({"key": "user-key"})
        self.assert_ok(get(gw, "/j", headers={"Authorization": t}), "jack")       # without "Bearer "
        self.assert_ok(get(gw, "/j", headers={"Authorization": "bearer " + t}), "jack")
        self.assert_ok(get(gw, "/j?jwt=" + t), "jack")
        self.assert_ok(get(gw, "/j", headers={"Cookie": "a=1; jwt=" + t}), "jack")
        # The header, when present, is the token: the query is not read.
        self.assert_401(get(gw, "/j?jwt=" + t, headers={"Authorization": "x"}), "JWT token invalid")
        gw2 = self.gw({"header": "X-Token", "query": "tok", "cookie": "c", "key_claim_name": "iss", "realm": "api"})
        t2 = jwt({"iss": "user-key"})
        self.assert_ok(get(gw2, "/j", headers={"X-Token": t2}), "jack")
        self.assert_ok(get(gw2, "/j?tok=" + t2), "jack")
        self.assert_ok(get(gw2, "/j", headers={"Cookie": "c=" + t2}), "jack")
        self.assert_401(get(gw2, "/j", headers=bearer(t2)), "Missing JWT token in request", realm="api")

    def test_claims_to_verify(self):
        gw = self.gw({"claims_to_verify": ["exp"]})
        self.assert_401(get(gw, "/j", headers=bearer(jwt({"key": "user-key"}))), "failed to verify jwt")
        self.assert_ok(get(gw, "/j", headers=bearer(jwt({"key": "user-key", "exp": int(time.time()) + 60}))), "jack")

    def test_hide_credentials(self):
        gw = self.gw({"hide_credentials": True})
        t = jwt({"key": "user-key"})
        r = get(gw, "/j", headers=bearer(t))
        self.assert_ok(r, "jack")
        self.assertEqual(r.upstream_values("authorization"), [])
        r = get(gw, "/j?a=1&jwt=" + t + "&b=2")
        self.assert_ok(r, "jack")
        self.assertEqual(r.json()["path"], "/j?a=1&b=2")
        r = get(gw, "/j", headers={"Cookie": "a=1; jwt=" + t + "; b=2"})
        self.assert_ok(r, "jack")
        self.assertEqual(r.upstream_values("cookie"), ["a=1; b=2"])

    def test_anonymous_consumer_and_credentials(self):
        gw = self.gw({"anonymous_consumer": "anon"}, consumers=self.consumers() + [
            {"id": "jack/credentials/k2", "plugins": {"jwt-auth": {"key": "jack-2", "secret": "second"}}}])
        self.assert_ok(get(gw, "/j"), "anon")
        self.assert_ok(get(gw, "/j", headers=bearer(jwt({"key": "user-key"}, secret=b"bad"))), "anon")
        r = get(gw, "/j", headers=bearer(jwt({"key": "jack-2"}, secret=b"second")))
        self.assert_ok(r, "jack")
        self.assertEqual(r.upstream_values("x-credential-identifier"), ["k2"])

    def test_bad_configuration_and_no_secret_in_logs(self):
        gw = self.gateway({
            "routes": [route("j", "/j", self.up, {"jwt-auth": {}}),
                       route("bad", "/bad", self.up, {"jwt-auth": {"claims_to_verify": ["iat"]}})],
            "consumers": [
                {"username": "ok", "plugins": {"jwt-auth": {"key": "ok", "secret": "ok-top-secret"}}},
                {"username": "nosecret", "plugins": {"jwt-auth": {"key": "ns"}}},
                {"username": "badb64", "plugins": {"jwt-auth": {"key": "bb", "secret": "not*base64-secret",
                                                                "base64_secret": True}}},
                {"username": "badpem", "plugins": {"jwt-auth": {"key": "bp", "algorithm": "RS256",
                                                                "public_key": "-----BEGIN garbage-pem-secret"}}},
            ]})
        self.assertEqual(get(gw, "/bad").status, 404)
        self.assert_log(gw, "route id=bad", "jwt-auth", "claims_to_verify")
        self.assert_log(gw, "consumer id=nosecret", "jwt-auth", "secret", "is required when using HS based algorithms")
        self.assert_log(gw, "consumer id=badb64", "jwt-auth", "base64_secret required but the secret is not in base64")
        self.assert_log(gw, "consumer badpem", "jwt-auth", "public_key")
        self.assertEqual(get(gw, "/j", headers=bearer(jwt({"key": "bp"}, alg="RS256"))).status, 401)
        self.assertEqual(get(gw, "/j", headers=bearer(jwt({"key": "ok"}, secret=b"ok-top-secret"))).status, 200)
        get(gw, "/j", headers=bearer(jwt({"key": "ok", "exp": 1}, secret=b"ok-top-secret")))
        get(gw, "/j", headers=bearer("eyJ-ok-top-secret.x.y"))
        logs = gw.logs()
        for secret in ("ok-top-secret", "not*base64-secret", "garbage-pem-secret"):
            self.assertNotIn(secret, logs)

    def test_remembered_rs256_tokens_follow_key_and_expiry(self):
        """Each worker remembers the tokens it verified (a verify costs more
        than the rest of a request). A remembered token must still be
        refused once the consumer's public key is replaced, and once its
        `exp` passes."""
        self.check_remembered_tokens("RS256")

    def test_remembered_hs256_tokens_follow_secret_and_expiry(self):
        self.check_remembered_tokens("HS256")

    def check_remembered_tokens(self, alg):
        etcd = self.etcd()
        cp = self.etcd_gateway(etcd, role="control_plane")
        dp = self.etcd_gateway(etcd, role="data_plane")
        if alg == "RS256":
            old_key, new_key = keys().rsa, keys().rsa2()
        else:
            old_key, new_key = (None, "old-hs-secret"), (None, "new-hs-secret")

        def token(payload, key):
            if alg == "RS256":
                return jwt(payload, alg=alg, key_file=key[0])
            return jwt(payload, secret=key[1].encode())

        def consumer(key):
            conf = ({"key": "rot-key", "algorithm": "RS256", "public_key": key[1]} if alg == "RS256"
                    else {"key": "rot-key", "secret": key[1]})
            code, body = cp.admin("PUT", ADMIN + "/consumers", {"username": "rot", "plugins": {"jwt-auth": conf}})
            self.assertIn(code, (200, 201), body)

        consumer(old_key)
        code, body = cp.admin("PUT", ADMIN + "/routes/j", {"uri": "/j", "plugins": {"jwt-auth": {}},
                                                           "upstream": {"nodes": {self.up.addr: 1}}})
        self.assertEqual(code, 201, body)
        old_token = token({"key": "rot-key", "exp": int(time.time()) + 600}, old_key)
        wait_status(dp, "/j", 200, headers=bearer(old_token))
        for _ in range(6):  # every worker has now seen (and remembered) it
            self.assertEqual(dp.get("/j", headers=bearer(old_token)).status, 200)
        consumer(new_key)
        new_token = token({"key": "rot-key", "exp": int(time.time()) + 600}, new_key)
        wait_status(dp, "/j", 200, headers=bearer(new_token))
        for _ in range(6):
            self.assertEqual(dp.get("/j", headers=bearer(old_token)).status, 401)
        # Remembered, then expired: the claims are checked on every request.
        exp = int(time.time()) + 5
        short = token({"key": "rot-key", "exp": exp}, new_key)
        for _ in range(4):
            self.assertEqual(dp.get("/j", headers=bearer(short)).status, 200)
        time.sleep(max(0.0, exp + 1.2 - time.time()))  # the behaviour under test is the clock passing exp
        for _ in range(4):
            self.assertEqual(dp.get("/j", headers=bearer(short)).status, 401)

    def test_secret_encrypted_through_admin_api(self):
        etcd = self.etcd()
        cp = self.etcd_gateway(etcd, role="control_plane")
        dp = self.etcd_gateway(etcd, role="data_plane")
        code, body = cp.admin("PUT", ADMIN + "/consumers", {"username": "alice", "plugins": {
            "jwt-auth": {"key": "alice-jwt", "secret": "alice-jwt-secret"}}})
        self.assertEqual(code, 201, body)
        code, body = cp.admin("PUT", ADMIN + "/routes/j", {"uri": "/j", "plugins": {"jwt-auth": {}},
                                                           "upstream": {"nodes": {self.up.addr: 1}}})
        self.assertEqual(code, 201, body)
        stored = json.loads(etcd.get("/apisix/consumers/alice"))["plugins"]["jwt-auth"]["secret"]
        self.assertEqual(stored, openssl_aes("alice-jwt-secret", "qeddd145sfvddff3"))
        token = jwt({"key": "alice-jwt"}, secret=b"alice-jwt-secret")
        r = wait_status(dp, "/j", 200, headers=bearer(token))
        self.assertEqual(r.json()["headers"]["x-consumer-username"], "alice")
        self.assertEqual(dp.get("/j", headers=bearer(jwt({"key": "alice-jwt"}, secret=stored.encode()))).status, 401)
        # The Admin API checks jwt-auth's consumer schema with APISIX's message.
        code, body = cp.admin("PUT", ADMIN + "/consumers", {"username": "bob", "plugins": {
            "jwt-auth": {"key": "bob", "algorithm": "RS256"}}})
        self.assertEqual((code, body), (400, {"error_msg": (
            "invalid plugins configuration: failed to check the configuration of plugin jwt-auth err: "
            "failed to validate dependent schema for \"algorithm\": value should match only one schema, "
            "but matches none")}))
        self.assertNotIn("alice-jwt-secret", dp.logs())
        self.assertNotIn("alice-jwt-secret", cp.logs())


if __name__ == "__main__":
    unittest.main()
