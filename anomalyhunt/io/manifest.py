"""The run manifest of a processed dataset directory: what went in, what is on disk, complete or partial.

``OUT/<dataset>/manifest.json`` is written twice by ``anomalyhunt process``: first as ``partial`` (before any chunk is
written, then the dataset's earlier outputs are removed), last (by the processor's ``postprocess``, so also in a
user's own coffea ``Runner``) as ``complete`` with the input files and their event counts, the chunk files, their row
counts and the cut flow. A run that stops in between leaves ``partial`` behind; files that the manifest does not list (or
lists and are gone) make the directory ``mixed``. Readers refuse both unless asked to read them anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError

MANIFEST = "manifest.json"
#: Per-chunk output folders of a dataset directory (features always, the others on request).
CHUNK_DIRS = ("features", "clouds", "images")
_SUFFIX = {"features": ".parquet", "clouds": ".npz", "images": ".npz"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def file_identity(filename: str) -> str:
    """A file's identity for names and keys: its absolute path (URLs as given)."""
    name = str(filename)
    return name if "://" in name else os.path.abspath(name)


def file_tag(filename: str) -> str:
    """A short name unique per input file: its name (all dots kept) plus a digest of its absolute path.

    ``run.part1.h5`` and ``run.part2.h5``, or ``r1/pfnano.root`` and ``r2/pfnano.root``, get different tags.
    """
    ident = file_identity(filename)
    digest = hashlib.sha1(ident.encode()).hexdigest()[:10]
    base = _UNSAFE.sub("_", ident.rstrip("/").rsplit("/", 1)[-1])[:60] or "file"
    return f"{base}-{digest}"


def chunk_name(filename: str, entrystart: int, entrystop: int) -> str:
    """The output name of one chunk: unique per input file and entry range, so a retried chunk overwrites itself."""
    return f"{file_tag(filename)}_{int(entrystart)}-{int(entrystop)}"


def _chunk_stem(file_name: str) -> str:
    """A chunk file's name without its suffix (chunk names keep the input file's dots)."""
    return file_name.rsplit(".", 1)[0]


def _chunk_files(dataset_dir: Path) -> dict[str, list[str]]:
    return {
        sub: sorted(p.name for p in (dataset_dir / sub).glob(f"*{_SUFFIX[sub]}"))
        for sub in CHUNK_DIRS
        if (dataset_dir / sub).is_dir()
    }


def _write(dataset_dir: Path, payload: dict[str, Any]) -> None:
    tmp = dataset_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, dataset_dir / MANIFEST)  # atomic: a reader never sees half a manifest


def begin_dataset(dataset_dir: Path, inputs: Sequence[str], settings: dict[str, Any]) -> None:
    """Mark the directory partial until :func:`finish_dataset` and remove the dataset's earlier outputs."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    _write(dataset_dir, {"status": "partial", "reason": "run started, not finished",
                         "inputs": [file_identity(f) for f in inputs], "settings": settings,
                         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})  # fmt: skip
    for sub, names in _chunk_files(dataset_dir).items():
        for name in names:
            (dataset_dir / sub / name).unlink()


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def finish_dataset(
    dataset_dir: Path, record: dict[str, dict[str, int]], cutflow: dict[str, int], settings: dict[str, Any]
) -> dict[str, Any]:
    """Write the final manifest of one dataset from the run's own record of what it wrote.

    ``record`` is ``{"chunks": {name: rows}, "inputs": {file: events}}`` as accumulated over the run's chunks.
    Chunk files that this run did not write (an earlier run's) are removed; the manifest is ``complete`` only if
    every recorded chunk is on disk and rows on disk == rows recorded == events that passed the cut flow.
    """
    chunks = {str(k): int(v) for k, v in record.get("chunks", {}).items()}
    dataset_dir.mkdir(parents=True, exist_ok=True)
    for sub, names in _chunk_files(dataset_dir).items():
        for name in names:
            if _chunk_stem(name) not in chunks:
                (dataset_dir / sub / name).unlink()
    files = _chunk_files(dataset_dir)
    rows = {name: _parquet_rows(dataset_dir / "features" / name) for name in files.get("features", [])}
    total = sum(rows.values())
    payload = {
        "status": "complete",
        "inputs": dict(sorted(record.get("inputs", {}).items())),
        "settings": settings,
        "chunks": files,
        "rows": rows,
        "total_rows": total,
        "cutflow": cutflow,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    problems = []
    missing = sorted(set(chunks) - {_chunk_stem(n) for n in rows})
    if missing:
        problems.append(f"{len(missing)} chunk(s) written but not on disk (e.g. {missing[0]})")
    if total != sum(chunks.values()) or total != cutflow.get("passed", total):
        problems.append(f"{total} rows on disk, {sum(chunks.values())} written, cut flow passed {cutflow.get('passed')}")
    if sum(record.get("inputs", {}).values()) != cutflow.get("input", 0):
        problems.append(f"{sum(record['inputs'].values())} input events recorded, cut flow {cutflow.get('input')}")
    if problems:
        payload.update(status="partial", reason="; ".join(problems))
    _write(dataset_dir, payload)
    return payload


def check_dataset_dir(dataset_dir: str | Path, allow_partial: bool = False) -> dict[str, Any]:
    """Check a processed dataset directory against its manifest; returns a summary for results files.

    Raises :class:`InputError` (one line naming the directory) for a missing, partial or mixed manifest unless
    ``allow_partial``, in which case it warns and the summary says what was read.
    """
    d = Path(dataset_dir)
    on_disk = _chunk_files(d)
    rows_on_disk, unreadable = 0, []
    for n in on_disk.get("features", []):
        try:
            rows_on_disk += _parquet_rows(d / "features" / n)
        except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError: a chunk cut off by a killed run
            unreadable.append(n)
    path = d / MANIFEST
    problem = None
    manifest: dict[str, Any] = {}
    if not path.exists():
        problem = "no manifest.json: not written by `anomalyhunt process`, or by a run that did not finish"
    else:
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            problem = "manifest.json is unreadable"
    if problem is None and manifest.get("status") != "complete":
        problem = f"partial output ({manifest.get('reason', 'run did not finish')})"
    if problem is None:
        listed = {sub: sorted(v) for sub, v in manifest.get("chunks", {}).items() if v}
        have = {sub: v for sub, v in on_disk.items() if v}
        if listed != have:
            extra = sum(len(set(have.get(s, [])) - set(listed.get(s, []))) for s in CHUNK_DIRS)
            gone = sum(len(set(listed.get(s, [])) - set(have.get(s, []))) for s in CHUNK_DIRS)
            problem = f"mixed output: {extra} chunk file(s) not from the run in manifest.json, {gone} listed but gone"
        elif rows_on_disk != manifest.get("total_rows"):
            problem = f"mixed output: {rows_on_disk} rows on disk, manifest.json lists {manifest.get('total_rows')}"
    if unreadable:
        cut_off = f"{len(unreadable)} unreadable chunk file(s), e.g. {unreadable[0]} (cut off by a stopped run?)"
        problem = cut_off if problem is None else f"{problem}; {cut_off}"
    summary = {
        "path": str(d),
        "status": "complete" if problem is None else "partial",
        "rows": rows_on_disk,
        "cutflow": manifest.get("cutflow"),
    }
    if problem is not None:
        if not allow_partial:
            raise InputError(d, f"{problem}; re-run `anomalyhunt process`, or read it anyway with --allow-partial")
        summary["warning"] = problem
        warnings.warn(f"{d}: reading {rows_on_disk} rows despite: {problem}", stacklevel=2)
    return summary
