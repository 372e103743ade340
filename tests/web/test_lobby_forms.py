"""Hostile lobby forms: every answer is PROTOCOL.md's (303, 400, 405, 413), never a 5xx.

Property-based (Hypothesis, fixed budget, derandomized) over ``name``,
``code`` and the buttons. The oracle below is written from PROTOCOL.md,
not from the app's code: NFKC, trim, fold white space, 1 to NAME_MAX_LENGTH
code points, no control, bidi or invisible characters.
"""

from __future__ import annotations

import io
import itertools
import unicodedata
import urllib.parse

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from markupsafe import escape
from werkzeug.datastructures import MultiDict

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    # One app for a test's examples: each example uses names of its own.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NAME_MAX = 32

# The per-address limits and MAX_ROOMS out of the way of the many examples.
pytestmark = pytest.mark.settings(
    CREATES_PER_MINUTE=10**9,
    JOIN_FAILURES_PER_MINUTE=10**9,
    JOINS_PER_MINUTE=10**9,
    ROOMS_PER_ADDRESS=10**9,
    MAX_ROOMS=10**9,
)

# Unicode's White_Space property (what "white space" means in PROTOCOL.md).
WHITE_SPACE = frozenset(
    map(
        chr,
        [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B)]
        + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000],
    )
)
BIDI = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
INVISIBLE = frozenset(map(chr, [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]))
# Python's str.split() also splits on these (they are not Unicode White_Space,
# but are "information separators"): folding them or refusing them are both
# acceptable readings, so the oracle accepts either.
PY_ONLY_SPACE = frozenset("\x1c\x1d\x1e\x1f")

REFUSED = "refused"
EITHER = "either"

_unique = itertools.count()


def expected_name(raw: str) -> str:
    """PROTOCOL.md's answer for a typed name: the name, REFUSED or EITHER."""
    nfkc = unicodedata.normalize("NFKC", raw)
    if any(c in PY_ONLY_SPACE for c in nfkc):
        return EITHER
    name = "".join(" " if c in WHITE_SPACE else c for c in nfkc)
    name = " ".join(part for part in name.split(" ") if part)
    if not name or len(name) > NAME_MAX:
        return REFUSED
    if any(unicodedata.category(c) == "Cc" or c in BIDI or c in INVISIBLE for c in name):
        return REFUSED
    # Other format characters and unassigned/private code points: the
    # protocol names no rule; refusing them is a safe reading too.
    if any(unicodedata.category(c) in ("Cf", "Cs", "Cn", "Co") for c in name):
        return EITHER
    return name


def session_rooms(app, client):
    """The memberships the signed session cookie holds (``[[code, id, name], ...]``)."""
    cookie = client.get_cookie("session")
    if cookie is None:
        return []
    data = app.session_interface.get_signing_serializer(app).loads(cookie.value)
    return data.get("rooms", [])


def room_count(app):
    return len(app.extensions["room_registry"].store._rooms)


def create(app, name, **extra):
    client = app.test_client()
    before = room_count(app)
    response = client.post("/", data={"name": name, "code": "", "create": "", **extra})
    return client, response, before


# Names: any text, plus the traps the issue names.
TRAPS = st.sampled_from(
    [
        "ａｄａ",  # fullwidth
        "ﬀ",  # compatibility ligature
        "Å",  # Angstrom sign, NFKC -> Å
        "e\u0301",  # combining acute
        "\u0301",  # a lone combining mark
        "𝔞𝔡𝔞",  # mathematical fraktur (astral, NFKC -> ada)
        "😀",  # astral emoji
        "ß",
        "İ",
        "\u202e",  # RLO
        "\u2066",
        "\u200b",
        "\ufeff",
        "\u00ad",  # soft hyphen (Cf)
        "\x00",
        "\x7f",
        "\x85",
        "\u3000",
        "\u00a0",
        "\t",
        "\n",
        "\r\n",
        " ",
        "<script>",
        "'\"&",
    ]
)
NAMES = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(TRAPS, st.text(max_size=3)), max_size=12).map("".join),
)


@FUZZ
@given(raw=NAMES)
@example(raw="e\u0301" * 32)  # 64 code points typed, 32 after NFKC: accepted
@example(raw="é" * 33)
@example(raw="😀" * 32)  # astral: 32 code points, 128 bytes
@example(raw="😀" * 33)
@example(raw="  ada \t\n  lovelace  ")
@example(raw="ada\u202eevil")
@example(raw="ada\x00")
def test_create_name_property(app, raw):
    client, response, before = create(app, raw)
    want = expected_name(raw)
    assert response.status_code in (303, 400), response.status_code
    if response.status_code == 400:
        assert want in (REFUSED, EITHER), (raw, want)
        assert room_count(app) == before  # nothing recorded
        assert session_rooms(app, client) == []
        return
    assert want != REFUSED, (raw, "accepted")
    (code, _member, name) = session_rooms(app, client)[-1]
    assert response.headers["Location"] == f"/room/{code}"
    if want is not EITHER:
        assert name == want
    # Whatever was accepted is already canonical and within the limits.
    assert name == unicodedata.normalize("NFKC", name) == name.strip()
    assert 1 <= len(name) <= NAME_MAX
    assert not any(unicodedata.category(c) in ("Cc", "Cs") or c in BIDI | INVISIBLE for c in name)
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    if "<" in name:
        assert str(escape(name)).encode() in page.data  # shown, escaped


def code_variants(code):
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in code)
    return st.sampled_from(
        [
            code,
            code.lower(),
            f"  {code.lower()}\t",
            code.swapcase()[:2] + code[2:],
            fullwidth,  # not A-Z
            code[:-1],
            code + "A",
            code[:-1] + "\u0301",
            code.lower().replace("i", "ı"),  # dotless i upper-cases to I
            code.lower().replace("k", "\u212a"),  # Kelvin sign
            code[:2] + "\u200b" + code[2:],
            "",
            " ",
            "ﬀ" + code[2:],  # ligature that upper-cases to "FF"
        ]
    )


@FUZZ
@given(data=st.data())
def test_join_code_property(app, code, data):
    raw = data.draw(st.one_of(code_variants(code), st.text(max_size=8)), label="code")
    client = app.test_client()
    name = f"joiner{next(_unique)}"
    response = client.post("/", data={"name": name, "code": raw, "join": ""})
    assert response.status_code in (303, 400), response.status_code
    ascii_trim = raw.strip(" \t\n\r\x0b\x0c")
    if response.status_code == 303:
        assert response.headers["Location"] == f"/room/{code}"
        assert raw.isascii(), ("a non-ASCII code joined a room", raw)
        assert ascii_trim.upper() == code
        assert session_rooms(app, client)[-1][0] == code
    else:
        assert session_rooms(app, client) == []
        if raw.isascii() and not any(c in PY_ONLY_SPACE for c in raw):
            assert ascii_trim.upper() != code, raw


@FUZZ
@given(
    counts=st.fixed_dictionaries(
        {field: st.integers(0, 2) for field in ("name", "code", "create", "join")}
    ),
    extra=st.lists(st.sampled_from(["csrf_token", "x", "submit", "name[]", "Name"]), max_size=3),
)
def test_buttons_and_fields_property(app, code, counts, extra):
    form = MultiDict()
    name = f"p{next(_unique)}"
    for field, count in counts.items():
        value = {"name": name, "code": code}.get(field, "")
        for _ in range(count):
            form.add(field, value)
    for field in extra:
        form.add(field, "junk")
    client = app.test_client()
    before = room_count(app)
    response = client.post("/", data=form)
    assert response.status_code in (303, 400), response.status_code
    buttons = [b for b in ("create", "join") if counts[b]]
    duplicated_button = any(counts[b] > 1 for b in buttons)
    valid = (
        len(buttons) == 1
        and counts["name"] == 1
        and (buttons[0] == "create" and counts["code"] <= 1 or counts["code"] == 1)
    )
    if not valid:
        assert response.status_code == 400, dict(form.lists())
        assert room_count(app) == before and session_rooms(app, client) == []
    elif not duplicated_button:
        assert response.status_code == 303, (dict(form.lists()), response.data[-500:])


@FUZZ
@given(junk=st.binary(max_size=64), raw_bytes=st.booleans(), multipart=st.booleans())
@example(junk=b"\xff\xfe", raw_bytes=True, multipart=False)
@example(junk=b"\xed\xa0\x80", raw_bytes=False, multipart=False)  # an encoded surrogate
@example(junk=b"\xc0\xaf", raw_bytes=True, multipart=True)  # overlong '/'
@example(junk=b"ada\x00", raw_bytes=False, multipart=True)
def test_invalid_utf8_in_the_body(app, junk, raw_bytes, multipart):
    client = app.test_client()
    before = room_count(app)
    if multipart:
        boundary = b"b0undary"
        body = b"".join(
            [
                b"--" + boundary + b'\r\nContent-Disposition: form-data; name="name"\r\n\r\n',
                junk,
                b"\r\n--" + boundary + b'\r\nContent-Disposition: form-data; name="create"\r\n\r\n',
                b"\r\n--" + boundary + b"--\r\n",
            ]
        )
        content_type = "multipart/form-data; boundary=b0undary"
    else:
        value = junk if raw_bytes else urllib.parse.quote_from_bytes(junk).encode()
        body = b"name=" + value.replace(b"&", b"%26").replace(b"=", b"%3D") + b"&create="
        content_type = "application/x-www-form-urlencoded"
    response = client.post("/", data=body, content_type=content_type)
    sent = urllib.parse.unquote_to_bytes(junk) if raw_bytes and not multipart else junk
    if not (is_utf8(junk) and is_utf8(sent)):
        assert response.status_code == 400, response.status_code
        assert room_count(app) == before and session_rooms(app, client) == []
        if not multipart:  # an urlencoded body is refused as a whole
            assert b"not sent as UTF-8" in response.data
        return
    assert response.status_code in (303, 400), response.status_code
    if response.status_code == 303:
        (_code, _member, name) = session_rooms(app, client)[-1]
        assert expected_name(name) in (name, EITHER)
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in name)
    else:
        assert room_count(app) == before


def is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("ａｄａ", "ada"),
        ("ada   lovelace", "ada lovelace"),
        ("\u3000ada\u00a0", "ada"),
        ("ﬁ", "fi"),
        ("e\u0301" * 32, "é" * 32),
        ("x" * 32, "x" * 32),
        ("😀" * 32, "😀" * 32),
    ],
)
def test_name_boundaries_accepted(app, raw, stored):
    client, response, _ = create(app, raw)
    assert response.status_code == 303
    assert session_rooms(app, client)[-1][2] == stored


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "x" * 33,
        "😀" * 33,
        "a\u202eb",
        "a\u2066b",
        "a\u200bb",
        "a\ufeffb",
        "a\x00b",
        "a\x7fb",
    ],
)
def test_name_refusals(app, raw):
    client, response, before = create(app, raw)
    assert response.status_code == 400
    assert room_count(app) == before and session_rooms(app, client) == []


@pytest.mark.parametrize("name", ["ADA", "Ada", "ａｄａ", "\u0430da", "ＡＤＡ", "𝔞𝔡𝔞", " ada "])
def test_confusable_and_case_folded_names_cannot_join(app, code, name):
    response = app.test_client().post("/", data={"name": name, "code": code, "join": ""})
    assert response.status_code == 400
    assert b"looks like it" in response.data


# -- sizes and methods -----------------------------------------------------------


def test_oversized_body_is_413(app):
    client = app.test_client()
    before = room_count(app)
    response = client.post("/", data={"name": "ada", "create": "", "pad": "x" * 17_000})
    assert response.status_code == 413
    assert room_count(app) == before


def test_oversized_body_without_content_length_is_413(app):
    body = b"name=ada&create=&pad=" + b"x" * 40_000
    response = app.test_client().post(
        "/",
        input_stream=io.BytesIO(body),
        content_type="application/x-www-form-urlencoded",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


def test_too_many_multipart_parts_is_413(app):
    form = {"name": "ada", "create": ""}
    form.update({f"f{i}": "x" for i in range(30)})
    before = room_count(app)
    response = app.test_client().post("/", data=form, content_type="multipart/form-data")
    assert response.status_code == 413
    assert room_count(app) == before


def test_too_many_urlencoded_parts_is_413(app):
    body = "name=ada&create=&" + "&".join(f"f{i}=" for i in range(2000))
    assert len(body) < 16 * 1024
    before = room_count(app)
    response = app.test_client().post(
        "/", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert room_count(app) == before


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "application/octet-stream", "multipart/form-data"],
)
def test_bodies_that_are_not_forms_are_400(app, content_type):
    before = room_count(app)
    response = app.test_client().post(
        "/", data=b'{"name": "ada", "create": ""}', content_type=content_type
    )
    assert response.status_code == 400
    assert room_count(app) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/"),
        ("DELETE", "/"),
        ("PATCH", "/"),
        ("GET", "/room/ABCD/leave"),
        ("PUT", "/room/ABCD/leave"),
        ("POST", "/room/ABCD"),
        ("DELETE", "/room/ABCD"),
        ("POST", "/healthz"),
    ],
)
def test_wrong_methods_are_405(app, method, path):
    response = app.test_client().open(path, method=method)
    assert response.status_code == 405


def test_405_names_the_allowed_methods(app):
    response = app.test_client().put("/")
    assert response.status_code == 405
    assert set(response.headers.get("Allow", "").replace(" ", "").split(",")) >= {"GET", "POST"}
