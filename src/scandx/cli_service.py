"""The service-side commands (``serve``, ``keys``, ``export``), registered on the main
parser by ``scandx.cli``; each lives with the package it drives."""

from __future__ import annotations

import argparse
from typing import Any

SERVICE_COMMANDS = ("serve", "keys", "export")


def add_service_commands(sub: Any) -> None:
    from scandx.export.cli import add_export_command
    from scandx.serve.cli import add_serve_command
    from scandx.serve.keys_cli import add_keys_command

    add_serve_command(sub)
    add_keys_command(sub)
    add_export_command(sub)


def run_service_command(args: argparse.Namespace) -> int:
    if args.command == "export":
        from scandx.export.cli import run_export

        return run_export(args)
    if args.command == "keys":
        from scandx.serve.keys_cli import run_keys

        return run_keys(args)
    from scandx.serve.cli import run_serve

    return run_serve(args)
