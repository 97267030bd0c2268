#!/usr/bin/env python3
"""Loopback benchmark: Holdfast beside nginx and HAProxy, in front of the same
origin, measured with wrk in interleaved rounds.

Placement on a 2-core machine: every proxy and the origin run on CPU 0
(SUT_CPU), wrk runs alone on CPU 1 (LOADGEN_CPU), so requests/s measures
"proxy cost + a constant origin cost". CPU per request is read from
/proc/<pid>/stat of each proxy (all threads). Every process is started here
and stopped by its own pid.

Scenarios (all by default; pick with --scenario NAME, repeatable):
  1route     GET / through one route (6-byte body), c50
  10k        10,000 routes (exact, prefix, wildcard-host mixed); the matched
             route has key-auth and limit-count; compared with Holdfast's own
             1-route figure measured in the same rounds
  100kb      GET /big (100 KiB body), c50
  1000conn   GET / with 1,000 connections
  backends   GET / through one route, c50: Holdfast on io_uring and the same
             `holdfast` command with HOLDFAST_BACKEND=epoll (it execs
             holdfast-epoll, the fallback where seccomp denies io_uring),
             beside nginx in the same rounds
  tls        HTTPS with one ECDSA P-256 certificate, Holdfast beside nginx
             (both: TLSv1.2+1.3, shared session cache, tickets off): GET /
             keep-alive over TLS with wrk (req/s, CPU us/req, p99), and server
             CPU us per full handshake with `openssl s_time -new` (no
             resumption; the client's ECDSA verify is the bottleneck on 2
             cores, so handshakes/s measures the client, CPU/handshake the
             server)
  ab         GET / through one route, c50: this build and a baseline build
             (BASELINE_BIN, e.g. main's) on both I/O backends, beside nginx in
             the same interleaved rounds; reports each backend's ratios (for
             refactors that must not cost CPU)
  prometheus the 10k scenario without and with the prometheus plugin on the
             measured route: saturated rounds (req/s), then both paced side
             by side (CPU per request ratio)
  jwt        the 10,000-route scenario with jwt-auth and limit-req (instead of
             key-auth and limit-count) on the measured route, once with HS256
             and once with RS256, each request carrying the next of JWT_TOKENS
             (10,000) distinct tokens; compared with Holdfast's own 1-route
             figure in the same rounds (saturated req/s), then each paced
             beside the 1-route instance (CPU per request)
  h2         HTTP/2 over TLS (ALPN h2, the tls scenario's certificate),
             Holdfast beside nginx (`http2`), both proxying to the same origin
             over HTTP/1.1 keep-alive: h2load -c 10 -m 10 (10 connections, 10
             streams each) for DURATION; req/s and server CPU us per request
  grpc       gRPC unary calls (h2c, h2load -c 10 -m 10 POSTing one 5-byte
             framed message with content-type application/grpc) through
             Holdfast (upstream scheme grpc) beside nginx (grpc_pass, upstream
             keepalive) to the C++ origin bench/grpc_origin.cc (nghttp2, echo
             + grpc-status 0); CPU us per request is the main figure
  ab-paced   the same four processes, but each build is measured at the same
             time as its baseline, both under the same fixed offered load
             (wrk pauses PACE_MS, default 10, between requests on each of
             its 50 connections: about 4,500 req/s each, below saturation),
             CPU read per thread in nanoseconds (/proc/*/task/*/schedstat).
             Whatever the machine does during a round, it does to both; the
             median of the per-round ratios is the figure

Beside nginx, HAProxy and Holdfast, `tcp-floor` (bench/floor_relay.cc, if
built) relays bytes without parsing HTTP: the floor for any proxy here.

Environment: ROUNDS (5), DURATION (10s), WARMUP (3s), SUT_CPU (0), LOADGEN_CPU (1).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOLDFAST = os.environ.get("HOLDFAST_BIN", os.path.join(ROOT, "build", "holdfast"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
DURATION = os.environ.get("DURATION", "10s")
WARMUP = os.environ.get("WARMUP", "3s")
SUT_CPU = os.environ.get("SUT_CPU", "0")
LOADGEN_CPU = os.environ.get("LOADGEN_CPU", "1")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not ready")


def proc_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Proc:
    """A daemon we started; `pids` are the processes whose CPU we count."""

    def __init__(self, name, port, pid, pidfile=None):
        self.name, self.port, self.pid, self.pidfile = name, port, pid, pidfile

    @property
    def pids(self):
        return [self.pid] + children(self.pid)

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            try:
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)


def read_pidfile(path, timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"no pid file {path}")


# Temp paths nginx insists on, inside the instance's folder.
def nginx_temp_paths(d):
    return (f"client_body_temp_path {d}/tmp/b; proxy_temp_path {d}/tmp/p; fastcgi_temp_path {d}/tmp/f;\n"
            f"  uwsgi_temp_path {d}/tmp/u; scgi_temp_path {d}/tmp/s;")


def run_nginx(name, d, port, conf):
    """Writes d/nginx.conf, starts nginx (daemon, pinned to SUT_CPU) and waits for its port."""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    subprocess.run(["taskset", "-c", SUT_CPU, "nginx", "-p", d + "/", "-c", d + "/nginx.conf", "-e", d + "/error.log"],
                   check=True)
    wait_port(port)
    return Proc(name, port, read_pidfile(f"{d}/nginx.pid"))


def start_origin(work):
    d = os.path.join(work, "origin")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    os.chmod(d, 0o755)
    with open(os.path.join(d, "big"), "wb") as f:
        f.write(b"x" * 102400)
    port = free_port()
    conf = f"""
worker_processes 1; daemon on; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 65s;
  {nginx_temp_paths(d)}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /big {{ alias {d}/big; default_type application/octet-stream; }}
    location / {{ return 200 "hello\\n"; }}
  }}
}}"""
    return run_nginx("origin", d, port, conf)


def start_nginx(work, origin, pki=None):
    """nginx proxying to the origin; with pki (make_pki) it terminates TLS with
    APISIX's session settings (shared cache, tickets off) and gets `tls_port`."""
    d = os.path.join(work, "nginx-tls" if pki else "nginx")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    port = free_port()
    tls = (f"""ssl_certificate {pki["cert"]}; ssl_certificate_key {pki["key"]};
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets off;""" if pki else "")
    conf = f"""
worker_processes 1; daemon on; pid {d}/nginx.pid; error_log {d}/error.log warn; worker_rlimit_nofile 65536;
events {{ worker_connections 32768; }}
http {{
  access_log off; tcp_nodelay on; keepalive_timeout 65s; keepalive_requests 1000000;
  {nginx_temp_paths(d)}
  upstream origin {{ server 127.0.0.1:{origin.port}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port}{" ssl" if pki else ""} backlog=4096;
    {tls}
    location / {{
      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_max_temp_file_size 0;
    }}
  }}
}}"""
    proc = run_nginx("nginx", d, port, conf)
    if pki:
        proc.tls_port = port
    return proc


def start_haproxy(work, origin):
    d = os.path.join(work, "haproxy")
    os.makedirs(d, exist_ok=True)
    port = free_port()
    conf = f"""
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    option http-keep-alive
    http-reuse safe
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    maxconn 8000
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server origin 127.0.0.1:{origin.port}
"""
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(conf)
    subprocess.run(["taskset", "-c", SUT_CPU, "haproxy", "-f", d + "/haproxy.cfg", "-p", d + "/haproxy.pid", "-D"],
                   check=True, stderr=subprocess.DEVNULL)
    wait_port(port)
    return Proc("haproxy", port, read_pidfile(f"{d}/haproxy.pid"))


def start_floor(work, origin):
    """bench/floor_relay.cc: a byte relay that parses nothing (None if not built)."""
    binary = os.path.join(os.path.dirname(HOLDFAST), "floor_relay")
    if not os.path.exists(binary):
        return None
    port = free_port()
    log = open(os.path.join(work, "floor_relay.log"), "wb")
    p = subprocess.Popen(["taskset", "-c", SUT_CPU, binary, str(port), str(origin.port)], stdout=log, stderr=log)
    wait_port(port)
    return Proc("tcp-floor", port, p.pid)


def route_mix(n):
    """n routes as (id, route): a third exact paths, a third prefixes, a third
    wildcard hosts (also what bench/etcd_propagation.py loads into etcd)."""
    out = []
    for i in range(n):
        kind = i % 3
        r = {"upstream_id": "origin"}
        if kind == 0:
            r["uri"] = f"/exact/{i}"
        elif kind == 1:
            r["uri"] = f"/api/{i}/*"
        else:
            r["uri"] = "/*"
            r["hosts"] = [f"*.svc-{i}.bench.local"]
        out.append((f"r{i}", r))
    return out


def routes_10k(origin_port, measured_plugins=None, auth=None):
    """10,000 routes of route_mix, plus the measured one (with key-auth,
    limit-count and measured_plugins). auth = (route plugins, consumer
    plugins) replaces key-auth and limit-count."""
    routes = [dict(r, id=rid) for rid, r in route_mix(10000)]
    route_plugins, consumer_plugins = auth or (
        {"key-auth": {}, "limit-count": {"count": 1000000000, "time_window": 3600}},
        {"key-auth": {"key": "bench-key"}})
    # the measured route: prefix /api/4321/* on host svc-4321.bench.local ... and auth + rate limit
    routes.append({"id": "measured", "uri": "/api/4321/*", "hosts": ["svc-4321.bench.local"], "upstream_id": "origin",
                   "plugins": {**route_plugins, **(measured_plugins or {})}})
    return {
        "upstreams": [{"id": "origin", "nodes": {f"127.0.0.1:{origin_port}": 1}}],
        "consumers": [{"username": "bench", "plugins": consumer_plugins}],
        "routes": routes,
    }


def jwt_setups(work, count):
    """(name, resources' auth, tokens file) for jwt-auth HS256 and RS256:
    `count` distinct tokens each (they differ in `jti`), valid for a day."""
    import base64
    import hashlib
    import hmac
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    secret = b"bench-jwt-secret-0123456789abcdef"
    signers = {
        "HS256": lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
        "RS256": lambda data: rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
    }
    consumers = {
        "HS256": {"jwt-auth": {"key": "bench-jwt", "secret": secret.decode()}},
        "RS256": {"jwt-auth": {"key": "bench-jwt", "algorithm": "RS256", "public_key": public_pem}},
    }
    # Never rejects: the scenario measures the limiter's bookkeeping.
    route_plugins = {"jwt-auth": {}, "limit-req": {"rate": 1000000000, "burst": 1000000000, "key": "remote_addr"}}
    exp = int(time.time()) + 86400
    out = []
    for alg, sign in signers.items():
        path = os.path.join(work, f"tokens-{alg}.txt")
        head = b64(json.dumps({"typ": "JWT", "alg": alg}).encode())
        with open(path, "w") as f:
            for i in range(count):
                data = f"{head}.{b64(json.dumps({'key': 'bench-jwt', 'exp': exp, 'jti': i}).encode())}".encode()
                f.write(f"{data.decode()}.{b64(sign(data))}\n")
        out.append((alg, (route_plugins, consumers[alg]), path))
    return out


def start_holdfast(work, origin, name="holdfast", resources=None, env=None, binary=None, pki=None, extra=None):
    """Plain HTTP only unless pki (make_pki) is given: then also the TLS
    listener, serving pki's certificate for every SNI; the returned Proc gets
    `tls_port`."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    port = free_port()
    tls_port = free_port() if pki else None
    ssl = ({"enable": True, "listen": [{"ip": "127.0.0.1", "port": tls_port}], "fallback_sni": "bench.local"}
           if pki else {"enable": False})
    cfg = {"apisix": {"node_listen": [{"ip": "127.0.0.1", "port": port}], "ssl": ssl},
           # the prometheus export server (on by default, as APISIX's): one port per instance
           "plugin_attr": {"prometheus": {"export_addr": {"ip": "127.0.0.1", "port": free_port()}}},
           "nginx_config": {"worker_processes": 1, "error_log_level": "warn"},
           "deployment": {"role": "data_plane", "role_data_plane": {"config_provider": "json"}}}
    cfg.update(extra or {})
    with open(os.path.join(d, "config.yaml"), "w") as f:
        json.dump(cfg, f)
    if resources is None:
        resources = {"routes": [{"id": "1", "uri": "/*", "upstream": {"nodes": {f"127.0.0.1:{origin.port}": 1}}}]}
    if pki:
        # wrk sends the URL's host (an IP) as SNI: "*" matches every name.
        resources = dict(resources, ssls=[{"id": "bench", "cert": pki["cert_pem"], "key": pki["key_pem"],
                                           "snis": ["bench.local", "*"]}])
    with open(os.path.join(d, "apisix.json"), "w") as f:
        json.dump(resources, f)
    log = open(os.path.join(d, "holdfast.log"), "wb")
    p = subprocess.Popen(["taskset", "-c", SUT_CPU, binary or HOLDFAST, "-c", os.path.join(d, "config.yaml")],
                         stdout=log, stderr=log, env=dict(os.environ, **(env or {})))
    wait_port(port)
    proc = Proc(name, port, p.pid)
    if pki:
        wait_port(tls_port)
        proc.tls_port = tls_port
    return proc


def make_pki(work):
    """One self-signed ECDSA P-256 certificate for bench.local, shared by every TLS target."""
    d = os.path.join(work, "pki")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=bench.local",
                    "-addext", "subjectAltName=DNS:bench.local"], check=True, capture_output=True)
    with open(cert) as f, open(key) as g:
        return {"cert": cert, "key": key, "cert_pem": f.read(), "key_pem": g.read()}


class TlsView:
    """A TLS target as run_scenario sees one: the process's pids, its TLS port, https."""

    def __init__(self, proc):
        self.name, self.port, self.proc, self.scheme = proc.name, proc.tls_port, proc, "https"

    @property
    def pids(self):
        return self.proc.pids


def handshakes(target, seconds):
    """Full handshakes (no resumption) for `seconds` with openssl s_time on
    LOADGEN_CPU: server CPU us per handshake, and handshakes/s (client-bound)."""
    pids = target.pids
    t0, w0 = proc_ticks(pids), time.monotonic()
    # s_time sends no SNI: the servers answer with their one certificate
    # (Holdfast through fallback_sni).
    out = subprocess.run(["taskset", "-c", LOADGEN_CPU, "openssl", "s_time", "-connect", f"127.0.0.1:{target.port}",
                          "-new", "-time", str(seconds)], capture_output=True, text=True).stdout
    t1, w1 = proc_ticks(pids), time.monotonic()
    m = re.search(r"(\d+) connections in [\d.]+ real seconds", out)
    if not m:
        raise RuntimeError("s_time output not understood:\n" + out)
    n = int(m.group(1))
    return {"handshakes": n, "hs_per_s": n / (w1 - w0), "cpu_us_per_hs": (t1 - t0) / CLK_TCK * 1e6 / max(n, 1)}


def run_handshakes(targets, seconds):
    print(f"\n## full TLS handshakes (openssl s_time -new), {ROUNDS} rounds x {seconds}s", flush=True)
    results = {t.name: [] for t in targets}
    order = list(targets)
    for rnd in range(ROUNDS):
        for t in order:
            r = handshakes(t, seconds)
            results[t.name].append(r)
            print(f"  round {rnd + 1} {t.name:14s} handshakes/s={r['hs_per_s']:7.0f} "
                  f"server cpu/handshake={r['cpu_us_per_hs']:.1f}us", flush=True)
            time.sleep(1)
        order = order[1:] + order[:1]
    return {name: {k: statistics.median([r[k] for r in rs]) for k in ("hs_per_s", "cpu_us_per_hs")}
            for name, rs in results.items()}


def h2load(target, url, seconds, extra=()):
    """h2load on LOADGEN_CPU for `seconds` (after a 1 s warm-up): req/s,
    server CPU us per request, failures."""
    pids = target.pids
    cmd = ["taskset", "-c", LOADGEN_CPU, "h2load", "-c", "10", "-m", "10", "-t", "1", "--warm-up-time", "1",
           "-D", str(seconds), *extra, url]
    t0 = proc_ticks(pids)
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    t1 = proc_ticks(pids)
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    f = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    if not m or not f:
        raise RuntimeError("h2load output not understood:\n" + out)
    done, ok = int(m.group(2)), int(m.group(3))
    # h2load counts 2xx as success; any 4xx/5xx is a failure here too.
    codes = re.search(r"status codes: (\d+) 2xx", out)
    ok = min(ok, int(codes.group(1))) if codes else ok
    return {"requests": done, "rps": float(f.group(3)), "failed": done - ok,
            "cpu_us_per_req": (t1 - t0) / CLK_TCK * 1e6 / max(done, 1)}


def run_h2load(name, targets, seconds, extra=()):
    """targets: (target, url) pairs, measured in rotating order each round."""
    print(f"\n## {name}: h2load -c 10 -m 10, {ROUNDS} rounds x {seconds}s", flush=True)
    results = {t.name: [] for t, _ in targets}
    order = list(targets)
    for rnd in range(ROUNDS):
        for t, url in order:
            r = h2load(t, url, seconds, extra)
            results[t.name].append(r)
            print(f"  round {rnd + 1} {t.name:14s} rps={r['rps']:9.0f} cpu/req={r['cpu_us_per_req']:.1f}us "
                  f"failed={r['failed']}", flush=True)
            time.sleep(1)
        order = order[1:] + order[:1]
    summary = {n: {"rps": statistics.median([r["rps"] for r in rs]),
                   "cpu_us_per_req": statistics.median([r["cpu_us_per_req"] for r in rs]),
                   "failed": sum(r["failed"] for r in rs)} for n, rs in results.items()}
    print(f"\n### {name} (medians; ratios against nginx)")
    print("| target | req/s | CPU us/req | failed | req/s ratio | CPU ratio |")
    print("|---|---|---|---|---|---|")
    base = summary["nginx"]
    for n, x in summary.items():
        print(f"| {n} | {x['rps']:.0f} | {x['cpu_us_per_req']:.1f} | {x['failed']} | {x['rps'] / base['rps']:.2f} | "
              f"{x['cpu_us_per_req'] / base['cpu_us_per_req']:.2f} |")
    sys.stdout.flush()
    return summary


def start_nginx_h2(work, origin, pki):
    """nginx terminating TLS with HTTP/2 (ALPN h2), proxying as start_nginx does."""
    d = os.path.join(work, "nginx-h2")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    port = free_port()
    conf = f"""
worker_processes 1; daemon on; pid {d}/nginx.pid; error_log {d}/error.log warn; worker_rlimit_nofile 65536;
events {{ worker_connections 32768; }}
http {{
  access_log off; tcp_nodelay on; keepalive_timeout 65s; keepalive_requests 1000000;
  http2_max_concurrent_streams 128;
  {nginx_temp_paths(d)}
  upstream origin {{ server 127.0.0.1:{origin.port}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} ssl http2 backlog=4096;
    ssl_certificate {pki["cert"]}; ssl_certificate_key {pki["key"]};
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets off;
    location / {{
      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_max_temp_file_size 0;
    }}
  }}
}}"""
    return run_nginx("nginx", d, port, conf)


def start_grpc_origin(work):
    binary = os.path.join(os.path.dirname(HOLDFAST), "grpc_origin")
    if not os.path.exists(binary):
        sys.exit(f"{binary} not built: make build")
    port = free_port()
    p = subprocess.Popen(["taskset", "-c", SUT_CPU, binary, str(port)])
    wait_port(port)
    return Proc("grpc-origin", port, p.pid)


def start_nginx_grpc(work, origin):
    """nginx accepting h2c and passing every call to the gRPC origin (grpc_pass, pooled)."""
    d = os.path.join(work, "nginx-grpc")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    port = free_port()
    conf = f"""
worker_processes 1; daemon on; pid {d}/nginx.pid; error_log {d}/error.log warn; worker_rlimit_nofile 65536;
events {{ worker_connections 32768; }}
http {{
  access_log off; tcp_nodelay on; keepalive_timeout 65s; keepalive_requests 1000000;
  http2_max_concurrent_streams 128;
  {nginx_temp_paths(d)}
  upstream origin {{ server 127.0.0.1:{origin.port}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} http2 backlog=4096;
    location / {{ grpc_pass grpc://origin; }}
  }}
}}"""
    return run_nginx("nginx", d, port, conf)


def wrk_cmd(url, conns, duration, script):
    return ["taskset", "-c", LOADGEN_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}", "--timeout", "5s",
            "-s", script, url]


def wrk(url, conns, duration, script, env=None):
    out = subprocess.run(wrk_cmd(url, conns, duration, script), capture_output=True, text=True,
                         env=dict(os.environ, **(env or {}))).stdout
    return wrk_result(out)


def wrk_result(out):
    m = re.search(r"RESULT requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) errors=(\d+)", out)
    if not m:
        raise RuntimeError("wrk output not understood:\n" + out)
    req, dur, p50, p99, err = map(int, m.groups())
    return {"requests": req, "rps": req / (dur / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000, "errors": err}


ORIGIN = None  # set in main: the origin's CPU per request is reported too


def measure(target, path, conns, duration, script, env):
    pids = target.pids if target else []
    opids = ORIGIN.pids if ORIGIN else []
    t0, o0 = proc_ticks(pids), proc_ticks(opids)
    scheme = getattr(target, "scheme", "http")
    r = wrk(f"{scheme}://127.0.0.1:{target.port}{path}", conns, duration, script, env)
    t1, o1 = proc_ticks(pids), proc_ticks(opids)
    r["cpu_us_per_req"] = (t1 - t0) / CLK_TCK * 1e6 / max(r["requests"], 1)
    r["origin_us_per_req"] = (o1 - o0) / CLK_TCK * 1e6 / max(r["requests"], 1)
    return r


def run_scenario(name, targets, path, conns, env=None, script=None):
    script = script or os.path.join(HERE, "report.lua")
    env = dict(env or {}, BENCH_REPORT=os.path.join(HERE, "report.lua"))
    print(f"\n## {name}: {path} c{conns}, {ROUNDS} rounds x {DURATION}", flush=True)
    for t, tscript in targets:
        measure(t, path, conns, WARMUP, tscript or script, env)
    results = {t.name: [] for t, _ in targets}
    order = list(targets)
    for rnd in range(ROUNDS):
        for t, tscript in order:
            r = measure(t, path, conns, DURATION, tscript or script, env)
            results[t.name].append(r)
            print(f"  round {rnd + 1} {t.name:14s} rps={r['rps']:9.0f} p50={r['p50_ms']:.3f}ms p99={r['p99_ms']:.3f}ms "
                  f"cpu/req={r['cpu_us_per_req']:.1f}us origin/req={r['origin_us_per_req']:.1f}us errors={r['errors']}", flush=True)
            time.sleep(1)
        order = order[1:] + order[:1]  # rotate so drifts hit every target alike
    summary = {}
    for tname, rs in results.items():
        summary[tname] = {k: statistics.median([r[k] for r in rs]) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")}
        summary[tname]["errors"] = sum(r["errors"] for r in rs)
        summary[tname]["cpu_rounds"] = [r["cpu_us_per_req"] for r in rs]
    return summary


def cpu_ns(pids):
    """CPU time of every thread of pids, in nanoseconds (schedstat's first field)."""
    total = 0
    for p in pids:
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def run_paced_pairs(pairs, path, conns, script=None, env=None):
    """For each (new, old) pair, rounds in which both are loaded at the same
    time at the same fixed rate; returns {new_name: [new/old CPU per request]}."""
    env = dict(os.environ, BENCH_REPORT=os.path.join(HERE, "report.lua"), BENCH_KEYAUTH=os.path.join(HERE, "keyauth.lua"),
               **(env or {}))
    script = script or os.path.join(HERE, "paced.lua")
    print(f"\n## paced A/B: {path} c{conns} each, PACE_MS={env.get('PACE_MS', '10')}, {ROUNDS} rounds x {DURATION}",
          flush=True)
    ratios = {new.name: [] for new, _ in pairs}
    for rnd in range(-1, ROUNDS):  # round -1 warms up and is not counted
        for new, old in pairs:
            both = (new, old)
            pids = {t.name: t.pids for t in both}
            c0 = {t.name: cpu_ns(pids[t.name]) for t in both}
            runs = [subprocess.Popen(wrk_cmd(f"http://127.0.0.1:{t.port}{path}", conns,
                                             WARMUP if rnd < 0 else DURATION, script),
                                     stdout=subprocess.PIPE, text=True, env=env) for t in both]
            outs = [wrk_result(r.communicate()[0]) for r in runs]
            per_req = {}
            for t, o in zip(both, outs):
                per_req[t.name] = (cpu_ns(pids[t.name]) - c0[t.name]) / 1000 / max(o["requests"], 1)
                if o["errors"]:
                    raise RuntimeError(f"{t.name}: {o['errors']} errors in a paced run")
            if rnd < 0:
                continue
            ratio = per_req[new.name] / per_req[old.name]
            ratios[new.name].append(ratio)
            print(f"  round {rnd + 1} {new.name:14s} {outs[0]['rps']:6.0f} req/s {per_req[new.name]:6.2f}us/req | "
                  f"{old.name:14s} {outs[1]['rps']:6.0f} req/s {per_req[old.name]:6.2f}us/req | ratio {ratio:.3f}",
                  flush=True)
            time.sleep(1)
    return ratios


def print_table(title, summary, ref="nginx"):
    print(f"\n### {title} (medians; ratios against {ref})")
    print(f"| target | req/s | p50 ms | p99 ms | CPU us/req | errors | req/s ratio | CPU ratio | p99 ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = summary.get(ref)
    for name, s in summary.items():
        ratios = ("", "", "")
        if base:
            ratios = (f"{s['rps'] / base['rps']:.2f}", f"{s['cpu_us_per_req'] / base['cpu_us_per_req']:.2f}",
                      f"{s['p99_ms'] / base['p99_ms']:.2f}")
        print(f"| {name} | {s['rps']:.0f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {s['cpu_us_per_req']:.1f} | "
              f"{s['errors']} | {ratios[0]} | {ratios[1]} | {ratios[2]} |")
    if "tcp-floor" in summary:
        print("\ntcp-floor relays bytes without parsing HTTP (bench/floor_relay.cc): no HTTP proxy can beat it here;"
              " Holdfast reaches {:.0%} of its req/s.".format(summary["holdfast"]["rps"] / summary["tcp-floor"]["rps"]))
    sys.stdout.flush()


def main():
    global ROUNDS, DURATION, ORIGIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", action="append", choices=["1route", "10k", "100kb", "1000conn", "backends", "tls", "ab",
                                                       "ab-paced", "prometheus", "jwt", "h2", "grpc"])
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration")
    args = ap.parse_args()
    ROUNDS = args.rounds or ROUNDS
    DURATION = args.duration or DURATION
    scenarios = args.scenario or ["1route", "10k", "prometheus", "jwt", "100kb", "1000conn", "backends", "tls", "h2",
                                  "grpc"]
    for tool in ("nginx", "haproxy", "wrk", "taskset", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: run scripts/install-deps.sh")
    work = tempfile.mkdtemp(prefix="holdfast-bench-")
    os.chmod(work, 0o755)  # nginx workers (another user) must read the origin's files
    procs = []
    try:
        origin = start_origin(work)
        ORIGIN = origin
        procs.append(origin)
        nginx = start_nginx(work, origin)
        procs.append(nginx)
        haproxy = start_haproxy(work, origin)
        procs.append(haproxy)
        # The io_uring build unless the environment says otherwise (see "backends").
        hf = start_holdfast(work, origin, env={"HOLDFAST_BACKEND": os.environ.get("HOLDFAST_BACKEND", "io_uring")})
        procs.append(hf)
        floor = start_floor(work, origin)
        if floor:
            procs.append(floor)
        with_floor = [(floor, None)] if floor else []
        print(f"uname: {os.uname().release}; cpus: {os.cpu_count()}; holdfast: {HOLDFAST}")
        out = {}
        if "1route" in scenarios:
            s = run_scenario("1 route", [(nginx, None), (haproxy, None), (hf, None)] + with_floor, "/", 50)
            print_table("1 route, c50", s)
            out["1route"] = s
        if "10k" in scenarios:
            hf10k = start_holdfast(work, origin, "holdfast-10k", routes_10k(origin.port))
            procs.append(hf10k)
            time.sleep(1)
            rss = rss_kb(hf10k.pid)
            s = run_scenario("10,000 routes + key-auth + limit-count",
                             [(hf, None), (hf10k, os.path.join(HERE, "keyauth.lua")), (nginx, None)], "/", 50)
            print_table("10,000 routes, c50", s, ref="holdfast")
            print(f"\nRSS of holdfast with 10,000 routes: {rss / 1024:.1f} MiB (1 route: {rss_kb(hf.pid) / 1024:.1f} MiB)")
            out["10k"] = s
            out["10k_rss_mib"] = rss / 1024
            hf10k.stop()
            procs.remove(hf10k)
        if "prometheus" in scenarios:
            # The 10,000-route scenario without and with the prometheus plugin
            # on the measured route: saturated rounds for req/s, then the two
            # paced side by side for CPU per request.
            off = start_holdfast(work, origin, "holdfast-10k", routes_10k(origin.port))
            on = start_holdfast(work, origin, "holdfast-10k-prom", routes_10k(origin.port, {"prometheus": {}}))
            procs.extend([off, on])
            keyauth = os.path.join(HERE, "keyauth.lua")
            s = run_scenario("10,000 routes, prometheus off and on", [(off, keyauth), (on, keyauth)], "/", 50)
            print_table("10,000 routes + key-auth + limit-count, prometheus off / on, c50", s, ref="holdfast-10k")
            ratios = run_paced_pairs([(on, off)], "/", 50, os.path.join(HERE, "keyauth_paced.lua"))
            rs = ratios[on.name]
            print(f"\nprometheus on / off, paced: CPU per request median {statistics.median(rs):.3f}x "
                  f"(rounds: {', '.join(f'{x:.3f}' for x in rs)})")
            out["prometheus"] = {"saturated": s, "paced_cpu_ratios": rs}
            for p in (off, on):
                p.stop()
                procs.remove(p)
        if "jwt" in scenarios:
            # Saturated req/s against the 1-route instance, then CPU per
            # request paced side by side with it (the 1-route instance gets
            # the same requests: its one route takes every path and host).
            out["jwt"] = {}
            script = os.path.join(HERE, "jwt.lua")
            for alg, auth, tokens in jwt_setups(work, int(os.environ.get("JWT_TOKENS", "10000"))):
                hj = start_holdfast(work, origin, f"holdfast-jwt-{alg}", routes_10k(origin.port, auth=auth))
                procs.append(hj)
                s = run_scenario(f"10,000 routes + jwt-auth {alg} + limit-req, distinct tokens",
                                 [(hf, script), (hj, script)], "/", 50, env={"BENCH_TOKENS": tokens})
                print_table(f"10,000 routes + jwt-auth {alg} + limit-req, c50", s, ref="holdfast")
                rs = run_paced_pairs([(hj, hf)], "/", 50, script, env={"BENCH_TOKENS": tokens,
                                                                       "BENCH_PACE_MS": os.environ.get("PACE_MS", "10")})
                r = rs[hj.name]
                print(f"\njwt-auth {alg} / 1 route, paced: CPU per request median {statistics.median(r):.3f}x "
                      f"(rounds: {', '.join(f'{x:.3f}' for x in r)})")
                out["jwt"][alg] = {"saturated": s, "paced_cpu_ratios": r,
                                   "rps_ratio": s[hj.name]["rps"] / s["holdfast"]["rps"]}
                hj.stop()
                procs.remove(hj)
        if "100kb" in scenarios:
            s = run_scenario("100 KiB responses", [(nginx, None), (haproxy, None), (hf, None)] + with_floor, "/big", 50)
            print_table("100 KiB responses, c50", s)
            out["100kb"] = s
        if "1000conn" in scenarios:
            s = run_scenario("1,000 connections", [(nginx, None), (haproxy, None), (hf, None)] + with_floor, "/", 1000)
            print_table("1,000 connections", s)
            out["1000conn"] = s
        if "backends" in scenarios:
            # exec replaces the process image, so the pid measured is holdfast-epoll's.
            hfe = start_holdfast(work, origin, "holdfast-epoll", env={"HOLDFAST_BACKEND": "epoll"})
            procs.append(hfe)
            s = run_scenario("io_uring and epoll builds", [(nginx, None), (hf, None), (hfe, None)], "/", 50)
            print_table("io_uring and epoll builds, 1 route, c50", s)
            e, u = s["holdfast-epoll"], s["holdfast"]
            print(f"\nholdfast-epoll / holdfast (io_uring): req/s {e['rps'] / u['rps']:.2f}x, "
                  f"CPU/req {e['cpu_us_per_req'] / u['cpu_us_per_req']:.2f}x, p99 {e['p99_ms'] / u['p99_ms']:.2f}x")
            out["backends"] = s
            hfe.stop()
            procs.remove(hfe)
        if "tls" in scenarios:
            pki = make_pki(work)
            ngx_tls = start_nginx(work, origin, pki)
            procs.append(ngx_tls)
            hft = start_holdfast(work, origin, "holdfast-tls", pki=pki)
            procs.append(hft)
            nt, ht = TlsView(ngx_tls), TlsView(hft)
            ht.name = "holdfast"
            s = run_scenario("TLS keep-alive (ECDSA P-256)", [(nt, None), (ht, None)], "/", 50)
            print_table("TLS keep-alive, ECDSA P-256, c50", s)
            hs = run_handshakes([nt, ht], int(os.environ.get("HS_SECONDS", "5")))
            print("\n### full handshakes (medians; ratios against nginx)")
            print("| target | handshakes/s (client-bound) | server CPU us/handshake | CPU ratio |")
            print("|---|---|---|---|")
            for name, h in hs.items():
                print(f"| {name} | {h['hs_per_s']:.0f} | {h['cpu_us_per_hs']:.1f} | "
                      f"{h['cpu_us_per_hs'] / hs['nginx']['cpu_us_per_hs']:.2f} |")
            out["tls"] = {"keepalive": s, "handshakes": hs}
            for p in (hft, ngx_tls):
                p.stop()
                procs.remove(p)
        if "h2" in scenarios:
            pki = make_pki(work)
            ngx_h2 = start_nginx_h2(work, origin, pki)
            procs.append(ngx_h2)
            # Requests per connection as high as nginx's keepalive_requests here
            # (h2load does not reconnect after a GOAWAY).
            h2_cfg = {"holdfast": {"http2": {"max_requests": 1000000}}}
            hf_h2 = start_holdfast(work, origin, "holdfast-h2", pki=pki, extra=h2_cfg)
            procs.append(hf_h2)
            secs = int(DURATION.rstrip("s"))
            out["h2"] = run_h2load("HTTP/2 over TLS, GET /", [(ngx_h2, f"https://127.0.0.1:{ngx_h2.port}/"),
                                                             (hf_h2, f"https://127.0.0.1:{hf_h2.tls_port}/")], secs)
            for p in (hf_h2, ngx_h2):
                p.stop()
                procs.remove(p)
        if "grpc" in scenarios:
            gorigin = start_grpc_origin(work)
            procs.append(gorigin)
            ngx_g = start_nginx_grpc(work, gorigin)
            procs.append(ngx_g)
            hf_g = start_holdfast(work, origin, "holdfast-grpc", extra={"holdfast": {"http2": {"max_requests": 1000000}}},
                                  resources={"routes": [{"id": "1", "uri": "/*", "upstream": {
                                      "scheme": "grpc", "nodes": {f"127.0.0.1:{gorigin.port}": 1},
                                      "keepalive_pool": {"requests": 1000000, "size": 320, "idle_timeout": 60}}}]})
            procs.append(hf_g)
            msg = os.path.join(work, "grpc_message.bin")
            with open(msg, "wb") as f:
                f.write(b"\x00\x00\x00\x00\x05hello")
            secs = int(DURATION.rstrip("s"))
            extra = ("-d", msg, "-H", "content-type: application/grpc", "-H", "te: trailers")
            out["grpc"] = run_h2load("gRPC unary (h2c)", [(ngx_g, f"http://127.0.0.1:{ngx_g.port}/bench.Echo/Call"),
                                                         (hf_g, f"http://127.0.0.1:{hf_g.port}/bench.Echo/Call")],
                                     secs, extra)
            for p in (hf_g, ngx_g, gorigin):
                p.stop()
                procs.remove(p)
        if "ab" in scenarios or "ab-paced" in scenarios:
            base_bin = os.environ.get("BASELINE_BIN")
            if not base_bin:
                sys.exit("the ab scenarios need BASELINE_BIN (another build's holdfast)")
            hfe = start_holdfast(work, origin, "holdfast-epoll", env={"HOLDFAST_BACKEND": "epoll"})
            base = start_holdfast(work, origin, "baseline", env={"HOLDFAST_BACKEND": "io_uring"}, binary=base_bin)
            basee = start_holdfast(work, origin, "baseline-epoll", env={"HOLDFAST_BACKEND": "epoll"}, binary=base_bin)
            extra = [hfe, base, basee]
            procs.extend(extra)
        if "ab-paced" in scenarios:
            ratios = run_paced_pairs([(hf, base), (hfe, basee)], "/", 50)
            print(f"\n### paced A/B against {base_bin}: CPU per request, this build / baseline")
            for name, rs in ratios.items():
                print(f"{name}: median {statistics.median(rs):.3f}x, mean {statistics.mean(rs):.3f}x "
                      f"(rounds: {', '.join(f'{x:.3f}' for x in rs)})")
            out["ab-paced"] = ratios
        if "ab" in scenarios:
            s = run_scenario(f"this build and {base_bin}", [(nginx, None), (hf, None), (hfe, None), (base, None),
                                                              (basee, None)], "/", 50)
            print_table("this build and the baseline, 1 route, c50", s)
            for new, old in (("holdfast", "baseline"), ("holdfast-epoll", "baseline-epoll")):
                n, o = s[new], s[old]
                print(f"{new} / {old}: req/s {n['rps'] / o['rps']:.3f}x, CPU/req {n['cpu_us_per_req'] / o['cpu_us_per_req']:.3f}x, "
                      f"p99 {n['p99_ms'] / o['p99_ms']:.2f}x")
                # The machine drifts between rounds far more than 3 % (nginx
                # alone moves by a fifth); a ratio taken within each round
                # cancels most of that, so its median is the figure to quote.
                paired = [a / b for a, b in zip(n["cpu_rounds"], o["cpu_rounds"])]
                print(f"  CPU/req paired by round: median {statistics.median(paired):.3f}x "
                      f"(rounds: {', '.join(f'{x:.3f}' for x in paired)})")
            out["ab"] = s
        if "ab" in scenarios or "ab-paced" in scenarios:
            for p in extra:
                p.stop()
                procs.remove(p)
        with open(os.path.join(work, "results.json"), "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nraw results: {work}/results.json")
        bench_bin = os.path.join(os.path.dirname(HOLDFAST), "router_bench")
        if os.path.exists(bench_bin):
            print("\n## router match (Google Benchmark)")
            subprocess.run(["taskset", "-c", SUT_CPU, bench_bin, "--benchmark_min_time=0.2"])
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
