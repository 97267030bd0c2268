"""Every built-in plugin through the real binary and real sockets: key-auth
(with consumers), limit-count, proxy-rewrite, response-rewrite, cors,
ip-restriction, request-id, mocking, fault-injection, redirect; plugin
ordering and `_meta`; global rules; plugin_config/service merge; resources
skipped at load time.

Expected behaviour is APISIX 3.x (shared/docs/APISIX_COMPAT.md §3.6 and §4).
"""
import base64
import http.client
import json
import re
import threading
import time
import unittest

from harness import GatewayTest

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def route(rid, uri, up, plugins=None, **kw):
    r = {"id": rid, "uri": uri}
    if up is not None:
        r["upstream"] = {"nodes": {up.addr: 1}}
    if plugins is not None:
        r["plugins"] = plugins
    r.update(kw)
    return r


class Resp:
    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.header_list = [(k.lower(), v) for k, v in headers]
        self.headers = dict(self.header_list)
        self.body = body
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.body)

    def values(self, name):
        return [v for k, v in self.header_list if k == name.lower()]

    def upstream_values(self, name):
        """Values of a request header as the upstream received it (duplicates kept)."""
        return [v for k, v in self.json()["header_list"] if k == name.lower()]

    def __repr__(self):
        return f"<Resp {self.status} {self.header_list} {self.body[:300]!r}>"


def call(gw, method, path, headers=None, body=None, source=None, timeout=10):
    """One request on a new connection, optionally from another loopback address."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    t0 = time.time()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, r.getheaders(), data, time.time() - t0)
    finally:
        conn.close()


def get(gw, path, **kw):
    return call(gw, "GET", path, **kw)


class PluginTestCase(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("up1")

    def assert_from_upstream(self, r):
        self.assertEqual(r.headers.get("x-upstream"), "up1", r)

    def assert_not_from_upstream(self, r):
        self.assertNotIn("x-upstream", r.headers, r)

    def assert_log(self, gw, *parts, timeout=3.0):
        """Some log line contains every one of `parts`."""
        deadline = time.time() + timeout
        while True:
            for line in gw.logs().splitlines():
                if all(p in line for p in parts):
                    return line
            if time.time() > deadline:
                self.fail(f"no log line with {parts}; log:\n{gw.logs()[-3000:]}")
            time.sleep(0.05)


# --------------------------------------------------------------------------
# key-auth


class KeyAuthTest(PluginTestCase):
    CONSUMERS = [
        {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}},
        {"username": "rose", "labels": {"custom_id": "rose-123"}, "plugins": {"key-auth": {"key": "rose-key"}}},
    ]

    def gw(self, conf=None, consumers=None, extra_routes=()):
        return self.gateway({
            "routes": [route("ka", "/ka*", self.up, {"key-auth": conf or {}}), *extra_routes],
            "consumers": consumers if consumers is not None else self.CONSUMERS,
        })

    def test_missing_key_is_401_with_realm(self):
        gw = self.gw()
        for headers in ({},):
            r = get(gw, "/ka", headers=headers)
            self.assertEqual(r.status, 401, r)
            self.assertEqual(r.json(), {"message": "Missing API key in request"})
            self.assertEqual(r.headers.get("www-authenticate"), 'apikey realm="key"')
            self.assert_not_from_upstream(r)

    def test_wrong_key_is_401_invalid(self):
        gw = self.gw()
        for r in (get(gw, "/ka", headers={"apikey": "nope"}), get(gw, "/ka?apikey=nope")):
            self.assertEqual(r.status, 401, r)
            self.assertEqual(r.json(), {"message": "Invalid API key in request"})
            self.assertEqual(r.headers.get("www-authenticate"), 'apikey realm="key"')
            self.assert_not_from_upstream(r)

    def test_header_key_identifies_consumer_upstream(self):
        gw = self.gw()
        r = get(gw, "/ka", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 200, r)
        self.assert_from_upstream(r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
        self.assertEqual(r.upstream_values("apikey"), ["jack-key"])  # hide_credentials defaults to false
        self.assertEqual(r.upstream_values("x-consumer-custom-id"), [])
        r = get(gw, "/ka", headers={"apikey": "rose-key"})
        self.assertEqual(r.upstream_values("x-consumer-username"), ["rose"])
        self.assertEqual(r.upstream_values("x-consumer-custom-id"), ["rose-123"])

    def test_query_key(self):
        gw = self.gw()
        r = get(gw, "/ka?x=1&apikey=rose-key")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["rose"])
        self.assertEqual(r.json()["path"], "/ka?x=1&apikey=rose-key")

    def test_header_is_checked_before_query(self):
        gw = self.gw()
        r = get(gw, "/ka?apikey=jack-key", headers={"apikey": "wrong"})
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json(), {"message": "Invalid API key in request"})

    def test_client_cannot_forge_consumer_header(self):
        gw = self.gw()
        r = get(gw, "/ka", headers={"apikey": "jack-key", "X-Consumer-Username": "admin"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])

    def test_custom_header_and_query_names(self):
        gw = self.gw({"header": "X-Api-Token", "query": "token"})
        self.assertEqual(get(gw, "/ka", headers={"apikey": "jack-key"}).status, 401)
        self.assertEqual(get(gw, "/ka?apikey=jack-key").status, 401)
        r = get(gw, "/ka", headers={"X-Api-Token": "jack-key"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
        r = get(gw, "/ka?token=rose-key")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["rose"])

    def test_hide_credentials_removes_header_and_query_arg(self):
        gw = self.gw({"hide_credentials": True})
        r = get(gw, "/ka", headers={"apikey": "jack-key", "X-Other": "kept"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("apikey"), [])
        self.assertEqual(r.upstream_values("x-other"), ["kept"])
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
        r = get(gw, "/ka/p?a=1&apikey=jack-key&b=2")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["path"], "/ka/p?a=1&b=2")
        r = get(gw, "/ka/p?apikey=jack-key")
        self.assertEqual(r.json()["path"], "/ka/p")

    def test_consumer_without_plugins_key_is_unknown(self):
        gw = self.gw(consumers=[{"username": "nokey"}])
        r = get(gw, "/ka", headers={"apikey": "nokey"})
        self.assertEqual(r.status, 401)

    def test_credential_resource_identifies_parent_consumer(self):
        # Standalone shape of a credential (APISIX 3.7+): an item of `consumers`
        # whose id is "<username>/credentials/<credential id>".
        gw = self.gw(consumers=[
            {"username": "jack", "labels": {"custom_id": "j-1"}},
            {"id": "jack/credentials/cred-1", "plugins": {"key-auth": {"key": "cred-key"}}},
        ])
        r = get(gw, "/ka", headers={"apikey": "cred-key"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
        self.assertEqual(r.upstream_values("x-credential-identifier"), ["cred-1"])

    def test_consumer_plugin_overrides_route_plugin_in_rewrite(self):
        consumers = [
            {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"},
                                             "proxy-rewrite": {"headers": {"set": {"X-Who": "consumer"}}}}},
            {"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}},
        ]
        gw = self.gateway({
            "routes": [route("ka", "/ka", self.up, {"key-auth": {},
                                                    "proxy-rewrite": {"headers": {"set": {"X-Who": "route"}}}})],
            "consumers": consumers,
        })
        r = get(gw, "/ka", headers={"apikey": "rose-key"})
        self.assertEqual(r.upstream_values("x-who"), ["route"], r)
        r = get(gw, "/ka", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 200, r)
        # Consumer > Route: one header, the consumer's value.
        self.assertEqual(r.upstream_values("x-who"), ["consumer"], r)

    def test_consumer_plugin_runs_in_header_filter(self):
        # Consumer plugins join the route's set for every later phase,
        # response-rewrite (header_filter) included.
        consumers = [
            {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"},
                                             "response-rewrite": {"headers": {"set": {"X-Resp": "consumer"}}}}},
            {"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}},
        ]
        gw = self.gateway({
            "routes": [route("ka", "/ka", self.up, {"key-auth": {},
                                                    "response-rewrite": {"headers": {"set": {"X-Resp": "route"}}}})],
            "consumers": consumers,
        })
        self.assertEqual(get(gw, "/ka", headers={"apikey": "rose-key"}).values("x-resp"), ["route"])
        r = get(gw, "/ka", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.values("x-resp"), ["consumer"], r)

    def test_anonymous_consumer(self):
        gw = self.gw({"anonymous_consumer": "anon"},
                     consumers=self.CONSUMERS + [{"username": "anon"}])
        r = get(gw, "/ka")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["anon"])
        r = get(gw, "/ka", headers={"apikey": "jack-key"})
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])

    def test_consumer_plugin_overrides_route_plugin_in_access(self):
        consumers = [
            {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"},
                                             "limit-count": {"count": 1, "time_window": 60}}},
            {"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}},
        ]
        gw = self.gateway({
            "routes": [route("ka", "/ka", self.up, {"key-auth": {},
                                                    "limit-count": {"count": 3, "time_window": 60,
                                                                    "key": "consumer_name"}})],
            "consumers": consumers,
        })
        jack = [get(gw, "/ka", headers={"apikey": "jack-key"}) for _ in range(3)]
        self.assertEqual([r.status for r in jack], [200, 503, 503])
        self.assertEqual(jack[0].headers.get("x-ratelimit-limit"), "1")
        rose = [get(gw, "/ka", headers={"apikey": "rose-key"}) for _ in range(4)]
        self.assertEqual([r.status for r in rose], [200, 200, 200, 503])
        self.assertEqual(rose[0].headers.get("x-ratelimit-limit"), "3")


# --------------------------------------------------------------------------
# limit-count


class LimitCountTest(PluginTestCase):
    def test_count_headers_and_default_rejection(self):
        gw = self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": {"count": 2, "time_window": 60}})]})
        r1, r2, r3 = (get(gw, "/lc") for _ in range(3))
        self.assertEqual((r1.status, r2.status, r3.status), (200, 200, 503))
        self.assert_from_upstream(r1)
        self.assertEqual(r1.headers.get("x-ratelimit-limit"), "2")
        self.assertEqual(r1.headers.get("x-ratelimit-remaining"), "1")
        self.assertEqual(r2.headers.get("x-ratelimit-remaining"), "0")
        for r in (r1, r2, r3):
            reset = float(r.headers["x-ratelimit-reset"])  # hundredths, as APISIX
            self.assertTrue(0 < reset <= 60, r)
        # Rejection: 503 without a body, not from the upstream.
        self.assertEqual(r3.body, b"")
        self.assert_not_from_upstream(r3)
        self.assertEqual(r3.headers.get("x-ratelimit-remaining"), "0")

    def test_rejected_code_and_msg(self):
        gw = self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": {
            "count": 1, "time_window": 60, "rejected_code": 429, "rejected_msg": "slow down"}})]})
        self.assertEqual(get(gw, "/lc").status, 200)
        r = get(gw, "/lc")
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json(), {"error_msg": "slow down"})

    def test_window_resets(self):
        gw = self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": {"count": 1, "time_window": 1}})]})
        self.assertEqual(get(gw, "/lc").status, 200)
        self.assertEqual(get(gw, "/lc").status, 503)
        time.sleep(2.1)
        self.assertEqual(get(gw, "/lc").status, 200)

    def test_show_limit_quota_header_false(self):
        gw = self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": {
            "count": 1, "time_window": 60, "show_limit_quota_header": False}})]})
        r1, r2 = get(gw, "/lc"), get(gw, "/lc")
        self.assertEqual((r1.status, r2.status), (200, 503))
        for r in (r1, r2):
            self.assertNotIn("x-ratelimit-limit", r.headers)
            self.assertNotIn("x-ratelimit-remaining", r.headers)

    def test_key_remote_addr_counts_each_client_separately(self):
        gw = self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": {"count": 2, "time_window": 60}})]})
        self.assertEqual([get(gw, "/lc", source="127.0.0.1").status for _ in range(3)], [200, 200, 503])
        # Another client address has its own counter.
        self.assertEqual([get(gw, "/lc", source="127.0.0.2").status for _ in range(3)], [200, 200, 503])

    def test_constant_key_shares_one_counter(self):
        gw = self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": {
            "count": 2, "time_window": 60, "key_type": "constant", "key": "all"}})]})
        self.assertEqual(get(gw, "/lc", source="127.0.0.1").status, 200)
        self.assertEqual(get(gw, "/lc", source="127.0.0.2").status, 200)
        self.assertEqual(get(gw, "/lc", source="127.0.0.3").status, 503)

    def test_header_var_key(self):
        gw = self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": {
            "count": 1, "time_window": 60, "key": "http_x_user"}})]})
        self.assertEqual(get(gw, "/lc", headers={"X-User": "a"}).status, 200)
        self.assertEqual(get(gw, "/lc", headers={"X-User": "a"}).status, 503)
        self.assertEqual(get(gw, "/lc", headers={"X-User": "b"}).status, 200)

    def test_routes_count_separately_unless_grouped(self):
        lc = {"count": 1, "time_window": 60}
        grouped = {"count": 1, "time_window": 60, "group": "shared"}
        gw = self.gateway({"routes": [
            route("a", "/a", self.up, {"limit-count": lc}),
            route("b", "/b", self.up, {"limit-count": dict(lc)}),
            route("c", "/c", self.up, {"limit-count": grouped}),
            route("d", "/d", self.up, {"limit-count": dict(grouped)}),
        ]})
        self.assertEqual(get(gw, "/a").status, 200)
        self.assertEqual(get(gw, "/b").status, 200)  # its own counter
        self.assertEqual(get(gw, "/a").status, 503)
        self.assertEqual(get(gw, "/c").status, 200)
        self.assertEqual(get(gw, "/d").status, 503)  # same group, same counter

    def test_counter_shared_by_two_workers(self):
        gw = self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": {"count": 5, "time_window": 60}})]},
                          workers=2)
        statuses = [get(gw, "/lc").status for _ in range(24)]  # a new connection each time
        self.assertEqual(statuses.count(200), 5, statuses)
        self.assertEqual(statuses.count(503), 19, statuses)
        self.assertEqual(statuses[:5], [200] * 5)

    def test_concurrent_requests_never_exceed_count(self):
        gw = self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": {"count": 10, "time_window": 60}})]},
                          workers=2)
        results = []
        lock = threading.Lock()

        def worker():
            for _ in range(6):
                s = get(gw, "/lc").status
                with lock:
                    results.append(s)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results.count(200), 10, results)
        self.assertEqual(len(results), 36)


# --------------------------------------------------------------------------
# proxy-rewrite


class ProxyRewriteTest(PluginTestCase):
    def test_uri_with_vars_keeps_query(self):
        gw = self.gateway({"routes": [route("pr", "/pr", self.up, {"proxy-rewrite": {"uri": "/new/$arg_id/x"}})]})
        r = get(gw, "/pr?id=7&z=9")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["path"], "/new/7/x?id=7&z=9")
        r = get(gw, "/pr")
        self.assertEqual(r.json()["path"], "/new//x")

    def test_regex_uri_with_captures(self):
        gw = self.gateway({"routes": [route("pr", "/api/*", self.up, {"proxy-rewrite": {
            "regex_uri": ["^/api/(\\w+)/(\\w+)$", "/v2/$2/$1", "^/api/(.*)", "/fallback/$1"]}})]})
        r = get(gw, "/api/users/42?q=1")
        self.assertEqual(r.json()["path"], "/v2/42/users?q=1")
        # first pattern does not match: the second one does
        r = get(gw, "/api/a/b/c")
        self.assertEqual(r.json()["path"], "/fallback/a/b/c")

    def test_regex_uri_no_match_keeps_uri(self):
        gw = self.gateway({"routes": [route("pr", "/keep/*", self.up, {"proxy-rewrite": {
            "regex_uri": ["^/other/(.*)", "/x/$1"]}})]})
        self.assertEqual(get(gw, "/keep/me?a=b").json()["path"], "/keep/me?a=b")

    def test_method(self):
        gw = self.gateway({"routes": [route("pr", "/m", self.up, {"proxy-rewrite": {"method": "POST"}})]})
        r = get(gw, "/m")
        self.assertEqual(r.json()["method"], "POST")

    def test_host(self):
        gw = self.gateway({"routes": [route("pr", "/h", self.up, {"proxy-rewrite": {"host": "rewritten.example"}})]})
        r = get(gw, "/h", headers={"Host": "client.example"})
        self.assertEqual(r.upstream_values("host"), ["rewritten.example"])
        self.assertEqual(r.upstream_values("x-forwarded-host"), ["client.example"])

    def test_headers_add_set_remove(self):
        gw = self.gateway({"routes": [route("pr", "/hd", self.up, {"proxy-rewrite": {"headers": {
            "add": {"X-Add": "added"},
            "set": {"X-Set": "new", "X-Path": "$uri", "X-Num": 5},
            "remove": ["X-Remove", "User-Agent"],
        }}})]})
        r = get(gw, "/hd?a=1", headers={"X-Set": "old", "X-Add": "client", "X-Remove": "bye",
                                        "User-Agent": "ua", "X-Other": "o"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-set"), ["new"])
        self.assertEqual(sorted(r.upstream_values("x-add")), ["added", "client"])
        self.assertEqual(r.upstream_values("x-remove"), [])
        self.assertEqual(r.upstream_values("user-agent"), [])
        self.assertEqual(r.upstream_values("x-path"), ["/hd"])
        self.assertEqual(r.upstream_values("x-num"), ["5"])
        self.assertEqual(r.upstream_values("x-other"), ["o"])
        self.assertEqual(r.json()["path"], "/hd?a=1")

    def test_headers_legacy_map_sets(self):
        gw = self.gateway({"routes": [route("pr", "/lg", self.up, {"proxy-rewrite": {"headers": {
            "X-Legacy": "yes", "X-Client": "$remote_addr"}}})]})
        r = get(gw, "/lg", headers={"X-Legacy": "client"})
        self.assertEqual(r.upstream_values("x-legacy"), ["yes"])
        self.assertEqual(r.upstream_values("x-client"), ["127.0.0.1"])

    def test_invalid_uri_is_rejected_at_load(self):
        gw = self.gateway({"routes": [route("bad-pr-uri", "/x", self.up, {"proxy-rewrite": {"uri": "no-slash"}}),
                                      route("good", "/good", self.up)]})
        self.assertEqual(get(gw, "/x").status, 404)
        self.assertEqual(get(gw, "/good").status, 200)
        self.assert_log(gw, "bad-pr-uri", "proxy-rewrite")


class ProxyRewriteHeadersTest(PluginTestCase):
    """headers as APISIX's proxy-rewrite applies them: add, then set, then
    remove, each as ngx.req.add_header / set_header / clear_header."""

    def test_set_wins_over_add_on_the_same_header(self):
        gw = self.gateway({"routes": [route("pr", "/sa", self.up, {"proxy-rewrite": {"headers": {
            "add": {"X-Both": "added", "X-Only-Add": "a"}, "set": {"X-Both": "set"}}}})]})
        r = get(gw, "/sa", headers={"X-Both": "client", "X-Only-Add": "client"})
        self.assertEqual(r.upstream_values("x-both"), ["set"])
        self.assertEqual(r.upstream_values("x-only-add"), ["client", "a"])

    def test_empty_set_value_removes_the_header(self):
        # t/plugin/proxy-rewrite.t TEST 19-20 (flat map) and TEST 38-39 (a
        # variable that does not exist resolves to "", which removes too).
        gw = self.gateway({"routes": [
            route("flat", "/flat", self.up, {"proxy-rewrite": {"headers": {"X-Api-Engine": "APISIX", "X-Api-Test": ""}}}),
            route("set", "/set", self.up, {"proxy-rewrite": {"headers": {"set": {"X-Gone": "", "X-Var": "$helle"}}}}),
        ]})
        r = get(gw, "/flat", headers={"X-Api-Test": "foo", "X-Api-Engine": "bar"})
        self.assertEqual(r.upstream_values("x-api-test"), [])
        self.assertEqual(r.upstream_values("x-api-engine"), ["APISIX"])
        r = get(gw, "/set", headers={"X-Gone": "client", "X-Var": "client"})
        self.assertEqual(r.upstream_values("x-gone"), [])
        self.assertEqual(r.upstream_values("x-var"), [])

    def test_array_values_send_several_lines(self):
        # t/plugin/proxy-rewrite.t TEST 58-61: set replaces the client's header
        # with one line per element, add appends them.
        gw = self.gateway({"routes": [
            route("s", "/s", self.up, {"proxy-rewrite": {"headers": {"set": {"x-multi": ["val1", "val2"]}}}}),
            route("a", "/a", self.up, {"proxy-rewrite": {"headers": {"add": {"x-multi": ["val1", 2]}}}}),
        ]})
        self.assertEqual(get(gw, "/s", headers={"x-multi": "origin"}).upstream_values("x-multi"), ["val1", "val2"])
        self.assertEqual(get(gw, "/a", headers={"x-multi": "origin"}).upstream_values("x-multi"),
                         ["origin", "val1", "2"])

    def test_array_elements_take_captures_and_variables(self):
        # t/plugin/proxy-rewrite.t TEST 62-65: $1 is regex_uri's capture.
        gw = self.gateway({"routes": [route(op, f"/{op}/*", self.up, {"proxy-rewrite": {
            "regex_uri": [f"^/{op}/(.*)", "/multi"],
            "headers": {op: {"x-multi": ["cap-$1", "$http_x_src", "${1}!"]}}}}) for op in ("set", "add")]})
        for op in ("set", "add"):
            with self.subTest(op=op):
                r = get(gw, f"/{op}/echo", headers={"x-src": "from-src"})
                self.assertEqual(r.json()["path"], "/multi")
                self.assertEqual(r.upstream_values("x-multi"), ["cap-echo", "from-src", "echo!"])

    def test_arrays_are_refused_where_apisix_refuses_them(self):
        gw = self.gateway({"routes": [
            route("flat-array", "/f", self.up, {"proxy-rewrite": {"headers": {"X-A": ["a", "b"]}}}),
            route("empty-array", "/e", self.up, {"proxy-rewrite": {"headers": {"set": {"X-A": []}}}}),
            route("good", "/good", self.up)]})
        self.assertEqual(get(gw, "/f").status, 404)
        self.assertEqual(get(gw, "/e").status, 404)
        self.assertEqual(get(gw, "/good").status, 200)
        self.assert_log(gw, "flat-array", "proxy-rewrite")
        self.assert_log(gw, "empty-array", "proxy-rewrite")


class ProxyRewriteForwardedTest(PluginTestCase):
    """APISIX puts X-Forwarded-Proto/Host/Port into the request before any
    plugin runs and forwards the request as the plugins leave it; X-Real-IP
    and X-Forwarded-For come from proxy_set_header ($remote_addr and
    $proxy_add_x_forwarded_for, which reads the edited X-Forwarded-For)."""

    def test_set_replaces_the_forwarded_headers(self):
        gw = self.gateway({"routes": [route("pr", "/fw", self.up, {"proxy-rewrite": {"headers": {"set": {
            "X-Forwarded-Host": "public.example", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443",
            "X-Forwarded-For": "10.0.0.1", "X-Real-IP": "10.0.0.2"}}}})]})
        r = get(gw, "/fw", headers={"Host": "client.example", "X-Forwarded-For": "192.0.2.9"})
        self.assertEqual(r.upstream_values("x-forwarded-host"), ["public.example"])
        self.assertEqual(r.upstream_values("x-forwarded-proto"), ["https"])
        self.assertEqual(r.upstream_values("x-forwarded-port"), ["443"])
        self.assertEqual(r.upstream_values("x-forwarded-for"), ["10.0.0.1, 127.0.0.1"])
        self.assertEqual(r.upstream_values("x-real-ip"), ["127.0.0.1"])

    def test_remove_drops_them(self):
        gw = self.gateway({"routes": [route("pr", "/fw", self.up, {"proxy-rewrite": {"headers": {"remove": [
            "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-For", "X-Real-IP"]}}})]})
        r = get(gw, "/fw", headers={"Host": "client.example", "X-Forwarded-For": "192.0.2.9",
                                    "X-Forwarded-Host": "spoofed.example"})
        self.assertEqual(r.upstream_values("x-forwarded-host"), [])
        self.assertEqual(r.upstream_values("x-forwarded-proto"), [])
        self.assertEqual(r.upstream_values("x-forwarded-port"), [])
        self.assertEqual(r.upstream_values("x-forwarded-for"), ["127.0.0.1"])
        self.assertEqual(r.upstream_values("x-real-ip"), ["127.0.0.1"])

    def test_add_joins_them(self):
        gw = self.gateway({"routes": [route("pr", "/fw", self.up, {"proxy-rewrite": {"headers": {"add": {
            "X-Forwarded-Host": "extra.example", "X-Forwarded-For": "10.0.0.1"}}}})]})
        r = get(gw, "/fw", headers={"Host": "client.example:8080", "X-Forwarded-For": "192.0.2.9"})
        self.assertEqual(r.upstream_values("x-forwarded-host"), ["client.example:8080", "extra.example"])
        self.assertEqual(r.upstream_values("x-forwarded-for"), ["192.0.2.9, 10.0.0.1, 127.0.0.1"])


# --------------------------------------------------------------------------
# response-rewrite


class ResponseRewriteTest(PluginTestCase):
    def test_status_and_body(self):
        gw = self.gateway({"routes": [route("rr", "/rr", self.up, {"response-rewrite": {
            "status_code": 201, "body": "{\"ok\":true}"}})]})
        r = get(gw, "/rr")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.body, b'{"ok":true}')
        # nginx sends a replaced body chunked (t/plugin/response-rewrite.t TEST 7).
        self.assertEqual(r.headers.get("transfer-encoding"), "chunked")
        self.assertNotIn("content-length", r.headers)
        self.assert_from_upstream(r)
        # HEAD gets the headers but no body
        h = call(gw, "HEAD", "/rr")
        self.assertEqual(h.status, 201)
        self.assertEqual(h.body, b"")

    def test_body_base64(self):
        gw = self.gateway({"routes": [route("rr", "/rr", self.up, {"response-rewrite": {
            "body": base64.b64encode(b"hello\x00world").decode(), "body_base64": True}})]})
        r = get(gw, "/rr")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"hello\x00world")

    def test_headers_set_add_remove(self):
        gw = self.gateway({"routes": [route("rr", "/rr", self.up, {"response-rewrite": {"headers": {
            "set": {"X-Upstream": "replaced", "X-Path": "$uri"},
            "add": ["X-Added: a1"],  # APISIX's schema: "Name: value" strings
            "remove": ["Content-Type"],
        }}})]})
        r = get(gw, "/rr")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.values("x-upstream"), ["replaced"])
        self.assertEqual(r.values("x-added"), ["a1"])
        self.assertEqual(r.values("x-path"), ["/rr"])
        self.assertEqual(r.values("content-type"), [])
        self.assertEqual(r.json()["server"], "up1")  # body untouched

    def test_headers_legacy_map(self):
        gw = self.gateway({"routes": [route("rr", "/rr", self.up, {"response-rewrite": {"headers": {
            "X-Legacy": "yes"}}})]})
        self.assertEqual(get(gw, "/rr").values("x-legacy"), ["yes"])

    def test_vars_condition_on_request(self):
        gw = self.gateway({"routes": [route("rr", "/rr", self.up, {"response-rewrite": {
            "body": "rewritten", "vars": [["arg_rewrite", "==", "1"]]}})]})
        self.assertEqual(get(gw, "/rr?rewrite=1").body, b"rewritten")
        r = get(gw, "/rr?rewrite=0")
        self.assertEqual(r.json()["server"], "up1")

    def test_vars_condition_on_upstream_status(self):
        # The documented APISIX use: rewrite only some upstream statuses.
        gw = self.gateway({"routes": [route("rr", "/status/*", self.up, {"response-rewrite": {
            "status_code": 200, "body": "custom not found", "vars": [["status", "==", 404]]}})]})
        r = get(gw, "/status/404")
        self.assertEqual((r.status, r.body), (200, b"custom not found"), r)
        r = get(gw, "/status/201")
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json()["server"], "up1")

    def test_applies_to_plugin_generated_response(self):
        gw = self.gateway({"routes": [route("rr", "/rr", None, {
            "mocking": {"response_example": "mock", "response_status": 200},
            "response-rewrite": {"status_code": 202, "headers": {"set": {"X-RR": "1"}}}})]})
        r = get(gw, "/rr")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.body, b"mock")
        self.assertEqual(r.values("x-rr"), ["1"])

    def test_filters_rewrite_the_body(self):
        gw = self.gateway({"routes": [route("rr-filters", "/rr", self.up, {"response-rewrite": {
            "filters": [{"regex": "rr", "replace": "XX", "scope": "global"},
                        {"regex": "\"(method)\"", "replace": "\"m_$1\""}]}})]})
        r = get(gw, "/rr?q=rr")
        self.assertEqual(r.status, 200)
        body = r.json()
        self.assertEqual(body["path"], "/XX?q=XX")      # global scope: every match
        self.assertIn("m_method", body)                  # once scope with a capture group
        self.assertEqual(r.headers.get("transfer-encoding"), "chunked")

    def test_filters_and_body_are_exclusive(self):
        gw = self.gateway({"routes": [route("rr-both", "/rr", self.up, {"response-rewrite": {
            "body": "x", "filters": [{"regex": "a", "replace": "b"}]}})]})
        self.assertEqual(get(gw, "/rr").status, 404)
        self.assert_log(gw, "rr-both", "response-rewrite")


# --------------------------------------------------------------------------
# cors


class CorsTest(PluginTestCase):
    def test_options_answered_without_upstream(self):
        gw = self.gateway({"routes": [route("c", "/c", self.up, {"cors": {}})]})
        r = call(gw, "OPTIONS", "/c", headers={"Origin": "http://a.example",
                                               "Access-Control-Request-Method": "PUT"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"")
        self.assert_not_from_upstream(r)
        self.assertEqual(r.headers.get("access-control-allow-origin"), "*")
        self.assertEqual(r.headers.get("access-control-allow-methods"), "*")
        self.assertEqual(r.headers.get("access-control-max-age"), "5")
        # Without cors the same OPTIONS goes to the upstream.
        gw2 = self.gateway({"routes": [route("c", "/c", self.up)]})
        r = call(gw2, "OPTIONS", "/c")
        self.assert_from_upstream(r)
        self.assertEqual(r.json()["method"], "OPTIONS")

    def test_allowed_and_disallowed_origins(self):
        gw = self.gateway({"routes": [route("c", "/c", self.up, {"cors": {
            "allow_origins": "http://a.example,http://b.example", "allow_methods": "GET,POST",
            "allow_headers": "X-Token", "expose_headers": "X-Trace", "max_age": 100}})]})
        r = get(gw, "/c", headers={"Origin": "http://b.example"})
        self.assertEqual(r.status, 200)
        self.assert_from_upstream(r)
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://b.example")
        self.assertEqual(r.headers.get("access-control-allow-methods"), "GET,POST")
        self.assertEqual(r.headers.get("access-control-allow-headers"), "X-Token")
        self.assertEqual(r.headers.get("access-control-expose-headers"), "X-Trace")
        self.assertEqual(r.headers.get("access-control-max-age"), "100")
        self.assertIn("origin", [v.strip().lower() for v in ",".join(r.values("vary")).split(",")])
        for origin in ("http://evil.example", "http://a.example.evil", None):
            r = get(gw, "/c", headers={"Origin": origin} if origin else {})
            self.assertEqual(r.status, 200)
            self.assertNotIn("access-control-allow-origin", r.headers, origin)
            self.assertNotIn("access-control-allow-methods", r.headers, origin)
        # preflight from a disallowed origin: still 200 from the gateway, no CORS headers
        r = call(gw, "OPTIONS", "/c", headers={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 200)
        self.assert_not_from_upstream(r)
        self.assertNotIn("access-control-allow-origin", r.headers)

    def test_double_star_reflects_origin(self):
        gw = self.gateway({"routes": [route("c", "/c", self.up, {"cors": {
            "allow_origins": "**", "allow_methods": "**", "allow_headers": "**"}})]})
        r = call(gw, "OPTIONS", "/c", headers={"Origin": "http://anything.example",
                                               "Access-Control-Request-Headers": "X-One,X-Two"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://anything.example")
        self.assertEqual(r.headers.get("access-control-allow-headers"), "X-One,X-Two")
        self.assertIn("PUT", r.headers.get("access-control-allow-methods", ""))

    def test_allow_origins_by_regex(self):
        gw = self.gateway({"routes": [route("c", "/c", self.up, {"cors": {
            "allow_origins": "http://fixed.example",
            "allow_origins_by_regex": ["^https://[a-z]+\\.example\\.com$"]}})]})
        r = get(gw, "/c", headers={"Origin": "https://app.example.com"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "https://app.example.com")
        # As APISIX's cors.lua: with regexes, allow_origins is not consulted.
        for bad in ("https://app.example.com.evil.org", "http://app.example.com", "https://example.com",
                    "http://fixed.example"):
            r = get(gw, "/c", headers={"Origin": bad})
            self.assertNotIn("access-control-allow-origin", r.headers, bad)

    def test_allow_credential(self):
        gw = self.gateway({"routes": [route("c", "/c", self.up, {"cors": {
            "allow_origins": "http://a.example", "allow_methods": "GET", "allow_headers": "X-A",
            "allow_credential": True}})]})
        r = get(gw, "/c", headers={"Origin": "http://a.example"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://a.example")
        self.assertEqual(r.headers.get("access-control-allow-credentials"), "true")

    def test_allow_credential_with_star_rejected_at_load(self):
        gw = self.gateway({"routes": [
            route("cors-cred-star", "/c", self.up, {"cors": {"allow_credential": True}}),
            route("ok", "/ok", self.up, {"cors": {"allow_credential": True, "allow_origins": "http://a.example",
                                                 "allow_methods": "GET", "allow_headers": "X-A"}}),
        ]})
        self.assertEqual(get(gw, "/c").status, 404)
        self.assertEqual(get(gw, "/ok").status, 200)
        self.assert_log(gw, "cors-cred-star", "cors")


# --------------------------------------------------------------------------
# ip-restriction


class IpRestrictionTest(PluginTestCase):
    def test_whitelist_cidr(self):
        gw = self.gateway({"routes": [route("ip", "/ip", self.up, {"ip-restriction": {
            "whitelist": ["127.0.0.0/31", "10.0.0.1"]}})]})
        r = get(gw, "/ip", source="127.0.0.1")
        self.assertEqual(r.status, 200)
        self.assert_from_upstream(r)
        r = get(gw, "/ip", source="127.0.0.2")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json(), {"message": "Your IP address is not allowed"})
        self.assert_not_from_upstream(r)

    def test_blacklist_cidr(self):
        gw = self.gateway({"routes": [route("ip", "/ip", self.up, {"ip-restriction": {
            "blacklist": ["127.0.0.2/31"]}})]})
        self.assertEqual(get(gw, "/ip", source="127.0.0.1").status, 200)
        self.assertEqual(get(gw, "/ip", source="127.0.0.2").status, 403)
        self.assertEqual(get(gw, "/ip", source="127.0.0.3").status, 403)
        self.assertEqual(get(gw, "/ip", source="127.0.0.4").status, 200)

    def test_custom_message_and_code(self):
        gw = self.gateway({"routes": [route("ip", "/ip", self.up, {"ip-restriction": {
            "blacklist": ["127.0.0.1"], "message": "go away", "response_code": 404}})]})
        r = get(gw, "/ip")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json(), {"message": "go away"})

    def test_both_lists_rejected_at_load(self):
        gw = self.gateway({"routes": [route("ip-both", "/ip", self.up, {"ip-restriction": {
            "whitelist": ["127.0.0.1"], "blacklist": ["127.0.0.2"]}})]})
        self.assertEqual(get(gw, "/ip").status, 404)
        self.assert_log(gw, "ip-both", "ip-restriction")


# --------------------------------------------------------------------------
# request-id


class RequestIdTest(PluginTestCase):
    def test_generated_uuid_sent_upstream_and_echoed(self):
        gw = self.gateway({"routes": [route("rid", "/rid", self.up, {"request-id": {}})]})
        r1, r2 = get(gw, "/rid"), get(gw, "/rid")
        rid = r1.headers.get("x-request-id")
        self.assertIsNotNone(rid, r1)
        self.assertRegex(rid, UUID_RE)
        self.assertEqual(r1.upstream_values("x-request-id"), [rid])
        self.assertNotEqual(rid, r2.headers.get("x-request-id"))

    def test_incoming_id_kept(self):
        gw = self.gateway({"routes": [route("rid", "/rid", self.up, {"request-id": {}})]})
        r = get(gw, "/rid", headers={"X-Request-Id": "client-id-1"})
        self.assertEqual(r.headers.get("x-request-id"), "client-id-1")
        self.assertEqual(r.upstream_values("x-request-id"), ["client-id-1"])

    def test_include_in_response_false(self):
        gw = self.gateway({"routes": [route("rid", "/rid", self.up, {"request-id": {"include_in_response": False}})]})
        r = get(gw, "/rid")
        self.assertNotIn("x-request-id", r.headers)
        self.assertRegex(r.upstream_values("x-request-id")[0], UUID_RE)

    def test_custom_header_name(self):
        gw = self.gateway({"routes": [route("rid", "/rid", self.up, {"request-id": {"header_name": "X-Trace-Id"}})]})
        r = get(gw, "/rid")
        self.assertRegex(r.headers.get("x-trace-id", ""), UUID_RE)
        self.assertEqual(r.upstream_values("x-trace-id"), [r.headers["x-trace-id"]])
        self.assertEqual(r.upstream_values("x-request-id"), [])

    def test_on_plugin_generated_response(self):
        gw = self.gateway({"routes": [route("rid", "/rid", self.up, {"request-id": {}, "key-auth": {}})]})
        r = get(gw, "/rid")
        self.assertEqual(r.status, 401)
        self.assertRegex(r.headers.get("x-request-id", ""), UUID_RE)

    def test_range_id_algorithm(self):
        gw = self.gateway({"routes": [route("rid", "/rid", self.up, {"request-id": {
            "algorithm": "range_id", "range_id": {"length": 12, "char_set": "abcdef"}}})]})
        rid = get(gw, "/rid").headers.get("x-request-id", "")
        self.assertRegex(rid, r"^[abcdef]{12}$")


# --------------------------------------------------------------------------
# mocking


class MockingTest(PluginTestCase):
    def test_response_example_status_and_type(self):
        gw = self.gateway({"routes": [route("mk", "/mk", self.up, {"mocking": {
            "response_example": "{\"mock\":1}", "response_status": 201, "content_type": "application/json"}})]})
        r = get(gw, "/mk")
        self.assertEqual(r.status, 201)
        self.assertEqual(r.body, b'{"mock":1}')
        self.assertEqual(r.headers.get("content-type"), "application/json")
        self.assertTrue(r.headers.get("x-mock-by", "").startswith("APISIX/"), r)
        self.assert_not_from_upstream(r)

    def test_defaults(self):
        gw = self.gateway({"routes": [route("mk", "/mk", None, {"mocking": {"response_example": "x"}})]})
        r = get(gw, "/mk")  # no upstream needed
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("content-type"), "application/json;charset=utf8")
        self.assertEqual(r.body, b"x")

    def test_without_mock_header(self):
        gw = self.gateway({"routes": [route("mk", "/mk", self.up, {"mocking": {
            "response_example": "x", "with_mock_header": False}})]})
        r = get(gw, "/mk")
        self.assertEqual(r.body, b"x")
        self.assertNotIn("x-mock-by", r.headers)

    def test_response_schema(self):
        gw = self.gateway({"routes": [route("mk", "/mk", self.up, {"mocking": {"response_schema": {
            "type": "object", "properties": {"name": {"type": "string", "example": "neo"},
                                             "n": {"type": "integer"}}}}})]})
        body = get(gw, "/mk").json()
        self.assertEqual(body["name"], "neo")
        self.assertIsInstance(body["n"], int)

    def test_delay(self):
        gw = self.gateway({"routes": [route("mk", "/mk", self.up, {"mocking": {"response_example": "x", "delay": 1}})]})
        r = get(gw, "/mk")
        self.assertEqual(r.body, b"x")
        self.assertGreaterEqual(r.elapsed, 0.9)
        self.assertLess(r.elapsed, 3)

    def test_delay_does_not_block_worker(self):
        gw = self.gateway({"routes": [route("mk", "/mk", self.up, {"mocking": {"response_example": "x", "delay": 1}}),
                                      route("fast", "/fast", self.up)]})
        t = threading.Thread(target=get, args=(gw, "/mk"))
        t.start()
        time.sleep(0.2)
        r = get(gw, "/fast")  # single worker: must not wait for the mock delay
        t.join()
        self.assertEqual(r.status, 200)
        self.assertLess(r.elapsed, 0.7)


# --------------------------------------------------------------------------
# fault-injection


class FaultInjectionTest(PluginTestCase):
    def test_abort_status_and_body_with_vars(self):
        gw = self.gateway({"routes": [route("fi", "/fi", self.up, {"fault-injection": {
            "abort": {"http_status": 418, "body": "blocked $arg_who from $remote_addr"}}})]})
        r = get(gw, "/fi?who=me")
        self.assertEqual(r.status, 418)
        self.assertEqual(r.body, b"blocked me from 127.0.0.1")
        self.assert_not_from_upstream(r)

    def test_percentage_zero_never_aborts(self):
        gw = self.gateway({"routes": [route("fi", "/fi", self.up, {"fault-injection": {
            "abort": {"http_status": 500, "percentage": 0}}})]})
        statuses = {get(gw, "/fi").status for _ in range(20)}
        self.assertEqual(statuses, {200})

    def test_percentage_hundred_always_aborts(self):
        gw = self.gateway({"routes": [route("fi", "/fi", self.up, {"fault-injection": {
            "abort": {"http_status": 503, "percentage": 100}}})]})
        self.assertEqual({get(gw, "/fi").status for _ in range(10)}, {503})

    def test_vars_conditioned_abort(self):
        gw = self.gateway({"routes": [route("fi", "/fi", self.up, {"fault-injection": {
            "abort": {"http_status": 403, "body": "no",
                      "vars": [[["arg_name", "==", "jack"]], [["http_x_bad", "==", "1"]]]}}})]})
        self.assertEqual(get(gw, "/fi?name=jack").status, 403)
        self.assertEqual(get(gw, "/fi", headers={"X-Bad": "1"}).status, 403)  # any expression is enough
        r = get(gw, "/fi?name=rose")
        self.assertEqual(r.status, 200)
        self.assert_from_upstream(r)

    def test_delay_adds_latency(self):
        gw = self.gateway({"routes": [route("fi", "/fi", self.up, {"fault-injection": {"delay": {"duration": 1}}}),
                                      route("plain", "/plain", self.up)]})
        r = get(gw, "/fi")
        self.assertEqual(r.status, 200)
        self.assert_from_upstream(r)
        self.assertGreaterEqual(r.elapsed, 0.95)
        self.assertLess(get(gw, "/plain").elapsed, 0.7)

    def test_delay_then_abort(self):
        gw = self.gateway({"routes": [route("fi", "/fi", self.up, {"fault-injection": {
            "delay": {"duration": 0.5}, "abort": {"http_status": 502, "body": "late"}}})]})
        r = get(gw, "/fi")
        self.assertEqual((r.status, r.body), (502, b"late"))
        self.assertGreaterEqual(r.elapsed, 0.45)

    def test_delay_percentage_zero_is_fast(self):
        gw = self.gateway({"routes": [route("fi", "/fi", self.up, {"fault-injection": {
            "delay": {"duration": 2, "percentage": 0}}})]})
        r = get(gw, "/fi")
        self.assertEqual(r.status, 200)
        self.assertLess(r.elapsed, 1)

    def test_neither_abort_nor_delay_rejected_at_load(self):
        gw = self.gateway({"routes": [route("fi-empty", "/fi", self.up, {"fault-injection": {}})]})
        self.assertEqual(get(gw, "/fi").status, 404)
        self.assert_log(gw, "fi-empty", "fault-injection")


# --------------------------------------------------------------------------
# redirect


class RedirectTest(PluginTestCase):
    def test_uri_default_302_and_ret_code(self):
        gw = self.gateway({"routes": [
            route("r1", "/old", self.up, {"redirect": {"uri": "/new$uri"}}),
            route("r2", "/perm", self.up, {"redirect": {"uri": "/target", "ret_code": 301}}),
        ]})
        r = get(gw, "/old?x=1")
        self.assertEqual(r.status, 302)
        self.assertEqual(r.headers.get("location"), "/new/old")
        self.assert_not_from_upstream(r)
        r = get(gw, "/perm")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.headers.get("location"), "/target")

    def test_regex_uri(self):
        gw = self.gateway({"routes": [route("r", "/img/*", self.up, {"redirect": {
            "regex_uri": ["^/img/(.*)\\.png$", "/images/$1.webp"]}})]})
        r = get(gw, "/img/cat.png")
        self.assertEqual(r.status, 302)
        self.assertEqual(r.headers.get("location"), "/images/cat.webp")
        # no match: the request goes on to the upstream
        r = get(gw, "/img/cat.gif")
        self.assertEqual(r.status, 200)
        self.assert_from_upstream(r)

    def test_http_to_https(self):
        gw = self.gateway({"routes": [route("r", "/s*", self.up, {"redirect": {"http_to_https": True}})]})
        r = get(gw, "/secure?a=1", headers={"Host": "example.com"})
        self.assertEqual(r.status, 301)
        # As APISIX: the port of an apisix.ssl.listen entry unless it is 443
        # (test_mtls covers plugin_attr.redirect.https_port).
        self.assertEqual(r.headers.get("location"), f"https://example.com:{gw.tls_port}/secure?a=1")
        self.assertEqual(call(gw, "HEAD", "/s", headers={"Host": "example.com"}).status, 301)
        for method in ("POST", "PUT", "DELETE"):
            r = call(gw, method, "/s", headers={"Host": "example.com"}, body=b"")
            self.assertEqual(r.status, 308, method)
            self.assertEqual(r.headers.get("location"), f"https://example.com:{gw.tls_port}/s")
        # already https behind a TLS terminator in apisix.trusted_addresses: no
        # redirect (from anyone else X-Forwarded-Proto is $scheme, as in APISIX;
        # test_client_addr covers both)
        gw = self.gateway({"routes": [route("r", "/s*", self.up, {"redirect": {"http_to_https": True}})]},
                          config={"apisix": {"trusted_addresses": ["127.0.0.1"]}})
        r = get(gw, "/s", headers={"X-Forwarded-Proto": "https"})
        self.assertEqual(r.status, 200)
        self.assert_from_upstream(r)

    def test_append_query_string(self):
        gw = self.gateway({"routes": [
            route("r1", "/a", self.up, {"redirect": {"uri": "/new", "append_query_string": True}}),
            route("r2", "/b", self.up, {"redirect": {"uri": "/new?x=1", "append_query_string": True}}),
        ]})
        self.assertEqual(get(gw, "/a?q=1&r=2").headers.get("location"), "/new?q=1&r=2")
        self.assertEqual(get(gw, "/a").headers.get("location"), "/new")
        self.assertEqual(get(gw, "/b?q=1").headers.get("location"), "/new?x=1&q=1")

    def test_http_to_https_with_append_query_rejected(self):
        gw = self.gateway({"routes": [route("redir-bad", "/r", self.up, {"redirect": {
            "http_to_https": True, "append_query_string": True}})]})
        self.assertEqual(get(gw, "/r").status, 404)
        self.assert_log(gw, "redir-bad", "redirect")


# --------------------------------------------------------------------------
# ordering, priorities and _meta


class OrderingAndMetaTest(PluginTestCase):
    CONSUMERS = [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}]

    def test_fault_injection_runs_before_key_auth(self):
        gw = self.gateway({"routes": [route("o", "/o", self.up, {
            "key-auth": {}, "fault-injection": {"abort": {"http_status": 403, "body": "fault"}}})],
            "consumers": self.CONSUMERS})
        r = get(gw, "/o")  # no key: fault-injection (11000) answers before key-auth (2500)
        self.assertEqual((r.status, r.body), (403, b"fault"))

    def test_meta_priority_changes_order(self):
        gw = self.gateway({"routes": [route("o", "/o", self.up, {
            "key-auth": {"_meta": {"priority": 20000}},
            "fault-injection": {"abort": {"http_status": 403, "body": "fault"}}})],
            "consumers": self.CONSUMERS})
        r = get(gw, "/o")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"message": "Missing API key in request"})
        # with a key, key-auth passes and fault-injection still aborts
        self.assertEqual(get(gw, "/o", headers={"apikey": "jack-key"}).status, 403)

    def test_rewrite_phase_runs_before_access_phase(self):
        # ip-restriction (access, 3000) has the higher priority, but key-auth
        # (rewrite, 2500) runs first because every rewrite precedes any access.
        gw = self.gateway({"routes": [route("o", "/o", self.up, {
            "key-auth": {}, "ip-restriction": {"blacklist": ["127.0.0.1"]}})], "consumers": self.CONSUMERS})
        self.assertEqual(get(gw, "/o").status, 401)
        self.assertEqual(get(gw, "/o", headers={"apikey": "jack-key"}).status, 403)

    def test_meta_disable(self):
        gw = self.gateway({"routes": [route("o", "/o", self.up, {"key-auth": {"_meta": {"disable": True}}}),
                                      route("p", "/p", self.up, {"key-auth": {"_meta": {"disable": False}}})],
                           "consumers": self.CONSUMERS})
        r = get(gw, "/o")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.upstream_values("x-consumer-username"), [])
        self.assertEqual(get(gw, "/p").status, 401)

    def test_meta_filter(self):
        gw = self.gateway({"routes": [route("o", "/o", self.up, {
            "fault-injection": {"abort": {"http_status": 429}, "_meta": {"filter": [["arg_x", "==", "1"]]}},
            "response-rewrite": {"headers": {"set": {"X-Filtered": "yes"}},
                                 "_meta": {"filter": [["http_x_want", "==", "y"]]}}})]})
        self.assertEqual(get(gw, "/o?x=1").status, 429)
        r = get(gw, "/o?x=2")
        self.assertEqual(r.status, 200)
        self.assertNotIn("x-filtered", r.headers)
        r = get(gw, "/o", headers={"X-Want": "y"})
        self.assertEqual(r.values("x-filtered"), ["yes"])

    def test_meta_error_response(self):
        gw = self.gateway({"routes": [
            route("o", "/o", self.up, {"key-auth": {"_meta": {"error_response": {"msg": "custom auth"}}}}),
            route("p", "/p", self.up, {"limit-count": {"count": 1, "time_window": 60,
                                                       "_meta": {"error_response": "too many"}}}),
            route("q", "/q", self.up, {"mocking": {"response_example": "fine",
                                                   "_meta": {"error_response": "never"}}}),
        ], "consumers": self.CONSUMERS})
        r = get(gw, "/o")
        self.assertEqual(r.status, 401)
        self.assertEqual(json.loads(r.body), {"msg": "custom auth"})
        self.assertEqual(get(gw, "/p").status, 200)
        r = get(gw, "/p")
        self.assertEqual((r.status, r.body), (503, b"too many"))
        r = get(gw, "/q")  # status < 400: body not replaced
        self.assertEqual((r.status, r.body), (200, b"fine"))

    def test_meta_bad_type_rejected(self):
        gw = self.gateway({"routes": [route("meta-bad", "/o", self.up, {"key-auth": {"_meta": {"priority": "high"}}})]})
        self.assertEqual(get(gw, "/o").status, 404)
        self.assert_log(gw, "meta-bad", "key-auth")


# --------------------------------------------------------------------------
# global rules


class GlobalRulesTest(PluginTestCase):
    def test_global_rule_runs_for_every_route_and_404(self):
        gw = self.gateway({
            "routes": [route("a", "/a", self.up),
                       route("b", "/b", self.up, {"proxy-rewrite": {"headers": {"set": {"X-B": "1"}}}})],
            "global_rules": [
                {"id": "g1", "plugins": {"response-rewrite": {"headers": {"set": {"X-Global": "yes"}}}}},
                {"id": "g2", "plugins": {"request-id": {}}},
            ],
        })
        ra, rb, rn = get(gw, "/a"), get(gw, "/b"), get(gw, "/nope")
        for r in (ra, rb):
            self.assertEqual(r.status, 200)
            self.assertEqual(r.values("x-global"), ["yes"])
            self.assertRegex(r.headers.get("x-request-id", ""), UUID_RE)
            self.assertEqual(r.upstream_values("x-request-id"), [r.headers["x-request-id"]])
        self.assertEqual(rb.upstream_values("x-b"), ["1"])
        self.assertEqual(rn.status, 404)
        self.assertEqual(rn.json(), {"error_msg": "404 Route Not Found"})
        self.assertEqual(rn.values("x-global"), ["yes"])
        self.assertRegex(rn.headers.get("x-request-id", ""), UUID_RE)

    def test_global_access_plugin_blocks_unmatched_paths_too(self):
        gw = self.gateway({
            "routes": [route("a", "/a", self.up)],
            "global_rules": [{"id": "g", "plugins": {"ip-restriction": {"blacklist": ["127.0.0.2"]}}}],
        })
        self.assertEqual(get(gw, "/a", source="127.0.0.1").status, 200)
        self.assertEqual(get(gw, "/a", source="127.0.0.2").status, 403)
        self.assertEqual(get(gw, "/nope", source="127.0.0.2").status, 403)
        self.assertEqual(get(gw, "/nope", source="127.0.0.1").status, 404)

    def test_global_rewrite_runs_before_route_plugins(self):
        # A global fault-injection aborts before the route's key-auth runs.
        gw = self.gateway({
            "routes": [route("a", "/a", self.up, {"key-auth": {}})],
            "global_rules": [{"id": "g", "plugins": {"fault-injection": {
                "abort": {"http_status": 451, "vars": [[["arg_block", "==", "1"]]]}}}}],
        })
        self.assertEqual(get(gw, "/a?block=1").status, 451)
        self.assertEqual(get(gw, "/a").status, 401)

    def test_global_rule_meta_filter(self):
        gw = self.gateway({
            "routes": [route("a", "/a", self.up), route("b", "/b", self.up)],
            "global_rules": [{"id": "g", "plugins": {
                "response-rewrite": {"headers": {"set": {"X-Only-A": "1"}}, "_meta": {"filter": [["uri", "==", "/a"]]}},
                "fault-injection": {"abort": {"http_status": 409}, "_meta": {"filter": [["arg_stop", "==", "1"]]}}}}],
        })
        self.assertEqual(get(gw, "/a").values("x-only-a"), ["1"])
        self.assertEqual(get(gw, "/b").values("x-only-a"), [])
        self.assertEqual(get(gw, "/b?stop=1").status, 409)
        self.assertEqual(get(gw, "/b").status, 200)

    def test_plugin_in_two_global_rules_is_dropped(self):
        abort = {"fault-injection": {"abort": {"http_status": 403}}}
        gw = self.gateway({"routes": [route("a", "/a", self.up)],
                           "global_rules": [{"id": "g1", "plugins": abort}, {"id": "g2", "plugins": abort}]})
        self.assertEqual(get(gw, "/a").status, 200)
        self.assert_log(gw, "fault-injection", "more than one global rule")


# --------------------------------------------------------------------------
# plugin_config / service merge


class MergeTest(PluginTestCase):
    def test_route_beats_plugin_config_beats_service(self):
        svc_rewrite = {"proxy-rewrite": {"headers": {"set": {"X-From": "service", "X-Svc-Only": "1"}}}}
        gw = self.gateway({
            "services": [{"id": "s1", "upstream": {"nodes": {self.up.addr: 1}},
                          "plugins": {**svc_rewrite, "request-id": {"header_name": "X-Svc-Id"}}}],
            "plugin_configs": [{"id": "pc1", "plugins": {
                "proxy-rewrite": {"headers": {"set": {"X-From": "plugin_config"}}},
                "response-rewrite": {"headers": {"set": {"X-PC": "1"}}}}}],
            "routes": [
                {"id": "r1", "uri": "/r1", "service_id": "s1", "plugin_config_id": "pc1",
                 "plugins": {"proxy-rewrite": {"headers": {"set": {"X-From": "route"}}}}},
                {"id": "r2", "uri": "/r2", "service_id": "s1", "plugin_config_id": "pc1"},
                {"id": "r3", "uri": "/r3", "service_id": "s1"},
            ],
        })
        r1, r2, r3 = get(gw, "/r1"), get(gw, "/r2"), get(gw, "/r3")
        for r in (r1, r2, r3):
            self.assertEqual(r.status, 200, r)
            self.assert_from_upstream(r)
            # plugins that only one layer has still run
            self.assertEqual(len(r.upstream_values("x-svc-id")), 1, r)
        self.assertEqual(r1.upstream_values("x-from"), ["route"])
        self.assertEqual(r2.upstream_values("x-from"), ["plugin_config"])
        self.assertEqual(r3.upstream_values("x-from"), ["service"])
        # a plugin is replaced as a whole, not merged field by field
        self.assertEqual(r1.upstream_values("x-svc-only"), [])
        self.assertEqual(r2.upstream_values("x-svc-only"), [])
        self.assertEqual(r3.upstream_values("x-svc-only"), ["1"])
        self.assertEqual(r1.values("x-pc"), ["1"])
        self.assertEqual(r3.values("x-pc"), [])

    def test_missing_plugin_config_skips_route(self):
        gw = self.gateway({"routes": [route("r-nopc", "/x", self.up, plugin_config_id="missing"),
                                      route("ok", "/ok", self.up)]})
        r = get(gw, "/x")
        self.assertIn(r.status, (404, 503), r)  # skipped at load (holdfast) or 503 at runtime (APISIX)
        self.assert_not_from_upstream(r)
        self.assertEqual(get(gw, "/ok").status, 200)


# --------------------------------------------------------------------------
# resources skipped at load time


class InvalidPluginConfigTest(PluginTestCase):
    def test_unknown_plugin_skips_route_with_log(self):
        gw = self.gateway({"routes": [route("rt-unknown", "/x", self.up, {"no-such-plugin": {}}),
                                      route("ok", "/ok", self.up)]})
        r = get(gw, "/x")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json(), {"error_msg": "404 Route Not Found"})
        self.assertEqual(get(gw, "/ok").status, 200)
        self.assert_log(gw, "rt-unknown", "no-such-plugin")

    def test_plugin_not_enabled_skips_route(self):
        gw = self.gateway({"routes": [route("rt-disabled", "/x", self.up, {"request-id": {}}),
                                      route("ok", "/ok", self.up, {"key-auth": {"_meta": {"disable": True}}})]},
                          config={"plugins": ["key-auth", "limit-count"]})
        self.assertEqual(get(gw, "/x").status, 404)
        self.assertEqual(get(gw, "/ok").status, 200)
        self.assert_log(gw, "rt-disabled", "request-id")

    def test_limit_count_without_count_skips_route(self):
        gw = self.gateway({"routes": [route("rt-nocount", "/x", self.up, {"limit-count": {"time_window": 60}}),
                                      route("ok", "/ok", self.up, {"limit-count": {"count": 5, "time_window": 60}})]})
        self.assertEqual(get(gw, "/x").status, 404)
        self.assertEqual(get(gw, "/ok").status, 200)
        # APISIX's oneOf message ({count, time_window} or {rules}).
        self.assert_log(gw, "rt-nocount", "limit-count", "value should match only one schema, but matches none")

    def test_wrong_types_skip_route(self):
        cases = {
            "t1": {"limit-count": {"count": -5, "time_window": 60}},  # a string is a ${var} template (3.x)
            "t2": {"key-auth": {"hide_credentials": "yes"}},
            "t3": {"ip-restriction": {"whitelist": ["not-an-ip"]}},
            "t4": {"mocking": {}},
            "t5": {"request-id": "not an object"},
        }
        gw = self.gateway({"routes": [route(rid, f"/{rid}", self.up, p) for rid, p in cases.items()]
                          + [route("ok", "/ok", self.up)]})
        for rid in cases:
            self.assertEqual(get(gw, f"/{rid}").status, 404, rid)
            self.assert_log(gw, f"id={rid}")
        self.assertEqual(get(gw, "/ok").status, 200)

    def test_invalid_consumer_plugin_skips_consumer(self):
        gw = self.gateway({"routes": [route("ka", "/ka", self.up, {"key-auth": {}})],
                           "consumers": [{"username": "badone", "plugins": {"key-auth": {}}},
                                         {"username": "good", "plugins": {"key-auth": {"key": "g"}}}]})
        self.assertEqual(get(gw, "/ka", headers={"apikey": "g"}).status, 200)
        self.assert_log(gw, "badone", "key-auth")

    def test_reload_with_invalid_plugin_keeps_other_routes(self):
        up = self.up
        gw = self.gateway({"routes": [route("a", "/a", up, {"request-id": {}})]})
        self.assertEqual(get(gw, "/a").status, 200)
        gw.reload({"routes": [route("a", "/a", up, {"request-id": {}}),
                              route("b", "/b", up, {"limit-count": {"count": 0, "time_window": 1}})]})
        self.assertEqual(get(gw, "/a").status, 200)
        self.assertEqual(get(gw, "/b").status, 404)
        self.assert_log(gw, "id=b", "limit-count")


if __name__ == "__main__":
    unittest.main()
