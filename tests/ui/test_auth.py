"""The dashboard off loopback: a login is required, a weak or missing password is refused."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.harness import CollectorProcess, env_for, free_endpoints, free_port, run_cli, wait_for
from tests.ui.conftest import Trainer
from tests.ui.pagejs import DOC_READY, points
from traindash.ui.processes import Children, endpoint_flags, http_ok, traindash

PASSWORD = "correct horse battery staple"
OFF_LOOPBACK = "127.0.0.2"  # loopback to the kernel, not to traindash: only 127.0.0.1/::1/localhost


def start_ui(collector: CollectorProcess, log_dir: Path, *extra: str, **env: str) -> tuple[Children, str]:
    port = free_port()
    children = Children(log_dir)
    children.start(
        "ui",
        traindash(
            "ui",
            "--host",
            OFF_LOOPBACK,
            "--port",
            str(port),
            "--update-interval",
            "200",
            *extra,
            *endpoint_flags(collector.endpoints, "rows", "query"),
        ),
        env={**collector.env, **env},
    )
    url = f"http://{OFF_LOOPBACK}:{port}"
    try:
        children.wait_until("ui", lambda: http_ok(url + "/login") or http_ok(url + "/sql"), 60)
    except BaseException:
        children.stop()
        raise
    return children, url


def body(url: str) -> tuple[str, str]:
    """The final URL (after redirects) and the HTML a client without a login gets."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.geturl(), resp.read().decode(errors="replace")


def test_off_loopback_without_a_password_or_with_a_weak_one_is_refused(tmp_path: Path) -> None:
    env = env_for(free_endpoints(), tmp_path / "td.duckdb")
    env.pop("TRAINDASH_UI_PASSWORD", None)
    port = str(free_port())
    res = run_cli("ui", "--host", OFF_LOOPBACK, "--port", port, env=env)
    assert res.returncode == 1
    (line,) = res.stderr.strip().splitlines()
    assert "TRAINDASH_UI_PASSWORD" in line and "--no-auth" in line and f"--host {OFF_LOOPBACK}" in line
    for weak, why in (
        ("", "is reachable"),
        ("hunter2", "shorter than 12"),
        ("aaaaaaaaaaaaaaaa", "different"),
    ):
        res = run_cli("ui", "--host", "0.0.0.0", "--port", port, env={**env, "TRAINDASH_UI_PASSWORD": weak})
        assert res.returncode == 1 and why in res.stderr, res.stderr
        assert not weak or weak not in res.stderr
    res = run_cli(
        "dashboard", "--host", "0.0.0.0", "--port", port, env={**env, "TRAINDASH_UI_PASSWORD": "hunter2"}
    )
    assert res.returncode == 1 and "too weak" in res.stderr


@pytest.mark.browser
def test_off_loopback_dashboard_shows_nothing_without_a_login(
    collector: CollectorProcess, trainers: list[Trainer], tmp_path: Path, page: Any
) -> None:
    trainer = Trainer(collector, tmp_path, "secret-run")
    trainers.append(trainer)
    trainer.log(20)
    wait_for(
        lambda: collector.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{trainer.run_id}'") >= 20,
        30,
        "the history",
    )
    children, url = start_ui(collector, tmp_path / "ui", TRAINDASH_UI_PASSWORD=PASSWORD)
    try:
        for path in ("/", "/sql", "/compare"):
            final, html = body(url + path)
            assert final.startswith(url + "/login"), final
            assert trainer.run_id not in html and "secret-run" not in html
        page.goto(url + "/", timeout=60_000)
        page.wait_for_load_state("load")
        assert "/login" in page.url
        assert page.evaluate("() => !!(window.Bokeh && Bokeh.documents && Bokeh.documents.length)") is False
        assert trainer.run_id not in page.content()
        page.fill("input[name=username]", "traindash")
        page.fill("input[name=password]", "not the password!")
        with page.expect_navigation(timeout=60_000):
            page.click("button[type=submit], input[type=submit]")
        page.wait_for_load_state("load")
        assert "/login" in page.url and "error=" in page.url and trainer.run_id not in page.content()
        # the right login opens the same page, with the run's data
        page.fill("input[name=username]", "traindash")
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation(timeout=60_000):
            page.click("button[type=submit], input[type=submit]")
        page.wait_for_function(DOC_READY, timeout=90_000)
        wait_for(lambda: points(page, trainer.run_id) >= 20, 30, "the run's history after the login")
        assert PASSWORD not in children.log("ui")
    finally:
        children.stop()


def test_no_auth_serves_off_loopback_when_asked(collector: CollectorProcess, tmp_path: Path) -> None:
    children, url = start_ui(collector, tmp_path / "ui", "--no-auth")
    try:
        final, html = body(url + "/sql")
        assert final == url + "/sql" and "/login" not in final
        assert "bokeh" in html.lower()
    finally:
        children.stop()
