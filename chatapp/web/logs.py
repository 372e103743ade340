"""One structured log line per join and leave; refusals at a bounded rate.

Lines are JSON on the ``chatapp.events`` logger, so that log pipelines can
parse them and no user-supplied string can forge a line. They carry the
room, the client address and the outcome, never message text, cookies,
tokens or member ids (which act as bearer secrets inside the signed cookie).
A client can be refused as fast as it sends, so refusals go through the
app's RefusalLog (chatapp.web.refusals): one line per reason and address every
10 s, with a count.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import current_app
from flask import has_request_context
from flask import request

from chatapp.web.addresses import address_key

events = logging.getLogger("chatapp.events")


def log_event(event: str, **fields: object) -> None:
    """Write one JSON line for ``event``, with the client address when known."""
    if not events.isEnabledFor(logging.INFO):
        return
    record: dict[str, object] = {"event": event}
    if has_request_context():
        record["addr"] = request.remote_addr
    record.update(fields)
    write_event(record)


def write_event(record: dict[str, Any]) -> None:
    """Write ``record`` as one JSON line on the events logger."""
    if events.isEnabledFor(logging.INFO):
        events.info(json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def log_refusal(event: str, reason: str, addr: str | None, **fields: object) -> None:
    """Count a refusal of ``addr``: a line at most every 10 s per reason and address.

    chatapp.web.refusals decides when the line is written; ``addr`` is the
    client address (IPv6 addresses count per /64, as the limits do).
    """
    current_app.extensions["refusal_log"].refuse(
        event, reason, address_key(addr) if addr else "", **fields
    )
