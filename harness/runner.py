"""Unlearning runs: resolve a method's hyperparameters, train, save, evaluate — into one run folder.

The CLI commands ``unlearn`` and ``run`` are thin wrappers over :func:`run_unlearning`; other parts
(the ZJUKLAB merge system, the analyses) call it directly.

Hyperparameters are resolved in layers, later ones winning: the method's defaults (its ``__init__``),
the named preset when ``preset`` is set (``cls.presets[name]``), then the config file, then ``--set``
overrides. Unknown keys are refused with the list of valid ones. Everything in force lands in the
run's ``config.json`` and in the result record's ``method.params``.

A run folder (see :mod:`harness.records`) gets ``config.json``, ``train_log.jsonl``, ``log.txt``,
``model/`` (full weights as safetensors, or peft LoRA adapters + tokenizer; ``config.json`` records
``base_model`` so ``PeftModel.from_pretrained(base, RUN_DIR / "model")`` works), optional
``snapshots/`` and ``checkpoints/``, and after evaluation ``result.json``, ``samples.jsonl``,
``mia.jsonl``. A finished run with the same settings is skipped (HELM style); a finished run with
different settings is refused unless ``force``.

Every run is checked for doing nothing: the mean forget answer loss on a fixed sample of forget
records is measured before and after unlearning, and a run that moved it by less than the no-op
threshold (``NO_OP_RELATIVE``) is warned about in its log and flagged in its result record
(``flags.no_op_suspected``, with both losses).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import fileio
from .cli import UserError
from .records import CONFIG_FILE, RESULT_FILE, TRAIN_LOG_FILE, EvalResult, MethodInfo, read_result
from .registry import METHODS
from .types import UnlearnContext

log = logging.getLogger("unlearnbench.runner")

MODEL_DIR = "model"
LOG_FILE = "log.txt"
#: Settings that decide a run's outcome; a finished run is reused only when all of them match.
_IDENTITY_KEYS = ("method", "params", "model", "data", "mia", "seed", "dtype", "eval")
#: The no-op check: a run whose mean forget answer loss (over a fixed sample of NO_OP_SAMPLE forget
#: records) moved by less than max(NO_OP_RELATIVE x its starting value, NO_OP_ABSOLUTE) nats is
#: flagged ``flags.no_op_suspected`` and warned about. Measured on the embedded target (start 0.0316):
#: RMU with the WMDP retain weight moved it by 0.0003 (1 %, nothing else changed either); the weakest
#: run that did change scores in the demo sweeps moved it by 0.009 (29 %).
NO_OP_RELATIVE = 0.05
NO_OP_ABSOLUTE = 1e-3
NO_OP_SAMPLE = 64


class ConfigError(UserError):
    """A configuration file or override the user can fix (unknown key, unreadable file, bad value)."""


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
    """Defaults, then the preset (if any layer or the defaults name one), then each layer in order."""
    cls = method_class(method) if isinstance(method, str) else method
    name = method if isinstance(method, str) else getattr(cls, "name", cls.__name__)
    defaults = cls.defaults()
    explicit: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        if layer.get("preset") is not None and "preset" not in defaults:
            raise ConfigError(f"method {name!r} has no presets (it takes no 'preset' parameter)")
        unknown = sorted(set(layer) - set(defaults))
        if unknown:
            where = f" (from {source_names[i]})" if i < len(source_names) and source_names[i] else ""
            raise ConfigError(f"unknown hyperparameter(s) {unknown} for method {name!r}{where}; valid: "
                              f"{', '.join(sorted(defaults))}")
        explicit.update(layer)
    params = dict(defaults)
    preset = explicit.get("preset", defaults.get("preset"))
    if preset is not None:
        presets = getattr(cls, "presets", {}) or {}
        if preset not in presets:
            raise ConfigError(f"unknown preset {preset!r} for method {name!r}; valid: {sorted(presets) or '(none)'}")
        params.update(presets[preset])
    params.update(explicit)
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
    return all(jsonable(old.get(k)) == jsonable(new.get(k)) for k in _IDENTITY_KEYS)


def _finished(run_dir: Path, evaluate: bool) -> bool:
    if evaluate:
        return (run_dir / RESULT_FILE).is_file()
    return (run_dir / MODEL_DIR).is_dir() and (run_dir / CONFIG_FILE).is_file()


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("unlearnbench")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def forget_answer_loss(model, tokenizer, records) -> float | None:
    """Mean answer loss (nats per token) of ``records``, the quantity the no-op check compares."""
    import math

    from . import engine

    losses = engine.answer_losses(model, tokenizer, [r.input for r in records], [r.output for r in records],
                                  progress=False)
    losses = [x for x in losses if x is not None]
    value = sum(losses) / len(losses) if losses else None
    return value if value is not None and math.isfinite(value) else None


def no_op_flags(before: float | None, after: float | None) -> dict[str, Any]:
    """``{"no_op_suspected": …, "forget_answer_loss_before": …, "forget_answer_loss_after": …}``."""
    suspected = (before is not None and after is not None
                 and abs(after - before) < max(NO_OP_RELATIVE * abs(before), NO_OP_ABSOLUTE))
    return {"no_op_suspected": suspected, "forget_answer_loss_before": before, "forget_answer_loss_after": after}


def _resolve_model_path(model: str | Path) -> str:
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def run_unlearning(method: str, model: str | Path, data: str | Path, out: str | Path, *,
                   params: Mapping[str, Any] | None = None, param_layers: Sequence[Mapping[str, Any]] = (),
                   layer_names: Sequence[str] = (), evaluate: bool = True, eval_settings: Any = None,
                   mia: str | Path | None = None, seed: int = 0, device: str = "cpu", dtype: str = "float32",
                   label: str | None = None, parents: Sequence[str] = (), command: str = "unlearn",
                   extra_config: Mapping[str, Any] | None = None, force: bool = False, progress: bool = True,
                   trust_remote_code: bool = False, keep_model: bool = True) -> RunOutcome:
    """Unlearn ``model`` with ``method`` on the benchmark at ``data`` and write the run folder ``out``.

    ``params`` (or ``param_layers``, applied in order over the defaults) are the hyperparameters.
    ``eval_settings`` is a :class:`harness.evaluate.EvalSettings` (default settings when ``None``).
    """
    from .data import load_benchmark
    from .models import load_model, model_info, resolve_device
    from .training import save_model_dir

    run_dir = Path(out)
    layers = list(param_layers) + ([dict(params)] if params else [])
    names = list(layer_names) + (["params"] if params else [])
    resolved = jsonable(resolve_params(method, *layers, source_names=names))
    method_obj = build_method(method, resolved)
    bench = load_benchmark(data, mia=mia)
    try:
        device = resolve_device(device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if evaluate and eval_settings is None:
        from .evaluate import EvalSettings

        eval_settings = EvalSettings(dtype=dtype, device=device, progress=progress)
    base_model = _resolve_model_path(model)
    if resolved.get("finetune") == "lora" and (Path(base_model) / "adapter_config.json").is_file():
        raise ConfigError(f"{model} is a LoRA adapter folder; LoRA unlearning needs a full model to attach new "
                          "adapters to (merge it first, or use finetune=full)")
    preset = resolved.get("preset")
    label = label or (f"{method}:{preset}" if preset else method)
    config: dict[str, Any] = {
        "command": command, "argv": sys.argv[1:], "method": method, "params": resolved, "model": str(model),
        "base_model": base_model, "data": str(Path(data).resolve()), "mia": str(mia) if mia else None,
        "seed": seed, "device": device, "dtype": dtype, "label": label, "parents": list(parents),
        "finetune": resolved.get("finetune"), "model_dir": MODEL_DIR,
        "eval": eval_settings.to_dict() if (evaluate and eval_settings is not None) else None,
        **dict(extra_config or {}),
    }

    if _finished(run_dir, evaluate) and not force:
        try:
            old = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        if _same_run(old, config):
            log.info("%s already holds this finished run; skipped (use --force to redo it)", run_dir)
            result = read_result(run_dir) if evaluate else None
            return RunOutcome(run_dir, resolved, result, None, skipped=True)
        raise ConfigError(f"{run_dir} already holds a finished run with different settings; choose another "
                          "--out or pass --force to overwrite it")
    from .distributed import is_main_process, wait_for_everyone

    # Under data-parallel training (accelerate launch / torchrun) only the main process touches the
    # run folder; the others train their shards and take part in the evaluation.
    main = is_main_process()
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        for stale in (TRAIN_LOG_FILE, RESULT_FILE, "snapshots", "checkpoints", MODEL_DIR):
            target = run_dir / stale
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        fileio.write_json(run_dir / CONFIG_FILE, config)
    wait_for_everyone()
    handler = _attach_log(run_dir) if main else logging.NullHandler()
    try:
        log.info("run %s: method %s on %s (%s), params %s", run_dir, method, model, bench.name, resolved)
        try:
            net, tokenizer = load_model(base_model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        from .training import pick_eval_sample

        probe = pick_eval_sample(bench.forget, NO_OP_SAMPLE, seed)  # for the no-op check
        net.eval()
        loss_before = forget_answer_loss(net, tokenizer, probe)
        started = time.perf_counter()
        train_log = run_dir / TRAIN_LOG_FILE

        def log_event(event: Mapping[str, Any]) -> None:
            if not main:
                return
            fileio.append_jsonl(train_log, {**event, "time": round(time.perf_counter() - started, 3)})

        # Composite methods (zjuklab_merge) save and evaluate runs of their own: they need to know
        # where the model and data came from and how the run is evaluated.
        extra = {"model_path": base_model, "data_path": config["data"], "mia_path": config["mia"],
                 "eval_settings": eval_settings if evaluate else None}
        ctx = UnlearnContext(out_dir=run_dir, seed=seed, device=device, dtype=dtype, log_event=log_event,
                             progress=progress, logger=logging.getLogger(f"unlearnbench.method.{method}"),
                             extra=extra)
        net = method_obj.unlearn(net, tokenizer, bench, ctx)
        seconds = time.perf_counter() - started
        log.info("unlearning took %.1f s", seconds)
        if main:
            save_model_dir(net, tokenizer, run_dir / MODEL_DIR)
        wait_for_everyone()
        if hasattr(net, "merge_and_unload") and hasattr(net, "peft_config"):
            # Adapters are on disk; evaluate the merged weights, which is also what
            # ``unlearnbench evaluate --model RUN/model`` loads (same weight hash).
            net = net.merge_and_unload()
        net.eval()
        config["unlearn_seconds"] = round(seconds, 3)
        flags = no_op_flags(loss_before, forget_answer_loss(net, tokenizer, probe))
        if flags["no_op_suspected"]:
            log.warning("%s: the forget answer loss barely moved (%.4f -> %.4f nats on %d forget records): the "
                        "method probably did nothing with these hyperparameters", run_dir, loss_before,
                        flags["forget_answer_loss_after"], len(probe))
        config["flags"] = flags
        result = None
        if evaluate:
            from .evaluate import evaluate_model

            if getattr(eval_settings, "engine", "hf") == "vllm":
                import dataclasses

                # vLLM loads from disk: the saved run (LoRA adapters are served with vLLM's LoRA support).
                eval_settings = dataclasses.replace(eval_settings, model_path=str(run_dir / MODEL_DIR))

            info = model_info(net, id=str(run_dir / MODEL_DIR), base_model=base_model)
            result = evaluate_model(net, tokenizer, bench, eval_settings, run_dir, model_info=info,
                                    method_info=MethodInfo(name=method, params=resolved), label=label,
                                    parents=list(parents), extra_timings={"unlearn": round(seconds, 3)},
                                    config=config, seed=seed, flags=flags)
        elif main:
            fileio.write_json(run_dir / CONFIG_FILE, config)
        return RunOutcome(run_dir, resolved, result, seconds, model=net if keep_model else None,
                          tokenizer=tokenizer if keep_model else None)
    finally:
        logging.getLogger("unlearnbench").removeHandler(handler)
        handler.close()


__all__ = ["run_unlearning", "resolve_params", "build_method", "parse_overrides", "parse_value",
           "read_config_file", "RunOutcome", "ConfigError", "MODEL_DIR"]
