"""TOFU scoring: the published Phi-1.5 logs to the last bit, hand-computed cases, malformed logs.

The real logs (``../shared/tofu-logs``, from locuslab/tofu) and the values TOFU's own
``aggregate_eval_stat.py`` computes from them are described in their SOURCE.md.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import pytest

from harness.core.errors import DataError
from metrics import metric_spec
from metrics.tofu import (
    FORGET_KS_STATISTIC,
    FORGET_QUALITY,
    MODEL_UTILITY,
    MODEL_UTILITY_TERMS,
    TOFU_AGGREGATED_LOG,
    TOFU_LOG_FILES,
    TOFU_SETS,
    SetColumns,
    forget_quality,
    model_utility,
    read_tofu_logs,
    tofu_metrics,
)

from conftest import SHARED

TOFU_LOGS = SHARED / "tofu-logs"
requires_tofu_logs = pytest.mark.skipif(not (TOFU_LOGS / "phi-full" / "eval_log.json").is_file(),
                                        reason="../shared/tofu-logs is not present")

LN2, LN4 = math.log(2), math.log(4)


def row(set_name: str, item: str, answer_loss: float = 1.0, paraphrased_loss: float = 1.0,
        perturbed_losses=(1.0, 1.0), rougeL_recall: float = 1.0) -> dict:
    return {"set": set_name, "id": item, "answer_loss": answer_loss, "paraphrased_loss": paraphrased_loss,
            "perturbed_losses": list(perturbed_losses), "rougeL_recall": rougeL_recall}


def full_rows(**overrides) -> list[dict]:
    """One item in each set; ``overrides`` maps a set to its rows."""
    rows = []
    for set_name in TOFU_SETS:
        rows.extend(overrides.get(set_name, [row(set_name, "0")]))
    return rows


# -- the published logs, to the last bit -----------------------------------------------------------
@requires_tofu_logs
def test_model_utility_of_the_published_phi_models_is_bit_exact():
    assert tofu_metrics(read_tofu_logs(TOFU_LOGS / "phi-full"))[MODEL_UTILITY] == 0.5220737132035151
    assert tofu_metrics(read_tofu_logs(TOFU_LOGS / "phi-retain90"))[MODEL_UTILITY] == 0.5319909117798325


@requires_tofu_logs
def test_forget_quality_of_phi_full_against_phi_retain90_is_bit_exact():
    result = tofu_metrics(read_tofu_logs(TOFU_LOGS / "phi-full"), read_tofu_logs(TOFU_LOGS / "phi-retain90"))
    assert result[FORGET_QUALITY] == 2.1942743021891237e-16
    # 104 of the 300 truth ratios separate the two models' empirical distributions
    assert result[FORGET_KS_STATISTIC] == pytest.approx(104 / 300, abs=1e-15)
    # the retain-only model against itself: indistinguishable
    retain = read_tofu_logs(TOFU_LOGS / "phi-retain90")
    assert tofu_metrics(retain, retain)[FORGET_QUALITY] == 1.0


@requires_tofu_logs
def test_published_logs_give_every_component_in_its_declared_range():
    result = tofu_metrics(read_tofu_logs(TOFU_LOGS / "phi-full"), read_tofu_logs(TOFU_LOGS / "phi-retain90"))
    assert len(result) == 4 * 3 + 3
    for name, value in result.items():
        assert metric_spec(name).value_problem(value) is None, name
    # the full model answers its training data: near-perfect retain and forget ROUGE
    assert result["tofu/forget/rougeL_recall"] > 0.9 and result["tofu/retain/rougeL_recall"] > 0.9


@requires_tofu_logs
def test_published_logs_rows_carry_the_generated_text(tmp_path):
    rows = read_tofu_logs(TOFU_LOGS / "phi-full")
    counts = {s: sum(r["set"] == s for r in rows) for s in TOFU_SETS}
    assert counts == {"retain": 300, "forget": 300, "real_authors": 100, "world_facts": 117}
    first = rows[0]
    assert first["prompt"].startswith("Question: ") and first["generation"].startswith("Answer: ")
    assert len(first["perturbed_losses"]) == 5
    assert len(next(r for r in rows if r["set"] == "real_authors")["perturbed_losses"]) == 3


@requires_tofu_logs
def test_aggregated_log_file_gives_the_same_numbers(tmp_path):
    """TOFU also writes the four logs as one file keyed by file name; either form reads the same."""
    for model in ("phi-full", "phi-retain90"):
        folder = tmp_path / model
        folder.mkdir()
        combined = {file: json.loads((TOFU_LOGS / model / file).read_text()) for file in TOFU_LOG_FILES.values()}
        (folder / TOFU_AGGREGATED_LOG).write_text(json.dumps(combined))
    assert read_tofu_logs(tmp_path / "phi-full") == read_tofu_logs(TOFU_LOGS / "phi-full")
    result = tofu_metrics(read_tofu_logs(tmp_path / "phi-full"), read_tofu_logs(tmp_path / "phi-retain90"))
    assert result[MODEL_UTILITY] == 0.5220737132035151
    assert result[FORGET_QUALITY] == 2.1942743021891237e-16


# -- hand-computed cases ---------------------------------------------------------------------------
def test_probability_is_the_mean_answer_probability_on_retain_and_forget():
    rows = [row("retain", "0", answer_loss=LN2), row("retain", "1", answer_loss=LN4)]
    assert tofu_metrics(rows)["tofu/retain/probability"] == pytest.approx((0.5 + 0.25) / 2, rel=1e-15)
    rows = [row("forget", "0", answer_loss=0.0)]
    assert tofu_metrics(rows)["tofu/forget/probability"] == 1.0


def test_probability_on_real_authors_is_the_answers_share_of_all_options():
    # p(answer) = 1/2, p(options) = 1/2 and 1/4: share 0.5 / 1.25 = 0.4
    rows = [row("real_authors", "0", answer_loss=LN2, perturbed_losses=(LN2, LN4)),
            row("real_authors", "1", answer_loss=0.0, perturbed_losses=(0.0, 0.0))]   # 1 / 3
    expected = (0.4 + 1 / 3) / 2
    assert tofu_metrics(rows)["tofu/real_authors/probability"] == pytest.approx(expected, rel=1e-15)
    # the same losses on the retain set are not normalised
    rows = [dict(r, set="retain") for r in rows]
    assert tofu_metrics(rows)["tofu/retain/probability"] == pytest.approx((0.5 + 1) / 2, rel=1e-15)


def test_rouge_is_the_mean_rougeL_recall():
    rows = [row("world_facts", "0", rougeL_recall=1.0), row("world_facts", "1", rougeL_recall=0.5),
            row("world_facts", "2", rougeL_recall=0.0)]
    assert tofu_metrics(rows)["tofu/world_facts/rougeL_recall"] == 0.5


def test_truth_ratio_forget_is_mean_min_r_and_inverse():
    # r = exp(mean(perturbed) - paraphrased): e for the first item, 1/e for the second
    rows = [row("forget", "0", paraphrased_loss=1.0, perturbed_losses=(2.0, 1.5, 2.5)),
            row("forget", "1", paraphrased_loss=2.0, perturbed_losses=(1.0, 1.0, 1.0))]
    assert tofu_metrics(rows)["tofu/forget/truth_ratio"] == pytest.approx(math.exp(-1), rel=1e-15)


def test_truth_ratio_elsewhere_is_mean_of_one_minus_inverse_clipped_at_zero():
    rows = [row("retain", "0", paraphrased_loss=1.0, perturbed_losses=(2.0, 2.0)),   # r = e: 1 - 1/e
            row("retain", "1", paraphrased_loss=2.0, perturbed_losses=(1.0, 1.0))]   # r = 1/e: max(0, 1 - e) = 0
    assert tofu_metrics(rows)["tofu/retain/truth_ratio"] == pytest.approx((1 - math.exp(-1)) / 2, rel=1e-15)


def test_model_utility_is_the_harmonic_mean_of_the_nine_non_forget_terms():
    values = {key: 0.5 for key in MODEL_UTILITY_TERMS}
    assert model_utility(values) == 0.5
    fractions = [Fraction(1, n) for n in range(1, 10)]
    values = {key: float(f) for key, f in zip(MODEL_UTILITY_TERMS, fractions)}
    assert model_utility(values) == pytest.approx(float(9 / sum(1 / f for f in fractions)), rel=1e-15)
    values[("retain", "probability")] = 0.0
    assert model_utility(values) == 0.0
    # forget terms never enter: rows that differ only on the forget set have the same utility
    low = tofu_metrics(full_rows(forget=[row("forget", "0", answer_loss=9.0, rougeL_recall=0.0)]))
    high = tofu_metrics(full_rows())
    assert low[MODEL_UTILITY] == high[MODEL_UTILITY]
    assert low["tofu/forget/probability"] < high["tofu/forget/probability"]


def test_model_utility_terms_are_in_tofus_order():
    """aggregate_eval_stat.py hands hmean ROUGE, Prob., Truth Ratio of real authors, real world, retain:
    another order changes the last bit of the published values."""
    assert MODEL_UTILITY_TERMS == (
        ("real_authors", "rougeL_recall"), ("real_authors", "probability"), ("real_authors", "truth_ratio"),
        ("world_facts", "rougeL_recall"), ("world_facts", "probability"), ("world_facts", "truth_ratio"),
        ("retain", "rougeL_recall"), ("retain", "probability"), ("retain", "truth_ratio"))


def test_model_utility_needs_all_terms_and_refuses_impossible_values():
    with pytest.raises(ValueError, match="missing: world_facts/truth_ratio"):
        model_utility({key: 0.5 for key in MODEL_UTILITY_TERMS if key != ("world_facts", "truth_ratio")})
    with pytest.raises(ValueError, match="finite and >= 0"):
        model_utility({key: (math.nan if key == ("retain", "probability") else 0.5) for key in MODEL_UTILITY_TERMS})
    # only when retain, real authors and world facts are all present
    assert MODEL_UTILITY not in tofu_metrics([row("retain", "0"), row("real_authors", "0")])


def _forget_with_ratios(ratios) -> list[dict]:
    # r = exp(log(v) - 0) = v (up to rounding, which keeps the order)
    return [row("forget", str(i), paraphrased_loss=0.0, perturbed_losses=(math.log(v),)) for i, v in enumerate(ratios)]


def test_forget_quality_is_the_ks_two_sample_p_value():
    # disjoint samples of 3 and 3: D = 1, exact two-sided p = 2 / C(6, 3) = 0.1
    result = tofu_metrics(_forget_with_ratios([1.5, 2, 3]), _forget_with_ratios([4, 5, 6]))
    assert result[FORGET_QUALITY] == pytest.approx(0.1, rel=1e-12)
    assert result[FORGET_KS_STATISTIC] == 1.0
    same = tofu_metrics(_forget_with_ratios([1.5, 2, 3]), _forget_with_ratios([1.5, 2, 3]))
    assert same[FORGET_QUALITY] == 1.0 and same[FORGET_KS_STATISTIC] == 0.0


def test_forget_quality_uses_only_the_references_forget_set():
    reference = _forget_with_ratios([4, 5, 6]) + [row("retain", "0", answer_loss=5.0)]
    assert tofu_metrics(_forget_with_ratios([1.5, 2, 3]), reference)[FORGET_QUALITY] == pytest.approx(0.1, rel=1e-12)


def test_forget_quality_refuses_a_reference_on_other_items():
    reference = _forget_with_ratios([4, 5, 6, 7])
    with pytest.raises(ValueError, match=r"other items.*4 vs 3.*only in the reference: '3'"):
        tofu_metrics(_forget_with_ratios([1.5, 2, 3]), reference)
    columns = SetColumns.from_rows("forget", _forget_with_ratios([1.5, 2, 3]))
    assert forget_quality(columns, columns).pvalue == 1.0
    with pytest.raises(ValueError, match="reference model's forget set"):
        tofu_metrics(_forget_with_ratios([1.5]), [row("retain", "0")])
    with pytest.raises(ValueError, match="evaluated model's forget set"):
        tofu_metrics([row("retain", "0")], _forget_with_ratios([1.5]))


# -- malformed rows --------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"set": "holdout"}, "field 'set' must be one of retain, forget, real_authors, world_facts"),
    ({"answer_loss": math.nan}, "field 'answer_loss' must be a finite number >= 0"),
    ({"paraphrased_loss": -0.5}, "field 'paraphrased_loss' must be a finite number >= 0"),
    ({"answer_loss": True}, "field 'answer_loss'"),
    ({"perturbed_losses": []}, "field 'perturbed_losses' must be a non-empty list"),
    ({"perturbed_losses": [1.0, "x"]}, r"field 'perturbed_losses'\[1\]"),
    ({"rougeL_recall": 1.5}, "field 'rougeL_recall' must be a number in \\[0, 1\\]"),
    ({"id": 3}, "field 'id' must be a non-empty string"),
])
def test_malformed_rows_are_refused_naming_the_row(change, message):
    rows = [row("retain", "0"), dict(row("retain", "1"), **change)]
    with pytest.raises(DataError, match=message) as info:
        tofu_metrics(rows, path="samples.jsonl")
    assert "row 1" in str(info.value) and "samples.jsonl" in str(info.value)


def test_rows_with_a_duplicate_id_or_ragged_perturbed_answers_are_refused():
    with pytest.raises(DataError, match="appears twice in set 'forget'"):
        tofu_metrics([row("forget", "7"), row("forget", "7")])
    with pytest.raises(DataError, match="3 perturbed losses, but item '0' of set 'retain' has 2"):
        tofu_metrics([row("retain", "0"), row("retain", "1", perturbed_losses=(1.0, 1.0, 1.0))])
    # the same id in two sets is fine (each set is its own config)
    tofu_metrics([row("forget", "0"), row("retain", "0")])


# -- malformed logs --------------------------------------------------------------------------------
def _log(n: int = 3, perturbed: int = 5) -> dict:
    items = [str(i) for i in range(n)]
    return {
        "avg_gt_loss": {i: 0.5 for i in items},
        "avg_paraphrased_loss": {i: 1.0 for i in items},
        "average_perturb_loss": {i: [1.5] * perturbed for i in items},
        "rougeL_recall": {i: 1.0 for i in items},
        "rouge1_recall": {i: 1.0 for i in items},
        "generated_text": {i: [f"Question: q{i}\n", f"Answer: a{i}", f"a{i}"] for i in items},
    }


def _write_logs(folder: Path, **logs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for set_name, file in TOFU_LOG_FILES.items():
        log = logs.get(set_name, _log(perturbed=3 if set_name in ("real_authors", "world_facts") else 5))
        (folder / file).write_text(log if isinstance(log, str) else json.dumps(log))
    return folder


def test_a_well_formed_log_folder_reads_into_rows(tmp_path):
    rows = read_tofu_logs(_write_logs(tmp_path / "logs"))
    assert len(rows) == 12 and [r["set"] for r in rows[::3]] == list(TOFU_SETS)
    assert rows[1] == {"set": "retain", "id": "1", "answer_loss": 0.5, "paraphrased_loss": 1.0,
                       "perturbed_losses": [1.5] * 5, "rougeL_recall": 1.0, "rouge1_recall": 1.0,
                       "prompt": "Question: q1\n", "generation": "Answer: a1", "reference": "a1"}
    assert MODEL_UTILITY in tofu_metrics(rows)


def _bad(**changes) -> dict:
    log = _log()
    for key, value in changes.items():
        metric, _, item = key.partition("__")
        if item:
            log[metric][item] = value
        elif value is None:
            del log[metric]
        else:
            log[metric] = value
    return log


@pytest.mark.parametrize("log, message", [
    ("{not json", "not valid JSON"),
    ('{"avg_gt_loss": {"0": 1.0}, "avg_gt_loss": {"0": 2.0}}', "key 'avg_gt_loss' appears twice"),
    ("[1, 2]", "expected a JSON object mapping metric names"),
    (_bad(avg_paraphrased_loss=None), "missing metric\\(s\\) 'avg_paraphrased_loss'"),
    (_bad(rougeL_recall=[1.0, 1.0, 1.0]), "metric 'rougeL_recall': expected an object mapping item indices"),
    (_bad(avg_gt_loss__1="0.5"), "metric 'avg_gt_loss', item '1': the value must be a finite number >= 0 .*, got '0.5'"),
    (_bad(avg_gt_loss__2=float("nan")), "metric 'avg_gt_loss', item '2': the value must be a finite number"),
    (_bad(avg_paraphrased_loss__0=-1.0), "metric 'avg_paraphrased_loss', item '0'"),
    (_bad(average_perturb_loss__1=[]), "metric 'average_perturb_loss', item '1': expected a non-empty list"),
    (_bad(average_perturb_loss__1=[1.0, None, 1.0, 1.0, 1.0]), "metric 'average_perturb_loss', item '1': entry 1"),
    (_bad(average_perturb_loss__2=[1.0] * 4), "metric 'average_perturb_loss', item '2': 4 losses, but item '0' has 5"),
    (_bad(rougeL_recall__0=1.2), "metric 'rougeL_recall', item '0': expected a recall in \\[0, 1\\]"),
    (_bad(generated_text__1=["only two", "strings"]), "metric 'generated_text', item '1': expected \\[prompt"),
    (_bad(rougeL_recall={"0": 1.0, "2": 1.0, "1": 1.0}), "metric 'rougeL_recall' lists other items than "
     "'avg_gt_loss' \\(3 vs 3; at position 1: '2' where 'avg_gt_loss' has '1'\\)"),
    (_bad(average_perturb_loss={"0": [1.0] * 5, "1": [1.0] * 5}), "metric 'average_perturb_loss' lists other items"),
    (_bad(avg_gt_loss={}), "metric 'avg_gt_loss' lists no items"),
])
def test_malformed_logs_are_refused_naming_file_metric_and_item(tmp_path, log, message):
    folder = _write_logs(tmp_path / "logs", forget=log)
    with pytest.raises(DataError, match=message) as info:
        read_tofu_logs(folder)
    assert str(folder / "eval_log_forget.json") in str(info.value)


def test_a_folder_missing_a_log_is_refused_naming_it(tmp_path):
    folder = _write_logs(tmp_path / "logs")
    (folder / "eval_real_world_wo_options.json").unlink()
    with pytest.raises(DataError, match="missing eval_real_world_wo_options.json"):
        read_tofu_logs(folder)
    with pytest.raises(DataError, match="not a folder of TOFU evaluation logs"):
        read_tofu_logs(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="missing eval_log.json, eval_log_forget.json"):
        read_tofu_logs(empty)


def test_an_aggregated_log_missing_a_file_key_is_refused(tmp_path):
    folder = tmp_path / "agg"
    folder.mkdir()
    (folder / TOFU_AGGREGATED_LOG).write_text(json.dumps({"eval_log.json": _log()}))
    with pytest.raises(DataError, match="no key 'eval_log_forget.json'") as info:
        read_tofu_logs(folder)
    assert TOFU_AGGREGATED_LOG in str(info.value)
    (folder / TOFU_AGGREGATED_LOG).write_text(json.dumps({f: _bad(avg_gt_loss__1=-2.0) for f in TOFU_LOG_FILES.values()}))
    with pytest.raises(DataError, match=r"eval_log_aggregated.json \[eval_log.json\].*item '1'"):
        read_tofu_logs(folder)


def test_every_tofu_and_muse_metric_is_declared_with_a_direction_and_range():
    from harness.core.registry import METRICS

    names = set(tofu_metrics(full_rows(), _forget_with_ratios([1.0])))
    assert names == {MODEL_UTILITY, FORGET_QUALITY, FORGET_KS_STATISTIC} | {
        f"tofu/{s}/{stat}" for s in TOFU_SETS for stat in ("probability", "rougeL_recall", "truth_ratio")}
    for name in names:
        spec = metric_spec(name)
        assert METRICS.get(name) is spec and (spec.low, spec.high) == (0.0, 1.0)
    assert metric_spec("tofu/forget/probability").direction == "min"
    assert metric_spec("tofu/forget/truth_ratio").direction == "max"
    assert metric_spec("tofu/real_authors/probability").direction == "max"
    assert metric_spec(FORGET_QUALITY).direction == "max" and metric_spec(MODEL_UTILITY).direction == "max"
