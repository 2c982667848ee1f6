"""The alerts subscriber and the guide's in-process AlertSystem."""

from traindash.alerts.system import AlertSystem, AlertThresholds

__all__ = ["AlertSystem", "AlertThresholds"]
