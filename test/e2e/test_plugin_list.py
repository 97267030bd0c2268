"""The enabled-plugin list (APISIX_COMPAT §1.1): an Admin node publishes
config.yaml's `plugins` at <prefix>/plugins when it starts and on
PUT /apisix/admin/plugins/reload; data planes enable exactly that list and
follow a change without a restart. A standalone file's `plugins:` list does
the same for file-driven nodes. Real etcd, real binary, real sockets."""
import json
import time
import unittest

from harness import GatewayTest, wait_status


def route(uri, up, **kw):
    r = {"uri": uri, "upstream": {"nodes": {up.addr: 1}, "type": "roundrobin"}}
    r.update(kw)
    return r


def wait_key(etcd, key, pred, timeout=10.0):
    end = time.time() + timeout
    v = None
    while time.time() < end:
        v = etcd.get(key)
        if v is not None and pred(v):
            return v
        time.sleep(0.05)
    raise AssertionError(f"{key} never satisfied the condition; last value {v!r}")


def names(value):
    return sorted(item["name"] for item in json.loads(value))


class AdminPublishesPluginListTest(GatewayTest):
    def test_start_publishes_and_reload_republishes(self):
        etcd = self.etcd()
        node = self.etcd_gateway(etcd, role="traditional", config={"plugins": ["proxy-rewrite", "key-auth"]})
        v = wait_key(etcd, "/apisix/plugins", lambda v: True)
        self.assertEqual(names(v), ["key-auth", "proxy-rewrite"])

        # Editing config.yaml alone changes nothing; the reload call publishes it.
        node.config["plugins"] = ["proxy-rewrite", "key-auth", "limit-count"]
        with open(node.config_path, "w") as f:
            json.dump(node.config, f)
        status, body = node.admin("PUT", "/apisix/admin/plugins/reload", key="viewer-key")
        self.assertEqual(status, 401, body)
        self.assertEqual(names(etcd.get("/apisix/plugins")), ["key-auth", "proxy-rewrite"])
        status, body = node.admin("PUT", "/apisix/admin/plugins/reload")
        self.assertEqual((status, body), (200, "done"))
        self.assertEqual(names(etcd.get("/apisix/plugins")), ["key-auth", "limit-count", "proxy-rewrite"])

        # A config.yaml that no longer parses: a clear error, and the list stays.
        with open(node.config_path, "w") as f:
            f.write("plugins: [unterminated\n")
        status, body = node.admin("PUT", "/apisix/admin/plugins/reload")
        self.assertEqual(status, 400, body)
        self.assertIn("failed to reload", body["error_msg"])
        self.assertEqual(names(etcd.get("/apisix/plugins")), ["key-auth", "limit-count", "proxy-rewrite"])

    def test_empty_plugins_setting_publishes_every_builtin(self):
        etcd = self.etcd()
        node = self.etcd_gateway(etcd, role="control_plane")
        v = wait_key(etcd, "/apisix/plugins", lambda v: True)
        status, listed = node.admin("GET", "/apisix/admin/plugins/list")
        self.assertEqual(status, 200)
        self.assertEqual(names(v), sorted(listed))
        self.assertIn("key-auth", listed)

    def test_published_once_etcd_comes_up(self):
        etcd = self.etcd()
        etcd.stop()
        node = self.etcd_gateway(etcd, role="control_plane", config={"plugins": ["cors"]})
        node.wait_log("cannot publish the plugin list yet")
        etcd.start()
        v = wait_key(etcd, "/apisix/plugins", lambda v: True, timeout=30)
        self.assertEqual(names(v), ["cors"])
        self.assertEqual(node.logs().count("cannot publish the plugin list yet"), 1)


class DataPlaneFollowsPluginListTest(GatewayTest):
    def test_list_from_etcd_replaces_config_yaml_and_reloads(self):
        etcd = self.etcd()
        up = self.upstream("alpha")
        etcd.put("/apisix/plugins", [{"name": "proxy-rewrite"}, {"name": "no-such-plugin"},
                                     {"name": "mqtt-proxy", "stream": True}])
        etcd.put("/apisix/routes/auth", route("/auth", up, plugins={"key-auth": {}}))
        etcd.put("/apisix/routes/rw", route("/rw", up, plugins={"proxy-rewrite": {"uri": "/rewritten"}}))
        # config.yaml enables key-auth too: etcd's list wins, as in APISIX.
        gw = self.etcd_gateway(etcd, config={"plugins": ["proxy-rewrite", "key-auth"]})
        wait_status(gw, "/rw", 200)
        self.assertEqual(gw.get("/rw").json()["path"], "/rewritten")
        self.assertEqual(gw.get("/auth").status, 404)
        gw.wait_log("unknown plugin [key-auth]")
        gw.wait_log("unknown plugins ignored: no-such-plugin")
        self.assertNotIn("mqtt-proxy", gw.logs().split("unknown plugins ignored")[1].splitlines()[0])

        # The list changes: the route that was skipped comes in, no restart.
        etcd.put("/apisix/plugins", [{"name": "proxy-rewrite"}, {"name": "key-auth"}])
        wait_status(gw, "/auth", 401, timeout=5)
        self.assertEqual(gw.get("/rw").status, 200)

        # A list that enables nothing disables every plugin (it is not "all").
        etcd.put("/apisix/plugins", [])
        wait_status(gw, "/rw", 404, timeout=5)
        wait_status(gw, "/auth", 404, timeout=5)

        # Without the key, config.yaml's list applies again.
        etcd.delete("/apisix/plugins")
        wait_status(gw, "/auth", 401, timeout=5)
        wait_status(gw, "/rw", 200, timeout=5)


class StandalonePluginListTest(GatewayTest):
    def test_plugins_section_of_the_file(self):
        up = self.upstream("alpha")
        res = {"plugins": [{"name": "proxy-rewrite"}],
               "routes": [dict(route("/auth", up, plugins={"key-auth": {}}), id="auth"),
                          dict(route("/rw", up, plugins={"proxy-rewrite": {"uri": "/x"}}), id="rw")]}
        gw = self.gateway(res)
        wait_status(gw, "/rw", 200)
        self.assertEqual(gw.get("/auth").status, 404)
        res["plugins"].append({"name": "key-auth"})
        gw.reload(res)
        wait_status(gw, "/auth", 401)


if __name__ == "__main__":
    unittest.main()
