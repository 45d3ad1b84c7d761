"""``world-tofu``: TOFU on the embedded synthetic world (fictitious authors written in TOFU's format).

It is TOFU in every number (the same requests, rows and :mod:`metrics.tofu` scoring); what differs is
where things come from: the folder is written by :func:`harness.tasks.world_tofu.world.generate_tofu_world`
(``unlearnbench tofu-world``), recognised by its ``benchmark.json`` marker, always in the Phi layout
the world's targets are trained in, and its Forget Quality reference defaults to the retain-only
oracle's run that ``unlearnbench tofu-world`` writes into ``WORLD/reference`` — so Forget Quality has
its reference on a fresh machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from harness.core.errors import ConfigError
from harness.core.registry import register_benchmark
from harness.tasks.tofu.task import TofuTask
from harness.tasks.world_tofu.world import BENCHMARK_NAME, MARKER

#: The oracle's evaluation run inside the world folder (written by ``unlearnbench tofu-world``).
REFERENCE_RUN = "reference"


@register_benchmark(BENCHMARK_NAME)
class WorldTofuTask(TofuTask):
    """TOFU on the synthetic world: fictitious authors; Forget Quality against the world's oracle run."""

    name = BENCHMARK_NAME
    layout = f"a world written by `unlearnbench tofu-world` ({MARKER} naming {BENCHMARK_NAME}, TOFU's configs)"

    @classmethod
    def detect(cls, path: Path) -> bool:
        marker = Path(path) / MARKER
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("benchmark") == BENCHMARK_NAME
        except (OSError, ValueError, AttributeError):
            return False

    @classmethod
    def load(cls, path: str | Path, mia: str | Path | None = None, options: Mapping[str, str] | None = None
             ) -> "WorldTofuTask":
        options = dict(options or {})
        if options.get("format", "phi") != "phi":
            raise ConfigError("the world's targets are trained in the phi layout; format cannot be changed")
        reference = Path(path) / REFERENCE_RUN
        if "reference" not in options and (reference / "samples.jsonl").is_file():
            options["reference"] = str(reference)
        return super().load(path, mia=mia, options=options)  # type: ignore[return-value]


__all__ = ["REFERENCE_RUN", "WorldTofuTask"]
