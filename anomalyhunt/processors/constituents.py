"""Constituent point clouds and jet images, relative to each jet (boost-invariant inputs for constituent models)."""

from __future__ import annotations

import awkward as ak
import numpy as np

CLOUD_FEATURES = ("deta", "dphi", "log_pt", "log_e", "log_pt_rel", "log_e_rel", "dr")


def _sorted_padded(constituents: ak.Array, n: int) -> tuple[np.ndarray, ...]:
    """The ``n`` hardest constituents of each jet as padded (jets, n) px, py, pz, E arrays (zeros where absent)."""
    pt = np.hypot(constituents.px, constituents.py)
    order = ak.argsort(pt, axis=1, ascending=False)
    c = constituents[order][:, :n]
    return tuple(
        ak.to_numpy(ak.fill_none(ak.pad_none(c[f], n, clip=True), 0.0)).astype(np.float64) for f in ("px", "py", "pz", "E")
    )


def _rel_coords(px, py, pz, e, jet_eta, jet_phi):
    pt = np.hypot(px, py)
    mask = pt > 0
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=mask))
    deta = np.where(mask, eta - jet_eta[:, None], 0.0)
    dphi = np.where(mask, (np.arctan2(py, px) - jet_phi[:, None] + np.pi) % (2 * np.pi) - np.pi, 0.0)
    return pt, deta, dphi, mask


def point_clouds(
    constituents: ak.Array, jet_pt: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray, jet_e: np.ndarray, n: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """(jets, n, 7) features (:data:`CLOUD_FEATURES`) of the ``n`` hardest constituents and a (jets, n) mask."""
    px, py, pz, e = _sorted_padded(constituents, n)
    pt, deta, dphi, mask = _rel_coords(px, py, pz, e, jet_eta, jet_phi)
    safe = lambda a: np.log(np.where(mask, np.maximum(a, 1e-12), 1.0))  # noqa: E731 - padded slots stay 0
    feats = np.stack(
        [
            deta,
            dphi,
            safe(pt),
            safe(e),
            safe(pt / np.maximum(jet_pt, 1e-12)[:, None]),
            safe(e / np.maximum(jet_e, 1e-12)[:, None]),
            np.hypot(deta, dphi),
        ],
        axis=-1,
    )
    return np.where(mask[..., None], feats, 0.0), mask


def jet_images(
    constituents: ak.Array, jet_eta: np.ndarray, jet_phi: np.ndarray, n_pixels: int = 40, extent: float = 0.7
) -> np.ndarray:
    """(jets, n_pixels, n_pixels) pT images over +-``extent`` in (Delta eta, Delta phi), axis 1 the horizontal
    coordinate, axis 2 the vertical, unit sum. The convention of the jet-image literature the Tag N' Train paper
    follows (arXiv 1803.00107): centred on the pT centroid, rotated so that the principal axis of the pT-weighted
    second-moment tensor is vertical, then flipped so that the maximum pixel lies in the upper-right quadrant. (A
    flip on the sign of the first moment about the centroid would be a flip on round-off: that moment is zero.)"""
    counts = ak.to_numpy(ak.num(constituents))
    flat = {f: ak.to_numpy(ak.flatten(constituents[f])).astype(np.float64) for f in ("px", "py", "pz")}
    jet_idx = np.repeat(np.arange(len(counts)), counts)
    pt = np.hypot(flat["px"], flat["py"])
    eta = np.arcsinh(np.divide(flat["pz"], pt, out=np.zeros_like(pt), where=pt > 0))
    deta = eta - jet_eta[jet_idx]
    dphi = (np.arctan2(flat["py"], flat["px"]) - jet_phi[jet_idx] + np.pi) % (2 * np.pi) - np.pi
    n_jets = len(counts)

    def jet_sum(v: np.ndarray) -> np.ndarray:
        return np.bincount(jet_idx, weights=v, minlength=n_jets)

    wsum = np.maximum(jet_sum(pt), 1e-12)
    x = deta - (jet_sum(pt * deta) / wsum)[jet_idx]
    y = dphi - (jet_sum(pt * dphi) / wsum)[jet_idx]
    # Principal axis of the pT-weighted second-moment tensor, rotated onto the vertical.
    sxx, syy, sxy = jet_sum(pt * x * x), jet_sum(pt * y * y), jet_sum(pt * x * y)
    theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    angle = (np.pi / 2 - theta)[jet_idx]
    xr = x * np.cos(angle) - y * np.sin(angle)
    yr = x * np.sin(angle) + y * np.cos(angle)
    edges = np.linspace(-extent, extent, n_pixels + 1)
    ix = np.digitize(xr, edges) - 1
    iy = np.digitize(yr, edges) - 1
    inside = (ix >= 0) & (ix < n_pixels) & (iy >= 0) & (iy < n_pixels)
    flat_idx = (jet_idx * n_pixels + ix) * n_pixels + iy
    img = np.bincount(flat_idx[inside], weights=pt[inside], minlength=n_jets * n_pixels * n_pixels)
    img = img.reshape(n_jets, n_pixels, n_pixels)
    # The pixel grid is symmetric about the centroid, so mirroring a coordinate is reversing an image axis.
    top = img.reshape(n_jets, -1).argmax(axis=1)
    left, below = top // n_pixels < n_pixels // 2, top % n_pixels < n_pixels // 2
    img[left] = img[left, ::-1, :]
    img[below] = img[below, :, ::-1]
    total = img.sum(axis=(1, 2), keepdims=True)
    return np.divide(img, total, out=np.zeros_like(img), where=total > 0)
