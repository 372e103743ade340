"""Display names and room codes: normalization, refusal rules, comparison keys.

Pure functions with no Flask import, shared by the forms (to explain a refusal
next to the field) and the RoomRegistry (which enforces them).
"""

from __future__ import annotations

import functools
import re
import unicodedata

import icu

# Characters that make a name lie about how it looks: bidirectional controls
# reorder text around it, invisible ones make two equal-looking names differ.
BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
INVISIBLES = frozenset(map(chr, [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]))
# What a decoder puts for bytes that were not text (a form sent as, say,
# Latin-1 in a multipart body): not a name anyone typed.
REPLACEMENT = "\ufffd"

# Unicode categories refused in names: controls, format characters (which
# hold the rest of the bidi and invisible marks) and lone surrogates.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


_CONTROL_NOT_SPACE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\x80-\x84\x86-\x9f]")


class InvalidName(ValueError):
    """A display name that breaks a naming rule; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_name(raw: str, max_length: int) -> str:
    """Return the canonical form of a display name or raise InvalidName.

    NFKC first (so fullwidth and compatibility forms collapse), then trim and
    fold inner white space to single spaces, then check length and characters.
    """
    normalized = unicodedata.normalize("NFKC", raw)
    # Python's split() folds the information separators U+001C-U+001F as
    # white space; Unicode calls them controls, and so do we.
    if _CONTROL_NOT_SPACE.search(normalized):
        raise InvalidName("malformed")
    name = " ".join(normalized.split())
    if not name:
        raise InvalidName("empty")
    if len(name) > max_length:
        raise InvalidName("too_long")
    for char in name:
        if (
            char in BIDI_CONTROLS
            or char in INVISIBLES
            or char == REPLACEMENT
            or unicodedata.category(char) in REFUSED_CATEGORIES
        ):
            raise InvalidName("malformed")
    return name


@functools.cache
def _spoof_checker() -> icu.SpoofChecker:
    return icu.SpoofChecker()


def skeleton(text: str) -> str:
    """Return the Unicode TR39 confusable skeleton of ``text`` (ICU's)."""
    return str(_spoof_checker().getSkeleton(0, text))


def name_keys(name: str) -> tuple[str, ...]:
    """Return the keys under which a name is reserved in a room.

    Two names clash when any key is shared. The case-folded skeleton makes
    ``ADA`` and ``аda`` (Cyrillic a) clash with ``ada``; the skeleton of the
    name as typed also catches confusables that case folding hides (``Il``
    and ``ll``).
    """
    folded = skeleton(name.casefold())
    as_typed = skeleton(name)
    return (folded,) if folded == as_typed else (folded, as_typed)


def normalize_code(raw: str) -> str:
    """Return a room code as typed, trimmed and upper-cased (not validated).

    Only ASCII is upper-cased: ``"ﬀ".upper()`` is ``"FF"``, and a ligature
    must not turn into a valid code.
    """
    code = raw.strip()
    return code.upper() if code.isascii() else code


def is_valid_code(code: str, length: int) -> bool:
    """Tell whether ``code`` (already normalized) has the shape of a room code."""
    return len(code) == length and code.isascii() and code.isalpha() and code.isupper()
