"""Does the forgetting hold? Every attack on gradient ascent and on the ZJUKLAB merge (issue 18.3).

One command re-measures the figures of docs/attacks.md on the embedded world:

    PYTHONPATH=$PWD python benchmarks/attack_recovery.py --work scratch/attack_recovery

It runs the ordinary CLI, one step after the other (each step is skipped when its run folder already
holds a result, so an interrupted measurement resumes; ``--force`` redoes everything):

1. ``unlearnbench world`` and ``unlearnbench target`` (the default small world, seed 0; the target is
   cached by its settings);
2. ``unlearnbench evaluate`` of the target (the reference every recovery is computed against);
3. ``unlearnbench unlearn`` with ``grad_ascent`` and ``zjuklab_merge`` at settings that forget on this
   world (:data:`METHODS`; the recipe of the demo presets, baselines/presets.py);
4. ``unlearnbench attack`` of both unlearned runs with every attack of :data:`ATTACKS`, with
   ``--target`` (an attack step is done when its ``robust.json`` exists; an interrupted one is redone
   with ``--force``); and the prompt templates on the target itself, because a wrapper can also hurt the
   target (docs/attacks.md);
5. ``unlearnbench leaderboard --board robust``.

It prints (and writes to WORK/summary.md and WORK/summary.json) each attack's recovered figure per
pooled forget metric with its 95% bootstrap interval, each step's wall time (one run each; the machine
load from ``uptime`` before and after), and the robust board.

The same measurement on the real model (SmolLM2-135M-Instruct fine-tuned on a LUME subset until it
regurgitates it, issue 15) starts from the folder ``benchmarks/real_pipeline.py --out`` (or
``unlearnbench demo --real --out``) wrote, and uses its subset, target and MMLU settings:

    PYTHONPATH=$PWD python benchmarks/attack_recovery.py --real scratch/real-demo --work scratch/attack_recovery_real

Step 1 is then the evaluation of that target; step 3 uses :data:`REAL_METHODS` (settings that forget on
SmolLM2, which the demo presets do not); step 4 the attacks of :data:`REAL_ATTACKS`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Settings that forget on the embedded world (measured by the demo helper's learning-rate sweep with
# the demo recipe: LoRA r 8 / alpha 16, 2 epochs, batch 8, sequences cut at 128, whole records
# unlearned). grad_ascent: lr 1e-3 (5e-4 forgets nothing on the forget regurgitation; 2e-3 and above
# collapse the model to an answer loss of ~19 nats on every split). zjuklab_merge: the demo preset's
# shared lr 3e-3 with the paper's batch ratio (over-forgetting parent 4, under-forgetting parent 8).
DEMO_RECIPE = {"finetune": "lora", "lora_r": 8, "lora_alpha": 16, "epochs": 2, "gradient_accumulation_steps": 1,
               "max_length": 128, "padding": "longest", "mask_prompt": False, "eval_every": 0}
METHODS = {
    "grad_ascent": {**DEMO_RECIPE, "per_device_batch_size": 8, "learning_rate": 1e-3},
    "zjuklab_merge": {"common_params": {**DEMO_RECIPE, "learning_rate": 3e-3},
                      "over_params": {"per_device_batch_size": 4}, "under_params": {"per_device_batch_size": 8},
                      "evaluate_parents": False},
}

#: name -> the `unlearnbench attack` arguments (relearning with its defaults: Łucki et al.'s budget).
ATTACKS = {
    "quantize-8bit": ["--kind", "quantize", "--bits", "8"],
    "quantize-4bit": ["--kind", "quantize", "--bits", "4"],
    "precision-bfloat16": ["--kind", "precision", "--dtype", "bfloat16"],
    "precision-float16": ["--kind", "precision", "--dtype", "float16"],
    "prompt-qa_format": ["--kind", "prompt", "--template", "qa_format"],
    "prompt-roleplay_archivist": ["--kind", "prompt", "--template", "roleplay_archivist"],
    "relearn-forget0.5": ["--kind", "relearn", "--source", "forget", "--fraction", "0.5"],
    "relearn-retain0.5": ["--kind", "relearn", "--source", "retain", "--fraction", "0.5"],
}
TARGET_ATTACKS = ("prompt-qa_format", "prompt-roleplay_archivist")

# Settings that forget on the real target (SmolLM2-135M-Instruct fine-tuned on 12 + 12 LUME records by
# the real demo; forget regurgitation 0.913, MIA AUC 1.000, MMLU 0.375 on its 40 marketing questions).
# The demo presets (2 epochs, lr 1e-3..5e-3) leave its MIA AUC at 1.0. grad_ascent: lr 3e-3 for 5
# epochs (MIA AUC 0.556, MMLU 0.250). zjuklab_merge: the same 5 epochs with the paper's batch ratio at
# lr 1e-2 (over-forgetting parent MIA AUC 0.111, under-forgetting 0.917, merged 0.528, MMLU 0.325); at
# lr 5e-3 the over-forgetting parent's NPO term hardly moves (12.8 against 13.86 at the start: one epoch
# of the preset's warm-up and the retain KL hold it back) and its MMLU stays at the target's 0.375.
REAL_RECIPE = {"finetune": "lora", "lora_r": 8, "lora_alpha": 16, "epochs": 5, "gradient_accumulation_steps": 1,
               "max_length": 256, "padding": "longest", "mask_prompt": False, "eval_every": 0}
REAL_METHODS = {
    # (evaluated after each epoch, as in the run measured: the training itself is the same without)
    "grad_ascent": {**REAL_RECIPE, "per_device_batch_size": 8, "learning_rate": 3e-3, "eval_every": "epoch"},
    "zjuklab_merge": {"common_params": {**REAL_RECIPE, "learning_rate": 1e-2},
                      "over_params": {"per_device_batch_size": 4}, "under_params": {"per_device_batch_size": 8},
                      "evaluate_parents": True},
}
#: Every attack of the embedded world, and relearning at 10x Łucki et al.'s learning rate: their budget
#: (lr 2e-4 on LoRA r 128 / alpha 16) does not even re-memorise the relearned records of this model.
#: With 12 forget records the held-out half is 6 records: the stronger relearning is repeated with two
#: more draws of the relearned half (and training seeds), ``--seed 1`` and ``2``.
REAL_ATTACKS = {**ATTACKS,
                **{f"relearn-{source}0.5-lr2e-3{'' if seed == 0 else f'-seed{seed}'}":
                   [*ATTACKS[f"relearn-{source}0.5"], "--set", "learning_rate=2e-3", *(["--seed", str(seed)] if seed else [])]
                   for seed in (0, 1, 2) for source in ("forget", "retain")}}
SUMMARY_METRICS = ("forget/all/regurgitation", "forget/all/knowledge", "answer_loss/forget", "mia_auc")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class Steps:
    def __init__(self, work: Path, cli: list[str], force: bool, only: str | None = None):
        self.work, self.cli, self.force = work, cli, force
        self.only = re.compile(only) if only else None
        """Run only the steps whose name this matches (to share the work between two processes)."""
        self.times_file = work / "times.json"
        """Each step's wall time as measured when it ran (kept across resumed measurements)."""
        self.measured: dict[str, dict] = self._read_times()
        self.times: dict[str, dict] = {}

    def _read_times(self) -> dict[str, dict]:
        return json.loads(self.times_file.read_text()) if self.times_file.is_file() else {}

    def _record(self, name: str, entry: dict) -> None:
        """Add one step's time to times.json under a lock (two processes may share a work folder)."""
        import fcntl

        with open(self.work / ".times.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.measured = {**self._read_times(), name: entry}
            self.times_file.write_text(json.dumps(self.measured, indent=1), encoding="utf-8")

    def refresh(self) -> None:
        """Skipped steps take the times another process measured since this one started."""
        self.measured = self._read_times()
        for name, entry in self.times.items():
            if entry.get("skipped"):
                self.times[name] = {**self.measured.get(name, {}), "skipped": True}

    def run(self, name: str, args: list[str], done: Path) -> None:
        if self.only and not self.only.search(name):
            print(f"[pass] {name}: not selected by --only", flush=True)
            return
        if done.exists() and not self.force:
            print(f"[skip] {name}: {done} exists", flush=True)
            self.times[name] = {**self.measured.get(name, {}), "skipped": True}
            return
        load_before = _uptime()
        print(f"[run ] {name}: {' '.join(args)}", flush=True)
        started = time.perf_counter()
        proc = subprocess.run(self.cli + args, cwd=self.work, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        (self.work / "logs").mkdir(exist_ok=True)
        (self.work / "logs" / f"{name}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
        if proc.returncode != 0:
            sys.exit(f"{name} failed (exit {proc.returncode}); log: {self.work / 'logs' / (name + '.log')}\n"
                     + (proc.stderr or proc.stdout)[-3000:])
        self.times[name] = {"wall_s": round(seconds, 1), "uptime_before": load_before, "uptime_after": _uptime()}
        self._record(name, self.times[name])
        print(f"       {seconds:.1f} s", flush=True)


def _fmt(rec: dict | None) -> str:
    if not rec:
        return "-"
    if rec.get("recovered") is None:
        return "n/a"
    ci = rec.get("ci")
    return f"{rec['recovered']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else " [no CI]")


def _value(rec: dict | None, which: str) -> str:
    return "-" if not rec or rec.get(which) is None else f"{rec[which]:.3f}"


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _values(recs: dict, which: tuple[str, ...] = ("target", "unlearned", "attacked")) -> list[str]:
    return [" / ".join(_value(recs[m], k) if k else "-" for k in which) for m in SUMMARY_METRICS]


def _records(robust: dict) -> str:
    """The forget records a recovery is measured on: relearning's held-out ones, a template's wrapped
    ones, or all."""
    held_out, measured = robust.get("held_out_records"), robust.get("measured_records")
    return f"held-out {held_out}" if held_out else (f"wrapped {measured}" if measured else "all")


def summarise(work: Path, steps: Steps, setup: "Setup | None" = None) -> dict:
    """WORK/summary.json and WORK/summary.md from the runs' robust.json files (pooled values and
    recoveries as :mod:`metrics.robust` computed them) and the steps' wall times."""
    setup = setup or Setup()
    runs = work / "runs"
    result: dict = {"methods": {}, "target_prompts": {}, "times": steps.times}
    n = len(SUMMARY_METRICS)
    rows = [_row("method", "attack", *(f"recovered {m}" for m in SUMMARY_METRICS), "attack s", "step wall s"),
            _row(*["---"] * (n + 4))]
    values = [_row("run", "forget records", *(f"{m}: target / unlearned / attacked" for m in SUMMARY_METRICS)),
              _row(*["---"] * (n + 2))]
    for method in setup.methods:
        result["methods"][method] = {}
        for attack in setup.attacks:
            run = runs / f"{method}+{attack}"
            robust = json.loads((run / "robust.json").read_text())
            record = json.loads((run / "result.json").read_text())
            recs = {m: robust["recovery"].get(m) for m in SUMMARY_METRICS}
            held_out = robust.get("held_out_records")
            entry = {"recovery": recs, "held_out_records": held_out,
                     "attack_seconds": record.get("timings", {}).get("attack"), "step": steps.times.get(run.name)}
            result["methods"][method][attack] = entry
            wall = (entry["step"] or {}).get("wall_s", "(not measured)")
            rows.append(_row(method, attack, *(_fmt(recs[m]) for m in SUMMARY_METRICS), entry["attack_seconds"], wall))
            values.append(_row(run.name, _records(robust), *_values(recs)))
    for attack in setup.target_attacks:
        robust = json.loads((work / "target_prompts" / f"target+{attack}" / "robust.json").read_text())
        recs = {m: robust["recovery"].get(m) for m in SUMMARY_METRICS}
        result["target_prompts"][attack] = {m: (r or {}).get("attacked") for m, r in recs.items()}
        values.append(_row(f"target+{attack}", _records(robust), *_values(recs, ("target", "", "attacked"))))
    board = work / "robust" / "leaderboard.md"
    text = ["## Recovered share of the unlearning gap (95% paired-bootstrap interval)", "", *rows, "",
            "## Metric values (pooled over the three tasks; MIA AUC of the loss attack)", "", *values, "",
            "## Robust board", "", board.read_text() if board.is_file() else "(not built)", "",
            "## Wall times (one run each)", ""]
    text += [f"- {name}: " + (f"{t['wall_s']} s{' (an earlier run)' if t.get('skipped') else ''}; before: "
                              f"{t['uptime_before']}; after: {t['uptime_after']}" if "wall_s" in t else "not measured")
             for name, t in steps.times.items()]
    (work / "summary.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    (work / "summary.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


@dataclass
class Setup:
    """What is measured: the embedded world (default) or the real model of a real demo folder."""
    methods: dict = field(default_factory=lambda: METHODS)
    attacks: dict = field(default_factory=lambda: ATTACKS)
    target_attacks: tuple = TARGET_ATTACKS
    model: Path | None = None
    """The target model folder (set by :func:`prepare_embedded` or :func:`prepare_real`)."""
    common: list = field(default_factory=list)
    """Arguments of every ``evaluate``/``unlearn`` (data and evaluation settings)."""


def prepare_embedded(work: Path, steps: Steps) -> Setup:
    world, target = work / "world", work / "target"
    steps.run("world", ["world", "--out", str(world)], world / "world.json")
    steps.run("target", ["target", "--world", str(world), "--out", str(target)], target / "target_report.json")
    return Setup(model=target, common=["--data", str(world), "--utility", str(world / "utility"), "--no-progress"])


def prepare_real(demo: Path) -> Setup:
    """The real demo's subset and fine-tuned target, evaluated as the demo evaluated it (its MMLU
    subjects and limit, its generation budget)."""
    summary_file = demo / "real_demo.json"
    if not summary_file.is_file():
        sys.exit(f"{demo}: no real_demo.json; run `python benchmarks/real_pipeline.py --assets ASSETS --out {demo}` "
                 "(or `unlearnbench demo --real`) first")
    plan = json.loads(summary_file.read_text())["plan"]
    for needed in (demo / "target" / "config.json", demo / "data"):
        if not needed.exists():
            sys.exit(f"{needed}: missing; the real demo in {demo} did not finish")
    common = ["--data", str(demo / "data"), "--mmlu", str(Path(plan["assets"]) / "mmlu"), "--mmlu-protocol", "lm-eval",
              "--mmlu-subjects", plan["mmlu_subjects"], "--mmlu-limit", str(plan["mmlu_limit"]),
              "--mmlu-format", "cloze", "--max-new-tokens", str(plan["max_new_tokens"]), "--no-progress"]
    return Setup(methods=REAL_METHODS, attacks=REAL_ATTACKS, model=demo / "target", common=common)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="scratch/attack_recovery", help="folder for the world, model and runs")
    ap.add_argument("--real", type=Path, default=None, metavar="DEMO_OUT",
                    help="measure the real model of this real-demo folder instead of the embedded world")
    ap.add_argument("--force", action="store_true", help="redo every step (default: resume)")
    ap.add_argument("--only", default=None, metavar="REGEX",
                    help="run only the steps whose name matches (e.g. 'grad_ascent\\+' in one process and "
                         "'zjuklab_merge\\+' in another); the board and summary wait for a run without it")
    ap.add_argument("--bootstrap", type=int, default=1000, help="replicates of the recovery intervals")
    args = ap.parse_args(argv)
    work = Path(args.work).resolve()
    (work / "runs").mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "harness"]
    steps = Steps(work, cli, args.force, args.only)
    print("load at start:", _uptime(), flush=True)
    setup = prepare_real(args.real.resolve()) if args.real else prepare_embedded(work, steps)
    target, common = setup.model, setup.common
    runs = work / "runs"
    steps.run("evaluate-target", ["evaluate", "--model", str(target), "--out", str(runs / "target"),
                                  "--label", "target", *common], runs / "target" / "result.json")
    for method, params in setup.methods.items():
        config = work / f"{method}.json"
        config.write_text(json.dumps(params, indent=1), encoding="utf-8")
        steps.run(f"unlearn-{method}", ["unlearn", "--method", method, "--config", str(config), "--model",
                                        str(target), "--out", str(runs / method), "--label", method, *common],
                  runs / method / "result.json")
    for method in setup.methods:
        for attack, attack_args in setup.attacks.items():
            out = runs / f"{method}+{attack}"
            steps.run(f"{method}+{attack}", ["attack", str(runs / method), *attack_args, "--target",
                                             str(runs / "target"), "--out", str(out), "--bootstrap",
                                             str(args.bootstrap), "--no-progress", "--force"],
                      out / "robust.json")
    for attack in setup.target_attacks:  # outside runs/: the robust board ranks unlearned runs only
        out = work / "target_prompts" / f"target+{attack}"
        steps.run(f"target+{attack}", ["attack", str(runs / "target"), *ATTACKS[attack], "--target",
                                       str(runs / "target"), "--out", str(out), "--bootstrap", "0", "--no-progress",
                                       "--force"], out / "robust.json")
    if args.only:
        print("steps selected by --only are done; run again without --only for the board and summary")
        return 0
    steps.force = True  # the board is cheap and must reflect every run
    steps.run("robust-board", ["leaderboard", str(runs), "--board", "robust", "--format", "csv,md,html", "--out",
                               str(work / "robust")], work / "robust")
    print("load at end:", _uptime(), flush=True)
    steps.refresh()
    summarise(work, steps, setup)
    print((work / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
