"""ROUGE scoring speed: ``rouge_score``'s own loop vs :func:`metrics.regurgitation.rouge_recalls`.

Data: the sentence-completion items of ``../shared/lume`` (forget + retain) with deterministic
synthetic generations of realistic length (~170 ROUGE tokens: the start of another document, a
prefix of the reference, then another document, cut to 1,100 characters) — or, when LUME is
absent, generated texts of the same shape. Three timings over the same pairs:

* ``rouge_score``: a fresh ``RougeScorer(['rouge1', 'rougeL'], use_stemmer=True)`` called once per
  item, as the organisers did;
* ``rouge_score + stem cache``: the same scorer with its stemmer memoised (the previous harness);
* ``ours (cold)``: ``rouge_recalls`` with every cache emptied first, then ``ours (warm)`` again.

It prints the ratios and checks that every (ROUGE-L recall, ROUGE-1 recall) pair is equal.

    python benchmarks/rouge_speed.py            # all LUME sc items
    python benchmarks/rouge_speed.py --repeat 3 # best of 3 per variant
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LUME_DIR = REPO.parent / "shared" / "lume"


def lume_pairs(seed: int = 0) -> list[tuple[str, str]]:
    """(reference, synthetic generation) for every sc item of LUME, forget then retain."""
    from harness.core.types import kind_from_id

    rows = []
    for split in ("forget", "retain"):
        with (LUME_DIR / f"{split}.jsonl").open(encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    sc = [r for r in rows if kind_from_id(r["id"]) == "sc"]
    rng = random.Random(seed)
    docs = [r["input"] + " " + r["output"] for r in sc]
    pairs = []
    for r in sc:
        words = rng.choice(docs).split()[:40] + r["output"].split()[: rng.randint(0, 60)] + rng.choice(docs).split()
        pairs.append((r["output"], " ".join(words)[:1100]))
    return pairs


def generated_pairs(n: int = 1733, seed: int = 0) -> list[tuple[str, str]]:
    """LUME-shaped pairs from a Zipf-ish vocabulary (used when ../shared/lume is absent)."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)] + ["the", "of", "and", "running", "studies", "connected", "1931", "é"]
    weights = [1 / (i + 1) for i in range(len(vocab))]

    def text(k: int) -> str:
        return " ".join(rng.choices(vocab, weights, k=k)).capitalize() + "."

    pairs = []
    for _ in range(n):
        ref = text(rng.randint(20, 120))
        gen = " ".join([text(40), " ".join(ref.split()[: rng.randint(0, 60)]), text(150)])[:1100]
        pairs.append((ref, gen))
    return pairs


def _fresh_scorer():
    from rouge_score import rouge_scorer

    logging.getLogger("absl").setLevel(logging.WARNING)
    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def _time(fn, repeat: int) -> tuple[float, list]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per variant (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from metrics import regurgitation

    if (LUME_DIR / "forget.jsonl").is_file() and (LUME_DIR / "retain.jsonl").is_file():
        pairs, source = lume_pairs(args.seed), f"LUME sc items ({LUME_DIR})"
    else:
        pairs, source = generated_pairs(seed=args.seed), "generated LUME-shaped texts (LUME absent)"
    n_tokens = sum(len(regurgitation.rouge_tokens(g)) for _, g in pairs) / len(pairs)
    print(f"{len(pairs)} pairs from {source}; mean generation length {n_tokens:.0f} ROUGE tokens")

    def run_rouge_score(scorer):
        out = []
        for ref, gen in pairs:
            s = scorer.score(target=ref, prediction=gen)
            out.append((s["rougeL"].recall, s["rouge1"].recall))
        return out

    def run_plain():
        return run_rouge_score(_fresh_scorer())

    def run_stem_cached():
        scorer = _fresh_scorer()
        scorer._tokenizer._stemmer.stem = functools.lru_cache(maxsize=1 << 18)(scorer._tokenizer._stemmer.stem)
        return run_rouge_score(scorer)

    def run_ours_cold():
        regurgitation.rouge_scorer.cache_clear()
        regurgitation._reference_tokens.cache_clear()
        return [regurgitation.rouge_recalls(ref, gen) for ref, gen in pairs]

    def run_ours_warm():
        return [regurgitation.rouge_recalls(ref, gen) for ref, gen in pairs]

    t_plain, expected = _time(run_plain, args.repeat)
    t_cached, cached = _time(run_stem_cached, args.repeat)
    t_cold, ours_cold = _time(run_ours_cold, args.repeat)
    t_warm, ours_warm = _time(run_ours_warm, args.repeat)
    equal = expected == cached == ours_cold == ours_warm
    print(f"rouge_score              {t_plain:8.3f} s")
    print(f"rouge_score + stem cache {t_cached:8.3f} s")
    print(f"ours (cold caches)       {t_cold:8.3f} s   ratio vs rouge_score {t_plain / t_cold:6.1f}x, "
          f"vs stem-cached {t_cached / t_cold:5.1f}x")
    print(f"ours (warm caches)       {t_warm:8.3f} s   ratio vs rouge_score {t_plain / t_warm:6.1f}x")
    print(f"all {len(pairs)} (ROUGE-L recall, ROUGE-1 recall) pairs identical: {equal}")
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
