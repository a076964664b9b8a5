"""scandx command line: each command parses its arguments and calls one library function.

Exit codes: 0 success, 2 bad input (one line on stderr says what and where),
130 interrupted (a training run can be continued with --resume).
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scandx import __version__
from scandx.cli_learning import (
    LEARNING_COMMANDS,
    add_learning_commands,
    add_train_learning_args,
    run_learning_command,
)
from scandx.cli_service import SERVICE_COMMANDS, add_service_commands, run_service_command
from scandx.core.task import Options
from scandx.errors import ScandxError
from scandx.models.registry import check_model_name, list_models

log = logging.getLogger("scandx")

EXAMPLES = {
    "demo": "scandx demo --out demo-run",
    "plan": "scandx plan --data pneumoniamnist.npz --out runs/pneu --time-budget 600",
    "train": "scandx train --data pneumoniamnist.npz --out runs/pneu --time-budget 600",
    "evaluate": "scandx evaluate runs/pneu --data chest.csv --split test --subgroups sex,site",
    "predict": "scandx predict runs/pneu chest1.png chest2.dcm --out preds/",
    "explain": "scandx explain runs/pneu chest1.dcm --method gradcam --out explain/",
}


def _int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi] (argparse refuses anything else, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(
                f"{value} is out of range ({lo} to {hi})" if hi else f"{value} is below {lo}"
            )
        return value

    return parse


def _positive(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scandx",
        description="Medical image diagnosis: plan, train, evaluate, predict, explain. "
        "The task (classification or segmentation) is recognised from --data, and from "
        "the run's plan.json afterwards; an option a task does not use is refused.",
    )
    p.add_argument("--version", action="version", version=f"scandx {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help_, description=help_, epilog=f"example: {EXAMPLES[name]}"
        )

    def data_args(s: argparse.ArgumentParser, required: bool = True) -> None:
        s.add_argument(
            "--data",
            required=required,
            help="folder-per-class dir, CSV manifest or MedMNIST .npz; for segmentation a "
            "Decathlon folder, images/+masks/ folders, DICOM series + SEG folders or a "
            "case-folder JSON spec",
        )
        s.add_argument("--image-root", help="folder the CSV's paths (or SOPInstanceUIDs) refer to")
        s.add_argument(
            "--skip-bad",
            action="store_true",
            help="skip unreadable files, list them in skipped.csv",
        )

    def planning_args(s: argparse.ArgumentParser, seed_default: int | None = 0) -> None:
        s.add_argument(
            "--time-budget", type=_positive, help="seconds the command may take (default 600)"
        )
        s.add_argument(
            "--model",
            help="override the planned network; classifiers: "
            f"{', '.join(list_models('classifier'))}; segmenters: "
            f"{', '.join(list_models('segmenter'))}",
        )
        s.add_argument(
            "--dims",
            choices=("2d", "3d"),
            help="segmentation of volumes: force a 2D (slice by slice) or 3D U-Net "
            "(default: planned from the spacing)",
        )
        s.add_argument(
            "--memory-budget",
            type=_positive,
            metavar="GB",
            help="segmentation: training memory the patch and batch must fit "
            "(default: 40%% of the free RAM or GPU memory)",
        )
        s.add_argument(
            "--seed", type=int, default=seed_default, help="seed for splits and training"
        )
        s.add_argument(
            "--precision",
            choices=("fp32", "bf16", "fp16"),
            help="force the training precision (default: what this machine does best; "
            "fp32 reproduces a CPU without bf16 anywhere)",
        )
        s.add_argument(
            "--positive-class",
            metavar="NAME",
            help="binary classification: the class that counts as positive (default: the "
            "class not named like normal / no finding / negative / healthy / benign / 0)",
        )

    s = cmd(
        "demo",
        "synthetic data -> plan, train, evaluate, predict, summary (classification: lesion "
        "phantoms written as DICOM and PNG; segmentation: ellipses)",
    )
    s.add_argument("--out", default="demo-run")
    s.add_argument("--task", default="classification", choices=["classification", "segmentation"])
    s.add_argument(
        "--time-budget", type=_positive, help="training seconds (default 90; segmentation 60)"
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"), help="force the training precision"
    )

    s = cmd("plan", "fingerprint the data and write plan.json")
    data_args(s)
    s.add_argument("--out", required=True, help="run directory for plan.json")
    planning_args(s)

    s = cmd("train", "train a classifier or a segmentation U-Net; writes the run directory")
    data_args(s)
    s.add_argument("--out", required=True, help="run directory")
    s.add_argument("--plan", help="reuse (an edited) plan.json instead of planning")
    planning_args(s, seed_default=None)  # None: an edited plan keeps its own seed
    s.add_argument("--resume", action="store_true", help="continue from checkpoints/last.ckpt")
    add_train_learning_args(s)
    s.add_argument(
        "--nproc",
        type=_int_in(1, 1024),
        help="train with N local DDP processes (torchrun's launcher; gloo on the CPU, NCCL "
        "on GPUs); or run: torchrun --nproc_per_node N -m scandx train ...",
    )
    s.add_argument(
        "--folds",
        type=int,  # checked by the library: one line naming the rule
        help="k-fold cross-validation over patients: k models, mean +- sd, their ensemble "
        "as RUN/model (the time budget covers all folds)",
    )

    s = cmd(
        "evaluate",
        "metrics with bootstrap CIs, curves, subgroups, Grad-CAM gallery on one split "
        "-> RUN/eval/<split>/{metrics.json,report.html}",
    )
    s.add_argument("run")
    data_args(s)
    s.add_argument(
        "--split", default="test", help="train, val, test, external or all (default test)"
    )
    s.add_argument(
        "--bootstrap",
        type=_int_in(1, 1_000_000),
        default=1000,
        help="bootstrap replicates, 1 to 1000000 (default 1000)",
    )
    s.add_argument(
        "--subgroups",
        help="comma-separated metadata columns to break metrics down by, e.g. sex,age_group,site "
        "(default for DICOM: sex, age_group, manufacturer)",
    )
    s.add_argument(
        "--gallery",
        type=_int_in(0, 1000),
        help="overlays in the report (default 4; 0: none): classification, Grad-CAM per "
        "true/false positive/negative; segmentation, worst cases (and half as many median "
        "and best)",
    )

    s = cmd(
        "predict",
        "predictions for image files (or DICOM series folders) with the run's saved "
        "preprocessing: probabilities and decisions, or masks",
    )
    s.add_argument("run")
    s.add_argument("files", nargs="+")
    s.add_argument(
        "--out",
        help="folder for predictions.csv (and, for segmentation, one mask per input in the "
        "input's format); default for classification: print the CSV rows",
    )
    s.add_argument(
        "--skip-bad", action="store_true", help="report unreadable files instead of stopping"
    )
    s.add_argument(
        "--fov",
        action="append",
        metavar="MASK",
        help="segmentation: the field-of-view mask of each input, once per input in the same "
        "order; required when the model was trained with FOV masks (plan.json use_fov)",
    )
    s = cmd(
        "explain", "heatmaps (Grad-CAM, Grad-CAM++, LayerCAM, occlusion) overlaid on the images"
    )
    s.add_argument("run")
    s.add_argument("files", nargs="+")
    s.add_argument(
        "--method",
        default="auto",
        choices=["auto", "gradcam", "gradcam++", "layercam", "occlusion"],
        help="auto (default): Grad-CAM, or LayerCAM for the plain CNNs' dense heads",
    )
    s.add_argument("--class", dest="class_name", help="class to explain (default: positive/top)")
    s.add_argument("--out", default="explanations", help="output folder (default explanations/)")
    add_service_commands(sub)
    add_learning_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname).1s %(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("PIL").setLevel(logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    try:
        if getattr(args, "model", None) is not None:
            check_model_name(args.model)  # before any data is read
        if args.command == "train":  # --nproc launches DDP workers; a worker's set-up
            from scandx.core.distributed import cli_train

            if (code := cli_train(args, argv)) is not None:
                return code
        return _run(args)
    except ScandxError as e:
        print(f"scandx: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied, ...: still one line
        where = f"{e.filename}: " if e.filename else ""
        full = "disk full while writing: " if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        print(f"scandx: error: {where}{full}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scandx: interrupted (continue training with --resume)", file=sys.stderr)
        return 130


def options_from(args: argparse.Namespace) -> Options:
    """The command's options; flags a command does not have stay None."""
    get = vars(args).get
    subgroups = get("subgroups")
    return Options(
        time_budget_s=get("time_budget"),
        seed=get("seed"),
        model=get("model"),
        image_root=get("image_root"),
        skip_bad=bool(get("skip_bad")),
        dims={"2d": 2, "3d": 3}.get(get("dims") or ""),
        memory_budget_gb=get("memory_budget"),
        plan_path=get("plan"),
        resume=bool(get("resume")),
        n_boot=get("bootstrap") or 1000,
        subgroups=[c.strip() for c in subgroups.split(",") if c.strip()] if subgroups else None,
        gallery=get("gallery"),
        method=None if get("method") in (None, "auto") else get("method"),
        class_name=get("class_name"),
        precision=get("precision"),
        positive_class=get("positive_class"),
        init=get("init"),
        labelled_fraction=get("labelled_fraction"),
        semi_supervised=get("semi_supervised"),
    )


def _run(args: argparse.Namespace) -> int:

    from scandx.core.device import force_precision

    opts = options_from(args)
    with force_precision(opts.precision):
        return _dispatch(args, opts)


def _dispatch(args: argparse.Namespace, opts: Options) -> int:
    from scandx.core.run_dir import RunDir
    from scandx.tasks import get_task, task_for_data, task_for_run

    if args.command in SERVICE_COMMANDS:
        return run_service_command(args)
    if args.command in LEARNING_COMMANDS:
        return run_learning_command(args)
    if args.command == "demo":
        print(get_task(args.task).demo(Path(args.out), opts))
        return 0
    if args.command in ("plan", "train"):
        task = task_for_data(args.data)
    else:
        task = task_for_run(args.run)
    task.check_options(opts, args.command)
    # one process at a time per run directory (core/run_dir.py RunDir.hold)
    held = args.out if args.command in ("plan", "train") else args.run
    if args.command == "predict" and not args.out:
        return _command(args, opts, task)  # reads the run, writes nothing
    with RunDir(held).hold(create=args.command in ("plan", "train")):
        return _command(args, opts, task)


def _command(args: argparse.Namespace, opts: Options, task: Any) -> int:
    from scandx.core.run_dir import RunDir

    if args.command == "plan":
        plan = task.plan(args.data, RunDir(args.out), opts)
        print(f"wrote {args.out}/plan.json: {task.describe_plan(plan)}")
    elif args.command == "train" and args.folds:
        from scandx.core.cross_validation import train_folds

        cv = train_folds(task, args.data, RunDir(args.out), args.folds, opts)
        from scandx.core.cross_validation import format_cv

        print(format_cv(cv, args.out))
    elif args.command == "train":
        s = task.train(args.data, RunDir(args.out), opts)
        if s.get("rank"):  # a DDP rank other than 0: rank 0 reports
            return 0
        best = s["best"]
        vals = ", ".join(
            f"{k} {v:.4f}" for k, v in best.items() if k.startswith("val_") and v is not None
        )
        print(f"trained {args.out}: best epoch {best.get('epoch')} of {s['epochs_run']} ({vals})")
    elif args.command == "evaluate":
        m = task.evaluate(RunDir(args.run), args.data, args.split, opts)
        print(task.format_metrics(m))
        print(f"wrote {args.run}/eval/{args.split}/: report.html, metrics.json, predictions.csv")
    elif args.command == "predict":
        _predict(args)
    elif args.command == "explain":
        rows = task.explain(RunDir(args.run), args.files, Path(args.out), opts)
        for r in rows:
            where = r["layer"] or r["method"]
            print(
                f"#{r['input']} {r['file']}: {r['class']} p={r['probability']:.3f} ({where}) "
                f"-> {r['overlay']}"
            )
    return 0


def _predict(args: argparse.Namespace) -> None:
    from scandx.core.predictor import load_predictor

    if args.out and Path(args.out).suffix.lower() == ".csv":
        raise ScandxError("--out names a folder (predictions.csv is written inside it)", args.out)
    predictor = load_predictor(args.run)
    if hasattr(predictor, "set_fov_masks"):
        predictor.set_fov_masks(list(args.files), args.fov)
    elif args.fov:
        raise ScandxError("--fov is for segmentation models only", args.run)
    rows = predictor.predict_files(args.files, args.out, skip_bad=args.skip_bad)
    if args.out:
        print(f"wrote {args.out}/predictions.csv: {len(rows)} input(s)")
    else:
        sys.stdout.write(predictor.csv_text(rows))


if __name__ == "__main__":
    sys.exit(main())
