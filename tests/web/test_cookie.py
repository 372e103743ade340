"""The session cookie under attack: forged, tampered, replayed; its flags and contents."""

from __future__ import annotations

import json
import re

import pytest

from chatapp import create_app
from chatapp.sockets import CHAT_NAMESPACE
from tests.support.cookies import readable
from tests.support.cookies import signer
from tests.support.socket_events import events


def set_session(client, value):
    client.set_cookie("session", value)


def test_cookie_signed_with_another_key_is_ignored(app, room, socketio_client, refusals):
    code, ada, _ = room
    real = ada.client.get_cookie("session").value
    claims = readable(real)  # the attacker can read the real cookie's claims...
    forged = signer(app, "not-the-secret").dumps(claims)  # ...but cannot sign them
    mallory = app.test_client()
    set_session(mallory, forged)
    assert mallory.get(f"/room/{code}").status_code == 303
    assert not socketio_client(mallory, auth={"room": code}).is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "not_joined"}]


def test_cookie_with_a_guessed_member_id_is_refused(app, room, socketio_client, refusals):
    # Even a correctly signed claim is only a claim: the registry decides.
    code, ada, _ = room
    forged = signer(app, app.secret_key).dumps({"rooms": [[code, "guessed-member-id", "ada"]]})
    mallory = app.test_client()
    set_session(mallory, forged)
    assert mallory.get(f"/room/{code}").status_code == 303
    assert not socketio_client(mallory, auth={"room": code}).is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "not_joined"}]


def test_cookie_claiming_another_room_with_own_member_id_is_refused(app, people, room, refusals):
    code, ada, _ = room
    eve = people()
    other = eve.create_room("eve")
    (entry,) = readable(eve.client.get_cookie("session").value)["rooms"]
    # Eve re-signs (say, with a leaked key) her own seat id under ada's room code.
    forged = signer(app, app.secret_key).dumps({"rooms": [[code, entry[1], "ada"]]})
    set_session(eve.client, forged)
    assert not eve.socket(room=code).is_connected(CHAT_NAMESPACE)
    assert eve.client.get(f"/room/{other}").status_code == 303
    assert refusals == [{"message": "not_joined"}]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v[:-2] + ("AA" if v[-2:] != "AA" else "BB"),  # signature
        lambda v: v.replace(".", ".x", 1),  # payload
        lambda v: v[: len(v) // 2],  # truncated
        lambda v: "",
        lambda v: "." + "A" * 3900,
        lambda v: "not-base64-%%%.x.y",
        lambda v: v + "." + v,
    ],
)
def test_tampered_cookie_is_an_empty_session(app, room, socketio_client, refusals, tamper):
    code, ada, _ = room
    mallory = app.test_client()
    set_session(mallory, tamper(ada.client.get_cookie("session").value))
    assert mallory.get(f"/room/{code}").status_code == 303
    assert not socketio_client(mallory, auth={"room": code}).is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "not_joined"}]
    # The lobby still works for it: a fresh membership replaces the garbage.
    response = mallory.post("/", data={"name": "mallory", "code": code, "join": ""})
    assert response.status_code == 303


@pytest.mark.parametrize(
    "claims",
    [
        {"rooms": "ABCD"},
        {"rooms": [["ABCD"]]},
        {"rooms": [[1, 2, 3]]},
        {"rooms": [None, {"code": "ABCD"}]},
        {"rooms": [["ABCD", "x", "y", "z"]]},
        [],
        # Not an object at all: Flask's own interface answers these with a 500.
        "ABCD",
        17,
        None,
        [["rooms", "ABCD"]],
        ["ro", "om"],
    ],
)
def test_validly_signed_odd_shapes_do_not_crash(app, socketio_client, refusals, claims):
    client = app.test_client()
    set_session(client, signer(app, app.secret_key).dumps(claims))
    assert client.get("/room/ABCD").status_code == 303
    assert not socketio_client(client, auth={"room": "ABCD"}).is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "not_joined"}]
    assert client.post("/", data={"name": "x", "create": ""}).status_code == 303


@pytest.mark.parametrize("secret", [123, {"a": 1}, ["x"], None])
def test_validly_signed_csrf_secret_of_another_type_is_a_new_one(secret):
    app = create_app("config.TestingConfig", {"WTF_CSRF_ENABLED": True})
    client = app.test_client()
    set_session(client, signer(app, app.secret_key).dumps({"csrf_token": secret}))
    html = client.get("/").data.decode()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    created = client.post("/", data={"name": "ada", "create": "", "csrf_token": token})
    assert created.status_code == 303
    code = created.headers["Location"].rsplit("/", 1)[1]
    left = client.post(f"/room/{code}/leave", data={"csrf_token": token})
    assert left.status_code == 303


def test_cookie_signed_with_a_rotated_out_key_still_counts(app, room):
    # The session serializer is built once per key: a new key with the old one
    # among SECRET_KEY_FALLBACKS keeps old cookies; without it they are void.
    code, ada, _ = room
    old_cookie = ada.client.get_cookie("session").value
    app.config.update(SECRET_KEY="rotated", SECRET_KEY_FALLBACKS=[app.secret_key])
    assert ada.client.get(f"/room/{code}").status_code == 200
    app.config.update(SECRET_KEY_FALLBACKS=[])
    assert ada.client.get(f"/room/{code}").status_code == 200  # re-signed with the new key
    replay = app.test_client()
    set_session(replay, old_cookie)
    assert replay.get(f"/room/{code}").status_code == 303


def test_replay_after_leaving_is_refused_everywhere(app, room, socketio_client, refusals):
    code, ada, bob = room
    ada.socket(room=code)
    bob.socket(room=code)
    old = bob.client.get_cookie("session").value
    assert bob.client.post(f"/room/{code}/leave").status_code == 303
    replay = app.test_client()
    set_session(replay, old)
    assert replay.get(f"/room/{code}").status_code == 303
    assert replay.get(f"/room/{code}/qr.svg").status_code == 404
    assert not socketio_client(replay, auth={"room": code}).is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "not_joined"}]
    # The name is free again, and the replayed cookie cannot take it back by connecting.
    cy = app.test_client()
    assert cy.post("/", data={"name": "bob", "code": code, "join": ""}).status_code == 303
    assert not socketio_client(replay, auth={"room": code}).is_connected(CHAT_NAMESPACE)
    # Nor can the replay make the room record anything.
    (joined,) = events(ada.socket(room=code), "joined")
    assert [m["kind"] for m in joined["history"]] == ["join", "join", "leave"]


def test_replay_of_leave_is_harmless(app, room):
    code, _, bob = room
    old = bob.client.get_cookie("session").value
    assert bob.client.post(f"/room/{code}/leave").status_code == 303
    replay = app.test_client()
    set_session(replay, old)
    assert replay.post(f"/room/{code}/leave").status_code == 303
    assert replay.post(f"/room/{code}/leave").status_code == 303


def test_cookie_flags(app):
    client = app.test_client()
    response = client.post("/", data={"name": "ada", "create": ""})
    cookie = response.headers["Set-Cookie"]
    parts = [p.strip().lower() for p in cookie.split(";")]
    assert "httponly" in parts and "samesite=lax" in parts
    assert "secure" not in parts  # plain HTTP by default
    assert "path=/" in parts


def test_cookie_is_sent_again_only_when_it_changes(app, room):
    code, ada, _ = room
    ada.client.get(f"/room/{code}")  # the first page with a form adds its CSRF secret
    assert "Set-Cookie" not in ada.client.get(f"/room/{code}").headers
    assert "Set-Cookie" not in ada.client.get("/").headers
    response = ada.client.post(f"/room/{code}/leave")
    assert "Set-Cookie" in response.headers  # the membership went


@pytest.mark.settings(SESSION_COOKIE_SECURE=True)
def test_cookie_is_secure_when_served_over_https(app):
    client = app.test_client()
    response = client.post("/", data={"name": "ada", "create": ""}, base_url="https://localhost")
    parts = [p.strip().lower() for p in response.headers["Set-Cookie"].split(";")]
    assert "secure" in parts and "httponly" in parts and "samesite=lax" in parts


@pytest.mark.settings(CREATES_PER_MINUTE=100)
def test_what_the_readable_cookie_holds(app):
    client = app.test_client()
    for i in range(3):
        assert client.post("/", data={"name": f"ada{i}", "create": ""}).status_code == 303
    data = readable(client.get_cookie("session").value)
    assert set(data) <= {"rooms", "csrf_token", "_permanent"}
    rooms = data["rooms"]
    assert len(rooms) == 3
    member_ids = {entry[1] for entry in rooms}
    assert len(member_ids) == 3
    for code, member_id, name in rooms:
        assert len(code) == 4 and name.startswith("ada")
        assert len(member_id) >= 16  # ~96 random bits: not guessable
    text = json.dumps(data)
    assert app.secret_key not in text and "127.0.0.1" not in text


@pytest.mark.settings(CREATES_PER_MINUTE=100)
def test_cookie_stays_small_with_ten_long_astral_names(app):
    client = app.test_client()
    for i in range(11):
        name = "".join(chr(0x1F600 + (i * 7 + k * 13) % 80) for k in range(32))
        assert client.post("/", data={"name": name, "create": ""}).status_code == 303
    assert len(readable(client.get_cookie("session").value)["rooms"]) == 10
    assert len(client.get_cookie("session").value) < 4000  # browsers drop cookies over 4 KiB
