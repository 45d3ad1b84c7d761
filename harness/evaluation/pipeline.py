"""The evaluation pipeline: a model backend x a benchmark -> a run folder.

``evaluate_model`` works on an already-loaded model (``unlearnbench run`` calls it right after
unlearning, with no re-save). The benchmark (:mod:`harness.tasks`) says what it needs from the model;
a backend (:mod:`harness.backends`) computes it, through a content-addressed cache
(:mod:`harness.core.cache`), so re-evaluating an unchanged model skips the model work; the MMLU and
utility MCQ sets run beside it through lm-eval; the benchmark scores the answers; the run folder gets
``samples.jsonl``, ``mia.jsonl`` and ``result.json`` (``harness.core.records``, ``docs/contracts.md``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.backends import backend_class, make_backend
from harness.backends.base import BackendOptions, ModelBackend
from harness.backends.distributed import is_main_process, num_processes
from harness.core import fileio
from harness.core.cache import EvalCache, cache_key
from harness.core.records import (MCQ_FILES, MIA_FILE, SAMPLES_FILE, EvalResult, MethodInfo, MMLUInfo, ModelInfo,
                                  RunConfig, now, provenance, write_config, write_result)
from harness.core.types import Benchmark
from harness.evaluation.checks import FiniteOutputs, check_metrics, check_requests, check_weights
from harness.tasks import as_task
from harness.tasks.base import BenchmarkTask, Requests, Responses, Scores
from harness.tasks.limit import check_limit, limit_task

log = logging.getLogger("unlearnbench.evaluate")

MODES = ("semeval2025", "plain")


@dataclass
class EvalSettings:
    """How to evaluate. Everything here that can change a number is part of the cache key."""

    mode: str = "semeval2025"
    """``semeval2025``: the organisers' decoding clean-up and scoring quirks; ``plain``: neither."""
    max_new_tokens: int = 256
    batch_size: int | str = "auto"
    """Rows per batch for every phase, or ``auto`` (start large, halve on out-of-memory)."""
    dtype: str = "float32"
    """Informational here (the model is loaded by the caller); recorded in provenance."""
    device: str = "cpu"
    min_k: float = 0.2
    """Fraction of lowest-scoring tokens for Min-K% and Min-K%++."""
    mmlu: Any = None
    """A ``harness.tasks.mcq.mmlu`` spec, or None to skip MMLU."""
    utility: Any = None
    """A ``harness.tasks.mcq.mmlu`` spec for the synthetic world's general-knowledge MCQ set, or None."""
    lm_eval_tasks: Any = None
    """A :class:`harness.tasks.lm_eval_tasks.LMEvalTasksSpec`: lm-eval tasks run as metric columns, or None."""
    engine: str = "hf"
    """The model backend (:data:`harness.backends.BACKENDS`): ``hf``, batched and verified-exact decoding
    with transformers; ``reference``, the organisers' one-record-at-a-time loop (slow; for comparison);
    ``vllm``, vLLM generation from the model's folder."""
    tensor_parallel_size: int = 1
    """vLLM only: GPUs per model (tensor parallelism)."""
    verify_margin: float | None = None
    """Relative top-1/top-2 logit gap below which a row is regenerated one at a time (None: the
    dtype's default, see ``harness.backends.hf.default_margin``); 0 disables the verification."""
    answer_losses: bool = True
    limit: int | None = None
    """At most this many records per split x task x kind and documents per MIA set, the first ones in
    file order (:mod:`harness.tasks.limit`): a quick look, recorded, and never ranked as the benchmark."""
    progress: bool = True
    cache: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {list(MODES)}")
        # An unknown engine is a ValueError; a backend that cannot run here (vLLM not installed)
        # fails now, before any work.
        backend_class(self.engine).check_available()
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0 < self.min_k <= 1:
            raise ValueError(f"min_k must be in (0, 1], got {self.min_k}")
        check_limit(self.limit)
        if self.batch_size != "auto" and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}")

    def backend_options(self) -> BackendOptions:
        return BackendOptions(batch_size=self.batch_size, progress=self.progress, verify_margin=self.verify_margin,
                              dtype=self.dtype, tensor_parallel_size=self.tensor_parallel_size)

    def make_backend(self, model, tokenizer, model_path: str | Path | None = None) -> ModelBackend:
        """The backend of ``engine`` over ``model``; ``model_path``: the folder the model was loaded from
        or saved to (the vLLM backend loads it from there)."""
        return make_backend(self.engine, model, tokenizer, self.backend_options(), model_path)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _finite(x: float | None) -> float | None:
    """JSON has no NaN/inf: a non-finite loss (an overflowing 16-bit model) is written as null."""
    return x if x is None or math.isfinite(x) else None


class _Timer:
    def __init__(self, timings: dict[str, float], name: str):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.t0


def model_identity(model, tokenizer, weight_hash_value: str | None = None) -> dict[str, str]:
    """What identifies a model's function for the cache: weights, config and tokenizer hashes, dtype, device."""
    from harness.backends.base import model_device, model_dtype_name
    from harness.backends.loading import model_config_hash, tokenizer_hash, weight_hash

    return {
        "weights": weight_hash_value or weight_hash(model),
        "config": model_config_hash(model),
        "tokenizer": tokenizer_hash(tokenizer),
        "dtype": model_dtype_name(model),
        "device": model_device(model).type,
    }


@dataclass
class RunInfo:
    """How the result record describes the run, beside its scores (``evaluate_model``'s ``run``)."""

    model_info: ModelInfo | None = None
    """The evaluated model (hashed from the weights when absent or without a weight hash)."""
    method_info: MethodInfo | None = None
    """The method that made the model (``none`` for a plain evaluation)."""
    label: str | None = None
    """Display name (default: the method name, else the model folder's name)."""
    parents: Sequence[str] = ()
    extra_timings: Mapping[str, float] | None = None
    """Phases timed by the caller (``unlearn``, ``merge``), recorded beside the evaluation's own."""
    config: RunConfig | Mapping[str, Any] | None = None
    """Written as ``config.json`` (validated as a :class:`harness.core.records.RunConfig`)."""
    run_id: str | None = None
    """Default: the run folder's name."""
    seed: int | None = None
    flags: Mapping[str, Any] | None = None
    """The record's ``flags`` (e.g. the unlearning runner's no-op check)."""


class _Evaluation:
    """One evaluation's state: the model behind its backend, the benchmark, the cache and the timings."""

    def __init__(self, model, tokenizer, task: BenchmarkTask, settings: EvalSettings, backend: ModelBackend):
        self.model, self.tokenizer, self.task, self.settings, self.backend = model, tokenizer, task, settings, backend
        self.timings: dict[str, float] = {}
        self.cache = EvalCache(settings.cache_dir, enabled=settings.cache)
        self.identity: dict[str, str] = {}

    def identify(self, model_info: ModelInfo | None) -> ModelInfo:
        """The model's record (hashing its weights unless given) and its cache identity."""
        from harness.backends.loading import model_info as make_model_info

        with _Timer(self.timings, "hash"):
            if model_info is None or not model_info.weight_hash:
                model_info = make_model_info(self.model, id=model_info.id if model_info else None,
                                             base_model=model_info.base_model if model_info else None)
            self.identity = model_identity(self.model, self.tokenizer, model_info.weight_hash)
        return model_info

    def _cached(self, phase: str, phase_settings: dict, n: int, compute: Callable[[], list]) -> list:
        """``compute()``'s value for ``phase``, from the content-addressed cache when it holds it."""
        key = cache_key(phase, self.identity, self.task.content_hash, phase_settings)
        with _Timer(self.timings, phase):
            value = self.cache.get(phase, key, n_expected=n)
            if value is None:
                value = compute()
                if is_main_process():  # under data parallelism every process holds the gathered value
                    self.cache.put(phase, key, value)
        return value

    def responses(self, requests: Requests) -> Responses:
        """The backend's answers to the benchmark's requests. Under ``accelerate launch``/torchrun every
        process calls the backend and receives the gathered results in input order."""
        s, backend = self.settings, self.backend
        generations = self._generations(requests)
        answer_losses: list[float | None] = [None] * len(requests.answers)
        if s.answer_losses and requests.answers:
            inputs, outputs = [a for a, _ in requests.answers], [b for _, b in requests.answers]
            fmt = requests.answer_format
            # LUME's convention keeps its historical cache key; another convention is part of the key.
            loss_key = {} if fmt.is_default else {"answer_format": dataclasses.asdict(fmt)}
            answer_losses = self._cached("answer_loss", loss_key, len(requests.answers), lambda: [
                _finite(x) for x in (backend.answer_losses(inputs, outputs) if fmt.is_default
                                     else backend.answer_losses(inputs, outputs, fmt))])
        documents = None
        if requests.documents:
            documents = self._cached("mia", {"min_k": s.min_k}, len(requests.documents), lambda: [
                {k: (_finite(v) if isinstance(v, float) else v) for k, v in row.items()}
                for row in backend.document_scores(list(requests.documents), k=s.min_k)])
        token_logprobs = None
        if requests.token_texts:
            token_logprobs = self._cached("token_logprobs", {}, len(requests.token_texts),
                                          lambda: backend.token_logprobs(list(requests.token_texts)))
        truncated = None
        if requests.truncations:
            cleanup = "semeval2025" if s.mode == "semeval2025" else "plain"
            truncated = [backend.truncate([text], n, cleanup)[0] for text, n in requests.truncations]
        return Responses(generations, answer_losses, documents, token_logprobs, truncated)

    def _generations(self, requests: Requests) -> list[str]:
        """Greedy generations; with per-prompt budgets (``requests.max_new_tokens``) one backend call
        (and cache entry) per distinct budget, reassembled in request order."""
        s, backend = self.settings, self.backend
        cleanup = "semeval2025" if s.mode == "semeval2025" else "plain"
        prompts = list(requests.prompts)
        budgets = list(requests.max_new_tokens) or [s.max_new_tokens] * len(prompts)
        if len(budgets) != len(prompts):
            raise ValueError(f"the benchmark gave {len(budgets)} generation budgets for {len(prompts)} prompts")
        out: list[str] = [""] * len(prompts)
        for budget in sorted(set(budgets)):
            picked = [i for i, b in enumerate(budgets) if b == budget]
            part = [prompts[i] for i in picked]
            key = {"mode": s.mode, "max_new_tokens": budget, "engine": s.engine, "verify_margin": s.verify_margin}
            texts = self._cached("generation", key, len(part),
                                 lambda part=part, budget=budget: backend.generate(part, budget, cleanup))
            for i, text in zip(picked, texts):
                out[i] = text
        return out

    def multiple_choice(self) -> tuple[dict[str, float | None], dict[str, MMLUInfo | None], dict[str, list[dict]]]:
        """MMLU and utility accuracies (lm-eval on the in-memory model) when their specs are set, and
        their per-question rows (``mmlu.jsonl`` / ``utility.jsonl``)."""
        from harness.backends.distributed import on_main
        from harness.tasks.mcq.mmlu import run_mcq_rows

        accuracy: dict[str, float | None] = {"mmlu": None, "utility": None}
        info: dict[str, MMLUInfo | None] = {"mmlu": None, "utility": None}
        rows: dict[str, list[dict]] = {}
        for name in ("mmlu", "utility"):
            spec = getattr(self.settings, name)
            if spec is None:
                continue
            # Not cached: the spec may name a folder whose questions can change without the spec changing.
            with _Timer(self.timings, name):
                # lm-eval scores an in-memory model in one process: the main one runs it, the rest wait.
                acc, info[name], rows[name] = on_main(lambda: run_mcq_rows(self.model, self.tokenizer, spec))
            accuracy[name] = float(acc)
        return accuracy, info, rows

    def lm_eval_columns(self) -> tuple[dict[str, float], dict[str, Any] | None]:
        """``lm_eval/<task>/<metric>`` metrics and their protocol, when ``lm_eval_tasks`` is set."""
        spec = self.settings.lm_eval_tasks
        if spec is None:
            return {}, None
        from harness.backends.distributed import on_main
        from harness.tasks.lm_eval_tasks import run_lm_eval_tasks

        with _Timer(self.timings, "lm_eval"):
            return on_main(lambda: run_lm_eval_tasks(self.model, self.tokenizer, spec))

    def run_settings(self) -> dict[str, Any]:
        """The result record's ``settings``: what was asked for and how the backend ran it."""
        out = self.settings.to_dict()
        out.pop("progress", None)
        out["benchmark"] = self.task.name
        protocol = self.task.protocol()
        if protocol:
            out["protocol"] = protocol
            if self.task.requests().max_new_tokens:  # the benchmark's budgets, not the run's, applied
                out["max_new_tokens"] = None
        out["engine_stats"] = _jsonable(self.backend.stats)
        out["cache_hits"] = list(self.cache.hits)
        out["num_processes"] = num_processes()
        out["exactness"] = self.backend.exactness
        return out


def evaluate_model(model, tokenizer, benchmark: Benchmark | BenchmarkTask, settings: EvalSettings | None = None,
                   out_dir: str | Path | None = None, run: RunInfo | None = None, *,
                   backend: ModelBackend | None = None, **run_fields: Any) -> EvalResult:
    """Evaluate an in-memory model on ``benchmark`` and (when ``out_dir`` is given) write the run folder.

    ``benchmark`` is a registered benchmark (:func:`harness.tasks.load_task`) or a loaded LUME
    :class:`~harness.core.types.Benchmark`. Its requests (greedy generations, answer losses, document
    loss statistics) run through ``backend`` (default: ``settings.make_backend(model, tokenizer)``; a
    backend that loads the model from disk, vLLM, must be built with the model's folder) and the
    content-addressed cache; the MMLU and utility MCQ sets run when their specs are set; the benchmark
    scores the answers. ``run`` describes the run for the record (:class:`RunInfo`; its fields may also
    be given as keywords: ``model_info=…, label=…``). Writes ``config.json`` (when ``run.config`` is
    given), ``samples.jsonl``, ``mia.jsonl`` and ``result.json``; returns the result record.
    """
    settings = settings or EvalSettings()
    run = dataclasses.replace(run or RunInfo(), **run_fields)
    task = limit_task(as_task(benchmark), settings.limit)
    backend = backend or settings.make_backend(model, tokenizer)
    if backend.name != settings.engine:  # the cache keys on settings.engine: they must agree
        raise ValueError(f"the {backend.name!r} backend was given for settings with engine {settings.engine!r}")
    created = now()
    out = Path(out_dir) if out_dir is not None else None
    main = is_main_process()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if run.config is not None and main:
            write_config(out, run.config)

    evaluation = _Evaluation(model, tokenizer, task, settings, backend)
    model_info = evaluation.identify(run.model_info)
    # Before any model work: every text must fit the model's context (named by record id), and the
    # model's first outputs must be finite (a NaN model is named at once, not blamed on the data).
    check_requests(model, tokenizer, task, settings.max_new_tokens)
    check_weights(model, f"the model {model_info.id}")
    with FiniteOutputs(model, f"the model {model_info.id}", during="evaluation"):
        responses = evaluation.responses(task.requests())
    mcq_accuracy, mcq_info, mcq_rows = evaluation.multiple_choice()
    lm_eval_metrics, lm_eval_protocol = evaluation.lm_eval_columns()
    with _Timer(evaluation.timings, "scoring"):
        scores = task.score(responses, mcq_accuracy, settings.mode)
    timings = {**evaluation.timings, **{k: float(v) for k, v in (run.extra_timings or {}).items()}}

    files: dict[str, str] = {}
    if out is not None and main:
        files = _write_rows(out, scores, mcq_rows)
    method_info = run.method_info or MethodInfo(name="none")
    result = EvalResult(
        run_id=run.run_id or (out.name if out is not None else "in-memory"),
        label=run.label or (method_info.name if method_info.name != "none" else Path(model_info.id).name or model_info.id),
        created_at=created,
        finished_at=now(),
        benchmark=task.info(),
        model=model_info,
        method=method_info,
        metrics={**scores.metrics, **lm_eval_metrics},
        settings={**evaluation.run_settings(), **({"lm_eval_tasks": lm_eval_protocol} if lm_eval_protocol else {})},
        mmlu=mcq_info["mmlu"],
        utility=mcq_info["utility"],
        parents=[str(p) for p in run.parents],
        flags=dict(run.flags or {}),
        timings={k: round(v, 4) for k, v in timings.items()},
        files=files,
        provenance=provenance(device=evaluation.identity["device"], dtype=evaluation.identity["dtype"], seed=run.seed),
    )
    if out is not None and main:
        check_metrics(result.metrics, out / "result.json")  # a non-finite or out-of-range number is never written
        write_result(out, result)
    return result


def _write_rows(out: Path, scores: Scores, mcq_rows: Mapping[str, list[dict]] | None = None) -> dict[str, str]:
    """The per-sample files (atomically): ``samples.jsonl``, ``mia.jsonl``, and ``mmlu.jsonl`` /
    ``utility.jsonl`` per MCQ question (what bootstrap intervals resample); returns the record's ``files``."""
    fileio.write_jsonl(out / SAMPLES_FILE, scores.samples)
    files = {"samples": SAMPLES_FILE}
    if scores.documents is not None:
        fileio.write_jsonl(out / MIA_FILE, scores.documents)
        files["mia"] = MIA_FILE
    for name, rows in (mcq_rows or {}).items():
        fileio.write_jsonl(out / MCQ_FILES[name], rows)
        files[name] = MCQ_FILES[name]
    return files


__all__ = ["EvalSettings", "RunInfo", "evaluate_model", "model_identity", "MODES"]
