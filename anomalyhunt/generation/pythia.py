"""Pythia 8 event generation at 13 TeV in the LHC Olympics R&D style: QCD dijets and W' -> X(qq) Y(qq).

Events keep the visible final-state particles with |eta| < eta_max and must pass the R&D trigger (leading anti-kT
jet above ``trigger_pt``); failing events are dropped and generation goes on until enough are accepted.

Reproducibility: a request is cut into blocks of ``block_size`` accepted events; block ``i`` is made by a fresh
Pythia seeded from (process, seed, i) and blocks are concatenated in order, so the output depends on the seed and
never on how many worker processes made it.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.metadata
import multiprocessing
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError

try:
    import pythia8mc as pythia8
except ImportError:  # an optional dependency: only event generation needs it
    raise ConfigError("event generation needs Pythia 8 (the pythia8mc package, not installed): "
                      "pip install 'anomalyhunt[generate]'") from None  # fmt: skip
from ..io.lhco import N_PARTICLES, write_lhco_particles
from ..runconfig import write_run_config
from .cache import atomic_path, cache_dir, param_hash, write_json_atomic
from .config import DEFAULT_BLOCK_SIZE, MAX_PYTHIA_SEED, GenerationConfig
from .nanoaod import write_pfnano
from .record import ParticleRecord
from .trigger import leading_jet_pt

# Bump when a change of this code changes the events made for the same parameters (invalidates the cache).
FORMAT_VERSION = 1
# A trigger that nothing passes would loop forever; give up after this many candidates without one accepted event.
MAX_TRIES_WITHOUT_PASS = 5000
# Consecutive failed Pythia events (next() returning False) tolerated before a block is abandoned.
MAX_CONSECUTIVE_FAILURES = 100
# Candidates per trigger batch: enough to amortise one fastjet call, few enough not to overshoot a small block much.
MIN_BATCH, MAX_BATCH = 8, 200
NEUTRINOS = (12, 14, 16)
# Command-line flag of each physics parameter (see anomalyhunt.commands.generate).
CLI_FLAGS = {
    "m_wprime": "mwprime",
    "m_x": "mx",
    "m_y": "my",
    "pthat_min": "pthat-min",
    "m_zprime": "mzprime",
    "r_inv": "rinv",
    "m_dark_quark": "mdark-quark",
    "m_dark_pion": "mdark-pion",
    "m_dark_rho": "mdark-rho",
    "trigger_pt": "trigger-pt",
    "jet_radius": "jet-radius",
    "eta_max": "eta-max",
    "tune": "tune",
}


@dataclass(frozen=True)
class BlockResult:
    """One block: its accepted events and how many candidates Pythia had to make for them."""

    index: int
    record: ParticleRecord
    tried: int


def block_seed(process: str, seed: int, block: int) -> int:
    """Pythia seed (1..900,000,000) of block ``block``: a hash, so nearby seeds and blocks give unrelated streams."""
    digest = hashlib.sha256(f"anomalyhunt.generate:{process}:{seed}:{block}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % MAX_PYTHIA_SEED + 1


def pythia_version() -> str:
    """Installed ``pythia8mc`` version (part of every cache key)."""
    try:
        return importlib.metadata.version("pythia8mc")
    except importlib.metadata.PackageNotFoundError:  # e.g. a local build without metadata
        return "unknown"


def make_pythia(config: GenerationConfig, pythia_seed: int) -> pythia8.Pythia:
    """A fresh, initialised, quiet Pythia for ``config`` with the given random seed."""
    if not 1 <= pythia_seed <= MAX_PYTHIA_SEED:
        raise ConfigError(f"generate: Pythia seed must be in 1..{MAX_PYTHIA_SEED}, got {pythia_seed}")
    pythia = pythia8.Pythia("", False)  # no banner
    for line in [*config.pythia_settings(), "Random:setSeed = on", f"Random:seed = {pythia_seed}"]:
        if not pythia.readString(line):
            raise ConfigError(f"generate: Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise ConfigError(f"generate: Pythia failed to initialise with {config.pythia_settings()}")
    return pythia


def visible_final_state(event: Any) -> np.ndarray:
    """(k, 7) array ``px py pz E m pdgId charge`` of the visible final-state particles of a Pythia event record.

    ``isVisible`` drops neutrinos and other invisibles (neutralinos, dark matter); the explicit neutrino check
    keeps that true whatever a particle table says.
    """
    rows = [
        (p.px(), p.py(), p.pz(), p.e(), p.m(), p.id(), p.charge())
        for p in event
        if p.isFinal() and p.isVisible() and p.idAbs() not in NEUTRINOS
    ]
    return np.array(rows, dtype=np.float64).reshape(-1, 7)


def _in_acceptance(rows: np.ndarray, eta_max: float) -> dict[str, np.ndarray]:
    px, py, pz = rows[:, 0], rows[:, 1], rows[:, 2]
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(pz / pt)  # pT = 0 gives +-inf (or nan): outside any acceptance
    keep = np.abs(eta) < eta_max
    return {
        "p4": rows[keep, :4],
        "pt": pt[keep],
        "eta": eta[keep],
        "phi": np.arctan2(py, px)[keep],
        "mass": rows[keep, 4],
        "pdg_id": rows[keep, 5],
        "charge": np.rint(rows[keep, 6]),
    }


def generate_block(config: GenerationConfig, seed: int, index: int, n_accepted: int) -> BlockResult:
    """Generate block ``index``: the first ``n_accepted`` triggered events of a Pythia seeded by ``block_seed``."""
    pythia = make_pythia(config, block_seed(config.process, seed, index))
    accepted: list[dict[str, np.ndarray]] = []
    tried = failures = 0
    while len(accepted) < n_accepted:
        # Over-generate a little: the trigger passes roughly half the candidates. Events are taken in generation
        # order, so the batch size changes the speed, never which events are accepted.
        batch_size = min(max(2 * (n_accepted - len(accepted)), MIN_BATCH), MAX_BATCH)
        batch = []
        while len(batch) < batch_size:
            if not pythia.next():
                failures += 1
                if failures > MAX_CONSECUTIVE_FAILURES:
                    raise RuntimeError(f"generate: Pythia failed {failures} events in a row (block {index})")
                continue
            failures = 0
            batch.append(_in_acceptance(visible_final_state(pythia.event), config.eta_max))
        lead = leading_jet_pt([e["p4"] for e in batch], config.jet_radius)
        for event, pt in zip(batch, lead):
            if len(accepted) == n_accepted:
                break  # the rest of the batch is never used: not counted in the trigger efficiency either
            tried += 1
            if pt > config.trigger_pt:
                accepted.append(event)
        if not accepted and tried >= MAX_TRIES_WITHOUT_PASS:
            raise ConfigError(
                f"generate: no event of {tried} passed the trigger (leading jet pT > {config.trigger_pt:g} GeV)"
                + (f" with pthat_min = {config.pthat_min:g} GeV" if config.process == "qcd" else "")
                + "; lower trigger_pt"
                + (" or raise pthat_min" if config.process == "qcd" else "")
            )
    return BlockResult(index, ParticleRecord.from_events(accepted, N_PARTICLES), tried)


def plan_blocks(n_events: int, block_size: int) -> list[int]:
    """Accepted events per block: full blocks, then the remainder."""
    full, rest = divmod(n_events, block_size)
    return [block_size] * full + ([rest] if rest else [])


def _run_blocks(
    config: GenerationConfig, seed: int, sizes: list[int], workers: int, progress: bool
) -> list[BlockResult]:
    bar = tqdm(total=sum(sizes), unit="ev", desc=f"generate {config.process}", disable=not progress)
    results: list[BlockResult | None] = [None] * len(sizes)
    with bar:
        if workers == 1:
            for i, size in enumerate(sizes):
                results[i] = generate_block(config, seed, i, size)
                bar.update(size)
        else:
            # spawn, not fork: a parent that already runs threads (torch, dask, tqdm) can deadlock a forked child.
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {pool.submit(generate_block, config, seed, i, size): i for i, size in enumerate(sizes)}
                try:
                    for future in cf.as_completed(futures):
                        result = future.result()
                        results[result.index] = result
                        bar.update(sizes[result.index])
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    return [r for r in results if r is not None]


def _check_request(n_events: int, seed: int, workers: int | None, block_size: int) -> int:
    for name, value in (("n_events", n_events), ("seed", seed), ("block_size", block_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"generate: {name} must be an integer, got {value!r}")
    if n_events < 1:
        raise ConfigError(f"generate: n_events must be >= 1, got {n_events}")
    if seed < 0:
        raise ConfigError(f"generate: seed must be >= 0, got {seed}")
    if block_size < 1:
        raise ConfigError(f"generate: block_size must be >= 1, got {block_size}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ConfigError(f"generate: workers must be >= 1, got {workers}")
    return workers


def generate(
    process: Literal["qcd", "signal", "svj"],
    n_events: int,
    seed: int,
    out: str | Path,
    *,
    workers: int | None = None,
    nanoaod: bool = False,
    progress: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    **params: float,
) -> Path:
    """Generate ``n_events`` triggered events and write them to ``out`` in the LHCO R&D particle layout.

    ``params``: the physics parameters of :class:`~anomalyhunt.generation.config.GenerationConfig` (``m_wprime
    m_x m_y pthat_min m_zprime r_inv m_dark_quark m_dark_pion m_dark_rho trigger_pt jet_radius eta_max``;
    defaults there).

    With ``nanoaod`` the same particles also go to ``out`` with suffix ``.root`` (tree ``Events``, ``PFCands_*``).
    The run configuration is written beside it as ``<out stem>.config.json``. Output depends on ``seed`` and the
    physics parameters (and ``block_size``), not on ``workers`` (default: all cores). Returns ``out``.
    Workers are spawned processes, so a script calling this with ``workers > 1`` needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    config = _config(process, params, "generate")
    workers = _check_request(n_events, seed, workers, block_size)
    out = Path(out)
    if out.suffix == ".root":
        raise ConfigError(f"generate: out {out} must be the HDF5 file; the NanoAOD file is written beside it")
    sizes = plan_blocks(n_events, block_size)
    results = _run_blocks(config, seed, sizes, min(workers, len(sizes)), progress)
    record = ParticleRecord.concatenate([r.record for r in results])
    label = np.full(record.n_events, config.label, dtype=np.float32)

    if nanoaod:
        with atomic_path(out.with_suffix(".root")) as tmp:
            write_pfnano(tmp, record, label, run=seed)
    with atomic_path(out) as tmp:
        write_lhco_particles(tmp, *record.padded(), label)
    tried = sum(r.tried for r in results)
    write_run_config(
        out.parent,
        {
            "command": "generate",
            "process": process,
            "n_events": n_events,
            "seed": seed,
            **config.physics(),
            "block_size": block_size,
            "workers": workers,
            "nanoaod": nanoaod,
            "pythia8mc": pythia_version(),
            "format_version": FORMAT_VERSION,
            "pythia_settings": config.pythia_settings(),
            "block_seeds": [block_seed(process, seed, i) for i in range(len(sizes))],
            "candidates_tried": tried,
            "trigger_efficiency": n_events / tried,
            "output": str(out),
        },
        name=f"{out.stem}.config.json",
    )
    return out


def _config(process: str, params: dict[str, float], caller: str) -> GenerationConfig:
    unknown = sorted(set(params) - set(CLI_FLAGS))
    if unknown:
        raise ConfigError(f"{caller}: unknown parameters {unknown}; allowed: {sorted(CLI_FLAGS)}")
    return GenerationConfig(process, **params)


def cli_command(
    process: str,
    n_events: int,
    seed: int,
    out: str | Path,
    config: GenerationConfig,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    nanoaod: bool = False,
) -> str:
    """The ``anomalyhunt generate`` command line that makes exactly this sample."""
    args = ["anomalyhunt", "generate", "--process", process, "--events", str(n_events), "--seed", str(seed)]
    args += ["--out", str(out)]
    for key, value in config.physics().items():
        args += [f"--{CLI_FLAGS[key]}", f"{value:.10g}"]
    args += ["--block-size", str(block_size)]
    if nanoaod:
        args.append("--nanoaod")
    return shlex.join(args)


def cached_sample(
    process: Literal["qcd", "signal", "svj"],
    n_events: int,
    seed: int,
    *,
    nanoaod: bool = False,
    workers: int | None = None,
    progress: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    **params: float,
) -> Path:
    """Path of a generated sample with these parameters, generating it only if the cache does not hold it yet.

    ``params`` are the physics keywords of :func:`generate`. Files live in :func:`cache_dir`, named by a hash of the parameters, with a JSON sidecar holding
    the parameters and the command that makes the sample; with ``nanoaod`` the ``.root`` file sits beside it.
    """
    config = _config(process, params, "cached_sample")
    _check_request(n_events, seed, workers, block_size)
    key = {
        "process": process,
        "n_events": n_events,
        "seed": seed,
        **config.physics(),
        "block_size": block_size,
        "format_version": FORMAT_VERSION,
        "pythia8mc": pythia_version(),
    }
    path = cache_dir() / f"{process}_{n_events}ev_seed{seed}_{param_hash(key)[:16]}.h5"
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists() and (not nanoaod or path.with_suffix(".root").exists()):
        return path
    generate(
        process, n_events, seed, path, **config.physics(), workers=workers, nanoaod=nanoaod, progress=progress,
        block_size=block_size,
    )
    command = cli_command(process, n_events, seed, path, config, block_size=block_size, nanoaod=nanoaod)
    write_json_atomic(sidecar, {"parameters": key, "command": command})
    return path
