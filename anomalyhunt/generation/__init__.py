"""Event generation with Pythia 8 in the LHC Olympics R&D style.

``generate`` and ``cached_sample`` live in :mod:`anomalyhunt.generation.pythia`; they are loaded on first use so
that importing the light :mod:`anomalyhunt.generation.config` (as the CLI does) does not start Pythia and fastjet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["generate", "cached_sample", "pythia_available"]


def pythia_available() -> bool:
    """Whether Pythia 8 (``pythia8mc``, the ``generate`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("pythia8mc") is not None

if TYPE_CHECKING:
    from .pythia import cached_sample, generate


def __getattr__(name: str) -> Any:
    if name in ("generate", "cached_sample"):
        from . import pythia

        return getattr(pythia, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
