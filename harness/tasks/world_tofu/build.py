"""Everything ``unlearnbench tofu-world`` makes: the world in TOFU's format, its full and oracle
targets, and the oracle's evaluation run (``WORLD/reference``), the world's Forget Quality reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.synthetic.target import TargetConfig
from harness.tasks.world_tofu.target import TOFU_TARGET_CONFIG, train_tofu_target
from harness.tasks.world_tofu.task import REFERENCE_RUN
from harness.tasks.world_tofu.world import generate_tofu_world


@dataclass(frozen=True)
class TofuWorld:
    world: Path
    target: Path | None
    oracle: Path | None
    reference: Path | None


def evaluate_oracle(world: Path, oracle: Path, progress: bool = True) -> Path:
    """Evaluate the oracle on the world (no reference yet) into ``WORLD/reference``."""
    from harness.backends.loading import load_model, model_info
    from harness.core.records import MethodInfo, RunConfig
    from harness.evaluation.pipeline import EvalSettings, evaluate_model
    from harness.tasks.world_tofu.task import WorldTofuTask

    out = world / REFERENCE_RUN
    task = WorldTofuTask.load(world, options={"reference": ""})  # the oracle is the reference: none for itself
    task.name = WorldTofuTask.name
    model, tokenizer = load_model(oracle)
    settings = EvalSettings(progress=progress)
    config = RunConfig(command="tofu-world", model=str(oracle), data=str(world), benchmark="world-tofu",
                       label="oracle (retain90)", eval=settings.to_dict())
    evaluate_model(model, tokenizer, task, settings, out, model_info=model_info(model, id=str(oracle)),
                   method_info=MethodInfo(name="none"), label="oracle (retain90)", config=config)
    return out


def make_tofu_world(world: str | Path, models: str | Path | None = None, seed: int = 0, n_authors: int = 40,
                    progress: bool = True, config: TargetConfig = TOFU_TARGET_CONFIG) -> TofuWorld:
    """Write the world; with ``models``, train ``models/target`` and ``models/oracle`` beside it (the
    same ``config`` and seed) and evaluate the oracle into ``world/reference``."""
    world = generate_tofu_world(world, seed=seed, n_authors=n_authors)
    if models is None:
        return TofuWorld(world, None, None, None)
    models = Path(models)
    target = train_tofu_target(world, models / "target", "full", seed=seed, config=config, progress=progress)
    oracle = train_tofu_target(world, models / "oracle", "oracle", seed=seed, config=config, progress=progress)
    return TofuWorld(world, target, oracle, evaluate_oracle(world, oracle, progress))


__all__ = ["TofuWorld", "evaluate_oracle", "make_tofu_world"]
