"""The model-backend seam: what the evaluation asks of a loaded model, whatever runs it.

A :class:`ModelBackend` answers three kinds of requests, in the shape lm-evaluation-harness gave its
model interface (``generate_until``, ``loglikelihood``, ``loglikelihood_rolling``):

- :meth:`~ModelBackend.generate`: greedy continuations of raw prompts;
- :meth:`~ModelBackend.answer_losses`: the mean token cross-entropy of an answer given its prompt;
- :meth:`~ModelBackend.document_scores`: per-document loss statistics of whole texts (membership
  inference: mean loss, Min-K%, Min-K%++, zlib entropy).

Benchmarks build the requests and score the answers; they never call the model. The evaluation
pipeline picks a backend by the ``engine`` setting (:func:`harness.backends.make_backend`), so no
other module branches on engine names. Also here: the decoding conventions every backend shares
(prompt tokenisation with the tokenizer's default special tokens, the EOS ids ``model.generate``
stops at, the pad id, decoding with special tokens skipped and the optional SemEval clean-up).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs (never what it computes: none of this changes a number)."""

    batch_size: int | str = "auto"
    """Rows per batch for every phase, or ``auto`` (start large, halve on out-of-memory)."""
    progress: bool = True
    verify_margin: float | None = None
    """Batched HF generation: relative top-1/top-2 logit gap below which a row is checked one at a time
    (``None``: the dtype's default, :func:`harness.backends.hf.default_margin`; 0 disables)."""
    dtype: str = "float32"
    """The dtype a backend that loads the model itself (vLLM) loads it in."""
    tensor_parallel_size: int = 1
    """vLLM: GPUs per model."""
    data_parallel: bool = True
    """Under ``accelerate launch``/torchrun, split the work across the processes and gather it (every
    process must then call the backend). ``False`` computes everything in the calling process, e.g.
    for the training curves, which only the main process draws."""


@dataclass(frozen=True)
class AnswerFormat:
    """How an answer's tokens are found for its loss (:meth:`ModelBackend.answer_losses`).

    The default is LUME's: ``prompt + seam + answer`` (one space where neither side has one), the
    answer's tokens are those after the prompt's (tokenized on its own when a merge crosses the seam),
    no EOS. TOFU's convention (:mod:`harness.tasks.tofu`) is ``separator=""``, an EOS label,
    truncation at 200 tokens and the prompt's token count masked whatever the tokens at the seam."""

    separator: str = "auto"
    """Between prompt and answer: ``auto`` (:func:`harness.core.text.seam`) or a literal."""
    eos_label: bool = False
    """The EOS token follows the answer as its last label (unless the text was truncated)."""
    max_length: int | None = None
    """Prompt and answer together are truncated to this many tokens (special tokens included)."""
    split_by_prompt_length: bool = False
    """The answer is every token after the first ``len(tokens(prompt))`` of ``tokens(prompt + answer)``,
    even where tokenization merges across the seam."""

    @property
    def is_default(self) -> bool:
        return self == AnswerFormat()


class ModelBackend(ABC):
    """Greedy generation and token log-probabilities over one loaded model.

    ``stats`` collects what the backend measured about itself (batch sizes, fallbacks, seconds); the
    evaluation records it as ``settings["engine_stats"]``. ``exactness`` says, for the result record,
    how the generations relate to the organisers' one-record-at-a-time decoding.
    """

    #: The ``engine`` setting that selects this backend.
    name: ClassVar[str] = ""
    #: One sentence recorded as ``settings["exactness"]``.
    exactness: ClassVar[str] = ""

    def __init__(self, model: Any, tokenizer: Any, options: BackendOptions | None = None,
                 model_path: str | Path | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.options = options or BackendOptions()
        self.model_path = str(model_path) if model_path is not None else None
        """The folder the model was loaded from or saved to (backends that load from disk need it)."""
        self.stats: dict[str, Any] = {}

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`harness.core.errors.BackendUnavailable` when this backend cannot run here."""

    @abstractmethod
    def generate(self, prompts: Sequence[str], max_new_tokens: int, cleanup: str = "semeval2025") -> list[str]:
        """Greedy continuations of ``prompts`` (raw text), in input order; ``cleanup`` is ``semeval2025``
        (the transformers-4 decoding clean-up the organisers' run applied) or ``plain``."""

    @abstractmethod
    def answer_losses(self, inputs: Sequence[str], outputs: Sequence[str],
                      answer_format: AnswerFormat | None = None) -> list[float | None]:
        """Mean token cross-entropy of each output given its input (``None`` when it adds no token);
        ``answer_format`` says which tokens are the answer's (default: :class:`AnswerFormat`)."""

    def token_logprobs(self, texts: Sequence[str]) -> list[list[float]]:
        """The log-probability of every token after the first of each text (tokenized with the default
        special tokens), for statistics a benchmark computes itself (MUSE's Min-K%)."""
        raise NotImplementedError(f"the {self.name} backend does not give token log-probabilities")

    def truncate(self, texts: Sequence[str], max_tokens: int, cleanup: str = "semeval2025") -> list[str]:
        """Each text cut to its first ``max_tokens`` tokens (default special tokens counted) and decoded
        with special tokens skipped, as MUSE shortens its verbatim-memorisation references."""
        return [decode(self.tokenizer, ids[:max_tokens], cleanup) for ids in token_ids(self.tokenizer, texts)]

    @abstractmethod
    def document_scores(self, texts: Sequence[str], k: float = 0.2) -> list[dict[str, Any]]:
        """Per-document membership statistics (``mia.jsonl``'s loss fields, docs/contracts.md)."""


# -- decoding conventions shared by every backend --------------------------------------------------
@dataclass
class GenerationOutput:
    texts: list[str]
    """Decoded generations, in input order."""
    token_ids: list[list[int]]
    """New token ids (including the final EOS when one was produced), in input order."""
    min_margins: list[float]
    """Smallest relative top-1/top-2 logit gap, ``(l1 - l2) / max(1, |l1|)``, over each row's decoding
    steps (``inf`` for one-at-a-time reference decoding)."""
    fallback: list[int] = field(default_factory=list)
    """Indices regenerated one at a time because a step's logit gap was below the margin."""
    batch_size: int = 1
    engine: str = "batched"


def model_device(model) -> Any:
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def model_dtype_name(model) -> str:
    try:
        return str(next(model.parameters()).dtype).replace("torch.", "")
    except StopIteration:  # pragma: no cover
        return "float32"


def eos_token_ids(model, tokenizer) -> list[int]:
    """The ids ``model.generate`` stops at: the generation config's EOS id(s), else the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    if ids is None:
        raise ValueError("the tokenizer has no EOS token and the model's generation config names none; "
                         "greedy generation needs an EOS id to stop at")
    return [int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids])]


def generation_pad_id(model, tokenizer) -> int:
    """The padding id of generation: the organisers generate with ``pad_token_id = eos_token_id``."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_ids(model, tokenizer)[0]
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else pad_id


def token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text with the default special tokens, as ``tokenizer(text)`` gives them one at
    a time (one batched call: a fast tokenizer encodes the list in one go)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]]


def decode(tokenizer, token_ids: Sequence[int], cleanup: str | None) -> str:
    """Decode new tokens with special tokens skipped; ``cleanup="semeval2025"`` applies the classic
    clean-up of transformers 4 (which transformers 5 skips for BPE tokenizers), exactly once."""
    text = tokenizer.decode(list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if cleanup == "semeval2025":
        from metrics.text import classic_cleanup

        text = classic_cleanup(text)
    elif cleanup not in (None, "none", "plain"):
        raise ValueError(f"unknown clean-up {cleanup!r}; expected 'semeval2025' or 'plain'")
    return text


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rec", disable=not enabled, leave=False, dynamic_ncols=True)


__all__ = ["AnswerFormat", "BackendOptions", "GenerationOutput", "ModelBackend", "decode", "eos_token_ids", "generation_pad_id",
           "model_device", "model_dtype_name", "progress_bar", "token_ids"]
