"""RefusalLog: a refusal logged at most once a window per reason and address, with its count."""

from __future__ import annotations

from chatapp.web.refusals import RefusalLog


class Log:
    """A RefusalLog on a clock the test turns, writing into a list."""

    def __init__(self, **options):
        self.now = 0.0
        self.lines = []
        self.tasks = []
        self.log = RefusalLog(
            self.lines.append, self.tasks.append, lambda seconds: None, lambda: self.now, **options
        )


def test_refusal_log_writes_the_first_then_counts_the_rest_of_the_window():
    log = Log()
    for _ in range(500):
        log.log.refuse("send_refused", "rate_limited", "10.0.0.1", room="ABCD")
    assert log.lines == [
        {
            "event": "send_refused",
            "reason": "rate_limited",
            "addr": "10.0.0.1",
            "count": 1,
            "room": "ABCD",
        }
    ]
    log.now = 10.0
    log.log.flush()
    assert log.lines[1]["count"] == 499  # the window's refusals, in one line
    log.now = 20.0
    log.log.flush()  # a quiet window: nothing to say, and forgotten
    assert len(log.lines) == 2 and log.log.open_windows() == 0


def test_refusal_log_keys_are_reason_and_address():
    log = Log()
    log.log.refuse("send_refused", "rate_limited", "10.0.0.1")
    log.log.refuse("send_refused", "too_long", "10.0.0.1")
    log.log.refuse("send_refused", "rate_limited", "10.0.0.2")
    log.log.refuse("send_refused", "rate_limited", "10.0.0.1")
    assert [(line["reason"], line["addr"]) for line in log.lines] == [
        ("rate_limited", "10.0.0.1"),
        ("too_long", "10.0.0.1"),
        ("rate_limited", "10.0.0.2"),
    ]


def test_refusal_log_a_refusal_after_the_window_carries_the_count():
    log = Log()
    for _ in range(3):
        log.log.refuse("lobby_refused", "RoomNotFound", "10.0.0.1")
    log.now = 11.0
    log.log.refuse("lobby_refused", "RoomNotFound", "10.0.0.1")
    assert [line["count"] for line in log.lines] == [1, 3]


def test_refusal_log_runs_one_flushing_task_at_a_time():
    log = Log()
    log.log.refuse("a", "b", "1")
    log.log.refuse("a", "c", "1")
    assert len(log.tasks) == 1


def test_refusal_log_memory_is_bounded_past_max_keys():
    log = Log(max_keys=3)
    for i in range(100):
        log.log.refuse("handshake_refused", "cap", f"10.0.0.{i}")
    assert log.log.open_windows() == 4  # three addresses, then all others as one
    assert log.lines[-1]["addr"] == "*"
