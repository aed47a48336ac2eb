"""Run every benchmark and print one table: relay, the baseline from the same run, the ratio.

``BENCH_ROUNDS`` (default 3) sets how many times each measurement is repeated (median kept).
``BENCH_ONLY`` (comma-separated) runs the benchmarks whose module name contains one of its
parts. Results also go to ``bench/results/latest.md`` and a dated copy beside it; the ``load``
column is the 1-minute load average when the row was measured. ``python -m bench rss`` runs
only the worker-memory benchmark (100,000 tasks; ``bench/results/rss.md``).
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Row

MODULES = (
    "bench.bench_events",
    "bench.bench_tasks",
    "bench.bench_api",
    "bench.bench_engine",
    "bench.bench_streaming",
    "bench.bench_fairness",
    "bench.bench_code_sandbox",
    "bench.bench_dify_api",
    "bench.bench_items",
)


def _table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | relay | baseline | ratio (>1: relay ahead) | load | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.relay:,.1f} {row.unit} | {row.baseline:,.1f} {row.unit} "
            f"| {row.ratio:.2f}x | {row.load:.1f} | {row.note} |"
        )
    return "\n".join(lines)


def main() -> int:
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    only = [part for part in os.environ.get("BENCH_ONLY", "").split(",") if part]
    # ``python -m bench rss``: worker memory over many tasks (long; not in the default run).
    modules = ("bench.bench_rss",) if sys.argv[1:] == ["rss"] else MODULES
    rows: list[Row] = []
    for name in modules:
        if only and not any(part in name for part in only):
            continue
        module = importlib.import_module(name)
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(module.run(rounds))
    header = (
        f"relay benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, rounds={rounds}, "
        f"database={'external' if os.environ.get('RELAY_DATABASE_URL') else 'sqlite'}, "
        f"redis={'external' if os.environ.get('RELAY_REDIS_URL') else 'embedded'}"
    )
    text = header + "\n\n" + _table(rows) + "\n"
    print(text)
    results = Path(__file__).parent / "results"
    (results / ("rss.md" if modules != MODULES else "latest.md")).write_text(text)
    (results / f"{datetime.now(UTC):%Y%m%d-%H%M}.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
