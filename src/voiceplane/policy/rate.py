"""The call-rate limit: a token bucket per trunk and per account (new calls per second).

Sans-IO: the caller passes the current time (any monotonic clock, in seconds) to every
method, so the bucket is a plain unit test with a fake clock. A call that finds no token
waits in the queue (it is not failed); :meth:`TokenBucket.wait` says how long until the
next token, which is when the engine looks at the queue again.

A bucket of rate ``r`` and burst ``b`` lets through at most ``b + r * t`` calls in any
window of ``t`` seconds: with the default burst of a tenth of a second's worth, an
operator allowing ``r`` calls per second sees at most ``r + b`` INVITEs in any second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def default_burst(rate: float) -> int:
    """The burst used when none is configured: a tenth of a second's worth, at least 1.

    Small enough that a one-second window holds hardly more than ``rate`` new calls, large
    enough that the engine, which reads the queue in passes a few tens of milliseconds
    apart, can keep up with the rate.
    """
    return max(1, math.ceil(rate / 10))


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; ``rate`` 0 means unlimited."""

    rate: float
    burst: int = 0  # 0: default_burst(rate)
    tokens: float = field(default=-1.0)  # -1: start full
    updated: float | None = None  # the clock reading of the last refill

    def __post_init__(self) -> None:
        if self.rate < 0 or not math.isfinite(self.rate):
            raise ValueError(f"rate must be 0 (unlimited) or positive, got {self.rate}")
        if self.burst < 0:
            raise ValueError(f"burst must not be negative, got {self.burst}")
        if self.burst == 0:
            self.burst = default_burst(self.rate)
        if self.tokens < 0:
            self.tokens = float(self.burst)

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def _refill(self, now: float) -> None:
        if self.updated is None or now < self.updated:
            # First reading, or a clock that went back: start counting from here.
            self.updated = now
            return
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def available(self, now: float) -> bool:
        """Whether a call may start now (a whole token is there)."""
        if self.unlimited:
            return True
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float, count: int = 1) -> bool:
        """Take ``count`` tokens if a whole token is there; whether it was.

        A call that starts several INVITEs at once (parallel ringing) takes one token for
        each; it may take more than are there (the bucket goes into debt and the next calls
        wait longer), so such a call is never stuck behind a burst smaller than itself.
        """
        if count < 1:
            raise ValueError(f"count must be positive, got {count}")
        if self.unlimited:
            return True
        self._refill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= count
        return True

    def wait(self, now: float) -> float:
        """Seconds until a whole token is there (0 if one is there now)."""
        if self.unlimited:
            return 0.0
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def reconfigure(self, rate: float, burst: int = 0) -> None:
        """New limits, keeping the tokens there (capped at the new burst)."""
        self.rate = rate
        self.burst = burst or default_burst(rate)
        if not self.unlimited:
            self.tokens = min(self.tokens, float(self.burst))


class RateLimits:
    """The trunk's bucket and one per account, created as accounts show up."""

    def __init__(self, *, trunk_cps: float = 0, trunk_burst: int = 0) -> None:
        self.trunk = TokenBucket(trunk_cps, trunk_burst)
        self._accounts: dict[int, TokenBucket] = {}

    def account(self, account_id: int, cps: float | None) -> TokenBucket | None:
        """The bucket of ``account_id`` at ``cps`` (None or 0: the account is not limited)."""
        if not cps:
            self._accounts.pop(account_id, None)
            return None
        bucket = self._accounts.get(account_id)
        if bucket is None:
            bucket = self._accounts[account_id] = TokenBucket(cps)
        elif bucket.rate != cps:
            bucket.reconfigure(cps)
        return bucket

    def admit(self, now: float, account_id: int, cps: float | None, count: int = 1) -> bool:
        """Take the tokens a new call needs from the trunk and its account, or none."""
        bucket = self.account(account_id, cps)
        if not self.trunk.available(now) or (bucket is not None and not bucket.available(now)):
            return False
        self.trunk.take(now, count)
        if bucket is not None:
            bucket.take(now, count)
        return True

    def empty_accounts(self, now: float) -> set[int]:
        """Accounts whose bucket has no whole token now."""
        return {key for key, bucket in self._accounts.items() if not bucket.available(now)}

    def wait(self, now: float) -> float:
        """Seconds until the next empty bucket has a token again (0: none is empty): when
        calls held back by the rate may go."""
        waits = [self.trunk.wait(now)] + [b.wait(now) for b in self._accounts.values()]
        return min((wait for wait in waits if wait > 0), default=0.0)
