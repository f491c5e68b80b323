"""CURTAINs: a conditional invertible transport of sideband events into the signal region.

Raine, Klein, Sengupta, Golling, "CURTAINs for your sliding window" (SciPost Phys. 14, 074, 2023). An invertible map
f(x; m_a, m_b) (a zuko rational-quadratic spline flow's transform, conditioned on the two masses, a < b) carries
an event at mass m_a to what it would look like at m_b, and its inverse carries it back. It is trained only between
the two sidebands of one signal region: events of the lower sideband are carried to the masses of upper-sideband
events, and those back to the lower masses, and an optimal-transport distance between the carried batch and the
target batch is minimised in both directions. The SR template is sideband events carried to SR masses (masses
between the two sidebands, which the conditioning interpolates): lower-sideband events forwards, upper-sideband
events backwards.

The OT distance is POT's sliced Wasserstein-2 distance (``ot.sliced_wasserstein_distance``, differentiable under
torch): unbiased between equal distributions and free of the entropic blur of a Sinkhorn loss (the paper used a
Sinkhorn divergence). It is taken between (features, target mass) points, the mass scaled by ``mass_weight``: a
distance between feature sets alone is minimised by any map of the lower sideband's marginal onto the upper one's,
whatever it does to each target mass (on a toy with x = 2 m + noise that left a 0.9 spread around the true SR
conditional of width 0.2).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import zuko

from ..errors import ConfigError, InputError
from .base import GENERATORS, TEMPLATE_DEFAULTS, TRAINING_DEFAULTS, TemplateGenerator
from .nn import pick_device, seeded, train_loop
from .preprocessing import EventScaler, check_events, validation_split
from .simulation import signal_region

__all__ = ["Curtains"]


@GENERATORS.register("curtains")
class Curtains(TemplateGenerator):
    """Sideband-to-SR transport by a conditional invertible network (config keys: :attr:`DEFAULTS`).

    ``sr``: the signal region whose sidebands it is trained between (the pipeline sets it; without it, the widest
    gap between the masses it is fitted on). ``sideband_width``: how far from the SR sideband events are used
    (None: all it is given). ``n_projections``: random directions of the sliced Wasserstein distance per batch.
    ``mass_weight``: the scale of the (standardised) target mass appended to the features in the OT distance.
    ``kde_bandwidth``, ``oversample`` and ``n_template`` are read by the pipeline to draw the template masses.
    """

    trains_on = "sidebands"
    DEFAULTS: dict[str, Any] = dict(
        **TRAINING_DEFAULTS,
        **TEMPLATE_DEFAULTS,
        sr=None,
        sideband_width=0.4,
        transforms=4,
        hidden_features=[64, 64],
        bins=8,
        epochs=20,
        batch_size=1024,
        lr=1e-3,
        n_projections=64,
        mass_weight=3.0,
    )

    def __init__(self, **config: Any) -> None:
        super().__init__(**self.resolve_config(config))
        self._flow: zuko.flows.Flow | None = None
        self._scaler: EventScaler | None = None
        self._sr: tuple[float, float] | None = None
        self._x: np.ndarray | None = None  # the sideband events the template is carried from
        self._m: np.ndarray | None = None
        self.history: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return pick_device(self.config["device"])

    def _build(self, n_features: int) -> zuko.flows.Flow:
        c = self.config
        # coupling layers (passes=2): the inverse, which carries upper-sideband events down, costs one pass
        return zuko.flows.NSF(n_features, 2, transforms=int(c["transforms"]), bins=int(c["bins"]),
                              hidden_features=tuple(c["hidden_features"]), passes=2)  # fmt: skip

    def _context(self, m_a: np.ndarray, m_b: np.ndarray) -> torch.Tensor:
        """(m_a, m_b - m_a), standardised: SR targets then lie inside the training pairs' range of both."""
        za, zb = self._scaler.transform_mass(m_a)[:, 0], self._scaler.transform_mass(m_b)[:, 0]
        return torch.as_tensor(np.column_stack([za, zb - za]), dtype=torch.float32)

    def fit(
        self, x: np.ndarray, m: np.ndarray, x_val: np.ndarray | None = None, m_val: np.ndarray | None = None
    ) -> "Curtains":
        """Train between the sidebands of the SR on sideband events ``x`` at masses ``m`` (SR events, if any, are
        refused: the transport must not see them)."""
        c = self.config
        x, m = check_events(x, m, "curtains.fit")
        if x_val is not None:
            x_val, m_val = check_events(x_val, m_val, "curtains.fit (validation)")
            x, m = np.concatenate([x, x_val]), np.concatenate([m, m_val])
        lo, hi = signal_region(c["sr"], m, "curtains")
        width = np.inf if c["sideband_width"] is None else float(c["sideband_width"])
        near = (m >= lo - width) & (m <= hi + width)
        x, m = x[near], m[near]
        lower, upper = m <= lo, m >= hi
        if lower.sum() < 10 or upper.sum() < 10:
            raise InputError("curtains.fit", f"needs events in both sidebands of {lo:g}-{hi:g} (lower "
                                             f"{int(lower.sum())}, upper {int(upper.sum())})")  # fmt: skip
        self._sr, self._x, self._m = (lo, hi), x, m
        self._scaler = EventScaler(c["preprocessing"], c["margin"]).fit(x, m)
        z = self._scaler.features.transform(x)

        def pairs(idx: np.ndarray, seed: int) -> tuple[torch.Tensor, ...]:
            # random pairs of sideband events, within and across the two sidebands, the lower mass first: mass
            # differences from 0 to the sidebands' full span, so that every SR target is an interpolation
            rng = np.random.default_rng(seed)
            a, b = rng.permutation(idx), rng.permutation(idx)
            a, b = np.where(m[a] <= m[b], a, b), np.where(m[a] <= m[b], b, a)
            return (torch.as_tensor(z[a], dtype=torch.float32), torch.as_tensor(z[b], dtype=torch.float32),
                    self._context(m[a], m[b]))  # fmt: skip

        tr, va = validation_split(len(m), c["val_fraction"], c["seed"])
        torch.manual_seed(c["seed"])
        flow = self._build(x.shape[1])
        hist = train_loop(
            flow, self._objective(flow, z, self._scaler.transform_mass(m), tr, va), pairs(tr, c["seed"]),
            pairs(va, c["seed"] + 1), epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
            weight_decay=c["weight_decay"], patience=c["patience"], device=c["device"], seed=c["seed"],
            progress=c["progress"], scheduler=c["scheduler"],
        )  # fmt: skip
        states = hist.pop("best_states")
        flow.load_state_dict(states[0])
        self._flow = flow.to(self.device).eval()
        self.history = hist
        return self

    def _objective(self, flow: zuko.flows.Flow, z: np.ndarray, mz: np.ndarray, tr: np.ndarray,
                   va: np.ndarray) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
        """The loss of a batch of pairs (lower event, upper event, context): the sliced Wasserstein-2 distance
        between carried and target (features, mass) points, in both directions."""
        n_proj, d, lam = int(self.config["n_projections"]), z.shape[1], float(self.config["mass_weight"])

        def sliced_w2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            import ot

            proj = torch.randn(d + 1, n_proj, device=a.device)
            return ot.sliced_wasserstein_distance(a, b, projections=proj / proj.norm(dim=0, keepdim=True)) ** 2

        def transport_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            z_lo, z_hi, ctx = batch
            t = flow(ctx).transform  # maps an event at m_a (ctx[:, 0]) to m_b (ctx[:, 1])
            m_a, m_b = lam * ctx[:, :1], lam * (ctx[:, :1] + ctx[:, 1:])
            # (features, mass) points: a carried event must match the targets at its own target mass
            up = sliced_w2(torch.cat([t(z_lo), m_b], 1), torch.cat([z_hi, m_b], 1))
            down = sliced_w2(torch.cat([t.inv(z_hi), m_a], 1), torch.cat([z_lo, m_a], 1))
            return up + down

        return transport_loss

    @torch.no_grad()
    def sample(self, m: np.ndarray, *, region: tuple[float, float] | None = None, seed: int = 0) -> np.ndarray:
        """One event per mass in ``m`` (between the sidebands): a random sideband event carried to it, from the
        lower sideband forwards, from the upper one backwards (each side in proportion to its events)."""
        if self._flow is None:
            raise RuntimeError("curtains: not fitted (call fit or load_state_dict first)")
        m = np.asarray(m, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(m)):
            raise InputError("curtains.sample", "NaN or infinite masses")
        tol = 0.05 * (self._sr[1] - self._sr[0])  # an SR inferred from the gap between events is a little wider
        if region is not None and (abs(region[0] - self._sr[0]) > tol or abs(region[1] - self._sr[1]) > tol):
            raise ConfigError(f"curtains was trained between the sidebands of {self._sr[0]:g}-{self._sr[1]:g}, "
                              f"not of {region[0]:g}-{region[1]:g}")  # fmt: skip
        rng = np.random.default_rng(seed)
        src = rng.integers(len(self._m), size=len(m))
        m_src = self._m[src]
        forward = m_src <= m
        z = torch.as_tensor(self._scaler.features.transform(self._x[src]), dtype=torch.float32)
        out = torch.empty_like(z)
        bs = int(self.config["sample_batch"])
        lo_m, hi_m = np.where(forward, m_src, m), np.where(forward, m, m_src)
        with seeded(seed, self.device):
            for i in range(0, len(m), bs):
                sl = slice(i, i + bs)
                t = self._flow(self._context(lo_m[sl], hi_m[sl]).to(self.device)).transform
                zb, fw = z[sl].to(self.device), torch.as_tensor(forward[sl], device=self.device)
                out[sl] = torch.where(fw[:, None], t(zb), t.inv(zb)).cpu()
        return self._scaler.inverse_features(out.double().numpy())

    def state_dict(self) -> dict[str, Any]:
        if self._flow is None:
            raise RuntimeError("curtains: not fitted")
        return {"flow": {k: v.detach().cpu() for k, v in self._flow.state_dict().items()},
                "scaler": self._scaler.state_dict(), "sr": list(self._sr), "x": self._x, "m": self._m,
                "history": {k: v for k, v in self.history.items() if k in ("train", "val", "best_epoch", "seconds")}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._x, self._m = np.asarray(state["x"]), np.asarray(state["m"])
        self._sr = (float(state["sr"][0]), float(state["sr"][1]))
        self._scaler = EventScaler(self.config["preprocessing"], self.config["margin"])
        self._scaler.load_state_dict(state["scaler"])
        self._flow = self._build(self._x.shape[1])
        self._flow.load_state_dict(state["flow"])
        self._flow = self._flow.to(self.device).eval()
        self.history = dict(state.get("history", {}))
