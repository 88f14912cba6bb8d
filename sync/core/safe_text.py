"""Text from the vendor or the database, made safe to show on a terminal or in a text log.

A flow name or an API reason is data, but a terminal acts on some characters: ESC starts
sequences that clear the screen, set the window title or make a hyperlink (OSC 8); a
carriage return or line feed lets a reason forge a genuine-looking line in a cron log;
the bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069) make text read in
another order than it is stored; zero-width and other invisible format characters make two
different names look the same. `escape_unsafe` shows each such character as its Python
escape (`\\x1b`, `\\r`, `\\u202e`), so nothing acts and nothing is silently hidden.
Everything else is left exactly as it is, so ordinary text in any script, emoji included,
reads unchanged.

Unsafe, by Unicode category: controls (Cc: C0, DEL and C1), format characters (Cf) except
the zero-width joiner and non-joiner that Persian, Indic scripts and emoji sequences need,
line and paragraph separators (Zl, Zp), and lone surrogates (Cs), which no output encoding
can write.
"""

from __future__ import annotations

import unicodedata

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_WRITING_JOINERS = frozenset({"\u200c", "\u200d"})


def is_unsafe(char: str) -> bool:
    """Whether one character would act on a terminal or hide itself rather than show."""
    return unicodedata.category(char) in _UNSAFE_CATEGORIES and char not in _WRITING_JOINERS


def escape_unsafe(text: str) -> str:
    """`text` with every unsafe character replaced by its visible escape; safe text is returned as is."""
    # Every unsafe character is also non-printable, so the common case costs one C-level scan.
    if text.isprintable():
        return text
    return "".join(_escape(char) if is_unsafe(char) else char for char in text)


def _escape(char: str) -> str:
    # `\n`, `\x1b`, `\u202e`, `\U000e0041`: the notation Python (and most readers) know.
    return char.encode("unicode_escape", errors="backslashreplace").decode("ascii")
