"""The page of ``scandx similar``: each query beside its nearest cases, thumbnails as
``data:`` URIs, every name and label escaped (``core/report.py``'s frame: one
self-contained file, no script, nothing fetched)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from scandx.core.report import esc, html_table, write_page
from scandx.retrieval.search import QueryResult


def _img(png: bytes, alt: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<img src='data:image/png;base64,{data}' alt='{esc(alt)}' width='96' "
        "style='image-rendering:pixelated;min-width:96px'>"
    )


def _neighbour(index: Any, n: dict[str, Any]) -> str:
    label = n.get("label") or "unlabelled"
    caption = (
        f"#{n['rank']} {esc(label)}<br>distance {n['distance']:.4f}<br>"
        f"<span class='muted'>{esc(n.get('case_id', ''))}</span>"
    )
    alt = "case " + str(n.get("case_id", ""))
    return f"<figure>{_img(index.thumbnail(n), alt)}<figcaption>{caption}</figcaption></figure>"


def query_section(index: Any, result: QueryResult) -> str:
    warn = "".join(f"<p class='warn'>{esc(w)}</p>" for w in result.warnings)
    ood = (
        f"<p class='muted'>out-of-distribution score {result.ood_score:.3f}</p>"
        if result.ood_score is not None
        else ""
    )
    query = f"<figure>{_img(result.thumbnail, 'query')}<figcaption>query</figcaption></figure>"
    gallery = "".join(_neighbour(index, n) for n in result.neighbours)
    rows = [
        [str(n["rank"]), f"{n['distance']:.4f}", esc(n.get("case_id", "")), esc(n.get("label", "")),
         esc(n.get("split", "")), esc(n.get("patient_id", "")), esc(n.get("modality", ""))]
        for n in result.neighbours
    ]  # fmt: skip
    table = html_table(["rank", "distance", "case", "label", "split", "patient", "modality"], rows)
    return (
        f"<h2>{esc(result.name)}</h2>{warn}{ood}<div class='gallery'>{query}{gallery}</div>{table}"
    )


def write_similar_page(out: Path, index: Any, results: list[QueryResult]) -> Path:
    m = index.manifest
    space = m["space"]
    search = m["search"]
    how = (
        "exact"
        if search["kind"] == "exact"
        else (f"approximate (IVF-Flat, {search['nlist']} cells, {search['nprobe']} visited)")
    )
    subtitle = (
        f"{m['count']} cases, {space['kind']} embedding"
        f"{' of weights ' + space['run_sha256'][:12] if space.get('run_sha256') else ''}, "
        f"{how} search, {search['metric']} distance (smaller is nearer). Decision support "
        "only: similar-looking cases, not a diagnosis."
    )
    sections = [query_section(index, r) for r in results]
    return write_page(Path(out), "Similar cases", subtitle, sections)
