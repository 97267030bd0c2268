"""A gRPC origin for the end-to-end tests, in its own process (python3-grpcio,
generic handlers on raw bytes: no generated code). Prints "ready" once
serving; SIGTERM stops it gracefully (GOAWAY, open calls finish).

usage: grpc_origin.py PORT [CERT KEY]
(env GRPC_MAX_STREAMS: the SETTINGS_MAX_CONCURRENT_STREAMS it announces)

Methods of /test.Echo/:
  Unary         b"echo:" + the request
  ServerStream  the request is a count n: answers msg-0 .. msg-(n-1)
  ClientStream  the requests joined by b","
  Bidi          b"re:" + each request, as it arrives
  Fail          grpc-status 5 (NOT_FOUND), message "no such thing: <request>"
  Slow          sleeps <request> seconds, then answers b"late"
  Peer          the client's address and port (one per connection), after
                sleeping <request> seconds if given
  Headers       the request's metadata as "k=v" lines
"""
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc


def unary(req, ctx):
    return b"echo:" + req


def server_stream(req, ctx):
    for i in range(int(req or b"0")):
        yield b"msg-%d" % i


def client_stream(it, ctx):
    return b",".join(it)


def bidi(it, ctx):
    for m in it:
        yield b"re:" + m


def fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + req.decode("latin-1"))


def slow(req, ctx):
    time.sleep(float(req))
    return b"late"


def peer(req, ctx):
    if req:
        time.sleep(float(req))
    return ctx.peer().encode()


def headers(req, ctx):
    return "\n".join(f"{k}={v}" for k, v in ctx.invocation_metadata()).encode()


def main():
    port = int(sys.argv[1])
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Peer": grpc.unary_unary_rpc_method_handler(peer),
        "Headers": grpc.unary_unary_rpc_method_handler(headers),
    }
    options = [("grpc.so_reuseport", 0)]
    if os.environ.get("GRPC_MAX_STREAMS"):
        options.append(("grpc.max_concurrent_streams", int(os.environ["GRPC_MAX_STREAMS"])))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    if len(sys.argv) > 3:
        with open(sys.argv[2], "rb") as c, open(sys.argv[3], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port(f"127.0.0.1:{port}", creds)
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    done = threading.Event()

    def stop(*_):
        server.stop(grace=5).wait()
        done.set()

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stop).start())
    print("ready", flush=True)
    done.wait()


if __name__ == "__main__":
    main()
