"""``unlearnbench unlearn`` (one method, command-line settings) and ``unlearnbench run CONFIG``.

Both train with :func:`harness.training.runner.run_unlearning` and, unless ``--no-eval``, evaluate the
unlearned model in memory into the same run folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.main import examples
from harness.core.errors import UserError

#: Top-level keys of a ``run`` config file.
RUN_KEYS = {
    "method": "registered method name (required)",
    "model": "target model folder (required)",
    "data": "benchmark folder (required)",
    "benchmark": "registered benchmark the data holds (default: detected from the folder; lume for LUME files)",
    "out": "run folder (required)",
    "params": "table of hyperparameters (over the method's defaults and preset)",
    "eval": "table of evaluation options, named like `unlearnbench evaluate`'s (max_new_tokens, utility, mmlu, …)",
    "mia": "MIA folder (default DATA/mia)",
    "seed": "harness seed (default 0; a method's own `seed` parameter wins)",
    "device": "cpu, cuda, cuda:N or auto (default cpu)",
    "dtype": "float32, bfloat16 or float16 (default float32)",
    "label": "display name on leaderboards",
    "evaluate": "false to skip evaluation (default true)",
}


def _eval_namespace(overrides: dict[str, Any], source: str) -> argparse.Namespace:
    """The ``evaluate`` command's option defaults, with ``overrides`` (config keys) applied -- each
    value checked as its command-line option would check it (type and choices)."""
    from harness.cli.commands.evaluate import add_eval_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_eval_arguments(parser)
    ns = parser.parse_args([])
    actions = {a.dest: a for a in parser._actions}
    for key, value in overrides.items():
        attr = key.replace("-", "_")
        if attr in ("progress", "cache"):
            if not isinstance(value, bool):
                raise UserError(f"{source}: {key} = {value!r} is not allowed; expected true or false")
            setattr(ns, f"no_{attr}", not value)
            continue
        if not hasattr(ns, attr):
            valid = sorted(k for k in vars(ns) if not k.startswith("no_")) + ["cache", "progress"]
            raise UserError(f"{source}: unknown evaluation option {key!r}; valid: {', '.join(sorted(valid))}")
        setattr(ns, attr, _option_value(actions[attr], key, value, source))
    return ns


def _option_value(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """A config-file value for option ``action``, converted and checked like the command-line text."""
    kind = action.type
    if value is None:
        return None
    if isinstance(value, (bool, dict, list)) or (kind is not None and not isinstance(value, (str, int, float))):
        raise UserError(f"{source}: {key} = {value!r} is not allowed; expected {_expected(action)}")
    if kind is not None:
        try:
            value = kind(str(value))  # 4 -> "4" -> 4; "many" and 4.5 fail for an integer, as on the command line
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            raise UserError(f"{source}: {key} = {value!r} is not allowed; expected {_expected(action)}") from None
    if action.choices is not None and value not in action.choices:
        raise UserError(f"{source}: {key} = {value!r} is not allowed; expected {_expected(action)}")
    return value


def _expected(action: argparse.Action) -> str:
    if action.choices is not None:
        return "one of " + ", ".join(repr(c) for c in action.choices)
    return {int: "an integer", float: "a number"}.get(action.type, f"a value like --{action.dest.replace('_', '-')} "
                                                                   f"takes ({action.metavar or 'text'})")


def _print_outcome(outcome) -> None:
    from harness.backends.distributed import is_main_process
    from harness.cli.commands.evaluate import summary_lines

    if not is_main_process():
        return

    if outcome.skipped:
        print(f"{outcome.run_dir}: finished run with the same settings found; skipped (--force redoes it)")
    if outcome.result is not None:
        for line in summary_lines(outcome.result):
            print(line)
        print(f"wrote {outcome.run_dir / 'result.json'}")
    elif not outcome.skipped:
        print(f"unlearned in {outcome.unlearn_seconds:.1f}s; model saved to {outcome.run_dir / 'model'}")


def _unlearn(args: argparse.Namespace) -> int:
    from harness.training.runner import parse_overrides, read_config_file, run_unlearning
    from harness.cli.commands.evaluate import benchmark_options, maybe_relaunch, settings_from_args

    rc = maybe_relaunch(args)
    if rc is not None:
        return rc

    layers, names = [], []
    if args.preset:
        layers.append({"preset": args.preset})
        names.append("--preset")
    if args.config:
        cfg = read_config_file(args.config)
        # A `run` config's [params] table works here too; otherwise the whole file is parameters.
        layers.append(cfg["params"] if isinstance(cfg.get("params"), dict) else cfg)
        names.append(str(args.config))
    overrides = parse_overrides([item for group in args.set or [] for item in group])
    if overrides:
        layers.append(overrides)
        names.append("--set")
    settings = None if args.no_eval else settings_from_args(args)
    outcome = run_unlearning(
        args.method, args.model, args.data, args.out, param_layers=layers, layer_names=names,
        evaluate=not args.no_eval, eval_settings=settings, mia=args.mia, seed=args.seed, device=args.device,
        dtype=args.dtype, label=args.label, command="unlearn", force=args.force, progress=not args.no_progress,
        trust_remote_code=args.trust_remote_code, keep_model=False, benchmark=args.benchmark,
        benchmark_options=benchmark_options(args))
    _print_outcome(outcome)
    return 0


def _run(args: argparse.Namespace) -> int:
    from harness.training.runner import parse_overrides, read_config_file, run_unlearning
    from harness.cli.commands.evaluate import benchmark_options, settings_from_args

    cfg = read_config_file(args.config)
    unknown = sorted(set(cfg) - set(RUN_KEYS))
    if unknown:
        raise UserError(f"{args.config}: unknown key(s) {unknown}; valid: {', '.join(sorted(RUN_KEYS))}")
    missing = [k for k in ("method", "model", "data", "out") if k not in cfg]
    if missing:
        raise UserError(f"{args.config}: missing required key(s) {missing} (a run config names method, model, "
                        "data and out)")
    params = cfg.get("params") or {}
    if not isinstance(params, dict):
        raise UserError(f"{args.config}: 'params' must be a table of hyperparameters")
    eval_cfg = cfg.get("eval") or {}
    if not isinstance(eval_cfg, dict):
        raise UserError(f"{args.config}: 'eval' must be a table of evaluation options")
    from harness.core.params import validate_run_file

    validate_run_file(cfg, str(args.config))  # seed = "abc", evaluate = "no", dtype = "float8": one line each
    device, dtype = cfg.get("device", "cpu"), cfg.get("dtype", "float32")
    from harness.backends.distributed import launched_distributed, relaunch

    if args.num_processes > 1 and not launched_distributed():
        return relaunch(sys.argv[1:], args.num_processes, device)
    evaluate = cfg.get("evaluate", True) and not args.no_eval
    ns = _eval_namespace({"device": device, "dtype": dtype, **({"mia": cfg["mia"]} if cfg.get("mia") else {}),
                          **eval_cfg}, f"{args.config} [eval]")
    if args.no_progress:
        ns.no_progress = True
    settings = settings_from_args(ns) if evaluate else None
    layers, names = [params], [f"{args.config} [params]"]
    overrides = parse_overrides([item for group in args.set or [] for item in group])
    if overrides:
        layers.append(overrides)
        names.append("--set")
    outcome = run_unlearning(
        cfg["method"], cfg["model"], cfg["data"], args.out or cfg["out"], param_layers=layers, layer_names=names,
        evaluate=evaluate, eval_settings=settings, mia=ns.mia, seed=cfg.get("seed", 0), device=ns.device,
        dtype=ns.dtype, label=cfg.get("label"), command="run", force=args.force, progress=not ns.no_progress,
        config_file=str(Path(args.config).resolve()), keep_model=False,
        benchmark=args.benchmark or cfg.get("benchmark"), benchmark_options=benchmark_options(args))
    _print_outcome(outcome)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE",
                   help="override hyperparameters (values parsed as JSON/TOML literals, else strings); "
                        "repeatable")
    p.add_argument("--no-eval", action="store_true", help="only unlearn and save the model; no evaluation")
    p.add_argument("--force", action="store_true", help="redo a finished run in the same folder")
    from harness.cli.commands.evaluate import add_parallel_argument

    add_parallel_argument(p)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from harness.cli.commands.evaluate import add_benchmark_argument, add_eval_arguments

    p = sub.add_parser(
        "unlearn", help="unlearn a model with a registered method, then evaluate it (one run folder)",
        description="Hyperparameters come from the method's defaults, then its named preset (--preset, e.g. `demo`: "
                    "the settings `unlearnbench demo` uses), then --config, then --set, in that order; "
                    "`unlearnbench methods --params` lists them. The run "
                    "folder gets config.json, train_log.jsonl, model/ (LoRA: adapters) and, unless --no-eval, "
                    "result.json with the SemEval metrics.",
        epilog=examples(
            "unlearnbench unlearn --method npo --model runs/target/model --data world --out runs/npo",
            "unlearnbench unlearn --method grad_diff --model M --data D --out runs/gd --set learning_rate=5e-5 epochs=3",
            "unlearnbench unlearn --method npo --preset demo --model target --data world --out runs/npo",
            "unlearnbench unlearn --method npo_gdr_klr --preset zjuklab_over --model M --data D --out runs/over",
            "unlearnbench unlearn --method npo --set finetune=full --config npo.toml --model M --data D --out R --no-eval"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True, help="registered method (see `unlearnbench methods`)")
    p.add_argument("--model", required=True, metavar="PATH", help="target model folder (save_pretrained)")
    p.add_argument("--data", required=True, metavar="DIR", help="benchmark folder (LUME: forget/retain [+ mia/])")
    add_benchmark_argument(p)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--preset", metavar="NAME", help="the method's named parameter set (e.g. demo; same as --set "
                                                    "preset=NAME); `unlearnbench methods --params` lists them")
    p.add_argument("--config", metavar="FILE", help="hyperparameters from a TOML/YAML/JSON file (or its [params] table)")
    p.add_argument("--seed", type=int, default=0, help="harness seed (a method's own `seed` parameter wins; default 0)")
    p.add_argument("--label", default=None, help="display name on leaderboards (default: the method name)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code")
    _common(p)
    add_eval_arguments(p)
    p.set_defaults(func=_unlearn)

    p = sub.add_parser(
        "run", help="unlearn + evaluate from one config file (TOML or YAML)",
        description="A run config names method, model, data and out, with optional [params] (hyperparameters), "
                    "[eval] (options named like `unlearnbench evaluate`'s), seed, device, dtype, mia, label.\n\n"
                    "keys:\n" + "\n".join(f"  {k:<9} {v}" for k, v in RUN_KEYS.items()),
        epilog=examples("unlearnbench run configs/npo.toml",
                        "unlearnbench run configs/npo.yaml --set beta=0.05 --out runs/npo-b005"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG", help="run config (.toml, .yaml, .yml or .json)")
    p.add_argument("--out", default=None, metavar="RUN_DIR", help="override the config's out")
    add_benchmark_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _common(p)
    p.set_defaults(func=_run)
