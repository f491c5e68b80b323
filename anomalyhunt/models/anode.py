"""ANODE and R-ANODE: density-ratio anomaly scores against a background flow fitted on the sidebands.

* ANODE (Nachman & Shih, PRD 101, 075042, 2020): a second conditional flow learns the SR data density; the score is
  log p_data(x | m) - log p_bkg(x | m).
* R-ANODE (Das, Kasieczka & Shih, arXiv 2312.11629): the background flow is kept fixed and only a signal flow and
  the signal fraction w are fitted to the SR data, maximising sum log(w p_sig(x | m) + (1 - w) p_bkg(x | m)); the
  score is log p_sig - log p_bkg. Learning only the signal part is what lets it work with little signal, where
  ANODE's two independently learned densities differ mostly by their own errors.

The background flow is CATHODE's (:class:`~anomalyhunt.models.cathode.Cathode`, the sidebands only); both SR flows
model the same preprocessed space as it, so the preprocessing's Jacobian cancels in the ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .base import DENSITY_RATIOS, DensityRatioModel
from .cathode import Cathode, build_flow
from .nn import pick_device, train_loop
from .preprocessing import check_events, validation_split

__all__ = ["Anode", "RAnode"]

#: Flow and training keys shared by the background flow and the SR flows.
_FLOW = dict(flow="maf", transforms=6, hidden_features=[96, 96], bins=8, batch_size=1024, lr=3e-3, weight_decay=0.0,
             scheduler="cosine", patience=10, val_fraction=0.2)  # fmt: skip


class _FlowRatio(DensityRatioModel):
    """The shared part: CATHODE's background flow, the SR flow's training and the score."""

    DEFAULTS: dict[str, Any] = dict(
        **_FLOW, preprocessing="logit", margin=0.01, background_epochs=20, epochs=20, seed=0, device="auto",
        progress=False,
    )  # fmt: skip

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.background: Cathode | None = None

    def fit_background(self, x: np.ndarray, m: np.ndarray) -> "_FlowRatio":
        c = self.config
        self.background = Cathode(
            **{k: c[k] for k in (*_FLOW, "preprocessing", "margin", "seed", "device", "progress")},
            epochs=c["background_epochs"],
        ).fit(x, m)
        return self

    def _tensors(self, x: np.ndarray, m: np.ndarray, source: str) -> tuple[torch.Tensor, ...]:
        """Preprocessed events, masses and their background log-density (fixed: the background is not refitted)."""
        if self.background is None:
            raise RuntimeError(f"{type(self).__name__}: fit_background first")
        x, m = check_events(x, m, source)
        z, mz = self.background.preprocess(x, m)
        log_bkg = self.background.log_prob_preprocessed(z, mz)
        return tuple(torch.as_tensor(a, dtype=torch.float32) for a in (z, mz, log_bkg))

    def _module(self, n_features: int) -> nn.Module:
        raise NotImplementedError

    def fit_sr(self, x: np.ndarray, m: np.ndarray) -> nn.Module:
        c = self.config
        data = self._tensors(x, m, f"{type(self).__name__.lower()}.fit_sr")
        tr, va = validation_split(len(data[0]), c["val_fraction"], c["seed"])
        torch.manual_seed(c["seed"])
        module = self._module(data[0].shape[1])
        hist = train_loop(
            module, lambda b: -module.log_likelihood(*b).mean(), tuple(t[tr] for t in data),
            tuple(t[va] for t in data), epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
            weight_decay=c["weight_decay"], patience=c["patience"], device=c["device"], seed=c["seed"],
            progress=c["progress"], scheduler=c["scheduler"],
        )  # fmt: skip
        module.load_state_dict(hist["best_states"][0])
        return module.to(pick_device(c["device"])).eval()

    @torch.no_grad()
    def score(self, part: nn.Module, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        z, mz, log_bkg = self._tensors(x, m, f"{type(self).__name__.lower()}.score")
        dev, out = pick_device(self.config["device"]), []
        for i in range(0, len(z), 100_000):
            out.append(part.log_numerator(z[i : i + 100_000].to(dev), mz[i : i + 100_000].to(dev)).cpu())
        return (torch.cat(out) - log_bkg).double().numpy()


class _DataFlow(nn.Module):
    """ANODE's SR part: a conditional flow of all SR data (its log-density is the score's numerator)."""

    def __init__(self, n_features: int, config: dict[str, Any]) -> None:
        super().__init__()
        self.flow = build_flow(n_features, config)

    def log_numerator(self, z: torch.Tensor, mz: torch.Tensor) -> torch.Tensor:
        return self.flow(mz).log_prob(z)

    def log_likelihood(self, z: torch.Tensor, mz: torch.Tensor, log_bkg: torch.Tensor) -> torch.Tensor:
        return self.log_numerator(z, mz)


class _SignalMixture(_DataFlow):
    """R-ANODE's SR part: a signal flow and the signal fraction w, mixed with the fixed background density."""

    def __init__(self, n_features: int, config: dict[str, Any], w_init: float) -> None:
        super().__init__(n_features, config)
        self.logit_w = nn.Parameter(torch.logit(torch.tensor(float(w_init))))

    def log_likelihood(self, z: torch.Tensor, mz: torch.Tensor, log_bkg: torch.Tensor) -> torch.Tensor:
        log_w, log_1mw = nn.functional.logsigmoid(self.logit_w), nn.functional.logsigmoid(-self.logit_w)
        return torch.logaddexp(log_w + self.log_numerator(z, mz), log_1mw + log_bkg)

    @property
    def w(self) -> float:
        return float(torch.sigmoid(self.logit_w.detach()))


@DENSITY_RATIOS.register("anode")
class Anode(_FlowRatio):
    """ANODE: SR data flow over sideband background flow (config keys: :attr:`DEFAULTS`)."""

    def _module(self, n_features: int) -> nn.Module:
        return _DataFlow(n_features, self.config)


@DENSITY_RATIOS.register("r-anode")
class RAnode(_FlowRatio):
    """R-ANODE: a signal flow and fraction ``w`` (starting at ``w_init``) fitted to the SR data with the sideband
    background flow fixed (config keys: :attr:`DEFAULTS`)."""

    DEFAULTS: dict[str, Any] = {**_FlowRatio.DEFAULTS, "w_init": 0.01}

    def _module(self, n_features: int) -> nn.Module:
        return _SignalMixture(n_features, self.config, self.config["w_init"])
