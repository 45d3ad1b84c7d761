"""Peak memory of one unlearning training step, without and with gradient checkpointing (a ratio).

    PYTHONPATH=$PWD python benchmarks/unlearn_step_memory.py --model REAL_DEMO/target --data REAL_DEMO/data

Each variant runs in a fresh process (``ru_maxrss`` is a process's lifetime peak): one step of
``--method`` (default: NPO+GDR+KLR with the ZJUKLAB under-forgetting preset, LoRA r 8, batch 8 forget
+ 8 retain, sequences up to 256 tokens) without evaluation. It prints both peaks, their ratio, each
step's time and loss (the loss must be the same: checkpointing recomputes, it does not approximate).
On the real demo's SmolLM2-135M target (docs/attacks.md, "Memory"): 12.77 GB and 6.39 GB (0.50).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from harness.training.runner import run_unlearning
args = json.loads(sys.argv[1])
started = time.perf_counter()
run_unlearning(args["method"], args["model"], args["data"], args["out"], evaluate=False, params=args["params"])
seconds = time.perf_counter() - started
events = [json.loads(line) for line in open(args["out"] + "/train_log.jsonl") if line.strip()]
loss = next(e for e in events if e.get("event") == "train")["loss"]
print(json.dumps({"peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "seconds": seconds,
                  "loss": loss}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--method", default="npo_gdr_klr")
    ap.add_argument("--preset", default="zjuklab_under")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    params = {"preset": args.preset, "finetune": "lora", "lora_r": 8, "lora_alpha": 16, "epochs": 1, "max_steps": 1,
              "per_device_batch_size": args.batch, "gradient_accumulation_steps": 1, "max_length": 256,
              "padding": "longest", "mask_prompt": False, "eval_every": 0}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for checkpointing in (False, True):
            spec = {"method": args.method, "model": args.model, "data": args.data,
                    "out": str(Path(tmp) / f"gc-{checkpointing}"),
                    "params": {**params, "gradient_checkpointing": checkpointing}}
            proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
            if proc.returncode != 0:
                sys.exit(proc.stderr[-3000:])
            results[checkpointing] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[checkpointing]
            print(f"gradient_checkpointing={checkpointing}: peak RSS {r['peak_gb']:.2f} GB, "
                  f"{r['seconds']:.1f} s, step-1 loss {r['loss']!r}", flush=True)
    off, on = results[False], results[True]
    print(f"peak memory with / without checkpointing: {on['peak_gb'] / off['peak_gb']:.2f}; "
          f"time: {on['seconds'] / off['seconds']:.2f}; same loss: {on['loss'] == off['loss']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
