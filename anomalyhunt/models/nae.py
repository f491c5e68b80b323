"""Normalised autoencoder (NAE) on jet images: the DarkCLR talk's density estimator.

Yoon, Noh, Park, arXiv:2105.05735; on jets Dillon, Favaro, Plehn, Sorrenson, Kramer, arXiv:2206.14225 (talk 003:
"NAE Jet images", and its loss slide). The autoencoder's reconstruction error is read as the energy of a normalised
density, ``p(x) = exp(-E(x)) / Z`` with ``E(x) = |x - f(x)|^2 / T``; its negative log-likelihood has the gradient of
``<E(x)>_data - <E(x)>_model``, the second average over samples of the model itself. A plain autoencoder lowers the
error on data but also reconstructs simple, unseen jets well (its score measures complexity); the NAE raises the error
wherever the model puts probability that the data do not, so a simpler anomaly scores high too.

The model's samples come by Langevin Monte Carlo started on the decoder's manifold (the paper's on-manifold
initialisation): latent points drawn around the data's latents move along ``-grad_z E(decoder(z))``, then the decoded
images move in pixel-logit space (the images are distributions over pixels, as the decoder's softmax output).
Training starts from the plain :class:`~anomalyhunt.models.autoencoder.ImageAutoencoder` (pretraining), then takes
``nae_updates`` steps of ``E(x+) - E(x-) + gamma (E(x+)^2 + E(x-)^2)`` (the squared energies keep both finite). The
score is the reconstruction error, as for the autoencoder.

The registered method ``nae`` is the ``autoencoder`` method with this model.
"""

from __future__ import annotations

import time
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import Tensor

from .autoencoder import ImageAutoencoder, _images_tensor, jet_ae_method
from .nn import pick_device, seeded

__all__ = ["NormalisedImageAutoencoder", "langevin"]


def langevin(
    energy: Callable[[Tensor], Tensor], start: Tensor, steps: int, step_size: float, noise: float, gen: torch.Generator | None = None
) -> Tensor:
    """``steps`` Langevin updates ``v <- v - step_size * grad E(v) + noise * N(0, 1)`` of the rows of ``start``
    (``energy`` maps (n, ...) to (n,) energies); gradients of the model's parameters are not touched."""
    v = start.detach().clone()
    for _ in range(steps):
        v.requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(v).sum(), v)
        with torch.no_grad():
            step = torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device)
            v = v - step_size * grad + noise * step
    return v.detach()


class NormalisedImageAutoencoder(ImageAutoencoder):
    """:class:`ImageAutoencoder` trained further as an NAE; ``score`` is its reconstruction error.

    Energies are in units of ``temperature``, the training images' median error after pretraining, so data sit at
    ``E ~ 1``; ``gamma`` is then small: the loss is lowest at ``E(x-) = 1 / (2 gamma)`` (``gamma = 1`` would pull
    the samples down to half the data's energy). Latent chains start at the data latents' mean plus ``z_spread``
    times their spread (per dimension) in a random direction; ``z_steps`` / ``x_steps`` Langevin steps in latent and
    pixel-logit space follow, with noise ``sqrt(2 * step size)`` (samples of ``exp(-E)`` itself)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        **ImageAutoencoder.DEFAULTS,
        "nae_updates": 300, "nae_batch": 64, "nae_lr": 1e-3, "gamma": 0.01, "z_spread": 1.5,
        "z_steps": 20, "z_step_size": 0.05, "z_noise": 0.32, "x_steps": 20, "x_step_size": 0.5, "x_noise": 1.0,
    }  # fmt: skip
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        #: Longer chains and more updates, for a GPU (our sizes: the talk gives none for the NAE).
        "paper": {**ImageAutoencoder.PRESETS["paper"], "nae_updates": 5000, "z_steps": 50, "x_steps": 50},
    }

    def fit(self, images: np.ndarray) -> "NormalisedImageAutoencoder":
        """Pretrain as an autoencoder, then take ``nae_updates`` NAE steps on the same images."""
        super().fit(images)
        c = self.config
        x = _images_tensor(images, "NAE training images")
        model = self.model.to(self._device)
        with torch.no_grad():
            self.temperature = float(np.median(self.score(images)))
            latents = torch.cat([model.encode(b.to(self._device)) for b in x.split(2048)])
        self.latent_mean, self.latent_std = latents.mean(0), latents.std(0)
        opt = torch.optim.Adam(model.parameters(), lr=c["nae_lr"])
        gen = torch.Generator().manual_seed(int(c["seed"]) + 0x4AE)
        hist: dict[str, list[float]] = {"loss": [], "positive_energy": [], "negative_energy": []}
        start = time.perf_counter()
        bar = None
        if c["progress"]:
            from tqdm.auto import tqdm

            bar = tqdm(total=c["nae_updates"], desc="NAE", unit="update")
        with seeded(int(c["seed"])):
            for _ in range(int(c["nae_updates"])):
                negative = self.sample(c["nae_batch"], gen)
                positive = x[torch.randint(len(x), (c["nae_batch"],), generator=gen)].to(self._device)
                loss = self.loss(positive, negative, hist)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        self.history.update(nae_temperature=self.temperature, nae_seconds=time.perf_counter() - start,
                            **{f"nae_{k}": v for k, v in hist.items()})  # fmt: skip
        return self

    @property
    def _device(self) -> torch.device:
        return pick_device(self.config["device"])

    def _energy(self, images: Tensor) -> Tensor:
        """``E(x) = |x - f(x)|^2 / T`` per image of a (n, 1, P, P) tensor (differentiable)."""
        scale = float(images.shape[-1] ** 2)
        return ((self.model(images) - images) * scale).pow(2).flatten(1).mean(1) / self.temperature

    def loss(self, positive: Tensor, negative: Tensor, history: dict[str, list[float]] | None = None) -> Tensor:
        """``<E(x+)> - <E(x-)> + gamma (<E(x+)^2> + <E(x-)^2>)`` for data images ``positive`` and model samples
        ``negative``; appends the loss and mean energies to ``history`` when given."""
        e_pos, e_neg = self._energy(positive), self._energy(negative)
        loss = e_pos.mean() - e_neg.mean() + self.config["gamma"] * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        if history is not None:
            history["loss"].append(float(loss.detach()))
            history["positive_energy"].append(float(e_pos.mean().detach()))
            history["negative_energy"].append(float(e_neg.mean().detach()))
        return loss

    def _decode_logits(self, z: Tensor) -> Tensor:
        return self.model.decoder(z) + self.model.pixel_bias

    @staticmethod
    def _as_image(logits: Tensor) -> Tensor:
        return torch.softmax(logits.flatten(1), dim=1).view_as(logits)

    def sample(self, n: int, gen: torch.Generator | None = None) -> Tensor:
        """``n`` samples of the model's density (n, 1, P, P) by the training's Langevin chains: latent points around
        the data's latents moved along ``-grad E(decoder(z))``, then the decoded images' pixel logits."""
        c = self.config
        if self.model is None or not hasattr(self, "latent_mean"):
            raise RuntimeError("NormalisedImageAutoencoder.sample called before fit")
        direction = torch.randn((n, len(self.latent_mean)), generator=gen).to(self._device)
        z0 = self.latent_mean + c["z_spread"] * self.latent_std * direction
        z = langevin(lambda v: self._energy(self._as_image(self._decode_logits(v))), z0, c["z_steps"],
                     c["z_step_size"], c["z_noise"], gen)  # fmt: skip
        u = langevin(lambda v: self._energy(self._as_image(v)), self._decode_logits(z), c["x_steps"],
                     c["x_step_size"], c["x_noise"], gen)  # fmt: skip
        return self._as_image(u).detach()


NAE_METHOD = jet_ae_method(
    "nae", NormalisedImageAutoencoder,
    "normalised autoencoder on jet images (NAE); score = combined reconstruction-error quantiles of both jets",
)
