"""Loading models for evaluation, and the weight hash that identifies them.

``load_model`` takes a local folder (``save_pretrained`` output, or a LoRA adapter folder holding
``adapter_config.json``, which is loaded onto its base model and merged), a ``.gguf`` file (llama.cpp's
format, dequantised into a plain transformers model; needs the ``gguf`` package) or a hub name, which
``from_pretrained`` resolves (from the local cache when offline). ``weight_hash`` is the content
identity used by result records and the evaluation cache: two models with the same hash compute the
same function.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from harness.core.records import ModelInfo

log = logging.getLogger("unlearnbench.models")

DTYPES = ("float32", "bfloat16", "float16", "auto")


def torch_dtype(name: str):
    """``"bfloat16"`` → ``torch.bfloat16`` (``"auto"`` is passed through for ``from_pretrained``)."""
    import torch

    if name == "auto":
        return "auto"
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    name = aliases.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {list(DTYPES)}")
    return getattr(torch, name)


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` → ``cuda`` when available, else ``cpu``; anything else is validated by torch."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r} ({exc}); expected cpu, cuda, cuda:N or mps") from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch reports no CUDA device; use --device cpu")
    return device


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") != 1


def _load_tokenizer(source: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    # The organisers generate with pad_token_id = eos_token_id; padding only ever pads, never scores.
    return _with_pad(tok)


def _load_gguf(path: Path, tdtype, trust_remote_code: bool):
    """``(model, tokenizer)`` from a ``.gguf`` file: every weight dequantised into ``tdtype`` (float32 by
    default), as a plain model (no quantizer attached), so it hashes, trains and saves like any other."""
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ValueError(f"loading {path} needs the 'gguf' package, which transformers uses to read GGUF files: "
                          "pip install 'unlearnbench[real]' (or pip install gguf)")
    kwargs: dict[str, Any] = {"gguf_file": path.name, "trust_remote_code": trust_remote_code}
    try:  # transformers >= 5.24 can keep GGUF weights packed; ask for plain dense weights
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always dequantise
        pass
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=tdtype, **kwargs)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ValueError(f"cannot load {path} as a GGUF model ({type(exc).__name__}: {exc})") from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # dense weights already; drop the quantizer so the model is a plain one
        quantizer.remove_quantization_config(model)
    if getattr(model.config, "architectures", None) is None:
        model.config.architectures = [type(model).__name__]
    return model, _with_pad(tok)


def _with_pad(tok):
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path_or_name: str | Path, dtype: str = "float32", device: str = "cpu",
               trust_remote_code: bool = False, merge_lora: bool = True) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for evaluation, in eval mode on ``device``.

    A folder with ``adapter_config.json`` is a PEFT (LoRA) adapter: its base model (the adapter's
    ``base_model_name_or_path``) is loaded first and the adapter applied; with ``merge_lora`` it is
    merged into the weights (faster generation; the weight hash is then the merged model's).
    The tokenizer comes from the adapter folder when it holds one, else from the base.
    A ``.gguf`` file is dequantised into ``dtype`` with its own tokenizer (reading one is slow: the
    ``gguf`` reader parses the vocabulary in Python, about a minute for SmolLM2-135M on one core).
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    src = str(path_or_name)
    path = Path(src).expanduser()
    if not path.exists():
        if _looks_like_path(src):
            raise FileNotFoundError(f"model path {src} does not exist; expected a folder with config.json and "
                                    "weights (save_pretrained output) or a LoRA adapter folder (adapter_config.json)")
    elif path.is_dir() and not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
        raise FileNotFoundError(f"model folder {src} has neither config.json nor adapter_config.json; expected "
                                "a save_pretrained folder or a LoRA adapter folder")
    elif path.is_file() and path.suffix.lower() != ".gguf":
        raise FileNotFoundError(f"model path {src} is a file; expected a model folder (save_pretrained output), "
                                "a LoRA adapter folder or a .gguf file")
    device = resolve_device(device)
    tdtype = torch_dtype(dtype)
    if path.is_file():
        model, tok = _load_gguf(path, tdtype, trust_remote_code)
        model.to(device)
        model.eval()
        if getattr(model.generation_config, "pad_token_id", None) is None:
            model.generation_config.pad_token_id = tok.eos_token_id
        return model, tok
    if path.is_dir() and (path / "adapter_config.json").is_file():
        from peft import PeftModel

        try:
            base_name = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        except (KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path / 'adapter_config.json'}: cannot read base_model_name_or_path ({exc})") from exc
        if not base_name:
            raise ValueError(f"{path / 'adapter_config.json'}: base_model_name_or_path is empty; cannot find the base")
        base_path = Path(base_name)
        if not base_path.is_absolute() and (path / base_name).exists():
            base_name = str((path / base_name).resolve())
        base, base_tok = load_model(base_name, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        model = PeftModel.from_pretrained(base, str(path))
        if merge_lora:
            model = model.merge_and_unload()
        has_tok = any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
        tok = _load_tokenizer(str(path), trust_remote_code) if has_tok else base_tok
        model.eval()
        return model, tok
    try:
        model = AutoModelForCausalLM.from_pretrained(src if not path.exists() else str(path), dtype=tdtype,
                                                     trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load model {src!r}: {exc}") from exc
    except SafetensorError as exc:  # a truncated or corrupt weights file
        from harness.core.errors import ModelError

        files = sorted(p.name for p in path.glob("*.safetensors")) if path.is_dir() else []
        raise ModelError(f"cannot load model {src!r}: its safetensors weights ({', '.join(files) or 'a weights file'}) "
                         f"are damaged or truncated ({exc})") from exc
    tok = _load_tokenizer(src if not path.exists() else str(path), trust_remote_code)
    model.to(device)
    model.eval()
    if getattr(model.generation_config, "pad_token_id", None) is None:
        model.generation_config.pad_token_id = tok.eos_token_id
    return model, tok


def _tensor_bytes(t) -> bytes | memoryview:
    import torch

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)  # numpy has no bfloat16; the bit pattern is what we hash
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    elif t.dtype in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)):
        t = t.view(torch.uint8)
    return memoryview(t.numpy()).cast("B") if t.numel() else b""


def weight_hash(model) -> str:
    """sha256 over every parameter and buffer: name, shape, dtype and bytes, in ``state_dict`` order.

    Any change to any weight (one element, one bit) changes the hash; so does a change of dtype.
    Registered buffers (e.g. rotary inverse frequencies) are included because they change outputs too.
    """
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(f"{name}|{tuple(tensor.shape)}|{str(tensor.dtype)}\n".encode())
        h.update(_tensor_bytes(tensor))
    return h.hexdigest()


def tokenizer_hash(tokenizer) -> str:
    """sha256 of what decides tokenisation and decoding: the class, the serialised fast tokenizer (or
    vocabulary), special tokens and their default insertion. A different tokenizer with the same weights
    gives different generations, so the evaluation cache keys on this too."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token,
                         str(getattr(tokenizer, "add_bos_token", None)), str(getattr(tokenizer, "add_eos_token", None))]
                        ).encode())
    return h.hexdigest()


def model_config_hash(model) -> str:
    """sha256 of the model's config and generation config (e.g. rope scaling changes outputs, not weights)."""
    h = hashlib.sha256()
    h.update(model.config.to_json_string(use_diff=False).encode())
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        h.update(gen.to_json_string(use_diff=False).encode())
    return h.hexdigest()


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def architecture(model) -> str:
    archs = getattr(model.config, "architectures", None)
    return archs[0] if archs else type(model).__name__


def model_info(model, id: str | None = None, base_model: str | None = None, weight_hash_value: str | None = None
               ) -> ModelInfo:
    """The result record's description of ``model`` (hashing the weights unless the hash is given)."""
    name = id or getattr(model.config, "_name_or_path", None) or f"in-memory {type(model).__name__}"
    return ModelInfo(id=str(name), weight_hash=weight_hash_value or weight_hash(model), base_model=base_model,
                     architecture=architecture(model), n_parameters=n_parameters(model))


__all__ = ["load_model", "weight_hash", "tokenizer_hash", "model_config_hash", "model_info", "torch_dtype",
           "resolve_device", "DTYPES"]
