"""Shutdown is a flag the loop checks: the first signal asks, a second one insists."""

from __future__ import annotations

import signal
from types import FrameType


class GracefulExit:
    """``should_exit`` after SIGTERM/SIGINT; ``force_exit`` after a second signal."""

    should_exit: bool = False
    force_exit: bool = False

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
