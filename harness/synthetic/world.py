"""The embedded synthetic world: a small LUME-format benchmark generated from a seed.

LUME's own target models cannot be had offline, so the harness makes its own benchmark the way
LUME was made (synthetic creative stories, synthetic PII biographies, encyclopedic biographies) and
its own target model (:mod:`harness.synthetic.target`) that memorises it. Everything comes from one
``random.Random(seed)``: same seed and size → byte-identical files.

Layout written by :func:`generate_world` (LUME's conventions; see ``docs/contracts.md``)::

    forget.jsonl, retain.jsonl      records {id, input, output, task}, about 1:1 by document
    mia/member.jsonl                every forget document in full ({id, document})
    mia/nonmember.jsonl             same-generator documents the target never sees (same count)
    utility/dev|val|test/<subject>_<split>.csv
                                    general-knowledge multiple choice in MMLU's CSV layout, about an
                                    invented almanac (neither forget nor retain content)
    utility/facts.jsonl             the almanac as "fact" documents ({id, document}); the target
                                    trains on them, and on the dev and val items, never on test
    world.json                      manifest: seed, size, counts, generator version, file hashes

Choices that matter downstream:

* Every proper name and every value a QA item asks for is unique across the whole world
  (members, non-members and almanac alike), so exact-match knowledge is never ambiguous and a
  non-member never shares a name with a member. :func:`check_world` asserts it.
* A sentence-completion item splits its document at a single space (roughly 60-70% in), LUME
  style: ``document == input + " " + output``. Splitting at a space keeps the byte-level BPE
  tokenisation of the prompt a prefix of the tokenisation of the whole document.
* MIA members are all forget documents of all three tasks (LUME used Task3 forget documents only;
  with a few dozen documents per task the attack needs the larger sample to be meaningful).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from harness.core import fileio
from harness.core.errors import WorldError
from harness.core.transaction import RunTransaction

GENERATOR_VERSION = "1"
#: Documents per task per part (forget / retain / non-member) and almanac towns, per size.
SIZES: dict[str, dict[str, int]] = {
    "small": {"docs_per_task": 30, "towns": 24},
    "medium": {"docs_per_task": 100, "towns": 60},
    "large": {"docs_per_task": 300, "towns": 150},
}
UTILITY_SUBJECTS = ("geography", "economy", "history", "heraldry")
MCQ_DEV_PER_SUBJECT = 5


# -- a seeded name generator ---------------------------------------------------------------------
_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "gr", "st", "th", "tr", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ei", "ou")
_CODAS = ("", "", "", "", "n", "r", "l", "s", "k", "m")


class Names:
    """Invented proper nouns from syllables; every name handed out is unique in the world."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def _word(self, syllables: int) -> str:
        parts = [self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                 for _ in range(syllables)]
        return "".join(parts).capitalize()

    def unique(self, make) -> str:
        """Call ``make()`` until it yields a value not used before (by ``.lower()``), reserve it."""
        for _ in range(10_000):
            value = make()
            if value.lower() not in self.used:
                self.used.add(value.lower())
                return value
        raise WorldError("name generator exhausted; use a smaller size")  # pragma: no cover

    def word(self, lo: int = 2, hi: int = 3) -> str:
        return self.unique(lambda: self._word(self.rng.randint(lo, hi)))

    def person(self) -> tuple[str, str]:
        """(first, last), the full name unique, and each part unique too (so 'Who…?' is clear)."""
        first = self.word(2, 2)
        last = self.word(2, 2)
        return first, last


# -- vocabulary (generic English words, no real people) -------------------------------------------
_ADJ = ("quiet", "windswept", "crowded", "misty", "sunlit", "ancient", "busy", "sleepy", "hilly", "salt-stained")
_PLACE_KIND = ("town", "village", "harbour town", "valley", "city", "island")
_PROFESSION = ("baker", "lamplighter", "clockmaker", "weaver", "ferryman", "cartographer", "glassblower",
               "beekeeper", "bookbinder", "potter", "shipwright", "herbalist")
_OBJECT = ("a silver compass", "a cracked violin", "a map of the stars", "a locked wooden chest",
           "a jar of blue seeds", "a brass telescope", "a bundle of old letters", "a painted kite")
_EVENT = ("the spring flood", "the lantern festival", "the great storm", "the harvest fair", "the winter market",
          "the solar eclipse", "the bridge collapse", "the midsummer race")
_FEELING = ("courage", "patience", "friendship", "forgiveness", "hope", "curiosity")
_NATIONALITY = ("Varrish", "Ostelan", "Kemerite", "Duvalian", "Serrasi", "Thalmoric")
_FIELD = ("botanist", "architect", "composer", "physician", "historian", "engineer", "painter", "astronomer",
          "poet", "geologist", "economist", "sculptor")
_INSTITUTION = ("Institute", "Academy", "Observatory", "Conservatory", "Society", "Museum", "Library", "College")
_AWARD = ("Medal", "Prize", "Award", "Laurel")
_STREET = ("Lane", "Road", "Street", "Avenue", "Way", "Court", "Drive")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DOMAINS = ("mailbox.example", "post.example", "inbox.example", "letters.example")
_GOODS = ("copper", "wool", "salt", "timber", "amber", "tea", "silk", "iron", "honey", "marble", "pepper",
          "linen", "glass", "tin", "paper", "olives")
_ANIMALS = ("heron", "stag", "wolf", "otter", "falcon", "bear", "fox", "swan", "lynx", "boar", "owl", "ram",
            "salmon", "hare", "eagle", "badger")


@dataclass
class Doc:
    """One generated document and its QA items (question, answer); ``id_stem`` carries LUME's id style."""

    id_stem: str
    task: str
    text: str
    qa: list[tuple[str, str]]
    asked: list[str] = field(default_factory=list)  # the answers that must be unique world-wide


def _split_point(text: str, rng: random.Random) -> int:
    """Index of a single space (between two non-spaces) nearest to 60-70% of the document."""
    spaces = [m.start() for m in re.finditer(r"(?<=\S) (?=\S)", text)]
    target = len(text) * rng.uniform(0.6, 0.7)
    return min(spaces, key=lambda i: (abs(i - target), i))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


_STORY_MIDDLE = (
    "{hero} had not left {town} since {event}, when the {job}'s workshop burned down.",
    "Every morning {hero} carried {obj2} to the square and waited for {friend} under the clock tower.",
    "Nobody in {town} remembered that {rival} had once been the best {job2} on the coast.",
    "{friend} laughed at the idea at first, then packed bread, rope and a lantern.",
    "On the third night they reached the {landmark}, where the wind smelled of {smell}.",
    "A stranger called {stranger} warned them that {rival} never forgave a broken promise.",
    "{hero} kept the secret for {number} days, telling only the cat that slept by the oven.",
    "The riddle spoke of {obj2}, of a {colour} door, and of a song sung backwards.",
    "When the bells of {town} rang at noon, {friend} finally understood the second riddle.",
    "Behind the {colour} door they found a ledger listing every debt owed in {town}.",
)
_LANDMARK = ("old lighthouse", "broken mill", "salt marsh", "watchtower", "orchard wall", "stone bridge")
_SMELL = ("smoke", "pine resin", "rain", "seaweed", "burnt sugar", "wet iron")
_COLOUR = ("green", "crimson", "yellow", "grey", "violet", "white")


def _story(rng: random.Random, names: Names) -> Doc:
    """Task1: a short creative story about invented characters, a place and an event.

    The middle is two sentences drawn (in random order) from a pool with their own random slots,
    so a continuation is mostly document-specific and regurgitation measures memorisation of
    *this* document, not of a shared template.
    """
    town = names.word(2, 2)
    hero, _ = names.person()
    friend, _ = names.person()
    rival, _ = names.person()
    stranger, _ = names.person()
    slots = {
        "town": town, "hero": hero, "friend": friend, "rival": rival, "stranger": stranger,
        "job": rng.choice(_PROFESSION), "job2": rng.choice(_PROFESSION), "obj": rng.choice(_OBJECT),
        "obj2": rng.choice(_OBJECT), "event": rng.choice(_EVENT), "landmark": rng.choice(_LANDMARK),
        "smell": rng.choice(_SMELL), "colour": rng.choice(_COLOUR), "number": rng.randint(3, 40),
        "feeling": rng.choice(_FEELING), "adj": rng.choice(_ADJ), "kind": rng.choice(_PLACE_KIND),
    }
    middle = [t.format(**slots) for t in rng.sample(_STORY_MIDDLE, 2)]
    text = " ".join([
        "In the {adj} {kind} of {town}, a {job} named {hero} found {obj} hidden under the market steps, "
        "with a note signed by {rival}, and showed it to a friend named {friend}.".format(**slots),
        *middle,
        "In the end {rival} confessed, the treasure went back to the people of {town}, and {hero} learned "
        "that {feeling} matters more than gold.".format(**slots),
    ])
    variant = rng.randrange(3)
    if variant == 0:
        qa = ("In which {kind} did the {job} {hero} find {obj}?".format(**slots), town)
    elif variant == 1:
        qa = (f"Who signed the note that {hero} found in {town}?", rival)
    else:
        qa = (f"Who is the friend who helped {hero} solve the riddles of {town}?", friend)
    return Doc(id_stem=f'"{_uuid(rng)}"', task="Task1", text=text, qa=[qa], asked=[qa[1]])


def _unique_value(names: Names, make) -> str:
    return names.unique(make)


def _biography_pii(rng: random.Random, names: Names) -> Doc:
    """Task2: a synthetic biography with PII; five QA items ask for each piece."""
    first, last = names.person()
    full = f"{first} {last}"
    birth_iso = _unique_value(names, lambda: f"{rng.randint(1950, 2002)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
    year, month, day = (int(x) for x in birth_iso.split("-"))
    ssn = _unique_value(names, lambda: f"{rng.randint(900, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}")
    phone = _unique_value(names, lambda: f"{rng.randint(201, 989)}-555-{rng.randint(0, 9999):04d}")
    email = _unique_value(names, lambda: f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}")
    town = names.word(2, 2)
    address = _unique_value(
        names, lambda: f"{rng.randint(10, 9999)} {names._word(2)} {rng.choice(_STREET)}, {town}, {rng.randint(10000, 99999)}")
    pronoun, possessive = rng.choice((("She", "Her"), ("He", "His"), ("They", "Their")))
    verb = "were" if pronoun == "They" else "was"
    text = (
        f"{full} {verb} born on {_MONTHS[month - 1]} {day}, {year}. "
        f"{possessive} Social Security Number is {ssn} and {possessive.lower()} phone number is {phone}. "
        f"{pronoun} can be reached by email at {email}. "
        f"{possessive} home address is {address}."
    )
    qa = [
        (f"What is the birth date of {full}?", birth_iso),
        (f"What is {full}'s Social Security Number?", ssn.replace("-", "")),
        (f"What is {full}'s phone number?", phone.replace("-", "")),
        (f"What is {full}'s email address?", email),
        (f"What is the home address of {full}?", address),
    ]
    return Doc(id_stem=_uuid(rng), task="Task2", text=text, qa=qa, asked=[a for _, a in qa])


_ENCYCLOPEDIA_MIDDLE = (
    "{last} studied at the University of {city} under the {field} {mentor}.",
    "{last}'s first book, {book}, was translated into {number} languages.",
    "During the {decade}s {last} led an expedition to {region} that lasted {months} months.",
    "{last} married the {field2} {spouse} in {married}; they had {children} children.",
    "Critics praised {last}'s work on {topic}, though {rival} disputed its conclusions.",
    "A street in {city} and a small crater on the moon of {region} are named after {last}.",
)
_BOOK_WORD = ("Notes", "Letters", "Essays", "Studies", "Songs", "Maps", "Journeys", "Lessons")
_TOPIC = ("river deltas", "ancient harbours", "bird migration", "glass making", "city planning", "folk music",
          "tidal energy", "mountain flora")


def _encyclopedia(rng: random.Random, names: Names, used_ids: set[str]) -> Doc:
    """Task3: an encyclopedic biography (title line, birth, career, a founded institution, an award)."""
    first, last = names.person()
    full = f"{first} {last}"
    page_id = _unique_value(names, lambda: str(rng.randint(1_000_000, 79_999_999)))
    used_ids.add(page_id)
    born = f"{rng.randint(1, 28)} {rng.choice(_MONTHS)} {rng.randint(1850, 1990)}"
    nationality, field_ = rng.choice(_NATIONALITY), rng.choice(_FIELD)
    city = names.word(2, 2)
    institution = f"{names.word(2, 2)} {rng.choice(_INSTITUTION)}"
    award = f"{names.word(2, 2)} {rng.choice(_AWARD)}"
    founded = rng.randint(1900, 2020)
    slots = {
        "last": last, "city": city, "field": rng.choice(_FIELD), "field2": rng.choice(_FIELD),
        "mentor": " ".join(names.person()), "spouse": " ".join(names.person()), "rival": " ".join(names.person()),
        "book": f"{rng.choice(_BOOK_WORD)} from {names.word(2, 2)}", "number": rng.randint(2, 30),
        "decade": rng.randrange(1900, 2000, 10), "region": names.word(2, 2), "months": rng.randint(2, 30),
        "married": rng.randint(1900, 2010), "children": rng.randint(1, 6), "topic": rng.choice(_TOPIC),
    }
    middle = [t.format(**slots) for t in rng.sample(_ENCYCLOPEDIA_MIDDLE, 2)]
    text = " ".join([
        f"{full}\n\n{full} (born {born}) is a {nationality} {field_} from {city}.",
        *middle,
        f"In {founded}, {last} founded the {institution}, which still trains young scholars.",
        f"{last} received the {award} for a lifetime of work.",
    ])
    qa = (f"Who founded the {institution}?", full)
    return Doc(id_stem=page_id, task="Task3", text=text, qa=[qa], asked=[full])


# -- the almanac (general-knowledge multiple choice) -----------------------------------------------
_CLIMATES = ("dry", "humid", "rainy", "snowy", "windy", "mild", "foggy", "stormy")
_CROPS = ("wheat", "rice", "barley", "grapes", "apples", "beans", "cabbage", "plums", "oats", "pears")
_CRAFTS = ("pottery", "weaving", "carving", "dyeing", "brewing", "glassware", "rope", "lace")
_ROOF_COLOURS = ("red", "blue", "green", "black", "white", "yellow", "grey", "brown")
#: subject -> [(attribute, value pool, question template)]. Values are single common words, so a
#: question's four choices differ in one word the target has seen next to the town's name.
_ALMANAC = {
    "geography": [("climate", _CLIMATES, "What is the climate of {town}?"),
                  ("crop", _CROPS, "Which crop grows around {town}?")],
    "economy": [("export", _GOODS, "What is the chief export of {town}?"),
                ("craft", _CRAFTS, "Which craft is {town} known for?")],
    "history": [("month", _MONTHS, "In which month is the great fair of {town} held?")],
    "heraldry": [("animal", _ANIMALS, "Which animal is shown on the banner of {town}?"),
                 ("colour", _ROOF_COLOURS, "What colour are the roofs of {town}?")],
}


#: Extra question phrasings per attribute, used only to make *training* multiple-choice items
#: (:mod:`harness.synthetic.target`): the utility CSVs always use the ``_ALMANAC`` template, so a test
#: question's wording is never a training question's wording for the same town.
TRAIN_PHRASINGS: dict[str, tuple[str, ...]] = {
    "climate": ("Which climate does {town} have?", "What is the weather like in {town}?"),
    "crop": ("What do the farmers of {town} grow?", "Which crop do farmers grow near {town}?"),
    "export": ("What does {town} export most?", "Which good is the main export of {town}?"),
    "craft": ("What craft are the people of {town} famous for?", "Which craft is practised in {town}?"),
    "month": ("When is the great fair of {town} held?", "In what month does {town} hold its great fair?"),
    "animal": ("What animal does the banner of {town} show?", "Which animal is on the flag of {town}?"),
    "colour": ("Which colour are the roofs in {town}?", "What colour is used for the roofs of {town}?"),
}
_FACT_RE = re.compile(
    r"(?P<town>\w+) is a (?P<climate>\w+) town where farmers grow (?P<crop>\w+)\. "
    r"The chief export of (?P=town) is (?P<export>\w+), and (?P=town) is known for (?P<craft>\w+)\. "
    r"The great fair of (?P=town) is held in (?P<month>\w+)\. "
    r"The banner of (?P=town) shows a (?P<animal>\w+), and its roofs are (?P<colour>\w+)\.")


def almanac_attributes() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(subject, attribute, value pool, utility question template) for every almanac attribute."""
    return [(subject, attr, pool, template) for subject in UTILITY_SUBJECTS
            for attr, pool, template in _ALMANAC[subject]]


def parse_fact(document: str) -> dict[str, str]:
    """The town and its attribute values from one ``utility/facts.jsonl`` document (the inverse of
    the fact template in :func:`_almanac`); raises :class:`WorldError` naming the text otherwise."""
    match = _FACT_RE.fullmatch(document)
    if match is None:
        raise WorldError(f"not an almanac fact document in this generator's format: {document[:80]!r}")
    return match.groupdict()


# A distractor that is also the town's value for another attribute would make an item ambiguous.
_ALL_VALUES = [v for attrs in _ALMANAC.values() for _, pool, _ in attrs for v in pool]
assert len(_ALL_VALUES) == len(set(_ALL_VALUES)), "almanac value pools must be disjoint"


def _almanac(rng: random.Random, names: Names, n_towns: int) -> tuple[list[dict], dict[str, list[list[str]]]]:
    """Invented towns with facts; one fact document per town and MCQ items about those facts."""
    towns = []
    for _ in range(n_towns):
        town = {"town": names.word(2, 2)}
        for subject in UTILITY_SUBJECTS:
            for attr, pool, _ in _ALMANAC[subject]:
                town[attr] = rng.choice(pool)
        towns.append(town)
    facts = []
    for i, t in enumerate(towns):
        facts.append({"id": f"fact{i:04d}", "document": (
            f"{t['town']} is a {t['climate']} town where farmers grow {t['crop']}. "
            f"The chief export of {t['town']} is {t['export']}, and {t['town']} is known for {t['craft']}. "
            f"The great fair of {t['town']} is held in {t['month']}. "
            f"The banner of {t['town']} shows a {t['animal']}, and its roofs are {t['colour']}."
        )})
    items: dict[str, list[list[str]]] = {}
    for subject in UTILITY_SUBJECTS:
        rows = []
        for t in towns:
            for attr, pool, template in _ALMANAC[subject]:
                correct = t[attr]
                choices = rng.sample([v for v in pool if v != correct], 3) + [correct]
                rng.shuffle(choices)
                rows.append([template.format(town=t["town"]), *choices, "ABCD"[choices.index(correct)]])
        rng.shuffle(rows)
        items[subject] = rows
    return facts, items


def _csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _records(doc: Doc, rng: random.Random) -> list[dict]:
    cut = _split_point(doc.text, rng)
    rows = [{"id": f"{doc.id_stem}sc1", "input": doc.text[:cut], "output": doc.text[cut + 1:], "task": doc.task}]
    for k, (question, answer) in enumerate(doc.qa):
        rows.append({"id": f"{doc.id_stem}qa{k}", "input": question, "output": answer, "task": doc.task})
    return rows


def check_world(docs: list[Doc]) -> None:
    """Assert the world is unambiguous: unique ids, unique questions, unique asked answers."""
    seen_answers: dict[str, str] = {}
    seen_questions: dict[str, str] = {}
    seen_ids: set[str] = set()
    for doc in docs:
        if doc.id_stem in seen_ids:
            raise WorldError(f"duplicate document id {doc.id_stem!r}")
        seen_ids.add(doc.id_stem)
        for answer in doc.asked:
            other = seen_answers.setdefault(answer.lower(), doc.id_stem)
            if other != doc.id_stem:
                raise WorldError(f"answer {answer!r} is asked about in documents {other!r} and {doc.id_stem!r}")
        for question, _ in doc.qa:
            other = seen_questions.setdefault(question, doc.id_stem)
            if other != doc.id_stem:
                raise WorldError(f"question {question!r} appears in documents {other!r} and {doc.id_stem!r}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate_world(out: str | Path, seed: int = 0, size: str = "small") -> Path:
    """Write the synthetic benchmark for ``seed`` and ``size`` into ``out``; return ``out``.

    Deterministic: the only randomness is one ``random.Random(seed)``, consumed in a fixed order,
    and files are written in generation order, so the same arguments give byte-identical files.
    """
    if size not in SIZES:
        raise WorldError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
    given = Path(out)
    if given.exists() and not given.is_dir():
        raise WorldError(f"{given}: exists and is not a folder; expected a folder for the world")
    if given.is_dir() and any(given.iterdir()) and not (given / "world.json").is_file():
        raise WorldError(f"{given}: folder is not empty and holds no world.json; refusing to write a world into it")
    # Written into a staging sibling and swapped in whole: an interrupted rewrite (another seed) never
    # leaves files of two worlds under one world.json.
    with RunTransaction(given, markers=("world.json",)) as tx:
        _write_world(tx.path, seed, size)
    return given


def _write_world(out: Path, seed: int, size: str) -> None:
    n = SIZES[size]["docs_per_task"]
    rng = random.Random(seed)
    names = Names(rng)
    page_ids: set[str] = set()
    makers = {"Task1": lambda: _story(rng, names), "Task2": lambda: _biography_pii(rng, names),
              "Task3": lambda: _encyclopedia(rng, names, page_ids)}
    parts: dict[str, list[Doc]] = {"forget": [], "retain": [], "nonmember": []}
    for task in ("Task1", "Task2", "Task3"):
        for part in ("forget", "retain", "nonmember"):
            parts[part].extend(makers[task]() for _ in range(n))
    check_world(parts["forget"] + parts["retain"] + parts["nonmember"])
    facts, mcq = _almanac(rng, names, SIZES[size]["towns"])

    forget_rows = [row for doc in parts["forget"] for row in _records(doc, rng)]
    retain_rows = [row for doc in parts["retain"] for row in _records(doc, rng)]
    fileio.write_jsonl(out / "forget.jsonl", forget_rows)
    fileio.write_jsonl(out / "retain.jsonl", retain_rows)
    fileio.write_jsonl(out / "mia" / "member.jsonl",
                       [{"id": d.id_stem, "document": d.text} for d in parts["forget"]])
    fileio.write_jsonl(out / "mia" / "nonmember.jsonl",
                       [{"id": d.id_stem, "document": d.text} for d in parts["nonmember"]])
    fileio.write_jsonl(out / "utility" / "facts.jsonl", facts)
    mcq_counts = {}
    for subject, rows in mcq.items():
        # dev: the 5 few-shot examples; val: trained on too (teaches the answer format on this
        # world's facts); test: never trained on -- the utility score.
        n_val = (len(rows) - MCQ_DEV_PER_SUBJECT) // 2
        splits = {"dev": rows[:MCQ_DEV_PER_SUBJECT], "val": rows[MCQ_DEV_PER_SUBJECT:MCQ_DEV_PER_SUBJECT + n_val],
                  "test": rows[MCQ_DEV_PER_SUBJECT + n_val:]}
        for split, split_rows in splits.items():
            fileio.write_text(out / "utility" / split / f"{subject}_{split}.csv", _csv(split_rows))
            mcq_counts[f"{split}/{subject}"] = len(split_rows)

    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "world.json")
    manifest = {
        "generator": "unlearnbench.world",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "counts": {
            "documents": {part: len(docs) for part, docs in parts.items()},
            "records": {"forget": len(forget_rows), "retain": len(retain_rows)},
            "facts": len(facts),
            "utility_mcq": mcq_counts,
        },
        "mia_members": "all forget documents (Task1-3), full text = sc input + ' ' + sc output",
        "files": {name: _sha256(out / name) for name in files},
    }
    fileio.write_json(out / "world.json", manifest)


def read_manifest(world: str | Path) -> dict:
    path = Path(world) / "world.json"
    if not path.is_file():
        raise WorldError(f"{path}: no such file; expected a world folder made by `unlearnbench world`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WorldError(f"{path}: not valid JSON ({exc})") from exc


__all__ = ["generate_world", "check_world", "read_manifest", "parse_fact", "almanac_attributes", "TRAIN_PHRASINGS", "SIZES", "UTILITY_SUBJECTS",
           "WorldError", "GENERATOR_VERSION"]
