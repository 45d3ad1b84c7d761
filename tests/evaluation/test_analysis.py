"""The seed paper's tables from result records: merging techniques side by side and a density sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pandas")

from harness.core.errors import RecordError  # noqa: E402
from harness.core.records import (BenchmarkInfo, EvalResult, MethodInfo, ModelInfo, now, provenance,  # noqa: E402
                                  write_result)
from harness.evaluation.analysis import density_table, merge_table  # noqa: E402


def _run(root: Path, name: str, method: str, params: dict, final: float) -> Path:
    run = root / name
    write_result(run, EvalResult(
        run_id=name, label=name, created_at=now(), benchmark=BenchmarkInfo(name="w", content_hash="0" * 64),
        model=ModelInfo(id=name), method=MethodInfo(name=method, params=params),
        metrics={"final_score": final, "task_aggregate": final / 2}, provenance=provenance()))
    return run


def test_density_table_orders_the_sweep_by_density_and_leaves_out_unmerged_runs(tmp_path):
    runs = [_run(tmp_path, "ties-d0.8", "merge", {"how": "ties", "density": 0.8, "weights": [1, 1]}, 0.30),
            _run(tmp_path, "ties-d0.2", "merge", {"how": "ties", "density": 0.2, "weights": [1, 1]}, 0.50),
            _run(tmp_path, "linear", "merge", {"how": "linear", "density": None, "weights": [1, 1]}, 0.40),
            _run(tmp_path, "npo", "npo", {"beta": 0.1}, 0.45)]
    table = merge_table(runs)
    assert list(table["run"]) == ["ties-d0.2", "npo", "linear", "ties-d0.8"]  # by final score, best first
    sweep = density_table(runs)
    assert list(sweep["run"]) == ["ties-d0.2", "ties-d0.8"] and list(sweep["density"]) == [0.2, 0.8]
    assert list(sweep["final_score"]) == [0.50, 0.30]
    with pytest.raises(RecordError, match="no merged run with a density"):
        density_table([runs[3]])


def test_density_optimum_says_whether_the_best_density_is_interior(tmp_path):
    from harness.evaluation.analysis import density_optimum

    # the demo's measured sweep (TIES of its parents): 0.4546, 0.5447, 0.5611, 0.5448, 0.5321
    finals = {0.2: 0.4546, 0.4: 0.5447, 0.6: 0.5611, 0.8: 0.5448, 1.0: 0.5321}
    runs = [_run(tmp_path, f"ties-d{d:g}", "merge", {"how": "ties", "density": d}, f) for d, f in finals.items()]
    best = density_optimum(density_table(runs))
    assert best == {"score": "final_score", "density": 0.6, "value": 0.5611, "interior": True}
    edge = [_run(tmp_path / "edge", f"ties-d{d:g}", "merge", {"how": "ties", "density": d}, d) for d in (0.2, 0.6, 1.0)]
    assert density_optimum(density_table(edge))["interior"] is False
