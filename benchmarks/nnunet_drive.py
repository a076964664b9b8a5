"""nnU-Net v2 vs scandx on DRIVE: same machine, wall-clock budget, train and test images
and threads; one numpy scorer for both.

    make bench-nnunet            # creates benchmarks/.venv-nnunet (nnunetv2), runs this
    .venv/bin/python benchmarks/nnunet_drive.py --data ../shared/data/drive --time-budget 1200

scandx (project venv, its CLI = benchmarks/drive.py's seg_train_run/seg_evaluate_run):
`scandx train --time-budget S` with its automatic plan, then `scandx evaluate --split test`,
whose masks are scored here. It runs first; its train/val split (16/4 of training/) is
then written as nnU-Net's splits_final.json, so fold 0 of nnU-Net trains on the same 16
images and validates on the same 4.

nnU-Net v2 (its own venv and torch, CLI by path, never imported here): DRIVE as an
nnU-Net raw dataset (RGB PNG, channels R/G/B, labels 0/1), `nnUNetv2_plan_and_preprocess
-c 2d`, a timing probe of its default trainer (nnU-Net as a library, in its own venv),
then `nnUNetv2_train ID 2d 0 -tr nnUNetTrainer_<N>epochs -device cpu` with the largest
shipped N whose estimated time fits what is left of the budget (if not even one epoch of
250 iterations fits: a subclass with shorter epochs, see TRAINER, unless --shipped-only),
and `nnUNetv2_predict`. The budget covers planning, preprocessing, the probe and training
(with nnU-Net's end-of-training validation); past it, training is killed and the newest
checkpoint is used (reported). Prediction is timed apart, as scandx's evaluation is.
--fold all: nnU-Net trains on all 20 training images (no validation cases).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# nnU-Net's shipped training-length variants (nnunetv2/training/nnUNetTrainer/variants/
# training_length) and the default trainer (1000 epochs); an epoch is 250 training + 50
# validation iterations in every one of them.
VARIANTS = [
    (1, "nnUNetTrainer_1epoch"),
    *((n, f"nnUNetTrainer_{n}epochs") for n in (5, 10, 20, 50, 100, 250, 500, 750)),
    (1000, "nnUNetTrainer"),
]
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")

# Run inside nnU-Net's venv: seconds per training and per validation iteration of its
# default trainer (data loading + augmentation + step), after one warm-up iteration.
PROBE = """
import json, sys, time, torch
from nnunetv2.run.run_training import get_trainer_from_args
torch.set_num_threads(int(sys.argv[3]))
t0 = time.perf_counter()
fold = sys.argv[2] if sys.argv[2] == 'all' else int(sys.argv[2])
tr = get_trainer_from_args(sys.argv[1], '2d', fold, 'nnUNetTrainer', device=torch.device('cpu'))
tr.on_train_start()
tr.on_train_epoch_start()
setup = time.perf_counter() - t0
k = int(sys.argv[4])
tr.train_step(next(tr.dataloader_train))
t1 = time.perf_counter()
for _ in range(k):
    tr.train_step(next(tr.dataloader_train))
t2 = time.perf_counter()
tr.on_validation_epoch_start()
with torch.no_grad():
    for _ in range(k):
        tr.validation_step(next(tr.dataloader_val))
t3 = time.perf_counter()
print('PROBE ' + json.dumps({'setup_s': setup, 'train_it_s': (t2 - t1) / k,
      'val_it_s': (t3 - t2) / k}), flush=True)
"""


# nnU-Net ships no trainer with epochs shorter than 250 iterations: where not even one
# such epoch fits the budget, this subclass of its default trainer (found through
# nnUNet_extTrainer) changes only the number of epochs and iterations per epoch.
TRAINER = """from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
import torch


class {name}(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iters}
        self.num_val_iterations_per_epoch = {val}
"""


def thread_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, **(extra or {}))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "nnUNet_n_proc_DA"):
        env[var] = str(threads)
    return env


def pinned(cmd: list, threads: int) -> list[str]:
    """Pin to `threads` cores where the machine has more (nnU-Net's CPU mode sets torch's
    threads to the machine's core count)."""
    cmd = [str(c) for c in cmd]
    if (os.cpu_count() or 1) > threads and shutil.which("taskset"):
        return ["taskset", "-c", f"0-{threads - 1}", *cmd]
    return cmd


def run(cmd: list[str], env: dict, log: Path, deadline: float | None = None) -> tuple[float, bool]:
    """Run `cmd` (output to `log`) in its own process group; past `deadline` the group is
    killed. Returns (seconds, killed)."""
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        p = subprocess.Popen(
            cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            left = None if deadline is None else max(1.0, deadline - time.perf_counter())
            rc = p.wait(timeout=left)
        except subprocess.TimeoutExpired:
            _kill_group(p, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill_group(p, signal.SIGKILL)
                p.wait()
            _kill_group(p, signal.SIGKILL)  # augmentation workers left behind
            return time.perf_counter() - t0, True
        _kill_group(p, signal.SIGKILL)
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"{cmd[0]} ... exited {rc}; last lines of {log}:\n{tail}")
    return time.perf_counter() - t0, False


def _kill_group(p: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, sig)


def read_binary(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 0


def drive_cases(data: Path, split: str) -> list[tuple[str, Path, Path, Path | None]]:
    """(number, image, FOV mask, 1st manual) of DRIVE's training/ or test/ folder."""
    out = []
    for img in sorted((data / split / "images").glob("*.tif")):
        num = img.stem.split("_")[0]
        fov = data / split / "mask" / f"{num}_{split}_mask.gif"
        manual = data / split / "1st_manual" / f"{num}_manual1.gif"
        out.append((num, img, fov, manual if manual.exists() else None))
    return out


def to_nnunet_raw(data: Path, raw: Path, fov_input: bool) -> None:
    """DRIVE -> nnU-Net raw dataset: RGB PNG images (`drive_NN_0000.png`), 0/1 labels."""
    for d in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / d).mkdir(parents=True, exist_ok=True)
    for split, dst in (("training", "imagesTr"), ("test", "imagesTs")):
        for num, img, fov, manual in drive_cases(data, split):
            rgb = np.asarray(Image.open(img).convert("RGB"))
            if fov_input:  # scandx sees the FOV masks too: black outside them for both
                rgb = rgb * read_binary(fov)[..., None].astype(np.uint8)
            Image.fromarray(rgb).save(raw / dst / f"drive_{num}_0000.png")
            if split == "training":
                label = read_binary(manual).astype(np.uint8)  # type: ignore[arg-type]
                Image.fromarray(label).save(raw / "labelsTr" / f"drive_{num}.png")
    dataset = {
        "channel_names": {"0": "R", "1": "G", "2": "B"},
        "labels": {"background": 0, "vessel": 1},
        "numTraining": len(drive_cases(data, "training")),
        "file_ending": ".png",
        "name": "DRIVE",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))


def score(preds: dict[str, Path], data: Path) -> dict[str, float]:
    """Vessel Dice (= F1) per test image, mean over images: whole image and inside the
    FOV; also pooled over every FOV pixel of the test set."""
    whole, fov_d, tp, s = [], [], 0, 0
    for num, _, fov_path, manual in drive_cases(data, "test"):
        truth, fov = read_binary(manual), read_binary(fov_path)  # type: ignore[arg-type]
        pred = read_binary(preds[num])
        assert pred.shape == truth.shape, (preds[num], pred.shape, truth.shape)
        whole.append(_dice(pred, truth))
        fov_d.append(_dice(pred[fov], truth[fov]))
        tp += int((pred[fov] & truth[fov]).sum())
        s += int(pred[fov].sum() + truth[fov].sum())
    mean = {"dice": float(np.mean(whole)), "dice_fov": float(np.mean(fov_d))}
    return mean | {"dice_fov_pooled": 2 * tp / s, "n": len(whole)}


def _dice(p: np.ndarray, t: np.ndarray) -> float:
    s = int(p.sum() + t.sum())
    return 1.0 if s == 0 else 2.0 * int((p & t).sum()) / s


def drive_numbers(data: Path) -> dict[str, str]:
    """scandx's case id (``pseudonym("train/21", "case")``, keyed by this installation's
    secret, which the scandx CLI run above shares) -> DRIVE's image number."""
    from scandx.core.privacy import pseudonym  # the project's .venv runs this script

    return {
        pseudonym(f"{split}/{num}", "case"): num
        for folder, split in (("training", "train"), ("test", "test"))
        for num, *_ in drive_cases(data, folder)
    }


def run_scandx(args, work: Path) -> dict:
    out, env = work / "scandx", thread_env(args.threads)
    out.mkdir()
    rundir, log, cli = out / "run", out / "log.txt", ROOT / ".venv" / "bin" / "scandx"
    train = [cli, "train", "--data", args.data, "--out", rundir]
    train += ["--time-budget", args.time_budget, "--seed", args.seed]
    train_s, _ = run(pinned(train, args.threads), env, log)
    evaluate = [cli, "evaluate", rundir, "--data", args.data, "--split", "test"]
    evaluate += ["--bootstrap", 200, "--gallery", 0]
    pred_s, _ = run(pinned(evaluate, args.threads), env, log)
    plan = json.loads((rundir / "plan.json").read_text())
    summary = json.loads((rundir / "train_summary.json").read_text())
    own = json.loads((rundir / "eval" / "test" / "metrics.json").read_text())
    number = drive_numbers(Path(args.data))  # scandx names cases by keyed pseudonym
    masks = {number[p.stem]: p for p in (rundir / "eval" / "test" / "masks").glob("*.png")}
    with open(rundir / "manifest.csv") as f:
        split = {number[r["case_id"]]: r["split"] for r in csv.DictReader(f)}
    return {
        "tool": "scandx",
        "setup": f"auto plan: {plan['model']} {'x'.join(map(str, plan['patch_size']))} "
        f"b{plan['batch_size']} {plan['precision']}, {summary['epochs_run']}/{plan['epochs']} "
        f"epochs x {plan['steps_per_epoch']} steps",
        "train_s": train_s,
        "predict_s": pred_s,
        "preds": masks,
        "split": split,
        "own_dice_fov": own.get("dice", {}).get("value"),
        "notes": [f"log {log}"],
    }


def run_nnunet(args, work: Path, split: dict[str, str]) -> dict:
    venv_bin = Path(args.nnunet_venv).resolve() / "bin"
    base, did, n = work / "nnunet", str(args.dataset_id), str(args.threads)
    paths = {k: base / k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    paths["nnUNet_extTrainer"] = base / "trainers"  # where nnU-Net looks for extra trainers
    env = thread_env(args.threads, {k: str(v) for k, v in paths.items()})
    env["nnUNet_compile"] = "false"  # nnU-Net turns it off on CPU anyway
    name, log, fold = f"Dataset{args.dataset_id:03d}_DRIVE", base / "log.txt", args.fold
    t0 = time.perf_counter()
    to_nnunet_raw(Path(args.data), paths["nnUNet_raw"] / name, not args.no_fov_input)
    out = {"tool": "nnU-Net v2", "setup": "-", "convert_s": time.perf_counter() - t0}
    out |= {"predict_s": None, "preds": None, "notes": [f"log {log}"]}
    notes, t0 = out["notes"], time.perf_counter()
    deadline = t0 + args.time_budget

    def over(stage: str) -> dict:
        notes.append(f"KILLED at the budget during {stage}: no nnU-Net model to score")
        return out | {"train_s": time.perf_counter() - t0}

    prep = [venv_bin / "nnUNetv2_plan_and_preprocess", "-d", did, "-c", "2d"]
    prep += ["--verify_dataset_integrity", "-npfp", n, "-np", n]
    if run(pinned(prep, args.threads), env, log, deadline)[1]:
        return over("planning and preprocessing")
    plans = json.loads((paths["nnUNet_preprocessed"] / name / "nnUNetPlans.json").read_text())
    c2d = plans["configurations"]["2d"]
    plan = f"2d {'x'.join(map(str, c2d['patch_size']))} b{c2d['batch_size']}"
    notes.append(f"plan + preprocess {time.perf_counter() - t0:.0f} s; plan {plan}")
    if fold == "0":  # scandx's own train/val split of the same 20 training images
        tr, va = (
            [f"drive_{k}" for k, v in sorted(split.items()) if v == s] for s in ("train", "val")
        )
        sf = paths["nnUNet_preprocessed"] / name / "splits_final.json"
        sf.write_text(json.dumps([{"train": tr, "val": va}], indent=1))
    if args.nnunet_iteration_seconds:
        it_s, val_s, setup_s = args.nnunet_iteration_seconds, args.nnunet_iteration_seconds / 4, 30
        notes.append(f"no probe: {it_s:.1f} s per training iteration given")
    else:
        probe_env = dict(env, nnUNet_results=str(base / "probe_results"))
        cmd = [venv_bin / "python", "-c", PROBE, did, fold, n, args.probe_iterations]
        probe_s, killed = run(pinned(cmd, args.threads), probe_env, log, deadline)
        if killed:
            return over("the timing probe")
        lines = [x for x in log.read_text().splitlines() if x.startswith("PROBE ")]
        if not lines:
            raise SystemExit(f"nnU-Net's timing probe printed no timing; see {log}")
        p = json.loads(lines[-1][6:])
        it_s, val_s, setup_s = p["train_it_s"], p["val_it_s"], p["setup_s"]
        notes.append(f"probe {probe_s:.0f} s: {it_s:.2f} s/train iteration, {val_s:.2f} s/val")
    epoch_s = 250 * it_s + 50 * val_s
    # what is left for epochs: less start-up, end-of-training validation (4 cases, mirrored)
    left = deadline - time.perf_counter() - setup_s - 8 * val_s - 20
    notes.append(f"~{epoch_s:.0f} s per nnU-Net epoch (250 + 50 iterations); {left:.0f} s left")
    fits = [v for v in VARIANTS if v[0] * epoch_s <= left]
    epochs, trainer = fits[-1] if fits else VARIANTS[0]
    if not fits and not args.shipped_only:  # shorter epochs, nothing else changed
        total = max(1, int(left / (it_s + val_s / 5)))
        epochs = max(1, min(10, total // 10))
        iters = max(1, total // epochs)
        trainer = f"nnUNetTrainer_{epochs}epochs_{iters}iters"
        paths["nnUNet_extTrainer"].mkdir()
        code = TRAINER.format(name=trainer, epochs=epochs, iters=iters, val=max(1, iters // 5))
        (paths["nnUNet_extTrainer"] / f"{trainer}.py").write_text(code)
        notes.append(f"no shipped variant fits: {trainer} ({iters}, not 250, iterations/epoch)")
    train = [venv_bin / "nnUNetv2_train", did, "2d", fold, "-tr", trainer, "-device", "cpu"]
    killed = run(pinned(train, args.threads), env, log, deadline)[1]
    out["train_s"] = time.perf_counter() - t0
    folder = paths["nnUNet_results"] / name / f"{trainer}__nnUNetPlans__2d" / f"fold_{fold}"
    done = _epoch_times(folder)
    notes.append(
        f"{len(done)}/{epochs} epochs finished"
        + (f", {np.mean(done):.0f} s each" if done else "")
        + (" (KILLED at the budget" if killed else "")
    )
    chk = [c for c in CHECKPOINTS if (folder / c).exists()]
    if killed:  # the newest checkpoint left behind
        notes[-1] += ", in its final validation)" if "checkpoint_final.pth" in chk else ")"
        chk.sort(key=lambda c: (folder / c).stat().st_mtime, reverse=True)
    out["setup"] = f"{plan}, {trainer} fold {fold}" + (f", {chk[0]}" if chk and killed else "")
    if not chk:
        notes.append("no checkpoint was written: no nnU-Net model to score")
        return out
    pred = base / "pred"
    predict = [venv_bin / "nnUNetv2_predict", "-i", paths["nnUNet_raw"] / name / "imagesTs"]
    predict += ["-o", pred, "-d", did, "-c", "2d", "-f", fold, "-tr", trainer, "-chk", chk[0]]
    predict += ["-device", "cpu", "-npp", 1, "-nps", 1]
    out["predict_s"] = run(pinned(predict, args.threads), env, log)[0]
    out["preds"] = {p.stem.split("_")[-1]: p for p in pred.glob("drive_*.png")}
    return out


def _epoch_times(folder: Path) -> list[float]:
    logs = "".join(f.read_text() for f in sorted(folder.glob("training_log_*.txt")))
    return [float(x) for x in re.findall(r"Epoch time: ([0-9.]+) s", logs)]


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    ap.add_argument("--data", default="../shared/data/drive")
    ap.add_argument("--time-budget", type=float, default=1200, help="seconds, for each tool")
    ap.add_argument("--work", help="empty or new folder (default: a new one in /tmp)")
    ap.add_argument("--nnunet-venv", default=str(ROOT / "benchmarks" / ".venv-nnunet"))
    ap.add_argument("--threads", type=int, default=2, help="threads (and cores) for each tool")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset-id", type=int, default=777)
    ap.add_argument("--fold", default="0", choices=["0", "all"], help="nnU-Net fold, see below")
    ap.add_argument("--probe-iterations", type=int, default=2)
    ap.add_argument("--nnunet-iteration-seconds", type=float, help="given: no nnU-Net probe")
    ap.add_argument("--shipped-only", action="store_true", help="no shortened-epoch trainer")
    ap.add_argument("--no-fov-input", action="store_true", help="nnU-Net: images as they are")
    ap.add_argument("--skip-scandx", action="store_true", help="nnU-Net only (split: seeded)")
    args = ap.parse_args()
    if not (Path(args.nnunet_venv) / "bin" / "nnUNetv2_train").exists():
        raise SystemExit(f"no nnU-Net in {args.nnunet_venv}: run `make bench-nnunet`")
    work = Path(args.work or tempfile.mkdtemp(prefix="nnunet-drive-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise SystemExit(f"{work} is not empty")
    print(f"work {work}; budget {args.time_budget:.0f} s each; {args.threads} threads", flush=True)
    rows = []
    if args.skip_scandx:
        rng = np.random.default_rng(args.seed)
        nums = [c[0] for c in drive_cases(Path(args.data), "training")]
        val = set(rng.permutation(nums)[: round(0.2 * len(nums))].tolist())
        split = {k: "val" if k in val else "train" for k in nums}
    else:
        print("scandx: train + evaluate ...", flush=True)
        rows.append(run_scandx(args, work))
        split = rows[0]["split"]
    print("nnU-Net v2: convert, plan + preprocess, probe, train, predict ...", flush=True)
    rows.append(run_nnunet(args, work, split))
    results = []
    for r in rows:
        s = score(r["preds"], Path(args.data)) if r["preds"] else {}
        total = r["train_s"] + (r["predict_s"] or 0)
        kept = {k: v for k, v in r.items() if k not in ("preds", "split")}
        results.append(kept | s | {"total_s": total})
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(
        f"\nDRIVE test, 20 images vs 1st_manual; budget {args.time_budget:.0f} s; "
        f"{args.threads} threads; mean of per-image Dice"
    )
    head = f"{'tool':<11} {'train s':>7} {'pred s':>6} {'wall s':>6} {'Dice':>6} {'F1 FOV':>6}"
    print(head + f" {'pooled':>6}  plan / trainer")
    for r in results:
        pred = f"{r['predict_s']:.0f}" if r["predict_s"] is not None else "-"
        d = [f"{r[k]:.4f}" if k in r else "-" for k in ("dice", "dice_fov", "dice_fov_pooled")]
        print(
            f"{r['tool']:<11} {r['train_s']:>7.0f} {pred:>6} {r['total_s']:>6.0f} "
            f"{d[0]:>6} {d[1]:>6} {d[2]:>6}  {r['setup']}"
        )
    for r in results:
        for note in r["notes"]:
            print(f"  {r['tool']}: {note}")
        if r.get("own_dice_fov") is not None:
            print(f"  scandx: its own evaluate gives Dice in FOV {r['own_dice_fov']:.4f} (check)")
    print(f"results: {work / 'results.json'}")


if __name__ == "__main__":
    main()
