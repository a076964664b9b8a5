"""Faithfulness of scandx explanations on synthetic phantoms with known lesions.

    python benchmarks/faithfulness.py                      # 400 patients, 90 s training
    python benchmarks/faithfulness.py --methods gradcam,gradcam++,layercam,occlusion
    python benchmarks/faithfulness.py --out /tmp/f1 --reuse --layers layer1+layer2  # rescore

Trains the default plan on fresh phantoms (as ``scandx demo`` does), then for every
true positive of the test split: pointing game (heatmap maximum inside the lesion
disc of ``lesions.csv``) and deletion (top-10% heatmap pixels vs 10% random pixels
hidden, drop of the lesion probability).
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from scandx.tasks.classification import workflow
from scandx.tasks.classification.data.images import preprocess
from scandx.tasks.classification.data.synthetic import make_phantom_dataset
from scandx.tasks.classification.explain.explain import explain_file
from scandx.tasks.classification.explain.faithfulness import deletion_drops, pointing_hit
from scandx.tasks.classification.inference import Predictor


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--patients", type=int, default=400)
    ap.add_argument("--time-budget", type=float, default=90)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="auto,gradcam,gradcam++,layercam")
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="reuse the run already in --out")
    ap.add_argument("--model", help="override the planned network (default: the plan's)")
    ap.add_argument(
        "--layers",
        default="auto",
        help="'auto' (scandx's rule) or '+'-joined layer names to fuse, e.g. layer1+layer2",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.out or tempfile.mkdtemp(prefix="scandx-faith-"))
    t0 = time.perf_counter()
    run = work / "run"
    if args.reuse and (run / "eval" / "test" / "predictions.csv").exists():
        images = work / "phantoms" / "images"
    else:
        images = make_phantom_dataset(work / "phantoms", n_patients=args.patients, seed=args.seed)
        workflow.train_run(
            images, run, time_budget_s=args.time_budget, seed=args.seed, model=args.model
        )
        workflow.evaluate_run(run, images, split="test", n_boot=200, gallery=0)
    layers = None if args.layers == "auto" else args.layers.split("+")
    with open(work / "phantoms" / "lesions.csv") as f:
        lesions = {str(images / r["path"]): r for r in csv.DictReader(f)}
    with open(run / "eval" / "test" / "predictions.csv") as f:
        tps = [
            r["path"]
            for r in csv.DictReader(f)
            if r["label"] == "lesion" and r["predicted"] == "lesion"
        ]
    predictor = Predictor.from_run(run)

    def score(display: np.ndarray) -> float:
        return float(predictor.probabilities(preprocess(display, predictor.contract)[None])[0, 1])

    print(
        f"\n{len(tps)} true positives on the test split; trained in {time.perf_counter() - t0:.0f}s"
    )
    head = f"{'method':<11} {'layers':<28} {'pointing game':>14} {'drop top-10%':>13}"
    print(f"{head} {'drop random-10%':>16} {'top > random':>13}")
    print("-" * 100)
    for method in args.methods.split(","):
        hits, tops, rands, layer = [], [], [], ""
        for path in tps:
            r = explain_file(predictor, path, method, "lesion", layers)
            les = lesions[path]
            hits.append(
                pointing_hit(r["heatmap"], float(les["cx"]), float(les["cy"]), float(les["radius"]))
            )
            top, rand = deletion_drops(r["display"], r["heatmap"], score)
            tops.append(top)
            rands.append(rand)
            layer = r["layer"]
        better = np.mean(np.array(tops) > np.array(rands))
        if method == "auto":
            method = f"auto:{r['method']}"
        row = f"{method:<11} {layer:<28} {np.mean(hits):>14.1%} {np.mean(tops):>13.3f}"
        print(f"{row} {np.mean(rands):>16.3f} {better:>12.1%}")


if __name__ == "__main__":
    main()
