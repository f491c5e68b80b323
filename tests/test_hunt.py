"""`anomalyhunt hunt` on unlabelled data: limits, the fit range, bad input, and a resonance found end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomalyhunt.analysis.bumphunt import bump_hunt, mjj_hist
from anomalyhunt.analysis.dijetfit import fit_background, signal_counts
from anomalyhunt.analysis.hunt import turn_on_end, upper_limit
from anomalyhunt.analysis.hunt_calibration import independent_global_p
from anomalyhunt.cli import main as cli
from anomalyhunt.demo import shipped_features

EDGES = np.arange(2800.0, 6001.0, 100.0)
SR = (3300.0, 3700.0)


@pytest.fixture(scope="module")
def shipped():
    table = shipped_features()
    qcd = table[table.label == 0].drop(columns="label").reset_index(drop=True)
    sig = table[table.label == 1].drop(columns="label").reset_index(drop=True)
    qcd["event"], sig["event"] = np.arange(len(qcd)), np.arange(len(sig))
    return qcd, sig


@pytest.fixture(scope="module")
def qcd_spectrum(shipped) -> np.ndarray:
    """Expected background per 100 GeV bin: the dijet fit of the shipped QCD (the truth of the tests below)."""
    return fit_background(mjj_hist(shipped[0].mjj.to_numpy(), EDGES)).background()


def test_upper_limit_is_in_signal_events_and_covers_the_signal(qcd_spectrum):
    """Asimov spectra (expected counts, no fluctuation): without signal the observed limit is the expected one;
    with 3000 Gaussian events at 3.5 TeV (1,980 of them inside the 3.3-3.7 TeV SR, S/sqrt(B) ~ 9 there) the limit
    lies above the excess over the sideband fit and the expected limit well below it. Measured: 607 expected, 1750
    observed with signal (excess over the sideband fit 1,190)."""
    bh0 = bump_hunt((qcd_spectrum, EDGES), SR)
    lim0 = upper_limit(bh0)
    assert lim0["limit_exp_lo"] < lim0["limit_exp"] < lim0["limit_exp_hi"]
    assert abs(lim0["limit_obs"] / lim0["limit_exp"] - 1) < 0.1
    b_sr = qcd_spectrum[(EDGES[:-1] >= SR[0]) & (EDGES[:-1] < SR[1])].sum()
    # ~2 sigma of the SR count and of the sideband extrapolation: between 1 and 4 sqrt(B)
    assert np.sqrt(b_sr) < lim0["limit_exp"] < 4 * np.sqrt(b_sr)
    sig = signal_counts(EDGES, 3000, 3500.0, 210.0)
    s_sr = sig[(EDGES[:-1] >= SR[0]) & (EDGES[:-1] < SR[1])].sum()
    bh = bump_hunt((qcd_spectrum + sig, EDGES), SR)
    lim = upper_limit(bh)
    excess = bh.observed_sr - bh.predicted_sr  # what the sideband fit leaves of the signal in the SR
    assert lim["limit_exp"] < excess < lim["limit_obs"] < s_sr + 2 * lim0["limit_exp"]
    # the signal's tails in the sidebands pull the background fit up: the limit is on what is left in the SR
    assert 0.5 * s_sr < excess < 0.8 * s_sr


def test_turn_on_end_is_past_the_peak(shipped):
    m = shipped[0].mjj.to_numpy()
    end = turn_on_end(m)
    counts, edges = np.histogram(m, np.arange(2000.0, 4001.0, 100.0))
    peak = edges[np.argmax(counts)]
    assert end == peak + 200.0  # one bin past the most populated one: the recorded sample peaks at 2.6-2.7 TeV
    above = np.histogram(m, np.arange(end, end + 1001.0, 100.0))[0]
    assert np.all(np.diff(above) < 0)  # from there on the spectrum falls, as the dijet function does


@pytest.fixture(scope="module")
def small_tables(shipped, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hunt_inputs")
    qcd, sig = shipped
    paths = {"data": d / "data.parquet", "small": d / "small.parquet", "no_mjj": d / "no_mjj.parquet",
             "sig_no_tau": d / "sig.parquet", "sim_no_tau": d / "sim_no_tau.parquet",
             "sim": d / "sim.parquet"}  # fmt: skip
    qcd.iloc[:40_000].to_parquet(paths["data"])
    qcd.iloc[:20_000].to_parquet(paths["small"])
    qcd.iloc[:1000].drop(columns="mjj").to_parquet(paths["no_mjj"])
    sig.iloc[:1000].drop(columns="tau21_j1").to_parquet(paths["sig_no_tau"])
    qcd.iloc[40_000:41_000].drop(columns="tau21_j1").to_parquet(paths["sim_no_tau"])
    # a "simulation" of other QCD events: jet masses x 1.08, tau21 + 0.04 (another tune, as in test_generators.py)
    sim = qcd.iloc[40_000:60_000].copy()
    sim[["mj1", "mj2", "delta_mj"]] *= 1.08
    sim[["tau21_j1", "tau21_j2"]] += 0.04
    sim.to_parquet(paths["sim"])
    return paths


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sr", "3.3:3.7", "--fit-range", "2.0:6.0"], r"fit range starts at 2 TeV, inside the trigger turn-on"),
        (["--sr", "9.5:9.9"], r"SR 9.5-9.9 TeV lies outside the data's mjj range"),
        (["--sr", "2.7:3.1"], r"SR 2.7-3.1 TeV lies without sidebands inside the fit range 2.8-"),
        (["--sr", "6.0:6.2"], r"SR 6-6.2 TeV holds \d+ events: too few for a fit"),
        (["--sr", "3.3:3.7", "--inject", "{sig_no_tau}", "--signal-events", "10"],
         r"sig.parquet: missing feature columns \['tau21_j1'\]"),
        (["--sr", "3.3:3.7", "--signal-events", "10"], r"--signal-events needs --inject"),
        ([], r"give the signal regions with --sr"),
        (["--sr", "3.3:3.7", "--method", "idealized"], r"unknown hunt method\(s\) \['idealized'\]"),
        (["--sr", "3.3:3.7", "--method", "cwola"], r"cwola: features \['mj1', 'delta_mj', 'delta_r'\] scale with mjj"),
        (["--sr", "3.3:3.7", "--method", "cwola", "--feature", "tau21_j1", "--train-on", "window"],
         r"cwola: CWoLa hunting trains SR against sidebands"),
        (["--sr", "3.3:3.7", "--null-toys", "2", "--null", "elsewhere"], r"give --null-toys \(pseudo-experiments"),
        (["--sr", "3.3:3.7", "--null", "elsewhere"], r"elsewhere: not a calibration study"),
        (["--sr", "3.3:3.7", "--method", "salad", "--simulation", "{sim_no_tau}"],
         r"sim_no_tau.parquet: missing feature columns \['tau21_j1'\]"),
        (["--sr", "3.3:3.7", "--method", "feta"], "feta learns from a background simulation: give --simulation"),
        (["--sr", "3.3:3.7", "--method", "salad", "--simulation", "nowhere.parquet"], r"nowhere.parquet: file does not"),
        (["--sr", "3.3:3.7", "--method", "salad", "--simulation", "{data}"], r"and the simulation .*data.parquet: \d+ events "
                                                                              r"appear twice"),
    ],
)
def test_bad_hunt_input_is_one_line(small_tables, tmp_path, capsys, extra, message):
    args = ["hunt", "--features", str(small_tables["data"]), "--out", str(tmp_path / "h")]
    rc = cli(args + [a.format(**{k: str(v) for k, v in small_tables.items()}) for a in extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "h" / "summary.json").exists()


def test_table_without_mjj_is_one_line(small_tables, tmp_path, capsys):
    rc = cli(["hunt", "--features", str(small_tables["no_mjj"]), "--sr", "3.3:3.7", "--out", str(tmp_path / "h")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "no_mjj.parquet: no 'mjj' column" in err[0]


def test_hunt_with_a_simulation_records_it(small_tables, tmp_path):
    """`hunt --method salad --simulation FILE`: the simulation is read like --features and handed to SALAD, and
    config.json records it (path, events, the features it was read with)."""
    out = tmp_path / "h"
    rc = cli(["hunt", "--features", str(small_tables["small"]), "--simulation", str(small_tables["sim"]), "--method",
              "salad", "--sr", "3.3:3.7", "--fit-toys", "0", "--efficiency", "0.1", "--no-plots", "--out", str(out)])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["simulation"] == str(small_tables["sim"])
    assert config["simulation_resolved"]["events"] == 20_000
    assert config["simulation_resolved"]["features"] == ["mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r"]
    assert (out / "summary.json").exists()


#: The end-to-end hunts below: (method, --train-on), the longest first, one per CI core (LaCATHODE's latent
#: reference finds an injected signal in tests/test_search.py and its latent space is tested below); "auto" is the
#: default, not given on the command line (CATHODE's classifier then trains on the SR).
E2E_RUNS = [("cathode", "window"), ("cathode", "auto")]


@pytest.fixture(scope="module")
def e2e_hunts(shipped, tmp_path_factory) -> dict[tuple[str, str], tuple[int, Path]]:
    """The hunts of :func:`test_hunt_on_unlabelled_data_finds_an_injected_resonance`, each the command line
    in a Dask task on two local workers (one per CI core; the hunt itself uses one): (exit status, OUT) per run."""
    from anomalyhunt.tasks import run_tasks

    d = tmp_path_factory.mktemp("e2e_hunts")
    qcd, sig = shipped
    data, inject = d / "data.parquet", d / "signal.parquet"
    qcd.iloc[:60_000].to_parquet(data)
    sig.to_parquet(inject)
    args, outs = [], []
    for method, train_on in E2E_RUNS:
        outs.append(d / f"hunt_{method}_{train_on}")
        args.append(["hunt", "--features", str(data), "--inject", str(inject), "--signal-events", "580", "--method",
                     method, "--generator-option", "epochs=8", "--sr", "3.3:3.7", "--sr", "3.9:4.3", "--fit-toys",
                     "0", "--efficiency", "0.01", "--seed", "3", "--out", str(outs[-1])]
                    + ([] if train_on == "auto" else ["--train-on", train_on])
                    + ([] if (method, train_on) == ("cathode", "auto") else ["--no-plots"]))  # plots checked once
    rcs = run_tasks(cli, args, workers=2)
    return {run: (rc, out) for run, rc, out in zip(E2E_RUNS, rcs, outs)}


@pytest.mark.slow
@pytest.mark.parametrize("method, train_on", E2E_RUNS)
def test_hunt_on_unlabelled_data_finds_an_injected_resonance(e2e_hunts, method, train_on):
    """Unlabelled QCD (60k events of the shipped sample, no label column) with 580 W' events injected from the
    separate signal table: S/sqrt(B) ~ 4.3 in 3.3-3.7 TeV (~405 signal on 8,765 background events). CATHODE (CPU
    size), the classifier trained in the SR or across SR and sidebands, the 1% cut (the only one
    asserted, so the only one run besides no cut): the window holding 3.5 TeV stands out; the one above it does not.
    Measured z_fixed at / away, seeds 3 (the test's) / 4 / 5: CATHODE 6.1 / -2.2, 6.3 / 0.9, 5.7 / -1.8; LaCATHODE
    6.6 / 0.7, 6.5 / 1.2, 5.7 / -0.3; CATHODE (window) 6.8 / 2.9, 5.4 / 2.2, 6.0 / 0.0: at least 5.4 against the 3
    asked, 3.2 apart against the 2 asked (on 100k events with 750 injected, seed 3: 8.9 / 1.9, 7.3 / 0.9, 6.9 / 1.3)."""
    rc, out = e2e_hunts[(method, train_on)]
    assert rc == 0
    hunt = pd.read_csv(out / "hunt.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["significance"] == "auto" and summary["significance_by_method"] == {method: "fit-fixed"}
    assert summary["calibration"][method].startswith("uncalibrated")
    plots = ("plots/pvalue_scan.png", "plots/pvalue_scan.pdf", f"plots/bumphunt_{method}.png",
             f"plots/windows/bumphunt_{method}_3.9-4.3_eff0.01.pdf")  # fmt: skip
    for name in ("report.md", "hists.root", "hists.pkl", "config.json", *plots):
        assert (out / name).exists() == (name not in plots or (method, train_on) == ("cathode", "auto")), name
    resolved = json.loads((out / "config.json").read_text())["config"]["train_on_resolved"]
    assert resolved == {method: "sr" if train_on == "auto" else train_on}
    assert summary["summary"][0]["classifier_trained_on"] == resolved[method]  # also in the report's table
    at = hunt[(hunt.efficiency == 0.01) & (hunt.sr_lo == 3.3)].iloc[0]
    away = hunt[(hunt.efficiency == 0.01) & (hunt.sr_lo == 3.9)].iloc[0]
    assert at.injected_in_sr > 350 and away.injected_in_sr < 100  # 70% of the 580 in 3.3-3.7 TeV: 405 +- 11
    assert at.z_fixed > 3.0 and at.z_fixed > away.z_fixed + 2.0, (at.z_fixed, away.z_fixed)
    assert at.limit_obs > at.limit_exp  # an excess: the observed limit sits above the expected one


def test_process_then_hunt_on_data_without_labels(lhco_dir, tmp_path):
    """The analyst's path: a `label: null` dataset through `process`, then `hunt` on its output directory."""
    yaml_path = tmp_path / "datasets.yaml"
    yaml_path.write_text("datasets:\n  mydata:\n    format: lhco-features\n    label: null\n"
                         f"    files: [{lhco_dir / 'rnd_qcd_seed1001.features.h5'}]\n")  # fmt: skip
    assert cli(["process", str(yaml_path), "--out", str(tmp_path / "proc"), "--no-progress"]) == 0
    table = pd.read_parquet(next((tmp_path / "proc" / "mydata" / "features").glob("*.parquet")))
    assert len(table) == 25_000
    out = tmp_path / "hunt"
    hunt_args = ["hunt", "--features", str(tmp_path / "proc" / "mydata"), "--sr", "3.3:3.7", "--method", "cwola",
                 "--feature", "tau21_j1", "--feature", "tau21_j2", "--fit-toys", "0", "--no-plots", "--out", str(out)]
    assert cli(hunt_args) == 0
    hunt = pd.read_csv(out / "hunt.csv")
    assert sorted(hunt.efficiency) == [0.01, 0.1, 1.0] and hunt.limit_obs.notna().all()
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["inputs"][0]["status"] == "complete" and config["inputs"][0]["rows"] == 25_000
    assert "25000 data events" in (out / "report.md").read_text()
    assert cli(hunt_args) == 0  # the same hunt again replaces its outputs
    assert cli([*hunt_args[:-2], "--seed", "1", "--out", str(out)]) == 1  # another hunt into the same OUT: refused
    timing = ["seconds_train", "seconds_template"]  # the only columns a re-run may change
    pd.testing.assert_frame_equal(pd.read_csv(out / "hunt.csv").drop(columns=timing), hunt.drop(columns=timing))


def test_null_study_resumes_and_calibrates_the_global_p_value(small_tables, tmp_path, capsys):
    """`bench hunt` (background-only hunts, resumable) feeds `hunt --null`: a few toys, the same machinery as the
    calibration study in the README."""
    study = tmp_path / "null"
    tau = ["--feature", "tau21_j1", "--feature", "tau21_j2"]
    args = ["bench", "hunt", "--method", "cwola", "--samples", "3", "--fraction", "0.1", "--sr", "3.3:3.7",
            "--sr", "3.9:4.3", *tau, "--out", str(study)]  # fmt: skip
    assert cli(args) == 0
    first = (study / "tasks.jsonl").read_text()
    assert [len(json.loads(line)["rows"]) for line in first.splitlines()] == [2 * 2] * 3  # samples: windows x cuts
    capsys.readouterr()
    assert cli(args) == 0  # a re-run resumes: nothing recomputed, nothing doubled
    assert "3 (sample, method) hunts already" in capsys.readouterr().out
    assert (study / "tasks.jsonl").read_text() == first
    # the summary of one window (as for a method calibrated only above the turn-on) from the same values
    assert cli([*args, "--summary-sr", "3.9:4.3"]) == 0
    (one,) = [r for r in json.loads((study / "summary_3.9-4.3.json").read_text()) if r["statistic"] == "z_fixed"]
    values = [r["z_fixed"] for line in first.splitlines() for r in json.loads(line)["rows"] if r["sr_lo"] == 3.9]
    assert one["n_values"] == len(values) == 6 and one["max"] == pytest.approx(max(values))
    assert cli([*args, "--summary-sr", "3.0:3.4"]) == 1
    assert "not windows of this study" in capsys.readouterr().err
    assert cli([*args[:-2], "--seed", "5", "--out", str(study)]) == 1  # another study into the same OUT
    assert "holds a calibration study with other settings" in capsys.readouterr().err

    out = tmp_path / "hunt"
    assert cli(["hunt", "--features", str(small_tables["data"]), "--method", "cwola", "--sr", "3.3:3.7", "--sr",
                "3.9:4.3", *tau, "--null", str(study), "--no-plots", "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    # hunts of other samples (here: of the shipped QCD) do not calibrate a hunt of this table; they are still counted
    assert summary["calibration"]["cwola"].startswith("uncalibrated for this data: 3 background-only hunts")
    row = summary["summary"][0]
    assert row["p_global"] in (0.25, 0.5, 0.75, 1.0) and row["n_null"] == 3  # (k + 1) / (n + 1) with n = 3
    capsys.readouterr()
    assert cli(["hunt", "--features", str(small_tables["data"]), "--method", "cwola", "--sr", "3.3:3.7", *tau,
                "--null", str(study), "--out", str(tmp_path / "h2")]) == 1  # fmt: skip
    assert "calibration study made for windows [[3.3, 3.7], [3.9, 4.3]]" in capsys.readouterr().err


def test_null_model_keeps_the_signal_out(shipped, tmp_path):
    """The null pseudo-experiments' background-only model, on 60k QCD events with 1,500 W' events injected
    (S/sqrt(B) ~ 17 in 3.3-3.7 TeV, where the data then hold ~680 more events with a ~500 GeV jet and low
    tau21 than QCD does). The model's mjj follows the dijet fit of the data (toy SR count within 4 sigma of the
    QCD's own) and its SR features come from a generator that never saw the SR: the signal-like corner
    (lighter jet 80-200 GeV, heavier 400-600 GeV, both tau21 < 0.5) holds about the QCD's count in a toy, far below the data's."""
    from rich.console import Console

    from anomalyhunt.analysis.hunt import fit_edges
    from anomalyhunt.analysis.injection import feature_matrix, mjj_tev
    from anomalyhunt.analysis.null_toys import background_model, draw_toy

    qcd, sig = shipped
    features = ["mj1", "mj2", "tau21_j1", "tau21_j2"]
    bkg = qcd.iloc[:60_000]
    data = pd.concat([bkg, sig.iloc[:1500]], ignore_index=True)
    x, m = feature_matrix(data, features, "data"), mjj_tev(data, "data")
    window = (3.3, 3.7)
    edges = fit_edges(m, [window])
    (model,) = background_model(x, m, [window], edges, null_model="cathode", generator_config={"epochs": 10},
                                margin=600.0, seed=0, directory=tmp_path, console=Console(quiet=True))  # fmt: skip

    def corner(x_sr: np.ndarray) -> int:
        masses = (x_sr[:, 0] > 0.08) & (x_sr[:, 0] < 0.2) & (x_sr[:, 1] > 0.4) & (x_sr[:, 1] < 0.6)  # TeV
        return int((masses & (x_sr[:, 2] < 0.5) & (x_sr[:, 3] < 0.5)).sum())

    m_b = mjj_tev(bkg, "qcd")
    in_b = (m_b >= 3.3) & (m_b < 3.7)
    in_d = (m >= 3.3) & (m < 3.7)
    qcd_corner, data_corner = corner(feature_matrix(bkg, features, "qcd")[in_b]), corner(x[in_d])
    assert data_corner > qcd_corner + 500  # the injected signal is there in the data
    for seed in (1, 2):
        xt, mt = draw_toy(model, seed)
        in_t = (mt >= 3.3) & (mt < 3.7)
        assert abs(in_t.sum() - in_b.sum()) < 4 * np.sqrt(in_b.sum()) + 0.02 * in_b.sum(), (in_t.sum(), in_b.sum())
        toy_corner = corner(xt[in_t])
        assert toy_corner < qcd_corner + 0.5 * (data_corner - qcd_corner), (toy_corner, qcd_corner, data_corner)


def test_null_toys_calibrate_resume_and_extend(small_tables, tmp_path, capsys):
    """`hunt --null-toys N`: pseudo-experiments of this table from its background-only model, one task per (toy,
    window); the global p-value counts them, a re-run resumes, a larger N adds toys, a torn log line reruns only
    its task; a null study made for other data does not calibrate. One cut level (1%) keeps the three hunts and the
    toys' hunts to what the bookkeeping needs."""
    out = tmp_path / "hunt"
    args = ["hunt", "--features", str(small_tables["small"]), "--sr", "3.3:3.7", "--sr", "3.9:4.3", "--generator-option",
            "epochs=2", "--fit-toys", "0", "--efficiency", "0.01", "--no-plots", "--out", str(out)]  # fmt: skip
    assert cli([*args, "--null-toys", "2", "--scheduler", "sync"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calibration"]["cathode"].startswith("calibrated: 2 null pseudo-experiments from a background-only")
    row = summary["summary"][0]
    assert row["n_null"] == 2 and row["p_global"] in (1 / 3, 2 / 3, 1.0)
    log = out / "null-toys" / "tasks.jsonl"
    assert len(log.read_text().splitlines()) == 2 * 2  # toys x windows
    with log.open("a") as f:  # a run killed while writing leaves a torn line: ignored, that task runs again
        f.write('{"task": "2/3.3-3.7/cathode", "rows": [{"sam')
    capsys.readouterr()
    assert cli([*args, "--null-toys", "3", "--workers", "2"]) == 0  # more toys, on a local Dask cluster
    assert "resuming: 4 (toy, window, method) tasks already" in capsys.readouterr().out
    tasks = [json.loads(line) for line in log.read_text().splitlines()[:4] + log.read_text().splitlines()[5:]]
    assert sorted(t["task"] for t in tasks) == sorted(f"{t}/{w}/cathode" for t in range(3)
                                                      for w in ("3.3-3.7", "3.9-4.3"))  # fmt: skip
    row = json.loads((out / "summary.json").read_text())["summary"][0]
    assert row["n_null"] == 3
    # The KS study's view of the same hunt: the count the hunt reports, and a randomized p-value inside its step.
    (ks,) = independent_global_p([out], "cathode").itertuples()
    assert ks.p_count == pytest.approx(row["p_global"]) and ks.n_null == 3
    assert ks.p_count - 1 / 4 <= ks.p_randomized <= ks.p_count
    capsys.readouterr()
    other, part = tmp_path / "other", tmp_path / "part.parquet"  # another table's pseudo-experiments as --null
    pd.read_parquet(small_tables["small"]).iloc[:15_000].to_parquet(part)
    assert cli(["hunt", "--features", str(part), "--sr", "3.3:3.7",
                "--sr", "3.9:4.3", "--generator-option", "epochs=2", "--fit-toys", "0", "--efficiency", "0.01",
                "--seed", "1", "--no-plots", "--null", str(out / "null-toys"), "--out", str(other)]) == 0  # fmt: skip
    label = json.loads((other / "summary.json").read_text())["calibration"]["cathode"]
    assert label.startswith("uncalibrated for this data"), label


def test_lacathode_latent_space_is_normal_for_sr_background(shipped):
    """LaCATHODE's premise: CATHODE's flow, trained on the sidebands 2.9-3.3 and 3.7-4.1 TeV of 100k QCD events
    (features mj1, delta_mj, tau21_j1, tau21_j2: the masses move with mjj), maps held-out QCD in the 3.3-3.7 TeV SR,
    at its own masses, onto N(0, I): per dimension mean within 0.1 and standard deviation within 0.1 of 1."""
    from anomalyhunt.analysis.injection import feature_matrix, mjj_tev
    from anomalyhunt.analysis.references import latent_reference
    from anomalyhunt.analysis.regions import Regions
    from anomalyhunt.models.cathode import Cathode

    qcd = shipped[0]
    features = ["mj1", "delta_mj", "tau21_j1", "tau21_j2"]
    train, held = qcd.iloc[:100_000], qcd.iloc[100_000:200_000]
    x, m = feature_matrix(train, features, "qcd"), mjj_tev(train, "qcd")
    regions = Regions((3.3, 3.7), 0.4)
    ref = latent_reference(Cathode(epochs=10), x, m, regions, 1000, seed=0)
    xh, mh = feature_matrix(held, features, "held-out"), mjj_tev(held, "held-out")
    sr = regions.sr_mask(mh)
    z = ref.features(xh[sr], mh[sr])
    assert np.all(np.abs(z.mean(axis=0)) < 0.1) and np.all(np.abs(z.std(axis=0) - 1) < 0.1), (z.mean(0), z.std(0))
    assert ref.x.shape == (1000, 4) and np.all((ref.m >= 3.3) & (ref.m <= 3.7))


def test_template_ensemble_gives_the_direct_estimate_its_retraining_error(small_tables, tmp_path):
    """`hunt --template-ensemble 2`: CATHODE trained twice (other seeds) per window; hunt.csv carries the
    spread of their pass fractions as the direct estimate's template error, and the two trainings differ (a spread
    of zero would mean one model copied). One cut level (1%) besides no cut: the spread is checked per window."""
    base = ["hunt", "--features", str(small_tables["data"]), "--sr", "3.3:3.7", "--sr", "3.9:4.3",
            "--generator-option", "epochs=2", "--fit-toys", "0", "--efficiency", "0.01", "--no-plots"]  # fmt: skip
    assert cli([*base, "--template-ensemble", "2", "--out", str(tmp_path / "ens")]) == 0
    cut = pd.read_csv(tmp_path / "ens" / "hunt.csv").query("efficiency < 1")
    assert cut.expected_direct_template.gt(0).all()  # (one training has none: tests/test_direct.py)
    assert np.isfinite(cut.z_direct).all()
    config = json.loads((tmp_path / "ens" / "config.json").read_text())
    assert config["config"]["template_ensemble"] == 2


def test_report_notes_sigma_windows_interpolated_from_the_trigger_turn_on():
    """SIGMA's default masses for 3.0-3.4 TeV are 2.2 / 2.6 / 3.8 / 4.2 TeV: the nearest below, 2.6, lies in a
    turn-on ending at 2.8 TeV (background-only local Z mean -3.7 at the 10% cut, README); 3.4-3.8 TeV (nearest
    below 3.0) is not flagged, nor another method, nor masses the analyst moved above the turn-on."""
    from anomalyhunt.commands.hunt import turn_on_note

    windows = [(3.0, 3.4), (3.4, 3.8), (3.8, 4.2)]
    note = turn_on_note(["cathode", "sigma"], windows, 2.8)
    assert len(note) == 1 and "SR 3-3.4 TeV from 2.6 TeV" in note[0] and "3.4-3.8" not in note[0]
    assert turn_on_note(["cathode"], windows, 2.8) == []
    assert turn_on_note(["sigma"], windows, 2.6) == []
    assert turn_on_note(["sigma"], windows[:1], 2.8, {"sigma": {"interp_masses": [2.8, 2.9, 3.8, 4.2]}}) == []


def test_report_notes_the_dispersion_of_jet_mass_inputs_on_large_samples(tmp_path):
    """A large hunt with inputs that change with mjj, the classifier trained on the SR, no null pseudo-experiments
    of its own data and a method not measured calibrated at full size (or trained more lightly than its default)
    says so (the full-size replica calibration, README); CATHODE at its defaults, decorrelated inputs, small
    samples, a classifier trained across the window and a calibrating null study do not."""
    from anomalyhunt.analysis.hunt import NullStudy
    from anomalyhunt.commands.hunt import dispersion_note

    light = {"cathode": {"epochs": 8}}  # the demo's training, over-dispersed at full size (1.36)
    note = dispersion_note(["mj1", "delta_mj"], 245_000, None, "sr", ["cathode"], light)
    assert note[0].startswith("Inputs mj1, delta_mj change with mjj") and "of cathode with" in note[0]
    assert dispersion_note(["mj1", "delta_mj"], 245_000, None, "sr", ["cathode"], {}) == []  # defaults: 1.21
    assert "of sigma, lacathode" in dispersion_note(["mj1"], 245_000, None, "sr", ["cathode", "sigma", "lacathode"],
                                                    {})[0]  # not measured at full size with these inputs
    assert dispersion_note(["mj1", "delta_mj"], 245_000, None, "window", ["cathode"], light) == []  # 1.19
    # SIGMA trained across the window is calibrated with its sideband masses interpolated as the SR centre (the
    # default), not with the SR's own polynomial (README: 1.12 against 1.44)
    assert dispersion_note(["mj1"], 245_000, None, "window", ["cathode", "sigma"], {}) == []
    # `hunt`'s default, auto: each method where it is calibrated (CATHODE on the SR, SIGMA across the window)
    assert dispersion_note(["mj1"], 245_000, None, "auto", ["cathode", "sigma"], {}) == []
    assert "of lacathode with the classifier trained on the SR" in dispersion_note(
        ["mj1"], 245_000, None, "auto", ["sigma", "lacathode"], {})[0]
    assert "of sigma with the classifier trained on SR and sidebands" in dispersion_note(
        ["mj1"], 245_000, None, "window", ["cathode", "sigma"], {"sigma": {"sideband_nodes": "sr"}})[0]
    assert dispersion_note([], 245_000, None, "sr", ["cathode"], light) == []
    assert dispersion_note(["mj1"], 50_000, None, "sr", ["cathode"], light) == []
    own = NullStudy(tmp_path, None, {}, "toys", calibrates=True)
    assert dispersion_note(["mj1"], 245_000, own, "sr", ["cathode"], light) == []
    assert dispersion_note(["mj1"], 245_000, NullStudy(tmp_path, None, {}, "elsewhere"), "sr", ["cathode"], light)
