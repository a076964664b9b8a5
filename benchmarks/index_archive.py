"""Indexing a DICOM archive: files per second, plain pydicom loop vs ``scandx index``.

    .venv/bin/python benchmarks/index_archive.py                    # 20,000 files (issue 14)
    .venv/bin/python benchmarks/index_archive.py --files 500        # a quick check
    .venv/bin/python benchmarks/index_archive.py --archive /data/a  # where the archive lives

The archive is made once (reused when ``--archive`` already holds ``--files`` files):
image instances of ``../shared/data/dicom`` copied with fresh Study, Series and SOP
Instance UIDs, several series per study, several studies per patient
(``scandx.catalog.synthetic``). Then each way is timed over the whole archive, each into
a fresh catalog folder:

* ``pydicom loop``: ``pydicom.dcmread(f, stop_before_pixels=True)`` over the sorted
  file list, serially, nothing written (the floor: no walk, no Parquet);
* ``scandx serial``: ``build_catalog(workers=1)``: the walk, every header, the checks,
  Parquet shards and the manifest, in this process;
* ``scandx pool``: the same on a 2-process pool (``--workers``);
* ``scandx dask``: the same on a 2-worker Dask ``LocalCluster`` (one thread each).

The page cache is warm for every way but the first (the archive was just written); the
order is the list above. Printed: the CPU, the commit, file count, then a markdown table
(seconds, files/s). Figures need a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import commit, cpu_model  # noqa: E402

from scandx.catalog.build import build_catalog  # noqa: E402
from scandx.catalog.synthetic import image_templates, make_archive  # noqa: E402

SHARED = (ROOT / ".." / "shared" / "data" / "dicom").resolve()


def ensure_archive(folder: Path, n_files: int) -> list[Path]:
    files = sorted(folder.rglob("*.dcm")) if folder.is_dir() else []
    if len(files) != n_files:
        if files:
            raise SystemExit(f"{folder} holds {len(files)} files, not {n_files}: give another")
        templates = image_templates(SHARED)
        print(f"making {n_files} files in {folder} from {len(templates)} templates ...")
        make_archive(templates, folder, n_files, seed=14)
        files = sorted(folder.rglob("*.dcm"))
    return files


def pydicom_loop(files: list[Path]) -> None:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in files:
            pydicom.dcmread(f, stop_before_pixels=True)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--archive", type=Path, help="archive folder (default under /tmp)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shard-size", type=int, default=256)
    args = p.parse_args()
    archive = args.archive or Path(tempfile.gettempdir()) / f"scandx-archive-{args.files}"
    files = ensure_archive(archive, args.files)
    work = Path(tempfile.mkdtemp(prefix="scandx-index-bench-"))
    os.environ.setdefault("SCANDX_CONFIG_DIR", str(work / "config"))  # a throwaway secret

    def scandx(name: str, **kw: object) -> Callable[[], object]:
        return lambda: build_catalog(archive, work / name, shard_size=args.shard_size, **kw)

    def dask() -> None:
        from dask.distributed import LocalCluster

        with LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            start = time.perf_counter()
            build_catalog(
                archive,
                work / "dask",
                scheduler=cluster.scheduler_address,
                shard_size=args.shard_size,
            )
            timings["dask"] = time.perf_counter() - start  # without the cluster's start

    timings: dict[str, float] = {}
    timings["loop"] = timed(lambda: pydicom_loop(files))
    timings["serial"] = timed(scandx("serial", workers=1))
    timings["pool"] = timed(scandx("pool", workers=args.workers))
    dask()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; commit {commit()}")
    print(f"{len(files)} files in {archive}, shards of about {args.shard_size}\n")
    print("| way | seconds | files/s |")
    print("|---|---:|---:|")
    names = {
        "loop": "pydicom.dcmread(stop_before_pixels=True) loop",
        "serial": "scandx index --workers 1",
        "pool": f"scandx index --workers {args.workers}",
        "dask": f"scandx index --scheduler (LocalCluster, {args.workers} workers)",
    }
    for key, name in names.items():
        print(f"| {name} | {timings[key]:.2f} | {len(files) / timings[key]:.0f} |")


if __name__ == "__main__":
    main()
