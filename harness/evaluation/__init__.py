"""The evaluation pipeline (model x benchmark -> run folder) and the seed paper's analyses."""

from harness.evaluation.pipeline import EvalSettings, evaluate_model

__all__ = ["EvalSettings", "evaluate_model"]
