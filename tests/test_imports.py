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
import importlib.util
import pkgutil
from collections.abc import Iterator

import pytest

from tests.harness import ROOT

# folder -> the layer it installs as (pyproject's package-dir)
FOLDERS = {
    "traindash": "core",
    "producer": "producer",
    "collector": "collector",
    "ui": "ui",
    "alerts": "alerts",
    "cli": "cli",
    "nexlify": "nexlify",
}
PACKAGES = tuple(FOLDERS)
SERVICES = ("collector", "ui", "alerts")
# layer -> the layers its modules may import, at module level or inside a function alike
ALLOWED = {
    "core": {"core"},
    "producer": {"core", "producer"},
    "collector": {"core", "collector"},
    "ui": {"core", "producer", "ui"},
    "alerts": {"core", "producer", "alerts"},
    "cli": {"core", "producer", "collector", "ui", "alerts", "cli"},
    "nexlify": {"producer", "ui", "alerts", "nexlify"},
}
DUCKDB_OK = ("collector/", "traindash/query.py")
MSGPACK_OK = ("traindash/wire.py",)

GUIDE_PATHS = {
    "nexlify.monitoring.metrics_logger": ("MetricsLogger", "traindash.producer.logger"),
    "nexlify.monitoring.training_dashboard": ("TrainingDashboard", "traindash.ui.dashboard"),
    "nexlify.monitoring.alert_system": ("AlertSystem", "traindash.alerts.system"),
    "nexlify.monitoring.experiment_tracker": ("ExperimentTracker", "traindash.producer.experiment_tracker"),
}


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            yield rel, ast.parse(path.read_text(), filename=rel)


def _imports(tree: ast.Module) -> Iterator[tuple[str, bool, int]]:
    """(dotted module name, imported lazily inside a function, line) for each import."""

    def walk(node: ast.AST, lazy: bool) -> Iterator[tuple[str, bool, int]]:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, lazy, child.lineno
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child.module, lazy, child.lineno
                if child.module == "traindash":  # from traindash import producer
                    for alias in child.names:
                        yield f"traindash.{alias.name}", lazy, child.lineno
            yield from walk(child, inner)

    yield from walk(tree, False)


def _layer(name: str) -> str | None:
    """The layer an imported dotted name belongs to, or None when it is not ours."""
    parts = name.split(".")
    if parts[0] == "nexlify":
        return "nexlify"
    if parts[0] != "traindash":
        return None
    if len(parts) > 1 and parts[1] in FOLDERS.values() and parts[1] != "core":
        return parts[1]
    return "core"


def test_dependency_direction() -> None:
    """Each layer imports only the layers below it, lazily or not; no list of exceptions."""
    problems = []
    for rel, tree in _sources():
        layer = FOLDERS[rel.split("/")[0]]
        for name, lazy, line in _imports(tree):
            where = f"{rel}:{line} imports {name}"
            top = name.split(".")[0]
            if top == "duckdb" and not rel.startswith(DUCKDB_OK):
                problems.append(f"{where} (only collector/ writes DuckDB)")
            if top == "msgpack" and rel not in MSGPACK_OK:
                problems.append(f"{where} (only traindash/wire.py owns the wire format)")
            if top in FOLDERS and top not in ("traindash", "nexlify"):
                problems.append(f"{where} (import it as traindash.{top})")
            target = _layer(name)
            if target is not None and target not in ALLOWED[layer]:
                problems.append(
                    f"{where} ({layer} may import only "
                    f"{', '.join(sorted(ALLOWED[layer]))}{' even lazily' if lazy else ''})"
                )
    assert not problems, "\n".join(problems)


def test_pages_do_not_import_the_app_that_assembles_them() -> None:
    problems = [
        f"{rel}:{line} imports {name}"
        for rel, tree in _sources()
        if rel.startswith("ui/pages/")
        for name, _, line in _imports(tree)
        if name == "traindash.ui.app"
    ]
    assert not problems, "\n".join(problems)


def test_nexlify_is_re_exports_only() -> None:
    for path in sorted((ROOT / "nexlify").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            targets = [getattr(t, "id", "") for t in getattr(node, "targets", [])]
            is_all = isinstance(node, ast.Assign) and targets == ["__all__"]
            assert is_doc or is_all or isinstance(node, (ast.Import, ast.ImportFrom)), (
                f"{path.relative_to(ROOT)}:{node.lineno} is more than a re-export"
            )


@pytest.mark.parametrize("path", sorted(GUIDE_PATHS))
def test_guide_import_paths(path: str) -> None:
    name, real = GUIDE_PATHS[path]
    assert getattr(importlib.import_module(path), name) is getattr(importlib.import_module(real), name)


def test_package_level_exports() -> None:
    from nexlify.monitoring.alert_system import AlertThresholds
    from traindash import alerts, producer, ui

    assert producer.MetricsLogger.__name__ == "MetricsLogger"
    assert producer.ExperimentTracker.__name__ == "ExperimentTracker"
    assert ui.TrainingDashboard.__name__ == "TrainingDashboard"
    assert alerts.AlertSystem.__name__ == "AlertSystem"
    assert alerts.AlertThresholds is AlertThresholds


def test_every_module_imports() -> None:
    """Walk the packages and import each module (nothing runs a service at import time)."""
    failed = []
    for folder, layer in FOLDERS.items():
        package = folder if folder in ("traindash", "nexlify") else f"traindash.{layer}"
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except ImportError as exc:
                if _framework_missing(info.name, exc):
                    continue
                failed.append(f"{info.name}: {exc}")
    assert not failed, "\n".join(failed)


def _framework_missing(module: str, exc: ImportError) -> bool:
    """An integration whose framework (an optional extra) is not installed here."""
    top = (exc.name or "").split(".")[0]
    return (
        module.startswith("traindash.producer.integrations.")
        and bool(top)
        and importlib.util.find_spec(top) is None
    )


def test_producer_works_without_stable_baselines3() -> None:
    """The SB3 integration is a plain module that imports SB3; the producer never imports it."""
    import subprocess
    import sys

    code = (
        "import sys, traindash.producer, traindash.producer.integrations; "
        "from traindash.producer import ExperimentTracker, MetricsLogger; "
        "assert 'stable_baselines3' not in sys.modules and 'torch' not in sys.modules; "
        "import traindash.producer.integrations.sb3 as m; "
        "assert 'stable_baselines3' in sys.modules; "
        "assert m.TraindashCallback.__module__ == m.__name__ == 'traindash.producer.integrations.sb3'"
    )
    if importlib.util.find_spec("stable_baselines3") is None:
        code = code.split("; import traindash.producer.integrations.sb3")[0]
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_walk_sees_the_packages() -> None:
    seen = {rel for rel, _ in _sources()}
    assert {
        "traindash/wire.py",
        "collector/store.py",
        "producer/logger.py",
        "nexlify/monitoring/metrics_logger.py",
    } <= seen
