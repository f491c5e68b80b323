"""Autoencoders whose reconstruction error is an anomaly score: a small CNN on jet images and a dense one on features.

Trained on data (mostly background), they reconstruct typical jets well and atypical ones badly. The jet images are
the processor's (40 x 40, centred, rotated, flipped, unit pixel sum), so they carry no absolute momentum scale; the
reconstruction also has unit sum (a softmax over pixels), and the error is the mean squared pixel difference.

The registered method ``autoencoder`` trains one image autoencoder on both jets of the data events and scores an
event by combining its two jets' errors, each first turned into its quantile among the data's jets of the same kind
(lighter / heavier), so that the heavier jets' larger errors do not simply dominate.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .constituents import ConstituentData, ConstituentMethod, ConstituentResult, register_method
from ..errors import ConfigError, InputError
from .nn import ResidualMLP, batched_apply, pick_device, seeded, train_loop
from .preprocessing import Standardize, validation_split

__all__ = [
    "ConvAutoencoder",
    "ImageAutoencoder",
    "DenseAutoencoder",
    "quantile_rank",
    "combine_jet_scores",
    "jet_ae_method",
]


def _resolve(cls_name: str, defaults: dict[str, Any], presets: dict[str, dict[str, Any]], preset: str | None,
             config: dict[str, Any]) -> dict[str, Any]:
    if preset is not None and preset not in presets:
        raise ConfigError(f"{cls_name}: unknown preset {preset!r}; available: {sorted(presets)}")
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ConfigError(f"{cls_name}: unknown config key(s) {unknown}; known keys: {sorted(defaults)}")
    return {**defaults, **(presets[preset] if preset else {}), **config}


class ConvAutoencoder(nn.Module):
    """Strided-convolution encoder -> dense bottleneck -> transposed-convolution decoder for (n, 1, P, P) images.

    ``P`` must be divisible by ``2 ** len(channels)``. The output is a softmax over pixels (unit sum, like the input).
    """

    def __init__(self, n_pixels: int = 40, channels: tuple[int, ...] = (8, 16, 8), hidden: int = 32, latent: int = 6):
        super().__init__()
        depth = len(channels)
        if n_pixels % (2**depth):
            raise ConfigError(f"image size {n_pixels} is not divisible by 2**{depth} (one halving per conv layer)")
        self.n_pixels, self.channels = n_pixels, tuple(channels)
        self.small = n_pixels // 2**depth
        enc: list[nn.Module] = []
        c_in = 1
        for c in channels:
            enc += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.SiLU()]
            c_in = c
        flat = channels[-1] * self.small**2
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, hidden), nn.SiLU(), nn.Linear(hidden, latent))
        dec: list[nn.Module] = [nn.Linear(latent, hidden), nn.SiLU(), nn.Linear(hidden, flat), nn.SiLU(),
                                nn.Unflatten(1, (channels[-1], self.small, self.small))]  # fmt: skip
        outs = list(channels[-2::-1]) + [1]
        c_in = channels[-1]
        for i, c in enumerate(outs):
            last = i == len(outs) - 1
            # The full-resolution layer dominates the cost: a non-overlapping 2x2 kernel there is twice as fast.
            dec.append(nn.ConvTranspose2d(c_in, c, 2, stride=2) if last else nn.ConvTranspose2d(c_in, c, 4, 2, 1))
            if not last:
                dec.append(nn.SiLU())
            c_in = c
        self.decoder = nn.Sequential(*dec)
        # Per-pixel logit offset, set to the log of the mean training image by ImageAutoencoder.fit: training then
        # starts from the average jet instead of a flat image (which otherwise costs many epochs on a plateau).
        self.pixel_bias = nn.Parameter(torch.zeros(1, 1, n_pixels, n_pixels))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.decoder(self.encoder(x)) + self.pixel_bias
        return torch.softmax(logits.flatten(1), dim=1).view_as(x)


def _images_tensor(images: np.ndarray, source: str) -> Tensor:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise InputError(source, f"jet images must be (n, P, P), got shape {images.shape}")
    if len(images) == 0:
        raise InputError(source, "no jet images")
    if not np.isfinite(images).all():
        raise InputError(source, "non-finite pixel values")
    return torch.as_tensor(images)[:, None]


class ImageAutoencoder:
    """A :class:`ConvAutoencoder` trained with mean squared pixel error; ``score`` is that error per image.

    Pixel values are multiplied by ``n_pixels**2`` inside the loss so that an average pixel is of order one.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "channels": (8, 16, 8), "hidden": 32, "latent": 6, "epochs": 10, "batch_size": 64, "lr": 5e-3,
        "weight_decay": 0.0, "patience": 4, "validation_fraction": 0.2, "device": "auto", "seed": 0,
        "progress": False,
    }  # fmt: skip
    #: The size used in the Tag N' Train paper's autoencoder (latent 6), trained longer on a GPU.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"channels": (16, 32, 16), "hidden": 64, "epochs": 100, "batch_size": 256, "lr": 1e-3, "patience": 10},
    }

    def __init__(self, preset: str | None = None, **config: Any) -> None:
        self.config = _resolve(type(self).__name__, self.DEFAULTS, self.PRESETS, preset, config)
        self.config["channels"] = tuple(int(c) for c in self.config["channels"])
        self.model: ConvAutoencoder | None = None
        self.history: dict[str, Any] = {}

    def fit(self, images: np.ndarray) -> "ImageAutoencoder":
        """Train on (n, P, P) images (a random ``validation_fraction`` picks the epoch)."""
        c = self.config
        x = _images_tensor(images, "autoencoder training images")
        p = x.shape[-1]
        scale = float(p * p)
        with seeded(c["seed"]):
            self.model = ConvAutoencoder(p, c["channels"], c["hidden"], c["latent"])
        model = self.model
        with torch.no_grad():
            model.pixel_bias.copy_(torch.log(x.mean(0, keepdim=True) + 1e-6))

        def loss_fn(batch: tuple[Tensor, ...]) -> Tensor:
            (xb,) = batch
            return ((model(xb) - xb) * scale).pow(2).mean()

        tr, va = validation_split(len(x), c["validation_fraction"], c["seed"])
        self.history = train_loop(
            model, loss_fn, (x[tr],), (x[va],), epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
            weight_decay=c["weight_decay"], patience=c["patience"], device=c["device"], seed=c["seed"],
            progress=c["progress"],
        )  # fmt: skip
        return self

    @torch.no_grad()
    def score(self, images: np.ndarray) -> np.ndarray:
        """Mean squared pixel error per image (higher = less typical)."""
        if self.model is None:
            raise RuntimeError("ImageAutoencoder.score called before fit")
        x = _images_tensor(images, "autoencoder images")
        dev = pick_device(self.config["device"])
        model = self.model.to(dev).eval()
        scale = float(x.shape[-1] ** 2)

        def err(xb: Tensor) -> Tensor:
            xb = xb.to(dev)
            return ((model(xb) - xb) * scale).pow(2).flatten(1).mean(1).cpu()

        return batched_apply(err, x, batch_size=2048).numpy().astype(np.float64)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters()) if self.model is not None else 0


class _DenseAE(nn.Module):
    def __init__(self, d: int, latent: int, hidden: int, n_blocks: int) -> None:
        super().__init__()
        self.encoder = ResidualMLP(d, latent, hidden=hidden, n_blocks=n_blocks)
        self.decoder = ResidualMLP(latent, d, hidden=hidden, n_blocks=n_blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class DenseAutoencoder:
    """Dense autoencoder (two :class:`ResidualMLP`) on standardised (n, d) features; ``score`` is the mean squared
    error in standardised units."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "latent": 2, "hidden": 32, "n_blocks": 1, "epochs": 60, "batch_size": 256, "lr": 2e-3, "weight_decay": 0.0,
        "patience": 10, "validation_fraction": 0.2, "device": "auto", "seed": 0, "progress": False,
    }  # fmt: skip
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {"hidden": 128, "n_blocks": 2, "epochs": 200}}

    def __init__(self, preset: str | None = None, **config: Any) -> None:
        self.config = _resolve(type(self).__name__, self.DEFAULTS, self.PRESETS, preset, config)
        self.scaler = Standardize()
        self.model: _DenseAE | None = None
        self.history: dict[str, Any] = {}

    def _tensor(self, x: np.ndarray, source: str) -> Tensor:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise InputError(source, f"features must be a non-empty (n, d) array, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise InputError(source, "non-finite feature values")
        return torch.as_tensor(self.scaler.transform(x), dtype=torch.float32)

    def fit(self, x: np.ndarray) -> "DenseAutoencoder":
        c = self.config
        self.scaler.fit(np.asarray(x, dtype=np.float64))
        xt = self._tensor(x, "dense autoencoder training features")
        with seeded(c["seed"]):
            self.model = _DenseAE(xt.shape[1], c["latent"], c["hidden"], c["n_blocks"])
        model = self.model

        def loss_fn(batch: tuple[Tensor, ...]) -> Tensor:
            (xb,) = batch
            return (model(xb) - xb).pow(2).mean()

        tr, va = validation_split(len(xt), c["validation_fraction"], c["seed"])
        self.history = train_loop(
            model, loss_fn, (xt[tr],), (xt[va],), epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
            weight_decay=c["weight_decay"], patience=c["patience"], device=c["device"], seed=c["seed"],
            progress=c["progress"],
        )  # fmt: skip
        return self

    @torch.no_grad()
    def score(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("DenseAutoencoder.score called before fit")
        xt = self._tensor(x, "dense autoencoder features")
        dev = pick_device(self.config["device"])
        model = self.model.to(dev).eval()
        out = batched_apply(lambda b: (model(b.to(dev)) - b.to(dev)).pow(2).mean(1).cpu(), xt)
        return out.numpy().astype(np.float64)


def quantile_rank(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fraction of ``reference`` strictly below each of ``values`` (an empirical CDF in [0, 1])."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    return np.searchsorted(ref, np.asarray(values, dtype=np.float64), side="left") / max(len(ref), 1)


COMBINATIONS = ("min", "max", "sum", "light", "heavy")


def combine_jet_scores(ranks: np.ndarray, how: str) -> np.ndarray:
    """One event score from (n, 2) per-jet quantile ranks (jet 0 lighter): ``min`` (both jets anomalous, TNT's
    "both in the top X%"), ``max``, ``sum``, or one jet alone (``light``/``heavy``)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if how == "min":
        return ranks.min(axis=1)
    if how == "max":
        return ranks.max(axis=1)
    if how == "sum":
        return ranks.sum(axis=1)
    if how == "light":
        return ranks[:, 0]
    if how == "heavy":
        return ranks[:, 1]
    raise ConfigError(f"jet combination {how!r}: use one of {COMBINATIONS}")


def _jet_ranks(ref: np.ndarray, per_jet: np.ndarray) -> np.ndarray:
    return np.stack([quantile_rank(ref[:, j], per_jet[:, j]) for j in range(2)], axis=1)


def _method_defaults(image_model: type[ImageAutoencoder]) -> dict[str, Any]:
    return {
        "input": "images", "combine": "sum", "train_on": "all", "jet_features": ("m", "tau21", "tau32", "n_const"),
        "max_train_jets": None,
        **{f"ae_{k}": v for k, v in image_model.DEFAULTS.items() if k not in ("seed", "progress")},
    }  # fmt: skip


def _train_mask(data: ConstituentData, regions: Any, train_on: str) -> np.ndarray:
    if train_on == "all" or regions is None:
        return np.ones(len(data), bool)
    if train_on == "sr":
        return regions.select_sr(data.mjj, data.source)
    if train_on == "sidebands":
        return regions.select_sb(data.mjj, data.source)
    raise ConfigError(f"train_on={train_on!r}: use all, sr or sidebands")


def fit_jet_autoencoder(
    data: ConstituentData, config: dict[str, Any], seed: int, progress: bool = False,
    image_model: type[ImageAutoencoder] = ImageAutoencoder,
) -> tuple[Any, Any]:
    """An autoencoder trained on both jets of ``data`` and a function ``per_jet(data) -> (n, 2)`` of its errors.

    ``config["input"]``: ``"images"`` (``image_model``, an :class:`ImageAutoencoder` or subclass) or ``"features"``
    (:class:`DenseAutoencoder` on ``config["jet_features"]`` of each jet).
    """
    ae_conf = {k[3:]: v for k, v in config.items() if k.startswith("ae_")}
    ae_conf.update(seed=seed, progress=progress)
    cap = config.get("max_train_jets")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xAE]))
    if config["input"] == "images":
        data.require("images")
        jets = data.images.reshape(-1, *data.images.shape[2:])
        if cap is not None and len(jets) > cap:
            jets = jets[np.sort(rng.choice(len(jets), int(cap), replace=False))]
        ae = image_model(**ae_conf).fit(jets)

        def per_jet(d: ConstituentData) -> np.ndarray:
            d.require("images")
            return ae.score(d.images.reshape(-1, *d.images.shape[2:])).reshape(len(d), 2)

    elif config["input"] == "features":
        if image_model is not ImageAutoencoder:
            raise ConfigError(f"{image_model.__name__} works on jet images: use input=images")
        dense_conf = {k: v for k, v in ae_conf.items() if k in DenseAutoencoder.DEFAULTS}
        names = tuple(config["jet_features"])
        jets = data.jet_features(names).reshape(-1, len(names))
        if cap is not None and len(jets) > cap:
            jets = jets[np.sort(rng.choice(len(jets), int(cap), replace=False))]
        ae = DenseAutoencoder(**dense_conf).fit(jets)

        def per_jet(d: ConstituentData) -> np.ndarray:
            return ae.score(d.jet_features(names).reshape(-1, len(names))).reshape(len(d), 2)

    else:
        raise ConfigError(f"autoencoder input {config['input']!r}: use images or features")
    return ae, per_jet


def jet_ae_method(name: str, image_model: type[ImageAutoencoder], description: str) -> ConstituentMethod:
    """Register the constituent method ``name``: ``image_model`` (or, with ``input=features``, a dense autoencoder)
    trained on both jets of the data, events scored by their jets' reconstruction errors."""

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
        """Train the jet autoencoder on ``data`` (``train_on``: all events, the SR or the sidebands of ``regions``)
        and score data, test and ``held_out`` events by their jets' reconstruction errors (quantiles among the
        training jets of the same kind, combined with ``combine``)."""
        conf = method.config(config)
        train = data.subset(_train_mask(data, regions, conf["train_on"]))
        ae, per_jet = fit_jet_autoencoder(train, conf, seed, progress, image_model)
        ref = per_jet(train)
        # Out of fold (``held_out`` given) only the held-out events' scores are kept: the training data need none.
        data_err, test_err = (per_jet(data) if held_out is None else None), per_jet(test)
        info = {
            "n_train_events": len(train),
            "train_seconds": ae.history.get("seconds"),
            "best_epoch": ae.history.get("best_epoch"),
        }
        # what the model adds to its training history (the NAE: its energy unit and time), when a number
        info.update({k: v for k, v in ae.history.items() if np.isscalar(v) and k not in ("seconds", "best_epoch")})
        return ConstituentResult(
            test_scores=combine_jet_scores(_jet_ranks(ref, test_err), conf["combine"]),
            data_scores=None if data_err is None else combine_jet_scores(_jet_ranks(ref, data_err), conf["combine"]),
            held_out_scores=None if held_out is None else combine_jet_scores(_jet_ranks(ref, per_jet(held_out)),
                                                                             conf["combine"]),  # fmt: skip
            info=info,
            arrays={"test_jet_errors": test_err, **({} if data_err is None else {"data_jet_errors": data_err})},
        )

    method = register_method(
        ConstituentMethod(
            name=name,
            run=score_events,
            needs=("images", "features"),
            defaults=_method_defaults(image_model),
            presets={"paper": {f"ae_{k}": v for k, v in image_model.PRESETS["paper"].items()}},
            description=description,
            needs_for=lambda c: ("images", "features") if c["input"] == "images" else ("features",),
        )
    )
    return method


AUTOENCODER_METHOD = jet_ae_method(
    "autoencoder", ImageAutoencoder,
    "jet-image autoencoder; score = combined reconstruction-error quantiles of both jets",
)
