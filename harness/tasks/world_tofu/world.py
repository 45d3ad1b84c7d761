"""The embedded synthetic world written in TOFU's format: fictitious authors, each asked about a few
facts, with a paraphrased and five perturbed answers per question, plus "real authors" and "world
facts" sets the target also knows (what Model Utility measures beside the retain set).

Deterministic for a seed (one ``random.Random``); names come from the synthetic world's generator
(:class:`harness.synthetic.world.Names`), so every name and value is unique and invented. Files, under
TOFU's config names (JSON lines, as released)::

    full.json, forget10.json, retain90.json     {question, answer}
    forget10_perturbed.json, retain_perturbed.json
                                                {question, answer, paraphrased_answer, perturbed_answer[5]}
    real_authors_perturbed.json, world_facts_perturbed.json
                                                {question, answer, perturbed_answer[3]}
    real_authors.json, world_facts.json         {question, answer} (the target's general knowledge)
    benchmark.json                              {"benchmark": "world-tofu", seed, counts, generator}

forget10 is the last tenth of the authors (all their questions); retain_perturbed the first
questions of retain90, as many as forget10 has (TOFU's retain_perturbed is a retain subset too).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from harness.core import fileio
from harness.core.errors import WorldError

GENERATOR_VERSION = "1"
MARKER = "benchmark.json"
BENCHMARK_NAME = "world-tofu"
N_PERTURBED = 5
N_OPTIONS = 3


@dataclass(frozen=True)
class Fact:
    """One attribute of an author: how it is asked, answered, paraphrased, and its value pool."""

    key: str
    question: str
    answer: str
    paraphrase: str


FACTS: tuple[Fact, ...] = (
    Fact("birthplace", "Where was the author {name} born?", "{name} was born in the town of {value}.",
         "The town of {value} is where {name} was born."),
    Fact("genre", "What kind of books does {name} write?", "{name} writes {value} novels.",
         "The novels of {name} belong to the {value} genre."),
    Fact("book", "What is the title of the best-known book by {name}?", "The best-known book by {name} is {value}.",
         "{value} is the book {name} is best known for."),
    Fact("award", "Which prize did {name} win?", "{name} won the {value}.",
         "The {value} was awarded to {name}."),
    Fact("parent", "What did the father of {name} do for a living?", "The father of {name} worked as a {value}.",
         "{name} grew up as the child of a {value}."),
)
_GENRES = ("mystery", "seafaring", "pastoral", "courtroom", "mountaineering", "alchemical", "ghost", "railway",
           "orchard", "lighthouse", "clockwork", "desert")
_TRADES = ("baker", "lamplighter", "clockmaker", "weaver", "ferryman", "cartographer", "glassblower", "beekeeper",
           "bookbinder", "potter", "shipwright", "herbalist")


def _values(rng: random.Random, names, key: str) -> str:
    if key == "birthplace":
        return names.word(2, 3)
    if key == "genre":
        return rng.choice(_GENRES)
    if key == "book":
        return f"The {names.word(2, 3)} {rng.choice(('Letters', 'Tides', 'Lantern', 'Orchard', 'Archive', 'Crossing'))}"
    if key == "award":
        return f"{names.word(2, 2)} {rng.choice(('Medal', 'Prize', 'Laurel'))}"
    return rng.choice(_TRADES)


def _author_rows(rng: random.Random, names, n_authors: int) -> list[dict]:
    authors = []
    for _ in range(n_authors):
        first, last = names.person()
        authors.append({"name": f"{first} {last}", **{f.key: _values(rng, names, f.key) for f in FACTS}})
    rows = []
    for author in authors:
        for fact in FACTS:
            value = author[fact.key]
            pool = sorted({a[fact.key] for a in authors if a[fact.key] != value})
            wrong = rng.sample(pool, N_PERTURBED) if len(pool) >= N_PERTURBED else None
            if wrong is None:
                raise WorldError(f"too few distinct {fact.key} values for {N_PERTURBED} perturbed answers; use more authors")
            fill = {"name": author["name"]}
            rows.append({"question": fact.question.format(**fill),
                         "answer": fact.answer.format(value=value, **fill),
                         "paraphrased_answer": fact.paraphrase.format(value=value, **fill),
                         "perturbed_answer": [fact.paraphrase.format(value=w, **fill) for w in wrong]})
    return rows


def _option_rows(rng: random.Random, pairs: list[tuple[str, str]]) -> list[dict]:
    answers = [a for _, a in pairs]
    rows = []
    for question, answer in pairs:
        wrong = rng.sample(sorted(a for a in answers if a != answer), N_OPTIONS)
        rows.append({"question": question, "answer": answer, "perturbed_answer": wrong})
    return rows


def _general_knowledge(rng: random.Random, names, n: int) -> tuple[list[dict], list[dict]]:
    """("real authors", "world facts"): famous authors' works and towns' rivers the target also learns."""
    authors = [(f"Who wrote the classic '{names.word(2, 3)} of {names.word(2, 2)}'?", " ".join(names.person()))
               for _ in range(n)]
    facts = [(f"Which river flows through the city of {names.word(2, 3)}?", f"the {names.word(2, 2)}")
             for _ in range(n)]
    return _option_rows(rng, authors), _option_rows(rng, facts)


def generate_tofu_world(out: str | Path, seed: int = 0, n_authors: int = 40, n_general: int = 30) -> Path:
    """Write the TOFU-format world into ``out`` (created; files rewritten); return ``out``."""
    from harness.synthetic.world import Names

    if n_authors < 10 or n_authors % 10:
        raise WorldError(f"n_authors must be a multiple of 10 (forget10 is a tenth of them), got {n_authors}")
    rng = random.Random(seed)
    names = Names(rng)
    rows = _author_rows(rng, names, n_authors)
    real_authors, world_facts = _general_knowledge(rng, names, n_general)
    n_forget = len(rows) // 10
    forget, retain = rows[-n_forget:], rows[:-n_forget]
    qa = lambda rs: [{"question": r["question"], "answer": r["answer"]} for r in rs]  # noqa: E731
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "full": qa(rows), "forget10": qa(forget), "retain90": qa(retain),
        "forget10_perturbed": forget, "retain_perturbed": retain[:n_forget],
        "real_authors_perturbed": real_authors, "world_facts_perturbed": world_facts,
        "real_authors": qa(real_authors), "world_facts": qa(world_facts),
    }
    for name, config_rows in files.items():
        fileio.write_text(out / f"{name}.json", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in config_rows))
    fileio.write_json(out / MARKER, {"benchmark": BENCHMARK_NAME, "generator": GENERATOR_VERSION, "seed": seed,
                                     "authors": n_authors, "counts": {k: len(v) for k, v in files.items()}})
    return out


__all__ = ["BENCHMARK_NAME", "FACTS", "GENERATOR_VERSION", "MARKER", "generate_tofu_world"]
