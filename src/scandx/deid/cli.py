"""``scandx deid IN OUT [--keep-longitudinal-dates] [--keep-descriptors] [--mapping-dir D]``:
the command-line glue (cli.py adds the subparser with ``add_deid_command`` and calls
``run_deid``; a ``ScandxError`` is its one line and exit 2, as for every command)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from scandx.deid.tree import DeidOptions, default_mapping_dir, deidentify_tree

EXAMPLE = "scandx deid /pacs/export /outbox/study-2024 --keep-longitudinal-dates"


def add_deid_command(sub: Any) -> argparse.ArgumentParser:
    """Add ``deid`` to an ``add_subparsers()`` object; returns its parser."""
    help_ = (
        "de-identify a folder of DICOM files (PS3.15 Annex E Basic Application Level "
        "Confidentiality Profile, Table E.1-1 2024b); pixel data is not changed"
    )
    s = sub.add_parser("deid", help=help_, description=help_, epilog=f"example: {EXAMPLE}")
    s.add_argument("input", help="folder of DICOM files (read only)")
    s.add_argument(
        "out",
        help="output folder: de-identified instances only, named by their new UIDs "
        "(this is what may leave the hospital)",
    )
    s.add_argument(
        "--keep-longitudinal-dates",
        action="store_true",
        help="Retain Longitudinal Temporal Information with Modified Dates: dates are moved "
        "back by a keyed per-patient offset (1-10 years, whole days), so intervals stay",
    )
    s.add_argument(
        "--keep-descriptors",
        action="store_true",
        help="Clean Descriptors: keep descriptions and comments, with every person name "
        "and the patient's ids found in the file replaced by '*'",
    )
    s.add_argument(
        "--mapping-dir",
        type=Path,
        help="where uid_mapping.csv and patid_mapping.csv (original -> new identifiers; "
        "confidential, 0600), skipped.csv and deid_summary.json go (default OUT-mapping "
        "beside OUT; never inside OUT)",
    )
    return s


def run_deid(args: argparse.Namespace) -> int:
    """De-identify, then print what was written, skipped and flagged."""
    out = Path(args.out)
    options = DeidOptions(
        keep_longitudinal_dates=args.keep_longitudinal_dates,
        keep_descriptors=args.keep_descriptors,
        mapping_dir=args.mapping_dir,
    )
    summary = deidentify_tree(Path(args.input), out, options)
    mapping = summary.mapping_dir or default_mapping_dir(out)
    print(
        f"wrote {summary.written} de-identified instance(s) to {out}; "
        f"skipped {len(summary.skipped)} (see {mapping / 'skipped.csv'}); "
        f"mapping files (confidential) in {mapping}"
    )
    if summary.burned_in:
        print(
            f"warning: {len(summary.burned_in)} instance(s) may show burned-in text in their "
            f"pixels (listed in {mapping / 'deid_summary.json'}); review them before release"
        )
    return 0
