"""``unlearnbench demo --real``: the pipeline on a real pretrained model, real LUME records and real MMLU.

What the SemEval-2025 organisers did, at a size a CPU can run:

1. **Subset.** A stratified subset of the real LUME files (:func:`lume_subset`): for each split x task,
   the ``docs`` documents with the shortest sentence-completion record (short documents keep training
   and generation cheap), with that record and up to ``qa_per_doc`` of the document's questions. The
   MIA sets are the ones the subset defines: members = the forget documents the target is trained on,
   non-members = as many further forget documents of each task that it never sees (the next shortest,
   so both sets have the same kind and length of text). Written as a LUME folder (``OUT/data``).
2. **Target.** SmolLM2-135M-Instruct (``unlearnbench assets``) fine-tuned on every forget and retain
   document and question of the subset until it regurgitates them (:func:`finetune_target`: full
   fine-tuning, AdamW, until the mean loss of an epoch over the answer tokens falls below ``stop_loss``), as the
   organisers fine-tuned OLMo on LUME. Cached by a key of the subset, the base weights and the recipe.
3. **Baselines and the ZJUKLAB merge** on that target (:data:`DEFAULT_METHODS`, with the synthetic
   demo's short LoRA settings), each evaluated on the subset (semeval2025 mode, MIA on the subset's
   member/non-member split) and on an MMLU subject subset from the real MMLU (lm-eval, cloze prompts:
   a 135M model answers letter prompts at chance, so only the cloze format can show MMLU falling).
4. **The board**: ``semeval2025-1b`` (final score = mean of task aggregate, MIA score, MMLU), with
   bootstrap intervals that resample the MMLU questions too.

Everything lands in ``OUT`` (``data/``, ``target/``, ``runs/``, ``leaderboard/``, ``real_demo.json`` with
the timings); reruns reuse the target and the finished runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.core import fileio
from harness.core.errors import UserError
from harness.core.transaction import RunTransaction

log = logging.getLogger("unlearnbench.demo")

#: Methods of the real demo: one that over-forgets (gradient ascent: MMLU should fall), two that keep
#: the retain set, and the ZJUKLAB merge (which trains its own two parents).
DEFAULT_METHODS = ("grad_ascent", "grad_diff", "npo_gdr_klr", "zjuklab_merge")
#: MMLU subjects where a 135M model scores visibly above chance in the cloze format.
DEFAULT_MMLU_SUBJECTS = "marketing"
TARGET_FILE = "finetune.json"
SUBSET_FILE = "SUBSET.json"
RESULT_FILE = "real_demo.json"


@dataclass(frozen=True)
class SubsetSpec:
    """Which LUME records the demo uses (see the module docstring)."""

    docs: int = 2
    """Documents per split x task (the trained, forget + retain)."""
    qa_per_doc: int = 1
    """Questions kept per document (Task2 documents have several)."""
    nonmembers: int | None = None
    """Non-member documents per task (default: ``docs``)."""


@dataclass(frozen=True)
class FinetuneSpec:
    """The target's recipe (full fine-tuning of the pretrained model on the subset)."""

    learning_rate: float = 2e-4
    batch_size: int = 4
    max_epochs: int = 30
    stop_loss: float = 0.1
    """Stop once an epoch's mean loss over the answer tokens (what the evaluation asks the model to
    reproduce) is below this: the documents and answers are memorised."""
    seed: int = 0


@dataclass
class RealDemoPlan:
    """Where the inputs are, where the outputs go, and how big the demo is."""

    out: Path
    assets: Path
    lume: Path
    subset: SubsetSpec = field(default_factory=SubsetSpec)
    finetune: FinetuneSpec = field(default_factory=FinetuneSpec)
    methods: Sequence[str] = DEFAULT_METHODS
    method_epochs: int = 2
    evaluate_parents: bool = False
    """Evaluate the ZJUKLAB merge's two parents too (two more evaluations; listed apart on the board)."""
    mmlu_subjects: str = DEFAULT_MMLU_SUBJECTS
    mmlu_limit: int | None = 40
    """MMLU test questions per subject (None: all)."""
    max_new_tokens: int = 64
    """The subset's longest answer is 59 SmolLM2 tokens (docs=2); a damaged model babbles to the limit."""
    bootstrap: int = 200
    base_model: Path | None = None
    """The model to fine-tune (default: ``assets/smollm2-135m-instruct``; tests pass a tiny one)."""

    @property
    def base(self) -> Path:
        return self.base_model or self.assets / "smollm2-135m-instruct"


# -- 1. the subset ----------------------------------------------------------------------------------
def _doc_key(record_id: str) -> str:
    """The document a LUME record belongs to: its id without the ``sc1`` / ``qaN`` suffix."""
    return record_id[:-3]


def lume_subset(lume: str | Path, out: str | Path, spec: SubsetSpec = SubsetSpec()) -> Path:
    """Write the stratified subset of :func:`harness.tasks.lume.data.load_benchmark`'s records at
    ``lume`` as a LUME folder ``out`` (forget/retain JSONL + mia/member, mia/nonmember); deterministic."""
    from harness.tasks.lume.data import load_benchmark

    if spec.docs < 1 or spec.qa_per_doc < 0:
        raise UserError(f"a real demo needs at least one document per split x task and a non-negative number "
                        f"of questions per document, got docs={spec.docs}, qa_per_doc={spec.qa_per_doc}")
    bench = load_benchmark(lume)
    out = Path(out)
    splits: dict[str, list[dict]] = {}
    members: list[dict] = []
    nonmembers: list[dict] = []
    n_non = spec.docs if spec.nonmembers is None else spec.nonmembers
    for split in ("forget", "retain"):
        records = bench.split(split)
        keep: set[str] = set()
        for task in sorted({r.task for r in records}):
            sc = sorted((r for r in records if r.task == task and r.kind == "sc"),
                        key=lambda r: (len(r.input) + len(r.output), r.id))
            if len(sc) < spec.docs + (n_non if split == "forget" else 0):
                raise UserError(f"{lume}: {split} {task} has {len(sc)} sentence-completion records; the demo needs "
                                f"{spec.docs} (+{n_non} non-members from forget)")
            chosen = sc[:spec.docs]
            keep.update(_doc_key(r.id) for r in chosen)
            if split == "forget":
                members += [{"id": r.id, "document": _document(r)} for r in chosen]
                nonmembers += [{"id": r.id, "document": _document(r)} for r in sc[spec.docs:spec.docs + n_non]]
        qa_seen: dict[str, int] = {}
        rows = []
        for r in records:  # file order, as the SemEval means expect
            doc = _doc_key(r.id)
            if doc not in keep:
                continue
            if r.kind == "qa":
                if qa_seen.get(doc, 0) >= spec.qa_per_doc:
                    continue
                qa_seen[doc] = qa_seen.get(doc, 0) + 1
            rows.append({"id": r.id, "input": r.input, "output": r.output, "task": r.task})
        splits[split] = rows
    with RunTransaction(out, inputs={"LUME folder": lume}, markers=(SUBSET_FILE,)) as tx:  # all files or none
        fileio.write_jsonl(tx.path / "forget.jsonl", splits["forget"])
        fileio.write_jsonl(tx.path / "retain.jsonl", splits["retain"])
        fileio.write_jsonl(tx.path / "mia" / "member.jsonl", members)
        fileio.write_jsonl(tx.path / "mia" / "nonmember.jsonl", nonmembers)
        fileio.write_json(tx.path / SUBSET_FILE, {"source": str(lume), "source_hash": bench.content_hash,
                                                  "spec": asdict(spec)})
    return out


def _document(record) -> str:
    from harness.core.text import seam

    return record.input + seam(record.input, record.output) + record.output


# -- 2. the target ----------------------------------------------------------------------------------
def _training_examples(tokenizer, bench) -> list[tuple[list[int], int]]:
    """Every subset record as the evaluation tokenises it (prompt + answer [+ EOS]) and where its answer
    starts: the whole text is trained on, the answer's loss decides when the target has memorised it."""
    from harness.core.text import prompt_and_answer_ids

    out = []
    for r in bench.records:
        prompt, answer = prompt_and_answer_ids(tokenizer, r.input, r.output)
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        out.append((prompt + answer + eos, len(prompt)))
    return out


def _target_key(base_hash: str, data_hash: str, spec: FinetuneSpec) -> str:
    text = json.dumps({"base": base_hash, "data": data_hash, "recipe": asdict(spec), "version": 1}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def finetune_target(base: str | Path, data: str | Path, out: str | Path, spec: FinetuneSpec = FinetuneSpec(),
                    progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``base`` on every record of the LUME folder ``data`` until it regurgitates them; save it
    to ``out`` (``save_pretrained`` + ``finetune.json``). Reused when ``out`` holds the same recipe."""
    import torch

    from harness.backends.loading import load_model, weight_hash
    from harness.tasks.lume.data import load_benchmark

    out = Path(out)
    bench = load_benchmark(data)
    model, tokenizer = load_model(base)
    key = _target_key(weight_hash(model), bench.content_hash, spec)
    info_path = out / TARGET_FILE
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
            if info.get("key") == key and (out / "config.json").is_file():
                return info
        except (OSError, ValueError):
            pass  # unreadable: trained again
    # --out may not be the base model or the data, nor lie inside them (checked before training)
    tx = RunTransaction(out, inputs={"base model": base, "data": data}, markers=(TARGET_FILE,))
    examples = _training_examples(tokenizer, bench)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    model.train()
    history: list[float] = []
    t0 = time.perf_counter()
    for epoch in range(spec.max_epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        answer_nll, answer_tokens = 0.0, 0
        for start in range(0, len(order), spec.batch_size):
            batch = [examples[i] for i in order[start:start + spec.batch_size]]
            width = max(len(x) for x, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            answer = torch.zeros((len(batch), width), dtype=torch.bool)
            for b, (x, answer_start) in enumerate(batch):
                ids[b, :len(x)] = torch.tensor(x)
                mask[b, :len(x)] = 1
                answer[b, answer_start:len(x)] = True
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            nll = -torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            trained = mask[:, 1:].bool()
            loss = nll[trained].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            answer_nll += float(nll.detach()[answer[:, 1:]].sum())
            answer_tokens += int(answer[:, 1:].sum())
        history.append(answer_nll / max(answer_tokens, 1))
        if progress:
            print(f"      epoch {epoch + 1}: mean answer-token loss {history[-1]:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if not math.isfinite(history[-1]):
            raise RuntimeError(f"fine-tuning diverged at epoch {epoch + 1} (loss {history[-1]})")
        if history[-1] < spec.stop_loss:
            break
    model.eval()
    info = {"key": key, "base": str(base), "data": str(data), "recipe": asdict(spec), "epochs": len(history),
            "loss_by_epoch": [round(x, 5) for x in history], "memorised": history[-1] < spec.stop_loss,
            "seconds": round(time.perf_counter() - t0, 1), "n_examples": len(examples),
            "n_tokens": sum(len(x) for x, _ in examples)}
    with tx:  # the model, its tokenizer and finetune.json land together
        model.save_pretrained(tx.path)
        tokenizer.save_pretrained(tx.path)
        fileio.write_json(tx.path / TARGET_FILE, info)
    return info


# -- 3./4. methods, evaluations, board ----------------------------------------------------------------
def _method_params(name: str, epochs: int, evaluate_parents: bool) -> dict[str, Any]:
    """The method's ``demo`` preset values (short LoRA recipe, :mod:`baselines.presets`), spelled out so
    that ``epochs`` replaces the preset's own and the real documents (up to ~260 SmolLM2 tokens) are not
    cut at the world's 128 tokens (the method's default ``max_length`` applies)."""
    import copy

    from harness.core.registry import METHODS
    from harness.synthetic.demo import DEMO_PRESET

    params = copy.deepcopy((getattr(METHODS.get(name), "presets", None) or {}).get(DEMO_PRESET, {}))
    target = params.setdefault("common_params", {}) if name == "zjuklab_merge" else params
    target["epochs"] = epochs
    target.pop("max_length", None)
    if name == "zjuklab_merge":
        params["evaluate_parents"] = evaluate_parents
    return params


def _evaluate_target(target: Path, data: Path, run: Path, settings) -> Any:
    from harness.backends.loading import load_model, model_info
    from harness.core.records import RESULT_FILE as RESULT, MethodInfo, RunConfig, read_result
    from harness.evaluation.pipeline import evaluate_model
    from harness.evaluation.runfolder import eval_identity, output_inputs, record_inputs
    from harness.tasks import load_task

    model, tokenizer = load_model(target)
    info = model_info(model, id=str(target))
    if (run / RESULT).is_file():
        try:
            old = read_result(run)
            wanted = {k: v for k, v in settings.to_dict().items() if k != "progress"}
            same_eval = all(old.settings.get(k) == v for k, v in wanted.items())
            if old.model.weight_hash == info.weight_hash and same_eval:
                return old
        except Exception:  # an unreadable old record is simply redone
            pass
    config = RunConfig(command="demo", method="none", model=str(target), data=str(data), label="target",
                       benchmark="lume", device=settings.device, dtype=settings.dtype, eval=settings.to_dict())
    task = load_task(data)
    tx = RunTransaction(run, command="demo", inputs=output_inputs(model=target, data=data, settings=settings))
    with tx:  # the run folder lands complete or not at all
        result = evaluate_model(model, tokenizer, task, settings, tx.path, model_info=info,
                                method_info=MethodInfo(name="none", params={}), label="target", config=config,
                                run_id=tx.final.name)
        record_inputs(tx, model=target, task=task, settings=settings)
        tx.settings = {"benchmark": task.name, "dtype": settings.dtype, "eval": eval_identity(settings)}
    return result


def run_real_demo(plan: RealDemoPlan) -> dict[str, Any]:
    """Run the real demo into ``plan.out``; returns the summary written to ``OUT/real_demo.json``."""
    from leaderboards import build_leaderboards, to_markdown, write_outputs

    from harness.evaluation.pipeline import EvalSettings
    from harness.tasks.mcq.mmlu import MCQSpec, check_mcq_source
    from harness.training.runner import run_unlearning

    out = Path(plan.out)
    if not plan.base.is_dir():
        raise UserError(f"{plan.base}: no such model folder; run `unlearnbench assets --out {plan.assets}` first "
                        "(it lays out smollm2-135m-instruct and mmlu)")
    mmlu = MCQSpec(source=str(plan.assets / "mmlu"), protocol="lm-eval", subjects=plan.mmlu_subjects,
                   limit=plan.mmlu_limit, prompt_format="cloze")
    check_mcq_source(mmlu)
    settings = EvalSettings(mmlu=mmlu, max_new_tokens=plan.max_new_tokens, progress=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    _say(f"[1/5] LUME subset ({plan.subset.docs} documents per split x task) → {out / 'data'}")
    data = lume_subset(plan.lume, out / "data", plan.subset)
    timings["subset"] = time.perf_counter() - t0

    t = time.perf_counter()
    _say(f"[2/5] target: {plan.base.name} fine-tuned on the subset until it regurgitates → {out / 'target'}")
    target_info = finetune_target(plan.base, data, out / "target", plan.finetune)
    timings["target"] = time.perf_counter() - t

    t = time.perf_counter()
    _say("[3/5] evaluating the target (reference entry)")
    target_result = _evaluate_target(out / "target", data, out / "runs" / "target", settings)
    timings["evaluate_target"] = time.perf_counter() - t
    _say("      " + _row(target_result.metrics))

    _say(f"[4/5] unlearning with {len(plan.methods)} methods: {', '.join(plan.methods)}")
    rows = {"target": _summary(target_result.metrics)}
    for name in plan.methods:
        t = time.perf_counter()
        params = _method_params(name, plan.method_epochs, plan.evaluate_parents)
        outcome = run_unlearning(name, out / "target", data, out / "runs" / name, params=params, evaluate=True,
                                 eval_settings=settings, command="demo", progress=True, keep_model=False)
        timings[f"method/{name}"] = time.perf_counter() - t
        if outcome.result is not None:
            rows[name] = _summary(outcome.result.metrics)
            _say(f"      {name:<14} {timings[f'method/{name}']:6.0f} s  " + _row(outcome.result.metrics))

    t = time.perf_counter()
    _say("[5/5] leaderboard (semeval2025-1b board)")
    board_dir = out / "leaderboard"
    for _slug, lb in build_leaderboards([out / "runs"], "semeval2025-1b", bootstrap=plan.bootstrap, progress=True):
        write_outputs(lb, board_dir)
        print()
        print(to_markdown(lb))
    timings["leaderboard"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    summary = {"plan": {"assets": str(plan.assets), "lume": str(plan.lume), "base": str(plan.base),
                        "subset": asdict(plan.subset), "methods": list(plan.methods),
                        "method_epochs": plan.method_epochs, "mmlu_subjects": plan.mmlu_subjects,
                        "mmlu_limit": plan.mmlu_limit, "max_new_tokens": plan.max_new_tokens},
               "target": target_info, "rows": rows, "timings": {k: round(v, 1) for k, v in timings.items()}}
    fileio.write_json(out / RESULT_FILE, summary)
    _say(f"real demo finished in {timings['total']:.0f} s; runs in {out / 'runs'}, leaderboard in {board_dir}")
    return summary


_SHOWN = ("forget/regurgitation", "forget/knowledge", "retain/regurgitation", "retain/knowledge", "task_aggregate",
          "mia_auc", "mmlu", "final_score")


def _summary(m) -> dict[str, Any]:
    """Split-level means (over the three tasks) and the aggregates of a result's metrics."""
    from harness.synthetic.target import split_means

    out: dict[str, Any] = split_means(m)
    for name in ("task_aggregate", "mia_auc", "mia_score", "mmlu", "final_score"):
        out[name] = m.get(name)
    return out


def _row(metrics) -> str:
    s = _summary(metrics)
    return "  ".join(f"{k} {'n/a' if s.get(k) is None else f'{s[k]:.3f}'}" for k in _SHOWN)


def _say(text: str) -> None:
    print(text, flush=True)


# -- CLI (``unlearnbench demo --real``; the demo command adds these options and dispatches here) -----
def add_real_arguments(parser) -> None:
    g = parser.add_argument_group("real model (--real): SmolLM2 fine-tuned on a LUME subset, real MMLU")
    g.add_argument("--real", action="store_true",
                   help="run the pipeline on SmolLM2-135M-Instruct, real LUME records and real MMLU instead of the "
                        "synthetic world (needs `unlearnbench assets`; about 30-45 minutes on 2 CPU cores)")
    g.add_argument("--assets", default="assets", help="the folder `unlearnbench assets` wrote (default assets)")
    g.add_argument("--lume", default="../shared/lume", help="the LUME folder (default ../shared/lume)")
    g.add_argument("--docs", type=int, default=2, help="documents per split x task in the subset (default 2)")
    g.add_argument("--mmlu-subjects", default=DEFAULT_MMLU_SUBJECTS,
                   help=f"MMLU subjects (default {DEFAULT_MMLU_SUBJECTS})")
    g.add_argument("--mmlu-limit", type=int, default=40, help="test questions per MMLU subject (default 40)")


def run_from_args(args) -> int:
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(DEFAULT_METHODS)
    run_real_demo(RealDemoPlan(out=Path(args.out), assets=Path(args.assets), lume=Path(args.lume),
                               subset=SubsetSpec(docs=args.docs), methods=methods, mmlu_subjects=args.mmlu_subjects,
                               mmlu_limit=args.mmlu_limit, bootstrap=args.bootstrap,
                               finetune=FinetuneSpec(seed=args.seed)))
    return 0


__all__ = ["DEFAULT_METHODS", "FinetuneSpec", "RealDemoPlan", "SubsetSpec", "finetune_target", "lume_subset",
           "run_real_demo"]
