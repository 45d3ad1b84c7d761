"""Unlearning runs: resolve a method's hyperparameters, train, save, evaluate — into one run folder.

The CLI commands ``unlearn`` and ``run`` are thin wrappers over :func:`run_unlearning`; other parts
(the ZJUKLAB merge system, the analyses) call it directly.

Hyperparameters are resolved in layers, later ones winning: the method's defaults (its ``__init__``),
the named preset when ``preset`` is set (``cls.presets[name]``), then the config file, then ``--set``
overrides. Unknown keys are refused with the list of valid ones. Everything in force lands in the
run's ``config.json`` and in the result record's ``method.params``.

A run folder (see :mod:`harness.core.records`) gets ``config.json``, ``train_log.jsonl``, ``log.txt``,
``model/`` (full weights as safetensors, or peft LoRA adapters + tokenizer; ``config.json`` records
``base_model`` so ``PeftModel.from_pretrained(base, RUN_DIR / "model")`` works), optional
``snapshots/`` and ``checkpoints/``, and after evaluation ``result.json``, ``samples.jsonl``,
``mia.jsonl``. A finished run with the same settings is skipped (HELM style); a finished run with
different settings is refused unless ``force``.

Every run is checked for doing nothing (:mod:`harness.training.noop`): a run whose forget answer
loss barely moved is warned about in its log and flagged in ``config.json`` and the result record
(``flags.no_op_suspected``, with both losses).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.core import fileio
from harness.core.errors import ConfigError
from harness.core.records import (CONFIG_FILE, RESULT_FILE, TRAIN_LOG_FILE, EvalResult, MethodInfo, RunConfig, read_result,
                                  write_config)
from harness.core.registry import METHODS
from harness.core.types import UnlearnContext
from harness.evaluation.checks import FiniteOutputs, check_requests, check_weights

log = logging.getLogger("unlearnbench.runner")

MODEL_DIR = "model"
LOG_FILE = "log.txt"
#: Settings that decide a run's outcome; a finished run is reused only when all of them match.
_IDENTITY_KEYS = ("method", "params", "model", "data", "mia", "benchmark", "benchmark_options", "seed", "dtype",
                  "eval")
#: Evaluation settings that earlier versions recorded and that no longer exist (``model_path``: vLLM's
#: folder, now part of building its backend); ignored when a finished run's config is compared.
_RETIRED_EVAL_KEYS = ("model_path",)


# ------------------------------------------------------------------------------------------------
# parameters
def parse_value(text: str) -> Any:
    """``--set`` values: a JSON literal, else a TOML literal, else the string itself.

    ``3`` → 3, ``1e-4`` → 0.0001, ``true`` → True, ``null`` → None, ``[1, 2]`` → [1, 2],
    ``'a'`` (TOML) → "a", ``cosine`` → "cosine".
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except Exception:
        return text


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON (``.json``) mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # pragma: no cover
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown config format {suffix!r}; expected .toml, .yaml, .yml or .json")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{path}: cannot parse ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def method_class(name: str):
    return METHODS.get(name)


def resolve_params(method: str | type, *layers: Mapping[str, Any], source_names: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults, then the preset (if any layer or the defaults name one), then each layer in order;
    every value checked against the method's declared type and range (:mod:`harness.core.params`),
    a refusal naming where the value came from."""
    from harness.core.params import validate_params

    cls = method_class(method) if isinstance(method, str) else method
    name = method if isinstance(method, str) else getattr(cls, "name", cls.__name__)
    defaults = cls.defaults()
    explicit: dict[str, Any] = {}
    sources = {key: f"method {name!r} default" for key in defaults}
    explicit_sources: dict[str, str] = {}
    for i, layer in enumerate(layers):
        source = source_names[i] if i < len(source_names) and source_names[i] else "parameters"
        if layer.get("preset") is not None and "preset" not in defaults:
            raise ConfigError(f"method {name!r} has no presets (it takes no 'preset' parameter)")
        unknown = sorted(set(layer) - set(defaults))
        if unknown:
            raise ConfigError(f"unknown hyperparameter(s) {unknown} for method {name!r} (from {source}); valid: "
                              f"{', '.join(sorted(defaults))}")
        explicit.update(layer)
        explicit_sources.update({key: source for key in layer})
    params = dict(defaults)
    preset = explicit.get("preset", defaults.get("preset"))
    if preset is not None:
        presets = getattr(cls, "presets", {}) or {}
        if not isinstance(preset, str) or preset not in presets:
            raise ConfigError(f"unknown preset {preset!r} for method {name!r}; valid: {sorted(presets) or '(none)'}")
        params.update(presets[preset])
        sources.update({key: f"preset {preset!r} of method {name!r}" for key in presets[preset]})
    params.update(explicit)
    sources.update(explicit_sources)
    validate_params(cls, params, sources)
    return params


def build_method(method: str, params: Mapping[str, Any]):
    """Instantiate a registered method with resolved parameters (bad values become a ConfigError)."""
    cls = method_class(method)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method {method!r}: {exc}") from exc


def jsonable(value: Any) -> Any:
    """Parameters as they are written to JSON (tuples → lists), so configs compare equal after a round trip."""
    return json.loads(fileio.dumps(value, indent=None))


# ------------------------------------------------------------------------------------------------
# run folders
@dataclass
class RunOutcome:
    run_dir: Path
    params: dict[str, Any]
    result: EvalResult | None
    """The evaluation record (``None`` with ``evaluate=False``)."""
    unlearn_seconds: float | None
    skipped: bool = False
    model: Any = None
    """The unlearned model in memory (LoRA merged after its adapters were saved); ``None`` if skipped."""
    tokenizer: Any = None


def _same_run(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    old = {"benchmark": "lume", **old}  # configs written before benchmarks were named read LUME files
    if isinstance(old.get("eval"), dict):
        old = {**old, "eval": {k: v for k, v in old["eval"].items() if k not in _RETIRED_EVAL_KEYS}}
    return all(jsonable(old.get(k)) == jsonable(new.get(k)) for k in _IDENTITY_KEYS)


def _finished(run_dir: Path, evaluate: bool) -> bool:
    if evaluate:
        return (run_dir / RESULT_FILE).is_file()
    return (run_dir / MODEL_DIR).is_dir() and (run_dir / CONFIG_FILE).is_file()


def attach_run_log(run_dir: Path) -> logging.Handler:
    """Copy the ``unlearnbench`` loggers' INFO messages into ``run_dir/log.txt`` (remove the handler when done)."""
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("unlearnbench")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def _resolve_model_path(model: str | Path) -> str:
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


@dataclass
class RunOptions:
    """Everything about an unlearning run beside the method, the model, the data and the run folder."""

    params: Mapping[str, Any] | None = None
    """Hyperparameters, applied last (over the defaults, the preset and ``param_layers``)."""
    param_layers: Sequence[Mapping[str, Any]] = ()
    """Hyperparameter layers applied in order over the defaults (a config file, then ``--set``)."""
    layer_names: Sequence[str] = ()
    """Where each layer came from, for error messages."""
    evaluate: bool = True
    eval_settings: Any = None
    """A :class:`harness.evaluation.pipeline.EvalSettings` (default settings when ``None``)."""
    mia: str | Path | None = None
    benchmark: str | None = None
    """The registered benchmark the data holds (default: detected from the folder)."""
    benchmark_options: dict[str, str] | None = None
    """The benchmark's own options (``--benchmark-option``, ``--reference``)."""
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    label: str | None = None
    parents: Sequence[str] = ()
    command: str = "unlearn"
    """Recorded as ``config.json``'s ``command``."""
    config_file: str | None = None
    """The ``unlearnbench run`` config file, recorded in ``config.json``."""
    force: bool = False
    """Redo a finished run (with the same or other settings) in the same folder."""
    progress: bool = True
    trust_remote_code: bool = False
    keep_model: bool = True
    """Return the unlearned model and tokenizer in the outcome."""


def run_unlearning(method: str, model: str | Path, data: str | Path, out: str | Path,
                   options: RunOptions | None = None, **option_fields: Any) -> RunOutcome:
    """Unlearn ``model`` with ``method`` on the benchmark at ``data`` and write the run folder ``out``.

    ``options`` (:class:`RunOptions`; its fields may also be given as keywords, ``seed=1, evaluate=False``)
    hold the hyperparameter layers, the evaluation settings and the rest. A finished run with the same
    settings is skipped; one with other settings is refused unless ``force``.
    """
    from harness.backends.loading import resolve_device
    from harness.tasks import load_task

    from harness.backends.distributed import is_main_process, shared_token
    from harness.core.transaction import RunTransaction
    from harness.evaluation.runfolder import output_inputs

    opts = dataclasses.replace(options or RunOptions(), **option_fields)
    run_dir = Path(out)
    layers = list(opts.param_layers) + ([dict(opts.params)] if opts.params else [])
    names = list(opts.layer_names) + (["params"] if opts.params else [])
    resolved = jsonable(resolve_params(method, *layers, source_names=names))
    method_obj = build_method(method, resolved)
    # --out is checked before anything is loaded or trained (not a file, not an input, not around one).
    tx = RunTransaction(run_dir, command=opts.command, token=shared_token(), main=is_main_process(),
                        inputs=output_inputs(model=model, data=data, mia=opts.mia, settings=opts.eval_settings))
    task = load_task(data, name=opts.benchmark, mia=opts.mia, options=opts.benchmark_options)
    try:
        opts.device = resolve_device(opts.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if opts.evaluate and opts.eval_settings is None:
        from harness.evaluation.pipeline import EvalSettings

        opts.eval_settings = EvalSettings(dtype=opts.dtype, device=opts.device, progress=opts.progress)
    base_model = _resolve_model_path(model)
    if resolved.get("finetune") == "lora" and (Path(base_model) / "adapter_config.json").is_file():
        raise ConfigError(f"{model} is a LoRA adapter folder; LoRA unlearning needs a full model to attach new "
                          "adapters to (merge it first, or use finetune=full)")
    preset = resolved.get("preset")
    opts.label = opts.label or (f"{method}:{preset}" if preset else method)
    config = RunConfig(
        command=opts.command, argv=sys.argv[1:], method=method, params=resolved, model=str(model),
        base_model=base_model, data=str(Path(data).resolve()), mia=str(opts.mia) if opts.mia else None,
        seed=opts.seed, device=opts.device, dtype=opts.dtype, label=opts.label, parents=list(opts.parents),
        finetune=resolved.get("finetune"), model_dir=MODEL_DIR, benchmark=task.name,
        benchmark_options=opts.benchmark_options,
        eval=opts.eval_settings.to_dict() if (opts.evaluate and opts.eval_settings is not None) else None,
        config_file=opts.config_file)
    finished = _finished_run(run_dir, config, opts, task)
    if finished is not None:
        return finished
    return _UnlearningRun(method_obj, task, config, opts, tx).run()


def run_identity(config: RunConfig) -> dict[str, Any]:
    """What decides an unlearning run's numbers besides the content of its inputs (hashed into its
    manifest's ``settings_sha256``): method, parameters, benchmark, seed, dtype, evaluation settings."""
    from harness.evaluation.runfolder import eval_identity

    return {"method": config.method, "params": jsonable(config.params), "benchmark": config.benchmark,
            "benchmark_options": config.benchmark_options, "seed": config.seed, "dtype": config.dtype,
            "finetune": config.finetune, "eval": eval_identity(config.eval)}


def _finished_run(run_dir: Path, config: RunConfig, opts: RunOptions, task) -> RunOutcome | None:
    """The outcome of a finished run in ``run_dir`` that is this very run (skipped, HELM style), else
    ``None`` (the run is made; an existing folder is replaced only when the new run is complete).

    "Finished" means its manifest verifies and matches: same settings, same inputs by content (model
    weights, benchmark records, MCQ sets), same code. Other settings are refused unless ``force`` (a
    typo in ``--out`` must not replace a run); changed inputs or code, or files that do not belong
    together, make the run again.
    """
    from harness.core.manifest import MANIFEST_FILE, canonical_hash, compare_inputs, read_manifest, verify
    from harness.evaluation.runfolder import current_inputs

    if opts.force or not run_dir.is_dir():
        return None
    if not (run_dir / MANIFEST_FILE).is_file():
        if _finished(run_dir, opts.evaluate):
            try:
                old = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = {}
            if not _same_run(old, config.to_json()):
                raise ConfigError(f"{run_dir} already holds a finished run with different settings; choose another "
                                  "--out or pass --force to overwrite it")
            log.info("%s holds a run without a manifest (interrupted, or made before run manifests): its inputs "
                     "cannot be checked, so it is made again", run_dir)
        return None
    problem = verify(run_dir)
    if problem is not None:
        log.warning("%s is not a complete run (%s); making it again", run_dir, problem)
        return None
    manifest = read_manifest(run_dir)
    if manifest.get("settings_sha256") != canonical_hash(run_identity(config)):
        raise ConfigError(f"{run_dir} already holds a finished run with different settings; choose another --out "
                          "or pass --force to overwrite it")
    changed = [d for d in compare_inputs(manifest, current_inputs(model=config.base_model, task=task,
                                                                  settings=opts.eval_settings if opts.evaluate else None),
                                         settings=None) if d != "settings differ"]
    if changed:
        log.warning("%s holds this run made from other inputs (%s); making it again", run_dir, "; ".join(changed))
        return None
    log.info("%s already holds this finished run; skipped (use --force to redo it)", run_dir)
    result = read_result(run_dir) if opts.evaluate else None
    return RunOutcome(run_dir, config.params, result, None, skipped=True)


class _UnlearningRun:
    """One run's work: unlearn, save, evaluate -- all into the transaction's staging folder, which
    becomes the run folder only when complete. Under data-parallel training (accelerate launch /
    torchrun) only the main process writes; the others train their shards and take part in the
    evaluation."""

    def __init__(self, method_obj, task, config: RunConfig, opts: RunOptions, tx):
        from harness.backends.distributed import is_main_process

        self.method_obj, self.task, self.config, self.opts, self.tx = method_obj, task, config, opts, tx
        self.final = tx.final
        self.run_dir = tx.path
        """Where everything is written (the staging folder); records name ``self.final``."""
        self.main = is_main_process()

    def run(self) -> RunOutcome:
        from harness.backends.distributed import wait_for_everyone
        from harness.evaluation.runfolder import record_inputs

        with self.tx:
            wait_for_everyone()
            handler = attach_run_log(self.run_dir) if self.main else logging.NullHandler()
            try:
                net, tokenizer, seconds = self._unlearn()
                self.config.unlearn_seconds = round(seconds, 3)
                result = None
                if self.opts.evaluate:
                    result = self._evaluate(net, tokenizer, seconds)
                elif self.main:
                    write_config(self.run_dir, self.config)
            finally:
                logging.getLogger("unlearnbench").removeHandler(handler)
                handler.close()
            record_inputs(self.tx, model=self.config.base_model, task=self.task,
                          settings=self.opts.eval_settings if self.opts.evaluate else None)
            self.tx.settings = run_identity(self.config)
        keep = self.opts.keep_model
        return RunOutcome(self.tx.given, self.config.params, result, seconds, model=net if keep else None,
                          tokenizer=tokenizer if keep else None)

    def _context(self, started: float) -> UnlearnContext:
        """What the method is handed besides model, tokenizer and data."""
        train_log, main, opts, config = self.run_dir / TRAIN_LOG_FILE, self.main, self.opts, self.config

        def log_event(event: Mapping[str, Any]) -> None:
            if main:
                fileio.append_jsonl(train_log, {**event, "time": round(time.perf_counter() - started, 3)})

        # Composite methods (zjuklab_merge) save and evaluate runs of their own: they need to know
        # where the model and data came from and how the run is evaluated.
        extra = {"model_path": config.base_model, "data_path": config.data, "mia_path": config.mia,
                 "eval_settings": opts.eval_settings if opts.evaluate else None,
                 # out_dir is the staging folder; records name the run folder it becomes.
                 "final_out_dir": str(self.final)}
        return UnlearnContext(out_dir=self.run_dir, seed=opts.seed, device=opts.device, dtype=opts.dtype,
                              log_event=log_event, progress=opts.progress,
                              logger=logging.getLogger(f"unlearnbench.method.{config.method}"), extra=extra,
                              task=self.task)

    def _unlearn(self):
        """Load the model, run the method, save the run's model; returns (model, tokenizer, seconds)."""
        from harness.backends.distributed import wait_for_everyone
        from harness.backends.loading import load_model
        from harness.training.loop import save_model_dir
        from harness.training.noop import NoOpProbe

        config, opts = self.config, self.opts
        # The hyperparameters (often hundreds of characters wide) are in config.json; -vv shows them here.
        log.info("run %s: method %s on %s (%s)", self.final, config.method, config.model, self.task.data.name)
        log.debug("run %s: params %s", self.final, config.params)
        try:
            net, tokenizer = load_model(config.base_model, dtype=opts.dtype, device=opts.device,
                                        trust_remote_code=opts.trust_remote_code)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if opts.evaluate:  # a record the evaluation cannot take must fail now, not after training
            check_requests(net, tokenizer, self.task, opts.eval_settings.max_new_tokens)
        probe = NoOpProbe.for_task(self.task, seed=opts.seed)
        probe.before(net, tokenizer)
        started = time.perf_counter()
        check_weights(net, f"the model {config.base_model}")
        with FiniteOutputs(net, f"the model {config.base_model}", during="training"):
            net = self.method_obj.unlearn(net, tokenizer, self.task.data, self._context(started))
        seconds = time.perf_counter() - started
        log.info("unlearning took %.1f s", seconds)
        if self.main:
            save_model_dir(net, tokenizer, self.run_dir / MODEL_DIR)
        wait_for_everyone()
        if hasattr(net, "merge_and_unload") and hasattr(net, "peft_config"):
            # Adapters are on disk; evaluate the merged weights, which is also what
            # ``unlearnbench evaluate --model RUN/model`` loads (same weight hash).
            net = net.merge_and_unload()
        net.eval()
        self.config.flags = probe.after(net, tokenizer, where=str(self.final))
        return net, tokenizer, seconds

    def _evaluate(self, net, tokenizer, seconds: float) -> EvalResult:
        from harness.backends.loading import model_info
        from harness.evaluation.pipeline import RunInfo, evaluate_model

        config, settings = self.config, self.opts.eval_settings
        model_dir = self.run_dir / MODEL_DIR
        info = RunInfo(model_info=model_info(net, id=str(self.final / MODEL_DIR), base_model=config.base_model),
                       method_info=MethodInfo(name=config.method, params=config.params), label=config.label,
                       parents=list(config.parents), extra_timings={"unlearn": round(seconds, 3)}, config=config,
                       seed=config.seed, run_id=self.final.name, flags=config.flags)
        # The backend reads the saved run when it loads from disk (vLLM serves LoRA adapters itself).
        backend = settings.make_backend(net, tokenizer, model_path=model_dir)
        return evaluate_model(net, tokenizer, self.task, settings, self.run_dir, info, backend=backend)


__all__ = ["run_unlearning", "attach_run_log", "RunOptions", "resolve_params", "build_method", "parse_overrides", "parse_value",
           "read_config_file", "RunOutcome", "ConfigError", "MODEL_DIR"]
