"""Jet clustering (fastjet's multi-event awkward interface) and vectorised N-subjettiness.

Constituents enter as records ``pt eta phi mass`` (optionally weighted, e.g. by PUPPI). Jets come back as padded
numpy arrays of the leading ``n_jets`` per event, so that everything downstream is plain vectorised numpy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import awkward as ak
import fastjet
import numpy as np

# fastjet prints its banner on the first clustering of every process; every Dask/futures worker would repeat it.
fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
# fastjet's awkward interface warns on every exclusive_jets call, even for the kT algorithm it recommends.
warnings.filterwarnings("ignore", message="dcut and exclusive jets", category=UserWarning)

AxesKind = Literal["onepass_kt", "kt", "wta_kt"]
# Nsubjettiness clusters subjets with a radius large enough that the beam never wins.
_SUBJET_R = 1000.0


def _p4(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": pt * np.sinh(eta),
        "E": np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2),
    }


def to_pseudojets(particles: ak.Array, weight: ak.Array | None = None) -> ak.Array:
    """Jagged ``pt eta phi mass`` records -> jagged ``px py pz E`` records for fastjet (4-momenta scaled by ``weight``)."""
    counts = ak.num(particles)
    flat = {f: ak.to_numpy(ak.flatten(particles[f])).astype(np.float64) for f in ("pt", "eta", "phi", "mass")}
    p4 = _p4(flat["pt"], flat["eta"], flat["phi"], flat["mass"])
    if weight is not None:
        w = ak.to_numpy(ak.flatten(weight)).astype(np.float64)
        p4 = {k: v * w for k, v in p4.items()}
    return ak.unflatten(ak.zip(p4, depth_limit=1), counts)


@dataclass
class LeadingJets:
    """The ``n_jets`` hardest jets of each event (padded with pt = 0 where an event has fewer).

    ``constituents`` is jagged (events * n_jets, var) with ``px py pz E`` records, jets in event-major order.
    """

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    n_jets_found: np.ndarray
    constituents: ak.Array

    @property
    def energy(self) -> np.ndarray:
        return np.sqrt((self.pt * np.cosh(self.eta)) ** 2 + self.mass**2)


def _kinematics(px, py, pz, e):
    pt = np.hypot(px, py)
    p = np.sqrt(pt**2 + pz**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0)), 0.0)
    mass = np.sqrt(np.maximum(e**2 - p**2, 0.0))
    return pt, eta, np.arctan2(py, px), mass


def cluster_leading_jets(pseudojets: ak.Array, radius: float, n_jets: int = 2, min_pt: float = 20.0) -> LeadingJets:
    """anti-kT jets of radius ``radius`` above ``min_pt``; keep the ``n_jets`` leading ones and their constituents."""
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    cs = fastjet.ClusterSequence(pseudojets, jetdef)
    jets = cs.inclusive_jets(min_pt)
    consts = cs.constituents(min_pt)
    jet_pt = np.hypot(jets.px, jets.py)
    order = ak.argsort(jet_pt, axis=1, ascending=False)[:, :n_jets]
    jets, consts = jets[order], consts[order]
    n_found = ak.to_numpy(ak.num(jets)).astype(np.int64)

    def pad(field: str) -> np.ndarray:
        return ak.to_numpy(ak.fill_none(ak.pad_none(jets[field], n_jets, clip=True), 0.0)).astype(np.float64)

    pt, eta, phi, mass = _kinematics(pad("px"), pad("py"), pad("pz"), pad("E"))
    # Pad missing jets with empty constituent lists so that jets stay event-major with a fixed stride.
    consts = ak.pad_none(consts, n_jets, axis=1, clip=True)
    consts = ak.flatten(ak.fill_none(consts, [], axis=1), axis=1)
    return LeadingJets(pt, eta, phi, mass, n_found, consts)


@dataclass
class FlatConstituents:
    """Constituents of ``n_jets`` jets as flat arrays, each with the index of its jet (jets in their input order).

    Flat rather than padded: per-jet sums are ``np.bincount`` over ``jet``, so the work follows the number of
    constituents, not jets x the largest jet's multiplicity (a few times more on QCD)."""

    n_jets: int
    jet: np.ndarray
    pt: np.ndarray
    rap: np.ndarray
    phi: np.ndarray
    weight: np.ndarray  # pt where the constituent has energy, else 0 (zero vectors do not count)

    @classmethod
    def from_awkward(cls, constituents: ak.Array) -> "FlatConstituents":
        counts = ak.to_numpy(ak.num(constituents))
        px, py, pz, e = (ak.to_numpy(ak.flatten(constituents[f])).astype(np.float64) for f in ("px", "py", "pz", "E"))
        pt = np.hypot(px, py)
        has_e = e > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            rap = np.where(has_e, 0.5 * np.log(np.maximum(e + pz, 1e-300) / np.maximum(e - pz, 1e-300)), 0.0)
        jet = np.repeat(np.arange(len(counts)), counts)
        return cls(len(counts), jet, pt, rap, np.arctan2(py, px), np.where(has_e, pt, 0.0))

    def jet_sum(self, values: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Per-jet sums of per-constituent ``values`` (of the constituents selected by ``rows``, if given)."""
        jet = self.jet if rows is None else self.jet[rows]
        return np.bincount(jet, weights=values, minlength=self.n_jets)


def _dphi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def _dr2(rap: np.ndarray, phi: np.ndarray, arap: np.ndarray, aphi: np.ndarray) -> np.ndarray:
    """Squared (rapidity, phi) distances of constituents (N,) to their jet's axes (N, n); phi in [-pi, pi], so one
    wrap suffices."""
    dp = np.abs(phi[:, None] - aphi)
    dp = np.minimum(dp, 2 * np.pi - dp)
    return (rap[:, None] - arap) ** 2 + dp**2


def exclusive_axes(constituents: ak.Array, n_max: int, wta: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exclusive kT subjet axes (rapidity, phi) of shape (jets, n) for n = 1..n_max, from one kT clustering per jet;
    jets with fewer than n constituents get NaN axes."""
    n_jets = len(constituents)
    counts = ak.to_numpy(ak.num(constituents))
    usable = counts >= 1
    cs = None
    if usable.any():
        scheme = fastjet.WTA_pt_scheme if wta else fastjet.E_scheme
        cs = fastjet.ClusterSequence(constituents[usable], fastjet.JetDefinition(fastjet.kt_algorithm, _SUBJET_R, scheme))
    result = []
    for n in range(1, n_max + 1):
        rap = np.full((n_jets, n), np.nan)
        phi = np.full((n_jets, n), np.nan)
        enough = counts >= n
        if cs is not None and enough.any():
            # fastjet refuses to make more exclusive jets than particles, so ask only the jets that have enough.
            sub = cs.exclusive_jets(n_jets=n) if enough[usable].all() else None
            if sub is None:
                sub_cs = fastjet.ClusterSequence(
                    constituents[enough],
                    fastjet.JetDefinition(fastjet.kt_algorithm, _SUBJET_R, fastjet.WTA_pt_scheme if wta else fastjet.E_scheme),
                )
                sub = sub_cs.exclusive_jets(n_jets=n)
            sx, sy, sz, se = (ak.to_numpy(sub[f]).reshape(-1, n) for f in ("px", "py", "pz", "E"))
            rap[enough] = 0.5 * np.log(np.maximum(se + sz, 1e-300) / np.maximum(se - sz, 1e-300))
            phi[enough] = np.arctan2(sy, sx)
        result.append((rap, phi))
    return result


def _one_pass(c: FlatConstituents, arap, aphi, beta: float, max_iter: int = 1000, tol: float = 1e-4):
    """One pass of the Nsubjettiness axis minimisation (iterative reweighting from the seed axes until converged)."""
    arap, aphi = arap.copy(), aphi.copy()
    n = arap.shape[1]
    active = np.isfinite(arap).all(axis=1)
    for _ in range(max_iter):
        if not active.any():
            break
        sel = np.nonzero(active[c.jet])[0]
        jet = c.jet[sel]
        r, p = c.rap[sel], c.phi[sel]
        d2 = _dr2(r, p, arap[jet], aphi[jet])
        idx = d2.argmin(axis=1)
        nearest = np.arange(len(sel))
        # Weiszfeld-type update: each particle pulls its nearest axis with weight pt * dR^(beta - 2).
        # The tolerance doubles as a regulator so that a particle sitting on its axis cannot divide by zero.
        w = c.weight[sel] * np.power(d2[nearest, idx] + tol**2, (beta - 2) / 2)
        key = jet * n + idx

        def axis_sum(v: np.ndarray) -> np.ndarray:
            return np.bincount(key, weights=v, minlength=c.n_jets * n).reshape(c.n_jets, n)

        rows = np.nonzero(active)[0]
        sw, sr = axis_sum(w)[rows], axis_sum(w * r)[rows]
        sp = axis_sum(w * _dphi(p, aphi[jet, idx]))[rows]
        ok = sw > 0
        ar, ap = arap[rows], aphi[rows]
        new_r = np.where(ok, sr / np.where(ok, sw, 1), ar)
        new_p = np.where(ok, ap + sp / np.where(ok, sw, 1), ap)
        # Converged once the axes move by less than the accuracy on average, as fastjet-contrib's one-pass refiner.
        shift = np.sqrt((new_r - ar) ** 2 + _dphi(new_p, ap) ** 2).mean(axis=1)
        arap[rows], aphi[rows] = new_r, _dphi(new_p, 0.0)
        active[rows[shift <= tol]] = False
    return arap, aphi


def nsubjettiness(
    constituents: ak.Array, radius: float, n_max: int = 3, beta: float = 1.0, axes: AxesKind = "onepass_kt"
) -> np.ndarray:
    """Normalised N-subjettiness tau_1..tau_n_max, shape (jets, n_max).

    tau_N = sum_i pt_i min_k dR_ik^beta / (sum_i pt_i R0^beta) with R0 = ``radius`` and dR in (rapidity, phi), the
    fastjet-contrib ``NormalizedMeasure``. ``axes``: exclusive kT, winner-take-all kT, or exclusive kT followed by one
    minimisation pass (what CMS NanoAOD's ``FatJet_tau*`` use). A jet with at most N constituents has tau_N = 0.
    """
    if axes not in ("onepass_kt", "kt", "wta_kt"):
        raise ValueError(f"unknown N-subjettiness axes {axes!r}; use onepass_kt, kt or wta_kt")
    c = FlatConstituents.from_awkward(constituents)
    norm = c.jet_sum(c.weight) * radius**beta
    taus = np.zeros((c.n_jets, n_max))
    for n, (arap, aphi) in enumerate(exclusive_axes(constituents, n_max, wta=axes == "wta_kt"), start=1):
        if axes == "onepass_kt":
            arap, aphi = _one_pass(c, arap, aphi, beta)
        ok = np.isfinite(arap).all(axis=1)
        if ok.any():
            sel = np.nonzero(ok[c.jet])[0]
            d2 = _dr2(c.rap[sel], c.phi[sel], arap[c.jet[sel]], aphi[c.jet[sel]]).min(axis=1)
            dist = np.sqrt(d2) if beta == 1 else np.power(d2, beta / 2)
            num = c.jet_sum(c.weight[sel] * dist, sel)[ok]
            taus[ok, n - 1] = np.where(norm[ok] > 0, num / np.where(norm[ok] > 0, norm[ok], 1), 0.0)
    return taus
