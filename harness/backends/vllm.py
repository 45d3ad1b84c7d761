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

from harness.backends.base import decode
from harness.backends.hf import HFBackend
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


class VLLMBackend(HFBackend):
    """Generation by vLLM from the model's folder on disk; losses by the batched HF engine on the
    in-memory model. ``model_path`` (the folder vLLM loads: the evaluated model, or the run's saved
    ``model/`` folder) is part of building this backend."""

    name = "vllm"
    exactness = ("vLLM greedy generation (its own batching and kernels; not checked against one-at-a-time "
                 "decoding); losses by the batched HF engine")

    def __init__(self, model, tokenizer, options=None, model_path=None):
        super().__init__(model, tokenizer, options, model_path)
        if not self.model_path:
            raise BackendUnavailable("the vLLM backend loads the model from disk: build it with the folder of the "
                                     "model being evaluated (model_path)")

    @classmethod
    def check_available(cls) -> None:
        require_vllm()

    def generate(self, prompts: Sequence[str], max_new_tokens: int, cleanup: str = "semeval2025") -> list[str]:
        # vLLM schedules its own batches (and GPUs via tensor parallelism): no data-parallel sharding.
        return self._generate(list(prompts), max_new_tokens, cleanup)

    def _generate(self, prompts: list[str], max_new_tokens: int, cleanup: str, trust_remote_code: bool = False,
                  gpu_memory_utilization: float = 0.85) -> list[str]:
        """Greedy continuations of ``prompts`` in input order."""
        vllm = require_vllm()
        from transformers import AutoTokenizer

        model, lora_dir, lora_rank = _model_and_lora(self.model_path)
        tokenizer = AutoTokenizer.from_pretrained(lora_dir or model, trust_remote_code=trust_remote_code)
        llm = vllm.LLM(model=model, tokenizer=lora_dir or model, dtype=self.options.dtype,
                       tensor_parallel_size=self.options.tensor_parallel_size, trust_remote_code=trust_remote_code,
                       enable_lora=lora_dir is not None, max_lora_rank=lora_rank or 16,
                       gpu_memory_utilization=gpu_memory_utilization, seed=0)
        eos = tokenizer.eos_token_id
        params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens,
                                     stop_token_ids=[eos] if eos is not None else None, ignore_eos=False,
                                     skip_special_tokens=True, detokenize=False)
        # Token ids in, token ids out: the prompt is tokenized exactly as the HF engine does it.
        inputs = [{"prompt_token_ids": tokenizer(p, add_special_tokens=True)["input_ids"]} for p in prompts]
        lora = vllm.lora.request.LoRARequest("unlearned", 1, lora_dir) if lora_dir else None
        outputs = llm.generate(inputs, params, lora_request=lora, use_tqdm=self.options.progress)
        texts = []
        for out in outputs:
            ids = list(out.outputs[0].token_ids)
            if ids and ids[-1] == eos:
                ids = ids[:-1]
            texts.append(decode(tokenizer, ids, cleanup))
        return texts


__all__ = ["VLLMBackend", "require_vllm", "INSTALL_HINT"]
