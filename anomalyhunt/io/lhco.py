"""LHC Olympics R&D HDF5 layouts.

*Particles*: pandas HDF5 (fixed format), key ``df``: one row per event, 700 particles x (pT, eta, phi), pT-ordered
and zero-padded, then the label. *Features (v2)*: ``pxj1 pyj1 pzj1 mj1 tau1j1 tau2j1 tau3j1`` and the same for j2,
then ``label``. Both are read in row slices straight from the HDF5 block, so a 1.1M-event file is never held whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import awkward as ak
import h5py
import numpy as np
import pandas as pd

from ..errors import InputError
from ..features import dijet_table

N_PARTICLES = 700
V2_COLUMNS = (
    "pxj1 pyj1 pzj1 mj1 tau1j1 tau2j1 tau3j1 pxj2 pyj2 pzj2 mj2 tau1j2 tau2j2 tau3j2 label".split()
)


@dataclass(frozen=True)
class ParticleBlock:
    """Events ``start:stop`` of an LHCO particle file: padded (n, 700) arrays and the label column."""

    start: int
    stop: int
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    label: np.ndarray

    def to_awkward(self) -> ak.Array:
        """Jagged particles (the layout's zero-pT padding dropped, nothing else: a negative or non-finite pT stays
        for the processor to refuse or count) as records ``pt eta phi mass``."""
        mask = self.pt != 0
        counts = mask.sum(axis=1)
        flat = {
            "pt": self.pt[mask].astype(np.float64),
            "eta": self.eta[mask].astype(np.float64),
            "phi": self.phi[mask].astype(np.float64),
        }
        flat["mass"] = np.zeros_like(flat["pt"])
        return ak.unflatten(ak.zip(flat), counts)


def _open_block(path: Path) -> tuple[h5py.File, h5py.Dataset]:
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(path, "file does not exist") from None
    except OSError as err:
        raise InputError(path, f"not a readable HDF5 file (truncated or corrupt?): {err}") from None
    if "df" not in f:
        keys = list(f.keys())
        f.close()
        raise InputError(path, f"no pandas key 'df' (found {keys}); expected the LHC Olympics layout")
    grp = f["df"]
    if "block0_values" not in grp or "table" in grp:
        f.close()
        raise InputError(path, "key 'df' is not a pandas fixed-format frame with one float block (LHCO layout)")
    return f, grp["block0_values"]


def lhco_particle_events(path: str | Path) -> int:
    """Number of events in an LHCO particle file (validates the layout)."""
    path = Path(path)
    f, block = _open_block(path)
    with f:
        _check_particle_shape(path, block)
        return int(block.shape[0])


def _check_particle_shape(path: Path, block: h5py.Dataset) -> None:
    if "shape" in block.attrs:  # pandas (PyTables) stores an empty frame as a placeholder with its true shape here
        raise InputError(path, "file holds no events")
    if block.ndim != 2 or (block.shape[1] - 1) % 3 != 0 or block.shape[1] < 4:
        raise InputError(path, f"wrong layout: block of shape {block.shape}, expected (events, 3 x particles + 1 label)")


def read_lhco_particles(path: str | Path, start: int = 0, stop: int | None = None, check: bool = True) -> ParticleBlock:
    """Read events ``start:stop`` of an LHCO particle file; ``check`` refuses non-finite values and negative pT
    (without it the caller must: the processor skips and counts such events when asked to)."""
    path = Path(path)
    f, block = _open_block(path)
    with f:
        _check_particle_shape(path, block)
        n = block.shape[0]
        stop = n if stop is None else min(stop, n)
        try:
            values = np.asarray(block[start:stop], dtype=np.float32)
        except OSError as err:
            raise InputError(path, f"cannot read events {start}-{stop} (truncated file?): {err}") from None
    if check and np.isnan(values).any():
        rows = np.unique(np.nonzero(np.isnan(values))[0])[:5] + start
        raise InputError(path, f"NaN values in events {rows.tolist()}")
    parts = values[:, :-1].reshape(len(values), -1, 3)
    # Zero pT is the layout's padding; infinite values or negative pT are damage, never silently dropped.
    bad = ~np.isfinite(parts).all(axis=(1, 2)) | (parts[:, :, 0] < 0).any(axis=1) | ~np.isfinite(values[:, -1])
    if check and bad.any():
        rows = np.nonzero(bad)[0][:5] + start
        raise InputError(path, f"non-finite values or negative pT in {int(bad.sum())} events (first {rows.tolist()})")
    return ParticleBlock(start, stop, parts[:, :, 0], parts[:, :, 1], parts[:, :, 2], values[:, -1].astype(np.int64))


def iter_lhco_particles(path: str | Path, chunksize: int = 10_000) -> Iterator[ParticleBlock]:
    """Iterate over an LHCO particle file in blocks of ``chunksize`` events."""
    n = lhco_particle_events(path)
    for start in range(0, n, chunksize):
        yield read_lhco_particles(path, start, min(start + chunksize, n))


def write_lhco_particles(
    path: str | Path, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, label: np.ndarray
) -> None:
    """Write padded (n, k) particle arrays (k <= 700, pT-ordered) in the exact LHCO R&D layout."""
    n, k = pt.shape
    if k > N_PARTICLES:
        raise ValueError(f"at most {N_PARTICLES} particles per event in the LHCO layout, got {k}")
    block = np.zeros((n, 3 * N_PARTICLES + 1), dtype=np.float32)
    view = block[:, :-1].reshape(n, N_PARTICLES, 3)
    view[:, :k, 0], view[:, :k, 1], view[:, :k, 2] = pt, eta, phi
    block[:, -1] = label
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(block).to_hdf(path, key="df", mode="w", format="fixed")


def read_lhco_features(path: str | Path, start: int = 0, stop: int | None = None) -> pd.DataFrame:
    """Read an LHCO v2 high-level features file into the canonical feature table (j1 = lighter jet)."""
    path = Path(path)
    f, block = _open_block(path)
    with f:
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in f["df/axis0"][:]]
        missing = [c for c in V2_COLUMNS if c not in names]
        if missing:
            raise InputError(path, f"missing columns {missing} for the LHCO v2 features layout (found {names})")
        try:
            values = np.asarray(block[start:stop], dtype=np.float64)
        except OSError as err:
            raise InputError(path, f"cannot read rows (truncated file?): {err}") from None
    if len(values) == 0:
        raise InputError(path, "file holds no events")
    col = {c: values[:, names.index(c)] for c in V2_COLUMNS}
    bad = ~np.isfinite(values[:, [names.index(c) for c in V2_COLUMNS]]).all(axis=1)
    if bad.any():
        raise InputError(path, f"non-finite values in {int(bad.sum())} events (first rows {np.nonzero(bad)[0][:5].tolist()})")

    def jet(tag: str) -> dict[str, np.ndarray]:
        px, py, pz = col[f"px{tag}"], col[f"py{tag}"], col[f"pz{tag}"]
        pt = np.hypot(px, py)
        return {
            "pt": pt,
            "eta": np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0)),
            "phi": np.arctan2(py, px),
            "m": col[f"m{tag}"],
            "tau1": col[f"tau1{tag}"],
            "tau2": col[f"tau2{tag}"],
            "tau3": col[f"tau3{tag}"],
        }

    return dijet_table(jet("j1"), jet("j2"), label=col["label"], event=np.arange(start, start + len(values)))
