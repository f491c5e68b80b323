"""AnomalyCLR / DarkCLR: a contrastively trained, permutation-invariant representation of jets, and its anomaly score.

A transformer encoder (no positional encoding, padding mask, sum pooling, two-layer head) maps a jet's constituents
``(deta, dphi, log pt_rel, dR)`` to a vector ``z``. Training (NT-Xent, temperature 0.1) pulls two physical
augmentations of a jet together and pushes other jets away (DarkCLR); AnomalyCLR also pushes each jet's *anomaly*
augmentations away (:mod:`.augment`), so that the representation learns what makes a jet unlike QCD.

The anomaly score of a jet is the L2 norm of ``z`` times a sign fixed before any test event is seen. The cosine
similarities of NT-Xent leave the norm free, so AnomalyCLR adds a ranking term (weight ``norm_weight``) that makes
an anomaly augmentation's norm larger than its jet's: the sign is then +1 by construction. Without it (DarkCLR),
``norm_sign="auto"`` takes the sign of (mean norm of anomaly-augmented training jets - mean norm of the training
jets), a label-free calibration on the training data. An event's score combines its two jets' score quantiles.
A dense autoencoder on the event representation ``[z_light, z_heavy]`` gives a second score, and the
linear-classifier test (logistic regression on the frozen representation vs on the raw constituents, evaluated with
cross-validation on the truth-labelled test set) measures how much signal information the representation keeps.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .constituents import ConstituentData, ConstituentMethod, ConstituentResult, register_method
from ..errors import ConfigError, InputError
from .augment import anomaly_augment, pad_slots, physical_augment
from .autoencoder import DenseAutoencoder, _jet_ranks, _resolve, _train_mask, combine_jet_scores
from .nn import pick_device, seeded, train_loop

__all__ = [
    "ConstituentTransformer", "nt_xent", "jets_from_clouds", "encoder_inputs", "CLRModel", "linear_probe",
    "raw_constituents", "score_events",
]  # fmt: skip

#: Typical spreads of the encoder inputs, so that they enter at order one (fixed, not fitted: augmented and
#: original jets must be scaled the same way).
_ANGLE_SCALE = 0.3
_LOG_PT_CENTER, _LOG_PT_SCALE = -5.0, 1.6


class ConstituentTransformer(nn.Module):
    """Per-constituent embedding -> ``layers`` transformer-encoder layers (no positional encoding, padded
    constituents masked out) -> sum over constituents -> Linear-ReLU-Linear head."""

    def __init__(
        self, in_dim: int = 4, embed: int = 32, ff: int = 64, heads: int = 2, layers: int = 2, out: int = 32,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Linear(in_dim, embed)
        layer = nn.TransformerEncoderLayer(embed, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(embed, embed), nn.ReLU(), nn.Linear(embed, out))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x`` (B, N, in_dim), ``mask`` (B, N) True for real constituents -> (B, out)."""
        h = self.encoder(self.embed(x), src_key_padding_mask=~mask)
        h = (h * mask[..., None]).sum(dim=1)
        return self.head(h)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.1, negatives: Tensor | None = None) -> Tensor:
    """Normalised-temperature cross-entropy (SimCLR): ``z1[i]`` and ``z2[i]`` are positives, every other view in
    the batch a negative; rows of ``negatives`` (e.g. anomaly augmentations) are extra negatives for every anchor."""
    b = z1.shape[0]
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    if negatives is not None:
        zn = nn.functional.normalize(negatives, dim=1)
        sim = torch.cat([sim, z @ zn.T / temperature], dim=1)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return nn.functional.cross_entropy(sim, target)


def jets_from_clouds(data: ConstituentData, n_constituents: int) -> tuple[Tensor, Tensor]:
    """(events * 2, n, 3) ``(deta, dphi, pt_rel)`` and (events * 2, n) mask, jet-major per event (light, heavy)."""
    data.require("clouds")
    cols = [data.feature_index(f) for f in ("deta", "dphi", "log_pt_rel")]
    c = data.clouds[:, :, :n_constituents][..., cols].reshape(-1, min(n_constituents, data.clouds.shape[2]), 3)
    m = data.mask[:, :, :n_constituents].reshape(len(c), -1)
    x = np.where(m[..., None], c, 0.0).astype(np.float32)
    x[..., 2] = np.where(m, np.exp(c[..., 2]), 0.0)
    return torch.as_tensor(x), torch.as_tensor(m)


def encoder_inputs(x: Tensor, mask: Tensor) -> Tensor:
    """``(deta, dphi, pt_rel)`` -> the encoder's inputs ``(deta, dphi, log pt_rel, dR)``, scaled to order one."""
    log_pt = (torch.log(x[..., 2].clamp(min=1e-8)) - _LOG_PT_CENTER) / _LOG_PT_SCALE
    dr = torch.sqrt(x[..., 0] ** 2 + x[..., 1] ** 2 + 1e-12)
    feats = torch.stack([x[..., 0] / _ANGLE_SCALE, x[..., 1] / _ANGLE_SCALE, log_pt, dr / _ANGLE_SCALE], dim=-1)
    return feats * mask[..., None]


class CLRModel:
    """The encoder and its contrastive training; ``represent`` gives ``z`` per jet, ``jet_scores`` its signed norm."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_constituents": 30, "extra_slots": 6, "embed": 32, "ff": 64, "heads": 2, "layers": 2, "out": 32,
        "dropout": 0.0, "temperature": 0.1, "anomaly_negatives": True, "norm_weight": 1.0, "epochs": 4,
        "batch_size": 128, "lr": 1e-3,
        "weight_decay": 0.0, "patience": None, "validation_fraction": 0.1, "norm_sign": "auto", "device": "auto",
        "seed": 0, "progress": False,
    }  # fmt: skip
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        #: DarkCLR as published: 50 constituents, embedding 128, ff 512, 4 heads, 4 layers, output 512, 150 epochs,
        #: batch 256, lr 5e-5 (100k jets; a GPU setting).
        "darkclr": {"n_constituents": 50, "extra_slots": 10, "embed": 128, "ff": 512, "heads": 4, "layers": 4,
                    "out": 512, "epochs": 150, "batch_size": 256, "lr": 5e-5, "anomaly_negatives": False},
        "anomalyclr": {"n_constituents": 50, "extra_slots": 10, "embed": 128, "ff": 512, "heads": 4, "layers": 4,
                       "out": 512, "epochs": 150, "batch_size": 256, "lr": 5e-5, "anomaly_negatives": True},
    }  # fmt: skip

    def __init__(self, preset: str | None = None, **config: Any) -> None:
        self.config = _resolve(type(self).__name__, self.DEFAULTS, self.PRESETS, preset, config)
        self.model: ConstituentTransformer | None = None
        self.sign = 1.0
        self.history: dict[str, Any] = {}

    def _views_loss(self, x: Tensor, mask: Tensor) -> Tensor:
        c = self.config
        model = self.model
        x, mask = pad_slots(x, mask, int(c["extra_slots"]))
        x1, m1 = physical_augment(x, mask)
        x2, m2 = physical_augment(x, mask)
        z1, z2 = model(encoder_inputs(x1, m1), m1), model(encoder_inputs(x2, m2), m2)
        if not c["anomaly_negatives"]:
            return nt_xent(z1, z2, c["temperature"])
        xa, ma = anomaly_augment(x, mask)
        za = model(encoder_inputs(xa, ma), ma)
        loss = nt_xent(z1, z2, c["temperature"], za)
        if c["norm_weight"] > 0:
            # The cosine similarities leave |z| free; this ranking term ties it to anomaly, so that the norm score's
            # sign (+1: larger = more anomalous) is fixed by construction.
            log_ratio = torch.log(z1.norm(dim=1) + 1e-6) - torch.log(za.norm(dim=1) + 1e-6)
            loss = loss + c["norm_weight"] * nn.functional.softplus(log_ratio).mean()
        return loss

    def fit(self, x: Tensor, mask: Tensor) -> "CLRModel":
        """Train on jets ``x`` (J, N, 3) ``(deta, dphi, pt_rel)`` with ``mask`` (J, N)."""
        c = self.config
        if len(x) < 4:
            raise InputError("CLR training jets", f"{len(x)} jets are too few for contrastive training")
        with seeded(c["seed"]):
            self.model = ConstituentTransformer(4, c["embed"], c["ff"], c["heads"], c["layers"], c["out"], c["dropout"])
        rng = np.random.default_rng(np.random.SeedSequence([int(c["seed"]), 0xC1])).permutation(len(x))
        n_val = int(round(c["validation_fraction"] * len(x)))
        va, tr = torch.as_tensor(rng[:n_val]), torch.as_tensor(rng[n_val:])
        self.history = train_loop(
            self.model, lambda batch: self._views_loss(*batch), (x[tr], mask[tr]),
            (x[va], mask[va]) if n_val >= 4 else None, epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
            weight_decay=c["weight_decay"], patience=c["patience"], device=c["device"], seed=c["seed"],
            progress=c["progress"],
        )  # fmt: skip
        self.sign = self._calibrate_sign(x[tr[:2000]], mask[tr[:2000]])
        return self

    @torch.no_grad()
    def _calibrate_sign(self, x: Tensor, mask: Tensor) -> float:
        sign = self.config["norm_sign"]
        if sign in (1, -1, 1.0, -1.0):
            return float(sign)
        if sign == "auto" and self.config["anomaly_negatives"] and self.config["norm_weight"] > 0:
            return 1.0  # trained so that anomalies have the larger norm
        if sign != "auto":
            raise ConfigError(f"norm_sign={sign!r}: use 'auto', 1 or -1")
        with seeded(int(self.config["seed"]) + 7):
            xp, mp = pad_slots(x, mask, int(self.config["extra_slots"]))
            xa, ma = anomaly_augment(xp, mp)
            norm_anom = self.represent(xa, ma).norm(dim=1).mean()
        norm_orig = self.represent(x, mask).norm(dim=1).mean()
        return 1.0 if float(norm_anom) >= float(norm_orig) else -1.0

    @torch.no_grad()
    def represent(self, x: Tensor, mask: Tensor, batch_size: int = 2048) -> Tensor:
        """The representation ``z`` (J, out) of each jet (on the CPU)."""
        if self.model is None:
            raise RuntimeError("CLRModel used before fit")
        dev = pick_device(self.config["device"])
        model = self.model.to(dev).eval()
        outs = []
        for i in range(0, len(x), batch_size):
            xb, mb = x[i : i + batch_size].to(dev), mask[i : i + batch_size].to(dev)
            outs.append(model(encoder_inputs(xb, mb), mb).cpu())
        return torch.cat(outs)

    def jet_scores(self, x: Tensor, mask: Tensor) -> np.ndarray:
        """Signed L2 norm of each jet's representation (higher = more anomalous)."""
        return (self.sign * self.represent(x, mask).norm(dim=1)).numpy().astype(np.float64)


def raw_constituents(data: ConstituentData, n_constituents: int) -> np.ndarray:
    """(events, 2 * n * 3) the hardest constituents' ``(deta, dphi, log pt_rel)`` of both jets, flattened (zeros
    for padding): the input of the raw-constituent linear test."""
    x, m = jets_from_clouds(data, n_constituents)
    feats = encoder_inputs(x, m)[..., :3]
    return feats.reshape(len(data), -1).numpy().astype(np.float64)


def linear_probe(x: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """AUC of a logistic regression on standardised ``x``, by ``folds``-fold cross-validation (out-of-fold scores)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    prob = cross_val_predict(clf, np.asarray(x, dtype=np.float64), np.asarray(y), cv=cv, method="predict_proba")
    return float(roc_auc_score(y, prob[:, 1]))


CLR_DEFAULTS: dict[str, Any] = {
    "train_on": "all",  # all data events, or "sidebands" of the search regions
    "combine": "sum",
    "score": "norm",  # or "ae": a dense autoencoder on the event representation
    "max_train_jets": 6000,
    "linear_test": True,
    **{k: v for k, v in CLRModel.DEFAULTS.items() if k not in ("seed", "progress")},
    "ae_epochs": 60, "ae_latent": 4, "ae_hidden": 32,
}  # fmt: skip


def _event_rep(model: CLRModel, data: ConstituentData, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, m = jets_from_clouds(data, n)
    z = model.represent(x, m)
    jet = (model.sign * z.norm(dim=1)).numpy().astype(np.float64).reshape(len(data), 2)
    return z.numpy().astype(np.float64).reshape(len(data), -1), jet


def score_events(
    data: ConstituentData,
    test: ConstituentData,
    *,
    regions: Any = None,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = False,
    method: str = "clr",
    held_out: ConstituentData | None = None,
) -> ConstituentResult:
    """Train the CLR encoder on the jets of the data (``train_on``: all events or the sidebands), score events by
    their jets' signed representation norms (or a dense autoencoder on the representation), and, on a
    truth-labelled test set, run the linear-classifier test on the representation and on the raw constituents."""
    conf = CONSTITUENT_METHODS_BY_NAME[method].config(config)
    if conf["train_on"] not in ("all", "sidebands"):
        raise ConfigError(f"{method}: train_on={conf['train_on']!r}: use all or sidebands")
    if conf["score"] not in ("norm", "ae"):
        raise ConfigError(f"{method}: score={conf['score']!r}: use norm or ae")
    train = data.subset(_train_mask(data, regions, conf["train_on"]))
    n = int(conf["n_constituents"])
    x, m = jets_from_clouds(train, n)
    if conf["max_train_jets"] is not None and len(x) > conf["max_train_jets"]:
        pick = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC2])).choice(
            len(x), int(conf["max_train_jets"]), replace=False
        )
        x, m = x[np.sort(pick)], m[np.sort(pick)]
    model_conf = {k: v for k, v in conf.items() if k in CLRModel.DEFAULTS}
    model = CLRModel(**model_conf, seed=seed, progress=progress).fit(x, m)
    z_train, jet_train = _event_rep(model, train, n)
    z_test, jet_test = _event_rep(model, test, n)
    z_data, jet_data = _event_rep(model, data, n)
    norm_test = combine_jet_scores(_jet_ranks(jet_train, jet_test), conf["combine"])
    norm_data = combine_jet_scores(_jet_ranks(jet_train, jet_data), conf["combine"])
    z_held, jet_held = _event_rep(model, held_out, n) if held_out is not None else (None, None)
    held = None if held_out is None else combine_jet_scores(_jet_ranks(jet_train, jet_held), conf["combine"])
    info: dict[str, Any] = {
        "n_train_jets": int(len(x)),
        "norm_sign": model.sign,
        "train_seconds": model.history.get("seconds"),
        "final_loss": model.history["train"][-1] if model.history.get("train") else None,
    }
    arrays = {"test_norm_scores": norm_test, "test_representation": z_test.astype(np.float32)}
    test_scores, data_scores = norm_test, norm_data
    if conf["score"] == "ae":
        ae = DenseAutoencoder(
            epochs=conf["ae_epochs"], latent=conf["ae_latent"], hidden=conf["ae_hidden"], seed=seed,
            device=conf["device"],
        ).fit(z_train)  # fmt: skip
        test_scores, data_scores = ae.score(z_test), ae.score(z_data)
        held = None if held_out is None else ae.score(z_held)
        arrays["test_ae_scores"] = test_scores
    y = test.label
    if conf["linear_test"] and np.isin(y, (0, 1)).all() and min((y == 0).sum(), (y == 1).sum()) >= 10:
        info["linear_test_auc"] = linear_probe(z_test, y, seed)
        info["raw_linear_test_auc"] = linear_probe(raw_constituents(test, n), y, seed)
    return ConstituentResult(test_scores=test_scores, data_scores=data_scores, info=info, arrays=arrays,
                             held_out_scores=held)  # fmt: skip


def _runner(name: str):
    def run(data: ConstituentData, test: ConstituentData, **kwargs: Any) -> ConstituentResult:
        return score_events(data, test, method=name, **kwargs)

    run.__doc__ = score_events.__doc__
    return run


CLR_METHOD = register_method(
    ConstituentMethod(
        name="clr",
        run=_runner("clr"),
        needs=("clouds", "features"),
        defaults=CLR_DEFAULTS,
        presets={"paper": {**CLRModel.PRESETS["anomalyclr"], "max_train_jets": 100_000}},
        description="AnomalyCLR: contrastive transformer with anomaly augmentations as negatives; score = |z|",
    )
)
DARKCLR_METHOD = register_method(
    ConstituentMethod(
        name="darkclr",
        run=_runner("darkclr"),
        needs=("clouds", "features"),
        defaults={**CLR_DEFAULTS, "anomaly_negatives": False},
        presets={"paper": {**CLRModel.PRESETS["darkclr"], "max_train_jets": 100_000}},
        description="DarkCLR: contrastive transformer with physical augmentations only; score = |z|",
    )
)
CONSTITUENT_METHODS_BY_NAME = {"clr": CLR_METHOD, "darkclr": DARKCLR_METHOD}
