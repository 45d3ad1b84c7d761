"""Plots of a board, as PNG, SVG and/or PDF (matplotlib's canvases directly: no pyplot, no global
backend switch, rcParams only inside a context).

- ``components``: the final score's components per entry (e.g. task aggregate, MIA score, MMLU),
  with 95% bootstrap intervals (or the seeds' standard deviation) as error bars.
- ``forget_retain``: forget score (mean of the six inverted forget terms, higher = more forgotten)
  against retain score (mean of the six retain terms); the ideal is the top right. Each point is
  labelled next to it where a place is free (no label overlaps another label, a point or the axes'
  edge); when some label finds no free place, the points are numbered and a key beside the plot
  names them.
- ``mia_auc``: the loss-attack MIA AUC per entry against the ideal 0.5.

Text from records and board files is data (:func:`leaderboards.text.plot_text`: one line, bounded
length, ``$`` escaped so mathtext never parses it; ``text.usetex`` is off). A plot that fails is
reported in the returned notes and never stops the other plots or the tables. A plot whose metrics
no entry has is not drawn; the notes say so too.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.core import fileio

from .build import PER_TASK_METRICS, Entry, Leaderboard
from .text import plot_text, visible

log = logging.getLogger("unlearnbench.leaderboard")

#: rcParams for every plot: no LaTeX (a user's matplotlibrc may switch it on), text as paths in SVG
#: (no user text in the XML), embedded TrueType in PDF (publishers reject Type 3 fonts), stable SVG ids.
RC = {"text.usetex": False, "svg.fonttype": "path", "pdf.fonttype": 42, "ps.fonttype": 42,
      "svg.hashsalt": "unlearnbench-leaderboard"}
METADATA = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
MARKERS = {"ranked": "o", "unranked": "s", "parent": "^", "excluded": "x"}
LABEL_CHARS = 48


def _text(value: object, limit: int = LABEL_CHARS) -> str:
    """User text for a plot: :func:`plot_text`, with ``$`` escaped (drawn as a dollar sign, never
    parsed as mathtext; matplotlib turns ``\\$`` back into ``$`` in plain text)."""
    return plot_text(value, limit).replace("$", r"\$")


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, fmt: str) -> Path:
    with fileio.atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=fmt, metadata=METADATA.get(fmt))
    return path


def _error(entry: Entry, metric: str) -> tuple[float, float]:
    value = entry.values.get(metric)
    if metric in entry.ci and value is not None:
        low, high = entry.ci[metric]
        return max(value - low, 0.0), max(high - value, 0.0)
    std = entry.stds.get(metric)
    return (std, std) if std is not None else (0.0, 0.0)


def _name(entry: Entry) -> str:
    suffix = {"excluded": " (excluded)", "parent": " (parent)"}.get(entry.status, "")
    return _text(entry.display_label, LABEL_CHARS - len(suffix)) + suffix


# -- overlap checks (used by the label placement and by the tests) -----------------------------------------------
def text_boxes(fig) -> list[tuple[str, object]]:
    """(text, window extent) of every non-empty text drawn when the figure is drawn (tick labels
    outside the view are not drawn and not listed)."""
    from matplotlib.text import Annotation, Text

    drawn: list = []
    original = Text.draw

    def recording_draw(self, renderer):
        drawn.append(self)
        return original(self, renderer)

    Text.draw = recording_draw
    try:
        fig.canvas.draw()
    finally:
        Text.draw = original
    renderer = fig.canvas.get_renderer()
    out = []
    for artist in drawn:
        if artist.get_visible() and artist.get_text().strip() and artist.get_alpha() != 0:
            if isinstance(artist, Annotation):
                artist.update_positions(renderer)
            # Text's own extent: for an annotation, the text without its leader line
            out.append((artist.get_text(), Text.get_window_extent(artist, renderer)))
    return out


def overlapping_texts(fig, pad: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of drawn texts of the figure whose boxes overlap, and texts reaching outside the figure
    (paired with ``"<figure edge>"``)."""
    boxes = text_boxes(fig)
    frame = fig.bbox
    out = []
    for i, (text_a, a) in enumerate(boxes):
        if a.x0 < frame.x0 - pad or a.y0 < frame.y0 - pad or a.x1 > frame.x1 + pad or a.y1 > frame.y1 + pad:
            out.append((text_a, "<figure edge>"))
        for text_b, b in boxes[i + 1:]:
            if a.x0 < b.x1 - pad and b.x0 < a.x1 - pad and a.y0 < b.y1 - pad and b.y0 < a.y1 - pad:
                out.append((text_a, text_b))
    return out


# -- components ------------------------------------------------------------------------------------
def components_figure(lb: Leaderboard):
    components = [m for m in (lb.board.components or ()) if any(e.values.get(m) is not None for e in lb.entries)]
    entries = lb.entries
    if not components or not entries:
        return None
    import numpy as np

    longest = max(len(_name(e)) for e in entries)
    fig = _new_figure(max(8.0, 5.5 + 0.075 * longest), 1.2 + 0.25 * len(entries) * max(2, len(components)))
    ax = fig.add_subplot()
    y = np.arange(len(entries))
    height = 0.8 / len(components)
    headers = {c.metric: c.header for c in lb.board.columns}
    for k, metric in enumerate(components):
        values = [e.values.get(metric) or 0.0 for e in entries]
        err = np.array([_error(e, metric) for e in entries]).T
        ax.barh(y + (k - (len(components) - 1) / 2) * height, values, height, xerr=err, capsize=2,
                label=_text(headers.get(metric, metric), 32))
    ax.set_yticks(y, [_name(e) for e in entries])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("score (higher is better)")
    fig.suptitle(f"{_text(lb.board.title, 60)}: components of {_text(lb.board.score, 32)}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


# -- forget vs retain ------------------------------------------------------------------------------------
def forget_retain_scores(entry: Entry) -> Optional[tuple[float, float]]:
    forget, retain = [], []
    for name in PER_TASK_METRICS:
        value = entry.values.get(name)
        if value is None:
            return None
        split = name.split("/")[0]
        (forget if split == "forget" else retain).append(1 - value if split == "forget" else value)
    return sum(forget) / len(forget), sum(retain) / len(retain)


def _candidates() -> list[tuple[float, float, str, str]]:
    """Label offsets in points (nearest first) with the alignment that keeps the text off the point."""
    out = []
    for radius in (5, 10, 16, 24, 34, 46, 60, 78, 100, 125):
        for angle in (30, -30, 150, -150, 90, -90, 0, 180, 60, -60, 120, -120, 15, -15, 165, -165, 45, -45, 135,
                      -135, 75, -75, 105, -105):
            dx, dy = radius * math.cos(math.radians(angle)), radius * math.sin(math.radians(angle))
            ha = "left" if dx > 1 else ("right" if dx < -1 else "center")
            va = "bottom" if dy > 1 else ("top" if dy < -1 else "center")
            out.append((dx, dy, ha, va))
    return out


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two (x0, y0, x1, y1) boxes overlap."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_labels(fig, ax, points: Sequence[tuple[float, float]], texts: Sequence[str], fontsize: float) -> bool:
    """Annotate each point with its text at the nearest free place; False (and nothing drawn) when a
    text finds none.

    Each text is measured once; a candidate place is its box shifted by the offset and aligned as
    the candidate says (arithmetic, no re-layout per candidate), padded so that the drawn text keeps
    clear of its neighbours."""
    from matplotlib.text import Text

    fig.canvas.draw()  # settle the layout; labels are kept out of it (set_in_layout(False))
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    fx0, fy0, fx1, fy1 = frame.x0, frame.y0, frame.x1, frame.y1
    pixels_per_point = fig.dpi / 72
    half = 4 * pixels_per_point
    pad = 2 * pixels_per_point
    taken = [(px - half, py - half, px + half, py + half) for px, py in (ax.transData.transform(p) for p in points)]
    chosen = []
    for point, text in zip(points, texts):
        probe = ax.text(0, 0, text, fontsize=fontsize, ha="left", va="bottom")
        extent = Text.get_window_extent(probe, renderer)
        probe.remove()
        width, height = extent.width, extent.height
        px, py = ax.transData.transform(point)
        for dx, dy, ha, va in _candidates():
            x0 = px + dx * pixels_per_point - {"left": 0, "center": width / 2, "right": width}[ha]
            y0 = py + dy * pixels_per_point - {"bottom": 0, "center": height / 2, "top": height}[va]
            box = (x0 - pad, y0 - pad, x0 + width + pad, y0 + height + pad)
            inside = fx0 <= box[0] and box[2] <= fx1 and fy0 <= box[1] and box[3] <= fy1
            if inside and not any(_overlaps(box, other) for other in taken):
                taken.append(box)
                chosen.append((point, text, dx, dy, ha, va))
                break
        else:
            return False
    for point, text, dx, dy, ha, va in chosen:
        # A thin leader line joins a label to its point (hidden under the text when it sits close by).
        ax.annotate(text, point, textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, fontsize=fontsize,
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.55", "shrinkA": 1, "shrinkB": 3}
                    ).set_in_layout(False)
    return True


def _forget_retain_axes(points: Sequence[tuple[Entry, tuple[float, float]]], width: float, height: float):
    fig = _new_figure(width, height)
    ax = fig.add_subplot()
    for entry, (fx, ry) in points:
        ax.scatter([fx], [ry], marker=MARKERS.get(entry.status, "o"), zorder=3)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("forget score = mean(1 - forget terms)   (higher = more forgotten)", fontsize=9)
    ax.set_ylabel("retain score = mean(retain terms)   (higher = more kept)", fontsize=9)
    fig.suptitle("Forget vs retain (ideal: top right; o ranked, s listed, ^ parent, x excluded)", fontsize=9)
    ax.grid(alpha=0.3)
    return fig, ax


def forget_retain_figure(lb: Leaderboard):
    points = [(e, forget_retain_scores(e)) for e in lb.entries]
    points = [(e, p) for e, p in points if p is not None]
    if not points:
        return None
    # Entries at the same place (within half a percent) share one label.
    groups: list[tuple[tuple[float, float], list[Entry]]] = []
    for entry, (fx, ry) in points:
        for (gx, gy), members in groups:
            if abs(gx - fx) < 0.005 and abs(gy - ry) < 0.005:
                members.append(entry)
                break
        else:
            groups.append(((fx, ry), [entry]))
    where = [xy for xy, _ in groups]

    fig, ax = _forget_retain_axes(points, 7.5, 5.6)
    if _place_labels(fig, ax, where, [", ".join(_name(e) for e in members) for _, members in groups], fontsize=7):
        return fig
    # Too crowded for names: number the places and name them in a key beside the plot.
    keys = [f"{i}  {_name(e)}" for i, (e, _) in enumerate(points, 1)]
    fig, ax = _forget_retain_axes(points, 6.5 + 0.06 * max(len(k) for k in keys), max(5.6, 1.2 + 0.15 * len(keys)))
    number_of = {id(e): i for i, (e, _) in enumerate(points, 1)}
    numbers = [", ".join(str(number_of[id(e)]) for e in members) for _, members in groups]
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="none", marker=MARKERS.get(e.status, "o"), color="0.3") for e, _ in points]
    fig.legend(handles, keys, loc="outside right upper", fontsize=7, title="key", title_fontsize=7, frameon=False)
    if not _place_labels(fig, ax, where, numbers, fontsize=7):
        log.warning("forget_retain: some point numbers overlap (too many entries at one place)")
        for xy, number in zip(where, numbers):
            ax.annotate(number, xy, textcoords="offset points", xytext=(4, 3), fontsize=7).set_in_layout(False)
    return fig


# -- MIA AUC -----------------------------------------------------------------------------------------
def mia_auc_figure(lb: Leaderboard):
    entries = [e for e in lb.entries if e.values.get("mia_auc") is not None]
    if not entries:
        return None
    import numpy as np

    longest = max(len(_name(e)) for e in entries)
    fig = _new_figure(max(7.5, 5 + 0.075 * longest), 1.6 + 0.32 * len(entries))
    ax = fig.add_subplot()
    y = np.arange(len(entries))
    err = np.array([_error(e, "mia_auc") for e in entries]).T
    ax.errorbar([e.values["mia_auc"] for e in entries], y, xerr=err, fmt="o", capsize=3)
    ax.axvline(0.5, color="green", linestyle="--")
    ax.set_yticks(y, [_name(e) for e in entries])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("MIA AUC (loss attack): > 0.5 under-unlearned, < 0.5 over-unlearned", fontsize=9)
    fig.suptitle("MIA AUC (bars: 95% bootstrap interval, else the seeds' std); dashed: the ideal 0.5", fontsize=9)
    return fig


#: (file stem, figure builder, what it needs): the plots, in the order they are written.
PLOTS: tuple[tuple[str, Callable, str], ...] = (
    ("components", components_figure, "the board's components"),
    ("forget_retain", forget_retain_figure, "the twelve per-task metrics"),
    ("mia_auc", mia_auc_figure, "mia_auc"),
)


def write_plots(lb: Leaderboard, out_dir: Path, formats: Sequence[str] = ("png",)) -> tuple[list[Path], list[str]]:
    """Write every plot that can be drawn in each of ``formats``; return (files, notes about the ones
    not drawn — no data, or an error, which never stops the rest)."""
    import warnings

    import matplotlib

    out_dir = Path(out_dir)
    written, notes = [], []
    for stem, build, need in PLOTS:
        try:
            with matplotlib.rc_context(RC), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
                fig = build(lb)
                if fig is None:
                    notes.append(f"{stem} plot not drawn: no entry has {need}")
                    continue
                # Lay the figure out once, then freeze it: every format shows the same layout, whichever
                # formats are written and in whatever order.
                fig.canvas.draw()
                fig.set_layout_engine("none")
                for fmt in formats:
                    written.append(_save(fig, out_dir / f"{stem}.{fmt}", fmt))
        except Exception as exc:  # a plot must never cost the tables: report it and go on
            log.warning("plot %s failed: %s: %s", stem, type(exc).__name__, exc)
            notes.append(f"{stem} plot not drawn: {type(exc).__name__}: {visible(exc)}")
    return written, notes
