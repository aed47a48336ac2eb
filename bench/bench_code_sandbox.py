"""Code sandbox overhead: 50 trivial code-node executions in bubblewrap against the same 50 in
a plain child process (``unsafe-local``: what relay ran before it had a sandbox).

Alone: ``python -m bench.bench_code_sandbox`` prints both totals.
"""

from __future__ import annotations

import logging
import time

from bench.common import Row, best_of
from relay.workflow.config import CodeSandboxConfig
from relay.workflow.nodes.sandbox import CodeSandbox
from relay.workflow.stop import StopToken

RUNS = 50
CODE = "def main(a):\n    return {'n': a + 1}\n"


def _total(mode: str) -> float:
    """Seconds for RUNS executions, after one warm-up (imports, the sandbox self-check)."""
    sandbox = CodeSandbox(CodeSandboxConfig(mode=mode))  # type: ignore[arg-type]
    sandbox.run(CODE, {"a": 1}, StopToken())
    started = time.perf_counter()
    for _ in range(RUNS):
        assert sandbox.run(CODE, {"a": 1}, StopToken()).result == {"n": 2}
    return time.perf_counter() - started


def run(rounds: int) -> list[Row]:
    """bubblewrap against a plain child process, total ms for RUNS executions."""
    # unsafe-local warns on every execution; that is its point, not this benchmark's.
    logging.getLogger("relay.workflow.nodes.sandbox").setLevel(logging.ERROR)
    isolated = best_of(rounds, lambda: _total("bubblewrap"))
    plain = best_of(rounds, lambda: _total("unsafe-local"))
    return [
        Row(
            f"code node, {RUNS} trivial executions (ms total)",
            isolated * 1e3,
            plain * 1e3,
            "ms",
            higher_is_better=False,
            note="bubblewrap sandbox vs a plain child process (unsafe-local)",
        )
    ]


if __name__ == "__main__":
    for row in run(3):
        print(f"{row.name}: bubblewrap {row.relay:,.0f} ms, plain child {row.baseline:,.0f} ms")
