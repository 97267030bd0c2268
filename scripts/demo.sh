#!/usr/bin/env bash
# make demo: Holdfast end to end on loopback, every process started here and
# stopped by pid:
#   1. standalone data plane: routing, key-auth, limit-count, hot reload
#   2. control plane: etcd + a traditional node; resources created with curl
#      through the Admin API
#   3. fallback: a backup node exports to an S3 endpoint (SigV4-verifying test
#      peer), etcd goes away, and a traffic node whose etcd host is invalid
#      serves the control plane's routes from S3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/holdfast
PY=/usr/bin/python3
DIR=$(mktemp -d /tmp/holdfast-demo.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 150); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not ready"; exit 1; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { echo "\$ $*"; "$@"; echo; }
wait_200() { for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$@")" = 200 ] && return 0; sleep 0.1; done; echo "no 200 from $*"; }

UP1=$(port); UP2=$(port)
$PY "$ROOT/test/e2e/upstream.py" "$UP1" blue >/dev/null & PIDS+=($!)
$PY "$ROOT/test/e2e/upstream.py" "$UP2" green >/dev/null & PIDS+=($!)
wait_port "$UP1"; wait_port "$UP2"

# --- 1. standalone ------------------------------------------------------------
GW=$(port); GWPROM=$(port)
mkdir -p "$DIR/standalone"
cat > "$DIR/standalone/config.yaml" <<YAML
apisix:
  node_listen: [{ip: 127.0.0.1, port: $GW}]
plugin_attr:
  prometheus: {export_addr: {ip: 127.0.0.1, port: $GWPROM}}
deployment:
  role: data_plane
  role_data_plane: {config_provider: yaml}
nginx_config: {worker_processes: 1}
YAML
write_routes() {
cat > "$DIR/standalone/apisix.yaml.tmp" <<YAML
upstreams:
  - id: both
    nodes: {"127.0.0.1:$UP1": 1, "127.0.0.1:$UP2": 1}
consumers:
  - username: jack
    plugins:
      key-auth: {key: jack-secret}
routes:
  - id: public
    uri: /public/*
    upstream_id: both
    plugins:
      prometheus: {}
  - id: private
    uri: /private
    upstream_id: both
    plugins:
      key-auth: {}
      limit-count: {count: 2, time_window: 60, rejected_code: 429}
$1
#END
YAML
mv "$DIR/standalone/apisix.yaml.tmp" "$DIR/standalone/apisix.yaml"
}
write_routes ""
say "1. standalone data plane — validate (holdfast -t), then start"
show "$BIN" -t -c "$DIR/standalone/config.yaml"
"$BIN" -c "$DIR/standalone/config.yaml" 2> "$DIR/standalone.log" & GWPID=$!; PIDS+=($GWPID)
wait_port "$GW"
say "round-robin over two upstreams"
for i in 1 2 3 4; do curl -s "http://127.0.0.1:$GW/public/item$i" | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["path"], "served by", d["server"])'; done
say "key-auth: no key, then jack's key; limit-count 2/min: the third request is rejected"
show curl -s -i "http://127.0.0.1:$GW/private"
for i in 1 2 3; do curl -s -o /dev/null -w "request $i with key: %{http_code}\n" -H 'apikey: jack-secret' "http://127.0.0.1:$GW/private"; done
say "no route"
show curl -s "http://127.0.0.1:$GW/nothing-here"
say "hot reload: a mocking route appears without a restart"
write_routes "  - id: mock
    uri: /mock
    plugins:
      mocking: {response_example: '{\"mocked\":true}'}"
wait_200 "http://127.0.0.1:$GW/mock"
show curl -s "http://127.0.0.1:$GW/mock"
say "Prometheus metrics with APISIX's names (its Grafana dashboard reads them): the public route's requests"
curl -s "http://127.0.0.1:$GWPROM/apisix/prometheus/metrics" | grep -E '^apisix_(http_status|bandwidth)'
kill -TERM "$GWPID"; wait "$GWPID" && echo "standalone node drained and exited with status 0"

# --- 2. control plane ---------------------------------------------------------
say "2. control plane: etcd + a traditional node with the Admin API"
ETCD=$(port); ETCDP=$(port)
etcd --name demo --data-dir "$DIR/etcd" --listen-client-urls "http://127.0.0.1:$ETCD" \
  --advertise-client-urls "http://127.0.0.1:$ETCD" --listen-peer-urls "http://127.0.0.1:$ETCDP" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCDP" --initial-cluster "demo=http://127.0.0.1:$ETCDP" \
  > "$DIR/etcd.log" 2>&1 & ETCDPID=$!; PIDS+=($ETCDPID)
wait_port "$ETCD"
CP=$(port); ADMIN=$(port); CPSTATUS=$(port); CPPROM=$(port)
mkdir -p "$DIR/cp"
cat > "$DIR/cp/config.yaml" <<YAML
apisix:
  node_listen: [{ip: 127.0.0.1, port: $CP}]
  status: {ip: 127.0.0.1, port: $CPSTATUS}
plugin_attr:
  prometheus: {export_addr: {ip: 127.0.0.1, port: $CPPROM}}
deployment:
  role: traditional
  role_traditional: {config_provider: etcd}
  etcd: {host: ["http://127.0.0.1:$ETCD"], prefix: /apisix}
  admin:
    admin_listen: {ip: 127.0.0.1, port: $ADMIN}
    admin_key: [{name: admin, key: demo-admin-key, role: admin}]
YAML
"$BIN" -c "$DIR/cp/config.yaml" 2> "$DIR/cp.log" & CPPID=$!; PIDS+=($CPPID)
wait_port "$CP"; wait_port "$ADMIN"
A="http://127.0.0.1:$ADMIN/apisix/admin"
H=(-H 'X-API-KEY: demo-admin-key' -H 'Content-Type: application/json')
show curl -s "${H[@]}" -X PUT "$A/upstreams/1" -d "{\"type\":\"roundrobin\",\"nodes\":{\"127.0.0.1:$UP1\":1}}"
show curl -s "${H[@]}" -X PUT "$A/consumers" -d '{"username":"alice","plugins":{"key-auth":{"key":"alice-key"}}}'
show curl -s "${H[@]}" -X PUT "$A/routes/1" -d '{"uri":"/orders/*","upstream_id":"1","plugins":{"key-auth":{},"limit-count":{"count":100,"time_window":60}}}'
echo "an invalid route is rejected with the reason:"
show curl -s "${H[@]}" -X PUT "$A/routes/2" -d '{"uri":42,"upstream_id":"1"}'
echo "the key-auth key is stored encrypted in etcd:"
ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$ETCD" get /apisix/consumers/alice --print-value-only; echo
wait_200 -H 'apikey: alice-key' "http://127.0.0.1:$CP/orders/1"
show curl -s -D - -o /dev/null -H 'apikey: alice-key' "http://127.0.0.1:$CP/orders/1"
show curl -s "http://127.0.0.1:$CPSTATUS/status"

# --- 3. fallback -----------------------------------------------------------------
say "3. fallback: a backup node exports to S3; a traffic node with an invalid etcd host serves from it"
S3DIR="$DIR/s3"; mkdir -p "$S3DIR"
S3=$(port)
echo '{"AKIADEMO0000000000": "demo-secret-key"}' > "$S3DIR/users.json"
$PY "$ROOT/test/e2e/s3peer.py" --port "$S3" --state-dir "$S3DIR" --users "$S3DIR/users.json" --quiet > /dev/null 2> "$DIR/s3.log" & PIDS+=($!)
wait_port "$S3"
curl -s -X POST "http://127.0.0.1:$S3/__peer/buckets" -d '{"name":"fallback-cp-data"}' > /dev/null
curl -s -X POST "http://127.0.0.1:$S3/__peer/buckets" -d '{"name":"fallback-cp-config"}' > /dev/null
fallback_yaml() {
cat <<YAML
  fallback_cp:
    interval: 2
    $1
    aws_s3:
      region: us-east-1
      access_key: AKIADEMO0000000000
      secret_key: demo-secret-key
      resource_bucket: fallback-cp-data
      config_bucket: fallback-cp-config
      endpoint: http://127.0.0.1:$S3
YAML
}
mkdir -p "$DIR/backup" "$DIR/traffic"
{ cat <<YAML
deployment:
  role: data_plane
  role_data_plane: {config_provider: etcd}
  etcd: {host: ["http://127.0.0.1:$ETCD"], prefix: /apisix}
YAML
fallback_yaml "mode: write"; } > "$DIR/backup/config.yaml"
"$BIN" -c "$DIR/backup/config.yaml" 2> "$DIR/backup.log" & BKPID=$!; PIDS+=($BKPID)
for _ in $(seq 100); do grep -q "backup exported" "$DIR/backup.log" && break; sleep 0.1; done
grep "backup exported" "$DIR/backup.log" | head -1
echo "objects in the buckets:"
curl -s "http://127.0.0.1:$S3/__peer/objects/fallback-cp-data" | $PY -c 'import json,sys; [print("  fallback-cp-data/" + o["key"]) for o in json.load(sys.stdin)["objects"]]' 2>/dev/null || true
curl -s "http://127.0.0.1:$S3/__peer/objects/fallback-cp-config" | $PY -c 'import json,sys; [print("  fallback-cp-config/" + o["key"]) for o in json.load(sys.stdin)["objects"]]' 2>/dev/null || true
show "$BIN" snapshot inspect -c "$DIR/backup/config.yaml"
echo "the control plane goes away:"
kill "$CPPID" "$ETCDPID" 2>/dev/null || true; wait "$CPPID" "$ETCDPID" 2>/dev/null || true
TR=$(port); TRSTATUS=$(port); TRPROM=$(port)
{ cat <<YAML
apisix:
  node_listen: [{ip: 127.0.0.1, port: $TR}]
  status: {ip: 127.0.0.1, port: $TRSTATUS}
plugin_attr:
  prometheus: {export_addr: {ip: 127.0.0.1, port: $TRPROM}}
deployment:
  role: data_plane
  role_data_plane: {config_provider: etcd}
  etcd: {host: ["https://INVALID_DOMAIN.invalid:7943"], prefix: /apisix, startup_timeout: 2}
YAML
fallback_yaml ""; } > "$DIR/traffic/config.yaml"
"$BIN" -c "$DIR/traffic/config.yaml" 2> "$DIR/traffic.log" & TRPID=$!; PIDS+=($TRPID)
wait_port "$TR"
wait_200 -H 'apikey: alice-key' "http://127.0.0.1:$TR/orders/7"
show curl -s -o /dev/null -w "traffic node, no key: %{http_code}\n" "http://127.0.0.1:$TR/orders/7"
show curl -s -o /dev/null -w "traffic node, alice's key: %{http_code}\n" -H 'apikey: alice-key' "http://127.0.0.1:$TR/orders/7"
show curl -s "http://127.0.0.1:$TRSTATUS/status"
echo "traffic node log:"
cat "$DIR/traffic.log"
kill -TERM "$TRPID" "$BKPID"; wait "$TRPID" "$BKPID" 2>/dev/null || true
say "done"
