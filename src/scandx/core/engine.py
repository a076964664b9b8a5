"""The training engine: one loop for every task.

The task supplies a ``TrainingTask``: its network, its loss, the batches of an epoch
and its validation (which returns the metrics to log and a ``score``, higher is
better, or ``None`` on epochs it skips). The engine owns everything else:

- seeding: the network is built after ``torch.manual_seed(seed)`` (a plan's ``init``,
  a pretrained encoder, loaded into it); epoch ``e`` runs after ``torch.manual_seed(seed
  * 100_003 + e)``, the task draws its shuffle and augmentation from ``(seed, e)`` only,
  so resuming replays the remaining epochs bit for bit without saving any RNG state;
- device and precision (``core/device.py``): autocast for the forward pass, gradient
  scaling for fp16 on CUDA, the model and batches on the device;
- AdamW with linear warm-up then cosine decay to 1% of the rate, per step;
- one checkpoint format: ``checkpoints/last.ckpt`` after every epoch (model, optimiser,
  scheduler, scaler, counters, best record), ``best.ckpt`` (the best weights),
  atomic, loaded with ``weights_only=True``; ``--resume`` continues;
- the best epoch: the highest ``score``; one within the task's ``tolerance`` of the
  highest so far is a tie that the later epoch wins (and early stopping counts afresh);
- early stopping after ``patience`` validated epochs without improvement (never
  before ``min_epochs``); ``deadline_s``: when the epochs so far (their median) say
  the schedule would end past the seconds the budget allows (less what the task needs
  after training: ``seconds_after_training``, from the validation passes' measured
  seconds), the cosine schedule is shortened to end in time and no epoch starts past
  it; ``log.jsonl``, one line per epoch, from 1;
- health (``core/health.py``): gradient-norm clipping; recovery from divergence and
  collapse, in the epoch's log line and ``FitResult.recoveries``.

DDP (``core/distributed.py``; torchrun or ``train --nproc``): the model is wrapped in
DistributedDataParallel; the task shards ``batches`` and ``validate`` by ``rank`` and
``world`` (set here) and gathers validation; each step's loss is weighted by the rank's
share of the global batch; the losses (so a non-finite one on any rank), the weights'
health and the epoch's seconds (the slowest rank's) are reduced over ranks, so every
rank makes the same decisions; rank 0 alone writes the run directory.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from scandx.core import distributed as ddp
from scandx.core.checkpoint import load_checkpoint, save_checkpoint
from scandx.core.device import autocast, grad_scaler, guard_cpu_bf16, runtime_device
from scandx.core.health import (
    TrainingDiverged,
    at_chance,
    collapse_reason,
    finite_weights,
    non_finite,
)
from scandx.core.pretrained import apply_plan_init
from scandx.core.run_dir import RunDir
from scandx.core.schedule import Schedule, epoch_seed, lr_factor
from scandx.core.train_log import append_log, epoch_line, read_log, truncate_log
from scandx.core.training_task import DEADLINE_FRACTION, FitResult, Hook, TrainingTask

__all__ = [
    "DEADLINE_FRACTION",
    "FitResult",
    "Hook",
    "Schedule",
    "TrainingTask",
    "epoch_seed",
    "fit",
]

log = logging.getLogger(__name__)

LOOP_ACTIONS = ("train", "end", "early stop", "time budget")  # rank 0 decides for all
NOT_LOGGED = ("score", "constant", "tolerance")  # a validation's keys for the engine only


def fit(
    task: TrainingTask,
    run: RunDir,
    *,
    resume: bool = False,
    hooks: list[Hook] | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """Train ``task`` in ``run``; ``stop_after`` ends this call after that many epochs
    (as an interruption would: a later ``resume`` gives the uninterrupted result)."""
    try:
        return _Fit(task, run, hooks or []).run(resume, stop_after)
    except RuntimeError as e:  # a collective failed: another rank died or hung
        if ddp.active() and ddp.peer_lost(e):
            raise ddp.lost_peer_error(e) from None
        raise


class _Fit:
    """One call of ``fit``: the state of the loop, so recovery can reset it."""

    def __init__(self, task: TrainingTask, run: RunDir, hooks: list[Hook]) -> None:
        self.task, self.run_dir, self.hooks, s = task, run, hooks, task.schedule
        self.device, self.precision = runtime_device(task.device, task.precision)
        self.device = ddp.init(self.device)  # joins the process group under torchrun
        task.rank, task.world, self.main = ddp.rank(), ddp.world_size(), ddp.is_main()
        self.health = task.health
        self.lr_scale, self.streak = 1.0, 0  # streak: validations in a row at chance
        self.val_seconds: list[float] = []  # each validation pass's (this call's)
        self.recoveries: list[dict[str, Any]] = []
        self.model = self._fresh_model()
        self.net = ddp.wrap(self.model, self.device)  # what trains; self.model is saved
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        self.epochs = s.epochs  # fewer when the time budget would not hold them all
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda k: self.lr_scale * lr_factor(k, s.steps_per_epoch * self.epochs, s.warmup_steps),
        )
        self.scaler = grad_scaler(self.device, self.precision)
        self.start, self.best_score, self.bad_epochs = 0, -math.inf, 0
        self.best: dict[str, Any] = {}
        self.best_state: dict[str, torch.Tensor] | None = None

    def _fresh_model(self) -> torch.nn.Module:
        torch.manual_seed(self.task.seed)
        model = self.task.build_model()
        apply_plan_init(model, getattr(self.task, "plan", None))  # train --init RUN
        fmt = torch.channels_last if self.task.schedule.channels_last else torch.preserve_format
        return guard_cpu_bf16(model.to(self.device, memory_format=fmt), self.device, self.precision)

    def _restore(self, ck: dict[str, Any]) -> None:
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.lr_scale = float(ck.get("lr_scale", 1.0))
        self.streak = int(ck.get("chance_streak", 0))
        self.recoveries = json.loads(ck.get("recoveries", "[]"))

    def _set_lr(self) -> None:
        for g, lam in zip(self.opt.param_groups, self.sched.lr_lambdas, strict=True):
            g["lr"] = g["initial_lr"] * lam(self.sched.last_epoch)

    def run(self, resume: bool, stop_after: int | None) -> FitResult:
        s, run = self.task.schedule, self.run_dir
        if resume and run.last_ckpt.exists():
            ck = load_checkpoint(run.last_ckpt)
            self._restore(ck)
            self.start, self.best_score = int(ck["epochs_done"]), float(ck["best_score"])
            self.bad_epochs, self.best = int(ck["bad_epochs"]), json.loads(ck["best_record"])
            if run.best_ckpt.exists():
                self.best_state = load_checkpoint(run.best_ckpt)["model"]
            if self.main:
                truncate_log(run.log_jsonl, self.start)
            log.info("resumed after epoch %d", self.start)
        elif resume:  # killed before the first checkpoint: its log lines are void
            if self.main:
                truncate_log(run.log_jsonl, 0)
            log.info("no checkpoint to resume from; starting at epoch 1")
        ddp.barrier()  # every rank reads the log rank 0 truncated
        history = read_log(run.log_jsonl)
        spent = sum(float(r.get("seconds", 0.0)) for r in history)
        limit = s.epochs if stop_after is None else min(s.epochs, self.start + stop_after)
        end = limit
        t_start, stopped = time.perf_counter(), "completed"
        epoch, pending = self.start, []
        while True:
            action = "train" if epoch < end else "end"
            patient = s.patience is None or self.bad_epochs < s.patience or epoch < s.min_epochs
            if action == "train" and not patient:
                action = "early stop"
            elif action == "train" and s.deadline_s is not None and history:
                per_epoch = float(np.median([r["seconds"] for r in history]))
                val_s = float(np.median(self.val_seconds)) if self.val_seconds else 0.0
                left = s.deadline_s - self.task.seconds_after_training(val_s) - spent
                fits = epoch + int(left // max(per_epoch, 1e-9))
                if fits <= epoch:
                    action = "time budget"
                else:
                    self.epochs = min(s.epochs, fits)  # the cosine schedule ends in time
                    self.task.final_epoch = self.epochs if self.epochs < s.epochs else None
                    end = min(limit, self.epochs)  # may grow back when epochs get faster
                    action = "train" if epoch < end else "end"
            action = LOOP_ACTIONS[ddp.from_rank0(LOOP_ACTIONS.index(action))]  # one decision
            if action == "end":
                break
            if action == "early stop":
                log.info("early stop: %d validated epochs without improvement", self.bad_epochs)
            elif action == "time budget":
                log.info("time budget: %.0fs of %.0fs used, stopping", spent, s.deadline_s)
            if action != "train":
                stopped = action
                break
            t0 = time.perf_counter()
            losses, trouble = self._train_epoch(epoch)
            if trouble is None and ddp.any_rank(not finite_weights(self.model)):
                trouble = "non-finite weights after the epoch"  # a finite loss hid it
            if trouble is None:
                ddp.broadcast_buffers(self.model)
                t_val = time.perf_counter()
                val = self.task.validate(self.model, epoch, self.device, self.precision)
                trouble = None
                if val is not None:
                    self.val_seconds.append(time.perf_counter() - t_val)
                    trouble = collapse_reason(val, self.best_score, self.health, self.streak)
                    chance = at_chance(val, self.best_score, self.health)
                    self.streak = self.streak + 1 if chance else 0
            else:
                val = None
            if trouble is not None:
                event = self._recover(epoch, trouble, diverged=val is None)
                pending.append(event)
                if event["action"].startswith("stopped"):
                    stopped = "unstable"
                    break
                if val is None:  # divergence: the epoch is replayed
                    continue
            seconds = ddp.max_over_ranks(time.perf_counter() - t0)  # the slowest rank's
            record, pending = self._record(epoch, losses, val, seconds, pending), []
            history.append(record)
            spent += record["seconds"]
            if self.main:
                append_log(run.log_jsonl, record)
                self._save_last(epoch)
            log.info(epoch_line(record, s.epochs))
            for hook in self.hooks:
                hook(epoch + 1, record)
            epoch += 1
        if stopped == "completed" and epoch < s.epochs and epoch == self.epochs:
            stopped = "time budget"  # the schedule was shortened to end in time
        if stopped == "time budget" and history and not history[-1]["validated"]:
            self._validate_last(epoch, history[-1])  # a run never ends unvalidated
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        if stopped == "unstable" and self.best_state is None or not finite_weights(self.model):
            raise TrainingDiverged(
                "training diverged (non-finite loss or weights) and never produced a usable "
                f"model, even after lowering the learning rate {len(self.recoveries)} times; "
                "check the images for NaN/Inf values and the plan's lr"
            )
        return FitResult(
            self.model.cpu().eval(),
            self.best or (history[-1] if history else {}),
            history,
            round(time.perf_counter() - t_start, 1),
            self.device,
            self.precision,
            stopped=stopped,
            recoveries=list(self.recoveries),
        )

    def _validate_last(self, epochs_done: int, record: dict[str, Any]) -> None:
        """Validate the last epoch trained (one the task would skip); keep it if best."""
        self.task.final_epoch = epochs_done
        ddp.broadcast_buffers(self.model)
        val = self.task.validate(self.model, epochs_done - 1, self.device, self.precision)
        if val is not None and self._is_best(val):
            logged = {k: v for k, v in val.items() if k not in NOT_LOGGED}
            self._keep_best(val, {**record, **logged, "validated": True, "best": True})

    def _keep_best(self, val: dict[str, Any], record: dict[str, Any]) -> None:
        self.best_score = max(self.best_score, float(val["score"]))  # a tie keeps the highest
        self.bad_epochs, self.best = 0, record
        self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.main:
            save_checkpoint(
                self.run_dir.best_ckpt, {"model": self.best_state, "epoch": int(record["epoch"])}
            )

    def _train_epoch(self, epoch: int) -> tuple[list[float], str | None]:
        """Train one epoch; (losses, None), or (losses so far, why) on divergence. Losses and
        gradient norms stay on the device, read (one sync) every 32 steps and at the end."""
        s, model, opt, scaler = self.task.schedule, self.net, self.opt, self.scaler
        seed = epoch_seed(self.task.seed, epoch)
        torch.manual_seed(seed if self.task.world == 1 else seed * 1024 + self.task.rank)
        model.train()
        losses: list[float] = []
        unread: list[torch.Tensor] = []  # per step: the loss, and its gradient norm if norms
        batches = self.task.batches(epoch, self.device)
        bar = tqdm(batches, f"epoch {epoch + 1}/{s.epochs}", s.steps_per_epoch, False,
                   disable=None if self.main else True)  # fmt: skip
        params = [p for p in self.model.parameters() if p.requires_grad]
        norms = bool(s.grad_clip) and not scaler.is_enabled()  # the scaler skips inf steps
        for i, batch in enumerate((b for part in (bar, [None]) for b in part), 1):
            if batch is not None:
                x, y = (t.to(self.device, non_blocking=True) for t in batch)
                if s.channels_last and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(self.device, self.precision):
                    out = model(x)
                loss = self.task.loss(out.float(), y)
                opt.zero_grad(set_to_none=True)
                world = self.task.world
                scaler.scale(loss * ddp.loss_weight(x, world) if world > 1 else loss).backward()
                unread.append(loss.detach().float())
                if s.grad_clip:
                    scaler.unscale_(opt)
                    norm = torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
                    unread += [norm.to(loss.device, torch.float32)] if norms else []
                scaler.step(opt)
                scaler.update()
                self.sched.step()
            if unread and (i % 32 == 0 or batch is None):
                values, unread = ddp.mean_over_ranks(torch.stack(unread)).tolist(), []
                losses += values[:: 1 + norms]
                bad = [(k % (1 + norms), v) for k, v in enumerate(values) if non_finite(v)]
                if bad:  # the first in step order (a step's loss before its gradient norm)
                    what = ("training loss", "gradient norm")[bad[0][0]]
                    return losses, f"non-finite {what} ({bad[0][1]})"
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}", refresh=False)
        return losses, None

    def _recover(self, epoch: int, why: str, diverged: bool) -> dict[str, Any]:
        """Undo the damage and lower the learning rate; the event for log and notes."""
        h = self.health
        if len(self.recoveries) >= h.max_recoveries:
            action = f"stopped after {len(self.recoveries)} recoveries"
            action += ", keeping the best weights" if self.best_state is not None else ""
            event = {"epoch": epoch + 1, "reason": why, "action": action}
            self.recoveries.append(event)
            log.warning("epoch %d: %s; %s", epoch + 1, why, action)
            return event
        self.lr_scale *= h.lr_drop
        if diverged and self.run_dir.last_ckpt.exists() and epoch > 0:
            scale, recs = self.lr_scale, self.recoveries
            self._restore(load_checkpoint(self.run_dir.last_ckpt))
            self.lr_scale, self.recoveries = scale, recs
            action = f"restored the weights of epoch {epoch}"
        elif diverged:
            self.model.load_state_dict(self._fresh_model().state_dict())
            self.opt.state.clear()
            self.sched.last_epoch = self.task.schedule.steps_per_epoch * epoch
            action = "restarted from the initial weights"
        elif self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            self.opt.state.clear()
            action = f"restored the best weights (epoch {self.best.get('epoch')})"
        else:
            self.opt.state.clear()
            action = "reset the optimiser"
        action += f", learning rate x{self.lr_scale:g}"
        action += ", epoch replayed" if diverged else ""
        self._set_lr()
        self.streak = 0
        event = {"epoch": epoch + 1, "reason": why, "action": action}
        self.recoveries.append(event)
        log.warning("epoch %d: %s -> %s", epoch + 1, why, action)
        return event

    def _record(
        self,
        epoch: int,
        losses: list[float],
        val: dict[str, Any] | None,
        seconds: float,
        events: list[dict[str, Any]],
    ) -> dict[str, Any]:
        improved = (
            val is not None
            and self._is_best(val)
            and not any(e["epoch"] == epoch + 1 and "replayed" not in e["action"] for e in events)
        )
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
        record.update({k: v for k, v in (val or {}).items() if k not in NOT_LOGGED})
        record.update(
            validated=val is not None,
            lr=float(self.opt.param_groups[0]["lr"]),
            seconds=round(seconds, 2),
            best=improved,
        )
        if events:
            record["recovery"] = events
        if improved:
            self._keep_best(val, record)  # type: ignore[arg-type]
        elif val is not None:
            self.bad_epochs += 1
        return record

    def _is_best(self, val: dict[str, Any]) -> bool:
        """Above every score so far, or within the task's tolerance of the highest."""
        score, tolerance = float(val["score"]), float(val.get("tolerance", 0.0))
        return score > self.best_score or (tolerance > 0 and score >= self.best_score - tolerance)

    def _save_last(self, epoch: int) -> None:
        save_checkpoint(
            self.run_dir.last_ckpt,
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epochs_done": epoch + 1,
                "best_score": self.best_score,
                "bad_epochs": self.bad_epochs,
                "best_record": json.dumps(self.best),
                "lr_scale": self.lr_scale,
                "chance_streak": self.streak,
                "recoveries": json.dumps(self.recoveries),
            },
        )
