"""Data parallelism: 2 CPU processes (gloo) give exactly the single-process outputs."""

import json
import os
import subprocess
import sys

import pytest

from harness.backends.distributed import _strip_num_processes, map_sharded, shard_bounds


@pytest.mark.parametrize("n, world", [(0, 2), (1, 2), (5, 2), (6, 3), (7, 4), (3, 5)])
def test_shards_cover_every_item_exactly_once(n, world):
    bounds = [shard_bounds(n, world, r) for r in range(world)]
    covered = [i for a, b in bounds for i in range(a, b)]
    assert covered == list(range(n))  # in order, no duplicates, nothing dropped (no padding)
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_single_process_map_is_plain_map():
    assert map_sharded(lambda xs: [x * 2 for x in xs], [1, 2, 3]) == [2, 4, 6]


def test_num_processes_flag_is_stripped_for_the_relaunch():
    assert _strip_num_processes(["evaluate", "--num-processes", "2", "--out", "x"]) == ["evaluate", "--out", "x"]
    assert _strip_num_processes(["evaluate", "--num-processes=2"]) == ["evaluate"]


def _evaluate(model, data, out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "harness", "-q", "evaluate", "--model", str(model), "--data",
                           str(data), "--out", str(out), "--max-new-tokens", "12", "--no-cache", "--no-progress",
                           "--batch-size", "3", *extra], capture_output=True, text=True, env=env, timeout=600)


def test_two_processes_write_the_same_outputs_as_one(tmp_path, tiny_model_dir, mini_benchmark):
    one = _evaluate(tiny_model_dir, mini_benchmark, tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = _evaluate(tiny_model_dir, mini_benchmark, tmp_path / "two", "--num-processes", "2")
    assert two.returncode == 0, two.stderr
    for name in ("samples.jsonl", "mia.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    a = json.loads((tmp_path / "one" / "result.json").read_text())
    b = json.loads((tmp_path / "two" / "result.json").read_text())
    assert b["settings"].pop("num_processes") == 2 and a["settings"].pop("num_processes") == 1
    for rec in (a, b):  # what legitimately differs between two runs: times and per-process engine stats
        for key in ("created_at", "finished_at", "timings", "run_id"):
            rec.pop(key)
        rec["settings"].pop("engine_stats")
    assert a == b
    # every record appears exactly once
    rows = [json.loads(line) for line in (tmp_path / "two" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == len({(r["split"], r["id"]) for r in rows}) == 13


def test_two_process_training_matches_one_process_with_the_same_global_batch(tmp_path, tiny_model_dir,
                                                                            mini_benchmark):
    """2 processes × batch 2 vs 1 process × batch 4: same global batch, one saved model, close scores, and
    the training curves (evaluated on the main process only) do not hang the other process."""
    def unlearn(out, *extra):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        return subprocess.run(
            [sys.executable, "-m", "harness", "-q", "unlearn", "--method", "grad_diff", "--model", str(tiny_model_dir),
             "--data", str(mini_benchmark), "--out", str(out), "--max-new-tokens", "12", "--no-cache",
             "--no-progress", "--set", "lora_r=4", "lora_alpha=4", "max_steps=3", "eval_every=1", "eval_sample=3",
             "eval_max_new_tokens=8", "max_length=64", "learning_rate=0.005", "retain_sampling=cycle", *extra],
            capture_output=True, text=True, env=env, timeout=600)

    one = unlearn(tmp_path / "one", "--set", "per_device_batch_size=4")
    assert one.returncode == 0, one.stderr
    two = unlearn(tmp_path / "two", "--set", "per_device_batch_size=2", "--num-processes", "2")
    assert two.returncode == 0, two.stderr
    assert sorted(p.name for p in (tmp_path / "two" / "model").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one" / "model").iterdir())
    a = json.loads((tmp_path / "one" / "result.json").read_text())["metrics"]
    b = json.loads((tmp_path / "two" / "result.json").read_text())["metrics"]
    log = [json.loads(x) for x in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    start = next(e for e in log if e.get("event") == "start")
    assert start["processes"] == 2 and start["global_batch"] == 4
    # The training curves are drawn by the main process alone (they once waited forever for the others).
    assert [e["step"] for e in log if e.get("event") == "eval"] == [0, 1, 2, 3]
    # Different sharding of the same examples changes float summation order only: scores stay close.
    for key in ("forget/Task1/regurgitation", "retain/Task2/regurgitation", "answer_loss/forget", "mia_auc"):
        assert abs(a[key] - b[key]) <= 0.05, (key, a[key], b[key])


def test_vllm_engine_without_vllm_fails_at_once_with_install_hint(tmp_path, tiny_model_dir, mini_benchmark):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    proc = _evaluate(tiny_model_dir, mini_benchmark, tmp_path / "v", "--engine", "vllm")
    assert proc.returncode == 2
    assert "unlearnbench[vllm]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "v" / "result.json").exists()
