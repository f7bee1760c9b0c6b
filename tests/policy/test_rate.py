"""The token bucket and the trunk/account rate limits, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.config import ConfigError, load_config
from voiceplane.policy.rate import RateLimits, TokenBucket, default_burst


def test_a_full_bucket_lets_its_burst_through_then_one_per_period() -> None:
    bucket = TokenBucket(10, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait(0.0) == pytest.approx(0.1)
    assert not bucket.take(0.05)
    assert bucket.take(0.1)
    assert not bucket.take(0.1)


def test_tokens_never_pile_up_past_the_burst() -> None:
    bucket = TokenBucket(5, burst=2)
    assert bucket.available(0.0)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]


def test_zero_rate_is_unlimited() -> None:
    bucket = TokenBucket(0)
    assert bucket.unlimited
    assert all(bucket.take(0.0) for _ in range(10_000))
    assert bucket.wait(0.0) == 0


def test_default_burst_is_a_tenth_of_a_second_at_least_one() -> None:
    assert default_burst(5) == 1 and default_burst(100) == 10 and default_burst(101) == 11
    assert TokenBucket(50).burst == 5


def test_a_call_taking_more_than_there_is_goes_into_debt() -> None:
    bucket = TokenBucket(1, burst=1)
    assert bucket.take(0.0, 3)  # three parallel INVITEs go at once ...
    assert not bucket.take(2.0)  # ... and the next call waits for the debt to be paid
    assert bucket.wait(2.0) == pytest.approx(1.0)
    assert bucket.take(3.0)


def test_a_clock_that_goes_back_does_not_mint_tokens() -> None:
    bucket = TokenBucket(1, burst=1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(5.5)
    assert bucket.take(6.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(-1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, burst=-1)
    with pytest.raises(ValueError, match="count"):
        TokenBucket(1).take(0.0, 0)


@given(
    rate=st.integers(1, 200),
    burst=st.integers(1, 50),
    times=st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=400),
)
def test_no_window_of_a_second_holds_more_than_rate_plus_burst(
    rate: int, burst: int, times: list[float]
) -> None:
    bucket = TokenBucket(rate, burst=burst)
    taken = [moment for moment in sorted(times) if bucket.take(moment)]
    for index, start in enumerate(taken):
        inside = [moment for moment in taken[index:] if moment < start + 1.0]
        assert len(inside) <= rate + burst


def test_limits_need_the_trunk_and_the_account_token() -> None:
    limits = RateLimits(trunk_cps=10, trunk_burst=2)
    assert limits.admit(0.0, 1, cps=1)
    assert not limits.admit(0.0, 1, cps=1)  # the account's one token is gone
    assert limits.empty_accounts(0.0) == {1}
    assert limits.admit(0.0, 2, cps=None)  # another account: the trunk still has one
    assert not limits.admit(0.0, 3, cps=None)  # the trunk is empty now
    assert limits.wait(0.0) == pytest.approx(0.1)  # the trunk's next token comes first
    assert limits.admit(0.1, 3, cps=None)


def test_an_account_refused_by_the_trunk_keeps_its_token() -> None:
    limits = RateLimits(trunk_cps=1, trunk_burst=1)
    assert limits.admit(0.0, 1, cps=None)
    assert not limits.admit(0.0, 2, cps=1)
    assert limits.empty_accounts(0.0) == set()  # account 2 paid nothing


def test_an_account_limit_can_change_or_go() -> None:
    limits = RateLimits()
    assert limits.admit(0.0, 1, cps=1)
    assert not limits.admit(0.0, 1, cps=1)
    assert limits.admit(0.0, 1, cps=None)  # no limit any more
    assert limits.empty_accounts(0.0) == set()


def test_the_trunk_rate_and_queue_time_are_settings() -> None:
    config = load_config(None, {})
    assert (config.trunk.max_cps, config.trunk.cps_burst, config.trunk.queue_timeout) == (0, 0, 300)
    config = load_config(
        None,
        {"VOICEPLANE_TRUNK_MAX_CPS": "12.5", "VOICEPLANE_TRUNK_CPS_BURST": "3",
         "VOICEPLANE_TRUNK_QUEUE_TIMEOUT": "30"},
    )  # fmt: skip
    assert (config.trunk.max_cps, config.trunk.cps_burst, config.trunk.queue_timeout) == (
        12.5, 3, 30,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="max_cps"):
        load_config(None, {"VOICEPLANE_TRUNK_MAX_CPS": "-1"})
