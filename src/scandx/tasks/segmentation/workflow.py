"""Segmentation steps: train, evaluate, predict, in the same run-directory layout as
classification (plan.json, manifest, checkpoints/, log.jsonl, model/, eval/<split>/)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from scandx import __version__
from scandx.errors import ScandxError
from scandx.tasks.classification.inference.model_io import sha256
from scandx.tasks.classification.runs import write_skipped
from scandx.tasks.segmentation.infer import normalize, predict_case, predict_probabilities
from scandx.tasks.segmentation.metrics import case_metrics, summarize
from scandx.tasks.segmentation.plan import SegPlan, make_seg_plan, seg_fingerprint
from scandx.tasks.segmentation.postprocess import choose_components, choose_threshold, label_map
from scandx.tasks.segmentation.report import (
    case_panel,
    case_score,
    pick_gallery,
    seg_model_card,
    write_seg_model_card,
    write_seg_report,
)
from scandx.tasks.segmentation.sources import SegCase, SegManifest, load_seg_source
from scandx.tasks.segmentation.train import SegData, build_seg_model, fit_segmentation
from scandx.tasks.segmentation.volumes import Loaded, read_case_arrays, resample

log = logging.getLogger(__name__)


def assign_seg_splits(manifest: SegManifest, val_fraction: float, seed: int) -> None:
    """Unsplit labelled cases -> train/val by patient (seeded); given splits are kept."""
    free = sorted({c.patient_id for c in manifest.cases if not c.split and c.label})
    has_val = any(c.split == "val" for c in manifest.cases)
    if not has_val:
        pool = free or sorted({c.patient_id for c in manifest.cases if c.split == "train"})
        rng = np.random.default_rng(seed)
        n_val = max(1, round(val_fraction * len(pool))) if len(pool) > 1 else 0
        val = set(rng.permutation(pool)[:n_val].tolist())
        for c in manifest.cases:
            if c.patient_id in val and c.split in ("", "train"):
                c.split = "val"
    for c in manifest.cases:
        if not c.split:
            c.split = "train" if c.label else "test"
    if not manifest.in_split("train"):
        raise ScandxError("no training cases left after the validation split", manifest.source)
    if not manifest.in_split("val"):
        raise ScandxError(
            "need at least 2 labelled training patients (one is held out to choose the "
            "checkpoint, threshold and post-processing)",
            manifest.source,
        )


def read_cases(
    cases: list[SegCase], manifest: SegManifest, skip_bad: bool = False
) -> Iterator[tuple[SegCase, Loaded]]:
    """Each case read and checked, one at a time; with ``skip_bad`` a case that fails is
    listed in ``manifest.skipped`` instead of ending the run."""
    for c in cases:
        try:
            loaded = read_case_arrays(c, manifest.labels)
        except ScandxError as e:
            if not skip_bad:
                raise
            manifest.skipped.append((c.case_id, e.reason))
            continue
        yield c, loaded


def load_split(
    cases: list[SegCase], manifest: SegManifest, plan: SegPlan, skip_bad: bool = False
) -> SegData:
    """Cases read, normalised and resampled as the plan says (training and validation),
    one at a time, so only the prepared arrays stay in memory."""
    images, labels, fovs = [], [], []
    for _, r in read_cases(cases, manifest, skip_bad):
        img, lab, fov = normalize(r.image, plan, r.fov), r.label, r.fov
        if plan.target_spacing and tuple(r.spacing) != tuple(plan.target_spacing):
            img = resample(img, r.spacing, plan.target_spacing, label=False)
            lab = resample(lab, r.spacing, plan.target_spacing, label=True)
            fov = None if fov is None else resample(fov, r.spacing, plan.target_spacing, True)
        images.append(img)
        labels.append(lab)
        fovs.append(fov)
    if cases and not images:
        split = cases[0].split
        raise ScandxError(f"every {split} case was skipped as unusable", manifest.source)
    return SegData(images, labels, fovs)  # type: ignore[arg-type]


def seg_plan_run(
    data: str | Path,
    out: str | Path,
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    dims: int | None = None,
    skip_bad: bool = False,
    memory_budget_gb: float | None = None,
) -> SegPlan:
    manifest = load_seg_source(data)
    assign_seg_splits(manifest, 0.2, seed)
    fp = seg_fingerprint(manifest, skip_bad=skip_bad)
    plan = make_seg_plan(
        manifest,
        fp,
        time_budget_s=time_budget_s,
        seed=seed,
        dims=dims,
        memory_budget_gb=memory_budget_gb,
    )
    Path(out).mkdir(parents=True, exist_ok=True)
    plan.save(Path(out) / "plan.json")
    write_skipped(Path(out), manifest.skipped)
    return plan


def seg_train_run(
    data: str | Path,
    out: str | Path,
    *,
    time_budget_s: float | None = None,
    seed: int | None = None,
    resume: bool = False,
    plan_path: str | Path | None = None,
    dims: int | None = None,
    skip_bad: bool = False,
    memory_budget_gb: float | None = None,
) -> dict[str, Any]:
    """Plan (unless resuming or given ``plan_path``), train, choose post-processing and
    save the model; ``dims`` (2 or 3) overrides the planner's 2D/3D choice; ``skip_bad``
    leaves out unusable cases (listed in RUN/skipped.csv)."""
    out = Path(out)
    resuming = resume and (out / "checkpoints" / "last.ckpt").exists()
    if not resume and any((out / d).exists() for d in ("model", "checkpoints")):
        raise ScandxError("run directory already holds a run; use --resume or a new --out", out)
    manifest = load_seg_source(data)
    if resuming or plan_path:
        plan = SegPlan.load(out / "plan.json" if resuming else plan_path)  # type: ignore[arg-type]
        if seed is not None:
            plan.seed = seed
    else:
        plan = None
    run_seed = plan.seed if plan else (seed or 0)
    assign_seg_splits(manifest, plan.val_fraction if plan else 0.2, run_seed)
    if plan is None:
        plan = make_seg_plan(
            manifest,
            seg_fingerprint(manifest, skip_bad=skip_bad),
            time_budget_s=time_budget_s,
            seed=run_seed,
            dims=dims,
            memory_budget_gb=memory_budget_gb,
        )
    return train_prepared(manifest, plan, out, resuming=resuming, skip_bad=skip_bad)


def train_prepared(
    manifest: SegManifest,
    plan: SegPlan,
    out: Path,
    *,
    resuming: bool = False,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Train on the manifest's train split, select on its val split, save the model and
    post-processing in ``out`` (a single run, or one fold of ``train --folds``)."""
    train = load_split(manifest.in_split("train"), manifest, plan, skip_bad)
    val = load_split(manifest.in_split("val"), manifest, plan, skip_bad)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        if not resuming:
            plan.save(out / "plan.json")
            save_cases(out / "cases.json", manifest)
            write_skipped(out, manifest.skipped)
        t0 = time.perf_counter()
        result = fit_segmentation(plan, train, val, out, resume=resuming)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        if created and not (out / "checkpoints" / "last.ckpt").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
    model = result["model"]
    threshold, post = choose_postprocessing(model, val, plan)
    info = save_seg_model(
        out / "model", model, plan, post, result["best"], manifest, threshold=threshold
    )
    summary = {
        "run": str(out),
        "best": result["best"],
        "train_seconds": round(time.perf_counter() - t0, 1),
        "postprocessing": post,
        "threshold": threshold,
        "sha256": info["sha256"],
        "cases": manifest.summary(),
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_seg_model_card(out)
    return summary


def choose_postprocessing(
    model: torch.nn.Module, val: SegData, plan: SegPlan
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(binary threshold or None, per-class component rules), both chosen on the
    validation cases (postprocess.py)."""
    preds, fg = [], []
    for img, fov in zip(val.images, val.fovs, strict=True):
        probs = predict_probabilities(model, img, plan, fov=fov)
        if plan.n_classes == 2:
            fg.append(probs[1])
        preds.append(probs.argmax(0))
    threshold = choose_threshold(fg, val.labels, val.fovs) if plan.n_classes == 2 else None
    if threshold:
        preds = [(p >= threshold["value"]).astype(np.int64) for p in fg]
    return threshold, choose_components(preds, val.labels, val.fovs, plan.n_classes)


def save_seg_model(
    model_dir: Path,
    model: torch.nn.Module,
    plan: SegPlan,
    post: dict,
    best: dict,
    manifest: SegManifest,
    threshold: dict[str, Any] | None = None,
) -> dict[str, Any]:
    model_dir.mkdir(parents=True, exist_ok=True)
    weights = model_dir / "weights.safetensors"
    save_model(model, str(weights))  # DynUNet shares tensors between submodules
    info = {
        "format": "scandx-segmentation/1",
        "scandx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": "segmentation",
        "labels": plan.labels,
        "model": plan.model,
        "spatial_dims": plan.spatial_dims,
        "slice_axis": plan.slice_axis,
        "in_channels": plan.in_channels,
        "postprocessing": post,
        "threshold": threshold,  # binary tasks: foreground probability cut, chosen on val
        "best_epoch": best.get("epoch"),
        "val_dice": best.get("val_dice"),
        "training_data": manifest.summary(),
        "weights": weights.name,
        "sha256": sha256(weights),
    }
    (model_dir / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_seg_run(run: Path) -> tuple[torch.nn.Module, SegPlan, dict[str, Any]]:
    """(model, plan, model.json) of a run; a ``train --folds`` run gives the ensemble of
    its fold models (mean of their softmax probabilities)."""
    info_path = run / "model" / "model.json"
    if not info_path.exists():
        raise ScandxError("no trained model here (model/model.json missing)", run)
    info = json.loads(info_path.read_text())
    plan = SegPlan.load(run / "plan.json")
    members = []
    for rel, digest in zip(
        info.get("ensemble") or [info["weights"]],
        info.get("member_sha256") or [info["sha256"]],
        strict=True,
    ):
        weights = run / "model" / rel
        if not weights.exists() or sha256(weights) != digest:
            raise ScandxError("model weights missing or not matching model.json", weights)
        model = build_seg_model(plan)
        load_model(model, str(weights))
        members.append(model.eval())
    return (members[0] if len(members) == 1 else SegEnsemble(members)).eval(), plan, info


class SegEnsemble(torch.nn.Module):
    """Members' mean softmax probabilities, returned as log-probabilities so that the
    softmax applied by inference gives back that mean."""

    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([torch.softmax(m(x).float(), 1) for m in self.members]).mean(0)
        return torch.log(mean.clamp_min(1e-12))


def is_seg_run(run: str | Path) -> bool:
    p = Path(run) / "plan.json"
    return p.exists() and json.loads(p.read_text()).get("task") == "segmentation"


def seg_evaluate_run(
    run: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    n_boot: int = 1000,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Metrics and predicted masks of one split, written to RUN/eval/<split>/ only once
    every case is done (a failure leaves the previous evaluation, if any, untouched)."""
    run = Path(run)
    model, plan, info = load_seg_run(run)
    manifest = load_seg_source(data)
    manifest.labels = {int(k): v for k, v in plan.labels.items()}
    _apply_saved_splits(manifest, run / "cases.json")
    listed = [c for c in manifest.in_split(split) if c.label]
    if not listed:
        raise ScandxError(f"no labelled cases in split {split!r}", data)
    labels = manifest.labels
    out = run / "eval" / split
    partial = out.with_name(f".{split}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    masks_dir = partial / "masks"
    masks_dir.mkdir(parents=True)
    per_case, cases, panels = [], [], {}
    try:
        for c, r in read_cases(listed, manifest, skip_bad):
            probs = predict_case(model, r, plan)
            pred = label_map(probs, info["postprocessing"], info.get("threshold"))
            per_case.append(
                case_metrics(pred, r.label, labels, r.spacing, probs, r.fov, plan.regions)
            )
            write_mask(masks_dir, c, pred, r, labels)
            panels[c.case_id] = case_panel(r.image, r.label, pred, r.fov, r.affine)
            cases.append(c)
        if not cases:
            raise ScandxError(f"no usable cases in split {split!r}", data)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    metrics = {
        "split": split,
        "cases": len(cases),
        "skipped": len(manifest.skipped),
        "task": "segmentation",
        "labels": plan.labels,
        "field_of_view": bool(plan.use_fov),
        "regions": plan.regions,
        **summarize(
            per_case,
            [c.case_id for c in cases],
            [c.patient_id for c in cases],
            n_boot,
            regions=list(plan.regions),
        ),
        "postprocessing": info["postprocessing"],
        "threshold": info.get("threshold"),
    }
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_skipped(partial, manifest.skipped)
    scores = {c: case_score(v, list(plan.regions)) for c, v in metrics["per_case"].items()}
    gallery = [(g, c, scores[c], panels[c]) for g, c in pick_gallery(scores)]
    card = seg_model_card(run, {split: metrics})
    write_seg_report(partial / "report.html", metrics, info, plan.notes, gallery, card, run.name)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    write_seg_model_card(run)
    return metrics


def write_mask(
    folder: Path,
    case: SegCase,
    pred: np.ndarray,
    loaded: Loaded,
    labels: dict[int, str] | None = None,
) -> Path:
    """The predicted label map in the input's geometry: NIfTI with the image's affine for
    NIfTI and DICOM-series inputs (the latter also as a DICOM SEG referencing the
    series), else PNG (labels scaled to 0..255 for a binary task)."""
    name = case.case_id.replace("/", "_")
    if loaded.affine is not None:  # NIfTI or DICOM series: NIfTI with the same affine
        import nibabel as nib

        path = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(pred.astype(np.uint8), loaded.affine), str(path))
        if Path(case.images[0]).is_dir():  # DICOM in, DICOM out: also a SEG on the series
            from scandx.tasks.segmentation.dicom_seg import write_dicom_seg

            write_dicom_seg(
                Path(case.images[0]), pred, labels or {1: "foreground"}, folder / f"{name}.seg.dcm"
            )
        return path
    from PIL import Image

    path = folder / f"{name}.png"
    scale = 255 if pred.max() <= 1 else 1
    Image.fromarray((pred * scale).astype(np.uint8)).save(path)
    return path


def seg_predict_run(
    run: str | Path, files: list[str | Path], out_dir: str | Path, skip_bad: bool = False
) -> list[dict]:
    """A mask per input file (or DICOM series folder) in ``out_dir``; with ``skip_bad`` an
    unusable input is listed in ``out_dir/skipped.csv`` instead of ending the run."""
    run, out_dir = Path(run), Path(out_dir)
    model, plan, info = load_seg_run(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, skipped = [], []
    for f in files:
        case = SegCase(Path(str(f)).name.split(".")[0], [str(f)], None)
        try:
            r = read_case_arrays(case)
            if r.image.shape[0] != plan.in_channels or r.image.ndim - 1 != plan.data_dims:
                raise ScandxError(
                    f"image has {r.image.shape[0]} channel(s) and {r.image.ndim - 1} "
                    f"dimensions; the model expects {plan.in_channels} and {plan.data_dims}",
                    f,
                )
        except ScandxError as e:
            if not skip_bad:
                raise
            skipped.append((str(f), e.reason))
            continue
        probs = predict_case(model, r, plan)
        pred = label_map(probs, info["postprocessing"], info.get("threshold"))
        path = write_mask(out_dir, case, pred, r, {int(k): v for k, v in plan.labels.items()})
        rows.append(
            {
                "path": str(f),
                "mask": str(path),
                **{
                    f"fraction_{v}": float((pred == int(k)).mean())
                    for k, v in plan.labels.items()
                    if k != "0"
                },
            }
        )
    write_skipped(out_dir, skipped)
    return rows


def save_cases(path: Path, manifest: SegManifest) -> None:
    path.write_text(
        json.dumps(
            {
                "labels": {str(k): v for k, v in manifest.labels.items()},
                "cases": [{"case_id": c.case_id, "split": c.split} for c in manifest.cases],
            },
            indent=2,
        )
        + "\n"
    )


def _apply_saved_splits(manifest: SegManifest, path: Path) -> None:
    if not path.exists():
        return
    saved = {c["case_id"]: c["split"] for c in json.loads(path.read_text())["cases"]}
    for c in manifest.cases:
        c.split = saved.get(c.case_id, c.split or "external")
