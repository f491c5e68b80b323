"""Tag N' Train (TNT): weak labels from one jet train a classifier on the other jet, iterated.

In a resonance X -> (jet a)(jet b) both jets are anomalous together, while in QCD the two jets are nearly independent.
So events whose *lighter* jet looks anomalous (top ``sig_frac`` of the tagger score) are enriched in signal, and
events whose lighter jet looks typical (bottom ``bkg_frac``) are depleted; a classifier trained on the *heavier* jet
with these noisy labels learns what the signal's heavier jet looks like (CWoLa with mixtures made by tagging), and
vice versa. The first taggers are a jet autoencoder's reconstruction errors; later iterations tag with the previous
classifiers. The event score is the smaller of the two jets' score quantiles: cutting on it keeps events with *both*
jets in the top X%.

Inputs are jet images (:class:`JetImageClassifier`, a small CNN; the published one has conv 32-8-8-4 and dense 16)
or, with ``input="features"``, per-jet high-level features (mass, tau21, tau32, multiplicity) with a registered
feature discriminator (``mlp`` or ``hgb``) and the dense autoencoder.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .constituents import ConstituentData, ConstituentMethod, ConstituentResult, register_method
from ..errors import ConfigError, InputError
from .autoencoder import _jet_ranks, _resolve, combine_jet_scores, fit_jet_autoencoder
from .base import DISCRIMINATORS, Discriminator
from .classifiers import class_balanced_weights
from .nn import batched_apply, pick_device, seeded, sub_seed, train_loop

__all__ = ["JetCNN", "JetImageClassifier", "tag_labels", "tag_n_train", "score_events"]


class JetCNN(nn.Module):
    """Conv(3x3) + SiLU layers, each followed by 2x2 max pooling while the image is larger than 5 pixels, then a
    dense layer and one logit."""

    def __init__(self, n_pixels: int = 40, channels: tuple[int, ...] = (8, 8, 4), dense: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size, c_in = n_pixels, 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.SiLU()]
            if size >= 10:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c
        self.net = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(c_in * size * size, dense), nn.SiLU(), nn.Linear(dense, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, 0]


@DISCRIMINATORS.register("jet-cnn")
class JetImageClassifier(Discriminator):
    """A :class:`JetCNN` on (n, P, P) jet images trained with class-balanced, weighted binary cross-entropy
    (:func:`anomalyhunt.models.nn.train_loop`, best validation epoch kept)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "channels": (8, 8, 4), "dense": 16, "epochs": 8, "batch_size": 200, "lr": 3e-3, "weight_decay": 0.0,
        "patience": 4, "validation_fraction": 0.2, "balance": True, "device": "auto", "seed": 0, "progress": False,
    }  # fmt: skip
    #: The Tag N' Train paper's classifier: conv 32-8-8-4, dense 16, 40 epochs, batch 200.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"channels": (32, 8, 8, 4), "dense": 16, "epochs": 40, "batch_size": 200, "lr": 1e-3, "patience": 10},
    }

    def __init__(self, preset: str | None = None, **config: Any) -> None:
        merged = _resolve(type(self).__name__, self.DEFAULTS, self.PRESETS, preset, config)
        merged["channels"] = tuple(int(c) for c in merged["channels"])
        super().__init__(**merged)
        self.model: JetCNN | None = None
        self.history: dict[str, Any] = {}

    @staticmethod
    def _tensor(x: np.ndarray, source: str) -> Tensor:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3 or x.shape[1] != x.shape[2]:
            raise InputError(source, f"jet-cnn needs (n, P, P) jet images, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise InputError(source, "non-finite pixel values")
        # Unit-sum images have tiny pixels; scaling by the pixel count makes an average pixel of order one.
        return torch.as_tensor(x * x.shape[1] * x.shape[2])[:, None]

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "JetImageClassifier":
        c = self.config
        xt = self._tensor(x, "jet-cnn training images")
        y = np.asarray(y).astype(np.int64)
        if len(y) != len(xt):
            raise InputError("jet-cnn training images", f"{len(xt)} images but {len(y)} labels")
        w = class_balanced_weights(y, sample_weight) if c["balance"] else (
            np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        )
        yt, wt = torch.as_tensor(y, dtype=torch.float32), torch.as_tensor(w, dtype=torch.float32)
        with seeded(c["seed"]):
            self.model = JetCNN(xt.shape[-1], c["channels"], c["dense"])
        model = self.model

        def loss_fn(batch: tuple[Tensor, ...]) -> Tensor:
            xb, yb, wb = batch
            loss = nn.functional.binary_cross_entropy_with_logits(model(xb), yb, reduction="none")
            return (loss * wb).sum() / wb.sum()

        rng = np.random.default_rng(c["seed"])
        is_val = np.zeros(len(y), bool)
        for cls in (0, 1):  # stratified, so the validation loss sees both classes
            idx = np.flatnonzero(y == cls)
            is_val[rng.choice(idx, int(round(c["validation_fraction"] * len(idx))), replace=False)] = True
        tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        self.history = train_loop(
            model, loss_fn, (xt[tr], yt[tr], wt[tr]), (xt[va], yt[va], wt[va]) if len(va) else None,
            epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], weight_decay=c["weight_decay"],
            patience=c["patience"], device=c["device"], seed=c["seed"], progress=c["progress"],
        )  # fmt: skip
        return self

    @torch.no_grad()
    def score(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("JetImageClassifier.score called before fit")
        xt = self._tensor(x, "jet-cnn images")
        dev = pick_device(self.config["device"])
        model = self.model.to(dev).eval()
        return batched_apply(lambda b: torch.sigmoid(model(b.to(dev))).cpu(), xt, batch_size=4096).numpy().astype(
            np.float64
        )


def tag_labels(tagger: np.ndarray, sig_frac: float = 0.2, bkg_frac: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Noisy labels from a tagger score: (indices, labels) with the top ``sig_frac`` as 1 and the bottom
    ``bkg_frac`` as 0 (the events in between are not used)."""
    if not (0 < sig_frac < 1 and 0 < bkg_frac < 1 and sig_frac + bkg_frac <= 1):
        raise ConfigError(f"sig_frac={sig_frac}, bkg_frac={bkg_frac}: each in (0, 1) and their sum <= 1")
    order = np.argsort(tagger, kind="stable")
    n = len(order)
    n_sig, n_bkg = int(round(sig_frac * n)), int(round(bkg_frac * n))
    if n_sig == 0 or n_bkg == 0:
        raise InputError("Tag N' Train", f"{n} events are too few to tag {sig_frac:g} / {bkg_frac:g} of them")
    idx = np.concatenate([order[n - n_sig :], order[:n_bkg]])
    return idx, np.concatenate([np.ones(n_sig, np.int64), np.zeros(n_bkg, np.int64)])


TNT_DEFAULTS: dict[str, Any] = {
    "input": "images",
    "iterations": 2,
    "sig_frac": 0.2,
    "bkg_frac": 0.4,
    "window": None,  # None: all data events; "sr": the SR of the search; or (lo, hi) in TeV
    "combine": "min",
    "jet_features": ("m", "tau21", "tau32", "n_const"),
    "max_train_jets": None,
    "feature_classifier": "mlp",
    "feature_classifier_config": {"n_ensemble": 1, "epochs": 40, "patience": 8},
    **{f"cnn_{k}": v for k, v in JetImageClassifier.DEFAULTS.items() if k not in ("seed", "progress", "balance")},
    "ae_channels": (8, 16, 8), "ae_hidden": 32, "ae_latent": 6, "ae_epochs": 10, "ae_batch_size": 64,
    "ae_lr": 5e-3, "ae_weight_decay": 0.0, "ae_patience": 4, "ae_validation_fraction": 0.2, "ae_device": "auto",
}  # fmt: skip


def _window_mask(data: ConstituentData, regions: Any, window: Any) -> np.ndarray:
    if window is None:
        return np.ones(len(data), bool)
    if window == "sr":
        if regions is None:
            raise ConfigError("Tag N' Train window='sr' needs the search regions")
        return regions.select_sr(data.mjj, data.source)
    lo, hi = (float(v) for v in window)
    mask = (data.mjj >= lo) & (data.mjj < hi)
    if not mask.any():
        raise InputError(data.source, f"no events in the Tag N' Train window {lo:g}-{hi:g} TeV")
    return mask


def _make_jet_classifier(conf: dict[str, Any], seed: int, progress: bool) -> Discriminator:
    if conf["input"] == "images":
        cnn = {k[4:]: v for k, v in conf.items() if k.startswith("cnn_")}
        return JetImageClassifier(**cnn, seed=seed, progress=progress)
    cls = DISCRIMINATORS.get(conf["feature_classifier"])
    return cls(**{**dict(conf["feature_classifier_config"] or {}), "seed": seed})


def _jet_inputs(data: ConstituentData, conf: dict[str, Any], jet: int) -> np.ndarray:
    if conf["input"] == "images":
        data.require("images")
        return data.images[:, jet]
    return data.jet_features(tuple(conf["jet_features"]))[:, jet]


def tag_n_train(
    train: ConstituentData, config: dict[str, Any], seed: int = 0, progress: bool = False
) -> tuple[list[Discriminator], dict[str, Any]]:
    """Run TNT on ``train``; returns the final (lighter-jet, heavier-jet) classifiers and a record: the starting
    autoencoder (``ae``, ``ae_per_jet``, ``ae_train_errors``) and per iteration ``tagger_ranks`` (the (n, 2) tagger
    quantiles used for labelling) and ``labelled_light``/``labelled_heavy`` (indices, labels) of the events each
    jet's classifier was trained on."""
    conf = config
    if int(conf["iterations"]) < 1:
        raise ConfigError(f"Tag N' Train iterations={conf['iterations']}: need at least 1")
    ae, per_jet = fit_jet_autoencoder(train, conf, sub_seed(seed, 0), progress)
    ae_err = per_jet(train)
    tagger = _jet_ranks(ae_err, ae_err)
    record: dict[str, Any] = {"ae_train_errors": ae_err, "iterations": []}
    classifiers: list[Discriminator] = []
    for it in range(int(conf["iterations"])):
        classifiers = []
        step: dict[str, Any] = {"tagger_ranks": tagger}
        new_scores = np.empty_like(tagger)
        for jet in (0, 1):
            # The classifier of this jet learns from labels made with the *other* jet's tagger.
            idx, labels = tag_labels(tagger[:, 1 - jet], conf["sig_frac"], conf["bkg_frac"])
            clf = _make_jet_classifier(conf, sub_seed(seed, 1 + it, jet), progress)
            x = _jet_inputs(train, conf, jet)
            clf.fit(x[idx], labels)
            classifiers.append(clf)
            new_scores[:, jet] = clf.score(x)
            step[f"labelled_{'light' if jet == 0 else 'heavy'}"] = (idx, labels)
        record["iterations"].append(step)
        tagger = _jet_ranks(new_scores, new_scores)
    record["ae"] = ae
    record["ae_per_jet"] = per_jet
    return classifiers, record


def _classifier_scores(classifiers: list[Discriminator], data: ConstituentData, conf: dict[str, Any]) -> np.ndarray:
    return np.stack([classifiers[j].score(_jet_inputs(data, conf, j)) for j in (0, 1)], axis=1)


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
    """Tag N' Train on the data events in ``window``; score data, test and ``held_out`` events with the final
    classifiers (each jet's score as a quantile among the training events' jets of the same kind, combined with
    ``combine``; ``min`` is "both jets in the top X%"). The starting autoencoder's scores are returned too
    (``arrays``), for comparison."""
    conf = TNT_METHOD.config(config)
    in_window = _window_mask(data, regions, conf["window"])
    train = data.subset(in_window)
    classifiers, record = tag_n_train(train, conf, seed, progress)
    ref = _classifier_scores(classifiers, train, conf)
    test_jets = _classifier_scores(classifiers, test, conf)
    # Out of fold (``held_out`` given) only the held-out events' scores are kept: the training data need none.
    data_jets = _classifier_scores(classifiers, data, conf) if held_out is None else None
    ae_ref = record["ae_train_errors"]
    ae_test = record["ae_per_jet"](test)
    last = record["iterations"][-1]
    train_label = train.label
    info: dict[str, Any] = {
        "n_train_events": int(len(train)),
        "window": conf["window"] if conf["window"] != "sr" or regions is None else list(regions.sr),
        "iterations": int(conf["iterations"]),
    }
    if (train_label >= 0).all():  # simulation: how pure were the noisy labels (bookkeeping, never used in training)
        info["signal_fraction_train"] = float((train_label == 1).mean())
        for it, step in enumerate(record["iterations"]):
            for name in ("light", "heavy"):
                idx, lab = step[f"labelled_{name}"]
                info[f"iter{it}_{name}_signal_fraction_in_sig_tag"] = float((train_label[idx[lab == 1]] == 1).mean())
                info[f"iter{it}_{name}_signal_fraction_in_bkg_tag"] = float((train_label[idx[lab == 0]] == 1).mean())
    held = None
    if held_out is not None:
        held = combine_jet_scores(_jet_ranks(ref, _classifier_scores(classifiers, held_out, conf)), conf["combine"])
    return ConstituentResult(
        test_scores=combine_jet_scores(_jet_ranks(ref, test_jets), conf["combine"]),
        data_scores=None if data_jets is None else combine_jet_scores(_jet_ranks(ref, data_jets), conf["combine"]),
        held_out_scores=held,
        info=info,
        arrays={
            "test_jet_scores": test_jets,
            **({} if data_jets is None else {"data_jet_scores": data_jets}),
            "test_ae_scores": combine_jet_scores(_jet_ranks(ae_ref, ae_test), conf["combine"]),
            "data_in_window": in_window,
            "train_selected_for_light": _selection(len(train), *last["labelled_light"]),
            "train_selected_for_heavy": _selection(len(train), *last["labelled_heavy"]),
        },
    )


def _selection(n: int, idx: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per training (in-window) event: 1 tagged signal-like, -1 tagged background-like, 0 not used."""
    out = np.zeros(n, np.int8)
    out[idx[labels == 1]] = 1
    out[idx[labels == 0]] = -1
    return out


TNT_METHOD = register_method(
    ConstituentMethod(
        name="tnt",
        run=score_events,
        needs=("images", "features"),
        defaults=TNT_DEFAULTS,
        presets={
            "paper": {
                "window": (3.3, 3.7),
                **{f"cnn_{k}": v for k, v in JetImageClassifier.PRESETS["paper"].items()},
                "ae_channels": (16, 32, 16), "ae_hidden": 64, "ae_epochs": 100, "ae_batch_size": 256,
                "ae_lr": 1e-3, "ae_patience": 10,
            },
        },  # fmt: skip
        description="Tag N' Train: autoencoder tags one jet, a classifier learns the other; both jets in the top X%",
        needs_for=lambda c: ("images", "features") if c["input"] == "images" else ("features",),
    )
)
