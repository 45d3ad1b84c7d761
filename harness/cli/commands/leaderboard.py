"""``unlearnbench leaderboard``: rank result records on a board (CSV, Markdown, HTML, LaTeX, plots).

Reads ``result.json`` records (and, for bootstrap intervals, the per-sample files beside them);
never loads a model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.main import examples
from harness.core.errors import UserError


def _formats(text: str) -> list[str]:
    from leaderboards import FORMATS

    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"unknown format(s) {unknown or text!r}; choose from {','.join(FORMATS)}")
    return formats


def _run(args: argparse.Namespace) -> int:
    import leaderboards as lbs

    if args.list_boards:
        for name, path in lbs.available_boards().items():
            board = lbs.load_board_file(path)
            print(f"{name:<18} {board.title}  [{path}]")
        return 0
    if not args.results:
        raise UserError("give at least one RESULTS_DIR (folders searched recursively for result.json)")
    if args.out is None:
        raise UserError("--out DIR is required (where the leaderboard files are written)")
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0 (0 disables), got {args.bootstrap}")
    from leaderboards.text import visible

    try:
        board = lbs.get_board(args.board)
        if board.name == "robust":  # attacked runs: recovery from their robust.json (leaderboards.robust)
            from leaderboards.robust import build_robust_board

            boards = [(None, build_robust_board(args.results, board))]
        else:
            boards = lbs.build_leaderboards(args.results, board, bootstrap=args.bootstrap, seed=args.seed,
                                            split_by_benchmark=args.split_by_benchmark, progress=not args.quiet,
                                            rank_parents=args.rank_parents, columns=args.columns)
    except (lbs.BoardError, lbs.LeaderboardError) as exc:
        raise UserError(str(exc)) from exc
    for slug, board in boards:
        out_dir = Path(args.out) / slug if slug else Path(args.out)
        for path, reason in board.skipped:
            print(visible(f"warning: skipped {path}: {reason}"), file=sys.stderr)
        written = lbs.write_outputs(board, out_dir, args.format)
        if not args.quiet:
            print(lbs.to_markdown(board))
        print(f"wrote {len(written)} file(s) to {out_dir}: " + ", ".join(p.name for p in written))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard", help="rank result records on a board (CSV, Markdown, HTML, LaTeX, plots)",
        description="Build a leaderboard from result.json records found recursively under RESULTS_DIR(s). "
                    "Models are never loaded; bootstrap intervals use samples.jsonl / mia.jsonl when present.",
        epilog=examples("unlearnbench leaderboard runs/ --board semeval2025 --out board/",
                        "unlearnbench leaderboard runs/ --board world --out board/ --format csv,md --bootstrap 0",
                        "unlearnbench leaderboard runs/ --board my_board.toml --out board/ --seed 1",
                        "unlearnbench leaderboard runs/ --board world --out paper/ --format tex,pdf --columns terms",
                        "unlearnbench leaderboard runs/ --board robust --out robust/   # attacked runs (attack --target)",
                        "unlearnbench leaderboard --list-boards"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="*", metavar="RESULTS_DIR", help="folders (or result.json files) to read")
    p.add_argument("--board", default="semeval2025",
                   help="board name (built-in or from $UNLEARNBENCH_BOARDS) or path to a board .toml "
                        "(default: semeval2025)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--format", type=_formats, default=["csv", "md", "html", "tex", "png"],
                   help="comma-separated outputs among csv,md,html,tex,png,svg,pdf (tex: a booktabs table; "
                        "png/svg/pdf: the plots; default: csv,md,html,tex,png)")
    p.add_argument("--columns", choices=("board", "terms"), default="board",
                   help="board: the board's columns; terms: also the twelve SemEval per-task terms (default: board)")
    p.add_argument("--rank-parents", action="store_true",
                   help="rank runs that are parents of other collected runs (ZJUKLAB parents, merge inputs) as "
                        "entries; by default they are listed in a separate 'parents' section")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap replicates for 95%% intervals and rank stability, from the per-sample files "
                        "(default 1000; 0 disables)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--split-by-benchmark", action="store_true",
                   help="records of different benchmarks / MCQ protocols: one board per group in sub-folders of "
                        "--out, instead of stopping with an error")
    p.add_argument("--list-boards", action="store_true", help="list the available boards and exit")
    p.set_defaults(func=_run)
