"""Representation learning on the command line: ``train``'s --init, --labelled-fraction
and --semi-supervised flags, and the ``pretrain``, ``embed`` and ``similar`` commands
(each lives with the package it drives; registered on the main parser by ``scandx.cli``)."""

from __future__ import annotations

import argparse
from typing import Any

LEARNING_COMMANDS: tuple[str, ...] = ("pretrain", "embed", "similar")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_train_learning_args(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--init",
        metavar="RUN",
        help="start from a pretrained run's encoder (scandx pretrain): tensors matched by "
        "name and shape, what was loaded is in the plan's notes",
    )
    s.add_argument(
        "--labelled-fraction",
        type=_fraction,
        metavar="F",
        help="keep the labels of this fraction of the training patients (stratified, "
        "seeded); the rest count as unlabelled (label-efficiency experiments)",
    )
    s.add_argument(
        "--semi-supervised",
        choices=("auto", "off"),
        help="use unlabelled cases (an empty label, an unlabelled/ folder) with "
        "pseudo-labels; auto (default): on when the source has unlabelled cases",
    )


def add_learning_commands(sub: Any) -> None:
    """``pretrain``, ``embed``, ``similar``."""
    from scandx.retrieval.cli import add_embed_command, add_similar_command

    _add_pretrain(sub)
    add_embed_command(sub)
    add_similar_command(sub)


def run_learning_command(args: argparse.Namespace) -> int:
    if args.command == "pretrain":
        return _run_pretrain(args)
    if args.command in ("embed", "similar"):
        from scandx.retrieval.cli import run_embed, run_similar

        return (run_embed if args.command == "embed" else run_similar)(args)
    raise ValueError(f"not a learning command: {args.command}")


def _add_pretrain(sub: Any) -> None:
    from scandx.tasks.pretrain.plan import METHODS

    what = (
        "learn an encoder from unlabelled images (labels ignored; the test split never "
        "read) for scandx train --init RUN; --method autoencoder also gives an anomaly "
        "score (scandx predict RUN files...)"
    )
    s = sub.add_parser(
        "pretrain",
        help=what,
        description=what,
        epilog="example: scandx pretrain --data pneumoniamnist.npz --out runs/pre "
        "--method simclr --time-budget 600",
    )
    s.add_argument(
        "--data",
        required=True,
        help="any source scandx train reads (labels ignored), or a plain folder of images",
    )
    s.add_argument("--out", required=True, help="the pretraining run directory")
    s.add_argument(
        "--method",
        choices=METHODS,
        help="simclr (contrastive; the default for classifiers), mae (masked patches; the "
        "default for segmenters) or autoencoder (denoising; gives an anomaly score)",
    )
    s.add_argument(
        "--time-budget",
        type=_budget,
        help="training seconds (default 600, as train's)",
    )
    s.add_argument(
        "--model",
        help="the classifier to pretrain (default: the one scandx train plans for the data "
        "and budget; train --init then needs the same --model)",
    )
    s.add_argument("--seed", type=int, default=0, help="seed for the splits and training")
    s.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        help="force the training precision (default: what this machine does best)",
    )
    s.add_argument("--image-root", help="folder the CSV's paths (or SOPInstanceUIDs) refer to")
    s.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable files, list them in skipped.csv"
    )
    s.add_argument("--resume", action="store_true", help="continue an interrupted run")


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _run_pretrain(args: argparse.Namespace) -> int:
    from scandx.core.run_dir import RunDir
    from scandx.core.task import Options
    from scandx.tasks.pretrain.workflow import pretrain_run

    options = Options(
        time_budget_s=args.time_budget,
        seed=args.seed,
        image_root=args.image_root,
        skip_bad=args.skip_bad,
        resume=args.resume,
        method=args.method,
        precision=args.precision,
        model=args.model,
    )
    with RunDir(args.out).hold(create=True):  # one process at a time per run
        s = pretrain_run(args.data, args.out, options, args.method)
    best = s.get("best") or {}
    loss = best.get("val_loss")
    shown = f", val_loss {loss:.4f}" if isinstance(loss, float) else ""
    print(
        f"pretrained {args.out} ({s.get('method')}): best epoch {best.get('epoch')} of "
        f"{s.get('epochs_run')}{shown}; encoder in {args.out}/model/encoder.safetensors "
        f"(scandx train --init {args.out})"
    )
    return 0
