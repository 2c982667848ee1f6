"""``traindash top`` in a real terminal: tmux runs it, send-keys types, capture-pane reads."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, CollectorProcess, wait_for
from traindash.producer import MetricsLogger

TMUX = shutil.which("tmux")


class Terminal:
    """An 80x24 tmux session on a server of its own, killed afterwards."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        if TMUX is None:
            raise AssertionError("tmux is not installed (make test installs it)")
        self.server = f"td-{uuid.uuid4().hex[:8]}"
        self.exit_file = tmp_path / "top.exit"
        script = tmp_path / "top.sh"
        exports = "".join(
            f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k.startswith("TRAINDASH_")
        )
        command = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "traindash.cli", "top", *args))
        script.write_text(
            f"cd {shlex.quote(str(ROOT))}\n{exports}export TERM=xterm-256color\n"
            f"{command}\necho $? > {shlex.quote(str(self.exit_file))}\nsleep 60\n"
        )
        self.tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "top", f"sh {shlex.quote(str(script))}")

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            [TMUX or "tmux", "-L", self.server, *args],
            capture_output=True,
            text=True,
            timeout=20,
            env={**os.environ, "TMUX": ""},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "top", *keys)

    def exit_status(self) -> int | None:
        text = self.exit_file.read_text().strip() if self.exit_file.exists() else ""
        return int(text) if text else None

    def close(self) -> None:
        subprocess.run([TMUX or "tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def terminal(tmp_path: Path, collector: CollectorProcess) -> Iterator[Terminal]:
    term = Terminal(tmp_path, collector.env)
    try:
        yield term
    finally:
        term.close()


def _episode_of(screen: str, name: str) -> int | None:
    for line in screen.splitlines():
        if name in line:
            numbers = re.findall(r"\s(\d+)\s", line.split(name, 1)[1])
            if numbers:
                return int(numbers[0])
    return None


def test_top_shows_a_run_appear_and_grow_then_quits_on_q(
    terminal: Terminal, collector: CollectorProcess, tmp_path: Path
) -> None:
    wait_for(lambda: "traindash top" in terminal.screen(), 60, "the terminal view to start")
    with MetricsLogger(
        "top-test", output_dir=str(tmp_path / "logs"), name="topmost-run", config=collector.producer_config()
    ) as logger:
        for episode in range(1, 6):
            logger.log_episode(episode, profit=float(episode))
        logger.flush()
        first = wait_for(lambda: _episode_of(terminal.screen(), "topmost-run"), 30, "the run on screen")
        for episode in range(6, 41):
            logger.log_episode(episode, profit=float(episode) * 0.5)
        logger.flush()
        wait_for(
            lambda: (_episode_of(terminal.screen(), "topmost-run") or 0) == 40,
            30,
            "the episode count to reach 40",
        )
    assert first < 40
    screen = terminal.screen()
    assert len(screen.splitlines()) <= 24 and max(map(len, screen.splitlines())) <= 80
    assert "1 runs" in screen
    terminal.keys("q")
    assert wait_for(lambda: terminal.exit_status() is not None, 20, "top to exit") is True
    assert terminal.exit_status() == 0


def test_top_pages_and_picks_runs_with_the_keyboard_and_exits_on_ctrl_c(
    terminal: Terminal, collector: CollectorProcess, tmp_path: Path
) -> None:
    loggers = [
        MetricsLogger(
            "top-many",
            output_dir=str(tmp_path / "logs"),
            name=f"many-{i:02d}",
            config=collector.producer_config(),
        )
        for i in range(30)
    ]
    try:
        for i, logger in enumerate(loggers):
            logger.log_episode(1, profit=float(i))
            logger.flush()
        wait_for(lambda: "30 runs" in terminal.screen(), 60, "30 runs on screen")
        first_detail = terminal.screen().splitlines()
        terminal.keys("Down", "Down")
        wait_for(
            lambda: terminal.screen().splitlines()[-9:] != first_detail[-9:],
            20,
            "the picked run's detail to change",
        )
        before = set(re.findall(r"many-\d\d", terminal.screen()))
        terminal.keys("PageDown")
        wait_for(
            lambda: set(re.findall(r"many-\d\d", terminal.screen())) - before, 20, "another page of runs"
        )
    finally:
        for logger in loggers:
            logger.close()
    terminal.keys("C-c")
    wait_for(lambda: terminal.exit_status() is not None, 20, "top to exit on Ctrl-C")
    assert terminal.exit_status() == 0
