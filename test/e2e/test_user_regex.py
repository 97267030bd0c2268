"""User regular expressions follow PCRE, as APISIX's ngx.re (PCRE with JIT):
route vars `~~`/`~*`, proxy-rewrite and redirect regex_uri, response-rewrite
filters, cors allow_origins_by_regex. The patterns below use what RE2 rejects
(lookarounds, backreferences) or answers differently (`$` before a final
newline). A catastrophic pattern hits the match limit: APISIX's regex error,
500 in proxy-rewrite and redirect, false in vars, with a log line, while the
worker keeps serving other requests.
"""
import threading
import unittest

from test_plugins import PluginTestCase, call, get, route

# (a+)+$ against a's followed by a 'b' backtracks through 2^n splits; the
# match limit ends it. 40 a's is far beyond what finishes unbounded.
CATASTROPHIC_PATH = "/" + "a" * 40 + "b"


class VarsRegexTest(PluginTestCase):
    def test_lookahead_routes_and_match_limit_is_false(self):
        other = self.upstream("up2")
        gw = self.gateway({"routes": [
            route("look", "/*", self.up, vars=[["uri", "~~", "^/(?=a)(a+)+$"]], priority=10),
            route("rest", "/*", other),
        ]})
        r = get(gw, "/aaaa")
        self.assertEqual(r.headers.get("x-upstream"), "up1", r)
        self.assertEqual(get(gw, "/baaa").headers.get("x-upstream"), "up2")
        # The limit makes the comparison false: the next route serves it.
        r = get(gw, CATASTROPHIC_PATH)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-upstream"), "up2", r)
        self.assert_log(gw, "vars", "match limit")

    def test_case_insensitive_backreference_and_final_newline(self):
        gw = self.gateway({"routes": [
            route("ci", "/*", self.up, vars=[["http_x_pair", "~*", "^(\\w+)-\\1$"]], priority=5),
            route("nl", "/nl/*", self.up, vars=[["uri", "~~", "^/nl/a$"]]),
        ]})
        self.assertEqual(get(gw, "/x", headers={"X-Pair": "ab-AB"}).status, 200)
        self.assertEqual(get(gw, "/x", headers={"X-Pair": "ab-cd"}).status, 404)
        # PCRE's `$` also matches before a final newline (%0A decodes into $uri).
        self.assertEqual(get(gw, "/nl/a%0A").status, 200)
        self.assertEqual(get(gw, "/nl/a%0Ab").status, 404)

    def test_invalid_regex_rejects_the_route_with_the_reason(self):
        gw = self.gateway({"routes": [
            route("bad-re", "/bad", self.up, vars=[["uri", "~~", "^/(a"]]),
            route("ok", "/ok", self.up),
        ]})
        self.assertEqual(get(gw, "/bad").status, 404)
        self.assertEqual(get(gw, "/ok").status, 200)
        self.assert_log(gw, "bad-re", "missing closing parenthesis")


class ProxyRewriteRegexTest(PluginTestCase):
    def test_backreference_rewrites(self):
        gw = self.gateway({"routes": [route("pr", "/*", self.up, {"proxy-rewrite": {
            "regex_uri": ["^/(\\w+)/\\1/(.*)$", "/dup/${1}/$2", "^/(?<!x)(\\w+)$", "/one/$1"]}})]})
        r = get(gw, "/v1/v1/users?q=1")
        self.assertEqual(r.json()["path"], "/dup/v1/users?q=1", r)
        self.assertEqual(get(gw, "/v1/v2/users").json()["path"], "/v1/v2/users")
        self.assertEqual(get(gw, "/solo").json()["path"], "/one/solo")

    def test_match_limit_answers_500_and_others_are_served(self):
        gw = self.gateway({"routes": [
            route("cat", "/*", self.up, {"proxy-rewrite": {"regex_uri": ["^/(a+)+$", "/x"]}}),
        ]})
        hostile = []

        def attack():
            for _ in range(5):
                hostile.append(get(gw, CATASTROPHIC_PATH, timeout=20))

        t = threading.Thread(target=attack)
        t.start()
        served = [get(gw, "/aaa", timeout=20) for _ in range(10)]
        t.join()
        for r in served:
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["path"], "/x")
        self.assertEqual(len(hostile), 5)
        for r in hostile:
            self.assertEqual(r.status, 500, r)
            self.assertIn("match limit", r.json()["error_msg"])
            self.assert_not_from_upstream(r)
        self.assert_log(gw, "proxy-rewrite", "failed to match the uri", "match limit")

    def test_invalid_template_rejects_the_route(self):
        gw = self.gateway({"routes": [
            route("bad-t", "/bad/*", self.up, {"proxy-rewrite": {"regex_uri": ["^/bad/(.*)", "/${1"]}}),
            route("ok", "/ok", self.up),
        ]})
        self.assertEqual(get(gw, "/bad/x").status, 404)
        self.assertEqual(get(gw, "/ok").status, 200)
        self.assert_log(gw, "bad-t", "invalid replacement template")


class RedirectRegexTest(PluginTestCase):
    def test_lookbehind_captures_and_match_limit(self):
        gw = self.gateway({"routes": [
            route("r", "/img/*", self.up, {"redirect": {"regex_uri": ["(?<=/img/)(\\w+)\\.png$", "${1}.webp"]}}),
            route("cat", "/*", self.up, {"redirect": {"regex_uri": ["^/(a+)+$", "/x"]}}),
        ]})
        r = get(gw, "/img/cat.png")
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.headers.get("location"), "/img/cat.webp")
        r = get(gw, CATASTROPHIC_PATH)
        self.assertEqual(r.status, 500, r)
        self.assertNotIn("location", r.headers)
        self.assert_log(gw, "redirect", "match limit")
        self.assertEqual(get(gw, "/aaa").headers.get("location"), "/x")


class ResponseRewriteRegexTest(PluginTestCase):
    def test_filter_with_lookahead_and_options(self):
        gw = self.gateway({"routes": [route("rr", "/*", self.up, {"response-rewrite": {"filters": [
            {"regex": "rr-(?=look)", "replace": "RR-", "scope": "global"},
            {"regex": "UP1", "replace": "[$0]", "options": "ijo"},
        ]}})]})
        r = get(gw, "/rr-look/rr-x")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"/RR-look/rr-x", r.body)
        self.assertIn(b"[up1]", r.body)

    def test_unknown_option_rejects_the_route(self):
        gw = self.gateway({"routes": [
            route("bad-o", "/bad", self.up, {"response-rewrite": {"filters": [
                {"regex": "a", "replace": "b", "options": "jz"}]}}),
            route("ok", "/ok", self.up),
        ]})
        self.assertEqual(get(gw, "/bad").status, 404)
        self.assertEqual(get(gw, "/ok").status, 200)
        self.assert_log(gw, "bad-o", "unknown regex option")


class CorsRegexTest(PluginTestCase):
    def test_origin_regex_with_negative_lookahead(self):
        gw = self.gateway({"routes": [route("c", "/c", self.up, {"cors": {
            "allow_origins": "http://fixed.example",
            "allow_origins_by_regex": ["^https://(?!evil)[a-z]+\\.example\\.com$"]}})]})
        r = get(gw, "/c", headers={"Origin": "https://app.example.com"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "https://app.example.com", r)
        r = get(gw, "/c", headers={"Origin": "https://evilapp.example.com"})
        self.assertNotIn("access-control-allow-origin", r.headers, r)


if __name__ == "__main__":
    unittest.main()
