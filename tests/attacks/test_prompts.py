"""The prompt attack's templates: shipped data with sources, user text inserted verbatim."""

from __future__ import annotations

import pytest

from harness.core.errors import AttackError
from harness.attacks.prompts import (
    PLACEHOLDER,
    TEMPLATES_FILE,
    get_template,
    load_templates,
    parse_templates,
    wrap_benchmark,
    wrap_prompts,
)
from harness.tasks.lume.data import benchmark_hash, load_benchmark


def test_shipped_templates_are_documented_and_well_formed():
    templates = load_templates()
    assert TEMPLATES_FILE.name == "prompt_templates.toml"
    assert {t.style for t in templates.values()} == {"paraphrase", "roleplay"}
    for kind in ("qa", "sc"):  # every record kind can be attacked by both styles
        assert {t.style for t in templates.values() if t.applies(kind)} == {"paraphrase", "roleplay"}
    for t in templates.values():
        assert t.text.count(PLACEHOLDER) == 1
        assert len(t.source) > 20 and t.note
    # the shipped file is package data
    from pathlib import Path

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "attacks/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["harness"]


def test_user_text_is_inserted_verbatim_never_rendered():
    t = get_template("qa_format")
    assert t.apply("Who?") == "Question: Who?\nAnswer:"
    hostile = "{prompt} {{ 7*7 }} {0} %s ${x} {% for x in y %}\\n"
    out = t.apply(hostile)
    assert out == "Question: " + hostile + "\nAnswer:"  # placeholder in the data is not re-expanded
    assert out.count("{prompt}") == 1
    with pytest.raises(AttackError, match="must be a string"):
        t.apply(None)  # type: ignore[arg-type]


def test_wrap_prompts_by_kind():
    t = get_template("qa_format")
    assert wrap_prompts(["q?", "Once upon"], ["qa", "sc"], t) == ["Question: q?\nAnswer:", "Once upon"]
    with pytest.raises(AttackError, match="2 prompts but 1 kinds"):
        wrap_prompts(["a", "b"], ["qa"], t)


def test_wrap_benchmark_changes_forget_prompts_and_the_hash(mini_benchmark):
    bench = load_benchmark(mini_benchmark)
    t = get_template("roleplay_archivist")
    wrapped = wrap_benchmark(bench, t)
    assert [r.input for r in wrapped.forget] == [t.apply(r.input) for r in bench.forget]
    assert [r.output for r in wrapped.forget] == [r.output for r in bench.forget]
    assert wrapped.retain == bench.retain and wrapped.members == bench.members
    # a new content hash: the evaluation cache cannot hand back the unwrapped generations
    assert wrapped.content_hash != bench.content_hash
    assert wrapped.content_hash == benchmark_hash(wrapped.forget, wrapped.retain, wrapped.members, wrapped.nonmembers)
    # a template for one kind leaves the other kind alone
    qa_only = wrap_benchmark(bench, get_template("qa_format"))
    for before, after in zip(bench.forget, qa_only.forget):
        assert (after.input != before.input) == (before.kind == "qa")


def test_wrap_benchmark_refuses_when_nothing_is_wrapped(mini_benchmark):
    bench = load_benchmark(mini_benchmark)
    import dataclasses

    no_qa = dataclasses.replace(bench, forget=tuple(r for r in bench.forget if r.kind == "sc"))
    with pytest.raises(AttackError, match="applies to qa records"):
        wrap_benchmark(no_qa, get_template("qa_format"))
    with pytest.raises(AttackError, match="unknown split"):
        wrap_benchmark(bench, get_template("qa_format"), splits=("test",))


def test_unknown_template_suggests_a_name():
    with pytest.raises(AttackError, match="Did you mean 'qa_format'"):
        get_template("qa_formt")


@pytest.mark.parametrize("entry,message", [
    ({"style": "paraphrase", "applies_to": ["qa"], "text": "no placeholder", "source": "s"}, "exactly once"),
    ({"style": "paraphrase", "applies_to": ["qa"], "text": "{prompt} {prompt}", "source": "s"}, "found 2"),
    ({"style": "jailbreak", "applies_to": ["qa"], "text": "{prompt}", "source": "s"}, "style must be"),
    ({"style": "paraphrase", "applies_to": ["xx"], "text": "{prompt}", "source": "s"}, "applies_to"),
    ({"style": "paraphrase", "applies_to": ["qa"], "text": "{prompt}", "source": ""}, "'source'"),
    ({"style": "paraphrase", "applies_to": ["qa"], "text": "{prompt}", "source": "s", "extra": 1}, "unknown field"),
])
def test_malformed_templates_are_refused(entry, message):
    with pytest.raises(AttackError, match=message):
        parse_templates({"bad": entry}, "my.toml")


def test_template_file_errors_name_the_file(tmp_path):
    with pytest.raises(AttackError, match="no such prompt-template file"):
        load_templates(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[x\n", encoding="utf-8")
    with pytest.raises(AttackError, match="broken.toml: not valid TOML"):
        load_templates(broken)
