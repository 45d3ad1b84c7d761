"""Nothing user-written is rendered raw (issue 14.4): an injection corpus through every output format
(CSV opened with pandas, Markdown rendered by GitHub's cmark-gfm and by markdown-it with linkify,
LaTeX, the plots; the HTML in Chromium is in test_leaderboard_browser.py), and hypothesis fuzzing of
result records into the board builder (a board or a clear refusal, never a traceback).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from test_leaderboard import full_metrics, make_record, write_record

#: Labels a hostile or clumsy user could give: markup, script, links, images, template syntax,
#: spreadsheet formulas, mathtext, control and invisible characters, table breakers, length.
CORPUS = [
    "<script>window.__pwned=1</script>",
    '<img src="http://127.0.0.1:9/x.png" onerror="window.__pwned=1">',
    '"><svg onload=window.__pwned=1>',
    "<a href=\"javascript:window.__pwned=1\">click</a>",
    "[click](javascript:window.__pwned=1)",
    "![pixel](http://127.0.0.1:9/track.png)",
    "[ref]: http://127.0.0.1:9/ref",
    "<http://127.0.0.1:9/autolink>",
    "see http://127.0.0.1:9/bare and www.example.com and mail@example.com",
    "{{ 7*7 }}",
    "{% for x in range(3) %}x{% endfor %}",
    "$title ${body} <!--body-->",
    "=cmd|' /C calc'!A0",
    "+SUM(1,1)",
    "@x",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
    "$\\foo{$",
    "$x^2$ and $\\alpha$",
    "x" * 300,
    "a very long label " * 12,
    "\u202eevil\u202c right-to-left override",
    "zero\u200bwidth\u200djoiner\ufeff",
    "line one\nline two\r\nthree",
    "pipe | in | label",
    "back\\slash `code` *em* _em_ ~~strike~~",
    "# heading",
    "1. list",
    "&lt;escaped&gt; &amp; &#60;script&#62;",
    "\\begin{document} \\input{/etc/passwd} 100% #1 ~ ^ & _",
    "null\x00byte and bell\x07",
    "lone surrogate \ud800",
]

#: Cells a spreadsheet would evaluate (OWASP): these starts, unless the cell is a plain number.
DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r", "\n")
PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")


def corpus_board(tmp_path: Path, columns: str = "board"):
    import leaderboards

    root = tmp_path / "runs"
    for i, label in enumerate(CORPUS):
        metrics = full_metrics(0.1 + i / 100, 0.6, 0.5 + i / 200, 0.47 - i / 1000)
        record = make_record(label, f"m{i} {CORPUS[-1 - i]}", metrics, params={"note": label}, run_id=f"run-{i}")
        (root / f"r{i}").mkdir(parents=True)
        # written with json.dumps: the harness's writer would refuse the lone surrogate (not UTF-8)
        (root / f"r{i}" / "result.json").write_text(json.dumps(record.model_dump(mode="json")), encoding="utf-8")
    write_record(root / "excluded", make_record("+excluded", "@method", full_metrics(0.1, 0.6, 0.5, 0.2)))
    write_record(root / "target", make_record("=target", "none", full_metrics(0.8, 0.8, 0.9, 0.49), seed=None))
    (root / "broken<script>").mkdir()
    (root / "broken<script>" / "result.json").write_text('{"schema_version": "1.0", "label": "<b>')
    [(_, lb)] = leaderboards.build_leaderboards([root], "semeval2025", bootstrap=0, progress=False, columns=columns)
    lb.notes.append("note with <script>window.__pwned=1</script> and [x](javascript:alert(1)) and =1+1")
    return lb


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return corpus_board(tmp_path_factory.mktemp("corpus"))


def test_every_corpus_label_is_on_the_board(corpus):
    lb = corpus
    assert len(lb.entries) == len(CORPUS) + 2 and len(lb.skipped) == 1


# -- CSV ----------------------------------------------------------------------------------------------
def test_csv_neutralises_formulas_and_keeps_numbers(corpus, tmp_path):
    import pandas as pd

    import leaderboards
    from leaderboards.text import clean

    lb = corpus
    text = leaderboards.to_csv(lb)
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    numeric = pd.read_csv(io.StringIO(text))
    metric_columns = [c for c in frame.columns if c.split("_ci95")[0].removesuffix("_std") in
                      {col.metric for col in lb.board.columns}]
    for column in metric_columns + ["n_seeds"]:
        assert numeric[column].dtype.kind in "fi", column  # numbers stay numbers
    assert (numeric["mia_auc"] > 0).all()
    checked = 0
    for column in ("label", "method", "params", "seeds", "reason", "run_ids"):
        for cell in frame[column]:
            if cell.startswith(DANGEROUS_START):
                assert PLAIN_NUMBER.match(cell), (column, cell)
            checked += 1
    assert checked > 100
    labels = list(frame["label"])
    for label in CORPUS:
        expected = clean(label)
        expected = "'" + expected if expected.startswith(DANGEROUS_START) else expected
        assert expected.replace("\r\n", "\n").replace("\r", "\n") in labels, label
    assert "'=cmd|' /C calc'!A0" in labels and "'+SUM(1,1)" in labels and "'@x" in labels and "'-2+3" in labels
    assert "'+excluded" in labels and "'=target" in labels
    # a negative number in a numeric column stays a plain number
    from leaderboards.text import csv_cell

    assert csv_cell("-0.5") == "-0.5" and csv_cell("-1e-05") == "-1e-05" and csv_cell("-2+3") == "'-2+3"


# -- Markdown ---------------------------------------------------------------------------------------
ALLOWED_TAGS = {"h1", "h2", "p", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "code"}


def _rendered_markdown(md: str) -> list[tuple[str, str]]:
    """The Markdown rendered by GitHub's renderer (raw HTML let through, so it would show) and by
    markdown-it with tables and linkify (bare domains become links there)."""
    cmarkgfm = pytest.importorskip("cmarkgfm")
    from cmarkgfm.cmark import Options
    from markdown_it import MarkdownIt

    pytest.importorskip("linkify_it")
    gfm = cmarkgfm.github_flavored_markdown_to_html(md, options=Options.CMARK_OPT_UNSAFE)
    linkify = MarkdownIt("gfm-like", {"linkify": True, "html": True}).render(md)
    return [("cmark-gfm", gfm), ("markdown-it+linkify", linkify)]


def _elements(html_text: str):
    from lxml import html as lxml_html

    root = lxml_html.fromstring(f"<div>{html_text}</div>")
    return root, list(root.iter())[1:]


def test_markdown_has_no_raw_html_links_or_images(corpus, tmp_path):
    import leaderboards
    from leaderboards.text import visible

    lb = corpus
    md = leaderboards.to_markdown(lb)
    for renderer, page in _rendered_markdown(md):
        root, elements = _elements(page)
        tags = {el.tag for el in elements if isinstance(el.tag, str)}
        assert tags <= ALLOWED_TAGS, (renderer, tags - ALLOWED_TAGS)
        assert "raw HTML omitted" not in page and "<!--" not in page
        assert not any(name.startswith("on") for el in elements for name in el.attrib), renderer
        tables = root.findall(".//table")
        ranked = tables[0]
        header = ranked.find(".//thead/tr")
        rows = ranked.findall(".//tbody/tr")
        assert len(rows) == len(lb.ranked), renderer  # newlines and pipes did not break the table
        for row, entry in zip(rows, lb.ranked):
            assert len(row) == len(header)
            # what the reader sees is the label itself (escaping does not garble it)
            shown = row[1].text_content().replace("\u2060", "")  # the word joiner that defuses e-mail autolinks
            assert shown == visible(entry.display_label).strip(), (renderer, entry.display_label)
        assert any("=cmd|' /C calc'!A0" == row[1].text_content() for row in rows)


def test_the_html_template_is_filled_in_one_pass():
    """No template engine: a value that looks like a slot (or template syntax) stays text."""
    from leaderboards.render import fill_template

    page = fill_template("<title><!--title--></title><!--body-->",
                         {"<!--title-->": "<!--body--> {{ 7*7 }} $body", "<!--body-->": "B"})
    assert page == "<title><!--body--> {{ 7*7 }} $body</title>B"
    with pytest.raises(ValueError, match="slots"):
        fill_template("<!--title-->", {"<!--title-->": "x", "<!--body-->": "y"})


def test_markdown_escaping_keeps_ordinary_text_readable():
    from leaderboards.text import md_text

    assert md_text("zjuklab_merge") == "zjuklab_merge"
    assert md_text("npo [lr=1e-05]") == "npo \\[lr=1e-05\\]"
    assert md_text("mmlu 0.3700 below the floor 0.3710") == "mmlu 0.3700 below the floor 0.3710"


# -- LaTeX -----------------------------------------------------------------------------------------------
_TEX_ESCAPE = re.compile(r"\\(?:textbackslash|textasciitilde|textasciicircum|textless|textgreater|textbar|textquotedbl"
                         r"|textasciigrave|textquotesingle)\{\}|\\[&%$#_{}]|\{\[\}|\{\]\}|-\{\}")


def test_latex_table_escapes_every_cell(tmp_path):
    import leaderboards

    lb = corpus_board(tmp_path, columns="terms")
    tex = leaderboards.to_latex(lb)
    assert tex.count(r"\begin{tabular}") == 1 and r"\toprule" in tex and r"\bottomrule" in tex
    n_cols = 4 + len(lb.board.columns)
    assert re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1) == "rllr" + "r" * len(lb.board.columns)
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    rows = [line for line in body.splitlines() if line.strip() and not line.startswith(("\\midrule", "\\multicolumn"))]
    assert len(rows) == len(lb.entries)
    for line in rows:
        assert line.endswith(r" \\") and line.count(r" \\") == 1
        cells = line[: -len(r" \\")].split(" & ")
        assert len(cells) == n_cols, line[:80]
        for text_cell in cells[1:3]:  # entry and method: nothing special left once escapes are removed
            bare = _TEX_ESCAPE.sub("", text_cell)
            assert not set(bare) & set("\\&%$#_{}~^<>|\n\r"), (text_cell, bare)
    assert r"\textbackslash{}begin\{document\}" in tex and r"100\% \#1" in tex


# -- plots ----------------------------------------------------------------------------------------------------
def test_plots_draw_the_corpus_without_mathtext_and_without_overlapping_labels(corpus, tmp_path):
    import matplotlib

    from leaderboards import plots

    lb = corpus
    with matplotlib.rc_context(plots.RC):
        for stem, build, _need in plots.PLOTS:
            fig = build(lb)
            assert plots.overlapping_texts(fig) == [], stem
            texts = [t for t, _ in plots.text_boxes(fig)]
            assert all(len(t) <= plots.LABEL_CHARS * 3 for t in texts)
            path = plots._save(fig, tmp_path / f"{stem}.png", "png")  # what write_plots does for each format
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if stem == "mia_auc":  # one label per entry, drawn as text: dollar signs and all
                assert "$\\foo{$" in [t.replace("\\$", "$") for t in texts]


def test_a_failing_plot_never_costs_the_tables(tmp_path, monkeypatch):
    import leaderboards
    from leaderboards import plots

    def broken(lb):
        raise ValueError("mathtext parse error: $\\foo{$ \x1b[31m")

    monkeypatch.setattr(plots, "PLOTS", (("components", broken, "x"),) + plots.PLOTS[1:])
    root = tmp_path / "runs"
    for i, label in enumerate(("$\\foo{$", "npo", "<b>rmu</b>")):
        write_record(root / label.replace("/", "_"), make_record(label, "npo", full_metrics(0.2 + i / 10, 0.6, 0.6, 0.47)))
    [(_, lb)] = leaderboards.build_leaderboards([root], "semeval2025", bootstrap=0, progress=False)
    written = leaderboards.write_outputs(lb, tmp_path / "out", leaderboards.FORMATS)
    names = {p.name for p in written}
    assert {"leaderboard.csv", "leaderboard.md", "leaderboard.html", "leaderboard.tex", "forget_retain.svg"} <= names
    assert "components.png" not in names
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "components plot not drawn: ValueError: mathtext parse error" in md and "\x1b" not in md


# -- fuzzing --------------------------------------------------------------------------------------------
KNOWN = ["final_score", "task_aggregate", "mia_score", "mia_auc", "mmlu", "answer_loss/forget",
         "forget/Task1/regurgitation", "retain/Task2/knowledge", "final_score_utility", "utility"]
texts = st.one_of(st.text(max_size=40), st.sampled_from(CORPUS))
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.integers(-5, 5),
                    st.none())
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                           max_leaves=6)
records = st.fixed_dictionaries({
    "label": texts,
    "method": st.one_of(st.sampled_from(["none", "npo"]), texts),
    "params": st.dictionaries(texts, json_values, max_size=3),
    "seed": st.one_of(st.none(), st.integers(-3, 3), texts),
    "metrics": st.dictionaries(st.one_of(st.sampled_from(KNOWN), texts), numbers, max_size=4),
    "consistent": st.sampled_from([True, True, True, False]),  # mostly records a board can rank
    "hash": st.sampled_from(["a" * 64] * 4 + ["b" * 64]),
    "parents": st.lists(st.one_of(texts, st.sampled_from(["../r0", "r1", "/x/r2"])), max_size=2),
    "where": st.sampled_from(["r", "r", "parents"]),
    "garbage": st.sampled_from([None] * 7 + ["truncate", "not-json", "wrong-type"]),
})


def _write_fuzzed(root: Path, i: int, spec: dict) -> None:
    metrics = dict(spec["metrics"])
    if spec["consistent"]:  # every board's metrics, from the metrics package's formulas
        metrics.update(full_metrics(0.2 + i / 20, 0.6, 0.6, 0.47 - i / 50))
        metrics.update(full_metrics(0.2 + i / 20, 0.6, 0.6, 0.47 - i / 50, mcq_name="utility"))
    record = make_record("x", "x", {}, seed=None, bench_hash=spec["hash"], run_id=f"r{i}")
    raw = record.model_dump(mode="json")  # user text goes in afterwards: pydantic cannot dump lone surrogates
    raw["label"], raw["method"]["name"] = spec["label"], spec["method"]
    raw["metrics"] = metrics
    raw["method"]["params"] = dict(spec["params"], seed=spec["seed"])
    raw["parents"] = spec["parents"]
    folder = root / f"r{i}" if spec["where"] == "r" or i == 0 else root / "r0" / "parents" / f"p{i}"
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(raw)
    if spec["garbage"] == "truncate":
        text = text[: len(text) // 2]
    elif spec["garbage"] == "not-json":
        text = "\ufeff{" + text
    elif spec["garbage"] == "wrong-type":
        raw["metrics"] = [1, 2]
        text = json.dumps(raw)
    (folder / "result.json").write_text(text, encoding="utf-8")  # json.dumps escapes lone surrogates


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(records, min_size=1, max_size=4), st.sampled_from(["semeval2025", "world", "semeval2025-1b"]),
       st.booleans(), st.booleans())
def test_fuzzed_records_give_a_board_or_a_clear_refusal(specs, board, rank_parents, terms):
    import leaderboards
    from metrics.specs import value_problem

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, spec in enumerate(specs):
            _write_fuzzed(root, i, spec)
        try:
            boards = leaderboards.build_leaderboards([root], board, bootstrap=0, progress=False,
                                                     rank_parents=rank_parents, columns="terms" if terms else "board")
        except leaderboards.LeaderboardError as exc:
            message = str(exc)
            assert message and "Traceback" not in message
            assert any(words in message for words in ("no usable result record", "cannot be ranked together",
                                                      "no record has method", "more than one reference entry"))
            event("refused: " + message.split(" under ")[0].split(":")[0][:40])
            return
        event(f"board; {sum(len(lb.entries) for _, lb in boards)} entries, {len(boards[0][1].skipped)} refused")
        for _slug, lb in boards:
            for entry in lb.entries:
                for run in entry.runs:
                    for name, value in run.result.metrics.items():
                        assert value is None or value_problem(name, value) is None, (name, value)
                assert math.isfinite(entry.score)
            for render in (leaderboards.to_csv, leaderboards.to_markdown, leaderboards.to_html, leaderboards.to_latex):
                render(lb).encode("utf-8")  # writable as UTF-8 (no lone surrogate left)
            metric_columns = {c.metric for c in lb.board.columns}
            rows = list(csv.reader(io.StringIO(leaderboards.to_csv(lb))))
            header = rows[0]
            for row in rows[1:]:
                assert len(row) == len(header)
                for name, cell in zip(header, row):
                    assert not cell.startswith(DANGEROUS_START) or PLAIN_NUMBER.match(cell), cell
                    if name in metric_columns and cell:
                        assert math.isfinite(float(cell)), (name, cell)
