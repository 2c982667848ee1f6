"""The SQL page's Download CSV, in headless Chromium: the file keeps every digit (traindash.output)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.harness import CollectorProcess
from tests.test_output import SPECIAL, same
from tests.ui.conftest import UIServer
from tests.ui.pagejs import open_page

pytestmark = pytest.mark.browser


def test_download_csv_keeps_every_digit_and_the_tokens(
    collector: CollectorProcess, ui_server: UIServer, page: Any, tmp_path: Path
) -> None:
    rows = ", ".join(f"({i}, '{v!r}'::DOUBLE)" for i, v in enumerate(SPECIAL))
    sql = (
        f"SELECT i, x, TIMESTAMP '2024-05-01 12:00:00.25' AS ts, NULL::DOUBLE AS nothing "
        f"FROM (VALUES {rows}) t(i, x) ORDER BY i"
    )
    open_page(page, ui_server.url + "/sql")
    page.locator("textarea").first.fill(sql)
    page.get_by_role("button", name="Run query").click()
    page.get_by_text(f"{len(SPECIAL)} rows in", exact=False).wait_for()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "download.csv"
    dl.value.save_as(path)
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "i,x,ts,nothing"
    assert lines[1 + SPECIAL.index(375547.624894)].split(",")[1] == "375547.624894"
    assert [line.split(",")[1] for line in lines[-3:]] == ["nan", "inf", "-inf"]
    assert lines[1].split(",")[2:] == ["2024-05-01T12:00:00.250000+00:00", ""]
    back = pd.read_csv(io.StringIO(text))
    assert all(same(v, b) for v, b in zip(SPECIAL, back["x"], strict=True))
    assert back["nothing"].isna().all() and math.isnan(back["x"].iloc[-3])
