"""The guide's path for :class:`ui.dashboard.TrainingDashboard`."""

from ui.dashboard import TrainingDashboard

__all__ = ["TrainingDashboard"]
