"""``unlearnbench attack RUN --kind relearn|quantize|precision|prompt --out RUN_ATTACKED``."""

from __future__ import annotations

import argparse

from harness.cli.main import examples


def _group_size(value: str):
    if value in ("auto", "channel"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, 'channel' or 'auto', got {value!r}") from None


def _params(args: argparse.Namespace) -> dict:
    from harness.core.errors import AttackError
    from harness.training.runner import parse_overrides

    given = {"quantize": {"bits": args.bits, "group_size": args.group_size},
             "precision": {"dtype": args.dtype},
             "prompt": {"template": args.template},
             "relearn": {"source": args.source, "fraction": args.fraction, "seed": args.seed}}[args.kind]
    params = {k: v for k, v in given.items() if v is not None}
    extra = parse_overrides(args.set)
    if extra and args.kind != "relearn":
        raise AttackError(f"--set sets the relearning loop's settings; attack {args.kind} takes none")
    if extra:
        params["training"] = extra
    return params


def _attack(args: argparse.Namespace) -> int:
    from harness.attacks.run import AttackOptions, run_attack

    outcome = run_attack(args.run, args.kind, args.out, AttackOptions(
        params=_params(args), target=args.target, label=args.label, device=args.device,
        replicates=args.bootstrap, force=args.force, progress=not args.no_progress))
    result = outcome.result
    print(f"{result.label}: attack {outcome.attack_seconds:.1f}s; evaluation "
          + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items() if k != "attack"))
    if outcome.recovery:
        print("  recovered (0 = nothing, 1 = back to the target) [95% interval]:")
        for name, r in outcome.recovery.items():
            value = "n/a" if r.recovered is None else f"{r.recovered:+.3f}"
            ci = f" [{r.ci[0]:+.3f}, {r.ci[1]:+.3f}]" if r.ci else ""
            why = f"  ({r.reason})" if r.reason else ""
            print(f"    {name:<32} {value}{ci}{why}")
    print(f"wrote {outcome.run_dir / 'result.json'}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack", help="attack an unlearned run (relearn, quantize, precision, prompt) and measure what comes back",
        description="Load an evaluated run's model, apply one attack, evaluate it with the run's own settings into "
                    "--out (an ordinary run folder naming the attacked run as its parent). With --target (the "
                    "target model's evaluated run), also report how much of each forget metric's unlearning gap "
                    "the attack closes (recovered = (attacked - unlearned) / (target - unlearned)); see "
                    "docs/attacks.md.",
        epilog=examples(
            "unlearnbench attack runs/npo --kind quantize --bits 4 --target runs/target --out runs/npo+q4",
            "unlearnbench attack runs/npo --kind precision --dtype bfloat16 --target runs/target --out runs/npo+bf16",
            "unlearnbench attack runs/npo --kind prompt --template roleplay_archivist --target runs/target "
            "--out runs/npo+roleplay",
            "unlearnbench attack runs/npo --kind relearn --fraction 0.5 --set epochs=1 --target runs/target "
            "--out runs/npo+relearn"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="the evaluated run to attack (an unlearn/run/merge or evaluate run folder)")
    p.add_argument("--kind", required=True, choices=("relearn", "quantize", "precision", "prompt"))
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--target", metavar="RUN", default=None,
                   help="the target model's evaluated run: compute the recovery of every forget metric against it")
    p.add_argument("--label", default=None, help="display name (default: PARENT_LABEL+KIND-DETAIL)")
    p.add_argument("--device", default=None, help="default: the parent's device")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="replicates of the recovery intervals")
    p.add_argument("--force", action="store_true", help="redo a finished run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    q = p.add_argument_group("quantize")
    q.add_argument("--bits", type=int, default=None, help="8 or 4 (default 4; 2-8 accepted)")
    q.add_argument("--group-size", type=_group_size, default=None, metavar="N|channel|auto",
                   help="input columns per scale (default auto: per channel at 8 bits, 64 at 4 bits)")
    r = p.add_argument_group("precision")
    r.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    t = p.add_argument_group("prompt")
    t.add_argument("--template", default=None, help="template name (harness/attacks/prompt_templates.toml)")
    rl = p.add_argument_group("relearn")
    rl.add_argument("--source", choices=("forget", "retain"), default=None,
                    help="relearn on a fraction of the forget set (default; recovery on the held-out rest) or of "
                         "the retain set (related data)")
    rl.add_argument("--fraction", type=float, default=None, help="share of the source split (default 0.5)")
    rl.add_argument("--seed", type=int, default=None, help="draw of the relearn records and training seed (0)")
    rl.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="training-loop setting over the defaults (LoRA r128/alpha16, lr 2e-4, 3 epochs, batch 1)")
    p.set_defaults(func=_attack)
