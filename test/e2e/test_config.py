"""The command line and config.yaml (APISIX_COMPAT.md §6, README
"Configuration"): --version, --help, -t, key-path error messages, unknown
keys, ${{VAR}} substitution, node_listen forms, worker_processes, JSON logs
and the access log file."""
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import GatewayTest, free_port, run_holdfast

DATA_PLANE_YAML = """\
deployment:
  role: data_plane
  role_data_plane:
    config_provider: {provider}
"""

GOOD_STANDALONE = """\
upstreams:
  - id: up1
    nodes:
      "127.0.0.1:1980": 1
routes:
  - id: r1
    uri: /hello
    upstream_id: up1
  - id: r2
    uris: ["/a/*", "/b"]
    methods: [GET, POST]
    upstream:
      type: roundrobin
      nodes:
        - host: 127.0.0.1
          port: 1981
          weight: 1
#END
"""


class ConfigDir:
    """A scratch folder holding config.yaml and, optionally, the standalone file."""

    def __init__(self, test, config_text, standalone=None, standalone_name="apisix.yaml"):
        self.dir = tempfile.mkdtemp(prefix="holdfast-cfg-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.config_path = os.path.join(self.dir, "config.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        if standalone is not None:
            with open(os.path.join(self.dir, standalone_name), "w") as f:
                f.write(standalone)

    def check(self, env=None):
        """holdfast -t -c config.yaml: (exit code, stdout + stderr)."""
        p = run_holdfast(["-t", "-c", self.config_path], env=env)
        return p.returncode, p.stdout + p.stderr


class CliTest(GatewayTest):
    def test_version(self):
        for flag in ("--version", "-v"):
            p = run_holdfast([flag])
            self.assertEqual(p.returncode, 0, p)
            self.assertRegex(p.stdout, r"^holdfast \d+\.\d+\.\d+\S*\n$")

    def test_help(self):
        for flag in ("--help", "-h"):
            p = run_holdfast([flag])
            self.assertEqual(p.returncode, 0, p)
            self.assertIn("Usage: holdfast", p.stdout)
            for opt in ("-c", "--config", "-t", "--test", "--version", "--help"):
                self.assertIn(opt, p.stdout)

    def test_unknown_argument_fails(self):
        p = run_holdfast(["--no-such-flag"])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--no-such-flag", p.stderr)

    def test_missing_config_file_fails(self):
        d = tempfile.mkdtemp(prefix="holdfast-cfg-")
        self.addCleanup(shutil.rmtree, d, True)
        p = run_holdfast(["-t", "-c", os.path.join(d, "nope.yaml")])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("nope.yaml", p.stderr)


class ConfigTestFlagTest(GatewayTest):
    """holdfast -t: success cases, and failures that name the key path."""

    def assert_fails(self, cfg, *needles, env=None):
        rc, out = cfg.check(env=env)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("test failed", out)
        for n in needles:
            self.assertIn(n, out)
        return out

    def test_good_config_yaml(self):
        cfg = ConfigDir(self, """\
apisix:
  node_listen: 9080
  router:
    http: radixtree_uri
  delete_uri_tail_slash: true
nginx_config:
  worker_processes: auto
  error_log_level: warn
deployment:
  role: traditional
  role_traditional:
    config_provider: etcd
  etcd:
    host: ["http://127.0.0.1:2379"]
    prefix: /apisix
plugins:
  - key-auth
  - proxy-rewrite
holdfast:
  log_format: json
  access_log: "off"
""")
        rc, out = cfg.check()
        self.assertEqual(rc, 0, out)
        self.assertIn("test is successful", out)
        self.assertNotIn("warning", out)

    def test_good_standalone_yaml(self):
        cfg = ConfigDir(self, DATA_PLANE_YAML.format(provider="yaml"), GOOD_STANDALONE)
        rc, out = cfg.check()
        self.assertEqual(rc, 0, out)
        self.assertIn("test is successful", out)
        self.assertIn("2 routes", out)

    def test_good_standalone_json(self):
        doc = {"routes": [{"id": "j1", "uri": "/j", "upstream": {"nodes": {"127.0.0.1:1980": 1}}}]}
        cfg = ConfigDir(self, DATA_PLANE_YAML.format(provider="json"), json.dumps(doc), "apisix.json")
        rc, out = cfg.check()
        self.assertEqual(rc, 0, out)
        self.assertIn("test is successful", out)
        self.assertIn("1 routes", out)

    def test_bad_node_listen_port(self):
        cases = [
            ("apisix:\n  node_listen: 70000\n", "apisix.node_listen"),
            ("apisix:\n  node_listen: [9080, x]\n", "apisix.node_listen[1]"),
            ("apisix:\n  node_listen:\n    - ip: 127.0.0.1\n      port: 0\n", "apisix.node_listen[0].port"),
            ("apisix:\n  node_listen:\n    - ip: 127.0.0.1\n      port: 9080\n    - ip: 127.0.0.1\n"
             "      port: \"x\"\n", "apisix.node_listen[1].port"),
        ]
        for text, key in cases:
            with self.subTest(key=key, text=text):
                self.assert_fails(ConfigDir(self, text), key)

    def test_bad_router_name(self):
        out = self.assert_fails(ConfigDir(self, "apisix:\n  router:\n    http: radixtree_magic\n"),
                                "apisix.router.http")
        self.assertIn("radixtree_magic", out)

    def test_bad_worker_processes(self):
        for value in ("many", "0", "-2", "1.5"):
            with self.subTest(value=value):
                self.assert_fails(ConfigDir(self, f"nginx_config:\n  worker_processes: {value}\n"),
                                  "nginx_config.worker_processes")

    def test_bad_role_and_config_provider(self):
        out = self.assert_fails(ConfigDir(self, "deployment:\n  role: overlord\n"), "deployment.role")
        self.assertIn("overlord", out)
        out = self.assert_fails(ConfigDir(self, DATA_PLANE_YAML.format(provider="zookeeper")),
                                "deployment.role_data_plane.config_provider")
        self.assertIn("zookeeper", out)

    def test_invalid_route_in_standalone_file(self):
        upstream = '    upstream:\n      nodes:\n        "127.0.0.1:1980": 1\n'
        cases = [
            ("bad-method", "    uri: /bad\n    methods: [FETCH]\n" + upstream, "FETCH"),
            ("no-uri", upstream, "matches none"),
            ("bad-vars", "    uri: /bad\n    vars: [[arg_a, '===', '1']]\n" + upstream, "invalid operator"),
            ("no-target", "    uri: /bad\n", "upstream"),
            ("bad-cidr", "    uri: /bad\n    remote_addrs: [10.0.0.0/33]\n" + upstream, "10.0.0.0/33"),
        ]
        for rid, body, reason in cases:
            with self.subTest(route=rid):
                text = ("routes:\n  - id: ok\n    uri: /ok\n" + upstream +
                        f"  - id: {rid}\n" + body + "#END\n")
                cfg = ConfigDir(self, DATA_PLANE_YAML.format(provider="yaml"), text)
                out = self.assert_fails(cfg, rid, reason)
                self.assertIn("route", out)
                self.assertNotIn("id=ok", out)

    def test_yaml_without_end_marker(self):
        cfg = ConfigDir(self, DATA_PLANE_YAML.format(provider="yaml"), GOOD_STANDALONE.replace("#END\n", ""))
        self.assert_fails(cfg, "#END", "apisix.yaml")

    def test_missing_standalone_file(self):
        cfg = ConfigDir(self, DATA_PLANE_YAML.format(provider="yaml"))
        self.assert_fails(cfg, "apisix.yaml")

    def test_invalid_json_standalone(self):
        cfg = ConfigDir(self, DATA_PLANE_YAML.format(provider="json"),
                        '{"routes": [{"id": "1", "uri": "/x",}', "apisix.json")
        out = self.assert_fails(cfg, "apisix.json")
        self.assertIn("JSON", out)

    def test_missing_env_var_without_default(self):
        cfg = ConfigDir(self, "apisix:\n  node_listen: ${{HF_E2E_SURELY_UNSET_VAR}}\n")
        self.assert_fails(cfg, "HF_E2E_SURELY_UNSET_VAR", env={})

    def test_env_substitution_uses_apisix_value_rules(self):
        # APISIX (apisix/cli/file.lua resolve_conf_var) substitutes inside the
        # parsed values: comments are not touched, and a substituted value that
        # reads as a number or a boolean gets that type even when quoted.
        env = {"HF_E2E_PORT": str(free_port()), "HF_E2E_FLAG": "true"}
        with self.subTest("placeholder in a comment"):
            rc, out = ConfigDir(self, "# node_listen may come from ${{HF_E2E_SURELY_UNSET_VAR}}\n"
                                      "apisix:\n  node_listen: 9080\n").check(env=env)
            self.assertEqual(rc, 0, out)
        with self.subTest("quoted placeholders"):
            rc, out = ConfigDir(self, "apisix:\n  node_listen:\n    - ip: 127.0.0.1\n"
                                      "      port: \"${{HF_E2E_PORT}}\"\n"
                                      "  delete_uri_tail_slash: \"${{HF_E2E_FLAG}}\"\n").check(env=env)
            self.assertEqual(rc, 0, out)

    def test_unknown_key_warns_but_passes(self):
        cfg = ConfigDir(self, "apisix:\n  node_listen: 9080\n  no_such_option: true\nmystery_section:\n  a: 1\n")
        rc, out = cfg.check()
        self.assertEqual(rc, 0, out)
        self.assertIn("apisix.no_such_option", out)
        self.assertIn("mystery_section", out)
        self.assertIn("warning", out)

    def test_apisix_keys_holdfast_does_not_implement_are_named(self):
        # #11 item 9: APISIX keys with no effect here are named, unless their
        # value asks for what Holdfast does anyway.
        cfg = ConfigDir(self, "apisix:\n  node_listen: 9080\n  enable_http2: true\n  enable_ipv6: true\n"
                              "  proxy_mode: http&stream\n  normalize_uri_like_servlet: true\n"
                              "  proxy_cache: {cache_ttl: 10s}\n  enable_reuseport: true\n"
                              "  show_upstream_status_in_response_header: false\n"
                              "nginx_config:\n  worker_shutdown_timeout: 240s\n  enable_cpu_affinity: false\n"
                              "discovery:\n  dns: {servers: ['127.0.0.1:53']}\next-plugin:\n  cmd: ['x']\n")
        rc, out = cfg.check()
        self.assertEqual(rc, 0, out)
        self.assertNotIn("apisix.enable_http2", out)  # HTTP/2 is implemented (#13)
        for key in ("apisix.enable_ipv6", "apisix.proxy_mode", "apisix.normalize_uri_like_servlet",
                    "apisix.proxy_cache", "nginx_config.worker_shutdown_timeout", "discovery", "ext-plugin"):
            self.assertIn(f"{key}: not supported (ignored)", out, key)
        for quiet in ("enable_reuseport", "show_upstream_status_in_response_header", "enable_cpu_affinity"):
            self.assertNotIn(quiet, out)
        # The same values APISIX's defaults give Holdfast's behaviour: silent.
        rc, out = ConfigDir(self, "apisix:\n  enable_http2: false\n  proxy_mode: http\n  enable_ipv6: false\n").check()
        self.assertEqual(rc, 0, out)
        self.assertNotIn("not supported", out)

    def test_unknown_key_in_holdfast_section_warns(self):
        # Holdfast owns the `holdfast:` section, so a typo there must not pass silently
        cfg = ConfigDir(self, "holdfast:\n  acces_log: /tmp/x.log\n  log_format: text\n")
        rc, out = cfg.check()
        self.assertEqual(rc, 0, out)
        self.assertIn("holdfast.acces_log", out)
        self.assertIn("warning", out)

    def test_ssl_settings(self):
        rc, out = ConfigDir(self, "apisix:\n  ssl:\n    listen: [{port: 9443, enable_http3: true}]\n").check()
        self.assertEqual(rc, 0, out)
        self.assertIn("apisix.ssl.listen[0].enable_http3", out)
        self.assert_fails(ConfigDir(self, "apisix:\n  ssl:\n    ssl_ciphers: NO-SUCH-CIPHER\n"),
                          "apisix.ssl.ssl_ciphers")
        self.assert_fails(ConfigDir(self, "apisix:\n  ssl:\n    ssl_protocols: TLSv1.4\n"),
                          "apisix.ssl.ssl_protocols")
        # With the listener off, its cipher list is not checked.
        rc, out = ConfigDir(self, "apisix:\n  ssl:\n    enable: false\n    ssl_ciphers: NO-SUCH-CIPHER\n").check()
        self.assertEqual(rc, 0, out)

    def test_bad_ssl_objects_in_standalone_file(self):
        d = tempfile.mkdtemp(prefix="holdfast-certs-")
        self.addCleanup(shutil.rmtree, d, True)

        def self_signed(name, alg):
            key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
            newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if alg == "ec" else ["-newkey", "rsa:2048"]
            subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", crt, "-days", "2",
                            "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name],
                           check=True, capture_output=True)
            with open(crt) as c, open(key) as k:
                return c.read(), k.read()

        good_cert, good_key = self_signed("good.test", "ec")
        other_cert, other_key = self_signed("other.test", "rsa")
        ssls = [{"id": "good", "snis": ["good.test"], "cert": good_cert, "key": good_key},
                {"id": "mismatch", "snis": ["m.test"], "cert": good_cert, "key": other_key},
                {"id": "garbage", "snis": ["g.test"], "cert": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
                 "key": other_key}]
        doc = {"routes": [{"id": "r", "uri": "/", "upstream": {"nodes": {"127.0.0.1:1980": 1}}}], "ssls": ssls}
        out = self.assert_fails(ConfigDir(self, DATA_PLANE_YAML.format(provider="json"), json.dumps(doc),
                                          "apisix.json"),
                                "ssl mismatch: key: the private key does not match the certificate",
                                "ssl garbage: cert: failed to parse the certificate")
        self.assertNotIn("ssl good", out)
        # Never key material.
        for key in (good_key, other_key):
            self.assertNotIn(key.splitlines()[1], out)
        doc["ssls"] = ssls[:1]
        rc, out = ConfigDir(self, DATA_PLANE_YAML.format(provider="json"), json.dumps(doc), "apisix.json").check()
        self.assertEqual(rc, 0, out)
        self.assertIn("1 routes, 0 upstreams, 0 consumers, 1 ssls", out)

    def test_node_listen_list_of_ports_is_valid(self):
        p1, p2 = free_port(), free_port()
        rc, out = ConfigDir(self, f"apisix:\n  node_listen: [{p1}, {p2}]\n").check()
        self.assertEqual(rc, 0, out)


class StartupTest(GatewayTest):
    def route_doc(self, up, uri="/hello", rid="r1", **kw):
        r = {"id": rid, "uri": uri, "upstream": {"nodes": {up.addr: 1}}}
        r.update(kw)
        return {"routes": [r]}

    def test_invalid_config_stops_startup_naming_the_key(self):
        cases = [
            ({"apisix": {"router": {"http": "bogus_router"}}}, "apisix.router.http"),
            ({"apisix": {"node_listen": [{"ip": "127.0.0.1", "port": 99999}]}}, "apisix.node_listen[0].port"),
            ({"nginx_config": {"worker_processes": "lots"}}, "nginx_config.worker_processes"),
            ({"holdfast": {"log_format": "xml"}}, "holdfast.log_format"),
        ]
        for cfg, key in cases:
            with self.subTest(key=key):
                gw = self.gateway(config=cfg, start=False)
                with self.assertRaises(RuntimeError):
                    gw.start()
                gw.proc.wait(5)
                self.assertNotEqual(gw.proc.returncode, 0)
                self.assertIn(key, gw.logs())

    def test_unknown_key_warns_and_starts(self):
        up = self.upstream()
        gw = self.gateway(self.route_doc(up), config={"apisix": {"no_such_option": True},
                                                      "mystery_section": {"a": 1}})
        self.assertEqual(gw.get("/hello").status, 200)
        logs = gw.logs()
        warn_lines = [l for l in logs.splitlines() if "apisix.no_such_option" in l]
        self.assertTrue(warn_lines, logs)
        self.assertIn("warn", warn_lines[0])
        self.assertIn("mystery_section", logs)

    def test_env_substitution_in_config_yaml(self):
        up = self.upstream()
        port = free_port()
        text = f"""\
apisix:
  node_listen:
    - ip: ${{{{HF_E2E_IP}}}}
      port: ${{{{HF_E2E_PORT}}}}
  router:
    http: ${{{{HF_E2E_ROUTER_UNSET:=radixtree_uri_with_parameter}}}}
  delete_uri_tail_slash: ${{{{HF_E2E_TAIL}}}}
nginx_config:
  worker_processes: ${{{{HF_E2E_WORKERS_UNSET:=1}}}}
plugin_attr:  # not the default 9091: another process may hold it
  prometheus: {{export_addr: {{ip: 127.0.0.1, port: {free_port()}}}}}
deployment:
  role: data_plane
  role_data_plane:
    config_provider: yaml
"""
        env = {"HF_E2E_IP": "127.0.0.1", "HF_E2E_PORT": str(port), "HF_E2E_TAIL": "true"}
        gw = self.gateway(config={}, start=False)
        gw.env = dict({k: v for k, v in os.environ.items() if not k.startswith("HF_E2E_")}, **env)
        with open(gw.config_path, "w") as f:
            f.write(text)
        gw.port = port
        gw.write(self.route_doc(up, uri="/user/:id"))
        gw.start()
        r = gw.get("/user/42")  # parameter router came from the default
        self.assertEqual(r.status, 200, r)
        self.assertEqual(gw.get("/user/42/").status, 200)  # delete_uri_tail_slash: true from the environment

    def test_env_default_used_when_variable_is_unset(self):
        up = self.upstream()
        port = free_port()
        text = f"""\
apisix:
  node_listen:
    - ip: 127.0.0.1
      port: ${{{{HF_E2E_PORT_UNSET:={port}}}}}
plugin_attr:  # not the default 9091: another process may hold it
  prometheus: {{export_addr: {{ip: 127.0.0.1, port: {free_port()}}}}}
deployment:
  role: data_plane
  role_data_plane:
    config_provider: yaml
"""
        gw = self.gateway(config={}, start=False)
        gw.env = {k: v for k, v in os.environ.items() if not k.startswith("HF_E2E_")}
        with open(gw.config_path, "w") as f:
            f.write(text)
        gw.port = port
        gw.write(self.route_doc(up))
        gw.start()
        self.assertEqual(gw.get("/hello").status, 200)

    def test_env_substitution_in_apisix_yaml(self):
        up = self.upstream("envup")
        text = """\
routes:
  - id: env-route
    uri: ${{HF_E2E_URI}}
    plugins:
      proxy-rewrite:
        headers:
          set:
            X-From-Env: "${{HF_E2E_HDR_UNSET:=from-default}}"
    upstream:
      nodes:
        "${{HF_E2E_NODE}}": 1
#END
"""
        gw = self.gateway(provider="yaml", start=False,
                          extra_env={"HF_E2E_URI": "/from-env", "HF_E2E_NODE": up.addr})
        gw.env.pop("HF_E2E_HDR_UNSET", None)
        gw.write_raw(text)
        gw.start()
        r = gw.get("/from-env")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["server"], "envup")
        self.assertEqual(r.json()["headers"]["x-from-env"], "from-default")
        self.assertEqual(gw.get("/${{HF_E2E_URI}}").status, 404)

    def test_env_substitution_in_apisix_json(self):
        up = self.upstream("envjson")
        doc = {"routes": [{"id": "j", "uri": "${{HF_E2E_URI}}",
                           "upstream": {"nodes": [{"host": "127.0.0.1", "port": up.port, "weight": 1}]},
                           "plugins": {"proxy-rewrite": {"headers": {"set": {"X-From-Env": "${{HF_E2E_HDR}}"}}}}}]}
        gw = self.gateway(doc, provider="json",
                          extra_env={"HF_E2E_URI": "/json-env", "HF_E2E_HDR": "json \"quoted\" value"})
        r = gw.get("/json-env")
        self.assertEqual(r.status, 200, r)
        # substituted after parsing: quotes in the value cannot break the JSON
        self.assertEqual(r.json()["headers"]["x-from-env"], 'json "quoted" value')

    def test_node_listen_several_addresses(self):
        up = self.upstream()
        gw = self.gateway(self.route_doc(up), start=False)
        second = free_port()
        gw.config["apisix"]["node_listen"].append({"ip": "127.0.0.1", "port": second})
        with open(gw.config_path, "w") as f:
            f.write(json.dumps(gw.config))
        gw.start()
        for port in (gw.port, second):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/hello")
            r = conn.getresponse()
            self.assertEqual(r.status, 200, port)
            self.assertEqual(json.loads(r.read())["path"], "/hello")
            conn.close()
        self.assertIn(f"listening on 127.0.0.1:{second}", gw.logs())

    def test_worker_processes_two(self):
        up = self.upstream()
        gw = self.gateway(self.route_doc(up, uri="/*"), workers=2)
        gw.wait_log("2 worker(s)")
        results = []
        lock = threading.Lock()

        def client(i):
            for j in range(10):
                try:
                    r = gw.get(f"/w/{i}/{j}")
                    ok = r.status == 200 and r.json()["path"] == f"/w/{i}/{j}"
                except Exception as e:  # noqa: BLE001 - any failure counts
                    ok = repr(e)
                with lock:
                    results.append(ok)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results), 60)
        self.assertEqual([r for r in results if r is not True], [])

    def test_worker_processes_auto(self):
        up = self.upstream()
        gw = self.gateway(self.route_doc(up), workers="auto")
        gw.wait_log(f"{os.cpu_count()} worker(s)")
        self.assertEqual(gw.get("/hello").status, 200)

    def test_error_log_level_warn_hides_info(self):
        up = self.upstream()
        gw = self.gateway(self.route_doc(up), config={"nginx_config": {"error_log_level": "warn"},
                                                      "apisix": {"no_such_option": 1}})
        self.assertEqual(gw.get("/hello").status, 200)
        gw.write({"routes": [{"id": "bad", "uri": "/x", "methods": ["FETCH"], "upstream": {"nodes": {up.addr: 1}}}]})
        gw.wait_log("skipping invalid route id=bad", timeout=3)
        self.assertEqual(gw.stop(), 0)
        logs = gw.logs()
        self.assertIn("no_such_option", logs)  # warnings still shown
        self.assertNotIn("[info]", logs)
        self.assertNotIn("configuration applied", logs)
        self.assertNotIn("started", logs)

    def test_json_log_format(self):
        up = self.upstream()
        gw = self.gateway(self.route_doc(up), config={"holdfast": {"log_format": "json"}})
        self.assertEqual(gw.get("/hello").status, 200)
        gw.reload(self.route_doc(up, uri="/hello2"))
        self.assertEqual(gw.stop(), 0)
        lines = [l for l in gw.logs().splitlines() if l.strip()]
        self.assertGreaterEqual(len(lines), 3, lines)
        objs = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                self.fail(f"log line is not JSON: {line!r}")
            self.assertIsInstance(obj, dict, line)
            objs.append(obj)
        for o in objs:
            self.assertIn("level", o)
            self.assertIn("time", o)
        text = " ".join(json.dumps(o) for o in objs)
        self.assertIn("started", text)
        self.assertIn("configuration applied", text)

    def test_access_log_file(self):
        up = self.upstream()
        d = tempfile.mkdtemp(prefix="holdfast-alog-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "access.log")
        gw = self.gateway(self.route_doc(up), config={"holdfast": {"access_log": path}})
        paths = ["/hello?n=1", "/hello?n=2", "/hello?n=3", "/missing"]
        for p in paths:
            gw.get(p, headers={"User-Agent": "e2e-agent"})
        deadline = time.time() + 2.5  # flushed about every second
        lines = []
        while time.time() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    lines = [l for l in f.read().splitlines() if l.strip()]
                if len(lines) >= len(paths):
                    break
            time.sleep(0.1)
        self.assertEqual(len(lines), len(paths), lines)
        for p, line in zip(paths, lines):
            self.assertIn(p, line)
        self.assertRegex(lines[0], r"\b200\b")
        self.assertRegex(lines[3], r"\b404\b")
        self.assertIn("e2e-agent", lines[0])
        # nothing of the access log leaks into the error log
        self.assertNotIn("/hello?n=2", gw.logs())


if __name__ == "__main__":
    unittest.main()
