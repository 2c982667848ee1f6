"""The guide's path for :class:`alerts.system.AlertSystem` and its threshold presets."""

from alerts.system import AlertSystem, AlertThresholds

__all__ = ["AlertSystem", "AlertThresholds"]
