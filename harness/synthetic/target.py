"""The embedded target model: a small Llama trained until it memorises the synthetic world.

LUME's targets were fine-tuned until they memorised forget and retain documents, with a held-out
set for membership inference. :func:`train_target` does the same on a world from
:mod:`harness.synthetic.world`, on CPU, in minutes:

* a byte-level BPE tokenizer trained on *all* world text (members and non-members alike, so token
  counts leak nothing about membership);
* a small Llama (:func:`harness.synthetic.tiny.tiny_llama`) trained on every forget and retain record exactly
  as it will be prompted — ``BOS + input + " " + output + EOS`` (for a sentence-completion item that
  is the whole document, since the world splits documents at a space) — plus the utility fact
  documents and utility questions in lm-eval's cloze layout (``Question: …\nAnswer: <choice text>``,
  k-shot chains, loss on the answers): the dev/val items and every fact asked in training-only
  wordings. Never the non-members, never the utility test items' wording;
* a plain AdamW loop (this is not the unlearning loop), deterministic on CPU for a fixed seed;
* saved with ``save_pretrained`` (safetensors) + the tokenizer, so transformers, lm-eval and the
  harness load it by path; cached by a hash of (world content, config, harness version);
* quality gates measured with the harness's own evaluation (``harness.evaluation.pipeline.evaluate_model`` and
  ``harness.tasks.mcq.mmlu.run_mcq``), written to ``target_report.json``. The utility set is scored in the cloze
  format (``MCQSpec(prompt_format="cloze")``, lm-eval's ``mmlu_continuation``): a 1M-parameter model
  that knows every fact still answers MMLU's *letter* format at chance (0.20-0.30 in every small
  recipe measured, letter-format practice included), the reason OLMES scores small models in cloze form.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.core import fileio
from harness.core.errors import DataError, TargetError
from harness.core.manifest import file_sha256
from harness.core.transaction import RunTransaction
from harness.tasks.lume.data import load_benchmark
from harness.tasks.mcq.mmlu import CONTINUATION_DESCRIPTION, CONTINUATION_DOC_TO_TEXT, FEWSHOT_DELIMITER, TARGET_DELIMITER, MCQSpec
from harness.core.records import harness_version
from harness.core.types import LUME_TASKS

log = logging.getLogger("unlearnbench.target")

TARGET_FILE = "target.json"
REPORT_FILE = "target_report.json"
WEIGHTS_FILE = "model.safetensors"
RECIPE_VERSION = "2"  # 2: utility trained and scored in the cloze format


@dataclass(frozen=True)
class TargetConfig:
    """Model shape and training recipe for one ``--size``."""

    hidden_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    epochs: int
    lr: float
    warmup_steps: int
    batch_tokens: int
    """Padded tokens per batch (batches are groups of similar-length sequences)."""
    max_batch_rows: int
    weight_decay: float = 0.0
    utility_phrasings: int = 1
    """Training wordings (:data:`harness.synthetic.world.TRAIN_PHRASINGS`) per almanac fact per epoch, as cloze
    QA items (:func:`_utility_qa_chains`); 0 trains the utility dev+val items only."""
    threads: int = 1
    """torch CPU threads while training and measuring. One: on a shared 2-core machine OpenMP threads
    spin-wait for each other, and a 2-thread training step was measured 5x slower than a 1-thread one."""


CONFIGS: dict[str, TargetConfig] = {
    # small: measured 113 CPU-seconds (one thread) for the default world, utility 0.89; 32 epochs with two
    # training wordings per fact gave utility 0.97 for ~30 s more, 24 epochs missed the regurgitation gates.
    "small": TargetConfig(hidden_size=128, num_layers=2, num_heads=4, vocab_size=2048, epochs=28, lr=2e-3,
                          warmup_steps=20, batch_tokens=2048, max_batch_rows=32),
    "medium": TargetConfig(hidden_size=256, num_layers=4, num_heads=4, vocab_size=4096, epochs=32, lr=1.5e-3,
                           warmup_steps=50, batch_tokens=4096, max_batch_rows=64),
    "large": TargetConfig(hidden_size=384, num_layers=6, num_heads=6, vocab_size=8192, epochs=32, lr=1e-3,
                          warmup_steps=100, batch_tokens=4096, max_batch_rows=64),
}

#: Quality gates: (report key, threshold); the value must be >= the threshold.
GATES: tuple[tuple[str, float], ...] = (
    ("mia_auc", 0.95),
    ("forget/regurgitation", 0.9),
    ("retain/regurgitation", 0.9),
    ("forget/knowledge", 0.8),
    ("retain/knowledge", 0.8),
    # "well above chance" (0.25): lm-eval, 5-shot, cloze format (test wording never trained).
    ("utility", 0.6),
)

# -- text formats ----------------------------------------------------------------------------------
def qa_block(question: str) -> str:
    """One utility question as lm-eval's ``mmlu_continuation`` writes it, ending in ``Answer:``."""
    return CONTINUATION_DOC_TO_TEXT.replace("{{question.strip()}}", question.strip())


def qa_solved(question: str, answer: str) -> str:
    """A question with its answer, as a few-shot example (and a training item) reads."""
    return qa_block(question) + TARGET_DELIMITER + answer


def qa_description(subject: str) -> str:
    return CONTINUATION_DESCRIPTION.format(subject=subject.replace("_", " "))


def qa_prompt(subject: str, shots: list, item) -> str:
    """lm-eval's k-shot cloze context: description, solved shots (answer = choice text), the question."""
    solved = [qa_solved(s.question, s.choices[s.answer]) for s in shots]
    return qa_description(subject) + "".join(s + FEWSHOT_DELIMITER for s in solved) + qa_block(item.question)


# -- world reading ---------------------------------------------------------------------------------
@dataclass
class WorldTexts:
    train_texts: list[str]
    """Trained with BOS … EOS: records as ``input + " " + output`` and fact documents."""
    qa_by_epoch: list[list[str]]
    """Each epoch's utility QA chains (loss on the answers only), BOS added on a seeded coin flip."""
    tokenizer_texts: list[str]
    """Every text in the world (members, non-members, all MCQ splits)."""


def _read_world(world: Path):
    bench = load_benchmark(world)
    if not bench.has_mia:
        raise DataError("the world has no mia/member.jsonl and mia/nonmember.jsonl; make it with `unlearnbench world`",
                        world)
    facts_path = world / "utility" / "facts.jsonl"
    if not facts_path.is_file():
        raise DataError("missing utility/facts.jsonl; expected a world made by `unlearnbench world`", facts_path)
    facts = [row["document"] for row in fileio.read_jsonl(facts_path)]
    from harness.tasks.mcq.data import load_mcq

    mcq = load_mcq(world / "utility")
    return bench, facts, mcq


def _utility_qa_chains(mcq, facts: list[dict[str, str]], rng: random.Random, chain: int,
                       phrasings: int) -> list[str]:
    """One epoch's utility training texts, in the cloze layout the utility set is scored in
    (lm-eval's ``mmlu_continuation``: ``Question: …\nAnswer: <choice text>``), chained ``chain`` at
    a time after the subject's description line, exactly as a k-shot prompt reads.

    The questions are the dev + val items (in their own wording) and, for every almanac fact, the
    first ``phrasings`` wordings of :data:`harness.synthetic.world.TRAIN_PHRASINGS` (never the utility CSVs'
    wording), so what the test split measures is whether the model *recalls the fact* when asked in
    a wording it never saw. The fact documents themselves are trained as ordinary texts."""
    from harness.synthetic.world import TRAIN_PHRASINGS, almanac_attributes

    out = []
    for subject in mcq.subjects:
        pool = [(item.question, item.choices[item.answer]) for split in ("dev", "val")
                for item in mcq.data[subject].get(split, [])]
        pool += [(TRAIN_PHRASINGS[attr][k].format(town=fact["town"]), fact[attr])
                 for s, attr, _, _ in almanac_attributes() if s == subject for fact in facts
                 for k in range(min(phrasings, len(TRAIN_PHRASINGS[attr])))]
        rng.shuffle(pool)
        description = qa_description(subject)
        for start in range(0, len(pool), chain):
            out.append(description + FEWSHOT_DELIMITER.join(qa_solved(q, a) for q, a in pool[start:start + chain]))
    return out


def _world_texts(bench, facts, mcq, seed: int, epochs: int, phrasings: int, chain: int = 6) -> WorldTexts:
    """The training texts (records and facts; utility QA chains per epoch) and the tokenizer's corpus."""
    from harness.synthetic.world import parse_fact

    rng = random.Random(seed)
    train = [f"{r.input} {r.output}" for r in bench.records] + list(facts)
    parsed = [parse_fact(f) for f in facts]
    qa_by_epoch = [_utility_qa_chains(mcq, parsed, rng, chain, phrasings) for _ in range(epochs)]
    all_qa = [qa_solved(item.question, item.choices[item.answer])
              for subject in mcq.subjects for split in ("dev", "val", "test")
              for item in mcq.data[subject].get(split, [])]
    tokenizer_texts = (train + [d.document for d in bench.members + bench.nonmembers] + all_qa
                       + (qa_by_epoch[0] if qa_by_epoch else [])
                       + [qa_description(s) for s in mcq.subjects])
    return WorldTexts(train, qa_by_epoch, tokenizer_texts)


def _answer_mask(tokenizer, text: str) -> tuple[list[int], list[bool]]:
    """Token ids of a utility QA chain (no special tokens) and which tokens belong to an answer
    (the text after ``Answer: `` up to the end of its line). Only the answers are trained: the
    questions are given in the prompt at test time, and fitting them would spend capacity on them."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    answer_chars: set[int] = set()
    for match in re.finditer(r"Answer: ([^\n]*)", text):
        answer_chars.update(range(match.start(1), match.end(1)))
    mask = [any(c in answer_chars for c in range(start, end)) for start, end in enc["offset_mapping"]]
    return enc["input_ids"], mask


def cache_key(world: Path, config: TargetConfig, seed: int) -> str:
    """sha256 over every world file's bytes (sorted paths), the recipe and the harness version."""
    h = hashlib.sha256()
    for path in sorted(p for p in world.rglob("*") if p.is_file() and p.name != "world.json"
                       and not p.name.startswith(".")):
        h.update(path.relative_to(world).as_posix().encode())
        h.update(b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    h.update(json.dumps({"config": asdict(config), "seed": seed, "recipe": RECIPE_VERSION,
                         "harness": harness_version()}, sort_keys=True).encode())
    return h.hexdigest()


# -- training --------------------------------------------------------------------------------------
def _batches(lengths: list[int], config: TargetConfig) -> list[list[int]]:
    """Indices grouped by similar length under the padded-token budget (fixed, order-independent):
    the evaluation engine's batching rule, reused."""
    from harness.backends.batching import length_batches

    return length_batches(lengths, config.max_batch_rows, config.batch_tokens)


def _fit(model, base: list[list[int]], qa_by_epoch: list[list[tuple[list[int], list[bool]]]], bos_id: int,
         pad_id: int, config: TargetConfig, seed: int, progress: bool) -> list[float]:
    """AdamW with linear warm-up and cosine decay over length-grouped batches in a seeded order.

    Every epoch trains the ``base`` sequences (loss on every token) and that epoch's utility QA chains
    (ids, mask of the tokens that carry loss). QA chains are stored without BOS and get it on a
    seeded coin flip (lm-eval adds BOS or not depending on its settings; the model learns both).
    """
    import torch
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    epoch_rows = []
    for extra in qa_by_epoch:
        rows = [(seq, None, False) for seq in base] + [(ids, keep, True) for ids, keep in extra]
        epoch_rows.append((rows, _batches([len(r[0]) + 1 for r in rows], config)))
    total = sum(len(batches) for _, batches in epoch_rows)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress_ = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress_))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    losses: list[float] = []
    step = 0
    with tqdm(total=total, desc="train target", unit="step", disable=not progress, dynamic_ncols=True) as bar:
        for epoch, (epoch_sequences, batches) in enumerate(epoch_rows):
            order = list(range(len(batches)))
            rng.shuffle(order)
            epoch_losses = []
            for b in order:
                rows, row_masks = [], []
                for i in batches[b]:
                    seq, keep, optional_bos = epoch_sequences[i]
                    keep = keep if keep is not None else [True] * len(seq)
                    if optional_bos and rng.random() < 0.5:
                        seq, keep = [bos_id] + seq, [False] + keep
                    rows.append(seq)
                    row_masks.append(keep)
                width = max(len(r) for r in rows)
                ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                labels = torch.full((len(rows), width), -100, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for j, (seq, keep) in enumerate(zip(rows, row_masks)):
                    ids[j, :len(seq)] = torch.tensor(seq)
                    labels[j, :len(seq)] = torch.tensor([t if k else -100 for t, k in zip(seq, keep)])
                    mask[j, :len(seq)] = 1
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                step += 1
                epoch_losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{epoch_losses[-1]:.3f}")
            losses.append(sum(epoch_losses) / len(epoch_losses))
    model.eval()
    return losses


# -- quality gates ---------------------------------------------------------------------------------
def split_means(metrics: dict[str, Any]) -> dict[str, float | None]:
    """``forget/regurgitation``, ``forget/knowledge``, ``retain/…``: the mean over the LUME tasks of a
    record's per-task terms (tasks without the term left out; ``None`` when no task has it)."""
    out: dict[str, float | None] = {}
    for split in ("forget", "retain"):
        for name in ("regurgitation", "knowledge"):
            per_task = [metrics.get(f"{split}/{task}/{name}") for task in LUME_TASKS]
            present = [v for v in per_task if v is not None]
            out[f"{split}/{name}"] = sum(present) / len(present) if present else None
    return out


def measure_gates(model, tokenizer, bench, utility_dir: Path, progress: bool = True,
                  **settings_overrides: Any) -> dict[str, Any]:
    """The target's quality numbers, measured exactly as every run is: :func:`harness.evaluation.pipeline.evaluate_model`
    (greedy generation, ROUGE-L recall, exact match, loss-attack MIA AUC) and the utility MCQ set through
    :func:`harness.tasks.mcq.mmlu.run_mcq` (lm-eval, 5-shot). Split-level values are the mean of the three task
    means (SemEval aggregates per task). ``settings_overrides`` go to ``EvalSettings`` (tests only)."""
    from harness.evaluation.pipeline import EvalSettings, evaluate_model

    utility = MCQSpec(source=str(utility_dir), metric_name="utility", prompt_format="cloze")
    settings = EvalSettings(utility=utility, answer_losses=False, cache=False, progress=progress, **settings_overrides)
    metrics = evaluate_model(model, tokenizer, bench, settings).metrics
    out: dict[str, Any] = split_means(metrics)
    for key in ("mia_auc", "mia_auc/zlib", "mia_auc/min_k", "mia_auc/min_k_pp", "utility", "task_aggregate"):
        out[key] = metrics.get(key)
    out.update({k: v for k, v in sorted(metrics.items())
                if k.startswith(("forget/", "retain/")) and k not in out})
    return out


def check_gates(values: dict[str, Any], gates: tuple[tuple[str, float], ...] = GATES) -> list[str]:
    """Descriptions of the failed gates (empty when all pass)."""
    return [f"{key} = {values.get(key)!r} < {threshold}" for key, threshold in gates
            if values.get(key) is None or values[key] < threshold]


# -- the public entry ------------------------------------------------------------------------------
def read_target_info(model_dir: str | Path) -> dict | None:
    path = Path(model_dir) / TARGET_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def train_target(world_dir: str | Path, out_dir: str | Path, size: str = "small", seed: int = 0,
                 progress: bool = True, config: TargetConfig | None = None, gates: bool = True) -> Path:
    """Train (or reuse) the target model for the world in ``world_dir``; return ``out_dir``.

    ``config`` overrides the ``size`` preset (tests use a reduced one); ``gates=False`` skips the
    quality measurement. When ``out_dir/target.json`` records the same cache key and the weights are
    there, nothing is retrained (``target.json["cache_key"]``). The report, with ``passed`` and
    ``failed`` gates, is ``out_dir/target_report.json``; failing gates do not raise (the CLI turns
    them into a non-zero exit).
    """
    import torch

    from harness.synthetic.tiny import train_bpe_tokenizer, tiny_llama

    world = Path(world_dir)
    out = Path(out_dir)
    if config is None:
        if size not in CONFIGS:
            raise TargetError(f"unknown size {size!r}; expected one of {sorted(CONFIGS)}")
        config = CONFIGS[size]
    if not world.is_dir():
        raise DataError("world folder does not exist; make one with `unlearnbench world --out DIR`", world)
    bench, facts, mcq = _read_world(world)
    key = cache_key(world, config, seed)
    info = read_target_info(out)
    if info and info.get("cache_key") == key and (out / WEIGHTS_FILE).is_file() and \
            (not gates or (out / REPORT_FILE).is_file()) and _weights_match(out, info):
        log.info("target model in %s is up to date (cache key %s…); not retraining", out, key[:12])
        return out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and info is None)):
        raise TargetError(f"{out}: exists and is not a target model folder (no {TARGET_FILE}); refusing to overwrite")
    # --out may not be the world or lie inside it (checked before training, not after).
    tx = RunTransaction(out, inputs={"world": world}, markers=(TARGET_FILE,))

    texts = _world_texts(bench, facts, mcq, seed, config.epochs, phrasings=config.utility_phrasings)
    started, cpu_started = time.perf_counter(), time.process_time()
    tokenizer = train_bpe_tokenizer(texts.tokenizer_texts, vocab_size=config.vocab_size)
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    sequences = [tokenizer(t)["input_ids"] + [eos] for t in texts.train_texts]
    qa_by_epoch = [[_answer_mask(tokenizer, text) for text in chains] for chains in texts.qa_by_epoch]
    longest = max(len(s) for s in sequences + [ids for epoch in qa_by_epoch for ids, _ in epoch]) + 1

    torch.manual_seed(seed)
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(config.threads)
    try:
        model = tiny_llama(tokenizer, hidden_size=config.hidden_size, num_layers=config.num_layers,
                           num_heads=config.num_heads, max_positions=max(1024, 2 ** math.ceil(math.log2(longest))),
                           seed=seed)
        epoch_losses = _fit(model, sequences, qa_by_epoch, bos, eos, config, seed, progress)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
    train_seconds = time.perf_counter() - started
    train_cpu_seconds = time.process_time() - cpu_started
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    model.generation_config.bos_token_id = bos
    model.generation_config.do_sample = False

    n_params = sum(p.numel() for p in model.parameters())
    target_info = {
        "cache_key": key,
        "world": str(world.resolve()),
        "size": size,
        "seed": seed,
        "config": asdict(config),
        "recipe_version": RECIPE_VERSION,
        "unlearnbench_version": harness_version(),
        "parameters": n_params,
        "train_sequences_per_epoch": len(sequences) + len(qa_by_epoch[0]),
        "train_tokens_per_epoch": sum(len(s) for s in sequences) + sum(len(ids) for ids, _ in qa_by_epoch[0]),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "epoch_losses": [round(x, 4) for x in epoch_losses],
        "torch_threads": config.threads,
    }
    # Written into a staging sibling and swapped in whole (harness.core.transaction): a killed run
    # never leaves a half model that a later call would take for a cache hit, nor loses the old one.
    with tx:
        model.save_pretrained(tx.path)
        tokenizer.save_pretrained(tx.path)
        if gates:
            torch.set_num_threads(config.threads)
            try:
                values = measure_gates(model, tokenizer, bench, world / "utility", progress=progress)
            finally:
                torch.set_num_threads(threads)
            failed = check_gates(values)
            report = {"gates": {k: t for k, t in GATES}, "values": values, "passed": not failed, "failed": failed,
                      "parameters": n_params, "train_seconds": round(train_seconds, 1),
                      "measured_with": "harness.evaluation.pipeline.evaluate_model (semeval2025 mode) + "
                                       "harness.tasks.mcq.mmlu.run_mcq (utility, lm-eval 5-shot, cloze format)"}
            fileio.write_json(tx.path / REPORT_FILE, report)
        target_info["weights_sha256"] = file_sha256(tx.path / WEIGHTS_FILE)[0]  # reuse checks the content
        fileio.write_json(tx.path / TARGET_FILE, target_info)  # last: its presence marks a complete folder
    return out


def _weights_match(out: Path, info: dict) -> bool:
    """The saved weights are the ones this folder's training wrote (not replaced since). A folder that
    records no hash (made before it was recorded) cannot be checked, so it is trained again."""
    recorded = info.get("weights_sha256")
    if recorded is None:
        log.info("%s: target.json records no weights_sha256 (an older target); training again", out)
        return False
    if file_sha256(out / WEIGHTS_FILE)[0] == recorded:
        return True
    log.warning("%s: %s is not the file this target's training wrote (content changed); training again", out,
                WEIGHTS_FILE)
    return False


def read_report(model_dir: str | Path) -> dict | None:
    path = Path(model_dir) / REPORT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


__all__ = ["train_target", "measure_gates", "check_gates", "read_report", "read_target_info", "cache_key",
           "qa_prompt", "qa_block", "qa_solved", "CONFIGS", "GATES", "TargetConfig", "TargetError"]
