"""The robust board: unlearned runs ranked by how little of their forgetting the worst attack recovers.

Input: attacked runs (``unlearnbench attack … --target``, method ``attack:<kind>``) with their
``robust.json`` (recovery per forget metric, with intervals; :mod:`metrics.robust`), and the runs they
attacked (their parents, read from ``robust.json``). One entry per attacked parent:

- per attacked run, its **recovery** = the larger of the pooled SemEval forget recoveries
  (``forget/all/regurgitation``, ``forget/all/knowledge``) that are defined;
- ``recovered/<kind>`` = the largest recovery among that kind's runs (e.g. 8- and 4-bit);
- ``robust/worst`` = the largest over every attack, ``robust/score`` = 1 - ``robust/worst`` (the share of
  the forgetting kept under the worst attack; the ranking score, higher is better);
- the parent's SemEval final score (``final_score`` or, on the synthetic world, ``final_score_utility``).

Intervals are the worst attack's own bootstrap interval (``robust.json``), carried over as they are.
Entries whose attacks recovered nothing definable (no forgetting to recover) are listed unranked.
The rows are built as records and go through the ordinary builder and renderers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

from harness.core.records import RESULT_FILE, read_result

from .board import Board
from .build import Leaderboard, build_board
from .collect import LoadedRecord, find_result_files

ROBUST_FILE = "robust.json"
SUMMARY_METRICS = ("forget/all/regurgitation", "forget/all/knowledge")
KINDS = ("relearn", "quantize", "precision", "prompt")


def _attack_summary(robust: dict[str, Any]) -> tuple[Optional[float], Optional[tuple[float, float]], str]:
    """(the run's recovery, its interval, the metric it comes from) over :data:`SUMMARY_METRICS`."""
    best: tuple[Optional[float], Optional[tuple[float, float]], str] = (None, None, "")
    for name in SUMMARY_METRICS:
        rec = robust.get("recovery", {}).get(name)
        if rec and rec.get("recovered") is not None and (best[0] is None or rec["recovered"] > best[0]):
            ci = tuple(rec["ci"]) if rec.get("ci") else None
            best = (float(rec["recovered"]), ci, name)  # type: ignore[assignment]
    return best


def robust_records(folders: Sequence[str | Path]) -> tuple[list[LoadedRecord], dict[str, dict], list[tuple[str, str]]]:
    """(one synthetic record per attacked parent, {parent run: its attacks}, skipped (path, reason))."""
    by_parent: dict[str, list[tuple[Path, dict, Any]]] = {}
    skipped: list[tuple[str, str]] = []
    for path in find_result_files(folders):
        robust_path = path.parent / ROBUST_FILE
        if not robust_path.is_file():
            continue
        try:
            robust = json.loads(robust_path.read_text(encoding="utf-8"))
            result = read_result(path)
        except (OSError, ValueError) as exc:
            skipped.append((str(robust_path), f"unreadable ({exc})"))
            continue
        by_parent.setdefault(str(robust.get("parent")), []).append((path.parent, robust, result))
    records: list[LoadedRecord] = []
    attacks: dict[str, dict] = {}
    for parent, runs in sorted(by_parent.items()):
        parent_result_path = Path(parent) / RESULT_FILE
        try:
            parent_result = read_result(parent_result_path)
        except (OSError, ValueError) as exc:
            skipped.append((parent, f"the attacked run's record cannot be read ({exc}); its attacks are left out"))
            continue
        per_kind: dict[str, tuple[Optional[float], Optional[tuple[float, float]], str]] = {}
        detail = []
        for run_dir, robust, result in runs:
            value, ci, metric = _attack_summary(robust)
            kind = robust.get("kind", "")
            detail.append({"run": str(run_dir), "label": result.label, "kind": kind, "recovered": value, "ci": ci,
                           "metric": metric})
            if value is not None and (per_kind.get(kind, (None,))[0] is None or value > per_kind[kind][0]):
                per_kind[kind] = (value, ci, metric)
            per_kind.setdefault(kind, (None, None, ""))
        defined = [(v, ci) for v, ci, _ in per_kind.values() if v is not None]
        worst = max(defined, key=lambda t: t[0]) if defined else (None, None)
        metrics = {f"recovered/{k}": v for k, (v, _, _) in per_kind.items()}
        metrics["robust/worst"] = worst[0]
        metrics["robust/score"] = None if worst[0] is None else 1.0 - worst[0]
        for name in ("final_score", "final_score_utility"):
            metrics[name] = parent_result.metrics.get(name)
        if worst[0] is None:
            skipped.append((parent, "no attack on it has a defined recovery (nothing was forgotten on the pooled "
                                    "forget metrics, see robust.json); not ranked"))
            continue
        synthetic = parent_result.model_copy(update={"metrics": metrics})
        records.append(LoadedRecord(path=parent_result_path, result=synthetic))
        attacks[parent] = {"runs": detail, "ci": {f"recovered/{k}": ci for k, (_, ci, _) in per_kind.items() if ci},
                           "worst_ci": worst[1]}
    return records, attacks, skipped


def build_robust_board(folders: Sequence[str | Path], board: Board) -> Leaderboard:
    """The robust board over the attacked runs under ``folders`` (see the module docstring)."""
    from . import LeaderboardError

    records, attacks, skipped = robust_records(folders)
    if not records:
        raise LeaderboardError(f"no attacked run with a {ROBUST_FILE} under {', '.join(map(str, folders))}: run "
                               "`unlearnbench attack RUN --kind … --target TARGET_RUN --out …` first")
    lb = build_board(records, board, rank_parents=True, roots=[Path(f) for f in folders])
    for entry in lb.entries:
        info = next((attacks[str(r.run_dir)] for r in entry.runs if str(r.run_dir) in attacks), None)
        if info is None:
            continue
        for name, ci in info["ci"].items():
            entry.ci[name] = tuple(ci)
        if info["worst_ci"]:
            low, high = info["worst_ci"]
            entry.ci["robust/worst"] = (low, high)
            entry.ci["robust/score"] = (1.0 - high, 1.0 - low)
    lb.skipped = list(skipped) + lb.skipped
    lb.notes.append("Recovery of an attacked run = the larger of its pooled forget recoveries (regurgitation, "
                    "knowledge); per attack kind the largest over its runs; worst = the largest over all attacks; "
                    "score = 1 - worst. Intervals: the worst attack's paired bootstrap interval (robust.json).")
    return lb


__all__ = ["build_robust_board", "robust_records", "SUMMARY_METRICS"]
