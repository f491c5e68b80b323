"""Discriminators for (weakly) supervised classification: ensembles of boosted trees or of small MLPs.

Both balance the classes with sample weights (the template is usually oversampled) and score with the mean of their
members' probabilities, which smooths the statistical noise of single weakly-supervised classifiers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import DISCRIMINATORS, Discriminator


def class_balanced_weights(y: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Weights that give both classes the same total weight (mean weight 1), times ``sample_weight``."""
    y = np.asarray(y)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).copy()
    classes = np.unique(y)
    if len(classes) != 2:
        raise ValueError(f"a discriminator needs two classes in training, got {classes.tolist()}")
    for c in classes:
        sel = y == c
        w[sel] *= len(y) / (2.0 * w[sel].sum())
    return w


def _member_seed(seed: int, member: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(member), 0xC1A5]).generate_state(1)[0] % (2**31 - 1))


def _check_xy(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {x.shape}")
    if y is not None and len(y) != len(x):
        raise ValueError(f"{len(x)} events but {len(y)} labels")
    return x


class QuantileBinner:
    """Maps each feature to the index of its (unweighted) quantile bin, at most ``n_bins`` values per feature.

    Boosted trees only see bin indices anyway; binning here, without the sample weights, makes scikit-learn's own
    binning trivial (few distinct values), where with sample weights it computes hundreds of weighted percentiles
    per feature in Python (seconds per fit).
    """

    def __init__(self, n_bins: int = 255) -> None:
        self.n_bins = int(n_bins)
        self.edges: list[np.ndarray] = []

    def fit(self, x: np.ndarray) -> "QuantileBinner":
        q = np.linspace(0, 100, self.n_bins + 1)[1:-1]
        self.edges = [np.unique(np.percentile(col, q)) for col in np.asarray(x, dtype=np.float64).T]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1] != len(self.edges):
            raise ValueError(f"{x.shape[1]} features, the binner was fitted on {len(self.edges)}")
        return np.column_stack([np.searchsorted(e, col, side="right") for e, col in zip(self.edges, x.T)]).astype(
            np.float32
        )


@DISCRIMINATORS.register("hgb")
class HGBEnsemble(Discriminator):
    """Ensemble of :class:`sklearn.ensemble.HistGradientBoostingClassifier` with early stopping.

    Members differ by their random state, hence by their validation split. ``preset="paper"`` uses 50 members (the
    size used in the boosted-tree studies of weak supervision); the default (5) fits two CPU cores. ``n_threads``
    caps OpenMP threads per fit (default 1: searches run in parallel as separate tasks, and OpenMP on busy cores is
    tens of times slower than one thread); ``None`` leaves scikit-learn's default.
    """

    PRESETS: dict[str, dict[str, Any]] = {"default": {"n_ensemble": 5}, "paper": {"n_ensemble": 50}}
    DEFAULTS: dict[str, Any] = {
        "n_ensemble": 5,
        "max_iter": 200,
        "learning_rate": 0.1,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 20,
        "l2_regularization": 0.0,
        "validation_fraction": 0.2,
        "n_iter_no_change": 10,
        "balance": True,
        "n_threads": 1,
        "seed": 0,
    }

    def __init__(self, preset: str = "default", **config: Any) -> None:
        if preset not in self.PRESETS:
            raise ValueError(f"unknown hgb preset {preset!r}; available: {sorted(self.PRESETS)}")
        unknown = set(config) - set(self.DEFAULTS) - {"device"}
        if unknown:
            raise ValueError(f"unknown hgb options {sorted(unknown)}; available: {sorted(self.DEFAULTS)}")
        config.pop("device", None)  # trees run on CPU; accepted so that callers can pass one config to any classifier
        super().__init__(preset=preset, **{**self.DEFAULTS, **self.PRESETS[preset], **config})
        self.members: list[Any] = []

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "HGBEnsemble":
        from sklearn.ensemble import HistGradientBoostingClassifier

        x = _check_xy(x, y)
        y = np.asarray(y).astype(np.int64)
        c = self.config
        w = class_balanced_weights(y, sample_weight) if c["balance"] else sample_weight
        self.binner = QuantileBinner().fit(x)
        x = self.binner.transform(x)
        self.members = []
        for j in range(int(c["n_ensemble"])):
            clf = HistGradientBoostingClassifier(
                max_iter=c["max_iter"],
                learning_rate=c["learning_rate"],
                max_leaf_nodes=c["max_leaf_nodes"],
                min_samples_leaf=c["min_samples_leaf"],
                l2_regularization=c["l2_regularization"],
                early_stopping=True,
                validation_fraction=c["validation_fraction"],
                n_iter_no_change=c["n_iter_no_change"],
                random_state=_member_seed(c["seed"], j),
            )
            with self._threads():
                clf.fit(x, y, sample_weight=w)
            self.members.append(clf)
        return self

    def _threads(self):
        from contextlib import nullcontext

        from threadpoolctl import threadpool_limits

        n = self.config["n_threads"]
        return nullcontext() if n is None else threadpool_limits(limits=int(n), user_api="openmp")

    def score(self, x: np.ndarray) -> np.ndarray:
        if not self.members:
            raise RuntimeError("HGBEnsemble.score called before fit")
        x = self.binner.transform(_check_xy(x))
        with self._threads():
            return np.mean([clf.predict_proba(x)[:, 1] for clf in self.members], axis=0)


@DISCRIMINATORS.register("mlp")
class MLPEnsemble(Discriminator):
    """Ensemble of MLPs (3 x 64 ReLU, the CATHODE classifier) trained with weighted BCE via
    :func:`anomalyhunt.models.nn.train_loop`; each member keeps its best-validation-loss weights.

    Inputs are standardised with the training mean and spread; ``validation_fraction`` of the training events
    (different per member) choose the epoch.
    """

    DEFAULTS: dict[str, Any] = {
        "n_ensemble": 5,
        "hidden": (64, 64, 64),
        "epochs": 100,
        "batch_size": 128,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "patience": 10,
        "validation_fraction": 0.2,
        "balance": True,
        "device": "cpu",
        "seed": 0,
        "progress": False,
    }

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"unknown mlp options {sorted(unknown)}; available: {sorted(self.DEFAULTS)}")
        merged = {**self.DEFAULTS, **config}
        merged["hidden"] = tuple(int(h) for h in merged["hidden"])
        super().__init__(**merged)
        self.members: list[Any] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def _net(self, d: int):
        from torch import nn

        layers: list[nn.Module] = []
        for h in self.config["hidden"]:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, 1))
        return nn.Sequential(*layers)

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "MLPEnsemble":
        import torch

        from .nn import train_loop

        x = _check_xy(x, y)
        y = np.asarray(y).astype(np.int64)
        c = self.config
        w = class_balanced_weights(y, sample_weight) if c["balance"] else (
            np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        )
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-12
        xs = torch.as_tensor((x - self.mean) / self.std, dtype=torch.float32)
        yt = torch.as_tensor(y, dtype=torch.float32)
        wt = torch.as_tensor(w, dtype=torch.float32)

        def loss_fn(batch):
            xb, yb, wb = batch
            logits = model(xb)[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb, reduction="none")
            return (loss * wb).sum() / wb.sum()

        self.members = []
        for j in range(int(c["n_ensemble"])):
            seed = _member_seed(c["seed"], j)
            rng = np.random.default_rng(seed)
            is_val = np.zeros(len(y), bool)
            for cls in (0, 1):  # stratified, so that the validation loss sees both classes in proportion
                idx = np.flatnonzero(y == cls)
                is_val[rng.choice(idx, int(round(c["validation_fraction"] * len(idx))), replace=False)] = True
            torch.manual_seed(seed)
            model = self._net(x.shape[1])
            tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
            train_loop(
                model,
                loss_fn,
                (xs[tr], yt[tr], wt[tr]),
                (xs[va], yt[va], wt[va]) if len(va) else None,
                epochs=c["epochs"],
                batch_size=c["batch_size"],
                lr=c["lr"],
                weight_decay=c["weight_decay"],
                patience=c["patience"],
                device=c["device"],
                seed=seed,
                progress=c["progress"],
                keep_best=1,
            )
            self.members.append(model.to("cpu").eval())
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        import torch

        if not self.members:
            raise RuntimeError("MLPEnsemble.score called before fit")
        x = _check_xy(x)
        xs = torch.as_tensor((x - self.mean) / self.std, dtype=torch.float32)
        with torch.no_grad():
            return np.mean([torch.sigmoid(net(xs)[:, 0]).numpy() for net in self.members], axis=0).astype(np.float64)
