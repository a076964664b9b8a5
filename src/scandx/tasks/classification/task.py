"""Classification as a task of the shared core: binary, multi-class and multi-label
diagnosis of 2D images and 3D volumes (``core/task.py`` says what each method is for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scandx.core.run_dir import RunDir
from scandx.core.task import Options, Task
from scandx.tasks.classification import cross_validation as cv
from scandx.tasks.classification.plan import Plan


class ClassificationTask(Task):
    name = "classification"
    plan_type = Plan
    plan_tasks = ("binary", "multiclass", "multilabel")
    unsupported = {
        "dims": "a classifier is planned 2D or 3D from its images (volumes -> 3D)",
        "memory_budget_gb": "classification holds its images in memory at the planned "
        "size; the budget applies to segmentation patches",
    }

    def recognises(self, data: str | Path) -> bool:
        return True  # the fallback: its sources give the precise error

    def plan(self, data: str | Path, run: RunDir | None, options: Options) -> Plan:
        from scandx.tasks.classification.workflow import plan_run

        return plan_run(
            data,
            run.path if run else None,
            time_budget_s=options.time_budget_s,
            seed=options.seed or 0,
            model=options.model,
            image_root=options.image_root,
            skip_bad=options.skip_bad,
            positive_class=options.positive_class,
        )

    def describe_plan(self, plan: Plan) -> str:
        head = (
            f"{plan.task} classification: {plan.model} {plan.input_size} x{plan.in_channels}, "
            f"{plan.epochs} epochs, loss {plan.loss}, {plan.device} {plan.precision}"
        )
        return "\n".join([head, *(f"  - {n}" for n in plan.notes)])

    def train(self, data: str | Path, run: RunDir, options: Options) -> dict[str, Any]:
        from scandx.tasks.classification.workflow import train_run

        return train_run(
            data,
            run.path,
            plan_path=options.plan_path,
            time_budget_s=options.time_budget_s,
            seed=options.seed,
            model=options.model,
            resume=options.resume,
            image_root=options.image_root,
            skip_bad=options.skip_bad,
            hooks=options.hooks,
            positive_class=options.positive_class,
            init=options.init,
            labelled_fraction=options.labelled_fraction,
            semi_supervised=options.semi_supervised,
        )

    def evaluate(
        self, run: RunDir, data: str | Path, split: str, options: Options
    ) -> dict[str, Any]:
        from scandx.tasks.classification.evaluation.evaluate import evaluate_run

        return evaluate_run(
            run.path,
            data,
            split=split,
            image_root=options.image_root,
            skip_bad=options.skip_bad,
            n_boot=options.n_boot,
            subgroups=options.subgroups,
            gallery=4 if options.gallery is None else options.gallery,
        )

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        from scandx.tasks.classification.evaluation.report import metric_rows

        m = metrics
        head = f"{m['split']}: {m['cases']} cases, {m['patients']} patients (value, 95% CI)"
        if m.get("positive_class"):
            pos, th = m["positive_class"], m["threshold"]["positive"]
            head += f"\npositive class {pos}: a case is called {pos} when P({pos}) >= {th:.3f}"
        return "\n".join([head, *("  " + r for r in metric_rows(m))])

    def load_predictor(self, run: RunDir, device: str | None = None, runtime: str = "torch"):
        from scandx.tasks.classification.inference.predictor import Predictor

        return Predictor.from_run(run.path, device, runtime)

    def explain(
        self, run: RunDir, files: list[str], out: Path, options: Options
    ) -> list[dict[str, Any]]:
        from scandx.tasks.classification.inference.commands import explain_run

        return explain_run(
            run.path, files, out, method=options.method or "auto", class_name=options.class_name
        )

    def load_embedder(self, run: RunDir):
        """Penultimate features, L2-normalised (``inference/embedding.py``)."""
        from scandx.tasks.classification.inference.embedding import ClassifierEmbedder

        return ClassifierEmbedder.from_run(run.path)

    def demo(self, out: Path, options: Options) -> str:
        from scandx.tasks.classification.demo import run_demo

        return run_demo(out, time_budget_s=options.time_budget_s or 90.0, seed=options.seed or 0)[1]

    cv_prepare = staticmethod(cv.prepare)  # type: ignore[assignment]
    cv_write_run_files = staticmethod(cv.write_run_files)  # type: ignore[assignment]
    cv_train_fold = staticmethod(cv.train_fold)  # type: ignore[assignment]
    cv_fold_outcome = staticmethod(cv.fold_outcome)  # type: ignore[assignment]
    cv_ensemble = staticmethod(cv.ensemble)  # type: ignore[assignment]

    def write_model_card(self, run: RunDir) -> Path:
        from scandx.tasks.classification.evaluation.model_card import write_model_card

        return write_model_card(run.path)


TASK = ClassificationTask()
