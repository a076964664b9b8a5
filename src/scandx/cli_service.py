"""The service- and archive-side commands (serve, keys, export, deid, index, listen,
pacs), registered on the main parser by ``scandx.cli``; each lives with the package it
drives."""

from __future__ import annotations

import argparse
from typing import Any

from scandx.hospital.cli import HOSPITAL_COMMANDS

SERVICE_COMMANDS = ("serve", "keys", "export", "deid", "index", *HOSPITAL_COMMANDS)


def add_service_commands(sub: Any) -> None:
    from scandx.catalog.cli import add_index_command
    from scandx.deid.cli import add_deid_command
    from scandx.export.cli import add_export_command
    from scandx.hospital.cli import add_hospital_commands
    from scandx.serve.cli import add_serve_command
    from scandx.serve.keys_cli import add_keys_command

    add_serve_command(sub)
    add_keys_command(sub)
    add_export_command(sub)
    add_deid_command(sub)
    add_hospital_commands(sub)
    add_index_command(sub)


def run_service_command(args: argparse.Namespace) -> int:
    if args.command == "index":
        from scandx.catalog.cli import run_index

        return run_index(args)
    if args.command in HOSPITAL_COMMANDS:
        from scandx.hospital.cli import run_hospital_command

        return run_hospital_command(args)
    if args.command == "deid":
        from scandx.deid.cli import run_deid

        return run_deid(args)
    if args.command == "export":
        from scandx.export.cli import run_export

        return run_export(args)
    if args.command == "keys":
        from scandx.serve.keys_cli import run_keys

        return run_keys(args)
    from scandx.serve.cli import run_serve

    return run_serve(args)
