"""Replays cases written from Apache APISIX's own tests (cases/<dir>/<file>.json,
each citing its `.t` file and TEST number) against one real Holdfast
(traditional role: etcd + Admin API) and prints, per file and in total, how many
behave as APISIX's test states. Steps run in file order, as APISIX's tests do:
a case may rely on resources an earlier case installed.

  run.py [--check] [--only FILE_SUBSTRING] [--write-known]

--check fails (exit 1) when a case not in known_differences.txt differs from
APISIX, or a listed case now behaves as APISIX (then remove its line)."""
import argparse
import glob
import http.client
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness  # noqa: E402
from origin import Origin  # noqa: E402

ORIGIN_PORT_NAMES = (1980, 1981, 1982)  # the ports APISIX's test origin listens on
GATEWAY_NAME = 1984                    # APISIX's own port in its tests
KNOWN = os.path.join(HERE, "known_differences.txt")


def load_cases(only):
    files = []
    for path in sorted(glob.glob(os.path.join(HERE, "cases", "*", "*.json"))):
        with open(path) as f:
            doc = json.load(f)
        if only and only not in doc["source"]:
            continue
        files.append(doc)
    return files


class Replay:
    def __init__(self):
        self.holder = harness.GatewayTest()
        self.holder.setUp()
        self.etcd = self.holder.etcd()
        self.origins = {}
        self.gw = None
        self.gw_config = None

    def start_origins(self):
        real = {}
        for name in ORIGIN_PORT_NAMES:
            o = Origin(name, real)  # real is filled below: every origin shares the map
            self.origins[name] = o
            real[o.port] = name

    def ensure_gateway(self, config):
        if self.gw is not None and self.gw_config == config:
            return False
        if self.gw is not None:
            self.gw.stop()
            self.holder._procs.remove(self.gw)
        cfg = harness.deep_merge({"nginx_config": {"error_log_level": "info"}}, json.loads(json.dumps(config)))
        self.gw = self.holder.etcd_gateway(self.etcd, role="traditional", config=cfg)
        harness.wait_port(self.gw.admin_port)
        self.gw_config = config
        for o in self.origins.values():
            o.port_map[self.gw.port] = GATEWAY_NAME
        return True

    def fresh_process(self):
        """APISIX runs each .t file on a new nginx: shared dicts (limit-count
        counters) start empty. Counters live as long as the process, so the
        same process is restarted (same folder and etcd) between files;
        otherwise a file's results would depend on how long ago an earlier
        file used the same counter key (route id + plugin configuration)."""
        self.gw.restart()
        harness.wait_port(self.gw.admin_port)
        self.sync()

    def close(self):
        for o in self.origins.values():
            o.stop()
        self.holder.tearDown()

    # --- state -------------------------------------------------------------
    def clear(self):
        """Each file starts from an empty configuration, as APISIX's test runs
        start from a fresh etcd per file."""
        self.etcd.call("/v3/kv/deleterange", {"key": harness.b64("/apisix/"), "range_end": harness.b64("/apisix0")})
        self.sync()

    def sync(self, timeout=5.0):
        """Waits until the gateway serves etcd's current revision."""
        want = self.etcd.revision()
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                code, st = self.gw.status()
                if code == 200 and int(st.get("revision") or 0) >= want:
                    return
            except OSError:
                pass
            time.sleep(0.01)

    # --- substitution ------------------------------------------------------
    def real_addr(self, port):
        if port in self.origins:
            return self.origins[port].port
        if port == GATEWAY_NAME:
            return self.gw.port
        return port

    def subst(self, value):
        """The cases name APISIX's ports (127.0.0.1:1980, ...); map them to
        the processes of this run."""
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                k2 = self.subst_str(k)
                if k == "port" and isinstance(v, int):
                    out[k2] = self.real_addr(v)
                else:
                    out[k2] = self.subst(v)
            return out
        if isinstance(value, list):
            return [self.subst(v) for v in value]
        if isinstance(value, str):
            return self.subst_str(value)
        return value

    def subst_str(self, s):
        return re.sub(r"(127\.0\.0\.1|localhost):(198[0-4])\b",
                      lambda m: f"{m.group(1)}:{self.real_addr(int(m.group(2)))}", s)

    def logical(self, text):
        """What came back, with this run's ports named as APISIX's tests
        name them (origins 1980-1982, the gateway 1984, its TLS port 9443)."""
        names = {o.port: n for n, o in self.origins.items()}
        names[self.gw.port] = GATEWAY_NAME
        names[self.gw.tls_port] = 9443
        return re.sub(r":(\d{2,5})\b", lambda m: f":{names.get(int(m.group(1)), m.group(1))}", text)

    # --- steps -------------------------------------------------------------
    def admin_step(self, step):
        a = step["admin"]
        body = self.subst(a["body"]) if "body" in a else None
        if "raw_body" in a:
            body = self.subst_str(a["raw_body"])  # not JSON, on purpose
        code, got = self.gw.admin(a["method"], a["path"], body)
        self.sync()
        exp = step.get("expect", {"status": "2xx"})
        want = exp.get("status", "2xx")
        if want == "any":
            return None
        if want == "2xx":
            if not 200 <= code < 300:
                return f"admin {a['method']} {a['path']}: want 2xx, got {code} {self.logical(json.dumps(got))[:160]}"
            return None
        if code != want:
            return f"admin {a['method']} {a['path']}: want {want}, got {code} {self.logical(json.dumps(got))[:160]}"
        # Compact, as APISIX writes its JSON answers.
        text = json.dumps(got, separators=(",", ":"), ensure_ascii=False) if isinstance(got, (dict, list)) else str(got)
        if "body_like" in exp and not re.search(exp["body_like"], text):
            return f"admin {a['method']} {a['path']}: want body like {exp['body_like'][:100]!r}, got {text[:160]!r}"
        msg = got.get("error_msg", "") if isinstance(got, dict) else ""
        if "error_msg_suffix" in exp and not msg.endswith(exp["error_msg_suffix"]):
            return f"admin {a['method']} {a['path']}: want error_msg ending {exp['error_msg_suffix'][:120]!r}, got {msg[:200]!r}"
        if "error_msg_like" in exp and not re.search(exp["error_msg_like"], msg):
            return f"admin {a['method']} {a['path']}: want error_msg like {exp['error_msg_like'][:120]!r}, got {msg[:200]!r}"
        if "json_body" in exp and got != exp["json_body"]:
            return f"admin {a['method']} {a['path']}: want {json.dumps(exp['json_body'])[:160]}, got {json.dumps(got)[:160]}"
        return None

    def request_step(self, step):
        r = step["request"]
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
        try:
            conn.putrequest(r["method"], r["path"], skip_host=True, skip_accept_encoding=True)
            names = {k.lower() for k, _ in r.get("headers", [])}
            if "host" not in names:
                conn.putheader("Host", "localhost")  # what test-nginx sends
            for k, v in r.get("headers", []):
                conn.putheader(k, v)
            body = r.get("body")
            data = body.encode() if body is not None else None
            if data is not None:
                conn.putheader("Content-Length", str(len(data)))
            conn.putheader("Connection", "close")
            conn.endheaders(data)
            resp = conn.getresponse()
            got_body = self.logical(resp.read().decode("utf-8", errors="replace"))
            got_headers = [(k, self.logical(v)) for k, v in resp.getheaders()]
            status = resp.status
        except (OSError, http.client.HTTPException) as e:
            return f"{r['method']} {r['path']}: {type(e).__name__}: {e}"
        finally:
            conn.close()
        exp = dict(step["expect"])
        if "body" in exp and not isinstance(exp["body"], str):
            exp["body"] = str(exp["body"])  # a number in an eval list, e.g. server_port's answer
        what = f"{r['method']} {r['path']}"
        if "status_like" in exp:
            if not re.fullmatch(exp["status_like"], str(status)):
                return f"{what}: status want like {exp['status_like']!r}, got {status} (body {got_body[:100]!r})"
        elif status != exp.get("status", 200):
            return f"{what}: status want {exp.get('status', 200)}, got {status} (body {got_body[:100]!r})"
        if "body" in exp and got_body != exp["body"]:
            return f"{what}: body want {exp['body'][:120]!r}, got {got_body[:120]!r}"
        if "body_like" in exp and not re.search(exp["body_like"], got_body, re.S):
            return f"{what}: body want like {exp['body_like'][:100]!r}, got {got_body[:100]!r}"
        if "body_unlike" in exp and re.search(exp["body_unlike"], got_body, re.S):
            return f"{what}: body want unlike {exp['body_unlike'][:100]!r}, got {got_body[:100]!r}"
        lower = {}
        for k, v in got_headers:
            lower.setdefault(k.lower(), []).append(v)
        for name, value in exp.get("headers", []):
            if name.startswith("!"):
                if name[1:].lower() in lower:
                    return f"{what}: header {name[1:]} should be absent, got {lower[name[1:].lower()]}"
                continue
            have = lower.get(name.lower())
            if value == "":
                if have and have != [""]:
                    return f"{what}: header {name} want empty/absent, got {have}"
            elif have is None or ", ".join(have) != value:
                return f"{what}: header {name} want {value!r}, got {have}"
        for name, pattern in exp.get("headers_like", []):
            have = ", ".join(lower.get(name.lower(), []))
            if not re.fullmatch(pattern, have):
                return f"{what}: header {name} want like {pattern!r}, got {have!r}"
        return None

    def etcd_step(self, step):
        """A value written to etcd directly, past the Admin API's checks, as
        some APISIX tests do (core.etcd.set)."""
        e = step["etcd_put"]
        self.etcd.put("/apisix" + e["key"], self.subst(e["value"]))
        self.sync()
        return None

    def run_case(self, case):
        for step in case["steps"]:
            if "etcd_put" in step:
                diff = self.etcd_step(step)
            else:
                diff = self.admin_step(step) if "admin" in step else self.request_step(step)
            if diff:
                return diff
        return None


def read_known():
    known = {}
    if os.path.exists(KNOWN):
        with open(KNOWN) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    cid, _, reason = line.partition(" ")
                    known[cid] = reason.strip()
    return known


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--only")
    ap.add_argument("--write-known", action="store_true",
                    help="rewrite known_differences.txt from this run, keeping existing reasons")
    args = ap.parse_args()
    files = load_cases(args.only)
    rp = Replay()
    results = {}
    t0 = time.time()
    try:
        rp.start_origins()
        for doc in files:
            rp.ensure_gateway(doc.get("config", {}))
            rp.clear()
            rp.fresh_process()
            for case in doc["cases"]:
                # A block with its own nginx real-ip directives runs on a
                # gateway configured with their config.yaml equivalents.
                config = doc.get("config", {})
                if "config" in case:
                    config = harness.deep_merge(json.loads(json.dumps(config)), case["config"])
                if rp.ensure_gateway(config):
                    rp.sync()
                results[case["id"]] = (doc["source"], rp.run_case(case))
    finally:
        rp.close()

    known = read_known()
    total_run = total_ok = 0
    print(f"{'file':58} {'run':>4} {'as APISIX':>9} {'differ':>6} {'skipped':>7}")
    for doc in files:
        ids = [c["id"] for c in doc["cases"]]
        ok = sum(1 for i in ids if results[i][1] is None)
        skipped = sum(len(v) for v in doc.get("skipped", {}).values())
        total_run += len(ids)
        total_ok += ok
        pct = f"{100 * ok / len(ids):.0f}%" if ids else "-"
        print(f"{doc['source']:58} {len(ids):4} {ok:4} {pct:>4} {len(ids) - ok:6} {skipped:7}")
        for i in ids:
            if results[i][1] is not None:
                print(f"    {i}: {results[i][1]}")
    # The two figures: the ten plugins (t/plugin) and routing
    # (t/router, t/node); and the same counting only cases that send a
    # request through the proxy (not Admin API writes alone).
    for label, dirs in (("plugins", ("t/plugin/",)), ("routing", ("t/router/", "t/node/"))):
        for only_requests in (False, True):
            ids = [c["id"] for d in files if d["source"].startswith(dirs) for c in d["cases"]
                   if not only_requests or any("request" in s for s in c["steps"])]
            ok = sum(1 for i in ids if results[i][1] is None)
            what = "cases with a proxied request" if only_requests else "cases"
            print(f"{label}: {ok}/{len(ids)} {what} behave as APISIX ({100 * ok / max(len(ids), 1):.1f}%)")
    print(f"total: {total_run} cases, {total_ok} behave as APISIX "
          f"({100 * total_ok / max(total_run, 1):.1f}%), {total_run - total_ok} differ; {time.time() - t0:.1f} s")

    if args.write_known:
        with open(KNOWN, "w") as f:
            f.write("# Replay cases that currently differ from APISIX: <case id> <reason>.\n"
                    "# run.py --check fails when a case not listed differs, or a listed one now passes.\n")
            for cid, reason in known.items():
                if cid not in results:  # not run this time (--only): kept
                    f.write(f"{cid} {reason}\n")
            for cid, (src, diff) in results.items():
                if diff is not None:
                    f.write(f"{cid} {known.get(cid) or 'unclassified: ' + diff[:150]}\n")

    if args.check:
        regressed = [i for i, (_, d) in results.items() if d is not None and i not in known]
        fixed = [i for i, (_, d) in results.items() if d is None and i in known]
        for i in regressed:
            print(f"REGRESSION (differs, not in known_differences.txt): {i}: {results[i][1]}")
        for i in fixed:
            print(f"NOW AS APISIX (remove from known_differences.txt): {i}")
        if regressed or fixed:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
