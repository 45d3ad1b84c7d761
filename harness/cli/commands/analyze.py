"""``unlearnbench analyze merges|density|curves|angles``: the seed paper's analyses as CSV + PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.cli.main import examples
from harness.core.errors import UserError

DEFAULT_TECHNIQUES = ("linear", "dare_linear", "dare_ties", "magnitude_prune", "ties")


def _merge_sweep(args: argparse.Namespace, variants: list[tuple[str, object]]) -> list[Path]:
    """Merge the parents once per variant into OUT/runs/<name> (reusing finished ones), evaluated."""
    from harness.training.merge import merge_params, merge_runs
    from harness.core.records import RESULT_FILE
    from harness.cli.commands.evaluate import settings_from_args

    eval_settings = settings_from_args(args)
    runs = []
    for name, settings in variants:
        run = Path(args.out) / "runs" / name
        config = run / "config.json"
        if (run / RESULT_FILE).is_file() and config.is_file():
            old = json.loads(config.read_text())
            if old.get("params") == merge_params(settings) and old.get("parents") == [str(Path(p).resolve()) for p in args.parents]:
                print(f"  {name}: already merged and evaluated, reused")
                runs.append(run)
                continue
        print(f"  {name}: merging and evaluating …")
        merge_runs(args.parents, settings, run, evaluate=True, eval_settings=eval_settings, label=name,
                   dtype=args.dtype, device=args.device, progress=not args.no_progress)
        runs.append(run)
    return runs


def _write_table(df, out: Path, stem: str) -> Path:
    from harness.core import fileio

    path = out / f"{stem}.csv"
    fileio.write_text(path, df.to_csv(index=False, float_format="%.4f"))
    return path


def _merges(args: argparse.Namespace) -> int:
    from baselines.merging import MergeSettings

    from harness.evaluation.analysis import merge_table, plot_merge_table

    out = Path(args.out)
    runs = list(args.runs or [])
    if args.parents:
        variants = [(how, MergeSettings(how=how, density=args.density, weights=tuple(args.weights) if args.weights else None,
                                        svd_rank=args.svd_rank, seed=args.seed)) for how in args.how.split(",")]
        runs = _merge_sweep(args, variants) + [Path(p) for p in args.parents] + runs
    if not runs:
        raise UserError("give --parents RUN_A RUN_B (to merge them with each technique) and/or merged run folders")
    df = merge_table(runs)
    csv = _write_table(df, out, "merges")
    png = plot_merge_table(df, out / "merges.png", "Merging techniques (parents included)")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {csv} and {png}")
    return 0


def _density(args: argparse.Namespace) -> int:
    from baselines.merging import MergeSettings

    from harness.evaluation.analysis import density_optimum, density_table, plot_density

    densities = [float(d) for d in args.densities.split(",")]
    variants = [(f"{args.how}-d{d:g}", MergeSettings(how=args.how, density=d, seed=args.seed,
                                                     weights=tuple(args.weights) if args.weights else None))
                for d in densities]
    runs = _merge_sweep(args, variants)
    df = density_table(runs)
    out = Path(args.out)
    csv = _write_table(df, out, f"density_{args.how}")
    png = plot_density(df, out / f"density_{args.how}.png", f"{args.how}: density sweep")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    best = density_optimum(df)
    print(f"best density: {best['density']:g} ({best['score']} {best['value']:.4f}; "
          + ("interior: neither end of the sweep)" if best["interior"] else "at an end of the sweep)"))
    print(f"wrote {csv} and {png}")
    return 0


def _curves(args: argparse.Namespace) -> int:
    from harness.evaluation.analysis import plot_training_curves, training_curves

    evals, losses = training_curves(args.run)
    out = Path(args.out or args.run)
    paths = [_write_table(evals, out, "curves_eval"), _write_table(losses, out, "curves_loss")]
    paths.append(plot_training_curves(evals, losses, out / "curves.png", f"training curves: {Path(args.run).name}"))
    if not evals.empty:
        print(evals.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _angles(args: argparse.Namespace) -> int:
    from harness.evaluation.analysis import change_angles, load_snapshot, pick_mid, plot_angles, snapshot_steps

    try:
        start, mid, end = pick_mid(snapshot_steps(args.run), args.mid)
    except ValueError as exc:
        raise UserError(f"{args.run}: {exc}") from exc
    df = change_angles(load_snapshot(args.run, start), load_snapshot(args.run, mid), load_snapshot(args.run, end))
    out = Path(args.out or args.run)
    csv = _write_table(df, out, "angles")
    png = plot_angles(df, out / "angles.png", f"parameter-change angles (steps {start} → {mid} → {end})")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"wrote {csv} and {png}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from harness.cli.commands.evaluate import add_eval_arguments

    p = sub.add_parser("analyze", help="the ZJUKLAB paper's analyses: merges, density, curves, angles",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=examples("unlearnbench analyze merges --parents runs/over runs/under --out analysis",
                                       "unlearnbench analyze density --parents runs/over runs/under --how ties --out analysis",
                                       "unlearnbench analyze curves runs/npo", "unlearnbench analyze angles runs/npo"))
    asub = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    def merge_opts(q: argparse.ArgumentParser) -> None:
        q.add_argument("--parents", nargs="+", metavar="RUN_DIR", help="the runs to merge (e.g. over- and under-forgetting)")
        q.add_argument("--out", required=True, metavar="DIR", help="where merged runs, CSV and PNG go")
        q.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per parent (default 1 each)")
        q.add_argument("--seed", type=int, default=0, help="seed for DARE (default 0)")
        add_eval_arguments(q)

    q = asub.add_parser("merges", help="compare merging techniques (paper's Table 2)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=examples("unlearnbench analyze merges --parents runs/over runs/under --out analysis",
                                        "unlearnbench analyze merges runs/merged-* --out analysis  # table only"))
    q.add_argument("runs", nargs="*", metavar="RUN_DIR", help="already merged runs to include")
    q.add_argument("--how", default=",".join(DEFAULT_TECHNIQUES), help=f"comma list (default {','.join(DEFAULT_TECHNIQUES)})")
    q.add_argument("--density", type=float, default=0.8, help="density for ties/dare/magnitude_prune (0.8)")
    q.add_argument("--svd-rank", type=int, default=None)
    merge_opts(q)
    q.set_defaults(func=_merges)

    q = asub.add_parser("density", help="density sweep for one merging method (paper's Figure 5)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=examples("unlearnbench analyze density --parents runs/over runs/under --how ties "
                                        "--densities 0.2,0.4,0.6,0.8,1.0 --out analysis"))
    q.add_argument("--how", default="ties", help="merging method (default ties)")
    q.add_argument("--densities", default="0.2,0.4,0.6,0.8,1.0", help="comma list (default 0.2,…,1.0)")
    merge_opts(q)
    q.set_defaults(func=_density)

    q = asub.add_parser("curves", help="regurgitation/knowledge per epoch and the loss (Figures 2, 3)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=examples("unlearnbench analyze curves runs/npo --out analysis/npo"))
    q.add_argument("run", metavar="RUN_DIR")
    q.add_argument("--out", default=None, metavar="DIR", help="default: the run folder")
    q.set_defaults(func=_curves)

    q = asub.add_parser("angles", help="angles between parameter-change vectors (Figure 4)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=examples("unlearnbench analyze angles runs/npo --mid 40"))
    q.add_argument("run", metavar="RUN_DIR", help="an unlearning run trained with parameter snapshots")
    q.add_argument("--mid", type=int, default=None, help="intermediate step (default: the snapshot nearest the middle)")
    q.add_argument("--out", default=None, metavar="DIR", help="default: the run folder")
    q.set_defaults(func=_angles)
