"""The R&D trigger: leading anti-kT jet pT, clustered with fastjet for many events in one call."""

from __future__ import annotations

from typing import Sequence

import awkward as ak
import fastjet
import numpy as np

# Jets below this pT are not jets in the LHCO R&D record (and never lead an event past a TeV-scale trigger).
MIN_JET_PT = 20.0

# fastjet prints its banner to stdout on the first clustering of every process; generation workers would repeat it.
fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)


def leading_jet_pt(events: Sequence[np.ndarray], radius: float = 1.0) -> np.ndarray:
    """Leading anti-kT jet pT (GeV) of each event, 0 where no jet passes 20 GeV.

    ``events`` holds one (k, 4) array of particle (px, py, pz, E) per event; clustering the list at once is
    several times faster than one fastjet call per event.
    """
    if len(events) == 0:
        return np.zeros(0)
    counts = np.array([len(e) for e in events], dtype=np.int64)
    flat = np.concatenate([np.asarray(e, dtype=np.float64).reshape(-1, 4) for e in events])
    particles = ak.unflatten(
        ak.zip({"px": flat[:, 0], "py": flat[:, 1], "pz": flat[:, 2], "E": flat[:, 3]}), counts
    )
    jets = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.antikt_algorithm, radius)).inclusive_jets(
        min_pt=MIN_JET_PT
    )
    lead = ak.max(np.hypot(jets.px, jets.py), axis=1)
    return ak.to_numpy(ak.fill_none(lead, 0.0)).astype(np.float64)
