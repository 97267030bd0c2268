#!/usr/bin/env bash
# make bench: builds happen in the Makefile; this runs the comparison.
set -euo pipefail
cd "$(dirname "$0")"
exec python3 run.py "$@"
