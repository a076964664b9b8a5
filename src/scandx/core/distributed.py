"""Distributed training: torchrun + PyTorch DistributedDataParallel, for every task.

A process is a DDP worker when torchrun's environment is set (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``); ``scandx train --nproc N`` starts N of them through
torch's elastic launcher (the same one torchrun runs), on 127.0.0.1.

- The engine (``core/engine.py``) joins the process group when ``fit`` starts: NCCL when
  the run's device is CUDA (one GPU per local rank), gloo on the CPU; a finite timeout
  (``SCANDX_DDP_TIMEOUT_S``, default 300 s) so a lost peer ends the job instead of
  hanging it; each rank uses ``cpus // local ranks`` threads. The group is destroyed
  when the process exits.
- Rank 0 alone writes the run directory; every rank reads it (``--resume``, recovery),
  so on several machines RUN must be on a shared file system.
- Batches: the global batch of one process is split across ranks (``batch_share``,
  the remainder to the low ranks); validation cases are split in contiguous shards
  (``shard_range``) and their results gathered (``gather_rows``), so every rank computes
  the same score and makes the same decisions.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from scandx.errors import ScandxError

log = logging.getLogger(__name__)

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")
TIMEOUT_ENV = "SCANDX_DDP_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
FOLDS_REFUSED = (
    "--folds does not run under DDP (--nproc / torchrun): train the folds in one process, "
    "or single runs with --nproc"
)
RESUME_HINT = "run the same command with --resume to continue from the last finished epoch"


def launched() -> bool:
    """True in a process torchrun (or ``--nproc``) started."""
    return all(k in os.environ for k in ENV_KEYS)


def rank() -> int:
    return int(os.environ["RANK"]) if launched() else 0


def world_size() -> int:
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def local_rank() -> int:
    return int(os.environ["LOCAL_RANK"]) if launched() else 0


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size())) if launched() else 1


def is_main() -> bool:
    """Rank 0, or a plain process: the one that writes the run directory and logs."""
    return rank() == 0


def active() -> bool:
    """A process group is up (collectives are needed)."""
    return dist.is_available() and dist.is_initialized()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_threads() -> int:
    """Threads per rank: this machine's CPUs shared by its ranks."""
    return max(1, cpu_count() // local_world_size())


def timeout_s() -> float:
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ScandxError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ScandxError(f"{TIMEOUT_ENV}={value!r} must be above 0")
    return seconds


def configure_worker() -> None:
    """A torchrun worker's threads and logging (ranks other than 0: warnings only)."""
    if not launched():
        return
    torch.set_num_threads(worker_threads())
    if not is_main():
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("scandx").setLevel(logging.WARNING)


def init(device: str) -> str:
    """Join the process group (once per process) for a run on ``device``; returns the
    device this rank trains on (``cuda:<local rank>`` for CUDA)."""
    if not launched():
        return device
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank())
        device = f"cuda:{local_rank()}"
    if not active():
        configure_worker()
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
        atexit.register(shutdown)
        log.info("DDP: rank %d of %d, %s, %d threads", rank(), world_size(), backend,
                 torch.get_num_threads())  # fmt: skip
    return device


def shutdown() -> None:
    """Destroy the process group (at exit; harmless when there is none)."""
    if active():
        dist.destroy_process_group()


def peer_lost(error: BaseException) -> bool:
    """True when ``error`` is a collective that failed (a peer died, a timeout)."""
    text = str(error)
    return isinstance(error, dist.DistError) or any(
        w in text for w in ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out")
    )


def lost_peer_error(error: BaseException) -> ScandxError:
    """One line for a rank whose peer stopped mid-training (not a traceback)."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ScandxError(
        f"training rank {rank()}: another rank stopped or stopped answering ({first[:160]}); "
        f"{RESUME_HINT}"
    )


def _comm_device() -> torch.device:
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if active():
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on any rank (every rank gets the same answer)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def from_rank0(value: int) -> int:
    """Rank 0's ``value`` on every rank: a decision that must be one (the engine's
    continue / stop), whatever small differences the ranks' own bookkeeping has."""
    if not active():
        return value
    t = torch.tensor([value], device=_comm_device())
    dist.broadcast(t, src=0)
    return int(t.item())


def max_over_ranks(value: float) -> float:
    """The largest ``value`` of all ranks (the epoch's seconds: the slowest rank's)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``t`` over ranks (a NaN on one rank reaches all)."""
    if not active():
        return t
    out = t.detach().to(_comm_device(), torch.float32).clone()
    dist.all_reduce(out)
    return (out / world_size()).to(t.device)


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    if not active():
        return t
    out = t.detach().to(_comm_device()).clone()
    dist.all_reduce(out)
    return out.to(t.device)


def loss_weight(x: torch.Tensor, world: int) -> torch.Tensor:
    """The loss weight that makes DDP's mean of the ranks' gradients the gradient of the
    global batch's mean loss: this rank's samples x ranks / all ranks' samples."""
    n = torch.tensor([float(len(x))], device=x.device)
    return n * world / sum_over_ranks(n)


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank, so all validate and save
    the same network (parameters are kept equal by DDP)."""
    if not active():
        return
    for b in model.buffers():
        if b.device.type == _comm_device().type:
            dist.broadcast(b.data, 0)
        else:
            t = b.data.to(_comm_device())
            dist.broadcast(t, 0)
            b.data.copy_(t)


def batch_share(batch: int, r: int | None = None, world: int | None = None) -> int:
    """Rank ``r``'s part of a global batch of ``batch``: an equal share, the remainder to
    the low ranks (the parts add up to ``batch``)."""
    r, world = rank() if r is None else r, world_size() if world is None else world
    return batch // world + (1 if r < batch % world else 0)


def shard_range(n: int, r: int | None = None, world: int | None = None) -> range:
    """Rank ``r``'s contiguous shard of ``n`` items (sizes as ``batch_share``)."""
    r, world = rank() if r is None else r, world_size() if world is None else world
    start = sum(batch_share(n, k, world) for k in range(r))
    return range(start, start + batch_share(n, r, world))


def shard_rows(rows: torch.Tensor, r: int | None = None, world: int | None = None) -> torch.Tensor:
    """Rank ``r``'s contiguous part of one global batch of indices, never empty: a rank
    left without one (a last batch smaller than the ranks) repeats one of the batch."""
    part = shard_range(len(rows), r, world)
    if len(part):
        return rows[part.start : part.stop]
    r = rank() if r is None else r
    return rows[r % len(rows) : r % len(rows) + 1]


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` rows of every rank's ``shard_range(n)`` part, in order, on every rank."""
    if not active():
        return local
    world, sizes = world_size(), [batch_share(n, k) for k in range(world_size())]
    trailing, dev = local.shape[1:], local.device
    padded = torch.zeros((max(sizes), *trailing), dtype=local.dtype, device=_comm_device())
    padded[: len(local)] = local.to(_comm_device())
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]).to(dev)


def wrap(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when a process group is up (else itself)."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """The command line without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch_train(nproc: int, argv: Sequence[str], folds: int | None = None) -> int:
    """``scandx train --nproc N``: N local DDP workers running ``python -m scandx`` with
    the same arguments, through torch's elastic launcher (torchrun's). Returns the exit
    code; a worker that died is named with the way to continue."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if launched():
        raise ScandxError("--nproc starts the workers itself; under torchrun leave it out")
    if folds:
        raise ScandxError(FOLDS_REFUSED)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"scandx-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port, chosen by the rendezvous store
        local_addr="127.0.0.1",
        max_restarts=0,  # a failed rank ends the job; --resume continues it
        monitor_interval=0.5,
    )
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // nproc)))
    args = ["-m", "scandx", *strip_nproc(argv)]
    try:
        elastic_launch(config, sys.executable)(*args)
    except ChildFailedError as e:
        return _report_failure(e)
    except (KeyboardInterrupt, SignalException):  # Ctrl-C, or the launcher was stopped
        print(f"scandx: interrupted; {RESUME_HINT}", file=sys.stderr)
        return 130
    return 0


def _report_failure(error: object) -> int:
    """One line per failed rank (the first first); the exit code: 2 when a rank refused
    bad input (it said why), 130 when interrupted, else 1."""
    failures = sorted(  # a killed rank first (not one the launcher then stopped, SIGTERM)
        getattr(error, "failures", {}).items(),
        key=lambda kv: (kv[1].exitcode >= 0, kv[1].exitcode == -15, kv[1].timestamp),
    )
    if not failures:
        print(f"scandx: error: a training rank failed; {RESUME_HINT}", file=sys.stderr)
        return 1
    first_rank, first = failures[0]
    for r, f in failures:
        if f.exitcode < 0:
            how = f"was killed by {f.signal_name()}"
        else:
            how = f"exited with code {f.exitcode} (its messages are above)"
        print(f"scandx: error: training rank {r} (pid {f.pid}) {how}", file=sys.stderr)
    if all(f.exitcode == 2 for _, f in failures):  # bad input: the ranks said why
        return 2
    if first.exitcode == 130:
        return 130
    print(
        f"scandx: error: rank {first_rank} stopped, so the job was ended (the other ranks "
        f"were stopped); {RESUME_HINT}",
        file=sys.stderr,
    )
    return 1


def cli_train(args: Any, argv: Sequence[str] | None) -> int | None:
    """The CLI's hook for ``train``: with ``--nproc`` the launcher's exit code; in a
    torchrun worker, its threads and logging set and None (train as usual)."""
    nproc = getattr(args, "nproc", None)
    if nproc:
        return launch_train(nproc, sys.argv[1:] if argv is None else argv, args.folds)
    if launched() and getattr(args, "folds", None):
        raise ScandxError(FOLDS_REFUSED)
    configure_worker()
    return None
