"""Every runnable ```python block of the guide runs as written, against a real pipeline.

The guide is copied into the repo (docs/training_dashboard_guide.md) so this test stands
alone; where shared/ sits beside the clone, the copy must equal the original. Each snippet
runs in a fresh directory with TRAINDASH_* pointing at a real collector, with the guide's
undefined placeholders (``profit``, ``loss``, ``latest``, ``exp_id1``, ...) filled with values.
The fragments that are not code (outlines, one-argument fragments, signatures) are listed by
name with the reason; a test holds each reason against the guide's text, and
docs/migration.md explains them. Nothing is skipped.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, CollectorProcess, free_port, wait_for

GUIDE = ROOT / "docs" / "training_dashboard_guide.md"
SEED = ROOT.parent / "shared" / "seed" / "training_dashboard_guide.md"

OUTLINE = "an outline: `...` stands for omitted arguments (passing Ellipsis would log nonsense)"
NO_NAME = "a fragment showing one argument: MetricsLogger's experiment_name is required (API reference)"
NO_LOGGER = "a fragment showing one argument: TrainingDashboard's metrics_logger is required (API reference)"
SIGNATURES = "API reference: signatures without bodies, not code"

# The guide's python blocks in order: (name, reason to skip or None).
SNIPPETS: list[tuple[str, str | None]] = [
    ("quick_start", None),
    ("metrics_logger_usage", None),
    ("dashboard_usage", None),
    ("alert_system_usage", None),
    ("threshold_presets", None),
    ("experiment_tracker_usage", None),
    ("full_integration_outline", OUTLINE),
    ("minimal_integration", None),
    ("loading_config", None),
    ("logging_frequency_recommended", OUTLINE),
    ("logging_frequency_avoid", OUTLINE + "; it shows what not to do"),
    ("auto_save_interval", NO_NAME),
    ("alert_throttling", None),
    ("dashboard_update_interval", NO_LOGGER),
    ("experiment_organization", None),
    ("resource_management", None),
    ("memory_buffer_size", NO_NAME),
    ("memory_auto_save", NO_NAME),
    ("memory_clear_old_episodes", None),
    ("slow_logging_async", NO_NAME),
    ("slow_logging_auto_save", NO_NAME),
    ("slow_logging_heavy_data", OUTLINE),
    ("plots_not_updating", None),
    ("experiment_save", None),
    ("experiment_complete", None),
    ("custom_metrics", None),
    ("multi_experiment_comparison", None),
    ("dashboard_control", None),
    ("custom_alert_thresholds", None),
    ("api_metrics_logger", SIGNATURES),
    ("api_training_dashboard", SIGNATURES),
    ("api_alert_system", SIGNATURES),
    ("api_experiment_tracker", SIGNATURES),
]


def python_blocks(text: str) -> list[str]:
    """The guide's ```python blocks, de-indented (some sit inside list items)."""
    blocks = []
    for m in re.finditer(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```[ \t]*$", text, re.M | re.S):
        indent = m.group(1)
        lines = [line[len(indent) :] if line.startswith(indent) else line for line in m.group(2).splitlines()]
        blocks.append("\n".join(lines) + "\n")
    return blocks


BLOCKS = python_blocks(GUIDE.read_text(encoding="utf-8"))


def test_guide_copy_matches_the_seed() -> None:
    if not SEED.exists():
        pytest.skip(f"{SEED} is not beside this clone")
    assert GUIDE.read_text(encoding="utf-8") == SEED.read_text(encoding="utf-8")


def test_every_block_is_named() -> None:
    assert len(BLOCKS) == len(SNIPPETS)
    assert BLOCKS[0].startswith("from nexlify.monitoring.metrics_logger import MetricsLogger")
    assert BLOCKS[-1].startswith("class ExperimentTracker:")
    migration = (ROOT / "docs" / "migration.md").read_text(encoding="utf-8")
    for name, reason in SNIPPETS:
        if reason is not None:
            assert f"`{name}`" in migration, f"docs/migration.md does not explain {name}"


@dataclass
class Ctx:
    """What a snippet runs with: the collector, its directory, its globals."""

    collector: CollectorProcess
    cwd: Path
    ns: dict[str, Any]

    def scalar(self, sql: str) -> Any:
        """A value from the collector once every open logger of the snippet is acknowledged."""
        from traindash.producer.logger import MetricsLogger

        for value in self.ns.values():
            if isinstance(value, MetricsLogger) and not value.is_closed():
                assert value.flush(timeout=30), f"{value.run_id} was not acknowledged"
        return self.collector.scalar(sql)


def _episode(i: int) -> dict[str, Any]:
    return {
        "episode": i,
        "profit": 10.0 + i,
        "sharpe": 1.2,
        "win_rate": 0.55,
        "drawdown": 20.0,
        "num_trades": 12,
        "epsilon": 0.1,
        "learning_rate": 1e-3,
    }


def _placeholders() -> dict[str, Any]:
    """Values for names the guide's snippets use without defining them (earlier imports too)."""
    from nexlify.monitoring.alert_system import AlertSystem, AlertThresholds
    from nexlify.monitoring.experiment_tracker import ExperimentTracker
    from nexlify.monitoring.metrics_logger import MetricsLogger
    from nexlify.monitoring.training_dashboard import TrainingDashboard

    recent = [_episode(i) for i in range(40)]
    return {
        "profit": 125.0,
        "sharpe": 1.4,
        "win_rate": 0.6,
        "epsilon": 0.2,
        "lr": 1e-3,
        "loss": 0.35,
        "q_values": [0.5, 1.5, 2.5],
        "episode": 10,
        "latest": recent[-1],
        "recent": recent,
        "recent_episodes": recent,
        "exp_name": "guide_run",
        "name": "guide_run",
        "hyperparameters": {"learning_rate": 1e-3, "gamma": 0.99},
        "MetricsLogger": MetricsLogger,
        "ExperimentTracker": ExperimentTracker,
        "AlertSystem": AlertSystem,
        "AlertThresholds": AlertThresholds,
        "TrainingDashboard": TrainingDashboard,
    }


def _logger(ctx: Ctx) -> Any:
    from nexlify.monitoring.metrics_logger import MetricsLogger

    logger = MetricsLogger("guide_logger")
    for i in range(5):
        logger.log_episode(**_episode(i))
    return logger


def _tracker_with_two(ctx: Ctx) -> None:
    from nexlify.monitoring.experiment_tracker import ExperimentTracker

    tracker = ExperimentTracker(experiments_dir="experiments")
    ids = []
    for n, lr in enumerate((1e-3, 1e-4), 1):
        exp_id = tracker.create_experiment(f"guide_exp{n}", {"learning_rate": lr})
        for ep in range(10):
            tracker.log_result(exp_id, episode=ep, profit=float(n * ep), sharpe=0.5 * n)
        tracker.complete_experiment(exp_id)
        ids.append(exp_id)
    ctx.ns.update(tracker=tracker, exp_id1=ids[0], exp_id2=ids[1], exp_id=ids[0], _ids=ids)


def _open_experiment(ctx: Ctx) -> None:
    _tracker_with_two(ctx)
    exp_id = ctx.ns["tracker"].create_experiment("guide_open", {"gamma": 0.9})
    ctx.ns["tracker"].log_result(exp_id, episode=1, profit=5.0)
    ctx.ns["exp_id"] = exp_id


def _dashboard(ctx: Ctx) -> None:
    from nexlify.monitoring.training_dashboard import TrainingDashboard

    ctx.ns["logger"] = _logger(ctx)
    ctx.ns["dashboard"] = TrainingDashboard(ctx.ns["logger"], port=free_port())


def _alert_system(ctx: Ctx) -> None:
    from nexlify.monitoring.alert_system import AlertSystem

    ctx.ns["alert_system"] = AlertSystem({"enable_alerts": True})


def _config_file(ctx: Ctx) -> None:
    (ctx.cwd / "config").mkdir()
    shutil.copy(ROOT / "config" / "neural_config.example.json", ctx.cwd / "config" / "neural_config.json")


def _thresholds(ctx: Ctx) -> None:
    AlertThresholds = ctx.ns["AlertThresholds"]  # noqa: N806 - the guide's name
    ctx.ns["_before"] = {
        k: dict(getattr(AlertThresholds, k)) for k in ("CONSERVATIVE", "MODERATE", "AGGRESSIVE")
    }


def _logger_ns(ctx: Ctx) -> None:
    ctx.ns["logger"] = _logger(ctx)


def _alerts_via_loopback(source: str, ctx: Ctx) -> str:
    """The one textual change to the AlertSystem example: its SMTP server and Slack webhook
    become loopback servers of this test (tests never send mail or Slack messages out)."""
    smtp, hook = ctx.ns["_smtp_port"], ctx.ns["_hook_port"]
    source = source.replace("'smtp.gmail.com'", "'127.0.0.1'").replace("587", str(smtp))
    return source.replace("'https://hooks.slack.com/...'", f"'http://127.0.0.1:{hook}/hook'")


def _free_dashboard_port(source: str, ctx: Ctx) -> str:
    """Tests share the machine: the dashboard's port 8050 becomes a free port."""
    return source.replace("port=8050", f"port={free_port()}")


def _real_ids(source: str, ctx: Ctx) -> str:
    """The guide's literal placeholders 'expN_timestamp' and 'comparison_timestamp.csv'."""
    ids = ctx.ns["_ids"] + [ctx.ns["exp_id"]]
    for n, exp_id in enumerate(ids, 1):
        source = source.replace(f"'exp{n}_timestamp'", repr(exp_id))
    return source.replace(
        "'comparison_timestamp.csv'", "sorted(__import__('glob').glob('experiments/comparison_*.csv'))[-1]"
    )


# name -> (setup, source rewrite or None, check)
def _check_quick_start(ctx: Ctx) -> None:
    run = ctx.ns["logger"].run_id
    assert ctx.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{run}'") == 1000
    assert ctx.scalar(f"SELECT count(*) FROM model_metrics WHERE run_id = '{run}'") == 1000


def _check_metrics_logger(ctx: Ctx) -> None:
    name = ctx.ns["logger"].run_id
    assert ctx.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{name}'") == 1
    assert ctx.scalar(f"SELECT q_max FROM model_metrics WHERE run_id = '{name}'") == 3.0
    assert len(list((ctx.cwd / "training_logs").glob("dqn_training_*.json"))) == 1
    assert len(list((ctx.cwd / "training_logs").glob("dqn_training_*.csv"))) >= 1


def _check_tracker(ctx: Ctx) -> None:
    exp_id = ctx.ns["exp_id"]
    assert ctx.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{exp_id}'") == 1000
    assert ctx.scalar(f"SELECT status FROM runs WHERE run_id = '{exp_id}'") == "finished"
    assert set(ctx.ns["comparison"]["experiments"]) == {ctx.ns["exp_id1"], ctx.ns["exp_id2"]}
    assert ctx.ns["leaderboard"][0]["exp_id"] == exp_id
    assert len(list((ctx.cwd / "experiments").glob("comparison_*.json"))) == 1


def _check_thresholds(ctx: Ctx) -> None:
    cls = ctx.ns["AlertThresholds"]
    for key, before in ctx.ns["_before"].items():
        assert dict(getattr(cls, key)) == before, f"the guide's {key} preset differs"


def _check_minimal(ctx: Ctx) -> None:
    assert ctx.scalar("SELECT count(*) FROM episodes WHERE run_id LIKE 'my_training-%'") == 1000


def _check_custom_metrics(ctx: Ctx) -> None:
    assert ctx.scalar("SELECT custom_score FROM episodes WHERE episode = 1 AND profit = 100.0") == 0.95


def _check_experiment_complete(ctx: Ctx) -> None:
    assert ctx.scalar(f"SELECT status FROM runs WHERE run_id = '{ctx.ns['exp_id']}'") == "finished"
    assert (ctx.cwd / "experiments" / f"{ctx.ns['exp_id']}.json").exists()


def _check_comparison(ctx: Ctx) -> None:
    assert len(ctx.ns["df"]) == 3


# what a snippet prints (the guide's own print calls)
PRINTS = {
    "metrics_logger_usage": "Best profit: $100.00",
    "dashboard_control": "Dashboard active",
    "plots_not_updating": "5",
    "multi_experiment_comparison": "profit_best",
}


def _check_dashboard_running(ctx: Ctx) -> None:
    assert ctx.ns["dashboard"].is_running()
    _check_quick_start(ctx)


PLAN: dict[str, tuple[Any, Any, Any]] = {
    "quick_start": (None, _free_dashboard_port, _check_dashboard_running),
    "metrics_logger_usage": (None, None, _check_metrics_logger),
    "dashboard_usage": (_logger_ns, _free_dashboard_port, None),
    "alert_system_usage": (None, _alerts_via_loopback, None),
    "threshold_presets": (_thresholds, None, _check_thresholds),
    "experiment_tracker_usage": (_tracker_with_two, None, _check_tracker),
    "minimal_integration": (None, None, _check_minimal),
    "loading_config": (_config_file, None, None),
    "alert_throttling": (_alert_system, None, None),
    "experiment_organization": (_tracker_with_two, None, None),
    "resource_management": (None, None, None),
    "memory_clear_old_episodes": (_logger_ns, None, None),
    "plots_not_updating": (_logger_ns, None, None),
    "experiment_save": (_tracker_with_two, None, None),
    "experiment_complete": (_open_experiment, None, _check_experiment_complete),
    "custom_metrics": (_logger_ns, None, _check_custom_metrics),
    "multi_experiment_comparison": (_open_experiment, _real_ids, _check_comparison),
    "dashboard_control": (_dashboard, None, None),
    "custom_alert_thresholds": (None, None, None),
}


def _cleanup(ns: dict[str, Any]) -> None:
    """Stop what the snippet started, while the test's directory is still the cwd."""
    from traindash.alerts.system import AlertSystem
    from traindash.producer.experiment_tracker import ExperimentTracker
    from traindash.producer.logger import MetricsLogger
    from traindash.ui.dashboard import TrainingDashboard

    for value in list(ns.values()):
        if isinstance(value, TrainingDashboard):
            value.stop()
        elif isinstance(value, AlertSystem):
            value.close(timeout=5)
        elif isinstance(value, (MetricsLogger, ExperimentTracker)):
            value.close()


@pytest.fixture
def loopback_alert_sinks() -> Any:
    """An SMTP server (aiosmtpd) and a Slack-webhook HTTP server on loopback ports."""
    import http.server
    import threading

    from aiosmtpd.controller import Controller

    class Sink:
        messages: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append(envelope)
            return "250 OK"

    posts: list[bytes] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            posts.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    def accept_any_login(*args: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        return AuthResult(success=True)

    sink = Sink()
    smtp = Controller(
        sink, hostname="127.0.0.1", port=free_port(), auth_require_tls=False, authenticator=accept_any_login
    )
    smtp.start()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "smtp_port": smtp.port,
            "hook_port": httpd.server_address[1],
            "mail": sink.messages,
            "posts": posts,
        }
    finally:
        httpd.shutdown()
        httpd.server_close()
        smtp.stop()


RUNNABLE = [name for name, reason in SNIPPETS if reason is None]
NOT_CODE = [(name, reason) for name, reason in SNIPPETS if reason is not None]


@pytest.mark.parametrize("name", RUNNABLE)
def test_snippet_runs(
    name: str,
    td_env: CollectorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = BLOCKS[[n for n, _ in SNIPPETS].index(name)]
    collector = td_env.start()
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    ctx = Ctx(collector, cwd, {"__name__": f"guide_{name}", **_placeholders()})
    setup, rewrite, check = PLAN[name]
    if name == "alert_system_usage":
        sinks = request.getfixturevalue("loopback_alert_sinks")
        ctx.ns.update(_smtp_port=sinks["smtp_port"], _hook_port=sinks["hook_port"])
    try:
        if setup is not None:
            setup(ctx)
        if rewrite is not None:
            source = rewrite(source, ctx)
        exec(compile(source, f"<guide:{name}>", "exec"), ctx.ns)
        printed = capsys.readouterr().out
        assert PRINTS.get(name, "") in printed
        if check is not None:
            check(ctx)
        if name == "alert_system_usage":
            wait_for(lambda: sinks["posts"], 20, "the Slack webhook to be called")
            wait_for(lambda: sinks["mail"], 20, "the alert email")
            wait_for(lambda: collector.scalar("SELECT count(*) FROM alerts"), 20, "alerts in DuckDB")
    finally:
        _cleanup(ctx.ns)


def _passes_ellipsis(source: str) -> bool:
    """Some call passes ``...`` as an argument: an outline's omitted arguments."""
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]
    args = [a for c in calls for a in [*c.args, *(k.value for k in c.keywords)]]
    return any(isinstance(a, ast.Constant) and a.value is Ellipsis for a in args)


def _missing_argument(source: str) -> str:
    """Run the fragment; the TypeError of the required argument it leaves out."""
    from traindash.producer import MetricsLogger
    from traindash.ui import TrainingDashboard

    with pytest.raises(TypeError, match="missing 1 required positional argument") as info:
        exec(
            compile(source, "<guide>", "exec"),
            {"MetricsLogger": MetricsLogger, "TrainingDashboard": TrainingDashboard},
        )
    return str(info.value)


def _not_python(source: str) -> bool:
    """Signatures without bodies: the text does not compile."""
    try:
        compile(source, "<guide>", "exec")
    except SyntaxError:
        return True
    return False


@pytest.mark.parametrize("name,reason", NOT_CODE, ids=[n for n, _ in NOT_CODE])
def test_fragment_is_not_code_for_the_reason_given(name: str, reason: str) -> None:
    """Each fragment listed as not code is so, for the reason given, in the guide as it stands."""
    source = BLOCKS[[n for n, _ in SNIPPETS].index(name)]
    if reason.startswith(OUTLINE):
        assert _passes_ellipsis(source), name
    elif reason == NO_NAME:
        assert "'experiment_name'" in _missing_argument(source), name
    elif reason == NO_LOGGER:
        assert "'metrics_logger'" in _missing_argument(source), name
    else:
        assert reason == SIGNATURES and _not_python(source), name
        assert source.startswith("class ") and "    def __init__(" in source, name


def test_the_fragments_that_are_not_code_are_these_fourteen() -> None:
    assert [n for n, _ in NOT_CODE] == [
        "full_integration_outline",
        "logging_frequency_recommended",
        "logging_frequency_avoid",
        "auto_save_interval",
        "dashboard_update_interval",
        "memory_buffer_size",
        "memory_auto_save",
        "slow_logging_async",
        "slow_logging_auto_save",
        "slow_logging_heavy_data",
        "api_metrics_logger",
        "api_training_dashboard",
        "api_alert_system",
        "api_experiment_tracker",
    ]
    # ...and no runnable block is one of them in disguise.
    for name in RUNNABLE:
        source = BLOCKS[[n for n, _ in SNIPPETS].index(name)]
        assert not _not_python(source) and not _passes_ellipsis(source), name


def test_example_config_is_the_guides_plus_a_collector_block() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    guide_json = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))
    example = json.loads((ROOT / "config" / "neural_config.example.json").read_text())
    block = dict(example["training_dashboard"])
    assert set(block.pop("collector")) == {"db", "ingest", "rows", "query"}
    assert block == guide_json["training_dashboard"]
