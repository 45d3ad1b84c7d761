"""Small models and tokenizers built offline, in code.

Used by the embedded target model (``unlearnbench target``) and by the test fixtures: a byte-level
BPE tokenizer trained with ``tokenizers`` on the given texts, and small random-weight Llama / GPT-2
causal LMs. Nothing here touches a model hub.
"""

from __future__ import annotations

from typing import Iterable

BOS, EOS, PAD = "<s>", "</s>", "<pad>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024, add_bos: bool = True,
                        min_frequency: int = 2):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a transformers fast tokenizer.

    Like Llama's tokenizer it prepends ``<s>`` when ``add_special_tokens=True`` (the default), and
    its EOS is ``</s>``. Padding uses the EOS id, as the SemEval evaluation does. Training is
    deterministic for the same texts in the same order.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        clean_up_tokenization_spaces=True,
        model_max_length=4096,
    )
    fast.padding_side = "left"
    return fast


def tiny_llama(tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
               intermediate_size: int | None = None, max_positions: int = 1024, seed: int = 0):
    """A random-weight Llama-architecture causal LM sized for the tokenizer's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model


def tiny_gpt2(tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
              max_positions: int = 1024, seed: int = 0):
    """A random-weight GPT-2 causal LM (absolute position embeddings: exercises position ids)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=num_heads,
        n_positions=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model


#: Embedding rows of the OLMo-0724 checkpoints (OLMo-7B-0724-hf, OLMo-1B-0724-hf): the 50,280-entry
#: tokenizer padded to a multiple of 128.
OLMO_VOCAB_ROWS = 50304


def tiny_olmo(tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
              intermediate_size: int | None = None, max_positions: int = 2048, seed: int = 0,
              favoured_tokens: list[int] | tuple[int, ...] = (), favour: float = 0.0):
    """A random-weight model of the SemEval-2025 targets' architecture (transformers' ``OlmoForCausalLM``,
    as OLMo-7B-0724 and OLMo-1B-0724 load), with their embedding size, EOS and PAD ids.

    Weights are drawn here from ``seed`` (normal, std 0.02; layer norms are OLMo's non-parametric
    ones), not by transformers' initialiser, so the model is the same under every transformers
    version. ``favoured_tokens``: output-embedding rows scaled by ``1 + favour`` so that greedy
    decoding mostly emits those tokens (which of them depends on the context) -- a random model that
    writes punctuation and PII placeholders, the tokens decoding treats specially.
    """
    import torch
    from transformers import OlmoConfig, OlmoForCausalLM

    config = OlmoConfig(
        vocab_size=max(OLMO_VOCAB_ROWS, len(tokenizer)),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        clip_qkv=None,
    )
    model = OlmoForCausalLM(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
        if favoured_tokens:
            ids = torch.tensor(list(favoured_tokens))
            model.lm_head.weight[ids] *= 1.0 + favour
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval()
    return model
