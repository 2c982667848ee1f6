"""The guide's path for :class:`producer.logger.MetricsLogger`."""

from traindash.producer.logger import MetricsLogger

__all__ = ["MetricsLogger"]
