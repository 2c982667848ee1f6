"""``pip install .`` (not editable) into a fresh virtual environment installs one namespace.

site-packages gains ``traindash`` and ``nexlify`` and nothing else at the top (no ``ui``,
``alerts``, ``producer`` or ``collector`` to collide with a training project's own), every
file of the folders that pyproject's package-dir maps lands under its installed name, and the
console script works from a folder outside the repository.

The new environment is made without pip (the test's pip installs into it with ``--python``)
and sees the test environment's packages through a ``.pth`` file, so the dependencies are not
installed again: a ``.pth`` line only appends a folder to ``sys.path``, and the ``.pth`` files
inside that folder (such as the editable install's finder) are not run, so ``traindash`` can
only come from the fresh install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.slow
tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# installed package -> source folder, e.g. "traindash.producer" -> "producer"
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]


def _files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def _outer_site_dirs() -> list[str]:
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(venv, its site-packages) after ``pip install .`` of a copy of the source tree."""
    tmp = tmp_path_factory.mktemp("install")
    # Build from a copy: setuptools builds in the source tree (build/, *.egg-info).
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in {d.split("/")[0] for d in PACKAGE_DIR.values()}:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    got = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--quiet", str(src)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
    )
    assert got.returncode == 0, got.stdout + got.stderr
    # Added after the install, so that pip saw an empty environment.
    (site / "zz_outer_site.pth").write_text("\n".join(_outer_site_dirs()) + "\n")
    return venv, site


def test_site_packages_gets_traindash_and_nexlify_only(installed: tuple[Path, Path]) -> None:
    _, site = installed
    names = {p.name for p in site.iterdir()} - {"zz_outer_site.pth", "__pycache__"}
    top = {n for n in names if not n.endswith(".dist-info")}
    assert top == {"traindash", "nexlify"}
    assert [n for n in names if n.endswith(".dist-info")] == [
        f"traindash-{PYPROJECT['project']['version']}.dist-info"
    ]


def test_every_file_of_the_mapped_folders_is_installed_under_its_name(installed: tuple[Path, Path]) -> None:
    _, site = installed
    for package, folder in PACKAGE_DIR.items():
        target = site.joinpath(*package.split("."))
        # An installed package holds the packages mapped below it too; compare each mapping alone.
        below = tuple(
            f"{p[len(package) + 1 :].split('.')[0]}/" for p in PACKAGE_DIR if p.startswith(package + ".")
        )
        want = {f for f in _files(ROOT / folder) if not f.startswith(below)}
        have = {f for f in _files(target) if not f.startswith(below)}
        assert have == want, (
            f"{package} (from {folder}/): missing {sorted(want - have)}, extra {sorted(have - want)}"
        )


def test_console_script_works_outside_the_repository(installed: tuple[Path, Path], tmp_path: Path) -> None:
    venv, site = installed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    version = run(str(venv / "bin" / "traindash"), "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"traindash {PYPROJECT['project']['version']}"
    helped = run(str(venv / "bin" / "traindash"), "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("collector", "ui", "alerts", "sql", "dashboard", "demo"):
        assert command in helped.stdout
    where = run(
        str(venv / "bin" / "python"),
        "-c",
        "import traindash.producer, traindash.cli, nexlify.monitoring.metrics_logger as m; "
        "print(traindash.producer.__file__); print(traindash.cli.__file__); print(m.__file__)",
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(site), line
