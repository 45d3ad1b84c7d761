"""The MIA loss pass vs its physical floor: a bare batched forward pass over the same tokens.

``harness.backends.hf.sequence_losses`` computes per document the mean token cross-entropy, Min-K% and
Min-K%++ statistics. The floor is the forward pass alone (same length-sorted batches, same padding,
logits produced and dropped). Target: the full pass within 1.3x of the floor. Also prints the
one-document-at-a-time loop (the organisers' procedure) for scale.

    python benchmarks/mia_pass.py                       # the small target if --target is given, else
                                                        # a random Llama (hidden 512) with a world tokenizer
    python benchmarks/mia_pass.py --target runs/target/model --repeat 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    import torch

    from harness import load_benchmark
    from harness.backends import batching
    from harness.backends import hf as engine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, default=None, help="world folder (default: generate one, seed 0, small)")
    p.add_argument("--target", type=Path, default=None, help="model folder (default: a random Llama, --hidden)")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=0, help="documents per MIA set (0: all)")
    p.add_argument("--repeat", type=int, default=3, help="best of N timings")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    if args.world is None:
        from harness.synthetic.world import generate_world

        args.world = Path(tempfile.mkdtemp(prefix="mia-pass-")) / "world"
        generate_world(args.world, seed=0, size="small")
    bench = load_benchmark(args.world)
    docs = list(bench.members) + list(bench.nonmembers)
    if args.limit:
        docs = list(bench.members[: args.limit]) + list(bench.nonmembers[: args.limit])
    texts = [d.document for d in docs]
    if args.target:
        from harness.backends.loading import load_model

        model, tok = load_model(args.target)
        name = str(args.target)
    else:
        from harness.synthetic.tiny import tiny_llama, train_bpe_tokenizer

        tok = train_bpe_tokenizer(texts + [r.input + r.output for r in bench.records], vocab_size=2048)
        model = tiny_llama(tok, hidden_size=args.hidden, num_layers=4, num_heads=8, max_positions=2048)
        name = f"random Llama hidden {args.hidden}"

    seqs = [tok(t)["input_ids"] for t in texts]
    batches = batching.length_batches([len(s) for s in seqs], args.batch_size)

    def bare() -> None:
        with torch.no_grad():
            for batch in batches:
                width = max(len(seqs[i]) for i in batch)
                ids = torch.zeros((len(batch), width), dtype=torch.long)
                for r, i in enumerate(batch):
                    ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
                model(input_ids=ids, use_cache=False).logits  # noqa: B018

    def full() -> None:
        engine.sequence_losses(model, tok, texts, batch_size=args.batch_size, progress=False)

    def one_at_a_time() -> None:
        with torch.no_grad():
            for s in seqs:
                ids = torch.tensor([s])
                model(input_ids=ids, labels=ids).loss  # noqa: B018

    # Interleaved repeats, best of each: on a shared machine the load changes from minute to minute,
    # and interleaving exposes both variants to the same conditions.
    bare()  # warm-up
    times: dict[str, list[float]] = {"bare": [], "full": [], "one": []}
    for _ in range(args.repeat):
        for key, fn in (("bare", bare), ("full", full)):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    one_at_a_time()
    times["one"].append(time.perf_counter() - t0)
    t_bare, t_full, t_one = (min(times[k]) for k in ("bare", "full", "one"))
    n_tok = sum(len(s) for s in seqs)
    print(f"MIA pass on {len(texts)} documents ({n_tok} tokens), {name}, batch size {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, best of {args.repeat}")
    print(f"  bare batched forward   {t_bare:7.3f}s")
    print(f"  sequence_losses        {t_full:7.3f}s   ratio to bare {t_full / t_bare:.2f}x (target <= 1.3x)")
    print(f"  one document at a time {t_one:7.3f}s   ratio to sequence_losses {t_one / t_full:.2f}x")


if __name__ == "__main__":
    main()
