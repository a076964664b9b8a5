"""Self-supervised pretraining as a task of the shared core (``scandx pretrain``).

It is never chosen for data (``recognises`` is False: ``train`` and ``plan`` stay with
classification and segmentation); its runs are found by their plan.json (task
"pretrain"). What it gives: the encoder for ``train --init``, an Embedder for
``scandx embed``, and for an autoencoder run a Predictor scoring anomalies. The rest
(evaluate, explain, cross-validation) is refused with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scandx.core.embedding import Embedder
from scandx.core.run_dir import RunDir
from scandx.core.task import Options, Task
from scandx.errors import ScandxError
from scandx.tasks.pretrain.plan import PretrainPlan

NO_LABELS = "a pretraining run learns without labels; train a classifier or segmenter "
NO_LABELS += "from it with scandx train --init RUN"


class PretrainTask(Task):
    name = "pretrain"
    plan_type = PretrainPlan
    plan_tasks = ("pretrain",)
    unsupported = {
        "dims": "the network is the one scandx train plans for the data",
        "memory_budget_gb": "the network is the one scandx train plans for the data",
        "positive_class": "labels are ignored",
        "init": "pretraining starts from scratch",
        "labelled_fraction": "labels are ignored",
        "semi_supervised": "labels are ignored",
    }

    def recognises(self, data: str | Path) -> bool:
        return False  # only ``scandx pretrain`` makes these runs

    def plan(self, data: str | Path, run: RunDir | None, options: Options) -> PretrainPlan:
        raise ScandxError("pretraining is planned and run by: scandx pretrain --data SRC --out RUN")

    def describe_plan(self, plan: PretrainPlan) -> str:
        net = plan.network
        head = (
            f"pretraining ({plan.method}) of {net.get('model')} {net.get('input_size')} "
            f"x{net.get('in_channels')}, {plan.epochs} epochs, {plan.device} {plan.precision}"
        )
        return "\n".join([head, *(f"  - {n}" for n in plan.notes)])

    def train(self, data: str | Path, run: RunDir, options: Options) -> dict[str, Any]:
        from scandx.tasks.pretrain.workflow import pretrain_run

        return pretrain_run(data, run.path, options, options.method)

    def evaluate(
        self, run: RunDir, data: str | Path, split: str, options: Options
    ) -> dict[str, Any]:
        raise ScandxError(f"evaluate does not apply to a pretraining run: {NO_LABELS}", run.path)

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        return str(metrics)

    def load_predictor(self, run: RunDir, device: str | None = None, runtime: str = "torch"):
        if runtime != "torch":
            raise ScandxError("a pretraining run has no ONNX export; predict with torch", run.path)
        from scandx.tasks.pretrain.anomaly import AnomalyPredictor

        return AnomalyPredictor.from_run(run, device)

    def load_embedder(self, run: RunDir) -> Embedder:
        from scandx.core.pretrained import read_encoder

        enc = read_encoder(run.path)  # read (and checksummed) once
        if enc.network.get("family") == "segmenter":
            return super().load_embedder(run)
        from scandx.tasks.pretrain.anomaly import load_embedder

        return load_embedder(enc)

    def explain(
        self, run: RunDir, files: list[str], out: Path, options: Options
    ) -> list[dict[str, Any]]:
        raise ScandxError(f"explain does not apply to a pretraining run: {NO_LABELS}", run.path)

    def _no_folds(self, *args: Any, **kwargs: Any) -> Any:
        raise ScandxError(f"--folds does not apply to pretraining: {NO_LABELS}")

    cv_prepare = cv_write_run_files = cv_train_fold = _no_folds  # type: ignore[assignment]
    cv_fold_outcome = cv_ensemble = _no_folds  # type: ignore[assignment]

    def write_model_card(self, run: RunDir) -> Path:
        raise ScandxError(f"a pretraining run has no model card: {NO_LABELS}", run.path)


TASK = PretrainTask()
