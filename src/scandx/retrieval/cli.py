"""``scandx embed`` and ``scandx similar`` on the command line (registered by
``scandx.cli_learning``); the work is in ``retrieval.embed`` and ``retrieval.search``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from scandx.retrieval.index_store import EXACT_BELOW


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    return value


def add_embed_command(sub: Any) -> None:
    s = sub.add_parser(
        "embed",
        help="store one embedding per case of a source in a similar-case index",
        description="Embed every case of a source with a trained or pretrained run (or the "
        "raw pixels) and write an index folder: vectors, a FAISS index (exact below "
        f"{EXACT_BELOW} cases, approximate beyond), the case table with labels and "
        "metadata, thumbnails and a manifest.",
        epilog="example: scandx embed runs/pneu --data pneumoniamnist.npz --out pneu.index",
    )
    s.add_argument("run", nargs="?", metavar="RUN", help="the run whose network embeds")
    s.add_argument("--data", required=True, metavar="SRC", help="any source scandx train reads")
    s.add_argument("--out", required=True, metavar="INDEX", help="the index folder to write")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable cases, counted")
    s.add_argument("--image-root", default=None, help="root of relative paths in a CSV")
    s.add_argument(
        "--pixels",
        type=_whole,
        nargs="?",
        const=32,
        metavar="SIZE",
        help="embed raw pixels (resized to SIZE x SIZE, default 32) instead of a run",
    )
    s.add_argument(
        "--exact-below",
        type=_whole,
        default=EXACT_BELOW,
        metavar="N",
        help=f"exact search below N cases, approximate (IVF-Flat) from N on ({EXACT_BELOW})",
    )


def add_similar_command(sub: Any) -> None:
    s = sub.add_parser(
        "similar",
        help="find the cases of an index most similar to query images",
        description="Embed each query image with the index's run (checked by its weights' "
        "sha256) and list its k nearest cases with distances and labels; --out writes "
        "them as an HTML page with thumbnails. A query of another modality, colour or "
        "dimensionality than the indexed images is refused.",
        epilog="example: scandx similar pneu.index xray.dcm --k 10 --out similar.html",
    )
    s.add_argument("index", metavar="INDEX", help="an index folder (scandx embed)")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="query image file(s)")
    s.add_argument("--k", type=_whole, default=10, help="neighbours per query (10)")
    s.add_argument("--out", default=None, metavar="PAGE", help="write an HTML page here")
    s.add_argument("--run", default=None, help="the index's run, if it has moved")
    s.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="search even when a query's modality, colour or dimensionality differs from "
        "the indexed images' (warned instead of refused)",
    )


def run_embed(args: argparse.Namespace) -> int:
    from scandx.errors import ScandxError
    from scandx.retrieval.embed import embed_source, load_embedder

    if args.pixels is not None and args.run:
        raise ScandxError("give a RUN or --pixels, not both")
    if args.exact_below < 1 or (args.pixels is not None and not 2 <= args.pixels <= 256):
        raise ScandxError("--exact-below must be at least 1 and --pixels 2 to 256")
    embedder = load_embedder(args.run, args.pixels)
    m = embed_source(
        embedder,
        args.data,
        args.out,
        skip_bad=args.skip_bad,
        image_root=args.image_root,
        exact_below=args.exact_below,
    )
    search = m["search"]
    how = (
        "exact"
        if search["kind"] == "exact"
        else (f"approximate IVF-Flat, nlist {search['nlist']}, nprobe {search['nprobe']}")
    )
    skipped = f", {m['skipped']} skipped" if m["skipped"] else ""
    print(
        f"{args.out}: {m['count']} cases{skipped}, {m['space']['kind']} vectors of {m['dim']}, "
        f"{how} search ({search['metric']})"
    )
    return 0


def run_similar(args: argparse.Namespace) -> int:
    from scandx.retrieval.page import write_similar_page
    from scandx.retrieval.search import SimilarIndex

    index = SimilarIndex(args.index, run=args.run)
    index.check_k(args.k)
    results = index.query_files(args.images, args.k, allow_mismatch=args.allow_mismatch)
    for r in results:
        print(f"{r.name}:" + "".join(f"\n  warning: {w}" for w in r.warnings))
        print(f"  {'rank':>4}  {'distance':>9}  {'case':<24} {'label':<16} split")
        for n in r.neighbours:
            print(
                f"  {n['rank']:>4}  {n['distance']:>9.4f}  {str(n['case_id']):<24} "
                f"{str(n['label']):<16} {n['split']}"
            )
    if args.out:
        print(f"page: {write_similar_page(Path(args.out), index, results)}")
    return 0
