"""The alerts subscriber and the guide's in-process AlertSystem."""

from alerts.system import AlertSystem, AlertThresholds

__all__ = ["AlertSystem", "AlertThresholds"]
