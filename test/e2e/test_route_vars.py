"""Route matching on request variables APISIX reads lazily while routing, and
on paths with an encoded slash (APISIX 3.x apisix/core/ctx.lua and init.lua):

- $arg_NAME is decoded as ngx.req.get_uri_args decodes it (%XX, '+').
- $post_arg_NAME reads a form body, $post_arg.a.b a JSON (or form) body
  (core.request.get_request_body_table); the body is read before routing,
  up to apisix.max_post_args_readable_size, and still reaches the origin
  whole; larger bodies stream and those variables are unset for them.
- apisix.match_uri_encoded_slash: %2F stays inside one path parameter
  (t/router/radixtree-uri-with-parameter-encoded-slash.t).
- the parameter router checks a route's hosts, and its service's
  (t/router/radixtree-uri-with-parameter.t TEST 10-11)."""
import hashlib
import json
import socket
import unittest
import urllib.parse

from harness import GatewayTest


def send(port, raw, read_until_close=False):
    """Sends raw bytes on a new connection; returns everything read until the
    server closes or one response with a Content-Length is complete."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(raw)
        return read_response(s)
    finally:
        s.close()


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    # Interim 100 Continue heads come first.
    while head.startswith(b"HTTP/1.1 100"):
        data = rest
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def status_and_json(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, (json.loads(body) if body.startswith(b"{") else body)


def post(port, path, body, ctype, chunked=False, expect=False):
    h = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {ctype}\r\n"
    if expect:
        h += "Expect: 100-continue\r\n"
    if chunked:
        h += "Transfer-Encoding: chunked\r\n\r\n"
        payload = b""
        for i in range(0, len(body), 1000):
            part = body[i:i + 1000]
            payload += b"%x\r\n%s\r\n" % (len(part), part)
        payload += b"0\r\n\r\n"
    else:
        h += f"Content-Length: {len(body)}\r\n\r\n"
        payload = body
    return status_and_json(send(port, h.encode() + payload))


class BodyVarsTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.a = self.upstream("by-vars")
        self.b = self.upstream("fallback")

    def routes(self, vars_):
        return {"routes": [
            {"id": "v", "uri": "/p", "priority": 1, "vars": vars_, "upstream": {"nodes": {self.a.addr: 1}}},
            {"id": "f", "uri": "/p", "upstream": {"nodes": {self.b.addr: 1}}},
        ]}

    def test_post_arg_form(self):
        # ctx.lua: post_arg_NAME only for application/x-www-form-urlencoded,
        # the first value of a repeated key, decoded.
        gw = self.gateway(self.routes([["post_arg_name", "==", "jack x"]]))
        form = "application/x-www-form-urlencoded"
        st, j = post(gw.port, "/p", b"age=3&name=j%61ck+x&name=rose", form)
        self.assertEqual((st, j["server"]), (200, "by-vars"))
        st, j = post(gw.port, "/p", b"name=rose&name=jack+x", form)
        self.assertEqual(j["server"], "fallback")
        st, j = post(gw.port, "/p", b'{"name":"jack x"}', "application/json")
        self.assertEqual(j["server"], "fallback")
        # The body the router read still reaches the origin whole.
        body = b"name=jack+x&pad=" + b"z" * 50000
        st, j = post(gw.port, "/p", body, form)
        self.assertEqual((j["server"], j["body_size"], j["body_sha256"]),
                         ("by-vars", len(body), hashlib.sha256(body).hexdigest()))

    def test_post_arg_json_path_chunked_and_expect(self):
        # ctx.lua post_arg.a.b: the body as a table (JSON here), walked by
        # dotted keys; numbers as Lua prints them.
        gw = self.gateway(self.routes([["post_arg.user.name", "==", "jack"], ["post_arg.n", ">", 2]]))
        body = json.dumps({"user": {"name": "jack"}, "n": 3, "pad": "y" * 30000}).encode()
        for chunked in (False, True):
            for expect in (False, True):
                st, j = post(gw.port, "/p", body, "application/json", chunked=chunked, expect=expect)
                self.assertEqual((st, j["server"], j["body_size"]), (200, "by-vars", len(body)),
                                 (chunked, expect))
        st, j = post(gw.port, "/p", json.dumps({"user": {"name": "rose"}, "n": 3}).encode(), "application/json")
        self.assertEqual(j["server"], "fallback")
        st, j = post(gw.port, "/p", b"{not json", "application/json")
        self.assertEqual(j["server"], "fallback")

    def test_body_over_the_cap_streams_and_the_vars_are_unset(self):
        gw = self.gateway(self.routes([["post_arg_name", "==", "jack"]]),
                          config={"apisix": {"max_post_args_readable_size": 1}})
        form = "application/x-www-form-urlencoded"
        big = b"name=jack&pad=" + b"z" * (1 << 20)
        for chunked in (False, True):
            st, j = post(gw.port, "/p", big, form, chunked=chunked)
            self.assertEqual((st, j["server"], j["body_size"], j["body_sha256"]),
                             (200, "fallback", len(big), hashlib.sha256(big).hexdigest()), chunked)
        small = b"name=jack&pad=" + b"z" * 1000
        self.assertEqual(post(gw.port, "/p", small, form, chunked=True)[1]["server"], "by-vars")

    def test_pipelined_requests_after_a_read_body(self):
        # The body read for the router ends exactly where the next request begins.
        gw = self.gateway(self.routes([["post_arg_name", "==", "jack"]]))
        one = (b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               b"Content-Length: 9\r\n\r\nname=jack")
        two = b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n"
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        try:
            s.sendall(one + two)
            self.assertEqual(status_and_json(read_response(s))[1]["server"], "by-vars")
            self.assertEqual(status_and_json(read_response(s))[1]["server"], "fallback")
        finally:
            s.close()

    def test_graphql_vars(self):
        # t/router/graphql.t: the first operation's type, name and root fields,
        # from a POST body (raw, or the "query" of a JSON body) or a GET's ?query=.
        gw = self.gateway(self.routes([["graphql_operation", "==", "query"], ["graphql_name", "==", "repo"],
                                       ["graphql_root_fields", "has", "owner"]]))
        doc = 'query repo { owner { name } repository(name: "holdfast") { id } }'
        st, j = post(gw.port, "/p", doc.encode(), "application/graphql")
        self.assertEqual((st, j["server"], j["body_size"]), (200, "by-vars", len(doc)))
        self.assertEqual(post(gw.port, "/p", json.dumps({"query": doc}).encode(), "application/json")[1]["server"],
                         "by-vars")
        q = urllib.parse.quote(doc)
        st, j = status_and_json(send(gw.port, f"GET /p?query={q} HTTP/1.1\r\nHost: t\r\n\r\n".encode()))
        self.assertEqual(j["server"], "by-vars")
        for other in ("mutation repo { owner }", "query repo { repository { id } }", "query repo { owner ",
                      "query other { owner }"):
            self.assertEqual(post(gw.port, "/p", other.encode(), "application/graphql")[1]["server"], "fallback",
                             other)

    def test_arg_is_decoded(self):
        # ctx.lua arg_NAME reads ngx.req.get_uri_args: %XX and '+' decoded.
        gw = self.gateway(self.routes([["arg_q", "==", "a b/c"]]))
        for q in ("a%20b%2Fc", "a+b/c"):
            st, j = status_and_json(send(gw.port, f"GET /p?x=1&q={q} HTTP/1.1\r\nHost: t\r\n\r\n".encode()))
            self.assertEqual(j["server"], "by-vars", q)
        st, j = status_and_json(send(gw.port, b"GET /p?q=a%2520b HTTP/1.1\r\nHost: t\r\n\r\n"))
        self.assertEqual(j["server"], "fallback")


class EncodedSlashTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.upstream("origin")

    def get(self, gw, path, host="t"):
        return status_and_json(send(gw.port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()))

    def test_encoded_slash_stays_in_one_parameter(self):
        gw = self.gateway({"routes": [
            {"id": "1", "uri": "/v1/:id/list", "upstream": {"nodes": {self.up.addr: 1}},
             "plugins": {"proxy-rewrite": {"headers": {"set": {"X-Id": "$uri_param_id"}}}}},
            {"id": "2", "uri": "/echo/:id", "upstream": {"nodes": {self.up.addr: 1}}},
        ]}, config={"apisix": {"router": {"http": "radixtree_uri_with_parameter"}, "match_uri_encoded_slash": True}})
        for raw in ("te%2Fst", "te%2fst"):
            st, j = self.get(gw, f"/v1/{raw}/list")
            self.assertEqual(st, 200, raw)
            # The parameter keeps the slash encoded (uppercase); proxy-rewrite,
            # as APISIX's, sends uri_safe_encode($uri), where it is a '/'.
            self.assertEqual(j["headers"]["x-id"], "te%2Fst")
            self.assertEqual(j["path"], "/v1/te/st/list")
        # Without a rewrite the upstream gets the path as the client sent it.
        st, j = self.get(gw, "/echo/a%2Fb")
        self.assertEqual((st, j["path"]), (200, "/echo/a%2Fb"))
        # Normalised paths (dot segments) route on $uri, as APISIX.
        self.assertEqual(self.get(gw, "/v1/x%2Fy/../y/list")[0], 404)

    def test_without_the_option_a_decoded_slash_splits_the_parameter(self):
        gw = self.gateway({"routes": [{"id": "2", "uri": "/echo/:id", "upstream": {"nodes": {self.up.addr: 1}}}]},
                          config={"apisix": {"router": {"http": "radixtree_uri_with_parameter"}}})
        self.assertEqual(self.get(gw, "/echo/a%2Fb")[0], 404)
        self.assertEqual(self.get(gw, "/echo/ab")[0], 200)

    def test_parameter_router_checks_service_hosts(self):
        # t/router/radixtree-uri-with-parameter.t TEST 10-11.
        other = self.upstream("other")
        gw = self.gateway({
            "services": [{"id": "s", "hosts": ["bar.com"]}],
            "routes": [
                {"id": "1", "uri": "/:name/hello", "service_id": "s", "upstream": {"nodes": {self.up.addr: 1}}},
                {"id": "2", "uri": "/:name/hello", "priority": -1, "upstream": {"nodes": {other.addr: 1}}},
                {"id": "3", "uri": "/own/:x", "hosts": ["foo.com"], "upstream": {"nodes": {self.up.addr: 1}}},
            ]}, config={"apisix": {"router": {"http": "radixtree_uri_with_parameter"}}})
        self.assertEqual(self.get(gw, "/john/hello", "bar.com")[1]["server"], "origin")
        self.assertEqual(self.get(gw, "/john/hello", "www.foo.com")[1]["server"], "other")
        self.assertEqual(self.get(gw, "/own/1", "foo.com")[0], 200)
        self.assertEqual(self.get(gw, "/own/1", "bar.com")[0], 404)


if __name__ == "__main__":
    unittest.main()
