"""Regenerate src/scandx/deid/ps315_table_e1_1_<edition>.json from innolitics/dicom-standard.

The source is the JSON extraction of DICOM PS3.15 Table E.1-1 ("Application Level
Confidentiality Profile Attributes") by https://github.com/innolitics/dicom-standard
(file ``standard/confidentiality_profile_attributes.json``; MIT licence, the table's
content is the DICOM standard's). Give the file as it was downloaded, the standard's
edition it was made from and the repository commit; this script never downloads:

    python scripts/deid_table.py confidentiality_profile_attributes.json \\
        --edition 2024b --commit 8670abd

Each attribute becomes ``[tag, name, basic profile code, {option column: code}]`` with
the tag as 8 hex digits (``x`` for a wildcard digit, e.g. ``50xxxxxx``) or ``private``
for the "(GGGG,EEEE) where GGGG is odd" row.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

OPTION_COLUMNS = (
    "rtnLongFullDatesOpt",
    "rtnLongModifDatesOpt",
    "cleanDescOpt",
    "rtnPatCharsOpt",
    "rtnDevIdOpt",
    "rtnInstIdOpt",
    "rtnUIDsOpt",
    "rtnSafePrivOpt",
    "cleanStructContOpt",
    "cleanGraphOpt",
)
CODES = {"X", "D", "U", "Z", "K", "C", "X/D", "X/Z", "X/Z/D", "Z/D", "X/Z/U*"}
OUT = Path(__file__).resolve().parents[1] / "src" / "scandx" / "deid"


def convert_row(row: dict) -> list:
    tag = row["tag"].strip()
    m = re.fullmatch(r"\(([0-9A-Fa-fx]{4}),([0-9A-Fa-fx]{4})\)", tag.replace("X", "x"))
    if m:
        key = (m.group(1) + m.group(2)).lower()
    elif "GGGG IS ODD" in tag.upper():
        key = "private"
    else:
        raise ValueError(f"unexpected tag {tag!r} ({row.get('name')})")
    code = row["basicProfile"].strip()
    if code not in CODES:
        raise ValueError(f"unexpected action {code!r} for {tag}")
    options = {c: row[c].strip() for c in OPTION_COLUMNS if row.get(c, "").strip()}
    return [key, row["name"].strip(), code, options]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="innolitics confidentiality_profile_attributes.json")
    ap.add_argument("--edition", required=True, help="the standard's edition, e.g. 2024b")
    ap.add_argument("--commit", required=True, help="the innolitics/dicom-standard commit")
    args = ap.parse_args(argv)
    rows = json.loads(args.source.read_text(encoding="utf-8"))
    attributes = sorted((convert_row(r) for r in rows), key=lambda a: a[0])
    table = {
        "standard": "DICOM PS3.15 Table E.1-1",
        "edition": args.edition,
        "source": "https://github.com/innolitics/dicom-standard",
        "source_commit": args.commit,
        "licence": "extraction MIT (innolitics); table content from the DICOM standard",
        "option_columns": list(OPTION_COLUMNS),
        "attributes": attributes,
    }
    out = OUT / f"ps315_table_e1_1_{args.edition}.json"
    text = json.dumps(table, separators=(",", ":"), ensure_ascii=False)
    # one attribute a line: diffs between editions stay readable
    text = text.replace('],["', '],\n["').replace('"attributes":[[', '"attributes":[\n[')
    out.write_text(text + "\n", encoding="utf-8")
    print(f"{out}: {len(attributes)} attributes, edition {args.edition}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
