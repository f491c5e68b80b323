"""FETA: flow-enhanced transportation of simulation to data, trained in the sidebands and applied in the SR.

Golling, Klein, Mastandrea, Nachman, Raine, "FETA: Flow-Enhanced Transportation for Anomaly Detection"
(arXiv 2212.11285). Two conditional flows in one preprocessed space (an
:class:`EventScaler` fitted on the data's and the simulation's sideband events together):

1. a base flow p_sim(x | m) (CATHODE's conditional flow, :func:`~anomalyhunt.models.cathode.fit_flow`) fitted on the
   simulation events in the data's sidebands (outside the SR, within the data's mass range), then frozen;
2. a conditional transport f(x; m) (a zuko rational-quadratic spline coupling flow's transform, as in CURTAINs),
   trained by maximum likelihood on the sideband *data* with the simulation flow as its base distribution:
   log p_data(x | m) = log p_sim(f^-1(x; m) | m) + log |det df^-1/dx|.

The template: for each requested mass, a simulation event from the same ``mass_bin`` (TeV) bin is drawn (SR
simulation for SR masses; a bin with fewer than 20 simulation events takes the 20 nearest) and carried by f at its
*own* mass (the pairing f learned), reported at the requested mass, which it matches within the bin. The generator
never sees SR data; the simulation's SR events are its raw material.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import zuko

from .base import GENERATORS, TEMPLATE_DEFAULTS, TRAINING_DEFAULTS, TemplateGenerator
from .cathode import BASE_FLOW_DEFAULTS, base_flow_config, fit_flow, load_frozen_flow
from .nn import pick_device, seeded, train_loop
from .preprocessing import EventScaler, check_events, validation_split
from .simulation import draw_near, signal_region, simulation_sidebands

__all__ = ["Feta"]


@GENERATORS.register("feta")
class Feta(TemplateGenerator):
    """Simulation morphed into data by a transport flow over a frozen flow of the simulation (config keys:
    :attr:`DEFAULTS`). Needs a simulation sample (:meth:`set_simulation`) before :meth:`fit`.

    ``sr``: the signal region (the pipeline sets it; without it, the widest gap between the data masses). ``base_*``:
    the simulation flow (CATHODE's MAF). ``transforms``, ``hidden_features``, ``bins``, ``epochs``, ``lr``: the
    transport. ``mass_bin``: the width (TeV) of the mass bins simulation events are drawn from for a requested mass.
    """

    trains_on = "sidebands"
    needs_simulation = True
    DEFAULTS: dict[str, Any] = dict(
        **TRAINING_DEFAULTS,
        **TEMPLATE_DEFAULTS,
        **BASE_FLOW_DEFAULTS,
        sr=None,
        transforms=4,
        hidden_features=[64, 64],
        bins=8,
        epochs=20,
        batch_size=1024,
        lr=1e-3,
        mass_bin=0.02,
    )

    def __init__(self, **config: Any) -> None:
        super().__init__(**self.resolve_config(config))
        self._flow: zuko.flows.Flow | None = None
        self._base: zuko.flows.Flow | None = None
        self._scaler: EventScaler | None = None
        self._pool: tuple[np.ndarray, np.ndarray] | None = None  # the simulation events templates are made from
        self._sr: tuple[float, float] | None = None
        self.history: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return pick_device(self.config["device"])

    def _build(self, n_features: int) -> zuko.flows.Flow:
        """The transport: its ``transform`` at context m maps data to simulation (f^-1), its inverse simulation to
        data (f); coupling layers (passes=2), so both directions cost one pass."""
        c = self.config
        return zuko.flows.NSF(n_features, 1, transforms=int(c["transforms"]), bins=int(c["bins"]),
                              hidden_features=tuple(c["hidden_features"]), passes=2)  # fmt: skip

    def fit(
        self, x: np.ndarray, m: np.ndarray, x_val: np.ndarray | None = None, m_val: np.ndarray | None = None
    ) -> "Feta":
        """Fit the simulation flow on the simulation's sidebands, then the transport on the sideband data ``x`` at
        masses ``m`` (SR data events are refused)."""
        c = self.config
        x, m = check_events(x, m, "feta.fit")
        x_sim, m_sim = self.simulation(n_features=x.shape[1])
        if x_val is not None:
            x_val, m_val = check_events(x_val, m_val, "feta.fit (validation)")
        m_all = m if m_val is None else np.concatenate([m, m_val])
        self._sr = signal_region(c["sr"], m_all, "feta")
        if m_val is not None:
            signal_region(self._sr, m_val, "feta")
        sb = simulation_sidebands(m_sim, m_all, self._sr, "feta")
        self._scaler = EventScaler(c["preprocessing"], c["margin"]).fit(
            np.vstack([x, x_sim[sb]] + ([] if x_val is None else [x_val])), np.concatenate([m_all, m_sim[sb]]))

        def tensors(xa: np.ndarray, ma: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            z, mz = self._scaler.transform(xa, ma)
            return torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(mz, dtype=torch.float32)

        xs, ms = x_sim[sb], m_sim[sb]
        tr, va = validation_split(len(ms), c["val_fraction"], c["seed"])
        torch.manual_seed(c["seed"])
        self._base = fit_flow(x.shape[1], base_flow_config(c), tensors(xs[tr], ms[tr]), tensors(xs[va], ms[va]),
                              epochs=c["base_epochs"], lr=c["base_lr"], training=c)  # fmt: skip
        if x_val is None:
            tr, va = validation_split(len(m), c["val_fraction"], c["seed"])
            x, m, x_val, m_val = x[tr], m[tr], x[va], m[va]
        torch.manual_seed(c["seed"])
        flow = self._build(x.shape[1])
        base = self._base

        def nll(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            z, mz = batch
            u, ladj = flow(mz).transform.call_and_ladj(z)  # f^-1: data onto the simulation
            return -(base(mz).log_prob(u) + ladj).mean()

        hist = train_loop(flow, nll, tensors(x, m), tensors(x_val, m_val), epochs=c["epochs"],
                          batch_size=c["batch_size"], lr=c["lr"], weight_decay=c["weight_decay"],
                          patience=c["patience"], device=c["device"], seed=c["seed"], progress=c["progress"],
                          scheduler=c["scheduler"])  # fmt: skip
        flow.load_state_dict(hist.pop("best_states")[0])
        self._flow = flow.to(self.device).eval()
        self._pool = (x_sim, m_sim)
        self.history = hist
        return self

    @torch.no_grad()
    def sample(self, m: np.ndarray, *, region: tuple[float, float] | None = None, seed: int = 0) -> np.ndarray:
        """One event per mass in ``m``: a simulation event from the mass bin of ``m`` carried into data by f at its
        own mass (``region`` is not needed)."""
        if self._flow is None:
            raise RuntimeError("feta: not fitted (call fit or load_state_dict first)")
        x_sim, m_sim = self._pool
        idx = draw_near(m_sim, m, np.random.default_rng(seed), width=float(self.config["mass_bin"]))
        z, mz = self._scaler.transform(x_sim[idx], m_sim[idx])
        out = np.empty_like(z)
        bs = int(self.config["sample_batch"])
        with seeded(seed, self.device):
            for i in range(0, len(z), bs):
                zt = torch.as_tensor(z[i : i + bs], dtype=torch.float32, device=self.device)
                ct = torch.as_tensor(mz[i : i + bs], dtype=torch.float32, device=self.device)
                out[i : i + bs] = self._flow(ct).transform.inv(zt).cpu().double().numpy()
        return self._scaler.inverse_features(out)

    def state_dict(self) -> dict[str, Any]:
        if self._flow is None:
            raise RuntimeError("feta: not fitted")
        return {"flow": {k: v.detach().cpu() for k, v in self._flow.state_dict().items()},
                "base": {k: v.detach().cpu() for k, v in self._base.state_dict().items()},
                "scaler": self._scaler.state_dict(), "sr": list(self._sr), "x_sim": self._pool[0],
                "m_sim": self._pool[1],
                "history": {k: v for k, v in self.history.items() if k in ("train", "val", "best_epoch", "seconds")}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pool = (np.asarray(state["x_sim"]), np.asarray(state["m_sim"]))
        self._sr = (float(state["sr"][0]), float(state["sr"][1]))
        self._scaler = EventScaler(self.config["preprocessing"], self.config["margin"])
        self._scaler.load_state_dict(state["scaler"])
        d = self._pool[0].shape[1]
        self._base = load_frozen_flow(d, base_flow_config(self.config), state["base"], self.config["device"])
        self._flow = self._build(d)
        self._flow.load_state_dict(state["flow"])
        self._flow = self._flow.to(self.device).eval()
        self.history = dict(state.get("history", {}))
