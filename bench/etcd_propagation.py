#!/usr/bin/env python3
"""etcd propagation and full-reload benchmark (not part of `make test`).

A real etcd (Debian etcd-server) holding 10,000 routes (the mix of
bench/run.py's 10k scenario: exact paths, prefixes, wildcard hosts), a real
Holdfast control node (role traditional, Admin API) and a real data plane
(role data_plane), all on free 127.0.0.1 ports, stopped by pid at the end.

  propagation   Admin API PUT of a new route on the traditional node; the
                clock starts when the PUT has answered and stops when the
                data plane answers 200 for that route (polled on a kept-alive
                connection every --poll-interval). p50/p99/max over --updates.
  cold start    data plane started against the 10k routes: spawn -> the
                "configuration applied" line; CPU time of the process by then
                and RSS (delta = against the same binary started against an
                empty prefix).
  etcd restart  etcd stopped and started again: the data plane's watch
                breaks and it reloads everything once etcd answers. Wall time
                from etcd answering to "configuration applied" (includes the
                node's retry back-off), CPU time and RSS change over the reload.
  compaction    a compaction past the data plane's revision cancels its
                re-created watch: the full reload (range + parse + validate +
                compile + publish) timed between the node's own log lines.

Targets: propagation p99 < 100 ms; full reload of 10,000 routes < 500 ms.

Usage: python3 bench/etcd_propagation.py [--routes 10000] [--updates 1000]
                                        [--cp-role traditional|control_plane]
"""
import argparse
import datetime
import http.client
import json
import math
import os
import shlex
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import harness  # noqa: E402  (Etcd, Upstream, Gateway, free_port)
from run import route_mix  # noqa: E402  (the 10k mix of bench/run.py)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PREFIX = "/apisix"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- process stats

def cpu_seconds(pid):
    """utime + stime of the whole process (all threads, live or exited)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_ns(pid):
    """On-CPU time of the live threads from schedstat (ns resolution; stat is in 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError):
            pass
    return total


def mem_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def log_ts(line):
    """Wall-clock seconds of a holdfast text log line (2026-11-26T19:15:47.717Z ...)."""
    stamp = line.split(" ", 1)[0]
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def applied_lines(gw):
    return [line for line in gw.logs().splitlines() if "configuration applied" in line]


def wait_applied(gw, count, min_routes=0, timeout=60.0, poll=0.002):
    """Waits for the count-th "configuration applied" line with at least
    min_routes routes; returns that line."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = applied_lines(gw)
        if len(lines) >= count:
            line = lines[count - 1]
            n = int(line.split("): ", 1)[1].split(" routes", 1)[0])
            if n >= min_routes:
                return line
            count += 1
            continue
        if gw.proc.poll() is not None:
            raise RuntimeError(f"holdfast exited: {gw.logs()[-2000:]}")
        time.sleep(poll)
    raise TimeoutError(f"no configuration applied with {min_routes} routes; log:\n{gw.logs()[-2000:]}")


def compile_ms(line):
    return float(line.rsplit(", ", 1)[1].split(" ms")[0])


# ---------------------------------------------------------------- setup

def load_etcd(etcd, routes, origin_addr):
    """Writes the upstream and the routes with transactions of 128 puts (etcd's --max-txn-ops)."""
    now = int(time.time())
    kvs = [(f"{PREFIX}/upstreams/origin", {"nodes": {origin_addr: 1}, "type": "roundrobin",
                                            "create_time": now, "update_time": now})]
    kvs += [(f"{PREFIX}/routes/{rid}", dict(r, create_time=now, update_time=now)) for rid, r in routes]
    for i in range(0, len(kvs), 128):
        ops = [{"request_put": {"key": harness.b64(k), "value": harness.b64(json.dumps(v))}} for k, v in kvs[i:i + 128]]
        etcd.call("/v3/kv/txn", {"success": ops})


def node_config(etcd, role, prefix=PREFIX, watch_timeout=50):
    cfg = {"apisix": {"status": {"ip": "127.0.0.1", "port": harness.free_port()}},
           "nginx_config": {"worker_processes": 1},
           "deployment": {"role": role, f"role_{role}": {"config_provider": "etcd"},
                          "etcd": {"host": [etcd.url], "prefix": prefix, "timeout": 10,
                                   "resync_delay": 0.2, "watch_timeout": watch_timeout}}}
    if role in ("traditional", "control_plane"):
        cfg["deployment"]["admin"] = {"admin_listen": {"ip": "127.0.0.1", "port": harness.free_port()},
                                      "admin_key": [{"name": "admin", "key": "admin-key", "role": "admin"}]}
    return cfg


def start_node(cfg):
    gw = harness.Gateway(config=cfg, provider="etcd", start=False)
    t0 = time.time()
    gw.start(wait=False)
    return gw, t0


# ---------------------------------------------------------------- measurements

def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, min(len(s), math.ceil(p / 100.0 * len(s))) - 1)]


class KeepAlive:
    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def close(self):
        if self.conn:
            self.conn.close()


def measure_propagation(cp, dp, updates, poll_interval, timeout=10.0):
    admin = KeepAlive(cp.admin_port)
    proxy = KeepAlive(dp.port)
    lat, put_lat, polls, failures, t0_wall = [], [], [], 0, []
    run = f"{os.getpid()}-{int(time.time())}"
    for i in range(updates):
        path = f"/prop/{run}/{i}"
        body = json.dumps({"uri": path, "upstream_id": "origin"})
        t_put = time.perf_counter()
        code, data = admin.request("PUT", f"/apisix/admin/routes/prop-{run}-{i}", body,
                                   {"X-API-KEY": "admin-key", "Content-Type": "application/json"})
        t0 = time.perf_counter()
        t0_wall.append(time.time())
        if code not in (200, 201):
            raise RuntimeError(f"Admin API PUT answered {code}: {data[:300]!r}")
        put_lat.append(t0 - t_put)
        n = 0
        while True:
            status, _ = proxy.request("GET", path)
            n += 1
            if status == 200:
                lat.append(time.perf_counter() - t0)
                break
            if time.perf_counter() - t0 > timeout:
                failures += 1
                break
            if poll_interval:
                time.sleep(poll_interval)
        polls.append(n)
        if (i + 1) % 100 == 0:
            log(f"  {i + 1}/{updates} updates, p50 so far {statistics.median(lat) * 1000:.1f} ms")
    admin.close()
    proxy.close()
    return lat, put_lat, polls, failures, t0_wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--routes", type=int, default=10000, help="routes present in etcd (default 10000)")
    ap.add_argument("--updates", type=int, default=1000, help="Admin API PUTs measured (default 1000)")
    ap.add_argument("--poll-interval", type=float, default=0.0005,
                    help="seconds between two polls of the data plane (default 0.0005)")
    ap.add_argument("--cp-role", choices=["traditional", "control_plane"], default="traditional",
                    help="role of the node serving the Admin API (default traditional)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (logs) of etcd and the nodes")
    args = ap.parse_args()
    if args.keep:
        os.environ["KEEP_E2E_DIRS"] = "1"
    command = "python3 bench/etcd_propagation.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if not os.path.exists(harness.BIN):
        sys.exit(f"{harness.BIN} not found: build first (cmake --build build)")

    procs = []
    results = {}
    try:
        etcd = harness.Etcd()
        procs.append(etcd)
        origin = harness.Upstream("origin")
        procs.append(origin)
        routes = route_mix(args.routes)
        t = time.time()
        load_etcd(etcd, routes, origin.addr)
        log(f"etcd {etcd.url}: {args.routes} routes written in {time.time() - t:.1f} s (revision {etcd.revision()})")

        # Baseline memory: the same binary against an empty prefix.
        base, _ = start_node(node_config(etcd, "data_plane", prefix="/empty"))
        procs.append(base)
        wait_applied(base, 1)
        time.sleep(0.3)
        base_rss = mem_kb(base.proc.pid, "VmRSS")
        base.stop()
        procs.remove(base)

        # Cold start of the data plane against 10k routes.
        dp, t_spawn = start_node(node_config(etcd, "data_plane", watch_timeout=2))
        procs.append(dp)
        line = wait_applied(dp, 1, min_routes=args.routes, poll=0.001)
        t_seen = time.time()
        results["cold"] = {
            "wall": log_ts(line) - t_spawn, "seen": t_seen - t_spawn, "compile": compile_ms(line) / 1000,
            "cpu": cpu_ns(dp.proc.pid) / 1e9, "rss": mem_kb(dp.proc.pid, "VmRSS"), "hwm": mem_kb(dp.proc.pid, "VmHWM"),
            "base_rss": base_rss}
        harness.wait_port(dp.port, proc=dp.proc)
        log(f"data plane cold start: {results['cold']['wall'] * 1000:.0f} ms to configuration applied")

        # The node with the Admin API: traditional (a gateway itself, so it
        # also rebuilds its snapshot on every change) or control_plane.
        cp, _ = start_node(node_config(etcd, args.cp_role))
        procs.append(cp)
        if args.cp_role == "traditional":
            wait_applied(cp, 1, min_routes=args.routes)
        harness.wait_port(cp.admin_port, proc=cp.proc)

        log(f"propagation: {args.updates} Admin API PUTs")
        applied_before = len(applied_lines(dp))
        cpu_before = cpu_seconds(dp.proc.pid)
        t = time.time()
        lat, put_lat, polls, failures, t0_wall = measure_propagation(cp, dp, args.updates, args.poll_interval)
        new_lines = applied_lines(dp)[applied_before:]
        results["prop"] = {"lat": lat, "put": put_lat, "polls": polls, "failures": failures,
                           "elapsed": time.time() - t, "snapshots": len(new_lines),
                           "cpu": cpu_seconds(dp.proc.pid) - cpu_before,
                           "dp_compile": [compile_ms(x) / 1000 for x in new_lines],
                           # one snapshot per update (each waits for the previous one to be
                           # served): PUT answered -> the node's "configuration applied" line
                           "to_applied": [log_ts(x) - t0 for x, t0 in zip(new_lines, t0_wall)]
                           if len(new_lines) == len(t0_wall) and not failures else []}
        total_routes = args.routes + args.updates
        time.sleep(0.5)

        # Forced full reload 1: etcd restarted.
        n = len(applied_lines(dp))
        rss0, cpu0 = mem_kb(dp.proc.pid, "VmRSS"), cpu_ns(dp.proc.pid)
        etcd.stop()
        etcd.start()
        t_up = time.time()
        line = wait_applied(dp, n + 1, min_routes=total_routes)
        time.sleep(0.2)
        reach = [x for x in dp.logs().splitlines() if "etcd reachable" in x][-1]
        results["restart"] = {"wall": log_ts(line) - t_up, "after_range": log_ts(line) - log_ts(reach),
                              "compile": compile_ms(line) / 1000, "cpu": (cpu_ns(dp.proc.pid) - cpu0) / 1e9,
                              "rss_delta": mem_kb(dp.proc.pid, "VmRSS") - rss0}
        log(f"etcd restart: configuration applied {results['restart']['wall'] * 1000:.0f} ms after etcd answered")

        # Forced full reload 2: compaction past the node's revision. A write
        # outside the prefix moves etcd's revision but not the node's; when its
        # idle watch (watch_timeout 2 s) is re-created it is canceled as
        # compacted and the node reloads everything at once.
        time.sleep(0.5)
        n = len(applied_lines(dp))
        etcd.put("/bench-outside/k", "x")  # two writes: the watch restarts at node revision + 1,
        etcd.put("/bench-outside/k", "y")  # which must itself be compacted
        rss0, cpu0 = mem_kb(dp.proc.pid, "VmRSS"), cpu_ns(dp.proc.pid)
        etcd.compact(etcd.revision())
        line = wait_applied(dp, n + 1, min_routes=total_routes, timeout=15)
        canceled = [x for x in dp.logs().splitlines() if "watch canceled" in x][-1]
        results["compact"] = {"wall": log_ts(line) - log_ts(canceled), "compile": compile_ms(line) / 1000,
                              "cpu": (cpu_ns(dp.proc.pid) - cpu0) / 1e9,
                              "rss_delta": mem_kb(dp.proc.pid, "VmRSS") - rss0}
    finally:
        for p in reversed(procs):
            try:
                p.destroy() if isinstance(p, harness.Etcd) and not args.keep else p.stop()
            except Exception as e:  # noqa: BLE001 - best effort cleanup, keep going
                log(f"cleanup: {e!r}")

    report(results, args, command)


def report(r, args, command):
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    p = r["prop"]
    lat = p["lat"]
    p99 = pct(lat, 99) if lat else float("inf")
    ok = lambda good: "✅" if good else "❌"  # noqa: E731
    c, rs, cp = r["cold"], r["restart"], r["compact"]
    print()
    print(f"### etcd propagation and full reload ({args.routes:,} routes, {args.updates:,} updates)")
    print()
    print("| measurement | value | target |")
    print("|---|---|---|")
    print(f"| propagation p50 (Admin API PUT answered → data plane serves the route) | {ms(statistics.median(lat))} | |")
    print(f"| propagation p99 | {ms(p99)} | < 100 ms {ok(p99 < 0.1)} |")
    print(f"| propagation max | {ms(max(lat))} | |")
    print(f"| propagation timeouts (> 10 s) | {p['failures']} | 0 |")
    print(f"| Admin API PUT latency p50 / p99 | {ms(statistics.median(p['put']))} / {ms(pct(p['put'], 99))} | |")
    print(f"| data plane snapshots built for {len(lat):,} updates | {p['snapshots']:,} "
          f"(compile p50 {ms(statistics.median(p['dp_compile']) if p['dp_compile'] else 0)}) | |")
    if p["to_applied"]:
        print(f"| of which: PUT answered → data plane logs \"configuration applied\" p50 / p99 "
              f"(20 ms coalescing + parse + compile; log ms resolution) | "
              f"{ms(statistics.median(p['to_applied']))} / {ms(pct(p['to_applied'], 99))} | |")
    print(f"| data plane CPU during the updates (incl. answering the polls) | {p['cpu']:.2f} s over {p['elapsed']:.1f} s | |")
    print(f"| cold start: spawn → configuration applied ({args.routes:,} routes) | {ms(c['wall'])} "
          f"(compile {ms(c['compile'])}) | < 500 ms {ok(c['wall'] < 0.5)} |")
    print(f"| cold start: process CPU time | {ms(c['cpu'])} | |")
    print(f"| cold start: RSS / delta vs. empty config / peak | {c['rss'] / 1024:.1f} MiB / "
          f"+{(c['rss'] - c['base_rss']) / 1024:.1f} MiB / {c['hwm'] / 1024:.1f} MiB | |")
    print(f"| full reload after compaction: watch canceled → applied | {ms(cp['wall'])} "
          f"(compile {ms(cp['compile'])}) | < 500 ms {ok(cp['wall'] < 0.5)} |")
    print(f"| full reload after compaction: CPU time / RSS change | {ms(cp['cpu'])} / "
          f"{cp['rss_delta'] / 1024:+.1f} MiB | |")
    print(f"| etcd restart: etcd answering → applied (includes retry back-off) | {ms(rs['wall'])} "
          f"(range done → applied {ms(rs['after_range'])}) | |")
    print(f"| etcd restart: CPU time / RSS change | {ms(rs['cpu'])} / {rs['rss_delta'] / 1024:+.1f} MiB | |")
    print()
    print(f"Admin API on a {args.cp_role} node; polls per update: median {statistics.median(p['polls']):.0f}, "
          f"poll interval {args.poll_interval * 1000:.1f} ms; "
          f"1 worker per node; nodes, etcd and the poller share {os.cpu_count()} CPUs; "
          f"full reloads at {args.routes + args.updates:,} routes.")
    print()
    print(f"Command: `{command.strip()}`")


if __name__ == "__main__":
    main()
