"""The guide's path for :class:`traindash.alerts.system.AlertSystem` and its threshold presets."""

from traindash.alerts.system import AlertSystem, AlertThresholds

__all__ = ["AlertSystem", "AlertThresholds"]
