"""InputBudget and the cost of reads: the arithmetic of the input limits, with no server."""

from __future__ import annotations

import socket
import time
import types

import pytest

from chatapp.engine.budget import InputBudget
from chatapp.engine.budget import InputPolicy
from chatapp.engine.transport import Connection
from chatapp.engine.transport import READ_COST_FLOOR

POLICY = InputPolicy(packets_per_second=10, packet_burst=5, bytes_per_second=100, byte_burst=1000)


def test_input_budget_spends_packets_then_refuses_then_refills(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    budget = InputBudget(POLICY, "10.0.0.1")
    assert [budget.spend(1) for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.2  # two packets' worth at 10 a second; the sixth is still owed
    assert [budget.spend(1) for _ in range(2)] == [True, False]


def test_input_budget_spends_bytes_whatever_the_packet_count(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    budget = InputBudget(POLICY)
    assert budget.spend(900, packets=0)
    assert not budget.spend(200, packets=0)  # and owed: the connection closes anyway
    now[0] += 20  # refills to the burst, never past it
    assert budget.spend(1000, packets=0)
    assert not budget.spend(1, packets=0)


def test_input_budget_counts_invalid_input_apart(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    policy = InputPolicy(10, 5, 100, 1000, invalid_per_second=1, invalid_burst=3)
    budget = InputBudget(policy)
    assert [budget.spend_invalid() for _ in range(4)] == [True, True, True, False]
    now[0] += 2
    assert budget.spend_invalid() and budget.spend(1)


def long_frame() -> bytes:
    """A masked text frame of 60,000 bytes."""
    payload = b"x" * 60000
    return bytes([0x81, 0x80 | 127]) + len(payload).to_bytes(8, "big") + b"\0\0\0\0" + payload


@pytest.fixture
def connection():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection = Connection(ours, 65536, set())
    yield connection
    theirs.close()
    connection.release()


def test_a_frame_that_comes_a_byte_at_a_time_is_appended_to_not_copied(connection):
    # A frame fed one byte per read: the reassembly buffer grows in place,
    # and nothing is parsed again until the frame is whole.
    data = long_frame()
    for byte in data[:20]:
        connection._received(bytes((byte,)))
    buffer = connection._buffer
    assert connection._needed == len(data)
    for byte in data[20:-1]:
        connection._received(bytes((byte,)))
    assert connection._buffer is buffer and len(buffer) == len(data) - 1


def test_every_read_costs_at_least_the_floor(connection):
    connection.budget = InputBudget(InputPolicy(1000, 1000, 0, 10 * READ_COST_FLOOR), "10.0.0.1")
    overspent: list[InputBudget] = []
    connection.guard = types.SimpleNamespace(overspent=overspent.append)
    data = long_frame()
    for byte in data[:10]:
        connection._received(bytes((byte,)))  # a byte, priced as READ_COST_FLOOR
    assert not overspent
    connection._received(data[10:11])
    assert overspent == [connection.budget] and connection.closing
