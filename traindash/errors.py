"""Errors a command reports as one line (and a non-zero exit) rather than a traceback."""

from __future__ import annotations

from traindash.config import ConfigError
from traindash.query import QueryError
from traindash.wire import WireError


class UserError(RuntimeError):
    """A problem with what the user asked for; the message says what to do."""


# The CLI adds the services' own error classes (cli/__init__.py); the core knows none of them.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ConfigError,
    QueryError,
    WireError,
    ValueError,
    OSError,
)
