#!/usr/bin/env bash
# Times `unlearnbench demo` from scratch (fresh output folder, fresh evaluation cache) and prints the
# ratio to its budget: full demo <= 600 s, --quick <= 180 s on 2 cores. Usage:
#   benchmarks/demo_time.sh            # full demo
#   benchmarks/demo_time.sh --quick
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${UNLEARNBENCH:-$here/.venv/bin/unlearnbench}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
budget=600
[ "${1:-}" = "--quick" ] && budget=180
start=$(date +%s.%N)
UNLEARNBENCH_CACHE="$out/cache" "$bin" -q demo --out "$out/demo" "$@" > "$out/log" 2>&1 || { tail -20 "$out/log"; exit 1; }
end=$(date +%s.%N)
python3 - "$start" "$end" "$budget" "$out/demo/demo_timings.json" "$*" <<'PY'
import json, sys
start, end, budget = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
phases = json.load(open(sys.argv[4]))
wall = end - start
print(f"demo {sys.argv[5] or '(full)'}: {wall:.0f} s wall, budget {budget:.0f} s, ratio {wall / budget:.2f} (<= 1 meets the target)")
print("phases (s): " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
PY
