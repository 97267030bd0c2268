"""The Admin API (APISIX_COMPAT §5) and data encryption (§1.2) against a real
etcd (Debian etcd-server): authentication, every resource type, POST ids,
PATCH merge and conflicts, DELETE reference checks, timestamps, propagation to
a data plane, encrypted credentials and APISIX-written values."""
import base64
import http.client
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import unittest

from harness import GatewayTest, free_port, wait_port, wait_status

ADMIN = "/apisix/admin"


def openssl_aes(plain, key, decrypt=False):
    """AES-CBC with key = IV = the keyring entry, as APISIX stores fields."""
    hexkey = key.encode().hex()
    iv = key[:16].encode().hex()
    cipher = "aes-128-cbc" if len(key) == 16 else "aes-256-cbc"
    args = ["openssl", "enc", f"-{cipher}", "-K", hexkey, "-iv", iv, "-base64", "-A"]
    if decrypt:
        args.insert(2, "-d")
    out = subprocess.run(args, input=plain.encode(), capture_output=True, check=True).stdout
    return out.decode().strip()


def make_cert(cn="test.com"):
    d = tempfile.mkdtemp(prefix="holdfast-cert-")
    key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-subj", f"/CN={cn}", "-days", "1"],
                   capture_output=True, check=True)
    with open(cert) as f:
        c = f.read()
    with open(key) as f:
        k = f.read()
    return c, k



def raw_admin(gw, method, path, body=None, headers=None):
    """Like Gateway.admin but returns (status, headers dict, parsed body)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed
    finally:
        conn.close()


class _Shared(GatewayTest):
    """One etcd and one traditional node for the whole class (each test uses
    its own ids); tests that need another node start it themselves."""

    @classmethod
    def setUpClass(cls):
        cls._holder = GatewayTest()
        cls._holder.setUp()
        cls.etcd_srv = cls._holder.etcd()
        cls.gw = cls._holder.etcd_gateway(cls.etcd_srv, role="traditional",
                                          config={"apisix": {"proxy_mode": "http&stream"}})
        wait_port(cls.gw.admin_port)  # the harness waits for the proxy port only
        cls.up = cls._holder.upstream("shared")

    @classmethod
    def tearDownClass(cls):
        cls._holder.tearDown()

    def admin(self, method, path, body=None, key="admin-key", **kw):
        return self.gw.admin(method, ADMIN + path, body, key=key, **kw)

    def upstream_body(self):
        return {"type": "roundrobin", "nodes": {self.up.addr: 1}}

    def route_body(self, uri, **kw):
        b = {"uri": uri, "upstream": self.upstream_body()}
        b.update(kw)
        return b

    def assertError(self, result, status, msg):
        code, body = result
        self.assertEqual(code, status, body)
        self.assertIsInstance(body, dict, body)
        self.assertEqual(body.get("error_msg"), msg, body)


class AdminAuthTest(_Shared):
    def test_missing_wrong_key_and_viewer(self):
        self.assertEqual(self.admin("GET", "/routes", key=None),
                         (401, {"error_msg": "failed to check token", "description": "missing apikey"}))
        self.assertEqual(self.admin("GET", "/routes", key="nope"),
                         (401, {"error_msg": "failed to check token", "description": "wrong apikey"}))
        code, body = self.admin("GET", "/routes", key="viewer-key")
        self.assertEqual(code, 200, body)
        self.assertEqual(self.admin("PUT", "/routes/v1", self.route_body("/v1"), key="viewer-key"),
                         (401, {"error_msg": "failed to check token", "description": "invalid method for role viewer"}))
        self.assertEqual(self.admin("DELETE", "/routes/v1", key="viewer-key")[0], 401)
        self.assertEqual(self.etcd_srv.get("/apisix/routes/v1"), None)

    def test_key_from_query_and_cookie_and_headers(self):
        status, headers, body = raw_admin(self.gw, "GET", ADMIN + "/routes?api_key=admin-key")
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(headers["x-api-version"], "v3")
        status, _, _ = raw_admin(self.gw, "GET", ADMIN + "/routes", headers={"Cookie": "a=b; X-API-KEY=admin-key"})
        self.assertEqual(status, 200)
        status, headers, body = raw_admin(self.gw, "GET", ADMIN + "/routes")
        self.assertEqual(status, 401)
        self.assertEqual(headers["x-api-version"], "v3")
        self.assertEqual(headers["content-type"], "application/json")

    def test_unknown_resource_and_invalid_body(self):
        self.assertError(self.admin("GET", "/nothing"), 404, "Unsupported resource type: nothing")
        code, body = self.admin("PUT", "/routes/j1", "{not json")
        self.assertEqual(code, 400)
        self.assertTrue(body["error_msg"].startswith("invalid request body: "), body)
        self.assertError(self.admin("PUT", "/routes/j1"), 400, "missing configurations")

    def test_plugins_list(self):
        code, body = self.admin("GET", "/plugins/list")
        self.assertEqual(code, 200)
        self.assertIn("key-auth", body)
        self.assertIn("limit-count", body)
        self.assertEqual(self.admin("GET", "/plugins/list", key="viewer-key")[0], 200)


class AdminAccessTest(GatewayTest):
    def test_allow_admin_rejects_other_clients(self):
        etcd = self.etcd()
        gw = self.etcd_gateway(etcd, role="control_plane",
                               config={"deployment": {"admin": {"allow_admin": ["10.0.0.0/8"]}}})
        code, _ = gw.admin("GET", ADMIN + "/routes")
        self.assertEqual(code, 403)
        code, _ = gw.admin("PUT", ADMIN + "/routes/1", {"uri": "/", "upstream": {"nodes": {"127.0.0.1:1": 1}}})
        self.assertEqual(code, 403)
        self.assertIsNone(etcd.get("/apisix/routes/1"))

    def test_admin_key_not_required(self):
        etcd = self.etcd()
        gw = self.etcd_gateway(etcd, role="control_plane",
                               config={"deployment": {"admin": {"admin_key_required": False}}})
        code, body = gw.admin("PUT", ADMIN + "/upstreams/1", {"nodes": {"127.0.0.1:1": 1}}, key=None)
        self.assertEqual(code, 201, body)

    def test_etcd_unreachable_is_503_without_secrets(self):
        dead = f"http://127.0.0.1:{free_port()}"
        gw = self.etcd_gateway([dead], role="control_plane",
                               config={"deployment": {"etcd": {"user": "root", "password": "s3cret-pw"}}})
        for method, path, body in (("GET", "/routes", None), ("GET", "/routes/1", None),
                                   ("PUT", "/upstreams/1", {"nodes": {"127.0.0.1:1": 1}}),
                                   ("DELETE", "/routes/1", None)):
            code, resp = gw.admin(method, ADMIN + path, body)
            self.assertEqual(code, 503, resp)
            self.assertTrue(resp["error_msg"], resp)
            self.assertNotIn("s3cret-pw", json.dumps(resp))

    def test_stream_routes_need_stream_mode(self):
        etcd = self.etcd()
        gw = self.etcd_gateway(etcd, role="control_plane")
        code, body = gw.admin("PUT", ADMIN + "/stream_routes/1", {"server_port": 9100,
                                                                    "upstream": {"nodes": {"127.0.0.1:1": 1}}})
        self.assertEqual((code, body), (400, {"error_msg": "stream mode is disabled, can not add stream routes"}))


class AdminRouteTest(_Shared):
    def test_put_get_round_trip_and_timestamps(self):
        before = int(time.time())
        code, body = self.admin("PUT", "/routes/rt1", self.route_body("/rt1", name="first"))
        self.assertEqual(code, 201, body)
        self.assertEqual(body["key"], "/apisix/routes/rt1")
        self.assertEqual(body["value"]["id"], "rt1")
        self.assertIsInstance(body["value"]["create_time"], int)
        self.assertGreaterEqual(body["value"]["create_time"], before)
        self.assertEqual(body["value"]["update_time"], body["value"]["create_time"])
        stored = json.loads(self.etcd_srv.get("/apisix/routes/rt1"))
        self.assertEqual(stored["id"], "rt1")
        self.assertEqual(stored["uri"], "/rt1")
        self.assertNotIn("priority", stored)  # defaults are not stored (3.14+)
        code, body = self.admin("GET", "/routes/rt1")
        self.assertEqual(code, 200)
        self.assertEqual(set(body), {"key", "value", "createdIndex", "modifiedIndex"})
        self.assertEqual(body["value"]["name"], "first")
        # Replacing keeps create_time and answers 200.
        raw = dict(stored, create_time=1000, update_time=1000)
        self.etcd_srv.put("/apisix/routes/rt1", raw)
        code, body = self.admin("PUT", "/routes/rt1", self.route_body("/rt1", name="second"))
        self.assertEqual(code, 200, body)
        self.assertEqual(body["value"]["create_time"], 1000)
        self.assertGreaterEqual(body["value"]["update_time"], before)
        self.assertEqual(body["value"]["name"], "second")
        # Integer ids in bodies are stored as strings.
        code, body = self.admin("PUT", "/routes", self.route_body("/rt2", id=7702))
        self.assertEqual(code, 201, body)
        self.assertEqual(json.loads(self.etcd_srv.get("/apisix/routes/7702"))["id"], "7702")
        self.assertEqual(self.admin("GET", "/routes/missing-one"), (404, {"message": "Key not found"}))

    def test_put_errors(self):
        self.assertError(self.admin("PUT", "/routes/e1", self.route_body("/e", id="other")), 400, "wrong route id")
        self.assertError(self.admin("PUT", "/routes", self.route_body("/e")), 400, "missing route id")
        self.assertError(self.admin("PUT", "/routes/e1", self.route_body("/e", create_time=1)), 400,
                         "the property is forbidden:  create_time")
        self.assertError(self.admin("POST", "/routes", self.route_body("/e", update_time=1)), 400,
                         "the property is forbidden:  update_time")
        self.assertError(self.admin("PUT", "/routes/e1", self.route_body(1)), 400,
                         'invalid configuration: property "uri" validation failed: wrong type: expected string, got number')
        self.assertError(self.admin("PUT", "/routes/e1", self.route_body("/e", foo=1)), 400,
                         "invalid configuration: additional properties forbidden, found foo")
        self.assertError(self.admin("PUT", "/routes/e1", self.route_body("/e", host="a.com", hosts=["b.com"])), 400,
                         "only one of host or hosts is allowed")
        self.assertError(self.admin("PUT", "/routes/e1", self.route_body("/e", plugins={"no-such": {}})), 400,
                         "unknown plugin [no-such]")
        code, body = self.admin("PUT", "/routes/e1", self.route_body("/e", plugins={"limit-count": {"count": "x"}}))
        self.assertEqual(code, 400)
        self.assertTrue(body["error_msg"].startswith("failed to check the configuration of plugin limit-count err: "), body)
        self.assertError(self.admin("PUT", "/routes/e1", self.route_body("/e", vars=[["arg_a", "nope", "1"]])), 400,
                         "failed to validate the 'vars' expression: invalid operator 'nope'")
        self.assertError(self.admin("PUT", "/routes/e1", {"uri": "/e", "upstream_id": "ghost"}), 400,
                         "failed to fetch upstream info by upstream id [ghost], response code: 404")
        self.assertError(self.admin("PUT", "/routes/e1", {"uri": "/e", "service_id": "ghost"}), 400,
                         "failed to fetch service info by service id [ghost], response code: 404")
        self.assertError(self.admin("PUT", "/routes/e1", self.route_body("/e", plugin_config_id="ghost")), 400,
                         "failed to fetch plugin config info by plugin config id [ghost], response code: 404")
        self.assertError(self.admin("PUT", "/routes/e1", {"uri": "/e", "upstream": {"nodes": {"x": 1}, "retries": -1}}),
                         400, 'invalid configuration: property "upstream" validation failed: '
                              'property "retries" validation failed: expected -1 to be at least 0')
        self.assertError(self.admin("PUT", "/routes/e1", [1]), 400,
                         "invalid configuration: wrong type: expected object, got array")
        self.assertIsNone(self.etcd_srv.get("/apisix/routes/e1"))

    def test_post_generates_ids(self):
        code, body = self.admin("POST", "/routes", self.route_body("/posted"))
        self.assertEqual(code, 201, body)
        rid = body["value"]["id"]
        self.assertRegex(rid, r"^\d{20}$")
        self.assertEqual(body["key"], "/apisix/routes/" + rid)
        self.assertIsNotNone(self.etcd_srv.get("/apisix/gen_id"))
        # The id is the revision of the gen_id write: the next write is the route itself.
        self.assertEqual(int(rid) + 1, int(self.etcd_srv.call("/v3/kv/range", {"key": base64.b64encode(
            ("/apisix/routes/" + rid).encode()).decode()})["kvs"][0]["mod_revision"]))
        code, body2 = self.admin("POST", "/routes", self.route_body("/posted2"))
        self.assertGreater(int(body2["value"]["id"]), int(rid))
        self.assertEqual(json.loads(self.etcd_srv.get("/apisix/routes/" + rid))["id"], rid)
        self.assertError(self.admin("POST", "/routes", self.route_body("/p", id="1")), 400,
                         "wrong route id, do not need it")
        self.assertError(self.admin("POST", "/routes/5", self.route_body("/p")), 400, "wrong route id, do not need it")
        code, body = self.admin("POST", "/upstreams", self.upstream_body())
        self.assertEqual(code, 201)
        self.assertRegex(body["key"], r"^/apisix/upstreams/\d{20}$")

    def test_list_pagination_and_filters(self):
        for i in range(12):
            labels = {"team": "a"} if i % 2 else {"env": "prod"}
            code, _ = self.admin("PUT", f"/plugin_configs/pg{i:02d}",
                                 {"plugins": {}, "name": f"pc-{i}", "labels": labels})
            self.assertEqual(code, 201)
        code, body = self.admin("GET", "/plugin_configs?name=^pc-")
        self.assertEqual(code, 200)
        self.assertEqual(body["total"], 12)
        self.assertEqual(len(body["list"]), 12)
        code, body = self.admin("GET", "/plugin_configs?name=^pc-&page=2&page_size=10")
        self.assertEqual(body["total"], 12)
        self.assertEqual([x["value"]["id"] for x in body["list"]], ["pg10", "pg11"])  # sorted by createdIndex
        code, body = self.admin("GET", "/plugin_configs?name=^pc-&page=1&page_size=10")
        self.assertEqual(len(body["list"]), 10)
        self.assertError(self.admin("GET", "/plugin_configs?page=1&page_size=5"), 400,
                         "page_size must be between 10 and 500")
        self.assertError(self.admin("GET", "/plugin_configs?page_size=501"), 400,
                         "page_size must be between 10 and 500")
        code, body = self.admin("GET", "/plugin_configs?label=team&name=^pc-")
        self.assertEqual(body["total"], 6)
        code, body = self.admin("GET", "/plugin_configs?name=pc-1[01]")
        self.assertEqual(sorted(x["value"]["id"] for x in body["list"]), ["pg10", "pg11"])
        self.admin("PUT", "/routes/lu1", self.route_body("/filter/one"))
        self.admin("PUT", "/routes/lu2", {"uris": ["/x", "/filter/two"], "upstream": self.upstream_body()})
        code, body = self.admin("GET", "/routes?uri=^/filter/")
        self.assertEqual(sorted(x["value"]["id"] for x in body["list"]), ["lu1", "lu2"])
        code, body = self.admin("GET", "/routes?uri=^/filter/one$")
        self.assertEqual([x["value"]["id"] for x in body["list"]], ["lu1"])
        code, body = self.admin("GET", "/global_rules")
        self.assertEqual((code, body), (200, {"list": [], "total": 0}))

    def test_patch_merge_and_sub_path(self):
        base = self.route_body("/patch", methods=["GET", "POST"], labels={"a": "1", "b": "2"},
                               plugins={"limit-count": {"count": 5, "time_window": 60}})
        self.admin("PUT", "/routes/pa1", base)
        raw = json.loads(self.etcd_srv.get("/apisix/routes/pa1"))
        self.etcd_srv.put("/apisix/routes/pa1", dict(raw, create_time=1000, update_time=1000))
        code, body = self.admin("PATCH", "/routes/pa1", {
            "methods": ["PUT"], "labels": {"b": None, "c": "3"},
            "plugins": {"limit-count": {"count": 9}}, "name": "patched"})
        self.assertEqual(code, 200, body)
        v = body["value"]
        self.assertEqual(v["methods"], ["PUT"])  # arrays are replaced
        self.assertEqual(v["labels"], {"a": "1", "c": "3"})  # objects merge, null deletes
        self.assertEqual(v["plugins"]["limit-count"], {"count": 9, "time_window": 60})
        self.assertEqual(v["name"], "patched")
        self.assertEqual(v["create_time"], 1000)
        self.assertGreater(v["update_time"], 1000)
        self.assertEqual(json.loads(self.etcd_srv.get("/apisix/routes/pa1"))["labels"], {"a": "1", "c": "3"})
        # /<res>/<id>/<sub/path> replaces one attribute.
        code, body = self.admin("PATCH", "/routes/pa1/methods", ["DELETE"])
        self.assertEqual(code, 200, body)
        self.assertEqual(body["value"]["methods"], ["DELETE"])
        code, body = self.admin("PATCH", "/routes/pa1/upstream/nodes", {self.up.addr: 5})
        self.assertEqual(code, 200, body)
        self.assertEqual(body["value"]["upstream"], {"type": "roundrobin", "nodes": {self.up.addr: 5}})
        self.assertEqual(self.admin("PATCH", "/routes/pa1/uri/x", "/y")[0], 400)
        # An invalid result is refused and nothing changes.
        before = self.etcd_srv.get("/apisix/routes/pa1")
        self.assertError(self.admin("PATCH", "/routes/pa1", {"uri": 5}), 400,
                         'invalid configuration: property "uri" validation failed: wrong type: expected string, got number')
        self.assertError(self.admin("PATCH", "/routes/pa1", {"id": "other"}), 400, "wrong route id")
        self.assertError(self.admin("PATCH", "/routes/pa1", {"create_time": 5}), 400,
                         "the property is forbidden:  create_time")
        self.assertEqual(self.etcd_srv.get("/apisix/routes/pa1"), before)
        self.assertEqual(self.admin("PATCH", "/routes/nope", {"name": "x"}), (404, {"message": "Key not found"}))
        self.assertError(self.admin("PATCH", "/routes", {"name": "x"}), 400, "missing route id")
        self.assertError(self.admin("PATCH", "/routes/pa1"), 400, "missing new configuration")
        self.assertError(self.admin("PATCH", "/routes/pa1", [1]), 400, "invalid configuration")

    def test_concurrent_patches_never_lose_updates(self):
        self.admin("PUT", "/routes/cc1", self.route_body("/cc", labels={"base": "x"}))
        results = {}

        def one(i):
            results[i] = self.admin("PATCH", "/routes/cc1", {"labels": {f"k{i}": "v"}})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = {i for i, (code, _) in results.items() if code == 200}
        self.assertTrue(ok)
        for i, (code, body) in results.items():
            if code != 200:
                self.assertEqual((code, body), (503, {"error_msg": "value changed before overwritten"}))
        labels = json.loads(self.etcd_srv.get("/apisix/routes/cc1"))["labels"]
        # Every acknowledged PATCH is in etcd; a refused one is not.
        self.assertEqual(set(labels), {"base"} | {f"k{i}" for i in ok})

    def test_delete_refused_while_referenced(self):
        self.admin("PUT", "/upstreams/du1", self.upstream_body())
        self.admin("PUT", "/services/ds1", {"upstream_id": "du1"})
        self.admin("PUT", "/plugin_configs/dp1", {"plugins": {}})
        code, body = self.admin("PUT", "/routes/dr1", {"uri": "/dr", "upstream_id": "du1", "service_id": "ds1",
                                                        "plugin_config_id": "dp1"})
        self.assertEqual(code, 201, body)
        self.assertError(self.admin("DELETE", "/upstreams/du1"), 400,
                         "can not delete this upstream, route [dr1] is still using it now")
        self.assertError(self.admin("DELETE", "/services/ds1"), 400,
                         "can not delete this service directly, route [dr1] is still using it now")
        self.assertError(self.admin("DELETE", "/plugin_configs/dp1"), 400,
                         "can not delete this plugin config, route [dr1] is still using it now")
        self.assertError(self.admin("DELETE", "/services/ds1?force=yes"), 400,
                         "can not delete this service directly, route [dr1] is still using it now")
        self.assertEqual(self.admin("DELETE", "/routes/dr1"), (200, {"deleted": "1", "key": "/apisix/routes/dr1"}))
        self.assertError(self.admin("DELETE", "/upstreams/du1"), 400,
                         "can not delete this upstream, service [ds1] is still using it now")
        self.assertEqual(self.admin("DELETE", "/upstreams/du1?force=true"),
                         (200, {"deleted": "1", "key": "/apisix/upstreams/du1"}))
        self.assertIsNone(self.etcd_srv.get("/apisix/upstreams/du1"))
        self.assertEqual(self.admin("DELETE", "/upstreams/du1"), (404, {"message": "Key not found"}))
        self.assertError(self.admin("DELETE", "/upstreams"), 400, "missing upstream id")
        # consumer groups are protected by the consumers that use them
        self.admin("PUT", "/consumer_groups/dg1", {"plugins": {"limit-count": {"count": 1, "time_window": 60}}})
        self.assertEqual(self.admin("PUT", "/consumers", {"username": "dgc", "group_id": "dg1"})[0], 201)
        self.assertError(self.admin("DELETE", "/consumer_groups/dg1"), 400,
                         "can not delete this consumer group, consumer [dgc] is still using it now")
        self.assertEqual(self.admin("DELETE", "/consumer_groups/dg1?force=true")[0], 200)


class AdminResourcesTest(_Shared):
    def round_trip(self, res, rid, body, check=None):
        code, put = self.admin("PUT", f"/{res}/{rid}", body)
        self.assertEqual(code, 201, put)
        self.assertEqual(put["key"], f"/apisix/{res}/{rid}")
        code, got = self.admin("GET", f"/{res}/{rid}")
        self.assertEqual(code, 200, got)
        code, lst = self.admin("GET", f"/{res}")
        self.assertEqual(code, 200)
        self.assertIn(f"/apisix/{res}/{rid}", [x["key"] for x in lst["list"]])
        stored = json.loads(self.etcd_srv.get(f"/apisix/{res}/{rid}"))
        if check:
            check(got["value"], stored)
        self.assertEqual(self.admin("DELETE", f"/{res}/{rid}")[0], 200)
        self.assertIsNone(self.etcd_srv.get(f"/apisix/{res}/{rid}"))
        return stored

    def test_every_resource_type(self):
        self.round_trip("routes", "x1", self.route_body("/x1"))
        self.round_trip("services", "x1", {"upstream": self.upstream_body(), "hosts": ["a.com"],
                                           "plugins": {"request-id": {}}})
        self.round_trip("upstreams", "x1", {"type": "chash", "hash_on": "header", "key": "x-user",
                                            "nodes": [{"host": "127.0.0.1", "port": 80, "weight": 1}]})
        self.round_trip("plugin_configs", "x1", {"plugins": {"cors": {}}, "desc": "d"})
        self.round_trip("global_rules", "x1", {"plugins": {"request-id": {}}})
        self.round_trip("consumer_groups", "x1", {"plugins": {"limit-count": {"count": 2, "time_window": 60}}})
        self.round_trip("protos", "x1", {"content": 'syntax = "proto3"; package x;'})
        self.round_trip("stream_routes", "x1", {"server_port": 9100, "remote_addr": "127.0.0.1",
                                                "upstream": {"nodes": {"127.0.0.1:1995": 1}}})
        self.round_trip("plugin_metadata", "request-id", {"anything": {"free": "form"}})
        code, body = self.admin("PUT", "/secrets/vault/x1", {"uri": "http://127.0.0.1:8200", "prefix": "kv/apisix",
                                                            "token": "root"})
        self.assertEqual(code, 201, body)
        self.assertEqual(body["key"], "/apisix/secrets/vault/x1")
        self.assertEqual(body["value"]["id"], "vault/x1")
        code, body = self.admin("GET", "/secrets")
        self.assertIn("/apisix/secrets/vault/x1", [x["key"] for x in body["list"]])
        code, body = self.admin("GET", "/secrets/vault")
        self.assertIn("/apisix/secrets/vault/x1", [x["key"] for x in body["list"]])
        self.assertEqual(self.admin("PATCH", "/secrets/vault/x1", {"prefix": "kv/other"})[1]["value"]["prefix"], "kv/other")
        self.assertEqual(self.admin("DELETE", "/secrets/vault/x1")[0], 200)

    def test_resource_validation_errors(self):
        self.assertError(self.admin("PUT", "/upstreams/v1", {"nodes": {"127.0.0.1:80": 1}, "pass_host": "rewrite"}), 400,
                         'invalid configuration: property "upstream_host" is required when pass_host is rewrite')
        self.assertError(self.admin("PUT", "/upstreams/v1", {"nodes": {"127.0.0.1:80": 1}, "labels": {"a": "b c"}}), 400,
                         'invalid configuration: property "labels" validation failed: failed to validate a '
                         '(matching ".*"): failed to match pattern "^\\\\S+$" with "b c"')
        self.assertError(self.admin("PUT", "/global_rules/v1", {"plugins": {"cors": {}}, "name": "x"}), 400,
                         "invalid configuration: additional properties forbidden, found name")
        self.assertError(self.admin("PUT", "/consumer_groups/v1", {}), 400,
                         'invalid configuration: property "plugins" is required')
        self.assertError(self.admin("PUT", "/protos/v1", {}), 400, 'invalid configuration: property "content" is required')
        self.assertError(self.admin("PUT", "/plugin_metadata/no-such-plugin", {}), 400, "invalid plugin name")
        self.assertError(self.admin("PUT", "/secrets/nope/1", {}), 400, "invalid secret manager: nope")
        self.assertError(self.admin("PUT", "/secrets/vault/1", {"uri": "http://x"}), 400,
                         'invalid configuration: property "prefix" is required')
        self.assertError(self.admin("PUT", "/stream_routes/v1", {"server_port": 70000}), 400,
                         'invalid configuration: property "server_port" validation failed: expected 70000 to be at most 65535')
        self.assertError(self.admin("PUT", "/services/v1", {"upstream_id": "ghost"}), 400,
                         "failed to fetch upstream info by upstream id [ghost], response code: 404")
        code, body = self.admin("PUT", "/ssls/v1", {"cert": "x" * 200, "key": "y" * 100, "snis": ["a.com"]})
        self.assertEqual(code, 400)
        self.assertTrue(body["error_msg"].startswith("failed to parse cert: "), body)
        cert, key = make_cert()
        self.assertError(self.admin("PUT", "/ssls/v1", {"cert": cert, "key": key}), 400,
                         'invalid configuration: property "snis" is required')
        self.assertError(self.admin("PUT", "/ssls/v1", {"cert": cert, "key": key, "snis": ["a.com"], "keys": [key]}),
                         400, "mismatched number of certs and keys")
        for path in ("/routes/v1", "/upstreams/v1", "/services/v1", "/ssls/v1", "/protos/v1", "/stream_routes/v1"):
            self.assertIsNone(self.etcd_srv.get("/apisix" + path), path)

    def test_ssl_key_is_encrypted_and_never_shown(self):
        cert, key = make_cert("ssl.test")
        code, body = self.admin("PUT", "/ssls/s1", {"cert": cert, "key": key, "snis": ["ssl.test", "*.ssl.test"]})
        self.assertEqual(code, 201, body)
        self.assertNotIn("key", body["value"])
        stored = json.loads(self.etcd_srv.get("/apisix/ssls/s1"))
        self.assertEqual(stored["cert"], cert)
        self.assertFalse(stored["key"].startswith("---"))
        self.assertEqual(openssl_aes(stored["key"], "qeddd145sfvddff3", decrypt=True), key.strip())
        code, body = self.admin("GET", "/ssls/s1")
        self.assertNotIn("key", body["value"])
        self.assertEqual(body["value"]["snis"], ["ssl.test", "*.ssl.test"])
        code, body = self.admin("GET", "/ssls")
        self.assertNotIn("key", body["list"][0]["value"])
        # PATCH re-encrypts from plaintext: the stored key still decrypts to the PEM.
        code, body = self.admin("PATCH", "/ssls/s1", {"snis": ["only.ssl.test"]})
        self.assertEqual(code, 200, body)
        stored = json.loads(self.etcd_srv.get("/apisix/ssls/s1"))
        self.assertEqual(openssl_aes(stored["key"], "qeddd145sfvddff3", decrypt=True), key.strip())
        self.assertEqual(self.admin("DELETE", "/ssls/s1")[0], 200)

    def test_upstream_tls_client_key_is_encrypted(self):
        cert, key = make_cert("client")
        code, body = self.admin("PUT", "/upstreams/tls1", {"nodes": {"127.0.0.1:443": 1}, "scheme": "https",
                                                          "tls": {"client_cert": cert, "client_key": key}})
        self.assertEqual(code, 201, body)
        stored = json.loads(self.etcd_srv.get("/apisix/upstreams/tls1"))
        self.assertFalse(stored["tls"]["client_key"].startswith("---"))
        self.assertEqual(stored["tls"]["client_cert"], cert)
        self.assertError(self.admin("PUT", "/upstreams/tls2", {"nodes": {"127.0.0.1:443": 1},
                                                              "tls": {"client_cert": cert}}), 400,
                         'invalid configuration: property "tls" validation failed: client_cert and client_key must be set together')
        self.assertEqual(self.admin("DELETE", "/upstreams/tls1")[0], 200)


class AdminConsumerTest(_Shared):
    def test_consumers_and_credentials(self):
        code, body = self.admin("PUT", "/consumers", {"username": "jack", "plugins": {"key-auth": {"key": "jack-k1"}},
                                                      "labels": {"custom_id": "c-7"}})
        self.assertEqual(code, 201, body)
        self.assertEqual(body["key"], "/apisix/consumers/jack")
        self.assertNotIn("id", body["value"])
        self.assertEqual(self.admin("PUT", "/consumers/jack", {"username": "jack",
                                                                "plugins": {"key-auth": {"key": "jack-k1"}}})[0], 200)
        self.assertError(self.admin("PUT", "/consumers/jill", {"username": "jack"}), 400, "wrong username")
        code, body = self.admin("PUT", "/consumers/kate", {"desc": "username from the URL"})
        self.assertEqual((code, body["value"]["username"]), (201, "kate"))
        self.assertError(self.admin("PUT", "/consumers", {"plugins": {}}), 400,
                         'invalid configuration: property "username" is required')
        self.assertError(self.admin("POST", "/consumers", {"username": "x"}), 405,
                         "not supported `POST` method for consumer")
        self.assertError(self.admin("PATCH", "/consumers/jack", {"desc": "x"}), 405,
                         "not supported `PATCH` method for consumer")
        self.assertError(self.admin("PUT", "/consumers", {"username": "bad", "plugins": {"key-auth": {}}}), 400,
                         "invalid plugins configuration: failed to check the configuration of plugin key-auth err: "
                         'property "key" is required')
        self.assertError(self.admin("PUT", "/consumers", {"username": "bad", "group_id": "ghost"}), 400,
                         "failed to fetch consumer group info by consumer group id [ghost], response code: 404")
        # credentials
        code, body = self.admin("PUT", "/consumers/jack/credentials/c1", {"plugins": {"key-auth": {"key": "jack-c1"}}})
        self.assertEqual(code, 201, body)
        self.assertEqual(body["key"], "/apisix/consumers/jack/credentials/c1")
        self.assertEqual(body["value"]["id"], "c1")
        self.admin("PUT", "/consumers/jack/credentials/c2", {"plugins": {"key-auth": {"key": "jack-c2"}}})
        code, body = self.admin("GET", "/consumers/jack/credentials")
        self.assertEqual(sorted(x["value"]["id"] for x in body["list"]), ["c1", "c2"])
        self.assertEqual(body["list"][0]["value"]["plugins"]["key-auth"]["key"], "jack-c1")  # shown decrypted
        code, body = self.admin("GET", "/consumers/jack/credentials/c1")
        self.assertEqual(code, 200)
        code, body = self.admin("GET", "/consumers")
        self.assertEqual([x["key"] for x in body["list"] if x["key"].startswith("/apisix/consumers/jack")],
                         ["/apisix/consumers/jack"])  # credentials are not consumers
        self.assertError(self.admin("POST", "/consumers/jack/credentials", {"plugins": {}}), 405,
                         "not supported `POST` method for credential")
        self.assertError(self.admin("PATCH", "/consumers/jack/credentials/c1", {"desc": "x"}), 405,
                         "not supported `PATCH` method for credential")
        self.assertError(self.admin("POST", "/plugin_metadata", {}), 405,
                         "not supported `POST` method for plugin_metadata")
        self.assertError(self.admin("PUT", "/consumers/jack/credentials/c3", {"plugins": {"cors": {}}}), 400,
                         "only supports auth type plugins in consumer credential")
        self.assertError(self.admin("PUT", "/consumers/nobody/credentials/c1",
                                    {"plugins": {"key-auth": {"key": "zzz"}}}), 404, "consumer [nobody] not found")
        # duplicate keys, compared on decrypted values
        self.assertError(self.admin("PUT", "/consumers", {"username": "jill", "plugins": {"key-auth": {"key": "jack-k1"}}}),
                         400, "duplicate key found with consumer: jack")
        self.assertError(self.admin("PUT", "/consumers", {"username": "jill", "plugins": {"key-auth": {"key": "jack-c2"}}}),
                         400, "duplicate key found with consumer: jack")
        self.assertEqual(self.admin("PUT", "/consumers", {"username": "jill"})[0], 201)
        self.assertError(self.admin("PUT", "/consumers/jill/credentials/j1", {"plugins": {"key-auth": {"key": "jack-c1"}}}),
                         400, "duplicate key found with consumer: jack")
        # deleting a consumer deletes its credentials
        self.assertEqual(self.admin("DELETE", "/consumers/jack"), (200, {"deleted": "1", "key": "/apisix/consumers/jack"}))
        self.assertEqual(self.etcd_srv.get_prefix("/apisix/consumers/jack"), {})
        self.assertEqual(self.admin("PUT", "/consumers", {"username": "jill", "plugins": {"key-auth": {"key": "jack-k1"}}})[0],
                         200)


class AdminDataPlaneTest(GatewayTest):
    def test_route_propagates_to_data_plane(self):
        etcd = self.etcd()
        up = self.upstream("dp-up")
        cp = self.etcd_gateway(etcd, role="control_plane")
        dp = self.etcd_gateway(etcd, role="data_plane")
        dp.wait_log("configuration applied from etcd")
        self.assertEqual(dp.get("/prop").status, 404)
        t0 = time.time()
        code, body = cp.admin("PUT", ADMIN + "/routes/p1", {"uri": "/prop", "upstream": {"nodes": {up.addr: 1}}})
        self.assertEqual(code, 201, body)
        r = wait_status(dp, "/prop", 200, timeout=2)
        self.assertLess(time.time() - t0, 2.0)
        self.assertEqual(r.json()["server"], "dp-up")
        code, _ = cp.admin("DELETE", ADMIN + "/routes/p1")
        self.assertEqual(code, 200)
        wait_status(dp, "/prop", 404, timeout=2)

    def test_encrypted_key_auth_authenticates_on_data_plane(self):
        etcd = self.etcd()
        up = self.upstream("auth-up")
        cp = self.etcd_gateway(etcd, role="control_plane")
        dp = self.etcd_gateway(etcd, role="data_plane")
        code, body = cp.admin("PUT", ADMIN + "/consumers", {"username": "alice",
                                                            "plugins": {"key-auth": {"key": "alice-plain-key"}}})
        self.assertEqual(code, 201, body)
        code, body = cp.admin("PUT", ADMIN + "/consumers/alice/credentials/cred1",
                              {"plugins": {"key-auth": {"key": "alice-cred-key"}}})
        self.assertEqual(code, 201, body)
        code, body = cp.admin("PUT", ADMIN + "/routes/auth", {"uri": "/auth", "plugins": {"key-auth": {}},
                                                              "upstream": {"nodes": {up.addr: 1}}})
        self.assertEqual(code, 201, body)
        stored = json.loads(etcd.get("/apisix/consumers/alice"))["plugins"]["key-auth"]["key"]
        self.assertNotEqual(stored, "alice-plain-key")
        self.assertEqual(stored, openssl_aes("alice-plain-key", "qeddd145sfvddff3"))
        cred = json.loads(etcd.get("/apisix/consumers/alice/credentials/cred1"))["plugins"]["key-auth"]["key"]
        self.assertNotEqual(cred, "alice-cred-key")
        r = wait_status(dp, "/auth", 200, headers={"apikey": "alice-plain-key"})
        self.assertEqual(r.json()["headers"].get("x-consumer-username"), "alice")
        r = wait_status(dp, "/auth", 200, headers={"apikey": "alice-cred-key"})
        self.assertEqual(r.json()["headers"].get("x-credential-identifier"), "cred1")
        self.assertEqual(dp.get("/auth", headers={"apikey": stored}).status, 401)  # the ciphertext is not a key
        self.assertEqual(dp.get("/auth", headers={"apikey": "wrong"}).status, 401)
        self.assertNotIn("alice-plain-key", dp.logs())
        self.assertNotIn("alice-plain-key", cp.logs())

    def test_encryption_disabled_stores_plaintext(self):
        etcd = self.etcd()
        cp = self.etcd_gateway(etcd, role="control_plane",
                               config={"apisix": {"data_encryption": {"enable_encrypt_fields": False}}})
        code, body = cp.admin("PUT", ADMIN + "/consumers", {"username": "bob", "plugins": {"key-auth": {"key": "bob-k"}}})
        self.assertEqual(code, 201, body)
        self.assertEqual(json.loads(etcd.get("/apisix/consumers/bob"))["plugins"]["key-auth"]["key"], "bob-k")

    def test_apisix_written_values_load_on_data_plane(self):
        etcd = self.etcd()
        up = self.upstream("apisix-up")
        # What APISIX 3.x leaves in etcd: init_dir markers, gen_id, ids as
        # strings, no defaults, keys encrypted with either keyring entry.
        for d in ("routes", "upstreams", "consumers", "ssls", "services"):
            etcd.put(f"/apisix/{d}/", "init_dir")
        etcd.put("/apisix/gen_id", "31")
        etcd.put("/apisix/upstreams/00000000000000000031",
                 {"id": "00000000000000000031", "nodes": {up.addr: 1}, "type": "roundrobin",
                  "create_time": 1700000000, "update_time": 1700000000})
        etcd.put("/apisix/routes/1", {"id": "1", "uri": "/apisix-shaped", "upstream_id": "00000000000000000031",
                                      "plugins": {"key-auth": {}}, "create_time": 1700000000,
                                      "update_time": 1700000000})
        etcd.put("/apisix/consumers/carol", {"username": "carol", "create_time": 1700000000, "update_time": 1700000000,
                                             "plugins": {"key-auth": {"key": openssl_aes("carol-key",
                                                                                          "edd1c9f0985e76a2")}}})
        etcd.put("/apisix/consumers/dave", {"username": "dave",
                                            "plugins": {"key-auth": {"key": openssl_aes("dave-key",
                                                                                         "qeddd145sfvddff3")}}})
        # Not decryptable with the keyring: used raw, as APISIX does.
        etcd.put("/apisix/consumers/erin", {"username": "erin", "plugins": {"key-auth": {"key": "erin-raw-key"}}})
        dp = self.etcd_gateway(etcd, role="data_plane")
        r = wait_status(dp, "/apisix-shaped", 200, headers={"apikey": "carol-key"})
        self.assertEqual(r.json()["server"], "apisix-up")
        self.assertEqual(dp.get("/apisix-shaped", headers={"apikey": "dave-key"}).status, 200)
        self.assertEqual(dp.get("/apisix-shaped", headers={"apikey": "erin-raw-key"}).status, 200)
        self.assertEqual(dp.get("/apisix-shaped", headers={"apikey": "nobody"}).status, 401)
        # The Admin API of a traditional node reads the same data.
        tn = self.etcd_gateway(etcd, role="traditional")
        wait_port(tn.admin_port)  # the harness waits for the proxy port only
        code, body = tn.admin("GET", ADMIN + "/consumers/carol")
        self.assertEqual(code, 200)
        self.assertEqual(body["value"]["plugins"]["key-auth"]["key"], "carol-key")
        code, body = tn.admin("GET", ADMIN + "/routes")
        self.assertEqual([x["key"] for x in body["list"]], ["/apisix/routes/1"])  # the marker is not a route
        code, body = tn.admin("PUT", ADMIN + "/consumers", {"username": "frank",
                                                            "plugins": {"key-auth": {"key": "carol-key"}}})
        self.assertEqual((code, body), (400, {"error_msg": "duplicate key found with consumer: carol"}))
        code, body = tn.admin("POST", ADMIN + "/routes", {"uri": "/posted", "upstream_id": "00000000000000000031"})
        self.assertEqual(code, 201, body)
        wait_status(dp, "/posted", 200, timeout=2)


class AdminIdsAndUniquenessTest(_Shared):
    def test_dot_and_dotdot_ids_are_refused(self):
        # Deliberately stricter than APISIX: /routes/.. could never be addressed again.
        for rid in (".", ".."):
            for method, path, body in (("PUT", "/routes", self.route_body("/dots", id=rid)),
                                       ("PUT", "/upstreams", dict(self.upstream_body(), id=rid))):
                code, resp = self.admin(method, path, body)
                self.assertEqual(code, 400, resp)
                self.assertIn(f'"{rid}" cannot be used as an id', resp["error_msg"])
        self.assertEqual(self.admin("PUT", "/consumers", {"username": "dots"})[0], 201)
        code, resp = self.admin("PUT", "/consumers/dots/credentials", {"id": "..", "plugins": {}})
        self.assertEqual(code, 400, resp)
        stored = list(self.etcd_srv.get_prefix("/apisix/"))
        self.assertEqual([k for k in stored if k.endswith("/.") or k.endswith("/..")], [])
        # ids that merely contain dots stay valid, as in APISIX
        self.assertEqual(self.admin("PUT", "/routes/v1.2", self.route_body("/v12"))[0], 201)

    def test_concurrent_consumers_with_the_same_key_store_exactly_one(self):
        n = 10
        results = [None] * n
        barrier = threading.Barrier(n)

        def put(i):
            barrier.wait()
            results[i] = self.admin("PUT", "/consumers", {"username": f"racer{i}",
                                                          "plugins": {"key-auth": {"key": "raced-key"}}})
        threads = [threading.Thread(target=put, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        created = [i for i, (code, _) in enumerate(results) if code == 201]
        self.assertEqual(len(created), 1, results)
        for code, body in results:
            if code != 201:
                self.assertEqual(code, 400, body)
                self.assertEqual(body["error_msg"], f"duplicate key found with consumer: racer{created[0]}")
        # what etcd holds, read back through the Admin API (keys decrypted)
        code, body = self.admin("GET", "/consumers")
        holders = [item["value"]["username"] for item in body["list"]
                   if item["value"].get("plugins", {}).get("key-auth", {}).get("key") == "raced-key"]
        self.assertEqual(holders, [f"racer{created[0]}"])


class AdminEnvSecretTest(GatewayTest):
    def test_all_digit_admin_key_from_env_is_a_string(self):
        etcd = self.etcd()
        gw = self.etcd_gateway(etcd, role="traditional", start=False, extra_env={"HF_ADMIN_KEY": "0012345678"},
                               config={"deployment": {"admin": {"admin_key": [
                                   {"name": "admin", "key": "${{HF_ADMIN_KEY}}", "role": "admin"}]}}})
        gw.start()
        wait_port(gw.admin_port)
        self.assertEqual(gw.admin("GET", ADMIN + "/routes", key="0012345678")[0], 200)
        self.assertEqual(gw.admin("GET", ADMIN + "/routes", key="12345678")[0], 401)


if __name__ == "__main__":
    unittest.main()
