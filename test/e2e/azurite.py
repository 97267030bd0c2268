"""Azurite, Microsoft's Azure Storage emulator, as a test peer: its blob
service only, in memory, telemetry off, on a free loopback port, stopped by
pid. It checks every Shared Key signature and SAS token itself.

Azurite comes from the npm registry, the only network access of these tests:
`npm install azurite@3.35.0` once into build/tools/azurite-3.35.0 (as
test_helm.py caches helm in build/tools/helm); later runs use that copy.
The helpers below sign their own requests (Python's hmac, written from
Microsoft's Shared Key documentation, independently of Holdfast's C++)."""
import base64
import datetime
import email.utils
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET
from http.client import HTTPConnection, HTTPSConnection

from harness import free_port, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.abspath(os.environ.get("HOLDFAST_BIN", os.path.join(ROOT, "build", "holdfast")))
TOOLS = os.environ.get("HOLDFAST_TOOLS", os.path.join(os.path.dirname(BIN), "tools"))  # build/tools
AZURITE_VERSION = "3.35.0"
AZURITE_DIR = os.path.join(TOOLS, f"azurite-{AZURITE_VERSION}")
AZURITE_BLOB = os.path.join(AZURITE_DIR, "node_modules", ".bin", "azurite-blob")

# Azurite's built-in account and its published, well-known key.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
API_VERSION = "2021-08-06"


def _installed_version():
    try:
        with open(os.path.join(AZURITE_DIR, "node_modules", "azurite", "package.json")) as f:
            return json.load(f).get("version")
    except (OSError, ValueError):
        return None


def ensure_azurite():
    """Installs azurite@3.35.0 into build/tools once. Raises (the tests fail,
    never skip) when npm or the registry is not there."""
    if os.path.exists(AZURITE_BLOB) and _installed_version() == AZURITE_VERSION:
        return AZURITE_BLOB
    os.makedirs(TOOLS, exist_ok=True)
    with open(os.path.join(TOOLS, ".azurite.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(AZURITE_BLOB) and _installed_version() == AZURITE_VERSION:
            return AZURITE_BLOB
        tmp = tempfile.mkdtemp(prefix="azurite-", dir=TOOLS)
        try:
            # No install scripts: Azurite's blob service needs none.
            cmd = ["npm", "install", "--prefix", tmp, f"azurite@{AZURITE_VERSION}", "--ignore-scripts", "--no-audit",
                   "--no-fund", "--cache", os.path.join(tmp, "npm-cache"), "--fetch-timeout", "60000",
                   "--fetch-retries", "1"]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise AssertionError(f"cannot install Azurite: `{' '.join(cmd)}` failed: {e}. These tests need the "
                                     f"npm registry once (then {AZURITE_DIR} is kept).") from None
            if p.returncode != 0:
                raise AssertionError(f"cannot install Azurite from the npm registry: `{' '.join(cmd)}` exited "
                                     f"{p.returncode}:\n{p.stderr[-2000:]}\nThese tests need the npm registry "
                                     f"(registry.npmjs.org or your npm proxy) once; afterwards {AZURITE_DIR} is kept.")
            shutil.rmtree(os.path.join(tmp, "npm-cache"), ignore_errors=True)
            shutil.rmtree(AZURITE_DIR, ignore_errors=True)
            os.replace(tmp, AZURITE_DIR)  # complete or not there at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if _installed_version() != AZURITE_VERSION:
        raise AssertionError(f"{AZURITE_DIR} does not hold azurite {AZURITE_VERSION}; delete it to reinstall")
    return AZURITE_BLOB


def _string_to_sign(method, path, query, headers):
    """Microsoft's Shared Key string to sign for the Blob service."""
    h = {k.lower(): v for k, v in headers.items()}
    length = h.get("content-length", "")
    fields = [method, h.get("content-encoding", ""), h.get("content-language", ""), "" if length == "0" else length,
              h.get("content-md5", ""), h.get("content-type", ""), h.get("date", ""), h.get("if-modified-since", ""),
              h.get("if-match", ""), h.get("if-none-match", ""), h.get("if-unmodified-since", ""), h.get("range", "")]
    ms = "".join(f"{k}:{' '.join(v.split())}\n" for k, v in sorted(h.items()) if k.startswith("x-ms-"))
    resource = f"/{ACCOUNT}{path}" + "".join(f"\n{k.lower()}:{v}" for k, v in sorted(query.items()))
    return "\n".join(fields) + "\n" + ms + resource


class Azurite:
    def __init__(self, debug_log=None, tls=None):
        """tls: (cert_file, key_file, ssl_context) to serve HTTPS with Azurite's
        basic OAuth on (bearer tokens are then accepted; Azurite checks their
        issuer, audience and lifetime, not their signature)."""
        self.tls = tls
        self.port = None
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="holdfast-azurite-")
        self.debug_log = debug_log or os.environ.get("HOLDFAST_AZURITE_DEBUG")

    @property
    def endpoint(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/{ACCOUNT}"

    def start(self):
        ensure_azurite()
        self.port = free_port()
        args = [AZURITE_BLOB, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--inMemoryPersistence",
                "--extentMemoryLimit", "256", "--disableTelemetry", "--silent"]
        if self.debug_log:
            args += ["--debug", self.debug_log]
        if self.tls:
            args += ["--cert", self.tls[0], "--key", self.tls[1], "--oauth", "basic"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURITE_")}  # the default account only
        self.log_path = os.path.join(self.dir, "azurite.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.dir, env=env)
        wait_port(self.port, timeout=30, proc=self.proc)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- signed requests, for set-up and assertions ------------------------

    def request(self, method, container, blob=None, body=b"", query=None, headers=None):
        query = dict(query or {})
        path = f"/{ACCOUNT}/{container}" + (f"/{urllib.parse.quote(blob)}" if blob else "")
        h = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": API_VERSION}
        h.update(headers or {})
        if body or method in ("PUT", "POST"):
            h["Content-Length"] = str(len(body))
        key = base64.b64decode(ACCOUNT_KEY)
        sig = hmac.new(key, _string_to_sign(method, path, query, h).encode(), hashlib.sha256).digest()
        h["Authorization"] = f"SharedKey {ACCOUNT}:{base64.b64encode(sig).decode()}"
        target = path + ("?" + urllib.parse.urlencode(query) if query else "")
        c = (HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.tls[2]) if self.tls
             else HTTPConnection("127.0.0.1", self.port, timeout=10))
        try:
            c.request(method, target, body=body, headers=h)
            r = c.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            c.close()

    def create_container(self, name):
        status, _, body = self.request("PUT", name, query={"restype": "container"})
        assert status == 201, (status, body)

    def put(self, container, blob, body):
        status, _, resp = self.request("PUT", container, blob, body=body,
                                       headers={"x-ms-blob-type": "BlockBlob", "Content-Type": "application/json"})
        assert status == 201, (status, resp)

    def get(self, container, blob):
        status, _, body = self.request("GET", container, blob)
        return body if status == 200 else None

    def blobs(self, container):
        status, _, body = self.request("GET", container, query={"restype": "container", "comp": "list"})
        assert status == 200, (status, body)
        return [n.text for n in ET.fromstring(body).iter("Name")]

    def account_sas(self, permissions, expires_in=3600):
        """An account SAS for the blob service (version 2020-12-06 and later form)."""
        expiry = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=expires_in))
        se = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        sts = "\n".join([ACCOUNT, permissions, "b", "co", "", se, "", "", API_VERSION, "", ""])
        sig = base64.b64encode(hmac.new(base64.b64decode(ACCOUNT_KEY), sts.encode(), hashlib.sha256).digest()).decode()
        return urllib.parse.urlencode({"sv": API_VERSION, "ss": "b", "srt": "co", "sp": permissions, "se": se,
                                       "sig": sig})


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
