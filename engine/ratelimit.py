"""Token buckets as pure functions: explicit state in, new state and a verdict out, time passed as `now`.

Two limits apply to every message: per channel per second (what the provider account allows, from
settings.rate_per_channel_per_second) and per recipient per minute (nobody's phone is flooded by one
incident storm, settings.rate_per_recipient_per_minute). A message over either limit is never dropped: the
dispatcher holds it (next_attempt_at moved by the returned wait, hold_reason "rate_limit").
A held message takes no token from the other bucket, so a flooded recipient does not eat the channel's rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated_at: datetime


@dataclass(frozen=True)
class Limit:
    rate_per_second: float  # refill rate; <= 0 means unlimited
    capacity: float  # burst size

    @classmethod
    def per_second(cls, rate: float) -> Limit:
        return cls(rate, max(1.0, rate))

    @classmethod
    def per_minute(cls, count: float) -> Limit:
        return cls(count / 60.0, max(1.0, count))

    @property
    def unlimited(self) -> bool:
        return self.rate_per_second <= 0


def refill(bucket: Bucket | None, limit: Limit, now: datetime) -> Bucket:
    """The bucket at `now`: full when new, topped up by the time passed (never beyond capacity)."""
    if bucket is None:
        return Bucket(limit.capacity, now)
    elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
    return Bucket(
        min(limit.capacity, bucket.tokens + elapsed * limit.rate_per_second), max(now, bucket.updated_at)
    )


def wait_for(bucket: Bucket, limit: Limit, cost: float = 1.0) -> float:
    """Seconds until `cost` tokens are there (0 when they are now)."""
    if limit.unlimited or bucket.tokens >= cost:
        return 0.0
    return (cost - bucket.tokens) / limit.rate_per_second


def take(bucket: Bucket | None, limit: Limit, now: datetime, cost: float = 1.0) -> tuple[Bucket, float]:
    """(new bucket, wait): wait 0 means allowed and the tokens are taken; otherwise nothing is taken."""
    current = refill(bucket, limit, now)
    wait = wait_for(current, limit, cost)
    if wait > 0:
        return current, wait
    if limit.unlimited:
        return current, 0.0
    return Bucket(current.tokens - cost, current.updated_at), 0.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    wait_seconds: float
    channel_bucket: Bucket
    recipient_bucket: Bucket
    reason: str = ""  # "channel" or "recipient" when held


def decide(
    channel_bucket: Bucket | None,
    recipient_bucket: Bucket | None,
    channel_limit: Limit,
    recipient_limit: Limit,
    now: datetime,
) -> Decision:
    """May one message to this recipient on this channel go now? Both buckets must agree."""
    ch = refill(channel_bucket, channel_limit, now)
    rc = refill(recipient_bucket, recipient_limit, now)
    ch_wait = wait_for(ch, channel_limit)
    rc_wait = wait_for(rc, recipient_limit)
    if ch_wait > 0 or rc_wait > 0:
        reason = "recipient" if rc_wait >= ch_wait else "channel"
        return Decision(False, max(ch_wait, rc_wait), ch, rc, reason)
    ch, _ = take(ch, channel_limit, now)
    rc, _ = take(rc, recipient_limit, now)
    return Decision(True, 0.0, ch, rc)


class RateLimiter:
    """The buckets of one engine process (a thin holder around `decide`; not shared between engines)."""

    def __init__(self, per_channel_per_second: dict[str, float], per_recipient_per_minute: float) -> None:
        self.channel_limits = {name: Limit.per_second(rate) for name, rate in per_channel_per_second.items()}
        self.recipient_limit = Limit.per_minute(per_recipient_per_minute)
        self.channels: dict[str, Bucket] = {}
        self.recipients: dict[tuple[str, str], Bucket] = {}

    def check(self, channel: str, recipient: str, now: datetime) -> Decision:
        limit = self.channel_limits.get(channel, Limit(0.0, 1.0))
        key = (channel, recipient)
        decision = decide(
            self.channels.get(channel), self.recipients.get(key), limit, self.recipient_limit, now
        )
        self.channels[channel] = decision.channel_bucket
        self.recipients[key] = decision.recipient_bucket
        return decision

    def forget_idle(self, now: datetime) -> None:
        """Drop recipient buckets that are full again (they equal a new bucket), so memory stays small."""
        for key, bucket in list(self.recipients.items()):
            if refill(bucket, self.recipient_limit, now).tokens >= self.recipient_limit.capacity:
                del self.recipients[key]
