"""``scandx keys create|list|revoke``: manage the service's API keys from a shell.

The plaintext of a key is printed once, on stdout alone (so ``KEY=$(scandx keys create
--role clinician)`` captures it), and never again: only its hash is stored.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from scandx.errors import ScandxError
from scandx.serve.roles import ROLES

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported when a keys command runs
    from scandx.serve.store import KeyInfo

DB_HELP = (
    "sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE (default: serve.db in the "
    "scandx config folder); a PostgreSQL password is best given by PGPASSWORD or ~/.pgpass"
)


def add_keys_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``keys`` (with ``create``, ``list``, ``revoke``) to the CLI's subcommands."""
    description = "API keys of scandx serve: create (printed once), list, revoke"
    keys = sub.add_parser(
        "keys",
        help=description,
        description=description,
        epilog="example: scandx keys create --role clinician --label 'PACS router'",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser(
        "create",
        help="create a key and print it once",
        description="Create a key and print it once on stdout; only its hash is stored.",
    )
    create.add_argument("--role", required=True, choices=ROLES, help="clinician: predict; "
                        "admin: also read the audit log and manage keys")  # fmt: skip
    create.add_argument("--label", default="", help="who or what holds the key (no patient data)")
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    revoke = actions.add_parser("revoke", help="revoke a key at once (it stays listed)")
    revoke.add_argument("key_id", help="the key's id (from `scandx keys list`)")
    for action in (create, listing, revoke):
        action.add_argument("--db", help=DB_HELP)
    return keys


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%SZ")


def _table(keys: list[KeyInfo]) -> str:
    rows = [("KEY ID", "ROLE", "CREATED", "REVOKED", "LABEL")]
    rows += [(k.key_id, k.role, _when(k.created_at), _when(k.revoked_at), k.label) for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    )


def run_keys(args: argparse.Namespace) -> int:
    """Run ``keys <action>``; a problem raises ScandxError (the CLI prints it, exits 2)."""
    from scandx.serve.store import Store

    with Store(args.db) as store:
        if args.keys_command == "create":
            token, info = store.create_key(args.role, args.label)
            print(token, flush=True)
            print(
                f"scandx: created {info.role} key {info.key_id} in {store.url}; the key above "
                "cannot be shown again: store it now",
                file=sys.stderr,
            )
        elif args.keys_command == "list":
            keys = store.list_keys()
            print(_table(keys) if keys else f"no keys in {store.url}")
        elif args.keys_command == "revoke":
            if not store.revoke(args.key_id):
                raise ScandxError(f"no active key with id {args.key_id!r} in {store.url}")
            print(f"revoked key {args.key_id}")
        else:  # argparse allows only the three
            raise ScandxError(f"unknown keys action {args.keys_command!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m scandx.serve.keys_cli ...`` (the same as ``scandx keys ...``)."""
    parser = argparse.ArgumentParser(prog="scandx")
    add_keys_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return run_keys(args)
    except ScandxError as e:
        print(f"scandx: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
