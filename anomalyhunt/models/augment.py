"""Jet augmentations for contrastive learning on constituents (AnomalyCLR / DarkCLR).

A jet is a padded tensor ``x`` (B, N, 3) of ``(deta, dphi, pt_rel)`` per constituent (angles relative to the jet axis,
pT as a fraction of the jet's) with a boolean ``mask`` (B, N), True for real constituents; padded slots are zero.

*Physical* augmentations leave what an infrared- and collinear-safe observer sees unchanged (up to resolution) and
make positive pairs: rotations about the jet axis, small translations, permutations, smearing of soft constituents'
directions, collinear splittings. *Anomaly* augmentations change the jet in ways QCD does not and make the anomaly
views ``x*`` of the AnomCLR losses: more constituents at fixed total pT spread over the jet (multiplicity shifts) and
reshuffled pT sharing (pT shifts), AnomalyCLR's; dropped constituents (with a dropping probability), DarkCLR's.

All functions take a ``torch.Generator`` (``None``: torch's global one, which the training loop seeds) and return
new tensors. Splittings need free (padded) slots: pad jets with :func:`pad_slots` first.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "pad_slots", "rotate", "translate", "permute", "soft_smear", "collinear_split", "physical_augment",
    "multiplicity_shift", "pt_shift", "drop_constituents", "anomaly_augment", "POSITIVE", "NEGATIVE",
]  # fmt: skip


def _rand(shape: tuple[int, ...], like: Tensor, gen: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=gen, device=like.device, dtype=like.dtype)


def _randn(shape: tuple[int, ...], like: Tensor, gen: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype)


def pad_slots(x: Tensor, mask: Tensor, n_extra: int) -> tuple[Tensor, Tensor]:
    """Append ``n_extra`` empty slots per jet (room for splittings)."""
    if n_extra <= 0:
        return x, mask
    b = x.shape[0]
    return (
        torch.cat([x, x.new_zeros(b, n_extra, x.shape[2])], dim=1),
        torch.cat([mask, mask.new_zeros(b, n_extra)], dim=1),
    )


def rotate(x: Tensor, mask: Tensor, gen: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Rotate each jet by a uniform random angle about its axis in the (eta, phi) plane."""
    angle = 2 * math.pi * _rand((x.shape[0], 1), x, gen)
    c, s = torch.cos(angle), torch.sin(angle)
    out = x.clone()
    out[..., 0] = c * x[..., 0] - s * x[..., 1]
    out[..., 1] = s * x[..., 0] + c * x[..., 1]
    return out * mask[..., None], mask


def translate(
    x: Tensor, mask: Tensor, width: float = 0.1, gen: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Shift all constituents of a jet by one Gaussian offset (``width`` in eta and phi)."""
    shift = width * _randn((x.shape[0], 1, 2), x, gen)
    out = x.clone()
    out[..., :2] = x[..., :2] + shift
    return out * mask[..., None], mask


def permute(x: Tensor, mask: Tensor, gen: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Shuffle the constituent order of each jet (padded slots move too)."""
    order = torch.argsort(_rand(mask.shape, x, gen), dim=1)
    return x.gather(1, order[..., None].expand_as(x)), mask.gather(1, order)


def soft_smear(
    x: Tensor, mask: Tensor, width: float = 0.05, pt_ref: float = 0.01, gen: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Smear directions by a Gaussian of width ``width * pt_ref / max(pt_rel, pt_ref)``: constituents softer than
    ``pt_ref`` of the jet move by ``width``, harder ones proportionally less (they barely affect IRC-safe shapes)."""
    sigma = width * pt_ref / torch.clamp(x[..., 2:3], min=pt_ref)
    out = x.clone()
    out[..., :2] = x[..., :2] + sigma * _randn(x[..., :2].shape, x, gen)
    return out * mask[..., None], mask


def _split(
    x: Tensor, mask: Tensor, prob: float, collinear: bool, spread: float, gen: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Split each constituent with probability ``prob`` into two sharing its pT (z in [0.1, 0.5] to the new one),
    as far as free slots allow; the new one sits at the same place (``collinear``) or at a random place in the jet
    (Gaussian of width ``spread`` around the axis)."""
    b, n, _ = x.shape
    cand = mask & (_rand((b, n), x, gen) < prob)
    free = ~mask
    c_rank = torch.cumsum(cand.long(), dim=1) - 1  # 0-based rank among the split candidates of the jet
    f_rank = torch.cumsum(free.long(), dim=1) - 1  # 0-based rank among the free slots
    cand = cand & (c_rank < free.sum(dim=1, keepdim=True))
    dump = torch.full_like(c_rank, n)  # an extra column n collects every write that must go nowhere
    positions = torch.arange(n, device=x.device).expand(b, n)
    slot_of = torch.full((b, n + 1), n, dtype=torch.long, device=x.device)  # slot_of[b, r]: r-th free slot
    slot_of.scatter_(1, torch.where(free, f_rank, dump), positions)
    target = torch.where(cand, slot_of.gather(1, c_rank.clamp(min=0)), dump)
    z = torch.where(cand, 0.1 + 0.4 * _rand((b, n), x, gen), torch.zeros((b, n), dtype=x.dtype, device=x.device))
    new = x.clone()
    new[..., 2] = x[..., 2] * z
    if not collinear:
        new[..., :2] = spread * _randn((b, n, 2), x, gen)
    out = torch.cat([x, x.new_zeros(b, 1, 3)], dim=1)
    out[:, :n, 2] = x[..., 2] * (1 - z)
    out.scatter_(1, target[..., None].expand(b, n, 3), new)
    mask_out = torch.cat([mask, mask.new_zeros(b, 1)], dim=1)
    mask_out.scatter_(1, target, cand)
    mask_out = mask_out[:, :n] | mask
    return out[:, :n] * mask_out[..., None], mask_out


def collinear_split(
    x: Tensor, mask: Tensor, prob: float = 0.1, gen: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Collinear splittings: each constituent splits with probability ``prob`` into two at the same place."""
    return _split(x, mask, prob, True, 0.0, gen)


def multiplicity_shift(
    x: Tensor, mask: Tensor, prob: float = 0.3, spread: float = 0.3, gen: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """More constituents at fixed total pT: splittings whose new constituent lands anywhere in the jet (an
    IRC-unsafe change, which QCD showers do not make)."""
    return _split(x, mask, prob, False, spread, gen)


def pt_shift(
    x: Tensor, mask: Tensor, width: float = 0.7, gen: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Reshuffle the pT sharing: each constituent's pT times ``exp(N(0, width))``, renormalised to the jet's total."""
    total = (x[..., 2] * mask).sum(dim=1, keepdim=True)
    pt = x[..., 2] * torch.exp(width * _randn(mask.shape, x, gen)) * mask
    out = x.clone()
    out[..., 2] = pt * total / pt.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return out * mask[..., None], mask


def drop_constituents(
    x: Tensor, mask: Tensor, prob: float = 0.3, gen: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Remove each constituent with probability ``prob`` (hard ones included; the hardest always stays)."""
    pt = torch.where(mask, x[..., 2], torch.full_like(x[..., 2], -1.0))
    hardest = pt == pt.max(dim=1, keepdim=True).values
    keep = mask & ((_rand(mask.shape, x, gen) >= prob) | hardest)
    return x * keep[..., None], keep


Augmentation = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

#: The positive (physical) augmentations in the order :func:`physical_augment` applies them.
POSITIVE = ("collinear_split", "soft_smear", "rotate", "translate", "permute")
#: The anomaly augmentations; :func:`anomaly_augment` applies one of them, chosen at random per jet.
NEGATIVE = ("multiplicity_shift", "pt_shift", "drop_constituents")


def physical_augment(
    x: Tensor, mask: Tensor, *, split_prob: float = 0.1, smear: float = 0.05, shift: float = 0.1,
    gen: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """A random physical view of each jet: collinear splittings, soft smearing, rotation, translation, permutation."""
    x, mask = collinear_split(x, mask, split_prob, gen)
    x, mask = soft_smear(x, mask, smear, gen=gen)
    x, mask = rotate(x, mask, gen)
    x, mask = translate(x, mask, shift, gen)
    return permute(x, mask, gen)


def anomaly_augment(
    x: Tensor, mask: Tensor, which: Sequence[str] = NEGATIVE, *, drop_prob: float = 0.3,
    gen: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """One anomaly augmentation per jet, chosen uniformly among ``which`` (names in :data:`NEGATIVE`;
    ``drop_prob``: :func:`drop_constituents`' dropping probability), then a random physical view, so that only the
    anomaly distinguishes it from a positive."""
    unknown = sorted(set(which) - set(NEGATIVE))
    if not which or unknown:
        raise ValueError(f"anomaly augmentations {list(which)!r}: choose among {list(NEGATIVE)}")
    ops: dict[str, Augmentation] = {
        "multiplicity_shift": lambda a, m: multiplicity_shift(a, m, gen=gen),
        "pt_shift": lambda a, m: pt_shift(a, m, gen=gen),
        "drop_constituents": lambda a, m: drop_constituents(a, m, drop_prob, gen=gen),
    }
    choice = torch.randint(0, len(which), (x.shape[0], 1), generator=gen, device=x.device)
    xa, ma = torch.zeros_like(x), torch.zeros_like(mask)
    for k, name in enumerate(which):
        xk, mk = ops[name](x, mask)
        pick = choice == k
        xa = torch.where(pick[..., None], xk, xa)
        ma = torch.where(pick, mk, ma)
    return physical_augment(xa, ma, gen=gen)
