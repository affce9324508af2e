"""Token buckets are pure functions: state and time in, verdict and new state out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.ratelimit import Bucket, Limit, RateLimiter, decide, refill, take

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_a_new_bucket_is_full_and_allows_a_burst_up_to_capacity() -> None:
    limit = Limit.per_second(3)
    bucket = None
    for _ in range(3):
        bucket, wait = take(bucket, limit, T0)
        assert wait == 0
    _, wait = take(bucket, limit, T0)
    assert abs(wait - 1 / 3) < 1e-9


def test_a_refused_take_leaves_the_tokens_where_they_were() -> None:
    limit = Limit.per_second(1)
    bucket, _ = take(None, limit, T0)
    after, wait = take(bucket, limit, T0)
    assert wait == 1.0 and after.tokens == bucket.tokens


def test_tokens_come_back_with_time_but_never_beyond_capacity() -> None:
    limit = Limit.per_minute(6)  # one every 10 s, burst 6
    empty = Bucket(0.0, T0)
    assert refill(empty, limit, T0 + timedelta(seconds=10)).tokens == 1.0
    assert refill(empty, limit, T0 + timedelta(hours=1)).tokens == 6.0


def test_time_going_backwards_does_not_mint_tokens() -> None:
    limit = Limit.per_second(1)
    bucket = Bucket(0.0, T0)
    assert refill(bucket, limit, T0 - timedelta(seconds=30)).tokens == 0.0


def test_zero_rate_means_unlimited() -> None:
    limit = Limit(0.0, 1.0)
    bucket = None
    for _ in range(1000):
        bucket, wait = take(bucket, limit, T0)
        assert wait == 0


def test_recipient_limit_holds_without_spending_the_channel_token() -> None:
    channel, recipient = Limit.per_second(10), Limit.per_minute(1)
    first = decide(None, None, channel, recipient, T0)
    assert first.allowed
    second = decide(first.channel_bucket, first.recipient_bucket, channel, recipient, T0)
    assert not second.allowed and second.reason == "recipient"
    assert abs(second.wait_seconds - 60.0) < 1e-9
    assert second.channel_bucket.tokens == first.channel_bucket.tokens


def test_channel_limit_is_shared_by_every_recipient() -> None:
    limiter = RateLimiter({"sms": 2}, per_recipient_per_minute=100)
    verdicts = [limiter.check("sms", f"+2782{n}", T0).allowed for n in range(3)]
    assert verdicts == [True, True, False]
    assert limiter.check("sms", "+27829", T0 + timedelta(seconds=0.5)).allowed
    assert limiter.check("email", "a@example.org", T0).allowed  # an unknown channel is not limited


def test_idle_recipients_are_forgotten() -> None:
    limiter = RateLimiter({"sms": 100}, per_recipient_per_minute=6)
    limiter.check("sms", "+27821", T0)
    limiter.forget_idle(T0 + timedelta(seconds=5))
    assert limiter.recipients
    limiter.forget_idle(T0 + timedelta(minutes=5))
    assert not limiter.recipients
