"""Names and codes: normalization, refusals, and confusable-aware keys."""

import pytest

from chatapp.names import InvalidName
from chatapp.names import is_valid_code
from chatapp.names import name_keys
from chatapp.names import normalize_code
from chatapp.names import normalize_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ada", "ada"),
        ("  ada  ", "ada"),
        ("ada \t\n  lovelace", "ada lovelace"),
        ("ａｄａ", "ada"),  # fullwidth folds under NFKC
        ("ﬁona", "fiona"),  # compatibility ligature
        ("e\u0301mile", "émile"),  # combining mark composes
        ("ada\u00a0byron", "ada byron"),  # no-break space is white space
        ("🦊 fox", "🦊 fox"),  # astral characters count once
        ("x" * 32, "x" * 32),
        ("ada\x85x", "ada x"),  # NEL is white space: folded, not refused
    ],
)
def test_normalize_name_folds(raw, expected):
    assert normalize_name(raw, 32) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   \t ", "empty"),
        ("\u3000", "empty"),  # ideographic space
        ("x" * 33, "too_long"),
        ("🦊" * 33, "too_long"),
        ("ada\x00", "malformed"),
        ("ada\x1b[31m", "malformed"),
        ("ada\x7f", "malformed"),
        ("ada\x9b31m", "malformed"),  # C1 control (CSI)
        ("a\x1fb", "malformed"),  # unit separator: Python folds it as white space
        ("ada\ufffd", "malformed"),  # bytes that were not text
        ("\x1cada", "malformed"),  # file separator, even where trimming would drop it
        ("\u202eada", "malformed"),  # right-to-left override
        ("ad\u2066a", "malformed"),  # isolate
        ("a\u200bda", "malformed"),  # zero width space
        ("a\u200dda", "malformed"),  # zero width joiner
        ("a\u2060da", "malformed"),  # word joiner
        ("\ufeffada", "malformed"),  # byte order mark
        ("a\u200eda", "malformed"),  # left-to-right mark (format character)
        ("a\ud800da", "malformed"),  # lone surrogate
    ],
)
def test_normalize_name_refuses(raw, reason):
    with pytest.raises(InvalidName) as info:
        normalize_name(raw, 32)
    assert info.value.reason == reason


def clash(a: str, b: str) -> bool:
    return bool(set(name_keys(normalize_name(a, 32))) & set(name_keys(normalize_name(b, 32))))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ada", "ADA"),
        ("ada", "Ada"),
        ("ada", "\u0430da"),  # Cyrillic a
        ("ADA", "\u0430da"),
        ("paypal", "p\u0430yp\u0430l"),
        ("ll", "Il"),  # capital I looks like l
        ("il", "IL"),
        ("ada", "ａｄａ"),
        ("straße", "STRASSE"),  # case folding
    ],
)
def test_name_keys_clash(a, b):
    assert clash(a, b)


@pytest.mark.parametrize(("a", "b"), [("ada", "bob"), ("ada", "adam"), ("ada", "ada lovelace")])
def test_name_keys_distinct(a, b):
    assert not clash(a, b)


@pytest.mark.parametrize(
    ("raw", "code", "valid"),
    [
        ("ABCD", "ABCD", True),
        (" abcd ", "ABCD", True),
        ("AbCd", "ABCD", True),
        ("ABC", "ABC", False),
        ("ABCDE", "ABCDE", False),
        ("AB1D", "AB1D", False),
        ("ABÇD", "ABÇD", False),
        ("abﬀ", "abﬀ", False),  # a ligature must not upper-case into "ABFF"
        ("ＡＢＣＤ", "ＡＢＣＤ", False),  # fullwidth letters are not code letters
    ],
)
def test_codes_normalize_and_validate(raw, code, valid):
    assert normalize_code(raw) == code
    assert is_valid_code(normalize_code(raw), 4) is valid
