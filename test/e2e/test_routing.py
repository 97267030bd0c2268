"""Routing rules over real sockets, one test per rule (APISIX_COMPAT.md §3).

Every route sends the request to the same echo upstream and adds an
`X-Route: <route id>` request header through proxy-rewrite, so the echoed
headers tell which route matched. A request that matches nothing gets the
APISIX 404.
"""
import json
import unittest

from harness import GatewayTest

NOT_FOUND = {"error_msg": "404 Route Not Found"}


def rt(rid, uri=None, **kw):
    """A route that tags the upstream request with X-Route: rid. The
    upstream node is filled in by RoutingTest.start()."""
    r = {"id": rid, "plugins": {"proxy-rewrite": {"headers": {"set": {"X-Route": rid}}}}}
    if uri is not None:
        r["uri"] = uri
    r.update(kw)
    return r


class RoutingTest(GatewayTest):
    def start(self, routes, config=None, services=None):
        self.up = self.upstream("echo")
        for r in routes:
            if "service_id" not in r and "upstream" not in r:
                r["upstream"] = {"nodes": {self.up.addr: 1}}
        res = {"routes": routes}
        if services is not None:
            for s in services:
                s.setdefault("upstream", {"nodes": {self.up.addr: 1}})
            res["services"] = services
        return self.gateway(res, config=config)

    def hit(self, gw, path, method="GET", host=None, headers=None):
        """The id of the route that served the request, or the status code
        when the gateway answered by itself (404 must carry the APISIX body)."""
        h = dict(headers or {})
        if host is not None:
            h["Host"] = host
        r = gw.request(method, path, headers=h)
        if r.status == 404:
            self.assertEqual(r.json(), NOT_FOUND, f"{method} {path} host={host}: {r}")
            return 404
        if r.status != 200:
            return r.status
        body = r.json()
        self.assertEqual(body["server"], "echo", r)
        return body["headers"].get("x-route", "<untagged>")

    # --- path stage -----------------------------------------------------

    def test_exact_beats_prefix_regardless_of_priority(self):
        gw = self.start([
            rt("prefix", "/foo*", priority=100),
            rt("exact", "/foo", priority=-100),
        ])
        self.assertEqual(self.hit(gw, "/foo"), "exact")
        self.assertEqual(self.hit(gw, "/foo/x"), "prefix")
        self.assertEqual(self.hit(gw, "/foobar"), "prefix")

    def test_longest_prefix_wins(self):
        gw = self.start([
            rt("a", "/a/*", priority=50),
            rt("abc", "/a/b/c/*", priority=-10),
            rt("ab", "/a/b/*", priority=0),
            rt("root", "/*", priority=99),
        ])
        self.assertEqual(self.hit(gw, "/a/b/c/d"), "abc")
        self.assertEqual(self.hit(gw, "/a/b/c/"), "abc")
        self.assertEqual(self.hit(gw, "/a/b/x"), "ab")
        self.assertEqual(self.hit(gw, "/a/x"), "a")
        self.assertEqual(self.hit(gw, "/z"), "root")

    def test_priority_decides_between_routes_on_same_path(self):
        gw = self.start([
            rt("low", "/p", priority=1),
            rt("high", "/p", priority=5),
            rt("first", "/same"),
            rt("second", "/same"),
            rt("plow", "/q/*", priority=-1),
            rt("phigh", "/q/*", priority=3),
            # the higher priority route is skipped when its predicate fails
            rt("post-only", "/m", priority=10, methods=["POST"]),
            rt("fallback", "/m", priority=0),
        ])
        self.assertEqual(self.hit(gw, "/p"), "high")
        self.assertEqual(self.hit(gw, "/same"), "first")  # equal priority: file order
        self.assertEqual(self.hit(gw, "/q/x"), "phigh")
        self.assertEqual(self.hit(gw, "/m"), "fallback")
        self.assertEqual(self.hit(gw, "/m", method="POST"), "post-only")

    def test_uris_list(self):
        gw = self.start([rt("multi", uris=["/one", "/two/*"]), rt("other", "/three")])
        self.assertEqual(self.hit(gw, "/one"), "multi")
        self.assertEqual(self.hit(gw, "/two/x/y"), "multi")
        self.assertEqual(self.hit(gw, "/three"), "other")
        self.assertEqual(self.hit(gw, "/one/x"), 404)  # /one is exact
        self.assertEqual(self.hit(gw, "/two"), 404)   # /two/* does not match /two

    def test_prefix_star_forms(self):
        gw = self.start([rt("foo", "/foo*"), rt("bar", "/bar/*")])
        self.assertEqual(self.hit(gw, "/foo"), "foo")
        self.assertEqual(self.hit(gw, "/foo/x"), "foo")
        self.assertEqual(self.hit(gw, "/foobar"), "foo")
        self.assertEqual(self.hit(gw, "/fo"), 404)
        self.assertEqual(self.hit(gw, "/bar/x"), "bar")
        self.assertEqual(self.hit(gw, "/bar/"), "bar")
        self.assertEqual(self.hit(gw, "/bar"), 404)
        self.assertEqual(self.hit(gw, "/barx"), 404)

    def test_query_string_is_not_part_of_the_path(self):
        gw = self.start([rt("exact", "/q")])
        self.assertEqual(self.hit(gw, "/q?x=1&y=/z"), "exact")
        self.assertEqual(self.hit(gw, "/q/?x=1"), 404)

    # --- host stage (radixtree_host_uri) ------------------------------

    def test_exact_host(self):
        gw = self.start([rt("api", "/h", hosts=["api.example.com"])])
        self.assertEqual(self.hit(gw, "/h", host="api.example.com"), "api")
        self.assertEqual(self.hit(gw, "/h", host="api.example.com:8080"), "api")  # port is not part of $host
        self.assertEqual(self.hit(gw, "/h", host="API.Example.COM"), "api")       # $host is lowercased
        self.assertEqual(self.hit(gw, "/h", host="other.example.com"), 404)
        self.assertEqual(self.hit(gw, "/h", host="example.com"), 404)

    def test_host_with_trailing_dot(self):
        # nginx drops one trailing dot from $host (ngx_http_validate_host)
        gw = self.start([rt("api", "/h", hosts=["api.example.com"]), rt("nohost", "/h")])
        self.assertEqual(self.hit(gw, "/h", host="api.example.com."), "api")
        self.assertEqual(self.hit(gw, "/h", host="api.example.com.:8080"), "api")

    def test_absolute_form_target_supplies_the_host(self):
        # RFC 9112 3.2.2: with an absolute-form target the Host header is
        # ignored; nginx sets $host from the request line.
        gw = self.start([rt("api", "/h", hosts=["api.example.com"]), rt("nohost", "/h")])
        out = gw.raw(b"GET http://api.example.com/h?x=1 HTTP/1.1\r\nHost: other.example.org\r\n"
                     b"Connection: close\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), out[:300])
        self.assertEqual(json.loads(body)["headers"].get("x-route"), "api")

    def test_request_without_host_uses_hostless_routes(self):
        gw = self.start([rt("api", "/h", hosts=["api.example.com"]), rt("nohost", "/h"),
                         rt("api-only", "/api-only", hosts=["api.example.com"])])
        out = gw.raw(b"GET /h HTTP/1.0\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        self.assertEqual(json.loads(body)["headers"].get("x-route"), "nohost")
        out = gw.raw(b"GET /api-only HTTP/1.0\r\n\r\n")
        self.assertIn(b" 404 ", out.split(b"\r\n")[0])

    def test_single_host_field(self):
        gw = self.start([rt("single", "/h", host="one.example.com")])
        self.assertEqual(self.hit(gw, "/h", host="one.example.com"), "single")
        self.assertEqual(self.hit(gw, "/h", host="two.example.com"), 404)

    def test_wildcard_host_matches_any_depth(self):
        gw = self.start([rt("wild", "/h", hosts=["*.example.com"])])
        self.assertEqual(self.hit(gw, "/h", host="a.example.com"), "wild")
        self.assertEqual(self.hit(gw, "/h", host="a.b.example.com"), "wild")
        self.assertEqual(self.hit(gw, "/h", host="example.com"), 404)
        self.assertEqual(self.hit(gw, "/h", host="badexample.com"), 404)
        self.assertEqual(self.hit(gw, "/h", host="a.example.org"), 404)

    def test_exact_host_beats_wildcard_and_longer_wildcard_beats_shorter(self):
        gw = self.start([
            rt("wild", "/h", hosts=["*.example.com"], priority=100),
            rt("wild-b", "/h", hosts=["*.b.example.com"], priority=50),
            rt("exact", "/h", hosts=["a.b.example.com"], priority=-100),
        ])
        self.assertEqual(self.hit(gw, "/h", host="a.b.example.com"), "exact")
        self.assertEqual(self.hit(gw, "/h", host="c.b.example.com"), "wild-b")
        self.assertEqual(self.hit(gw, "/h", host="c.example.com"), "wild")

    def test_host_route_beats_hostless_route_whatever_the_priority(self):
        gw = self.start([
            rt("nohost", "/h", priority=1000),
            rt("withhost", "/h", hosts=["api.example.com"], priority=-1000),
            # even a host route's prefix beats a host-less exact path
            rt("nohost-exact", "/x/y", priority=1000),
            rt("host-prefix", "/x/*", hosts=["api.example.com"]),
        ])
        self.assertEqual(self.hit(gw, "/h", host="api.example.com"), "withhost")
        self.assertEqual(self.hit(gw, "/h", host="other.com"), "nohost")
        self.assertEqual(self.hit(gw, "/x/y", host="api.example.com"), "host-prefix")
        self.assertEqual(self.hit(gw, "/x/y", host="other.com"), "nohost-exact")

    def test_host_route_falls_back_to_hostless_when_its_path_does_not_match(self):
        gw = self.start([
            rt("withhost", "/only-here", hosts=["api.example.com"]),
            rt("nohost", "/*"),
        ])
        self.assertEqual(self.hit(gw, "/only-here", host="api.example.com"), "withhost")
        self.assertEqual(self.hit(gw, "/elsewhere", host="api.example.com"), "nohost")

    def test_service_hosts_used_when_route_has_none(self):
        services = [{"id": "svc", "hosts": ["svc.example.com"]}]
        gw = self.start([
            rt("via-service", "/s", service_id="svc"),
            rt("own-hosts", "/o", service_id="svc", hosts=["own.example.com"]),
        ], services=services)
        self.assertEqual(self.hit(gw, "/s", host="svc.example.com"), "via-service")
        self.assertEqual(self.hit(gw, "/s", host="other.example.com"), 404)
        # the route's own hosts replace the service's
        self.assertEqual(self.hit(gw, "/o", host="own.example.com"), "own-hosts")
        self.assertEqual(self.hit(gw, "/o", host="svc.example.com"), 404)

    def test_configured_hosts_are_case_insensitive(self):
        # APISIX lowercases route and service hosts when it loads them
        # (apisix/router.lua, apisix/http/service.lua) and matches them
        # against $host: t/node/route-host.t TEST 7-9 (replay route-host#8, #9).
        services = [{"id": "svc", "hosts": ["SVC.Example.com"]}]
        gw = self.start([
            rt("upper", "/h", hosts=["FOO.com"]),
            rt("single", "/one", host="One.Example.com"),
            rt("wild", "/w", hosts=["*.Example.ORG"]),
            rt("via-service", "/s", service_id="svc"),
        ], services=services)
        self.assertEqual(self.hit(gw, "/h", host="foo.com"), "upper")
        self.assertEqual(self.hit(gw, "/h", host="FOO.com"), "upper")
        self.assertEqual(self.hit(gw, "/h", host="bar.com"), 404)
        self.assertEqual(self.hit(gw, "/one", host="one.example.com"), "single")
        self.assertEqual(self.hit(gw, "/w", host="a.example.org"), "wild")
        self.assertEqual(self.hit(gw, "/s", host="svc.example.com"), "via-service")

    def test_route_with_missing_service_answers_404_and_hides_lower_routes(self):
        # APISIX keeps a route whose service_id names no service in the
        # router (http/router/radixtree_host_uri.lua: "missing service won't
        # affect the route matching"); when it matches, init.lua answers a
        # bare 404 (nginx's HTML page) before any plugin runs, and no other
        # route is tried: t/node/not-exist-service.t TEST 2 (replay
        # not-exist-service#2).
        gw = self.start([
            rt("ghost", "/hello", service_id="no-such-service", priority=10),
            rt("lower", "/hello", priority=0),
            rt("prefix", "/*"),
        ])
        r = gw.get("/hello")
        self.assertEqual(r.status, 404, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/html"), r)
        self.assertIn(b"<title>404 Not Found</title>", r.body)
        self.assertIn(b"<center><h1>404 Not Found</h1></center>", r.body)
        self.assertEqual(self.hit(gw, "/other"), "prefix")
        self.assertIn("failed to fetch service configuration by id: no-such-service", gw.logs())

    # --- radixtree_uri: hosts are a predicate ---------------------------

    def test_radixtree_uri_router_checks_hosts_as_predicate(self):
        gw = self.start([
            # in radixtree_uri, host routes get no precedence: priority decides
            rt("nohost", "/h", priority=10),
            rt("withhost", "/h", hosts=["a.example.com"], priority=0),
            rt("wild", "/w", hosts=["*.example.com"]),
            rt("mixed-case", "/c", hosts=["API.Example.com"]),
            rt("with-port", "/p", hosts=["p.example.com:8080"]),
            rt("hosted-high", "/k", hosts=["k.example.com"], priority=10),
            rt("hostless-low", "/k", priority=0),
        ], config={"apisix": {"router": {"http": "radixtree_uri"}}})
        self.assertEqual(self.hit(gw, "/h", host="a.example.com"), "nohost")
        self.assertEqual(self.hit(gw, "/w", host="x.example.com"), "wild")
        self.assertEqual(self.hit(gw, "/w", host="x.y.example.com"), "wild")
        self.assertEqual(self.hit(gw, "/w", host="example.com"), 404)
        self.assertEqual(self.hit(gw, "/w", host="other.org"), 404)
        self.assertEqual(self.hit(gw, "/c", host="api.example.com"), "mixed-case")  # lowercased by this router
        self.assertEqual(self.hit(gw, "/p", host="p.example.com:8080"), "with-port")
        self.assertEqual(self.hit(gw, "/p", host="p.example.com"), 404)
        self.assertEqual(self.hit(gw, "/k", host="k.example.com"), "hosted-high")
        self.assertEqual(self.hit(gw, "/k", host="z.example.com"), "hostless-low")

    # --- other predicates ------------------------------------------------

    def test_methods(self):
        gw = self.start([
            rt("get-post", "/m", methods=["GET", "POST"]),
            rt("delete", "/m", methods=["DELETE"]),
            rt("any", "/any"),
        ])
        self.assertEqual(self.hit(gw, "/m"), "get-post")
        self.assertEqual(self.hit(gw, "/m", method="POST"), "get-post")
        self.assertEqual(self.hit(gw, "/m", method="DELETE"), "delete")
        self.assertEqual(self.hit(gw, "/m", method="PUT"), 404)
        self.assertEqual(self.hit(gw, "/m", method="PATCH"), 404)
        for m in ("GET", "PUT", "PATCH", "OPTIONS"):
            self.assertEqual(self.hit(gw, "/any", method=m), "any", m)

    def test_any_method_token_is_routable(self):
        # A route without `methods` matches any method (lua-resty-radixtree
        # checks methods only when the route lists some); a route's own list
        # takes APISIX's enum, which includes PURGE (schema_def.lua).
        gw = self.start([
            rt("purge-only", "/p", methods=["PURGE"]),
            rt("any", "/any"),
        ])
        for m in ("PURGE", "MKCOL", "BREW"):
            r = gw.request(m, "/any")
            self.assertEqual(r.status, 200, f"{m}: {r}")
            body = r.json()
            self.assertEqual((body["method"], body["headers"].get("x-route")), (m, "any"))
        self.assertEqual(self.hit(gw, "/p", method="PURGE"), "purge-only")
        self.assertEqual(self.hit(gw, "/p", method="GET"), 404)
        self.assertEqual(self.hit(gw, "/p", method="MKCOL"), 404)

    def test_remote_addrs_cidr(self):
        gw = self.start([
            rt("ten", "/ra", remote_addrs=["10.0.0.0/8"], priority=10),
            rt("loopback", "/ra", remote_addrs=["127.0.0.0/8"]),
            rt("ten-only", "/ten", remote_addrs=["10.0.0.0/8", "192.168.0.0/16"]),
            rt("single", "/single", remote_addr="127.0.0.1"),
            rt("v6-and-v4", "/mixed", remote_addrs=["::1/128", "127.0.0.1/32"]),
            rt("wrong-host", "/wrong", remote_addr="127.0.0.2"),
        ])
        self.assertEqual(self.hit(gw, "/ra"), "loopback")
        self.assertEqual(self.hit(gw, "/ten"), 404)
        self.assertEqual(self.hit(gw, "/single"), "single")
        self.assertEqual(self.hit(gw, "/mixed"), "v6-and-v4")
        self.assertEqual(self.hit(gw, "/wrong"), 404)

    def test_remote_addr_and_forwarded_headers(self):
        # APISIX's default realip set-up (real_ip_header X-Real-IP, real_ip_from
        # 127.0.0.1): a loopback client's X-Real-IP is its address;
        # X-Forwarded-For is not read (t/node/remote_addrs.t 4).
        gw = self.start([rt("ten", "/ten", remote_addrs=["10.0.0.0/8"])])
        self.assertEqual(self.hit(gw, "/ten", headers={"X-Forwarded-For": "10.1.2.3"}), 404)
        self.assertEqual(self.hit(gw, "/ten", headers={"X-Real-IP": "10.1.2.3"}), "ten")

    # --- vars ------------------------------------------------------------

    def test_vars_equal_and_not_equal(self):
        gw = self.start([
            rt("eq", "/eq", vars=[["arg_name", "==", "jack"]]),
            rt("ne", "/ne", vars=[["http_x_env", "~=", "prod"]]),
            rt("two-elem", "/two", vars=[["arg_k", "v"]]),
            rt("num-eq", "/num", vars=[["arg_n", "==", 5]]),
        ])
        self.assertEqual(self.hit(gw, "/eq?name=jack"), "eq")
        self.assertEqual(self.hit(gw, "/eq?name=rose"), 404)
        self.assertEqual(self.hit(gw, "/eq"), 404)
        self.assertEqual(self.hit(gw, "/ne", headers={"X-Env": "dev"}), "ne")
        self.assertEqual(self.hit(gw, "/ne", headers={"X-Env": "prod"}), 404)
        self.assertEqual(self.hit(gw, "/ne"), "ne")  # nil ~= "prod"
        self.assertEqual(self.hit(gw, "/two?k=v"), "two-elem")
        self.assertEqual(self.hit(gw, "/two?k=w"), 404)
        self.assertEqual(self.hit(gw, "/num?n=5.0"), "num-eq")  # numeric right side: compared as numbers
        self.assertEqual(self.hit(gw, "/num?n=6"), 404)
        self.assertEqual(self.hit(gw, "/num?n=five"), 404)

    def test_vars_numeric_comparisons(self):
        gw = self.start([
            rt("range", "/age", vars=[["arg_age", ">", 18], ["arg_age", "<", 65]]),
            rt("ge-le", "/gl", vars=[["arg_v", ">=", 10], ["arg_v", "<=", 10]]),
        ])
        self.assertEqual(self.hit(gw, "/age?age=30"), "range")
        self.assertEqual(self.hit(gw, "/age?age=18"), 404)
        self.assertEqual(self.hit(gw, "/age?age=65"), 404)
        self.assertEqual(self.hit(gw, "/age?age=100"), 404)
        self.assertEqual(self.hit(gw, "/age?age=abc"), 404)
        self.assertEqual(self.hit(gw, "/age"), 404)
        self.assertEqual(self.hit(gw, "/gl?v=10"), "ge-le")
        self.assertEqual(self.hit(gw, "/gl?v=11"), 404)

    def test_vars_regex_case_sensitive_and_insensitive(self):
        gw = self.start([
            rt("re", "/re/*", vars=[["uri", "~~", "^/re/[0-9]+$"]]),
            rt("re-i", "/ri", vars=[["http_x_name", "~*", "^jo"]]),
            rt("re-cs", "/rc", vars=[["http_x_name", "~~", "^jo"]]),
        ])
        self.assertEqual(self.hit(gw, "/re/123"), "re")
        self.assertEqual(self.hit(gw, "/re/12a"), 404)
        self.assertEqual(self.hit(gw, "/ri", headers={"X-Name": "JOHN"}), "re-i")
        self.assertEqual(self.hit(gw, "/ri", headers={"X-Name": "mary"}), 404)
        self.assertEqual(self.hit(gw, "/ri"), 404)  # nil never matches a regex
        self.assertEqual(self.hit(gw, "/rc", headers={"X-Name": "john"}), "re-cs")
        self.assertEqual(self.hit(gw, "/rc", headers={"X-Name": "JOHN"}), 404)

    def test_vars_in_and_has(self):
        gw = self.start([
            rt("in", "/in", vars=[["arg_color", "in", ["red", "blue"]]]),
            rt("in-upper", "/IN", vars=[["arg_color", "IN", ["green"]]]),  # operators are case-insensitive
            rt("has", "/has", vars=[["http_x_tags", "has", "beta"]]),
        ])
        self.assertEqual(self.hit(gw, "/in?color=red"), "in")
        self.assertEqual(self.hit(gw, "/in?color=blue"), "in")
        self.assertEqual(self.hit(gw, "/in?color=green"), 404)
        self.assertEqual(self.hit(gw, "/in"), 404)
        self.assertEqual(self.hit(gw, "/IN?color=green"), "in-upper")
        # Holdfast reads a comma-separated value as the array for `has`
        self.assertEqual(self.hit(gw, "/has", headers={"X-Tags": "alpha, beta, gamma"}), "has")
        self.assertEqual(self.hit(gw, "/has", headers={"X-Tags": "alpha, betamax"}), 404)
        self.assertEqual(self.hit(gw, "/has"), 404)

    def test_vars_negation(self):
        gw = self.start([
            rt("not-jack", "/n", vars=[["arg_name", "!", "==", "jack"]]),
            rt("not-re", "/nr", vars=[["http_user_agent", "!", "~*", "bot"]]),
        ])
        self.assertEqual(self.hit(gw, "/n?name=rose"), "not-jack")
        self.assertEqual(self.hit(gw, "/n?name=jack"), 404)
        self.assertEqual(self.hit(gw, "/nr", headers={"User-Agent": "curl/8"}), "not-re")
        self.assertEqual(self.hit(gw, "/nr", headers={"User-Agent": "GoogleBot/2.1"}), 404)

    def test_vars_or_and_groups(self):
        gw = self.start([
            rt("or", "/or", vars=["OR", ["arg_a", "==", "1"], ["arg_b", "==", "1"]]),
            rt("nested", "/nested", vars=["OR",
                                          ["arg_x", "==", "1"],
                                          ["AND", ["arg_y", "==", "1"], ["arg_z", "==", "1"]]]),
            rt("not-or", "/notor", vars=["!OR", ["arg_a", "==", "1"], ["arg_b", "==", "1"]]),
            rt("and", "/and", vars=["AND", ["arg_a", "==", "1"], ["arg_b", "==", "1"]]),
        ])
        self.assertEqual(self.hit(gw, "/or?a=1"), "or")
        self.assertEqual(self.hit(gw, "/or?b=1"), "or")
        self.assertEqual(self.hit(gw, "/or?a=2&b=2"), 404)
        self.assertEqual(self.hit(gw, "/nested?x=1"), "nested")
        self.assertEqual(self.hit(gw, "/nested?y=1&z=1"), "nested")
        self.assertEqual(self.hit(gw, "/nested?y=1"), 404)
        self.assertEqual(self.hit(gw, "/notor?a=2"), "not-or")
        self.assertEqual(self.hit(gw, "/notor?b=1"), 404)
        self.assertEqual(self.hit(gw, "/and?a=1&b=1"), "and")
        self.assertEqual(self.hit(gw, "/and?a=1"), 404)

    def test_vars_logic_words_are_case_insensitive(self):
        # lua-resty-expr upper-cases the leading word (str_upper(rules[1]))
        gw = self.start([
            rt("or", "/or", vars=["or", ["arg_a", "==", "1"], ["arg_b", "==", "1"]]),
            rt("not-and", "/notand", vars=["!and", ["arg_a", "==", "1"], ["arg_b", "==", "1"]]),
        ])
        self.assertEqual(self.hit(gw, "/or?b=1"), "or")
        self.assertEqual(self.hit(gw, "/or?a=2"), 404)
        self.assertEqual(self.hit(gw, "/notand?a=1"), "not-and")
        self.assertEqual(self.hit(gw, "/notand?a=1&b=1"), 404)

    def test_vars_args_headers_cookies(self):
        gw = self.start([
            rt("hdr", "/hdr", vars=[["http_x_api_version", "==", "v2"]]),
            rt("cookie", "/ck", vars=[["cookie_session", "==", "abc"]]),
            rt("arg", "/arg", vars=[["arg_page", "==", "2"], ["arg_sort", "==", "asc"]]),
            rt("host-var", "/hv", vars=[["host", "==", "vars.example.com"]]),
        ])
        self.assertEqual(self.hit(gw, "/hdr", headers={"X-Api-Version": "v2"}), "hdr")
        self.assertEqual(self.hit(gw, "/hdr", headers={"X-API-VERSION": "v2"}), "hdr")
        self.assertEqual(self.hit(gw, "/hdr", headers={"X-Api-Version": "v1"}), 404)
        self.assertEqual(self.hit(gw, "/ck", headers={"Cookie": "a=1; session=abc; b=2"}), "cookie")
        self.assertEqual(self.hit(gw, "/ck", headers={"Cookie": "session=abcd"}), 404)
        self.assertEqual(self.hit(gw, "/ck", headers={"Cookie": "Session=abc"}), 404)  # cookie names are case-sensitive
        self.assertEqual(self.hit(gw, "/arg?sort=asc&page=2"), "arg")
        self.assertEqual(self.hit(gw, "/arg?page=2"), 404)
        self.assertEqual(self.hit(gw, "/hv", host="vars.example.com"), "host-var")
        self.assertEqual(self.hit(gw, "/hv", host="other.example.com"), 404)

    # --- status, parameters, 404 ------------------------------------------

    def test_status_zero_route_is_ignored(self):
        gw = self.start([
            rt("disabled", "/s", priority=100, status=0),
            rt("enabled", "/s", status=1),
            rt("only-disabled", "/d", status=0),
        ])
        self.assertEqual(self.hit(gw, "/s"), "enabled")
        self.assertEqual(self.hit(gw, "/d"), 404)

    def test_radixtree_uri_with_parameter(self):
        gw = self.start([
            rt("user", "/user/:id"),
            rt("user-posts", "/user/:id/posts/:pid"),
            rt("files", "/files/*path"),
            rt("me", "/user/me"),
            rt("static", "/static/*"),
        ], config={"apisix": {"router": {"http": "radixtree_uri_with_parameter"}}})
        self.assertEqual(self.hit(gw, "/user/42"), "user")
        self.assertEqual(self.hit(gw, "/user/bob"), "user")
        self.assertEqual(self.hit(gw, "/user/42/posts/7"), "user-posts")
        self.assertEqual(self.hit(gw, "/user/42/other"), 404)  # :id is one segment
        self.assertEqual(self.hit(gw, "/user/"), 404)          # :id cannot be empty
        self.assertEqual(self.hit(gw, "/files/a/b/c.txt"), "files")
        self.assertEqual(self.hit(gw, "/files/x"), "files")
        self.assertEqual(self.hit(gw, "/filesx"), 404)
        self.assertEqual(self.hit(gw, "/user/me"), "me")  # an exact path still beats a parameter
        self.assertEqual(self.hit(gw, "/static/css/a.css"), "static")

    def test_colon_is_literal_in_default_router(self):
        gw = self.start([rt("user", "/user/:id")])
        self.assertEqual(self.hit(gw, "/user/:id"), "user")
        self.assertEqual(self.hit(gw, "/user/42"), 404)

    def test_no_match_is_404_with_apisix_body(self):
        gw = self.start([rt("only", "/only", methods=["GET"])])
        for method, path in (("GET", "/nothing"), ("POST", "/only"), ("GET", "/only/")):
            r = gw.request(method, path)
            self.assertEqual(r.status, 404, (method, path))
            self.assertEqual(r.json(), NOT_FOUND)
            self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r)

    # --- URI preparation ---------------------------------------------------

    def test_delete_uri_tail_slash(self):
        routes = [rt("tail", "/tail"), rt("root", "/")]
        gw = self.start(routes, config={"apisix": {"delete_uri_tail_slash": True}})
        self.assertEqual(self.hit(gw, "/tail/"), "tail")
        self.assertEqual(self.hit(gw, "/tail"), "tail")
        self.assertEqual(self.hit(gw, "/tail/?a=1"), "tail")
        self.assertEqual(self.hit(gw, "/tail//"), "tail")  # slashes merged first, then one stripped
        self.assertEqual(self.hit(gw, "/"), "root")  # "/" itself is kept
        # off by default
        gw2 = self.gateway({"routes": [rt("tail", "/tail", upstream={"nodes": {self.up.addr: 1}})]})
        self.assertEqual(self.hit(gw2, "/tail/"), 404)
        self.assertEqual(self.hit(gw2, "/tail"), "tail")

    def test_percent_decoded_and_normalised_paths_match(self):
        gw = self.start([rt("hello", "/hello"), rt("sp", "/a b"), rt("deep", "/x/y/z")])
        for path in ("/a/../hello", "/%68ello", "/./hello", "//hello", "/a/b/../../hello", "/x/%2e%2e/hello",
                     "/x/./y/../../hello"):
            self.assertEqual(self.hit(gw, path), "hello", path)
        self.assertEqual(self.hit(gw, "/a%20b"), "sp")
        self.assertEqual(self.hit(gw, "/x%2Fy%2fz"), "deep")  # %2F is decoded before matching by default
        self.assertEqual(self.hit(gw, "/x/y/./z"), "deep")
        self.assertEqual(self.hit(gw, "/x//y/z"), "deep")
        self.assertEqual(self.hit(gw, "/a/../hello?q=1"), "hello")
        self.assertEqual(self.hit(gw, "/hello/../nothing"), 404)
        self.assertEqual(self.hit(gw, "/hello%3F"), 404)      # a decoded "?" is part of the path
        self.assertEqual(self.hit(gw, "/hello%3Fq=1"), 404)

    def test_dot_segments_above_root_are_400(self):
        gw = self.start([rt("all", "/*")])
        for path in ("/%2e%2e/hello", "/..", "/a/../../hello", "/%2E%2E/%2e%2e/etc/passwd",
                     "/bad%zzpercent", "/trunc%2"):
            r = gw.get(path)
            self.assertEqual(r.status, 400, (path, r))
            self.assertNotEqual(r.headers.get("x-upstream"), "echo")
        self.assertEqual(self.hit(gw, "/ok"), "all")


if __name__ == "__main__":
    unittest.main()
