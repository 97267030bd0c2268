"""The replay's upstream: the subset of APISIX's test origin (t/lib/server.lua,
ports 1980-1982) that the cases use, rewritten in Python. It answers with the
port the case names (1980, ...) rather than its real one, so expected bodies
stay as APISIX's tests state them."""
import http.server
import socketserver
import threading
import urllib.parse

# Headers APISIX's /uri handler leaves out of its echo (server.lua's ignore list).
_FORWARDED = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"}


class Origin:
    def __init__(self, logical_port, port_map):
        """port_map: real port -> logical port, for every process the cases
        name (origins and the gateway), applied to what is echoed back."""
        self.logical_port = logical_port
        self.port_map = port_map
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(n) if n else b""
                origin.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

            def __getattr__(self, name):
                # Any other method token (PURGE, ...) is served the same way.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # a client (the gateway) closing an idle connection is not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _logical(self, text):
        for real, logical in self.port_map.items():
            text = text.replace(f":{real}", f":{logical}")
        return text

    def handle(self, h):
        raw_path = h.path
        path, _, query = raw_path.partition("?")
        uri = urllib.parse.unquote(path)
        # ngx.req.get_headers(): lower-cased names, repeated names kept together.
        hdrs = {}
        for k, v in h.headers.items():
            hdrs.setdefault(k.lower(), []).append(self._logical(v))
        extra = [(k[5:], v[0]) for k, v in hdrs.items() if k.startswith("resp-")]
        host = (hdrs.get("host", [""])[0].rsplit(":", 1)[0] if not hdrs.get("host", [""])[0].startswith("[")
                else hdrs["host"][0]).lower()

        def lines_of(names):
            out = ""
            for k in sorted(names):
                out += f"{k}: {''.join(hdrs[k])}\n"
            return out

        status, body, ctype, chunks = 200, None, "text/plain", None
        action = uri[1:].replace("/", "_").replace(".", "_").replace("-", "_")
        if action == "hello":
            body = "hello world\n"
        elif action == "hello1":
            body = "hello1 world\n"
        elif action == "hello_chunked":
            chunks = ["hell", "o w", "orld\n"]
        elif action == "course_foo":
            body = "course foo\n"
        elif action in ("server_port", "server_port_route2", "server_port_hello", "server_port_aa"):
            body = str(self.logical_port)
        elif action == "limit_conn":
            body = "hello world\n"
        elif action == "plugin_proxy_rewrite":
            body = f"uri: {uri}\nhost: {host}\nscheme: http\n"
        elif action == "plugin_proxy_rewrite_args":
            args = urllib.parse.parse_qs(query, keep_blank_values=True)
            body = f"uri: {uri}\n" + "".join(f"{k}: {','.join(args[k])}\n" for k in sorted(args))
        elif action in ("uri", "uri_plugin_proxy_rewrite", "uri_plugin_proxy_rewrite_args"):
            body = f"uri: {uri}\n" + lines_of(k for k in hdrs if k not in _FORWARDED)
        elif action == "old_uri":
            body = f"uri: {uri}\n" + lines_of(hdrs)
        elif action == "plugin_proxy_rewrite_multi_header":
            body = "".join(f"{k}: {v}\n" for k in sorted(hdrs) if k not in _FORWARDED for v in hdrs[k])
        elif action == "specific_status":
            st = hdrs.get("x-test-upstream-status")
            if st:
                status, body = int(st[0]), f"upstream status: {st[0]}\n"
            else:
                body = ""
        elif action == "status":
            body = "ok\n"
        elif action == "opentracing":
            body = "opentracing\n"
        elif action == "with_header":
            body = "hello\nworld\n!\n"
        elif action.startswith("print_uri_") and action[10:].isdigit():
            body = uri + "\n"
        elif action == "print_uri_detailed":
            body = f"ngx.var.uri: {uri}\nngx.var.request_uri: {raw_path}\n"
        elif action == "print_request_received":
            body = f"request_uri: {raw_path}\n" + lines_of(hdrs)
        elif action == "headers":
            for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
                extra.append((k, v))
            body = "/headers\n"
        elif action in ("echo", "v1_responses"):
            extra += [(k, ", ".join(v)) for k, v in hdrs.items()
                      if k not in ("content-length", "transfer-encoding", "connection")]
            body = h.body.decode("latin-1")
        elif action == "server_error":  # a Lua error in server.lua: nginx's 500 page
            status = 500
            ctype = "text/html"
            body = ("<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
                    "<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>openresty</center>\r\n"
                    "</body>\r\n</html>\r\n")
        elif action == "mysleep":
            args = urllib.parse.parse_qs(query)
            body = (args.get("seconds") or [""])[0] + "\n"
        elif uri.startswith("/echo/"):  # radixtree-uri-with-parameter-encoded-slash.t's location
            body = raw_path + "\n"
        else:
            status = 404
            body = ("<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
                    "<center><h1>404 Not Found</h1></center>\r\n<hr><center>openresty</center>\r\n"
                    "</body>\r\n</html>\r\n")
            ctype = "text/html"
        # resp-* request headers set response headers as ngx.header does:
        # they replace the handler's own, and a Content-Length cuts the body.
        given = {k.lower(): v for k, v in extra}
        if "content-length" in given and body is not None:
            body = body[:int(given["content-length"])]
        h.send_response_only(status)
        if "content-type" not in given:
            h.send_header("Content-Type", ctype)
        h.send_header("Server", "openresty")
        for k, v in extra:
            if k.lower() != "content-length":
                h.send_header(k, v)
        if chunks is not None:
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for c in chunks:
                h.wfile.write(f"{len(c):x}\r\n{c}\r\n".encode())
            h.wfile.write(b"0\r\n\r\n")
        else:
            data = body.encode("latin-1", errors="replace")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
