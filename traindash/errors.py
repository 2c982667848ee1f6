"""Errors a command reports as one line (and a non-zero exit) rather than a traceback."""

from __future__ import annotations

from traindash.config import ConfigError
from traindash.query import QueryError
from traindash.wire import WireError


class UserError(RuntimeError):
    """A problem with what the user asked for; the message says what to do."""


def _collector_error() -> tuple[type[BaseException], ...]:
    try:
        from collector.service import CollectorError
    except ImportError:  # pragma: no cover - the collector package ships with traindash
        return ()
    return (CollectorError,)


USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError, ConfigError, QueryError, WireError, ValueError, OSError, *_collector_error(),
)
