#!/usr/bin/env python3
"""A real HTTP/1.1 upstream for the end-to-end tests (stdlib only).

Usage: upstream.py PORT NAME [health=N | fail=N]

  GET  /anything        -> 200 JSON echo: server name, method, path, headers, body size
                           (header_list keeps every header line in order, duplicates included)
  *    /status/N        -> status N with the echo body (no body for 204/304, as HTTP requires)
  GET  /delay/MS        -> sleeps MS milliseconds, then echoes
  GET  /bytes/N         -> N bytes (Content-Length), ?chunked=1 for chunked encoding,
                           ?pattern=1 for numbered lines ("00000000\n00000001\n"...) instead of "x"s
  GET  /gzip            -> a gzip-compressed text body with Content-Encoding: gzip
  POST /sink            -> reads the (chunked or sized) body, answers its size and sha256
  GET  /close           -> answers with Connection: close and no Content-Length
"""
import gzip
import hashlib
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "e2e-upstream"
    # headers and body go out in separate writes: without this, Nagle plus
    # delayed ACKs add ~40 ms to every response
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def read_body(self):
        h = hashlib.sha256()
        size = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip(), 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = n
                while left:
                    chunk = self.rfile.read(min(left, 1 << 16))
                    h.update(chunk)
                    left -= len(chunk)
                size += n
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0") or 0)
            while left:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                h.update(chunk)
                size += len(chunk)
                left -= len(chunk)
        return size, h.hexdigest()

    def echo(self, status=200, extra=None):
        size, digest = self.read_body()
        body = json.dumps({
            "server": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "header_list": [[k.lower(), v] for k, v in self.headers.items()],
            "body_size": size,
            "body_sha256": digest,
            **(extra or {}),
        }).encode()
        no_body = status in (204, 304)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream", self.server.name)
        self.end_headers()
        if self.command != "HEAD" and not no_body:
            self.wfile.write(body)

    def handle_any(self):
        path = self.path.split("?")[0]
        mode = self.server.mode
        if path == "/health" and mode.startswith("health="):
            return self.echo(int(mode.split("=")[1]))
        if path != "/health" and mode.startswith("fail="):
            return self.echo(int(mode.split("=")[1]))
        if path.startswith("/status/"):
            return self.echo(int(path.split("/")[2]))
        if path.startswith("/delay/"):
            time.sleep(int(path.split("/")[2]) / 1000)
            return self.echo()
        if path.startswith("/bytes/"):
            self.read_body()
            n = int(path.split("/")[2])
            chunked = "chunked=1" in self.path
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command == "HEAD":
                return
            if "pattern=1" in self.path:
                block = b"".join(b"%08d\n" % i for i in range(n // 9 + 1))[:n]
            else:
                block = b"x" * 65536
            left = n
            while left:
                part = block[n - left:][:65536] if len(block) == n else block[: min(left, len(block))]
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    self.wfile.write(part)
                left -= len(part)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/gzip":
            self.read_body()
            body = gzip.compress(b"compressed hello from " + self.server.name.encode())
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path == "/close":
            self.read_body()
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"closed-body")
            self.close_connection = True
            return
        return self.echo()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any
    # Any other method token (PURGE, MKCOL, ...) is echoed too.
    do_PURGE = do_MKCOL = do_BREW = handle_any


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else ""
    # UPSTREAM_HOST: another loopback address (two origins on one port)
    # A listen backlog for many concurrent requests (HTTP/2 streams each take
    # an upstream connection); socketserver's default is 5.
    ThreadingHTTPServer.request_queue_size = 256
    srv = ThreadingHTTPServer((os.environ.get("UPSTREAM_HOST", "127.0.0.1"), port), Handler)
    srv.daemon_threads = True
    srv.name = name
    srv.mode = mode  # "health=N": GET /health answers N; "fail=N": every other path answers N
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
