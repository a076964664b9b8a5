"""OOD detection: images of other modalities fed to a PneumoniaMNIST model.

    python benchmarks/ood.py --npz ../shared/data/medmnist/pneumoniamnist.npz --time-budget 120

Trains the automatic plan, then scores the PneumoniaMNIST test split (in
distribution) against DRIVE fundus photographs (colour; scandx's predict refuses
colour images for a greyscale model outright, so they are converted to grey here
to measure the score itself) and single-frame CT and MR slices from the pydicom
data. Prints the AUROC of the OOD score for each set and the share flagged at the
threshold fitted on validation, and beside them the same for the reconstruction error of
a convolutional autoencoder pretrained on the same images (``scandx pretrain --method
autoencoder``, its own budget ``--ae-time-budget``, default the classifier's) over the
same held-out images.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from scandx.core.run_dir import RunDir
from scandx.core.task import Options
from scandx.data.readers import read_image
from scandx.errors import BadImageError
from scandx.tasks.classification import workflow
from scandx.tasks.classification.data.images import preprocess, read_case
from scandx.tasks.classification.data.sources import load_source
from scandx.tasks.classification.evaluation.metrics import roc_auc
from scandx.tasks.classification.inference import Predictor
from scandx.tasks.pretrain.anomaly import AnomalyPredictor
from scandx.tasks.pretrain.workflow import pretrain_run

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def grey(arr: np.ndarray) -> np.ndarray:
    if arr.shape[0] == 3:
        return (0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2])[None].astype(np.float32)
    return arr


def scores(p: Predictor, arrays: list[np.ndarray]) -> np.ndarray:
    x = torch.stack([preprocess(grey(a), p.contract) for a in arrays])
    return p.ood_scores(x)


def ae_errors(p: AnomalyPredictor, arrays: list[np.ndarray]) -> np.ndarray:
    x = torch.stack([preprocess(grey(a), p.contract) for a in arrays])
    return p.errors(x)


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    return roc_auc(np.r_[np.zeros(len(inside)), np.ones(len(outside))], np.r_[inside, outside])


def dicom_slices(modality: str) -> list[np.ndarray]:
    out = []
    for f in sorted((SHARED / "dicom").rglob("*")):
        if not f.is_file() or f.suffix.lower() not in (".dcm", ""):
            continue
        try:
            arr, meta = read_image(f)
        except BadImageError:
            continue
        if meta.get("modality") == modality and arr.ndim == 3 and min(arr.shape[1:]) >= 16:
            out.append(arr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--npz", required=True)
    ap.add_argument("--time-budget", type=float, default=120)
    ap.add_argument("--ae-time-budget", type=float, help="autoencoder (default: --time-budget)")
    ap.add_argument("--out")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(args.out or tempfile.mkdtemp(prefix="scandx-ood-"))
    run = root / "run"
    workflow.train_run(args.npz, run, time_budget_s=args.time_budget)
    p = Predictor.from_run(run)
    ae_budget = args.ae_time_budget or args.time_budget
    pretrain_run(args.npz, root / "ae", Options(time_budget_s=ae_budget), "autoencoder")
    ae = AnomalyPredictor.from_run(RunDir(root / "ae"))
    threshold = p.info["ood"]["threshold"]
    test_arrays = [read_case(c) for c in load_source(args.npz).in_split("test")]
    inside = scores(p, test_arrays)
    inside_ae = ae_errors(ae, test_arrays)
    sets = {
        "DRIVE fundus (grey)": [
            read_image(f)[0] for f in sorted((SHARED / "drive").rglob("images/*.tif"))
        ],
        "CT slices (pydicom data)": dicom_slices("CT"),
        "MR slices (pydicom data)": dicom_slices("MR"),
    }
    net = ae.info["network"]
    print(
        f"\nclassifier {p.info['model']} {p.info['input']['size']}, OOD score flagged above "
        f"{threshold:.2f}; autoencoder over {net['model']} {net['input_size']}, "
        f"reconstruction error flagged above {ae.threshold:.4f} (both fitted on validation)"
    )
    head = (
        f"{'images':<28} {'n':>5} {'OOD AUROC':>10} {'flagged':>8} {'AE AUROC':>9} {'flagged':>8}"
    )
    print(head)
    print("-" * len(head))
    flagged_in = np.mean(inside > threshold)
    ae_in = np.mean(inside_ae > ae.threshold)
    name = "PneumoniaMNIST test (in)"
    print(f"{name:<28} {len(inside):>5} {'-':>10} {flagged_in:>8.1%} {'-':>9} {ae_in:>8.1%}")
    for name, arrays in sets.items():
        s, e = scores(p, arrays), ae_errors(ae, arrays)
        print(
            f"{name:<28} {len(s):>5} {auroc(inside, s):>10.3f} {np.mean(s > threshold):>8.1%} "
            f"{auroc(inside_ae, e):>9.3f} {np.mean(e > ae.threshold):>8.1%}"
        )


if __name__ == "__main__":
    main()
