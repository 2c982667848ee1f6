"""atomic_write: the one way traindash writes a file whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from traindash.files import atomic_write


def test_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    with atomic_write(path) as fh:
        fh.write("one")
    with atomic_write(path, "wb") as fh:
        fh.write(b"two")
        assert path.read_text() == "one"  # the old file until the new one is complete
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_an_error_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as fh:
        fh.write("half")
        raise RuntimeError("disk gone")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    with pytest.raises(ValueError, match="mode must start with 'w'"), atomic_write(path, "a"):
        pass
