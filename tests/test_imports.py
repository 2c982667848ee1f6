"""The guide's import paths work, and imports point the way STYLE.md says.

Everything may import ``traindash``; ``ui`` and ``alerts`` may use ``producer``; the collector
imports only ``traindash`` (and itself). Only ``collector/`` imports duckdb (``traindash/query.py``
too, to open a file read-only when no collector runs); only ``traindash/wire.py`` imports msgpack.
In ``traindash`` only the CLI (``cli.py`` and its ``commands/``) reaches into the other
packages, lazily, inside the chosen command.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator

import pytest

from tests.harness import ROOT

PACKAGES = ("traindash", "producer", "collector", "ui", "alerts", "nexlify")
OURS = frozenset(PACKAGES)
# package -> our packages its modules may import at module level
ALLOWED = {
    "traindash": {"traindash"},
    "producer": {"traindash", "producer"},
    "collector": {"traindash", "collector"},
    "ui": {"traindash", "producer", "ui"},
    "alerts": {"traindash", "producer", "alerts"},
    "nexlify": {"producer", "ui", "alerts", "nexlify"},
}
# the CLI: these may import any package lazily (inside a function)
LAZY_OK = ("traindash/cli.py", "traindash/commands/")
# Known exception: traindash/errors.py imports collector.service lazily to report the
# collector's error class as a one-line error. Reported to the lead; keep the list short.
LAZY_EXCEPTIONS = {("traindash/errors.py", "collector")}
DUCKDB_OK = ("collector/", "traindash/query.py")
MSGPACK_OK = ("traindash/wire.py",)

GUIDE_PATHS = {
    "nexlify.monitoring.metrics_logger": ("MetricsLogger", "producer.logger"),
    "nexlify.monitoring.training_dashboard": ("TrainingDashboard", "ui.dashboard"),
    "nexlify.monitoring.alert_system": ("AlertSystem", "alerts.system"),
    "nexlify.monitoring.experiment_tracker": ("ExperimentTracker", "producer.experiment_tracker"),
}


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            yield rel, ast.parse(path.read_text(), filename=rel)


def _imports(tree: ast.Module) -> Iterator[tuple[str, bool, int]]:
    """(top-level module name, imported lazily inside a function, line) for each import."""

    def walk(node: ast.AST, lazy: bool) -> Iterator[tuple[str, bool, int]]:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name.split(".")[0], lazy, child.lineno
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child.module.split(".")[0], lazy, child.lineno
            yield from walk(child, inner)

    yield from walk(tree, False)


def test_dependency_direction() -> None:
    problems = []
    for rel, tree in _sources():
        package = rel.split("/")[0]
        for name, lazy, line in _imports(tree):
            where = f"{rel}:{line} imports {name}"
            if name == "duckdb" and not rel.startswith(DUCKDB_OK):
                problems.append(f"{where} (only collector/ writes DuckDB)")
            if name == "msgpack" and rel not in MSGPACK_OK:
                problems.append(f"{where} (only traindash/wire.py owns the wire format)")
            if name not in OURS or name in ALLOWED[package]:
                continue
            if lazy and (rel.startswith(LAZY_OK) or (rel, name) in LAZY_EXCEPTIONS):
                continue
            problems.append(f"{where} ({package} may import only {', '.join(sorted(ALLOWED[package]))}"
                            f"{'' if lazy else ' at module level'})")
    assert not problems, "\n".join(problems)


def test_nexlify_is_re_exports_only() -> None:
    for path in sorted((ROOT / "nexlify").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            targets = [getattr(t, "id", "") for t in getattr(node, "targets", [])]
            is_all = isinstance(node, ast.Assign) and targets == ["__all__"]
            assert is_doc or is_all or isinstance(node, (ast.Import, ast.ImportFrom)), \
                f"{path.relative_to(ROOT)}:{node.lineno} is more than a re-export"


@pytest.mark.parametrize("path", sorted(GUIDE_PATHS))
def test_guide_import_paths(path: str) -> None:
    name, real = GUIDE_PATHS[path]
    assert getattr(importlib.import_module(path), name) is getattr(importlib.import_module(real), name)


def test_package_level_exports() -> None:
    import alerts
    import producer
    import ui
    from nexlify.monitoring.alert_system import AlertThresholds

    assert producer.MetricsLogger.__name__ == "MetricsLogger"
    assert producer.ExperimentTracker.__name__ == "ExperimentTracker"
    assert ui.TrainingDashboard.__name__ == "TrainingDashboard"
    assert alerts.AlertSystem.__name__ == "AlertSystem"
    assert alerts.AlertThresholds is AlertThresholds


def test_every_module_imports() -> None:
    """Walk the packages and import each module (nothing runs a service at import time)."""
    failed = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except ImportError as exc:
                failed.append(f"{info.name}: {exc}")
    assert not failed, "\n".join(failed)


def test_producer_works_without_stable_baselines3() -> None:
    """producer.sb3 imports SB3 lazily: importing producer never pulls it in."""
    import subprocess
    import sys

    code = "import sys, producer, producer.sb3; assert 'stable_baselines3' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_walk_sees_the_packages() -> None:
    seen = {rel for rel, _ in _sources()}
    assert {"traindash/wire.py", "collector/store.py", "producer/logger.py",
            "nexlify/monitoring/metrics_logger.py"} <= seen
