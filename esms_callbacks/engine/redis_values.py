"""Values as they go to Redis and come back: the one home of these conversions."""

from __future__ import annotations


def as_text(value: object) -> str:
    """A Redis reply (bytes, without decode_responses) or anything else, as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def to_ms(seconds: float) -> int:
    """Seconds (float) as the whole milliseconds the scripts keep times in."""
    return int(seconds * 1000)
