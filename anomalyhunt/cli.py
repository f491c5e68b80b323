"""The ``anomalyhunt`` command line: sub-commands are discovered from :mod:`anomalyhunt.commands`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import signal
import sys
import threading

from .errors import ConfigError, InputError


def build_parser() -> argparse.ArgumentParser:
    from . import __version__, commands

    parser = argparse.ArgumentParser(prog="anomalyhunt", description="Resonant anomaly detection at the LHC.")
    parser.add_argument("--version", action="version", version=f"anomalyhunt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that both unwind the same way (pools and clusters closed by their ``with``)."""


def _quiet_dask() -> None:
    """After an interrupt, Dask's own logs (a nanny that could not finish starting, streams closing) are noise: the
    command says in one line what happened."""
    import logging

    for name in list(logging.root.manager.loggerDict):
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _on_signal(signum: int, frame: object) -> None:
    _quiet_dask()
    raise Interrupted() if signum == signal.SIGTERM else KeyboardInterrupt()


def _close_dask_clusters() -> None:
    """Close the local Dask clusters an interrupted command leaves behind, quietly: one interrupted while starting
    cannot close cleanly, and Dask's exit hook would print a traceback for it (its workers exit with this process)."""
    spec = sys.modules.get("distributed.deploy.spec")
    for cluster in list(getattr(getattr(spec, "SpecCluster", None), "_instances", ())):
        with contextlib.suppress(Exception):
            cluster.close(timeout=10)
        cluster.shutdown_on_close = False  # Dask's exit hook leaves it alone


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return int(args.func(args) or 0)
    except (InputError, ConfigError) as err:
        # Bad input is the user's to fix: one clear line, no traceback from inside a library.
        print(f"anomalyhunt {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        name = "SIGTERM" if isinstance(err, Interrupted) else "Ctrl-C"
        _close_dask_clusters()
        print(f"anomalyhunt {args.command}: interrupted ({name}): workers stopped; what was written is marked partial "
              "or logged as finished, and the same command again resumes or replaces it", file=sys.stderr)  # fmt: skip
        return 143 if isinstance(err, Interrupted) else 130
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in previous.items():
                signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
