"""The ``anomalyhunt`` command line: sub-commands are discovered from :mod:`anomalyhunt.commands`."""

from __future__ import annotations

import argparse
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


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except (InputError, ConfigError) as err:
        # Bad input is the user's to fix: one clear line, no traceback from inside a library.
        print(f"anomalyhunt {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        name = "SIGTERM" if isinstance(err, Interrupted) else "Ctrl-C"
        print(f"anomalyhunt {args.command}: interrupted ({name}): workers stopped; what was written is marked partial "
              "or logged as finished, and the same command again resumes or replaces it", file=sys.stderr)  # fmt: skip
        return 143 if isinstance(err, Interrupted) else 130
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
