"""Text normalisation that the SemEval-2025 Task 4 organisers' program applied before scoring.

Two steps of the organisers' pipeline change the text that is scored, and both matter for exact
match (ROUGE is mostly insensitive to them):

1. :func:`classic_cleanup` — transformers 4.45's ``clean_up_tokenization``, applied by ``decode``
   when ``clean_up_tokenization_spaces=True``. transformers 5 silently skips it for BPE tokenizers,
   so the evaluation engine calls this function itself in ``semeval2025`` mode.
2. :func:`semeval_na_quirk` — the organisers stored generations (and reference outputs) in a CSV
   file and read it back with pandas' default NA handling, so an empty text or one that is exactly
   an NA token (``"None"``, ``"NA"``, ``"null"``, ``"nan"``, …) became ``NaN`` and was then scored
   as the string ``"nan"``.

Both are pure string functions (no pandas or transformers import at call time).
"""

from __future__ import annotations

#: (old, new) pairs of transformers 4.45 ``PreTrainedTokenizerBase.clean_up_tokenization``, in the
#: order it applies them. The order matters: ``" ' "`` is replaced before ``" 's"`` and friends.
CLASSIC_CLEANUP_REPLACEMENTS: tuple[tuple[str, str], ...] = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def classic_cleanup(text: str) -> str:
    """Remove tokenization spaces exactly as transformers 4.45's ``clean_up_tokenization`` did.

    Each replacement runs once over the whole string, left to right, in the order of
    :data:`CLASSIC_CLEANUP_REPLACEMENTS` — so ``"a  ."`` becomes ``"a ."`` (one space removed per
    occurrence, as in the original), not ``"a."``.
    """
    for old, new in CLASSIC_CLEANUP_REPLACEMENTS:
        text = text.replace(old, new)
    return text


#: pandas' default NA tokens for ``read_csv`` (``pandas._libs.parsers.STR_NA_VALUES`` of pandas
#: 2.x and 3.x, which includes ``"None"``, as the spec's examples require). Frozen here rather than read from
#: the installed pandas, so that the organisers' January 2025 behaviour does not drift with a
#: future pandas; a test checks that this copy still equals the installed pandas' set.
PANDAS_DEFAULT_NA_VALUES: frozenset[str] = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})

#: What ``str(float("nan"))`` gives: the text a NaN cell was scored as.
NA_TEXT = "nan"


def semeval_na_quirk(text: str) -> str:
    """The organisers' CSV round trip: ``""`` or an exact pandas NA token becomes ``"nan"``.

    The organisers wrote each record's generation and reference output to a CSV file and read it
    back with ``pandas.read_csv`` defaults. pandas turns a cell that is empty, or that is *exactly*
    one of its default NA tokens (:data:`PANDAS_DEFAULT_NA_VALUES`: ``"None"``, ``"NA"``,
    ``"null"``, ``"nan"``, ``"N/A"``, …), into ``NaN``; the scoring code then used it as the string
    ``"nan"``. So a model that answers ``"None"`` to a question whose reference is ``"NA"`` gets
    exact-match credit, and an empty generation is scored as ``"nan"`` (ROUGE-L recall 0 unless the
    reference contains the word *nan*).

    Every other text passes unchanged: the match is on the whole cell, case- and
    whitespace-sensitive (``" NA"`` and ``"None."`` are not NA), and commas, quotes and newlines
    survive the round trip because pandas quotes such cells. The one CSV effect *not* reproduced is
    the organisers' file corruption by a bare carriage return (``"\\r"`` not followed by ``"\\n"``),
    which pandas writes unquoted and which splits the row; that scrambles whole rows of their file
    and cannot be expressed per text.
    """
    return NA_TEXT if text in PANDAS_DEFAULT_NA_VALUES else text
