#!/usr/bin/env bash
# make bench: builds happen in the Makefile; this runs the proxy comparison
# (run.py), then the etcd propagation / full-reload benchmark
# (etcd_propagation.py). The latter runs when no --scenario is given or with
# --scenario etcd (handled here; run.py never sees "etcd"). ETCD_UPDATES sets
# its number of Admin API updates (default 1000).
set -euo pipefail
cd "$(dirname "$0")"
proxy_args=()
scenario_given=0 etcd=0 proxy_scenarios=0
argv=("$@")
for ((i = 0; i < ${#argv[@]}; i++)); do
  a=${argv[i]}
  case $a in
    -h | --help) exec python3 run.py "$@" ;;
    --scenario | --scenario=*)
      if [[ $a == --scenario ]]; then v=${argv[i + 1]:-}; i=$((i + 1)); else v=${a#--scenario=}; fi
      scenario_given=1
      if [[ $v == etcd ]]; then etcd=1; else proxy_scenarios=1; proxy_args+=(--scenario "$v"); fi ;;
    *) proxy_args+=("$a") ;;
  esac
done
if ((!scenario_given || proxy_scenarios)); then python3 run.py "${proxy_args[@]}"; fi
if ((!scenario_given || etcd)); then python3 etcd_propagation.py ${ETCD_UPDATES:+--updates "$ETCD_UPDATES"}; fi
