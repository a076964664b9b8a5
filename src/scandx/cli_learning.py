"""Representation learning on the command line: ``train``'s --init, --labelled-fraction
and --semi-supervised flags, and the ``pretrain``, ``embed`` and ``similar`` commands
(each lives with the package it drives; registered on the main parser by ``scandx.cli``)."""

from __future__ import annotations

import argparse
from typing import Any

LEARNING_COMMANDS: tuple[str, ...] = ("embed", "similar")


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

    add_embed_command(sub)
    add_similar_command(sub)


def run_learning_command(args: argparse.Namespace) -> int:
    if args.command in ("embed", "similar"):
        from scandx.retrieval.cli import run_embed, run_similar

        return (run_embed if args.command == "embed" else run_similar)(args)
    raise ValueError(f"not a learning command: {args.command}")
