"""GroupCommit: calls that overlap share a round trip; each gets its own result."""

from __future__ import annotations

import threading
import time

from chatapp.stores.batching import GroupCommit


class Backend:
    """An ``execute`` that takes a while per batch and records the batches."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, calls):
        with self.lock:
            self.batches.append(list(calls))
        time.sleep(self.delay)
        return [ValueError(f"odd {c}") if c < 0 else c * 10 for c in calls]


def run_concurrently(commit, calls, stagger=0.001):
    """Call ``commit`` once per call, each in a thread started ``stagger`` s after the last.

    Return each call's result, or the exception it raised.
    """
    results = {}

    def one(call):
        try:
            results[call] = commit(call)
        except Exception as error:  # noqa: BLE001 - the test looks at it
            results[call] = error

    threads = [threading.Thread(target=one, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
        time.sleep(stagger)
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads), "a caller never returned"
    return results


def test_a_lone_call_runs_at_once():
    backend = Backend(delay=0)
    commit = GroupCommit(backend)
    assert [commit(1), commit(2), commit(3)] == [10, 20, 30]
    assert backend.batches == [[1], [2], [3]]


def test_overlapping_calls_share_round_trips_and_keep_their_order():
    backend = Backend()
    commit = GroupCommit(backend)
    calls = list(range(1, 41))
    results = run_concurrently(commit, calls)
    assert results == {call: call * 10 for call in calls}
    assert len(backend.batches) < len(calls) / 2  # most went out together
    assert [call for batch in backend.batches for call in batch] == calls  # queue order


def test_each_caller_gets_its_own_error():
    commit = GroupCommit(Backend())
    results = run_concurrently(commit, [1, -2, 3, -4])
    assert results[1] == 10 and results[3] == 30
    assert isinstance(results[-2], ValueError) and str(results[-2]) == "odd -2"
    assert isinstance(results[-4], ValueError) and str(results[-4]) == "odd -4"


def test_a_failed_round_trip_fails_its_batch_only():
    state = {"fail": True}

    def flaky(calls):
        time.sleep(0.02)
        if state.pop("fail", False):
            raise ConnectionError("gone")
        return [c for c in calls]

    commit = GroupCommit(flaky)
    # 1 goes alone; 2 and 3 queue during its round trip and go together.
    results = run_concurrently(commit, [1, 2, 3], stagger=0.005)
    assert isinstance(results[1], ConnectionError)
    assert results[2] == 2 and results[3] == 3  # the next batch went through


def test_it_stays_usable_after_bursts():
    backend = Backend(delay=0.005)
    commit = GroupCommit(backend)
    for _ in range(3):
        calls = list(range(1, 21))
        assert run_concurrently(commit, calls) == {c: c * 10 for c in calls}
    assert commit(7) == 70
