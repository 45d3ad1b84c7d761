"""PNG plots of a board (matplotlib's Agg canvas directly: no pyplot, no global backend switch).

- ``components.png``: the final score's components per entry (e.g. task aggregate, MIA score, MMLU),
  with 95% bootstrap intervals (or the seeds' standard deviation) as error bars.
- ``forget_retain.png``: forget score (mean of the six inverted forget terms, higher = more
  forgotten) against retain score (mean of the six retain terms); the ideal is the top right.
- ``mia_auc.png``: the loss-attack MIA AUC per entry against the ideal 0.5.

A plot whose metrics no entry has is not drawn; the returned notes say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness.core import fileio

from .build import PER_TASK_METRICS, Entry, Leaderboard



def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with fileio.atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", metadata={"Software": None})
    return path


def _error(entry: Entry, metric: str) -> tuple[float, float]:
    value = entry.values.get(metric)
    if metric in entry.ci and value is not None:
        low, high = entry.ci[metric]
        return max(value - low, 0.0), max(high - value, 0.0)
    std = entry.stds.get(metric)
    return (std, std) if std is not None else (0.0, 0.0)


def _name(entry: Entry) -> str:
    return entry.display_label + (" (excluded)" if entry.status == "excluded" else "")


def plot_components(lb: Leaderboard, path: Path) -> Optional[Path]:
    components = [m for m in (lb.board.components or ()) if any(e.values.get(m) is not None for e in lb.entries)]
    entries = lb.entries
    if not components or not entries:
        return None
    import numpy as np

    fig = _new_figure(8, 1.0 + 0.45 * len(entries) * max(1, len(components)) / 2)
    ax = fig.add_subplot()
    y = np.arange(len(entries))
    height = 0.8 / len(components)
    headers = {c.metric: c.header for c in lb.board.columns}
    for k, metric in enumerate(components):
        values = [e.values.get(metric) or 0.0 for e in entries]
        err = np.array([_error(e, metric) for e in entries]).T
        ax.barh(y + (k - (len(components) - 1) / 2) * height, values, height, xerr=err, capsize=2,
                label=headers.get(metric, metric))
    ax.set_yticks(y, [_name(e) for e in entries])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("score (higher is better)")
    ax.set_title(f"{lb.board.title}: components of {lb.board.score}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, path)


def forget_retain_scores(entry: Entry) -> Optional[tuple[float, float]]:
    forget, retain = [], []
    for name in PER_TASK_METRICS:
        value = entry.values.get(name)
        if value is None:
            return None
        split = name.split("/")[0]
        (forget if split == "forget" else retain).append(1 - value if split == "forget" else value)
    return sum(forget) / len(forget), sum(retain) / len(retain)


def plot_forget_retain(lb: Leaderboard, path: Path) -> Optional[Path]:
    points = [(e, forget_retain_scores(e)) for e in lb.entries]
    points = [(e, p) for e, p in points if p is not None]
    if not points:
        return None
    fig = _new_figure(6.5, 5)
    ax = fig.add_subplot()
    for entry, (fx, ry) in points:
        marker = "x" if entry.status == "excluded" else ("s" if entry.status == "unranked" else "o")
        ax.scatter([fx], [ry], marker=marker)
        ax.annotate(_name(entry), (fx, ry), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("forget score: mean of (1 - forget regurgitation/knowledge)  (higher = forgotten)")
    ax.set_ylabel("retain score: mean retain regurgitation/knowledge (higher = kept)")
    ax.set_title("Forget vs retain (ideal: top right)", fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_mia_auc(lb: Leaderboard, path: Path) -> Optional[Path]:
    entries = [e for e in lb.entries if e.values.get("mia_auc") is not None]
    if not entries:
        return None
    import numpy as np

    fig = _new_figure(7, 1.5 + 0.35 * len(entries))
    ax = fig.add_subplot()
    y = np.arange(len(entries))
    err = np.array([_error(e, "mia_auc") for e in entries]).T
    ax.errorbar([e.values["mia_auc"] for e in entries], y, xerr=err, fmt="o", capsize=3)
    ax.axvline(0.5, color="green", linestyle="--")
    ax.set_yticks(y, [_name(e) for e in entries])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("MIA AUC (loss attack): > 0.5 under-unlearned, < 0.5 over-unlearned")
    ax.set_title("MIA AUC (bars: 95% bootstrap interval, else the seeds' std); dashed: the ideal 0.5", fontsize=9)
    return _save(fig, path)


def write_plots(lb: Leaderboard, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Write the three PNGs that can be drawn; return (files, notes about the ones that cannot)."""
    out_dir = Path(out_dir)
    written, notes = [], []
    for name, func, need in (("components.png", plot_components, "the board's components"),
                             ("forget_retain.png", plot_forget_retain, "the twelve per-task metrics"),
                             ("mia_auc.png", plot_mia_auc, "mia_auc")):
        path = func(lb, out_dir / name)
        if path is None:
            notes.append(f"{name} not drawn: no entry has {need}")
        else:
            written.append(path)
    return written, notes
