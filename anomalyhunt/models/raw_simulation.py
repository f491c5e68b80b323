"""The background simulation itself as the template: the baseline FETA and SALAD are judged against.

The template is simulation events drawn at the requested masses (each simulation event of a ``mass_bin`` TeV bin once
before any repeats; :func:`~anomalyhunt.models.simulation.draw_near`), with no morphing and no weights: whatever the
simulation mismodels stays in the template, so its template AUC against the true SR background measures what the
simulation-assisted methods have to correct.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import GENERATORS, TEMPLATE_DEFAULTS, TemplateGenerator
from .preprocessing import check_events
from .simulation import draw_near, signal_region

__all__ = ["RawSimulation"]


@GENERATORS.register("raw-simulation")
class RawSimulation(TemplateGenerator):
    """Simulation events as the template (config keys: :attr:`DEFAULTS`). Needs a simulation sample
    (:meth:`set_simulation`) before :meth:`fit`, which only checks the data's sidebands against it.

    ``sr``: the signal region (the pipeline sets it; without it, the widest gap between the data masses).
    ``mass_bin``: the width (TeV) of the mass bins template events are drawn from.
    """

    trains_on = "sidebands"
    needs_simulation = True
    DEFAULTS: dict[str, Any] = dict(**TEMPLATE_DEFAULTS, sr=None, mass_bin=0.02, seed=0, val_fraction=0.2)

    def __init__(self, **config: Any) -> None:
        super().__init__(**self.resolve_config(config))
        self._pool: tuple[np.ndarray, np.ndarray] | None = None

    def fit(
        self, x: np.ndarray, m: np.ndarray, x_val: np.ndarray | None = None, m_val: np.ndarray | None = None
    ) -> "RawSimulation":
        """Nothing is learned: the data (sidebands only, like every sideband generator) fix the SR; the simulation
        becomes the pool templates are drawn from."""
        x, m = check_events(x, m, "raw-simulation.fit")
        signal_region(self.config["sr"], m if m_val is None else np.concatenate([m, m_val]), "raw-simulation")
        x_sim, m_sim = self.simulation(n_features=x.shape[1])
        self._pool = (x_sim, m_sim)
        return self

    def sample(self, m: np.ndarray, *, region: tuple[float, float] | None = None, seed: int = 0) -> np.ndarray:
        """One simulation event per mass in ``m``, from its mass bin."""
        if self._pool is None:
            raise RuntimeError("raw-simulation: not fitted (call fit or load_state_dict first)")
        x_sim, m_sim = self._pool
        idx = draw_near(m_sim, m, np.random.default_rng(seed), width=float(self.config["mass_bin"]))
        return x_sim[idx].copy()

    def state_dict(self) -> dict[str, Any]:
        if self._pool is None:
            raise RuntimeError("raw-simulation: not fitted")
        return {"x_sim": self._pool[0], "m_sim": self._pool[1]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pool = (np.asarray(state["x_sim"]), np.asarray(state["m_sim"]))
