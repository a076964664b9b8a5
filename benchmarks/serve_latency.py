"""Single-image serving latency: eager PyTorch against ONNX Runtime, through the Predictor.

    .venv/bin/python benchmarks/serve_latency.py                 # trains two tiny models
    .venv/bin/python benchmarks/serve_latency.py --repeats 5     # a quick end-to-end check
    .venv/bin/python benchmarks/serve_latency.py --class-run RUN --seg-run RUN \\
        --class-input IMG --seg-input IMG

What a server does per request, timed: ``predictor.score([predictor.prepare(path)])``
on one input file (read, preprocess, network, and the task's own work around it: for a
classifier calibration, 8 test-time augmentations for the uncertainty and the OOD
score; for a segmenter sliding windows, the plan's flips and post-processing). The two
Predictors are the same class, loaded once as ``serve`` does
(``load_predictor(run, runtime=...)``), the ONNX one from ``scandx export`` (made here
when the run has none). The runtimes alternate request by request, so load on a shared
machine falls on both alike; ``--warmup`` requests each are not timed.

Printed: the CPU (``lscpu`` model name, whether it has native bf16; inference runs in
fp32 either way), threads, torch and onnxruntime versions, the commit, then a markdown
table per model: p50 and p99 latency (ms) and throughput (images/s, one request after
another: requests / total time).

Without ``--class-run``/``--seg-run`` it trains tiny models in a temporary folder: a
``simple-cnn`` (``--class-model``) on 32 px phantoms and a DynUNet on small synthetic
ellipsoids (``--seg-dims 3d``, or 2D ellipses), for a few seconds each. Figures need a
quiet machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from machine import commit, cpu_model  # noqa: E402

from scandx.cli import main as scandx  # noqa: E402
from scandx.core.predictor import load_predictor  # noqa: E402
from scandx.export.onnx_export import EXPORT_JSON, default_export_dir, export_onnx  # noqa: E402


def train_classifier(tmp: Path, model: str, size: int) -> tuple[Path, Path]:
    from scandx.tasks.classification.data.synthetic import make_phantom_dataset

    data = make_phantom_dataset(tmp / "phantoms", n_patients=40, size=size, seed=1)
    run = tmp / "class-run"
    args = ["-q", "train", "--data", str(data), "--out", str(run), "--time-budget", "8"]
    if scandx([*args, "--model", model]) != 0:
        raise SystemExit("training the classifier failed")
    return run, sorted(data.rglob("*.png"))[0]


def train_segmenter(tmp: Path, dims: str) -> tuple[Path, Path]:
    from scandx.tasks.segmentation.synthetic import make_ellipse_folders, make_ellipsoid_decathlon

    if dims == "3d":
        data = make_ellipsoid_decathlon(tmp / "seg-data", n_train=6, n_test=1)
        image = sorted((data / "imagesTs").glob("*.nii.gz"))[0]
    else:
        data = make_ellipse_folders(tmp / "seg-data", n=8, size=96)
        image = sorted((data / "images").iterdir())[0]
    if scandx(["-q", "plan", "--data", str(data), "--out", str(tmp / "seg-plan")]) != 0:
        raise SystemExit("planning the segmenter failed")
    plan_path = tmp / "seg-plan" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan.update(epochs=2, steps_per_epoch=5, val_every=2)  # latency, not accuracy
    plan_path.write_text(json.dumps(plan))
    run = tmp / "seg-run"
    args = ["-q", "train", "--data", str(data), "--out", str(run), "--plan", str(plan_path)]
    if scandx(args) != 0:
        raise SystemExit("training the segmenter failed")
    return run, image


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def measure(run: Path, path: Path, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per request for each runtime, alternating request by request."""
    record = default_export_dir(run) / EXPORT_JSON
    if not record.is_file():
        export_onnx(run)
    predictors = {rt: load_predictor(run, runtime=rt) for rt in ("torch", "onnx")}
    times: dict[str, list[float]] = {rt: [] for rt in predictors}
    for i in range(warmup + repeats):
        for rt, p in predictors.items():
            t = time.perf_counter()
            p.score([p.prepare(path)])
            if i >= warmup:
                times[rt].append(time.perf_counter() - t)
    return times


def table(name: str, times: dict[str, list[float]]) -> str:
    rows = [
        f"| {name} | runtime | p50 ms | p99 ms | images/s |",
        "|---|---|---:|---:|---:|",
    ]
    label = {"torch": "eager PyTorch", "onnx": "ONNX Runtime"}
    for rt, t in times.items():
        rows.append(
            f"| | {label[rt]} | {percentile(t, 0.5) * 1e3:.1f} | {percentile(t, 0.99) * 1e3:.1f} "
            f"| {len(t) / sum(t):.1f} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--class-run", type=Path, help="a trained classification run")
    ap.add_argument("--class-input", type=Path, help="its input image (default: a phantom)")
    ap.add_argument("--seg-run", type=Path, help="a trained segmentation run")
    ap.add_argument("--seg-input", type=Path, help="its input image or volume")
    ap.add_argument("--class-model", default="simple-cnn", help="network of the tiny classifier")
    ap.add_argument("--class-size", type=int, default=32, help="phantom size of the classifier")
    ap.add_argument("--seg-dims", choices=("2d", "3d"), default="3d")
    ap.add_argument("--repeats", type=int, default=200, help="timed requests per runtime")
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for run, image, flag in [
        (args.class_run, args.class_input, "--class"),
        (args.seg_run, args.seg_input, "--seg"),
    ]:
        if (run is None) != (image is None):
            ap.error(f"{flag}-run and {flag}-input go together")

    import onnxruntime
    import torch

    from scandx.core.device import cpu_has_bf16

    bf16 = "native bf16" if cpu_has_bf16() else "no native bf16"
    print(f"CPU: {cpu_model()} ({bf16}; inference in fp32), {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, commit {commit()}")
    print(f"{args.repeats} timed requests per runtime after {args.warmup} warm-up, alternating\n")
    with tempfile.TemporaryDirectory(prefix="scandx-serve-latency-") as tmp:
        cases = []
        if args.class_run is None:
            run, image = train_classifier(Path(tmp), args.class_model, args.class_size)
            cases.append((f"classifier ({args.class_model}, tiny)", run, image))
        else:
            cases.append(("classifier", args.class_run, args.class_input))
        if args.seg_run is None:
            run, image = train_segmenter(Path(tmp), args.seg_dims)
            cases.append((f"segmenter (DynUNet {args.seg_dims}, tiny)", run, image))
        else:
            cases.append(("segmenter", args.seg_run, args.seg_input))
        for name, run, image in cases:
            print(table(name, measure(run, image, args.repeats, args.warmup)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
