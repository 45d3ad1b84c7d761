"""The prompt attack: the forget prompts wrapped in paraphrase-style and role-play templates.

The templates ship as data (``prompt_templates.toml`` beside this module, each with its source; see
docs/attacks.md). A record's prompt is inserted with one plain ``str.replace`` of the placeholder
``{prompt}``: user text is data, never rendered by a template engine, so a prompt that itself contains
``{prompt}``, braces or Jinja syntax is inserted unchanged and never re-scanned.

Only the prompt changes. The reference answer, the scoring and the answer loss (computed on the
wrapped prompt, with the usual one-space seam) stay the parent run's; a wrapped benchmark gets a new
content hash, so no cached generation of the unwrapped prompts can be reused for it.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.core.errors import AttackError

PLACEHOLDER = "{prompt}"
STYLES = ("paraphrase", "roleplay")
KINDS = ("qa", "sc")
TEMPLATES_FILE = Path(__file__).with_name("prompt_templates.toml")
_FIELDS = ("style", "applies_to", "text", "source", "note")


@dataclass(frozen=True)
class PromptTemplate:
    """One wrapper: ``text`` holds :data:`PLACEHOLDER` exactly once."""

    name: str
    style: str
    applies_to: tuple[str, ...]
    """Record kinds it wraps (``qa`` questions, ``sc`` sentence completions)."""
    text: str
    source: str
    note: str = ""

    def apply(self, prompt: str) -> str:
        """``text`` with the placeholder replaced by ``prompt`` verbatim (one plain replacement)."""
        if not isinstance(prompt, str):
            raise AttackError(f"prompt template {self.name!r}: the prompt must be a string, got {type(prompt).__name__}")
        return self.text.replace(PLACEHOLDER, prompt, 1)

    def applies(self, kind: str) -> bool:
        return kind in self.applies_to

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "style": self.style, "applies_to": list(self.applies_to), "text": self.text,
                "source": self.source, "note": self.note}


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise AttackError(f"{path}: no such prompt-template file") from None
    except tomllib.TOMLDecodeError as exc:
        raise AttackError(f"{path}: not valid TOML ({exc})") from exc


def parse_templates(data: Mapping[str, Any], origin: str = "<templates>") -> dict[str, PromptTemplate]:
    """Validate a mapping ``name -> {style, applies_to, text, source, note}`` into templates."""
    out: dict[str, PromptTemplate] = {}
    for name, entry in data.items():
        where = f"{origin}: template {name!r}"
        if not isinstance(entry, Mapping):
            raise AttackError(f"{where}: expected a table with fields {', '.join(_FIELDS)}")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise AttackError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(_FIELDS)}")
        for key in ("style", "text", "source"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise AttackError(f"{where}: field {key!r} must be a non-empty string")
        if entry["style"] not in STYLES:
            raise AttackError(f"{where}: style must be one of {', '.join(STYLES)}, got {entry['style']!r}")
        kinds = entry.get("applies_to")
        if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
            raise AttackError(f"{where}: applies_to must be a non-empty list of {', '.join(KINDS)}, got {kinds!r}")
        count = entry["text"].count(PLACEHOLDER)
        if count != 1:
            raise AttackError(f"{where}: text must contain the placeholder {PLACEHOLDER} exactly once, found {count}")
        note = entry.get("note", "")
        if not isinstance(note, str):
            raise AttackError(f"{where}: field 'note' must be a string")
        out[name] = PromptTemplate(name=name, style=entry["style"], applies_to=tuple(kinds), text=entry["text"],
                                   source=entry["source"].strip(), note=note.strip())
    if not out:
        raise AttackError(f"{origin}: no templates defined")
    return out


def load_templates(path: str | Path | None = None) -> dict[str, PromptTemplate]:
    """The shipped templates (or those of another TOML file in the same format), by name."""
    path = Path(path) if path is not None else TEMPLATES_FILE
    return parse_templates(_load_toml(path), str(path))


def get_template(name: str, templates: Mapping[str, PromptTemplate] | None = None) -> PromptTemplate:
    """The template called ``name``; an unknown name is answered with the valid choices."""
    templates = templates if templates is not None else load_templates()
    if name not in templates:
        close = difflib.get_close_matches(name, list(templates), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise AttackError(f"unknown prompt template {name!r}.{hint} Known: {', '.join(templates)}")
    return templates[name]


def wrap_prompts(prompts: Sequence[str], kinds: Sequence[str], template: PromptTemplate) -> list[str]:
    """Each prompt wrapped when the template applies to its record kind, else unchanged."""
    if len(prompts) != len(kinds):
        raise AttackError(f"wrap_prompts: {len(prompts)} prompts but {len(kinds)} kinds")
    return [template.apply(p) if template.applies(k) else p for p, k in zip(prompts, kinds)]


def wrap_benchmark(benchmark, template: PromptTemplate, splits: Iterable[str] = ("forget",)):
    """A copy of ``benchmark`` whose records in ``splits`` have their prompts wrapped (where the
    template applies to the record's kind), with a recomputed content hash. The MIA documents are
    not prompts and stay as they are. Raises :class:`AttackError` when no record is wrapped."""
    from harness.tasks.lume.data import benchmark_hash

    splits = tuple(splits)
    bad = [s for s in splits if s not in ("forget", "retain")]
    if bad:
        raise AttackError(f"wrap_benchmark: unknown split(s) {bad}; expected forget and/or retain")
    wrapped = 0

    def wrap(records):
        nonlocal wrapped
        out = []
        for rec in records:
            if rec.split in splits and template.applies(rec.kind):
                rec = dataclasses.replace(rec, input=template.apply(rec.input))
                wrapped += 1
            out.append(rec)
        return tuple(out)

    forget, retain = wrap(benchmark.forget), wrap(benchmark.retain)
    if not wrapped:
        raise AttackError(f"prompt template {template.name!r} applies to {'/'.join(template.applies_to)} records, and "
                          f"the {'/'.join(splits)} split(s) of {benchmark.name!r} have none")
    return dataclasses.replace(benchmark, forget=forget, retain=retain,
                               content_hash=benchmark_hash(forget, retain, benchmark.members, benchmark.nonmembers))


def wrap_task(task, template: PromptTemplate, splits: Iterable[str] = ("forget",)):
    """A registered benchmark (:class:`harness.tasks.base.BenchmarkTask`) over the wrapped records: the
    same class built on :func:`wrap_benchmark`'s data, so its requests, scoring and content hash follow
    the wrapped prompts. (A benchmark whose requests do not come from its ``data`` cannot be wrapped.)"""
    wrapped = type(task)(wrap_benchmark(task.data, template, splits))
    wrapped.name = task.name
    return wrapped


__all__ = ["PLACEHOLDER", "PromptTemplate", "load_templates", "parse_templates", "get_template", "wrap_prompts",
           "wrap_benchmark", "wrap_task", "TEMPLATES_FILE"]
