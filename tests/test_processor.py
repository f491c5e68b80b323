"""The dijet processor against CMS's own jets, an independent reference, generated physics and bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import awkward as ak
import fastjet
import h5py
import hist
import numpy as np
import pandas as pd
import pytest
import uproot

from anomalyhunt.datasets import Dataset, load_datasets
from anomalyhunt.errors import ConfigError, InputError
from anomalyhunt.features import load_feature_table
from anomalyhunt.io.lhco import read_lhco_features, read_lhco_particles, write_lhco_particles
from anomalyhunt.processors import load_images, run_process
from anomalyhunt.processors.jets import cluster_leading_jets, nsubjettiness, to_pseudojets


REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
PFNANO = TEST_DATA / "cms-nanoaod" / "pfnano.root"
NANO_DY = TEST_DATA / "cms-nanoaod" / "nano_dy.root"
PHYSLITE = TEST_DATA / "atlas-physlite" / "PHYSLITE_example.root"


@pytest.fixture(scope="module")
def cms():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = uproot.open(PFNANO)["Events"].arrays(
            filter_name=["PFCands_*", "FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass", "FatJet_rawFactor",
                         "FatJet_tau1", "FatJet_tau2"]  # fmt: skip
        )
    parts = ak.zip({"pt": a.PFCands_pt, "eta": a.PFCands_eta, "phi": a.PFCands_phi, "mass": a.PFCands_mass})
    keep = a.PFCands_puppiWeight > 0
    jets = cluster_leading_jets(to_pseudojets(parts[keep], a.PFCands_puppiWeight[keep]), 0.8)
    return a, jets


def _matched_rel_diffs(a, jets, ours: np.ndarray, theirs) -> np.ndarray:
    """Relative differences for every CMS FatJet above 200 GeV among the two leading, matched by Delta R < 0.4."""
    diffs = []
    for i in range(len(a)):
        raw_pt = np.asarray(a.FatJet_pt[i] * (1 - a.FatJet_rawFactor[i]))
        for k in range(min(2, len(raw_pt))):
            if raw_pt[k] < 200:
                continue
            dphi = (jets.phi[i] - a.FatJet_phi[i][k] + np.pi) % (2 * np.pi) - np.pi
            dr = np.hypot(jets.eta[i] - a.FatJet_eta[i][k], dphi)
            j = int(np.argmin(dr))
            assert dr[j] < 0.4, f"CMS FatJet {k} of event {i} has no reclustered partner"
            diffs.append(ours[i, j] / float(theirs[i][k]) - 1)
    return np.abs(np.array(diffs))


def test_reclustered_jets_reproduce_cms_fatjets(cms):
    a, jets = cms
    pt = _matched_rel_diffs(a, jets, jets.pt, a.FatJet_pt * (1 - a.FatJet_rawFactor))
    mass = _matched_rel_diffs(a, jets, jets.mass, a.FatJet_mass * (1 - a.FatJet_rawFactor))
    assert len(pt) >= 18
    assert np.median(pt) < 1e-3 and np.percentile(pt, 90) < 3e-3
    assert np.median(mass) < 2e-3 and np.percentile(mass, 90) < 1e-2


@pytest.mark.parametrize(
    "axes, median_max, median_min",
    [("onepass_kt", 2e-3, 0.0), ("wta_kt", 2e-2, 0.0), ("kt", 1.0, 0.05)],
)
def test_tau21_matches_cms_only_with_onepass_axes(cms, axes, median_max, median_min):
    """CMS's FatJet_tau* use one-pass kT axes: those agree to ~0.1%, WTA to ~1%, plain exclusive kT is ~20% off."""
    a, jets = cms
    taus = nsubjettiness(jets.constituents, 0.8, axes=axes).reshape(len(a), 2, 3)
    d = _matched_rel_diffs(a, jets, taus[:, :, 1] / taus[:, :, 0], a.FatJet_tau2 / a.FatJet_tau1)
    assert median_min <= np.median(d) < median_max
    if axes == "onepass_kt":
        assert np.percentile(d, 90) < 5e-3


# -- an independent, slow reference: fastjet's classic PseudoJet interface and brute-force distances ----------------
def _reference_taus(const: list[tuple[float, float, float, float]], radius: float, axes: str) -> list[float]:
    pjs = [fastjet.PseudoJet(*c) for c in const]
    scheme = fastjet.WTA_pt_scheme if axes == "wta_kt" else fastjet.E_scheme
    cs = fastjet.ClusterSequence(pjs, fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0, scheme))
    parts = [(p.perp(), p.rap(), p.phi()) for p in pjs]
    norm = sum(p[0] for p in parts) * radius

    def dist(r1, f1, r2, f2):
        df = abs(f1 - f2)
        df = min(df, 2 * np.pi - df)
        return ((r1 - r2) ** 2 + df**2) ** 0.5

    out = []
    for n in (1, 2, 3):
        ax = [(j.rap(), j.phi()) for j in cs.exclusive_jets(n)]
        if axes == "onepass_kt":
            for _ in range(1000):
                sums = [[0.0, 0.0, 0.0] for _ in ax]
                for pt, r, f in parts:
                    d = [dist(r, f, ar, af) for ar, af in ax]
                    k = d.index(min(d))
                    w = pt / (d[k] ** 2 + 1e-8) ** 0.5
                    fk = f + 2 * np.pi * round((ax[k][1] - f) / (2 * np.pi))  # phi next to the axis
                    sums[k][0] += w * r
                    sums[k][1] += w * fk
                    sums[k][2] += w
                new = [(s[0] / s[2], s[1] / s[2]) if s[2] > 0 else a for s, a in zip(sums, ax)]
                moved = sum(dist(*o, *m) for o, m in zip(ax, new)) / len(ax)
                ax = new
                if moved <= 1e-4:
                    break
        out.append(sum(pt * min(dist(r, f, ar, af) for ar, af in ax) for pt, r, f in parts) / norm)
    return out


@pytest.mark.parametrize("axes", ["kt", "wta_kt", "onepass_kt"])
def test_vectorised_taus_agree_with_slow_reference(cms, axes):
    _, jets = cms
    fast = nsubjettiness(jets.constituents, 0.8, axes=axes)
    for j in range(6):
        c = jets.constituents[j]
        const = list(zip(*(ak.to_numpy(c[f]).tolist() for f in ("px", "py", "pz", "E"))))
        np.testing.assert_allclose(fast[j], _reference_taus(const, 0.8, axes), rtol=1e-6)


# -- generated physics ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated_features(tmp_path_factory):
    from anomalyhunt.generation import generate

    d = tmp_path_factory.mktemp("gen")
    sig = generate("signal", 60, 7, d / "sig.h5", workers=2, progress=False)
    qcd = generate("qcd", 60, 8, d / "qcd.h5", workers=2, progress=False)
    ds = {"sig": Dataset("sig", "generated", [str(sig)], label=1), "qcd": Dataset("qcd", "generated", [str(qcd)], label=0)}
    out = run_process(ds, d / "out", status=False, write_clouds=True, write_images=True, chunksize=25)
    return out, d / "out"


def test_generated_signal_peaks_at_the_resonance_masses(generated_features):
    out, path = generated_features
    sig = load_feature_table(path / "sig")
    qcd = load_feature_table(path / "qcd")
    assert out["cutflow"]["sig"]["input"] == 60 == out["cutflow"]["sig"]["passed"] + out["cutflow"]["sig"]["failed_two_jets"]
    assert abs(sig["mjj"].median() / 3500 - 1) < 0.08
    assert 450 < sig["mj2"].median() < 560  # X(500)
    assert 80 < sig["mj1"].median() < 170  # Y(100) plus underlying event in an R = 1.0 jet
    # two-prong jets: lower tau21 than QCD jets
    assert sig["tau21_j2"].median() < qcd["tau21_j2"].median() - 0.1
    assert (sig["mj1"] <= sig["mj2"]).all() and (sig["label"] == 1).all()
    assert out["hists"]["mjj"][{"dataset": "sig"}].sum().value == len(sig)


def test_clouds_and_images_are_relative_to_the_jet(generated_features):
    _, path = generated_features
    files = sorted((path / "sig" / "clouds").glob("*.npz"))
    assert len(files) == 3  # 60 events in chunks of 25: one file per chunk
    with np.load(files[0]) as f:
        feats, mask = f["features"].astype(np.float32), f["mask"]
    assert feats.shape[1:] == (2, 50, 7)
    assert (mask.sum(axis=2) > 10).all()
    dr = feats[..., 6][mask]
    # anti-kT R = 1.0 clusters in rapidity; Delta R here is in pseudorapidity from the (massive) jet axis
    assert dr.max() < 1.1 and np.percentile(dr, 99) < 1.0
    assert (feats[..., 4][mask] <= 1e-3).all()  # log(pT / pT_jet) <= 0
    pt = np.exp(feats[..., 2])
    assert (np.diff(np.where(mask, pt, 0), axis=2) <= 1e-2 * pt[..., :1]).all()  # hardest first
    images, event = load_images(sorted((path / "sig" / "images").glob("*.npz"))[0])
    assert images.shape == (len(event), 2, 40, 40)
    np.testing.assert_allclose(images.sum(axis=(2, 3)), 1.0, rtol=1e-2)
    # centred: the pT-weighted centroid sits at the middle of the image
    grid = np.linspace(-0.7, 0.7, 41)[:-1] + 0.7 / 40
    centroid_x = (images.sum(axis=3) * grid).sum(axis=2)
    assert np.abs(np.median(centroid_x)) < 0.02


# -- executors ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("executor", ["futures", "dask"])
def test_executors_give_the_same_features(tmp_path, executor):
    ds = {"cms": Dataset("cms", "pfnanoaod", [str(PFNANO)])}
    ref = run_process(ds, tmp_path / "it", status=False, chunksize=4)
    other = run_process(ds, tmp_path / executor, executor=executor, workers=2, status=False, chunksize=4)
    assert ref["cutflow"] == other["cutflow"] == {"cms": {"input": 10, "passed": 10, "failed_two_jets": 0,
                                                          "failed_trigger": 0, "failed_bad_input": 0}}  # fmt: skip
    a = load_feature_table(tmp_path / "it" / "cms").sort_values("event").reset_index(drop=True)
    b = load_feature_table(tmp_path / executor / "cms").sort_values("event").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    names = sorted(p.name for p in (tmp_path / executor / "cms" / "features").glob("*.parquet"))
    assert names == sorted(p.name for p in (tmp_path / "it" / "cms" / "features").glob("*.parquet"))
    assert len(names) >= 2  # one file per chunk, named by its entry range


def test_plain_nanoaod_uses_cms_fatjets_and_counts_every_event(tmp_path):
    out = run_process({"dy": Dataset("dy", "nanoaod", [str(NANO_DY)]), "pf": Dataset("pf", "nanoaod", [str(PFNANO)])},
                      tmp_path, status=False)  # fmt: skip
    cf = out["cutflow"]["dy"]
    assert cf["input"] == 40 and cf["passed"] + cf["failed_two_jets"] + cf["failed_trigger"] == 40
    # hists.root: one directory per dataset, the names kept (ROOT has no string axis)
    with uproot.open(tmp_path / "hists.root") as f:
        for dataset in ("dy", "pf"):
            passed = out["cutflow"][dataset]["passed"]  # DY: 0 (an empty directory, not a missing one)
            assert f[f"{dataset}/mjj"].values(flow=True).sum() == passed
            assert f[f"{dataset}/tau21_j2"].values(flow=True).sum() == passed
        assert out["cutflow"]["pf"]["passed"] > 0


def test_nanoaod_format_reads_cms_fatjet_taus_from_their_branches(tmp_path):
    """`format: nanoaod` on a PFNano file: the two leading FatJets' tau_N are the file's FatJet_tau* branches (coffea's
    FatJet.tau2 attribute returned values ~1e4 there, which wrote tau21 = 832128)."""
    run_process({"x": Dataset("x", "nanoaod", [str(PFNANO)])}, tmp_path, status=False)
    table = load_feature_table(tmp_path / "x").sort_values("event")
    with uproot.open(PFNANO) as f:
        b = f["Events"].arrays(["FatJet_pt", "FatJet_tau1", "FatJet_tau2"], library="ak")
    lead = ak.argsort(b.FatJet_pt, axis=1, ascending=False)[:, :2]
    ratio = ak.to_numpy(b.FatJet_tau2[lead][table["event"].to_numpy()] / b.FatJet_tau1[lead][table["event"].to_numpy()])
    mine = np.sort(table[["tau21_j1", "tau21_j2"]].to_numpy(), axis=1)
    np.testing.assert_allclose(mine, np.sort(ratio, axis=1), rtol=1e-5)
    assert mine.max() < 1.5


def test_physlite_large_r_jets_are_the_files_branches_in_gev(tmp_path, capsys):
    """`format: physlite` (ATLAS, tree CollectionTree found by default): the two highest-pT AnalysisLargeRJets per
    event, their branches read independently with uproot and divided by 1000, tau21 = Tau2_wta / Tau1_wta, mjj
    recomputed with `vector`; every event counted (100 = passed + fewer than two jets); the identifiers and the
    generator weight kept; a hunt on these weighted events stops with one line."""
    import vector

    from anomalyhunt.cli import main as cli

    (tmp_path / "d.yaml").write_text(f"datasets:\n  atlas: {{format: physlite, files: [{PHYSLITE}]}}\n")
    out = run_process(load_datasets(tmp_path / "d.yaml"), tmp_path / "out", status=False)
    cf = out["cutflow"]["atlas"]
    assert cf["input"] == 100 and cf["passed"] + cf["failed_two_jets"] == 100 and cf["passed"] == 32
    table = load_feature_table(tmp_path / "out" / "atlas").sort_values("event")
    names = ["pt", "eta", "phi", "m", "Tau1_wta", "Tau2_wta"]
    with uproot.open(PHYSLITE) as f:
        b = f["CollectionTree"].arrays([f"AnalysisLargeRJetsAuxDyn.{n}" for n in names], library="ak")
    b = ak.zip({n: b[f"AnalysisLargeRJetsAuxDyn.{n}"] for n in names})
    b = b[ak.argsort(b.pt, axis=1, ascending=False)][table["event"].to_numpy(), :2]
    lead = {n: ak.to_numpy(b[n]).astype(np.float64) for n in names}  # (events, 2): two jets each
    mine_pt = np.sort(table[["pt_j1", "pt_j2"]].to_numpy(), axis=1)
    np.testing.assert_allclose(mine_pt, np.sort(lead["pt"] / 1000.0, axis=1), rtol=1e-6)
    np.testing.assert_allclose(np.sort(table[["mj1", "mj2"]].to_numpy(), axis=1),
                               np.sort(lead["m"] / 1000.0, axis=1), rtol=1e-6, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(np.sort(table[["tau21_j1", "tau21_j2"]].to_numpy(), axis=1),
                               np.sort(np.divide(lead["Tau2_wta"], lead["Tau1_wta"], out=np.zeros((len(table), 2)),
                                                 where=lead["Tau1_wta"] > 0), axis=1), rtol=1e-5)  # fmt: skip
    j = [vector.array({"pt": lead["pt"][:, k], "eta": lead["eta"][:, k], "phi": lead["phi"][:, k],
                       "mass": lead["m"][:, k]}) for k in (0, 1)]  # fmt: skip
    np.testing.assert_allclose(table["mjj"].to_numpy(), (j[0] + j[1]).mass / 1000.0, rtol=1e-5)
    with uproot.open(PHYSLITE) as f:  # the experiment's identifiers, beside the entry
        ids = f["CollectionTree"].arrays(["EventInfoAuxDyn.runNumber", "EventInfoAuxDyn.lumiBlock",
                                          "EventInfoAuxDyn.eventNumber"], library="np")  # fmt: skip
    for column, branch in (("run", "runNumber"), ("luminosityBlock", "lumiBlock"), ("event_number", "eventNumber")):
        np.testing.assert_array_equal(table[column], ids[f"EventInfoAuxDyn.{branch}"][table["event"].to_numpy()])
    import json

    import pyarrow.parquet as pq

    chunk = next((tmp_path / "out" / "atlas" / "features").glob("*.parquet"))
    units = json.loads(pq.read_schema(chunk).metadata[b"anomalyhunt.units"])
    assert units["mjj"] == units["mj1"] == units["pt_j1"] == "GeV" and units["phi_j1"] == "rad"
    # the generator weight (mcEventWeights[0]) is kept, and search / hunt refuse weighted events in one line
    from anomalyhunt.features import check_unit_weights

    with uproot.open(PHYSLITE) as f:
        mc_w = f["CollectionTree"]["EventInfoAuxDyn.mcEventWeights"].array(library="ak")
    np.testing.assert_allclose(table["gen_weight"], ak.to_numpy(ak.firsts(mc_w))[table["event"].to_numpy()])
    with pytest.raises(InputError, match="events carry generator weights"):
        check_unit_weights(table, "atlas")
    capsys.readouterr()
    assert cli(["hunt", "--features", str(tmp_path / "out" / "atlas"), "--sr", "0.5:0.6", "--out",
                str(tmp_path / "h")]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "events carry generator weights" in err[0], err  # simulation with its MC weights


def test_physlite_weights_normalise_to_the_given_sum_of_generator_weights(tmp_path):
    """PHYSLITE keeps the run-level sum of weights in the CutBookkeepers, which are not read: with `sum_w` in
    datasets.yaml (the sum over all generated events, e.g. from AMI) each event's weight is mcEventWeights[0] * xsec
    * luminosity / sum_w, recorded in config.json; without it the run stops with one line naming the file."""
    import json

    from anomalyhunt.cli import main as cli

    xsec, lumi, sum_w = 2.5, 140000.0, 8.0e6
    (tmp_path / "d.yaml").write_text(f"datasets:\n  atlas: {{format: physlite, files: [{PHYSLITE}], xsec: {xsec}, "
                                     f"luminosity: {lumi}, sum_w: {sum_w}}}\n")  # fmt: skip
    assert cli(["process", str(tmp_path / "d.yaml"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    table = load_feature_table(tmp_path / "out" / "atlas")
    with uproot.open(PHYSLITE) as f:
        mc_w = ak.to_numpy(ak.firsts(f["CollectionTree"]["EventInfoAuxDyn.mcEventWeights"].array(library="ak")))
    np.testing.assert_allclose(table["weight"], mc_w[table["event"].to_numpy()] * xsec * lumi / sum_w, rtol=1e-12)
    resolved = json.loads((tmp_path / "out" / "config.json").read_text())["config"]["datasets_resolved"]["atlas"]
    assert (resolved["sum_w"], resolved["sum_w_from"]) == (sum_w, "datasets.yaml")
    ds = Dataset("atlas", "physlite", [str(PHYSLITE)], treename="CollectionTree", xsec=xsec, luminosity=lumi)
    with pytest.raises(InputError, match=r"PHYSLITE_example.root: .*give the sum over all generated events as the "
                                         r"dataset's sum_w"):  # fmt: skip
        run_process({"atlas": ds}, tmp_path / "o", status=False)


# -- LHCO layouts ------------------------------------------------------------------------------------------------
def test_lhco_features_reader_orders_jets_by_mass(lhco_dir):
    df = read_lhco_features(lhco_dir / "rnd_sig_3500_500_100.features.h5", 0, 2000)
    with h5py.File(lhco_dir / "rnd_sig_3500_500_100.features.h5") as f:
        raw = f["df/block0_values"][:2000]
    assert (df["mj1"] <= df["mj2"]).all()
    np.testing.assert_allclose(np.sort(df[["mj1", "mj2"]].to_numpy(), axis=1),
                               np.sort(raw[:, [3, 10]], axis=1))  # fmt: skip
    swapped = raw[:, 3] > raw[:, 10]
    assert 0.2 < swapped.mean() < 0.8  # the file's j1 is the pT-leading jet, often the heavier one
    np.testing.assert_allclose(df["tau2_j1"][swapped], raw[swapped, 12])  # taus travel with their jet
    assert abs(np.median(df["mjj"]) / 3500 - 1) < 0.03


def test_lhco_particles_reclustered_match_the_recorded_features(lhco_dir, tmp_path):
    ds = {"sig": Dataset("sig", "lhco-particles", [str(lhco_dir / "rnd_sig_3500_500_100.particles.h5")], label=1)}
    out = run_process(ds, tmp_path, status=False, chunksize=1000, axes="kt")
    assert out["cutflow"]["sig"]["input"] == 2000
    ours = load_feature_table(tmp_path / "sig").sort_values("event").reset_index(drop=True)
    ref = read_lhco_features(lhco_dir / "rnd_sig_3500_500_100.features.h5", 0, 2000)
    # the particle layout is massless, the features file used massive particles: jet pT agrees, masses to ~1-6%
    assert np.median(np.abs(ours["pt_j1"] / ref["pt_j1"] - 1)) < 1e-3
    assert np.median(np.abs(ours["mjj"] / ref["mjj"] - 1)) < 3e-3
    assert np.median(np.abs(ours["mj2"] / ref["mj2"] - 1)) < 0.02


# -- bad input ----------------------------------------------------------------------------------------------------
def test_truncated_root_file_is_named(tmp_path):
    bad = tmp_path / "truncated.root"
    bad.write_bytes(PFNANO.read_bytes()[: PFNANO.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated.root"):
        run_process({"x": Dataset("x", "pfnanoaod", [str(bad)])}, tmp_path / "o", status=False)


def test_missing_branch_is_named(tmp_path):
    path = tmp_path / "nophi.root"
    counts = np.array([3, 2])
    with uproot.recreate(path) as f:
        f.mktree("Events", {"PFCands_pt": "var * float32", "PFCands_eta": "var * float32"})
        f["Events"].extend({"PFCands_pt": ak.unflatten(np.ones(5, np.float32), counts),
                            "PFCands_eta": ak.unflatten(np.zeros(5, np.float32), counts)})  # fmt: skip
    with pytest.raises(InputError, match=r"nophi.root.*missing branch.*PFCands_phi"):
        run_process({"x": Dataset("x", "pfnanoaod", [str(path)])}, tmp_path / "o", status=False)


def test_wrong_layout_empty_file_and_nan_are_named(tmp_path):
    wrong = tmp_path / "wrong.h5"
    pd.DataFrame(np.ones((4, 5), np.float32)).to_hdf(wrong, key="df", mode="w")
    with pytest.raises(InputError, match=r"wrong.h5.*wrong layout"):
        run_process({"x": Dataset("x", "lhco-particles", [str(wrong)])}, tmp_path / "o", status=False)
    empty = tmp_path / "empty.h5"
    write_lhco_particles(empty, np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(InputError, match=r"empty.h5.*no events"):
        run_process({"x": Dataset("x", "lhco-particles", [str(empty)])}, tmp_path / "o", status=False)
    nan = tmp_path / "nan.h5"
    pt = np.full((3, 4), 100.0)
    pt[1, 2] = np.nan
    write_lhco_particles(nan, pt, np.zeros((3, 4)), np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(InputError, match=r"nan.h5.*NaN values in events \[1\]"):
        read_lhco_particles(nan)
    with pytest.raises(InputError, match="does not exist"):
        run_process({"x": Dataset("x", "lhco-particles", [], missing=[str(tmp_path / "gone.h5")])}, tmp_path / "o",
                    status=False)  # fmt: skip


def test_events_without_two_jets_are_counted_not_lost(tmp_path):
    # event 0: two back-to-back hard particles (two jets); event 1: one particle (one jet); event 2: nothing
    pt = np.array([[1500.0, 1400.0], [1500.0, 0.0], [0.0, 0.0]])
    phi = np.array([[0.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
    path = tmp_path / "few.h5"
    write_lhco_particles(path, pt, np.zeros_like(pt), phi, np.zeros(3))
    out = run_process({"few": Dataset("few", "lhco-particles", [str(path)])}, tmp_path / "o", status=False)
    assert out["cutflow"]["few"] == {"input": 3, "passed": 1, "failed_two_jets": 2, "failed_trigger": 0,
                                         "failed_bad_input": 0}
    table = load_feature_table(tmp_path / "o" / "few")
    assert table["event"].tolist() == [0]
    assert abs(table["mjj"].iloc[0] - 2 * np.sqrt(1500 * 1400) * np.sin(1.5)) < 1.0


def test_unwritable_output_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(InputError, match="not writable"):
        run_process({"cms": Dataset("cms", "pfnanoaod", [str(PFNANO)])}, blocker / "out", status=False)


# -- event weights --------------------------------------------------------------------------------------------------
XSEC, LUMI = 6077.22, 59830.0  # pb (DY -> ll), pb^-1 (2018)


def _weighted_nano(path: Path, gen_weight: np.ndarray | None, sumw: list[float]) -> Path:
    """PFNano's FatJets and event ids (all 10 events have two) as a NanoAOD file with the given genWeight (none:
    data) and a Runs tree whose genEventSumw has one entry per element of ``sumw``."""
    with uproot.open(PFNANO) as f:
        names = [f"FatJet_{b}" for b in ("pt", "eta", "phi", "mass", "rawFactor", "tau1", "tau2", "tau3")]
        arrays = f["Events"].arrays(names + ["run", "luminosityBlock", "event"])
    with uproot.recreate(path) as out:
        out.mktree("Events", {b: arrays[b].type for b in arrays.fields} | ({} if gen_weight is None else
                   {"genWeight": np.float32}), counter_name=lambda _: "nFatJet")  # fmt: skip
        out["Events"].extend({b: arrays[b] for b in arrays.fields} | ({} if gen_weight is None else
                             {"genWeight": gen_weight.astype(np.float32)}))  # fmt: skip
        if sumw:
            out["Runs"] = {"genEventSumw": np.array(sumw)}
    return path


def _raw_weights(path: Path) -> tuple[np.ndarray, float]:
    """genWeight per event and the Runs tree's sum of generator weights, read with uproot alone."""
    with uproot.open(path) as f:
        gen = f["Events"]["genWeight"].array(library="np").astype(np.float64)
        runs = f["Runs"]
        return gen, float(runs["genEventSumw" if "genEventSumw" in runs else "genEventSumw_"].array(library="np").sum())


def test_event_weights_are_normalised_to_all_generated_events(tmp_path, capsys):
    """weight = genWeight * xsec * luminosity / sum_w, sum_w summed over the Runs trees of all files of the dataset
    (DY's genEventSumw_ = 1.51666867e10, one entry; a second file's genEventSumw in two entries), never over the
    processed events; the same with 3 or 50 events per chunk; in the table, the weighted histograms (sum of weights
    and of their squares, also in hists.root), the cut flow (every step, input = passed + failed), config.json and
    each Parquet chunk's metadata. An unweighted dataset beside it keeps its counts (variance = count)."""
    import json

    import pyarrow.parquet as pq

    from anomalyhunt.cli import main as cli

    # DY has no FatJets: its 40 events all fail the two-jet cut, the second file's 10 (mixed-sign weights) all pass.
    gen_w, _ = _raw_weights(NANO_DY)
    weighted = _weighted_nano(tmp_path / "weighted.root", gen_w[:10] * np.linspace(0.5, 2.0, 10), [2.5e9, 1.5e9])
    (tmp_path / "d.yaml").write_text(f"datasets:\n  mc: {{format: nanoaod, files: [{NANO_DY}, {weighted}], "
                                     f"xsec: {XSEC}, luminosity: {LUMI}}}\n")  # fmt: skip
    assert cli(["process", str(tmp_path / "d.yaml"), "--out", str(tmp_path / "a"), "--chunksize", "3",
                "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    ds = load_datasets(tmp_path / "d.yaml") | {"data": Dataset("data", "nanoaod", [str(PFNANO)])}
    b = run_process(ds, tmp_path / "b", status=False, chunksize=50)

    gen_dy, sumw_dy = _raw_weights(NANO_DY)
    gen_mc, sumw_mc = _raw_weights(weighted)
    assert sumw_dy == pytest.approx(1.51666867e10, rel=1e-8) and sumw_mc == 4.0e9
    norm = XSEC * LUMI / (sumw_dy + sumw_mc)
    config = json.loads((tmp_path / "a" / "config.json").read_text())["config"]["datasets_resolved"]["mc"]
    assert (config["xsec"], config["luminosity"]) == (XSEC, LUMI)
    assert config["sum_w"] == pytest.approx(sumw_dy + sumw_mc, rel=1e-12) == b["normalisation"]["mc"]["sum_w"]
    chunk = next((tmp_path / "a" / "mc" / "features").glob("weighted.root-*.parquet"))
    meta = json.loads(pq.read_schema(chunk).metadata[b"anomalyhunt.normalisation"])
    assert meta["sum_w"] == config["sum_w"] and meta["units"]["luminosity"] == "pb^-1"

    tables = {k: load_feature_table(tmp_path / k / "mc").sort_values("event").reset_index(drop=True) for k in "ab"}
    pd.testing.assert_frame_equal(tables["a"], tables["b"], check_exact=True)  # chunking changes nothing
    table = tables["a"]
    assert len(table) == 10 and (table["weight"] < 0).sum() == (gen_mc < 0).sum() > 0
    np.testing.assert_allclose(table["weight"], gen_mc[table["event"]] * XSEC * LUMI / (sumw_dy + sumw_mc), rtol=1e-12)

    cutflow = json.loads((tmp_path / "a" / "cutflow.json").read_text())["mc"]
    assert cutflow["sumw"] == pytest.approx(b["cutflow"]["mc"]["sumw"], rel=1e-12)
    sumw = cutflow["sumw"]
    assert sumw["failed_two_jets"] == pytest.approx(gen_dy.sum() * norm, rel=1e-12)  # DY's own weights
    assert sumw["passed"] == pytest.approx(table["weight"].sum(), rel=1e-12)
    assert sumw["input"] == pytest.approx(sumw["passed"] + sumw["failed_two_jets"], rel=1e-12)
    assert sumw["failed_bad_input"] == sumw["failed_trigger"] == 0.0
    assert (cutflow["input"], cutflow["passed"], cutflow["failed_two_jets"]) == (50, 10, 40)

    h = b["hists"]["mjj"]
    assert h.storage_type is hist.storage.Weight
    total = h[{"dataset": "mc"}].sum(flow=True)
    assert total.value == pytest.approx(table["weight"].sum(), rel=1e-12)
    assert total.variance == pytest.approx((table["weight"] ** 2).sum(), rel=1e-12)
    counts = h[{"dataset": "data"}].view(flow=True)
    assert counts.value.sum() == 10 and (counts.variance == counts.value).all()  # the unweighted dataset: counts
    with uproot.open(tmp_path / "a" / "hists.root") as f:
        assert f["mc/tau21_j1"].values(flow=True).sum() == pytest.approx(table["weight"].sum(), rel=1e-12)
        assert f["mc/mjj"].variances(flow=True).sum() == pytest.approx((table["weight"] ** 2).sum(), rel=1e-12)


def test_xsec_and_luminosity_are_refused_without_generator_weights(tmp_path):
    """Data (no genWeight) and a file without a Runs sum of weights cannot be normalised: one line naming the file."""
    data = _weighted_nano(tmp_path / "data.root", None, [1.0])
    with pytest.raises(InputError, match=r"data.root: no genWeight branch .*\(data\?\).*normalise simulation only"):
        run_process({"d": Dataset("d", "nanoaod", [str(data)], xsec=1.0, luminosity=1.0)}, tmp_path / "o", status=False)
    assert not (tmp_path / "o" / "d").exists()  # refused before any output
    with uproot.recreate(tmp_path / "noruns.root") as out, uproot.open(PFNANO) as f:
        out["Events"] = f["Events"].arrays(["genWeight", "run"], library="np")
    with pytest.raises(InputError, match=r"noruns.root: no Runs tree with genEventSumw or genEventSumw_"):
        run_process({"d": Dataset("d", "nanoaod", [str(tmp_path / "noruns.root")], xsec=1.0, luminosity=1.0)},
                    tmp_path / "o", status=False)  # fmt: skip
    # a skim without its Runs tree: the analyst gives the sum over all generated events
    skim = _weighted_nano(tmp_path / "skim.root", np.full(10, 2.0), [])
    out = run_process({"d": Dataset("d", "nanoaod", [str(skim)], xsec=3.0, luminosity=5.0, sum_w=4.0)},
                      tmp_path / "o", status=False)  # fmt: skip
    assert out["normalisation"]["d"]["sum_w"] == 4.0
    np.testing.assert_allclose(load_feature_table(tmp_path / "o" / "d")["weight"], 2.0 * 3.0 * 5.0 / 4.0)
    with pytest.raises(InputError, match=r"data.root: no genWeight branch .*\(data\?\)"):  # sum_w makes no data MC
        run_process({"d": Dataset("d", "nanoaod", [str(data)], xsec=1.0, luminosity=1.0, sum_w=4.0)}, tmp_path / "p",
                    status=False)  # fmt: skip


# -- datasets.yaml -------------------------------------------------------------------------------------------------
def test_shipped_datasets_yaml_is_valid():
    entries = load_datasets(REPO / "datasets.yaml")
    assert entries["cms_pfnano"].files == [str(PFNANO)]
    assert entries["demo_signal"].generate["m_x"] == 500
    assert entries["lhco_rnd"].format == "lhco-particles"


@pytest.mark.parametrize(
    "body, message",
    [
        ("datasets:\n  a: {format: root, files: [x]}", r"dataset 'a'.*'format'"),
        ("datasets:\n  b: {format: nanoaod}", r"dataset 'b'.*'files'"),
        ("datasets:\n  c: {format: nanoaod, files: [x], label: 2}", r"dataset 'c'.*'label'"),
        ("datasets:\n  d: {format: nanoaod, files: [x], colour: red}", r"dataset 'd'.*unknown key.*colour"),
        ("datasets:\n  e: {format: nanoaod, files: ['${NO_SUCH_VAR_X}/f.root']}", r"dataset 'e'.*NO_SUCH_VAR_X"),
        ("datasets:\n  f: {format: nanoaod, files: [x], luminosity: 140000}",
         r"^datasets.yaml: dataset 'f': key 'luminosity' given without 'xsec'"),
        ("datasets:\n  g: {format: nanoaod, files: [x], xsec: 1.0, luminosity: -5}",
         r"dataset 'g': key 'luminosity' must be a positive number, got -5"),
        ("datasets:\n  h: {format: nanoaod, files: [x], sum_w: 1.0e6}",
         r"dataset 'h': key 'sum_w' given without 'xsec' and 'luminosity'"),
        ("datasets:\n  i: {format: physlite, files: [x], xsec: 1.0, luminosity: 1.0, sum_w: 0}",
         r"dataset 'i': key 'sum_w' must be a positive number, got 0"),
        ("nothing: here", "top-level mapping 'datasets:'"),
    ],
)
def test_invalid_datasets_yaml_names_dataset_and_key(tmp_path, body, message):
    path = tmp_path / "datasets.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_datasets(path)


def test_jet_images_put_the_hard_prong_up_and_the_soft_one_down():
    """Hand-built two-prong jets at random orientations (hard prong 600 GeV, soft prong 200 GeV, 0.4 apart, each a
    few constituents): after centring, rotating and flipping, both prongs lie on the vertical axis with the hard
    one's pixel the image's maximum in the upper half and the soft prong's in the lower half, in every image (the
    old first-moment flip put the soft prong on a random side: 54%)."""
    from anomalyhunt.processors.constituents import jet_images

    rng = np.random.default_rng(3)
    n_jets, n_pix, extent = 200, 40, 0.7
    jet_eta, jet_phi = rng.uniform(-1.5, 1.5, n_jets), rng.uniform(-3.0, 3.0, n_jets)
    alpha = rng.uniform(0, 2 * np.pi, n_jets)
    jets = []
    for k in range(n_jets):
        axis = np.array([np.cos(alpha[k]), np.sin(alpha[k])])
        parts = []
        for pt_total, offset in ((600.0, 0.1), (200.0, -0.3)):  # pT centroid at 0: 600 x 0.1 = 200 x 0.3
            for share in (0.6, 0.3, 0.1):
                d = offset * axis + rng.normal(0, 0.005, 2)
                parts.append((pt_total * share, jet_eta[k] + d[0], jet_phi[k] + d[1]))
        pt, eta, phi = (np.array(v) for v in zip(*parts))
        jets.append([{"px": a * np.cos(c), "py": a * np.sin(c), "pz": a * np.sinh(b)} for a, b, c in zip(pt, eta, phi)])
    images = jet_images(ak.Array(jets), jet_eta, jet_phi, n_pixels=n_pix, extent=extent)
    pixel = 2 * extent / n_pix
    centre = (n_pix - 1) / 2
    for img in images:
        hard_x, hard_y = np.unravel_index(img.argmax(), img.shape)
        assert abs(hard_x - centre) <= 1 and abs(hard_y - centre - 0.1 / pixel) <= 1.5
        lower = img[:, : n_pix // 2].sum()
        assert lower == pytest.approx(0.25, abs=0.02)  # the soft prong's 200 of 800 GeV, all below the centre
        soft_y = np.unravel_index(img[:, : n_pix // 2].argmax(), img[:, : n_pix // 2].shape)[1]
        assert abs(soft_y - (centre - 0.3 / pixel)) <= 1.5
