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


if __name__ == "__main__":
    unittest.main()
