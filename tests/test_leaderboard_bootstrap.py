"""Bootstrap intervals and rank stability from per-sample files (samples.jsonl, mia.jsonl)."""

from __future__ import annotations

import csv
import random
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.core import fileio
from test_leaderboard import make_record, write_record

TASKS = ("Task1", "Task2", "Task3")
WORDS = ("river lamp quiet stone maple harbor violet ember cotton falcon meadow copper lantern orbit "
         "velvet willow canyon saddle thistle marble").split()


def item_ids(n_sc: int, n_qa: int) -> list[tuple[str, str, str]]:
    """(split, task, id) of every item; ids end in sc/qa plus one character, as LUME's."""
    out = []
    for split in ("forget", "retain"):
        for t, task in enumerate(TASKS):
            out += [(split, task, f"{split[0]}{t}x{i}sc1") for i in range(n_sc)]
            out += [(split, task, f"{split[0]}{t}x{i}qa0") for i in range(n_qa)]
    return out


def make_samples(keep_forget: float, keep_retain: float, seed: int, n_sc: int = 6, n_qa: int = 5) -> list[dict]:
    """Rows whose generation keeps a share of the reference: low ``keep_forget`` = well forgotten."""
    from metrics import score_rows

    rng = random.Random(seed)
    rows = []
    for split, task, rid in item_ids(n_sc, n_qa):
        item_rng = random.Random(rid)  # the reference depends on the item only
        keep = keep_forget if split == "forget" else keep_retain
        if rid[-3:-1] == "sc":
            ref = " ".join(item_rng.choice(WORDS) for _ in range(8))
            gen = " ".join(w if rng.random() < keep else rng.choice(WORDS) for w in ref.split())
        else:
            ref = item_rng.choice(WORDS)
            gen = ref if rng.random() < keep else rng.choice(WORDS)
        rows.append({"split": split, "id": rid, "task": task, "input": "prompt", "reference": ref,
                     "generation": gen, "answer_loss": 1.0 + rng.random()})
    return score_rows(rows)


def make_mia(shift: float, seed: int, n: int = 15) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for s in ("member", "nonmember"):
        for i in range(n):
            loss = round(2.0 + rng.gauss(0, 0.4) + (shift if s == "nonmember" else 0.0), 1)  # rounding: ties
            rows.append({"set": s, "id": f"{s[0]}{i}", "n_tokens": 40, "loss": loss,
                         "zlib_entropy": 60 + rng.randrange(40), "min_k": -loss - rng.random(),
                         "min_k_pp": rng.gauss(0, 1) - shift})
    return rows


def write_run(folder: Path, label: str, method: str, keep_forget: float, keep_retain: float, shift: float,
              mmlu: float, seed: int = 0, with_files: bool = True) -> Path:
    from metrics import compute_metrics

    samples = make_samples(keep_forget, keep_retain, seed=zlib.crc32(f"{label}/{seed}".encode()))
    mia = make_mia(shift, seed=zlib.crc32(f"{label}/{seed}/mia".encode()))
    metrics = compute_metrics(samples, mia, mmlu=mmlu)
    write_record(folder, make_record(label, method, metrics, seed=seed, run_id=f"{label}-s{seed}"))
    if with_files:
        fileio.write_jsonl(folder / "samples.jsonl", samples)
        fileio.write_jsonl(folder / "mia.jsonl", mia)
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    write_run(tmp_path / "best", "best", "npo", 0.05, 0.95, 0.0, 0.48)
    write_run(tmp_path / "a-s0", "close_a", "rmu", 0.5, 0.6, 0.3, 0.46, seed=0)
    write_run(tmp_path / "a-s1", "close_a", "rmu", 0.5, 0.6, 0.3, 0.46, seed=1)
    write_run(tmp_path / "b", "close_b", "gradient_difference", 0.5, 0.6, 0.3, 0.46)
    return tmp_path


def test_unresampled_replicate_equals_compute_metrics(runs):
    """The vectorised formulas, with every item counted once, give compute_metrics' numbers."""
    from harness.core.records import read_result
    from leaderboards.bootstrap import _layout, identity_counts, load_run, replicate_metrics
    from leaderboards.collect import LoadedRecord

    for run in ("best", "a-s0", "b"):
        rec = LoadedRecord(path=runs / run / "result.json", result=read_result(runs / run))
        data, why = load_run(rec)
        assert data is not None, why
        layout = _layout(data)
        reps = replicate_metrics(data, layout, *identity_counts(layout))
        expected = rec.result.metrics
        for name in ("task_aggregate", "mia_auc", "mia_score", "mia_auc/zlib", "mia_auc/min_k", "mia_auc/min_k_pp",
                     "final_score", "forget/Task2/regurgitation", "retain/Task3/knowledge"):
            assert reps[name].shape == (1,)
            assert reps[name][0] == pytest.approx(expected[name], abs=1e-12), (run, name)


def test_weighted_auc_matches_sklearn_on_the_expanded_resample():
    from sklearn.metrics import roc_auc_score

    from metrics.mia import weighted_auc

    rng = np.random.default_rng(3)
    members = np.round(rng.normal(0, 1, 12), 1)  # rounded: ties within and across the two sets
    nonmembers = np.round(rng.normal(0.4, 1, 9), 1)
    cm = rng.multinomial(12, np.full(12, 1 / 12), size=20)
    cn = rng.multinomial(9, np.full(9, 1 / 9), size=20)
    got = weighted_auc(members, nonmembers, cm, cn)
    for b in range(20):
        m = np.repeat(members, cm[b])
        n = np.repeat(nonmembers, cn[b])
        expected = roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n])
        assert got[b] == pytest.approx(expected, abs=1e-12)


def test_mia_aucs_equal_the_metrics_packages_sklearn_aucs():
    """The record check recomputes MIA AUCs with numpy (no scikit-learn import); they equal the
    metrics package's (sklearn's roc_curve + auc) to float precision, ties included."""
    from leaderboards.bootstrap import mia_aucs
    from metrics import attack_aucs
    from metrics.semeval import MIA_METRIC_NAMES

    for shift, seed in ((0.0, 1), (0.3, 2), (-0.8, 3)):
        rows = make_mia(shift, seed=seed, n=40)  # losses rounded to 0.1: many ties
        expected = attack_aucs(rows)
        got = mia_aucs(rows)
        for attack, name in MIA_METRIC_NAMES.items():
            assert got[name] == pytest.approx(expected[attack], abs=1e-12), (attack, shift)
    assert mia_aucs([r for r in make_mia(0.1, 4) if r["set"] == "member"])["mia_auc"] is None


def _build(folder: Path, replicates: int = 300, seed: int = 0):
    import leaderboards

    [(_, lb)] = leaderboards.build_leaderboards([folder], "semeval2025", bootstrap=replicates, seed=seed,
                                                progress=False)
    return lb


def test_intervals_rank_stability_and_determinism(runs):
    lb = _build(runs)
    by_label = {e.label: e for e in lb.entries}
    assert lb.bootstrap == 300
    for entry in lb.entries:
        for name in ("final_score", "task_aggregate", "mia_score", "mia_auc"):
            low, high = entry.ci[name]
            assert low <= entry.values[name] <= high, (entry.label, name)
            assert 0 <= high - low <= 1
        assert entry.ci["final_score"][1] - entry.ci["final_score"][0] > 0
        assert "mmlu" not in entry.ci  # held fixed: no per-question records
    # the clearly best entry always keeps rank 1; the two near-identical ones swap places
    assert by_label["best"].rank == 1 and by_label["best"].rank_stability == 1.0
    assert 0 < by_label["close_a"].rank_stability < 1 and 0 < by_label["close_b"].rank_stability < 1
    assert by_label["close_a"].n_seeds == 2
    again = _build(runs)
    assert [(e.ci, e.rank_stability) for e in again.entries] == [(e.ci, e.rank_stability) for e in lb.entries]
    other = _build(runs, seed=1)
    assert [e.ci for e in other.entries] != [e.ci for e in lb.entries]
    assert any("held fixed" in note for note in lb.notes)


def test_csv_gets_interval_and_stability_columns(runs):
    import leaderboards

    lb = _build(runs, replicates=50)
    rows = list(csv.DictReader(leaderboards.to_csv(lb).splitlines()))
    assert {"final_score_ci95_low", "final_score_ci95_high", "rank_stability"} <= set(rows[0])
    assert all(r["final_score_ci95_low"] and r["rank_stability"] for r in rows)
    assert "[" in leaderboards.to_markdown(lb)  # intervals shown as [low, high]


def test_runs_without_per_sample_files_keep_their_point_score(runs):
    write_run(runs / "nofiles", "nofiles", "npo", 0.3, 0.7, 0.1, 0.47, with_files=False)
    lb = _build(runs, replicates=50)
    entry = next(e for e in lb.entries if e.label == "nofiles")
    assert entry.ci == {} and entry.rank_stability is None
    assert any("nofiles: no samples.jsonl" in note for note in lb.notes)
    assert next(e for e in lb.entries if e.label == "best").ci


def test_no_per_sample_files_at_all_is_noted(tmp_path):
    write_run(tmp_path / "x", "x", "npo", 0.3, 0.7, 0.1, 0.47, with_files=False)
    lb = _build(tmp_path, replicates=50)
    assert lb.bootstrap == 0 and any("No bootstrap intervals" in n for n in lb.notes)


def test_bootstrap_is_fast_on_a_lume_sized_board(tmp_path):
    """~1,400 items and 2 x 150 MIA documents per run, 8 runs, 1000 replicates: a few seconds (with every
    run's files checked against its record)."""
    import leaderboards
    from metrics import compute_metrics

    rng = random.Random(0)
    ids = item_ids(n_sc=120, n_qa=110)
    for r in range(8):
        samples = []
        for split, task, rid in ids:
            sc = rid[-3:-1] == "sc"
            samples.append({"split": split, "id": rid, "task": task, "kind": "sc" if sc else "qa", "input": "p",
                            "reference": "r", "generation": "g", "regurgitation": rng.random() if sc else None,
                            "rouge1_recall": rng.random() if sc else None, "knowledge": None if sc else rng.randrange(2)})
        mia = [{"set": s, "id": f"{s}{i}", "n_tokens": 50, "loss": rng.gauss(2, 0.5), "zlib_entropy": 90}
               for s in ("member", "nonmember") for i in range(150)]
        folder = tmp_path / f"run{r}"
        metrics = compute_metrics(samples, mia, mmlu=0.45, rescore=False)  # the record the files give
        write_record(folder, make_record(f"m{r}", "npo", metrics, run_id=f"run{r}"))
        fileio.write_jsonl(folder / "samples.jsonl", samples)
        fileio.write_jsonl(folder / "mia.jsonl", mia)
    start = time.perf_counter()
    [(_, lb)] = leaderboards.build_leaderboards([tmp_path], "semeval2025", bootstrap=1000, seed=0, progress=False)
    elapsed = time.perf_counter() - start
    assert all("final_score" in e.ci for e in lb.entries)
    assert elapsed < 20, f"bootstrap took {elapsed:.1f} s"
