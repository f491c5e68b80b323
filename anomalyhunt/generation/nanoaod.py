"""A NanoAOD-like ROOT file of generated particles, readable with coffea's ``PFNanoAODSchema``."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np

from .record import ParticleRecord


def write_pfnano(path: str | Path, record: ParticleRecord, label: np.ndarray, run: int = 1) -> None:
    """Write tree ``Events``: ``run luminosityBlock event`` (``run`` = the generation seed, so that the events of
    files made with different seeds never share an identifier), ``nPFCands`` with jagged ``PFCands_pt eta phi mass pdgId
    charge puppiWeight`` (generator-level particles, so every PUPPI weight is 1) and ``label``."""
    import uproot

    n = record.n_events
    cands = ak.unflatten(
        ak.zip(
            {
                "pt": record.pt,
                "eta": record.eta,
                "phi": record.phi,
                "mass": record.mass,
                "pdgId": record.pdg_id,
                "charge": record.charge,
                "puppiWeight": np.ones(len(record.pt), dtype=np.float32),
            }
        ),
        record.counts,
    )
    branches = {
        # CMS NanoAOD event identifiers, which coffea's NanoAOD schemas expect to find.
        "run": np.full(n, run, dtype=np.uint32),
        "luminosityBlock": np.ones(n, dtype=np.uint32),
        "event": np.arange(1, n + 1, dtype=np.uint64),
        "PFCands": cands,
        "label": np.asarray(label, dtype=np.int32),
    }
    with uproot.recreate(path) as f:
        # mktree, not f["Events"] = ...: NanoAOD is a TTree, and uproot may write assigned awkward data as RNTuple.
        # Its default names (counter nPFCands, fields PFCands_<field>) are exactly the NanoAOD convention.
        f.mktree("Events", branches, title="Events")
