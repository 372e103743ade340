"""The invite link's QR code: ``GET /room/<CODE>/qr.svg``, for members only."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from chatapp.web.qr import invite_qr_svg

SVG_NS = "{http://www.w3.org/2000/svg}"


def test_member_gets_an_svg_of_the_invite_link(app, people):
    ada = people()
    code = ada.create_room("ada")

    response = ada.client.get(f"/room/{code}/qr.svg")

    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    root = ET.fromstring(response.data)
    assert root.tag == f"{SVG_NS}svg"
    assert root.find(f".//{SVG_NS}path") is not None
    # Drawn from the very link the room page shows and copies.
    page = ada.client.get(f"/room/{code}").get_data(as_text=True)
    invite = f"http://localhost/?code={code}"
    assert f'data-invite-url="{invite}"' in page
    assert response.data == invite_qr_svg(invite)


def test_code_in_the_path_is_case_insensitive(people):
    ada = people()
    code = ada.create_room("ada")

    response = ada.client.get(f"/room/{code.lower()}/qr.svg")

    assert response.status_code == 200
    assert response.data == invite_qr_svg(f"http://localhost/?code={code}")


def test_stranger_gets_404(app, people):
    code = people().create_room("ada")
    stranger = app.test_client()

    response = stranger.get(f"/room/{code}/qr.svg")

    assert response.status_code == 404
    assert b"<svg" not in response.data


def test_member_of_another_room_gets_404(people):
    code = people().create_room("ada")
    bob = people()
    bob.create_room("bob")

    assert bob.client.get(f"/room/{code}/qr.svg").status_code == 404


def test_unknown_room_gets_404(people):
    ada = people()
    ada.create_room("ada")

    assert ada.client.get("/room/ZZZZ/qr.svg").status_code == 404


def test_after_leaving_gets_404(people):
    ada = people()
    code = ada.create_room("ada")
    ada.client.post(f"/room/{code}/leave")

    assert ada.client.get(f"/room/{code}/qr.svg").status_code == 404


def test_qr_svg_is_a_document_with_a_title():
    svg = invite_qr_svg("http://example.test/?code=ABCD")

    root = ET.fromstring(svg)
    assert root.find(f"{SVG_NS}title").text == "QR code of the invite link"
    assert root.find(f".//{SVG_NS}path[@class='qrline']").get("d")
