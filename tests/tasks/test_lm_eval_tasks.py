"""``--lm-eval-tasks``: any lm-eval task as metric columns (``lm_eval/<task>/<metric>``), run on the
in-memory model, with its protocol recorded; a task whose data cannot be had is one error before any
model work."""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path

import pytest

from harness.core.errors import ConfigError
from harness.tasks.lm_eval_tasks import LMEvalTasksSpec, check_lm_eval_tasks, lm_eval_columns, run_lm_eval_tasks

TASK = "unlearnbench_test_qa"
QUESTIONS = [
    ("Which river flows through the city of Vemra?", ["the Olo", "the Kessa", "the Brin"], 0),
    ("Who wrote the classic 'Tides of Marn'?", ["Tobi Lars", "Ana Vell", "Kiro Dune"], 1),
    ("What kind of books does Ana Vell write?", ["mystery", "railway", "orchard"], 2),
    ("Which prize did Kiro Dune win?", ["the Sal Medal", "the Ommo Prize", "the Reth Laurel"], 0),
    ("Where was the author Tobi Lars born?", ["Vemra", "Kessa", "Marn"], 2),
]


def _write_task(folder: Path) -> Path:
    """A local lm-eval multiple-choice task (what --lm-eval-include is for): data and YAML in ``folder``."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in QUESTIONS))
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump({
        "task": TASK, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}, "cache_dir": str(folder / "hf-cache")},
        "test_split": "test", "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_choice": "{{choices}}", "doc_to_target": "answer",
        "target_delimiter": " ", "num_fewshot": 0,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 2.0},
    }, sort_keys=False))
    return folder


def _independent_accuracy(model, tokenizer) -> float:
    """Hand-written: the choice whose tokens (after "Question: ..\\nAnswer:") have the largest summed log-prob."""
    import torch

    correct = 0
    for question, choices, answer in QUESTIONS:
        context = f"Question: {question}\nAnswer:"
        ctx = tokenizer(context)["input_ids"]
        lls = []
        for choice in choices:
            whole = tokenizer(context + " " + choice)["input_ids"]
            assert whole[: len(ctx)] == ctx
            with torch.no_grad():
                logprobs = torch.log_softmax(model(torch.tensor([whole[:-1]])).logits[0].float(), dim=-1)
            lls.append(sum(logprobs[len(ctx) - 1 + j, tok].item() for j, tok in enumerate(whole[len(ctx):])))
        correct += int(max(range(len(lls)), key=lambda i: (lls[i], -i)) == answer)
    return correct / len(QUESTIONS)


def test_a_local_task_becomes_columns_with_its_protocol(tiny_model_dir, tiny_llama, tiny_tokenizer, mini_benchmark,
                                                        tmp_path):
    from harness.cli import main
    from harness.core.records import read_result

    include = _write_task(tmp_path / "tasks")
    run = tmp_path / "run"
    assert main(["-q", "evaluate", "--model", str(tiny_model_dir), "--data", str(mini_benchmark), "--out", str(run),
                 "--no-progress", "--no-cache", "--lm-eval-tasks", TASK, "--lm-eval-include", str(include)]) == 0
    result = read_result(run)
    columns = {k: v for k, v in result.metrics.items() if k.startswith("lm_eval/")}
    assert set(columns) == {f"lm_eval/{TASK}/acc", f"lm_eval/{TASK}/acc_norm"}
    assert columns[f"lm_eval/{TASK}/acc"] == _independent_accuracy(tiny_llama, tiny_tokenizer)
    assert "task_aggregate" in result.metrics  # the benchmark's own metrics are still there
    protocol = result.settings["lm_eval_tasks"]
    assert protocol["lm_eval_version"] == metadata.version("lm_eval")
    assert protocol["tasks"][TASK]["num_fewshot"] == 0 and protocol["tasks"][TASK]["full"] is True
    assert protocol["tasks"][TASK]["limit"] is None and protocol["include"] == str(include)
    config = json.loads((run / "config.json").read_text())
    assert config["eval"]["lm_eval_tasks"]["tasks"] == [TASK]

    # in memory, with a limit: recorded as not the full task
    metrics, protocol = run_lm_eval_tasks(tiny_llama, tiny_tokenizer, LMEvalTasksSpec((TASK,), limit=2,
                                                                                       include=str(include)))
    assert metrics[f"lm_eval/{TASK}/acc"] in (0.0, 0.5, 1.0)
    assert protocol["tasks"][TASK]["limit"] == 2 and protocol["tasks"][TASK]["full"] is False


def test_offline_without_local_data_is_one_error_before_any_model_work(mini_benchmark, tmp_path, monkeypatch, capsys):
    import datasets.config
    import huggingface_hub.constants

    import harness.backends.loading as loading

    # offline, with empty caches: nothing of arc_easy can be had
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the lm-eval tasks were checked")

    monkeypatch.setattr(loading, "load_model", never)
    from harness.cli import main

    out = tmp_path / "run"
    rc = main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(mini_benchmark), "--out", str(out),
               "--lm-eval-tasks", "arc_easy"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "lm-eval task 'arc_easy': its data set cannot be loaded" in err and "offline" in err
    assert not out.exists()


def test_unknown_task_names_and_bad_numbers_are_refused(capsys):
    with pytest.raises(ConfigError, match="lm-eval has no task 'arc_eazy'; did you mean arc_easy"):
        check_lm_eval_tasks(LMEvalTasksSpec(("arc_eazy",)))
    with pytest.raises(ConfigError, match="--lm-eval-limit must be at least 1, got 0"):
        check_lm_eval_tasks(LMEvalTasksSpec(("arc_easy",), limit=0))
    with pytest.raises(ConfigError, match="--lm-eval-fewshot must be >= 0, got -1"):
        check_lm_eval_tasks(LMEvalTasksSpec(("arc_easy",), num_fewshot=-1))
    from harness.cli import main

    assert main(["evaluate", "--model", "m", "--data", "d", "--out", "o", "--lm-eval-tasks", " , "]) == 2
    assert "--lm-eval-tasks expects comma-separated lm-eval task names" in capsys.readouterr().err


def test_only_higher_is_better_finite_metrics_become_columns():
    out = {
        "results": {
            "wmdp_bio": {"alias": "wmdp_bio", "acc,none": 0.25, "acc_stderr,none": 0.01},
            "gsm8k": {"exact_match,strict-match": 0.5, "exact_match,flexible-extract": 0.625},
            "wikitext": {"word_perplexity,none": 31.5, "bits_per_byte,none": 0.9},
            "odd": {"acc,none": math.nan, "flag,none": True},
        },
        "higher_is_better": {"wmdp_bio": {"acc": True}, "gsm8k": {"exact_match": True},
                             "wikitext": {"word_perplexity": False, "bits_per_byte": False}, "odd": {"acc": True}},
        "versions": {"wmdp_bio": 1, "gsm8k": 3.0},
        "n-shot": {"wmdp_bio": 0, "gsm8k": 5},
    }
    metrics, protocol = lm_eval_columns(out, LMEvalTasksSpec(("wmdp_bio", "gsm8k", "wikitext", "odd"), limit=10))
    assert metrics == {"lm_eval/wmdp_bio/acc": 0.25, "lm_eval/gsm8k/exact_match/strict-match": 0.5,
                       "lm_eval/gsm8k/exact_match/flexible-extract": 0.625}
    # a perplexity must never be ranked as higher-is-better: kept beside the protocol only
    assert protocol["tasks"]["wikitext"]["other_metrics"] == {"lm_eval/wikitext/word_perplexity": 31.5,
                                                              "lm_eval/wikitext/bits_per_byte": 0.9}
    assert protocol["tasks"]["odd"]["other_metrics"] == {"lm_eval/odd/acc": "nan"}
    assert protocol["tasks"]["gsm8k"] == {"version": 3.0, "num_fewshot": 5, "limit": 10, "full": False,
                                          "other_metrics": None}
    with pytest.raises(RuntimeError, match="no higher-is-better metric for wikitext"):
        lm_eval_columns({"results": {"wikitext": out["results"]["wikitext"]},
                         "higher_is_better": out["higher_is_better"]}, LMEvalTasksSpec(("wikitext",)))
