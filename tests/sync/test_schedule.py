"""When rules run: cron in UTC, intervals with seeded jitter, naive datetimes refused."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.mirrorconfig import Every
from sync.schedule import CronSchedule, IntervalSchedule, Schedule, schedule_for


def utc(hour: int, minute: int, second: int = 0, microsecond: int = 0, *,
        day: int = 1) -> datetime:
    return datetime(2024, 1, day, hour, minute, second, microsecond, tzinfo=UTC)


@pytest.mark.parametrize(("expression", "moment", "expected"), [
    ("*/30 * * * *", utc(10, 7), utc(10, 30)),
    ("*/30 * * * *", utc(10, 30), utc(11, 0)),  # strictly after
    ("*/30 * * * *", utc(10, 29, 59, 999_999), utc(10, 30)),
    ("*/30 * * * *", utc(10, 30, 0, 1), utc(11, 0)),
    ("*/30 * * * *", utc(23, 45), utc(0, 0, day=2)),
    ("0 3 * * *", utc(3, 0), utc(3, 0, day=2)),
    ("0 3 * * *", utc(2, 59), utc(3, 0)),
    ("15 10 * * 1", utc(0, 0), utc(10, 15)),  # 2024-01-01 is a Monday
    ("15 10 * * 1", utc(10, 15), utc(10, 15, day=8)),
    ("0 0 1 * *", utc(0, 0), datetime(2024, 2, 1, tzinfo=UTC)),
])
def test_cron_next_after(expression: str, moment: datetime, expected: datetime) -> None:
    result = CronSchedule(expression).next_after(moment)
    assert result == expected
    assert result.tzinfo is UTC


def test_cron_fields_are_utc_whatever_the_moment_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    # 04:00 at +02:00 is 02:00 UTC: the next 03:00 UTC is an hour later, not the next day.
    result = CronSchedule("0 3 * * *").next_after(datetime(2024, 1, 1, 4, 0, tzinfo=plus_two))
    assert result == utc(3, 0)
    assert result.tzinfo is UTC


@pytest.mark.parametrize("expression", ["", "* * * *", "* * * * * *", "@hourly", "61 * * * *",
                                        "not a cron"])
def test_cron_refuses_bad_expressions(expression: str) -> None:
    with pytest.raises(ValueError, match="invalid cron"):
        CronSchedule(expression)


@settings(max_examples=200, deadline=None)
@given(step=st.sampled_from([1, 5, 15, 30]),
       moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                           timezones=st.just(UTC)))
def test_cron_next_after_is_the_first_match_strictly_after(step: int, moment: datetime) -> None:
    result = CronSchedule(f"*/{step} * * * *").next_after(moment)
    assert moment < result <= moment + timedelta(minutes=step)
    assert result.second == result.microsecond == 0
    assert result.minute % step == 0


def test_interval_without_jitter_is_exact() -> None:
    schedule = IntervalSchedule(900)
    assert schedule.next_after(utc(10, 7)) == utc(10, 22)


def test_interval_jitter_stays_in_bounds() -> None:
    every, jitter = 900.0, 120.0
    schedule = IntervalSchedule(every, jitter, random.Random(1234))
    moment = utc(10, 0)
    delays = [(schedule.next_after(moment) - moment).total_seconds() for _ in range(2000)]
    assert all(every <= delay <= every + jitter for delay in delays)
    # The jitter spreads runs: both ends of the window are used.
    assert min(delays) < every + 10
    assert max(delays) > every + jitter - 10


def test_interval_jitter_is_reproducible_from_a_seed() -> None:
    first = IntervalSchedule(60, 30, random.Random(7))
    second = IntervalSchedule(60, 30, random.Random(7))
    moment = utc(10, 0)
    assert [first.next_after(moment) for _ in range(20)] == [
        second.next_after(moment) for _ in range(20)]


def test_interval_returns_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    result = IntervalSchedule(60).next_after(datetime(2024, 1, 1, 12, 0, tzinfo=plus_two))
    assert result == utc(10, 1)
    assert result.tzinfo is UTC


@pytest.mark.parametrize(("every", "jitter"), [(0, 0), (-1, 0), (60, -1)])
def test_interval_refuses_bad_durations(every: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="invalid interval"):
        IntervalSchedule(every, jitter)


@pytest.mark.parametrize("schedule", [CronSchedule("*/30 * * * *"), IntervalSchedule(60, 5)],
                         ids=["cron", "interval"])
def test_naive_datetimes_are_refused(schedule: Schedule) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        schedule.next_after(datetime(2024, 1, 1, 10, 7))


def test_schedule_for() -> None:
    assert schedule_for(None) is None
    cron = schedule_for("*/30 * * * *")
    assert isinstance(cron, CronSchedule)
    assert cron.next_after(utc(10, 7)) == utc(10, 30)

    every = Every.model_validate({"every": "15m", "jitter": "2m"})
    interval = schedule_for(every, random.Random(3))
    assert isinstance(interval, IntervalSchedule)
    assert (interval.every, interval.jitter) == (900.0, 120.0)
    delay = interval.next_after(utc(10, 0)) - utc(10, 0)
    assert timedelta(minutes=15) <= delay <= timedelta(minutes=17)
    # The injected generator is the one drawn from.
    assert interval.next_after(utc(10, 0)) == IntervalSchedule(
        900, 120, _advanced(random.Random(3))).next_after(utc(10, 0))


def _advanced(rng: random.Random) -> random.Random:
    rng.uniform(0, 120)
    return rng
