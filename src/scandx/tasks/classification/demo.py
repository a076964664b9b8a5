"""``scandx demo``: synthetic phantoms -> plan -> train -> evaluate -> predict -> summary.

Everything goes through the same library functions (and file readers) a user's
data would.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

from scandx.core.predictor import predict_run
from scandx.core.privacy import locate
from scandx.core.run_dir import fresh_demo_folder
from scandx.tasks.classification import workflow
from scandx.tasks.classification.data.synthetic import make_phantom_dataset
from scandx.tasks.classification.evaluation.report import metric_rows

log = logging.getLogger(__name__)


def run_demo(
    out: str | Path, time_budget_s: float = 90.0, seed: int = 0, n_patients: int = 400
) -> tuple[dict, str]:
    """Run the whole pipeline on a fresh synthetic data set under ``out``.

    Returns the test metrics and a printable summary table.
    """
    out = fresh_demo_folder(out)
    t0 = time.perf_counter()
    data = make_phantom_dataset(out / "phantoms", n_patients=n_patients, seed=seed)
    log.info("wrote synthetic phantoms (DICOM + PNG) to %s", data)
    run = out / "run"
    summary = workflow.train_run(data, run, time_budget_s=time_budget_s, seed=seed)
    metrics = workflow.evaluate_run(run, data, split="test")
    with open(run / "eval" / "test" / "predictions.csv", newline="") as f:
        refs = [row["file"] for row in csv.DictReader(f)][:2]
    found = locate(refs, under=data)  # outputs name files by keyed reference only
    test_files = [found[r] for r in refs if r in found]
    preds = predict_run(run, test_files, out)  # -> out/predictions.csv
    elapsed = time.perf_counter() - t0
    table = summary_table(metrics, summary, elapsed, run)
    table += f"\npredict on {len(preds)} test file(s) -> {out / 'predictions.csv'}"
    return metrics, table


def summary_table(metrics: dict, summary: dict, elapsed: float, run: Path) -> str:
    lines = [
        "",
        f"scandx demo: synthetic lesion detection, {metrics['cases']} test images "
        f"({metrics['patients']} patients), {summary['epochs_run']} epochs, {elapsed:.0f}s in all",
        f"{'metric':<18} {'value':>7}   95% CI (patient bootstrap)",
        "-" * 52,
    ]
    lines += metric_rows(metrics)
    th = metrics["threshold"].get("positive")
    lines.append(f"operating threshold {th:.3f} (chosen on validation, Youden's J)")
    lines.append(f"run directory: {run}  (plan.json, model/, log.jsonl, eval/test/)")
    lines.append(f"report: {run / 'eval' / 'test' / 'report.html'}")
    return "\n".join(lines)
