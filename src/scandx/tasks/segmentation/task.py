"""Segmentation as a task of the shared core: organs, lesions and vessels in 2D images
and 3D volumes, planned like nnU-Net (``core/task.py`` says what each method is for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scandx.core.run_dir import RunDir
from scandx.core.task import Options, Task
from scandx.errors import ScandxError
from scandx.tasks.segmentation import cross_validation as cv
from scandx.tasks.segmentation.plan import SegPlan

METRICS = ("dice", "hd95", "nsd", "auc")


class SegmentationTask(Task):
    name = "segmentation"
    plan_type = SegPlan
    plan_tasks = ("segmentation",)
    unsupported = {
        "image_root": "segmentation layouts name their own files (a CSV table's paths "
        "are relative to the table)",
        "subgroups": "segmentation metrics are reported per class and region, not per "
        "metadata subgroup (not implemented)",
        "positive_class": "segmentation classes are the mask's labels; background is label 0",
        "semi_supervised": "segmentation trains on its labelled cases only (a pretrained "
        "encoder, --init, is how unlabelled volumes help it)",
    }

    def recognises(self, data: str | Path) -> bool:
        from scandx.tasks.segmentation.sources import is_seg_source

        return is_seg_source(Path(data))

    def plan(self, data: str | Path, run: RunDir | None, options: Options) -> SegPlan:
        from scandx.tasks.segmentation.workflow import check_segmenter, seg_plan_run

        if options.model:
            check_segmenter(options.model)  # before any work
        return seg_plan_run(
            data,
            run.path if run else None,
            time_budget_s=options.time_budget_s,
            seed=options.seed or 0,
            dims=options.dims,
            skip_bad=options.skip_bad,
            memory_budget_gb=options.memory_budget_gb,
            model=options.model,
            init=options.init,
            labelled_fraction=options.labelled_fraction,
        )

    def describe_plan(self, plan: SegPlan) -> str:
        head = (
            f"segmentation: {plan.spatial_dims}D {plan.model}, patch {plan.patch_size}, "
            f"batch {plan.batch_size}, {plan.epochs} epochs of {plan.steps_per_epoch} steps, "
            f"{plan.device} {plan.precision}"
        )
        return "\n".join([head, *(f"  - {n}" for n in plan.notes)])

    def train(self, data: str | Path, run: RunDir, options: Options) -> dict[str, Any]:
        from scandx.tasks.segmentation.workflow import check_segmenter, seg_train_run

        if options.model:
            check_segmenter(options.model)  # before any work
        return seg_train_run(
            data,
            run.path,
            time_budget_s=options.time_budget_s,
            seed=options.seed,
            resume=options.resume,
            plan_path=options.plan_path,
            dims=options.dims,
            skip_bad=options.skip_bad,
            memory_budget_gb=options.memory_budget_gb,
            hooks=options.hooks,
            model=options.model,
            init=options.init,
            labelled_fraction=options.labelled_fraction,
        )

    def evaluate(
        self, run: RunDir, data: str | Path, split: str, options: Options
    ) -> dict[str, Any]:
        from scandx.tasks.segmentation.evaluate import seg_evaluate_run

        return seg_evaluate_run(
            run.path,
            data,
            split=split,
            n_boot=options.n_boot,
            skip_bad=options.skip_bad,
            gallery=4 if options.gallery is None else options.gallery,
        )

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        m = metrics
        lines = [f"{m['split']}: {m['cases']} cases (mean over cases, 95% CI)"]
        for k in METRICS:
            if isinstance(m.get(k), dict) and m[k]["value"] is not None:
                lo, hi = m[k]["ci95"]
                lines.append(f"  {k:<6} {m[k]['value']:8.4f}   [{lo:.4f}, {hi:.4f}]")
        return "\n".join(lines)

    def load_predictor(self, run: RunDir, device: str | None = None, runtime: str = "torch"):
        from scandx.tasks.segmentation.predictor import SegPredictor

        return SegPredictor(run.path, device, runtime)

    def explain(
        self, run: RunDir, files: list[str], out: Path, options: Options
    ) -> list[dict[str, Any]]:
        raise ScandxError(
            "explain is for classifiers (which region drove the decision); a segmentation "
            "model's output already is a map: use scandx predict RUN FILES --out DIR"
        )

    def demo(self, out: Path, options: Options) -> str:
        from scandx.tasks.segmentation.demo import run_seg_demo

        return run_seg_demo(out, time_budget_s=options.time_budget_s, seed=options.seed or 0)

    cv_prepare = staticmethod(cv.prepare)  # type: ignore[assignment]
    cv_write_run_files = staticmethod(cv.write_run_files)  # type: ignore[assignment]
    cv_train_fold = staticmethod(cv.train_fold)  # type: ignore[assignment]
    cv_fold_outcome = staticmethod(cv.fold_outcome)  # type: ignore[assignment]
    cv_ensemble = staticmethod(cv.ensemble)  # type: ignore[assignment]

    def write_model_card(self, run: RunDir) -> Path:
        from scandx.tasks.segmentation.report import write_seg_model_card

        return write_seg_model_card(run.path)


TASK = SegmentationTask()
