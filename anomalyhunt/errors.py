"""Errors that name the file (or dataset) and what is wrong with it."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a missing branch, a wrong layout, NaN values, an empty file or region."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ConfigError(ValueError):
    """A configuration (datasets.yaml, search config) is invalid; the message names the entry and key."""
