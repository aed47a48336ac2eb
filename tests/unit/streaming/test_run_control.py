"""Run control semantics (in memory; the Redis implementation passes the same tests)."""

from __future__ import annotations

from relay.streaming import Claim, InMemoryRunControl, RunControl


def check_attempts_and_stops(control: RunControl) -> None:
    """Shared by the Redis integration test."""
    assert control.register("r", "end-user-a", 60) == "end-user-a"
    assert control.register("r", "end-user-b", 60) == "end-user-a"
    # A stop while queued targets the first attempt.
    assert control.request_stop("r", 60) == 1
    assert control.stopping("r")
    assert control.claim("r", "end-user-a", 60) == Claim("running", 1, True)
    assert control.stop_requested("r", 1)
    # A second delivery finds the run claimed.
    assert control.claim("r", "end-user-a", 60) == Claim("running", 1, False)
    control.release("r", "paused", 60)
    # The old flag does not stop the next attempt.
    assert not control.stopping("r")
    assert control.claim("r", "end-user-a", 60) == Claim("running", 2, True)
    assert not control.stop_requested("r", 2)
    assert control.request_stop("r", 60) == 2
    assert control.stop_requested("r", 2)
    control.release("r", "finished", 60)
    assert not control.stopping("r")
    assert control.request_stop("r", 60) is None
    assert control.claim("r", "end-user-a", 60) == Claim("finished", 2, False)
    assert control.request_stop("unknown", 60) is None


def check_liveness(control: RunControl) -> None:
    control.register("live", "o", 60)
    assert control.claim("live", "o", 60).claimed
    assert control.stale(60, 10) == []
    assert control.stale(-1, 10) == ["live"]
    control.release("live", "finished", 60)
    assert control.stale(-1, 10) == []
    control.heartbeat("live", 60)  # a late beat does not bring a finished run back
    assert control.stale(-1, 10) == []


def check_checkpoints(control: RunControl) -> None:
    control.register("cp", "o", 60)
    assert control.load_checkpoint("cp") is None
    control.save_checkpoint("cp", '{"steps": 3}', 60)
    assert control.load_checkpoint("cp") == '{"steps": 3}'
    control.save_checkpoint("cp", None, 60)
    assert control.load_checkpoint("cp") is None


def test_attempts_and_attempt_scoped_stops() -> None:
    check_attempts_and_stops(InMemoryRunControl())


def test_liveness() -> None:
    check_liveness(InMemoryRunControl())


def test_checkpoints() -> None:
    check_checkpoints(InMemoryRunControl())
