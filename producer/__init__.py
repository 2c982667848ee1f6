"""The client library trainers import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from traindash.producer.logger import MetricsLogger

if TYPE_CHECKING:
    from traindash.producer.experiment_tracker import ExperimentTracker

__all__ = ["ExperimentTracker", "MetricsLogger"]


def __getattr__(name: str) -> Any:
    # ExperimentTracker brings pyarrow (~35 MB); a shipper process imports this package
    # and never needs it.
    if name == "ExperimentTracker":
        from traindash.producer.experiment_tracker import ExperimentTracker

        return ExperimentTracker
    raise AttributeError(f"module 'producer' has no attribute {name!r}")
