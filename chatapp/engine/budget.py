"""What one connection may send: packets and bytes a second, and invalid input.

PROTOCOL.md ("Version 2: limits"): every packet a connection sends spends
its input budget, whatever it is, and invalid input spends a budget of its
own; past either the connection is closed. The budgets are token buckets
refilled by the monotonic clock. Spending is on the path of every frame, so
an InputBudget is a few floats and one clock read per call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# A connection may send this much invalid input (bursts, then per second):
# enough for any client's mistakes and a test's fuzzing, not for a flood.
INVALID_BURST = 200
INVALID_PER_SECOND = 1.0


def refilled(tokens: float, since: float, now: float, rate: float, burst: float) -> float:
    """Return the tokens a bucket holds at ``now``, refilled since ``since`` up to ``burst``."""
    return min(burst, tokens + (now - since) * rate)


@dataclass(frozen=True, slots=True)
class InputPolicy:
    """The rates and bursts every connection's budget starts from."""

    packets_per_second: float
    packet_burst: int
    bytes_per_second: float
    byte_burst: int
    invalid_per_second: float = INVALID_PER_SECOND
    invalid_burst: int = INVALID_BURST


class InputBudget:
    """One connection's token buckets: packets, bytes and invalid input.

    Every connection has one, so it is kept small: the invalid-input bucket
    exists only once the connection has sent some.
    """

    __slots__ = ("policy", "addr", "_packets", "_bytes", "_at", "_invalid")

    def __init__(self, policy: InputPolicy, addr: str = "") -> None:
        self.policy = policy
        self.addr = addr  # the client address key, for the refusal log
        self._packets = float(policy.packet_burst)
        self._bytes = float(policy.byte_burst)
        self._at = time.monotonic()
        self._invalid: tuple[float, float] | None = None  # (tokens, when)

    def spend(self, size: int, packets: int = 1) -> bool:
        """Spend ``packets`` packets of ``size`` bytes in all; False once past the budget."""
        policy = self.policy
        now = time.monotonic()
        at, self._at = self._at, now
        self._packets = (
            refilled(self._packets, at, now, policy.packets_per_second, policy.packet_burst)
            - packets
        )
        self._bytes = (
            refilled(self._bytes, at, now, policy.bytes_per_second, policy.byte_burst) - size
        )
        return self._packets >= 0 and self._bytes >= 0

    def spend_invalid(self) -> bool:
        """Spend one unit of invalid input; False once past its budget."""
        policy = self.policy
        now = time.monotonic()
        tokens, at = self._invalid or (policy.invalid_burst, now)
        tokens = refilled(tokens, at, now, policy.invalid_per_second, policy.invalid_burst) - 1
        self._invalid = (tokens, now)
        return tokens >= 0


class AddressRate:
    """A token bucket per client address: ``per_minute`` a minute, in bursts of as many.

    Buckets that have refilled are forgotten by ``prune`` (and when more
    than ``max_addresses`` are held), so memory follows the addresses seen
    in the last minute or so.
    """

    def __init__(self, per_minute: int, max_addresses: int = 50_000) -> None:
        self.rate = per_minute / 60
        self.burst = float(per_minute)
        self.max_addresses = max_addresses
        self._buckets: dict[str, tuple[float, float]] = {}  # addr -> (tokens, when)

    def take(self, addr: str) -> bool:
        """Spend one token of ``addr``; False (spending nothing) when none is left."""
        now = time.monotonic()
        tokens = self._tokens(addr, now)
        if tokens < 1:
            return False
        if addr not in self._buckets and len(self._buckets) >= self.max_addresses:
            self.prune()
        self._buckets[addr] = (tokens - 1, now)
        return True

    def prune(self) -> None:
        """Forget the buckets that have refilled."""
        now = time.monotonic()
        for addr in [a for a in self._buckets if self._tokens(a, now) >= self.burst]:
            del self._buckets[addr]

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, addr: str, now: float) -> float:
        entry = self._buckets.get(addr)
        if entry is None:
            return self.burst
        tokens, at = entry
        return refilled(tokens, at, now, self.rate, self.burst)
