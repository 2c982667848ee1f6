"""The traindash live dashboard: a Panel/Bokeh server fed by the collector.

``TrainingDashboard`` is the guide's embedded API; ``traindash ui`` runs the server alone.
"""

from traindash.ui.dashboard import TrainingDashboard

__all__ = ["TrainingDashboard"]
