"""plugin_metadata, plugin_attr and secret references ($env://), end to end
(issue #11 item 2), as APISIX 3.x: apisix/plugin.lua (plugin_metadata,
plugin_attr), apisix/admin/plugin_metadata.lua, apisix/secret.lua and
core/env.lua, limit-count's and cors's metadata schemas."""
import unittest

from harness import GatewayTest, run_holdfast


class PluginAttrTest(GatewayTest):
    ATTR = {"plugin_attr": {"redirect": {"https_port": 8443, "extra_key": 1},
                            "prometheus": {"export_uri": "/m", "export_addr": {"ip": "0.0.0.0", "port": 9091}},
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
                     "plugin_attr.prometheus: not supported (ignored): export_uri, export_addr",
                     "plugin_attr.log-rotate: not supported (ignored): interval"):
            self.assertIn(text, logs)
        self.assertNotIn("https_port: not supported", logs)
        out = run_holdfast(["-t", "-c", gw.config_path])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("warning: plugin_attr.prometheus: not supported (ignored)", out.stderr)
        self.assertIn("warning: plugin_attr.redirect.extra_key: not supported (ignored)", out.stderr)



if __name__ == "__main__":
    unittest.main()
