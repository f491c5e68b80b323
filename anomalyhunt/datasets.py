"""``datasets.yaml``: a coffea-style fileset with per-dataset metadata, validated with messages naming dataset and key.

Each entry under ``datasets:``::

    name:
      format: nanoaod | pfnanoaod | lhco-particles | lhco-features | generated
      files: [paths or globs]          # relative to the YAML file; ${VAR} and ${VAR:-default} are expanded
      treename: Events                 # ROOT formats only
      label: 0 | 1 | null              # background / signal / data
      xsec: 1.0                        # optional, pb; with luminosity, events are weighted (simulation only)
      luminosity: 140000.0             # optional, pb^-1: weight = gen_weight * xsec * luminosity / sum_w
      sum_w: 1.5e10                    # optional: the sum of generator weights of all generated events (needed for
                                       # PHYSLITE: ATLAS's CutBookkeepers / AMI; else read from NanoAOD's Runs tree)
      jet_radius: 1.0                  # optional, overrides the format's convention
      axes: onepass_kt | kt | wta_kt   # optional, N-subjettiness axes
      puppi: false                     # optional: cluster PFNano candidates without PUPPI weights
      generate: {process: signal, events: 200, seed: 1}   # format generated: made (and cached) on first use
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .processors.formats import FORMATS, TREES

_ROOT_FORMATS = ("nanoaod", "pfnanoaod", "physlite")
_KEYS = {"format", "files", "treename", "label", "xsec", "luminosity", "sum_w", "jet_radius", "axes", "puppi", "generate",
         "description"}
_AXES = ("onepass_kt", "kt", "wta_kt")
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


@dataclass
class Dataset:
    name: str
    format: str
    files: list[str]
    label: int | None = None
    treename: str = "Events"
    xsec: float | None = None
    luminosity: float | None = None
    sum_w: float | None = None
    jet_radius: float | None = None
    axes: str | None = None
    puppi: bool | None = None
    generate: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # One without the other would silently leave the events unweighted.
        if (self.xsec is None) != (self.luminosity is None):
            given, absent = ("xsec", "luminosity") if self.luminosity is None else ("luminosity", "xsec")
            raise ConfigError(f"dataset {self.name!r}: key {given!r} given without {absent!r}: event weights "
                              "(gen_weight * xsec * luminosity / sum_w) need both, or give neither")
        if self.sum_w is not None and not self.weighted:
            raise ConfigError(f"dataset {self.name!r}: key 'sum_w' given without 'xsec' and 'luminosity': it only "
                              "normalises weighted events (gen_weight * xsec * luminosity / sum_w)")

    @property
    def weighted(self) -> bool:
        """Whether the events are to be normalised to ``xsec * luminosity``."""
        return self.xsec is not None and self.luminosity is not None

    @property
    def is_root(self) -> bool:
        return self.format in _ROOT_FORMATS

    def metadata(self) -> dict[str, Any]:
        meta = {"format": self.format, "label": self.label, "xsec": self.xsec, "luminosity": self.luminosity}
        if self.jet_radius is not None:
            meta["jet_radius"] = self.jet_radius
        if self.axes is not None:
            meta["axes"] = self.axes
        if self.puppi is not None:
            meta["puppi"] = self.puppi
        return meta


def _expand(path: str, base: Path) -> str:
    def repl(m: re.Match) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            if m.group(2) is None:
                raise KeyError(m.group(1))
            value = m.group(2)
        return value

    p = Path(os.path.expanduser(_VAR.sub(repl, path)))
    return str(p if p.is_absolute() else (base / p))


def _entry(name: str, raw: Any, base: Path) -> Dataset:
    where = f"datasets.yaml: dataset {name!r}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: {sorted(_KEYS)})")
    fmt = raw.get("format")
    if fmt not in FORMATS:
        raise ConfigError(f"{where}: key 'format' must be one of {list(FORMATS)}, got {fmt!r}")
    label = raw.get("label")
    if label not in (0, 1, None):
        raise ConfigError(f"{where}: key 'label' must be 0 (background), 1 (signal) or null (data), got {label!r}")
    gen = raw.get("generate")
    files_raw = raw.get("files")
    if fmt == "generated" and gen is None and not files_raw:
        raise ConfigError(f"{where}: format 'generated' needs key 'generate' (process, events, seed) or 'files'")
    if gen is not None and not isinstance(gen, dict):
        raise ConfigError(f"{where}: key 'generate' must be a mapping")
    if gen is None and not files_raw:
        raise ConfigError(f"{where}: key 'files' is missing or empty")
    if isinstance(files_raw, str):
        files_raw = [files_raw]
    if files_raw is not None and not (isinstance(files_raw, list) and all(isinstance(f, str) for f in files_raw)):
        raise ConfigError(f"{where}: key 'files' must be a path or a list of paths")
    numbers = {}
    for key in ("xsec", "luminosity", "sum_w", "jet_radius"):
        value = raw.get(key)
        if isinstance(value, str):  # PyYAML reads 1.5e10 (no sign in the exponent) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
            raise ConfigError(f"{where}: key {key!r} must be a positive number, got {raw.get(key)!r}")
        numbers[key] = value
    if raw.get("axes") is not None and raw["axes"] not in _AXES:
        raise ConfigError(f"{where}: key 'axes' must be one of {list(_AXES)}, got {raw['axes']!r}")
    if raw.get("puppi") is not None and not isinstance(raw["puppi"], bool):
        raise ConfigError(f"{where}: key 'puppi' must be true or false, got {raw['puppi']!r}")
    files, missing = [], []
    for f in files_raw or []:
        try:
            pattern = _expand(f, base)
        except KeyError as err:
            raise ConfigError(f"{where}: key 'files' uses environment variable {err.args[0]} which is not set") from None
        hits = sorted(glob.glob(pattern))
        (files.extend(hits) if hits else missing.append(pattern))
    try:
        return Dataset(
            name=name, format=fmt, files=files, label=label, treename=raw.get("treename", TREES.get(fmt, "Events")),
            xsec=numbers["xsec"], luminosity=numbers["luminosity"], sum_w=numbers["sum_w"],
            jet_radius=numbers["jet_radius"],
            axes=raw.get("axes"), puppi=raw.get("puppi"), generate=gen, missing=missing,
        )  # fmt: skip
    except ConfigError as err:
        raise ConfigError(f"datasets.yaml: {err}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"line {line}: key {key!r} defined twice (the first would be lost)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_datasets(path: str | os.PathLike, names: list[str] | None = None) -> dict[str, Dataset]:
    """Parse and validate ``datasets.yaml``; keep only ``names`` if given (unknown names are an error)."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file does not exist") from None
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise ConfigError(f"{path}: expected a top-level mapping 'datasets:' of dataset entries")
    entries = {n: _entry(n, v, path.parent) for n, v in raw["datasets"].items()}
    if names:
        unknown = [n for n in names if n not in entries]
        if unknown:
            raise ConfigError(f"{path}: no dataset(s) {unknown}; defined: {sorted(entries)}")
        entries = {n: entries[n] for n in names}
    return entries
