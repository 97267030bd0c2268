"""plugin_metadata, plugin_attr and secret references ($env://), end to end
(issue #11 item 2), as APISIX 3.x: apisix/plugin.lua (plugin_metadata,
plugin_attr), apisix/admin/plugin_metadata.lua, apisix/secret.lua and
core/env.lua, limit-count's and cors's metadata schemas."""
import json
import os
import shutil
import ssl
import tempfile
import unittest

from harness import GatewayTest, run_holdfast, wait_status
from pki import Pki, https_get
from test_fallback import FallbackBase, fallback_cfg, wait_for

ADMIN = "/apisix/admin"
LC_META = {"limit_header": "X-Quota-Limit", "remaining_header": "X-Quota-Left", "reset_header": "X-Quota-Reset"}
CORS_META = {"allow_origins": {"company": "http://a.test,http://b.test", "partner": "http://p.test"}}


def limited(rid, uri, up, **extra):
    r = {"id": rid, "uri": uri, "upstream": {"nodes": {up.addr: 1}},
         "plugins": {"limit-count": {"count": 5, "time_window": 60}}}
    r.update(extra)
    return r


def cors_route(rid, uri, up, conf):
    return {"id": rid, "uri": uri, "upstream": {"nodes": {up.addr: 1}}, "plugins": {"cors": conf}}


class StandaloneMetadataTest(GatewayTest):
    def test_limit_count_header_names_from_metadata(self):
        up = self.upstream()
        res = {"routes": [limited("1", "/lc", up)], "plugin_metadata": [dict(id="limit-count", **LC_META)]}
        gw = self.gateway(res)
        r = gw.get("/lc")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("x-quota-limit"), "5")
        self.assertEqual(r.headers.get("x-quota-left"), "4")
        self.assertIn("x-quota-reset", r.headers)
        self.assertNotIn("x-ratelimit-limit", r.headers)
        # Without metadata: APISIX's default names.
        gw.reload({"routes": [limited("1", "/lc", up)]})
        r = gw.get("/lc")
        self.assertEqual(r.headers.get("x-ratelimit-limit"), "5")
        self.assertNotIn("x-quota-limit", r.headers)

    def test_rejected_request_carries_the_metadata_names(self):
        up = self.upstream()
        route = limited("1", "/lc", up)
        route["plugins"]["limit-count"]["count"] = 1
        gw = self.gateway({"routes": [route], "plugin_metadata": [dict(id="limit-count", **LC_META)]})
        self.assertEqual(gw.get("/lc").status, 200)
        r = gw.get("/lc")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.headers.get("x-quota-left"), "0")
        self.assertNotIn("x-ratelimit-remaining", r.headers)

    def test_cors_allow_origins_by_metadata(self):
        up = self.upstream()
        res = {"routes": [cors_route("1", "/c", up, {"allow_origins_by_metadata": ["company"]}),
                          cors_route("2", "/own", up, {"allow_origins_by_metadata": ["company"],
                                                       "allow_origins": "http://own.test"})],
               "plugin_metadata": [dict(id="cors", **CORS_META)]}
        gw = self.gateway(res)
        r = gw.get("/c", headers={"Origin": "http://b.test"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://b.test")
        # partner is not named by the route; with the default allow_origins
        # "*" nothing else allows it (APISIX).
        r = gw.get("/c", headers={"Origin": "http://p.test"})
        self.assertNotIn("access-control-allow-origin", r.headers)
        # A route's own allow_origins still apply when the metadata does not allow.
        r = gw.get("/own", headers={"Origin": "http://own.test"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://own.test")
        r = gw.get("/own", headers={"Origin": "http://a.test"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://a.test")

    def test_bad_or_unknown_metadata_is_warned_about_not_fatal(self):
        up = self.upstream()
        res = {"routes": [limited("1", "/lc", up)],
               "plugin_metadata": [{"id": "limit-count", "limit_header": 5},
                                   {"id": "no-such-plugin", "x": 1},
                                   {"id": "cors", "allow_origins": {"bad": "not an origin"}}]}
        gw = self.gateway(res)
        r = gw.get("/lc")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("x-ratelimit-limit"), "5")
        logs = gw.logs()
        self.assertIn("skipping invalid plugin_metadata id=limit-count", logs)
        self.assertIn("limit_header", logs)
        self.assertIn("plugin_metadata id=no-such-plugin: no such plugin enabled, ignored", logs)
        self.assertIn("skipping invalid plugin_metadata id=cors", logs)
        self.assertIsNone(gw.proc.poll())


class EtcdMetadataTest(GatewayTest):
    def test_admin_api_and_etcd(self):
        up = self.upstream()
        etcd = self.etcd()
        gw = self.etcd_gateway(etcd, role="traditional")
        st, _ = gw.admin("PUT", ADMIN + "/routes/1", limited("1", "/lc", up))
        self.assertIn(st, (200, 201))
        wait_status(gw, "/lc", 200)
        # Validated against the plugin's metadata schema.
        st, body = gw.admin("PUT", ADMIN + "/plugin_metadata/limit-count", {"limit_header": 5})
        self.assertEqual(st, 400, body)
        self.assertIn("invalid configuration", body["error_msg"])
        self.assertIn("limit_header", body["error_msg"])
        st, body = gw.admin("PUT", ADMIN + "/plugin_metadata/cors", {"allow_origins": {"x": "no-scheme"}})
        self.assertEqual(st, 400, body)
        st, body = gw.admin("PUT", ADMIN + "/plugin_metadata/no-such-plugin", {})
        self.assertEqual((st, body["error_msg"]), (400, "invalid plugin name"))
        st, body = gw.admin("PUT", ADMIN + "/plugin_metadata/limit-count", LC_META)
        self.assertIn(st, (200, 201), body)
        st, body = gw.admin("GET", ADMIN + "/plugin_metadata/limit-count")
        self.assertEqual(st, 200)
        self.assertEqual(body["value"]["limit_header"], "X-Quota-Limit")
        self.assertEqual(json.loads(etcd.get("/apisix/plugin_metadata/limit-count"))["remaining_header"], "X-Quota-Left")
        wait_for(lambda: "x-quota-limit" in gw.get("/lc").headers, what="metadata applied")
        st, _ = gw.admin("DELETE", ADMIN + "/plugin_metadata/limit-count")
        self.assertEqual(st, 200)
        wait_for(lambda: "x-ratelimit-limit" in gw.get("/lc").headers, what="metadata removed")

        # Written to etcd directly (not through the Admin API): a bad value
        # is warned about and the node keeps running with the defaults.
        etcd.put("/apisix/plugin_metadata/limit-count", {"reset_header": ["not", "a", "string"]})
        gw.wait_log("skipping invalid plugin_metadata id=limit-count")
        self.assertEqual(gw.get("/lc").headers.get("x-ratelimit-limit"), "5")
        etcd.put("/apisix/plugin_metadata/cors", CORS_META)
        etcd.put("/apisix/routes/2", cors_route("2", "/c", up, {"allow_origins_by_metadata": ["partner"]}))
        r = wait_status(gw, "/c", 200, headers={"Origin": "http://p.test"})
        wait_for(lambda: gw.get("/c", headers={"Origin": "http://p.test"}).headers.get("access-control-allow-origin")
                 == "http://p.test", what="cors metadata from etcd")
        self.assertIsNone(gw.proc.poll())


class FallbackMetadataTest(FallbackBase):
    def test_metadata_travels_in_the_s3_snapshot_and_the_cache(self):
        e = self.etcd_
        e.put("/apisix/upstreams/1", {"nodes": {self.up.addr: 1}, "type": "roundrobin"})
        e.put("/apisix/routes/1", {"uri": "/lc", "upstream_id": "1",
                                   "plugins": {"limit-count": {"count": 5, "time_window": 60}}})
        e.put("/apisix/plugin_metadata/limit-count", LC_META)
        backup = self.backup_node()
        backup.start(wait=False)
        m = wait_for(self.manifest, what="manifest")
        resources = json.loads(self.peer.get("fallback-cp-data", m["resource"]["key"]))
        self.assertEqual(resources["plugin_metadata"], [dict(id="limit-count", **LC_META)])
        # A traffic node that never reaches etcd: the S3 snapshot's metadata applies.
        traffic = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=fallback_cfg(self.peer))
        wait_for(lambda: traffic.get("/lc").status == 200, what="traffic node serving from S3")
        self.assertEqual(traffic.status()[1]["source"], "s3")
        self.assertEqual(traffic.get("/lc").headers.get("x-quota-limit"), "5")
        # Its local cache holds it too, and a restart without etcd or S3 uses it.
        with open(os.path.join(traffic.dir, "fallback-cache.json")) as f:
            cache = json.load(f)
        self.assertEqual(cache["resources"]["plugin_metadata"][0]["id"], "limit-count")
        traffic.restart(before_start=self.peer.stop)
        wait_for(lambda: traffic.get("/lc").status == 200, what="traffic node serving from the cache")
        self.assertEqual(traffic.status()[1]["source"], "cache")
        self.assertIn("x-quota-left", traffic.get("/lc").headers)


class PluginAttrTest(GatewayTest):
    ATTR = {"plugin_attr": {"redirect": {"https_port": 8443, "extra_key": 1},
                            "prometheus": {"export_uri": "/m", "refresh_interval": 15},
                            "log-rotate": {"interval": 3600}}}

    def test_unimplemented_keys_are_named_at_start_and_by_t(self):
        up = self.upstream()
        gw = self.gateway({"routes": [{"id": "1", "uri": "/r", "upstream": {"nodes": {up.addr: 1}},
                                       "plugins": {"redirect": {"http_to_https": True}}}]}, config=self.ATTR)
        # What Holdfast implements applies: redirect's https_port.
        r = gw.get("/r", headers={"Host": "h.test"})
        self.assertEqual(r.status, 301)
        self.assertEqual(r.headers["location"], "https://h.test:8443/r")
        logs = gw.logs()
        for text in ("plugin_attr.redirect.extra_key: not supported (ignored)",
                     "plugin_attr.prometheus.refresh_interval: not supported (ignored)",
                     "plugin_attr.log-rotate: not supported (ignored): interval"):
            self.assertIn(text, logs)
        self.assertNotIn("https_port: not supported", logs)
        out = run_holdfast(["-t", "-c", gw.config_path])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("warning: plugin_attr.prometheus.refresh_interval: not supported (ignored)", out.stderr)
        self.assertNotIn("export_uri", out.stderr)  # implemented
        self.assertIn("warning: plugin_attr.redirect.extra_key: not supported (ignored)", out.stderr)

    def test_t_names_bad_metadata_and_unresolved_references(self):
        res = {"routes": [{"id": "1", "uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}},
                           "plugins": {"key-auth": {}}}],
               "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "$env://HF_TEST_T_UNSET"}}}],
               "plugin_metadata": [{"id": "limit-count", "limit_header": 5}]}
        gw = self.gateway(res, start=False)
        out = run_holdfast(["-t", "-c", gw.config_path])
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("plugin_metadata[id=limit-count]: invalid configuration: property \"limit_header\"", out.stderr)
        self.assertIn("consumer id=jack: rejected: plugin key-auth: secret reference $env://HF_TEST_T_UNSET", out.stderr)


SECRET = "s3cr3t-value-9f1c"
JSON_SECRET = json.dumps({"apikey": "json-key-77ab", "other": "x"})


class SecretRefTest(GatewayTest):
    ENV = {"HF_TEST_KEY": SECRET, "HF_TEST_JSON": JSON_SECRET, "HF_TEST_HDR": "from-env"}

    def consumers(self):
        return [{"username": "jack", "plugins": {"key-auth": {"key": "$env://HF_TEST_KEY"}}},
                {"username": "jill", "plugins": {"key-auth": {"key": "$ENV://HF_TEST_JSON/apikey"}}},
                {"username": "ghost", "plugins": {"key-auth": {"key": "$env://HF_TEST_UNSET"}}},
                {"username": "vaulted", "plugins": {"key-auth": {"key": "$secret://vault/1/jack/key"}}}]

    def test_env_references_resolved_and_unresolvable_fail_closed(self):
        up = self.upstream()
        res = {"consumers": self.consumers(),
               "routes": [{"id": "auth", "uri": "/auth", "upstream": {"nodes": {up.addr: 1}},
                           "plugins": {"key-auth": {}}},
                          {"id": "hdr", "uri": "/hdr", "upstream": {"nodes": {up.addr: 1}},
                           "plugins": {"proxy-rewrite": {"headers": {"set": {"X-From-Env": "$env://HF_TEST_HDR"}}}}},
                          {"id": "broken", "uri": "/broken", "upstream": {"nodes": {up.addr: 1}},
                           "plugins": {"proxy-rewrite": {"headers": {"set": {"X-Missing": "$env://HF_TEST_NOPE"}}}}},
                          {"id": "catch-all", "uri": "/*", "upstream": {"nodes": {up.addr: 1}}}]}
        gw = self.gateway(res, extra_env=self.ENV)
        r = gw.get("/auth", headers={"apikey": SECRET})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"]["x-consumer-username"], "jack")
        r = gw.get("/auth", headers={"apikey": "json-key-77ab"})
        self.assertEqual(r.json()["headers"]["x-consumer-username"], "jill")
        # The literal reference is never a credential (APISIX would accept it).
        for literal in ("$env://HF_TEST_KEY", "$env://HF_TEST_UNSET", "$secret://vault/1/jack/key"):
            r = gw.get("/auth", headers={"apikey": literal})
            self.assertEqual((r.status, r.json()), (401, {"message": "Invalid API key in request"}), literal)
        self.assertEqual(gw.get("/hdr").json()["headers"]["x-from-env"], "from-env")
        # A route whose plugin holds an unresolvable reference answers 503;
        # the catch-all route does not serve it in its place.
        r = gw.get("/broken")
        self.assertEqual(r.status, 503)
        self.assertNotIn("HF_TEST_NOPE", r.body.decode())
        self.assertEqual(gw.get("/other").status, 200)
        logs = gw.logs()
        self.assertIn("consumer id=ghost: rejected: plugin key-auth: secret reference $env://HF_TEST_UNSET: "
                      "environment variable HF_TEST_UNSET is not set", logs)
        self.assertIn("route id=broken: rejected: plugin proxy-rewrite: secret reference $env://HF_TEST_NOPE", logs)
        self.assertIn("consumer id=vaulted: rejected: plugin key-auth: secret reference $secret://vault/1/jack/key: "
                      "secret manager vault is not supported", logs)
        # Values never reach the log.
        self.assertNotIn(SECRET, logs)
        self.assertNotIn("json-key-77ab", logs)
        self.assertNotIn("from-env", logs)

    def test_unresolvable_global_rule_fails_closed(self):
        # Dropping the global rule would serve every route without its
        # key-auth: instead every request gets 503, on a keep-alive
        # connection too (each request answered once, then the next).
        up = self.upstream()
        res = {"consumers": self.consumers()[:1],
               "global_rules": [{"id": "g", "plugins": {"key-auth": {},
                                                        "proxy-rewrite": {"headers": {"set": {"X-G": "$env://HF_TEST_NOPE"}}}}}],
               "routes": [{"id": "open", "uri": "/*", "upstream": {"nodes": {up.addr: 1}}}]}
        gw = self.gateway(res, extra_env=self.ENV)
        r = gw.get("/x")
        self.assertEqual(r.status, 503)
        self.assertEqual(gw.get("/x", headers={"apikey": SECRET}).status, 503)
        out = gw.raw(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        self.assertEqual(out.count(b"HTTP/1.1 503"), 2, out[:300])
        self.assertIn("global_rule id=g: rejected: plugin proxy-rewrite: secret reference $env://HF_TEST_NOPE",
                      gw.logs())

    def test_ssl_cert_and_key_from_env(self):
        d = tempfile.mkdtemp(prefix="holdfast-pki-")
        self.addCleanup(shutil.rmtree, d, True)
        pki = Pki(d)
        cert, key = pki.leaf("a", ["a.test"], "ec")
        up = self.upstream()
        res = {"routes": [{"id": "1", "uri": "/hello", "upstream": {"nodes": {up.addr: 1}}}],
               "ssls": [{"id": "s1", "snis": ["a.test"], "cert": "$env://HF_TEST_CERT", "key": "$env://HF_TEST_PKEY"},
                        {"id": "s2", "snis": ["b.test"], "cert": cert, "key": "$env://HF_TEST_NO_KEY"}]}
        gw = self.gateway(res, extra_env={"HF_TEST_CERT": cert, "HF_TEST_PKEY": key})
        ctx = ssl.create_default_context(cafile=pki.ca_crt)
        status, _ = https_get(gw.tls_port, "a.test", "/hello", ctx)
        self.assertEqual(status, 200)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            https_get(gw.tls_port, "b.test", "/hello", ctx)
        self.assertIn("ssl s2: skipped: secret reference $env://HF_TEST_NO_KEY: environment variable "
                      "HF_TEST_NO_KEY is not set", gw.logs())
        self.assertNotIn("PRIVATE KEY", gw.logs())


class AdminSecretRefTest(GatewayTest):
    def test_admin_api_stores_ssl_references_and_the_node_resolves_them(self):
        d = tempfile.mkdtemp(prefix="holdfast-pki-")
        self.addCleanup(shutil.rmtree, d, True)
        pki = Pki(d)
        cert, key = pki.leaf("a", ["a.test"], "ec")
        up = self.upstream()
        etcd = self.etcd()
        gw = self.etcd_gateway(etcd, role="traditional", extra_env={"HF_TEST_CERT": cert, "HF_TEST_PKEY": key})
        # As APISIX, a reference skips the PEM checks; a bad PEM still fails them.
        st, body = gw.admin("PUT", ADMIN + "/ssls/1", {"snis": ["a.test"], "cert": "$env://HF_TEST_CERT",
                                                       "key": "$env://HF_TEST_PKEY"})
        self.assertIn(st, (200, 201), body)
        st, body = gw.admin("PUT", ADMIN + "/ssls/2", {"snis": ["b.test"], "cert": "x" * 200, "key": "$env://HF_TEST_PKEY"})
        self.assertIn(st, (200, 201), body)
        st, body = gw.admin("PUT", ADMIN + "/ssls/3", {"snis": ["c.test"], "cert": "x" * 200, "key": "y" * 100})
        self.assertEqual(st, 400, body)
        st, _ = gw.admin("PUT", ADMIN + "/routes/1", {"uri": "/hello", "upstream": {"nodes": {up.addr: 1}}})
        self.assertIn(st, (200, 201))
        ctx = ssl.create_default_context(cafile=pki.ca_crt)
        status = wait_for(lambda: _https_status(gw.tls_port, "a.test", "/hello", ctx), what="TLS from env")
        self.assertEqual(status, 200)
        self.assertNotIn("PRIVATE KEY", gw.logs())


def _https_status(port, sni, path, ctx):
    try:
        return https_get(port, sni, path, ctx)[0]
    except (ssl.SSLError, OSError):
        return None


class SecretsNotExportedTest(FallbackBase):
    def test_cache_and_s3_objects_carry_the_reference_not_the_secret(self):
        env = {"HF_TEST_KEY": SECRET}
        plain = {"apisix": {"data_encryption": {"enable_encrypt_fields": False}}}
        e = self.etcd_
        e.put("/apisix/upstreams/1", {"nodes": {self.up.addr: 1}, "type": "roundrobin"})
        e.put("/apisix/routes/1", {"uri": "/api", "upstream_id": "1", "plugins": {"key-auth": {}}})
        e.put("/apisix/consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": "$env://HF_TEST_KEY"}}})
        cfg = fallback_cfg(self.peer, "write")
        cfg.update(plain)
        backup = self.etcd_gateway(e, config=cfg, start=False, extra_env=env)
        backup.start(wait=False)
        m = wait_for(self.manifest, what="manifest")
        s3_text = self.peer.get("fallback-cp-data", m["resource"]["key"]).decode()
        self.assertIn("$env://HF_TEST_KEY", s3_text)
        self.assertNotIn(SECRET, s3_text)
        compat = (self.peer.get("fallback-cp-data", "default") or b"").decode()
        self.assertNotIn(SECRET, compat)
        tcfg = fallback_cfg(self.peer)
        tcfg.update(plain)
        traffic = self.etcd_gateway(e, config=tcfg, extra_env=env)
        wait_for(lambda: traffic.get("/api", headers={"apikey": SECRET}).status == 200, what="key from env")
        cache_path = os.path.join(traffic.dir, "fallback-cache.json")
        wait_for(lambda: os.path.exists(cache_path), what="cache written")
        with open(cache_path) as f:
            cache_text = f.read()
        self.assertIn("$env://HF_TEST_KEY", cache_text)
        self.assertNotIn(SECRET, cache_text)
        # From S3 alone, the reference is resolved again on the node.
        traffic2 = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=tcfg, extra_env=env)
        wait_for(lambda: traffic2.get("/api", headers={"apikey": SECRET}).status == 200, what="from S3")
        self.assertEqual(traffic2.status()[1]["source"], "s3")
        self.assertEqual(traffic2.get("/api", headers={"apikey": "$env://HF_TEST_KEY"}).status, 401)
        # A node without the variable still applies the (strict) S3 snapshot:
        # only the consumer is left out, and the literal is no key.
        traffic3 = self.etcd_gateway(["https://INVALID_DOMAIN.invalid:7943"], config=tcfg)
        wait_for(lambda: traffic3.get("/api").status == 401, what="S3 snapshot without the variable")
        self.assertEqual(traffic3.status()[1]["source"], "s3")
        self.assertEqual(traffic3.get("/api", headers={"apikey": "$env://HF_TEST_KEY"}).status, 401)
        self.assertIn("consumer id=jack: rejected: plugin key-auth: secret reference $env://HF_TEST_KEY", traffic3.logs())


if __name__ == "__main__":
    unittest.main()
