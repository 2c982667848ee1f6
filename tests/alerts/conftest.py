from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.servers import MailServer, SlackStub


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    stub = SlackStub()
    try:
        yield stub
    finally:
        stub.close()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[MailServer]:
    server = MailServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _no_secrets_from_the_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TRAINDASH_SMTP_PASSWORD",
        "TRAINDASH_SLACK_WEBHOOK_URL",
        "TRAINDASH_SLACK_TOKEN",
        "TRAINDASH_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
