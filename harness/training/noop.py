"""The no-op check of unlearning runs: did the method move the model on the forget data at all?

A method whose hyper-parameters are wrong for a model can train for minutes and change nothing
(issue 16: RMU with the WMDP paper's retain weight on the embedded target left every score equal to
the target's, and the board ranked it beside the target). The runner therefore measures the mean
answer loss of a fixed sample of forget records before and after unlearning; a run that moved it by
less than ``max(NO_OP_RELATIVE x before, NO_OP_ABSOLUTE)`` nats is warned about in its log and flagged
``no_op_suspected`` in its ``config.json`` and result record, beside both losses.

Threshold, measured on the embedded target (forget answer loss 0.0316 nats): RMU with WMDP's retain
weight moved it by 0.0003 (1 %) and changed no score; the weakest run of the demo's sweeps that did
change scores moved it by 0.009 (29 %). 5 % lies between with room on both sides.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

log = logging.getLogger("unlearnbench.runner")

NO_OP_RELATIVE = 0.05
NO_OP_ABSOLUTE = 1e-3
#: Forget records the check measures (a fixed, seeded sample; all of them when there are fewer).
NO_OP_SAMPLE = 64


def forget_answer_loss(model, tokenizer, records: Sequence[Any]) -> float | None:
    """Mean answer loss (nats per token) of ``records`` (with ``input``/``output``); ``None`` if none is finite."""
    from harness.backends.losses import answer_losses

    if not records:
        return None
    was_training = model.training
    model.eval()
    try:
        losses = answer_losses(model, tokenizer, [r.input for r in records], [r.output for r in records],
                               progress=False)
    finally:
        model.train(was_training)
    losses = [x for x in losses if x is not None and math.isfinite(x)]
    return sum(losses) / len(losses) if losses else None


def no_op_flags(before: float | None, after: float | None) -> dict[str, Any]:
    """``{"no_op_suspected": …, "forget_answer_loss_before": …, "forget_answer_loss_after": …}``;
    not suspected when either loss is unknown."""
    suspected = (before is not None and after is not None
                 and abs(after - before) < max(NO_OP_RELATIVE * abs(before), NO_OP_ABSOLUTE))
    return {"no_op_suspected": bool(suspected), "forget_answer_loss_before": before,
            "forget_answer_loss_after": after}


class NoOpProbe:
    """Measures the forget answer loss before and after a run; ``after`` returns the flags and warns."""

    def __init__(self, records: Sequence[Any]):
        self.records = list(records)
        self.loss_before: float | None = None

    @classmethod
    def for_task(cls, task, seed: int) -> "NoOpProbe":
        """A probe on the task's forget records (none for a benchmark without LUME-style forget records)."""
        from harness.training.loop import pick_eval_sample

        forget = getattr(task.data, "forget", None) or []
        usable = [r for r in forget if hasattr(r, "input") and hasattr(r, "output")]
        return cls(pick_eval_sample(usable, NO_OP_SAMPLE, seed))

    def before(self, model, tokenizer) -> None:
        self.loss_before = forget_answer_loss(model, tokenizer, self.records)

    def after(self, model, tokenizer, where: str = "") -> dict[str, Any]:
        flags = no_op_flags(self.loss_before, forget_answer_loss(model, tokenizer, self.records))
        if flags["no_op_suspected"]:
            log.warning("%s: the forget answer loss barely moved (%.4f -> %.4f nats on %d forget records): the "
                        "method probably did nothing with these hyperparameters", where or "run",
                        flags["forget_answer_loss_before"], flags["forget_answer_loss_after"], len(self.records))
        return flags
