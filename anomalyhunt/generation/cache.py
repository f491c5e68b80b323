"""Where generated samples are cached, how they are named, and writing files so a reader never sees half of one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator


def cache_dir() -> Path:
    """``$ANOMALYHUNT_CACHE/generated`` when the variable is set, else ``~/.cache/anomalyhunt/generated``."""
    root = os.environ.get("ANOMALYHUNT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "anomalyhunt"
    return base / "generated"


def param_hash(params: dict[str, Any]) -> str:
    """Hex SHA-256 of the parameters as canonical JSON (sorted keys), stable across runs and machines."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only when the block finishes cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so the final os.replace is a rename on one filesystem (atomic), never a copy.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))
    return Path(path)
