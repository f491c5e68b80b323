"""Seeds and the full run configuration written next to every output."""

from __future__ import annotations

import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy Generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # torch is a dependency, but seeding must not be what fails
        pass
    return np.random.default_rng(seed)


def write_run_config(out_dir: str | Path, config: dict[str, Any], name: str = "config.json") -> Path:
    """Write ``config`` plus provenance (versions, command line, time) as JSON in ``out_dir``."""
    from . import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    versions = {}
    for mod in ("numpy", "awkward", "coffea", "fastjet", "torch", "zuko", "sklearn", "hist", "uproot"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # a missing optional module is recorded as absent, not fatal
            versions[mod] = None
    payload = {
        "config": config,
        "anomalyhunt": __version__,
        "python": platform.python_version(),
        "versions": versions,
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = out / name
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def check_same_run(out_dir: str | Path, config: dict[str, Any], what: str, ignore: tuple[str, ...] = ()) -> bool:
    """An OUT holds one run: True if ``out_dir/config.json`` holds this ``config`` (keys in ``ignore`` aside), False
    if there is none; a different run (a key set, changed or missing on either side) is a ConfigError."""
    from .errors import ConfigError

    path = Path(out_dir) / "config.json"
    if not path.exists():
        return False
    try:
        before = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{out_dir}: holds a config.json that is not a {what}'s; use another --out") from None
    now = json.loads(json.dumps(config, default=str))
    diff = sorted(k for k in set(before) | set(now) if k not in ignore and before.get(k) != now.get(k))
    if diff:
        raise ConfigError(f"{out_dir}: holds another {what} (settings {diff} differ); use another --out")
    return True
