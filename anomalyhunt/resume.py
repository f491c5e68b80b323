"""Resumable studies: a log of finished tasks that a re-run reads to skip them.

A study directory holds ``study.json`` (its settings: a re-run with other settings is refused) and ``tasks.jsonl``,
one line per finished task (``{"task": name, "rows": [...]}``) appended as each finishes. A run stopped anywhere
leaves at most a torn last line, which is ignored: that task runs again. The bump hunt's pseudo-experiments
(``anomalyhunt hunt --null-toys``) and its calibration study (``anomalyhunt bench hunt``) both keep their work here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError


class TaskLog:
    """The finished tasks of one study directory."""

    def __init__(self, directory: str | Path, settings: dict[str, Any], what: str = "study") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = self.directory / "study.json"
        settings = json.loads(json.dumps(settings, default=str))
        if stamp.exists() and json.loads(stamp.read_text()) != settings:
            raise ConfigError(f"{self.directory}: holds a {what} with other settings (see study.json); "
                              "use another directory")  # fmt: skip
        stamp.write_text(json.dumps(settings, indent=2))
        self.settings = settings
        self.path = self.directory / "tasks.jsonl"
        self.done: dict[str, list[dict[str, Any]]] = read_tasks(self.directory)

    def record(self, task: str, rows: list[dict[str, Any]]) -> None:
        """Append one finished task (flushed to disk before returning)."""
        line = json.dumps({"task": task, "rows": rows}, default=float)
        with self.path.open("a+b") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn line of a killed run: end it, so this one stands on its own
                    f.write(b"\n")
            f.write((line + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        self.done[task] = rows

    def rows(self) -> list[dict[str, Any]]:
        return [r for rows in self.done.values() for r in rows]


def read_tasks(directory: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Finished tasks of a study directory, by name (a torn or repeated line: the last complete one counts)."""
    path = Path(directory) / "tasks.jsonl"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            out[entry["task"]] = list(entry["rows"])
        except (ValueError, KeyError, TypeError):  # a line torn by a killed run: that task runs again
            continue
    return out
