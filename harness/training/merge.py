"""Merging finished runs into a new run folder (``unlearnbench merge``).

Reads the parents' ``config.json`` (base model, fine-tuning mode, where the weights are), checks that
they can be merged (same base model, same fine-tuning mode, compatible LoRA ranks / architectures),
merges with :mod:`baselines.merging`, saves the merged model and evaluates it like any run. The
merged run's record names its parents and the merge settings.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.core.errors import RecordError, UserError
from harness.core.records import CONFIG_FILE, MethodInfo, RunConfig, read_config, write_config

log = logging.getLogger("unlearnbench.merge")

MERGE_METHOD = "merge"


def check_parent(run: Path, config: Mapping[str, Any]) -> None:
    """A parent must be a complete run whose files belong together (its manifest verifies), trained
    from the base model as it is now (the base's content equals what the parent recorded)."""
    from harness.core.errors import ManifestError
    from harness.core.manifest import MANIFEST_FILE, model_fingerprint, read_manifest, verify

    if not (run / MANIFEST_FILE).is_file():
        log.warning("%s has no manifest.json (made before run manifests): its files cannot be checked", run)
        return
    problem = verify(run, only=(CONFIG_FILE, config.get("model_dir", "model")))
    if problem is not None:
        raise ManifestError(run, f"cannot merge this run: {problem}")
    recorded = (read_manifest(run).get("inputs", {}).get("model") or {}).get("sha256")
    base = config.get("base_model")
    if recorded and base:
        now = model_fingerprint(base).get("sha256")
        if now != recorded:
            raise ManifestError(run, f"cannot merge this run: its base model {base} changed since the run was trained "
                                     f"from it (content {str(recorded)[:12]} -> {str(now)[:12]}); retrain it or restore "
                                     "the base model")


def parent_info(run_dir: str | Path, check: bool = True) -> dict[str, Any]:
    """What a merge needs to know about a finished run (``check``: and that its files belong together)."""
    run = Path(run_dir)
    config = read_config(run)
    if check:
        check_parent(run, config)
    model_dir = run / config.get("model_dir", "model")
    if not model_dir.is_dir():
        raise RecordError(run / CONFIG_FILE, f"the run has no saved model folder {model_dir}")
    finetune = config.get("finetune")
    if finetune not in ("lora", "full"):
        raise RecordError(run / CONFIG_FILE, f"unknown fine-tuning mode {finetune!r}; expected 'lora' or 'full'")
    base = config.get("base_model")
    if not base:
        raise RecordError(run / CONFIG_FILE, "no base_model recorded; cannot tell what the run started from")
    return {"run": str(run.resolve()), "model_dir": str(model_dir.resolve()), "finetune": finetune,
            "base_model": str(base), "data": config.get("data"), "mia": config.get("mia"),
            "label": config.get("label") or run.name, "benchmark": config.get("benchmark")}


def check_parents(parents: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    bases = {p["base_model"] for p in parents}
    if len(bases) > 1:
        listing = "; ".join(f"{p['run']} ← {p['base_model']}" for p in parents)
        raise UserError(f"the runs start from different base models and cannot be merged: {listing}")
    modes = {p["finetune"] for p in parents}
    if len(modes) > 1:
        listing = "; ".join(f"{p['run']}: {p['finetune']}" for p in parents)
        raise UserError(f"cannot merge LoRA runs with full fine-tuned runs: {listing}")
    return bases.pop(), modes.pop()


def merged_model(parents: Sequence[Mapping[str, Any]], settings, dtype: str = "float32", device: str = "cpu"):
    """Load the base model and merge the parents into it. Returns (model, tokenizer, finetune).

    LoRA runs give a ``PeftModel`` whose single adapter is the merge; full runs give a plain model.
    """
    from baselines.merging import MergeError, merge_lora_adapters, merge_task_vectors

    from harness.backends.loading import load_model

    base_path, finetune = check_parents(parents)
    model, tokenizer = load_model(base_path, dtype=dtype, device=device)
    try:
        if finetune == "lora":
            model = merge_lora_adapters(model, [p["model_dir"] for p in parents], settings)
        else:
            base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            states = []
            for p in parents:
                parent, _ = load_model(p["model_dir"], dtype=dtype, device=device)
                if type(parent).__name__ != type(model).__name__:
                    raise MergeError(f"{p['run']} is a {type(parent).__name__}, the base a {type(model).__name__}: "
                                     "different architectures cannot be merged")
                states.append({k: v.detach() for k, v in parent.state_dict().items()})
                del parent
            model.load_state_dict(merge_task_vectors(base_state, states, settings))
    except MergeError as exc:
        raise UserError(str(exc)) from exc
    model.eval()
    return model, tokenizer, finetune


def merge_params(settings) -> dict[str, Any]:
    from baselines.merging import DENSITY_TYPES

    # Only the settings the method uses are recorded (a linear merge has no density).
    return {"how": settings.how, "weights": list(settings.weights) if settings.weights else None,
            "density": settings.density if settings.how in DENSITY_TYPES else None,
            "svd_rank": settings.svd_rank,
            "majority_sign_method": settings.majority_sign_method, "seed": settings.seed}


def merge_runs(run_dirs: Sequence[str | Path], settings, out: str | Path, *, data: str | Path | None = None,
               mia: str | Path | None = None, evaluate: bool = True, eval_settings: Any = None,
               label: str | None = None, dtype: str = "float32", device: str = "cpu", progress: bool = True):
    """Merge finished runs into ``out`` (saved model + config, and evaluation unless ``evaluate=False``).

    Returns ``(model, tokenizer, result)`` where ``result`` is the :class:`EvalResult` or ``None``.
    """
    from harness.tasks import load_task
    from harness.backends.loading import model_info
    from harness.training.loop import save_model_dir

    from harness.core.manifest import model_fingerprint, run_input
    from harness.core.transaction import RunTransaction
    from harness.evaluation.runfolder import eval_identity, output_inputs, record_inputs

    parents = [parent_info(r, check=False) for r in run_dirs]
    try:
        settings.validate(len(parents), parents[0]["finetune"] if parents else "lora")
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    data = data or parents[0]["data"]
    mia = mia or parents[0]["mia"]
    if data is None:
        raise UserError("the parent runs record no benchmark; pass --data")
    # --out may not be (or hold, or lie inside) a parent, the base model or the benchmark.
    tx = RunTransaction(out, command="merge", inputs=output_inputs(
        model=parents[0]["base_model"] if parents else None, data=data if evaluate else None,
        mia=mia if evaluate else None, settings=eval_settings if evaluate else None,
        **{"parent run": [p["run"] for p in parents]}))
    for run in run_dirs:  # after the --out check: a folder that is both would be named as the --out mistake
        check_parent(Path(run), read_config(Path(run)))
    task = None
    if evaluate:  # the benchmark is read (and checked) before the merge, not after it
        from harness.evaluation.pipeline import EvalSettings

        task = load_task(data, name=parents[0]["benchmark"], mia=mia)
        eval_settings = eval_settings or EvalSettings(dtype=dtype, device=device, progress=progress)
    started = time.perf_counter()
    model, tokenizer, finetune = merged_model(parents, settings, dtype=dtype, device=device)
    seconds = time.perf_counter() - started
    params = merge_params(settings)
    label = label or f"merge:{settings.how}"
    config = RunConfig(command="merge", method=MERGE_METHOD, params=params, parents=[p["run"] for p in parents],
                       parent_labels=[p["label"] for p in parents], base_model=parents[0]["base_model"],
                       model=parents[0]["base_model"], finetune=finetune, model_dir="model",
                       data=str(Path(data).resolve()), mia=str(mia) if mia else None, label=label,
                       dtype=dtype, device=device, merge_seconds=round(seconds, 3), benchmark=parents[0]["benchmark"])
    result = None
    with tx:  # everything lands in a staging folder, swapped in as ``out`` only when complete
        save_model_dir(model, tokenizer, tx.path / "model")
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.eval()
        if evaluate:
            from harness.evaluation.pipeline import evaluate_model

            config.benchmark = task.name
            config.eval = eval_settings.to_dict()  # evaluate_model writes config.json
            info = model_info(model, id=str(tx.final / "model"), base_model=parents[0]["base_model"])
            result = evaluate_model(model, tokenizer, task, eval_settings, tx.path, model_info=info,
                                    method_info=MethodInfo(name=MERGE_METHOD, params=params), label=label,
                                    parents=[p["run"] for p in parents], extra_timings={"merge": round(seconds, 3)},
                                    config=config, seed=settings.seed, run_id=tx.final.name,
                                    backend=eval_settings.make_backend(model, tokenizer, model_path=tx.path / "model"))
        else:
            write_config(tx.path, config)
        record_inputs(tx, task=task, settings=eval_settings if evaluate else None,
                      extra={"base model": model_fingerprint(parents[0]["base_model"]),
                             "parents": [run_input(p["run"]) for p in parents]})
        tx.settings = {"params": params, "parents": [p["run"] for p in parents], "benchmark": config.benchmark,
                       "dtype": dtype, "eval": eval_identity(config.eval)}
    return model, tokenizer, result
