"""Evaluate one model on one benchmark: generations, answer losses, MIA losses, MCQ, scores, files.

``evaluate_model`` works on an already-loaded model (``unlearnbench run`` calls it right after
unlearning, with no re-save) and writes a run folder's ``samples.jsonl``, ``mia.jsonl`` and
``result.json`` (see ``harness.records`` and ``docs/contracts.md``). Per-sample outputs go through a
content-addressed cache (``harness.cache``), so re-evaluating an unchanged model skips the model work.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import fileio
from .distributed import is_main_process, num_processes
from .records import (MIA_FILE, SAMPLES_FILE, BenchmarkInfo, EvalResult, MethodInfo, ModelInfo, now, provenance,
                      write_result)
from .types import Benchmark

log = logging.getLogger("unlearnbench.evaluate")

MODES = ("semeval2025", "plain")


#: ``hf``: batched, verified-exact; ``reference``: the organisers' loop; ``vllm``: vLLM generation.
ENGINES = ("hf", "reference", "vllm")


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
    """A ``harness.mmlu`` spec, or None to skip MMLU."""
    utility: Any = None
    """A ``harness.mmlu`` spec for the synthetic world's general-knowledge MCQ set, or None."""
    engine: str = "hf"
    tensor_parallel_size: int = 1
    """vLLM only: GPUs per model (tensor parallelism)."""
    model_path: str | None = None
    """vLLM only: the folder vLLM loads (the saved model or LoRA run folder being evaluated)."""
    """``hf``: batched, verified-exact decoding with transformers; ``reference``: the organisers'
    one-record-at-a-time loop (slow; for comparison)."""
    verify_margin: float | None = None
    """Relative top-1/top-2 logit gap below which a row is regenerated one at a time (None: the
    dtype's default, see ``harness.engine.default_margin``); 0 disables the verification."""
    answer_losses: bool = True
    progress: bool = True
    cache: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {list(MODES)}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; expected one of {list(ENGINES)}")
        if self.engine == "vllm":
            from .vllm_engine import require_vllm

            require_vllm()  # fail before any work when the extra is not installed
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0 < self.min_k <= 1:
            raise ValueError(f"min_k must be in (0, 1], got {self.min_k}")
        if self.batch_size != "auto" and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}")

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
    from .engine import model_device, model_dtype_name
    from .models import model_config_hash, tokenizer_hash, weight_hash

    return {
        "weights": weight_hash_value or weight_hash(model),
        "config": model_config_hash(model),
        "tokenizer": tokenizer_hash(tokenizer),
        "dtype": model_dtype_name(model),
        "device": model_device(model).type,
    }


def _cached(cache, phase: str, identity: dict, bench_hash: str, phase_settings: dict, n: int, compute):
    from .cache import cache_key

    key = cache_key(phase, identity, bench_hash, phase_settings)
    value = cache.get(phase, key, n_expected=n)
    if value is not None:
        return value, True
    value = compute()
    if is_main_process():  # under data parallelism every process holds the gathered value
        cache.put(phase, key, value)
    return value, False


def _run_mcq(model, tokenizer, spec: Any, name: str):
    try:
        from . import mmlu as mcq
    except ImportError as exc:  # pragma: no cover - harness.mmlu is part of the package
        raise RuntimeError(f"{name} evaluation needs harness.mmlu, which cannot be imported ({exc})") from exc
    return mcq.run_mcq(model, tokenizer, spec)


def evaluate_model(model, tokenizer, benchmark: Benchmark, settings: EvalSettings | None = None,
                   out_dir: str | Path | None = None, model_info: ModelInfo | None = None,
                   method_info: MethodInfo | None = None, label: str | None = None, parents: Iterable[str] = (),
                   extra_timings: Mapping[str, float] | None = None, config: Mapping[str, Any] | None = None,
                   run_id: str | None = None, seed: int | None = None,
                   flags: Mapping[str, Any] | None = None) -> EvalResult:
    """Evaluate an in-memory model on ``benchmark`` and (when ``out_dir`` is given) write the run folder.

    Phases: greedy generation for every forget/retain record; answer loss per record; MIA statistics
    per member/non-member document (when the benchmark has MIA sets); MMLU and utility MCQ accuracy
    (when their specs are set); scoring with :func:`metrics.semeval.compute_metrics`. ``config`` is
    written as ``config.json`` when given; ``flags`` go into the record's ``flags`` (e.g. the unlearning
    runner's no-op check). Returns the result record (also written as ``result.json``).
    """
    from metrics.semeval import compute_metrics, score_rows

    from . import engine
    from .cache import EvalCache
    from .distributed import map_sharded, on_main
    from .models import model_info as make_model_info
    from .records import write_config

    settings = settings or EvalSettings()
    created = now()
    timings: dict[str, float] = {}
    stats: dict[str, Any] = {}
    out = Path(out_dir) if out_dir is not None else None
    main = is_main_process()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if config is not None and main:
            write_config(out, dict(config))

    with _Timer(timings, "hash"):
        if model_info is None or not model_info.weight_hash:
            model_info = make_model_info(model, id=model_info.id if model_info else None,
                                         base_model=model_info.base_model if model_info else None)
        identity = model_identity(model, tokenizer, model_info.weight_hash)
    cache = EvalCache(settings.cache_dir, enabled=settings.cache)
    bench_hash = benchmark.content_hash
    records = benchmark.records
    prompts = [r.input for r in records]
    gen_settings = {"mode": settings.mode, "max_new_tokens": settings.max_new_tokens, "engine": settings.engine,
                    "verify_margin": settings.verify_margin}

    # Under ``accelerate launch`` / torchrun the records are split across processes without padding or
    # duplicates and every process receives the gathered results in input order: generation maps
    # contiguous shards (batched decoding is verified-exact per row); the loss phases shard whole
    # batches inside the engine (harness.engine._token_scores), so their floats are bit-identical.
    def gen_shard(shard):
        res = engine.generate_detailed(
            model, tokenizer, shard, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
            cleanup="semeval2025" if settings.mode == "semeval2025" else "plain", progress=settings.progress,
            verify_margin=settings.verify_margin, engine="reference" if settings.engine == "reference" else "batched",
            stats=stats)
        return res.texts

    def gen_compute():
        if settings.engine == "vllm":
            from . import vllm_engine

            if not settings.model_path:
                raise ValueError("the vLLM engine loads the model from disk: EvalSettings.model_path is required")
            # vLLM schedules its own batches (and GPUs via tensor parallelism): no sharding here.
            return vllm_engine.generate(settings.model_path, prompts, max_new_tokens=settings.max_new_tokens,
                                        dtype=settings.dtype, tensor_parallel_size=settings.tensor_parallel_size,
                                        cleanup="semeval2025" if settings.mode == "semeval2025" else "plain")
        return map_sharded(gen_shard, prompts)

    with _Timer(timings, "generation"):
        generations, _ = _cached(cache, "generation", identity, bench_hash, gen_settings, len(records), gen_compute)

    answer_loss: list[float | None] = [None] * len(records)
    if settings.answer_losses:
        with _Timer(timings, "answer_loss"):
            answer_loss, _ = _cached(
                cache, "answer_loss", identity, bench_hash, {}, len(records),
                lambda: [_finite(x) for x in engine.answer_losses(
                    model, tokenizer, prompts, [r.output for r in records], batch_size=settings.batch_size,
                    progress=settings.progress, stats=stats)])

    mia_rows: list[dict[str, Any]] | None = None
    if benchmark.has_mia:
        docs = list(benchmark.members) + list(benchmark.nonmembers)

        def mia_compute():
            rows = engine.sequence_losses(model, tokenizer, [d.document for d in docs], batch_size=settings.batch_size,
                                          k=settings.min_k, progress=settings.progress, stats=stats)
            return [{k: (_finite(v) if isinstance(v, float) else v) for k, v in row.items()} for row in rows]

        with _Timer(timings, "mia"):
            losses, _ = _cached(cache, "mia", identity, bench_hash, {"min_k": settings.min_k}, len(docs), mia_compute)
        mia_rows = [{"set": d.set, "id": d.id, **row} for d, row in zip(docs, losses)]

    mcq_acc: dict[str, float | None] = {"mmlu": None, "utility": None}
    mcq_info: dict[str, Any] = {"mmlu": None, "utility": None}
    for name in ("mmlu", "utility"):
        spec = getattr(settings, name)
        if spec is None:
            continue
        # Not cached: the spec may name a folder whose questions can change without the spec changing.
        with _Timer(timings, name):
            # lm-eval scores an in-memory model in one process: the main one runs it, the rest wait.
            acc, info = on_main(lambda: _run_mcq(model, tokenizer, spec, name))
        mcq_acc[name] = float(acc)
        mcq_info[name] = info

    with _Timer(timings, "scoring"):
        base_rows = [{"split": r.split, "id": r.id, "task": r.task, "kind": r.kind, "input": r.input,
                      "reference": r.output, "generation": g, "answer_loss": al}
                     for r, g, al in zip(records, generations, answer_loss)]
        samples = score_rows(base_rows, mode=settings.mode)
        # The rows were just scored (once): aggregate them without scoring every generation again.
        metrics = compute_metrics(samples, mia_rows, mmlu=mcq_acc["mmlu"], utility=mcq_acc["utility"],
                                  mode=settings.mode, rescore=False)
    if extra_timings:
        for k, v in extra_timings.items():
            timings[k] = float(v)

    files: dict[str, str] = {}
    if out is not None and main:
        fileio.write_jsonl(out / SAMPLES_FILE, samples)
        files["samples"] = SAMPLES_FILE
        if mia_rows is not None:
            fileio.write_jsonl(out / MIA_FILE, mia_rows)
            files["mia"] = MIA_FILE

    method_info = method_info or MethodInfo(name="none")
    run_settings = settings.to_dict()
    run_settings.pop("progress", None)
    run_settings["engine_stats"] = _jsonable(stats)
    run_settings["cache_hits"] = list(cache.hits)
    run_settings["num_processes"] = num_processes()
    run_settings["exactness"] = (
        "one-at-a-time reference" if settings.engine == "reference" else
        "batched; rows with a near-tie logit step checked one at a time up to their last near tie and "
        "regenerated one at a time when they differ (exact in float32)")
    result = EvalResult(
        run_id=run_id or (out.name if out is not None else "in-memory"),
        label=label or (method_info.name if method_info.name != "none" else Path(model_info.id).name or model_info.id),
        created_at=created,
        finished_at=now(),
        benchmark=BenchmarkInfo(name=benchmark.name, content_hash=bench_hash, path=benchmark.path,
                                counts=benchmark.counts()),
        model=model_info,
        method=method_info,
        metrics=metrics,
        settings=run_settings,
        mmlu=mcq_info["mmlu"],
        utility=mcq_info["utility"],
        parents=[str(p) for p in parents],
        flags=dict(flags or {}),
        timings={k: round(v, 4) for k, v in timings.items()},
        files=files,
        provenance=provenance(device=identity["device"], dtype=identity["dtype"], seed=seed),
    )
    if out is not None and main:
        write_result(out, result)
    return result


__all__ = ["EvalSettings", "evaluate_model", "model_identity", "MODES"]
