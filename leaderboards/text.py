"""User text (labels, method names, parameters, reasons, notes, paths) made safe for each output.

Everything a record, a board file or a file name supplies is *data*: no output may let it act as
markup, a link, a formula or a control sequence. One function per output format:

- :func:`visible` (under every other function): control characters become a space; invisible format
  characters (Unicode category Cf: bidi overrides and isolates, zero-width characters, the BOM, soft
  hyphens) are shown as ``[U+202E]``, so a label cannot reorder or hide the text around it nor pass
  for another label; lone surrogates (valid in JSON, not encodable in UTF-8) are shown the same way.
- :func:`md_text` for Markdown text (CommonMark/GFM, Python-Markdown, markdown-it with linkify): no raw
  HTML, no links, images, autolinks or emphasis from data (see the function for how).
- :func:`md_code` for Markdown code spans (paths, board names).
- HTML uses :func:`html_text`: :func:`visible` then :func:`html.escape` (quotes too, for attributes).
- :func:`csv_cell`: CSV formula injection neutralised as OWASP recommends.
- :func:`latex_text`: LaTeX special characters escaped.
- :func:`plot_text`: one line, bounded length; the plots also switch mathtext and usetex off.
"""

from __future__ import annotations

import html
import re
import unicodedata

#: Characters a spreadsheet reads as the start of a formula (OWASP "CSV Injection"), plus a line feed.
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")


def visible(text: object) -> str:
    """``text`` with control characters as spaces and invisible format characters shown as ``[U+XXXX]``."""
    out = []
    for ch in str(text):
        category = unicodedata.category(ch)
        if category == "Cc" or ch in "\u2028\u2029":
            out.append(" ")
        elif category in ("Cf", "Cs"):
            out.append(f"[U+{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def clean(text: object) -> str:
    """``text`` made writable as UTF-8 and free of C0/C1 controls other than tab, CR and LF (kept as
    data, e.g. for CSV, where the writer quotes them); lone surrogates shown as ``[U+D800]``."""
    out = []
    for ch in str(text):
        category = unicodedata.category(ch)
        if category == "Cs" or (category == "Cc" and ch not in "\t\r\n"):
            out.append(f"[U+{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


# -- Markdown ---------------------------------------------------------------------------------------
_MD_BACKSLASH = set("\\`*[]|~")
_URL_SCHEME_COLON = re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*:(?=//)|(?:mailto|xmpp|javascript|data|vbscript|file):)")
_DOMAIN_DOT = re.compile(r"(?<=[A-Za-z0-9-])\.(?=[A-Za-z])")
_LIST_NUMBER = re.compile(r"\d{1,9}[.)]")


def md_text(text: object) -> str:
    """``text`` as literal Markdown text, on one line, also inside a table cell.

    - ``&``, ``<``, ``>`` become entities: no raw HTML, no ``<http://…>`` autolinks, no entity tricks.
    - ``\\ ` * [ ] | ~`` are backslash-escaped: no link or image syntax (``[x](…)``, ``![x](…)``), no
      code spans, emphasis or strikethrough, no extra table cells; ``_`` is escaped where it could
      start or end emphasis (not inside a word, where CommonMark never reads it as emphasis).
    - The colon of a URL scheme (``http://``, ``mailto:``, ``javascript:``…) becomes ``&#58;``, a dot
      between domain-like words ``\\.``, and ``@`` gets a word joiner (``&#8288;``) before it, so GFM's
      and linkify's bare-URL, ``www.`` and e-mail autolinks never fire.
    - A leading ``#``, ``-``, ``+`` or ``1.`` is escaped (no heading or list where a line starts);
      surrounding whitespace is dropped (no indented code block); line breaks and other control
      characters are spaces (:func:`visible`).
    """
    text = visible(text).strip()
    colons = {m.end() - 1 for m in _URL_SCHEME_COLON.finditer(text)}
    dots = {m.start() for m in _DOMAIN_DOT.finditer(text)}
    out = []
    for i, ch in enumerate(text):
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch in _MD_BACKSLASH:
            out.append("\\" + ch)
        elif ch == "_":
            inside_word = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
            out.append("_" if inside_word else "\\_")
        elif i in colons:
            out.append("&#58;")
        elif i in dots:
            out.append("\\.")
        elif ch == "@":
            out.append("&#8288;@")
        else:
            out.append(ch)
    if text and (text[0] in "#-+" or _LIST_NUMBER.match(text)):
        first = _LIST_NUMBER.match(text).end() - 1 if text[0] not in "#-+" else 0
        if not out[first].startswith("\\"):
            out[first] = "\\" + out[first]
    return "".join(out)


def md_code(text: object, in_table: bool = False) -> str:
    """``text`` as a Markdown code span (literal in every renderer; the fence outgrows any backtick run)."""
    text = visible(text)
    if in_table:
        text = text.replace("|", "\\|")  # GFM tables split cells on | even inside code spans
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) or not text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# -- HTML -------------------------------------------------------------------------------------------
def html_text(text: object) -> str:
    """``text`` escaped for HTML text and attribute values (``& < > " '``)."""
    return html.escape(visible(text), quote=True)


# -- CSV --------------------------------------------------------------------------------------------
def csv_cell(text: object) -> str:
    """A text cell that no spreadsheet evaluates: one starting with ``= + - @``, a tab, CR or LF gets a
    leading single quote (OWASP), unless the whole cell is a plain number (``-0.5`` stays a number).
    Line breaks become ``\n`` (the writer quotes a cell holding one; a bare CR it would not quote, and
    readers would split the row there)."""
    text = clean(text)
    if text.startswith(CSV_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        text = "'" + text
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- LaTeX ------------------------------------------------------------------------------------------
_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", '"': r"\textquotedbl{}", "`": r"\textasciigrave{}", "'": r"\textquotesingle{}",
    "[": "{[}", "]": "{]}", "-": "-{}",
}


def latex_text(text: object) -> str:
    """``text`` as literal LaTeX text, on one line: every special character escaped, brackets braced
    (a ``[`` after ``\\\\`` would be read as a length), no ``--``/quote ligatures."""
    return "".join(_LATEX.get(ch, ch) for ch in visible(text))


# -- plots ------------------------------------------------------------------------------------------
def plot_text(text: object, limit: int = 48) -> str:
    """One line of at most ``limit`` characters (an ellipsis marks a cut); the plots draw it with
    mathtext off, so ``$`` is a dollar sign."""
    text = " ".join(visible(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
