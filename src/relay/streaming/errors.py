"""Errors of the streaming layer (a branch of relay's exception tree)."""

from __future__ import annotations

from relay.errors import RelayError


class StreamingError(RelayError):
    """Base of streaming errors."""

    code = "streaming_error"


class RunStoppedError(StreamingError):
    """The run was asked to stop: nothing but its terminal event may be published now."""

    status = 409
    code = "run_stopped"


class RunFinishedError(StreamingError):
    """The run's terminal event is in its stream: nothing more may be published."""

    status = 409
    code = "run_finished"


class UnsafeEventError(StreamingError):
    """An event holds an object that is not plain data (a SQLAlchemy row, a session...).

    Events cross processes as JSON; a database object in one would either fail to serialise or
    leak a detached row (and its lazy loads) into another thread.
    """

    code = "unsafe_event"
