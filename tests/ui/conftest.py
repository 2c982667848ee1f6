"""A real ``traindash ui`` server, a trainer thread and headless Chromium for the ui tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, CollectorProcess, free_port
from traindash.cli.demo_trainer import DemoAgent
from traindash.producer import MetricsLogger
from traindash.ui import processes
from traindash.ui.processes import Children

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class UIServer:
    url: str
    children: Children

    def alive(self) -> bool:
        return self.children.alive("ui")


def start_ui(
    collector: CollectorProcess, log_dir: Path, theme: str = "cyberpunk", update_interval: int = 200
) -> UIServer:
    children = Children(log_dir)
    try:
        url = processes.start_ui(
            children, collector.endpoints, "127.0.0.1", free_port(), theme, update_interval, cwd=ROOT
        )
    except BaseException:
        children.stop()
        raise
    return UIServer(url.rstrip("/"), children)


@pytest.fixture
def ui_server(collector: CollectorProcess, tmp_path: Path) -> Iterator[UIServer]:
    server = start_ui(collector, tmp_path)
    try:
        yield server
    finally:
        server.children.stop()


class Trainer:
    """A MetricsLogger logging simulated episodes from a thread until stopped."""

    def __init__(
        self, collector: CollectorProcess, tmp_path: Path, name: str, interval: float = 0.02, seed: int = 1
    ) -> None:
        self.logger = MetricsLogger(
            "uitest",
            output_dir=str(tmp_path / name),
            name=name,
            hyperparameters={"seed": seed, "gamma": 0.99},
            config=collector.producer_config(),
        )
        self.agent = DemoAgent(seed=seed, episodes=2000)
        self.interval = interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def run_id(self) -> str:
        return self.logger.run_id

    def log(self, n: int) -> None:
        for _ in range(n):
            self.logger.log_episode(**self.agent.step())
            if self.agent.episode % 5 == 0:
                self.logger.log_model_metrics(**self.agent.model_step())

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.log(1)

    def start(self) -> Trainer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(10)
        self.logger.close()


@pytest.fixture
def trainers(collector: CollectorProcess, tmp_path: Path) -> Iterator[list[Trainer]]:
    """Append Trainer objects; all are closed after the test."""
    made: list[Trainer] = []
    yield made
    for t in made:
        t.close()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        context.close()
