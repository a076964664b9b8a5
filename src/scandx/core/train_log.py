"""The training log: ``RUN/log.jsonl``, one JSON line per epoch (epochs from 1), and
the line the engine prints for each epoch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scandx.core.run_dir import DISK_FULL, atomic_write, disk_full


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    head = f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}"
    skip = {"epoch", "train_loss", "validated", "lr", "seconds", "best"}
    vals = [f"{k} {v:.4f}" for k, v in record.items() if k not in skip and isinstance(v, float)]
    val_txt = "  ".join(vals) if record["validated"] else "(not validated this epoch)"
    return f"{head}  {val_txt}  {record['seconds']:.1f}s{'  *best' if record['best'] else ''}"


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_log(path: Path, epochs_done: int) -> None:
    """Drop log lines of epochs after the checkpoint (a kill between log and checkpoint)."""
    kept = [r for r in read_log(path) if r["epoch"] <= epochs_done]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))


def append_log(path: Path, record: dict[str, Any]) -> None:
    """One epoch's line, appended whole (a full disk: one line naming the file)."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        if e.errno in DISK_FULL:
            raise disk_full(e, path) from None
        raise
