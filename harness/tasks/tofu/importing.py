"""TOFU's own evaluation logs as a run folder, so published models rank beside the harness's runs.

:func:`import_tofu_logs` reads the four ``eval_*.json`` files of a model and of its retain-only
reference (:func:`metrics.tofu.read_tofu_logs`), computes every TOFU metric exactly as TOFU's
``aggregate_eval_stat.py`` does, and writes ``samples.jsonl`` (the model's rows plus the reference's
forget rows, so ``unlearnbench score`` recomputes everything), ``config.json`` and ``result.json``.

The record's benchmark hash is :func:`harness.tasks.tofu.task.items_hash` of the evaluated questions
and answers, recovered from the logs' ``generated_text`` (the formatted prompt and the ground truth):
a harness run on the same configs gets the same hash and ranks on the same board.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness.core.errors import DataError
from harness.tasks.tofu.formats import PROMPT_FORMATS, PromptFormat

#: What an imported run's record says produced it.
IMPORT_METHOD = "tofu_logs"


def prompt_layout(prompt: str) -> tuple[PromptFormat, str] | None:
    """(the format, the question) of a TOFU generation prompt, or ``None`` when no format fits."""
    for fmt in PROMPT_FORMATS.values():
        start, end = fmt.question_start, fmt.question_end + (fmt.answer_tag if fmt.generation_answer_tag else "")
        if prompt.startswith(start) and prompt.endswith(end) and len(prompt) >= len(start) + len(end):
            return fmt, prompt[len(start): len(prompt) - len(end)]
    return None


def _with_questions(rows: list[dict[str, Any]], path: Path) -> str:
    """Add each row's question (from its prompt); return the one format all prompts share."""
    formats = set()
    for row in rows:
        if "prompt" not in row:
            raise DataError(f"{row['set']} item {row['id']!r} has no generated_text; importing needs the prompt and the "
                            "ground truth TOFU logs with save_generated_text", path)
        layout = prompt_layout(row["prompt"])
        if layout is None:
            raise DataError(f"{row['set']} item {row['id']!r}: the prompt {row['prompt'][:60]!r} fits none of the known "
                            f"formats ({', '.join(PROMPT_FORMATS)})", path)
        formats.add(layout[0].name)
        row["question"] = layout[1]
    if len(formats) != 1:
        raise DataError(f"the prompts mix formats ({', '.join(sorted(formats))})", path)
    return formats.pop()


def import_tofu_logs(logs: str | Path, retain_logs: str | Path, out: str | Path, *, split: str = "forget10",
                     label: str | None = None):
    """Write the run folder ``out`` for the model whose logs are in ``logs`` against the retain-only
    model's ``retain_logs``; return the result record."""
    from harness.core import fileio
    from harness.core.records import (SAMPLES_FILE, BenchmarkInfo, EvalResult, MethodInfo, ModelInfo, RunConfig,
                                      now, provenance, write_config, write_result)
    from harness.tasks.tofu.data import FORGET_SPLITS
    from harness.tasks.tofu.task import REFERENCE_SET, items_hash
    from metrics.tofu import tofu_metrics
    from metrics.tofu import read_tofu_logs

    if split not in FORGET_SPLITS:
        raise DataError(f"unknown TOFU forget split {split!r}; expected one of {', '.join(FORGET_SPLITS)}", logs)
    logs, retain_logs, out = Path(logs), Path(retain_logs), Path(out)
    created = now()
    rows, reference = read_tofu_logs(logs), read_tofu_logs(retain_logs)
    fmt = _with_questions(rows, logs)
    ref_forget = [r for r in reference if r["set"] == "forget"]
    if _with_questions(ref_forget, retain_logs) != fmt:
        raise DataError("the reference's logs use another prompt format than the model's", retain_logs)
    metrics = tofu_metrics(rows, reference, path=logs, reference_path=retain_logs)
    sets: dict[str, list[tuple[int, str, str]]] = {}
    for row in rows:
        sets.setdefault(row["set"], []).append((int(row["id"]), row["question"], row["reference"]))
    ds_size = max(len(v) for v in sets.values())
    samples = rows + [{**r, "set": REFERENCE_SET, "reference_run": str(retain_logs)} for r in ref_forget]
    protocol = {"split": split, "format": fmt, "ds_size": ds_size,
                "imported_from": {"logs": str(logs), "retain_logs": str(retain_logs)},
                "answer_loss": "TOFU's own evaluation (evaluate_util.py)", "reference": str(retain_logs)}
    label = label or logs.name
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, RunConfig(command="import-tofu", argv=sys.argv[1:], method=IMPORT_METHOD, label=label,
                                params={"logs": str(logs)},
                                model=str(logs), data=str(logs), benchmark="tofu",
                                benchmark_options={"split": split, "format": fmt, "reference": str(retain_logs)}))
    fileio.write_jsonl(out / SAMPLES_FILE, samples)
    result = EvalResult(
        run_id=out.name, label=label, created_at=created, finished_at=now(),
        benchmark=BenchmarkInfo(name=f"tofu-{split}", content_hash=items_hash(sets), path=str(logs),
                                counts={s: len(v) for s, v in sets.items()}),
        model=ModelInfo(id=str(logs)), method=MethodInfo(name=IMPORT_METHOD, params={"logs": str(logs)}),
        metrics=metrics, settings={"benchmark": "tofu", "protocol": protocol},
        files={"samples": SAMPLES_FILE}, provenance=provenance(device="n/a", dtype="n/a"))
    write_result(out, result)
    return result


__all__ = ["IMPORT_METHOD", "import_tofu_logs", "prompt_layout"]
