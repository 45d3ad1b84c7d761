"""The seed paper's analyses (ZJUKLAB, "Unlearning via Model Merging"), as tables and plots.

- :func:`merge_table`      — merging techniques side by side (the paper's Table 2)
- :func:`density_table`    — a density sweep for one merging method (Figure 5)
- :func:`training_curves`  — regurgitation/knowledge per epoch and the training loss (Figures 2, 3)
- :func:`change_angles`    — angles between parameter-change vectors (Figure 4)

Tables are pandas DataFrames written as CSV; plots are PNG files made with matplotlib's Agg backend.
Everything reads run folders (result records, training logs, parameter snapshots), never re-runs.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

from harness.core import fileio
from harness.core.errors import RecordError
from harness.core.records import RESULT_FILE, TRAIN_LOG_FILE, read_result

MERGE_COLUMNS = ("final_score_utility", "final_score", "task_aggregate", "mia_auc", "mia_score", "utility", "mmlu")


def _runs(paths: Iterable[str | Path]) -> list[Path]:
    out = []
    for p in paths:
        p = Path(p)
        if (p / RESULT_FILE).is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(q.parent for q in p.rglob(RESULT_FILE)))
        else:
            raise RecordError(p, "not a run folder (no result.json) and not a folder of runs")
    return out


def merge_table(run_dirs: Iterable[str | Path]):
    """One row per run: its merge method/density (empty for unmerged runs) and the scores."""
    import pandas as pd

    rows = []
    for run in _runs(run_dirs):
        res = read_result(run)
        merge = res.method.params if res.method.name == "merge" else {}
        row = {"run": run.name, "label": res.label, "method": res.method.name,
               "how": merge.get("how", ""), "density": merge.get("density"),
               "weights": " ".join(str(w) for w in merge.get("weights", []) or [])}
        for col in MERGE_COLUMNS:
            row[col] = res.metrics.get(col)
        rows.append(row)
    df = pd.DataFrame(rows)
    score = "final_score_utility" if df.get("final_score_utility") is not None and df["final_score_utility"].notna().any() else "final_score"
    if score in df:
        df = df.sort_values(score, ascending=False, kind="stable", na_position="last")
    return df.dropna(axis=1, how="all").reset_index(drop=True)


def density_table(run_dirs: Iterable[str | Path]):
    """The runs of a density sweep (one merging method at several densities), ordered by density: the
    rows of :func:`merge_table` for merged runs that record a density."""
    run_dirs = list(run_dirs)
    df = merge_table(run_dirs)
    if "density" not in df:
        raise RecordError(", ".join(str(p) for p in run_dirs), "no merged run with a density among these runs")
    return df[df["density"].notna()].sort_values("density", kind="stable").reset_index(drop=True)


def density_optimum(df) -> dict:
    """Where a density sweep (:func:`density_table`) peaks: ``{"score", "density", "value", "interior"}``,
    ``interior`` being True when the best density is neither the smallest nor the largest swept (the
    ZJUKLAB paper's Figure 5 finds such an optimum). The score is ``final_score_utility`` when the runs
    have it, else ``final_score``; ties go to the smaller density."""
    score = "final_score_utility" if "final_score_utility" in df and df["final_score_utility"].notna().any() \
        else "final_score"
    rows = df[df[score].notna()] if score in df else df.iloc[0:0]
    if rows.empty:
        raise RecordError("density sweep", f"no run of the sweep has a {score}")
    best = rows.loc[rows[score].idxmax()]
    densities = rows["density"]
    return {"score": score, "density": float(best["density"]), "value": float(best[score]),
            "interior": bool(densities.min() < best["density"] < densities.max())}


def plot_merge_table(df, out_png: str | Path, title: str = "Merging techniques") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in ("final_score_utility", "final_score", "task_aggregate", "mia_score", "utility", "mmlu")
            if c in df]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(df)), 4))
    width = 0.8 / max(1, len(cols))
    for i, col in enumerate(cols):
        ax.bar([x + i * width for x in range(len(df))], df[col].fillna(0), width, label=col)
    ax.set_xticks([x + width * (len(cols) - 1) / 2 for x in range(len(df))])
    ax.set_xticklabels(df["label"], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_fig(fig, out_png)


def plot_density(df, out_png: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df.sort_values("density")
    fig, ax = plt.subplots(figsize=(6, 4))
    for col in ("final_score_utility", "final_score", "task_aggregate", "mia_auc", "utility", "mmlu"):
        if col in df:
            ax.plot(df["density"], df[col], marker="o", label=col)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("density")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_fig(fig, out_png)


def _save_fig(fig, out_png: str | Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    with fileio.atomic_open(out_png, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(out_png)


# -- training curves ----------------------------------------------------------------------------
def read_train_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / TRAIN_LOG_FILE
    if not path.is_file():
        raise RecordError(path, "no training log in this run folder (was it an unlearning run?)")
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            # a run killed mid-write leaves at most a partial last line: ignore only that one
            if lineno == len(lines):
                break
            raise RecordError(path, f"line {lineno} is not valid JSON")
    return rows


def training_curves(run_dir: str | Path):
    """Two tables from ``train_log.jsonl``: evaluation metrics per epoch/step, and training losses."""
    import pandas as pd

    rows = read_train_log(run_dir)
    evals, losses = [], []
    for row in rows:
        if row.get("event") == "eval":
            base = {k: row.get(k) for k in ("step", "epoch")}
            for key, value in row.items():
                if isinstance(value, (int, float)) and "/" in key:
                    evals.append({**base, "metric": key, "value": value})
        elif row.get("event") == "train" or ("loss" in row and "step" in row):
            losses.append({k: v for k, v in row.items() if isinstance(v, (int, float))})
    ev = pd.DataFrame(evals)
    if not ev.empty:
        ev = ev.pivot_table(index=["step", "epoch"], columns="metric", values="value").reset_index()
        ev.columns.name = None
    return ev, pd.DataFrame(losses)


def plot_training_curves(evals, losses, out_png: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    if not evals.empty:
        x = "epoch" if evals["epoch"].notna().all() else "step"
        for col in [c for c in evals.columns if "/" in c]:
            ax.plot(evals[x], evals[col], marker="o", ls="--" if col.startswith("forget") else "-", label=col)
        ax.set_xlabel(x)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("regurgitation / knowledge on a sample")
    ax.legend(fontsize=7)
    ax = axes[1]
    if not losses.empty and "step" in losses:
        for col in [c for c in losses.columns if "loss" in c]:
            ax.plot(losses["step"], losses[col], label=col)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    ax.set_title("training loss")
    fig.suptitle(title)
    fig.tight_layout()
    return _save_fig(fig, out_png)


# -- angles between parameter-change vectors ---------------------------------------------------
_LAYER = re.compile(r"layers\.(\d+)\.")


def _angle(u, v) -> float:
    import torch

    nu, nv = torch.linalg.vector_norm(u), torch.linalg.vector_norm(v)
    if nu == 0 or nv == 0:
        return float("nan")
    cos = torch.clamp(torch.dot(u, v) / (nu * nv), -1.0, 1.0)
    return math.degrees(math.acos(float(cos)))


def change_angles(start: dict, mid: dict, end: dict):
    """Angles (degrees) between Δ₁ = mid − start, Δ₂ = end − mid and Δ = end − start.

    Computed per layer (parameters named ``…layers.N…``) and over all parameters together; only
    parameters present in all three snapshots are used. 90° means the second phase moved the
    weights in a direction unrelated to the first.
    """
    import pandas as pd
    import torch

    keys = [k for k in start if k in mid and k in end and torch.is_floating_point(start[k])]
    if not keys:
        raise ValueError("the snapshots share no floating-point parameters")
    groups: dict[str, list[str]] = {}
    for k in keys:
        m = _LAYER.search(k)
        groups.setdefault(f"layer {int(m.group(1)):02d}" if m else "other", []).append(k)
    groups = dict(sorted(groups.items()))
    groups["overall"] = keys
    rows = []
    for name, ks in groups.items():
        s = torch.cat([start[k].float().flatten() for k in ks])
        m = torch.cat([mid[k].float().flatten() for k in ks])
        e = torch.cat([end[k].float().flatten() for k in ks])
        d1, d2, d = m - s, e - m, e - s
        rows.append({"group": name, "n_params": int(s.numel()),
                     "angle_start_mid__mid_end": _angle(d1, d2),
                     "angle_start_mid__start_end": _angle(d1, d),
                     "angle_mid_end__start_end": _angle(d2, d),
                     "norm_start_mid": float(torch.linalg.vector_norm(d1)),
                     "norm_mid_end": float(torch.linalg.vector_norm(d2))})
    return pd.DataFrame(rows)


def plot_angles(df, out_png: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["angle_start_mid__mid_end", "angle_start_mid__start_end", "angle_mid_end__start_end"]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(df)), 4))
    width = 0.27
    for i, col in enumerate(cols):
        ax.bar([x + i * width for x in range(len(df))], df[col], width, label=col.replace("__", " vs "))
    ax.set_xticks([x + width for x in range(len(df))])
    ax.set_xticklabels(df["group"], rotation=30, ha="right")
    ax.axhline(90, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("degrees")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_fig(fig, out_png)


def snapshot_steps(run_dir: str | Path) -> list[int]:
    folder = Path(run_dir) / "snapshots"
    steps = []
    for p in folder.glob("step_*.safetensors"):
        try:
            steps.append(int(p.stem.split("_", 1)[1]))
        except ValueError:
            continue
    return sorted(steps)


def load_snapshot(run_dir: str | Path, step: int) -> dict:
    from safetensors.torch import load_file

    path = Path(run_dir) / "snapshots" / f"step_{step}.safetensors"
    if not path.is_file():
        raise RecordError(path, f"no parameter snapshot for step {step}; available: {snapshot_steps(run_dir)}")
    return load_file(str(path))


def pick_mid(steps: Sequence[int], mid: int | None) -> tuple[int, int, int]:
    if len(steps) < 3:
        raise ValueError(f"need at least three parameter snapshots (start, intermediate, end); found steps {list(steps)}. "
                         "Train with snapshot steps configured (e.g. --set save_param_snapshots_at=[0,20,40]).")
    start, end = steps[0], steps[-1]
    if mid is None:
        mid = min(steps[1:-1], key=lambda s: abs(s - (start + end) / 2))
    if mid not in steps:
        raise ValueError(f"no snapshot at step {mid}; available: {list(steps)}")
    return start, mid, end
