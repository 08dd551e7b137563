"""Data values shown as text, and only as text.

A slice name is ``column=value`` with the value straight from a snapshot, so it can hold any
character: ``|`` (a Markdown table cell), ``$`` (matplotlib mathtext), ``<`` and ``&`` (HTML and
Markdown), a newline (a forged line in the CLI's output or an alert), a right-to-left override,
or a hundred thousand characters. Every place that shows such a value goes through one of these
functions (or, for HTML, `html.escape`), so that it is shown as the characters it is and never
read as markup. Printable text of ordinary length comes back unchanged.
"""

from __future__ import annotations

import string
import unicodedata

# Characters that move or hide text instead of showing it: controls (newline, tab, NUL), format
# characters (bidirectional overrides, zero-width joiners) and line or paragraph separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
# CommonMark lets a backslash escape any ASCII punctuation, which is then shown as itself.
_MARKDOWN_PUNCTUATION = frozenset(string.punctuation)


def visible(value: object, limit: int | None = None) -> str:
    """`value` as one line of text: invisible characters as escapes (``\\n``, ``\\u202e``), and
    at most `limit` characters (cut with an ellipsis)."""
    text = str(value)
    if not text.isprintable():
        text = "".join(_escape(c) if unicodedata.category(c) in _INVISIBLE else c for c in text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def markdown(value: object, limit: int | None = None) -> str:
    """`visible(value)` for Markdown (a table cell or a line): every ASCII punctuation character
    is backslash-escaped, so ``|`` cannot end a cell and ``*``, ``_``, ``[``, ``<``, ``&``, ``$``
    cannot start emphasis, a link, HTML, an entity or math."""
    return "".join(f"\\{c}" if c in _MARKDOWN_PUNCTUATION else c for c in visible(value, limit))


def _escape(character: str) -> str:
    escaped = repr(character)[1:-1]
    # repr leaves some invisible characters as they are (it only escapes what Python considers
    # non-printable); write those as a code point.
    return escaped if escaped != character else f"\\u{ord(character):04x}"
