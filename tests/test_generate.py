"""Pythia 8 generation (``anomalyhunt generate``): physics of the written events, layout, reproducibility, cache."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import awkward as ak
import fastjet
import h5py
import numpy as np
import pytest

from anomalyhunt.cli import main
from anomalyhunt.errors import ConfigError
from anomalyhunt.generation import cached_sample, generate
from anomalyhunt.generation import pythia as gen_pythia
from anomalyhunt.io.lhco import read_lhco_particles

TRIGGER = 1200.0
N_SIGNAL = 60


def _leading_jets(pt, eta, phi, mass) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anti-kT R=1.0 (fastjet) of jagged particles: (n, 2) pT and mass of the two leading jets, and mjj."""
    px, py = pt * np.cos(phi), pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    parts = ak.zip({"px": px, "py": py, "pz": pz, "E": e})
    jets = fastjet.ClusterSequence(parts, fastjet.JetDefinition(fastjet.antikt_algorithm, 1.0)).inclusive_jets(
        min_pt=20
    )
    jets = jets[ak.argsort(np.hypot(jets.px, jets.py), ascending=False)][:, :2]
    assert ak.all(ak.num(jets) == 2), "every triggered event has two jets"
    px, py, pz, e = (ak.to_numpy(getattr(jets, c)).astype(np.float64) for c in ("px", "py", "pz", "E"))
    m = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    mjj = np.sqrt(np.maximum(e.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2, 0.0))
    return np.hypot(px, py), m, mjj


def _massless_jets(path: Path):
    parts = read_lhco_particles(path).to_awkward()
    return _leading_jets(parts.pt, parts.eta, parts.phi, parts.mass)


def _nanoevents(path: Path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        # Our files hold only PFCands: the schema warns about every other CMS collection it cannot cross-link.
        warnings.simplefilter("ignore", RuntimeWarning)
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema).events()


def counts_pt(cands) -> np.ndarray:
    return ak.to_numpy(ak.flatten(cands.pt))


def _raw_block(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["df/block0_values"][:]


@pytest.fixture(scope="module")
def signal_sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "signal.h5"
    return generate("signal", N_SIGNAL, 7, out, workers=1, nanoaod=True, progress=False)


def test_signal_resonances_from_written_file(signal_sample):
    """W'(3500) -> X(500) Y(100): the reclustered dijet and jet masses sit where the model puts them."""
    pt, m, mjj = _massless_jets(signal_sample)
    assert len(mjj) == N_SIGNAL
    assert abs(np.median(mjj) / 3500.0 - 1) < 0.10, np.median(mjj)
    heavy, light = np.median(m.max(axis=1)), np.median(m.min(axis=1))
    assert 450 < heavy < 560, heavy
    assert 90 < light < 160, light  # Y = 100 GeV plus underlying event in R = 1.0 jets
    # The trigger used the massive particles; massless reclustering from the LHCO layout moves jet pT a little.
    assert pt[:, 0].min() > 0.98 * TRIGGER


def test_signal_nanoaod_matches_hdf5_and_has_only_visible_particles(signal_sample):
    root = signal_sample.with_suffix(".root")
    events = _nanoevents(root)
    cands = events.PFCands
    assert len(events) == N_SIGNAL and ak.all(events.label == 1)
    block = read_lhco_particles(signal_sample)
    counts = (block.pt > 0).sum(axis=1)
    np.testing.assert_array_equal(ak.to_numpy(ak.num(cands)), counts)
    for name in ("pt", "eta", "phi"):
        padded = ak.to_numpy(ak.fill_none(ak.pad_none(cands[name], 700, clip=True), 0.0))
        np.testing.assert_array_equal(padded, getattr(block, name))
    pdg = np.abs(ak.to_numpy(ak.flatten(cands.pdgId)))
    assert not np.isin(pdg, [12, 14, 16]).any(), "neutrinos in the record"
    # Only hadronised, stable particles: no partons, no resonances, no short-lived hadrons.
    assert set(np.unique(pdg)) <= {11, 13, 22, 130, 211, 321, 2112, 2212}, set(np.unique(pdg))
    assert np.all(ak.flatten(cands.puppiWeight) == 1.0)
    charge = ak.to_numpy(ak.flatten(cands.charge))
    assert np.all(charge[np.isin(pdg, [211, 321, 2212, 11, 13])] != 0) and np.all(charge[pdg == 22] == 0)
    # coffea gives PFCands candidate behaviour (px, energy...): the file is usable as CMS PFNano.
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(np.hypot(cands.px, cands.py))), counts_pt(cands), rtol=1e-5)
    # With the particle masses the trigger jets are rebuilt exactly: every event passed 1.2 TeV.
    pt, m, _ = _leading_jets(cands.pt, cands.eta, cands.phi, cands.mass)
    assert pt[:, 0].min() > TRIGGER, pt[:, 0].min()
    assert 450 < np.median(m.max(axis=1)) < 560


def test_signal_lhco_layout(signal_sample):
    block = _raw_block(signal_sample)
    assert block.shape == (N_SIGNAL, 2101) and block.dtype == np.float32
    parts = block[:, :-1].reshape(N_SIGNAL, 700, 3)
    pt = parts[:, :, 0]
    assert np.all(np.diff(pt, axis=1) <= 0), "particles are pT-ordered"
    pad = pt == 0
    assert pad.any() and np.all(parts[pad] == 0), "padding is all zeros"
    assert np.all(np.abs(parts[~pad][:, 1]) < 4.0)
    assert np.all(block[:, -1] == 1.0)
    config = json.loads(signal_sample.with_name("signal.config.json").read_text())["config"]
    assert config["process"] == "signal" and "34:onIfAll = 23 24" in config["pythia_settings"]
    assert 0.2 < config["trigger_efficiency"] < 1.0


def test_signal_matches_recorded_sample(signal_sample, lhco_dir):
    """Same generator settings as the recorded W' sample: the same jets and particle multiplicity."""
    ref = lhco_dir / "rnd_sig_3500_500_100.particles.h5"
    _, m, mjj = _massless_jets(signal_sample)
    ref_parts = read_lhco_particles(ref, 0, 500)
    _, m_ref, mjj_ref = _leading_jets(*(getattr(ref_parts.to_awkward(), c) for c in ("pt", "eta", "phi", "mass")))
    assert abs(np.median(mjj) / np.median(mjj_ref) - 1) < 0.05
    assert abs(np.median(m.max(1)) / np.median(m_ref.max(1)) - 1) < 0.05
    assert abs(np.median(m.min(1)) / np.median(m_ref.min(1)) - 1) < 0.20
    n, n_ref = (read_lhco_particles(signal_sample).pt > 0).sum(1), (ref_parts.pt > 0).sum(1)
    assert abs(np.median(n) / np.median(n_ref) - 1) < 0.15, (np.median(n), np.median(n_ref))


def test_qcd_cli_every_event_passes_trigger(tmp_path, capsys):
    out = tmp_path / "qcd.h5"
    args = ["generate", "--process", "qcd", "--events", "12", "--seed", "3", "--out", str(out), "--workers", "1"]
    assert main(args + ["--nanoaod", "--no-progress"]) == 0
    assert "wrote 12 qcd events" in capsys.readouterr().out
    block = _raw_block(out)
    assert block.shape == (12, 2101) and np.all(block[:, -1] == 0.0)
    cands = _nanoevents(out.with_suffix(".root")).PFCands
    pt, m, mjj = _leading_jets(cands.pt, cands.eta, cands.phi, cands.mass)
    assert pt[:, 0].min() > TRIGGER, pt[:, 0].min()
    # QCD jets are not 500 GeV resonances: the heavier jet is usually far lighter.
    assert np.median(m.max(axis=1)) < 400
    assert (tmp_path / "qcd.config.json").exists()


def test_output_independent_of_workers_and_set_by_seed(tmp_path):
    kw = dict(block_size=5, progress=False)
    one = _raw_block(generate("qcd", 10, 11, tmp_path / "w1.h5", workers=1, **kw))
    two = _raw_block(generate("qcd", 10, 11, tmp_path / "w2.h5", workers=2, **kw))
    assert one.tobytes() == two.tobytes()
    other = _raw_block(generate("qcd", 10, 12, tmp_path / "s12.h5", workers=1, **kw))
    assert other.shape == one.shape and not np.array_equal(other, one)
    # Blocks are independent streams: the first block of a longer request is the same events.
    first = _raw_block(generate("qcd", 5, 11, tmp_path / "first.h5", workers=1, **kw))
    assert np.array_equal(first, one[:5])


def test_block_seeds_are_valid_and_distinct():
    seeds = {gen_pythia.block_seed(p, s, b) for p in ("qcd", "signal") for s in range(20) for b in range(50)}
    assert len(seeds) == 2 * 20 * 50
    assert min(seeds) >= 1 and max(seeds) <= 900_000_000


def test_cached_sample_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMALYHUNT_CACHE", str(tmp_path / "cache"))
    kw = dict(workers=1, progress=False, block_size=4, trigger_pt=1200.0)
    path = cached_sample("qcd", 4, 5, **kw)
    assert path.parent == tmp_path / "cache" / "generated" and path.exists()
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["parameters"]["seed"] == 5 and sidecar["parameters"]["trigger_pt"] == 1200.0
    mtime = path.stat().st_mtime_ns

    def no_generation(*args, **kwargs):
        raise AssertionError("regenerated a cached sample")

    monkeypatch.setattr(gen_pythia, "generate", no_generation)
    start = time.perf_counter()
    assert cached_sample("qcd", 4, 5, **kw) == path
    assert time.perf_counter() - start < 1.0 and path.stat().st_mtime_ns == mtime
    with pytest.raises(AssertionError, match="regenerated"):  # other parameters: another sample
        cached_sample("qcd", 4, 5, **{**kw, "trigger_pt": 1300.0})
    monkeypatch.undo()

    # The sidecar's command remakes exactly the cached events.
    command = sidecar["command"].split()
    assert command[:2] == ["anomalyhunt", "generate"]
    redo = tmp_path / "redo.h5"
    command[command.index("--out") + 1] = str(redo)
    assert main(command[1:] + ["--workers", "1", "--no-progress"]) == 0
    assert _raw_block(redo).tobytes() == _raw_block(path).tobytes()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"process": "ttbar"}, "process must be one of"),
        ({"m_x": 3000.0, "m_y": 600.0}, "must be below m_wprime"),
        ({"n_events": 0}, "n_events must be >= 1"),
        ({"out": "x.root"}, "must be the HDF5 file"),
        ({"m_y": 5.0}, "m_y must be >= 10 GeV"),
        ({"process": "svj", "r_inv": 1.5}, "r_inv must be in"),
        ({"process": "svj", "m_zprime": 15.0}, "m_zprime must lie between"),
        ({"process": "svj", "m_dark_quark": 0.1}, "m_dark_quark must be in"),
        ({"process": "svj", "m_dark_rho": 0.5}, "m_dark_rho must be in"),
        ({"mass": 3.0}, "unknown parameters"),
        ({"tune": 7}, "tune must be one of"),
    ],
)
def test_bad_requests_are_named(tmp_path, kwargs, message):
    args = {"process": "signal", "n_events": 2, "seed": 1, "out": tmp_path / "x.h5", **kwargs}
    if kwargs.get("out"):
        args["out"] = tmp_path / kwargs["out"]
    with pytest.raises(ConfigError, match=message):
        generate(**args, workers=1, progress=False)
    assert not list(tmp_path.iterdir()), "nothing written for a bad request"


def test_unreachable_trigger_stops_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(gen_pythia, "MAX_TRIES_WITHOUT_PASS", 16)
    with pytest.raises(ConfigError, match="no event of 16 passed the trigger.*raise pthat_min"):
        generate("qcd", 2, 1, tmp_path / "x.h5", trigger_pt=5000.0, workers=1, progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_cli_reports_bad_masses(tmp_path, capsys):
    args = ["generate", "--process", "signal", "--events", "2", "--seed", "1", "--out", str(tmp_path / "x.h5")]
    assert main(args + ["--mx", "3000", "--my", "600"]) == 1
    assert "must be below m_wprime" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown parameters"):
        cached_sample("signal", 2, 1, mass=3.0)


def test_tune_sets_pythias_shower_parameters():
    """--tune 21 is A14 (final-state shower alpha_s 0.127, ISR 0.127), the default 14 Monash (0.1365, 0.1365), for
    every process; the tune line comes first, so the process settings after it are not overwritten."""
    from anomalyhunt.generation.config import GenerationConfig

    for tune, fsr, isr in ((14, 0.1365, 0.1365), (21, 0.127, 0.127)):
        pythia = gen_pythia.make_pythia(GenerationConfig("qcd", pthat_min=900.0, tune=tune), 1)
        assert pythia.settings.parm("TimeShower:alphaSvalue") == pytest.approx(fsr)
        assert pythia.settings.parm("SpaceShower:alphaSvalue") == pytest.approx(isr)
        assert pythia.settings.parm("PhaseSpace:pTHatMin") == 900.0


# ------------------------------------------------------------------------------------------------ semi-visible jets


def test_svj_dark_mesons_decay_invisibly_with_r_inv():
    """The talk's dark sector by default (2 TeV Z', 500 MeV dark quarks, dark pions of 4 GeV and rho mesons of 5 GeV),
    and in Pythia's event record the share of dark-meson decays into dark matter is r_inv (binomial bound), for
    pions and rhos alike. Measured (15 events): 0.30 of 203 decays at r_inv = 0.3, 0.70 of 242 at 0.75."""
    from anomalyhunt.generation.config import DARK_MESONS, DARK_PION, DARK_RHO, DM_FERMION, GenerationConfig

    default = GenerationConfig("svj")
    assert (default.m_zprime, default.m_dark_quark, default.r_inv, default.trigger_pt) == (2000.0, 0.5, 0.75, 150.0)
    assert GenerationConfig("qcd").trigger_pt == 1200.0
    for r_inv in (0.3, 0.75):
        pythia = gen_pythia.make_pythia(GenerationConfig("svj", r_inv=r_inv), 4242)
        invisible = decays = 0
        masses: dict[int, list[float]] = {DARK_PION: [], DARK_RHO: []}
        for _ in range(15):
            assert pythia.next()
            for p in pythia.event:
                if p.idAbs() in DARK_MESONS and p.daughter1() > 0:
                    daughter = pythia.event[p.daughter1()].idAbs()
                    if daughter != p.idAbs():  # a decay, not a recoil copy
                        decays += 1
                        invisible += daughter == DM_FERMION
                        masses[p.idAbs()].append(p.m())
        assert decays > 100
        assert abs(invisible / decays - r_inv) < 4 * np.sqrt(r_inv * (1 - r_inv) / decays), (r_inv, invisible, decays)
        assert len(masses[DARK_PION]) > 10 and len(masses[DARK_RHO]) > 10, {k: len(v) for k, v in masses.items()}
        assert np.median(masses[DARK_PION]) == pytest.approx(4.0, abs=0.1)
        assert np.median(masses[DARK_RHO]) == pytest.approx(5.0, abs=0.1)


def _visible_system(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per event: invariant mass of all visible particles, and their missing pT over their scalar pT sum."""
    parts = read_lhco_particles(path).to_awkward()
    px, py = parts.pt * np.cos(parts.phi), parts.pt * np.sin(parts.phi)
    pz = parts.pt * np.sinh(parts.eta)
    e = np.sqrt(px**2 + py**2 + pz**2)
    sx, sy, sz, se = (ak.to_numpy(ak.sum(v, axis=1)) for v in (px, py, pz, e))
    return np.sqrt(np.maximum(se**2 - sx**2 - sy**2 - sz**2, 0)), np.hypot(sx, sy) / ak.to_numpy(ak.sum(parts.pt, 1))


def test_svj_jets_lose_the_invisible_share(tmp_path):
    """A Z'(2 TeV) -> dark quarks sample: with r_inv = 0 the visible system carries the Z' mass and little missing
    pT; with r_inv = 0.75 (DarkCLR's benchmark) it loses much of it. Measured (12 events each, trigger 300 GeV):
    median mass of all visible particles in |eta| < 4 (underlying event included) 3.1 / 1.8 TeV, missing pT over
    scalar pT 0.003 / 0.49."""
    common = dict(m_zprime=2000.0, trigger_pt=300.0, workers=1, progress=False)
    m0, met0 = _visible_system(generate("svj", 12, 3, tmp_path / "r0.h5", r_inv=0.0, **common))
    m75, met75 = _visible_system(generate("svj", 12, 3, tmp_path / "r75.h5", r_inv=0.75, **common))
    assert np.median(m0) > 1500.0
    assert np.median(m75) < 0.7 * np.median(m0)
    assert np.median(met75) > 2 * np.median(met0) and np.median(met75) > 0.1
    config = json.loads((tmp_path / "r75.config.json").read_text())["config"]
    assert config["process"] == "svj" and config["r_inv"] == 0.75 and "m_wprime" not in config


def test_without_pythia_generate_says_how_to_get_it_and_the_demo_goes_on():
    """Pythia 8 is the `generate` extra (no wheel on some platforms): without it `generate` stops with one line
    naming the extra, and `pythia_available()` (which the demo asks before its fresh sample) says so."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['pythia8mc'] = None\n"
            "from anomalyhunt.cli import main\n"
            "from anomalyhunt.generation import pythia_available\n"
            "print('available', pythia_available())\n"
            "sys.exit(main(['generate', '--process', 'qcd', '--events', '10', '--seed', '1', '--out', 'x.h5']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "available False" in proc.stdout
    assert len(err) == 1 and "pip install 'anomalyhunt[generate]'" in err[0], err
