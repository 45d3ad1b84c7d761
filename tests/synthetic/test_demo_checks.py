"""The demo refuses a plan that cannot finish before it trains anything (the audit's demo cases)."""

from __future__ import annotations

import pytest

from harness.cli.main import main


@pytest.mark.parametrize("args, expected", [
    (["--methods", "npo,foo"], "foo"),
    (["--bootstrap", "-5"], "--bootstrap must be a whole number >= 0"),
    (["--jobs", "0"], "--jobs must be at least 1"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, args, expected):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *args]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()  # no world, no target: nothing was started


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "demo"
    out.write_text("keep me")
    assert main(["demo", "--out", str(out)]) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert out.read_text() == "keep me"
