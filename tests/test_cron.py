"""Cron expressions: parsing, next and previous fire times, time zones and DST."""

from __future__ import annotations

import datetime as dt
import itertools
import pickle
import zoneinfo

import pytest

from flowkit import CronError, FlowkitError
from flowkit.cron import Cron

UTC = dt.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# expression, tz, after (ISO, an instant), the next fire times (ISO with offset)
NEXT_TIMES = [
    # every minute, every hour, aliases
    ("* * * * *", None, "2026-11-28T07:59:30+00:00",
     ["2026-11-28T08:00:00+00:00", "2026-11-28T08:01:00+00:00"]),
    ("0 * * * *", None, "2026-11-28T07:00:00+00:00",
     ["2026-11-28T08:00:00+00:00", "2026-11-28T09:00:00+00:00"]),
    ("@hourly", None, "2026-11-28T07:59:59+00:00", ["2026-11-28T08:00:00+00:00"]),
    ("@daily", None, "2026-11-28T00:00:00+00:00",
     ["2026-11-29T00:00:00+00:00", "2026-11-30T00:00:00+00:00"]),
    ("@midnight", None, "2026-11-28T12:00:00+00:00", ["2026-11-29T00:00:00+00:00"]),
    ("@weekly", None, "2026-11-28T12:00:00+00:00",  # a Saturday: next Sunday
     ["2026-11-29T00:00:00+00:00", "2026-12-06T00:00:00+00:00"]),
    ("@monthly", None, "2026-11-28T12:00:00+00:00",
     ["2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]),
    ("@yearly", None, "2026-11-28T12:00:00+00:00", ["2027-01-01T00:00:00+00:00"]),
    ("@annually", None, "2026-11-28T12:00:00+00:00", ["2027-01-01T00:00:00+00:00"]),
    # ranges, steps, lists, names
    ("*/15 * * * *", None, "2026-11-28T07:50:00+00:00",
     ["2026-11-28T08:00:00+00:00", "2026-11-28T08:15:00+00:00", "2026-11-28T08:30:00+00:00"]),
    ("5-10/5 9 * * *", None, "2026-11-28T09:05:00+00:00",
     ["2026-11-28T09:10:00+00:00", "2026-11-29T09:05:00+00:00"]),
    ("50/5 * * * *", None, "2026-11-28T09:52:00+00:00",
     ["2026-11-28T09:55:00+00:00", "2026-11-28T10:50:00+00:00"]),
    ("0 8,12,18 * * *", None, "2026-11-28T12:00:00+00:00",
     ["2026-11-28T18:00:00+00:00", "2026-11-29T08:00:00+00:00"]),
    ("30 9 * * mon-fri", None, "2026-11-27T10:00:00+00:00",  # Friday after 9:30
     ["2026-11-30T09:30:00+00:00", "2026-12-01T09:30:00+00:00"]),
    ("0 0 * * SUN", None, "2026-11-28T00:00:00+00:00", ["2026-11-29T00:00:00+00:00"]),
    ("0 0 * * 7", None, "2026-11-28T00:00:00+00:00", ["2026-11-29T00:00:00+00:00"]),
    ("0 0 1 jan,Jul *", None, "2026-11-28T00:00:00+00:00",
     ["2027-01-01T00:00:00+00:00", "2027-07-01T00:00:00+00:00"]),
    ("0 0 1 */3 *", None, "2026-11-28T00:00:00+00:00",
     ["2027-01-01T00:00:00+00:00", "2027-04-01T00:00:00+00:00"]),
    # the last days of months; 29 February
    ("0 0 31 * *", None, "2026-11-28T00:00:00+00:00",
     ["2026-12-31T00:00:00+00:00", "2027-01-31T00:00:00+00:00", "2027-03-31T00:00:00+00:00"]),
    ("0 0 29 2 *", None, "2026-11-28T00:00:00+00:00", ["2028-02-29T00:00:00+00:00"]),
    # both day fields restricted: either matches (the 13th, or a Friday)
    ("0 0 13 * fri", None, "2026-11-09T00:00:00+00:00",
     ["2026-11-13T00:00:00+00:00", "2026-11-20T00:00:00+00:00", "2026-11-27T00:00:00+00:00",
      "2026-12-04T00:00:00+00:00"]),
    # a star-step day field counts as unrestricted: both must match
    ("0 0 */2 * mon", None, "2026-11-01T00:00:00+00:00",
     ["2026-11-09T00:00:00+00:00", "2026-11-23T00:00:00+00:00"]),
    # time zones
    ("0 9 * * *", "Europe/Berlin", "2026-11-28T07:00:00+00:00",
     ["2026-11-28T09:00:00+01:00", "2026-11-29T09:00:00+01:00"]),
    ("0 9 * * *", "America/New_York", "2026-11-28T07:00:00+00:00",
     ["2026-11-28T09:00:00-05:00"]),
    # Europe/Berlin, clocks go forward 2026-03-29 02:00 CET -> 03:00 CEST:
    # 02:00 does not exist; the hour fires once, at 03:00.
    ("0 * * * *", "Europe/Berlin", "2026-03-29T00:30:00+01:00",
     ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"]),
    # a daily time inside the gap fires just after it, on that day only
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00+01:00",
     ["2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("*/30 * * * *", "Europe/Berlin", "2026-03-29T01:00:00+01:00",
     ["2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00",
      "2026-03-29T04:00:00+02:00"]),
    # Europe/Berlin, clocks go back 2026-10-25 03:00 CEST -> 02:00 CET:
    # the hour 02:00-03:00 happens twice and fires once.
    ("0 * * * *", "Europe/Berlin", "2026-10-25T00:30:00+02:00",
     ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00"]),
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00+02:00",
     ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    # asked from inside the repeated hour (its second pass), nothing fires twice
    ("*/20 * * * *", "Europe/Berlin", "2026-10-25T02:30:00+01:00",
     ["2026-10-25T03:00:00+01:00", "2026-10-25T03:20:00+01:00"]),
    # America/New_York, clocks go forward 2026-03-08 02:00 EST -> 03:00 EDT
    ("0 * * * *", "America/New_York", "2026-03-08T00:30:00-05:00",
     ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"]),
    ("15 2 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",
     ["2026-03-08T03:15:00-04:00", "2026-03-09T02:15:00-04:00"]),
    # America/New_York, clocks go back 2026-11-01 02:00 EDT -> 01:00 EST
    ("0 * * * *", "America/New_York", "2026-10-31T23:30:00-04:00",
     ["2026-11-01T00:00:00-04:00", "2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00"]),
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00-04:00",
     ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    # a weekly job across the change keeps its wall-clock time
    ("0 9 * * mon", "America/New_York", "2026-10-30T12:00:00-04:00",
     ["2026-11-02T09:00:00-05:00"]),
]


@pytest.mark.parametrize(("expression", "tz", "after", "expected"), NEXT_TIMES)
def test_next_times(expression: str, tz: str | None, after: str, expected: list[str]) -> None:
    cron = Cron(expression, tz=tz)
    start = dt.datetime.fromisoformat(after)
    got = [t.isoformat() for t in itertools.islice(cron.times(start), len(expected))]
    assert got == expected


@pytest.mark.parametrize(("expression", "tz", "after", "expected"), NEXT_TIMES)
def test_previous_walks_the_same_times_backwards(
    expression: str, tz: str | None, after: str, expected: list[str]
) -> None:
    cron = Cron(expression, tz=tz)
    times = [dt.datetime.fromisoformat(t) for t in expected]
    # (compared as text: PEP 495 makes == False for a time in a repeated hour)
    for earlier, later in itertools.pairwise(times):
        assert cron.previous(later).isoformat() == earlier.isoformat()
    # strictly before: a time between two fire times gives the earlier one
    after_last = times[-1] + dt.timedelta(seconds=1)
    assert cron.previous(after_last).isoformat() == times[-1].isoformat()


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK])
def test_a_year_of_hours_never_repeats_or_goes_backwards(zone: zoneinfo.ZoneInfo) -> None:
    cron = Cron("0 * * * *", tz=zone)
    times = list(itertools.islice(cron.times(dt.datetime(2026, 1, 1, tzinfo=zone)), 366 * 24))
    instants = [t.astimezone(UTC) for t in times]
    assert all(a < b for a, b in itertools.pairwise(instants))
    # two days of the year lose a firing: the skipped hour, and the repeated one
    # (each fires once); every other step is exactly one hour.
    gaps = [b - a for a, b in itertools.pairwise(instants)]
    assert sum(g == dt.timedelta(hours=2) for g in gaps) == 1  # the repeated hour
    assert all(g in (dt.timedelta(hours=1), dt.timedelta(hours=2)) for g in gaps)


def test_naive_times_are_read_in_the_crons_zone() -> None:
    cron = Cron("0 9 * * *", tz="Europe/Berlin")
    assert cron.next(dt.datetime(2026, 11, 28, 8, 0)) == dt.datetime(2026, 11, 28, 9, 0,
                                                                     tzinfo=BERLIN)
    assert cron.next(dt.datetime(2026, 11, 28, 8, 0)).tzinfo is BERLIN


def test_results_come_in_the_crons_zone_whatever_the_zone_of_the_argument() -> None:
    cron = Cron("0 9 * * *", tz="America/New_York")
    got = cron.next(utc("2026-11-28T00:00:00"))
    assert got.tzinfo is NEW_YORK
    assert got.astimezone(UTC) == utc("2026-11-28T14:00:00")


def test_tzinfo_objects_and_utc_default() -> None:
    assert Cron("0 0 * * *").tz is UTC
    assert Cron("0 0 * * *", tz=BERLIN).tz is BERLIN
    assert Cron("0 0 * * *", tz=dt.timezone(dt.timedelta(hours=5))).next(
        utc("2026-11-28T00:00:00")
    ) == utc("2026-11-28T19:00:00")


def test_equality_and_repr() -> None:
    assert Cron("@daily") == Cron("0 0 * * *") == Cron("0 0 * * 0-7/1", tz=None).__class__(
        "0 0 * * *"
    )
    assert Cron("0 0 * * 0") == Cron("0 0 * * 7")
    assert Cron("@daily") != Cron("@daily", tz="Europe/Berlin")
    assert len({Cron("@hourly"), Cron("0 * * * *")}) == 1
    assert Cron("@daily") != "@daily"
    assert repr(Cron("@daily", tz="Europe/Berlin")) == "Cron('@daily', tz='Europe/Berlin')"


@pytest.mark.parametrize(
    ("expression", "field", "words"),
    [
        ("61 * * * *", "minute", "61 is out of range 0-59"),
        ("* 24 * * *", "hour", "24 is out of range 0-23"),
        ("* * 0 * *", "day of month", "0 is out of range 1-31"),
        ("* * * 13 *", "month", "13 is out of range 1-12"),
        ("* * * * 8", "day of week", "8 is out of range 0-7"),
        ("* * * foo *", "month", "'foo' is not a number or a name (jan,"),
        ("* * * * funday", "day of week", "(sun, mon,"),
        ("x * * * *", "minute", "'x' is not a number"),
        ("*/0 * * * *", "minute", "the step after '/' must be a positive number"),
        ("*/x * * * *", "minute", "must be a positive number, got 'x'"),
        ("10-5 * * * *", "minute", "runs backwards; write it as 5-10"),
        ("1,,2 * * * *", "minute", "'' is not a number"),
        ("-5 * * * *", "minute", "'' is not a number"),
        ("0 0 31 2 *", "day of month", "never occurs in month field '2'"),
        ("0 0 30,31 feb *", "day of month", "never fire"),
        ("* * * *", None, "expected 5 fields"),
        ("* * * * * *", None, "got 6"),
        ("", None, "got 0"),
        ("@reboot", None, "@hourly"),
    ],
)
def test_invalid_expressions_name_the_field(expression: str, field: str | None, words: str) -> None:
    with pytest.raises(CronError) as info:
        Cron(expression)
    assert info.value.field == field
    assert info.value.expression == expression
    assert words in str(info.value)
    assert repr(expression) in str(info.value)
    if field is not None:
        assert f"{field} field" in str(info.value)
    assert isinstance(info.value, FlowkitError)
    assert isinstance(info.value, ValueError)


def test_a_cron_that_is_not_a_string() -> None:
    with pytest.raises(CronError, match="is a string"):
        Cron(5)  # type: ignore[arg-type]


def test_an_unknown_time_zone_is_a_cron_error() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Mars/Olympus'") as info:
        Cron("@daily", tz="Mars/Olympus")
    assert info.value.field == "tz"
    with pytest.raises(CronError, match="tz must be a zone name"):
        Cron("@daily", tz=5)  # type: ignore[arg-type]


def test_cron_error_pickles_with_its_attributes() -> None:
    with pytest.raises(CronError) as info:
        Cron("99 * * * *")
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.field, again.expression, str(again)) == (
        "minute", "99 * * * *", str(info.value)
    )


def test_next_wants_a_datetime() -> None:
    with pytest.raises(TypeError, match="expected a datetime"):
        Cron("@daily").next("2026-11-28")  # type: ignore[arg-type]
