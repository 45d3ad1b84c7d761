"""The package layout's import rules (docs/contracts.md, "Layout"), checked on the source itself.

- the library never imports the CLI (``harness.cli`` imports the library, not the other way round);
- argparse lives only in ``harness/cli``;
- ``metrics/`` depends on the harness only through ``harness.core``;
- every error a user can fix derives from ``UnlearnbenchError``, which the CLI prints as one line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``path`` (lazy imports inside functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return out


def _library_modules() -> list[Path]:
    return [p for p in sorted((REPO / "harness").rglob("*.py"))
            if "cli" not in p.relative_to(REPO / "harness").parts and p.name != "__main__.py"]


def test_the_library_never_imports_the_cli():
    bad = [f"{p.relative_to(REPO)}:{line} imports {mod}" for p in _library_modules() + sorted(
        (REPO / "baselines").glob("*.py")) for line, mod in _imports(p) if mod.startswith("harness.cli")]
    assert not bad, "the import runs the wrong way:\n" + "\n".join(bad)


def test_argparse_lives_only_in_the_cli():
    bad = [f"{p.relative_to(REPO)}:{line}" for p in _library_modules() for line, mod in _imports(p)
           if mod.split(".")[0] == "argparse"]
    assert not bad, "argparse outside harness/cli:\n" + "\n".join(bad)


def test_metrics_import_only_harness_core():
    bad = [f"{p.relative_to(REPO)}:{line} imports {mod}" for p in sorted((REPO / "metrics").glob("*.py"))
           for line, mod in _imports(p) if mod.split(".")[0] == "harness" and not mod.startswith("harness.core.")]
    assert not bad, "metrics/ may import only harness.core:\n" + "\n".join(bad)


def test_core_never_imports_torch_or_the_rest_of_the_harness():
    for p in sorted((REPO / "harness" / "core").glob("*.py")):
        for line, mod in _imports(p):
            assert mod.split(".")[0] not in ("torch", "transformers"), f"{p.name}:{line} imports {mod}"
            assert not mod.startswith("harness.") or mod.startswith("harness.core."), f"{p.name}:{line} imports {mod}"


def test_user_errors_share_one_base_the_cli_prints_as_one_line(tmp_path, capsys):
    from harness.cli import main
    from harness.core import errors
    from harness.core.errors import UnlearnbenchError

    classes = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(cls, UnlearnbenchError) for cls in classes)
    # A library error (ConfigError from the runner: a --set without '=') is one line and exit 2.
    bench = tmp_path / "bench"
    bench.mkdir()
    rc = main(["unlearn", "--method", "npo", "--model", str(tmp_path), "--data", str(bench), "--out",
               str(tmp_path / "run"), "--set", "no_equals_sign"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--set expects key=value" in err


@pytest.mark.parametrize("name", ["UnlearningMethod", "Benchmark", "EvalResult", "EvalSettings", "evaluate_model",
                                  "load_benchmark", "load_model", "register_method", "UnlearnbenchError"])
def test_public_api_names(name):
    import harness

    assert getattr(harness, name) is not None and name in harness.__all__
