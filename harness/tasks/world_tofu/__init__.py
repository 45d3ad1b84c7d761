"""The synthetic world as a TOFU benchmark (``world-tofu``): the world in TOFU's format (:mod:`.world`),
its full and retain-only oracle targets (:mod:`.target`) and the task (:mod:`.task`)."""

from harness.tasks.world_tofu.task import WorldTofuTask

__all__ = ["WorldTofuTask"]
