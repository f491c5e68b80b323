"""The bad-input matrix: each case exits 1 with one line naming the file (or setting) and the problem, and leaves no
result behind. Cases of other files: duplicates and partial outputs (test_outputs.py), hunt windows and tables
(test_hunt.py), damaged ROOT/HDF5 files and datasets.yaml keys (test_processor.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomalyhunt.cli import main as cli
from anomalyhunt.io.lhco import write_lhco_particles
from conftest import write_toy_table

REPO = Path(__file__).resolve().parents[1]
PFNANO = REPO / "tests" / "data" / "cms-nanoaod" / "pfnano.root"
PHYSLITE = REPO / "tests" / "data" / "atlas-physlite" / "PHYSLITE_example.root"


def _particles(path: Path, bad: str | None) -> Path:
    pt = np.array([[1500.0, 1400.0, 0.0], [1300.0, 1250.0, 5.0], [1600.0, 1500.0, 0.0]])  # zeros: padding
    eta, phi = np.zeros_like(pt), np.array([[0.0, 3.0, 0.0]] * 3)
    if bad == "inf":
        pt[1, 2] = np.inf
    elif bad == "negative":
        pt[2, 1] = -20.0
    elif bad == "inf_eta":
        eta[1, 0] = np.inf
    write_lhco_particles(path, pt, eta, phi, np.zeros(3))
    return path


def _table(path: Path, n: int = 400, mjj_nan: int = 0) -> Path:
    return write_toy_table(path, n, resonance=False, mjj_nan=mjj_nan)


def _yaml(tmp: Path, extra: str) -> Path:
    shutil.copy(PFNANO, tmp / "pfnano.root")
    path = tmp / "datasets.yaml"
    path.write_text(f"datasets:\n  d:\n    format: pfnanoaod\n    files: [pfnano.root]\n{extra}")
    return path


def _physlite_weighted(tmp: Path) -> list[str]:
    (tmp / "datasets.yaml").write_text(f"datasets:\n  a: {{format: physlite, files: [{PHYSLITE}], xsec: 1.0, "
                                       "luminosity: 140000}\n")  # fmt: skip
    return ["process", str(tmp / "datasets.yaml"), "--out", str(tmp / "out"), "--no-progress"]


def _process_particles(tmp: Path, bad: str) -> list[str]:
    f = _particles(tmp / "parts.h5", bad)
    (tmp / "datasets.yaml").write_text(f"datasets:\n  p: {{format: lhco-particles, files: [{f}]}}\n")
    return ["process", str(tmp / "datasets.yaml"), "--out", str(tmp / "out"), "--no-progress"]


def _search(tmp: Path, *extra: str, table: Path | None = None) -> list[str]:
    table = table or _table(tmp / "toy.parquet")
    return ["search", "--features", str(table), "--method", "idealized", "--scheduler", "sync", "--quiet",
            "--out", str(tmp / "s"), *extra]  # fmt: skip


CASES = {
    # values
    "inf particle pT": (lambda t: _process_particles(t, "inf"), r"parts.h5: non-finite values or negative pT in 1 "
                                                                r"events \(entries \[1\]\); --skip-bad-input"),
    "negative particle pT": (lambda t: _process_particles(t, "negative"), r"negative pT in 1 events \(entries \[2\]\)"),
    "inf particle eta": (lambda t: _process_particles(t, "inf_eta"), r"non-finite values or negative pT in 1 events"),
    "non-finite mjj in a table": (lambda t: _search(t, table=_table(t / "nan.parquet", mjj_nan=2)),
                                  r"non-finite mjj in 2 events"),
    "zero-row features file": (lambda t: _search(t, table=_table(t / "empty.parquet", n=0)),
                               r"empty.parquet: feature table holds no events"),
    # configuration
    "jet_radius -1": (lambda t: ["process", str(_yaml(t, "    jet_radius: -1\n")), "--out", str(t / "out")],
                      r"dataset 'd': key 'jet_radius' must be a positive number, got -1"),
    "unknown axes": (lambda t: ["process", str(_yaml(t, "    axes: antikt\n")), "--out", str(t / "out")],
                     r"dataset 'd': key 'axes' must be one of \['onepass_kt', 'kt', 'wta_kt'\], got 'antikt'"),
    "puppi not a boolean": (lambda t: ["process", str(_yaml(t, "    puppi: maybe\n")), "--out", str(t / "out")],
                            r"key 'puppi' must be true or false"),
    "xsec without luminosity": (lambda t: ["process", str(_yaml(t, "    xsec: 6077.22\n")), "--out", str(t / "out")],
                                r"dataset 'd': key 'xsec' given without 'luminosity': event weights"),
    "luminosity 0": (lambda t: ["process", str(_yaml(t, "    xsec: 1.0\n    luminosity: 0\n")), "--out",
                                str(t / "out")], r"dataset 'd': key 'luminosity' must be a positive number, got 0"),
    "physlite with xsec and luminosity": (lambda t: _physlite_weighted(t), r"PHYSLITE_example.root: dataset 'a' sets "
                                          r"xsec and luminosity, but PHYSLITE files here carry no run-level sum of "
                                          r"generator weights"),
    # command-line arguments
    "--chunksize 0": (lambda t: ["process", str(_yaml(t, "")), "--out", str(t / "out"), "--chunksize", "0"],
                      r"--chunksize 0: must be >= 1"),
    "--workers 0": (lambda t: ["process", str(_yaml(t, "")), "--out", str(t / "out"), "--workers", "0"],
                    r"--workers 0: must be >= 1"),
    "--seed -1": (lambda t: _search(t, "--seed", "-1"), r"seed=-1, need >= 0"),
    "unknown classifier option": (lambda t: _search(t, "--classifier-option", "colour=red"),
                                  r"unknown hgb classifier option\(s\) \['colour'\]"),
    "--device cuda without CUDA": (lambda t: _search(t, "--device", "cuda"),
                                   r"device 'cuda' asked for, but torch sees no CUDA GPU"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line(case, tmp_path, capsys):
    make_args, message = CASES[case]
    args = make_args(tmp_path)
    capsys.readouterr()
    rc = cli(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert re.search(message, err[0]), err[0]
    # nothing a reader would take for a result: no search results, no complete manifest
    assert not (tmp_path / "s" / "results.json").exists()
    for manifest in (tmp_path / "out").glob("*/manifest.json"):
        assert '"status": "complete"' not in manifest.read_text()


def test_pfnano_without_puppi_weights_needs_a_choice(tmp_path):
    """A PFNano file without PFCands_puppiWeight stops (jet masses would change by tens of %) unless the dataset says
    `puppi: false`."""
    import uproot

    from anomalyhunt.datasets import load_datasets
    from anomalyhunt.errors import InputError
    from anomalyhunt.processors import run_process

    with uproot.open(PFNANO) as f:
        branches = [b for b in f["Events"].keys() if b.startswith("PFCands_") and b != "PFCands_puppiWeight"]
        ids = ["run", "luminosityBlock", "event"]
        arrays = f["Events"].arrays(branches + ids)
    with uproot.recreate(tmp_path / "nopuppi.root") as out:
        names = branches + ids
        out.mktree("Events", {b: arrays[b].type for b in names}, counter_name=lambda _: "nPFCands")
        out["Events"].extend({b: arrays[b] for b in names})
    (tmp_path / "a.yaml").write_text("datasets:\n  d: {format: pfnanoaod, files: [nopuppi.root]}\n")
    with pytest.raises(InputError, match=r"nopuppi.root: no PFCands_puppiWeight.*puppi: false"):
        run_process(load_datasets(tmp_path / "a.yaml"), tmp_path / "o1", status=False)
    (tmp_path / "b.yaml").write_text("datasets:\n  d: {format: pfnanoaod, files: [nopuppi.root], puppi: false}\n")
    out = run_process(load_datasets(tmp_path / "b.yaml"), tmp_path / "o2", status=False)
    assert out["cutflow"]["d"]["input"] == 10 == out["cutflow"]["d"]["passed"]


def test_skip_bad_input_counts_what_it_skips(tmp_path):
    """With --skip-bad-input the damaged event is skipped and counted: input = passed + skipped, on disk as in the
    cut flow, and the other events keep their own entry numbers."""
    import json

    args = _process_particles(tmp_path, "negative")
    assert cli([*args, "--skip-bad-input"]) == 0
    manifest = json.loads((tmp_path / "out" / "p" / "manifest.json").read_text())
    cf = manifest["cutflow"]
    assert cf["input"] == 3 and cf["failed_bad_input"] == 1
    assert cf["input"] == cf["passed"] + cf["failed_bad_input"] + cf["failed_two_jets"] + cf["failed_trigger"]
    table = pd.concat(pd.read_parquet(f) for f in (tmp_path / "out" / "p" / "features").glob("*.parquet"))
    assert manifest["status"] == "complete" and len(table) == cf["passed"] == manifest["total_rows"]
    assert sorted(table.event) == [0, 1]  # entry 2 (negative pT) skipped, the others keep their entries
