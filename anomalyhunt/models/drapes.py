"""DRAPES: a conditional EDM diffusion model of p(x | m) trained on the sidebands.

Sengupta, Leigh, Raine, Klein, Golling, "Improving new physics searches with diffusion models for event observables
and jet constituents" (arXiv:2312.10130, "Drapes"), built on the EDM formulation of Karras et al., "Elucidating the
design space of diffusion-based generative models" (NeurIPS 2022):

* preconditioning ``D(x; sigma, m) = c_skip x + c_out F(c_in x; c_noise, m)`` with ``c_skip = sd^2 / (sigma^2 + sd^2)``,
  ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``, ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = ln(sigma) / 4``;
* training noise levels ``ln sigma ~ N(P_mean, P_std^2)`` and loss weight ``(sigma^2 + sd^2) / (sigma sd)^2``;
* deterministic Heun (2nd order) sampling on the schedule ``sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) -
  smax^(1/rho)))^rho``.

``mode="full"`` generates from pure noise at ``sigma_max`` (DRAPES "Phi"). ``mode="partial"`` takes real seed events,
noises them up to ``sigma_prime`` and denoises them at the template mass; ``seed_source`` says where seeds come from:

* ``"sidebands"``: the training events, kept in the model (they are saved in ``state_dict`` under ``"seeds"``);
* ``"sr"``: the signal-region data handed to :meth:`Drapes.condition_on_region` (the pipeline calls it before
  sampling; they are not saved);
* ``"simulation"``: the background simulation sample of the protocol
  (:meth:`~anomalyhunt.models.base.TemplateGenerator.set_simulation`, which the pipeline calls before ``fit`` with
  ``hunt --simulation FILE``, as for FETA and SALAD); still accepted, and used when no sample was set: an ``.npz``
  file at ``simulation_path`` with arrays ``x`` (n, d) and ``m`` (n,) in the same features and units as the fit
  data, or arrays given to :meth:`Drapes.set_seed_events` after ``fit``. Simulation seeds are not saved.

Seeds are drawn at random (seeded) for the requested masses; with ``use_seed_mass=True`` each seed is instead denoised
at its own mass (the paper's SR-seeded variant, which keeps the SR mass distribution; only the count of ``m`` is used).

:func:`sigma_prime_scan` samples one template per ``sigma_prime`` for the DRAPES scan.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, InputError
from .base import GENERATORS, TEMPLATE_DEFAULTS, TRAINING_DEFAULTS, TemplateGenerator
from .nn import FrequencyEmbedding, ResidualMLP, pick_device, seeded, train_loop
from .preprocessing import EventScaler, check_events, validation_split

__all__ = ["Drapes", "EDMDenoiser", "EDMNoiseContext", "edm_loss", "karras_sigmas", "partial_schedule", "heun_sampler",
           "sigma_prime_scan"]


def karras_sigmas(n_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """The EDM noise schedule: ``n_steps`` levels from ``sigma_max`` down to ``sigma_min``, then a final 0."""
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    if n_steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    i = torch.arange(n_steps, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + i / (n_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv**rho, torch.zeros(1, dtype=torch.float64)])


def partial_schedule(full: Tensor, sigma_prime: float) -> Tensor:
    """The steps of the full schedule ``full`` (ending in 0) from ``sigma_prime`` down: ``sigma_prime``, then the
    full schedule's levels below it. Partial diffusion thus costs the fraction of the steps that lie below sigma',
    which is its speed-up over full generation: 7 of 25 levels lie below sigma' = 2.24 on the default schedule
    (rho = 3; EDM's rho = 7 puts 12 there, half of the steps)."""
    below = full[:-1][full[:-1] < sigma_prime * (1 - 1e-9)]  # sigma_max ** (1/rho) ** rho is off in the last bit
    return torch.cat([torch.tensor([float(sigma_prime)], dtype=full.dtype), below, full[-1:]])


class EDMNoiseContext(nn.Module):
    """Karras et al.'s preconditioning of a denoiser ``D = c_skip x + c_out F(c_in x; context)`` and the noise part
    of ``F``'s context: ``c_noise = ln(sigma) / 4`` and a frequency embedding of ``ln sigma`` mapped onto [0, 1] over
    [sigma_min, sigma_max] (shared by the feature-level and the constituent-level denoisers)."""

    def __init__(self, n_noise_freqs: int = 4, sigma_data: float = 1.0, sigma_min: float = 0.002,
                 sigma_max: float = 80.0) -> None:  # fmt: skip
        super().__init__()
        self.sigma_data, self.sigma_min, self.sigma_max = float(sigma_data), float(sigma_min), float(sigma_max)
        self.embedding = FrequencyEmbedding(n_noise_freqs)

    @property
    def out_dim(self) -> int:
        return 1 + self.embedding.out_dim

    def forward(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``sigma`` (n, 1) -> ``c_skip, c_out, c_in`` (n, 1) and the noise context (n, :attr:`out_dim`)."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / torch.sqrt(sigma**2 + sd2)
        c_in = 1.0 / torch.sqrt(sigma**2 + sd2)
        s = (torch.log(sigma) - math.log(self.sigma_min)) / (math.log(self.sigma_max) - math.log(self.sigma_min))
        return c_skip, c_out, c_in, torch.cat([torch.log(sigma) / 4.0, self.embedding(s)], dim=-1)


def edm_loss(denoise: Callable[[Tensor, Tensor], Tensor], z: Tensor, p_mean: float, p_std: float,
             sigma_data: float, mask: Tensor | None = None) -> Tensor:  # fmt: skip
    """EDM's training loss on clean (preprocessed) ``z`` (n, ...): noise levels ``ln sigma ~ N(p_mean, p_std^2)``
    per event, weight ``(sigma^2 + sd^2) / (sigma sd)^2``; ``denoise(noisy, sigma)`` with ``sigma`` (n, 1). With
    ``mask`` (the shape of ``z`` without its last axis) only the real entries count (padded constituents)."""
    shape = (len(z),) + (1,) * (z.ndim - 1)
    sigma = torch.exp(p_mean + p_std * torch.randn(shape, device=z.device))
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    noise = torch.randn_like(z) * sigma
    if mask is not None:
        noise = noise * mask[..., None]
    err = weight * (denoise(z + noise, sigma.reshape(-1, 1)) - z) ** 2
    if mask is None:
        return err.mean()
    return (err * mask[..., None]).sum() / (mask.sum() * z.shape[-1]).clamp(min=1)


class EDMDenoiser(nn.Module):
    """Karras-preconditioned denoiser ``D(x; sigma, m)`` around a :class:`ResidualMLP` ``F``.

    The network sees the scaled noisy features, and as context the standardised mass and :class:`EDMNoiseContext`.
    """

    def __init__(
        self, n_features: int, hidden: int = 128, n_blocks: int = 3, dropout: float = 0.0, n_noise_freqs: int = 4,
        sigma_data: float = 1.0, sigma_min: float = 0.002, sigma_max: float = 80.0,
    ) -> None:
        super().__init__()
        self.noise = EDMNoiseContext(n_noise_freqs, sigma_data, sigma_min, sigma_max)
        self.net = ResidualMLP(
            n_features, n_features, hidden=hidden, n_blocks=n_blocks, dropout=dropout,
            context_dim=1 + self.noise.out_dim,
        )

    def forward(self, x: Tensor, sigma: Tensor, m: Tensor) -> Tensor:
        """``x`` (n, d) noisy features, ``sigma`` (n,) noise levels, ``m`` (n, 1) standardised masses."""
        c_skip, c_out, c_in, noise = self.noise(sigma.reshape(-1, 1).to(x.dtype))
        context = torch.cat([m.reshape(-1, 1).to(x.dtype), noise], dim=-1)
        return c_skip * x + c_out * self.net(c_in * x, context)


@torch.no_grad()
def heun_sampler(denoiser: nn.Module, x: Tensor, m: Tensor, sigmas: Tensor) -> Tensor:
    """Integrate the probability-flow ODE ``dx/dsigma = (x - D(x; sigma)) / sigma`` from ``sigmas[0]`` (``x`` must
    already carry that much noise) down to ``sigmas[-1] = 0`` with Heun's method (Euler on the last step)."""
    sig = sigmas.to(x.device, torch.float32)
    ones = torch.ones(len(x), device=x.device)
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        d = (x - denoiser(x, s * ones, m)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d2 = (x_next - denoiser(x_next, s_next * ones, m)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d2)
        x = x_next
    return x


@GENERATORS.register("drapes")
class Drapes(TemplateGenerator):
    """Conditional EDM diffusion trained on the sidebands (config keys: :attr:`DEFAULTS`; see the module doc).

    ``kde_bandwidth``, ``oversample`` and ``n_template`` are read by the pipeline to draw the template masses (see
    :func:`anomalyhunt.models.cathode.sample_sr_masses`).
    """

    trains_on = "sidebands"
    DEFAULTS: dict[str, Any] = dict(
        **TRAINING_DEFAULTS,
        **TEMPLATE_DEFAULTS,
        hidden=64,
        n_blocks=3,
        dropout=0.0,
        n_noise_freqs=4,
        sigma_data=1.0,
        sigma_min=0.002,
        sigma_max=80.0,
        rho=3.0,
        p_mean=-1.2,
        p_std=1.2,
        n_steps=25,
        mode="full",
        sigma_prime=2.24,
        seed_source="sidebands",
        simulation_path=None,
        use_seed_mass=False,
        epochs=30,
        batch_size=512,
        lr=3e-3,
        keep_best=1,
    )
    #: No "paper" preset: the DRAPES talk names the architecture (a dense residual network, EDM diffusion as in
    #: PC-Droid) but not its sizes, and a preset named after the paper must be the paper's.
    PRESETS: dict[str, dict[str, Any]] = {}

    def __init__(self, **config: Any) -> None:
        super().__init__(**self.resolve_config(config))
        c = self.config
        if c["mode"] not in ("full", "partial"):
            raise ConfigError(f"drapes: mode must be 'full' or 'partial', got {c['mode']!r}")
        if c["seed_source"] not in ("sidebands", "sr", "simulation"):
            raise ConfigError(
                f"drapes: seed_source must be 'sidebands', 'sr' or 'simulation', got {c['seed_source']!r}"
            )
        if c["mode"] == "partial" and not 0 < float(c["sigma_prime"]) <= float(c["sigma_max"]):
            raise ConfigError("drapes: sigma_prime must be in (0, sigma_max]")
        if c["use_seed_mass"] and c["seed_source"] == "sidebands":
            raise ConfigError("drapes: use_seed_mass would denoise sideband seeds at sideband masses while the template "
                              "reports SR masses; the SB variant denoises each seed at a new SR mass (the default)")
        self._denoisers: list[EDMDenoiser] = []
        self._scaler: EventScaler | None = None
        self._n_features: int | None = None
        # seed_source -> (preprocessed features, raw masses) of the seed events
        self._seeds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.history: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return pick_device(self.config["device"])

    def _build(self) -> EDMDenoiser:
        c = self.config
        return EDMDenoiser(
            self._n_features, hidden=c["hidden"], n_blocks=c["n_blocks"], dropout=c["dropout"],
            n_noise_freqs=c["n_noise_freqs"], sigma_data=c["sigma_data"], sigma_min=c["sigma_min"],
            sigma_max=c["sigma_max"],
        )

    def fit(
        self,
        x: np.ndarray,
        m: np.ndarray,
        x_val: np.ndarray | None = None,
        m_val: np.ndarray | None = None,
    ) -> "Drapes":
        """Train on sideband events; the (training) events are also kept as partial-diffusion seeds."""
        c = self.config
        x, m = check_events(x, m, "drapes.fit")
        if x_val is None:
            tr, va = validation_split(len(x), c["val_fraction"], c["seed"])
            x, m, x_val, m_val = x[tr], m[tr], x[va], m[va]
        else:
            x_val, m_val = check_events(x_val, m_val, "drapes.fit (validation)")
        self._n_features = x.shape[1]
        self._scaler = EventScaler(c["preprocessing"], c["margin"]).fit(x, m)
        torch.manual_seed(c["seed"])
        model = self._build()
        p_mean, p_std, sd = float(c["p_mean"]), float(c["p_std"]), float(c["sigma_data"])

        def tensors(xa: np.ndarray, ma: np.ndarray) -> tuple[Tensor, Tensor]:
            z, mz = self._scaler.transform(xa, ma)
            return torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(mz, dtype=torch.float32)

        def loss(batch: tuple[Tensor, ...]) -> Tensor:
            z, mz = batch
            return edm_loss(lambda noisy, sigma: model(noisy, sigma, mz), z, p_mean, p_std, sd)

        train = tensors(x, m)
        hist = train_loop(
            model, loss, train, tensors(x_val, m_val), epochs=c["epochs"], batch_size=c["batch_size"],
            lr=c["lr"], weight_decay=c["weight_decay"], patience=c["patience"], device=c["device"], seed=c["seed"],
            progress=c["progress"], keep_best=c["keep_best"], scheduler=c["scheduler"],
        )
        self._set_states(hist.pop("best_states"))
        self.history = hist
        self._seeds["sidebands"] = (train[0].numpy(), m.astype(np.float32))
        return self

    def _set_states(self, states: list[dict[str, Tensor]]) -> None:
        self._denoisers = []
        for state in states:
            model = self._build()
            model.load_state_dict(state)
            self._denoisers.append(model.to(self.device).eval())

    def _check_fitted(self) -> None:
        if not self._denoisers:
            raise RuntimeError("drapes: not fitted (call fit or load_state_dict first)")

    def wants_simulation(self) -> bool:
        """Simulation seeds come from the protocol's simulation sample."""
        return self.config["seed_source"] == "simulation"

    def has_simulation(self) -> bool:
        return super().has_simulation() or bool(self.config["simulation_path"]) or "simulation" in self._seeds

    def set_simulation(self, x: np.ndarray, m: np.ndarray) -> None:
        """The simulation sample whose events seed ``seed_source="simulation"`` (they replace earlier ones)."""
        super().set_simulation(x, m)
        self._seeds.pop("simulation", None)  # preprocessed lazily: the scaler is fitted by fit

    def condition_on_region(self, x_sr: np.ndarray, m_sr: np.ndarray) -> None:
        """Keep the SR events as seeds when ``seed_source="sr"`` (ignored otherwise)."""
        if self.config["seed_source"] == "sr":
            self.set_seed_events(x_sr, m_sr, source="sr")

    def set_seed_events(self, x: np.ndarray, m: np.ndarray, source: str | None = None) -> None:
        """Use the events ``x`` at masses ``m`` (raw features and units, as in ``fit``) as partial-diffusion seeds for
        ``source`` (default: the configured ``seed_source``)."""
        self._check_fitted()
        source = source or self.config["seed_source"]
        x, m = check_events(x, m, f"drapes seed events ({source})")
        self._seeds[source] = (self._scaler.features.transform(x).astype(np.float32), m.astype(np.float32))

    def _seed_pool(self) -> tuple[np.ndarray, np.ndarray]:
        source = self.config["seed_source"]
        if source == "simulation" and source not in self._seeds and super().has_simulation():
            self.set_seed_events(*self.simulation(), source="simulation")
        if source == "simulation" and source not in self._seeds and self.config["simulation_path"]:
            path = Path(self.config["simulation_path"])
            try:
                with np.load(path) as data:
                    self.set_seed_events(data["x"], data["m"], source="simulation")
            except FileNotFoundError:
                raise InputError(path, "simulation seed file does not exist") from None
            except KeyError as err:
                raise InputError(path, f"needs arrays 'x' and 'm' ({err} is missing)") from None
        if source not in self._seeds:
            hint = {
                "sidebands": "fit the model (sideband seeds are kept after fit and saved with it)",
                "sr": "call condition_on_region(x_sr, m_sr) before sampling",
                "simulation": "call set_simulation(x, m) (hunt: --simulation FILE), set simulation_path or call "
                              "set_seed_events(x, m)",
            }[source]
            raise InputError(f"drapes seeds ({source})", f"no seed events: {hint}")
        return self._seeds[source]

    @torch.no_grad()
    def sample(
        self, m: np.ndarray, *, region: tuple[float, float] | None = None, seed: int = 0,
        sigma_prime: float | None = None,
    ) -> np.ndarray:
        """One event per mass in ``m``. ``mode="full"`` starts from noise at ``sigma_max``; ``mode="partial"`` (or an
        explicit ``sigma_prime``) noises seed events to ``sigma_prime`` and denoises them at ``m``."""
        self._check_fitted()
        c = self.config
        m = np.asarray(m, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(m)):
            raise InputError("drapes.sample", "NaN or infinite masses")
        partial = sigma_prime is not None or c["mode"] == "partial"
        if partial:
            start = float(sigma_prime if sigma_prime is not None else c["sigma_prime"])
        else:
            start = float(c["sigma_max"])
        if not 0 < start <= float(c["sigma_max"]):
            raise ValueError(f"drapes: sigma_prime must be in (0, {c['sigma_max']}], got {start}")
        rng = np.random.default_rng(seed)
        seeds = None
        if partial:
            pool, pool_m = self._seed_pool()
            pick = rng.choice(len(pool), size=len(m), replace=len(m) > len(pool))
            seeds = pool[pick]
            if c["use_seed_mass"]:
                m = pool_m[pick].astype(np.float64)
        return self._denoise(seeds, m, start, seed)

    @torch.no_grad()
    def perturb(self, x: np.ndarray, m: np.ndarray, *, sigma_prime: float | None = None, seed: int = 0) -> np.ndarray:
        """Partial diffusion of the given events: ``x`` (raw features, as in ``fit``) noised to ``sigma_prime``
        (default: the configured one) and denoised at the masses ``m``, one output row per input row (a caller that
        must know each template event's seed, e.g. the constituent-level DRAPES, picks the seeds itself)."""
        self._check_fitted()
        x, m = check_events(x, m, "drapes.perturb")
        start = float(self.config["sigma_prime"] if sigma_prime is None else sigma_prime)
        if not 0 < start <= float(self.config["sigma_max"]):
            raise ValueError(f"drapes: sigma_prime must be in (0, {self.config['sigma_max']}], got {start}")
        return self._denoise(self._scaler.features.transform(x).astype(np.float32), m, start, seed)

    def _denoise(self, seeds: np.ndarray | None, m: np.ndarray, start: float, seed: int) -> np.ndarray:
        """Preprocessed ``seeds`` (or pure noise when ``None``) noised to ``start`` and denoised at ``m``."""
        c = self.config
        sigmas = partial_schedule(karras_sigmas(int(c["n_steps"]), float(c["sigma_min"]), float(c["sigma_max"]),
                                                float(c["rho"])), start)  # fmt: skip
        dev = self.device
        mz = torch.as_tensor(self._scaler.transform_mass(m), dtype=torch.float32, device=dev)
        out = torch.empty(len(m), self._n_features, device=dev)
        member = torch.arange(len(m), device=dev) % len(self._denoisers)
        bs = int(c["sample_batch"])
        with seeded(seed, dev):
            for k, model in enumerate(self._denoisers):
                idx = torch.nonzero(member == k).reshape(-1)
                for i in range(0, len(idx), bs):
                    part = idx[i : i + bs]
                    noise = torch.randn(len(part), self._n_features, device=dev) * start
                    x0 = noise if seeds is None else noise + torch.as_tensor(seeds[part.cpu().numpy()], device=dev)
                    out[part] = heun_sampler(model, x0, mz[part], sigmas)
        return self._scaler.inverse_features(out.cpu().double().numpy())

    def state_dict(self) -> dict[str, Any]:
        """Weights, preprocessing and the sideband seed events (SR/simulation seeds are not saved)."""
        self._check_fitted()
        return {
            "n_features": self._n_features,
            "scaler": self._scaler.state_dict(),
            "denoisers": [{k: v.detach().cpu() for k, v in d.state_dict().items()} for d in self._denoisers],
            "seeds": self._seeds.get("sidebands", (None, None))[0],
            "seed_masses": self._seeds.get("sidebands", (None, None))[1],
            "history": {k: v for k, v in self.history.items() if k in ("train", "val", "best_epoch", "seconds")},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._n_features = int(state["n_features"])
        self._scaler = EventScaler(self.config["preprocessing"], self.config["margin"])
        self._scaler.load_state_dict(state["scaler"])
        self._set_states(state["denoisers"])
        self._seeds = {}
        if state.get("seeds") is not None:
            self._seeds["sidebands"] = (np.asarray(state["seeds"], np.float32),
                                        np.asarray(state["seed_masses"], np.float32))
        self.history = dict(state.get("history", {}))


def sigma_prime_scan(
    generator: Drapes, m: np.ndarray, sigma_primes: Sequence[float], *, seed: int = 0
) -> dict[float, np.ndarray]:
    """Partial-diffusion templates at masses ``m`` for each ``sigma_prime`` (same seed events and noise draws across
    the scan, so differences come from ``sigma_prime`` alone). Seeds come from the generator's ``seed_source``."""
    return {float(s): generator.sample(m, seed=seed, sigma_prime=float(s)) for s in sigma_primes}
