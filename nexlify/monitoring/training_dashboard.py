"""The guide's path for :class:`traindash.ui.dashboard.TrainingDashboard`."""

from traindash.ui.dashboard import TrainingDashboard

__all__ = ["TrainingDashboard"]
