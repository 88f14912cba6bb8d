"""Escaping what a terminal would act on or hide, and nothing else."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sync.core.safe_text import escape_unsafe, is_unsafe

# Independent of the implementation: the characters that must never reach a screen or a log raw.
CONTROLS = [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]]
BIDI = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]]
INVISIBLE = ["\u200b", "\u2060", "\ufeff", "\u00ad", "\u2028", "\u2029", "\U000e0041", "\ud800"]


def unsafe_in(text: str) -> list[str]:
    """The characters of `text` that are controls, format characters (bar the joiners) or separators."""
    return [
        c
        for c in text
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") and c not in "\u200c\u200d"
    ]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Login OTP", "Login OTP"),
        (
            "[/bold] [link=http://evil.example]x[/link] :warning:",
            "[/bold] [link=http://evil.example]x[/link] :warning:",
        ),
        ("back\\slash and \\x1b typed out", "back\\slash and \\x1b typed out"),
        ("验证码 🚀 Ünïcødé عربى", "验证码 🚀 Ünïcødé عربى"),
        (
            "family 👨\u200d👩\u200d👧, Persian می\u200cخواهم",
            "family 👨\u200d👩\u200d👧, Persian می\u200cخواهم",
        ),
        ("no\u00a0break", "no\u00a0break"),
        ("\x1b[2Jcleared", "\\x1b[2Jcleared"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        (
            "\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\",
            "\\x1b]8;;http://evil.example\\x1b\\link\\x1b]8;;\\x1b\\",
        ),
        ("ok\rforged", "ok\\rforged"),
        ("one\ntwo\tthree", "one\\ntwo\\tthree"),
        ("nul\x00 del\x7f csi\x9b nel\x85", "nul\\x00 del\\x7f csi\\x9b nel\\x85"),
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("line\u2028separator", "line\\u2028separator"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("", ""),
    ],
)
def test_escape_unsafe(raw: str, shown: str) -> None:
    """Controls, bidi overrides and invisible format characters show as escapes; everything else as is."""
    assert escape_unsafe(raw) == shown


@pytest.mark.parametrize("char", CONTROLS + BIDI + INVISIBLE)
def test_every_control_bidi_and_invisible_character_is_unsafe(char: str) -> None:
    """Each C0/C1 control, DEL, bidi control, zero-width and invisible format character is escaped."""
    assert is_unsafe(char)
    assert escape_unsafe(char) != char
    assert escape_unsafe(char).isascii()


@given(st.text())
@example("\x1b]8;;http://evil.example\x07x\x1b]8;;\x07\u202e\r\n")
def test_the_output_never_holds_an_unsafe_character(text: str) -> None:
    """Whatever the input, the output has no control, bidi, invisible format or separator character."""
    assert unsafe_in(escape_unsafe(text)) == []


@given(st.text().filter(lambda text: not unsafe_in(text)))
@example("C:\\temp [bold] 👨\u200d👩 \u00a0")
def test_text_without_unsafe_characters_is_unchanged(text: str) -> None:
    """Text with nothing to escape comes back identical: backslashes, brackets, joiners and all."""
    assert escape_unsafe(text) == text
