"""SIGMA: one conditional flow-matching model of p(x | m) on all data, interpolated into any signal region.

The model learns the velocity ``v(x_t, t; m)`` of the straight (rectified) path ``x_t = (1 - t) x0 + t x1`` from
``x0 ~ N(0, 1)`` to data ``x1``, with target ``x1 - x0``. The mass enters through ``alpha(m)``, a
:class:`~anomalyhunt.models.nn.FrequencyEmbedding` of the mass scaled onto [0, 1] over ``m_range`` with frequencies
``2^k pi`` (k < ``n_mass_freqs``), and the time through ``beta(t)`` with frequencies ``k pi`` (k = 1 ..
``n_time_freqs``), as in the SIGMA talk (its ``L`` and ``L' + 1``). A template for a signal region [lo, hi] never
evaluates the model inside it: the field is interpolated from sideband masses ``m_1 < ... < lo < hi < ... < m_K``
with the Lagrange weights ``w_i(m)`` of those masses (for K = 2 the talk's ``xi = (m2 - m) / (m2 - m1)`` and
``1 - xi``; K = 4, two masses per side, is the talk's "more than two mass points" and the default), by
``interpolation`` (``"context"`` by default):

* ``"context"``: the network evaluated at ``sum_i w_i alpha(m_i)`` (the talk's gamma_c^int);
* ``"velocity"``: ``sum_i w_i v(m_i)`` (the talk's v^int);
* ``"layer"``: every block's hidden activations mixed with weights ``w_i`` (the talk's gamma_i^int);
* ``"none"``: the model at ``m`` itself (v^data: trained on the SR, so it reproduces any signal there -- a reference).

``mask_sr=True`` drops the SR (``sr`` config, or ``region`` given to :meth:`Sigma.fit`) from training: v^CR, a
per-region baseline. One training serves every SR; sampling a new SR costs only the ODE integration (fixed-step Euler,
midpoint or RK4 with ``n_steps``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, InputError
from .base import GENERATORS, TEMPLATE_DEFAULTS, TRAINING_DEFAULTS, TemplateGenerator
from .nn import FrequencyEmbedding, ResidualMLP, pick_device, seeded, train_loop
from .preprocessing import check_events, make_pipeline, validation_split

__all__ = ["Sigma", "VelocityField", "integrate_ode", "lagrange_weights", "INTERPOLATIONS"]

INTERPOLATIONS = ("velocity", "layer", "context", "none")


def lagrange_weights(m: np.ndarray, nodes: Sequence[float]) -> np.ndarray:
    """``(len(m), len(nodes))``: the weight of each node's value in the polynomial through all nodes, at ``m``."""
    m, nodes = np.asarray(m, dtype=np.float64).reshape(-1, 1), np.asarray(nodes, dtype=np.float64)
    w = np.ones((len(m), len(nodes)))
    for i, mi in enumerate(nodes):
        for j, mj in enumerate(nodes):
            if i != j:
                w[:, i] *= (m[:, 0] - mj) / (mi - mj)
    return w


class VelocityField(nn.Module):
    """``v(x, t; s)`` for scaled mass ``s`` in [0, 1]: a :class:`ResidualMLP` with context ``[alpha(s), beta(t)]``."""

    def __init__(
        self, n_features: int, hidden: int = 128, n_blocks: int = 3, dropout: float = 0.0, n_mass_freqs: int = 9,
        n_time_freqs: int = 3, time_frequencies: str = "linear",
    ) -> None:
        super().__init__()
        self.alpha = FrequencyEmbedding(n_mass_freqs)
        self.beta = FrequencyEmbedding(n_time_freqs, spacing=time_frequencies)
        self.net = ResidualMLP(
            n_features, n_features, hidden=hidden, n_blocks=n_blocks, dropout=dropout,
            context_dim=self.alpha.out_dim + self.beta.out_dim,
        )

    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        return self.net(x, torch.cat([self.alpha(s), self.beta(t)], dim=-1))

    def interpolated(self, x: Tensor, t: Tensor, nodes: Sequence[float], weights: Tensor, how: str) -> Tensor:
        """The field for a mass interpolated from the scaled masses ``nodes`` with weights ``weights`` (n, K), see
        module doc. The definition; :meth:`ode_velocity` evaluates the same field faster for an ODE."""
        bt = self.beta(t)
        alphas = self._node_alphas(nodes, len(x), x.device)
        w = [weights[:, i : i + 1] for i in range(weights.shape[1])]
        contexts = [torch.cat([a, bt], dim=-1) for a in alphas]
        if how == "velocity":
            return sum(wi * self.net(x, c) for wi, c in zip(w, contexts))
        if how == "layer":
            return self.net.forward_mixed(x, contexts, w)
        if how == "context":
            return self.net(x, torch.cat([sum(wi * a for wi, a in zip(w, alphas)), bt], dim=-1))
        raise ValueError(f"unknown interpolation {how!r}; use one of {INTERPOLATIONS}")

    def _node_alphas(self, nodes: Sequence[float] | Tensor, n: int, device: torch.device) -> list[Tensor]:
        """``alpha`` at each node, one (n, d) tensor per node: ``nodes`` K scaled masses shared by all events, or
        an (n, K) tensor, each event's own."""
        if isinstance(nodes, Tensor) and nodes.ndim == 2:
            return [self.alpha(nodes[:, i]) for i in range(nodes.shape[1])]
        return [self.alpha(torch.full((n,), float(v), device=device)) for v in nodes]

    def ode_velocity(
        self, how: str, s: Tensor, nodes: Sequence[float] | Tensor | None = None, weights: Tensor | None = None
    ) -> Callable[[Tensor, float], Tensor]:
        """``v(x, t)`` for events at scaled masses ``s`` (``how="none"``) or interpolated from the scaled masses
        ``nodes`` (K shared, or (n, K) per event) with weights ``weights`` (n, K): the field of :meth:`forward` /
        :meth:`interpolated`.

        The mass embedding enters every layer linearly and is fixed along an event's path, so its layer terms are
        computed once here; an ODE step then costs only the part that depends on x (and one row for the time).
        """
        if how not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {how!r}; use one of {INTERPOLATIONS}")
        w: list[Tensor] = []
        if how == "none":
            embeddings = [self.alpha(s)]
        else:
            if how == "layer":
                ones = torch.ones(len(s), device=s.device)
                return lambda x, t: self.interpolated(x, t * ones, nodes, weights, how)
            w = [weights[:, i : i + 1] for i in range(weights.shape[1])]
            if isinstance(nodes, Tensor) and nodes.ndim == 2:
                alphas = self._node_alphas(nodes, len(s), s.device)
                embeddings = [sum(wi * a for wi, a in zip(w, alphas))] if how == "context" else alphas
            else:
                alphas = self.alpha(torch.as_tensor([float(v) for v in nodes], device=s.device))  # (K, d)
                embeddings = [weights @ alphas] if how == "context" else [a.reshape(1, -1) for a in alphas]
        mass = [self.net.context_terms(a) for a in embeddings]

        def velocity(x: Tensor, t: float) -> Tensor:
            time = self.net.context_terms(self.beta(torch.full((1,), t, device=x.device)), self.alpha.out_dim, True)
            v = [self.net.forward_terms(x, terms, time) for terms in mass]
            return v[0] if len(v) == 1 else sum(wi * vi for wi, vi in zip(w, v))

        return velocity


@torch.no_grad()
def integrate_ode(
    velocity: Callable[[Tensor, float], Tensor], x0: Tensor, n_steps: int, solver: str = "midpoint"
) -> Tensor:
    """Integrate ``dx/dt = velocity(x, t)`` from t = 0 to 1 in ``n_steps`` fixed steps (``euler``, ``midpoint``,
    ``rk4``); ``t`` is passed as a float, the same for every event."""
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    x, h = x0, 1.0 / n_steps
    for i in range(n_steps):
        t = i * h
        if solver == "euler":
            x = x + h * velocity(x, t)
        elif solver == "midpoint":
            k1 = velocity(x, t)
            x = x + h * velocity(x + 0.5 * h * k1, t + 0.5 * h)
        elif solver == "rk4":
            k1 = velocity(x, t)
            k2 = velocity(x + 0.5 * h * k1, t + 0.5 * h)
            k3 = velocity(x + 0.5 * h * k2, t + 0.5 * h)
            k4 = velocity(x + h * k3, t + h)
            x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        else:
            raise ValueError(f"unknown ODE solver {solver!r}; use 'euler', 'midpoint' or 'rk4'")
    return x


@GENERATORS.register("sigma")
class Sigma(TemplateGenerator):
    """Conditional flow matching on all data with SR interpolation (config keys: :attr:`DEFAULTS`).

    ``kde_bandwidth``, ``oversample`` (templates of 3x the SR size, as in the paper) and ``n_template`` are read by the
    pipeline to draw the template masses (see :func:`anomalyhunt.models.cathode.sample_sr_masses`).
    """

    trains_on = "all"
    DEFAULTS: dict[str, Any] = TRAINING_DEFAULTS | TEMPLATE_DEFAULTS | dict(
        hidden=64,
        n_blocks=3,
        dropout=0.0,
        n_mass_freqs=9,
        n_time_freqs=3,
        # beta(t) as the talk writes it, (sin pi t, cos pi t, ..., sin (L'+1) pi t, cos (L'+1) pi t): "linear" (k pi);
        # "octave" (2^k pi) was the earlier default. Against it (seed 0, LHCO-like): template AUC 0.564 vs 0.559
        # (velocity), signal-box pulls -0.5 vs -0.3 (velocity) and 1.5 vs 1.5 (context): within the seed spread.
        time_frequencies="linear",
        m_range=None,
        # "context" by default: at LHCO-like statistics (210k events, 30 epochs, SR 3.3-3.7 TeV, seed 0) its template
        # AUC against the true SR background was 0.527 (max SIC 6.1) against 0.546-0.553 for "velocity" (5 seeds,
        # max SIC 5.5), and it needs one network pass per ODE step instead of two.
        interpolation="context",
        interp_masses=None,
        # Without interp_masses: interp_points sideband masses, half on each side: the nearest interp_offset SR widths
        # outside the SR edges, further ones interp_spacing widths apart, all inside the training masses.
        # The rule: nothing nearer than one SR width. A window is sized to a resonance's mjj width, and what the model
        # learns of a signal there reaches nearby masses by two routes: the resonance's tails (the W'(3500) puts 4.2%
        # of its events at 3.1-3.2 TeV and 1.7% at 3.9-4.1) and the CPU-sized model's smearing in mjj (hundreds of
        # GeV). Signal-box pulls of the context template (tests/test_sigma_physics.py, S/sqrt(B) = 6 in 3.3-3.7
        # TeV, model seeds 1 / 2 / 3): linear from half a width 4.1 / 4.1 / 3.4 (66% of v^data's excess removed);
        # linear from one width 1.2 / 1.2 / 0.9; cubic from one and two widths 0.6 / 0.9 / 1.0 (velocity 1.2 / 1.4 /
        # 1.3); at S/sqrt(B) = 4: 2.4 / 3.2 / 1.8 half-width linear, 0.7 / 1.3 / 0.6 cubic. The high side matters
        # most: there the background is lower, so a tail's share is larger. Why four masses: the linear
        # interpolation's error grows with the gap (LHCO-level template AUC, seed 0: 0.519 from 3.1 / 3.9 TeV,
        # 0.531 from 2.9 / 4.1, 0.547 from 2.9 / 4.3; more epochs or fewer mass frequencies do not close it), and
        # the cubic through a second mass on each side (the talk's "more than two mass points") takes the
        # curvature out: 0.522 from 2.5 / 2.9 / 4.1 / 4.5. At LHCO level (bench search's sample, S/sqrt(B) = 2.2,
        # one model per seed 0-4 sampled every way): max SIC 8.10 [7.83, 8.45], template AUC 0.527 cubic; 7.63
        # [7.53, 8.39], 0.526 linear from half a width; 6.68 [6.28, 7.48], 0.537 linear from one width. Masses half
        # a width apart per side (interp_spacing=0.5) did as well here (8.07, 0.527) but weigh the nearer ones more
        # (Lagrange weights 1.14 / -0.64 at the SR centre against 0.78 / -0.28).
        interp_points=4,
        interp_offset=1.0,
        interp_spacing=1.0,
        # Masses outside the SR (a classifier trained across SR and sidebands asks for them): "sr" -- the SR's own
        # polynomial, exact at its masses, so the interpolation error is zero there and largest inside the SR;
        # "centred" -- each event's field interpolated from the SR's pattern of masses moved to be centred on it, so
        # every mass carries the same kind of interpolation error and a classifier cannot find the SR by it
        # (events whose moved masses leave the training masses keep the SR's). Background-only hunts of the full
        # shipped QCD (Poisson replicas, window-trained classifier, cubic; README): local Z spread 1.44 with "sr"
        # (3.0-4.2 TeV), 1.31 with "centred" (1.12 in 3.4-4.2 TeV, above the trigger turn-on's reach).
        sideband_nodes="centred",
        sr=None,
        mask_sr=False,
        solver="midpoint",
        # The paths are nearly straight: on 100k LHCO-like events (15 epochs, SR 3.3-3.7 TeV, 27.5k template events)
        # the template AUC was 0.573 with 20 midpoint steps, 0.574 with 8, 0.570 with 4, but 0.640 with 8 Euler
        # steps; at LHCO level (210k events, 30 epochs, seed 0) 0.522 / 0.525 / 0.527 / 0.547 with 8 / 4 / 3 / 2
        # midpoint steps (one RK4 step 0.647; steps bunched towards t = 1 no better). Each SR's template costs
        # n_steps x 2 network passes per event (x 2 for velocity interpolation): SIGMA's cost per further SR.
        n_steps=3,
        epochs=30,
        batch_size=512,
        lr=3e-3,
        keep_best=1,
        # Events per ODE batch: small enough that a batch's activations stay in the CPU cache (4096 events sampled
        # ~1.5x faster than 100k); a GPU wants more.
        sample_batch=4096,
        oversample=3,
    )
    PRESETS: dict[str, dict[str, Any]] = {
        # The SIGMA paper's setup: 4 residual blocks of 256 with dropout 0.2, 9 mass and 3 time frequencies, AdamW
        # lr 3e-4, batch 4096, early stopping, templates of 3x the SR size from an ensemble of the best epochs.
        "paper": dict(hidden=256, n_blocks=4, dropout=0.2, n_mass_freqs=9, n_time_freqs=3, lr=3e-4, batch_size=4096,
                      epochs=1000, scheduler=None, patience=50, keep_best=5, n_steps=100, solver="midpoint",
                      oversample=3, sample_batch=100_000),
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**self.resolve_config(config))
        if self.config["interpolation"] not in INTERPOLATIONS:
            raise ConfigError(
                f"sigma: interpolation must be one of {INTERPOLATIONS}, got {self.config['interpolation']!r}"
            )
        for key in ("interp_offset", "interp_spacing"):
            if not float(self.config[key]) > 0:
                raise ConfigError(f"sigma: {key} must be > 0 (SR widths), got {self.config[key]!r}")
        if self.config["sideband_nodes"] not in ("sr", "centred"):
            raise ConfigError(f"sigma: sideband_nodes must be 'sr' or 'centred', got {self.config['sideband_nodes']!r}")
        if self.config["interp_points"] not in (2, 4):
            raise ConfigError(f"sigma: interp_points must be 2 (linear) or 4 (cubic), got "
                              f"{self.config['interp_points']!r}")
        if self.config["time_frequencies"] not in FrequencyEmbedding.SPACINGS:
            raise ConfigError(f"sigma: time_frequencies must be one of {FrequencyEmbedding.SPACINGS}, "
                              f"got {self.config['time_frequencies']!r}")  # fmt: skip
        self._fields: list[VelocityField] = []
        self._pre = make_pipeline(self.config["preprocessing"], self.config["margin"])
        self._m_range: tuple[float, float] | None = None
        self._n_features: int | None = None
        self.history: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return pick_device(self.config["device"])

    def _build(self) -> VelocityField:
        c = self.config
        return VelocityField(self._n_features, c["hidden"], c["n_blocks"], c["dropout"], c["n_mass_freqs"],
                             c["n_time_freqs"], c["time_frequencies"])

    def _scale_mass(self, m: np.ndarray) -> np.ndarray:
        lo, hi = self._m_range
        return (np.asarray(m, dtype=np.float64) - lo) / (hi - lo)

    @staticmethod
    def _region(region: Any, what: str) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in region)
        except (TypeError, ValueError):
            raise InputError(what, f"a signal region must be (lo, hi), got {region!r}") from None
        if not lo < hi:
            raise InputError(what, f"signal region lower edge {lo} is not below the upper edge {hi}")
        return lo, hi

    def fit(
        self,
        x: np.ndarray,
        m: np.ndarray,
        x_val: np.ndarray | None = None,
        m_val: np.ndarray | None = None,
        *,
        region: tuple[float, float] | None = None,
    ) -> "Sigma":
        """Train on all events ``x`` at masses ``m``. With ``mask_sr`` the SR (``region`` or config ``sr``) is
        removed from training and validation first."""
        c = self.config
        x, m = check_events(x, m, "sigma.fit")
        if x_val is not None:
            x_val, m_val = check_events(x_val, m_val, "sigma.fit (validation)")
        if c["mask_sr"]:
            sr = region if region is not None else c["sr"]
            if sr is None:
                raise ConfigError("sigma: mask_sr=True needs the signal region (config 'sr' or fit(region=...))")
            lo, hi = self._region(sr, "sigma.fit")
            x, m = x[(m < lo) | (m > hi)], m[(m < lo) | (m > hi)]
            if x_val is not None:
                keep = (m_val < lo) | (m_val > hi)
                x_val, m_val = x_val[keep], m_val[keep]
            if len(x) == 0:
                raise InputError("sigma.fit", f"no events outside the masked signal region [{lo}, {hi}]")
        if x_val is None:
            tr, va = validation_split(len(x), c["val_fraction"], c["seed"])
            x, m, x_val, m_val = x[tr], m[tr], x[va], m[va]
        self._n_features = x.shape[1]
        if c["m_range"] is not None:
            self._m_range = self._region(c["m_range"], "sigma config m_range")
        else:
            self._m_range = (float(min(m.min(), m_val.min())), float(max(m.max(), m_val.max())))
        self._pre.fit(x)
        torch.manual_seed(c["seed"])
        field = self._build()

        def tensors(xa: np.ndarray, ma: np.ndarray) -> tuple[Tensor, Tensor]:
            return (torch.as_tensor(self._pre.transform(xa), dtype=torch.float32),
                    torch.as_tensor(self._scale_mass(ma), dtype=torch.float32))

        def fm_loss(batch: tuple[Tensor, ...]) -> Tensor:
            x1, s = batch
            x0 = torch.randn_like(x1)
            t = torch.rand(len(x1), device=x1.device)
            xt = (1 - t[:, None]) * x0 + t[:, None] * x1
            return ((field(xt, t, s) - (x1 - x0)) ** 2).mean()

        hist = train_loop(
            field, fm_loss, tensors(x, m), tensors(x_val, m_val), epochs=c["epochs"], batch_size=c["batch_size"],
            lr=c["lr"], weight_decay=c["weight_decay"], patience=c["patience"], device=c["device"], seed=c["seed"],
            progress=c["progress"], keep_best=c["keep_best"], scheduler=c["scheduler"],
        )
        self._set_states(hist.pop("best_states"))
        self.history = hist
        return self

    def _set_states(self, states: list[dict[str, Tensor]]) -> None:
        self._fields = []
        for state in states:
            field = self._build()
            field.load_state_dict(state)
            self._fields.append(field.to(self.device).eval())

    def _check_fitted(self) -> None:
        if not self._fields:
            raise RuntimeError("sigma: not fitted (call fit or load_state_dict first)")

    def interpolation_masses(self, region: tuple[float, float]) -> tuple[float, ...]:
        """The sideband masses the SR's field is interpolated from, ascending: config ``interp_masses``, or
        ``interp_points / 2`` per side, the nearest ``interp_offset`` SR widths outside the SR edges and the others
        ``interp_spacing`` widths further out, moved inside the masses the model was trained on (never into the SR;
        masses that then coincide count once)."""
        lo, hi = region
        if self.config["interp_masses"] is not None:
            masses = self.config["interp_masses"]
            try:
                nodes = sorted(float(v) for v in masses)
            except (TypeError, ValueError):
                raise InputError("sigma config interp_masses", f"expected a list of masses, got {masses!r}") from None
        else:
            w = hi - lo
            near, step = float(self.config["interp_offset"]) * w, float(self.config["interp_spacing"]) * w
            per_side = int(self.config["interp_points"]) // 2
            m_lo, m_hi = self._m_range if self._m_range is not None else (-np.inf, np.inf)
            # (rounded: 3.3 - 0.4 is 2.8999999999999995 in floating point)
            nodes = sorted({round(max(lo - near - j * step, m_lo), 9) for j in range(per_side)}
                           | {round(min(hi + near + j * step, m_hi), 9) for j in range(per_side)})  # fmt: skip
            if not (nodes[0] < lo and nodes[-1] > hi):
                raise InputError("sigma.sample", f"SR {lo:g}-{hi:g} reaches the edge of the training masses "
                                 f"{m_lo:g}-{m_hi:g}: no sideband mass to interpolate from")  # fmt: skip
        if not (nodes[0] < lo and nodes[-1] > hi) or any(lo <= v <= hi for v in nodes) or len(set(nodes)) < len(nodes):
            raise InputError("sigma.sample", f"interpolation masses {nodes} must be distinct, outside the SR "
                                             f"{lo:g}-{hi:g} and on both sides of it")  # fmt: skip
        return tuple(nodes)

    def _centred_nodes(self, m: np.ndarray, region: tuple[float, float], masses: Sequence[float],
                       ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Per event (n, K) node masses and Lagrange weights for ``sideband_nodes="centred"``: events in the SR use
        the SR's ``masses``; an event outside it uses the same masses moved by its distance from the SR centre, so
        it sits among them as the SR centre does (its weights are the centre's)."""
        lo, hi = region
        centre, masses = 0.5 * (lo + hi), np.asarray(masses, dtype=np.float64)
        node_m = np.broadcast_to(masses, (len(m), len(masses))).copy()
        weights = lagrange_weights(m, masses)
        moved = m[:, None] + (masses - centre)[None, :]
        m_lo, m_hi = self._m_range
        use = ((m < lo) | (m >= hi)) & (moved.min(axis=1) >= m_lo) & (moved.max(axis=1) <= m_hi)
        node_m[use] = moved[use]
        weights[use] = lagrange_weights(np.array([centre]), masses)
        return node_m, weights

    @torch.no_grad()
    def sample(
        self, m: np.ndarray, *, region: tuple[float, float] | None = None, seed: int = 0,
        interpolation: str | None = None,
    ) -> np.ndarray:
        """One event per mass in ``m`` for the signal region ``region`` (default config ``sr``; not needed for
        ``interpolation="none"``). ``interpolation`` overrides the configured one, so one trained model gives every
        variant."""
        self._check_fitted()
        c = self.config
        how = interpolation or c["interpolation"]
        if how not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {how!r}; use one of {INTERPOLATIONS}")
        m = np.asarray(m, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(m)):
            raise InputError("sigma.sample", "NaN or infinite masses")
        dev = self.device
        s = torch.as_tensor(self._scale_mass(m), dtype=torch.float32, device=dev)
        nodes = weights = None
        if how != "none":
            region = region if region is not None else c["sr"]
            if region is None:
                raise InputError("sigma.sample", f"interpolation {how!r} needs the signal region (region=(lo, hi))")
            lo, hi = self._region(region, "sigma.sample")
            masses = self.interpolation_masses((lo, hi))
            if c["sideband_nodes"] == "centred":
                node_m, w_np = self._centred_nodes(m, (lo, hi), masses)
                nodes = torch.as_tensor(self._scale_mass(node_m), dtype=torch.float32, device=dev)
            else:
                w_np = lagrange_weights(m, masses)
                nodes = [float(v) for v in self._scale_mass(np.array(masses))]
            weights = torch.as_tensor(w_np, dtype=torch.float32, device=dev)
        out = torch.empty(len(m), self._n_features, device=dev)
        member = torch.arange(len(m), device=dev) % len(self._fields)
        bs = int(c["sample_batch"])
        with seeded(seed, dev):
            for k, field in enumerate(self._fields):
                idx = torch.nonzero(member == k).reshape(-1)
                for i in range(0, len(idx), bs):
                    p = idx[i : i + bs]
                    own = nodes[p] if isinstance(nodes, Tensor) else nodes
                    vel = field.ode_velocity(how, s[p], own, None if weights is None else weights[p])
                    x0 = torch.randn(len(p), self._n_features, device=dev)
                    out[p] = integrate_ode(vel, x0, int(c["n_steps"]), c["solver"])
        return self._pre.inverse_transform(out.cpu().double().numpy())

    def state_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "n_features": self._n_features,
            "m_range": list(self._m_range),
            "preprocessing": self._pre.state_dict(),
            "fields": [{k: v.detach().cpu() for k, v in f.state_dict().items()} for f in self._fields],
            "time_frequencies": self.config["time_frequencies"],
            "history": {k: v for k, v in self.history.items() if k in ("train", "val", "best_epoch", "seconds")},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The embedding's frequencies are not weights: a field is evaluated with the ones it was trained with (states
        # saved before the setting existed had 2^k pi).
        self.config["time_frequencies"] = state.get("time_frequencies", "octave")
        self._n_features = int(state["n_features"])
        self._m_range = tuple(float(v) for v in state["m_range"])
        self._pre.load_state_dict(state["preprocessing"])
        self._set_states(state["fields"])
        self.history = dict(state.get("history", {}))
