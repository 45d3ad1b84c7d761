"""How a record's prompt and answer are joined into one token sequence (training and answer loss).

LUME records split a document into ``input`` and ``output`` with no whitespace kept at the seam
("…found their way to her." / "As fate would have it…"), and QA answers carry no leading space. A
causal LM that read the document continues the prompt with " As" — with byte-level BPE tokenizers a
different token from "As". Gluing the two strings (or their token lists) would train and score tokens
the model never predicts in running text, so the seam gets the single space the document had,
unless one side already has whitespace there.
"""

from __future__ import annotations


def seam(input_text: str, output_text: str, separator: str = "auto") -> str:
    """The string placed between ``input`` and ``output``: ``auto`` = one space when neither side
    has whitespace at the seam (and both are non-empty), else nothing; or the given literal."""
    if separator != "auto":
        return separator
    if input_text and output_text and not input_text[-1].isspace() and not output_text[0].isspace():
        return " "
    return ""


def prompt_and_answer_ids(tokenizer, input_text: str, output_text: str, separator: str = "auto"
                          ) -> tuple[list[int], list[int]]:
    """Token ids of the prompt (default special tokens, as at generation time) and of the answer.

    The answer ids are the tail of ``tokens(input + seam + output)`` after the prompt's tokens, so
    they are the tokens the model would have to generate after the prompt. If tokenizing the joined
    text does not start with the prompt's tokens (a merge across the seam), the answer is tokenized
    on its own (with the seam) instead.
    """
    prompt = tokenizer(input_text, add_special_tokens=True)["input_ids"]
    joined = input_text + seam(input_text, output_text, separator) + output_text
    full = tokenizer(joined, add_special_tokens=True)["input_ids"]
    if full[: len(prompt)] == prompt:
        return prompt, full[len(prompt):]
    # Tokenizers that append special tokens to every sequence (or merges across the seam): tokenize
    # the answer on its own.
    answer = tokenizer(seam(input_text, output_text, separator) + output_text, add_special_tokens=False)["input_ids"]
    return prompt, answer
