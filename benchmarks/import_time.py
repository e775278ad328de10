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
found in DIR instead; given more than once, it compares checkouts (each
statement of each one timed in turn, in the same loop).

Usage::

    python benchmarks/import_time.py [--repeat 21] [--source DIR ...]
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

FLOWKIT = ("import flowkit", "from flowkit import task", "from flowkit import DAG, task")
REFERENCES = ("import typing", "import dataclasses")


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


def _figure(ms: list[float]) -> str:
    return f"{statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs of each statement")
    parser.add_argument("--source", type=Path, action="append",
                        help="a directory holding the flowkit to time; give several to "
                             "compare them (timed in turn, one column each)")
    args = parser.parse_args()
    sources = args.source or [Path(__file__).resolve().parent.parent]
    with tempfile.TemporaryDirectory() as cache:
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        envs = [dict(base, PYTHONPATH=str(s.resolve()), PYTHONPYCACHEPREFIX=cache)
                for s in sources]
        cases = [(s, env) for s in FLOWKIT for env in envs] + [(s, envs[0]) for s in REFERENCES]
        for statement, env in cases:  # compiles and caches the bytecode
            import_time(statement, env)
        load = os.getloadavg()[0]
        times: list[list[float]] = [[] for _ in cases]
        for _ in range(args.repeat):
            for ms, (statement, env) in zip(times, cases, strict=True):
                ms.append(import_time(statement, env))
    print(f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print(f"- load average (1 min) before/after: {load:.1f} / {os.getloadavg()[0]:.1f}")
    given = "".join(f" --source {s.name}" for s in args.source or [])
    print(f"- command: `python benchmarks/import_time.py --repeat {args.repeat}{given}`")
    references = times[len(FLOWKIT) * len(envs):]
    print("- references, timed in the same loop: " + ", ".join(
        f"`{s}` {_figure(ms)}" for s, ms in zip(REFERENCES, references, strict=True)))
    print(f"\nms, median of {args.repeat} (min-max)\n")
    names = [s.name for s in args.source] if args.source else ["this checkout"]
    print("| statement | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for row, statement in enumerate(FLOWKIT):
        figures = times[row * len(envs):(row + 1) * len(envs)]
        print(f"| `{statement}` | " + " | ".join(_figure(ms) for ms in figures) + " |")


if __name__ == "__main__":
    main()
