"""The rich console every printed table goes to."""

from __future__ import annotations

import sys
from typing import Any


def console_for_tables() -> Any:
    """A rich console; wide when not a terminal, so that logged tables are not wrapped to 80 columns."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)
