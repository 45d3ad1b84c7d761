"""The engine uses no deprecated transformers argument: the KV cache goes in under the name the
installed transformers' forward() takes (``cache`` from 5.24 on, ``past_key_values`` before)."""

from __future__ import annotations

import inspect
import warnings

import pytest

torch = pytest.importorskip("torch")

from harness.backends import batching  # noqa: E402
from harness.backends.hf import generate_detailed  # noqa: E402
from harness.backends.reference import generate_reference  # noqa: E402


def test_generation_passes_no_deprecated_argument(tiny_llama, tiny_tokenizer):
    prompts = ["Madera, a bustling city,", "Which city was Sherry's home?", "Ivo"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = generate_detailed(tiny_llama, tiny_tokenizer, prompts, max_new_tokens=6, batch_size=2,
                                       progress=False)
    deprecations = [str(w.message) for w in caught
                    if issubclass(w.category, (FutureWarning, DeprecationWarning)) and "deprecated" in str(w.message)]
    assert not deprecations, deprecations
    reference = generate_reference(tiny_llama, tiny_tokenizer, prompts, max_new_tokens=6, progress=False)
    assert out.token_ids == reference.token_ids


def test_cache_argument_follows_the_forward_signature(tiny_llama):
    params = inspect.signature(type(tiny_llama).forward).parameters
    assert batching.cache_argument(tiny_llama) == ("cache" if "cache" in params else "past_key_values")

    class OldStyle(torch.nn.Module):  # a remote-code model written for transformers 4.x
        def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
            return None

    assert batching.cache_argument(OldStyle()) == "past_key_values"


def test_cache_argument_sees_through_a_peft_wrapper(tiny_llama):
    peft = pytest.importorskip("peft")
    wrapped = peft.get_peft_model(tiny_llama, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    assert batching.cache_argument(wrapped) == batching.cache_argument(tiny_llama)
