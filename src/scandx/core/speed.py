"""Measured speed of this machine, robust to its momentary load and cached.

Planners choose networks and epochs from timed probe steps. A single timing moves
with whatever else the machine is doing, so the same command could plan a different
network from one minute to the next. Here a probe is timed as the best of several
steps (other processes only ever make a step slower), and the result is cached per
machine (CPU model, core count, torch version, device, precision) and per probe
(network, shape, batch), so the same data, budget and seed on the same machine give
the same plan. The cache is a small JSON file: ``$SCANDX_CACHE_DIR/speed.json``
(default ``~/.cache/scandx``); ``SCANDX_SPEED_CACHE=off`` measures afresh each time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def cache_path() -> Path:
    root = os.environ.get("SCANDX_CACHE_DIR") or Path.home() / ".cache" / "scandx"
    return Path(root) / "speed.json"


def machine_key(device: str, precision: str) -> str:
    """What makes a timing transferable: the processor, cores, torch, device, precision."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else ""
    threads = torch.get_num_threads()
    return f"{cpu}|{gpu}|{threads} threads|torch {torch.__version__}|{device}|{precision}"


def best_of(step: Callable[[], None], warmup: int = 1, repeats: int = 5) -> float:
    """The fastest of ``repeats`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return min(times)


def cached_seconds(probe: str, device: str, precision: str, measure: Callable[[], float]) -> float:
    """Seconds of ``probe`` on this machine: the fastest ever measured here. Each call
    measures again (a few steps), but a slower result (another job running) never
    replaces the cached one, so load cannot change a plan; a faster one does, so a first
    probe taken under load cannot fix a bad plan for ever (it did: a demo planned from
    probes cached during a busy test run picked the smallest CNN, 10x too slow)."""
    key = hashlib.sha256(f"{machine_key(device, precision)}|{probe}".encode()).hexdigest()[:24]
    use_cache = os.environ.get("SCANDX_SPEED_CACHE", "").lower() not in ("off", "0", "no")
    path = cache_path()
    table: dict[str, float] = {}
    if use_cache and path.exists():
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            table = {}
    seconds = float(measure())
    cached = table.get(key)
    if cached is not None and float(cached) <= seconds:
        return float(cached)  # a busy machine only ever measures slower: keep the fastest
    if use_cache:  # first measurement, or one faster than a probe taken under load
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            table[key] = seconds
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(table, indent=0, sort_keys=True))
            os.replace(tmp, path)
        except OSError as e:  # a read-only home: measure every time
            log.debug("speed cache not written (%s)", e)
    return seconds
