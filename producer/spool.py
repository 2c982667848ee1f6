"""A run's spool: unacknowledged batches on disk, and the last seq the run assigned.

``<output_dir>/<run_id>.spool`` holds length-prefixed batch bodies (the wire's msgpack
body of a ``batch`` message); ``<run_id>.state.json`` holds ``last_seq``. A logger resumed
with the same ``run_id`` (or ``traindash replay``) reads both and re-sends what is there;
the collector drops whatever it had already stored.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from io import BufferedRandom
from pathlib import Path

from traindash.files import atomic_write

_LEN = struct.Struct("<I")


def _frame(body: bytes) -> bytes:
    """A body as it is stored: its length, then the bytes."""
    return _LEN.pack(len(body)) + body


def spool_path(output_dir: Path, run_id: str) -> Path:
    return output_dir / f"{run_id}.spool"


def state_path(output_dir: Path, run_id: str) -> Path:
    return output_dir / f"{run_id}.state.json"


class Spool:
    """Append-only file of batch bodies; offsets let the sender read one back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BufferedRandom | None = None
        self.written = path.exists()

    def _open(self) -> BufferedRandom:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Kept open for the logger's lifetime; close() releases it.
            self._fh = open(self.path, "a+b")  # noqa: SIM115
        return self._fh

    def append(self, body: bytes) -> int:
        self.written = True
        fh = self._open()
        fh.seek(0, os.SEEK_END)
        offset = fh.tell()
        fh.write(_frame(body))
        fh.flush()
        return offset

    def read(self, offset: int) -> bytes:
        fh = self._open()
        fh.seek(offset)
        (size,) = _LEN.unpack(fh.read(_LEN.size))
        return fh.read(size)

    def truncate(self) -> None:
        if not self.written:
            return
        self.written = False
        if self._fh is not None:
            self._fh.truncate(0)
        elif self.path.exists():
            self.path.write_bytes(b"")

    def size(self) -> int:
        if self._fh is not None:
            return self._fh.seek(0, os.SEEK_END)
        return self.path.stat().st_size if self.path.exists() else 0

    def rewrite(self, bodies: list[bytes]) -> list[int]:
        """Replace the file's contents with ``bodies`` at once (a new file, then a rename)."""
        offsets, pos = [], 0
        with atomic_write(self.path, "wb") as fh:
            for body in bodies:
                offsets.append(pos)
                frame = _frame(body)
                fh.write(frame)
                pos += len(frame)
            if self._fh is not None:  # the old file's handle, before the new one replaces it
                self._fh.close()
                self._fh = None
        self.written = bool(bodies)
        return offsets

    def close(self, remove_if_empty: bool = True) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if remove_if_empty and self.path.exists() and self.path.stat().st_size == 0:
            self.path.unlink()


def read_bodies(path: Path) -> Iterator[bytes]:
    """Every body in a spool file; a torn last entry (a crash mid-write) is ignored."""
    with open(path, "rb") as fh:
        while True:
            head = fh.read(_LEN.size)
            if len(head) < _LEN.size:
                return
            (size,) = _LEN.unpack(head)
            body = fh.read(size)
            if len(body) < size:
                return
            yield body


def load_last_seq(output_dir: Path, run_id: str) -> int:
    path = state_path(output_dir, run_id)
    try:
        return int(json.loads(path.read_text())["last_seq"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def save_last_seq(output_dir: Path, run_id: str, last_seq: int) -> None:
    with atomic_write(state_path(output_dir, run_id)) as fh:
        fh.write(json.dumps({"run_id": run_id, "last_seq": last_seq}))
