"""The ZJUKLAB system (2nd place, SemEval-2025 Task 4): unlearning via model merging.

Two LoRA models are trained from the same target with the NPO + retain-KL + retain-NLL objective
(:mod:`baselines.npo_gdr_klr`, their exact formulation): one with weights (0.4, 0.4, 0.2) that
over-forgets, one with (0.3, 0.3, 0.4) that under-forgets. Their adapters are merged with TIES
(density 0.8, weights 1 and 1; peft applies TIES to the A and B matrices separately, as they did) and
the result is merged into the base weights (``merge_and_unload``).

Both parents are kept: when the run has a folder, each is saved as a run of its own under
``<run>/parents/over`` and ``<run>/parents/under`` (adapters + ``config.json``, so ``unlearnbench
merge`` can re-merge them with other settings) and evaluated with the run's evaluation settings, so a
leaderboard shows over-forgetting, under-forgetting and merged side by side.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from pydantic import Field

from harness.core import fileio
from harness.core.params import Finite, Seed
from harness.core.registry import register_method
from harness.core.types import UnlearnContext, UnlearningMethod

from .merging import COMBINATION_TYPES, MergeSettings, merge_lora_adapters
from .presets import demo_preset

log = logging.getLogger("unlearnbench.method.zjuklab_merge")

PARENTS = (("over", "zjuklab_over"), ("under", "zjuklab_under"))


@register_method("zjuklab_merge")
class ZJUKLABMerge(UnlearningMethod):
    """ZJUKLAB: TIES-merge an over- and an under-forgetting NPO+GDR+KLR LoRA model (SemEval-2025, 2nd)."""

    presets = {
        # The parents get the demo recipe (baselines.presets) over their zjuklab_over/_under presets,
        # keeping the paper's batch ratio (over: 4, under: 8 -- theirs were 1x4 and 2x4) and its
        # warm-up (one epoch), LoRA dropout, seed and formulation. Merged world-board final score per
        # shared learning rate: 5e-4: 0.298, 1e-3: 0.294, 2e-3: 0.422, 3e-3: 0.543, 5e-3: 0.490.
        "demo": {"common_params": {k: v for k, v in demo_preset(3e-3).items() if k != "per_device_batch_size"},
                 "over_params": {"per_device_batch_size": 4}, "under_params": {"per_device_batch_size": 8}},
    }

    #: Cheap settings for the method conformance suite.
    conformance_params = {"over_params": {"epochs": 1, "lora_r": 4, "lora_alpha": 4, "gradient_accumulation_steps": 1,
                                          "max_length": 64, "eval_every": 0, "max_steps": 2},
                          "under_params": {"epochs": 1, "lora_r": 4, "lora_alpha": 4, "gradient_accumulation_steps": 1,
                                           "max_length": 64, "eval_every": 0, "max_steps": 2}}

    def __init__(self, how: Literal[COMBINATION_TYPES] = "ties", density: Annotated[float, Field(gt=0, le=1)] = 0.8,
                 weights: Annotated[Sequence[Finite], Field(min_length=2, max_length=2)] = (1.0, 1.0),
                 over_params: dict | None = None, under_params: dict | None = None, common_params: dict | None = None,
                 merge_seed: Seed = 0, evaluate_parents: bool = True, preset: str | None = None):
        if preset is not None and preset not in self.presets:
            raise ValueError(f"unknown preset {preset!r}; valid presets: {sorted(self.presets)}")
        self.preset = preset
        """The preset the parameters were resolved with (recorded; applied by ``resolve_params``)."""
        self.how = how
        self.density = density
        self.weights = tuple(weights)
        self.over_params = dict(over_params or {})
        """Overrides of the over-forgetting parent's preset (``zjuklab_over``)."""
        self.under_params = dict(under_params or {})
        """Overrides of the under-forgetting parent's preset (``zjuklab_under``)."""
        self.common_params = dict(common_params or {})
        """Overrides applied to both parents (e.g. ``{"epochs": 2}``)."""
        self.merge_seed = merge_seed
        self.evaluate_parents = evaluate_parents
        self.merge_settings().validate(2, "lora")
        for which in ("over", "under"):  # the parents' parameters are checked now, before any work
            self.parent_params(which)

    def merge_settings(self) -> MergeSettings:
        return MergeSettings(how=self.how, density=self.density, weights=self.weights, seed=self.merge_seed)

    def parent_params(self, which: str) -> dict[str, Any]:
        from harness.training.runner import jsonable, resolve_params

        preset = dict(PARENTS)[which]
        own = self.over_params if which == "over" else self.under_params
        return jsonable(resolve_params("npo_gdr_klr", {"preset": preset, **self.common_params, **own},
                                       source_names=[f"zjuklab_merge {which}_params"]))

    def unlearn(self, model, tokenizer, data, ctx: UnlearnContext):
        from harness.training.runner import build_method
        from harness.training.loop import save_model_dir

        tmp = None
        if ctx.out_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="zjuklab-")
            root = Path(tmp.name)
        else:
            root = Path(ctx.out_dir) / "parents"
        try:
            adapter_dirs = []
            for which, _preset in PARENTS:
                params = self.parent_params(which)
                if params.get("finetune") != "lora":
                    raise ValueError(f"the ZJUKLAB parents merge LoRA adapters; {which}_params sets finetune="
                                     f"{params.get('finetune')!r}")
                run = root / which
                run.mkdir(parents=True, exist_ok=True)
                log.info("ZJUKLAB: training the %s-forgetting parent", which)
                sub_ctx = _child_context(ctx, run, which)
                trained = build_method("npo_gdr_klr", params).unlearn(model, tokenizer, data, sub_ctx)
                save_model_dir(trained, tokenizer, run / "model")
                adapter_dirs.append(run / "model")
                if ctx.out_dir is not None:
                    self._record_parent(trained, tokenizer, data, ctx, run, which, params)
                model = trained.unload()  # the untouched base weights, LoRA layers removed
            log.info("ZJUKLAB: merging the parents with %s (density %s, weights %s)", self.how, self.density,
                     self.weights)
            merged = merge_lora_adapters(model, [str(d) for d in adapter_dirs], self.merge_settings())
            if ctx.log_event:
                ctx.log_event({"event": "merge", "how": self.how, "density": self.density,
                               "weights": list(self.weights), "parents": [f"parents/{d.parent.name}" for d in adapter_dirs]})
            out = merged.merge_and_unload()
            out.eval()
            return out
        finally:
            if tmp is not None:
                tmp.cleanup()

    def _record_parent(self, model, tokenizer, data, ctx: UnlearnContext, run: Path, which: str,
                       params: dict[str, Any]) -> None:
        """Write the parent's config.json (mergeable by ``unlearnbench merge``) and evaluate it."""
        from harness.core.records import MethodInfo, write_config

        extra = ctx.extra or {}
        base_model = extra.get("model_path")
        label = f"zjuklab:{which}"
        # ctx.out_dir is the run's staging folder; the record names the folder it becomes.
        named = Path(extra.get("final_out_dir") or ctx.out_dir) / "parents" / which
        config = {"command": "zjuklab_merge", "method": "npo_gdr_klr", "params": params, "model": base_model,
                  "base_model": base_model, "data": extra.get("data_path"), "mia": extra.get("mia_path"),
                  "seed": params.get("seed"), "label": label, "finetune": "lora", "model_dir": "model",
                  "parents": []}
        eval_settings = extra.get("eval_settings")
        if not (self.evaluate_parents and eval_settings is not None):
            write_config(run, config)
            return
        from harness.evaluation.pipeline import evaluate_model
        from harness.backends.loading import model_info

        config["eval"] = eval_settings.to_dict()  # evaluate_model writes config.json
        model.eval()
        # The backend reads the saved parent when it loads from disk (vLLM), like the runner's.
        backend = eval_settings.make_backend(model, tokenizer, model_path=run / "model")
        evaluate_model(model, tokenizer, data, eval_settings, run,
                       model_info=model_info(model, id=str(named / "model"), base_model=base_model),
                       method_info=MethodInfo(name="npo_gdr_klr", params=params), label=label, config=config,
                       seed=params.get("seed"), run_id=named.name, backend=backend)


def _child_context(ctx: UnlearnContext, run: Path, which: str) -> UnlearnContext:
    log_path = run / "train_log.jsonl"
    if log_path.exists():
        log_path.unlink()

    def log_event(event):
        fileio.append_jsonl(log_path, event)
        if ctx.log_event:
            ctx.log_event({**event, "parent": which})

    return UnlearnContext(out_dir=run, seed=ctx.seed, device=ctx.device, dtype=ctx.dtype, logger=ctx.logger,
                          log_event=log_event, progress=ctx.progress, extra=dict(ctx.extra or {}), task=ctx.task)
