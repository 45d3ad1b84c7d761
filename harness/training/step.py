"""One training step as a method sees it, and the loss building blocks the methods share.

A method's ``loss(step)`` (:class:`baselines.base.LossMethod`) receives a :class:`TrainStep`: the forget
batch and the retain batch sampled alongside it (:class:`SplitBatch`), each giving the model's
outputs, label log-probabilities and hidden states on demand, and the same quantities under the
reference model (the frozen base under ``disable_adapter()`` with LoRA; the precomputed
:class:`harness.training.reference.ReferenceCache` with full fine-tuning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from harness.core.errors import UnlearnbenchError

if TYPE_CHECKING:  # pragma: no cover
    from harness.training.reference import ReferenceCache

IGNORE_INDEX = -100


class TrainingError(UnlearnbenchError, RuntimeError):
    """The training run cannot go on (a non-finite loss, an impossible setting)."""



def label_token_logprobs(logits, labels):
    """Log-probability of each label token under ``logits`` → ``([B, T-1] values, [B, T-1] mask)``.

    Position ``t`` scores ``labels[t+1]`` (the usual shift); masked positions hold 0.
    """
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :]
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    nll = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)).float(),
                          shift_labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    return -nll.view(shift_labels.shape), mask


class SplitBatch:
    """One side (forget or retain) of a training step; model and reference quantities on demand.

    Nothing is computed until asked for, so a method that never looks at the retain batch pays no
    forward pass for it.
    """

    def __init__(self, name: str, batch: Mapping[str, Any], step: "TrainStep"):
        self.name = name
        self.batch = batch
        self._step = step
        self._cache: dict[str, Any] = {}

    # the batch
    @property
    def input_ids(self):
        return self.batch["input_ids"]

    @property
    def attention_mask(self):
        return self.batch["attention_mask"]

    @property
    def labels(self):
        return self.batch["labels"]

    # the model being trained
    def outputs(self):
        if "out" not in self._cache:
            self._cache["out"] = self._step.model(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                                  output_hidden_states=self._step.layer is not None)
        return self._cache["out"]

    @property
    def logits(self):
        return self.outputs().logits

    def label_logprobs(self):
        """``([B, T-1] log-probabilities of the labels, [B, T-1] label mask)`` under the model."""
        return label_token_logprobs(self.logits, self.labels)

    def hidden(self):
        """Hidden states at the method's layer, ``[B, T, H]``."""
        return self.outputs().hidden_states[self._step.layer]

    # the reference model
    def ref_label_logprobs(self):
        """Like :meth:`label_logprobs` under the reference model (no gradient)."""
        if self._step.cache is not None:
            values = self._step.cache.gather(self.name, "label_logprobs", self.batch)[:, :-1]
            return values, self.labels[:, 1:] != IGNORE_INDEX
        return label_token_logprobs(self._ref_outputs().logits, self.labels)

    def ref_logprobs(self):
        """Reference next-token log-probabilities ``[B, T, V]`` (zeros at padding with full fine-tuning)."""
        import torch

        if self._step.cache is not None:
            return self._step.cache.gather(self.name, "distribution", self.batch)
        return torch.log_softmax(self._ref_outputs().logits.float(), dim=-1)

    def ref_hidden(self):
        if self._step.cache is not None:
            return self._step.cache.gather(self.name, "hidden", self.batch)
        return self._ref_outputs().hidden_states[self._step.layer]

    def _ref_outputs(self):
        import torch

        if "ref" not in self._cache:
            base = self._step.unwrapped
            was_training = base.training
            base.eval()  # the reference is the frozen model as evaluated: no dropout
            try:
                with torch.no_grad(), base.disable_adapter():
                    self._cache["ref"] = base(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                              output_hidden_states=self._step.layer is not None)
            finally:
                base.train(was_training)
        return self._cache["ref"]


class TrainStep:
    """What ``loss(step)`` receives: ``step.forget`` and ``step.retain`` (:class:`SplitBatch`)."""

    def __init__(self, model, unwrapped, batch: Mapping[str, Any], cache: ReferenceCache | None,
                 layer: int | None, global_step: int, epoch: int, seed: int = 0):
        self.model = model
        self.seed = seed
        """The run's effective training seed (for methods that draw fixed random quantities)."""
        self.unwrapped = unwrapped
        self.cache = cache
        self.layer = layer
        self.global_step = global_step
        self.epoch = epoch
        self.forget = SplitBatch("forget", batch["forget"], self)
        self.retain = SplitBatch("retain", batch["retain"], self)


def mean_nll(split: SplitBatch, reference: bool = False):
    """Mean token NLL over every labelled token of the batch (transformers' ``outputs.loss``)."""
    values, mask = split.ref_label_logprobs() if reference else split.label_logprobs()
    return -(values * mask).sum() / mask.sum().clamp(min=1)


def sequence_nll(split: SplitBatch, reference: bool = False):
    """Per-example sum of label-token NLL, ``[B]`` (= ``-log π(y|x)``)."""
    values, mask = split.ref_label_logprobs() if reference else split.label_logprobs()
    return -(values * mask).sum(dim=1)


def label_counts(split: SplitBatch):
    return (split.labels[:, 1:] != IGNORE_INDEX).sum(dim=1)


def kl_ref_to_model(split: SplitBatch, all_positions: bool = False):
    """KL(reference ‖ model) of the next-token distributions.

    Default: the mean over the batch's real (attended) positions. ``all_positions=True`` is the
    ZJUKLAB/TOFU form ``F.kl_div(..., reduction="batchmean")`` on the flattened ``[B·T, V]`` logits:
    the sum over every position, padding included, divided by ``B·T``. With full fine-tuning the
    reference is unknown at padding positions, which then contribute nothing (documented deviation).
    """
    import torch

    logp = torch.log_softmax(split.logits.float(), dim=-1)
    ref = split.ref_logprobs()
    per_position = (ref.exp() * (ref - logp)).sum(dim=-1)  # [B, T]
    mask = split.attention_mask.bool()
    if split._step.cache is not None:
        per_position = per_position * mask
    if all_positions:
        return per_position.sum() / per_position.numel()
    return (per_position * mask).sum() / mask.sum().clamp(min=1)


__all__ = ["IGNORE_INDEX", "SplitBatch", "TrainStep", "TrainingError", "kl_ref_to_model", "label_counts",
           "label_token_logprobs", "mean_nll", "sequence_nll"]
