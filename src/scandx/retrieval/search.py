"""``scandx similar``: a query image's nearest cases in an index folder.

Each query is embedded with the index's own embedder (its run, checked by the weights'
sha256: vectors of other weights live in another space) and compared with what the
index holds before it is searched:

- refused (one line, exit 2), unless ``allow_mismatch``: a DICOM modality the index
  does not hold ("query is CT, the index holds CR/DX images"), a colour image against
  grey-scale ones or the reverse, a volume against 2D images. Nearest neighbours always
  exist, and look as confident for a CT queried against chest X-rays as for a chest
  X-ray: only a refusal tells the reader they mean nothing;
- warned (kept with the answer): a size far from the indexed images' (the letterbox
  resize handles any size, and sizes differ between scanners) and an out-of-distribution
  flag of a classifier run (its threshold flags about 1% of good images, so a refusal
  would turn away one good query in a hundred).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scandx.core.embedding import Embedder
from scandx.data.readers import read_image
from scandx.errors import ScandxError
from scandx.retrieval.embed import image_facts, png_bytes
from scandx.retrieval.index_store import faiss_search, load_index, read_manifest, read_thumbnail

log = logging.getLogger(__name__)

SIZE_FACTOR = 4  # a query's longer side this far outside the indexed range: a warning
SHOWN = ("case_id", "label", "split", "patient_id", "modality", "file")


@dataclass
class QueryResult:
    name: str
    neighbours: list[dict[str, Any]]
    thumbnail: bytes = b""
    warnings: list[str] = field(default_factory=list)
    ood_score: float | None = None


def _channels_text(c: int) -> str:
    return "grey-scale" if c == 1 else f"{c}-channel (colour)"


def query_mismatches(
    images: dict[str, Any], facts: dict[str, Any], modality: str
) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for a query with ``facts`` (``image_facts``) and DICOM
    ``modality`` against the index's ``images`` summary."""
    refusals: list[str] = []
    warnings: list[str] = []
    held = images.get("modalities") or {}
    if modality and held and modality not in held:
        refusals.append(f"query is {modality}, the index holds {'/'.join(sorted(held))} images")
    elif modality and not held:  # e.g. PNG or MedMNIST images: nothing to compare with
        warnings.append(
            f"query is {modality}; the index's images carry no modality (not DICOM), so "
            "whether they are the same kind of image is not checked"
        )
    channels = sorted(int(c) for c in images.get("channels") or {})
    if channels and facts["channels"] not in channels:
        held_text = " and ".join(_channels_text(c) for c in channels)
        refusals.append(
            f"query is {_channels_text(facts['channels'])}, the index holds {held_text} images"
        )
    dims = images.get("spatial_dims") or []
    if dims and facts["spatial_dims"] not in dims:
        what = "a volume" if facts["spatial_dims"] == 3 else "a 2D image"
        refusals.append(
            f"query is {what}, the index holds {'/'.join(f'{d}D' for d in dims)} images"
        )
    side = max(facts["height"], facts["width"])
    span = images.get("longer_side") or {}
    if span and not span["min"] / SIZE_FACTOR <= side <= span["max"] * SIZE_FACTOR:
        warnings.append(
            f"query is {facts['height']}x{facts['width']} pixels, the index holds images of "
            + (f"{span['min']}" if span["min"] == span["max"] else f"{span['min']}-{span['max']}")
            + " pixels on their longer side"
        )
    return refusals, warnings


class SimilarIndex:
    """An opened index folder: its manifest, FAISS index, case table and embedder."""

    def __init__(self, path: str | Path, run: str | Path | None = None):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.faiss, self.table = load_index(self.path, self.manifest)
        self.count: int = int(self.manifest["count"])
        self.run = run
        self._embedder: Embedder | None = None

    @property
    def space(self) -> dict[str, Any]:
        return self.manifest["space"]

    def embedder(self) -> Embedder:
        """The index's embedder: its run (or ``run``, if given), whose weights must be
        the ones the index was built with; the pixel baseline needs none."""
        if self._embedder is None:
            from scandx.retrieval.embed import load_embedder
            from scandx.retrieval.pixels import KIND, PixelEmbedder

            if self.space["kind"] == KIND:
                self._embedder = PixelEmbedder.from_space(self.space)
            else:
                self._embedder = self.use_embedder(load_embedder(self.run or self.space["run"]))
        return self._embedder

    def use_embedder(self, embedder: Embedder) -> Embedder:
        """Check that ``embedder`` gives this index's vectors (kind, weights, size)."""
        have, want = embedder.space, self.space
        for key in ("kind", "run_sha256", "dim"):
            if have.get(key) != want.get(key):
                raise ScandxError(
                    f"the run's embedder does not fit this index: {key} is "
                    f"{str(have.get(key))[:16]}, the index was built with "
                    f"{str(want.get(key))[:16]} (rebuild it with scandx embed)",
                    self.path,
                )
        self._embedder = embedder
        return embedder

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.count:
            raise ScandxError(f"--k must be 1 to {self.count} (the cases in the index), got {k}")

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """The ``k`` nearest cases of each vector: table rows with rank and distance."""
        self.check_k(k)
        distances, rows = faiss_search(self.faiss, self.manifest["search"], vectors, k)
        out = []
        for dist, ids in zip(distances, rows, strict=True):
            found = [(float(d), int(i)) for d, i in zip(dist, ids, strict=True) if i >= 0]
            records = self.table.take([i for _, i in found]).to_pylist() if found else []
            out.append(
                [
                    {"rank": r + 1, "distance": d, **rec}
                    for r, ((d, _), rec) in enumerate(zip(found, records, strict=True))
                ]
            )
        return out

    def thumbnail(self, row: dict[str, Any]) -> bytes:
        return read_thumbnail(self.path, row)

    def query_arrays(
        self,
        arrays: list[tuple[str, np.ndarray, dict[str, Any]]],
        k: int,
        allow_mismatch: bool = False,
    ) -> list[QueryResult]:
        """Query with display arrays (name, array, reader meta); every query is checked
        before any is searched (ScandxError naming the first that does not fit)."""
        self.check_k(k)
        embedder = self.embedder()
        results, prepared = [], []
        for name, arr, meta in arrays:
            refusals, warnings = query_mismatches(
                self.manifest["images"], image_facts(arr), str(meta.get("modality") or "")
            )
            if refusals and not allow_mismatch:
                raise ScandxError(
                    "; ".join(refusals) + " (--allow-mismatch to search anyway)", name
                )
            results.append(QueryResult(name, [], png_bytes(arr), refusals + warnings))
            prepared.append(embedder.prepare_display(arr, name))
        # one image at a time, so a query's vector and score never depend on the others
        vectors = np.concatenate([embedder.embed(x[None]) for x in prepared])
        ood = getattr(embedder, "ood_scores", None)
        found = self.search_vectors(vectors, k)
        for x, result, near in zip(prepared, results, found, strict=True):
            result.neighbours = near
            scored = ood(x[None]) if ood is not None else None
            if scored is not None:
                score, threshold = float(scored[0][0]), scored[1]
                result.ood_score = score
                if score > threshold:
                    result.warnings.append(
                        f"query is out of distribution for the run (OOD score {score:.2f}, "
                        f"flagged above {threshold:.2f})"
                    )
        for r in results:  # returned with the answer; the CLI and the service show them
            for w in r.warnings:
                log.debug("%s: %s", r.name, w)
        return results

    def query_files(
        self, paths: list[str | Path], k: int, allow_mismatch: bool = False
    ) -> list[QueryResult]:
        """Query with image files (any reader scandx has); an unreadable one is refused."""
        self.check_k(k)
        arrays = []
        for p in paths:
            arr, meta = read_image(p)  # BadImageError names the file
            arrays.append((Path(p).name, arr, meta))
        return self.query_arrays(arrays, k, allow_mismatch)
