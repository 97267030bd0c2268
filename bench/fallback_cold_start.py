#!/usr/bin/env python3
"""Cold start of a traffic node from the fallback store, with 10,000 routes.

For each store (the S3 test peer, which checks SigV4 with botocore, the same
peer in its GCS mode with HMAC keys, and Azurite), a snapshot of ROUTES routes is published as a backup node would
(manifest, content-addressed objects, HMAC), then a traffic node is started
whose etcd host does not resolve, and the time from its start to the first
200 on the last route is measured (ROUNDS times; median and range). Also the
same with both stores configured and one of them hanging (accepting
connections and never answering), against the healthy store alone.

    /usr/bin/python3 bench/fallback_cold_start.py      (ROUTES=10000 ROUNDS=5)

Every process is started here and stopped by its own pid.
"""
import hashlib
import hmac
import json
import os
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "e2e"))

from azurite import ACCOUNT, ACCOUNT_KEY, Azurite  # noqa: E402
from harness import Gateway, Upstream  # noqa: E402
from s3peer import S3Peer  # noqa: E402

ROUTES = int(os.environ.get("ROUTES", "10000"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
DATA, CONF = "fallback-cp-data", "fallback-cp-config"
AK, SK = "AKIAHOLDFASTBENCH001", "holdfast/bench/secret+key/0123456789abcd"
SIGNING_KEY = "bench-signing-key"
INVALID_ETCD = ["https://INVALID_DOMAIN.invalid:7943"]


def snapshot(up_addr, revision):
    resources = {"upstreams": [{"id": "1", "nodes": {up_addr: 1}, "type": "roundrobin"}],
                 "routes": [{"id": str(i), "uri": f"/r/{i}", "upstream_id": "1"} for i in range(ROUTES)]}
    rbody = json.dumps(resources, separators=(",", ":")).encode()
    cbody = json.dumps({"config": {"config_version": revision,
                                   "config_payload": {"keyring": [], "discovery": {}}}}).encode()
    rsha, csha = hashlib.sha256(rbody).hexdigest(), hashlib.sha256(cbody).hexdigest()
    rkey, ckey = f"holdfast/default/resources/{rsha}.json", f"holdfast/default/config/{csha}.json"
    now = int(time.time())
    m = {"format": "holdfast-fallback", "format_version": 1, "gateway_group_id": "default", "revision": revision,
         "producer": {"hostname": "bench", "version": "bench"}, "created_at": now, "heartbeat_at": now,
         "resource": {"bucket": DATA, "key": rkey, "sha256": rsha, "size": len(rbody)},
         "config": {"bucket": CONF, "key": ckey, "sha256": csha, "size": len(cbody)}}
    s = f"holdfast-fallback/v1\ndefault\n{revision}\n{now}\n{DATA}/{rkey}\n{rsha}\n{CONF}/{ckey}\n{csha}"
    m["hmac_sha256"] = hmac.new(SIGNING_KEY.encode(), s.encode(), hashlib.sha256).hexdigest()
    return [(DATA, rkey, rbody), (CONF, ckey, cbody), (DATA, "holdfast/default/manifest.json", json.dumps(m).encode())]


class Hanging:
    """Accepts connections and never answers (a store in an outage that still holds its port)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def stop(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def s3_store(endpoint):
    return {"aws_s3": {"region": "us-east-1", "access_key": AK, "secret_key": SK, "resource_bucket": DATA,
                       "config_bucket": CONF, "endpoint": endpoint}}


def gcs_store(endpoint):
    return {"gcs": {"hmac_access_id": AK, "hmac_secret": SK, "resource_bucket": DATA, "config_bucket": CONF,
                    "endpoint": endpoint}}


def azure_store(endpoint):
    return {"azure_blob": {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY, "resource_container": DATA,
                           "config_container": CONF, "endpoint": endpoint}}


def first_200(stores):
    """Seconds from the traffic node's start to its first 200 on the last route."""
    f = {"interval": 1, "signing_key": SIGNING_KEY}
    for s in stores:
        f.update(s)
    cfg = {"deployment": {"fallback_cp": f, "etcd": {"host": INVALID_ETCD, "prefix": "/apisix", "startup_timeout": 1,
                                                     "timeout": 1},
                          "role_data_plane": {"config_provider": "etcd"}}}
    gw = Gateway(config=cfg, provider="etcd", start=False)
    t0 = time.monotonic()
    gw.start(wait=False)
    try:
        deadline = t0 + 60
        while time.monotonic() < deadline:
            try:
                if gw.get(f"/r/{ROUTES - 1}", timeout=1).status == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError("no 200 within 60 s:\n" + gw.logs()[-3000:])
    finally:
        gw.stop()


def report(name, xs):
    print(f"{name:38s} median {statistics.median(xs) * 1000:7.0f} ms  (min {min(xs) * 1000:.0f}, "
          f"max {max(xs) * 1000:.0f}; {len(xs)} rounds)", flush=True)
    return statistics.median(xs)


def main():
    up = Upstream("origin")
    peer = S3Peer(quiet=True).start()
    gcs = S3Peer(gcs=True, quiet=True).start()
    az = Azurite().start()
    hang = Hanging()
    try:
        peer.create_bucket(DATA)
        peer.create_bucket(CONF)
        peer.add_user(AK, SK)
        for b in (DATA, CONF):
            gcs.create_bucket(b)
        gcs.add_user(AK, SK)
        az.create_container(DATA)
        az.create_container(CONF)
        for bucket, key, body in snapshot(up.addr, 100):
            peer.put(bucket, key, body)
            gcs.put(bucket, key, body)
            az.put(bucket, key, body)
        hanging_s3 = f"http://127.0.0.1:{hang.port}"
        hanging_az = f"http://127.0.0.1:{hang.port}/{ACCOUNT}"
        print(f"{ROUTES} routes; traffic node with an etcd host that does not resolve (startup_timeout 1 s)")
        s3 = report("S3 (test peer)", [first_200([s3_store(peer.endpoint)]) for _ in range(ROUNDS)])
        a = report("Azure Blob (Azurite)", [first_200([azure_store(az.endpoint)]) for _ in range(ROUNDS)])
        g = report("GCS (test peer, HMAC)", [first_200([gcs_store(gcs.endpoint)]) for _ in range(ROUNDS)])
        both_g = report("GCS healthy, S3 hanging",
                        [first_200([s3_store(f"http://127.0.0.1:{hang.port}"), gcs_store(gcs.endpoint)])
                         for _ in range(ROUNDS)])
        print(f"one store hanging costs {(both_g - g) * 1000:+.0f} ms (GCS healthy)")
        try:
            both_s3 = report("S3 healthy, Azure Blob hanging",
                             [first_200([s3_store(peer.endpoint), azure_store(hanging_az)]) for _ in range(ROUNDS)])
            both_az = report("Azure Blob healthy, S3 hanging",
                             [first_200([s3_store(hanging_s3), azure_store(az.endpoint)]) for _ in range(ROUNDS)])
            print(f"one store hanging costs {(both_s3 - s3) * 1000:+.0f} ms (S3 healthy), "
                  f"{(both_az - a) * 1000:+.0f} ms (Azure healthy)")
        except RuntimeError as e:
            print(f"several stores at once: not supported by this build ({str(e).splitlines()[0]})")
    finally:
        hang.stop()
        az.destroy()
        gcs.destroy()
        peer.destroy()
        up.stop()


if __name__ == "__main__":
    main()
