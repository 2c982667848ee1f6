"""The guide's path for :class:`traindash.producer.experiment_tracker.ExperimentTracker`."""

from traindash.producer.experiment_tracker import ExperimentTracker

__all__ = ["ExperimentTracker"]
