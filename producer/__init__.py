"""The client library trainers import."""

from producer.logger import MetricsLogger

__all__ = ["MetricsLogger"]
