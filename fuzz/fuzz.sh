#!/usr/bin/env bash
# Builds and runs the libFuzzer targets in fuzz/ (one .cc per target).
#
#   fuzz.sh build                      configure + build (clang-14) into $FUZZ_BUILD
#   fuzz.sh replay <target>            run every seed and past finding once
#   fuzz.sh check <target>             fixed -runs/-seed from seeds + findings (make test)
#   fuzz.sh run [seconds] [target...]  fuzz each target for `seconds` (make fuzz)
#
# New corpus entries go to $FUZZ_BUILD/corpus/<target> and crashes to
# $FUZZ_BUILD/artifacts/<target>/; the checked-in seeds (fuzz/corpus/<target>)
# and findings (fuzz/findings/<target>) are only read. A crash, once fixed,
# is copied into fuzz/findings/<target>/ so that every later run replays it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FUZZ_BUILD=${FUZZ_BUILD:-$HERE/../build/fuzz}
# Fixed, so the run in `make test` is the same every time: a wall-clock
# fuzz that finds something new in CI would be a flake.
FUZZ_RUNS=${FUZZ_RUNS:-100000}
FUZZ_SEED=${FUZZ_SEED:-1}
COMMON=(-max_len=4096 -rss_limit_mb=2048 -timeout=25 -print_final_stats=1)

targets() {
  for f in "$HERE"/*.cc; do basename "$f" .cc; done
}

dirs_of() {  # read-only inputs of a target
  local t=$1
  for d in "$HERE/corpus/$t" "$HERE/findings/$t"; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}

bin_of() {
  local b="$FUZZ_BUILD/$1"
  [ -x "$b" ] || { echo "fuzz.sh: $b is not built (fuzz.sh build)" >&2; exit 2; }
  echo "$b"
}

dict_of() {
  [ -f "$HERE/dict/$1.dict" ] && echo "-dict=$HERE/dict/$1.dict"
  return 0
}

cmd=${1:-}
case "$cmd" in
  build)
    CXX_FUZZ=${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++ || true)}
    [ -n "$CXX_FUZZ" ] || { echo "fuzz.sh: clang++-14 not found (scripts/install-deps.sh installs it)" >&2; exit 2; }
    if [ ! -f "$FUZZ_BUILD/build.ninja" ]; then
      cmake -S "$HERE" -B "$FUZZ_BUILD" -G Ninja -DCMAKE_CXX_COMPILER="$CXX_FUZZ" >/dev/null
    fi
    cmake --build "$FUZZ_BUILD" -j "${JOBS:-$(nproc)}"
    ;;
  replay)
    t=$2; bin=$(bin_of "$t")
    mapfile -t inputs < <(dirs_of "$t" | xargs -r -I{} find {} -type f | sort)
    [ ${#inputs[@]} -gt 0 ] || { echo "fuzz.sh: no inputs for $t" >&2; exit 1; }
    mkdir -p "$FUZZ_BUILD/artifacts/$t"
    "$bin" "${COMMON[@]}" -artifact_prefix="$FUZZ_BUILD/artifacts/$t/" "${inputs[@]}"
    echo "fuzz.sh: $t replayed ${#inputs[@]} inputs"
    ;;
  check)
    t=$2; bin=$(bin_of "$t")
    work="$FUZZ_BUILD/check/$t"
    rm -rf "$work"; mkdir -p "$work" "$FUZZ_BUILD/artifacts/$t"
    mapfile -t dirs < <(dirs_of "$t")
    "$bin" "${COMMON[@]}" $(dict_of "$t") -runs="$FUZZ_RUNS" -seed="$FUZZ_SEED" \
      -artifact_prefix="$FUZZ_BUILD/artifacts/$t/" "$work" "${dirs[@]}"
    ;;
  run)
    secs=${2:-60}
    shift $(( $# >= 2 ? 2 : $# ))
    list=("$@"); [ ${#list[@]} -gt 0 ] || mapfile -t list < <(targets)
    failed=()
    for t in "${list[@]}"; do
      bin=$(bin_of "$t")
      mkdir -p "$FUZZ_BUILD/corpus/$t" "$FUZZ_BUILD/artifacts/$t"
      mapfile -t dirs < <(dirs_of "$t")
      echo "== fuzz $t for ${secs}s"
      "$bin" "${COMMON[@]}" $(dict_of "$t") -max_total_time="$secs" \
        -artifact_prefix="$FUZZ_BUILD/artifacts/$t/" "$FUZZ_BUILD/corpus/$t" "${dirs[@]}" || failed+=("$t")
    done
    if [ ${#failed[@]} -gt 0 ]; then
      echo "fuzz.sh: crashes in ${failed[*]}: inputs in $FUZZ_BUILD/artifacts/<target>/;" \
           "fix each, then copy its input into fuzz/findings/<target>/" >&2
      exit 1
    fi
    ;;
  targets)
    targets
    ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
