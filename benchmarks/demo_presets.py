"""Re-measure how every method's ``demo`` preset was chosen (see ``baselines/presets.py``).

For each built-in method, the demo preset is run once per learning rate of ``DEMO_LR_GRID`` (for
``zjuklab_merge``: the parents' shared learning rate; for ``rmu`` also each steering coefficient of
``--rmu-coeffs``) on the demo's world and target, evaluated exactly as ``unlearnbench demo`` does, and
scored as the ``world`` board does (final score = mean of task aggregate, MIA score, utility; utility
floor = 75 % of the target's). The table marks, per method, the setting the rule picks: the best final
score among the runs above the floor. Compare with the learning rate in each preset.

    python benchmarks/demo_presets.py --out /tmp/presets              # every method (an hour or more on 2 cores)
    python benchmarks/demo_presets.py --out /tmp/presets --methods npo,rmu --jobs 2

Runs are ordinary run folders under OUT/runs (reruns reuse finished ones); the world and target are
OUT/world and OUT/target (trained on first use, as the demo does).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _variants(name: str, rmu_coeffs: list[float]) -> list[tuple[str, dict]]:
    from baselines.presets import DEMO_LR_GRID
    from harness.core.registry import METHODS

    preset = METHODS.get(name).presets["demo"]
    out = []
    for lr in DEMO_LR_GRID:
        if name == "zjuklab_merge":
            out.append((f"lr={lr:g}", {"preset": "demo", "common_params": {**preset["common_params"], "learning_rate": lr}}))
        elif name == "rmu":
            for c in rmu_coeffs:
                out.append((f"lr={lr:g} c={c:g}", {"preset": "demo", "learning_rate": lr, "steering_coeff": c}))
        else:
            out.append((f"lr={lr:g}", {"preset": "demo", "learning_rate": lr}))
    return out


def _run(job: tuple[str, str, dict, str, str, str]) -> dict:
    import torch

    from harness.synthetic.demo import demo_eval_settings
    from harness.training.runner import run_unlearning

    torch.set_num_threads(1)
    name, tag, params, run, world, target = job
    outcome = run_unlearning(name, target, world, run, params=params, evaluate=True,
                             eval_settings=demo_eval_settings(Path(world)), label=f"{name} {tag}", progress=False,
                             keep_model=False)
    return {"method": name, "setting": tag, **{k: outcome.result.metrics.get(k) for k in
            ("final_score_utility", "task_aggregate", "mia_auc", "utility")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--methods", default=None, help="comma list (default: every built-in method)")
    parser.add_argument("--rmu-coeffs", default="6.5,15,30", help="RMU steering coefficients (default 6.5,15,30)")
    parser.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    args = parser.parse_args()

    from harness.synthetic.demo import builtin_methods, evaluate_target
    from harness.core.registry import METHODS
    from harness.synthetic.target import train_target
    from harness.synthetic.world import generate_world

    import torch

    torch.set_num_threads(1)
    world = generate_world(args.out / "world", seed=0)
    target = train_target(world, args.out / "target", progress=True)
    reference = evaluate_target(args.out / "runs" / "target", Path(world), Path(target), 0)["metrics"]
    floor = 0.75 * reference["utility"]
    methods = args.methods.split(",") if args.methods else builtin_methods()
    for name in methods:
        METHODS.get(name)
    coeffs = [float(c) for c in args.rmu_coeffs.split(",")]
    jobs = [(name, tag, params, str(args.out / "runs" / f"{name} {tag}".replace(" ", "_").replace("=", "")),
             str(world), str(target)) for name in methods for tag, params in _variants(name, coeffs)]
    import multiprocessing

    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = list(pool.map(_run, jobs))

    print(f"target: utility {reference['utility']:.4f}, floor {floor:.4f}")
    print(f"{'method':<14} {'setting':<16} {'final':>7} {'task_agg':>8} {'mia_auc':>7} {'utility':>7}")
    for name in methods:
        mine = [r for r in rows if r["method"] == name]
        ok = [r for r in mine if (r["utility"] or 0) >= floor]
        best = max(ok, key=lambda r: r["final_score_utility"], default=None)
        for r in mine:
            mark = "  <- picked" if r is best else ("  (below floor)" if r not in ok else "")
            print(f"{name:<14} {r['setting']:<16} {r['final_score_utility']:>7.4f} {r['task_aggregate']:>8.4f} "
                  f"{r['mia_auc']:>7.3f} {r['utility']:>7.3f}{mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
