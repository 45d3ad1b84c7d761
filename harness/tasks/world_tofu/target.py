"""The world-TOFU targets: a "full" model fine-tuned on every author (TOFU's ``full``) and a
retain-only "oracle" (TOFU's ``retain90`` model) trained beside it, the reference of Forget Quality.

Both share one byte-level BPE tokenizer (trained on every text of the world, so both see the same
token ids) and the recipe of :mod:`harness.synthetic.target` (tiny Llama, its ``_fit`` loop: AdamW,
warm-up and cosine decay over length-grouped batches), on the TOFU Phi layout
``Question: q\\nAnswer: a`` between BOS and EOS. Both also learn the "real authors" and "world facts"
sets (their general knowledge). Cached like the LUME target: a folder whose ``target.json`` records the
same key is reused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

from harness.core import fileio
from harness.core.errors import DataError
from harness.core.records import harness_version
from harness.synthetic.target import CONFIGS, TARGET_FILE, WEIGHTS_FILE, TargetConfig
from harness.tasks.tofu.data import find_config, read_config
from harness.tasks.tofu.formats import prompt_format

RECIPE_VERSION = "1"
#: The small LUME recipe, with more epochs: short QA texts, each seen once per epoch.
TOFU_TARGET_CONFIG: TargetConfig = replace(CONFIGS["small"], epochs=60)
#: Which configs each model trains on (both add the general-knowledge sets).
TRAIN_CONFIGS = {"full": ("full",), "oracle": ("retain90",)}
GENERAL_CONFIGS = ("real_authors", "world_facts")


def _rows(world: Path, name: str, perturbed: bool = False):
    path = find_config(world, name)
    if path is None:
        raise DataError(f"no {name} config; make the world with `unlearnbench tofu-world`", world)
    return read_config(path, perturbed=perturbed, paraphrased=perturbed and name.endswith("_perturbed")
                       and not name.startswith(("real", "world")))


def _all_texts(world: Path) -> list[str]:
    fmt = prompt_format("phi")
    texts = []
    for name in ("full", *GENERAL_CONFIGS):
        texts += [fmt.loss_prompt(i.question) + fmt.loss_answer(i.answer) for i in _rows(world, name)]
    for name in ("forget10_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed"):
        for item in _rows(world, name, perturbed=True):
            texts += [fmt.loss_answer(a) for a in (item.paraphrased_answer, *item.perturbed_answers) if a]
    return texts


def _key(world: Path, kind: str, config: TargetConfig, seed: int) -> str:
    h = hashlib.sha256()
    for path in sorted(world.glob("*.json")):
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    h.update(json.dumps({"kind": kind, "config": asdict(config), "seed": seed, "recipe": RECIPE_VERSION,
                         "harness": harness_version()}, sort_keys=True).encode())
    return h.hexdigest()


def train_tofu_target(world: str | Path, out: str | Path, kind: str = "full", seed: int = 0,
                      config: TargetConfig = TOFU_TARGET_CONFIG, progress: bool = True) -> Path:
    """Train (or reuse) the ``full`` or ``oracle`` model of a world-TOFU folder into ``out``."""
    import torch

    from harness.synthetic.target import _fit
    from harness.synthetic.tiny import tiny_llama, train_bpe_tokenizer

    world, out = Path(world), Path(out)
    if kind not in TRAIN_CONFIGS:
        raise ValueError(f"unknown target kind {kind!r}; expected one of {', '.join(TRAIN_CONFIGS)}")
    key = _key(world, kind, config, seed)
    info_path = out / TARGET_FILE
    if info_path.is_file() and (out / WEIGHTS_FILE).is_file():
        if json.loads(info_path.read_text(encoding="utf-8")).get("cache_key") == key:
            return out
    fmt = prompt_format("phi")
    trained = [i for name in (*TRAIN_CONFIGS[kind], *GENERAL_CONFIGS) for i in _rows(world, name)]
    started = time.perf_counter()
    tokenizer = train_bpe_tokenizer(_all_texts(world), vocab_size=config.vocab_size)
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    sequences = [tokenizer(fmt.loss_prompt(i.question) + fmt.loss_answer(i.answer))["input_ids"] + [eos]
                 for i in trained]
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        model = tiny_llama(tokenizer, hidden_size=config.hidden_size, num_layers=config.num_layers,
                           num_heads=config.num_heads, max_positions=max(256, 2 ** math.ceil(math.log2(
                               max(len(s) for s in sequences) + 1))), seed=seed)
        losses = _fit(model, sequences, [[] for _ in range(config.epochs)], bos, eos, config, seed, progress)
    finally:
        torch.set_num_threads(threads)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    model.generation_config.bos_token_id = bos
    model.generation_config.do_sample = False
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    fileio.write_json(tmp / TARGET_FILE, {
        "cache_key": key, "kind": kind, "world": str(world.resolve()), "seed": seed, "config": asdict(config),
        "trained_on": [*TRAIN_CONFIGS[kind], *GENERAL_CONFIGS], "train_sequences": len(sequences),
        "train_seconds": round(time.perf_counter() - started, 1), "epoch_losses": [round(x, 4) for x in losses],
        "recipe_version": RECIPE_VERSION, "unlearnbench_version": harness_version()})
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


__all__ = ["TOFU_TARGET_CONFIG", "TRAIN_CONFIGS", "train_tofu_target"]
