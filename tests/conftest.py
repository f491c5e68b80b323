"""Shared fixtures: where the recorded LHCO-like sample and the CMS files live, and how their absence is handled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TEST_DATA = REPO / "tests" / "data"


def _shared_dir(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must run with ../shared beside the clone")
        pytest.skip(f"needs the recorded sample in {path} (only on the project's machines)")
    return path


@pytest.fixture(scope="session")
def lhco_dir() -> Path:
    """The recorded Pythia 8 LHCO-like sample (skips when absent, fails in CI)."""
    return _shared_dir("lhco-like")


@pytest.fixture(scope="session")
def particle_outputs(lhco_dir: Path, tmp_path_factory) -> Path:
    """The particle-level QCD and signal files (5,000 + 2,000 events) through the dijet processor with clouds and
    images, once per session: the constituent models' and the constituent searches' tests read the same output
    (they only read it)."""
    from anomalyhunt.datasets import Dataset
    from anomalyhunt.processors import run_process

    out = tmp_path_factory.mktemp("particle_outputs")
    ds = {
        "qcd": Dataset("qcd", "lhco-particles", [str(lhco_dir / "rnd_qcd_seed1001.particles.h5")], label=0),
        "sig": Dataset("sig", "lhco-particles", [str(lhco_dir / "rnd_sig_3500_500_100.particles.h5")], label=1),
    }
    run_process(ds, out, chunksize=2500, write_clouds=True, write_images=True, status=False)
    return out


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch() -> None:
    # Two cores are shared by the test process and numpy/BLAS; one torch thread keeps runs predictable.
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def write_toy_table(path: Path, n: int = 4000, *, seed: int = 0, resonance: bool = True, mjj_nan: int = 0) -> Path:
    """A labelled feature table for the command-line tests. ``resonance``: a falling mjj spectrum with 300 signal
    events at 3.5 TeV (100 GeV wide) that have low tau21_j1, so that a classifier can find them; otherwise flat mjj in
    2.8-4.5 TeV and the first tenth labelled signal with no difference. ``mjj_nan``: that many NaN masses."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = pd.DataFrame({c: rng.uniform(0.1, 1, n) for c in ("mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r")})
    n_sig = 300 if resonance else n // 10
    t["mjj"] = 2800 + rng.exponential(600, n) if resonance else rng.uniform(2800, 4500, n)
    t["event"], t["label"] = np.arange(n), (np.arange(n) < n_sig).astype(int)
    if resonance:
        t.loc[t.label == 1, "mjj"] = rng.normal(3500, 100, n_sig)
        t.loc[t.label == 1, "tau21_j1"] = rng.uniform(0.0, 0.3, n_sig)
    t.loc[: mjj_nan - 1, "mjj"] = np.nan
    t.to_parquet(path)
    return path
