"""CSV, Markdown, self-contained HTML and LaTeX renderings of a :class:`leaderboards.build.Leaderboard`.

Every number is rounded to the board's ``decimals`` with the same formatter everywhere, so all
outputs show the same digits. Outputs are deterministic (no timestamps, no absolute paths): the
golden-file tests compare them byte for byte.

Every text that comes from a record, a board file or a file name (labels, method names,
parameters, reasons, notes, paths, headers, titles) goes through the escaping function of its
format (:mod:`leaderboards.text`): no raw HTML, links or images in Markdown, no markup in HTML, no
formula in a spreadsheet, no LaTeX command. The HTML page is assembled by string concatenation
into fixed slots of ``templates/board.html``; no template engine ever sees user text.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

from .board import Column
from .build import Entry, Leaderboard
from .text import csv_cell, html_text, latex_text, md_code, md_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
PARENTS_HEADING = "Parents (listed, not ranked)"
PARENTS_TEXT = ("Runs that are parents of other runs on this board (a ZJUKLAB system's over- and under-forgetting "
                "models, the inputs of a merge): shown beside the system they belong to, not ranked as entries "
                "of their own (`--rank-parents` ranks them).")


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


def entry_note(entry: Entry) -> str:
    """The note of an entry: the reason it is not ranked, or for a ranked parent whose parent it is."""
    if entry.status == "ranked":
        return f"parent of {', '.join(entry.parent_of)}" if entry.parent_of else ""
    return entry.reason


# -- CSV ------------------------------------------------------------------------------------------
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
        "label": csv_cell(entry.display_label),
        "method": csv_cell(entry.method),
        "params": csv_cell(json.dumps(entry.params, sort_keys=True, separators=(",", ":"), default=str)),
        "n_seeds": str(entry.n_seeds),
        "seeds": csv_cell(";".join("" if s is None else str(s) for s in entry.seeds)),
        "rank_stability": fmt(entry.rank_stability, d),
        "status": entry.status,
        "excluded": "true" if entry.status == "excluded" else "false",
        "reason": csv_cell(entry_note(entry)),
        "run_ids": csv_cell(";".join(r.result.run_id for r in entry.runs)),
    }
    for col in lb.board.columns:
        row[col.metric] = fmt(entry.values.get(col.metric), d)
        row[f"{col.metric}_std"] = fmt(entry.stds.get(col.metric), d)
        low, high = entry.ci.get(col.metric, (None, None))
        row[f"{col.metric}_ci95_low"] = fmt(low, d)
        row[f"{col.metric}_ci95_high"] = fmt(high, d)
    return row


def to_csv(lb: Leaderboard) -> str:
    """One row per entry: ranked, listed-not-ranked, parents, excluded (``excluded`` = true).

    Text cells that a spreadsheet would run as a formula are neutralised (:func:`csv_cell`); the
    numbers stay numbers."""
    buf = io.StringIO()
    columns = csv_columns(lb)
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in columns])
    for entry in lb.entries:
        row = _row(entry, lb)
        writer.writerow([row.get(c, "") for c in columns])
    return buf.getvalue()


# -- shared text ------------------------------------------------------------------------------------
def _cell(entry: Entry, metric: str, d: int, *, value: str = "{}", std: str = " ± {}", ci: str = " [{}, {}]",
          missing: str = "") -> str:
    """An entry's number for ``metric`` with its seeds' standard deviation and bootstrap interval,
    each through its format string (one per output format)."""
    mean = entry.values.get(metric)
    if mean is None:
        return missing
    text = value.format(fmt(mean, d))
    sd = entry.stds.get(metric)
    if sd is not None:
        text += std.format(fmt(sd, d))
    if metric in entry.ci:
        low, high = entry.ci[metric]
        text += ci.format(fmt(low, d), fmt(high, d))
    return text


def board_summary(lb: Leaderboard, code: Callable[[str], str] = lambda s: f"`{s}`",
                  name: Callable[[str], str] = str, text: Callable[[str], str] = str) -> str:
    """How the board ranks, in words. For an output's escaping, ``code`` formats the score's name,
    ``name`` other metric names and ``text`` the words around them."""
    board = lb.board
    parts = [text("ranked by ") + code(board.score)
             + text(f" (higher is better; scores equal to {board.rank_decimals} decimals share a rank, "
                    f"{board.tie_rule} ranking)")]
    if board.floor is None:
        parts.append(text("no floor"))
    else:
        floor = text("floor: ") + board.floor.describe(name, text)
        if lb.floor_threshold is not None and board.floor.kind == "relative":
            floor += text(f" = {fmt(lb.floor_threshold, board.decimals)}")
        parts.append(floor)
    parts.append(text("mean ± standard deviation over seeds" + (", [95% bootstrap interval]" if lb.bootstrap else "")))
    return text("; ").join(parts)


# -- Markdown ---------------------------------------------------------------------------------------
def _md_table(lb: Leaderboard, entries: Sequence[Entry], section: str) -> list[str]:
    board, d = lb.board, lb.board.decimals
    ranked = section == "ranked"
    head = (["Rank"] if ranked else []) + ["Entry", "Method", "Seeds"]
    head += [f"{md_text(c.header)} {direction_mark(c)}" for c in board.columns]
    show_stability = lb.bootstrap > 0 and ranked
    if show_stability:
        head.append("Rank stability")
    head.append({"ranked": "Note", "excluded": "Reason", "parent": "Parent of"}[section])
    align = (["---:"] if ranked else []) + ["---", "---", "---:"] + ["---:"] * len(board.columns)
    align += (["---:"] if show_stability else []) + ["---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for e in entries:
        cells = (["—" if e.rank is None else str(e.rank)] if ranked else [])
        cells += [md_text(e.display_label), md_text(e.method), str(e.n_seeds)]
        cells += [_cell(e, c.metric, d) for c in board.columns]
        if show_stability:
            cells.append(fmt(e.rank_stability, d))
        cells.append(md_text(e.reason if section == "parent" else entry_note(e)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(lb: Leaderboard) -> str:
    board = lb.board
    out = [f"# {md_text(board.title)}", ""]
    if board.description:
        out += [md_text(board.description), ""]
    out += [f"Board {md_code(board.name)}: {board_summary(lb, md_code, md_text)}.", ""]
    if lb.ranked:
        out += _md_table(lb, lb.ranked, "ranked")
    else:
        out.append("No entry passes the floor.")
    if lb.parents:
        out += ["", f"## {PARENTS_HEADING}", "", PARENTS_TEXT, ""]
        out += _md_table(lb, lb.parents, "parent")
    if lb.excluded:
        out += ["", f"## Excluded by the floor ({board.floor.describe(md_text) if board.floor else ''})", ""]
        out += _md_table(lb, lb.excluded, "excluded")
    if lb.skipped:
        out += ["", "## Skipped records", ""]
        out += [f"- {md_code(path)}: {md_text(reason)}" for path, reason in lb.skipped]
    if lb.notes:
        out += ["", "## Notes", ""]
        out += [f"- {md_text(note)}" for note in lb.notes]
    return "\n".join(out) + "\n"


# -- HTML -----------------------------------------------------------------------------------------
def _html_number(entry: Entry, metric: str, d: int) -> str:
    return _cell(entry, metric, d, value='<span class="v">{}</span>', std=' <span class="sd">± {}</span>',
                 ci=' <span class="ci">[{}, {}]</span>')


def _html_table(lb: Leaderboard, entries: Sequence[Entry], section: str) -> str:
    board, d = lb.board, lb.board.decimals
    esc = html_text
    ranked = section == "ranked"
    ths = []
    if ranked:
        ths.append('<th data-type="num" data-dir="min">Rank</th>')
    ths += ['<th data-type="text" class="text entry">Entry</th>', '<th data-type="text" class="text method">Method</th>',
            '<th data-type="num" data-dir="max">Seeds</th>']
    for c in board.columns:
        target = f' data-target="{c.target!r}"' if c.direction == "target" else ""
        ths.append(f'<th data-type="num" data-dir="{c.direction}"{target} data-metric="{esc(c.metric)}" '
                   f'title="{esc(c.metric)}">{esc(c.header)} <span class="dir">{esc(direction_mark(c))}</span></th>')
    show_stability = lb.bootstrap > 0 and ranked
    if show_stability:
        ths.append('<th data-type="num" data-dir="max" title="fraction of bootstrap replicates keeping the rank">'
                   'Rank stability</th>')
    note_head = {"ranked": "Note", "excluded": "Reason", "parent": "Parent of"}[section]
    ths.append(f'<th data-type="text" class="text note">{note_head}</th>')
    rows = []
    for e in entries:
        tds = []
        if ranked:
            rank = "" if e.rank is None else str(e.rank)
            tds.append(f'<td data-value="{rank}">{rank or "—"}</td>')
        badge = {"excluded": ' <span class="badge">excluded</span>', "parent": ' <span class="badge parent">parent</span>'}
        tds += [f'<td class="text entry" data-value="{esc(e.display_label)}">{esc(e.display_label)}'
                f'{badge.get(section, "")}</td>',
                f'<td class="text method" data-value="{esc(e.method)}">{esc(e.method)}</td>',
                f'<td data-value="{e.n_seeds}">{e.n_seeds}</td>']
        for c in board.columns:
            value = e.values.get(c.metric)
            raw = "" if value is None else repr(float(value))
            tds.append(f'<td data-value="{raw}">{_html_number(e, c.metric, d)}</td>')
        if show_stability:
            raw = "" if e.rank_stability is None else repr(e.rank_stability)
            tds.append(f'<td data-value="{raw}">{fmt(e.rank_stability, d)}</td>')
        note = e.reason if section == "parent" else entry_note(e)
        tds.append(f'<td class="text note" data-value="{esc(note)}">{esc(note)}</td>')
        rows.append(f'<tr class="{e.status}" data-label="{esc(e.display_label)}">' + "".join(tds) + "</tr>")
    classes = "board" + (f" {section}" if section != "ranked" else "") + (" wide" if len(board.columns) > 8 else "")
    return (f'<table id="{section if section != "parent" else "parents"}" class="{classes}">\n<thead><tr>'
            + "".join(ths) + "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>")


def fill_template(template: str, values: dict[str, str]) -> str:
    """Put ``values`` into the template's slots in one pass: the template is split at its slots and
    the pieces joined with the values, so nothing inserted is ever scanned for a slot or markup."""
    pattern = re.compile("|".join(re.escape(s) for s in values))
    pieces = pattern.split(template)
    found = pattern.findall(template)
    if sorted(set(found)) != sorted(values):
        raise ValueError(f"template slots {sorted(set(found))} do not match {sorted(values)}")
    out = [pieces[0]]
    for slot, piece in zip(found, pieces[1:]):
        out += [values[slot], piece]
    return "".join(out)


def to_html(lb: Leaderboard) -> str:
    """A single self-contained page: inline CSS and JS, no external resources."""
    board = lb.board
    esc = html_text
    parts = [f"<h1>{esc(board.title)}</h1>"]
    if board.description:
        parts.append(f"<p>{esc(board.description)}</p>")
    summary = board_summary(lb, code=lambda s: f"<code>{esc(s)}</code>", name=esc, text=html.escape)
    parts.append(f'<p class="summary">Board <code>{esc(board.name)}</code>: {summary}. '
                 "Click a column header to sort (best first; click again to reverse).</p>")
    parts.append(_html_table(lb, lb.ranked, "ranked") if lb.ranked else "<p>No entry passes the floor.</p>")
    if lb.parents:
        intro = esc(PARENTS_TEXT).replace("`--rank-parents`", "<code>--rank-parents</code>")
        parts.append(f"<h2>{PARENTS_HEADING}</h2>\n<p>{intro}</p>")
        parts.append(_html_table(lb, lb.parents, "parent"))
    if lb.excluded:
        parts.append(f"<h2>Excluded by the floor ({board.floor.describe(esc, html.escape) if board.floor else ''})</h2>")
        parts.append(_html_table(lb, lb.excluded, "excluded"))
    if lb.skipped:
        parts.append("<h2>Skipped records</h2>\n<ul>" + "".join(
            f"<li><code>{esc(path)}</code>: {esc(reason)}</li>" for path, reason in lb.skipped) + "</ul>")
    if lb.notes:
        parts.append("<h2>Notes</h2>\n<ul>" + "".join(f"<li>{esc(n)}</li>" for n in lb.notes) + "</ul>")
    template = (TEMPLATES / "board.html").read_text(encoding="utf-8")
    return fill_template(template, {"<!--csp-->": content_security_policy(template), "<!--title-->": esc(board.title),
                                    "<!--body-->": "\n".join(parts)})


def content_security_policy(template: str) -> str:
    """The page's policy, a second line of defence behind the escaping: no request leaves the page
    (no scripts, images, styles, frames or fonts from anywhere) and the only script that runs is the
    template's own sorting script, allowed by its hash."""
    scripts = re.findall(r"<script>(.*?)</script>", template, flags=re.S)
    hashes = " ".join("'sha256-" + base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode() + "'"
                      for s in scripts)
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {hashes or repr('none')}; "
            "base-uri 'none'; form-action 'none'")


# -- LaTeX ----------------------------------------------------------------------------------------
_TEX_MARK = {"max": r"$\uparrow$", "min": r"$\downarrow$"}


def _tex_number(entry: Entry, metric: str, d: int) -> str:
    return _cell(entry, metric, d, std=r" $\pm$ {}", ci=r" {{\scriptsize{{[}}{}, {}{{]}}}}", missing="--")


def _tex_row(entry: Entry, lb: Leaderboard, rank: str) -> str:
    d = lb.board.decimals
    cells = [rank, latex_text(entry.display_label), latex_text(entry.method), str(entry.n_seeds)]
    cells += [_tex_number(entry, c.metric, d) for c in lb.board.columns]
    return " & ".join(cells) + r" \\"


def to_latex(lb: Leaderboard) -> str:
    """A booktabs table (``\\usepackage{booktabs}``): ranked entries and the listed-not-ranked ones,
    then the parents and the excluded entries in their own marked groups; every text escaped."""
    board = lb.board
    n_cols = 4 + len(board.columns)
    heads = ["Rank", "Entry", "Method", "Seeds"]
    for c in board.columns:
        mark = _TEX_MARK.get(c.direction) or rf"$\to${c.target:g}"
        heads.append(f"{latex_text(c.header)} {mark}")
    label = re.sub(r"[^A-Za-z0-9-]+", "-", board.name).strip("-") or "board"
    floor = board.floor.describe(latex_text, lambda s: latex_text(s).replace(r"\textgreater{}=", r"$\geq$")) \
        if board.floor else ""
    caption = latex_text(board.title) + ". " + (
        f"Ranked by {latex_text(board.score)}; mean $\\pm$ standard deviation over seeds"
        + ("; [95\\% bootstrap interval]" if lb.bootstrap else "") + "."
        + (f" Floor: {floor}." if floor else ""))
    lines = [f"% Leaderboard {latex_text(board.name)}, written by unlearnbench. Needs \\usepackage{{booktabs}}.",
             r"\begin{table}[htbp]", r"\centering", rf"\caption{{{caption}}}", rf"\label{{tab:{label}}}",
             r"\small", r"\begin{tabular}{rllr" + "r" * len(board.columns) + "}", r"\toprule",
             " & ".join(heads) + r" \\", r"\midrule"]
    if not lb.ranked:
        lines.append(rf"\multicolumn{{{n_cols}}}{{l}}{{\emph{{No entry passes the floor.}}}} \\")
    for e in lb.ranked:
        lines.append(_tex_row(e, lb, "--" if e.rank is None else str(e.rank)))
    for title, group in ((PARENTS_HEADING, lb.parents),
                         (f"Excluded by the floor ({floor})", lb.excluded)):
        if group:
            lines += [r"\midrule", rf"\multicolumn{{{n_cols}}}{{l}}{{\emph{{{title}}}}} \\"]
            lines += [_tex_row(e, lb, "--") for e in group]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"

