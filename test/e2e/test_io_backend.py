"""The I/O backend choice (src/core/io_backend.cc): `holdfast` runs on
io_uring where it may, and where a seccomp profile denies io_uring (Docker >=
25, containerd >= 2.0, Kubernetes RuntimeDefault) it execs holdfast-epoll,
installed beside it, and still serves. HOLDFAST_BACKEND=epoll|io_uring
overrides the probe. The filter is a real seccomp filter (seccomp_exec.py,
libseccomp) around the real binary."""
import ctypes
import os
import shutil
import subprocess
import tempfile

from harness import BIN, HERE, GatewayTest

EPOLL_BIN = os.path.join(os.path.dirname(BIN), "holdfast-epoll")
# Debian's python3-seccomp binds libseccomp for /usr/bin/python3 only.
DENY_IO_URING = ["/usr/bin/python3", os.path.join(HERE, "seccomp_exec.py")]
AUTO = {"HOLDFAST_BACKEND": ""}


def io_uring_allowed_here():
    """io_uring_setup(1) from this process (syscall 425 on every architecture)."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = libc.syscall(425, 1, params)
    if fd < 0:
        return False
    os.close(fd)
    return True


def route(up):
    return {"routes": [{"id": "r1", "uri": "/hello", "upstream": {"nodes": {up.addr: 1}}}]}


class IoBackendTest(GatewayTest):
    def exe(self, gw):
        return os.path.basename(os.readlink(f"/proc/{gw.proc.pid}/exe"))

    def assert_serves(self, gw):
        r = gw.get("/hello")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["server"], "beta")

    def test_io_uring_denied_runs_the_epoll_build_and_serves(self):
        up = self.upstream("beta")
        gw = self.gateway(route(up), launcher=DENY_IO_URING, extra_env=AUTO)
        self.assert_serves(gw)
        self.assertEqual(self.exe(gw), "holdfast-epoll")
        gw.wait_log("[warn] I/O backend: epoll (io_uring unavailable: io_uring_setup: Operation not permitted)")
        self.assertEqual(gw.logs().count("I/O backend:"), 1, gw.logs())
        # Keep-alive, a body and a graceful stop on epoll as well.
        r = gw.request("POST", "/hello", body=b"x" * 100000)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(gw.stop(), 0)

    def test_io_uring_allowed_runs_io_uring(self):
        if not io_uring_allowed_here():
            self.skipTest("io_uring is denied to the test itself here")
        up = self.upstream("beta")
        gw = self.gateway(route(up), extra_env=AUTO)
        self.assert_serves(gw)
        self.assertEqual(self.exe(gw), os.path.basename(BIN))
        gw.wait_log("[info] I/O backend: io_uring\n")

    def test_env_override_epoll(self):
        up = self.upstream("beta")
        gw = self.gateway(route(up), extra_env={"HOLDFAST_BACKEND": "epoll"})
        self.assert_serves(gw)
        self.assertEqual(self.exe(gw), "holdfast-epoll")
        gw.wait_log("[info] I/O backend: epoll (HOLDFAST_BACKEND=epoll)")

    def test_env_override_io_uring_when_denied_is_a_clear_error(self):
        gw = self.gateway({}, launcher=DENY_IO_URING, extra_env={"HOLDFAST_BACKEND": "io_uring"}, start=False)
        gw.start(wait=False)
        self.assertEqual(gw.proc.wait(15), 1)
        self.assertIn("HOLDFAST_BACKEND=io_uring, but io_uring is unavailable here "
                      "(io_uring_setup: Operation not permitted)", gw.logs())
        # The epoll build itself has no io_uring to force.
        p = subprocess.run([EPOLL_BIN, "--version"], env=dict(os.environ, HOLDFAST_BACKEND="io_uring"),
                           capture_output=True, text=True, timeout=15)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("this is the epoll build", p.stderr)

    def test_bad_env_value_is_refused(self):
        p = subprocess.run([BIN, "--version"], env=dict(os.environ, HOLDFAST_BACKEND="kqueue\r\n"),
                           capture_output=True, text=True, timeout=15)
        self.assertEqual(p.returncode, 2, p)
        self.assertIn('HOLDFAST_BACKEND must be epoll, io_uring or auto, got "kqueue??"', p.stderr)

    def test_missing_epoll_build_is_a_clear_error(self):
        d = tempfile.mkdtemp(prefix="holdfast-lonely-")
        self.addCleanup(shutil.rmtree, d, True)
        lonely = os.path.join(d, "holdfast")
        try:
            os.link(BIN, lonely)
        except OSError:
            shutil.copy2(BIN, lonely)
        p = subprocess.run([*DENY_IO_URING, lonely, "--version"], env=dict(os.environ, **AUTO),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(f"cannot run the epoll build {d}/holdfast-epoll: No such file or directory; io_uring is "
                      "unavailable here (io_uring_setup: Operation not permitted): install holdfast-epoll beside "
                      "holdfast, or allow the io_uring syscalls", p.stderr)
