"""Local copies of TOFU's released configs (HF ``locuslab/TOFU``), read and validated.

The folder a user points ``--data`` at holds the configs under their released names, each as
``<config>.json`` (JSON lines, as released — a JSON array is accepted too), ``<config>.jsonl`` or
``<config>.parquet``:

==========================================  ====================================================
config                                      fields (one row per question)
==========================================  ====================================================
``forget01/05/10_perturbed`` (evaluation)   ``question``, ``answer``, ``paraphrased_answer``,
``retain_perturbed``                        ``perturbed_answer`` (list, 5 in the release)
``real_authors_perturbed``,                 ``question``, ``answer``, ``perturbed_answer`` (list, 3)
``world_facts_perturbed``
``forget01/05/10``, ``retain99/95/90``      ``question``, ``answer`` (unlearning's training data)
==========================================  ====================================================

Evaluation uses the first ``ds_size`` items of each perturbed config (TOFU's ``ds_size: 300``).
Checks beyond the fields: every item of a config has the same number of perturbed answers (TOFU
stacks them), the forget configs present are nested (forget01 ⊂ forget05 ⊂ forget10, by question),
a ``forgetNN_perturbed`` asks the questions of ``forgetNN``, and ``retainNN`` shares no question with
``forgetNN``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.core.errors import DataError

CONFIG_SUFFIXES = (".json", ".jsonl", ".parquet")
FORGET_SPLITS = ("forget01", "forget05", "forget10")
#: Evaluation set → its config (the forget set's depends on the split).
EVAL_CONFIGS = {"retain": "retain_perturbed", "real_authors": "real_authors_perturbed",
                "world_facts": "world_facts_perturbed"}
DEFAULT_DS_SIZE = 300


def retain_config(split: str) -> str:
    """``forget10`` → ``retain90`` (TOFU's rule)."""
    return "retain" + str(100 - int(split.replace("forget", ""))).zfill(2)


def find_config(folder: Path, name: str) -> Path | None:
    """The file holding config ``name`` in ``folder`` (no reading), or ``None``."""
    for suffix in CONFIG_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8 ({exc.reason})", path) from exc
    except OSError as exc:
        raise DataError(f"cannot read file ({exc.strerror})", path) from exc
    if text.lstrip().startswith("["):  # a JSON array (what json.dump of a list writes)
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg} at line {exc.lineno})", path) from exc
        yield from enumerate(rows, start=1)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno}); expected one JSON object per line "
                            "(TOFU's released .json files are JSON lines)", path, lineno) from exc


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read as Parquet ({type(exc).__name__}: {exc})", path) from exc
    yield from enumerate(rows, start=1)


@dataclass(frozen=True)
class TofuItem:
    """One question of a config, validated."""

    index: int
    """0-based position in the config (TOFU's ``index``, the log's item key)."""
    question: str
    answer: str
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()


def read_config(path: Path, *, perturbed: bool, paraphrased: bool) -> tuple[TofuItem, ...]:
    """Validated items of one config file; errors name the file, the row and the field."""
    rows = _parquet_rows(path) if path.suffix == ".parquet" else _json_rows(path)
    items: list[TofuItem] = []
    width: tuple[int, int] | None = None
    for line, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"expected an object with question and answer, got {type(row).__name__}", path, line)
        for field in ("question", "answer") + (("paraphrased_answer",) if paraphrased else ()):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError(f"field {field!r} must be a non-empty string, got {row.get(field)!r}", path, line)
        options: tuple[str, ...] = ()
        if perturbed:
            value = row.get("perturbed_answer")
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise DataError(f"field 'perturbed_answer' must be a non-empty list of non-empty strings, got {value!r}",
                                path, line)
            options = tuple(value)
            if width is None:
                width = (len(options), line)
            elif len(options) != width[0]:
                raise DataError(f"{len(options)} perturbed answers, but line {width[1]} has {width[0]}; every question "
                                "of a config needs the same number (TOFU stacks them)", path, line)
        items.append(TofuItem(len(items), row["question"], row["answer"],
                              row.get("paraphrased_answer") if paraphrased else None, options))
    if not items:
        raise DataError("the config has no questions", path)
    return tuple(items)


@dataclass(frozen=True)
class TofuData:
    """The configs one TOFU evaluation (and unlearning) needs."""

    folder: str
    split: str
    """``forget01``, ``forget05`` or ``forget10``."""
    eval_sets: dict[str, tuple[TofuItem, ...]]
    """``retain``, ``forget``, ``real_authors``, ``world_facts`` → the first ``ds_size`` items."""
    train_forget: tuple[TofuItem, ...]
    """``forgetNN`` (else the forget questions of ``forgetNN_perturbed``)."""
    train_retain: tuple[TofuItem, ...]
    """``retainNN``; empty when the folder does not hold it (evaluation only)."""
    ds_size: int


def available_splits(folder: Path) -> list[str]:
    return [s for s in FORGET_SPLITS if find_config(folder, f"{s}_perturbed") is not None]


def _require(folder: Path, name: str) -> Path:
    path = find_config(folder, name)
    if path is None:
        raise DataError(f"no {name} config ({' / '.join(name + s for s in CONFIG_SUFFIXES)}); a TOFU folder holds "
                        "the released configs under their names", folder)
    return path


def load_tofu(folder: str | Path, split: str | None = None, ds_size: int = DEFAULT_DS_SIZE) -> TofuData:
    """Read a TOFU folder for forget split ``split`` (default: the largest with a perturbed config)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("not a TOFU folder", folder)
    if ds_size < 1:
        raise DataError(f"ds_size must be at least 1, got {ds_size}", folder)
    splits = available_splits(folder)
    if split is None:
        if not splits:
            raise DataError(f"no forgetNN_perturbed config ({', '.join(s + '_perturbed' for s in FORGET_SPLITS)})", folder)
        split = splits[-1]
    elif split not in FORGET_SPLITS:
        raise DataError(f"unknown TOFU forget split {split!r}; expected one of {', '.join(FORGET_SPLITS)}", folder)
    forget_path = _require(folder, f"{split}_perturbed")
    eval_sets = {"forget": read_config(forget_path, perturbed=True, paraphrased=True)}
    for name, config in EVAL_CONFIGS.items():
        eval_sets[name] = read_config(_require(folder, config), perturbed=True, paraphrased=name == "retain")
    forget_questions = [i.question for i in eval_sets["forget"]]
    train_forget = eval_sets["forget"]
    plain_path = find_config(folder, split)
    if plain_path is not None:
        train_forget = read_config(plain_path, perturbed=False, paraphrased=False)
        if [i.question for i in train_forget] != forget_questions:
            raise DataError(f"{split} and {forget_path.name} ask different questions (or in another order); the "
                            "perturbed config evaluates the forget set's own questions", plain_path)
    _check_nesting(folder, split, forget_questions)
    train_retain: tuple[TofuItem, ...] = ()
    retain_path = find_config(folder, retain_config(split))
    if retain_path is not None:
        train_retain = read_config(retain_path, perturbed=False, paraphrased=False)
        shared = set(forget_questions) & {i.question for i in train_retain}
        if shared:
            raise DataError(f"{len(shared)} question(s) of {split} are also in {retain_path.name} (e.g. "
                            f"{sorted(shared)[0]!r}); the retain set is the forget set's complement", retain_path)
    return TofuData(folder=str(folder), split=split,
                    eval_sets={k: v[:ds_size] for k, v in eval_sets.items()},
                    train_forget=train_forget, train_retain=train_retain, ds_size=ds_size)


def _check_nesting(folder: Path, split: str, questions: list[str]) -> None:
    """forget01 ⊂ forget05 ⊂ forget10 among the perturbed configs present (the released sets nest)."""
    known = {split: set(questions)}
    for other in FORGET_SPLITS:
        path = find_config(folder, f"{other}_perturbed")
        if other == split or path is None:
            continue
        known[other] = {i.question for i in read_config(path, perturbed=True, paraphrased=True)}
    ordered = [s for s in FORGET_SPLITS if s in known]
    for small, large in zip(ordered, ordered[1:]):
        missing = known[small] - known[large]
        if missing:
            raise DataError(f"{small}_perturbed is not contained in {large}_perturbed ({len(missing)} question(s) "
                            f"missing, e.g. {sorted(missing)[0]!r}); TOFU's forget sets are nested", folder)


__all__ = ["CONFIG_SUFFIXES", "DEFAULT_DS_SIZE", "EVAL_CONFIGS", "FORGET_SPLITS", "TofuData", "TofuItem",
           "available_splits", "find_config", "load_tofu", "read_config", "retain_config"]
