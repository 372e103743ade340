"""One structured log line per join and leave; refusals at a bounded rate.

Lines are JSON on the ``chatapp.events`` logger, so that log pipelines can
parse them and no user-supplied string can forge a line. They carry the
room, the client address and the outcome, never message text, cookies,
tokens or member ids (which act as bearer secrets inside the signed cookie).
A client can be refused as fast as it sends, so refusals go through the
app's RefusalLog (chatapp.refusals): one line per reason and address every
10 s, with a count.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import current_app
from flask import has_request_context
from flask import request

from chatapp.addresses import address_key

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

    chatapp.refusals decides when the line is written; ``addr`` is the
    client address (IPv6 addresses count per /64, as the limits do).
    """
    current_app.extensions["refusal_log"].refuse(
        event, reason, address_key(addr) if addr else "", **fields
    )


def skip_record_details() -> None:
    """Stop every log record from looking up its thread and its caller.

    No log format here shows them (gunicorn's shows the process id, which
    stays), and under gevent the thread lookup makes a dummy thread for each
    greenlet that logs (about 12 us for the first record of each join). The
    logging HOWTO's "Optimization" section names these switches; they are
    process-wide, so only the servers' entry points call this.
    """
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None
