"""LUME (SemEval-2025 Task 4): loading and validating its forget/retain/MIA files (:mod:`.data`) and
the benchmark that scores them (:mod:`.task`, registered as ``lume``)."""

from harness.tasks.lume.task import LumeTask

__all__ = ["LumeTask"]
