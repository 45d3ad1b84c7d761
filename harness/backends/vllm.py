"""Greedy generation with vLLM (``--engine vllm``, extra ``unlearnbench[vllm]``).

Same prompts (raw input, the tokenizer's default special tokens), same limit, temperature 0, stop only
at EOS; the new tokens are decoded with special tokens skipped and, in ``semeval2025`` mode, the
classic clean-up applied — exactly what the HF engine returns. vLLM loads the model from disk: a
full model folder directly, a LoRA run folder through vLLM's LoRA support on its base model.
Tensor parallelism comes from ``tensor_parallel_size``. Losses (MIA, answer loss) stay with the HF
engine: vLLM does not return full-sequence log-probabilities of given text in the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from harness.core.errors import BackendUnavailable

INSTALL_HINT = ("the vLLM engine needs the optional extra: pip install 'unlearnbench[vllm]' "
                "(vLLM runs on CUDA GPUs; on a CPU use --engine hf)")


def require_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(INSTALL_HINT) from exc
    return vllm


def _model_and_lora(model_path: str | Path):
    """(model to load, LoRA adapter folder or None) for a model folder or a LoRA adapter folder."""
    path = Path(model_path)
    cfg = path / "adapter_config.json"
    if cfg.is_file():
        adapter = json.loads(cfg.read_text())
        base = adapter.get("base_model_name_or_path")
        if not base:
            raise BackendUnavailable(f"{cfg}: no base_model_name_or_path; merge the adapter first")
        return base, str(path), int(adapter.get("r", 16))
    return str(path), None, None


def generate(model_path: str | Path, prompts: Sequence[str], max_new_tokens: int = 256, dtype: str = "float32",
             tensor_parallel_size: int = 1, cleanup: str = "semeval2025", trust_remote_code: bool = False,
             gpu_memory_utilization: float = 0.85) -> list[str]:
    """Greedy continuations of ``prompts`` in input order."""
    vllm = require_vllm()
    from transformers import AutoTokenizer

    from metrics.text import classic_cleanup

    model, lora_dir, lora_rank = _model_and_lora(model_path)
    tokenizer = AutoTokenizer.from_pretrained(lora_dir or model, trust_remote_code=trust_remote_code)
    llm = vllm.LLM(model=model, tokenizer=lora_dir or model, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                   trust_remote_code=trust_remote_code, enable_lora=lora_dir is not None,
                   max_lora_rank=lora_rank or 16, gpu_memory_utilization=gpu_memory_utilization, seed=0)
    eos = tokenizer.eos_token_id
    params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=[eos] if eos is not None else None,
                                 ignore_eos=False, skip_special_tokens=True, detokenize=False)
    # Token ids in, token ids out: the prompt is tokenized exactly as the HF engine does it.
    inputs = [{"prompt_token_ids": tokenizer(p, add_special_tokens=True)["input_ids"]} for p in prompts]
    lora = vllm.lora.request.LoRARequest("unlearned", 1, lora_dir) if lora_dir else None
    outputs = llm.generate(inputs, params, lora_request=lora, use_tqdm=True)
    texts = []
    for out in outputs:
        ids = list(out.outputs[0].token_ids)
        if ids and ids[-1] == eos:
            ids = ids[:-1]
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        texts.append(classic_cleanup(text) if cleanup == "semeval2025" else text)
    return texts
