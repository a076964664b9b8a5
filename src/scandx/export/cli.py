"""``scandx export RUN --format onnx [--out DIR]``: the command-line glue (cli.py adds
the subparser with ``add_export_command`` and calls ``run_export``; a ``ScandxError``
is its one line and exit 2, as for every command)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from scandx.export.onnx_export import EXPORT_JSON, default_export_dir, export_onnx

FORMATS = ("onnx",)
EXAMPLE = "scandx export runs/chest --format onnx"


def add_export_command(sub: Any) -> argparse.ArgumentParser:
    """Add ``export`` to an ``add_subparsers()`` object; returns its parser."""
    help_ = (
        "export a trained run's network(s) for another runtime: ONNX graphs plus "
        "export.json (weights and graph sha256), read by serve/predict with runtime onnx"
    )
    s = sub.add_parser("export", help=help_, description=help_, epilog=f"example: {EXAMPLE}")
    s.add_argument("run", help="run folder (RUN/model from scandx train)")
    s.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default)")
    s.add_argument(
        "--out",
        help="output folder (default RUN/export/onnx, the one runtime onnx reads; another "
        "folder is a copy to ship elsewhere)",
    )
    return s


def run_export(args: argparse.Namespace) -> int:
    """Export, then print where and what; errors are ``ScandxError`` (exit 2)."""
    out = export_onnx(args.run, args.out)
    record = json.loads((out / EXPORT_JSON).read_text())
    graphs = record["graphs"]
    worst = max(g["max_abs_diff_at_export"] for g in graphs)
    default = out.resolve() == default_export_dir(args.run).resolve()
    print(
        f"wrote {out}: {len(graphs)} ONNX graph(s) ({', '.join(g['file'] for g in graphs)}), "
        f"max |onnx - torch| {worst:.1e} at export"
        + ("" if default else "; runtime onnx reads RUN/export/onnx, not this folder")
    )
    return 0
