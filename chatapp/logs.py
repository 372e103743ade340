"""One structured log line per join, leave, refusal and error.

Lines are JSON on the ``chatapp.events`` logger, so that log pipelines can
parse them and no user-supplied string can forge a line. They carry the
room, the client address and the outcome, never message text, cookies,
tokens or member ids (which act as bearer secrets inside the signed cookie).
"""

from __future__ import annotations

import json
import logging

from flask import has_request_context
from flask import request

events = logging.getLogger("chatapp.events")


def log_event(event: str, **fields: object) -> None:
    """Write one JSON line for ``event``, with the client address when known."""
    if not events.isEnabledFor(logging.INFO):
        return
    record: dict[str, object] = {"event": event}
    if has_request_context():
        record["addr"] = request.remote_addr
    record.update(fields)
    events.info(json.dumps(record, ensure_ascii=False, separators=(",", ":")))


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
