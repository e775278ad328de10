"""What importing flowkit costs, as ``python -X importtime`` reports it.

Each statement runs in a fresh interpreter, all of them in turn, ``--repeat``
times; the figure is the median of the cumulative import time of everything
the statement imports (the interpreter's own start-up left out):

- ``import flowkit``;
- ``from flowkit import task``: what a module that only defines tasks pays;
- ``from flowkit import DAG, task``: what a workflow file pays;
- ``import typing`` and ``import dataclasses``: references from the standard
  library, timed in the same loop, to judge how busy the machine was.

Bytecode is cached, as for an installed package (in a temporary directory,
whatever ``PYTHONDONTWRITEBYTECODE`` says). ``--source DIR`` times the flowkit
found in DIR instead (another checkout, to compare two versions).

Usage::

    python benchmarks/import_time.py [--repeat 21] [--source DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

STATEMENTS = (
    "import flowkit",
    "from flowkit import task",
    "from flowkit import DAG, task",
    "import typing",
    "import dataclasses",
)


def import_time(statement: str, env: dict[str, str]) -> float:
    """Milliseconds of imports that ``statement`` triggers in a new interpreter."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True, text=True, check=True, env=env, cwd=env["PYTHONPYCACHEPREFIX"],
    )
    rows = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")]
    rows = [row for row in rows if row[1].strip().isdigit()]
    # Start-up imports end with ``site``; a top-level row (its name not
    # indented) counts its own imports in its cumulative time.
    start = max(i for i, row in enumerate(rows) if row[2].strip() == "site") + 1
    return sum(int(row[1]) for row in rows[start:] if not row[2][1:].startswith(" ")) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs of each statement")
    parser.add_argument("--source", type=Path, help="a directory holding the flowkit to time")
    args = parser.parse_args()
    root = args.source or Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=str(root.resolve()), PYTHONPYCACHEPREFIX=cache)
        for statement in STATEMENTS:  # compiles and caches the bytecode
            import_time(statement, env)
        load = os.getloadavg()[0]
        times: dict[str, list[float]] = {s: [] for s in STATEMENTS}
        for _ in range(args.repeat):
            for statement in STATEMENTS:
                times[statement].append(import_time(statement, env))
    print(f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print(f"- load average (1 min) before/after: {load:.1f} / {os.getloadavg()[0]:.1f}")
    source = " --source DIR" if args.source else ""
    print(f"- command: `python benchmarks/import_time.py --repeat {args.repeat}{source}`\n")
    print(f"ms, median of {args.repeat} (min-max)\n")
    print("| statement | median | range |\n| --- | ---: | ---: |")
    for statement, ms in times.items():
        print(f"| `{statement}` | {statistics.median(ms):.1f} | {min(ms):.1f}-{max(ms):.1f} |")


if __name__ == "__main__":
    main()
