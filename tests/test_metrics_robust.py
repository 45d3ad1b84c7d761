"""metrics.robust: recovery = (attacked - unlearned) / (target - unlearned), hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.core.errors import DataError
from metrics.robust import Recovery, RecoverySettings, RunRows, recovery

NO_BOOT = RecoverySettings(replicates=0)


def sc(i: str, task: str, score: float, loss: float | None = 1.0) -> dict:
    return {"split": "forget", "id": f"{i}sc1", "task": task, "kind": "sc", "input": "p", "reference": "r",
            "generation": "g", "regurgitation": score, "rouge1_recall": score, "answer_loss": loss}


def qa(i: str, task: str, correct: int, loss: float | None = 1.0) -> dict:
    return {"split": "forget", "id": f"{i}qa0", "task": task, "kind": "qa", "input": "q?", "reference": "a",
            "generation": "a" if correct else "b", "knowledge": correct, "answer_loss": loss}


def retain_row() -> dict:
    return {"split": "retain", "id": "zzsc1", "task": "Task1", "kind": "sc", "input": "p", "reference": "r",
            "generation": "g", "regurgitation": 0.7, "rouge1_recall": 0.7, "answer_loss": 0.3}


def mia(member_losses, nonmember_losses) -> list[dict]:
    rows = [{"set": "member", "id": f"m{i}", "loss": v, "zlib_entropy": 50} for i, v in enumerate(member_losses)]
    return rows + [{"set": "nonmember", "id": f"n{i}", "loss": v, "zlib_entropy": 50}
                   for i, v in enumerate(nonmember_losses)]


def three_runs():
    """Task1: two sc and two qa records; Task2: one sc record. Hand-computed values in the tests."""
    target = [sc("a", "Task1", 1.0, 0.2), sc("b", "Task1", 0.8, 0.4), qa("c", "Task1", 1, 0.1),
              qa("d", "Task1", 1, 0.3), sc("e", "Task2", 0.5, 1.0), retain_row()]
    unlearned = [sc("a", "Task1", 0.1, 4.2), sc("b", "Task1", 0.1, 4.4), qa("c", "Task1", 0, 5.1),
                 qa("d", "Task1", 0, 5.3), sc("e", "Task2", 0.5, 1.0), retain_row()]
    attacked = [sc("a", "Task1", 0.5, 2.2), sc("b", "Task1", 0.5, 2.4), qa("c", "Task1", 1, 2.1),
                qa("d", "Task1", 0, 2.3), sc("e", "Task2", 0.9, 1.0), retain_row()]
    return (RunRows(target, mia([0.1, 0.2], [3.0, 4.0]), "target"),
            RunRows(unlearned, mia([3.5, 3.5], [3.0, 4.0]), "unlearned"),
            RunRows(attacked, mia([2.0, 3.5], [3.0, 4.0]), "attacked"))


def test_hand_computed_point_estimates():
    out = recovery(*three_runs(), settings=NO_BOOT)
    # regurgitation Task1: target 0.9, unlearned 0.1, attacked 0.5 -> 0.4 / 0.8
    r = out["forget/Task1/regurgitation"]
    assert (r.target, r.unlearned, r.attacked) == pytest.approx((0.9, 0.1, 0.5))
    assert r.gap == pytest.approx(0.8)
    assert r.recovered == pytest.approx(0.5)
    assert r.n == 2
    # knowledge Task1: 1 -> 0 -> 0.5
    assert out["forget/Task1/knowledge"].recovered == pytest.approx(0.5)
    # pooled sc over Task1 + Task2: target (1+0.8+0.5)/3, unlearned (0.1+0.1+0.5)/3, attacked (0.5+0.5+0.9)/3
    pooled = out["forget/all/regurgitation"]
    assert pooled.recovered == pytest.approx((1.9 - 0.7) / (2.3 - 0.7))
    # answer loss over the five forget records: target 2.0/5, unlearned 20.0/5, attacked 10.0/5
    loss = out["answer_loss/forget"]
    assert (loss.target, loss.unlearned, loss.attacked) == pytest.approx((0.4, 4.0, 2.0))
    assert loss.recovered == pytest.approx((2.0 - 4.0) / (0.4 - 4.0))  # 5/9 of the way back
    # MIA loss attack (membership score -loss): target members -0.1, -0.2 beat non-members -3, -4 in
    # all 4 pairs (AUC 1); unlearned members -3.5, -3.5 win 1 pair each (2/4 = 0.5); attacked members
    # -2.0 (2 pairs) and -3.5 (1 pair): 3/4 = 0.75 -> recovered (0.75 - 0.5) / (1 - 0.5) = 0.5
    m = out["mia_auc"]
    assert (m.target, m.unlearned, m.attacked) == pytest.approx((1.0, 0.5, 0.75))
    assert m.recovered == pytest.approx(0.5)
    assert out["mia_auc/zlib"].recovered == pytest.approx(0.5)  # same zlib size: same ordering


def test_no_forgetting_is_undefined_not_huge():
    out = recovery(*three_runs(), settings=NO_BOOT)
    r = out["forget/Task2/regurgitation"]  # target 0.5 = unlearned 0.5, attacked 0.9
    assert r.gap == 0 and r.recovered is None and r.ci is None
    assert "no forgetting to recover" in r.reason


def test_gap_below_floor_is_undefined():
    t, u, a = three_runs()
    out = recovery(t, u, a, settings=RecoverySettings(replicates=0, min_gap=0.9))
    assert out["forget/Task1/regurgitation"].recovered is None  # gap 0.8 < 0.9
    assert out["forget/Task1/knowledge"].recovered == pytest.approx(0.5)  # gap 1.0


def test_values_are_not_clipped():
    t, u, a = three_runs()
    worse = RunRows([{**r, "regurgitation": 0.0} if r["kind"] == "sc" and r["split"] == "forget" else r
                     for r in a.samples], a.mia, "attacked")
    out = recovery(t, u, worse, settings=NO_BOOT)
    assert out["forget/Task1/regurgitation"].recovered == pytest.approx((0.0 - 0.1) / 0.8)  # negative


def paired_runs(n: int = 30, seed: int = 1):
    """Per record: target t_i, unlearned u_i, attacked = u_i + 0.5 (t_i - u_i). Every resample of the
    records then has ratio exactly 0.5 -- but only if the three runs are resampled together."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.6, 1.0, n)
    u = rng.uniform(0.0, 0.3, n)
    a = u + 0.5 * (t - u)
    rows = lambda v: [sc(f"r{i}", "Task1", float(x)) for i, x in enumerate(v)]  # noqa: E731
    return RunRows(rows(t), name="target"), RunRows(rows(u), name="unlearned"), RunRows(rows(a), name="attacked")


def test_paired_bootstrap_resamples_records_jointly():
    out = recovery(*paired_runs(), settings=RecoverySettings(replicates=400, seed=3))
    r = out["forget/Task1/regurgitation"]
    assert r.recovered == pytest.approx(0.5)
    assert r.ci == pytest.approx((0.5, 0.5), abs=1e-12)  # independent resampling would spread it
    # attacked == target -> every replicate 1; attacked == unlearned -> every replicate 0
    t, u, _ = paired_runs()
    assert recovery(t, u, RunRows(t.samples, name="a"), RecoverySettings(replicates=200)
                    )["forget/Task1/regurgitation"].ci == pytest.approx((1.0, 1.0))
    assert recovery(t, u, RunRows(u.samples, name="a"), RecoverySettings(replicates=200)
                    )["forget/Task1/regurgitation"].ci == pytest.approx((0.0, 0.0))


def test_interval_brackets_point_and_is_deterministic():
    rng = np.random.default_rng(0)
    n = 40
    t = rng.uniform(0.5, 1, n)
    u = rng.uniform(0, 0.4, n)
    a = np.clip(u + rng.uniform(0, 0.6, n), 0, 1)
    runs = [RunRows([sc(f"r{i}", "Task1", float(x)) for i, x in enumerate(v)], name=name)
            for v, name in ((t, "t"), (u, "u"), (a, "a"))]
    s = RecoverySettings(replicates=500, seed=7)
    r1 = recovery(*runs, settings=s)["forget/Task1/regurgitation"]
    r2 = recovery(*runs, settings=s)["forget/Task1/regurgitation"]
    assert r1 == r2
    assert r1.ci[0] < r1.recovered < r1.ci[1]


def test_unstable_gap_gives_no_interval():
    # Only one of ten records was forgotten: the gap (0.1) is above the floor (0.05), but a third of
    # the resamples leave that record out entirely (gap 0) and the ratio there is unbounded.
    t = [sc(f"r{i}", "Task1", 1.0 if i == 0 else 0.0) for i in range(10)]
    u = [sc(f"r{i}", "Task1", 0.0) for i in range(10)]
    a = [sc(f"r{i}", "Task1", 0.5 if i == 0 else 0.0) for i in range(10)]
    r = recovery(RunRows(t), RunRows(u), RunRows(a), RecoverySettings(replicates=300))["forget/Task1/regurgitation"]
    assert r.recovered == pytest.approx(0.5)
    assert r.ci is None and "not stable" in r.reason


def test_mia_interval_uses_weighted_auc():
    rng = np.random.default_rng(2)
    mem_t, non = rng.normal(0, 1, 25), rng.normal(2, 1, 25)
    mem_u = rng.normal(2, 1, 25)
    rows = [sc("x", "Task1", 1.0)]
    out = recovery(RunRows(rows, mia(list(mem_t), list(non))), RunRows(rows, mia(list(mem_u), list(non))),
                   RunRows(rows, mia(list(mem_t), list(non))), RecoverySettings(replicates=200))
    m = out["mia_auc"]
    assert m.recovered == pytest.approx(1.0)
    assert m.ci == pytest.approx((1.0, 1.0))  # attacked == target on every resample
    assert "mia_auc/zlib" in out and "mia_auc/min_k" not in out  # rows have no min_k field


def test_misaligned_runs_are_refused():
    t, u, a = three_runs()
    short = RunRows([r for r in a.samples if r["id"] != "bsc1"], a.mia, "attacked-run")
    with pytest.raises(DataError, match="attacked-run.*bsc1"):
        recovery(t, u, short, NO_BOOT)
    other_mia = RunRows(a.samples, [{**r, "id": r["id"] + "x"} for r in a.mia], "attacked-run")
    with pytest.raises(DataError, match="MIA documents differ"):
        recovery(t, u, other_mia, NO_BOOT)
    with pytest.raises(DataError, match="no forget record"):
        recovery(RunRows([retain_row()], name="t"), u, a, NO_BOOT)


def test_unscored_rows_need_rescore():
    t, u, a = three_runs()
    bare = RunRows([{k: v for k, v in r.items() if k not in ("regurgitation", "rouge1_recall", "knowledge")}
                    for r in a.samples], a.mia, "attacked")
    with pytest.raises(DataError, match="score the rows first"):
        recovery(t, u, bare, NO_BOOT)
    # rescoring recomputes from generation vs reference ("g" vs "r": ROUGE 0; qa "a" == "a": 1)
    out = recovery(t, u, bare, RecoverySettings(replicates=0, rescore=True))
    assert out["forget/Task1/knowledge"].attacked == pytest.approx(0.5)
    assert out["forget/Task1/regurgitation"].attacked == 0.0


def test_settings_are_checked():
    with pytest.raises(ValueError, match="replicates"):
        RecoverySettings(replicates=-1)
    with pytest.raises(ValueError, match="min_gap"):
        RecoverySettings(min_gap=0)
    with pytest.raises(ValueError, match="confidence"):
        RecoverySettings(confidence=1.0)


def test_to_dict_and_spec():
    from metrics import metric_spec

    r = recovery(*three_runs(), settings=RecoverySettings(replicates=50))["forget/Task1/knowledge"]
    d = r.to_dict()
    assert d["metric"] == "forget/Task1/knowledge" and (d["ci"] is None or len(d["ci"]) == 2)
    assert isinstance(r, Recovery) and not math.isnan(r.recovered)
    assert metric_spec("recovered/forget/Task1/knowledge").direction == "min"



def test_a_few_replicates_without_a_gap_widen_the_interval_instead_of_making_it_nan():
    # The MIA of the real SmolLM2 target (6 members, 6 non-members) and of its gradient-ascent run:
    # AUC 1.0 -> 0.556. In a few bootstrap replicates (fewer than the 2.5% tail) the resampled
    # unlearned AUC is 1 too, so target - unlearned is 0 and, with the attacked run equal to the
    # unlearned one, the ratio is 0/0. Those replicates used to turn both interval ends into NaN,
    # which then crashed writing robust.json.
    target = mia([0.06, 0.04, 0.2, 0.24, 0.06, 0.08], [3.11, 3.32, 2.47, 2.71, 3.64, 4.26])
    unlearned = mia([0.81, 0.43, 12.96, 12.42, 5.74, 4.87], [3.93, 4.36, 11.2, 11.3, 8.5, 7.93])
    rows = three_runs()
    runs = (RunRows(rows[0].samples, target, "target"), RunRows(rows[1].samples, unlearned, "unlearned"),
            RunRows(rows[1].samples, unlearned, "attacked"))
    out = recovery(*runs, settings=RecoverySettings(replicates=1000, seed=0))
    m = out["mia_auc"]
    assert m.unlearned == pytest.approx(20 / 36) and m.recovered == 0
    assert m.ci is not None and all(math.isfinite(x) for x in m.ci), m
    assert m.ci == (0.0, 0.0)
    for rec in out.values():  # nothing anywhere is NaN
        assert rec.ci is None or all(math.isfinite(x) for x in rec.ci), rec


def test_strata_of_one_record_are_resampled_together_not_frozen():
    # A held-out half of a small forget set: one sc and one qa record per task. Resampled within
    # (task, kind) strata, every replicate would be the sample itself and the interval zero wide.
    def runs(sc_scores, qa_scores, losses):
        return [sc(f"s{k}", f"Task{k}", sc_scores[k - 1], losses[k - 1]) for k in (1, 2, 3)] + \
               [qa(f"q{k}", f"Task{k}", qa_scores[k - 1], losses[k + 2]) for k in (1, 2, 3)]
    target = RunRows(runs([1.0, 0.9, 1.0], [1, 1, 1], [0.1] * 6), name="target")
    unlearned = RunRows(runs([0.1, 0.2, 0.0], [0, 0, 0], [8.0] * 6), name="unlearned")
    attacked = RunRows(runs([0.9, 0.2, 0.1], [1, 0, 0], [1.0, 8.0, 7.0, 2.0, 8.0, 8.0]), name="attacked")
    out = recovery(target, unlearned, attacked, settings=RecoverySettings(replicates=1000, seed=0))
    pooled = out["forget/all/regurgitation"]
    assert pooled.recovered == pytest.approx((1.2 / 3 - 0.3 / 3) / (2.9 / 3 - 0.3 / 3))
    low, high = pooled.ci
    assert low < pooled.recovered < high and high - low > 0.3, pooled
    knowledge = out["forget/all/knowledge"]  # 1 of 3 questions back: 1/3, resampled 0 .. 1
    assert knowledge.recovered == pytest.approx(1 / 3) and knowledge.ci[0] == 0 and knowledge.ci[1] == 1
    loss = out["answer_loss/forget"]
    assert loss.ci[0] < loss.recovered < loss.ci[1]
    one = out["forget/Task1/regurgitation"]  # a metric over one record: no interval, and why
    assert one.recovered == pytest.approx(0.8 / 0.9) and one.ci is None
    assert one.reason == "no interval: the metric is computed over a single record"
    again = recovery(target, unlearned, attacked, settings=RecoverySettings(replicates=1000, seed=0))
    assert again["forget/all/regurgitation"].ci == pooled.ci  # deterministic
