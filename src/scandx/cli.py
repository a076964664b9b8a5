"""scandx command line: each command parses its arguments and calls one library function.

Exit codes: 0 success, 2 bad input (one line on stderr says what and where),
130 interrupted (a training run can be continued with --resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from scandx import __version__
from scandx.errors import ScandxError

log = logging.getLogger("scandx")

EXAMPLES = {
    "demo": "scandx demo --out demo-run",
    "plan": "scandx plan --data pneumoniamnist.npz --out runs/pneu --time-budget 600",
    "train": "scandx train --data pneumoniamnist.npz --out runs/pneu --time-budget 600",
    "evaluate": "scandx evaluate runs/pneu --data chest.csv --split test --subgroups sex,site",
    "predict": "scandx predict runs/pneu chest1.png chest2.dcm --out preds.csv",
    "explain": "scandx explain runs/pneu chest1.dcm --method gradcam --out explain/",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scandx",
        description="Medical image diagnosis: plan, train, evaluate, predict, explain "
        "(classification; segmentation when --data is a segmentation data set).",
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
            "--time-budget", type=float, help="training seconds to plan for (default 600)"
        )
        s.add_argument("--model", help="override the planned network (see the model registry)")
        s.add_argument(
            "--dims",
            choices=("2d", "3d"),
            help="segmentation of volumes: force a 2D (slice by slice) or 3D U-Net "
            "(default: planned from the spacing)",
        )
        s.add_argument(
            "--memory-budget",
            type=float,
            metavar="GB",
            help="segmentation: training memory the patch and batch must fit "
            "(default: 40%% of the free RAM or GPU memory)",
        )
        s.add_argument(
            "--seed", type=int, default=seed_default, help="seed for splits and training"
        )

    s = cmd("demo", "synthetic phantoms written as DICOM and PNG -> plan, train, evaluate, summary")
    s.add_argument("--out", default="demo-run")
    s.add_argument("--time-budget", type=float, default=90.0, help="training seconds (default 90)")
    s.add_argument("--patients", type=int, default=400, help="synthetic patients (default 400)")
    s.add_argument("--seed", type=int, default=0)

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
    s.add_argument(
        "--folds",
        type=int,
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
        "--bootstrap", type=int, default=1000, help="bootstrap replicates (default 1000)"
    )
    s.add_argument(
        "--subgroups",
        help="comma-separated metadata columns to break metrics down by, e.g. sex,age_group,site "
        "(default for DICOM: sex, age_group, manufacturer)",
    )
    s.add_argument(
        "--gallery",
        type=int,
        default=4,
        help="Grad-CAM overlays per true/false positive/negative in the report (0: none)",
    )

    s = cmd("predict", "probabilities for image files using the run's saved preprocessing")
    s.add_argument("run")
    s.add_argument("files", nargs="+")
    s.add_argument("--out", help="CSV file to write (default: print CSV rows)")
    s.add_argument(
        "--skip-bad", action="store_true", help="report unreadable files instead of stopping"
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
        return _run(args)
    except ScandxError as e:
        print(f"scandx: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied, ...: still one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"scandx: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scandx: interrupted (continue training with --resume)", file=sys.stderr)
        return 130


def _is_segmentation(args: argparse.Namespace) -> bool:
    from scandx.tasks.segmentation.sources import is_seg_source
    from scandx.tasks.segmentation.workflow import is_seg_run

    if args.command in ("plan", "train"):
        return is_seg_source(args.data)
    return args.command != "demo" and is_seg_run(args.run)


def _run_segmentation(args: argparse.Namespace) -> int:
    from scandx.tasks.segmentation import workflow as seg

    dims = {"2d": 2, "3d": 3}.get(getattr(args, "dims", None) or "")
    if args.command == "plan":
        plan = seg.seg_plan_run(
            args.data,
            args.out,
            time_budget_s=args.time_budget,
            seed=args.seed,
            dims=dims,
            skip_bad=args.skip_bad,
            memory_budget_gb=args.memory_budget,
        )
        print(
            f"wrote {args.out}/plan.json: segmentation, patch {plan.patch_size}, "
            f"{plan.epochs} epochs"
        )
        for note in plan.notes:
            print(f"  - {note}")
    elif args.command == "train":
        if getattr(args, "folds", None):
            from scandx.tasks.segmentation.cross_validation import seg_train_folds

            cv = seg_train_folds(
                args.data,
                args.out,
                args.folds,
                time_budget_s=args.time_budget,
                seed=args.seed,
                resume=args.resume,
                dims=dims,
                skip_bad=args.skip_bad,
                memory_budget_gb=args.memory_budget,
                plan_path=args.plan,
            )
            v = cv["val_dice"]
            print(
                f"trained {args.out}: {cv['folds']} folds, validation Dice {v['mean']:.4f} +- "
                f"{v['sd']:.4f}, out-of-fold Dice {cv['out_of_fold_dice']:.4f}; "
                f"the ensemble is {args.out}/model"
            )
            return 0
        s = seg.seg_train_run(
            args.data,
            args.out,
            time_budget_s=args.time_budget,
            seed=args.seed,
            resume=args.resume,
            plan_path=args.plan,
            dims=dims,
            skip_bad=args.skip_bad,
            memory_budget_gb=args.memory_budget,
        )
        print(
            f"trained {args.out}: best epoch {s['best']['epoch'] + 1}, "
            f"val Dice {s['best']['val_dice']:.4f}"
        )
    elif args.command == "evaluate":
        m = seg.seg_evaluate_run(
            args.run, args.data, split=args.split, n_boot=args.bootstrap, skip_bad=args.skip_bad
        )
        print(f"{m['split']}: {m['cases']} cases (mean over cases, 95% CI)")
        for k in ("dice", "hd95", "nsd", "auc"):
            if isinstance(m.get(k), dict) and m[k]["value"] is not None:
                lo, hi = m[k]["ci95"]
                print(f"  {k:<6} {m[k]['value']:8.4f}   [{lo:.4f}, {hi:.4f}]")
        print(f"wrote {args.run}/eval/{args.split}/: metrics.json, report.html, masks/")
    elif args.command == "predict":
        if not args.out:
            raise ScandxError("segmentation predict needs --out DIR for the masks")
        rows = seg.seg_predict_run(args.run, args.files, args.out, skip_bad=args.skip_bad)
        print(f"wrote {len(rows)} mask(s) to {args.out}")
    else:
        raise ScandxError(f"{args.command} is not available for segmentation runs yet")
    return 0


def _run(args: argparse.Namespace) -> int:
    from scandx.tasks.classification import workflow

    if _is_segmentation(args):
        return _run_segmentation(args)
    for flag in ("dims", "memory_budget"):
        if getattr(args, flag, None):
            raise ScandxError(f"--{flag.replace('_', '-')} applies to segmentation data only")

    if args.command == "demo":
        from scandx.tasks.classification.demo import run_demo

        _, table = run_demo(
            args.out, time_budget_s=args.time_budget, seed=args.seed, n_patients=args.patients
        )
        print(table)
    elif args.command == "plan":
        plan = workflow.plan_run(
            args.data,
            args.out,
            time_budget_s=args.time_budget,
            seed=args.seed,
            model=args.model,
            image_root=args.image_root,
            skip_bad=args.skip_bad,
        )
        print(
            f"wrote {args.out}/plan.json: {plan.model} {plan.input_size} x{plan.in_channels}, "
            f"{plan.epochs} epochs, loss {plan.loss}, {plan.precision}"
        )
        for note in plan.notes:
            print(f"  - {note}")
    elif args.command == "train" and args.folds:
        from scandx.tasks.classification.cross_validation import train_folds

        cv = train_folds(
            args.data,
            args.out,
            args.folds,
            plan_path=args.plan,
            time_budget_s=args.time_budget,
            seed=args.seed,
            model=args.model,
            resume=args.resume,
            image_root=args.image_root,
            skip_bad=args.skip_bad,
        )
        print(format_cv(cv, args.out))
    elif args.command == "train":
        summary = workflow.train_run(
            args.data,
            args.out,
            plan_path=args.plan,
            time_budget_s=args.time_budget,
            seed=args.seed,
            model=args.model,
            resume=args.resume,
            image_root=args.image_root,
            skip_bad=args.skip_bad,
        )
        best = summary["best"]
        print(
            f"trained {args.out}: best epoch {best.get('epoch', 0) + 1}, "
            f"val AUC {best.get('val_auc', float('nan')):.4f}"
        )
    elif args.command == "evaluate":
        m = workflow.evaluate_run(
            args.run,
            args.data,
            split=args.split,
            image_root=args.image_root,
            skip_bad=args.skip_bad,
            n_boot=args.bootstrap,
            subgroups=[c.strip() for c in args.subgroups.split(",") if c.strip()]
            if args.subgroups
            else None,
            gallery=args.gallery,
        )
        print(format_metrics(m))
        out = f"{args.run}/eval/{args.split}"
        print(f"wrote {out}/report.html, metrics.json, curves.json and predictions.csv")
    elif args.command == "explain":
        rows = workflow.explain_run(
            args.run, args.files, args.out, method=args.method, class_name=args.class_name
        )
        for r in rows:
            where = r["layer"] or r["method"]
            print(f"{r['path']}: {r['class']} p={r['probability']:.3f} ({where}) -> {r['overlay']}")
    elif args.command == "predict":
        rows = workflow.predict_run(args.run, args.files, args.out, skip_bad=args.skip_bad)
        if args.out:
            print(f"wrote {len(rows)} prediction(s) to {args.out}")
        else:
            for r in rows:
                print(json.dumps(r))
    return 0


def format_metrics(m: dict) -> str:
    from scandx.tasks.classification.evaluation.report import metric_rows

    head = f"{m['split']}: {m['cases']} cases, {m['patients']} patients (value, 95% CI)"
    return "\n".join([head, *("  " + r for r in metric_rows(m))])


if __name__ == "__main__":
    sys.exit(main())


def format_cv(cv: dict, out: str) -> str:
    lines = [f"{cv['folds']}-fold cross-validation (validation fold of each model), {out}:"]
    lines.append(f"  {'metric':<18} " + " ".join(f"fold{f['fold']:<3}" for f in cv["per_fold"]))
    for k, ms in cv["mean_sd"].items():
        vals = " ".join(
            f"{f[k]:<7.3f}" if f[k] is not None else f"{'n/a':<7}" for f in cv["per_fold"]
        )
        summary = f"{ms['mean']:.3f} +- {ms['sd']:.3f}" if ms["sd"] is not None else "n/a"
        lines.append(f"  {k:<18} {vals} mean {summary}")
    lines.append(f"ensemble of the {cv['folds']} models: {out}/model (evaluate/predict use it)")
    return "\n".join(lines)
