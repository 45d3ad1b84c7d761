#!/usr/bin/env bash
# Times `unlearnbench demo` from scratch: a fresh output folder and a fresh evaluation cache, so the
# world is generated, the target trained and every run trained and evaluated. Prints, per demo, the
# wall time (the full demo's budget: <= 600 s on 2 idle cores, issue 16), the CPU time of the demo
# and all its worker processes (user + sys, from /usr/bin/time), and the load average before and after
# (the CPU time is the figure to trust on a shared machine: wall time grows with other users' load).
#
#   benchmarks/demo_time.sh                 # full demo, then --quick
#   benchmarks/demo_time.sh full            # full demo only
#   benchmarks/demo_time.sh quick           # --quick only
#   KEEP=/tmp/demo-time benchmarks/demo_time.sh   # keep the output folders and logs there
#
# UNLEARNBENCH=path/to/unlearnbench picks the executable (default: .venv/bin/unlearnbench, else
# `python -m harness` with the python on PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -n "${UNLEARNBENCH:-}" ]; then
  cmd=("$UNLEARNBENCH")
elif [ -x "$here/.venv/bin/unlearnbench" ]; then
  cmd=("$here/.venv/bin/unlearnbench")
else
  cmd=(python -m harness)
fi
if [ -n "${KEEP:-}" ]; then
  root="$KEEP"; mkdir -p "$root"
else
  root="$(mktemp -d)"; trap 'rm -rf "$root"' EXIT
fi
which="${1:-both}"
case "$which" in both) runs=(full quick) ;; full) runs=(full) ;; quick) runs=(quick) ;;
  *) echo "usage: $0 [both|full|quick]" >&2; exit 2 ;; esac

for run in "${runs[@]}"; do
  out="$root/$run"; rm -rf "$out"; mkdir -p "$out"
  args=(); budget=600
  [ "$run" = quick ] && { args=(--quick); budget=0; }
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  if ! UNLEARNBENCH_CACHE="$out/cache" /usr/bin/time -f '%e %U %S' -o "$out/time" \
       "${cmd[@]}" demo --out "$out/demo" "${args[@]}" > "$out/log" 2>&1; then
    tail -20 "$out/log"; exit 1
  fi
  load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
  python3 - "$run" "$budget" "$out/time" "$out/demo/demo_timings.json" "$load_before" "$load_after" <<'PY'
import json, sys
run, budget, time_file, phases_file, before, after = sys.argv[1:]
wall, user, system = (float(x) for x in open(time_file).read().split()[-3:])
phases = json.load(open(phases_file))
budget = float(budget)
print(f"demo {run}: {wall:.0f} s wall" + (f" (budget {budget:.0f} s, ratio {wall / budget:.2f})" if budget else "") + "; "
      f"CPU {user:.0f} s user + {system:.0f} s sys = {(user + system) / 2:.0f} s on each of 2 cores if spread "
      f"evenly; load average before {before}, after {after}")
cpu = phases.pop("cpu", {})
print("  phases, wall (s): " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
if cpu:
    print("  phases, CPU (s): " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items()))
    # What the same work takes on 2 idle cores: the target's training alone, then the runs on two
    # workers in the demo's order (each worker takes the next run when it is free), then the board.
    free = [0.0, 0.0]
    for key, seconds in cpu.items():
        if key != "target":
            free[free.index(min(free))] += seconds
    idle = phases.get("world", 0) + cpu.get("target", 0) + max(free) + phases.get("leaderboard", 0)
    print(f"  on 2 idle cores (from the CPU times): about {idle:.0f} s")
PY
done
