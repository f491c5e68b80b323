"""Signal region (SR) windows, their sidebands (SB) and sliding-window scans in m_jj (TeV)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputError

#: The LHC Olympics R&D signal region (W' at 3.5 TeV), TeV.
DEFAULT_SR = (3.3, 3.7)


@dataclass(frozen=True)
class Regions:
    """An SR ``[lo, hi)`` and its sidebands.

    Sidebands are everything outside the SR inside ``scan`` (default: all masses), or, with ``sideband_width``, only
    the bands of that width directly below and above the SR (clipped to ``scan``).
    """

    sr: tuple[float, float] = DEFAULT_SR
    sideband_width: float | None = None
    scan: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.sr)
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            raise ConfigError(f"signal region {self.sr}: need lo < hi (TeV)")
        object.__setattr__(self, "sr", (lo, hi))
        if self.sideband_width is not None and not self.sideband_width > 0:
            raise ConfigError(f"sideband_width {self.sideband_width}: must be > 0 TeV (or None for all masses)")
        if self.scan is not None:
            slo, shi = (float(v) for v in self.scan)
            if not (slo <= lo and hi <= shi):
                raise ConfigError(f"scan range {self.scan} does not contain the signal region {self.sr}")
            object.__setattr__(self, "scan", (slo, shi))

    @property
    def name(self) -> str:
        return f"SR {self.sr[0]:g}-{self.sr[1]:g} TeV"

    def sr_mask(self, m: np.ndarray) -> np.ndarray:
        """Events with ``lo <= m < hi``."""
        m = np.asarray(m)
        return (m >= self.sr[0]) & (m < self.sr[1])

    def sb_mask(self, m: np.ndarray) -> np.ndarray:
        """Events in the sidebands (never in the SR)."""
        m = np.asarray(m)
        lo, hi = self.sr
        slo, shi = self.scan if self.scan is not None else (-np.inf, np.inf)
        if self.sideband_width is not None:
            # Rounded so that 3.7 + 0.2 ends at 3.9, not at 3.9000000000000004.
            slo = max(slo, round(lo - self.sideband_width, 9))
            shi = min(shi, round(hi + self.sideband_width, 9))
        return ((m >= slo) & (m < lo)) | ((m >= hi) & (m < shi))

    def select_sr(self, m: np.ndarray, source: str = "data") -> np.ndarray:
        """SR mask; raises :class:`InputError` naming the region when it holds no event."""
        return _non_empty(self.sr_mask(m), source, self.name)

    def select_sb(self, m: np.ndarray, source: str = "data") -> np.ndarray:
        """SB mask; raises :class:`InputError` naming the region when it holds no event."""
        return _non_empty(self.sb_mask(m), source, f"sidebands of the {self.name}")


def _non_empty(mask: np.ndarray, source: str, region: str) -> np.ndarray:
    if not mask.any():
        raise InputError(source, f"no events in the {region}")
    return mask


def parse_window(text: str) -> tuple[float, float]:
    """``"3.3:3.7"`` -> ``(3.3, 3.7)`` (TeV)."""
    try:
        lo, hi = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise ConfigError(f"window {text!r}: expected LO:HI in TeV, e.g. 3.3:3.7") from None
    if not hi > lo:
        raise ConfigError(f"window {text!r}: need LO < HI")
    return lo, hi


def parse_scan(text: str) -> tuple[float, float, float, float]:
    """``"3.0:4.2:0.4:0.2"`` -> ``(lo, hi, width, step)`` of :func:`sliding_windows` (TeV)."""
    try:
        lo, hi, width, step = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise ConfigError(f"--windows {text!r}: expected LO:HI:WIDTH:STEP in TeV") from None
    return lo, hi, width, step


def sliding_windows(lo: float, hi: float, width: float, step: float) -> list[tuple[float, float]]:
    """Windows ``[lo + i step, lo + i step + width)`` that fit inside ``[lo, hi]``.

    Edges are rounded to 1e-9 TeV so that float steps do not drop the last window.
    """
    if not (width > 0 and step > 0):
        raise ConfigError(f"sliding windows need width > 0 and step > 0 (got width={width}, step={step})")
    if width > hi - lo + 1e-9:
        raise ConfigError(f"window width {width} TeV does not fit in the scan range {lo}-{hi} TeV")
    n = int(math.floor((hi - lo - width) / step + 1e-9)) + 1
    return [(round(lo + i * step, 9), round(lo + i * step + width, 9)) for i in range(n)]
