"""SALAD: simulation reweighted to data by a classifier trained in the sidebands, with mjj as an input.

Andreassen, Nachman, Shih, "Simulation Assisted Likelihood-free Anomaly Detection" (PRD 101, 095004, 2020; arXiv
2001.05001). A classifier from the project's discriminator registry (default ``mlp``, a neural network as in the
paper: one 64-64-64 MLP, 15 epochs, batch 512, class-balanced; ``hgb``, the boosted-tree ensemble, is the other
choice) separates sideband data (label 1) from sideband simulation (label 0, outside the SR and within the data's
mass range) on (features, mjj). Its score p gives each simulation event the weight w = p / (1 - p), the likelihood
ratio p_data(x | m) / p_sim(x | m) (p clipped to [1e-6, 1 - 1e-6], w to ``max_weight``, default 10). The
classifier never sees an SR mass: simulation events in the SR are weighted at their own mjj by the network's
interpolation between the sidebands (smooth in mjj for the MLP; the HGB trees treat an SR mass as the nearest
sideband mass bin, piecewise constant).

The template: for each requested mass, a simulation event from the same ``mass_bin`` (TeV) bin drawn with
probability proportional to its weight (a bin with fewer than 20 simulation events takes the 20 nearest), so the
template's masses follow the requested ones within a bin. Weights of sideband simulation events (used only for
templates at sideband masses) come from the classifier that was trained on them.

``state_dict`` is plain: the simulation events, their weights and the fitted classifier as pickled bytes (to
recompute weights); sampling uses the weights, so a loaded model reproduces the same template for a seed.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import DISCRIMINATORS, GENERATORS, TEMPLATE_DEFAULTS, TemplateGenerator
from .nn import pick_device
from .preprocessing import check_events
from .simulation import draw_near, signal_region, simulation_sidebands

__all__ = ["Salad"]

#: Scores are clipped into [P_CLIP, 1 - P_CLIP] before w = p / (1 - p).
P_CLIP = 1e-6
#: SALAD's settings of each classifier (a user's ``classifier_config`` goes over them): one MLP of 15 epochs (template
#: AUC 0.496 / 0.508 on the test's mis-tuned simulation, 11-13 s; the HGB ensemble's defaults gave 0.524 / 0.523).
CLASSIFIER_DEFAULTS: dict[str, dict[str, Any]] = {"mlp": {"n_ensemble": 1, "epochs": 15, "batch_size": 512}}


@GENERATORS.register("salad")
class Salad(TemplateGenerator):
    """Simulation reweighted by a sideband data-vs-simulation classifier (config keys: :attr:`DEFAULTS`). Needs a
    simulation sample (:meth:`set_simulation`) before :meth:`fit`.

    ``sr``: the signal region (the pipeline sets it; without it, the widest gap between the data masses).
    ``classifier`` / ``classifier_config``: a registered discriminator and its options over SALAD's defaults for it
    (:data:`CLASSIFIER_DEFAULTS`; ``seed`` and ``device`` are added).
    ``max_weight``: the clip of w. ``mass_bin``: the width (TeV) of the mass bins template events are drawn from.
    """

    trains_on = "sidebands"
    needs_simulation = True
    DEFAULTS: dict[str, Any] = dict(
        **TEMPLATE_DEFAULTS,
        sr=None,
        classifier="mlp",
        classifier_config=None,
        device="auto",
        max_weight=10.0,
        mass_bin=0.02,
        seed=0,
        val_fraction=0.2,  # read by the pipeline's weighted fits; the classifier makes its own validation splits
    )

    def __init__(self, **config: Any) -> None:
        super().__init__(**self.resolve_config(config))
        if self.config["classifier"] not in DISCRIMINATORS:
            raise ConfigError(f"salad: unknown classifier {self.config['classifier']!r}; available: "
                              f"{', '.join(DISCRIMINATORS.names())}")  # fmt: skip
        if not float(self.config["max_weight"]) > 0:
            raise ConfigError("salad: max_weight must be > 0")
        self._clf: Any = None
        self._pool: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # simulation x, m and weights
        self._sr: tuple[float, float] | None = None

    def fit(
        self, x: np.ndarray, m: np.ndarray, x_val: np.ndarray | None = None, m_val: np.ndarray | None = None
    ) -> "Salad":
        """Train the classifier on sideband data ``x`` at masses ``m`` (a validation set joins them: the classifier
        splits its own) against the simulation's sidebands, and weight every simulation event."""
        c = self.config
        x, m = check_events(x, m, "salad.fit")
        if x_val is not None:
            x_val, m_val = check_events(x_val, m_val, "salad.fit (validation)")
            x, m = np.vstack([x, x_val]), np.concatenate([m, m_val])
        x_sim, m_sim = self.simulation(n_features=x.shape[1])
        self._sr = signal_region(c["sr"], m, "salad")
        sb = simulation_sidebands(m_sim, m, self._sr, "salad")
        inputs = np.vstack([np.column_stack([x, m]), np.column_stack([x_sim[sb], m_sim[sb]])])
        labels = np.r_[np.ones(len(m)), np.zeros(int(sb.sum()))]
        options = {**CLASSIFIER_DEFAULTS.get(c["classifier"], {}), **dict(c["classifier_config"] or {})}
        if c["classifier"] == "mlp":
            options.setdefault("device", str(pick_device(c["device"])))
        clf = DISCRIMINATORS.get(c["classifier"])(**{"seed": int(c["seed"]), **options})
        self._clf = clf.fit(inputs, labels)
        self._pool = (x_sim, m_sim, self.weights(x_sim, m_sim))
        return self

    def weights(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """w = p / (1 - p) of simulation events ``x`` at masses ``m``, p clipped to [1e-6, 1 - 1e-6], w to
        ``max_weight``."""
        if self._clf is None:
            raise RuntimeError("salad: not fitted (call fit or load_state_dict first)")
        p = np.clip(np.asarray(self._clf.score(np.column_stack([x, m])), np.float64), P_CLIP, 1.0 - P_CLIP)
        return np.minimum(p / (1.0 - p), float(self.config["max_weight"]))

    def sample(self, m: np.ndarray, *, region: tuple[float, float] | None = None, seed: int = 0) -> np.ndarray:
        """One simulation event per mass in ``m``, from its mass bin, drawn in proportion to the weights."""
        if self._pool is None:
            raise RuntimeError("salad: not fitted (call fit or load_state_dict first)")
        x_sim, m_sim, w = self._pool
        idx = draw_near(m_sim, m, np.random.default_rng(seed), width=float(self.config["mass_bin"]), weights=w)
        return x_sim[idx].copy()

    def state_dict(self) -> dict[str, Any]:
        if self._pool is None:
            raise RuntimeError("salad: not fitted")
        return {"x_sim": self._pool[0], "m_sim": self._pool[1], "weights": self._pool[2], "sr": list(self._sr),
                "classifier": pickle.dumps(self._clf)}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pool = (np.asarray(state["x_sim"]), np.asarray(state["m_sim"]), np.asarray(state["weights"]))
        self._sr = (float(state["sr"][0]), float(state["sr"][1]))
        self._clf = pickle.loads(state["classifier"])
