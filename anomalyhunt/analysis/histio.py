"""Save and load ``hist.Hist`` objects as ROOT histograms (uproot, TH1/TH2) or as a pickle.

ROOT keeps counts, sum of squared weights, edges and flow bins, but names every axis ``xaxis``/``yaxis``; the axis
names are therefore stored beside the histograms in a small JSON string (key ``anomalyhunt_axes``) and restored
on load, so a ROOT round trip gives back the same axis names and labels as the pickle one.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Mapping

import hist
import numpy as np

from ..errors import InputError

_META_KEY = "anomalyhunt_axes"
_ROOT_SUFFIXES = (".root",)
_PICKLE_SUFFIXES = (".pkl", ".pickle")


def _check_names(hists: Mapping[str, hist.Hist], path: Path) -> None:
    if not hists:
        raise InputError(path, "no histograms to save")
    for name, h in hists.items():
        if not isinstance(h, hist.Hist):
            raise InputError(path, f"{name!r} is a {type(h).__name__}, not a hist.Hist")
        if not name or "/" in name or ";" in name or name == _META_KEY:
            raise InputError(path, f"histogram name {name!r} cannot be a ROOT key (no '/', ';', or {_META_KEY!r})")


def save_hists(hists: Mapping[str, hist.Hist], path: str | Path) -> Path:
    """Write ``hists`` (name -> Hist) to ``path``: ``.root`` (uproot TH1/TH2/TH3) or ``.pkl``/``.pickle``."""
    path = Path(path)
    _check_names(hists, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in _PICKLE_SUFFIXES:
        with open(path, "wb") as f:
            pickle.dump(dict(hists), f, protocol=pickle.HIGHEST_PROTOCOL)
        return path
    if path.suffix not in _ROOT_SUFFIXES:
        raise InputError(path, f"unknown histogram file type {path.suffix!r} (use .root, .pkl or .pickle)")
    import uproot

    meta = {name: [{"name": ax.name, "label": ax.label} for ax in h.axes] for name, h in hists.items()}
    with uproot.recreate(path) as f:
        for name, h in hists.items():
            f[name] = h
        f[_META_KEY] = json.dumps(meta)
    return path


def _rename_axes(h: hist.Hist, axes_meta: list[dict[str, str]]) -> hist.Hist:
    """Rebuild ``h`` with the stored axis names/labels (hist axis names cannot be changed in place)."""
    axes = []
    for ax, meta in zip(h.axes, axes_meta):
        traits = ax.traits
        if isinstance(ax, hist.axis.Regular):
            new = hist.axis.Regular(len(ax), ax.edges[0], ax.edges[-1], name=meta["name"], label=meta["label"],
                                    underflow=traits.underflow, overflow=traits.overflow)
        else:
            new = hist.axis.Variable(ax.edges, name=meta["name"], label=meta["label"],
                                     underflow=traits.underflow, overflow=traits.overflow)
        axes.append(new)
    out = hist.Hist(*axes, storage=h.storage_type())
    out.view(flow=True)[...] = h.view(flow=True)
    return out


def load_hists(path: str | Path) -> dict[str, hist.Hist]:
    """Read every histogram of a file written by :func:`save_hists` (or any ROOT file's TH1/TH2/TH3)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.suffix in _PICKLE_SUFFIXES:
        with open(path, "rb") as f:
            obj = pickle.load(f)
        if not isinstance(obj, dict) or not all(isinstance(h, hist.Hist) for h in obj.values()):
            raise InputError(path, "pickle does not hold a dict of hist.Hist")
        return obj
    if path.suffix not in _ROOT_SUFFIXES:
        raise InputError(path, f"unknown histogram file type {path.suffix!r} (use .root, .pkl or .pickle)")
    import uproot

    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises several types for a corrupt file
        raise InputError(path, f"not a readable ROOT file: {err}") from None
    with f:
        classes = f.classnames(recursive=False)
        meta = json.loads(str(f[_META_KEY])) if f"{_META_KEY};1" in classes else {}
        out = {}
        for key, cls in classes.items():
            name = key.rsplit(";", 1)[0]
            if not cls.startswith(("TH1", "TH2", "TH3")) or name in out:
                continue
            h = f[key].to_hist()
            if name in meta and len(meta[name]) == len(h.axes):
                h = _rename_axes(h, meta[name])
            out[name] = h
    if not out:
        raise InputError(path, "no TH1/TH2/TH3 histograms in the file")
    return out


def hists_equal(a: hist.Hist, b: hist.Hist) -> bool:
    """Same edges, counts and variances (flow bins included)."""
    if len(a.axes) != len(b.axes) or any(not np.array_equal(x.edges, y.edges) for x, y in zip(a.axes, b.axes)):
        return False
    if not np.allclose(a.values(flow=True), b.values(flow=True)):
        return False
    va, vb = a.variances(flow=True), b.variances(flow=True)
    return (va is None) == (vb is None) and (va is None or np.allclose(va, vb))
