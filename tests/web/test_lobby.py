"""The lobby and room pages over the Flask test client."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import flask_wtf.csrf
import pytest
from flask import template_rendered

from chatapp.web.memberships import MAX_MEMBERSHIPS


def post(client, **fields):
    return client.post("/", data=fields)


def test_lobby_form(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.data.decode()
    assert 'name="name"' in html and 'name="code"' in html
    assert 'name="create"' in html and "Create a room" in html
    assert 'name="join"' in html and "Join room" in html
    assert '<label class="field-label" for="name">' in html


@pytest.mark.parametrize("raw", ["abcd", " ABCD ", "AbCd"])
def test_lobby_invite_link_prefills_code(client, raw):
    response = client.get("/", query_string={"code": raw})
    assert b'value="ABCD"' in response.data


@pytest.mark.settings(ROOM_CODE_LENGTH=20)
def test_longer_codes_fit_the_code_field_and_its_errors(client):
    code = post(client, name="ada", create="").headers["Location"].rsplit("/", 1)[1]
    html = client.get("/", query_string={"code": f"  {code.lower()}  "}).data.decode()
    assert f'value="{code}"' in html and 'maxlength="32"' in html
    refused = post(client, name="bob", code="ABCD", join="")
    assert refused.status_code == 400
    assert b"Room codes are 20 letters, like ABCDEFGHIJKLMNOPQRST." in refused.data


def test_lobby_prefill_is_escaped(client):
    response = client.get("/", query_string={"code": '"><script>x</script>'})
    assert b"<script>x</script>" not in response.data


def test_create_redirects_to_room(client):
    response = post(client, name="ada", code="", create="")
    assert response.status_code == 303
    assert re.fullmatch(r"/room/[A-Z]{4}", response.headers["Location"])
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    code = response.headers["Location"][-4:]
    assert code.encode() in page.data and b"ada" in page.data


def test_create_ignores_the_code_field(client):
    response = post(client, name="ada", code="not a code", create="1")
    assert response.status_code == 303


def test_join_redirects_and_code_is_case_insensitive(app, client):
    code = post(app.test_client(), name="ada", create="")
    code = code.headers["Location"][-4:]
    response = post(client, name="bob", code=f" {code.lower()} ", join="")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/room/{code}"
    assert client.get(f"/room/{code.lower()}").status_code == 200


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "", "create": ""}, "name", b"Enter your name."),
        ({"name": "   ", "create": ""}, "name", b"Enter your name."),
        ({"name": "x" * 33, "create": ""}, "name", b"Names are at most 32 characters."),
        ({"name": "a\u202eb", "create": ""}, "name", b"direction or invisible"),
        ({"name": "a\x00b", "create": ""}, "name", b"direction or invisible"),
        ({"name": "bob", "code": "", "join": ""}, "code", b"Enter the room code."),
        ({"name": "bob", "code": "AB", "join": ""}, "code", b"Room codes are 4 letters"),
        ({"name": "bob", "code": "AB1D", "join": ""}, "code", b"Room codes are 4 letters"),
        ({"name": "bob", "code": "ZZZQ", "join": ""}, "code", b"No room has the code ZZZQ."),
    ],
)
def test_lobby_errors_next_to_the_field(client, fields, field, message):
    response = client.post("/", data=fields)
    assert response.status_code == 400
    html = response.data.decode()
    error = re.search(f'<p id="{field}-error" class="field-error">([^<]*)</p>', html)
    assert error and message.decode() in error.group(1)
    field_input = re.search(f'<input [^>]*id="{field}"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in field_input and f"{field}-error" in field_input
    assert client.get("/room/ZZZQ").status_code == 303  # no membership recorded


@pytest.mark.parametrize("name", ["ada", "ADA", "\u0430da", "ａｄａ"])
def test_join_name_taken(client, code, name):
    response = post(client, name=name, code=code, join="")
    assert response.status_code == 400
    assert b"Someone in this room has that name" in response.data


@pytest.mark.settings(ROOM_MAX_MEMBERS=2)
def test_join_room_full(app, client, code):
    assert post(app.test_client(), name="bob", code=code, join="").status_code == 303
    response = post(client, name="cy", code=code, join="")
    assert response.status_code == 400 and b"This room is full." in response.data


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "ada", "code": ""},  # no button
        {"name": "ada", "code": "ABCD", "create": "", "join": ""},  # both
    ],
)
def test_lobby_needs_exactly_one_button(client, fields):
    response = client.post("/", data=fields)
    assert response.status_code == 400
    assert b"Choose either Create a room or Join room." in response.data


def test_lobby_refuses_duplicated_fields(client):
    response = client.post("/", data={"name": ["ada", "bob"], "create": ""})
    assert response.status_code == 400


@pytest.mark.settings(CREATES_PER_MINUTE=2)
def test_create_limit_per_address(client):
    for _ in range(2):
        assert post(client, name="ada", create="").status_code == 303
    response = post(client, name="ada", create="")
    assert response.status_code == 429
    assert b"Too many attempts" in response.data
    other = client.post(
        "/", data={"name": "ada", "create": ""}, environ_base={"REMOTE_ADDR": "10.9.9.9"}
    )
    assert other.status_code == 303


@pytest.mark.settings(CREATES_PER_MINUTE=1)
def test_failed_creates_do_not_count(client):
    for _ in range(3):
        assert post(client, name="", create="").status_code == 400
    assert post(client, name="ada", create="").status_code == 303


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=3)
def test_failed_join_limit_per_address(app, client, code):
    for _ in range(3):
        assert post(client, name="bob", code="ZZZQ", join="").status_code == 400
    # even a right guess is refused now, and from a new cookie too
    assert post(client, name="bob", code=code, join="").status_code == 429
    assert post(app.test_client(), name="bob", code=code, join="").status_code == 429


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=1, TRUSTED_PROXIES=1)
def test_forwarded_for_used_with_trusted_proxies(app):
    client = app.test_client()

    def join_from(address):
        return client.post(
            "/",
            data={"name": "bob", "code": "ZZZQ", "join": ""},
            headers={"X-Forwarded-For": f"6.6.6.6, {address}"},
        )

    assert join_from("10.0.0.1").status_code == 400
    assert join_from("10.0.0.1").status_code == 429
    assert join_from("10.0.0.2").status_code == 400  # the proxy's nearest entry counts


# -- per-address limits nobody evades; races for one seat -------------------------------


def attempt_join(client, code="ZZZZ", name="x", **kwargs):
    return client.post("/", data={"name": name, "code": code, "join": ""}, **kwargs)


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=3)
def test_failed_join_limit_survives_new_cookies_and_forged_forwarded_for(app):
    statuses = [
        attempt_join(app.test_client(), headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code
        for i in range(5)
    ]
    assert statuses == [400, 400, 400, 429, 429]


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=2)
def test_failed_join_limit_counts_an_ipv6_64_as_one(app):
    addresses = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:abcd::9"]
    statuses = [
        attempt_join(app.test_client(), environ_overrides={"REMOTE_ADDR": a}).status_code
        for a in addresses
    ]
    assert statuses == [400, 400, 429]
    other = attempt_join(app.test_client(), environ_overrides={"REMOTE_ADDR": "2001:db8:1:3::1"})
    assert other.status_code == 400  # the next /64 has its own budget


@pytest.mark.settings(CREATES_PER_MINUTE=2)
def test_create_limit_survives_new_cookies_forged_headers_and_the_same_64(app):
    def create(addr, forwarded):
        return app.test_client().post(
            "/",
            data={"name": "ada", "create": ""},
            headers={"X-Forwarded-For": forwarded, "X-Real-IP": forwarded},
            environ_overrides={"REMOTE_ADDR": addr},
        )

    statuses = [create(f"2001:db8::{i}", f"198.51.100.{i}").status_code for i in range(1, 5)]
    assert statuses == [303, 303, 429, 429]


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=2, TRUSTED_PROXIES=1)
def test_behind_one_proxy_a_client_cannot_prepend_addresses(app):
    # The proxy appends the real peer; whatever the client put before it is not trusted.
    statuses = [
        attempt_join(
            app.test_client(),
            headers={"X-Forwarded-For": f"10.9.9.{i}, 203.0.113.7"},
            environ_overrides={"REMOTE_ADDR": "127.0.0.1"},
        ).status_code
        for i in range(3)
    ]
    assert statuses == [400, 400, 429]


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=1)
def test_rate_limited_join_records_nothing(app, people):
    ada = people()
    code = ada.create_room("ada")
    attacker = app.test_client()
    assert attempt_join(attacker).status_code == 400
    assert attempt_join(attacker, code=code, name="bob").status_code == 429  # even a valid join now
    assert attacker.get(f"/room/{code}").status_code == 303


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=1000)
def test_many_concurrent_joins_for_one_name_seat_one(app, people):
    code = people().create_room("ada")
    clients = [app.test_client() for _ in range(30)]
    barrier = threading.Barrier(len(clients))

    def attempt(client):
        barrier.wait()
        return attempt_join(client, code=code, name="sam").status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        statuses = list(pool.map(attempt, clients))
    assert sorted(statuses) == [303] + [400] * 29


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=1000, ROOM_MAX_MEMBERS=3)
def test_concurrent_joins_for_the_last_seat(app, people):
    ada = people()
    code = ada.create_room("ada")
    people().join(code, "bob")
    clients = [app.test_client() for _ in range(20)]
    barrier = threading.Barrier(len(clients))

    def attempt(pair):
        i, client = pair
        barrier.wait()
        return attempt_join(client, code=code, name=f"guest{i}").status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        statuses = list(pool.map(attempt, enumerate(clients)))
    assert sorted(statuses) == [303] + [400] * 19


# -- limits: a 429 costs little; a refusal records nothing --------------------------

TOO_MANY = "Too many attempts from your network. Wait a minute and try again."


@pytest.fixture
def renders(app):
    """The names of the templates the app renders from now on."""
    seen = []

    def record(sender, template, context, **extra):
        seen.append(template.name)

    template_rendered.connect(record, app)
    yield seen
    template_rendered.disconnect(record, app)


@pytest.fixture
def tokens_made(app, monkeypatch):
    """Count the CSRF tokens made from now on (by a form or a template)."""
    made = []
    real = flask_wtf.csrf.generate_csrf

    def spy(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(flask_wtf.csrf, "generate_csrf", spy)
    monkeypatch.setitem(app.jinja_env.globals, "csrf_token", spy)
    return made


def assert_too_many(response, retry_after):
    """Check a cheap 429: the page made once, Retry-After, the security headers."""
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(retry_after)
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    html = response.data.decode()
    assert TOO_MANY in html and "<title>Too many attempts" in html
    assert '<a class="button button--primary" href="/">Back to the lobby</a>' in html
    assert "csrf_token" not in html


def session_codes(client):
    with client.session_transaction() as session:
        return [entry[0] for entry in session.get("rooms", [])]


@pytest.mark.settings(WTF_CSRF_ENABLED=True, JOIN_FAILURES_PER_MINUTE=1)
def test_too_many_attempts_renders_nothing_and_makes_no_token(client, renders, tokens_made):
    join = {"name": "bob", "code": "ZZZQ", "join": "", "csrf_token": csrf_token(client)}
    assert client.post("/", data=join).status_code == 400
    renders.clear()
    tokens_made.clear()
    refused = client.post("/", data=join)
    assert_too_many(refused, 60)  # 1 failure a minute
    assert renders == [] and tokens_made == []
    # An invalid form too: the budget answers first, and records nothing.
    assert_too_many(client.post("/", data={**join, "name": ""}), 60)
    assert renders == [] and tokens_made == []


@pytest.mark.settings(ROOMS_PER_ADDRESS=2, CREATES_PER_MINUTE=100)
def test_too_many_rooms_from_one_address(app, client, registry, renders):
    for _ in range(2):
        assert post(client, name="ada", create="").status_code == 303
    renders.clear()
    refused = post(client, name="ada", create="")
    assert_too_many(refused, 600)  # until the first idle room expires (ROOM_IDLE_TTL)
    assert renders == []
    assert len(session_codes(client)) == 2 and len(registry.store._rooms) == 2
    other = client.post(
        "/", data={"name": "ada", "create": ""}, environ_base={"REMOTE_ADDR": "10.9.9.9"}
    )
    assert other.status_code == 303


@pytest.mark.settings(CREATES_PER_MINUTE=1, JOIN_FAILURES_PER_MINUTE=1)
def test_every_429_is_the_same_page(app, client):
    post(client, name="ada", create="")
    post(client, name="bob", code="ZZZQ", join="")
    create, join = post(client, name="ada", create=""), post(client, name="bob", join="")
    assert create.status_code == join.status_code == 429
    assert create.data == join.data


@pytest.mark.settings(JOINS_PER_MINUTE=2)
def test_joins_per_minute_per_address(app, code, renders):
    for name in ("bob", "cy"):
        assert post(app.test_client(), name=name, code=code, join="").status_code == 303
    late = app.test_client()
    renders.clear()
    assert_too_many(post(late, name="dan", code=code, join=""), 30)
    assert renders == [] and session_codes(late) == []
    elsewhere = late.post(
        "/",
        data={"name": "dan", "code": code, "join": ""},
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
    )
    assert elsewhere.status_code == 303  # the refused join did not take the name


@pytest.mark.settings(MAX_ROOMS=1)
def test_server_full(app, client, code, registry):
    response = post(client, name="bob", create="")
    assert response.status_code == 503
    assert b"the server is full" in response.data
    assert session_codes(client) == [] and list(registry.store._rooms) == [code]
    assert post(client, name="bob", code=code, join="").status_code == 303  # joins go on


def test_room_page_for_strangers_redirects_to_lobby(client, code):
    response = client.get(f"/room/{code.lower()}")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/?code={code}"


def test_room_page_shows_code_invite_and_leave(client, code):
    post(client, name="bob", code=code, join="")
    html = client.get(f"/room/{code}").data.decode()
    assert f"http://localhost/?code={code}" in html
    assert f'action="/room/{code}/leave"' in html
    assert 'role="log"' in html and 'aria-live="polite"' in html
    assert "<script>" not in html.replace("<script src=", "")  # no inline scripts


def test_room_page_escapes_names(client, code):
    post(client, name="<img src=x onerror=alert(1)>", code=code, join="")
    html = client.get(f"/room/{code}").data.decode()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_session_holds_several_rooms(app, client):
    codes = []
    for i in range(3):
        other = app.test_client()
        codes.append(post(other, name="host", create="").headers["Location"][-4:])
        assert post(client, name=f"me{i}", code=codes[-1], join="").status_code == 303
    for c in codes:
        assert client.get(f"/room/{c}").status_code == 200


@pytest.mark.settings(CREATES_PER_MINUTE=100)
def test_session_holds_at_most_ten_rooms(client):
    codes = [post(client, name="ada", create="").headers["Location"][-4:] for _ in range(11)]
    assert client.get(f"/room/{codes[0]}").status_code == 303  # the oldest was dropped
    for c in codes[1:]:
        assert client.get(f"/room/{c}").status_code == 200
    with client.session_transaction() as session:
        assert len(session["rooms"]) == MAX_MEMBERSHIPS


def test_joining_again_keeps_the_seat(client, code):
    post(client, name="bob", code=code, join="")
    assert post(client, name="bob", code=code, join="").status_code == 303
    with client.session_transaction() as session:
        assert [entry[0] for entry in session["rooms"]] == [code]


def test_leave_drops_membership_and_frees_name(app, client, code):
    post(client, name="bob", code=code, join="")
    with client.session_transaction() as session:
        old_cookie = dict(session)
    response = client.post(f"/room/{code}/leave")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert client.get(f"/room/{code}").status_code == 303
    with client.session_transaction() as session:  # replay the old cookie
        session.update(old_cookie)
    assert client.get(f"/room/{code}").status_code == 303
    assert post(app.test_client(), name="bob", code=code, join="").status_code == 303


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_not_found_page(client):
    response = client.get("/nope")
    assert response.status_code == 404 and b"Not Found" in response.data


# -- CSRF, with protection on --------------------------------------------------


def csrf_token(client):
    html = client.get("/").data.decode()
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_csrf_missing_token_is_400(app):
    client = app.test_client()
    client.get("/")
    response = client.post("/", data={"name": "ada", "create": ""})
    assert response.status_code == 400
    assert b"This form expired" in response.data


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_csrf_wrong_token_is_400(app):
    client = app.test_client()
    csrf_token(client)
    response = client.post("/", data={"name": "ada", "create": "", "csrf_token": "forged"})
    assert response.status_code == 400


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_csrf_token_of_another_session_is_400(app):
    token = csrf_token(app.test_client())
    client = app.test_client()
    client.get("/")
    response = client.post("/", data={"name": "ada", "create": "", "csrf_token": token})
    assert response.status_code == 400


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_csrf_valid_token_creates(app):
    client = app.test_client()
    response = client.post(
        "/", data={"name": "ada", "create": "", "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 303


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_csrf_protects_leave(app):
    client = app.test_client()
    token = csrf_token(client)
    code = client.post("/", data={"name": "ada", "create": "", "csrf_token": token})
    code = code.headers["Location"][-4:]
    assert client.post(f"/room/{code}/leave").status_code == 400
    assert client.get(f"/room/{code}").status_code == 200
    assert client.post(f"/room/{code}/leave", data={"csrf_token": token}).status_code == 303
