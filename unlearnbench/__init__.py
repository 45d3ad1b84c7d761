"""unlearnbench: a benchmark harness for LLM unlearning — the public API in one import.

The code lives in four top-level packages (``harness``, ``metrics``, ``baselines``, ``leaderboards``);
this package re-exports what a user of the library calls, under one name::

    import unlearnbench as ub

    world = ub.generate_world("world")                  # the embedded LUME-like benchmark
    target = ub.train_target(world, "target")           # a tiny Llama that memorises it
    utility = ub.EvalSettings(utility=ub.MCQSpec(source="world/utility", metric_name="utility",
                                                 prompt_format="cloze"))
    ub.run_unlearning("zjuklab_merge", target, world, "runs/zjuklab", params={"preset": "demo"},
                      eval_settings=utility)
    ub.merge_runs(["runs/zjuklab/parents/over", "runs/zjuklab/parents/under"],
                  ub.MergeSettings(how="ties", density=0.5), "runs/ties-0.5", eval_settings=utility)
    for _, board in ub.build_leaderboards(["runs"], "world"):
        ub.write_outputs(board, "board")

Writing a method (the shared loop does the training; the method supplies its loss)::

    from unlearnbench import LossMethod, mean_nll, register_method

    @register_method("my_method")
    class MyMethod(LossMethod):
        ...

Importing this package loads neither torch nor transformers; the functions import them when called.
"""

from baselines.base import LossMethod
from baselines.merging import MergeSettings
from harness.backends.loading import load_model
from harness.core.errors import ConfigError, DataError, RegistryError, UnlearnbenchError, UserError
from harness.core.records import EvalResult, RunConfig, read_result
from harness.core.registry import (BENCHMARKS, METHODS, METRICS, Registry, register_benchmark, register_method,
                                   register_metric)
from harness.core.types import Benchmark, MetricSpec, MIADocument, Record, UnlearnContext, UnlearningMethod
from harness.evaluation.pipeline import EvalSettings, RunInfo, evaluate_model
from harness.synthetic.demo import DemoPlan, run_demo
from harness.synthetic.target import train_target
from harness.synthetic.world import generate_world
from harness.tasks import BenchmarkTask, Requests, Responses, Scores, load_task
from harness.tasks.lume.data import load_benchmark
from harness.tasks.mcq.mmlu import MCQSpec
from harness.training import TrainSettings, TrainStep, kl_ref_to_model, mean_nll, sequence_nll, train
from harness.training.merge import merge_runs
from harness.training.runner import RunOptions, RunOutcome, run_unlearning
from leaderboards import (Board, BuildOptions, Leaderboard, LeaderboardError, available_boards, build_leaderboards,
                          get_board, to_csv, to_html, to_latex, to_markdown, write_outputs)
from metrics import (METRIC_DIRECTIONS, compute_metrics, final_score, metric_spec, mia_score, score_rows,
                     task_aggregate)

__version__ = "0.1.0"

__all__ = [
    # writing an unlearning method
    "UnlearningMethod", "LossMethod", "register_method", "METHODS", "UnlearnContext",
    "TrainStep", "TrainSettings", "train", "mean_nll", "sequence_nll", "kl_ref_to_model",
    # benchmarks
    "BenchmarkTask", "register_benchmark", "BENCHMARKS", "load_task", "Requests", "Responses", "Scores",
    "Benchmark", "Record", "MIADocument", "load_benchmark", "MCQSpec",
    # evaluate, unlearn, merge
    "load_model", "evaluate_model", "EvalSettings", "RunInfo",
    "run_unlearning", "RunOptions", "RunOutcome",
    "merge_runs", "MergeSettings",
    # result records
    "EvalResult", "RunConfig", "read_result",
    # leaderboards
    "build_leaderboards", "BuildOptions", "write_outputs", "Leaderboard", "LeaderboardError", "Board", "get_board",
    "available_boards", "to_csv", "to_markdown", "to_html", "to_latex",
    # metrics
    "compute_metrics", "score_rows", "task_aggregate", "final_score", "mia_score", "metric_spec",
    "METRIC_DIRECTIONS", "register_metric", "METRICS", "MetricSpec",
    # the embedded world and demo
    "generate_world", "train_target", "run_demo", "DemoPlan",
    # registries and errors
    "Registry", "UnlearnbenchError", "UserError", "ConfigError", "DataError", "RegistryError",
]
