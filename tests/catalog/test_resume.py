"""A rerun after a kill reads only the unfinished shards; a changed tree only what changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scandx.catalog.build import build_catalog
from scandx.catalog.run import ShardResult, _checked
from scandx.errors import ScandxError
from tests.catalog.conftest import copy_tree
from tests.catalog.test_build import table


def shard_list(catalog: Path) -> list[dict]:
    return json.loads((catalog / "manifest.json").read_text())["shards"]


def test_rerun_after_a_kill_reads_only_the_missing_shards(archive: Path, tmp_path: Path) -> None:
    build_catalog(archive, tmp_path / "whole", workers=1, shard_size=4)
    killed = build_catalog(archive, tmp_path / "cat", workers=1, shard_size=4, _stop_after=3)
    assert not killed.complete and not (tmp_path / "cat" / "manifest.json").exists()
    first_three = sum(s["files"] for s in shard_list(tmp_path / "whole")[:3])
    assert killed.read == first_three
    (tmp_path / "cat" / ".part-0123.parquet.tmp-99").write_bytes(b"half")  # a kill mid-write
    resumed = build_catalog(archive, tmp_path / "cat", workers=1, shard_size=4)
    assert resumed.shards_done_before == 3 and resumed.read == 40 - first_three
    assert table(tmp_path / "cat") == table(tmp_path / "whole")
    assert table(tmp_path / "cat", "failures/*.parquet") == []
    assert shard_list(tmp_path / "cat") == shard_list(tmp_path / "whole")
    assert build_catalog(archive, tmp_path / "cat", workers=1, shard_size=4).read == 0


def test_changed_tree_rereads_only_changed_files(archive: Path, tmp_path: Path) -> None:
    import pydicom

    root = copy_tree(archive, tmp_path / "dicom")
    build_catalog(root, tmp_path / "cat", workers=1, shard_size=4)
    files = sorted(root.rglob("*.dcm"))
    changed, removed = files[5], files[20]
    ds = pydicom.dcmread(changed)
    ds.SeriesDescription = "changed"
    ds.save_as(changed, enforce_file_format=False)
    os.utime(changed, ns=(1, 2_000_000_000_000_000_000))
    removed.unlink()
    (files[30].parent / "added.dcm").write_bytes(files[30].read_bytes())
    again = build_catalog(root, tmp_path / "cat", workers=1, shard_size=4)
    assert again.read == 2  # the changed file and the added one
    rows = {r["path"]: r for r in table(tmp_path / "cat")}
    assert rows[changed.relative_to(root).as_posix()]["series_description"] == "changed"
    assert removed.relative_to(root).as_posix() not in rows and len(rows) == 40
    fresh = build_catalog(root, tmp_path / "fresh", workers=1, shard_size=4)
    assert fresh.read == 40 and table(tmp_path / "fresh") == table(tmp_path / "cat")
    listed = {f"part-{s['id']}.parquet" for s in shard_list(tmp_path / "cat")}
    assert {p.name for p in (tmp_path / "cat").glob("part-*.parquet")} == listed


def test_dask_local_cluster_gives_the_same_catalog(archive: Path, tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    build_catalog(archive, tmp_path / "serial", workers=1, shard_size=8)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        summary = build_catalog(
            archive, tmp_path / "dask", scheduler=cluster.scheduler_address, shard_size=8
        )
    assert summary.read == 40 and summary.instances == 40
    assert table(tmp_path / "dask") == table(tmp_path / "serial")


def test_a_worker_with_another_secret_is_refused() -> None:
    with pytest.raises(ScandxError, match="another pseudonym secret"):
        _checked(ShardResult("x", 1, 0, 1, "chk-0000000000000000"))


def test_unreachable_scheduler_is_one_clear_error(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.system_tools import free_port

    monkeypatch.setattr("scandx.catalog.run.CONNECT_TIMEOUT_S", 1)
    with pytest.raises(ScandxError, match="cannot reach the Dask scheduler"):
        build_catalog(archive, tmp_path / "cat", scheduler=f"tcp://127.0.0.1:{free_port()}")
