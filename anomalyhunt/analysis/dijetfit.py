"""Dijet-function fits of the mjj spectrum by binned Poisson likelihood (iminuit).

Background: f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x), x = mjj / sqrt(s), sqrt(s) = 13 TeV (``n_params=3`` fixes p3 = 0).
Signal: a Gaussian in mjj of width ``rel_width * mean`` (default 6%: the W'(3500) peak of the recorded particle-level
sample has a core of about 5.5%; detector-level resolutions are similar).

Units: everything inside is GeV. A ``hist.Hist`` or edge array in TeV must be declared with ``unit="TeV"``; a GeV
input whose edges all lie below 20 is refused, because a TeV axis read as GeV gives x ~ 0 and a silent nonsense fit.

Parametrisation: instead of p0 the fit floats ``norm``, the expected background count over the whole histogram
(masked bins included), which is O(sum of counts) and well conditioned; p0 is derived from it (``DijetFit.p0``).
Each bin's expectation is the integral of f over the bin (Gauss-Legendre, 5 nodes), not f at the bin centre.

Signal yield: unconstrained by default (it may go negative), so that the signed significance
Z = sign(s) sqrt(2 dNLL) of background-only pseudo-data is ~N(0, 1) and the likelihood stays regular at s = 0;
``signal_positive=True`` bounds it at 0 instead (then Z >= 0 and half the background-only fits sit at s = 0).

Selection efficiency in the signal region: after a cut calibrated on a finite reference sample, the SR background
efficiency is known only to some relative precision. An :class:`EfficiencyNuisance` multiplies the background of
the SR bins by (1 + kappa), kappa constrained by a Gaussian of that width and profiled in every fit, so that the
significance accounts for the calibration instead of reading its noise as signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from iminuit import Minuit
from iminuit.cost import ExtendedBinnedNLL, NormalConstraint
from scipy import special, stats

from ..errors import InputError

SQRT_S_GEV = 13_000.0
_UNITS = {"GeV": 1.0, "TeV": 1000.0}
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(5)
_MIN_MU = 1e-12  # a bin expectation may never reach 0: log(0) would end the fit


def to_gev_edges(edges: Sequence[float] | np.ndarray, unit: str = "GeV", source: str = "edges") -> np.ndarray:
    """Bin edges converted to GeV, checked increasing and plausible for the declared ``unit``."""
    if unit not in _UNITS:
        raise InputError(source, f"unknown mjj unit {unit!r}; use 'GeV' or 'TeV'")
    e = np.asarray(edges, dtype=np.float64) * _UNITS[unit]
    if e.ndim != 1 or len(e) < 3 or not np.all(np.diff(e) > 0):
        raise InputError(source, "mjj bin edges must be an increasing 1D array with at least 2 bins")
    if unit == "GeV" and e[-1] < 20.0:
        raise InputError(source, f"mjj edges end at {e[-1]:g}, which looks like TeV; pass unit='TeV'")
    return e


def binned(
    data: Any, edges: Sequence[float] | np.ndarray | None = None, unit: str = "GeV", source: str = "mjj"
) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges in GeV) from a 1D ``hist.Hist``, a ``(counts, edges)`` pair, or an mjj array with ``edges``."""
    if hasattr(data, "axes") and hasattr(data, "values"):
        if len(data.axes) != 1:
            raise InputError(source, f"expected a 1D mjj histogram, got {len(data.axes)} axes")
        counts, e = np.asarray(data.values(), dtype=np.float64), data.axes[0].edges
    elif isinstance(data, tuple) and len(data) == 2:
        counts, e = np.asarray(data[0], dtype=np.float64), data[1]
    else:
        if edges is None:
            raise InputError(source, "an mjj array needs bin edges (edges=...)")
        e = to_gev_edges(edges, unit, source)
        m = np.asarray(data, dtype=np.float64) * _UNITS[unit]
        return np.histogram(m, bins=e)[0].astype(np.float64), e
    e = to_gev_edges(e, unit, source)
    if counts.shape != (len(e) - 1,):
        raise InputError(source, f"{counts.shape[0]} counts for {len(e) - 1} bins")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise InputError(source, "counts must be finite and non-negative")
    return counts, e


def dijet_log_shape(m: np.ndarray, p1: float, p2: float, p3: float, sqrt_s: float = SQRT_S_GEV) -> np.ndarray:
    """log of (1 - x)^p1 / x^(p2 + p3 ln x) at mjj ``m`` (GeV): the dijet function without p0."""
    x = np.asarray(m, dtype=np.float64) / sqrt_s
    lx = np.log(x)
    return p1 * np.log1p(-x) - (p2 + p3 * lx) * lx


def _bin_integrals_log(edges: np.ndarray, p1: float, p2: float, p3: float, sqrt_s: float) -> tuple[np.ndarray, float]:
    """Bin integrals of the unnormalised dijet shape, returned as (integral / exp(shift), shift) to avoid overflow."""
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    pts = mid[:, None] + half[:, None] * _GL_NODES[None, :]
    logf = dijet_log_shape(pts, p1, p2, p3, sqrt_s)
    shift = float(np.max(logf))
    return (np.exp(logf - shift) @ _GL_WEIGHTS) * half, shift


def background_counts(edges: np.ndarray, norm: float, p1: float, p2: float, p3: float = 0.0,
                      sqrt_s: float = SQRT_S_GEV) -> np.ndarray:
    """Expected background per bin, normalised so that the bins of ``edges`` hold ``norm`` events in total."""
    integ, _ = _bin_integrals_log(edges, p1, p2, p3, sqrt_s)
    return norm * integ / integ.sum()


def signal_counts(edges: np.ndarray, signal: float, mean: float, width: float) -> np.ndarray:
    """Expected Gaussian signal per bin: ``signal`` events in all of mjj, bin integrals of N(mean, width)."""
    return signal * np.diff(special.ndtr((np.asarray(edges, float) - mean) / width))


@dataclass(frozen=True)
class EfficiencyNuisance:
    """Relative uncertainty ``rel_error`` of the background efficiency in the bins whose centre lies in (lo, hi) GeV."""

    lo: float
    hi: float
    rel_error: float

    def bins(self, edges: np.ndarray) -> np.ndarray:
        mid = 0.5 * (edges[1:] + edges[:-1])
        return (mid > self.lo) & (mid < self.hi)


def _active(nuisance: EfficiencyNuisance | None) -> bool:
    return nuisance is not None and nuisance.rel_error > 0


@dataclass
class DijetFit:
    """Result of a background-only or signal-plus-background dijet fit (masses in GeV)."""

    edges: np.ndarray
    counts: np.ndarray
    mask: np.ndarray  # bins in the likelihood (False: masked signal region)
    values: dict[str, float]
    errors: dict[str, float]
    deviance: float  # 2 (NLL - NLL_saturated) over the bins in ``mask``; ~chi2(ndf) for a good fit
    ndf: int
    valid: bool
    n_params: int
    sqrt_s: float = SQRT_S_GEV
    width: float | None = None  # Gaussian width used (GeV), None for background-only
    nuisance: EfficiencyNuisance | None = None  # SR efficiency uncertainty profiled in this fit (kappa in values)
    minuit: Minuit | None = field(default=None, repr=False)

    @property
    def has_signal(self) -> bool:
        return "signal" in self.values

    def background(self, edges: np.ndarray | None = None) -> np.ndarray:
        """Fitted background per bin of ``edges`` (default the fitted histogram's), fit normalisation kept."""
        v = self.values
        base = background_counts(self.edges, v["norm"], v["p1"], v["p2"], v["p3"], self.sqrt_s)
        if edges is None:
            return base
        # Same density, other bins: scale by the density integral ratio, using the fitted bins as reference.
        ref, s_ref = _bin_integrals_log(self.edges, v["p1"], v["p2"], v["p3"], self.sqrt_s)
        new, s_new = _bin_integrals_log(np.asarray(edges, float), v["p1"], v["p2"], v["p3"], self.sqrt_s)
        return v["norm"] * new * np.exp(s_new - s_ref) / ref.sum()

    def signal(self) -> np.ndarray:
        """Fitted signal per bin (zeros for a background-only fit)."""
        if not self.has_signal:
            return np.zeros(len(self.counts))
        return signal_counts(self.edges, self.values["signal"], self.values["mean"], self.width)

    def expected(self) -> np.ndarray:
        """Fitted total (background, times 1 + kappa in the SR bins of a nuisance, + signal) per bin, floored at a
        tiny positive value like in the fit."""
        bkg = self.background()
        if "kappa" in self.values:
            bkg = np.where(self.nuisance.bins(self.edges), bkg * (1.0 + self.values["kappa"]), bkg)
        return np.maximum(bkg + self.signal(), _MIN_MU)

    @property
    def p0(self) -> float:
        """The dijet-function p0 in events per unit x (x = mjj / sqrt(s))."""
        v = self.values
        integ, shift = _bin_integrals_log(self.edges, v["p1"], v["p2"], v["p3"], self.sqrt_s)
        return float(v["norm"] * self.sqrt_s / (integ.sum() * np.exp(shift)))

    @property
    def p_value(self) -> float:
        """Goodness of fit: chi2 survival of the Poisson deviance with ``ndf`` degrees of freedom."""
        return float(stats.chi2.sf(self.deviance, max(self.ndf, 1)))

    @property
    def pearson_chi2(self) -> float:
        mu = self.expected()[self.mask]
        return float(np.sum((self.counts[self.mask] - mu) ** 2 / mu))

    def pulls(self) -> np.ndarray:
        """(data - fit) / sqrt(fit) per bin, masked bins included."""
        mu = self.expected()
        return (self.counts - mu) / np.sqrt(mu)


def _start_values(counts: np.ndarray, edges: np.ndarray, mask: np.ndarray, n_params: int, sqrt_s: float) -> np.ndarray:
    """(p1, p2, p3) from a weighted linear fit of log(counts / width): log f is linear in the parameters."""
    mid = 0.5 * (edges[1:] + edges[:-1])
    use = mask & (counts > 0)
    x = mid[use] / sqrt_s
    y = np.log(counts[use] / np.diff(edges)[use])
    cols = [np.ones_like(x), np.log1p(-x), -np.log(x), -np.log(x) ** 2][: n_params]
    a = np.stack(cols, axis=1)
    w = np.sqrt(counts[use])  # var(log n) ~ 1 / n
    if use.sum() < n_params:
        raise InputError("dijet fit", f"only {int(use.sum())} non-empty bins for {n_params} parameters")
    coef, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    p = np.zeros(3)
    p[: n_params - 1] = coef[1:]
    return p


def _make_model(edges: np.ndarray, sqrt_s: float, n_params: int, width: float | None, with_signal: bool,
                scaled: np.ndarray | None = None):
    """Scaled cdf for ``ExtendedBinnedNLL``: cumulative expected counts at the edges it is given. ``scaled``: bins
    whose background is multiplied by (1 + kappa), kappa being the parameter after the background's."""

    # The cost always evaluates at the same edges: precompute the logs at the quadrature nodes once.
    half = 0.5 * np.diff(edges)
    x = (0.5 * (edges[1:] + edges[:-1]))[:, None] + half[:, None] * _GL_NODES[None, :]
    x = x / sqrt_s
    lx, l1x = np.log(x), np.log1p(-x)
    wts = half[:, None] * _GL_WEIGHTS[None, :]

    def bins(xe: np.ndarray, par: Sequence[float]) -> np.ndarray:
        norm, p1, p2 = par[0], par[1], par[2]
        p3 = par[3] if n_params == 4 else 0.0
        if xe.shape == edges.shape and np.array_equal(xe, edges):
            logf = p1 * l1x - (p2 + p3 * lx) * lx
            integ = np.sum(np.exp(logf - logf.max()) * wts, axis=1)
        else:
            integ, _ = _bin_integrals_log(xe, p1, p2, p3, sqrt_s)
        mu = norm * integ / integ.sum()
        i = n_params
        if scaled is not None:
            mu = np.where(scaled, mu * (1.0 + par[i]), mu)
            i += 1
        if with_signal:
            mu = mu + signal_counts(xe, par[i], par[i + 1], width)
        return np.maximum(mu, _MIN_MU)

    def cdf(xe: np.ndarray, *par: float) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(bins(np.asarray(xe, float), par))])

    return cdf


def _param_names(n_params: int, with_signal: bool, nuisance: bool = False) -> list[str]:
    names = ["norm", "p1", "p2", "p3"][:n_params] + (["kappa"] if nuisance else [])
    return names + (["signal", "mean"] if with_signal else [])


def _limits(names: list[str]) -> dict[str, tuple]:
    return {"norm": (0, None)} | ({"kappa": (-0.9, None)} if "kappa" in names else {})


def _cost(counts: np.ndarray, e: np.ndarray, mask: np.ndarray, sqrt_s: float, n_params: int, width: float | None,
          with_signal: bool, nuisance: EfficiencyNuisance | None):
    """Binned Poisson likelihood, plus the Gaussian constraint of the SR efficiency when there is one."""
    on = _active(nuisance)
    names = _param_names(n_params, with_signal, on)
    model = _make_model(e, sqrt_s, n_params, width, with_signal, nuisance.bins(e) if on else None)
    nll = ExtendedBinnedNLL(counts, e, model, name=names)
    nll.mask = mask
    cost = nll + NormalConstraint("kappa", 0.0, nuisance.rel_error) if on else nll
    return cost, names


def _minimise(cost: Any, names: list[str], starts: list[np.ndarray], limits: dict[str, tuple],
              fixed: Sequence[str], retries: int, rng: np.random.Generator) -> Minuit | None:
    """Migrad from each start, then from jittered copies of the best, keeping the lowest valid minimum."""
    best: Minuit | None = None

    def attempt(start: np.ndarray) -> None:
        nonlocal best
        m = Minuit(cost, *start, name=names)
        for k, lim in limits.items():
            m.limits[k] = lim
        for k in fixed:
            m.fixed[k] = True
        m.strategy = 1
        try:
            m.migrad(ncall=20_000)
            if not m.valid:
                m.simplex().migrad(ncall=20_000)
        except (RuntimeError, ValueError, FloatingPointError):
            return
        if not np.isfinite(m.fval):
            return
        if best is None or (m.valid, -m.fval) > (best.valid, -best.fval):
            best = m

    for s in starts:
        attempt(np.asarray(s, float))
    tries = 0
    while tries < retries and (best is None or not best.valid):
        base = np.asarray(best.values if best is not None else starts[0], float)
        jitter = base * (1 + 0.2 * rng.standard_normal(len(base)))
        for i, n in enumerate(names):  # never jitter fixed or bounded location parameters out of their range
            if n in fixed or n in ("mean", "kappa"):
                jitter[i] = base[i]
        jitter[0] = abs(jitter[0])
        attempt(jitter)
        tries += 1
    return best


def _result(m: Minuit, counts, edges, mask, n_params, sqrt_s, width, nuisance=None) -> DijetFit:
    values = {k: float(m.values[k]) for k in m.parameters}
    errors = {k: float(m.errors[k]) for k in m.parameters}
    values.setdefault("p3", 0.0)
    errors.setdefault("p3", 0.0)
    nfree = sum(not m.fixed[k] for k in m.parameters)
    constraints = int("kappa" in values)  # the constraint term counts as one measurement
    return DijetFit(edges=edges, counts=counts, mask=mask.copy(), values=values, errors=errors, deviance=float(m.fval),
                    ndf=int(mask.sum()) + constraints - nfree, valid=bool(m.valid), n_params=n_params, sqrt_s=sqrt_s,
                    width=width, nuisance=nuisance if "kappa" in values else None, minuit=m)


def _prepare(data, edges, unit, fit_range, signal_region, n_params):
    if n_params not in (3, 4):
        raise InputError("dijet fit", f"n_params must be 3 or 4, got {n_params}")
    counts, e = binned(data, edges, unit)
    if fit_range is not None:
        lo, hi = (float(v) * _UNITS[unit] for v in fit_range)
        keep = (e[:-1] >= lo - 1e-9) & (e[1:] <= hi + 1e-9)
        if keep.sum() < 2:
            raise InputError("dijet fit", f"fewer than 2 bins inside fit_range {fit_range} {unit}")
        i0, i1 = np.nonzero(keep)[0][[0, -1]]
        counts, e = counts[i0 : i1 + 1], e[i0 : i1 + 2]
    mask = np.ones(len(counts), bool)
    if signal_region is not None:
        lo, hi = (float(v) * _UNITS[unit] for v in signal_region)
        mid = 0.5 * (e[1:] + e[:-1])
        mask &= ~((mid > lo) & (mid < hi))
    if mask.sum() <= n_params:
        raise InputError("dijet fit", f"{int(mask.sum())} unmasked bins cannot constrain {n_params} parameters")
    if counts[mask].sum() <= 0:
        raise InputError("dijet fit", "no events in the fitted bins")
    return counts, e, mask


def fit_background(
    data: Any,
    *,
    edges: Sequence[float] | np.ndarray | None = None,
    unit: str = "GeV",
    fit_range: tuple[float, float] | None = None,
    signal_region: tuple[float, float] | None = None,
    n_params: int = 4,
    sqrt_s: float = SQRT_S_GEV,
    nuisance: EfficiencyNuisance | None = None,
    retries: int = 4,
    seed: int = 0,
) -> DijetFit:
    """Background-only dijet fit; bins whose centre lies inside ``signal_region`` are masked (sideband fit).
    ``nuisance``: the SR efficiency uncertainty to profile (see the module docstring).

    ``data``: a 1D ``hist.Hist``, a ``(counts, edges)`` pair or an mjj array with ``edges``; ``unit`` applies to the
    histogram axis / edges / array and to ``fit_range`` and ``signal_region``.
    """
    counts, e, mask = _prepare(data, edges, unit, fit_range, signal_region, n_params)
    shape = _start_values(counts, e, mask, n_params, sqrt_s)
    frac = background_counts(e, 1.0, *shape, sqrt_s)[mask].sum()
    start = np.r_[counts[mask].sum() / max(frac, 1e-12), shape[: n_params - 1]]
    cost, names = _cost(counts, e, mask, sqrt_s, n_params, None, False, nuisance)
    # Second start: a generic falling QCD shape, in case the log-linear start sits in a bad valley.
    generic = np.r_[start[0], np.array([10.0, 5.0, 0.0])[: n_params - 1]]
    starts = [start, generic] if "kappa" not in names else [np.r_[start, 0.0], np.r_[generic, 0.0]]
    m = _minimise(cost, names, starts, _limits(names), (), retries, np.random.default_rng(seed))
    if m is None:
        raise InputError("dijet fit", "background fit failed from every start")
    return _result(m, counts, e, mask, n_params, sqrt_s, None, nuisance)


def fit_signal_plus_background(
    data: Any,
    mean: float,
    *,
    edges: Sequence[float] | np.ndarray | None = None,
    unit: str = "GeV",
    rel_width: float = 0.06,
    width: float | None = None,
    mean_range: tuple[float, float] | None = None,
    fit_range: tuple[float, float] | None = None,
    n_params: int = 4,
    signal_positive: bool = False,
    background: DijetFit | None = None,
    nuisance: EfficiencyNuisance | None = None,
    sqrt_s: float = SQRT_S_GEV,
    retries: int = 4,
    seed: int = 0,
) -> DijetFit:
    """Background + Gaussian signal over all bins (nothing masked); ``nuisance`` as in :func:`fit_background`.

    The Gaussian mean is fixed at ``mean`` unless ``mean_range`` (e.g. the signal region) is given, in which case it
    floats inside it starting from ``mean``. Width: ``width`` (GeV) or ``rel_width * mean``. ``background``: a
    background-only fit of the same histogram to start from (fitted here when absent).
    """
    k = _UNITS.get(unit, 1.0)
    mean_gev = float(mean) * k
    sigma = float(width) * k if width is not None else rel_width * mean_gev
    if sigma <= 0:
        raise InputError("signal fit", f"the signal width must be positive, got {sigma} GeV")
    counts, e, mask = _prepare(data, edges, unit, fit_range, None, n_params)
    if background is None or len(background.counts) != len(counts) or not background.mask.all():
        background = fit_background((counts, e), n_params=n_params, sqrt_s=sqrt_s, seed=seed)
    v = background.values
    bkg = background.background()
    core = np.abs(0.5 * (e[1:] + e[:-1]) - mean_gev) < 1.5 * sigma
    excess = float(np.sum(counts[core] - bkg[core]) / 0.87)
    cost, names = _cost(counts, e, mask, sqrt_s, n_params, sigma, True, nuisance)
    base = [v["norm"], v["p1"], v["p2"], v["p3"]][:n_params] + ([v.get("kappa", 0.0)] if "kappa" in names else [])
    starts = [np.r_[base, 0.0, mean_gev], np.r_[base, excess, mean_gev]]
    limits = _limits(names)
    if signal_positive:
        limits["signal"] = (0, None)
        starts = [np.r_[base, max(excess, 1.0), mean_gev], np.r_[base, 1.0, mean_gev]]
    fixed: tuple[str, ...] = ("mean",)
    if mean_range is not None:
        lo, hi = (float(x) * k for x in mean_range)
        if not lo <= mean_gev <= hi:
            raise InputError("signal fit", f"start mean {mean_gev} GeV outside mean_range [{lo}, {hi}] GeV")
        limits["mean"] = (lo, hi)
        fixed = ()
    m = _minimise(cost, names, starts, limits, fixed, retries, np.random.default_rng(seed))
    if m is None:
        raise InputError("signal fit", "signal-plus-background fit failed from every start")
    return _result(m, counts, e, mask, n_params, sqrt_s, sigma, nuisance)
