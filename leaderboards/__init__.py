"""Leaderboards built from result records only (never by loading models; torch is never imported).

    from leaderboards import build_leaderboards, write_outputs
    for slug, board in build_leaderboards(["runs/"], "world", bootstrap=1000, seed=0):
        write_outputs(board, "leaderboard/", formats=("csv", "md", "html", "tex", "png"))

or ``unlearnbench leaderboard runs/ --board semeval2025 --out leaderboard/``.

What happens, in order:

1. Every ``result.json`` under the given folders is read whole and checked before anything is
   ranked (:mod:`leaderboards.collect`): readable and of this schema; every metric the board needs
   present; every metric finite and inside its declared range; derived metrics equal to their
   formula; and the run folder's files belong together (``config.json`` describes the same run, the
   per-sample files have the record's row counts and give back its metrics; the run manifest check
   plugs in there). A record that fails is *refused*: listed with its file and one line of reason
   in every output, never half-read, never silently dropped.
2. Records that differ in benchmark content hash, in the protocol of an MCQ score the board uses
   (MMLU / utility: protocol, shots, full or limited, prompt format) or in schema version are never
   ranked together: the build stops and lists the groups and their files, unless
   ``split_by_benchmark`` asks for one board per group.
3. Runs of one method and parameters are grouped; one seed counts once (copies of one run are
   collapsed with a note, a second, different run claiming a seed is refused); runs that are parents
   of other collected runs (ZJUKLAB's ``parents/over|under``, ``merge`` inputs;
   :mod:`leaderboards.lineage`) are listed in a *parents* section, not ranked, unless
   ``rank_parents``; the floor is applied and the rest ranked (:mod:`leaderboards.build`).
4. Optionally, bootstrap 95% intervals and rank stability from the verified per-sample rows
   (:mod:`leaderboards.bootstrap`).
5. CSV, Markdown, a self-contained HTML page, a booktabs LaTeX table, and plots as PNG, SVG and/or
   PDF (:mod:`leaderboards.render`, :mod:`leaderboards.plots`), each file written atomically; with
   ``columns="terms"`` the twelve SemEval per-task terms are columns too. Every text from a record or
   a board file is escaped for its format (:mod:`leaderboards.text`): no markup, link, image, formula
   or LaTeX command from data; a plot that fails costs a note, never the tables.

Board file format
-----------------
A board is one TOML file. Built-in boards live in ``leaderboards/boards/`` (``semeval2025``,
``semeval2025-1b``, ``world``); a user adds one by passing its path (``--board my.toml``) or by
putting ``NAME.toml`` in a folder listed in ``$UNLEARNBENCH_BOARDS`` (``os.pathsep``-separated;
such a file shadows a built-in board of the same name). Keys::

    name = "semeval2025"            # required; equals the file's stem for boards found by name
    title = "..."                   # heading of the outputs
    description = "..."             # one paragraph under the heading
    score = "final_score"           # required: the ranking metric (must be a column, direction max);
                                    # ranked descending
    rank_decimals = 4               # scores equal after rounding to this many decimals share a rank
    decimals = 4                    # rounding of every number in every output
    tie_rule = "competition"        # "competition": 1, 2, 2, 4 (default); "dense": 1, 2, 2, 3
    unranked_labels = ["baseline:*"]  # fnmatch patterns of labels listed without a rank
    required = []                   # further metrics a record must have (score and floor metric always)
    components = ["task_aggregate", "mia_score", "mmlu"]  # what the components plot shows
    complete_benchmark = true       # refuse runs evaluated with `evaluate --limit N` (default false)

    [floor]                         # optional; entries below it go to the "excluded" section
    metric = "mmlu"
    kind = "absolute"               # value is the threshold itself, or
    value = 0.371                   # kind = "relative": value is a fraction (0, 1] of the reference
                                    # entry's own metric (e.g. 0.75 x the target model's utility)

    [reference]                     # the reference entry: the un-unlearned target model
    method = "none"                 # records whose method.name is this (default "none") ...
    label = "target"                # ... and, if given, whose label is this
                                    # It is listed without a rank; a relative floor needs exactly one.

    [[columns]]                     # one table per column, in display order (at least the score)
    metric = "mia_auc"              # a name of result.json["metrics"]
    header = "MIA AUC"              # column heading (default: the metric name)
    direction = "target"            # "max" | "min" | "target"; omitted: the direction declared by
    target = 0.5                    # the metrics package (metrics.metric_spec); target with "target"

The ``semeval2025`` board uses ``rank_decimals = 4`` because that is what the published 7B board
needs: the organisers printed 4 decimals exactly where 3 would have merged different entries (0.3082
vs 0.3080), two teams share rank 11 at 0.165 and the next, at 0.1649, is 13th.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .board import (BOARDS_ENV, TERM_COLUMNS, Board, BoardError, Column, Floor, Reference, available_boards, get_board,
                    load_board_file, with_terms)
from .build import (COLUMN_SETS, BuildOptions, Entry, Leaderboard, LeaderboardError, build_board, display_path,
                    rank_scores)
from .collect import collect, compatibility_key, describe_key, key_slug, partition
from .lineage import find_lineage
from .render import to_csv, to_html, to_latex, to_markdown

#: Every output format; ``png``/``svg``/``pdf`` are the plots in that format.
FORMATS = ("csv", "md", "html", "tex", "png", "svg", "pdf")
DEFAULT_FORMATS = ("csv", "md", "html", "tex", "png")
PLOT_FORMATS = ("png", "svg", "pdf")
TABLE_FILES = {"csv": to_csv, "md": to_markdown, "html": to_html, "tex": to_latex}

log = logging.getLogger("unlearnbench.leaderboard")

__all__ = [
    "BOARDS_ENV", "Board", "BoardError", "BuildOptions", "COLUMN_SETS", "Column", "DEFAULT_FORMATS", "Entry", "FORMATS",
    "Floor", "Leaderboard", "LeaderboardError", "Reference", "TERM_COLUMNS", "available_boards", "build_board",
    "build_leaderboards", "get_board", "load_board_file", "rank_scores", "to_csv", "to_html", "to_latex",
    "to_markdown", "with_terms", "write_outputs",
]


def build_leaderboards(folders: Sequence[str | Path], board: str | Path | Board = "semeval2025",
                       options: Optional[BuildOptions] = None, **settings) -> list[tuple[Optional[str], Leaderboard]]:
    """Read the records under ``folders`` and build the board.

    ``options`` (:class:`BuildOptions`), or its fields as keywords (``bootstrap=0``,
    ``rank_parents=True``, ``columns="terms"``…). Returns ``[(None, board)]``, or with
    ``split_by_benchmark`` one ``(slug, board)`` per group of compatible records (the slug names the
    benchmark and MCQ protocol, for a sub-folder). Raises :class:`LeaderboardError` when no record is
    usable or when incompatible records would otherwise be ranked together (the message lists the
    groups and their files). Refused records are listed in each board's ``skipped``.
    """
    try:
        options = dataclasses.replace(options or BuildOptions(), **settings)
    except TypeError as exc:
        raise LeaderboardError(f"unknown leaderboard option: {exc}") from None
    board = board if isinstance(board, Board) else get_board(board)
    if options.columns == "terms":
        board = with_terms(board)
    roots = [Path(f) for f in folders]
    found = collect(folders, board)
    skipped = [(display_path(s.path, roots), s.reason) for s in found.skipped]
    if not found.records:
        detail = "".join(f"\n  {path}: {reason}" for path, reason in skipped)
        raise LeaderboardError(f"no usable result record under {', '.join(map(str, folders))} for board "
                               f"{board.name!r}" + (f"; skipped:{detail}" if detail else " (no result.json found)"))
    lineage = find_lineage(found.records, refused=[s.path for s in found.skipped])
    groups = partition(found.records, board)
    if len(groups) > 1 and not options.split_by_benchmark:
        lines = []
        for i, (key, recs) in enumerate(groups.items(), 1):
            files = ", ".join(display_path(r.path, roots) for r in recs[:6]) + (" …" if len(recs) > 6 else "")
            lines.append(f"  group {i}: {describe_key(key, recs[0].result)} — {len(recs)} record(s): {files}")
        raise LeaderboardError(
            f"these records cannot be ranked together: they differ in benchmark content, MCQ protocol or "
            f"schema version, and their scores are not comparable:\n" + "\n".join(lines)
            + "\nPass only the folders of one group, or --split-by-benchmark for one board per group.")
    out = []
    for key, recs in groups.items():
        lb = build_board(recs, board, rank_parents=options.rank_parents, lineage=lineage, roots=roots)
        lb.skipped = list(skipped) + lb.skipped
        if options.bootstrap > 0:
            from .bootstrap import add_intervals

            add_intervals(lb, options.bootstrap, seed=options.seed, progress=options.progress)
        slug = key_slug(key, recs[0].result) if options.split_by_benchmark else None
        out.append((slug, lb))
    return out


def write_outputs(lb: Leaderboard, out_dir: str | Path, formats: Iterable[str] = DEFAULT_FORMATS) -> list[Path]:
    """Write ``leaderboard.csv`` / ``.md`` / ``.html`` / ``.tex`` and the plots (``png``, ``svg``, ``pdf``)
    into ``out_dir``, each file atomically.

    A plot that cannot be drawn never costs the tables: its failure becomes a note in them (and a
    warning in the log), and the other files are written.
    """
    from harness.core import fileio

    formats = list(dict.fromkeys(formats))
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise LeaderboardError(f"unknown output format(s) {unknown}; choose from {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    written: list[Path] = []
    plot_formats = [f for f in PLOT_FORMATS if f in formats]
    if plot_formats:  # first: their notes belong in the tables
        from .plots import write_plots

        files, notes = write_plots(lb, out_dir, plot_formats)
        written += files
        lb.notes.extend(n for n in notes if n not in lb.notes)
    for fmt, render in TABLE_FILES.items():
        if fmt in formats:
            written.append(fileio.write_text(out_dir / f"leaderboard.{fmt}", render(lb)))
    return written
