"""How a TOFU question and answer become model text, per model family.

TOFU's evaluation (locuslab/tofu ``config/model_config.yaml``, ``data_module.py``,
``evaluate_util.run_generation``) builds, for a question ``q`` and an answer ``a``:

- the **loss text** ``question_start + q + question_end`` followed by ``answer_tag + a``; the labels
  are every token after the question part's tokens (counted by tokenizing the question part alone,
  special tokens included), plus an EOS label after the last token; the whole is truncated at 200
  tokens (then without the EOS);
- the **generation prompt**: the loss text decoded and cut before the answer — for Phi
  ``Question: q\\n`` (*without* ``Answer: ``, which the model writes itself), for Llama-2
  ``[INST] q [/INST]``.

``phi`` is also TOFU's format for StableLM and Pythia. ``llama3`` follows open-unlearning's
Llama-3.x-Instruct configuration (the tokenizer's chat template with the system prompt "You are a
helpful assistant." and the date string "10 Apr 2025"), written out as text — it was not checked
against the real tokenizer here (none is reachable offline); the BOS token comes from the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import ConfigError


@dataclass(frozen=True)
class PromptFormat:
    """One model family's TOFU text layout."""

    name: str
    question_start: str
    question_end: str
    answer_tag: str
    """Starts the answer in the loss text; inside the loss (TOFU masks only the question part)."""
    answer_end: str = ""
    """Closes the answer in the loss text (a chat template's end-of-turn token)."""
    generation_answer_tag: bool = False
    """Whether the generation prompt ends with ``answer_tag`` (TOFU's Phi prompt does not)."""
    eos_label: bool = True
    """Whether an EOS label follows the answer (TOFU; a chat template's end-of-turn is its own EOS)."""
    description: str = ""

    def loss_prompt(self, question: str) -> str:
        return self.question_start + question + self.question_end

    def loss_answer(self, answer: str) -> str:
        return self.answer_tag + answer + self.answer_end

    def generation_prompt(self, question: str) -> str:
        return self.loss_prompt(question) + (self.answer_tag if self.generation_answer_tag else "")


_LLAMA3_SYSTEM = ("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                  "Today Date: 10 Apr 2025\n\nYou are a helpful assistant.<|eot_id|>")

PROMPT_FORMATS: dict[str, PromptFormat] = {f.name: f for f in (
    PromptFormat("phi", "Question: ", "\n", "Answer: ",
                 description="TOFU's Phi-1.5 / StableLM / Pythia layout: 'Question: q\\nAnswer: a'"),
    PromptFormat("llama2", "[INST] ", " [/INST]", "", generation_answer_tag=True,
                 description="TOFU's Llama-2-chat layout: '[INST] q [/INST]a'"),
    PromptFormat("llama3", _LLAMA3_SYSTEM + "<|start_header_id|>user<|end_header_id|>\n\n",
                 "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", "", answer_end="<|eot_id|>",
                 generation_answer_tag=True, eos_label=False,
                 description="open-unlearning's Llama-3.x-Instruct chat layout (system prompt, date 10 Apr 2025)"),
)}
DEFAULT_FORMAT = "phi"


def prompt_format(name: str) -> PromptFormat:
    try:
        return PROMPT_FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown TOFU prompt format {name!r}; expected one of {', '.join(PROMPT_FORMATS)}") from None


__all__ = ["DEFAULT_FORMAT", "PROMPT_FORMATS", "PromptFormat", "prompt_format"]
