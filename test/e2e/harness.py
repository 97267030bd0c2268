"""Helpers for end-to-end tests: free ports, real upstream processes, the
real holdfast binary, and an HTTP client over real sockets.

Every process started here is stopped by the test that started it, by pid.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("HOLDFAST_BIN", os.path.join(ROOT, "build", "holdfast"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def run_holdfast(args, env=None, timeout=15):
    """Runs the binary to completion (-t, --help, --version, a start-up that
    must fail) and returns the CompletedProcess (text stdout and stderr).
    Retries briefly when the binary is missing or busy (being relinked)."""
    full_env = dict(os.environ, **(env or {}))
    for attempt in range(20):
        try:
            return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, env=full_env)
        except OSError:
            if attempt == 19:
                raise
            time.sleep(0.5)


class Upstream:
    """test/e2e/upstream.py in its own process."""

    def __init__(self, name="u1", port=None, mode=""):
        self.name = name
        self.port = port or free_port()
        args = [sys.executable, os.path.join(HERE, "upstream.py"), str(self.port), name] + ([mode] if mode else [])
        self.proc = subprocess.Popen(args,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.proc.stdout.readline()
        wait_port(self.port, proc=self.proc)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

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
                 raw_standalone=None):
        self.dir = tempfile.mkdtemp(prefix="holdfast-e2e-")
        self.port = free_port()
        self.provider = provider
        cfg = {
            "apisix": {"node_listen": [{"ip": "127.0.0.1", "port": self.port}]},
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
        if raw_standalone is not None:
            self.write_raw(raw_standalone)
        else:
            self.write(resources or {})
        self.proc = None
        self.env = dict(os.environ, **(extra_env or {}))
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

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BIN, "-c", self.config_path], stdout=self.log, stderr=self.log, env=self.env)
        wait_port(self.port, proc=self.proc)

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

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        if not os.environ.get("KEEP_E2E_DIRS"):
            self._final_logs = self.logs()  # still readable after the folder is gone
            shutil.rmtree(self.dir, ignore_errors=True)
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


class GatewayTest(unittest.TestCase):
    """Base class: tracks processes and stops them after each test."""

    def setUp(self):
        self._procs = []

    def tearDown(self):
        for p in reversed(self._procs):
            try:
                p.stop()
            except Exception:
                pass

    def upstream(self, name="u1", **kw):
        u = Upstream(name, **kw)
        self._procs.append(u)
        return u

    def gateway(self, *a, **kw):
        g = Gateway(*a, **kw)
        self._procs.append(g)
        return g
