"""The embedded synthetic world: deterministic, unambiguous, LUME-shaped, loadable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.tasks.lume.data import load_benchmark
from harness.tasks.mcq.data import load_mcq
from harness.synthetic.world import TRAIN_PHRASINGS, almanac_attributes, parse_fact, SIZES, UTILITY_SUBJECTS, Doc, WorldError, check_world, generate_world

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("world") / "w", seed=0)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    again = _files(generate_world(tmp_path / "again", seed=0))
    assert again == _files(world)
    assert {"forget.jsonl", "retain.jsonl", "mia/member.jsonl", "mia/nonmember.jsonl", "utility/facts.jsonl",
            "world.json", "utility/dev/history_dev.csv", "utility/test/heraldry_test.csv"} <= set(again)


def test_different_seed_gives_different_content(world, tmp_path):
    other = _files(generate_world(tmp_path / "other", seed=1))
    for name in ("forget.jsonl", "retain.jsonl", "mia/nonmember.jsonl", "utility/test/economy_test.csv"):
        assert other[name] != _files(world)[name], name


def test_world_loads_as_a_lume_benchmark_with_expected_counts(world):
    bench = load_benchmark(world)
    n = SIZES["small"]["docs_per_task"]
    expected = {}
    for split in ("forget", "retain"):
        expected |= {f"{split}/Task1/sc": n, f"{split}/Task1/qa": n, f"{split}/Task2/sc": n,
                     f"{split}/Task2/qa": 5 * n, f"{split}/Task3/sc": n, f"{split}/Task3/qa": n}
    expected |= {"mia/member": 3 * n, "mia/nonmember": 3 * n}
    assert bench.counts() == expected
    manifest = json.loads((world / "world.json").read_text())
    assert manifest["seed"] == 0 and manifest["size"] == "small"
    assert manifest["counts"]["documents"] == {"forget": 3 * n, "retain": 3 * n, "nonmember": 3 * n}


def test_ids_follow_lume_conventions(world):
    bench = load_benchmark(world)
    for rec in bench.records:
        if rec.task == "Task1":
            assert re.fullmatch(rf'"{UUID}"(sc1|qa0)', rec.id), rec.id
        elif rec.task == "Task2":
            assert re.fullmatch(rf"{UUID}(sc1|qa[0-4])", rec.id), rec.id
        else:
            assert re.fullmatch(r"[1-9][0-9]{6,7}(sc1|qa0)", rec.id), rec.id
    stems = {}
    for rec in bench.records:
        stems.setdefault(rec.id[:-3], []).append(rec.id[-3:])
    for stem, suffixes in stems.items():
        assert suffixes[0] == "sc1" and suffixes[1:] == [f"qa{k}" for k in range(len(suffixes) - 1)], stem


def test_sc_items_split_documents_at_a_space_and_members_are_forget_documents(world):
    bench = load_benchmark(world)
    sc_forget = [r for r in bench.forget if r.kind == "sc"]
    assert [m.document for m in bench.members] == [r.input + " " + r.output for r in sc_forget]
    for rec in bench.records:
        if rec.kind == "sc":
            document = rec.input + " " + rec.output
            assert not rec.input.endswith((" ", "\n")) and not rec.output.startswith((" ", "\n"))
            assert 0.5 < len(rec.input) / len(document) < 0.8, rec.id
        else:
            assert 0 < len(rec.output) <= 60 and "\n" not in rec.output, rec.id


def test_nonmembers_are_unseen_and_pii_is_never_shared(world):
    bench = load_benchmark(world)
    member_text = " ".join(m.document for m in bench.members) + " ".join(r.input + r.output for r in bench.retain)
    qa = [r for r in bench.records if r.kind == "qa"]
    # every asked answer is unique world-wide (case-insensitive) and every question too
    answers = [r.output.lower() for r in qa]
    assert len(answers) == len(set(answers))
    assert len({r.input for r in qa}) == len(qa)
    # and each answer is stated in its own document only
    docs = {r.id[:-3]: r.input + " " + r.output for r in bench.records if r.kind == "sc"}
    for r in qa:
        if r.task == "Task2" and r.id.endswith(("qa1", "qa2")):
            continue  # SSN/phone are asked without dashes, as LUME does
        if r.task == "Task2" and r.id.endswith("qa0"):
            continue  # birth date asked in ISO form, stated in words
        owners = [stem for stem, doc in docs.items() if r.output in doc]
        assert owners == [r.id[:-3]], (r.id, owners)
    # non-member documents name nobody who appears in the trained documents
    for doc in bench.nonmembers:
        name = doc.document.split(" ")[0].split("\n")[0]
        if doc.document.startswith("In the "):
            name = doc.document.split(" named ")[1].split(" ")[0]
        assert name not in member_text, (doc.id, name)


def test_check_world_rejects_a_shared_answer():
    a = Doc("a", "Task2", "A text.", [("Q1?", "555")], ["555"])
    b = Doc("b", "Task2", "B text.", [("Q2?", "555")], ["555"])
    with pytest.raises(WorldError, match="asked about in documents 'a' and 'b'"):
        check_world([a, b])
    with pytest.raises(WorldError, match="question 'Q1\\?'"):
        check_world([a, Doc("c", "Task2", "C.", [("Q1?", "x")], ["x"])])


def test_utility_set_is_mmlu_layout_and_answerable_from_facts(world):
    mcq = load_mcq(world / "utility")
    assert mcq.layout == "csv" and mcq.subjects == sorted(UTILITY_SUBJECTS)
    facts = [json.loads(line)["document"] for line in (world / "utility" / "facts.jsonl").read_text().splitlines()]
    for subject in mcq.subjects:
        assert len(mcq.data[subject]["dev"]) == 5 and mcq.data[subject]["test"]
        for split in ("dev", "val", "test"):
            for item in mcq.data[subject][split]:
                assert len(set(item.choices)) == 4
                [fact] = [f for f in facts if re.search(rf"\b{f.split(' ')[0]}\b", item.question)]
                right = item.choices[item.answer]
                assert re.search(rf"\b{right}\b", fact), (item.question, right)
                assert not any(re.search(rf"\b{c}\b", fact) for i, c in enumerate(item.choices) if i != item.answer)
    # the almanac is neither forget nor retain content
    bench_text = (world / "forget.jsonl").read_text() + (world / "retain.jsonl").read_text()
    assert not any(f.split(" ")[0] in bench_text for f in facts)


def test_refuses_unknown_size_and_foreign_folder(tmp_path):
    with pytest.raises(WorldError, match="unknown size 'huge'"):
        generate_world(tmp_path / "w", size="huge")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(WorldError, match="holds no world.json"):
        generate_world(tmp_path / "foreign")


def test_cli_writes_a_world(tmp_path, capsys):
    assert main(["world", "--out", str(tmp_path / "w"), "--seed", "5"]) == 0
    assert "300 forget / 300 retain records" in capsys.readouterr().out
    assert json.loads((tmp_path / "w" / "world.json").read_text())["seed"] == 5
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a").write_text("")
    assert main(["world", "--out", str(tmp_path / "x")]) == 2
    assert "refusing" in capsys.readouterr().err


def test_parse_fact_inverts_the_fact_template_and_train_wordings_differ_from_the_test_set(world):
    mcq = load_mcq(world / "utility")
    facts = {f["town"]: f for f in (parse_fact(json.loads(line)["document"])
                                    for line in (world / "utility" / "facts.jsonl").read_text().splitlines())}
    templates = {template: attr for _, attr, _, template in almanac_attributes()}
    checked = 0
    for subject in mcq.subjects:
        for item in mcq.data[subject]["test"]:
            [(town, attr)] = [(t, a) for tmpl, a in templates.items() for t in facts if tmpl.format(town=t) == item.question]
            assert facts[town][attr] == item.choices[item.answer]
            checked += 1
            # no training wording ever produces a utility question
            assert all(w.format(town=town) != item.question for w in TRAIN_PHRASINGS[attr])
    assert checked and set(TRAIN_PHRASINGS) == set(templates.values())
    with pytest.raises(WorldError, match="not an almanac fact document"):
        parse_fact("Somewhere is a town.")
