"""Generated events as flat particle arrays: what the LHCO HDF5 and the NanoAOD-like ROOT file are written from."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

from ..io.lhco import N_PARTICLES


@dataclass(frozen=True)
class ParticleRecord:
    """Jagged events as ``counts`` plus flat, per-event pT-ordered particle columns."""

    counts: np.ndarray  # int64, particles per event
    pt: np.ndarray  # float32, GeV
    eta: np.ndarray  # float32
    phi: np.ndarray  # float32
    mass: np.ndarray  # float32, GeV
    pdg_id: np.ndarray  # int32
    charge: np.ndarray  # int32

    @property
    def n_events(self) -> int:
        return len(self.counts)

    @classmethod
    def from_events(cls, events: Sequence[dict[str, np.ndarray]], max_particles: int = N_PARTICLES) -> ParticleRecord:
        """Build from per-event column dicts (``pt eta phi mass pdg_id charge``), keeping the ``max_particles``
        hardest particles of each, in decreasing pT (stable, so ties keep generation order)."""
        columns: dict[str, list[np.ndarray]] = {f.name: [] for f in fields(cls) if f.name != "counts"}
        counts = []
        for event in events:
            order = np.argsort(-event["pt"], kind="stable")[:max_particles]
            counts.append(len(order))
            for name, parts in columns.items():
                parts.append(event[name][order])
        return cls(np.asarray(counts, dtype=np.int64), **_concat(columns, len(counts) == 0))

    @classmethod
    def concatenate(cls, records: Sequence[ParticleRecord]) -> ParticleRecord:
        """Events of ``records`` one after the other, in the given order."""
        columns = {f.name: [getattr(r, f.name) for r in records] for f in fields(cls) if f.name != "counts"}
        counts = np.concatenate([r.counts for r in records]) if records else np.zeros(0, np.int64)
        return cls(counts.astype(np.int64), **_concat(columns, not records))

    def padded(self, width: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, width) pT, eta, phi arrays, zero-padded; width defaults to the largest event."""
        width = int(self.counts.max(initial=0)) if width is None else width
        n = self.n_events
        slot = np.arange(len(self.pt)) - np.repeat(np.cumsum(self.counts) - self.counts, self.counts)
        row = np.repeat(np.arange(n), self.counts)
        out = []
        for column in (self.pt, self.eta, self.phi):
            grid = np.zeros((n, width), dtype=np.float32)
            grid[row, slot] = column
            out.append(grid)
        return out[0], out[1], out[2]


_DTYPES = {
    "pt": np.float32,
    "eta": np.float32,
    "phi": np.float32,
    "mass": np.float32,
    "pdg_id": np.int32,
    "charge": np.int32,
}


def _concat(columns: dict[str, list[np.ndarray]], empty: bool) -> dict[str, np.ndarray]:
    return {
        name: np.zeros(0, _DTYPES[name]) if empty else np.concatenate(parts).astype(_DTYPES[name])
        for name, parts in columns.items()
    }
