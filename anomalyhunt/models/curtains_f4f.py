"""CURTAINs for flows: the CURTAINs transport trained by maximum likelihood on top of a conditional base flow.

Sengupta, Klein, Raine, Golling, "CURTAINs flows for flows: constructing unobserved regions with maximum likelihood
estimation" (arXiv 2305.04646). First a base flow learns the sideband density p(x | m) (CATHODE's conditional flow);
then the transport f(x; m_a, m_b) of :class:`~anomalyhunt.models.curtains.Curtains` (same network, same pairs of
sideband events, same template: sideband events carried to SR masses) is trained with the base density as its base
distribution: an event x at m_b has log p(x | m_b) = log p_base(f^-1(x; m_a, m_b) | m_a) + log |det df^-1/dx|, for
the mass m_a of the other event of its pair, in both directions. The likelihood replaces CURTAINs' optimal-transport
distance, which needs large batches and matches distributions only as far as its projections see them.

Both flows work in the same preprocessed space (the transport's fitted :class:`EventScaler`), so the base's density
is the one the transport's Jacobian refers to.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import zuko

from .base import GENERATORS
from .cathode import BASE_FLOW_DEFAULTS, base_flow_config, fit_flow, load_frozen_flow
from .curtains import Curtains

__all__ = ["CurtainsF4F"]


@GENERATORS.register("curtains-f4f")
class CurtainsF4F(Curtains):
    """CURTAINs with a base flow and a likelihood loss (config keys: :attr:`DEFAULTS`; those of
    :class:`~anomalyhunt.models.curtains.Curtains` but the OT settings, plus the base flow's: ``base_flow``,
    ``base_transforms``, ``base_hidden_features``, ``base_epochs``, ``base_lr``)."""

    DEFAULTS: dict[str, Any] = {
        **{k: v for k, v in Curtains.DEFAULTS.items() if k not in ("n_projections", "mass_weight")},
        **BASE_FLOW_DEFAULTS,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self._base: zuko.flows.Flow | None = None

    def _objective(self, flow: zuko.flows.Flow, z: np.ndarray, mz: np.ndarray, tr: np.ndarray,
                   va: np.ndarray) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
        """Fit the base flow on the training events (the transport's validation events stay out of it), then the
        negative log-likelihood of both events of a pair, each carried onto the other's mass and scored there."""

        def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.as_tensor(z[idx], dtype=torch.float32), torch.as_tensor(mz[idx], dtype=torch.float32)

        self._base = fit_flow(z.shape[1], base_flow_config(self.config), tensors(tr), tensors(va),
                              epochs=self.config["base_epochs"], lr=self.config["base_lr"], training=self.config)

        def likelihood_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            z_lo, z_hi, ctx = batch
            t = flow(ctx).transform  # maps an event at m_a (ctx[:, 0]) to m_b (ctx[:, 1])
            m_a, m_b = ctx[:, :1], ctx[:, :1] + ctx[:, 1:]
            down, ladj_down = t.inv.call_and_ladj(z_hi)  # the upper event at the lower mass
            up, ladj_up = t.call_and_ladj(z_lo)
            return -(self._base(m_a).log_prob(down) + ladj_down + self._base(m_b).log_prob(up) + ladj_up).mean()

        return likelihood_loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["base"] = {k: v.detach().cpu() for k, v in self._base.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._base = load_frozen_flow(self._x.shape[1], base_flow_config(self.config), state["base"],
                                      self.config["device"])
