"""The versioned result record (``result.json``) and run-folder conventions.

A run folder holds:

- ``config.json``   everything needed to re-run: the :class:`RunConfig` below
- ``result.json``   the :class:`EvalResult` below
- ``samples.jsonl`` one row per forget/retain record (generation, scores, answer loss)
- ``mia.jsonl``     one row per membership-inference document (losses, attack scores)
- ``train_log.jsonl`` training events (unlearning runs)
- ``log.txt``       the run's log

Leaderboards read only ``result.json`` (and the per-sample files for bootstrap intervals).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.core import fileio
from harness.core.errors import RecordError

SCHEMA_VERSION = "1.0"
RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
SAMPLES_FILE = "samples.jsonl"
MIA_FILE = "mia.jsonl"
#: Per-question MCQ rows (``harness.tasks.mcq.mmlu.run_mcq_rows``), keyed by the metric they give.
MCQ_FILES = {"mmlu": "mmlu.jsonl", "utility": "utility.jsonl"}
TRAIN_LOG_FILE = "train_log.jsonl"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class Provenance(_Frozen):
    unlearnbench_version: str
    """Version of the harness that produced the record."""
    git_sha: Optional[str] = None
    """Commit of the harness checkout, when it runs from a git checkout."""
    python: str
    torch: Optional[str] = None
    transformers: Optional[str] = None
    peft: Optional[str] = None
    lm_eval: Optional[str] = None
    platform: str
    """``platform.platform()`` of the machine."""
    device: str = "cpu"
    dtype: str = "float32"
    seed: Optional[int] = None


class BenchmarkInfo(_Frozen):
    name: str
    content_hash: str
    """Order-sensitive sha256 of the benchmark records (see ``harness.tasks.lume.data.benchmark_hash``)."""
    path: Optional[str] = None
    counts: dict[str, int] = Field(default_factory=dict)


class ModelInfo(_Frozen):
    id: str
    """Path or hub name of the evaluated model (or a description for in-memory models)."""
    weight_hash: Optional[str] = None
    """sha256 over parameter names, shapes, dtypes and bytes of the evaluated weights."""
    base_model: Optional[str] = None
    """The target model an unlearning run started from."""
    architecture: Optional[str] = None
    n_parameters: Optional[int] = None


class MethodInfo(_Frozen):
    name: str
    """Registered method name (``npo``, ``zjuklab_merge``, …) or ``none`` for a plain evaluation."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Every hyperparameter in force (defaults, config file and overrides merged)."""


class MMLUInfo(_Frozen):
    protocol: str
    """``semeval2025`` (5-shot, micro-averaged) or ``lm-eval`` (lm-eval's own mmlu defaults)."""
    source: str
    """Where the questions came from: a local path, or ``hub``."""
    metric_name: str = "mmlu"
    """``mmlu`` or ``utility`` (the synthetic world's general-knowledge set)."""
    num_fewshot: int
    prompt_format: str = "letters"
    """``letters`` (MMLU's layout) or ``cloze`` (lm-eval's ``mmlu_continuation``: the choice text is scored)."""
    n_questions: int
    subjects: list[str] = Field(default_factory=list)
    limit: Optional[int] = None
    """Questions per subject when limited; a limited MMLU is never ranked as the full one."""
    full: bool = True
    """True only when every subject and every question of the source was used."""
    settings: dict[str, Any] = Field(default_factory=dict)


class EvalResult(_Frozen):
    """One run's result record. Metrics are a flat mapping of explicit names."""

    schema_version: str = SCHEMA_VERSION
    run_id: str
    """The run folder's name unless given."""
    label: str
    """Display name on leaderboards (defaults to the method name)."""
    created_at: str
    finished_at: Optional[str] = None
    benchmark: BenchmarkInfo
    model: ModelInfo
    method: MethodInfo
    metrics: dict[str, Optional[float]]
    """e.g. ``forget/Task1/regurgitation``, ``task_aggregate``, ``mia_auc``, ``mia_score``, ``mmlu``,
    ``final_score``. ``None`` where a metric could not be computed (e.g. no items of that kind)."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Evaluation settings: scoring mode, max new tokens, batch size, engine, dtype, …"""
    mmlu: Optional[MMLUInfo] = None
    utility: Optional[MMLUInfo] = None
    flags: dict[str, Any] = Field(default_factory=dict)
    """Derived booleans, e.g. ``mmlu_floor_passed``."""
    parents: list[str] = Field(default_factory=list)
    """Run folders this run was made from (merges, ZJUKLAB parents)."""
    timings: dict[str, float] = Field(default_factory=dict)
    """Wall time per phase in seconds (``generation``, ``mia``, ``mmlu``, ``unlearn``, …)."""
    files: dict[str, str] = Field(default_factory=dict)
    """Per-sample files of this run, relative to the run folder."""
    provenance: Provenance


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def harness_version() -> str:
    return _version("unlearnbench") or "0+unknown"


def git_sha() -> str | None:
    here = Path(__file__).resolve().parents[2]  # the checkout: harness/core/records.py -> repository root
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(device: str = "cpu", dtype: str = "float32", seed: int | None = None) -> Provenance:
    return Provenance(
        unlearnbench_version=harness_version(),
        git_sha=git_sha(),
        python=platform.python_version(),
        torch=_version("torch"),
        transformers=_version("transformers"),
        peft=_version("peft"),
        lm_eval=_version("lm_eval") or _version("lm-eval"),
        platform=platform.platform(),
        device=device,
        dtype=dtype,
        seed=seed,
    )


def write_result(run_dir: str | Path, result: EvalResult) -> Path:
    return fileio.write_json(Path(run_dir) / RESULT_FILE, result.model_dump(mode="json"))


def read_result(path: str | Path) -> EvalResult:
    """Read and validate a ``result.json`` (or the run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(path, "no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(path, f"not valid JSON (truncated or corrupt?): {exc}") from exc
    if not isinstance(raw, dict):
        raise RecordError(path, "expected a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(path, f"schema_version {version!r} is not the supported {SCHEMA_VERSION!r}")
    try:
        return EvalResult.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RecordError(path, f"invalid result record at {loc!r}: {first['msg']} ({exc.error_count()} error(s))") from exc


def result_json_schema() -> dict[str, Any]:
    schema = EvalResult.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://unlearnbench/schemas/result-{SCHEMA_VERSION}.json"
    return schema


class RunConfig(BaseModel):
    """A run folder's ``config.json``: everything needed to re-run it. Every command that makes a run
    folder (``evaluate``, ``unlearn``, ``run``, ``merge``, the demo, composite methods) writes this
    one record, so every ``config.json`` has the same keys (null where a key does not apply)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    command: str
    """What made the run: ``evaluate``, ``unlearn``, ``run``, ``merge``, ``demo``, ``zjuklab_merge``, …"""
    argv: Optional[list[str]] = None
    """The command line's arguments, when the run came from the CLI."""
    method: str = "none"
    """Registered method name, ``merge``, or ``none`` for a plain evaluation."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Every hyperparameter in force (defaults, preset, config file and overrides merged)."""
    label: Optional[str] = None
    """Display name on leaderboards."""
    model: Optional[str] = None
    """The model as given."""
    base_model: Optional[str] = None
    """Absolute path of the starting model (``PeftModel.from_pretrained(base_model, RUN/model)``)."""
    model_dir: Optional[str] = None
    """Where the run saved its model, relative to the run folder (``model``)."""
    finetune: Optional[str] = None
    """``lora`` or ``full`` for runs that trained or merged weights."""
    parents: list[str] = Field(default_factory=list)
    """Run folders this run was made from (merges)."""
    parent_labels: list[str] = Field(default_factory=list)
    data: Optional[str] = None
    """The benchmark folder."""
    mia: Optional[str] = None
    """The MIA folder when given apart from the benchmark."""
    benchmark: Optional[str] = None
    """The registered benchmark the data was read as (``lume``, …)."""
    benchmark_options: Optional[dict[str, str]] = None
    """The benchmark's own options (``--benchmark-option``, ``--reference``), or null."""
    seed: Optional[int] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    eval: Optional[dict[str, Any]] = None
    """Evaluation settings in force (``EvalSettings.to_dict()``), or null when the run was not evaluated."""
    config_file: Optional[str] = None
    """The ``unlearnbench run`` config file the run came from."""
    unlearn_seconds: Optional[float] = None
    merge_seconds: Optional[float] = None
    flags: dict[str, Any] = Field(default_factory=dict)
    """Findings about the run, e.g. the no-op check (``no_op_suspected`` and the forget answer losses)."""

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def write_config(run_dir: str | Path, config: RunConfig | Mapping[str, Any]) -> Path:
    """Write ``config.json``; a mapping is validated as a :class:`RunConfig` first (an unknown key is
    refused, so no caller can write a config.json of its own shape)."""
    if not isinstance(config, RunConfig):
        config = RunConfig.model_validate(dict(config))
    return fileio.write_json(Path(run_dir) / CONFIG_FILE, config.to_json())


def read_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(path, "no config.json in this run folder") from None
    except json.JSONDecodeError as exc:
        raise RecordError(path, f"not valid JSON: {exc}") from exc


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
