"""``anomalyhunt bench process``: processor speed against the ceiling of bare fastjet clustering, and memory."""

from __future__ import annotations

import resource
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import awkward as ak
import fastjet
import numpy as np

from ..io.lhco import lhco_particle_events, read_lhco_particles
from .constituents import jet_images, point_clouds
from .dijet import DijetProcessor
from .jets import cluster_leading_jets, exclusive_axes, nsubjettiness, to_pseudojets
from .run import Hdf5Chunk, hdf5_events


#: The stage the reachable bound rests on: the second clustering, which the tau_N axes need.
RECLUSTERING = "kT reclustering of both jets (tau_N axes)"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def benchmark_process(
    path: str | Path, n_events: int = 5000, chunksize: int = 2500, axes: str = "kt", repeats: int = 5
) -> dict[str, Any]:
    """Time one core on LHCO-layout particles: bare anti-kT clustering, each processor stage, and the whole processor
    (features, taus, clouds, images, Parquet/npz writing). Rates are events per second on one core. Each of the
    ``repeats`` rounds times all of them once, in turn, and every figure is the median over the rounds, so that a
    busy moment biases none of them against another."""
    path = str(path)
    n_events = min(n_events, lhco_particle_events(path))
    block = read_lhco_particles(path, 0, n_events)
    parts = block.to_awkward()
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, 1.0)
    rounds: dict[str, list[float]] = {}

    def timed(name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        rounds.setdefault(name, []).append(time.perf_counter() - t0)
        return out

    rss_before = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proc = DijetProcessor(tmp, axes=axes, write_clouds=True, write_images=True, default_format="lhco-particles")

        def whole() -> None:
            for start in range(0, n_events, chunksize):
                meta = (("format", "lhco-particles"),)
                proc.process(hdf5_events(Hdf5Chunk("bench", path, start, min(start + chunksize, n_events), meta)))

        for _ in range(repeats):
            pj = timed("to_pseudojets", lambda: to_pseudojets(parts))
            timed("bare", lambda: fastjet.ClusterSequence(pj, jetdef).inclusive_jets(20.0))
            jets = timed("cluster + leading-jet constituents", lambda: cluster_leading_jets(pj, 1.0))
            timed(RECLUSTERING, lambda: exclusive_axes(jets.constituents, 3, wta=axes == "wta_kt"))
            timed(f"N-subjettiness ({axes} axes, reclustering included)",
                  lambda: nsubjettiness(jets.constituents, 1.0, axes=axes))  # fmt: skip
            timed("point clouds", lambda: point_clouds(jets.constituents, jets.pt.ravel(), jets.eta.ravel(),
                                                       jets.phi.ravel(), jets.energy.ravel()))  # fmt: skip
            timed("jet images", lambda: jet_images(jets.constituents, jets.eta.ravel(), jets.phi.ravel()))
            timed("whole", whole)
    median = {k: float(np.median(v)) for k, v in rounds.items()}
    bare, full = median.pop("bare"), median.pop("whole")
    recluster = median[RECLUSTERING]
    return {
        "events": n_events,
        "mean_particles": float(ak.mean(ak.num(parts))),
        "repeats": repeats,
        "bare_clustering_ev_per_s": n_events / bare,
        "processor_ev_per_s": n_events / full,
        "fraction_of_bare": bare / full,
        "stages_ev_per_s": {k: n_events / v for k, v in median.items()},
        "stage_seconds": median,
        "stage_fraction_of_bare": {k: v / bare for k, v in median.items()},
        # what the processor could reach if everything but the two clusterings it cannot avoid were free
        "reachable_fraction": bare / (bare + recluster),
        "bare_seconds": bare,
        "processor_seconds": full,
        "seconds_per_round": {k: [float(x) for x in v] for k, v in rounds.items()},
        "peak_rss_mb": _rss_mb(),
        "rss_growth_in_processor_mb": _rss_mb() - rss_before,
        "chunksize": chunksize,
    }


def print_benchmark(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Processor benchmark: {result['events']} events, {result['mean_particles']:.0f} particles/event, "
                    f"1 core, medians of {result['repeats']} interleaved rounds")  # fmt: skip
    t.add_column("stage")
    t.add_column("seconds", justify="right")
    t.add_column("events/s", justify="right")
    t.add_column("x bare", justify="right")
    t.add_row("bare fastjet anti-kT R=1.0 (ceiling)", f"{result['bare_seconds']:.2f}",
              f"{result['bare_clustering_ev_per_s']:.0f}", "1.00")  # fmt: skip
    for k, v in result["stage_seconds"].items():
        t.add_row(f"  {k}", f"{v:.2f}", f"{result['stages_ev_per_s'][k]:.0f}", f"{result['stage_fraction_of_bare'][k]:.2f}")
    t.add_row("whole processor (features, taus, clouds, images, writing)", f"{result['processor_seconds']:.2f}",
              f"{result['processor_ev_per_s']:.0f}", f"{1 / result['fraction_of_bare']:.2f}")  # fmt: skip
    Console().print(t)
    recl = result["stage_fraction_of_bare"][RECLUSTERING]
    Console().print(
        f"the kT reclustering for the tau_N axes alone costs {recl:.2f} x bare clustering: with everything else free "
        f"the processor could reach at most {result['reachable_fraction']:.2f} of bare clustering"
    )
    Console().print(
        f"processor / bare clustering = {result['fraction_of_bare']:.2f} (target >= 0.70); peak RSS "
        f"{result['peak_rss_mb']:.0f} MB, growth while processing {result['rss_growth_in_processor_mb']:.0f} MB "
        f"at chunk size {result['chunksize']}"
    )
