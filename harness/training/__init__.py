"""Unlearning: the shared training loop (:mod:`.loop`), training examples (:mod:`.examples`), one
step as a method sees it with the shared loss blocks (:mod:`.step`), reference-model caches
(:mod:`.reference`), run folders (:mod:`.runner`) and merging finished runs (:mod:`.merge`).

Re-exported here: what a method written against :class:`baselines.base.LossMethod` uses.
"""

from harness.training.loop import TrainSettings, train, train_settings_defaults
from harness.training.step import (IGNORE_INDEX, SplitBatch, TrainingError, TrainStep, kl_ref_to_model, label_counts,
                                   mean_nll, sequence_nll)

__all__ = [
    "IGNORE_INDEX", "SplitBatch", "TrainSettings", "TrainStep", "TrainingError", "kl_ref_to_model", "label_counts",
    "mean_nll", "sequence_nll", "train", "train_settings_defaults",
]
