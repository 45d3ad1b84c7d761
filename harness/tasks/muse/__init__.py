"""MUSE (Shi et al. 2024) as a benchmark (:mod:`.task`), scored by :mod:`metrics.muse` under the
authors' protocol or open-unlearning's."""

from harness.tasks.muse.task import MuseTask

__all__ = ["MuseTask"]
