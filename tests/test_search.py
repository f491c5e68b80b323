"""Signal injection, k-fold CWoLa, classifiers, template fidelity and the search pipeline.

Toy tables check bookkeeping exactly; the recorded LHCO-like sample (``lhco_dir``) checks the physics: at
S/sqrt(B) = 4 in the 3.3-3.7 TeV SR the idealized detector must find the W' signal, the supervised one more so,
CWoLa hunting less, and without signal the idealized detector must find nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from anomalyhunt.analysis import fidelity
from anomalyhunt.models.kfold import kfold_classify
from anomalyhunt.analysis.injection import (
    DEFAULT_FEATURES,
    check_feature_columns,
    feature_matrix,
    inject_signal,
    mjj_tev,
)
from anomalyhunt.analysis.regions import Regions
from anomalyhunt.analysis.search import (
    SearchConfig,
    group_runs,
    make_sample,
    make_search_generator,
    run_search,
    run_searches,
)
from anomalyhunt.errors import ConfigError, InputError
from anomalyhunt.features import NON_INPUT_COLUMNS
from anomalyhunt.models.base import DISCRIMINATORS, Discriminator

# ------------------------------------------------------------------------------------------------------------------
# toy data
# ------------------------------------------------------------------------------------------------------------------


def toy_table(n_bkg: int, n_sig: int, seed: int = 0) -> pd.DataFrame:
    """Falling m_jj background with broad features; a narrow 3.5 TeV signal with distinct jet masses (GeV)."""
    rng = np.random.default_rng(seed)
    bkg = {
        "mjj": 2000 + rng.exponential(800, n_bkg),
        "mj1": np.abs(rng.normal(150, 60, n_bkg)),
        "delta_mj": np.abs(rng.normal(150, 100, n_bkg)),
        "tau21_j1": rng.uniform(0.2, 1.0, n_bkg),
        "tau21_j2": rng.uniform(0.2, 1.0, n_bkg),
        "delta_r": rng.normal(3.2, 0.3, n_bkg),
    }
    sig = {
        "mjj": rng.normal(3500, 60, n_sig),
        "mj1": rng.normal(100, 10, n_sig),
        "delta_mj": rng.normal(400, 20, n_sig),
        "tau21_j1": rng.normal(0.3, 0.05, n_sig),
        "tau21_j2": rng.normal(0.3, 0.05, n_sig),
        "delta_r": rng.normal(3.2, 0.3, n_sig),
    }
    df = pd.concat([pd.DataFrame(bkg).assign(label=0), pd.DataFrame(sig).assign(label=1)], ignore_index=True)
    df["event"] = np.arange(len(df))
    return df


@pytest.fixture(scope="module")
def toy() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = toy_table(40_000, 3_000)
    return df[df.label == 0].reset_index(drop=True), df[df.label == 1].reset_index(drop=True)


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "toy.parquet"
    toy_table(40_000, 3_000).to_parquet(path)
    return path


# ------------------------------------------------------------------------------------------------------------------
# injection
# ------------------------------------------------------------------------------------------------------------------


def test_injection_counts_are_exact_and_sets_disjoint(toy) -> None:
    bkg, sig = toy
    regions = Regions()
    s = inject_signal(bkg, sig, regions=regions, n_signal=300, seed=7, background_events=30_000)
    rows = s.rows
    # The three background parts and the two signal parts never share an event.
    assert not set(rows["data_bkg"]) & set(rows["test_bkg"])
    assert not set(rows["data_bkg"]) & set(rows["ideal_bkg"])
    assert not set(rows["test_bkg"]) & set(rows["ideal_bkg"])
    assert not set(rows["data_sig"]) & set(rows["test_sig"])
    assert len(rows["data_bkg"]) == 30_000 - 2 * 6_000  # 20 % test, 20 % idealized
    # Exactly N signal events in the data; S and B counted from the source tables.
    assert len(s.m) == len(rows["data_bkg"]) + 300 and s.is_signal.sum() == 300 and s.n_injected == 300
    m_b, m_s = mjj_tev(bkg), mjj_tev(sig)
    st = s.stats()
    assert st["S"] == regions.sr_mask(m_s[rows["data_sig"]]).sum()
    assert st["B"] == regions.sr_mask(m_b[rows["data_bkg"]]).sum()
    assert st["S/sqrt(B)"] == pytest.approx(st["S"] / np.sqrt(st["B"]))
    # Data are the table rows themselves (masses in TeV), shuffled.
    np.testing.assert_allclose(np.sort(s.m), np.sort(np.concatenate([m_b[rows["data_bkg"]], m_s[rows["data_sig"]]])))
    # Test and idealized sets are SR-only and labelled.
    assert regions.sr_mask(s.m_test).all() and regions.sr_mask(s.m_ideal).all()
    assert (s.y_test == 1).sum() == len(rows["test_sig"]) and (s.y_test == 0).sum() == len(rows["test_bkg"])
    assert len(rows["test_sig"]) == regions.sr_mask(np.delete(m_s, rows["data_sig"])).sum()


def test_reserved_signal_is_disjoint_from_injected_and_test(toy) -> None:
    bkg, sig = toy
    regions = Regions()
    plain = inject_signal(bkg, sig, n_signal=300, seed=7, test_signal_events=1000)
    s = inject_signal(bkg, sig, n_signal=300, seed=7, test_signal_events=1000, reserve_signal_events=800)
    rows = s.rows
    reserved = set(rows["reserved_sig"])
    assert len(reserved) == 800 == len(s.x_reserved) and s.stats()["n_reserved_signal"] == 800
    assert not reserved & set(rows["data_sig"]) and not reserved & set(rows["test_sig"])
    assert regions.sr_mask(s.m_reserved).all()
    np.testing.assert_array_equal(s.x_reserved, feature_matrix(sig.iloc[rows["reserved_sig"]], DEFAULT_FEATURES))
    # A reserve that fits beside a capped test set leaves data and test set exactly as without one.
    np.testing.assert_array_equal(s.x, plain.x)
    np.testing.assert_array_equal(s.x_test, plain.x_test)
    # Uncapped, the test set is every other SR signal event that was not injected.
    full = inject_signal(bkg, sig, n_signal=300, seed=7, reserve_signal_events=800)
    m_s = mjj_tev(sig)
    left = regions.sr_mask(np.delete(m_s, full.rows["data_sig"])).sum()
    assert len(full.rows["test_sig"]) == left - 800
    assert not set(full.rows["test_sig"]) & set(full.rows["reserved_sig"])
    # At most half of what is left after injection; more is one line naming the numbers, or no reserve at all.
    with pytest.raises(InputError, match=f"3000 SR signal events requested .* at most {left // 2} available"):
        inject_signal(bkg, sig, n_signal=300, seed=7, reserve_signal_events=3000)
    none = inject_signal(bkg, sig, n_signal=300, seed=7, reserve_signal_events=3000, reserve_optional=True)
    assert none.stats()["n_reserved_signal"] == 0 and len(none.rows["test_sig"]) == left


def test_injection_reproduces_by_seed(toy) -> None:
    bkg, sig = toy
    a = inject_signal(bkg, sig, n_signal=100, seed=1)
    b = inject_signal(bkg, sig, n_signal=100, seed=1)
    c = inject_signal(bkg, sig, n_signal=100, seed=2)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.rows["data_sig"], c.rows["data_sig"])
    # The data do not depend on the SR (one seed, one data set for every window).
    d = inject_signal(bkg, sig, n_signal=100, seed=1, regions=Regions((3.0, 3.4)))
    np.testing.assert_array_equal(a.x, d.x)


def test_injection_zero_signal_significance_and_limits(toy) -> None:
    bkg, sig = toy
    zero = inject_signal(bkg, sig, n_signal=0, seed=0)
    assert zero.stats()["S"] == 0 and zero.is_signal.sum() == 0
    z = inject_signal(bkg, sig, significance=3.0, seed=0)
    # Nearly all toy signal is in the SR, so S/sqrt(B) lands on the target up to binomial noise.
    assert z.stats()["S/sqrt(B)"] == pytest.approx(3.0, abs=0.15)
    capped = inject_signal(bkg, sig, n_signal=0, seed=0, test_signal_events=500)
    assert (capped.y_test == 1).sum() == 500
    with pytest.raises(InputError, match="3001 signal events requested"):
        inject_signal(bkg, sig, n_signal=3001)
    with pytest.raises(ConfigError, match="exactly one"):
        inject_signal(bkg, sig)
    with pytest.raises(InputError, match="SR test set"):
        inject_signal(bkg, sig, n_signal=0, regions=Regions((9.0, 9.5)))


def test_forbidden_and_missing_inputs_are_refused(toy) -> None:
    bkg, sig = toy
    for col in NON_INPUT_COLUMNS:
        with pytest.raises(InputError, match=col):
            check_feature_columns(["mj1", col])
    with pytest.raises(InputError, match="mjj"):
        inject_signal(bkg, sig, n_signal=10, features=("mj1", "mjj"))
    with pytest.raises(InputError, match="label"):
        SearchConfig(features=("mj1", "label"))
    with pytest.raises(InputError, match=r"missing feature columns \['tau32_j1'\]"):
        check_feature_columns(["mj1", "tau32_j1"], bkg, "toy.parquet")
    x = feature_matrix(bkg.iloc[:3], DEFAULT_FEATURES)
    np.testing.assert_allclose(x[:, 0], bkg["mj1"].to_numpy()[:3] / 1000)  # GeV -> TeV
    np.testing.assert_allclose(x[:, 2], bkg["tau21_j1"].to_numpy()[:3])  # ratios unchanged


# ------------------------------------------------------------------------------------------------------------------
# k-fold and classifiers
# ------------------------------------------------------------------------------------------------------------------


class Memorizer(Discriminator):
    """Scores 1 for an event it was trained on, 0 otherwise: any leak shows up as a non-zero out-of-fold score."""

    trained: list[set[bytes]] = []

    def fit(self, x, y, sample_weight=None):
        self.seen = {row.tobytes() for row in np.ascontiguousarray(x)}
        Memorizer.trained.append(self.seen)
        return self

    def score(self, x):
        return np.array([float(row.tobytes() in self.seen) for row in np.ascontiguousarray(x)])


def test_kfold_never_scores_an_event_with_a_model_that_saw_it() -> None:
    rng = np.random.default_rng(0)
    x1, x0 = rng.normal(size=(103, 3)), rng.normal(size=(250, 3))
    Memorizer.trained = []
    r = kfold_classify(x1, x0, x_test=x1, classifier=lambda seed: Memorizer(), folds=5, seed=3)
    assert len(Memorizer.trained) == 5
    assert (r.scores_1 == 0).all() and (r.scores_0 == 0).all()
    # Each event is in the training set of the other 4 models: the fold-averaged test score is exactly 4/5.
    np.testing.assert_allclose(r.test_scores, 0.8)
    for rows, fold in ((x1, r.fold_1), (x0, r.fold_0)):
        counts = np.bincount(fold, minlength=5)
        assert counts.max() - counts.min() <= 1
        for k in range(5):
            seen = Memorizer.trained[k]
            assert all((row.tobytes() in seen) == (f != k) for row, f in zip(rows, fold))


def test_kfold_keeps_copies_of_an_event_in_one_fold_with_their_count() -> None:
    """A template that repeats events (SALAD's weighted draws): no copy may be scored by a model that trained on
    another copy, every copy gets its event's score and fold, and the copies count as the event's weight."""
    rng = np.random.default_rng(1)
    x1, pool = rng.normal(size=(103, 3)), rng.normal(size=(40, 3))
    x0 = pool[rng.integers(0, len(pool), 250)]
    weights: list[np.ndarray] = []

    class Weighed(Memorizer):
        def fit(self, x, y, sample_weight=None):
            weights.append(np.asarray(sample_weight)[np.asarray(y) == 0])
            return super().fit(x, y, sample_weight)

    Memorizer.trained = []
    r = kfold_classify(x1, x0, w0=np.full(len(x0), 0.5), classifier=lambda seed: Weighed(), folds=5, seed=3)
    assert (r.scores_0 == 0).all() and (r.scores_1 == 0).all()
    for k in range(5):
        assert not any(row.tobytes() in Memorizer.trained[k] for row in x0[r.fold_0 == k])
    for row in pool:
        same = (x0 == row).all(axis=1)
        if same.any():
            assert len(set(r.fold_0[same])) == 1
    # Each training set holds the distinct events of 4 folds, each weighted 0.5 x its number of copies.
    np.testing.assert_allclose(sum(w.sum() for w in weights), 4 * 0.5 * len(x0))
    assert all(len(w) <= len(pool) for w in weights)


@pytest.mark.parametrize("name,config", [("hgb", {"n_ensemble": 2}), ("mlp", {"n_ensemble": 2, "epochs": 15})])
def test_classifiers_reach_the_bayes_auc(name: str, config: dict) -> None:
    """Two 2-d unit Gaussians a distance sqrt(2) apart: the best AUC is Phi(1) = 0.841; with 4:1 class imbalance
    (balanced by weights) both ensembles must get within 0.015 of it on independent events."""
    rng = np.random.default_rng(5)

    def draw(n_b: int, n_s: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([rng.normal(0, 1, (n_b, 2)), rng.normal(1, 1, (n_s, 2))])
        return x, np.concatenate([np.zeros(n_b), np.ones(n_s)])

    x, y = draw(8000, 2000)
    xt, yt = draw(20_000, 20_000)
    clf = DISCRIMINATORS.get(name)(**config, seed=1).fit(x, y)
    s = clf.score(xt)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(yt, s) == pytest.approx(norm.cdf(1.0), abs=0.015)
    # Balanced weights: the mean score of a 50/50 test set sits near 0.5, not near the 20 % training prior.
    assert 0.4 < s.mean() < 0.6


# ------------------------------------------------------------------------------------------------------------------
# the pipeline on toy data (fast): sync vs Dask, CLI, bench
# ------------------------------------------------------------------------------------------------------------------

TOY_RUN = dict(n_signal=150, folds=3, classifier_config={"n_ensemble": 2}, template_auc=True)


def test_run_search_is_reproducible_across_dask_workers(toy_file: Path) -> None:
    cfgs = [SearchConfig(method=m, background=(str(toy_file),), seed=4, **TOY_RUN) for m in ("idealized", "cwola")]
    local = [run_search(c) for c in cfgs]
    remote = run_searches(cfgs, workers=1)
    for a, b in zip(local, remote):
        assert b["method"] == a["method"] and b["max_sic"] == pytest.approx(a["max_sic"], rel=1e-12)
    ideal, cw = local
    # The toy signal is trivially separable: well above the best possible SIC of a random cut (1).
    assert ideal["max_sic"] > 3 and cw["max_sic"] > 2
    # The idealized reference is true background: indistinguishable from the test background.
    assert abs(ideal["template_auc"] - 0.5) < 0.05 and cw["template_auc"] is None
    assert ideal["n_reference"] <= 4 * ideal["n_data_sr"]


def overlapping_toy_table(seed: int = 0) -> pd.DataFrame:
    """:func:`toy_table` with a signal a fraction of a background width away in each feature, so that at
    S/sqrt(B) = 2 the weakly supervised detector has little to learn from and a supervised one much."""
    df = toy_table(40_000, 3_000, seed)
    rng = np.random.default_rng(seed + 5)
    sig = (df.label == 1).to_numpy()
    n = int(sig.sum())
    df.loc[sig, "mj1"] = np.abs(rng.normal(110, 30, n))
    df.loc[sig, "delta_mj"] = np.abs(rng.normal(260, 60, n))
    df.loc[sig, "tau21_j1"] = rng.uniform(0.2, 0.6, n)
    df.loc[sig, "tau21_j2"] = rng.uniform(0.2, 0.8, n)
    return df


def test_supervised_reference_trains_on_reserved_signal_and_beats_idealized(tmp_path: Path) -> None:
    path = tmp_path / "overlap.parquet"
    overlapping_toy_table().to_parquet(path)
    base = {"background": (str(path),), "significance": 2.0, "folds": 3, "classifier_config": {"n_ensemble": 2},
            "supervised_signal_events": 1000, "template_auc": False, "plots": False}
    ideal, sup = (run_search(SearchConfig(method=m, seed=0, **base)) for m in ("idealized", "supervised"))
    # One test set for both: the same SR events, with the same 1000 reserved signal events left out of it.
    a, b = (make_sample(SearchConfig(method=m, seed=0, **base)) for m in ("idealized", "supervised"))
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.rows["reserved_sig"], b.rows["reserved_sig"])
    assert ideal["n_reserved_signal"] == sup["n_reserved_signal"] == 1000
    assert sup["config"]["supervised_signal_events"] == 1000
    assert ideal["S"] == sup["S"] and 80 <= sup["S"] <= 95  # S/sqrt(B) = 2 on ~1.8k SR background
    # Measured (seeds 0, 1, 2): supervised max SIC 3.10 / 3.21 / 2.97 (AUC 0.96), idealized 1.00 / 1.01 / 1.29
    # (AUC 0.60-0.77): the ~87 injected events teach the idealized detector little, the reserve the supervised much.
    assert sup["max_sic"] > 2.5 and sup["auc"] > 0.93
    assert ideal["max_sic"] < sup["max_sic"] - 1.0
    # Too large a reserve is one line for the supervised reference; the other methods run without one.
    with pytest.raises(InputError, match="SR signal events requested for the supervised reference"):
        run_search(SearchConfig(method="supervised", seed=0, **{**base, "supervised_signal_events": 2500}))
    none = run_search(SearchConfig(method="idealized", seed=0, **{**base, "supervised_signal_events": 2500}))
    assert none["n_reserved_signal"] == 0 and none["n_test_signal"] == ideal["n_test_signal"] + 1000


def test_search_cli_writes_results(toy_file: Path, tmp_path: Path, capsys) -> None:
    from anomalyhunt.cli import main

    out = tmp_path / "out"
    rc = main([
        "search", "--features", str(toy_file), "--method", "idealized", "--method", "supervised", "--sr", "3.3:3.7",
        "--signal-events", "150", "--seed", "0", "--seed", "1", "--folds", "3", "--classifier-option", "n_ensemble=2",
        "--supervised-signal-events", "1000", "--scheduler", "sync", "--out", str(out), "--quiet",
    ])
    assert rc == 0
    payload = json.loads((out / "results.json").read_text())
    assert len(payload["runs"]) == 4 and {r["method"] for r in payload["runs"]} == {"idealized", "supervised"}
    summary = {row["method"]: row for row in payload["summary"]}
    assert summary["supervised"]["max_sic"]["median"] > 3 and summary["idealized"]["max_sic"]["n"] == 2
    assert {r["n_reserved_signal"] for r in payload["runs"]} == {1000}
    run = out / "idealized_sr3.3-3.7_n150_seed1"
    for name in ("results.json", "config.json", "scores.parquet", "performance.png", "performance.pdf"):
        assert (run / name).is_file(), name
    scores = pd.read_parquet(run / "scores.parquet")
    assert set(scores["set"]) == {"test", "data"} and scores["score"].between(0, 1).all()
    assert list(out.glob("performance_sr3.3-3.7_*.png"))
    assert "idealized" in capsys.readouterr().out

    # Bad input is one clear line naming the problem.
    assert main(["search", "--features", str(tmp_path / "nope.h5"), "--scheduler", "sync", "--quiet"]) == 1
    assert "nope.h5: file does not exist" in capsys.readouterr().err


def test_search_hands_a_simulation_to_the_generators_that_learn_from_one(toy_file: Path, tmp_path: Path,
                                                                          capsys) -> None:  # fmt: skip
    """``search --method salad --simulation FILE``: the simulation goes to SALAD (and is recorded with its run, not
    with the idealized one's); without it, or with the data's own events as simulation, one line before any work.
    The simulation here is other events of the toy's background distribution, so SALAD's template (simulation
    reweighted to the sideband data) matches the SR background: measured template AUC 0.51."""
    from anomalyhunt.cli import main
    from anomalyhunt.commands.search import expand

    sim = tmp_path / "sim.parquet"
    toy_table(40_000, 0, seed=5).to_parquet(sim)
    base = ["search", "--features", str(toy_file), "--sr", "3.3:3.7", "--signal-events", "150", "--seed", "0",
            "--folds", "3", "--classifier-option", "n_ensemble=2", "--scheduler", "sync", "--quiet", "--no-plots"]
    assert main(base + ["--method", "salad", "--out", str(tmp_path / "none")]) == 1
    assert "salad learns from a background simulation: give --simulation" in capsys.readouterr().err
    assert main(base + ["--method", "salad", "--simulation", str(toy_file), "--out", str(tmp_path / "own")]) == 1
    err = capsys.readouterr().err
    assert "and the simulation" in err and "appear twice" in err and len(err.strip().splitlines()) == 1

    out = tmp_path / "out"
    assert main(base + ["--method", "salad", "--simulation", str(sim), "--out", str(out)]) == 0
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["config"]["simulation"] == str(sim)
    print(f"SALAD template AUC against the true SR background: {run['template_auc']:.3f}")
    assert run["template_auc"] < 0.56
    # Only a generator's run carries the simulation.
    configs = expand({"methods": ["salad", "idealized"], "simulation": str(sim)}, tmp_path / "x")
    assert [c.simulation for c in configs] == [str(sim), None]


def test_bench_search_quick(toy_file: Path, tmp_path: Path, capsys) -> None:
    from anomalyhunt.cli import main
    from anomalyhunt.commands.bench import BENCHMARKS

    assert "search" in BENCHMARKS
    out = tmp_path / "bench"
    args = ["bench", "search", "--quick", "--features", str(toy_file), "--method", "idealized",
            "--background-events", "40000", "--significance", "5", "--classifier-option", "n_ensemble=2",
            "--scheduler", "sync", "--out", str(out), "--quiet", "--no-plots"]  # fmt: skip
    assert main(args) == 0
    first = json.loads((out / "bench.json").read_text())
    capsys.readouterr()
    # Run in parts: a second method into the same OUT keeps the finished runs of the first.
    assert main([*args, "--method", "cwola"]) == 0
    bench = json.loads((out / "bench.json").read_text())
    rows = {r["method"]: r for r in bench["methods"]}
    assert rows["idealized"]["ratio_to_idealized"] == pytest.approx(1.0)
    assert rows["idealized"]["max_sic"] == first["methods"][0]["max_sic"]
    assert rows["cwola"]["seeds"] == 2 and rows["cwola"]["seconds_per_sr"] > 0
    assert bench["control_template_auc"]["n"] == 2
    printed = capsys.readouterr().out
    assert "resuming: 2 of 4 runs" in printed and "vs idealized" in printed


def test_equal_size_yardstick_uses_the_idealized_reference_size(toy_file: Path) -> None:
    """`equal_size`: a template method is also scored with its template cut to the idealized reference's size, so
    that its ratio to the idealized detector compares references of equal size (RAD-OT: nothing to train)."""
    from anomalyhunt.analysis.search import run_search

    common = {"background": (str(toy_file),), "seed": 2, "plots": False, "template_auc": False}
    ideal = run_search(SearchConfig(method="idealized", **common))
    rad = run_search(SearchConfig(method="rad-ot", equal_size=True, **common))
    assert rad["n_reference"] > 2 * ideal["n_reference"]  # the full template is larger than the held-out pool
    assert rad["n_reference_equal_size"] == ideal["n_reference"]
    assert 0 < rad["max_sic_equal_size"] < 50 and "max_sic_equal_size" not in ideal


#: A SIGMA small enough for toy runs (its numbers are not the point here, the bookkeeping is).
SIGMA_TOY = {"epochs": 2, "patience": None, "hidden": 32, "n_blocks": 2, "n_steps": 2}


def test_sigma_trains_once_for_all_srs(toy_file: Path) -> None:
    srs = [(3.3, 3.7), (3.1, 3.5), (3.5, 3.9)]
    common = dict(background=(str(toy_file),), seed=2, **TOY_RUN)
    sigma = [SearchConfig(method="sigma", sr=sr, generator_config=SIGMA_TOY, **common) for sr in srs]
    others = [
        SearchConfig(method="sigma-cr", sr=srs[0], generator_config=SIGMA_TOY, **common),  # v^CR: masks its SR
        SearchConfig(method="sigma-cr", sr=srs[1], generator_config=SIGMA_TOY, **common),
        SearchConfig(method="sigma", sr=srs[1], generator_config=SIGMA_TOY, **{**common, "seed": 3}),  # other data
        SearchConfig(method="cathode", sr=srs[1], **common),  # trains on the sidebands of its SR
        # N from each SR's background: the data differ per SR, nothing to share.
        SearchConfig(method="sigma", sr=srs[1], generator_config=SIGMA_TOY,
                     **{**common, "n_signal": None, "significance": 3.0}),
    ]
    assert group_runs(sigma + others) == [[0, 1, 2], [3], [4], [5], [6], [7]]
    cr = make_search_generator(others[1]).config
    assert cr["mask_sr"] is True and cr["sr"] == [3.1, 3.5] and cr["interpolation"] == "none"

    # S/sqrt(B) injection over several SRs says that it cannot share (before any work: the file does not exist).
    per_sr = [SearchConfig(method="sigma", sr=sr, background=(str(toy_file.with_name("none.h5")),),
                           significance=3.0) for sr in srs]
    with pytest.warns(UserWarning, match="trained again for each SR"), pytest.raises(InputError, match="none.h5"):
        run_searches(per_sr, scheduler="sync")

    sync = run_searches(sigma, scheduler="sync")
    dask = run_searches(sigma, workers=1)
    for res in (sync, dask):
        assert res[0]["fit_shared"] is False and res[0]["seconds_fit"] > 0
        for r in res[1:]:
            # Later SRs only sample: no fit time of their own, the first SR's model.
            assert r["fit_shared"] is True and r["seconds_fit"] == 0.0 and r["seconds_sample"] > 0
            assert r["seconds_fit_model"] == res[0]["seconds_fit_model"]
            assert r["n_reference"] == 3 * r["n_data_sr"]
    # Sharing changes the cost, not the result: the same numbers as a run that trains on its own.
    alone = run_search(sigma[2])
    assert alone["fit_shared"] is False
    for res in (sync, dask):
        assert res[2]["max_sic"] == pytest.approx(alone["max_sic"], rel=1e-9)
        assert res[2]["template_auc"] == pytest.approx(alone["template_auc"], rel=1e-9)


def test_bench_search_measures_cost_per_extra_sr(toy_file: Path, tmp_path: Path, capsys) -> None:
    from anomalyhunt.cli import main

    cfg = tmp_path / "bench.yaml"
    toy = {k: v for k, v in SIGMA_TOY.items() if k != "n_steps"}
    cfg.write_text(f"generator_config: {{sigma: {json.dumps(toy)}}}\n")
    out = tmp_path / "bench"
    rc = main([
        "bench", "search", "--quick", "--config", str(cfg), "--features", str(toy_file), "--method", "idealized",
        "--method", "sigma", "--method", "sigma-cr", "--generator-option", "n_steps=2", "--seed", "0",
        "--extra-srs", "2", "--background-events", "40000", "--classifier-option", "n_ensemble=2",
        "--scheduler", "sync", "--out", str(out), "--quiet", "--no-plots",
    ])
    assert rc == 0
    payload = json.loads((out / "bench.json").read_text())
    rows = {r["method"]: r for r in payload["methods"]}
    # --quick injects to S/sqrt(B) = 4, turned into one N for every SR so that SIGMA's data do not depend on it.
    assert payload["notes"] and "injected events" in payload["notes"][0]
    assert rows["sigma"]["per_sr_measured"] and rows["sigma"]["n_extra_srs"] == 2
    assert rows["sigma"]["fit_shared_in_extra_srs"] is True and rows["sigma-cr"]["fit_shared_in_extra_srs"] is False
    extra = {(r["method"], tuple(r["sr"])): r for r in payload["extra_sr_runs"]}
    assert set(extra) == {(m, sr) for m in ("sigma", "sigma-cr") for sr in ((3.1, 3.5), (3.5, 3.9))}
    for sr in ((3.1, 3.5), (3.5, 3.9)):
        assert extra[("sigma", sr)]["seconds_fit"] == 0.0 and extra[("sigma-cr", sr)]["seconds_fit"] > 0
        assert extra[("sigma", sr)]["n_signal"] == extra[("sigma-cr", sr)]["n_signal"] > 0
    assert rows["sigma"]["seconds_template_per_sr"] == pytest.approx(
        np.median([extra[("sigma", sr)]["seconds_sample"] for sr in ((3.1, 3.5), (3.5, 3.9))]))
    (ratio,) = payload["cost_ratios"]
    assert ratio["method"] == "sigma" and ratio["reference"] == "sigma-cr" and ratio["template_ratio"] > 0
    # The main table holds the first SR only; --generator-option reached SIGMA next to its per-generator config.
    assert rows["sigma"]["seeds"] == 1 and rows["sigma"]["n_template"] > 0
    run = json.loads((out / "results.json").read_text())["runs"]
    assert {tuple(r["sr"]) for r in run} == {(3.3, 3.7)}
    assert {r["config"]["generator_config"].get("n_steps") for r in run if r["method"].startswith("sigma")} == {2}
    assert "sigma per additional SR" in capsys.readouterr().out


def test_every_variant_configures_its_generator() -> None:
    """Each named variant (SIGMA's interpolations, CURTAINs-for-flows' light training) builds its generator with the
    keys it forces: a key the generator does not know would be refused here, not in an hours-long bench run."""
    from anomalyhunt.analysis.search import VARIANTS, SearchConfig, make_search_generator
    from anomalyhunt.models.base import GENERATORS

    for name, (generator, forced) in VARIANTS.items():
        gen = make_search_generator(SearchConfig(method=name))
        assert isinstance(gen, GENERATORS.get(generator)), name
        assert {k: gen.config[k] for k in forced} == forced, name


def test_bench_study_claims_from_the_rows() -> None:
    """The talks' claims read off the bench rows: FETA's removed fraction of raw simulation's (AUC - 0.5), the
    CURTAINs-for-flows cost / AUC condition on both sides of its 0.01 margin, R-ANODE against ANODE."""
    from anomalyhunt.commands.bench import study_claims

    def row(method: str, auc: float | None = None, cost: float | None = None, sic: float | None = None) -> dict:
        return {"method": method, "template_auc": {"median": auc}, "seconds_per_sr": cost,
                "sic_at_0.2_lower": {"median": sic}}

    claims = study_claims([row("raw-simulation", 0.64), row("feta", 0.56), row("salad", 0.60),
                           row("curtains", 0.56, 300.0), row("curtains-f4f", 0.575, 200.0),
                           row("curtains-f4f-light", 0.565, 200.0), row("curtains-f4f-slow", 0.52, 400.0),
                           row("anode", sic=6.0), row("r-anode", sic=15.0)])  # fmt: skip
    by = {c["claim"].split()[0]: c for c in claims}
    assert by["raw"]["holds"] and by["raw"]["value"] == pytest.approx(0.64)
    assert by["feta"]["value"] == pytest.approx(1 - 0.06 / 0.14) and by["feta"]["holds"]  # 57% removed
    assert by["salad"]["value"] == pytest.approx(1 - 0.10 / 0.14) and not by["salad"]["holds"]  # 29%
    assert not by["curtains-f4f"]["holds"]  # cheaper, but 0.015 above CURTAINs' AUC
    assert by["curtains-f4f-light"]["holds"] and by["curtains-f4f-light"]["value"] == pytest.approx(2 / 3)
    assert not by["curtains-f4f-slow"]["holds"]  # better template, dearer
    assert by["r-anode"]["holds"] and by["r-anode"]["value"] == pytest.approx(2.5)
    assert study_claims([row("idealized", 0.5)]) == []


def test_bench_constituent_claims_from_the_runs() -> None:
    """``bench search --constituents``'s claims on hand-made runs: TNT's signal-driven gain is paired by seed (a gain
    that TNT shows without signal too does not count), DarkCLR against the autoencoder on both sides of 1.3x, the
    constituent DRAPES template only with a control that has power."""
    from anomalyhunt.analysis.constituent_bench import constituent_claims, summarize_constituents

    def run(method: str, seed: int, z: float, **metrics: float) -> dict:
        ae = metrics.pop("ae", None)
        refs = {"ae_scores": {"auc": ae}} if ae is not None else {}
        return {"method": method, "seed": seed, "injection": f"S/sqrt(B)={z:g}", "S/sqrt(B)": z,
                "reference_scores": refs, **metrics}

    # Gains with signal 0.06-0.08, without 0.02-0.04: per-seed differences 0.04 +- 0.003 (12 standard errors).
    tnt = [run("tnt", s, 3.0, auc=0.90 + d, ae=0.84) for s, d in enumerate((0.0, 0.01, 0.02, 0.01, 0.02))]
    tnt += [run("tnt", s, 0.0, auc=0.87 + d, ae=0.84) for s, d in enumerate((0.0, 0.0, 0.01, -0.01, 0.01))]
    others = [run("autoencoder", s, 3.0, auc=0.70, **{"rejection_at_0.2": 10.0}) for s in range(3)]
    others += [run("darkclr", s, 3.0, auc=0.72, **{"rejection_at_0.2": 12.0 + s}) for s in range(3)]
    others += [run("clr", s, 3.0, auc=0.69) for s in range(3)]
    others += [run("constituent-drapes", s, 3.0, auc=0.6, template_auc=0.53, control_template_auc=0.52)
               for s in range(3)]  # fmt: skip
    claims = {c["claim"].split()[0]: c for c in constituent_claims(tnt + others)}
    gain, d = claims["tnt's"], np.array([0.03, 0.04, 0.04, 0.05, 0.04])  # per seed: with minus without signal
    assert gain["mean"] == pytest.approx(d.mean()) and gain["seeds"] == 5 and gain["holds"]
    assert gain["value"] == pytest.approx(d.mean() / (d.std(ddof=1) / np.sqrt(5)))
    assert claims["darkclr's"]["value"] == pytest.approx(1.3) and claims["darkclr's"]["holds"]  # median 13 / 10
    assert claims["clr's"]["value"] == pytest.approx(-0.01) and not claims["clr's"]["holds"]
    assert not claims["constituent-drapes"]["holds"]  # template fine, but the control has no power
    # Without signal-free runs of the same seeds there is nothing to subtract: no TNT claim.
    assert not [c for c in constituent_claims(tnt[:5]) if c["claim"].startswith("tnt")]
    rows = {(r["method"], r["injection"]): r for r in summarize_constituents(tnt)}
    assert rows[("tnt: ae_scores", "S/sqrt(B)=3")]["auc"]["median"] == pytest.approx(0.84)
    assert rows[("tnt", "S/sqrt(B)=0")]["seeds"] == 5


def test_drapes_scan_depth_and_seed_source(toy_file: Path, tmp_path: Path, capsys) -> None:
    """Toy background features do not depend on mjj, so barely noised sideband events are a perfect template (a
    strong search), while barely noised SR events copy the signal into the template (nothing left to find). This
    checks the scan's plumbing and seed sources; both ends with mass-dependent features are
    ``test_generators.py::test_drapes_sigma_prime_ends_with_mass_dependent_features``."""
    from anomalyhunt.analysis.drapes_scan import drapes_scan
    from anomalyhunt.cli import main

    out = tmp_path / "scan"
    rc = main([
        "bench", "drapes-scan", "--features", str(toy_file), "--signal-events", "150", "--seed", "1", "--folds", "3",
        "--classifier-option", "n_ensemble=2", "--generator-option", "epochs=2", "--generator-option", "hidden=32",
        "--generator-option", "n_steps=4", "--generator-option", "patience=null", "--sigma-prime", "0.01",
        "--sigma-prime", "80", "--scheduler", "sync", "--out", str(out), "--quiet",
    ])
    assert rc == 0
    payload = json.loads((out / "drapes_scan.json").read_text())
    (scan,) = payload["scans"]
    assert scan["sigma_prime"] == [0.01, 80.0] and scan["seed_source"] == "sidebands"
    assert len(scan["max_sic"]) == len(scan["template_auc"]) == 2
    assert (out / "drapes_scan.png").is_file() and "DRAPES sigma' scan" in capsys.readouterr().out
    # Measured: max SIC 3.57 and template AUC 0.506 at sigma' = 0.01 (SR seeds: 1.00); at sigma' = 80 two epochs of
    # training give a useless template (AUC 0.995, SIC 1.0).
    assert scan["max_sic"][0] > 2.5 and abs(scan["template_auc"][0] - 0.5) < 0.05

    sr_seeded = drapes_scan(SearchConfig(
        method="drapes", background=(str(toy_file),), seed=1, **TOY_RUN,
        generator_config={"epochs": 2, "hidden": 32, "n_steps": 4, "patience": None, "seed_source": "sr"},
    ), [0.01])
    assert sr_seeded["max_sic"][0] < 0.5 * scan["max_sic"][0]
    with pytest.raises(ConfigError, match="method must be 'drapes'"):
        drapes_scan(SearchConfig(method="sigma", background=(str(toy_file),), n_signal=10), [1.0])


def test_search_config_errors(toy_file: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        SearchConfig.from_dict({"methd": "cwola"})
    with pytest.raises(ConfigError, match="unknown search method 'nope'"):
        run_search(SearchConfig(method="nope", background=(str(toy_file),), n_signal=10))
    with pytest.raises(InputError, match="SR 9-9.5 TeV"):
        run_search(SearchConfig(method="cwola", sr=(9.0, 9.5), background=(str(toy_file),), n_signal=10,
                                test_signal_events=None))


# ------------------------------------------------------------------------------------------------------------------
# physics on the recorded LHCO-like sample
# ------------------------------------------------------------------------------------------------------------------

#: 175k QCD (7 files) and the W' signal injected to S/sqrt(B) = 4 in the 3.3-3.7 TeV SR (S ~ 500, B ~ 15.5k).
LHCO_QCD = 7
LHCO_RUN = dict(significance=4.0, folds=3, classifier_config={"n_ensemble": 3})


def lhco_files(lhco_dir: Path) -> tuple[str, ...]:
    qcd = sorted(lhco_dir.glob("rnd_qcd_seed*.features.h5"))[:LHCO_QCD]
    return tuple(str(p) for p in qcd) + (str(lhco_dir / "rnd_sig_3500_500_100.features.h5"),)


#: CATHODE and LaCATHODE with a small CPU flow (15 epochs), run in the ``physics`` fixture's Dask tasks.
CATHODE_CPU = {"lr": 3e-3, "scheduler": "cosine", "epochs": 15, "patience": None, "batch_size": 512}


@pytest.fixture(scope="module")
def physics(lhco_dir: Path) -> dict[tuple[str, str], list[dict]]:
    """Every search on the recorded sample at once, as Dask tasks on two local workers (one per CI core; the tests
    of this file otherwise use one core): the references of seeds 0 and 1, without signal, and CATHODE / LaCATHODE
    (seed 0, the longest tasks, first)."""
    files = lhco_files(lhco_dir)
    cfgs = [SearchConfig(method=method, background=files, seed=0, generator_config=CATHODE_CPU, **LHCO_RUN)
            for method in ("cathode", "lacathode")]
    for seed in (0, 1):
        for method in ("idealized", "supervised", "cwola"):
            cfgs.append(SearchConfig(method=method, background=files, seed=seed, template_auc=method == "idealized",
                                     **LHCO_RUN))
        cfgs.append(SearchConfig(method="idealized", background=files, seed=seed, template_auc=False,
                                 **{**LHCO_RUN, "significance": None, "n_signal": 0}))
    out: dict[tuple[str, str], list[dict]] = {}
    for r in run_searches(cfgs, workers=2):
        out.setdefault((r["method"], r["injection"]), []).append(r)
    return out


@pytest.mark.lhco
@pytest.mark.slow
def test_physics_idealized_supervised_cwola(physics) -> None:
    ideal = physics[("idealized", "S/sqrt(B)=4")]
    sup = physics[("supervised", "S/sqrt(B)=4")]
    cw = physics[("cwola", "S/sqrt(B)=4")]
    for r in ideal + sup + cw:
        assert r["S/sqrt(B)"] >= 3.9 and r["n_test_background"] > 4000
    print("max SIC idealized / supervised / CWoLa:", [(round(i["max_sic"], 2), round(s["max_sic"], 2),
                                                      round(c["max_sic"], 2)) for i, s, c in zip(ideal, sup, cw)])
    # Measured (seeds 0, 1): idealized 5.66 / 5.49, supervised 7.25 / 7.65 (5,000 reserved SR signal events; 6.92 /
    # 7.12 when it trained on the injected ones), CWoLa hunting 2.36 / 2.04. The supervised value is near what
    # ~5k SR test background events resolve (max SIC <= eps_S sqrt(n_B / 50) ~ 10).
    for i, s, c in zip(ideal, sup, cw):
        assert i["max_sic"] > 3.5
        assert s["max_sic"] > i["max_sic"]
        assert c["max_sic"] > 1.5
        assert c["max_sic"] < i["max_sic"]
        assert abs(i["template_auc"] - 0.5) < 0.03  # held-out background vs test background
        # The check's negative control, data within 0.2 TeV of the SR as the template, must be seen: measured 0.560 /
        # 0.572 here (seeds 0 / 1; 0.579 / 0.579 with all 420k events), a template that is right gives 0.50.
        assert i["control_template_auc"] > 0.54


@pytest.mark.lhco
@pytest.mark.slow
def test_physics_no_signal_gives_noise(physics) -> None:
    for r in physics[("idealized", "n=0")]:
        assert r["S"] == 0
        # Nothing to learn from SR data vs true background: the best cut is no cut (measured max SIC 1.00 for
        # both seeds; AUC 0.54 and 0.21 -- a noise classifier ranks the out-of-distribution signal arbitrarily).
        assert r["max_sic"] < 2.0
        assert r["auc"] < 0.65


@pytest.mark.lhco
def test_template_fidelity_controls(lhco_dir: Path) -> None:
    from anomalyhunt.features import load_feature_table

    files = sorted(lhco_dir.glob("rnd_qcd_seed*.features.h5"))[:4]
    bkg = pd.concat([load_feature_table(f) for f in files], ignore_index=True)
    x, m = feature_matrix(bkg, DEFAULT_FEATURES), mjj_tev(bkg)
    regions = Regions()
    sr = x[regions.sr_mask(m)]
    half = np.random.default_rng(0).permutation(len(sr))
    a, b = sr[half[: len(sr) // 2]], sr[half[len(sr) // 2 :]]
    cfg = dict(classifier_config={"n_ensemble": 3}, folds=3)
    # Positive control: true SR background as the template (measured 0.496).
    assert abs(fidelity.template_auc(a, b, **cfg) - 0.5) < 0.03
    # True SR background drawn with replacement (a simulation-assisted template repeats events): copies of an event
    # stay in one fold, so the classifier cannot learn them by heart (measured 0.512, seeds 1-3 0.500-0.507; 0.603
    # with copies across folds).
    drawn = a[np.random.default_rng(1).choice(len(a), len(a), replace=True)]
    assert abs(fidelity.template_auc(drawn, b, **cfg) - 0.5) < 0.03
    # Negative control: sideband events moved unchanged into the SR (measured 0.747).
    control = fidelity.sideband_control(x, regions.sb_mask(m), n=len(a))
    assert fidelity.template_auc(control, b, **cfg) > 0.6
    # (Jet masses scaled by 2 % are not detectable at these statistics: measured AUC 0.496, 0.522 at 5 %.)


def test_mass_shift_control_scales_only_jet_masses(toy) -> None:
    x = feature_matrix(toy[0].iloc[:100], DEFAULT_FEATURES)
    shifted = fidelity.mass_shift_control(x, DEFAULT_FEATURES, 0.02)
    np.testing.assert_allclose(shifted[:, :2], 1.02 * x[:, :2])  # mj1, delta_mj
    np.testing.assert_array_equal(shifted[:, 2:], x[:, 2:])
    with pytest.raises(ValueError, match="no jet-mass feature"):
        fidelity.mass_shift_control(x[:, 2:], DEFAULT_FEATURES[2:])


@pytest.mark.lhco
@pytest.mark.slow
@pytest.mark.parametrize("method", ["cathode", "lacathode"])
def test_cathode_search(physics, method: str) -> None:
    """CATHODE, and LaCATHODE (its flow's latent space), through the whole pipeline with a small CPU flow (15 epochs)
    at S/sqrt(B) = 4 (run as a Dask task of the ``physics`` fixture, beside the references)."""
    import os

    (r,) = physics[(method, "S/sqrt(B)=4")]
    # Measured: CATHODE max SIC 4.56 (idealized 5.64 on the same data and seed), template AUC 0.538; 3.82 and 0.541
    # with another template draw; LaCATHODE 4.23 (seed 1: 5.04). The bound leaves room for that spread.
    assert r["max_sic"] > 2.5
    assert r["n_reference"] == 4 * r["n_data_sr"]
    assert r["seconds_fit"] > 0
    if method == "cathode":
        assert r["template_auc"] < 0.6 and r["n_template_dropped"] == 0 and r["seconds_sample"] > 0
    else:  # no template in feature space to judge
        assert r["template_auc"] is None
    # results.json says how it was made: the local cluster's workers share the cores (one torch thread each on CI)
    assert r["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)


def test_yaml_config_expands_to_runs(tmp_path: Path) -> None:
    from anomalyhunt.cli import build_parser
    from anomalyhunt.commands.search import expand, merged_settings

    cfg = tmp_path / "search.yaml"
    cfg.write_text(
        "methods: [cwola, cathode]\n"
        "n_seeds: 2\n"
        "windows: {lo: 3.0, hi: 4.0, width: 0.4, step: 0.2}\n"
        "n_signal: [0, 500]\n"
        "generator_config: {cathode: {epochs: 3}}\n"
        "classifier_config: {n_ensemble: 2}\n"
    )
    args = build_parser().parse_args(["search", "--config", str(cfg), "--folds", "4"])
    runs = expand(merged_settings(args), tmp_path / "out")
    # 4 windows x 2 injections x 2 methods x 2 seeds.
    assert len(runs) == 32
    assert sorted({r.sr for r in runs}) == [(3.0, 3.4), (3.2, 3.6), (3.4, 3.8), (3.6, 4.0)]
    assert {r.n_signal for r in runs} == {0, 500} and {r.seed for r in runs} == {0, 1}
    assert all(r.folds == 4 and r.classifier_config == {"n_ensemble": 2} for r in runs)
    assert {r.generator_config.get("epochs") for r in runs if r.method == "cathode"} == {3}
    assert all(r.generator_config == {} for r in runs if r.method == "cwola")
    assert len({r.out for r in runs}) == 32  # one output directory per run
    args = build_parser().parse_args(["search", "--config", str(cfg), "--sr", "3.3:3.7", "--seed", "7"])
    runs = expand(merged_settings(args), tmp_path / "out")
    assert {(r.sr, r.seed) for r in runs} == {((3.3, 3.7), 7)} and len(runs) == 4
    # --seed S --seeds N: seeds S..S+N-1 (not the single seed S).
    args = build_parser().parse_args(["search", "--config", str(cfg), "--sr", "3.3:3.7", "--seed", "5", "--seeds", "3"])
    assert {r.seed for r in expand(merged_settings(args), tmp_path / "out")} == {5, 6, 7}
    with pytest.raises(ConfigError, match="at most one --seed"):
        merged_settings(build_parser().parse_args(["search", "--seed", "1", "--seed", "2", "--seeds", "3"]))
    (tmp_path / "bad.yaml").write_text("methds: [cwola]\n")
    with pytest.raises(ConfigError, match="unknown key"):
        expand(merged_settings(build_parser().parse_args(["search", "--config", str(tmp_path / "bad.yaml")])), "o")


# ------------------------------------------------------------------------------------------------------------------
# bench process
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.lhco
def test_bench_process_measures_rates(lhco_dir: Path, tmp_path: Path, capsys) -> None:
    from anomalyhunt.cli import main

    out = tmp_path / "process.json"
    particles = lhco_dir / "rnd_qcd_seed1001.particles.h5"
    assert main(["bench", "process", "--file", str(particles), "--events", "500", "--chunksize", "250",
                 "--repeats", "3", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["events"] == 500 and r["file"] == str(particles) and r["repeats"] == 3
    assert all(len(v) == 3 for v in r["seconds_per_round"].values())
    assert r["bare_clustering_ev_per_s"] > 0 and r["processor_ev_per_s"] > 0
    assert all(v > 0 for v in r["stages_ev_per_s"].values())
    # A real measurement: the processor does everything bare clustering does and more, on a busy shared machine
    # (measured 0.32 at 500 events with another job running).
    assert 0.05 < r["fraction_of_bare"] < 1.5
    # The processor reclusters every jet for the tau_N axes, so it cannot beat the bound that work sets (timing
    # noise allowed); the reclustering of two ~100-constituent jets costs a sizeable part of clustering ~460.
    recl = r["stage_fraction_of_bare"]["kT reclustering of both jets (tau_N axes)"]
    assert 0.05 < recl < 1.5
    assert r["fraction_of_bare"] < 1.3 * r["reachable_fraction"]
    out_text = capsys.readouterr().out
    assert "processor / bare clustering" in out_text and "could reach at most" in out_text


def test_bench_process_input_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    from anomalyhunt.analysis import search
    from anomalyhunt.cli import main

    assert main(["bench", "process", "--file", str(tmp_path / "nope.h5")]) == 1
    assert "nope.h5: file does not exist" in capsys.readouterr().err
    monkeypatch.setattr(search, "default_data_dir", lambda: None)
    assert main(["bench", "process"]) == 1
    err = capsys.readouterr().err
    assert "rnd_qcd_seed1001.particles.h5" in err and "--file" in err


def test_local_cluster_workers_keep_the_allocator_defaults_and_share_the_cores() -> None:
    """Dask's ``MALLOC_TRIM_THRESHOLD_`` made every large temporary tensor a fresh mmap (SIGMA's sampling 3x slower);
    the workers run without it. Dask's one-thread OpenMP / MKL / OpenBLAS setting left cores idle with fewer workers
    than cores: one worker gets all of them, for torch too."""
    import functools
    import operator
    import os

    import torch

    from anomalyhunt.tasks import run_tasks

    names = ["MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"]
    probes = [functools.partial(os.getenv, name) for name in names] + [torch.get_num_threads]
    before = {k: os.environ.get(k) for k in names}
    # Two workers first: Dask writes a nanny's variables into this process's environment, where the next cluster
    # would read them before its own settings.
    for workers in (2, 1):
        share = max(1, (os.cpu_count() or 1) // workers)
        assert run_tasks(operator.call, probes, workers=workers) == [None] + [str(share)] * 3 + [share]
    assert {k: os.environ.get(k) for k in names} == before
