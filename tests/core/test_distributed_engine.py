"""The engine under DDP, on 2 CPU processes (gloo, torch.multiprocessing): a non-finite
loss on one rank makes every rank recover the same way, rank 1 never writes the run,
and a resumed run equals an uninterrupted one exactly."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.multiprocessing as mp

from scandx.core import distributed as ddp
from scandx.core import engine
from scandx.core.engine import Schedule, TrainingTask, fit
from scandx.core.health import Health
from scandx.core.run_dir import RunDir
from tests.system_tools import free_port


class ShardedToy(TrainingTask):
    """Logistic regression on two blobs, batches and validation sharded by rank; a NaN
    loss on ``nan_rank`` in epoch ``nan_epoch`` (once)."""

    def __init__(self, nan_rank: int | None = None, nan_epoch: int | None = None) -> None:
        self.seed, self.device, self.precision = 0, "cpu", "fp32"
        self.schedule = Schedule(epochs=6, steps_per_epoch=4, lr=0.05)
        self.health = Health(chance=0.5)
        self.nan_rank, self.nan_epoch, self.epoch = nan_rank, nan_epoch, -1
        g = torch.Generator().manual_seed(0)
        self.x = torch.cat([torch.randn(64, 4, generator=g) + 1, torch.randn(64, 4, generator=g)])
        self.y = torch.cat([torch.ones(64), torch.zeros(64)]).long()

    def build_model(self) -> torch.nn.Module:
        return torch.nn.Linear(4, 2)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(output, target)
        if self.rank == self.nan_rank and self.epoch == self.nan_epoch:
            self.nan_epoch = None
            return loss * float("nan")
        return loss

    def batches(self, epoch: int, device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.epoch = epoch
        order = torch.randperm(128, generator=torch.Generator().manual_seed(epoch))
        for b in range(4):
            idx = ddp.shard_rows(order[b * 33 : (b + 1) * 33], self.rank, self.world)
            yield self.x[idx], self.y[idx]

    def validate(self, model, epoch, device, precision):
        rows = ddp.shard_range(128, self.rank, self.world)
        with torch.no_grad():
            p = model(self.x[rows.start : rows.stop]).softmax(1)[:, 1]
        p = ddp.gather_rows(p, 128)
        acc = float(((p > 0.5).long() == self.y).float().mean())
        return {"val_acc": acc, "score": acc}


def _forbidden(*args, **kwargs):
    raise AssertionError("a rank other than 0 wrote the run directory")


def _worker(rank: int, port: int, folder: str, scenario: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    if rank:
        engine.append_log = engine.save_checkpoint = engine.truncate_log = _forbidden
    root = Path(folder)
    out: dict = {}
    if scenario == "diverge":  # rank 1's own bookkeeping would stop early; rank 0's not
        toy = ShardedToy()
        if rank:
            toy.schedule = Schedule(epochs=6, steps_per_epoch=4, lr=0.05, patience=0)
        result = fit(toy, RunDir(root / "run"))
        out = {"epochs": len(result.history), "stopped": result.stopped}
    elif scenario == "nan":
        result = fit(ShardedToy(nan_rank=1, nan_epoch=2), RunDir(root / "run"))
        out = {"recoveries": result.recoveries, "stopped": result.stopped}
        out["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]
        out["weights"] = [p.tolist() for p in result.model.parameters()]
    else:
        whole = fit(ShardedToy(), RunDir(root / "whole"))
        fit(ShardedToy(), RunDir(root / "cut"), stop_after=2)
        resumed = fit(ShardedToy(), RunDir(root / "cut"), resume=True)
        out["same_weights"] = all(
            torch.equal(a, b)
            for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True)
        )
        out["weights"] = [p.tolist() for p in resumed.model.parameters()]
    (root / f"rank{rank}.json").write_text(json.dumps(out))


def _spawn(tmp_path: Path, scenario: str) -> list[dict]:
    for name in ("run", "whole", "cut"):
        (tmp_path / name).mkdir()
    mp.start_processes(
        _worker, (free_port(), str(tmp_path), scenario), nprocs=2, start_method="spawn"
    )
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_non_finite_loss_on_one_rank_makes_every_rank_recover(tmp_path):
    r0, r1 = _spawn(tmp_path, "nan")
    assert r0 == r1  # the same recoveries, history and weights on both ranks
    (event,) = r0["recoveries"]
    assert event["epoch"] == 3 and "non-finite training loss" in event["reason"]
    assert "restored the weights of epoch 2" in event["action"]
    assert r0["stopped"] == "completed"
    log = _lines(tmp_path / "run" / "log.jsonl")
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6]  # rank 0's, once each
    assert log[2]["recovery"][0]["reason"] == event["reason"]


def test_resume_under_ddp_equals_an_uninterrupted_ddp_run(tmp_path):
    r0, r1 = _spawn(tmp_path, "resume")
    assert r0["same_weights"] and r1["same_weights"] and r0["weights"] == r1["weights"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    whole, cut = _lines(tmp_path / "whole" / "log.jsonl"), _lines(tmp_path / "cut" / "log.jsonl")
    assert [r["epoch"] for r in cut] == [1, 2, 3, 4, 5, 6]
    assert strip(whole) == strip(cut)


def test_rank_0_decides_when_the_ranks_bookkeeping_differs(tmp_path):
    """Continue or stop is rank 0's decision on every rank: a rank whose own counters say
    stop trains on with the others instead of leaving them waiting in a collective
    (seen on real data before: one rank early-stopped, the other hung until the timeout)."""
    r0, r1 = _spawn(tmp_path, "diverge")
    assert r0 == r1 == {"epochs": 6, "stopped": "completed"}
