"""An attack as a run: attack an evaluated run's model, evaluate it with the parent's settings.

``run_attack(PARENT_RUN, kind, OUT)`` (and ``unlearnbench attack``) loads the model of an evaluated run
(an ``unlearn``/``run``/``merge`` run folder, or an ``evaluate`` run of a saved model), applies one
attack, and evaluates the result through the ordinary pipeline
(:func:`harness.evaluation.pipeline.evaluate_model`) with the parent's evaluation settings (read from
its ``config.json``). The output is an ordinary run folder whose ``config.json`` and ``result.json``
name the parent (``parents``) and the attack (method ``attack:<kind>``, its parameters in ``params``).

Kinds: ``relearn`` (:mod:`.relearn`), ``quantize`` (:mod:`.quantize`), ``precision``
(:mod:`.precision`) and ``prompt`` (:mod:`.prompts`). With ``target`` (the target model's evaluated
run), the recovery of every forget metric (:mod:`metrics.robust`) is added to the record as
``recovered/<metric>`` and written with its interval and reason to ``robust.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.core import fileio
from harness.core.errors import AttackError, RecordError
from metrics.robust import ATTACK_METHOD_PREFIX as METHOD_PREFIX  # an attacked run's method: attack:<kind>

log = logging.getLogger("unlearnbench.attacks")

KINDS = ("relearn", "quantize", "precision", "prompt")
ROBUST_FILE = "robust.json"
MODEL_DIR = "model"


@dataclass
class AttackOptions:
    """Everything about an attack run beside the parent run, the kind and the output folder."""

    params: Mapping[str, Any] = field(default_factory=dict)
    """The kind's parameters: quantize ``bits``, ``group_size``, ``symmetric``; precision ``dtype``;
    prompt ``template``; relearn ``source``, ``fraction``, ``seed``, ``training``."""
    target: str | Path | None = None
    """The target model's evaluated run: recovery is computed against it when given."""
    label: str | None = None
    device: str | None = None
    """Default: the parent's device."""
    replicates: int = 1000
    """Bootstrap replicates of the recovery intervals."""
    save_model: bool | None = None
    """Save the attacked weights to ``OUT/model`` (default: for relearn and quantize, whose weights differ
    from the parent's)."""
    force: bool = False
    progress: bool = True


@dataclass
class AttackOutcome:
    run_dir: Path
    result: Any
    """The attacked run's :class:`harness.core.records.EvalResult` (with ``recovered/*`` when a target was given)."""
    report: dict[str, Any]
    """What the attack did (the kind's report)."""
    recovery: dict[str, Any] | None
    """Metric -> :class:`metrics.robust.Recovery`, or None without a target."""
    attack_seconds: float


# -- the parent run ------------------------------------------------------------------------------------
@dataclass
class _Parent:
    run_dir: Path
    config: dict[str, Any]
    result: Any
    model_path: str


def _read_parent(parent: str | Path) -> _Parent:
    from harness.core.records import read_config, read_result

    run_dir = Path(parent)
    if not run_dir.is_dir():
        raise AttackError(f"{run_dir}: no such run folder; expected an evaluated run (with config.json and result.json)")
    try:
        config = read_config(run_dir)
        result = read_result(run_dir)
    except RecordError as exc:
        raise AttackError(f"cannot attack {run_dir}: {exc}") from exc
    if not config.get("eval"):
        raise AttackError(f"{run_dir / 'config.json'}: the run was not evaluated (its 'eval' settings are null); "
                          "an attacked run is evaluated with its parent's settings")
    if not config.get("data"):
        raise AttackError(f"{run_dir / 'config.json'}: names no benchmark folder ('data')")
    saved = run_dir / config["model_dir"] if config.get("model_dir") else None
    if saved is not None and saved.is_dir():
        model_path = str(saved)
    elif config.get("model"):
        model_path = str(config["model"])
    else:
        raise AttackError(f"{run_dir}: neither a saved model ({config.get('model_dir')!r}) nor a 'model' in config.json")
    return _Parent(run_dir.resolve(), config, result, model_path)


def eval_settings_from(config_eval: Mapping[str, Any], **overrides: Any):
    """The :class:`~harness.evaluation.pipeline.EvalSettings` a run recorded in its ``config.json``."""
    from harness.evaluation.pipeline import EvalSettings
    from harness.tasks.mcq.mmlu import MCQSpec

    names = {f.name for f in dataclasses.fields(EvalSettings)}
    values = {k: v for k, v in config_eval.items() if k in names}
    for mcq in ("mmlu", "utility"):
        if isinstance(values.get(mcq), Mapping):
            spec_fields = {f.name for f in dataclasses.fields(MCQSpec)}
            values[mcq] = MCQSpec(**{k: v for k, v in values[mcq].items() if k in spec_fields})
    values.update(overrides)
    try:
        return EvalSettings(**values)
    except (TypeError, ValueError) as exc:
        raise AttackError(f"cannot rebuild the parent's evaluation settings: {exc}") from exc


# -- the attacks ----------------------------------------------------------------------------------------
def _check_params(kind: str, params: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise AttackError(f"attack {kind}: unknown parameter(s) {unknown}; valid: {', '.join(allowed)}")


def _default_label(kind: str, params: Mapping[str, Any], parent_label: str) -> str:
    detail = {"quantize": lambda: f"{params.get('bits', 4)}bit",
              "precision": lambda: str(params.get("dtype", "")),
              "prompt": lambda: str(params.get("template", "")),
              "relearn": lambda: f"{params.get('source', 'forget')}{params.get('fraction', 0.5)}"}[kind]()
    return f"{parent_label}+{kind}-{detail}"


class _Attack:
    """One attack run: load the parent's model, attack, save, evaluate, compute recovery."""

    def __init__(self, parent: _Parent, kind: str, out: Path, opts: AttackOptions):
        if kind not in KINDS:
            raise AttackError(f"unknown attack kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.parent, self.kind, self.out, self.opts = parent, kind, out, opts
        self.params = dict(opts.params)
        self.device = opts.device or parent.config.get("device") or "cpu"
        self.dtype = parent.config.get("dtype") or "float32"
        self.report: dict[str, Any] = {}
        self.held_out: set[str] | None = None
        self.mia_note: str | None = None

    # -- setup, per kind
    def _validate(self):
        from harness.attacks.precision import PRECISIONS
        from harness.attacks.prompts import get_template
        from harness.attacks.quantize import QuantizeSettings
        from harness.attacks.relearn import RelearnSettings

        p = self.params
        if self.kind == "quantize":
            _check_params("quantize", p, ("bits", "group_size", "symmetric", "skip"))
            self.quant = QuantizeSettings(**p)
        elif self.kind == "precision":
            _check_params("precision", p, ("dtype",))
            if p.get("dtype") not in PRECISIONS:
                raise AttackError(f"attack precision: dtype must be one of {', '.join(PRECISIONS)}, got "
                                  f"{p.get('dtype')!r}")
            if p["dtype"] == self.dtype:
                log.warning("the parent was evaluated in %s already: this attacked run repeats it", self.dtype)
        elif self.kind == "prompt":
            _check_params("prompt", p, ("template",))
            if not p.get("template"):
                raise AttackError("attack prompt: name a template (see harness/attacks/prompt_templates.toml)")
            self.template = get_template(str(p["template"]))
        else:
            _check_params("relearn", p, ("source", "fraction", "seed", "training"))
            self.relearn_settings = RelearnSettings(**p)

    def _check_out(self) -> None:
        """Refuse an output folder that would overwrite or sit inside an input (the attacked run, the target
        run, the parent's model or the benchmark): ``--force`` clears the output's model and records."""
        out = self.out.resolve()
        inputs = {"the attacked run": self.parent.run_dir, "the parent's model": Path(self.parent.model_path),
                  "the benchmark": Path(self.parent.config["data"])}
        if self.opts.target:
            inputs["the target run"] = Path(self.opts.target)
        for what, path in inputs.items():
            path = path.resolve()
            if out == path or path in out.parents or out in path.parents:
                raise AttackError(f"--out {self.out} {'is' if out == path else 'overlaps'} {what} ({path}); "
                                  "write the attacked run to a folder of its own")
        if (self.out / "result.json").exists() and not self.opts.force:
            raise AttackError(f"{self.out} already holds a finished run; choose another --out or pass --force")

    def _prepare_folder(self, config) -> None:
        """As an unlearning run's folder: stale outputs of an earlier run go, the config is written first."""
        import shutil

        from harness.core.records import RESULT_FILE, TRAIN_LOG_FILE, write_config

        self.out.mkdir(parents=True, exist_ok=True)
        for stale in (RESULT_FILE, ROBUST_FILE, TRAIN_LOG_FILE, MODEL_DIR):
            path = self.out / stale
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        write_config(self.out, config)

    def run(self) -> AttackOutcome:
        from harness.backends.loading import load_model, model_info
        from harness.core.records import MethodInfo, RunConfig
        from harness.evaluation.pipeline import RunInfo, evaluate_model
        from harness.tasks import load_task
        from harness.training.runner import attach_run_log

        self._validate()
        self._check_out()
        cfg = self.parent.config
        eval_dtype = self.params["dtype"] if self.kind == "precision" else self.dtype
        settings = eval_settings_from(cfg["eval"], progress=self.opts.progress, dtype=eval_dtype, device=self.device)
        task = load_task(cfg["data"], name=cfg.get("benchmark"), mia=cfg.get("mia"))
        save = self.opts.save_model if self.opts.save_model is not None else self.kind in ("relearn", "quantize")
        model_dir = self.out / MODEL_DIR
        label = self.opts.label or _default_label(self.kind, self.params, self.parent.result.label)
        params = {"kind": self.kind, **_jsonable(self.params), "parent": str(self.parent.run_dir),
                  "target": str(Path(self.opts.target).resolve()) if self.opts.target else None}
        config = RunConfig(command="attack", argv=sys.argv[1:], method=f"{METHOD_PREFIX}{self.kind}", params=params,
                           label=label, model=self.parent.model_path, base_model=cfg.get("base_model"),
                           model_dir=MODEL_DIR if save else None, parents=[str(self.parent.run_dir)],
                           parent_labels=[self.parent.result.label], data=cfg["data"], mia=cfg.get("mia"),
                           benchmark=task.name, seed=cfg.get("seed"), device=self.device, dtype=eval_dtype,
                           eval=settings.to_dict())
        try:
            model, tokenizer = load_model(self.parent.model_path, dtype=self.dtype, device=self.device)
        except ValueError as exc:
            raise AttackError(str(exc)) from exc
        self._prepare_folder(config)
        handler = attach_run_log(self.out)  # log.txt, as an unlearning run's
        try:
            log.info("attack %s on %s (%s), params %s", self.kind, self.parent.run_dir, self.parent.model_path,
                     self.params)
            started = time.perf_counter()
            model, task = self._apply(model, tokenizer, task)
            attack_seconds = time.perf_counter() - started
            log.info("the attack took %.1f s", attack_seconds)
            if save:
                from harness.training.loop import save_model_dir

                save_model_dir(model, tokenizer, model_dir)
            info = RunInfo(model_info=model_info(model, id=str(model_dir if save else self.parent.model_path),
                                                 base_model=cfg.get("base_model")),
                           method_info=MethodInfo(name=config.method, params=params), label=label,
                           parents=[str(self.parent.run_dir)], extra_timings={"attack": round(attack_seconds, 3)},
                           config=config, seed=cfg.get("seed"))
            backend = settings.make_backend(model, tokenizer, model_path=model_dir if save else self.parent.model_path)
            result = evaluate_model(model, tokenizer, task, settings, self.out, info, backend=backend)
            recovery = None
            if self.opts.target:
                result, recovery = self._recovery(task, result)
            return AttackOutcome(self.out, result, self.report, recovery, attack_seconds)
        finally:
            logging.getLogger("unlearnbench").removeHandler(handler)
            handler.close()

    def _apply(self, model, tokenizer, task):
        if self.kind == "quantize":
            from harness.attacks.quantize import quantize_model

            self.report = quantize_model(model, self.quant).to_dict()
        elif self.kind == "precision":
            from harness.attacks.precision import cast_model

            self.report = cast_model(model, self.params["dtype"]).to_dict()
        elif self.kind == "prompt":
            from harness.attacks.prompts import wrap_task

            task = wrap_task(task, self.template)
            self.report = {"template": self.template.to_dict()}
            self.mia_note = "the prompt attack does not change the MIA documents"
        else:
            from harness.attacks.relearn import relearn
            from harness.core.records import TRAIN_LOG_FILE
            from harness.core.types import UnlearnContext

            started = time.perf_counter()
            log_path = self.out / TRAIN_LOG_FILE  # cleared by _prepare_folder

            def log_event(event):
                fileio.append_jsonl(log_path, {**event, "time": round(time.perf_counter() - started, 3)})

            ctx = UnlearnContext(out_dir=self.out, seed=self.relearn_settings.seed, device=self.device,
                                 dtype=self.dtype, log_event=log_event, progress=self.opts.progress, task=task,
                                 logger=logging.getLogger("unlearnbench.attacks.relearn"))
            model, self.report = relearn(model, tokenizer, task, self.relearn_settings, ctx)
            if self.relearn_settings.source == "forget":
                relearned = set(self.report["relearned_ids"])
                self.held_out = {r.id for r in task.data.forget if r.id not in relearned}
                self.mia_note = ("relearning on forget records: the membership documents are forget documents, so "
                                 "MIA recovery is not reported")
        return model, task

    def _recovery(self, task, result):
        from harness.core.records import MIA_FILE, SAMPLES_FILE, write_result
        from metrics.robust import RecoverySettings, RunRows, recovery

        def rows(run_dir: Path, name: str) -> RunRows:
            samples = task.read_samples(run_dir / SAMPLES_FILE)
            mia = task.read_documents(run_dir / MIA_FILE) if (run_dir / MIA_FILE).is_file() else None
            if self.held_out is not None:
                samples = [r for r in samples if r["split"] != "forget" or r["id"] in self.held_out]
            if self.mia_note:
                mia = None
            return RunRows(samples, mia, name)

        target = Path(self.opts.target)
        if not (target / SAMPLES_FILE).is_file():
            raise AttackError(f"{target}: no {SAMPLES_FILE}; --target must be the target model's evaluated run")
        settings = RecoverySettings(replicates=self.opts.replicates, mode=result.settings.get("mode", "semeval2025"))
        out = recovery(rows(target, str(target)), rows(self.parent.run_dir, str(self.parent.run_dir)),
                       rows(self.out, str(self.out)), settings)
        metrics = dict(result.metrics)
        metrics.update({f"recovered/{name}": r.recovered for name, r in out.items()})
        result = result.model_copy(update={"metrics": metrics})
        write_result(self.out, result)
        fileio.write_json(self.out / ROBUST_FILE, {
            "kind": self.kind, "parent": str(self.parent.run_dir), "target": str(target.resolve()),
            "parent_label": self.parent.result.label, "label": result.label,
            "held_out_records": len(self.held_out) if self.held_out is not None else None,
            "notes": [self.mia_note] if self.mia_note else [],
            "settings": dataclasses.asdict(settings),
            "recovery": {name: r.to_dict() for name, r in out.items()}})
        return result, out


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(fileio.dumps(value, indent=None))


def run_attack(parent: str | Path, kind: str, out: str | Path, options: AttackOptions | None = None,
               **option_fields: Any) -> AttackOutcome:
    """Attack the model of the evaluated run ``parent`` with ``kind`` and write the run folder ``out``
    (options: :class:`AttackOptions`, or its fields as keywords)."""
    opts = dataclasses.replace(options or AttackOptions(), **option_fields)
    return _Attack(_read_parent(parent), kind, Path(out), opts).run()


__all__ = ["AttackOptions", "AttackOutcome", "KINDS", "METHOD_PREFIX", "ROBUST_FILE", "eval_settings_from",
           "run_attack"]
