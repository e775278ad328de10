"""Cron expressions: parsing, and the next (or previous) time one fires.

Five fields, as in crontab(5)::

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)
                                jan-dec sun-sat

Each field is ``*``, a number, a name (months and weekdays, any case), a
range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (from ``a`` to the end),
or a comma list of those. ``@hourly``, ``@daily`` (``@midnight``),
``@weekly``, ``@monthly`` and ``@yearly`` (``@annually``) stand for the usual
expressions. As in Vixie cron, when both day fields are restricted (neither
starts with ``*``) a day matches if *either* does; otherwise both must.

Times are wall-clock times in a time zone (UTC unless ``tz`` names another).
Daylight saving time is handled the way a person reading the schedule expects:

- a time skipped when clocks go forward fires at the first instant after the
  gap (``30 2 * * *`` fires at 03:30 on that day), and never twice: a time
  that lands on one already due (``0 2`` and ``0 3`` both at 03:00) fires once;
- a time repeated when clocks go back fires once, at its first occurrence.

Fire times are searched field by field in local time, then turned into
instants; no instant is ever returned twice or out of order.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterator
from typing import NamedTuple

from flowkit.exceptions import CronError

__all__ = ["Cron", "CronError", "resolve_tz"]

_MINUTE = dt.timedelta(minutes=1)
_UTC = dt.UTC

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # at most, by month


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, {n: i for i, n in enumerate(_MONTHS, 1)}),
    _Field("day of week", 0, 7, {n: i for i, n in enumerate(_WEEKDAYS)}),
)

# A schedule fires at least once in any 8 years (29 February included): a
# search that goes further has a bug, not a rare schedule.
_SEARCH_YEARS = 8


def resolve_tz(tz: str | dt.tzinfo | None) -> dt.tzinfo:
    """``tz`` as a tzinfo: a zone name (``"Europe/Berlin"``), a tzinfo, or UTC for ``None``.

    Raises:
        CronError: no time zone has that name.
    """
    if tz is None:
        return _UTC
    if isinstance(tz, dt.tzinfo):
        return tz
    if isinstance(tz, str):
        try:
            return zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise CronError(
                f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Berlin' or 'UTC' "
                "(on systems without time zone data, install the tzdata package)",
                expression=tz,
                field="tz",
            ) from exc
    raise CronError(f"tz must be a zone name or a tzinfo, got {tz!r}", expression=repr(tz),
                    field="tz")


class Cron:
    """A parsed cron expression in a time zone.

    >>> import datetime as dt
    >>> cron = Cron("30 9 * * mon-fri", tz="Europe/Berlin")
    >>> cron.next(dt.datetime(2026, 11, 27, 9, 30, tzinfo=cron.tz)).isoformat()
    '2026-11-30T09:30:00+01:00'

    Args:
        expression: five fields, or an ``@`` alias (see the module docstring).
        tz: a zone name, a tzinfo, or ``None`` for UTC.

    Raises:
        CronError: the expression is malformed (the error names the field), can
            never fire (``0 0 31 2 *``), or the time zone is unknown.
    """

    __slots__ = ("_days_any", "_dom", "_dow", "_hours", "_minutes", "_months", "expression", "tz")

    def __init__(self, expression: str, tz: str | dt.tzinfo | None = None):
        if not isinstance(expression, str):
            raise CronError(
                f"a cron expression is a string such as '0 * * * *', got {expression!r}",
                expression=repr(expression),
                field=None,
            )
        self.expression = expression
        self.tz = resolve_tz(tz)
        text = ALIASES.get(expression.strip().lower(), expression)
        parts = text.split()
        if len(parts) != 5:
            raise CronError(
                f"invalid cron expression {expression!r}: expected 5 fields (minute hour "
                f"day-of-month month day-of-week), got {len(parts)}; for example '0 * * * *' "
                f"(every hour) or one of {', '.join(sorted(ALIASES))}",
                expression=expression,
                field=None,
            )
        sets = [_parse_field(part, field, expression) for part, field in zip(parts, _FIELDS,
                                                                              strict=True)]
        self._minutes, self._hours, self._dom, self._months, dow = (sorted(s) for s in sets)
        self._dow = frozenset(d % 7 for d in dow)  # 7 is Sunday too
        dom_star, dow_star = parts[2].startswith("*"), parts[4].startswith("*")
        # None: both day fields restricted, either may match (Vixie cron's rule).
        self._days_any: bool | None = None if not (dom_star or dow_star) else dow_star
        if self._days_any is True and not any(
            self._dom[0] <= _DAYS_IN_MONTH[m - 1] for m in self._months
        ):
            raise CronError(
                f"invalid cron expression {expression!r}: day of month field {parts[2]!r} "
                f"never occurs in month field {parts[3]!r}, so it would never fire",
                expression=expression,
                field="day of month",
            )

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, tz={str(self.tz)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cron):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        return (tuple(self._minutes), tuple(self._hours), tuple(self._dom), tuple(self._months),
                self._dow, self._days_any, str(self.tz))

    # --- matching in local (naive) time ---------------------------------------------

    def _day_ok(self, day: dt.datetime) -> bool:
        dom_ok = day.day in self._dom
        dow_ok = day.isoweekday() % 7 in self._dow
        if self._days_any is None:
            return dom_ok or dow_ok
        return dom_ok and dow_ok

    def _forward(self, t: dt.datetime) -> dt.datetime:
        """The first matching local minute at or after ``t`` (naive, minute-aligned)."""
        limit = t.year + _SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self._months:
                t = (t.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
            elif not self._day_ok(t):
                t = t.replace(hour=0, minute=0) + dt.timedelta(days=1)
            elif t.hour not in self._hours:
                later = [h for h in self._hours if h > t.hour]
                day = t.replace(hour=0, minute=0)
                t = day.replace(hour=later[0]) if later else day + dt.timedelta(days=1)
            elif t.minute not in self._minutes:
                later = [m for m in self._minutes if m > t.minute]
                hour = t.replace(minute=0)
                t = hour.replace(minute=later[0]) if later else hour + dt.timedelta(hours=1)
            else:
                return t
        raise AssertionError(f"{self!r} found no time in {_SEARCH_YEARS} years")  # pragma: no cover

    def _backward(self, t: dt.datetime) -> dt.datetime:
        """The last matching local minute at or before ``t`` (naive, minute-aligned)."""
        limit = t.year - _SEARCH_YEARS
        while t.year >= limit:
            if t.month not in self._months:
                t = t.replace(day=1, hour=0, minute=0) - _MINUTE
            elif not self._day_ok(t):
                t = t.replace(hour=0, minute=0) - _MINUTE
            elif t.hour not in self._hours:
                earlier = [h for h in self._hours if h < t.hour]
                day = t.replace(hour=0, minute=0)
                t = day.replace(hour=earlier[-1], minute=59) if earlier else day - _MINUTE
            elif t.minute not in self._minutes:
                earlier = [m for m in self._minutes if m < t.minute]
                hour = t.replace(minute=0)
                t = hour.replace(minute=earlier[-1]) if earlier else hour - _MINUTE
            else:
                return t
        raise AssertionError(f"{self!r} found no time in {_SEARCH_YEARS} years")  # pragma: no cover

    def _instant(self, local: dt.datetime) -> dt.datetime:
        """The UTC instant of a local time. fold=0: a skipped time is read with the
        offset before the gap, which lands it just after the gap; a repeated time
        means its first occurrence."""
        return local.replace(tzinfo=self.tz).astimezone(_UTC)

    def _utc(self, moment: dt.datetime) -> dt.datetime:
        # Aware datetimes sharing a tzinfo compare by wall time, ignoring fold:
        # every comparison here is made in UTC instead.
        if not isinstance(moment, dt.datetime):
            raise TypeError(f"expected a datetime, got {moment!r}")
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=self.tz)
        return aware.astimezone(_UTC)

    def _local_minute(self, utc: dt.datetime) -> dt.datetime:
        return utc.astimezone(self.tz).replace(tzinfo=None, second=0, microsecond=0, fold=0)

    # --- instants -------------------------------------------------------------------

    def next(self, after: dt.datetime) -> dt.datetime:
        """The first fire time strictly after ``after``, in the cron's time zone.

        A naive ``after`` is read in the cron's time zone.
        """
        return self._next_utc(self._utc(after)).astimezone(self.tz)

    def _next_utc(self, after: dt.datetime) -> dt.datetime:
        local = self._local_minute(after) + _MINUTE
        while True:
            found = self._forward(local)
            moment = self._instant(found)
            if moment > after:
                return moment
            local = found + _MINUTE  # an instant already passed (DST): look further

    def previous(self, before: dt.datetime) -> dt.datetime:
        """The last fire time strictly before ``before``, in the cron's time zone."""
        before = self._utc(before)
        local = self._local_minute(before)
        while True:
            found = self._backward(local)
            moment = self._instant(found)
            if moment < before:
                break
            local = found - _MINUTE
        # Around a DST gap local order and instant order differ: step forward
        # with next() (the one definition of the sequence) to the last one before.
        while (later := self._next_utc(moment)) < before:
            moment = later
        return moment.astimezone(self.tz)

    def times(self, after: dt.datetime) -> Iterator[dt.datetime]:
        """Every fire time strictly after ``after``, in order (an endless iterator)."""
        moment = after
        while True:
            moment = self.next(moment)
            yield moment


def _parse_field(text: str, field: _Field, expression: str) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, field, expression, text))
    return values


def _parse_item(item: str, field: _Field, expression: str, text: str) -> range:
    def fail(why: str) -> CronError:
        return CronError(
            f"invalid cron expression {expression!r}: {field.name} field {text!r}: {why}",
            expression=expression,
            field=field.name,
        )

    span, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise fail(f"the step after '/' must be a positive number, got {step_text!r}")
        step = int(step_text)
    if span == "*":
        low, high = field.low, field.high
    else:
        first, dash, last = span.partition("-")
        low = _value(first, field, fail)
        high = _value(last, field, fail) if dash else (field.high if slash else low)
        if low > high:
            raise fail(f"the range {span!r} runs backwards; write it as {last}-{first}")
    return range(low, high + 1, step)


def _value(token: str, field: _Field, fail: Callable[[str], CronError]) -> int:
    word = token.strip().lower()
    if word in field.names:
        return field.names[word]
    if not word.isdigit():
        names = f" or a name ({', '.join(field.names)})" if field.names else ""
        raise fail(f"{token!r} is not a number{names}")
    number = int(word)
    if not field.low <= number <= field.high:
        raise fail(f"{number} is out of range {field.low}-{field.high}")
    return number
