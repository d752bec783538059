"""When a mirror rule runs next: a 5-field cron expression or an interval with jitter.

Every moment is a timezone-aware datetime; naive ones are refused rather than guessed at.
Cron fields are read in UTC, and every ``next_after`` returns UTC.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Protocol

from croniter import croniter

from registry.mirrorconfig import Every


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime:
        """The first run strictly after ``moment``, in UTC."""
        ...


class CronSchedule:
    """``m h dom mon dow``, evaluated in UTC."""

    def __init__(self, expression: str) -> None:
        if len(expression.split()) != 5 or not croniter.is_valid(expression):
            raise ValueError(f"invalid cron schedule {expression!r} (5 fields: m h dom mon dow)")
        self.expression = expression

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r})"

    def next_after(self, moment: datetime) -> datetime:
        # croniter skips a start time that itself matches, so "after" is strict.
        result: datetime = croniter(self.expression, _utc(moment)).get_next(datetime)
        return result.astimezone(UTC)


class IntervalSchedule:
    """``every`` seconds plus up to ``jitter`` more, drawn from ``rng`` (seed it in tests)."""

    def __init__(self, every: float, jitter: float = 0.0, rng: random.Random | None = None) -> None:
        if every <= 0 or jitter < 0:
            raise ValueError(f"invalid interval: every={every}, jitter={jitter}")
        self.every = every
        self.jitter = jitter
        self.rng = rng if rng is not None else random.Random()

    def __repr__(self) -> str:
        return f"IntervalSchedule(every={self.every}, jitter={self.jitter})"

    def next_after(self, moment: datetime) -> datetime:
        delay = self.every + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)
        return _utc(moment) + timedelta(seconds=delay)


def schedule_for(value: str | Every | None, rng: random.Random | None = None) -> Schedule | None:
    """The schedule a rule's ``schedule:`` value describes; None when it has none."""
    if value is None:
        return None
    if isinstance(value, str):
        return CronSchedule(value)
    return IntervalSchedule(value.every, value.jitter, rng)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: give a timezone (UTC)")
    return moment.astimezone(UTC)
