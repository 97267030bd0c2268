"""The container image (deploy/docker) and the Compose example (deploy/compose),
checked without a container engine: the runtime stage installs exactly the
packages of the libraries the binary loads, the build stage uses the packages
the repository builds with, the HEALTHCHECK command works against the real
binary, and every holdfast config in the Compose example passes `holdfast -t`.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("HOLDFAST_BIN", os.path.join(ROOT, "build", "holdfast"))
EPOLL_BIN = os.path.join(os.path.dirname(BIN), "holdfast-epoll")
DOCKER = os.path.join(ROOT, "deploy", "docker")
COMPOSE = os.path.join(ROOT, "deploy", "compose")
CHART = os.path.join(ROOT, "deploy", "helm", "holdfast")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, env=None, timeout=30):
    for _ in range(20):  # the binary may be briefly missing while it is relinked
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"cannot run {args[0]}")


def dockerfile_stages():
    """[(base image, [instruction lines with continuations joined])] per stage."""
    with open(os.path.join(DOCKER, "Dockerfile")) as f:
        text = f.read()
    lines, cur = [], ""
    for raw in text.splitlines():
        if not cur and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        lines.append(cur + raw.strip())
        cur = ""
    stages = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append((line.split()[1], []))
        elif stages:
            stages[-1][1].append(line)
    return stages


def apt_installs(instructions):
    pkgs = []
    for line in instructions:
        if not line.startswith("RUN "):
            continue
        for cmd in line[4:].split("&&"):
            words = cmd.split()
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def package_of(path):
    p = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
    if p.returncode != 0:  # merged /usr: dpkg may know the /lib name
        p = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    assert p.returncode == 0, f"no Debian package owns {path}: {p.stderr}"
    return p.stdout.split(":")[0].strip()


def essential_closure():
    """Essential packages and what they depend on, transitively: in every Debian image."""
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Essential}\t${Pre-Depends}, ${Depends}\n"],
                       capture_output=True, text=True, check=True)
    deps, todo = {}, []
    for line in p.stdout.splitlines():
        name, ess, rel = line.split("\t")
        deps[name] = {re.split(r"[\s:(]", alt.strip())[0] for alt in re.split(r"[,|]", rel) if alt.strip()}
        if ess == "yes":
            todo.append(name)
    seen = set()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += [d for d in deps.get(n, ()) if d in deps]
    return seen


class DockerfileTest(unittest.TestCase):
    def test_runtime_stage_installs_exactly_the_binarys_libraries(self):
        p = run(["ldd", BIN])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("not found", p.stdout)
        libs = {}
        for line in p.stdout.splitlines():
            m = re.match(r"\s*(\S+) => (/\S+)", line)
            if m:
                libs[m.group(1)] = m.group(2)
        self.assertIn("libssl.so.3", libs)
        needed = {}
        for lib, path in libs.items():
            needed.setdefault(package_of(path), []).append(lib)
        base = set(needed) & essential_closure()  # libc6, libgcc-s1: in every Debian image
        runtime = dockerfile_stages()[-1]
        self.assertTrue(runtime[0].startswith("debian:bookworm"), runtime[0])
        installed = set(apt_installs(runtime[1]))
        self.assertIn("ca-certificates", installed, "HTTPS to S3, STS and etcd verifies certificates")
        self.assertEqual(installed - {"ca-certificates"}, set(needed) - base,
                         f"ldd {BIN} needs {needed}; the runtime stage installs {sorted(installed)}")
        # holdfast-epoll (shipped beside it) needs a subset: no liburing.
        p = run(["ldd", EPOLL_BIN])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("not found", p.stdout)
        epoll_pkgs = {package_of(m.group(2)) for m in re.finditer(r"\s*(\S+) => (/\S+)", p.stdout)}
        self.assertNotIn("liburing2", epoll_pkgs)
        self.assertLessEqual(epoll_pkgs, installed | base)
        # The names are real Debian 12 packages: this machine (Debian 12) has them installed.
        for pkg in installed:
            q = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", pkg], capture_output=True, text=True)
            self.assertIn("install ok installed", q.stdout, pkg)

    def test_build_stage_uses_the_repositorys_build_packages(self):
        build = dockerfile_stages()[0]
        self.assertTrue(build[0].startswith("debian:bookworm"), build[0])
        pkgs = set(apt_installs(build[1]))
        with open(os.path.join(ROOT, "scripts", "install-deps.sh")) as f:
            deps = set(re.search(r"PKGS=\((.*?)\)", f.read(), re.S).group(1).split())
        self.assertLessEqual(pkgs, deps, "the image builds with packages the repository does not use")
        # Test-only packages: unit tests, benchmarks, the libFuzzer runtime.
        test_only = {"libgtest-dev", "libbenchmark-dev", "libclang-rt-14-dev"}
        self.assertLessEqual({d for d in deps if d.endswith("-dev")} - test_only, pkgs)
        cmake = [l for l in build[1] if "cmake -S" in l]
        self.assertEqual(len(cmake), 1)
        for flag in ("-G Ninja", "-DHOLDFAST_TESTS=OFF", "-DHOLDFAST_BENCH=OFF"):
            self.assertIn(flag, cmake[0])

    def test_runtime_stage_shape(self):
        lines = dockerfile_stages()[-1][1]
        by = {}
        for l in lines:
            by.setdefault(l.split()[0].upper(), []).append(l)
        self.assertEqual(by["USER"], ["USER 10001:10001"])
        self.assertEqual(by["ENTRYPOINT"], ['ENTRYPOINT ["/usr/local/bin/holdfast", "-c", "/etc/holdfast/config.yaml"]'])
        self.assertIn("COPY deploy/docker/config.yaml /etc/holdfast/config.yaml", by["COPY"])
        # Both builds, side by side: holdfast execs holdfast-epoll where io_uring is denied.
        self.assertIn("COPY --from=build /build/holdfast /build/holdfast-epoll /usr/local/bin/", by["COPY"])
        build = " ".join(dockerfile_stages()[0][1])
        self.assertNotIn("HOLDFAST_IO_URING", build, "the image ships both backends")
        self.assertIn("HOLDFAST_BACKEND=epoll /build/holdfast --version", build)
        with open(os.path.join(DOCKER, "Dockerfile.dockerignore")) as f:
            ignore = f.read()
        for path in ("CMakeLists.txt", "src/", "deploy/docker/config.yaml"):
            self.assertIn("!" + path, ignore)
            self.assertTrue(os.path.exists(os.path.join(ROOT, path)), path)
        self.assertEqual(len(by["HEALTHCHECK"]), 1)
        # The proxy, its TLS listener (the default config's apisix.ssl.listen), Admin API, status.
        with open(os.path.join(DOCKER, "config.yaml")) as f:
            cfg = yaml.safe_load(f)
        ports = {str(cfg["apisix"]["node_listen"]), str(cfg["apisix"]["ssl"]["listen"][0]["port"]), "9180", "7085"}
        self.assertEqual(len(by["EXPOSE"]), 1)
        self.assertEqual(set(by["EXPOSE"][0].split()[1:]), ports)
        self.assertTrue(cfg["apisix"]["ssl"]["enable"])

    def healthcheck(self):
        line = [l for l in dockerfile_stages()[-1][1] if l.startswith("HEALTHCHECK")][0]
        return json.loads(line[line.index("CMD") + 3:].strip())

    def start(self, cfg, standalone=None):
        d = tempfile.mkdtemp(prefix="holdfast-docker-")
        self.addCleanup(shutil.rmtree, d, True)
        # Each node its own prometheus export port (APISIX's default, 9091, is one per machine).
        cfg.setdefault("plugin_attr", {}).setdefault("prometheus", {"export_addr": {"ip": "127.0.0.1", "port": free_port()}})
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write(json.dumps(cfg))
        if standalone is not None:
            with open(os.path.join(d, "apisix.yaml"), "w") as f:
                f.write(json.dumps(standalone) + "\n#END\n")
        proc = subprocess.Popen([BIN, "-c", os.path.join(d, "config.yaml")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

        def stop():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        self.addCleanup(stop)
        port = cfg["apisix"]["status"]["port"]
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return proc
            except OSError:
                time.sleep(0.05)
        self.fail("status endpoint did not open")

    def check(self, port):
        return subprocess.run(self.healthcheck(), env=dict(os.environ, HOLDFAST_STATUS_PORT=str(port)),
                              capture_output=True, timeout=10).returncode

    def test_healthcheck_command_against_the_binary(self):
        cmd = self.healthcheck()
        self.assertEqual(cmd[0], "/bin/bash", "bash is in every Debian image; curl is not installed")
        self.assertIn("/status/ready", cmd[2])
        # Ready: a configuration is loaded.
        ready = free_port()
        self.start({"apisix": {"node_listen": [{"ip": "127.0.0.1", "port": free_port()}],
                               "status": {"ip": "127.0.0.1", "port": ready}},
                    "deployment": {"role": "data_plane", "role_data_plane": {"config_provider": "yaml"}}},
                   standalone={"routes": []})
        self.assertEqual(self.check(ready), 0)
        # Running but nothing loaded (etcd unreachable, no fallback): 503, unhealthy.
        waiting = free_port()
        self.start({"apisix": {"node_listen": [{"ip": "127.0.0.1", "port": free_port()}],
                               "status": {"ip": "127.0.0.1", "port": waiting}},
                    "deployment": {"role": "data_plane", "etcd": {"host": [f"http://127.0.0.1:{free_port()}"]}}})
        self.assertNotEqual(self.check(waiting), 0)
        # Nothing listening.
        self.assertNotEqual(self.check(free_port()), 0)

    def test_default_image_config(self):
        path = os.path.join(DOCKER, "config.yaml")
        p = run([BIN, "-t", "-c", path])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("warning", p.stderr)
        with open(path) as f:
            cfg = yaml.safe_load(f)
        self.assertEqual(cfg["apisix"]["status"], {"ip": "0.0.0.0", "port": 7085})


def compose_env(value):
    """${VAR:-default} as Compose resolves it when VAR is unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", str(value))


class ComposeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(COMPOSE, "docker-compose.yml")) as f:
            cls.compose = yaml.safe_load(f)  # PyYAML resolves the <<: merge keys
        cls.services = cls.compose["services"]
        cls.holdfast = {n: s for n, s in cls.services.items() if s.get("image") == "holdfast:local"}

    def config_of(self, name):
        svc = self.holdfast[name]
        mounts = [v for v in svc["volumes"] if v.split(":")[1] == "/etc/holdfast/config.yaml"]
        self.assertEqual(len(mounts), 1, name)
        src, _, mode = mounts[0].split(":")
        self.assertEqual(mode, "ro")
        return os.path.normpath(os.path.join(COMPOSE, src))

    def test_services(self):
        self.assertEqual(set(self.holdfast), {"control-plane", "backup", "traffic", "traffic-s3-only"})
        self.assertEqual(self.services["control-plane"]["build"]["dockerfile"], "deploy/docker/Dockerfile")
        self.assertEqual(os.path.normpath(os.path.join(COMPOSE, self.services["traffic"]["build"]["context"])), ROOT)

    def test_every_config_passes_holdfast_t(self):
        for name in self.holdfast:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HOLDFAST_"))}
            env.update({k: compose_env(v) for k, v in (self.holdfast[name].get("environment") or {}).items()})
            p = run([BIN, "-t", "-c", self.config_of(name)], env=env)
            self.assertEqual(p.returncode, 0, f"{name}: {p.stderr}")
            self.assertNotIn("warning", p.stderr, name)

    def test_configs_match_the_compose_file_and_the_chart(self):
        with open(os.path.join(CHART, "values.yaml")) as f:
            chart = yaml.safe_load(f)
        mc = " ".join(self.services["s3-buckets"]["command"])
        for name, svc in self.holdfast.items():
            with open(self.config_of(name)) as f:
                cfg = yaml.safe_load(f)
            dep = cfg["deployment"]
            self.assertEqual(cfg["apisix"]["status"], {"ip": "0.0.0.0", "port": 7085}, name)
            published = {p.split(":")[-1] for p in svc.get("ports", [])}
            for host in dep["etcd"]["host"]:
                h = re.match(r"https?://([^:/]+)", host).group(1)
                self.assertTrue(h in self.services or h == "INVALID_DOMAIN", f"{name}: etcd host {host}")
            fb = dep.get("fallback_cp")
            if name == "control-plane":
                self.assertEqual(dep["role"], "control_plane")
                self.assertEqual(published, {str(dep["admin"]["admin_listen"]["port"])})
                continue
            s3 = fb["aws_s3"]
            self.assertIn(re.match(r"https?://([^:/]+)", s3["endpoint"]).group(1), self.services)
            for bucket in (s3["resource_bucket"], s3["config_bucket"]):
                self.assertIn(f"s3/{bucket}", mc, f"{name}: bucket {bucket} is not created")
            self.assertNotIn("access_key", s3, "keys come from the environment")
            az = fb.get("azure_blob")
            if name in ("backup", "traffic-s3-only"):
                # Both stores: the backup node writes both, the etcd-less node reads both.
                self.assertIsNotNone(az, name)
                self.assertIn(re.match(r"https?://([^:/]+)", az["endpoint"]).group(1), self.services)
                made = " ".join(self.services["azure-containers"]["command"])
                self.assertIn("for c in " + " ".join((az["resource_container"], az["config_container"])), made)
                self.assertEqual(az["account_key"], "${{AZURE_STORAGE_KEY}}", "the key comes from the environment")
                self.assertEqual(fb["signing_key"], "${{HOLDFAST_FALLBACK_SIGNING_KEY}}", "two stores: signed")
                self.assertIn("azure-containers", svc["depends_on"], name)
            self.assertEqual(fb["cache_file"], chart["deployment"]["fallback_cp"]["cache_file"])
            cache_dir = os.path.dirname(fb["cache_file"])
            self.assertTrue(any(v.split(":")[1] == cache_dir for v in svc["volumes"]), f"{name}: cache not on a volume")
            if name == "backup":
                self.assertEqual(fb["mode"], "write")
                self.assertEqual(published, set(), "a backup node opens no proxy port")
            else:
                self.assertNotIn("mode", fb)
                tls = cfg["apisix"]["ssl"]
                self.assertTrue(tls["enable"], name)
                self.assertEqual(published, {str(cfg["apisix"]["node_listen"]), str(tls["listen"][0]["port"]), "7085"})
        with open(os.path.join(COMPOSE, "conf", "traffic-s3-only.yaml")) as f:
            self.assertEqual(yaml.safe_load(f)["deployment"]["etcd"]["host"], ["https://INVALID_DOMAIN:7943"])


class DocsTest(unittest.TestCase):
    """The config snippets in docs/dp-resilience-aws-s3.md are accepted by the binary,
    and its JSON examples (IAM, bucket policy, lifecycle rule, manifest) parse."""

    def blocks(self, lang):
        with open(os.path.join(ROOT, "docs", "dp-resilience-aws-s3.md")) as f:
            return re.findall(r"```" + lang + r"\n(.*?)```", f.read(), re.S)

    def test_yaml_snippets_pass_holdfast_t(self):
        snippets = [b for b in self.blocks("yaml") if "deployment:" in b]
        self.assertGreaterEqual(len(snippets), 3)
        d = tempfile.mkdtemp(prefix="holdfast-docs-")
        self.addCleanup(shutil.rmtree, d, True)
        for i, text in enumerate(snippets):
            path = os.path.join(d, f"snippet{i}.yaml")
            with open(path, "w") as f:
                f.write(text)
            p = run([BIN, "-t", "-c", path], env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
            self.assertEqual(p.returncode, 0, f"snippet {i}:\n{text}\n{p.stderr}")
            self.assertNotIn("warning", p.stderr, text)

    def test_json_examples_parse(self):
        blocks = self.blocks("json")
        self.assertGreaterEqual(len(blocks), 5)
        for b in blocks:
            json.loads(b)


if __name__ == "__main__":
    unittest.main()
