"""Data loading for one training epoch: images per second, decoding every epoch vs the
scandx preprocessed cache (cold build, warm read) vs MONAI's CacheDataset and
PersistentDataset, on the same PNG files, in one run.

    python benchmarks/data_loading.py [--images 400] [--size 256] [--input 224]

The files are PneumoniaMNIST images (../shared/data/medmnist) upscaled to ``--size`` px and
written as 8-bit PNGs. Every method turns a file into a normalised (1, input, input)
float32 tensor: scandx by its contract (display [0, 1], letterbox, antialiased bilinear
resize, mean/std); MONAI by LoadImaged + ScaleIntensityRanged(0..255 -> 0..1) + Resized
(bilinear, anti-aliased) + NormalizeIntensityd, the nearest MONAI equivalent. Each figure
is the best of ``--repeats`` passes (cold builds: one pass, in a fresh folder).
Methods: raw = read + preprocess each epoch (what an uncached loader does); scandx cold =
load_cases on an empty cache (decode, preprocess, write entries); scandx warm = the same
on the filled cache (memory-mapped reads, what every later epoch and run does); MONAI
CacheDataset = its in-memory build, then one epoch from memory; PersistentDataset = its
first epoch (compute + torch.save per item) and a later one (torch.load per item).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchmarks.machine import commit, cpu_model  # noqa: E402

NPZ = ROOT / ".." / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"


def write_pngs(out: Path, n: int, size: int) -> list[Path]:
    from PIL import Image

    with np.load(NPZ) as z:
        imgs, labels = z["train_images"][:n], z["train_labels"][:n, 0]
    files = []
    for i, (a, y) in enumerate(zip(imgs, labels, strict=True)):
        d = out / ("pneumonia" if y else "normal") / f"p{i:05d}"
        d.mkdir(parents=True, exist_ok=True)
        f = d / "img.png"
        Image.fromarray(a).resize((size, size), Image.BILINEAR).save(f)
        files.append(f)
    return files


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--size", type=int, default=256, help="edge of the PNG files")
    ap.add_argument("--input", type=int, default=224, help="edge of the model input")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch
    from monai.data import CacheDataset, DataLoader, PersistentDataset
    from monai.transforms import (
        Compose,
        LoadImaged,
        NormalizeIntensityd,
        Resized,
        ScaleIntensityRanged,
    )

    from scandx.data import cache as cache_mod
    from scandx.tasks.classification.data.images import (
        InputContract,
        load_cases,
        preprocess,
        read_case,
    )
    from scandx.tasks.classification.data.manifest import Case

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    work = Path(tempfile.mkdtemp(prefix="scandx-loadbench-"))
    try:
        files = write_pngs(work / "png", args.images, args.size)
        n = len(files)
        cases = [Case(f"c{i}", f"p{i}", str(f), 0, "train") for i, f in enumerate(files)]
        contract = InputContract(size=[args.input, args.input], mean=[0.5], std=[0.25])
        rows: list[tuple[str, float]] = []

        def raw() -> None:
            for c in cases:
                preprocess(read_case(c), contract, c.path)

        rows.append(("raw decode + preprocess, every epoch", n / best(raw, args.repeats)))

        os.environ.pop("SCANDX_CACHE", None)
        cache_root = work / "scandx-cache"
        cache_mod.cache_root = lambda: cache_root  # this benchmark's own folder
        cache_mod._DIGESTS.clear()
        t = time.perf_counter()
        load_cases(cases, contract)
        rows.append(("scandx cache, cold (build)", n / (time.perf_counter() - t)))
        warm = best(lambda: load_cases(cases, contract), args.repeats)
        rows.append(("scandx cache, warm (memory-mapped read)", n / warm))
        cache_mod._DIGESTS.clear()  # a new process: every file hashed again
        rows.append(
            (
                "scandx cache, warm, new process (files hashed)",
                n / best_first(load_cases, cases, contract, cache_mod),
            )
        )

        keys = ["img"]
        transforms = Compose(
            [
                LoadImaged(keys, image_only=True, ensure_channel_first=True),
                ScaleIntensityRanged(keys, 0.0, 255.0, 0.0, 1.0),
                Resized(keys, (args.input, args.input), mode="bilinear", anti_aliasing=True),
                NormalizeIntensityd(keys, subtrahend=0.5, divisor=0.25),
            ]
        )
        items = [{"img": str(f)} for f in files]

        def epoch(ds) -> None:
            for _ in DataLoader(ds, batch_size=32, num_workers=0):
                pass

        t = time.perf_counter()
        cds = CacheDataset(items, transforms, cache_rate=1.0, num_workers=0, progress=False)
        rows.append(("MONAI CacheDataset, build (in memory)", n / (time.perf_counter() - t)))
        rows.append(("MONAI CacheDataset, epoch", n / best(lambda: epoch(cds), args.repeats)))
        pdir = work / "monai-persistent"
        pds = PersistentDataset(items, transforms, cache_dir=pdir)
        t = time.perf_counter()
        epoch(pds)
        rows.append(("MONAI PersistentDataset, first epoch", n / (time.perf_counter() - t)))
        rows.append(
            ("MONAI PersistentDataset, later epoch", n / best(lambda: epoch(pds), args.repeats))
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nData loading, {n} PNG files {args.size}x{args.size} -> input {args.input}x{args.input}"
    )
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; commit {commit()}\n")
    print(f"| {'method':<50} | {'images/s':>9} |")
    print(f"|{'-' * 52}|{'-' * 11}|")
    for name, rate in rows:
        print(f"| {name:<50} | {rate:>9.0f} |")


def best_first(load_cases, cases, contract, cache_mod) -> float:
    """One warm pass as a new process makes it: digests not memoised."""
    cache_mod._DIGESTS.clear()
    t = time.perf_counter()
    load_cases(cases, contract)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
