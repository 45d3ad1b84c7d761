"""CSV, Markdown and self-contained HTML renderings of a :class:`leaderboards.build.Leaderboard`.

Every number is rounded to the board's ``decimals`` with the same formatter everywhere, so the CSV,
the Markdown and the HTML show the same digits. Outputs are deterministic (no timestamps, no
absolute paths): the golden-file tests compare them byte for byte.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path
from string import Template
from typing import Optional, Sequence

from .board import Column
from .build import Entry, Leaderboard, display_path

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATUS_TEXT = {"ranked": "ranked", "unranked": "listed, not ranked", "excluded": "excluded"}


def fmt(value: Optional[float], decimals: int) -> str:
    if value is None:
        return ""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0000"


def direction_mark(col: Column) -> str:
    if col.direction == "max":
        return "↑"
    if col.direction == "min":
        return "↓"
    return f"→{col.target:g}"


def csv_columns(lb: Leaderboard) -> list[str]:
    """The CSV header: fixed for a given board and whether a bootstrap ran."""
    cols = ["rank", "label", "method", "params", "n_seeds", "seeds"]
    with_ci = lb.bootstrap > 0
    for col in lb.board.columns:
        cols += [col.metric, f"{col.metric}_std"]
        if with_ci:
            cols += [f"{col.metric}_ci95_low", f"{col.metric}_ci95_high"]
    if with_ci:
        cols.append("rank_stability")
    cols += ["status", "excluded", "reason", "run_ids"]
    return cols


def _row(entry: Entry, lb: Leaderboard) -> dict[str, str]:
    d = lb.board.decimals
    row = {
        "rank": "" if entry.rank is None else str(entry.rank),
        "label": entry.display_label,
        "method": entry.method,
        "params": json.dumps(entry.params, sort_keys=True, separators=(",", ":"), default=str),
        "n_seeds": str(entry.n_seeds),
        "seeds": ";".join("" if s is None else str(s) for s in entry.seeds),
        "rank_stability": fmt(entry.rank_stability, d),
        "status": entry.status,
        "excluded": "true" if entry.status == "excluded" else "false",
        "reason": entry.reason,
        "run_ids": ";".join(r.result.run_id for r in entry.runs),
    }
    for col in lb.board.columns:
        row[col.metric] = fmt(entry.values.get(col.metric), d)
        row[f"{col.metric}_std"] = fmt(entry.stds.get(col.metric), d)
        low, high = entry.ci.get(col.metric, (None, None))
        row[f"{col.metric}_ci95_low"] = fmt(low, d)
        row[f"{col.metric}_ci95_high"] = fmt(high, d)
    return row


def to_csv(lb: Leaderboard) -> str:
    """One row per entry: ranked, then listed-not-ranked, then excluded (``excluded`` = true)."""
    buf = io.StringIO()
    columns = csv_columns(lb)
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for entry in lb.entries:
        writer.writerow(_row(entry, lb))
    return buf.getvalue()


def _cell(entry: Entry, metric: str, d: int, with_ci: bool = True) -> str:
    value = entry.values.get(metric)
    if value is None:
        return ""
    text = fmt(value, d)
    std = entry.stds.get(metric)
    if std is not None:
        text += f" ± {fmt(std, d)}"
    if with_ci and metric in entry.ci:
        low, high = entry.ci[metric]
        text += f" [{fmt(low, d)}, {fmt(high, d)}]"
    return text


def board_summary(lb: Leaderboard) -> str:
    board = lb.board
    parts = [f"ranked by `{board.score}` (higher is better; scores equal to {board.rank_decimals} decimals "
             f"share a rank, {board.tie_rule} ranking)"]
    if board.floor is None:
        parts.append("no floor")
    else:
        floor = f"floor: {board.floor.describe()}"
        if lb.floor_threshold is not None and board.floor.kind == "relative":
            floor += f" = {fmt(lb.floor_threshold, board.decimals)}"
        parts.append(floor)
    parts.append("mean ± standard deviation over seeds" + (", [95% bootstrap interval]" if lb.bootstrap else ""))
    return "; ".join(parts)


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(lb: Leaderboard, entries: Sequence[Entry], excluded: bool) -> list[str]:
    board, d = lb.board, lb.board.decimals
    head = ([] if excluded else ["Rank"]) + ["Entry", "Method", "Seeds"]
    head += [f"{c.header} {direction_mark(c)}" for c in board.columns]
    show_stability = lb.bootstrap > 0 and not excluded
    if show_stability:
        head.append("Rank stability")
    head.append("Reason" if excluded else "Note")
    align = ([] if excluded else ["---:"]) + ["---", "---", "---:"] + ["---:"] * len(board.columns)
    align += (["---:"] if show_stability else []) + ["---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for e in entries:
        cells = ([] if excluded else ["—" if e.rank is None else str(e.rank)])
        cells += [_md_escape(e.display_label), _md_escape(e.method), str(e.n_seeds)]
        cells += [_cell(e, c.metric, d) for c in board.columns]
        if show_stability:
            cells.append(fmt(e.rank_stability, d))
        cells.append(_md_escape(e.reason if excluded or e.status != "ranked" else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(lb: Leaderboard) -> str:
    board = lb.board
    out = [f"# {board.title}", ""]
    if board.description:
        out += [board.description, ""]
    out += [f"Board `{board.name}`: {board_summary(lb)}.", ""]
    if lb.ranked:
        out += _md_table(lb, lb.ranked, excluded=False)
    else:
        out.append("No entry passes the floor.")
    if lb.excluded:
        out += ["", f"## Excluded by the floor ({board.floor.describe() if board.floor else ''})", ""]
        out += _md_table(lb, lb.excluded, excluded=True)
    if lb.skipped:
        out += ["", "## Skipped records", ""]
        out += [f"- `{path}`: {_md_escape(reason)}" for path, reason in lb.skipped]
    if lb.notes:
        out += ["", "## Notes", ""]
        out += [f"- {note}" for note in lb.notes]
    return "\n".join(out) + "\n"


# -- HTML -----------------------------------------------------------------------------------------
def _html_table(lb: Leaderboard, entries: Sequence[Entry], table_id: str, excluded: bool) -> str:
    board, d = lb.board, lb.board.decimals
    esc = html.escape
    ths = []
    if not excluded:
        ths.append('<th data-type="num" data-dir="min">Rank</th>')
    ths += ['<th data-type="text">Entry</th>', '<th data-type="text">Method</th>',
            '<th data-type="num" data-dir="max">Seeds</th>']
    for c in board.columns:
        target = f' data-target="{c.target!r}"' if c.direction == "target" else ""
        ths.append(f'<th data-type="num" data-dir="{c.direction}"{target} data-metric="{esc(c.metric)}" '
                   f'title="{esc(c.metric)}">{esc(c.header)} <span class="dir">{esc(direction_mark(c))}</span></th>')
    show_stability = lb.bootstrap > 0 and not excluded
    if show_stability:
        ths.append('<th data-type="num" data-dir="max" title="fraction of bootstrap replicates keeping the rank">'
                   'Rank stability</th>')
    ths.append(f'<th data-type="text">{"Reason" if excluded else "Note"}</th>')
    rows = []
    for e in entries:
        tds = []
        if not excluded:
            rank = "" if e.rank is None else str(e.rank)
            tds.append(f'<td data-value="{rank}">{rank or "—"}</td>')
        badge = ' <span class="badge">excluded</span>' if excluded else ""
        tds += [f'<td data-value="{esc(e.display_label)}">{esc(e.display_label)}{badge}</td>',
                f'<td data-value="{esc(e.method)}">{esc(e.method)}</td>',
                f'<td data-value="{e.n_seeds}">{e.n_seeds}</td>']
        for c in board.columns:
            value = e.values.get(c.metric)
            raw = "" if value is None else repr(float(value))
            text = esc(_cell(e, c.metric, d, with_ci=False))
            if c.metric in e.ci:
                low, high = e.ci[c.metric]
                text += f' <span class="ci">[{fmt(low, d)}, {fmt(high, d)}]</span>'
            tds.append(f'<td data-value="{raw}">{text}</td>')
        if show_stability:
            raw = "" if e.rank_stability is None else repr(e.rank_stability)
            tds.append(f'<td data-value="{raw}">{fmt(e.rank_stability, d)}</td>')
        note = e.reason if excluded or e.status != "ranked" else ""
        tds.append(f'<td data-value="{esc(note)}">{esc(note)}</td>')
        rows.append(f'<tr class="{e.status}" data-label="{esc(e.display_label)}">' + "".join(tds) + "</tr>")
    return (f'<table id="{table_id}" class="board{" excluded" if excluded else ""}">\n<thead><tr>'
            + "".join(ths) + "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>")


def to_html(lb: Leaderboard) -> str:
    """A single self-contained page: inline CSS and JS, no external resources."""
    board = lb.board
    esc = html.escape
    parts = [f"<h1>{esc(board.title)}</h1>"]
    if board.description:
        parts.append(f"<p>{esc(board.description)}</p>")
    summary = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(board_summary(lb)))
    parts.append(f'<p class="summary">Board <code>{esc(board.name)}</code>: {summary}. '
                 "Click a column header to sort (best first; click again to reverse).</p>")
    parts.append(_html_table(lb, lb.ranked, "ranked", excluded=False) if lb.ranked
                 else "<p>No entry passes the floor.</p>")
    if lb.excluded:
        parts.append(f"<h2>Excluded by the floor ({esc(board.floor.describe() if board.floor else '')})</h2>")
        parts.append(_html_table(lb, lb.excluded, "excluded", excluded=True))
    if lb.skipped:
        parts.append("<h2>Skipped records</h2>\n<ul>" + "".join(
            f"<li><code>{esc(path)}</code>: {esc(reason)}</li>" for path, reason in lb.skipped) + "</ul>")
    if lb.notes:
        parts.append("<h2>Notes</h2>\n<ul>" + "".join(f"<li>{esc(n)}</li>" for n in lb.notes) + "</ul>")
    template = Template((TEMPLATES / "board.html").read_text(encoding="utf-8"))
    return template.substitute(title=esc(board.title), body="\n".join(parts))


def skipped_for_display(skipped, roots: Sequence[Path]) -> list[tuple[str, str]]:
    return [(display_path(s.path, roots), s.reason) for s in skipped]
