"""Plugin details that follow APISIX 3.x's own plugins and tests (issue #11
items 4 and 7), through the real binary, a real origin and real sockets:
key-auth (hide_credentials, realm, anonymous consumer), limit-count (${var}
values, var_combination keys, rules, quota headers), request-id algorithms,
mocking (number printing, variables), redirect, cors, fault-injection.

Each test names the APISIX source (apisix/plugins/<name>.lua) or test
(t/plugin/<name>.t) whose behaviour it asserts.
"""
import re
import time
import unittest

from harness import GatewayTest
from test_plugins import PluginTestCase, get, call, route
from test_rewrite import CannedOrigin


# --------------------------------------------------------------------------
# key-auth


class KeyAuthApisixTest(PluginTestCase):
    CONSUMERS = [
        {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}},
        {"username": "anonymous"},
    ]

    def gw(self, conf, consumers=None):
        return self.gateway({
            "routes": [route("ka", "/ka*", self.up, {"key-auth": conf})],
            "consumers": consumers if consumers is not None else self.CONSUMERS,
        })

    def test_hide_credentials_with_anonymous_strips_header_and_query(self):
        # key-auth.lua: an invalid credential is stripped from the header and
        # the query string before falling back to the anonymous consumer
        # (t/plugin/key-auth-anonymous-consumer.t TEST 9-11).
        gw = self.gw({"query": "auth", "anonymous_consumer": "anonymous", "hide_credentials": True})
        r = get(gw, "/ka/p?a=1&auth=invalid-key&b=2", headers={"apikey": "invalid-key"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["anonymous"])
        self.assertEqual(r.upstream_values("apikey"), [])
        self.assertEqual(r.json()["path"], "/ka/p?a=1&b=2")
        self.assertNotIn(b"invalid-key", r.body)
        r = get(gw, "/ka/p?auth=invalid-key")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["path"], "/ka/p")
        # A valid key in the header: only the header goes (TEST 19 of key-auth.t).
        r = get(gw, "/ka/p?auth=other", headers={"apikey": "jack-key"})
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])
        self.assertEqual(r.upstream_values("apikey"), [])
        self.assertEqual(r.json()["path"], "/ka/p?auth=other")

    def test_hidden_query_key_is_gone_for_later_variables(self):
        # set_uri_args changes $args for what runs later (a limit-count key here).
        gw = self.gateway({
            "routes": [route("ka", "/ka*", self.up, {
                "key-auth": {"hide_credentials": True},
                "limit-count": {"count": 1, "time_window": 60, "key": "$arg_apikey|$args", "key_type": "var_combination"}})],
            "consumers": self.CONSUMERS,
        })
        self.assertEqual(get(gw, "/ka?apikey=jack-key&x=1").status, 200)
        # The key is gone from $args, so a different key counts as the same client.
        r = get(gw, "/ka?x=1", headers={"apikey": "jack-key"})
        self.assertEqual(r.status, 503, r)

    def test_query_key_is_url_decoded(self):
        # core.request.get_uri_args decodes the value.
        gw = self.gw({}, consumers=[{"username": "jack", "plugins": {"key-auth": {"key": "a b+c"}}}])
        r = get(gw, "/ka?apikey=a+b%2Bc")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-username"), ["jack"])

    def test_custom_realm(self):
        # t/plugin/key-auth-realm.t TEST 3-4.
        gw = self.gw({"realm": "my-custom-realm"})
        r = get(gw, "/ka")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.headers.get("www-authenticate"), 'apikey realm="my-custom-realm"')

    def test_realm_with_quote_is_rejected(self):
        # schema_def.get_realm_schema: no `"` or `\`, printable ASCII only.
        gw = self.gw({"realm": 'a"b'})
        self.assertEqual(get(gw, "/ka").status, 404)
        self.assertIn("realm", gw.logs())

    def test_missing_anonymous_consumer(self):
        # t/plugin/key-auth-anonymous-consumer.t TEST 6-7.
        gw = self.gw({"anonymous_consumer": "not-found-anonymous"})
        r = get(gw, "/ka")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json(), {"message": "Invalid user authorization"})
        self.assertEqual(r.headers.get("www-authenticate"), 'apikey realm="key"')
        self.assertIn("failed to get anonymous consumer not-found-anonymous", gw.logs())

    def test_anonymous_consumer_plugins_apply(self):
        # t/plugin/key-auth-anonymous-consumer.t TEST 1-5: the anonymous
        # consumer's own limit-count applies to requests without a key.
        consumers = [
            {"username": "jack", "plugins": {"key-auth": {"key": "auth-one"},
                                             "limit-count": {"count": 4, "time_window": 60}}},
            {"username": "anonymous", "plugins": {"limit-count": {"count": 1, "time_window": 60}}},
        ]
        gw = self.gw({"anonymous_consumer": "anonymous"}, consumers=consumers)
        self.assertEqual([get(gw, "/ka", headers={"apikey": "auth-one"}).status for _ in range(5)],
                         [200, 200, 200, 200, 503])
        self.assertEqual([get(gw, "/ka").status for _ in range(3)], [200, 503, 503])

    def test_consumer_headers_a_client_sent_are_cleared(self):
        # consumer.lua attach_consumer sets X-Credential-Identifier and
        # X-Consumer-Custom-ID to nil when the consumer has none.
        gw = self.gw({})
        r = get(gw, "/ka", headers={"apikey": "jack-key", "X-Consumer-Custom-ID": "forged",
                                    "X-Credential-Identifier": "forged"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("x-consumer-custom-id"), [])
        self.assertEqual(r.upstream_values("x-credential-identifier"), [])



# --------------------------------------------------------------------------
# limit-count


class LimitCountApisixTest(PluginTestCase):
    def gw(self, conf):
        return self.gateway({"routes": [route("lc", "/lc", self.up, {"limit-count": conf})]})

    def test_count_and_time_window_from_variables(self):
        # limit-count/init.lua resolve_var: count/time_window may be strings
        # with ${var} (t/plugin/limit-count-variable.t).
        gw = self.gw({"count": "${http_x_quota ?? 2}", "time_window": "$http_x_window", "key": "http_x_user"})
        h = {"X-Quota": "3", "X-Window": "60", "X-User": "a"}
        rs = [get(gw, "/lc", headers=h) for _ in range(4)]
        self.assertEqual([r.status for r in rs], [200, 200, 200, 503])
        self.assertEqual(rs[0].headers.get("x-ratelimit-limit"), "3")
        self.assertEqual(rs[0].headers.get("x-ratelimit-remaining"), "2")
        # The ?? default applies without the header.
        h = {"X-Window": "60", "X-User": "b"}
        self.assertEqual([get(gw, "/lc", headers=h).status for _ in range(3)], [200, 200, 503])
        # A value that does not resolve to a positive integer fails the
        # request (500), so a client cannot switch limiting off.
        for bad in ({"X-User": "c"}, {"X-User": "c", "X-Window": "abc"}, {"X-User": "c", "X-Window": "0"},
                    {"X-User": "c", "X-Window": "1.5"}):
            r = get(gw, "/lc", headers=bad)
            self.assertEqual(r.status, 500, (bad, r))
            self.assert_not_from_upstream(r)
        self.assert_log(gw, "failed to get rate limit rules", "resolved value must be an integer, got: 1.5")

    def test_schema_errors_as_apisix(self):
        # t/plugin/limit-count.t TEST 8-13: APISIX's oneOf messages.
        gw = self.gateway({"routes": [
            route("lc-neg", "/a", self.up, {"limit-count": {"count": -100, "time_window": 60}}),
            route("lc-none", "/b", self.up, {"limit-count": {"time_window": 60}}),
            route("lc-both", "/c", self.up, {"limit-count": {"count": 1, "time_window": 60, "rules": [
                {"count": 1, "time_window": 60, "key": "$remote_addr"}]}}),
        ]})
        for path in ("/a", "/b", "/c"):
            self.assertEqual(get(gw, path).status, 404)
        self.assert_log(gw, "lc-neg", 'property "count" validation failed: value should match only one schema, but matches none')
        self.assert_log(gw, "lc-none", "err: value should match only one schema, but matches none")
        self.assert_log(gw, "lc-both", "count/time_window and rules cannot be specified at the same time")

    def test_var_combination_with_no_variable_set_counts_the_client(self):
        # run_rate_limit: a var_combination key that resolves no variable
        # falls back to the client address.
        gw = self.gw({"count": 1, "time_window": 60, "key": "$http_a-$http_b", "key_type": "var_combination"})
        self.assertEqual(get(gw, "/lc").status, 200)
        self.assertEqual(get(gw, "/lc").status, 503)
        self.assertEqual(get(gw, "/lc", source="127.0.0.2").status, 200)
        # With a variable set, the combination is the key.
        self.assertEqual(get(gw, "/lc", headers={"A": "x"}).status, 200)
        self.assertEqual(get(gw, "/lc", headers={"A": "x"}, source="127.0.0.2").status, 503)

    def test_rules(self):
        # limit-count 3.x `rules` (t/plugin/limit-count-rules.t): every rule
        # whose key resolves applies, each with its own counter and headers
        # named with its header_prefix (or its index).
        gw = self.gw({"rules": [
            {"count": 1, "time_window": 60, "key": "${http_user}"},
            {"count": 2, "time_window": 60, "key": "team-$http_team", "header_prefix": "team"},
        ], "rejected_msg": "too many"})
        r = get(gw, "/lc", headers={"User": "u1", "Team": "t1"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-1-ratelimit-limit"), "1")
        self.assertEqual(r.headers.get("x-1-ratelimit-remaining"), "0")
        self.assertEqual(r.headers.get("x-team-ratelimit-limit"), "2")
        self.assertEqual(r.headers.get("x-team-ratelimit-remaining"), "1")
        r = get(gw, "/lc", headers={"User": "u1", "Team": "t1"})
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json(), {"error_msg": "too many"})
        self.assertEqual(r.headers.get("x-1-ratelimit-remaining"), "0")
        # Only the team rule applies without a User header.
        r = get(gw, "/lc", headers={"Team": "t1"})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("x-1-ratelimit-limit", r.headers)
        self.assertEqual(r.headers.get("x-team-ratelimit-remaining"), "0")
        self.assertEqual(get(gw, "/lc", headers={"Team": "t1"}).status, 503)
        # No rule applies: APISIX answers 500.
        self.assertEqual(get(gw, "/lc").status, 500)

    def test_reset_header_as_apisix_reports_it(self):
        # limit-count-local.lua: the request that opens a window reports the
        # whole window, later ones what is left (end_time - ngx.now(),
        # floored to hundredths by init.lua): "60", then e.g. "59.87".
        gw = self.gw({"count": 1000, "time_window": 60})
        first = get(gw, "/lc").headers.get("x-ratelimit-reset")
        self.assertEqual(first, "60")
        # Within a window a later value has hundredths unless it falls on a
        # whole second (1 in 100): ask until one does not.
        seen = []
        deadline = time.time() + 5
        while time.time() < deadline and not any("." in v for v in seen):
            seen.append(get(gw, "/lc").headers.get("x-ratelimit-reset"))
        for v in seen:
            self.assertRegex(v, r"^\d+(\.\d\d?)?$")
            self.assertTrue(0 <= float(v) <= 60, v)
        self.assertTrue(any("." in v for v in seen), (len(seen), seen[-3:]))

    def test_rules_with_duplicate_keys_rejected(self):
        gw = self.gateway({"routes": [route("lc-dup", "/lc", self.up, {"limit-count": {"rules": [
            {"count": 1, "time_window": 60, "key": "$remote_addr"},
            {"count": 2, "time_window": 60, "key": "$remote_addr"}]}})]})
        self.assertEqual(get(gw, "/lc").status, 404)
        self.assert_log(gw, "lc-dup", "duplicate key '$remote_addr' in rules")


# --------------------------------------------------------------------------
# request-id

UUID7_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


class RequestIdApisixTest(PluginTestCase):
    def ids(self, algorithm, n=1, **extra):
        gw = self.gateway({"routes": [route("rid", "/rid", self.up, {"request-id": {"algorithm": algorithm, **extra}})]})
        return [get(gw, "/rid").headers.get("x-request-id", "") for _ in range(n)]

    def test_uuidv7(self):
        # core.utils.generate_uuid_v7 (t/plugin/request-id.t TEST 20-24):
        # version 7, variant 8-b, the millisecond timestamp first, and ids
        # from one worker in increasing order.
        before = int(time.time() * 1000)
        ids = self.ids("uuidv7", 20)
        after = int(time.time() * 1000)
        for i in ids:
            self.assertRegex(i, UUID7_RE)
            ms = int(i.replace("-", "")[:12], 16)
            self.assertTrue(before <= ms <= after, (i, before, after))
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 20)

    def test_ksuid(self):
        # resty.ksuid: 27 base62 characters; the first 4 bytes are seconds
        # since 1400000000.
        ids = self.ids("ksuid", 5)
        for i in ids:
            self.assertRegex(i, r"^[0-9A-Za-z]{27}$")
            n = 0
            for ch in i:
                n = n * 62 + "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".index(ch)
            self.assertLess(abs((n >> 128) + 1400000000 - time.time()), 120, i)
        self.assertEqual(len(set(ids)), 5)

    def test_nanoid(self):
        for i in self.ids("nanoid", 5):
            self.assertRegex(i, r"^[-_0-9a-zA-Z]{21}$")

    def test_range_id_default_char_set(self):
        # APISIX's default char_set has no "J" (its "GHIGK" typo): follow it.
        ids = self.ids("range_id", 50)
        for i in ids:
            self.assertRegex(i, r"^[a-zA-Z0-9]{16}$")
        self.assertNotIn("J", "".join(ids))

    def test_response_keeps_the_upstreams_own_id(self):
        # request-id.lua header_filter: the header is set only when the
        # response has no non-empty one (the upstream's, or a plugin's answer).
        origin = CannedOrigin({"/own": ([("X-Request-Id", "from-upstream")], b"x"),
                               "/none": ([], b"x"), "/empty": ([("X-Request-Id", "")], b"x")})
        self.addCleanup(origin.stop)
        gw = self.gateway({"routes": [
            {"id": "rid", "uri": "/*", "upstream": {"nodes": {origin.addr: 1}}, "plugins": {"request-id": {}}},
            {"id": "mock", "uri": "/mock", "plugins": {"request-id": {}, "mocking": {
                "response_example": "m", "response_headers": {"X-Request-Id": "from-mocking"}}}}]})
        self.assertEqual(get(gw, "/own").headers.get("x-request-id"), "from-upstream")
        self.assertEqual(get(gw, "/mock").headers.get("x-request-id"), "from-mocking")
        # A client's id is what goes upstream, and back when the upstream sets none.
        self.assertEqual(get(gw, "/none", headers={"X-Request-Id": "from-client"}).headers.get("x-request-id"),
                         "from-client")
        self.assertRegex(get(gw, "/empty").headers.get("x-request-id", ""),
                         r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

    def test_unknown_algorithm_message(self):
        gw = self.gateway({"routes": [route("rid-bad", "/rid", self.up, {"request-id": {"algorithm": "bad_algorithm"}})]})
        self.assertEqual(get(gw, "/rid").status, 404)
        line = self.assert_log(gw, "rid-bad", "request-id")
        self.assertIn('property "algorithm" validation failed: matches none of the enum values', line)
        self.assertNotIn("enum values (", line)


# --------------------------------------------------------------------------
# mocking


class MockingApisixTest(PluginTestCase):
    def gw(self, conf):
        return self.gateway({"routes": [route("mk", "/mk", self.up, {"mocking": conf})]})

    def test_numbers_printed_as_lua_cjson(self):
        # t/plugin/mocking.t TEST 7-8: {"field1":5.5}; gen_integer floors an
        # example; lua-cjson escapes "/".
        gw = self.gw({"content_type": "text/plain", "response_schema": {"type": "object", "properties": {
            "field1": {"type": "number", "example": 5.5}}}})
        self.assertEqual(get(gw, "/mk").body, b'{"field1":5.5}')
        gw = self.gw({"content_type": "text/plain", "response_schema": {"type": "object", "properties": {
            "i": {"type": "integer", "example": 7.9}}}})
        self.assertEqual(get(gw, "/mk").body, b'{"i":7}')
        gw = self.gw({"content_type": "text/plain", "response_schema": {"type": "object", "properties": {
            "s": {"type": "string", "example": "a/b"}}}})
        self.assertEqual(get(gw, "/mk").body, b'{"s":"a\\/b"}')

    def test_variables_in_body_and_headers(self):
        # mocking.lua resolves variables in response_example and in
        # response_headers values (t/plugin/mocking.t TEST 15-22).
        gw = self.gw({"content_type": "text/plain", "response_example": "remote_addr:$remote_addr empty:$foo",
                      "response_headers": {"X-Route-Id": "$route_id", "X-Num": 10, "X-Float": 1.5}})
        r = get(gw, "/mk")
        self.assertEqual(r.body, b"remote_addr:127.0.0.1 empty:")
        self.assertEqual(r.headers.get("x-route-id"), "mk")
        self.assertEqual(r.headers.get("x-num"), "10")
        self.assertEqual(r.headers.get("x-float"), "1.5")

    def test_unsupported_content_type_rejected(self):
        gw = self.gateway({"routes": [route("mk-ct", "/mk", self.up, {"mocking": {
            "response_example": "x", "content_type": "image/png"}})]})
        self.assertEqual(get(gw, "/mk").status, 404)
        self.assert_log(gw, "mk-ct", "unsupported content type!")


# --------------------------------------------------------------------------
# redirect


class RedirectApisixTest(PluginTestCase):
    def test_escaped_dollar_stays(self):
        # t/plugin/redirect.t TEST 11-12: "\$uri" is kept as written.
        gw = self.gateway({"routes": [route("r", "/hello", self.up, {"redirect": {
            "uri": "\\$uri/foo$uri\\$uri/bar", "ret_code": 301}})]})
        r = get(gw, "/hello")
        self.assertEqual(r.status, 301, r)
        self.assertEqual(r.headers.get("location"), "\\$uri/foo/hello\\$uri/bar")

    def test_dollar_forms(self):
        # TEST 7-10, 13-14: ${var}, a lone "$", an unknown variable.
        gw = self.gateway({"routes": [
            route("r1", "/a", self.up, {"redirect": {"uri": "$uri/test/a${arg_name}c"}}),
            route("r2", "/b", self.up, {"redirect": {"uri": "/foo$$uri"}}),
            route("r3", "/c", self.up, {"redirect": {"uri": "$uri/$bad_var/bar"}}),
        ]})
        self.assertEqual(get(gw, "/a?name=json").headers.get("location"), "/a/test/ajsonc")
        self.assertEqual(get(gw, "/b").headers.get("location"), "/foo$/b")
        self.assertEqual(get(gw, "/c").headers.get("location"), "/c//bar")

    def test_regex_uri_captures_encode_and_query(self):
        # TEST 34-44: ${1} captures, encode_uri, append_query_string.
        gw = self.gateway({"routes": [route("r", "/x/*", self.up, {"redirect": {
            "regex_uri": ["^/x/(.*)$", "/y/${1}?from=x"], "encode_uri": True, "append_query_string": True}})]})
        r = get(gw, "/x/with%20space?q=1")
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.headers.get("location"), "/y/with%20space?from=x&q=1")

    def test_schema_as_apisix(self):
        # redirect.lua schema: one regex_uri pair; oneOf counts a present
        # http_to_https even when false (TEST 25's message).
        gw = self.gateway({"routes": [
            route("rd-pairs", "/a", self.up, {"redirect": {"regex_uri": ["^/a", "/b", "^/c", "/d"]}}),
            route("rd-both", "/b", self.up, {"redirect": {"uri": "/x", "http_to_https": False}}),
        ]})
        self.assertEqual(get(gw, "/a").status, 404)
        self.assertEqual(get(gw, "/b").status, 404)
        self.assert_log(gw, "rd-pairs", "expect array to have at most 2 items")
        self.assert_log(gw, "rd-both", "value should match only one schema, but matches both schemas 1 and 3")


# --------------------------------------------------------------------------
# cors


class CorsApisixTest(PluginTestCase):
    def test_origin_checked_before_proxy_rewrite_changes_it(self):
        # t/plugin/cors.t TEST 34-35.
        gw = self.gateway({"routes": [route("c", "/c", self.up, {
            "cors": {"allow_origins": "http://sub.domain.com", "allow_methods": "GET,POST",
                     "allow_headers": "headr1,headr2", "max_age": 50, "allow_credential": True},
            "proxy-rewrite": {"headers": {"Origin": "http://example.com"}}})]})
        r = get(gw, "/c", headers={"Origin": "http://sub.domain.com"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.upstream_values("origin"), ["http://example.com"])
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://sub.domain.com")
        self.assertEqual(r.headers.get("access-control-allow-credentials"), "true")

    def test_vary_origin_whenever_origins_are_restricted(self):
        # cors.lua adds Vary: Origin when allow_origins is not "*", allowed or not.
        gw = self.gateway({"routes": [route("c", "/c", self.up, {"cors": {"allow_origins": "http://a.example"}})]})
        r = get(gw, "/c", headers={"Origin": "http://evil.example"})
        self.assertNotIn("access-control-allow-origin", r.headers)
        self.assertIn("Origin", r.values("vary"))

    def test_timing_allow_origins(self):
        # cors4.t TEST 24-25: timing_allow_origins_by_regex wins over the list;
        # a "*" list answers "*".
        gw = self.gateway({"routes": [
            route("c1", "/c1", self.up, {"cors": {
                "allow_origins_by_regex": ["http://.*?\\.domain\\.com"],
                "timing_allow_origins_by_regex": ["http://test.*?\\.domain\\.com"],
                "timing_allow_origins": "http://nonexistent.newdomain.com"}}),
            route("c2", "/c2", self.up, {"cors": {"timing_allow_origins": "*"}}),
        ]})
        r = get(gw, "/c1", headers={"Origin": "http://testurl.domain.com"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://testurl.domain.com")
        self.assertEqual(r.headers.get("timing-allow-origin"), "http://testurl.domain.com")
        r = get(gw, "/c1", headers={"Origin": "http://other.domain.com"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://other.domain.com")
        self.assertNotIn("timing-allow-origin", r.headers)
        r = get(gw, "/c2", headers={"Origin": "http://x.example"})
        self.assertEqual(r.headers.get("timing-allow-origin"), "*")

    def test_regex_origins_never_answer_star(self):
        # With allow_origins_by_regex the answer is the matching origin, never
        # "*", even though allow_origins keeps its default "*".
        gw = self.gateway({"routes": [route("c", "/c", self.up, {"cors": {
            "allow_origins_by_regex": ["^http://[a-z]+\\.test\\.com$"]}})]})
        r = get(gw, "/c", headers={"Origin": "http://a.test.com"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "http://a.test.com")
        for h in ({"Origin": "http://a.test2.com"}, {}):
            r = get(gw, "/c", headers=h)
            self.assertNotIn("access-control-allow-origin", r.headers, h)

    def test_schema_as_apisix(self):
        gw = self.gateway({"routes": [
            route("cors-tao", "/a", self.up, {"cors": {"allow_credential": True, "allow_origins": "http://a.example",
                                                     "allow_methods": "GET", "allow_headers": "X",
                                                     "timing_allow_origins": "*"}}),
            route("cors-pat", "/b", self.up, {"cors": {"allow_origins": "http://a.example, http://b.example"}}),
        ]})
        self.assertEqual(get(gw, "/a").status, 404)
        self.assertEqual(get(gw, "/b").status, 404)
        self.assert_log(gw, "cors-tao", "you can not set '*' for other option when 'allow_credential' is true")
        self.assert_log(gw, "cors-pat", "allow_origins", "failed to match pattern")


# --------------------------------------------------------------------------
# fault-injection


class FaultInjectionApisixTest(PluginTestCase):
    def test_numeric_header_values_and_variables(self):
        # fault-injection.lua: header values are strings or numbers (a number
        # goes out as Lua prints it); strings and the body go through
        # core.utils.resolve_var (with its ?? default).
        gw = self.gateway({"routes": [route("fi", "/fi", self.up, {"fault-injection": {"abort": {
            "http_status": 403, "body": "who=${arg_who ?? nobody}",
            "headers": {"X-Int": 10, "X-Float": 1.5, "X-Var": "$arg_who"}}}})]})
        r = get(gw, "/fi")
        self.assertEqual((r.status, r.body), (403, b"who=nobody"))
        self.assertEqual(r.headers.get("x-int"), "10")
        self.assertEqual(r.headers.get("x-float"), "1.5")
        r = get(gw, "/fi?who=me")
        self.assertEqual(r.body, b"who=me")
        self.assertEqual(r.headers.get("x-var"), "me")

    def test_header_name_with_colon_rejected(self):
        gw = self.gateway({"routes": [route("fi-bad", "/fi", self.up, {"fault-injection": {"abort": {
            "http_status": 403, "headers": {"X:Y": "1"}}}})]})
        self.assertEqual(get(gw, "/fi").status, 404)
        self.assert_log(gw, "fi-bad", "headers")


if __name__ == "__main__":
    unittest.main()
