"""Publication plots write PNG + PDF and draw the numbers they are given; histograms survive ROOT/pickle round trips.

Synthetic inputs only (no recorded sample needed): a Poisson draw of a known dijet spectrum, Gaussian scores.
"""

from __future__ import annotations

import hist
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from anomalyhunt.analysis.bumphunt import DEFAULT_EDGES, bump_hunt, mjj_hist, scan
from anomalyhunt.analysis.dijetfit import background_counts, signal_counts
from anomalyhunt.analysis.histio import hists_equal, load_hists, save_hists
from anomalyhunt.analysis.plots import (
    plot_bump_hunt,
    plot_drapes_scan,
    plot_max_sic_vs_injection,
    plot_pvalue_scan,
    plot_roc_sic,
    plot_template_vs_data,
    save_figure,
)
from anomalyhunt.errors import InputError


@pytest.fixture(scope="module")
def spectrum() -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts of a 4-parameter dijet spectrum (200k events) plus 3000 signal events at 3.5 TeV (100 GeV wide,
    so that it stays inside the 3.3-3.7 TeV SR)."""
    rng = np.random.default_rng(1)
    e = DEFAULT_EDGES
    mu = background_counts(e, 200_000, 0.5, 16.0, 4.3) + signal_counts(e, 3000, 3500, 100)
    return rng.poisson(mu).astype(float), e


def _written(files, tmp_path, stem):
    assert sorted(f.name for f in files) == [f"{stem}.pdf", f"{stem}.png"]
    for f in files:
        assert f.parent == tmp_path and f.stat().st_size > 1000
    assert files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[1].read_bytes()[:5] == b"%PDF-"


def _label_text(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


@pytest.mark.parametrize("style", ["CMS", "ATLAS", "LHCb"])
def test_bump_hunt_plot(spectrum, tmp_path, style):
    counts, e = spectrum
    bh = bump_hunt((counts, e), (3300.0, 3700.0))
    drawn = plot_bump_hunt(bh, path=tmp_path / f"bump_{style}", style=style)
    _written(drawn.files, tmp_path, f"bump_{style}")
    bkg = bh.sideband_fit.background()
    np.testing.assert_allclose(drawn.data["pulls"], (counts - bkg) / np.sqrt(bkg))
    # The pull panel shows exactly these pulls, one bar per bin, at the bin centres in TeV.
    bars = list(drawn.fig.axes[1].containers[0])
    assert len(bars) == len(counts)
    np.testing.assert_allclose([b.get_height() for b in bars], drawn.data["pulls"])
    np.testing.assert_allclose([b.get_x() + b.get_width() / 2 for b in bars], 0.5 * (e[1:] + e[:-1]) / 1000)
    # The signal region is where the bump is: large positive pulls of the masked fit there (measured 3.4, 8.4, 8.3,
    # 2.7), none elsewhere.
    in_sr = (0.5 * (e[1:] + e[:-1]) > 3300) & (0.5 * (e[1:] + e[:-1]) < 3700)
    assert drawn.data["pulls"][in_sr].mean() > 3.0 and np.abs(drawn.data["pulls"][~in_sr]).max() < 3.5
    # our Pythia carries no experiment's name, whatever the style; an analyst's label is drawn as given
    label = _label_text(drawn.fig.axes[0])
    assert "Pythia 8 simulation" in label and "13 TeV" in label and style.upper() not in label.upper(), label
    mine = plot_bump_hunt(bh, style=style, label=f"{style} Private Work")
    assert f"{style} Private Work" in _label_text(mine.fig.axes[0])


def test_pvalue_scan_plot(spectrum, tmp_path):
    res = scan({0.1: spectrum, 0.01: (np.round(spectrum[0] * 0.1), spectrum[1])}, [3100.0, 3500.0, 3900.0, 4300.0])
    drawn = plot_pvalue_scan(res, path=tmp_path / "pscan")
    _written(drawn.files, tmp_path, "pscan")
    for k in range(1, 6):
        assert drawn.data["sigma_lines"][k] == pytest.approx(stats.norm.sf(k))
    hlines = sorted(line.get_ydata()[0] for line in drawn.fig.axes[0].lines if len(set(line.get_ydata())) == 1)
    np.testing.assert_allclose(hlines, sorted(stats.norm.sf(np.arange(1, 6))))
    c, p = drawn.data["curves"][0.1]
    np.testing.assert_allclose(p, res.table[res.table["cut"] == 0.1]["p_local"])
    assert c[np.argmin(p)] == 3500.0  # the injected bump
    # a hunt's scan: methods x cuts + no cut, 13 curves; each drawn in its own colour and line style
    many = {f"method {i}": (np.array([3100.0, 3500.0]), np.array([0.5, 0.1 + 0.01 * i])) for i in range(13)}
    drawn = plot_pvalue_scan(many)
    curves = [line for line in drawn.fig.axes[0].lines if len(set(line.get_ydata())) > 1]
    assert len(curves) == 13 and len({(line.get_color(), line.get_linestyle()) for line in curves}) == 13


def test_roc_sic_plot(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(20_000), np.ones(5_000)]
    good = rng.normal(2.0 * labels)
    drawn = plot_roc_sic(
        {"separating": {"scores": good, "labels": labels}, "random": {"scores": rng.random(len(labels)),
                                                                     "labels": labels},
         "given": (np.array([0.2, 0.5, 0.9]), np.array([0.001, 0.05, 0.5]))},
        path=tmp_path / "roc",
    )
    _written(drawn.files, tmp_path, "roc")
    eps_s, eps_b, sic = drawn.data["curves"]["given"]
    np.testing.assert_allclose(sic, eps_s / np.sqrt(eps_b))
    # A 2-sigma Gaussian separation: analytic SIC(t) = Phi(2 - t) / sqrt(Phi(-t)); its max over eps_b > 1% is 3.7.
    # Random scores stay near SIC = sqrt(eps_s) <= 1 away from the low-statistics tail.
    _, eb, sic_good = drawn.data["curves"]["separating"]
    t = np.linspace(-3, stats.norm.isf(0.01), 601)
    analytic = np.max(stats.norm.sf(t - 2) / np.sqrt(stats.norm.sf(t)))
    assert sic_good[eb > 0.01].max() == pytest.approx(analytic, rel=0.1)
    _, eb_r, sic_r = drawn.data["curves"]["random"]
    assert sic_r[eb_r > 0.01].max() < 1.1
    drawn_lines = drawn.fig.axes[1].lines[0].get_ydata()
    np.testing.assert_allclose(drawn_lines, sic_good)
    assert eb.min() >= 1e-4


def test_max_sic_vs_injection_plot(tmp_path):
    rows = [{"s_over_sqrt_b": x, "seed": s, "max_sic": x + s} for x in (1.0, 2.0, 4.0) for s in range(5)]
    drawn = plot_max_sic_vs_injection(
        {"CATHODE": pd.DataFrame(rows), "CWoLa": (np.array([1.0, 2.0, 4.0]), np.array([[1, 2, 3], [3, 4, 5.0]]))},
        path=tmp_path / "sic_inj",
    )
    _written(drawn.files, tmp_path, "sic_inj")
    xs, med, lo, hi = drawn.data["curves"]["CATHODE"]
    np.testing.assert_allclose(xs, [1, 2, 4])
    np.testing.assert_allclose(med, [3, 4, 6])  # median over seeds 0..4 of x + seed
    assert np.all(lo < med) and np.all(hi > med)
    np.testing.assert_allclose(drawn.data["curves"]["CWoLa"][1], [2, 3, 4])


def test_template_vs_data_plot(tmp_path):
    rng = np.random.default_rng(3)
    template = pd.DataFrame({"mj1": rng.normal(100, 20, 50_000), "tau21_j1": rng.uniform(0, 1, 50_000)})
    data = pd.DataFrame({"mj1": rng.normal(100, 20, 20_000), "tau21_j1": rng.uniform(0, 1, 20_000) ** 2})
    drawn = plot_template_vs_data(template, data, ["mj1", "tau21_j1"], bins=20, path=tmp_path / "tmpl")
    _written(drawn.files, tmp_path, "tmpl")
    _, r_same, err_same = drawn.data["ratios"]["mj1"]
    assert np.all(np.abs(r_same - 1) < 4 * err_same + 0.02)  # same distribution: ratio 1 within errors
    e, r_diff, _ = drawn.data["ratios"]["tau21_j1"]
    # data ~ u^2 has density 1 / (2 sqrt(x)) against a flat template: ratio ~ 1/(2 sqrt(x)) up to normalisation.
    assert r_diff[0] > 2 and r_diff[-1] < 1
    with pytest.raises(InputError, match="missing"):
        plot_template_vs_data(template, data, ["nope"])


def test_drapes_scan_plot(tmp_path):
    sigma = np.array([0.01, 0.05, 0.1])
    auc = np.array([[0.60, 0.55, 0.50], [0.62, 0.57, 0.52], [0.58, 0.53, 0.48]])
    drawn = plot_drapes_scan(sigma, auc, np.array([2.0, 3.0, 2.5]), path=tmp_path / "drapes")
    _written(drawn.files, tmp_path, "drapes")
    np.testing.assert_allclose(drawn.data["auc"][1], [0.60, 0.55, 0.50])
    np.testing.assert_allclose(drawn.data["max_sic"][1], [2.0, 3.0, 2.5])


def test_save_figure_strips_suffix_and_makes_dirs(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.subplots().plot([0, 1], [0, 1])
    files = save_figure(fig, tmp_path / "deep" / "dir" / "line.png")
    assert sorted(f.name for f in files) == ["line.pdf", "line.png"] and all(f.stat().st_size > 0 for f in files)
    with pytest.raises(InputError, match="unknown style"):
        plot_drapes_scan([1, 2], [0.5, 0.5], [1, 1], style="D0")


@pytest.mark.parametrize("suffix", [".root", ".pkl"])
def test_histio_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    h = mjj_hist(rng.normal(3500, 500, 10_000), weights=rng.uniform(0.5, 2, 10_000))
    plain = hist.Hist(hist.axis.Regular(7, 0, 1, name="score", label="CWoLa score"))
    plain.fill(rng.random(500))
    path = save_hists({"mjj_eff0p1": h, "score": plain}, tmp_path / f"hists{suffix}")
    back = load_hists(path)
    assert set(back) == {"mjj_eff0p1", "score"}
    for name, orig in (("mjj_eff0p1", h), ("score", plain)):
        assert hists_equal(back[name], orig), name
        np.testing.assert_array_equal(back[name].axes[0].edges, orig.axes[0].edges)
        np.testing.assert_allclose(back[name].values(flow=True), orig.values(flow=True))
        assert back[name].axes[0].name == orig.axes[0].name and back[name].axes[0].label == orig.axes[0].label
    np.testing.assert_allclose(back["mjj_eff0p1"].variances(), h.variances())  # sum of squared weights kept
    assert back["mjj_eff0p1"].values().sum() != pytest.approx(10_000)  # weights were really applied


def test_histio_errors(tmp_path):
    h = mjj_hist([3000.0])
    with pytest.raises(InputError, match="unknown histogram file type"):
        save_hists({"a": h}, tmp_path / "h.txt")
    with pytest.raises(InputError, match="cannot be a ROOT key"):
        save_hists({"a/b": h}, tmp_path / "h.root")
    with pytest.raises(InputError, match="does not exist"):
        load_hists(tmp_path / "missing.root")
    (tmp_path / "bad.root").write_bytes(b"not root")
    with pytest.raises(InputError, match="not a readable ROOT file"):
        load_hists(tmp_path / "bad.root")


def test_search_report_draws_max_sic_against_the_injection(tmp_path):
    """A search over several injection levels writes the max-SIC curve per method and per reference score (TNT's
    autoencoder); an SR scanned at one level gets none."""
    from anomalyhunt.commands.search import _injection_plots

    runs = []
    for n in (0, 100, 400):
        for seed in (0, 1, 2):
            ref = {"ae_scores": {"max_sic": 1.5}}
            runs.append({"method": "tnt", "sr": [3.3, 3.7], "injection": f"n={n}", "config": {"n_signal": n},
                         "max_sic": 1.0 + n / 100 + seed, "reference_scores": ref})  # fmt: skip
    runs.append({"method": "tnt", "sr": [3.5, 3.9], "injection": "n=0", "config": {"n_signal": 0}, "max_sic": 2.0})
    curves = _injection_plots(runs, tmp_path)
    assert list(curves) == [(3.3, 3.7)]
    x, median, lo, hi = curves[(3.3, 3.7)]["tnt"]
    np.testing.assert_allclose(x, [0, 100, 400])
    np.testing.assert_allclose(median, [2.0, 3.0, 6.0])  # seeds add 0, 1, 2: the median is seed 1's
    assert (lo < median).all() and (hi > median).all()
    np.testing.assert_allclose(curves[(3.3, 3.7)]["tnt: ae_scores"][1], 1.5)
    assert (tmp_path / "max_sic_vs_injection_sr3.3-3.7.png").is_file()
    assert (tmp_path / "max_sic_vs_injection_sr3.3-3.7.pdf").is_file()
    assert not list(tmp_path.glob("*sr3.5-3.9*"))
