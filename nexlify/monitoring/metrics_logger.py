"""The guide's path for :class:`traindash.producer.logger.MetricsLogger`."""

from traindash.producer.logger import MetricsLogger

__all__ = ["MetricsLogger"]
