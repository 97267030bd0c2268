#!/usr/bin/env bash
# make demo: starts two real upstreams and Holdfast in standalone mode, then
# shows routing, key-auth with a consumer, limit-count, a hot reload and a
# graceful stop. Everything listens on 127.0.0.1 and is stopped by pid.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/holdfast
DIR=$(mktemp -d /tmp/holdfast-demo.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not ready"; exit 1; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { echo "\$ $*"; "$@"; echo; }

UP1=$(port); UP2=$(port); GW=$(port)
python3 "$ROOT/test/e2e/upstream.py" "$UP1" blue >/dev/null & PIDS+=($!)
python3 "$ROOT/test/e2e/upstream.py" "$UP2" green >/dev/null & PIDS+=($!)
wait_port "$UP1"; wait_port "$UP2"

cat > "$DIR/config.yaml" <<YAML
apisix:
  node_listen: [{ip: 127.0.0.1, port: $GW}]
deployment:
  role: data_plane
  role_data_plane: {config_provider: yaml}
nginx_config: {worker_processes: 1}
YAML
write_routes() {
cat > "$DIR/apisix.yaml.tmp" <<YAML
upstreams:
  - id: both
    type: roundrobin
    nodes: {"127.0.0.1:$UP1": 1, "127.0.0.1:$UP2": 1}
consumers:
  - username: jack
    plugins:
      key-auth: {key: jack-secret}
routes:
  - id: public
    uri: /public/*
    upstream_id: both
  - id: private
    uri: /private
    upstream_id: both
    plugins:
      key-auth: {}
      limit-count: {count: 2, time_window: 60, rejected_code: 429}
$1
#END
YAML
mv "$DIR/apisix.yaml.tmp" "$DIR/apisix.yaml"
}
write_routes ""

say "validate the configuration (holdfast -t)"
show "$BIN" -t -c "$DIR/config.yaml"

say "start holdfast on 127.0.0.1:$GW"
"$BIN" -c "$DIR/config.yaml" 2> "$DIR/holdfast.log" & GWPID=$!; PIDS+=($GWPID)
wait_port "$GW"

say "round-robin over two upstreams"
for i in 1 2 3 4; do curl -s "http://127.0.0.1:$GW/public/item$i" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["path"], "served by", d["server"])'; done

say "key-auth: no key, wrong key, right key"
show curl -s -i "http://127.0.0.1:$GW/private"
show curl -s -o /dev/null -w '%{http_code}\n' -H 'apikey: nope' "http://127.0.0.1:$GW/private"
show curl -s -D - -o /dev/null -H 'apikey: jack-secret' "http://127.0.0.1:$GW/private"

say "limit-count (2 per minute): the third request is rejected"
show curl -s -o /dev/null -w '%{http_code}\n' -H 'apikey: jack-secret' "http://127.0.0.1:$GW/private"
show curl -s -o /dev/null -w '%{http_code}\n' -H 'apikey: jack-secret' "http://127.0.0.1:$GW/private"

say "no route"
show curl -s "http://127.0.0.1:$GW/nothing-here"

say "hot reload: add a mocking route without restarting"
write_routes "  - id: mock
    uri: /mock
    plugins:
      mocking: {response_example: '{\"mocked\":true}'}"
for _ in $(seq 50); do code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW/mock"); [ "$code" = 200 ] && break; sleep 0.1; done
show curl -s -i "http://127.0.0.1:$GW/mock"

say "graceful stop (SIGTERM drains in-flight requests)"
kill -TERM "$GWPID"; wait "$GWPID" && echo "holdfast exited with status 0"
say "holdfast log"
cat "$DIR/holdfast.log"
rm -rf "$DIR"
