"""Constituent-level DRAPES: a two-stage point-cloud template of the signal region and CWoLa on jet constituents.

The DRAPES talk's constituent level (``../shared/seeds/``, "Drapes for constituent level"; Sengupta et al., arXiv
2312.10130) generates the jets' point clouds with PC-Droid (Leigh et al., arXiv 2307.06836), whose constituents are
conditioned on the jet's pT and mass. Here, CPU-sized:

* stage 1, jet kinematics: the feature-level :class:`~.drapes.Drapes` of both jets' (pT, mass) given m_jj, trained
  on the sideband events;
* stage 2, constituents: an EDM diffusion model (the same preconditioning, loss and Heun sampler) of one jet's
  constituent cloud given that jet's (pT, mass), trained on the sideband jets. Its denoiser is permutation
  equivariant: residual per-constituent blocks that each also see the jet's mean over its real constituents (an
  EPiC-style layer, in place of PC-Droid's transformer);
* the template (partial diffusion from sideband seeds, the talk's "sample data -> add noise -> sample mass ->
  denoise" on both levels): a sideband event's jet kinematics are noised to ``jet_sigma_prime`` and denoised at an
  SR mass drawn from a KDE of the SR data's m_jj; then its jets' constituents are noised to ``sigma_prime`` and
  denoised given the new jet (pT, mass). A jet keeps its seed's multiplicity; jets are re-ordered by mass when the
  new masses swap them. With ``seed_jets="nearest"`` each new jet's constituents come instead from the sideband jet
  of its kind nearest in (log pT, log mass), so that multiplicity and shape go with the new jet.

The generated constituent features are ``features`` (default ``deta dphi log_pt_rel``, boost invariant; with
``absolute_pt`` the classifier also reads each constituent's log pT from log_pt_rel and its jet's pT, the template's
from stage 1, so that the momentum scale, which follows m_jj, is checked too);
``constituent-drapes`` then separates the SR data from the template with the DeepSets classifier of
``constituent-cwola`` (the talk's discriminator: both jets through one network, summed, then an MLP) in a k-fold.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, InputError
from .cathode import sample_sr_masses
from .constituent_cwola import ConstituentClassifier, pack
from .constituents import ConstituentData, ConstituentMethod, ConstituentResult, ConstituentTemplate, register_method
from .drapes import Drapes, EDMNoiseContext, edm_loss, heun_sampler, karras_sigmas, partial_schedule
from .nn import pick_device, seeded, train_loop
from .preprocessing import validation_split

__all__ = ["CloudDenoiser", "ConstituentDrapes", "jet_kinematics", "score_events"]


class CloudNet(nn.Module):
    """``F(x; context)`` on (B, N, F) constituents with a (B, N) mask: an input layer, residual per-constituent
    blocks that see the constituent, the jet's masked mean and the context, and a linear output (zero on padding)."""

    def __init__(self, n_features: int, context_dim: int, hidden: int = 64, n_blocks: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(n_features + context_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * hidden + context_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(n_blocks)
        )
        self.out = nn.Linear(hidden, n_features)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        n = x.shape[1]
        ctx = context[:, None, :].expand(-1, n, -1)
        w = mask[..., None]
        h = nn.functional.silu(self.inp(torch.cat([x, ctx], dim=-1)))
        for block in self.blocks:
            mean = (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
            h = h + block(torch.cat([nn.functional.silu(h), mean[:, None, :].expand(-1, n, -1), ctx], dim=-1))
        return self.out(nn.functional.silu(h)) * w


class CloudDenoiser(nn.Module):
    """Karras-preconditioned denoiser of one jet's cloud, ``D(x; sigma, cond, mask)`` around a :class:`CloudNet`,
    conditioned on the standardised jet (pT, mass) and the noise level (:class:`~.drapes.EDMNoiseContext`)."""

    def __init__(self, n_features: int, n_cond: int = 2, hidden: int = 64, n_blocks: int = 3, n_noise_freqs: int = 4,
                 sigma_data: float = 1.0, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:  # fmt: skip
        super().__init__()
        self.noise = EDMNoiseContext(n_noise_freqs, sigma_data, sigma_min, sigma_max)
        self.net = CloudNet(n_features, n_cond + self.noise.out_dim, hidden, n_blocks)

    def forward(self, x: Tensor, sigma: Tensor, cond: Tensor, mask: Tensor) -> Tensor:
        """``x`` (B, N, F) noisy constituents, ``sigma`` (B,) or (B, 1), ``cond`` (B, C), ``mask`` (B, N) float."""
        c_skip, c_out, c_in, noise = self.noise(sigma.reshape(-1, 1).to(x.dtype))
        out = c_skip[..., None] * x + c_out[..., None] * self.net(c_in[..., None] * x, torch.cat([cond, noise], -1), mask)
        return out * mask[..., None]


def jet_kinematics(data: ConstituentData) -> np.ndarray:
    """(n, 2, 2) pT and mass (TeV) of each event's two jets, jet 0 the lighter (the clouds' order)."""
    return data.jet_features(("pt", "m")) * np.array([1e-3, 1.0])  # jet_features gives masses in TeV, pT in GeV


class ConstituentDrapes:
    """The two-stage generator (see the module doc): ``fit(clouds, mask, jets, m)`` on sideband events, then
    ``sample(m, seed)`` -> (clouds, mask, jets) of template events at the masses ``m``, from sideband seeds."""

    DEFAULTS: dict[str, Any] = dict(
        hidden=64, n_blocks=3, n_noise_freqs=4, sigma_data=1.0, sigma_min=0.002, sigma_max=80.0, rho=3.0,
        p_mean=-1.2, p_std=1.2, n_steps=25, sigma_prime=2.24, epochs=20, batch_size=256, lr=2e-3, weight_decay=0.0,
        patience=None, scheduler="cosine", val_fraction=0.1, sample_batch=4096,
        # Stage 1: the feature-level DRAPES of the jets' (pT, mass), partial diffusion from the same sigma'.
        jet_epochs=30, jet_sigma_prime=2.24, jet_config={}, seed_jets="event",
        device="auto", seed=0, progress=False,
    )  # fmt: skip

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(self.DEFAULTS))
        if unknown:
            raise ConfigError(f"constituent drapes: unknown config key(s) {unknown}; known: {sorted(self.DEFAULTS)}")
        self.config = {**self.DEFAULTS, **config}
        if self.config["seed_jets"] not in ("event", "nearest"):
            raise ConfigError(f"constituent drapes: seed_jets={self.config['seed_jets']!r}: use event or nearest")
        for key in ("sigma_prime", "jet_sigma_prime"):
            if not 0 < float(self.config[key]) <= float(self.config["sigma_max"]):
                raise ConfigError(f"constituent drapes: {key} must be in (0, sigma_max], got {self.config[key]!r}")
        self.jets: Drapes | None = None
        self.denoiser: CloudDenoiser | None = None
        self.history: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return pick_device(self.config["device"])

    @staticmethod
    def _check(clouds: np.ndarray, mask: np.ndarray, jets: np.ndarray, m: np.ndarray) -> None:
        n = len(m)
        if clouds.ndim != 4 or clouds.shape[1] != 2 or mask.shape != clouds.shape[:3] or jets.shape != (n, 2, 2):
            raise InputError("constituent drapes", f"expected clouds (n, 2, N, F), mask (n, 2, N), jets (n, 2, 2) "
                             f"for {n} masses, got {clouds.shape}, {mask.shape}, {jets.shape}")  # fmt: skip
        if len(clouds) != n or n < 10:
            raise InputError("constituent drapes", f"{len(clouds)} events for {n} masses (need >= 10)")
        if not (np.isfinite(clouds[mask]).all() and np.isfinite(jets).all() and np.isfinite(m).all()):
            raise InputError("constituent drapes", "non-finite constituent features, jet kinematics or masses")

    def fit(self, clouds: np.ndarray, mask: np.ndarray, jets: np.ndarray, m: np.ndarray) -> "ConstituentDrapes":
        """Train both stages on sideband events: ``clouds`` (n, 2, N, F), ``mask`` (n, 2, N), ``jets`` (n, 2, 2)
        pT and mass in TeV, ``m`` (n,) m_jj in TeV. The events are kept as the template's seeds."""
        c = self.config
        clouds, mask = np.asarray(clouds, np.float32), np.asarray(mask, bool)
        jets, m = np.asarray(jets, np.float64), np.asarray(m, np.float64).reshape(-1)
        self._check(clouds, mask, jets, m)
        jet_conf = {"epochs": c["jet_epochs"], "device": c["device"], "seed": c["seed"], "progress": c["progress"],
                    **dict(c["jet_config"] or {}), "mode": "partial", "sigma_prime": c["jet_sigma_prime"]}  # fmt: skip
        self.jets = Drapes(**jet_conf).fit(jets.reshape(len(m), 4), m)

        real = clouds[mask]
        self.mean, std = real.mean(axis=0), real.std(axis=0)
        self.std = np.where(std > 0, std, 1.0).astype(np.float32)
        flat_jets = jets.reshape(-1, 2)
        self.cond_mean, self.cond_std = flat_jets.mean(axis=0), np.maximum(flat_jets.std(axis=0), 1e-6)
        self.seeds = (self._standardise(clouds, mask), mask, jets, m)

        z, mk = self.seeds[0].reshape(-1, *clouds.shape[2:]), mask.reshape(-1, mask.shape[2])
        cond = self._cond(flat_jets)
        keep = mk.any(axis=1)  # a jet without constituents has nothing to learn from
        z, mk, cond = z[keep], mk[keep], cond[keep]
        tr, va = validation_split(len(z), c["val_fraction"], c["seed"])
        with seeded(c["seed"]):
            model = self._build(z.shape[-1])
        p_mean, p_std, sd = float(c["p_mean"]), float(c["p_std"]), float(c["sigma_data"])

        def loss(batch: tuple[Tensor, ...]) -> Tensor:
            zb, mb, cb = batch
            return edm_loss(lambda noisy, sigma: model(noisy, sigma, cb, mb), zb, p_mean, p_std, sd, mask=mb)

        def tensors(idx: np.ndarray) -> tuple[Tensor, ...]:
            return (torch.as_tensor(z[idx]), torch.as_tensor(mk[idx], dtype=torch.float32),
                    torch.as_tensor(cond[idx], dtype=torch.float32))  # fmt: skip

        hist = train_loop(
            model, loss, tensors(tr), tensors(va) if len(va) else None, epochs=c["epochs"],
            batch_size=c["batch_size"], lr=c["lr"], weight_decay=c["weight_decay"], patience=c["patience"],
            device=c["device"], seed=c["seed"], progress=c["progress"], scheduler=c["scheduler"],
        )  # fmt: skip
        model.load_state_dict(hist.pop("best_states")[0])
        self.denoiser = model.to(self.device).eval()
        self.history = {"jets": self.jets.history, "constituents": hist}
        return self

    def _build(self, n_features: int) -> CloudDenoiser:
        c = self.config
        return CloudDenoiser(n_features, 2, c["hidden"], c["n_blocks"], c["n_noise_freqs"], c["sigma_data"],
                             c["sigma_min"], c["sigma_max"])  # fmt: skip

    def _standardise(self, clouds: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.where(mask[..., None], (clouds - self.mean) / self.std, 0.0).astype(np.float32)

    def _cond(self, jets: np.ndarray) -> np.ndarray:
        return ((jets - self.cond_mean) / self.cond_std).astype(np.float32)

    @torch.no_grad()
    def sample(self, m: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Template events at the masses ``m`` (TeV): (clouds (n, 2, N, F), mask (n, 2, N), jets (n, 2, 2)), each
        from a sideband seed event drawn at random (without replacement while there are enough)."""
        if self.denoiser is None or self.jets is None:
            raise RuntimeError("constituent drapes: not fitted")
        m = np.asarray(m, np.float64).reshape(-1)
        n_seeds = len(self.seeds[0])
        pick = np.random.default_rng(seed).choice(n_seeds, size=len(m), replace=len(m) > n_seeds)
        return self.sample_from(pick, m, seed)

    @torch.no_grad()
    def sample_from(self, pick: np.ndarray, m: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sample` from the given seed events (indices into the fitted sideband events), one per mass."""
        if self.denoiser is None or self.jets is None:
            raise RuntimeError("constituent drapes: not fitted")
        m = np.asarray(m, np.float64).reshape(-1)
        pick = np.asarray(pick).reshape(-1)
        if len(pick) != len(m):
            raise ValueError(f"{len(pick)} seed events for {len(m)} masses")
        z_pool, mask_pool, jets_pool, _ = self.seeds
        jets = self.jets.perturb(jets_pool[pick].reshape(len(m), 4), m, seed=seed).reshape(len(m), 2, 2)
        swap = jets[:, 0, 1] > jets[:, 1, 1]  # keep jet 0 the lighter, as in the data
        jets[swap] = jets[swap][:, ::-1]
        if self.config["seed_jets"] == "nearest":
            z, mask = self._nearest_seed_jets(jets)
        else:
            z, mask = z_pool[pick].copy(), mask_pool[pick].copy()
            z[swap], mask[swap] = z[swap][:, ::-1], mask[swap][:, ::-1]
        return self._denoise(z, mask, jets, seed + 1), mask, jets

    def _nearest_seed_jets(self, jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per new jet, the constituents of the sideband jet of the same kind (lighter / heavier) nearest in
        (log pT, log mass): the seed then carries a multiplicity and shape that go with the new jet."""
        from scipy.spatial import cKDTree

        z_pool, mask_pool, jets_pool, _ = self.seeds
        z = np.empty((len(jets), *z_pool.shape[1:]), z_pool.dtype)
        mask = np.empty((len(jets), *mask_pool.shape[1:]), bool)
        for j in (0, 1):
            _, nearest = cKDTree(np.log(jets_pool[:, j])).query(np.log(np.maximum(jets[:, j], 1e-6)), k=1)
            z[:, j], mask[:, j] = z_pool[nearest, j], mask_pool[nearest, j]
        return z, mask

    @torch.no_grad()
    def perturb_constituents(self, clouds: np.ndarray, mask: np.ndarray, jets: np.ndarray,
                             seed: int = 0) -> np.ndarray:  # fmt: skip
        """Stage 2 alone: the constituents ``clouds`` (n, 2, N, F; ``mask`` (n, 2, N)) noised to ``sigma_prime`` and
        denoised given the jets' (pT, mass) ``jets`` (n, 2, 2, TeV)."""
        if self.denoiser is None:
            raise RuntimeError("constituent drapes: not fitted")
        mask = np.asarray(mask, bool)
        return self._denoise(self._standardise(np.asarray(clouds, np.float32), mask), mask, np.asarray(jets), seed)

    def _denoise(self, z: np.ndarray, mask: np.ndarray, jets: np.ndarray, seed: int) -> np.ndarray:
        c = self.config
        n_jets, shape = 2 * len(z), z.shape[2:]
        z, mk, cond = z.reshape(n_jets, *shape), mask.reshape(n_jets, shape[0]), self._cond(jets.reshape(-1, 2))
        start = float(c["sigma_prime"])
        sigmas = partial_schedule(karras_sigmas(int(c["n_steps"]), float(c["sigma_min"]), float(c["sigma_max"]),
                                                float(c["rho"])), start)  # fmt: skip
        dev, model, bs = self.device, self.denoiser, int(c["sample_batch"])
        out = np.empty_like(z)
        with seeded(seed, dev):
            for i in range(0, n_jets, bs):
                mb = torch.as_tensor(mk[i : i + bs], dtype=torch.float32, device=dev)
                x0 = torch.as_tensor(z[i : i + bs], device=dev)
                x0 = x0 + torch.randn_like(x0) * start * mb[..., None]
                cb = torch.as_tensor(cond[i : i + bs], device=dev)
                denoise: Callable[..., Tensor] = lambda x, s, cnd, _m=mb: model(x, s, cnd, _m)  # noqa: E731
                out[i : i + bs] = heun_sampler(denoise, x0, cb, sigmas).cpu().numpy()
        clouds = np.where(mk[..., None], out * self.std + self.mean, 0.0).astype(np.float32)
        return clouds.reshape(len(mask), 2, *shape)


DRAPES_DEFAULTS: dict[str, Any] = {
    "features": ("deta", "dphi", "log_pt_rel"),
    # The classifier also reads each constituent's absolute log pT, log_pt_rel + log(jet pT / TeV), with the jet pT
    # of the template's stage 1 (moved to the SR mass) and of the data events' own jets.
    "absolute_pt": False,
    "n_constituents": 30,
    "oversample": 4,
    "kde_bandwidth": None,
    "folds": 5,
    **{k: v for k, v in ConstituentDrapes.DEFAULTS.items() if k not in ("seed", "progress", "device")},
    "device": "auto",
    **{f"clf_{k}": v for k, v in ConstituentClassifier.DEFAULTS.items() if k not in ("seed", "progress", "device")},
}


def cloud_inputs(data: ConstituentData, features: tuple[str, ...], n_constituents: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``features`` of the first ``n_constituents`` constituents of each jet and their mask."""
    data.require("clouds")
    idx = [data.feature_index(f) for f in features]
    n = min(int(n_constituents), data.clouds.shape[2])
    return data.clouds[:, :, :n][..., idx], data.mask[:, :, :n]


def classifier_inputs(clouds: np.ndarray, mask: np.ndarray, jets: np.ndarray, features: tuple[str, ...],
                      absolute_pt: bool) -> np.ndarray:
    """:func:`~.constituent_cwola.pack` of the clouds, with ``absolute_pt`` a last feature log_pt_rel + log(jet pT)
    (``jets``: (n, 2, 2) pT and mass in TeV): the momentum scale the boost-invariant features leave out."""
    if absolute_pt:
        if "log_pt_rel" not in features:
            raise ConfigError(f"constituent-drapes absolute_pt needs log_pt_rel among the features, got {features}")
        log_pt = clouds[..., features.index("log_pt_rel")] + np.log(jets[:, :, None, 0])
        clouds = np.concatenate([clouds, log_pt[..., None].astype(clouds.dtype)], axis=-1)
    return pack(clouds, mask)


def score_events(
    data: ConstituentData,
    test: ConstituentData,
    *,
    regions: Any = None,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = False,
    held_out: ConstituentData | None = None,
) -> ConstituentResult:
    """Fit the generator on the sideband data events, sample ``oversample`` x the SR data of template events, and
    separate SR data (label 1) from the template (label 0) with the DeepSets classifier in a k-fold: SR data scores
    out of fold, every other data event and the test events scored by the fold models' mean (``held_out`` is not
    used: the method keeps its own folds; the generator never sees an SR event)."""
    from .kfold import kfold_classify

    if regions is None:
        raise ConfigError("constituent-drapes needs the search regions (signal region and sidebands)")
    conf = DRAPES_METHOD.config(config)
    features, n_const = tuple(conf["features"]), int(conf["n_constituents"])
    sr, sb = regions.select_sr(data.mjj, data.source), regions.select_sb(data.mjj, data.source)
    if sr.sum() < conf["folds"] or sb.sum() < 10:
        raise InputError(data.source, f"constituent-drapes: {int(sr.sum())} SR and {int(sb.sum())} sideband events")
    clouds, mask = cloud_inputs(data, features, n_const)
    gen_conf = {k: conf[k] for k in ConstituentDrapes.DEFAULTS if k in conf}
    gen = ConstituentDrapes(**gen_conf, seed=seed, progress=progress)
    gen.fit(clouds[sb], mask[sb], jet_kinematics(data)[sb], data.mjj[sb])
    n_template = int(round(float(conf["oversample"]) * sr.sum()))
    m_template = sample_sr_masses(data.mjj[sr], n_template, seed, conf["kde_bandwidth"])
    t_clouds, t_mask, t_jets = gen.sample(m_template, seed)
    absolute = bool(conf["absolute_pt"])
    template = classifier_inputs(t_clouds, t_mask, t_jets, features, absolute)

    def encode(d: ConstituentData) -> np.ndarray:
        return classifier_inputs(*cloud_inputs(d, features, n_const), jet_kinematics(d), features, absolute)

    packed = encode(data)
    other = ~sr
    x_eval = np.concatenate([encode(test), packed[other]])
    clf_conf = {k[4:]: v for k, v in conf.items() if k.startswith("clf_")}

    def make(s: int) -> ConstituentClassifier:
        return ConstituentClassifier(**clf_conf, device=conf["device"], seed=s, progress=progress)

    res = kfold_classify(packed[sr], template, x_eval, classifier=make, folds=int(conf["folds"]), seed=seed,
                         progress=progress)  # fmt: skip
    data_scores = np.empty(len(data))
    data_scores[sr], data_scores[other] = res.scores_1, res.test_scores[len(test) :]
    hist = gen.history["constituents"]
    return ConstituentResult(
        test_scores=res.test_scores[: len(test)],
        data_scores=data_scores,
        info={"n_sr": int(sr.sum()), "n_sb": int(sb.sum()), "n_template": n_template, "seconds_classify": res.seconds,
              "seconds_fit_constituents": hist.get("seconds"), "seconds_fit_jets": gen.history["jets"].get("seconds")},
        arrays={"data_in_sr": sr, "data_in_sb": sb},
        template=ConstituentTemplate(template, encode, make),
    )  # fmt: skip


DRAPES_METHOD = register_method(
    ConstituentMethod(
        name="constituent-drapes",
        run=score_events,
        needs=("clouds", "features"),
        defaults=DRAPES_DEFAULTS,
        description="constituent-level DRAPES: two-stage point-cloud template from sideband seeds, DeepSets CWoLa of "
                    "SR data against it",
        own_folds=True,
        cloud_features_for=lambda c: tuple(c["features"]),
        # The configuration whose template passes the truth check with a control that has power (README): stage 1
        # by full diffusion, each jet seeded by its nearest sideband jet, barely noised, the momentum scale checked.
        presets={"nearest-seeds": {"jet_sigma_prime": 80.0, "seed_jets": "nearest", "sigma_prime": 0.3,
                                   "absolute_pt": True}},
    )
)
