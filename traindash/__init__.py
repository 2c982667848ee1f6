"""traindash: real-time monitoring for reinforcement-learning training runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from traindash.data import Connection, connect

__all__ = ["Connection", "__version__", "connect"]


def __getattr__(name: str) -> Any:
    # pyarrow and pyzmq load only when asked for: a trainer imports traindash.producer.
    if name in ("connect", "Connection"):
        from traindash import data

        return getattr(data, name)
    raise AttributeError(f"module 'traindash' has no attribute {name!r}")
