"""QR codes of invite links, drawn on the server as SVG."""

from __future__ import annotations

import io

import segno


def invite_qr_svg(url: str) -> bytes:
    """Return a QR code of ``url`` as a standalone SVG document."""
    code = segno.make(url, error="m", micro=False)
    out = io.BytesIO()
    # Dark modules on a white quiet zone, whatever the page's theme: scanners
    # need the contrast and the margin.
    code.save(
        out,
        kind="svg",
        xmldecl=False,
        scale=6,
        border=4,
        dark="#000",
        light="#fff",
        title="QR code of the invite link",
    )
    return out.getvalue()
