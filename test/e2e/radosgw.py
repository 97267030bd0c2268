"""A real S3 on loopback for the fallback tests: Ceph's radosgw from Debian
(../shared/docs/S3_TEST_PEER.md).

s3peer.py checks SigV4 with botocore, which is Holdfast's reading of AWS
checked against another reading. radosgw is a separate implementation of the
server side: it checks signatures, issues STS session credentials and
validates web-identity tokens against an OpenID Connect provider on its own.

The smallest cluster that works: one monitor, one OSD on the in-memory
memstore, no mgr, no cephx, radosgw with its beast frontend, all in one
throw-away folder, on 127.0.0.1. Each daemon is stopped by the pid in its own
pid file. Start-up takes a few seconds; one cluster serves a whole test class.
"""
import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

from harness import free_port

BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph")


def available():
    return all(shutil.which(b) for b in BINARIES)


class RadosGW:
    def __init__(self, sts_key="holdfast16chars!"):
        self.dir = tempfile.mkdtemp(prefix="radosgw-")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.sts_key = sts_key
        self.pids = []
        self.env = dict(os.environ, CEPH_CONF=os.path.join(self.dir, "ceph.conf"))

    def _conf(self, mon2, mon1, msgr_base):
        d = self.dir
        return f"""[global]
fsid = {uuid.uuid4()}
mon host = [v2:127.0.0.1:{mon2},v1:127.0.0.1:{mon1}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv6 = false
ms bind port min = {msgr_base}
ms bind port max = {msgr_base + 99}
auth cluster required = none
auth service required = none
auth client required = none
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
pid file = {d}/run/$name.pid
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 1
osd pool default pgp num = 1
osd pool default pg autoscale mode = off
osd pg bits = 1
osd pgp bits = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon max pg per osd = 1000
paxos propose interval = 0.05
paxos min wait = 0.01
mon data avail crit = 1
mon data avail warn = 2

[mon.a]
mon data = {d}/mon

[osd.0]
osd data = {d}/osd
osd objectstore = memstore
memstore device bytes = 1073741824
osd op num shards = 1

[client.rgw.a]
auth client required = none
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:{self.port}
rgw data = {d}/rgw
rgw dns name = 127.0.0.1
rgw s3 auth use sts = true
rgw sts key = {self.sts_key}
"""

    def _run(self, *args, timeout=60):
        r = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
        return r.stdout

    def _wait(self, pred, what, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if pred():
                    return
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"radosgw: timed out waiting for {what}; logs in {self.dir}/log")

    def _daemon_pid(self, name):
        path = os.path.join(self.dir, "run", f"{name}.pid")
        self._wait(lambda: os.path.exists(path) and open(path).read().strip(), f"{name}'s pid file", 30)
        pid = int(open(path).read().strip())
        self.pids.append(pid)
        return pid

    def start(self):
        missing = [b for b in BINARIES if not shutil.which(b)]
        if missing:
            raise RuntimeError(f"radosgw: {', '.join(missing)} not installed (scripts/install-deps.sh installs them)")
        for sub in ("run", "log", "mon", "osd", "rgw"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        mon2, mon1 = free_port(), free_port()
        # The messenger binds a few ports (OSD public, cluster, heartbeats) in
        # this range; a random base keeps parallel clusters apart.
        base = 20000 + (os.getpid() * 7919 + self.port) % 30000
        with open(self.env["CEPH_CONF"], "w") as f:
            f.write(self._conf(mon2, mon1, base))
        try:
            monmap = os.path.join(self.dir, "monmap")
            fsid = [ln.split("=", 1)[1].strip() for ln in open(self.env["CEPH_CONF"]) if ln.startswith("fsid")][0]
            self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                      f"[v2:127.0.0.1:{mon2},v1:127.0.0.1:{mon1}]", monmap)
            self._run("ceph-mon", "--id", "a", "--mkfs", "--monmap", monmap)
            self._run("ceph-mon", "--id", "a")
            self._daemon_pid("mon.a")
            self._wait(lambda: self._run("ceph", "--connect-timeout", "5", "-s", timeout=10), "the monitor")
            osd_id = self._run("ceph", "osd", "create").strip()
            if osd_id != "0":
                raise RuntimeError(f"radosgw: expected osd 0, got {osd_id!r}")
            self._run("ceph", "osd", "crush", "add", "osd.0", "1", "root=default", "host=localhost")
            self._run("ceph-osd", "--id", "0", "--mkfs")
            self._run("ceph-osd", "--id", "0")
            self._daemon_pid("osd.0")
            self._wait(lambda: "osd.0 up" in self._run("ceph", "osd", "dump", timeout=10), "osd.0 up")
            self._run("radosgw", "-n", "client.rgw.a")
            self._daemon_pid("client.rgw.a")
            self._wait(self._answers, "radosgw's endpoint")
        except Exception:
            self.stop()
            raise
        return self

    def _answers(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            c.request("GET", "/")
            return c.getresponse().status in (200, 403)
        finally:
            c.close()

    def add_user(self, uid, access_key, secret_key):
        """A user with the given keys, allowed to manage roles and OIDC providers (for STS)."""
        self._run("radosgw-admin", "user", "create", f"--uid={uid}", f"--display-name={uid}",
                  f"--access-key={access_key}", f"--secret-key={secret_key}",
                  "--caps=roles=*;oidc-provider=*;user-policy=*")

    def stop(self):
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.time() + 10
        for pid in reversed(self.pids):
            while time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pids = []
        shutil.rmtree(self.dir, ignore_errors=True)
