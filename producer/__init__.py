"""The client library trainers import."""

from producer.experiment_tracker import ExperimentTracker
from producer.logger import MetricsLogger

__all__ = ["ExperimentTracker", "MetricsLogger"]
