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


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch() -> None:
    # Two cores are shared by the test process and numpy/BLAS; one torch thread keeps runs predictable.
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
