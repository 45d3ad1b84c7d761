"""Writes ``tests/data/olmo_decode_445.json``: how transformers 4.45.2, the organisers' version, decoded
token ids with the SemEval models' tokenizer (``tests/test_olmo_tokenizer.py`` checks the harness
against it).

Two steps, because the two transformers versions cannot share one environment:

1. In this project's environment (transformers 5), make the token-id sequences: hand-built ones
   around the clean-up and the PII placeholders, and the greedy generations of a small random
   OLMo-architecture model (``harness.synthetic.tiny.tiny_olmo``) on real LUME records::

       python tests/data/make_olmo_decode_445.py ids --assets ASSETS --lume ../shared/lume --out /tmp/ids.json

2. With transformers 4.45.2 and tokenizers 0.20.3 (what transformers 4.45.2 pins) installed apart::

       pip install --no-deps --target /tmp/t445 transformers==4.45.2 tokenizers==0.20.3 huggingface_hub==0.25.2
       PYTHONPATH=/tmp/t445 python tests/data/make_olmo_decode_445.py decode --assets ASSETS \\
           --lume ../shared/lume --ids /tmp/ids.json --out tests/data/olmo_decode_445.json

   Each sequence gets ``tokenizer.decode(ids, skip_special_tokens=True,
   clean_up_tokenization_spaces=True)`` (the organisers' call), the same without the clean-up, and
   the same with the PII placeholders registered as special tokens (what would be lost). The
   sha256 of the ids of every LUME text, tokenised by 4.45, is stored too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

PLACEHOLDERS = ["|||IP_ADDRESS|||", "|||EMAIL_ADDRESS|||", "|||PHONE_NUMBER|||"]
#: Texts whose tokens the random model is made to favour (each token of each text).
FAVOURED_TEXTS = [" ,", " .", " ?", " !", " n't", " 's", " 'm", " 've", " 're", " '", " the", " and", "  ", " "]
MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "seed": 0, "favour": 3.0}
MAX_NEW_TOKENS = 32
PER_GROUP = 2  # records per (split, task, kind)


def lume_texts(lume: Path) -> list[str]:
    """Every input and output of both LUME files, in file order (what the encoding hash covers)."""
    texts = []
    for split in ("forget", "retain"):
        for line in (lume / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row["input"], row["output"]]
    return texts


def encoding_hash(tokenizer, texts: list[str]) -> str:
    h = hashlib.sha256()
    for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
        h.update(json.dumps(list(ids)).encode() + b"\n")
    return h.hexdigest()


def constructed(tok) -> list[dict]:
    """Hand-built id sequences: each shows one thing the organisers' decoding did."""
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    ph = {p: tok.convert_tokens_to_ids(p) for p in PLACEHOLDERS}
    eos, pad = tok.eos_token_id, tok.pad_token_id
    space = ids(" ")[0]
    many_spaces = tok.convert_tokens_to_ids(" " * 8)
    cases = {
        "cleanup: space before punctuation": ids("Hello , world . Is it ? Yes !"),
        "cleanup: contractions": ids("I do n't think I 'm sure it 's what we 've seen , they 're done"),
        "cleanup: quote between spaces": ids("the word ' quoted ' here"),
        "cleanup: order (' ' before 's)": ids("John ' s dog"),
        "cleanup: double space before a period keeps one": ids("a  . b"),
        "placeholders as text": ids("Write to") + [space, ph["|||EMAIL_ADDRESS|||"]] + ids(" or call")
        + [space, ph["|||PHONE_NUMBER|||"]] + ids(" from") + [space, ph["|||IP_ADDRESS|||"]] + ids(" ."),
        "placeholders next to each other and punctuation": [ph["|||PHONE_NUMBER|||"], ph["|||EMAIL_ADDRESS|||"]]
        + ids(" ,") + [ph["|||IP_ADDRESS|||"]] + ids(" ?"),
        "placeholder id 0 alone": [ph["|||IP_ADDRESS|||"]],
        "special tokens inside are skipped": ids("Done") + [eos] + ids(" .") + [pad, pad] + ids(" next ,"),
        "only special tokens": [eos, pad, eos],
        "empty": [],
        "whitespace-run token before a period": [many_spaces] + ids("."),
        "leading space kept": ids(" The answer is 42 ."),
        "ids past the tokenizer (embedding padding rows)": ids("x") + [50290, 50303] + ids(" ,"),
        "a lone UTF-8 lead byte": ids("caf") + [tok.convert_tokens_to_ids("Ã")] + ids(" ."),
        "newlines and punctuation": ids("Line one .\n\nLine two ,\n ' quoted '"),
    }
    return [{"name": name, "ids": [int(i) for i in seq]} for name, seq in cases.items()]


def stratified_records(lume: Path) -> list[dict]:
    """The first ``PER_GROUP`` records of each (split, task, kind), in file order."""
    out, seen = [], {}
    for split in ("forget", "retain"):
        for line in (lume / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            kind = "qa" if row["id"][:-1].endswith("qa") else "sc"
            key = (split, row["task"], kind)
            if seen.get(key, 0) < PER_GROUP:
                seen[key] = seen.get(key, 0) + 1
                out.append({"split": split, "id": row["id"], "input": row["input"]})
    return out


def favoured_ids(tok) -> list[int]:
    ids = {i for t in FAVOURED_TEXTS for i in tok(t, add_special_tokens=False)["input_ids"]}
    ids |= {tok.convert_tokens_to_ids(p) for p in PLACEHOLDERS} | {tok.eos_token_id, tok.convert_tokens_to_ids(" " * 8)}
    return sorted(ids)


def make_ids(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from transformers import AutoTokenizer

    from harness.backends.reference import generate_reference
    from harness.synthetic.tiny import tiny_olmo

    tok = AutoTokenizer.from_pretrained(str(Path(args.assets) / "olmo-tokenizer"))
    model = tiny_olmo(tok, hidden_size=MODEL["hidden_size"], num_layers=MODEL["num_layers"],
                      num_heads=MODEL["num_heads"], seed=MODEL["seed"], favoured_tokens=favoured_ids(tok),
                      favour=MODEL["favour"])
    records = stratified_records(Path(args.lume))
    # The organisers' loop (model.generate, one record at a time): the ids their run would decode.
    out = generate_reference(model, tok, [r["input"] for r in records], max_new_tokens=MAX_NEW_TOKENS,
                             cleanup="plain", progress=False)
    generations = [{"split": r["split"], "record_id": r["id"], "ids": ids} for r, ids in zip(records, out.token_ids)]
    Path(args.out).write_text(json.dumps({"constructed": constructed(tok), "generations": generations,
                                          "favoured_ids": favoured_ids(tok)}))


def decode(args) -> None:
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    folder = str(Path(args.assets) / "olmo-tokenizer")
    tok = AutoTokenizer.from_pretrained(folder)
    with_special = AutoTokenizer.from_pretrained(folder)
    with_special.add_special_tokens({"additional_special_tokens": PLACEHOLDERS})
    data = json.loads(Path(args.ids).read_text())

    def entry(item: dict) -> dict:
        ids = item["ids"]
        return {**item,
                "text_445": tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True),
                "raw_445": tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False),
                "placeholders_special_445": with_special.decode(ids, skip_special_tokens=True,
                                                                clean_up_tokenization_spaces=True)}

    fixture = {
        "made_with": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                      "tokenizer_class": type(tok).__name__,
                      "call": "decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)"},
        "model": {**MODEL, "max_new_tokens": MAX_NEW_TOKENS, "favoured_ids": data["favoured_ids"],
                  "per_group": PER_GROUP},
        "lume_encoding_sha256": encoding_hash(tok, lume_texts(Path(args.lume))),
        "constructed": [entry(c) for c in data["constructed"]],
        "generations": [entry(g) for g in data["generations"]],
    }
    Path(args.out).write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("ids", "decode"))
    parser.add_argument("--assets", required=True, help="the folder `unlearnbench assets` wrote")
    parser.add_argument("--lume", required=True, help="the LUME folder (forget.jsonl, retain.jsonl)")
    parser.add_argument("--ids", help="step 2: the file step 1 wrote")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    (make_ids if args.step == "ids" else decode)(args)


if __name__ == "__main__":
    main()
