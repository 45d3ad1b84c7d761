"""TOFU (Maini et al. 2024) as a benchmark: local copies of its released configs (:mod:`.data`), the
model families' prompt layouts (:mod:`.formats`) and the task (:mod:`.task`), scored by
:mod:`metrics.tofu` exactly as TOFU's ``aggregate_eval_stat.py``."""

from harness.tasks.tofu.task import TofuTask

__all__ = ["TofuTask"]
