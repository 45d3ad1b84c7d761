"""What reaches a board: values checked before ranking, run folders whose files disagree refused,
copies of one run counted once, parents listed apart, MCQ prompt formats kept apart (issues 14, 16, 17).

Every refusal is one line naming the file and the reason, listed on the board; the board is built
from the rest.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from harness.core import fileio
from harness.core.records import MMLUInfo, read_result, write_result
from test_leaderboard import full_metrics, make_record, write_record
from test_leaderboard_bootstrap import make_mia, make_samples, write_run


def build(folder, board="semeval2025", **options):
    import leaderboards

    options.setdefault("bootstrap", 0)
    options.setdefault("progress", False)
    [(_, lb)] = leaderboards.build_leaderboards([folder], board, **options)
    return lb


def reasons(lb) -> dict[str, str]:
    """Refused records: run folder name → reason."""
    return {Path(path).parent.name: reason for path, reason in lb.skipped}


# -- values -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric, value, words", [
    ("final_score", math.nan, "'final_score': nan is not a finite number (its declared range: [0, 1])"),
    ("mia_auc", math.inf, "'mia_auc': inf is not a finite number (its declared range: [0, 1])"),
    ("mia_score", 7.5, "'mia_score': 7.5 is outside its declared range [0, 1]"),
    ("task_aggregate", -3.0, "'task_aggregate': -3.0 is outside its declared range [0, 1]"),
    ("mmlu", 1.2, "'mmlu': 1.2 is outside its declared range [0, 1]"),
    ("answer_loss/forget", -0.1, "'answer_loss/forget': -0.1 is outside its declared range >= 0"),
    ("my_metric", -math.inf, "'my_metric': -inf is not a finite number (an undeclared metric may be any finite"),
])
def test_invalid_values_are_refused_with_file_metric_value_and_range(tmp_path, metric, value, words):
    write_record(tmp_path / "good", make_record("good", "npo", full_metrics(0.2, 0.6, 0.6, 0.47)))
    bad = full_metrics(0.9, 0.9, 0.5, 0.49)  # would rank first
    bad[metric] = value
    bad["answer_loss/forget"] = bad.get("answer_loss/forget", 2.0)
    # json.dumps writes NaN/Infinity, as a careless tool would (the harness's own writer refuses them);
    # read_result accepts them, the board must not
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "result.json").write_text(json.dumps(
        make_record("bad", "npo", bad, params={"lr": 1}).model_dump(mode="json")))
    lb = build(tmp_path)
    assert [e.label for e in lb.entries] == ["good"]
    assert words in reasons(lb)["bad"]
    assert words in lb.skipped[0][1] and lb.skipped[0][0].endswith("bad/result.json")


def test_a_value_outside_its_range_is_listed_in_every_text_output(tmp_path):
    import leaderboards

    write_record(tmp_path / "good", make_record("good", "npo", full_metrics(0.2, 0.6, 0.6, 0.47)))
    bad = full_metrics(0.2, 0.6, 0.6, 0.47)
    bad["mia_score"] = 7.5
    write_record(tmp_path / "bad", make_record("bad", "npo", bad, params={"lr": 1}))
    lb = build(tmp_path)
    assert "bad/result.json" in leaderboards.to_markdown(lb) and "7.5" in leaderboards.to_markdown(lb)
    assert "7.5 is outside its declared range" in leaderboards.to_html(lb)


def test_derived_metrics_must_equal_their_formula(tmp_path):
    good = full_metrics(0.2, 0.6, 0.6, 0.47)
    write_record(tmp_path / "good", make_record("good", "npo", good))
    edited = dict(good, final_score=0.99)  # hand-edited to rank first
    write_record(tmp_path / "edited", make_record("edited", "npo", edited, params={"lr": 2}))
    auc = dict(good, mia_score=0.2)  # mia_score does not belong to mia_auc 0.6 (it is 0.8)
    write_record(tmp_path / "auc", make_record("auc", "npo", auc, params={"lr": 3}))
    lb = build(tmp_path)
    assert [e.label for e in lb.entries] == ["good"]
    r = reasons(lb)
    assert "'final_score' = 0.99 is not mean(task_aggregate, mmlu, mia_score)" in r["edited"]
    assert "'mia_score' = 0.2 is not 1 - 2|mia_auc - 0.5|" in r["auc"]


def test_the_metric_specs_declare_ranges():
    from metrics.specs import METRIC_DIRECTIONS, value_problem

    for name, spec in METRIC_DIRECTIONS.items():
        # answer losses are >= 0; MUSE's PrivLeak is a relative AUC change in percent (-100 at AUC 0)
        expected = {"answer_loss/forget": (0.0, math.inf), "answer_loss/retain": (0.0, math.inf),
                    "muse/privleak": (-100.0, math.inf), "lm_eval/*": (-math.inf, math.inf),
                    # recoveries are not clipped (an attack may overshoot the target or widen the gap)
                    "recovered/*": (-math.inf, math.inf), "robust/worst": (-math.inf, math.inf),
                    "robust/score": (-math.inf, math.inf)}.get(name, (0.0, 1.0))
        assert (spec.low, spec.high) == expected, name
    assert value_problem("forget/Task2/knowledge", 0.5) is None
    assert value_problem("forget/Task2/knowledge", 1.5) == "1.5 is outside its declared range [0, 1]"
    assert value_problem("unknown/metric", 1e9) is None
    assert value_problem("unknown/metric", math.nan).startswith("nan is not a finite number")


# -- run folders whose files do not belong together ----------------------------------------------------
def test_a_folder_mixing_two_runs_is_refused_not_ranked_with_an_impossible_interval(tmp_path):
    """The audit's case: an interrupted rerun left new per-sample files beside an older result.json;
    the board printed ``1.0000 [0.4146, 0.4392]``, a value outside its own interval."""
    import leaderboards

    write_run(tmp_path / "ok", "ok", "npo", 0.3, 0.7, 0.1, 0.47)
    mixed = write_run(tmp_path / "mixed", "mixed", "rmu", 0.05, 0.95, 0.0, 0.48)  # a great old result …
    newer = make_samples(0.6, 0.5, seed=7)  # … beside the per-sample files of a worse rerun
    fileio.write_jsonl(mixed / "samples.jsonl", newer)
    lb = build(tmp_path, bootstrap=50)
    assert [e.label for e in lb.entries] == ["ok"]
    why = reasons(lb)["mixed"]
    assert "its per-sample files disagree with it" in why and "samples.jsonl/mia.jsonl" in why
    assert "the record says" in why
    for entry in lb.entries:  # what is ranked lies inside its own interval
        low, high = entry.ci["final_score"]
        assert low <= entry.values["final_score"] <= high
    # only the MIA rows are from another run
    fileio.write_jsonl(mixed / "samples.jsonl", make_samples(0.05, 0.95, seed=__import__("zlib").crc32(b"mixed/0")))
    fileio.write_jsonl(mixed / "mia.jsonl", make_mia(0.5, seed=3))
    assert "mixed" in reasons(build(tmp_path))
    assert "mia_auc recomputed" in reasons(build(tmp_path))["mixed"]
    assert [e.label for e in leaderboards.build_leaderboards([tmp_path / "mixed", tmp_path / "ok"], "semeval2025",
                                                             bootstrap=0, progress=False)[0][1].entries] == ["ok"]


def test_row_counts_must_match_the_record(tmp_path):
    run = write_run(tmp_path / "run", "run", "npo", 0.3, 0.7, 0.1, 0.47)
    record = read_result(run)
    counts = {}
    for row in read_json_lines(run / "samples.jsonl"):
        key = f"{row['split']}/{row['task']}/{row['kind']}"
        counts[key] = counts.get(key, 0) + 1
    counts.update({"mia/member": 15, "mia/nonmember": 15})
    write_result(run, record.model_copy(update={"benchmark": record.benchmark.model_copy(update={"counts": counts})}))
    write_run(tmp_path / "other", "other", "npo", 0.3, 0.7, 0.1, 0.47, seed=1)
    assert "run" not in reasons(build(tmp_path))  # consistent: ranked
    rows = read_json_lines(run / "samples.jsonl")
    fileio.write_jsonl(run / "samples.jsonl", rows[:-1])  # one row lost (truncated at a line end)
    why = reasons(build(tmp_path))["run"]
    assert "other row counts than its record" in why and "retain/Task3/qa: 4 rows, the record says 5" in why


def test_unreadable_per_sample_files_refuse_the_record(tmp_path):
    run = write_run(tmp_path / "run", "run", "npo", 0.3, 0.7, 0.1, 0.47)
    write_run(tmp_path / "other", "other", "npo", 0.3, 0.7, 0.1, 0.47)
    text = (run / "samples.jsonl").read_text()
    (run / "samples.jsonl").write_text(text[: len(text) // 2])  # cut mid-line
    why = reasons(build(tmp_path))["run"]
    assert why.startswith("its per-sample files cannot be read") and "samples.jsonl" in why


def test_a_config_of_another_run_beside_the_result_is_refused(tmp_path):
    run = write_run(tmp_path / "run", "npo", "npo", 0.3, 0.7, 0.1, 0.47)
    write_run(tmp_path / "other", "other", "npo", 0.3, 0.7, 0.1, 0.47)
    record = read_result(run)
    same = {"command": "unlearn", "method": "npo", "params": record.method.params, "label": "npo",
            "eval": {"mode": "semeval2025", "max_new_tokens": 256}}
    fileio.write_json(run / "config.json", same)
    assert "run" not in reasons(build(tmp_path))
    fileio.write_json(run / "config.json", dict(same, params=dict(record.method.params, lr=3e-5)))
    why = reasons(build(tmp_path))["run"]
    assert "its config.json describes another run than its result.json" in why and "lr=3e-05 vs None" in why
    fileio.write_json(run / "config.json", dict(same, eval={"mode": "plain"}))
    assert "mode 'plain' vs 'semeval2025'" in reasons(build(tmp_path))["run"]


def test_the_manifest_check_is_where_collection_calls_it(tmp_path, monkeypatch):
    """The seam the run manifest (issue 14.1) plugs into: a problem it reports refuses the folder."""
    import importlib

    collect = importlib.import_module("leaderboards.collect")  # the module (the package exports a function of that name)
    write_run(tmp_path / "a", "a", "npo", 0.3, 0.7, 0.1, 0.47)
    write_run(tmp_path / "b", "b", "npo", 0.3, 0.7, 0.1, 0.47)
    monkeypatch.setattr(collect, "manifest_problem",
                        lambda run_dir, result: "model.safetensors changed" if run_dir.name == "b" else None)
    lb = build(tmp_path)
    assert [e.label for e in lb.entries] == ["a"] and reasons(lb)["b"] == "model.safetensors changed"


def read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- scoring mode ------------------------------------------------------------------------------------
def test_rows_without_scores_are_scored_in_the_records_settings_mode(tmp_path):
    """Evaluation writes ``settings["mode"]``; a ``plain`` record is checked (and bootstrapped) in plain
    mode — the organisers' NA quirk would score these rows differently."""
    from metrics import compute_metrics

    rows = [{"split": s, "id": f"{s[0]}{t}x{i}{k}", "task": f"Task{t}", "input": "p",
             "reference": "NA" if k.startswith("qa") else "the river at dawn",
             "generation": ("None" if i % 2 else "NA") if k.startswith("qa") else "the river"}
            for s in ("forget", "retain") for t in (1, 2, 3) for k in ("sc1", "qa0") for i in range(4)]
    mia = make_mia(0.3, seed=1)
    plain = compute_metrics(rows, mia, mmlu=0.47, mode="plain")
    assert plain != compute_metrics(rows, mia, mmlu=0.47, mode="semeval2025")
    for name, mode_settings in (("plain-mode", {"mode": "plain"}), ("other-key", {"scoring_mode": "plain"})):
        record = make_record(name, "npo", plain, params={"name": name}).model_copy(update={"settings": mode_settings})
        write_record(tmp_path / name, record)
        fileio.write_jsonl(tmp_path / name / "samples.jsonl", rows)
        fileio.write_jsonl(tmp_path / name / "mia.jsonl", mia)
    lb = build(tmp_path, bootstrap=20)
    assert [e.label for e in lb.entries] == ["plain-mode"] and lb.entries[0].ci
    # a key evaluation never writes is not read: that record is checked in the default mode and refused
    assert "disagree" in reasons(lb)["other-key"]


# -- one seed counts once ------------------------------------------------------------------------------
def test_copies_of_one_run_are_one_seed(tmp_path):
    """Five copies of one run folder are not five seeds with standard deviation 0."""
    run = write_run(tmp_path / "npo-s0", "npo", "npo", 0.3, 0.7, 0.1, 0.47)
    for i in range(1, 5):
        shutil.copytree(run, tmp_path / f"npo-copy{i}")
    write_run(tmp_path / "npo-s1", "npo", "npo", 0.35, 0.7, 0.1, 0.47, seed=1)
    lb = build(tmp_path, bootstrap=20)
    [npo] = lb.entries
    assert npo.n_seeds == 2 and npo.seeds == [0, 1]
    assert npo.stds["final_score"] > 0
    [note] = [n for n in lb.notes if "copies of one run" in n]
    assert note.startswith("npo: 5 copies of one run (seed 0") and "npo-copy4/result.json" in note
    assert lb.skipped == []


def test_a_seed_given_twice_with_different_results_counts_once_and_the_other_is_refused(tmp_path):
    write_run(tmp_path / "a", "npo", "npo", 0.3, 0.7, 0.1, 0.47, seed=0)
    other = write_run(tmp_path / "b", "npo", "npo", 0.5, 0.6, 0.2, 0.47, seed=0)  # other numbers, same seed
    lb = build(tmp_path)
    [npo] = lb.entries
    assert npo.n_seeds == 1 and npo.runs[0].path.parent.name == "a"
    why = reasons(lb)["b"]
    assert "seed 0 of entry 'npo' is already on the board from" in why and "a/result.json" in why
    assert "final_score" in why and "one seed counts once" in why
    # the same weights evaluated twice with the same numbers are one run, even without per-sample files
    for name in ("samples.jsonl", "mia.jsonl"):
        (other / name).unlink()
    write_result(other, read_result(tmp_path / "a"))
    lb = build(tmp_path)
    assert lb.entries[0].n_seeds == 1 and lb.skipped == [] and any("2 copies of one run" in n for n in lb.notes)


def test_different_weights_with_one_seed_are_not_copies(tmp_path):
    metrics = full_metrics(0.2, 0.6, 0.6, 0.47)
    for name, weights in (("a", "1" * 64), ("b", "2" * 64)):
        record = make_record("npo", "npo", metrics, run_id=name)
        write_record(tmp_path / name, record.model_copy(update={"model": record.model.model_copy(
            update={"weight_hash": weights})}))
    lb = build(tmp_path)
    assert lb.entries[0].n_seeds == 1 and "different weights" in reasons(lb)["b"]


# -- MCQ protocols -----------------------------------------------------------------------------------------
def test_letter_and_cloze_mmlu_scores_are_never_ranked_together(tmp_path):
    """issue 17: compatibility_key ignored ``prompt_format``."""
    import leaderboards

    for name, fmt in (("letters", "letters"), ("cloze", "cloze")):
        record = make_record(name, "npo", full_metrics(0.2, 0.6, 0.6, 0.47), params={"f": fmt})
        write_record(tmp_path / name, record.model_copy(update={"mmlu": record.mmlu.model_copy(
            update={"prompt_format": fmt})}))
    with pytest.raises(leaderboards.LeaderboardError) as info:
        build(tmp_path)
    assert "cannot be ranked together" in str(info.value)
    assert "letters prompts" in str(info.value) and "cloze prompts" in str(info.value)
    boards = leaderboards.build_leaderboards([tmp_path], "semeval2025", bootstrap=0, progress=False,
                                             split_by_benchmark=True)
    assert sorted(slug.split("_")[-1] for slug, _ in boards) == ["mmlu-semeval2025-5shot-cloze",
                                                                 "mmlu-semeval2025-5shot-letters"]


def test_utility_prompt_formats_are_kept_apart_on_the_world_board(tmp_path):
    import leaderboards

    def util(fmt):
        return MMLUInfo(protocol="semeval2025", source="world", metric_name="utility", num_fewshot=0, n_questions=200,
                        prompt_format=fmt)

    for name, fmt in (("target", "cloze"), ("npo", "letters")):
        record = make_record(name, "none" if name == "target" else "npo",
                             full_metrics(0.5, 0.6, 0.6, 0.6, mcq_name="utility"), mmlu_protocol=None,
                             seed=None if name == "target" else 0)
        write_record(tmp_path / name, record.model_copy(update={"utility": util(fmt)}))
    with pytest.raises(leaderboards.LeaderboardError, match="utility: protocol semeval2025, 0-shot, cloze prompts"):
        build(tmp_path, "world")


def test_split_slugs_are_safe_folder_names(tmp_path):
    """A protocol or benchmark name from a record never makes --split-by-benchmark write outside --out."""
    import leaderboards

    for name, protocol in (("a", "../../escape"), ("b", "semeval2025")):
        record = make_record(name, "npo", full_metrics(0.2, 0.6, 0.6, 0.47), bench_name="../..",
                             mmlu_protocol=protocol)
        write_record(tmp_path / name, record)
    for slug, _ in leaderboards.build_leaderboards([tmp_path], "semeval2025", bootstrap=0, progress=False,
                                                   split_by_benchmark=True):
        assert "/" not in slug and ".." not in slug.split("_") and not slug.startswith(".")
