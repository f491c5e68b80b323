"""CWoLa on constituents: a permutation-invariant classifier of SR against sideband events.

The classifier (:class:`DeepSetsNet`) applies one network to every constituent, sums over the constituents of a jet,
maps the sum through a per-jet network, sums the two jets and classifies the event with an MLP (the structure of the
constituent-level DRAPES discriminator). It is invariant under permutations of constituents and of the two jets.
Its inputs are the constituent features loaded in the :class:`ConstituentData` (boost-invariant by default), so that
it cannot learn m_jj from the absolute momentum scale; the decorrelation check is that, trained on background only,
it does not separate SR from sidebands.

The registered method ``constituent-cwola`` trains SR (label 1) against sidebands (label 0) with the shared k-fold
CWoLa (:func:`anomalyhunt.models.kfold.kfold_classify`); SR against a background template follows once a
constituent-level generator exists (pass the template as ``x0`` to ``kfold_classify`` with the same classifier).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .constituents import ConstituentData, ConstituentMethod, ConstituentResult, register_method
from ..errors import ConfigError, InputError
from .autoencoder import _resolve
from .base import DISCRIMINATORS, Discriminator
from .classifiers import class_balanced_weights
from .nn import batched_apply, pick_device, seeded, train_loop

__all__ = ["DeepSetsNet", "ConstituentClassifier", "pack", "pack_clouds", "score_events"]


def _mlp(sizes: list[int], final_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_act:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class DeepSetsNet(nn.Module):
    """Event logit from (B, 2, N, F) constituents and a (B, 2, N) mask: sum_jets rho(sum_constituents phi(c))."""

    def __init__(self, n_features: int, hidden: int = 32, latent: int = 32, head: int = 32) -> None:
        super().__init__()
        self.phi = _mlp([n_features, hidden, latent], final_act=True)
        self.jet = _mlp([latent, hidden, latent], final_act=True)
        self.head = _mlp([latent, head, head, 1], final_act=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        per_const = self.phi(x) * mask[..., None]
        # Sums grow with the multiplicity; dividing by a fixed scale (not the count) keeps them of order one while
        # keeping the multiplicity information.
        jets = self.jet(per_const.sum(dim=2) / 10.0)
        return self.head(jets.sum(dim=1))[:, 0]


def pack(clouds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, 2, N, F + 1) float32: constituent features (n, 2, N, F), zero where padded, and the mask (n, 2, N) as the
    last channel: the input of :class:`ConstituentClassifier`."""
    return np.concatenate([np.where(mask[..., None], clouds, 0.0), mask[..., None]], axis=-1).astype(np.float32)


def pack_clouds(data: ConstituentData, n_constituents: int | None = None) -> np.ndarray:
    """:func:`pack` of the loaded constituent features of ``data`` (the first ``n_constituents`` per jet)."""
    data.require("clouds")
    n = data.clouds.shape[2] if n_constituents is None else min(int(n_constituents), data.clouds.shape[2])
    return pack(data.clouds[:, :, :n], data.mask[:, :, :n])


@DISCRIMINATORS.register("deepsets")
class ConstituentClassifier(Discriminator):
    """A :class:`DeepSetsNet` on packed clouds (:func:`pack_clouds`), trained with class-balanced, weighted binary
    cross-entropy through :func:`anomalyhunt.models.nn.train_loop` (best validation epoch kept). Features are
    standardised with the training constituents' mean and spread."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "hidden": 32, "latent": 32, "head": 32, "epochs": 20, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.0,
        "patience": 5, "validation_fraction": 0.2, "balance": True, "device": "auto", "seed": 0, "progress": False,
    }  # fmt: skip
    #: The size of the constituent-level DRAPES discriminator (GPU).
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"hidden": 128, "latent": 128, "head": 128, "epochs": 100, "batch_size": 256, "patience": 10},
    }

    def __init__(self, preset: str | None = None, **config: Any) -> None:
        super().__init__(**_resolve(type(self).__name__, self.DEFAULTS, self.PRESETS, preset, config))
        self.model: DeepSetsNet | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.history: dict[str, Any] = {}

    @staticmethod
    def _split(x: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 2 or x.shape[-1] < 2:
            raise InputError(source, f"deepsets needs packed clouds (n, 2, N, F + 1) from pack_clouds, got {x.shape}")
        if not np.isfinite(x).all():
            raise InputError(source, "non-finite constituent features")
        return x[..., :-1], x[..., -1] > 0.5

    def _tensors(self, feats: np.ndarray, mask: np.ndarray) -> tuple[Tensor, Tensor]:
        z = np.where(mask[..., None], (feats - self.mean) / self.std, 0.0).astype(np.float32)
        return torch.as_tensor(z), torch.as_tensor(mask)

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "ConstituentClassifier":
        c = self.config
        feats, mask = self._split(x, "deepsets training events")
        y = np.asarray(y).astype(np.int64)
        if len(y) != len(feats):
            raise InputError("deepsets training events", f"{len(feats)} events but {len(y)} labels")
        valid = feats[mask]
        self.mean, std = valid.mean(axis=0), valid.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        xt, mt = self._tensors(feats, mask)
        w = class_balanced_weights(y, sample_weight) if c["balance"] else (
            np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        )
        yt, wt = torch.as_tensor(y, dtype=torch.float32), torch.as_tensor(w, dtype=torch.float32)
        with seeded(c["seed"]):
            self.model = DeepSetsNet(feats.shape[-1], c["hidden"], c["latent"], c["head"])
        model = self.model

        def loss_fn(batch: tuple[Tensor, ...]) -> Tensor:
            xb, mb, yb, wb = batch
            loss = nn.functional.binary_cross_entropy_with_logits(model(xb, mb), yb, reduction="none")
            return (loss * wb).sum() / wb.sum()

        rng = np.random.default_rng(c["seed"])
        is_val = np.zeros(len(y), bool)
        for cls in (0, 1):
            idx = np.flatnonzero(y == cls)
            is_val[rng.choice(idx, int(round(c["validation_fraction"] * len(idx))), replace=False)] = True
        tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        self.history = train_loop(
            model, loss_fn, (xt[tr], mt[tr], yt[tr], wt[tr]), (xt[va], mt[va], yt[va], wt[va]) if len(va) else None,
            epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], weight_decay=c["weight_decay"],
            patience=c["patience"], device=c["device"], seed=c["seed"], progress=c["progress"],
        )  # fmt: skip
        return self

    @torch.no_grad()
    def score(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("ConstituentClassifier.score called before fit")
        xt, mt = self._tensors(*self._split(x, "deepsets events"))
        dev = pick_device(self.config["device"])
        model = self.model.to(dev).eval()
        out = batched_apply(lambda a, b: torch.sigmoid(model(a.to(dev), b.to(dev))).cpu(), xt, mt, batch_size=4096)
        return out.numpy().astype(np.float64)


CWOLA_DEFAULTS: dict[str, Any] = {
    "n_constituents": 30,
    "folds": 5,
    **{k: v for k, v in ConstituentClassifier.DEFAULTS.items() if k not in ("seed", "progress")},
}


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
    """k-fold CWoLa of SR against sideband data events (``held_out`` is not used: the method keeps its own folds);
    ``data_scores`` are out-of-fold for SR and sideband events
    (and the mean of the fold models elsewhere), ``test_scores`` the mean of the fold models."""
    from .kfold import kfold_classify

    if regions is None:
        raise ConfigError("constituent-cwola needs the search regions (signal region and sidebands)")
    conf = CWOLA_METHOD.config(config)
    sr, sb = regions.select_sr(data.mjj, data.source), regions.select_sb(data.mjj, data.source)
    packed = pack_clouds(data, conf["n_constituents"])
    other = ~(sr | sb)
    x_eval = np.concatenate([pack_clouds(test, conf["n_constituents"]), packed[other]])
    clf_conf = {k: v for k, v in conf.items() if k in ConstituentClassifier.DEFAULTS}

    def make(s: int) -> ConstituentClassifier:
        return ConstituentClassifier(**clf_conf, seed=s, progress=progress)

    res = kfold_classify(packed[sr], packed[sb], x_eval, classifier=make, folds=int(conf["folds"]), seed=seed,
                         progress=progress)  # fmt: skip
    data_scores = np.empty(len(data))
    data_scores[sr], data_scores[sb] = res.scores_1, res.scores_0
    data_scores[other] = res.test_scores[len(test) :]
    return ConstituentResult(
        test_scores=res.test_scores[: len(test)],
        data_scores=data_scores,
        info={"n_sr": int(sr.sum()), "n_sb": int(sb.sum()), "seconds": res.seconds},
        arrays={"data_in_sr": sr, "data_in_sb": sb},
    )


CWOLA_METHOD = register_method(
    ConstituentMethod(
        name="constituent-cwola",
        run=score_events,
        needs=("clouds", "features"),
        defaults=CWOLA_DEFAULTS,
        presets={"paper": {"n_constituents": 50, **ConstituentClassifier.PRESETS["paper"]}},
        description="CWoLa with a permutation-invariant constituent classifier, SR against sidebands (k-fold)",
        own_folds=True,
    )
)
