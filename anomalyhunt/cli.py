"""The ``anomalyhunt`` command line: sub-commands are discovered from :mod:`anomalyhunt.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (InputError, ConfigError) as err:
        # Bad input is the user's to fix: one clear line, no traceback from inside a library.
        print(f"anomalyhunt {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
