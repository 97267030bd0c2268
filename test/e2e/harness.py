"""Helpers for end-to-end tests: free ports, real upstream processes, the
real holdfast binary, and an HTTP client over real sockets.

Every process started here is stopped by the test that started it, by pid.
"""
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("HOLDFAST_BIN", os.path.join(ROOT, "build", "holdfast"))


_handed_out = set()


def _below_ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return 10000, max(low - 1, 10001)


# `make test` runs test files side by side (ctest -j with
# test/ctest_resources.json): each running file holds one of PORT_SHARES
# slots of the "ports" resource, and its id picks a disjoint share of the
# range, so two files never hand out the same port (one file checks that a
# port is free, the other binds it a moment later). Outside ctest, or with
# plain `ctest`, the whole range.
PORT_SHARES = 8


def _port_share(lo, hi):
    m = re.fullmatch(r"id:(\d+),slots:\d+", os.environ.get("CTEST_RESOURCE_GROUP_0_PORTS", ""))
    if not m or int(m.group(1)) >= PORT_SHARES:
        return lo, hi
    size = (hi - lo + 1) // PORT_SHARES
    start = lo + int(m.group(1)) * size
    return start, start + size - 1


_PORTS = _port_share(*_below_ephemeral_range())


def free_port():
    """A port nothing is bound to now, never the same twice in this process.
    It comes from below the kernel's ephemeral range: a port from bind(0)
    could be given to some outgoing connection (etcd's, a client's) before
    our server binds it, and that start-up would fail."""
    lo, hi = _PORTS
    for _ in range(500):
        port = random.randint(lo, hi)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no fresh free port")


def wait_port(port, timeout=10.0, proc=None, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


# The sanitizer run (README, Tests) starts a binary built with ASan + UBSan
# and points ASAN_OPTIONS/UBSAN_OPTIONS log_path at a folder. A report goes
# to <log_path>.<pid>; after each process exit the harness fails the test
# with the text of that report, so no report is left in a log nobody reads.
SANITIZER = bool(os.environ.get("HOLDFAST_SANITIZER"))


class SanitizerReport(AssertionError):
    pass


def _sanitizer_log_paths(env):
    paths = []
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        for opt in (env.get(var) or "").replace(",", ":").split(":"):
            key, _, value = opt.partition("=")
            if key.strip() == "log_path" and value and value not in ("stdout", "stderr"):
                paths.append(value)
    return paths


def forget_sanitizer_reports(pid, env):
    """A report file left by an earlier process with the same pid is not ours."""
    for path in _sanitizer_log_paths(env):
        try:
            os.remove(f"{path}.{pid}")
        except FileNotFoundError:
            pass


def check_sanitizer_reports(pid, env, what="holdfast"):
    """Raises SanitizerReport with the report(s) an exited process wrote."""
    reports = []
    for path in _sanitizer_log_paths(env):
        try:
            with open(f"{path}.{pid}", errors="replace") as f:
                reports.append(f"{path}.{pid}:\n{f.read()}")
        except FileNotFoundError:
            pass
    if reports:
        raise SanitizerReport(f"{what} (pid {pid}) wrote a sanitizer report:\n" + "\n".join(reports))


def run_holdfast(args, env=None, timeout=15):
    """Runs the binary to completion (-t, --help, --version, a start-up that
    must fail) and returns the CompletedProcess (text stdout and stderr).
    Retries briefly when the binary is missing or busy (being relinked)."""
    full_env = dict(os.environ, **(env or {}))
    for attempt in range(20):
        try:
            proc = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=full_env)
            forget_sanitizer_reports(proc.pid, full_env)
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
            check_sanitizer_reports(proc.pid, full_env, f"holdfast {' '.join(args)}")
            return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        except OSError:
            if attempt == 19:
                raise
            time.sleep(0.5)


class Upstream:
    """test/e2e/upstream.py in its own process."""

    def __init__(self, name="u1", port=None, mode="", host="127.0.0.1"):
        self.name = name
        self.host = host
        self.port = port or free_port()
        args = [sys.executable, os.path.join(HERE, "upstream.py"), str(self.port), name] + ([mode] if mode else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, UPSTREAM_HOST=host))
        self.proc.stdout.readline()
        wait_port(self.port, proc=self.proc, host=host)

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()


def yaml_dump(obj, indent=0):
    """Tiny YAML writer (JSON is valid YAML flow style); enough for configs."""
    return json.dumps(obj, indent=2)


class Gateway:
    """The real holdfast binary with a config.yaml and a standalone file."""

    def __init__(self, resources=None, config=None, provider="yaml", workers=1, extra_env=None, start=True,
                 raw_standalone=None, launcher=None):
        self.dir = tempfile.mkdtemp(prefix="holdfast-e2e-")
        self.port = free_port()
        self.tls_port = free_port()  # apisix.ssl.listen (on by default, as in APISIX)
        self.prometheus_port = free_port()  # the prometheus export server (on by default, as in APISIX)
        self.provider = provider
        cfg = {
            "apisix": {"node_listen": [{"ip": "127.0.0.1", "port": self.port}],
                       "ssl": {"listen": [{"ip": "127.0.0.1", "port": self.tls_port}]}},
            "plugin_attr": {"prometheus": {"export_addr": {"ip": "127.0.0.1", "port": self.prometheus_port}}},
            "nginx_config": {"worker_processes": workers},
            "deployment": {"role": "data_plane", "role_data_plane": {"config_provider": provider}},
        }
        if config:
            deep_merge(cfg, config)
        self.config = cfg
        self.config_path = os.path.join(self.dir, "config.yaml")
        with open(self.config_path, "w") as f:
            f.write(json.dumps(cfg, indent=2))
        self.log_path = os.path.join(self.dir, "holdfast.log")
        if provider in ("yaml", "json"):
            if raw_standalone is not None:
                self.write_raw(raw_standalone)
            else:
                self.write(resources or {})
        self.proc = None
        self.env = dict(os.environ, **(extra_env or {}))
        self.launcher = list(launcher or [])  # a command that execs the binary (e.g. seccomp_exec.py)
        if start:
            self.start()

    @property
    def standalone_path(self):
        return os.path.join(self.dir, "apisix.yaml" if self.provider == "yaml" else "apisix.json")

    def write_raw(self, text):
        tmp = self.standalone_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.standalone_path)

    def write(self, resources):
        text = json.dumps(resources, indent=2)
        if self.provider == "yaml":
            text += "\n#END\n"
        self.write_raw(text)

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        starts = self.logs().count(" started: role")  # a restart appends to the same log
        self.proc = subprocess.Popen([*self.launcher, BIN, "-c", self.config_path], stdout=self.log, stderr=self.log,
                                     env=self.env)
        forget_sanitizer_reports(self.proc.pid, self.env)
        role = self.config.get("deployment", {}).get("role")
        if wait:
            wait_port(self.admin_port if role == "control_plane" else self.port, proc=self.proc)
            if role == "traditional" and self.admin_port:
                wait_port(self.admin_port, proc=self.proc)
            # The proxy port opens before the rest starts (first configuration,
            # signal handling): wait for the end of start-up too, so that a
            # test's first reading (log lines, descriptors) is not taken in
            # the middle of it.
            deadline = time.time() + 10
            quiet = self.config.get("nginx_config", {}).get("error_log_level") in ("warn", "error")  # no info line
            while not quiet and self.logs().count(" started: role") <= starts:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"holdfast exited with {self.proc.returncode} during start-up:\n"
                                       f"{self.logs()[-3000:]}")
                if time.time() > deadline:
                    raise TimeoutError(f"holdfast did not finish starting:\n{self.logs()[-3000:]}")
                time.sleep(0.02)

    @property
    def admin_port(self):
        return self.config.get("deployment", {}).get("admin", {}).get("admin_listen", {}).get("port")

    @property
    def status_port(self):
        return self.config.get("apisix", {}).get("status", {}).get("port")

    def status(self, path="/status"):
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"{}")
        finally:
            conn.close()

    def restart(self, before_start=None):
        """Stops the process (keeping its folder and cache) and starts it again."""
        self.stop(keep_dir=True)
        if before_start:
            before_start()
        self.start()

    def request_status_raw(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def admin(self, method, path, body=None, key="admin-key", headers=None):
        """Calls the Admin API; returns (status, parsed JSON body or raw text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            h = dict(headers or {})
            if key is not None:
                h["X-API-KEY"] = key
            data = json.dumps(body) if isinstance(body, (dict, list)) else body
            if data is not None:
                h.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw)
            except ValueError:
                return r.status, raw.decode(errors="replace")
        finally:
            conn.close()

    def logs(self):
        if getattr(self, "_final_logs", None) is not None:
            return self._final_logs
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, text, timeout=5.0, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.logs().count(text) >= count:
                return True
            time.sleep(0.05)
        raise AssertionError(f"log line {text!r} not seen; log:\n{self.logs()[-3000:]}")

    def reload(self, resources, timeout=5.0):
        """Writes a new standalone file and waits until it is applied."""
        n = self.logs().count("configuration applied")
        # mtime granularity: make sure the new file differs in size or time
        time.sleep(0.01)
        self.write(resources)
        self.wait_log("configuration applied", timeout=timeout, count=n + 1)

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def stop(self, sig=signal.SIGTERM, timeout=15, keep_dir=False):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        if not os.environ.get("KEEP_E2E_DIRS") and not keep_dir:
            self._final_logs = self.logs()  # still readable after the folder is gone
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.proc and self.proc.returncode is not None and getattr(self, "_checked", None) is not self.proc:
            self._checked = self.proc  # reported once, not again by tearDown
            check_sanitizer_reports(self.proc.pid, self.env)
            # A forced exit skips the teardown (and LeakSanitizer) that the
            # sanitizer run is there to check: a component did not stop.
            if SANITIZER and "stopped without cleanup" in self.logs():
                raise SanitizerReport(f"holdfast (pid {self.proc.pid}) exited without cleanup:\n{self.logs()[-3000:]}")
        return self.proc.returncode if self.proc else None

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.getheaders(), data)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def raw(self, data, timeout=5):
        """Sends raw bytes; returns everything received until the peer closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            out = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except socket.timeout:
                out += b"<timeout>"
            return out


class Etcd:
    """A real etcd (Debian etcd-server) on free loopback ports, data in a temp dir.

    kv operations go through etcd's own JSON gateway with urllib, independently
    of Holdfast's client.

    tls (optional) serves clients over https: {"cert", "key"} are the server
    certificate files, "ca" the CA the harness trusts for its own calls;
    "client_ca" adds --client-cert-auth --trusted-ca-file, and then
    "client_cert"/"client_key" are what the harness itself presents;
    "check_hostname": False when the server certificate does not name
    127.0.0.1. The dict may be changed between stop() and start().
    extra_args are passed to etcd as they are (e.g. --auth-token-ttl)."""

    def __init__(self, data_dir=None, tls=None, extra_args=None):
        self.dir = data_dir or tempfile.mkdtemp(prefix="holdfast-etcd-")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.tls = tls
        self.extra_args = list(extra_args or [])
        self.auth = None   # (user, password) once enable_auth() ran
        self.token = None
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def log_path(self):
        return os.path.join(self.dir, "etcd.log")

    def start(self):
        self.log = open(self.log_path, "ab")
        tls_args = []
        if self.tls:
            tls_args = ["--cert-file", self.tls["cert"], "--key-file", self.tls["key"]]
            if self.tls.get("client_ca"):
                tls_args += ["--client-cert-auth", "--trusted-ca-file", self.tls["client_ca"]]
        self.proc = subprocess.Popen([
            "etcd", "--name", "e2e", "--data-dir", os.path.join(self.dir, "data"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-cluster", f"e2e=http://127.0.0.1:{self.peer_port}", *tls_args, *self.extra_args],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}; see {self.log_path}")
            try:
                self.call("/v3/kv/range", {"key": b64("/")})
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("etcd did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc:
            self.log.close()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _ssl_context(self):
        import ssl
        ctx = ssl.create_default_context(cafile=self.tls.get("ca"))
        ctx.check_hostname = self.tls.get("check_hostname", True)
        if self.tls.get("client_cert"):
            ctx.load_cert_chain(self.tls["client_cert"], self.tls["client_key"])
        return ctx

    def call(self, path, body, _retry=True):
        import urllib.error
        import urllib.request
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = self.token
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5, context=self._ssl_context() if self.tls else None) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 401 and self.auth and _retry:  # token expired (or etcd restarted): log in again
                self.token = None
                self.token = self.call("/v3/auth/authenticate", {"name": self.auth[0], "password": self.auth[1]},
                                       _retry=False)["token"]
                return self.call(path, body, _retry=False)
            raise

    def enable_auth(self, root_password, users=()):
        """Turns on etcd authentication: a root user (role root), then for each
        (name, password, prefix) a user whose role may read and write keys
        under prefix. The harness then calls etcd as root."""
        self.call("/v3/auth/user/add", {"name": "root", "password": root_password})
        self.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
        for name, password, prefix in users:
            end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            self.call("/v3/auth/role/add", {"name": name + "-role"})
            self.call("/v3/auth/role/grant", {"name": name + "-role", "perm": {
                "permType": "READWRITE", "key": b64(prefix), "range_end": b64(end)}})
            self.call("/v3/auth/user/add", {"name": name, "password": password})
            self.call("/v3/auth/user/grant", {"user": name, "role": name + "-role"})
        self.call("/v3/auth/enable", {})
        self.auth = ("root", root_password)
        self.token = self.call("/v3/auth/authenticate", {"name": "root", "password": root_password})["token"]

    def put(self, key, value):
        v = value if isinstance(value, str) else json.dumps(value)
        return int(self.call("/v3/kv/put", {"key": b64(key), "value": b64(v)})["header"]["revision"])

    def get(self, key):
        r = self.call("/v3/kv/range", {"key": b64(key)})
        kvs = r.get("kvs") or []
        return unb64(kvs[0]["value"]) if kvs else None

    def get_prefix(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        r = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
        return {unb64(kv["key"]): unb64(kv.get("value", "")) for kv in r.get("kvs") or []}

    def delete(self, key):
        return int(self.call("/v3/kv/deleterange", {"key": b64(key)}).get("deleted", 0))

    def revision(self):
        return int(self.call("/v3/kv/range", {"key": b64("/")})["header"]["revision"])

    def compact(self, revision):
        return self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})


def loopback_listener(backlog=64):
    """A listening socket on 127.0.0.1 with a port the kernel chose."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock, sock.getsockname()[1]


class RecordingServer:
    """A real HTTP/1.1 server on a loopback port (a log collector, a mirror,
    an auth service): every request is recorded in `seen` (method, path,
    peer, headers lowercased, header_names as sent, body sized or chunked)
    before `answer` (overridden by each kind of server) replies. `release`
    is set by stop(), for answers that hold a request."""

    def __init__(self):
        self.seen = []
        self.cond = threading.Condition()
        self.release = threading.Event()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        n = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if n == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(n)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length", "0") or 0)
                return self.rfile.read(n) if n else b""

            def handle_any(self):
                record = {"method": self.command, "path": self.path, "peer": self.client_address,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "header_names": list(self.headers.keys()), "body": self.read_body()}
                with outer.cond:
                    outer.seen.append(record)
                    outer.cond.notify_all()
                outer.answer(self, record)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, handler, record):
        self.reply(handler, 200)

    @staticmethod
    def reply(handler, status, body=b"", headers=()):
        handler.send_response(status)
        for k, v in headers:
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def wait(self, pred, timeout=10):
        """Waits until pred(seen) holds; returns a copy of what was seen."""
        with self.cond:
            ok = self.cond.wait_for(lambda: pred(self.seen), timeout)
            assert ok, f"{type(self).__name__} saw {[(s['method'], s['path']) for s in self.seen]}"
            return list(self.seen)

    def last(self):
        with self.cond:
            return self.seen[-1]

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class LoopbackServer:
    """A raw-socket server on 127.0.0.1 in threads, the base of the tests'
    scripted origins: one thread accepts, one thread per connection runs
    `serve(conn, index)` (index: the connection's number, from 0) and closes
    the connection when it returns; OSError ends it quietly. `stop()` closes
    the listener and every connection. Subclasses set their own fields
    before calling `__init__`, which starts accepting."""

    def __init__(self, backlog=64):
        self.sock, self.port = loopback_listener(backlog)
        self.lock = threading.Lock()
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def serve(self, conn, index):
        raise NotImplementedError

    def stop(self):
        for c in [self.sock] + self.conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
                index = len(self.conns) - 1
            threading.Thread(target=self._run, args=(c, index), daemon=True).start()

    def _run(self, c, index):
        try:
            self.serve(c, index)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass


class TcpForwarder:
    """A loopback TCP relay in front of a real server. `mute_existing()`
    stops relaying on the connections open now (without closing them), so a
    client's stream goes silent while new connections work: the shape of a
    half-dead path to etcd."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.sock, self.port = loopback_listener()
        self.conns = []  # [client, server, muted-event]
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                c.close()
                continue
            muted = threading.Event()
            with self.lock:
                self.conns.append((c, s, muted))
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self._pump, args=(a, b, muted), daemon=True).start()

    @staticmethod
    def _pump(src, dst, muted):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not muted.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def mute_existing(self):
        with self.lock:
            for _, _, muted in self.conns:
                muted.set()

    def stop(self):
        self.closed = True
        self.sock.close()
        with self.lock:
            for c, s, _ in self.conns:
                for x in (c, s):
                    try:
                        x.close()
                    except OSError:
                        pass


def b64(s):
    import base64 as _b
    return _b.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    import base64 as _b
    return _b.b64decode(s).decode()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.header_list = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:200]!r}>"


def deep_merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def wait_status(gw, path, want, timeout=5.0, headers=None):
    """Polls `path` until it answers `want`; returns that response."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = gw.get(path, headers=headers)
        if last.status == want:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{path}: wanted {want}, last {last}; log:\n{gw.logs()[-2000:]}")


class GatewayTest(unittest.TestCase):
    """Base class: tracks processes and stops them after each test."""

    def setUp(self):
        self._procs = []

    def tearDown(self):
        reports = []
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result and any(t is self for t, _ in list(result.errors) + list(result.failures)):
            # A failed test shows what its gateways logged (their folders go
            # away below): a failure seen once in CI must be diagnosable.
            for p in self._procs:
                if isinstance(p, Gateway):
                    try:
                        tail = "\n".join(p.logs().splitlines()[-40:])
                    except Exception:
                        continue
                    sys.stderr.write(f"\n--- last lines of the gateway log ({p.dir}) ---\n{tail}\n")
        for p in reversed(self._procs):
            try:
                p.stop()
            except SanitizerReport as e:
                reports.append(str(e))
            except Exception:
                pass
        if reports:
            self.fail("\n".join(reports))

    def upstream(self, name="u1", **kw):
        u = Upstream(name, **kw)
        self._procs.append(u)
        return u

    def gateway(self, *a, **kw):
        g = Gateway(*a, **kw)
        self._procs.append(g)
        return g

    def etcd(self, **kw):
        e = Etcd(**kw)

        class _Stop:
            def stop(_self):
                e.destroy()
        self._procs.append(_Stop())
        return e

    def etcd_gateway(self, etcd, role="data_plane", config=None, **kw):
        """A gateway reading etcd (role data_plane or traditional, or a
        control_plane), with a status port and, for admin roles, an Admin API
        on a free port with the key `admin-key`."""
        cfg = {"apisix": {"status": {"ip": "127.0.0.1", "port": free_port()}},
               "deployment": {"role": role, f"role_{role}": {"config_provider": "etcd"},
                              "etcd": {"host": [etcd.url] if isinstance(etcd, Etcd) else etcd,
                                       "prefix": "/apisix", "timeout": 3}}}
        if role in ("traditional", "control_plane"):
            cfg["deployment"]["admin"] = {"admin_listen": {"ip": "127.0.0.1", "port": free_port()},
                                          "admin_key": [{"name": "admin", "key": "admin-key", "role": "admin"},
                                                        {"name": "viewer", "key": "viewer-key", "role": "viewer"}]}
        if config:
            deep_merge(cfg, config)
        return self.gateway(config=cfg, provider="etcd", **kw)
