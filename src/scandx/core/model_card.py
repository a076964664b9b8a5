"""The model-card skeleton every task fills: ``RUN/model/model_card.md``.

The card is written from the run's own files (``model/model.json``, ``plan.json``,
``eval/*/metrics.json``, ``skipped.csv``); nothing is typed in by hand. The skeleton
owns the common headings, in this order, and the lines every run has:

- Model details: task, network, weights and their sha256, scandx version, creation time;
- Intended use; Training data (with the files skipped as unusable);
- Evaluation ("Not evaluated yet" until ``scandx evaluate`` has run);
- Limitations; How to reproduce (``plan.json``, seed, the commands).

A task gives a *section builder*: a function of (model.json, plan.json,
{split: metrics.json}) returning :class:`CardSections`, its own lines for each common
heading plus any headings of its own (before or after Evaluation, or at the end).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scandx.core.report import write_text_atomic

log = logging.getLogger(__name__)

CARD_NAME = "model_card.md"
HEADINGS = (
    "Model details",
    "Intended use",
    "Training data",
    "Evaluation",
    "Limitations",
    "How to reproduce",
)
COMMON_USE = (
    "- Research use only: not a medical device and not validated for clinical decisions; "
    "a qualified reader decides."
)

Section = tuple[str, list[str]]  # (heading, markdown lines)


@dataclass
class CardSections:
    """What a task adds to the skeleton; every list holds markdown lines."""

    task: str  # "binary classification of normal, lesion (positive class: lesion)"
    network: str  # "resnet18, 2D, 1 input channel(s), input [64, 64] (resize)"
    details: list[str] = field(default_factory=list)  # preprocessing, training, decision
    intended_use: list[str] = field(default_factory=list)
    training_data: list[str] = field(default_factory=list)
    evaluation: list[str] = field(default_factory=list)  # used once a split is evaluated
    limitations: list[str] = field(default_factory=list)
    before_evaluation: list[Section] = field(default_factory=list)  # e.g. cross-validation
    after_evaluation: list[Section] = field(default_factory=list)  # e.g. calibration
    appendix: list[Section] = field(default_factory=list)  # e.g. a reporting checklist


SectionBuilder = Callable[[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]], CardSections]


def card_path(run: Path) -> Path:
    """Where a run's model card lives, for every task."""
    return Path(run) / "model" / CARD_NAME


def read_run_files(run: Path) -> tuple[dict, dict, dict[str, dict]]:
    """(model.json, plan.json, {split: metrics.json}) of a run; hidden folders (an
    evaluation being written) are left out."""
    run = Path(run)
    info = json.loads((run / "model" / "model.json").read_text())
    plan = json.loads((run / "plan.json").read_text())
    evals = {
        p.parent.name: json.loads(p.read_text())
        for p in sorted((run / "eval").glob("*/metrics.json"))
        if not p.parent.name.startswith(".")
    }
    return info, plan, evals


def skipped_count(run: Path) -> int:
    """Rows of ``RUN/skipped.csv`` (files left out as unusable), 0 when there is none."""
    path = Path(run) / "skipped.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def weights_lines(info: dict[str, Any]) -> list[str]:
    """The weights (or ensemble members) with their sha256, version and creation time."""
    if info.get("ensemble"):
        members = info.get("member_sha256") or []
        lines = [
            f"- Weights: ensemble of {len(info['ensemble'])} members "
            f"({', '.join(info['ensemble'])}); member sha256 "
            f"{', '.join(s[:12] for s in members)}; combined sha256 {info.get('sha256', '?')}"
        ]
    else:
        lines = [f"- Weights: model/{info['weights']}, sha256 {info['sha256']}"]
    return lines + [
        f"- Version: scandx {info.get('scandx_version', '?')}",
        f"- Created: {info.get('created', '?')}",
    ]


def reproduce_lines(run_name: str, info: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """How to train the same model again from ``plan.json`` and check the result."""
    cv = info.get("cross_validation") or {}
    folds = f" --folds {cv['folds']}" if cv.get("folds") else ""
    return [
        f"- Every training setting is in `RUN/plan.json` (RUN: this run's folder, {run_name}; "
        f"seed {plan.get('seed', '?')}).",
        f"- Train again: `scandx train --data SRC --out NEW_RUN --plan RUN/plan.json{folds}`, "
        "with SRC the training data named above.",
        "- Evaluate: `scandx evaluate NEW_RUN --data SRC --split test`; compare with the "
        "Evaluation above (GPU kernels and time budgets can change the result slightly).",
        "- Check the weights: `sha256sum` of the files named in Model details.",
    ]


def render_model_card(
    run_name: str,
    info: dict[str, Any],
    plan: dict[str, Any],
    evals: dict[str, dict[str, Any]],
    sections: CardSections,
    skipped: int = 0,
) -> str:
    """The card's markdown: the common headings (``HEADINGS``) in order, with the
    task's sections slotted in."""
    lines = [f"# Model card: {run_name}", "", "## Model details"]
    lines += [f"- Task: {sections.task}", f"- Network: {sections.network}"]
    lines += sections.details + weights_lines(info)
    lines += ["", "## Intended use", COMMON_USE, *sections.intended_use]
    lines += ["", "## Training data", *sections.training_data]
    listed = " (listed in skipped.csv)" if skipped else ""
    lines += ["", f"- Files skipped as unusable: {skipped}{listed}", ""]
    lines += _sections(sections.before_evaluation)
    lines += ["## Evaluation", ""]
    if evals:
        lines += sections.evaluation
    else:
        lines.append("Not evaluated yet: run `scandx evaluate RUN --data SRC --split test`.")
    lines.append("")
    lines += _sections(sections.after_evaluation)
    lines += ["## Limitations", *sections.limitations, ""]
    lines += ["## How to reproduce", *reproduce_lines(run_name, info, plan), ""]
    lines += _sections(sections.appendix)
    return "\n".join(lines).rstrip("\n") + "\n"


def model_card_text(
    run: Path, build: SectionBuilder, current: dict[str, dict[str, Any]] | None = None
) -> str:
    """A run's card from its files, with ``current`` ({split: metrics}) standing in for an
    evaluation not yet in place; ``build`` gives the task's sections."""
    run = Path(run)
    info, plan, evals = read_run_files(run)
    evals.update(current or {})
    sections = build(info, plan, evals)
    return render_model_card(run.name, info, plan, evals, sections, skipped_count(run))


def write_model_card(run: Path, build: SectionBuilder) -> Path:
    """Write ``RUN/model/model_card.md`` (atomically) and return its path."""
    path = write_text_atomic(card_path(run), model_card_text(run, build))
    log.debug("wrote %s", path)
    return path


def _sections(sections: list[Section]) -> list[str]:
    lines: list[str] = []
    for heading, body in sections:
        lines += [f"## {heading}", *body, ""]
    return lines
