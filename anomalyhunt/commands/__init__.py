"""Sub-commands of the ``anomalyhunt`` CLI: one module each, exposing ``register(subparsers)``.

``register`` adds an ``argparse`` sub-parser and sets ``func`` (called with the parsed namespace, returns an exit code).
Modules are discovered by name, so a new command is one new file.
"""
