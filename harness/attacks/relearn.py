"""The relearning attack: fine-tune the unlearned model on a little data, through the project's loop.

What is trained on. A seeded fraction of the forget set (``source="forget"``, the targeted relearning
of Hu et al., ICLR 2025) or of the retain set (``source="retain"``: related data the attacker may
hold). The loss is the plain answer NLL of those records (the target's own training objective),
minimised by :func:`harness.training.train` -- the loop every unlearning method uses.

Held-out evaluation. Relearning on records and then scoring the same records measures how fast the
model re-memorises them as much as what the unlearning left behind. With ``source="forget"`` the
recovery is therefore computed on the forget records that were *not* relearned (Deeb and Roger's
evaluation: train on some facts, measure others of the same distribution); the MIA figures are left
out then, because the membership documents are the forget documents. The attacked run itself is an
ordinary evaluation of every record.

Budget. The defaults are the fine-tuning attack of Łucki et al. ("An Adversarial Perspective on
Machine Unlearning for AI Safety", 2024; ethz-spylab/unlearning-vs-safety, src/finetuning/finetune.py):
LoRA rank 128, alpha 16, learning rate 2e-4, 3 epochs, batch size 1, 5% warm-up, weight decay 0.01,
linear schedule (see docs/attacks.md). ``training`` overrides any setting of the shared loop.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from harness.core.errors import AttackError

SOURCES = ("forget", "retain")
#: Łucki et al.'s fine-tuning attack (5% warm-up of 3 epochs = 0.15 epochs); no curves during training.
RELEARN_TRAINING: dict[str, Any] = {"finetune": "lora", "lora_r": 128, "lora_alpha": 16, "lora_dropout": 0.0,
                                    "learning_rate": 2e-4, "epochs": 3, "per_device_batch_size": 1,
                                    "gradient_accumulation_steps": 1, "warmup_epochs": 0.15, "weight_decay": 0.01,
                                    "scheduler": "linear", "eval_every": 0}


@dataclass(frozen=True)
class RelearnSettings:
    source: str = "forget"
    fraction: float = 0.5
    """Share of the source split relearned (seeded draw, at least one record)."""
    seed: int = 0
    training: Mapping[str, Any] = field(default_factory=dict)
    """Overrides of :data:`RELEARN_TRAINING` (any :class:`harness.training.TrainSettings` field)."""

    def __post_init__(self) -> None:
        from harness.training import train_settings_defaults

        if self.source not in SOURCES:
            raise AttackError(f"relearn: source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) or not 0 < self.fraction <= 1:
            raise AttackError(f"relearn: fraction must be in (0, 1], got {self.fraction!r}")
        unknown = sorted(set(self.training) - set(train_settings_defaults()))
        if unknown:
            raise AttackError(f"relearn: unknown training setting(s) {unknown}; valid: "
                              f"{', '.join(sorted(train_settings_defaults()))}")

    def train_settings(self):
        from harness.training import TrainSettings

        try:
            return TrainSettings(**{**RELEARN_TRAINING, **dict(self.training), "seed": self.seed})
        except (TypeError, ValueError) as exc:
            raise AttackError(f"relearn: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fraction": self.fraction, "seed": self.seed,
                "training": {**RELEARN_TRAINING, **dict(self.training)}}


def relearn_records(data, settings: RelearnSettings) -> list:
    """The records relearned: a seeded ``fraction`` of the source split, in file order."""
    pool = list(data.forget if settings.source == "forget" else data.retain)
    if not pool:
        raise AttackError(f"relearn: the benchmark's {settings.source} split is empty")
    k = max(1, round(settings.fraction * len(pool)))
    chosen = sorted(random.Random(settings.seed).sample(range(len(pool)), k))
    return [pool[i] for i in chosen]


class _AnswerNLL:
    """The relearning objective: minimise the answer NLL of the relearn records."""

    def loss(self, step):
        from harness.training import mean_nll

        nll = mean_nll(step.forget)
        return nll, {"relearn_nll": nll}

    def reference_needs(self) -> set:
        return set()

    def hidden_layer(self, model) -> None:
        return None


def relearn(model, tokenizer, task, settings: RelearnSettings, ctx) -> tuple[Any, dict[str, Any]]:
    """Fine-tune ``model`` on the relearn records with the shared loop; returns (plain model, report).

    ``ctx`` is the :class:`harness.core.types.UnlearnContext` of the attacked run (its training log)."""
    from harness.training import train

    records = relearn_records(task.data, settings)
    # The loop pairs every "forget" example with a "retain" one; the objective only reads the former,
    # and the retain side is never computed (the loop's batches are lazy).
    data = dataclasses.replace(task.data, forget=tuple(records), retain=tuple(records))
    started = time.perf_counter()
    net = train(model, tokenizer, data, ctx, settings.train_settings(), _AnswerNLL())
    if hasattr(net, "merge_and_unload") and hasattr(net, "peft_config"):
        net = net.merge_and_unload()
    net.eval()
    report = {"records": len(records), "relearned_ids": [r.id for r in records],
              "seconds": round(time.perf_counter() - started, 3), **settings.to_dict()}
    return net, report


__all__ = ["RelearnSettings", "RELEARN_TRAINING", "relearn", "relearn_records"]
