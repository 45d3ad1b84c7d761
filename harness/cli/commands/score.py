"""``unlearnbench score RUN_DIR``: recompute every metric from a run's per-sample files alone.

Like the organisers' metrics-only mode: no model is loaded. The generations in ``samples.jsonl`` are
re-scored and the MIA AUCs recomputed from ``mia.jsonl``; MMLU and utility accuracies are taken
from ``--mmlu``/``--utility`` or else from the run's ``result.json``. With ``--write`` the run's
``result.json`` gets the recomputed metrics (written atomically; other metrics it holds are kept).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from harness.cli.main import examples
from harness.core.errors import UserError


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6f}"


def _accuracy_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected an accuracy in [0, 1], got {text!r}")
    return value


def _score(args: argparse.Namespace) -> int:
    from harness.core import fileio
    from harness.core.registry import BENCHMARKS
    from harness.core.records import MIA_FILE, RESULT_FILE, SAMPLES_FILE, now, read_result, write_result

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a run folder (expected a folder holding {SAMPLES_FILE})")
    samples_path = run_dir / SAMPLES_FILE
    if not samples_path.is_file():
        raise UserError(f"{samples_path}: no such file; `unlearnbench score` needs the run's per-sample file")
    result_path = run_dir / RESULT_FILE
    result = read_result(result_path) if result_path.is_file() else None
    if args.write and result is None:
        raise UserError(f"{result_path}: no such file; --write updates an existing result record")
    _check_belongs(run_dir, result, write=args.write)

    # Evaluation records its scoring mode as settings["mode"] (EvalSettings.mode).
    mode = args.mode or (result.settings.get("mode") if result else None) or "semeval2025"
    mmlu = args.mmlu if args.mmlu is not None else (result.metrics.get("mmlu") if result else None)
    utility = args.utility if args.utility is not None else (result.metrics.get("utility") if result else None)

    # The benchmark the run was evaluated on scores its rows (runs recorded before benchmarks had
    # names are LUME runs).
    task = BENCHMARKS.get(result.settings.get("benchmark", "lume") if result else "lume")
    samples = task.read_samples(samples_path)
    mia_path = run_dir / MIA_FILE
    mia_rows = task.read_documents(mia_path) if mia_path.is_file() else None
    try:
        metrics = task.rescore(samples, mia_rows, {"mmlu": mmlu, "utility": utility}, mode, progress=not args.quiet)
    except ValueError as exc:  # DataError included: name the file the rows came from
        raise UserError(f"{run_dir}: {exc}") from exc

    if args.json:
        print(fileio.dumps(metrics))
    else:
        print(f"# {run_dir}  (mode {mode}; {len(samples)} samples, "
              f"{len(mia_rows) if mia_rows is not None else 'no'} MIA rows)")
        width = max(len(name) for name in metrics)
        for name, value in metrics.items():
            print(f"{name:<{width}}  {_fmt(value)}")

    if args.write:
        assert result is not None
        merged = {**result.metrics, **metrics}
        _check_update(result_path, result.metrics, merged)
        settings = {**result.settings, "rescored": {"by": "unlearnbench score", "mode": mode, "at": now()}}
        updated = result.model_copy(update={"metrics": merged, "settings": settings})
        _write_update(run_dir, updated)
        if not args.json:
            print(f"wrote {result_path}")
    return 0


def _check_belongs(run_dir: Path, result, write: bool) -> None:
    """The files score reads must belong together: their manifest verifies (a mixed folder left by an
    interrupted rerun, a truncated or replaced file is refused with the file); a run made before
    manifests is checked, before --write, against the row counts of its record."""
    from harness.core.manifest import MANIFEST_FILE, verify
    from harness.core.records import CONFIG_FILE, MIA_FILE, RESULT_FILE, SAMPLES_FILE

    if (run_dir / MANIFEST_FILE).is_file():
        problem = verify(run_dir, only=(SAMPLES_FILE, MIA_FILE, RESULT_FILE, CONFIG_FILE))
        if problem is not None:
            raise UserError(f"{run_dir}: its files do not belong together ({MANIFEST_FILE}): {problem}; refusing to "
                            "score it -- evaluate the model again")
    elif write and result is not None:
        from leaderboards.collect import row_count_problem

        problem = row_count_problem(run_dir, result)
        if problem is not None:
            raise UserError(f"{run_dir}: {problem}; --write would replace the record's metrics by those of files that "
                            "are not its own")


def _check_update(result_path: Path, old: dict, new: dict) -> None:
    """--write never replaces a number by null (a partial per-sample file, a deleted MIA file) and
    never writes a non-finite or out-of-range metric."""
    from harness.evaluation.checks import check_metrics

    lost = [name for name, value in old.items() if value is not None and new.get(name) is None]
    if lost:
        raise UserError(f"{result_path}: refusing to replace {lost[0]} = {old[lost[0]]!r} by null"
                        f"{f' (and {len(lost) - 1} more metrics)' if len(lost) > 1 else ''}: the per-sample files "
                        "hold less than the run that wrote this record (partial or missing rows)")
    check_metrics(new, result_path)


def _write_update(run_dir: Path, updated) -> None:
    """result.json replaced within a transaction over the run (hard-linked copy, swapped in whole), the
    manifest rewritten with the run's recorded inputs and settings."""
    from harness.core.manifest import MANIFEST_FILE, read_manifest
    from harness.core.records import read_result, write_result
    from harness.core.transaction import RunTransaction

    manifest = read_manifest(run_dir) if (run_dir / MANIFEST_FILE).is_file() else None
    with RunTransaction(run_dir, base=run_dir, command=manifest["command"] if manifest else None,
                        option="RUN_DIR") as tx:
        if manifest:
            tx.fingerprints.update(manifest.get("inputs") or {})
            tx.settings_sha256 = manifest.get("settings_sha256")
        write_result(tx.path, updated)
        read_result(tx.path)  # read back through the validator: a record we could not read is never left behind


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="recompute every metric of a run from its samples.jsonl and mia.jsonl (no model)",
        description=__doc__.replace("``", ""),
        epilog=examples(
            "unlearnbench score runs/npo                       # print the recomputed metrics",
            "unlearnbench score runs/npo --mmlu 0.471 --write  # also update runs/npo/result.json",
            "unlearnbench score runs/npo --mode plain --json   # without the organisers' NA quirk, as JSON",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder holding samples.jsonl (and mia.jsonl)")
    p.add_argument("--mmlu", type=_accuracy_arg, default=None,
                   help="MMLU accuracy for the final score (default: the run's result.json value, if any)")
    p.add_argument("--utility", type=_accuracy_arg, default=None,
                   help="utility accuracy (default: the run's result.json value, if any)")
    p.add_argument("--mode", choices=("semeval2025", "plain"), default=None,
                   help="semeval2025 reproduces the organisers (NA quirk); plain scores the texts as they are "
                        "(default: the mode the run was evaluated in, settings.mode; else semeval2025)")
    p.add_argument("--write", action="store_true", help="update the run's result.json metrics (atomically)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=_score)
