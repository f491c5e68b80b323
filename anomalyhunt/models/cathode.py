"""CATHODE: a conditional normalizing flow p(x | m) trained on the sidebands and sampled in the signal region.

Hallin et al., "Classifying anomalies through outer density estimation" (PRD 106, 055006, 2022). The flow is a zuko
MAF (or NSF) conditioned on the standardised dijet mass; the features are preprocessed (min-max -> logit ->
standardise) so that bounded features have unbounded support. Training uses early stopping on a validation split and
keeps the ``keep_best`` best epochs, which are sampled as an equal-weight mixture (the paper averages its 10 best).

:func:`sample_sr_masses` draws template masses from a KDE of the SR data, as the pipeline does before sampling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import zuko

from ..errors import InputError
from .base import GENERATORS, TEMPLATE_DEFAULTS, TRAINING_DEFAULTS, TemplateGenerator
from .nn import pick_device, seeded, train_loop
from .preprocessing import EventScaler, check_events, validation_split

__all__ = ["BASE_FLOW_DEFAULTS", "Cathode", "base_flow_config", "build_flow", "fit_flow", "load_frozen_flow",
           "sample_sr_masses"]


def sample_sr_masses(
    m_sr: np.ndarray,
    n: int,
    seed: int = 0,
    bandwidth: float | str | None = None,
    bounds: tuple[float, float] | None = None,
) -> np.ndarray:
    """Draw ``n`` masses from a Gaussian KDE of the signal-region masses ``m_sr``.

    ``bandwidth`` is in the units of ``m_sr`` (TeV in the pipeline; CATHODE used 0.01 TeV), or ``None``/"scott" for
    Scott's rule. Draws outside ``bounds`` (default: the range of ``m_sr``) are redrawn, so the kernel tails do not
    push template events out of the SR.
    """
    from sklearn.neighbors import KernelDensity

    m_sr = np.asarray(m_sr, dtype=np.float64).reshape(-1)
    if len(m_sr) < 2 or not np.all(np.isfinite(m_sr)):
        raise InputError("signal-region masses", "need at least two finite masses for a KDE")
    lo, hi = bounds if bounds is not None else (m_sr.min(), m_sr.max())
    kde = KernelDensity(kernel="gaussian", bandwidth="scott" if bandwidth is None else bandwidth)
    kde.fit(m_sr[:, None])
    rng = np.random.default_rng(seed)
    out = np.empty(0)
    for _ in range(100):
        draw = kde.sample(max(2 * (n - len(out)), 16), random_state=int(rng.integers(2**31))).reshape(-1)
        out = np.concatenate([out, draw[(draw >= lo) & (draw <= hi)]])
        if len(out) >= n:
            return out[:n]
    raise InputError("signal-region masses", f"KDE draws almost never fall in [{lo}, {hi}]; check the bandwidth")


def build_flow(n_features: int, config: dict[str, Any]) -> zuko.flows.Flow:
    """The conditional flow (one context feature: the standardised mass) described by ``config``."""
    kind = config["flow"]
    common = dict(transforms=int(config["transforms"]), hidden_features=tuple(config["hidden_features"]))
    if kind == "maf":
        return zuko.flows.MAF(n_features, 1, **common)
    if kind == "nsf":
        return zuko.flows.NSF(n_features, 1, bins=int(config["bins"]), **common)
    raise ValueError(f"cathode: unknown flow {kind!r}; use 'maf' or 'nsf'")


#: The frozen base flow of a transport trained on top of it (CURTAINs for flows, FETA): CATHODE's MAF, its own epochs
#: and learning rate (config keys of those generators, read by :func:`base_flow_config`).
BASE_FLOW_DEFAULTS: dict[str, Any] = dict(base_flow="maf", base_transforms=6, base_hidden_features=[96, 96],
                                          base_epochs=20, base_lr=3e-3)  # fmt: skip


def base_flow_config(config: dict[str, Any]) -> dict[str, Any]:
    """The :func:`build_flow` config of the base flow described by ``config``'s ``base_*`` keys (and ``bins``)."""
    return dict(flow=config["base_flow"], transforms=config["base_transforms"],
                hidden_features=config["base_hidden_features"], bins=config["bins"])  # fmt: skip


def _frozen(flow: zuko.flows.Flow, device: str) -> zuko.flows.Flow:
    return flow.to(pick_device(device)).eval().requires_grad_(False)


def load_frozen_flow(n_features: int, flow_config: dict[str, Any], state: dict[str, Any],
                     device: str) -> zuko.flows.Flow:
    """A flow saved by ``state_dict``, restored frozen on ``device`` (as :func:`fit_flow` returns it)."""
    flow = build_flow(n_features, flow_config)
    flow.load_state_dict(state)
    return _frozen(flow, device)


def fit_flow(
    n_features: int, flow_config: dict[str, Any], train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor], *, epochs: int, lr: float, training: dict[str, Any],
) -> zuko.flows.Flow:
    """A conditional flow (:func:`build_flow` with ``flow_config``) fitted by maximum likelihood on preprocessed
    (events, masses) tensors ``train`` (early stopping on ``val``), with the loop settings of ``training`` (the
    :data:`~anomalyhunt.models.base.TRAINING_DEFAULTS` keys and ``batch_size``); returned at its best epoch on
    ``training['device']``, frozen (eval mode, no gradients): the base density of a transport trained on top of it
    (CURTAINs for flows, FETA)."""
    c = training
    flow = build_flow(n_features, flow_config)

    def nll(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return -flow(batch[1]).log_prob(batch[0]).mean()

    hist = train_loop(flow, nll, train, val, epochs=epochs, batch_size=c["batch_size"], lr=lr,
                      weight_decay=c["weight_decay"], patience=c["patience"], device=c["device"], seed=c["seed"],
                      progress=c["progress"], scheduler=c["scheduler"])  # fmt: skip
    flow.load_state_dict(hist["best_states"][0])
    return _frozen(flow, c["device"])


@GENERATORS.register("cathode")
class Cathode(TemplateGenerator):
    """Conditional normalizing flow trained on the sidebands (config keys: :attr:`DEFAULTS`).

    ``kde_bandwidth``, ``oversample`` and ``n_template`` are not used by the flow: the pipeline reads them to draw
    the template masses with :func:`sample_sr_masses` (``n_template`` None = ``oversample`` x the SR size).
    """

    trains_on = "sidebands"
    DEFAULTS: dict[str, Any] = dict(
        **TRAINING_DEFAULTS,
        **TEMPLATE_DEFAULTS,
        flow="maf",
        transforms=6,
        hidden_features=[96, 96],
        bins=8,
        epochs=20,
        batch_size=1024,
        lr=3e-3,
        keep_best=1,
    )
    PRESETS: dict[str, dict[str, Any]] = {
        # Hallin et al. 2022: MAF with 15 MADE blocks of 128 hidden units, 100 epochs, batch 256, lr 1e-4, the 10
        # best validation epochs averaged, SR masses from a KDE (bandwidth 0.01 TeV), 400k template events.
        "paper": dict(
            flow="maf", transforms=15, hidden_features=[128, 128], epochs=100, batch_size=256, lr=1e-4,
            scheduler=None, patience=None, keep_best=10, kde_bandwidth=0.01, n_template=400_000,
        ),
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**self.resolve_config(config))
        self._flows: list[zuko.flows.Flow] = []
        self._scaler: EventScaler | None = None
        self._n_features: int | None = None
        self.history: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return pick_device(self.config["device"])

    def fit(
        self,
        x: np.ndarray,
        m: np.ndarray,
        x_val: np.ndarray | None = None,
        m_val: np.ndarray | None = None,
    ) -> "Cathode":
        """Train on sideband events ``x`` (n, d) at masses ``m`` (n,); without a validation set, ``val_fraction``
        of the events is held out for early stopping."""
        c = self.config
        x, m = check_events(x, m, "cathode.fit")
        if x_val is None:
            tr, va = validation_split(len(x), c["val_fraction"], c["seed"])
            x, m, x_val, m_val = x[tr], m[tr], x[va], m[va]
        else:
            x_val, m_val = check_events(x_val, m_val, "cathode.fit (validation)")
        self._n_features = x.shape[1]
        self._scaler = EventScaler(c["preprocessing"], c["margin"]).fit(x, m)
        torch.manual_seed(c["seed"])
        flow = build_flow(self._n_features, c)

        def tensors(xa: np.ndarray, ma: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            z, mz = self._scaler.transform(xa, ma)
            return torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(mz, dtype=torch.float32)

        def nll(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return -flow(batch[1]).log_prob(batch[0]).mean()

        hist = train_loop(
            flow, nll, tensors(x, m), tensors(x_val, m_val), epochs=c["epochs"], batch_size=c["batch_size"],
            lr=c["lr"], weight_decay=c["weight_decay"], patience=c["patience"], device=c["device"], seed=c["seed"],
            progress=c["progress"], keep_best=c["keep_best"], scheduler=c["scheduler"],
        )
        self._set_states(hist.pop("best_states"))
        self.history = hist
        return self

    def _set_states(self, states: list[dict[str, torch.Tensor]]) -> None:
        self._flows = []
        for state in states:
            flow = build_flow(self._n_features, self.config)
            flow.load_state_dict(state)
            self._flows.append(flow.to(self.device).eval())

    def _check_fitted(self) -> None:
        if not self._flows:
            raise RuntimeError("cathode: not fitted (call fit or load_state_dict first)")

    @torch.no_grad()
    def sample(self, m: np.ndarray, *, region: tuple[float, float] | None = None, seed: int = 0) -> np.ndarray:
        """One event per mass in ``m`` (``region`` is not needed: the flow is evaluated at each mass)."""
        self._check_fitted()
        m = np.asarray(m, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(m)):
            raise InputError("cathode.sample", "NaN or infinite masses")
        mz = torch.as_tensor(self._scaler.transform_mass(m), dtype=torch.float32, device=self.device)
        z = torch.empty(len(m), self._n_features, device=self.device)
        member = torch.arange(len(m), device=self.device) % len(self._flows)
        bs = int(self.config["sample_batch"])
        with seeded(seed, self.device):
            for k, flow in enumerate(self._flows):
                idx = torch.nonzero(member == k).reshape(-1)
                for i in range(0, len(idx), bs):
                    part = idx[i : i + bs]
                    z[part] = self._draw(flow, mz[part])
        return self._scaler.inverse_features(z.cpu().double().numpy())

    @torch.no_grad()
    def latent(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """The first kept flow's map of events at masses ``m`` onto its standard-normal base: background lands on
        N(0, I) at every mass the flow learned or interpolates (LaCATHODE, arXiv 2210.14924)."""
        self._check_fitted()
        x, m = check_events(x, m, "cathode.latent")
        z, mz = self._scaler.transform(x, m)
        flow, bs = self._flows[0], int(self.config["sample_batch"])
        out = np.empty((len(x), self._n_features))
        for i in range(0, len(x), bs):
            zt = torch.as_tensor(z[i : i + bs], dtype=torch.float32, device=self.device)
            ct = torch.as_tensor(mz[i : i + bs], dtype=torch.float32, device=self.device)
            out[i : i + bs] = flow(ct).transform(zt).cpu().double().numpy()
        return out

    def preprocess(self, x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Events and masses in the space the flow models (its fitted preprocessing)."""
        self._check_fitted()
        return self._scaler.transform(x, m)

    @torch.no_grad()
    def log_prob_preprocessed(self, z: np.ndarray, mz: np.ndarray) -> np.ndarray:
        """log p(z | m) of preprocessed events (:meth:`preprocess`): the kept flows' equal-weight mixture."""
        self._check_fitted()
        bs = int(self.config["sample_batch"])
        out = np.empty((len(self._flows), len(z)))
        for k, flow in enumerate(self._flows):
            for i in range(0, len(z), bs):
                zt = torch.as_tensor(z[i : i + bs], dtype=torch.float32, device=self.device)
                ct = torch.as_tensor(mz[i : i + bs], dtype=torch.float32, device=self.device)
                out[k, i : i + bs] = flow(ct).log_prob(zt).cpu().double().numpy()
        return np.logaddexp.reduce(out, axis=0) - np.log(len(self._flows))

    @staticmethod
    def _draw(flow: zuko.flows.Flow, context: torch.Tensor) -> torch.Tensor:
        out = flow(context).sample()
        # An autoregressive inverse can overflow for rare extreme base draws; redraw those rows.
        for _ in range(10):
            bad = ~torch.isfinite(out).all(dim=1)
            if not bad.any():
                return out
            out[bad] = flow(context[bad]).sample()
        raise FloatingPointError("cathode: the flow keeps producing non-finite samples")

    def state_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "n_features": self._n_features,
            "scaler": self._scaler.state_dict(),
            "flows": [{k: v.detach().cpu() for k, v in f.state_dict().items()} for f in self._flows],
            "history": {k: v for k, v in self.history.items() if k in ("train", "val", "best_epoch", "seconds")},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._n_features = int(state["n_features"])
        self._scaler = EventScaler(self.config["preprocessing"], self.config["margin"])
        self._scaler.load_state_dict(state["scaler"])
        self._set_states(state["flows"])
        self.history = dict(state.get("history", {}))
