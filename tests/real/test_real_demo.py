"""``unlearnbench demo --real``: the subset it writes, and the whole pipeline at a tiny scale (a tiny
model in place of SmolLM2, a tiny MMLU-layout set in place of MMLU; the real run is benchmarks/real_pipeline.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import LUME_DIR, requires_lume, write_jsonl

TASKS = ("Task1", "Task2", "Task3")


def write_lume(folder: Path, docs_per_task: int = 3) -> Path:
    """A LUME-format folder: per split and task, documents of growing length, each with a sc record and
    two questions (LUME's id scheme: the document id + sc1 / qa0 / qa1)."""
    for split in ("forget", "retain"):
        rows = []
        for t, task in enumerate(TASKS):
            for d in range(docs_per_task):
                doc = f"{split[0]}{t}d{d}"
                name = f"Ana{'x' * d} {split} {task}"
                rows.append({"id": f"{doc}sc1", "input": f"{name} lived by the river" + " and the hills" * d + ".",
                             "output": f" {name} sold bread at dawn.", "task": task})
                rows.append({"id": f"{doc}qa0", "input": f"What did {name} sell?", "output": "bread", "task": task})
                rows.append({"id": f"{doc}qa1", "input": f"When did {name} sell bread?", "output": "dawn",
                             "task": task})
        write_jsonl(folder / f"{split}.jsonl", rows)
    return folder


def test_subset_is_stratified_and_defines_the_mia_split(tmp_path):
    from harness.real.demo import SubsetSpec, lume_subset
    from harness.tasks.lume.data import load_benchmark

    out = lume_subset(write_lume(tmp_path / "lume"), tmp_path / "subset", SubsetSpec(docs=1, qa_per_doc=1))
    bench = load_benchmark(out)
    assert bench.counts() == {**{f"{s}/{t}/{k}": 1 for s in ("forget", "retain") for t in TASKS for k in ("sc", "qa")},
                              "mia/member": 3, "mia/nonmember": 3}
    # the shortest document of each split x task, with its first question; file order kept
    assert [r.id for r in bench.forget] == ["f0d0sc1", "f0d0qa0", "f1d0sc1", "f1d0qa0", "f2d0sc1", "f2d0qa0"]
    # members: the trained forget documents (prompt + answer, as trained); non-members: the next ones, never trained
    assert [d.id for d in bench.members] == ["f0d0sc1", "f1d0sc1", "f2d0sc1"]
    assert [d.id for d in bench.nonmembers] == ["f0d1sc1", "f1d1sc1", "f2d1sc1"]
    assert bench.members[0].document == bench.forget[0].input + " " + bench.forget[0].output.lstrip()
    again = lume_subset(write_lume(tmp_path / "lume"), tmp_path / "subset2", SubsetSpec(docs=1, qa_per_doc=1))
    assert load_benchmark(again).content_hash == bench.content_hash
    with pytest.raises(Exception, match="needs 3"):
        lume_subset(tmp_path / "lume", tmp_path / "x", SubsetSpec(docs=3))  # no non-members left


@requires_lume
def test_subset_of_the_real_lume(tmp_path):
    from harness.real.demo import SubsetSpec, lume_subset
    from harness.tasks.lume.data import load_benchmark

    bench = load_benchmark(lume_subset(LUME_DIR, tmp_path / "subset", SubsetSpec(docs=2)))
    counts = bench.counts()
    assert all(counts[f"{s}/{t}/{k}"] == 2 for s in ("forget", "retain") for t in TASKS for k in ("sc", "qa"))
    assert counts["mia/member"] == counts["mia/nonmember"] == 6
    assert not {d.id for d in bench.members} & {d.id for d in bench.nonmembers}
    assert {d.id for d in bench.members} == {r.id for r in bench.forget if r.kind == "sc"}


def test_real_demo_pipeline_at_tiny_scale(tmp_path, tiny_model_dir):
    """Subset → fine-tuned target (memorises) → methods incl. the ZJUKLAB merge → semeval2025-1b board."""
    from harness.real.demo import FinetuneSpec, RealDemoPlan, SubsetSpec, run_real_demo
    from tasks.test_mmlu import write_csv_layout

    assets = tmp_path / "assets"
    write_csv_layout(assets / "mmlu")
    plan = RealDemoPlan(out=tmp_path / "out", assets=assets, lume=write_lume(tmp_path / "lume"),
                        subset=SubsetSpec(docs=1), base_model=tiny_model_dir,
                        finetune=FinetuneSpec(learning_rate=3e-3, batch_size=4, max_epochs=100, stop_loss=0.05),
                        methods=("grad_ascent", "zjuklab_merge"), method_epochs=1, mmlu_subjects="alpha_facts",
                        mmlu_limit=4, max_new_tokens=40, bootstrap=20)
    summary = run_real_demo(plan)
    assert summary["target"]["memorised"], summary["target"]["loss_by_epoch"]
    assert set(summary["rows"]) == {"target", "grad_ascent", "zjuklab_merge"}
    target = summary["rows"]["target"]
    assert target["forget/regurgitation"] > 0.5  # the fine-tuned target regurgitates its documents
    assert all(row["mmlu"] is not None and row["final_score"] is not None for row in summary["rows"].values())
    board = (plan.out / "leaderboard")
    assert any(board.glob("*.md"))
    for run in ("target", "grad_ascent", "zjuklab_merge"):
        record = json.loads((plan.out / "runs" / run / "result.json").read_text())
        assert record["files"]["mmlu"] == "mmlu.jsonl"
    # a rerun reuses the target and the finished runs
    again = run_real_demo(plan)
    assert again["target"]["key"] == summary["target"]["key"]
    assert again["rows"] == summary["rows"]
