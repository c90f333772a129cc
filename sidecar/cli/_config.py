"""``policy-sidecar config schema``: the JSON Schema of the config file, for editors and CI."""

from __future__ import annotations

import argparse
from typing import Any

from sidecar.config import Config, config_schema

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``config`` command and its subcommands to the CLI's subparsers."""
    config = sub.add_parser("config", help="inspect the config format (schema)")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    actions.add_parser(
        "schema", help="print the config's JSON Schema (docs/config-schema.json is a copy)"
    )


def run(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Run ``config ACTION``; return the document to print."""
    del config  # the schema is the same whatever file was loaded
    if args.config_command == "schema":
        return config_schema()
    raise AssertionError(f"unhandled config action {args.config_command}")
