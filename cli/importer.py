"""``traindash import tensorboard LOGDIR``: TensorBoard event files into the tables.

Each directory that holds event files becomes one run (scalars into ``scalars``, histograms
and text into ``summaries``, hparams into the run's hyperparameters), read with
TensorBoard's own ``EventAccumulator`` and sent through the collector like any run. A run's
id is derived from the logdir and the directory's path in it, and a run the database
already has is skipped, so importing the same logdir twice changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from traindash.cli.common import add_config, add_endpoints, file_block, flags
from traindash.config import CollectorConfig, ProducerConfig
from traindash.errors import UserError
from traindash.query import CollectorUnavailable, QueryClient, sql_literal

HELP = "import TensorBoard event files (scalars, histograms, text, hparams): one run per directory"
SOURCES = ("tensorboard",)
FLUSH_TIMEOUT = 120.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", choices=SOURCES, help="what the files are (tensorboard)")
    p.add_argument("logdir", type=Path, help="a TensorBoard logdir; every folder with event files is a run")
    p.add_argument("--experiment", help="the runs' experiment (default: the logdir's name)")
    add_endpoints(p)
    add_config(p)


def event_dirs(logdir: Path) -> list[Path]:
    """Every directory under ``logdir`` (itself included) that holds event files, sorted."""
    return sorted({f.parent for f in logdir.rglob("*") if f.is_file() and "tfevents" in f.name})


def run_id_for(logdir: Path, directory: Path) -> str:
    """The same id for the same directory of the same logdir, however often it is imported."""
    rel = directory.relative_to(logdir).as_posix() or "."
    digest = hashlib.sha1(f"{logdir.resolve()}|{rel}".encode()).hexdigest()[:10]
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{logdir.name}-{rel}").strip("-")[:40] or "run"
    return f"tb-{label}-{digest}"


def _hparams(accumulator: Any) -> dict[str, Any]:
    from tensorboard.plugins.hparams import plugin_data_pb2

    out: dict[str, Any] = {}
    try:
        contents = accumulator.PluginTagToContent("hparams")
    except KeyError:  # no hparams in these files
        return out
    for content in contents.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.WhichOneof("data") == "session_start_info":
            for name, value in data.session_start_info.hparams.items():
                kind = value.WhichOneof("kind")
                out[name] = getattr(value, kind) if kind else None
    return out


def read_run(directory: Path) -> Iterator[tuple[str, Any]]:
    """("hparams", dict), then ("scalar" | "histogram" | "text", (tag, step, wall_time, value))."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(directory), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    yield "hparams", _hparams(acc)
    for tag in tags.get(ea.SCALARS, []):
        for e in acc.Scalars(tag):
            yield "scalar", (tag, e.step, e.wall_time, e.value)
    for tag in tags.get(ea.HISTOGRAMS, []):
        for e in acc.Histograms(tag):
            yield "histogram", (tag, e.step, e.wall_time, e.histogram_value)
    for tag in tags.get(ea.TENSORS, []):
        for e in acc.Tensors(tag):
            array = tensor_util.make_ndarray(e.tensor_proto)
            if array.dtype.kind in "SUO":
                text = array.reshape(-1)[0] if array.size else b""
                yield (
                    "text",
                    (tag, e.step, e.wall_time, text.decode() if isinstance(text, bytes) else str(text)),
                )
            elif array.size == 1:
                yield "scalar", (tag, e.step, e.wall_time, float(array.reshape(-1)[0]))


def _histogram_fields(h: Any) -> dict[str, Any]:
    n = float(h.num)
    mean = h.sum / n if n else math.nan
    var = h.sum_squares / n - mean * mean if n else math.nan
    return {
        "count": int(n),
        "min": float(h.min),
        "max": float(h.max),
        "mean": mean,
        "std": math.sqrt(var) if var >= 0 else 0.0,
        "bucket_limit": list(h.bucket_limit),
        "bucket": list(h.bucket),
    }


def import_run(
    directory: Path, run_id: str, experiment: str, name: str, cfg: ProducerConfig, spool_dir: Path
) -> dict[str, int]:
    """Send one directory's events as the run ``run_id``; returns counts by kind."""
    from traindash.producer import MetricsLogger
    from traindash.wire import RecordKind

    events = read_run(directory)
    _, hparams = next(events)
    counts = {"scalar": 0, "histogram": 0, "text": 0}
    logger = MetricsLogger(
        experiment,
        output_dir=str(spool_dir),
        auto_save_interval=0,
        run_id=run_id,
        name=name,
        hyperparameters=hparams,
        tags=["tensorboard"],
        config=cfg,
        system_metrics_interval=0,
    )
    try:
        for kind, (tag, step, wall_time, value) in events:
            counts[kind] += 1
            if kind == "scalar":
                logger.log({tag: value}, step=int(step), ts=float(wall_time))
            elif kind == "histogram":
                logger.log_event(
                    RecordKind.SUMMARY,
                    ts=float(wall_time),
                    step=int(step),
                    name=tag,
                    kind="histogram",
                    **_histogram_fields(value),
                )
            else:
                logger.log_event(
                    RecordKind.SUMMARY, ts=float(wall_time), step=int(step), name=tag, kind="text", text=value
                )
        if not logger.flush(timeout=FLUSH_TIMEOUT):
            raise UserError(f"the collector did not acknowledge run {run_id} within {FLUSH_TIMEOUT:g} s")
    finally:
        logger.close()
    return counts


def run(args: argparse.Namespace) -> int:
    logdir: Path = args.logdir
    if not logdir.is_dir():
        raise UserError(f"{logdir} is not a directory")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError(
            "reading TensorBoard files needs the tensorboard package: pip install tensorboard"
        ) from None
    dirs = event_dirs(logdir)
    if not dirs:
        raise UserError(f"no TensorBoard event files (*tfevents*) under {logdir}")
    block = file_block(args)
    producer = ProducerConfig.resolve(flags(args), None, block)
    query = CollectorConfig.resolve(flags(args), None, block).endpoints.query
    experiment = args.experiment or logdir.resolve().name
    imported = skipped = 0
    with (
        QueryClient(query, timeout=10.0) as client,
        tempfile.TemporaryDirectory(prefix="td-import-") as spool,
    ):
        for i, directory in enumerate(dirs, 1):
            run_id = run_id_for(logdir, directory)
            rel = directory.relative_to(logdir).as_posix() or "."
            try:
                known = client.query(f"SELECT count(*) FROM runs WHERE run_id = {sql_literal(run_id)}")
            except CollectorUnavailable:
                raise UserError(
                    f"no collector answers at {query}: start `traindash collector` first"
                ) from None
            if known.column(0)[0].as_py():
                skipped += 1
                print(f"[{i}/{len(dirs)}] {rel}: already imported as {run_id}, skipped", file=sys.stderr)
                continue
            counts = import_run(directory, run_id, experiment, rel, producer, Path(spool))
            imported += 1
            print(
                f"[{i}/{len(dirs)}] {rel} -> {run_id}: {counts['scalar']} scalars, "
                f"{counts['histogram']} histograms, {counts['text']} texts",
                file=sys.stderr,
            )
    print(f"{imported} run(s) imported, {skipped} already there, from {logdir}")
    return 0
