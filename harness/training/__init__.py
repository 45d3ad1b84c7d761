"""Unlearning: the shared training loop, run folders (:mod:`harness.training.runner`) and merging
finished runs (:mod:`harness.training.merge`).

Re-exported here: what a method written against :class:`baselines.base.LossMethod` uses.
"""

from harness.training.loop import (
    IGNORE_INDEX,
    SplitBatch,
    TrainingError,
    TrainSettings,
    TrainStep,
    kl_ref_to_model,
    label_counts,
    mean_nll,
    sequence_nll,
    train,
    train_settings_defaults,
)

__all__ = [
    "IGNORE_INDEX", "SplitBatch", "TrainSettings", "TrainStep", "TrainingError", "kl_ref_to_model", "label_counts",
    "mean_nll", "sequence_nll", "train", "train_settings_defaults",
]
