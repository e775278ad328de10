"""An ETL workflow: extract orders, transform them in parallel, validate, load, report.

Run it from the repository root::

    python -m flowkit run examples/etl.py
    python -m flowkit run examples/etl.py --report report.html
    python -m flowkit graph examples/etl.py

The shape (``python -m flowkit graph examples/etl.py`` draws it)::

    extract_orders ─> clean_orders ─┐
    fetch_rates (flaky: retried) ───┴─> to_eur
    to_eur ─┬─> revenue_by_country ─┐
            ├─> top_customers ──────┼─> validate ─> load ─> publish_report
            └─> daily_revenue ──────┘
                daily_revenue ─> alert_on_drop (when= the last day's revenue collapsed)

    (clean_orders also feeds validate, and validate also feeds publish_report)

Everything is deterministic and runs in a fraction of a second: the orders are
generated from a seeded random source, "network" latency is a short sleep, and
the warehouse is an in-memory SQLite database. ``fetch_rates`` fails on its
first call in each process, to show a retry. Set ``ETL_MAX_INVALID=0`` to make
``validate`` fail (the data has a few invalid rows on purpose).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import sqlite3
import time
from collections import Counter, defaultdict
from typing import Any

from flowkit import DAG, task

Order = dict[str, Any]

N_ORDERS = 400
MAX_INVALID_SHARE = float(os.environ.get("ETL_MAX_INVALID", "0.05"))
_rate_calls = itertools.count()  # per process: the first call of fetch_rates fails


@task
def extract_orders() -> list[Order]:
    """Orders from the shop's API (generated: 400 orders over two weeks, a few broken)."""
    time.sleep(0.03)  # the API round trip
    rng = random.Random(2026)
    start = dt.date(2026, 11, 1)
    orders = []
    for n in range(N_ORDERS):
        orders.append(
            {
                "id": 1000 + n,
                "customer": f"c{rng.randint(1, 60):03d}",
                "country": rng.choice(["DE", "FR", "GB", "US", "JP"]),
                "currency": rng.choice(["EUR", "EUR", "USD", "GBP", "JPY"]),
                "amount": round(rng.uniform(5, 400), 2),
                "day": (start + dt.timedelta(days=rng.randint(0, 13))).isoformat(),
            }
        )
    for n in range(0, N_ORDERS, 25):  # data-quality problems, on purpose
        orders[n]["amount"] = None if n % 50 else -orders[n]["amount"]
    orders.append(dict(orders[7]))  # a duplicate delivery
    return orders


@task(retries=3, retry_delay=0.02, backoff=2.0, retry_on=(ConnectionError,))
def fetch_rates() -> dict[str, float]:
    """Exchange rates to EUR from a (flaky) rates service."""
    time.sleep(0.02)
    if next(_rate_calls) == 0:
        raise ConnectionError("rates service: connection reset by peer (simulated)")
    return {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "JPY": 0.0062}


@task
def clean_orders(orders: list[Order]) -> dict[str, Any]:
    """Drop duplicates and orders without a positive amount; count what was rejected."""
    seen: set[int] = set()
    kept: list[Order] = []
    for order in orders:
        if order["id"] in seen or not order["amount"] or order["amount"] <= 0:
            continue
        seen.add(order["id"])
        kept.append(order)
    return {"orders": kept, "received": len(orders), "rejected": len(orders) - len(kept)}


@task
def to_eur(cleaned: dict[str, Any], rates: dict[str, float]) -> list[Order]:
    """Every amount converted to euros."""
    return [
        {**order, "eur": round(order["amount"] * rates[order["currency"]], 2)}
        for order in cleaned["orders"]
    ]


@task
def revenue_by_country(orders: list[Order]) -> dict[str, float]:
    totals: defaultdict[str, float] = defaultdict(float)
    for order in orders:
        totals[order["country"]] += order["eur"]
    return {country: round(total, 2) for country, total in sorted(totals.items())}


@task
def top_customers(orders: list[Order]) -> list[tuple[str, float]]:
    spent: Counter[str] = Counter()
    for order in orders:
        spent[order["customer"]] += order["eur"]
    return [(customer, round(total, 2)) for customer, total in spent.most_common(5)]


@task
def daily_revenue(orders: list[Order]) -> dict[str, float]:
    days: defaultdict[str, float] = defaultdict(float)
    for order in orders:
        days[order["day"]] += order["eur"]
    return {day: round(total, 2) for day, total in sorted(days.items())}


def _dropped_sharply(daily: dict[str, float]) -> bool:
    values = list(daily.values())
    return len(values) > 1 and values[-1] < 0.2 * (sum(values[:-1]) / len(values[:-1]))


@task(when=_dropped_sharply)
def alert_on_drop(daily: dict[str, float]) -> str:
    """Page someone, but only when the last day's revenue collapsed (skipped otherwise)."""
    return f"revenue on {list(daily)[-1]} fell to {list(daily.values())[-1]:.2f} EUR"


@task
def validate(
    cleaned: dict[str, Any],
    by_country: dict[str, float],
    customers: list[tuple[str, float]],
    daily: dict[str, float],
) -> dict[str, Any]:
    """Refuse to load when too much input was invalid or the aggregates disagree."""
    share = cleaned["rejected"] / cleaned["received"]
    if share > MAX_INVALID_SHARE:
        raise ValueError(
            f"{cleaned['rejected']} of {cleaned['received']} orders ({share:.1%}) were invalid; "
            f"the limit is {MAX_INVALID_SHARE:.0%}"
        )
    if abs(sum(by_country.values()) - sum(daily.values())) > 0.05:
        raise ValueError("revenue by country and by day do not add up to the same total")
    return {"by_country": by_country, "top_customers": customers, "daily": daily}


@task
def load(tables: dict[str, Any]) -> dict[str, int]:
    """Write the aggregates to the warehouse (an in-memory SQLite database here)."""
    time.sleep(0.02)
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE country_revenue (country TEXT PRIMARY KEY, eur REAL)")
        db.execute("CREATE TABLE daily_revenue (day TEXT PRIMARY KEY, eur REAL)")
        db.executemany("INSERT INTO country_revenue VALUES (?, ?)", tables["by_country"].items())
        db.executemany("INSERT INTO daily_revenue VALUES (?, ?)", tables["daily"].items())
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("country_revenue", "daily_revenue")
        }


@task
def publish_report(loaded: dict[str, int], tables: dict[str, Any]) -> str:
    total = sum(tables["by_country"].values())
    best, spent = tables["top_customers"][0]
    return (
        f"{sum(loaded.values())} rows loaded; revenue {total:,.2f} EUR; "
        f"best customer {best} ({spent:,.2f} EUR)"
    )


extract_orders >> clean_orders
[clean_orders, fetch_rates] >> to_eur
to_eur >> [revenue_by_country, top_customers, daily_revenue]
daily_revenue >> alert_on_drop
[clean_orders, revenue_by_country, top_customers, daily_revenue] >> validate
validate >> load
[load, validate] >> publish_report

dag = DAG([publish_report, alert_on_drop], name="etl")

if __name__ == "__main__":
    result = dag.run()
    print(result.summary())
    print(result["publish_report"])
